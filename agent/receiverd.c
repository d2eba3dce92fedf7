/*
 * The receiver process, and the daemon's side of it.
 *
 * The process that parses HTTP holds the challenge and the webhook
 * listener's certificate; it never holds the LDAP bind password, the API
 * key or OAuth tokens, nor any file of the daemon's.  The daemon starts it
 * with fork() and execve() of its own program, so that it begins with a
 * memory of its own, and hands it four descriptors:
 *
 *   3  the webhook listener          5  a stream socket to the daemon (wire.h)
 *   4  the status listener, or none  6  the memory the daemon publishes
 *                                      health and metrics in (monitor_share)
 *
 * and the configuration's path in FACTORIAL_LDAP_AGENT_RECEIVER.  It reads
 * its configuration, becomes an account of its own when started as root
 * (receiver_user, else nobody), shuts itself in (sandbox_confine: no file
 * can be opened, no socket made), serves, and says WIRE_READY.  Each
 * delivery it takes is sent to the daemon, which checks it again, commits
 * it and answers (intake.c); a body it refuses is reported for the rejected
 * log.  A message the daemon does not take ends the receiver.  It dies with
 * the daemon (PR_SET_PDEATHSIG); SIGTERM stops it after the requests in
 * flight.  On SIGHUP the daemon starts a new receiver with the new
 * configuration and retires the old one once the new one serves.
 */
#include "build.h"

#include "daemon.h"

#include "agentd.h"
#include "common/diag.h"
#include "common/log.h"
#include "sandbox.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RX_ENV "FACTORIAL_LDAP_AGENT_RECEIVER"
#define RX_TITLE "factorial-ldap-agent: receiver"
enum { FD_LISTEN = 3, FD_STATUS = 4, FD_PIPE = 5, FD_SHARED = 6, READY_WAIT = 30 };

/* ---- the daemon's side ---------------------------------------------------- */

struct receiver {
	struct agentd *a;
	pid_t pid;
	int fd; /* the daemon's end of its socket */
	size_t max_len; /* the largest message taken: a body as large as the configuration allows */
	pthread_t watch;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool ready, exited, retiring;
	int status; /* waitpid()'s, once exited */
};

static void describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exit code %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "status %d", status);
}

static void said_ready(void *ctx)
{
	struct receiver *r = ctx;

	pthread_mutex_lock(&r->mu);
	r->ready = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Takes the receiver's messages until it ends; one the daemon does not take ends it. */
static void *watch_main(void *arg)
{
	struct receiver *r = arg;
	char how[64];
	struct sbuf err;
	int status = 0;

	sbuf_init(&err);
	if (intake_serve(r->a, r->fd, r->max_len, said_ready, r, &err) < 0) {
		log_error("the receiver process (pid %d) broke the conversation with the daemon (%s): it is stopped",
		          (int)r->pid, sbuf_str(&err));
		kill(r->pid, SIGKILL);
	}
	sbuf_free(&err);
	while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&r->mu);
	r->exited = true;
	r->status = status;
	pthread_cond_broadcast(&r->cv);
	if (!r->retiring && r->ready) {
		describe_status(status, how, sizeof(how));
		log_error("the receiver process (pid %d) ended (%s): the agent stops, and answers nothing until it is "
		          "started again",
		          (int)r->pid, how);
		r->a->receiver_lost = true;
		kill(getpid(), SIGTERM);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

/* In the child, between fork() and execve(): system calls only. */
static void become_receiver(struct agentd *a, int pipe_w, char **env)
{
	static char title[] = RX_TITLE;
	char *const argv[] = { title, NULL };
	int lis, st = -1, pw, sh;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* out of the way of 3..6 first, then into place (dup2 clears close-on-exec) */
	lis = fcntl(a->listen_fd, F_DUPFD_CLOEXEC, 10);
	if (a->metrics_fd >= 0)
		st = fcntl(a->metrics_fd, F_DUPFD_CLOEXEC, 10);
	pw = fcntl(pipe_w, F_DUPFD_CLOEXEC, 10);
	sh = fcntl(a->shared_fd, F_DUPFD_CLOEXEC, 10);
	if (lis < 0 || pw < 0 || sh < 0 || (a->metrics_fd >= 0 && st < 0) || dup2(lis, FD_LISTEN) < 0 ||
	    dup2(pw, FD_PIPE) < 0 || dup2(sh, FD_SHARED) < 0 || (st >= 0 && dup2(st, FD_STATUS) < 0))
		_exit(127);
	if (st < 0)
		close(FD_STATUS);
	close_range(FD_SHARED + 1, ~0U, 0);
	execve(a->self_exe, argv, env);
	_exit(127);
}

/* environ and the configuration's path, made before fork(). */
static char **receiver_env(const char *config_path)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], RX_ENV "=", sizeof(RX_ENV)) != 0)
			env[k++] = environ[i];
	if (asprintf(&env[k], RX_ENV "=%s", config_path) < 0) {
		free(env);
		return NULL;
	}
	return env;
}

static void receiver_free(struct receiver *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

void receiver_retire(struct receiver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->retiring = true;
	if (!r->exited)
		kill(r->pid, SIGTERM);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->watch, NULL);
	receiver_free(r);
}

int receiver_spawn(struct agentd *a, struct receiver **out, struct sbuf *err)
{
	struct receiver *r = calloc(1, sizeof(*r));
	char **env = receiver_env(a->config_path);
	int p[2] = { -1, -1 }, rc = -1;
	struct timespec until;
	bool watching = false;

	*out = NULL;
	if (!r || !env) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	r->a = a;
	r->fd = -1;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	{
		struct snapshot *s = agentd_snap_get(a);
		r->max_len = (size_t)s->cfg->webhooks.max_body_bytes + 4096;
		agentd_snap_put(a, s);
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) {
		sbuf_addf(err, "cannot start the receiver: %s", strerror(errno));
		goto cleanup;
	}
	r->pid = fork();
	if (r->pid < 0) {
		sbuf_addf(err, "cannot start the receiver: %s", strerror(errno));
		goto cleanup;
	}
	if (r->pid == 0)
		become_receiver(a, p[1], env);
	close(p[1]);
	p[1] = -1;
	r->fd = p[0];
	p[0] = -1;
	if (pthread_create(&r->watch, NULL, watch_main, r) != 0) {
		kill(r->pid, SIGKILL);
		waitpid(r->pid, NULL, 0);
		sbuf_adds(err, "cannot start the receiver: no thread to watch it");
		goto cleanup;
	}
	watching = true;
	agentd_deadline_in(&until, READY_WAIT);
	pthread_mutex_lock(&r->mu);
	while (!r->ready && !r->exited && pthread_cond_timedwait(&r->cv, &r->mu, &until) == 0)
		;
	if (!r->ready) {
		char how[64];
		if (r->exited)
			describe_status(r->status, how, sizeof(how));
		else
			snprintf(how, sizeof(how), "not serving after %d s", READY_WAIT);
		sbuf_addf(err, "the receiver process could not start (%s); its reason is logged above", how);
	}
	pthread_mutex_unlock(&r->mu);
	if (!r->ready)
		goto cleanup;
	*out = r;
	r = NULL;
	rc = 0;
cleanup:
	if (r && watching)
		receiver_retire(r);
	else
		receiver_free(r);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	if (env) {
		for (size_t i = 0; env[i]; i++)
			if (strncmp(env[i], RX_ENV "=", sizeof(RX_ENV)) == 0)
				free(env[i]);
		free(env);
	}
	return rc;
}

/* ---- the receiver's side --------------------------------------------------- */

/* The webhook listener's certificate and key. */
static int read_tls(const struct config *cfg, char **cert, struct secret *key, struct sbuf *err)
{
	FILE *fp;
	struct sbuf b;
	char chunk[4096], e[512];
	size_t n;

	if (!cfg->webhooks.tls_cert_file)
		return 0;
	fp = fopen(cfg->webhooks.tls_cert_file, "re");
	if (!fp) {
		sbuf_addf(err, "webhooks.tls_cert_file: cannot read %s: %s", cfg->webhooks.tls_cert_file, strerror(errno));
		return -1;
	}
	sbuf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sbuf_add(&b, chunk, n);
	fclose(fp);
	*cert = sbuf_detach(&b);
	if (secret_read_file(cfg->webhooks.tls_key_file, key, e, sizeof(e)) < 0) {
		sbuf_addf(err, "webhooks.tls_key_file: %s", e);
		return -1;
	}
	return 0;
}

static int serve(struct listener *l, const struct config *cfg, const char *listen, int fd, const char *cert,
                 struct secret *key, struct http_server **out, struct sbuf *err)
{
	struct http_callbacks cb = { .precheck = receiver_precheck, .handle = receiver_handle,
	                             .refused = receiver_refused, .tick = receiver_tick, .ctx = l };
	struct http_options o = {
		.listen = listen,
		.fd = fd,
		.max_body = (size_t)cfg->webhooks.max_body_bytes,
		.timeout = (unsigned)cfg->webhooks.request_timeout,
		.header_deadline = (unsigned)cfg->webhooks.header_timeout,
		.body_deadline = (unsigned)cfg->webhooks.request_timeout,
		.threads = 8,
		.max_connections = (unsigned)cfg->webhooks.max_connections,
		.max_per_address = (unsigned)cfg->webhooks.max_connections_per_address,
	};

	if (cert && !l->status_only) {
		o.tls_cert = cert;
		o.tls_key = key->data;
	}
	return http_start(&o, &cb, out, err);
}

/* The four descriptors are what they should be. */
static int check_descriptors(bool *status_listener, struct sbuf *err)
{
	struct stat st;

	if (fstat(FD_LISTEN, &st) < 0 || !S_ISSOCK(st.st_mode) || fstat(FD_PIPE, &st) < 0 || !S_ISSOCK(st.st_mode) ||
	    fstat(FD_SHARED, &st) < 0 || !S_ISREG(st.st_mode)) {
		sbuf_adds(err, "started without the daemon's descriptors (the receiver is started by `run`, not by hand)");
		return -1;
	}
	*status_listener = fstat(FD_STATUS, &st) == 0 && S_ISSOCK(st.st_mode);
	return 0;
}

/* Everything it needs from outside the state folder, read before it is shut in. */
static int receiver_open(struct agentd *a, bool status_listener, char **cert, struct secret *key, struct sbuf *err)
{
	const struct config *cfg = a->snap->cfg;
	struct sbuf warn;
	int rc = -1;

	sbuf_init(&warn);
	if (monitor_attach(a, FD_SHARED, err) < 0 || read_tls(cfg, cert, key, err) < 0)
		goto cleanup;
	tzset(); /* the time zone file, read now */
	/* started as root (the daemon keeps root without `user:`), it becomes an account of its own */
	if (sandbox_confine(cfg->receiver_user ? cfg->receiver_user : "nobody", &warn, err) < 0)
		goto cleanup;
	/* a change of user clears the signal the daemon's end sends: asked again, and the daemon
	 * checked to be still there (it may have ended in between) */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != a->daemon_pid) {
		sbuf_adds(err, "the daemon is gone");
		goto cleanup;
	}
	if (warn.len)
		log_warn("receiver: %s", sbuf_str(&warn));
	/* threads only from here: each inherits the confinement */
	if (wire_client_start(FD_PIPE, &a->wire, err) < 0)
		goto cleanup;
	a->main_l.a = a;
	a->status_l.a = a;
	a->status_l.status_only = true;
	if (serve(&a->main_l, cfg, cfg->webhooks.listen, FD_LISTEN, *cert, key, &a->http, err) < 0)
		goto cleanup;
	if (status_listener &&
	    serve(&a->status_l, cfg, cfg->webhooks.metrics_listen, FD_STATUS, NULL, key, &a->mhttp, err) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	sbuf_free(&warn);
	return rc;
}

int receiverd_main(const char *config_path)
{
	struct agentd a = { .config_path = config_path, .listen_fd = -1, .metrics_fd = -1, .shared_fd = -1 };
	struct secret key = { 0 };
	char *cert = NULL;
	bool status_listener = false;
	struct diag d;
	struct sbuf err;
	sigset_t set;
	int sig, rc = 1;

	diag_init(&d);
	sbuf_init(&err);
	prctl(PR_SET_NAME, "fla-receiver");
	pthread_mutex_init(&a.snap_mu, NULL);
	agentd_block_signals(&set);
	a.daemon_pid = getppid();
	if (a.daemon_pid == 1)
		goto cleanup; /* the daemon is gone already */
	if (agentd_snapshot_load(config_path, &a.snap, &d) < 0) {
		diag_print(&d, stderr);
		goto cleanup;
	}
	log_setup((enum log_level)a.snap->cfg->log.level, (enum log_target)a.snap->cfg->log.target, true);
	if (check_descriptors(&status_listener, &err) < 0 || receiver_open(&a, status_listener, &cert, &key, &err) < 0) {
		log_error("receiver: cannot start: %s", sbuf_str(&err));
		goto cleanup;
	}
	secret_free(&key);
	if (wire_client_say(a.wire, WIRE_READY, NULL, NULL, 0, &err) < 0) {
		log_error("receiver: %s", sbuf_str(&err));
		goto cleanup;
	}
	/* SIGHUP and SIGUSR1 are the daemon's to act on; a terminal's ^C reaches both */
	while (sigwait(&set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
		;
	rc = 0;
cleanup:
	http_quiesce(a.http);
	http_quiesce(a.mhttp);
	http_stop(a.http);
	http_stop(a.mhttp);
	wire_client_stop(a.wire);
	monitor_unshare(&a);
	free(cert);
	secret_free(&key);
	if (a.snap)
		agentd_snap_put(&a, a.snap);
	pthread_mutex_destroy(&a.snap_mu);
	diag_free(&d);
	sbuf_free(&err);
	return rc;
}

const char *receiverd_requested(void)
{
	const char *path = getenv(RX_ENV);
	return path && *path ? path : NULL;
}
