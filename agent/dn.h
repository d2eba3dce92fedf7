/*
 * dn: distinguished names, built and checked by libldap, never by pasting
 * strings.
 *
 * dn_build() makes "<attr>=<value>,<base>": the value goes into an AVA of
 * type LDAP_AVA_STRING and ldap_dn2bv() writes the DN, escaping whatever
 * RFC 4514 requires (,+"\<>;= # at the start, leading and trailing spaces)
 * and leaving UTF-8 as it is (LDAP_DN_PRETTY).
 *
 * Memory: the returned strings are malloc'd and owned by the caller.
 */
#ifndef FLA_DN_H
#define FLA_DN_H

#include <stdbool.h>
#include <stddef.h>

/* Returns 0 and a malloc'd DN, or -1 with the reason in err. */
int dn_build(const char *attr, const char *value, const char *base, char **out, char *err, size_t errlen);

/* Whether s parses as an LDAPv3 DN. */
bool dn_valid(const char *s);

/* The value of the first RDN's first AVA, malloc'd (NULL when s is not a DN). */
char *dn_rdn_value(const char *s);

/* The DN without its first RDN ("" for a one-RDN DN), malloc'd; NULL when
 * s is not a DN. */
char *dn_parent(const char *s);

/* The first RDN as a string ("uid=a"), malloc'd; NULL when s is not a DN. */
char *dn_first_rdn(const char *s);

/* Whether two DNs are the same after normalisation by libldap (case of
 * attribute names, spacing, escaping); attribute values compare exactly. */
bool dn_equal(const char *a, const char *b);

/* Whether dn is base or below it (normalised as dn_equal does). */
bool dn_under(const char *dn, const char *base);

#endif
