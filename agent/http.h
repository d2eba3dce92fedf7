/*
 * http: the embedded HTTP(S) endpoint, on libmicrohttpd.
 *
 * It owns the protocol side of a request and nothing of its meaning: a
 * thread pool serves connections; for each request the precheck callback
 * decides from the method, path, challenge header and declared length
 * whether to read the body at all (and answers 401, 404, 405 or 413 at once
 * when not); the body is collected up to max_body bytes (a body that grows
 * past it is answered 413 and the rest is not read); then the handle
 * callback produces the answer.  A request whose length could be read two
 * ways (Content-Length with Transfer-Encoding, two Content-Length headers, a
 * Transfer-Encoding other than chunked) is answered 400 before anything is
 * read as its body, and its connection closed.  A connection silent longer than the
 * timeout is dropped by libmicrohttpd; one that is not silent but slow (a
 * byte at a time) is cut at the header deadline (from opening, or from its
 * previous request, to a complete head) or the body deadline (from the head
 * to a complete body), whichever applies.  Optional TLS from PEM certificate
 * and key held in memory.
 *
 * The listening socket is bound by http_bind() first, apart from serving:
 * the daemon binds every port before it opens its store or writes anything,
 * and starts serving once everything the answers need is ready.
 *
 * Memory: the server keeps copies of what http_start() is given (the key
 * buffer is wiped once libmicrohttpd has it); each request's state is freed
 * in libmicrohttpd's completion callback.
 */
#ifndef FLA_HTTP_H
#define FLA_HTTP_H

#include <stddef.h>

#include "common/sbuf.h"

struct http_reply {
	int status;
	const char *content_type; /* default text/plain */
	struct sbuf body;
};

struct http_callbacks {
	/* 0 to read the body and call handle; else the status to answer now.
	 * challenge is NULL when the header is absent; content_length -1 when
	 * not declared; addr is the client's address (text). */
	int (*precheck)(void *ctx, const char *method, const char *path, const char *challenge, long long content_length,
	                const char *addr);
	void (*handle)(void *ctx, const char *method, const char *path, const char *body, size_t len, const char *addr,
	               struct http_reply *reply);
	/* Told when the server itself refused a request: a body grown past
	 * max_body (413), framing two readers could read two ways (400, the
	 * connection closed); reason says which.  May be NULL. */
	void (*refused)(void *ctx, const char *path, int status, const char *reason, const char *addr);
	/* Called about once a second by the server's housekeeping thread (may be NULL). */
	void (*tick)(void *ctx);
	void *ctx;
};

struct http_options {
	const char *listen;    /* host:port, for messages */
	int fd;                /* the socket http_bind() gave; the server owns it from then on */
	size_t max_body;
	unsigned timeout;      /* seconds a connection may stay silent */
	unsigned header_deadline; /* seconds to a complete request head (0: 10) */
	unsigned body_deadline;   /* seconds from the head to a complete body (0: 30) */
	unsigned threads;
	unsigned max_connections; /* at once, in all; more are closed as they come (0: 256) */
	unsigned max_per_address; /* at once, from one client address (0: 16) */
	const char *tls_cert;  /* PEM text, or NULL */
	char *tls_key;         /* PEM text, or NULL; wiped by http_start */
};

struct http_server;

/* Binds and listens on host:port; 0 and *fd, or -1 with the reason. */
int http_bind(const char *listen, int *fd, struct sbuf *err);
int http_start(const struct http_options *o, const struct http_callbacks *cb, struct http_server **out,
               struct sbuf *err);
/* Stops accepting new connections; requests in flight finish. */
void http_quiesce(struct http_server *s);
void http_stop(struct http_server *s);
/* Splits "host:port" for bind(); returns 0 or -1. */
int http_parse_listen(const char *listen, char *host, size_t hostlen, char *port, size_t portlen);

#endif
