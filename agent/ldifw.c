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
