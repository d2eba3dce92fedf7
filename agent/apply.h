/*
 * apply: one Factorial delivery turned into the smallest correct set of
 * directory operations, applied or (dry run) printed as LDIF.
 *
 * The subscription type says what the body is and what to do:
 *   employees/employee/...     create or update the person's entry; a due
 *                              terminate applies the termination policy, a
 *                              future one only records its day in the store;
 *                              unterminate undoes the termination; a person
 *                              out of the mapping's scope is treated as
 *                              terminated;
 *   teams/team/create|update   create or update the team's group;
 *   teams/team/delete          delete it;
 *   teams/membership/...       add or remove one member value (bulk_upsert:
 *                              several).
 *
 * Entries are found by the mapping's key (filter value escaped by libldap);
 * a key held by two entries is an error naming both.  Only the attributes the
 * mapping owns are compared and changed (plus objectClass additions); a new
 * entry is added whole, an existing one gets at most one rename and one
 * modify; after a rename the references to the old DN in managed groups and
 * in employee reference attributes (manager) are rewritten.  Every change
 * applied is written to the audit log (attribute names only).
 *
 * With an API client (factorial.enrich), an employee delivery is replaced by
 * the employee read fresh by id, with job_title and team_ids; an employee the
 * API no longer knows is skipped.
 *
 * Plan, then execute: working a record out (reads of the directory, the
 * mapping) yields a plan, the ordered steps (add, modify, rename, delete,
 * and notes) it needs; an executor then carries the plan out, to the
 * directory (each step said and audited once the server confirmed it;
 * adds in flight when syncing) or, with dry_run, as LDIF: each change
 * record under a "# employee 42 (update): ..." comment, so that ldapmodify
 * given that LDIF makes the same directory a real apply makes.  Dry and real
 * runs share everything up to the executor; with dry_run nothing is written
 * (neither directory nor store).  The deletion guard is asked about a plan
 * that would disable or delete before it is carried out.
 *
 * Memory: the context borrows everything it points to; nothing is retained
 * between calls but the summary counters.
 */
#ifndef FLA_APPLY_H
#define FLA_APPLY_H

#include <pthread.h>
#include <stdbool.h>

#include <cjson/cJSON.h>

#include "events.h"
#include "factorial.h"
#include "ldapw.h"
#include "mapping.h"
#include "related.h"
#include "common/sbuf.h"
#include "store.h"

struct apply_summary {
	unsigned add, modify, rename, disable, del;
};

struct apply_cache;

struct apply_ctx {
	const struct mapping *m;
	struct ldapw *lw;
	struct store *st; /* NULL: nothing recorded (dry run) */
	struct store *state; /* read even in a dry run: which employees are terminated; may be NULL */
	bool dry_run;
	const char *today;
	struct sbuf *ldif; /* dry run: the change records */
	struct factorial *api; /* factorial.enrich: employees are read fresh from it; NULL: as delivered */
	struct factorial *reader; /* for the deliveries that only say what to read (contract versions):
	                           * the API whatever enrich says; NULL: they fail */
	/* the records employees point to ({location.name}): each employee record
	 * gets them before it is mapped; NULL: the mapping reads none.  Unless
	 * related_complete (just read), a record naming one that is not among
	 * them is not applied: related_unknown is set and the caller reads them
	 * again (a location made since they were read) */
	const struct related *related;
	bool related_complete;
	bool related_unknown;
	struct apply_summary sum;
	bool connection_lost; /* the last failure was the directory or the API being unreachable, not the record */
	bool api_unavailable; /* ... and it was the API */
	bool stale; /* the last delivery was older than what was applied for its record: skipped */
	bool hopeless; /* the last failure is the body's own and no retry can pass it (ids that are not ids) */
	/* workers applying at once: a group is read and changed under this lock
	 * (team and membership deliveries, and an employee's leaving, joining
	 * and renames), so that two changes of one group never cross; NULL when
	 * one thread applies */
	pthread_mutex_t *groups_lock;
	/* a delivery left a reference to an employee unresolved and that employee's
	 * entry was made since: apply (type, body) again (the daemon queues it);
	 * NULL: nothing is kept for later */
	void (*revisit)(void *ctx, const char *type, const char *body);
	void *revisit_ctx;

	/* sync: the managed entries read once (apply_cache_load) instead of one search per record */
	struct apply_cache *cache;
	/* the deletion guard: when set, a termination or an orphan that would change an
	 * entry is first handed to on_destructive, which answers 1 (apply it now), 0 (it
	 * is set aside: the caller applies it later, or holds it) or -1 (failure); the
	 * record is evaluated once either way */
	bool defer_destructive;
	int (*on_destructive)(void *ctx, const cJSON *record, const char *key, const char *dn);
	void *destructive_ctx;
	bool unresolved; /* the last record left a reference unresolved */
	/* factorial.enrich with workers at once: the record read fresh may name
	 * records (a new manager, a team's members) its delivery did not, which
	 * another worker may be changing now.  claim_refs is asked before such a
	 * record is applied: 0, they are this delivery's until it ends; 1, one is
	 * being applied now and the delivery waits for it (waits is set, nothing
	 * is written); NULL: one thread applies, nothing to ask */
	int (*claim_refs)(void *ctx, enum event_kind kind, const cJSON *record);
	void *claim_ctx;
	bool waits;
	/* sync, for real: adds of employees are sent without waiting for each answer
	 * (apply_flush collects them); an add refused later is told here */
	bool pipeline;
	void (*async_error)(void *ctx, const char *employee_id, const char *message, bool connection);
	void *async_ctx;
};

/* Applies one delivery body; returns 0, or -1 with a message naming the
 * record, the DN and the directory's answer in err. */
int apply_delivery(struct apply_ctx *a, const char *type, const cJSON *body, struct sbuf *err);

/* Reads every managed employee entry (one paged search) and the values of
 * unique attributes under search_base, so that sync needs no search per
 * record; the cache then follows the changes the run makes. */
int apply_cache_load(struct apply_ctx *a, struct sbuf *err);
void apply_cache_free(struct apply_ctx *a);
/* Waits for every add still in flight; -1 when the connection failed. */
int apply_flush(struct apply_ctx *a);
size_t apply_cache_entries(const struct apply_ctx *a);

/* sync: one record read from the API (event "sync"). */
int apply_record(struct apply_ctx *a, enum mapping_kind kind, const cJSON *record, struct sbuf *err);

/* Calls fn for every cached managed entry whose key no record of this run
 * had (an orphan). */
void apply_cache_orphans(struct apply_ctx *a, void (*fn)(void *ctx, const char *key, const char *dn), void *ctx);

/* An orphan: delete it (delete true) or apply the termination policy to it
 * as far as it can be without a record: move (action move), the
 * terminated.attributes that need no record field, and leaving groups.
 * With defer_destructive set, a change is handed to on_destructive. */
int apply_orphan(struct apply_ctx *a, const char *key, bool delete, struct sbuf *err);

/* "N to add, N to modify, ..." (dry run) or "N added, N modified, ...",
 * and ", N failed" when records failed. */
void apply_summary_line(const struct apply_ctx *a, long failed, struct sbuf *out);

#endif
