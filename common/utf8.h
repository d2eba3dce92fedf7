/*
 * utf8: the text operations the mapping filters need, UTF-8 aware.
 *
 * Decoding is strict (no overlong forms, no surrogates, nothing above
 * U+10FFFF).  Case mapping is Unicode's simple case mapping, one character
 * for one, through ICU (u_tolower/u_toupper), whatever the process locale:
 * ß stays ß in upper case, İ lowers to i, Σ lowers to σ.  Transliteration
 * lives in translit.h.
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

#endif
