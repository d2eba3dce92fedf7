/* Unit tests of utf8: strict decoding, lengths, case mapping, ASCII. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/utf8.h"

typedef void (*convert)(struct sbuf *out, const char *s, size_t len);

static void check(convert fn, const char *in, const char *want)
{
	struct sbuf b;

	sbuf_init(&b);
	fn(&b, in, strlen(in));
	assert_string_equal(sbuf_str(&b), want);
	sbuf_free(&b);
}

static void test_strict_decoding(void **state)
{
	static const char *const bad[] = {
		"\xc0\xaf",         /* overlong '/' */
		"\xed\xa0\x80",     /* a surrogate */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xe2\x82",         /* cut short */
		"\x80",             /* a lone continuation byte */
	};
	struct sbuf b;
	size_t i = 0;
	uint32_t cp;

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		assert_false(utf8_valid(bad[k], strlen(bad[k])));
	assert_true(utf8_valid("José 王 🙂", strlen("José 王 🙂")));
	assert_int_equal(utf8_decode("€", 3, &i, &cp), 0);
	assert_int_equal(cp, 0x20ac);
	assert_int_equal(i, 3);
	sbuf_init(&b);
	utf8_encode(&b, 0x1f642);
	assert_string_equal(sbuf_str(&b), "🙂");
	sbuf_free(&b);
}

static void test_lengths(void **state)
{
	const char *s = "Núñez王";

	(void)state;
	assert_int_equal(utf8_length(s, strlen(s)), 6);
	assert_int_equal(utf8_prefix_bytes(s, strlen(s), 3), 5); /* "Núñ" */
	assert_int_equal(utf8_prefix_bytes(s, strlen(s), 99), strlen(s));
}

static void test_case(void **state)
{
	(void)state;
	check(utf8_lower, "JOSÉ ÑÚÑEZ", "josé ñúñez");
	check(utf8_upper, "josé núñez", "JOSÉ NÚÑEZ");
	check(utf8_lower, "İBRAHİM ΣΟΦΙΑ", "ibrahim σοφια");
	check(utf8_upper, "straße", "STRAßE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strict_decoding),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_case),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
