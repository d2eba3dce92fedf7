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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "testutil.h"

/* Each check the child makes, as a bit of its exit code when it fails. */
enum {
	OPEN_INSIDE = 1, WRITE_INSIDE = 2, OPEN_OUTSIDE = 4, CREATE_OUTSIDE = 8, EXEC = 16, CONFINE = 32,
	TOKEN = 64, CREATE_INSIDE = 128, SOCKET = 256
};

static int confined_child(const char *inside, const char *outside_file, const char *outside_dir)
{
	struct sbuf warn, err;
	char path[8192];
	int fd, failed = 0;

	sbuf_init(&warn);
	sbuf_init(&err);
	if (sandbox_confine(inside, &warn, &err) < 0)
		return CONFINE;
	/* the queue's database opens and takes writes */
	snprintf(path, sizeof(path), "%s/state.db", inside);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		failed |= OPEN_INSIDE;
	else if (write(fd, "x", 1) != 1)
		failed |= WRITE_INSIDE;
	if (fd >= 0)
		close(fd);
	/* with Landlock (this kernel has it: platform checked at run time) nothing else opens, the
	 * OAuth token beside the database included, and nothing new is made, inside or out */
	if (warn.len == 0 || strstr(sbuf_str(&warn), "Landlock") == NULL) {
		if (open(outside_file, O_RDONLY | O_CLOEXEC) >= 0 || errno != EACCES)
			failed |= OPEN_OUTSIDE;
		snprintf(path, sizeof(path), "%s/planted", outside_dir);
		if (open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != EACCES)
			failed |= CREATE_OUTSIDE;
		snprintf(path, sizeof(path), "%s/oauth-refresh-token", inside);
		if (open(path, O_RDONLY | O_CLOEXEC) >= 0 || errno != EACCES)
			failed |= TOKEN;
		snprintf(path, sizeof(path), "%s/new-file", inside);
		if (open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0 || errno != EACCES)
			failed |= CREATE_INSIDE;
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

static void test_confined_to_the_queue_database(void **state)
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
		cmocka_unit_test(test_confined_to_the_queue_database),
	};
	return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
