#include "build.h"

#include "common/nearest.h"

#include <stdint.h>
#include <string.h>

/* Levenshtein distance; SIZE_MAX for names too long to be a typo of each other. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[64];

	if (lb >= sizeof(row) / sizeof(row[0]) || la >= 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *nearest_name(const char *word, const void *base, size_t n, size_t stride)
{
	const char *best = NULL;
	/* a suggestion must be closer than a third of the name's length */
	size_t best_d = strlen(word) / 3 + 1;

	for (size_t i = 0; i < n; i++) {
		const char *name = *(const char *const *)(const void *)((const char *)base + i * stride);
		size_t dist = name ? edit_distance(word, name) : SIZE_MAX;
		if (dist < best_d) {
			best_d = dist;
			best = name;
		}
	}
	return best;
}
