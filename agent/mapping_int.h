/*
 * mapping_int: what the files of the mapping family share, and nothing
 * outside it includes.  mapping.h is the module's face:
 *
 *   mapping.c         loading a mapping file whole: its sections, the groups
 *                     by rule and the references; freeing it
 *   mapping_yaml.c    the loader's helpers: keys, strings, templates and
 *                     tables read with their place; one attribute's keys
 *   mapping_object.c  an employees: or teams: section: bases, key, RDN,
 *                     classes, attributes in the order they depend on each
 *                     other, the termination policy, initial passwords
 *   mapping_eval.c    a record evaluated: scope, state, values, unique
 *                     candidates, the DN; the fields a mapping reads; the
 *                     groups by rule a record belongs in
 *
 * Memory: as mapping.h says; a struct loader lives for one mapping_load().
 */
#ifndef FLA_MAPPING_INT_H
#define FLA_MAPPING_INT_H

#include "mapping.h"
#include "ids.h"
#include "privacy.h"
#include "dn.h"
#include "common/utf8.h"
#include "common/yamldoc.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define UNIQUE_MAX_TRIES 10000

struct loader {
	struct ydoc y;
	struct diag *d;
	struct mapping *m;
};

/* mapping_yaml.c */
void mapping_join(char *buf, size_t len, const char *a, const char *b);
yaml_node_t *mapping_map_get(struct loader *L, yaml_node_t *m, const char *name, yaml_node_t **keynode);
void mapping_check_keys(struct loader *L, yaml_node_t *m, const char *path, const char *const *allowed);
bool mapping_want_map(struct loader *L, yaml_node_t *n, const char *key);
const char *mapping_want_string(struct loader *L, yaml_node_t *n, const char *key);
int mapping_want_bool(struct loader *L, yaml_node_t *n, const char *key, bool *out);
bool mapping_valid_attr_name(const char *s);
char *mapping_dup_dn(struct loader *L, yaml_node_t *n, const char *key);
struct tmpl *mapping_compile_text(struct loader *L, yaml_node_t *n, const char *key, const char *text, size_t at);
struct tmpl *mapping_compile(struct loader *L, yaml_node_t *n, const char *key);
void mapping_load_tables(struct loader *L, yaml_node_t *x);
void mapping_note_place(const yaml_node_t *n, const char *key, struct mapping_place *p);
void mapping_conditions_free(struct mapping_scope *v, size_t n);
void mapping_attr_free(struct mapping_attr *a);
void mapping_load_attr(struct loader *L, yaml_node_t *k, yaml_node_t *v, const char *key, struct mapping_attr *a,
                       bool options_allowed);
int mapping_find_attr(const struct mapping_object *o, const char *name);
const char *mapping_sensitive_in(const struct tmpl_path *path);
void mapping_resolve_refs(struct loader *L, struct mapping_object *o, struct mapping_attr *a, yaml_node_t *at,
                          const char *key, bool *deps);

/* mapping_object.c */
void mapping_load_conditions(struct loader *L, yaml_node_t *s, const char *path, struct mapping_scope **out,
                             size_t *nout);
int mapping_load_dn_template(struct loader *L, yaml_node_t *x, const char *key, char **attr, char **rest,
                             struct tmpl **t);
void mapping_load_object(struct loader *L, enum mapping_kind kind, yaml_node_t *sec);

/* mapping.c */
extern const char *const mapping_section_names[]; /* by kind: "employees", "teams" */

#endif
