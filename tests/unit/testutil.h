/*
 * testutil: helpers shared by the unit tests: a private temporary directory
 * and files written into it.  Each test owns what it creates and removes it.
 */
#ifndef FLA_TESTUTIL_H
#define FLA_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline char *tu_mkdtemp(void)
{
	char tmpl[] = "/tmp/fla-unit-XXXXXX";
	char *d = mkdtemp(tmpl);
	return d ? strdup(d) : NULL;
}

/* Writes content to dir/name with the given mode; returns the malloc'd path. */
static inline char *tu_write(const char *dir, const char *name, mode_t mode, const char *content)
{
	size_t len = strlen(dir) + strlen(name) + 2;
	char *path = malloc(len);
	FILE *fp;

	if (!path)
		return NULL;
	snprintf(path, len, "%s/%s", dir, name);
	fp = fopen(path, "w");
	if (!fp) {
		free(path);
		return NULL;
	}
	fputs(content, fp);
	fclose(fp);
	chmod(path, mode);
	return path;
}

static inline void tu_rmtree(const char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/*
 * A group's temporary folder: pass tu_dir_setup and tu_dir_teardown to
 * cmocka_run_group_tests; the tests write into tu_dir, which the teardown
 * removes with everything in it.
 */
static char *tu_dir;

static inline int tu_dir_setup(void **state)
{
	(void)state;
	tu_dir = tu_mkdtemp();
	return tu_dir ? 0 : -1;
}

static inline int tu_dir_teardown(void **state)
{
	(void)state;
	tu_rmtree(tu_dir);
	free(tu_dir);
	tu_dir = NULL;
	return 0;
}

#endif
