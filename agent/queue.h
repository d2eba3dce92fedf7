/*
 * queue: the durable delivery queue, in the state store's SQLite database
 * (state_dir/state.db, WAL, synchronous=FULL).
 *
 * A delivery is committed here before the receiver answers 200: the body,
 * its subscription type, the arrival time, a record key that orders the
 * deliveries of one record ("employee:42", "team:3", "membership:3:42") and
 * the records it names (its refs); the caller works both out (events.h):
 * the queue knows nothing of what a record is.  Concurrent requests share one commit (group commit):
 * queue_submit() hands the delivery to the committer thread, which writes
 * every waiting delivery in one transaction and wakes each caller with the
 * outcome; a failed commit is reported to every caller, never hidden.
 *
 * Workers take the next delivery whose turn has come: new deliveries in
 * arrival order first, then retries by the time they are due.  A delivery
 * waits only for older pending (or held) deliveries of its own record, of
 * the records it depends on (a team or membership waits for the employees
 * it names, an employee for its manager), of the records that name it (an
 * employee waits for the team listing it), and of the teams whose group it
 * changes.  A delivery found waiting is marked with the record it waits for
 * and is not looked at again until a delivery of that record changes state,
 * so the choice costs a few index look-ups however many deliveries wait,
 * back off or fail.  Consecutive pending deliveries of the same type for the
 * same record are coalesced into the newest.  A delivery leaves the
 * queue when applied; after max_attempts record-level failures it becomes a
 * dead letter with its reason, which `queue retry` or `queue drop` settles.
 * Invalid bodies go to a separate rejected log with their reason.
 *
 * Memory: a struct queue owns one SQLite connection; use one per thread.
 * A struct queue_committer owns its thread and connection.  Strings in a
 * struct queue_delivery are malloc'd and released by queue_delivery_free().
 */
#ifndef FLA_QUEUE_H
#define FLA_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sbuf.h"
#include "common/strmap.h"

struct queue;

int queue_open(const char *state_dir, struct queue **out, struct sbuf *err);
void queue_close(struct queue *q);
/* Milliseconds SQLite waits for a lock before a write fails. */
void queue_set_busy_timeout(struct queue *q, int ms);

/* Writes deliveries in one transaction (used by the committer). */
struct queue_new {
	const char *type;
	const char *record_key;
	const struct strmap *refs; /* the records it names (keys), or NULL */
	const char *body;
	int64_t id; /* set when committed */
};
int queue_put(struct queue *q, struct queue_new *items, size_t n, struct sbuf *err);

/* Notes a refused body: its type, the reason and its size.  The body itself
 * is not kept: what could not be read as a delivery cannot be scrubbed of
 * personal data either. */
int queue_reject(struct queue *q, const char *type, const char *reason, size_t len,
                 struct sbuf *err);

struct queue_delivery {
	int64_t id;        /* the delivery whose body is applied: the newest snapshot of the run */
	int64_t *ids;      /* every delivery of the run, oldest first */
	size_t nids;
	char *type;
	char *record_key;
	char *body;
	int attempts;
	char *received;
	bool forced; /* `queue retry --force`: past the deletion guard */
	char **refs; /* the records its deliveries name ("employee:7", "team:3") */
	size_t nrefs;
};

void queue_delivery_free(struct queue_delivery *d);

/* Claims the next delivery a worker may apply now.  busy maps the record key
 * and the refs of every delivery being applied to that delivery's record
 * key: a delivery touching any of them waits (marked with that record key).
 * Returns 1 and fills d, 0 when none is ready, -1 on a store failure. */
/* The workers' connection: its commits (done marks, retries, dead letters,
 * holds) do not wait for the disk; see store_set_relaxed. */
int queue_set_relaxed(struct queue *q, struct sbuf *err);
int queue_next(struct queue *q, double now, const struct strmap *busy, struct queue_delivery *d, struct sbuf *err);
/* Every delivery looks again at what it waits for (at start: a mark may
 * name a delivery that was being applied when the last process ended). */
int queue_forget_waits(struct queue *q, struct sbuf *err);
/* A delivery of record_key is no longer being applied: what waited for it
 * looks again.  Call it under the same lock as queue_next() after taking
 * the record out of busy. */
int queue_release(struct queue *q, const char *record_key, struct sbuf *err);

/* The run met a record being applied now that only applying it showed
 * (enrichment named it): it waits for that record's release, no attempt
 * counted.  Call it under the lock of queue_release(), after checking that
 * by is still being applied. */
int queue_wait(struct queue *q, const struct queue_delivery *d, const char *by, struct sbuf *err);

/* The run was applied: it leaves the queue. */
int queue_done(struct queue *q, const struct queue_delivery *d, struct sbuf *err);
/* A record-level failure: retried at next_attempt, or dead after the last attempt. */
int queue_failed(struct queue *q, const struct queue_delivery *d, const char *reason, double next_attempt, bool dead,
                 struct sbuf *err);

/* The deletion guard held it back: it waits for `queue retry --force`. */
int queue_hold(struct queue *q, const struct queue_delivery *d, const char *reason, struct sbuf *err);

/* Counts for /metrics and `queue list`. */
int queue_counts(struct queue *q, long *pending, long *dead, long *held, struct sbuf *err);

/* One delivery as `queue list` shows it (strings owned by the store, valid during the call). */
struct queue_row {
	int64_t id;
	const char *state;       /* "pending", "held", "dead" */
	const char *type;
	const char *record_key;
	int attempts;
	const char *received;    /* ISO 8601 */
	const char *last_error;  /* NULL when none */
	double next_attempt;     /* epoch seconds; 0: at once */
	const char *waiting_on;  /* the record it waits for, or NULL */
};

/* Calls fn for every delivery: dead letters first, then held, then pending,
 * each by id; stops at fn's first non-zero answer and returns it. */
int queue_rows(struct queue *q, int (*fn)(void *ctx, const struct queue_row *r), void *ctx, struct sbuf *err);
/* `queue retry [--force] [ID]`: dead letters (with force, also deliveries
 * the deletion guard held) back to pending, all when id is 0; forced ones
 * pass the guard.  Returns how many, -1 on failure. */
long queue_retry(struct queue *q, int64_t id, bool force, struct sbuf *err);
/* `queue drop ID`: removes a dead letter; returns 1, 0 when no such dead letter. */
int queue_drop(struct queue *q, int64_t id, struct sbuf *err);

/* ---- group commit ------------------------------------------------------- */

struct queue_committer;

int queue_committer_start(const char *state_dir, struct queue_committer **out, struct sbuf *err);
/* Stops after committing what is waiting. */
void queue_committer_stop(struct queue_committer *c);
/* Durably stores one delivery of record_key, naming the records in refs (a
 * set of record keys, or NULL: events.h says what they are); returns 0 once
 * committed, -1 (reason in err) when the store could not commit it. */
int queue_submit(struct queue_committer *c, const char *type, const char *record_key, const struct strmap *refs,
                 const char *body, struct sbuf *err);
/* Called after every commit with its duration in seconds and outcome (the
 * reason, when it failed; NULL when it succeeded). */
void queue_committer_observe(struct queue_committer *c, void (*fn)(double seconds, const char *error, void *ctx),
                             void *ctx);
/* Called after every successful commit (workers wake up). */
void queue_committer_notify(struct queue_committer *c, void (*fn)(void *ctx), void *ctx);

#endif
