/*
 * reconcile: `sync`, the whole directory made to match Factorial.
 *
 * It reads every employee from the API (and the teams and contract versions
 * when the mapping uses team_ids or job_title, the locations and legal
 * entities when it names their fields), reads every managed entry
 * with one paged search, and handles each record as apply does: add,
 * modify, rename, move, disable, delete, or nothing.  A reference to an
 * employee the run creates later is resolved in a second look at the records
 * that needed it.  Entries holding the key attribute whose employee no longer
 * exists are orphans, handled by sync.orphans (report, disable, delete).
 *
 * The deletion guard: terminations and orphan actions that would change an
 * entry are collected first; when there are more than safety.max_disables of
 * them, or more than safety.max_disables_percent of the managed entries,
 * none of them is applied (the rest of the sync is) and the report names
 * them, unless force.  An empty employee list from the API never disables
 * anything, force or not.
 *
 * Memory: everything is freed before reconcile_run() returns; the LDIF and
 * messages go to the caller's buffers.
 */
#ifndef FLA_RECONCILE_H
#define FLA_RECONCILE_H

#include <signal.h>
#include <stdbool.h>

#include "apply.h"
#include "config.h"
#include "factorial.h"
#include "ldapw.h"
#include "mapping.h"
#include "related.h"
#include "common/sbuf.h"
#include "store.h"

/* Orphans left as they are (sync.orphans: report) are named up to this many; the rest are counted. */
#define RECONCILE_ORPHANS_SAID 10

struct reconcile_options {
	bool dry_run;
	const char *employee_id; /* only this employee (no orphans, no teams) */
	bool force;              /* past the deletion guard */
	bool verbose;            /* every orphan said, not the first RECONCILE_ORPHANS_SAID */
	/* when it becomes non-zero (a signal), the run stops between operations:
	 * what was sent is collected and recorded, the report says so */
	const volatile sig_atomic_t *stop;
	/* when set, the related records ({location.name}) the run read are handed
	 * over here (the caller's to free; NULL when the mapping reads none) */
	struct related **related_out;
	/* when set, called as employees are read and checked (at most four times a
	 * second, and once more at the end with done true): how many, of how
	 * many (-1: the API does not say), since when */
	void (*progress)(void *ctx, long checked, long total, double seconds, bool done);
	void *progress_ctx;
};

struct reconcile_report {
	long employees;   /* records read from the API */
	long checked;     /* records compared with the directory */
	long differing;   /* records whose entry needed a change */
	long fixed;       /* records whose entry was changed */
	long orphans;     /* managed entries without an employee */
	long record_errors;
	long guarded;     /* disables and deletes the guard held back */
	bool guard_tripped;
	bool interrupted;     /* stopped early by opt->stop */
	struct apply_summary sum;
};

/* Runs a sync; returns 0 when everything was done, 1 when records failed,
 * the guard held changes back or the run was stopped (rep->interrupted),
 * -1 when the directory or the API failed (the reason in err).  Messages a
 * person reads go to report, one a line.  rep holds what was done up to the
 * end, whatever the outcome. */
int reconcile_run(const struct config *cfg, const struct mapping *m, struct ldapw *lw, struct factorial *api,
                  struct store *st, const struct reconcile_options *opt, struct sbuf *ldif, struct sbuf *report,
                  struct reconcile_report *rep, struct sbuf *err);

#endif
