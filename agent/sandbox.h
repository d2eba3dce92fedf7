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
 *   shut in: no new privileges; started as root, no capability (bounding
 *   set included) and the account user (for good: sandbox_drop_user); with
 *   Landlock, no file or folder can be opened, made or removed (it holds
 *   no file: what it stores goes to the daemon, wire.h); with seccomp, no
 *   program can be started, no other process traced or read, and no socket
 *   made, connected, bound or listened on (it accepts on those it was
 *   given).  Where the kernel lacks one, the rest still applies and *warn
 *   says what is missing.
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
int sandbox_confine(const char *user, struct sbuf *warn, struct sbuf *err);
void sandbox_no_tracing(void);

#endif
