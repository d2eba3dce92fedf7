/* Unit tests of clock: ISO 8601 dates and timestamps, and the moved clock
 * (FACTORIAL_LDAP_AGENT_NOW, also as @FILE). */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/clock.h"
#include "testutil.h"

static void test_iso8601(void **state)
{
	static const struct {
		const char *in;
		double epoch; /* < 0: refused */
	} cases[] = {
		{ "2026-11-27", 1795737600 },
		{ "2026-11-27T10:00:00Z", 1795773600 },
		{ "2026-11-27T10:00:00.250Z", 1795773600.25 },
		{ "2026-11-27 10:00", 1795773600 },
		{ "2026-11-27T11:30:00+01:30", 1795773600 },
		{ "2026-11-27T08:00:00-0200", 1795773600 },
		{ "2026-11-27T12:00:00+02", 1795773600 },
		{ "2024-02-29", 1709164800 },
		{ "2025-02-29", -1 },
		{ "2026-13-01", -1 },
		{ "2026-11-27T25:00", -1 },
		{ "2026-11-27T10:00:00.Z", -1 },
		{ "2026-11-27x", -1 },
		{ "27/11/2026", -1 },
		{ "", -1 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tm tm;
		double e = 0;
		int rc = clock_parse_iso8601(cases[i].in, &tm, &e);
		if (cases[i].epoch < 0) {
			assert_int_equal(rc, -1);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_true(e == cases[i].epoch);
	}
}

static void test_moved_clock(void **state)
{
	char *dir = tu_mkdtemp(), *file, env[256], today[16];

	(void)state;
	setenv(CLOCK_ENV, "2026-12-15T08:00:00Z", 1);
	assert_int_equal(clock_now(), 1797321600);
	setenv(CLOCK_ENV, "1797321600", 1);
	assert_int_equal(clock_now(), 1797321600);
	setenv("TZ", "UTC", 1);
	tzset();
	clock_today(today, sizeof(today));
	assert_string_equal(today, "2026-12-15");
	file = tu_write(dir, "now", 0644, "2027-01-02T00:00:00Z\n");
	snprintf(env, sizeof(env), "@%s", file);
	setenv(CLOCK_ENV, env, 1);
	clock_today(today, sizeof(today));
	assert_string_equal(today, "2027-01-02");
	free(file);
	file = tu_write(dir, "now", 0644, "2027-03-04\n"); /* the file is read at every call */
	clock_today(today, sizeof(today));
	assert_string_equal(today, "2027-03-04");
	unsetenv(CLOCK_ENV);
	free(file);
	tu_rmtree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_moved_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
