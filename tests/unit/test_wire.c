/* Unit tests of wire: the messages between the receiver and the daemon,
 * over a socket pair (no server; the daemon's side played by the test). */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wire.h"

static const unsigned FROM_RECEIVER =
	WIRE_BIT(WIRE_READY) | WIRE_BIT(WIRE_DELIVERY) | WIRE_BIT(WIRE_REJECTED) | WIRE_BIT(WIRE_COUNT);

static void pair(int fd[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
}

/* Writes raw bytes and reads them as the daemon would: the result and why. */
static int read_raw(const void *bytes, size_t len, size_t max_len, struct wire_msg *m, struct sbuf *err)
{
	int fd[2];
	int rc;

	pair(fd);
	assert_int_equal(write(fd[0], bytes, len), (ssize_t)len);
	close(fd[0]);
	rc = wire_read(fd[1], FROM_RECEIVER, max_len, m, err);
	close(fd[1]);
	return rc;
}

static void test_a_message_crosses_whole(void **state)
{
	struct wire_head h = { .kind = WIRE_DELIVERY, .seq = 7, .aux = 4 };
	struct wire_msg m;
	struct sbuf err;
	int fd[2];

	(void)state;
	sbuf_init(&err);
	pair(fd);
	assert_int_equal(wire_send(fd[0], &h, "type", 4, "{\"id\":\"1\"}", 10, &err), 0);
	assert_int_equal(wire_read(fd[1], FROM_RECEIVER, 1024, &m, &err), 1);
	assert_int_equal(m.h.kind, WIRE_DELIVERY);
	assert_int_equal(m.h.seq, 7);
	assert_int_equal(m.h.len, 14);
	assert_int_equal(m.h.aux, 4);
	assert_memory_equal(m.payload, "type{\"id\":\"1\"}", 15); /* and a NUL past it */
	wire_msg_free(&m);
	close(fd[0]);
	/* the end between messages is the end, not a failure */
	assert_int_equal(wire_read(fd[1], FROM_RECEIVER, 1024, &m, &err), 0);
	close(fd[1]);
	sbuf_free(&err);
}

static void test_heads_the_daemon_does_not_take_end_the_conversation(void **state)
{
	struct {
		struct wire_head h;
		char tail[8];
		const char *why;
	} cases[] = {
		{ { .kind = WIRE_STORED, .len = 0 }, "", "a message of kind 5, which this side does not take" },
		{ { .kind = 31, .len = 0 }, "", "a message of kind 31, which this side does not take" },
		{ { .kind = 0x65720058u, .len = 0 }, "", "which this side does not take" },
		{ { .kind = WIRE_DELIVERY, .len = 2048 }, "", "a message of 2048 bytes, past the limit of 1024" },
		{ { .kind = WIRE_DELIVERY, .len = 4, .aux = 5 }, "abcd", "first part (5 bytes) is longer than it (4)" },
		{ { .kind = WIRE_DELIVERY, .len = 8 }, "abcd", "the stream ended inside a message (4 of 8 bytes)" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[sizeof(struct wire_head) + 8];
		struct wire_msg m;
		struct sbuf err;
		size_t tail = strlen(cases[i].tail);
		sbuf_init(&err);
		memcpy(buf, &cases[i].h, sizeof(cases[i].h));
		memcpy(buf + sizeof(cases[i].h), cases[i].tail, tail);
		assert_int_equal(read_raw(buf, sizeof(cases[i].h) + tail, 1024, &m, &err), -1);
		assert_non_null(strstr(sbuf_str(&err), cases[i].why));
		assert_null(m.payload);
		sbuf_free(&err);
	}
	{
		/* a head cut short */
		struct wire_msg m;
		struct sbuf err;
		sbuf_init(&err);
		assert_int_equal(read_raw("X\0ready\n", 8, 1024, &m, &err), -1);
		assert_non_null(strstr(sbuf_str(&err), "the stream ended inside a message (8 of 24 bytes)"));
		sbuf_free(&err);
	}
}

/* The daemon's side for the client tests: answers each delivery with outcome, then counts. */
struct daemon_side {
	int fd;
	enum wire_outcome outcome;
	int deliveries;
};

static void *play_daemon(void *arg)
{
	struct daemon_side *d = arg;
	struct wire_msg m;
	struct sbuf err;

	sbuf_init(&err);
	while (wire_read(d->fd, FROM_RECEIVER, 1 << 20, &m, &err) == 1) {
		struct wire_head h = { .seq = m.h.seq };
		if (m.h.kind == WIRE_DELIVERY) {
			const char *why = d->outcome == WIRE_OK ? "" : "database is locked";
			d->deliveries++;
			h.kind = WIRE_STORED;
			h.aux = d->outcome;
			wire_send(d->fd, &h, why, strlen(why), NULL, 0, &err);
		} else if (m.h.kind == WIRE_COUNT) {
			int64_t n[3] = { 5, 1, 2 };
			h.kind = WIRE_COUNTED;
			wire_send(d->fd, &h, n, sizeof(n), NULL, 0, &err);
		}
		wire_msg_free(&m);
	}
	sbuf_free(&err);
	return NULL;
}

static void test_the_receiver_waits_for_each_outcome(void **state)
{
	struct daemon_side d = { .outcome = WIRE_OK };
	struct wire_client *c;
	struct sbuf err;
	pthread_t t;
	char why[WIRE_REASON_MAX];
	long pending, held, dead;
	int fd[2];

	(void)state;
	sbuf_init(&err);
	pair(fd);
	d.fd = fd[1];
	assert_int_equal(pthread_create(&t, NULL, play_daemon, &d), 0);
	assert_int_equal(wire_client_start(fd[0], &c, &err), 0);
	assert_int_equal(wire_client_deliver(c, "employees/employee/update", "{}", 2, why, sizeof(why)), WIRE_OK);
	assert_string_equal(why, "");
	d.outcome = WIRE_FAILED;
	assert_int_equal(wire_client_deliver(c, "employees/employee/update", "{}", 2, why, sizeof(why)), WIRE_FAILED);
	assert_string_equal(why, "database is locked");
	assert_int_equal(wire_client_count(c, &pending, &held, &dead, why, sizeof(why)), 0);
	assert_int_equal(pending, 5);
	assert_int_equal(held, 1);
	assert_int_equal(dead, 2);
	/* the daemon gone: a delivery is not stored, and says so */
	shutdown(fd[1], SHUT_RDWR);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(wire_client_deliver(c, "employees/employee/update", "{}", 2, why, sizeof(why)), WIRE_FAILED);
	assert_true(strcmp(why, "the daemon is gone") == 0 || strstr(why, "cannot write to the other process") == why);
	assert_int_equal(d.deliveries, 2);
	wire_client_stop(c);
	close(fd[0]);
	close(fd[1]);
	sbuf_free(&err);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as in the agent: a write to a gone daemon fails, it does not kill */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_message_crosses_whole),
		cmocka_unit_test(test_heads_the_daemon_does_not_take_end_the_conversation),
		cmocka_unit_test(test_the_receiver_waits_for_each_outcome),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
