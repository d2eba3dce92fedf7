/*
 * related: the records an employee points to by id (its location, its legal
 * entity), for mappings that name their fields ({location.name},
 * {legal_entity.legal_name}).  Each kind is one row of a table: the field
 * the record gets, the id field that names it, the API collection and the
 * fixture file it is read from.
 *
 * related_needs() says which kinds a mapping reads (none: nothing is ever
 * read); related_load_api() reads every record of those kinds from the API
 * (one paged list each); related_load_files() reads them from DIR/NAME.json
 * (offline: render, check --fixtures; a missing file is an empty list).
 * related_attach() gives a copy of an employee record with each needed kind
 * set to the record its id names, or null when there is none (a template of
 * its fields then gives nothing).
 *
 * Memory: a struct related owns its records; once loaded it is only read,
 * so threads may share it, each holding a reference (related_hold; the
 * loader's is the first) that related_free() gives back: the last frees it.
 * related_attach() returns a new cJSON the caller deletes.
 */
#ifndef FLA_RELATED_H
#define FLA_RELATED_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "factorial.h"
#include "mapping.h"
#include "common/sbuf.h"

struct related;

/* The kinds, a bit each, in the order of related.c's table. */
#define RELATED_LOCATIONS 0x1u
#define RELATED_LEGAL_ENTITIES 0x2u

/* The kinds (a bit each) the employees section of m reads. */
unsigned related_needs(const struct mapping *m);

int related_load_api(struct factorial *api, unsigned kinds, struct related **out, struct sbuf *err);
int related_load_files(const char *dir, unsigned kinds, struct related **out, struct sbuf *err);
struct related *related_hold(struct related *r);
void related_free(struct related *r);

/* Whether a file name (no folder) is one related records are read from. */
bool related_is_file(const char *name);

/* How many records of all kinds were read. */
size_t related_count(const struct related *r);

/* A copy of employee with the related records set (NULL: out of memory);
 * *unknown (may be NULL) is set when an id names no record that was read. */
cJSON *related_attach(const struct related *r, const cJSON *employee, bool *unknown);

#endif
