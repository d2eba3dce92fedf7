/*
 * daemon: what the parts of `run` share, and nothing else includes.
 *
 * The daemon is split by role: agentd.c starts and stops it (configuration
 * snapshots, signals, the order of start-up); receiver.c answers HTTP
 * (deliveries sent to the daemon, /healthz, /metrics) in the receiver process
 * receiverd.c starts and runs; intake.c stores what the receiver sends
 * (wire.h) in the daemon; workers.c applies the
 * queue to the directory; timers.c runs the scheduled terminations, the
 * subscription upkeep and the periodic reconcile; monitor.c keeps what the
 * workers saw of the directory and the store, for /healthz.  They share
 * struct agentd, which agentd_run() owns, and the snapshot in force, which
 * each takes with agentd_snap_get() and gives back with agentd_snap_put().
 *
 * Memory: everything here is owned by agentd_run(); a snapshot lives while
 * a reference to it is held.
 */
#ifndef FLA_DAEMON_H
#define FLA_DAEMON_H

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "common/diag.h"
#include "common/secret.h"
#include "common/strmap.h"
#include "config.h"
#include "events.h"
#include "factorial.h"
#include "http.h"
#include "ldapw.h"
#include "mapping.h"
#include "queue.h"
#include "related.h"
#include "statedir.h"
#include "store.h"

#define BACKOFF_MAX 10.0 /* seconds between reconnection attempts, at most */
#define HEALTH_GRACE 3.0 /* seconds the directory may go unanswered after a failure before /healthz says 503 */
#define MONITOR_EVERY 1.0 /* seconds between the monitor's looks */
#define PROBE_IDLE 60.0 /* seconds without a directory answer before the monitor asks for one */
#define STORE_PROBE_EVERY 10.0 /* seconds between the monitor's store write checks */

/* The configuration, mapping and challenge in force; replaced whole on reload. */
struct snapshot {
	int refs;
	struct config *cfg;
	struct mapping *m;
	struct secret challenge;
	char *prefix; /* the path of public_url, without a trailing slash */
	unsigned related_kinds; /* related_needs(m), worked out once */
};

struct agentd;
struct wire_client;

/* What the workers and the monitor saw, for /healthz: it never asks the
 * directory itself. */
struct health {
	pthread_mutex_t mu;  /* the daemon's writers; the receiver, which maps it read-only, copies (seqread) */
	atomic_uint seq;
	double dir_alive;    /* wall time of the last sign the directory is there (an answer, an open connection) */
	double dir_answered; /* of the last answer to a request */
	double dir_failed;   /* of the last failure to reach it */
	char dir_error[512];
	bool store_failed;   /* the daemon's last commit (or check) failed */
	char store_error[512];
	long pending, held, dead;
};

/* What one listener serves: everything, or (metrics_listen) only /healthz and /metrics. */
struct listener {
	struct agentd *a;
	bool status_only;
};

struct agentd {
	const char *config_path;
	pthread_mutex_t snap_mu;
	struct snapshot *snap;

	struct queue_committer *committer;
	struct http_server *http;
	struct http_server *mhttp;
	struct listener main_l, status_l;

	pthread_mutex_t mu; /* dispatcher: busy records, pause, stop */
	pthread_cond_t cv;      /* the monitor and the timers wait on it (and stop) */
	pthread_cond_t work_cv; /* the workers wait on it: new deliveries, a record released, stop */
	struct strmap busy;
	bool stop;
	double pause_until;
	bool waits_stale; /* a release failed: the queue's wait marks are cleared before the next choice */
	double backoff;

	pthread_t *workers;
	size_t nslots;   /* workers prepared (each with its store handles) */
	size_t nworkers; /* worker threads started */
	pthread_t scheduler;
	bool scheduler_started;
	pthread_t subscriber;
	bool subscriber_started;
	pthread_t reconciler;
	bool reconciler_started;
	bool reconcile_requested; /* SIGUSR1, or a subscription was found disabled: deliveries were missed */
	const char *reconcile_why;

	pthread_t monitor;
	bool monitor_started;
	volatile sig_atomic_t stopping; /* a long sync stops between operations when set */

	pthread_mutex_t groups_mu; /* apply_ctx.groups_lock of every worker */

	/* the deletion guard's question and its answer's record, one worker at a
	 * time: guard_reserved counts the disables and deletes it let through
	 * that are being made now and are not in the store's count yet */
	pthread_mutex_t guard_mu;
	long guard_reserved;

	/* the locations and legal entities the workers map with ({location.name}):
	 * read when first needed, again by each sync and when a record names one
	 * not read yet (at most every RELATED_FRESH_SECONDS, workers.c) */
	pthread_mutex_t related_mu;
	struct related *related;
	unsigned related_kinds;
	double related_at; /* monotonic: when they were read */
	struct queue *side_q; /* the start's: wait marks cleared before the workers choose */

	struct statedir_lock *lock;
	int listen_fd, metrics_fd; /* bound before anything is written; served once the store is open */
	struct health *health; /* in memory shared with the receiver process (monitor_share) */
	size_t shared_size;
	int shared_fd;          /* that memory, for the next receiver */
	char self_exe[4096];    /* this program, to start the receiver from */
	struct receiver *rx;    /* the receiver process serving now */
	struct wire_client *wire; /* in the receiver: its end of the conversation with the daemon */
	pid_t daemon_pid;         /* in the receiver: its parent */
	volatile bool receiver_lost; /* it ended on its own: run exits 1 */
};

struct worker {
	struct agentd *a;
	const struct snapshot *seen; /* the snapshot lw and api were opened with */
	struct factorial *api;
	struct ldapw *lw;
	struct queue *q;
	struct store *st;
	/* while a delivery is applied: it, its mapping, the records its fresh
	 * read named that were claimed for it (apply_ctx.claim_refs), and the
	 * record it found busy */
	const struct queue_delivery *cur;
	const struct mapping *cur_m;
	struct strmap claimed;
	char *waits_for;
};

/* Real time, for retry timing: the clock module's injectable "now" only
 * decides which day it is. */
static inline double agentd_wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double agentd_mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void agentd_deadline_in(struct timespec *ts, double seconds)
{
	double whole;
	double frac = modf(seconds, &whole);

	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += (time_t)whole;
	ts->tv_nsec += (long)(frac * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* agentd.c: loading a snapshot; the snapshot in force, with a reference the caller gives back. */
int agentd_snapshot_load(const char *path, struct snapshot **out, struct diag *d);
/* Blocks SIGTERM, SIGINT, SIGHUP and SIGUSR1 (taken by sigwait() on set; the
 * threads started later inherit the mask) and ignores SIGPIPE and SIGXFSZ. */
void agentd_block_signals(sigset_t *set);
struct snapshot *agentd_snap_get(struct agentd *a);
void agentd_snap_put(struct agentd *a, struct snapshot *s);

/* receiverd.c: the receiver process, seen from the daemon: started (0 once
 * it serves), and retired (SIGTERM, then waited for; NULL is fine). */
struct receiver;
int receiver_spawn(struct agentd *a, struct receiver **out, struct sbuf *err);
void receiver_retire(struct receiver *r);

/* receiver.c: the HTTP callbacks (ctx: a struct listener), and storing a
 * delivery the agent made or kept itself. */
int receiver_precheck(void *ctx, const char *method, const char *path, const char *challenge, long long len,
                      const char *addr);
void receiver_handle(void *ctx, const char *method, const char *path, const char *body, size_t len,
                     const char *addr, struct http_reply *reply);
void receiver_refused(void *ctx, const char *path, int status, const char *reason, const char *addr);
void receiver_tick(void *ctx);
int receiver_submit_text(struct agentd *a, const char *type, const char *body, struct sbuf *err);
/* Whether body is a delivery of type t (NULL: a type the agent does not
 * know) the agent keeps: NULL and the parsed body in *parsed (the
 * caller's), or why not.  The receiver asks before it sends a delivery to
 * the daemon, and the daemon again of what the receiver sent. */
const char *receiver_check(const struct event_type *t, const char *body, size_t len, cJSON **parsed);
/* Strips the fields the agent never keeps from j; *body and *len then say
 * the text stored instead (in *clean, the caller's to free). */
int receiver_keep_private(cJSON *j, const char **body, size_t *len, char **clean, struct sbuf *err);
/* The record a delivery orders by (*key, malloc'd) and the records it names
 * (into refs), as the event table and the mapping in force say. */
int receiver_keys(struct agentd *a, const struct event_type *t, const cJSON *parsed, char **key,
                  struct strmap *refs);

/* intake.c: the daemon's side of the receiver's messages (wire.h), until
 * the stream ends (0) or breaks (-1 and why): each batch of deliveries is
 * checked again, committed in one transaction and answered; ready(ctx)
 * when the receiver says it serves.  max_len: the largest message taken. */
int intake_serve(struct agentd *a, int fd, size_t max_len, void (*ready)(void *ctx), void *ctx, struct sbuf *err);

/* workers.c: one worker thread (arg: its struct worker); waking them all (ctx: the agentd). */
void *workers_main(void *arg);
void workers_wake(void *ctx);
/* A sync read the related records: the workers map with them from now on (taken over). */
void workers_related_read(struct agentd *a, struct related *fresh, unsigned kinds);

/* timers.c: the threads (arg: the agentd), and asking for a reconcile now. */
void *timers_scheduler_main(void *arg);
void *timers_subscriber_main(void *arg);
void *timers_reconciler_main(void *arg);
void timers_request_reconcile(struct agentd *a, const char *why);

/* monitor.c: what is known of the directory and the store, and the thread that watches them. */
void health_directory(struct agentd *a, const char *error, bool answered);
void health_store(struct agentd *a, const char *error);
bool health_doubts_directory(struct agentd *a, double *answered);
/* /healthz: 200 or 503 and a word; with detail, what is known of the directory,
 * the store and the queue, a line each (for the metrics listener only). */
int health_render(struct agentd *a, bool detail, struct sbuf *out);
/* Whether the directory is reachable, as /healthz judges it. */
bool health_directory_up(struct agentd *a);
void monitor_commit_observed(double seconds, const char *error, void *ctx);
void monitor_intake_observed(double seconds, const char *error, void *ctx);
void *monitor_main(void *arg);
/* The health and the metrics in a memory file the receiver process maps:
 * made by the daemon (its descriptor in *fd), mapped by the receiver. */
int monitor_share(struct agentd *a, int *fd, struct sbuf *err);
int monitor_attach(struct agentd *a, int fd, struct sbuf *err);
void monitor_unshare(struct agentd *a);

#endif
