/* The LDIF writer: the input split at NUL bytes into a DN, an attribute
 * name and values, each written out every way the dry run writes them. */
#include "build.h"

#include "fuzz.h"

#include "common/sbuf.h"
#include "ldifw.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = fuzz_as_text(data, size), *end = text + size;
	const char *parts[8];
	size_t n = 0;
	struct sbuf out;

	/* the pieces between NULs; the text has one more at its end */
	for (const char *p = text; p <= end && n < 8; p += strlen(p) + 1)
		parts[n++] = p;
	while (n < 3)
		parts[n++] = "";
	sbuf_init(&out);
	ldifw_comment(&out, parts[0]);
	ldifw_change(&out, parts[0], "modify");
	ldifw_attr(&out, parts[1][0] ? parts[1] : "description", parts[2]);
	ldifw_mod(&out, "replace", parts[1][0] ? parts[1] : "description", parts + 2, n - 2);
	ldifw_mod(&out, "delete", "member", NULL, 0);
	sbuf_free(&out);
	return 0;
}
