/*
 * metrics: the daemon's counters and histograms, written out in the
 * Prometheus text format for GET /metrics.
 *
 * Counters are process-wide and thread-safe (one mutex): deliveries by
 * subscription type and HTTP status, applies by operation and result, and
 * latency histograms of LDAP operations and of store commits.  Queue depth
 * and dead letters are read from the store when the page is rendered.
 *
 * Memory: the module owns its tables, for the life of the process.
 */
#ifndef FLA_METRICS_H
#define FLA_METRICS_H

#include <stdbool.h>

#include "common/sbuf.h"

void metrics_delivery(const char *type, int status);
void metrics_apply(const char *operation, bool ok);
void metrics_ldap_seconds(double s);
void metrics_commit_seconds(double s);
void metrics_drift(long checked, long differing, long fixed, long orphans);

struct metrics_gauges {
	long queue_depth;
	long dead_letters;
	long held;
	bool token_unsaved; /* the OAuth refresh token lives in memory only */
};

void metrics_render(struct sbuf *out, const struct metrics_gauges *g);

#endif
