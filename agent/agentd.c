#include "build.h"

#include "daemon.h"

#include "agentd.h"
#include "common/diag.h"
#include "common/log.h"
#include "common/notify.h"
#include "metrics.h"
#include "sandbox.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- snapshots ------------------------------------------------------------ */

static void snapshot_free(struct snapshot *s)
{
	if (!s)
		return;
	mapping_free(s->m);
	config_free(s->cfg);
	secret_free(&s->challenge);
	free(s->prefix);
	free(s);
}

static char *url_path(const char *url)
{
	CURLU *u = curl_url();
	char *path = NULL, *out = NULL;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
		size_t n = strlen(path);
		while (n > 0 && path[n - 1] == '/')
			n--;
		out = strndup(path, n);
	}
	curl_free(path);
	curl_url_cleanup(u);
	return out;
}

/* Loads configuration, mapping and challenge; mistakes go to d. */
int agentd_snapshot_load(const char *path, struct snapshot **out, struct diag *d)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	char err[512];
	int rc = -1;

	*out = NULL;
	if (!s)
		return -1;
	s->refs = 1;
	if (config_load(path, &s->cfg, d) < 0 || mapping_load(s->cfg->mapping, &s->m, d) < 0)
		goto cleanup;
	if (secret_read_file(s->cfg->webhooks.challenge_file, &s->challenge, err, sizeof(err)) < 0) {
		diag_add(d, path, 0, 0, "webhooks.challenge_file", "%s", err);
		goto cleanup;
	}
	s->related_kinds = related_needs(s->m);
	s->prefix = url_path(s->cfg->webhooks.public_url);
	if (!s->prefix) {
		diag_add(d, path, 0, 0, "webhooks.public_url", "cannot read the path of %s", s->cfg->webhooks.public_url);
		goto cleanup;
	}
	*out = s;
	s = NULL;
	rc = 0;
cleanup:
	snapshot_free(s);
	return rc;
}

struct snapshot *agentd_snap_get(struct agentd *a)
{
	struct snapshot *s;

	pthread_mutex_lock(&a->snap_mu);
	s = a->snap;
	s->refs++;
	pthread_mutex_unlock(&a->snap_mu);
	return s;
}

void agentd_snap_put(struct agentd *a, struct snapshot *s)
{
	bool last;

	pthread_mutex_lock(&a->snap_mu);
	last = --s->refs == 0;
	pthread_mutex_unlock(&a->snap_mu);
	if (last)
		snapshot_free(s);
}

/* ---- life cycle ----------------------------------------------------------- */

void agentd_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* a file size limit reached is a failed write (EFBIG, answered 503), not the end of the process */
	signal(SIGXFSZ, SIG_IGN);
}

static void log_diag(struct diag *d, const char *what)
{
	char line[2048];
	FILE *null = fopen("/dev/null", "w");

	if (null) {
		diag_print(d, null); /* sorts */
		fclose(null);
	}
	log_error("%s", what);
	for (size_t i = 0; i < d->n; i++) {
		diag_format(d, i, line, sizeof(line));
		log_error("%s", line);
	}
}

/* A new receiver reads the new configuration; the old one stops taking
 * connections once the new one serves, and finishes what it has. */
static void restart_receiver(struct agentd *a)
{
	struct receiver *fresh = NULL, *old = a->rx;
	struct sbuf err;

	sbuf_init(&err);
	if (receiver_spawn(a, &fresh, &err) < 0) {
		log_error("reload: %s; the receiver with the previous configuration goes on", sbuf_str(&err));
	} else {
		a->rx = fresh;
		receiver_retire(old);
	}
	sbuf_free(&err);
}

static void reload(struct agentd *a)
{
	struct snapshot *n = NULL, *old;
	struct diag d;

	diag_init(&d);
	if (agentd_snapshot_load(a->config_path, &n, &d) < 0) {
		log_diag(&d, "reload refused: the new configuration or mapping has mistakes; the running one stays");
		diag_free(&d);
		return;
	}
	diag_free(&d);
	pthread_mutex_lock(&a->snap_mu);
	old = a->snap;
	a->snap = n;
	pthread_mutex_unlock(&a->snap_mu);
	restart_receiver(a);
	if (strcmp(old->cfg->webhooks.listen, n->cfg->webhooks.listen) != 0 ||
	    strcmp(old->cfg->state_dir, n->cfg->state_dir) != 0)
		log_warn("reload: webhooks.listen and state_dir take effect at the next start");
	log_set_level((enum log_level)n->cfg->log.level);
	log_info("configuration and mapping reloaded (%s, %s)", n->cfg->path, n->m->path);
	agentd_snap_put(a, old);
	workers_wake(a);
}

/* One agent per state folder: the lock is taken before anything is written. */
static int take_state_dir(struct agentd *a, struct sbuf *err)
{
	const char *dir = a->snap->cfg->state_dir;
	struct statedir_holder h;
	char who[64];
	int r;

	if (statedir_prepare(dir, err) < 0 || (r = statedir_lock(dir, &a->lock, &h, err)) < 0)
		return -1;
	if (r == 0)
		return 0;
	statedir_holder_text(&h, who, sizeof(who));
	sbuf_addf(err,
	          "the state folder %s is in use by %s: one agent per state folder (two would answer and apply the same "
	          "deliveries, and take each other's webhook subscriptions); stop that one, or give this one its own "
	          "state_dir",
	          dir, who);
	return -1;
}

/* Both ports, bound before the store is opened: a port in use ends the start having written nothing. */
static int bind_listeners(struct agentd *a, struct sbuf *err)
{
	const struct config *cfg = a->snap->cfg;
	struct sbuf e;
	int rc = -1;

	sbuf_init(&e);
	if (http_bind(cfg->webhooks.listen, &a->listen_fd, &e) < 0) {
		sbuf_addf(err, "webhooks.listen: %s", sbuf_str(&e));
		goto cleanup;
	}
	if (cfg->webhooks.metrics_listen && http_bind(cfg->webhooks.metrics_listen, &a->metrics_fd, &e) < 0) {
		sbuf_addf(err, "webhooks.metrics_listen: %s", sbuf_str(&e));
		goto cleanup;
	}
	rc = 0;
cleanup:
	sbuf_free(&e);
	return rc;
}

/* The program's own path, to start the receiver from. */
static int find_self(struct agentd *a, struct sbuf *err)
{
	ssize_t n = readlink("/proc/self/exe", a->self_exe, sizeof(a->self_exe) - 1);

	if (n <= 0 || (size_t)n >= sizeof(a->self_exe) - 1) {
		sbuf_addf(err, "cannot find this program's own file in /proc/self/exe: %s", n < 0 ? strerror(errno) : "too long");
		return -1;
	}
	a->self_exe[n] = '\0';
	return 0;
}

/* Root is needed for the ports and the state folder only: with `user:` it
 * is given up here, for good, before anything else is opened. */
static int drop_privileges(struct agentd *a, struct sbuf *err)
{
	const struct config *cfg = a->snap->cfg;

	if (!cfg->user) {
		if (geteuid() == 0)
			log_warn("running as root: set `user:` in %s to the account the agent should run as once its ports "
			         "are bound",
			         cfg->path);
	} else if (sandbox_give_state(cfg->state_dir, cfg->user, err) < 0 || sandbox_drop_user(cfg->user, err) < 0) {
		return -1;
	} else {
		log_info("running as %s (uid %u, gid %u)", cfg->user, (unsigned)getuid(), (unsigned)getgid());
	}
	/* the credentials this process will hold are not for another process of the same user to read */
	sandbox_no_tracing();
	return 0;
}

/* The store handles: the committer's (deliveries the agent makes itself), each worker's. */
static int open_stores(struct agentd *a, struct worker **ws, struct sbuf *err)
{
	const char *dir = a->snap->cfg->state_dir;

	if (queue_open(dir, &a->side_q, err) < 0 || queue_forget_waits(a->side_q, err) < 0)
		return -1;
	queue_set_busy_timeout(a->side_q, 2000);
	if (queue_committer_start(dir, &a->committer, err) < 0)
		return -1;
	queue_committer_observe(a->committer, monitor_commit_observed, a);
	queue_committer_notify(a->committer, workers_wake, a);
	a->nslots = (size_t)a->snap->cfg->queue.workers;
	*ws = calloc(a->nslots, sizeof(**ws));
	a->workers = calloc(a->nslots, sizeof(*a->workers));
	if (!*ws || !a->workers) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < a->nslots; i++) {
		(*ws)[i].a = a;
		if (queue_open(dir, &(*ws)[i].q, err) < 0 || store_open(dir, &(*ws)[i].st, err) < 0 ||
		    queue_set_relaxed((*ws)[i].q, err) < 0 || store_set_relaxed((*ws)[i].st, err) < 0)
			return -1;
	}
	return 0;
}

/* Workers, the monitor, the scheduler, subscription upkeep and the reconciler:
 * only once everything before has succeeded. */
static int start_threads(struct agentd *a, struct worker *ws, struct sbuf *err)
{
	for (size_t i = 0; i < a->nslots; i++) {
		if (pthread_create(&a->workers[i], NULL, workers_main, &ws[i]) != 0) {
			sbuf_adds(err, "cannot start the worker threads");
			return -1;
		}
		a->nworkers++;
	}
	a->monitor_started = pthread_create(&a->monitor, NULL, monitor_main, a) == 0;
	a->scheduler_started = pthread_create(&a->scheduler, NULL, timers_scheduler_main, a) == 0;
	a->subscriber_started = pthread_create(&a->subscriber, NULL, timers_subscriber_main, a) == 0;
	a->reconciler_started = pthread_create(&a->reconciler, NULL, timers_reconciler_main, a) == 0;
	if (!a->monitor_started || !a->scheduler_started || !a->subscriber_started || !a->reconciler_started) {
		sbuf_adds(err, "cannot start the daemon's threads");
		return -1;
	}
	return 0;
}

/* Until SIGTERM or SIGINT: SIGHUP reloads, SIGUSR1 asks for a reconcile. */
static void wait_for_signals(struct agentd *a, const sigset_t *set)
{
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_info("SIGHUP: reloading %s", a->config_path);
			notify_reloading();
			reload(a);
			notify_ready("reloaded");
		} else if (sig == SIGUSR1) {
			log_info("SIGUSR1: a full reconcile is requested");
			timers_request_reconcile(a, "SIGUSR1");
		} else {
			log_info("%s: stopping: no new deliveries; finishing what is in flight",
			         sig == SIGTERM ? "SIGTERM" : "SIGINT");
			notify_stopping();
			return;
		}
	}
}

/* Stops what was started, in the reverse order: no new deliveries first. */
static void stop_all(struct agentd *a, struct worker *ws)
{
	receiver_retire(a->rx);
	a->rx = NULL;
	a->stopping = 1;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_broadcast(&a->cv);
	pthread_cond_broadcast(&a->work_cv);
	pthread_mutex_unlock(&a->mu);
	for (size_t i = 0; ws && a->workers && i < a->nworkers; i++)
		pthread_join(a->workers[i], NULL);
	if (a->monitor_started)
		pthread_join(a->monitor, NULL);
	if (a->scheduler_started)
		pthread_join(a->scheduler, NULL);
	if (a->subscriber_started)
		pthread_join(a->subscriber, NULL);
	if (a->reconciler_started)
		pthread_join(a->reconciler, NULL);
	for (size_t i = 0; ws && i < a->nslots; i++) {
		ldapw_close(ws[i].lw);
		factorial_close(ws[i].api);
		queue_close(ws[i].q);
		store_close(ws[i].st);
		strmap_free(&ws[i].claimed);
	}
	queue_committer_stop(a->committer);
	queue_close(a->side_q);
	if (a->listen_fd >= 0)
		close(a->listen_fd);
	if (a->metrics_fd >= 0)
		close(a->metrics_fd);
	if (a->shared_fd >= 0)
		close(a->shared_fd);
	monitor_unshare(a);
	statedir_unlock(a->lock);
}

/* Configuration, secrets, the state folder's lock, the ports, the store; only
 * then workers, timers and the start-up reconcile: a start that fails has
 * written nothing, neither to the directory, nor to Factorial, nor to the store. */
int agentd_run(const char *config_path)
{
	struct agentd a = { .config_path = config_path, .listen_fd = -1, .metrics_fd = -1, .shared_fd = -1 };
	struct worker *ws = NULL;
	struct diag d;
	struct sbuf err;
	sigset_t set;
	int rc = 1;

	diag_init(&d);
	sbuf_init(&err);
	pthread_mutex_init(&a.snap_mu, NULL);
	pthread_mutex_init(&a.mu, NULL);
	pthread_cond_init(&a.cv, NULL);
	pthread_cond_init(&a.work_cv, NULL);
	pthread_mutex_init(&a.groups_mu, NULL);
	pthread_mutex_init(&a.guard_mu, NULL);
	pthread_mutex_init(&a.related_mu, NULL);
	strmap_init(&a.busy);
	if (agentd_snapshot_load(config_path, &a.snap, &d) < 0) {
		diag_print(&d, stderr);
		rc = 2;
		goto cleanup;
	}
	log_setup((enum log_level)a.snap->cfg->log.level, (enum log_target)a.snap->cfg->log.target, true);
	srand((unsigned)(time(NULL) ^ getpid()));
	/* signals are taken by sigwait(); every thread started below inherits the mask */
	agentd_block_signals(&set);
	if (find_self(&a, &err) < 0 || take_state_dir(&a, &err) < 0 || bind_listeners(&a, &err) < 0 ||
	    monitor_share(&a, &a.shared_fd, &err) < 0 || drop_privileges(&a, &err) < 0 || open_stores(&a, &ws, &err) < 0 ||
	    receiver_spawn(&a, &a.rx, &err) < 0) {
		log_error("cannot start: %s", sbuf_str(&err));
		goto cleanup;
	}
	if (start_threads(&a, ws, &err) < 0) {
		log_error("%s", sbuf_str(&err));
		goto cleanup;
	}
	log_info("listening on %s for %zu subscription types under %s/; state in %s; %zu workers",
	         a.snap->cfg->webhooks.listen, a.snap->cfg->webhooks.subscriptions.n, a.snap->prefix,
	         a.snap->cfg->state_dir, a.nworkers);
	notify_ready("listening");
	wait_for_signals(&a, &set);
	rc = a.receiver_lost ? 1 : 0;
cleanup:
	if (a.snap)
		stop_all(&a, ws);
	if (rc == 0)
		log_info("stopped");
	free(ws);
	free(a.workers);
	if (a.snap)
		agentd_snap_put(&a, a.snap);
	strmap_free(&a.busy);
	pthread_mutex_destroy(&a.snap_mu);
	pthread_mutex_destroy(&a.mu);
	pthread_cond_destroy(&a.cv);
	pthread_cond_destroy(&a.work_cv);
	pthread_mutex_destroy(&a.groups_mu);
	pthread_mutex_destroy(&a.guard_mu);
	pthread_mutex_destroy(&a.related_mu);
	related_free(a.related);
	diag_free(&d);
	sbuf_free(&err);
	return rc;
}
