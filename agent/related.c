#include "build.h"

#include "related.h"

#include "common/json.h"
#include "common/strmap.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row per kind of related record. */
static const struct {
	const char *field;   /* what the employee record gets: {location.name} */
	const char *id_field; /* the employee's field that names it */
	const char *path;    /* the API collection */
	const char *file;    /* the fixture file */
} kinds[] = {
	{ "location", "location_id", "locations/locations", "locations.json" },
	{ "legal_entity", "legal_entity_id", "companies/legal_entities", "legal_entities.json" },
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

struct related {
	atomic_int refs;
	unsigned kinds;
	cJSON *list[NKINDS];      /* the records, as read */
	struct strmap by_id[NKINDS]; /* id as text -> index in list */
};

unsigned related_needs(const struct mapping *m)
{
	unsigned need = 0;

	for (size_t k = 0; k < NKINDS; k++)
		if (mapping_uses_field(m, MAPPING_EMPLOYEE, kinds[k].field))
			need |= 1u << k;
	return need;
}

struct related *related_hold(struct related *r)
{
	if (r)
		atomic_fetch_add(&r->refs, 1);
	return r;
}

void related_free(struct related *r)
{
	if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	for (size_t k = 0; k < NKINDS; k++) {
		cJSON_Delete(r->list[k]);
		strmap_free(&r->by_id[k]);
	}
	free(r);
}

bool related_is_file(const char *name)
{
	for (size_t k = 0; k < NKINDS; k++)
		if (strcmp(name, kinds[k].file) == 0)
			return true;
	return false;
}

size_t related_count(const struct related *r)
{
	size_t n = 0;

	for (size_t k = 0; r && k < NKINDS; k++)
		n += (size_t)cJSON_GetArraySize(r->list[k]);
	return n;
}

/* Indexes kind k's records by id; one without an id is left out. */
static int index_kind(struct related *r, size_t k, struct sbuf *err)
{
	const cJSON *it;
	int i = 0;

	cJSON_ArrayForEach(it, r->list[k]) {
		char *id = mapping_id_text(cJSON_GetObjectItemCaseSensitive(it, "id")), at[32];
		snprintf(at, sizeof(at), "%d", i++);
		if (id && strmap_put(&r->by_id[k], id, at) < 0) {
			free(id);
			sbuf_adds(err, "out of memory");
			return -1;
		}
		free(id);
	}
	return 0;
}

static struct related *related_new(unsigned need)
{
	struct related *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->kinds = need;
	for (size_t k = 0; k < NKINDS; k++) {
		strmap_init(&r->by_id[k]);
		if (!(r->list[k] = cJSON_CreateArray())) {
			related_free(r);
			return NULL;
		}
	}
	return r;
}

/* Every kind need names, read by read_kind into its list, then indexed. */
static int load(unsigned need, int (*read_kind)(void *src, size_t k, cJSON **list, struct sbuf *err), void *src,
                struct related **out, struct sbuf *err)
{
	struct related *r = related_new(need);
	int rc = -1;

	*out = NULL;
	if (!r) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	for (size_t k = 0; k < NKINDS; k++)
		if ((need & (1u << k)) && (read_kind(src, k, &r->list[k], err) < 0 || index_kind(r, k, err) < 0))
			goto cleanup;
	*out = r;
	r = NULL;
	rc = 0;
cleanup:
	related_free(r);
	return rc;
}

/* Kind k from the API (one paged list). */
static int api_kind(void *src, size_t k, cJSON **list, struct sbuf *err)
{
	if (factorial_list(src, kinds[k].path, NULL, factorial_collect, *list, err) >= 0)
		return 0;
	sbuf_prefixf(err, "reading %s for {%s...} in the mapping: ", kinds[k].path, kinds[k].field);
	return -1;
}

/* Kind k from DIR/FILE, a JSON array of records; a missing file is none. */
static int file_kind(void *src, size_t k, cJSON **list, struct sbuf *err)
{
	const char *dir = src;
	char path[4096];
	FILE *fp;
	struct sbuf text;
	char chunk[8192];
	size_t n;
	int rc = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, kinds[k].file);
	if (!(fp = fopen(path, "r")))
		return errno == ENOENT ? 0 : (sbuf_addf(err, "%s: %s", path, strerror(errno)), -1);
	sbuf_init(&text);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sbuf_add(&text, chunk, n);
	if (ferror(fp)) {
		sbuf_addf(err, "%s: %s", path, strerror(errno));
	} else {
		cJSON *json = json_parse(sbuf_str(&text), text.len, NULL);
		if (!cJSON_IsArray(json)) {
			sbuf_addf(err, "%s: expected a JSON array of %s records", path, kinds[k].field);
			cJSON_Delete(json);
		} else {
			cJSON_Delete(*list);
			*list = json;
			rc = 0;
		}
	}
	fclose(fp);
	sbuf_free(&text);
	return rc;
}

int related_load_api(struct factorial *api, unsigned need, struct related **out, struct sbuf *err)
{
	return load(need, api_kind, api, out, err);
}

int related_load_files(const char *dir, unsigned need, struct related **out, struct sbuf *err)
{
	return load(need, file_kind, (void *)dir, out, err);
}

cJSON *related_attach(const struct related *r, const cJSON *employee, bool *unknown)
{
	cJSON *copy = cJSON_Duplicate(employee, true);

	for (size_t k = 0; copy && r && k < NKINDS; k++) {
		char *id;
		const char *at;
		cJSON *rec = NULL;
		if (!(r->kinds & (1u << k)))
			continue;
		id = mapping_id_text(cJSON_GetObjectItemCaseSensitive(employee, kinds[k].id_field));
		at = id ? strmap_get(&r->by_id[k], id) : NULL;
		if (id && !at && unknown)
			*unknown = true;
		free(id);
		rec = at ? cJSON_Duplicate(cJSON_GetArrayItem(r->list[k], atoi(at)), true) : cJSON_CreateNull();
		if (!rec || !cJSON_ReplaceItemInObjectCaseSensitive(copy, kinds[k].field, rec)) {
			if (rec && !cJSON_AddItemToObject(copy, kinds[k].field, rec)) {
				cJSON_Delete(rec);
				rec = NULL;
			}
			if (!rec) {
				cJSON_Delete(copy);
				return NULL;
			}
		}
	}
	return copy;
}
