/*
 * guard: the deletion guard, one rule for `sync` and for `run`.
 *
 * Disables and deletes are what a mistake upstream (an API answering an
 * empty or partial list, a scope mistake in the mapping) turns into a
 * lock-out.  Either limit of the configuration stops them: more than
 * safety.max_disables, or (when set) more than safety.max_disables_percent
 * of the managed entries.  `sync` counts the disables and deletes one run
 * would make before applying any; `run` counts those of the last hour (the
 * store keeps their times), those let through and still being made, and the
 * one at hand.
 *
 * Memory: nothing is retained; messages go to the caller's buffers.
 */
#ifndef FLA_GUARD_H
#define FLA_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "common/sbuf.h"
#include "config.h"
#include "ldapw.h"
#include "mapping.h"
#include "store.h"

/* Whether n disables and deletes out of managed entries stay within the
 * limits; *pct gets their share of the managed entries. */
bool guard_within(const struct config *cfg, long n, size_t managed, double *pct);

/* `run`: whether one more disable or delete stays within the limits of the
 * last hour (now: seconds since the epoch), counting the ones the store
 * recorded and the `reserved` ones let through and not recorded yet (the
 * caller asks and records under one lock, so that workers asking at once
 * are counted one after another).  The managed entries are counted with a
 * search only when a percentage limit is set (m and lw are used for it
 * only, and may be NULL without one).  1 yes; 0 no, and why (the
 * reason a person reads in `queue list`); -1 when it could not be counted
 * (why). */
int guard_one_more(const struct config *cfg, const struct mapping *m, struct store *st, struct ldapw *lw, double now,
                   long reserved, struct sbuf *why);

#endif
