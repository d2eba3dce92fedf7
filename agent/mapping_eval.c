/*
 * mapping_eval: a record evaluated against the mapping (scope, state,
 * values, unique candidates, the DN), the fields a mapping reads, and the
 * groups by rule a record belongs in.
 */
#include "build.h"

#include "mapping_int.h"

#include "mapping.h"
#include "ids.h"
#include "privacy.h"
#include "dn.h"
#include "common/utf8.h"
#include "common/yamldoc.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- evaluation -------------------------------------------------------- */

char *mapping_id_text(const cJSON *v)
{
	return ids_text(v, NULL);
}

char *mapping_record_id(const cJSON *record)
{
	return mapping_id_text(cJSON_GetObjectItemCaseSensitive(record, "id"));
}

int mapping_key(const struct mapping *m, enum mapping_kind kind, const cJSON *record, char **key, struct sbuf *err)
{
	const struct mapping_object *o = &m->obj[kind];
	struct tmpl_env env = { .record = record, .err = err, .tables = &m->tables };
	struct vlist v, unresolved;
	int rc = -1;

	*key = NULL;
	vlist_init(&v);
	vlist_init(&unresolved);
	env.unresolved = &unresolved;
	if (!o->present) {
		sbuf_addf(err, "the mapping has no %s section", mapping_section_names[kind]);
		goto cleanup;
	}
	if (tmpl_eval(o->key_value, &env, &v) < 0)
		goto cleanup;
	vlist_normalize(&v);
	if (v.n != 1) {
		sbuf_addf(err, "key %s: \"%s\" gives %s", o->key_attr, o->key_value->source,
		          v.n ? "more than one value" : "no value");
		goto cleanup;
	}
	*key = strdup(v.v[0]);
	rc = *key ? 0 : -1;
cleanup:
	vlist_free(&v);
	vlist_free(&unresolved);
	return rc;
}

void mapping_result_free(struct mapping_result *r)
{
	free(r->id);
	free(r->terminated_on);
	free(r->scope_reason);
	free(r->key_value);
	free(r->dn);
	free(r->active_dn);
	free(r->base);
	for (size_t i = 0; i < r->nvalues; i++)
		vlist_free(&r->values[i].values);
	free(r->values);
	for (size_t i = 0; i < r->nunresolved_attr; i++)
		free(r->unresolved_attr[i]);
	free(r->unresolved_attr);
	vlist_free(&r->unresolved);
	sbuf_free(&r->error);
	memset(r, 0, sizeof(*r));
}

/* Rejects strings (values and keys) that are not valid UTF-8. */
static int check_utf8(const cJSON *v, struct sbuf *err)
{
	for (; v; v = v->next) {
		if (v->string && !utf8_valid(v->string, strlen(v->string))) {
			sbuf_adds(err, "a field name is not valid UTF-8");
			return -1;
		}
		if (cJSON_IsString(v) && !utf8_valid(v->valuestring, strlen(v->valuestring))) {
			sbuf_addf(err, "field %s is not valid UTF-8", v->string ? v->string : "(list element)");
			return -1;
		}
		if ((cJSON_IsArray(v) || cJSON_IsObject(v)) && check_utf8(v->child, err) < 0)
			return -1;
	}
	return 0;
}

/* 1 when every condition holds for record, 0 when one does not (why, when
 * not NULL, says which), -1 on failure (in err). */
static int conditions_hold(const struct mapping_scope *v, size_t n, const cJSON *record, char **why, struct sbuf *err)
{
	for (size_t i = 0; i < n; i++) {
		const struct mapping_scope *sc = &v[i];
		struct vlist have;
		bool ok = false;
		vlist_init(&have);
		if (tmpl_field_values(record, &sc->path, &have, err) < 0) {
			vlist_free(&have);
			return -1;
		}
		for (size_t k = 0; k < have.n && !ok; k++)
			ok = vlist_contains(&sc->allowed, have.v[k]);
		if (!ok && why) {
			struct sbuf b;
			sbuf_init(&b);
			sbuf_addf(&b, "%s ", sc->field);
			if (have.n == 0)
				sbuf_adds(&b, "is empty");
			for (size_t k = 0; k < have.n; k++)
				sbuf_addf(&b, "%s%s", k ? ", " : "", have.v[k]);
			sbuf_adds(&b, have.n ? " is not in " : ", not in ");
			for (size_t k = 0; k < sc->allowed.n; k++)
				sbuf_addf(&b, "%s%s", k ? ", " : "", sc->allowed.v[k]);
			*why = sbuf_detach(&b);
		}
		vlist_free(&have);
		if (!ok)
			return 0;
	}
	return 1;
}

static int in_scope(const struct mapping_object *o, const cJSON *record, struct mapping_result *r)
{
	return conditions_hold(o->scope, o->nscope, record, &r->scope_reason, &r->error);
}

static bool is_terminated(const cJSON *record, const char *today, char **on)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(record, "terminated_on");
	const cJSON *active = cJSON_GetObjectItemCaseSensitive(record, "active");
	bool term = false;

	if (cJSON_IsString(t) && strlen(t->valuestring) >= 10) {
		*on = strndup(t->valuestring, 10);
		if (today && strncmp(t->valuestring, today, 10) <= 0)
			term = true;
	}
	if (cJSON_IsFalse(active))
		term = true;
	return term;
}

/* A unique attribute with a list of templates gives one value: the first
 * candidate no other entry holds, or, when every one is held, the first
 * with a number (settle_unique). */
static int pick_candidate(const struct mapping_attr *a, const struct mapping_hooks *h, struct vlist *vals,
                          struct sbuf *err)
{
	size_t chosen = 0;

	for (size_t i = 0; i < vals->n; i++) {
		int taken = h->taken(h->ctx, a->name, vals->v[i], err);
		if (taken < 0)
			return -1;
		if (!taken) {
			chosen = i;
			break;
		}
	}
	/* keep the chosen one alone, first */
	if (chosen) {
		char *c = vals->v[chosen];
		vals->v[chosen] = vals->v[0];
		vals->v[0] = c;
	}
	for (size_t i = 1; i < vals->n; i++)
		free(vals->v[i]);
	vals->n = vals->n ? 1 : 0;
	return 0;
}

/* Appends "2", "3", ... to each value until no other entry holds it. */
static int settle_unique(const struct mapping_attr *a, const struct mapping_hooks *h, struct vlist *vals,
                         struct sbuf *err)
{
	struct sbuf cand;
	int rc = -1;

	sbuf_init(&cand);
	for (size_t i = 0; i < vals->n; i++) {
		const char *base = vals->v[i];
		int n;
		for (n = 1; n <= UNIQUE_MAX_TRIES; n++) {
			int taken;
			sbuf_reset(&cand);
			if (n == 1) {
				sbuf_adds(&cand, base);
			} else {
				char suffix[16];
				size_t blen = strlen(base);
				snprintf(suffix, sizeof(suffix), "%d", n);
				if (a->max_length && utf8_length(base, blen) + strlen(suffix) > a->max_length) {
					size_t keep = a->max_length > strlen(suffix) ? a->max_length - strlen(suffix) : 0;
					blen = utf8_prefix_bytes(base, blen, keep);
				}
				sbuf_add(&cand, base, blen);
				sbuf_adds(&cand, suffix);
			}
			if (cand.failed)
				goto cleanup;
			taken = h->taken(h->ctx, a->name, sbuf_str(&cand), err);
			if (taken < 0)
				goto cleanup;
			if (!taken)
				break;
		}
		if (n > UNIQUE_MAX_TRIES) {
			sbuf_addf(err, "%s: no free value after %d tries for \"%s\"", a->name, UNIQUE_MAX_TRIES, base);
			goto cleanup;
		}
		if (n > 1) {
			char *s = sbuf_detach(&cand);
			if (!s)
				goto cleanup;
			free(vals->v[i]);
			vals->v[i] = s;
		}
	}
	rc = 0;
cleanup:
	sbuf_free(&cand);
	return rc;
}

static void limit_length(const struct mapping_attr *a, struct vlist *vals)
{
	if (!a->max_length)
		return;
	for (size_t i = 0; i < vals->n; i++) {
		size_t len = strlen(vals->v[i]);
		vals->v[i][utf8_prefix_bytes(vals->v[i], len, a->max_length)] = '\0';
	}
}

/* first: the first alternative whose condition holds and that gives a value whole. */
static int eval_first(const struct mapping_attr *a, struct tmpl_env *env, struct vlist *out)
{
	int rc = 0;

	for (size_t t = 0; t < a->ntmpls && rc == 0; t++) {
		int holds = conditions_hold(a->alts[t].when, a->alts[t].nwhen, env->record, NULL, env->err);
		if (holds <= 0) {
			rc = holds;
			continue;
		}
		rc = tmpl_eval_whole(a->tmpls[t], env, out);
		vlist_normalize(out);
		if (rc == 0 && out->n)
			break;
	}
	return rc;
}

static int eval_attr(const struct mapping_attr *a, struct tmpl_env *env, struct vlist *out)
{
	int rc = 0;

	if (a->first)
		rc = eval_first(a, env, out);
	for (size_t t = 0; !a->first && t < a->ntmpls && rc == 0; t++)
		rc = tmpl_eval(a->tmpls[t], env, out);
	if (rc < 0 && env->err->len)
		sbuf_prefixf(env->err, "%s: ", a->name); /* the attribute in front of the filter's message */
	return rc;
}

/* Remembers which attribute each newly unresolved id belongs to; called
 * after every evaluation, whether it failed or not, so that the two lists
 * stay in step. */
static int note_unresolved(struct mapping_result *r, const char *attr)
{
	char **v;

	if (r->unresolved.n == r->nunresolved_attr)
		return 0;
	v = realloc(r->unresolved_attr, r->unresolved.n * sizeof(*v));
	if (!v)
		return -1;
	r->unresolved_attr = v;
	while (r->nunresolved_attr < r->unresolved.n) {
		if (!(v[r->nunresolved_attr] = strdup(attr)))
			return -1;
		r->nunresolved_attr++;
	}
	return 0;
}

/* What one evaluation shares between its steps. */
struct eval {
	const struct mapping_object *o;
	const struct mapping_hooks *hooks;
	struct mapping_result *r;
	struct tmpl_env env;
	struct vlist *vals; /* per attribute, as computed (what {@attr} reads) */
	struct vlist tmp;
};

/* In scope or not, terminated or not, as the record's dates and the caller's force say. */
static int eval_state(struct eval *e, enum mapping_kind kind, const cJSON *record)
{
	struct mapping_result *r = e->r;
	int scope = in_scope(e->o, record, r);

	if (scope < 0)
		return -1;
	if (scope == 0)
		r->state = MAPPING_OUT_OF_SCOPE;
	if (kind == MAPPING_EMPLOYEE && r->state == MAPPING_ACTIVE &&
	    is_terminated(record, e->hooks->today, &r->terminated_on)) {
		r->state = MAPPING_TERMINATED;
		r->action = e->o->action;
	}
	if (kind == MAPPING_EMPLOYEE && e->hooks->force == MAPPING_FORCE_TERMINATED) {
		r->state = MAPPING_TERMINATED;
		r->action = e->o->action;
	} else if (e->hooks->force == MAPPING_FORCE_ACTIVE && r->state == MAPPING_TERMINATED) {
		r->state = MAPPING_ACTIVE;
	}
	return 0;
}

/* The key value: exactly one. */
static int eval_key(struct eval *e)
{
	const struct mapping_object *o = e->o;

	if (tmpl_eval(o->key_value, &e->env, &e->tmp) < 0)
		return -1;
	vlist_normalize(&e->tmp);
	if (e->tmp.n != 1) {
		sbuf_addf(&e->r->error, "key %s: \"%s\" gives %s", o->key_attr, o->key_value->source,
		          e->tmp.n ? "more than one value" : "no value");
		return -1;
	}
	e->r->key_value = strdup(e->tmp.v[0]);
	vlist_clear(&e->tmp);
	return e->r->key_value ? 0 : -1;
}

/* One attribute's values: create_only kept, required checked, unique settled. */
static int eval_one(struct eval *e, const struct mapping_attr *a, struct vlist *v)
{
	struct mapping_result *r = e->r;
	int rc;

	if (a->is_key)
		return vlist_push_copy(v, r->key_value, strlen(r->key_value));
	if (a->nwhen && (rc = conditions_hold(a->when, a->nwhen, e->env.record, NULL, &r->error)) <= 0)
		return rc; /* the condition does not hold: the attribute is absent */
	if ((a->flags & MAPPING_ATTR_CREATE_ONLY) && e->hooks->existing) {
		int ex = e->hooks->existing(e->hooks->ctx, a->name, v, &r->error);
		if (ex != 0)
			return ex < 0 ? -1 : 0; /* the entry exists: its value stands */
	}
	rc = eval_attr(a, &e->env, v);
	if (note_unresolved(r, a->name) < 0 || rc < 0)
		return -1;
	vlist_normalize(v);
	limit_length(a, v);
	vlist_normalize(v);
	if ((a->flags & MAPPING_ATTR_REQUIRED) && v->n == 0) {
		sbuf_addf(&r->error, "%s: required, but ", a->name);
		for (size_t t = 0; t < a->ntmpls; t++)
			sbuf_addf(&r->error, "%s\"%s\"", t ? ", " : "", a->tmpls[t]->source);
		sbuf_adds(&r->error, " is empty");
		size_t nulls = 0;
		for (size_t t = 0; t < a->ntmpls; t++)
			nulls += tmpl_null_fields(a->tmpls[t], e->env.record, nulls ? ", " : ": ", &r->error);
		if (nulls)
			sbuf_addf(&r->error, " %s null (Factorial sends such fields null to a token of a user who is not an "
			                     "administrator)", nulls == 1 ? "is" : "are");
		return -1;
	}
	if ((a->flags & MAPPING_ATTR_UNIQUE) && e->hooks->taken && a->ntmpls > 1 &&
	    pick_candidate(a, e->hooks, v, &r->error) < 0)
		return -1;
	if ((a->flags & MAPPING_ATTR_UNIQUE) && e->hooks->taken && settle_unique(a, e->hooks, v, &r->error) < 0)
		return -1;
	return 0;
}

/* The attributes in mapping order (the implicit key attribute first), into r->values. */
static int collect_values(struct eval *e)
{
	const struct mapping_object *o = e->o;
	struct mapping_result *r = e->r;

	r->object_classes = &o->object_classes;
	r->values = calloc(o->nattrs + o->nterm_attrs + 1, sizeof(*r->values));
	if (!r->values)
		return -1;
	if (o->attrs[o->key_index].ntmpls == 0 && o->key_index == o->nattrs - 1) {
		r->values[r->nvalues].attr = &o->attrs[o->key_index];
		r->values[r->nvalues++].values = e->vals[o->key_index];
		vlist_init(&e->vals[o->key_index]);
	}
	for (size_t i = 0; i < o->nattrs; i++) {
		if (o->attrs[i].ntmpls == 0 && o->attrs[i].is_key)
			continue;
		r->values[r->nvalues].attr = &o->attrs[i];
		r->values[r->nvalues++].values = e->vals[i];
		vlist_init(&e->vals[i]);
	}
	return 0;
}

/* The RDN value: exactly one. */
static const struct vlist *rdn_values(const struct eval *e)
{
	for (size_t i = 0; i < e->r->nvalues; i++)
		if (e->r->values[i].attr == &e->o->attrs[e->o->rdn_index])
			return &e->r->values[i].values;
	return NULL;
}

/* The DN while active: the RDN under base. */
/* base as a template: one value for the first RDN, the DN built (and escaped) by libldap, under search_base. */
static int place_record(struct eval *e)
{
	const struct mapping_object *o = e->o;
	struct vlist v;
	char err[512];
	int rc = -1;

	vlist_init(&v);
	if (tmpl_eval(o->base_tmpl, &e->env, &v) < 0) {
		sbuf_prefixf(&e->r->error, "base: ");
		goto cleanup;
	}
	vlist_normalize(&v);
	if (v.n != 1) {
		sbuf_addf(&e->r->error, "base %s=\"%s\",%s gives %s", o->base_attr, o->base_tmpl->source, o->base_rest,
		          v.n ? "more than one value" : "no value");
		goto cleanup;
	}
	free(e->r->base);
	e->r->base = NULL;
	if (dn_build(o->base_attr, v.v[0], o->base_rest, &e->r->base, err, sizeof(err)) < 0) {
		sbuf_addf(&e->r->error, "base: %s", err);
		goto cleanup;
	}
	if (!dn_under(e->r->base, o->search_base)) {
		sbuf_addf(&e->r->error, "base %s is not under search_base %s", e->r->base, o->search_base);
		goto cleanup;
	}
	rc = 0;
cleanup:
	vlist_free(&v);
	return rc;
}

static int active_dn(struct eval *e)
{
	const struct mapping_object *o = e->o;
	const struct vlist *rv = rdn_values(e);
	char err[512];

	if (!rv || rv->n != 1) {
		const struct mapping_attr *ra = &o->attrs[o->rdn_index];
		sbuf_addf(&e->r->error, "rdn %s: ", o->rdn);
		for (size_t t = 0; t < ra->ntmpls; t++)
			sbuf_addf(&e->r->error, "%s\"%s\"", t ? ", " : "", ra->tmpls[t]->source);
		sbuf_adds(&e->r->error, rv && rv->n ? " gives more than one value" : " gives no value");
		return -1;
	}
	if (o->base_tmpl ? place_record(e) < 0 : !(e->r->base = strdup(o->base)))
		return -1;
	if (dn_build(o->rdn, rv->v[0], e->r->base, &e->r->active_dn, err, sizeof(err)) < 0) {
		sbuf_addf(&e->r->error, "dn: %s", err);
		return -1;
	}
	return 0;
}

/* One terminated.attributes entry over the active values ({@attr} sees those). */
static int eval_terminated_one(struct eval *e, const struct mapping_attr *a)
{
	const struct mapping_object *o = e->o;
	struct mapping_result *r = e->r;
	struct mapping_value *slot = NULL;
	int rc;

	for (size_t i = 0; i < o->nattrs; i++)
		vlist_clear(&e->vals[i]);
	for (size_t i = 0; i < r->nvalues; i++) {
		size_t idx = (size_t)(r->values[i].attr - o->attrs);
		if (idx < o->nattrs)
			for (size_t k = 0; k < r->values[i].values.n; k++)
				vlist_push_copy(&e->vals[idx], r->values[i].values.v[k], strlen(r->values[i].values.v[k]));
	}
	vlist_clear(&e->tmp);
	rc = eval_attr(a, &e->env, &e->tmp);
	if (note_unresolved(r, a->name) < 0 || rc < 0)
		return -1;
	vlist_normalize(&e->tmp);
	for (size_t i = 0; i < r->nvalues; i++)
		if (strcasecmp(r->values[i].attr->name, a->name) == 0)
			slot = &r->values[i];
	if (!slot) {
		slot = &r->values[r->nvalues++];
		slot->attr = a;
		vlist_init(&slot->values);
	}
	vlist_clear(&slot->values);
	slot->overridden = true;
	return vlist_move(&slot->values, &e->tmp);
}

/* A leaver: the terminated attributes over the active ones, and the DN under move_to. */
static int eval_terminated(struct eval *e)
{
	const struct mapping_object *o = e->o;
	char err[512];

	for (size_t t = 0; t < o->nterm_attrs; t++)
		if (eval_terminated_one(e, &o->term_attrs[t]) < 0)
			return -1;
	if (e->r->action == MAPPING_MOVE && dn_build(o->rdn, rdn_values(e)->v[0], o->move_to, &e->r->dn, err,
	                                             sizeof(err)) < 0) {
		sbuf_addf(&e->r->error, "dn: %s", err);
		return -1;
	}
	return 0;
}

int mapping_eval(const struct mapping *m, enum mapping_kind kind, const cJSON *record,
                 const struct mapping_hooks *hooks, struct mapping_result *r)
{
	static const struct mapping_hooks none = { 0 };
	struct eval e = { .o = &m->obj[kind], .hooks = hooks ? hooks : &none, .r = r };
	int rc = -1;

	memset(r, 0, sizeof(*r));
	vlist_init(&r->unresolved);
	vlist_init(&e.tmp);
	sbuf_init(&r->error);
	r->kind = kind;
	r->id = cJSON_IsObject(record) ? mapping_record_id(record) : NULL;
	if (!r->id)
		r->id = strdup("?");
	if (!cJSON_IsObject(record)) {
		sbuf_adds(&r->error, "the record is not a JSON object");
		goto cleanup;
	}
	if (!e.o->present) {
		sbuf_addf(&r->error, "the mapping has no %s section", mapping_section_names[kind]);
		goto cleanup;
	}
	if (check_utf8(record->child, &r->error) < 0 || eval_state(&e, kind, record) < 0)
		goto cleanup;
	if (!(e.vals = calloc(e.o->nattrs, sizeof(*e.vals))))
		goto cleanup;
	e.env = (struct tmpl_env){ .record = record, .attrs = e.vals, .employee_dn = e.hooks->employee_dn, .tables = &m->tables,
		                   .ctx = e.hooks->ctx, .unresolved = &r->unresolved, .err = &r->error };
	if (eval_key(&e) < 0)
		goto cleanup;
	if (r->state == MAPPING_OUT_OF_SCOPE) {
		/* nothing more to compute: the entry, if any, is found by its key */
		rc = 0;
		goto cleanup;
	}
	for (size_t i = 0; i < e.o->nattrs; i++)
		if (eval_one(&e, &e.o->attrs[e.o->order[i]], &e.vals[e.o->order[i]]) < 0)
			goto cleanup;
	if (collect_values(&e) < 0 || active_dn(&e) < 0 || (r->state == MAPPING_TERMINATED && eval_terminated(&e) < 0))
		goto cleanup;
	if (!r->dn && !(r->dn = strdup(r->active_dn)))
		goto cleanup;
	rc = 0;
cleanup:
	if (rc < 0 && !r->error.len)
		sbuf_adds(&r->error, "out of memory");
	for (size_t i = 0; e.vals && i < e.o->nattrs; i++)
		vlist_free(&e.vals[i]);
	free(e.vals);
	vlist_free(&e.tmp);
	return rc;
}

static bool tmpl_reads(const struct tmpl *t, const char *name)
{
	for (size_t i = 0; t && i < t->n; i++) {
		const struct tmpl_part *p = &t->parts[i];
		if (p->kind == TP_FIELD && p->path.n && strcmp(p->path.seg[0], name) == 0)
			return true;
		for (size_t f = 0; f < p->nfilters; f++)
			for (size_t a = 0; a < p->filters[f].nargs && a < 2; a++)
				if (p->filters[f].args[a].kind == TA_PATH && p->filters[f].args[a].path.n &&
				    strcmp(p->filters[f].args[a].path.seg[0], name) == 0)
					return true;
	}
	return false;
}

bool mapping_uses_field(const struct mapping *m, enum mapping_kind kind, const char *name)
{
	const struct mapping_object *o = &m->obj[kind];

	if (!o->present)
		return false;
	if (tmpl_reads(o->key_value, name) || tmpl_reads(o->base_tmpl, name))
		return true;
	for (size_t i = 0; kind == MAPPING_EMPLOYEE && i < m->ngroups; i++) {
		if (tmpl_reads(m->groups[i].value, name))
			return true;
		for (size_t w = 0; w < m->groups[i].nwhen; w++)
			if (m->groups[i].when[w].path.n && strcmp(m->groups[i].when[w].path.seg[0], name) == 0)
				return true;
	}
	for (size_t i = 0; i < o->nattrs; i++)
		for (size_t t = 0; t < o->attrs[i].ntmpls; t++)
			if (tmpl_reads(o->attrs[i].tmpls[t], name))
				return true;
	for (size_t i = 0; i < o->nterm_attrs; i++)
		for (size_t t = 0; t < o->term_attrs[i].ntmpls; t++)
			if (tmpl_reads(o->term_attrs[i].tmpls[t], name))
				return true;
	for (size_t i = 0; i < o->nscope; i++)
		if (o->scope[i].path.n && strcmp(o->scope[i].path.seg[0], name) == 0)
			return true;
	for (size_t i = 0; i < o->nattrs; i++)
		for (size_t w = 0; w < o->attrs[i].nwhen; w++)
			if (o->attrs[i].when[w].path.n && strcmp(o->attrs[i].when[w].path.seg[0], name) == 0)
				return true;
	return false;
}

/* The fields a template pipes through employee_dn. */
static void template_references(const struct tmpl *t, struct vlist *out)
{
	for (size_t p = 0; t && p < t->n; p++) {
		const struct tmpl_part *part = &t->parts[p];
		bool ref = false;
		for (size_t f = 0; f < part->nfilters; f++)
			ref = ref || part->filters[f].id == TF_EMPLOYEE_DN;
		if (ref && part->kind == TP_FIELD && part->path.n == 1 && !vlist_contains(out, part->path.seg[0]))
			vlist_push_copy(out, part->path.seg[0], strlen(part->path.seg[0]));
	}
}

void mapping_reference_fields(const struct mapping *m, enum mapping_kind kind, struct vlist *out)
{
	const struct mapping_object *o = &m->obj[kind];

	if (!o->present)
		return;
	for (size_t i = 0; i < o->nattrs; i++)
		for (size_t t = 0; t < o->attrs[i].ntmpls; t++)
			template_references(o->attrs[i].tmpls[t], out);
	for (size_t i = 0; i < o->nterm_attrs; i++)
		for (size_t t = 0; t < o->term_attrs[i].ntmpls; t++)
			template_references(o->term_attrs[i].tmpls[t], out);
}
/* ---- groups by rule: evaluation ---------------------------------------------- */

void mapping_memberships_free(struct mapping_membership *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].dn);
		free(v[i].value);
	}
	free(v);
}

static int push_membership(struct mapping_membership **out, size_t *n, const struct mapping_group *g,
                           const char *value, struct sbuf *err)
{
	struct mapping_membership *v;
	char *dn = NULL, e[512];

	if (dn_build(g->rdn_attr, value, g->parent, &dn, e, sizeof(e)) < 0) {
		sbuf_addf(err, "groups.%s: %s", g->name, e);
		return -1;
	}
	for (size_t i = 0; i < *n; i++)
		if (dn_equal((*out)[i].dn, dn)) {
			free(dn);
			return 0;
		}
	if (!(v = realloc(*out, (*n + 1) * sizeof(*v)))) {
		free(dn);
		return -1;
	}
	*out = v;
	v[*n] = (struct mapping_membership){ .rule = g, .dn = dn, .value = strdup(value) };
	(*n)++;
	return 0;
}

int mapping_groups_of(const struct mapping *m, const cJSON *record, struct mapping_membership **out, size_t *n,
                      struct sbuf *err)
{
	struct tmpl_env env = { .record = record, .err = err, .tables = &m->tables };
	struct vlist values, unresolved;
	int rc = -1;

	*out = NULL;
	*n = 0;
	vlist_init(&values);
	vlist_init(&unresolved);
	env.unresolved = &unresolved;
	for (size_t i = 0; i < m->ngroups; i++) {
		const struct mapping_group *g = &m->groups[i];
		int holds = conditions_hold(g->when, g->nwhen, record, NULL, err);
		if (holds < 0)
			goto cleanup;
		if (!holds)
			continue;
		vlist_clear(&values);
		if (g->value && tmpl_eval(g->value, &env, &values) < 0) {
			sbuf_prefixf(err, "groups.%s: ", g->name);
			goto cleanup;
		}
		if (!g->value)
			vlist_push_copy(&values, g->fixed_value, strlen(g->fixed_value));
		vlist_normalize(&values);
		for (size_t k = 0; k < values.n; k++)
			if (*values.v[k] && push_membership(out, n, g, values.v[k], err) < 0)
				goto cleanup;
	}
	rc = 0;
cleanup:
	if (rc < 0) {
		mapping_memberships_free(*out, *n);
		*out = NULL;
		*n = 0;
	}
	vlist_free(&values);
	vlist_free(&unresolved);
	return rc;
}
