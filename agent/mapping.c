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

static const char *const kind_names[] = { "employee", "team" };
const char *const mapping_section_names[] = { "employees", "teams" };

const char *mapping_kind_name(enum mapping_kind kind)
{
	return kind_names[kind];
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
	mapping_conditions_free(g->when, g->nwhen);
}

/* dn: a DN template (one group per value) or a fixed DN (one group). */
static void load_group_dn(struct loader *L, struct mapping_group *g, yaml_node_t *rule, const char *path)
{
	char key[512], e[512];
	yaml_node_t *x;
	char *dn, *again = NULL;

	mapping_join(key, sizeof(key), path, "dn");
	if (!(x = mapping_map_get(L, rule, "dn", NULL))) {
		ydoc_error(&L->y, L->d, rule, key, "required key is missing");
		return;
	}
	if (ydoc_scalar(x) && strchr(ydoc_scalar(x), '{')) {
		mapping_load_dn_template(L, x, key, &g->rdn_attr, &g->parent, &g->value);
		return;
	}
	if (!(dn = mapping_dup_dn(L, x, key)))
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

	mapping_join(key, sizeof(key), path, "object_classes");
	if ((x = mapping_map_get(L, rule, "object_classes", NULL)) &&
	    (x->type != YAML_SEQUENCE_NODE || x->data.sequence.items.top == x->data.sequence.items.start))
		ydoc_error(&L->y, L->d, x, key, "expected a list of object classes");
	else if (x)
		for (yaml_node_item_t *it = x->data.sequence.items.start; it < x->data.sequence.items.top; it++) {
			yaml_node_t *e = ydoc_node(&L->y, *it);
			if ((v = mapping_want_string(L, e, key)) && !mapping_valid_attr_name(v))
				ydoc_error(&L->y, L->d, e, key, "\"%s\" is not an object class name", v);
			else if (v)
				vlist_push_copy(&g->object_classes, v, strlen(v));
		}
	else {
		vlist_push_copy(&g->object_classes, "top", 3);
		vlist_push_copy(&g->object_classes, "groupOfNames", 12);
	}
	mapping_join(key, sizeof(key), path, "member_attribute");
	v = (x = mapping_map_get(L, rule, "member_attribute", NULL)) ? mapping_want_string(L, x, key) : "member";
	if (v && !mapping_valid_attr_name(v))
		ydoc_error(&L->y, L->d, x, key, "\"%s\" is not an attribute name", v);
	else if (v)
		g->member_attr = strdup(v);
	mapping_join(key, sizeof(key), path, "empty_member");
	if ((x = mapping_map_get(L, rule, "empty_member", NULL)))
		g->empty_member = mapping_dup_dn(L, x, key);
	else if (names_class(&g->object_classes, "groupOfNames") || names_class(&g->object_classes, "groupOfUniqueNames"))
		ydoc_error(&L->y, L->d, rule, key, "required with %s, which must keep one member: the value a group keeps "
		           "when its last member leaves (empty_member: \"cn=nobody\")",
		           names_class(&g->object_classes, "groupOfNames") ? "groupOfNames" : "groupOfUniqueNames");
	mapping_join(key, sizeof(key), path, "key");
	if ((x = mapping_map_get(L, rule, "key", NULL)) && mapping_want_map(L, x, key)) {
		mapping_check_keys(L, x, key, kkeys);
		mapping_join(sub, sizeof(sub), key, "attribute");
		if (!(k = mapping_map_get(L, x, "attribute", NULL)))
			ydoc_error(&L->y, L->d, x, sub, "required key is missing");
		else if ((v = mapping_want_string(L, k, sub)) && !mapping_valid_attr_name(v))
			ydoc_error(&L->y, L->d, k, sub, "\"%s\" is not an attribute name", v);
		else if (v)
			g->key_attr = strdup(v);
		mapping_join(sub, sizeof(sub), key, "value");
		if (!(k = mapping_map_get(L, x, "value", NULL)))
			ydoc_error(&L->y, L->d, x, sub, "required key is missing");
		else if ((v = mapping_want_string(L, k, sub)))
			g->key_value = strdup(v);
	} else if (!x) {
		char def[300];
		snprintf(def, sizeof(def), "factorial-group-%s", g->name);
		g->key_attr = strdup("businessCategory");
		g->key_value = strdup(def);
	}
	mapping_join(key, sizeof(key), path, "when");
	if ((x = mapping_map_get(L, rule, "when", NULL)))
		mapping_load_conditions(L, x, key, &g->when, &g->nwhen);
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

	if (!mapping_want_map(L, x, "references"))
		return;
	mapping_check_keys(L, x, "references", keys);
	if ((v = mapping_map_get(L, x, "base", NULL))) {
		r->base = mapping_dup_dn(L, v, "references.base");
		mapping_note_place(v, "references.base", &r->base_at);
	}
	if (!(v = mapping_map_get(L, x, "attributes", NULL)))
		return;
	vlist_clear(&r->attrs);
	if (v->type != YAML_SEQUENCE_NODE) {
		ydoc_error(&L->y, L->d, v, "references.attributes", "expected a list of attribute names ([] for none)");
		return;
	}
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = ydoc_node(&L->y, *it);
		const char *s = mapping_want_string(L, e, "references.attributes");
		if (s && !mapping_valid_attr_name(s))
			ydoc_error(&L->y, L->d, e, "references.attributes", "\"%s\" is not an attribute name", s);
		else if (s)
			vlist_push_copy(&r->attrs, s, strlen(s));
	}
}

static void load_groups(struct loader *L, yaml_node_t *x)
{
	size_t n;

	if (!mapping_want_map(L, x, "groups"))
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
		mapping_join(path, sizeof(path), "groups", name);
		if (!mapping_want_map(L, rule, path))
			continue;
		L->m->ngroups++;
		vlist_init(&g->object_classes);
		g->name = strdup(name);
		mapping_note_place(k, path, &g->at);
		mapping_check_keys(L, rule, path, group_keys);
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
	mapping_conditions_free(o->scope, o->nscope);
	for (size_t i = 0; i < o->nattrs; i++)
		mapping_attr_free(&o->attrs[i]);
	free(o->attrs);
	free(o->order);
	free(o->move_to);
	for (size_t i = 0; i < o->nterm_attrs; i++)
		mapping_attr_free(&o->term_attrs[i]);
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
	mapping_check_keys(&L, root, "", top_keys);
	x = mapping_map_get(&L, root, "version", NULL);
	if (!x)
		ydoc_error(&L.y, d, root, "version", "required key is missing (version: 1)");
	else if (!ydoc_scalar(x) || strcmp(ydoc_scalar(x), "1") != 0)
		ydoc_error(&L.y, d, x, "version", "only version 1 is known, got %s", ydoc_scalar(x) ? ydoc_scalar(x) : ydoc_kind(x));
	/* before the sections: their templates' map() name these tables */
	if ((x = mapping_map_get(&L, root, "tables", NULL)))
		mapping_load_tables(&L, x);
	for (int k = 0; k < 2; k++) {
		x = mapping_map_get(&L, root, mapping_section_names[k], NULL);
		if (x)
			mapping_load_object(&L, (enum mapping_kind)k, x);
	}
	if ((x = mapping_map_get(&L, root, "groups", NULL)))
		load_groups(&L, x);
	default_references(&L.m->refs);
	if ((x = mapping_map_get(&L, root, "references", NULL)))
		load_references(&L, x);
	if (!mapping_map_get(&L, root, mapping_section_names[0], NULL) && !mapping_map_get(&L, root, mapping_section_names[1], NULL))
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
