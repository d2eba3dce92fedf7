/*
 * wire: the messages between the receiver process and the daemon, on the
 * stream socket the daemon hands the receiver (its descriptor 5).  The
 * receiver has no file of the daemon's open: a delivery it answers 200 for
 * is one the daemon committed to its queue and said so here.
 *
 * Every message is a fixed head and a payload of head.len bytes:
 *
 *   kind  what it is (below)             seq   the receiver's number for a delivery
 *   len   the payload's size             aux   a size inside the payload, or an outcome
 *   size  the size of a body refused
 *
 * From the receiver:
 *   WIRE_READY      it serves (no payload)
 *   WIRE_DELIVERY   a delivery to store: the subscription type (aux bytes), then the body
 *   WIRE_REJECTED   a body refused (400): the type (aux bytes), then the reason; size: the body's size
 *   WIRE_COUNT      a question (seq): the queue's counts, for /metrics (no payload)
 * From the daemon:
 *   WIRE_STORED     the outcome of delivery seq: aux WIRE_OK (committed), WIRE_FAILED (not
 *                   stored: answer 503) or WIRE_REFUSED (not a delivery: answer 400); the
 *                   payload says why when not WIRE_OK
 *   WIRE_COUNTED    the answer to question seq: aux WIRE_OK and three int64_t (pending,
 *                   held, dead), or WIRE_FAILED and why
 *
 * The side that reads trusts nothing in a message: wire_read() checks the
 * head (a kind this side may receive, aux within the payload, the payload
 * within the limit given) before it reads or allocates anything, and
 * anything else ends the conversation: a stream read out of step once cannot
 * be read in step again, so the caller stops the other side.
 *
 * wire_client is the receiver's end: any thread sends a delivery and waits
 * for its outcome while a thread of its own reads the daemon's answers.
 *
 * Memory: wire_read() fills a struct wire_msg whose payload (malloc'd, one
 * NUL byte past len) the caller releases with wire_msg_free().  A
 * wire_client owns its thread, not the descriptor.
 */
#ifndef FLA_WIRE_H
#define FLA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/sbuf.h"

enum wire_kind {
	WIRE_READY = 1,
	WIRE_DELIVERY = 2,
	WIRE_REJECTED = 3,
	WIRE_COUNT = 4,
	WIRE_STORED = 5,
	WIRE_COUNTED = 6,
};
enum wire_outcome { WIRE_OK = 0, WIRE_FAILED = 1, WIRE_REFUSED = 2 };

#define WIRE_BIT(kind) (1u << (kind))
#define WIRE_REASON_MAX 512 /* the longest reason either side sends or takes */

struct wire_head {
	uint32_t kind;
	uint32_t seq;
	uint32_t len;
	uint32_t aux;
	uint64_t size;
};

struct wire_msg {
	struct wire_head h;
	char *payload; /* h.len bytes and a NUL */
};

/* Writes one message whole (the payload is a then b); the caller keeps
 * writers of one descriptor apart. */
int wire_send(int fd, const struct wire_head *h, const void *a, size_t alen, const void *b, size_t blen,
              struct sbuf *err);

/* Reads one message of a kind in kinds (WIRE_BIT()s) whose payload is at
 * most max_len bytes: 1 when read, 0 at the end of the stream (between
 * messages), -1 and why when the stream broke or the message is not one
 * this side takes. */
int wire_read(int fd, unsigned kinds, size_t max_len, struct wire_msg *m, struct sbuf *err);
void wire_msg_free(struct wire_msg *m);

/* ---- the receiver's end --------------------------------------------------- */

struct wire_client;

int wire_client_start(int fd, struct wire_client **out, struct sbuf *err);
/* Sends a delivery and waits for its outcome (why: the daemon's reason,
 * when not WIRE_OK); WIRE_FAILED when the daemon is gone or the stream broke. */
enum wire_outcome wire_client_deliver(struct wire_client *c, const char *type, const char *body, size_t len,
                                      char *why, size_t whylen);
/* Asks the daemon for the queue's counts: 0, or -1 and why. */
int wire_client_count(struct wire_client *c, long *pending, long *held, long *dead, char *why, size_t whylen);
/* Says a message that has no answer (WIRE_READY, WIRE_REJECTED). */
int wire_client_say(struct wire_client *c, uint32_t kind, const char *type, const char *text, uint64_t size,
                    struct sbuf *err);
/* Stops reading (the deliveries still waiting get WIRE_FAILED). */
void wire_client_stop(struct wire_client *c);

#endif
