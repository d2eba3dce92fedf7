#include "build.h"

#include "queue.h"

#include "common/json.h"
#include "common/clock.h"
#include "common/log.h"
#include "stmtcache.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct queue {
	sqlite3 *db;
	struct stmtcache sc; /* every delivery asks the same questions */
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
	"  forced INTEGER NOT NULL DEFAULT 0,"
	"  waiting_on TEXT,"
	"  version REAL);"
	"CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, id);"
	"CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (record_key, id);"
	"CREATE TABLE IF NOT EXISTS delivery_refs ("
	"  ref_key TEXT NOT NULL,"
	"  delivery_id INTEGER NOT NULL,"
	"  PRIMARY KEY (ref_key, delivery_id)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS delivery_refs_id ON delivery_refs (delivery_id);"
	"CREATE TRIGGER IF NOT EXISTS deliveries_gone AFTER DELETE ON deliveries BEGIN"
	"  DELETE FROM delivery_refs WHERE delivery_id = old.id; END;"
	"CREATE TABLE IF NOT EXISTS rejected ("
	"  id INTEGER PRIMARY KEY,"
	"  received TEXT NOT NULL,"
	"  type TEXT NOT NULL,"
	"  reason TEXT NOT NULL,"
	"  body TEXT NOT NULL);";

/* After the migration: indexes on the columns version 2 added. */
static const char schema_indexes[] =
	"CREATE INDEX IF NOT EXISTS deliveries_ready ON deliveries (state, waiting_on, next_attempt, id);"
	"CREATE INDEX IF NOT EXISTS deliveries_waiting ON deliveries (waiting_on) WHERE waiting_on IS NOT NULL;";

static int db_error(struct queue *q, struct sbuf *err, const char *what)
{
	sbuf_addf(err, "state store: %s: %s", what, q && q->db ? sqlite3_errmsg(q->db) : "no database");
	return -1;
}

/* Version 1 kept a delivery's dependencies in a text column and chose the
 * next delivery by scanning the oldest 500; version 2 keeps them in
 * delivery_refs, marks a delivery that waits with the record it waits for,
 * and keeps the version (updated_at) of the record a body holds. */
static int to_version_2(struct queue *q, struct sbuf *err)
{
	static const char *const added_columns[] = {
		"waiting_on", "ALTER TABLE deliveries ADD COLUMN waiting_on TEXT",
		"version", "ALTER TABLE deliveries ADD COLUMN version REAL",
		NULL,
	};
	sqlite3_stmt *st = NULL, *ins = NULL;
	int rc = -1;

	for (size_t i = 0; added_columns[i]; i += 2) {
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT %s FROM deliveries LIMIT 0", added_columns[i]);
		if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK &&
		    sqlite3_exec(q->db, added_columns[i + 1], NULL, NULL, NULL) != SQLITE_OK) {
			db_error(q, err, "migrate");
			goto cleanup;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	if (sqlite3_prepare_v2(q->db, "SELECT id, refs FROM deliveries WHERE refs != ''", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db, "INSERT OR IGNORE INTO delivery_refs (ref_key, delivery_id) VALUES (?, ?)", -1,
	                       &ins, NULL) != SQLITE_OK) {
		db_error(q, err, "migrate");
		goto cleanup;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		char *refs = strdup((const char *)sqlite3_column_text(st, 1)), *save = NULL;
		for (char *k = refs ? strtok_r(refs, " ", &save) : NULL; k; k = strtok_r(NULL, " ", &save)) {
			sqlite3_reset(ins);
			sqlite3_bind_text(ins, 1, k, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ins, 2, sqlite3_column_int64(st, 0));
			sqlite3_step(ins);
		}
		free(refs);
	}
	if (sqlite3_exec(q->db, "UPDATE deliveries SET refs = ''", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(q, err, "migrate");
		goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_finalize(st);
	sqlite3_finalize(ins);
	return rc;
}

/* The store's schema version (PRAGMA user_version) this program writes. */
#define STORE_VERSION 3

/* Brings an older store up to date, once, in one transaction: version 2
 * (above); version 3 no longer keeps refused bodies, and replaces those an
 * older version kept (they may hold personal data) by their size. */
static int migrate(struct queue *q, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1, version = 0;

	if (sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(q, err, "begin");
	if (sqlite3_prepare_v2(q->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (version > STORE_VERSION) {
		sbuf_addf(err, "state store: it was written by a newer version of the agent (store version %d; this "
		          "version knows up to %d): run that version, or restore a backup made for this one",
		          version, STORE_VERSION);
		goto cleanup;
	}
	if (version < 2 && to_version_2(q, err) < 0)
		goto cleanup;
	if (version < 3 &&
	    sqlite3_exec(q->db,
	                 "UPDATE rejected SET body = '(' || length(CAST(body AS BLOB)) || ' bytes, not kept)'"
	                 "  WHERE body NOT LIKE '(% bytes, not kept)'; PRAGMA user_version = 3", /* STORE_VERSION */
	                 NULL, NULL, NULL) != SQLITE_OK) {
		db_error(q, err, "migrate");
		goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_finalize(st);
	if (sqlite3_exec(q->db, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK && rc == 0)
		rc = db_error(q, err, "commit");
	return rc;
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
	stmtcache_init(&q->sc, q->db);
	if (migrate(q, err) < 0)
		goto cleanup;
	if (sqlite3_exec(q->db, schema_indexes, NULL, NULL, NULL) != SQLITE_OK) {
		db_error(q, err, "schema");
		goto cleanup;
	}
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
	stmtcache_free(&q->sc);
	sqlite3_close(q->db);
	free(q);
}

int queue_set_relaxed(struct queue *q, struct sbuf *err)
{
	return store_db_relax(q->db) == SQLITE_OK ? 0 : db_error(q, err, "set synchronous=NORMAL");
}

void queue_set_busy_timeout(struct queue *q, int ms)
{
	store_db_busy_timeout(q->db, ms);
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

/* The version of the record a body holds: its updated_at, when it has one. */
static bool body_version(const char *body, double *version)
{
	cJSON *b = json_parse(body, strlen(body), NULL);
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(b, "updated_at");
	struct tm tm;
	bool ok = cJSON_IsString(u) && clock_parse_iso8601(u->valuestring, &tm, version) == 0;

	cJSON_Delete(b);
	return ok;
}

int queue_put(struct queue *q, struct queue_new *items, size_t n, struct sbuf *err)
{
	sqlite3_stmt *st = NULL, *ref = NULL;
	double version;
	char now[40];
	int rc = -1;

	now_text(now, sizeof(now));
	if (stmtcache_exec(&q->sc, "BEGIN IMMEDIATE") != SQLITE_OK) {
		db_error(q, err, "begin");
		return -1;
	}
	if (!(st = stmtcache_get(&q->sc, "INSERT INTO deliveries (type, record_key, body, received, version) VALUES (?, ?, ?, ?, ?)")) ||
	    !(ref = stmtcache_get(&q->sc, "INSERT OR IGNORE INTO delivery_refs (ref_key, delivery_id) VALUES (?, ?)"))) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	for (size_t i = 0; i < n; i++) {
		int step;
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, items[i].type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, items[i].record_key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, items[i].body, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
		if (body_version(items[i].body, &version))
			sqlite3_bind_double(st, 5, version);
		else
			sqlite3_bind_null(st, 5);
		if (sqlite3_step(st) != SQLITE_DONE) {
			db_error(q, err, "insert");
			goto cleanup;
		}
		items[i].id = sqlite3_last_insert_rowid(q->db);
		/* the records it names, found again by key when others ask who waits for them */
		step = SQLITE_DONE;
		for (size_t k = 0; items[i].refs && k < items[i].refs->cap && step == SQLITE_DONE; k++) {
			if (!items[i].refs->slots[k].key)
				continue;
			sqlite3_reset(ref);
			sqlite3_bind_text(ref, 1, items[i].refs->slots[k].key, -1, SQLITE_STATIC);
			sqlite3_bind_int64(ref, 2, items[i].id);
			step = sqlite3_step(ref);
		}
		if (step != SQLITE_DONE) {
			db_error(q, err, "insert");
			goto cleanup;
		}
	}
	if (stmtcache_exec(&q->sc, "COMMIT") != SQLITE_OK) {
		db_error(q, err, "commit");
		goto cleanup;
	}
	rc = 0;
cleanup:
	stmtcache_done(st);
	stmtcache_done(ref);
	if (rc < 0)
		stmtcache_exec(&q->sc, "ROLLBACK");
	return rc;
}

int queue_reject(struct queue *q, const char *type, const char *reason, size_t len,
                 struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	char now[40], kept[64];
	int rc = -1;

	now_text(now, sizeof(now));
	snprintf(kept, sizeof(kept), "(%zu bytes, not kept)", len);
	if (!(st = stmtcache_get(&q->sc, "INSERT INTO rejected (received, type, reason, body) VALUES (?, ?, ?, ?)"))) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, kept, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_error(q, err, "insert");
		goto cleanup;
	}
	rc = 0;
cleanup:
	stmtcache_done(st);
	return rc;
}

void queue_delivery_free(struct queue_delivery *d)
{
	for (size_t i = 0; i < d->nrefs; i++)
		free(d->refs[i]);
	free(d->refs);
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


/* The records the deliveries of run d name, into d->refs. */
static int load_refs(struct queue *q, struct queue_delivery *d, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;

	if (!(st = stmtcache_get(&q->sc, "SELECT DISTINCT ref_key FROM delivery_refs WHERE delivery_id = ?")))
		return db_error(q, err, "prepare");
	for (size_t i = 0; i < d->nids && rc == 0; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, d->ids[i]);
		while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
			char **v = realloc(d->refs, (d->nrefs + 1) * sizeof(*v));
			if (!v || !(v[d->nrefs] = col(st, 0))) {
				if (v)
					d->refs = v;
				rc = db_error(q, err, "out of memory");
				break;
			}
			d->refs = v;
			d->nrefs++;
		}
	}
	stmtcache_done(st);
	return rc;
}

/* Fills d with the run of same-type pending deliveries of key starting at
 * first; the body applied is the newest snapshot of the record (the greatest
 * version, the latest arrival among equals), not the last to arrive: a late
 * retry of an older snapshot must not hide a newer one. */
static int load_run(struct queue *q, const char *key, int64_t first, struct queue_delivery *d, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	double best = -INFINITY;
	int rc = -1;

	if (!(st = stmtcache_get(&q->sc, "SELECT id, type, body, attempts, received, forced, coalesce(version, -1e300) "
	                       "FROM deliveries WHERE record_key = ? AND state = 'pending' AND id >= ? ORDER BY id")))
		return db_error(q, err, "prepare");
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, first);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(st, 1);
		double version = sqlite3_column_double(st, 6);
		int64_t *ids;
		if (d->type && strcmp(d->type, type) != 0)
			break;
		ids = realloc(d->ids, (d->nids + 1) * sizeof(*ids));
		if (!ids)
			goto cleanup;
		d->ids = ids;
		d->ids[d->nids++] = sqlite3_column_int64(st, 0);
		if (!d->type) {
			d->type = col(st, 1);
			d->attempts = sqlite3_column_int(st, 3);
			d->received = col(st, 4);
		}
		d->forced = d->forced || sqlite3_column_int(st, 5);
		if (version >= best) {
			best = version;
			d->id = sqlite3_column_int64(st, 0);
			free(d->body);
			d->body = col(st, 2);
		}
	}
	d->record_key = strdup(key);
	rc = d->nids && d->record_key ? load_refs(q, d, err) : -1;
cleanup:
	stmtcache_done(st);
	return rc;
}

/* One answer from a query with an id and a key bound: the text of its first
 * column (malloc'd) in *out; 1 found, 0 none, -1 store failure. */
static int first_text(struct queue *q, const char *sql, int64_t id, const char *key, char **out, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1, step;

	*out = NULL;
	if (!(st = stmtcache_get(&q->sc, sql)))
		return db_error(q, err, "prepare");
	sqlite3_bind_int64(st, 1, id);
	if (key)
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		*out = col(st, 0);
		rc = *out ? 1 : db_error(q, err, "out of memory");
	} else if (step == SQLITE_DONE) {
		rc = 0;
	} else {
		db_error(q, err, "read");
	}
	stmtcache_done(st);
	return rc;
}

/* An older delivery of another record holds this one back while it waits
 * its first turn, or is held by the deletion guard; once it has failed and
 * backs off, it holds back only its own record: it may be failing for want
 * of what this very delivery makes (a membership retried until its
 * employee's entry exists must not keep that employee's hire waiting). */
#define HOLDS_OTHERS(t) "(" t ".state = 'held' OR (" t ".state = 'pending' AND " t ".attempts = 0))"

/* What delivery id (of record key) waits for, in the order the checks are
 * cheapest: an older delivery of the same record; an older delivery of a
 * record it depends on (the employees a team or membership names, an
 * employee's manager); an older delivery that names this record (a team
 * listing this employee); an older delivery that changes a group this one
 * changes.  1 and the record key waited for in *by, 0 when it may go now. */
static int blocker(struct queue *q, int64_t id, const char *key, char **by, struct sbuf *err)
{
	static const char *const checks[] = {
		"SELECT record_key FROM deliveries WHERE id < ?1 AND record_key = ?2 "
		"AND state IN ('pending', 'held') LIMIT 1",
		"SELECT r.ref_key FROM delivery_refs r WHERE r.delivery_id = ?1 AND EXISTS (SELECT 1 FROM deliveries o "
		"WHERE o.record_key = r.ref_key AND o.id < ?1 AND " HOLDS_OTHERS("o") ") LIMIT 1",
		"SELECT d.record_key FROM delivery_refs r JOIN deliveries d ON d.id = r.delivery_id "
		"WHERE r.ref_key = ?2 AND r.delivery_id < ?1 AND " HOLDS_OTHERS("d") " LIMIT 1",
		"SELECT d.record_key FROM delivery_refs mine JOIN delivery_refs r ON r.ref_key = mine.ref_key "
		"JOIN deliveries d ON d.id = r.delivery_id WHERE mine.delivery_id = ?1 AND mine.ref_key LIKE 'team:%' "
		"AND r.delivery_id < ?1 AND " HOLDS_OTHERS("d") " LIMIT 1",
		NULL,
	};
	int rc = 0;

	for (size_t i = 0; checks[i] && rc == 0; i++)
		rc = first_text(q, checks[i], id, key, by, err);
	return rc;
}

struct candidate {
	int64_t id;
	char *key;
};

/* Up to max deliveries whose turn may have come: pending, not known to
 * wait, due; new ones first (next_attempt 0) in arrival order, then retries
 * by the time they are due.  An index range scan: the cost does not grow
 * with what waits or backs off. */
static int candidates(struct queue *q, double now, size_t max, struct candidate *out, size_t *n, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int step;

	*n = 0;
	if (!(st = stmtcache_get(&q->sc, "SELECT id, record_key FROM deliveries WHERE state = 'pending' AND waiting_on IS NULL "
	                       "AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?")))
		return db_error(q, err, "prepare");
	sqlite3_bind_double(st, 1, now);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		out[*n].id = sqlite3_column_int64(st, 0);
		out[*n].key = col(st, 1);
		if (!out[(*n)++].key)
			break;
	}
	stmtcache_done(st);
	if (step != SQLITE_DONE && step != SQLITE_ROW)
		return db_error(q, err, "read");
	return 0;
}

static int mark_waiting(struct queue *q, int64_t id, const char *by, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;

	if (!(st = stmtcache_get(&q->sc, "UPDATE deliveries SET waiting_on = ? WHERE id = ?")))
		return db_error(q, err, "prepare");
	sqlite3_bind_text(st, 1, by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_error(q, err, "write");
	stmtcache_done(st);
	return rc;
}

/* The record being applied now that candidate id (of record key) would run
 * into: its own record, or one that it or a later pending delivery of its
 * record names (they are applied with it, coalesced), is in busy (which maps
 * the record and the referenced records of every delivery in progress to
 * that delivery's record).  Two deliveries that touch the same entries never
 * run at once.  1 and the owner's record key in *by, 0 when none. */
static int busy_with(struct queue *q, int64_t id, const char *key, const struct strmap *busy, char **by,
                     struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	const char *owner = strmap_get(busy, key);
	int step;

	*by = NULL;
	if (!owner && busy->n) {
		if (!(st = stmtcache_get(&q->sc, "SELECT r.ref_key FROM deliveries d JOIN delivery_refs r ON r.delivery_id = d.id "
		                       "WHERE d.record_key = ?2 AND d.state = 'pending' AND d.id >= ?1")))
			return db_error(q, err, "prepare");
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
		while (!owner && (step = sqlite3_step(st)) == SQLITE_ROW)
			owner = strmap_get(busy, (const char *)sqlite3_column_text(st, 0));
		stmtcache_done(st);
	}
	if (!owner)
		return 0;
	*by = strdup(owner);
	return *by ? 1 : db_error(q, err, "out of memory");
}

/* One look at a batch of candidates: 1 and *take when one may go, 0 when
 * none of them may (those that wait are marked with what they wait for, so
 * that they are not looked at again until it changes), -1 on failure. */
static int pick(struct queue *q, struct candidate *c, size_t n, const struct strmap *busy, struct candidate *take,
                size_t *marked, struct sbuf *err)
{
	*marked = 0;
	for (size_t i = 0; i < n; i++) {
		char *by = NULL;
		int w = busy_with(q, c[i].id, c[i].key, busy, &by, err);
		if (w == 0)
			w = blocker(q, c[i].id, c[i].key, &by, err);
		if (w == 1) {
			w = mark_waiting(q, c[i].id, by, err);
			(*marked)++;
			free(by);
			if (w < 0)
				return -1;
			continue;
		}
		if (w < 0)
			return -1;
		*take = c[i];
		c[i].key = NULL;
		return 1;
	}
	return 0;
}

int queue_next(struct queue *q, double now, const struct strmap *busy, struct queue_delivery *d, struct sbuf *err)
{
	size_t max = 16, n = 0, marked = 0;
	struct candidate *c = calloc(max, sizeof(*c)), take = { 0 };
	int rc = -1, got = 0;

	memset(d, 0, sizeof(*d));
	if (!c)
		return db_error(q, err, "out of memory");
	if (stmtcache_exec(&q->sc, "BEGIN IMMEDIATE") != SQLITE_OK) {
		free(c);
		return db_error(q, err, "begin");
	}
	do {
		for (size_t i = 0; i < n; i++)
			free(c[i].key);
		if (candidates(q, now, max, c, &n, err) < 0 || (got = pick(q, c, n, busy, &take, &marked, err)) < 0)
			goto cleanup;
	} while (!got && n == max && marked > 0);
	if (got && load_run(q, take.key, take.id, d, err) < 0)
		goto cleanup;
	rc = got;
cleanup:
	for (size_t i = 0; i < n; i++)
		free(c[i].key);
	free(c);
	free(take.key);
	if (stmtcache_exec(&q->sc, rc >= 0 ? "COMMIT" : "ROLLBACK") != SQLITE_OK && rc >= 0)
		rc = db_error(q, err, "commit");
	if (rc < 0)
		queue_delivery_free(d);
	return rc;
}

static int exec_ids(struct queue *q, const char *sql, const struct queue_delivery *d, const char *text, double num,
                    struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (stmtcache_exec(&q->sc, "BEGIN IMMEDIATE") != SQLITE_OK)
		return db_error(q, err, "begin");
	if (!(st = stmtcache_get(&q->sc, sql))) {
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
	/* whatever waited for this record may be able to go now */
	stmtcache_done(st);
	st = NULL;
	if (!(st = stmtcache_get(&q->sc, "UPDATE deliveries SET waiting_on = NULL WHERE waiting_on = ?"))) {
		db_error(q, err, "prepare");
		goto cleanup;
	}
	sqlite3_bind_text(st, 1, d->record_key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		db_error(q, err, "write");
		goto cleanup;
	}
	if (stmtcache_exec(&q->sc, "COMMIT") != SQLITE_OK) {
		db_error(q, err, "commit");
		goto cleanup;
	}
	rc = 0;
cleanup:
	stmtcache_done(st);
	if (rc < 0)
		stmtcache_exec(&q->sc, "ROLLBACK");
	return rc;
}

int queue_forget_waits(struct queue *q, struct sbuf *err)
{
	if (sqlite3_exec(q->db, "UPDATE deliveries SET waiting_on = NULL WHERE waiting_on IS NOT NULL", NULL, NULL,
	                 NULL) != SQLITE_OK)
		return db_error(q, err, "write");
	return 0;
}

int queue_release(struct queue *q, const char *record_key, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int rc = 0;

	if (!(st = stmtcache_get(&q->sc, "UPDATE deliveries SET waiting_on = NULL WHERE waiting_on = ?")))
		return db_error(q, err, "prepare");
	sqlite3_bind_text(st, 1, record_key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = db_error(q, err, "write");
	stmtcache_done(st);
	return rc;
}

int queue_wait(struct queue *q, const struct queue_delivery *d, const char *by, struct sbuf *err)
{
	return exec_ids(q, "UPDATE deliveries SET waiting_on = ? WHERE id = ?", d, by, -1, err);
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
	if (!(st = stmtcache_get(&q->sc, "SELECT state, count(*) FROM deliveries GROUP BY state")))
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
	stmtcache_done(st);
	return rc;
}

int queue_rows(struct queue *q, int (*fn)(void *ctx, const struct queue_row *r), void *ctx, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int step, rc = 0;

	if (!(st = stmtcache_get(&q->sc, "SELECT id, state, type, record_key, attempts, received, last_error, next_attempt, "
	                       "waiting_on FROM deliveries ORDER BY CASE state WHEN 'dead' THEN 0 WHEN 'held' THEN 1 "
	                       "ELSE 2 END, id")))
		return db_error(q, err, "prepare");
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
		struct queue_row r = {
			.id = sqlite3_column_int64(st, 0),
			.state = (const char *)sqlite3_column_text(st, 1),
			.type = (const char *)sqlite3_column_text(st, 2),
			.record_key = (const char *)sqlite3_column_text(st, 3),
			.attempts = sqlite3_column_int(st, 4),
			.received = (const char *)sqlite3_column_text(st, 5),
			.last_error = (const char *)sqlite3_column_text(st, 6),
			.next_attempt = sqlite3_column_double(st, 7),
			.waiting_on = (const char *)sqlite3_column_text(st, 8),
		};
		rc = fn(ctx, &r);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = db_error(q, err, "read");
	stmtcache_done(st);
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

	/* deliveries that waited for these look again */
	if (queue_forget_waits(q, err) < 0)
		return -1;

	if (!(st = stmtcache_get(&q->sc, sql)))
		return db_error(q, err, "prepare");
	if (id)
		sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(q, err, "write");
	else
		n = sqlite3_changes(q->db);
	stmtcache_done(st);
	return n;
}

int queue_drop(struct queue *q, int64_t id, struct sbuf *err)
{
	sqlite3_stmt *st = NULL;
	int n = -1;

	if (!(st = stmtcache_get(&q->sc, "DELETE FROM deliveries WHERE state = 'dead' AND id = ?")))
		return db_error(q, err, "prepare");
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		db_error(q, err, "write");
	else
		n = sqlite3_changes(q->db) > 0;
	stmtcache_done(st);
	return n;
}

/* ---- group commit ------------------------------------------------------- */

struct waiter {
	const char *type;
	const char *body;
	const char *key;
	const struct strmap *refs;
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
	void (*observe)(double, const char *, void *);
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
				items[i].refs = w->refs;
				items[i].body = w->body;
			}
			rc = queue_put(c->q, items, n, &err);
		}
		if (c->observe)
			c->observe(seconds_now() - t0, rc == 0 ? NULL : sbuf_str(&err), c->observe_ctx);
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

void queue_committer_observe(struct queue_committer *c, void (*fn)(double, const char *, void *), void *ctx)
{
	c->observe = fn;
	c->observe_ctx = ctx;
}

void queue_committer_notify(struct queue_committer *c, void (*fn)(void *), void *ctx)
{
	c->notify = fn;
	c->notify_ctx = ctx;
}

int queue_submit(struct queue_committer *c, const char *type, const char *record_key, const struct strmap *refs,
                 const char *body, struct sbuf *err)
{
	struct waiter w = { .type = type, .body = body, .key = record_key, .refs = refs };
	int rc;

	pthread_mutex_lock(&c->mu);
	if (c->stop) {
		pthread_mutex_unlock(&c->mu);
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
	return rc;
}
