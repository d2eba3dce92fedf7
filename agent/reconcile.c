#include "build.h"

#include "reconcile.h"

#include "ids.h"

#include "guard.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/strmap.h"
#include "tmpl.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A termination or orphan action the guard holds until it has counted them all. */
struct held {
	cJSON *record; /* NULL for an orphan */
	char *key;
	char *dn;
};

struct run {
	const struct config *cfg;
	const struct reconcile_options *opt;
	const struct mapping *m;
	struct apply_ctx a;
	struct reconcile_report *rep;
	struct sbuf *report;
	struct sbuf *err;
	struct strmap failed_records; /* records that failed ("employee:42"), each counted once */
	struct strmap titles; /* employee id -> job title of the latest contract version */
	struct strmap title_dates; /* employee id -> date of that version */
	struct related *related; /* locations and legal entities, when the mapping names their fields */
	cJSON *teams;         /* the teams, when read */
	cJSON *team_ids;      /* employee id -> [team ids] */
	cJSON *again;         /* records to look at once more (references resolved later) */
	struct held *held;
	size_t nheld;
	bool orphan_delete;
	long batch;           /* records since the store's last commit */
	double batch_start;   /* when that transaction began (monotonic seconds) */
	bool failed;          /* the directory or the API failed: stop */
	struct factorial *api; /* for the list's total, in progress reports */
	double started, said; /* monotonic: the run's start, the last progress report */
};

/* Whether a signal asked the run to stop (it is then marked interrupted). */
static bool stopped(struct run *r)
{
	if (r->opt->stop && *r->opt->stop)
		r->rep->interrupted = true;
	return r->rep->interrupted;
}

static char *id_of(const cJSON *o, const char *field)
{
	return ids_text(cJSON_GetObjectItemCaseSensitive(o, field), NULL);
}

/* A termination or orphan action: set aside until the guard has counted them all. */
static int on_destructive(void *ctx, const cJSON *record, const char *key, const char *dn)
{
	struct run *r = ctx;
	struct held *v = realloc(r->held, (r->nheld + 1) * sizeof(*v));

	if (!v)
		return -1;
	r->held = v;
	v[r->nheld].record = record ? cJSON_Duplicate(record, 1) : NULL;
	v[r->nheld].key = strdup(key);
	v[r->nheld].dn = strdup(dn);
	r->nheld++;
	return 0;
}

static int keep_title(void *ctx, const cJSON *c)
{
	struct run *r = ctx;
	char *emp;
	const cJSON *title = cJSON_GetObjectItemCaseSensitive(c, "job_title");
	const char *date = "";
	static const char *const keys[] = { "effective_on", "starts_on", "created_at", NULL };

	if (stopped(r))
		return -1;
	emp = id_of(c, "employee_id");

	for (size_t i = 0; keys[i]; i++) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, keys[i]);
		if (cJSON_IsString(d)) {
			date = d->valuestring;
			break;
		}
	}
	/* the title in force today: a version dated later waits for its day (a sync then, or its employee's
	 * next delivery, which schedules it) */
	if (emp && cJSON_IsString(title) && strncmp(date, r->a.today, 10) <= 0) {
		const char *have = strmap_get(&r->title_dates, emp);
		/* the latest version wins; ids ascend, so a tie goes to the later one */
		if (!have || strcmp(date, have) >= 0) {
			strmap_put(&r->titles, emp, title->valuestring);
			strmap_put(&r->title_dates, emp, date);
		}
	}
	free(emp);
	return 0;
}

static int keep_team(void *ctx, const cJSON *t)
{
	struct run *r = ctx;
	const cJSON *members = cJSON_GetObjectItemCaseSensitive(t, "employee_ids"), *m;

	if (stopped(r) || factorial_collect(r->teams, t) < 0)
		return -1;
	cJSON_ArrayForEach(m, members) {
		char *num = ids_text(m, NULL);
		cJSON *list;
		if (!num)
			continue;
		list = cJSON_GetObjectItemCaseSensitive(r->team_ids, num);
		if (!list)
			list = cJSON_AddArrayToObject(r->team_ids, num);
		if (list)
			cJSON_AddItemToArray(list, cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "id"), 0));
		free(num);
	}
	return 0;
}

/* An id for a query string (libcurl escapes it). */
static char *curl_escape_id(const char *id)
{
	char *e = curl_easy_escape(NULL, id, 0), *out = e ? strdup(e) : NULL;

	curl_free(e);
	return out;
}

/* A record failed (record: "employee:42", "team:3", "orphan:KEY"): said
 * each time, counted once, and not looked at a second time. */
static void record_error(struct run *r, const char *record, const char *what)
{
	if (!strmap_get(&r->failed_records, record)) {
		strmap_put(&r->failed_records, record, NULL);
		r->rep->record_errors++;
	}
	sbuf_addf(r->report, "%s\n", what);
}

static void record_error_of(struct run *r, enum mapping_kind kind, const cJSON *rec, const char *what)
{
	char *id = id_of(rec, "id"), key[160];

	snprintf(key, sizeof(key), "%s:%s", kind == MAPPING_TEAM ? "team" : "employee", id ? id : "?");
	record_error(r, key, what);
	free(id);
}

static void record_orphan_error(struct run *r, const char *key, const char *what)
{
	char record[200];

	snprintf(record, sizeof(record), "orphan:%s", key);
	record_error(r, record, what);
}

/* An add sent earlier was refused, or its connection went. */
static void async_error(void *ctx, const char *id, const char *message, bool connection)
{
	struct run *r = ctx;
	char key[160];

	if (connection) {
		if (!r->failed)
			sbuf_adds(r->err, message);
		r->failed = true;
	} else {
		snprintf(key, sizeof(key), "employee:%s", id);
		record_error(r, key, message);
	}
	if (r->rep->differing > 0)
		r->rep->fixed--;
}

static int flush(struct run *r)
{
	if (apply_flush(&r->a) < 0 || r->failed) {
		r->failed = true;
		if (!r->err->len)
			sbuf_adds(r->err, "the connection to the directory failed");
		return -1;
	}
	return 0;
}

/* One record through apply; the counters say whether its entry differed. */
static void handle(struct run *r, enum mapping_kind kind, const cJSON *rec, bool second_look)
{
	struct apply_summary before = r->a.sum;
	struct sbuf err;
	unsigned ops;

	sbuf_init(&err);
	if (second_look) {
		/* a record that failed already is not tried twice */
		char *id = id_of(rec, "id"), key[160];
		snprintf(key, sizeof(key), "%s:%s", kind == MAPPING_TEAM ? "team" : "employee", id ? id : "?");
		free(id);
		if (strmap_get(&r->failed_records, key)) {
			sbuf_free(&err);
			return;
		}
	}
	if (apply_record(&r->a, kind, rec, &err) < 0) {
		if (r->a.connection_lost) {
			sbuf_adds(r->err, sbuf_str(&err));
			r->failed = true;
		} else {
			record_error_of(r, kind, rec, sbuf_str(&err));
		}
	}
	ops = (r->a.sum.add - before.add) + (r->a.sum.modify - before.modify) + (r->a.sum.rename - before.rename) +
	      (r->a.sum.disable - before.disable) + (r->a.sum.del - before.del);
	if (!second_look) {
		r->rep->checked++;
		if (kind == MAPPING_EMPLOYEE && r->a.unresolved && r->again)
			cJSON_AddItemToArray(r->again, cJSON_Duplicate(rec, 1));
	}
	if (ops && !second_look) {
		r->rep->differing++;
		if (!r->a.dry_run)
			r->rep->fixed++;
	}
	sbuf_free(&err);
}

static int on_employee(void *ctx, const cJSON *item)
{
	struct run *r = ctx;
	cJSON *rec;
	char *id;

	if (r->failed || stopped(r))
		return -1;
	r->rep->employees++;
	if (r->opt->progress && mono() - r->said >= 0.25) {
		r->said = mono();
		r->opt->progress(r->opt->progress_ctx, r->rep->employees, factorial_list_total(r->api), r->said - r->started,
		                 false);
	}
	rec = cJSON_Duplicate(item, 1);
	id = id_of(item, "id");
	if (!rec || !id) {
		cJSON_Delete(rec);
		free(id);
		record_error(r, "employee:?", "an employee without an id was skipped");
		return 0;
	}
	if (strmap_get(&r->titles, id)) {
		cJSON_DeleteItemFromObjectCaseSensitive(rec, "job_title");
		cJSON_AddStringToObject(rec, "job_title", strmap_get(&r->titles, id));
	}
	if (r->team_ids) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->team_ids, id);
		cJSON_DeleteItemFromObjectCaseSensitive(rec, "team_ids");
		cJSON_AddItemToObject(rec, "team_ids", t ? cJSON_Duplicate(t, 1) : cJSON_CreateArray());
	}
	handle(r, MAPPING_EMPLOYEE, rec, false);
	cJSON_Delete(rec);
	free(id);
	if (r->a.st && (++r->batch >= 500 || mono() - r->batch_start > 0.25)) {
		/* the audit rows of up to 500 records in one commit, holding the store's write
		 * lock a quarter of a second at most: deliveries commit in between */
		struct sbuf e;
		sbuf_init(&e);
		if (store_commit(r->a.st, &e) < 0 || store_begin(r->a.st, &e) < 0)
			log_warn("sync: %s", sbuf_str(&e));
		sbuf_free(&e);
		r->batch = 0;
		r->batch_start = mono();
	}
	return r->failed ? -1 : 0;
}

static void on_orphan(void *ctx, const char *key, const char *dn)
{
	struct run *r = ctx;
	struct sbuf err;

	if (stopped(r))
		return;
	r->rep->orphans++;
	if (r->cfg->sync.orphans == CONFIG_ORPHANS_REPORT) {
		if (r->opt->verbose || r->rep->orphans <= RECONCILE_ORPHANS_SAID)
			sbuf_addf(r->report, "orphan: %s (%s=%s): no employee in Factorial has this key; left as it is "
			                     "(sync.orphans: report)\n",
			          dn, r->m->obj[MAPPING_EMPLOYEE].key_attr, key);
		return;
	}
	sbuf_init(&err);
	if (apply_orphan(&r->a, key, r->orphan_delete, &err) < 0)
		record_orphan_error(r, key, sbuf_str(&err));
	sbuf_free(&err);
}

/* The guard's verdict on what it holds. */
static bool guard_allows(struct run *r, const struct reconcile_options *opt)
{
	size_t managed = apply_cache_entries(&r->a);
	long long max = r->cfg->safety.max_disables;
	double max_pct = r->cfg->safety.max_disables_percent, pct;

	if (r->nheld == 0)
		return true;
	if (r->rep->employees == 0) {
		sbuf_addf(r->report, "deletion guard: the API listed no employee at all; nothing is disabled or deleted "
		                     "(not even with --force)\n");
		return false;
	}
	if (guard_within(r->cfg, (long)r->nheld, managed, &pct))
		return true;
	if (opt->force) {
		sbuf_addf(r->report, "deletion guard: %zu disables and deletes (%.0f%% of %zu managed entries) are over the "
		                     "limit (safety.max_disables %lld%s); --force: applied\n",
		          r->nheld, pct, managed, max, max_pct < 0 ? "" : ", or max_disables_percent");
		return true;
	}
	if (max_pct < 0)
		sbuf_addf(r->report, "deletion guard: this sync would disable or delete %zu entries (%.0f%% of %zu managed), "
		                     "over safety.max_disables %lld: none of them is applied; check them, then run "
		                     "sync --force:\n",
		          r->nheld, pct, managed, max);
	else
		sbuf_addf(r->report, "deletion guard: this sync would disable or delete %zu entries (%.0f%% of %zu managed), "
		                     "over safety.max_disables %lld or max_disables_percent %g: none of them is applied; "
		                     "check them, then run sync --force:\n",
		          r->nheld, pct, managed, max, max_pct);
	for (size_t i = 0; i < r->nheld; i++)
		sbuf_addf(r->report, "  %s\n", r->held[i].dn);
	return false;
}

/* "name%5B%5D=ID" for a list filter on the one employee of --employee, or NULL. */
static const char *one_employee(struct run *r, struct sbuf *q, const char *name)
{
	char *e;

	sbuf_reset(q);
	if (!r->opt->employee_id)
		return NULL;
	e = curl_escape_id(r->opt->employee_id);
	sbuf_addf(q, "%s%%5B%%5D=%s", name, e ? e : "");
	free(e);
	return sbuf_str(q);
}

/* What the employees are mapped with besides themselves: job titles, locations
 * and legal entities, teams. */
static int read_related(struct run *r, struct factorial *api)
{
	unsigned need = related_needs(r->m);
	struct sbuf q;
	int rc = -1;

	sbuf_init(&q);
	if (mapping_uses_field(r->m, MAPPING_EMPLOYEE, "job_title") &&
	    factorial_list(api, "contracts/contract_versions", one_employee(r, &q, "employee_ids"), keep_title, r,
	                   r->err) < 0)
		goto cleanup;
	if (need && related_load_api(api, need, &r->related, r->err) < 0)
		goto cleanup;
	r->a.related = r->related;
	r->a.related_complete = true;
	if (r->m->obj[MAPPING_TEAM].present || mapping_uses_field(r->m, MAPPING_EMPLOYEE, "team_ids")) {
		r->teams = cJSON_CreateArray();
		r->team_ids = cJSON_CreateObject();
		if (!r->teams || !r->team_ids || factorial_list(api, "teams/teams", NULL, keep_team, r, r->err) < 0)
			goto cleanup;
		if (!mapping_uses_field(r->m, MAPPING_EMPLOYEE, "team_ids")) {
			cJSON_Delete(r->team_ids);
			r->team_ids = NULL;
		}
	}
	rc = 0;
cleanup:
	sbuf_free(&q);
	return rc;
}

static int read_employees(struct run *r, struct factorial *api)
{
	struct sbuf q;
	int rc = 0;

	sbuf_init(&q);
	if (r->m->obj[MAPPING_EMPLOYEE].present &&
	    factorial_list(api, "employees/employees", one_employee(r, &q, "ids"), on_employee, r, r->err) < 0) {
		if (!r->failed && !r->err->len && !r->rep->interrupted)
			sbuf_adds(r->err, "reading the employees failed");
		rc = -1;
	}
	if (rc == 0 && r->opt->employee_id && r->rep->employees == 0)
		sbuf_addf(r->report, "employee %s: not in Factorial\n", r->opt->employee_id);
	sbuf_free(&q);
	return rc;
}

/* A second look at records whose references were created later in the run. */
static int second_look(struct run *r)
{
	const cJSON *rec;

	cJSON_ArrayForEach(rec, r->again) {
		if (stopped(r))
			return -1;
		handle(r, MAPPING_EMPLOYEE, rec, true);
		if (r->failed)
			return -1;
	}
	return 0;
}

/* Orphans, then the deletion guard's verdict on every disable and delete, then what it allows. */
static int settle_destructive(struct run *r)
{
	if (!r->opt->employee_id && r->rep->employees > 0)
		apply_cache_orphans(&r->a, on_orphan, r);
	if (!r->opt->verbose && r->rep->orphans > RECONCILE_ORPHANS_SAID && r->cfg->sync.orphans == CONFIG_ORPHANS_REPORT)
		sbuf_addf(r->report, "orphan: ... and %ld more left as they are (sync --verbose names them all)\n",
		          r->rep->orphans - RECONCILE_ORPHANS_SAID);
	if (r->failed || stopped(r))
		return -1;
	if (!guard_allows(r, r->opt)) {
		r->rep->guard_tripped = true;
		r->rep->guarded = (long)r->nheld;
		return 0;
	}
	r->a.defer_destructive = false;
	for (size_t i = 0; i < r->nheld && !r->failed && !stopped(r); i++) {
		struct sbuf e;
		sbuf_init(&e);
		if (r->held[i].record) {
			handle(r, MAPPING_EMPLOYEE, r->held[i].record, true);
		} else if (apply_orphan(&r->a, r->held[i].key, r->orphan_delete, &e) < 0) {
			if (r->a.connection_lost) {
				sbuf_adds(r->err, sbuf_str(&e));
				r->failed = true;
			} else {
				record_orphan_error(r, r->held[i].key, sbuf_str(&e));
			}
		}
		sbuf_free(&e);
	}
	return r->failed || r->rep->interrupted ? -1 : 0;
}

static int sync_teams(struct run *r)
{
	const cJSON *t;

	if (r->opt->employee_id || !r->teams || !r->m->obj[MAPPING_TEAM].present)
		return 0;
	r->a.defer_destructive = false;
	cJSON_ArrayForEach(t, r->teams) {
		if (stopped(r))
			return -1;
		handle(r, MAPPING_TEAM, t, false);
		if (r->failed)
			return -1;
	}
	return 0;
}

/* Collects what is still in flight and commits the audit rows of what the
 * server confirmed: also when the run stops early. */
static void finish(struct run *r)
{
	struct sbuf e;

	apply_flush(&r->a);
	sbuf_init(&e);
	if (r->a.st && store_commit(r->a.st, &e) < 0)
		log_warn("sync: %s", sbuf_str(&e));
	sbuf_free(&e);
	r->rep->sum = r->a.sum;
}

static void run_free(struct run *r)
{
	apply_cache_free(&r->a);
	for (size_t i = 0; i < r->nheld; i++) {
		cJSON_Delete(r->held[i].record);
		free(r->held[i].key);
		free(r->held[i].dn);
	}
	free(r->held);
	if (r->opt->related_out && !*r->opt->related_out) {
		*r->opt->related_out = r->related; /* handed over */
		r->related = NULL;
	}
	related_free(r->related);
	cJSON_Delete(r->teams);
	cJSON_Delete(r->team_ids);
	cJSON_Delete(r->again);
	strmap_free(&r->failed_records);
	strmap_free(&r->titles);
	strmap_free(&r->title_dates);
}

int reconcile_run(const struct config *cfg, const struct mapping *m, struct ldapw *lw, struct factorial *api,
                  struct store *st, const struct reconcile_options *opt, struct sbuf *ldif, struct sbuf *report,
                  struct reconcile_report *rep, struct sbuf *err)
{
	struct run r = { .cfg = cfg, .opt = opt, .m = m, .rep = rep, .report = report, .err = err };
	char today[16];
	bool complete = false;
	int rc;

	memset(rep, 0, sizeof(*rep));
	strmap_init(&r.failed_records);
	strmap_init(&r.titles);
	strmap_init(&r.title_dates);
	clock_today(today, sizeof(today));
	r.a.m = m;
	r.a.lw = lw;
	r.a.st = opt->dry_run ? NULL : st;
	r.a.state = st;
	r.a.dry_run = opt->dry_run;
	r.a.today = today;
	r.a.ldif = ldif;
	r.a.defer_destructive = true;
	r.a.on_destructive = on_destructive;
	r.a.destructive_ctx = &r;
	r.a.pipeline = !opt->dry_run;
	r.a.async_error = async_error;
	r.a.async_ctx = &r;
	r.orphan_delete = cfg->sync.orphans == CONFIG_ORPHANS_DELETE;
	r.again = cJSON_CreateArray();

	r.api = api;
	r.started = mono();
	r.said = r.started - 1; /* the first employee is reported at once */
	if (apply_cache_load(&r.a, err) < 0 || (r.a.st && store_begin(r.a.st, err) < 0))
		goto cleanup;
	r.batch_start = mono();
	if (read_related(&r, api) < 0 || read_employees(&r, api) < 0 || flush(&r) < 0 || second_look(&r) < 0 ||
	    settle_destructive(&r) < 0 || flush(&r) < 0 || sync_teams(&r) < 0 || flush(&r) < 0)
		goto cleanup;
	complete = true;
cleanup:
	finish(&r);
	if (opt->progress)
		opt->progress(opt->progress_ctx, rep->employees, rep->employees, mono() - r.started, true);
	if (complete)
		rc = (rep->record_errors || rep->guard_tripped) ? 1 : 0;
	else if (rep->interrupted && !r.failed && !r.a.connection_lost)
		rc = 1;
	else
		rc = -1;
	if (rc < 0 && !err->len)
		sbuf_adds(err, "the connection to the directory failed");
	run_free(&r);
	return rc;
}
