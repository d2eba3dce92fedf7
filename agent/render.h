/*
 * render: Factorial records mapped offline into LDIF content records, for
 * `render` and `check --fixtures`.
 *
 * render_batch() maps every record of a batch (one object or an array) and
 * writes, per record, either its entry (comments first: termination, the
 * references it could not resolve) or a comment saying why there is none
 * (out of scope, deleted on termination).  Without a directory, employee_dn
 * resolves against the employees of the same batch, and unique values are
 * kept unique within the batch, in order: what render shows is what an empty
 * directory would receive; the groups of groups: (membership by rule) follow
 * the people, each with the members of the batch.  A record that fails is reported on the error
 * buffer as "employee 42: reason" and the others still render.
 *
 * render_fixtures() renders each DIR/NAME.json and compares it with
 * DIR/NAME.ldif, printing a unified diff for each mismatch; the related
 * records a mapping reads come from DIR (locations.json, legal_entities.json,
 * which are not fixtures themselves).
 *
 * Memory: output goes to the caller's buffers; nothing is retained.
 */
#ifndef FLA_RENDER_H
#define FLA_RENDER_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "mapping.h"
#include "related.h"
#include "common/sbuf.h"

struct render_stats {
	size_t entries; /* entries written */
	size_t comments; /* records shown as a comment only */
	size_t failed;  /* records that could not be mapped */
};

/* Writes the LDIF of one evaluated record (comments and content record). */
void render_result(const struct mapping_result *r, struct sbuf *out);

/* rel: the related records ({location.name}) employees are given, or NULL. */
void render_batch(const struct mapping *m, const struct related *rel, enum mapping_kind kind, const cJSON *batch,
                  const char *today, struct sbuf *out, struct sbuf *errs, struct render_stats *st);

/* Reads and parses a JSON file ("-" is standard input).  On failure returns
 * NULL with "FILE:LINE:COLUMN: reason" in err. */
cJSON *render_read_json(const char *path, struct sbuf *err);

/* Returns 0 when every fixture matches, 1 when one differs or fails to
 * render, -1 when the folder cannot be read (reason on err). */
int render_fixtures(const struct mapping *m, const char *dir, const char *today, FILE *out, struct sbuf *err);

#endif
