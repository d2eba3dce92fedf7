#include "build.h"

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

enum cat {
	CAT_NONE,
	CAT_ADD,
	CAT_MODIFY,
	CAT_RENAME,
	CAT_DISABLE,
	CAT_DELETE,
};

/* One attribute change of a modify, or one attribute of an add. */
struct change {
	int op;
	char *attr;
	struct vlist values;
};

struct changes {
	struct change *v;
	size_t n;
};

/* One step of a plan (see "the plan" below). */
enum step_kind {
	STEP_NOTE,
	STEP_ADD,
	STEP_MODIFY,
	STEP_RENAME,
	STEP_DELETE,
	STEP_PASSWORD, /* a new initial password for an entry made earlier whose own was never set */
};

struct step {
	enum step_kind kind;
	enum cat cat;        /* what it counts as in the summary */
	char *dn;            /* the entry (NULL for a note) */
	char *text;          /* what a person reads: "add uid=...", "leave group ...: member", or the note */
	char *names;         /* for the audit: attribute names, or the new DN of a rename */
	struct changes c;    /* add: the attributes; modify: the modifications */
	char *newrdn, *newsup; /* rename */
	bool tolerate_gone;  /* follow rename: the value or entry gone meanwhile is no failure */
	bool tolerate_needed; /* drop reference: a value the entry's class requires stays, said */
	char *left_group;    /* leave group: the group, remembered for a return once left */
	unsigned password_length; /* add: an initial password of this many characters is made when it runs */
	/* add by Password Modify: the terminated.attributes (fixed ones) the entry
	 * is made with, so that it is never open without its password; c holds
	 * the values it opens with once the password is set */
	struct changes lock;
	enum mapping_password_method password_method;
};

struct plan {
	struct step *v;
	size_t n;
};

/* What one record's handling shares. */
struct job {
	struct apply_ctx *a;
	const char *kind;  /* "employee", "team" */
	const char *id;
	const char *event; /* the last part of the subscription type */
	const char *type;  /* the whole subscription type, for the audit log */
	struct sbuf *err;
	bool counted;      /* the record's category was counted */
	bool changed;      /* an operation was made (or printed) for this record */
	bool deferred;     /* its change was handed to the deletion guard, not made */
	bool returning;    /* a leaver coming back: not kept out of the groups it rejoins */
	bool fresh;        /* the record was read from the API just now, not taken from the delivery */
	unsigned groups_held; /* depth of groups_enter() calls */
	int last_rc;          /* the directory's result code of the last failed operation */
	char *own_id;         /* j.id's storage, when the job owns it */
	struct plan plan;     /* worked out, not carried out yet */
	bool added;           /* the plan adds the employee's entry */
	const char *key;   /* the record's key, once known */
	struct strmap dn_cache; /* employee id -> DN ("" when none) */
	struct strmap touched;  /* group DNs already changed for this record */
	struct strmap unique_known; /* "attr=value" folded -> DN holding it ("" when free), read with the key */
	struct strmap followed; /* "DN\nattr" a managed group's or entry's rewrite has planned already */
	/* references an earlier apply of this record did not finish following
	 * (the store's "follow" mark): they still name follow_from */
	char *follow_from;
	bool follow_consumed; /* followed by this job */
	bool follow_marked;   /* this job wrote the mark */
};

static void job_maps_init(struct job *j)
{
	strmap_init(&j->dn_cache);
	strmap_init(&j->touched);
	strmap_init(&j->unique_known);
	strmap_init(&j->followed);
}

static void job_maps_free(struct job *j)
{
	strmap_free(&j->dn_cache);
	strmap_free(&j->touched);
	strmap_free(&j->unique_known);
	strmap_free(&j->followed);
	free(j->follow_from);
	j->follow_from = NULL;
}

#define PIPELINE_WINDOW 32 /* adds in flight at most */

struct pending_add {
	int msgid;
	char *id;
	char *key;
	char *dn;
	char *names;
	char *type;
};

struct apply_cache {
	struct ldapw_entries emp;  /* managed employee entries, as read */
	struct strmap by_key;      /* key value -> index in emp */
	struct strmap dn_by_key;   /* key value -> DN now (follows adds, renames, deletes) */
	struct strmap values;      /* "attr=value" lower-cased -> DN holding it ("\1" when several) */
	struct strmap seen;        /* keys of the records this run had */
	struct strmap terminated;  /* keys of employees terminated or out of scope, per the API */
	struct ldapw_entries added; /* entries this run added (for a second look at them) */
	struct strmap added_by_key;
	struct strmap bases;       /* bases (template ones) known to exist or planned: read once a run */
	struct pending_add *pending; /* adds sent, answers not read yet */
	size_t npending;
};

/* ---- changes ------------------------------------------------------------ */

static void changes_free(struct changes *c)
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
static int changes_add(struct changes *c, int op, const char *attr, const struct vlist *values)
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

static bool same_set(const struct vlist *a, const struct vlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (!vlist_contains(b, a->v[i]))
			return false;
	return true;
}

/* The smallest modification that turns current into desired (exact values). */
static int diff_attr(struct changes *c, const char *attr, const struct vlist *cur, const struct vlist *want)
{
	static const struct vlist none = { 0 };
	struct vlist del, add;
	int rc = -1;

	if (!cur)
		cur = &none;
	if (same_set(cur, want))
		return 0;
	if (want->n == 0)
		return changes_add(c, LDAP_MOD_DELETE, attr, NULL);
	if (cur->n <= 1 || want->n == 1)
		return changes_add(c, LDAP_MOD_REPLACE, attr, want);
	vlist_init(&del);
	vlist_init(&add);
	for (size_t i = 0; i < cur->n; i++)
		if (!vlist_contains(want, cur->v[i]) && vlist_push_copy(&del, cur->v[i], strlen(cur->v[i])) < 0)
			goto cleanup;
	for (size_t i = 0; i < want->n; i++)
		if (!vlist_contains(cur, want->v[i]) && vlist_push_copy(&add, want->v[i], strlen(want->v[i])) < 0)
			goto cleanup;
	/* delete first: a value that only changes case must leave before it comes back */
	if (del.n && changes_add(c, LDAP_MOD_DELETE, attr, &del) < 0)
		goto cleanup;
	if (add.n && changes_add(c, LDAP_MOD_ADD, attr, &add) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	vlist_free(&del);
	vlist_free(&add);
	return rc;
}

/* "title, mail" for messages and the audit log. */
static void attr_names(const struct changes *c, struct sbuf *out)
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

static void count(struct job *j, enum cat cat)
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
static void say_now(struct job *j, const char *what)
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

static void say(struct job *j, const char *what);
static void sayf(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sayf(struct job *j, const char *fmt, ...)
{
	struct sbuf what;
	va_list ap;

	sbuf_init(&what);
	va_start(ap, fmt);
	sbuf_vaddf(&what, fmt, ap);
	va_end(ap);
	say(j, sbuf_str(&what));
	sbuf_free(&what);
}

static int failed(struct job *j, const char *dn, const struct ldapw_error *e)
{
	j->last_rc = e->rc;
	sbuf_addf(j->err, "%s %s: %s: %s: %s", j->kind, j->id, dn, e->op, e->text);
	j->a->connection_lost = ldapw_error_is_connection(e);
	return -1;
}

/* Groups are read and changed by one job at a time (apply_ctx.groups_lock). */
static void groups_enter(struct job *j)
{
	if (j->a->groups_lock && j->groups_held++ == 0)
		pthread_mutex_lock(j->a->groups_lock);
}

/* Once taken, the lock is kept until the job ends (groups_release): the
 * plan read under it is carried out under it. */
static void groups_leave(struct job *j)
{
	(void)j;
}

static void groups_release(struct job *j)
{
	if (j->a->groups_lock && j->groups_held)
		pthread_mutex_unlock(j->a->groups_lock);
	j->groups_held = 0;
}

static void audit(struct job *j, const char *dn, const char *op, const char *attrs)
{
	struct sbuf e;

	if (!j->a->st)
		return;
	sbuf_init(&e);
	if (store_audit(j->a->st, j->type, j->kind, j->id, dn, op, attrs, &e) < 0)
		log_warn("%s %s: %s: the audit log could not be written: %s", j->kind, j->id, dn, sbuf_str(&e));
	sbuf_free(&e);
}

static struct ldapw_mod *to_mods(const struct changes *c)
{
	struct ldapw_mod *m = calloc(c->n ? c->n : 1, sizeof(*m));

	for (size_t i = 0; m && i < c->n; i++) {
		m[i].op = c->v[i].op;
		m[i].attr = c->v[i].attr;
		m[i].values = &c->v[i].values;
	}
	return m;
}

static void pending_free(struct pending_add *p)
{
	free(p->id);
	free(p->key);
	free(p->dn);
	free(p->names);
	free(p->type);
}

/* Reads the answer to one add in flight; -1 when it failed. */
static int collect_one(struct apply_ctx *a)
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
			pending_free(&c->pending[k]);
		}
		c->npending = 0;
		return -1;
	}
	if (code == LDAP_SUCCESS) {
		struct job j = { .a = a, .type = c->pending[i].type, .kind = "employee", .id = c->pending[i].id,
		                 .event = "sync" };
		sayf(&j, "add %s", c->pending[i].dn);
		audit(&j, c->pending[i].dn, "add", c->pending[i].names);
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
	pending_free(&c->pending[i]);
	c->pending[i] = c->pending[--c->npending];
	return code == LDAP_SUCCESS ? 0 : -1;
}

int apply_flush(struct apply_ctx *a)
{
	int rc = 0;

	while (a->cache && a->cache->npending) {
		if (collect_one(a) < 0 && a->connection_lost) {
			rc = -1;
			break;
		}
	}
	return rc;
}

/* ---- the plan: what a record needs, worked out first ----------------------
 *
 * Working out a record (reads of the directory, the mapping) yields a plan:
 * steps in order, each an add, modify, rename or delete of one entry with
 * what a person reads about it, or a note.  An executor then carries the
 * plan out: to the directory (one operation at a time, or adds in flight
 * when syncing), or as LDIF for a dry run.  Dry and real runs share
 * everything up to the executor; the deletion guard is asked about a plan
 * that would disable or delete, before it is carried out or set aside. */

static void step_free(struct step *s)
{
	free(s->dn);
	free(s->text);
	free(s->names);
	free(s->newrdn);
	free(s->newsup);
	free(s->left_group);
	changes_free(&s->c);
	changes_free(&s->lock);
}

static void plan_clear(struct job *j)
{
	for (size_t i = 0; i < j->plan.n; i++)
		step_free(&j->plan.v[i]);
	free(j->plan.v);
	memset(&j->plan, 0, sizeof(j->plan));
}

static int changes_copy(struct changes *to, const struct changes *from)
{
	for (size_t i = 0; from && i < from->n; i++)
		if (changes_add(to, from->v[i].op, from->v[i].attr, &from->v[i].values) < 0)
			return -1;
	return 0;
}

/* A new step at the end of the plan (NULL when memory ran out). */
static struct step *plan_push(struct job *j, enum step_kind kind, enum cat cat, const char *dn, const char *text)
{
	struct step *v = realloc(j->plan.v, (j->plan.n + 1) * sizeof(*v)), *s;

	if (!v)
		return NULL;
	j->plan.v = v;
	s = &v[j->plan.n];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->cat = cat;
	s->dn = dn ? strdup(dn) : NULL;
	s->text = strdup(text);
	if ((dn && !s->dn) || !s->text) {
		step_free(s);
		return NULL;
	}
	j->plan.n++;
	return s;
}

/* An operation step. */
static struct step *plan_op(struct job *j, enum step_kind kind, enum cat cat, const char *dn, const char *text)
{
	struct step *s = plan_push(j, kind, cat, dn, text);

	if (s)
		j->changed = true;
	else
		sbuf_adds(j->err, "out of memory");
	return s;
}

static int op_add(struct job *j, const char *dn, const struct changes *attrs, enum cat cat)
{
	struct sbuf what, names;
	struct step *s;
	int rc;

	sbuf_init(&what);
	sbuf_init(&names);
	attr_names(attrs, &names);
	sbuf_addf(&what, "add %s", dn);
	s = plan_op(j, STEP_ADD, cat, dn, sbuf_str(&what));
	rc = s && changes_copy(&s->c, attrs) == 0 && (s->names = sbuf_detach(&names)) ? 0 : -1;
	sbuf_free(&what);
	sbuf_free(&names);
	return rc;
}

static int op_modify(struct job *j, const char *dn, const struct changes *c, enum cat cat, const char *verb)
{
	struct sbuf what, names;
	struct step *s;
	int rc;

	if (c->n == 0)
		return 0;
	sbuf_init(&what);
	sbuf_init(&names);
	attr_names(c, &names);
	sbuf_addf(&what, "%s %s: %s", verb, dn, sbuf_str(&names));
	s = plan_op(j, STEP_MODIFY, cat, dn, sbuf_str(&what));
	rc = s && changes_copy(&s->c, c) == 0 && (s->names = sbuf_detach(&names)) ? 0 : -1;
	if (s && (strcmp(verb, "follow rename") == 0 || strcmp(verb, "drop reference") == 0))
		s->tolerate_gone = true;
	if (s && strcmp(verb, "drop reference") == 0)
		s->tolerate_needed = true;
	sbuf_free(&what);
	sbuf_free(&names);
	return rc;
}

static int op_rename(struct job *j, const char *dn, const char *newdn, const char *newrdn, const char *newsup,
                     enum cat cat)
{
	struct sbuf what;
	struct step *s;
	int rc;

	sbuf_init(&what);
	sbuf_addf(&what, "rename %s to %s", dn, newdn);
	s = plan_op(j, STEP_RENAME, cat, dn, sbuf_str(&what));
	rc = s && (s->names = strdup(newdn)) && (s->newrdn = strdup(newrdn)) && (!newsup || (s->newsup = strdup(newsup)))
	             ? 0
	             : -1;
	sbuf_free(&what);
	return rc;
}

static int op_delete(struct job *j, const char *dn)
{
	struct sbuf what;
	struct step *s;

	sbuf_init(&what);
	sbuf_addf(&what, "delete %s", dn);
	s = plan_op(j, STEP_DELETE, CAT_DELETE, dn, sbuf_str(&what));
	sbuf_free(&what);
	return s ? 0 : -1;
}

/* The summary counts each record once by its main category, and every modify. */
static void count_step(struct job *j, const struct step *s)
{
	if (s->cat == CAT_NONE)
		return; /* a step made for the record's sake (an organizational unit for it), not the record */
	if (s->kind == STEP_DELETE) {
		count(j, CAT_DELETE);
		j->counted = true;
	} else if (s->kind == STEP_MODIFY) {
		if (s->cat == CAT_MODIFY || !j->counted)
			count(j, s->cat);
		if (s->cat != CAT_MODIFY)
			j->counted = true;
	} else {
		if (!j->counted)
			count(j, s->cat);
		j->counted = true;
	}
}

static const char *const step_names[] = {
	[STEP_NOTE] = "note", [STEP_ADD] = "add", [STEP_MODIFY] = "modify", [STEP_RENAME] = "modrdn",
	[STEP_DELETE] = "delete",
	[STEP_PASSWORD] = "password",
};

/* What the dry run says of an initial password, by method: never the password. */
static const char *const password_notes[] = {
	[MAPPING_PASSWORD_MODIFY] = "userPassword: a random initial password, set by Password Modify (RFC 3062) when "
	                            "the entry is made (never shown)",
	[MAPPING_PASSWORD_UNICODEPWD] = "unicodePwd: a random initial password, made when the entry is (never shown)",
	[MAPPING_PASSWORD_USERPASSWORD] = "userPassword: a random initial password, made when the entry is (never shown)",
};

/* How each method reaches the directory. */
static const enum ldapw_password_method password_methods[] = {
	[MAPPING_PASSWORD_MODIFY] = LDAPW_PASSWORD_MODIFY,
	[MAPPING_PASSWORD_UNICODEPWD] = LDAPW_PASSWORD_UNICODEPWD,
	[MAPPING_PASSWORD_USERPASSWORD] = LDAPW_PASSWORD_USERPASSWORD,
};

/* The LDIF executor: each step under its comment, as ldapmodify takes it. */
static void ldif_step(struct job *j, const struct step *s)
{
	struct sbuf *out = j->a->ldif;

	say_now(j, s->text);
	if (s->kind == STEP_NOTE)
		return;
	if (s->kind == STEP_PASSWORD) {
		ldifw_comment(out, "userPassword: a new random initial password, set by Password Modify (RFC 3062) "
		                   "(never shown)");
		sbuf_addc(out, '\n');
		return;
	}
	ldifw_change(out, s->dn, s->kind == STEP_RENAME ? "modrdn" : step_names[s->kind]);
	if (s->kind == STEP_ADD) {
		for (size_t i = 0; i < s->c.n; i++)
			for (size_t k = 0; k < s->c.v[i].values.n; k++)
				ldifw_attr(out, s->c.v[i].attr, s->c.v[i].values.v[k]);
		if (s->password_length)
			ldifw_comment(out, password_notes[s->password_method]);
	} else if (s->kind == STEP_MODIFY) {
		for (size_t i = 0; i < s->c.n; i++) {
			const char *op = s->c.v[i].op == LDAP_MOD_ADD      ? "add"
			                 : s->c.v[i].op == LDAP_MOD_DELETE ? "delete"
			                                                   : "replace";
			ldifw_mod(out, op, s->c.v[i].attr, (const char *const *)s->c.v[i].values.v, s->c.v[i].values.n);
		}
	} else if (s->kind == STEP_RENAME) {
		ldifw_attr(out, "newrdn", s->newrdn);
		sbuf_adds(out, "deleteoldrdn: 1\n");
		if (s->newsup)
			ldifw_attr(out, "newsuperior", s->newsup);
	}
	sbuf_addc(out, '\n');
	count_step(j, s);
}

/* An employee add sent without waiting for its answer (sync): apply_flush collects it. */
static int pipelined_add(struct job *j, const struct step *s, struct ldapw_mod *mods)
{
	struct apply_cache *c = j->a->cache;
	struct pending_add *p;
	struct ldapw_error e;
	int msgid;

	while (c->npending >= PIPELINE_WINDOW)
		if (collect_one(j->a) < 0 && j->a->connection_lost)
			return -1;
	if (!(p = realloc(c->pending, (c->npending + 1) * sizeof(*p))))
		return -1;
	c->pending = p;
	if (ldapw_add_async(j->a->lw, s->dn, mods, s->c.n, &msgid, &e) != LDAP_SUCCESS)
		return failed(j, s->dn, &e);
	p = &c->pending[c->npending++];
	p->msgid = msgid;
	p->id = strdup(j->id);
	p->key = strdup(j->key);
	p->dn = strdup(s->dn);
	p->names = strdup(s->names);
	p->type = strdup(j->type);
	count_step(j, s);
	return 0;
}

/* For tests only: with FACTORIAL_LDAP_AGENT_TEST_PASSWORD_FILE set, an
 * initial password is appended there ("ID PASSWORD"), so that a test can bind
 * with it.  Nothing else ever writes a password anywhere. */
static void hand_to_test(const struct job *j, const struct secret *pw)
{
	const char *path = getenv("FACTORIAL_LDAP_AGENT_TEST_PASSWORD_FILE");
	int fd;

	if (!path || !*path || (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0)
		return;
	if (dprintf(fd, "%s %s\n", j->id, pw->data) < 0)
		log_warn("the test password file %s could not be written", path);
	close(fd);
}

/* The password owed to the record's entry: marked before the entry is made
 * (1), cleared once it is set or the entry is gone again (0). */
static void owe_password(struct job *j, bool owed)
{
	struct sbuf e;

	if (!j->a->st || !j->key)
		return;
	sbuf_init(&e);
	if (store_set_mark(j->a->st, j->key, "password", owed ? "owed" : NULL, &e) < 0)
		log_warn("%s %s: %s", j->kind, j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* The values the entry is added with while it has no password: c, with the
 * attributes of lock in lock's values. */
static int locked_changes(const struct step *s, struct changes *out)
{
	for (size_t i = 0; i < s->c.n; i++) {
		bool locked = false;
		for (size_t k = 0; k < s->lock.n; k++)
			locked = locked || strcasecmp(s->c.v[i].attr, s->lock.v[k].attr) == 0;
		if (!locked && changes_add(out, s->c.v[i].op, s->c.v[i].attr, &s->c.v[i].values) < 0)
			return -1;
	}
	return changes_copy(out, &s->lock);
}

/* What opens it once its password is set: each attribute of lock back to its
 * values in c, or gone. */
static int opening_changes(const struct step *s, struct changes *out)
{
	for (size_t k = 0; k < s->lock.n; k++) {
		const struct change *open = NULL;
		for (size_t i = 0; i < s->c.n && !open; i++)
			if (strcasecmp(s->c.v[i].attr, s->lock.v[k].attr) == 0)
				open = &s->c.v[i];
		/* a replace also when it goes: ppolicy takes pwdAccountLockedTime away itself when the
		 * password is set */
		if (changes_add(out, LDAP_MOD_REPLACE, s->lock.v[k].attr, open ? &open->values : NULL) < 0)
			return -1;
	}
	return 0;
}

/* A password refused: the entry made for it goes again (it was never
 * usable), and the reason says what became of it. */
static void take_back(struct job *j, const char *dn, struct ldapw_error *e)
{
	struct ldapw_error de;
	size_t len = strlen(e->text);

	if (ldapw_error_is_connection(e)) {
		snprintf(e->text + len, sizeof(e->text) - len, " (the entry stays as a leaver's until it gets its password)");
		return;
	}
	if (ldapw_delete(j->a->lw, dn, &de) == LDAP_SUCCESS) {
		owe_password(j, false);
		snprintf(e->text + len, sizeof(e->text) - len, " (the entry was removed again)");
	} else {
		snprintf(e->text + len, sizeof(e->text) - len,
		         " (removing the entry again failed: %s; it stays as a leaver's until it gets its password)", de.text);
	}
}

/* An add with an initial password: made now, sent, wiped.  With Password
 * Modify (a second operation) the entry is made in its terminated state
 * (the fixed terminated.attributes: locked, where they lock), given its
 * password, then opened; a refused password takes the add back.  The mark
 * in the store lets an apply that stopped half way finish. */
static int add_with_password(struct job *j, const struct step *s, const struct ldapw_mod *mods,
                             struct ldapw_error *e)
{
	struct changes locked = { 0 }, opening = { 0 };
	struct ldapw_mod *lm = NULL, *om = NULL;
	struct secret pw = { 0 };
	int r = LDAP_NO_MEMORY;

	if (secret_generate(&pw, s->password_length) < 0) {
		snprintf(e->op, sizeof(e->op), "add");
		snprintf(e->text, sizeof(e->text), "no random initial password could be made (getrandom)");
		e->rc = LDAP_OTHER;
		return LDAP_OTHER;
	}
	if (s->password_method != MAPPING_PASSWORD_MODIFY) {
		r = ldapw_add_password(j->a->lw, s->dn, mods, s->c.n, password_methods[s->password_method], pw.data, e);
		if (r == LDAP_SUCCESS)
			hand_to_test(j, &pw);
		goto cleanup;
	}
	if (locked_changes(s, &locked) < 0 || opening_changes(s, &opening) < 0 || !(lm = to_mods(&locked)) ||
	    !(om = to_mods(&opening))) {
		snprintf(e->op, sizeof(e->op), "add");
		snprintf(e->text, sizeof(e->text), "out of memory");
		e->rc = r;
		goto cleanup;
	}
	owe_password(j, true);
	if ((r = ldapw_add(j->a->lw, s->dn, lm, locked.n, e)) != LDAP_SUCCESS) {
		owe_password(j, false);
		goto cleanup;
	}
	if ((r = ldapw_set_password(j->a->lw, s->dn, pw.data, e)) != LDAP_SUCCESS) {
		take_back(j, s->dn, e);
		goto cleanup;
	}
	hand_to_test(j, &pw);
	secret_free(&pw);
	if (opening.n && (r = ldapw_modify(j->a->lw, s->dn, om, opening.n, e)) != LDAP_SUCCESS)
		goto cleanup; /* the mark stays: the next apply sets a new password and opens it */
	owe_password(j, false);
cleanup:
	secret_free(&pw);
	free(lm);
	free(om);
	changes_free(&locked);
	changes_free(&opening);
	return r;
}

/* A new initial password for an entry whose own was never set (an apply
 * stopped between its add and its password): refused, the entry goes. */
static int password_again(struct job *j, const struct step *s, struct ldapw_error *e)
{
	struct secret pw;
	int r;

	if (secret_generate(&pw, s->password_length) < 0) {
		snprintf(e->op, sizeof(e->op), "password modify");
		snprintf(e->text, sizeof(e->text), "no random initial password could be made (getrandom)");
		e->rc = LDAP_OTHER;
		return LDAP_OTHER;
	}
	r = ldapw_set_password(j->a->lw, s->dn, pw.data, e);
	if (r == LDAP_SUCCESS) {
		hand_to_test(j, &pw);
		owe_password(j, false);
	} else {
		take_back(j, s->dn, e);
	}
	secret_free(&pw);
	return r;
}

/* One step to the directory; said and audited once the server confirmed it. */
static int directory_step(struct job *j, const struct step *s)
{
	struct ldapw_mod *mods = NULL;
	struct ldapw_error e;
	int rc = -1, r = LDAP_SUCCESS;

	if (s->kind == STEP_NOTE) {
		say_now(j, s->text);
		return 0;
	}
	if ((s->kind == STEP_ADD || s->kind == STEP_MODIFY) && !(mods = to_mods(&s->c)))
		goto cleanup;
	/* an organizational unit or a rule group made for the record goes first, and waits for its answer */
	if (s->kind == STEP_ADD && !s->password_length && s->cat == CAT_ADD && j->a->pipeline && j->a->cache && j->key &&
	    strcmp(j->kind, "employee") == 0) {
		rc = pipelined_add(j, s, mods);
		goto cleanup;
	}
	if (s->kind == STEP_ADD && s->password_length)
		r = add_with_password(j, s, mods, &e);
	else if (s->kind == STEP_PASSWORD)
		r = password_again(j, s, &e);
	else if (s->kind == STEP_ADD)
		r = ldapw_add(j->a->lw, s->dn, mods, s->c.n, &e);
	else if (s->kind == STEP_MODIFY)
		r = ldapw_modify(j->a->lw, s->dn, mods, s->c.n, &e);
	else if (s->kind == STEP_RENAME)
		r = ldapw_rename(j->a->lw, s->dn, s->newrdn, s->newsup, &e);
	else
		r = ldapw_delete(j->a->lw, s->dn, &e);
	/* Active Directory rewrites references (member, manager) itself when an entry is
	 * renamed: the old name then resolves to nothing (00002035) */
	if (r != LDAP_SUCCESS && s->tolerate_gone &&
	    (r == LDAP_NO_SUCH_ATTRIBUTE || r == LDAP_NO_SUCH_OBJECT || (r == LDAP_UNWILLING_TO_PERFORM && e.ad_code == 0x2035))) {
		/* the old name left that entry meanwhile (its own delivery changed it): nothing to follow */
		log_debug("%s %s: %s: the old name is gone already", j->kind, j->id, s->dn);
		rc = 0;
		goto cleanup;
	}
	if (r == LDAP_OBJECT_CLASS_VIOLATION && s->tolerate_needed) {
		/* the last member of a group that must have one: the deleted entry's DN names nothing now */
		log_warn("%s %s: %s: its value naming the deleted entry stays: %s", j->kind, j->id, s->dn, e.text);
		rc = 0;
		goto cleanup;
	}
	if (r == LDAP_ALREADY_EXISTS && s->kind == STEP_ADD && s->cat == CAT_NONE) {
		/* an organizational unit another worker made for its own record meanwhile */
		log_debug("%s %s: %s: made meanwhile", j->kind, j->id, s->dn);
		rc = 0;
		goto cleanup;
	}
	if (r != LDAP_SUCCESS) {
		failed(j, s->dn, &e);
		goto cleanup;
	}
	say_now(j, s->text);
	audit(j, s->dn, step_names[s->kind], s->names ? s->names : "");
	count_step(j, s);
	if (s->left_group && j->a->st && j->key) {
		struct sbuf le;
		sbuf_init(&le);
		if (store_left_group(j->a->st, j->key, s->left_group, &le) < 0)
			log_warn("%s %s: %s", j->kind, j->id, sbuf_str(&le));
		sbuf_free(&le);
	}
	rc = 0;
cleanup:
	free(mods);
	return rc;
}

/* Carries the job's plan out, as LDIF or to the directory, stopping at the
 * first step the directory refuses; the plan is empty afterwards. */
static int execute(struct job *j)
{
	int rc = 0;

	for (size_t i = 0; i < j->plan.n && rc == 0; i++) {
		if (j->a->dry_run)
			ldif_step(j, &j->plan.v[i]);
		else
			rc = directory_step(j, &j->plan.v[i]);
	}
	plan_clear(j);
	return rc;
}

/* A note: said now in a real run, in its place in the plan's LDIF in a dry run. */
static void say(struct job *j, const char *what)
{
	if (j->a->dry_run && plan_push(j, STEP_NOTE, CAT_NONE, NULL, what))
		return;
	say_now(j, what);
}

/* ---- reading the directory ------------------------------------------------- */

/* objectClass, also (when not NULL) and every attribute the section owns, NULL-terminated. */
static const char **owned_attrs(const struct mapping_object *o, const char *also)
{
	const char **v = calloc(o->nattrs + o->nterm_attrs + 3, sizeof(*v));
	size_t n = 0;

	if (!v)
		return NULL;
	v[n++] = "objectClass";
	if (also)
		v[n++] = also;
	for (size_t i = 0; i < o->nattrs; i++)
		v[n++] = o->attrs[i].name;
	for (size_t i = 0; i < o->nterm_attrs; i++)
		v[n++] = o->term_attrs[i].name;
	return v;
}

static void key_held_twice(struct job *j, const struct mapping_object *o, const char *key,
                           const struct ldapw_entries *found)
{
	sbuf_addf(j->err, "%s %s: the key %s=%s is held by %zu entries (", j->kind, j->id, o->key_attr, key, found->n);
	for (size_t i = 0; i < found->n; i++)
		sbuf_addf(j->err, "%s%s", i ? "; " : "", found->v[i].dn);
	sbuf_adds(j->err, "); nothing changed: remove the duplicate");
}

/* Finds the one entry holding key under the section's search_base: from the
 * cache (sync) or the directory.  *cur points into own or into the cache. */
static int find_by_key(struct job *j, const struct mapping_object *o, enum mapping_kind kind, const char *key,
                       struct ldapw_entries *own, const struct ldapw_entry **cur)
{
	const char **attrs = NULL;
	char *filter = NULL;
	struct ldapw_error e;
	int rc = -1;

	memset(own, 0, sizeof(*own));
	*cur = NULL;
	if (kind == MAPPING_EMPLOYEE && j->a->cache) {
		struct apply_cache *c = j->a->cache;
		const char *idx = strmap_get(&c->by_key, key);
		const char *added = strmap_get(&c->added_by_key, key);
		strmap_put(&c->seen, key, NULL);
		if (idx && *idx == '!') {
			sbuf_addf(j->err, "%s %s: the key %s=%s is held by %s; nothing changed: remove the duplicate", j->kind,
			          j->id, o->key_attr, key, idx + 1);
			return -1;
		}
		if (added)
			*cur = &c->added.v[atol(added)];
		else if (idx && strmap_get(&c->dn_by_key, key))
			*cur = &c->emp.v[atol(idx)];
		return 0;
	}
	attrs = owned_attrs(o, NULL);
	filter = ldapw_eq_filter(o->key_attr, key);
	if (!attrs || !filter) {
		sbuf_adds(j->err, "out of memory");
		goto cleanup;
	}
	if (ldapw_search(j->a->lw, o->search_base, filter, attrs, 0, own, &e) != LDAP_SUCCESS) {
		failed(j, o->search_base, &e);
		goto cleanup;
	}
	if (own->n > 1) {
		key_held_twice(j, o, key, own);
		ldapw_entries_free(own);
		goto cleanup;
	}
	*cur = own->n ? &own->v[0] : NULL;
	rc = 0;
cleanup:
	free(attrs);
	free(filter);
	return rc;
}

struct hookctx {
	struct job *j;
	const struct ldapw_entry *own;
	const char *search_base;
	enum mapping_kind kind;
};

static int hook_taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	struct hookctx *h = ctx;
	static const char *const none[] = { "1.1", NULL };
	struct ldapw_entries found;
	struct ldapw_error e;
	char *filter = ldapw_eq_filter(attr, value);
	int taken = 0;

	if (!filter)
		return -1;
	if (h->j->a->cache && h->kind == MAPPING_EMPLOYEE) {
		const char *holder = strmap_get_folded(&h->j->a->cache->values, attr, value);
		free(filter);
		return holder && (holder[0] == '\1' || !h->own || !dn_equal(holder, h->own->dn));
	}
	/* asked already, with the search for the record's entry ("" when nobody holds it) */
	if (h->kind == MAPPING_EMPLOYEE && h->j->unique_known.n) {
		const char *holder = strmap_get_folded(&h->j->unique_known, attr, value);
		if (holder) {
			free(filter);
			return *holder && (!h->own || !dn_equal(holder, h->own->dn));
		}
	}
	if (ldapw_search(h->j->a->lw, h->search_base, filter, none, 2, &found, &e) != LDAP_SUCCESS) {
		free(filter);
		sbuf_addf(err, "checking that %s=%s is free: %s", attr, value, e.text);
		h->j->a->connection_lost = ldapw_error_is_connection(&e);
		return -1;
	}
	for (size_t i = 0; i < found.n; i++)
		if (!h->own || !dn_equal(found.v[i].dn, h->own->dn))
			taken = 1;
	ldapw_entries_free(&found);
	free(filter);
	return taken;
}

static int hook_existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err)
{
	struct hookctx *h = ctx;
	const struct vlist *v;

	(void)err;
	if (!h->own || !(v = ldapw_entry_values(h->own, attr)) || v->n == 0)
		return 0;
	for (size_t i = 0; i < v->n; i++)
		if (vlist_push_copy(out, v->v[i], strlen(v->v[i])) < 0)
			return -1;
	return 1;
}

/* A record holding only an id, as an employee or team reference sees it. */
static cJSON *id_record(const char *id)
{
	cJSON *r = cJSON_CreateObject();

	/* as text, exactly: an id past 2^53 does not survive a double (ids.h) */
	if (r && !cJSON_AddStringToObject(r, "id", id)) {
		cJSON_Delete(r);
		r = NULL;
	}
	return r;
}

/* The DN of employee id's entry: 1 found, 0 none, -1 failure. */
/* Whether the employee with this key is a leaver to keep out of groups. */
static int kept_out(struct job *j, const char *key)
{
	struct sbuf e;
	int t;

	if (!j->a->m->obj[MAPPING_EMPLOYEE].remove_from_groups)
		return 0;
	if (j->returning && j->key && strcmp(key, j->key) == 0)
		return 0;
	if (j->a->cache)
		return strmap_get(&j->a->cache->terminated, key) != NULL;
	if (!j->a->state)
		return 0;
	sbuf_init(&e);
	t = store_terminated(j->a->state, key, &e);
	if (t < 0)
		log_warn("%s", sbuf_str(&e));
	sbuf_free(&e);
	return t > 0;
}

static int lookup_employee(struct job *j, const char *id, char **dn, bool membership)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	static const char *const none[] = { "1.1", NULL };
	const char *cached = strmap_get(&j->dn_cache, id);
	struct ldapw_entries found;
	struct ldapw_error e;
	char *key = NULL, *filter = NULL;
	cJSON *rec;
	int rc = -1;

	*dn = NULL;
	if (!o->present)
		return 0;
	rec = id_record(id);
	if (!rec || mapping_key(j->a->m, MAPPING_EMPLOYEE, rec, &key, j->err) < 0)
		goto cleanup;
	if (membership && kept_out(j, key)) {
		rc = 2;
		goto cleanup;
	}
	if (cached) {
		rc = *cached != '\0';
		if (rc && !(*dn = strdup(cached)))
			rc = -1;
		goto cleanup;
	}
	if (j->a->cache) {
		const char *known = strmap_get(&j->a->cache->dn_by_key, key);
		rc = known != NULL;
		if (rc && !(*dn = strdup(known)))
			rc = -1;
		goto cleanup;
	}
	if (!(filter = ldapw_eq_filter(o->key_attr, key)))
		goto cleanup;
	if (ldapw_search(j->a->lw, o->search_base, filter, none, 2, &found, &e) != LDAP_SUCCESS) {
		failed(j, o->search_base, &e);
		goto cleanup;
	}
	rc = found.n > 0;
	if (rc)
		*dn = strdup(found.v[0].dn);
	strmap_put(&j->dn_cache, id, rc ? found.v[0].dn : "");
	ldapw_entries_free(&found);
	if (rc && !*dn)
		rc = -1;
cleanup:
	cJSON_Delete(rec);
	free(key);
	free(filter);
	return rc;
}

/*
 * A team's members found in batches: the DNs of the employees its id lists
 * name (employee_ids, lead_ids, ...), PREFETCH_BATCH keys to a search, into
 * the job's cache, so that a team of 50,000 asks the directory some hundreds
 * of times, not 50,000.  A batch whose answer cannot be matched key for key
 * (an entry whose key the server matched otherwise, or two entries of one
 * key) leaves those ids to lookup_employee, one at a time, as before.
 */
enum { PREFETCH_BATCH = 100 };

static void prefetch_batch(struct job *j, const char *const *ids, char **keys, size_t n)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	const char *attrs[] = { o->key_attr, NULL };
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	struct strmap wanted, dn_of; /* the keys asked for; key -> DN ("" once two entries hold it) */
	struct sbuf f;
	bool exact = true;

	sbuf_init(&f);
	strmap_init(&wanted);
	strmap_init(&dn_of);
	sbuf_adds(&f, "(|");
	for (size_t i = 0; i < n; i++) {
		char *one = ldapw_eq_filter(o->key_attr, keys[i]);
		if (!one || strmap_put(&wanted, keys[i], NULL) < 0) {
			free(one);
			goto cleanup;
		}
		sbuf_adds(&f, one);
		free(one);
	}
	sbuf_addc(&f, ')');
	if (f.failed || ldapw_search(j->a->lw, o->search_base, sbuf_str(&f), attrs, 0, &found, &e) != LDAP_SUCCESS)
		goto cleanup; /* each is looked up alone later, and fails there with its reason */
	for (size_t i = 0; i < found.n; i++) {
		const struct vlist *v = ldapw_entry_values(&found.v[i], o->key_attr);
		bool matched = false;
		for (size_t k = 0; v && k < v->n; k++) {
			if (!strmap_get(&wanted, v->v[k]))
				continue;
			strmap_put(&dn_of, v->v[k], strmap_get(&dn_of, v->v[k]) ? "" : found.v[i].dn);
			matched = true;
		}
		exact = exact && matched;
	}
	for (size_t i = 0; i < n; i++) {
		const char *dn = strmap_get(&dn_of, keys[i]);
		if (dn && *dn)
			strmap_put(&j->dn_cache, ids[i], dn);
		else if (!dn && exact)
			strmap_put(&j->dn_cache, ids[i], ""); /* no entry holds it */
	}
cleanup:
	ldapw_entries_free(&found);
	strmap_free(&wanted);
	strmap_free(&dn_of);
	sbuf_free(&f);
}

/* The batch gathered so far asked for, and emptied. */
static void prefetch_flush(struct job *j, char **ids, char **keys, size_t *n)
{
	if (*n)
		prefetch_batch(j, (const char *const *)ids, keys, *n);
	for (; *n; (*n)--) {
		free(keys[*n - 1]);
		free(ids[*n - 1]);
	}
}

static void prefetch_members(struct job *j, const cJSON *rec)
{
	char *ids[PREFETCH_BATCH], *keys[PREFETCH_BATCH];
	size_t n = 0;
	const cJSON *field;
	struct sbuf scratch;

	if (j->a->cache || !j->a->m->obj[MAPPING_EMPLOYEE].present || !cJSON_IsObject(rec))
		return;
	sbuf_init(&scratch);
	cJSON_ArrayForEach(field, rec) {
		size_t len = field->string ? strlen(field->string) : 0;
		const cJSON *idv;
		if (!cJSON_IsArray(field) || len < 4 || strcmp(field->string + len - 4, "_ids") != 0)
			continue;
		cJSON_ArrayForEach(idv, field) {
			cJSON *one = NULL;
			char *key = NULL, *id;
			sbuf_reset(&scratch);
			if (!(id = ids_text(idv, &scratch)) || strmap_get(&j->dn_cache, id)) {
				free(id);
				continue;
			}
			one = id_record(id);
			if (one && mapping_key(j->a->m, MAPPING_EMPLOYEE, one, &key, &scratch) == 0 && key) {
				ids[n] = id;
				keys[n++] = key;
			} else {
				free(key);
				free(id);
			}
			cJSON_Delete(one);
			if (n == PREFETCH_BATCH)
				prefetch_flush(j, ids, keys, &n);
		}
	}
	prefetch_flush(j, ids, keys, &n);
	sbuf_free(&scratch);
}

static int hook_employee_dn(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	struct hookctx *h = ctx;

	(void)err;
	return lookup_employee(h->j, id, dn, h->kind == MAPPING_TEAM);
}

/* ---- membership attributes ---------------------------------------------- */

/* Team attributes that hold members: those whose template uses employee_dn;
 * by_rdn when the value is the member's RDN value (memberUid). */
static bool is_member_attr(const struct mapping_attr *a, bool *by_rdn)
{
	if (by_rdn)
		*by_rdn = mapping_attr_uses_filter(a, TF_RDN);
	return mapping_attr_uses_filter(a, TF_EMPLOYEE_DN);
}

/* The values attribute a of a team with these members would have. */
static int member_values(struct job *j, const struct mapping_attr *a, const char *team_id, const char *employee_id,
                         struct vlist *out)
{
	struct hookctx hc = { .j = j, .kind = MAPPING_TEAM };
	struct vlist unresolved;
	struct tmpl_env env = { 0 };
	cJSON *rec = team_id ? id_record(team_id) : cJSON_CreateObject();
	cJSON *ids = cJSON_CreateArray();
	int rc = -1;

	vlist_init(&unresolved);
	if (!rec || !ids) {
		cJSON_Delete(ids);
		goto cleanup;
	}
	if (employee_id) {
		cJSON *one = id_record(employee_id);
		cJSON *idv = one ? cJSON_DetachItemFromObject(one, "id") : NULL;
		cJSON_Delete(one);
		if (!idv)
			goto cleanup;
		cJSON_AddItemToArray(ids, idv);
	}
	cJSON_AddItemToObject(rec, "employee_ids", ids);
	env.record = rec;
	env.tables = &j->a->m->tables;
	env.employee_dn = hook_employee_dn;
	env.ctx = &hc;
	env.unresolved = &unresolved;
	env.err = j->err;
	for (size_t t = 0; t < a->ntmpls; t++)
		if (tmpl_eval(a->tmpls[t], &env, out) < 0)
			goto cleanup;
	vlist_normalize(out);
	rc = 0;
cleanup:
	vlist_free(&unresolved);
	cJSON_Delete(rec);
	return rc;
}

/* Changes that take the member values `gone` out of attribute a of a group
 * holding `cur`; when nothing would be left, the values of a team without
 * members (cn=nobody) take their place. */
static int drop_members(struct job *j, struct changes *c, const struct mapping_attr *a, const struct vlist *cur,
                        const struct vlist *gone)
{
	struct vlist placeholder;
	size_t left = cur ? cur->n : 0;
	int rc = -1;

	vlist_init(&placeholder);
	if (!gone->n)
		return 0;
	for (size_t i = 0; cur && i < cur->n; i++)
		if (vlist_contains(gone, cur->v[i]))
			left--;
	if (changes_add(c, LDAP_MOD_DELETE, a->name, gone) < 0)
		goto cleanup;
	if (left == 0) {
		if (member_values(j, a, NULL, NULL, &placeholder) < 0)
			goto cleanup;
		if (placeholder.n && changes_add(c, LDAP_MOD_ADD, a->name, &placeholder) < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	vlist_free(&placeholder);
	return rc;
}

/* The values of cur that stand for member (by DN, or by RDN value). */
static void matching(const struct vlist *cur, const char *dn, const char *rdnval, bool by_rdn, struct vlist *out)
{
	for (size_t i = 0; cur && i < cur->n; i++) {
		bool hit = by_rdn ? (rdnval && strcmp(cur->v[i], rdnval) == 0) : dn_equal(cur->v[i], dn);
		if (hit)
			vlist_push_copy(out, cur->v[i], strlen(cur->v[i]));
	}
}

/* Builds "(&(key=*)(|(a1=v1)(a2=v2)...))" for the member attributes of t,
 * leaving out the groups of groups: (which may carry the same key attribute:
 * their members are settled by rule, not here). */
static char *member_filter(const struct mapping *m, const struct mapping_object *t, const char *dn,
                           const char *rdnval)
{
	struct sbuf f;

	sbuf_init(&f);
	sbuf_addf(&f, "(&(%s=*)", t->key_attr);
	for (size_t i = 0; i < m->ngroups; i++) {
		char *mark = ldapw_eq_filter(m->groups[i].key_attr, m->groups[i].key_value);
		if (mark)
			sbuf_addf(&f, "(!%s)", mark);
		free(mark);
	}
	sbuf_adds(&f, "(|");
	for (size_t i = 0; i < t->nattrs; i++) {
		bool by_rdn;
		char *one;
		if (!is_member_attr(&t->attrs[i], &by_rdn) || (by_rdn && !rdnval))
			continue;
		one = ldapw_eq_filter(t->attrs[i].name, by_rdn ? rdnval : dn);
		if (one)
			sbuf_adds(&f, one);
		free(one);
	}
	sbuf_adds(&f, "))");
	return sbuf_detach(&f);
}

static const char **member_attr_names(const struct mapping_object *t)
{
	const char **v = calloc(t->nattrs + 1, sizeof(*v));
	size_t n = 0;

	for (size_t i = 0; v && i < t->nattrs; i++)
		if (is_member_attr(&t->attrs[i], NULL))
			v[n++] = t->attrs[i].name;
	return v;
}

/* Takes the member dn (rdnval for memberUid-like attributes) out of every
 * managed group. */
static int remove_from_groups_locked(struct job *j, const char *dn, const char *rdnval)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	struct ldapw_entries groups = { 0 };
	struct ldapw_error e;
	const char **names = NULL;
	char *filter = NULL;
	int rc = -1;

	if (!t->present)
		return 0;
	names = member_attr_names(t);
	filter = member_filter(j->a->m, t, dn, rdnval);
	if (!names || !filter)
		goto cleanup;
	if (!names[0]) {
		rc = 0;
		goto cleanup;
	}
	if (ldapw_search(j->a->lw, t->search_base, filter, names, 0, &groups, &e) != LDAP_SUCCESS) {
		failed(j, t->search_base, &e);
		goto cleanup;
	}
	for (size_t g = 0; g < groups.n; g++) {
		struct changes c = { 0 };
		int r = 0;
		for (size_t i = 0; i < t->nattrs && r == 0; i++) {
			bool by_rdn;
			struct vlist gone;
			const struct vlist *cur;
			if (!is_member_attr(&t->attrs[i], &by_rdn))
				continue;
			cur = ldapw_entry_values(&groups.v[g], t->attrs[i].name);
			vlist_init(&gone);
			matching(cur, dn, rdnval, by_rdn, &gone);
			r = drop_members(j, &c, &t->attrs[i], cur, &gone);
			vlist_free(&gone);
		}
		if (r == 0)
			r = op_modify(j, groups.v[g].dn, &c, CAT_MODIFY, "leave group");
		if (r == 0 && c.n && j->plan.n &&
		    !(j->plan.v[j->plan.n - 1].left_group = strdup(groups.v[g].dn)))
			r = -1;
		strmap_put(&j->touched, groups.v[g].dn, NULL);
		changes_free(&c);
		if (r < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	ldapw_entries_free(&groups);
	free(names);
	free(filter);
	return rc;
}

static int remove_from_groups(struct job *j, const char *dn, const char *rdnval)
{
	int rc;

	groups_enter(j);
	rc = remove_from_groups_locked(j, dn, rdnval);
	groups_leave(j);
	return rc;
}

/* Adds (or removes) employee emp's member values in group, for team (NULL
 * when only the group is known); the value of a team without members
 * (cn=nobody) leaves when a real member comes. */
static int change_membership(struct job *j, const struct ldapw_entry *group, const char *team, const char *emp,
                             bool remove)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	struct changes c = { 0 };
	int rc = -1;

	for (size_t i = 0; i < t->nattrs; i++) {
		const struct mapping_attr *a = &t->attrs[i];
		const struct vlist *cur = ldapw_entry_values(group, a->name);
		struct vlist mine, placeholder, add, gone;
		bool by_rdn;
		int r = 0;
		if (!is_member_attr(a, &by_rdn))
			continue;
		vlist_init(&mine);
		vlist_init(&placeholder);
		vlist_init(&add);
		vlist_init(&gone);
		if (member_values(j, a, team, emp, &mine) < 0 || member_values(j, a, team, NULL, &placeholder) < 0) {
			r = -1;
		} else if (same_set(&mine, &placeholder)) {
			/* the member gives no value of its own (a leaver kept out): only the team's default came */
		} else if (remove) {
			for (size_t k = 0; k < mine.n; k++)
				matching(cur, mine.v[k], mine.v[k], by_rdn, &gone);
			r = drop_members(j, &c, a, cur, &gone);
		} else {
			for (size_t k = 0; k < mine.n; k++) {
				struct vlist hit;
				vlist_init(&hit);
				matching(cur, mine.v[k], mine.v[k], by_rdn, &hit);
				if (!hit.n)
					vlist_push_copy(&add, mine.v[k], strlen(mine.v[k]));
				vlist_free(&hit);
			}
			for (size_t k = 0; add.n && k < placeholder.n; k++)
				if (cur && vlist_contains(cur, placeholder.v[k]) && !vlist_contains(&mine, placeholder.v[k]))
					vlist_push_copy(&gone, placeholder.v[k], strlen(placeholder.v[k]));
			if (gone.n)
				r = changes_add(&c, LDAP_MOD_DELETE, a->name, &gone);
			if (r == 0 && add.n)
				r = changes_add(&c, LDAP_MOD_ADD, a->name, &add);
		}
		vlist_free(&mine);
		vlist_free(&placeholder);
		vlist_free(&add);
		vlist_free(&gone);
		if (r < 0)
			goto cleanup;
	}
	if (c.n == 0) {
		if (strcmp(j->kind, "membership") == 0)
			say(j, "the group is already right: nothing to do");
		rc = 0;
		goto cleanup;
	}
	rc = op_modify(j, group->dn, &c, CAT_MODIFY, remove ? "leave group" : "join group");
cleanup:
	changes_free(&c);
	return rc;
}

/* The group of team id: 1 and *found with it first, 0 when it has none, -1 on failure. */
static int team_group(struct job *j, const char *team, struct ldapw_entries *found, const struct ldapw_entry **group)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	cJSON *trec = id_record(team);
	char *key = NULL;
	int rc = -1;

	*group = NULL;
	if (trec && mapping_key(j->a->m, MAPPING_TEAM, trec, &key, j->err) == 0 &&
	    find_by_key(j, t, MAPPING_TEAM, key, found, group) == 0)
		rc = *group != NULL;
	cJSON_Delete(trec);
	free(key);
	return rc;
}

/* A new or returning employee joins the groups of the teams the record lists
 * (team_ids, as enrichment adds it); without that list, a return puts back
 * the groups the termination took them out of. */
static int join_teams_locked(struct job *j, const cJSON *rec, const char *key, bool returning)
{
	static const char *const none[] = { NULL };
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "team_ids"), *it;
	struct vlist left;
	struct sbuf e;
	int rc = 0;

	if (!t->present)
		return 0;
	vlist_init(&left);
	sbuf_init(&e);
	if (returning && j->a->state &&
	    (store_left_groups(j->a->state, key, &left, &e) < 0 ||
	     (j->a->st && left.n && store_forget_left_groups(j->a->st, key, &e) < 0)))
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	if (cJSON_IsArray(ids)) {
		cJSON_ArrayForEach(it, ids) {
			char *team = mapping_id_text(it);
			struct ldapw_entries found = { 0 };
			const struct ldapw_entry *group;
			int got = team ? team_group(j, team, &found, &group) : 0;
			if (got > 0)
				got = change_membership(j, group, team, j->id, false);
			ldapw_entries_free(&found);
			free(team);
			if (got < 0) {
				rc = -1;
				break;
			}
		}
	} else {
		for (size_t i = 0; i < left.n && rc == 0; i++) {
			struct ldapw_entries found = { 0 };
			struct ldapw_error le;
			const char **names = member_attr_names(t);
			int r = names ? ldapw_read(j->a->lw, left.v[i], names[0] ? names : none, &found, &le) : -1;
			if (r == LDAP_SUCCESS && found.n)
				rc = change_membership(j, &found.v[0], NULL, j->id, false);
			else if (r != LDAP_SUCCESS && r != LDAP_NO_SUCH_OBJECT)
				rc = failed(j, left.v[i], &le);
			ldapw_entries_free(&found);
			free(names);
		}
	}
	vlist_free(&left);
	sbuf_free(&e);
	return rc;
}

static int join_teams(struct job *j, const cJSON *rec, const char *key, bool returning)
{
	const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "team_ids");
	int rc;

	/* nothing to join: no need to hold up the other workers' group changes
	 * (the lock, once taken, is kept to the end of the job) */
	if (!j->a->m->obj[MAPPING_TEAM].present || (!returning && cJSON_GetArraySize(ids) == 0))
		return 0;
	groups_enter(j);
	rc = join_teams_locked(j, rec, key, returning);
	groups_leave(j);
	return rc;
}

/* "DN\nattr" (the name folded): what the rewrite of a managed entry has
 * planned, which the search of every entry then leaves alone. */
static void followed_key(struct sbuf *k, const char *dn, const char *attr)
{
	sbuf_addf(k, "%s\n", dn);
	for (const char *c = attr; *c; c++)
		sbuf_addc(k, (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c));
}

static int note_followed(struct job *j, const char *dn, const char *attr)
{
	struct sbuf k;
	int rc;

	sbuf_init(&k);
	followed_key(&k, dn, attr);
	rc = k.failed ? -1 : strmap_put(&j->followed, sbuf_str(&k), NULL);
	sbuf_free(&k);
	return rc;
}

static bool was_followed(struct job *j, const char *dn, const char *attr)
{
	struct sbuf k;
	bool yes;

	sbuf_init(&k);
	followed_key(&k, dn, attr);
	yes = strmap_get(&j->followed, sbuf_str(&k)) != NULL;
	sbuf_free(&k);
	return yes;
}

/* Whether attr of e is a rule group's member attribute (e one of the rule's
 * groups): the rule's own changes keep it. */
static bool rule_members(const struct job *j, const struct ldapw_entry *e, const char *attr)
{
	for (size_t g = 0; g < j->a->m->ngroups; g++) {
		const struct mapping_group *r = &j->a->m->groups[g];
		const struct vlist *v = ldapw_entry_values(e, r->key_attr);
		if (strcasecmp(attr, r->member_attr) != 0)
			continue;
		for (size_t i = 0; v && i < v->n; i++)
			if (strcasecmp(v->v[i], r->key_value) == 0)
				return true;
	}
	return false;
}

/* The changes that make one entry's values naming old_dn name new_dn (or
 * drop them, new_dn NULL), but for those the agent's own changes of managed
 * entries and rule groups make. */
static int follow_changes(struct job *j, const struct ldapw_entry *e, const char *old_dn, const char *new_dn,
                          struct changes *c)
{
	const struct vlist *attrs = &j->a->m->refs.attrs;
	struct refs_hit *hits = NULL;
	size_t n = 0;
	int rc = -1;

	if (refs_hits(e, attrs, old_dn, new_dn, &hits, &n) < 0)
		goto cleanup;
	for (size_t i = 0; i < n; i++) {
		struct vlist add;
		int x;
		if (was_followed(j, e->dn, hits[i].attr) || rule_members(j, e, hits[i].attr))
			continue;
		vlist_init(&add);
		x = changes_add(c, LDAP_MOD_DELETE, hits[i].attr, &hits[i].old);
		if (x == 0 && new_dn && !hits[i].holds_new)
			x = vlist_push_copy(&add, new_dn, strlen(new_dn)) < 0 ? -1 : changes_add(c, LDAP_MOD_ADD, hits[i].attr, &add);
		vlist_free(&add);
		if (x < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	refs_hits_free(hits, n);
	return rc;
}

/* Every entry under the references base, the agent's or not, that names
 * old_dn in one of references.attributes: the value follows new_dn, or goes
 * (new_dn NULL: the entry was deleted).  Active Directory does it itself. */
static int follow_everywhere(struct job *j, const char *old_dn, const char *new_dn)
{
	const struct vlist *attrs = &j->a->m->refs.attrs;
	const struct ldapw_server *srv;
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	const char **names = NULL;
	const char *base;
	char *filter = NULL;
	int rc = -1;

	if (!attrs->n)
		return 0;
	if (!(srv = ldapw_server(j->a->lw, &e)))
		return failed(j, "the root DSE", &e);
	if (srv->active_directory || !(base = refs_base(&j->a->m->refs, &srv->naming_contexts, old_dn)))
		return 0;
	if (!(filter = refs_filter(attrs, old_dn)) ||
	    !(names = calloc(attrs->n + j->a->m->ngroups + 1, sizeof(*names)))) {
		sbuf_adds(j->err, "out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < attrs->n; i++)
		names[i] = attrs->v[i];
	for (size_t g = 0; g < j->a->m->ngroups; g++) /* to know a rule's groups by their mark */
		names[attrs->n + g] = j->a->m->groups[g].key_attr;
	if (ldapw_search(j->a->lw, base, filter, names, 0, &found, &e) != LDAP_SUCCESS) {
		failed(j, base, &e);
		goto cleanup;
	}
	for (size_t i = 0; i < found.n; i++) {
		struct changes c = { 0 };
		int x = 0;
		if (!strmap_get(&j->touched, found.v[i].dn)) /* this record's change took it out already */
			x = follow_changes(j, &found.v[i], old_dn, new_dn, &c);
		if (x == 0)
			x = op_modify(j, found.v[i].dn, &c, CAT_MODIFY, new_dn ? "follow rename" : "drop reference");
		changes_free(&c);
		if (x < 0)
			goto cleanup;
	}
	rc = 0;
cleanup:
	ldapw_entries_free(&found);
	free(names);
	free(filter);
	return rc;
}

/* ---- references an apply did not finish following ---------------------------
 * A rename or a deletion is marked in the store ("follow": the DN the
 * references still name) before it is made, and the mark cleared once the
 * whole apply went through.  When something after the rename fails (the
 * service account may not write a hand-made group, say), the next apply of
 * the record finds the mark and follows from that DN. */

/* Reads the mark: j->follow_from when references may still name another DN
 * than the entry's (cur, or none when it is gone). */
static int follow_read(struct job *j, const char *key, const struct ldapw_entry *cur)
{
	char *from = NULL;
	struct sbuf e;
	int got;

	if (!j->a->state || !key || !j->a->m->refs.attrs.n)
		return 0;
	sbuf_init(&e);
	got = store_mark(j->a->state, key, "follow", &from, &e);
	if (got < 0)
		sbuf_addf(j->err, "%s %s: %s", j->kind, j->id, sbuf_str(&e));
	sbuf_free(&e);
	if (got == 1 && (!cur || !dn_equal(from, cur->dn))) {
		j->follow_from = from;
		from = NULL;
	}
	free(from);
	return got < 0 ? -1 : 0;
}

/* old_dn is renamed to new_dn (NULL: deleted): marked before it is made,
 * and what an earlier apply left is followed to the same place. */
static int follow_pending(struct job *j, const char *old_dn, const char *new_dn)
{
	struct sbuf e;
	int rc = 0;

	if (j->a->st && j->key && j->a->m->refs.attrs.n && !j->follow_marked) {
		sbuf_init(&e);
		if (store_set_mark(j->a->st, j->key, "follow", j->follow_from ? j->follow_from : old_dn, &e) < 0) {
			sbuf_addf(j->err, "%s %s: %s", j->kind, j->id, sbuf_str(&e));
			rc = -1;
		}
		sbuf_free(&e);
		j->follow_marked = true;
	}
	if (rc == 0 && j->follow_from && !j->follow_consumed) {
		j->follow_consumed = true;
		if (!dn_equal(j->follow_from, old_dn))
			rc = follow_everywhere(j, j->follow_from, new_dn);
	}
	return rc;
}

/* At the end of a job that renamed nothing: what an earlier one left is
 * followed to where the entry stands (or dropped, when there is none). */
static int follow_leftover(struct job *j, const char *dn)
{
	if (!j->follow_from || j->follow_consumed)
		return 0;
	j->follow_consumed = true;
	return follow_everywhere(j, j->follow_from, dn);
}

/* The apply went through: nothing is left to follow. */
static void follow_done(struct job *j)
{
	struct sbuf e;

	if (!j->a->st || !j->key || (!j->follow_marked && !j->follow_from))
		return;
	sbuf_init(&e);
	if (store_set_mark(j->a->st, j->key, "follow", NULL, &e) < 0)
		log_warn("%s %s: %s", j->kind, j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* After a rename: old DN -> new DN in managed groups and in the employee
 * reference attributes (manager), on entries holding the key attribute;
 * then in every entry that names it (follow_everywhere). */
static int rewrite_references_locked(struct job *j, const char *old_dn, const char *new_dn)
{
	const struct mapping *m = j->a->m;
	char *old_rdn = dn_rdn_value(old_dn), *new_rdn = dn_rdn_value(new_dn);
	bool rdn_changed = old_rdn && new_rdn && strcmp(old_rdn, new_rdn) != 0;
	int rc = -1;

	for (int k = 0; k < 2; k++) {
		const struct mapping_object *o = &m->obj[k];
		struct ldapw_entries found = { 0 };
		struct ldapw_error e;
		const char **names;
		char *filter;
		if (!o->present)
			continue;
		names = member_attr_names(o);
		filter = member_filter(m, o, old_dn, rdn_changed && k == MAPPING_TEAM ? old_rdn : NULL);
		if (!names || !filter) {
			free(names);
			free(filter);
			goto cleanup;
		}
		if (names[0] && ldapw_search(j->a->lw, o->search_base, filter, names, 0, &found, &e) != LDAP_SUCCESS) {
			free(names);
			free(filter);
			failed(j, o->search_base, &e);
			goto cleanup;
		}
		free(names);
		free(filter);
		for (size_t g = 0; g < found.n; g++) {
			struct changes c = { 0 };
			int r = 0;
			if (strmap_get(&j->touched, found.v[g].dn))
				continue; /* this record's change already took it out */
			for (size_t i = 0; i < o->nattrs && r == 0; i++) {
				bool by_rdn;
				struct vlist gone, repl;
				if (!is_member_attr(&o->attrs[i], &by_rdn) || (by_rdn && (!rdn_changed || k != MAPPING_TEAM)))
					continue;
				vlist_init(&gone);
				vlist_init(&repl);
				matching(ldapw_entry_values(&found.v[g], o->attrs[i].name), old_dn, old_rdn, by_rdn, &gone);
				if (gone.n) {
					vlist_push_copy(&repl, by_rdn ? new_rdn : new_dn, strlen(by_rdn ? new_rdn : new_dn));
					if (changes_add(&c, LDAP_MOD_DELETE, o->attrs[i].name, &gone) < 0 ||
					    changes_add(&c, LDAP_MOD_ADD, o->attrs[i].name, &repl) < 0 ||
					    note_followed(j, found.v[g].dn, o->attrs[i].name) < 0)
						r = -1;
				}
				vlist_free(&gone);
				vlist_free(&repl);
			}
			if (r == 0)
				r = op_modify(j, found.v[g].dn, &c, CAT_MODIFY, "follow rename");
			changes_free(&c);
			if (r < 0) {
				ldapw_entries_free(&found);
				goto cleanup;
			}
		}
		ldapw_entries_free(&found);
	}
	rc = follow_pending(j, old_dn, new_dn);
	if (rc == 0)
		rc = follow_everywhere(j, old_dn, new_dn);
cleanup:
	free(old_rdn);
	free(new_rdn);
	return rc;
}

static int rewrite_references(struct job *j, const char *old_dn, const char *new_dn)
{
	int rc;

	groups_enter(j);
	rc = rewrite_references_locked(j, old_dn, new_dn);
	groups_leave(j);
	return rc;
}

/* ---- groups by rule ---------------------------------------------------------------- */

/* "(&(KEY=VALUE)(MEMBER=dn))": the groups of rule g that hold dn. */
static char *rule_filter(const struct mapping_group *g, const char *dn)
{
	char *key = ldapw_eq_filter(g->key_attr, g->key_value), *member = ldapw_eq_filter(g->member_attr, dn);
	struct sbuf f;

	sbuf_init(&f);
	if (key && member)
		sbuf_addf(&f, "(&%s%s)", key, member);
	free(key);
	free(member);
	return f.len ? sbuf_detach(&f) : (sbuf_free(&f), NULL);
}

/* dn leaves group (an entry found holding it); the last member gives way to empty_member. */
static int rule_leave(struct job *j, const struct mapping_group *g, const struct ldapw_entry *group, const char *dn)
{
	const struct vlist *cur = ldapw_entry_values(group, g->member_attr);
	struct vlist gone, keep;
	struct changes c = { 0 };
	int rc;

	vlist_init(&gone);
	vlist_init(&keep);
	matching(cur, dn, NULL, false, &gone);
	if (g->empty_member && cur && cur->n == gone.n && !vlist_contains(cur, g->empty_member))
		vlist_push_copy(&keep, g->empty_member, strlen(g->empty_member));
	rc = keep.n ? changes_add(&c, LDAP_MOD_ADD, g->member_attr, &keep) : 0;
	if (rc == 0)
		rc = changes_add(&c, LDAP_MOD_DELETE, g->member_attr, &gone);
	if (rc == 0)
		rc = op_modify(j, group->dn, &c, CAT_MODIFY, "leave group");
	changes_free(&c);
	vlist_free(&gone);
	vlist_free(&keep);
	return rc;
}

/* old_dn gives way to new_dn in a group dn stays in (renamed or moved). */
static int rule_follow(struct job *j, const struct mapping_group *g, const struct ldapw_entry *group,
                       const char *old_dn, const char *new_dn)
{
	struct vlist gone, add;
	struct changes c = { 0 };
	int rc;

	vlist_init(&gone);
	vlist_init(&add);
	matching(ldapw_entry_values(group, g->member_attr), old_dn, NULL, false, &gone);
	vlist_push_copy(&add, new_dn, strlen(new_dn));
	rc = changes_add(&c, LDAP_MOD_DELETE, g->member_attr, &gone);
	if (rc == 0)
		rc = changes_add(&c, LDAP_MOD_ADD, g->member_attr, &add);
	if (rc == 0)
		rc = op_modify(j, group->dn, &c, CAT_MODIFY, "follow rename");
	changes_free(&c);
	vlist_free(&gone);
	vlist_free(&add);
	return rc;
}

/* A rule group as the agent makes it: its classes, its name, its mark, its first member. */
static int rule_make(struct job *j, const struct mapping_membership *w, const char *dn)
{
	const struct mapping_group *g = w->rule;
	struct changes c = { 0 };
	struct vlist one[3];
	const char *const values[3] = { w->value, g->key_value, dn };
	const char *const names[3] = { g->rdn_attr, g->key_attr, g->member_attr };
	int rc = changes_add(&c, LDAP_MOD_ADD, "objectClass", &g->object_classes);

	for (size_t i = 0; i < 3; i++) {
		vlist_init(&one[i]);
		vlist_push_copy(&one[i], values[i], strlen(values[i]));
		if (rc == 0)
			rc = changes_add(&c, LDAP_MOD_ADD, names[i], &one[i]);
	}
	if (rc == 0)
		rc = op_add(j, w->dn, &c, CAT_MODIFY);
	/* a sync plans it once: the next member of the run finds it planned (a dry run makes nothing) */
	if (rc == 0 && j->a->cache)
		strmap_put(&j->a->cache->bases, w->dn, "planned");
	for (size_t i = 0; i < 3; i++)
		vlist_free(&one[i]);
	changes_free(&c);
	return rc;
}

/* dn joins the group w names: made when missing; a group of that DN that does
 * not carry the rule's mark is not the agent's and is refused. */
static int rule_join(struct job *j, const struct mapping_membership *w, const char *dn)
{
	const struct mapping_group *g = w->rule;
	const char *const attrs[] = { g->member_attr, g->key_attr, NULL };
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	struct changes c = { 0 };
	struct vlist add, gone;
	const struct vlist *cur = NULL, *mark;
	int rc = -1, r;

	vlist_init(&add);
	vlist_init(&gone);
	r = ldapw_read(j->a->lw, w->dn, attrs, &found, &e);
	if (r != LDAP_SUCCESS && r != LDAP_NO_SUCH_OBJECT) {
		failed(j, w->dn, &e);
		goto cleanup;
	}
	if (!found.n && !(j->a->cache && strmap_get(&j->a->cache->bases, w->dn))) {
		rc = rule_make(j, w, dn);
		goto cleanup;
	}
	if (found.n) {
		mark = ldapw_entry_values(&found.v[0], g->key_attr);
		if (!mark || !vlist_contains(mark, g->key_value)) {
			sbuf_addf(j->err, "employee %s: group %s is not one of groups.%s (it has no %s: %s), so the agent "
			          "leaves it alone: give the rule another DN, or add that value to the group",
			          j->id, w->dn, g->name, g->key_attr, g->key_value);
			goto cleanup;
		}
		cur = ldapw_entry_values(&found.v[0], g->member_attr);
	}
	vlist_push_copy(&add, dn, strlen(dn));
	if (g->empty_member && cur && vlist_contains(cur, g->empty_member) && !dn_equal(dn, g->empty_member))
		vlist_push_copy(&gone, g->empty_member, strlen(g->empty_member));
	rc = changes_add(&c, LDAP_MOD_ADD, g->member_attr, &add);
	if (rc == 0 && gone.n)
		rc = changes_add(&c, LDAP_MOD_DELETE, g->member_attr, &gone);
	if (rc == 0)
		rc = op_modify(j, w->dn, &c, CAT_MODIFY, "join group");
cleanup:
	changes_free(&c);
	vlist_free(&add);
	vlist_free(&gone);
	ldapw_entries_free(&found);
	return rc;
}

/* The employee's rule groups brought in line, under the groups lock: the
 * entry that stood at old_dn leaves the groups it no longer belongs to,
 * follows to new_dn in those it stays in, and new_dn joins the others of
 * want (new_dn NULL, want empty: a leaver leaves them all).  Planned
 * against the directory as the record found it. */
static int rule_groups(struct job *j, const char *old_dn, const char *new_dn, const struct mapping_membership *want,
                       size_t nwant)
{
	const struct mapping *m = j->a->m;
	bool *stays = nwant ? calloc(nwant, sizeof(*stays)) : NULL;
	int rc = -1;

	if (nwant && !stays)
		return -1;
	if (m->ngroups == 0) {
		free(stays);
		return 0;
	}
	groups_enter(j);
	for (size_t i = 0; i < m->ngroups; i++) {
		const struct mapping_group *g = &m->groups[i];
		const char *const attrs[] = { g->member_attr, NULL };
		struct ldapw_entries found = { 0 };
		struct ldapw_error e;
		char *filter = old_dn ? rule_filter(g, old_dn) : NULL;
		int r = 0;
		if (old_dn && !filter)
			goto cleanup;
		if (filter && ldapw_search(j->a->lw, g->parent, filter, attrs, 0, &found, &e) != LDAP_SUCCESS)
			r = failed(j, g->parent, &e);
		for (size_t f = 0; f < found.n && r == 0; f++) {
			size_t k = 0;
			while (k < nwant && !(want[k].rule == g && dn_equal(want[k].dn, found.v[f].dn)))
				k++;
			if (k == nwant)
				r = rule_leave(j, g, &found.v[f], old_dn);
			else if ((stays[k] = true) && !dn_equal(old_dn, new_dn))
				r = rule_follow(j, g, &found.v[f], old_dn, new_dn);
		}
		free(filter);
		ldapw_entries_free(&found);
		if (r < 0)
			goto cleanup;
	}
	for (size_t k = 0; k < nwant; k++)
		if (!stays[k] && rule_join(j, &want[k], new_dn) < 0)
			goto cleanup;
	rc = 0;
cleanup:
	groups_leave(j);
	free(stays);
	return rc;
}

/* An active employee's rule groups: those the record says, for the entry now at new_dn. */
static int rule_groups_active(struct job *j, const cJSON *rec, const char *old_dn, const char *new_dn)
{
	struct mapping_membership *want = NULL;
	size_t n = 0;
	int rc;

	if (!j->a->m->ngroups)
		return 0;
	if (mapping_groups_of(j->a->m, rec, &want, &n, j->err) < 0) {
		sbuf_prefixf(j->err, "employee %s: ", j->id);
		return -1;
	}
	rc = rule_groups(j, old_dn, new_dn, want, n);
	mapping_memberships_free(want, n);
	return rc;
}

/* ---- entries ------------------------------------------------------------ */

/* The current values of attr after a modrdn from cur->dn to new_dn. */
static void after_rename(const struct ldapw_entry *cur, const char *new_dn, const char *attr, struct vlist *out)
{
	const struct vlist *v = ldapw_entry_values(cur, attr);
	char *old_rdn = new_dn ? dn_first_rdn(cur->dn) : NULL, *new_rdn = new_dn ? dn_first_rdn(new_dn) : NULL;
	char *old_val = new_dn ? dn_rdn_value(cur->dn) : NULL, *new_val = new_dn ? dn_rdn_value(new_dn) : NULL;
	size_t alen = strlen(attr);

	for (size_t i = 0; v && i < v->n; i++) {
		bool is_old = old_rdn && strncasecmp(old_rdn, attr, alen) == 0 && old_rdn[alen] == '=' && old_val &&
		              strcmp(v->v[i], old_val) == 0;
		if (!is_old || !new_dn)
			vlist_push_copy(out, v->v[i], strlen(v->v[i]));
	}
	if (new_dn && new_rdn && strncasecmp(new_rdn, attr, alen) == 0 && new_rdn[alen] == '=' && new_val &&
	    !vlist_contains(out, new_val))
		vlist_push_copy(out, new_val, strlen(new_val));
	free(old_rdn);
	free(new_rdn);
	free(old_val);
	free(new_val);
}

/* With base given as a template, the parent of dn may not exist yet: with
 * create_bases the missing organizational units are made (planned, so a dry
 * run shows them), else the record is refused naming the base.  A sync reads
 * each base once (the cache remembers those found or planned). */
static int ensure_parent(struct job *j, const struct mapping_object *o, const char *dn)
{
	static const char *const none[] = { "1.1", NULL };
	struct strmap *known = j->a->cache ? &j->a->cache->bases : NULL;
	char *parent = dn_parent(dn), *at = parent ? strdup(parent) : NULL;
	struct vlist missing;
	int rc = -1;

	vlist_init(&missing);
	if (!o->base_tmpl) {
		rc = 0;
		goto cleanup;
	}
	/* up from the parent to the first entry that exists (or a sync planned already), at
	 * search_base at the latest */
	while (at && !dn_equal(at, o->search_base) && !(known && strmap_get(known, at))) {
		struct ldapw_entries e;
		struct ldapw_error err;
		char *up;
		if (ldapw_read(j->a->lw, at, none, &e, &err) != LDAP_SUCCESS) {
			failed(j, at, &err);
			goto cleanup;
		}
		if (e.n) {
			ldapw_entries_free(&e);
			if (known)
				strmap_put(known, at, NULL);
			break;
		}
		ldapw_entries_free(&e);
		if (!o->create_bases) {
			sbuf_addf(j->err, "%s %s: the base %s does not exist (create_bases: true lets the agent make it)", j->kind,
			          j->id, parent);
			goto cleanup;
		}
		if (vlist_push_copy(&missing, at, strlen(at)) < 0 || !(up = dn_parent(at)))
			goto cleanup;
		free(at);
		at = up;
	}
	/* made from the top down: organizational units only */
	for (size_t i = missing.n; i-- > 0;) {
		const char *m = missing.v[i];
		char *rdn = dn_first_rdn(m), *value = dn_rdn_value(m);
		struct changes c = { 0 };
		struct vlist oc, ou;
		int x = -1;
		vlist_init(&oc);
		vlist_init(&ou);
		if (rdn && value && strncasecmp(rdn, "ou=", 3) == 0) {
			vlist_push_copy(&oc, "top", 3);
			vlist_push_copy(&oc, "organizationalUnit", 18);
			vlist_push_copy(&ou, value, strlen(value));
			x = changes_add(&c, LDAP_MOD_ADD, "objectClass", &oc) == 0 && changes_add(&c, LDAP_MOD_ADD, "ou", &ou) == 0
			            ? op_add(j, m, &c, CAT_NONE)
			            : -1;
		} else if (rdn) {
			sbuf_addf(j->err, "%s %s: the base %s does not exist, and only organizational units (ou=) are made",
			          j->kind, j->id, m);
		}
		changes_free(&c);
		vlist_free(&oc);
		vlist_free(&ou);
		free(rdn);
		free(value);
		if (x < 0)
			goto cleanup;
		if (known)
			strmap_put(known, m, NULL);
	}
	rc = 0;
cleanup:
	vlist_free(&missing);
	free(parent);
	free(at);
	return rc;
}

static int add_entry(struct job *j, const struct mapping_result *r, enum cat cat)
{
	struct changes c = { 0 };
	int rc = -1;

	if (ensure_parent(j, &j->a->m->obj[r->kind], r->dn) < 0 ||
	    changes_add(&c, LDAP_MOD_ADD, "objectClass", r->object_classes) < 0)
		goto cleanup;
	for (size_t i = 0; i < r->nvalues; i++)
		if (r->values[i].values.n && changes_add(&c, LDAP_MOD_ADD, r->values[i].attr->name, &r->values[i].values) < 0)
			goto cleanup;
	rc = op_add(j, r->dn, &c, cat);
	if (rc == 0 && r->kind == MAPPING_EMPLOYEE && j->a->m->obj[r->kind].password_length) {
		/* the password is made by the executor, when the entry is: the plan never holds it */
		const struct mapping_object *o = &j->a->m->obj[r->kind];
		struct step *s = &j->plan.v[j->plan.n - 1];
		s->password_length = o->password_length;
		s->password_method = o->password_method;
		for (size_t t = 0; rc == 0 && s->password_method == MAPPING_PASSWORD_MODIFY && t < o->nterm_attrs; t++) {
			struct vlist fixed;
			vlist_init(&fixed);
			if (mapping_attr_literal(&o->term_attrs[t], &fixed) && fixed.n)
				rc = changes_add(&s->lock, LDAP_MOD_ADD, o->term_attrs[t].name, &fixed);
			vlist_free(&fixed);
		}
	}
cleanup:
	changes_free(&c);
	return rc;
}

/* Brings an existing entry to the mapped result: at most one rename, one modify. */
static int update_entry(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                        const struct mapping_result *r, enum cat cat, bool *renamed)
{
	struct changes c = { 0 };
	const char *new_dn = NULL;
	struct vlist have, missing;
	int rc = -1;

	*renamed = false;
	vlist_init(&have);
	vlist_init(&missing);
	if (!dn_equal(cur->dn, r->dn)) {
		char *newrdn = dn_first_rdn(r->dn), *np = dn_parent(r->dn), *cp = dn_parent(cur->dn);
		int x = -1;
		if (newrdn && np && cp && !dn_equal(np, cp) && ensure_parent(j, o, r->dn) < 0)
			newrdn = (free(newrdn), NULL); /* the new base is refused: no rename */
		if (newrdn && np && cp)
			x = op_rename(j, cur->dn, r->dn, newrdn, dn_equal(np, cp) ? NULL : np,
			              cat == CAT_DISABLE ? CAT_DISABLE : CAT_RENAME);
		free(newrdn);
		free(np);
		free(cp);
		if (x < 0)
			goto cleanup;
		new_dn = r->dn;
		*renamed = true;
	}
	/* objectClass: add what is missing, never remove */
	{
		const struct vlist *oc = ldapw_entry_values(cur, "objectClass");
		for (size_t i = 0; i < r->object_classes->n; i++) {
			bool present = false;
			for (size_t k = 0; oc && k < oc->n; k++)
				present = present || strcasecmp(oc->v[k], r->object_classes->v[i]) == 0;
			if (!present && vlist_push_copy(&missing, r->object_classes->v[i], strlen(r->object_classes->v[i])) < 0)
				goto cleanup;
		}
		if (missing.n && changes_add(&c, LDAP_MOD_ADD, "objectClass", &missing) < 0)
			goto cleanup;
	}
	for (size_t i = 0; i < r->nvalues; i++) {
		vlist_clear(&have);
		after_rename(cur, new_dn, r->values[i].attr->name, &have);
		if (diff_attr(&c, r->values[i].attr->name, &have, &r->values[i].values) < 0)
			goto cleanup;
	}
	/* attributes only termination sets are absent while active; of one whose
	 * terminated values are fixed text, only those values go: a lock the
	 * server set itself (ppolicy's pwdAccountLockedTime after failed binds)
	 * is not the agent's to lift.  As a replace: the server may have taken
	 * one away itself meanwhile (ppolicy does, when a password is set) */
	if (r->state == MAPPING_ACTIVE) {
		for (size_t t = 0; t < o->nterm_attrs; t++) {
			struct vlist fixed, keep;
			bool normal = false;
			int x = 0;
			for (size_t i = 0; i < r->nvalues; i++)
				normal = normal || strcasecmp(r->values[i].attr->name, o->term_attrs[t].name) == 0;
			if (normal)
				continue;
			vlist_clear(&have);
			vlist_init(&fixed);
			vlist_init(&keep);
			after_rename(cur, new_dn, o->term_attrs[t].name, &have);
			if (mapping_attr_literal(&o->term_attrs[t], &fixed))
				for (size_t v = 0; v < have.n && x == 0; v++)
					if (!vlist_contains(&fixed, have.v[v]))
						x = vlist_push_copy(&keep, have.v[v], strlen(have.v[v]));
			if (x == 0 && !same_set(&have, &keep))
				x = changes_add(&c, LDAP_MOD_REPLACE, o->term_attrs[t].name, &keep);
			vlist_free(&fixed);
			vlist_free(&keep);
			if (x < 0)
				goto cleanup;
		}
	}
	rc = op_modify(j, r->dn, &c, cat, cat == CAT_DISABLE ? "disable" : "modify");
cleanup:
	changes_free(&c);
	vlist_free(&have);
	vlist_free(&missing);
	return rc;
}

/* References to employees without an entry are left out, and said; in the
 * daemon, an employee delivery is kept to be applied again when the entry
 * it refers to is made (a manager hired after the employee). */
enum { UNRESOLVED_SAID = 10 }; /* ids said one by one; past them, one line for the rest */

static void note_unresolved(struct job *j, const struct mapping_result *r, const cJSON *rec)
{
	char *body = NULL;

	if (r->unresolved.n)
		j->a->unresolved = true;
	if (r->unresolved.n && j->a->revisit && j->a->st && strcmp(j->kind, "employee") == 0)
		body = cJSON_PrintUnformatted(rec);
	/* a team of thousands without entries: a line for each of the first few, one for the rest */
	size_t said = r->unresolved.n > UNRESOLVED_SAID + 1 ? UNRESOLVED_SAID : r->unresolved.n;

	for (size_t i = 0; i < r->unresolved.n; i++) {
		if (i < said && j->a->dry_run)
			sayf(j, "%s: employee %s has no entry; left out", r->unresolved_attr[i], r->unresolved.v[i]);
		else if (i < said)
			log_warn("%s %s (%s): %s: employee %s has no entry; left out%s", j->kind, j->id, j->event,
			         r->unresolved_attr[i], r->unresolved.v[i], body ? " until it has one" : "");
		else if (i == said && j->a->dry_run)
			sayf(j, "%zu more employees named have no entry; left out", r->unresolved.n - i);
		else if (i == said)
			log_warn("%s %s (%s): %zu more employees named have no entry; left out", j->kind, j->id, j->event,
			         r->unresolved.n - i);
		if (body) {
			char target[160], waiter[160];
			struct sbuf e;
			snprintf(target, sizeof(target), "employee:%s", r->unresolved.v[i]);
			snprintf(waiter, sizeof(waiter), "employee:%s", j->id);
			sbuf_init(&e);
			if (store_wait_for(j->a->st, target, waiter, j->type, body, &e) < 0)
				log_warn("employee %s: %s", j->id, sbuf_str(&e));
			sbuf_free(&e);
		}
	}
	free(body);
}

/* An employee's entry was just made: the deliveries that waited for it go again. */
static void revisit_waiters(struct job *j)
{
	char target[160];
	struct sbuf e;

	if (!j->a->revisit || !j->a->st)
		return;
	snprintf(target, sizeof(target), "employee:%s", j->id);
	sbuf_init(&e);
	if (store_take_waiters(j->a->st, target, j->a->revisit, j->a->revisit_ctx, &e) < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
}

static int evaluate(struct job *j, enum mapping_kind kind, const cJSON *rec, const struct ldapw_entry *own,
                    enum mapping_force force, struct mapping_result *r)
{
	const struct mapping_object *o = &j->a->m->obj[kind];
	struct hookctx hc = { .j = j, .own = own, .search_base = o->search_base, .kind = kind };
	struct mapping_hooks h = {
		.employee_dn = hook_employee_dn,
		.taken = hook_taken,
		.existing = hook_existing,
		.ctx = &hc,
		.today = j->a->today,
		.force = force,
	};

	if (kind == MAPPING_TEAM)
		prefetch_members(j, rec);
	if (mapping_eval(j->a->m, kind, rec, &h, r) < 0) {
		if (!j->err->len)
			sbuf_addf(j->err, "%s %s: %s", j->kind, j->id, sbuf_str(&r->error));
		return -1;
	}
	return 0;
}

static void schedule(struct job *j, const cJSON *rec, const char *due, bool put)
{
	struct sbuf e;
	char *body;

	if (!j->a->st)
		return;
	sbuf_init(&e);
	if (put) {
		body = cJSON_PrintUnformatted(rec);
		if (!body || store_schedule_put(j->a->st, "employee", j->id, due, body, &e) < 0)
			log_warn("employee %s: the termination due on %s could not be recorded: %s", j->id, due, sbuf_str(&e));
		free(body);
	} else if (store_schedule_remove(j->a->st, "employee", j->id, &e) < 0) {
		log_warn("employee %s: the schedule could not be updated: %s", j->id, sbuf_str(&e));
	}
	sbuf_free(&e);
}

/* The termination policy on an existing entry: leave groups, then delete it
 * or bring it to its terminated form. */
static int terminate_entry(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                           const struct mapping_result *r, bool *renamed)
{
	char *rdnval = dn_rdn_value(cur->dn);
	int rc = -1;

	*renamed = false;
	/* a deleted entry leaves every group: a group naming nothing would be left otherwise */
	if ((o->remove_from_groups || r->action == MAPPING_DELETE) && remove_from_groups(j, cur->dn, rdnval) < 0)
		goto cleanup;
	if (r->action == MAPPING_DELETE)
		rc = follow_pending(j, cur->dn, NULL) < 0 || op_delete(j, cur->dn) < 0 ? -1 : follow_everywhere(j, cur->dn, NULL);
	else
		rc = update_entry(j, o, cur, r, CAT_DISABLE, renamed);
cleanup:
	free(rdnval);
	return rc;
}

/* ---- the sync cache ------------------------------------------------------ */

static void cache_values(struct apply_cache *c, const struct mapping_object *o, const struct ldapw_entry *e,
                         const char *dn, bool add)
{
	struct sbuf k;

	sbuf_init(&k);
	for (size_t i = 0; i < o->nattrs; i++) {
		const struct vlist *v;
		if (!(o->attrs[i].flags & MAPPING_ATTR_UNIQUE) || !(v = ldapw_entry_values(e, o->attrs[i].name)))
			continue;
		for (size_t n = 0; n < v->n; n++) {
			const char *holder;
			strmap_fold_key(&k, o->attrs[i].name, v->v[n]);
			holder = strmap_get(&c->values, sbuf_str(&k));
			if (add)
				strmap_put(&c->values, sbuf_str(&k), holder && !dn_equal(holder, dn) ? "\1" : dn);
			else if (holder && dn_equal(holder, dn))
				strmap_del(&c->values, sbuf_str(&k));
		}
	}
	sbuf_free(&k);
}

/* Sets e to what the mapping result says (the directory after this change). */
static void entry_set(struct ldapw_entry *e, const struct mapping_result *r)
{
	for (size_t a = 0; a < e->nattrs; a++) {
		free(e->attrs[a].name);
		vlist_free(&e->attrs[a].values);
	}
	free(e->attrs);
	free(e->dn);
	e->dn = strdup(r->dn);
	e->attrs = calloc(r->nvalues + 1, sizeof(*e->attrs));
	e->nattrs = 0;
	if (!e->attrs)
		return;
	e->attrs[0].name = strdup("objectClass");
	vlist_init(&e->attrs[0].values);
	for (size_t i = 0; i < r->object_classes->n; i++)
		vlist_push_copy(&e->attrs[0].values, r->object_classes->v[i], strlen(r->object_classes->v[i]));
	e->nattrs = 1;
	for (size_t i = 0; i < r->nvalues; i++) {
		struct ldapw_attr *at = &e->attrs[e->nattrs++];
		at->name = strdup(r->values[i].attr->name);
		vlist_init(&at->values);
		for (size_t n = 0; n < r->values[i].values.n; n++)
			vlist_push_copy(&at->values, r->values[i].values.v[n], strlen(r->values[i].values.v[n]));
	}
}

/* After a change in sync: the cache holds the entry as it now stands. */
static void cache_keep(struct job *j, const char *key, const struct ldapw_entry *cur, const struct mapping_result *r)
{
	struct apply_cache *c = j->a->cache;
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	struct ldapw_entry *e = (struct ldapw_entry *)cur;

	if (!c || r->kind != MAPPING_EMPLOYEE)
		return;
	if (e)
		cache_values(c, o, e, e->dn, false);
	if (!e) {
		struct ldapw_entry *v = realloc(c->added.v, (c->added.n + 1) * sizeof(*v));
		char idx[32];
		if (!v)
			return;
		c->added.v = v;
		e = &c->added.v[c->added.n];
		memset(e, 0, sizeof(*e));
		snprintf(idx, sizeof(idx), "%zu", c->added.n++);
		strmap_put(&c->added_by_key, key, idx);
	}
	entry_set(e, r);
	strmap_put(&c->dn_by_key, key, r->dn);
	cache_values(c, o, e, r->dn, true);
}

static void cache_forget(struct job *j, const char *key, const struct ldapw_entry *cur)
{
	struct apply_cache *c = j->a->cache;

	if (!c)
		return;
	cache_values(c, &j->a->m->obj[MAPPING_EMPLOYEE], cur, cur->dn, false);
	strmap_del(&c->dn_by_key, key);
	strmap_del(&c->added_by_key, key);
}

/* The record's key value (malloc'd into *key); a record without one is the job's error. */
static int record_key(struct job *j, enum mapping_kind kind, const cJSON *rec, char **key)
{
	struct sbuf kerr;
	int rc;

	sbuf_init(&kerr);
	rc = mapping_key(j->a->m, kind, rec, key, &kerr);
	if (rc < 0)
		sbuf_addf(j->err, "%s %s: %s", kind == MAPPING_TEAM ? "team" : "employee", j->id, sbuf_str(&kerr));
	sbuf_free(&kerr);
	return rc;
}

/* ---- versions: never move a record backwards -------------------------------- */

/* The record's updated_at, as seconds since the epoch; 0 when it has none that reads as a date. */
static bool version_of(const cJSON *rec, double *when, const char **stamp)
{
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(rec, "updated_at");
	struct tm tm;

	if (!cJSON_IsString(u) || clock_parse_iso8601(u->valuestring, &tm, when) < 0)
		return false;
	*stamp = u->valuestring;
	return true;
}

/* Factorial retries each delivery on its own, so an older snapshot of an
 * employee can arrive after a newer one: a delivery older than the newest
 * already applied for its record changes nothing (equal ones apply: applying
 * twice changes nothing).  1 when rec is such a one, 0 when it applies, -1
 * on failure. */
static int stale(struct job *j, const cJSON *rec)
{
	const char *stamp;
	char *newest_stamp = NULL, record[160];
	double mine, newest;
	struct sbuf e;
	int rc = 0, got;

	if (!j->a->state || strcmp(j->event, "sync") == 0 || !version_of(rec, &mine, &stamp))
		return 0;
	snprintf(record, sizeof(record), "employee:%s", j->id);
	sbuf_init(&e);
	got = store_version(j->a->state, record, &newest, &newest_stamp, &e);
	if (got < 0) {
		sbuf_addf(j->err, "employee %s: %s", j->id, sbuf_str(&e));
		rc = -1;
	} else if (got == 1 && mine < newest) {
		sayf(j, "skipped-stale: updated_at %s is older than %s, already applied: nothing changes", stamp,
		     newest_stamp);
		audit(j, "", "skipped-stale", stamp);
		j->a->stale = true;
		rc = 1;
	}
	free(newest_stamp);
	sbuf_free(&e);
	return rc;
}

static void remember_version(struct job *j, const cJSON *rec)
{
	const char *stamp;
	char record[160];
	double when;
	struct sbuf e;

	if (!j->a->st || !version_of(rec, &when, &stamp))
		return;
	snprintf(record, sizeof(record), "employee:%s", j->id);
	sbuf_init(&e);
	if (store_set_version(j->a->st, record, when, stamp, &e) < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* Whether the store says this employee's termination was applied (a return when it is now active). */
static bool was_terminated(struct job *j, const char *key)
{
	struct sbuf e;
	int t;

	if (!j->a->state || strcmp(j->event, "sync") == 0)
		return false;
	sbuf_init(&e);
	t = store_terminated(j->a->state, key, &e);
	if (t < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
	return t > 0;
}

/* Remembered, so that team deliveries keep a leaver out of groups. */
static void remember_terminated(struct job *j, const char *key, bool terminated)
{
	struct sbuf e;

	sbuf_init(&e);
	if (store_set_terminated(j->a->st, key, terminated, &e) < 0)
		log_warn("employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
}

/* A new employee (from a delivery) joins its teams' groups; a returning one
 * is no leaver any more, then rejoins them. */
static int rejoin(struct job *j, const cJSON *rec, const char *key, bool returning)
{
	if (strcmp(j->event, "sync") == 0)
		return 0; /* sync puts every team's members right itself */
	if (returning) {
		j->returning = true;
		if (j->a->st)
			remember_terminated(j, key, false);
	}
	return join_teams(j, rec, key, returning);
}

/* The day a record's termination is due (YYYY-MM-DD into due), when it is after today. */
static bool due_later(struct job *j, const cJSON *rec, char due[11])
{
	const cJSON *ton = cJSON_GetObjectItemCaseSensitive(rec, "terminated_on");

	if (!cJSON_IsString(ton) || strlen(ton->valuestring) < 10 || strncmp(ton->valuestring, j->a->today, 10) <= 0)
		return false;
	snprintf(due, 11, "%.10s", ton->valuestring);
	return true;
}

/* What the event type says of a record taken from its delivery (a record
 * read fresh from the API says it itself): a termination due later is only
 * scheduled (1: nothing more to do); terminate and unterminate force the
 * state. */
static int event_says(struct job *j, const cJSON *rec, enum mapping_force *force)
{
	char due[11];

	*force = MAPPING_FORCE_NONE;
	if (j->fresh)
		return 0;
	if (strcmp(j->event, "terminate") == 0) {
		if (due_later(j, rec, due)) {
			schedule(j, rec, due, true);
			sayf(j, "terminated_on %s is in the future: nothing changes now; the termination is applied on that day",
			     due);
			return 1;
		}
		*force = MAPPING_FORCE_TERMINATED;
	} else if (strcmp(j->event, "unterminate") == 0) {
		*force = MAPPING_FORCE_ACTIVE;
	}
	return 0;
}

/* The record mapped; out of scope is treated as terminated, or is nothing
 * to do without an entry (1). */
/* ---- the record's entry and its unique values, in one search ------------- */

/* Hooks of a dry evaluation that asks the directory nothing: no reference
 * resolves, no entry exists, every unique value is free, and the values
 * asked about are noted (attr, value, attr, value, ...). */
static int spec_taken(void *ctx, const char *attr, const char *value, struct sbuf *err)
{
	struct vlist *asked = ctx;

	(void)err;
	return vlist_push_copy(asked, attr, strlen(attr)) < 0 || vlist_push_copy(asked, value, strlen(value)) < 0 ? -1 : 0;
}

static int spec_none(void *ctx, const char *id, char **dn, struct sbuf *err)
{
	(void)ctx;
	(void)id;
	(void)err;
	*dn = NULL;
	return 0;
}

static int spec_existing(void *ctx, const char *attr, struct vlist *out, struct sbuf *err)
{
	(void)ctx;
	(void)attr;
	(void)out;
	(void)err;
	return 0;
}

/* The unique values a new entry for rec would be checked for first. */
static void unique_values_asked(struct job *j, const cJSON *rec, struct vlist *asked)
{
	struct mapping_result r = { 0 };
	struct mapping_hooks h = {
		.employee_dn = spec_none,
		.taken = spec_taken,
		.existing = spec_existing,
		.ctx = asked,
		.today = j->a->today,
	};

	if (mapping_eval(j->a->m, MAPPING_EMPLOYEE, rec, &h, &r) < 0)
		vlist_clear(asked);
	mapping_result_free(&r);
}

static int ascii_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Whether e holds value in attr, compared as strmap_fold_key compares
 * (ASCII case aside), or with spaces aside too (as a server's matching
 * rule may take them). */
static bool holds_value(const struct ldapw_entry *e, const char *attr, const char *value, bool spaces)
{
	const struct vlist *v = ldapw_entry_values(e, attr);

	for (size_t i = 0; v && i < v->n; i++) {
		const char *x = v->v[i], *y = value;
		for (;; x++, y++) {
			while (spaces && *x == ' ')
				x++;
			while (spaces && *y == ' ')
				y++;
			if (!*x || !*y || ascii_lower((unsigned char)*x) != ascii_lower((unsigned char)*y))
				break;
		}
		if (!*x && !*y)
			return true;
	}
	return false;
}

static bool holds(const struct ldapw_entry *e, const char *attr, const char *value)
{
	return holds_value(e, attr, value, false);
}

static bool looks_like(const struct ldapw_entry *e, const char *attr, const char *value)
{
	return holds_value(e, attr, value, true);
}

/* Sorts what one search for "the key, or any of the unique values asked"
 * found: the entries holding the key stay in *own, the others are noted in
 * j->unique_known as the holders of the values they hold, and the values
 * nobody holds as free.  false (nothing noted, *own untouched) when an
 * entry holds neither as this side compares them (the server matched it
 * by a rule of its own): then the two questions are asked apart. */
/* Keeps dn as the holder of attr=value, unless one is kept already: 0, or -1 out of memory. */
static int keep_holder(struct strmap *known, const char *attr, const char *value, const char *dn)
{
	struct sbuf k;
	int rc;

	if (strmap_get_folded(known, attr, value))
		return 0;
	sbuf_init(&k);
	strmap_fold_key(&k, attr, value);
	rc = k.failed ? -1 : strmap_put(known, sbuf_str(&k), dn);
	sbuf_free(&k);
	return rc;
}

static bool sort_found(struct job *j, const struct mapping_object *o, const char *key, const struct vlist *asked,
                       struct ldapw_entries *found)
{
	bool *mine = calloc(found->n ? found->n : 1, sizeof(*mine));
	struct ldapw_entries rest = { calloc(found->n ? found->n : 1, sizeof(*rest.v)), 0 };
	struct strmap known;
	size_t n = 0;
	bool ok = mine && rest.v;

	strmap_init(&known);
	for (size_t i = 0; i < found->n && ok; i++) {
		const struct ldapw_entry *e = &found->v[i];
		bool any = false;
		if ((mine[i] = holds(e, o->key_attr, key)))
			continue;
		/* one the server may take for the key's entry, or that holds none of the values: ask apart */
		ok = !looks_like(e, o->key_attr, key);
		for (size_t a = 0; ok && a + 1 < asked->n; a += 2) {
			if (holds(e, asked->v[a], asked->v[a + 1])) {
				any = true;
				ok = keep_holder(&known, asked->v[a], asked->v[a + 1], e->dn) == 0;
			}
		}
		ok = ok && any;
	}
	for (size_t a = 0; ok && a + 1 < asked->n; a += 2)
		ok = keep_holder(&known, asked->v[a], asked->v[a + 1], "") == 0;
	if (ok) {
		/* the key's entries stay, at the front; the others go */
		for (size_t i = 0; i < found->n; i++) {
			if (mine[i])
				found->v[n++] = found->v[i];
			else
				rest.v[rest.n++] = found->v[i];
		}
		found->n = n;
		strmap_free(&j->unique_known);
		j->unique_known = known;
		strmap_init(&known);
	}
	strmap_free(&known);
	free(mine);
	ldapw_entries_free(&rest);
	return ok;
}

/* find_by_key for an employee, asking in the same search whether the unique
 * values a new entry would take first are held (hook_taken then answers from
 * what it found): a hire costs the directory one search, not two. */
static int find_employee(struct job *j, const cJSON *rec, const char *key, struct ldapw_entries *own,
                         const struct ldapw_entry **cur)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	const char **attrs = NULL;
	struct vlist asked;
	struct sbuf filter;
	struct ldapw_entries found = { 0 };
	struct ldapw_error e;
	bool unique = false;
	int rc = -1;

	*cur = NULL;
	for (size_t i = 0; i < o->nattrs; i++)
		unique = unique || (o->attrs[i].flags & MAPPING_ATTR_UNIQUE);
	if (j->a->cache || !unique)
		return find_by_key(j, o, MAPPING_EMPLOYEE, key, own, cur);
	vlist_init(&asked);
	sbuf_init(&filter);
	unique_values_asked(j, rec, &asked);
	if (asked.n == 0) {
		rc = find_by_key(j, o, MAPPING_EMPLOYEE, key, own, cur);
		goto cleanup;
	}
	if (!(attrs = owned_attrs(o, o->key_attr)))
		goto cleanup;
	for (size_t a = 0; a <= asked.n; a += 2) {
		char *one = ldapw_eq_filter(a == 0 ? o->key_attr : asked.v[a - 2], a == 0 ? key : asked.v[a - 1]);
		if (!one)
			goto cleanup;
		sbuf_adds(&filter, one);
		free(one);
	}
	sbuf_prefixf(&filter, "(|");
	sbuf_adds(&filter, ")");
	if (ldapw_search(j->a->lw, o->search_base, sbuf_str(&filter), attrs, 0, &found, &e) != LDAP_SUCCESS) {
		failed(j, o->search_base, &e);
		goto cleanup;
	}
	if (!sort_found(j, o, key, &asked, &found)) {
		rc = find_by_key(j, o, MAPPING_EMPLOYEE, key, own, cur);
		goto cleanup;
	}
	if (found.n > 1) {
		key_held_twice(j, o, key, &found);
		goto cleanup;
	}
	*own = found;
	memset(&found, 0, sizeof(found));
	*cur = own->n ? &own->v[0] : NULL;
	rc = 0;
cleanup:
	ldapw_entries_free(&found);
	free(attrs);
	vlist_free(&asked);
	sbuf_free(&filter);
	return rc;
}

static int settle_state(struct job *j, const cJSON *rec, const struct ldapw_entry *cur, enum mapping_force force,
                        struct mapping_result *r)
{
	if (evaluate(j, MAPPING_EMPLOYEE, rec, cur, force, r) < 0)
		return -1;
	if (r->state != MAPPING_OUT_OF_SCOPE)
		return 0;
	if (!cur) {
		say(j, "out of scope and not in the directory: nothing to do");
		return 1;
	}
	mapping_result_free(r);
	say(j, "out of scope: treated as terminated");
	return evaluate(j, MAPPING_EMPLOYEE, rec, cur, MAPPING_FORCE_TERMINATED, r) < 0 ? -1 : 0;
}

/* The sync cache, the schedule and unresolved references follow the record. */
static void follow_dates(struct job *j, const cJSON *rec, const char *key, const struct mapping_result *r)
{
	char due[11];

	if (j->a->cache) {
		if (r->state == MAPPING_TERMINATED)
			strmap_put(&j->a->cache->terminated, key, NULL);
		else
			strmap_del(&j->a->cache->terminated, key);
	}
	if (r->state == MAPPING_ACTIVE && due_later(j, rec, due) && (j->fresh || strcmp(j->event, "unterminate") != 0))
		schedule(j, rec, due, true);
	else
		schedule(j, rec, NULL, false);
	note_unresolved(j, r, rec);
}

/* Steps from mark on are set aside: the plan goes back to what it was. */
static void plan_truncate(struct job *j, size_t mark)
{
	while (j->plan.n > mark)
		step_free(&j->plan.v[--j->plan.n]);
}

/* The deletion guard, asked about the steps from mark on when they would
 * disable or delete: 1 they go ahead; 0 they are set aside (the caller
 * applies them later, or holds the delivery) or nothing would change; -1
 * failure. */
static int guard_asks(struct job *j, const cJSON *rec, const char *key, const char *dn, size_t mark)
{
	int p;

	if (!j->a->defer_destructive)
		return 1;
	p = j->plan.n > mark ? j->a->on_destructive(j->a->destructive_ctx, rec, key, dn) : 0;
	if (p != 1) {
		plan_truncate(j, mark);
		j->deferred = true;
	}
	return p;
}

/* A leaver: out of the groups, the termination policy, references to a moved
 * entry followed; the deletion guard sees that plan before it goes ahead. */
static int leave(struct job *j, const cJSON *rec, const char *key, const struct ldapw_entry *cur,
                 const struct mapping_result *r, bool *settled)
{
	size_t mark = j->plan.n;
	bool renamed = false;
	char *old_dn;
	int rc, p;

	if (!cur) {
		say(j, "terminated and not in the directory: nothing to do");
		return 0;
	}
	if (!(old_dn = strdup(cur->dn)))
		return -1;
	/* from leaving the groups to following the rename, no group changes in between */
	groups_enter(j);
	rc = j->a->m->ngroups ? rule_groups(j, cur->dn, NULL, NULL, 0) : 0;
	if (rc == 0)
		rc = terminate_entry(j, &j->a->m->obj[MAPPING_EMPLOYEE], cur, r, &renamed);
	if (rc == 0 && r->action != MAPPING_DELETE && renamed)
		rc = rewrite_references(j, old_dn, r->dn);
	if (rc == 0 && (p = guard_asks(j, rec, key, cur->dn, mark)) != 1) {
		*settled = false;
		rc = p;
	} else if (rc == 0) {
		if (j->a->st)
			remember_terminated(j, key, true); /* from now on team deliveries keep the leaver out */
		if (r->action == MAPPING_DELETE)
			cache_forget(j, key, cur);
		else if (j->changed)
			cache_keep(j, key, cur, r);
	}
	groups_leave(j);
	free(old_dn);
	return rc;
}

/* A new entry, in the groups of its teams; deliveries that waited for it go again. */
static int arrive(struct job *j, const cJSON *rec, const char *key, const struct mapping_result *r)
{
	if (add_entry(j, r, CAT_ADD) < 0 || rule_groups_active(j, rec, NULL, r->dn) < 0)
		return -1;
	cache_keep(j, key, NULL, r);
	strmap_put(&j->dn_cache, j->id, r->dn);
	/* a leaver who never had an entry comes back: no longer kept out of groups */
	j->added = true; /* deliveries waiting for it go again once it is made */
	return rejoin(j, rec, key, was_terminated(j, key));
}

/* An entry the agent made whose initial password was never set (the apply
 * that made it stopped half way): it gets one first, then opens with the
 * update that follows. */
static int owed_password(struct job *j, const char *key, const struct ldapw_entry *cur)
{
	const struct mapping_object *o = &j->a->m->obj[MAPPING_EMPLOYEE];
	struct sbuf e, what;
	struct step *s;
	int owed;

	if (!o->password_length || o->password_method != MAPPING_PASSWORD_MODIFY || !j->a->state || !key)
		return 0;
	sbuf_init(&e);
	owed = store_mark(j->a->state, key, "password", NULL, &e);
	if (owed < 0)
		sbuf_addf(j->err, "employee %s: %s", j->id, sbuf_str(&e));
	sbuf_free(&e);
	if (owed != 1)
		return owed;
	sbuf_init(&what);
	sbuf_addf(&what, "set the initial password of %s (the apply that made it did not)", cur->dn);
	s = plan_op(j, STEP_PASSWORD, CAT_NONE, cur->dn, sbuf_str(&what));
	sbuf_free(&what);
	if (!s)
		return -1;
	s->password_length = o->password_length;
	s->password_method = o->password_method;
	return 0;
}

/* An entry brought in line; renames followed; a returning employee rejoins their groups. */
static int stay(struct job *j, const cJSON *rec, const char *key, const struct ldapw_entry *cur,
                const struct mapping_result *r)
{
	bool renamed = false;
	char *old_dn = strdup(cur->dn);
	int rc = -1;

	if (!old_dn || owed_password(j, key, cur) < 0 ||
	    update_entry(j, &j->a->m->obj[MAPPING_EMPLOYEE], cur, r, CAT_MODIFY, &renamed) < 0)
		goto cleanup;
	if (j->changed)
		cache_keep(j, key, cur, r);
	if (renamed && rewrite_references(j, old_dn, r->dn) < 0)
		goto cleanup;
	if (rule_groups_active(j, rec, old_dn, r->dn) < 0)
		goto cleanup;
	strmap_put(&j->dn_cache, j->id, r->dn); /* where it stands now, also in a dry run */
	rc = was_terminated(j, key) ? rejoin(j, rec, key, true) : 0;
cleanup:
	free(old_dn);
	return rc;
}

/* One employee record: found by key, mapped, then a leaver, a new entry or an update. */
static int apply_employee(struct job *j, const cJSON *given)
{
	enum mapping_force force;
	struct ldapw_entries found = { 0 };
	struct mapping_result r = { 0 };
	const struct ldapw_entry *cur;
	/* with its location and legal entity when the mapping names their fields */
	bool unknown = false;
	cJSON *attached = j->a->related ? related_attach(j->a->related, given, &unknown) : NULL;
	const cJSON *rec = attached ? attached : given;
	char *key = NULL;
	bool settled = false;
	int rc = -1;

	if (j->a->related && !attached) {
		sbuf_adds(j->err, "out of memory");
		goto cleanup;
	}
	if (unknown && !j->a->related_complete) {
		j->a->related_unknown = true;
		sbuf_addf(j->err, "employee %s: names a location or legal entity not read from Factorial yet", j->id);
		goto cleanup;
	}
	if (record_key(j, MAPPING_EMPLOYEE, rec, &key) < 0)
		goto cleanup;
	j->key = key;
	if ((rc = stale(j, rec)) != 0 || (rc = event_says(j, rec, &force)) != 0)
		goto cleanup; /* stale, or a termination for later: nothing more (1), or a failure */
	rc = find_employee(j, rec, key, &found, &cur);
	if (rc == 0)
		rc = settle_state(j, rec, cur, force, &r);
	/* what the search told of unique values holds for this evaluation only:
	 * the job's own changes come after it */
	strmap_clear(&j->unique_known);
	if (rc != 0)
		goto cleanup;
	settled = true;
	follow_dates(j, rec, key, &r);
	if ((rc = follow_read(j, key, cur)) < 0)
		goto cleanup;
	if (r.state == MAPPING_TERMINATED)
		rc = leave(j, rec, key, cur, &r, &settled);
	else if (!cur)
		rc = arrive(j, rec, key, &r);
	else
		rc = stay(j, rec, key, cur, &r);
	if (rc == 0 && !j->deferred)
		rc = follow_leftover(j, cur ? cur->dn : NULL);
cleanup:
	rc = rc > 0 ? 0 : rc;
	if (execute(j) < 0)
		rc = -1;
	if (rc == 0 && !j->deferred)
		follow_done(j);
	if (rc == 0 && j->added)
		revisit_waiters(j);
	if (rc == 0 && settled && j->a->st && !j->returning)
		remember_terminated(j, key, r.state == MAPPING_TERMINATED);
	if (rc == 0 && key && !j->deferred && !j->a->stale)
		remember_version(j, rec);
	free(key);
	mapping_result_free(&r);
	ldapw_entries_free(&found);
	cJSON_Delete(attached);
	return rc;
}

static int apply_team(struct job *j, const cJSON *rec, bool del)
{
	const struct mapping *m = j->a->m;
	const struct mapping_object *o = &m->obj[MAPPING_TEAM];
	struct ldapw_entries found = { 0 };
	const struct ldapw_entry *cur = NULL;
	struct mapping_result r = { 0 };
	char *key = NULL;
	bool renamed = false;
	int rc = -1;

	if (record_key(j, MAPPING_TEAM, rec, &key) < 0)
		goto cleanup;
	if (find_by_key(j, o, MAPPING_TEAM, key, &found, &cur) < 0)
		goto cleanup;
	if (del) {
		if (!cur) {
			say(j, "no group in the directory: nothing to do");
			rc = 0;
		} else {
			rc = op_delete(j, cur->dn) < 0 ? -1 : follow_everywhere(j, cur->dn, NULL);
		}
		goto cleanup;
	}
	if (evaluate(j, MAPPING_TEAM, rec, cur, MAPPING_FORCE_NONE, &r) < 0)
		goto cleanup;
	note_unresolved(j, &r, rec);
	if (!cur)
		rc = add_entry(j, &r, CAT_ADD);
	else if ((rc = update_entry(j, o, cur, &r, CAT_MODIFY, &renamed)) == 0 && renamed)
		rc = follow_everywhere(j, cur->dn, r.dn); /* a group named in others (nested) */
cleanup:
	if (execute(j) < 0)
		rc = -1;
	free(key);
	mapping_result_free(&r);
	ldapw_entries_free(&found);
	return rc;
}

/* One membership {employee_id, team_id}: add (or remove) the member's values. */
static int apply_membership(struct job *j, const cJSON *rec, bool remove)
{
	const struct mapping_object *t = &j->a->m->obj[MAPPING_TEAM];
	char *emp = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "employee_id"));
	char *team = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "team_id"));
	struct ldapw_entries found = { 0 };
	const struct ldapw_entry *group = NULL;
	char *dn = NULL;
	int rc = -1, got;

	if (!emp || !team) {
		sbuf_addf(j->err, "membership %s: employee_id and team_id are required", j->id);
		goto cleanup;
	}
	if (!t->present) {
		say(j, "the mapping has no teams section: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if ((got = team_group(j, team, &found, &group)) < 0)
		goto cleanup;
	if (!got && remove) {
		say(j, "the team has no group in the directory: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if (!got) {
		cJSON *trec = id_record(team);
		char *key = NULL;
		if (trec && mapping_key(j->a->m, MAPPING_TEAM, trec, &key, j->err) == 0)
			sbuf_addf(j->err, "membership %s: team %s has no group in the directory yet (%s=%s)", j->id, team,
			          t->key_attr, key);
		cJSON_Delete(trec);
		free(key);
		goto cleanup;
	}
	if ((got = lookup_employee(j, emp, &dn, false)) < 0)
		goto cleanup;
	if (got == 0 && !remove) {
		sbuf_addf(j->err, "membership %s: employee %s has no entry in the directory yet", j->id, emp);
		goto cleanup;
	}
	if (got == 0) {
		say(j, "the employee has no entry: nothing to do");
		rc = 0;
		goto cleanup;
	}
	rc = change_membership(j, group, team, emp, remove);
cleanup:
	if (execute(j) < 0)
		rc = -1;
	free(emp);
	free(team);
	free(dn);
	ldapw_entries_free(&found);
	return rc;
}

/* ---- deliveries ---------------------------------------------------------------- */

/* The team read fresh from the API: 1 and *fresh, 0 when it no longer exists,
 * -1 when the API could not answer (the delivery waits for it). */
static int fresh_team(struct job *j, const char *team, cJSON **fresh)
{
	struct sbuf e;
	int got;

	sbuf_init(&e);
	got = factorial_get(j->a->api, "teams/teams", team, fresh, &e);
	if (got < 0) {
		sbuf_addf(j->err, "team %s: reading it from the Factorial API: %s", team, sbuf_str(&e));
		j->a->connection_lost = true;
		j->a->api_unavailable = true;
	}
	sbuf_free(&e);
	return got;
}

/* The record read fresh may name records its delivery did not (the queue
 * ordered it by what the body named): none of them may be changing under
 * another worker while it is applied.  0: go on; -1: the delivery waits. */
static int claim_fresh(struct job *j, enum event_kind kind, const cJSON *fresh)
{
	if (!j->a->claim_refs || j->a->claim_refs(j->a->claim_ctx, kind, fresh) == 0)
		return 0;
	j->a->waits = true;
	sbuf_addf(j->err, "%s %s: names a record another delivery is changing now: it waits for that one", j->kind,
	          j->id);
	return -1;
}

/* Whether team's employee_ids lists employee id. */
static bool team_lists(const cJSON *team, const char *id)
{
	const cJSON *m;

	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(team, "employee_ids")) {
		char *mid = mapping_id_text(m);
		bool same = mid && strcmp(mid, id) == 0;
		free(mid);
		if (same)
			return true;
	}
	return false;
}

/* teams/team/...: from the body, or, with the API, as a notification: the
 * team is read fresh, so that a late retry applies today's team (a team
 * Factorial no longer has loses its group). */
static int team_delivery(struct job *j, const cJSON *body)
{
	bool del = strcmp(j->event, "delete") == 0;
	cJSON *fresh = NULL;
	int rc, got;

	if (!j->a->m->obj[MAPPING_TEAM].present) {
		say(j, "the mapping has no teams section: nothing to do");
		return 0;
	}
	if (!j->a->api)
		return apply_team(j, body, del);
	factorial_teams_changed();
	if ((got = fresh_team(j, j->id, &fresh)) < 0 || (got && claim_fresh(j, EVENT_TEAM, fresh) < 0)) {
		cJSON_Delete(fresh);
		return -1;
	}
	if (got == 0 && !del)
		say(j, "no longer exists in Factorial: its group goes");
	rc = got ? apply_team(j, fresh, false) : apply_team(j, body, true);
	cJSON_Delete(fresh);
	return rc;
}

/* A membership, as the team read fresh says it is now: the member joins or
 * leaves; a team whose group is not there yet gets it, whole; an employee
 * without an entry yet joins when the entry is made (an employee's creation
 * joins the groups of its teams). */
static int membership_now(struct job *j, const cJSON *rec, const cJSON *fresh, const char *team, const char *emp)
{
	struct ldapw_entries found = { 0 };
	const struct ldapw_entry *group;
	bool member = team_lists(fresh, emp);
	char *dn = NULL;
	int rc = -1, got;

	if ((got = team_group(j, team, &found, &group)) < 0)
		goto cleanup;
	if (!got) {
		const char *kind = j->kind, *id = j->id;
		sayf(j, "team %s has no group yet: made from the team as Factorial has it now", team);
		j->kind = "team";
		j->id = team;
		rc = member ? apply_team(j, fresh, false) : 0;
		j->kind = kind;
		j->id = id;
		goto cleanup;
	}
	if ((got = lookup_employee(j, emp, &dn, false)) < 0)
		goto cleanup;
	if (!got) {
		sayf(j, "employee %s has no entry yet: %s", emp,
		     member ? "it joins the group when it is made" : "nothing to do");
		rc = 0;
		goto cleanup;
	}
	rc = apply_membership(j, rec, !member);
cleanup:
	free(dn);
	ldapw_entries_free(&found);
	return rc;
}

/* One membership: from the body, or, with the API, by whether the team
 * lists the employee now (a late `delete` after the employee joined again
 * removes nothing). */
static int one_membership(struct job *j, const cJSON *rec, bool remove)
{
	char *team = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "team_id"));
	char *emp = mapping_id_text(cJSON_GetObjectItemCaseSensitive(rec, "employee_id"));
	cJSON *fresh = NULL;
	int rc = -1, got;

	if (!j->a->api || !team || !emp || !j->a->m->obj[MAPPING_TEAM].present) {
		rc = apply_membership(j, rec, remove);
		goto cleanup;
	}
	if ((got = fresh_team(j, team, &fresh)) < 0 || (got && claim_fresh(j, EVENT_TEAM, fresh) < 0))
		goto cleanup;
	if (got == 0) {
		sayf(j, "team %s no longer exists in Factorial: nothing to do", team);
		rc = 0;
		goto cleanup;
	}
	rc = membership_now(j, rec, fresh, team, emp);
cleanup:
	cJSON_Delete(fresh);
	free(team);
	free(emp);
	return rc;
}

struct each_membership {
	struct job *j;
	bool remove;
};

static int membership_item(void *ctx, const cJSON *membership)
{
	struct each_membership *e = ctx;

	free(e->j->own_id);
	e->j->own_id = mapping_record_id(membership);
	e->j->id = e->j->own_id ? e->j->own_id : "?";
	e->j->counted = false;
	return one_membership(e->j, membership, e->remove) < 0 ? -1 : 0;
}

/* teams/membership/...: one membership, or a list of them (bulk_upsert). */
static int membership_delivery(struct job *j, const cJSON *body)
{
	struct each_membership e = { .j = j, .remove = strcmp(j->event, "delete") == 0 };

	if (j->a->api)
		factorial_teams_changed();
	return event_each_membership(body, membership_item, &e);
}

/* employees/employee/...: from the body, or (factorial.enrich) the employee
 * read fresh with job_title and team_ids. */
/* The day the employee's next contract version takes effect (next, "" for
 * none): the employee is read again that day (the scheduler queues a
 * contract version delivery for it), so that a title dated later is
 * applied on its day. */
static void schedule_title(struct job *j, const char *next)
{
	char *due = NULL, body[96];
	struct sbuf e;
	int got;

	if (!j->a->st || !j->a->m->obj[MAPPING_EMPLOYEE].present)
		return;
	sbuf_init(&e);
	got = store_schedule_get(j->a->st, "contract", j->id, &due, NULL, &e);
	snprintf(body, sizeof(body), "{\"employee_id\": \"%s\"}", j->id);
	if (got == 1 && !next[0] && store_schedule_remove(j->a->st, "contract", j->id, &e) < 0)
		log_warn("employee %s: the schedule could not be updated: %s", j->id, sbuf_str(&e));
	else if (got >= 0 && next[0] && (got == 0 || strcmp(due, next) != 0) &&
	         store_schedule_put(j->a->st, "contract", j->id, next, body, &e) < 0)
		log_warn("employee %s: the contract version taking effect on %s could not be recorded: %s", j->id, next,
		         sbuf_str(&e));
	else if (got >= 0 && next[0])
		sayf(j, "the contract version taking effect on %s is applied on that day", next);
	free(due);
	sbuf_free(&e);
}

/* The employee read fresh from the API (enrichment, or a contract version
 * naming it), then applied as an employee delivery. */
static int employee_read_fresh(struct job *j, struct factorial *api)
{
	struct sbuf e;
	cJSON *fresh = NULL;
	char next[16] = "";
	int rc = -1, got;

	const struct mapping *m = j->a->m;
	unsigned what = (mapping_uses_field(m, MAPPING_EMPLOYEE, "job_title") ? FACTORIAL_ENRICH_TITLE : 0) |
	                (m->obj[MAPPING_TEAM].present || mapping_uses_field(m, MAPPING_EMPLOYEE, "team_ids")
	                         ? FACTORIAL_ENRICH_TEAMS
	                         : 0);

	sbuf_init(&e);
	got = factorial_enrich(api, j->id, what, j->a->today, &fresh, next, &e);
	if (got < 0 && factorial_forbidden(api)) {
		/* a permission the token lacks: this record's failure, not the API being away (which would
		 * hold every delivery back) */
		sbuf_addf(j->err, "employee %s: reading it from the Factorial API: %s", j->id, sbuf_str(&e));
	} else if (got < 0) {
		sbuf_addf(j->err, "employee %s: reading it from the Factorial API: %s", j->id, sbuf_str(&e));
		j->a->connection_lost = true;
		j->a->api_unavailable = true;
	} else if (got == 0) {
		say(j, "no longer exists in Factorial: skipped");
		rc = 0;
	} else if (claim_fresh(j, EVENT_EMPLOYEE, fresh) == 0) {
		j->fresh = true;
		rc = apply_employee(j, fresh);
		if (rc == 0 && !j->a->dry_run)
			schedule_title(j, next);
	}
	cJSON_Delete(fresh);
	sbuf_free(&e);
	return rc;
}

static int employee_delivery(struct job *j, const cJSON *body)
{
	if (!j->a->m->obj[MAPPING_EMPLOYEE].present) {
		say(j, "the mapping has no employees section: nothing to do");
		return 0;
	}
	return j->a->api ? employee_read_fresh(j, j->a->api) : apply_employee(j, body);
}

/* A contract version (a new job title, dated now or later): its employee is
 * read again, with the title in force today; a version dated later is
 * applied on its day (schedule_title). */
static int contract_delivery(struct job *j, const cJSON *body)
{
	char *emp = ids_text(cJSON_GetObjectItemCaseSensitive(body, "employee_id"), NULL);
	const char *version = j->id;
	int rc = -1;

	if (!emp) {
		sbuf_addf(j->err, "contract version %s: it names no employee (employee_id)", version);
		goto cleanup;
	}
	if (!j->a->m->obj[MAPPING_EMPLOYEE].present) {
		say(j, "the mapping has no employees section: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if (!j->a->reader) {
		sbuf_addf(j->err, "contract version %s: reading employee %s needs the Factorial API", version, emp);
		goto cleanup;
	}
	j->kind = "employee";
	j->id = emp;
	rc = employee_read_fresh(j, j->a->reader);
cleanup:
	free(emp);
	return rc;
}

struct location_people {
	struct job *j;
	long n, failed;
};

/* One person of the location: queued again (run), or applied now (apply). */
static int location_person(void *ctx, const cJSON *emp)
{
	struct location_people *p = ctx;
	struct apply_ctx *a = p->j->a;
	char *body;
	struct sbuf err;

	p->n++;
	if (a->revisit) {
		if (!(body = cJSON_PrintUnformatted(emp)))
			return -1;
		a->revisit(a->revisit_ctx, "employees/employee/update", body);
		free(body);
		return 0;
	}
	sbuf_init(&err);
	if (apply_record(a, MAPPING_EMPLOYEE, emp, &err) < 0) {
		log_error("%s", sbuf_str(&err));
		p->failed++;
	}
	sbuf_free(&err);
	return 0;
}

/* A location made, renamed or removed: when the mapping reads locations
 * ({location.name}), its people are applied again with its new names
 * (the caller reads the locations fresh first). */
static int location_delivery(struct job *j, const cJSON *body)
{
	struct location_people p = { .j = j };
	struct sbuf q, e;
	char *id = ids_text(cJSON_GetObjectItemCaseSensitive(body, "id"), NULL);
	int rc = -1;

	sbuf_init(&q);
	sbuf_init(&e);
	if (!id) {
		sbuf_addf(j->err, "location %s: it has no id", j->id);
		goto cleanup;
	}
	if (!j->a->m->obj[MAPPING_EMPLOYEE].present || !(related_needs(j->a->m) & RELATED_LOCATIONS)) {
		say(j, "the mapping reads no location: nothing to do");
		rc = 0;
		goto cleanup;
	}
	if (!j->a->reader) {
		sbuf_addf(j->err, "location %s: reading its people needs the Factorial API", id);
		goto cleanup;
	}
	sbuf_addf(&q, "location_ids%%5B%%5D=%s", id);
	if (factorial_list(j->a->reader, "employees/employees", sbuf_str(&q), location_person, &p, &e) < 0) {
		sbuf_addf(j->err, "location %s: reading its people from the Factorial API: %s", id, sbuf_str(&e));
		j->a->connection_lost = true;
		j->a->api_unavailable = true;
		goto cleanup;
	}
	sayf(j, "%ld %s of location %s %s again%s", p.n, p.n == 1 ? "person" : "people", id,
	     j->a->revisit ? "queued to be applied" : "applied", p.failed ? " (some failed: see above)" : "");
	rc = p.failed ? -1 : 0;
	if (rc < 0)
		sbuf_addf(j->err, "location %s: %ld of its people could not be applied", id, p.failed);
cleanup:
	free(id);
	sbuf_free(&q);
	sbuf_free(&e);
	return rc;
}

/* What each kind of record a delivery holds is handled by (events.h names the kinds). */
static const struct {
	bool object_body; /* the body must be one JSON object */
	bool groups;      /* it reads and changes groups: under the groups lock */
	int (*handle)(struct job *j, const cJSON *body);
} handlers[] = {
	[EVENT_EMPLOYEE] = { true, false, employee_delivery },
	[EVENT_TEAM] = { true, true, team_delivery },
	[EVENT_MEMBERSHIP] = { false, true, membership_delivery },
	[EVENT_CONTRACT] = { true, false, contract_delivery },
	[EVENT_LOCATION] = { true, false, location_delivery },
};

/* A record (or each of a list) whose ids are not canonical decimal text is
 * refused whole, before the directory is asked anything (ids.h). */
static int ids_refused(struct job *j, const cJSON *body)
{
	const cJSON *it;
	struct sbuf why;
	int rc = 0;

	sbuf_init(&why);
	if (cJSON_IsArray(body)) {
		cJSON_ArrayForEach(it, body) {
			if ((rc = ids_check(it, &why)) < 0)
				break;
		}
	} else {
		rc = ids_check(body, &why);
	}
	if (rc < 0) {
		const cJSON *raw = cJSON_IsObject(body) ? cJSON_GetObjectItemCaseSensitive(body, "id") : NULL;
		j->a->hopeless = true;
		if (cJSON_IsString(raw) && !j->own_id)
			sbuf_addf(j->err, "%s \"%s\": %s; nothing changed", j->kind, raw->valuestring, sbuf_str(&why));
		else
			sbuf_addf(j->err, "%s %s: %s; nothing changed", j->kind, j->id, sbuf_str(&why));
	}
	sbuf_free(&why);
	return rc;
}

int apply_delivery(struct apply_ctx *a, const char *type, const cJSON *body, struct sbuf *err)
{
	const struct event_type *t = event_find(type);
	struct job j = { .a = a, .type = type, .err = err };
	int rc = -1;

	a->connection_lost = false;
	a->hopeless = false;
	a->api_unavailable = false;
	a->stale = false;
	a->waits = false;
	a->related_unknown = false;
	job_maps_init(&j);
	if (!t) {
		sbuf_addf(err, "\"%s\" is not a subscription type the agent handles", type);
		goto cleanup;
	}
	j.event = t->action;
	j.kind = event_kind_name(t->kind);
	if (handlers[t->kind].object_body && !cJSON_IsObject(body)) {
		sbuf_adds(err, "the delivery body is not a JSON object");
		goto cleanup;
	}
	j.own_id = mapping_record_id(body);
	j.id = j.own_id ? j.own_id : "?";
	if (ids_refused(&j, body) < 0)
		goto cleanup;
	if (handlers[t->kind].groups)
		groups_enter(&j);
	rc = handlers[t->kind].handle(&j, body);
	if (handlers[t->kind].groups)
		groups_leave(&j);
cleanup:
	if (execute(&j) < 0) /* what a handler planned before it failed, as it always was */
		rc = -1;
	groups_release(&j);
	free(j.own_id);
	job_maps_free(&j);
	return rc;
}

void apply_summary_line(const struct apply_ctx *a, long failed, struct sbuf *out)
{
	const struct apply_summary *s = &a->sum;

	if (a->dry_run)
		sbuf_addf(out, "%u to add, %u to modify, %u to rename, %u to disable, %u to delete", s->add, s->modify,
		          s->rename, s->disable, s->del);
	else if (s->add + s->modify + s->rename + s->disable + s->del == 0 && failed == 0)
		sbuf_adds(out, "nothing to do");
	else
		sbuf_addf(out, "%u added, %u modified, %u renamed, %u disabled, %u deleted", s->add, s->modify, s->rename,
		          s->disable, s->del);
	if (failed > 0)
		sbuf_addf(out, ", %ld failed", failed);
}

/* ---- sync ------------------------------------------------------------------ */

/* The managed entries by key; two entries holding one key are remembered as such ("!dn1; dn2"). */
static void index_by_key(struct apply_cache *c, const struct mapping_object *o)
{
	for (size_t i = 0; i < c->emp.n; i++) {
		const struct vlist *k = ldapw_entry_values(&c->emp.v[i], o->key_attr);
		const char *seen;
		char idx[32];
		if (!k || !k->n)
			continue;
		seen = strmap_get(&c->by_key, k->v[0]);
		if (seen) {
			/* two entries hold one key: the record is refused, nothing touches either */
			struct sbuf two;
			sbuf_init(&two);
			if (*seen == '!')
				sbuf_addf(&two, "%s; %s", seen, c->emp.v[i].dn);
			else
				sbuf_addf(&two, "!%s; %s", c->emp.v[atol(seen)].dn, c->emp.v[i].dn);
			strmap_put(&c->by_key, k->v[0], sbuf_str(&two));
			strmap_del(&c->dn_by_key, k->v[0]);
			sbuf_free(&two);
			continue;
		}
		snprintf(idx, sizeof(idx), "%zu", i);
		strmap_put(&c->by_key, k->v[0], idx);
		strmap_put(&c->dn_by_key, k->v[0], c->emp.v[i].dn);
	}
}

/* Every value of the unique attributes under search_base: the managed
 * entries' are in the cache, the others are read (there are few: service
 * accounts and such). */
static int cache_unique_values(struct apply_ctx *a, struct apply_cache *c, const struct mapping_object *o,
                               struct sbuf *err)
{
	struct ldapw_error e;
	struct sbuf f;
	int rc = 0;

	sbuf_init(&f);
	for (size_t i = 0; i < c->emp.n; i++)
		cache_values(c, o, &c->emp.v[i], c->emp.v[i].dn, true);
	for (size_t i = 0; i < o->nattrs && rc == 0; i++) {
		const char *one[2] = { o->attrs[i].name, NULL };
		struct ldapw_entries holders;
		if (!(o->attrs[i].flags & MAPPING_ATTR_UNIQUE))
			continue;
		sbuf_reset(&f);
		sbuf_addf(&f, "(&(%s=*)(!(%s=*)))", o->attrs[i].name, o->key_attr);
		if (ldapw_search_all(a->lw, o->search_base, sbuf_str(&f), o->attrs[i].name, one, 500, &holders, &e) !=
		    LDAP_SUCCESS) {
			sbuf_addf(err, "reading %s values under %s: %s: %s", o->attrs[i].name, o->search_base, e.op, e.text);
			a->connection_lost = ldapw_error_is_connection(&e);
			rc = -1;
			continue;
		}
		for (size_t n = 0; n < holders.n; n++)
			cache_values(c, o, &holders.v[n], holders.v[n].dn, true);
		ldapw_entries_free(&holders);
	}
	sbuf_free(&f);
	return rc;
}

int apply_cache_load(struct apply_ctx *a, struct sbuf *err)
{
	const struct mapping_object *o = &a->m->obj[MAPPING_EMPLOYEE];
	struct apply_cache *c = calloc(1, sizeof(*c));
	const char **attrs = NULL;
	struct ldapw_error e;
	struct sbuf f;
	int rc = -1;

	sbuf_init(&f);
	if (!c) {
		sbuf_adds(err, "out of memory");
		return -1;
	}
	strmap_init(&c->by_key);
	strmap_init(&c->dn_by_key);
	strmap_init(&c->values);
	strmap_init(&c->seen);
	strmap_init(&c->terminated);
	strmap_init(&c->added_by_key);
	strmap_init(&c->bases);
	a->cache = c;
	if (!o->present)
		return 0;
	attrs = owned_attrs(o, NULL);
	sbuf_addf(&f, "(%s=*)", o->key_attr);
	if (!attrs || f.failed) {
		sbuf_adds(err, "out of memory");
		goto cleanup;
	}
	if (ldapw_search_all(a->lw, o->search_base, sbuf_str(&f), o->key_attr, attrs, 500, &c->emp, &e) != LDAP_SUCCESS) {
		sbuf_addf(err, "reading the managed entries under %s: %s: %s", o->search_base, e.op, e.text);
		a->connection_lost = ldapw_error_is_connection(&e);
		goto cleanup;
	}
	index_by_key(c, o);
	rc = cache_unique_values(a, c, o, err);
cleanup:
	free(attrs);
	sbuf_free(&f);
	return rc;
}

void apply_cache_free(struct apply_ctx *a)
{
	struct apply_cache *c = a->cache;

	if (!c)
		return;
	for (size_t i = 0; i < c->npending; i++)
		pending_free(&c->pending[i]);
	free(c->pending);
	ldapw_entries_free(&c->emp);
	ldapw_entries_free(&c->added);
	strmap_free(&c->by_key);
	strmap_free(&c->dn_by_key);
	strmap_free(&c->values);
	strmap_free(&c->seen);
	strmap_free(&c->terminated);
	strmap_free(&c->added_by_key);
	strmap_free(&c->bases);
	free(c);
	a->cache = NULL;
}

size_t apply_cache_entries(const struct apply_ctx *a)
{
	return a->cache ? a->cache->emp.n : 0;
}

int apply_record(struct apply_ctx *a, enum mapping_kind kind, const cJSON *record, struct sbuf *err)
{
	struct job j = { .a = a, .type = "sync", .event = "sync", .err = err };
	char *id = mapping_record_id(record);
	int rc;

	a->connection_lost = false;
	a->hopeless = false;
	a->api_unavailable = false;
	a->stale = false;
	a->unresolved = false;
	job_maps_init(&j);
	j.id = id ? id : "?";
	j.kind = kind == MAPPING_TEAM ? "team" : "employee";
	if (ids_refused(&j, record) < 0)
		rc = -1;
	else
		rc = kind == MAPPING_TEAM ? apply_team(&j, record, false) : apply_employee(&j, record);
	if (execute(&j) < 0)
		rc = -1;
	groups_release(&j);
	job_maps_free(&j);
	free(id);
	return rc;
}

void apply_cache_orphans(struct apply_ctx *a, void (*fn)(void *ctx, const char *key, const char *dn), void *ctx)
{
	struct apply_cache *c = a->cache;

	if (!c)
		return;
	for (size_t i = 0; i < c->by_key.cap; i++) {
		const char *key = c->by_key.slots[i].key;
		const char *dn;
		if (!key || strmap_get(&c->seen, key) || !(dn = strmap_get(&c->dn_by_key, key)))
			continue;
		fn(ctx, key, dn);
	}
}

/* The changes an orphan's termination makes, without a record: the
 * terminated.attributes that need no record field, and the DN under move_to. */
static int orphan_changes(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur,
                          struct changes *c, char **newdn)
{
	struct vlist *vals = calloc(o->nattrs + 1, sizeof(*vals)), unresolved;
	cJSON *empty = cJSON_CreateObject();
	struct tmpl_env env = { 0 };
	char err[256];
	int rc = -1;

	*newdn = NULL;
	vlist_init(&unresolved);
	if (!vals || !empty)
		goto cleanup;
	for (size_t i = 0; i < o->nattrs; i++) {
		const struct vlist *v = ldapw_entry_values(cur, o->attrs[i].name);
		for (size_t n = 0; v && n < v->n; n++)
			vlist_push_copy(&vals[i], v->v[n], strlen(v->v[n]));
	}
	env.record = empty;
	env.tables = &j->a->m->tables;
	env.attrs = vals;
	env.unresolved = &unresolved;
	env.err = j->err;
	for (size_t t = 0; t < o->nterm_attrs; t++) {
		struct vlist want;
		vlist_init(&want);
		for (size_t k = 0; k < o->term_attrs[t].ntmpls; k++)
			if (tmpl_eval(o->term_attrs[t].tmpls[k], &env, &want) < 0) {
				vlist_free(&want);
				goto cleanup;
			}
		vlist_normalize(&want);
		if (diff_attr(c, o->term_attrs[t].name, ldapw_entry_values(cur, o->term_attrs[t].name), &want) < 0) {
			vlist_free(&want);
			goto cleanup;
		}
		vlist_free(&want);
	}
	if (o->action == MAPPING_MOVE) {
		char *first = dn_first_rdn(cur->dn), *value = dn_rdn_value(cur->dn), *eq = first ? strchr(first, '=') : NULL;
		if (eq) {
			*eq = '\0';
			if (dn_build(first, value, o->move_to, newdn, err, sizeof(err)) < 0)
				sbuf_addf(j->err, "%s", err);
		}
		free(first);
		free(value);
		if (!*newdn)
			goto cleanup;
		if (dn_equal(*newdn, cur->dn)) {
			free(*newdn);
			*newdn = NULL;
		}
	}
	rc = 0;
cleanup:
	for (size_t i = 0; vals && i < o->nattrs; i++)
		vlist_free(&vals[i]);
	free(vals);
	vlist_free(&unresolved);
	cJSON_Delete(empty);
	return rc;
}

static int orphan_apply(struct job *j, const struct mapping_object *o, const struct ldapw_entry *cur, bool delete)
{
	struct changes c = { 0 };
	char *rdnval = dn_rdn_value(cur->dn), *newdn = NULL;
	int rc = -1;

	if ((delete || o->remove_from_groups) && remove_from_groups(j, cur->dn, rdnval) < 0)
		goto cleanup;
	if (j->a->m->ngroups && rule_groups(j, cur->dn, NULL, NULL, 0) < 0)
		goto cleanup;
	if (delete) {
		rc = follow_pending(j, cur->dn, NULL) < 0 || op_delete(j, cur->dn) < 0 ? -1 : follow_everywhere(j, cur->dn, NULL);
		goto cleanup;
	}
	if (orphan_changes(j, o, cur, &c, &newdn) < 0)
		goto cleanup;
	if (newdn) {
		char *newrdn = dn_first_rdn(newdn), *parent = dn_parent(newdn);
		int x = newrdn && parent ? op_rename(j, cur->dn, newdn, newrdn, parent, CAT_DISABLE) : -1;
		free(newrdn);
		free(parent);
		if (x < 0)
			goto cleanup;
	}
	if (op_modify(j, newdn ? newdn : cur->dn, &c, CAT_DISABLE, "disable") < 0)
		goto cleanup;
	if (newdn && rewrite_references(j, cur->dn, newdn) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	changes_free(&c);
	free(rdnval);
	free(newdn);
	return rc;
}

int apply_orphan(struct apply_ctx *a, const char *key, bool delete, struct sbuf *err)
{
	const struct mapping_object *o = &a->m->obj[MAPPING_EMPLOYEE];
	struct job j = { .a = a, .type = "sync", .event = "orphan", .kind = "employee", .id = key, .err = err };
	struct ldapw_entries own = { 0 };
	const struct ldapw_entry *cur = NULL;
	int rc = -1;

	a->connection_lost = false;
	a->hopeless = false;
	job_maps_init(&j);
	if (find_by_key(&j, o, MAPPING_EMPLOYEE, key, &own, &cur) < 0)
		goto cleanup;
	if (!cur) {
		rc = 0;
		goto cleanup;
	}
	rc = orphan_apply(&j, o, cur, delete);
	if (rc == 0 && (rc = guard_asks(&j, NULL, key, cur->dn, 0)) != 1)
		goto cleanup; /* set aside (0), or a failure */
	rc = execute(&j) < 0 || rc < 0 ? -1 : 0;
	if (rc == 0 && delete)
		cache_forget(&j, key, cur);
cleanup:
	plan_clear(&j);
	groups_release(&j);
	job_maps_free(&j);
	ldapw_entries_free(&own);
	return rc;
}
