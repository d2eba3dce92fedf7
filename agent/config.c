#include "build.h"

#include "config.h"
#include "common/nearest.h"

#include "events.h"
#include "common/secret.h"
#include "common/yamldoc.h"

#include <curl/curl.h>
#include <errno.h>
#include <ldap.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


enum ftype {
	F_SECTION,  /* nested mapping: children; off (if not NOOFF) is a bool "present" */
	F_STRING,   /* non-empty string */
	F_HTTP_URL, /* http:// or https:// URL */
	F_LDAP_URI, /* one or more ldap://, ldaps://, ldapi:// URIs */
	F_DN,       /* an LDAP distinguished name */
	F_BOOL,
	F_INT,      /* long long within [min, max] */
	F_PERCENT,  /* double within [0, 100] */
	F_DURATION, /* seconds */
	F_LISTEN,   /* host:port */
	F_FILE,     /* a readable regular file */
	F_SECRET,   /* a secret file (secret.h) */
	F_DIR,      /* a directory; need not exist yet */
	F_ENUM,     /* one of choices, stored as its index (int) */
	F_TYPES,    /* list of subscription types */
	F_USER,     /* the name of a user account on this system */
};

#define NOOFF SIZE_MAX
#define REQUIRED 1u

struct loader;

struct field {
	const char *name;
	enum ftype type;
	size_t off;
	unsigned flags;
	const struct field *children;
	const char *const *choices;
	long long min, max;
	void (*post)(struct loader *L, yaml_node_t *m, const char *path);
};

struct loader {
	struct ydoc y;
	struct diag *d;
	struct config *cfg;
	char *dir; /* directory of the config file, for relative paths */
};

#define OFF(member) offsetof(struct config, member)

static const char *const level_choices[] = { "error", "warn", "info", "debug", NULL };
static const char *const target_choices[] = { "stderr", "syslog", NULL };
static const char *const orphan_choices[] = { "report", "disable", "delete", NULL };
static const char *const sasl_choices[] = { "EXTERNAL", NULL };

static void factorial_post(struct loader *L, yaml_node_t *m, const char *path);
static void oauth_post(struct loader *L, yaml_node_t *m, const char *path);
static void webhooks_post(struct loader *L, yaml_node_t *m, const char *path);
static void ldap_post(struct loader *L, yaml_node_t *m, const char *path);

/* An OAuth app's four keys (the refresh token rotates), or a company token alone (it never expires). */
static const struct field oauth_fields[] = {
	{ "token_url", F_HTTP_URL, OFF(factorial.token_url), 0, NULL, NULL, 0, 0, NULL },
	{ "client_id", F_STRING, OFF(factorial.client_id), 0, NULL, NULL, 0, 0, NULL },
	{ "client_secret_file", F_SECRET, OFF(factorial.client_secret_file), 0, NULL, NULL, 0, 0, NULL },
	{ "refresh_token_file", F_SECRET, OFF(factorial.refresh_token_file), 0, NULL, NULL, 0, 0, NULL },
	{ "token_file", F_SECRET, OFF(factorial.token_file), 0, NULL, NULL, 0, 0, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field factorial_fields[] = {
	{ "base_url", F_HTTP_URL, OFF(factorial.base_url), 0, NULL, NULL, 0, 0, NULL },
	{ "api_version", F_STRING, OFF(factorial.api_version), 0, NULL, NULL, 0, 0, NULL },
	{ "company_id", F_INT, OFF(factorial.company_id), REQUIRED, NULL, NULL, 1, LLONG_MAX, NULL },
	{ "api_key_file", F_SECRET, OFF(factorial.api_key_file), 0, NULL, NULL, 0, 0, NULL },
	{ "oauth", F_SECTION, OFF(factorial.oauth), 0, oauth_fields, NULL, 0, 0, oauth_post },
	{ "enrich", F_BOOL, OFF(factorial.enrich), 0, NULL, NULL, 0, 0, NULL },
	{ "ca_file", F_FILE, OFF(factorial.ca_file), 0, NULL, NULL, 0, 0, NULL },
	{ "connect_timeout", F_DURATION, OFF(factorial.connect_timeout), 0, NULL, NULL, 1, 3600, NULL },
	{ "timeout", F_DURATION, OFF(factorial.timeout), 0, NULL, NULL, 1, 3600, NULL },
	{ "max_response_bytes", F_INT, OFF(factorial.max_response_bytes), 0, NULL, NULL, 65536, 1LL << 32, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field webhooks_fields[] = {
	{ "listen", F_LISTEN, OFF(webhooks.listen), 0, NULL, NULL, 0, 0, NULL },
	{ "public_url", F_HTTP_URL, OFF(webhooks.public_url), REQUIRED, NULL, NULL, 0, 0, NULL },
	{ "challenge_file", F_SECRET, OFF(webhooks.challenge_file), REQUIRED, NULL, NULL, 0, 0, NULL },
	{ "subscriptions", F_TYPES, OFF(webhooks.subscriptions), 0, NULL, NULL, 0, 0, NULL },
	{ "max_body_bytes", F_INT, OFF(webhooks.max_body_bytes), 0, NULL, NULL, 1024, 1LL << 30, NULL },
	{ "request_timeout", F_DURATION, OFF(webhooks.request_timeout), 0, NULL, NULL, 1, 3600, NULL },
	{ "header_timeout", F_DURATION, OFF(webhooks.header_timeout), 0, NULL, NULL, 1, 3600, NULL },
	{ "max_connections", F_INT, OFF(webhooks.max_connections), 0, NULL, NULL, 16, 65536, NULL },
	{ "max_connections_per_address", F_INT, OFF(webhooks.max_connections_per_address), 0, NULL, NULL, 1, 65536, NULL },
	{ "tls_cert_file", F_FILE, OFF(webhooks.tls_cert_file), 0, NULL, NULL, 0, 0, NULL },
	{ "tls_key_file", F_SECRET, OFF(webhooks.tls_key_file), 0, NULL, NULL, 0, 0, NULL },
	{ "check_interval", F_DURATION, OFF(webhooks.check_interval), 0, NULL, NULL, 0, LLONG_MAX, NULL },
	{ "manage_subscriptions", F_BOOL, OFF(webhooks.manage_subscriptions), 0, NULL, NULL, 0, 0, NULL },
	{ "take_over_subscriptions", F_BOOL, OFF(webhooks.take_over_subscriptions), 0, NULL, NULL, 0, 0, NULL },
	{ "metrics_listen", F_LISTEN, OFF(webhooks.metrics_listen), 0, NULL, NULL, 0, 0, NULL },
	{ "public_healthz", F_BOOL, OFF(webhooks.public_healthz), 0, NULL, NULL, 0, 0, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field ldap_fields[] = {
	{ "uri", F_LDAP_URI, OFF(ldap.uri), REQUIRED, NULL, NULL, 0, 0, NULL },
	{ "starttls", F_BOOL, OFF(ldap.starttls), 0, NULL, NULL, 0, 0, NULL },
	{ "ca_file", F_FILE, OFF(ldap.ca_file), 0, NULL, NULL, 0, 0, NULL },
	{ "bind_dn", F_DN, OFF(ldap.bind_dn), 0, NULL, NULL, 0, 0, NULL },
	{ "bind_password_file", F_SECRET, OFF(ldap.bind_password_file), 0, NULL, NULL, 0, 0, NULL },
	{ "sasl_mech", F_STRING, OFF(ldap.sasl_mech), 0, NULL, sasl_choices, 0, 0, NULL },
	{ "network_timeout", F_DURATION, OFF(ldap.network_timeout), 0, NULL, NULL, 1, 3600, NULL },
	{ "timeout", F_DURATION, OFF(ldap.timeout), 0, NULL, NULL, 1, 3600, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field sync_fields[] = {
	{ "interval", F_DURATION, OFF(sync.interval), 0, NULL, NULL, 0, LLONG_MAX, NULL },
	{ "orphans", F_ENUM, OFF(sync.orphans), 0, NULL, orphan_choices, 0, 0, NULL },
	{ "retry_delay", F_DURATION, OFF(sync.retry_delay), 0, NULL, NULL, 1, 86400, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field safety_fields[] = {
	{ "max_disables", F_INT, OFF(safety.max_disables), 0, NULL, NULL, 0, LLONG_MAX, NULL },
	{ "max_disables_percent", F_PERCENT, OFF(safety.max_disables_percent), 0, NULL, NULL, 0, 0, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field queue_fields[] = {
	{ "workers", F_INT, OFF(queue.workers), 0, NULL, NULL, 1, 64, NULL },
	{ "max_attempts", F_INT, OFF(queue.max_attempts), 0, NULL, NULL, 1, 1000, NULL },
	{ "retry_delay", F_DURATION, OFF(queue.retry_delay), 0, NULL, NULL, 0, 86400, NULL },
	{ "schedule_check", F_DURATION, OFF(queue.schedule_check), 0, NULL, NULL, 1, 86400, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field log_fields[] = {
	{ "level", F_ENUM, OFF(log.level), 0, NULL, level_choices, 0, 0, NULL },
	{ "target", F_ENUM, OFF(log.target), 0, NULL, target_choices, 0, 0, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

static const struct field top_fields[] = {
	{ "factorial", F_SECTION, NOOFF, REQUIRED, factorial_fields, NULL, 0, 0, factorial_post },
	{ "webhooks", F_SECTION, NOOFF, REQUIRED, webhooks_fields, NULL, 0, 0, webhooks_post },
	{ "ldap", F_SECTION, NOOFF, REQUIRED, ldap_fields, NULL, 0, 0, ldap_post },
	{ "mapping", F_FILE, OFF(mapping), REQUIRED, NULL, NULL, 0, 0, NULL },
	{ "state_dir", F_DIR, OFF(state_dir), 0, NULL, NULL, 0, 0, NULL },
	{ "user", F_USER, OFF(user), 0, NULL, NULL, 0, 0, NULL },
	{ "receiver_user", F_USER, OFF(receiver_user), 0, NULL, NULL, 0, 0, NULL },
	{ "sync", F_SECTION, NOOFF, 0, sync_fields, NULL, 0, 0, NULL },
	{ "safety", F_SECTION, NOOFF, 0, safety_fields, NULL, 0, 0, NULL },
	{ "queue", F_SECTION, NOOFF, 0, queue_fields, NULL, 0, 0, NULL },
	{ "log", F_SECTION, NOOFF, 0, log_fields, NULL, 0, 0, NULL },
	{ NULL, F_STRING, 0, 0, NULL, NULL, 0, 0, NULL },
};

#define AT(cfg, off, type) ((type *)(void *)((char *)(cfg) + (off)))

/* ---- small helpers ---------------------------------------------------- */

static void join_path(char *buf, size_t len, const char *path, const char *name)
{
	if (path && *path)
		snprintf(buf, len, "%s.%s", path, name);
	else
		snprintf(buf, len, "%s", name);
}

static const char *suggest(const struct field *tab, const char *key)
{
	size_t n = 0;

	while (tab[n].name)
		n++;
	return nearest_name(key, &tab[0].name, n, sizeof(tab[0]));
}

static char *resolve_path(struct loader *L, const char *s)
{
	size_t len;
	char *out;

	if (s[0] == '/' || !L->dir)
		return strdup(s);
	len = strlen(L->dir) + 1 + strlen(s) + 1;
	out = malloc(len);
	if (out)
		snprintf(out, len, "%s/%s", L->dir, s);
	return out;
}

static int set_string(char **slot, char *value)
{
	if (!value)
		return -1;
	free(*slot);
	*slot = value;
	return 0;
}

int config_parse_duration(const char *s, long long *seconds)
{
	long long total = 0;
	const char *p = s;

	if (!*p)
		return -1;
	while (*p) {
		char *end;
		long long n, unit;
		if (*p < '0' || *p > '9')
			return -1;
		errno = 0;
		n = strtoll(p, &end, 10);
		if (errno)
			return -1;
		switch (*end) {
		case '\0':
			if (p != s)
				return -1; /* "1h30" is ambiguous */
			unit = 1;
			break;
		case 's':
			unit = 1;
			end++;
			break;
		case 'm':
			unit = 60;
			end++;
			break;
		case 'h':
			unit = 3600;
			end++;
			break;
		case 'd':
			unit = 86400;
			end++;
			break;
		default:
			return -1;
		}
		if (n > (LLONG_MAX - total) / unit)
			return -1;
		total += n * unit;
		p = end;
	}
	*seconds = total;
	return 0;
}

static int parse_int(const char *s, long long *out)
{
	char *end;

	if (!*s)
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return (errno || *end) ? -1 : 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", NULL };
	static const char *const no[] = { "false", "no", "off", NULL };

	for (size_t i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static const char *check_http_url(const char *s)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	const char *err = NULL;

	if (!u)
		return "out of memory";
	if (curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK) {
		err = "not a valid URL";
		goto cleanup;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		err = "must be an http:// or https:// URL";
		goto cleanup;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
		err = "the URL has no host";
		goto cleanup;
	}
cleanup:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return err;
}

static const char *check_ldap_uri(const char *s, char *buf, size_t len)
{
	char *copy = strdup(s), *save = NULL;
	const char *err = NULL;
	int count = 0;

	if (!copy)
		return "out of memory";
	for (char *tok = strtok_r(copy, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		LDAPURLDesc *lud = NULL;
		int rc = ldap_url_parse(tok, &lud);
		count++;
		if (rc != LDAP_URL_SUCCESS) {
			snprintf(buf, len, "\"%s\" is not a valid LDAP URI (use ldap://, ldaps:// or ldapi://)", tok);
			err = buf;
		} else if (strcasecmp(lud->lud_scheme, "ldap") != 0 && strcasecmp(lud->lud_scheme, "ldaps") != 0 &&
		           strcasecmp(lud->lud_scheme, "ldapi") != 0) {
			snprintf(buf, len, "\"%s\": the scheme must be ldap, ldaps or ldapi", tok);
			err = buf;
		} else if (lud->lud_dn && *lud->lud_dn) {
			snprintf(buf, len, "\"%s\": give only scheme, host and port (the base DN belongs in the mapping)", tok);
			err = buf;
		}
		if (lud)
			ldap_free_urldesc(lud);
		if (err)
			break;
	}
	if (!err && count == 0)
		err = "is empty";
	free(copy);
	return err;
}

static const char *check_listen(const char *s)
{
	const char *colon;
	long long port;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return "must be host:port, with an IPv6 address in brackets ([::1]:8080)";
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return "must be host:port (0.0.0.0:8080, 127.0.0.1:8080, [::]:8080)";
		if (memchr(s, ':', (size_t)(colon - s)))
			return "an IPv6 address must be in brackets ([::1]:8080)";
	}
	if (parse_int(colon + 1, &port) < 0 || port < 1 || port > 65535)
		return "the port must be a number from 1 to 65535";
	return NULL;
}

static int check_readable_file(const char *path, char *err, size_t len)
{
	struct stat st;
	FILE *fp = fopen(path, "rb");

	if (!fp) {
		snprintf(err, len, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, len, "%s is not a regular file", path);
		fclose(fp);
		return -1;
	}
	fclose(fp);
	return 0;
}

static bool is_choice(const struct field *f, const char *s)
{
	for (int i = 0; f->choices[i]; i++)
		if (strcmp(s, f->choices[i]) == 0)
			return true;
	return false;
}

/* ---- the walker ----------------------------------------------------- */

static void not_a_choice(struct loader *L, const struct field *f, yaml_node_t *v, const char *key, const char *s)
{
	char list[256] = "";

	for (int i = 0; f->choices[i]; i++) {
		strncat(list, i ? " | " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, f->choices[i], sizeof(list) - strlen(list) - 1);
	}
	ydoc_error(&L->y, L->d, v, key, "\"%s\" is not one of %s", s, list);
}

static void walk_map(struct loader *L, yaml_node_t *m, const struct field *tab, const char *path);

static const char *expect_scalar(struct loader *L, yaml_node_t *v, const char *key, const char *what)
{
	const char *s = ydoc_scalar(v);

	if (!s || ydoc_is_null(v)) {
		ydoc_error(&L->y, L->d, v, key, "expected %s, got %s", what, ydoc_kind(v));
		return NULL;
	}
	return s;
}

static void parse_types(struct loader *L, yaml_node_t *v, const char *key, struct config_strlist *out)
{
	size_t n, i = 0;
	char **list;

	if (!v || v->type != YAML_SEQUENCE_NODE) {
		ydoc_error(&L->y, L->d, v, key, "expected a list of subscription types, got %s", ydoc_kind(v));
		return;
	}
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	list = calloc(n + 1, sizeof(*list));
	if (!list) {
		ydoc_error(&L->y, L->d, v, key, "out of memory");
		return;
	}
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = ydoc_node(&L->y, *it);
		const char *s = expect_scalar(L, e, key, "a subscription type");
		bool known, dup = false;
		if (!s)
			continue;
		known = event_find(s) != NULL;
		for (size_t k = 0; k < i; k++)
			dup = dup || strcmp(s, list[k]) == 0;
		if (!known) {
			ydoc_error(&L->y, L->d, e, key,
			           "\"%s\" is not a subscription type the agent handles (employees/employee/*, "
			           "teams/team/*, teams/membership/*: see docs/configuration.md)", s);
			continue;
		}
		if (dup) {
			ydoc_error(&L->y, L->d, e, key, "\"%s\" is listed twice", s);
			continue;
		}
		list[i] = strdup(s);
		if (!list[i]) {
			ydoc_error(&L->y, L->d, e, key, "out of memory");
			continue;
		}
		i++;
	}
	if (i == 0 && n > 0) {
		free(list);
		return;
	}
	for (size_t k = 0; k < out->n; k++)
		free(out->v[k]);
	free(out->v);
	out->v = list;
	out->n = i;
}

static void parse_section(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	if (f->off != NOOFF)
		*AT(L->cfg, f->off, bool) = true;
	walk_map(L, v, f->children, key);
	if (f->post)
		f->post(L, v, key);
}

static void parse_type_list(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	parse_types(L, v, key, AT(L->cfg, f->off, struct config_strlist));
}

static void parse_bool_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s = ydoc_scalar(v);
	bool b;

	if (!s || !ydoc_is_plain(v) || parse_bool(s, &b) < 0) {
		if (s && !ydoc_is_null(v))
			ydoc_error(&L->y, L->d, v, key, "expected true or false, got \"%s\"", s);
		else
			ydoc_error(&L->y, L->d, v, key, "expected true or false, got %s", ydoc_kind(v));
		return;
	}
	*AT(L->cfg, f->off, bool) = b;
}

static void parse_int_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s;
	long long n;

	if (!(s = expect_scalar(L, v, key, "an integer")))
		return;
	if (parse_int(s, &n) < 0) {
		ydoc_error(&L->y, L->d, v, key, "expected an integer, got \"%s\"", s);
		return;
	}
	if (n < f->min || n > f->max) {
		if (f->max == LLONG_MAX)
			ydoc_error(&L->y, L->d, v, key, "must be at least %lld, got %lld", f->min, n);
		else
			ydoc_error(&L->y, L->d, v, key, "must be from %lld to %lld, got %lld", f->min, f->max, n);
		return;
	}
	*AT(L->cfg, f->off, long long) = n;
}

static void parse_percent_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s;
	char *end;
	double x;

	if (!(s = expect_scalar(L, v, key, "a percentage")))
		return;
	errno = 0;
	x = strtod(s, &end);
	if (end && *end == '%')
		end++;
	if (errno || end == s || *end || !(x >= 0.0 && x <= 100.0)) {
		ydoc_error(&L->y, L->d, v, key, "expected a percentage from 0 to 100, got \"%s\"", s);
		return;
	}
	*AT(L->cfg, f->off, double) = x;
}

static void parse_duration_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s;
	long long secs;

	if (!(s = expect_scalar(L, v, key, "a duration")))
		return;
	if (config_parse_duration(s, &secs) < 0) {
		ydoc_error(&L->y, L->d, v, key, "expected a duration such as 30s, 10m, 6h, 1d or 1h30m, got \"%s\"", s);
		return;
	}
	if (secs < f->min || secs > f->max) {
		ydoc_error(&L->y, L->d, v, key, "must be from %llds to %llds, got %llds", f->min, f->max, secs);
		return;
	}
	*AT(L->cfg, f->off, long long) = secs;
}

static void parse_enum_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s;

	if (!(s = expect_scalar(L, v, key, "a value")))
		return;
	for (int i = 0; f->choices[i]; i++) {
		if (strcmp(s, f->choices[i]) == 0) {
			*AT(L->cfg, f->off, int) = i;
			return;
		}
	}
	not_a_choice(L, f, v, key, s);
}

/* Strings, URLs, URIs, DNs, listen addresses: checked, then kept. */
static void parse_string_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s, *msg = NULL;
	char err[1024];
	LDAPDN dn = NULL;

	if (!(s = expect_scalar(L, v, key, "a string")))
		return;
	if (f->type == F_STRING && f->choices && !is_choice(f, s)) {
		not_a_choice(L, f, v, key, s);
		return;
	}
	if (f->type == F_HTTP_URL)
		msg = check_http_url(s);
	else if (f->type == F_LDAP_URI)
		msg = check_ldap_uri(s, err, sizeof(err));
	else if (f->type == F_LISTEN)
		msg = check_listen(s);
	else if (f->type == F_DN && ldap_str2dn(s, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS)
		msg = "not a valid distinguished name";
	else if (f->type == F_USER && !getpwnam(s))
		msg = "no such user on this system";
	ldap_dnfree(dn);
	if (msg)
		ydoc_error(&L->y, L->d, v, key, "%s", msg);
	else if (set_string(AT(L->cfg, f->off, char *), strdup(s)) < 0)
		ydoc_error(&L->y, L->d, v, key, "out of memory");
}

/* Under systemd, LoadCredential=NAME:... makes $CREDENTIALS_DIRECTORY/NAME:
 * a secret file given by a bare name is read from there when it is there. */
static char *credential_path(const char *name)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	struct stat st;
	char *path;
	size_t len;

	if (!dir || !*dir || strchr(name, '/'))
		return NULL;
	len = strlen(dir) + 1 + strlen(name) + 1;
	if (!(path = malloc(len)))
		return NULL;
	snprintf(path, len, "%s/%s", dir, name);
	if (stat(path, &st) == 0)
		return path;
	free(path);
	return NULL;
}

/* Files, secret files and folders: resolved against the configuration's folder and checked. */
static void parse_path_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	const char *s;
	char err[1024], *path;
	struct stat st;

	if (!(s = expect_scalar(L, v, key, "a file name")))
		return;
	if (f->type == F_SECRET && (path = credential_path(s))) {
		/* systemd's LoadCredential= put it there */
	} else if (!(path = resolve_path(L, s))) {
		ydoc_error(&L->y, L->d, v, key, "out of memory");
		return;
	}
	if (f->type == F_FILE && check_readable_file(path, err, sizeof(err)) < 0)
		ydoc_error(&L->y, L->d, v, key, "%s", err);
	else if (f->type == F_SECRET && secret_check_file(path, err, sizeof(err)) < 0)
		ydoc_error(&L->y, L->d, v, key, "%s", err);
	else if (f->type == F_DIR && stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
		ydoc_error(&L->y, L->d, v, key, "%s is not a directory", path);
	else if (f->type == F_DIR && stat(path, &st) == 0 && access(path, W_OK | X_OK) < 0)
		ydoc_error(&L->y, L->d, v, key, "cannot write to %s: %s", path, strerror(errno));
	set_string(AT(L->cfg, f->off, char *), path);
}

/* How a value of each type is read: one row per type. */
static void (*const parsers[])(struct loader *L, const struct field *f, yaml_node_t *v, const char *key) = {
	[F_SECTION] = parse_section,
	[F_STRING] = parse_string_value,
	[F_HTTP_URL] = parse_string_value,
	[F_LDAP_URI] = parse_string_value,
	[F_DN] = parse_string_value,
	[F_BOOL] = parse_bool_value,
	[F_INT] = parse_int_value,
	[F_PERCENT] = parse_percent_value,
	[F_DURATION] = parse_duration_value,
	[F_LISTEN] = parse_string_value,
	[F_FILE] = parse_path_value,
	[F_SECRET] = parse_path_value,
	[F_DIR] = parse_path_value,
	[F_ENUM] = parse_enum_value,
	[F_TYPES] = parse_type_list,
	[F_USER] = parse_string_value,
};

static void parse_value(struct loader *L, const struct field *f, yaml_node_t *v, const char *key)
{
	parsers[f->type](L, f, v, key);
}

static void walk_map(struct loader *L, yaml_node_t *m, const struct field *tab, const char *path)
{
	bool seen[32] = { false };
	char key[256];

	if (ydoc_is_null(m)) {
		/* "section:" with nothing under it: only the missing keys to report */
	} else if (!m || m->type != YAML_MAPPING_NODE) {
		ydoc_error(&L->y, L->d, m, path, "expected a mapping of keys, got %s", ydoc_kind(m));
		return;
	} else {
		ydoc_check_duplicates(&L->y, L->d, m, path);
		for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
			yaml_node_t *k = ydoc_node(&L->y, p->key);
			yaml_node_t *v = ydoc_node(&L->y, p->value);
			const char *ks = ydoc_scalar(k);
			const struct field *f;
			if (!ks) {
				ydoc_error(&L->y, L->d, k, path, "a key must be a plain name, got %s", ydoc_kind(k));
				continue;
			}
			join_path(key, sizeof(key), path, ks);
			for (f = tab; f->name && strcmp(f->name, ks) != 0; f++)
				;
			if (!f->name) {
				const char *near = suggest(tab, ks);
				if (near)
					ydoc_error(&L->y, L->d, k, key, "unknown key (did you mean %s?)", near);
				else
					ydoc_error(&L->y, L->d, k, key, "unknown key");
				continue;
			}
			if (seen[f - tab])
				continue; /* duplicate, reported above */
			seen[f - tab] = true;
			parse_value(L, f, v, key);
		}
	}
	for (const struct field *f = tab; f->name; f++) {
		if ((f->flags & REQUIRED) && !seen[f - tab]) {
			join_path(key, sizeof(key), path, f->name);
			ydoc_error(&L->y, L->d, m, key, "required key is missing");
		}
	}
}

/* ---- checks across keys of one section ------------------------------- */

static bool has_key(struct loader *L, yaml_node_t *m, const char *name)
{
	if (!m || m->type != YAML_MAPPING_NODE)
		return false;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const char *ks = ydoc_scalar(ydoc_node(&L->y, p->key));
		if (ks && strcmp(ks, name) == 0)
			return true;
	}
	return false;
}

static void factorial_post(struct loader *L, yaml_node_t *m, const char *path)
{
	bool key = has_key(L, m, "api_key_file"), oauth = has_key(L, m, "oauth");

	if (!key && !oauth)
		ydoc_error(&L->y, L->d, m, path, "give api_key_file or an oauth block");
	else if (key && oauth)
		ydoc_error(&L->y, L->d, m, path, "api_key_file and oauth exclude each other: keep one");
}

static void oauth_post(struct loader *L, yaml_node_t *m, const char *path)
{
	static const char *const app[] = { "token_url", "client_id", "client_secret_file", "refresh_token_file", NULL };
	bool company = has_key(L, m, "token_file");
	char key[256];

	for (size_t i = 0; app[i]; i++) {
		join_path(key, sizeof(key), path, app[i]);
		if (company && has_key(L, m, app[i]))
			ydoc_error(&L->y, L->d, m, key, "not with token_file: a company token is used as it is, without "
			                                "refreshing it");
		else if (!company && !has_key(L, m, app[i]))
			ydoc_error(&L->y, L->d, m, key, "required key is missing (or token_file, for a company token)");
	}
}

static void webhooks_post(struct loader *L, yaml_node_t *m, const char *path)
{
	bool cert = has_key(L, m, "tls_cert_file"), tkey = has_key(L, m, "tls_key_file");
	char key[256];

	if (cert != tkey) {
		join_path(key, sizeof(key), path, cert ? "tls_key_file" : "tls_cert_file");
		ydoc_error(&L->y, L->d, m, key, "required with %s", cert ? "tls_cert_file" : "tls_key_file");
	}
	/* metrics_listen the same as listen: /metrics on the webhook listener, no second one */
	if (L->cfg->webhooks.metrics_listen && L->cfg->webhooks.listen &&
	    strcmp(L->cfg->webhooks.metrics_listen, L->cfg->webhooks.listen) == 0) {
		free(L->cfg->webhooks.metrics_listen);
		L->cfg->webhooks.metrics_listen = NULL;
	}
}

static void ldap_post(struct loader *L, yaml_node_t *m, const char *path)
{
	struct config *cfg = L->cfg;
	char key[256];

	if (cfg->ldap.starttls && cfg->ldap.uri && strncasecmp(cfg->ldap.uri, "ldaps://", 8) == 0) {
		join_path(key, sizeof(key), path, "starttls");
		ydoc_error(&L->y, L->d, m, key, "cannot be used with an ldaps:// URI (it is TLS already)");
	}
	if (has_key(L, m, "bind_dn") && !has_key(L, m, "bind_password_file") && !has_key(L, m, "sasl_mech")) {
		join_path(key, sizeof(key), path, "bind_password_file");
		ydoc_error(&L->y, L->d, m, key, "required with bind_dn (or set sasl_mech: EXTERNAL over ldapi://)");
	}
	if (has_key(L, m, "bind_password_file") && !has_key(L, m, "bind_dn")) {
		join_path(key, sizeof(key), path, "bind_dn");
		ydoc_error(&L->y, L->d, m, key, "required with bind_password_file");
	}
}

/* ---- defaults, load and free ---------------------------------------- */

static int set_defaults(struct config *cfg)
{
	size_t n = 0;

	cfg->factorial.base_url = strdup("https://api.factorialhr.com");
	cfg->factorial.api_version = strdup("2026-07-01");
	cfg->factorial.enrich = true;
	cfg->factorial.connect_timeout = 10;
	cfg->factorial.timeout = 30;
	cfg->webhooks.listen = strdup("0.0.0.0:8080");
	cfg->webhooks.metrics_listen = strdup("127.0.0.1:9464");
	cfg->webhooks.max_body_bytes = 1024 * 1024;
	cfg->factorial.max_response_bytes = 64LL << 20;
	cfg->webhooks.request_timeout = 30;
	cfg->webhooks.header_timeout = 10;
	cfg->webhooks.max_connections = 256;
	cfg->webhooks.max_connections_per_address = 16;
	cfg->webhooks.check_interval = 600;
	cfg->webhooks.manage_subscriptions = true;
	cfg->ldap.network_timeout = 10;
	cfg->ldap.timeout = 30;
	cfg->state_dir = strdup("/var/lib/factorial-ldap-agent");
	cfg->sync.interval = 6 * 3600;
	cfg->sync.orphans = CONFIG_ORPHANS_REPORT;
	cfg->sync.retry_delay = 60;
	cfg->safety.max_disables = 25;
	cfg->safety.max_disables_percent = -1; /* no percentage limit unless set */
	cfg->queue.workers = 4;
	cfg->queue.max_attempts = 5;
	cfg->queue.retry_delay = 10;
	cfg->queue.schedule_check = 60;
	cfg->log.level = LOG_LVL_INFO;
	cfg->log.target = LOG_TARGET_STDERR;

	while (event_types[n].name)
		n++;
	cfg->webhooks.subscriptions.v = calloc(n + 1, sizeof(char *));
	if (!cfg->webhooks.subscriptions.v)
		return -1;
	for (size_t i = 0; i < n; i++) {
		cfg->webhooks.subscriptions.v[i] = strdup(event_types[i].name);
		if (!cfg->webhooks.subscriptions.v[i])
			return -1;
		cfg->webhooks.subscriptions.n++;
	}
	if (!cfg->factorial.base_url || !cfg->factorial.api_version || !cfg->webhooks.listen || !cfg->state_dir)
		return -1;
	return 0;
}

static void free_fields(struct config *cfg, const struct field *tab)
{
	for (const struct field *f = tab; f->name; f++) {
		switch (f->type) {
		case F_SECTION:
			free_fields(cfg, f->children);
			break;
		case F_TYPES: {
			struct config_strlist *l = AT(cfg, f->off, struct config_strlist);
			for (size_t i = 0; i < l->n; i++)
				free(l->v[i]);
			free(l->v);
			break;
		}
		case F_STRING:
		case F_HTTP_URL:
		case F_LDAP_URI:
		case F_DN:
		case F_LISTEN:
		case F_FILE:
		case F_SECRET:
		case F_DIR:
		case F_USER:
			free(*AT(cfg, f->off, char *));
			break;
		case F_ENUM:
		case F_BOOL:
		case F_INT:
		case F_PERCENT:
		case F_DURATION:
			break;
		}
	}
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free_fields(cfg, top_fields);
	free(cfg->path);
	free(cfg);
}

/* FACTORIAL_LDAP_AGENT_LOG_LEVEL, when set, overrides log.level: a person
 * can see one run at debug without editing the configuration. */
static void level_from_environment(struct config *cfg, struct diag *d)
{
	const char *v = getenv(CONFIG_LOG_LEVEL_ENV);

	if (!v || !*v)
		return;
	for (int i = 0; level_choices[i]; i++) {
		if (strcmp(v, level_choices[i]) == 0) {
			cfg->log.level = i;
			return;
		}
	}
	diag_add(d, CONFIG_LOG_LEVEL_ENV, 0, 0, NULL, "\"%s\" is not one of error | warn | info | debug", v);
}

int config_load(const char *path, struct config **out, struct diag *d)
{
	struct loader L = { .d = d };
	size_t before = diag_count(d);
	yaml_node_t *root;
	const char *slash;
	int rc = -1;

	*out = NULL;
	L.cfg = calloc(1, sizeof(*L.cfg));
	if (!L.cfg || set_defaults(L.cfg) < 0 || !(L.cfg->path = strdup(path))) {
		diag_add(d, path, 0, 0, NULL, "out of memory");
		goto cleanup;
	}
	slash = strrchr(path, '/');
	L.dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
	if (!L.dir) {
		diag_add(d, path, 0, 0, NULL, "out of memory");
		goto cleanup;
	}
	if (ydoc_load_file(&L.y, path, d) < 0)
		goto cleanup;
	root = ydoc_root(&L.y);
	walk_map(&L, root, top_fields, "");
	level_from_environment(L.cfg, d);
	if (diag_count(d) != before)
		goto cleanup;
	*out = L.cfg;
	L.cfg = NULL;
	rc = 0;
cleanup:
	config_free(L.cfg);
	ydoc_free(&L.y);
	free(L.dir);
	return rc;
}
