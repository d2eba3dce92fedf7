/*
 * refusals: the requests the receiver refused, said in the log as a summary
 * a client cannot flood.
 *
 * A refusal is counted by what it was (a status and a reason: "401 wrong
 * challenge") and by the client address.  The first refusal after a quiet
 * spell is logged at once, in full (so that a sysadmin trying the endpoint by
 * hand sees why); those that follow within REFUSALS_EVERY seconds are only
 * counted, and refusals_tick() (called every second) says them in one line
 * once the spell is over: per reason, the count and the busiest addresses.
 * However fast a client sends, the log grows by at most a line of about a
 * kilobyte every REFUSALS_EVERY seconds.
 *
 * Thread-safe.  Memory: the counts are a fixed table inside the module;
 * strings given are copied (cut to a bounded length), nothing is retained
 * by the caller's.
 */
#ifndef FLA_REFUSALS_H
#define FLA_REFUSALS_H

#define REFUSALS_EVERY 5.0 /* seconds between summary lines */

/* One refusal: status and reason ("wrong challenge"), the client address
 * (text, may be NULL), and what to say if it is logged on its own (the
 * method and path, say; may be NULL).  now: monotonic seconds. */
void refusals_note(int status, const char *reason, const char *addr, const char *detail, double now);

/* Says what was counted once REFUSALS_EVERY has passed since the last line. */
void refusals_tick(double now);

/* Says whatever is counted now (at stop). */
void refusals_flush(double now);

#endif
