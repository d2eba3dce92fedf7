/*
 * apply_entry: entries: an employee's entry added, updated, terminated, and
 * the waiters and schedule around it.
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

/* ---- entries ------------------------------------------------------------ */

/* The current values of attr after a modrdn from cur->dn to new_dn. */
static void after_rename(const struct ldapw_entry *cur, const char *new_dn, const char *attr, struct vlist *out)
{
	const struct vlist *v = ldapw_entry_values(cur, attr);
	char *old_rdn = new_dn ? dn_first_rdn(cur->dn) : NULL, *new_rdn = new_dn ? dn_first_rdn(new_dn) : NULL;
	char *old_val = new_dn ? dn_rdn_value(cur->dn) : NULL, *new_val = new_dn ? dn_rdn_value(new_dn) : NULL;
	size_t alen = strlen(attr);

	for (size_t i = 0; v && i < v->n; i++) {
		bool is_old = old_rdn && strncasecmp(old_rdn, attr, alen) == 0 && old_rdn[alen] == '=' && old_val &&
		              strcmp(v->v[i], old_val) == 0;
		if (!is_old || !new_dn)
			vlist_push_copy(out, v->v[i], strlen(v->v[i]));
	}
	if (new_dn && new_rdn && strncasecmp(new_rdn, attr, alen) == 0 && new_rdn[alen] == '=' && new_val &&
	    !vlist_contains(out, new_val))
		vlist_push_copy(out, new_val, strlen(new_val));
	free(old_rdn);
	free(new_rdn);
	free(old_val);
	free(new_val);
}

/* With base given as a template, the parent of dn may not exist yet: with
 * create_bases the missing organizational units are made (planned, so a dry
 * run shows them), else the record is refused naming the base.  A sync reads
 * each base once (the cache remembers those found or planned). */
static int ensure_parent(struct job *j, const struct mapping_object *o, const char *dn)
{
	static const char *const none[] = { "1.1", NULL };
	struct strmap *known = j->a->cache ? &j->a->cache->bases : NULL;
	char *parent = dn_parent(dn), *at = parent ? strdup(parent) : NULL;
	struct vlist missing;
	int rc = -1;

	vlist_init(&missing);
	if (!o->base_tmpl) {
		rc = 0;
		goto cleanup;
	}
	/* up from the parent to the first entry that exists (or a sync planned already), at
	 * search_base at the latest */
	while (at && !dn_equal(at, o->search_base) && !(known && strmap_get(known, at))) {
		struct ldapw_entries e;
		struct ldapw_error err;
		char *up;
		if (ldapw_read(j->a->lw, at, none, &e, &err) != LDAP_SUCCESS) {
			apply_failed(j, at, &err);
			goto cleanup;
		}
		if (e.n) {
			ldapw_entries_free(&e);
			if (known)
				strmap_put(known, at, NULL);
			break;
		}
		ldapw_entries_free(&e);
		if (!o->create_bases) {
			sbuf_addf(j->err, "%s %s: the base %s does not exist (create_bases: true lets the agent make it)", j->kind,
			          j->id, parent);
			goto cleanup;
		}
		if (vlist_push_copy(&missing, at, strlen(at)) < 0 || !(up = dn_parent(at)))
			goto cleanup;
		free(at);
		at = up;
	}
	/* made from the top down: organizational units only */
	for (size_t i = missing.n; i-- > 0;) {
		const char *m = missing.v[i];
		char *rdn = dn_first_rdn(m), *value = dn_rdn_value(m);
		struct changes c = { 0 };
		struct vlist oc, ou;
		int x = -1;
		vlist_init(&oc);
		vlist_init(&ou);
		if (rdn && value && strncasecmp(rdn, "ou=", 3) == 0) {
			vlist_push_copy(&oc, "top", 3);
			vlist_push_copy(&oc, "organizationalUnit", 18);
			vlist_push_copy(&ou, value, strlen(value));
			x = apply_changes_add(&c, LDAP_MOD_ADD, "objectClass", &oc) == 0 &&
			    apply_changes_add(&c, LDAP_MOD_ADD, "ou", &ou) == 0
			            ? apply_op_add(j, m, &c, CAT_NONE)
			            : -1;
		} else if (rdn) {
			sbuf_addf(j->err, "%s %s: the base %s does not exist, and only organizational units (ou=) are made",
			          j->kind, j->id, m);
		}
		apply_changes_free(&c);
		vlist_free(&oc);
		vlist_free(&ou);
		free(rdn);
		free(value);
		if (x < 0)
			goto cleanup;
		if (known)
			strmap_put(known, m, NULL);
	}
	rc = 0;
cleanup:
	vlist_free(&missing);
	free(parent);
	free(at);
	return rc;
}

int apply_add_entry(struct job *j, const struct mapping_result *r, enum cat cat)
{
	struct changes c = { 0 };
	int rc = -1;

	if (ensure_parent(j, &j->a->m->obj[r->kind], r->dn) < 0 ||
	    apply_changes_add(&c, LDAP_MOD_ADD, "objectClass", r->object_classes) < 0)
		goto cleanup;
	for (size_t i = 0; i < r->nvalues; i++)
		if (r->values[i].values.n && apply_changes_add(&c, LDAP_MOD_ADD, r->values[i].attr->name, &r->values[i].values) < 0)
			goto cleanup;
	rc = apply_op_add(j, r->dn, &c, cat);
	if (rc == 0 && r->kind == MAPPING_EMPLOYEE && j->a->m->obj[r->kind].password_length) {
		/* the password is made by the executor, when the entry is: the plan never holds it */
		const struct mapping_object *o = &j->a->m->obj[r->kind];
		struct step *s = &j->plan.v[j->plan.n - 1];
		s->password_length = o->password_length;
		s->password_method = o->password_method;
		for (size_t t = 0; rc == 0 && s->password_method == MAPPING_PASSWORD_MODIFY && t < o->nterm_attrs; t++) {
			struct vlist fixed;
			vlist_init(&fixed);
			if (mapping_attr_literal(&o->term_attrs[t], &fixed) && fixed.n)
				rc = apply_changes_add(&s->lock, LDAP_MOD_ADD, o->term_attrs[t].name, &fixed);
			vlist_free(&fixed);
		}
	}
cleanup:
	apply_changes_free(&c);
	return rc;
}

/* objectClass: what the mapping's classes add to the entry's, never a removal. */
static int add_missing_classes(const struct ldapw_entry *cur, const struct mapping_result *r, struct changes *c)
{
	const struct vlist *oc = ldapw_entry_values(cur, "objectClass");
	struct vlist missing;
	int rc = -1;

	vlist_init(&missing);
	for (size_t i = 0; i < r->object_classes->n; i++) {
		bool present = false;
		for (size_t k = 0; oc && k < oc->n; k++)
			present = present || strcasecmp(oc->v[k], r->object_classes->v[i]) == 0;
		if (!present && vlist_push_copy(&missing, r->object_classes->v[i], strlen(r->object_classes->v[i])) < 0)
			goto cleanup;
	}
	if (missing.n && apply_changes_add(c, LDAP_MOD_ADD, "objectClass", &missing) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	vlist_free(&missing);
	return rc;
}

/* An active entry: attributes only termination sets are absent.  Of one whose
 * terminated values are fixed text, only those values go: a lock the server
 * set itself (ppolicy's pwdAccountLockedTime after failed binds) is not the
 * agent's to lift.  As a replace: the server may have taken one away itself
 * meanwhile (ppolicy does, when a password is set). */
static int clear_termination(const struct mapping_object *o, const struct ldapw_entry *cur, const char *new_dn,
                             const struct mapping_result *r, struct changes *c)
{
	struct vlist have;
	int rc = 0;

	vlist_init(&have);
	for (size_t t = 0; t < o->nterm_attrs && rc == 0; t++) {
		struct vlist fixed, keep;
		bool normal = false;
		for (size_t i = 0; i < r->nvalues; i++)
			normal = normal || strcasecmp(r->values[i].attr->name, o->term_attrs[t].name) == 0;
		if (normal)
			continue;
		vlist_clear(&have);
		vlist_init(&fixed);
		vlist_init(&keep);
		after_rename(cur, new_dn, o->term_attrs[t].name, &have);
		if (mapping_attr_literal(&o->term_attrs[t], &fixed))
			for (size_t v = 0; v < have.n && rc == 0; v++)
				if (!vlist_contains(&fixed, have.v[v]))
					rc = vlist_push_copy(&keep, have.v[v], strlen(have.v[v]));
		if (rc == 0 && !apply_same_set(&have, &keep))
			rc = apply_changes_add(c, LDAP_MOD_REPLACE, o->term_attrs[t].name, &keep);
		vlist_free(&fixed);
		vlist_free(&keep);
	}
	vlist_free(&have);
	return rc < 0 ? -1 : 0;
}

/* Brings an existing entry to the mapped result: at most one rename, one modify. */
int apply_update_entry(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                       const struct mapping_result *r, enum cat cat, bool *renamed)
{
	struct changes c = { 0 };
	const char *new_dn = NULL;
	struct vlist have;
	int rc = -1;

	*renamed = false;
	vlist_init(&have);
	if (!dn_equal(cur->dn, r->dn)) {
		char *newrdn = dn_first_rdn(r->dn), *np = dn_parent(r->dn), *cp = dn_parent(cur->dn);
		int x = -1;
		if (newrdn && np && cp && !dn_equal(np, cp) && ensure_parent(j, o, r->dn) < 0)
			newrdn = (free(newrdn), NULL); /* the new base is refused: no rename */
		if (newrdn && np && cp)
			x = apply_op_rename(j, cur->dn, r->dn, newrdn, dn_equal(np, cp) ? NULL : np,
			                    cat == CAT_DISABLE ? CAT_DISABLE : CAT_RENAME);
		free(newrdn);
		free(np);
		free(cp);
		if (x < 0)
			goto cleanup;
		new_dn = r->dn;
		*renamed = true;
	}
	if (add_missing_classes(cur, r, &c) < 0)
		goto cleanup;
	for (size_t i = 0; i < r->nvalues; i++) {
		vlist_clear(&have);
		after_rename(cur, new_dn, r->values[i].attr->name, &have);
		if (apply_diff_attr(&c, r->values[i].attr->name, &have, &r->values[i].values) < 0)
			goto cleanup;
	}
	if (r->state == MAPPING_ACTIVE && clear_termination(o, cur, new_dn, r, &c) < 0)
		goto cleanup;
	rc = apply_op_modify(j, r->dn, &c, cat, cat == CAT_DISABLE ? "disable" : "modify");
cleanup:
	apply_changes_free(&c);
	vlist_free(&have);
	return rc;
}

/* References to employees without an entry are left out, and said; in the
 * daemon, an employee delivery is kept to be applied again when the entry
 * it refers to is made (a manager hired after the employee). */
enum { UNRESOLVED_SAID = 10 }; /* ids said one by one; past them, one line for the rest */

void apply_note_unresolved(struct job *j, const struct mapping_result *r, const cJSON *rec)
{
	char *body = NULL;

	if (r->unresolved.n)
		j->a->unresolved = true;
	if (r->unresolved.n && j->a->revisit && j->a->st && strcmp(j->kind, "employee") == 0)
		body = cJSON_PrintUnformatted(rec);
	/* a team of thousands without entries: a line for each of the first few, one for the rest */
	size_t said = r->unresolved.n > UNRESOLVED_SAID + 1 ? UNRESOLVED_SAID : r->unresolved.n;

	for (size_t i = 0; i < r->unresolved.n; i++) {
		if (i < said && j->a->dry_run)
			apply_sayf(j, "%s: employee %s has no entry; left out", r->unresolved_attr[i], r->unresolved.v[i]);
		else if (i < said)
			log_warn("%s %s (%s): %s: employee %s has no entry; left out%s", j->kind, j->id, j->event,
			         r->unresolved_attr[i], r->unresolved.v[i], body ? " until it has one" : "");
		else if (i == said && j->a->dry_run)
			apply_sayf(j, "%zu more employees named have no entry; left out", r->unresolved.n - i);
		else if (i == said)
			log_warn("%s %s (%s): %zu more employees named have no entry; left out", j->kind, j->id, j->event,
			         r->unresolved.n - i);
		if (body) {
			char target[160], waiter[160];
			struct sbuf e;
			snprintf(target, sizeof(target), "employee:%s", r->unresolved.v[i]);
			snprintf(waiter, sizeof(waiter), "employee:%s", j->id);
			sbuf_init(&e);
			if (store_wait_for(j->a->st, target, waiter, j->type, body, &e) < 0)
				log_warn("employee %s: %s", j->id, sbuf_str(&e));
			sbuf_free(&e);
		}
	}
	free(body);
}

/* An employee's entry was just made: the deliveries that waited for it go again. */
void apply_revisit_waiters(struct job *j)
{
	char target[160];
	struct sbuf e;

	if (!j->a->revisit || !j->a->st)
		return;
	snprintf(target, sizeof(target), "employee:%s", j->id);
	sbuf_init(&e);
	if (store_take_waiters(j->a->st, target, j->a->revisit, j->a->revisit_ctx, &e) < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
}

int apply_evaluate(struct job *j, enum mapping_kind kind, const cJSON *rec, const struct ldapw_entry *own,
                   enum mapping_force force, struct mapping_result *r)
{
	const struct mapping_object *o = &j->a->m->obj[kind];
	struct hookctx hc = { .j = j, .own = own, .search_base = o->search_base, .kind = kind };
	struct mapping_hooks h = {
		.employee_dn = apply_hook_employee_dn,
		.taken = apply_hook_taken,
		.existing = apply_hook_existing,
		.ctx = &hc,
		.today = j->a->today,
		.force = force,
	};

	if (kind == MAPPING_TEAM)
		apply_prefetch_members(j, rec);
	if (mapping_eval(j->a->m, kind, rec, &h, r) < 0) {
		if (!j->err->len)
			sbuf_addf(j->err, "%s %s: %s", j->kind, j->id, sbuf_str(&r->error));
		return -1;
	}
	return 0;
}

void apply_schedule(struct job *j, const cJSON *rec, const char *due, bool put)
{
	struct sbuf e;
	char *body;

	if (!j->a->st)
		return;
	sbuf_init(&e);
	if (put) {
		body = cJSON_PrintUnformatted(rec);
		if (!body || store_schedule_put(j->a->st, "employee", j->id, due, body, &e) < 0)
			log_warn("employee %s: the termination due on %s could not be recorded: %s", j->id, due, sbuf_str(&e));
		free(body);
	} else if (store_schedule_remove(j->a->st, "employee", j->id, &e) < 0) {
		log_warn("employee %s: the schedule could not be updated: %s", j->id, sbuf_str(&e));
	}
	sbuf_free(&e);
}

/* The termination policy on an existing entry: leave groups, then delete it
 * or bring it to its terminated form. */
int apply_terminate_entry(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                          const struct mapping_result *r, bool *renamed)
{
	char *rdnval = dn_rdn_value(cur->dn);
	int rc = -1;

	*renamed = false;
	/* a deleted entry leaves every group: a group naming nothing would be left otherwise */
	if ((o->remove_from_groups || r->action == MAPPING_DELETE) && apply_remove_from_groups(j, cur->dn, rdnval) < 0)
		goto cleanup;
	if (r->action == MAPPING_DELETE)
		rc = apply_follow_pending(j, cur->dn, NULL) < 0 || apply_op_delete(j, cur->dn) < 0
		             ? -1
		             : apply_follow_everywhere(j, cur->dn, NULL);
	else
		rc = apply_update_entry(j, o, cur, r, CAT_DISABLE, renamed);
cleanup:
	free(rdnval);
	return rc;
}
