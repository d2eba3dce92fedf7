/*
 * apply_record: a record's entry and its unique values in one search, and
 * the record handlers (employee, team, membership) that the two entry points
 * share.
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

/* ---- the record's entry and its unique values, in one search ------------- */

/* Hooks of a dry evaluation that asks the directory nothing: no reference
 * resolves, no entry exists, every unique value is free, and the values
 * asked about are noted (attr, value, attr, value, ...). */
static int spec_taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	struct vlist *asked = ctx;

	(void)err;
	return vlist_push_copy(asked, attr, strlen(attr)) < 0 || vlist_push_copy(asked, value, strlen(value)) < 0 ? -1 : 0;
}

static int spec_none(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	(void)ctx;
	(void)id;
	(void)err;
	*dn = NULL;
	return 0;
}

static int spec_existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err)
{
	(void)ctx;
	(void)attr;
	(void)out;
	(void)err;
	return 0;
}

/* The unique values a new entry for rec would be checked for first. */
static void unique_values_asked(struct job *j, const cJSON *rec, struct vlist *asked)
{
	struct mapping_result r = { 0 };
	struct mapping_hooks h = {
		.employee_dn = spec_none,
		.taken = spec_taken,
		.existing = spec_existing,
		.ctx = asked,
		.today = j->a->today,
	};

	if (mapping_eval(j->a->m, MAPPING_EMPLOYEE, rec, &h, &r) < 0)
		vlist_clear(asked);
	mapping_result_free(&r);
}

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Whether e holds value in attr, compared as strmap_fold_key compares
 * (ASCII case aside), or with spaces aside too (as a server's matching
 * rule may take them). */
static bool holds_value(const struct ldapw_entry *e, const char *attr, const char *value, bool spaces)
{
	const struct vlist *v = ldapw_entry_values(e, attr);

	for (size_t i = 0; v && i < v->n; i++) {
		const char *x = v->v[i], *y = value;
		for (;; x++, y++) {
			while (spaces && *x == ' ')
				x++;
			while (spaces && *y == ' ')
				y++;
			if (!*x || !*y || ascii_lower((unsigned char)*x) != ascii_lower((unsigned char)*y))
				break;
		}
		if (!*x && !*y)
			return true;
	}
	return false;
}

static bool holds(const struct ldapw_entry *e, const char *attr, const char *value)
{
	return holds_value(e, attr, value, false);
}

static bool looks_like(const struct ldapw_entry *e, const char *attr, const char *value)
{
	return holds_value(e, attr, value, true);
}

/* Sorts what one search for "the key, or any of the unique values asked"
 * found: the entries holding the key stay in *own, the others are noted in
 * j->unique_known as the holders of the values they hold, and the values
 * nobody holds as free.  false (nothing noted, *own untouched) when an
 * entry holds neither as this side compares them (the server matched it
 * by a rule of its own): then the two questions are asked apart. */
/* Keeps dn as the holder of attr=value, unless one is kept already: 0, or -1 out of memory. */
static int keep_holder(struct strmap *known, const char *attr, const char *value, const char *dn)
{
	struct sbuf k;
	int rc;

	if (strmap_get_folded(known, attr, value))
		return 0;
	sbuf_init(&k);
	strmap_fold_key(&k, attr, value);
	rc = k.failed ? -1 : strmap_put(known, sbuf_str(&k), dn);
	sbuf_free(&k);
	return rc;
}

static bool sort_found(struct job *j, const struct mapping_object *o, const char *key, const struct vlist *asked,
                       struct ldapw_entries *found)
{
	bool *mine = calloc(found->n ? found->n : 1, sizeof(*mine));
	struct ldapw_entries rest = { calloc(found->n ? found->n : 1, sizeof(*rest.v)), 0 };
	struct strmap known;
	size_t n = 0;
	bool ok = mine && rest.v;

	strmap_init(&known);
	for (size_t i = 0; i < found->n && ok; i++) {
		const struct ldapw_entry *e = &found->v[i];
		bool any = false;
		if ((mine[i] = holds(e, o->key_attr, key)))
			continue;
		/* one the server may take for the key's entry, or that holds none of the values: ask apart */
		ok = !looks_like(e, o->key_attr, key);
		for (size_t a = 0; ok && a + 1 < asked->n; a += 2) {
			if (holds(e, asked->v[a], asked->v[a + 1])) {
				any = true;
				ok = keep_holder(&known, asked->v[a], asked->v[a + 1], e->dn) == 0;
			}
		}
		ok = ok && any;
	}
	for (size_t a = 0; ok && a + 1 < asked->n; a += 2)
		ok = keep_holder(&known, asked->v[a], asked->v[a + 1], "") == 0;
	if (ok) {
		/* the key's entries stay, at the front; the others go */
		for (size_t i = 0; i < found->n; i++) {
			if (mine[i])
				found->v[n++] = found->v[i];
			else
				rest.v[rest.n++] = found->v[i];
		}
		found->n = n;
		strmap_free(&j->unique_known);
		j->unique_known = known;
		strmap_init(&known);
	}
	strmap_free(&known);
	free(mine);
	ldapw_entries_free(&rest);
	return ok;
}

/* find_by_key for an employee, asking in the same search whether the unique
 * values a new entry would take first are held (hook_taken then answers from
 * what it found): a hire costs the directory one search, not two. */
static int find_employee(struct job *j, const cJSON *rec, const char *key, struct ldapw_entries *own,
                         const struct ldapw_entry **cur)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	const char **attrs = NULL;
	struct vlist asked;
	struct sbuf filter;
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	bool unique = false;
	int rc = -1;

	*cur = NULL;
	for (size_t i = 0; i < o->nattrs; i++)
		unique = unique || (o->attrs[i].flags & MAPPING_ATTR_UNIQUE);
	if (j->a->cache || !unique)
		return apply_find_by_key(j, o, MAPPING_EMPLOYEE, key, own, cur);
	vlist_init(&asked);
	sbuf_init(&filter);
	unique_values_asked(j, rec, &asked);
	if (asked.n == 0) {
		rc = apply_find_by_key(j, o, MAPPING_EMPLOYEE, key, own, cur);
		goto cleanup;
	}
	if (!(attrs = apply_owned_attrs(o, o->key_attr)))
		goto cleanup;
	for (size_t a = 0; a <= asked.n; a += 2) {
		char *one = ldapw_eq_filter(a == 0 ? o->key_attr : asked.v[a - 2], a == 0 ? key : asked.v[a - 1]);
		if (!one)
			goto cleanup;
		sbuf_adds(&filter, one);
		free(one);
	}
	sbuf_prefixf(&filter, "(|");
	sbuf_adds(&filter, ")");
	if (ldapw_search(j->a->lw, o->search_base, sbuf_str(&filter), attrs, 0, &found, &e) != LDAP_SUCCESS) {
		apply_failed(j, o->search_base, &e);
		goto cleanup;
	}
	if (!sort_found(j, o, key, &asked, &found)) {
		rc = apply_find_by_key(j, o, MAPPING_EMPLOYEE, key, own, cur);
		goto cleanup;
	}
	if (found.n > 1) {
		apply_key_held_twice(j, o, key, &found);
		goto cleanup;
	}
	*own = found;
	memset(&found, 0, sizeof(found));
	*cur = own->n ? &own->v[0] : NULL;
	rc = 0;
cleanup:
	ldapw_entries_free(&found);
	free(attrs);
	vlist_free(&asked);
	sbuf_free(&filter);
	return rc;
}

static int settle_state(struct job *j, const cJSON *rec, const struct ldapw_entry *cur, enum mapping_force force,
                        struct mapping_result *r)
{
	if (apply_evaluate(j, MAPPING_EMPLOYEE, rec, cur, force, r) < 0)
		return -1;
	if (r->state != MAPPING_OUT_OF_SCOPE)
		return 0;
	if (!cur) {
		apply_say(j, "out of scope and not in the directory: nothing to do");
		return 1;
	}
	mapping_result_free(r);
	apply_say(j, "out of scope: treated as terminated");
	return apply_evaluate(j, MAPPING_EMPLOYEE, rec, cur, MAPPING_FORCE_TERMINATED, r) < 0 ? -1 : 0;
}

/* The sync cache, the schedule and unresolved references follow the record. */
static void follow_dates(struct job *j, const cJSON *rec, const char *key, const struct mapping_result *r)
{
	char due[11];

	if (j->a->cache) {
		if (r->state == MAPPING_TERMINATED)
			strmap_put(&j->a->cache->terminated, key, NULL);
		else
			strmap_del(&j->a->cache->terminated, key);
	}
	if (r->state == MAPPING_ACTIVE && apply_due_later(j, rec, due) && (j->fresh || strcmp(j->event, "unterminate") != 0))
		apply_schedule(j, rec, due, true);
	else
		apply_schedule(j, rec, NULL, false);
	apply_note_unresolved(j, r, rec);
}

/* Steps from mark on are set aside: the plan goes back to what it was. */
static void plan_truncate(struct job *j, size_t mark)
{
	while (j->plan.n > mark)
		apply_step_free(&j->plan.v[--j->plan.n]);
}

/* The deletion guard, asked about the steps from mark on when they would
 * disable or delete: 1 they go ahead; 0 they are set aside (the caller
 * applies them later, or holds the delivery) or nothing would change; -1
 * failure. */
int apply_guard_asks(struct job *j, const cJSON *rec, const char *key, const char *dn, size_t mark)
{
	int p;

	if (!j->a->defer_destructive)
		return 1;
	p = j->plan.n > mark ? j->a->on_destructive(j->a->destructive_ctx, rec, key, dn) : 0;
	if (p != 1) {
		plan_truncate(j, mark);
		j->deferred = true;
	}
	return p;
}

/* A leaver: out of the groups, the termination policy, references to a moved
 * entry followed; the deletion guard sees that plan before it goes ahead. */
static int leave(struct job *j, const cJSON *rec, const char *key, const struct ldapw_entry *cur,
                 const struct mapping_result *r, bool *settled)
{
	size_t mark = j->plan.n;
	bool renamed = false;
	char *old_dn;
	int rc, p;

	if (!cur) {
		apply_say(j, "terminated and not in the directory: nothing to do");
		return 0;
	}
	if (!(old_dn = strdup(cur->dn)))
		return -1;
	/* from leaving the groups to following the rename, no group changes in between */
	apply_groups_enter(j);
	rc = j->a->m->ngroups ? apply_rule_groups(j, cur->dn, NULL, NULL, 0) : 0;
	if (rc == 0)
		rc = apply_terminate_entry(j, &j->a->m->obj[MAPPING_EMPLOYEE], cur, r, &renamed);
	if (rc == 0 && r->action != MAPPING_DELETE && renamed)
		rc = apply_rewrite_references(j, old_dn, r->dn);
	if (rc == 0 && (p = apply_guard_asks(j, rec, key, cur->dn, mark)) != 1) {
		*settled = false;
		rc = p;
	} else if (rc == 0) {
		if (j->a->st)
			apply_remember_terminated(j, key, true); /* from now on team deliveries keep the leaver out */
		if (r->action == MAPPING_DELETE)
			apply_cache_forget(j, key, cur);
		else if (j->changed)
			apply_cache_keep(j, key, cur, r);
	}
	apply_groups_leave(j);
	free(old_dn);
	return rc;
}

/* A new entry, in the groups of its teams; deliveries that waited for it go again. */
static int arrive(struct job *j, const cJSON *rec, const char *key, const struct mapping_result *r)
{
	if (apply_add_entry(j, r, CAT_ADD) < 0 || apply_rule_groups_active(j, rec, NULL, r->dn) < 0)
		return -1;
	apply_cache_keep(j, key, NULL, r);
	strmap_put(&j->dn_cache, j->id, r->dn);
	/* a leaver who never had an entry comes back: no longer kept out of groups */
	j->added = true; /* deliveries waiting for it go again once it is made */
	return apply_rejoin(j, rec, key, apply_was_terminated(j, key));
}

/* An entry the agent made whose initial password was never set (the apply
 * that made it stopped half way): it gets one first, then opens with the
 * update that follows. */
static int owed_password(struct job *j, const char *key, const struct ldapw_entry *cur)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	struct sbuf e, what;
	struct step *s;
	int owed;

	if (!o->password_length || o->password_method != MAPPING_PASSWORD_MODIFY || !j->a->state || !key)
		return 0;
	sbuf_init(&e);
	owed = store_mark(j->a->state, key, "password", NULL, &e);
	if (owed < 0)
		sbuf_addf(j->err, "employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
	if (owed != 1)
		return owed;
	sbuf_init(&what);
	sbuf_addf(&what, "set the initial password of %s (the apply that made it did not)", cur->dn);
	s = apply_plan_op(j, STEP_PASSWORD, CAT_NONE, cur->dn, sbuf_str(&what));
	sbuf_free(&what);
	if (!s)
		return -1;
	s->password_length = o->password_length;
	s->password_method = o->password_method;
	return 0;
}

/* An entry brought in line; renames followed; a returning employee rejoins their groups. */
static int stay(struct job *j, const cJSON *rec, const char *key, const struct ldapw_entry *cur,
                const struct mapping_result *r)
{
	bool renamed = false;
	char *old_dn = strdup(cur->dn);
	int rc = -1;

	if (!old_dn || owed_password(j, key, cur) < 0 ||
	    apply_update_entry(j, &j->a->m->obj[MAPPING_EMPLOYEE], cur, r, CAT_MODIFY, &renamed) < 0)
		goto cleanup;
	if (j->changed)
		apply_cache_keep(j, key, cur, r);
	if (renamed && apply_rewrite_references(j, old_dn, r->dn) < 0)
		goto cleanup;
	if (apply_rule_groups_active(j, rec, old_dn, r->dn) < 0)
		goto cleanup;
	strmap_put(&j->dn_cache, j->id, r->dn); /* where it stands now, also in a dry run */
	rc = apply_was_terminated(j, key) ? apply_rejoin(j, rec, key, true) : 0;
cleanup:
	free(old_dn);
	return rc;
}

/* One employee record: found by key, mapped, then a leaver, a new entry or an update. */
int apply_employee(struct job *j, const cJSON *given)
{
	enum mapping_force force;
	struct ldapw_entries found = { 0 };
	struct mapping_result r = { 0 };
	const struct ldapw_entry *cur;
	/* with its location and legal entity when the mapping names their fields */
	bool unknown = false;
	cJSON *attached = j->a->related ? related_attach(j->a->related, given, &unknown) : NULL;
	const cJSON *rec = attached ? attached : given;
	char *key = NULL;
	bool settled = false;
	int rc = -1;

	if (j->a->related && !attached) {
		sbuf_adds(j->err, "out of memory");
		goto cleanup;
	}
	if (unknown && !j->a->related_complete) {
		j->a->related_unknown = true;
		sbuf_addf(j->err, "employee %s: names a location or legal entity not read from Factorial yet", j->id);
		goto cleanup;
	}
	if (apply_record_key(j, MAPPING_EMPLOYEE, rec, &key) < 0)
		goto cleanup;
	j->key = key;
	if ((rc = apply_stale(j, rec)) != 0 || (rc = apply_event_says(j, rec, &force)) != 0)
		goto cleanup; /* stale, or a termination for later: nothing more (1), or a failure */
	rc = find_employee(j, rec, key, &found, &cur);
	if (rc == 0)
		rc = settle_state(j, rec, cur, force, &r);
	/* what the search told of unique values holds for this evaluation only:
	 * the job's own changes come after it */
	strmap_clear(&j->unique_known);
	if (rc != 0)
		goto cleanup;
	settled = true;
	follow_dates(j, rec, key, &r);
	if ((rc = apply_follow_read(j, key, cur)) < 0)
		goto cleanup;
	if (r.state == MAPPING_TERMINATED)
		rc = leave(j, rec, key, cur, &r, &settled);
	else if (!cur)
		rc = arrive(j, rec, key, &r);
	else
		rc = stay(j, rec, key, cur, &r);
	if (rc == 0 && !j->deferred)
		rc = apply_follow_leftover(j, cur ? cur->dn : NULL);
cleanup:
	rc = rc > 0 ? 0 : rc;
	if (apply_execute(j) < 0)
		rc = -1;
	if (rc == 0 && !j->deferred)
		apply_follow_done(j);
	if (rc == 0 && j->added)
		apply_revisit_waiters(j);
	if (rc == 0 && settled && j->a->st && !j->returning)
		apply_remember_terminated(j, key, r.state == MAPPING_TERMINATED);
	if (rc == 0 && key && !j->deferred && !j->a->stale)
		apply_remember_version(j, rec);
	free(key);
	mapping_result_free(&r);
	ldapw_entries_free(&found);
	cJSON_Delete(attached);
	return rc;
}

int apply_team(struct job *j, const cJSON *rec, bool del)
{
	const struct mapping *m = j->a->m;
	const struct mapping_object *o = &m->obj[MAPPING_TEAM];
	struct ldapw_entries found = { 0 };
	const struct ldapw_entry *cur = NULL;
	struct mapping_result r = { 0 };
	char *key = NULL;
	bool renamed = false;
	int rc = -1;

	if (apply_record_key(j, MAPPING_TEAM, rec, &key) < 0)
		goto cleanup;
	if (apply_find_by_key(j, o, MAPPING_TEAM, key, &found, &cur) < 0)
		goto cleanup;
	if (del) {
		if (!cur) {
			apply_say(j, "no group in the directory: nothing to do");
			rc = 0;
		} else {
			rc = apply_op_delete(j, cur->dn) < 0 ? -1 : apply_follow_everywhere(j, cur->dn, NULL);
		}
		goto cleanup;
	}
	if (apply_evaluate(j, MAPPING_TEAM, rec, cur, MAPPING_FORCE_NONE, &r) < 0)
		goto cleanup;
	apply_note_unresolved(j, &r, rec);
	if (!cur)
		rc = apply_add_entry(j, &r, CAT_ADD);
	else if ((rc = apply_update_entry(j, o, cur, &r, CAT_MODIFY, &renamed)) == 0 && renamed)
		rc = apply_follow_everywhere(j, cur->dn, r.dn); /* a group named in others (nested) */
cleanup:
	if (apply_execute(j) < 0)
		rc = -1;
	free(key);
	mapping_result_free(&r);
	ldapw_entries_free(&found);
	return rc;
}

/* One membership {employee_id, team_id}: add (or remove) the member's values. */
int apply_membership(struct job *j, const cJSON *rec, bool remove)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	char *emp = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "employee_id"));
	char *team = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "team_id"));
	struct ldapw_entries found = { 0 };
	const struct ldapw_entry *group = NULL;
	char *dn = NULL;
	int rc = -1, got;

	if (!emp || !team) {
		sbuf_addf(j->err, "membership %s: employee_id and team_id are required", j->id);
		goto cleanup;
	}
	if (!t->present) {
		apply_say(j, "the mapping has no teams section: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if ((got = apply_team_group(j, team, &found, &group)) < 0)
		goto cleanup;
	if (!got && remove) {
		apply_say(j, "the team has no group in the directory: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if (!got) {
		cJSON *trec = apply_id_record(team);
		char *key = NULL;
		if (trec && mapping_key(j->a->m, MAPPING_TEAM, trec, &key, j->err) == 0)
			sbuf_addf(j->err, "membership %s: team %s has no group in the directory yet (%s=%s)", j->id, team,
			          t->key_attr, key);
		cJSON_Delete(trec);
		free(key);
		goto cleanup;
	}
	if ((got = apply_lookup_employee(j, emp, &dn, false)) < 0)
		goto cleanup;
	if (got == 0 && !remove) {
		sbuf_addf(j->err, "membership %s: employee %s has no entry in the directory yet", j->id, emp);
		goto cleanup;
	}
	if (got == 0) {
		apply_say(j, "the employee has no entry: nothing to do");
		rc = 0;
		goto cleanup;
	}
	rc = apply_change_membership(j, group, team, emp, remove);
cleanup:
	if (apply_execute(j) < 0)
		rc = -1;
	free(emp);
	free(team);
	free(dn);
	ldapw_entries_free(&found);
	return rc;
}
