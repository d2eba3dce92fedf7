/*
 * The daemon's side of the receiver's deliveries.
 *
 * The receiver parses the untrusted HTTP and holds nothing of the daemon's:
 * what it stores, it sends here (wire.h) and answers 200 once the daemon
 * says the delivery is committed.  What comes on the wire is taken as if
 * from anywhere: each message is checked as wire_read() says, each body
 * again as the receiver checked it (receiver_check: one JSON value, no NUL,
 * within the limits) and scrubbed again of what the agent never keeps, and
 * the record it orders by and the records it names are worked out here,
 * with the daemon's mapping, never taken from the receiver.  The messages
 * waiting are committed in one transaction (a group commit, as the
 * committer's), then each is answered.
 */
#include "build.h"

#include "daemon.h"

#include "common/log.h"
#include "wire.h"

#include <cjson/cJSON.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH_MAX = 256, TYPE_MAX = 128 };
#define BATCH_BYTES (8u << 20) /* a batch stops growing past this much payload */

/* One delivery of a batch, and what became of it. */
struct taken {
	uint32_t seq;
	enum wire_outcome outcome;
	char why[WIRE_REASON_MAX];
	char *key, *clean;
	struct strmap refs;
	cJSON *parsed;
	size_t item; /* its place in the commit, when it goes in */
};

struct batch {
	struct wire_msg msgs[BATCH_MAX];
	size_t n, bytes;
	struct taken taken[BATCH_MAX];
	struct queue_new items[BATCH_MAX];
	size_t nitems;
};

/* Text from the other side, as the daemon keeps it: printable ASCII, at most max - 1 bytes. */
static void tame(char *out, size_t max, const char *in, size_t len)
{
	size_t k = 0;

	for (size_t i = 0; i < len && k + 1 < max; i++)
		out[k++] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
	out[k] = '\0';
}

/* The type a message names: a subscription type the agent knows, or NULL (*name what it said). */
static const struct event_type *named_type(const struct wire_msg *m, char *name, size_t max)
{
	tame(name, max, m->payload, m->h.aux);
	if (m->h.aux >= max || strlen(name) != m->h.aux)
		return NULL;
	return event_find(name);
}

/* A refused body the receiver reports: into the rejected log (type and reason, never the body). */
static void take_rejected(struct queue *q, const struct wire_msg *m)
{
	char name[TYPE_MAX], reason[WIRE_REASON_MAX];
	struct sbuf err;

	sbuf_init(&err);
	if (!named_type(m, name, sizeof(name)))
		snprintf(name, sizeof(name), "unknown");
	tame(reason, sizeof(reason), m->payload + m->h.aux, m->h.len - m->h.aux);
	if (queue_reject(q, name, reason, (size_t)m->h.size, &err) < 0)
		log_warn("the rejected log could not be written: %s", sbuf_str(&err));
	sbuf_free(&err);
}

/* A delivery: checked, scrubbed and keyed here, or refused with its reason. */
static void take_delivery(struct agentd *a, struct batch *b, const struct wire_msg *m, struct taken *t)
{
	char name[TYPE_MAX];
	const struct event_type *type = named_type(m, name, sizeof(name));
	const char *body = m->payload + m->h.aux;
	size_t len = m->h.len - m->h.aux;
	const char *reason;
	struct sbuf err;

	sbuf_init(&err);
	t->seq = m->h.seq;
	strmap_init(&t->refs);
	reason = receiver_check(type, body, len, &t->parsed);
	if (reason) {
		t->outcome = WIRE_REFUSED;
		snprintf(t->why, sizeof(t->why), "%s", reason);
		log_warn("the receiver sent a delivery the daemon refuses (%s: %s): answered 400", name, reason);
		goto cleanup;
	}
	if (receiver_keep_private(t->parsed, &body, &len, &t->clean, &err) < 0 ||
	    receiver_keys(a, type, t->parsed, &t->key, &t->refs) < 0) {
		t->outcome = WIRE_FAILED;
		snprintf(t->why, sizeof(t->why), "%s", err.len ? sbuf_str(&err) : "out of memory");
		goto cleanup;
	}
	t->item = b->nitems++;
	b->items[t->item] = (struct queue_new){ .type = type->name, .record_key = t->key, .refs = &t->refs,
	                                         .body = t->clean ? t->clean : body };
	t->outcome = WIRE_OK;
cleanup:
	sbuf_free(&err);
}

/* The queue's counts, for the receiver's /metrics. */
static int answer_count(struct queue *q, int fd, uint32_t seq, struct sbuf *err)
{
	struct wire_head h = { .kind = WIRE_COUNTED, .seq = seq, .aux = WIRE_OK };
	long pending, dead, held;
	int64_t n[3];
	struct sbuf why;
	int rc;

	sbuf_init(&why);
	if (queue_counts(q, &pending, &dead, &held, &why) < 0) {
		h.aux = WIRE_FAILED;
		rc = wire_send(fd, &h, sbuf_str(&why), why.len < WIRE_REASON_MAX ? why.len : WIRE_REASON_MAX - 1, NULL,
		               0, err);
	} else {
		n[0] = pending;
		n[1] = held;
		n[2] = dead;
		rc = wire_send(fd, &h, n, sizeof(n), NULL, 0, err);
	}
	sbuf_free(&why);
	return rc;
}

/* Whether another message can be read now without waiting. */
static bool more_waiting(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Commits the batch's deliveries and answers each; 0, or -1 when an answer cannot be written. */
static int settle(struct agentd *a, struct queue *q, int fd, struct batch *b, size_t *ndeliveries,
                  struct sbuf *err)
{
	struct sbuf cerr;
	int committed = 0, rc = 0;

	sbuf_init(&cerr);
	if (b->nitems) {
		committed = queue_put(q, b->items, b->nitems, &cerr);
		health_store(a, committed == 0 ? NULL : sbuf_str(&cerr));
		if (committed < 0)
			log_error("deliveries not stored (answered 503): %s", sbuf_str(&cerr));
	}
	for (size_t i = 0; i < *ndeliveries; i++) {
		struct taken *t = &b->taken[i];
		struct wire_head h = { .kind = WIRE_STORED, .seq = t->seq };
		if (t->outcome == WIRE_OK && committed < 0) {
			t->outcome = WIRE_FAILED;
			snprintf(t->why, sizeof(t->why), "%s", sbuf_str(&cerr));
		}
		h.aux = (uint32_t)t->outcome;
		if (rc == 0 && wire_send(fd, &h, t->why, t->outcome == WIRE_OK ? 0 : strlen(t->why), NULL, 0, err) < 0)
			rc = -1;
		cJSON_Delete(t->parsed);
		free(t->key);
		free(t->clean);
		strmap_free(&t->refs);
		memset(t, 0, sizeof(*t));
	}
	if (b->nitems && committed == 0)
		workers_wake(a);
	for (size_t i = 0; i < b->n; i++)
		wire_msg_free(&b->msgs[i]);
	b->n = b->bytes = b->nitems = 0;
	*ndeliveries = 0;
	sbuf_free(&cerr);
	return rc;
}

int intake_serve(struct agentd *a, int fd, size_t max_len, void (*ready)(void *ctx), void *ctx, struct sbuf *err)
{
	const unsigned kinds =
		WIRE_BIT(WIRE_READY) | WIRE_BIT(WIRE_DELIVERY) | WIRE_BIT(WIRE_REJECTED) | WIRE_BIT(WIRE_COUNT);
	struct snapshot *s;
	struct batch *b = calloc(1, sizeof(*b));
	struct queue *q = NULL;
	size_t nd = 0;
	int rc = -1, got = 1;

	if (!b) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	s = agentd_snap_get(a);
	rc = queue_open(s->cfg->state_dir, &q, err);
	agentd_snap_put(a, s);
	if (rc < 0)
		goto cleanup;
	rc = -1;
	/* a store that cannot commit within seconds answers 503, and Factorial retries */
	queue_set_busy_timeout(q, 3000);
	while (got == 1) {
		/* what is waiting, up to a batch; then settled before the next wait */
		do {
			struct wire_msg *m = &b->msgs[b->n];
			got = wire_read(fd, kinds, max_len, m, err);
			if (got != 1)
				break;
			b->n++;
			b->bytes += m->h.len;
			if (m->h.kind == WIRE_READY)
				ready(ctx);
			else if (m->h.kind == WIRE_REJECTED)
				take_rejected(q, m);
			else if (m->h.kind == WIRE_COUNT)
				got = answer_count(q, fd, m->h.seq, err) < 0 ? -1 : 1;
			else
				take_delivery(a, b, m, &b->taken[nd++]);
		} while (got == 1 && b->n < BATCH_MAX && b->bytes < BATCH_BYTES && more_waiting(fd));
		if (settle(a, q, fd, b, &nd, err) < 0)
			got = -1;
	}
	rc = got == 0 ? 0 : -1;
cleanup:
	if (b) {
		for (size_t i = 0; i < b->n; i++)
			wire_msg_free(&b->msgs[i]);
	}
	free(b);
	queue_close(q);
	return rc;
}
