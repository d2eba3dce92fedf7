/* Unit tests of the deletion guard: its limits at their edges, and run's
 * count of the last hour, which takes in the disables and deletes let
 * through and still being made (reserved) as well as those recorded. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "guard.h"
#include "testutil.h"

static void test_limits_at_their_edges(void **state)
{
	struct config cfg = { 0 };
	double pct;

	(void)state;
	cfg.safety.max_disables = 25;
	cfg.safety.max_disables_percent = -1;
	assert_true(guard_within(&cfg, 25, 0, &pct));
	assert_false(guard_within(&cfg, 26, 1000, &pct));
	/* exactly the share allowed goes through; one more entry does not */
	cfg.safety.max_disables_percent = 20;
	assert_true(guard_within(&cfg, 10, 50, &pct));
	assert_true(pct == 20.0);
	assert_false(guard_within(&cfg, 11, 50, &pct));
	/* nothing managed: any disable is all of it */
	assert_false(guard_within(&cfg, 1, 0, &pct));
}

static void test_run_counts_recorded_and_reserved(void **state)
{
	struct config cfg = { 0 };
	struct store *st = NULL;
	struct sbuf err, why;
	double now = (double)time(NULL);

	(void)state;
	sbuf_init(&err);
	sbuf_init(&why);
	cfg.safety.max_disables = 2;
	cfg.safety.max_disables_percent = -1; /* no search: no directory needed */
	assert_int_equal(store_open(tu_dir, &st, &err), 0);
	/* nothing recorded: the third of three let through at once is held */
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 0, &why), 1);
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 1, &why), 1);
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 2, &why), 0);
	assert_non_null(strstr(sbuf_str(&why), "deletion guard: 2 disables and deletes in the last hour, and this one is "
	                                       "over safety.max_disables 2; held until `queue retry --force`"));
	/* one recorded within the hour and one being made: full */
	assert_int_equal(store_guard_add(st, now - 60, &err), 0);
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 0, &why), 1);
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 1, &why), 0);
	/* one older than the hour does not count */
	assert_int_equal(store_guard_add(st, now - 3700, &err), 0);
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 0, &why), 1);
	assert_int_equal(store_guard_add(st, now - 10, &err), 0);
	assert_int_equal(guard_one_more(&cfg, NULL, st, NULL, now, 0, &why), 0);
	store_close(st);
	sbuf_free(&err);
	sbuf_free(&why);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits_at_their_edges),
		cmocka_unit_test(test_run_counts_recorded_and_reserved),
	};
	return cmocka_run_group_tests_name("guard", tests, tu_dir_setup, tu_dir_teardown);
}
