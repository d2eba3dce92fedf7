/*
 * apply_members: membership attributes: teams' groups, an employee in and
 * out of them, references followed when an entry moves.
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

/* ---- membership attributes ---------------------------------------------- */

/* Team attributes that hold members: those whose template uses employee_dn;
 * by_rdn when the value is the member's RDN value (memberUid). */
bool apply_is_member_attr(const struct mapping_attr *a, bool *by_rdn)
{
	if (by_rdn)
		*by_rdn = mapping_attr_uses_filter(a, TF_RDN);
	return mapping_attr_uses_filter(a, TF_EMPLOYEE_DN);
}

/* The values attribute a of a team with these members would have. */
static int member_values(struct job *j, const struct mapping_attr *a, const char *team_id, const char *employee_id,
                         struct vlist *out)
{
	struct hookctx hc = { .j = j, .kind = MAPPING_TEAM };
	struct vlist unresolved;
	struct tmpl_env env = { 0 };
	cJSON *rec = team_id ? apply_id_record(team_id) : cJSON_CreateObject();
	cJSON *ids = cJSON_CreateArray();
	int rc = -1;

	vlist_init(&unresolved);
	if (!rec || !ids) {
		cJSON_Delete(ids);
		goto cleanup;
	}
	if (employee_id) {
		cJSON *one = apply_id_record(employee_id);
		cJSON *idv = one ? cJSON_DetachItemFromObject(one, "id") : NULL;
		cJSON_Delete(one);
		if (!idv)
			goto cleanup;
		cJSON_AddItemToArray(ids, idv);
	}
	cJSON_AddItemToObject(rec, "employee_ids", ids);
	env.record = rec;
	env.tables = &j->a->m->tables;
	env.employee_dn = apply_hook_employee_dn;
	env.ctx = &hc;
	env.unresolved = &unresolved;
	env.err = j->err;
	for (size_t t = 0; t < a->ntmpls; t++)
		if (tmpl_eval(a->tmpls[t], &env, out) < 0)
			goto cleanup;
	vlist_normalize(out);
	rc = 0;
cleanup:
	vlist_free(&unresolved);
	cJSON_Delete(rec);
	return rc;
}

/* Changes that take the member values `gone` out of attribute a of a group
 * holding `cur`; when nothing would be left, the values of a team without
 * members (cn=nobody) take their place. */
static int drop_members(struct job *j, struct changes *c, const struct mapping_attr *a, const struct vlist *cur,
                        const struct vlist *gone)
{
	struct vlist placeholder;
	size_t left = cur ? cur->n : 0;
	int rc = -1;

	vlist_init(&placeholder);
	if (!gone->n)
		return 0;
	for (size_t i = 0; cur && i < cur->n; i++)
		if (vlist_contains(gone, cur->v[i]))
			left--;
	if (apply_changes_add(c, LDAP_MOD_DELETE, a->name, gone) < 0)
		goto cleanup;
	if (left == 0) {
		if (member_values(j, a, NULL, NULL, &placeholder) < 0)
			goto cleanup;
		if (placeholder.n && apply_changes_add(c, LDAP_MOD_ADD, a->name, &placeholder) < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	vlist_free(&placeholder);
	return rc;
}

/* The values of cur that stand for member (by DN, or by RDN value). */
void apply_matching(const struct vlist *cur, const char *dn, const char *rdnval, bool by_rdn, struct vlist *out)
{
	for (size_t i = 0; cur && i < cur->n; i++) {
		bool hit = by_rdn ? (rdnval && strcmp(cur->v[i], rdnval) == 0) : dn_equal(cur->v[i], dn);
		if (hit)
			vlist_push_copy(out, cur->v[i], strlen(cur->v[i]));
	}
}

/* Builds "(&(key=*)(|(a1=v1)(a2=v2)...))" for the member attributes of t,
 * leaving out the groups of groups: (which may carry the same key attribute:
 * their members are settled by rule, not here). */
char *apply_member_filter(const struct mapping *m, const struct mapping_object *t, const char *dn,
                          const char *rdnval)
{
	struct sbuf f;

	sbuf_init(&f);
	sbuf_addf(&f, "(&(%s=*)", t->key_attr);
	for (size_t i = 0; i < m->ngroups; i++) {
		char *mark = ldapw_eq_filter(m->groups[i].key_attr, m->groups[i].key_value);
		if (mark)
			sbuf_addf(&f, "(!%s)", mark);
		free(mark);
	}
	sbuf_adds(&f, "(|");
	for (size_t i = 0; i < t->nattrs; i++) {
		bool by_rdn;
		char *one;
		if (!apply_is_member_attr(&t->attrs[i], &by_rdn) || (by_rdn && !rdnval))
			continue;
		one = ldapw_eq_filter(t->attrs[i].name, by_rdn ? rdnval : dn);
		if (one)
			sbuf_adds(&f, one);
		free(one);
	}
	sbuf_adds(&f, "))");
	return sbuf_detach(&f);
}

const char **apply_member_attr_names(const struct mapping_object *t)
{
	const char **v = calloc(t->nattrs + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; v && i < t->nattrs; i++)
		if (apply_is_member_attr(&t->attrs[i], NULL))
			v[n++] = t->attrs[i].name;
	return v;
}

/* Takes the member dn (rdnval for memberUid-like attributes) out of every
 * managed group. */
static int remove_from_groups_locked(struct job *j, const char *dn, const char *rdnval)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	struct ldapw_entries groups = { 0 };
	struct ldapw_error e;
	const char **names = NULL;
	char *filter = NULL;
	int rc = -1;

	if (!t->present)
		return 0;
	names = apply_member_attr_names(t);
	filter = apply_member_filter(j->a->m, t, dn, rdnval);
	if (!names || !filter)
		goto cleanup;
	if (!names[0]) {
		rc = 0;
		goto cleanup;
	}
	if (ldapw_search(j->a->lw, t->search_base, filter, names, 0, &groups, &e) != LDAP_SUCCESS) {
		apply_failed(j, t->search_base, &e);
		goto cleanup;
	}
	for (size_t g = 0; g < groups.n; g++) {
		struct changes c = { 0 };
		int r = 0;
		for (size_t i = 0; i < t->nattrs && r == 0; i++) {
			bool by_rdn;
			struct vlist gone;
			const struct vlist *cur;
			if (!apply_is_member_attr(&t->attrs[i], &by_rdn))
				continue;
			cur = ldapw_entry_values(&groups.v[g], t->attrs[i].name);
			vlist_init(&gone);
			apply_matching(cur, dn, rdnval, by_rdn, &gone);
			r = drop_members(j, &c, &t->attrs[i], cur, &gone);
			vlist_free(&gone);
		}
		if (r == 0)
			r = apply_op_modify(j, groups.v[g].dn, &c, CAT_MODIFY, "leave group");
		if (r == 0 && c.n && j->plan.n &&
		    !(j->plan.v[j->plan.n - 1].left_group = strdup(groups.v[g].dn)))
			r = -1;
		strmap_put(&j->touched, groups.v[g].dn, NULL);
		apply_changes_free(&c);
		if (r < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	ldapw_entries_free(&groups);
	free(names);
	free(filter);
	return rc;
}

int apply_remove_from_groups(struct job *j, const char *dn, const char *rdnval)
{
	int rc;

	apply_groups_enter(j);
	rc = remove_from_groups_locked(j, dn, rdnval);
	apply_groups_leave(j);
	return rc;
}

/* Adds (or removes) employee emp's member values in group, for team (NULL
 * when only the group is known); the value of a team without members
 * (cn=nobody) leaves when a real member comes. */
int apply_change_membership(struct job *j, const struct ldapw_entry *group, const char *team, const char *emp,
                            bool remove)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	struct changes c = { 0 };
	int rc = -1;

	for (size_t i = 0; i < t->nattrs; i++) {
		const struct mapping_attr *a = &t->attrs[i];
		const struct vlist *cur = ldapw_entry_values(group, a->name);
		struct vlist mine, placeholder, add, gone;
		bool by_rdn;
		int r = 0;
		if (!apply_is_member_attr(a, &by_rdn))
			continue;
		vlist_init(&mine);
		vlist_init(&placeholder);
		vlist_init(&add);
		vlist_init(&gone);
		if (member_values(j, a, team, emp, &mine) < 0 || member_values(j, a, team, NULL, &placeholder) < 0) {
			r = -1;
		} else if (apply_same_set(&mine, &placeholder)) {
			/* the member gives no value of its own (a leaver kept out): only the team's default came */
		} else if (remove) {
			for (size_t k = 0; k < mine.n; k++)
				apply_matching(cur, mine.v[k], mine.v[k], by_rdn, &gone);
			r = drop_members(j, &c, a, cur, &gone);
		} else {
			for (size_t k = 0; k < mine.n; k++) {
				struct vlist hit;
				vlist_init(&hit);
				apply_matching(cur, mine.v[k], mine.v[k], by_rdn, &hit);
				if (!hit.n)
					vlist_push_copy(&add, mine.v[k], strlen(mine.v[k]));
				vlist_free(&hit);
			}
			for (size_t k = 0; add.n && k < placeholder.n; k++)
				if (cur && vlist_contains(cur, placeholder.v[k]) && !vlist_contains(&mine, placeholder.v[k]))
					vlist_push_copy(&gone, placeholder.v[k], strlen(placeholder.v[k]));
			if (gone.n)
				r = apply_changes_add(&c, LDAP_MOD_DELETE, a->name, &gone);
			if (r == 0 && add.n)
				r = apply_changes_add(&c, LDAP_MOD_ADD, a->name, &add);
		}
		vlist_free(&mine);
		vlist_free(&placeholder);
		vlist_free(&add);
		vlist_free(&gone);
		if (r < 0)
			goto cleanup;
	}
	if (c.n == 0) {
		if (strcmp(j->kind, "membership") == 0)
			apply_say(j, "the group is already right: nothing to do");
		rc = 0;
		goto cleanup;
	}
	rc = apply_op_modify(j, group->dn, &c, CAT_MODIFY, remove ? "leave group" : "join group");
cleanup:
	apply_changes_free(&c);
	return rc;
}

/* The group of team id: 1 and *found with it first, 0 when it has none, -1 on failure. */
int apply_team_group(struct job *j, const char *team, struct ldapw_entries *found, const struct ldapw_entry **group)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	cJSON *trec = apply_id_record(team);
	char *key = NULL;
	int rc = -1;

	*group = NULL;
	if (trec && mapping_key(j->a->m, MAPPING_TEAM, trec, &key, j->err) == 0 &&
	    apply_find_by_key(j, t, MAPPING_TEAM, key, found, group) == 0)
		rc = *group != NULL;
	cJSON_Delete(trec);
	free(key);
	return rc;
}

/* A new or returning employee joins the groups of the teams the record lists
 * (team_ids, as enrichment adds it); without that list, a return puts back
 * the groups the termination took them out of. */
static int join_teams_locked(struct job *j, const cJSON *rec, const char *key, bool returning)
{
	static const char *const none[] = { NULL };
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "team_ids"), *it;
	struct vlist left;
	struct sbuf e;
	int rc = 0;

	if (!t->present)
		return 0;
	vlist_init(&left);
	sbuf_init(&e);
	if (returning && j->a->state &&
	    (store_left_groups(j->a->state, key, &left, &e) < 0 ||
	     (j->a->st && left.n && store_forget_left_groups(j->a->st, key, &e) < 0)))
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	if (cJSON_IsArray(ids)) {
		cJSON_ArrayForEach(it, ids) {
			char *team = mapping_id_text(it);
			struct ldapw_entries found = { 0 };
			const struct ldapw_entry *group;
			int got = team ? apply_team_group(j, team, &found, &group) : 0;
			if (got > 0)
				got = apply_change_membership(j, group, team, j->id, false);
			ldapw_entries_free(&found);
			free(team);
			if (got < 0) {
				rc = -1;
				break;
			}
		}
	} else {
		for (size_t i = 0; i < left.n && rc == 0; i++) {
			struct ldapw_entries found = { 0 };
			struct ldapw_error le;
			const char **names = apply_member_attr_names(t);
			int r = names ? ldapw_read(j->a->lw, left.v[i], names[0] ? names : none, &found, &le) : -1;
			if (r == LDAP_SUCCESS && found.n)
				rc = apply_change_membership(j, &found.v[0], NULL, j->id, false);
			else if (r != LDAP_SUCCESS && r != LDAP_NO_SUCH_OBJECT)
				rc = apply_failed(j, left.v[i], &le);
			ldapw_entries_free(&found);
			free(names);
		}
	}
	vlist_free(&left);
	sbuf_free(&e);
	return rc;
}

int apply_join_teams(struct job *j, const cJSON *rec, const char *key, bool returning)
{
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "team_ids");
	int rc;

	/* nothing to join: no need to hold up the other workers' group changes
	 * (the lock, once taken, is kept to the end of the job) */
	if (!j->a->m->obj[MAPPING_TEAM].present || (!returning && cJSON_GetArraySize(ids) == 0))
		return 0;
	apply_groups_enter(j);
	rc = join_teams_locked(j, rec, key, returning);
	apply_groups_leave(j);
	return rc;
}

/* "DN\nattr" (the name folded): what the rewrite of a managed entry has
 * planned, which the search of every entry then leaves alone. */
static void followed_key(struct sbuf *k, const char *dn, const char *attr)
{
	sbuf_addf(k, "%s\n", dn);
	for (const char *c = attr; *c; c++)
		sbuf_addc(k, (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c));
}

int apply_note_followed(struct job *j, const char *dn, const char *attr)
{
	struct sbuf k;
	int rc;

	sbuf_init(&k);
	followed_key(&k, dn, attr);
	rc = k.failed ? -1 : strmap_put(&j->followed, sbuf_str(&k), NULL);
	sbuf_free(&k);
	return rc;
}

static bool was_followed(struct job *j, const char *dn, const char *attr)
{
	struct sbuf k;
	bool yes;

	sbuf_init(&k);
	followed_key(&k, dn, attr);
	yes = strmap_get(&j->followed, sbuf_str(&k)) != NULL;
	sbuf_free(&k);
	return yes;
}

/* Whether attr of e is a rule group's member attribute (e one of the rule's
 * groups): the rule's own changes keep it. */
static bool rule_members(const struct job *j, const struct ldapw_entry *e, const char *attr)
{
	for (size_t g = 0; g < j->a->m->ngroups; g++) {
		const struct mapping_group *r = &j->a->m->groups[g];
		const struct vlist *v = ldapw_entry_values(e, r->key_attr);
		if (strcasecmp(attr, r->member_attr) != 0)
			continue;
		for (size_t i = 0; v && i < v->n; i++)
			if (strcasecmp(v->v[i], r->key_value) == 0)
				return true;
	}
	return false;
}

/* The changes that make one entry's values naming old_dn name new_dn (or
 * drop them, new_dn NULL), but for those the agent's own changes of managed
 * entries and rule groups make. */
static int follow_changes(struct job *j, const struct ldapw_entry *e, const char *old_dn, const char *new_dn,
                          struct changes *c)
{
	const struct vlist *attrs = &j->a->m->refs.attrs;
	struct refs_hit *hits = NULL;
	size_t n = 0;
	int rc = -1;

	if (refs_hits(e, attrs, old_dn, new_dn, &hits, &n) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		struct vlist add;
		int x;
		if (was_followed(j, e->dn, hits[i].attr) || rule_members(j, e, hits[i].attr))
			continue;
		vlist_init(&add);
		x = apply_changes_add(c, LDAP_MOD_DELETE, hits[i].attr, &hits[i].old);
		if (x == 0 && new_dn && !hits[i].holds_new)
			x = vlist_push_copy(&add, new_dn, strlen(new_dn)) < 0 ? -1 : apply_changes_add(c, LDAP_MOD_ADD, hits[i].attr, &add);
		vlist_free(&add);
		if (x < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	refs_hits_free(hits, n);
	return rc;
}

/* Every entry under the references base, the agent's or not, that names
 * old_dn in one of references.attributes: the value follows new_dn, or goes
 * (new_dn NULL: the entry was deleted).  Active Directory does it itself. */
int apply_follow_everywhere(struct job *j, const char *old_dn, const char *new_dn)
{
	const struct vlist *attrs = &j->a->m->refs.attrs;
	const struct ldapw_server *srv;
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	const char **names = NULL;
	const char *base;
	char *filter = NULL;
	int rc = -1;

	if (!attrs->n)
		return 0;
	if (!(srv = ldapw_server(j->a->lw, &e)))
		return apply_failed(j, "the root DSE", &e);
	if (srv->active_directory || !(base = refs_base(&j->a->m->refs, &srv->naming_contexts, old_dn)))
		return 0;
	if (!(filter = refs_filter(attrs, old_dn)) ||
	    !(names = calloc(attrs->n + j->a->m->ngroups + 1, sizeof(*names)))) {
		sbuf_adds(j->err, "out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < attrs->n; i++)
		names[i] = attrs->v[i];
	for (size_t g = 0; g < j->a->m->ngroups; g++) /* to know a rule's groups by their mark */
		names[attrs->n + g] = j->a->m->groups[g].key_attr;
	if (ldapw_search(j->a->lw, base, filter, names, 0, &found, &e) != LDAP_SUCCESS) {
		apply_failed(j, base, &e);
		goto cleanup;
	}
	for (size_t i = 0; i < found.n; i++) {
		struct changes c = { 0 };
		int x = 0;
		if (!strmap_get(&j->touched, found.v[i].dn)) /* this record's change took it out already */
			x = follow_changes(j, &found.v[i], old_dn, new_dn, &c);
		if (x == 0)
			x = apply_op_modify(j, found.v[i].dn, &c, CAT_MODIFY, new_dn ? "follow rename" : "drop reference");
		apply_changes_free(&c);
		if (x < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	ldapw_entries_free(&found);
	free(names);
	free(filter);
	return rc;
}
