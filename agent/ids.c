/* ids: see ids.h. */
#include "build.h"

#include "ids.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_STRING_VERSION "2026-07-01"

/* The fields of Factorial's records that hold ids, alone or in lists. */
static const char *const id_fields[] = {
	"id", "access_id", "company_id", "location_id", "legal_entity_id", "manager_id", "timeoff_manager_id",
	"employee_id", "team_id", "employee_ids", "lead_ids", NULL,
};

bool ids_canonical(const char *s)
{
	size_t n = 0;

	if (!s || !s[0] || (s[0] == '0' && s[1]))
		return false;
	for (; s[n]; n++)
		if (s[n] < '0' || s[n] > '9')
			return false;
	return n <= 40;
}

char *ids_text(const cJSON *v, struct sbuf *why)
{
	char num[32];

	if (!v || cJSON_IsNull(v))
		return NULL;
	if (cJSON_IsString(v) && ids_canonical(v->valuestring))
		return strdup(v->valuestring);
	if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0 &&
	    v->valuedouble == floor(v->valuedouble)) {
		snprintf(num, sizeof(num), "%.0f", v->valuedouble);
		return strdup(num);
	}
	if (why && cJSON_IsString(v))
		sbuf_addf(why, "\"%s\" is not an id: ids are decimal digits, without sign, spaces or leading zeros",
		          v->valuestring);
	else if (why && cJSON_IsNumber(v))
		sbuf_addf(why, "%g is not an id: ids are whole numbers from 0 on", v->valuedouble);
	else if (why)
		sbuf_adds(why, "is not an id (a string of decimal digits)");
	return NULL;
}

/* One field: absent, null, or canonical ids (a list of them for the lists). */
static int check_field(const cJSON *record, const char *field, struct sbuf *why)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(record, field), *it;
	char *text;

	if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(it, v) {
			if (cJSON_IsNull(it))
				continue;
			if (!(text = ids_text(it, NULL))) {
				sbuf_addf(why, "%s: ", field);
				ids_text(it, why);
				return -1;
			}
			free(text);
		}
		return 0;
	}
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!(text = ids_text(v, NULL))) {
		sbuf_addf(why, "%s ", field);
		ids_text(v, why);
		return -1;
	}
	free(text);
	return 0;
}

int ids_check(const cJSON *record, struct sbuf *why)
{
	if (!cJSON_IsObject(record))
		return 0;
	for (size_t i = 0; id_fields[i]; i++)
		if (check_field(record, id_fields[i], why) < 0)
			return -1;
	return 0;
}

int ids_compare(const char *a, const char *b)
{
	size_t la, lb;

	if (!a || !b)
		return a ? 1 : b ? -1 : 0;
	if (!ids_canonical(a) || !ids_canonical(b))
		return strcmp(a, b);
	la = strlen(a);
	lb = strlen(b);
	return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

bool ids_are_strings(const char *api_version)
{
	return api_version && strcmp(api_version, FIRST_STRING_VERSION) >= 0;
}

cJSON *ids_json(const char *id, const char *api_version)
{
	return ids_are_strings(api_version) ? cJSON_CreateString(id) : cJSON_CreateRaw(id);
}
