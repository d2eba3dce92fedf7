#include "build.h"

#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define COUNTS_LEN (3 * sizeof(int64_t))

int wire_send(int fd, const struct wire_head *h, const void *a, size_t alen, const void *b, size_t blen,
              struct sbuf *err)
{
	struct wire_head head = *h;
	struct iovec iov[3] = { { &head, sizeof(head) }, { (void *)a, alen }, { (void *)b, blen } };
	struct iovec *v = iov;
	int nv = 3;

	if (alen + blen > UINT32_MAX) {
		sbuf_adds(err, "message too large");
		return -1;
	}
	head.len = (uint32_t)(alen + blen);
	while (nv > 0) {
		ssize_t n = writev(fd, v, nv);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sbuf_addf(err, "cannot write to the other process: %s", strerror(errno));
			return -1;
		}
		/* past what was written: whole parts, then into the next */
		while (nv > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			nv--;
		}
		if (nv > 0) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Reads len bytes: 1, 0 at the end before any byte, -1 at an end inside them or an error. */
static int read_all(int fd, void *buf, size_t len, struct sbuf *err)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sbuf_addf(err, "cannot read from the other process: %s", strerror(errno));
			return -1;
		}
		if (n == 0) {
			if (got == 0)
				return 0;
			sbuf_addf(err, "the stream ended inside a message (%zu of %zu bytes)", got, len);
			return -1;
		}
		got += (size_t)n;
	}
	return 1;
}

int wire_read(int fd, unsigned kinds, size_t max_len, struct wire_msg *m, struct sbuf *err)
{
	bool answer;
	int rc;

	memset(m, 0, sizeof(*m));
	rc = read_all(fd, &m->h, sizeof(m->h), err);
	if (rc <= 0)
		return rc;
	if (m->h.kind >= 32 || !(kinds & WIRE_BIT(m->h.kind))) {
		sbuf_addf(err, "a message of kind %u, which this side does not take", (unsigned)m->h.kind);
		return -1;
	}
	answer = m->h.kind == WIRE_STORED || m->h.kind == WIRE_COUNTED;
	if (m->h.len > max_len) {
		sbuf_addf(err, "a message of %u bytes, past the limit of %zu", (unsigned)m->h.len, max_len);
		return -1;
	}
	if (answer && m->h.aux > WIRE_REFUSED) {
		sbuf_addf(err, "an outcome %u that is none", (unsigned)m->h.aux);
		return -1;
	}
	if (!answer && m->h.aux > m->h.len) {
		sbuf_addf(err, "a message whose first part (%u bytes) is longer than it (%u)", (unsigned)m->h.aux,
		          (unsigned)m->h.len);
		return -1;
	}
	if (m->h.kind == WIRE_COUNTED && m->h.aux == WIRE_OK && m->h.len != COUNTS_LEN) {
		sbuf_addf(err, "counts of %u bytes, not %u", (unsigned)m->h.len, (unsigned)COUNTS_LEN);
		return -1;
	}
	m->payload = malloc((size_t)m->h.len + 1);
	if (!m->payload) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	m->payload[m->h.len] = '\0';
	if (m->h.len && read_all(fd, m->payload, m->h.len, err) != 1) {
		if (!err->len)
			sbuf_adds(err, "the stream ended inside a message");
		wire_msg_free(m);
		return -1;
	}
	return 1;
}

void wire_msg_free(struct wire_msg *m)
{
	free(m->payload);
	m->payload = NULL;
}

/* ---- the receiver's end --------------------------------------------------- */

struct call {
	uint32_t seq;
	bool answered;
	enum wire_outcome outcome;
	char why[WIRE_REASON_MAX]; /* the answer's payload, text when not WIRE_OK */
	size_t len;
	struct call *next;
};

struct wire_client {
	int fd;
	pthread_t reader;
	pthread_mutex_t mu;  /* the calls waiting, the end */
	pthread_cond_t cv;
	pthread_mutex_t wmu; /* one writer at a time */
	struct call *calls;
	uint32_t next_seq;
	bool ended;
	char end_why[WIRE_REASON_MAX];
};

/* Every call still waiting fails with why (the lock is held). */
static void end_calls(struct wire_client *c, const char *why)
{
	c->ended = true;
	snprintf(c->end_why, sizeof(c->end_why), "%s", why);
	for (struct call *k = c->calls; k; k = k->next) {
		k->answered = true;
		k->outcome = WIRE_FAILED;
		snprintf(k->why, sizeof(k->why), "%s", why);
	}
	c->calls = NULL;
	pthread_cond_broadcast(&c->cv);
}

static void *reader_main(void *arg)
{
	struct wire_client *c = arg;
	struct wire_msg m;
	struct sbuf err;

	sbuf_init(&err);
	for (;;) {
		int rc = wire_read(c->fd, WIRE_BIT(WIRE_STORED) | WIRE_BIT(WIRE_COUNTED), WIRE_REASON_MAX - 1, &m, &err);
		struct call **p;
		if (rc <= 0)
			break;
		pthread_mutex_lock(&c->mu);
		for (p = &c->calls; *p && (*p)->seq != m.h.seq; p = &(*p)->next)
			;
		if (*p) {
			struct call *k = *p;
			*p = k->next;
			k->answered = true;
			k->outcome = (enum wire_outcome)m.h.aux;
			memcpy(k->why, m.payload, (size_t)m.h.len + 1);
			k->len = m.h.len;
			pthread_cond_broadcast(&c->cv);
		}
		pthread_mutex_unlock(&c->mu);
		wire_msg_free(&m);
	}
	pthread_mutex_lock(&c->mu);
	end_calls(c, err.len ? sbuf_str(&err) : "the daemon is gone");
	pthread_mutex_unlock(&c->mu);
	sbuf_free(&err);
	return NULL;
}

int wire_client_start(int fd, struct wire_client **out, struct sbuf *err)
{
	struct wire_client *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	c->fd = fd;
	c->next_seq = 1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->wmu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (pthread_create(&c->reader, NULL, reader_main, c) != 0) {
		sbuf_adds(err, "cannot start the thread that reads the daemon's answers");
		pthread_mutex_destroy(&c->mu);
		pthread_mutex_destroy(&c->wmu);
		pthread_cond_destroy(&c->cv);
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static int send_locked(struct wire_client *c, const struct wire_head *h, const char *a, size_t alen,
                       const char *b, size_t blen, struct sbuf *err)
{
	int rc;

	pthread_mutex_lock(&c->wmu);
	rc = wire_send(c->fd, h, a, alen, b, blen, err);
	pthread_mutex_unlock(&c->wmu);
	return rc;
}

/* Sends a message and waits for its answer, into k. */
static void call(struct wire_client *c, struct wire_head *h, const char *a, size_t alen, const char *b,
                 size_t blen, struct call *k)
{
	struct sbuf err;

	sbuf_init(&err);
	pthread_mutex_lock(&c->mu);
	if (c->ended) {
		k->answered = true;
		k->outcome = WIRE_FAILED;
		snprintf(k->why, sizeof(k->why), "%s", c->end_why);
		pthread_mutex_unlock(&c->mu);
		goto cleanup;
	}
	k->seq = c->next_seq++;
	k->next = c->calls;
	c->calls = k;
	pthread_mutex_unlock(&c->mu);

	h->seq = k->seq;
	if (send_locked(c, h, a, alen, b, blen, &err) < 0) {
		pthread_mutex_lock(&c->mu);
		if (!k->answered) { /* still listed: take it out */
			struct call **p;
			for (p = &c->calls; *p && *p != k; p = &(*p)->next)
				;
			if (*p)
				*p = k->next;
			k->answered = true;
			k->outcome = WIRE_FAILED;
			snprintf(k->why, sizeof(k->why), "%s", sbuf_str(&err));
		}
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_lock(&c->mu);
	while (!k->answered)
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
cleanup:
	sbuf_free(&err);
}

enum wire_outcome wire_client_deliver(struct wire_client *c, const char *type, const char *body, size_t len,
                                      char *why, size_t whylen)
{
	struct call k = { 0 };
	struct wire_head h = { .kind = WIRE_DELIVERY, .aux = (uint32_t)strlen(type) };

	call(c, &h, type, h.aux, body, len, &k);
	snprintf(why, whylen, "%s", k.outcome == WIRE_OK ? "" : k.why);
	return k.outcome;
}

int wire_client_count(struct wire_client *c, long *pending, long *held, long *dead, char *why, size_t whylen)
{
	struct call k = { 0 };
	struct wire_head h = { .kind = WIRE_COUNT };
	int64_t n[3];

	call(c, &h, NULL, 0, NULL, 0, &k);
	if (k.outcome != WIRE_OK) {
		snprintf(why, whylen, "%s", k.why);
		return -1;
	}
	memcpy(n, k.why, sizeof(n));
	*pending = (long)n[0];
	*held = (long)n[1];
	*dead = (long)n[2];
	return 0;
}

int wire_client_say(struct wire_client *c, uint32_t kind, const char *type, const char *text, uint64_t size,
                    struct sbuf *err)
{
	struct wire_head h = { .kind = kind, .size = size };
	size_t tlen = type ? strlen(type) : 0;

	h.aux = (uint32_t)tlen;
	return send_locked(c, &h, type, tlen, text, text ? strlen(text) : 0, err);
}

void wire_client_stop(struct wire_client *c)
{
	if (!c)
		return;
	shutdown(c->fd, SHUT_RDWR); /* the reader sees the end */
	pthread_join(c->reader, NULL);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->wmu);
	pthread_cond_destroy(&c->cv);
	free(c);
}
