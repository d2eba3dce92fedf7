/*
 * nearest: did-you-mean for a name the reader mistyped (a configuration key,
 * a filter name), by edit distance.
 *
 * Memory: nothing is allocated; the name returned points into the caller's
 * table.
 */
#ifndef FLA_NEAREST_H
#define FLA_NEAREST_H

#include <stddef.h>

/* The name nearest to word among the n names at base, base + stride, ...
 * (each a `const char *` at that address), when it takes fewer edits than a
 * third of word's length plus one; NULL when none does. */
const char *nearest_name(const char *word, const void *base, size_t n, size_t stride);

#endif
