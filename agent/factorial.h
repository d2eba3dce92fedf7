/*
 * factorial: the Factorial API client, on libcurl.
 *
 * It takes away what every call needs: the base URL and dated API version
 * from the configuration; authentication by `x-api-key` (read from its file)
 * or by OAuth2 bearer tokens, refreshed with the refresh token when they
 * expire and once more on a 401; connect and total timeouts; TLS verified
 * (factorial.ca_file, or the system's CAs); a 429 waits as Retry-After says;
 * 5xx answers and network errors are retried with backoff a bounded number of
 * times, then reported with the method, URL and last answer.  No key or
 * token ever reaches a message.
 *
 * factorial_list() pages through a collection: by cursor (`after_id`,
 * `meta.has_next_page`, `meta.end_cursor`), or, when the API answers
 * without a cursor, by `page`.  factorial_enrich() re-reads an employee by id
 * and adds `job_title` (latest contract version) and `team_ids` (from the
 * teams, cached for a minute, or until a team or membership delivery says
 * they changed).
 *
 * OAuth tokens are the process's, shared by its clients (one refresh at a
 * time: a rotated refresh token is spent once used).  The configured
 * refresh_token_file is only the first seed: a rotated token is saved in
 * state_dir/oauth-refresh-token (a new file, O_EXCL and O_NOFOLLOW, synced,
 * renamed over the old copy) before it is relied on, and the newer of the
 * two files is used at start (the other one when the newer is refused), so
 * a read-only configuration folder is fine and a person can put a new token
 * in the configured file.  A token that cannot be saved is kept in memory,
 * logged as an error and shown by the metric oauth_refresh_token_unsaved.
 *
 * Memory: a struct factorial owns its curl handle, its secrets (wiped on
 * free) and its cache; it is not shared between threads.  cJSON values it
 * returns belong to the caller.
 */
#ifndef FLA_FACTORIAL_H
#define FLA_FACTORIAL_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "common/sbuf.h"

struct factorial;

struct factorial_answer {
	long status;  /* HTTP status; 0 when no answer came */
	cJSON *json;  /* the parsed body, or NULL */
};

int factorial_open(const struct config *cfg, struct factorial **out, struct sbuf *err);
void factorial_close(struct factorial *f);

/* One request to path (under /api/{version}/resources/, or absolute when it
 * starts with '/'); query is "a=b&c=d" already escaped, or NULL; body is
 * JSON or NULL.  Returns 0 with the answer (any status the caller must judge,
 * after retries), or -1 when no usable answer came (reason in err). */
int factorial_call(struct factorial *f, const char *method, const char *path, const char *query, const cJSON *body,
                   struct factorial_answer *ans, struct sbuf *err);
void factorial_answer_free(struct factorial_answer *a);

/* Calls fn for every element of every page of a collection; returns the
 * number of elements, or -1. */
long factorial_list(struct factorial *f, const char *path, const char *query,
                    int (*fn)(void *ctx, const cJSON *item), void *ctx, struct sbuf *err);

/* While a factorial_list() runs: how many items the whole list holds, as the
 * API's meta.total says; -1 when it does not say. */
long factorial_list_total(const struct factorial *f);

/* A factorial_list() callback that appends a copy of each item to the
 * cJSON array given as ctx. */
int factorial_collect(void *ctx, const cJSON *item);

/* GET by id: 1 and *out when found, 0 when the API says 404, -1 on failure. */
int factorial_get(struct factorial *f, const char *path, const char *id, cJSON **out, struct sbuf *err);

/* What an enrichment adds, as the mapping needs it (each costs a read). */
#define FACTORIAL_ENRICH_TITLE 0x1u /* job_title, from the contract versions */
#define FACTORIAL_ENRICH_TEAMS 0x2u /* team_ids, from the teams */

/* The employee read fresh, with what asks for added: job_title (of the
 * contract version in force on today, YYYY-MM-DD; NULL: the latest) and
 * team_ids.  1 and *out; 0 when the employee no longer exists; -1 on
 * failure (factorial_forbidden() tells a missing permission apart).  next
 * (when not NULL) gets the day the next contract version takes effect, ""
 * when none is dated later (or titles were not read). */
int factorial_enrich(struct factorial *f, const char *id, unsigned what, const char *today, cJSON **out,
                     char next[16], struct sbuf *err);

/* Whether the last refusal was a 403 (a permission, an OAuth scope, the
 * token lacks), not the API being away. */
bool factorial_forbidden(const struct factorial *f);
/* The OAuth scope a resource path needs ("contracts" for
 * contracts/contract_versions), and (when what is not NULL) what it holds
 * in words; NULL when the path is none the agent reads. */
const char *factorial_scope_of(const char *path, const char **what);

/* A team or membership changed: every client reads the teams list again
 * before its next enrichment instead of waiting for the minute to pass. */
void factorial_teams_changed(void);

/* Refresh tokens last a week, and rotate at every use: one spent after
 * FACTORIAL_KEEP_ALIVE_AFTER seconds gives a new week, so that an agent that
 * has nothing to ask the API for a week keeps its authorization. */
#define FACTORIAL_KEEP_ALIVE_AFTER (3 * 86400.0)
#define FACTORIAL_REFRESH_TOKEN_LIFE (7 * 86400.0)
/* With OAuth: spends the refresh token when it is FACTORIAL_KEEP_ALIVE_AFTER
 * old (now: clock_now()), or gets an access token when there is none; *age
 * gets the age of the refresh token in use (seconds; -1 without OAuth or
 * before the first).  0, or -1 (why in err) when the token endpoint refused
 * or could not be reached. */
int factorial_keep_alive(struct factorial *f, double now, double *age, struct sbuf *err);

/* Wipes the process's OAuth tokens (at exit). */
void factorial_forget_tokens(void);

/* Counters for tests and logs: requests sent, token refreshes. */
long factorial_requests(const struct factorial *f);
long factorial_refreshes(const struct factorial *f);

#endif
