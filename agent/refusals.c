/* refusals: see refusals.h. */
#include "build.h"

#include "refusals.h"

#include "common/log.h"
#include "common/sbuf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_REASONS = 12, MAX_ADDRS = 8, SAID_REASONS = 6, SAID_ADDRS = 3 };

struct addr_count {
	char addr[48];
	unsigned long n;
};

struct reason_count {
	int status;
	char reason[80];
	unsigned long n, elsewhere; /* elsewhere: from addresses past the table */
	struct addr_count addrs[MAX_ADDRS];
	size_t naddrs;
};

static struct {
	pthread_mutex_t mu;
	struct reason_count r[MAX_REASONS];
	size_t nr;
	unsigned long total, other; /* other: of reasons past the table */
	double last_line, since;
} R = { .mu = PTHREAD_MUTEX_INITIALIZER, .last_line = -1e9 };

static void copy_cut(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "-");
}

static struct reason_count *reason_slot(int status, const char *reason)
{
	for (size_t i = 0; i < R.nr; i++)
		if (R.r[i].status == status && strncmp(R.r[i].reason, reason, sizeof(R.r[i].reason) - 1) == 0)
			return &R.r[i];
	if (R.nr == MAX_REASONS)
		return NULL;
	memset(&R.r[R.nr], 0, sizeof(R.r[R.nr]));
	R.r[R.nr].status = status;
	copy_cut(R.r[R.nr].reason, sizeof(R.r[R.nr].reason), reason);
	return &R.r[R.nr++];
}

static void count_addr(struct reason_count *rc, const char *addr)
{
	char a[sizeof(rc->addrs[0].addr)];

	copy_cut(a, sizeof(a), addr);
	for (size_t i = 0; i < rc->naddrs; i++)
		if (strcmp(rc->addrs[i].addr, a) == 0) {
			rc->addrs[i].n++;
			return;
		}
	if (rc->naddrs == MAX_ADDRS) {
		rc->elsewhere++;
		return;
	}
	memcpy(rc->addrs[rc->naddrs].addr, a, sizeof(a));
	rc->addrs[rc->naddrs++].n = 1;
}

void refusals_note(int status, const char *reason, const char *addr, const char *detail, double now)
{
	struct reason_count *rc;
	char d[160];

	pthread_mutex_lock(&R.mu);
	if (R.total == 0 && now - R.last_line >= REFUSALS_EVERY) {
		/* the first after a quiet spell: said at once, in full */
		R.last_line = now;
		pthread_mutex_unlock(&R.mu);
		copy_cut(d, sizeof(d), detail);
		log_info("refused %d (%s): %s from %s", status, reason, d, addr ? addr : "-");
		return;
	}
	if (R.total == 0)
		R.since = R.last_line;
	R.total++;
	rc = reason_slot(status, reason);
	if (!rc) {
		R.other++;
	} else {
		rc->n++;
		count_addr(rc, addr);
	}
	pthread_mutex_unlock(&R.mu);
}

static int by_count(const void *a, const void *b)
{
	unsigned long x = ((const struct addr_count *)a)->n, y = ((const struct addr_count *)b)->n;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int reasons_by_count(const void *a, const void *b)
{
	unsigned long x = ((const struct reason_count *)a)->n, y = ((const struct reason_count *)b)->n;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The summary line of what is counted, and the counts reset; R.mu held. */
static void say(double now, struct sbuf *line)
{
	qsort(R.r, R.nr, sizeof(R.r[0]), reasons_by_count);
	sbuf_addf(line, "refused %lu more request%s in %.0f s:", R.total, R.total == 1 ? "" : "s", now - R.since);
	for (size_t i = 0; i < R.nr && i < SAID_REASONS; i++) {
		struct reason_count *rc = &R.r[i];
		unsigned long rest = rc->elsewhere;
		qsort(rc->addrs, rc->naddrs, sizeof(rc->addrs[0]), by_count);
		sbuf_addf(line, "%s %d (%s) %lu:", i ? ";" : "", rc->status, rc->reason, rc->n);
		for (size_t k = 0; k < rc->naddrs; k++) {
			if (k < SAID_ADDRS)
				sbuf_addf(line, "%s %s %lu", k ? "," : "", rc->addrs[k].addr, rc->addrs[k].n);
			else
				rest += rc->addrs[k].n;
		}
		if (rest)
			sbuf_addf(line, ", other addresses %lu", rest);
	}
	for (size_t i = SAID_REASONS; i < R.nr; i++)
		R.other += R.r[i].n;
	if (R.other)
		sbuf_addf(line, "; other reasons %lu", R.other);
	R.nr = 0;
	R.total = 0;
	R.other = 0;
	R.last_line = now;
}

void refusals_tick(double now)
{
	struct sbuf line;

	sbuf_init(&line);
	pthread_mutex_lock(&R.mu);
	if (R.total && now - R.last_line >= REFUSALS_EVERY)
		say(now, &line);
	pthread_mutex_unlock(&R.mu);
	if (line.len)
		log_info("%s", sbuf_str(&line));
	sbuf_free(&line);
}

void refusals_flush(double now)
{
	struct sbuf line;

	sbuf_init(&line);
	pthread_mutex_lock(&R.mu);
	if (R.total)
		say(now, &line);
	pthread_mutex_unlock(&R.mu);
	if (line.len)
		log_info("%s", sbuf_str(&line));
	sbuf_free(&line);
}
