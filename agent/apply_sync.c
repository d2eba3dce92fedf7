/*
 * apply_sync: the sync cache (the managed entries read once a run) and sync,
 * the other entry point.
 */
#include "build.h"

#include "apply_int.h"

#include "apply.h"
#include "common/clock.h"
#include "dn.h"
#include "events.h"
#include "ids.h"
#include "ldifw.h"
#include "refs.h"
#include "related.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/strmap.h"
#include <fcntl.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- the sync cache ------------------------------------------------------ */

void apply_cache_values(struct apply_cache *c, const struct mapping_object *o, const struct ldapw_entry *e,
                        const char *dn, bool add)
{
	struct sbuf k;

	sbuf_init(&k);
	for (size_t i = 0; i < o->nattrs; i++) {
		const struct vlist *v;
		if (!(o->attrs[i].flags & MAPPING_ATTR_UNIQUE) || !(v = ldapw_entry_values(e, o->attrs[i].name)))
			continue;
		for (size_t n = 0; n < v->n; n++) {
			const char *holder;
			strmap_fold_key(&k, o->attrs[i].name, v->v[n]);
			holder = strmap_get(&c->values, sbuf_str(&k));
			if (add)
				strmap_put(&c->values, sbuf_str(&k), holder && !dn_equal(holder, dn) ? "\1" : dn);
			else if (holder && dn_equal(holder, dn))
				strmap_del(&c->values, sbuf_str(&k));
		}
	}
	sbuf_free(&k);
}

/* Sets e to what the mapping result says (the directory after this change). */
static void entry_set(struct ldapw_entry *e, const struct mapping_result *r)
{
	for (size_t a = 0; a < e->nattrs; a++) {
		free(e->attrs[a].name);
		vlist_free(&e->attrs[a].values);
	}
	free(e->attrs);
	free(e->dn);
	e->dn = strdup(r->dn);
	e->attrs = calloc(r->nvalues + 1, sizeof(*e->attrs));
	e->nattrs = 0;
	if (!e->attrs)
		return;
	e->attrs[0].name = strdup("objectClass");
	vlist_init(&e->attrs[0].values);
	for (size_t i = 0; i < r->object_classes->n; i++)
		vlist_push_copy(&e->attrs[0].values, r->object_classes->v[i], strlen(r->object_classes->v[i]));
	e->nattrs = 1;
	for (size_t i = 0; i < r->nvalues; i++) {
		struct ldapw_attr *at = &e->attrs[e->nattrs++];
		at->name = strdup(r->values[i].attr->name);
		vlist_init(&at->values);
		for (size_t n = 0; n < r->values[i].values.n; n++)
			vlist_push_copy(&at->values, r->values[i].values.v[n], strlen(r->values[i].values.v[n]));
	}
}

/* After a change in sync: the cache holds the entry as it now stands. */
void apply_cache_keep(struct job *j, const char *key, const struct ldapw_entry *cur, const struct mapping_result *r)
{
	struct apply_cache *c = j->a->cache;
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	struct ldapw_entry *e = (struct ldapw_entry *)cur;

	if (!c || r->kind != MAPPING_EMPLOYEE)
		return;
	if (e)
		apply_cache_values(c, o, e, e->dn, false);
	if (!e) {
		struct ldapw_entry *v = realloc(c->added.v, (c->added.n + 1) * sizeof(*v));
		char idx[32];
		if (!v)
			return;
		c->added.v = v;
		e = &c->added.v[c->added.n];
		memset(e, 0, sizeof(*e));
		snprintf(idx, sizeof(idx), "%zu", c->added.n++);
		strmap_put(&c->added_by_key, key, idx);
	}
	entry_set(e, r);
	strmap_put(&c->dn_by_key, key, r->dn);
	apply_cache_values(c, o, e, r->dn, true);
}

void apply_cache_forget(struct job *j, const char *key, const struct ldapw_entry *cur)
{
	struct apply_cache *c = j->a->cache;

	if (!c)
		return;
	apply_cache_values(c, &j->a->m->obj[MAPPING_EMPLOYEE], cur, cur->dn, false);
	strmap_del(&c->dn_by_key, key);
	strmap_del(&c->added_by_key, key);
}

/* The record's key value (malloc'd into *key); a record without one is the job's error. */
int apply_record_key(struct job *j, enum mapping_kind kind, const cJSON *rec, char **key)
{
	struct sbuf kerr;
	int rc;

	sbuf_init(&kerr);
	rc = mapping_key(j->a->m, kind, rec, key, &kerr);
	if (rc < 0)
		sbuf_addf(j->err, "%s %s: %s", kind == MAPPING_TEAM ? "team" : "employee", j->id, sbuf_str(&kerr));
	sbuf_free(&kerr);
	return rc;
}
/* ---- sync ------------------------------------------------------------------ */

/* The managed entries by key; two entries holding one key are remembered as such ("!dn1; dn2"). */
static void index_by_key(struct apply_cache *c, const struct mapping_object *o)
{
	for (size_t i = 0; i < c->emp.n; i++) {
		const struct vlist *k = ldapw_entry_values(&c->emp.v[i], o->key_attr);
		const char *seen;
		char idx[32];
		if (!k || !k->n)
			continue;
		seen = strmap_get(&c->by_key, k->v[0]);
		if (seen) {
			/* two entries hold one key: the record is refused, nothing touches either */
			struct sbuf two;
			sbuf_init(&two);
			if (*seen == '!')
				sbuf_addf(&two, "%s; %s", seen, c->emp.v[i].dn);
			else
				sbuf_addf(&two, "!%s; %s", c->emp.v[atol(seen)].dn, c->emp.v[i].dn);
			strmap_put(&c->by_key, k->v[0], sbuf_str(&two));
			strmap_del(&c->dn_by_key, k->v[0]);
			sbuf_free(&two);
			continue;
		}
		snprintf(idx, sizeof(idx), "%zu", i);
		strmap_put(&c->by_key, k->v[0], idx);
		strmap_put(&c->dn_by_key, k->v[0], c->emp.v[i].dn);
	}
}

/* Every value of the unique attributes under search_base: the managed
 * entries' are in the cache, the others are read (there are few: service
 * accounts and such). */
static int cache_unique_values(struct apply_ctx *a, struct apply_cache *c, const struct mapping_object *o,
                               struct sbuf *err)
{
	struct ldapw_error e;
	struct sbuf f;
	int rc = 0;

	sbuf_init(&f);
	for (size_t i = 0; i < c->emp.n; i++)
		apply_cache_values(c, o, &c->emp.v[i], c->emp.v[i].dn, true);
	for (size_t i = 0; i < o->nattrs && rc == 0; i++) {
		const char *one[2] = { o->attrs[i].name, NULL };
		struct ldapw_entries holders;
		if (!(o->attrs[i].flags & MAPPING_ATTR_UNIQUE))
			continue;
		sbuf_reset(&f);
		sbuf_addf(&f, "(&(%s=*)(!(%s=*)))", o->attrs[i].name, o->key_attr);
		if (ldapw_search_all(a->lw, o->search_base, sbuf_str(&f), o->attrs[i].name, one, 500, &holders, &e) !=
		    LDAP_SUCCESS) {
			sbuf_addf(err, "reading %s values under %s: %s: %s", o->attrs[i].name, o->search_base, e.op, e.text);
			a->connection_lost = ldapw_error_is_connection(&e);
			rc = -1;
			continue;
		}
		for (size_t n = 0; n < holders.n; n++)
			apply_cache_values(c, o, &holders.v[n], holders.v[n].dn, true);
		ldapw_entries_free(&holders);
	}
	sbuf_free(&f);
	return rc;
}

int apply_cache_load(struct apply_ctx *a, struct sbuf *err)
{
	const struct mapping_object *o = &a->m->obj[MAPPING_EMPLOYEE];
	struct apply_cache *c = calloc(1, sizeof(*c));
	const char **attrs = NULL;
	struct ldapw_error e;
	struct sbuf f;
	int rc = -1;

	sbuf_init(&f);
	if (!c) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	strmap_init(&c->by_key);
	strmap_init(&c->dn_by_key);
	strmap_init(&c->values);
	strmap_init(&c->seen);
	strmap_init(&c->terminated);
	strmap_init(&c->added_by_key);
	strmap_init(&c->bases);
	a->cache = c;
	if (!o->present)
		return 0;
	attrs = apply_owned_attrs(o, NULL);
	sbuf_addf(&f, "(%s=*)", o->key_attr);
	if (!attrs || f.failed) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	if (ldapw_search_all(a->lw, o->search_base, sbuf_str(&f), o->key_attr, attrs, 500, &c->emp, &e) != LDAP_SUCCESS) {
		sbuf_addf(err, "reading the managed entries under %s: %s: %s", o->search_base, e.op, e.text);
		a->connection_lost = ldapw_error_is_connection(&e);
		goto cleanup;
	}
	index_by_key(c, o);
	rc = cache_unique_values(a, c, o, err);
cleanup:
	free(attrs);
	sbuf_free(&f);
	return rc;
}

void apply_cache_free(struct apply_ctx *a)
{
	struct apply_cache *c = a->cache;

	if (!c)
		return;
	for (size_t i = 0; i < c->npending; i++)
		apply_pending_free(&c->pending[i]);
	free(c->pending);
	ldapw_entries_free(&c->emp);
	ldapw_entries_free(&c->added);
	strmap_free(&c->by_key);
	strmap_free(&c->dn_by_key);
	strmap_free(&c->values);
	strmap_free(&c->seen);
	strmap_free(&c->terminated);
	strmap_free(&c->added_by_key);
	strmap_free(&c->bases);
	free(c);
	a->cache = NULL;
}

size_t apply_cache_entries(const struct apply_ctx *a)
{
	return a->cache ? a->cache->emp.n : 0;
}

int apply_record(struct apply_ctx *a, enum mapping_kind kind, const cJSON *record, struct sbuf *err)
{
	struct job j = { .a = a, .type = "sync", .event = "sync", .err = err };
	char *id = mapping_record_id(record);
	int rc;

	a->connection_lost = false;
	a->hopeless = false;
	a->api_unavailable = false;
	a->stale = false;
	a->unresolved = false;
	job_maps_init(&j);
	j.id = id ? id : "?";
	j.kind = kind == MAPPING_TEAM ? "team" : "employee";
	if (apply_ids_refused(&j, record) < 0)
		rc = -1;
	else
		rc = kind == MAPPING_TEAM ? apply_team(&j, record, false) : apply_employee(&j, record);
	if (apply_execute(&j) < 0)
		rc = -1;
	apply_groups_release(&j);
	job_maps_free(&j);
	free(id);
	return rc;
}

void apply_cache_orphans(struct apply_ctx *a, void (*fn)(void *ctx, const char *key, const char *dn), void *ctx)
{
	struct apply_cache *c = a->cache;

	if (!c)
		return;
	for (size_t i = 0; i < c->by_key.cap; i++) {
		const char *key = c->by_key.slots[i].key;
		const char *dn;
		if (!key || strmap_get(&c->seen, key) || !(dn = strmap_get(&c->dn_by_key, key)))
			continue;
		fn(ctx, key, dn);
	}
}

/* The changes an orphan's termination makes, without a record: the
 * terminated.attributes that need no record field, and the DN under move_to. */
static int orphan_changes(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                          struct changes *c, char **newdn)
{
	struct vlist *vals = calloc(o->nattrs + 1, sizeof(*vals)), unresolved;
	cJSON *empty = cJSON_CreateObject();
	struct tmpl_env env = { 0 };
	char err[256];
	int rc = -1;

	*newdn = NULL;
	vlist_init(&unresolved);
	if (!vals || !empty)
		goto cleanup;
	for (size_t i = 0; i < o->nattrs; i++) {
		const struct vlist *v = ldapw_entry_values(cur, o->attrs[i].name);
		for (size_t n = 0; v && n < v->n; n++)
			vlist_push_copy(&vals[i], v->v[n], strlen(v->v[n]));
	}
	env.record = empty;
	env.tables = &j->a->m->tables;
	env.attrs = vals;
	env.unresolved = &unresolved;
	env.err = j->err;
	for (size_t t = 0; t < o->nterm_attrs; t++) {
		struct vlist want;
		vlist_init(&want);
		for (size_t k = 0; k < o->term_attrs[t].ntmpls; k++)
			if (tmpl_eval(o->term_attrs[t].tmpls[k], &env, &want) < 0) {
				vlist_free(&want);
				goto cleanup;
			}
		vlist_normalize(&want);
		if (apply_diff_attr(c, o->term_attrs[t].name, ldapw_entry_values(cur, o->term_attrs[t].name), &want) < 0) {
			vlist_free(&want);
			goto cleanup;
		}
		vlist_free(&want);
	}
	if (o->action == MAPPING_MOVE) {
		char *first = dn_first_rdn(cur->dn), *value = dn_rdn_value(cur->dn), *eq = first ? strchr(first, '=') : NULL;
		if (eq) {
			*eq = '\0';
			if (dn_build(first, value, o->move_to, newdn, err, sizeof(err)) < 0)
				sbuf_addf(j->err, "%s", err);
		}
		free(first);
		free(value);
		if (!*newdn)
			goto cleanup;
		if (dn_equal(*newdn, cur->dn)) {
			free(*newdn);
			*newdn = NULL;
		}
	}
	rc = 0;
cleanup:
	for (size_t i = 0; vals && i < o->nattrs; i++)
		vlist_free(&vals[i]);
	free(vals);
	vlist_free(&unresolved);
	cJSON_Delete(empty);
	return rc;
}

static int orphan_apply(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur, bool delete)
{
	struct changes c = { 0 };
	char *rdnval = dn_rdn_value(cur->dn), *newdn = NULL;
	int rc = -1;

	if ((delete || o->remove_from_groups) && apply_remove_from_groups(j, cur->dn, rdnval) < 0)
		goto cleanup;
	if (j->a->m->ngroups && apply_rule_groups(j, cur->dn, NULL, NULL, 0) < 0)
		goto cleanup;
	if (delete) {
		rc = apply_follow_pending(j, cur->dn, NULL) < 0 || apply_op_delete(j, cur->dn) < 0
		             ? -1
		             : apply_follow_everywhere(j, cur->dn, NULL);
		goto cleanup;
	}
	if (orphan_changes(j, o, cur, &c, &newdn) < 0)
		goto cleanup;
	if (newdn) {
		char *newrdn = dn_first_rdn(newdn), *parent = dn_parent(newdn);
		int x = newrdn && parent ? apply_op_rename(j, cur->dn, newdn, newrdn, parent, CAT_DISABLE) : -1;
		free(newrdn);
		free(parent);
		if (x < 0)
			goto cleanup;
	}
	if (apply_op_modify(j, newdn ? newdn : cur->dn, &c, CAT_DISABLE, "disable") < 0)
		goto cleanup;
	if (newdn && apply_rewrite_references(j, cur->dn, newdn) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	apply_changes_free(&c);
	free(rdnval);
	free(newdn);
	return rc;
}

int apply_orphan(struct apply_ctx *a, const char *key, bool delete, struct sbuf *err)
{
	const struct mapping_object *o = &a->m->obj[MAPPING_EMPLOYEE];
	struct job j = { .a = a, .type = "sync", .event = "orphan", .kind = "employee", .id = key, .err = err };
	struct ldapw_entries own = { 0 };
	const struct ldapw_entry *cur = NULL;
	int rc = -1;

	a->connection_lost = false;
	a->hopeless = false;
	job_maps_init(&j);
	if (apply_find_by_key(&j, o, MAPPING_EMPLOYEE, key, &own, &cur) < 0)
		goto cleanup;
	if (!cur) {
		rc = 0;
		goto cleanup;
	}
	rc = orphan_apply(&j, o, cur, delete);
	if (rc == 0 && (rc = apply_guard_asks(&j, NULL, key, cur->dn, 0)) != 1)
		goto cleanup; /* set aside (0), or a failure */
	rc = apply_execute(&j) < 0 || rc < 0 ? -1 : 0;
	if (rc == 0 && delete)
		apply_cache_forget(&j, key, cur);
cleanup:
	apply_plan_clear(&j);
	apply_groups_release(&j);
	job_maps_free(&j);
	ldapw_entries_free(&own);
	return rc;
}
