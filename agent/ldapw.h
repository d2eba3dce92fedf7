/*
 * ldapw: the agent's connection to the directory, on libldap.
 *
 * It takes away the set-up a sysadmin expects to be right without thinking
 * about it: LDAPv3; ldap://, ldaps:// and ldapi:// (several URIs are tried in
 * turn by libldap); StartTLS; certificates verified by default against the
 * configured CA file; network and operation timeouts; a simple bind whose
 * password is read from its file for the bind and wiped right after, or SASL
 * EXTERNAL (typically over ldapi://); no referral chasing.  When the server
 * went away, the caller closes the handle and opens a new one.
 *
 * Operations return an LDAP result code; on failure the struct ldapw_error
 * holds the code, the server's diagnostic message and the operation, for a
 * message that names what failed (the caller adds employee id and DN).
 *
 * Memory: an ldapw owns its LDAP handle and copies of what it was opened
 * with (never the password).  Search results are handed to the caller as
 * struct ldapw_entry lists it frees with ldapw_entries_free().
 */
#ifndef FLA_LDAPW_H
#define FLA_LDAPW_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "common/sbuf.h"
#include "common/vlist.h"

struct ldapw;

struct ldapw_error {
	int rc;
	unsigned long ad_code; /* Active Directory's Windows error code from the message ("00002035: ..."), or 0 */
	char op[32];
	char text[1024]; /* "Invalid credentials (49): diagnostic message" */
};

struct ldapw_attr {
	char *name;
	struct vlist values;
};

struct ldapw_entry {
	char *dn;
	struct ldapw_attr *attrs;
	size_t nattrs;
};

struct ldapw_entries {
	struct ldapw_entry *v;
	size_t n;
};

/* One change of a modify (or one attribute of an add). */
struct ldapw_mod {
	int op; /* LDAP_MOD_ADD, LDAP_MOD_DELETE, LDAP_MOD_REPLACE */
	const char *attr;
	const struct vlist *values; /* NULL or empty: the whole attribute (delete) */
};

/* Connects and binds as the configuration says. */
int ldapw_open(const struct config *cfg, struct ldapw **out, struct ldapw_error *err);
void ldapw_close(struct ldapw *lw);
/* Whether the connection still looks open, without sending anything: 1 when
 * the socket is quiet, 0 when the server closed it (or it failed), -1 when
 * data is waiting that only a request can explain (ask with a read). */
int ldapw_alive(struct ldapw *lw);
/* Whether an error means the connection is gone (server down, timeout). */
bool ldapw_error_is_connection(const struct ldapw_error *err);

/* Searches base (subtree) with filter; attrs NULL-terminated (NULL: all
 * user attributes).  sizelimit 0: no limit. */
int ldapw_search(struct ldapw *lw, const char *base, const char *filter, const char *const *attrs, int sizelimit,
                 struct ldapw_entries *out, struct ldapw_error *err);
/* The same as ldapw_search, but in pages of page_size entries (RFC 2696
 * paged results), for reading a whole managed subtree in one pass. */
int ldapw_search_paged(struct ldapw *lw, const char *base, const char *filter, const char *const *attrs,
                       int page_size, struct ldapw_entries *out, struct ldapw_error *err);

/* The same, whatever the server's size limit for this account: a read that
 * hits it is done again in slices by the first characters of slice_attr
 * (logged once, with how to lift the limit).  Every entry or an error,
 * never a part: where no slicing stays under the limit, the error says what
 * to change on the server.  slice_attr NULL: no slicing. */
int ldapw_search_all(struct ldapw *lw, const char *base, const char *filter, const char *slice_attr,
                     const char *const *attrs, int page_size, struct ldapw_entries *out, struct ldapw_error *err);

/* Reads one entry by DN (base scope); *found is false when it does not exist. */
int ldapw_read(struct ldapw *lw, const char *dn, const char *const *attrs, struct ldapw_entries *out,
               struct ldapw_error *err);
void ldapw_entries_free(struct ldapw_entries *e);
const struct vlist *ldapw_entry_values(const struct ldapw_entry *e, const char *attr);

int ldapw_add(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n, struct ldapw_error *err);
/* How an initial password reaches a new entry. */
enum ldapw_password_method {
	LDAPW_PASSWORD_MODIFY,     /* the Password Modify extended operation (RFC 3062), after the add */
	LDAPW_PASSWORD_UNICODEPWD, /* Active Directory: unicodePwd (UTF-16LE, quoted) in the add itself, so
	                            * that the account may be enabled by the same add */
	LDAPW_PASSWORD_USERPASSWORD, /* userPassword in the add itself, hashed by the server (389 Directory
	                              * Server's password storage scheme) */
};
/* ldapw_add with an initial password (the caller's; nothing here keeps a
 * copy, and the encoded value is wiped once sent).  With
 * LDAPW_PASSWORD_MODIFY it is the add, then ldapw_set_password(): a
 * failure of the second leaves the entry without its password (apply makes
 * the two steps itself, and takes the add back). */
int ldapw_add_password(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n,
                       enum ldapw_password_method method, const char *password, struct ldapw_error *err);
/* The Password Modify extended operation (RFC 3062) on dn, as the service account. */
int ldapw_set_password(struct ldapw *lw, const char *dn, const char *password, struct ldapw_error *err);
/* An add sent without waiting for its answer (sync pipelines its adds);
 * ldapw_next_result() collects the answers, in whatever order they come. */
int ldapw_add_async(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n, int *msgid,
                    struct ldapw_error *err);
/* Waits for the answer to any request sent asynchronously: *msgid says which;
 * returns its result code (err filled when it is not success). */
int ldapw_next_result(struct ldapw *lw, int *msgid, struct ldapw_error *err);

int ldapw_modify(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n, struct ldapw_error *err);
int ldapw_rename(struct ldapw *lw, const char *dn, const char *newrdn, const char *newsuperior,
                 struct ldapw_error *err);
int ldapw_delete(struct ldapw *lw, const char *dn, struct ldapw_error *err);

/* What the server says of itself in its root DSE, read at the first call and
 * kept with the connection (owned by it). */
struct ldapw_server {
	struct vlist naming_contexts;
	bool active_directory; /* supportedCapabilities names Active Directory (Samba AD too) */
	bool ppolicy_control;  /* supportedControl names the password policy control (slapd: ppolicy loaded) */
};
/* NULL (err) when the root DSE cannot be read. */
const struct ldapw_server *ldapw_server(struct ldapw *lw, struct ldapw_error *err);

/* "(attr=value)" with the value escaped by ldap_bv2escaped_filter_value. */
char *ldapw_eq_filter(const char *attr, const char *value);

#endif
