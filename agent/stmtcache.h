/*
 * stmtcache: prepared SQLite statements kept for the life of a connection.
 *
 * The queue and the store ask the same few questions for every delivery;
 * parsing their SQL each time cost more than running it.  A cache holds up
 * to STMTCACHE_MAX statements of one connection, found by the address of
 * their SQL text (the callers' string literals: a handful each), prepared on
 * first use with SQLITE_PREPARE_PERSISTENT.
 *
 * stmtcache_get() hands out a statement reset and with its bindings
 * cleared; the caller resets it again when done with it (stmtcache_done),
 * so that no finished SELECT keeps a read transaction open.
 *
 * Memory: the cache owns its statements (finalized by stmtcache_free); it
 * does not own the connection, which must outlive it.
 */
#ifndef FLA_STMTCACHE_H
#define FLA_STMTCACHE_H

#include <sqlite3.h>
#include <stddef.h>

struct stmtcache {
	sqlite3 *db;
	struct stmtcache_entry {
		const char *sql; /* compared by address */
		sqlite3_stmt *stmt;
	} *v;
	size_t n, cap;
};

void stmtcache_init(struct stmtcache *c, sqlite3 *db);
/* The statement for sql, or NULL (sqlite3_errcode/errmsg say why, or it
 * is out of memory). */
sqlite3_stmt *stmtcache_get(struct stmtcache *c, const char *sql);
/* Resets a statement got from the cache (NULL is allowed). */
void stmtcache_done(sqlite3_stmt *st);
/* Runs a statement without parameters or rows (BEGIN, COMMIT, ...):
 * SQLITE_OK or the SQLite error. */
int stmtcache_exec(struct stmtcache *c, const char *sql);
void stmtcache_free(struct stmtcache *c);

#endif
