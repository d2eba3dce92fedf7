#include "build.h"

#include "common/vlist.h"

#include <stdlib.h>
#include <string.h>

void vlist_init(struct vlist *l)
{
	memset(l, 0, sizeof(*l));
}

void vlist_clear(struct vlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

void vlist_free(struct vlist *l)
{
	vlist_clear(l);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int vlist_push(struct vlist *l, char *s)
{
	if (!s)
		return -1;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			free(s);
			return -1;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = s;
	return 0;
}

int vlist_push_copy(struct vlist *l, const char *s, size_t len)
{
	char *c = malloc(len + 1);

	if (!c)
		return -1;
	memcpy(c, s, len);
	c[len] = '\0';
	return vlist_push(l, c);
}

bool vlist_contains(const struct vlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

int vlist_move(struct vlist *dst, struct vlist *src)
{
	int rc = 0;

	for (size_t i = 0; i < src->n; i++) {
		if (rc == 0)
			rc = vlist_push(dst, src->v[i]);
		else
			free(src->v[i]);
	}
	src->n = 0;
	return rc;
}

void vlist_normalize(struct vlist *l)
{
	size_t out = 0;

	for (size_t i = 0; i < l->n; i++) {
		bool keep = l->v[i][0] != '\0';
		for (size_t k = 0; keep && k < out; k++)
			keep = strcmp(l->v[k], l->v[i]) != 0;
		if (keep)
			l->v[out++] = l->v[i];
		else
			free(l->v[i]);
	}
	l->n = out;
}
