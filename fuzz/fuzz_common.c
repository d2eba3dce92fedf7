#define _GNU_SOURCE
#include "build.h"

#include "fuzz.h"

#include "common/diag.h"
#include "mapping.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

const char *fuzz_as_file(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];

	if (fd < 0) {
		fd = memfd_create("fuzz-input", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	return path;
}

const char *fuzz_as_text(const uint8_t *data, size_t size)
{
	static char *text;

	free(text);
	text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	return text;
}

const struct mapping *fuzz_mapping(void)
{
	static struct mapping *m;
	struct diag d;
	const char *path = getenv("FLA_FUZZ_MAPPING");

	if (m)
		return m;
	diag_init(&d);
	if (mapping_load(path ? path : FLA_SRCDIR "/mappings/openldap-inetorgperson.yaml", &m, &d) < 0) {
		diag_print(&d, stderr);
		abort();
	}
	diag_free(&d);
	return m;
}
