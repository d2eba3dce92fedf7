#include "build.h"

#include "events.h"

#include "common/sbuf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

const struct event_type event_types[] = {
	{ "employees/employee/create_with_contract", EVENT_EMPLOYEE, "create_with_contract", false },
	{ "employees/employee/invite", EVENT_EMPLOYEE, "invite", false },
	{ "employees/employee/update", EVENT_EMPLOYEE, "update", false },
	{ "employees/employee/terminate", EVENT_EMPLOYEE, "terminate", false },
	{ "employees/employee/unterminate", EVENT_EMPLOYEE, "unterminate", false },
	{ "employees/employee/set_regular_access_start_date", EVENT_EMPLOYEE, "set_regular_access_start_date", false },
	{ "teams/team/create", EVENT_TEAM, "create", false },
	{ "teams/team/update", EVENT_TEAM, "update", false },
	{ "teams/team/delete", EVENT_TEAM, "delete", false },
	{ "teams/membership/create", EVENT_MEMBERSHIP, "create", false },
	{ "teams/membership/update", EVENT_MEMBERSHIP, "update", false },
	{ "teams/membership/delete", EVENT_MEMBERSHIP, "delete", false },
	{ "teams/membership/bulk_upsert", EVENT_MEMBERSHIP, "bulk_upsert", true },
	{ "contracts/contract_version/create", EVENT_CONTRACT, "create", false },
	{ "contracts/contract_version/update", EVENT_CONTRACT, "update", false },
	{ "contracts/contract_version/delete", EVENT_CONTRACT, "delete", false },
	{ "locations/location/create", EVENT_LOCATION, "create", false },
	{ "locations/location/update", EVENT_LOCATION, "update", false },
	{ "locations/location/delete", EVENT_LOCATION, "delete", false },
	{ NULL, EVENT_EMPLOYEE, NULL, false },
};

const struct event_type *event_find(const char *name)
{
	for (const struct event_type *t = event_types; t->name; t++)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* ---- per kind ---------------------------------------------------------------- */

static void add_ref(struct strmap *refs, const char *kind, const cJSON *id)
{
	char *text = mapping_id_text(id);
	char key[160];

	if (!text)
		return;
	snprintf(key, sizeof(key), "%s:%s", kind, text);
	strmap_put(refs, key, NULL);
	free(text);
}

/* The employees a record's reference fields (a value, or a list of them) name. */
static void mapped_refs(const cJSON *body, const struct mapping *m, enum mapping_kind kind, struct strmap *refs)
{
	struct vlist fields;

	if (!m)
		return;
	vlist_init(&fields);
	mapping_reference_fields(m, kind, &fields);
	for (size_t i = 0; i < fields.n; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, fields.v[i]), *it;
		if (cJSON_IsArray(v)) {
			cJSON_ArrayForEach(it, v)
				add_ref(refs, "employee", it);
		} else {
			add_ref(refs, "employee", v);
		}
	}
	vlist_free(&fields);
}

static char *unique_key(void)
{
	static atomic_ulong seq;
	char key[64];

	snprintf(key, sizeof(key), "bulk:%ld.%lu", (long)time(NULL), (unsigned long)atomic_fetch_add(&seq, 1));
	return strdup(key);
}

static char *object_key(const char *kind, const cJSON *body)
{
	char *id = mapping_id_text(cJSON_GetObjectItemCaseSensitive(body, "id"));
	char key[160];

	snprintf(key, sizeof(key), "%s:%s", kind, id ? id : "?");
	free(id);
	return strdup(key);
}

static char *employee_key(const cJSON *body)
{
	return object_key("employee", body);
}

static char *team_key(const cJSON *body)
{
	return object_key("team", body);
}

static char *location_key(const cJSON *body)
{
	return object_key("location", body);
}

static char *membership_key(const cJSON *body)
{
	char *team, *emp, key[160];

	if (!cJSON_IsObject(body) || !cJSON_GetObjectItemCaseSensitive(body, "employee_id"))
		return unique_key(); /* a list (wrapped): a record of its own */
	team = mapping_id_text(cJSON_GetObjectItemCaseSensitive(body, "team_id"));
	emp = mapping_id_text(cJSON_GetObjectItemCaseSensitive(body, "employee_id"));
	snprintf(key, sizeof(key), "membership:%s:%s", team ? team : "?", emp ? emp : "?");
	free(team);
	free(emp);
	return strdup(key);
}

/* A contract version is its employee's: applied in turn with that employee's deliveries. */
static char *contract_key(const cJSON *body)
{
	char *emp = mapping_id_text(cJSON_GetObjectItemCaseSensitive(body, "employee_id"));
	char key[160];

	snprintf(key, sizeof(key), "employee:%s", emp ? emp : "?");
	free(emp);
	return strdup(key);
}

static void no_refs(const cJSON *body, const struct mapping *m, struct strmap *refs)
{
	(void)body, (void)m, (void)refs;
}

static void employee_refs(const cJSON *body, const struct mapping *m, struct strmap *refs)
{
	mapped_refs(body, m, MAPPING_EMPLOYEE, refs);
}

static void team_refs(const cJSON *body, const struct mapping *m, struct strmap *refs)
{
	mapped_refs(body, m, MAPPING_TEAM, refs);
}

static int one_membership_refs(void *ctx, const cJSON *membership)
{
	add_ref(ctx, "employee", cJSON_GetObjectItemCaseSensitive(membership, "employee_id"));
	add_ref(ctx, "team", cJSON_GetObjectItemCaseSensitive(membership, "team_id"));
	return 0;
}

static void membership_refs(const cJSON *body, const struct mapping *m, struct strmap *refs)
{
	(void)m;
	event_each_membership(body, one_membership_refs, refs);
}

static const struct {
	const char *name;
	char *(*key)(const cJSON *body);
	void (*refs)(const cJSON *body, const struct mapping *m, struct strmap *refs);
} kinds[] = {
	[EVENT_EMPLOYEE] = { "employee", employee_key, employee_refs },
	[EVENT_TEAM] = { "team", team_key, team_refs },
	[EVENT_MEMBERSHIP] = { "membership", membership_key, membership_refs },
	[EVENT_CONTRACT] = { "contract version", contract_key, no_refs },
	[EVENT_LOCATION] = { "location", location_key, no_refs },
};

const char *event_kind_name(enum event_kind kind)
{
	return kinds[kind].name;
}

char *event_record_key(const struct event_type *t, const cJSON *body)
{
	return t->list_body ? unique_key() : kinds[t->kind].key(body);
}

void event_refs(const struct event_type *t, const cJSON *body, const struct mapping *m, struct strmap *refs)
{
	event_kind_refs(t->kind, body, m, refs);
}

void event_kind_refs(enum event_kind kind, const cJSON *record, const struct mapping *m, struct strmap *refs)
{
	kinds[kind].refs(record, m, refs);
}

int event_each_membership(const cJSON *body, int (*fn)(void *ctx, const cJSON *membership), void *ctx)
{
	const cJSON *list = NULL, *it;
	int rc = 0;

	if (cJSON_IsObject(body) && cJSON_GetObjectItemCaseSensitive(body, "employee_id"))
		return fn(ctx, body);
	if (cJSON_IsArray(body)) {
		list = body;
	} else {
		cJSON_ArrayForEach(it, body) {
			if (cJSON_IsArray(it))
				list = it;
		}
	}
	cJSON_ArrayForEach(it, list) {
		if ((rc = fn(ctx, it)) != 0)
			break;
	}
	return rc;
}

/* How much JSON one delivery may hold.  A parsed value costs about 80
 * bytes, so a 1 MiB body of "[0,0,0,..." would take 40 MiB to parse; no
 * Factorial record comes near these bounds. */
enum { JSON_MAX_DEPTH = 64, JSON_MAX_VALUES = 100000 };

/* One pass, no allocation: it runs before the parser so the parser never
 * sees a body that would cost too much. */
const char *event_body_out_of_bounds(const char *body, size_t len)
{
	size_t depth = 0, values = 1;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		char c = body[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > JSON_MAX_DEPTH)
				return "JSON nested deeper than 64 levels";
		} else if (c == ']' || c == '}') {
			if (depth)
				depth--;
		} else if (c == ',' && ++values > JSON_MAX_VALUES) {
			return "JSON with more than 100000 values";
		}
	}
	return NULL;
}
