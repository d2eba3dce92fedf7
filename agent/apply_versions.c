/*
 * apply_versions: versions: never move a record backwards; who has left, and
 * the groups a return rejoins.
 */
#include "build.h"

#include "apply_int.h"

#include "apply.h"
#include "common/clock.h"
#include "dn.h"
#include "events.h"
#include "ids.h"
#include "ldifw.h"
#include "refs.h"
#include "related.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/strmap.h"
#include <fcntl.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- versions: never move a record backwards -------------------------------- */

/* The record's updated_at, as seconds since the epoch; 0 when it has none that reads as a date. */
static bool version_of(const cJSON *rec, double *when, const char **stamp)
{
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(rec, "updated_at");
	struct tm tm;

	if (!cJSON_IsString(u) || clock_parse_iso8601(u->valuestring, &tm, when) < 0)
		return false;
	*stamp = u->valuestring;
	return true;
}

/* Factorial retries each delivery on its own, so an older snapshot of an
 * employee can arrive after a newer one: a delivery older than the newest
 * already applied for its record changes nothing (equal ones apply: applying
 * twice changes nothing).  1 when rec is such a one, 0 when it applies, -1
 * on failure. */
int apply_stale(struct job *j, const cJSON *rec)
{
	const char *stamp;
	char *newest_stamp = NULL, record[160];
	double mine, newest;
	struct sbuf e;
	int rc = 0, got;

	if (!j->a->state || strcmp(j->event, "sync") == 0 || !version_of(rec, &mine, &stamp))
		return 0;
	snprintf(record, sizeof(record), "employee:%s", j->id);
	sbuf_init(&e);
	got = store_version(j->a->state, record, &newest, &newest_stamp, &e);
	if (got < 0) {
		sbuf_addf(j->err, "employee %s: %s", j->id, sbuf_str(&e));
		rc = -1;
	} else if (got == 1 && mine < newest) {
		apply_sayf(j, "skipped-stale: updated_at %s is older than %s, already applied: nothing changes", stamp,
		     newest_stamp);
		apply_audit(j, "", "skipped-stale", stamp);
		j->a->stale = true;
		rc = 1;
	}
	free(newest_stamp);
	sbuf_free(&e);
	return rc;
}

void apply_remember_version(struct job *j, const cJSON *rec)
{
	const char *stamp;
	char record[160];
	double when;
	struct sbuf e;

	if (!j->a->st || !version_of(rec, &when, &stamp))
		return;
	snprintf(record, sizeof(record), "employee:%s", j->id);
	sbuf_init(&e);
	if (store_set_version(j->a->st, record, when, stamp, &e) < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* Whether the store says this employee's termination was applied (a return when it is now active). */
bool apply_was_terminated(struct job *j, const char *key)
{
	struct sbuf e;
	int t;

	if (!j->a->state || strcmp(j->event, "sync") == 0)
		return false;
	sbuf_init(&e);
	t = store_terminated(j->a->state, key, &e);
	if (t < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
	return t > 0;
}

/* Remembered, so that team deliveries keep a leaver out of groups. */
void apply_remember_terminated(struct job *j, const char *key, bool terminated)
{
	struct sbuf e;

	sbuf_init(&e);
	if (store_set_terminated(j->a->st, key, terminated, &e) < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* A new employee (from a delivery) joins its teams' groups; a returning one
 * is no leaver any more, then rejoins them. */
int apply_rejoin(struct job *j, const cJSON *rec, const char *key, bool returning)
{
	if (strcmp(j->event, "sync") == 0)
		return 0; /* sync puts every team's members right itself */
	if (returning) {
		j->returning = true;
		if (j->a->st)
			apply_remember_terminated(j, key, false);
	}
	return apply_join_teams(j, rec, key, returning);
}

/* The day a record's termination is due (YYYY-MM-DD into due), when it is after today. */
bool apply_due_later(struct job *j, const cJSON *rec, char due[11])
{
	const cJSON *ton = cJSON_GetObjectItemCaseSensitive(rec, "terminated_on");

	if (!cJSON_IsString(ton) || strlen(ton->valuestring) < 10 || strncmp(ton->valuestring, j->a->today, 10) <= 0)
		return false;
	snprintf(due, 11, "%.10s", ton->valuestring);
	return true;
}

/* What the event type says of a record taken from its delivery (a record
 * read fresh from the API says it itself): a termination due later is only
 * scheduled (1: nothing more to do); terminate and unterminate force the
 * state. */
int apply_event_says(struct job *j, const cJSON *rec, enum mapping_force *force)
{
	char due[11];

	*force = MAPPING_FORCE_NONE;
	if (j->fresh)
		return 0;
	if (strcmp(j->event, "terminate") == 0) {
		if (apply_due_later(j, rec, due)) {
			apply_schedule(j, rec, due, true);
			apply_sayf(j, "terminated_on %s is in the future: nothing changes now; the termination is applied on that day",
			     due);
			return 1;
		}
		*force = MAPPING_FORCE_TERMINATED;
	} else if (strcmp(j->event, "unterminate") == 0) {
		*force = MAPPING_FORCE_ACTIVE;
	}
	return 0;
}

/* The record mapped; out of scope is treated as terminated, or is nothing
 * to do without an entry (1). */
