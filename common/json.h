/*
 * json: JSON text parsed by cJSON, with integers past what a double holds
 * kept exact.
 *
 * cJSON keeps every number as a double, which holds integers exactly only
 * up to 2^53 (about 9.0e15).  Factorial's ids go past it: its second
 * database cluster starts them at 18446744073709550, and the API versions
 * before 2026-07-01 send ids as JSON numbers (2026-07-01 sends strings).
 * json_parse() hands cJSON every integer literal of 16 digits or more as a
 * string of its exact text ("18446744073709562"), so such an id reads the
 * same whichever way it came; every other number is left to cJSON as it is.
 *
 * Memory: the tree returned is the caller's (cJSON_Delete); nothing is kept.
 */
#ifndef FLA_JSON_H
#define FLA_JSON_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Parses the JSON value at the start of text (len bytes; what follows it is
 * the caller's to judge).  On success, *end (when end is not NULL) points
 * just past the value in text; on failure the result is NULL and *end
 * points where text stops being JSON. */
cJSON *json_parse(const char *text, size_t len, const char **end);

#endif
