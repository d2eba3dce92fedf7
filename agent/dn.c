#include "build.h"

#include "dn.h"

#include <ldap.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int dn_build(const char *attr, const char *value, const char *base, char **out, char *err, size_t errlen)
{
	LDAPDN base_dn = NULL, dn = NULL;
	LDAPAVA ava;
	LDAPAVA *avas[2] = { &ava, NULL };
	struct berval bv = { 0, NULL };
	size_t nbase = 0;
	int rc = -1;

	*out = NULL;
	if (!value || !*value) {
		snprintf(err, errlen, "the RDN attribute %s has no value", attr);
		goto cleanup;
	}
	if (base && *base && ldap_str2dn(base, &base_dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) {
		snprintf(err, errlen, "\"%s\" is not a valid DN", base);
		goto cleanup;
	}
	while (base_dn && base_dn[nbase])
		nbase++;
	dn = calloc(nbase + 2, sizeof(*dn));
	if (!dn) {
		snprintf(err, errlen, "out of memory");
		goto cleanup;
	}
	memset(&ava, 0, sizeof(ava));
	ava.la_attr.bv_val = (char *)attr;
	ava.la_attr.bv_len = strlen(attr);
	ava.la_value.bv_val = (char *)value;
	ava.la_value.bv_len = strlen(value);
	ava.la_flags = LDAP_AVA_STRING;
	dn[0] = avas;
	for (size_t i = 0; i < nbase; i++)
		dn[i + 1] = base_dn[i];
	if (ldap_dn2bv(dn, &bv, LDAP_DN_FORMAT_LDAPV3 | LDAP_DN_PRETTY) != LDAP_SUCCESS) {
		snprintf(err, errlen, "cannot build a DN from %s=\"%s\"", attr, value);
		goto cleanup;
	}
	*out = strdup(bv.bv_val);
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		goto cleanup;
	}
	rc = 0;
cleanup:
	if (bv.bv_val)
		ber_memfree(bv.bv_val);
	free(dn); /* its RDNs belong to base_dn and to this frame */
	if (base_dn)
		ldap_dnfree(base_dn);
	return rc;
}

bool dn_valid(const char *s)
{
	LDAPDN dn = NULL;

	if (ldap_str2dn(s, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS)
		return false;
	ldap_dnfree(dn);
	return true;
}

char *dn_rdn_value(const char *s)
{
	LDAPDN dn = NULL;
	char *v = NULL;

	if (ldap_str2dn(s, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS)
		return NULL;
	if (dn && dn[0] && dn[0][0])
		/* an attribute without a value ("ple" alone) has no bv_val at all */
		v = dn[0][0]->la_value.bv_val ? strndup(dn[0][0]->la_value.bv_val, dn[0][0]->la_value.bv_len) : strdup("");
	ldap_dnfree(dn);
	return v;
}

static char *dn_slice(const char *s, bool first)
{
	LDAPDN dn = NULL;
	char *out = NULL, *str = NULL;

	if (ldap_str2dn(s, &dn, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS)
		return NULL;
	if (!dn || !dn[0]) {
		out = strdup("");
	} else if (first) {
		LDAPRDN one[2] = { dn[0], NULL };
		if (ldap_dn2str(one, &str, LDAP_DN_FORMAT_LDAPV3 | LDAP_DN_PRETTY) == LDAP_SUCCESS)
			out = strdup(str);
	} else if (!dn[1]) {
		out = strdup("");
	} else if (ldap_dn2str(dn + 1, &str, LDAP_DN_FORMAT_LDAPV3 | LDAP_DN_PRETTY) == LDAP_SUCCESS) {
		out = strdup(str);
	}
	ldap_memfree(str);
	ldap_dnfree(dn);
	return out;
}

char *dn_parent(const char *s)
{
	return dn_slice(s, false);
}

char *dn_first_rdn(const char *s)
{
	return dn_slice(s, true);
}

bool dn_equal(const char *a, const char *b)
{
	char *na = NULL, *nb = NULL;
	bool eq;

	if (ldap_dn_normalize(a, LDAP_DN_FORMAT_LDAPV3, &na, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS ||
	    ldap_dn_normalize(b, LDAP_DN_FORMAT_LDAPV3, &nb, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) {
		eq = strcmp(a, b) == 0;
	} else {
		eq = strcasecmp(na, nb) == 0;
	}
	ldap_memfree(na);
	ldap_memfree(nb);
	return eq;
}

bool dn_under(const char *dn, const char *base)
{
	char *nd = NULL, *nb = NULL;
	bool under = false;

	if (ldap_dn_normalize(dn, LDAP_DN_FORMAT_LDAPV3, &nd, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS &&
	    ldap_dn_normalize(base, LDAP_DN_FORMAT_LDAPV3, &nb, LDAP_DN_FORMAT_LDAPV3) == LDAP_SUCCESS) {
		size_t ld = strlen(nd), lb = strlen(nb);
		under = ld == lb ? strcasecmp(nd, nb) == 0
		                 : ld > lb + 1 && nd[ld - lb - 1] == ',' && nd[ld - lb - 2] != '\\' &&
		                           strcasecmp(nd + ld - lb, nb) == 0;
	}
	ldap_memfree(nd);
	ldap_memfree(nb);
	return under;
}
