#include "build.h"

#include "guard.h"

bool guard_within(const struct config *cfg, long n, size_t managed, double *pct)
{
	double max_pct = cfg->safety.max_disables_percent;

	*pct = managed ? 100.0 * (double)n / (double)managed : 100.0;
	return (long long)n <= cfg->safety.max_disables && (max_pct < 0 || *pct <= max_pct);
}

int guard_one_more(const struct config *cfg, const struct mapping *m, struct store *st, struct ldapw *lw, double now,
                   long reserved, struct sbuf *why)
{
	static const char *const none[] = { "1.1", NULL };
	struct ldapw_entries all = { 0 };
	struct ldapw_error le;
	struct sbuf e, f;
	size_t managed = 0;
	double pct;
	long done;
	int rc = -1;

	sbuf_init(&e);
	sbuf_init(&f);
	done = store_guard_count(st, now - 3600, &e);
	if (done < 0) {
		sbuf_addf(why, "deletion guard: %s", sbuf_str(&e));
		goto cleanup;
	}
	done += reserved;
	if (cfg->safety.max_disables_percent >= 0) {
		const struct mapping_object *o = &m->obj[MAPPING_EMPLOYEE];
		sbuf_addf(&f, "(%s=*)", o->key_attr);
		if (ldapw_search_all(lw, o->search_base, sbuf_str(&f), o->key_attr, none, 1000, &all, &le) != 0) {
			sbuf_addf(why, "deletion guard: counting the managed entries: %s", le.text);
			goto cleanup;
		}
		managed = all.n;
		ldapw_entries_free(&all);
	}
	rc = guard_within(cfg, done + 1, managed, &pct);
	if (rc == 0)
		sbuf_addf(why,
		          "deletion guard: %ld disables and deletes in the last hour, and this one is over "
		          "safety.max_disables %lld%s; held until `queue retry --force`",
		          done, cfg->safety.max_disables,
		          cfg->safety.max_disables_percent >= 0 ? " or max_disables_percent" : "");
cleanup:
	sbuf_free(&e);
	sbuf_free(&f);
	return rc;
}
