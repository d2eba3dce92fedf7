/*
 * ids: Factorial's ids as exact decimal text.
 *
 * From API version 2026-07-01 every id and reference id is a JSON string
 * ("2"); the versions before send JSON numbers.  Ids go past 2^53 (the
 * second database cluster starts them at 18446744073709550), which no
 * double holds exactly, so an id is kept, compared, stored, keyed, logged
 * and sent as its decimal text, never through a floating-point value
 * (json.h reads big integer literals as strings of their digits).
 *
 * An id must be canonical decimal text: ASCII digits only, no sign, no
 * space, no leading zero (but "0" itself).  Anything else ("1 ", "01",
 * full-width "１", "+1") is refused, so that no two ids the directory's
 * matching rules would take for one ever reach it.
 *
 * Memory: the strings returned are malloc'd and the caller's; JSON values
 * returned are the caller's to attach or delete.
 */
#ifndef FLA_IDS_H
#define FLA_IDS_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "common/sbuf.h"

bool ids_canonical(const char *s);

/* The canonical text of the id v holds: a string, or a whole number (an
 * older API version's) below 2^53.  NULL when v is absent or null; NULL
 * and why (when not NULL) when it is not an id. */
char *ids_text(const cJSON *v, struct sbuf *why);

/* Checks every id field of a record (id, the reference ids, the lists of
 * employee ids): 0, or -1 with the first mistake in why ("manager_id
 * \"01\" is not an id: ..."). */
int ids_check(const cJSON *record, struct sbuf *why);

/* Orders two ids as numbers, by their text (NULL first); text that is not
 * an id compares as text. */
int ids_compare(const char *a, const char *b);

/* Whether API version v (YYYY-MM-DD) sends and takes ids as strings. */
bool ids_are_strings(const char *api_version);

/* The JSON value an id is sent as in version api_version: a string, or a
 * number written exactly from the text (a raw literal, never a double). */
cJSON *ids_json(const char *id, const char *api_version);

#endif
