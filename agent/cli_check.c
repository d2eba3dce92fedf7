/*
 * cli_check: check: the configuration and the mapping, fixtures, and with
 * --online the directory (each DN, the schema, the reads the mapping needs,
 * whether a leaver can bind), the API and its scopes.
 */
#include "build.h"

#include "cli_int.h"

#include "cli.h"
#include "agentd.h"
#include "apply.h"
#include "common/clock.h"
#include "factorial.h"
#include "config.h"
#include "common/diag.h"
#include "events.h"
#include "common/log.h"
#include "mapping.h"
#include "ldapw.h"
#include "render.h"
#include "probe.h"
#include "schema.h"
#include "queue.h"
#include "reconcile.h"
#include "related.h"
#include "statedir.h"
#include "store.h"
#include "subscriptions.h"
#include <errno.h>
#include <getopt.h>
#include <unistd.h>
#include <libgen.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- check ------------------------------------------------------------------- */

/* One DN of the mapping exists and the service account can read it. */
static void check_dn(struct ldapw *lw, const struct config *cfg, const struct mapping *m, const char *dn,
                     const struct mapping_place *p, struct diag *d)
{
	static const char *const none[] = { "1.1", NULL };
	struct ldapw_entries e;
	struct ldapw_error err;

	if (!dn)
		return;
	if (ldapw_read(lw, dn, none, &e, &err) != 0)
		diag_add(d, m->path, p->line, p->column, p->key, "cannot read %s: %s", dn, err.text);
	else if (!e.n)
		diag_add(d, m->path, p->line, p->column, p->key, "%s does not exist, or %s may not read it", dn,
		         cfg->ldap.bind_dn ? cfg->ldap.bind_dn : "the service account");
	ldapw_entries_free(&e);
}

/* What the server does by itself (probe.h): whether a leaver can still
 * bind (a line when they cannot; a warning at the mapping's terminated when
 * they can, or when the server does not let it be told), who keeps
 * references (said when it needs a person's attention), and what becomes of
 * a refused initial password.  -1 only when the facts could not be read. */
static int check_server(struct cli_ctx *ctx, const struct config *cfg, const struct mapping *m, struct ldapw *lw,
                        const struct schema *s)
{
	const struct mapping_object *o = &m->obj[MAPPING_EMPLOYEE];
	struct probe_facts f;
	struct ldapw_error err;
	struct sbuf how;
	int rc = 0;

	probe_facts_init(&f);
	sbuf_init(&how);
	if (probe_facts_read(lw, s, &f, &err) < 0) {
		fprintf(stderr, "%s: directory: reading what it says of itself: %s\n", ctx->prog, err.text);
		rc = -1;
	} else {
		bool worth = false;
		int failed = 0;
		if (o->present && probe_leaver_lock(o, &f, &how) == PROBE_YES)
			printf("leavers: cannot bind: %s\n", sbuf_str(&how));
		else if (o->present)
			fprintf(stderr, "%s: warning: %s:%u:%u: %s: %s\n", ctx->prog, m->path, o->terminated_at.line,
			        o->terminated_at.column, o->terminated_at.key, sbuf_str(&how));
		sbuf_reset(&how);
		probe_references(lw, m, &f, &how, &err, &failed, &worth);
		if (failed) {
			fprintf(stderr, "%s: directory: looking for references to the managed entries: %s\n", ctx->prog, err.text);
			rc = -1;
		} else if (worth) {
			printf("references: %s\n", sbuf_str(&how));
		}
		sbuf_reset(&how);
		if (o->present && o->password_length) {
			probe_passwords(o, cfg, &how);
			printf("initial passwords: %s\n", sbuf_str(&how));
		}
	}
	fflush(stdout);
	probe_facts_free(&f);
	sbuf_free(&how);
	return rc;
}

/* The mapping against the directory: its schema (classes, attributes, MUST
 * attributes, the key's equality rule) and its bases; each problem at its
 * place in the mapping file. */
static int check_mapping_online(struct cli_ctx *ctx, const struct config *cfg, const struct mapping *m,
                                struct ldapw *lw)
{
	struct schema *s = NULL;
	struct ldapw_error err;
	struct diag d;
	int rc = 0;

	diag_init(&d);
	if (schema_read(lw, &s, &err) != 0) {
		fprintf(stderr, "%s: directory %s: cannot read its schema: %s\n", ctx->prog, cfg->ldap.uri, err.text);
		rc = -1;
		goto cleanup;
	}
	schema_check(s, m, &d);
	for (int k = 0; k < 2; k++) {
		const struct mapping_object *o = &m->obj[k];
		if (!o->present)
			continue;
		check_dn(lw, cfg, m, o->base, &o->base_at, &d);
		if (o->search_base && o->base && strcmp(o->search_base, o->base) != 0)
			check_dn(lw, cfg, m, o->search_base, &o->search_base_at, &d);
		check_dn(lw, cfg, m, o->move_to, &o->move_to_at, &d);
	}
	for (size_t i = 0; i < m->ngroups; i++) /* the agent makes a rule's groups, not where they go */
		check_dn(lw, cfg, m, m->groups[i].parent, &m->groups[i].at, &d);
	if (d.n) {
		diag_print(&d, stderr);
		rc = -1;
	} else {
		printf("mapping %s: ok against the directory (schema, bases)\n", m->path);
	}
	fflush(stdout);
	if (check_server(ctx, cfg, m, lw, s) < 0)
		rc = -1;
cleanup:
	schema_free(s);
	diag_free(&d);
	return rc;
}

/* With base given as a template: the bases today's employees would be placed
 * under, each said to exist or not (a missing one is an error unless
 * create_bases makes it). */
static int check_needed_bases(struct cli_ctx *ctx, const struct config *cfg, const struct mapping *m,
                              struct ldapw *lw, struct factorial *api)
{
	static const char *const none[] = { "1.1", NULL };
	const struct mapping_object *o = &m->obj[MAPPING_EMPLOYEE];
	cJSON *all = cJSON_CreateArray(), *e;
	struct strmap bases;
	struct vlist order;
	struct sbuf err;
	char today[16], count[32];
	int rc = 0;

	strmap_init(&bases);
	vlist_init(&order);
	sbuf_init(&err);
	clock_today(today, sizeof(today));
	if (!all || factorial_list(api, "employees/employees", NULL, factorial_collect, all, &err) < 0) {
		fprintf(stderr, "%s: Factorial API %s: listing employees: %s\n", ctx->prog, cfg->factorial.base_url,
		        sbuf_str(&err));
		rc = -1;
		goto cleanup;
	}
	cJSON_ArrayForEach(e, all)
	{
		struct mapping_hooks h = { .today = today };
		struct mapping_result r;
		if (mapping_eval(m, MAPPING_EMPLOYEE, e, &h, &r) == 0 && r.state == MAPPING_ACTIVE && r.base) {
			const char *n = strmap_get(&bases, r.base);
			snprintf(count, sizeof(count), "%ld", n ? atol(n) + 1 : 1L);
			if (!n)
				vlist_push_copy(&order, r.base, strlen(r.base));
			strmap_put(&bases, r.base, count);
		}
		mapping_result_free(&r);
	}
	for (size_t i = 0; i < order.n; i++) {
		struct ldapw_entries found;
		struct ldapw_error le;
		long people = atol(strmap_get(&bases, order.v[i]));
		if (ldapw_read(lw, order.v[i], none, &found, &le) != 0) {
			fprintf(stderr, "%s: base %s: %s\n", ctx->prog, order.v[i], le.text);
			rc = -1;
		} else if (found.n) {
			printf("base %s: %ld %s, exists\n", order.v[i], people, people == 1 ? "person" : "people");
		} else if (o->create_bases) {
			printf("base %s: %ld %s, missing (create_bases makes it when the first one is applied)\n", order.v[i],
			       people, people == 1 ? "person" : "people");
		} else {
			fprintf(stderr, "%s: %s:%u:%u: %s: %s does not exist, and %ld %s would be placed there (make it, or set "
			        "create_bases: true)\n",
			        ctx->prog, m->path, o->base_at.line, o->base_at.column, o->base_at.key, order.v[i], people,
			        people == 1 ? "person" : "people");
			rc = -1;
		}
		ldapw_entries_free(&found);
	}
cleanup:
	cJSON_Delete(all);
	strmap_free(&bases);
	vlist_free(&order);
	sbuf_free(&err);
	return rc;
}

/* Each family of records the configuration and the mapping make the agent
 * read, asked for one record: a 403 names what the token lacks (an OAuth
 * app's scope) and what needs it.  -1 when one is refused. */
static int check_reads(struct cli_ctx *ctx, const struct config *cfg, const struct mapping *m, struct factorial *api)
{
	const struct mapping_object *e = &m->obj[MAPPING_EMPLOYEE];
	unsigned rel = related_needs(m);
	const struct {
		const char *path, *why;
		bool needed;
	} reads[] = {
		{ "employees/employees", "sync, and enrichment", e->present },
		{ "teams/teams", "the teams' groups", m->obj[MAPPING_TEAM].present || mapping_uses_field(m, MAPPING_EMPLOYEE, "team_ids") },
		{ "contracts/contract_versions", "job_title", mapping_uses_field(m, MAPPING_EMPLOYEE, "job_title") },
		{ "locations/locations", "{location.*} in the mapping", (rel & RELATED_LOCATIONS) != 0 },
		{ "companies/legal_entities", "{legal_entity.*} in the mapping", (rel & RELATED_LEGAL_ENTITIES) != 0 },
	};
	int rc = 0;

	for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++) {
		struct factorial_answer a = { 0 };
		struct sbuf err;
		const char *what, *scope;
		if (!reads[i].needed)
			continue;
		sbuf_init(&err);
		scope = factorial_scope_of(reads[i].path, &what);
		if (factorial_call(api, "GET", reads[i].path, "limit=1", NULL, &a, &err) < 0) {
			fprintf(stderr, "%s: Factorial API %s: %s\n", ctx->prog, cfg->factorial.base_url, sbuf_str(&err));
			rc = -1;
		} else if (a.status == 403) {
			fprintf(stderr, "%s: Factorial API %s: the token may not read %s, which %s needs: %s\n", ctx->prog,
			        cfg->factorial.base_url, what, reads[i].why,
			        cfg->factorial.oauth ? "give the OAuth app that scope" : "an API key should have it");
			fprintf(stderr, "%s: (the OAuth scope: %s)\n", ctx->prog, scope);
			rc = -1;
		} else if (a.status != 200) {
			fprintf(stderr, "%s: Factorial API %s: GET %s: HTTP %ld\n", ctx->prog, cfg->factorial.base_url,
			        reads[i].path, a.status);
			rc = -1;
		}
		factorial_answer_free(&a);
		sbuf_free(&err);
	}
	return rc;
}

/* check --online: a bind to the directory and a call to the API, each ok or its exact failure. */
static int check_online(struct cli_ctx *ctx, const struct config *cfg, const struct mapping *m)
{
	struct ldapw *lw = NULL;
	struct factorial *api = NULL;
	struct factorial_answer ans = { 0 };
	struct sbuf err;
	char q[64];
	int rc = 0;

	sbuf_init(&err);
	fflush(stdout);
	if (cli_open_directory(ctx, cfg, "directory ", &lw) < 0) {
		rc = -1;
	} else {
		printf("directory %s: ok (bound %s%s)\n", cfg->ldap.uri, cfg->ldap.sasl_mech ? "with SASL " : "as ",
		       cfg->ldap.sasl_mech ? cfg->ldap.sasl_mech : cfg->ldap.bind_dn ? cfg->ldap.bind_dn : "anonymously");
		fflush(stdout);
		if (check_mapping_online(ctx, cfg, m, lw) < 0)
			rc = -1;
	}
	snprintf(q, sizeof(q), "company_id=%lld&limit=1", cfg->factorial.company_id);
	if (factorial_open(cfg, &api, &err) < 0 ||
	    factorial_call(api, "GET", "api_public/webhook_subscriptions", q, NULL, &ans, &err) < 0) {
		fprintf(stderr, "%s: Factorial API %s: %s\n", ctx->prog, cfg->factorial.base_url, sbuf_str(&err));
		rc = -1;
	} else if (ans.status != 200) {
		fprintf(stderr, "%s: Factorial API %s: HTTP %ld%s\n", ctx->prog, cfg->factorial.base_url, ans.status,
		        ans.status == 401 || ans.status == 403
		                ? ": the API refused the credentials (check factorial.api_key_file or the oauth block)"
		                : "");
		rc = -1;
	} else {
		printf("Factorial API %s: ok (version %s, company %lld)\n", cfg->factorial.base_url,
		       cfg->factorial.api_version, cfg->factorial.company_id);
		fflush(stdout);
		if (check_reads(ctx, cfg, m, api) < 0)
			rc = -1;
		if (lw && m->obj[MAPPING_EMPLOYEE].base_tmpl && check_needed_bases(ctx, cfg, m, lw, api) < 0)
			rc = -1;
	}
	fflush(stdout);
	factorial_answer_free(&ans);
	factorial_close(api);
	ldapw_close(lw);
	sbuf_free(&err);
	return rc;
}

int cli_cmd_check(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "online", no_argument, NULL, 'o' },
		{ "fixtures", required_argument, NULL, 'f' },
		{ "mapping", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char use[] = "Usage: %s check [--online] [--fixtures DIR] [-m MAPPING]\n";
	struct config *cfg = NULL;
	struct mapping *m = NULL;
	const char *fixtures = NULL, *mapping_path = NULL;
	int online = 0;
	int rc = CLI_USAGE;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hm:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			online = 1;
			break;
		case 'f':
			fixtures = optarg;
			break;
		case 'm':
			mapping_path = optarg;
			break;
		case 'h':
			printf(use, ctx->prog);
			return CLI_OK;
		default:
			fprintf(stderr, use, ctx->prog);
			return CLI_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: check: unexpected argument \"%s\"\n", ctx->prog, argv[optind]);
		return CLI_USAGE;
	}
	if (mapping_path && online) {
		fprintf(stderr, "%s: check: --online needs the configuration, not -m\n", ctx->prog);
		return CLI_USAGE;
	}
	if (!mapping_path) {
		if (cli_load_config(ctx, &cfg) < 0)
			goto cleanup;
		mapping_path = cfg->mapping;
	}
	if (cli_load_mapping(mapping_path, &m) < 0)
		goto cleanup;
	if (cfg)
		printf("configuration ok\n");
	else /* -m: the mapping alone */
		printf("mapping %s: ok (no configuration checked)\n", mapping_path);
	rc = CLI_OK;
	if (online && check_online(ctx, cfg, m) < 0)
		rc = CLI_FAIL;
	if (fixtures) {
		struct sbuf err;
		char today[16];
		int frc;
		sbuf_init(&err);
		clock_today(today, sizeof(today));
		fflush(stdout);
		frc = render_fixtures(m, fixtures, today, stdout, &err);
		if (frc < 0)
			fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
		rc = frc == 0 ? CLI_OK : CLI_FAIL;
		sbuf_free(&err);
	}
cleanup:
	mapping_free(m);
	config_free(cfg);
	return rc;
}
