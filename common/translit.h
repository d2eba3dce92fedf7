/*
 * translit: text in any script made ASCII, through ICU's transliterators.
 *
 * translit_ascii() is what the `ascii` and `slug` filters use: the input is
 * normalized to NFC, then transliterated with ICU's "Any-Latin; Latin-ASCII"
 * (Cyrillic, Greek, Arabic, Hebrew, Han, Devanagari, Thai, ... become Latin,
 * then Latin letters lose their marks: José -> Jose, ß -> ss, Ø -> O,
 * Ł -> L, Иван -> Ivan, 王小明 -> wang xiao ming).  What is still not ASCII
 * afterwards is dropped.  Pure ASCII input is copied as it is, and text whose
 * letters are all Latin is transliterated one character at a time from a
 * cache of ICU's answers, which is what makes a directory's worth of names
 * fast; the answers are the same.
 *
 * translit_open() compiles a named ICU transform (an id such as
 * "Russian-Latin/BGN", or a compound "Any-Latin; Latin-ASCII") once;
 * translit_apply() runs it over NFC-normalized input and keeps its output
 * as ICU gives it (UTF-8, not necessarily ASCII).
 *
 * Threads: a struct translit may be used by several threads at once (each
 * use takes its lock); translit_ascii() is safe from any thread.
 * Memory: translit_open() allocates; the caller frees with translit_free().
 * Results are appended to a caller's sbuf; nothing else is retained.
 * Input must be valid UTF-8 (the mapping checks it before any filter runs).
 */
#ifndef FLA_TRANSLIT_H
#define FLA_TRANSLIT_H

#include <stddef.h>

#include "common/sbuf.h"

struct translit;

/* Compiles transform `id`; on failure returns -1 with a message in err. */
int translit_open(struct translit **out, const char *id, char *err, size_t errlen);
void translit_free(struct translit *t);
/* Appends t applied to s; returns -1 (out unchanged) if ICU fails. */
int translit_apply(struct translit *t, struct sbuf *out, const char *s, size_t len);

/* Appends s normalized to NFC; returns -1 (out unchanged) if ICU fails. */
int translit_nfc(struct sbuf *out, const char *s, size_t len);

/* Appends s in ASCII (see above); returns -1 (out unchanged) if ICU fails. */
int translit_ascii(struct sbuf *out, const char *s, size_t len);

#endif
