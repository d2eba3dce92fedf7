#include "build.h"

#include "subscriptions.h"

#include "common/secret.h"
#include "ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBS "api_public/webhook_subscriptions"
#define NAME_PREFIX "factorial-ldap-agent "

static cJSON *list_all(struct factorial *f, const struct config *cfg, struct sbuf *err)
{
	cJSON *list = cJSON_CreateArray();
	char q[64];

	snprintf(q, sizeof(q), "company_id=%lld", cfg->factorial.company_id); /* exact: a whole number */
	if (!list || factorial_list(f, SUBS, q, factorial_collect, list, err) < 0) {
		cJSON_Delete(list);
		return NULL;
	}
	return list;
}

static const char *str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The type: `type` in answers, `subscription_type` in some. */
static const char *type_of(const cJSON *s)
{
	const char *t = str(s, "type");
	return t ? t : str(s, "subscription_type");
}

static void base_url(const struct config *cfg, struct sbuf *b)
{
	size_t n = strlen(cfg->webhooks.public_url);

	while (n > 0 && cfg->webhooks.public_url[n - 1] == '/')
		n--;
	sbuf_add(b, cfg->webhooks.public_url, n);
}

static bool owned(const struct config *cfg, const cJSON *s)
{
	const char *name = str(s, "name"), *url = str(s, "target_url");
	struct sbuf b;
	bool mine;

	if (name && strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) == 0)
		return true;
	sbuf_init(&b);
	base_url(cfg, &b);
	sbuf_addc(&b, '/');
	mine = url && strncmp(url, sbuf_str(&b), b.len) == 0;
	sbuf_free(&b);
	return mine;
}

/* A subscription's id, as the exact text it came as ("?" when it has none). */
struct id_text {
	char s[48];
};

static struct id_text id_of(const cJSON *s)
{
	struct id_text t = { "?" };
	char *id = ids_text(cJSON_GetObjectItemCaseSensitive(s, "id"), NULL);

	if (id)
		snprintf(t.s, sizeof(t.s), "%s", id);
	free(id);
	return t;
}

int subscriptions_list(struct factorial *f, const struct config *cfg, struct sbuf *out, struct sbuf *err)
{
	cJSON *list = list_all(f, cfg, err), *s;

	if (!list)
		return -1;
	sbuf_addf(out, "%-8s  %-48s  %-7s  %-5s  %s\n", "ID", "TYPE", "ENABLED", "OWNED", "TARGET_URL");
	cJSON_ArrayForEach(s, list) {
		const char *t = type_of(s), *u = str(s, "target_url");
		sbuf_addf(out, "%-8s  %-48s  %-7s  %-5s  %s\n", id_of(s).s, t ? t : "?",
		          cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(s, "enabled")) ? "no" : "yes",
		          owned(cfg, s) ? "yes" : "no", u ? u : "");
	}
	cJSON_Delete(list);
	return 0;
}

static bool configured(const struct config *cfg, const char *type)
{
	for (size_t i = 0; type && i < cfg->webhooks.subscriptions.n; i++)
		if (strcmp(cfg->webhooks.subscriptions.v[i], type) == 0)
			return true;
	return false;
}

static cJSON *find_type(cJSON *list, const char *type, const struct config *cfg)
{
	cJSON *s, *any = NULL;

	cJSON_ArrayForEach(s, list) {
		const char *t = type_of(s);
		if (!t || strcmp(t, type) != 0)
			continue;
		if (owned(cfg, s))
			return s;
		if (!any)
			any = s;
	}
	return any;
}

/* PUT (body) or DELETE (NULL) one subscription; a DELETE of one already gone is fine. */
static int write_one(struct factorial *f, struct id_text id, const cJSON *body, struct sbuf *err)
{
	const char *method = body ? "PUT" : "DELETE";
	struct factorial_answer a;
	char path[128];
	int rc = -1;

	if (strcmp(id.s, "?") == 0) {
		sbuf_addf(err, "%s " SUBS ": the subscription has no id", method);
		return -1;
	}
	snprintf(path, sizeof(path), SUBS "/%s", id.s);
	if (factorial_call(f, method, path, NULL, body, &a, err) < 0)
		return -1;
	if ((a.status >= 200 && a.status < 300) || (!body && a.status == 404))
		rc = 0;
	else
		sbuf_addf(err, "%s %s: HTTP %ld", method, path, a.status);
	factorial_answer_free(&a);
	return rc;
}

/* No subscription of type is listed: create it.  1 and *have when the API
 * answers 422 (it exists after all: the caller updates that one). */
static int create_one(struct factorial *f, const struct config *cfg, const char *type, cJSON *body, const char *url,
                      cJSON **list, bool dry_run, struct sbuf *out, struct subscriptions_result *res, cJSON **have,
                      struct sbuf *err)
{
	struct factorial_answer a;
	long status;

	char company[32];

	snprintf(company, sizeof(company), "%lld", cfg->factorial.company_id);
	cJSON_AddStringToObject(body, "subscription_type", type);
	cJSON_AddItemToObject(body, "company_id", ids_json(company, cfg->factorial.api_version));
	if (dry_run) {
		sbuf_addf(out, "would create  %s  %s\n", type, url);
		res->created++;
		return 0;
	}
	if (factorial_call(f, "POST", SUBS, NULL, body, &a, err) < 0)
		return -1;
	status = a.status;
	factorial_answer_free(&a);
	if (status == 200 || status == 201) {
		sbuf_addf(out, "created  %s  %s\n", type, url);
		res->created++;
		return 0;
	}
	if (status != 422) {
		sbuf_addf(err, "POST %s (%s): HTTP %ld", SUBS, type, status);
		return -1;
	}
	/* "has already been taken": it exists after all; update that one */
	cJSON_Delete(*list);
	if (!(*list = list_all(f, cfg, err)))
		return -1;
	if (!(*have = find_type(*list, type, cfg))) {
		sbuf_addf(err, "POST %s (%s): HTTP 422, and no subscription of that type is listed", SUBS, type);
		return -1;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(body, "subscription_type");
	cJSON_DeleteItemFromObjectCaseSensitive(body, "company_id");
	return 1;
}

/* A subscription of type exists: brought in line (target, challenge,
 * enabled, name, the payload's api_version) when it differs. */
static int update_one(struct factorial *f, const struct config *cfg, const char *type, const struct secret *challenge,
                      const cJSON *have, const cJSON *body, bool dry_run, struct sbuf *out,
                      struct subscriptions_result *res, struct sbuf *err)
{
	const char *u = str(have, "target_url"), *n = str(have, "name"), *c = str(have, "challenge");
	const char *v = str(have, "api_version");
	const char *url = cJSON_GetObjectItemCaseSensitive(body, "target_url")->valuestring;
	const char *name = cJSON_GetObjectItemCaseSensitive(body, "name")->valuestring;
	bool disabled = cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(have, "enabled"));
	struct id_text id = id_of(have);
	struct sbuf what;
	int rc = -1;

	sbuf_init(&what);
	if (!u || strcmp(u, url) != 0)
		sbuf_addf(&what, "%starget_url", what.len ? ", " : "");
	if (c && !secret_equals(challenge, c, strlen(c)))
		sbuf_addf(&what, "%schallenge", what.len ? ", " : "");
	if (disabled)
		sbuf_addf(&what, "%senabled", what.len ? ", " : "");
	if (!n || strcmp(n, name) != 0)
		sbuf_addf(&what, "%sname", what.len ? ", " : "");
	if (!v || strcmp(v, cfg->factorial.api_version) != 0) /* it decides the shape of the deliveries */
		sbuf_addf(&what, "%sapi_version", what.len ? ", " : "");
	if (!what.len) {
		sbuf_addf(out, "ok       %s  %s\n", id.s, type);
		res->unchanged++;
		rc = 0;
		goto cleanup;
	}
	if (!dry_run && write_one(f, id, body, err) < 0)
		goto cleanup;
	sbuf_addf(out, "%s  %s  %s: %s%s\n", dry_run ? "would update" : "updated", id.s, type, sbuf_str(&what),
	          owned(cfg, have) ? "" : " (it was another integration's: taken over, as webhooks.take_over_subscriptions "
	                                  "says)");
	res->updated++;
	if (disabled)
		res->reenabled++;
	rc = 0;
cleanup:
	sbuf_free(&what);
	return rc;
}

static int sync_one(struct factorial *f, const struct config *cfg, const char *type, const struct secret *challenge,
                    cJSON **list, bool dry_run, struct sbuf *out, struct subscriptions_result *res, struct sbuf *err)
{
	struct sbuf url, name;
	cJSON *have = find_type(*list, type, cfg);
	cJSON *body = cJSON_CreateObject();
	int rc = -1;

	sbuf_init(&url);
	sbuf_init(&name);
	base_url(cfg, &url);
	sbuf_addf(&url, "/%s", type);
	sbuf_addf(&name, NAME_PREFIX "%s", type);
	if (!body)
		goto cleanup;
	cJSON_AddStringToObject(body, "target_url", sbuf_str(&url));
	cJSON_AddStringToObject(body, "name", sbuf_str(&name));
	cJSON_AddStringToObject(body, "challenge", challenge->data);
	cJSON_AddBoolToObject(body, "enabled", 1);
	cJSON_AddStringToObject(body, "api_version", cfg->factorial.api_version);
	if (!have && (rc = create_one(f, cfg, type, body, sbuf_str(&url), list, dry_run, out, res, &have, err)) != 1)
		goto cleanup;
	if (!owned(cfg, have) && !cfg->webhooks.take_over_subscriptions) {
		/* another integration's: overwriting it would cut that one off */
		const char *theirs = str(have, "target_url"), *their_name = str(have, "name");
		sbuf_addf(out, "foreign  %s  %s: another integration's (%s%s%s), left alone: this agent receives no %s "
		               "deliveries; to take it over (that integration then receives none), set "
		               "webhooks.take_over_subscriptions: true\n",
		          id_of(have).s, type, their_name ? their_name : "", their_name ? ", " : "",
		          theirs ? theirs : "no target_url", type);
		res->foreign++;
		rc = 0;
		goto cleanup;
	}
	rc = update_one(f, cfg, type, challenge, have, body, dry_run, out, res, err);
cleanup:
	cJSON_Delete(body);
	sbuf_free(&url);
	sbuf_free(&name);
	return rc;
}

int subscriptions_sync(struct factorial *f, const struct config *cfg, bool dry_run, struct sbuf *out,
                       struct subscriptions_result *res, struct sbuf *err)
{
	struct secret challenge = { 0 };
	cJSON *list = NULL, *s;
	char e[512];
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (secret_read_file(cfg->webhooks.challenge_file, &challenge, e, sizeof(e)) < 0) {
		sbuf_addf(err, "webhooks.challenge_file: %s", e);
		goto cleanup;
	}
	if (!(list = list_all(f, cfg, err)))
		goto cleanup;
	for (size_t i = 0; i < cfg->webhooks.subscriptions.n; i++)
		if (sync_one(f, cfg, cfg->webhooks.subscriptions.v[i], &challenge, &list, dry_run, out, res, err) < 0)
			goto cleanup;
	cJSON_ArrayForEach(s, list) {
		const char *t = type_of(s);
		if (!owned(cfg, s) || configured(cfg, t))
			continue;
		if (!dry_run && write_one(f, id_of(s), NULL, err) < 0)
			goto cleanup;
		sbuf_addf(out, "%s  %s  %s (no longer configured)\n", dry_run ? "would delete" : "deleted", id_of(s).s,
		          t ? t : "?");
		res->deleted++;
	}
	sbuf_addf(out, "%u %s, %u %s, %u %s, %u unchanged", res->created, dry_run ? "to create" : "created",
	          res->updated, dry_run ? "to update" : "updated", res->deleted, dry_run ? "to delete" : "deleted",
	          res->unchanged);
	if (res->foreign)
		sbuf_addf(out, ", %u another integration's, left alone", res->foreign);
	sbuf_addc(out, '\n');
	rc = 0;
cleanup:
	secret_free(&challenge);
	cJSON_Delete(list);
	return rc;
}

int subscriptions_delete(struct factorial *f, const struct config *cfg, bool dry_run, struct sbuf *out,
                         struct subscriptions_result *res, struct sbuf *err)
{
	cJSON *list = list_all(f, cfg, err), *s;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (!list)
		return -1;
	cJSON_ArrayForEach(s, list) {
		const char *t = type_of(s);
		if (!owned(cfg, s)) {
			res->unchanged++;
			continue;
		}
		if (!dry_run && write_one(f, id_of(s), NULL, err) < 0)
			goto cleanup;
		sbuf_addf(out, "%s  %s  %s\n", dry_run ? "would delete" : "deleted", id_of(s).s, t ? t : "?");
		res->deleted++;
	}
	sbuf_addf(out, "%u %s, %u not this agent's left alone\n", res->deleted, dry_run ? "to delete" : "deleted",
	          res->unchanged);
	rc = 0;
cleanup:
	cJSON_Delete(list);
	return rc;
}
