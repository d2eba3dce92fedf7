/*
 * metrics: the daemon's counters and histograms, written out in the
 * Prometheus text format for GET /metrics.
 *
 * Counters are thread-safe (one mutex): deliveries by subscription type and
 * HTTP status, applies by operation and result, latency histograms of LDAP
 * operations and of store commits, reconciles and subscription checks.
 * Queue depth, dead letters, held deliveries and whether the directory is
 * up are given by the caller when the page is rendered.  Names follow the
 * Prometheus conventions (_total counters, _seconds, _timestamp_seconds).
 *
 * The state is plain memory of a fixed size.  By default it is the
 * process's own; metrics_share() moves it into memory the caller maps in
 * several processes (the daemon and its receiver), where the mutex is
 * process-shared and robust: each process counts what it sees, and either
 * can render the page.
 *
 * Memory: the module owns its default state; shared memory stays the
 * caller's, and must outlive every later call.
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
/* The OAuth refresh token lives in memory only (true) or is saved. */
void metrics_token_unsaved(bool unsaved);
/* The age of the OAuth refresh token in use, seconds (-1: none). */
void metrics_token_age(double seconds);
/* A reconcile ended at wall time when: ok, or failed (the directory or the API). */
void metrics_sync(bool ok, double when);
/* A check of the subscriptions ended at wall time when: ok (each wanted one
 * registered, enabled and pointing at this agent; repaired counts those it
 * had to create, update or enable), or failed (the API). */
void metrics_subscriptions(bool ok, unsigned wanted, unsigned repaired, double when);

/* The size of the state, and moving it to mem (init: first use, zeroed and
 * a process-shared mutex made; else mem is already initialised by another
 * process).  Returns 0 or -1. */
size_t metrics_shared_size(void);
int metrics_share(void *mem, bool init);
/* In the receiver: the daemon's figures are read from mem (mapped read-only) when rendering;
 * what the receiver counts itself (deliveries, its commits) stays in its own memory. */
void metrics_attach(const void *mem);

struct metrics_gauges {
	long queue_depth;
	long dead_letters;
	long held;
	bool directory_up;
};

void metrics_render(struct sbuf *out, const struct metrics_gauges *g);

#endif
