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



/* ---- the client: opened, closed, answers read -------------------------------- */

static void sleep_seconds(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - floor(s)) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

long factorial_requests(const struct factorial *f)
{
	return f->requests;
}

long factorial_refreshes(const struct factorial *f)
{
	return f->refreshes;
}

int factorial_open(const struct config *cfg, struct factorial **out, struct sbuf *err)
{
	struct factorial *f = calloc(1, sizeof(*f));
	char e[512];
	size_t n;
	int rc = -1;

	*out = NULL;
	if (!f) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	f->curl = curl_easy_init();
	f->list_total = -1;
	n = strlen(cfg->factorial.base_url);
	while (n > 0 && cfg->factorial.base_url[n - 1] == '/')
		n--;
	f->base = strndup(cfg->factorial.base_url, n);
	f->version = strdup(cfg->factorial.api_version);
	f->ca_file = cfg->factorial.ca_file ? strdup(cfg->factorial.ca_file) : NULL;
	f->connect_timeout = (long)cfg->factorial.connect_timeout;
	f->timeout = (long)cfg->factorial.timeout;
	f->max_response = (size_t)cfg->factorial.max_response_bytes;
	if (!f->curl || !f->base || !f->version) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	if (cfg->factorial.oauth && cfg->factorial.token_file) {
		f->bearer = true; /* a company token: it never expires */
		if (secret_read_file(cfg->factorial.token_file, &f->api_key, e, sizeof(e)) < 0) {
			sbuf_addf(err, "factorial.oauth.token_file: %s", e);
			goto cleanup;
		}
	} else if (cfg->factorial.oauth) {
		f->oauth = true;
		f->token_url = strdup(cfg->factorial.token_url);
		f->client_id = strdup(cfg->factorial.client_id);
		f->client_secret_file = strdup(cfg->factorial.client_secret_file);
		f->refresh_token_file = strdup(cfg->factorial.refresh_token_file);
		f->kept_token_file = malloc(strlen(cfg->state_dir) + sizeof("/oauth-refresh-token"));
		if (f->kept_token_file)
			sprintf(f->kept_token_file, "%s/oauth-refresh-token", cfg->state_dir);
		if (!f->token_url || !f->client_id || !f->client_secret_file || !f->refresh_token_file ||
		    !f->kept_token_file) {
			sbuf_adds(err, "out of memory");
			goto cleanup;
		}
	} else if (secret_read_file(cfg->factorial.api_key_file, &f->api_key, e, sizeof(e)) < 0) {
		sbuf_addf(err, "factorial.api_key_file: %s", e);
		goto cleanup;
	}
	*out = f;
	f = NULL;
	rc = 0;
cleanup:
	factorial_close(f);
	return rc;
}

void factorial_close(struct factorial *f)
{
	if (!f)
		return;
	if (f->curl)
		curl_easy_cleanup(f->curl);
	free(f->base);
	free(f->version);
	free(f->ca_file);
	secret_free(&f->api_key);
	secret_free(&f->access_token);
	free(f->token_url);
	free(f->client_id);
	free(f->client_secret_file);
	free(f->refresh_token_file);
	free(f->kept_token_file);
	cJSON_Delete(f->teams);
	free(f);
}

void factorial_answer_free(struct factorial_answer *a)
{
	cJSON_Delete(a->json);
	a->json = NULL;
	a->status = 0;
}

size_t factorial_on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct reply *r = ctx;

	if (r->body.len + size * n > r->limit) {
		r->too_large = true;
		return 0; /* stops the transfer */
	}
	sbuf_add(&r->body, data, size * n);
	return r->body.failed ? 0 : size * n;
}

/* Why a transfer failed, as a person reads it. */
const char *factorial_transfer_error(const struct reply *r, CURLcode cc)
{
	if (r->too_large)
		return "the answer is larger than factorial.max_response_bytes";
	return curl_easy_strerror(cc);
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
	struct reply *r = ctx;
	size_t len = size * n;

	if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
		char v[128];
		size_t k = len - 12 < sizeof(v) - 1 ? len - 12 : sizeof(v) - 1;
		char *end;
		long secs;
		memcpy(v, data + 12, k);
		v[k] = '\0';
		v[strcspn(v, "\r\n")] = '\0';
		secs = strtol(v, &end, 10);
		if (end != v && *end == '\0') {
			r->retry_after = secs;
		} else {
			/* an HTTP date */
			time_t when = curl_getdate(v + strspn(v, " "), NULL);
			if (when > 0)
				r->retry_after = (long)(when - time(NULL));
		}
		if (r->retry_after < 0)
			r->retry_after = 0;
	}
	return len;
}
/* ---- calls, pages, records read fresh ---------------------------------------- */

static void build_url(struct factorial *f, const char *path, const char *query, struct sbuf *url)
{
	if (path[0] == '/')
		sbuf_addf(url, "%s%s", f->base, path);
	else
		sbuf_addf(url, "%s/api/%s/resources/%s", f->base, f->version, path);
	if (query && *query)
		sbuf_addf(url, "?%s", query);
}

/* One HTTP exchange; returns the CURLcode. */
static CURLcode perform(struct factorial *f, const char *method, const char *url, const char *body,
                        struct reply *r, long *status)
{
	struct curl_slist *h = NULL;
	struct sbuf auth;
	CURLcode cc;

	sbuf_init(&auth);
	if (f->oauth)
		sbuf_addf(&auth, "Authorization: Bearer %s", f->access_token.data ? f->access_token.data : "");
	else if (f->bearer)
		sbuf_addf(&auth, "Authorization: Bearer %s", f->api_key.data);
	else
		sbuf_addf(&auth, "x-api-key: %s", f->api_key.data);
	h = curl_slist_append(h, sbuf_str(&auth));
	h = curl_slist_append(h, "Accept: application/json");
	if (body)
		h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_reset(f->curl);
	curl_easy_setopt(f->curl, CURLOPT_URL, url);
	curl_easy_setopt(f->curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(f->curl, CURLOPT_CONNECTTIMEOUT, f->connect_timeout);
	curl_easy_setopt(f->curl, CURLOPT_TIMEOUT, f->timeout);
	curl_easy_setopt(f->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(f->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(f->curl, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
	if (f->ca_file)
		curl_easy_setopt(f->curl, CURLOPT_CAINFO, f->ca_file);
	curl_easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, factorial_on_body);
	curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(f->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(f->curl, CURLOPT_HEADERDATA, r);
	if (strcmp(method, "GET") != 0)
		curl_easy_setopt(f->curl, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(f->curl, CURLOPT_POSTFIELDS, body);
	f->requests++;
	cc = curl_easy_perform(f->curl);
	*status = 0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(f->curl, CURLINFO_RESPONSE_CODE, status);
	explicit_bzero(auth.s, auth.len);
	sbuf_free(&auth);
	curl_slist_free_all(h);
	return cc;
}

int factorial_call(struct factorial *f, const char *method, const char *path, const char *query, const cJSON *body,
                   struct factorial_answer *ans, struct sbuf *err)
{
	struct sbuf url;
	char *text = body ? cJSON_PrintUnformatted(body) : NULL;
	bool refreshed = false;
	int rc = -1;

	memset(ans, 0, sizeof(*ans));
	sbuf_init(&url);
	build_url(f, path, query, &url);
	for (int attempt = 1;; attempt++) {
		struct reply r = { .retry_after = -1, .limit = f->max_response };
		long status = 0;
		CURLcode cc;
		double wait = BACKOFF_BASE * pow(2, attempt - 1);

		sbuf_init(&r.body);
		if (f->oauth && (!f->access_token.data || time(NULL) >= f->access_expiry)) {
			if (factorial_refresh(f, err) < 0) {
				sbuf_free(&r.body);
				goto cleanup;
			}
		}
		cc = perform(f, method, sbuf_str(&url), text, &r, &status);
		if (cc == CURLE_OK && status == 401 && f->oauth && !refreshed) {
			/* the token may have been revoked early: one refresh, one more try */
			sbuf_free(&r.body);
			refreshed = true;
			factorial_access_refused(f);
			attempt--;
			continue;
		}
		if (cc == CURLE_OK && status != 429 && status < 500) {
			ans->status = status;
			ans->json = r.body.len ? json_parse(sbuf_str(&r.body), r.body.len, NULL) : NULL;
			sbuf_free(&r.body);
			rc = 0;
			break;
		}
		if (r.too_large) { /* the same answer again would be as large: no retry */
			sbuf_addf(err, "%s %s: %s (%zu bytes)", method, sbuf_str(&url), factorial_transfer_error(&r, cc), r.limit);
			sbuf_free(&r.body);
			break;
		}
		if (attempt >= ATTEMPTS) {
			if (cc != CURLE_OK)
				sbuf_addf(err, "%s %s: %s (after %d attempts)", method, sbuf_str(&url), factorial_transfer_error(&r, cc),
				          attempt);
			else
				sbuf_addf(err, "%s %s: HTTP %ld (after %d attempts)", method, sbuf_str(&url), status, attempt);
			sbuf_free(&r.body);
			break;
		}
		if (status == 429 && r.retry_after >= 0)
			wait = (double)(r.retry_after > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : r.retry_after);
		else
			wait *= 0.8 + 0.4 * ((double)rand() / RAND_MAX);
		log_debug("%s %s: %s; retrying in %.2f s", method, sbuf_str(&url),
		          cc != CURLE_OK ? curl_easy_strerror(cc) : status == 429 ? "HTTP 429" : "server error", wait);
		sbuf_free(&r.body);
		sleep_seconds(wait);
	}
cleanup:
	free(text);
	sbuf_free(&url);
	return rc;
}

static const cJSON *unwrap(const cJSON *j)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data");
	return cJSON_IsObject(d) ? d : j;
}

/* The OAuth scope each family of resources needs (docs/api.md). */
static const struct {
	const char *prefix, *what, *scope;
} scopes[] = {
	{ "employees/", "employees", "employees" },
	{ "teams/", "teams and memberships", "employees" },
	{ "contracts/", "contract versions", "contracts" },
	{ "locations/", "locations", "company_locations" },
	{ "companies/legal_entities", "legal entities", "company_legal_entities" },
	{ "api_public/webhook_subscriptions", "webhook subscriptions", "webhook subscriptions" },
};

const char *factorial_scope_of(const char *path, const char **what)
{
	for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++)
		if (strncmp(path, scopes[i].prefix, strlen(scopes[i].prefix)) == 0) {
			if (what)
				*what = scopes[i].what;
			return scopes[i].scope;
		}
	if (what)
		*what = path;
	return NULL;
}

static void status_error(struct factorial *f, struct sbuf *err, const char *what, long status)
{
	const char *family, *scope = factorial_scope_of(what, &family);

	f->forbidden = status == 403;
	if (status == 401)
		sbuf_addf(err, "%s: HTTP 401: the API refused the credentials (check %s)", what,
		          f->bearer ? "factorial.oauth.token_file: the company token may have been revoked"
		                    : "factorial.api_key_file or the oauth block");
	else if (status == 403 && scope)
		sbuf_addf(err, "%s: HTTP 403: the token may not read %s: an OAuth app needs the %s scope for it%s", what,
		          family, scope, f->oauth ? "" : " (an API key has every permission: check who made it)");
	else if (status == 403)
		sbuf_addf(err, "%s: HTTP 403: the token lacks the permission for it", what);
	else
		sbuf_addf(err, "%s: HTTP %ld", what, status);
}

bool factorial_forbidden(const struct factorial *f)
{
	return f->forbidden;
}

/* Where a listing stands: by cursor (after_id) or, for an API without one, by page. */
struct pager {
	char *after; /* escaped cursor, or NULL on the first page */
	bool by_page;
	long page;
	long count; /* items handed out so far */
	int limit;
};

/* One page of the collection; the answer's data list in *data (owned by a). */
static int fetch_page(struct factorial *f, const char *path, const char *query, const struct pager *p,
                      struct factorial_answer *a, const cJSON **data, struct sbuf *err)
{
	struct sbuf q;
	int rc = -1;

	sbuf_init(&q);
	if (query && *query)
		sbuf_addf(&q, "%s&", query);
	sbuf_addf(&q, "limit=%d", p->limit);
	if (p->by_page)
		sbuf_addf(&q, "&page=%ld", p->page);
	else if (p->after)
		sbuf_addf(&q, "&after_id=%s", p->after);
	if (factorial_call(f, "GET", path, sbuf_str(&q), NULL, a, err) < 0)
		goto cleanup;
	if (a->status != 200) {
		status_error(f, err, path, a->status);
		goto cleanup;
	}
	*data = cJSON_GetObjectItemCaseSensitive(a->json, "data");
	if (!cJSON_IsArray(*data)) {
		sbuf_addf(err, "%s: the answer has no data list", path);
		goto cleanup;
	}
	rc = 0;
cleanup:
	sbuf_free(&q);
	return rc;
}

/* Whether another page follows one of n items, as meta says; moves the pager there. */
static bool next_page(struct factorial *f, struct pager *p, const cJSON *meta, int n)
{
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(meta, "has_next_page");
	const cJSON *end = cJSON_GetObjectItemCaseSensitive(meta, "end_cursor");
	const cJSON *total = cJSON_GetObjectItemCaseSensitive(meta, "total");
	char num[32];

	if (!p->by_page && p->page == 1 && !p->after && !cJSON_IsBool(next))
		p->by_page = true; /* no cursor in this API: page through it instead (the first page is the same) */
	if (p->by_page) {
		p->page++;
		return n >= p->limit && !(cJSON_IsNumber(total) && (double)p->count >= total->valuedouble);
	}
	if (!cJSON_IsTrue(next) || (!cJSON_IsString(end) && !cJSON_IsNumber(end)))
		return false;
	curl_free(p->after);
	if (cJSON_IsNumber(end))
		snprintf(num, sizeof(num), "%.0f", end->valuedouble);
	p->after = curl_easy_escape(f->curl, cJSON_IsString(end) ? end->valuestring : num, 0);
	return p->after != NULL;
}

long factorial_list(struct factorial *f, const char *path, const char *query,
                    int (*fn)(void *ctx, const cJSON *item), void *ctx, struct sbuf *err)
{
	struct pager p = { .page = 1, .limit = 100 };
	bool more = true;

	while (more) {
		struct factorial_answer a = { 0 };
		const cJSON *data = NULL, *it;
		int n = 0;
		if (fetch_page(f, path, query, &p, &a, &data, err) < 0) {
			factorial_answer_free(&a);
			p.count = -1;
			break;
		}
		{
			const cJSON *total = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a.json, "meta"),
			                                                      "total");
			f->list_total = cJSON_IsNumber(total) ? (long)total->valuedouble : -1;
		}
		cJSON_ArrayForEach(it, data) {
			n++;
			if (fn(ctx, it) < 0) {
				p.count = -1;
				break;
			}
			p.count++;
		}
		more = p.count >= 0 && next_page(f, &p, cJSON_GetObjectItemCaseSensitive(a.json, "meta"), n);
		factorial_answer_free(&a);
	}
	curl_free(p.after);
	return p.count;
}

long factorial_list_total(const struct factorial *f)
{
	return f->list_total;
}

int factorial_get(struct factorial *f, const char *path, const char *id, cJSON **out, struct sbuf *err)
{
	struct factorial_answer a;
	struct sbuf p;
	char *eid = curl_easy_escape(f->curl, id, 0);
	int rc = -1;

	*out = NULL;
	sbuf_init(&p);
	sbuf_addf(&p, "%s/%s", path, eid ? eid : "");
	curl_free(eid);
	if (factorial_call(f, "GET", sbuf_str(&p), NULL, NULL, &a, err) < 0)
		goto cleanup;
	if (a.status == 404) {
		rc = 0;
	} else if (a.status != 200 || !a.json) {
		status_error(f, err, sbuf_str(&p), a.status);
	} else {
		*out = cJSON_Duplicate(unwrap(a.json), 1);
		rc = *out ? 1 : -1;
	}
	factorial_answer_free(&a);
cleanup:
	sbuf_free(&p);
	return rc;
}

struct latest {
	const cJSON *best;
	const char *today; /* versions taking effect after it are not in force yet (NULL: all count) */
	char next[16];     /* the earliest of those: when the title changes next */
};

static const char *version_date(const cJSON *c)
{
	static const char *const keys[] = { "effective_on", "starts_on", "created_at", NULL };

	for (size_t i = 0; keys[i]; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, keys[i]);
		if (cJSON_IsString(v))
			return v->valuestring;
	}
	return "";
}

static int keep_latest(void *ctx, const cJSON *c)
{
	struct latest *l = ctx;
	cJSON *copy;

	/* the latest contract version in force: by effective date, then by id;
	 * one taking effect later is not (the API's date filter leaves it out,
	 * and so does this, should a server not) */
	if (l->today && strncmp(version_date(c), l->today, 10) > 0) {
		if (!l->next[0] || strncmp(version_date(c), l->next, 10) < 0)
			snprintf(l->next, sizeof(l->next), "%.10s", version_date(c));
		return 0;
	}
	if (l->best) {
		int cmp = strcmp(version_date(c), version_date(l->best));
		char *a = ids_text(cJSON_GetObjectItemCaseSensitive(c, "id"), NULL);
		char *b = ids_text(cJSON_GetObjectItemCaseSensitive(l->best, "id"), NULL);
		bool older = cmp < 0 || (cmp == 0 && ids_compare(a, b) <= 0);
		free(a);
		free(b);
		if (older)
			return 0;
		cJSON_Delete((cJSON *)l->best);
	}
	copy = cJSON_Duplicate(c, 1);
	l->best = copy;
	return copy ? 0 : -1;
}

int factorial_collect(void *ctx, const cJSON *item)
{
	cJSON *list = ctx;
	cJSON *copy = cJSON_Duplicate(item, 1);

	if (!copy)
		return -1;
	cJSON_AddItemToArray(list, copy);
	return 0;
}

static bool same_id(const cJSON *v, const char *id)
{
	char num[64];

	if (cJSON_IsNumber(v)) {
		snprintf(num, sizeof(num), "%.0f", v->valuedouble);
		return strcmp(num, id) == 0;
	}
	return cJSON_IsString(v) && strcmp(v->valuestring, id) == 0;
}

/* Bumped at every team or membership delivery: each client's cached teams list is then read again. */
static atomic_uint teams_generation;

void factorial_teams_changed(void)
{
	atomic_fetch_add(&teams_generation, 1);
}

int factorial_enrich(struct factorial *f, const char *id, unsigned what, const char *today, cJSON **out,
                     char next[16], struct sbuf *err)
{
	struct latest l = { .today = today };
	struct sbuf q;
	cJSON *emp = NULL, *team_ids = NULL, *t;
	char *eid = curl_easy_escape(f->curl, id, 0);
	int rc = -1, got;

	f->forbidden = false;
	*out = NULL;
	sbuf_init(&q);
	got = factorial_get(f, "employees/employees", id, &emp, err);
	if (got <= 0) {
		rc = got;
		goto cleanup;
	}
	if (next)
		next[0] = '\0';
	sbuf_addf(&q, "employee_ids%%5B%%5D=%s", eid ? eid : "");
	if ((what & FACTORIAL_ENRICH_TITLE) &&
	    factorial_list(f, "contracts/contract_versions", sbuf_str(&q), keep_latest, &l, err) < 0)
		goto cleanup;
	if (next)
		snprintf(next, 16, "%s", l.next);
	if (l.best) {
		const cJSON *title = cJSON_GetObjectItemCaseSensitive(l.best, "job_title");
		cJSON_DeleteItemFromObjectCaseSensitive(emp, "job_title");
		if (cJSON_IsString(title))
			cJSON_AddStringToObject(emp, "job_title", title->valuestring);
	}
	if (!(what & FACTORIAL_ENRICH_TEAMS)) {
		*out = emp;
		emp = NULL;
		rc = 1;
		goto cleanup;
	}
	if (!f->teams || time(NULL) - f->teams_at >= TEAMS_TTL || f->teams_generation != atomic_load(&teams_generation)) {
		cJSON *list = cJSON_CreateArray();
		if (!list || factorial_list(f, "teams/teams", NULL, factorial_collect, list, err) < 0) {
			cJSON_Delete(list);
			goto cleanup;
		}
		cJSON_Delete(f->teams);
		f->teams = list;
		f->teams_at = time(NULL);
		f->teams_generation = atomic_load(&teams_generation);
	}
	team_ids = cJSON_CreateArray();
	if (!team_ids)
		goto cleanup;
	cJSON_ArrayForEach(t, f->teams) {
		const cJSON *members = cJSON_GetObjectItemCaseSensitive(t, "employee_ids"), *m;
		cJSON_ArrayForEach(m, members) {
			if (same_id(m, id)) {
				cJSON *tid = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "id"), 0);
				if (tid)
					cJSON_AddItemToArray(team_ids, tid);
				break;
			}
		}
	}
	cJSON_DeleteItemFromObjectCaseSensitive(emp, "team_ids");
	cJSON_AddItemToObject(emp, "team_ids", team_ids);
	team_ids = NULL;
	*out = emp;
	emp = NULL;
	rc = 1;
cleanup:
	cJSON_Delete((cJSON *)l.best);
	cJSON_Delete(emp);
	cJSON_Delete(team_ids);
	curl_free(eid);
	sbuf_free(&q);
	return rc;
}
