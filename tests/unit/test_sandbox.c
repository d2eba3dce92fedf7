/* Unit tests of sandbox: what a confined process can still do, in a child
 * process each (confinement cannot be undone). */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "testutil.h"

/* Each check the child makes, as a bit of its exit code (8 bits) when it fails. */
enum { STATE = 1, OUTSIDE = 2, EXEC = 4, CONFINE = 8, SOCKET = 16, USER = 32, CAPS = 64 };

static int confined_child(const char *inside, const char *outside_file, const char *outside_dir)
{
	bool root = geteuid() == 0;
	struct sbuf warn, err;
	char path[8192];
	int failed = 0;

	sbuf_init(&warn);
	sbuf_init(&err);
	if (sandbox_confine("nobody", &warn, &err) < 0)
		return CONFINE;
	/* started as root: nobody, for good, with no capability left to gain */
	if (root && (getuid() != 65534 || geteuid() != 65534 || getgid() != 65534 || setuid(0) == 0))
		failed |= USER;
	if (root && (prctl(PR_CAPBSET_READ, CAP_SETUID, 0, 0, 0) != 0 || prctl(PR_CAPBSET_READ, CAP_KILL, 0, 0, 0) != 0))
		failed |= CAPS;
	/* with Landlock (this kernel has it: platform checked at run time) no file opens and none is
	 * made: not the daemon's database, not the OAuth token beside it, nothing outside */
	if (warn.len == 0 || strstr(sbuf_str(&warn), "Landlock") == NULL) {
		static const char *const names[] = { "state.db", "oauth-refresh-token" };
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", inside, names[i]);
			if (open(path, O_RDONLY | O_CLOEXEC) >= 0 || errno != EACCES)
				failed |= STATE;
		}
		snprintf(path, sizeof(path), "%s/new-file", inside);
		if (open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != EACCES)
			failed |= STATE;
		if (open(outside_file, O_RDONLY | O_CLOEXEC) >= 0 || errno != EACCES)
			failed |= OUTSIDE;
		snprintf(path, sizeof(path), "%s/planted", outside_dir);
		if (open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != EACCES)
			failed |= OUTSIDE;
	}
	/* no socket of its own, to connect anywhere or listen */
	if (warn.len == 0 || strstr(sbuf_str(&warn), "seccomp") == NULL) {
		if (socket(AF_INET, SOCK_STREAM, 0) >= 0 || errno != EPERM)
			failed |= SOCKET;
		if (socket(AF_UNIX, SOCK_STREAM, 0) >= 0 || errno != EPERM)
			failed |= SOCKET;
	}
	{
		char *const argv[] = { (char *)"/bin/true", NULL };
		execve("/bin/true", argv, NULL);
		if (errno != EPERM && errno != EACCES)
			failed |= EXEC;
	}
	sbuf_free(&warn);
	sbuf_free(&err);
	return failed;
}

static void test_confined_to_nothing_but_its_descriptors(void **state)
{
	char inside[1024], outside[1024], outside_file[2048];
	pid_t pid;
	int status = 0;
	FILE *fp;

	(void)state;
	snprintf(inside, sizeof(inside), "%.900s/state", tu_dir);
	snprintf(outside, sizeof(outside), "%.900s/elsewhere", tu_dir);
	snprintf(outside_file, sizeof(outside_file), "%s/secret", outside);
	assert_int_equal(mkdir(inside, 0700), 0);
	assert_int_equal(mkdir(outside, 0700), 0);
	for (size_t i = 0; i < 2; i++) {
		char p[2048];
		snprintf(p, sizeof(p), "%s/%s", inside, i ? "oauth-refresh-token" : "state.db");
		fp = fopen(p, "w");
		assert_non_null(fp);
		fputs(i ? "rt-secret\n" : "", fp);
		fclose(fp);
	}
	fp = fopen(outside_file, "w");
	assert_non_null(fp);
	fputs("bind password\n", fp);
	fclose(fp);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(confined_child(inside, outside_file, outside));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* and nothing was planted, outside or in */
	snprintf(outside_file, sizeof(outside_file), "%s/planted", outside);
	assert_int_equal(access(outside_file, F_OK), -1);
	snprintf(outside_file, sizeof(outside_file), "%s/new-file", inside);
	assert_int_equal(access(outside_file, F_OK), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_confined_to_nothing_but_its_descriptors),
	};
	return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
