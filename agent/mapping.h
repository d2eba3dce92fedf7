/*
 * mapping: the sysadmin's mapping file, compiled once, and the evaluation of
 * one Factorial record (employee or team) into the entry it describes.
 *
 * mapping_load() reads the YAML (keeping marks), checks everything (unknown
 * keys, templates, filters and their arguments, {@attr} names and cycles,
 * rdn, DNs, terminated.action and move_to) and reports every mistake as
 * "file:line:column: key: what is wrong".  Templates are parsed once; the
 * evaluation order of attributes ({@attr} dependencies) is settled once.
 *
 * mapping_eval() evaluates a record against the compiled mapping: scope
 * (only_if), termination (terminated_on <= today, or active false), every
 * attribute in dependency order with uniqueness settled through a hook, the
 * terminated overrides, the DN (built by libldap, see dn.h).  It needs no
 * directory: lookups (employee_dn, uniqueness, an existing entry's
 * create_only values) go through hooks the caller provides, and what cannot
 * be resolved is listed in the result instead of failing.
 *
 * Memory: a struct mapping owns everything it points to (mapping_free).
 * A struct mapping_result owns its strings and value lists
 * (mapping_result_free) and borrows attribute names from the mapping, which
 * must outlive it.
 */
#ifndef FLA_MAPPING_H
#define FLA_MAPPING_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/diag.h"
#include "common/sbuf.h"
#include "tmpl.h"
#include "common/vlist.h"

enum mapping_kind {
	MAPPING_EMPLOYEE = 0,
	MAPPING_TEAM = 1,
};

enum mapping_action {
	MAPPING_DISABLE = 0,
	MAPPING_MOVE,
	MAPPING_DELETE,
};

#define MAPPING_ATTR_UNIQUE 0x1u
#define MAPPING_ATTR_CREATE_ONLY 0x2u
#define MAPPING_ATTR_REQUIRED 0x4u

/* Where something was written in the mapping file, for what is found
 * wrong after loading (check --online names the place of a name the server
 * does not know). */
struct mapping_place {
	unsigned line, column;
	char *key; /* "employees.attributes.mail" */
};

struct mapping_scope {
	char *field; /* as written, for messages */
	struct tmpl_path path;
	struct vlist allowed;
};

struct mapping_attr {
	char *name;
	struct mapping_place at; /* of its name */
	struct tmpl **tmpls; /* one value template, or several (a list) */
	size_t ntmpls;
	unsigned flags;
	size_t max_length; /* characters; 0 = no limit */
	bool is_key;       /* the key attribute, added when attributes does not list it */
	struct mapping_scope *when; /* when: the attribute is set only if each field holds an allowed value */
	size_t nwhen;
	/* first: tmpls are alternatives, in order: the first whose condition
	 * holds and whose every expression gives a value is the attribute's */
	bool first;
	struct mapping_alt {
		struct mapping_scope *when; /* NULL: always */
		size_t nwhen;
	} *alts; /* one per template, with first */
};


/* How an initial password reaches a new account (mapping key initial_password.method). */
enum mapping_password_method {
	MAPPING_PASSWORD_MODIFY = 0, /* the Password Modify extended operation (RFC 3062), right after the add */
	MAPPING_PASSWORD_UNICODEPWD, /* Active Directory's unicodePwd, in the add itself */
	MAPPING_PASSWORD_USERPASSWORD, /* userPassword in the add itself, hashed by the server (389) */
};

struct mapping_object {
	bool present;
	char *base;               /* a fixed DN, or NULL when base_tmpl places each record */
	struct tmpl *base_tmpl;   /* base "ATTR={template},DN": the first RDN's value per record */
	char *base_attr, *base_rest; /* ATTR and DN of that form; the value is escaped by libldap */
	bool create_bases;        /* a base that does not exist is made (organizational units) */
	char *search_base;
	char *key_attr;
	struct mapping_place base_at, search_base_at, key_at, move_to_at;
	struct mapping_place terminated_at; /* of terminated (of the section when it has none) */
	struct mapping_place *class_at; /* one per object class */
	struct tmpl *key_value;
	char *rdn;
	size_t rdn_index;
	struct vlist object_classes;
	struct mapping_scope *scope;
	size_t nscope;
	struct mapping_attr *attrs; /* mapping order; the key attribute last if not listed */
	size_t nattrs;
	size_t key_index;
	size_t *order; /* evaluation order (dependencies first) */
	bool terminated_given;
	enum mapping_action action;
	char *move_to;
	struct mapping_attr *term_attrs;
	size_t nterm_attrs;
	bool remove_from_groups;
	/* initial_password: a random password set when an account is made (employees only) */
	unsigned password_length; /* characters; 0: no initial password */
	enum mapping_password_method password_method;
};

/* groups: one rule, NAME: { dn, when, ... }.  Each active employee the
 * rule holds for (when) is a member of the group its dn gives: with
 * "ATTR={template},DN", one group per value of the template (a person of
 * two offices is in both), else the one fixed DN.  The groups of a rule
 * carry key_attr=key_value, which is how the agent knows them from others. */
struct mapping_group {
	char *name;
	struct mapping_place at;     /* of its name */
	struct tmpl *value;          /* the first RDN's value; NULL for a fixed DN */
	char *rdn_attr, *parent;     /* the first RDN's attribute and the fixed rest */
	char *fixed_value;           /* a fixed DN's first RDN value */
	char *key_attr, *key_value;
	struct vlist object_classes; /* written when the agent makes a group */
	char *member_attr;           /* holds the members' DNs */
	char *empty_member;          /* kept by a group without members (groupOfNames needs one), or NULL */
	struct mapping_scope *when;
	size_t nwhen;
};

/* references: where the agent looks for values naming an entry it renames,
 * moves or deletes, and in which attributes (every entry there, managed or
 * not); see refs.h. */
struct mapping_references {
	char *base;         /* NULL: the naming context that holds the entry */
	struct vlist attrs; /* default: member, uniqueMember, manager, secretary, seeAlso, owner */
	struct mapping_place base_at;
};

struct mapping {
	char *path;
	struct mapping_object obj[2]; /* indexed by enum mapping_kind */
	struct mapping_references refs;
	struct tmpl_tables tables;    /* tables: lookup tables for map() */
	struct mapping_group *groups; /* groups: membership by rule */
	size_t ngroups;
};

int mapping_load(const char *path, struct mapping **out, struct diag *d);
void mapping_free(struct mapping *m);

const char *mapping_kind_name(enum mapping_kind kind);
/* Whether any of a's templates uses filter id (employee_dn marks a team's member attributes). */
bool mapping_attr_uses_filter(const struct mapping_attr *a, enum tmpl_filter_id id);
/* Whether every value of a is fixed text (no field, no attribute, no
 * condition): 1 and its values appended to out ("000001010000Z"). */
bool mapping_attr_literal(const struct mapping_attr *a, struct vlist *out);

enum mapping_force {
	MAPPING_FORCE_NONE = 0,
	MAPPING_FORCE_ACTIVE,     /* an unterminate: the record is active whatever its dates say */
	MAPPING_FORCE_TERMINATED, /* a terminate that is due, or a record that fell out of scope */
};

/* What the caller lends the evaluation. Every hook may be NULL. */
struct mapping_hooks {
	/* employee id -> DN (see tmpl_dn_lookup) */
	tmpl_dn_lookup employee_dn;
	/* 1 when another entry already holds attr=value, 0 when free, -1 on failure */
	int (*taken)(void *ctx, const char *attr, const char *value, struct sbuf *err);
	/* The values attr has on the record's existing entry (for create_only):
	 * 1 and values appended when the entry exists, 0 when it does not. */
	int (*existing)(void *ctx, const char *attr, struct vlist *out, struct sbuf *err);
	void *ctx;
	const char *today; /* YYYY-MM-DD: terminations on or before it apply */
	enum mapping_force force;
};

enum mapping_state {
	MAPPING_ACTIVE = 0,
	MAPPING_TERMINATED,
	MAPPING_OUT_OF_SCOPE,
};

struct mapping_value {
	const struct mapping_attr *attr;
	struct vlist values; /* empty: the attribute is absent */
	bool overridden;     /* set by terminated.attributes */
};

struct mapping_result {
	enum mapping_kind kind;
	char *id;                /* the record's id as text ("?" when it has none) */
	enum mapping_state state;
	enum mapping_action action; /* with MAPPING_TERMINATED */
	char *terminated_on;     /* as given, or NULL */
	char *scope_reason;      /* with MAPPING_OUT_OF_SCOPE */
	char *key_value;
	char *dn;                /* where the entry stands in this state */
	char *active_dn;         /* where it stands while active (under base) */
	char *base;              /* the base it stands under while active (the template's, evaluated) */
	const struct vlist *object_classes;
	struct mapping_value *values; /* objectClass excluded; output order */
	size_t nvalues;
	struct vlist unresolved; /* employee ids employee_dn could not resolve */
	char **unresolved_attr;  /* the attribute each of those belongs to */
	size_t nunresolved_attr; /* how many of unresolved_attr are set (all, on success) */
	struct sbuf error;       /* the record error when mapping_eval fails */
};

/* Evaluates record; returns 0 (the result describes the entry, or says the
 * record is out of scope), or -1 with the reason in r->error.  The result
 * must be released with mapping_result_free() in both cases. */
int mapping_eval(const struct mapping *m, enum mapping_kind kind, const cJSON *record,
                 const struct mapping_hooks *hooks, struct mapping_result *r);
void mapping_result_free(struct mapping_result *r);

/* One group an employee belongs to by rule. */
struct mapping_membership {
	const struct mapping_group *rule;
	char *dn;
	char *value; /* the group's first RDN value */
};

/* The groups employee record belongs to by the rules of groups: (in rule
 * order, each DN once); the caller decides whether the employee is active.
 * 0 and *out (mapping_memberships_free), or -1 with the record error. */
int mapping_groups_of(const struct mapping *m, const cJSON *record, struct mapping_membership **out, size_t *n,
                      struct sbuf *err);
void mapping_memberships_free(struct mapping_membership *v, size_t n);

/* The key value of a record alone (no directory needed); returns 0 and a
 * malloc'd value, or -1 with the reason in err. */
int mapping_key(const struct mapping *m, enum mapping_kind kind, const cJSON *record, char **key, struct sbuf *err);

/* The top-level fields whose values a section's templates look up as
 * employees (piped through employee_dn: manager_id, employee_ids), appended
 * to out once each. */
void mapping_reference_fields(const struct mapping *m, enum mapping_kind kind, struct vlist *out);
/* Whether any template or condition of the section (and, for employees, of
 * groups:) reads record field name ({name...}). */
bool mapping_uses_field(const struct mapping *m, enum mapping_kind kind, const char *name);

/* An id as text (malloc'd): a number as an integer, a non-empty string as
 * it is; NULL for anything else. */
char *mapping_id_text(const cJSON *v);
/* The record's id as text (number or string), malloc'd; NULL when absent. */
char *mapping_record_id(const cJSON *record);

#endif
