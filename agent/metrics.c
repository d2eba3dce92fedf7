#include "build.h"

#include "metrics.h"

#include "common/pmutex.h"
#include "common/seqread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "factorial_ldap_agent_"

static const double bounds[] = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define NB (sizeof(bounds) / sizeof(bounds[0]))

struct histogram {
	unsigned long buckets[NB];
	unsigned long count;
	double sum;
};

/* One counter value: its two label values, inline, so that the whole state
 * is plain memory another process can map. */
struct labelled {
	char a[64];
	char b[16];
	unsigned long n;
};

#define ROWS 128 /* label pairs per counter: 14 types x 7 statuses fit, as do the operations */

struct table {
	struct labelled v[ROWS];
	size_t n;
};

struct metrics_state {
	pthread_mutex_t mu; /* robust and process-shared once metrics_share() has run */
	atomic_uint seq;    /* for readers without the lock (seqread) */
	struct table deliveries, applies;
	struct histogram ldap_h, commit_h;
	long drift[4];
	bool token_unsaved;
	double token_age; /* seconds, -1: no OAuth refresh token */
	double sync_ok_at, sync_failed_at; /* wall time, 0: never */
	unsigned long sync_failures;
	bool subs_checked, subs_ok;
	unsigned subs_wanted;
	unsigned long subs_repaired;
	double subs_at;
};

static struct metrics_state local = { .mu = PTHREAD_MUTEX_INITIALIZER };
static struct metrics_state *st = &local; /* where this process counts */
static const struct metrics_state *published; /* the daemon's, read-only here (in the receiver) */

size_t metrics_shared_size(void)
{
	return sizeof(struct metrics_state);
}

int metrics_share(void *mem, bool init)
{
	struct metrics_state *m = mem;

	if (init) {
		memset(m, 0, sizeof(*m));
		if (pmutex_init(&m->mu) < 0)
			return -1;
	}
	st = m;
	return 0;
}

void metrics_attach(const void *mem)
{
	published = mem;
}

/* A process that died holding the lock left counters that are at worst one
 * increment short: carry on. */
static void lock(void)
{
	pmutex_lock(&st->mu);
	seq_begin(&st->seq);
}

static void unlock(void)
{
	seq_end(&st->seq);
	pthread_mutex_unlock(&st->mu);
}

static void table_check(struct table *t)
{
	if (t->n > ROWS)
		t->n = ROWS;
	for (size_t i = 0; i < t->n; i++) {
		t->v[i].a[sizeof(t->v[i].a) - 1] = '\0';
		t->v[i].b[sizeof(t->v[i].b) - 1] = '\0';
	}
}

/* Everything counted, whole: in the receiver, the daemon's figures (copied from its read-only
 * mapping, checked before use) with its own deliveries and commits. */
static void snapshot(struct metrics_state *out)
{
	if (!published) {
		lock();
		memcpy(out, st, sizeof(*out));
		unlock();
		return;
	}
	seq_copy(out, published, sizeof(*out), &published->seq);
	table_check(&out->applies); /* its deliveries are this process's own, below */
	lock();
	out->deliveries = st->deliveries;
	for (size_t i = 0; i < NB; i++)
		out->commit_h.buckets[i] += st->commit_h.buckets[i];
	out->commit_h.count += st->commit_h.count;
	out->commit_h.sum += st->commit_h.sum;
	unlock();
}

static void bump(struct table *t, const char *a, const char *b)
{
	struct labelled *v;

	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].a, a) == 0 && strcmp(t->v[i].b, b) == 0) {
			t->v[i].n++;
			return;
		}
	}
	if (t->n == ROWS)
		return;
	v = &t->v[t->n];
	snprintf(v->a, sizeof(v->a), "%s", a);
	snprintf(v->b, sizeof(v->b), "%s", b);
	v->n = 1;
	t->n++;
}

void metrics_delivery(const char *type, int status)
{
	char s[16];

	snprintf(s, sizeof(s), "%d", status);
	lock();
	bump(&st->deliveries, type, s);
	unlock();
}

void metrics_apply(const char *operation, bool ok)
{
	lock();
	bump(&st->applies, operation, ok ? "ok" : "error");
	unlock();
}

static void observe(struct histogram *h, double s)
{
	lock();
	for (size_t i = 0; i < NB; i++)
		if (s <= bounds[i])
			h->buckets[i]++;
	h->count++;
	h->sum += s;
	unlock();
}

void metrics_ldap_seconds(double s)
{
	observe(&st->ldap_h, s);
}

void metrics_commit_seconds(double s)
{
	observe(&st->commit_h, s);
}

void metrics_token_age(double seconds)
{
	lock();
	st->token_age = seconds;
	unlock();
}

void metrics_token_unsaved(bool unsaved)
{
	lock();
	st->token_unsaved = unsaved;
	unlock();
}

void metrics_drift(long checked, long differing, long fixed, long orphans)
{
	lock();
	st->drift[0] = checked;
	st->drift[1] = differing;
	st->drift[2] = fixed;
	st->drift[3] = orphans;
	unlock();
}

/* Label values are subscription types, operations and numbers: nothing to escape
 * but quotes and backslashes, which they never hold; escape anyway. */
static void label(struct sbuf *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			sbuf_addc(out, '\\');
		if (*v == '\n')
			sbuf_adds(out, "\\n");
		else
			sbuf_addc(out, *v);
	}
}

/* A counter with two labels, one line per pair of label values seen. */
static void counter(struct sbuf *out, const char *name, const char *help, const char *la, const char *lb,
                    const struct table *t)
{
	sbuf_addf(out, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s counter\n", name, help, name);
	for (size_t i = 0; i < t->n; i++) {
		sbuf_addf(out, PREFIX "%s{%s=\"", name, la);
		label(out, t->v[i].a);
		sbuf_addf(out, "\",%s=\"", lb);
		label(out, t->v[i].b);
		sbuf_addf(out, "\"} %lu\n", t->v[i].n);
	}
}

static void histogram(struct sbuf *out, const char *name, const char *help, const struct histogram *h)
{
	sbuf_addf(out, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s histogram\n", name, help, name);
	for (size_t i = 0; i < NB; i++)
		sbuf_addf(out, PREFIX "%s_bucket{le=\"%g\"} %lu\n", name, bounds[i], h->buckets[i]);
	sbuf_addf(out, PREFIX "%s_bucket{le=\"+Inf\"} %lu\n", name, h->count);
	sbuf_addf(out, PREFIX "%s_sum %.6f\n" PREFIX "%s_count %lu\n", name, h->sum, name, h->count);
}

void metrics_sync(bool ok, double when)
{
	lock();
	if (ok) {
		st->sync_ok_at = when;
	} else {
		st->sync_failed_at = when;
		st->sync_failures++;
	}
	unlock();
}

void metrics_subscriptions(bool ok, unsigned wanted, unsigned repaired, double when)
{
	lock();
	st->subs_checked = true;
	st->subs_ok = ok;
	if (ok)
		st->subs_wanted = wanted;
	st->subs_repaired += repaired;
	st->subs_at = when;
	unlock();
}

static void gauge(struct sbuf *out, const char *name, const char *help, const char *value)
{
	sbuf_addf(out, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s gauge\n" PREFIX "%s %s\n", name, help, name, name,
	          value);
}

/* Reconciles and subscription checks, the directory, and what was built. */
static void render_upkeep(struct sbuf *out, const struct metrics_gauges *g, const struct metrics_state *m)
{
	char v[64];

	sbuf_adds(out, "# HELP " PREFIX "build_info The version running (always 1).\n"
	               "# TYPE " PREFIX "build_info gauge\n" PREFIX "build_info{version=\"" PACKAGE_VERSION "\"} 1\n");
	gauge(out, "directory_up", "1 when the directory answers, as /healthz judges it.", g->directory_up ? "1" : "0");
	snprintf(v, sizeof(v), "%.3f", m->sync_ok_at);
	gauge(out, "last_sync_success_timestamp_seconds", "When the last reconcile ended well (0: none yet).", v);
	snprintf(v, sizeof(v), "%.3f", m->sync_failed_at);
	gauge(out, "last_sync_failure_timestamp_seconds",
	      "When the last reconcile failed (the directory or the API; 0: none yet).", v);
	snprintf(v, sizeof(v), "%lu", m->sync_failures);
	sbuf_addf(out, "# HELP " PREFIX "sync_failures_total Reconciles that failed.\n"
	               "# TYPE " PREFIX "sync_failures_total counter\n" PREFIX "sync_failures_total %s\n", v);
	gauge(out, "subscriptions_ok",
	      "1 when the last check found (or made) every wanted subscription registered, enabled and pointing at "
	      "this agent; 0 when it could not check.",
	      !m->subs_checked ? "0" : m->subs_ok ? "1" : "0");
	snprintf(v, sizeof(v), "%u", m->subs_wanted);
	gauge(out, "subscriptions_wanted", "The subscriptions this agent keeps.", v);
	snprintf(v, sizeof(v), "%lu", m->subs_repaired);
	sbuf_addf(out, "# HELP " PREFIX "subscriptions_repaired_total Subscriptions created, updated or enabled again "
	               "(missing, changed or disabled by Factorial).\n"
	               "# TYPE " PREFIX "subscriptions_repaired_total counter\n" PREFIX "subscriptions_repaired_total %s\n",
	          v);
	snprintf(v, sizeof(v), "%.3f", m->subs_at);
	gauge(out, "subscriptions_checked_timestamp_seconds", "When the subscriptions were last checked (0: not yet).", v);
}

void metrics_render(struct sbuf *out, const struct metrics_gauges *g)
{
	static struct metrics_state m; /* the copy rendered from: too large for a thread's stack, so one, locked */
	static pthread_mutex_t render_mu = PTHREAD_MUTEX_INITIALIZER;

	pthread_mutex_lock(&render_mu);
	snapshot(&m);
	counter(out, "deliveries_total", "Deliveries received, by subscription type and HTTP status.", "type", "status",
	        &m.deliveries);
	counter(out, "applies_total", "Deliveries applied to the directory, by operation and result.", "operation",
	        "result", &m.applies);
	sbuf_addf(out,
	          "# HELP " PREFIX "queue_depth Deliveries stored and not applied yet.\n"
	          "# TYPE " PREFIX "queue_depth gauge\n" PREFIX "queue_depth %ld\n"
	          "# HELP " PREFIX "dead_letters Deliveries that failed for good.\n"
	          "# TYPE " PREFIX "dead_letters gauge\n" PREFIX "dead_letters %ld\n"
	          "# HELP " PREFIX "held_deliveries Deliveries held by the deletion guard.\n"
	          "# TYPE " PREFIX "held_deliveries gauge\n" PREFIX "held_deliveries %ld\n"
	          "# HELP " PREFIX "oauth_refresh_token_unsaved 1 when the newest OAuth refresh token could not be "
	          "saved to the state folder (a restart would need a new one).\n"
	          "# TYPE " PREFIX "oauth_refresh_token_unsaved gauge\n" PREFIX "oauth_refresh_token_unsaved %d\n",
	          g->queue_depth, g->dead_letters, g->held, m.token_unsaved ? 1 : 0);
	if (m.token_age > 0)
		sbuf_addf(out,
		          "# HELP " PREFIX "oauth_refresh_token_age_seconds How old the OAuth refresh token in use is; "
		          "Factorial's last a week, and the agent spends one at three days to get a new week.\n"
		          "# TYPE " PREFIX "oauth_refresh_token_age_seconds gauge\n" PREFIX
		          "oauth_refresh_token_age_seconds %.0f\n",
		          m.token_age);
	histogram(out, "ldap_operation_seconds", "Latency of LDAP operations.", &m.ldap_h);
	histogram(out, "store_commit_seconds", "Latency of durable commits of deliveries.", &m.commit_h);
	sbuf_addf(out,
	          "# HELP " PREFIX "drift_entries Entries seen by the last reconcile, by outcome.\n"
	          "# TYPE " PREFIX "drift_entries gauge\n"
	          PREFIX "drift_entries{outcome=\"checked\"} %ld\n" PREFIX "drift_entries{outcome=\"differing\"} %ld\n"
	          PREFIX "drift_entries{outcome=\"fixed\"} %ld\n" PREFIX "drift_entries{outcome=\"orphans\"} %ld\n",
	          m.drift[0], m.drift[1], m.drift[2], m.drift[3]);
	render_upkeep(out, g, &m);
	pthread_mutex_unlock(&render_mu);
}
