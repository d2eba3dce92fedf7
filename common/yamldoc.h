/*
 * yamldoc: a YAML file loaded as a node tree that remembers where each node
 * stands in the file, for loaders that must report mistakes by place.
 *
 * It wraps libyaml's document API: ydoc_load_file() parses the first document
 * of a file (a syntax error becomes one diag entry at the parser's mark), the
 * accessors below read nodes and their 1-based line and column.  Scalar
 * values are libyaml's buffers: NUL-terminated, valid while the ydoc lives.
 *
 * Memory: a struct ydoc owns the libyaml document and a copy of the file
 * name; every pointer obtained from it dies with ydoc_free().
 */
#ifndef FLA_YAMLDOC_H
#define FLA_YAMLDOC_H

#include <stdbool.h>
#include <yaml.h>

#include "common/diag.h"

struct ydoc {
	yaml_document_t doc;
	char *file;
	bool loaded;
};

/* Loads path; on failure adds one diag entry and returns -1.  An empty file
 * (no document, or an empty one) is such a failure: "the file is empty".
 * After a success ydoc_root() is never NULL. */
int ydoc_load_file(struct ydoc *y, const char *path, struct diag *d);
void ydoc_free(struct ydoc *y);

yaml_node_t *ydoc_root(struct ydoc *y);
yaml_node_t *ydoc_node(struct ydoc *y, int id);

unsigned ydoc_line(const yaml_node_t *n);
unsigned ydoc_col(const yaml_node_t *n);

/* The scalar's text, or NULL when n is not a scalar. */
const char *ydoc_scalar(const yaml_node_t *n);
/* true for an unquoted scalar: only those can be numbers, booleans or null. */
bool ydoc_is_plain(const yaml_node_t *n);
/* true for an empty value, "~" or "null" written unquoted. */
bool ydoc_is_null(const yaml_node_t *n);
/* "a mapping", "a list" or "a string", for messages. */
const char *ydoc_kind(const yaml_node_t *n);

/* Adds a diag entry at node n's place. */
void ydoc_error(struct ydoc *y, struct diag *d, const yaml_node_t *n, const char *key,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Reports each key of mapping node m that appears twice; returns how many. */
int ydoc_check_duplicates(struct ydoc *y, struct diag *d, yaml_node_t *m, const char *path);

#endif
