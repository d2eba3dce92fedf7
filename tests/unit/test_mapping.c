/* Unit tests of the mapping loader (every mistake, by place) and of the
 * evaluation of records (scope, termination, uniqueness, create_only, DNs). */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ldap.h>
#include <time.h>

#include "dn.h"
#include "mapping.h"
#include "common/strmap.h"
#include "testutil.h"

/* Loads text as m.yaml; returns the mistakes (one a line) and the mapping. */
static char *load(const char *text, struct mapping **out)
{
	char *path = tu_write(tu_dir, "m.yaml", 0644, text);
	struct mapping *m = NULL;
	struct diag d;
	struct sbuf all;
	FILE *null = fopen("/dev/null", "w");

	sbuf_init(&all);
	diag_init(&d);
	mapping_load(path, &m, &d);
	diag_print(&d, null); /* sorts */
	fclose(null);
	for (size_t i = 0; i < d.n; i++) {
		char line[1024];
		diag_format(&d, i, line, sizeof(line));
		sbuf_addf(&all, "%s\n", strstr(line, "m.yaml"));
	}
	assert_int_equal(m == NULL, d.n > 0);
	diag_free(&d);
	free(path);
	if (out)
		*out = m;
	else
		mapping_free(m);
	return sbuf_detach(&all);
}

static void expect(const char *text, const char *want)
{
	char *got = load(text, NULL);
	if (strcmp(got, want) != 0)
		fail_msg("got:\n%s\nwant:\n%s", got, want);
	free(got);
}

#define EMPLOYEES                                              \
	"employees:\n"                                         \
	"  base: ou=people,dc=example,dc=com\n"                \
	"  key: { attribute: employeeNumber, value: \"{id}\" }\n" \
	"  rdn: uid\n"                                         \
	"  object_classes: [inetOrgPerson]\n"
#define HEAD "version: 1\n" EMPLOYEES

static void test_valid_contract_example(void **state)
{
	struct mapping *m = NULL;
	char *errs;

	(void)state;
	errs = load(HEAD
	            "  only_if: { legal_entity_id: [1, 2] }\n"
	            "  attributes:\n"
	            "    uid: { value: \"{first_name|slug}.{last_name|slug}\", unique: true, create_only: true }\n"
	            "    cn: \"{full_name}\"\n"
	            "    sn: \"{last_name}\"\n"
	            "    manager: \"{manager_id|employee_dn}\"\n"
	            "    mail: { value: \"{login_email|lower}\", required: true }\n"
	            "    homeDirectory: \"/home/{@uid}\"\n"
	            "    loginShell: /bin/bash\n"
	            "  terminated:\n"
	            "    action: move\n"
	            "    move_to: ou=former,dc=example,dc=com\n"
	            "    attributes: { loginShell: /usr/sbin/nologin }\n"
	            "    remove_from_groups: true\n"
	            "teams:\n"
	            "  base: ou=groups,dc=example,dc=com\n"
	            "  key: { attribute: businessCategory, value: \"factorial-team-{id}\" }\n"
	            "  rdn: cn\n"
	            "  object_classes: [top, groupOfNames]\n"
	            "  attributes:\n"
	            "    cn: \"team-{name|slug}\"\n"
	            "    member: \"{employee_ids|employee_dn|default('cn=nobody')}\"\n",
	            &m);
	assert_string_equal(errs, "");
	free(errs);
	assert_true(m->obj[MAPPING_EMPLOYEE].present);
	assert_int_equal(m->obj[MAPPING_EMPLOYEE].nattrs, 8); /* 7 + the key */
	assert_string_equal(m->obj[MAPPING_EMPLOYEE].search_base, "ou=people,dc=example,dc=com");
	assert_int_equal(m->obj[MAPPING_EMPLOYEE].action, MAPPING_MOVE);
	assert_true(m->obj[MAPPING_EMPLOYEE].remove_from_groups);
	mapping_free(m);
}

static void test_unknown_keys_filters_arguments(void **state)
{
	(void)state;
	expect(HEAD
	       "  colour: blue\n"
	       "  attributes:\n"
	       "    uid: \"{first_name|slugg}\"\n"
	       "    cn: \"{full_name|truncate}\"\n"
	       "    sn: '{last_name'\n"
	       "    mail: { value: \"{x}\", unique: yes, sparkle: true }\n",
	       "m.yaml:7:3: employees.colour: unknown key\n"
	       "m.yaml:9:23: employees.attributes.uid: unknown filter \"slugg\" (did you mean slug?)\n"
	       "m.yaml:10:21: employees.attributes.cn: truncate takes 1 argument, got 0\n"
	       "m.yaml:11:10: employees.attributes.sn: unterminated { (no closing })\n"
	       "m.yaml:12:35: employees.attributes.mail.unique: expected true or false, got \"yes\"\n"
	       "m.yaml:12:40: employees.attributes.mail.sparkle: unknown key\n");
}

static void test_translit_ids_checked_when_loading(void **state)
{
	(void)state;
	expect(HEAD
	       "  attributes:\n"
	       "    uid: \"{first_name|translit('Russian-Latn')|slug}\"\n"
	       "    cn: \"{full_name|translit('Russian-Latin/BGN')}\"\n",
	       "m.yaml:8:23: employees.attributes.uid: translit: ICU has no transform \"Russian-Latn\" (an id such "
	       "as 'Russian-Latin/BGN' or 'Any-Latin; Latin-ASCII')\n");
}

static void test_team_member_attribute_reads_no_other_attribute(void **state)
{
	(void)state;
	expect(HEAD
	       "  attributes:\n"
	       "    uid: \"{first_name}\"\n"
	       "teams:\n"
	       "  base: ou=groups,dc=example,dc=com\n"
	       "  key: { attribute: gidNumber, value: \"{id}\" }\n"
	       "  rdn: cn\n"
	       "  object_classes: [groupOfNames]\n"
	       "  attributes:\n"
	       "    cn: \"{name}\"\n"
	       "    description: \"team {@cn}\"\n"
	       "    member: \"{employee_ids|employee_dn}{@cn}\"\n",
	       "m.yaml:17:13: teams.attributes.member: {@cn}: a member attribute (one using employee_dn) cannot "
	       "read other attributes; take the value from the record\n");
}

static void test_sensitive_fields_are_refused(void **state)
{
	(void)state;
	expect(HEAD
	       "  attributes:\n"
	       "    uid: \"{first_name}\"\n"
	       "    description: \"{bank_number}\"\n"
	       "    title: \"{nick|default(salary_amount)}\"\n",
	       "m.yaml:9:18: employees.attributes.description: {bank_number}: bank, social security and salary fields "
	       "are never kept or written by the agent\n"
	       "m.yaml:10:12: employees.attributes.title: {salary_amount}: bank, social security and salary fields "
	       "are never kept or written by the agent\n");
}

static void test_tables(void **state)
{
	struct mapping *m = NULL;
	char *err;

	(void)state;
	expect("version: 1\n"
	       "tables:\n"
	       "  entities: { 1: Spain, 2: France }\n"
	       "  \"bad name\": { a: b }\n"
	       "  nested: { a: { b: c } }\n" EMPLOYEES
	       "  attributes:\n"
	       "    uid: \"{first_name}\"\n"
	       "    l: \"{legal_entity_id|map(entities)}\"\n"
	       "    o: \"x {legal_entity_id|map(sites)}\"\n",
	       "m.yaml:4:3: tables: \"bad name\" is not a table name (letters, digits, -)\n"
	       "m.yaml:5:16: tables.nested.a: expected a key and a value (text)\n"
	       "m.yaml:14:11: employees.attributes.o: map: no table \"sites\" in tables:\n");
	/* a good one loads, and its tables are there */
	err = load("version: 1\ntables: { sites: { 10: Madrid } }\n" EMPLOYEES "  attributes:\n    uid: \"{first_name}\"\n"
	           "    l: \"{location_id|map(sites, 'Remote')}\"\n",
	           &m);
	assert_string_equal(err, "");
	assert_int_equal(m->tables.n, 1);
	assert_string_equal(strmap_get(&tmpl_table_find(&m->tables, "sites")->entries, "10"), "Madrid");
	free(err);
	mapping_free(m);
}

/* A table of 100,000 keys loads in linear time (it took 36 s when each key was compared with every
 * other), and a duplicate at its end is still found. */
static void test_a_large_table_loads_in_linear_time(void **state)
{
	struct sbuf text;
	struct mapping *m = NULL;
	struct timespec t0, t1;
	char *err;

	(void)state;
	sbuf_init(&text);
	sbuf_adds(&text, "version: 1\ntables:\n  people:\n");
	for (int i = 0; i < 100000; i++)
		sbuf_addf(&text, "    %d: p%d\n", i, i);
	sbuf_adds(&text, "    17: again\n" EMPLOYEES "  attributes:\n    uid: \"{id|map(people)}\"\n");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = load(sbuf_str(&text), &m);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(strstr(err, "m.yaml:100004:5: tables.people.17: duplicate key (first given on line 21)"));
	assert_true((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9 < 10.0);
	free(err);
	sbuf_free(&text);
}

static void test_attr_references(void **state)
{
	(void)state;
	expect(HEAD
	       "  attributes:\n"
	       "    uid: \"{@cn}\"\n"
	       "    cn: \"{@sn} x\"\n"
	       "    sn: \"{@uid}\"\n"
	       "    home: \"/home/{@nothing}\"\n",
	       "m.yaml:8:5: employees.attributes.uid: {@attr} references form a cycle: uid -> cn -> sn -> uid\n"
	       "m.yaml:11:11: employees.attributes.home: {@nothing} names an attribute this mapping does not set\n");
}

static void test_rdn_key_and_structure(void **state)
{
	(void)state;
	expect("version: 2\n"
	       "employees:\n"
	       "  base: not a dn\n"
	       "  key: { attribute: 'bad name', value: \"{@uid}\" }\n"
	       "  rdn: cn\n"
	       "  object_classes: []\n"
	       "  attributes:\n"
	       "    uid: \"{id}\"\n"
	       "    objectClass: x\n"
	       "    UID: \"{id}\"\n"
	       "teams:\n"
	       "  base: ou=groups,dc=example,dc=com\n"
	       "  rdn: cn\n"
	       "  object_classes: [groupOfNames]\n"
	       "  terminated: { action: delete }\n"
	       "  attributes: { cn: x }\n",
	       "m.yaml:1:10: version: only version 1 is known, got 2\n"
	       "m.yaml:3:9: employees.base: \"not a dn\" is not a valid DN\n"
	       "m.yaml:4:21: employees.key.attribute: \"bad name\" is not an attribute name\n"
	       "m.yaml:4:40: employees.key.value: the key cannot use {@attr}: it must come from the record\n"
	       "m.yaml:6:19: employees.object_classes: expected a list of object classes\n"
	       "m.yaml:9:5: employees.attributes.objectClass: object classes are set by employees.object_classes\n"
	       "m.yaml:10:5: employees.attributes.UID: listed twice (attribute names ignore case)\n"
	       "m.yaml:12:3: teams.key: required key is missing\n"
	       "m.yaml:15:3: teams.terminated: teams are not terminated: a deleted team's group is deleted\n");
}

static void test_rdn_not_among_attributes(void **state)
{
	(void)state;
	expect(HEAD
	       "  attributes:\n"
	       "    cn: \"{full_name}\"\n"
	       "    employeeNumber: \"{id}x\"\n"
	       "  terminated:\n"
	       "    action: move\n"
	       "    attributes: { cn: gone, employeeNumber: x }\n",
	       "m.yaml:5:8: employees.rdn: \"uid\" is not among employees.attributes (nor the key attribute)\n"
	       "m.yaml:9:5: employees.attributes.employeeNumber: the key attribute is written from employees.key.value; "
	       "leave it out here\n"
	       "m.yaml:11:5: employees.terminated.move_to: required with action: move\n"
	       "m.yaml:12:29: employees.terminated.attributes.employeeNumber: cannot be changed on termination "
	       "(objectClass, the key and the RDN attribute stay as they are)\n");
}

static void test_option_scope_and_termination_mistakes(void **state)
{
	(void)state;
	expect(HEAD
	       "  only_if: { 'a b': [1], legal_entity_id: { x: 1 } }\n"
	       "  attributes:\n"
	       "    uid: { unique: true }\n"
	       "    cn: { value: x, max_length: many }\n"
	       "    sn: { value: { nested: x } }\n"
	       "    9bad: x\n"
	       "  terminated:\n"
	       "    action: lock\n"
	       "    move_to: nowhere\n"
	       "    remove_from_groups: 1\n"
	       "    attributes: { description: { value: x }, 'no way': y }\n",
	       "m.yaml:7:14: employees.only_if.a b: \"a b\" is not a field name (a or a.b)\n"
	       "m.yaml:7:43: employees.only_if.legal_entity_id: expected a value or a list of values, got a mapping\n"
	       "m.yaml:9:10: employees.attributes.uid: value is missing\n"
	       "m.yaml:10:33: employees.attributes.cn.max_length: expected a number of characters from 1 to 65535\n"
	       "m.yaml:11:18: employees.attributes.sn.value: expected a template string, got a mapping\n"
	       "m.yaml:12:5: employees.attributes: \"9bad\" is not an attribute name\n"
	       "m.yaml:14:13: employees.terminated.action: \"lock\" is not one of disable | move | delete\n"
	       "m.yaml:15:14: employees.terminated.move_to: \"nowhere\" is not a valid DN\n"
	       "m.yaml:16:25: employees.terminated.remove_from_groups: expected true or false, got \"1\"\n"
	       "m.yaml:17:32: employees.terminated.attributes.description: expected a template or a list of "
	       "templates, got a mapping\n"
	       "m.yaml:17:46: employees.terminated.attributes: \"no way\" is not an attribute name\n");
}

static void test_whole_file_mistakes(void **state)
{
	(void)state;
	expect("", "m.yaml: the file is empty\n");
	expect("version: 1\n", "m.yaml:1:1: give employees, teams or both\n");
	expect("version: 1\nemployees: [a]\n", "m.yaml:2:12: employees: expected a mapping, got a list\n");
	expect("employees:\n  base: [\n",
	       "m.yaml:3:1: YAML syntax error: did not find expected node content while parsing a flow node\n");
}

/* ---- evaluation ------------------------------------------------------- */

static struct mapping *good_mapping(void)
{
	struct mapping *m = NULL;
	char *errs = load(HEAD
	                  "  only_if: { legal_entity_id: [1, 2] }\n"
	                  "  attributes:\n"
	                  "    uid: { value: \"{first_name|slug}.{last_name|slug}\", unique: true, create_only: true }\n"
	                  "    cn: \"{full_name}\"\n"
	                  "    sn: \"{last_name}\"\n"
	                  "    mail: { value: \"{login_email|lower}\", required: true }\n"
	                  "    homeDirectory: \"/home/{@uid}\"\n"
	                  "    short: { value: \"{last_name|lower}\", unique: true, max_length: 4 }\n"
	                  "    loginShell: /bin/bash\n"
	                  "    description: [\"{title}\", \"employee {id}\", \"{title}\"]\n"
	                  "  terminated:\n"
	                  "    action: move\n"
	                  "    move_to: ou=former,dc=example,dc=com\n"
	                  "    attributes: { loginShell: /usr/sbin/nologin, description: \"left {terminated_on}, was {@uid}\" }\n",
	                  &m);
	assert_string_equal(errs, "");
	free(errs);
	return m;
}

struct world {
	struct strmap taken;
	const char *existing_uid;
};

static int w_taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	struct world *w = ctx;
	char k[512];
	(void)err;
	snprintf(k, sizeof(k), "%s=%s", attr, value);
	return strmap_get(&w->taken, k) != NULL;
}

static int w_existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err)
{
	struct world *w = ctx;
	(void)err;
	if (!w->existing_uid)
		return 0;
	if (strcmp(attr, "uid") == 0)
		vlist_push_copy(out, w->existing_uid, strlen(w->existing_uid));
	return 1;
}

static const struct vlist *values(const struct mapping_result *r, const char *attr)
{
	for (size_t i = 0; i < r->nvalues; i++)
		if (strcmp(r->values[i].attr->name, attr) == 0)
			return &r->values[i].values;
	return NULL;
}

static int eval_json(struct mapping *m, const char *json, struct world *w, struct mapping_result *r)
{
	struct mapping_hooks h = { .taken = w_taken, .existing = w_existing, .ctx = w, .today = "2026-11-27" };
	cJSON *rec = cJSON_Parse(json);
	int rc;

	assert_non_null(rec);
	rc = mapping_eval(m, MAPPING_EMPLOYEE, rec, &h, r);
	cJSON_Delete(rec);
	return rc;
}

static int w_no_employee(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	(void)ctx, (void)id, (void)err;
	*dn = NULL;
	return 0; /* no entry for any id */
}

/* An attribute that notes unresolved ids and then fails: the result frees cleanly. */
static void test_unresolved_ids_then_a_failing_step(void **state)
{
	struct mapping *m = NULL;
	struct mapping_hooks h = { .employee_dn = w_no_employee, .today = "2026-11-27" };
	struct mapping_result r;
	cJSON *rec;
	char *errs = load(HEAD
	                  "  attributes:\n"
	                  "    uid: \"{first_name}\"\n"
	                  "    description: \"{manager_ids|employee_dn}{birthday_on|date('%Y')}\"\n",
	                  &m);

	(void)state;
	assert_string_equal(errs, "");
	free(errs);
	rec = cJSON_Parse("{\"id\": 3, \"first_name\": \"ana\", \"manager_ids\": [91, 92, 93, 94, 95],"
	                  " \"birthday_on\": \"not a date\"}");
	assert_non_null(rec);
	assert_int_equal(mapping_eval(m, MAPPING_EMPLOYEE, rec, &h, &r), -1);
	assert_string_equal(sbuf_str(&r.error), "description: date: \"not a date\" is not an ISO 8601 date or timestamp");
	mapping_result_free(&r);
	cJSON_Delete(rec);
	mapping_free(m);
}

static void test_eval_active_entry(void **state)
{
	struct mapping *m = good_mapping();
	struct world w = { .existing_uid = NULL };
	struct mapping_result r;
	const struct vlist *v;

	(void)state;
	strmap_init(&w.taken);
	assert_int_equal(eval_json(m, "{\"id\": 7, \"first_name\": \"Zo\\u00eb\", \"last_name\": \"M\\u00fcller\","
	                              " \"full_name\": \"Zo\\u00eb M\\u00fcller\", \"login_email\": \"Zoe@Example.com\","
	                              " \"legal_entity_id\": 2, \"title\": \"Designer\"}",
	                         &w, &r),
	                 0);
	assert_int_equal(r.state, MAPPING_ACTIVE);
	assert_string_equal(r.dn, "uid=zoe.muller,ou=people,dc=example,dc=com");
	assert_string_equal(r.key_value, "7");
	assert_string_equal(r.values[0].attr->name, "employeeNumber"); /* the implicit key comes first */
	assert_string_equal(values(&r, "mail")->v[0], "zoe@example.com");
	assert_string_equal(values(&r, "homeDirectory")->v[0], "/home/zoe.muller");
	assert_string_equal(values(&r, "short")->v[0], "müll");
	v = values(&r, "description");
	assert_int_equal(v->n, 2);
	assert_string_equal(v->v[0], "Designer");
	assert_string_equal(v->v[1], "employee 7");
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_eval_when(void **state)
{
	struct mapping *m = NULL;
	struct world w = { 0 };
	struct mapping_result r;
	char *errs = load(HEAD "  attributes:\n"
	                       "    uid: \"{first_name|lower}\"\n"
	                       "    l: { value: Paris, when: { legal_entity_id: 2 } }\n"
	                       "    title: { value: \"{job_title}\", when: { legal_entity_id: [2, 3], team_ids: 7 }, "
	                       "required: true }\n",
	                  &m);

	(void)state;
	assert_string_equal(errs, "");
	free(errs);
	strmap_init(&w.taken);
	/* both conditions hold: set (and required) */
	assert_int_equal(eval_json(m, "{\"id\": 1, \"first_name\": \"Ana\", \"legal_entity_id\": 2, \"team_ids\": [5, 7],"
	                              " \"job_title\": \"Chef\"}", &w, &r), 0);
	assert_string_equal(values(&r, "l")->v[0], "Paris");
	assert_string_equal(values(&r, "title")->v[0], "Chef");
	mapping_result_free(&r);
	/* not: absent, and required asks nothing of an attribute whose condition does not hold */
	assert_int_equal(eval_json(m, "{\"id\": 2, \"first_name\": \"Bo\", \"legal_entity_id\": 1, \"team_ids\": [7]}",
	                           &w, &r), 0);
	assert_int_equal(values(&r, "l")->n, 0);
	assert_int_equal(values(&r, "title")->n, 0);
	mapping_result_free(&r);
	/* the condition holds and the value is empty: required refuses the record */
	assert_int_equal(eval_json(m, "{\"id\": 3, \"first_name\": \"Cy\", \"legal_entity_id\": 3, \"team_ids\": [7]}",
	                           &w, &r), -1);
	assert_string_equal(sbuf_str(&r.error), "title: required, but \"{job_title}\" is empty");
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
	expect(HEAD "  attributes:\n"
	            "    uid: \"{first_name}\"\n"
	            "    l: { value: x, when: { salary_amount: 1 } }\n"
	            "    o: { value: y, when: [legal_entity_id] }\n",
	       "m.yaml:9:28: employees.attributes.l.when.salary_amount: salary_amount: bank, social security and salary "
	       "fields are never kept or read by the agent\n"
	       "m.yaml:10:26: employees.attributes.o.when: expected a mapping, got a list\n");
}

static void test_eval_first(void **state)
{
	struct mapping *m = NULL;
	struct world w = { 0 };
	struct mapping_result r;
	char *errs = load(HEAD "  attributes:\n"
	                       "    uid: \"{first_name|lower}\"\n"
	                       "    displayName:\n"
	                       "      first:\n"
	                       "        - \"{preferred_name} {last_name}\"\n"
	                       "        - { value: \"{first_name} {last_name} (FR)\", when: { legal_entity_id: 2 } }\n"
	                       "        - \"{first_name} {last_name}\"\n"
	                       "    o: { first: [\"{company}\", \"{@uid}-co\"] }\n",
	                  &m);

	(void)state;
	assert_string_equal(errs, "");
	free(errs);
	strmap_init(&w.taken);
	/* the first alternative gives a value whole */
	assert_int_equal(eval_json(m, "{\"id\": 1, \"first_name\": \"Ana\", \"preferred_name\": \"Anita\", "
	                              "\"last_name\": \"Gil\", \"legal_entity_id\": 2, \"company\": \"ACME\"}", &w, &r), 0);
	assert_string_equal(values(&r, "displayName")->v[0], "Anita Gil");
	assert_string_equal(values(&r, "o")->v[0], "ACME");
	mapping_result_free(&r);
	/* no preferred name: not " Gil", the next alternative whose condition holds */
	assert_int_equal(eval_json(m, "{\"id\": 2, \"first_name\": \"Bo\", \"preferred_name\": null, "
	                              "\"last_name\": \"Gil\", \"legal_entity_id\": 2}", &w, &r), 0);
	assert_string_equal(values(&r, "displayName")->v[0], "Bo Gil (FR)");
	assert_int_equal(values(&r, "displayName")->n, 1);
	assert_string_equal(values(&r, "o")->v[0], "bo-co"); /* {@uid} in an alternative */
	mapping_result_free(&r);
	assert_int_equal(eval_json(m, "{\"id\": 3, \"first_name\": \"Cy\", \"last_name\": \"Gil\", \"legal_entity_id\": 1}",
	                           &w, &r), 0);
	assert_string_equal(values(&r, "displayName")->v[0], "Cy Gil");
	mapping_result_free(&r);
	/* none applies: absent */
	assert_int_equal(eval_json(m, "{\"id\": 4, \"first_name\": \"Di\", \"legal_entity_id\": 1}", &w, &r), 0);
	assert_int_equal(values(&r, "displayName")->n, 0);
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
	expect(HEAD "  attributes:\n"
	            "    uid: { first: [\"{a}\"], unique: true }\n"
	            "    cn: { value: x, first: [y] }\n"
	            "    sn: { first: [] }\n"
	            "    o: { first: [{ when: { a: 1 } }, { value: z, colour: red }] }\n",
	       "m.yaml:8:36: employees.attributes.uid: first and unique do not go together: for candidates tried in "
	       "turn, give unique a list of templates as value\n"
	       "m.yaml:9:9: employees.attributes.cn: give value or first, not both\n"
	       "m.yaml:10:18: employees.attributes.sn.first: expected a list of alternatives (templates, or { value, "
	       "when })\n"
	       "m.yaml:11:18: employees.attributes.o.first: an alternative needs its value\n"
	       "m.yaml:11:50: employees.attributes.o.first.colour: unknown key\n");
}

static void test_eval_unique_candidates(void **state)
{
	struct mapping *m = NULL;
	struct world w = { 0 };
	const char *want[] = { "jdoe", "john.doe", "jdoe2", "jdoe3" };
	char *errs = load(HEAD "  attributes:\n"
	                       "    uid:\n"
	                       "      value: [\"{first_name|truncate(1)|lower}{last_name|lower}\", \"{first_name|lower}.{last_name|lower}\"]\n"
	                       "      unique: true\n",
	                  &m);

	(void)state;
	assert_string_equal(errs, "");
	free(errs);
	strmap_init(&w.taken);
	/* jdoe, then john.doe, then numbers on the first: one value each time */
	for (int i = 0; i < 4; i++) {
		struct mapping_result r;
		char json[160], k[128];
		snprintf(json, sizeof(json), "{\"id\": %d, \"first_name\": \"John\", \"last_name\": \"Doe\"}", i + 1);
		assert_int_equal(eval_json(m, json, &w, &r), 0);
		assert_int_equal(values(&r, "uid")->n, 1);
		assert_string_equal(values(&r, "uid")->v[0], want[i]);
		snprintf(k, sizeof(k), "uid=%s", values(&r, "uid")->v[0]);
		strmap_put(&w.taken, k, NULL);
		mapping_result_free(&r);
	}
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_base_as_a_template(void **state)
{
	struct mapping *m = NULL;
	struct world w = { 0 };
	struct mapping_result r;
	char *errs;

	(void)state;
	expect("version: 1\nemployees:\n"
	       "  base: \"ou={city},ou=people,dc=example,dc=com\"\n"
	       "  key: { attribute: employeeNumber, value: \"{id}\" }\n  rdn: uid\n"
	       "  object_classes: [inetOrgPerson]\n  attributes:\n    uid: \"{first_name}\"\n",
	       "m.yaml:3:3: employees.search_base: required when base is a template (where the agent looks for "
	       "entries)\n");
	errs = load("version: 1\nemployees:\n"
	            "  base: \"ou={city},ou=people,dc=example,dc=com\"\n  search_base: dc=example,dc=com\n"
	            "  key: { attribute: employeeNumber, value: \"{id}\" }\n  rdn: uid\n"
	            "  object_classes: [inetOrgPerson]\n  attributes:\n    uid: \"{first_name}\"\n",
	            &m);
	assert_string_equal(errs, "");
	free(errs);
	strmap_init(&w.taken);
	assert_int_equal(eval_json(m, "{\"id\": 1, \"first_name\": \"ana\", \"city\": \"Lyon\"}", &w, &r), 0);
	assert_string_equal(r.dn, "uid=ana,ou=Lyon,ou=people,dc=example,dc=com");
	assert_string_equal(r.base, "ou=Lyon,ou=people,dc=example,dc=com");
	mapping_result_free(&r);
	/* no city: no base */
	assert_int_equal(eval_json(m, "{\"id\": 2, \"first_name\": \"bo\"}", &w, &r), -1);
	assert_string_equal(sbuf_str(&r.error), "base ou=\"{city}\",ou=people,dc=example,dc=com gives no value");
	mapping_result_free(&r);
	/* a value cannot change the DN's shape: it is escaped */
	assert_int_equal(eval_json(m, "{\"id\": 3, \"first_name\": \"cy\", \"city\": \"x,dc=evil,dc=org\"}", &w, &r), 0);
	assert_string_equal(r.dn, "uid=cy,ou=x\\2Cdc\\3Devil\\2Cdc\\3Dorg,ou=people,dc=example,dc=com");
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_eval_unique_three_ana_garcia(void **state)
{
	struct mapping *m = good_mapping();
	struct world w = { 0 };
	const char *want_uid[] = { "ana.garcia", "ana.garcia2", "ana.garcia3" };
	const char *want_short[] = { "garc", "gar2", "gar3" };

	(void)state;
	strmap_init(&w.taken);
	for (int i = 0; i < 3; i++) {
		struct mapping_result r;
		char json[256], k[128];
		snprintf(json, sizeof(json),
		         "{\"id\": %d, \"first_name\": \"Ana\", \"last_name\": \"Garc\\u00eda\", \"full_name\": \"Ana\","
		         " \"login_email\": \"ana%d@example.com\", \"legal_entity_id\": 1}",
		         i + 1, i);
		assert_int_equal(eval_json(m, json, &w, &r), 0);
		assert_string_equal(values(&r, "uid")->v[0], want_uid[i]);
		assert_string_equal(values(&r, "homeDirectory")->v[0], strcmp(want_uid[i], "ana.garcia") == 0
		                                                            ? "/home/ana.garcia"
		                                                            : (i == 1 ? "/home/ana.garcia2" : "/home/ana.garcia3"));
		assert_string_equal(values(&r, "short")->v[0], want_short[i]);
		snprintf(k, sizeof(k), "uid=%s", values(&r, "uid")->v[0]);
		strmap_put(&w.taken, k, NULL);
		snprintf(k, sizeof(k), "short=%s", values(&r, "short")->v[0]);
		strmap_put(&w.taken, k, NULL);
		mapping_result_free(&r);
	}
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_eval_create_only_keeps_existing(void **state)
{
	struct mapping *m = good_mapping();
	struct world w = { .existing_uid = "jnunez" };
	struct mapping_result r;

	(void)state;
	strmap_init(&w.taken);
	strmap_put(&w.taken, "uid=jnunez", NULL); /* held by this very entry: no suffix */
	assert_int_equal(eval_json(m, "{\"id\": 2, \"first_name\": \"Jos\\u00e9\", \"last_name\": \"N\\u00fa\\u00f1ez\","
	                              " \"login_email\": \"j@example.com\", \"legal_entity_id\": 1}",
	                         &w, &r),
	                 0);
	assert_string_equal(values(&r, "uid")->v[0], "jnunez");
	assert_string_equal(values(&r, "homeDirectory")->v[0], "/home/jnunez");
	assert_string_equal(r.dn, "uid=jnunez,ou=people,dc=example,dc=com");
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_eval_scope_and_termination(void **state)
{
	struct mapping *m = good_mapping();
	struct world w = { 0 };
	struct mapping_result r;

	(void)state;
	strmap_init(&w.taken);
	assert_int_equal(eval_json(m, "{\"id\": 3, \"legal_entity_id\": 3, \"first_name\": \"A\"}", &w, &r), 0);
	assert_int_equal(r.state, MAPPING_OUT_OF_SCOPE);
	assert_string_equal(r.scope_reason, "legal_entity_id 3 is not in 1, 2");
	assert_string_equal(r.key_value, "3");
	mapping_result_free(&r);

	assert_int_equal(eval_json(m, "{\"id\": 3, \"first_name\": \"A\"}", &w, &r), 0);
	assert_int_equal(r.state, MAPPING_OUT_OF_SCOPE);
	assert_string_equal(r.scope_reason, "legal_entity_id is empty, not in 1, 2");
	mapping_result_free(&r);

	/* terminated yesterday: moved, overrides applied, {@uid} sees the active value */
	assert_int_equal(eval_json(m, "{\"id\": \"8\", \"legal_entity_id\": \"1\", \"first_name\": \"\\u00d8yvind\","
	                              " \"last_name\": \"\\u00c6r\\u00f8\", \"login_email\": \"o@example.com\","
	                              " \"terminated_on\": \"2026-11-26\"}",
	                         &w, &r),
	                 0);
	assert_int_equal(r.state, MAPPING_TERMINATED);
	assert_int_equal(r.action, MAPPING_MOVE);
	assert_string_equal(r.dn, "uid=oyvind.aero,ou=former,dc=example,dc=com");
	assert_string_equal(r.active_dn, "uid=oyvind.aero,ou=people,dc=example,dc=com");
	assert_string_equal(values(&r, "loginShell")->v[0], "/usr/sbin/nologin");
	assert_int_equal(values(&r, "description")->n, 1);
	assert_string_equal(values(&r, "description")->v[0], "left 2026-11-26, was oyvind.aero");
	mapping_result_free(&r);

	/* terminated today counts; tomorrow does not yet; active false does */
	assert_int_equal(eval_json(m, "{\"id\": 9, \"legal_entity_id\": 1, \"first_name\": \"a\", \"last_name\": \"b\","
	                              " \"login_email\": \"x@y\", \"terminated_on\": \"2026-11-27\"}",
	                         &w, &r),
	                 0);
	assert_int_equal(r.state, MAPPING_TERMINATED);
	mapping_result_free(&r);
	assert_int_equal(eval_json(m, "{\"id\": 9, \"legal_entity_id\": 1, \"first_name\": \"a\", \"last_name\": \"b\","
	                              " \"login_email\": \"x@y\", \"terminated_on\": \"2026-11-28\"}",
	                         &w, &r),
	                 0);
	assert_int_equal(r.state, MAPPING_ACTIVE);
	assert_string_equal(r.terminated_on, "2026-11-28");
	mapping_result_free(&r);
	assert_int_equal(eval_json(m, "{\"id\": 9, \"legal_entity_id\": 1, \"first_name\": \"a\", \"last_name\": \"b\","
	                              " \"login_email\": \"x@y\", \"active\": false}",
	                         &w, &r),
	                 0);
	assert_int_equal(r.state, MAPPING_TERMINATED);
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_eval_record_errors(void **state)
{
	struct mapping *m = good_mapping();
	struct world w = { 0 };
	struct mapping_result r;

	(void)state;
	strmap_init(&w.taken);
	assert_int_equal(eval_json(m, "{\"id\": 10, \"legal_entity_id\": 1, \"first_name\": \"a\", \"last_name\": \"b\","
	                              " \"login_email\": null}",
	                         &w, &r),
	                 -1);
	assert_string_equal(r.id, "10");
	assert_string_equal(sbuf_str(&r.error), "mail: required, but \"{login_email|lower}\" is empty: login_email is null "
	                                        "(Factorial sends such fields null to a token of a user who is not an "
	                                        "administrator)");
	mapping_result_free(&r);
	/* a field the record lacks is no sign of a restricted token */
	assert_int_equal(eval_json(m, "{\"id\": 10, \"legal_entity_id\": 1, \"first_name\": \"a\", \"last_name\": \"b\"}",
	                           &w, &r),
	                 -1);
	assert_string_equal(sbuf_str(&r.error), "mail: required, but \"{login_email|lower}\" is empty");
	mapping_result_free(&r);

	assert_int_equal(eval_json(m, "{\"legal_entity_id\": 1}", &w, &r), -1);
	assert_string_equal(r.id, "?");
	assert_string_equal(sbuf_str(&r.error), "key employeeNumber: \"{id}\" gives no value");
	mapping_result_free(&r);

	assert_int_equal(eval_json(m, "{\"id\": 12, \"legal_entity_id\": 1, \"login_email\": \"x@y\"}", &w, &r), -1);
	assert_string_equal(sbuf_str(&r.error), "rdn uid: \"{first_name|slug}.{last_name|slug}\" gives no value");
	mapping_result_free(&r);
	strmap_free(&w.taken);
	mapping_free(m);
}

static void test_invalid_utf8_bytes(void **state)
{
	struct mapping *m = good_mapping();
	struct mapping_result r;
	struct mapping_hooks h = { .today = "2026-11-27" };
	cJSON *rec = cJSON_Parse("{\"id\": 1, \"legal_entity_id\": 1, \"first_name\": \"ok\"}");

	(void)state;
	cJSON_ReplaceItemInObject(rec, "first_name", cJSON_CreateString("bad \xC3\x28 byte"));
	assert_int_equal(mapping_eval(m, MAPPING_EMPLOYEE, rec, &h, &r), -1);
	assert_string_equal(sbuf_str(&r.error), "field first_name is not valid UTF-8");
	mapping_result_free(&r);
	cJSON_Delete(rec);
	mapping_free(m);
}

static void test_dn_escaping_round_trips(void **state)
{
	static const char *values[] = {
		"Smith, Jr.", "a+b", "quote\"d", "back\\slash", "<angle>", "semi;colon", "eq=ual",
		"#hash", " leading space", "trailing space ", "José Núñez", "王小明", "*)(uid=*",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		char *dn = NULL, *back, err[256];
		assert_int_equal(dn_build("cn", values[i], "ou=people,dc=example,dc=com", &dn, err, sizeof(err)), 0);
		assert_true(dn_valid(dn));
		back = dn_rdn_value(dn);
		if (!back || strcmp(back, values[i]) != 0)
			fail_msg("\"%s\" -> %s -> \"%s\"", values[i], dn, back ? back : "(null)");
		assert_non_null(strstr(dn, ",ou=people,dc=example,dc=com"));
		free(back);
		free(dn);
	}
	{
		/* an RDN whose value is empty (found by fuzz_mapping): libldap gives it no bv_val at all */
		char *back = dn_rdn_value("cn=,dc=com");
		assert_non_null(back);
		assert_string_equal(back, "");
		free(back);
	}
	{
		char *dn = NULL, err[256];
		assert_int_equal(dn_build("cn", "Smith, Jr.", "ou=people,dc=example,dc=com", &dn, err, sizeof(err)), 0);
		assert_string_equal(dn, "cn=Smith\\2C Jr.,ou=people,dc=example,dc=com");
		free(dn);
		assert_int_equal(dn_build("cn", "", "dc=x", &dn, err, sizeof(err)), -1);
		assert_true(dn_equal("UID=a, OU=People,dc=example,dc=com", "uid=a,ou=people,dc=example,dc=com"));
		assert_false(dn_equal("uid=a,ou=people,dc=example,dc=com", "uid=b,ou=people,dc=example,dc=com"));
	}
}

static void test_groups_by_rule_mistakes(void **state)
{
	(void)state;
	/* every mistake at its place */
	expect(HEAD "  attributes:\n    uid: \"{first_name}\"\n"
	       "groups:\n"
	       "  offices:\n"
	       "    dn: \"cn=office-{location_id|map(sites)},ou=groups,dc=example,dc=com\"\n"
	       "  fixed:\n"
	       "    dn: ou=groups\n"
	       "    object_classes: [top, posixGroup]\n"
	       "  shapes:\n"
	       "    dn: \"cn={a},{b},dc=example,dc=com\"\n"
	       "    member_attribute: \"bad name\"\n"
	       "    empty_member: cn=nobody\n"
	       "    colour: blue\n"
	       "  plain:\n"
	       "    dn: \"cn=x+ou=y,dc=example,dc=com\"\n"
	       "    key: { attribute: description }\n"
	       "    when: { bank_number: 1 }\n"
	       "    empty_member: cn=nobody\n"
	       "  attr:\n"
	       "    dn: \"cn={@uid},dc=example,dc=com\"\n"
	       "    empty_member: cn=nobody\n",
	       "m.yaml:11:5: groups.offices.empty_member: required with groupOfNames, which must keep one member: the "
	       "value a group keeps when its last member leaves (empty_member: \"cn=nobody\")\n"
	       "m.yaml:11:20: groups.offices.dn: map: no table \"sites\" in tables:\n"
	       "m.yaml:13:9: groups.fixed.dn: \"ou=groups\": a group's DN is ATTR=VALUE under a parent DN\n"
	       "m.yaml:16:9: groups.shapes.dn: a DN template is ATTR={template},DN: only the first RDN's value may "
	       "come from the record (\"ou={location_id|map(sites)},ou=people,dc=example,dc=com\")\n"
	       "m.yaml:17:23: groups.shapes.member_attribute: \"bad name\" is not an attribute name\n"
	       "m.yaml:19:5: groups.shapes.colour: unknown key\n"
	       "m.yaml:21:9: groups.plain.dn: \"cn=x+ou=y,dc=example,dc=com\": a group's DN is ATTR=VALUE under a parent "
	       "DN\n"
	       "m.yaml:22:10: groups.plain.key.value: required key is missing\n"
	       "m.yaml:23:13: groups.plain.when.bank_number: bank_number: bank, social security and salary fields are "
	       "never kept or read by the agent\n"
	       "m.yaml:26:9: groups.attr.dn: a DN template cannot use {@attr}: it comes from the record\n");
	expect("version: 1\nteams:\n  base: ou=groups,dc=example,dc=com\n"
	       "  key: { attribute: businessCategory, value: \"t{id}\" }\n  rdn: cn\n  object_classes: [groupOfNames]\n"
	       "  attributes:\n    cn: \"{name}\"\n"
	       "groups:\n  all:\n    dn: cn=all,dc=example,dc=com\n    empty_member: cn=nobody\n",
	       "m.yaml:10:3: groups: the members of rule groups are employees: give employees too\n");
}

static void test_groups_by_rule(void **state)
{
	struct mapping *m = NULL;
	struct mapping_membership *g = NULL;
	struct sbuf err;
	cJSON *rec;
	size_t n = 0;
	char *errs;

	(void)state;
	/* evaluation: one group per value, each DN once, a condition, values escaped */
	errs = load("version: 1\ntables: { sites: { 1: madrid, 2: paris } }\n" EMPLOYEES
	            "  attributes:\n    uid: \"{first_name}\"\n"
	            "groups:\n"
	            "  offices:\n"
	            "    dn: \"cn=office-{location_ids|map(sites, 'remote')},ou=groups,dc=example,dc=com\"\n"
	            "    empty_member: cn=nobody\n"
	            "  france:\n"
	            "    dn: cn=staff-fr,ou=groups,dc=example,dc=com\n"
	            "    when: { legal_entity_id: 2 }\n"
	            "    object_classes: [top, groupOfUniqueNames]\n"
	            "    member_attribute: uniqueMember\n"
	            "    empty_member: cn=nobody\n"
	            "    key: { attribute: description, value: managed }\n"
	            "  titles:\n"
	            "    dn: \"cn={title},ou=groups,dc=example,dc=com\"\n"
	            "    object_classes: [top, groupOfMembers]\n",
	            &m);
	assert_string_equal(errs, "");
	free(errs);
	assert_int_equal(m->ngroups, 3);
	assert_string_equal(m->groups[0].key_attr, "businessCategory");
	assert_string_equal(m->groups[0].key_value, "factorial-group-offices");
	assert_string_equal(m->groups[1].key_value, "managed");
	assert_null(m->groups[2].empty_member);
	sbuf_init(&err);
	rec = cJSON_Parse("{\"id\": 1, \"location_ids\": [1, 2, 1, 9], \"legal_entity_id\": 2, \"title\": \"R&D, Lab\"}");
	assert_int_equal(mapping_groups_of(m, rec, &g, &n, &err), 0);
	assert_int_equal(n, 5);
	assert_string_equal(g[0].dn, "cn=office-madrid,ou=groups,dc=example,dc=com");
	assert_string_equal(g[0].value, "office-madrid");
	assert_string_equal(g[1].dn, "cn=office-paris,ou=groups,dc=example,dc=com");
	assert_string_equal(g[2].dn, "cn=office-remote,ou=groups,dc=example,dc=com");
	assert_string_equal(g[3].dn, "cn=staff-fr,ou=groups,dc=example,dc=com");
	assert_ptr_equal(g[3].rule, &m->groups[1]);
	assert_string_equal(g[4].dn, "cn=R&D\\2C Lab,ou=groups,dc=example,dc=com");
	mapping_memberships_free(g, n);
	cJSON_Delete(rec);
	/* the condition does not hold, no title: only the office */
	rec = cJSON_Parse("{\"id\": 2, \"location_ids\": 2, \"legal_entity_id\": 1}");
	assert_int_equal(mapping_groups_of(m, rec, &g, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(g[0].dn, "cn=office-paris,ou=groups,dc=example,dc=com");
	mapping_memberships_free(g, n);
	cJSON_Delete(rec);
	sbuf_free(&err);
	mapping_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_contract_example),
		cmocka_unit_test(test_unknown_keys_filters_arguments),
		cmocka_unit_test(test_translit_ids_checked_when_loading),
		cmocka_unit_test(test_unresolved_ids_then_a_failing_step),
		cmocka_unit_test(test_team_member_attribute_reads_no_other_attribute),
		cmocka_unit_test(test_sensitive_fields_are_refused),
		cmocka_unit_test(test_attr_references),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_a_large_table_loads_in_linear_time),
		cmocka_unit_test(test_rdn_key_and_structure),
		cmocka_unit_test(test_rdn_not_among_attributes),
		cmocka_unit_test(test_option_scope_and_termination_mistakes),
		cmocka_unit_test(test_whole_file_mistakes),
		cmocka_unit_test(test_eval_active_entry),
		cmocka_unit_test(test_eval_when),
		cmocka_unit_test(test_eval_first),
		cmocka_unit_test(test_eval_unique_candidates),
		cmocka_unit_test(test_base_as_a_template),
		cmocka_unit_test(test_groups_by_rule_mistakes),
		cmocka_unit_test(test_groups_by_rule),
		cmocka_unit_test(test_eval_unique_three_ana_garcia),
		cmocka_unit_test(test_eval_create_only_keeps_existing),
		cmocka_unit_test(test_eval_scope_and_termination),
		cmocka_unit_test(test_eval_record_errors),
		cmocka_unit_test(test_invalid_utf8_bytes),
		cmocka_unit_test(test_dn_escaping_round_trips),
	};
	return cmocka_run_group_tests_name("mapping", tests, tu_dir_setup, tu_dir_teardown);
}
