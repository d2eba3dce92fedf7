#include "build.h"

#include "stmtcache.h"

#include <stdlib.h>
#include <string.h>

void stmtcache_init(struct stmtcache *c, sqlite3 *db)
{
	memset(c, 0, sizeof(*c));
	c->db = db;
}

sqlite3_stmt *stmtcache_get(struct stmtcache *c, const char *sql)
{
	sqlite3_stmt *st = NULL;

	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].sql == sql) {
			sqlite3_reset(c->v[i].stmt);
			sqlite3_clear_bindings(c->v[i].stmt);
			return c->v[i].stmt;
		}
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct stmtcache_entry *v = realloc(c->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		c->v = v;
		c->cap = cap;
	}
	if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return NULL;
	}
	c->v[c->n].sql = sql;
	c->v[c->n++].stmt = st;
	return st;
}

void stmtcache_done(sqlite3_stmt *st)
{
	if (st)
		sqlite3_reset(st);
}

int stmtcache_exec(struct stmtcache *c, const char *sql)
{
	sqlite3_stmt *st = stmtcache_get(c, sql);
	int rc;

	if (!st)
		return sqlite3_errcode(c->db) != SQLITE_OK ? sqlite3_errcode(c->db) : SQLITE_NOMEM;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

void stmtcache_free(struct stmtcache *c)
{
	for (size_t i = 0; i < c->n; i++)
		sqlite3_finalize(c->v[i].stmt);
	free(c->v);
	c->v = NULL;
	c->n = c->cap = 0;
}
