/*
 * apply_delivery: deliveries: the entry point of run and apply (one
 * delivery, one plan, one executor).
 */
#include "build.h"

#include "apply_int.h"

#include "apply.h"
#include "common/clock.h"
#include "dn.h"
#include "events.h"
#include "ids.h"
#include "ldifw.h"
#include "refs.h"
#include "related.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/strmap.h"
#include <fcntl.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- deliveries ---------------------------------------------------------------- */

/* The team read fresh from the API: 1 and *fresh, 0 when it no longer exists,
 * -1 when the API could not answer (the delivery waits for it). */
static int fresh_team(struct job *j, const char *team, cJSON **fresh)
{
	struct sbuf e;
	int got;

	sbuf_init(&e);
	got = factorial_get(j->a->api, "teams/teams", team, fresh, &e);
	if (got < 0) {
		sbuf_addf(j->err, "team %s: reading it from the Factorial API: %s", team, sbuf_str(&e));
		j->a->connection_lost = true;
		j->a->api_unavailable = true;
	}
	sbuf_free(&e);
	return got;
}

/* The record read fresh may name records its delivery did not (the queue
 * ordered it by what the body named): none of them may be changing under
 * another worker while it is applied.  0: go on; -1: the delivery waits. */
static int claim_fresh(struct job *j, enum event_kind kind, const cJSON *fresh)
{
	if (!j->a->claim_refs || j->a->claim_refs(j->a->claim_ctx, kind, fresh) == 0)
		return 0;
	j->a->waits = true;
	sbuf_addf(j->err, "%s %s: names a record another delivery is changing now: it waits for that one", j->kind,
	          j->id);
	return -1;
}

/* Whether team's employee_ids lists employee id. */
static bool team_lists(const cJSON *team, const char *id)
{
	const cJSON *m;

	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(team, "employee_ids")) {
		char *mid = mapping_id_text(m);
		bool same = mid && strcmp(mid, id) == 0;
		free(mid);
		if (same)
			return true;
	}
	return false;
}

/* teams/team/...: from the body, or, with the API, as a notification: the
 * team is read fresh, so that a late retry applies today's team (a team
 * Factorial no longer has loses its group). */
static int team_delivery(struct job *j, const cJSON *body)
{
	bool del = strcmp(j->event, "delete") == 0;
	cJSON *fresh = NULL;
	int rc, got;

	if (!j->a->m->obj[MAPPING_TEAM].present) {
		apply_say(j, "the mapping has no teams section: nothing to do");
		return 0;
	}
	if (!j->a->api)
		return apply_team(j, body, del);
	factorial_teams_changed();
	if ((got = fresh_team(j, j->id, &fresh)) < 0 || (got && claim_fresh(j, EVENT_TEAM, fresh) < 0)) {
		cJSON_Delete(fresh);
		return -1;
	}
	if (got == 0 && !del)
		apply_say(j, "no longer exists in Factorial: its group goes");
	rc = got ? apply_team(j, fresh, false) : apply_team(j, body, true);
	cJSON_Delete(fresh);
	return rc;
}

/* A membership, as the team read fresh says it is now: the member joins or
 * leaves; a team whose group is not there yet gets it, whole; an employee
 * without an entry yet joins when the entry is made (an employee's creation
 * joins the groups of its teams). */
static int membership_now(struct job *j, const cJSON *rec, const cJSON *fresh, const char *team, const char *emp)
{
	struct ldapw_entries found = { 0 };
	const struct ldapw_entry *group;
	bool member = team_lists(fresh, emp);
	char *dn = NULL;
	int rc = -1, got;

	if ((got = apply_team_group(j, team, &found, &group)) < 0)
		goto cleanup;
	if (!got) {
		const char *kind = j->kind, *id = j->id;
		apply_sayf(j, "team %s has no group yet: made from the team as Factorial has it now", team);
		j->kind = "team";
		j->id = team;
		rc = member ? apply_team(j, fresh, false) : 0;
		j->kind = kind;
		j->id = id;
		goto cleanup;
	}
	if ((got = apply_lookup_employee(j, emp, &dn, false)) < 0)
		goto cleanup;
	if (!got) {
		apply_sayf(j, "employee %s has no entry yet: %s", emp,
		     member ? "it joins the group when it is made" : "nothing to do");
		rc = 0;
		goto cleanup;
	}
	rc = apply_membership(j, rec, !member);
cleanup:
	free(dn);
	ldapw_entries_free(&found);
	return rc;
}

/* One membership: from the body, or, with the API, by whether the team
 * lists the employee now (a late `delete` after the employee joined again
 * removes nothing). */
static int one_membership(struct job *j, const cJSON *rec, bool remove)
{
	char *team = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "team_id"));
	char *emp = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "employee_id"));
	cJSON *fresh = NULL;
	int rc = -1, got;

	if (!j->a->api || !team || !emp || !j->a->m->obj[MAPPING_TEAM].present) {
		rc = apply_membership(j, rec, remove);
		goto cleanup;
	}
	if ((got = fresh_team(j, team, &fresh)) < 0 || (got && claim_fresh(j, EVENT_TEAM, fresh) < 0))
		goto cleanup;
	if (got == 0) {
		apply_sayf(j, "team %s no longer exists in Factorial: nothing to do", team);
		rc = 0;
		goto cleanup;
	}
	rc = membership_now(j, rec, fresh, team, emp);
cleanup:
	cJSON_Delete(fresh);
	free(team);
	free(emp);
	return rc;
}

struct each_membership {
	struct job *j;
	bool remove;
};

static int membership_item(void *ctx, const cJSON *membership)
{
	struct each_membership *e = ctx;

	free(e->j->own_id);
	e->j->own_id = mapping_record_id(membership);
	e->j->id = e->j->own_id ? e->j->own_id : "?";
	e->j->counted = false;
	return one_membership(e->j, membership, e->remove) < 0 ? -1 : 0;
}

/* teams/membership/...: one membership, or a list of them (bulk_upsert). */
static int membership_delivery(struct job *j, const cJSON *body)
{
	struct each_membership e = { .j = j, .remove = strcmp(j->event, "delete") == 0 };

	if (j->a->api)
		factorial_teams_changed();
	return event_each_membership(body, membership_item, &e);
}

/* employees/employee/...: from the body, or (factorial.enrich) the employee
 * read fresh with job_title and team_ids. */
/* The day the employee's next contract version takes effect (next, "" for
 * none): the employee is read again that day (the scheduler queues a
 * contract version delivery for it), so that a title dated later is
 * applied on its day. */
static void schedule_title(struct job *j, const char *next)
{
	char *due = NULL, body[96];
	struct sbuf e;
	int got;

	if (!j->a->st || !j->a->m->obj[MAPPING_EMPLOYEE].present)
		return;
	sbuf_init(&e);
	got = store_schedule_get(j->a->st, "contract", j->id, &due, NULL, &e);
	snprintf(body, sizeof(body), "{\"employee_id\": \"%s\"}", j->id);
	if (got == 1 && !next[0] && store_schedule_remove(j->a->st, "contract", j->id, &e) < 0)
		log_warn("employee %s: the schedule could not be updated: %s", j->id, sbuf_str(&e));
	else if (got >= 0 && next[0] && (got == 0 || strcmp(due, next) != 0) &&
	         store_schedule_put(j->a->st, "contract", j->id, next, body, &e) < 0)
		log_warn("employee %s: the contract version taking effect on %s could not be recorded: %s", j->id, next,
		         sbuf_str(&e));
	else if (got >= 0 && next[0])
		apply_sayf(j, "the contract version taking effect on %s is applied on that day", next);
	free(due);
	sbuf_free(&e);
}

/* The employee read fresh from the API (enrichment, or a contract version
 * naming it), then applied as an employee delivery. */
static int employee_read_fresh(struct job *j, struct factorial *api)
{
	struct sbuf e;
	cJSON *fresh = NULL;
	char next[16] = "";
	int rc = -1, got;

	const struct mapping *m = j->a->m;
	unsigned what = (mapping_uses_field(m, MAPPING_EMPLOYEE, "job_title") ? FACTORIAL_ENRICH_TITLE : 0) |
	                (m->obj[MAPPING_TEAM].present || mapping_uses_field(m, MAPPING_EMPLOYEE, "team_ids")
	                         ? FACTORIAL_ENRICH_TEAMS
	                         : 0);

	sbuf_init(&e);
	got = factorial_enrich(api, j->id, what, j->a->today, &fresh, next, &e);
	if (got < 0 && factorial_forbidden(api)) {
		/* a permission the token lacks: this record's failure, not the API being away (which would
		 * hold every delivery back) */
		sbuf_addf(j->err, "employee %s: reading it from the Factorial API: %s", j->id, sbuf_str(&e));
	} else if (got < 0) {
		sbuf_addf(j->err, "employee %s: reading it from the Factorial API: %s", j->id, sbuf_str(&e));
		j->a->connection_lost = true;
		j->a->api_unavailable = true;
	} else if (got == 0) {
		apply_say(j, "no longer exists in Factorial: skipped");
		rc = 0;
	} else if (claim_fresh(j, EVENT_EMPLOYEE, fresh) == 0) {
		j->fresh = true;
		rc = apply_employee(j, fresh);
		if (rc == 0 && !j->a->dry_run)
			schedule_title(j, next);
	}
	cJSON_Delete(fresh);
	sbuf_free(&e);
	return rc;
}

static int employee_delivery(struct job *j, const cJSON *body)
{
	if (!j->a->m->obj[MAPPING_EMPLOYEE].present) {
		apply_say(j, "the mapping has no employees section: nothing to do");
		return 0;
	}
	return j->a->api ? employee_read_fresh(j, j->a->api) : apply_employee(j, body);
}

/* A contract version (a new job title, dated now or later): its employee is
 * read again, with the title in force today; a version dated later is
 * applied on its day (schedule_title). */
static int contract_delivery(struct job *j, const cJSON *body)
{
	char *emp = ids_text(cJSON_GetObjectItemCaseSensitive(body, "employee_id"), NULL);
	const char *version = j->id;
	int rc = -1;

	if (!emp) {
		sbuf_addf(j->err, "contract version %s: it names no employee (employee_id)", version);
		goto cleanup;
	}
	if (!j->a->m->obj[MAPPING_EMPLOYEE].present) {
		apply_say(j, "the mapping has no employees section: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if (!j->a->reader) {
		sbuf_addf(j->err, "contract version %s: reading employee %s needs the Factorial API", version, emp);
		goto cleanup;
	}
	j->kind = "employee";
	j->id = emp;
	rc = employee_read_fresh(j, j->a->reader);
cleanup:
	free(emp);
	return rc;
}

struct location_people {
	struct job *j;
	long n, failed;
};

/* One person of the location: queued again (run), or applied now (apply). */
static int location_person(void *ctx, const cJSON *emp)
{
	struct location_people *p = ctx;
	struct apply_ctx *a = p->j->a;
	char *body;
	struct sbuf err;

	p->n++;
	if (a->revisit) {
		if (!(body = cJSON_PrintUnformatted(emp)))
			return -1;
		a->revisit(a->revisit_ctx, "employees/employee/update", body);
		free(body);
		return 0;
	}
	sbuf_init(&err);
	if (apply_record(a, MAPPING_EMPLOYEE, emp, &err) < 0) {
		log_error("%s", sbuf_str(&err));
		p->failed++;
	}
	sbuf_free(&err);
	return 0;
}

/* A location made, renamed or removed: when the mapping reads locations
 * ({location.name}), its people are applied again with its new names
 * (the caller reads the locations fresh first). */
static int location_delivery(struct job *j, const cJSON *body)
{
	struct location_people p = { .j = j };
	struct sbuf q, e;
	char *id = ids_text(cJSON_GetObjectItemCaseSensitive(body, "id"), NULL);
	int rc = -1;

	sbuf_init(&q);
	sbuf_init(&e);
	if (!id) {
		sbuf_addf(j->err, "location %s: it has no id", j->id);
		goto cleanup;
	}
	if (!j->a->m->obj[MAPPING_EMPLOYEE].present || !(related_needs(j->a->m) & RELATED_LOCATIONS)) {
		apply_say(j, "the mapping reads no location: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if (!j->a->reader) {
		sbuf_addf(j->err, "location %s: reading its people needs the Factorial API", id);
		goto cleanup;
	}
	sbuf_addf(&q, "location_ids%%5B%%5D=%s", id);
	if (factorial_list(j->a->reader, "employees/employees", sbuf_str(&q), location_person, &p, &e) < 0) {
		sbuf_addf(j->err, "location %s: reading its people from the Factorial API: %s", id, sbuf_str(&e));
		j->a->connection_lost = true;
		j->a->api_unavailable = true;
		goto cleanup;
	}
	apply_sayf(j, "%ld %s of location %s %s again%s", p.n, p.n == 1 ? "person" : "people", id,
	     j->a->revisit ? "queued to be applied" : "applied", p.failed ? " (some failed: see above)" : "");
	rc = p.failed ? -1 : 0;
	if (rc < 0)
		sbuf_addf(j->err, "location %s: %ld of its people could not be applied", id, p.failed);
cleanup:
	free(id);
	sbuf_free(&q);
	sbuf_free(&e);
	return rc;
}

/* What each kind of record a delivery holds is handled by (events.h names the kinds). */
static const struct {
	bool object_body; /* the body must be one JSON object */
	bool groups;      /* it reads and changes groups: under the groups lock */
	int (*handle)(struct job *j, const cJSON *body);
} handlers[] = {
	[EVENT_EMPLOYEE] = { true, false, employee_delivery },
	[EVENT_TEAM] = { true, true, team_delivery },
	[EVENT_MEMBERSHIP] = { false, true, membership_delivery },
	[EVENT_CONTRACT] = { true, false, contract_delivery },
	[EVENT_LOCATION] = { true, false, location_delivery },
};

/* A record (or each of a list) whose ids are not canonical decimal text is
 * refused whole, before the directory is asked anything (ids.h). */
int apply_ids_refused(struct job *j, const cJSON *body)
{
	const cJSON *it;
	struct sbuf why;
	int rc = 0;

	sbuf_init(&why);
	if (cJSON_IsArray(body)) {
		cJSON_ArrayForEach(it, body) {
			if ((rc = ids_check(it, &why)) < 0)
				break;
		}
	} else {
		rc = ids_check(body, &why);
	}
	if (rc < 0) {
		const cJSON *raw = cJSON_IsObject(body) ? cJSON_GetObjectItemCaseSensitive(body, "id") : NULL;
		j->a->hopeless = true;
		if (cJSON_IsString(raw) && !j->own_id)
			sbuf_addf(j->err, "%s \"%s\": %s; nothing changed", j->kind, raw->valuestring, sbuf_str(&why));
		else
			sbuf_addf(j->err, "%s %s: %s; nothing changed", j->kind, j->id, sbuf_str(&why));
	}
	sbuf_free(&why);
	return rc;
}

int apply_delivery(struct apply_ctx *a, const char *type, const cJSON *body, struct sbuf *err)
{
	const struct event_type *t = event_find(type);
	struct job j = { .a = a, .type = type, .err = err };
	int rc = -1;

	a->connection_lost = false;
	a->hopeless = false;
	a->api_unavailable = false;
	a->stale = false;
	a->waits = false;
	a->related_unknown = false;
	job_maps_init(&j);
	if (!t) {
		sbuf_addf(err, "\"%s\" is not a subscription type the agent handles", type);
		goto cleanup;
	}
	j.event = t->action;
	j.kind = event_kind_name(t->kind);
	if (handlers[t->kind].object_body && !cJSON_IsObject(body)) {
		sbuf_adds(err, "the delivery body is not a JSON object");
		goto cleanup;
	}
	j.own_id = mapping_record_id(body);
	j.id = j.own_id ? j.own_id : "?";
	if (apply_ids_refused(&j, body) < 0)
		goto cleanup;
	if (handlers[t->kind].groups)
		apply_groups_enter(&j);
	rc = handlers[t->kind].handle(&j, body);
	if (handlers[t->kind].groups)
		apply_groups_leave(&j);
cleanup:
	if (apply_execute(&j) < 0) /* what a handler planned before it failed, as it always was */
		rc = -1;
	apply_groups_release(&j);
	free(j.own_id);
	job_maps_free(&j);
	return rc;
}

void apply_summary_line(const struct apply_ctx *a, long failed, struct sbuf *out)
{
	const struct apply_summary *s = &a->sum;

	if (a->dry_run)
		sbuf_addf(out, "%u to add, %u to modify, %u to rename, %u to disable, %u to delete", s->add, s->modify,
		          s->rename, s->disable, s->del);
	else if (s->add + s->modify + s->rename + s->disable + s->del == 0 && failed == 0)
		sbuf_adds(out, "nothing to do");
	else
		sbuf_addf(out, "%u added, %u modified, %u renamed, %u disabled, %u deleted", s->add, s->modify, s->rename,
		          s->disable, s->del);
	if (failed > 0)
		sbuf_addf(out, ", %ld failed", failed);
}
