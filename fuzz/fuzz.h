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
/* The mapping FLA_FUZZ_MAPPING names, or the shipped OpenLDAP one. */
const struct mapping *fuzz_mapping(void);

#endif
