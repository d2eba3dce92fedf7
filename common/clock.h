/*
 * clock: the agent's notion of "now" and "today", in one place so that tests
 * can move it.
 *
 * The environment variable FACTORIAL_LDAP_AGENT_NOW, when set, fixes the
 * time: either seconds since the epoch or an ISO 8601 date or timestamp
 * ("2026-03-01", "2026-03-01T08:00:00Z"), or "@FILE" to read such a value
 * from FILE at every call (so a running daemon's clock can be moved).  It
 * exists for tests and for
 * rehearsing a future termination date; it is documented as such.
 *
 * Memory: nothing allocated.
 */
#ifndef FLA_CLOCK_H
#define FLA_CLOCK_H

#include <time.h>

#define CLOCK_ENV "FACTORIAL_LDAP_AGENT_NOW"

time_t clock_now(void);
/* Today's date in local time as YYYY-MM-DD (buf of at least 11 bytes). */
void clock_today(char *buf, size_t len);

/* ISO 8601: YYYY-MM-DD, optionally [T ]HH:MM[:SS[.frac]][Z|+HH:MM|+HHMM|+HH]
 * (no zone: UTC).  Fills *utc (in UTC) and, when not NULL, *epoch (seconds
 * since the epoch, with the fraction); 0, or -1 when s is not such a date. */
int clock_parse_iso8601(const char *s, struct tm *utc, double *epoch);

#endif
