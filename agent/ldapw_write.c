/*
 * ldapw_write: writes: add (also in flight, and with an initial password),
 * modify, rename, delete, and setting a password, each answered with the
 * server's result in an ldapw_error.
 */
#include "build.h"

#include "ldapw_int.h"

#include "ldapw.h"
#include "metrics.h"
#include "common/log.h"
#include "common/sbuf.h"
#include "common/secret.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdatomic.h>
#include <ldap.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

/* ---- writing: add, modify, rename, delete, passwords ------------------------- */

/* LDAPMod arrays for add and modify; the berval arrays point into the vlists. */
static LDAPMod **build_mods(const struct ldapw_mod *mods, size_t n)
{
	/* v[n] ends the list; v[n + 1] keeps the block of LDAPMods for free_mods */
	LDAPMod **v = calloc(n + 2, sizeof(*v));
	LDAPMod *m = calloc(n ? n : 1, sizeof(*m));

	if (!v || !m) {
		free(v);
		free(m);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		size_t nv = mods[i].values ? mods[i].values->n : 0;
		m[i].mod_op = mods[i].op | LDAP_MOD_BVALUES;
		m[i].mod_type = (char *)mods[i].attr;
		if (nv) {
			struct berval **bv = calloc(nv + 1, sizeof(*bv));
			struct berval *b = calloc(nv, sizeof(*b));
			if (!bv || !b) {
				free(bv);
				free(b);
				for (size_t k = 0; k < i; k++)
					if (m[k].mod_bvalues) {
						free(m[k].mod_bvalues[0]);
						free(m[k].mod_bvalues);
					}
				free(m);
				free(v);
				return NULL;
			}
			for (size_t k = 0; k < nv; k++) {
				b[k].bv_val = mods[i].values->v[k];
				b[k].bv_len = strlen(mods[i].values->v[k]);
				bv[k] = &b[k];
			}
			m[i].mod_bvalues = bv;
		}
		v[i] = &m[i];
	}
	v[n + 1] = m;
	return v;
}

static void free_mods(LDAPMod **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i]->mod_bvalues) {
			free(v[i]->mod_bvalues[0]);
			free(v[i]->mod_bvalues);
		}
	}
	free(v[n + 1]);
	free(v);
}

static int write_op(struct ldapw *lw, const char *op, const char *dn, const struct ldapw_mod *mods, size_t n,
                    bool add, struct ldapw_error *err)
{
	LDAPMod **lm;
	int rc;

	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, op)) != LDAP_SUCCESS)
		return rc;
	lm = build_mods(mods, n);
	if (!lm) {
		ldapw_set_error(NULL, err, op, LDAP_NO_MEMORY);
		return LDAP_NO_MEMORY;
	}
	{
		double t0 = ldapw_mono();
		rc = add ? ldap_add_ext_s(lw->ld, dn, lm, NULL, NULL) : ldap_modify_ext_s(lw->ld, dn, lm, NULL, NULL);
		metrics_ldap_seconds(ldapw_mono() - t0);
	}
	if (rc != LDAP_SUCCESS)
		ldapw_set_error(lw, err, op, rc);
	free_mods(lm, n);
	return rc;
}

int ldapw_add(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n, struct ldapw_error *err)
{
	return write_op(lw, "add", dn, mods, n, true, err);
}

/* unicodePwd's value: the password in double quotes, as UTF-16LE (the password is ASCII). */
static int unicode_pwd(const char *password, struct berval *out)
{
	size_t n = strlen(password) + 2;

	out->bv_len = n * 2;
	out->bv_val = calloc(n, 2);
	if (!out->bv_val)
		return -1;
	for (size_t i = 0; i < n; i++)
		out->bv_val[2 * i] = i == 0 || i == n - 1 ? '"' : password[i - 1];
	return 0;
}

int ldapw_add_password(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n,
                       enum ldapw_password_method method, const char *password, struct ldapw_error *err)
{
	struct berval pw = { 0, NULL }, *pwv[2] = { &pw, NULL };
	LDAPMod pwmod = { .mod_op = LDAP_MOD_ADD | LDAP_MOD_BVALUES, .mod_type = (char *)"unicodePwd",
		          .mod_bvalues = pwv };
	LDAPMod **lm = NULL, **all = NULL;
	int rc;

	if (method == LDAPW_PASSWORD_MODIFY) {
		if ((rc = write_op(lw, "add", dn, mods, n, true, err)) != LDAP_SUCCESS)
			return rc;
		return ldapw_set_password(lw, dn, password, err);
	}
	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "add")) != LDAP_SUCCESS)
		return rc;
	if (method == LDAPW_PASSWORD_USERPASSWORD) {
		pwmod.mod_type = (char *)"userPassword";
		pw.bv_len = strlen(password);
		pw.bv_val = strdup(password);
	}
	if ((method == LDAPW_PASSWORD_USERPASSWORD ? !pw.bv_val : unicode_pwd(password, &pw) < 0) ||
	    !(lm = build_mods(mods, n)) || !(all = calloc(n + 2, sizeof(*all)))) {
		ldapw_set_error(NULL, err, "add", LDAP_NO_MEMORY);
		rc = LDAP_NO_MEMORY;
		goto cleanup;
	}
	memcpy(all, lm, n * sizeof(*all));
	all[n] = &pwmod;
	{
		double t0 = ldapw_mono();
		rc = ldap_add_ext_s(lw->ld, dn, all, NULL, NULL);
		metrics_ldap_seconds(ldapw_mono() - t0);
	}
	if (rc != LDAP_SUCCESS)
		ldapw_set_error(lw, err, "add", rc);
cleanup:
	if (pw.bv_val) {
		explicit_bzero(pw.bv_val, pw.bv_len);
		free(pw.bv_val);
	}
	free(all);
	if (lm)
		free_mods(lm, n);
	return rc;
}

int ldapw_set_password(struct ldapw *lw, const char *dn, const char *password, struct ldapw_error *err)
{
	struct berval who = { strlen(dn), (char *)dn }, newpw = { strlen(password), (char *)password };
	struct berval gen = { 0, NULL }; /* a password the server made: none is asked for */
	double t0;
	int rc;

	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "password modify")) != LDAP_SUCCESS)
		return rc;
	t0 = ldapw_mono();
	rc = ldap_passwd_s(lw->ld, &who, NULL, &newpw, &gen, NULL, NULL);
	metrics_ldap_seconds(ldapw_mono() - t0);
	if (gen.bv_val) {
		explicit_bzero(gen.bv_val, gen.bv_len);
		ber_memfree(gen.bv_val);
	}
	if (rc != LDAP_SUCCESS)
		ldapw_set_error(lw, err, "password modify", rc);
	return rc;
}

int ldapw_add_async(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n, int *msgid,
                    struct ldapw_error *err)
{
	LDAPMod **lm;
	int rc;

	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "add")) != LDAP_SUCCESS)
		return rc;
	lm = build_mods(mods, n);
	if (!lm) {
		ldapw_set_error(NULL, err, "add", LDAP_NO_MEMORY);
		return LDAP_NO_MEMORY;
	}
	/* the request is encoded before this returns: the values may go */
	rc = ldap_add_ext(lw->ld, dn, lm, NULL, NULL, msgid);
	if (rc != LDAP_SUCCESS)
		ldapw_set_error(lw, err, "add", rc);
	free_mods(lm, n);
	return rc;
}

int ldapw_next_result(struct ldapw *lw, int *msgid, struct ldapw_error *err)
{
	struct timeval to = { lw->timeout, 0 };
	LDAPMessage *res = NULL;
	char *diag = NULL;
	int code = LDAP_OTHER, rc;
	double t0 = ldapw_mono();

	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "add")) != LDAP_SUCCESS)
		return rc;
	rc = ldap_result(lw->ld, LDAP_RES_ANY, LDAP_MSG_ONE, &to, &res);
	metrics_ldap_seconds(ldapw_mono() - t0);
	if (rc <= 0) {
		ldapw_set_error(lw, err, "add", rc == 0 ? LDAP_TIMEOUT : LDAP_SERVER_DOWN);
		ldap_msgfree(res);
		return err->rc;
	}
	*msgid = ldap_msgid(res);
	if (ldap_parse_result(lw->ld, res, &code, NULL, &diag, NULL, NULL, 1) != LDAP_SUCCESS)
		code = LDAP_OTHER;
	if (code != LDAP_SUCCESS)
		ldapw_describe(err, "add", code, diag);
	ldap_memfree(diag);
	return code;
}

int ldapw_modify(struct ldapw *lw, const char *dn, const struct ldapw_mod *mods, size_t n, struct ldapw_error *err)
{
	return write_op(lw, "modify", dn, mods, n, false, err);
}

int ldapw_rename(struct ldapw *lw, const char *dn, const char *newrdn, const char *newsuperior,
                 struct ldapw_error *err)
{
	int rc;

	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "modrdn")) != LDAP_SUCCESS)
		return rc;
	{
		double t0 = ldapw_mono();
		rc = ldap_rename_s(lw->ld, dn, newrdn, newsuperior, 1, NULL, NULL);
		metrics_ldap_seconds(ldapw_mono() - t0);
	}
	if (rc != LDAP_SUCCESS)
		ldapw_set_error(lw, err, "modrdn", rc);
	return rc;
}

int ldapw_delete(struct ldapw *lw, const char *dn, struct ldapw_error *err)
{
	int rc;

	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "delete")) != LDAP_SUCCESS)
		return rc;
	{
		double t0 = ldapw_mono();
		rc = ldap_delete_ext_s(lw->ld, dn, NULL, NULL);
		metrics_ldap_seconds(ldapw_mono() - t0);
	}
	if (rc != LDAP_SUCCESS)
		ldapw_set_error(lw, err, "delete", rc);
	return rc;
}

char *ldapw_eq_filter(const char *attr, const char *value)
{
	struct berval in = { strlen(value), (char *)value }, out = { 0, NULL };
	size_t len;
	char *f;

	if (ldap_bv2escaped_filter_value(&in, &out) != 0)
		return NULL;
	len = strlen(attr) + out.bv_len + 4;
	f = malloc(len);
	if (f)
		snprintf(f, len, "(%s=%s)", attr, out.bv_val);
	ber_memfree(out.bv_val);
	return f;
}
