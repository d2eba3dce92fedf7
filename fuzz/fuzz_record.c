/* A record (the input, as JSON) rendered through a mapping, employee_dn
 * lookups failing or finding nothing by turns, and the result written out
 * as the dry run shows it. */
#include "build.h"

#include "fuzz.h"

#include "common/json.h"
#include "common/sbuf.h"
#include "mapping.h"
#include "render.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lookup(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	int *turn = ctx;

	(void)dn;
	if ((*turn)++ % 2)
		return 0;
	sbuf_addf(err, "the directory is down (looking up %s)", id);
	return -1;
}

static int taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	(void)ctx;
	(void)attr;
	(void)err;
	return value[0] == 'a'; /* some values are taken: the next candidate is tried */
}

static int existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err)
{
	(void)ctx;
	(void)attr;
	(void)out;
	(void)err;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct mapping *m = fuzz_mapping();
	cJSON *record = json_parse((const char *)data, size, NULL);
	int turn = 0;

	if (!record)
		return 0;
	for (int kind = MAPPING_EMPLOYEE; kind <= MAPPING_TEAM; kind++) {
		struct mapping_hooks hooks = { .employee_dn = lookup, .taken = taken, .existing = existing, .ctx = &turn,
			                       .today = "2026-11-30" };
		struct mapping_result r;
		struct sbuf out;
		sbuf_init(&out);
		memset(&r, 0, sizeof(r));
		if (mapping_eval(m, (enum mapping_kind)kind, record, &hooks, &r) == 0)
			render_result(&r, &out); /* as the dry run does: only what evaluated */
		mapping_result_free(&r);
		sbuf_free(&out);
	}
	cJSON_Delete(record);
	return 0;
}
