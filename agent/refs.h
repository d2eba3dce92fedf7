/*
 * refs: the values that name an entry, in whatever entries hold them.
 *
 * When the agent renames, moves or deletes an entry, the values naming it
 * (member, uniqueMember, manager, secretary, seeAlso, owner by default:
 * the mapping's references.attributes) in every entry under the references
 * base (references.base, else the server's naming context that holds the
 * entry) follow it to its new DN, or go with it.  That covers the groups
 * and entries a site made by hand, which the agent otherwise never touches:
 * a hand-made cn=vpn-users must not keep a leaver's old DN, nor a person
 * who moved office lose their place in it.  Active Directory keeps such
 * references itself, and there the agent leaves them to it.
 *
 * This module answers the questions without talking to the server: which
 * base, which filter, and which values of an entry the search found name
 * the entry; apply plans the changes and the directory makes them.
 *
 * Memory: refs_filter() returns a malloc'd string; a struct refs_hit owns
 * its values (refs_hits_free) and borrows its attribute name from attrs.
 */
#ifndef FLA_REFS_H
#define FLA_REFS_H

#include <stdbool.h>
#include <stddef.h>

#include "common/vlist.h"
#include "ldapw.h"
#include "mapping.h"

/* Where to look for references to dn: references.base, else the longest of
 * the server's naming contexts that holds dn, else NULL (nowhere known). */
const char *refs_base(const struct mapping_references *r, const struct vlist *naming_contexts, const char *dn);

/* "(|(member=DN)(manager=DN)...)" over attrs, the DN escaped; NULL when
 * attrs is empty or memory runs out. */
char *refs_filter(const struct vlist *attrs, const char *dn);

/* The values of one attribute of an entry that name the old DN. */
struct refs_hit {
	const char *attr;  /* as attrs names it */
	struct vlist old;  /* the values as the entry holds them */
	bool holds_new;    /* the attribute already names the new DN too */
};

/* For each attribute of attrs, the values of e naming old_dn (compared as
 * DNs, by libldap); whether it names new_dn (NULL: none) already.  0 and
 * *out (n of them, NULL when none), or -1 when memory runs out. */
int refs_hits(const struct ldapw_entry *e, const struct vlist *attrs, const char *old_dn, const char *new_dn,
              struct refs_hit **out, size_t *n);
void refs_hits_free(struct refs_hit *h, size_t n);

#endif
