/* Unit tests of ids: canonical decimal text, ids taken from JSON exactly,
 * the form each API version sends them in. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "ids.h"

static void test_canonical(void **state)
{
	(void)state;
	assert_true(ids_canonical("0"));
	assert_true(ids_canonical("7"));
	assert_true(ids_canonical("18446744073709562"));
	assert_false(ids_canonical(""));
	assert_false(ids_canonical("01"));
	assert_false(ids_canonical("1 "));
	assert_false(ids_canonical(" 1"));
	assert_false(ids_canonical("+1"));
	assert_false(ids_canonical("-1"));
	assert_false(ids_canonical("1.0"));
	assert_false(ids_canonical("\xef\xbc\x91")); /* full-width 1 */
	assert_false(ids_canonical("1\xef\xbc\x90"));
	assert_false(ids_canonical(NULL));
}

static void test_text_from_json(void **state)
{
	const char *text = "{\"a\": \"18446744073709562\", \"b\": 18446744073709563, \"c\": 42, \"d\": \"1 \","
	                   " \"e\": 1.5, \"f\": -3, \"g\": null, \"h\": \"\\uff11\", \"i\": true}";
	cJSON *j = json_parse(text, strlen(text), NULL);
	struct sbuf why;
	char *t;

	(void)state;
	sbuf_init(&why);
	assert_string_equal(t = ids_text(cJSON_GetObjectItem(j, "a"), &why), "18446744073709562");
	free(t);
	/* a number past 2^53, exact: json_parse kept its text */
	assert_string_equal(t = ids_text(cJSON_GetObjectItem(j, "b"), &why), "18446744073709563");
	free(t);
	assert_string_equal(t = ids_text(cJSON_GetObjectItem(j, "c"), &why), "42");
	free(t);
	assert_null(ids_text(cJSON_GetObjectItem(j, "g"), &why));
	assert_int_equal(why.len, 0); /* null: no id, and no mistake */
	assert_null(ids_text(cJSON_GetObjectItem(j, "d"), &why));
	assert_string_equal(sbuf_str(&why), "\"1 \" is not an id: ids are decimal digits, without sign, spaces or "
	                                    "leading zeros");
	sbuf_reset(&why);
	assert_null(ids_text(cJSON_GetObjectItem(j, "e"), &why));
	assert_null(ids_text(cJSON_GetObjectItem(j, "f"), &why));
	assert_null(ids_text(cJSON_GetObjectItem(j, "h"), &why));
	assert_null(ids_text(cJSON_GetObjectItem(j, "i"), &why));
	sbuf_free(&why);
	cJSON_Delete(j);
}

static void test_records_checked(void **state)
{
	const char *good = "{\"id\": \"18446744073709562\", \"manager_id\": null, \"employee_ids\": [\"1\", 2],"
	                   " \"name\": \"Ops 01\"}";
	const char *bad = "{\"id\": \"5\", \"employee_ids\": [\"1\", \"02\"]}";
	cJSON *g = json_parse(good, strlen(good), NULL), *b = json_parse(bad, strlen(bad), NULL);
	struct sbuf why;

	(void)state;
	sbuf_init(&why);
	assert_int_equal(ids_check(g, &why), 0);
	assert_int_equal(ids_check(b, &why), -1);
	assert_string_equal(sbuf_str(&why), "employee_ids: \"02\" is not an id: ids are decimal digits, without sign, "
	                                    "spaces or leading zeros");
	sbuf_free(&why);
	cJSON_Delete(g);
	cJSON_Delete(b);
}

static void test_sent_as_the_version_wants(void **state)
{
	cJSON *s = ids_json("18446744073709551", "2026-07-01"), *n = ids_json("18446744073709551", "2026-04-01");
	char *a = cJSON_PrintUnformatted(s), *b = cJSON_PrintUnformatted(n);

	(void)state;
	assert_string_equal(a, "\"18446744073709551\"");
	assert_string_equal(b, "18446744073709551"); /* a number, written exactly */
	assert_true(ids_are_strings("2026-10-01"));
	assert_false(ids_are_strings("2026-04-01"));
	free(a);
	free(b);
	cJSON_Delete(s);
	cJSON_Delete(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_text_from_json),
		cmocka_unit_test(test_records_checked),
		cmocka_unit_test(test_sent_as_the_version_wants),
	};
	return cmocka_run_group_tests_name("ids", tests, NULL, NULL);
}
