/*
 * sandbox: what the daemon gives up once it no longer needs it.
 *
 * - sandbox_drop_user(): started as root with `user:` configured, `run`
 *   binds its ports and takes its state folder, then becomes that user and
 *   its group for good (supplementary groups dropped) and checks that root
 *   cannot be regained.
 * - sandbox_give_state(): before that, the state folder and the files in it
 *   are handed to the user, so that it can go on writing them.
 * - sandbox_confine(): the receiver process (the one that parses HTTP) is
 *   shut in: no new privileges; with Landlock, no file outside the state
 *   folder can be opened, read or written; with seccomp, no program can be
 *   started and no other process traced or read.  Where the kernel lacks
 *   one, the rest still applies and *warn says what is missing.
 * - sandbox_no_tracing(): a process holding credentials cannot be traced
 *   or have its memory read by another of the same user.
 *
 * Memory: nothing is kept; messages are appended to the caller's buffers.
 */
#ifndef FLA_SANDBOX_H
#define FLA_SANDBOX_H

#include "common/sbuf.h"

int sandbox_give_state(const char *state_dir, const char *user, struct sbuf *err);
int sandbox_drop_user(const char *user, struct sbuf *err);
/* 0, possibly with warnings in *warn (a kernel without Landlock or
 * seccomp); -1 when what the kernel offers could not be applied. */
int sandbox_confine(const char *state_dir, struct sbuf *warn, struct sbuf *err);
void sandbox_no_tracing(void);

#endif
