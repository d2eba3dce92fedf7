/*
 * privacy: the employee fields the agent never keeps: bank and card details,
 * national, social security and tax ids, pay, disability and emergency
 * contacts.  One table names them; a field matches by its name folded (case,
 * '_', '-', '.', spaces and NUL aside, so bankNumber, BANK-NUMBER and
 * "\u0000iban" are caught), whole or as a family ("bank..."); a delivery is
 * stripped of them before it is stored, and a mapping may not read them.
 *
 * Memory: privacy_scrub() changes the caller's tree in place (removed items
 * are freed); nothing is allocated or retained.
 */
#ifndef FLA_PRIVACY_H
#define FLA_PRIVACY_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* Whether a field of this name is one the agent never keeps. */
bool privacy_sensitive(const char *name);
/* The same for a name of len bytes that may hold NUL. */
bool privacy_sensitive_n(const char *name, size_t len);

/* Removes every sensitive field, at any depth; returns how many it removed. */
int privacy_scrub(cJSON *j);

/* Whether JSON text holds a NUL character, raw or escaped (\u0000): a name
 * holding one is cut short where cJSON stores it, so such a body is refused
 * rather than scrubbed. */
bool privacy_has_nul(const char *text, size_t len);

#endif
