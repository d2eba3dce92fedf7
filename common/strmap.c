#include "build.h"

#include "common/strmap.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

void strmap_init(struct strmap *m)
{
	memset(m, 0, sizeof(*m));
}

void strmap_clear(struct strmap *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		free(m->slots[i].key);
		free(m->slots[i].value);
		m->slots[i].key = m->slots[i].value = NULL;
	}
	m->n = 0;
}

void strmap_free(struct strmap *m)
{
	strmap_clear(m);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

static struct strmap_slot *find(const struct strmap *m, const char *key)
{
	size_t i = (size_t)hash(key) & (m->cap - 1);

	while (m->slots[i].key && strcmp(m->slots[i].key, key) != 0)
		i = (i + 1) & (m->cap - 1);
	return &m->slots[i];
}

static int grow(struct strmap *m)
{
	struct strmap old = *m;
	size_t cap = m->cap ? m->cap * 2 : 64;

	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots) {
		*m = old;
		return -1;
	}
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key)
			*find(m, old.slots[i].key) = old.slots[i];
	free(old.slots);
	return 0;
}

int strmap_put(struct strmap *m, const char *key, const char *value)
{
	struct strmap_slot *s;
	char *v = NULL;

	if ((m->n + 1) * 4 > m->cap * 3 && grow(m) < 0)
		return -1;
	if (value && !(v = strdup(value)))
		return -1;
	s = find(m, key);
	if (s->key) {
		free(s->value);
		s->value = v;
		return 0;
	}
	s->key = strdup(key);
	if (!s->key) {
		free(v);
		return -1;
	}
	s->value = v;
	m->n++;
	return 0;
}

const char *strmap_get(const struct strmap *m, const char *key)
{
	const struct strmap_slot *s;

	if (!m->cap)
		return NULL;
	s = find(m, key);
	if (!s->key)
		return NULL;
	return s->value ? s->value : "";
}

void strmap_del(struct strmap *m, const char *key)
{
	struct strmap_slot *s;
	size_t i, j;

	if (!m->cap)
		return;
	s = find(m, key);
	if (!s->key)
		return;
	free(s->key);
	free(s->value);
	s->key = s->value = NULL;
	m->n--;
	/* shift back the entries of the probe run that follow, so lookups still find them */
	i = (size_t)(s - m->slots);
	for (j = (i + 1) & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
		size_t home = (size_t)hash(m->slots[j].key) & (m->cap - 1);
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (between)
			continue;
		m->slots[i] = m->slots[j];
		m->slots[j].key = m->slots[j].value = NULL;
		i = j;
	}
}

static void add_lower(struct sbuf *b, const char *s)
{
	for (const char *p = s; *p; p++)
		sbuf_addc(b, (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p));
}

void strmap_fold_key(struct sbuf *out, const char *attr, const char *value)
{
	sbuf_reset(out);
	add_lower(out, attr);
	sbuf_addc(out, '=');
	add_lower(out, value);
}

const char *strmap_get_folded(const struct strmap *m, const char *attr, const char *value)
{
	struct sbuf k;
	const char *v;

	sbuf_init(&k);
	strmap_fold_key(&k, attr, value);
	v = k.failed ? NULL : strmap_get(m, sbuf_str(&k));
	sbuf_free(&k);
	return v;
}
