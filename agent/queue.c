#include "build.h"

#include "queue.h"

#include "clock.h"
#include "log.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CANDIDATES 500
#define REJECT_KEEP (64 * 1024)

struct queue {
	sqlite3 *db;
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS deliveries ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  type TEXT NOT NULL,"
	"  record_key TEXT NOT NULL,"
	"  body TEXT NOT NULL,"
	"  received TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'pending',"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  next_attempt REAL NOT NULL DEFAULT 0,"
	"  last_error TEXT,"
	"  refs TEXT NOT NULL DEFAULT '',"
	"  forced INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, id);"
	"CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (record_key, id);"
	"CREATE TABLE IF NOT EXISTS rejected ("
	"  id INTEGER PRIMARY KEY,"
	"  received TEXT NOT NULL,"
	"  type TEXT NOT NULL,"
	"  reason TEXT NOT NULL,"
	"  body TEXT NOT NULL);";

static int db_error(struct queue *q, struct sbuf *err, const char *what)
{
	sbuf_addf(err, "state store: %s: %s", what, q && q->db ? sqlite3_errmsg(q->db) : "no database");
	return -1;
}

int queue_open(const char *state_dir, struct queue **out, struct sbuf *err)
{
	struct queue *q = calloc(1, sizeof(*q));
	int rc = -1;

	*out = NULL;
	if (!q) {
		sbuf_adds(err, "state store: out of memory");
		goto cleanup;
	}
	if (store_db_open(state_dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, 10000, schema,
	                  &q->db, err) < 0)
		goto cleanup;
	*out = q;
	q = NULL;
	rc = 0;
cleanup:
	queue_close(q);
	return rc;
}

void queue_close(struct queue *q)
{
	if (!q)
		return;
	sqlite3_close(q->db);
	free(q);
}

void queue_set_busy_timeout(struct queue *q, int ms)
{
	sqlite3_busy_timeout(q->db, ms);
}

static void now_text(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static char *id_text(const cJSON *v)
{
	char buf[64];

	if (cJSON_IsNumber(v)) {
		snprintf(buf, sizeof(buf), "%.0f", v->valuedouble);
		return strdup(buf);
	}
	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	return strdup("?");
}

char *queue_record_key(const char *type, const char *body_json)
{
	static atomic_ulong bulk_seq;
	cJSON *b = cJSON_Parse(body_json);
	struct sbuf k;
	char *a = NULL, *c = NULL;

	sbuf_init(&k);
	if (strncmp(type, "employees/", 10) == 0) {
		a = id_text(cJSON_GetObjectItemCaseSensitive(b, "id"));
		sbuf_addf(&k, "employee:%s", a ? a : "?");
	} else if (strncmp(type, "teams/team/", 11) == 0) {
		a = id_text(cJSON_GetObjectItemCaseSensitive(b, "id"));
		sbuf_addf(&k, "team:%s", a ? a : "?");
	} else if (strcmp(type, "teams/membership/bulk_upsert") == 0 || !cJSON_IsObject(b) ||
	           !cJSON_GetObjectItemCaseSensitive(b, "employee_id")) {
		sbuf_addf(&k, "bulk:%ld.%lu", (long)time(NULL), (unsigned long)atomic_fetch_add(&bulk_seq, 1));
	} else {
		a = id_text(cJSON_GetObjectItemCaseSensitive(b, "team_id"));
		c = id_text(cJSON_GetObjectItemCaseSensitive(b, "employee_id"));
		sbuf_addf(&k, "membership:%s:%s", a ? a : "?", c ? c : "?");
	}
	free(a);
	free(c);
	cJSON_Delete(b);
	return sbuf_detach(&k);
}

static void dependencies(const char *type, const char *body, struct strmap *deps);

/* " key1 key2 " of the records a delivery depends on, for the reverse wait. */
static char *refs_text(const char *type, const char *body)
{
	struct strmap deps;
	struct sbuf b;

	strmap_init(&deps);
	sbuf_init(&b);
	dependencies(type, body, &deps);
	sbuf_addc(&b, ' ');
	for (size_t i = 0; i < deps.cap; i++)
		if (deps.slots[i].key)
			sbuf_addf(&b, "%s ", deps.slots[i].key);
	strmap_free(&deps);
	return sbuf_detach(&b);
}

int queue_put(struct queue *q, struct queue_new *items, size_t n, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	char now[40];
	int rc = -1;

	now_text(now, sizeof(now));
	if (sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(q, err, "begin");
		return -1;
	}
	if (sqlite3_prepare_v2(q->db,
	                       "INSERT INTO deliveries (type, record_key, body, received, refs) VALUES (?, ?, ?, ?, ?)", -1,
	                       &st, NULL) != SQLITE_OK) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		char *refs = refs_text(items[i].type, items[i].body);
		int step;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, items[i].type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, items[i].record_key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, items[i].body, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, refs ? refs : " ", -1, SQLITE_TRANSIENT);
		step = sqlite3_step(st);
		free(refs);
		if (step != SQLITE_DONE) {
			db_error(q, err, "insert");
			goto cleanup;
		}
		items[i].id = sqlite3_last_insert_rowid(q->db);
	}
	if (sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(q, err, "commit");
		goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_finalize(st);
	if (rc < 0)
		sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int queue_reject(struct queue *q, const char *type, const char *reason, const char *body, size_t len,
                 struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	char now[40];
	int rc = -1;

	now_text(now, sizeof(now));
	if (sqlite3_prepare_v2(q->db, "INSERT INTO rejected (received, type, reason, body) VALUES (?, ?, ?, ?)", -1, &st,
	                       NULL) != SQLITE_OK) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, body, (int)(len > REJECT_KEEP ? REJECT_KEEP : len), SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_error(q, err, "insert");
		goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_finalize(st);
	return rc;
}

void queue_delivery_free(struct queue_delivery *d)
{
	free(d->ids);
	free(d->type);
	free(d->record_key);
	free(d->body);
	free(d->received);
	memset(d, 0, sizeof(*d));
}

static char *col(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return strdup(t ? (const char *)t : "");
}

/* The record keys a delivery must wait for (older pending deliveries). */
static void dependencies(const char *type, const char *body, struct strmap *deps)
{
	cJSON *b = cJSON_Parse(body), *it, *list;
	char key[256];

	if (!b)
		return;
	if (strncmp(type, "employees/", 10) == 0) {
		/* the people an employee entry refers to (employee_dn) come first */
		static const char *const refs[] = { "manager_id", "timeoff_manager_id", NULL };
		for (size_t i = 0; refs[i]; i++) {
			cJSON *v = cJSON_GetObjectItemCaseSensitive(b, refs[i]);
			if (cJSON_IsNumber(v) || (cJSON_IsString(v) && v->valuestring[0])) {
				char *id = id_text(v);
				snprintf(key, sizeof(key), "employee:%s", id ? id : "?");
				strmap_put(deps, key, NULL);
				free(id);
			}
		}
	} else if (strncmp(type, "teams/team/", 11) == 0) {
		list = cJSON_GetObjectItemCaseSensitive(b, "employee_ids");
		cJSON_ArrayForEach(it, list) {
			char *id = id_text(it);
			snprintf(key, sizeof(key), "employee:%s", id ? id : "?");
			strmap_put(deps, key, NULL);
			free(id);
		}
	} else if (strncmp(type, "teams/membership/", 17) == 0) {
		cJSON *one = cJSON_IsObject(b) && cJSON_GetObjectItemCaseSensitive(b, "employee_id") ? b : NULL;
		list = NULL;
		if (cJSON_IsArray(b))
			list = b;
		else if (!one) {
			cJSON_ArrayForEach(it, b) {
				if (cJSON_IsArray(it))
					list = it;
			}
		}
		for (it = one ? one : (list ? list->child : NULL); it; it = one ? NULL : it->next) {
			char *e = id_text(cJSON_GetObjectItemCaseSensitive(it, "employee_id"));
			char *t = id_text(cJSON_GetObjectItemCaseSensitive(it, "team_id"));
			snprintf(key, sizeof(key), "employee:%s", e ? e : "?");
			strmap_put(deps, key, NULL);
			snprintf(key, sizeof(key), "team:%s", t ? t : "?");
			strmap_put(deps, key, NULL);
			free(e);
			free(t);
		}
	}
	cJSON_Delete(b);
}

static int waits(struct queue *q, const struct strmap *deps, int64_t before, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int found = 0;

	if (deps->n == 0)
		return 0;
	if (sqlite3_prepare_v2(q->db,
	                       "SELECT 1 FROM deliveries WHERE record_key = ? AND id < ? AND state IN ('pending', 'held') "
	                       "LIMIT 1",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	for (size_t i = 0; i < deps->cap && !found; i++) {
		int step;
		if (!deps->slots[i].key)
			continue;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, deps->slots[i].key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, before);
		step = sqlite3_step(st);
		if (step == SQLITE_ROW)
			found = 1;
		else if (step != SQLITE_DONE)
			found = db_error(q, err, "read");
	}
	sqlite3_finalize(st);
	return found;
}

/* Whether an older pending delivery names record key (a team listing this
 * employee): the record then waits, so deliveries touching the same entries
 * apply in arrival order. */
static int referenced(struct queue *q, const char *key, int64_t before, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int found = 0, step;

	if (sqlite3_prepare_v2(q->db,
	                       "SELECT 1 FROM deliveries WHERE id < ? AND state IN ('pending', 'held') "
	                       "AND instr(refs, ' ' || ? || ' ') > 0 LIMIT 1",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	sqlite3_bind_int64(st, 1, before);
	sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW)
		found = 1;
	else if (step != SQLITE_DONE)
		found = db_error(q, err, "read");
	sqlite3_finalize(st);
	return found;
}

/* Fills d with the run of same-type pending deliveries of key starting at first. */
static int load_run(struct queue *q, const char *key, int64_t first, struct queue_delivery *d, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (sqlite3_prepare_v2(q->db,
	                       "SELECT id, type, body, attempts, received, forced FROM deliveries "
	                       "WHERE record_key = ? AND state = 'pending' AND id >= ? ORDER BY id",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, first);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(st, 1);
		int64_t *ids;
		if (d->type && strcmp(d->type, type) != 0)
			break;
		ids = realloc(d->ids, (d->nids + 1) * sizeof(*ids));
		if (!ids)
			goto cleanup;
		d->ids = ids;
		d->ids[d->nids++] = sqlite3_column_int64(st, 0);
		d->id = sqlite3_column_int64(st, 0);
		if (!d->type) {
			d->type = col(st, 1);
			d->attempts = sqlite3_column_int(st, 3);
			d->received = col(st, 4);
		}
		d->forced = d->forced || sqlite3_column_int(st, 5);
		free(d->body);
		d->body = col(st, 2);
	}
	d->record_key = strdup(key);
	rc = d->nids ? 0 : -1;
cleanup:
	sqlite3_finalize(st);
	return rc;
}

int queue_next(struct queue *q, double now, const struct strmap *busy, struct queue_delivery *d, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	struct strmap seen;
	int rc = 0;

	memset(d, 0, sizeof(*d));
	strmap_init(&seen);
	if (sqlite3_prepare_v2(q->db,
	                       "SELECT id, record_key, type, body, next_attempt FROM deliveries "
	                       "WHERE state = 'pending' ORDER BY id LIMIT " "500",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_error(q, err, "prepare");
		goto cleanup;
	}
	for (;;) {
		int step = sqlite3_step(st);
		const char *key;
		struct strmap deps;
		int64_t id;
		int w;
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			rc = db_error(q, err, "read");
			break;
		}
		id = sqlite3_column_int64(st, 0);
		key = (const char *)sqlite3_column_text(st, 1);
		if (strmap_get(&seen, key))
			continue; /* not the oldest of its record */
		strmap_put(&seen, key, NULL);
		if (strmap_get(busy, key) || sqlite3_column_double(st, 4) > now)
			continue;
		strmap_init(&deps);
		dependencies((const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3), &deps);
		w = waits(q, &deps, id, err);
		if (w == 0)
			w = referenced(q, key, id, err);
		/* deliveries that change the same group apply one after the other */
		for (size_t i = 0; w == 0 && i < deps.cap; i++)
			if (deps.slots[i].key && strncmp(deps.slots[i].key, "team:", 5) == 0)
				w = referenced(q, deps.slots[i].key, id, err);
		strmap_free(&deps);
		if (w < 0) {
			rc = -1;
			break;
		}
		if (w)
			continue;
		{
			char *k = strdup(key);
			sqlite3_finalize(st);
			st = NULL;
			rc = k && load_run(q, k, id, d, err) == 0 ? 1 : -1;
			free(k);
			if (rc < 0)
				queue_delivery_free(d);
		}
		break;
	}
cleanup:
	sqlite3_finalize(st);
	strmap_free(&seen);
	return rc;
}

static int exec_ids(struct queue *q, const char *sql, const struct queue_delivery *d, const char *text, double num,
                    struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(q, err, "begin");
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	for (size_t i = 0; i < d->nids; i++) {
		int p = 1;
		sqlite3_reset(st);
		if (text)
			sqlite3_bind_text(st, p++, text, -1, SQLITE_STATIC);
		if (num >= 0)
			sqlite3_bind_double(st, p++, num);
		sqlite3_bind_int64(st, p, d->ids[i]);
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_error(q, err, "write");
			goto cleanup;
		}
	}
	if (sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(q, err, "commit");
		goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_finalize(st);
	if (rc < 0)
		sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int queue_done(struct queue *q, const struct queue_delivery *d, struct sbuf *err)
{
	return exec_ids(q, "DELETE FROM deliveries WHERE id = ?", d, NULL, -1, err);
}

int queue_hold(struct queue *q, const struct queue_delivery *d, const char *reason, struct sbuf *err)
{
	return exec_ids(q, "UPDATE deliveries SET state = 'held', last_error = ? WHERE id = ?", d, reason, -1, err);
}

int queue_failed(struct queue *q, const struct queue_delivery *d, const char *reason, double next_attempt, bool dead,
                 struct sbuf *err)
{
	if (dead)
		return exec_ids(q,
		                "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ? WHERE id = ?",
		                d, reason, -1, err);
	return exec_ids(q,
	                "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ?", d,
	                reason, next_attempt, err);
}

int queue_counts(struct queue *q, long *pending, long *dead, long *held, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	*pending = *dead = *held = 0;
	if (sqlite3_prepare_v2(q->db, "SELECT state, count(*) FROM deliveries GROUP BY state", -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	for (;;) {
		int step = sqlite3_step(st);
		const char *s;
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			db_error(q, err, "read");
			goto cleanup;
		}
		s = (const char *)sqlite3_column_text(st, 0);
		if (strcmp(s, "pending") == 0)
			*pending = sqlite3_column_int(st, 1);
		else if (strcmp(s, "dead") == 0)
			*dead = sqlite3_column_int(st, 1);
		else if (strcmp(s, "held") == 0)
			*held = sqlite3_column_int(st, 1);
	}
	rc = 0;
cleanup:
	sqlite3_finalize(st);
	return rc;
}

int queue_list(struct queue *q, struct sbuf *out, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	long pending, dead, held;
	int rc = -1;

	if (queue_counts(q, &pending, &dead, &held, err) < 0)
		return -1;
	sbuf_addf(out, "%ld pending, %ld held, %ld dead\n", pending, held, dead);
	if (sqlite3_prepare_v2(q->db,
	                       "SELECT id, state, type, record_key, attempts, received, coalesce(last_error, '') "
	                       "FROM deliveries WHERE state IN ('dead', 'held') ORDER BY id",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	if (dead || held)
		sbuf_addf(out, "%-6s  %-7s  %-24s  %-42s  %-8s  %s\n", "ID", "STATE", "RECEIVED", "TYPE", "ATTEMPTS",
		          "RECORD: REASON");
	while (sqlite3_step(st) == SQLITE_ROW) {
		sbuf_addf(out, "%-6lld  %-7s  %-24s  %-42s  %-8d  %s: %s\n", (long long)sqlite3_column_int64(st, 0),
		          sqlite3_column_text(st, 1), sqlite3_column_text(st, 5), sqlite3_column_text(st, 2),
		          sqlite3_column_int(st, 4), sqlite3_column_text(st, 3), sqlite3_column_text(st, 6));
	}
	rc = 0;
	sqlite3_finalize(st);
	return rc;
}

long queue_retry(struct queue *q, int64_t id, bool force, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	long n = -1;
	const char *sql;

	if (force)
		sql = id ? "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt = 0, forced = 1 "
		           "WHERE state IN ('held', 'dead') AND id = ?"
		         : "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt = 0, forced = 1 "
		           "WHERE state IN ('held', 'dead')";
	else
		sql = id ? "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt = 0 "
		           "WHERE state = 'dead' AND id = ?"
		         : "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt = 0 WHERE state = 'dead'";

	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	if (id)
		sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(q, err, "write");
	else
		n = sqlite3_changes(q->db);
	sqlite3_finalize(st);
	return n;
}

int queue_drop(struct queue *q, int64_t id, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (sqlite3_prepare_v2(q->db, "DELETE FROM deliveries WHERE state = 'dead' AND id = ?", -1, &st, NULL) != SQLITE_OK)
		return db_error(q, err, "prepare");
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(q, err, "write");
	else
		n = sqlite3_changes(q->db) > 0;
	sqlite3_finalize(st);
	return n;
}

/* ---- group commit ------------------------------------------------------- */

struct waiter {
	const char *type;
	const char *body;
	char *key;
	int state; /* 0 waiting, 1 committed, -1 failed */
	char err[512];
	struct waiter *next;
};

struct queue_committer {
	struct queue *q;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work;
	pthread_cond_t done;
	struct waiter *head, *tail;
	bool stop;
	void (*observe)(double, bool, void *);
	void *observe_ctx;
	void (*notify)(void *);
	void *notify_ctx;
};

static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *committer_main(void *arg)
{
	struct queue_committer *c = arg;

	for (;;) {
		struct waiter *batch;
		struct queue_new *items;
		struct sbuf err;
		size_t n = 0;
		double t0;
		int rc;

		pthread_mutex_lock(&c->mu);
		while (!c->head && !c->stop)
			pthread_cond_wait(&c->work, &c->mu);
		if (!c->head) {
			pthread_mutex_unlock(&c->mu);
			break;
		}
		batch = c->head;
		c->head = c->tail = NULL;
		pthread_mutex_unlock(&c->mu);

		for (struct waiter *w = batch; w; w = w->next)
			n++;
		items = calloc(n, sizeof(*items));
		sbuf_init(&err);
		t0 = seconds_now();
		if (!items) {
			sbuf_adds(&err, "state store: out of memory");
			rc = -1;
		} else {
			size_t i = 0;
			for (struct waiter *w = batch; w; w = w->next, i++) {
				items[i].type = w->type;
				items[i].record_key = w->key;
				items[i].body = w->body;
			}
			rc = queue_put(c->q, items, n, &err);
		}
		if (c->observe)
			c->observe(seconds_now() - t0, rc == 0, c->observe_ctx);
		pthread_mutex_lock(&c->mu);
		for (struct waiter *w = batch; w; w = w->next) {
			w->state = rc == 0 ? 1 : -1;
			if (rc < 0)
				snprintf(w->err, sizeof(w->err), "%s", sbuf_str(&err));
		}
		pthread_cond_broadcast(&c->done);
		pthread_mutex_unlock(&c->mu);
		if (rc == 0 && c->notify)
			c->notify(c->notify_ctx);
		free(items);
		sbuf_free(&err);
	}
	return NULL;
}

int queue_committer_start(const char *state_dir, struct queue_committer **out, struct sbuf *err)
{
	struct queue_committer *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	if (queue_open(state_dir, &c->q, err) < 0) {
		free(c);
		return -1;
	}
	/* a store that cannot commit within seconds answers 503, and Factorial retries */
	queue_set_busy_timeout(c->q, 3000);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_cond_init(&c->done, NULL);
	if (pthread_create(&c->thread, NULL, committer_main, c) != 0) {
		sbuf_adds(err, "cannot start the commit thread");
		queue_close(c->q);
		free(c);
		return -1;
	}
	*out = c;
	return 0;
}

void queue_committer_stop(struct queue_committer *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->done);
	queue_close(c->q);
	free(c);
}

void queue_committer_observe(struct queue_committer *c, void (*fn)(double, bool, void *), void *ctx)
{
	c->observe = fn;
	c->observe_ctx = ctx;
}

void queue_committer_notify(struct queue_committer *c, void (*fn)(void *), void *ctx)
{
	c->notify = fn;
	c->notify_ctx = ctx;
}

int queue_submit(struct queue_committer *c, const char *type, const char *body, struct sbuf *err)
{
	struct waiter w = { .type = type, .body = body };
	int rc;

	w.key = queue_record_key(type, body);
	if (!w.key) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	pthread_mutex_lock(&c->mu);
	if (c->stop) {
		pthread_mutex_unlock(&c->mu);
		free(w.key);
		sbuf_adds(err, "the agent is stopping");
		return -1;
	}
	if (c->tail)
		c->tail->next = &w;
	else
		c->head = &w;
	c->tail = &w;
	pthread_cond_signal(&c->work);
	while (w.state == 0)
		pthread_cond_wait(&c->done, &c->mu);
	pthread_mutex_unlock(&c->mu);
	rc = w.state == 1 ? 0 : -1;
	if (rc < 0)
		sbuf_adds(err, w.err);
	free(w.key);
	return rc;
}
