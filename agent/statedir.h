/*
 * statedir: the agent's state folder (state_dir), kept private and owned by
 * one writer at a time.
 *
 * statedir_prepare() creates the folder (mode 0700) when it is missing and
 * refuses one that group or others may write to, naming the chmod that fixes
 * it: whoever can write there can replace the database that holds delivery
 * bodies and the audit trail.  Files the agent creates there are 0600 (the
 * agent runs with umask 077; store.c also narrows files an older version
 * left wider).
 *
 * statedir_lock() takes an exclusive flock(2) on the folder itself, so that
 * no file is written to take it and the kernel drops it when the process
 * ends, whatever way it ends (kill -9 included).  `run` holds it for its
 * whole life, a real `sync` while it works.  When another process holds it,
 * the caller learns its pid and command (read from /proc/locks and
 * /proc/PID/cmdline), to name it in the message.
 *
 * Memory: a struct statedir_lock owns its descriptor; statedir_unlock()
 * releases both.
 */
#ifndef FLA_STATEDIR_H
#define FLA_STATEDIR_H

#include <stdbool.h>
#include <sys/types.h>

#include "common/sbuf.h"

/* Creates dir (0700) when missing; -1 with the reason (and the fix) in err
 * when it cannot be created, is not a folder, or is writable by group or
 * others. */
int statedir_prepare(const char *dir, struct sbuf *err);

struct statedir_holder {
	pid_t pid;        /* 0 when it could not be found out */
	char command[32]; /* "run", "sync", ... ("" when unknown) */
};

struct statedir_lock;

/* Takes the folder's lock without waiting: 0 and *out when taken; 1 when
 * another process holds it (who, in *holder); -1 on failure (err). */
int statedir_lock(const char *dir, struct statedir_lock **out, struct statedir_holder *holder, struct sbuf *err);
void statedir_unlock(struct statedir_lock *l);

/* Who holds dir's lock, without taking it: 1 and *holder when a process
 * does, 0 when none (or the folder does not exist), -1 on failure. */
int statedir_held(const char *dir, struct statedir_holder *holder, struct sbuf *err);

/* "pid 1234 (run)" or "another process", for messages. */
void statedir_holder_text(const struct statedir_holder *h, char *buf, size_t len);

#endif
