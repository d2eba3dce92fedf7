/*
 * apply_rules: groups by rule: the groups the mapping's membership rules put
 * an employee in.
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

/* ---- groups by rule ---------------------------------------------------------------- */

/* "(&(KEY=VALUE)(MEMBER=dn))": the groups of rule g that hold dn. */
static char *rule_filter(const struct mapping_group *g, const char *dn)
{
	char *key = ldapw_eq_filter(g->key_attr, g->key_value), *member = ldapw_eq_filter(g->member_attr, dn);
	struct sbuf f;

	sbuf_init(&f);
	if (key && member)
		sbuf_addf(&f, "(&%s%s)", key, member);
	free(key);
	free(member);
	return f.len ? sbuf_detach(&f) : (sbuf_free(&f), NULL);
}

/* dn leaves group (an entry found holding it); the last member gives way to empty_member. */
static int rule_leave(struct job *j, const struct mapping_group *g, const struct ldapw_entry *group, const char *dn)
{
	const struct vlist *cur = ldapw_entry_values(group, g->member_attr);
	struct vlist gone, keep;
	struct changes c = { 0 };
	int rc;

	vlist_init(&gone);
	vlist_init(&keep);
	apply_matching(cur, dn, NULL, false, &gone);
	if (g->empty_member && cur && cur->n == gone.n && !vlist_contains(cur, g->empty_member))
		vlist_push_copy(&keep, g->empty_member, strlen(g->empty_member));
	rc = keep.n ? apply_changes_add(&c, LDAP_MOD_ADD, g->member_attr, &keep) : 0;
	if (rc == 0)
		rc = apply_changes_add(&c, LDAP_MOD_DELETE, g->member_attr, &gone);
	if (rc == 0)
		rc = apply_op_modify(j, group->dn, &c, CAT_MODIFY, "leave group");
	apply_changes_free(&c);
	vlist_free(&gone);
	vlist_free(&keep);
	return rc;
}

/* old_dn gives way to new_dn in a group dn stays in (renamed or moved). */
static int rule_follow(struct job *j, const struct mapping_group *g, const struct ldapw_entry *group,
                       const char *old_dn, const char *new_dn)
{
	struct vlist gone, add;
	struct changes c = { 0 };
	int rc;

	vlist_init(&gone);
	vlist_init(&add);
	apply_matching(ldapw_entry_values(group, g->member_attr), old_dn, NULL, false, &gone);
	vlist_push_copy(&add, new_dn, strlen(new_dn));
	rc = apply_changes_add(&c, LDAP_MOD_DELETE, g->member_attr, &gone);
	if (rc == 0)
		rc = apply_changes_add(&c, LDAP_MOD_ADD, g->member_attr, &add);
	if (rc == 0)
		rc = apply_op_modify(j, group->dn, &c, CAT_MODIFY, "follow rename");
	apply_changes_free(&c);
	vlist_free(&gone);
	vlist_free(&add);
	return rc;
}

/* A rule group as the agent makes it: its classes, its name, its mark, its first member. */
static int rule_make(struct job *j, const struct mapping_membership *w, const char *dn)
{
	const struct mapping_group *g = w->rule;
	struct changes c = { 0 };
	struct vlist one[3];
	const char *const values[3] = { w->value, g->key_value, dn };
	const char *const names[3] = { g->rdn_attr, g->key_attr, g->member_attr };
	int rc = apply_changes_add(&c, LDAP_MOD_ADD, "objectClass", &g->object_classes);

	for (size_t i = 0; i < 3; i++) {
		vlist_init(&one[i]);
		vlist_push_copy(&one[i], values[i], strlen(values[i]));
		if (rc == 0)
			rc = apply_changes_add(&c, LDAP_MOD_ADD, names[i], &one[i]);
	}
	if (rc == 0)
		rc = apply_op_add(j, w->dn, &c, CAT_MODIFY);
	/* a sync plans it once: the next member of the run finds it planned (a dry run makes nothing) */
	if (rc == 0 && j->a->cache)
		strmap_put(&j->a->cache->bases, w->dn, "planned");
	for (size_t i = 0; i < 3; i++)
		vlist_free(&one[i]);
	apply_changes_free(&c);
	return rc;
}

/* dn joins the group w names: made when missing; a group of that DN that does
 * not carry the rule's mark is not the agent's and is refused. */
static int rule_join(struct job *j, const struct mapping_membership *w, const char *dn)
{
	const struct mapping_group *g = w->rule;
	const char *const attrs[] = { g->member_attr, g->key_attr, NULL };
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	struct changes c = { 0 };
	struct vlist add, gone;
	const struct vlist *cur = NULL, *mark;
	int rc = -1, r;

	vlist_init(&add);
	vlist_init(&gone);
	r = ldapw_read(j->a->lw, w->dn, attrs, &found, &e);
	if (r != LDAP_SUCCESS && r != LDAP_NO_SUCH_OBJECT) {
		apply_failed(j, w->dn, &e);
		goto cleanup;
	}
	if (!found.n && !(j->a->cache && strmap_get(&j->a->cache->bases, w->dn))) {
		rc = rule_make(j, w, dn);
		goto cleanup;
	}
	if (found.n) {
		mark = ldapw_entry_values(&found.v[0], g->key_attr);
		if (!mark || !vlist_contains(mark, g->key_value)) {
			sbuf_addf(j->err, "employee %s: group %s is not one of groups.%s (it has no %s: %s), so the agent "
			          "leaves it alone: give the rule another DN, or add that value to the group",
			          j->id, w->dn, g->name, g->key_attr, g->key_value);
			goto cleanup;
		}
		cur = ldapw_entry_values(&found.v[0], g->member_attr);
	}
	vlist_push_copy(&add, dn, strlen(dn));
	if (g->empty_member && cur && vlist_contains(cur, g->empty_member) && !dn_equal(dn, g->empty_member))
		vlist_push_copy(&gone, g->empty_member, strlen(g->empty_member));
	rc = apply_changes_add(&c, LDAP_MOD_ADD, g->member_attr, &add);
	if (rc == 0 && gone.n)
		rc = apply_changes_add(&c, LDAP_MOD_DELETE, g->member_attr, &gone);
	if (rc == 0)
		rc = apply_op_modify(j, w->dn, &c, CAT_MODIFY, "join group");
cleanup:
	apply_changes_free(&c);
	vlist_free(&add);
	vlist_free(&gone);
	ldapw_entries_free(&found);
	return rc;
}

/* The employee's rule groups brought in line, under the groups lock: the
 * entry that stood at old_dn leaves the groups it no longer belongs to,
 * follows to new_dn in those it stays in, and new_dn joins the others of
 * want (new_dn NULL, want empty: a leaver leaves them all).  Planned
 * against the directory as the record found it. */
int apply_rule_groups(struct job *j, const char *old_dn, const char *new_dn, const struct mapping_membership *want,
                      size_t nwant)
{
	const struct mapping *m = j->a->m;
	bool *stays = nwant ? calloc(nwant, sizeof(*stays)) : NULL;
	int rc = -1;

	if (nwant && !stays)
		return -1;
	if (m->ngroups == 0) {
		free(stays);
		return 0;
	}
	apply_groups_enter(j);
	for (size_t i = 0; i < m->ngroups; i++) {
		const struct mapping_group *g = &m->groups[i];
		const char *const attrs[] = { g->member_attr, NULL };
		struct ldapw_entries found = { 0 };
		struct ldapw_error e;
		char *filter = old_dn ? rule_filter(g, old_dn) : NULL;
		int r = 0;
		if (old_dn && !filter)
			goto cleanup;
		if (filter && ldapw_search(j->a->lw, g->parent, filter, attrs, 0, &found, &e) != LDAP_SUCCESS)
			r = apply_failed(j, g->parent, &e);
		for (size_t f = 0; f < found.n && r == 0; f++) {
			size_t k = 0;
			while (k < nwant && !(want[k].rule == g && dn_equal(want[k].dn, found.v[f].dn)))
				k++;
			if (k == nwant)
				r = rule_leave(j, g, &found.v[f], old_dn);
			else if ((stays[k] = true) && !dn_equal(old_dn, new_dn))
				r = rule_follow(j, g, &found.v[f], old_dn, new_dn);
		}
		free(filter);
		ldapw_entries_free(&found);
		if (r < 0)
			goto cleanup;
	}
	for (size_t k = 0; k < nwant; k++)
		if (!stays[k] && rule_join(j, &want[k], new_dn) < 0)
			goto cleanup;
	rc = 0;
cleanup:
	apply_groups_leave(j);
	free(stays);
	return rc;
}

/* An active employee's rule groups: those the record says, for the entry now at new_dn. */
int apply_rule_groups_active(struct job *j, const cJSON *rec, const char *old_dn, const char *new_dn)
{
	struct mapping_membership *want = NULL;
	size_t n = 0;
	int rc;

	if (!j->a->m->ngroups)
		return 0;
	if (mapping_groups_of(j->a->m, rec, &want, &n, j->err) < 0) {
		sbuf_prefixf(j->err, "employee %s: ", j->id);
		return -1;
	}
	rc = apply_rule_groups(j, old_dn, new_dn, want, n);
	mapping_memberships_free(want, n);
	return rc;
}
