/* Unit tests of the related records: which kinds a mapping reads, reading
 * them from fixture files, and an employee record given them. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "related.h"
#include "testutil.h"

static struct mapping *load_mapping(const char *attrs)
{
	char text[2048], *path;
	struct mapping *m = NULL;
	struct diag d;

	snprintf(text, sizeof(text),
	         "version: 1\nemployees:\n  base: ou=people,dc=example,dc=com\n"
	         "  key: { attribute: employeeNumber, value: \"{id}\" }\n  rdn: uid\n"
	         "  object_classes: [inetOrgPerson]\n  attributes:\n    uid: \"{first_name}\"\n%s",
	         attrs);
	path = tu_write(tu_dir, "m.yaml", 0644, text);
	diag_init(&d);
	assert_int_equal(mapping_load(path, &m, &d), 0);
	diag_free(&d);
	free(path);
	return m;
}

static void test_needs(void **state)
{
	struct mapping *m;

	(void)state;
	m = load_mapping("    cn: \"{full_name}\"\n");
	assert_int_equal(related_needs(m), 0);
	mapping_free(m);
	m = load_mapping("    l: \"{location.name}\"\n");
	assert_int_equal(related_needs(m), 1);
	mapping_free(m);
	/* in a condition only, or in a default's argument */
	m = load_mapping("    o: { value: x, when: { legal_entity.country: fr } }\n"
	                 "    l: \"{city|default(location.name)}\"\n");
	assert_int_equal(related_needs(m), 3);
	mapping_free(m);
	assert_true(related_is_file("locations.json"));
	assert_true(related_is_file("legal_entities.json"));
	assert_false(related_is_file("people.json"));
}

static void test_files_and_attach(void **state)
{
	struct related *r = NULL, *held;
	struct sbuf err;
	cJSON *emp, *got;
	bool unknown = false;
	char *p;

	(void)state;
	sbuf_init(&err);
	p = tu_write(tu_dir, "locations.json", 0644, "[{\"id\": 1, \"name\": \"Madrid HQ\"}, {\"id\": \"2\", \"name\": \"Paris\"}]");
	free(p);
	/* legal_entities.json is missing: none */
	assert_int_equal(related_load_files(tu_dir, 3, &r, &err), 0);
	assert_int_equal(related_count(r), 2);
	emp = cJSON_Parse("{\"id\": 7, \"location_id\": \"1\", \"legal_entity_id\": 4, \"location\": 5}");
	got = related_attach(r, emp, &unknown);
	assert_non_null(got);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(got, "location"), "name")->valuestring, "Madrid HQ");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(got, "legal_entity")));
	assert_true(unknown); /* legal entity 4 is not among them */
	assert_int_equal(cJSON_GetObjectItem(emp, "location")->valueint, 5); /* the given record is left as it was */
	cJSON_Delete(got);
	cJSON_Delete(emp);
	/* an id given as a number finds one read as a string; no id is not unknown */
	unknown = false;
	emp = cJSON_Parse("{\"id\": 8, \"location_id\": 2}");
	got = related_attach(r, emp, &unknown);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(got, "location"), "name")->valuestring, "Paris");
	assert_false(unknown);
	cJSON_Delete(got);
	cJSON_Delete(emp);
	/* held twice, freed twice */
	held = related_hold(r);
	related_free(r);
	assert_int_equal(related_count(held), 2);
	related_free(held);
	/* a file that is not a list is said */
	p = tu_write(tu_dir, "legal_entities.json", 0644, "{\"id\": 1}");
	free(p);
	assert_int_equal(related_load_files(tu_dir, 3, &r, &err), -1);
	assert_null(r);
	assert_non_null(strstr(sbuf_str(&err), "legal_entities.json: expected a JSON array of legal_entity records"));
	sbuf_free(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_needs),
		cmocka_unit_test(test_files_and_attach),
	};
	return cmocka_run_group_tests_name("related", tests, tu_dir_setup, tu_dir_teardown);
}
