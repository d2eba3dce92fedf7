#include "build.h"

#include "http.h"

#include "common/log.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_server {
	struct MHD_Daemon *d;
	struct http_callbacks cb;
	size_t max_body;
	char *tls_cert;
	char *tls_key;
};

struct request {
	bool answered; /* a response was queued before the body was read */
	struct sbuf body;
};

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

static enum MHD_Result answer(struct MHD_Connection *c, int status, const char *type, const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type ? type : "text/plain; charset=utf-8");
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

static enum MHD_Result answer_status(struct MHD_Connection *c, int status)
{
	const char *t = status_text(status);
	return answer(c, status, NULL, t, strlen(t));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
	struct http_server *s = cls;
	struct request *r = *con_cls;

	(void)version;
	if (!r) {
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		const char *ch = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-factorial-wh-challenge");
		long long len = -1;
		int st;
		r = calloc(1, sizeof(*r));
		if (!r)
			return MHD_NO;
		sbuf_init(&r->body);
		*con_cls = r;
		if (cl) {
			char *end;
			errno = 0;
			len = strtoll(cl, &end, 10);
			if (errno || *end || len < 0)
				len = -1;
		}
		st = s->cb.precheck(s->cb.ctx, method, url, ch, len);
		if (st == 0 && len >= 0 && (size_t)len > s->max_body)
			st = 413;
		if (st) {
			r->answered = true;
			return answer_status(conn, st);
		}
		return MHD_YES;
	}
	if (r->answered) {
		/* the answer is out; what the client still sends is not read */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (r->body.len + *upload_data_size > s->max_body) {
			r->answered = true;
			*upload_data_size = 0;
			if (s->cb.refused)
				s->cb.refused(s->cb.ctx, url, 413);
			return answer_status(conn, 413);
		}
		sbuf_add(&r->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		if (r->body.failed)
			return MHD_NO;
		return MHD_YES;
	}
	{
		struct http_reply reply = { .status = 500 };
		enum MHD_Result rc;
		sbuf_init(&reply.body);
		s->cb.handle(s->cb.ctx, method, url, sbuf_str(&r->body), r->body.len, &reply);
		if (reply.body.len)
			rc = answer(conn, reply.status, reply.content_type, sbuf_str(&reply.body), reply.body.len);
		else
			rc = answer_status(conn, reply.status);
		sbuf_free(&reply.body);
		r->answered = true;
		return rc;
	}
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct request *r = *con_cls;

	(void)cls;
	(void)conn;
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
	                        MHD_OPTION_CONNECTION_LIMIT, o->max_connections ? o->max_connections : 256u,
	                        MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_per_address ? o->max_per_address : 16u,
	                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
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
	*out = s;
	s = NULL;
	rc = 0;
cleanup:
	if (s) {
		free(s->tls_cert);
		free(s->tls_key);
		free(s);
	}
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
	if (s->d)
		MHD_stop_daemon(s->d);
	free(s->tls_cert);
	free(s->tls_key);
	free(s);
}
