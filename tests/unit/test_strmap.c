/* Unit tests of strmap: set, get, delete, growth, folded keys and lookups by them. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "common/strmap.h"

static void test_put_get_del(void **state)
{
	struct strmap m;

	(void)state;
	strmap_init(&m);
	assert_null(strmap_get(&m, "a"));
	assert_int_equal(strmap_put(&m, "a", "1"), 0);
	assert_int_equal(strmap_put(&m, "set", NULL), 0);
	assert_string_equal(strmap_get(&m, "a"), "1");
	assert_string_equal(strmap_get(&m, "set"), ""); /* stored without a value */
	assert_int_equal(strmap_put(&m, "a", "2"), 0);
	assert_string_equal(strmap_get(&m, "a"), "2");
	assert_int_equal(m.n, 2);
	strmap_del(&m, "a");
	strmap_del(&m, "never there");
	assert_null(strmap_get(&m, "a"));
	assert_int_equal(m.n, 1);
	strmap_clear(&m);
	assert_int_equal(m.n, 0);
	assert_null(strmap_get(&m, "set"));
	strmap_free(&m);
}

static void test_many_keys_and_deletes(void **state)
{
	struct strmap m;
	char key[32], val[32];

	(void)state;
	strmap_init(&m);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		assert_int_equal(strmap_put(&m, key, val), 0);
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(key, sizeof(key), "k%d", i);
		strmap_del(&m, key);
	}
	assert_int_equal(m.n, 2500);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		if (i % 2)
			assert_string_equal(strmap_get(&m, key), val);
		else
			assert_null(strmap_get(&m, key));
	}
	strmap_free(&m);
}

static void test_fold_key(void **state)
{
	struct sbuf k;

	(void)state;
	sbuf_init(&k);
	strmap_fold_key(&k, "UID", "Ana.PEREZ");
	assert_string_equal(sbuf_str(&k), "uid=ana.perez");
	sbuf_free(&k);
}

static void test_get_folded(void **state)
{
	struct strmap m;

	(void)state;
	strmap_init(&m);
	assert_int_equal(strmap_put(&m, "uid=ana.perez", "uid=ana.perez,ou=people"), 0);
	assert_string_equal(strmap_get_folded(&m, "UID", "Ana.Perez"), "uid=ana.perez,ou=people");
	assert_null(strmap_get_folded(&m, "uid", "ana.perez2"));
	assert_null(strmap_get_folded(&m, "mail", "ana.perez"));
	strmap_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del),
		cmocka_unit_test(test_many_keys_and_deletes),
		cmocka_unit_test(test_fold_key),
		cmocka_unit_test(test_get_folded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
