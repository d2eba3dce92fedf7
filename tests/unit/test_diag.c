/* Unit tests of diag: mistakes kept with their place, printed sorted. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/diag.h"

static void test_sorted_by_place(void **state)
{
	struct diag d;
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	char line[256];

	(void)state;
	diag_init(&d);
	diag_add(&d, "a.yaml", 9, 3, "ldap.uri", "not a URI: %s", "x");
	diag_add(&d, "a.yaml", 2, 15, "factorial.company_id", "expected an integer");
	diag_add(&d, "a.yaml", 0, 0, "mapping", "cannot read %s", "m.yaml");
	diag_add(&d, "a.yaml", 2, 4, "factorial", "unknown key");
	assert_int_equal(diag_count(&d), 4);
	diag_print(&d, fp);
	fclose(fp);
	assert_string_equal(text, "a.yaml: mapping: cannot read m.yaml\n"
	                          "a.yaml:2:4: factorial: unknown key\n"
	                          "a.yaml:2:15: factorial.company_id: expected an integer\n"
	                          "a.yaml:9:3: ldap.uri: not a URI: x\n");
	assert_true(diag_format(&d, 3, line, sizeof(line)) > 0);
	assert_string_equal(line, "a.yaml:9:3: ldap.uri: not a URI: x");
	free(text);
	diag_free(&d);
	assert_int_equal(diag_count(&d), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sorted_by_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
