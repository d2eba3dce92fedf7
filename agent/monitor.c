#include "build.h"

#include "daemon.h"

#include "common/log.h"
#include "common/pmutex.h"
#include "common/seqread.h"
#include "metrics.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- health ----------------------------------------------------------------- */

/* The health and the metrics live in one mapping the daemon and its
 * receiver process share: the appliers write, the receiver answers. */
struct shared {
	struct health health; /* written by the daemon only */
	max_align_t metrics[]; /* metrics_shared_size() bytes */
};

int monitor_share(struct agentd *a, int *fd, struct sbuf *err)
{
	size_t size = sizeof(struct shared) + metrics_shared_size();
	struct shared *m = MAP_FAILED;
	int f = memfd_create("factorial-ldap-agent-published", MFD_CLOEXEC | MFD_ALLOW_SEALING), rc = -1;

	if (f < 0 || ftruncate(f, (off_t)size) < 0 ||
	    (m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0)) == MAP_FAILED) {
		sbuf_addf(err, "cannot make the memory the receiver answers from: %s", strerror(errno));
		goto cleanup;
	}
	/* this mapping is the only writable one there will be: a receiver maps it to read, and can
	 * neither write it, map it to write, nor change its size (which would fault the daemon) */
	if (fcntl(f, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) < 0) {
		sbuf_addf(err, "cannot seal the memory the receiver answers from: %s", strerror(errno));
		rc = -1;
		goto cleanup;
	}
	/* a new memory file reads as zeros: only the locks need making */
	rc = pmutex_init(&m->health.mu) == 0 && metrics_share(m->metrics, true) == 0 ? 0 : -1;
	if (rc < 0) {
		sbuf_adds(err, "cannot make the memory the receiver answers from: no process-shared lock");
		goto cleanup;
	}
	a->health = &m->health;
	a->shared_size = size;
	*fd = f;
	f = -1;
	m = MAP_FAILED;
cleanup:
	if (m != MAP_FAILED)
		munmap(m, size);
	if (f >= 0)
		close(f);
	return rc;
}

int monitor_attach(struct agentd *a, int fd, struct sbuf *err)
{
	size_t size = sizeof(struct shared) + metrics_shared_size();
	struct stat sb;
	struct shared *m;

	/* the descriptor comes from the parent: check it is what it should be */
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size != size) {
		sbuf_adds(err, "the memory shared with the daemon is not what it should be");
		return -1;
	}
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED) {
		sbuf_addf(err, "cannot map the memory shared with the daemon: %s", strerror(errno));
		return -1;
	}
	metrics_attach(m->metrics);
	a->health = &m->health;
	a->shared_size = size;
	return 0;
}

void monitor_unshare(struct agentd *a)
{
	if (a->health)
		munmap(a->health, a->shared_size);
	a->health = NULL;
}

/* The daemon's threads write the health under its lock; the receiver reads
 * it without one (health_copy). */
static void health_lock(struct health *h)
{
	pmutex_lock(&h->mu);
	seq_begin(&h->seq);
}

static void health_unlock(struct health *h)
{
	seq_end(&h->seq);
	pthread_mutex_unlock(&h->mu);
}

/* What is known now, whole; in the receiver, from its read-only mapping. */
static void health_copy(struct agentd *a, struct health *out)
{
	seq_copy(out, a->health, sizeof(*out), &a->health->seq);
	out->dir_error[sizeof(out->dir_error) - 1] = '\0';
	out->store_error[sizeof(out->store_error) - 1] = '\0';
}

/* The receiver's own commits of deliveries: its own to know, in its own memory. */
static struct {
	pthread_mutex_t mu;
	bool failed;
	char error[512];
} intake = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* A worker or the monitor reached the directory (error NULL; answered: a
 * request was answered, not only a connection seen open) or failed to. */
void health_directory(struct agentd *a, const char *error, bool answered)
{
	double now = agentd_wall_now();

	health_lock(a->health);
	if (!error) {
		a->health->dir_alive = now;
		if (answered)
			a->health->dir_answered = now;
	} else {
		a->health->dir_failed = now;
		snprintf(a->health->dir_error, sizeof(a->health->dir_error), "%s", error);
	}
	health_unlock(a->health);
}

void health_store(struct agentd *a, const char *error)
{
	health_lock(a->health);
	a->health->store_failed = error != NULL;
	if (error)
		snprintf(a->health->store_error, sizeof(a->health->store_error), "%s", error);
	health_unlock(a->health);
}

/* Whether the last thing known of the directory is a failure newer than any answer. */
bool health_doubts_directory(struct agentd *a, double *answered)
{
	bool doubt;

	struct health h;

	health_copy(a, &h);
	doubt = h.dir_failed >= h.dir_answered;
	*answered = h.dir_answered;
	return doubt;
}

/* /healthz: 200 or 503, and what is known, one line each; no request to anything. */
bool health_directory_up(struct agentd *a)
{
	struct health h;

	health_copy(a, &h);
	return !(h.dir_failed >= h.dir_alive && agentd_wall_now() - h.dir_alive > HEALTH_GRACE);
}

int health_render(struct agentd *a, bool detail, struct sbuf *out)
{
	struct snapshot *s = agentd_snap_get(a);
	struct health h;
	double now = agentd_wall_now();
	bool dir_down, ok, intake_failed;
	char intake_error[sizeof(intake.error)];

	health_copy(a, &h);
	pthread_mutex_lock(&intake.mu);
	intake_failed = intake.failed;
	memcpy(intake_error, intake.error, sizeof(intake_error));
	pthread_mutex_unlock(&intake.mu);
	dir_down = h.dir_failed >= h.dir_alive && now - h.dir_alive > HEALTH_GRACE;
	ok = !dir_down && !h.store_failed && !intake_failed;
	sbuf_adds(out, ok ? "ok\n" : "unavailable\n");
	if (!detail)
		goto cleanup;
	if (dir_down && h.dir_alive > 0)
		sbuf_addf(out, "directory %s: unreachable for %.0f s: %s\n", s->cfg->ldap.uri, now - h.dir_alive,
		          h.dir_error);
	else if (dir_down)
		sbuf_addf(out, "directory %s: unreachable: %s\n", s->cfg->ldap.uri, h.dir_error);
	else if (h.dir_answered > 0)
		sbuf_addf(out, "directory %s: ok (last answer %.0f s ago)\n", s->cfg->ldap.uri, now - h.dir_answered);
	else
		sbuf_addf(out, "directory %s: ok\n", s->cfg->ldap.uri);
	if (intake_failed)
		sbuf_addf(out, "state store: deliveries cannot be stored (answered 503): %s\n", intake_error);
	if (h.store_failed)
		sbuf_addf(out, "%s\n", h.store_error);
	else if (!intake_failed)
		sbuf_adds(out, "state store: ok\n");
	sbuf_addf(out, "queue: %ld pending, %ld held, %ld dead\n", h.pending, h.held, h.dead);
cleanup:
	agentd_snap_put(a, s);
	return ok ? 200 : 503;
}

/* The committer says how each commit went: the store is healthy while they succeed. */
void monitor_commit_observed(double seconds, const char *error, void *ctx)
{
	health_store(ctx, error);
	metrics_commit_seconds(seconds);
}

/* The receiver's commits of deliveries: a failure (answered 503) stands until one goes through,
 * whatever the daemon's own checks of the store find meanwhile. */
void monitor_intake_observed(double seconds, const char *error, void *ctx)
{
	(void)ctx;
	pthread_mutex_lock(&intake.mu);
	intake.failed = error != NULL;
	if (error)
		snprintf(intake.error, sizeof(intake.error), "%s", error);
	pthread_mutex_unlock(&intake.mu);
	metrics_commit_seconds(seconds);
}

/* ---- the monitor: health without a request per probe ------------------------ */

struct watch {
	const struct snapshot *seen; /* the snapshot lw was opened with */
	struct ldapw *lw;
	double next_try; /* wall time of the next connection attempt */
	double backoff;
	double store_checked;
};

/* Keeps one quiet connection open: while its socket stays open and nothing
 * says otherwise, the directory is there; a request is sent only when the
 * connection was closed, when a worker saw a failure, or after PROBE_IDLE
 * without any answer. */
static void watch_directory(struct agentd *a, const struct snapshot *s, struct watch *w, double now)
{
	static const char *const none[] = { "1.1", NULL };
	struct ldapw_entries e;
	struct ldapw_error le;
	double answered;

	if (w->seen != s) {
		ldapw_close(w->lw);
		w->lw = NULL;
		w->seen = s;
		w->next_try = 0;
	}
	if (w->lw) {
		bool doubt = health_doubts_directory(a, &answered);
		int alive = ldapw_alive(w->lw);
		if (alive == 1 && !doubt && now - answered < PROBE_IDLE) {
			health_directory(a, NULL, false);
			return;
		}
		if (alive != 0 && ldapw_read(w->lw, "", none, &e, &le) == 0) {
			ldapw_entries_free(&e);
			health_directory(a, NULL, true);
			return;
		}
		ldapw_close(w->lw); /* closed by the server: connect again now */
		w->lw = NULL;
		w->next_try = 0;
		w->backoff = 0;
	}
	if (now < w->next_try)
		return;
	if (ldapw_open(s->cfg, &w->lw, &le) == 0) {
		health_directory(a, NULL, true);
		w->backoff = 0;
		return;
	}
	w->lw = NULL;
	health_directory(a, le.text, false);
	w->backoff = w->backoff == 0 ? 1.0 : fmin(w->backoff * 2, BACKOFF_MAX);
	w->next_try = now + w->backoff;
}

/* The store: a write check now and then (more often while it fails), and the queue's counts. */
static void watch_store(struct agentd *a, struct store *st, struct queue *q, struct watch *w, double now)
{
	struct sbuf err;
	struct health h;
	long pending, dead, held;

	sbuf_init(&err);
	health_copy(a, &h);
	if (h.store_failed || now - w->store_checked >= STORE_PROBE_EVERY) {
		w->store_checked = now;
		health_store(a, store_probe(st, &err) < 0 ? sbuf_str(&err) : NULL);
	}
	sbuf_reset(&err);
	if (queue_counts(q, &pending, &dead, &held, &err) == 0) {
		health_lock(a->health);
		a->health->pending = pending;
		a->health->dead = dead;
		a->health->held = held;
		health_unlock(a->health);
	}
	sbuf_free(&err);
}

void *monitor_main(void *arg)
{
	struct agentd *a = arg;
	struct watch w = { 0 };
	struct store *st = NULL;
	struct queue *q = NULL;
	struct sbuf err;
	bool go_on = true;

	sbuf_init(&err);
	{
		struct snapshot *s = agentd_snap_get(a);
		if (store_open(s->cfg->state_dir, &st, &err) < 0 || queue_open(s->cfg->state_dir, &q, &err) < 0)
			log_error("monitor: %s", sbuf_str(&err));
		agentd_snap_put(a, s);
	}
	if (st)
		store_set_busy_timeout(st, 1000);
	while (go_on && st && q) {
		struct snapshot *s = agentd_snap_get(a);
		struct timespec ts;
		double now = agentd_wall_now();
		watch_directory(a, s, &w, now);
		watch_store(a, st, q, &w, now);
		agentd_snap_put(a, s);
		pthread_mutex_lock(&a->mu);
		/* the condition is broadcast at every commit: wait the whole period all the same */
		agentd_deadline_in(&ts, MONITOR_EVERY);
		while (!a->stop && pthread_cond_timedwait(&a->cv, &a->mu, &ts) == 0)
			;
		go_on = !a->stop;
		pthread_mutex_unlock(&a->mu);
	}
	ldapw_close(w.lw);
	store_close(st);
	queue_close(q);
	sbuf_free(&err);
	return NULL;
}

