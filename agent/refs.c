/* refs: see refs.h. */
#include "build.h"

#include "refs.h"

#include "common/sbuf.h"
#include "dn.h"

#include <stdlib.h>
#include <string.h>

const char *refs_base(const struct mapping_references *r, const struct vlist *naming_contexts, const char *dn)
{
	const char *best = NULL;
	size_t best_len = 0;

	if (r->base)
		return r->base;
	for (size_t i = 0; naming_contexts && i < naming_contexts->n; i++) {
		const char *nc = naming_contexts->v[i];
		size_t len = strlen(nc);
		if (len > best_len && dn_under(dn, nc)) {
			best = nc;
			best_len = len;
		}
	}
	return best;
}

char *refs_filter(const struct vlist *attrs, const char *dn)
{
	struct sbuf f;

	if (!attrs->n)
		return NULL;
	sbuf_init(&f);
	sbuf_adds(&f, "(|");
	for (size_t i = 0; i < attrs->n; i++) {
		char *one = ldapw_eq_filter(attrs->v[i], dn);
		if (!one) {
			sbuf_free(&f);
			return NULL;
		}
		sbuf_adds(&f, one);
		free(one);
	}
	sbuf_addc(&f, ')');
	if (f.failed) {
		sbuf_free(&f);
		return NULL;
	}
	return sbuf_detach(&f);
}

int refs_hits(const struct ldapw_entry *e, const struct vlist *attrs, const char *old_dn, const char *new_dn,
              struct refs_hit **out, size_t *n)
{
	struct refs_hit *v = NULL, *grown;
	size_t k = 0;
	int rc = -1;

	for (size_t a = 0; a < attrs->n; a++) {
		const struct vlist *have = ldapw_entry_values(e, attrs->v[a]);
		struct refs_hit h = { .attr = attrs->v[a] };
		bool ok = true;
		vlist_init(&h.old);
		for (size_t i = 0; have && i < have->n && ok; i++) {
			if (dn_equal(have->v[i], old_dn))
				ok = vlist_push_copy(&h.old, have->v[i], strlen(have->v[i])) == 0;
			if (new_dn && dn_equal(have->v[i], new_dn))
				h.holds_new = true;
		}
		if (ok && !h.old.n)
			continue;
		if (!ok || !(grown = realloc(v, (k + 1) * sizeof(*v)))) {
			vlist_free(&h.old);
			goto cleanup;
		}
		v = grown;
		v[k++] = h;
	}
	rc = 0;
cleanup:
	if (rc < 0) {
		refs_hits_free(v, k);
		v = NULL;
		k = 0;
	}
	*out = v;
	*n = k;
	return rc;
}

void refs_hits_free(struct refs_hit *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vlist_free(&h[i].old);
	free(h);
}
