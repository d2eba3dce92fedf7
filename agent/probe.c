/* probe: see probe.h. */
#include "build.h"

#include "probe.h"

#include "refs.h"

#include <ldap.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PERMANENT_LOCK "000001010000Z" /* ppolicy: locked until an administrator (or the agent) unlocks */
#define ACCOUNTDISABLE 0x2L            /* userAccountControl */

void probe_facts_init(struct probe_facts *f)
{
	memset(f, 0, sizeof(*f));
	vlist_init(&f->lockout_policies);
	vlist_init(&f->naming_contexts);
}

void probe_facts_free(struct probe_facts *f)
{
	vlist_free(&f->lockout_policies);
	vlist_free(&f->naming_contexts);
}

int probe_facts_read(struct ldapw *lw, const struct schema *s, struct probe_facts *f, struct ldapw_error *err)
{
	static const char *const none[] = { "1.1", NULL };
	const struct ldapw_server *srv = ldapw_server(lw, err);

	if (!srv)
		return -1;
	f->active_directory = srv->active_directory;
	f->has_pwd_locked_time = schema_has_attr(s, "pwdAccountLockedTime");
	f->has_ns_account_lock = schema_has_attr(s, "nsAccountLock");
	for (size_t i = 0; i < srv->naming_contexts.n; i++)
		if (vlist_push_copy(&f->naming_contexts, srv->naming_contexts.v[i], strlen(srv->naming_contexts.v[i])) < 0)
			return -1;
	if (!f->has_pwd_locked_time || !schema_has_class(s, "pwdPolicy"))
		return 0;
	for (size_t i = 0; i < srv->naming_contexts.n; i++) {
		struct ldapw_entries found = { 0 };
		int rc = ldapw_search(lw, srv->naming_contexts.v[i], "(&(objectClass=pwdPolicy)(pwdLockout=TRUE))", none, 0,
		                      &found, err);
		if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT && rc != LDAP_INSUFFICIENT_ACCESS)
			return -1;
		for (size_t k = 0; k < found.n; k++)
			if (vlist_push_copy(&f->lockout_policies, found.v[k].dn, strlen(found.v[k].dn)) < 0) {
				ldapw_entries_free(&found);
				return -1;
			}
		ldapw_entries_free(&found);
	}
	return 0;
}

/* The fixed values terminated.attributes gives attr (case aside), or false. */
static bool fixed_values(const struct mapping_object *o, const char *attr, struct vlist *out)
{
	for (size_t i = 0; i < o->nterm_attrs; i++)
		if (strcasecmp(o->term_attrs[i].name, attr) == 0)
			return mapping_attr_literal(&o->term_attrs[i], out);
	return false;
}

static bool disables_ad(const struct vlist *v)
{
	for (size_t i = 0; i < v->n; i++) {
		char *end;
		long flags = strtol(v->v[i], &end, 10);
		if (*v->v[i] && !*end && (flags & ACCOUNTDISABLE))
			return true;
	}
	return false;
}

static bool holds_nocase(const struct vlist *v, const char *s)
{
	for (size_t i = 0; i < v->n; i++)
		if (strcasecmp(v->v[i], s) == 0)
			return true;
	return false;
}

/* What this server refuses binds for, as a line of terminated.attributes. */
static void fix_for(const struct probe_facts *f, struct sbuf *how)
{
	if (f->active_directory)
		sbuf_adds(how, "set userAccountControl: \"514\" under terminated.attributes (or terminated.action: delete)");
	else if (f->has_ns_account_lock)
		sbuf_adds(how, "set nsAccountLock: \"true\" under terminated.attributes (or terminated.action: delete)");
	else if (f->has_pwd_locked_time)
		sbuf_adds(how, "set pwdAccountLockedTime: \"" PERMANENT_LOCK "\" under terminated.attributes, with a default "
		               "password policy that has pwdLockout: TRUE (or terminated.action: delete)");
	else
		sbuf_adds(how, "on OpenLDAP, load the ppolicy overlay with a default password policy that has pwdLockout: "
		               "TRUE and set pwdAccountLockedTime: \"" PERMANENT_LOCK "\" under terminated.attributes; or "
		               "terminated.action: delete");
}

enum probe_verdict probe_leaver_lock(const struct mapping_object *o, const struct probe_facts *f, struct sbuf *how)
{
	struct vlist v;
	enum probe_verdict verdict = PROBE_NO;

	if (o->action == MAPPING_DELETE) {
		sbuf_adds(how, "leavers are deleted (terminated.action: delete)");
		return PROBE_YES;
	}
	vlist_init(&v);
	if (fixed_values(o, "userAccountControl", &v) && disables_ad(&v)) {
		sbuf_adds(how, "userAccountControl marks the account disabled");
		verdict = PROBE_YES;
		goto cleanup;
	}
	vlist_clear(&v);
	if (f->has_ns_account_lock && fixed_values(o, "nsAccountLock", &v) && holds_nocase(&v, "true")) {
		sbuf_adds(how, "nsAccountLock: true (the server refuses the account's binds)");
		verdict = PROBE_YES;
		goto cleanup;
	}
	vlist_clear(&v);
	if (fixed_values(o, "pwdAccountLockedTime", &v) && holds_nocase(&v, PERMANENT_LOCK)) {
		if (!f->has_pwd_locked_time) {
			sbuf_adds(how, "leavers could still log in: terminated.attributes sets pwdAccountLockedTime, which this "
			               "server does not know (the ppolicy overlay is not loaded), so every termination would be "
			               "refused and the leaver keep their access; load the overlay, with a default password "
			               "policy that has pwdLockout: TRUE");
		} else if (f->lockout_policies.n) {
			sbuf_addf(how, "pwdAccountLockedTime: " PERMANENT_LOCK " (the password policy %s has pwdLockout: TRUE; it "
			               "must be the one ppolicy_default names, or the leavers' own)",
			          f->lockout_policies.v[0]);
			verdict = PROBE_YES;
		} else {
			sbuf_adds(how, "pwdAccountLockedTime locks only where a password policy with pwdLockout: TRUE applies, "
			               "and no password policy the service account can read has it: unless the overlay's "
			               "default policy (ppolicy_default) sets pwdLockout: TRUE, leavers can still bind");
			verdict = PROBE_UNKNOWN;
		}
		goto cleanup;
	}
	sbuf_adds(how, "leavers could still log in: nothing under terminated makes the server refuse their binds "
	               "(attributes such as loginShell or shadowExpire stop only the logins that read them, and "
	               "a move only changes the DN); ");
	fix_for(f, how);
cleanup:
	vlist_free(&v);
	return verdict;
}

/* "(!(employeeNumber=*))(!(businessCategory=factorial-team-*))...": not one
 * of the agent's own entries (by their key attributes, and the marks of the
 * rules' groups). */
static void not_managed(const struct mapping *m, struct sbuf *f)
{
	for (int k = 0; k < 2; k++)
		if (m->obj[k].present)
			sbuf_addf(f, "(!(%s=*))", m->obj[k].key_attr);
	for (size_t g = 0; g < m->ngroups; g++) {
		char *one = ldapw_eq_filter(m->groups[g].key_attr, m->groups[g].key_value);
		if (one)
			sbuf_addf(f, "(!%s)", one);
		else
			f->failed = true;
		free(one);
	}
}

enum probe_verdict probe_references(struct ldapw *lw, const struct mapping *m, const struct probe_facts *f,
                                    struct sbuf *how, struct ldapw_error *err, int *failed, bool *worth)
{
	static const char *const none[] = { "1.1", NULL };
	const struct mapping_object *o = m->obj[MAPPING_EMPLOYEE].present ? &m->obj[MAPPING_EMPLOYEE] : &m->obj[MAPPING_TEAM];
	const char *where = o->search_base ? o->search_base : o->base;
	const char *base = where ? refs_base(&m->refs, &f->naming_contexts, where) : m->refs.base;
	struct ldapw_entries found = { 0 };
	struct sbuf filter;
	int rc;

	*failed = 0;
	*worth = true;
	if (!m->refs.attrs.n) {
		sbuf_adds(how, "not followed by the agent (references.attributes is empty): values naming a renamed or "
		               "deleted entry keep its old DN unless the server rewrites them");
		return PROBE_UNKNOWN;
	}
	if (f->active_directory) {
		sbuf_adds(how, "kept by the server itself (Active Directory rewrites member, manager and the like when an "
		               "entry is renamed, moved or deleted)");
		return PROBE_YES;
	}
	sbuf_adds(how, "renames, moves and deletions are followed by the agent in ");
	for (size_t i = 0; i < m->refs.attrs.n; i++)
		sbuf_addf(how, "%s%s", i ? ", " : "", m->refs.attrs.v[i]);
	if (!base) {
		sbuf_adds(how, " (but the server names no naming context that holds the managed entries: set "
		               "references.base)");
		return PROBE_NO;
	}
	sbuf_addf(how, " under %s", base);
	*worth = false; /* unless something below needs a person's attention */
	sbuf_init(&filter);
	sbuf_adds(&filter, "(&(|");
	for (size_t i = 0; i < m->refs.attrs.n; i++)
		sbuf_addf(&filter, "(%s=*)", m->refs.attrs.v[i]);
	sbuf_addc(&filter, ')');
	not_managed(m, &filter);
	sbuf_addc(&filter, ')');
	rc = filter.failed ? LDAP_NO_MEMORY : ldapw_search(lw, base, sbuf_str(&filter), none, 0, &found, err);
	if (rc == LDAP_SIZELIMIT_EXCEEDED || rc == LDAP_ADMINLIMIT_EXCEEDED) {
		*worth = true;
		sbuf_adds(how, "; more entries the agent does not manage hold such values than the server lets it count: "
		               "the service account needs write access to those attributes wherever they are");
	} else if (rc != LDAP_SUCCESS) {
		*failed = 1;
	} else if (found.n) {
		*worth = true;
		sbuf_addf(how, "; %zu %s the agent does not manage %s such values (", found.n,
		          found.n == 1 ? "entry" : "entries", found.n == 1 ? "holds" : "hold");
		for (size_t i = 0; i < found.n && i < 3; i++)
			sbuf_addf(how, "%s%s", i ? "; " : "", found.v[i].dn);
		sbuf_addf(how, "%s): the service account needs write access to those attributes there",
		          found.n > 3 ? "; ..." : "");
	}
	ldapw_entries_free(&found);
	sbuf_free(&filter);
	return PROBE_NO;
}

enum probe_verdict probe_passwords(const struct mapping_object *o, const struct config *cfg, struct sbuf *how)
{
	const char *who = cfg->ldap.bind_dn ? cfg->ldap.bind_dn : "the service account";
	const char *where = o->base ? o->base : o->base_rest;

	if (o->password_method != MAPPING_PASSWORD_MODIFY) {
		sbuf_addf(how, "set in the add itself (%s): a refused password refuses the whole entry",
		          o->password_method == MAPPING_PASSWORD_UNICODEPWD ? "unicodePwd" : "userPassword");
		return PROBE_NO;
	}
	sbuf_addf(how, "cannot tell whether %s may set passwords under %s: the server does not say what an account "
	               "may write before it tries; a new entry is made locked (its terminated.attributes), and a "
	               "refused password takes it back, the delivery failing with the server's reason (on OpenLDAP: "
	               "`access to dn.subtree=\"%s\" attrs=userPassword by dn.exact=\"%s\" =w`)",
	          who, where ? where : "the base", where ? where : "BASE", who);
	return PROBE_UNKNOWN;
}
