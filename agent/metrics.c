#include "build.h"

#include "metrics.h"

#include <pthread.h>
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

struct labelled {
	char *a;
	char *b;
	unsigned long n;
};

struct table {
	struct labelled *v;
	size_t n;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct table deliveries, applies;
static struct histogram ldap_h, commit_h;
static long drift[4];

static void bump(struct table *t, const char *a, const char *b)
{
	struct labelled *v;

	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].a, a) == 0 && strcmp(t->v[i].b, b) == 0) {
			t->v[i].n++;
			return;
		}
	}
	v = realloc(t->v, (t->n + 1) * sizeof(*v));
	if (!v)
		return;
	t->v = v;
	v[t->n].a = strdup(a);
	v[t->n].b = strdup(b);
	if (!v[t->n].a || !v[t->n].b) {
		free(v[t->n].a);
		free(v[t->n].b);
		return;
	}
	v[t->n].n = 1;
	t->n++;
}

void metrics_delivery(const char *type, int status)
{
	char s[16];

	snprintf(s, sizeof(s), "%d", status);
	pthread_mutex_lock(&mu);
	bump(&deliveries, type, s);
	pthread_mutex_unlock(&mu);
}

void metrics_apply(const char *operation, bool ok)
{
	pthread_mutex_lock(&mu);
	bump(&applies, operation, ok ? "ok" : "error");
	pthread_mutex_unlock(&mu);
}

static void observe(struct histogram *h, double s)
{
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < NB; i++)
		if (s <= bounds[i])
			h->buckets[i]++;
	h->count++;
	h->sum += s;
	pthread_mutex_unlock(&mu);
}

void metrics_ldap_seconds(double s)
{
	observe(&ldap_h, s);
}

void metrics_commit_seconds(double s)
{
	observe(&commit_h, s);
}

void metrics_drift(long checked, long differing, long fixed, long orphans)
{
	pthread_mutex_lock(&mu);
	drift[0] = checked;
	drift[1] = differing;
	drift[2] = fixed;
	drift[3] = orphans;
	pthread_mutex_unlock(&mu);
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

void metrics_render(struct sbuf *out, const struct metrics_gauges *g)
{
	pthread_mutex_lock(&mu);
	counter(out, "deliveries_total", "Deliveries received, by subscription type and HTTP status.", "type", "status",
	        &deliveries);
	counter(out, "applies_total", "Deliveries applied to the directory, by operation and result.", "operation",
	        "result", &applies);
	sbuf_addf(out,
	          "# HELP " PREFIX "queue_depth Deliveries stored and not applied yet.\n"
	          "# TYPE " PREFIX "queue_depth gauge\n" PREFIX "queue_depth %ld\n"
	          "# HELP " PREFIX "dead_letters Deliveries that failed for good.\n"
	          "# TYPE " PREFIX "dead_letters gauge\n" PREFIX "dead_letters %ld\n"
	          "# HELP " PREFIX "held Deliveries held by the deletion guard.\n"
	          "# TYPE " PREFIX "held gauge\n" PREFIX "held %ld\n"
	          "# HELP " PREFIX "oauth_refresh_token_unsaved 1 when the newest OAuth refresh token could not be "
	          "saved to the state folder (a restart would need a new one).\n"
	          "# TYPE " PREFIX "oauth_refresh_token_unsaved gauge\n" PREFIX "oauth_refresh_token_unsaved %d\n",
	          g->queue_depth, g->dead_letters, g->held, g->token_unsaved ? 1 : 0);
	histogram(out, "ldap_operation_seconds", "Latency of LDAP operations.", &ldap_h);
	histogram(out, "store_commit_seconds", "Latency of durable commits of deliveries.", &commit_h);
	sbuf_addf(out,
	          "# HELP " PREFIX "drift_entries Entries seen by the last reconcile, by outcome.\n"
	          "# TYPE " PREFIX "drift_entries gauge\n"
	          PREFIX "drift_entries{outcome=\"checked\"} %ld\n" PREFIX "drift_entries{outcome=\"differing\"} %ld\n"
	          PREFIX "drift_entries{outcome=\"fixed\"} %ld\n" PREFIX "drift_entries{outcome=\"orphans\"} %ld\n",
	          drift[0], drift[1], drift[2], drift[3]);
	pthread_mutex_unlock(&mu);
}
