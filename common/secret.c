#include "build.h"

#include "common/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MAX (64 * 1024)

static int open_checked(const char *path, struct stat *st, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	int rc = -1;

	if (fd < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto cleanup;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		goto cleanup;
	}
	if (st->st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
		         "%s is open to group or others (mode %04o); a secret file must be "
		         "readable by its owner only: chmod 600 %s",
		         path, (unsigned)(st->st_mode & 07777), path);
		goto cleanup;
	}
	if (st->st_size == 0) {
		snprintf(err, errlen, "%s is empty", path);
		goto cleanup;
	}
	if (st->st_size > SECRET_MAX) {
		snprintf(err, errlen, "%s is larger than %d bytes: not a secret file", path, SECRET_MAX);
		goto cleanup;
	}
	rc = fd;
	fd = -1;
cleanup:
	if (fd >= 0)
		close(fd);
	return rc;
}

int secret_check_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open_checked(path, &st, err, errlen);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

int secret_read_file(const char *path, struct secret *out, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int rc = -1;
	int fd;

	memset(out, 0, sizeof(*out));
	fd = open_checked(path, &st, err, errlen);
	if (fd < 0)
		return -1;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto cleanup;
	}
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			goto cleanup;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "%s holds a NUL byte", path);
		goto cleanup;
	}
	if (len && buf[len - 1] == '\n')
		buf[--len] = '\0';
	if (len && buf[len - 1] == '\r')
		buf[--len] = '\0';
	if (len == 0) {
		snprintf(err, errlen, "%s is empty", path);
		goto cleanup;
	}
	out->data = buf;
	out->len = len;
	buf = NULL;
	rc = 0;
cleanup:
	if (buf) {
		explicit_bzero(buf, (size_t)st.st_size + 1);
		free(buf);
	}
	close(fd);
	return rc;
}

void secret_free(struct secret *s)
{
	if (s->data) {
		explicit_bzero(s->data, s->len);
		free(s->data);
	}
	s->data = NULL;
	s->len = 0;
}

int secret_equals(const struct secret *s, const char *candidate, size_t len)
{
	volatile unsigned char acc = 0;

	if (!s->data || !candidate)
		return 0;
	/* walk the whole secret whatever the candidate holds */
	for (size_t i = 0; i < s->len; i++) {
		unsigned char c = i < len ? (unsigned char)candidate[i] : 0;
		acc |= (unsigned char)(c ^ (unsigned char)s->data[i]);
	}
	acc |= (unsigned char)(len != s->len);
	return acc == 0;
}

static const char *const classes[] = { "ABCDEFGHJKLMNPQRSTUVWXYZ", "abcdefghijkmnopqrstuvwxyz", "23456789", "-_.!@#%+=" };
#define NCLASSES (sizeof(classes) / sizeof(classes[0]))

/* A uniform index below n (rejection sampling: no modulo bias). */
static int random_below(unsigned n, unsigned *out)
{
	unsigned char b;
	unsigned limit = 256 - 256 % n;

	do {
		if (getrandom(&b, 1, 0) != 1)
			return -1;
	} while (b >= limit);
	*out = b % n;
	return 0;
}

int secret_generate(struct secret *out, size_t len)
{
	char all[128];
	size_t nall = 0;
	bool seen[NCLASSES];

	memset(out, 0, sizeof(*out));
	if (len < 12 || !(out->data = malloc(len + 1)))
		return -1;
	for (size_t c = 0; c < NCLASSES; c++) {
		memcpy(all + nall, classes[c], strlen(classes[c]));
		nall += strlen(classes[c]);
	}
	do {
		memset(seen, 0, sizeof(seen));
		for (size_t i = 0; i < len; i++) {
			unsigned k;
			if (random_below((unsigned)nall, &k) < 0) {
				secret_free(out);
				return -1;
			}
			out->data[i] = all[k];
			for (size_t c = 0; c < NCLASSES; c++)
				if (strchr(classes[c], all[k]))
					seen[c] = true;
		}
	} while (!seen[0] || !seen[1] || !seen[2] || !seen[3]);
	out->data[len] = '\0';
	out->len = len;
	return 0;
}
