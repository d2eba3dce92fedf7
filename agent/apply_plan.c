/*
 * apply_plan: the plan: the ordered steps a record needs (add, modify,
 * rename, delete, notes), worked out first and carried out by
 * apply_execute().
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

/* ---- the plan: what a record needs, worked out first ----------------------
 *
 * Working out a record (reads of the directory, the mapping) yields a plan:
 * steps in order, each an add, modify, rename or delete of one entry with
 * what a person reads about it, or a note.  An executor then carries the
 * plan out: to the directory (one operation at a time, or adds in flight
 * when syncing), or as LDIF for a dry run.  Dry and real runs share
 * everything up to the executor; the deletion guard is asked about a plan
 * that would disable or delete, before it is carried out or set aside. */

void apply_step_free(struct step *s)
{
	free(s->dn);
	free(s->text);
	free(s->names);
	free(s->newrdn);
	free(s->newsup);
	free(s->left_group);
	apply_changes_free(&s->c);
	apply_changes_free(&s->lock);
}

void apply_plan_clear(struct job *j)
{
	for (size_t i = 0; i < j->plan.n; i++)
		apply_step_free(&j->plan.v[i]);
	free(j->plan.v);
	memset(&j->plan, 0, sizeof(j->plan));
}

static int changes_copy(struct changes *to, const struct changes *from)
{
	for (size_t i = 0; from && i < from->n; i++)
		if (apply_changes_add(to, from->v[i].op, from->v[i].attr, &from->v[i].values) < 0)
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
		apply_step_free(s);
		return NULL;
	}
	j->plan.n++;
	return s;
}

/* An operation step. */
struct step *apply_plan_op(struct job *j, enum step_kind kind, enum cat cat, const char *dn, const char *text)
{
	struct step *s = plan_push(j, kind, cat, dn, text);

	if (s)
		j->changed = true;
	else
		sbuf_adds(j->err, "out of memory");
	return s;
}

int apply_op_add(struct job *j, const char *dn, const struct changes *attrs, enum cat cat)
{
	struct sbuf what, names;
	struct step *s;
	int rc;

	sbuf_init(&what);
	sbuf_init(&names);
	apply_attr_names(attrs, &names);
	sbuf_addf(&what, "add %s", dn);
	s = apply_plan_op(j, STEP_ADD, cat, dn, sbuf_str(&what));
	rc = s && changes_copy(&s->c, attrs) == 0 && (s->names = sbuf_detach(&names)) ? 0 : -1;
	sbuf_free(&what);
	sbuf_free(&names);
	return rc;
}

int apply_op_modify(struct job *j, const char *dn, const struct changes *c, enum cat cat, const char *verb)
{
	struct sbuf what, names;
	struct step *s;
	int rc;

	if (c->n == 0)
		return 0;
	sbuf_init(&what);
	sbuf_init(&names);
	apply_attr_names(c, &names);
	sbuf_addf(&what, "%s %s: %s", verb, dn, sbuf_str(&names));
	s = apply_plan_op(j, STEP_MODIFY, cat, dn, sbuf_str(&what));
	rc = s && changes_copy(&s->c, c) == 0 && (s->names = sbuf_detach(&names)) ? 0 : -1;
	if (s && (strcmp(verb, "follow rename") == 0 || strcmp(verb, "drop reference") == 0))
		s->tolerate_gone = true;
	if (s && strcmp(verb, "drop reference") == 0)
		s->tolerate_needed = true;
	sbuf_free(&what);
	sbuf_free(&names);
	return rc;
}

int apply_op_rename(struct job *j, const char *dn, const char *newdn, const char *newrdn, const char *newsup,
                    enum cat cat)
{
	struct sbuf what;
	struct step *s;
	int rc;

	sbuf_init(&what);
	sbuf_addf(&what, "rename %s to %s", dn, newdn);
	s = apply_plan_op(j, STEP_RENAME, cat, dn, sbuf_str(&what));
	rc = s && (s->names = strdup(newdn)) && (s->newrdn = strdup(newrdn)) && (!newsup || (s->newsup = strdup(newsup)))
	             ? 0
	             : -1;
	sbuf_free(&what);
	return rc;
}

int apply_op_delete(struct job *j, const char *dn)
{
	struct sbuf what;
	struct step *s;

	sbuf_init(&what);
	sbuf_addf(&what, "delete %s", dn);
	s = apply_plan_op(j, STEP_DELETE, CAT_DELETE, dn, sbuf_str(&what));
	sbuf_free(&what);
	return s ? 0 : -1;
}

/* The summary counts each record once by its main category, and every modify. */
static void count_step(struct job *j, const struct step *s)
{
	if (s->cat == CAT_NONE)
		return; /* a step made for the record's sake (an organizational unit for it), not the record */
	if (s->kind == STEP_DELETE) {
		apply_count(j, CAT_DELETE);
		j->counted = true;
	} else if (s->kind == STEP_MODIFY) {
		if (s->cat == CAT_MODIFY || !j->counted)
			apply_count(j, s->cat);
		if (s->cat != CAT_MODIFY)
			j->counted = true;
	} else {
		if (!j->counted)
			apply_count(j, s->cat);
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

	apply_say_now(j, s->text);
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
		if (apply_collect_one(j->a) < 0 && j->a->connection_lost)
			return -1;
	if (!(p = realloc(c->pending, (c->npending + 1) * sizeof(*p))))
		return -1;
	c->pending = p;
	if (ldapw_add_async(j->a->lw, s->dn, mods, s->c.n, &msgid, &e) != LDAP_SUCCESS)
		return apply_failed(j, s->dn, &e);
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
		if (!locked && apply_changes_add(out, s->c.v[i].op, s->c.v[i].attr, &s->c.v[i].values) < 0)
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
		if (apply_changes_add(out, LDAP_MOD_REPLACE, s->lock.v[k].attr, open ? &open->values : NULL) < 0)
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
	if (locked_changes(s, &locked) < 0 || opening_changes(s, &opening) < 0 || !(lm = apply_to_mods(&locked)) ||
	    !(om = apply_to_mods(&opening))) {
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
	apply_changes_free(&locked);
	apply_changes_free(&opening);
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
		apply_say_now(j, s->text);
		return 0;
	}
	if ((s->kind == STEP_ADD || s->kind == STEP_MODIFY) && !(mods = apply_to_mods(&s->c)))
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
		apply_failed(j, s->dn, &e);
		goto cleanup;
	}
	apply_say_now(j, s->text);
	apply_audit(j, s->dn, step_names[s->kind], s->names ? s->names : "");
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
int apply_execute(struct job *j)
{
	int rc = 0;

	for (size_t i = 0; i < j->plan.n && rc == 0; i++) {
		if (j->a->dry_run)
			ldif_step(j, &j->plan.v[i]);
		else
			rc = directory_step(j, &j->plan.v[i]);
	}
	apply_plan_clear(j);
	return rc;
}

/* A note: said now in a real run, in its place in the plan's LDIF in a dry run. */
void apply_say(struct job *j, const char *what)
{
	if (j->a->dry_run && plan_push(j, STEP_NOTE, CAT_NONE, NULL, what))
		return;
	apply_say_now(j, what);
}
