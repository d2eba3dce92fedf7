/*
 * store: the agent's durable state, one SQLite database in state_dir
 * (state.db, WAL journal, synchronous commits).
 *
 * It holds the audit log (every change applied to the directory: time,
 * event, record, DN, operation and the names of the attributes changed,
 * never their values), the schedule of future terminations (the delivery
 * body and the day it becomes due), the employees whose termination was
 * applied and the groups it took them out of, the newest version
 * (updated_at) applied of each record, the deliveries waiting for an
 * employee's entry to exist, and the marks an unfinished apply leaves (a
 * password owed, references still to follow).  The delivery queue
 * (queue.h) lives in the same database.
 *
 * state_dir is created (mode 0700) when missing.  Every write is one
 * transaction, committed before the call returns.
 *
 * Memory: a struct store owns its SQLite handle.  Strings returned through
 * out-parameters are malloc'd and owned by the caller.
 */
#ifndef FLA_STORE_H
#define FLA_STORE_H

#include <stdbool.h>

#include "common/sbuf.h"
#include "common/vlist.h"

struct store;
struct sqlite3;

/* Opens state_dir/state.db with these sqlite3_open_v2 flags (creating
 * state_dir, mode 0700, with SQLITE_OPEN_CREATE), sets the busy timeout and
 * runs ddl (when not NULL).  Shared with the queue, which lives in the
 * same database.  *db is NULL on failure; the caller closes it otherwise. */
int store_db_open(const char *state_dir, int flags, int busy_ms, const char *ddl, struct sqlite3 **db,
                  struct sbuf *err);

/* How long a connection waits for another's write lock before SQLITE_BUSY
 * (short sleeps: see store.c). */
int store_db_busy_timeout(struct sqlite3 *db, int ms);

int store_open(const char *state_dir, struct store **out, struct sbuf *err);
/* For dry runs: opens an existing store read-only; *out is NULL (and the
 * result 0) when there is none yet.  Nothing is created. */
int store_open_readonly(const char *state_dir, struct store **out, struct sbuf *err);
void store_close(struct store *st);

int store_audit(struct store *st, const char *event, const char *kind, const char *record_id, const char *dn,
                const char *operation, const char *attributes, struct sbuf *err);

/* Records (or moves) the day a termination becomes due, with the body to
 * apply then. */
int store_schedule_put(struct store *st, const char *kind, const char *record_id, const char *due,
                       const char *body, struct sbuf *err);
int store_schedule_remove(struct store *st, const char *kind, const char *record_id, struct sbuf *err);
/* 1 and the due day (and body) when scheduled, 0 when not. */
int store_schedule_get(struct store *st, const char *kind, const char *record_id, char **due, char **body,
                       struct sbuf *err);

/* What an apply that did not finish leaves for the next one to finish, by
 * record key and kind of mark: "password" (an entry made whose initial
 * password is not set yet), "follow" (the DN references to the record's
 * entry still name).  1 and *value (malloc'd; value may be NULL), 0 when
 * there is none, -1 on failure.  Setting NULL removes it; both wait for
 * the disk. */
int store_mark(struct store *st, const char *record, const char *what, char **value, struct sbuf *err);
int store_set_mark(struct store *st, const char *record, const char *what, const char *value, struct sbuf *err);

/* Calls fn for every termination due on or before today (YYYY-MM-DD). */
int store_schedule_due(struct store *st, const char *today,
                       int (*fn)(void *ctx, const char *kind, const char *record_id, const char *body), void *ctx,
                       struct sbuf *err);

/* Employees whose termination was applied (by their key): they are kept
 * out of groups when the mapping says remove_from_groups.  1 / 0 / -1. */
int store_terminated(struct store *st, const char *key, struct sbuf *err);
int store_set_terminated(struct store *st, const char *key, bool terminated, struct sbuf *err);

/* The newest version applied of a record ("employee:42"): its updated_at as
 * seconds since the epoch and as written.  1 and both (stamp malloc'd), 0
 * when none is known, -1 on failure. */
int store_version(struct store *st, const char *record, double *updated, char **stamp, struct sbuf *err);
/* Remembers a version, unless a newer one is known already. */
int store_set_version(struct store *st, const char *record, double updated, const char *stamp, struct sbuf *err);

/* The groups a termination took an employee (by key) out of, so that a
 * return puts them back when the record does not list its teams. */
int store_left_group(struct store *st, const char *key, const char *dn, struct sbuf *err);
/* Appends them to dns. */
int store_left_groups(struct store *st, const char *key, struct vlist *dns, struct sbuf *err);
int store_forget_left_groups(struct store *st, const char *key, struct sbuf *err);

/* A delivery (type, body) of record waiter left a reference to record
 * target unresolved (its entry did not exist yet): kept, so that the
 * delivery can be applied again when target's entry is made.  Entries older
 * than a month are let go. */
int store_wait_for(struct store *st, const char *target, const char *waiter, const char *type, const char *body,
                   struct sbuf *err);
/* Calls fn for every delivery waiting for target, oldest first, and forgets them. */
int store_take_waiters(struct store *st, const char *target,
                       void (*fn)(void *ctx, const char *type, const char *body), void *ctx, struct sbuf *err);

/* The deletion guard in `run`: disables and deletes applied since a time
 * (seconds since the epoch), and one more. */
long store_guard_count(struct store *st, double since, struct sbuf *err);
int store_guard_add(struct store *st, double when, struct sbuf *err);

/* Groups the writes that follow into one transaction (sync makes thousands
 * of audit rows: one commit each would cost a disk flush each). */
int store_begin(struct store *st, struct sbuf *err);
int store_commit(struct store *st, struct sbuf *err);

/* The workers' connections record what was applied (audit rows, versions,
 * the queue's done marks) without waiting for the disk at each commit
 * (synchronous=NORMAL): a power cut can undo the last of those commits,
 * never part of one, and never a delivery received (the receiver's commits
 * wait for the disk).  What they undo is applied again, which changes
 * nothing in the directory.  The writes a second apply could not redo, or
 * that other deliveries read before it comes (who has left, the groups a
 * leaver was taken out of, the deletion guard's count), still wait for the
 * disk. */
int store_set_relaxed(struct store *st, struct sbuf *err);
int store_db_relax(struct sqlite3 *db);

/* Whether a write can be committed now (takes and releases the write lock). */
int store_probe(struct store *st, struct sbuf *err);
void store_set_busy_timeout(struct store *st, int ms);

#endif
