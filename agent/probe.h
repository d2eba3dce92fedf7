/*
 * probe: what the directory server does by itself, found out without
 * writing anything (check --online): whether it refuses a leaver's binds
 * under the mapping's termination policy, and who keeps references to
 * renamed and deleted entries.
 *
 * The lock is answered in two steps: the facts are read from the server
 * (its root DSE, its schema, the password policies the service account can
 * read), then a verdict is made from the facts alone, so that it is tested
 * without a server.  References are answered from the facts and one search
 * for the entries the agent does not manage that hold such values.
 *
 * A leaver cannot bind when the entry is deleted, or when terminated.attributes
 * sets, as fixed text, what the server refuses binds for: Active
 * Directory's userAccountControl with the ACCOUNTDISABLE bit (514), 389
 * Directory Server's nsAccountLock: true, OpenLDAP ppolicy's
 * pwdAccountLockedTime: 000001010000Z (which locks only where a password
 * policy with pwdLockout: TRUE applies: slapd does not say which policy is
 * the default, so a readable one is taken as the evidence, and none found
 * is "cannot tell").  loginShell, shadowExpire and the like stop only the
 * logins that read them, never a bind.
 *
 * Memory: struct probe_facts owns its lists (probe_facts_free); messages go
 * to the caller's buffers.
 */
#ifndef FLA_PROBE_H
#define FLA_PROBE_H

#include <stdbool.h>

#include "common/sbuf.h"
#include "common/vlist.h"
#include "config.h"
#include "ldapw.h"
#include "mapping.h"
#include "schema.h"

enum probe_verdict {
	PROBE_YES,
	PROBE_NO,
	PROBE_UNKNOWN, /* the server does not let it be asked */
};

struct probe_facts {
	bool active_directory;         /* the root DSE says Active Directory (Samba AD too) */
	bool has_pwd_locked_time;      /* the schema has pwdAccountLockedTime (slapd: ppolicy loaded) */
	bool has_ns_account_lock;      /* the schema has nsAccountLock (389 Directory Server) */
	struct vlist lockout_policies; /* readable pwdPolicy entries with pwdLockout: TRUE */
	struct vlist naming_contexts;
};

void probe_facts_init(struct probe_facts *f);
void probe_facts_free(struct probe_facts *f);
/* Reads the facts the verdicts need: the root DSE, s (the schema, read
 * already), and the password policies under each naming context. */
int probe_facts_read(struct ldapw *lw, const struct schema *s, struct probe_facts *f, struct ldapw_error *err);

/* Whether a leaver of o (employees) can no longer bind: YES and how in
 * how; NO or UNKNOWN and why, with the fix for this server. */
enum probe_verdict probe_leaver_lock(const struct mapping_object *o, const struct probe_facts *f, struct sbuf *how);

/* Who keeps references to the entries the agent renames, moves and
 * deletes (refs.h), said in how: the server (Active Directory: YES), the
 * agent (NO: with the entries it does not manage that hold such values
 * under the references base, which it searches for: the service account
 * needs write access there), or nobody (references.attributes is empty:
 * UNKNOWN).  *worth: whether a person needs to hear it (the server keeps
 * them, nobody does, or entries the agent does not manage hold some);
 * *failed when the search failed (err). */
enum probe_verdict probe_references(struct ldapw *lw, const struct mapping *m, const struct probe_facts *f,
                                    struct sbuf *how, struct ldapw_error *err, int *failed, bool *worth);

/* Whether a refused initial password can leave half an account (said in
 * how): NO when the password travels in the add itself; UNKNOWN with
 * Password Modify, which no server here can be asked about beforehand (the
 * agent then takes the add back). */
enum probe_verdict probe_passwords(const struct mapping_object *o, const struct config *cfg, struct sbuf *how);

#endif
