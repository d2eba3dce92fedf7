/*
 * factorial_int: what the files of the API client share, and nothing outside
 * it includes.  factorial.h is the module's face:
 *
 *   factorial.c        the client: opened, closed, answers read; calls with
 *                      retries, pages, records read fresh (enrich)
 *   factorial_oauth.c  OAuth tokens: shared by the process's clients, renewed,
 *                      the rotated refresh token kept in the state folder
 *
 * Memory: as factorial.h says.
 */
#ifndef FLA_FACTORIAL_INT_H
#define FLA_FACTORIAL_INT_H

#include "factorial.h"
#include "common/clock.h"
#include "common/json.h"
#include "ids.h"
#include "metrics.h"
#include "common/log.h"
#include "common/secret.h"
#include "statedir.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ATTEMPTS 5          /* tries for 5xx, 429 and network errors */
#define BACKOFF_BASE 0.25   /* seconds before the second try; doubles */
#define RETRY_AFTER_MAX 120 /* longest Retry-After honoured, seconds */
#define TEAMS_TTL 60        /* seconds the teams list is cached */

struct factorial {
	CURL *curl;
	long list_total; /* meta.total of the list being read, -1 when the API does not say */
	char *base;    /* base_url without a trailing slash */
	char *version;
	char *ca_file;
	long connect_timeout;
	long timeout;
	size_t max_response;
	struct secret api_key; /* or a company OAuth token, with bearer */
	bool bearer; /* api_key holds a company token: sent as a bearer token, never refreshed */
	bool oauth;
	char *token_url;
	char *client_id;
	char *client_secret_file;
	char *refresh_token_file;
	char *kept_token_file; /* state_dir/oauth-refresh-token */
	struct secret access_token;
	time_t access_expiry;
	cJSON *teams;  /* cached teams list */
	time_t teams_at;
	unsigned teams_generation; /* of the process's team changes when the list was read */
	long requests;
	long refreshes;
	bool forbidden; /* the last refusal was a 403: the token lacks a permission (an OAuth scope) */
};

struct reply {
	struct sbuf body;
	long retry_after; /* seconds, -1 when absent */
	size_t limit;     /* factorial.max_response_bytes */
	bool too_large;   /* the answer went past limit: the transfer was stopped */
};

/* factorial.c */
size_t factorial_on_body(char *data, size_t size, size_t n, void *ctx);
const char *factorial_transfer_error(const struct reply *r, CURLcode cc);

/* factorial_oauth.c */
int factorial_refresh(struct factorial *f, struct sbuf *err);
void factorial_access_refused(struct factorial *f);

#endif
