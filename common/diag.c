#include "build.h"

#include "common/diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag *d)
{
	memset(d, 0, sizeof(*d));
}

void diag_free(struct diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].key);
		free(d->v[i].message);
	}
	free(d->v);
	memset(d, 0, sizeof(*d));
}

static char *dup_or_null(const char *s)
{
	return (s && *s) ? strdup(s) : NULL;
}

void diag_add(struct diag *d, const char *file, unsigned line, unsigned column,
              const char *key, const char *fmt, ...)
{
	struct diag_entry e = { .line = line, .column = column };
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (len < 0)
		goto cleanup;
	e.message = malloc((size_t)len + 1);
	if (!e.message)
		goto cleanup;
	va_start(ap, fmt);
	vsnprintf(e.message, (size_t)len + 1, fmt, ap);
	va_end(ap);
	e.file = dup_or_null(file);
	e.key = dup_or_null(key);
	if ((file && *file && !e.file) || (key && *key && !e.key))
		goto cleanup;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 8;
		struct diag_entry *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			goto cleanup;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n++] = e;
	return;
cleanup:
	free(e.file);
	free(e.key);
	free(e.message);
	d->dropped++;
}

size_t diag_count(const struct diag *d)
{
	return d->n + d->dropped;
}

static int entry_cmp(const struct diag_entry *a, const struct diag_entry *b)
{
	int c = strcmp(a->file ? a->file : "", b->file ? b->file : "");
	if (c)
		return c;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	if (a->column != b->column)
		return a->column < b->column ? -1 : 1;
	return 0;
}

static void sort_entries(struct diag *d)
{
	/* insertion sort: stable, and the lists are short */
	for (size_t i = 1; i < d->n; i++) {
		struct diag_entry e = d->v[i];
		size_t j = i;
		while (j > 0 && entry_cmp(&d->v[j - 1], &e) > 0) {
			d->v[j] = d->v[j - 1];
			j--;
		}
		d->v[j] = e;
	}
}

int diag_format(const struct diag *d, size_t i, char *buf, size_t len)
{
	const struct diag_entry *e = &d->v[i];
	const char *file = e->file ? e->file : "-";
	char place[64] = "";

	if (e->line)
		snprintf(place, sizeof(place), ":%u:%u", e->line, e->column);
	if (e->key)
		return snprintf(buf, len, "%s%s: %s: %s", file, place, e->key, e->message);
	return snprintf(buf, len, "%s%s: %s", file, place, e->message);
}

void diag_print(struct diag *d, FILE *fp)
{
	char buf[2048];

	sort_entries(d);
	for (size_t i = 0; i < d->n; i++) {
		diag_format(d, i, buf, sizeof(buf));
		fprintf(fp, "%s\n", buf);
	}
	if (d->dropped)
		fprintf(fp, "(%zu more errors could not be recorded: out of memory)\n", d->dropped);
}
