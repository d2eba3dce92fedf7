/*
 * strmap: a hash map from strings to strings (open addressing, FNV-1a),
 * for the lookups that run once per record: employee id -> DN, values
 * already taken by an attribute.
 *
 * Memory: the map owns copies of keys and values; strmap_free() releases
 * them.  strmap_get() returns a pointer owned by the map.
 */
#ifndef FLA_STRMAP_H
#define FLA_STRMAP_H

#include <stddef.h>

#include "common/sbuf.h"

struct strmap_slot {
	char *key;
	char *value;
};

struct strmap {
	struct strmap_slot *slots;
	size_t cap; /* a power of two */
	size_t n;
};

void strmap_init(struct strmap *m);
void strmap_free(struct strmap *m);
void strmap_clear(struct strmap *m);
/* Sets key to value (a copy; value may be NULL for a set); returns -1 on OOM. */
int strmap_put(struct strmap *m, const char *key, const char *value);
/* Removes key (nothing when absent). */
void strmap_del(struct strmap *m, const char *key);

/* Sets out to "attr=value" with ASCII letters lower-cased: a key for values
 * compared the way LDAP compares names and mail addresses (case-insensitive). */
void strmap_fold_key(struct sbuf *out, const char *attr, const char *value);

/* The value for key, "" for a key stored with NULL, or NULL when absent. */
const char *strmap_get(const struct strmap *m, const char *key);
/* strmap_get of the key strmap_fold_key makes of attr and value (NULL also
 * when out of memory). */
const char *strmap_get_folded(const struct strmap *m, const char *attr, const char *value);

#endif
