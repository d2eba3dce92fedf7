/*
 * apply_follow: references an apply did not finish following: the store's
 * "follow" mark, read, finished and cleared.
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

/* ---- references an apply did not finish following ---------------------------
 * A rename or a deletion is marked in the store ("follow": the DN the
 * references still name) before it is made, and the mark cleared once the
 * whole apply went through.  When something after the rename fails (the
 * service account may not write a hand-made group, say), the next apply of
 * the record finds the mark and follows from that DN. */

/* Reads the mark: j->follow_from when references may still name another DN
 * than the entry's (cur, or none when it is gone). */
int apply_follow_read(struct job *j, const char *key, const struct ldapw_entry *cur)
{
	char *from = NULL;
	struct sbuf e;
	int got;

	if (!j->a->state || !key || !j->a->m->refs.attrs.n)
		return 0;
	sbuf_init(&e);
	got = store_mark(j->a->state, key, "follow", &from, &e);
	if (got < 0)
		sbuf_addf(j->err, "%s %s: %s", j->kind, j->id, sbuf_str(&e));
	sbuf_free(&e);
	if (got == 1 && (!cur || !dn_equal(from, cur->dn))) {
		j->follow_from = from;
		from = NULL;
	}
	free(from);
	return got < 0 ? -1 : 0;
}

/* old_dn is renamed to new_dn (NULL: deleted): marked before it is made,
 * and what an earlier apply left is followed to the same place. */
int apply_follow_pending(struct job *j, const char *old_dn, const char *new_dn)
{
	struct sbuf e;
	int rc = 0;

	if (j->a->st && j->key && j->a->m->refs.attrs.n && !j->follow_marked) {
		sbuf_init(&e);
		if (store_set_mark(j->a->st, j->key, "follow", j->follow_from ? j->follow_from : old_dn, &e) < 0) {
			sbuf_addf(j->err, "%s %s: %s", j->kind, j->id, sbuf_str(&e));
			rc = -1;
		}
		sbuf_free(&e);
		j->follow_marked = true;
	}
	if (rc == 0 && j->follow_from && !j->follow_consumed) {
		j->follow_consumed = true;
		if (!dn_equal(j->follow_from, old_dn))
			rc = apply_follow_everywhere(j, j->follow_from, new_dn);
	}
	return rc;
}

/* At the end of a job that renamed nothing: what an earlier one left is
 * followed to where the entry stands (or dropped, when there is none). */
int apply_follow_leftover(struct job *j, const char *dn)
{
	if (!j->follow_from || j->follow_consumed)
		return 0;
	j->follow_consumed = true;
	return apply_follow_everywhere(j, j->follow_from, dn);
}

/* The apply went through: nothing is left to follow. */
void apply_follow_done(struct job *j)
{
	struct sbuf e;

	if (!j->a->st || !j->key || (!j->follow_marked && !j->follow_from))
		return;
	sbuf_init(&e);
	if (store_set_mark(j->a->st, j->key, "follow", NULL, &e) < 0)
		log_warn("%s %s: %s", j->kind, j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* After a rename: old DN -> new DN in managed groups and in the employee
 * reference attributes (manager), on entries holding the key attribute;
 * then in every entry that names it (follow_everywhere). */
static int rewrite_references_locked(struct job *j, const char *old_dn, const char *new_dn)
{
	const struct mapping *m = j->a->m;
	char *old_rdn = dn_rdn_value(old_dn), *new_rdn = dn_rdn_value(new_dn);
	bool rdn_changed = old_rdn && new_rdn && strcmp(old_rdn, new_rdn) != 0;
	int rc = -1;

	for (int k = 0; k < 2; k++) {
		const struct mapping_object *o = &m->obj[k];
		struct ldapw_entries found = { 0 };
		struct ldapw_error e;
		const char **names;
		char *filter;
		if (!o->present)
			continue;
		names = apply_member_attr_names(o);
		filter = apply_member_filter(m, o, old_dn, rdn_changed && k == MAPPING_TEAM ? old_rdn : NULL);
		if (!names || !filter) {
			free(names);
			free(filter);
			goto cleanup;
		}
		if (names[0] && ldapw_search(j->a->lw, o->search_base, filter, names, 0, &found, &e) != LDAP_SUCCESS) {
			free(names);
			free(filter);
			apply_failed(j, o->search_base, &e);
			goto cleanup;
		}
		free(names);
		free(filter);
		for (size_t g = 0; g < found.n; g++) {
			struct changes c = { 0 };
			int r = 0;
			if (strmap_get(&j->touched, found.v[g].dn))
				continue; /* this record's change already took it out */
			for (size_t i = 0; i < o->nattrs && r == 0; i++) {
				bool by_rdn;
				struct vlist gone, repl;
				if (!apply_is_member_attr(&o->attrs[i], &by_rdn) || (by_rdn && (!rdn_changed || k != MAPPING_TEAM)))
					continue;
				vlist_init(&gone);
				vlist_init(&repl);
				apply_matching(ldapw_entry_values(&found.v[g], o->attrs[i].name), old_dn, old_rdn, by_rdn, &gone);
				if (gone.n) {
					vlist_push_copy(&repl, by_rdn ? new_rdn : new_dn, strlen(by_rdn ? new_rdn : new_dn));
					if (apply_changes_add(&c, LDAP_MOD_DELETE, o->attrs[i].name, &gone) < 0 ||
					    apply_changes_add(&c, LDAP_MOD_ADD, o->attrs[i].name, &repl) < 0 ||
					    apply_note_followed(j, found.v[g].dn, o->attrs[i].name) < 0)
						r = -1;
				}
				vlist_free(&gone);
				vlist_free(&repl);
			}
			if (r == 0)
				r = apply_op_modify(j, found.v[g].dn, &c, CAT_MODIFY, "follow rename");
			apply_changes_free(&c);
			if (r < 0) {
				ldapw_entries_free(&found);
				goto cleanup;
			}
		}
		ldapw_entries_free(&found);
	}
	rc = apply_follow_pending(j, old_dn, new_dn);
	if (rc == 0)
		rc = apply_follow_everywhere(j, old_dn, new_dn);
cleanup:
	free(old_rdn);
	free(new_rdn);
	return rc;
}

int apply_rewrite_references(struct job *j, const char *old_dn, const char *new_dn)
{
	int rc;

	apply_groups_enter(j);
	rc = rewrite_references_locked(j, old_dn, new_dn);
	apply_groups_leave(j);
	return rc;
}
