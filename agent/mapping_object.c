/*
 * mapping_object: an employees: or teams: section: bases, key, RDN, object
 * classes, attributes in the order they depend on each other, the
 * termination policy and initial passwords.
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

/* ---- objects: an employees: or teams: section ---------------------------- */

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

	if (!mapping_want_map(L, x, path))
		return;
	mapping_check_keys(L, x, path, keys);
	o->password_length = 20;
	o->password_method = MAPPING_PASSWORD_MODIFY;
	mapping_join(key, sizeof(key), path, "length");
	if ((v = mapping_map_get(L, x, "length", NULL))) {
		const char *s = ydoc_scalar(v);
		char *end = NULL;
		long long n = s ? strtoll(s, &end, 10) : 0;
		if (!s || !*s || *end || n < 12 || n > 128)
			ydoc_error(&L->y, L->d, v, key, "expected a number of characters from 12 to 128");
		else
			o->password_length = (unsigned)n;
	}
	mapping_join(key, sizeof(key), path, "method");
	if ((v = mapping_map_get(L, x, "method", NULL))) {
		const char *s = mapping_want_string(L, v, key);
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

	if (!mapping_want_map(L, t, path))
		return;
	mapping_check_keys(L, t, path, terminated_keys);
	o->terminated_given = true;
	x = mapping_map_get(L, t, "action", NULL);
	mapping_join(key, sizeof(key), path, "action");
	if (x) {
		const char *s = mapping_want_string(L, x, key);
		if (s && strcmp(s, "disable") == 0)
			o->action = MAPPING_DISABLE;
		else if (s && strcmp(s, "move") == 0)
			o->action = MAPPING_MOVE;
		else if (s && strcmp(s, "delete") == 0)
			o->action = MAPPING_DELETE;
		else if (s)
			ydoc_error(&L->y, L->d, x, key, "\"%s\" is not one of disable | move | delete", s);
	}
	x = mapping_map_get(L, t, "move_to", NULL);
	mapping_join(key, sizeof(key), path, "move_to");
	if (x) {
		o->move_to = mapping_dup_dn(L, x, key);
		mapping_note_place(x, key, &o->move_to_at);
	} else if (o->action == MAPPING_MOVE)
		ydoc_error(&L->y, L->d, t, key, "required with action: move");
	x = mapping_map_get(L, t, "remove_from_groups", NULL);
	mapping_join(key, sizeof(key), path, "remove_from_groups");
	if (x)
		mapping_want_bool(L, x, key, &o->remove_from_groups);
	x = mapping_map_get(L, t, "attributes", NULL);
	mapping_join(key, sizeof(key), path, "attributes");
	if (x && mapping_want_map(L, x, key)) {
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
			if (!ks || !mapping_valid_attr_name(ks)) {
				ydoc_error(&L->y, L->d, k, key, "\"%s\" is not an attribute name", ks ? ks : "?");
				continue;
			}
			mapping_join(akey, sizeof(akey), key, ks);
			if (strcasecmp(ks, "objectClass") == 0 || (o->key_attr && strcasecmp(ks, o->key_attr) == 0) ||
			    strcasecmp(ks, o->rdn ? o->rdn : "") == 0) {
				ydoc_error(&L->y, L->d, k, akey, "cannot be changed on termination (objectClass, the key "
				                                  "and the RDN attribute stay as they are)");
				continue;
			}
			a = &o->term_attrs[o->nterm_attrs++];
			mapping_load_attr(L, k, ydoc_node(&L->y, p->value), akey, a, false);
			mapping_resolve_refs(L, o, a, ydoc_node(&L->y, p->value), akey, NULL);
		}
	}
}

/* only_if and when: FIELD: VALUE | [VALUE...], each field one of its values. */
void mapping_load_conditions(struct loader *L, yaml_node_t *s, const char *path, struct mapping_scope **out,
                             size_t *nout)
{
	size_t n;

	if (!mapping_want_map(L, s, path))
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
		mapping_join(key, sizeof(key), path, ks);
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
		if (mapping_sensitive_in(&t->parts[0].path)) {
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
int mapping_load_dn_template(struct loader *L, yaml_node_t *x, const char *key, char **attr, char **rest,
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
	*t = value ? mapping_compile_text(L, x, key, value, (size_t)(eq + 1 - s)) : NULL;
	free(value);
	if (*attr && !mapping_valid_attr_name(*attr))
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

	mapping_join(key, sizeof(key), path, "base");
	if (!(x = mapping_map_get(L, sec, "base", NULL)))
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
	else if (ydoc_scalar(x) && strchr(ydoc_scalar(x), '{'))
		mapping_load_dn_template(L, x, key, &o->base_attr, &o->base_rest, &o->base_tmpl); /* placement per record */
	else
		o->base = mapping_dup_dn(L, x, key);
	mapping_note_place(x, key, &o->base_at);
	mapping_note_place(x, key, &o->search_base_at);
	mapping_join(key, sizeof(key), path, "search_base");
	if ((x = mapping_map_get(L, sec, "search_base", NULL))) {
		o->search_base = mapping_dup_dn(L, x, key);
		mapping_note_place(x, key, &o->search_base_at);
	} else if (o->base) {
		o->search_base = strdup(o->base);
	} else if (o->base_tmpl) {
		ydoc_error(&L->y, L->d, sec, key, "required when base is a template (where the agent looks for entries)");
	}
	mapping_join(key, sizeof(key), path, "create_bases");
	if ((x = mapping_map_get(L, sec, "create_bases", NULL)))
		mapping_want_bool(L, x, key, &o->create_bases);
}

/* key: { attribute, value }, the value from the record only. */
static void load_key(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	static const char *const kkeys[] = { "attribute", "value", NULL };
	char key[512], sub[512];
	yaml_node_t *x, *ka, *kv;
	const char *s;

	mapping_join(key, sizeof(key), path, "key");
	if (!(x = mapping_map_get(L, sec, "key", NULL))) {
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
		return;
	}
	if (!mapping_want_map(L, x, key))
		return;
	ka = mapping_map_get(L, x, "attribute", NULL);
	kv = mapping_map_get(L, x, "value", NULL);
	mapping_check_keys(L, x, key, kkeys);
	mapping_join(sub, sizeof(sub), key, "attribute");
	if (!ka)
		ydoc_error(&L->y, L->d, x, sub, "required key is missing");
	else if ((s = mapping_want_string(L, ka, sub)) && !mapping_valid_attr_name(s))
		ydoc_error(&L->y, L->d, ka, sub, "\"%s\" is not an attribute name", s);
	else if (s)
		o->key_attr = strdup(s);
	mapping_note_place(ka, sub, &o->key_at);
	mapping_join(sub, sizeof(sub), key, "value");
	if (!kv)
		ydoc_error(&L->y, L->d, x, sub, "required key is missing");
	else
		o->key_value = mapping_compile(L, kv, sub);
	for (size_t i = 0; o->key_value && i < o->key_value->n; i++)
		if (o->key_value->parts[i].kind == TP_ATTR)
			ydoc_error(&L->y, L->d, kv, sub, "the key cannot use {@attr}: it must come from the record");
}

static void load_object_classes(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	char key[512];
	yaml_node_t *x;

	mapping_join(key, sizeof(key), path, "object_classes");
	if (!(x = mapping_map_get(L, sec, "object_classes", NULL))) {
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
		return;
	}
	if (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start) {
		ydoc_error(&L->y, L->d, x, key, "expected a list of object classes");
		return;
	}
	for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top; it++) {
		yaml_node_t *e = ydoc_node(&L->y, *it);
		const char *s = mapping_want_string(L, e, key);
		struct mapping_place *at;
		if (s && !mapping_valid_attr_name(s)) {
			ydoc_error(&L->y, L->d, e, key, "\"%s\" is not an object class name", s);
		} else if (s && (at = realloc(o->class_at, (o->object_classes.n + 1) * sizeof(*at)))) {
			o->class_at = at;
			memset(&at[o->object_classes.n], 0, sizeof(*at));
			mapping_note_place(e, key, &at[o->object_classes.n]);
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

	if (!ks || !mapping_valid_attr_name(ks)) {
		ydoc_error(&L->y, L->d, k, key, "\"%s\" is not an attribute name", ks ? ks : "?");
		return;
	}
	mapping_join(akey, sizeof(akey), key, ks);
	if (strcasecmp(ks, "objectClass") == 0) {
		ydoc_error(&L->y, L->d, k, akey, "object classes are set by %s.object_classes", path);
		return;
	}
	if (mapping_find_attr(o, ks) >= 0) {
		/* the same spelling twice is reported as a duplicate key above */
		if (strcmp(o->attrs[mapping_find_attr(o, ks)].name, ks) != 0)
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
	mapping_load_attr(L, k, v, akey, &o->attrs[o->nattrs], true);
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

	mapping_join(key, sizeof(key), path, "attributes");
	if (!(attrs = mapping_map_get(L, sec, "attributes", NULL))) {
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
		return NULL;
	}
	if (!mapping_want_map(L, attrs, key))
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

	if (mapping_find_attr(o, o->key_attr) < 0) {
		struct mapping_attr *a = &o->attrs[o->nattrs];
		a->name = strdup(o->key_attr); /* no templates: evaluated from key_value */
		a->at = (struct mapping_place){ o->key_at.line, o->key_at.column,
			                         o->key_at.key ? strdup(o->key_at.key) : NULL };
		a->is_key = true;
		if (!a->name) {
			mapping_join(key, sizeof(key), path, "attributes");
			ydoc_error(&L->y, L->d, attrs, key, "out of memory");
			return -1;
		}
		o->nattrs++;
	}
	o->key_index = (size_t)mapping_find_attr(o, o->key_attr);
	return 0;
}

static void load_rdn(struct loader *L, struct mapping_object *o, yaml_node_t *sec, const char *path)
{
	char rkey[512];
	yaml_node_t *x;
	const char *s;
	int idx;

	mapping_join(rkey, sizeof(rkey), path, "rdn");
	if (!(x = mapping_map_get(L, sec, "rdn", NULL)) || !(s = mapping_want_string(L, x, rkey)))
		return;
	if ((idx = mapping_find_attr(o, s)) < 0) {
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

	mapping_join(key, sizeof(key), path, "attributes");
	T.deps = calloc(o->nattrs * o->nattrs, sizeof(*T.deps));
	T.state = calloc(o->nattrs, sizeof(*T.state));
	T.stack = calloc(o->nattrs, sizeof(*T.stack));
	if (!T.deps || !T.state || !T.stack) {
		ydoc_error(&L->y, L->d, attrs, key, "out of memory");
		goto cleanup;
	}
	for (yaml_node_pair_t *p = attrs->data.mapping.pairs.start; p < attrs->data.mapping.pairs.top; p++) {
		const char *ks = ydoc_scalar(ydoc_node(&L->y, p->key));
		int idx = ks ? mapping_find_attr(o, ks) : -1;
		char akey[512];
		if (idx < 0)
			continue;
		mapping_join(akey, sizeof(akey), key, ks);
		mapping_resolve_refs(L, o, &o->attrs[idx], ydoc_node(&L->y, p->value), akey, T.deps + (size_t)idx * o->nattrs);
	}
	for (size_t a = 0; a < o->nattrs && T.cycle < 0; a++)
		visit(&T, a);
	if (T.cycle >= 0) {
		yaml_node_t *ak = NULL;
		char akey[512];
		mapping_map_get(L, attrs, o->attrs[T.cycle].name, &ak);
		mapping_join(akey, sizeof(akey), key, o->attrs[T.cycle].name);
		ydoc_error(&L->y, L->d, ak ? ak : attrs, akey, "{@attr} references form a cycle: %s", T.path);
	}
cleanup:
	free(T.deps);
	free(T.state);
	free(T.stack);
}

/* One section (employees or teams), as a ladder of its keys; every mistake is reported. */
void mapping_load_object(struct loader *L, enum mapping_kind kind, yaml_node_t *sec)
{
	struct mapping_object *o = &L->m->obj[kind];
	const char *path = mapping_section_names[kind];
	yaml_node_t *x, *kn = NULL, *attrs;
	char key[512];

	if (!mapping_want_map(L, sec, path))
		return;
	o->present = true;
	vlist_init(&o->object_classes);
	mapping_check_keys(L, sec, path, object_keys);
	if (kind == MAPPING_TEAM && mapping_map_get(L, sec, "terminated", &kn))
		ydoc_error(&L->y, L->d, kn, "teams.terminated", "teams are not terminated: a deleted team's group is deleted");
	load_bases(L, o, sec, path);
	load_key(L, o, sec, path);
	load_object_classes(L, o, sec, path);
	mapping_join(key, sizeof(key), path, "only_if");
	if ((x = mapping_map_get(L, sec, "only_if", NULL)))
		mapping_load_conditions(L, x, key, &o->scope, &o->nscope);
	mapping_join(key, sizeof(key), path, "rdn");
	if (!mapping_map_get(L, sec, "rdn", NULL))
		ydoc_error(&L->y, L->d, sec, key, "required key is missing");
	attrs = load_attributes(L, o, sec, path);
	if (!attrs || !o->key_attr || !o->key_value || add_key_attribute(L, o, attrs, path) < 0)
		return;
	load_rdn(L, o, sec, path);
	order_attributes(L, o, attrs, path);
	mapping_join(key, sizeof(key), path, "terminated");
	x = mapping_map_get(L, sec, "terminated", NULL);
	mapping_note_place(x ? x : sec, key, &o->terminated_at);
	if (x && kind == MAPPING_EMPLOYEE)
		load_terminated(L, o, x, key);
	mapping_join(key, sizeof(key), path, "initial_password");
	if ((x = mapping_map_get(L, sec, "initial_password", NULL))) {
		if (kind == MAPPING_TEAM)
			ydoc_error(&L->y, L->d, x, key, "groups have no password");
		else
			load_initial_password(L, o, x, key);
	}
}
