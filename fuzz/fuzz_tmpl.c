/* The template compiler and evaluator: the input is a template, evaluated
 * against a record with every kind of field, employee_dn lookups finding,
 * missing and failing by turns. */
#include "build.h"

#include "fuzz.h"

#include "common/sbuf.h"
#include "common/vlist.h"
#include "tmpl.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char record_text[] =
	"{\"id\": 7, \"first_name\": \"Ana María\", \"last_name\": \"Núñez-O'Brien\", \"email\": \"ana@example.com\","
	" \"birthday_on\": \"1990-02-29\", \"manager_id\": 3, \"team_ids\": [1, 2, 99], \"employee_ids\": [3, 4, 5],"
	" \"active\": true, \"terminated_on\": null, \"score\": 12.5, \"nested\": {\"a\": {\"b\": [\"x\", \"\"]}},"
	" \"name\": \"Ελληνικά Русский 中文\", \"empty\": \"\"}";

static int lookup(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	int *turn = ctx;

	switch ((*turn)++ % 4) {
	case 0:
		*dn = strdup("uid=someone,ou=people,dc=example,dc=com");
		return *dn ? 1 : -1;
	case 1:
		return 0;
	case 2:
		return 2;
	default:
		sbuf_addf(err, "lookup of %s failed", id);
		return -1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static cJSON *record;
	struct tmpl *t = NULL;
	struct vlist out, unresolved;
	struct sbuf err;
	char msg[256];
	size_t off;
	int turn = (int)size;

	if (!record && !(record = cJSON_Parse(record_text)))
		abort();
	if (tmpl_parse(fuzz_as_text(data, size), &t, msg, sizeof(msg), &off) < 0)
		return 0;
	vlist_init(&out);
	vlist_init(&unresolved);
	sbuf_init(&err);
	{
		struct tmpl_env env = { .record = record, .employee_dn = lookup, .ctx = &turn, .unresolved = &unresolved,
			                .err = &err };
		tmpl_eval(t, &env, &out);
	}
	vlist_free(&out);
	vlist_free(&unresolved);
	sbuf_free(&err);
	tmpl_free(t);
	return 0;
}
