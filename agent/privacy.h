/*
 * privacy: the employee fields the agent never keeps: bank details, social
 * security numbers and salaries.  One table names them (a field matches by
 * its name, or by a prefix such as "bank_"); a delivery is stripped of them
 * before it is stored, and a mapping may not read them.
 *
 * Memory: privacy_scrub() changes the caller's tree in place (removed items
 * are freed); nothing is allocated or retained.
 */
#ifndef FLA_PRIVACY_H
#define FLA_PRIVACY_H

#include <stdbool.h>

#include <cjson/cJSON.h>

/* Whether a field of this name is one the agent never keeps (case ignored). */
bool privacy_sensitive(const char *name);

/* Removes every sensitive field, at any depth; returns how many it removed. */
int privacy_scrub(cJSON *j);

#endif
