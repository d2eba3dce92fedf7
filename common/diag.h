/*
 * diag: the list of mistakes a loader found in a file a person wrote.
 *
 * A loader (config, mapping) does not stop at the first mistake: it adds one
 * entry per mistake, each with its place and the key it concerns, and the
 * caller prints them all at once as
 *
 *     file:line:column: key: what is wrong
 *
 * sorted by place.  Lines and columns are 1-based; an entry with line 0 has no
 * place inside the file (the file itself cannot be opened, say) and prints as
 * "file: key: what is wrong".
 *
 * Memory: a struct diag owns its entries and every string in them; callers
 * pass borrowed strings, which are copied.  When memory runs out the entry is
 * dropped and the diag remembers it, so diag_count() never reports zero for a
 * file that had mistakes.
 */
#ifndef FLA_DIAG_H
#define FLA_DIAG_H

#include <stddef.h>
#include <stdio.h>

struct diag_entry {
	char *file;
	unsigned line;
	unsigned column;
	char *key;
	char *message;
};

struct diag {
	struct diag_entry *v;
	size_t n;
	size_t cap;
	size_t dropped; /* entries lost to allocation failure */
};

void diag_init(struct diag *d);
void diag_free(struct diag *d);

/* Adds one mistake.  file and key may be NULL or empty. */
void diag_add(struct diag *d, const char *file, unsigned line, unsigned column,
              const char *key, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* Number of mistakes recorded, including dropped ones. */
size_t diag_count(const struct diag *d);

/* Prints every entry, sorted by file, line and column (stable), one a line. */
void diag_print(struct diag *d, FILE *fp);

/* Formats entry i into buf as it would print (without the newline). */
int diag_format(const struct diag *d, size_t i, char *buf, size_t len);

#endif
