/* privacy: see privacy.h. */
#include "build.h"

#include "privacy.h"

#include <string.h>
#include <strings.h>

/* One row per field or family of fields; prefix rows end in '_' or match a
 * whole family by its start. */
static const struct {
	const char *name;
	bool prefix;
} sensitive[] = {
	{ "bank_", true },              /* bank_number, bank_account_..., bank_name */
	{ "iban", true },
	{ "swift", true },
	{ "bic", false },
	{ "social_security", true },    /* social_security_number, ..._type */
	{ "ssn", false },
	{ "salary", true },             /* salary_amount, salary_currency, ... */
	{ "base_compensation", true },
	{ "compensation", true },
};

bool privacy_sensitive(const char *name)
{
	for (size_t i = 0; i < sizeof(sensitive) / sizeof(sensitive[0]); i++) {
		size_t n = strlen(sensitive[i].name);
		if (sensitive[i].prefix ? strncasecmp(name, sensitive[i].name, n) == 0
		                        : strcasecmp(name, sensitive[i].name) == 0)
			return true;
	}
	return false;
}

int privacy_scrub(cJSON *j)
{
	cJSON *c, *next;
	int n = 0;

	if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
		return 0;
	for (c = j->child; c; c = next) {
		next = c->next;
		if (cJSON_IsObject(j) && c->string && privacy_sensitive(c->string)) {
			cJSON_Delete(cJSON_DetachItemViaPointer(j, c));
			n++;
		} else {
			n += privacy_scrub(c);
		}
	}
	return n;
}
