/*
 * apply_int: what the files of the apply family share, and nothing outside
 * it includes.  apply.h is the module's face; each apply_*.c is one concern:
 *
 *   apply_ops       the changes a step makes, and the operations that carry
 *                   them out: to the directory (said and audited once the
 *                   server confirmed them; adds in flight when syncing) or,
 *                   with dry_run, as LDIF
 *   apply_plan      the plan: the ordered steps a record needs (add, modify,
 *                   rename, delete, notes), and apply_execute() carrying it out
 *   apply_read      reading the directory: an entry by its key, the employees
 *                   a team names, whether a value is taken
 *   apply_record    a record's entry and its unique values in one search, and
 *                   the handlers (employee, team, membership) both entry points use
 *   apply_entry     an employee's entry added, updated, terminated; the
 *                   deliveries waiting for it and its scheduled termination
 *   apply_members   teams' groups and membership values; references followed
 *                   when an entry moves
 *   apply_rules     groups by rule
 *   apply_follow    references an earlier apply did not finish following
 *   apply_versions  never move a record backwards; leavers and returns
 *   apply_delivery  the entry point of run and apply: one delivery
 *   apply_sync      the entry point of sync, and its cache of managed entries
 *
 * Memory: as apply.h says; a struct job lives for one record's handling and
 * owns its plan and maps (job_maps_free()).
 */
#ifndef FLA_APPLY_INT_H
#define FLA_APPLY_INT_H

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

#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum cat {
	CAT_NONE,
	CAT_ADD,
	CAT_MODIFY,
	CAT_RENAME,
	CAT_DISABLE,
	CAT_DELETE,
};

/* One attribute change of a modify, or one attribute of an add. */
struct change {
	int op;
	char *attr;
	struct vlist values;
};

struct changes {
	struct change *v;
	size_t n;
};

/* One step of a plan (see "the plan" below). */
enum step_kind {
	STEP_NOTE,
	STEP_ADD,
	STEP_MODIFY,
	STEP_RENAME,
	STEP_DELETE,
	STEP_PASSWORD, /* a new initial password for an entry made earlier whose own was never set */
};

struct step {
	enum step_kind kind;
	enum cat cat;        /* what it counts as in the summary */
	char *dn;            /* the entry (NULL for a note) */
	char *text;          /* what a person reads: "add uid=...", "leave group ...: member", or the note */
	char *names;         /* for the audit: attribute names, or the new DN of a rename */
	struct changes c;    /* add: the attributes; modify: the modifications */
	char *newrdn, *newsup; /* rename */
	bool tolerate_gone;  /* follow rename: the value or entry gone meanwhile is no failure */
	bool tolerate_needed; /* drop reference: a value the entry's class requires stays, said */
	char *left_group;    /* leave group: the group, remembered for a return once left */
	unsigned password_length; /* add: an initial password of this many characters is made when it runs */
	/* add by Password Modify: the terminated.attributes (fixed ones) the entry
	 * is made with, so that it is never open without its password; c holds
	 * the values it opens with once the password is set */
	struct changes lock;
	enum mapping_password_method password_method;
};

struct plan {
	struct step *v;
	size_t n;
};

/* What one record's handling shares. */
struct job {
	struct apply_ctx *a;
	const char *kind;  /* "employee", "team" */
	const char *id;
	const char *event; /* the last part of the subscription type */
	const char *type;  /* the whole subscription type, for the audit log */
	struct sbuf *err;
	bool counted;      /* the record's category was counted */
	bool changed;      /* an operation was made (or printed) for this record */
	bool deferred;     /* its change was handed to the deletion guard, not made */
	bool returning;    /* a leaver coming back: not kept out of the groups it rejoins */
	bool fresh;        /* the record was read from the API just now, not taken from the delivery */
	unsigned groups_held; /* depth of groups_enter() calls */
	int last_rc;          /* the directory's result code of the last failed operation */
	char *own_id;         /* j.id's storage, when the job owns it */
	struct plan plan;     /* worked out, not carried out yet */
	bool added;           /* the plan adds the employee's entry */
	const char *key;   /* the record's key, once known */
	struct strmap dn_cache; /* employee id -> DN ("" when none) */
	struct strmap touched;  /* group DNs already changed for this record */
	struct strmap unique_known; /* "attr=value" folded -> DN holding it ("" when free), read with the key */
	struct strmap followed; /* "DN\nattr" a managed group's or entry's rewrite has planned already */
	/* references an earlier apply of this record did not finish following
	 * (the store's "follow" mark): they still name follow_from */
	char *follow_from;
	bool follow_consumed; /* followed by this job */
	bool follow_marked;   /* this job wrote the mark */
};

static inline void job_maps_init(struct job *j)
{
	strmap_init(&j->dn_cache);
	strmap_init(&j->touched);
	strmap_init(&j->unique_known);
	strmap_init(&j->followed);
}

static inline void job_maps_free(struct job *j)
{
	strmap_free(&j->dn_cache);
	strmap_free(&j->touched);
	strmap_free(&j->unique_known);
	strmap_free(&j->followed);
	free(j->follow_from);
	j->follow_from = NULL;
}

#define PIPELINE_WINDOW 32 /* adds in flight at most */

struct pending_add {
	int msgid;
	char *id;
	char *key;
	char *dn;
	char *names;
	char *type;
};

struct apply_cache {
	struct ldapw_entries emp;  /* managed employee entries, as read */
	struct strmap by_key;      /* key value -> index in emp */
	struct strmap dn_by_key;   /* key value -> DN now (follows adds, renames, deletes) */
	struct strmap values;      /* "attr=value" lower-cased -> DN holding it ("\1" when several) */
	struct strmap seen;        /* keys of the records this run had */
	struct strmap terminated;  /* keys of employees terminated or out of scope, per the API */
	struct ldapw_entries added; /* entries this run added (for a second look at them) */
	struct strmap added_by_key;
	struct strmap bases;       /* bases (template ones) known to exist or planned: read once a run */
	struct pending_add *pending; /* adds sent, answers not read yet */
	size_t npending;
};

struct hookctx {
	struct job *j;
	const struct ldapw_entry *own;
	const char *search_base;
	enum mapping_kind kind;
};

/* apply_ops.c */
void apply_changes_free(struct changes *c);
int apply_changes_add(struct changes *c, int op, const char *attr, const struct vlist *values);
bool apply_same_set(const struct vlist *a, const struct vlist *b);
int apply_diff_attr(struct changes *c, const char *attr, const struct vlist *cur, const struct vlist *want);
void apply_attr_names(const struct changes *c, struct sbuf *out);
void apply_count(struct job *j, enum cat cat);
void apply_say_now(struct job *j, const char *what);
void apply_sayf(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int apply_failed(struct job *j, const char *dn, const struct ldapw_error *e);
void apply_groups_enter(struct job *j);
void apply_groups_leave(struct job *j);
void apply_groups_release(struct job *j);
void apply_audit(struct job *j, const char *dn, const char *op, const char *attrs);
struct ldapw_mod *apply_to_mods(const struct changes *c);
void apply_pending_free(struct pending_add *p);
int apply_collect_one(struct apply_ctx *a);

/* apply_plan.c */
void apply_step_free(struct step *s);
void apply_plan_clear(struct job *j);
struct step *apply_plan_op(struct job *j, enum step_kind kind, enum cat cat, const char *dn, const char *text);
int apply_op_add(struct job *j, const char *dn, const struct changes *attrs, enum cat cat);
int apply_op_modify(struct job *j, const char *dn, const struct changes *c, enum cat cat, const char *verb);
int apply_op_rename(struct job *j, const char *dn, const char *newdn, const char *newrdn, const char *newsup,
                    enum cat cat);
int apply_op_delete(struct job *j, const char *dn);
int apply_execute(struct job *j);
void apply_say(struct job *j, const char *what);

/* apply_read.c */
const char **apply_owned_attrs(const struct mapping_object *o, const char *also);
void apply_key_held_twice(struct job *j, const struct mapping_object *o, const char *key,
                          const struct ldapw_entries *found);
int apply_find_by_key(struct job *j, const struct mapping_object *o, enum mapping_kind kind, const char *key,
                      struct ldapw_entries *own, const struct ldapw_entry **cur);
int apply_hook_taken(void *ctx, const char *attr, const char *value, struct sbuf *err);
int apply_hook_existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err);
cJSON *apply_id_record(const char *id);
int apply_lookup_employee(struct job *j, const char *id, char **dn, bool membership);
void apply_prefetch_members(struct job *j, const cJSON *rec);
int apply_hook_employee_dn(void *ctx, const char *id, char **dn, struct sbuf *err);

/* apply_members.c */
bool apply_is_member_attr(const struct mapping_attr *a, bool *by_rdn);
void apply_matching(const struct vlist *cur, const char *dn, const char *rdnval, bool by_rdn, struct vlist *out);
char *apply_member_filter(const struct mapping *m, const struct mapping_object *t, const char *dn,
                          const char *rdnval);
const char **apply_member_attr_names(const struct mapping_object *t);
int apply_remove_from_groups(struct job *j, const char *dn, const char *rdnval);
int apply_change_membership(struct job *j, const struct ldapw_entry *group, const char *team, const char *emp,
                            bool remove);
int apply_team_group(struct job *j, const char *team, struct ldapw_entries *found, const struct ldapw_entry **group);
int apply_join_teams(struct job *j, const cJSON *rec, const char *key, bool returning);
int apply_note_followed(struct job *j, const char *dn, const char *attr);
int apply_follow_everywhere(struct job *j, const char *old_dn, const char *new_dn);

/* apply_follow.c */
int apply_follow_read(struct job *j, const char *key, const struct ldapw_entry *cur);
int apply_follow_pending(struct job *j, const char *old_dn, const char *new_dn);
int apply_follow_leftover(struct job *j, const char *dn);
void apply_follow_done(struct job *j);
int apply_rewrite_references(struct job *j, const char *old_dn, const char *new_dn);

/* apply_rules.c */
int apply_rule_groups(struct job *j, const char *old_dn, const char *new_dn, const struct mapping_membership *want,
                      size_t nwant);
int apply_rule_groups_active(struct job *j, const cJSON *rec, const char *old_dn, const char *new_dn);

/* apply_entry.c */
int apply_add_entry(struct job *j, const struct mapping_result *r, enum cat cat);
int apply_update_entry(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                       const struct mapping_result *r, enum cat cat, bool *renamed);
void apply_note_unresolved(struct job *j, const struct mapping_result *r, const cJSON *rec);
void apply_revisit_waiters(struct job *j);
int apply_evaluate(struct job *j, enum mapping_kind kind, const cJSON *rec, const struct ldapw_entry *own,
                   enum mapping_force force, struct mapping_result *r);
void apply_schedule(struct job *j, const cJSON *rec, const char *due, bool put);
int apply_terminate_entry(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                          const struct mapping_result *r, bool *renamed);

/* apply_versions.c */
int apply_stale(struct job *j, const cJSON *rec);
void apply_remember_version(struct job *j, const cJSON *rec);
bool apply_was_terminated(struct job *j, const char *key);
void apply_remember_terminated(struct job *j, const char *key, bool terminated);
int apply_rejoin(struct job *j, const cJSON *rec, const char *key, bool returning);
bool apply_due_later(struct job *j, const cJSON *rec, char due[11]);
int apply_event_says(struct job *j, const cJSON *rec, enum mapping_force *force);

/* apply_record.c */
int apply_guard_asks(struct job *j, const cJSON *rec, const char *key, const char *dn, size_t mark);
int apply_employee(struct job *j, const cJSON *given);
int apply_team(struct job *j, const cJSON *rec, bool del);
int apply_membership(struct job *j, const cJSON *rec, bool remove);

/* apply_delivery.c */
int apply_ids_refused(struct job *j, const cJSON *body);

/* apply_sync.c */
void apply_cache_values(struct apply_cache *c, const struct mapping_object *o, const struct ldapw_entry *e,
                        const char *dn, bool add);
void apply_cache_keep(struct job *j, const char *key, const struct ldapw_entry *cur, const struct mapping_result *r);
void apply_cache_forget(struct job *j, const char *key, const struct ldapw_entry *cur);
int apply_record_key(struct job *j, enum mapping_kind kind, const cJSON *rec, char **key);

#endif
