/*
 * tmpl: the mapping template language, compiled once and evaluated per record.
 *
 *   text {path|filter|filter(arg, arg)} text {@attr} {{literal braces}}
 *
 * tmpl_parse() turns a template string into parts (literal text, a record
 * field, or another attribute's computed value), each with its filters
 * resolved and their argument counts checked; a mistake comes back as a
 * message and the byte offset where it was found, for the loader to report
 * by place.  tmpl_eval() evaluates a compiled template against a cJSON record
 * without re-parsing anything, producing a list of values: a list field
 * yields one value per element, a missing or null field none.
 *
 * When a template is a single expression its values are the expression's;
 * when it mixes text and expressions, each expression stands for one value
 * (an empty list counts as one empty string) and the results are the
 * combinations, in order.  When every expression of such a template comes
 * out empty, the template gives no value at all ("/home/{@uid}" with no uid
 * is absent, not "/home/").  Values that render empty are dropped later by
 * the caller (vlist_normalize), which makes the attribute absent.
 *
 * Memory: a struct tmpl owns everything it points to; tmpl_free() releases
 * it.  tmpl_eval() appends malloc'd strings to the caller's vlist.
 */
#ifndef FLA_TMPL_H
#define FLA_TMPL_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/sbuf.h"
#include "common/strmap.h"
#include "common/vlist.h"

enum tmpl_filter_id {
	TF_LOWER,
	TF_UPPER,
	TF_TRIM,
	TF_ASCII,
	TF_SLUG,
	TF_ALNUM,
	TF_TRUNCATE,
	TF_REPLACE,
	TF_DEFAULT,
	TF_DATE,
	TF_ADD,
	TF_JOIN,
	TF_EMPLOYEE_DN,
	TF_BEFORE,
	TF_AFTER,
	TF_RDN,
	TF_TRANSLIT,
	TF_MAP,
};

struct tmpl_path {
	char **seg;
	size_t n;
};

enum tmpl_arg_kind {
	TA_STRING,
	TA_NUMBER,
	TA_PATH,
};

struct tmpl_arg {
	enum tmpl_arg_kind kind;
	char *text; /* the string, or the number as written */
	struct tmpl_path path;
};

struct translit;

struct tmpl_filter {
	enum tmpl_filter_id id;
	struct tmpl_arg args[2];
	size_t nargs;
	struct translit *transform; /* translit('ID'): compiled when parsed; owned */
};

enum tmpl_part_kind {
	TP_TEXT,
	TP_FIELD,
	TP_ATTR,
};

struct tmpl_part {
	enum tmpl_part_kind kind;
	char *text;            /* TP_TEXT: the literal; TP_ATTR: the attribute name */
	size_t offset;         /* where the part starts in the source, for messages */
	struct tmpl_path path; /* TP_FIELD */
	int attr_index;        /* TP_ATTR: set by the mapping loader */
	struct tmpl_filter *filters;
	size_t nfilters;
};

struct tmpl {
	struct tmpl_part *parts;
	size_t n;
	char *source;
};

/* Compiles src.  On a mistake returns -1, writes the message into err and
 * the byte offset into *err_off. */
int tmpl_parse(const char *src, struct tmpl **out, char *err, size_t errlen, size_t *err_off);
void tmpl_free(struct tmpl *t);

/* Whether any part uses filter id (e.g. employee_dn). */
bool tmpl_uses_filter(const struct tmpl *t, enum tmpl_filter_id id);

/* Looks up an employee's DN: returns 1 and a malloc'd DN in *dn when found,
 * 0 when there is no such entry, 2 when the employee is deliberately left
 * out (a leaver kept out of groups), -1 on failure (with a message in err). */
typedef int (*tmpl_dn_lookup)(void *ctx, const char *employee_id, char **dn, struct sbuf *err);

/* A lookup table of the mapping (tables: NAME: {KEY: VALUE, ...}), for map(NAME). */
struct tmpl_table {
	char *name;
	struct strmap entries; /* key -> value: looked up in constant time, however large */
};

struct tmpl_tables {
	struct tmpl_table *v;
	size_t n;
};

/* The table named name, or NULL. */
const struct tmpl_table *tmpl_table_find(const struct tmpl_tables *t, const char *name);

struct tmpl_env {
	const cJSON *record;
	const struct vlist *attrs; /* computed values, indexed by attr_index */
	tmpl_dn_lookup employee_dn;
	void *ctx;
	struct vlist *unresolved; /* employee ids employee_dn could not resolve */
	struct sbuf *err;         /* the reason, when tmpl_eval fails */
	const struct tmpl_tables *tables; /* for map(); NULL: none */
};

/* Appends the template's values to out; returns 0, or -1 with a record
 * error (bad input for a filter, say) in env->err. */
int tmpl_eval(const struct tmpl *t, struct tmpl_env *env, struct vlist *out);

/* The same, but a template of text and expressions gives no value unless
 * every expression gives one ("{preferred_name} {last_name}" without a
 * preferred name is nothing, not " Garcia"): for alternatives (first:). */
int tmpl_eval_whole(const struct tmpl *t, struct tmpl_env *env, struct vlist *out);

/* Appends the values of a record field (as {path} would give them). */
int tmpl_field_values(const cJSON *record, const struct tmpl_path *path, struct vlist *out, struct sbuf *err);

/* Appends to out, after sep, each record field t reads (in an expression or
 * a filter's argument) that the record holds as null, not merely lacks,
 * separated by ", "; returns how many it appended.  A required attribute
 * that comes out empty says which of its fields were sent null. */
size_t tmpl_null_fields(const struct tmpl *t, const cJSON *record, const char *sep, struct sbuf *out);

/* Formats a cJSON number the way templates print it. */
void tmpl_format_number(double d, char *buf, size_t len);

#endif
