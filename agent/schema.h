/*
 * schema: the directory's own schema, read once, and a mapping checked
 * against it (check --online).
 *
 * schema_read() reads the root DSE's subschemaSubentry and that entry's
 * objectClasses and attributeTypes, parsed by libldap.  schema_check()
 * names, each at its place in the mapping file, what the server would
 * refuse one record at a time: an object class or an attribute the schema
 * lacks, an attribute some class of the entry requires (MUST) that the
 * mapping does not set, a key attribute with no equality rule (the agent
 * finds entries by it; checked where the schema names matching rules at
 * all, which Active Directory's does not).  Attributes the server sets itself (no user
 * modification, operational, or Active Directory's instanceType,
 * nTSecurityDescriptor, objectCategory, objectSid) are not asked of the
 * mapping.
 *
 * Memory: a struct schema owns what libldap parsed; schema_free() releases it.
 */
#ifndef FLA_SCHEMA_H
#define FLA_SCHEMA_H

#include "common/diag.h"
#include "ldapw.h"
#include "mapping.h"

struct schema;

int schema_read(struct ldapw *lw, struct schema **out, struct ldapw_error *err);
void schema_free(struct schema *s);
/* Whether the schema has an attribute type (a class) of this name or OID. */
bool schema_has_attr(const struct schema *s, const char *name);
bool schema_has_class(const struct schema *s, const char *name);
/* Adds one diag entry (at the mapping file's place) per problem; returns how many. */
size_t schema_check(const struct schema *s, const struct mapping *m, struct diag *d);

#endif
