/*
 * utf8: the text operations the mapping filters need, UTF-8 aware.
 *
 * Decoding is strict (no overlong forms, no surrogates, nothing above
 * U+10FFFF).  Case mapping uses the C library's Unicode tables through the
 * C.UTF-8 locale (towlower_l/towupper_l), whatever the process locale is.
 * Transliteration to ASCII covers Latin-1 Supplement, Latin Extended-A and
 * -B, Latin Extended Additional and common punctuation (translit_table.h);
 * what has no ASCII form is dropped.
 *
 * Memory: functions append to a caller's sbuf; nothing is retained.
 */
#ifndef FLA_UTF8_H
#define FLA_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sbuf.h"

/* Decodes the code point at s[*i], advancing *i; returns -1 on invalid input. */
int utf8_decode(const char *s, size_t len, size_t *i, uint32_t *cp);
void utf8_encode(struct sbuf *out, uint32_t cp);
bool utf8_valid(const char *s, size_t len);
/* Number of bytes of the first n code points of a valid string. */
size_t utf8_prefix_bytes(const char *s, size_t len, size_t n);
size_t utf8_length(const char *s, size_t len);

void utf8_lower(struct sbuf *out, const char *s, size_t len);
void utf8_upper(struct sbuf *out, const char *s, size_t len);
void utf8_ascii(struct sbuf *out, const char *s, size_t len);

#endif
