#include "build.h"

#include "statedir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct statedir_lock {
	int fd;
};

int statedir_prepare(const char *dir, struct sbuf *err)
{
	struct stat sb;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		sbuf_addf(err, "state_dir: cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &sb) < 0) {
		sbuf_addf(err, "state_dir: %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		sbuf_addf(err, "state_dir: %s is not a folder", dir);
		return -1;
	}
	if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		sbuf_addf(err,
		          "state_dir: %s is writable by %s (mode %04o); it holds delivery bodies and the audit trail, "
		          "so only the agent's user may write there: chmod 700 %s",
		          dir, (sb.st_mode & S_IWOTH) ? "others" : "group", (unsigned)(sb.st_mode & 07777), dir);
		return -1;
	}
	return 0;
}

/* The command of a factorial-ldap-agent command line: the first argument
 * that is neither an option nor the value of -c. */
static void command_of(pid_t pid, char *out, size_t len)
{
	char path[64], buf[4096];
	size_t n;
	FILE *fp;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
	fp = fopen(path, "re");
	if (!fp)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	for (size_t i = strlen(buf) + 1; i < n; i += strlen(buf + i) + 1) {
		const char *a = buf + i;
		if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			i += strlen(a) + 1;
			continue;
		}
		if (a[0] == '-' || a[0] == '\0')
			continue;
		snprintf(out, len, "%s", a);
		return;
	}
}

/* The pid holding a flock on the inode of dir, from /proc/locks; 0 when none is listed. */
static pid_t lock_owner(const struct stat *sb)
{
	FILE *fp = fopen("/proc/locks", "re");
	char line[256];
	pid_t found = 0;

	if (!fp)
		return 0;
	while (!found && fgets(line, sizeof(line), fp)) {
		char kind[16], mode[16], rw[16];
		unsigned maj, min;
		unsigned long long ino;
		long pid;
		if (strstr(line, "->"))
			continue; /* a waiter, not a holder */
		if (sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &pid, &maj, &min, &ino) != 7)
			continue;
		if (strcmp(kind, "FLOCK") == 0 && ino == (unsigned long long)sb->st_ino && maj == major(sb->st_dev) &&
		    min == minor(sb->st_dev) && pid > 0)
			found = (pid_t)pid;
	}
	fclose(fp);
	return found;
}

static void holder_of(int fd, struct statedir_holder *h)
{
	struct stat sb;

	memset(h, 0, sizeof(*h));
	if (fstat(fd, &sb) < 0)
		return;
	h->pid = lock_owner(&sb);
	if (h->pid)
		command_of(h->pid, h->command, sizeof(h->command));
}

int statedir_lock(const char *dir, struct statedir_lock **out, struct statedir_holder *holder, struct sbuf *err)
{
	struct statedir_lock *l = NULL;
	int fd, rc = -1;

	*out = NULL;
	memset(holder, 0, sizeof(*holder));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		sbuf_addf(err, "state_dir: cannot open %s: %s", dir, strerror(errno));
		goto cleanup;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			sbuf_addf(err, "state_dir: cannot lock %s: %s", dir, strerror(errno));
			goto cleanup;
		}
		holder_of(fd, holder);
		rc = 1;
		goto cleanup;
	}
	l = malloc(sizeof(*l));
	if (!l) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	l->fd = fd;
	fd = -1;
	*out = l;
	rc = 0;
cleanup:
	if (fd >= 0)
		close(fd);
	return rc;
}

void statedir_unlock(struct statedir_lock *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l);
}

int statedir_held(const char *dir, struct statedir_holder *holder, struct sbuf *err)
{
	struct stat sb;

	memset(holder, 0, sizeof(*holder));
	if (stat(dir, &sb) < 0) {
		if (errno == ENOENT)
			return 0;
		sbuf_addf(err, "state_dir: %s: %s", dir, strerror(errno));
		return -1;
	}
	/* read from /proc/locks: asking by taking the lock could turn a daemon starting now away */
	holder->pid = lock_owner(&sb);
	if (!holder->pid)
		return 0;
	command_of(holder->pid, holder->command, sizeof(holder->command));
	return 1;
}

void statedir_holder_text(const struct statedir_holder *h, char *buf, size_t len)
{
	if (h->pid && h->command[0])
		snprintf(buf, len, "pid %ld (%s)", (long)h->pid, h->command);
	else if (h->pid)
		snprintf(buf, len, "pid %ld", (long)h->pid);
	else
		snprintf(buf, len, "another process");
}
