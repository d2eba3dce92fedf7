/*
 * tmpl_int: what the files of the template language share, and nothing
 * outside it includes.  tmpl.h is the module's face:
 *
 *   tmpl.c          the table of filters, parsing a template with the place of
 *                   each mistake, and evaluating it (fields, lookups, filters
 *                   over every combination of values)
 *   tmpl_filters.c  the filters themselves, each a function of a value or of
 *                   the list of values
 *
 * Memory: as tmpl.h says.
 */
#ifndef FLA_TMPL_INT_H
#define FLA_TMPL_INT_H

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

#define TMPL_MAX_VALUES 4096 /* combinations one template may produce */

struct parser;

/* What a filter does to one value: out gets the result; -1 with the reason in env->err. */
typedef int (*value_fn)(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                        const char *arg1);
/* What a filter does to the whole list of values (in place). */
typedef int (*list_fn)(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals);
/* A check of a filter's arguments when the template is parsed. */
typedef int (*check_fn)(struct parser *p, struct tmpl_filter *f, size_t off);

/* tmpl.c */
bool tmpl_all_empty(const struct vlist *l);
int tmpl_arg_values(const struct tmpl_arg *a, struct tmpl_env *env, struct vlist *out);
int tmpl_arg_single(const struct tmpl_arg *a, struct tmpl_env *env, const char *filter, char **out);
int tmpl_parse_integer(const char *s, long long *out);
int tmpl_slugify(struct sbuf *out, const char *s, size_t len);
void tmpl_trim(struct sbuf *out, const char *s, size_t len);

/* tmpl_filters.c */
int tmpl_f_lower(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1);
int tmpl_f_upper(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1);
int tmpl_f_trim(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                const char *arg1);
int tmpl_f_ascii(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1);
int tmpl_f_slug(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                const char *arg1);
int tmpl_f_alnum(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1);
int tmpl_f_truncate(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                    const char *arg1);
int tmpl_f_replace(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                   const char *arg1);
int tmpl_f_date(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                const char *arg1);
int tmpl_f_add(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
               const char *arg1);
int tmpl_f_before(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                  const char *arg1);
int tmpl_f_after(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
                 const char *arg1);
int tmpl_f_rdn(struct tmpl_env *env, const char *in, size_t len, struct sbuf *out, const char *arg0,
               const char *arg1);
int tmpl_f_default(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals);
int tmpl_f_map(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals);
int tmpl_f_join(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals);
int tmpl_f_translit(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals);
int tmpl_f_employee_dn(const struct tmpl_filter *f, struct tmpl_env *env, struct vlist *vals);

#endif
