/* Unit tests of sbuf: appending, formatting, growing, truncating, detaching. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/sbuf.h"

static void test_append_and_format(void **state)
{
	struct sbuf b;

	(void)state;
	sbuf_init(&b);
	assert_string_equal(sbuf_str(&b), "");
	sbuf_adds(&b, "ab");
	sbuf_addc(&b, 'c');
	sbuf_add(&b, "dexx", 2);
	sbuf_addf(&b, "-%d-%s", 42, "x");
	assert_string_equal(sbuf_str(&b), "abcde-42-x");
	assert_int_equal(b.len, 10);
	assert_false(b.failed);
	sbuf_free(&b);
}

static void test_grows_past_any_first_size(void **state)
{
	struct sbuf b;
	char want[10001];

	(void)state;
	sbuf_init(&b);
	for (int i = 0; i < 10000; i++) {
		sbuf_addc(&b, (char)('a' + i % 26));
		want[i] = (char)('a' + i % 26);
	}
	want[10000] = '\0';
	assert_int_equal(b.len, 10000);
	assert_string_equal(sbuf_str(&b), want);
	sbuf_addf(&b, "%s", want);
	assert_int_equal(b.len, 20000);
	assert_int_equal(strlen(sbuf_str(&b)), 20000);
	sbuf_free(&b);
}

static void test_reset_truncate_detach(void **state)
{
	struct sbuf b;
	char *s;

	(void)state;
	sbuf_init(&b);
	sbuf_adds(&b, "hello world");
	sbuf_truncate(&b, 5);
	assert_string_equal(sbuf_str(&b), "hello");
	sbuf_truncate(&b, 99); /* longer than it is: nothing changes */
	assert_string_equal(sbuf_str(&b), "hello");
	sbuf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(sbuf_str(&b), "");
	sbuf_adds(&b, "kept");
	s = sbuf_detach(&b);
	assert_string_equal(s, "kept");
	assert_int_equal(b.len, 0);
	free(s);
	s = sbuf_detach(&b); /* an empty buffer detaches as "" */
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	sbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_format),
		cmocka_unit_test(test_grows_past_any_first_size),
		cmocka_unit_test(test_reset_truncate_detach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
