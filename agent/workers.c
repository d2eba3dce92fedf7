#include "build.h"

#include "daemon.h"

#include "common/json.h"
#include "apply.h"
#include "guard.h"
#include "common/clock.h"
#include "common/log.h"
#include "metrics.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- workers -------------------------------------------------------------- */

/* New deliveries were committed (once per commit, thousands a second at
 * full intake): the workers look at the queue, unless they are paused for
 * an unreachable directory, which they would only note and sleep again. */
void workers_wake(void *ctx)
{
	struct agentd *a = ctx;

	pthread_mutex_lock(&a->mu);
	if (agentd_mono_now() >= a->pause_until)
		pthread_cond_broadcast(&a->work_cv);
	pthread_mutex_unlock(&a->mu);
}

/* The directory (or the API) is unreachable: every worker waits, longer each time. */
static void pause_directory(struct agentd *a, const char *what, const char *why)
{
	double now = agentd_mono_now(), wait;

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

/* The deletion guard in run, asked by apply when a delivery would disable or
 * delete an entry: within the limits of the last hour it goes ahead at once,
 * else it is held, the reason kept.  What it lets through is reserved until
 * guard_settle() records it: workers asking at once are counted one after
 * another, never each against the same count. */
struct guard_note {
	struct worker *w;
	const struct snapshot *s;
	bool held;
	long reserved; /* let through for this delivery, not recorded yet */
	struct sbuf why;
};

static int ask_guard(void *ctx, const cJSON *record, const char *key, const char *dn)
{
	struct guard_note *g = ctx;
	struct agentd *a = g->w->a;
	int r;

	(void)record;
	(void)key;
	(void)dn;
	pthread_mutex_lock(&a->guard_mu);
	r = guard_one_more(g->s->cfg, g->s->m, g->w->st, g->w->lw, agentd_wall_now(), a->guard_reserved, &g->why);
	if (r == 1) {
		a->guard_reserved++;
		g->reserved++;
	}
	pthread_mutex_unlock(&a->guard_mu);
	g->held = r != 1;
	return r < 0 ? -1 : r;
}

/* The apply is over: a disable or delete it made is recorded for the guard
 * (forced ones too), and what it reserved is given back, under the guard's
 * lock so that no question falls between the two. */
static void guard_settle(struct worker *w, struct guard_note *g, const struct apply_ctx *ac)
{
	struct agentd *a = w->a;
	bool made = ac->sum.disable || ac->sum.del;
	struct sbuf err;

	if (!made && !g->reserved)
		return;
	sbuf_init(&err);
	pthread_mutex_lock(&a->guard_mu);
	if (made && store_guard_add(w->st, agentd_wall_now(), &err) < 0)
		log_warn("deletion guard: %s", sbuf_str(&err));
	a->guard_reserved -= g->reserved;
	g->reserved = 0;
	pthread_mutex_unlock(&a->guard_mu);
	sbuf_free(&err);
}

/* A delivery that waited for an employee's entry is queued again now that it exists. */
static void revisit(void *ctx, const char *type, const char *body)
{
	struct agentd *a = ctx;
	struct sbuf err;

	sbuf_init(&err);
	if (receiver_submit_text(a, type, body, &err) < 0)
		log_warn("a %s delivery waiting for a reference could not be queued again: %s", type, sbuf_str(&err));
	sbuf_free(&err);
}

/* The worker's connections, for the snapshot in force: 0, or -1 (all paused) when one cannot be had. */
static int connect_worker(struct worker *w, const struct snapshot *s)
{
	struct agentd *a = w->a;
	struct ldapw_error le;
	struct sbuf err;
	int rc = -1;

	sbuf_init(&err);
	if (w->seen != s) {
		/* a reload may have changed the directory or the API: connect again */
		ldapw_close(w->lw);
		factorial_close(w->api);
		w->lw = NULL;
		w->api = NULL;
		w->seen = s;
	}
	/* always: contract version deliveries read their employee whatever enrich says */
	if (!w->api && factorial_open(s->cfg, &w->api, &err) < 0) {
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
	rc = 0;
cleanup:
	sbuf_free(&err);
	return rc;
}

enum { RELATED_FRESH_SECONDS = 5 };

void workers_related_read(struct agentd *a, struct related *fresh, unsigned kinds)
{
	struct related *old;

	pthread_mutex_lock(&a->related_mu);
	old = a->related;
	a->related = fresh;
	a->related_kinds = kinds;
	a->related_at = agentd_mono_now();
	pthread_mutex_unlock(&a->related_mu);
	related_free(old);
}

/* The related records the snapshot's mapping reads, held for the worker:
 * those read before, or read now when there are none, the mapping reads
 * other kinds, again is asked and they are older than
 * RELATED_FRESH_SECONDS, or now is asked (a location changed).  0 and *out (NULL when the mapping reads none)
 * with *complete (read within those seconds: an id they lack is taken as
 * truly unknown, and a storm of such records reads them at most that
 * often); -1 when the API failed. */
static int worker_related(struct worker *w, const struct snapshot *s, bool again, bool now, struct related **out,
                          bool *complete, struct sbuf *err)
{
	struct agentd *a = w->a;
	unsigned need = s->related_kinds;
	struct related *fresh = NULL;
	int rc = 0;

	*out = NULL;
	*complete = true;
	if (!need)
		return 0;
	pthread_mutex_lock(&a->related_mu);
	if (!a->related || a->related_kinds != need || now ||
	    (again && agentd_mono_now() - a->related_at >= RELATED_FRESH_SECONDS)) {
		if (related_load_api(w->api, need, &fresh, err) < 0) {
			rc = -1;
		} else {
			related_free(a->related);
			a->related = fresh;
			a->related_kinds = need;
			a->related_at = agentd_mono_now();
			log_info("read %zu locations and legal entities from Factorial", related_count(fresh));
		}
	}
	if (rc == 0) {
		*out = related_hold(a->related);
		*complete = agentd_mono_now() - a->related_at < RELATED_FRESH_SECONDS;
	}
	pthread_mutex_unlock(&a->related_mu);
	return rc;
}

/* Applied: the delivery (and what it coalesced) leaves the queue. */
static void applied_ok(struct worker *w, struct queue_delivery *d, struct apply_ctx *ac, double t0)
{
	const char *act = action_of(ac);
	char coalesced[64] = "";
	struct sbuf err;

	sbuf_init(&err);
	if (queue_done(w->q, d, &err) < 0)
		log_error("applied, but the queue could not be updated: %s", sbuf_str(&err));
	metrics_apply(act, true);
	directory_ok(w->a);
	if (d->nids > 1)
		snprintf(coalesced, sizeof(coalesced), " (%zu deliveries coalesced)", d->nids);
	log_info("%s: ok (%.0f ms)%s", act, (agentd_mono_now() - t0) * 1000, coalesced);
	sbuf_free(&err);
}

/* The deletion guard held it: it waits for `queue retry --force`. */
static void applied_held(struct worker *w, struct queue_delivery *d, const char *why)
{
	struct sbuf err;

	sbuf_init(&err);
	if (queue_hold(w->q, d, why, &err) < 0)
		log_error("%s", sbuf_str(&err));
	metrics_apply("held", false);
	log_error("%s", why);
	sbuf_free(&err);
}

/* The directory or the API went away: every worker pauses; nothing is counted against the delivery. */
static void applied_unreachable(struct worker *w, const struct apply_ctx *ac, const char *why)
{
	if (!ac->api_unavailable) {
		/* connect again after the pause */
		ldapw_close(w->lw);
		w->lw = NULL;
		health_directory(w->a, why, false);
	}
	metrics_apply("none", false);
	pause_directory(w->a, ac->api_unavailable ? "Factorial API" : "directory", why);
}

/* The record failed: retried later, or kept as a dead letter after the last attempt (at once when
 * no retry could pass: a body whose ids are not ids). */
static void applied_failed(struct worker *w, struct queue_delivery *d, const struct snapshot *s,
                           const struct apply_ctx *ac, const char *why)
{
	int attempts = d->attempts + 1;
	bool dead = ac->hopeless || attempts >= s->cfg->queue.max_attempts;
	double delay = (double)s->cfg->queue.retry_delay * pow(2, attempts - 1) * (0.8 + 0.4 * ((double)rand() / RAND_MAX));
	struct sbuf err;

	sbuf_init(&err);
	if (queue_failed(w->q, d, why, agentd_wall_now() + delay, dead, &err) < 0)
		log_error("%s", sbuf_str(&err));
	metrics_apply(action_of(ac), false);
	if (dead && ac->hopeless)
		log_error("failed for good (no retry can change it), kept as a dead letter: %s", why);
	else if (dead)
		log_error("failed for good after %d attempt%s, kept as a dead letter: %s", attempts, attempts == 1 ? "" : "s",
		          why);
	else
		log_warn("failed (attempt %d of %lld, next in %.0f s): %s", attempts, s->cfg->queue.max_attempts, delay, why);
	sbuf_free(&err);
}

/* apply_ctx.claim_refs: the records the fresh record names that the delivery
 * did not are claimed for it, unless one is being applied by another worker
 * (then 1: the delivery waits for that one). */
static int claim_refs(void *ctx, enum event_kind kind, const cJSON *record)
{
	struct worker *w = ctx;
	struct agentd *a = w->a;
	const char *mine = w->cur->record_key;
	struct strmap refs;
	int rc = 0;

	strmap_init(&refs);
	event_kind_refs(kind, record, w->cur_m, &refs);
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < refs.cap && rc == 0; i++) {
		const char *key = refs.slots[i].key, *owner = key ? strmap_get(&a->busy, key) : NULL;
		if (owner && strcmp(owner, mine) != 0) {
			free(w->waits_for);
			w->waits_for = strdup(owner);
			rc = w->waits_for ? 1 : -1;
		}
	}
	for (size_t i = 0; i < refs.cap && rc == 0; i++) {
		const char *key = refs.slots[i].key;
		if (key && !strmap_get(&a->busy, key) &&
		    (strmap_put(&a->busy, key, mine) < 0 || strmap_put(&w->claimed, key, NULL) < 0))
			rc = -1;
	}
	pthread_mutex_unlock(&a->mu);
	strmap_free(&refs);
	return rc;
}

/* Enrichment named a record another worker is applying: the delivery waits
 * for its release (or goes again at once when that came already). */
static void applied_waits(struct worker *w, struct queue_delivery *d)
{
	struct agentd *a = w->a;
	const char *owner;
	struct sbuf err;

	sbuf_init(&err);
	pthread_mutex_lock(&a->mu);
	/* still being applied: its own record is in busy, owned by itself (as a
	 * key, it may since be another delivery's reference, whose release
	 * would never wake this one) */
	owner = w->waits_for ? strmap_get(&a->busy, w->waits_for) : NULL;
	if (owner && strcmp(owner, w->waits_for) == 0 && queue_wait(w->q, d, w->waits_for, &err) < 0)
		log_warn("queue: %s", sbuf_str(&err));
	pthread_mutex_unlock(&a->mu);
	log_debug("waits for %s, which is being applied now", w->waits_for ? w->waits_for : "another record");
	sbuf_free(&err);
}

/* The record names a location or legal entity that was not there when they
 * were read: they are read again, and the delivery goes again at once
 * (nothing counted). */
static void related_again(struct worker *w, const struct snapshot *s, const char *why)
{
	struct related *fresh = NULL;
	bool complete;
	struct sbuf err;

	sbuf_init(&err);
	log_info("%s: reading the locations and legal entities again", why);
	if (worker_related(w, s, true, false, &fresh, &complete, &err) < 0)
		applied_unreachable(w, &(struct apply_ctx){ .api_unavailable = true }, sbuf_str(&err));
	related_free(fresh);
	sbuf_free(&err);
}

/* One delivery (a coalesced run): connect, apply once (a disable or delete
 * asks the guard first), then settle it by its outcome. */
static void process(struct worker *w, struct queue_delivery *d)
{
	struct agentd *a = w->a;
	struct snapshot *s = agentd_snap_get(a);
	struct apply_ctx ac = { 0 };
	struct guard_note g = { .w = w, .s = s };
	struct sbuf err, ldif;
	const struct event_type *t = event_find(d->type);
	cJSON *body = NULL;
	char today[16];
	double t0 = agentd_mono_now();
	struct related *rel = NULL;
	bool complete = true;
	int applied = -1;

	sbuf_init(&err);
	sbuf_init(&ldif);
	sbuf_init(&g.why);
	if (connect_worker(w, s) < 0)
		goto cleanup;
	/* a location delivery: its people are applied with its new names, read now */
	if (worker_related(w, s, false, t && t->kind == EVENT_LOCATION, &rel, &complete, &err) < 0) {
		applied_unreachable(w, &(struct apply_ctx){ .api_unavailable = true }, sbuf_str(&err));
		goto cleanup;
	}
	body = json_parse(d->body, strlen(d->body), NULL);
	clock_today(today, sizeof(today));
	ac = (struct apply_ctx){ .m = s->m, .lw = w->lw, .st = w->st, .state = w->st, .today = today, .ldif = &ldif,
		                 .api = s->cfg->factorial.enrich ? w->api : NULL, .reader = w->api, .related = rel,
		                 .related_complete = complete, .groups_lock = &a->groups_mu, .revisit = revisit,
		                 .revisit_ctx = a, .claim_refs = claim_refs, .claim_ctx = w };
	w->cur = d;
	w->cur_m = s->m;
	if (!d->forced) {
		ac.defer_destructive = true;
		ac.on_destructive = ask_guard;
		ac.destructive_ctx = &g;
	}
	if (body)
		applied = apply_delivery(&ac, d->type, body, &err);
	else
		sbuf_adds(&err, "the stored body is not JSON");
	guard_settle(w, &g, &ac);
	if (applied < 0 && g.held && !ac.connection_lost)
		sbuf_addf(&err, "%s%s", err.len ? "; " : "", sbuf_str(&g.why));
	if (applied < 0 && ac.waits)
		applied_waits(w, d);
	else if (applied < 0 && ac.related_unknown)
		related_again(w, s, sbuf_str(&err));
	else if (applied == 0 && g.held)
		applied_held(w, d, sbuf_str(&g.why));
	else if (applied == 0)
		applied_ok(w, d, &ac, t0);
	else if (ac.connection_lost)
		applied_unreachable(w, &ac, sbuf_str(&err));
	else
		applied_failed(w, d, s, &ac, sbuf_str(&err));
cleanup:
	cJSON_Delete(body);
	related_free(rel);
	sbuf_free(&err);
	sbuf_free(&ldif);
	sbuf_free(&g.why);
	agentd_snap_put(a, s);
}

void *workers_main(void *arg)
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
			double now = agentd_mono_now();
			struct timespec ts;
			if (now < a->pause_until) {
				agentd_deadline_in(&ts, a->pause_until - now);
				pthread_cond_timedwait(&a->work_cv, &a->mu, &ts);
				continue;
			}
			sbuf_reset(&err);
			/* a mark left by a release that failed would keep its delivery waiting for good */
			if (a->waits_stale && queue_forget_waits(w->q, &err) == 0)
				a->waits_stale = false;
			sbuf_reset(&err);
			got = queue_next(w->q, agentd_wall_now(), &a->busy, &d, &err);
			if (got == 1) {
				strmap_put(&a->busy, d.record_key, d.record_key);
				for (size_t i = 0; i < d.nrefs; i++)
					strmap_put(&a->busy, d.refs[i], d.record_key);
				break;
			}
			if (got < 0)
				log_warn("queue: %s", sbuf_str(&err));
			agentd_deadline_in(&ts, 1.0);
			pthread_cond_timedwait(&a->work_cv, &a->mu, &ts);
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
		for (size_t i = 0; i < w->claimed.cap; i++) {
			if (w->claimed.slots[i].key)
				strmap_del(&a->busy, w->claimed.slots[i].key);
		}
		strmap_clear(&w->claimed);
		free(w->waits_for);
		w->waits_for = NULL;
		w->cur = NULL;
		sbuf_reset(&err);
		if (queue_release(w->q, d.record_key, &err) < 0) {
			log_warn("queue: %s", sbuf_str(&err));
			a->waits_stale = true;
		}
		pthread_cond_broadcast(&a->work_cv);
		pthread_mutex_unlock(&a->mu);
		queue_delivery_free(&d);
	}
	sbuf_free(&err);
	return NULL;
}

