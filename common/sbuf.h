/*
 * sbuf: a growable, NUL-terminated byte buffer for building strings.
 *
 * Appending never fails visibly: on allocation failure the buffer keeps what
 * it had and sets `failed`, which the caller checks once at the end.
 *
 * Memory: the buffer owns `s`; sbuf_detach() hands it to the caller (who
 * frees it) and leaves the buffer empty; sbuf_free() releases it.
 */
#ifndef FLA_SBUF_H
#define FLA_SBUF_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>

struct sbuf {
	char *s;
	size_t len;
	size_t cap;
	bool failed;
};

void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_reset(struct sbuf *b); /* empty, keeps the allocation */
void sbuf_truncate(struct sbuf *b, size_t len); /* back to its first len bytes */
void sbuf_add(struct sbuf *b, const char *s, size_t len);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_addf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_vaddf(struct sbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Puts formatted text in front of the content ("employee 4: " before a reason). */
void sbuf_prefixf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The content ("" when empty), still owned by the buffer. */
const char *sbuf_str(const struct sbuf *b);
/* The content as a malloc'd string (NULL when allocation failed). */
char *sbuf_detach(struct sbuf *b);

#endif
