/* Unit tests of secret files: permissions, trimming, constant-time compare. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "common/secret.h"
#include "testutil.h"

static void test_read_strips_one_newline(void **state)
{
	char *dir = tu_mkdtemp(), *p, err[512];
	struct secret s;

	(void)state;
	p = tu_write(dir, "a", 0600, "pa ss\r\n");
	assert_int_equal(secret_read_file(p, &s, err, sizeof(err)), 0);
	assert_string_equal(s.data, "pa ss");
	assert_int_equal(s.len, 5);
	secret_free(&s);
	assert_null(s.data);
	free(p);
	p = tu_write(dir, "b", 0400, "x\n\n");
	assert_int_equal(secret_read_file(p, &s, err, sizeof(err)), 0);
	assert_string_equal(s.data, "x\n");
	secret_free(&s);
	free(p);
	tu_rmtree(dir);
	free(dir);
}

static void test_refuses_open_modes(void **state)
{
	static const mode_t modes[] = { 0640, 0604, 0620, 0602, 0660, 0644, 0666 };
	char *dir = tu_mkdtemp(), err[512];

	(void)state;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct secret s;
		char *p = tu_write(dir, "s", modes[i], "value\n");
		char want[64];
		assert_int_equal(secret_check_file(p, err, sizeof(err)), -1);
		snprintf(want, sizeof(want), "(mode %04o)", (unsigned)modes[i]);
		assert_non_null(strstr(err, want));
		assert_null(strstr(err, "value"));
		assert_int_equal(secret_read_file(p, &s, err, sizeof(err)), -1);
		assert_null(s.data);
		free(p);
	}
	tu_rmtree(dir);
	free(dir);
}

static void test_refuses_empty_dir_missing(void **state)
{
	char *dir = tu_mkdtemp(), *p, err[512];
	struct secret s;

	(void)state;
	p = tu_write(dir, "nl", 0600, "\n");
	assert_int_equal(secret_read_file(p, &s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is empty"));
	free(p);
	assert_int_equal(secret_check_file(dir, err, sizeof(err)), -1);
	assert_int_equal(secret_check_file("/nonexistent/x", err, sizeof(err)), -1);
	assert_string_equal(err, "cannot read /nonexistent/x: No such file or directory");
	tu_rmtree(dir);
	free(dir);
}

static void test_equals(void **state)
{
	struct secret s = { .data = strdup("abc"), .len = 3 };

	(void)state;
	assert_true(secret_equals(&s, "abc", 3));
	assert_false(secret_equals(&s, "abd", 3));
	assert_false(secret_equals(&s, "ab", 2));
	assert_false(secret_equals(&s, "abcd", 4));
	assert_false(secret_equals(&s, "", 0));
	assert_false(secret_equals(&s, NULL, 0));
	secret_free(&s);
}

static void test_generate(void **state)
{
	struct secret a, b;

	(void)state;
	assert_int_equal(secret_generate(&a, 11), -1); /* too short to be a password */
	for (int round = 0; round < 200; round++) {
		bool upper = false, lower = false, digit = false, symbol = false;
		assert_int_equal(secret_generate(&a, 24), 0);
		assert_int_equal(a.len, 24);
		assert_int_equal(strlen(a.data), 24);
		for (size_t i = 0; i < a.len; i++) {
			char c = a.data[i];
			assert_null(strchr("0O1lI\"'\\ ", c)); /* no look-alikes, nothing to quote */
			upper |= c >= 'A' && c <= 'Z';
			lower |= c >= 'a' && c <= 'z';
			digit |= c >= '2' && c <= '9';
			symbol |= strchr("-_.!@#%+=", c) != NULL;
		}
		assert_true(upper && lower && digit && symbol);
		assert_int_equal(secret_generate(&b, 24), 0);
		assert_string_not_equal(a.data, b.data);
		secret_free(&a);
		secret_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_strips_one_newline),
		cmocka_unit_test(test_refuses_open_modes),
		cmocka_unit_test(test_refuses_empty_dir_missing),
		cmocka_unit_test(test_equals),
		cmocka_unit_test(test_generate),
	};
	return cmocka_run_group_tests_name("secret", tests, NULL, NULL);
}
