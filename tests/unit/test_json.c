/* Unit tests of json_parse: integers past 2^53 kept exact as strings, the
 * rest as cJSON reads it, positions said in the text given. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/json.h"

static cJSON *parse(const char *text, const char **end)
{
	return json_parse(text, strlen(text), end);
}

static void test_big_integers_exact(void **state)
{
	const char *text = "{\"id\": 18446744073709562, \"manager_id\": -36893488147419103, \"ids\": [1, 18446744073709550],"
	                   " \"small\": 9007199254740991, \"cents\": 12.5, \"e\": 1e20, \"s\": \"18446744073709562\","
	                   " \"esc\": \"a\\\"18446744073709562\"}";
	const char *end = NULL;
	cJSON *j = parse(text, &end);

	(void)state;
	assert_non_null(j);
	assert_ptr_equal(end, text + strlen(text));
	assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "18446744073709562");
	assert_string_equal(cJSON_GetObjectItem(j, "manager_id")->valuestring, "-36893488147419103");
	assert_true(cJSON_IsNumber(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0)));
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 1)->valuestring, "18446744073709550");
	/* fifteen digits and less, fractions and exponents: numbers, as before */
	assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "small"))); /* sixteen digits */
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "cents")));
	assert_true(cJSON_IsNumber(cJSON_GetObjectItem(j, "e")));
	/* inside strings nothing changes */
	assert_string_equal(cJSON_GetObjectItem(j, "s")->valuestring, "18446744073709562");
	assert_string_equal(cJSON_GetObjectItem(j, "esc")->valuestring, "a\"18446744073709562");
	cJSON_Delete(j);
}

static void test_positions_in_the_text_given(void **state)
{
	const char *text = "[18446744073709562, 18446744073709563]  trailing";
	const char *end = NULL;
	cJSON *j = parse(text, &end);

	(void)state;
	assert_non_null(j);
	assert_int_equal(end - text, strlen("[18446744073709562, 18446744073709563]"));
	cJSON_Delete(j);
	/* a mistake after a big integer is said where it is */
	text = "{\"id\": 18446744073709562, \"x\": }";
	assert_null(parse(text, &end));
	assert_int_equal(end - text, strlen("{\"id\": 18446744073709562, \"x\": "));
	/* without big integers: cJSON's own answer */
	j = parse("{\"a\": 1}", NULL);
	assert_int_equal(cJSON_GetObjectItem(j, "a")->valueint, 1);
	cJSON_Delete(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_big_integers_exact),
		cmocka_unit_test(test_positions_in_the_text_given),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
