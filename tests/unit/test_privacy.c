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

#define TEXT(s) s, sizeof(s) - 1

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
	/* spelled in any case, with any separator */
	assert_true(privacy_sensitive("bankNumber"));
	assert_true(privacy_sensitive("BANK-NUMBER"));
	assert_true(privacy_sensitive("Social.Security.Number"));
	assert_true(privacy_sensitive("socialSecurityNumber"));
	assert_true(privacy_sensitive("employee_iban"));
	assert_true(privacy_sensitive_n(TEXT("\0iban")));
	assert_true(privacy_sensitive_n(TEXT("ba\0nk_number")));
	/* Factorial's national id, tax ids, cards, health, emergency contacts */
	assert_true(privacy_sensitive("identifier"));
	assert_true(privacy_sensitive("identifier_type"));
	assert_true(privacy_sensitive("identifier_expiration_date"));
	assert_true(privacy_sensitive("tax_id"));
	assert_true(privacy_sensitive("taxIdentificationNumber"));
	assert_true(privacy_sensitive("company_tax_id"));
	assert_true(privacy_sensitive("swift_bic"));
	assert_true(privacy_sensitive("card_number"));
	assert_true(privacy_sensitive("credit_card"));
	assert_true(privacy_sensitive("disability_percentage_cents"));
	assert_true(privacy_sensitive("contact_name"));
	assert_true(privacy_sensitive("contact_number"));
	assert_true(privacy_sensitive("emergency_contact_phone"));
	assert_false(privacy_sensitive("company_identifier"));
	assert_false(privacy_sensitive("taxonomy"));
	assert_false(privacy_sensitive("cardinal"));
	assert_false(privacy_sensitive("login_email"));
}

static void test_nul(void **state)
{
	(void)state;
	assert_true(privacy_has_nul(TEXT("{\"\\u0000iban\": 1}")));
	assert_true(privacy_has_nul(TEXT("{\"a\": \"x\\u0000\"}")));
	assert_true(privacy_has_nul(TEXT("{\"a\": 1}\0")));
	assert_false(privacy_has_nul(TEXT("{\"a\": \"\\\\u0000\"}"))); /* a backslash, then text */
	assert_false(privacy_has_nul(TEXT("{\"a\": \"\\u0001\"}")));
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
		cmocka_unit_test(test_nul),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
