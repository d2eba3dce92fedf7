/*
 * ldifw: LDIF output (RFC 2849) for render, dry runs and fixtures.
 *
 * Lines are written by libldap's LDIF writer (ldif_put_wrap), which decides
 * when a value must be base64 ("attr:: ..."): non-ASCII, control
 * characters, a leading space, colon or '<', a trailing space.  Lines are
 * not folded, so each value stands on one line.
 *
 * Memory: functions append to the caller's sbuf; nothing is retained.
 */
#ifndef FLA_LDIFW_H
#define FLA_LDIFW_H

#include <stddef.h>

#include "common/sbuf.h"

/* "name: value" or "name:: base64" and a newline. */
void ldifw_attr(struct sbuf *out, const char *name, const char *value);
/* "# text" and a newline; line breaks inside text become spaces. */
void ldifw_comment(struct sbuf *out, const char *text);

/* A change record's first lines: "dn: ..." and "changetype: ...". */
void ldifw_change(struct sbuf *out, const char *dn, const char *changetype);
/* One modification of a changetype: modify record: "replace: attr", the
 * values, and the "-" line.  values may be NULL (delete the attribute). */
void ldifw_mod(struct sbuf *out, const char *op, const char *attr, const char *const *values, size_t n);

#endif
