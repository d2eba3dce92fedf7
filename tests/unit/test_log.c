/* Unit tests of log: levels, one line per message, the thread's context. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "testutil.h"

/* Runs fn with standard error sent to a file; returns what was written (malloc'd). */
static char *captured(void (*fn)(void))
{
	char *dir = tu_mkdtemp(), path[512], *out = calloc(1, 8192);
	int saved = dup(STDERR_FILENO), fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/err", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, out, 8191);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	tu_rmtree(dir);
	free(dir);
	return out;
}

static void levels(void)
{
	log_setup(LOG_LVL_INFO, LOG_TARGET_STDERR, false);
	log_debug("not shown");
	log_info("shown %d", 1);
	log_error("also %s", "shown");
}

/* Standard error is the journal's stream: JOURNAL_STREAM names its device and inode. */
static void journal(void)
{
	struct stat st;
	char js[64];

	fstat(STDERR_FILENO, &st);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", js, 1);
	log_setup(LOG_LVL_DEBUG, LOG_TARGET_STDERR, true);
	log_error("e");
	log_warn("w");
	log_info("i");
	log_debug("d");
	/* another stream (stderr redirected by hand): plain lines with their timestamps */
	setenv("JOURNAL_STREAM", "1:2", 1);
	log_setup(LOG_LVL_INFO, LOG_TARGET_STDERR, false);
	log_info("plain");
	unsetenv("JOURNAL_STREAM");
}

static void test_journal_priorities(void **state)
{
	char *out = captured(journal);

	(void)state;
	assert_string_equal(out, "<3>" PACKAGE_NAME ": error: e\n<4>" PACKAGE_NAME ": warn: w\n<6>" PACKAGE_NAME
	                         ": info: i\n<7>" PACKAGE_NAME ": debug: d\n" PACKAGE_NAME ": info: plain\n");
	free(out);
}

static void *other_thread(void *arg)
{
	(void)arg;
	log_info("from another thread");
	return NULL;
}

static void context(void)
{
	pthread_t t;

	log_setup(LOG_LVL_INFO, LOG_TARGET_STDERR, false);
	log_set_context("delivery %d %s", 7, "employee:42");
	log_info("add: ok");
	pthread_create(&t, NULL, other_thread, NULL);
	pthread_join(t, NULL);
	log_clear_context();
	log_warn("after");
}

static void forged(void)
{
	log_setup(LOG_LVL_INFO, LOG_TARGET_STDERR, false);
	log_set_context("delivery 3 employee:%s", "1\r\nfactorial-ldap-agent: info: fake");
	log_warn("refused %s", "/hooks/x\n2026-01-01T00:00:00.000Z factorial-ldap-agent: error: forged\x1b[2J\x7f\xc2\x85");
	log_clear_context();
	log_info("a tab\tand José stay");
}

static void test_levels(void **state)
{
	char *out = captured(levels);

	(void)state;
	assert_string_equal(out, PACKAGE_NAME ": info: shown 1\n" PACKAGE_NAME ": error: also shown\n");
	assert_false(log_enabled(LOG_LVL_DEBUG));
	assert_string_equal(log_level_name(LOG_LVL_WARN), "warn");
	free(out);
}

static void test_context_is_the_threads_own(void **state)
{
	char *out = captured(context);

	(void)state;
	assert_string_equal(out, PACKAGE_NAME ": info: delivery 7 employee:42: add: ok\n"
	                         PACKAGE_NAME ": info: from another thread\n"
	                         PACKAGE_NAME ": warn: after\n");
	free(out);
}

/* What a client, a record or a server sends cannot start a line of its own. */
static void test_control_characters_escaped(void **state)
{
	char *out = captured(forged);

	(void)state;
	assert_string_equal(out, PACKAGE_NAME ": warn: delivery 3 employee:1\\x0d\\x0afactorial-ldap-agent: info: fake: "
	                         "refused /hooks/x\\x0a2026-01-01T00:00:00.000Z factorial-ldap-agent: error: "
	                         "forged\\x1b[2J\\x7f\\u0085\n"
	                         PACKAGE_NAME ": info: a tab\\x09and Jos\xc3\xa9 stay\n");
	free(out);
}

static void misleading(void)
{
	log_setup(LOG_LVL_INFO, LOG_TARGET_STDERR, false);
	/* right-to-left override, line and paragraph separators, a raw C1 byte, bytes that are not
	 * UTF-8 (a lone continuation, a cut sequence, an overlong slash, a surrogate), zero width */
	log_info("path /hooks/\xe2\x80\xaetxt.exe \xe2\x80\xa8x\xe2\x80\xa9y \x9b" "2J \x80 \xc3( \xc0\xaf \xed\xa0\x80 "
	         "a\xe2\x80\x8b" "b \xef\xbb\xbf \xf3\xa0\x80\x81");
	log_info("Jos\xc3\xa9 \xe7\x8e\x8b \xf0\x9f\x98\x80 stay");
}

static void test_misleading_characters_escaped(void **state)
{
	char *out = captured(misleading);

	(void)state;
	assert_string_equal(out, PACKAGE_NAME ": info: path /hooks/\\u202etxt.exe \\u2028x\\u2029y \\x9b2J \\x80 \\xc3( "
	                         "\\xc0\\xaf \\xed\\xa0\\x80 a\\u200bb \\ufeff \\U000e0001\n"
	                         PACKAGE_NAME ": info: Jos\xc3\xa9 \xe7\x8e\x8b \xf0\x9f\x98\x80 stay\n");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_context_is_the_threads_own),
		cmocka_unit_test(test_control_characters_escaped),
		cmocka_unit_test(test_misleading_characters_escaped),
		cmocka_unit_test(test_journal_priorities),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
