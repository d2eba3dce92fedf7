/*
 * tmpl_filters: the filters of the template language, one function each: of
 * a value (lower, ascii, truncate, date, ...) or of the list of values
 * (default, join, employee_dn, translit, map). Their rows are in filters[]
 * of tmpl.c.
 */
#include "build.h"

#include "tmpl_int.h"

#include "tmpl.h"
#include "common/nearest.h"
#include "common/clock.h"
#include "common/strmap.h"
#include "dn.h"
#include "common/translit.h"
#include "common/utf8.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the filters ---------------------------------------------------------- */

int tmpl_f_lower(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1)
{
	(void)env, (void)arg0, (void)arg1;
	utf8_lower(out, in, len);
	return 0;
}

int tmpl_f_upper(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1)
{
	(void)env, (void)arg0, (void)arg1;
	utf8_upper(out, in, len);
	return 0;
}

int tmpl_f_trim(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                const char *arg1)
{
	(void)env, (void)arg0, (void)arg1;
	tmpl_trim(out, in, len);
	return 0;
}

int tmpl_f_ascii(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1)
{
	(void)arg0, (void)arg1;
	if (translit_ascii(out, in, len) == 0)
		return 0;
	sbuf_adds(env->err, "ascii: the transliteration failed (ICU)");
	return -1;
}

int tmpl_f_slug(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                const char *arg1)
{
	(void)arg0, (void)arg1;
	if (tmpl_slugify(out, in, len) == 0)
		return 0;
	sbuf_adds(env->err, "slug: the transliteration failed (ICU)");
	return -1;
}

int tmpl_f_alnum(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1)
{
	(void)env, (void)arg0, (void)arg1;
	for (size_t i = 0; i < len; i++)
		if (isalnum((unsigned char)in[i]) && (unsigned char)in[i] < 0x80)
			sbuf_addc(out, in[i]);
	return 0;
}

int tmpl_f_truncate(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                    const char *arg1)
{
	struct sbuf nfc;
	long long n;
	int rc = -1;

	(void)arg1;
	sbuf_init(&nfc);
	if (tmpl_parse_integer(arg0, &n) < 0 || n < 0) {
		sbuf_addf(env->err, "truncate: \"%s\" is not a whole number", arg0);
		goto cleanup;
	}
	/* characters as NFC counts them: a decomposed é is one */
	if (translit_nfc(&nfc, in, len) < 0) {
		sbuf_adds(env->err, "truncate: the value could not be normalized (ICU)");
		goto cleanup;
	}
	sbuf_add(out, sbuf_str(&nfc), utf8_prefix_bytes(sbuf_str(&nfc), nfc.len, (size_t)n));
	rc = 0;
cleanup:
	sbuf_free(&nfc);
	return rc;
}

int tmpl_f_replace(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                   const char *arg1)
{
	size_t fl = strlen(arg0);
	const char *p = in, *hit;

	(void)len;
	if (!fl) {
		sbuf_adds(env->err, "replace: the text to replace is empty");
		return -1;
	}
	while ((hit = strstr(p, arg0))) {
		sbuf_add(out, p, (size_t)(hit - p));
		sbuf_adds(out, arg1);
		p = hit + fl;
	}
	sbuf_adds(out, p);
	return 0;
}

int tmpl_f_date(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                const char *arg1)
{
	struct tm tm;
	char buf[256];
	size_t n;

	(void)len, (void)arg1;
	if (!in[0])
		return 0;
	if (clock_parse_iso8601(in, &tm, NULL) < 0) {
		sbuf_addf(env->err, "date: \"%s\" is not an ISO 8601 date or timestamp", in);
		return -1;
	}
	/* the format is the mapping author's, by design */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	n = strftime(buf, sizeof(buf), arg0, &tm);
#pragma GCC diagnostic pop
	sbuf_add(out, buf, n);
	return 0;
}

int tmpl_f_add(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
               const char *arg1)
{
	long long a, b, r;

	(void)len, (void)arg1;
	if (!in[0])
		return 0;
	if (tmpl_parse_integer(in, &a) < 0) {
		sbuf_addf(env->err, "add: \"%s\" is not an integer", in);
		return -1;
	}
	if (tmpl_parse_integer(arg0, &b) < 0) {
		sbuf_addf(env->err, "add: the argument \"%s\" is not an integer", arg0);
		return -1;
	}
	if (__builtin_add_overflow(a, b, &r)) {
		sbuf_addf(env->err, "add: %lld + %lld is out of range", a, b);
		return -1;
	}
	sbuf_addf(out, "%lld", r);
	return 0;
}

int tmpl_f_before(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                  const char *arg1)
{
	const char *hit = arg0[0] ? strstr(in, arg0) : NULL;

	(void)env, (void)arg1;
	sbuf_add(out, in, hit ? (size_t)(hit - in) : len);
	return 0;
}

int tmpl_f_after(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1)
{
	const char *hit = arg0[0] ? strstr(in, arg0) : NULL;

	(void)env, (void)len, (void)arg1;
	if (hit)
		sbuf_adds(out, hit + strlen(arg0));
	return 0;
}

int tmpl_f_rdn(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
               const char *arg1)
{
	char *v;

	(void)len, (void)arg0, (void)arg1;
	if (!in[0])
		return 0;
	v = dn_rdn_value(in);
	if (!v) {
		sbuf_addf(env->err, "rdn: \"%s\" is not a DN", in);
		return -1;
	}
	sbuf_adds(out, v);
	free(v);
	return 0;
}

int tmpl_f_default(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals)
{
	if (!tmpl_all_empty(vals))
		return 0;
	vlist_clear(vals);
	return tmpl_arg_values(&f->args[0], env, vals);
}

const struct tmpl_table *tmpl_table_find(const struct tmpl_tables *t, const char *name)
{
	for (size_t i = 0; t && i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return &t->v[i];
	return NULL;
}

/* Each value through the table; an empty value stays empty (for a later default). */
int tmpl_f_map(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals)
{
	const char *name = f->args[0].path.seg[0];
	const struct tmpl_table *t = tmpl_table_find(env->tables, name);
	char *fallback = NULL;
	int rc = -1;

	if (!t) {
		sbuf_addf(env->err, "map: no table \"%s\"", name);
		return -1;
	}
	if (f->nargs > 1 && tmpl_arg_single(&f->args[1], env, "map", &fallback) < 0)
		return -1;
	for (size_t i = 0; i < vals->n; i++) {
		const char *to = NULL;
		char *copy;
		if (!vals->v[i][0])
			continue;
		to = strmap_get(&t->entries, vals->v[i]);
		if (!to && !fallback) {
			sbuf_addf(env->err, "map: \"%s\" is not in table %s, and no default is given (map(%s, 'DEFAULT'))",
			          vals->v[i], name, name);
			goto cleanup;
		}
		if (!(copy = strdup(to ? to : fallback)))
			goto cleanup;
		free(vals->v[i]);
		vals->v[i] = copy;
	}
	rc = 0;
cleanup:
	free(fallback);
	return rc;
}

int tmpl_f_join(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals)
{
	char *sep = NULL;
	struct sbuf b;
	int rc = -1;

	sbuf_init(&b);
	if (tmpl_arg_single(&f->args[0], env, "join", &sep) < 0)
		goto cleanup;
	for (size_t i = 0, k = 0; i < vals->n; i++) {
		if (!vals->v[i][0])
			continue;
		if (k++)
			sbuf_adds(&b, sep);
		sbuf_adds(&b, vals->v[i]);
	}
	vlist_clear(vals);
	if (b.len && vlist_push(vals, sbuf_detach(&b)) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	free(sep);
	sbuf_free(&b);
	return rc;
}

/* Each value through the transform compiled from the argument. */
int tmpl_f_translit(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals)
{
	struct sbuf b;
	int rc = -1;

	sbuf_init(&b);
	for (size_t i = 0; i < vals->n; i++) {
		sbuf_reset(&b);
		if (translit_apply(f->transform, &b, vals->v[i], strlen(vals->v[i])) < 0) {
			sbuf_addf(env->err, "translit: the transform '%s' failed (ICU)", f->args[0].text);
			goto cleanup;
		}
		free(vals->v[i]);
		vals->v[i] = sbuf_detach(&b);
		if (!vals->v[i])
			goto cleanup;
	}
	rc = 0;
cleanup:
	sbuf_free(&b);
	return rc;
}

/* Each value an employee id, each result the DN of that employee's entry; an
 * id without an entry is left out and noted in env->unresolved. */
int tmpl_f_employee_dn(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals)
{
	struct vlist out;
	struct strmap noted; /* the ids in env->unresolved, to note each once in linear time */
	int rc = -1;

	(void)f;
	vlist_init(&out);
	strmap_init(&noted);
	for (size_t i = 0; env->unresolved && i < env->unresolved->n; i++)
		if (strmap_put(&noted, env->unresolved->v[i], NULL) < 0)
			goto cleanup;
	for (size_t i = 0; i < vals->n; i++) {
		char *dn = NULL;
		int found;
		if (!vals->v[i][0])
			continue;
		found = env->employee_dn ? env->employee_dn(env->ctx, vals->v[i], &dn, env->err) : 0;
		if (found < 0)
			goto cleanup;
		if (found == 1 && vlist_push(&out, dn) < 0)
			goto cleanup;
		if (found == 0 && env->unresolved && !strmap_get(&noted, vals->v[i]) &&
		    (strmap_put(&noted, vals->v[i], NULL) < 0 ||
		     vlist_push_copy(env->unresolved, vals->v[i], strlen(vals->v[i])) < 0))
			goto cleanup;
	}
	vlist_clear(vals);
	rc = vlist_move(vals, &out);
cleanup:
	vlist_free(&out);
	strmap_free(&noted);
	return rc;
}
