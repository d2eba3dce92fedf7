/* Unit tests of the event table: every type is found, record keys, the
 * records a body names (as the mapping's employee_dn references say), and
 * the memberships a membership body holds. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "events.h"
#include "testutil.h"

static const char mapping_text[] =
	"version: 1\n"
	"employees:\n"
	"  base: ou=people,dc=example,dc=com\n"
	"  key: { attribute: employeeNumber, value: \"{id}\" }\n"
	"  rdn: uid\n"
	"  object_classes: [top, inetOrgPerson]\n"
	"  attributes:\n"
	"    uid: \"{first_name|slug}\"\n"
	"    cn: \"{full_name}\"\n"
	"    sn: \"{last_name}\"\n"
	"    manager: \"{manager_id|employee_dn}\"\n"
	"teams:\n"
	"  base: ou=groups,dc=example,dc=com\n"
	"  key: { attribute: businessCategory, value: \"team-{id}\" }\n"
	"  rdn: cn\n"
	"  object_classes: [top, groupOfNames]\n"
	"  attributes:\n"
	"    cn: \"{name|slug}\"\n"
	"    member: \"{employee_ids|employee_dn|default('cn=nobody')}\"\n";

static struct mapping *load_mapping(char *dir)
{
	char *path = tu_write(dir, "m.yaml", 0644, mapping_text);
	struct mapping *m = NULL;
	struct diag d;

	diag_init(&d);
	assert_int_equal(mapping_load(path, &m, &d), 0);
	diag_free(&d);
	free(path);
	return m;
}

static int by_text(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The refs of body for type, sorted, joined by spaces. */
static char *refs_of(const char *type, const char *body, const struct mapping *m)
{
	const struct event_type *t = event_find(type);
	cJSON *j = cJSON_Parse(body);
	struct strmap refs;
	struct vlist keys;
	struct sbuf out;

	assert_non_null(t);
	assert_non_null(j);
	strmap_init(&refs);
	vlist_init(&keys);
	sbuf_init(&out);
	event_refs(t, j, m, &refs);
	for (size_t i = 0; i < refs.cap; i++)
		if (refs.slots[i].key)
			vlist_push_copy(&keys, refs.slots[i].key, strlen(refs.slots[i].key));
	if (keys.n)
		qsort(keys.v, keys.n, sizeof(keys.v[0]), by_text);
	for (size_t i = 0; i < keys.n; i++)
		sbuf_addf(&out, "%s%s", i ? " " : "", keys.v[i]);
	vlist_free(&keys);
	strmap_free(&refs);
	cJSON_Delete(j);
	return sbuf_detach(&out);
}

static char *key_of(const char *type, const char *body)
{
	cJSON *j = cJSON_Parse(body);
	char *k = event_record_key(event_find(type), j);

	cJSON_Delete(j);
	return k;
}

static void test_every_type_is_a_row(void **state)
{
	size_t n = 0;

	(void)state;
	for (const struct event_type *t = event_types; t->name; t++, n++) {
		assert_ptr_equal(event_find(t->name), t);
		assert_string_equal(strrchr(t->name, '/') + 1, t->action);
	}
	assert_int_equal(n, 19);
	assert_null(event_find("employees/employee/delete"));
	assert_null(event_find("companies/legal_entity/create"));
	assert_true(event_find("teams/membership/bulk_upsert")->list_body);
	assert_false(event_find("teams/membership/create")->list_body);
	assert_int_equal(event_find("employees/employee/invite")->kind, EVENT_EMPLOYEE);
	assert_string_equal(event_kind_name(EVENT_MEMBERSHIP), "membership");
}

static void test_record_keys(void **state)
{
	char *k;

	(void)state;
	assert_string_equal(k = key_of("employees/employee/update", "{\"id\": 42}"), "employee:42");
	free(k);
	assert_string_equal(k = key_of("employees/employee/update", "{\"id\": \"42\"}"), "employee:42");
	free(k);
	assert_string_equal(k = key_of("teams/team/delete", "{\"id\": 3}"), "team:3");
	free(k);
	assert_string_equal(k = key_of("teams/membership/delete", "{\"id\": 9, \"team_id\": 3, \"employee_id\": 42}"),
	                    "membership:3:42");
	free(k);
	/* a list is a record of its own: two lists never share a key */
	k = key_of("teams/membership/bulk_upsert", "[{\"team_id\": 3, \"employee_id\": 42}]");
	{
		char *k2 = key_of("teams/membership/bulk_upsert", "[{\"team_id\": 3, \"employee_id\": 42}]");
		assert_true(strncmp(k, "bulk:", 5) == 0);
		assert_string_not_equal(k, k2);
		free(k2);
	}
	free(k);
	assert_string_equal(k = key_of("employees/employee/update", "{}"), "employee:?");
	free(k);
}

static void test_refs_follow_the_mapping(void **state)
{
	char *dir = tu_mkdtemp(), *r;
	struct mapping *m = load_mapping(dir);

	(void)state;
	/* the employee's manager, as employee_dn reads it; not the fields the mapping ignores */
	assert_string_equal(r = refs_of("employees/employee/update",
	                                "{\"id\": 1, \"manager_id\": 7, \"timeoff_manager_id\": 8}", m),
	                    "employee:7");
	free(r);
	assert_string_equal(r = refs_of("employees/employee/update", "{\"id\": 1, \"manager_id\": null}", m), "");
	free(r);
	assert_string_equal(r = refs_of("teams/team/update", "{\"id\": 5, \"employee_ids\": [3, \"4\", 3]}", m),
	                    "employee:3 employee:4");
	free(r);
	assert_string_equal(r = refs_of("teams/membership/create", "{\"team_id\": 5, \"employee_id\": 3}", m),
	                    "employee:3 team:5");
	free(r);
	assert_string_equal(r = refs_of("teams/membership/bulk_upsert",
	                                "{\"data\": [{\"team_id\": 5, \"employee_id\": 3}, {\"team_id\": 6, \"employee_id\": 4}]}",
	                                m),
	                    "employee:3 employee:4 team:5 team:6");
	free(r);
	/* without a mapping an employee or team names nothing */
	assert_string_equal(r = refs_of("employees/employee/update", "{\"id\": 1, \"manager_id\": 7}", NULL), "");
	free(r);
	mapping_free(m);
	tu_rmtree(dir);
	free(dir);
}

static int count(void *ctx, const cJSON *membership)
{
	(void)membership;
	return ++*(int *)ctx == 99 ? 7 : 0;
}

static void test_each_membership(void **state)
{
	static const struct {
		const char *body;
		int n;
	} cases[] = {
		{ "{\"team_id\": 1, \"employee_id\": 2}", 1 },
		{ "[{\"team_id\": 1, \"employee_id\": 2}, {\"team_id\": 1, \"employee_id\": 3}]", 2 },
		{ "{\"memberships\": [{\"team_id\": 1, \"employee_id\": 2}]}", 1 },
		{ "[]", 0 },
		{ "{\"id\": 1}", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j = cJSON_Parse(cases[i].body);
		int n = 0;
		assert_int_equal(event_each_membership(j, count, &n), 0);
		assert_int_equal(n, cases[i].n);
		cJSON_Delete(j);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_type_is_a_row),
		cmocka_unit_test(test_record_keys),
		cmocka_unit_test(test_refs_follow_the_mapping),
		cmocka_unit_test(test_each_membership),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
