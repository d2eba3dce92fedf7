#include "build.h"

#include "store.h"

#include "common/clock.h"
#include "statedir.h"
#include "stmtcache.h"

#include <errno.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct store {
	sqlite3 *db;
	bool relaxed; /* synchronous=NORMAL: see store_set_relaxed */
	/* prepared statements, kept: sync and every delivery ask the same few questions */
	struct stmtcache sc;
};

/* A prepared statement for sql, reset and ready for new bindings; owned by the store. */
static sqlite3_stmt *prepared(struct store *st, const char *sql)
{
	return stmtcache_get(&st->sc, sql);
}

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=FULL;"
	"CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1');"
	"CREATE TABLE IF NOT EXISTS audit ("
	"  id INTEGER PRIMARY KEY,"
	"  time TEXT NOT NULL,"
	"  event TEXT NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  record_id TEXT NOT NULL,"
	"  dn TEXT NOT NULL,"
	"  operation TEXT NOT NULL,"
	"  attributes TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS schedule ("
	"  kind TEXT NOT NULL,"
	"  record_id TEXT NOT NULL,"
	"  due TEXT NOT NULL,"
	"  body TEXT NOT NULL,"
	"  created TEXT NOT NULL,"
	"  PRIMARY KEY (kind, record_id));"
	"CREATE TABLE IF NOT EXISTS guard (time REAL NOT NULL);"
	"CREATE TABLE IF NOT EXISTS terminated ("
	"  key TEXT PRIMARY KEY,"
	"  since TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS versions ("
	"  record TEXT PRIMARY KEY,"
	"  updated REAL NOT NULL,"
	"  stamp TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS waiting_refs ("
	"  target TEXT NOT NULL,"
	"  waiter TEXT NOT NULL,"
	"  type TEXT NOT NULL,"
	"  body TEXT NOT NULL,"
	"  since REAL NOT NULL,"
	"  PRIMARY KEY (target, waiter));"
	"CREATE TABLE IF NOT EXISTS left_groups ("
	"  key TEXT NOT NULL,"
	"  dn TEXT NOT NULL,"
	"  PRIMARY KEY (key, dn));"
	"CREATE TABLE IF NOT EXISTS marks ("
	"  record TEXT NOT NULL,"
	"  what TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (record, what));";

static int db_error(struct store *st, struct sbuf *err, const char *what)
{
	sbuf_addf(err, "state store: %s: %s", what, st->db ? sqlite3_errmsg(st->db) : "no database");
	return -1;
}

/* The database, its WAL and shared-memory files: none a symbolic link (the
 * agent would write wherever it points); 0600, when opened to write, even
 * when an older version or a wide umask left them readable by others. */
static int private_files(const char *db, bool writable, struct sbuf *err)
{
	static const char *const suffixes[] = { "", "-wal", "-shm", NULL };
	char path[4096];
	struct stat sb;

	for (size_t i = 0; suffixes[i]; i++) {
		snprintf(path, sizeof(path), "%s%s", db, suffixes[i]);
		if (lstat(path, &sb) < 0)
			continue;
		if (S_ISLNK(sb.st_mode)) {
			/* followed, it would have the agent (root, maybe) write wherever the link points */
			sbuf_addf(err, "state store: %s is a symbolic link: the state folder's files are the agent's own; "
			               "remove it",
			          path);
			return -1;
		}
		if (!writable || !(sb.st_mode & 077))
			continue;
		if (chmod(path, 0600) < 0) {
			sbuf_addf(err, "state store: %s is readable by others (mode %04o) and cannot be narrowed: %s; "
			               "chmod 600 %s",
			          path, (unsigned)(sb.st_mode & 07777), strerror(errno), path);
			return -1;
		}
	}
	return 0;
}

/* SQLite's own busy handler sleeps a whole millisecond and more between
 * tries; the queue's transactions last tens of microseconds, so the
 * receiver and the workers would wait far longer than the lock is held.
 * This one tries again after 25 us, doubling up to 1 ms, until ms have
 * gone by. */
static int busy_wait(void *ctx, int count)
{
	long ms = (long)(intptr_t)ctx, slept_us = count < 6 ? 25L * ((1L << count) - 1) : 1575L + (count - 6) * 1000L;
	struct timespec ts = { 0, (count < 6 ? 25L << count : 1000L) * 1000L };

	if (slept_us / 1000 >= ms)
		return 0;
	nanosleep(&ts, NULL);
	return 1;
}

int store_db_busy_timeout(sqlite3 *db, int ms)
{
	return sqlite3_busy_handler(db, busy_wait, (void *)(intptr_t)ms);
}

int store_db_open(const char *state_dir, int flags, int busy_ms, const char *ddl, struct sqlite3 **db,
                  struct sbuf *err)
{
	struct sbuf path;
	int rc = -1;

	*db = NULL;
	sbuf_init(&path);
	if ((flags & SQLITE_OPEN_CREATE) && statedir_prepare(state_dir, err) < 0)
		goto cleanup;
	sbuf_addf(&path, "%s/state.db", state_dir);
	if (private_files(sbuf_str(&path), (flags & SQLITE_OPEN_READWRITE) != 0, err) < 0)
		goto cleanup;
	if (sqlite3_open_v2(sbuf_str(&path), db, flags | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK ||
	    store_db_busy_timeout(*db, busy_ms) != SQLITE_OK ||
	    /* a page cache of 256 KiB per connection (SQLite's default is 2 MiB): the queue's
	     * questions touch a few pages each, and a dozen connections would otherwise keep
	     * megabytes of a backlog that is long gone */
	    sqlite3_exec(*db, "PRAGMA cache_size=-256", NULL, NULL, NULL) != SQLITE_OK ||
	    (ddl && sqlite3_exec(*db, ddl, NULL, NULL, NULL) != SQLITE_OK)) {
		sbuf_addf(err, "state store: %s: %s", sbuf_str(&path), *db ? sqlite3_errmsg(*db) : "out of memory");
		goto cleanup;
	}
	rc = 0;
cleanup:
	if (rc < 0) {
		sqlite3_close(*db);
		*db = NULL;
	}
	sbuf_free(&path);
	return rc;
}

/* Opens the store with the given flags; a read-only open of a store that
 * does not exist yet leaves *out NULL and succeeds. */
static int open_with(const char *state_dir, int flags, const char *with_schema, struct store **out,
                     struct sbuf *err)
{
	struct store *st = NULL;
	struct sbuf path;
	struct stat sb;
	int rc = -1;

	*out = NULL;
	sbuf_init(&path);
	sbuf_addf(&path, "%s/state.db", state_dir);
	if (!(flags & SQLITE_OPEN_CREATE) && stat(sbuf_str(&path), &sb) < 0) {
		rc = 0; /* no store yet: nothing to read */
		goto cleanup;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		sbuf_adds(err, "state store: out of memory");
		goto cleanup;
	}
	if (store_db_open(state_dir, flags | SQLITE_OPEN_FULLMUTEX, 5000, with_schema, &st->db, err) < 0)
		goto cleanup;
	stmtcache_init(&st->sc, st->db);
	*out = st;
	st = NULL;
	rc = 0;
cleanup:
	store_close(st);
	sbuf_free(&path);
	return rc;
}

int store_open(const char *state_dir, struct store **out, struct sbuf *err)
{
	return open_with(state_dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, schema, out, err);
}

int store_open_readonly(const char *state_dir, struct store **out, struct sbuf *err)
{
	return open_with(state_dir, SQLITE_OPEN_READONLY, NULL, out, err);
}

void store_close(struct store *st)
{
	if (!st)
		return;
	stmtcache_free(&st->sc);
	sqlite3_close(st->db);
	free(st);
}

static void now_text(char *buf, size_t len)
{
	time_t t = clock_now();
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Runs one statement with text parameters (NULL-terminated list). */
static int exec_text(struct store *st, const char *sql, const char *const *params, struct sbuf *err)
{
	sqlite3_stmt *stmt = prepared(st, sql);
	int rc = -1;

	if (!stmt)
		return db_error(st, err, "prepare");
	for (int i = 0; params[i]; i++)
		sqlite3_bind_text(stmt, i + 1, params[i], -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) != SQLITE_DONE) {
		db_error(st, err, "write");
		goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_reset(stmt);
	return rc;
}

/* exec_text, committed with a flush to the disk even on a relaxed connection. */
static int exec_durable(struct store *st, const char *sql, const char *const *params, struct sbuf *err)
{
	int rc;

	if (st->relaxed && stmtcache_exec(&st->sc, "PRAGMA synchronous=FULL") != SQLITE_OK)
		return db_error(st, err, "write");
	rc = exec_text(st, sql, params, err);
	if (st->relaxed && stmtcache_exec(&st->sc, "PRAGMA synchronous=NORMAL") != SQLITE_OK && rc == 0)
		rc = db_error(st, err, "write");
	return rc;
}

int store_db_relax(sqlite3 *db)
{
	return sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
}

int store_set_relaxed(struct store *st, struct sbuf *err)
{
	if (store_db_relax(st->db) != SQLITE_OK)
		return db_error(st, err, "set synchronous=NORMAL");
	st->relaxed = true;
	return 0;
}

int store_audit(struct store *st, const char *event, const char *kind, const char *record_id, const char *dn,
                const char *operation, const char *attributes, struct sbuf *err)
{
	char now[32];
	const char *p[] = { now, event, kind, record_id, dn, operation, attributes, NULL };

	now_text(now, sizeof(now));
	return exec_text(st,
	                 "INSERT INTO audit (time, event, kind, record_id, dn, operation, attributes) "
	                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
	                 p, err);
}

int store_schedule_put(struct store *st, const char *kind, const char *record_id, const char *due,
                       const char *body, struct sbuf *err)
{
	char now[32];
	const char *p[] = { kind, record_id, due, body, now, NULL };

	now_text(now, sizeof(now));
	return exec_text(st,
	                 "INSERT INTO schedule (kind, record_id, due, body, created) VALUES (?, ?, ?, ?, ?) "
	                 "ON CONFLICT (kind, record_id) DO UPDATE SET due = excluded.due, body = excluded.body",
	                 p, err);
}

int store_schedule_remove(struct store *st, const char *kind, const char *record_id, struct sbuf *err)
{
	const char *p[] = { kind, record_id, NULL };
	char *due = NULL;
	int have = store_schedule_get(st, kind, record_id, &due, NULL, err);

	/* a read first: most records have nothing scheduled, and a write costs a commit */
	free(due);
	if (have <= 0)
		return have;
	return exec_text(st, "DELETE FROM schedule WHERE kind = ? AND record_id = ?", p, err);
}

int store_schedule_get(struct store *st, const char *kind, const char *record_id, char **due, char **body,
                       struct sbuf *err)
{
	sqlite3_stmt *stmt = NULL;
	int rc = -1, step;

	*due = NULL;
	if (body)
		*body = NULL;
	if (!(stmt = prepared(st, "SELECT due, body FROM schedule WHERE kind = ? AND record_id = ?"))) {
		db_error(st, err, "prepare");
		goto cleanup;
	}
	sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, record_id, -1, SQLITE_STATIC);
	step = sqlite3_step(stmt);
	if (step == SQLITE_DONE) {
		rc = 0;
		goto cleanup;
	}
	if (step != SQLITE_ROW) {
		db_error(st, err, "read");
		goto cleanup;
	}
	*due = strdup((const char *)sqlite3_column_text(stmt, 0));
	if (body)
		*body = strdup((const char *)sqlite3_column_text(stmt, 1));
	rc = 1;
cleanup:
	if (stmt)
		sqlite3_reset(stmt);
	return rc;
}

int store_mark(struct store *st, const char *record, const char *what, char **value, struct sbuf *err)
{
	sqlite3_stmt *stmt = NULL;
	int rc = -1, step;

	if (value)
		*value = NULL;
	if (!(stmt = prepared(st, "SELECT value FROM marks WHERE record = ? AND what = ?")))
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, record, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, what, -1, SQLITE_STATIC);
	step = sqlite3_step(stmt);
	if (step == SQLITE_DONE) {
		rc = 0;
	} else if (step != SQLITE_ROW) {
		db_error(st, err, "read");
	} else if (value && !(*value = strdup((const char *)sqlite3_column_text(stmt, 0)))) {
		sbuf_adds(err, "state store: out of memory");
	} else {
		rc = 1;
	}
	sqlite3_reset(stmt);
	return rc;
}

int store_set_mark(struct store *st, const char *record, const char *what, const char *value, struct sbuf *err)
{
	const char *set[] = { record, what, value, NULL };
	const char *del[] = { record, what, NULL };

	return value ? exec_durable(st, "INSERT OR REPLACE INTO marks (record, what, value) VALUES (?, ?, ?)", set, err)
	             : exec_durable(st, "DELETE FROM marks WHERE record = ? AND what = ?", del, err);
}

int store_schedule_due(struct store *st, const char *today,
                       int (*fn)(void *ctx, const char *kind, const char *record_id, const char *body), void *ctx,
                       struct sbuf *err)
{
	sqlite3_stmt *stmt = NULL;
	int rc = -1;

	if (sqlite3_prepare_v2(st->db, "SELECT kind, record_id, body FROM schedule WHERE due <= ? ORDER BY due", -1,
	                       &stmt, NULL) != SQLITE_OK)
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, today, -1, SQLITE_STATIC);
	for (;;) {
		int step = sqlite3_step(stmt);
		if (step == SQLITE_DONE)
			break;
		if (step != SQLITE_ROW) {
			db_error(st, err, "read");
			goto cleanup;
		}
		if (fn(ctx, (const char *)sqlite3_column_text(stmt, 0), (const char *)sqlite3_column_text(stmt, 1),
		       (const char *)sqlite3_column_text(stmt, 2)) < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	sqlite3_finalize(stmt);
	return rc;
}

int store_probe(struct store *st, struct sbuf *err)
{
	if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(st, err, "cannot commit");
	if (sqlite3_exec(st->db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', datetime('now'))", NULL,
	                 NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(st, err, "cannot commit");
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

void store_set_busy_timeout(struct store *st, int ms)
{
	store_db_busy_timeout(st->db, ms);
}

int store_terminated(struct store *st, const char *key, struct sbuf *err)
{
	sqlite3_stmt *stmt = NULL;
	int rc = -1, step;

	if (!(stmt = prepared(st, "SELECT 1 FROM terminated WHERE key = ?")))
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW)
		rc = 1;
	else if (step == SQLITE_DONE)
		rc = 0;
	else
		db_error(st, err, "read");
	sqlite3_reset(stmt);
	return rc;
}

int store_set_terminated(struct store *st, const char *key, bool terminated, struct sbuf *err)
{
	char now[32];
	const char *add[] = { key, now, NULL };
	const char *del[] = { key, NULL };
	int have = store_terminated(st, key, err);

	/* a read first: a write costs a commit, and nearly every call changes nothing */
	if (have < 0 || have == (int)terminated)
		return have < 0 ? -1 : 0;
	now_text(now, sizeof(now));
	if (terminated)
		return exec_durable(st, "INSERT OR REPLACE INTO terminated (key, since) VALUES (?, ?)", add, err);
	return exec_durable(st, "DELETE FROM terminated WHERE key = ?", del, err);
}

long store_guard_count(struct store *st, double since, struct sbuf *err)
{
	sqlite3_stmt *stmt = NULL;
	long n = -1;

	if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM guard WHERE time > ?", -1, &stmt, NULL) != SQLITE_OK)
		return db_error(st, err, "prepare");
	sqlite3_bind_double(stmt, 1, since);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		n = sqlite3_column_int(stmt, 0);
	else
		db_error(st, err, "read");
	sqlite3_finalize(stmt);
	return n;
}

int store_guard_add(struct store *st, double when, struct sbuf *err)
{
	char buf[64];
	const char *p[] = { buf, NULL };

	snprintf(buf, sizeof(buf), "%.3f", when);
	if (exec_text(st, "DELETE FROM guard WHERE time < ? - 86400", p, err) < 0)
		return -1;
	return exec_durable(st, "INSERT INTO guard (time) VALUES (?)", p, err);
}

int store_begin(struct store *st, struct sbuf *err)
{
	if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_error(st, err, "begin");
	return 0;
}

int store_commit(struct store *st, struct sbuf *err)
{
	if (sqlite3_get_autocommit(st->db))
		return 0;
	if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_error(st, err, "commit");
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int store_version(struct store *st, const char *record, double *updated, char **stamp, struct sbuf *err)
{
	sqlite3_stmt *stmt = prepared(st, "SELECT updated, stamp FROM versions WHERE record = ?");
	int rc = -1, step;

	*stamp = NULL;
	if (!stmt)
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, record, -1, SQLITE_STATIC);
	step = sqlite3_step(stmt);
	if (step == SQLITE_ROW) {
		*updated = sqlite3_column_double(stmt, 0);
		*stamp = strdup((const char *)sqlite3_column_text(stmt, 1));
		rc = *stamp ? 1 : db_error(st, err, "out of memory");
	} else if (step == SQLITE_DONE) {
		rc = 0;
	} else {
		db_error(st, err, "read");
	}
	sqlite3_reset(stmt);
	return rc;
}

int store_set_version(struct store *st, const char *record, double updated, const char *stamp, struct sbuf *err)
{
	sqlite3_stmt *stmt = prepared(st, "INSERT INTO versions (record, updated, stamp) VALUES (?, ?, ?) "
	                                  "ON CONFLICT (record) DO UPDATE SET updated = excluded.updated, "
	                                  "stamp = excluded.stamp WHERE excluded.updated > versions.updated");
	int rc = 0;

	if (!stmt)
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, record, -1, SQLITE_STATIC);
	sqlite3_bind_double(stmt, 2, updated);
	sqlite3_bind_text(stmt, 3, stamp, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = db_error(st, err, "write");
	sqlite3_reset(stmt);
	return rc;
}

int store_left_group(struct store *st, const char *key, const char *dn, struct sbuf *err)
{
	const char *p[] = { key, dn, NULL };

	return exec_durable(st, "INSERT OR IGNORE INTO left_groups (key, dn) VALUES (?, ?)", p, err);
}

int store_left_groups(struct store *st, const char *key, struct vlist *dns, struct sbuf *err)
{
	sqlite3_stmt *stmt = prepared(st, "SELECT dn FROM left_groups WHERE key = ? ORDER BY dn");
	int step;

	if (!stmt)
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		const char *dn = (const char *)sqlite3_column_text(stmt, 0);
		vlist_push_copy(dns, dn, strlen(dn));
	}
	sqlite3_reset(stmt);
	return step == SQLITE_DONE ? 0 : db_error(st, err, "read");
}

int store_forget_left_groups(struct store *st, const char *key, struct sbuf *err)
{
	const char *p[] = { key, NULL };

	return exec_text(st, "DELETE FROM left_groups WHERE key = ?", p, err);
}

int store_wait_for(struct store *st, const char *target, const char *waiter, const char *type, const char *body,
                   struct sbuf *err)
{
	sqlite3_stmt *stmt;
	int rc = 0;

	/* a reference nothing came to resolve in a month is let go */
	if (!(stmt = prepared(st, "DELETE FROM waiting_refs WHERE since < ?")))
		return db_error(st, err, "prepare");
	sqlite3_bind_double(stmt, 1, (double)time(NULL) - 30 * 86400.0);
	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = db_error(st, err, "write");
	sqlite3_reset(stmt);
	if (rc < 0)
		return rc;
	if (!(stmt = prepared(st, "INSERT INTO waiting_refs (target, waiter, type, body, since) VALUES (?, ?, ?, ?, ?) "
	                          "ON CONFLICT (target, waiter) DO UPDATE SET type = excluded.type, body = excluded.body, "
	                          "since = excluded.since")))
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, target, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, waiter, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, body, -1, SQLITE_STATIC);
	sqlite3_bind_double(stmt, 5, (double)time(NULL));
	if (sqlite3_step(stmt) != SQLITE_DONE)
		rc = db_error(st, err, "write");
	sqlite3_reset(stmt);
	return rc;
}

int store_take_waiters(struct store *st, const char *target,
                       void (*fn)(void *ctx, const char *type, const char *body), void *ctx, struct sbuf *err)
{
	sqlite3_stmt *stmt = prepared(st, "SELECT type, body FROM waiting_refs WHERE target = ? ORDER BY since");
	const char *p[] = { target, NULL };
	int step, n = 0;

	if (!stmt)
		return db_error(st, err, "prepare");
	sqlite3_bind_text(stmt, 1, target, -1, SQLITE_STATIC);
	while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
		fn(ctx, (const char *)sqlite3_column_text(stmt, 0), (const char *)sqlite3_column_text(stmt, 1));
		n++;
	}
	sqlite3_reset(stmt);
	if (step != SQLITE_DONE)
		return db_error(st, err, "read");
	return n ? exec_text(st, "DELETE FROM waiting_refs WHERE target = ?", p, err) : 0;
}
