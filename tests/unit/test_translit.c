/* Unit tests of translit: any script to ASCII, named transforms, bad ids. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "common/translit.h"

static void check_ascii(const char *in, const char *want)
{
	struct sbuf b;

	sbuf_init(&b);
	assert_int_equal(translit_ascii(&b, in, strlen(in)), 0);
	assert_string_equal(sbuf_str(&b), want);
	sbuf_free(&b);
}

static void test_every_script_becomes_ascii(void **state)
{
	(void)state;
	check_ascii("Иван Петров", "Ivan Petrov");
	check_ascii("Γιώργος Παπαδόπουλος", "Giorgos Papadopoulos");
	check_ascii("محمد علي", "mhmd ly");
	check_ascii("דוד כהן", "dwd khn");
	check_ascii("王小明", "wang xiao ming");
	check_ascii("अमित शर्मा", "amita sarma");
	check_ascii("สมชาย ใจดี", "smchay cidi");
	check_ascii("Nguyễn Văn An", "Nguyen Van An");
	check_ascii("İbrahim Işık", "Ibrahim Isik");
	check_ascii("ﬁtz", "fitz");
}

static void test_latin_as_before(void **state)
{
	(void)state;
	check_ascii("José Núñez", "Jose Nunez");
	check_ascii("Straße", "Strasse");
	check_ascii("Øyvind Łukasz", "Oyvind Lukasz");
	check_ascii("Ægir Þórðarson", "AEgir THordarson");
	check_ascii("ĸ Ɵ ɵ", "k O o"); /* kept as they were before ICU */
	check_ascii("Jose\xcc\x81 Nu\xcc\x81n\xcc\x83" "ez", "Jose Nunez"); /* NFD */
	check_ascii("plain ASCII, kept as it is", "plain ASCII, kept as it is");
	check_ascii("", "");
}

static void test_named_transforms(void **state)
{
	struct translit *t = NULL;
	struct sbuf b;
	char err[256];

	(void)state;
	sbuf_init(&b);
	assert_int_equal(translit_open(&t, "Russian-Latin/BGN", err, sizeof(err)), 0);
	assert_int_equal(translit_apply(t, &b, "Дмитрий", strlen("Дмитрий")), 0);
	assert_string_equal(sbuf_str(&b), "Dmitriy");
	translit_free(t);
	assert_int_equal(translit_open(&t, "Nope-Nothing", err, sizeof(err)), -1);
	assert_null(t);
	assert_string_equal(err, "ICU has no transform \"Nope-Nothing\" (an id such as 'Russian-Latin/BGN' or "
	                         "'Any-Latin; Latin-ASCII')");
	sbuf_free(&b);
}

/* Workers transliterate at once: each thread checks its own answers. */
static void *transliterate_many(void *arg)
{
	static const char *const in[] = { "Żółć Ærø", "Иван", "ĸ ǅ ẞ", "王小明", "Nguyễn" };
	static const char *const want[] = { "Zolc AEro", "Ivan", "k Dz SS", "wang xiao ming", "Nguyen" };
	long bad = 0;

	(void)arg;
	for (int round = 0; round < 200; round++) {
		size_t k = (size_t)round % 5;
		struct sbuf b;
		sbuf_init(&b);
		if (translit_ascii(&b, in[k], strlen(in[k])) < 0 || strcmp(sbuf_str(&b), want[k]) != 0)
			bad++;
		sbuf_free(&b);
	}
	return (void *)bad;
}

static void test_threads(void **state)
{
	pthread_t th[4];

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, transliterate_many, NULL), 0);
	for (int i = 0; i < 4; i++) {
		void *bad;
		assert_int_equal(pthread_join(th[i], &bad), 0);
		assert_null(bad);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_script_becomes_ascii),
		cmocka_unit_test(test_latin_as_before),
		cmocka_unit_test(test_named_transforms),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
