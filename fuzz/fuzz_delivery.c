/* The delivery path from an HTTP body to what the queue stores: the size
 * bounds, the parser, the private fields stripped, the record key and the
 * records the body names, for every subscription type. */
#include "build.h"

#include "fuzz.h"

#include "common/json.h"
#include "common/strmap.h"
#include "events.h"
#include "privacy.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	cJSON *j;

	if (event_body_out_of_bounds(body, size))
		return 0;
	j = json_parse(body, size, NULL);
	if (!j)
		return 0;
	privacy_scrub(j);
	for (const struct event_type *t = event_types; t->name; t++) {
		struct strmap refs;
		char *key;
		if (!cJSON_IsObject(j) && !(cJSON_IsArray(j) && t->list_body))
			continue;
		strmap_init(&refs);
		key = event_record_key(t, j);
		event_refs(t, j, fuzz_mapping(), &refs);
		free(key);
		strmap_free(&refs);
	}
	cJSON_Delete(j);
	return 0;
}
