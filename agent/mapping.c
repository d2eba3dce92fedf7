#include "build.h"

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

static const char *const kind_names[] = { "employee", "team" };
static const char *const section_names[] = { "employees", "teams" };

const char *mapping_kind_name(enum mapping_kind kind)
{
	return kind_names[kind];
}

/* ---- loading helpers ---------------------------------------------------- */

static void join(char *buf, size_t len, const char *a, const char *b)
{
	int n = snprintf(buf, len, "%s.%s", a, b);

	if (n < 0 || (size_t)n >= len)
		buf[len - 1] = '\0'; /* a key path that long is cut in messages */
}

static yaml_node_t *map_get(struct loader *L, yaml_node_t *m, const char *name, yaml_node_t **keynode)
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
static void check_keys(struct loader *L, yaml_node_t *m, const char *path, const char *const *allowed)
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
				join(key, sizeof(key), path, ks);
			else
				snprintf(key, sizeof(key), "%s", ks);
			ydoc_error(&L->y, L->d, k, key, "unknown key");
		}
	}
}

static bool want_map(struct loader *L, yaml_node_t *n, const char *key)
{
	if (n && n->type == YAML_MAPPING_NODE)
		return true;
	ydoc_error(&L->y, L->d, n, key, "expected a mapping, got %s", ydoc_kind(n));
	return false;
}

static const char *want_string(struct loader *L, yaml_node_t *n, const char *key)
{
	const char *s = ydoc_scalar(n);

	if (!s || ydoc_is_null(n)) {
		ydoc_error(&L->y, L->d, n, key, "expected a string, got %s", ydoc_kind(n));
		return NULL;
	}
	return s;
}

static int want_bool(struct loader *L, yaml_node_t *n, const char *key, bool *out)
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

static bool valid_attr_name(const char *s)
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

static char *dup_dn(struct loader *L, yaml_node_t *n, const char *key)
{
	const char *s = want_string(L, n, key);

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
static struct tmpl *compile_text(struct loader *L, yaml_node_t *n, const char *key, const char *text, size_t at)
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

static struct tmpl *compile(struct loader *L, yaml_node_t *n, const char *key)
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
	return compile_text(L, n, key, s, 0);
}

/* tables: NAME: {KEY: VALUE, ...}: the lookup tables map() reads. */
static void load_tables(struct loader *L, yaml_node_t *x)
{
	struct tmpl_tables *tt = &L->m->tables;
	size_t n;

	if (!want_map(L, x, "tables"))
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
		if (!name || !valid_attr_name(name)) {
			ydoc_error(&L->y, L->d, k, "tables", "\"%s\" is not a table name (letters, digits, -)", name ? name : "?");
			continue;
		}
		join(key, sizeof(key), "tables", name);
		if (!want_map(L, v, key))
			continue;
		ydoc_check_duplicates(&L->y, L->d, v, key);
		t = &tt->v[tt->n++];
		t->name = strdup(name);
		strmap_init(&t->entries);
		for (yaml_node_pair_t *e = v->data.mapping.pairs.start; e < v->data.mapping.pairs.top; e++) {
			yaml_node_t *ek = ydoc_node(&L->y, e->key), *ev = ydoc_node(&L->y, e->value);
			char ekey[512];
			join(ekey, sizeof(ekey), key, ydoc_scalar(ek) ? ydoc_scalar(ek) : "?");
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
static void place(const yaml_node_t *n, const char *key, struct mapping_place *p)
{
	free(p->key);
	p->line = n ? ydoc_line(n) : 0;
	p->column = n ? ydoc_col(n) : 0;
	p->key = strdup(key);
}

static void conditions_free(struct mapping_scope *v, size_t n)
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

static void attr_free(struct mapping_attr *a)
{
	free(a->name);
	free(a->at.key);
	conditions_free(a->when, a->nwhen);
	for (size_t i = 0; a->alts && i < a->ntmpls; i++)
		conditions_free(a->alts[i].when, a->alts[i].nwhen);
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
			struct tmpl *t = compile(L, ydoc_node(&L->y, *it), key);
			if (t && add_tmpl(a, t) < 0)
				ydoc_error(&L->y, L->d, v, key, "out of memory");
		}
		return;
	}
	{
		struct tmpl *t = compile(L, v, key);
		if (t && add_tmpl(a, t) < 0)
			ydoc_error(&L->y, L->d, v, key, "out of memory");
	}
}

static const char *const attr_keys[] = { "value", "first", "unique", "create_only", "required", "max_length", "when",
	                                 NULL };

static void load_conditions(struct loader *L, yaml_node_t *s, const char *path, struct mapping_scope **out,
                            size_t *nout);

/* NAME: TEMPLATE | [TEMPLATE...] | {value, unique, create_only, required, max_length, when} */
/* first: [ALTERNATIVE, ...], each a template or { value: TEMPLATE, when: {...} }. */
static void load_first(struct loader *L, yaml_node_t *x, const char *path, struct mapping_attr *a)
{
	static const char *const alt_keys[] = { "value", "when", NULL };
	char key[512], sub[512];
	size_t n;

	join(key, sizeof(key), path, "first");
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
			check_keys(L, e, key, alt_keys);
			value = map_get(L, e, "value", NULL);
			when = map_get(L, e, "when", NULL);
			if (!value) {
				ydoc_error(&L->y, L->d, e, key, "an alternative needs its value");
				continue;
			}
		}
		if (!(t = compile(L, value, key)))
			continue;
		join(sub, sizeof(sub), key, "when");
		if (when)
			load_conditions(L, when, sub, &alt.when, &alt.nwhen);
		a->alts[a->ntmpls] = alt;
		if (add_tmpl(a, t) < 0)
			ydoc_error(&L->y, L->d, e, key, "out of memory");
	}
}

static void load_attr(struct loader *L, yaml_node_t *k, yaml_node_t *v, const char *key, struct mapping_attr *a,
                      bool options_allowed)
{
	a->name = strdup(ydoc_scalar(k));
	place(k, key, &a->at);
	if (!v || v->type != YAML_MAPPING_NODE) {
		load_values(L, v, key, a);
		return;
	}
	if (!options_allowed) {
		ydoc_error(&L->y, L->d, v, key, "expected a template or a list of templates, got a mapping");
		return;
	}
	check_keys(L, v, key, attr_keys);
	{
		char sub[512];
		yaml_node_t *x;
		bool b;
		x = map_get(L, v, "value", NULL);
		if (x && map_get(L, v, "first", NULL)) {
			ydoc_error(&L->y, L->d, v, key, "give value or first, not both");
		} else if (x) {
			join(sub, sizeof(sub), key, "value");
			load_values(L, x, sub, a);
		} else if ((x = map_get(L, v, "first", NULL))) {
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
			x = map_get(L, v, flags[i].name, NULL);
			join(sub, sizeof(sub), key, flags[i].name);
			if (x && want_bool(L, x, sub, &b) == 0 && b)
				a->flags |= flags[i].flag;
		}
		if (a->first && (a->flags & MAPPING_ATTR_UNIQUE))
			ydoc_error(&L->y, L->d, map_get(L, v, "unique", NULL), key,
			           "first and unique do not go together: for candidates tried in turn, give unique a list of "
			           "templates as value");
		x = map_get(L, v, "when", NULL);
		join(sub, sizeof(sub), key, "when");
		if (x)
			load_conditions(L, x, sub, &a->when, &a->nwhen);
		x = map_get(L, v, "max_length", NULL);
		if (x) {
			const char *s = ydoc_scalar(x);
			char *end = NULL;
			long long n = s ? strtoll(s, &end, 10) : 0;
			join(sub, sizeof(sub), key, "max_length");
			if (!s || !*s || *end || n < 1 || n > 65535)
				ydoc_error(&L->y, L->d, x, sub, "expected a number of characters from 1 to 65535");
			else
				a->max_length = (size_t)n;
		}
	}
}

static int find_attr(const struct mapping_object *o, const char *name)
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
static const char *sensitive_in(const struct tmpl_path *path)
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
			const char *field = p->kind == TP_FIELD ? sensitive_in(&p->path) : NULL;
			for (size_t k = 0; !field && k < p->nfilters; k++)
				for (size_t g = 0; !field && g < p->filters[k].nargs && g < 2; g++)
					if (p->filters[k].args[g].kind == TA_PATH)
						field = sensitive_in(&p->filters[k].args[g].path);
			if (field)
				ydoc_error(&L->y, L->d, at, key, "{%s}: bank, social security and salary fields are never "
				           "kept or written by the agent", field);
		}
	}
}

/* Resolves {@attr} in the templates of a; records dependencies in deps. */
static void resolve_refs(struct loader *L, struct mapping_object *o, struct mapping_attr *a, yaml_node_t *at,
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
			idx = find_attr(o, p->text);
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

struct topo {
	struct mapping_object *o;
	bool *deps; /* nattrs x nattrs: deps[a * n + b] = a uses b */
	int *state; /* 0 new, 1 visiting, 2 done */
	size_t *stack;
	size_t depth;
	size_t norder;
	int cycle;   /* attribute index where a cycle was found, or -1 */
	char path[512];
};

static void visit(struct topo *T, size_t a)
{
	size_t n = T->o->nattrs;

	if (T->state[a] == 2 || T->cycle >= 0)
		return;
	if (T->state[a] == 1) {
		/* describe the cycle: from a's first appearance on the stack back to a */
		size_t start = 0;
		while (start < T->depth && T->stack[start] != a)
			start++;
		T->path[0] = '\0';
		for (size_t i = start; i < T->depth; i++) {
			strncat(T->path, T->o->attrs[T->stack[i]].name, sizeof(T->path) - strlen(T->path) - 1);
			strncat(T->path, " -> ", sizeof(T->path) - strlen(T->path) - 1);
		}
		strncat(T->path, T->o->attrs[a].name, sizeof(T->path) - strlen(T->path) - 1);
		T->cycle = (int)a;
		return;
	}
	T->state[a] = 1;
	T->stack[T->depth++] = a;
	for (size_t b = 0; b < n; b++)
		if (T->deps[a * n + b])
			visit(T, b);
	T->depth--;
	T->state[a] = 2;
	if (T->cycle < 0)
		T->o->order[T->norder++] = a;
}

static const char *const object_keys[] = { "base", "search_base", "create_bases", "key", "rdn", "object_classes",
	                                    "only_if", "attributes", "terminated", "initial_password", NULL };
static const char *const terminated_keys[] = { "action", "move_to", "attributes", "remove_from_groups", NULL };

/* initial_password: { length: 12-128 (20), method: password_modify | unicodePwd | userPassword } */
static void load_initial_password(struct loader *L, struct mapping_object *o, yaml_node_t *x, const char *path)
{
	static const char *const keys[] = { "length", "method", NULL };
	char key[512];
	yaml_node_t *v;

	if (!want_map(L, x, path))
		return;
	check_keys(L, x, path, keys);
	o->password_length = 20;
	o->password_method = MAPPING_PASSWORD_MODIFY;
	join(key, sizeof(key), path, "length");
	if ((v = map_get(L, x, "length", NULL))) {
		const char *s = ydoc_scalar(v);
		char *end = NULL;
		long long n = s ? strtoll(s, &end, 10) : 0;
		if (!s || !*s || *end || n < 12 || n > 128)
			ydoc_error(&L->y, L->d, v, key, "expected a number of characters from 12 to 128");
		else
			o->password_length = (unsigned)n;
	}
	join(key, sizeof(key), path, "method");
	if ((v = map_get(L, x, "method", NULL))) {
		const char *s = want_string(L, v, key);
		if (s && strcmp(s, "unicodePwd") == 0)
			o->password_method = MAPPING_PASSWORD_UNICODEPWD;
		else if (s && strcmp(s, "userPassword") == 0)
			o->password_method = MAPPING_PASSWORD_USERPASSWORD;
		else if (s && strcmp(s, "password_modify") != 0)
			ydoc_error(&L->y, L->d, v, key, "\"%s\" is not one of password_modify | unicodePwd | userPassword", s);
	}
}

static void load_terminated(struct loader *L, struct mapping_object *o, yaml_node_t *t, const char *path)
{
	char key[512];
	yaml_node_t *x;

	if (!want_map(L, t, path))
		return;
	check_keys(L, t, path, terminated_keys);
	o->terminated_given = true;
	x = map_get(L, t, "action", NULL);
	join(key, sizeof(key), path, "action");
	if (x) {
		const char *s = want_string(L, x, key);
		if (s && strcmp(s, "disable") == 0)
			o->action = MAPPING_DISABLE;
		else if (s && strcmp(s, "move") == 0)
			o->action = MAPPING_MOVE;
		else if (s && strcmp(s, "delete") == 0)
			o->action = MAPPING_DELETE;
		else if (s)
			ydoc_error(&L->y, L->d, x, key, "\"%s\" is not one of disable | move | delete", s);
	}
	x = map_get(L, t, "move_to", NULL);
	join(key, sizeof(key), path, "move_to");
	if (x) {
		o->move_to = dup_dn(L, x, key);
		place(x, key, &o->move_to_at);
	} else if (o->action == MAPPING_MOVE)
		ydoc_error(&L->y, L->d, t, key, "required with action: move");
	x = map_get(L, t, "remove_from_groups", NULL);
	join(key, sizeof(key), path, "remove_from_groups");
	if (x)
		want_bool(L, x, key, &o->remove_from_groups);
	x = map_get(L, t, "attributes", NULL);
	join(key, sizeof(key), path, "attributes");
	if (x && want_map(L, x, key)) {
		size_t n = (size_t)(x->data.mapping.pairs.top - x->data.mapping.pairs.start);
		ydoc_check_duplicates(&L->y, L->d, x, key);
		o->term_attrs = calloc(n ? n : 1, sizeof(*o->term_attrs));
		if (!o->term_attrs) {
			ydoc_error(&L->y, L->d, x, key, "out of memory");
			return;
		}
		for (yaml_node_pair_t *p = x->data.mapping.pairs.start; p < x->data.mapping.pairs.top; p++) {
			yaml_node_t *k = ydoc_node(&L->y, p->key);
			const char *ks = ydoc_scalar(k);
			char akey[512];
			struct mapping_attr *a;
			if (!ks || !valid_attr_name(ks)) {
				ydoc_error(&L->y, L->d, k, key, "\"%s\" is not an attribute name", ks ? ks : "?");
				continue;
			}
			join(akey, sizeof(akey), key, ks);
			if (strcasecmp(ks, "objectClass") == 0 || (o->key_attr && strcasecmp(ks, o->key_attr) == 0) ||
			    strcasecmp(ks, o->rdn ? o->rdn : "") == 0) {
				ydoc_error(&L->y, L->d, k, akey, "cannot be changed on termination (objectClass, the key "
				                                  "and the RDN attribute stay as they are)");
				continue;
			}
			a = &o->term_attrs[o->nterm_attrs++];
			load_attr(L, k, ydoc_node(&L->y, p->value), akey, a, false);
			resolve_refs(L, o, a, ydoc_node(&L->y, p->value), akey, NULL);
		}
	}
}

/* only_if and when: FIELD: VALUE | [VALUE...], each field one of its values. */
static void load_conditions(struct loader *L, yaml_node_t *s, const char *path, struct mapping_scope **out,
                            size_t *nout)
{
	size_t n;

	if (!want_map(L, s, path))
		return;
	ydoc_check_duplicates(&L->y, L->d, s, path);
	n = (size_t)(s->data.mapping.pairs.top - s->data.mapping.pairs.start);
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return;
	for (yaml_node_pair_t *p = s->data.mapping.pairs.start; p < s->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_node(&L->y, p->key), *v = ydoc_node(&L->y, p->value);
		const char *ks = ydoc_scalar(k);
		struct mapping_scope *sc = &(*out)[*nout];
		char key[512], err[256];
		struct tmpl *t = NULL;
		size_t off;
		if (!ks)
			continue;
		join(key, sizeof(key), path, ks);
		/* the field is parsed as a {path} to share the template's rules */
		{
			char buf[300];
			snprintf(buf, sizeof(buf), "{%s}", ks);
			if (tmpl_parse(buf, &t, err, sizeof(err), &off) < 0 || t->n != 1 || t->parts[0].kind != TP_FIELD ||
			    t->parts[0].nfilters) {
				ydoc_error(&L->y, L->d, k, key, "\"%s\" is not a field name (a or a.b)", ks);
				tmpl_free(t);
				continue;
			}
		}
		if (sensitive_in(&t->parts[0].path)) {
			ydoc_error(&L->y, L->d, k, key, "%s: bank, social security and salary fields are never kept or "
			           "read by the agent", ks);
			tmpl_free(t);
			continue;
		}
		sc->field = strdup(ks);
		sc->path = t->parts[0].path;
		t->parts[0].path.seg = NULL;
		t->parts[0].path.n = 0;
		tmpl_free(t);
		vlist_init(&sc->allowed);
		(*nout)++;
		if (v && v->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
				yaml_node_t *e = ydoc_node(&L->y, *it);
				const char *es = ydoc_scalar(e);
				if (!es)
					ydoc_error(&L->y, L->d, e, key, "expected a value, got %s", ydoc_kind(e));
				else
					vlist_push_copy(&sc->allowed, es, strlen(es));
			}
		} else if (ydoc_scalar(v) && !ydoc_is_null(v)) {
			vlist_push_copy(&sc->allowed, ydoc_scalar(v), strlen(ydoc_scalar(v)));
		} else {
			ydoc_error(&L->y, L->d, v, key, "expected a value or a list of values, got %s", ydoc_kind(v));
		}
	}
}

/* "ATTR={template},DN": the first RDN's value comes from the record (escaped
 * by libldap when the DN is built), the rest is a fixed DN.  0 and the three
 * parts, or -1 (reported). */
static int load_dn_template(struct loader *L, yaml_node_t *x, const char *key, char **attr, char **rest,
                            struct tmpl **t)
{
	const char *s = ydoc_scalar(x), *eq = s ? strchr(s, '=') : NULL, *comma = NULL;
	int depth = 0;
	char *value;

	for (const char *c = eq ? eq + 1 : ""; *c && !comma; c++) {
		if (*c == '{')
			depth++;
		else if (*c == '}')
			depth--;
		else if (*c == ',' && depth == 0)
			comma = c;
	}
	if (!eq || !comma || strchr(comma, '{') || !dn_valid(comma + 1)) {
		ydoc_error(&L->y, L->d, x, key, "a DN template is ATTR={template},DN: only the first RDN's value may "
		           "come from the record (\"ou={location_id|map(sites)},ou=people,dc=example,dc=com\")");
		return -1;
	}
	*attr = strndup(s, (size_t)(eq - s));
	*rest = strdup(comma + 1);
	value = strndup(eq + 1, (size_t)(comma - eq - 1));
	*t = value ? compile_text(L, x, key, value, (size_t)(eq + 1 - s)) : NULL;
	free(value);
	if (*attr && !valid_attr_name(*attr))
		ydoc_error(&L->y, L->d, x, key, "\"%s\" is not an attribute name", *attr);
	for (size_t i = 0; *t && i < (*t)->n; i++)
		if ((*t)->parts[i].kind == TP_ATTR)
			ydoc_error(&L->y, L->d, x, key, "a DN template cannot use {@attr}: it comes from the record");
	return *attr && *rest && *t ? 0 : -1;
}

/* base (required) and search_base (default: base). */
static void load_bases(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	char key[512];
	yaml_node_t *x;

	join(key, sizeof(key), path, "base");
	if (!(x = map_get(L, sec, "base", NULL)))
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
	else if (ydoc_scalar(x) && strchr(ydoc_scalar(x), '{'))
		load_dn_template(L, x, key, &o->base_attr, &o->base_rest, &o->base_tmpl); /* placement per record */
	else
		o->base = dup_dn(L, x, key);
	place(x, key, &o->base_at);
	place(x, key, &o->search_base_at);
	join(key, sizeof(key), path, "search_base");
	if ((x = map_get(L, sec, "search_base", NULL))) {
		o->search_base = dup_dn(L, x, key);
		place(x, key, &o->search_base_at);
	} else if (o->base) {
		o->search_base = strdup(o->base);
	} else if (o->base_tmpl) {
		ydoc_error(&L->y, L->d, sec, key, "required when base is a template (where the agent looks for entries)");
	}
	join(key, sizeof(key), path, "create_bases");
	if ((x = map_get(L, sec, "create_bases", NULL)))
		want_bool(L, x, key, &o->create_bases);
}

/* key: { attribute, value }, the value from the record only. */
static void load_key(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	static const char *const kkeys[] = { "attribute", "value", NULL };
	char key[512], sub[512];
	yaml_node_t *x, *ka, *kv;
	const char *s;

	join(key, sizeof(key), path, "key");
	if (!(x = map_get(L, sec, "key", NULL))) {
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
		return;
	}
	if (!want_map(L, x, key))
		return;
	ka = map_get(L, x, "attribute", NULL);
	kv = map_get(L, x, "value", NULL);
	check_keys(L, x, key, kkeys);
	join(sub, sizeof(sub), key, "attribute");
	if (!ka)
		ydoc_error(&L->y, L->d, x, sub, "required key is missing");
	else if ((s = want_string(L, ka, sub)) && !valid_attr_name(s))
		ydoc_error(&L->y, L->d, ka, sub, "\"%s\" is not an attribute name", s);
	else if (s)
		o->key_attr = strdup(s);
	place(ka, sub, &o->key_at);
	join(sub, sizeof(sub), key, "value");
	if (!kv)
		ydoc_error(&L->y, L->d, x, sub, "required key is missing");
	else
		o->key_value = compile(L, kv, sub);
	for (size_t i = 0; o->key_value && i < o->key_value->n; i++)
		if (o->key_value->parts[i].kind == TP_ATTR)
			ydoc_error(&L->y, L->d, kv, sub, "the key cannot use {@attr}: it must come from the record");
}

static void load_object_classes(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	char key[512];
	yaml_node_t *x;

	join(key, sizeof(key), path, "object_classes");
	if (!(x = map_get(L, sec, "object_classes", NULL))) {
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
		return;
	}
	if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start) {
		ydoc_error(&L->y, L->d, x, key, "expected a list of object classes");
		return;
	}
	for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top; it++) {
		yaml_node_t *e = ydoc_node(&L->y, *it);
		const char *s = want_string(L, e, key);
		struct mapping_place *at;
		if (s && !valid_attr_name(s)) {
			ydoc_error(&L->y, L->d, e, key, "\"%s\" is not an object class name", s);
		} else if (s && (at = realloc(o->class_at, (o->object_classes.n + 1) * sizeof(*at)))) {
			o->class_at = at;
			memset(&at[o->object_classes.n], 0, sizeof(*at));
			place(e, key, &at[o->object_classes.n]);
			vlist_push_copy(&o->object_classes, s, strlen(s));
		}
	}
}

/* One entry of attributes: its name checked, then its values. */
static void load_one_attribute(struct loader *L, struct mapping_object *o, yaml_node_t *k, yaml_node_t *v,
                               const char *key, const char *path)
{
	const char *ks = ydoc_scalar(k);
	char akey[512];

	if (!ks || !valid_attr_name(ks)) {
		ydoc_error(&L->y, L->d, k, key, "\"%s\" is not an attribute name", ks ? ks : "?");
		return;
	}
	join(akey, sizeof(akey), key, ks);
	if (strcasecmp(ks, "objectClass") == 0) {
		ydoc_error(&L->y, L->d, k, akey, "object classes are set by %s.object_classes", path);
		return;
	}
	if (find_attr(o, ks) >= 0) {
		/* the same spelling twice is reported as a duplicate key above */
		if (strcmp(o->attrs[find_attr(o, ks)].name, ks) != 0)
			ydoc_error(&L->y, L->d, k, akey, "listed twice (attribute names ignore case)");
		return;
	}
	if (o->key_attr && strcasecmp(ks, o->key_attr) == 0) {
		const char *src = o->key_value ? o->key_value->source : NULL;
		const char *mine = ydoc_scalar(v);
		if (!src || !mine || strcmp(src, mine) != 0) {
			ydoc_error(&L->y, L->d, k, akey, "the key attribute is written from %s.key.value; leave it out here",
			           path);
			return;
		}
	}
	load_attr(L, k, v, akey, &o->attrs[o->nattrs], true);
	if (o->key_attr && strcasecmp(ks, o->key_attr) == 0)
		o->attrs[o->nattrs].is_key = true;
	o->nattrs++;
}

/* attributes (required): the node, or NULL when there is nothing more to load. */
static yaml_node_t *load_attributes(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	char key[512];
	yaml_node_t *attrs;
	size_t n;

	join(key, sizeof(key), path, "attributes");
	if (!(attrs = map_get(L, sec, "attributes", NULL))) {
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
		return NULL;
	}
	if (!want_map(L, attrs, key))
		return NULL;
	ydoc_check_duplicates(&L->y, L->d, attrs, key);
	n = (size_t)(attrs->data.mapping.pairs.top - attrs->data.mapping.pairs.start);
	o->attrs = calloc(n + 1, sizeof(*o->attrs));
	o->order = calloc(n + 1, sizeof(*o->order));
	if (!o->attrs || !o->order) {
		ydoc_error(&L->y, L->d, attrs, key, "out of memory");
		return NULL;
	}
	for (yaml_node_pair_t *p = attrs->data.mapping.pairs.start; p < attrs->data.mapping.pairs.top; p++)
		load_one_attribute(L, o, ydoc_node(&L->y, p->key), ydoc_node(&L->y, p->value), key, path);
	return attrs;
}

/* The key attribute is written on every entry, listed or not. */
static int add_key_attribute(struct loader *L, struct mapping_object *o, yaml_node_t *attrs, const char *path)
{
	char key[512];

	if (find_attr(o, o->key_attr) < 0) {
		struct mapping_attr *a = &o->attrs[o->nattrs];
		a->name = strdup(o->key_attr); /* no templates: evaluated from key_value */
		a->at = (struct mapping_place){ o->key_at.line, o->key_at.column,
			                         o->key_at.key ? strdup(o->key_at.key) : NULL };
		a->is_key = true;
		if (!a->name) {
			join(key, sizeof(key), path, "attributes");
			ydoc_error(&L->y, L->d, attrs, key, "out of memory");
			return -1;
		}
		o->nattrs++;
	}
	o->key_index = (size_t)find_attr(o, o->key_attr);
	return 0;
}

static void load_rdn(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	char rkey[512];
	yaml_node_t *x;
	const char *s;
	int idx;

	join(rkey, sizeof(rkey), path, "rdn");
	if (!(x = map_get(L, sec, "rdn", NULL)) || !(s = want_string(L, x, rkey)))
		return;
	if ((idx = find_attr(o, s)) < 0) {
		ydoc_error(&L->y, L->d, x, rkey, "\"%s\" is not among %s.attributes (nor the key attribute)", s, path);
		return;
	}
	o->rdn = strdup(s);
	o->rdn_index = (size_t)idx;
}

/* {@attr} references, their dependencies and the order attributes are evaluated in; a cycle is a mistake. */
static void order_attributes(struct loader *L, struct mapping_object *o, yaml_node_t *attrs, const char *path)
{
	struct topo T = { .o = o, .cycle = -1 };
	char key[512];

	join(key, sizeof(key), path, "attributes");
	T.deps = calloc(o->nattrs * o->nattrs, sizeof(*T.deps));
	T.state = calloc(o->nattrs, sizeof(*T.state));
	T.stack = calloc(o->nattrs, sizeof(*T.stack));
	if (!T.deps || !T.state || !T.stack) {
		ydoc_error(&L->y, L->d, attrs, key, "out of memory");
		goto cleanup;
	}
	for (yaml_node_pair_t *p = attrs->data.mapping.pairs.start; p < attrs->data.mapping.pairs.top; p++) {
		const char *ks = ydoc_scalar(ydoc_node(&L->y, p->key));
		int idx = ks ? find_attr(o, ks) : -1;
		char akey[512];
		if (idx < 0)
			continue;
		join(akey, sizeof(akey), key, ks);
		resolve_refs(L, o, &o->attrs[idx], ydoc_node(&L->y, p->value), akey, T.deps + (size_t)idx * o->nattrs);
	}
	for (size_t a = 0; a < o->nattrs && T.cycle < 0; a++)
		visit(&T, a);
	if (T.cycle >= 0) {
		yaml_node_t *ak = NULL;
		char akey[512];
		map_get(L, attrs, o->attrs[T.cycle].name, &ak);
		join(akey, sizeof(akey), key, o->attrs[T.cycle].name);
		ydoc_error(&L->y, L->d, ak ? ak : attrs, akey, "{@attr} references form a cycle: %s", T.path);
	}
cleanup:
	free(T.deps);
	free(T.state);
	free(T.stack);
}

/* One section (employees or teams), as a ladder of its keys; every mistake is reported. */
static void load_object(struct loader *L, enum mapping_kind kind, yaml_node_t *sec)
{
	struct mapping_object *o = &L->m->obj[kind];
	const char *path = section_names[kind];
	yaml_node_t *x, *kn = NULL, *attrs;
	char key[512];

	if (!want_map(L, sec, path))
		return;
	o->present = true;
	vlist_init(&o->object_classes);
	check_keys(L, sec, path, object_keys);
	if (kind == MAPPING_TEAM && map_get(L, sec, "terminated", &kn))
		ydoc_error(&L->y, L->d, kn, "teams.terminated", "teams are not terminated: a deleted team's group is deleted");
	load_bases(L, o, sec, path);
	load_key(L, o, sec, path);
	load_object_classes(L, o, sec, path);
	join(key, sizeof(key), path, "only_if");
	if ((x = map_get(L, sec, "only_if", NULL)))
		load_conditions(L, x, key, &o->scope, &o->nscope);
	join(key, sizeof(key), path, "rdn");
	if (!map_get(L, sec, "rdn", NULL))
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
	attrs = load_attributes(L, o, sec, path);
	if (!attrs || !o->key_attr || !o->key_value || add_key_attribute(L, o, attrs, path) < 0)
		return;
	load_rdn(L, o, sec, path);
	order_attributes(L, o, attrs, path);
	join(key, sizeof(key), path, "terminated");
	x = map_get(L, sec, "terminated", NULL);
	place(x ? x : sec, key, &o->terminated_at);
	if (x && kind == MAPPING_EMPLOYEE)
		load_terminated(L, o, x, key);
	join(key, sizeof(key), path, "initial_password");
	if ((x = map_get(L, sec, "initial_password", NULL))) {
		if (kind == MAPPING_TEAM)
			ydoc_error(&L->y, L->d, x, key, "groups have no password");
		else
			load_initial_password(L, o, x, key);
	}
}

/* ---- groups: membership by rule --------------------------------------------- */

static const char *const group_keys[] = { "dn", "when", "object_classes", "member_attribute", "empty_member", "key",
	                                  NULL };

static void group_free(struct mapping_group *g)
{
	free(g->name);
	free(g->at.key);
	tmpl_free(g->value);
	free(g->rdn_attr);
	free(g->parent);
	free(g->fixed_value);
	free(g->key_attr);
	free(g->key_value);
	vlist_free(&g->object_classes);
	free(g->member_attr);
	free(g->empty_member);
	conditions_free(g->when, g->nwhen);
}

/* dn: a DN template (one group per value) or a fixed DN (one group). */
static void load_group_dn(struct loader *L, struct mapping_group *g, yaml_node_t *rule, const char *path)
{
	char key[512], e[512];
	yaml_node_t *x;
	char *dn, *again = NULL;

	join(key, sizeof(key), path, "dn");
	if (!(x = map_get(L, rule, "dn", NULL))) {
		ydoc_error(&L->y, L->d, rule, key, "required key is missing");
		return;
	}
	if (ydoc_scalar(x) && strchr(ydoc_scalar(x), '{')) {
		load_dn_template(L, x, key, &g->rdn_attr, &g->parent, &g->value);
		return;
	}
	if (!(dn = dup_dn(L, x, key)))
		return;
	g->parent = dn_parent(dn);
	g->fixed_value = dn_rdn_value(dn);
	if ((g->rdn_attr = dn_first_rdn(dn)))
		g->rdn_attr[strcspn(g->rdn_attr, "=")] = '\0';
	/* one attribute and value under a parent: built again, it is the same DN */
	if (!g->parent || !*g->parent || !g->fixed_value || !g->rdn_attr ||
	    dn_build(g->rdn_attr, g->fixed_value, g->parent, &again, e, sizeof(e)) < 0 || !dn_equal(again, dn))
		ydoc_error(&L->y, L->d, x, key, "\"%s\": a group's DN is ATTR=VALUE under a parent DN", dn);
	free(again);
	free(dn);
}

static bool names_class(const struct vlist *classes, const char *name)
{
	for (size_t i = 0; i < classes->n; i++)
		if (strcasecmp(classes->v[i], name) == 0)
			return true;
	return false;
}

/* The optional keys of a rule, with their defaults. */
static void load_group_options(struct loader *L, struct mapping_group *g, yaml_node_t *rule, const char *path)
{
	static const char *const kkeys[] = { "attribute", "value", NULL };
	char key[512], sub[512];
	yaml_node_t *x, *k;
	const char *v;

	join(key, sizeof(key), path, "object_classes");
	if ((x = map_get(L, rule, "object_classes", NULL)) &&
	    (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start))
		ydoc_error(&L->y, L->d, x, key, "expected a list of object classes");
	else if (x)
		for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top; it++) {
			yaml_node_t *e = ydoc_node(&L->y, *it);
			if ((v = want_string(L, e, key)) && !valid_attr_name(v))
				ydoc_error(&L->y, L->d, e, key, "\"%s\" is not an object class name", v);
			else if (v)
				vlist_push_copy(&g->object_classes, v, strlen(v));
		}
	else {
		vlist_push_copy(&g->object_classes, "top", 3);
		vlist_push_copy(&g->object_classes, "groupOfNames", 12);
	}
	join(key, sizeof(key), path, "member_attribute");
	v = (x = map_get(L, rule, "member_attribute", NULL)) ? want_string(L, x, key) : "member";
	if (v && !valid_attr_name(v))
		ydoc_error(&L->y, L->d, x, key, "\"%s\" is not an attribute name", v);
	else if (v)
		g->member_attr = strdup(v);
	join(key, sizeof(key), path, "empty_member");
	if ((x = map_get(L, rule, "empty_member", NULL)))
		g->empty_member = dup_dn(L, x, key);
	else if (names_class(&g->object_classes, "groupOfNames") || names_class(&g->object_classes, "groupOfUniqueNames"))
		ydoc_error(&L->y, L->d, rule, key, "required with %s, which must keep one member: the value a group keeps "
		           "when its last member leaves (empty_member: \"cn=nobody\")",
		           names_class(&g->object_classes, "groupOfNames") ? "groupOfNames" : "groupOfUniqueNames");
	join(key, sizeof(key), path, "key");
	if ((x = map_get(L, rule, "key", NULL)) && want_map(L, x, key)) {
		check_keys(L, x, key, kkeys);
		join(sub, sizeof(sub), key, "attribute");
		if (!(k = map_get(L, x, "attribute", NULL)))
			ydoc_error(&L->y, L->d, x, sub, "required key is missing");
		else if ((v = want_string(L, k, sub)) && !valid_attr_name(v))
			ydoc_error(&L->y, L->d, k, sub, "\"%s\" is not an attribute name", v);
		else if (v)
			g->key_attr = strdup(v);
		join(sub, sizeof(sub), key, "value");
		if (!(k = map_get(L, x, "value", NULL)))
			ydoc_error(&L->y, L->d, x, sub, "required key is missing");
		else if ((v = want_string(L, k, sub)))
			g->key_value = strdup(v);
	} else if (!x) {
		char def[300];
		snprintf(def, sizeof(def), "factorial-group-%s", g->name);
		g->key_attr = strdup("businessCategory");
		g->key_value = strdup(def);
	}
	join(key, sizeof(key), path, "when");
	if ((x = map_get(L, rule, "when", NULL)))
		load_conditions(L, x, key, &g->when, &g->nwhen);
}

/* groups: NAME: rule, ... (employees only: the members are employees). */
static void default_references(struct mapping_references *r)
{
	static const char *const attrs[] = { "member", "uniqueMember", "manager", "secretary", "seeAlso", "owner", NULL };

	for (size_t i = 0; attrs[i]; i++)
		vlist_push_copy(&r->attrs, attrs[i], strlen(attrs[i]));
}

/* references: { base: DN, attributes: [NAME...] } */
static void load_references(struct loader *L, yaml_node_t *x)
{
	static const char *const keys[] = { "base", "attributes", NULL };
	struct mapping_references *r = &L->m->refs;
	yaml_node_t *v;

	if (!want_map(L, x, "references"))
		return;
	check_keys(L, x, "references", keys);
	if ((v = map_get(L, x, "base", NULL))) {
		r->base = dup_dn(L, v, "references.base");
		place(v, "references.base", &r->base_at);
	}
	if (!(v = map_get(L, x, "attributes", NULL)))
		return;
	vlist_clear(&r->attrs);
	if (v->type != YAML_SEQUENCE_NODE) {
		ydoc_error(&L->y, L->d, v, "references.attributes", "expected a list of attribute names ([] for none)");
		return;
	}
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = ydoc_node(&L->y, *it);
		const char *s = want_string(L, e, "references.attributes");
		if (s && !valid_attr_name(s))
			ydoc_error(&L->y, L->d, e, "references.attributes", "\"%s\" is not an attribute name", s);
		else if (s)
			vlist_push_copy(&r->attrs, s, strlen(s));
	}
}

static void load_groups(struct loader *L, yaml_node_t *x)
{
	size_t n;

	if (!want_map(L, x, "groups"))
		return;
	ydoc_check_duplicates(&L->y, L->d, x, "groups");
	n = (size_t)(x->data.mapping.pairs.top - x->data.mapping.pairs.start);
	if (!(L->m->groups = calloc(n ? n : 1, sizeof(*L->m->groups))))
		return;
	for (yaml_node_pair_t *p = x->data.mapping.pairs.start; p < x->data.mapping.pairs.top; p++) {
		yaml_node_t *k = ydoc_node(&L->y, p->key), *rule = ydoc_node(&L->y, p->value);
		const char *name = ydoc_scalar(k);
		struct mapping_group *g = &L->m->groups[L->m->ngroups];
		char path[512];
		if (!name)
			continue;
		join(path, sizeof(path), "groups", name);
		if (!want_map(L, rule, path))
			continue;
		L->m->ngroups++;
		vlist_init(&g->object_classes);
		g->name = strdup(name);
		place(k, path, &g->at);
		check_keys(L, rule, path, group_keys);
		load_group_dn(L, g, rule, path);
		load_group_options(L, g, rule, path);
	}
	if (!L->m->obj[MAPPING_EMPLOYEE].present)
		ydoc_error(&L->y, L->d, x, "groups", "the members of rule groups are employees: give employees too");
}

static void object_free(struct mapping_object *o)
{
	struct mapping_place *places[] = { &o->base_at, &o->search_base_at, &o->key_at, &o->move_to_at,
		                           &o->terminated_at };

	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++)
		free(places[i]->key);
	for (size_t i = 0; o->class_at && i < o->object_classes.n; i++)
		free(o->class_at[i].key);
	free(o->class_at);
	free(o->base);
	tmpl_free(o->base_tmpl);
	free(o->base_attr);
	free(o->base_rest);
	free(o->search_base);
	free(o->key_attr);
	tmpl_free(o->key_value);
	free(o->rdn);
	vlist_free(&o->object_classes);
	conditions_free(o->scope, o->nscope);
	for (size_t i = 0; i < o->nattrs; i++)
		attr_free(&o->attrs[i]);
	free(o->attrs);
	free(o->order);
	free(o->move_to);
	for (size_t i = 0; i < o->nterm_attrs; i++)
		attr_free(&o->term_attrs[i]);
	free(o->term_attrs);
}

void mapping_free(struct mapping *m)
{
	if (!m)
		return;
	object_free(&m->obj[0]);
	object_free(&m->obj[1]);
	for (size_t i = 0; i < m->tables.n; i++) {
		free(m->tables.v[i].name);
		strmap_free(&m->tables.v[i].entries);
	}
	free(m->tables.v);
	for (size_t i = 0; i < m->ngroups; i++)
		group_free(&m->groups[i]);
	free(m->groups);
	free(m->refs.base);
	free(m->refs.base_at.key);
	vlist_free(&m->refs.attrs);
	free(m->path);
	free(m);
}

int mapping_load(const char *path, struct mapping **out, struct diag *d)
{
	static const char *const top_keys[] = { "version", "tables", "employees", "teams", "groups", "references", NULL };
	struct loader L = { .d = d };
	size_t before = diag_count(d);
	yaml_node_t *root, *x;
	int rc = -1;

	*out = NULL;
	L.m = calloc(1, sizeof(*L.m));
	if (!L.m || !(L.m->path = strdup(path))) {
		diag_add(d, path, 0, 0, NULL, "out of memory");
		goto cleanup;
	}
	if (ydoc_load_file(&L.y, path, d) < 0)
		goto cleanup;
	root = ydoc_root(&L.y);
	if (root->type != YAML_MAPPING_NODE) {
		ydoc_error(&L.y, d, root, NULL, "expected a mapping with version, employees and teams, got %s",
		           ydoc_kind(root));
		goto cleanup;
	}
	check_keys(&L, root, "", top_keys);
	x = map_get(&L, root, "version", NULL);
	if (!x)
		ydoc_error(&L.y, d, root, "version", "required key is missing (version: 1)");
	else if (!ydoc_scalar(x) || strcmp(ydoc_scalar(x), "1") != 0)
		ydoc_error(&L.y, d, x, "version", "only version 1 is known, got %s", ydoc_scalar(x) ? ydoc_scalar(x) : ydoc_kind(x));
	/* before the sections: their templates' map() name these tables */
	if ((x = map_get(&L, root, "tables", NULL)))
		load_tables(&L, x);
	for (int k = 0; k < 2; k++) {
		x = map_get(&L, root, section_names[k], NULL);
		if (x)
			load_object(&L, (enum mapping_kind)k, x);
	}
	if ((x = map_get(&L, root, "groups", NULL)))
		load_groups(&L, x);
	default_references(&L.m->refs);
	if ((x = map_get(&L, root, "references", NULL)))
		load_references(&L, x);
	if (!map_get(&L, root, section_names[0], NULL) && !map_get(&L, root, section_names[1], NULL))
		ydoc_error(&L.y, d, root, NULL, "give employees, teams or both");
	if (diag_count(d) != before)
		goto cleanup;
	*out = L.m;
	L.m = NULL;
	rc = 0;
cleanup:
	mapping_free(L.m);
	ydoc_free(&L.y);
	return rc;
}

/* ---- evaluation -------------------------------------------------------- */

char *mapping_id_text(const cJSON *v)
{
	return ids_text(v, NULL);
}

char *mapping_record_id(const cJSON *record)
{
	return mapping_id_text(cJSON_GetObjectItemCaseSensitive(record, "id"));
}

int mapping_key(const struct mapping *m, enum mapping_kind kind, const cJSON *record, char **key, struct sbuf *err)
{
	const struct mapping_object *o = &m->obj[kind];
	struct tmpl_env env = { .record = record, .err = err, .tables = &m->tables };
	struct vlist v, unresolved;
	int rc = -1;

	*key = NULL;
	vlist_init(&v);
	vlist_init(&unresolved);
	env.unresolved = &unresolved;
	if (!o->present) {
		sbuf_addf(err, "the mapping has no %s section", section_names[kind]);
		goto cleanup;
	}
	if (tmpl_eval(o->key_value, &env, &v) < 0)
		goto cleanup;
	vlist_normalize(&v);
	if (v.n != 1) {
		sbuf_addf(err, "key %s: \"%s\" gives %s", o->key_attr, o->key_value->source,
		          v.n ? "more than one value" : "no value");
		goto cleanup;
	}
	*key = strdup(v.v[0]);
	rc = *key ? 0 : -1;
cleanup:
	vlist_free(&v);
	vlist_free(&unresolved);
	return rc;
}

void mapping_result_free(struct mapping_result *r)
{
	free(r->id);
	free(r->terminated_on);
	free(r->scope_reason);
	free(r->key_value);
	free(r->dn);
	free(r->active_dn);
	free(r->base);
	for (size_t i = 0; i < r->nvalues; i++)
		vlist_free(&r->values[i].values);
	free(r->values);
	for (size_t i = 0; i < r->nunresolved_attr; i++)
		free(r->unresolved_attr[i]);
	free(r->unresolved_attr);
	vlist_free(&r->unresolved);
	sbuf_free(&r->error);
	memset(r, 0, sizeof(*r));
}

/* Rejects strings (values and keys) that are not valid UTF-8. */
static int check_utf8(const cJSON *v, struct sbuf *err)
{
	for (; v; v = v->next) {
		if (v->string && !utf8_valid(v->string, strlen(v->string))) {
			sbuf_adds(err, "a field name is not valid UTF-8");
			return -1;
		}
		if (cJSON_IsString(v) && !utf8_valid(v->valuestring, strlen(v->valuestring))) {
			sbuf_addf(err, "field %s is not valid UTF-8", v->string ? v->string : "(list element)");
			return -1;
		}
		if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && check_utf8(v->child, err) < 0)
			return -1;
	}
	return 0;
}

/* 1 when every condition holds for record, 0 when one does not (why, when
 * not NULL, says which), -1 on failure (in err). */
static int conditions_hold(const struct mapping_scope *v, size_t n, const cJSON *record, char **why, struct sbuf *err)
{
	for (size_t i = 0; i < n; i++) {
		const struct mapping_scope *sc = &v[i];
		struct vlist have;
		bool ok = false;
		vlist_init(&have);
		if (tmpl_field_values(record, &sc->path, &have, err) < 0) {
			vlist_free(&have);
			return -1;
		}
		for (size_t k = 0; k < have.n && !ok; k++)
			ok = vlist_contains(&sc->allowed, have.v[k]);
		if (!ok && why) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_addf(&b, "%s ", sc->field);
			if (have.n == 0)
				sbuf_adds(&b, "is empty");
			for (size_t k = 0; k < have.n; k++)
				sbuf_addf(&b, "%s%s", k ? ", " : "", have.v[k]);
			sbuf_adds(&b, have.n ? " is not in " : ", not in ");
			for (size_t k = 0; k < sc->allowed.n; k++)
				sbuf_addf(&b, "%s%s", k ? ", " : "", sc->allowed.v[k]);
			*why = sbuf_detach(&b);
		}
		vlist_free(&have);
		if (!ok)
			return 0;
	}
	return 1;
}

static int in_scope(const struct mapping_object *o, const cJSON *record, struct mapping_result *r)
{
	return conditions_hold(o->scope, o->nscope, record, &r->scope_reason, &r->error);
}

static bool is_terminated(const cJSON *record, const char *today, char **on)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(record, "terminated_on");
	const cJSON *active = cJSON_GetObjectItemCaseSensitive(record, "active");
	bool term = false;

	if (cJSON_IsString(t) && strlen(t->valuestring) >= 10) {
		*on = strndup(t->valuestring, 10);
		if (today && strncmp(t->valuestring, today, 10) <= 0)
			term = true;
	}
	if (cJSON_IsFalse(active))
		term = true;
	return term;
}

/* A unique attribute with a list of templates gives one value: the first
 * candidate no other entry holds, or, when every one is held, the first
 * with a number (settle_unique). */
static int pick_candidate(const struct mapping_attr *a, const struct mapping_hooks *h, struct vlist *vals,
                          struct sbuf *err)
{
	size_t chosen = 0;

	for (size_t i = 0; i < vals->n; i++) {
		int taken = h->taken(h->ctx, a->name, vals->v[i], err);
		if (taken < 0)
			return -1;
		if (!taken) {
			chosen = i;
			break;
		}
	}
	/* keep the chosen one alone, first */
	if (chosen) {
		char *c = vals->v[chosen];
		vals->v[chosen] = vals->v[0];
		vals->v[0] = c;
	}
	for (size_t i = 1; i < vals->n; i++)
		free(vals->v[i]);
	vals->n = vals->n ? 1 : 0;
	return 0;
}

/* Appends "2", "3", ... to each value until no other entry holds it. */
static int settle_unique(const struct mapping_attr *a, const struct mapping_hooks *h, struct vlist *vals,
                         struct sbuf *err)
{
	struct sbuf cand;
	int rc = -1;

	sbuf_init(&cand);
	for (size_t i = 0; i < vals->n; i++) {
		const char *base = vals->v[i];
		int n;
		for (n = 1; n <= UNIQUE_MAX_TRIES; n++) {
			int taken;
			sbuf_reset(&cand);
			if (n == 1) {
				sbuf_adds(&cand, base);
			} else {
				char suffix[16];
				size_t blen = strlen(base);
				snprintf(suffix, sizeof(suffix), "%d", n);
				if (a->max_length && utf8_length(base, blen) + strlen(suffix) > a->max_length) {
					size_t keep = a->max_length > strlen(suffix) ? a->max_length - strlen(suffix) : 0;
					blen = utf8_prefix_bytes(base, blen, keep);
				}
				sbuf_add(&cand, base, blen);
				sbuf_adds(&cand, suffix);
			}
			if (cand.failed)
				goto cleanup;
			taken = h->taken(h->ctx, a->name, sbuf_str(&cand), err);
			if (taken < 0)
				goto cleanup;
			if (!taken)
				break;
		}
		if (n > UNIQUE_MAX_TRIES) {
			sbuf_addf(err, "%s: no free value after %d tries for \"%s\"", a->name, UNIQUE_MAX_TRIES, base);
			goto cleanup;
		}
		if (n > 1) {
			char *s = sbuf_detach(&cand);
			if (!s)
				goto cleanup;
			free(vals->v[i]);
			vals->v[i] = s;
		}
	}
	rc = 0;
cleanup:
	sbuf_free(&cand);
	return rc;
}

static void limit_length(const struct mapping_attr *a, struct vlist *vals)
{
	if (!a->max_length)
		return;
	for (size_t i = 0; i < vals->n; i++) {
		size_t len = strlen(vals->v[i]);
		vals->v[i][utf8_prefix_bytes(vals->v[i], len, a->max_length)] = '\0';
	}
}

/* first: the first alternative whose condition holds and that gives a value whole. */
static int eval_first(const struct mapping_attr *a, struct tmpl_env *env, struct vlist *out)
{
	int rc = 0;

	for (size_t t = 0; t < a->ntmpls && rc == 0; t++) {
		int holds = conditions_hold(a->alts[t].when, a->alts[t].nwhen, env->record, NULL, env->err);
		if (holds <= 0) {
			rc = holds;
			continue;
		}
		rc = tmpl_eval_whole(a->tmpls[t], env, out);
		vlist_normalize(out);
		if (rc == 0 && out->n)
			break;
	}
	return rc;
}

static int eval_attr(const struct mapping_attr *a, struct tmpl_env *env, struct vlist *out)
{
	int rc = 0;

	if (a->first)
		rc = eval_first(a, env, out);
	for (size_t t = 0; !a->first && t < a->ntmpls && rc == 0; t++)
		rc = tmpl_eval(a->tmpls[t], env, out);
	if (rc < 0 && env->err->len)
		sbuf_prefixf(env->err, "%s: ", a->name); /* the attribute in front of the filter's message */
	return rc;
}

/* Remembers which attribute each newly unresolved id belongs to; called
 * after every evaluation, whether it failed or not, so that the two lists
 * stay in step. */
static int note_unresolved(struct mapping_result *r, const char *attr)
{
	char **v;

	if (r->unresolved.n == r->nunresolved_attr)
		return 0;
	v = realloc(r->unresolved_attr, r->unresolved.n * sizeof(*v));
	if (!v)
		return -1;
	r->unresolved_attr = v;
	while (r->nunresolved_attr < r->unresolved.n) {
		if (!(v[r->nunresolved_attr] = strdup(attr)))
			return -1;
		r->nunresolved_attr++;
	}
	return 0;
}

/* What one evaluation shares between its steps. */
struct eval {
	const struct mapping_object *o;
	const struct mapping_hooks *hooks;
	struct mapping_result *r;
	struct tmpl_env env;
	struct vlist *vals; /* per attribute, as computed (what {@attr} reads) */
	struct vlist tmp;
};

/* In scope or not, terminated or not, as the record's dates and the caller's force say. */
static int eval_state(struct eval *e, enum mapping_kind kind, const cJSON *record)
{
	struct mapping_result *r = e->r;
	int scope = in_scope(e->o, record, r);

	if (scope < 0)
		return -1;
	if (scope == 0)
		r->state = MAPPING_OUT_OF_SCOPE;
	if (kind == MAPPING_EMPLOYEE && r->state == MAPPING_ACTIVE &&
	    is_terminated(record, e->hooks->today, &r->terminated_on)) {
		r->state = MAPPING_TERMINATED;
		r->action = e->o->action;
	}
	if (kind == MAPPING_EMPLOYEE && e->hooks->force == MAPPING_FORCE_TERMINATED) {
		r->state = MAPPING_TERMINATED;
		r->action = e->o->action;
	} else if (e->hooks->force == MAPPING_FORCE_ACTIVE && r->state == MAPPING_TERMINATED) {
		r->state = MAPPING_ACTIVE;
	}
	return 0;
}

/* The key value: exactly one. */
static int eval_key(struct eval *e)
{
	const struct mapping_object *o = e->o;

	if (tmpl_eval(o->key_value, &e->env, &e->tmp) < 0)
		return -1;
	vlist_normalize(&e->tmp);
	if (e->tmp.n != 1) {
		sbuf_addf(&e->r->error, "key %s: \"%s\" gives %s", o->key_attr, o->key_value->source,
		          e->tmp.n ? "more than one value" : "no value");
		return -1;
	}
	e->r->key_value = strdup(e->tmp.v[0]);
	vlist_clear(&e->tmp);
	return e->r->key_value ? 0 : -1;
}

/* One attribute's values: create_only kept, required checked, unique settled. */
static int eval_one(struct eval *e, const struct mapping_attr *a, struct vlist *v)
{
	struct mapping_result *r = e->r;
	int rc;

	if (a->is_key)
		return vlist_push_copy(v, r->key_value, strlen(r->key_value));
	if (a->nwhen && (rc = conditions_hold(a->when, a->nwhen, e->env.record, NULL, &r->error)) <= 0)
		return rc; /* the condition does not hold: the attribute is absent */
	if ((a->flags & MAPPING_ATTR_CREATE_ONLY) && e->hooks->existing) {
		int ex = e->hooks->existing(e->hooks->ctx, a->name, v, &r->error);
		if (ex != 0)
			return ex < 0 ? -1 : 0; /* the entry exists: its value stands */
	}
	rc = eval_attr(a, &e->env, v);
	if (note_unresolved(r, a->name) < 0 || rc < 0)
		return -1;
	vlist_normalize(v);
	limit_length(a, v);
	vlist_normalize(v);
	if ((a->flags & MAPPING_ATTR_REQUIRED) && v->n == 0) {
		sbuf_addf(&r->error, "%s: required, but ", a->name);
		for (size_t t = 0; t < a->ntmpls; t++)
			sbuf_addf(&r->error, "%s\"%s\"", t ? ", " : "", a->tmpls[t]->source);
		sbuf_adds(&r->error, " is empty");
		size_t nulls = 0;
		for (size_t t = 0; t < a->ntmpls; t++)
			nulls += tmpl_null_fields(a->tmpls[t], e->env.record, nulls ? ", " : ": ", &r->error);
		if (nulls)
			sbuf_addf(&r->error, " %s null (Factorial sends such fields null to a token of a user who is not an "
			                     "administrator)", nulls == 1 ? "is" : "are");
		return -1;
	}
	if ((a->flags & MAPPING_ATTR_UNIQUE) && e->hooks->taken && a->ntmpls > 1 &&
	    pick_candidate(a, e->hooks, v, &r->error) < 0)
		return -1;
	if ((a->flags & MAPPING_ATTR_UNIQUE) && e->hooks->taken && settle_unique(a, e->hooks, v, &r->error) < 0)
		return -1;
	return 0;
}

/* The attributes in mapping order (the implicit key attribute first), into r->values. */
static int collect_values(struct eval *e)
{
	const struct mapping_object *o = e->o;
	struct mapping_result *r = e->r;

	r->object_classes = &o->object_classes;
	r->values = calloc(o->nattrs + o->nterm_attrs + 1, sizeof(*r->values));
	if (!r->values)
		return -1;
	if (o->attrs[o->key_index].ntmpls == 0 && o->key_index == o->nattrs - 1) {
		r->values[r->nvalues].attr = &o->attrs[o->key_index];
		r->values[r->nvalues++].values = e->vals[o->key_index];
		vlist_init(&e->vals[o->key_index]);
	}
	for (size_t i = 0; i < o->nattrs; i++) {
		if (o->attrs[i].ntmpls == 0 && o->attrs[i].is_key)
			continue;
		r->values[r->nvalues].attr = &o->attrs[i];
		r->values[r->nvalues++].values = e->vals[i];
		vlist_init(&e->vals[i]);
	}
	return 0;
}

/* The RDN value: exactly one. */
static const struct vlist *rdn_values(const struct eval *e)
{
	for (size_t i = 0; i < e->r->nvalues; i++)
		if (e->r->values[i].attr == &e->o->attrs[e->o->rdn_index])
			return &e->r->values[i].values;
	return NULL;
}

/* The DN while active: the RDN under base. */
/* base as a template: one value for the first RDN, the DN built (and escaped) by libldap, under search_base. */
static int place_record(struct eval *e)
{
	const struct mapping_object *o = e->o;
	struct vlist v;
	char err[512];
	int rc = -1;

	vlist_init(&v);
	if (tmpl_eval(o->base_tmpl, &e->env, &v) < 0) {
		sbuf_prefixf(&e->r->error, "base: ");
		goto cleanup;
	}
	vlist_normalize(&v);
	if (v.n != 1) {
		sbuf_addf(&e->r->error, "base %s=\"%s\",%s gives %s", o->base_attr, o->base_tmpl->source, o->base_rest,
		          v.n ? "more than one value" : "no value");
		goto cleanup;
	}
	free(e->r->base);
	e->r->base = NULL;
	if (dn_build(o->base_attr, v.v[0], o->base_rest, &e->r->base, err, sizeof(err)) < 0) {
		sbuf_addf(&e->r->error, "base: %s", err);
		goto cleanup;
	}
	if (!dn_under(e->r->base, o->search_base)) {
		sbuf_addf(&e->r->error, "base %s is not under search_base %s", e->r->base, o->search_base);
		goto cleanup;
	}
	rc = 0;
cleanup:
	vlist_free(&v);
	return rc;
}

static int active_dn(struct eval *e)
{
	const struct mapping_object *o = e->o;
	const struct vlist *rv = rdn_values(e);
	char err[512];

	if (!rv || rv->n != 1) {
		const struct mapping_attr *ra = &o->attrs[o->rdn_index];
		sbuf_addf(&e->r->error, "rdn %s: ", o->rdn);
		for (size_t t = 0; t < ra->ntmpls; t++)
			sbuf_addf(&e->r->error, "%s\"%s\"", t ? ", " : "", ra->tmpls[t]->source);
		sbuf_adds(&e->r->error, rv && rv->n ? " gives more than one value" : " gives no value");
		return -1;
	}
	if (o->base_tmpl ? place_record(e) < 0 : !(e->r->base = strdup(o->base)))
		return -1;
	if (dn_build(o->rdn, rv->v[0], e->r->base, &e->r->active_dn, err, sizeof(err)) < 0) {
		sbuf_addf(&e->r->error, "dn: %s", err);
		return -1;
	}
	return 0;
}

/* One terminated.attributes entry over the active values ({@attr} sees those). */
static int eval_terminated_one(struct eval *e, const struct mapping_attr *a)
{
	const struct mapping_object *o = e->o;
	struct mapping_result *r = e->r;
	struct mapping_value *slot = NULL;
	int rc;

	for (size_t i = 0; i < o->nattrs; i++)
		vlist_clear(&e->vals[i]);
	for (size_t i = 0; i < r->nvalues; i++) {
		size_t idx = (size_t)(r->values[i].attr - o->attrs);
		if (idx < o->nattrs)
			for (size_t k = 0; k < r->values[i].values.n; k++)
				vlist_push_copy(&e->vals[idx], r->values[i].values.v[k], strlen(r->values[i].values.v[k]));
	}
	vlist_clear(&e->tmp);
	rc = eval_attr(a, &e->env, &e->tmp);
	if (note_unresolved(r, a->name) < 0 || rc < 0)
		return -1;
	vlist_normalize(&e->tmp);
	for (size_t i = 0; i < r->nvalues; i++)
		if (strcasecmp(r->values[i].attr->name, a->name) == 0)
			slot = &r->values[i];
	if (!slot) {
		slot = &r->values[r->nvalues++];
		slot->attr = a;
		vlist_init(&slot->values);
	}
	vlist_clear(&slot->values);
	slot->overridden = true;
	return vlist_move(&slot->values, &e->tmp);
}

/* A leaver: the terminated attributes over the active ones, and the DN under move_to. */
static int eval_terminated(struct eval *e)
{
	const struct mapping_object *o = e->o;
	char err[512];

	for (size_t t = 0; t < o->nterm_attrs; t++)
		if (eval_terminated_one(e, &o->term_attrs[t]) < 0)
			return -1;
	if (e->r->action == MAPPING_MOVE && dn_build(o->rdn, rdn_values(e)->v[0], o->move_to, &e->r->dn, err,
	                                             sizeof(err)) < 0) {
		sbuf_addf(&e->r->error, "dn: %s", err);
		return -1;
	}
	return 0;
}

int mapping_eval(const struct mapping *m, enum mapping_kind kind, const cJSON *record,
                 const struct mapping_hooks *hooks, struct mapping_result *r)
{
	static const struct mapping_hooks none = { 0 };
	struct eval e = { .o = &m->obj[kind], .hooks = hooks ? hooks : &none, .r = r };
	int rc = -1;

	memset(r, 0, sizeof(*r));
	vlist_init(&r->unresolved);
	vlist_init(&e.tmp);
	sbuf_init(&r->error);
	r->kind = kind;
	r->id = cJSON_IsObject(record) ? mapping_record_id(record) : NULL;
	if (!r->id)
		r->id = strdup("?");
	if (!cJSON_IsObject(record)) {
		sbuf_adds(&r->error, "the record is not a JSON object");
		goto cleanup;
	}
	if (!e.o->present) {
		sbuf_addf(&r->error, "the mapping has no %s section", section_names[kind]);
		goto cleanup;
	}
	if (check_utf8(record->child, &r->error) < 0 || eval_state(&e, kind, record) < 0)
		goto cleanup;
	if (!(e.vals = calloc(e.o->nattrs, sizeof(*e.vals))))
		goto cleanup;
	e.env = (struct tmpl_env){ .record = record, .attrs = e.vals, .employee_dn = e.hooks->employee_dn, .tables = &m->tables,
		                   .ctx = e.hooks->ctx, .unresolved = &r->unresolved, .err = &r->error };
	if (eval_key(&e) < 0)
		goto cleanup;
	if (r->state == MAPPING_OUT_OF_SCOPE) {
		/* nothing more to compute: the entry, if any, is found by its key */
		rc = 0;
		goto cleanup;
	}
	for (size_t i = 0; i < e.o->nattrs; i++)
		if (eval_one(&e, &e.o->attrs[e.o->order[i]], &e.vals[e.o->order[i]]) < 0)
			goto cleanup;
	if (collect_values(&e) < 0 || active_dn(&e) < 0 || (r->state == MAPPING_TERMINATED && eval_terminated(&e) < 0))
		goto cleanup;
	if (!r->dn && !(r->dn = strdup(r->active_dn)))
		goto cleanup;
	rc = 0;
cleanup:
	if (rc < 0 && !r->error.len)
		sbuf_adds(&r->error, "out of memory");
	for (size_t i = 0; e.vals && i < e.o->nattrs; i++)
		vlist_free(&e.vals[i]);
	free(e.vals);
	vlist_free(&e.tmp);
	return rc;
}

static bool tmpl_reads(const struct tmpl *t, const char *name)
{
	for (size_t i = 0; t && i < t->n; i++) {
		const struct tmpl_part *p = &t->parts[i];
		if (p->kind == TP_FIELD && p->path.n && strcmp(p->path.seg[0], name) == 0)
			return true;
		for (size_t f = 0; f < p->nfilters; f++)
			for (size_t a = 0; a < p->filters[f].nargs && a < 2; a++)
				if (p->filters[f].args[a].kind == TA_PATH && p->filters[f].args[a].path.n &&
				    strcmp(p->filters[f].args[a].path.seg[0], name) == 0)
					return true;
	}
	return false;
}

bool mapping_uses_field(const struct mapping *m, enum mapping_kind kind, const char *name)
{
	const struct mapping_object *o = &m->obj[kind];

	if (!o->present)
		return false;
	if (tmpl_reads(o->key_value, name) || tmpl_reads(o->base_tmpl, name))
		return true;
	for (size_t i = 0; kind == MAPPING_EMPLOYEE && i < m->ngroups; i++) {
		if (tmpl_reads(m->groups[i].value, name))
			return true;
		for (size_t w = 0; w < m->groups[i].nwhen; w++)
			if (m->groups[i].when[w].path.n && strcmp(m->groups[i].when[w].path.seg[0], name) == 0)
				return true;
	}
	for (size_t i = 0; i < o->nattrs; i++)
		for (size_t t = 0; t < o->attrs[i].ntmpls; t++)
			if (tmpl_reads(o->attrs[i].tmpls[t], name))
				return true;
	for (size_t i = 0; i < o->nterm_attrs; i++)
		for (size_t t = 0; t < o->term_attrs[i].ntmpls; t++)
			if (tmpl_reads(o->term_attrs[i].tmpls[t], name))
				return true;
	for (size_t i = 0; i < o->nscope; i++)
		if (o->scope[i].path.n && strcmp(o->scope[i].path.seg[0], name) == 0)
			return true;
	for (size_t i = 0; i < o->nattrs; i++)
		for (size_t w = 0; w < o->attrs[i].nwhen; w++)
			if (o->attrs[i].when[w].path.n && strcmp(o->attrs[i].when[w].path.seg[0], name) == 0)
				return true;
	return false;
}

/* The fields a template pipes through employee_dn. */
static void template_references(const struct tmpl *t, struct vlist *out)
{
	for (size_t p = 0; t && p < t->n; p++) {
		const struct tmpl_part *part = &t->parts[p];
		bool ref = false;
		for (size_t f = 0; f < part->nfilters; f++)
			ref = ref || part->filters[f].id == TF_EMPLOYEE_DN;
		if (ref && part->kind == TP_FIELD && part->path.n == 1 && !vlist_contains(out, part->path.seg[0]))
			vlist_push_copy(out, part->path.seg[0], strlen(part->path.seg[0]));
	}
}

void mapping_reference_fields(const struct mapping *m, enum mapping_kind kind, struct vlist *out)
{
	const struct mapping_object *o = &m->obj[kind];

	if (!o->present)
		return;
	for (size_t i = 0; i < o->nattrs; i++)
		for (size_t t = 0; t < o->attrs[i].ntmpls; t++)
			template_references(o->attrs[i].tmpls[t], out);
	for (size_t i = 0; i < o->nterm_attrs; i++)
		for (size_t t = 0; t < o->term_attrs[i].ntmpls; t++)
			template_references(o->term_attrs[i].tmpls[t], out);
}

/* ---- groups by rule: evaluation ---------------------------------------------- */

void mapping_memberships_free(struct mapping_membership *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].dn);
		free(v[i].value);
	}
	free(v);
}

static int push_membership(struct mapping_membership **out, size_t *n, const struct mapping_group *g,
                           const char *value, struct sbuf *err)
{
	struct mapping_membership *v;
	char *dn = NULL, e[512];

	if (dn_build(g->rdn_attr, value, g->parent, &dn, e, sizeof(e)) < 0) {
		sbuf_addf(err, "groups.%s: %s", g->name, e);
		return -1;
	}
	for (size_t i = 0; i < *n; i++)
		if (dn_equal((*out)[i].dn, dn)) {
			free(dn);
			return 0;
		}
	if (!(v = realloc(*out, (*n + 1) * sizeof(*v)))) {
		free(dn);
		return -1;
	}
	*out = v;
	v[*n] = (struct mapping_membership){ .rule = g, .dn = dn, .value = strdup(value) };
	(*n)++;
	return 0;
}

int mapping_groups_of(const struct mapping *m, const cJSON *record, struct mapping_membership **out, size_t *n,
                      struct sbuf *err)
{
	struct tmpl_env env = { .record = record, .err = err, .tables = &m->tables };
	struct vlist values, unresolved;
	int rc = -1;

	*out = NULL;
	*n = 0;
	vlist_init(&values);
	vlist_init(&unresolved);
	env.unresolved = &unresolved;
	for (size_t i = 0; i < m->ngroups; i++) {
		const struct mapping_group *g = &m->groups[i];
		int holds = conditions_hold(g->when, g->nwhen, record, NULL, err);
		if (holds < 0)
			goto cleanup;
		if (!holds)
			continue;
		vlist_clear(&values);
		if (g->value && tmpl_eval(g->value, &env, &values) < 0) {
			sbuf_prefixf(err, "groups.%s: ", g->name);
			goto cleanup;
		}
		if (!g->value)
			vlist_push_copy(&values, g->fixed_value, strlen(g->fixed_value));
		vlist_normalize(&values);
		for (size_t k = 0; k < values.n; k++)
			if (*values.v[k] && push_membership(out, n, g, values.v[k], err) < 0)
				goto cleanup;
	}
	rc = 0;
cleanup:
	if (rc < 0) {
		mapping_memberships_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	vlist_free(&values);
	vlist_free(&unresolved);
	return rc;
}
