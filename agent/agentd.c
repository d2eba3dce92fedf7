#include "build.h"

#include "agentd.h"

#include "apply.h"
#include "common/clock.h"
#include "config.h"
#include "common/diag.h"
#include "events.h"
#include "factorial.h"
#include "http.h"
#include "ldapw.h"
#include "common/log.h"
#include "mapping.h"
#include "metrics.h"
#include "queue.h"
#include "reconcile.h"
#include "common/secret.h"
#include "statedir.h"
#include "store.h"
#include "common/strmap.h"
#include "subscriptions.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MAX 10.0 /* seconds between reconnection attempts, at most */
#define HEALTH_GRACE 3.0 /* seconds the directory may go unanswered after a failure before /healthz says 503 */
#define MONITOR_EVERY 1.0 /* seconds between the monitor's looks */
#define PROBE_IDLE 60.0 /* seconds without a directory answer before the monitor asks for one */
#define STORE_PROBE_EVERY 10.0 /* seconds between the monitor's store write checks */

/* The configuration, mapping and challenge in force; replaced whole on reload. */
struct snapshot {
	int refs;
	struct config *cfg;
	struct mapping *m;
	struct secret challenge;
	char *prefix; /* the path of public_url, without a trailing slash */
};

struct agentd;

/* What the workers and the monitor saw, for /healthz: it never asks the
 * directory itself. */
struct health {
	pthread_mutex_t mu;
	double dir_alive;    /* wall time of the last sign the directory is there (an answer, an open connection) */
	double dir_answered; /* of the last answer to a request */
	double dir_failed;   /* of the last failure to reach it */
	char dir_error[512];
	bool store_failed;   /* the last commit (or check) failed */
	char store_error[512];
	long pending, held, dead;
};

/* What one listener serves: everything, or (metrics_listen) only /healthz and /metrics. */
struct listener {
	struct agentd *a;
	bool status_only;
};

struct agentd {
	const char *config_path;
	pthread_mutex_t snap_mu;
	struct snapshot *snap;

	struct queue_committer *committer;
	struct http_server *http;
	struct http_server *mhttp;
	struct listener main_l, status_l;

	pthread_mutex_t mu; /* dispatcher: busy records, pause, stop */
	pthread_cond_t cv;
	struct strmap busy;
	bool stop;
	double pause_until;
	double backoff;

	pthread_t *workers;
	size_t nslots;   /* workers prepared (each with its store handles) */
	size_t nworkers; /* worker threads started */
	pthread_t scheduler;
	bool scheduler_started;
	pthread_t subscriber;
	bool subscriber_started;
	pthread_t reconciler;
	bool reconciler_started;
	bool reconcile_requested; /* SIGUSR1, or a subscription was found disabled: deliveries were missed */
	const char *reconcile_why;

	pthread_t monitor;
	bool monitor_started;
	volatile sig_atomic_t stopping; /* a long sync stops between operations when set */

	pthread_mutex_t groups_mu; /* apply_ctx.groups_lock of every worker */
	pthread_mutex_t side_mu; /* handles the HTTP threads share */
	struct queue *side_q;

	struct statedir_lock *lock;
	int listen_fd, metrics_fd; /* bound before anything is written; served once the store is open */
	struct health health;
};

struct worker {
	struct agentd *a;
	const struct snapshot *seen; /* the snapshot lw and api were opened with */
	struct factorial *api;
	struct ldapw *lw;
	struct queue *q;
	struct store *st;
};

/* Real time, for retry timing: the clock module's injectable "now" only
 * decides which day it is. */
static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void deadline_in(struct timespec *ts, double seconds)
{
	double whole;
	double frac = modf(seconds, &whole);

	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += (time_t)whole;
	ts->tv_nsec += (long)(frac * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* ---- snapshots ------------------------------------------------------------ */

static void snapshot_free(struct snapshot *s)
{
	if (!s)
		return;
	mapping_free(s->m);
	config_free(s->cfg);
	secret_free(&s->challenge);
	free(s->prefix);
	free(s);
}

static char *url_path(const char *url)
{
	CURLU *u = curl_url();
	char *path = NULL, *out = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		size_t n = strlen(path);
		while (n > 0 && path[n - 1] == '/')
			n--;
		out = strndup(path, n);
	}
	curl_free(path);
	curl_url_cleanup(u);
	return out;
}

/* Loads configuration, mapping and challenge; mistakes go to d. */
static int snapshot_load(const char *path, struct snapshot **out, struct diag *d)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	char err[512];
	int rc = -1;

	*out = NULL;
	if (!s)
		return -1;
	s->refs = 1;
	if (config_load(path, &s->cfg, d) < 0 || mapping_load(s->cfg->mapping, &s->m, d) < 0)
		goto cleanup;
	if (secret_read_file(s->cfg->webhooks.challenge_file, &s->challenge, err, sizeof(err)) < 0) {
		diag_add(d, path, 0, 0, "webhooks.challenge_file", "%s", err);
		goto cleanup;
	}
	s->prefix = url_path(s->cfg->webhooks.public_url);
	if (!s->prefix) {
		diag_add(d, path, 0, 0, "webhooks.public_url", "cannot read the path of %s", s->cfg->webhooks.public_url);
		goto cleanup;
	}
	*out = s;
	s = NULL;
	rc = 0;
cleanup:
	snapshot_free(s);
	return rc;
}

static struct snapshot *snap_get(struct agentd *a)
{
	struct snapshot *s;

	pthread_mutex_lock(&a->snap_mu);
	s = a->snap;
	s->refs++;
	pthread_mutex_unlock(&a->snap_mu);
	return s;
}

static void snap_put(struct agentd *a, struct snapshot *s)
{
	bool last;

	pthread_mutex_lock(&a->snap_mu);
	last = --s->refs == 0;
	pthread_mutex_unlock(&a->snap_mu);
	if (last)
		snapshot_free(s);
}

/* ---- HTTP ------------------------------------------------------------------ */

/* The subscription type a path routes to, or NULL. */
static const char *route(const struct snapshot *s, const char *path)
{
	size_t n = strlen(s->prefix);

	if (strncmp(path, s->prefix, n) != 0 || path[n] != '/')
		return NULL;
	for (size_t i = 0; i < s->cfg->webhooks.subscriptions.n; i++)
		if (strcmp(path + n + 1, s->cfg->webhooks.subscriptions.v[i]) == 0)
			return s->cfg->webhooks.subscriptions.v[i];
	return NULL;
}

static bool is_status_path(const char *path)
{
	return strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0;
}

static int precheck(void *ctx, const char *method, const char *path, const char *challenge, long long len)
{
	struct listener *l = ctx;
	struct agentd *a = l->a;
	struct snapshot *s;
	const char *type;
	int status = 0;

	if (is_status_path(path))
		return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ? 0 : 405;
	if (l->status_only)
		return 404;
	s = snap_get(a);
	type = route(s, path);
	if (!type)
		status = 404;
	else if (strcmp(method, "POST") != 0)
		status = 405;
	else if (!challenge || !secret_equals(&s->challenge, challenge, strlen(challenge)))
		status = 401;
	else if (len >= 0 && (unsigned long long)len > (unsigned long long)s->cfg->webhooks.max_body_bytes)
		status = 413;
	if (status) {
		metrics_delivery(type ? type : "unknown", status);
		log_info("delivery refused: %s %s: %d%s", method, path, status,
		         status == 401 ? (challenge ? " (wrong challenge)" : " (no challenge)") : "");
	}
	snap_put(a, s);
	return status;
}

static void refused(void *ctx, const char *path, int status)
{
	struct agentd *a = ((struct listener *)ctx)->a;
	struct snapshot *s = snap_get(a);
	const char *type = route(s, path);

	metrics_delivery(type ? type : "unknown", status);
	log_info("delivery refused: %s: %d (body larger than webhooks.max_body_bytes)", path, status);
	snap_put(a, s);
}

/* ---- health ----------------------------------------------------------------- */

/* A worker or the monitor reached the directory (error NULL; answered: a
 * request was answered, not only a connection seen open) or failed to. */
static void health_directory(struct agentd *a, const char *error, bool answered)
{
	double now = wall_now();

	pthread_mutex_lock(&a->health.mu);
	if (!error) {
		a->health.dir_alive = now;
		if (answered)
			a->health.dir_answered = now;
	} else {
		a->health.dir_failed = now;
		snprintf(a->health.dir_error, sizeof(a->health.dir_error), "%s", error);
	}
	pthread_mutex_unlock(&a->health.mu);
}

static void health_store(struct agentd *a, const char *error)
{
	pthread_mutex_lock(&a->health.mu);
	a->health.store_failed = error != NULL;
	if (error)
		snprintf(a->health.store_error, sizeof(a->health.store_error), "%s", error);
	pthread_mutex_unlock(&a->health.mu);
}

/* Whether the last thing known of the directory is a failure newer than any answer. */
static bool health_doubts_directory(struct agentd *a, double *answered)
{
	bool doubt;

	pthread_mutex_lock(&a->health.mu);
	doubt = a->health.dir_failed >= a->health.dir_answered;
	*answered = a->health.dir_answered;
	pthread_mutex_unlock(&a->health.mu);
	return doubt;
}

/* /healthz: 200 or 503, and what is known, one line each; no request to anything. */
static int health_render(struct agentd *a, struct sbuf *out)
{
	struct snapshot *s = snap_get(a);
	struct health h;
	double now = wall_now();
	bool dir_down, ok;

	pthread_mutex_lock(&a->health.mu);
	h = a->health;
	pthread_mutex_unlock(&a->health.mu);
	dir_down = h.dir_failed >= h.dir_alive && now - h.dir_alive > HEALTH_GRACE;
	ok = !dir_down && !h.store_failed;
	sbuf_adds(out, ok ? "ok\n" : "unavailable\n");
	if (dir_down && h.dir_alive > 0)
		sbuf_addf(out, "directory %s: unreachable for %.0f s: %s\n", s->cfg->ldap.uri, now - h.dir_alive,
		          h.dir_error);
	else if (dir_down)
		sbuf_addf(out, "directory %s: unreachable: %s\n", s->cfg->ldap.uri, h.dir_error);
	else if (h.dir_answered > 0)
		sbuf_addf(out, "directory %s: ok (last answer %.0f s ago)\n", s->cfg->ldap.uri, now - h.dir_answered);
	else
		sbuf_addf(out, "directory %s: ok\n", s->cfg->ldap.uri);
	if (h.store_failed)
		sbuf_addf(out, "%s\n", h.store_error);
	else
		sbuf_adds(out, "state store: ok\n");
	sbuf_addf(out, "queue: %ld pending, %ld held, %ld dead\n", h.pending, h.held, h.dead);
	snap_put(a, s);
	return ok ? 200 : 503;
}

/* Stores a delivery durably, with the record it orders by and the records
 * it names as the event table and the mapping in force say. */
static int submit(struct agentd *a, const struct event_type *t, const cJSON *parsed, const char *body,
                  struct sbuf *err)
{
	struct snapshot *s = snap_get(a);
	char *key = event_record_key(t, parsed);
	struct strmap refs;
	int rc = -1;

	strmap_init(&refs);
	event_refs(t, parsed, s->m, &refs);
	if (!key)
		sbuf_adds(err, "out of memory");
	else
		rc = queue_submit(a->committer, t->name, key, &refs, body, err);
	strmap_free(&refs);
	free(key);
	snap_put(a, s);
	return rc;
}

/* The same, for a body the agent made or kept itself (text). */
static int submit_text(struct agentd *a, const char *type, const char *body, struct sbuf *err)
{
	const struct event_type *t = event_find(type);
	cJSON *parsed = cJSON_Parse(body);
	int rc = -1;

	if (!t || !parsed)
		sbuf_addf(err, "%s: not a delivery the agent can store", type);
	else
		rc = submit(a, t, parsed, body, err);
	cJSON_Delete(parsed);
	return rc;
}

static void deliver(struct agentd *a, const char *type, const char *body, size_t len, struct http_reply *reply)
{
	const struct event_type *t = event_find(type);
	cJSON *j = cJSON_ParseWithLength(body, len);
	const char *reason = NULL;
	struct sbuf err;
	double t0 = mono_now();

	sbuf_init(&err);
	if (len == 0)
		reason = "empty body";
	else if (!j)
		reason = "not valid JSON";
	else if (!cJSON_IsObject(j) && !(cJSON_IsArray(j) && t && t->list_body))
		reason = "not a JSON object";
	if (reason) {
		reply->status = 400;
		sbuf_addf(&reply->body, "%s\n", reason);
		pthread_mutex_lock(&a->side_mu);
		if (queue_reject(a->side_q, type, reason, body, len, &err) < 0)
			log_warn("the rejected log could not be written: %s", sbuf_str(&err));
		pthread_mutex_unlock(&a->side_mu);
		log_info("delivery refused: %s: 400 (%s)", type, reason);
	} else if (submit(a, t, j, body, &err) < 0) {
		reply->status = 503;
		sbuf_adds(&reply->body, "the delivery could not be stored; retry later\n");
		log_error("delivery not stored (answered 503): %s: %s", type, sbuf_str(&err));
	} else {
		reply->status = 200;
		log_debug("delivery stored: %s (%.1f ms)", type, (mono_now() - t0) * 1000);
	}
	metrics_delivery(type, reply->status);
	cJSON_Delete(j);
	sbuf_free(&err);
}

static void handle(void *ctx, const char *method, const char *path, const char *body, size_t len,
                   struct http_reply *reply)
{
	struct agentd *a = ((struct listener *)ctx)->a;

	(void)method;
	if (strcmp(path, "/healthz") == 0) {
		reply->status = health_render(a, &reply->body);
	} else if (strcmp(path, "/metrics") == 0) {
		struct metrics_gauges g = { 0 };
		struct sbuf err;
		sbuf_init(&err);
		pthread_mutex_lock(&a->side_mu);
		if (queue_counts(a->side_q, &g.queue_depth, &g.dead_letters, &g.held, &err) < 0)
			log_warn("metrics: %s", sbuf_str(&err));
		pthread_mutex_unlock(&a->side_mu);
		sbuf_free(&err);
		g.token_unsaved = factorial_token_unsaved();
		metrics_render(&reply->body, &g);
		reply->status = 200;
		reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
	} else {
		struct snapshot *s = snap_get(a);
		const char *type = route(s, path);
		char *t = type ? strdup(type) : NULL;
		snap_put(a, s);
		if (!t) { /* the configuration changed between precheck and now */
			reply->status = 404;
			return;
		}
		deliver(a, t, body, len, reply);
		free(t);
	}
}

/* ---- workers -------------------------------------------------------------- */

static void wake(void *ctx)
{
	struct agentd *a = ctx;

	pthread_mutex_lock(&a->mu);
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

static void commit_observed(double seconds, const char *error, void *ctx)
{
	health_store(ctx, error);
	metrics_commit_seconds(seconds);
}

/* The directory (or the API) is unreachable: every worker waits, longer each time. */
static void pause_directory(struct agentd *a, const char *what, const char *why)
{
	double now = mono_now(), wait;

	pthread_mutex_lock(&a->mu);
	if (now >= a->pause_until) {
		a->backoff = a->backoff == 0 ? 1.0 : fmin(a->backoff * 2, BACKOFF_MAX);
		wait = a->backoff * (0.8 + 0.4 * ((double)rand() / RAND_MAX));
		a->pause_until = now + wait;
		log_warn("%s unavailable (%s); deliveries wait, next attempt in %.1f s", what, why, wait);
	}
	pthread_mutex_unlock(&a->mu);
}

static void directory_ok(struct agentd *a)
{
	health_directory(a, NULL, true);
	pthread_mutex_lock(&a->mu);
	if (a->backoff != 0)
		log_info("directory reachable again");
	a->backoff = 0;
	pthread_mutex_unlock(&a->mu);
}

static const char *action_of(const struct apply_ctx *ac)
{
	const struct apply_summary *s = &ac->sum;

	if (ac->stale)
		return "skipped-stale";
	if (s->add)
		return "add";
	if (s->del)
		return "delete";
	if (s->disable)
		return "disable";
	if (s->rename)
		return "rename";
	if (s->modify)
		return "modify";
	return "none";
}

/* The deletion guard in run: counts disables and deletes over a rolling hour. */
struct guard_note {
	bool destructive;
};

static int note_destructive(void *ctx, const cJSON *record, const char *key, const char *dn)
{
	struct guard_note *g = ctx;

	(void)record;
	(void)key;
	(void)dn;
	g->destructive = true;
	return 0;
}

/* 1 when one more disable or delete stays within the limits of the last hour. */
static int guard_allows_one(struct worker *w, const struct config *cfg, const struct mapping *m, struct sbuf *why)
{
	static const char *const none[] = { "1.1", NULL };
	const struct mapping_object *o = &m->obj[MAPPING_EMPLOYEE];
	struct ldapw_entries all;
	struct ldapw_error le;
	struct sbuf e, f;
	long done;
	double pct;
	int rc = 0;

	sbuf_init(&e);
	sbuf_init(&f);
	done = store_guard_count(w->st, wall_now() - 3600, &e);
	if (done < 0) {
		sbuf_addf(why, "deletion guard: %s", sbuf_str(&e));
		goto cleanup;
	}
	pct = 0;
	if (cfg->safety.max_disables_percent >= 0) {
		sbuf_addf(&f, "(%s=*)", o->key_attr);
		if (ldapw_search_paged(w->lw, o->search_base, sbuf_str(&f), none, 1000, &all, &le) != 0) {
			sbuf_addf(why, "deletion guard: counting the managed entries: %s", le.text);
			goto cleanup;
		}
		pct = all.n ? 100.0 * (double)(done + 1) / (double)all.n : 100.0;
		ldapw_entries_free(&all);
	}
	if (done + 1 > cfg->safety.max_disables ||
	    (cfg->safety.max_disables_percent >= 0 && pct > cfg->safety.max_disables_percent)) {
		sbuf_addf(why,
		          "deletion guard: %ld disables and deletes in the last hour, and this one is over "
		          "safety.max_disables %lld%s; held until `queue retry --force`",
		          done, cfg->safety.max_disables,
		          cfg->safety.max_disables_percent >= 0 ? " or max_disables_percent" : "");
		goto cleanup;
	}
	rc = 1;
cleanup:
	sbuf_free(&e);
	sbuf_free(&f);
	return rc;
}

/* A delivery that waited for an employee's entry is queued again now that it exists. */
static void revisit(void *ctx, const char *type, const char *body)
{
	struct agentd *a = ctx;
	struct sbuf err;

	sbuf_init(&err);
	if (submit_text(a, type, body, &err) < 0)
		log_warn("a %s delivery waiting for a reference could not be queued again: %s", type, sbuf_str(&err));
	sbuf_free(&err);
}

static void process(struct worker *w, struct queue_delivery *d)
{
	struct agentd *a = w->a;
	struct snapshot *s = snap_get(a);
	struct apply_ctx ac = { 0 };
	struct ldapw_error le;
	struct sbuf err, ldif;
	cJSON *body = NULL;
	char today[16];
	double t0 = mono_now();
	char coalesced[64] = "";
	int applied;

	sbuf_init(&err);
	sbuf_init(&ldif);
	if (d->nids > 1)
		snprintf(coalesced, sizeof(coalesced), " (%zu deliveries coalesced)", d->nids);
	if (w->seen != s) {
		/* a reload may have changed the directory or the API: connect again */
		ldapw_close(w->lw);
		factorial_close(w->api);
		w->lw = NULL;
		w->api = NULL;
		w->seen = s;
	}
	if (s->cfg->factorial.enrich && !w->api && factorial_open(s->cfg, &w->api, &err) < 0) {
		log_error("%s", sbuf_str(&err));
		pause_directory(a, "Factorial API", "the client could not be set up");
		goto cleanup;
	}
	if (!w->lw) {
		if (ldapw_open(s->cfg, &w->lw, &le) != 0) {
			health_directory(a, le.text, false);
			pause_directory(a, "directory", le.text);
			goto cleanup;
		}
		directory_ok(a);
	}
	body = cJSON_Parse(d->body);
	clock_today(today, sizeof(today));
	ac.m = s->m;
	ac.lw = w->lw;
	ac.st = w->st;
	ac.state = w->st;
	ac.today = today;
	ac.ldif = &ldif;
	ac.api = w->api;
	ac.groups_lock = &a->groups_mu;
	ac.revisit = revisit;
	ac.revisit_ctx = a;
	applied = -1;
	if (body && !d->forced) {
		/* first with disables and deletes set aside: the guard counts them */
		struct guard_note g = { false };
		ac.defer_destructive = true;
		ac.on_destructive = note_destructive;
		ac.destructive_ctx = &g;
		applied = apply_delivery(&ac, d->type, body, &err);
		if (applied == 0 && g.destructive) {
			struct sbuf why, qe;
			sbuf_init(&why);
			sbuf_init(&qe);
			if (guard_allows_one(w, s->cfg, s->m, &why) != 1) {
				if (queue_hold(w->q, d, sbuf_str(&why), &qe) < 0)
					log_error("%s", sbuf_str(&qe));
				metrics_apply("held", false);
				log_error("%s", sbuf_str(&why));
				sbuf_free(&why);
				sbuf_free(&qe);
				goto cleanup;
			}
			sbuf_free(&why);
			sbuf_free(&qe);
			/* within the limits: now with the disables and deletes */
			ac.defer_destructive = false;
			sbuf_reset(&err);
			applied = apply_delivery(&ac, d->type, body, &err);
		}
	} else if (body) {
		applied = apply_delivery(&ac, d->type, body, &err);
	}
	if (applied == 0) {
		const char *act = action_of(&ac);
		if (ac.sum.disable || ac.sum.del) {
			struct sbuf ge;
			sbuf_init(&ge);
			if (store_guard_add(w->st, wall_now(), &ge) < 0)
				log_warn("deletion guard: %s", sbuf_str(&ge));
			sbuf_free(&ge);
		}
		if (queue_done(w->q, d, &err) < 0)
			log_error("applied, but the queue could not be updated: %s", sbuf_str(&err));
		metrics_apply(act, true);
		directory_ok(a);
		log_info("%s: ok (%.0f ms)%s", act, (mono_now() - t0) * 1000, coalesced);
	} else if (ac.connection_lost) {
		if (!ac.api_unavailable) {
			/* the directory went away: connect again after the pause */
			ldapw_close(w->lw);
			w->lw = NULL;
		}
		metrics_apply("none", false);
		if (!ac.api_unavailable)
			health_directory(a, sbuf_str(&err), false);
		pause_directory(a, ac.api_unavailable ? "Factorial API" : "directory", sbuf_str(&err));
	} else {
		int attempts = d->attempts + 1;
		bool dead = attempts >= s->cfg->queue.max_attempts;
		double delay = (double)s->cfg->queue.retry_delay * pow(2, attempts - 1) * (0.8 + 0.4 * ((double)rand() / RAND_MAX));
		struct sbuf qe;
		if (!body)
			sbuf_adds(&err, "the stored body is not JSON");
		sbuf_init(&qe);
		if (queue_failed(w->q, d, sbuf_str(&err), wall_now() + delay, dead, &qe) < 0)
			log_error("%s", sbuf_str(&qe));
		sbuf_free(&qe);
		metrics_apply(action_of(&ac), false);
		if (dead)
			log_error("failed for good after %d attempt%s, kept as a dead letter: %s", attempts,
			          attempts == 1 ? "" : "s", sbuf_str(&err));
		else
			log_warn("failed (attempt %d of %lld, next in %.0f s): %s", attempts, s->cfg->queue.max_attempts,
			         delay, sbuf_str(&err));
	}
cleanup:
	cJSON_Delete(body);
	sbuf_free(&err);
	sbuf_free(&ldif);
	snap_put(a, s);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct agentd *a = w->a;
	struct sbuf err;

	sbuf_init(&err);
	for (;;) {
		struct queue_delivery d;
		int got = 0;
		pthread_mutex_lock(&a->mu);
		while (!a->stop) {
			double now = mono_now();
			struct timespec ts;
			if (now < a->pause_until) {
				deadline_in(&ts, a->pause_until - now);
				pthread_cond_timedwait(&a->cv, &a->mu, &ts);
				continue;
			}
			sbuf_reset(&err);
			got = queue_next(w->q, wall_now(), &a->busy, &d, &err);
			if (got == 1) {
				strmap_put(&a->busy, d.record_key, d.record_key);
				for (size_t i = 0; i < d.nrefs; i++)
					strmap_put(&a->busy, d.refs[i], d.record_key);
				break;
			}
			if (got < 0)
				log_warn("queue: %s", sbuf_str(&err));
			deadline_in(&ts, 1.0);
			pthread_cond_timedwait(&a->cv, &a->mu, &ts);
		}
		if (a->stop && got != 1) {
			pthread_mutex_unlock(&a->mu);
			break;
		}
		pthread_mutex_unlock(&a->mu);
		log_set_context("delivery %lld %s %s", (long long)d.id, d.type, d.record_key);
		process(w, &d);
		log_clear_context();
		pthread_mutex_lock(&a->mu);
		strmap_del(&a->busy, d.record_key);
		for (size_t i = 0; i < d.nrefs; i++)
			strmap_del(&a->busy, d.refs[i]);
		sbuf_reset(&err);
		if (queue_release(w->q, d.record_key, &err) < 0)
			log_warn("queue: %s", sbuf_str(&err));
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		queue_delivery_free(&d);
	}
	sbuf_free(&err);
	return NULL;
}

/* ---- scheduled terminations ---------------------------------------------- */

struct due_ctx {
	struct agentd *a;
	struct store *st;
};

static int enqueue_due(void *ctx, const char *kind, const char *record_id, const char *body)
{
	struct due_ctx *c = ctx;
	struct sbuf err;
	int rc = 0;

	sbuf_init(&err);
	if (strcmp(kind, "employee") != 0)
		goto cleanup;
	if (submit_text(c->a, "employees/employee/terminate", body, &err) < 0) {
		log_error("employee %s: the termination due today could not be queued: %s", record_id, sbuf_str(&err));
		goto cleanup;
	}
	log_info("employee %s: termination due: queued", record_id);
	if (store_schedule_remove(c->st, kind, record_id, &err) < 0)
		log_warn("employee %s: %s", record_id, sbuf_str(&err));
cleanup:
	sbuf_free(&err);
	return rc;
}

static void *scheduler_main(void *arg)
{
	struct agentd *a = arg;
	struct store *st = NULL;
	struct sbuf err;

	sbuf_init(&err);
	{
		struct snapshot *s = snap_get(a);
		if (store_open(s->cfg->state_dir, &st, &err) < 0)
			log_error("scheduler: %s", sbuf_str(&err));
		snap_put(a, s);
	}
	while (st) {
		struct snapshot *s = snap_get(a);
		struct due_ctx dc = { .a = a, .st = st };
		double every = (double)s->cfg->queue.schedule_check;
		char today[16];
		struct timespec ts;
		snap_put(a, s);
		clock_today(today, sizeof(today));
		sbuf_reset(&err);
		if (store_schedule_due(st, today, enqueue_due, &dc, &err) < 0)
			log_warn("scheduler: %s", sbuf_str(&err));
		pthread_mutex_lock(&a->mu);
		/* woken at every commit and reload: the next look comes after the whole period */
		deadline_in(&ts, every);
		while (!a->stop && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
			;
		if (a->stop) {
			pthread_mutex_unlock(&a->mu);
			break;
		}
		pthread_mutex_unlock(&a->mu);
	}
	store_close(st);
	sbuf_free(&err);
	return NULL;
}

static void request_reconcile(struct agentd *a, const char *why)
{
	pthread_mutex_lock(&a->mu);
	a->reconcile_requested = true;
	a->reconcile_why = why;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

/* ---- own subscriptions ---------------------------------------------------- */

static void *subscriber_main(void *arg)
{
	struct agentd *a = arg;
	struct factorial *api = NULL;
	struct sbuf out, err;

	sbuf_init(&out);
	sbuf_init(&err);
	for (;;) {
		struct snapshot *s = snap_get(a);
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
			log_error("subscriptions: %s (trying again in %.0f s)", sbuf_str(&err), once ? 60.0 : every);
			every = once ? 60 : every;
			once = false;
		} else {
			char *line = out.s, *nl;
			if (res.created || res.updated || res.deleted)
				for (; line && *line; line = nl ? nl + 1 : NULL) {
					nl = strchr(line, '\n');
					log_info("subscriptions: %.*s", nl ? (int)(nl - line) : (int)strlen(line), line);
				}
			if (res.reenabled) {
				log_warn("subscriptions: %u of this agent's subscriptions had been disabled by Factorial (it gave "
				         "up delivering) and were enabled again; deliveries were missed: a full reconcile "
				         "(sync) is needed",
				         res.reenabled);
				request_reconcile(a, "subscriptions were found disabled");
			}
		}
		snap_put(a, s);
		pthread_mutex_lock(&a->mu);
		if (!a->stop && !once) {
			deadline_in(&ts, every);
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
	struct reconcile_options opt = { .stop = &a->stopping };
	struct reconcile_report rep;
	struct factorial *api = NULL;
	struct ldapw *lw = NULL;
	struct store *st = NULL;
	struct ldapw_error le;
	struct sbuf err, ldif, report;
	double t0 = mono_now();
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
	         rep.interrupted ? "; stopped early: the agent is stopping" : "", mono_now() - t0);
	rc = 0;
cleanup:
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
	while (!a->stop && !a->reconcile_requested && mono_now() < due) {
		struct timespec ts;
		deadline_in(&ts, fmin(due - mono_now(), 3600));
		pthread_cond_timedwait(&a->cv, &a->mu, &ts);
	}
	go_on = !a->stop;
	pthread_mutex_unlock(&a->mu);
	return go_on;
}

/* At start (when sync.interval is set), every interval, when asked (SIGUSR1,
 * or subscriptions found disabled); a failed one is tried again after
 * sync.retry_delay, doubling up to the interval. */
static void *reconciler_main(void *arg)
{
	struct agentd *a = arg;
	const char *why = "at start";
	double due, retry = 0;

	{
		struct snapshot *s = snap_get(a);
		due = s->cfg->sync.interval > 0 ? mono_now() : INFINITY;
		snap_put(a, s);
	}
	while (reconciler_wait(a, due)) {
		struct snapshot *s = snap_get(a);
		double every = (double)s->cfg->sync.interval;
		pthread_mutex_lock(&a->mu);
		if (a->reconcile_requested)
			why = a->reconcile_why;
		a->reconcile_requested = false;
		pthread_mutex_unlock(&a->mu);
		if (reconcile_once(a, s, why) == 0) {
			retry = 0;
			due = every > 0 ? mono_now() + every : INFINITY;
			why = "sync.interval";
		} else {
			retry = retry == 0 ? (double)s->cfg->sync.retry_delay : retry * 2;
			if (every > 0)
				retry = fmin(retry, every);
			due = mono_now() + retry;
			why = "trying again after a failure";
			log_warn("sync: trying again in %.0f s", retry);
		}
		snap_put(a, s);
	}
	return NULL;
}

/* ---- the monitor: health without a request per probe ------------------------ */

struct watch {
	const struct snapshot *seen; /* the snapshot lw was opened with */
	struct ldapw *lw;
	double next_try; /* wall time of the next connection attempt */
	double backoff;
	double store_checked;
};

/* Keeps one quiet connection open: while its socket stays open and nothing
 * says otherwise, the directory is there; a request is sent only when the
 * connection was closed, when a worker saw a failure, or after PROBE_IDLE
 * without any answer. */
static void watch_directory(struct agentd *a, const struct snapshot *s, struct watch *w, double now)
{
	static const char *const none[] = { "1.1", NULL };
	struct ldapw_entries e;
	struct ldapw_error le;
	double answered;

	if (w->seen != s) {
		ldapw_close(w->lw);
		w->lw = NULL;
		w->seen = s;
		w->next_try = 0;
	}
	if (w->lw) {
		bool doubt = health_doubts_directory(a, &answered);
		int alive = ldapw_alive(w->lw);
		if (alive == 1 && !doubt && now - answered < PROBE_IDLE) {
			health_directory(a, NULL, false);
			return;
		}
		if (alive != 0 && ldapw_read(w->lw, "", none, &e, &le) == 0) {
			ldapw_entries_free(&e);
			health_directory(a, NULL, true);
			return;
		}
		ldapw_close(w->lw); /* closed by the server: connect again now */
		w->lw = NULL;
		w->next_try = 0;
		w->backoff = 0;
	}
	if (now < w->next_try)
		return;
	if (ldapw_open(s->cfg, &w->lw, &le) == 0) {
		health_directory(a, NULL, true);
		w->backoff = 0;
		return;
	}
	w->lw = NULL;
	health_directory(a, le.text, false);
	w->backoff = w->backoff == 0 ? 1.0 : fmin(w->backoff * 2, BACKOFF_MAX);
	w->next_try = now + w->backoff;
}

/* The store: a write check now and then (more often while it fails), and the queue's counts. */
static void watch_store(struct agentd *a, struct store *st, struct queue *q, struct watch *w, double now)
{
	struct sbuf err;
	long pending, dead, held;
	bool failed;

	sbuf_init(&err);
	pthread_mutex_lock(&a->health.mu);
	failed = a->health.store_failed;
	pthread_mutex_unlock(&a->health.mu);
	if (failed || now - w->store_checked >= STORE_PROBE_EVERY) {
		w->store_checked = now;
		health_store(a, store_probe(st, &err) < 0 ? sbuf_str(&err) : NULL);
	}
	sbuf_reset(&err);
	if (queue_counts(q, &pending, &dead, &held, &err) == 0) {
		pthread_mutex_lock(&a->health.mu);
		a->health.pending = pending;
		a->health.dead = dead;
		a->health.held = held;
		pthread_mutex_unlock(&a->health.mu);
	}
	sbuf_free(&err);
}

static void *monitor_main(void *arg)
{
	struct agentd *a = arg;
	struct watch w = { 0 };
	struct store *st = NULL;
	struct queue *q = NULL;
	struct sbuf err;
	bool go_on = true;

	sbuf_init(&err);
	{
		struct snapshot *s = snap_get(a);
		if (store_open(s->cfg->state_dir, &st, &err) < 0 || queue_open(s->cfg->state_dir, &q, &err) < 0)
			log_error("monitor: %s", sbuf_str(&err));
		snap_put(a, s);
	}
	if (st)
		store_set_busy_timeout(st, 1000);
	while (go_on && st && q) {
		struct snapshot *s = snap_get(a);
		struct timespec ts;
		double now = wall_now();
		watch_directory(a, s, &w, now);
		watch_store(a, st, q, &w, now);
		snap_put(a, s);
		pthread_mutex_lock(&a->mu);
		/* the condition is broadcast at every commit: wait the whole period all the same */
		deadline_in(&ts, MONITOR_EVERY);
		while (!a->stop && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
			;
		go_on = !a->stop;
		pthread_mutex_unlock(&a->mu);
	}
	ldapw_close(w.lw);
	store_close(st);
	queue_close(q);
	sbuf_free(&err);
	return NULL;
}

/* ---- life cycle ----------------------------------------------------------- */

static void log_diag(struct diag *d, const char *what)
{
	char line[2048];
	FILE *null = fopen("/dev/null", "w");

	if (null) {
		diag_print(d, null); /* sorts */
		fclose(null);
	}
	log_error("%s", what);
	for (size_t i = 0; i < d->n; i++) {
		diag_format(d, i, line, sizeof(line));
		log_error("%s", line);
	}
}

static void reload(struct agentd *a)
{
	struct snapshot *n = NULL, *old;
	struct diag d;

	diag_init(&d);
	if (snapshot_load(a->config_path, &n, &d) < 0) {
		log_diag(&d, "reload refused: the new configuration or mapping has mistakes; the running one stays");
		diag_free(&d);
		return;
	}
	diag_free(&d);
	pthread_mutex_lock(&a->snap_mu);
	old = a->snap;
	a->snap = n;
	pthread_mutex_unlock(&a->snap_mu);
	if (strcmp(old->cfg->webhooks.listen, n->cfg->webhooks.listen) != 0 ||
	    strcmp(old->cfg->state_dir, n->cfg->state_dir) != 0)
		log_warn("reload: webhooks.listen and state_dir take effect at the next start");
	log_set_level((enum log_level)n->cfg->log.level);
	log_info("configuration and mapping reloaded (%s, %s)", n->cfg->path, n->m->path);
	snap_put(a, old);
	wake(a);
}

/* The webhook listener's certificate and key, read before anything is written. */
struct tls_files {
	char *cert;
	struct secret key;
};

static int read_tls(const struct config *cfg, struct tls_files *t, struct sbuf *err)
{
	FILE *fp;
	struct sbuf b;
	char chunk[4096], e[512];
	size_t n;

	if (!cfg->webhooks.tls_cert_file)
		return 0;
	fp = fopen(cfg->webhooks.tls_cert_file, "re");
	if (!fp) {
		sbuf_addf(err, "webhooks.tls_cert_file: cannot read %s: %s", cfg->webhooks.tls_cert_file, strerror(errno));
		return -1;
	}
	sbuf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sbuf_add(&b, chunk, n);
	fclose(fp);
	t->cert = sbuf_detach(&b);
	if (secret_read_file(cfg->webhooks.tls_key_file, &t->key, e, sizeof(e)) < 0) {
		sbuf_addf(err, "webhooks.tls_key_file: %s", e);
		return -1;
	}
	return 0;
}

/* One agent per state folder: the lock is taken before anything is written. */
static int take_state_dir(struct agentd *a, struct sbuf *err)
{
	const char *dir = a->snap->cfg->state_dir;
	struct statedir_holder h;
	char who[64];
	int r;

	if (statedir_prepare(dir, err) < 0 || (r = statedir_lock(dir, &a->lock, &h, err)) < 0)
		return -1;
	if (r == 0)
		return 0;
	statedir_holder_text(&h, who, sizeof(who));
	sbuf_addf(err,
	          "the state folder %s is in use by %s: one agent per state folder (two would answer and apply the same "
	          "deliveries, and take each other's webhook subscriptions); stop that one, or give this one its own "
	          "state_dir",
	          dir, who);
	return -1;
}

/* Both ports, bound before the store is opened: a port in use ends the start having written nothing. */
static int bind_listeners(struct agentd *a, struct sbuf *err)
{
	const struct config *cfg = a->snap->cfg;
	struct sbuf e;
	int rc = -1;

	sbuf_init(&e);
	if (http_bind(cfg->webhooks.listen, &a->listen_fd, &e) < 0) {
		sbuf_addf(err, "webhooks.listen: %s", sbuf_str(&e));
		goto cleanup;
	}
	if (cfg->webhooks.metrics_listen && http_bind(cfg->webhooks.metrics_listen, &a->metrics_fd, &e) < 0) {
		sbuf_addf(err, "webhooks.metrics_listen: %s", sbuf_str(&e));
		goto cleanup;
	}
	rc = 0;
cleanup:
	sbuf_free(&e);
	return rc;
}

/* The store handles: the HTTP threads' (rejected bodies), the committer's, each worker's. */
static int open_stores(struct agentd *a, struct worker **ws, struct sbuf *err)
{
	const char *dir = a->snap->cfg->state_dir;

	if (queue_open(dir, &a->side_q, err) < 0 || queue_forget_waits(a->side_q, err) < 0)
		return -1;
	queue_set_busy_timeout(a->side_q, 2000);
	if (queue_committer_start(dir, &a->committer, err) < 0)
		return -1;
	queue_committer_observe(a->committer, commit_observed, a);
	queue_committer_notify(a->committer, wake, a);
	a->nslots = (size_t)a->snap->cfg->queue.workers;
	*ws = calloc(a->nslots, sizeof(**ws));
	a->workers = calloc(a->nslots, sizeof(*a->workers));
	if (!*ws || !a->workers) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < a->nslots; i++) {
		(*ws)[i].a = a;
		if (queue_open(dir, &(*ws)[i].q, err) < 0 || store_open(dir, &(*ws)[i].st, err) < 0)
			return -1;
	}
	return 0;
}

static int serve(struct listener *l, const struct config *cfg, const char *listen, int *fd,
                 const struct tls_files *t, struct http_server **out, struct sbuf *err)
{
	struct http_callbacks cb = { .precheck = precheck, .handle = handle, .refused = refused, .ctx = l };
	struct http_options o = {
		.listen = listen,
		.fd = *fd,
		.max_body = (size_t)cfg->webhooks.max_body_bytes,
		.timeout = (unsigned)cfg->webhooks.request_timeout,
		.threads = 8,
	};
	int rc;

	if (t->cert && !l->status_only) {
		o.tls_cert = t->cert;
		o.tls_key = t->key.data;
	}
	rc = http_start(&o, &cb, out, err);
	if (rc == 0)
		*fd = -1; /* the server owns it now */
	return rc;
}

static int start_serving(struct agentd *a, const struct tls_files *t, struct sbuf *err)
{
	const struct config *cfg = a->snap->cfg;

	a->main_l.a = a;
	a->status_l.a = a;
	a->status_l.status_only = true;
	if (serve(&a->main_l, cfg, cfg->webhooks.listen, &a->listen_fd, t, &a->http, err) < 0)
		return -1;
	if (cfg->webhooks.metrics_listen &&
	    serve(&a->status_l, cfg, cfg->webhooks.metrics_listen, &a->metrics_fd, t, &a->mhttp, err) < 0)
		return -1;
	return 0;
}

/* Workers, the monitor, the scheduler, subscription upkeep and the reconciler:
 * only once everything before has succeeded. */
static int start_threads(struct agentd *a, struct worker *ws, struct sbuf *err)
{
	for (size_t i = 0; i < a->nslots; i++) {
		if (pthread_create(&a->workers[i], NULL, worker_main, &ws[i]) != 0) {
			sbuf_adds(err, "cannot start the worker threads");
			return -1;
		}
		a->nworkers++;
	}
	a->monitor_started = pthread_create(&a->monitor, NULL, monitor_main, a) == 0;
	a->scheduler_started = pthread_create(&a->scheduler, NULL, scheduler_main, a) == 0;
	a->subscriber_started = pthread_create(&a->subscriber, NULL, subscriber_main, a) == 0;
	a->reconciler_started = pthread_create(&a->reconciler, NULL, reconciler_main, a) == 0;
	if (!a->monitor_started || !a->scheduler_started || !a->subscriber_started || !a->reconciler_started) {
		sbuf_adds(err, "cannot start the daemon's threads");
		return -1;
	}
	return 0;
}

/* Until SIGTERM or SIGINT: SIGHUP reloads, SIGUSR1 asks for a reconcile. */
static void wait_for_signals(struct agentd *a, const sigset_t *set)
{
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP: reloading %s", a->config_path);
			reload(a);
		} else if (sig == SIGUSR1) {
			log_info("SIGUSR1: a full reconcile is requested");
			request_reconcile(a, "SIGUSR1");
		} else {
			log_info("%s: stopping: no new deliveries; finishing what is in flight",
			         sig == SIGTERM ? "SIGTERM" : "SIGINT");
			return;
		}
	}
}

/* Stops what was started, in the reverse order: no new deliveries first. */
static void stop_all(struct agentd *a, struct worker *ws)
{
	http_quiesce(a->http);
	http_quiesce(a->mhttp);
	http_stop(a->http);
	http_stop(a->mhttp);
	a->http = a->mhttp = NULL;
	a->stopping = 1;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	for (size_t i = 0; ws && a->workers && i < a->nworkers; i++)
		pthread_join(a->workers[i], NULL);
	if (a->monitor_started)
		pthread_join(a->monitor, NULL);
	if (a->scheduler_started)
		pthread_join(a->scheduler, NULL);
	if (a->subscriber_started)
		pthread_join(a->subscriber, NULL);
	if (a->reconciler_started)
		pthread_join(a->reconciler, NULL);
	for (size_t i = 0; ws && i < a->nslots; i++) {
		ldapw_close(ws[i].lw);
		factorial_close(ws[i].api);
		queue_close(ws[i].q);
		store_close(ws[i].st);
	}
	queue_committer_stop(a->committer);
	queue_close(a->side_q);
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	if (a->metrics_fd >= 0)
		close(a->metrics_fd);
	statedir_unlock(a->lock);
}

/* Configuration, secrets, the state folder's lock, the ports, the store; only
 * then workers, timers and the start-up reconcile: a start that fails has
 * written nothing, neither to the directory, nor to Factorial, nor to the store. */
int agentd_run(const char *config_path)
{
	struct agentd a = { .config_path = config_path, .listen_fd = -1, .metrics_fd = -1 };
	struct tls_files tls = { 0 };
	struct worker *ws = NULL;
	struct diag d;
	struct sbuf err;
	sigset_t set;
	int rc = 1;

	diag_init(&d);
	sbuf_init(&err);
	pthread_mutex_init(&a.snap_mu, NULL);
	pthread_mutex_init(&a.mu, NULL);
	pthread_cond_init(&a.cv, NULL);
	pthread_mutex_init(&a.side_mu, NULL);
	pthread_mutex_init(&a.groups_mu, NULL);
	pthread_mutex_init(&a.health.mu, NULL);
	strmap_init(&a.busy);
	if (snapshot_load(config_path, &a.snap, &d) < 0) {
		diag_print(&d, stderr);
		rc = 2;
		goto cleanup;
	}
	log_setup((enum log_level)a.snap->cfg->log.level, (enum log_target)a.snap->cfg->log.target, true);
	srand((unsigned)(time(NULL) ^ getpid()));
	/* signals are taken by sigwait(); every thread started below inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (read_tls(a.snap->cfg, &tls, &err) < 0 || take_state_dir(&a, &err) < 0 || bind_listeners(&a, &err) < 0 ||
	    open_stores(&a, &ws, &err) < 0 || start_serving(&a, &tls, &err) < 0) {
		log_error("cannot start: %s", sbuf_str(&err));
		goto cleanup;
	}
	secret_free(&tls.key);
	if (start_threads(&a, ws, &err) < 0) {
		log_error("%s", sbuf_str(&err));
		goto cleanup;
	}
	log_info("listening on %s for %zu subscription types under %s/; state in %s; %zu workers",
	         a.snap->cfg->webhooks.listen, a.snap->cfg->webhooks.subscriptions.n, a.snap->prefix,
	         a.snap->cfg->state_dir, a.nworkers);
	wait_for_signals(&a, &set);
	rc = 0;
cleanup:
	if (a.snap)
		stop_all(&a, ws);
	if (rc == 0)
		log_info("stopped");
	free(tls.cert);
	secret_free(&tls.key);
	free(ws);
	free(a.workers);
	if (a.snap)
		snap_put(&a, a.snap);
	strmap_free(&a.busy);
	pthread_mutex_destroy(&a.snap_mu);
	pthread_mutex_destroy(&a.mu);
	pthread_cond_destroy(&a.cv);
	pthread_mutex_destroy(&a.side_mu);
	pthread_mutex_destroy(&a.groups_mu);
	pthread_mutex_destroy(&a.health.mu);
	diag_free(&d);
	sbuf_free(&err);
	return rc;
}
