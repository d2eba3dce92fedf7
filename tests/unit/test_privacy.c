/* Unit tests of privacy: which fields are sensitive, and the scrub. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "privacy.h"

static void test_names(void **state)
{
	(void)state;
	assert_true(privacy_sensitive("bank_number"));
	assert_true(privacy_sensitive("Bank_Account_Holder"));
	assert_true(privacy_sensitive("iban"));
	assert_true(privacy_sensitive("social_security_number"));
	assert_true(privacy_sensitive("salary_amount"));
	assert_true(privacy_sensitive("bic"));
	assert_false(privacy_sensitive("first_name"));
	assert_false(privacy_sensitive("banking")); /* a whole word, not the bank_ family */
	assert_false(privacy_sensitive("manager_id"));
}

static void test_scrub_at_any_depth(void **state)
{
	cJSON *j = cJSON_Parse("{\"id\": 1, \"bank_number\": \"ES91\", \"data\": {\"employee\": {\"first_name\": \"Ana\","
	                       " \"social_security_number\": \"2812\", \"salary_amount\": 5400000}},"
	                       " \"list\": [{\"iban\": \"DE89\", \"x\": 1}]}");
	char *text;

	(void)state;
	assert_non_null(j);
	assert_int_equal(privacy_scrub(j), 4);
	text = cJSON_PrintUnformatted(j);
	assert_string_equal(text, "{\"id\":1,\"data\":{\"employee\":{\"first_name\":\"Ana\"}},\"list\":[{\"x\":1}]}");
	assert_int_equal(privacy_scrub(j), 0);
	free(text);
	cJSON_Delete(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_scrub_at_any_depth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
