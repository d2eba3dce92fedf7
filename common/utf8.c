#include "build.h"

#include "common/utf8.h"

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <wctype.h>

struct translit_row {
	uint32_t cp;
	const char *ascii;
};

#include "common/translit_table.h"

int utf8_decode(const char *s, size_t len, size_t *i, uint32_t *cp)
{
	const unsigned char *p = (const unsigned char *)s + *i;
	size_t left = len - *i, n;
	uint32_t c, min;

	if (left == 0)
		return -1;
	if (p[0] < 0x80) {
		*cp = p[0];
		*i += 1;
		return 0;
	}
	if ((p[0] & 0xE0) == 0xC0) {
		n = 2;
		c = p[0] & 0x1F;
		min = 0x80;
	} else if ((p[0] & 0xF0) == 0xE0) {
		n = 3;
		c = p[0] & 0x0F;
		min = 0x800;
	} else if ((p[0] & 0xF8) == 0xF0) {
		n = 4;
		c = p[0] & 0x07;
		min = 0x10000;
	} else {
		return -1;
	}
	if (left < n)
		return -1;
	for (size_t k = 1; k < n; k++) {
		if ((p[k] & 0xC0) != 0x80)
			return -1;
		c = (c << 6) | (p[k] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return -1;
	*cp = c;
	*i += n;
	return 0;
}

void utf8_encode(struct sbuf *out, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xC0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xE0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		b[0] = (char)(0xF0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	sbuf_add(out, b, n);
}

bool utf8_valid(const char *s, size_t len)
{
	size_t i = 0;
	uint32_t cp;

	while (i < len) {
		if ((unsigned char)s[i] < 0x80) {
			if (s[i] == '\0')
				return false;
			i++;
			continue;
		}
		if (utf8_decode(s, len, &i, &cp) < 0)
			return false;
	}
	return true;
}

size_t utf8_prefix_bytes(const char *s, size_t len, size_t n)
{
	size_t i = 0;
	uint32_t cp;

	while (n > 0 && i < len) {
		if (utf8_decode(s, len, &i, &cp) < 0)
			break;
		n--;
	}
	return i;
}

size_t utf8_length(const char *s, size_t len)
{
	size_t i = 0, n = 0;
	uint32_t cp;

	while (i < len && utf8_decode(s, len, &i, &cp) == 0)
		n++;
	return n;
}

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_locale_init(void)
{
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static void map_case(struct sbuf *out, const char *s, size_t len, bool upper)
{
	size_t i = 0;
	uint32_t cp;

	pthread_once(&utf8_once, utf8_locale_init);
	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x80) {
			sbuf_addc(out, (char)(upper ? (c >= 'a' && c <= 'z' ? c - 32 : c)
			                            : (c >= 'A' && c <= 'Z' ? c + 32 : c)));
			i++;
			continue;
		}
		if (utf8_decode(s, len, &i, &cp) < 0) {
			i++; /* invalid input was rejected earlier; skip defensively */
			continue;
		}
		if (utf8_locale)
			cp = (uint32_t)(upper ? towupper_l((wint_t)cp, utf8_locale) : towlower_l((wint_t)cp, utf8_locale));
		utf8_encode(out, cp);
	}
}

void utf8_lower(struct sbuf *out, const char *s, size_t len)
{
	map_case(out, s, len, false);
}

void utf8_upper(struct sbuf *out, const char *s, size_t len)
{
	map_case(out, s, len, true);
}

static const char *translit_lookup(uint32_t cp)
{
	size_t lo = 0, hi = sizeof(translit_rows) / sizeof(translit_rows[0]);

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (translit_rows[mid].cp == cp)
			return translit_rows[mid].ascii;
		if (translit_rows[mid].cp < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void utf8_ascii(struct sbuf *out, const char *s, size_t len)
{
	size_t i = 0;
	uint32_t cp;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		const char *t;
		if (c < 0x80) {
			sbuf_addc(out, (char)c);
			i++;
			continue;
		}
		if (utf8_decode(s, len, &i, &cp) < 0) {
			i++;
			continue;
		}
		t = translit_lookup(cp);
		if (t)
			sbuf_adds(out, t);
		/* combining marks and everything else without an ASCII form: dropped */
	}
}
