/* translit: see translit.h. */
#include "build.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uscript.h>
#include <unicode/ustring.h>
#include <unicode/utrans.h>

#include "common/translit.h"
#include "common/utf8.h"

struct translit {
	UTransliterator *u;
	pthread_mutex_t lock;
};

/* UTF-16 text being worked on. */
struct u16 {
	UChar *s;
	int32_t len, cap;
};

static void u16_free(struct u16 *t)
{
	free(t->s);
	t->s = NULL;
	t->len = t->cap = 0;
}

static int u16_reserve(struct u16 *t, int32_t cap)
{
	UChar *n;

	if (cap <= t->cap)
		return 0;
	n = realloc(t->s, (size_t)cap * sizeof(UChar));
	if (!n)
		return -1;
	t->s = n;
	t->cap = cap;
	return 0;
}

/* UTF-8 to UTF-16 (never more units than bytes), then NFC. */
static int u16_from_utf8_nfc(struct u16 *t, const char *s, size_t len)
{
	UErrorCode st = U_ZERO_ERROR;
	const UNormalizer2 *nfc = unorm2_getNFCInstance(&st);
	struct u16 src = { 0 };
	int rc = -1;
	int32_t n;

	if (U_FAILURE(st) || len > INT32_MAX / 4 || u16_reserve(&src, (int32_t)len + 1) < 0)
		goto cleanup;
	u_strFromUTF8(src.s, src.cap, &src.len, s, (int32_t)len, &st);
	if (U_FAILURE(st))
		goto cleanup;
	if (unorm2_isNormalized(nfc, src.s, src.len, &st) && U_SUCCESS(st)) {
		*t = src;
		src.s = NULL;
		rc = 0;
		goto cleanup;
	}
	st = U_ZERO_ERROR;
	n = src.len * 3 + 1; /* NFC grows text by three times at the most */
	if (u16_reserve(t, n) < 0)
		goto cleanup;
	t->len = unorm2_normalize(nfc, src.s, src.len, t->s, t->cap, &st);
	rc = U_FAILURE(st) ? -1 : 0;
cleanup:
	u16_free(&src);
	return rc;
}

/* Runs u over t in place, growing t until the result fits. */
static int u16_transliterate(UTransliterator *u, struct u16 *t)
{
	struct u16 work = { 0 };
	int32_t cap = t->len * 4 + 16;
	int rc = -1;

	for (int round = 0; round < 4; round++, cap *= 4) {
		UErrorCode st = U_ZERO_ERROR;
		int32_t limit = t->len;
		if (u16_reserve(&work, cap) < 0)
			goto cleanup;
		memcpy(work.s, t->s, (size_t)t->len * sizeof(UChar));
		work.len = t->len;
		utrans_transUChars(u, work.s, &work.len, work.cap, 0, &limit, &st);
		if (st == U_BUFFER_OVERFLOW_ERROR)
			continue;
		if (U_FAILURE(st))
			goto cleanup;
		u16_free(t);
		*t = work;
		work.s = NULL;
		rc = 0;
		goto cleanup;
	}
cleanup:
	u16_free(&work);
	return rc;
}

static int u16_to_sbuf(struct sbuf *out, const struct u16 *t, bool ascii_only)
{
	UErrorCode st = U_ZERO_ERROR;
	int32_t n = 0;
	char *buf;

	if (ascii_only) {
		for (int32_t i = 0; i < t->len; i++)
			if (t->s[i] < 0x80)
				sbuf_addc(out, (char)t->s[i]);
		return 0;
	}
	u_strToUTF8(NULL, 0, &n, t->s, t->len, &st);
	if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
		return -1;
	buf = malloc((size_t)n + 1);
	if (!buf)
		return -1;
	st = U_ZERO_ERROR;
	u_strToUTF8(buf, n + 1, &n, t->s, t->len, &st);
	if (U_SUCCESS(st))
		sbuf_add(out, buf, (size_t)n);
	free(buf);
	return U_FAILURE(st) ? -1 : 0;
}

/* Opens transform id, or the rules given under that name when rules is set. */
static int open_transform(struct translit **out, const char *id, const char *rules, char *err, size_t errlen)
{
	UErrorCode st = U_ZERO_ERROR;
	UParseError pe;
	struct translit *t = calloc(1, sizeof(*t));
	UChar uid[256], urules[512];
	int32_t n = 0, rn = 0;
	int rc = -1;

	*out = NULL;
	if (!t) {
		snprintf(err, errlen, "out of memory");
		goto cleanup;
	}
	u_strFromUTF8(uid, (int32_t)(sizeof(uid) / sizeof(uid[0])), &n, id, -1, &st);
	if (rules && U_SUCCESS(st))
		u_strFromUTF8(urules, (int32_t)(sizeof(urules) / sizeof(urules[0])), &rn, rules, -1, &st);
	if (U_FAILURE(st)) {
		snprintf(err, errlen, "the transform id \"%s\" is too long", id);
		goto cleanup;
	}
	t->u = utrans_openU(uid, n, UTRANS_FORWARD, rules ? urules : NULL, rules ? rn : 0, &pe, &st);
	if (st == U_INVALID_ID) {
		snprintf(err, errlen, "ICU has no transform \"%s\" (an id such as 'Russian-Latin/BGN' or "
		         "'Any-Latin; Latin-ASCII')", id);
		goto cleanup;
	}
	if (U_FAILURE(st)) {
		snprintf(err, errlen, "ICU cannot compile the transform \"%s\" (%s)", id, u_errorName(st));
		goto cleanup;
	}
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	t = NULL;
	rc = 0;
cleanup:
	free(t);
	return rc;
}

int translit_open(struct translit **out, const char *id, char *err, size_t errlen)
{
	return open_transform(out, id, NULL, err, errlen);
}

void translit_free(struct translit *t)
{
	if (!t)
		return;
	utrans_close(t->u);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* Runs t over text under t's lock. */
static int locked_transliterate(struct translit *t, struct u16 *text)
{
	int rc;

	pthread_mutex_lock(&t->lock);
	rc = u16_transliterate(t->u, text);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* NFC, then t, appended to out (only its ASCII when ascii_only). */
static int run(struct translit *t, struct sbuf *out, const char *s, size_t len, bool ascii_only)
{
	struct u16 text = { 0 };
	int rc = -1;

	if (u16_from_utf8_nfc(&text, s, len) < 0)
		goto cleanup;
	rc = locked_transliterate(t, &text);
	if (rc == 0)
		rc = u16_to_sbuf(out, &text, ascii_only);
cleanup:
	u16_free(&text);
	return rc;
}

static bool all_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

int translit_nfc(struct sbuf *out, const char *s, size_t len)
{
	struct u16 text = { 0 };
	int rc = -1;

	if (all_ascii(s, len)) { /* ASCII is NFC */
		sbuf_add(out, s, len);
		return 0;
	}
	if (u16_from_utf8_nfc(&text, s, len) == 0)
		rc = u16_to_sbuf(out, &text, false);
	u16_free(&text);
	return rc;
}

int translit_apply(struct translit *t, struct sbuf *out, const char *s, size_t len)
{
	return run(t, out, s, len, false);
}

/* The default transform, opened once for the process. */
static struct translit *any_ascii;
static pthread_once_t any_ascii_once = PTHREAD_ONCE_INIT;

/*
 * Any-Latin, then Latin-ASCII; between them the letters whose ASCII form
 * the agent gave before it used ICU and ICU gives otherwise or not at all
 * (kra, O with middle tilde, barred o), so no uid changes on upgrade.
 */
static const char any_ascii_rules[] =
	":: Any-Latin ;"
	"\\u0138 > k ; \\u019F > O ; \\u0275 > o ;"
	":: Latin-ASCII ;";

static void any_ascii_open(void)
{
	char err[256];

	if (open_transform(&any_ascii, "Any-ASCII/factorial-ldap-agent", any_ascii_rules, err, sizeof(err)) < 0)
		any_ascii = NULL;
}

static void any_ascii_close(void) __attribute__((destructor));
static void any_ascii_close(void)
{
	translit_free(any_ascii);
	any_ascii = NULL;
}

/*
 * ICU's answer for one character of Latin text, kept: a state per code
 * point below CACHE_END (0 not asked yet, 1 answered, 2 answer too long to
 * keep) and the answer's ASCII.
 */
#define CACHE_END 0x2070 /* Latin blocks, combining marks, general punctuation */
#define ANSWER_MAX 8
static atomic_uchar cache_state[CACHE_END];
static char cache_answer[CACHE_END][ANSWER_MAX];

/* Asks ICU about cp and keeps the answer; called with any_ascii's lock held. */
static int learn(UChar32 cp)
{
	struct u16 one = { 0 };
	struct sbuf a;
	int rc = -1;

	sbuf_init(&a);
	if (u16_reserve(&one, 2) < 0)
		goto cleanup;
	one.s[0] = (UChar)cp;
	one.len = 1;
	if (u16_transliterate(any_ascii->u, &one) < 0 || u16_to_sbuf(&a, &one, true) < 0)
		goto cleanup;
	if (a.len < ANSWER_MAX)
		memcpy(cache_answer[cp], sbuf_str(&a), a.len + 1);
	atomic_store_explicit(&cache_state[cp], a.len < ANSWER_MAX ? 1 : 2, memory_order_release);
	rc = 0;
cleanup:
	u16_free(&one);
	sbuf_free(&a);
	return rc;
}

/* ICU's ASCII for cp from the cache (NULL: too long to keep); -1 if ICU fails. */
static int cached(UChar32 cp, const char **answer)
{
	unsigned char state = atomic_load_explicit(&cache_state[cp], memory_order_acquire);
	int rc = 0;

	if (state == 0) {
		pthread_mutex_lock(&any_ascii->lock);
		if (atomic_load_explicit(&cache_state[cp], memory_order_acquire) == 0)
			rc = learn(cp);
		pthread_mutex_unlock(&any_ascii->lock);
		state = atomic_load_explicit(&cache_state[cp], memory_order_acquire);
	}
	*answer = state == 1 ? cache_answer[cp] : NULL;
	return rc;
}

/* Whether every character of t is below CACHE_END and not of another script. */
static bool latin_text(const struct u16 *t)
{
	for (int32_t i = 0; i < t->len; i++) {
		UErrorCode st = U_ZERO_ERROR;
		UChar32 cp = t->s[i];
		UScriptCode sc;
		if (cp < 0x80)
			continue;
		if (cp >= CACHE_END)
			return false;
		sc = uscript_getScript(cp, &st);
		if (U_FAILURE(st) || (sc != USCRIPT_LATIN && sc != USCRIPT_COMMON && sc != USCRIPT_INHERITED))
			return false;
	}
	return true;
}

/* Appends the cached answer for cp: 0, -1 if ICU fails, -2 if not cached. */
static int append_cached(struct sbuf *out, UChar32 cp)
{
	const char *answer = NULL;

	if (cp < 0x80) {
		sbuf_addc(out, (char)cp);
		return 0;
	}
	if (cached(cp, &answer) < 0)
		return -1;
	if (!answer) /* too long to keep: the whole text goes to ICU */
		return -2;
	sbuf_adds(out, answer);
	return 0;
}

/* Latin text one character at a time, from the cache. */
static int latin_to_ascii(struct sbuf *out, const struct u16 *t)
{
	int rc = 0;

	for (int32_t i = 0; rc == 0 && i < t->len; i++)
		rc = append_cached(out, t->s[i]);
	return rc;
}

/*
 * Precomposed Latin letters, IPA, spacing modifiers, Latin Extended
 * Additional and general punctuation but for U+2000/U+2001 (NFC changes
 * those): text of these alone is already NFC and needs no script check.
 */
static bool composed_latin(uint32_t cp)
{
	return cp < 0x300 || (cp >= 0x1E00 && cp < 0x1F00) || (cp >= 0x2002 && cp < CACHE_END);
}

/* The common case, straight from UTF-8: -2 when the text is not of that kind. */
static int composed_latin_to_ascii(struct sbuf *out, const char *s, size_t len)
{
	size_t i = 0;
	uint32_t cp;
	int rc = 0;

	while (rc == 0 && i < len) {
		if (utf8_decode(s, len, &i, &cp) < 0 || !composed_latin(cp))
			return -2;
		rc = append_cached(out, (UChar32)cp);
	}
	return rc;
}

int translit_ascii(struct sbuf *out, const char *s, size_t len)
{
	struct u16 text = { 0 };
	size_t mark = out->len;
	int rc = -1;

	if (all_ascii(s, len)) {
		sbuf_add(out, s, len);
		return 0;
	}
	pthread_once(&any_ascii_once, any_ascii_open);
	if (!any_ascii)
		goto cleanup;
	rc = composed_latin_to_ascii(out, s, len);
	if (rc != -2)
		goto cleanup;
	sbuf_truncate(out, mark);
	rc = -1;
	if (u16_from_utf8_nfc(&text, s, len) < 0)
		goto cleanup;
	if (latin_text(&text)) {
		rc = latin_to_ascii(out, &text);
		if (rc != -2)
			goto cleanup;
		sbuf_truncate(out, mark);
	}
	rc = locked_transliterate(any_ascii, &text);
	if (rc == 0)
		rc = u16_to_sbuf(out, &text, true);
cleanup:
	if (rc < 0)
		sbuf_truncate(out, mark);
	u16_free(&text);
	return rc;
}
