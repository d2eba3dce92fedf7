#include "build.h"

#include "daemon.h"

#include "common/json.h"
#include "common/log.h"
#include "metrics.h"
#include "privacy.h"
#include "refusals.h"
#include "wire.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* ---- HTTP ------------------------------------------------------------------ */

/* The subscription type a path routes to, or NULL. */
static const char *route(const struct snapshot *s, const char *path)
{
	size_t n = strlen(s->prefix);

	if (strncmp(path, s->prefix, n) != 0 || path[n] != '/')
		return NULL;
	for (size_t i = 0; i < s->cfg->webhooks.subscriptions.n; i++)
		if (strcmp(path + n + 1, s->cfg->webhooks.subscriptions.v[i]) == 0)
			return s->cfg->webhooks.subscriptions.v[i];
	return NULL;
}

static bool is_status_path(const char *path)
{
	return strcmp(path, "/healthz") == 0 || strcmp(path, "/metrics") == 0;
}

/* A refusal, counted and said as refusals.h says. */
static void refused(int status, const char *reason, const char *addr, const char *method, const char *path)
{
	char detail[160];

	snprintf(detail, sizeof(detail), "%s %.120s", method ? method : "POST", path);
	refusals_note(status, reason, addr, detail, agentd_mono_now());
}

void receiver_tick(void *ctx)
{
	(void)ctx;
	refusals_tick(agentd_mono_now());
}

static const char *status_reason(int status, const char *challenge)
{
	switch (status) {
	case 401:
		return challenge ? "wrong challenge" : "no challenge";
	case 404:
		return "no such path";
	case 405:
		return "method not allowed";
	case 413:
		return "declared body larger than webhooks.max_body_bytes";
	default:
		return "refused";
	}
}

int receiver_precheck(void *ctx, const char *method, const char *path, const char *challenge, long long len,
                      const char *addr)
{
	struct listener *l = ctx;
	struct agentd *a = l->a;
	struct snapshot *s;
	const char *type;
	int status = 0;

	s = agentd_snap_get(a);
	if (strcmp(path, "/metrics") == 0 && !l->status_only && s->cfg->webhooks.metrics_listen) {
		status = 404; /* served on webhooks.metrics_listen only, not to whoever reaches the webhooks */
		goto cleanup;
	}
	if (strcmp(path, "/healthz") == 0 && !l->status_only && s->cfg->webhooks.metrics_listen &&
	    !s->cfg->webhooks.public_healthz) {
		status = 404; /* on webhooks.metrics_listen only, unless webhooks.public_healthz */
		goto cleanup;
	}
	if (is_status_path(path)) {
		status = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ? 0 : 405;
		goto cleanup;
	}
	if (l->status_only) {
		status = 404;
		goto cleanup;
	}
	type = route(s, path);
	if (!type)
		status = 404;
	else if (strcmp(method, "POST") != 0)
		status = 405;
	else if (!challenge || !secret_equals(&s->challenge, challenge, strlen(challenge)))
		status = 401;
	else if (len >= 0 && (unsigned long long)len > (unsigned long long)s->cfg->webhooks.max_body_bytes)
		status = 413;
	if (status) {
		metrics_delivery(type ? type : "unknown", status);
		refused(status, status_reason(status, challenge), addr, method, path);
	}
cleanup:
	agentd_snap_put(a, s);
	return status;
}

void receiver_refused(void *ctx, const char *path, int status, const char *reason, const char *addr)
{
	struct agentd *a = ((struct listener *)ctx)->a;
	struct snapshot *s = agentd_snap_get(a);
	const char *type = route(s, path);

	metrics_delivery(type ? type : "unknown", status);
	refused(status, reason ? reason : "refused", addr, NULL, path);
	agentd_snap_put(a, s);
}

/* The record a delivery orders by and the records it names, as the event
 * table and the mapping in force say (*key malloc'd, refs the caller's). */
int receiver_keys(struct agentd *a, const struct event_type *t, const cJSON *parsed, char **key, struct strmap *refs)
{
	struct snapshot *s = agentd_snap_get(a);

	event_refs(t, parsed, s->m, refs);
	agentd_snap_put(a, s);
	*key = event_record_key(t, parsed);
	return *key ? 0 : -1;
}

/* Stores a delivery the daemon made or kept itself, through its committer. */
static int submit(struct agentd *a, const struct event_type *t, const cJSON *parsed, const char *body,
                  struct sbuf *err)
{
	char *key = NULL;
	struct strmap refs;
	int rc = -1;

	strmap_init(&refs);
	if (receiver_keys(a, t, parsed, &key, &refs) < 0)
		sbuf_adds(err, "out of memory");
	else
		rc = queue_submit(a->committer, t->name, key, &refs, body, err);
	strmap_free(&refs);
	free(key);
	return rc;
}

int receiver_keep_private(cJSON *j, const char **body, size_t *len, char **clean, struct sbuf *err)
{
	if (privacy_scrub(j) == 0)
		return 0;
	*clean = cJSON_PrintUnformatted(j);
	if (!*clean) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	*body = *clean;
	*len = strlen(*clean);
	return 0;
}

/* The same, for a body the agent made or kept itself (text). */
int receiver_submit_text(struct agentd *a, const char *type, const char *body, struct sbuf *err)
{
	const struct event_type *t = event_find(type);
	cJSON *parsed = json_parse(body, strlen(body), NULL);
	char *clean = NULL;
	size_t len = strlen(body);
	int rc = -1;

	if (!t || !parsed)
		sbuf_addf(err, "%s: not a delivery the agent can store", type);
	else if (receiver_keep_private(parsed, &body, &len, &clean, err) == 0)
		rc = submit(a, t, parsed, body, err);
	cJSON_Delete(parsed);
	free(clean);
	return rc;
}

static bool only_space(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
			return false;
	return true;
}

const char *receiver_check(const struct event_type *t, const char *body, size_t len, cJSON **parsed)
{
	const char *reason = event_body_out_of_bounds(body, len);
	const char *end = NULL;
	cJSON *j = reason ? NULL : json_parse(body, len, &end);

	*parsed = NULL;
	if (reason)
		; /* refused before parsing */
	else if (!t)
		reason = "not a subscription type the agent knows";
	else if (len == 0)
		reason = "empty body";
	else if (!j)
		reason = "not valid JSON";
	else if (!cJSON_IsObject(j) && !(cJSON_IsArray(j) && t->list_body))
		reason = "not a JSON object";
	else if (!only_space(end, (size_t)(body + len - end)))
		reason = "more than one JSON value"; /* what follows would be stored unscrubbed */
	else if (privacy_has_nul(body, len))
		reason = "a NUL character (\\u0000)"; /* it would cut a field's name short of the scrub */
	if (reason)
		cJSON_Delete(j);
	else
		*parsed = j;
	return reason;
}

static void deliver(struct agentd *a, const char *type, const char *body, size_t len, const char *addr,
                    struct http_reply *reply)
{
	cJSON *j = NULL;
	const char *reason = receiver_check(event_find(type), body, len, &j);
	char *clean = NULL, why[WIRE_REASON_MAX];
	enum wire_outcome outcome = WIRE_FAILED;
	struct sbuf err;
	double t0 = agentd_mono_now();

	sbuf_init(&err);
	why[0] = '\0';
	if (reason) {
		reply->status = 400;
		sbuf_addf(&reply->body, "%s\n", reason);
		if (wire_client_say(a->wire, WIRE_REJECTED, type, reason, len, &err) < 0)
			log_warn("the rejected log could not be written: %s", sbuf_str(&err));
		refused(400, reason, addr, "POST", type);
		goto cleanup;
	}
	if (receiver_keep_private(j, &body, &len, &clean, &err) < 0)
		snprintf(why, sizeof(why), "%s", sbuf_str(&err));
	else
		outcome = wire_client_deliver(a->wire, type, body, len, why, sizeof(why));
	monitor_intake_observed(agentd_mono_now() - t0, outcome == WIRE_FAILED ? why : NULL, a);
	if (outcome == WIRE_OK) {
		reply->status = 200;
		log_debug("delivery stored: %s (%.1f ms)", type, (agentd_mono_now() - t0) * 1000);
	} else if (outcome == WIRE_REFUSED) {
		reply->status = 400;
		sbuf_addf(&reply->body, "%s\n", why);
		refused(400, why, addr, "POST", type);
	} else {
		reply->status = 503;
		sbuf_adds(&reply->body, "the delivery could not be stored; retry later\n");
		log_error("delivery not stored (answered 503): %s: %s", type, why);
	}
cleanup:
	metrics_delivery(type, reply->status);
	cJSON_Delete(j);
	free(clean);
	sbuf_free(&err);
}

void receiver_handle(void *ctx, const char *method, const char *path, const char *body, size_t len,
                     const char *addr, struct http_reply *reply)
{
	struct listener *l = ctx;
	struct agentd *a = l->a;

	(void)method;
	if (strcmp(path, "/healthz") == 0) {
		/* the detail on the metrics listener (or where it shares the webhooks' port) only */
		struct snapshot *s = agentd_snap_get(a);
		bool detail = l->status_only || !s->cfg->webhooks.metrics_listen;
		agentd_snap_put(a, s);
		reply->status = health_render(a, detail, &reply->body);
	} else if (strcmp(path, "/metrics") == 0) {
		struct metrics_gauges g = { 0 };
		char why[WIRE_REASON_MAX];
		if (wire_client_count(a->wire, &g.queue_depth, &g.held, &g.dead_letters, why, sizeof(why)) < 0)
			log_warn("metrics: the queue's counts: %s", why);
		g.directory_up = health_directory_up(a);
		metrics_render(&reply->body, &g);
		reply->status = 200;
		reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
	} else {
		struct snapshot *s = agentd_snap_get(a);
		const char *type = route(s, path);
		char *t = type ? strdup(type) : NULL;
		agentd_snap_put(a, s);
		if (!t) { /* the configuration changed between receiver_precheck and now */
			reply->status = 404;
			return;
		}
		deliver(a, t, body, len, addr, reply);
		free(t);
	}
}

