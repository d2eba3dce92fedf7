/* Unit tests of vlist: ownership, lookups, moving, normalizing. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/vlist.h"

static void test_push_and_contains(void **state)
{
	struct vlist l;

	(void)state;
	vlist_init(&l);
	assert_false(vlist_contains(&l, "a"));
	assert_int_equal(vlist_push(&l, strdup("a")), 0);
	assert_int_equal(vlist_push_copy(&l, "bcd", 2), 0);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[1], "bc");
	assert_true(vlist_contains(&l, "a"));
	assert_true(vlist_contains(&l, "bc"));
	assert_false(vlist_contains(&l, "bcd"));
	vlist_clear(&l);
	assert_int_equal(l.n, 0);
	vlist_free(&l);
}

static void test_move_and_normalize(void **state)
{
	struct vlist a, b;

	(void)state;
	vlist_init(&a);
	vlist_init(&b);
	vlist_push_copy(&a, "x", 1);
	vlist_push_copy(&b, "", 0);
	vlist_push_copy(&b, "y", 1);
	vlist_push_copy(&b, "x", 1);
	vlist_push_copy(&b, "y", 1);
	assert_int_equal(vlist_move(&a, &b), 0);
	assert_int_equal(b.n, 0);
	assert_int_equal(a.n, 5);
	vlist_normalize(&a); /* empty strings and repeats go, the first of each stays, in order */
	assert_int_equal(a.n, 2);
	assert_string_equal(a.v[0], "x");
	assert_string_equal(a.v[1], "y");
	vlist_free(&a);
	vlist_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_push_and_contains),
		cmocka_unit_test(test_move_and_normalize),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
