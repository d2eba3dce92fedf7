#include "build.h"

#include "common/sbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(struct sbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void sbuf_free(struct sbuf *b)
{
	free(b->s);
	memset(b, 0, sizeof(*b));
}

void sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	if (b->s)
		b->s[0] = '\0';
}

void sbuf_truncate(struct sbuf *b, size_t len)
{
	if (len < b->len) {
		b->len = len;
		b->s[len] = '\0';
	}
}

static bool grow(struct sbuf *b, size_t extra)
{
	size_t need, cap;
	char *s;

	if (b->failed)
		return false;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	s = realloc(b->s, cap);
	if (!s) {
		b->failed = true;
		return false;
	}
	b->s = s;
	b->cap = cap;
	return true;
}

void sbuf_add(struct sbuf *b, const char *s, size_t len)
{
	if (!grow(b, len))
		return;
	memcpy(b->s + b->len, s, len);
	b->len += len;
	b->s[b->len] = '\0';
}

void sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

void sbuf_addc(struct sbuf *b, char c)
{
	if (!grow(b, 1))
		return;
	b->s[b->len++] = c;
	b->s[b->len] = '\0';
}

void sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap)
{
	va_list again;
	int n;

	va_copy(again, ap);
	n = vsnprintf(NULL, 0, fmt, ap);
	if (n >= 0 && grow(b, (size_t)n)) {
		vsnprintf(b->s + b->len, (size_t)n + 1, fmt, again);
		b->len += (size_t)n;
	}
	va_end(again);
}

void sbuf_addf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sbuf_vaddf(b, fmt, ap);
	va_end(ap);
}

void sbuf_prefixf(struct sbuf *b, const char *fmt, ...)
{
	struct sbuf head;
	va_list ap;

	sbuf_init(&head);
	va_start(ap, fmt);
	sbuf_vaddf(&head, fmt, ap);
	va_end(ap);
	sbuf_adds(&head, sbuf_str(b));
	if (head.failed) {
		b->failed = true;
	} else {
		sbuf_reset(b);
		sbuf_add(b, head.s, head.len);
	}
	sbuf_free(&head);
}

const char *sbuf_str(const struct sbuf *b)
{
	return b->s ? b->s : "";
}

char *sbuf_detach(struct sbuf *b)
{
	char *s;

	if (b->failed) {
		sbuf_free(b);
		return NULL;
	}
	s = b->s ? b->s : strdup("");
	memset(b, 0, sizeof(*b));
	return s;
}
