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

static int check_table(struct parser *p, struct tmpl_filter *f, size_t off);
static int check_count(struct parser *p, struct tmpl_filter *f, size_t off);
static int check_integer(struct parser *p, struct tmpl_filter *f, size_t off);
static int check_nonempty(struct parser *p, struct tmpl_filter *f, size_t off);
static int check_transform(struct parser *p, struct tmpl_filter *f, size_t off);

/* Every filter: one row each, in the order of enum tmpl_filter_id.  A new
 * filter is a row here, its id in tmpl.h, and its function below. */
static const struct filter_def {
	const char *name;
	size_t nargs;
	check_fn check;   /* NULL: any argument will do */
	value_fn value;   /* applied to each value, or */
	list_fn list;     /* applied to the list of values */
	size_t min_args;  /* when fewer than nargs will do (0: exactly nargs) */
} filters[] = {
	[TF_LOWER] = { "lower", 0, NULL, tmpl_f_lower, NULL },
	[TF_UPPER] = { "upper", 0, NULL, tmpl_f_upper, NULL },
	[TF_TRIM] = { "trim", 0, NULL, tmpl_f_trim, NULL },
	[TF_ASCII] = { "ascii", 0, NULL, tmpl_f_ascii, NULL },
	[TF_SLUG] = { "slug", 0, NULL, tmpl_f_slug, NULL },
	[TF_ALNUM] = { "alnum", 0, NULL, tmpl_f_alnum, NULL },
	[TF_TRUNCATE] = { "truncate", 1, check_count, tmpl_f_truncate, NULL },
	[TF_REPLACE] = { "replace", 2, check_nonempty, tmpl_f_replace, NULL },
	[TF_DEFAULT] = { "default", 1, NULL, NULL, tmpl_f_default },
	[TF_DATE] = { "date", 1, NULL, tmpl_f_date, NULL },
	[TF_ADD] = { "add", 1, check_integer, tmpl_f_add, NULL },
	[TF_JOIN] = { "join", 1, NULL, NULL, tmpl_f_join },
	[TF_EMPLOYEE_DN] = { "employee_dn", 0, NULL, NULL, tmpl_f_employee_dn },
	[TF_BEFORE] = { "before", 1, check_nonempty, tmpl_f_before, NULL },
	[TF_AFTER] = { "after", 1, check_nonempty, tmpl_f_after, NULL },
	[TF_RDN] = { "rdn", 0, NULL, tmpl_f_rdn, NULL },
	[TF_TRANSLIT] = { "translit", 1, check_transform, NULL, tmpl_f_translit },
	[TF_MAP] = { "map", 2, check_table, NULL, tmpl_f_map, 1 },
};

#define NFILTERS (sizeof(filters) / sizeof(filters[0]))

/* ---- parsing ---------------------------------------------------------- */

struct parser {
	const char *s;
	size_t i;
	char *err;
	size_t errlen;
	size_t err_off;
};

static int fail(struct parser *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t off, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
	p->err_off = off;
	return -1;
}

static void skip_ws(struct parser *p)
{
	while (p->s[p->i] == ' ' || p->s[p->i] == '\t')
		p->i++;
}

static bool is_seg_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-';
}

static void path_free(struct tmpl_path *path)
{
	for (size_t i = 0; i < path->n; i++)
		free(path->seg[i]);
	free(path->seg);
	path->seg = NULL;
	path->n = 0;
}

static int parse_path(struct parser *p, struct tmpl_path *path)
{
	for (;;) {
		size_t start = p->i;
		char **seg;
		while (is_seg_char(p->s[p->i]))
			p->i++;
		if (p->i == start)
			return fail(p, start, "expected a field name");
		seg = realloc(path->seg, (path->n + 1) * sizeof(*seg));
		if (!seg)
			return fail(p, start, "out of memory");
		path->seg = seg;
		path->seg[path->n] = strndup(p->s + start, p->i - start);
		if (!path->seg[path->n])
			return fail(p, start, "out of memory");
		path->n++;
		if (p->s[p->i] != '.')
			return 0;
		p->i++;
	}
}

static int parse_arg(struct parser *p, struct tmpl_arg *a)
{
	char c = p->s[p->i];
	size_t start = p->i;

	if (c == '\'' || c == '"') {
		struct sbuf b;
		sbuf_init(&b);
		p->i++;
		while (p->s[p->i] && p->s[p->i] != c) {
			if (p->s[p->i] == '\\' && p->s[p->i + 1])
				p->i++;
			sbuf_addc(&b, p->s[p->i]);
			p->i++;
		}
		if (p->s[p->i] != c) {
			sbuf_free(&b);
			return fail(p, start, "unterminated string %c...%c in a filter argument", c, c);
		}
		p->i++;
		a->kind = TA_STRING;
		a->text = sbuf_detach(&b);
		return a->text ? 0 : fail(p, start, "out of memory");
	}
	if (c == '-' || isdigit((unsigned char)c)) {
		if (c == '-')
			p->i++;
		if (!isdigit((unsigned char)p->s[p->i]))
			return fail(p, start, "expected a number after -");
		while (isdigit((unsigned char)p->s[p->i]))
			p->i++;
		if (p->s[p->i] == '.' && isdigit((unsigned char)p->s[p->i + 1])) {
			p->i++;
			while (isdigit((unsigned char)p->s[p->i]))
				p->i++;
		}
		if (is_seg_char(p->s[p->i]) || p->s[p->i] == '.') {
			/* a field name that starts with a digit */
			p->i = start;
			a->kind = TA_PATH;
			return parse_path(p, &a->path);
		}
		a->kind = TA_NUMBER;
		a->text = strndup(p->s + start, p->i - start);
		return a->text ? 0 : fail(p, start, "out of memory");
	}
	if (is_seg_char(c)) {
		a->kind = TA_PATH;
		return parse_path(p, &a->path);
	}
	return fail(p, start, "expected a filter argument: a quoted string, a number or a field name");
}

static bool is_integer_text(const char *s)
{
	if (*s == '-')
		s++;
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return false;
	return true;
}

static int check_count(struct parser *p, struct tmpl_filter *f, size_t off)
{
	const struct tmpl_arg *a = &f->args[0];

	if (a->kind == TA_STRING || (a->kind == TA_NUMBER && (!is_integer_text(a->text) || a->text[0] == '-')))
		return fail(p, off, "%s: the argument must be a whole number of characters", filters[f->id].name);
	return 0;
}

/* map(TABLE[, DEFAULT]): the table is named by a bare word. */
static int check_table(struct parser *p, struct tmpl_filter *f, size_t off)
{
	const struct tmpl_arg *a = &f->args[0];

	if (a->kind != TA_PATH || a->path.n != 1)
		return fail(p, off, "map: the first argument must be the name of a table (map(sites), not map('sites'))");
	return 0;
}

static int check_integer(struct parser *p, struct tmpl_filter *f, size_t off)
{
	const struct tmpl_arg *a = &f->args[0];

	if (a->kind == TA_STRING || (a->kind == TA_NUMBER && !is_integer_text(a->text)))
		return fail(p, off, "%s: the argument must be an integer", filters[f->id].name);
	return 0;
}

static int check_nonempty(struct parser *p, struct tmpl_filter *f, size_t off)
{
	const struct tmpl_arg *a = &f->args[0];

	if (a->kind == TA_STRING && !a->text[0])
		return fail(p, off, "%s: the %s must not be empty", filters[f->id].name,
		            f->id == TF_REPLACE ? "text to replace" : "separator");
	return 0;
}

/* translit's argument names an ICU transform, compiled here once. */
static int check_transform(struct parser *p, struct tmpl_filter *f, size_t off)
{
	const struct tmpl_arg *a = &f->args[0];
	char err[256];

	if (a->kind != TA_STRING || !a->text[0])
		return fail(p, off, "translit: the argument must be the quoted id of an ICU transform, such as 'Russian-Latin/BGN'");
	if (translit_open(&f->transform, a->text, err, sizeof(err)) < 0)
		return fail(p, off, "translit: %s", err);
	return 0;
}

static int parse_filter(struct parser *p, struct tmpl_filter *f)
{
	size_t start = p->i, k;
	char name[32];

	while (isalnum((unsigned char)p->s[p->i]) || p->s[p->i] == '_')
		p->i++;
	if (p->i == start)
		return fail(p, start, "expected a filter name after |");
	if (p->i - start >= sizeof(name))
		return fail(p, start, "unknown filter \"%.*s\"", (int)(p->i - start), p->s + start);
	memcpy(name, p->s + start, p->i - start);
	name[p->i - start] = '\0';
	for (k = 0; k < NFILTERS && strcmp(filters[k].name, name) != 0; k++)
		;
	if (k == NFILTERS) {
		const char *near = nearest_name(name, &filters[0].name, NFILTERS, sizeof(filters[0]));
		if (near)
			return fail(p, start, "unknown filter \"%s\" (did you mean %s?)", name, near);
		return fail(p, start, "unknown filter \"%s\"", name);
	}
	f->id = (enum tmpl_filter_id)k;
	f->nargs = 0;
	skip_ws(p);
	if (p->s[p->i] == '(') {
		p->i++;
		skip_ws(p);
		if (p->s[p->i] != ')') {
			for (;;) {
				struct tmpl_arg dummy = { 0 };
				struct tmpl_arg *a = f->nargs < 2 ? &f->args[f->nargs] : &dummy;
				int rc = parse_arg(p, a);
				if (a == &dummy) {
					free(dummy.text);
					path_free(&dummy.path);
				}
				if (rc < 0)
					return -1;
				f->nargs++;
				skip_ws(p);
				if (p->s[p->i] == ',') {
					p->i++;
					skip_ws(p);
					continue;
				}
				break;
			}
		}
		if (p->s[p->i] != ')')
			return fail(p, p->i, "expected , or ) in the arguments of %s", name);
		p->i++;
	}
	if (filters[k].min_args && f->nargs >= filters[k].min_args && f->nargs <= filters[k].nargs) {
		/* as many as it takes */
	} else if (filters[k].min_args) {
		return fail(p, start, "%s takes %zu or %zu arguments, got %zu", name, filters[k].min_args,
		            filters[k].nargs, f->nargs);
	} else if (f->nargs != filters[k].nargs) {
		if (filters[k].nargs == 0)
			return fail(p, start, "%s takes no argument, got %zu", name, f->nargs);
		return fail(p, start, "%s takes %zu argument%s, got %zu", name, filters[k].nargs,
		            filters[k].nargs == 1 ? "" : "s", f->nargs);
	}
	return filters[k].check ? filters[k].check(p, f, start) : 0;
}

static void part_free(struct tmpl_part *part)
{
	free(part->text);
	path_free(&part->path);
	for (size_t i = 0; i < part->nfilters; i++) {
		/* both slots: an argument that failed half-parsed is not counted in nargs */
		for (size_t k = 0; k < 2; k++) {
			free(part->filters[i].args[k].text);
			path_free(&part->filters[i].args[k].path);
		}
		translit_free(part->filters[i].transform);
	}
	free(part->filters);
}

static int add_part(struct tmpl *t, struct tmpl_part *part)
{
	struct tmpl_part *parts = realloc(t->parts, (t->n + 1) * sizeof(*parts));

	if (!parts)
		return -1;
	t->parts = parts;
	t->parts[t->n++] = *part;
	return 0;
}

static int parse_expr(struct parser *p, struct tmpl_part *part)
{
	size_t open = p->i - 1;

	skip_ws(p);
	part->offset = open;
	if (p->s[p->i] == '@') {
		size_t start = ++p->i;
		while (is_seg_char(p->s[p->i]) || p->s[p->i] == ';')
			p->i++;
		if (p->i == start)
			return fail(p, start, "expected an attribute name after @");
		part->kind = TP_ATTR;
		part->attr_index = -1;
		part->text = strndup(p->s + start, p->i - start);
		if (!part->text)
			return fail(p, start, "out of memory");
	} else {
		part->kind = TP_FIELD;
		if (p->s[p->i] == '}' || p->s[p->i] == '\0')
			return p->s[p->i] ? fail(p, open, "empty {} (write {{}} for literal braces)")
			                  : fail(p, open, "unterminated { (no closing })");
		if (parse_path(p, &part->path) < 0)
			return -1;
	}
	skip_ws(p);
	while (p->s[p->i] == '|') {
		struct tmpl_filter *fs;
		p->i++;
		skip_ws(p);
		fs = realloc(part->filters, (part->nfilters + 1) * sizeof(*fs));
		if (!fs)
			return fail(p, p->i, "out of memory");
		part->filters = fs;
		memset(&fs[part->nfilters], 0, sizeof(fs[0]));
		part->nfilters++;
		if (parse_filter(p, &fs[part->nfilters - 1]) < 0)
			return -1;
		skip_ws(p);
	}
	if (p->s[p->i] == '\0')
		return fail(p, open, "unterminated { (no closing })");
	if (p->s[p->i] != '}')
		return fail(p, p->i, "unexpected \"%c\" in {...}: expected | or }", p->s[p->i]);
	p->i++;
	return 0;
}

int tmpl_parse(const char *src, struct tmpl **out, char *err, size_t errlen, size_t *err_off)
{
	struct parser p = { .s = src, .err = err, .errlen = errlen };
	struct tmpl *t = calloc(1, sizeof(*t));
	struct sbuf text;
	size_t text_start = 0;
	int rc = -1;

	sbuf_init(&text);
	*out = NULL;
	if (!t || !(t->source = strdup(src))) {
		fail(&p, 0, "out of memory");
		goto cleanup;
	}
	while (src[p.i]) {
		char c = src[p.i];
		if ((c == '{' && src[p.i + 1] == '{') || (c == '}' && src[p.i + 1] == '}')) {
			if (text.len == 0)
				text_start = p.i;
			sbuf_addc(&text, c);
			p.i += 2;
			continue;
		}
		if (c == '}') {
			fail(&p, p.i, "a lone } (write }} for a literal brace)");
			goto cleanup;
		}
		if (c != '{') {
			if (text.len == 0)
				text_start = p.i;
			sbuf_addc(&text, c);
			p.i++;
			continue;
		}
		if (text.len) {
			struct tmpl_part part = { .kind = TP_TEXT, .offset = text_start };
			part.text = sbuf_detach(&text);
			if (!part.text || add_part(t, &part) < 0) {
				free(part.text);
				fail(&p, p.i, "out of memory");
				goto cleanup;
			}
		}
		p.i++;
		{
			struct tmpl_part part = { 0 };
			if (parse_expr(&p, &part) < 0 || add_part(t, &part) < 0) {
				part_free(&part);
				if (!err[0])
					fail(&p, p.i, "out of memory");
				goto cleanup;
			}
		}
	}
	if (text.len) {
		struct tmpl_part part = { .kind = TP_TEXT, .offset = text_start };
		part.text = sbuf_detach(&text);
		if (!part.text || add_part(t, &part) < 0) {
			free(part.text);
			fail(&p, p.i, "out of memory");
			goto cleanup;
		}
	}
	*out = t;
	t = NULL;
	rc = 0;
cleanup:
	if (rc < 0 && err_off)
		*err_off = p.err_off;
	sbuf_free(&text);
	tmpl_free(t);
	return rc;
}

void tmpl_free(struct tmpl *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		part_free(&t->parts[i]);
	free(t->parts);
	free(t->source);
	free(t);
}

bool tmpl_uses_filter(const struct tmpl *t, enum tmpl_filter_id id)
{
	for (size_t i = 0; i < t->n; i++)
		for (size_t k = 0; k < t->parts[i].nfilters; k++)
			if (t->parts[i].filters[k].id == id)
				return true;
	return false;
}
/* ---- evaluation -------------------------------------------------------- */

void tmpl_format_number(double d, char *buf, size_t len)
{
	if (d == floor(d) && fabs(d) < 9007199254740992.0)
		snprintf(buf, len, "%.0f", d);
	else
		snprintf(buf, len, "%.15g", d);
}

static int push_json_value(const cJSON *v, const struct tmpl_path *path, size_t depth, struct vlist *out,
                           struct sbuf *err);

static void path_text(struct sbuf *b, const struct tmpl_path *path, size_t upto)
{
	for (size_t i = 0; i < upto && i < path->n; i++) {
		if (i)
			sbuf_addc(b, '.');
		sbuf_adds(b, path->seg[i]);
	}
}

static int field_error(struct sbuf *err, const struct tmpl_path *path, size_t depth, const char *what)
{
	sbuf_adds(err, "field ");
	path_text(err, path, depth);
	sbuf_adds(err, what);
	return -1;
}

/* v is the value reached after depth segments of path. */
static int push_json_value(const cJSON *v, const struct tmpl_path *path, size_t depth, struct vlist *out,
                           struct sbuf *err)
{
	char num[64];

	if (!v || cJSON_IsNull(v))
		return 0;
	if (cJSON_IsArray(v)) {
		const cJSON *e;
		cJSON_ArrayForEach(e, v) {
			if (push_json_value(e, path, depth, out, err) < 0)
				return -1;
		}
		return 0;
	}
	if (depth < path->n) {
		if (!cJSON_IsObject(v))
			return 0; /* a.b where a is not an object: no value */
		return push_json_value(cJSON_GetObjectItemCaseSensitive(v, path->seg[depth]), path, depth + 1, out,
		                       err);
	}
	if (cJSON_IsString(v))
		return vlist_push_copy(out, v->valuestring, strlen(v->valuestring)) < 0
		               ? field_error(err, path, depth, ": out of memory")
		               : 0;
	if (cJSON_IsNumber(v)) {
		tmpl_format_number(v->valuedouble, num, sizeof(num));
		return vlist_push_copy(out, num, strlen(num)) < 0 ? field_error(err, path, depth, ": out of memory")
		                                                 : 0;
	}
	if (cJSON_IsBool(v))
		return vlist_push_copy(out, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5);
	if (cJSON_IsObject(v))
		return field_error(err, path, depth, " is an object: name a field inside it ({a.b})");
	return 0;
}

int tmpl_field_values(const cJSON *record, const struct tmpl_path *path, struct vlist *out, struct sbuf *err)
{
	return push_json_value(record, path, 0, out, err);
}

/* Whether the record holds path, and holds it as null. */
static bool path_is_null(const cJSON *record, const struct tmpl_path *path)
{
	const cJSON *v = record;

	for (size_t i = 0; i < path->n; i++) {
		if (!cJSON_IsObject(v))
			return false;
		v = cJSON_GetObjectItemCaseSensitive(v, path->seg[i]);
	}
	return v && cJSON_IsNull(v);
}

static size_t add_if_null(const cJSON *record, const struct tmpl_path *path, size_t n, const char *sep,
                          struct sbuf *out)
{
	if (!path->n || !path_is_null(record, path))
		return 0;
	sbuf_adds(out, n ? ", " : sep);
	path_text(out, path, path->n);
	return 1;
}

size_t tmpl_null_fields(const struct tmpl *t, const cJSON *record, const char *sep, struct sbuf *out)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n; i++) {
		const struct tmpl_part *part = &t->parts[i];
		if (part->kind == TP_FIELD)
			n += add_if_null(record, &part->path, n, sep, out);
		for (size_t f = 0; f < part->nfilters; f++)
			for (size_t a = 0; a < part->filters[f].nargs; a++)
				if (part->filters[f].args[a].kind == TA_PATH)
					n += add_if_null(record, &part->filters[f].args[a].path, n, sep, out);
	}
	return n;
}

bool tmpl_all_empty(const struct vlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i][0])
			return false;
	return true;
}

int tmpl_arg_values(const struct tmpl_arg *a, struct tmpl_env *env, struct vlist *out)
{
	if (a->kind == TA_PATH)
		return tmpl_field_values(env->record, &a->path, out, env->err);
	return vlist_push_copy(out, a->text, strlen(a->text));
}

/* A filter argument that must be one value (a number, a separator...). */
int tmpl_arg_single(const struct tmpl_arg *a, struct tmpl_env *env, const char *filter, char **out)
{
	struct vlist l;
	int rc = -1;

	vlist_init(&l);
	if (tmpl_arg_values(a, env, &l) < 0)
		goto cleanup;
	if (l.n != 1) {
		sbuf_addf(env->err, "%s: the argument ", filter);
		path_text(env->err, &a->path, a->path.n);
		sbuf_addf(env->err, " has %zu values, not one", l.n);
		goto cleanup;
	}
	*out = l.v[0];
	l.n = 0;
	rc = 0;
cleanup:
	vlist_free(&l);
	return rc;
}

int tmpl_parse_integer(const char *s, long long *out)
{
	char *end;

	if (!*s || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	*out = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	return 0;
}

int tmpl_slugify(struct sbuf *out, const char *s, size_t len)
{
	struct sbuf a;
	bool dash = false;
	int rc;

	sbuf_init(&a);
	rc = translit_ascii(&a, s, len);
	for (size_t i = 0; rc == 0 && i < a.len; i++) {
		char c = (char)tolower((unsigned char)a.s[i]);
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			if (dash && out->len)
				sbuf_addc(out, '-');
			dash = false;
			sbuf_addc(out, c);
		} else {
			dash = true;
		}
	}
	sbuf_free(&a);
	return rc;
}

void tmpl_trim(struct sbuf *out, const char *s, size_t len)
{
	size_t a = 0, b = len;

	/* ASCII white space and U+00A0 NO-BREAK SPACE at either end */
	for (;;) {
		if (a < b && isspace((unsigned char)s[a]))
			a++;
		else if (a + 1 < b && (unsigned char)s[a] == 0xC2 && (unsigned char)s[a + 1] == 0xA0)
			a += 2;
		else
			break;
	}
	for (;;) {
		if (b > a && isspace((unsigned char)s[b - 1]))
			b--;
		else if (b >= a + 2 && (unsigned char)s[b - 2] == 0xC2 && (unsigned char)s[b - 1] == 0xA0)
			b -= 2;
		else
			break;
	}
	sbuf_add(out, s + a, b - a);
}

/* ---- filters applied, templates evaluated -------------------------------------- */

static int apply_filter(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals)
{
	const struct filter_def *def = &filters[f->id];
	struct vlist out;
	struct sbuf b;
	char *arg0 = NULL, *arg1 = NULL;
	int rc = -1;

	vlist_init(&out);
	sbuf_init(&b);
	if (def->list) {
		rc = def->list(f, env, vals);
		goto cleanup;
	}
	if (f->nargs > 0 && tmpl_arg_single(&f->args[0], env, def->name, &arg0) < 0)
		goto cleanup;
	if (f->nargs > 1 && tmpl_arg_single(&f->args[1], env, def->name, &arg1) < 0)
		goto cleanup;
	for (size_t i = 0; i < vals->n; i++) {
		sbuf_reset(&b);
		if (def->value(env, vals->v[i], strlen(vals->v[i]), &b, arg0, arg1) < 0)
			goto cleanup;
		if (b.failed || vlist_push_copy(&out, sbuf_str(&b), b.len) < 0)
			goto cleanup;
	}
	vlist_clear(vals);
	rc = vlist_move(vals, &out);
cleanup:
	if (rc < 0 && !env->err->len)
		sbuf_adds(env->err, "out of memory");
	free(arg0);
	free(arg1);
	sbuf_free(&b);
	vlist_free(&out);
	return rc;
}

static int eval_part(const struct tmpl_part *part, struct tmpl_env *env, struct vlist *vals)
{
	if (part->kind == TP_TEXT)
		return vlist_push_copy(vals, part->text, strlen(part->text));
	if (part->kind == TP_ATTR && !env->attrs) {
		sbuf_addf(env->err, "{@%s} has no attribute values to read here", part->text);
		return -1;
	}
	if (part->kind == TP_ATTR) {
		const struct vlist *src = &env->attrs[part->attr_index];
		for (size_t i = 0; i < src->n; i++)
			if (vlist_push_copy(vals, src->v[i], strlen(src->v[i])) < 0)
				return -1;
	} else if (tmpl_field_values(env->record, &part->path, vals, env->err) < 0) {
		return -1;
	}
	for (size_t i = 0; i < part->nfilters; i++)
		if (apply_filter(&part->filters[i], env, vals) < 0)
			return -1;
	return 0;
}

/* every: gives no value unless every expression gives one (tmpl_eval_whole). */
static int eval_template(const struct tmpl *t, struct tmpl_env *env, struct vlist *out, bool every)
{
	struct vlist acc, vals, next;
	struct sbuf b;
	size_t exprs = 0, filled = 0;
	int rc = -1;

	if (t->n == 1 && t->parts[0].kind != TP_TEXT) {
		vlist_init(&vals);
		rc = eval_part(&t->parts[0], env, &vals);
		if (rc == 0)
			rc = vlist_move(out, &vals);
		vlist_free(&vals);
		return rc;
	}
	vlist_init(&acc);
	vlist_init(&vals);
	vlist_init(&next);
	sbuf_init(&b);
	if (vlist_push_copy(&acc, "", 0) < 0)
		goto cleanup;
	for (size_t i = 0; i < t->n; i++) {
		vlist_clear(&vals);
		if (eval_part(&t->parts[i], env, &vals) < 0)
			goto cleanup;
		if (t->parts[i].kind != TP_TEXT) {
			exprs++;
			if (!tmpl_all_empty(&vals))
				filled++;
		}
		if (vals.n == 0 && vlist_push_copy(&vals, "", 0) < 0)
			goto cleanup;
		if (acc.n * vals.n > TMPL_MAX_VALUES) {
			sbuf_addf(env->err, "the template \"%s\" gives more than %d values", t->source, TMPL_MAX_VALUES);
			goto cleanup;
		}
		vlist_clear(&next);
		for (size_t a = 0; a < acc.n; a++) {
			for (size_t v = 0; v < vals.n; v++) {
				sbuf_reset(&b);
				sbuf_adds(&b, acc.v[a]);
				sbuf_adds(&b, vals.v[v]);
				if (b.failed || vlist_push_copy(&next, sbuf_str(&b), b.len) < 0)
					goto cleanup;
			}
		}
		vlist_clear(&acc);
		if (vlist_move(&acc, &next) < 0)
			goto cleanup;
	}
	/* text around expressions that all came out empty is no value at all */
	rc = (exprs && (!filled || (every && filled < exprs))) ? 0 : vlist_move(out, &acc);
cleanup:
	if (rc < 0 && env->err->len == 0)
		sbuf_adds(env->err, "out of memory");
	vlist_free(&acc);
	vlist_free(&vals);
	vlist_free(&next);
	sbuf_free(&b);
	return rc;
}

int tmpl_eval(const struct tmpl *t, struct tmpl_env *env, struct vlist *out)
{
	return eval_template(t, env, out, false);
}

int tmpl_eval_whole(const struct tmpl *t, struct tmpl_env *env, struct vlist *out)
{
	return eval_template(t, env, out, true);
}
