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

/* ---- connecting, binding, errors in words ------------------------------------ */

/* Active Directory starts its diagnostic messages with a Windows error code
 * ("0000052D: Constraint violation - ..."): the ones a sysadmin meets when
 * accounts are made, said in words. */
static const struct {
	unsigned long code;
	const char *meaning;
} ad_codes[] = {
	{ 0x52D, "the password does not meet the domain's password policy (length, complexity or history)" },
	{ 0x524, "an account with this name (sAMAccountName or userPrincipalName) exists already" },
	{ 0x525, "no such user" },
	{ 0x52E, "wrong user name or password" },
	{ 0x532, "the password has expired" },
	{ 0x533, "the account is disabled" },
	{ 0x773, "the password must be changed before the account is used" },
	{ 0x775, "the account is locked out" },
	{ 0x5, "access denied: the service account lacks the right (see docs/directories.md)" },
	{ 0x2035, "a DN named in the change does not exist (or was renamed)" },
};

/* The code an Active Directory message starts with, or 0. */
static unsigned long ad_code_of(const char *diag)
{
	char *end;
	unsigned long code;

	if (!diag || strlen(diag) < 9 || diag[8] != ':')
		return 0;
	code = strtoul(diag, &end, 16);
	return end == diag + 8 ? code : 0;
}

static const char *ad_meaning(unsigned long code)
{
	for (size_t i = 0; code && i < sizeof(ad_codes) / sizeof(ad_codes[0]); i++)
		if (ad_codes[i].code == code)
			return ad_codes[i].meaning;
	return NULL;
}

/* The error a person reads: the result, and the server's own message (its
 * trailing newline cut, an Active Directory code said in words). */
void ldapw_describe(struct ldapw_error *err, const char *op, int rc, char *diag)
{
	const char *ad;

	err->rc = rc;
	snprintf(err->op, sizeof(err->op), "%s", op);
	for (size_t n = diag ? strlen(diag) : 0; n > 0 && (diag[n - 1] == '\n' || diag[n - 1] == ' '); n--)
		diag[n - 1] = '\0'; /* 389 ends its messages with a newline */
	err->ad_code = ad_code_of(diag);
	if (diag && *diag && strcmp(diag, "(unknown error code)") != 0 && (ad = ad_meaning(err->ad_code)))
		snprintf(err->text, sizeof(err->text), "%s (%d): %s; the server says: %s", ldap_err2string(rc), rc, ad, diag);
	else if (diag && *diag && strcmp(diag, "(unknown error code)") != 0)
		snprintf(err->text, sizeof(err->text), "%s (%d): %s", ldap_err2string(rc), rc, diag);
	else
		snprintf(err->text, sizeof(err->text), "%s (%d)", ldap_err2string(rc), rc);
}

void ldapw_set_error(struct ldapw *lw, struct ldapw_error *err, const char *op, int rc)
{
	char *diag = NULL, *matched = NULL;
	size_t len;

	if (lw && lw->ld)
		ldap_get_option(lw->ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	ldapw_describe(err, op, rc, diag);
	/* No such object: how far down the name the server found entries */
	if (rc == LDAP_NO_SUCH_OBJECT && lw && lw->ld && ldap_get_option(lw->ld, LDAP_OPT_MATCHED_DN, &matched) == 0 &&
	    matched && *matched) {
		len = strlen(err->text);
		snprintf(err->text + len, sizeof(err->text) - len, " (the server has entries down to %s only)", matched);
	}
	ldap_memfree(diag);
	ldap_memfree(matched);
}

bool ldapw_error_is_connection(const struct ldapw_error *err)
{
	return err->rc == LDAP_SERVER_DOWN || err->rc == LDAP_TIMEOUT || err->rc == LDAP_CONNECT_ERROR ||
	       err->rc == LDAP_UNAVAILABLE || err->rc == LDAP_BUSY;
}
/* EXTERNAL asks nothing: every prompt gets its default (none). */
static int sasl_nothing(LDAP *ld, unsigned flags, void *defaults, void *interact)
{
	(void)ld;
	(void)flags;
	(void)defaults;
	(void)interact;
	return LDAP_SUCCESS;
}

/* Waits up to seconds for a non-blocking connect on fd: 0, or an errno. */
static int connect_result(int fd, long seconds)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int e = 0;
	socklen_t len = sizeof(e);

	if (poll(&p, 1, (int)(seconds * 1000)) == 0)
		return ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
		return errno;
	return e;
}

/* libldap says "Can't contact LDAP server" for every way of not reaching
 * it; the first server of the URI is tried by hand to tell which: an
 * unknown host name, a refused connection, no answer, or (the port
 * answered) something past the connection, such as TLS.  True when the port
 * answered (or could not be tried). */
static bool explain_unreachable(const struct ldapw *lw, struct ldapw_error *err)
{
	bool reached = true;
	LDAPURLDesc *url = NULL;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char port[16], why[320] = "";
	int g, e = 0, fd = -1;
	size_t len;

	if (ldap_url_parse(lw->uri, &url) != LDAP_SUCCESS || !url->lud_host || !*url->lud_host ||
	    strcasecmp(url->lud_scheme, "ldapi") == 0)
		goto cleanup;
	snprintf(port, sizeof(port), "%d",
	         url->lud_port ? url->lud_port : strcasecmp(url->lud_scheme, "ldaps") == 0 ? 636 : 389);
	if ((g = getaddrinfo(url->lud_host, port, &hints, &ai)) != 0) {
		snprintf(why, sizeof(why), "the host name %s cannot be resolved (%s)", url->lud_host, gai_strerror(g));
		reached = false;
		goto cleanup;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
	if (fd < 0)
		goto cleanup;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
		e = errno == EINPROGRESS ? connect_result(fd, lw->network_timeout > 0 ? lw->network_timeout : 10) : errno;
	reached = e == 0;
	if (e == ECONNREFUSED)
		snprintf(why, sizeof(why), "%s port %s refused the connection: is the server running and listening there?",
		         url->lud_host, port);
	else if (e == ETIMEDOUT)
		snprintf(why, sizeof(why), "%s port %s did not answer within %ld s (ldap.network_timeout): a firewall, or "
		         "the wrong address?", url->lud_host, port, lw->network_timeout);
	else if (e)
		snprintf(why, sizeof(why), "connecting to %s port %s: %s", url->lud_host, port, strerror(e));
	else
		snprintf(why, sizeof(why), "%s port %s accepts connections, so what failed came after (TLS, or not an "
		         "LDAP server)", url->lud_host, port);
cleanup:
	len = strlen(err->text);
	if (*why)
		snprintf(err->text + len, sizeof(err->text) - len, ": %s", why);
	if (fd >= 0)
		close(fd);
	if (ai)
		freeaddrinfo(ai);
	ldap_free_urldesc(url);
	return reached;
}

static int connect_bind(struct ldapw *lw, struct ldapw_error *err)
{
	struct timeval nto = { lw->network_timeout, 0 }, oto = { lw->timeout, 0 };
	int version = LDAP_VERSION3, demand = LDAP_OPT_X_TLS_DEMAND, zero = 0;
	struct secret pw = { 0 };
	char perr[512];
	int rc;

	memset(err, 0, sizeof(*err));
	rc = ldap_initialize(&lw->ld, lw->uri);
	if (rc != LDAP_SUCCESS) {
		ldapw_set_error(NULL, err, "connect", rc);
		return rc;
	}
	ldap_set_option(lw->ld, LDAP_OPT_PROTOCOL_VERSION, &version);
	ldap_set_option(lw->ld, LDAP_OPT_NETWORK_TIMEOUT, &nto);
	ldap_set_option(lw->ld, LDAP_OPT_TIMEOUT, &oto);
	ldap_set_option(lw->ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
	ldap_set_option(lw->ld, LDAP_OPT_RESTART, LDAP_OPT_ON);
	/* TLS: verified, always; a private context so these settings hold */
	ldap_set_option(lw->ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
	if (lw->ca_file)
		ldap_set_option(lw->ld, LDAP_OPT_X_TLS_CACERTFILE, lw->ca_file);
	ldap_set_option(lw->ld, LDAP_OPT_X_TLS_NEWCTX, &zero);
	if (lw->starttls) {
		rc = ldap_start_tls_s(lw->ld, NULL, NULL);
		if (rc != LDAP_SUCCESS) {
			ldapw_set_error(lw, err, "StartTLS", rc);
			goto cleanup;
		}
	}
	if (lw->sasl_mech) {
		rc = ldap_sasl_interactive_bind_s(lw->ld, NULL, lw->sasl_mech, NULL, NULL, LDAP_SASL_QUIET, sasl_nothing,
		                                  NULL);
		if (rc != LDAP_SUCCESS) {
			ldapw_set_error(lw, err, "SASL bind", rc);
			goto cleanup;
		}
	} else if (lw->bind_dn) {
		struct berval cred;
		if (secret_read_file(lw->password_file, &pw, perr, sizeof(perr)) < 0) {
			err->rc = LDAP_INVALID_CREDENTIALS;
			snprintf(err->op, sizeof(err->op), "bind");
			snprintf(err->text, sizeof(err->text), "%s", perr);
			rc = LDAP_INVALID_CREDENTIALS;
			goto cleanup;
		}
		cred.bv_val = pw.data;
		cred.bv_len = pw.len;
		rc = ldap_sasl_bind_s(lw->ld, lw->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, NULL);
		secret_free(&pw);
		if (rc != LDAP_SUCCESS) {
			ldapw_set_error(lw, err, "bind", rc);
			goto cleanup;
		}
	}
	rc = LDAP_SUCCESS;
cleanup:
	secret_free(&pw);
	if (rc == LDAP_SUCCESS)
		return rc;
	if (rc == LDAP_TIMEOUT) {
		size_t len = strlen(err->text);
		snprintf(err->text + len, sizeof(err->text) - len,
		         ": the server took the connection but gave no answer within %ld s (ldap.timeout): is it an LDAP "
		         "server, and is it stopped or overloaded?", lw->timeout);
	}
	if ((rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR) && explain_unreachable(lw, err) &&
	    (lw->starttls || strncasecmp(lw->uri, "ldaps://", 8) == 0)) {
		size_t len = strlen(err->text);
		snprintf(err->text + len, sizeof(err->text) - len,
		         "; with TLS, check that ldap.ca_file holds the CA that signed the server's certificate and that "
		         "the certificate names this host");
	}
	ldap_unbind_ext_s(lw->ld, NULL, NULL);
	lw->ld = NULL;
	return rc;
}

int ldapw_open(const struct config *cfg, struct ldapw **out, struct ldapw_error *err)
{
	struct ldapw *lw = calloc(1, sizeof(*lw));
	int rc;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	if (!lw) {
		err->rc = LDAP_NO_MEMORY;
		snprintf(err->text, sizeof(err->text), "out of memory");
		return LDAP_NO_MEMORY;
	}
	lw->uri = strdup(cfg->ldap.uri);
	lw->starttls = cfg->ldap.starttls;
	lw->ca_file = cfg->ldap.ca_file ? strdup(cfg->ldap.ca_file) : NULL;
	lw->bind_dn = cfg->ldap.bind_dn ? strdup(cfg->ldap.bind_dn) : NULL;
	lw->password_file = cfg->ldap.bind_password_file ? strdup(cfg->ldap.bind_password_file) : NULL;
	lw->sasl_mech = cfg->ldap.sasl_mech ? strdup(cfg->ldap.sasl_mech) : NULL;
	lw->network_timeout = (long)cfg->ldap.network_timeout;
	lw->timeout = (long)cfg->ldap.timeout;
	if (!lw->uri) {
		ldapw_close(lw);
		err->rc = LDAP_NO_MEMORY;
		return LDAP_NO_MEMORY;
	}
	rc = connect_bind(lw, err);
	if (rc != LDAP_SUCCESS) {
		ldapw_close(lw);
		return rc;
	}
	*out = lw;
	return LDAP_SUCCESS;
}
void ldapw_close(struct ldapw *lw)
{
	if (!lw)
		return;
	if (lw->ld)
		ldap_unbind_ext_s(lw->ld, NULL, NULL);
	free(lw->uri);
	free(lw->ca_file);
	free(lw->bind_dn);
	free(lw->password_file);
	free(lw->sasl_mech);
	vlist_free(&lw->server.naming_contexts);
	free(lw);
}
/* ---- what the server says of itself ---------------------------------------- */

#define OID_AD_CAPABILITY "1.2.840.113556.1.4.800" /* LDAP_CAP_ACTIVE_DIRECTORY_OID */
#define OID_PPOLICY_CONTROL "1.3.6.1.4.1.42.2.27.8.5.1"

static bool lists(const struct vlist *v, const char *oid)
{
	for (size_t i = 0; v && i < v->n; i++)
		if (strcmp(v->v[i], oid) == 0)
			return true;
	return false;
}

const struct ldapw_server *ldapw_server(struct ldapw *lw, struct ldapw_error *err)
{
	static const char *const attrs[] = { "namingContexts", "supportedCapabilities", "supportedControl", NULL };
	struct ldapw_entries dse = { 0 };
	const struct vlist *nc;

	if (lw->server_read)
		return &lw->server;
	if (ldapw_read(lw, "", attrs, &dse, err) != LDAP_SUCCESS)
		return NULL;
	if (dse.n) {
		nc = ldapw_entry_values(&dse.v[0], "namingContexts");
		for (size_t i = 0; nc && i < nc->n; i++)
			if (vlist_push_copy(&lw->server.naming_contexts, nc->v[i], strlen(nc->v[i])) < 0) {
				ldapw_entries_free(&dse);
				ldapw_set_error(NULL, err, "search", LDAP_NO_MEMORY);
				return NULL;
			}
		lw->server.active_directory = lists(ldapw_entry_values(&dse.v[0], "supportedCapabilities"), OID_AD_CAPABILITY);
		lw->server.ppolicy_control = lists(ldapw_entry_values(&dse.v[0], "supportedControl"), OID_PPOLICY_CONTROL);
	}
	ldapw_entries_free(&dse);
	lw->server_read = true;
	return &lw->server;
}

int ldapw_need_connection(struct ldapw *lw, struct ldapw_error *err, const char *op)
{
	if (lw->ld)
		return LDAP_SUCCESS;
	ldapw_set_error(NULL, err, op, LDAP_SERVER_DOWN);
	return LDAP_SERVER_DOWN;
}

void ldapw_entries_free(struct ldapw_entries *e)
{
	for (size_t i = 0; i < e->n; i++) {
		for (size_t a = 0; a < e->v[i].nattrs; a++) {
			free(e->v[i].attrs[a].name);
			vlist_free(&e->v[i].attrs[a].values);
		}
		free(e->v[i].attrs);
		free(e->v[i].dn);
	}
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

const struct vlist *ldapw_entry_values(const struct ldapw_entry *e, const char *attr)
{
	for (size_t a = 0; a < e->nattrs; a++)
		if (strcasecmp(e->attrs[a].name, attr) == 0)
			return &e->attrs[a].values;
	return NULL;
}

/* Appends the entries of res to out. */
static int collect(LDAP *ld, LDAPMessage *res, struct ldapw_entries *out)
{
	int n = ldap_count_entries(ld, res);
	size_t i = out->n;
	struct ldapw_entry *v = realloc(out->v, (out->n + (size_t)(n > 0 ? n : 0) + 1) * sizeof(*v));

	if (!v)
		return -1;
	out->v = v;
	memset(out->v + out->n, 0, ((size_t)(n > 0 ? n : 0) + 1) * sizeof(*v));
	for (LDAPMessage *m = ldap_first_entry(ld, res); m; m = ldap_next_entry(ld, m), i++) {
		struct ldapw_entry *e = &out->v[i];
		BerElement *ber = NULL;
		char *dn = ldap_get_dn(ld, m);
		size_t cap = 0;
		out->n++;
		e->dn = dn ? strdup(dn) : NULL;
		ldap_memfree(dn);
		if (!e->dn)
			return -1;
		for (char *a = ldap_first_attribute(ld, m, &ber); a; a = ldap_next_attribute(ld, m, ber)) {
			struct berval **vals = ldap_get_values_len(ld, m, a);
			struct ldapw_attr *at;
			if (e->nattrs == cap) {
				struct ldapw_attr *grown;
				cap = cap ? cap * 2 : 8;
				grown = realloc(e->attrs, cap * sizeof(*grown));
				if (!grown) {
					ldap_memfree(a);
					ldap_value_free_len(vals);
					ber_free(ber, 0);
					return -1;
				}
				e->attrs = grown;
			}
			at = &e->attrs[e->nattrs++];
			at->name = strdup(a);
			vlist_init(&at->values);
			{
				size_t nv = 0;
				while (vals && vals[nv])
					nv++;
				/* exactly as many slots as values: a directory read is mostly single values */
				at->values.v = nv ? malloc(nv * sizeof(char *)) : NULL;
				at->values.cap = at->values.v ? nv : 0;
			}
			for (size_t k = 0; vals && vals[k]; k++)
				vlist_push_copy(&at->values, vals[k]->bv_val, vals[k]->bv_len);
			ldap_value_free_len(vals);
			ldap_memfree(a);
		}
		ber_free(ber, 0);
		if (e->nattrs && e->nattrs < cap) {
			struct ldapw_attr *fit = realloc(e->attrs, e->nattrs * sizeof(*fit));
			if (fit)
				e->attrs = fit;
		}
	}
	return 0;
}

static int search_scope(struct ldapw *lw, const char *base, int scope, const char *filter, const char *const *attrs,
                        int sizelimit, struct ldapw_entries *out, struct ldapw_error *err)
{
	LDAPMessage *res = NULL;
	struct timeval to = { lw->timeout, 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = ldapw_need_connection(lw, err, "search")) != LDAP_SUCCESS)
		return rc;
	{
		double t0 = ldapw_mono();
		rc = ldap_search_ext_s(lw->ld, base, scope, filter, (char **)attrs, 0, NULL, NULL, &to, sizelimit, &res);
		metrics_ldap_seconds(ldapw_mono() - t0);
	}
	if (rc == LDAP_NO_SUCH_OBJECT) {
		ldap_msgfree(res);
		return LDAP_SUCCESS; /* the base does not exist: nothing found */
	}
	/* past the limit the caller set, the entries found are what was asked for; past the
	 * server's own limit they are a part, and a part is never taken for the whole */
	if (rc != LDAP_SUCCESS && !(rc == LDAP_SIZELIMIT_EXCEEDED && sizelimit > 0)) {
		ldapw_set_error(lw, err, "search", rc);
		ldap_msgfree(res);
		return rc;
	}
	if (collect(lw->ld, res, out) < 0) {
		ldapw_entries_free(out);
		ldapw_set_error(NULL, err, "search", LDAP_NO_MEMORY);
		ldap_msgfree(res);
		return LDAP_NO_MEMORY;
	}
	ldap_msgfree(res);
	return LDAP_SUCCESS;
}

int ldapw_search(struct ldapw *lw, const char *base, const char *filter, const char *const *attrs, int sizelimit,
                 struct ldapw_entries *out, struct ldapw_error *err)
{
	return search_scope(lw, base, LDAP_SCOPE_SUBTREE, filter, attrs, sizelimit, out, err);
}

int ldapw_search_paged(struct ldapw *lw, const char *base, const char *filter, const char *const *attrs,
                       int page_size, struct ldapw_entries *out, struct ldapw_error *err)
{
	struct berval cookie = { 0, NULL };
	int rc;

	memset(out, 0, sizeof(*out));
	memset(err, 0, sizeof(*err));
	if ((rc = ldapw_need_connection(lw, err, "search")) != LDAP_SUCCESS)
		return rc;
	for (;;) {
		LDAPControl *page = NULL, *sctrls[2] = { NULL, NULL }, **rctrls = NULL;
		LDAPMessage *res = NULL;
		struct timeval to = { lw->timeout, 0 };
		int code = LDAP_SUCCESS;
		double t0;

		rc = ldap_create_page_control(lw->ld, (ber_int_t)page_size, cookie.bv_val ? &cookie : NULL, 1, &page);
		if (rc != LDAP_SUCCESS) {
			ldapw_set_error(lw, err, "search", rc);
			break;
		}
		sctrls[0] = page;
		t0 = ldapw_mono();
		rc = ldap_search_ext_s(lw->ld, base, LDAP_SCOPE_SUBTREE, filter, (char **)attrs, 0, sctrls, NULL, &to, 0,
		                       &res);
		metrics_ldap_seconds(ldapw_mono() - t0);
		ldap_control_free(page);
		if (rc == LDAP_NO_SUCH_OBJECT) {
			ldap_msgfree(res);
			rc = LDAP_SUCCESS;
			break;
		}
		if (rc != LDAP_SUCCESS || ldap_parse_result(lw->ld, res, &code, NULL, NULL, NULL, &rctrls, 0) != LDAP_SUCCESS) {
			ldapw_set_error(lw, err, "search", rc != LDAP_SUCCESS ? rc : LDAP_OTHER);
			ldap_msgfree(res);
			rc = err->rc;
			break;
		}
		if (collect(lw->ld, res, out) < 0) {
			ldapw_set_error(NULL, err, "search", LDAP_NO_MEMORY);
			ldap_msgfree(res);
			ldap_controls_free(rctrls);
			rc = LDAP_NO_MEMORY;
			break;
		}
		ldap_msgfree(res);
		if (cookie.bv_val)
			ber_memfree(cookie.bv_val);
		cookie.bv_val = NULL;
		cookie.bv_len = 0;
		{
			LDAPControl *pr = rctrls ? ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, rctrls, NULL) : NULL;
			ber_int_t estimate;
			if (pr && ldap_parse_pageresponse_control(lw->ld, pr, &estimate, &cookie) != LDAP_SUCCESS)
				cookie.bv_len = 0;
		}
		ldap_controls_free(rctrls);
		if (!cookie.bv_val || cookie.bv_len == 0)
			break;
	}
	if (cookie.bv_val)
		ber_memfree(cookie.bv_val);
	if (rc != LDAP_SUCCESS)
		ldapw_entries_free(out);
	return rc;
}
/* ---- reading past a server's size limit ------------------------------------
 * An ordinary account may read only so many entries in all, paged or not
 * (slapd: size.prtotal follows the hard limit, 500 by default; 389-DS:
 * nsslapd-sizelimit, 2,000).  A read that hits the limit is done again in
 * slices by the first characters of slice_attr: one slice per character of
 * an alphabet, a slice still too large split by its next character, and
 * for each prefix one more slice for values that go on with a character
 * outside the alphabet (or end there).  The slices are disjoint and cover
 * the whole: a read either returns every entry or fails; it never returns
 * part of the directory as the whole. */

static const char slice_alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz-_.@";
/* deep enough for any key a directory holds: ids of a later Factorial cluster share their first 15 digits */
enum { SLICE_DEPTH = 64 };

static bool over_limit(int rc)
{
	return rc == LDAP_SIZELIMIT_EXCEEDED || rc == LDAP_ADMINLIMIT_EXCEEDED;
}

/* Appends more's entries to out (more is emptied). */
static int entries_take(struct ldapw_entries *out, struct ldapw_entries *more)
{
	struct ldapw_entry *v;

	if (!more->n) {
		ldapw_entries_free(more);
		return 0;
	}
	v = realloc(out->v, (out->n + more->n) * sizeof(*v));
	if (!v) {
		ldapw_entries_free(more);
		return -1;
	}
	memcpy(v + out->n, more->v, more->n * sizeof(*v));
	out->v = v;
	out->n += more->n;
	free(more->v);
	more->v = NULL;
	more->n = 0;
	return 0;
}

/* "(attr=PREFIX*)", the prefix escaped for a substring assertion. */
static void add_initial(struct sbuf *f, const char *attr, const char *prefix, bool negate)
{
	struct berval in = { strlen(prefix), (char *)prefix }, esc = { 0, NULL };

	if (ldap_bv2escaped_filter_value(&in, &esc) != 0) {
		f->failed = true;
		return;
	}
	sbuf_addf(f, "%s(%s=%s*)%s", negate ? "(!" : "", attr, esc.bv_val, negate ? ")" : "");
	ber_memfree(esc.bv_val);
}

static int read_slices(struct ldapw *lw, const char *base, const char *filter, const char *attr,
                       const char *const *attrs, int page_size, const char *prefix, int depth,
                       struct ldapw_entries *out, struct ldapw_error *err)
{
	size_t plen = strlen(prefix);
	char next[SLICE_DEPTH + 2];
	struct sbuf f;
	int rc = LDAP_SUCCESS;

	sbuf_init(&f);
	/* one slice per character of the alphabet */
	for (const char *c = slice_alphabet; *c && rc == LDAP_SUCCESS; c++) {
		struct ldapw_entries part;
		memcpy(next, prefix, plen);
		next[plen] = *c;
		next[plen + 1] = '\0';
		sbuf_reset(&f);
		sbuf_addf(&f, "(&%s", filter);
		add_initial(&f, attr, next, false);
		sbuf_addc(&f, ')');
		if (f.failed) {
			rc = LDAP_NO_MEMORY;
			break;
		}
		rc = ldapw_search_paged(lw, base, sbuf_str(&f), attrs, page_size, &part, err);
		if (over_limit(rc) && depth < SLICE_DEPTH)
			rc = read_slices(lw, base, filter, attr, attrs, page_size, next, depth + 1, out, err);
		else if (rc == LDAP_SUCCESS && entries_take(out, &part) < 0)
			rc = LDAP_NO_MEMORY;
	}
	/* and the rest: values that go on (or end) otherwise */
	if (rc == LDAP_SUCCESS) {
		struct ldapw_entries part;
		sbuf_reset(&f);
		sbuf_addf(&f, "(&%s", filter);
		if (plen)
			add_initial(&f, attr, prefix, false);
		for (const char *c = slice_alphabet; *c; c++) {
			memcpy(next, prefix, plen);
			next[plen] = *c;
			next[plen + 1] = '\0';
			add_initial(&f, attr, next, true);
		}
		sbuf_addc(&f, ')');
		rc = f.failed ? LDAP_NO_MEMORY : ldapw_search_paged(lw, base, sbuf_str(&f), attrs, page_size, &part, err);
		if (rc == LDAP_SUCCESS && entries_take(out, &part) < 0)
			rc = LDAP_NO_MEMORY;
	}
	if (rc == LDAP_NO_MEMORY)
		ldapw_set_error(NULL, err, "search", LDAP_NO_MEMORY);
	sbuf_free(&f);
	return rc;
}

/* How to let the service account read everything in one pass, per server. */
static void limit_fix(const struct ldapw *lw, struct sbuf *out)
{
	const char *who = lw->bind_dn ? lw->bind_dn : "the service account";

	sbuf_addf(out,
	          "lift the size limit for %s: OpenLDAP: `limits dn.exact=\"%s\" size=unlimited` (slapd.conf, or "
	          "olcLimits on the database); 389 Directory Server: `nsSizeLimit: -1` and `nsPagedSizeLimit: -1` "
	          "on that entry; Active Directory: MaxPageSize does not cap paged reads, check the account's "
	          "read rights",
	          who, who);
}

int ldapw_search_all(struct ldapw *lw, const char *base, const char *filter, const char *slice_attr,
                     const char *const *attrs, int page_size, struct ldapw_entries *out, struct ldapw_error *err)
{
	static atomic_bool said;
	struct sbuf fix;
	int rc = ldapw_search_paged(lw, base, filter, attrs, page_size, out, err);

	if (!over_limit(rc) || !slice_attr)
		return rc;
	sbuf_init(&fix);
	limit_fix(lw, &fix);
	if (!atomic_exchange(&said, true))
		log_warn("reading under %s: the server's size limit was reached; reading in slices by %s instead "
		         "(slower); for speed, %s",
		         base, slice_attr, sbuf_str(&fix));
	memset(out, 0, sizeof(*out));
	rc = read_slices(lw, base, filter, slice_attr, attrs, page_size, "", 0, out, err);
	if (rc != LDAP_SUCCESS) {
		ldapw_entries_free(out);
		if (over_limit(rc)) {
			/* no slicing stays under the limit: say exactly what to change */
			snprintf(err->text, sizeof(err->text), "%s (%d), even read in slices by %s: %s",
			         ldap_err2string(rc), rc, slice_attr, sbuf_str(&fix));
		}
	}
	sbuf_free(&fix);
	return rc;
}

int ldapw_alive(struct ldapw *lw)
{
	struct pollfd p = { .events = POLLIN | POLLRDHUP };
	int fd = -1, n;

	if (ldap_get_option(lw->ld, LDAP_OPT_DESC, &fd) != LDAP_OPT_SUCCESS || fd < 0)
		return 0;
	p.fd = fd;
	do
		n = poll(&p, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 1;
	if (n < 0 || (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
		return 0;
	return -1;
}

int ldapw_read(struct ldapw *lw, const char *dn, const char *const *attrs, struct ldapw_entries *out,
               struct ldapw_error *err)
{
	return search_scope(lw, dn, LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, out, err);
}
