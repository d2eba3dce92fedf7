/*
 * apply_ops: the changes a step makes, and the operations that carry them
 * out: to the directory (said and audited once the server confirmed them,
 * adds in flight when syncing) or, with dry_run, as LDIF.
 */
#include "build.h"

#include "apply_int.h"

#include "apply.h"
#include "common/clock.h"
#include "dn.h"
#include "events.h"
#include "ids.h"
#include "ldifw.h"
#include "refs.h"
#include "related.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/strmap.h"
#include <fcntl.h>
#include <ldap.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- changes ------------------------------------------------------------ */

void apply_changes_free(struct changes *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].attr);
		vlist_free(&c->v[i].values);
	}
	free(c->v);
	c->v = NULL;
	c->n = 0;
}

/* Adds a change; values (may be NULL) are copied. */
int apply_changes_add(struct changes *c, int op, const char *attr, const struct vlist *values)
{
	struct change *v = realloc(c->v, (c->n + 1) * sizeof(*v));
	struct change *ch;

	if (!v)
		return -1;
	c->v = v;
	ch = &c->v[c->n];
	ch->op = op;
	ch->attr = strdup(attr);
	vlist_init(&ch->values);
	if (!ch->attr)
		return -1;
	c->n++;
	for (size_t i = 0; values && i < values->n; i++)
		if (vlist_push_copy(&ch->values, values->v[i], strlen(values->v[i])) < 0)
			return -1;
	return 0;
}

bool apply_same_set(const struct vlist *a, const struct vlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!vlist_contains(b, a->v[i]))
			return false;
	return true;
}

/* The smallest modification that turns current into desired (exact values). */
int apply_diff_attr(struct changes *c, const char *attr, const struct vlist *cur, const struct vlist *want)
{
	static const struct vlist none = { 0 };
	struct vlist del, add;
	int rc = -1;

	if (!cur)
		cur = &none;
	if (apply_same_set(cur, want))
		return 0;
	if (want->n == 0)
		return apply_changes_add(c, LDAP_MOD_DELETE, attr, NULL);
	if (cur->n <= 1 || want->n == 1)
		return apply_changes_add(c, LDAP_MOD_REPLACE, attr, want);
	vlist_init(&del);
	vlist_init(&add);
	for (size_t i = 0; i < cur->n; i++)
		if (!vlist_contains(want, cur->v[i]) && vlist_push_copy(&del, cur->v[i], strlen(cur->v[i])) < 0)
			goto cleanup;
	for (size_t i = 0; i < want->n; i++)
		if (!vlist_contains(cur, want->v[i]) && vlist_push_copy(&add, want->v[i], strlen(want->v[i])) < 0)
			goto cleanup;
	/* delete first: a value that only changes case must leave before it comes back */
	if (del.n && apply_changes_add(c, LDAP_MOD_DELETE, attr, &del) < 0)
		goto cleanup;
	if (add.n && apply_changes_add(c, LDAP_MOD_ADD, attr, &add) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	vlist_free(&del);
	vlist_free(&add);
	return rc;
}

/* "title, mail" for messages and the audit log. */
void apply_attr_names(const struct changes *c, struct sbuf *out)
{
	for (size_t i = 0; i < c->n; i++) {
		bool seen = false;
		for (size_t k = 0; k < i; k++)
			seen = seen || strcasecmp(c->v[k].attr, c->v[i].attr) == 0;
		if (!seen)
			sbuf_addf(out, "%s%s", out->len ? ", " : "", c->v[i].attr);
	}
}
/* ---- operations: to the directory, or as LDIF --------------------------- */

void apply_count(struct job *j, enum cat cat)
{
	struct apply_summary *s = &j->a->sum;

	switch (cat) {
	case CAT_ADD:
		s->add++;
		break;
	case CAT_MODIFY:
		s->modify++;
		break;
	case CAT_RENAME:
		s->rename++;
		break;
	case CAT_DISABLE:
		s->disable++;
		break;
	case CAT_DELETE:
		s->del++;
		break;
	case CAT_NONE:
		break;
	}
}

/* Says it now: a comment in the dry run's LDIF, or a log line. */
void apply_say_now(struct job *j, const char *what)
{
	struct sbuf line;

	if (strcmp(j->event, "sync") == 0 && strstr(what, "nothing to do")) {
		/* a sync sees every former employee: these only matter when debugging */
		log_debug("%s %s (%s): %s", j->kind, j->id, j->event, what);
		return;
	}
	sbuf_init(&line);
	sbuf_addf(&line, "%s %s (%s): %s", j->kind, j->id, j->event, what);
	if (j->a->dry_run)
		ldifw_comment(j->a->ldif, sbuf_str(&line));
	else
		log_info("%s", sbuf_str(&line));
	sbuf_free(&line);
}

void apply_sayf(struct job *j, const char *fmt, ...)
{
	struct sbuf what;
	va_list ap;

	sbuf_init(&what);
	va_start(ap, fmt);
	sbuf_vaddf(&what, fmt, ap);
	va_end(ap);
	apply_say(j, sbuf_str(&what));
	sbuf_free(&what);
}

int apply_failed(struct job *j, const char *dn, const struct ldapw_error *e)
{
	j->last_rc = e->rc;
	sbuf_addf(j->err, "%s %s: %s: %s: %s", j->kind, j->id, dn, e->op, e->text);
	j->a->connection_lost = ldapw_error_is_connection(e);
	return -1;
}

/* Groups are read and changed by one job at a time (apply_ctx.groups_lock). */
void apply_groups_enter(struct job *j)
{
	if (j->a->groups_lock && j->groups_held++ == 0)
		pthread_mutex_lock(j->a->groups_lock);
}

/* Once taken, the lock is kept until the job ends (groups_release): the
 * plan read under it is carried out under it. */
void apply_groups_leave(struct job *j)
{
	(void)j;
}

void apply_groups_release(struct job *j)
{
	if (j->a->groups_lock && j->groups_held)
		pthread_mutex_unlock(j->a->groups_lock);
	j->groups_held = 0;
}

void apply_audit(struct job *j, const char *dn, const char *op, const char *attrs)
{
	struct sbuf e;

	if (!j->a->st)
		return;
	sbuf_init(&e);
	if (store_audit(j->a->st, j->type, j->kind, j->id, dn, op, attrs, &e) < 0)
		log_warn("%s %s: %s: the audit log could not be written: %s", j->kind, j->id, dn, sbuf_str(&e));
	sbuf_free(&e);
}

struct ldapw_mod *apply_to_mods(const struct changes *c)
{
	struct ldapw_mod *m = calloc(c->n ? c->n : 1, sizeof(*m));

	for (size_t i = 0; m && i < c->n; i++) {
		m[i].op = c->v[i].op;
		m[i].attr = c->v[i].attr;
		m[i].values = &c->v[i].values;
	}
	return m;
}

void apply_pending_free(struct pending_add *p)
{
	free(p->id);
	free(p->key);
	free(p->dn);
	free(p->names);
	free(p->type);
}

/* Reads the answer to one add in flight; -1 when it failed. */
int apply_collect_one(struct apply_ctx *a)
{
	struct apply_cache *c = a->cache;
	struct ldapw_error e;
	int msgid = -1, code;
	size_t i;

	code = ldapw_next_result(a->lw, &msgid, &e);
	for (i = 0; i < c->npending && c->pending[i].msgid != msgid; i++)
		;
	if (i == c->npending) {
		if (code == LDAP_SUCCESS)
			return 0;
		/* no answer at all: the connection went; every add in flight is lost with it */
		a->connection_lost = ldapw_error_is_connection(&e);
		for (size_t k = 0; k < c->npending; k++) {
			struct sbuf m;
			sbuf_init(&m);
			sbuf_addf(&m, "employee %s: %s: add: %s", c->pending[k].id, c->pending[k].dn, e.text);
			if (a->async_error)
				a->async_error(a->async_ctx, c->pending[k].id, sbuf_str(&m), a->connection_lost);
			sbuf_free(&m);
			a->sum.add--;
			strmap_del(&c->dn_by_key, c->pending[k].key);
			apply_pending_free(&c->pending[k]);
		}
		c->npending = 0;
		return -1;
	}
	if (code == LDAP_SUCCESS) {
		struct job j = { .a = a, .type = c->pending[i].type, .kind = "employee", .id = c->pending[i].id,
		                 .event = "sync" };
		apply_sayf(&j, "add %s", c->pending[i].dn);
		apply_audit(&j, c->pending[i].dn, "add", c->pending[i].names);
	} else {
		struct sbuf m;
		sbuf_init(&m);
		sbuf_addf(&m, "employee %s: %s: add: %s", c->pending[i].id, c->pending[i].dn, e.text);
		if (a->async_error)
			a->async_error(a->async_ctx, c->pending[i].id, sbuf_str(&m), ldapw_error_is_connection(&e));
		sbuf_free(&m);
		a->sum.add--;
		strmap_del(&c->dn_by_key, c->pending[i].key);
		strmap_del(&c->added_by_key, c->pending[i].key);
	}
	apply_pending_free(&c->pending[i]);
	c->pending[i] = c->pending[--c->npending];
	return code == LDAP_SUCCESS ? 0 : -1;
}

int apply_flush(struct apply_ctx *a)
{
	int rc = 0;

	while (a->cache && a->cache->npending) {
		if (apply_collect_one(a) < 0 && a->connection_lost) {
			rc = -1;
			break;
		}
	}
	return rc;
}
