/* json: see json.h. */
#include "build.h"

#include "json.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { EXACT_DIGITS = 15 }; /* integers of more digits than this may not survive a double */

static bool number_char(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* The length of the number token at p, and whether it is an integer of
 * more than EXACT_DIGITS digits. */
static size_t number_token(const char *p, const char *stop, bool *big)
{
	size_t n = 0, digits = 0;
	bool integer = true;

	while (p + n < stop && number_char(p[n])) {
		if (p[n] >= '0' && p[n] <= '9')
			digits++;
		else if (p[n] != '-' || n > 0)
			integer = false;
		n++;
	}
	*big = integer && digits > EXACT_DIGITS;
	return n;
}

/* The text with every big integer literal outside strings quoted, or NULL
 * when there is none (or memory ran out: *failed).  at[] gets the offset in
 * the copy of each quote pair's opening quote, for mapping positions back. */
static char *quote_big(const char *text, size_t len, size_t **at, size_t *nat, size_t *outlen, bool *failed)
{
	const char *p = text, *stop = text + len;
	char *out = NULL, *bigger;
	size_t used = 0, cap = 0, *grown;
	bool in_string = false;

	*at = NULL;
	*nat = 0;
	*failed = true;
	while (p < stop) {
		bool big = false;
		size_t n = 1;
		if (in_string) {
			if (*p == '\\' && p + 1 < stop)
				n = 2;
			else if (*p == '"')
				in_string = false;
		} else if (*p == '"') {
			in_string = true;
		} else if ((*p >= '0' && *p <= '9') || *p == '-') {
			n = number_token(p, stop, &big);
		}
		if (big && !out) { /* the first one: copy what came before */
			cap = len + 64;
			if (!(out = malloc(cap)))
				goto cleanup;
			memcpy(out, text, (size_t)(p - text));
			used = (size_t)(p - text);
		}
		if (out && used + n + 3 > cap) {
			if (!(bigger = realloc(out, cap = (used + n + 3) * 2)))
				goto cleanup;
			out = bigger;
		}
		if (big) {
			if (!(grown = realloc(*at, (*nat + 1) * sizeof(**at))))
				goto cleanup;
			*at = grown;
			(*at)[(*nat)++] = used;
			out[used++] = '"';
		}
		if (out) {
			memcpy(out + used, p, n);
			used += n;
		}
		if (big)
			out[used++] = '"';
		p += n;
	}
	if (out)
		out[used] = '\0';
	*outlen = used;
	*failed = false;
cleanup:
	if (*failed) {
		free(out);
		free(*at);
		out = NULL;
		*at = NULL;
		*nat = 0;
	}
	return out;
}

cJSON *json_parse(const char *text, size_t len, const char **end)
{
	size_t *at = NULL, nat = 0, qlen = 0;
	const char *qend = NULL;
	bool failed;
	char *quoted = quote_big(text, len, &at, &nat, &qlen, &failed);
	cJSON *j = NULL;

	if (failed)
		return NULL;
	if (!quoted) {
		j = cJSON_ParseWithLengthOpts(text, len, end, 0);
		if (!j && end)
			*end = cJSON_GetErrorPtr();
		return j;
	}
	j = cJSON_ParseWithLengthOpts(quoted, qlen, &qend, 0);
	if (j && end) {
		/* back to text: two quotes less for each pair that opened before the end */
		size_t off = (size_t)(qend - quoted), pairs = 0;
		while (pairs < nat && at[pairs] < off)
			pairs++;
		*end = text + off - 2 * pairs;
	} else if (!j) {
		/* the mistake is where it is in text: cJSON says it there */
		cJSON_Delete(cJSON_ParseWithLengthOpts(text, len, end, 0));
		if (end)
			*end = cJSON_GetErrorPtr();
	}
	free(quoted);
	free(at);
	return j;
}
