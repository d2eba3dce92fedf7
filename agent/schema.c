#include "build.h"

#include "schema.h"

#include <ldap.h>
#include <ldap_schema.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct schema {
	LDAPObjectClass **oc;
	size_t noc;
	LDAPAttributeType **at;
	size_t nat;
	bool names_rules; /* some type names an equality rule (Active Directory's name none: matching follows the syntax) */
};

/* What Active Directory requires of every object and sets itself. */
static const char *const set_by_server[] = { "instanceType", "nTSecurityDescriptor", "objectCategory", "objectSid",
	                                     "objectClass", NULL };

/* ---- reading --------------------------------------------------------------- */

static int parse_all(const struct vlist *defs, struct schema *s, bool classes)
{
	for (size_t i = 0; i < defs->n; i++) {
		int code = 0;
		const char *where = NULL;
		if (classes) {
			LDAPObjectClass *oc = ldap_str2objectclass(defs->v[i], &code, &where, LDAP_SCHEMA_ALLOW_ALL);
			LDAPObjectClass **v;
			if (!oc)
				continue; /* a definition libldap cannot read names nothing the mapping can use */
			if (!(v = realloc(s->oc, (s->noc + 1) * sizeof(*v)))) {
				ldap_objectclass_free(oc);
				return -1;
			}
			s->oc = v;
			s->oc[s->noc++] = oc;
		} else {
			LDAPAttributeType *at = ldap_str2attributetype(defs->v[i], &code, &where, LDAP_SCHEMA_ALLOW_ALL);
			LDAPAttributeType **v;
			if (!at)
				continue;
			if (!(v = realloc(s->at, (s->nat + 1) * sizeof(*v)))) {
				ldap_attributetype_free(at);
				return -1;
			}
			s->at = v;
			s->at[s->nat++] = at;
			s->names_rules |= at->at_equality_oid != NULL;
		}
	}
	return 0;
}

int schema_read(struct ldapw *lw, struct schema **out, struct ldapw_error *err)
{
	static const char *const dse_attrs[] = { "subschemaSubentry", NULL };
	static const char *const defs[] = { "objectClasses", "attributeTypes", NULL };
	struct ldapw_entries dse = { 0 }, sub = { 0 };
	const struct vlist *where, *ocs, *ats;
	struct schema *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return LDAP_NO_MEMORY;
	rc = ldapw_read(lw, "", dse_attrs, &dse, err);
	where = rc == LDAP_SUCCESS && dse.n ? ldapw_entry_values(&dse.v[0], "subschemaSubentry") : NULL;
	if (rc == LDAP_SUCCESS && (!where || !where->n)) {
		snprintf(err->text, sizeof(err->text), "the server names no subschema entry in its root DSE");
		snprintf(err->op, sizeof(err->op), "schema");
		rc = err->rc = LDAP_NO_SUCH_OBJECT;
	}
	if (rc == LDAP_SUCCESS)
		rc = ldapw_read(lw, where->v[0], defs, &sub, err);
	if (rc == LDAP_SUCCESS && !sub.n) {
		snprintf(err->text, sizeof(err->text), "the subschema entry %s cannot be read", where->v[0]);
		snprintf(err->op, sizeof(err->op), "schema");
		rc = err->rc = LDAP_INSUFFICIENT_ACCESS;
	}
	if (rc == LDAP_SUCCESS) {
		ocs = ldapw_entry_values(&sub.v[0], "objectClasses");
		ats = ldapw_entry_values(&sub.v[0], "attributeTypes");
		if ((ocs && parse_all(ocs, s, true) < 0) || (ats && parse_all(ats, s, false) < 0))
			rc = LDAP_NO_MEMORY;
	}
	ldapw_entries_free(&dse);
	ldapw_entries_free(&sub);
	if (rc != LDAP_SUCCESS) {
		schema_free(s);
		return rc;
	}
	*out = s;
	return LDAP_SUCCESS;
}

void schema_free(struct schema *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->noc; i++)
		ldap_objectclass_free(s->oc[i]);
	for (size_t i = 0; i < s->nat; i++)
		ldap_attributetype_free(s->at[i]);
	free(s->oc);
	free(s->at);
	free(s);
}

/* ---- looking up -------------------------------------------------------------- */

static bool named(const char *oid, char **names, const char *name, size_t len)
{
	if (oid && strlen(oid) == len && strncasecmp(oid, name, len) == 0)
		return true;
	for (size_t i = 0; names && names[i]; i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
			return true;
	return false;
}

static const LDAPObjectClass *find_class(const struct schema *s, const char *name)
{
	for (size_t i = 0; i < s->noc; i++)
		if (named(s->oc[i]->oc_oid, s->oc[i]->oc_names, name, strlen(name)))
			return s->oc[i];
	return NULL;
}

/* By name or OID; options (";binary", ";lang-es") are not part of the type. */
static const LDAPAttributeType *find_attr(const struct schema *s, const char *name)
{
	size_t len = strcspn(name, ";");

	for (size_t i = 0; i < s->nat; i++)
		if (named(s->at[i]->at_oid, s->at[i]->at_names, name, len))
			return s->at[i];
	return NULL;
}

bool schema_has_attr(const struct schema *s, const char *name)
{
	return find_attr(s, name) != NULL;
}

bool schema_has_class(const struct schema *s, const char *name)
{
	return find_class(s, name) != NULL;
}

static const char *attr_name(const LDAPAttributeType *at)
{
	return at->at_names && at->at_names[0] ? at->at_names[0] : at->at_oid;
}

/* The equality rule, the type's own or inherited (SUP). */
static const char *equality_of(const struct schema *s, const LDAPAttributeType *at)
{
	for (int depth = 0; at && depth < 16; depth++) {
		if (at->at_equality_oid)
			return at->at_equality_oid;
		at = at->at_sup_oid ? find_attr(s, at->at_sup_oid) : NULL;
	}
	return NULL;
}

static bool server_sets(const LDAPAttributeType *at)
{
	if (at->at_no_user_mod || at->at_usage != LDAP_SCHEMA_USER_APPLICATIONS)
		return true;
	for (size_t i = 0; set_by_server[i]; i++)
		if (named(at->at_oid, at->at_names, set_by_server[i], strlen(set_by_server[i])))
			return true;
	return false;
}

/* ---- checking ------------------------------------------------------------------ */

static void at_place(struct diag *d, const char *file, const struct mapping_place *p, const char *msg)
{
	diag_add(d, file, p->line, p->column, p->key, "%s", msg);
}

static bool mapping_sets(const struct schema *s, const struct mapping_object *o, const LDAPAttributeType *need)
{
	for (size_t i = 0; i < o->nattrs; i++)
		if (find_attr(s, o->attrs[i].name) == need)
			return true;
	return false;
}

/* What one section's MUST check has said already: each missing attribute once. */
struct said {
	const LDAPAttributeType *v[64];
	size_t n;
};

static bool say_once(struct said *said, const LDAPAttributeType *at)
{
	for (size_t i = 0; i < said->n; i++)
		if (said->v[i] == at)
			return false;
	if (said->n < sizeof(said->v) / sizeof(said->v[0]))
		said->v[said->n++] = at;
	return true;
}

/* Every MUST of class oc (and of its superclasses) the mapping leaves unset,
 * each said once, at the first class listed that requires it. */
static size_t check_musts(const struct schema *s, const struct mapping *m, const struct mapping_object *o,
                          const LDAPObjectClass *oc, const char *as_written, const struct mapping_place *p,
                          int depth, struct said *said, struct diag *d)
{
	size_t n = 0;

	for (size_t i = 0; oc->oc_at_oids_must && oc->oc_at_oids_must[i]; i++) {
		const LDAPAttributeType *need = find_attr(s, oc->oc_at_oids_must[i]);
		char msg[512];
		if (!need || server_sets(need) || mapping_sets(s, o, need) || !say_once(said, need))
			continue;
		snprintf(msg, sizeof(msg),
		         "%s requires %s, which the mapping's attributes do not set (the server would refuse every new "
		         "entry)",
		         as_written, attr_name(need));
		at_place(d, m->path, p, msg);
		n++;
	}
	for (size_t i = 0; depth < 16 && oc->oc_sup_oids && oc->oc_sup_oids[i]; i++) {
		const LDAPObjectClass *sup = find_class(s, oc->oc_sup_oids[i]);
		if (sup && sup != oc)
			n += check_musts(s, m, o, sup, as_written, p, depth + 1, said, d);
	}
	return n;
}

static size_t check_attrs(const struct schema *s, const struct mapping *m, const struct mapping_attr *v, size_t nv,
                          struct diag *d)
{
	size_t n = 0;

	for (size_t i = 0; i < nv; i++) {
		char msg[512];
		if (find_attr(s, v[i].name))
			continue;
		snprintf(msg, sizeof(msg),
		         "the server's schema has no attribute \"%s\" (the server would refuse every entry that has it: "
		         "Undefined attribute type)",
		         v[i].name);
		at_place(d, m->path, &v[i].at, msg);
		n++;
	}
	return n;
}

/* A rule of groups: its object classes and the attributes it writes are the server's. */
static size_t check_group(const struct schema *s, const struct mapping *m, const struct mapping_group *g,
                          struct diag *d)
{
	const char *const attrs[] = { g->rdn_attr, g->key_attr, g->member_attr };
	char msg[512];
	size_t n = 0;

	for (size_t i = 0; i < g->object_classes.n; i++) {
		if (find_class(s, g->object_classes.v[i]))
			continue;
		snprintf(msg, sizeof(msg),
		         "the server's schema has no object class \"%s\" (the server would refuse the groups of this "
		         "rule: Object class violation)",
		         g->object_classes.v[i]);
		at_place(d, m->path, &g->at, msg);
		n++;
	}
	for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++) {
		if (!attrs[i] || find_attr(s, attrs[i]))
			continue;
		snprintf(msg, sizeof(msg),
		         "the server's schema has no attribute \"%s\" (the server would refuse the groups of this rule: "
		         "Undefined attribute type)",
		         attrs[i]);
		at_place(d, m->path, &g->at, msg);
		n++;
	}
	return n;
}

size_t schema_check(const struct schema *s, const struct mapping *m, struct diag *d)
{
	size_t n = 0;

	for (size_t i = 0; i < m->ngroups; i++)
		n += check_group(s, m, &m->groups[i], d);

	for (int k = 0; k < 2; k++) {
		const struct mapping_object *o = &m->obj[k];
		const LDAPAttributeType *key;
		struct said said = { .n = 0 };
		if (!o->present)
			continue;
		for (size_t i = 0; i < o->object_classes.n; i++) {
			const LDAPObjectClass *oc = find_class(s, o->object_classes.v[i]);
			char msg[512];
			if (!oc) {
				snprintf(msg, sizeof(msg),
				         "the server's schema has no object class \"%s\" (the server would refuse every new "
				         "entry: Object class violation)",
				         o->object_classes.v[i]);
				at_place(d, m->path, &o->class_at[i], msg);
				n++;
				continue;
			}
			n += check_musts(s, m, o, oc, o->object_classes.v[i], &o->class_at[i], 0, &said, d);
		}
		n += check_attrs(s, m, o->attrs, o->nattrs, d);
		n += check_attrs(s, m, o->term_attrs, o->nterm_attrs, d);
		key = o->key_attr ? find_attr(s, o->key_attr) : NULL;
		if (key && s->names_rules && !equality_of(s, key)) {
			char msg[512];
			snprintf(msg, sizeof(msg),
			         "%s has no equality matching rule in the server's schema, and the agent finds entries by "
			         "it: choose another key attribute",
			         o->key_attr);
			at_place(d, m->path, &o->key_at, msg);
			n++;
		}
	}
	return n;
}
