#include "build.h"

#include "http.h"

#include "common/log.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A connection serves at most this many requests, and is asked to close
 * once this old: kept-alive connections do not last for ever. */
enum { MAX_REQUESTS_PER_CONNECTION = 1000, MAX_CONNECTION_SECONDS = 120, ROOM_SLACK = 64 };

/* What a connection is waiting for, and so which deadline applies. */
enum phase { WAIT_HEADERS, WAIT_BODY, ANSWERING };

/* One open connection, from libmicrohttpd's "started" notice to its "closed"
 * notice (which comes before it closes the socket, so fd is never another's). */
struct watch {
	struct watch *prev, *next;
	int fd;
	enum phase phase;
	time_t since;       /* monotonic seconds the phase began */
	time_t opened;      /* monotonic seconds the connection opened */
	unsigned requests;  /* requests begun on it */
	bool cut;           /* shut down already (by the reaper, or to make room) */
	bool delivered;     /* a POST on it was taken (200): a sender that holds the challenge */
	struct http_server *server;
};

struct http_server {
	struct MHD_Daemon *d;
	struct http_callbacks cb;
	size_t max_body;
	char *tls_cert;
	char *tls_key;
	char *listen;
	unsigned header_deadline, body_deadline;
	unsigned max_connections; /* open at once; the newest past it makes room (see on_connection) */
	unsigned nwatches;
	pthread_mutex_t lock; /* guards the watch list and stopping */
	pthread_cond_t wake;
	struct watch *watches;
	bool reaper_started, stopping;
	unsigned long made_room; /* connections closed to make room, since the reaper last said so */
	pthread_t reaper;
};

struct request {
	bool answered; /* a response was queued before the body was read */
	struct sbuf body;
	char addr[48]; /* the client's address, as text */
};

/* The client's address of conn as text ("-" when it cannot be told). */
static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;
	socklen_t len = sa && sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);

	if (!sa || getnameinfo(sa, len, out, (socklen_t)cap, NULL, 0, NI_NUMERICHOST) != 0)
		snprintf(out, cap, "-");
}

int http_parse_listen(const char *listen, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':')
			return -1;
		hl = (size_t)(close - listen - 1);
		if (hl >= hostlen)
			return -1;
		memcpy(host, listen + 1, hl);
		host[hl] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon)
			return -1;
		hl = (size_t)(colon - listen);
		if (hl >= hostlen)
			return -1;
		memcpy(host, listen, hl);
		host[hl] = '\0';
	}
	if (strcmp(host, "*") == 0)
		host[0] = '\0';
	if (snprintf(port, portlen, "%s", colon + 1) >= (int)portlen)
		return -1;
	return 0;
}

static bool served_enough(struct MHD_Connection *c);

/* Queues the answer; close: the connection ends after it (it ends too once it has served its share). */
static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *type, const char *body, size_t len,
                              bool close)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type ? type : "text/plain; charset=utf-8");
	if (close || served_enough(c))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	rc = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return rc;
}

static const char *status_text(int status)
{
	switch (status) {
	case 200:
		return "ok\n";
	case 400:
		return "bad request\n";
	case 401:
		return "unauthorized\n";
	case 404:
		return "not found\n";
	case 405:
		return "method not allowed\n";
	case 413:
		return "payload too large\n";
	case 503:
		return "service unavailable\n";
	default:
		return "error\n";
	}
}

static enum MHD_Result answer_status(struct MHD_Connection *c, int status, bool close)
{
	const char *t = status_text(status);
	return answer(c, status, NULL, t, strlen(t), close);
}

/* ---- deadlines ----------------------------------------------------------
 * libmicrohttpd drops a connection that stays silent for the idle timeout,
 * but a client that sends one byte every few seconds is never silent.  Each
 * connection is therefore watched: its headers must be complete within
 * header_deadline seconds of it opening (or of its previous request ending),
 * and its body within body_deadline seconds of the headers.  A reaper thread
 * shuts a late connection's socket down; libmicrohttpd then sees the end of
 * the stream and closes it as usual. */

static time_t mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static struct watch *watch_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* A request begins on conn. */
static void count_request(struct http_server *s, struct MHD_Connection *conn)
{
	struct watch *w = watch_of(conn);

	if (!w)
		return;
	pthread_mutex_lock(&s->lock);
	w->requests++;
	pthread_mutex_unlock(&s->lock);
}

/* A delivery was taken on conn: its sender holds the challenge, and keeps its place. */
static void mark_delivered(struct http_server *s, struct MHD_Connection *conn)
{
	struct watch *w = watch_of(conn);

	if (!w)
		return;
	pthread_mutex_lock(&s->lock);
	w->delivered = true;
	pthread_mutex_unlock(&s->lock);
}

/* Whether conn has served its share (MAX_REQUESTS_PER_CONNECTION, MAX_CONNECTION_SECONDS). */
static bool served_enough(struct MHD_Connection *c)
{
	struct watch *w = watch_of(c);
	bool enough;

	if (!w)
		return false;
	pthread_mutex_lock(&w->server->lock);
	enough = w->requests >= MAX_REQUESTS_PER_CONNECTION || mono_now() - w->opened >= MAX_CONNECTION_SECONDS;
	pthread_mutex_unlock(&w->server->lock);
	return enough;
}

static void set_phase(struct http_server *s, struct MHD_Connection *conn, enum phase p)
{
	struct watch *w = watch_of(conn);

	if (!w)
		return;
	pthread_mutex_lock(&s->lock);
	w->phase = p;
	w->since = mono_now();
	pthread_mutex_unlock(&s->lock);
}

/*
 * Past max_connections, the newest connection makes room: the connection
 * idle the longest between two requests (a kept-alive one) is closed, else
 * one opened a second ago or more that has not yet sent a complete request
 * head, else a kept-alive one that brought a delivery (its sender holds the
 * challenge, so it goes last), else the newest itself.  A client holding many quiet keep-alive
 * connections (each asking something now and then, so no idle timeout ever
 * fires) thus cannot keep a delivery out: it is its own connections that go.
 * s->lock held.
 */
static void make_room(struct http_server *s, struct watch *newest)
{
	struct watch *kept = NULL, *fresh = NULL, *sender = NULL, *victim;
	time_t now = mono_now();

	for (struct watch *w = s->watches; w; w = w->next) {
		struct watch **pick;
		if (w == newest || w->cut || w->phase != WAIT_HEADERS)
			continue;
		if (w->requests == 0) {
			if (now - w->opened >= 1 && (!fresh || w->opened < fresh->opened))
				fresh = w;
			continue;
		}
		pick = w->delivered ? &sender : &kept; /* a real sender's kept-alive connection goes last */
		if (!*pick || w->since < (*pick)->since)
			*pick = w;
	}
	victim = kept ? kept : fresh ? fresh : sender ? sender : newest;
	shutdown(victim->fd, SHUT_RDWR);
	victim->cut = true;
	s->made_room++;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	struct http_server *s = cls;
	struct watch *w = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		w = calloc(1, sizeof(*w));
		if (!w || !ci) {
			/* unwatched, the idle timeout still applies */
			free(w);
			return;
		}
		w->fd = ci->connect_fd;
		w->server = s;
		w->phase = WAIT_HEADERS;
		w->since = w->opened = mono_now();
		pthread_mutex_lock(&s->lock);
		w->next = s->watches;
		if (s->watches)
			s->watches->prev = w;
		s->watches = w;
		if (++s->nwatches > s->max_connections)
			make_room(s, w);
		pthread_mutex_unlock(&s->lock);
		*socket_context = w;
		return;
	}
	if (!w)
		return;
	pthread_mutex_lock(&s->lock);
	s->nwatches--;
	if (w->prev)
		w->prev->next = w->next;
	else
		s->watches = w->next;
	if (w->next)
		w->next->prev = w->prev;
	pthread_mutex_unlock(&s->lock);
	free(w);
	*socket_context = NULL;
}

static void *reaper_main(void *arg)
{
	struct http_server *s = arg;
	time_t said_room = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec until;
		time_t now = mono_now();
		unsigned late_headers = 0, late_bodies = 0;
		for (struct watch *w = s->watches; w; w = w->next) {
			unsigned limit = w->phase == WAIT_HEADERS ? s->header_deadline : s->body_deadline;
			if (w->cut || w->phase == ANSWERING || now - w->since < (time_t)limit)
				continue;
			shutdown(w->fd, SHUT_RDWR);
			w->cut = true;
			if (w->phase == WAIT_HEADERS)
				late_headers++;
			else
				late_bodies++;
		}
		if (late_headers)
			log_info("http: %s: closed %u connection(s) that sent no complete request within %u s",
			         s->listen, late_headers, s->header_deadline);
		if (late_bodies)
			log_info("http: %s: closed %u connection(s) whose body took longer than %u s", s->listen,
			         late_bodies, s->body_deadline);
		if (s->made_room && now - said_room >= 5) {
			log_info("http: %s: %u connections open at once: closed %lu idle one(s) to make room", s->listen,
			         s->max_connections, s->made_room);
			s->made_room = 0;
			said_room = now;
		}
		if (s->cb.tick) {
			pthread_mutex_unlock(&s->lock);
			s->cb.tick(s->cb.ctx);
			pthread_mutex_lock(&s->lock);
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&s->wake, &s->lock, &until);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- framing -------------------------------------------------------------
 * A request whose length two readers could read two ways (a proxy in front
 * taking one, the agent the other) could hide a second request in its body.
 * libmicrohttpd prefers Transfer-Encoding when both are given and takes the
 * first of two Content-Length headers; such requests are refused before
 * anything is read as a body, and the connection closed. */

struct framing {
	unsigned lengths, encodings;
	bool chunked;
};

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct framing *f = cls;

	(void)kind;
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		f->lengths++;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		f->encodings++;
		f->chunked = value && strcasecmp(value, "chunked") == 0;
	}
	return MHD_YES;
}

/* Why the request's framing is ambiguous, or NULL. */
static const char *ambiguous_framing(struct MHD_Connection *conn)
{
	struct framing f = { 0 };

	MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
	if (f.lengths && f.encodings)
		return "both Content-Length and Transfer-Encoding";
	if (f.lengths > 1)
		return "more than one Content-Length";
	if (f.encodings > 1 || (f.encodings && !f.chunked))
		return "a Transfer-Encoding other than chunked";
	return NULL;
}

/* The request's answer is settled before (or without) reading the rest of its body. */
static void settled(struct http_server *s, struct MHD_Connection *conn, struct request *r)
{
	r->answered = true;
	set_phase(s, conn, ANSWERING);
}

static long long declared_length(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	long long len;
	char *end;

	if (!cl)
		return -1;
	errno = 0;
	len = strtoll(cl, &end, 10);
	return errno || *end || len < 0 ? -1 : len;
}

/* The head is in: framing and precheck decide whether the body is read at all. */
static enum MHD_Result begin_request(struct http_server *s, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
	const char *ch = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-factorial-wh-challenge");
	struct request *r = calloc(1, sizeof(*r));
	const char *framing;
	long long len;
	int st;

	if (!r)
		return MHD_NO;
	sbuf_init(&r->body);
	client_address(conn, r->addr, sizeof(r->addr));
	count_request(s, conn);
	*con_cls = r;
	set_phase(s, conn, WAIT_BODY);
	if ((framing = ambiguous_framing(conn)) != NULL) {
		settled(s, conn, r);
		if (s->cb.refused)
			s->cb.refused(s->cb.ctx, url, 400, framing, r->addr);
		return answer_status(conn, 400, true);
	}
	len = declared_length(conn);
	st = s->cb.precheck(s->cb.ctx, method, url, ch, len, r->addr);
	if (st == 0 && len >= 0 && (size_t)len > s->max_body)
		st = 413;
	if (st) {
		settled(s, conn, r);
		return answer_status(conn, st, false);
	}
	return MHD_YES;
}

/* A piece of the body: kept, or the request answered 413 once it grows past max_body. */
static enum MHD_Result take_body(struct http_server *s, struct MHD_Connection *conn, struct request *r,
                                 const char *url, const char *data, size_t *size)
{
	if (r->body.len + *size > s->max_body) {
		*size = 0;
		settled(s, conn, r);
		if (s->cb.refused)
			s->cb.refused(s->cb.ctx, url, 413, "body larger than webhooks.max_body_bytes", r->addr);
		return answer_status(conn, 413, false);
	}
	sbuf_add(&r->body, data, *size);
	*size = 0;
	return r->body.failed ? MHD_NO : MHD_YES;
}

/* The whole body is in: the handler answers. */
static enum MHD_Result finish_request(struct http_server *s, struct MHD_Connection *conn, struct request *r,
                                      const char *url, const char *method)
{
	struct http_reply reply = { .status = 500 };
	enum MHD_Result rc;

	set_phase(s, conn, ANSWERING);
	sbuf_init(&reply.body);
	s->cb.handle(s->cb.ctx, method, url, sbuf_str(&r->body), r->body.len, r->addr, &reply);
	if (reply.status == 200 && strcmp(method, "POST") == 0)
		mark_delivered(s, conn);
	if (reply.body.len)
		rc = answer(conn, reply.status, reply.content_type, sbuf_str(&reply.body), reply.body.len, false);
	else
		rc = answer_status(conn, reply.status, false);
	sbuf_free(&reply.body);
	r->answered = true;
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct http_server *s = cls;
	struct request *r = *con_cls;

	(void)version;
	if (!r)
		return begin_request(s, conn, url, method, con_cls);
	if (r->answered) {
		/* the answer is out; what the client still sends is not read */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size)
		return take_body(s, conn, r, url, upload_data, upload_data_size);
	return finish_request(s, conn, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	/* a kept-alive connection now waits for its next request's headers */
	set_phase(cls, conn, WAIT_HEADERS);
	if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
		log_info("http: a request stalled and was dropped (timeout)");
	if (r) {
		sbuf_free(&r->body);
		free(r);
	}
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[1024];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_debug("http: %s", buf);
}

int http_bind(const char *listen_on, int *fd, struct sbuf *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *addr = NULL;
	char host[256], port[16];
	int s = -1, one = 1, gai, rc = -1;

	*fd = -1;
	if (http_parse_listen(listen_on, host, sizeof(host), port, sizeof(port)) < 0) {
		sbuf_addf(err, "\"%s\" is not host:port", listen_on);
		goto cleanup;
	}
	gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &addr);
	if (gai != 0) {
		sbuf_addf(err, "%s: %s", listen_on, gai_strerror(gai));
		goto cleanup;
	}
	s = socket(addr->ai_family, addr->ai_socktype | SOCK_CLOEXEC, addr->ai_protocol);
	if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		sbuf_addf(err, "cannot listen on %s: %s", listen_on, strerror(errno));
		goto cleanup;
	}
	if (bind(s, addr->ai_addr, addr->ai_addrlen) < 0 || listen(s, SOMAXCONN) < 0) {
		sbuf_addf(err, "cannot listen on %s: %s%s", listen_on, strerror(errno),
		          errno == EADDRINUSE ? " (another program, or another agent, has this port)" : "");
		goto cleanup;
	}
	*fd = s;
	s = -1;
	rc = 0;
cleanup:
	if (s >= 0)
		close(s);
	if (addr)
		freeaddrinfo(addr);
	return rc;
}

int http_start(const struct http_options *o, const struct http_callbacks *cb, struct http_server **out,
               struct sbuf *err)
{
	struct http_server *s = calloc(1, sizeof(*s));
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	int rc = -1;

	*out = NULL;
	if (!s) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	s->cb = *cb;
	s->max_body = o->max_body;
	s->header_deadline = o->header_deadline ? o->header_deadline : 10u;
	s->max_connections = o->max_connections ? o->max_connections : 256u;
	s->body_deadline = o->body_deadline ? o->body_deadline : 30u;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	s->listen = strdup(o->listen);
	if (!s->listen) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	if (o->tls_cert && o->tls_key) {
		flags |= MHD_USE_TLS;
		s->tls_cert = strdup(o->tls_cert);
		s->tls_key = strdup(o->tls_key);
		if (!s->tls_cert || !s->tls_key) {
			sbuf_adds(err, "out of memory");
			goto cleanup;
		}
	}
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
	                        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)o->fd,
	                        MHD_OPTION_THREAD_POOL_SIZE, o->threads ? o->threads : 4u,
	                        MHD_OPTION_CONNECTION_TIMEOUT, o->timeout,
	                        /* past max_connections the newest makes room (make_room); libmicrohttpd's own
	                         * limit, above it, only bounds what is open while the room is being made */
	                        MHD_OPTION_CONNECTION_LIMIT, s->max_connections + ROOM_SLACK,
	                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_per_address ? o->max_per_address : 16u,
	                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	                        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
	                        /* no space in a path, a Host header in HTTP/1.1 */
	                        MHD_OPTION_STRICT_FOR_CLIENT, 1,
	                        /* the certificate and key only when serving TLS: an empty list otherwise */
	                        s->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
	                        MHD_OPTION_HTTPS_MEM_KEY, s->tls_key, MHD_OPTION_END);
	if (s->tls_key) {
		/* libmicrohttpd has loaded the key; this copy is no longer needed */
		explicit_bzero(s->tls_key, strlen(s->tls_key));
	}
	if (o->tls_key)
		explicit_bzero(o->tls_key, strlen(o->tls_key));
	if (!s->d) {
		sbuf_addf(err, "cannot serve on %s%s", o->listen,
		          s->tls_cert ? " (check webhooks.tls_cert_file and tls_key_file)" : "");
		goto cleanup;
	}
	if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
		sbuf_addf(err, "cannot serve on %s: no thread for the request deadlines", o->listen);
		goto cleanup;
	}
	s->reaper_started = true;
	*out = s;
	s = NULL;
	rc = 0;
cleanup:
	http_stop(s);
	return rc;
}

void http_quiesce(struct http_server *s)
{
	MHD_socket fd;

	if (!s || !s->d)
		return;
	fd = MHD_quiesce_daemon(s->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void http_stop(struct http_server *s)
{
	if (!s)
		return;
	if (s->reaper_started) {
		pthread_mutex_lock(&s->lock);
		s->stopping = true;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->reaper, NULL);
	}
	if (s->d)
		MHD_stop_daemon(s->d);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s->listen);
	free(s->tls_cert);
	free(s->tls_key);
	free(s);
}
