/*
 * apply_read: reading the directory: a record's entry by its key, the
 * employees a team names, the values a mapping asks whether they are taken.
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

/* ---- reading the directory ------------------------------------------------- */

/* objectClass, also (when not NULL) and every attribute the section owns, NULL-terminated. */
const char **apply_owned_attrs(const struct mapping_object *o, const char *also)
{
	const char **v = calloc(o->nattrs + o->nterm_attrs + 3, sizeof(*v));
	size_t n = 0;

	if (!v)
		return NULL;
	v[n++] = "objectClass";
	if (also)
		v[n++] = also;
	for (size_t i = 0; i < o->nattrs; i++)
		v[n++] = o->attrs[i].name;
	for (size_t i = 0; i < o->nterm_attrs; i++)
		v[n++] = o->term_attrs[i].name;
	return v;
}

void apply_key_held_twice(struct job *j, const struct mapping_object *o, const char *key,
                          const struct ldapw_entries *found)
{
	sbuf_addf(j->err, "%s %s: the key %s=%s is held by %zu entries (", j->kind, j->id, o->key_attr, key, found->n);
	for (size_t i = 0; i < found->n; i++)
		sbuf_addf(j->err, "%s%s", i ? "; " : "", found->v[i].dn);
	sbuf_adds(j->err, "); nothing changed: remove the duplicate");
}

/* Finds the one entry holding key under the section's search_base: from the
 * cache (sync) or the directory.  *cur points into own or into the cache. */
int apply_find_by_key(struct job *j, const struct mapping_object *o, enum mapping_kind kind, const char *key,
                      struct ldapw_entries *own, const struct ldapw_entry **cur)
{
	const char **attrs = NULL;
	char *filter = NULL;
	struct ldapw_error e;
	int rc = -1;

	memset(own, 0, sizeof(*own));
	*cur = NULL;
	if (kind == MAPPING_EMPLOYEE && j->a->cache) {
		struct apply_cache *c = j->a->cache;
		const char *idx = strmap_get(&c->by_key, key);
		const char *added = strmap_get(&c->added_by_key, key);
		strmap_put(&c->seen, key, NULL);
		if (idx && *idx == '!') {
			sbuf_addf(j->err, "%s %s: the key %s=%s is held by %s; nothing changed: remove the duplicate", j->kind,
			          j->id, o->key_attr, key, idx + 1);
			return -1;
		}
		if (added)
			*cur = &c->added.v[atol(added)];
		else if (idx && strmap_get(&c->dn_by_key, key))
			*cur = &c->emp.v[atol(idx)];
		return 0;
	}
	attrs = apply_owned_attrs(o, NULL);
	filter = ldapw_eq_filter(o->key_attr, key);
	if (!attrs || !filter) {
		sbuf_adds(j->err, "out of memory");
		goto cleanup;
	}
	if (ldapw_search(j->a->lw, o->search_base, filter, attrs, 0, own, &e) != LDAP_SUCCESS) {
		apply_failed(j, o->search_base, &e);
		goto cleanup;
	}
	if (own->n > 1) {
		apply_key_held_twice(j, o, key, own);
		ldapw_entries_free(own);
		goto cleanup;
	}
	*cur = own->n ? &own->v[0] : NULL;
	rc = 0;
cleanup:
	free(attrs);
	free(filter);
	return rc;
}

int apply_hook_taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	struct hookctx *h = ctx;
	static const char *const none[] = { "1.1", NULL };
	struct ldapw_entries found;
	struct ldapw_error e;
	char *filter = ldapw_eq_filter(attr, value);
	int taken = 0;

	if (!filter)
		return -1;
	if (h->j->a->cache && h->kind == MAPPING_EMPLOYEE) {
		const char *holder = strmap_get_folded(&h->j->a->cache->values, attr, value);
		free(filter);
		return holder && (holder[0] == '\1' || !h->own || !dn_equal(holder, h->own->dn));
	}
	/* asked already, with the search for the record's entry ("" when nobody holds it) */
	if (h->kind == MAPPING_EMPLOYEE && h->j->unique_known.n) {
		const char *holder = strmap_get_folded(&h->j->unique_known, attr, value);
		if (holder) {
			free(filter);
			return *holder && (!h->own || !dn_equal(holder, h->own->dn));
		}
	}
	if (ldapw_search(h->j->a->lw, h->search_base, filter, none, 2, &found, &e) != LDAP_SUCCESS) {
		free(filter);
		sbuf_addf(err, "checking that %s=%s is free: %s", attr, value, e.text);
		h->j->a->connection_lost = ldapw_error_is_connection(&e);
		return -1;
	}
	for (size_t i = 0; i < found.n; i++)
		if (!h->own || !dn_equal(found.v[i].dn, h->own->dn))
			taken = 1;
	ldapw_entries_free(&found);
	free(filter);
	return taken;
}

int apply_hook_existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err)
{
	struct hookctx *h = ctx;
	const struct vlist *v;

	(void)err;
	if (!h->own || !(v = ldapw_entry_values(h->own, attr)) || v->n == 0)
		return 0;
	for (size_t i = 0; i < v->n; i++)
		if (vlist_push_copy(out, v->v[i], strlen(v->v[i])) < 0)
			return -1;
	return 1;
}

/* A record holding only an id, as an employee or team reference sees it. */
cJSON *apply_id_record(const char *id)
{
	cJSON *r = cJSON_CreateObject();

	/* as text, exactly: an id past 2^53 does not survive a double (ids.h) */
	if (r && !cJSON_AddStringToObject(r, "id", id)) {
		cJSON_Delete(r);
		r = NULL;
	}
	return r;
}

/* The DN of employee id's entry: 1 found, 0 none, -1 failure. */
/* Whether the employee with this key is a leaver to keep out of groups. */
static int kept_out(struct job *j, const char *key)
{
	struct sbuf e;
	int t;

	if (!j->a->m->obj[MAPPING_EMPLOYEE].remove_from_groups)
		return 0;
	if (j->returning && j->key && strcmp(key, j->key) == 0)
		return 0;
	if (j->a->cache)
		return strmap_get(&j->a->cache->terminated, key) != NULL;
	if (!j->a->state)
		return 0;
	sbuf_init(&e);
	t = store_terminated(j->a->state, key, &e);
	if (t < 0)
		log_warn("%s", sbuf_str(&e));
	sbuf_free(&e);
	return t > 0;
}

int apply_lookup_employee(struct job *j, const char *id, char **dn, bool membership)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	static const char *const none[] = { "1.1", NULL };
	const char *cached = strmap_get(&j->dn_cache, id);
	struct ldapw_entries found;
	struct ldapw_error e;
	char *key = NULL, *filter = NULL;
	cJSON *rec;
	int rc = -1;

	*dn = NULL;
	if (!o->present)
		return 0;
	rec = apply_id_record(id);
	if (!rec || mapping_key(j->a->m, MAPPING_EMPLOYEE, rec, &key, j->err) < 0)
		goto cleanup;
	if (membership && kept_out(j, key)) {
		rc = 2;
		goto cleanup;
	}
	if (cached) {
		rc = *cached != '\0';
		if (rc && !(*dn = strdup(cached)))
			rc = -1;
		goto cleanup;
	}
	if (j->a->cache) {
		const char *known = strmap_get(&j->a->cache->dn_by_key, key);
		rc = known != NULL;
		if (rc && !(*dn = strdup(known)))
			rc = -1;
		goto cleanup;
	}
	if (!(filter = ldapw_eq_filter(o->key_attr, key)))
		goto cleanup;
	if (ldapw_search(j->a->lw, o->search_base, filter, none, 2, &found, &e) != LDAP_SUCCESS) {
		apply_failed(j, o->search_base, &e);
		goto cleanup;
	}
	rc = found.n > 0;
	if (rc)
		*dn = strdup(found.v[0].dn);
	strmap_put(&j->dn_cache, id, rc ? found.v[0].dn : "");
	ldapw_entries_free(&found);
	if (rc && !*dn)
		rc = -1;
cleanup:
	cJSON_Delete(rec);
	free(key);
	free(filter);
	return rc;
}

/*
 * A team's members found in batches: the DNs of the employees its id lists
 * name (employee_ids, lead_ids, ...), PREFETCH_BATCH keys to a search, into
 * the job's cache, so that a team of 50,000 asks the directory some hundreds
 * of times, not 50,000.  A batch whose answer cannot be matched key for key
 * (an entry whose key the server matched otherwise, or two entries of one
 * key) leaves those ids to lookup_employee, one at a time, as before.
 */
enum { PREFETCH_BATCH = 100 };

static void prefetch_batch(struct job *j, const char *const *ids, char **keys, size_t n)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	const char *attrs[] = { o->key_attr, NULL };
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	struct strmap wanted, dn_of; /* the keys asked for; key -> DN ("" once two entries hold it) */
	struct sbuf f;
	bool exact = true;

	sbuf_init(&f);
	strmap_init(&wanted);
	strmap_init(&dn_of);
	sbuf_adds(&f, "(|");
	for (size_t i = 0; i < n; i++) {
		char *one = ldapw_eq_filter(o->key_attr, keys[i]);
		if (!one || strmap_put(&wanted, keys[i], NULL) < 0) {
			free(one);
			goto cleanup;
		}
		sbuf_adds(&f, one);
		free(one);
	}
	sbuf_addc(&f, ')');
	if (f.failed || ldapw_search(j->a->lw, o->search_base, sbuf_str(&f), attrs, 0, &found, &e) != LDAP_SUCCESS)
		goto cleanup; /* each is looked up alone later, and fails there with its reason */
	for (size_t i = 0; i < found.n; i++) {
		const struct vlist *v = ldapw_entry_values(&found.v[i], o->key_attr);
		bool matched = false;
		for (size_t k = 0; v && k < v->n; k++) {
			if (!strmap_get(&wanted, v->v[k]))
				continue;
			strmap_put(&dn_of, v->v[k], strmap_get(&dn_of, v->v[k]) ? "" : found.v[i].dn);
			matched = true;
		}
		exact = exact && matched;
	}
	for (size_t i = 0; i < n; i++) {
		const char *dn = strmap_get(&dn_of, keys[i]);
		if (dn && *dn)
			strmap_put(&j->dn_cache, ids[i], dn);
		else if (!dn && exact)
			strmap_put(&j->dn_cache, ids[i], ""); /* no entry holds it */
	}
cleanup:
	ldapw_entries_free(&found);
	strmap_free(&wanted);
	strmap_free(&dn_of);
	sbuf_free(&f);
}

/* The batch gathered so far asked for, and emptied. */
static void prefetch_flush(struct job *j, char **ids, char **keys, size_t *n)
{
	if (*n)
		prefetch_batch(j, (const char *const *)ids, keys, *n);
	for (; *n; (*n)--) {
		free(keys[*n - 1]);
		free(ids[*n - 1]);
	}
}

void apply_prefetch_members(struct job *j, const cJSON *rec)
{
	char *ids[PREFETCH_BATCH], *keys[PREFETCH_BATCH];
	size_t n = 0;
	const cJSON *field;
	struct sbuf scratch;

	if (j->a->cache || !j->a->m->obj[MAPPING_EMPLOYEE].present || !cJSON_IsObject(rec))
		return;
	sbuf_init(&scratch);
	cJSON_ArrayForEach(field, rec) {
		size_t len = field->string ? strlen(field->string) : 0;
		const cJSON *idv;
		if (!cJSON_IsArray(field) || len < 4 || strcmp(field->string + len - 4, "_ids") != 0)
			continue;
		cJSON_ArrayForEach(idv, field) {
			cJSON *one = NULL;
			char *key = NULL, *id;
			sbuf_reset(&scratch);
			if (!(id = ids_text(idv, &scratch)) || strmap_get(&j->dn_cache, id)) {
				free(id);
				continue;
			}
			one = apply_id_record(id);
			if (one && mapping_key(j->a->m, MAPPING_EMPLOYEE, one, &key, &scratch) == 0 && key) {
				ids[n] = id;
				keys[n++] = key;
			} else {
				free(key);
				free(id);
			}
			cJSON_Delete(one);
			if (n == PREFETCH_BATCH)
				prefetch_flush(j, ids, keys, &n);
		}
	}
	prefetch_flush(j, ids, keys, &n);
	sbuf_free(&scratch);
}

int apply_hook_employee_dn(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	struct hookctx *h = ctx;

	(void)err;
	return apply_lookup_employee(h->j, id, dn, h->kind == MAPPING_TEAM);
}
