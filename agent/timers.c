#include "build.h"

#include "daemon.h"

#include "common/clock.h"
#include "common/log.h"
#include "metrics.h"
#include "reconcile.h"
#include "subscriptions.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- scheduled terminations ---------------------------------------------- */

struct due_ctx {
	struct agentd *a;
	struct store *st;
};

/* What comes due: a termination ("employee"), or a contract version taking
 * effect ("contract": its employee is read again). */
static int enqueue_due(void *ctx, const char *kind, const char *record_id, const char *body)
{
	static const struct {
		const char *kind, *type, *what;
	} due[] = {
		{ "employee", "employees/employee/terminate", "termination due" },
		{ "contract", "contracts/contract_version/update", "contract version taking effect" },
	};
	struct due_ctx *c = ctx;
	struct sbuf err;
	size_t i = 0;
	int rc = 0;

	sbuf_init(&err);
	while (i < sizeof(due) / sizeof(due[0]) && strcmp(kind, due[i].kind) != 0)
		i++;
	if (i == sizeof(due) / sizeof(due[0]))
		goto cleanup;
	if (receiver_submit_text(c->a, due[i].type, body, &err) < 0) {
		log_error("employee %s: the %s today could not be queued: %s", record_id, due[i].what, sbuf_str(&err));
		goto cleanup;
	}
	log_info("employee %s: %s: queued", record_id, due[i].what);
	if (store_schedule_remove(c->st, kind, record_id, &err) < 0)
		log_warn("employee %s: %s", record_id, sbuf_str(&err));
cleanup:
	sbuf_free(&err);
	return rc;
}

/* With OAuth, the refresh token's week: spent in time (factorial_keep_alive)
 * whatever else asks the API, its age a metric, and said a day before it
 * runs out when it cannot be renewed (at most once an hour). */
static void keep_oauth_alive(const struct snapshot *s, struct factorial **api, double *said)
{
	double now = (double)clock_now(), age = -1;
	struct sbuf err;

	if (!s->cfg->factorial.oauth)
		return;
	sbuf_init(&err);
	if (!*api && factorial_open(s->cfg, api, &err) < 0) {
		log_error("OAuth: %s", sbuf_str(&err));
	} else if (factorial_keep_alive(*api, now, &age, &err) < 0 &&
	           (age < 0 || age >= FACTORIAL_REFRESH_TOKEN_LIFE - 86400) && now - *said >= 3600) {
		log_warn("OAuth: the refresh token %scould not be renewed (%s): put a new one in "
		         "factorial.oauth.refresh_token_file (refresh tokens last a week)",
		         age < 0                               ? ""
		         : age >= FACTORIAL_REFRESH_TOKEN_LIFE ? "has run out and "
		                                               : "runs out within a day, and ",
		         sbuf_str(&err));
		*said = now;
	}
	if (*api)
		metrics_token_age(age);
	sbuf_free(&err);
}

void *timers_scheduler_main(void *arg)
{
	struct agentd *a = arg;
	struct store *st = NULL;
	struct factorial *api = NULL;
	double said = 0;
	struct sbuf err;

	sbuf_init(&err);
	{
		struct snapshot *s = agentd_snap_get(a);
		if (store_open(s->cfg->state_dir, &st, &err) < 0)
			log_error("scheduler: %s", sbuf_str(&err));
		agentd_snap_put(a, s);
	}
	while (st) {
		struct snapshot *s = agentd_snap_get(a);
		struct due_ctx dc = { .a = a, .st = st };
		double every = (double)s->cfg->queue.schedule_check;
		char today[16];
		struct timespec ts;
		agentd_snap_put(a, s);
		clock_today(today, sizeof(today));
		sbuf_reset(&err);
		if (store_schedule_due(st, today, enqueue_due, &dc, &err) < 0)
			log_warn("scheduler: %s", sbuf_str(&err));
		s = agentd_snap_get(a);
		keep_oauth_alive(s, &api, &said);
		agentd_snap_put(a, s);
		pthread_mutex_lock(&a->mu);
		/* woken at every commit and reload: the next look comes after the whole period */
		agentd_deadline_in(&ts, every);
		while (!a->stop && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
			;
		if (a->stop) {
			pthread_mutex_unlock(&a->mu);
			break;
		}
		pthread_mutex_unlock(&a->mu);
	}
	factorial_close(api);
	store_close(st);
	sbuf_free(&err);
	return NULL;
}

void timers_request_reconcile(struct agentd *a, const char *why)
{
	pthread_mutex_lock(&a->mu);
	a->reconcile_requested = true;
	a->reconcile_why = why;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* ---- own subscriptions ---------------------------------------------------- */

void *timers_subscriber_main(void *arg)
{
	struct agentd *a = arg;
	struct factorial *api = NULL;
	struct sbuf out, err;

	sbuf_init(&out);
	sbuf_init(&err);
	for (;;) {
		struct snapshot *s = agentd_snap_get(a);
		struct subscriptions_result res;
		double every = (double)s->cfg->webhooks.check_interval;
		struct timespec ts;
		bool once = every <= 0;
		sbuf_reset(&out);
		sbuf_reset(&err);
		factorial_close(api);
		api = NULL;
		if (!s->cfg->webhooks.manage_subscriptions) {
			/* managed by hand: nothing to do until a reload says otherwise */
		} else if (factorial_open(s->cfg, &api, &err) < 0 ||
		           subscriptions_sync(api, s->cfg, false, &out, &res, &err) < 0) {
			metrics_subscriptions(false, 0, 0, agentd_wall_now());
			log_error("subscriptions: %s (trying again in %.0f s)", sbuf_str(&err), once ? 60.0 : every);
			every = once ? 60 : every;
			once = false;
		} else {
			char *line = out.s, *nl;
			metrics_subscriptions(true, (unsigned)s->cfg->webhooks.subscriptions.n,
			                      res.created + res.updated + res.reenabled, agentd_wall_now());
			for (; line && *line; line = nl ? nl + 1 : NULL) {
				nl = strchr(line, '\n');
				if (strncmp(line, "foreign ", 8) == 0)
					log_warn("subscriptions: %.*s", nl ? (int)(nl - line) : (int)strlen(line), line);
				else if (res.created || res.updated || res.deleted)
					log_info("subscriptions: %.*s", nl ? (int)(nl - line) : (int)strlen(line), line);
			}
			if (res.reenabled) {
				log_warn("subscriptions: %u of this agent's subscriptions had been disabled by Factorial (it gave "
				         "up delivering) and were enabled again; deliveries were missed: a full reconcile "
				         "(sync) is needed",
				         res.reenabled);
				timers_request_reconcile(a, "subscriptions were found disabled");
			}
		}
		agentd_snap_put(a, s);
		pthread_mutex_lock(&a->mu);
		if (!a->stop && !once) {
			agentd_deadline_in(&ts, every);
			pthread_cond_timedwait(&a->cv, &a->mu, &ts);
			while (!a->stop && (double)time(NULL) < (double)ts.tv_sec)
				pthread_cond_timedwait(&a->cv, &a->mu, &ts);
		} else if (!a->stop) {
			while (!a->stop)
				pthread_cond_wait(&a->cv, &a->mu);
		}
		if (a->stop) {
			pthread_mutex_unlock(&a->mu);
			break;
		}
		pthread_mutex_unlock(&a->mu);
	}
	factorial_close(api);
	sbuf_free(&out);
	sbuf_free(&err);
	return NULL;
}

/* ---- periodic reconcile ---------------------------------------------------- */

/* One sync as `sync` does it; 0 when it ran (records may have failed), -1
 * when the directory or the API could not be used (it is tried again). */
static int reconcile_once(struct agentd *a, struct snapshot *s, const char *why)
{
	struct related *fresh = NULL;
	struct reconcile_options opt = { .stop = &a->stopping, .related_out = &fresh };
	struct reconcile_report rep;
	struct factorial *api = NULL;
	struct ldapw *lw = NULL;
	struct store *st = NULL;
	struct ldapw_error le;
	struct sbuf err, ldif, report;
	double t0 = agentd_mono_now();
	int rc = -1, r;

	sbuf_init(&err);
	sbuf_init(&ldif);
	sbuf_init(&report);
	log_info("sync: starting (%s)", why);
	if (factorial_open(s->cfg, &api, &err) < 0 || store_open(s->cfg->state_dir, &st, &err) < 0) {
		log_error("sync: %s", sbuf_str(&err));
		goto cleanup;
	}
	if (ldapw_open(s->cfg, &lw, &le) != 0) {
		log_error("sync: directory %s: %s: %s", s->cfg->ldap.uri, le.op, le.text);
		goto cleanup;
	}
	r = reconcile_run(s->cfg, s->m, lw, api, st, &opt, &ldif, &report, &rep, &err);
	if (fresh) /* the workers map with what the sync read */
		workers_related_read(a, fresh, s->related_kinds);
	for (char *line = report.s, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		log_warn("sync: %.*s", nl ? (int)(nl - line) : (int)strlen(line), line);
	}
	if (r < 0) {
		log_error("sync: %s", sbuf_str(&err));
		goto cleanup;
	}
	metrics_drift(rep.checked, rep.differing, rep.fixed, rep.orphans);
	log_info("sync: %ld employees read; %ld records checked, %ld differed, %ld fixed, %ld failed; %ld orphans%s%s "
	         "(%.1f s)",
	         rep.employees, rep.checked, rep.differing, rep.fixed, rep.record_errors, rep.orphans,
	         rep.guard_tripped ? "; the deletion guard held changes back" : "",
	         rep.interrupted ? "; stopped early: the agent is stopping" : "", agentd_mono_now() - t0);
	rc = 0;
cleanup:
	metrics_sync(rc == 0, agentd_wall_now());
	ldapw_close(lw);
	factorial_close(api);
	store_close(st);
	sbuf_free(&err);
	sbuf_free(&ldif);
	sbuf_free(&report);
	return rc;
}

/* Waits until the monotonic time due, a request for a reconcile, or stop;
 * false when stopping. */
static bool reconciler_wait(struct agentd *a, double due)
{
	bool go_on;

	pthread_mutex_lock(&a->mu);
	while (!a->stop && !a->reconcile_requested && agentd_mono_now() < due) {
		struct timespec ts;
		agentd_deadline_in(&ts, fmin(due - agentd_mono_now(), 3600));
		pthread_cond_timedwait(&a->cv, &a->mu, &ts);
	}
	go_on = !a->stop;
	pthread_mutex_unlock(&a->mu);
	return go_on;
}

/* At start (when sync.interval is set), every interval, when asked (SIGUSR1,
 * or subscriptions found disabled); a failed one is tried again after
 * sync.retry_delay, doubling up to the interval. */
void *timers_reconciler_main(void *arg)
{
	struct agentd *a = arg;
	const char *why = "at start";
	double due, retry = 0;

	{
		struct snapshot *s = agentd_snap_get(a);
		due = s->cfg->sync.interval > 0 ? agentd_mono_now() : INFINITY;
		agentd_snap_put(a, s);
	}
	while (reconciler_wait(a, due)) {
		struct snapshot *s = agentd_snap_get(a);
		double every = (double)s->cfg->sync.interval;
		pthread_mutex_lock(&a->mu);
		if (a->reconcile_requested)
			why = a->reconcile_why;
		a->reconcile_requested = false;
		pthread_mutex_unlock(&a->mu);
		if (reconcile_once(a, s, why) == 0) {
			retry = 0;
			due = every > 0 ? agentd_mono_now() + every : INFINITY;
			why = "sync.interval";
		} else {
			retry = retry == 0 ? (double)s->cfg->sync.retry_delay : retry * 2;
			if (every > 0)
				retry = fmin(retry, every);
			due = agentd_mono_now() + retry;
			why = "trying again after a failure";
			log_warn("sync: trying again in %.0f s", retry);
		}
		agentd_snap_put(a, s);
	}
	return NULL;
}

