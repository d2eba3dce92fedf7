/*
 * factorial_oauth: OAuth tokens: one pair for the process's clients, renewed
 * before they expire or when refused, the rotated refresh token written to
 * the state folder (O_EXCL, O_NOFOLLOW, fsynced, renamed).
 */
#include "build.h"

#include "factorial_int.h"

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

/* ---- OAuth tokens ----------------------------------------------------------- */

/* The OAuth tokens of the process, shared by every client in it: the refresh
 * token rotates on every use, so two clients must never spend the same one,
 * and one access token serves them all until it expires. */
static struct {
	pthread_mutex_t mu;
	char *seed;            /* factorial.oauth.refresh_token_file the first token came from */
	char *kept;            /* state_dir/oauth-refresh-token, where rotated tokens are saved */
	struct secret refresh; /* the newest refresh token, once known */
	struct secret access;
	time_t expiry;         /* of access, a minute early */
	bool unsaved;          /* the newest refresh token lives in memory only */
	double issued;         /* clock_now() when the refresh token in use was issued: its week starts there */
	double forced;         /* when keep-alive last spent one (an API that does not rotate is asked once an hour) */
} tokens = { .mu = PTHREAD_MUTEX_INITIALIZER };

void factorial_forget_tokens(void)
{
	pthread_mutex_lock(&tokens.mu);
	secret_free(&tokens.refresh);
	secret_free(&tokens.access);
	free(tokens.seed);
	free(tokens.kept);
	tokens.seed = tokens.kept = NULL;
	pthread_mutex_unlock(&tokens.mu);
}

static bool secret_same(const struct secret *a, const struct secret *b)
{
	return a->data && b->data && a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

static int secret_copy(struct secret *to, const struct secret *from)
{
	secret_free(to);
	if (!from->data)
		return 0;
	to->data = malloc(from->len + 1);
	if (!to->data)
		return -1;
	memcpy(to->data, from->data, from->len + 1);
	to->len = from->len;
	return 0;
}

/* A new configuration (a reload) that names other files starts over. */
static void tokens_follow(const struct factorial *f)
{
	if (tokens.seed && strcmp(tokens.seed, f->refresh_token_file) == 0 && tokens.kept &&
	    strcmp(tokens.kept, f->kept_token_file) == 0)
		return;
	free(tokens.seed);
	free(tokens.kept);
	tokens.seed = strdup(f->refresh_token_file);
	tokens.kept = strdup(f->kept_token_file);
	secret_free(&tokens.refresh);
	secret_free(&tokens.access);
	tokens.unsaved = false;
	metrics_token_unsaved(false);
}

static double mtime_of(const char *path)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		return -1;
	return (double)sb.st_mtim.tv_sec + (double)sb.st_mtim.tv_nsec / 1e9;
}

/* The refresh token files to try, the newer first: the copy the agent keeps
 * in state_dir (after its first rotation), and the configured file (the
 * seed, or a new token a person put there). */
static int candidates(const char *files[2])
{
	double kept = mtime_of(tokens.kept), seed = mtime_of(tokens.seed);

	if (kept < 0) {
		files[0] = tokens.seed;
		return 1;
	}
	files[0] = kept >= seed ? tokens.kept : tokens.seed;
	files[1] = kept >= seed ? tokens.seed : tokens.kept;
	return 2;
}

/* Saves a rotated refresh token to state_dir: a new file (O_EXCL, no link
 * followed), synced, then renamed over the old copy and the folder synced. */
static int keep_refresh_token(const char *token, struct sbuf *err)
{
	struct sbuf tmp;
	char *dir = NULL, *slash;
	int fd = -1, dfd = -1, rc = -1;
	size_t len = strlen(token);

	sbuf_init(&tmp);
	sbuf_addf(&tmp, "%s.new", tokens.kept);
	dir = strdup(tokens.kept);
	slash = dir ? strrchr(dir, '/') : NULL;
	if (!slash) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	*slash = '\0';
	if (statedir_prepare(dir, err) < 0)
		goto cleanup;
	unlink(sbuf_str(&tmp)); /* left by a crash */
	fd = open(sbuf_str(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, token, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
		sbuf_addf(err, "cannot write %s: %s", sbuf_str(&tmp), strerror(errno));
		goto cleanup;
	}
	close(fd);
	fd = -1;
	if (rename(sbuf_str(&tmp), tokens.kept) < 0) {
		sbuf_addf(err, "cannot rename %s to %s: %s", sbuf_str(&tmp), tokens.kept, strerror(errno));
		goto cleanup;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	rc = 0;
cleanup:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (rc < 0)
		unlink(sbuf_str(&tmp));
	free(dir);
	sbuf_free(&tmp);
	return rc;
}

/* A rotated refresh token: saved before it is relied on; kept in memory
 * (loudly) when it cannot be saved. */
static void rotated(const char *token)
{
	struct sbuf err;

	sbuf_init(&err);
	secret_free(&tokens.refresh);
	tokens.refresh.data = strdup(token);
	tokens.refresh.len = tokens.refresh.data ? strlen(token) : 0;
	tokens.issued = (double)clock_now();
	tokens.unsaved = keep_refresh_token(token, &err) < 0;
	metrics_token_unsaved(tokens.unsaved);
	if (tokens.unsaved)
		log_error("OAuth: the rotated refresh token could not be saved (%s); it is kept in memory only, and the "
		          "agent will need a new token after a restart: make the state folder writable by the agent's "
		          "user",
		          sbuf_str(&err));
	sbuf_free(&err);
}

/* POSTs the form to the token endpoint; the answer into r, its status into *status. */
static CURLcode post_form(struct factorial *f, const char *form, struct reply *r, long *status)
{
	struct curl_slist *h = NULL;
	CURLcode cc;

	curl_easy_reset(f->curl);
	h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
	h = curl_slist_append(h, "Accept: application/json");
	curl_easy_setopt(f->curl, CURLOPT_URL, f->token_url);
	curl_easy_setopt(f->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, form);
	curl_easy_setopt(f->curl, CURLOPT_CONNECTTIMEOUT, f->connect_timeout);
	curl_easy_setopt(f->curl, CURLOPT_TIMEOUT, f->timeout);
	curl_easy_setopt(f->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(f->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (f->ca_file)
		curl_easy_setopt(f->curl, CURLOPT_CAINFO, f->ca_file);
	curl_easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, factorial_on_body);
	curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, r);
	f->requests++;
	cc = curl_easy_perform(f->curl);
	*status = 0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	return cc;
}

/* The tokens of a good answer: the access token (a minute early) and, when it rotated, the refresh token. */
static int take_tokens(const cJSON *j, const struct secret *rt)
{
	const char *at = cJSON_GetObjectItemCaseSensitive(j, "access_token")->valuestring;
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
	const cJSON *nrt = cJSON_GetObjectItemCaseSensitive(j, "refresh_token");

	if (cJSON_IsString(nrt) && strcmp(nrt->valuestring, rt->data) != 0)
		rotated(nrt->valuestring);
	secret_free(&tokens.access);
	tokens.access.data = strdup(at);
	tokens.access.len = tokens.access.data ? strlen(at) : 0;
	/* trust expires_in, with a minute to spare */
	tokens.expiry = time(NULL) + (cJSON_IsNumber(exp) ? (time_t)exp->valuedouble : 3600) - 60;
	return tokens.access.data ? 0 : -1;
}

/* Wipes the strings of a parsed answer (tokens), then frees it. */
static void wipe_json(cJSON *j)
{
	cJSON *t;

	cJSON_ArrayForEach(t, j) {
		if (cJSON_IsString(t))
			explicit_bzero(t->valuestring, strlen(t->valuestring));
	}
	cJSON_Delete(j);
}

/* One token request with refresh token rt; 0 with the tokens taken, 1 when
 * the token or client was refused (why in err), -1 when no answer came. */
static int token_request(struct factorial *f, const struct secret *rt, const struct secret *cs, struct sbuf *err)
{
	struct reply r = { .retry_after = -1, .limit = f->max_response };
	char *erc = NULL, *ert = NULL, *ecs = NULL;
	struct sbuf form;
	cJSON *j = NULL;
	long status = 0;
	CURLcode cc;
	int rc = -1;

	sbuf_init(&form);
	sbuf_init(&r.body);
	f->refreshes++;
	erc = curl_easy_escape(f->curl, f->client_id, 0);
	ert = curl_easy_escape(f->curl, rt->data, (int)rt->len);
	ecs = curl_easy_escape(f->curl, cs->data, (int)cs->len);
	sbuf_addf(&form, "grant_type=refresh_token&refresh_token=%s&client_id=%s&client_secret=%s", ert, erc, ecs);
	if ((cc = post_form(f, sbuf_str(&form), &r, &status)) != CURLE_OK) {
		sbuf_addf(err, "OAuth: POST %s: %s", f->token_url, factorial_transfer_error(&r, cc));
		goto cleanup;
	}
	j = json_parse(sbuf_str(&r.body), r.body.len, NULL);
	if (status != 200 || !j || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "access_token"))) {
		const cJSON *why = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
		sbuf_addf(err, "OAuth: POST %s: HTTP %ld%s%s: the refresh token or client credentials were refused",
		          f->token_url, status, cJSON_IsString(why) ? " " : "", cJSON_IsString(why) ? why->valuestring : "");
		rc = status >= 400 && status < 500 ? 1 : -1;
		goto cleanup;
	}
	rc = take_tokens(j, rt);
cleanup:
	wipe_json(j);
	if (form.s)
		explicit_bzero(form.s, form.len);
	sbuf_free(&form);
	if (r.body.s)
		explicit_bzero(r.body.s, r.body.len);
	sbuf_free(&r.body);
	curl_free(erc);
	if (ert) {
		explicit_bzero(ert, strlen(ert));
		curl_free(ert);
	}
	if (ecs) {
		explicit_bzero(ecs, strlen(ecs));
		curl_free(ecs);
	}
	return rc;
}

/* Exchanges the newest refresh token for an access token (unless another
 * client of the process already did), and gives this client a copy. */
int factorial_refresh(struct factorial *f, struct sbuf *err)
{
	struct secret cs = { 0 }, rt = { 0 };
	const char *files[2] = { NULL, NULL };
	char e[512];
	int rc = -1, n;

	pthread_mutex_lock(&tokens.mu);
	tokens_follow(f);
	if (tokens.access.data && time(NULL) < tokens.expiry && !secret_same(&tokens.access, &f->access_token)) {
		rc = 0; /* renewed by another client meanwhile */
		goto cleanup;
	}
	if (secret_read_file(f->client_secret_file, &cs, e, sizeof(e)) < 0) {
		sbuf_addf(err, "OAuth: %s", e);
		goto cleanup;
	}
	if (tokens.refresh.data) {
		rc = token_request(f, &tokens.refresh, &cs, err) == 0 ? 0 : -1;
		goto cleanup;
	}
	n = candidates(files);
	for (int i = 0; i < n && rc != 0; i++) {
		int r;
		secret_free(&rt);
		if (secret_read_file(files[i], &rt, e, sizeof(e)) < 0) {
			sbuf_addf(err, "OAuth: %s: %s", files[i], e);
			break;
		}
		if (i > 0)
			sbuf_reset(err); /* the newer file was refused: the other one may still be good */
		r = token_request(f, &rt, &cs, err);
		if (r == 0 && !tokens.refresh.data) {
			/* not rotated: the file's token goes on, its week counted from when it was written */
			double written = mtime_of(files[i]);
			tokens.issued = written > 0 ? written : (double)clock_now();
			rc = secret_copy(&tokens.refresh, &rt);
		} else if (r == 0)
			rc = 0;
		else if (r < 0)
			break;
	}
cleanup:
	if (rc == 0) {
		rc = secret_copy(&f->access_token, &tokens.access);
		f->access_expiry = tokens.expiry;
	}
	pthread_mutex_unlock(&tokens.mu);
	secret_free(&rt);
	secret_free(&cs);
	return rc;
}

int factorial_keep_alive(struct factorial *f, double now, double *age, struct sbuf *err)
{
	int rc = 0;

	*age = -1;
	if (!f->oauth)
		return 0;
	pthread_mutex_lock(&tokens.mu);
	tokens_follow(f);
	if (tokens.refresh.data && now - tokens.issued >= FACTORIAL_KEEP_ALIVE_AFTER && now - tokens.forced >= 3600) {
		/* spent now, while it is good: the new one is good for another week */
		tokens.forced = now;
		secret_free(&tokens.access);
		secret_free(&f->access_token);
	}
	pthread_mutex_unlock(&tokens.mu);
	if (!f->access_token.data || time(NULL) >= f->access_expiry)
		rc = factorial_refresh(f, err);
	pthread_mutex_lock(&tokens.mu);
	*age = tokens.refresh.data ? now - tokens.issued : -1;
	pthread_mutex_unlock(&tokens.mu);
	return rc;
}

/* This client's access token was refused: the process's is dropped too,
 * unless another client has renewed it already. */
void factorial_access_refused(struct factorial *f)
{
	pthread_mutex_lock(&tokens.mu);
	if (secret_same(&tokens.access, &f->access_token))
		secret_free(&tokens.access);
	pthread_mutex_unlock(&tokens.mu);
	secret_free(&f->access_token);
}
