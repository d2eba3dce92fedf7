/*
 * mapping_yaml: the loader's helpers: keys, strings, templates and tables
 * read with the place they stand at, one attribute's keys, the references
 * between attributes.
 */
#include "build.h"

#include "mapping_int.h"

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

/* ---- loading helpers ---------------------------------------------------- */

void mapping_join(char *buf, size_t len, const char *a, const char *b)
{
	int n = snprintf(buf, len, "%s.%s", a, b);

	if (n < 0 || (size_t)n >= len)
		buf[len - 1] = '\0'; /* a key path that long is cut in messages */
}

yaml_node_t *mapping_map_get(struct loader *L, yaml_node_t *m, const char *name, yaml_node_t **keynode)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_node(&L->y, p->key);
		const char *ks = ydoc_scalar(k);
		if (ks && strcmp(ks, name) == 0) {
			if (keynode)
				*keynode = k;
			return ydoc_node(&L->y, p->value);
		}
	}
	return NULL;
}

/* Reports keys of m that are not in allowed (NULL-terminated). */
void mapping_check_keys(struct loader *L, yaml_node_t *m, const char *path, const char *const *allowed)
{
	char key[512];

	if (!m || m->type != YAML_MAPPING_NODE)
		return;
	ydoc_check_duplicates(&L->y, L->d, m, path);
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_node(&L->y, p->key);
		const char *ks = ydoc_scalar(k);
		bool known = false;
		if (!ks) {
			ydoc_error(&L->y, L->d, k, path, "a key must be a name, got %s", ydoc_kind(k));
			continue;
		}
		for (size_t i = 0; allowed[i] && !known; i++)
			known = strcmp(allowed[i], ks) == 0;
		if (!known) {
			if (path && *path)
				mapping_join(key, sizeof(key), path, ks);
			else
				snprintf(key, sizeof(key), "%s", ks);
			ydoc_error(&L->y, L->d, k, key, "unknown key");
		}
	}
}

bool mapping_want_map(struct loader *L, yaml_node_t *n, const char *key)
{
	if (n && n->type == YAML_MAPPING_NODE)
		return true;
	ydoc_error(&L->y, L->d, n, key, "expected a mapping, got %s", ydoc_kind(n));
	return false;
}

const char *mapping_want_string(struct loader *L, yaml_node_t *n, const char *key)
{
	const char *s = ydoc_scalar(n);

	if (!s || ydoc_is_null(n)) {
		ydoc_error(&L->y, L->d, n, key, "expected a string, got %s", ydoc_kind(n));
		return NULL;
	}
	return s;
}

int mapping_want_bool(struct loader *L, yaml_node_t *n, const char *key, bool *out)
{
	const char *s = ydoc_scalar(n);

	if (s && ydoc_is_plain(n) && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)) {
		*out = s[0] == 't';
		return 0;
	}
	ydoc_error(&L->y, L->d, n, key, "expected true or false, got %s%s%s", s ? "\"" : "",
	           s ? s : ydoc_kind(n), s ? "\"" : "");
	return -1;
}

bool mapping_valid_attr_name(const char *s)
{
	/* a descriptor (RFC 4512: keystring) with optional ;options, or a numeric OID */
	if (isdigit((unsigned char)*s)) {
		for (; *s; s++)
			if (!isdigit((unsigned char)*s) && *s != '.')
				return false;
		return true;
	}
	if (!isalpha((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != ';')
			return false;
	return true;
}

char *mapping_dup_dn(struct loader *L, yaml_node_t *n, const char *key)
{
	const char *s = mapping_want_string(L, n, key);

	if (!s)
		return NULL;
	if (!dn_valid(s)) {
		ydoc_error(&L->y, L->d, n, key, "\"%s\" is not a valid DN", s);
		return NULL;
	}
	return strdup(s);
}

/* The column of byte off of a template written in scalar n (past its opening quote). */
static unsigned template_col(const yaml_node_t *n, size_t off)
{
	bool quoted = n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
	              n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;

	return ydoc_col(n) + (unsigned)off + (quoted ? 1u : 0u);
}

/* Parses text, which starts at byte at of scalar n, as a template whose every
 * map() names a table of tables: (mistakes reported at their column). */
struct tmpl *mapping_compile_text(struct loader *L, yaml_node_t *n, const char *key, const char *text, size_t at)
{
	char err[512] = "";
	size_t off = 0;
	struct tmpl *t = NULL;

	if (tmpl_parse(text, &t, err, sizeof(err), &off) < 0) {
		diag_add(L->d, L->y.file, ydoc_line(n), template_col(n, at + off), key, "%s", err);
		return NULL;
	}
	for (size_t i = 0; i < t->n; i++) {
		const struct tmpl_part *part = &t->parts[i];
		for (size_t f = 0; f < part->nfilters; f++) {
			const char *name = part->filters[f].id == TF_MAP ? part->filters[f].args[0].path.seg[0] : NULL;
			if (name && !tmpl_table_find(&L->m->tables, name))
				diag_add(L->d, L->y.file, ydoc_line(n), template_col(n, at + part->offset), key,
				         "map: no table \"%s\" in tables:", name);
		}
	}
	return t;
}

struct tmpl *mapping_compile(struct loader *L, yaml_node_t *n, const char *key)
{
	const char *s = ydoc_scalar(n);
	char num[64];

	if (!s) {
		ydoc_error(&L->y, L->d, n, key, "expected a template string, got %s", ydoc_kind(n));
		return NULL;
	}
	if (ydoc_is_null(n))
		s = "";
	if (ydoc_is_plain(n) && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0)) {
		snprintf(num, sizeof(num), "%s", s);
		s = num;
	}
	return mapping_compile_text(L, n, key, s, 0);
}

/* tables: NAME: {KEY: VALUE, ...}: the lookup tables map() reads. */
void mapping_load_tables(struct loader *L, yaml_node_t *x)
{
	struct tmpl_tables *tt = &L->m->tables;
	size_t n;

	if (!mapping_want_map(L, x, "tables"))
		return;
	ydoc_check_duplicates(&L->y, L->d, x, "tables");
	n = (size_t)(x->data.mapping.pairs.top - x->data.mapping.pairs.start);
	if (!(tt->v = calloc(n ? n : 1, sizeof(*tt->v)))) {
		ydoc_error(&L->y, L->d, x, "tables", "out of memory");
		return;
	}
	for (yaml_node_pair_t *p = x->data.mapping.pairs.start; p < x->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_node(&L->y, p->key), *v = ydoc_node(&L->y, p->value);
		const char *name = ydoc_scalar(k);
		struct tmpl_table *t;
		char key[512];
		if (!name || !mapping_valid_attr_name(name)) {
			ydoc_error(&L->y, L->d, k, "tables", "\"%s\" is not a table name (letters, digits, -)", name ? name : "?");
			continue;
		}
		mapping_join(key, sizeof(key), "tables", name);
		if (!mapping_want_map(L, v, key))
			continue;
		ydoc_check_duplicates(&L->y, L->d, v, key);
		t = &tt->v[tt->n++];
		t->name = strdup(name);
		strmap_init(&t->entries);
		for (yaml_node_pair_t *e = v->data.mapping.pairs.start; e < v->data.mapping.pairs.top; e++) {
			yaml_node_t *ek = ydoc_node(&L->y, e->key), *ev = ydoc_node(&L->y, e->value);
			char ekey[512];
			mapping_join(ekey, sizeof(ekey), key, ydoc_scalar(ek) ? ydoc_scalar(ek) : "?");
			if (!ydoc_scalar(ek) || !ydoc_scalar(ev) || ydoc_is_null(ev)) {
				ydoc_error(&L->y, L->d, ydoc_scalar(ek) ? ev : ek, ekey, "expected a key and a value (text)");
				continue;
			}
			if (strmap_put(&t->entries, ydoc_scalar(ek), ydoc_scalar(ev)) < 0)
				ydoc_error(&L->y, L->d, ek, ekey, "out of memory");
		}
	}
}

/* The place of node n, known by key. */
void mapping_note_place(const yaml_node_t *n, const char *key, struct mapping_place *p)
{
	free(p->key);
	p->line = n ? ydoc_line(n) : 0;
	p->column = n ? ydoc_col(n) : 0;
	p->key = strdup(key);
}

void mapping_conditions_free(struct mapping_scope *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].field);
		for (size_t k = 0; k < v[i].path.n; k++)
			free(v[i].path.seg[k]);
		free(v[i].path.seg);
		vlist_free(&v[i].allowed);
	}
	free(v);
}

void mapping_attr_free(struct mapping_attr *a)
{
	free(a->name);
	free(a->at.key);
	mapping_conditions_free(a->when, a->nwhen);
	for (size_t i = 0; a->alts && i < a->ntmpls; i++)
		mapping_conditions_free(a->alts[i].when, a->alts[i].nwhen);
	free(a->alts);
	for (size_t i = 0; i < a->ntmpls; i++)
		tmpl_free(a->tmpls[i]);
	free(a->tmpls);
}

static int add_tmpl(struct mapping_attr *a, struct tmpl *t)
{
	struct tmpl **v = realloc(a->tmpls, (a->ntmpls + 1) * sizeof(*v));

	if (!v) {
		tmpl_free(t);
		return -1;
	}
	a->tmpls = v;
	a->tmpls[a->ntmpls++] = t;
	return 0;
}

/* value: TEMPLATE | [TEMPLATE...] */
static void load_values(struct loader *L, yaml_node_t *v, const char *key, struct mapping_attr *a)
{
	if (v && v->type == YAML_SEQUENCE_NODE) {
		for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
			struct tmpl *t = mapping_compile(L, ydoc_node(&L->y, *it), key);
			if (t && add_tmpl(a, t) < 0)
				ydoc_error(&L->y, L->d, v, key, "out of memory");
		}
		return;
	}
	{
		struct tmpl *t = mapping_compile(L, v, key);
		if (t && add_tmpl(a, t) < 0)
			ydoc_error(&L->y, L->d, v, key, "out of memory");
	}
}

static const char *const attr_keys[] = { "value", "first", "unique", "create_only", "required", "max_length", "when",
	                                 NULL };


/* NAME: TEMPLATE | [TEMPLATE...] | {value, unique, create_only, required, max_length, when} */
/* first: [ALTERNATIVE, ...], each a template or { value: TEMPLATE, when: {...} }. */
static void load_first(struct loader *L, yaml_node_t *x, const char *path, struct mapping_attr *a)
{
	static const char *const alt_keys[] = { "value", "when", NULL };
	char key[512], sub[512];
	size_t n;

	mapping_join(key, sizeof(key), path, "first");
	if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start) {
		ydoc_error(&L->y, L->d, x, key, "expected a list of alternatives (templates, or { value, when })");
		return;
	}
	n = (size_t)(x->data.sequence.items.top - x->data.sequence.items.start);
	if (!(a->alts = calloc(n, sizeof(*a->alts))))
		return;
	a->first = true;
	for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top; it++) {
		yaml_node_t *e = ydoc_node(&L->y, *it), *value = e, *when = NULL;
		struct mapping_alt alt = { 0 };
		struct tmpl *t;
		if (e->type == YAML_MAPPING_NODE) {
			mapping_check_keys(L, e, key, alt_keys);
			value = mapping_map_get(L, e, "value", NULL);
			when = mapping_map_get(L, e, "when", NULL);
			if (!value) {
				ydoc_error(&L->y, L->d, e, key, "an alternative needs its value");
				continue;
			}
		}
		if (!(t = mapping_compile(L, value, key)))
			continue;
		mapping_join(sub, sizeof(sub), key, "when");
		if (when)
			mapping_load_conditions(L, when, sub, &alt.when, &alt.nwhen);
		a->alts[a->ntmpls] = alt;
		if (add_tmpl(a, t) < 0)
			ydoc_error(&L->y, L->d, e, key, "out of memory");
	}
}

void mapping_load_attr(struct loader *L, yaml_node_t *k, yaml_node_t *v, const char *key, struct mapping_attr *a,
                       bool options_allowed)
{
	a->name = strdup(ydoc_scalar(k));
	mapping_note_place(k, key, &a->at);
	if (!v || v->type != YAML_MAPPING_NODE) {
		load_values(L, v, key, a);
		return;
	}
	if (!options_allowed) {
		ydoc_error(&L->y, L->d, v, key, "expected a template or a list of templates, got a mapping");
		return;
	}
	mapping_check_keys(L, v, key, attr_keys);
	{
		char sub[512];
		yaml_node_t *x;
		bool b;
		x = mapping_map_get(L, v, "value", NULL);
		if (x && mapping_map_get(L, v, "first", NULL)) {
			ydoc_error(&L->y, L->d, v, key, "give value or first, not both");
		} else if (x) {
			mapping_join(sub, sizeof(sub), key, "value");
			load_values(L, x, sub, a);
		} else if ((x = mapping_map_get(L, v, "first", NULL))) {
			load_first(L, x, key, a);
		} else {
			ydoc_error(&L->y, L->d, v, key, "value is missing");
		}
		static const struct {
			const char *name;
			unsigned flag;
		} flags[] = { { "unique", MAPPING_ATTR_UNIQUE },
			      { "create_only", MAPPING_ATTR_CREATE_ONLY },
			      { "required", MAPPING_ATTR_REQUIRED } };
		for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
			x = mapping_map_get(L, v, flags[i].name, NULL);
			mapping_join(sub, sizeof(sub), key, flags[i].name);
			if (x && mapping_want_bool(L, x, sub, &b) == 0 && b)
				a->flags |= flags[i].flag;
		}
		if (a->first && (a->flags & MAPPING_ATTR_UNIQUE))
			ydoc_error(&L->y, L->d, mapping_map_get(L, v, "unique", NULL), key,
			           "first and unique do not go together: for candidates tried in turn, give unique a list of "
			           "templates as value");
		x = mapping_map_get(L, v, "when", NULL);
		mapping_join(sub, sizeof(sub), key, "when");
		if (x)
			mapping_load_conditions(L, x, sub, &a->when, &a->nwhen);
		x = mapping_map_get(L, v, "max_length", NULL);
		if (x) {
			const char *s = ydoc_scalar(x);
			char *end = NULL;
			long long n = s ? strtoll(s, &end, 10) : 0;
			mapping_join(sub, sizeof(sub), key, "max_length");
			if (!s || !*s || *end || n < 1 || n > 65535)
				ydoc_error(&L->y, L->d, x, sub, "expected a number of characters from 1 to 65535");
			else
				a->max_length = (size_t)n;
		}
	}
}

int mapping_find_attr(const struct mapping_object *o, const char *name)
{
	for (size_t i = 0; i < o->nattrs; i++)
		if (strcasecmp(o->attrs[i].name, name) == 0)
			return (int)i;
	return -1;
}

bool mapping_attr_uses_filter(const struct mapping_attr *a, enum tmpl_filter_id id)
{
	for (size_t t = 0; t < a->ntmpls; t++)
		if (tmpl_uses_filter(a->tmpls[t], id))
			return true;
	return false;
}

bool mapping_attr_literal(const struct mapping_attr *a, struct vlist *out)
{
	for (size_t t = 0; t < a->ntmpls; t++) {
		const struct tmpl *x = a->tmpls[t];
		if (a->first || a->nwhen || x->n > 1 || (x->n == 1 && x->parts[0].kind != TP_TEXT))
			return false;
	}
	for (size_t t = 0; t < a->ntmpls; t++)
		if (a->tmpls[t]->n == 1 && vlist_push_copy(out, a->tmpls[t]->parts[0].text, strlen(a->tmpls[t]->parts[0].text)) < 0)
			return false;
	return true;
}

/* The sensitive field a path names, or NULL (see privacy.h). */
const char *mapping_sensitive_in(const struct tmpl_path *path)
{
	for (size_t i = 0; i < path->n; i++)
		if (privacy_sensitive(path->seg[i]))
			return path->seg[i];
	return NULL;
}

/* Refuses templates of a that read a field the agent never keeps. */
static void refuse_sensitive(struct loader *L, const struct mapping_attr *a, yaml_node_t *at, const char *key)
{
	for (size_t t = 0; t < a->ntmpls; t++) {
		const struct tmpl *tp = a->tmpls[t];
		for (size_t i = 0; i < tp->n; i++) {
			const struct tmpl_part *p = &tp->parts[i];
			const char *field = p->kind == TP_FIELD ? mapping_sensitive_in(&p->path) : NULL;
			for (size_t k = 0; !field && k < p->nfilters; k++)
				for (size_t g = 0; !field && g < p->filters[k].nargs && g < 2; g++)
					if (p->filters[k].args[g].kind == TA_PATH)
						field = mapping_sensitive_in(&p->filters[k].args[g].path);
			if (field)
				ydoc_error(&L->y, L->d, at, key, "{%s}: bank, social security and salary fields are never "
				           "kept or written by the agent", field);
		}
	}
}

/* Resolves {@attr} in the templates of a; records dependencies in deps. */
void mapping_resolve_refs(struct loader *L, struct mapping_object *o, struct mapping_attr *a, yaml_node_t *at,
                          const char *key, bool *deps)
{
	/* a team's member attribute is worked out one member at a time, apart
	 * from the team's other attributes: {@attr} has nothing to read there */
	bool member = o == &L->m->obj[MAPPING_TEAM] && mapping_attr_uses_filter(a, TF_EMPLOYEE_DN);

	refuse_sensitive(L, a, at, key);
	for (size_t t = 0; t < a->ntmpls; t++) {
		struct tmpl *tp = a->tmpls[t];
		for (size_t i = 0; i < tp->n; i++) {
			struct tmpl_part *p = &tp->parts[i];
			int idx;
			if (p->kind != TP_ATTR)
				continue;
			if (member) {
				ydoc_error(&L->y, L->d, at, key, "{@%s}: a member attribute (one using employee_dn) cannot "
				           "read other attributes; take the value from the record", p->text);
				continue;
			}
			idx = mapping_find_attr(o, p->text);
			if (idx < 0) {
				ydoc_error(&L->y, L->d, at, key, "{@%s} names an attribute this mapping does not set", p->text);
				continue;
			}
			p->attr_index = idx;
			if (deps)
				deps[idx] = true;
		}
	}
}
