#include "build.h"

#include "common/utf8.h"

#include <stdlib.h>

#include <unicode/uchar.h>

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

static void map_case(struct sbuf *out, const char *s, size_t len, bool upper)
{
	size_t i = 0;
	uint32_t cp;

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
		utf8_encode(out, (uint32_t)(upper ? u_toupper((UChar32)cp) : u_tolower((UChar32)cp)));
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
