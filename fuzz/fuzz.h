/*
 * What the fuzz targets share: the input as a file (the loaders read
 * files), and a mapping loaded once.
 *
 * Memory: the file and the mapping live for the whole run.
 */
#ifndef FLA_FUZZ_H
#define FLA_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* The input written to a memory file; its path (/proc/self/fd/N). */
const char *fuzz_as_file(const uint8_t *data, size_t size);
/* A copy of the input with a terminating NUL (freed at the next call). */
const char *fuzz_as_text(const uint8_t *data, size_t size);
/* A target that writes the input to a file and hands it to a loader:
 * load(path, &out, &diag) and release(out), as config_load and
 * mapping_load go. */
#define FUZZ_LOADER_TARGET(type, load, release)                                    \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);              \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)               \
	{                                                                          \
		type *loaded = NULL;                                               \
		struct diag d;                                                     \
		diag_init(&d);                                                     \
		load(fuzz_as_file(data, size), &loaded, &d);                       \
		release(loaded);                                                   \
		diag_free(&d);                                                     \
		return 0;                                                          \
	}

/* The mapping FLA_FUZZ_MAPPING names, or the shipped OpenLDAP one. */
const struct mapping *fuzz_mapping(void);

#endif
