#include "build.h"

#include "ldifw.h"

#include <stdio.h>

#include <lber.h>
#include <ldif.h>
#include <string.h>

void ldifw_attr(struct sbuf *out, const char *name, const char *value)
{
	char *line = ldif_put_wrap(LDIF_PUT_VALUE, name, value, strlen(value), LDIF_LINE_WIDTH_MAX);

	if (!line) {
		out->failed = true;
		return;
	}
	sbuf_adds(out, line);
	ber_memfree(line);
}

void ldifw_comment(struct sbuf *out, const char *text)
{
	sbuf_adds(out, "# ");
	for (const char *p = text; *p; p++)
		sbuf_addc(out, (*p == '\n' || *p == '\r') ? ' ' : *p);
	sbuf_addc(out, '\n');
}

void ldifw_change(struct sbuf *out, const char *dn, const char *changetype)
{
	ldifw_attr(out, "dn", dn);
	sbuf_addf(out, "changetype: %s\n", changetype);
}

void ldifw_mod(struct sbuf *out, const char *op, const char *attr, const char *const *values, size_t n)
{
	sbuf_addf(out, "%s: %s\n", op, attr);
	for (size_t i = 0; i < n; i++)
		ldifw_attr(out, attr, values[i]);
	sbuf_adds(out, "-\n");
}
