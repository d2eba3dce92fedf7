/*
 * vlist: an ordered list of attribute values (NUL-terminated strings).
 *
 * Memory: a vlist owns its strings.  vlist_push() takes ownership of the
 * string it is given (and frees it on failure); vlist_push_copy() copies.
 * Both return -1 when memory runs out.
 */
#ifndef FLA_VLIST_H
#define FLA_VLIST_H

#include <stdbool.h>
#include <stddef.h>

struct vlist {
	char **v;
	size_t n;
	size_t cap;
};

void vlist_init(struct vlist *l);
void vlist_free(struct vlist *l);
void vlist_clear(struct vlist *l);
int vlist_push(struct vlist *l, char *s);
int vlist_push_copy(struct vlist *l, const char *s, size_t len);
bool vlist_contains(const struct vlist *l, const char *s);
/* Moves every string of src to the end of dst; src ends empty. */
int vlist_move(struct vlist *dst, struct vlist *src);
/* Drops empty strings and repeated values (keeping the first). */
void vlist_normalize(struct vlist *l);

#endif
