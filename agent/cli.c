#include "build.h"

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

struct cli_ctx {
	const char *config_path;
	const char *prog;
};

struct command {
	const char *name;
	int (*run)(struct cli_ctx *ctx, int argc, char **argv);
	const char *usage;
	const char *summary;
};

static int cmd_check(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_render(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_apply(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_queue(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_subscriptions(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_sync(struct cli_ctx *ctx, int argc, char **argv);

static const struct command commands[] = {
	{ "run", cmd_run, "run", "serve webhooks, apply them, keep subscriptions healthy" },
	{ "check", cmd_check, "check [--online] [--fixtures DIR]",
	  "validate config and mapping; --online also binds to LDAP and calls the API;\n"
	  "                                     --fixtures renders each DIR/NAME.json and diffs it with DIR/NAME.ldif;\n"
	  "                                     -m MAPPING checks a mapping (and fixtures) without a config" },
	{ "render", cmd_render, "render [-m MAPPING] [--kind employee|team] [--related DIR] FILE...",
	  "offline: print the entry each JSON record maps to, as LDIF content records\n"
	  "                                     (--related: where locations.json and legal_entities.json are)" },
	{ "apply", cmd_apply, "apply [--dry-run] --event TYPE FILE|-",
	  "handle one delivery body as if it arrived for subscription TYPE" },
	{ "sync", cmd_sync, "sync [--dry-run] [--employee ID] [--force] [--verbose]",
	  "reconcile the directory with the Factorial API" },
	{ "subscriptions", cmd_subscriptions, "subscriptions list | sync [--dry-run] | delete [--dry-run | --yes]",
	  "list, register or remove this agent's webhook subscriptions" },
	{ "queue", cmd_queue, "queue list [--json] | retry [ID] | drop ID",
	  "inspect the queue; replay deliveries that failed for good\n"
	  "                                     (retry --force: also those the deletion guard held)" },
	{ NULL, NULL, NULL, NULL },
};

static void usage(FILE *fp)
{
	fprintf(fp,
	        "Usage: " PACKAGE_NAME " [-c FILE] COMMAND [ARGS]\n"
	        "Keeps an LDAP directory in step with Factorial HR.\n"
	        "\n"
	        "Options:\n"
	        "  -c, --config FILE                  the agent configuration (default: %s)\n"
	        "  -h, --help                         show this help and exit\n"
	        "  -V, --version                      show the version and exit\n"
	        "\n"
	        "Commands:\n",
	        CONFIG_DEFAULT_PATH);
	for (const struct command *c = commands; c->name; c++) {
		if (strlen(c->usage) > 34)
			fprintf(fp, "  %s\n  %-34s %s\n", c->usage, "", c->summary);
		else
			fprintf(fp, "  %-34s %s\n", c->usage, c->summary);
	}
	fprintf(fp,
	        "\n"
	        "Exit status: 0 done; 1 a runtime failure (directory or API unreachable, a change\n"
	        "refused); 2 bad usage, invalid configuration or mapping.\n"
	        "See factorial-ldap-agent(8), README.md and the docs/ folder.\n");
}

/* Connects and binds; a failure is printed as "PREFIXURI: bind as DN: reason". */
static int open_directory(struct cli_ctx *ctx, const struct config *cfg, const char *prefix, struct ldapw **lw)
{
	struct ldapw_error le;
	bool bind = false;

	if (ldapw_open(cfg, lw, &le) == 0)
		return 0;
	bind = cfg->ldap.bind_dn && strcmp(le.op, "bind") == 0;
	fprintf(stderr, "%s: %s%s: %s%s%s: %s\n", ctx->prog, prefix, cfg->ldap.uri, le.op, bind ? " as " : "",
	        bind ? cfg->ldap.bind_dn : "", le.text);
	return -1;
}

/* Opens the state store: read-only for a dry run (which writes nothing). */
static int open_state(struct cli_ctx *ctx, const struct config *cfg, bool dry_run, struct store **st)
{
	struct sbuf err;
	int rc;

	sbuf_init(&err);
	rc = dry_run ? store_open_readonly(cfg->state_dir, st, &err) : store_open(cfg->state_dir, st, &err);
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
	sbuf_free(&err);
	return rc;
}

/* Prints each line of text on stderr after the program name. */
static void print_lines(struct cli_ctx *ctx, const char *text)
{
	for (const char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		fprintf(stderr, "%s: %.*s\n", ctx->prog, nl ? (int)(nl - line) : (int)strlen(line), line);
	}
}

static int load_config(struct cli_ctx *ctx, struct config **cfg)
{
	struct diag d;
	int rc;

	diag_init(&d);
	rc = config_load(ctx->config_path, cfg, &d);
	if (rc < 0)
		diag_print(&d, stderr);
	diag_free(&d);
	return rc;
}

static int load_mapping(const char *path, struct mapping **m)
{
	struct diag d;
	int rc;

	diag_init(&d);
	rc = mapping_load(path, m, &d);
	if (rc < 0)
		diag_print(&d, stderr);
	diag_free(&d);
	return rc;
}

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
	if (open_directory(ctx, cfg, "directory ", &lw) < 0) {
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

static int cmd_check(struct cli_ctx *ctx, int argc, char **argv)
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
		if (load_config(ctx, &cfg) < 0)
			goto cleanup;
		mapping_path = cfg->mapping;
	}
	if (load_mapping(mapping_path, &m) < 0)
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

/* render's options: 0, or -1 with the usage printed (*rc CLI_OK after --help). */
/* What render was asked. */
struct render_args {
	const char *mapping_path; /* -m, or NULL: the configuration's */
	enum mapping_kind kind;
	const char *related_dir;  /* --related, or NULL: each FILE's folder */
};

/* render's options: -1 and usage printed (or *rc CLI_OK after --help), 0 with the FILEs from optind. */
static int render_options(struct cli_ctx *ctx, int argc, char **argv, struct render_args *ra, int *rc)
{
	static const struct option opts[] = {
		{ "mapping", required_argument, NULL, 'm' },
		{ "kind", required_argument, NULL, 'k' },
		{ "related", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char use[] = "Usage: %s render [-m MAPPING] [--kind employee|team] [--related DIR] FILE...\n";
	int c;

	*rc = CLI_USAGE;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hm:k:r:", opts, NULL)) != -1) {
		if (c == 'm') {
			ra->mapping_path = optarg;
		} else if (c == 'r') {
			ra->related_dir = optarg;
		} else if (c == 'k' && (strcmp(optarg, "employee") == 0 || strcmp(optarg, "team") == 0)) {
			ra->kind = strcmp(optarg, "team") == 0 ? MAPPING_TEAM : MAPPING_EMPLOYEE;
		} else if (c == 'k') {
			fprintf(stderr, "%s: render: --kind must be employee or team, not \"%s\"\n", ctx->prog, optarg);
			return -1;
		} else {
			fprintf(c == 'h' ? stdout : stderr, use, ctx->prog);
			*rc = c == 'h' ? CLI_OK : CLI_USAGE;
			return -1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: render: give at least one FILE (- for standard input)\n", ctx->prog);
		return -1;
	}
	return 0;
}

/* The related records a mapping reads, offline: from --related DIR, else from
 * the folder of file (the current one for standard input).  0 and *rel (NULL
 * when the mapping reads none), or -1 (said). */
static int render_related(struct cli_ctx *ctx, const struct mapping *m, const struct render_args *ra,
                          const char *file, struct related **rel)
{
	unsigned need = related_needs(m);
	char *copy = NULL;
	const char *dir = ra->related_dir;
	struct sbuf err;
	int rc = 0;

	*rel = NULL;
	if (!need)
		return 0;
	sbuf_init(&err);
	if (!dir)
		dir = strcmp(file, "-") == 0 || !(copy = strdup(file)) ? "." : dirname(copy);
	if (related_load_files(dir, need, rel, &err) < 0) {
		fprintf(stderr, "%s: render: %s\n", ctx->prog, sbuf_str(&err));
		rc = -1;
	}
	free(copy);
	sbuf_free(&err);
	return rc;
}

/* Renders one FILE, printing its entries and its records' mistakes; false when it could not be read. */
static bool render_file(struct cli_ctx *ctx, const struct mapping *m, const struct render_args *ra, const char *file,
                        const char *today, struct sbuf *out, struct sbuf *errs, struct render_stats *st)
{
	struct related *rel = NULL;
	struct sbuf err;
	cJSON *json = NULL;

	sbuf_init(&err);
	if (render_related(ctx, m, ra, file, &rel) < 0)
		goto cleanup;
	json = render_read_json(file, &err);
	if (!json)
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
	else
		render_batch(m, rel, ra->kind, json, today, out, errs, st);
	fwrite(sbuf_str(out), 1, out->len, stdout);
	sbuf_reset(out);
	if (errs->len) {
		/* one line per failed record, each with the program name */
		print_lines(ctx, sbuf_str(errs));
		sbuf_reset(errs);
	}
cleanup:
	cJSON_Delete(json);
	related_free(rel);
	sbuf_free(&err);
	return json != NULL;
}

static int cmd_render(struct cli_ctx *ctx, int argc, char **argv)
{
	struct config *cfg = NULL;
	struct mapping *m = NULL;
	struct render_args ra = { .kind = MAPPING_EMPLOYEE };
	struct render_stats st = { 0 };
	struct sbuf out, errs;
	char today[16];
	bool file_failed = false;
	int rc = CLI_USAGE;

	sbuf_init(&out);
	sbuf_init(&errs);
	if (render_options(ctx, argc, argv, &ra, &rc) < 0)
		goto cleanup;
	if (!ra.mapping_path) {
		if (load_config(ctx, &cfg) < 0)
			goto cleanup;
		ra.mapping_path = cfg->mapping;
	}
	if (load_mapping(ra.mapping_path, &m) < 0)
		goto cleanup;
	if (!m->obj[ra.kind].present) {
		fprintf(stderr, "%s: render: %s has no %s section\n", ctx->prog, ra.mapping_path,
		        ra.kind == MAPPING_TEAM ? "teams" : "employees");
		goto cleanup;
	}
	clock_today(today, sizeof(today));
	for (int i = optind; i < argc; i++)
		if (!render_file(ctx, m, &ra, argv[i], today, &out, &errs, &st))
			file_failed = true;
	if (fflush(stdout) != 0 || out.failed || errs.failed) {
		fprintf(stderr, "%s: render: cannot write the output\n", ctx->prog);
		rc = CLI_FAIL;
		goto cleanup;
	}
	rc = (st.failed || file_failed) ? CLI_FAIL : CLI_OK;
cleanup:
	sbuf_free(&out);
	sbuf_free(&errs);
	mapping_free(m);
	config_free(cfg);
	return rc;
}

/* apply's options: -1 and usage printed (or *rc CLI_OK after --help), 0 with type and file. */
static int apply_options(struct cli_ctx *ctx, int argc, char **argv, bool *dry_run, const char **type,
                         const char **file, int *rc)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "event", required_argument, NULL, 'e' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char use[] = "Usage: %s apply [--dry-run] --event TYPE FILE|-\n";
	int c;

	*rc = CLI_USAGE;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hne:", opts, NULL)) != -1) {
		if (c == 'n') {
			*dry_run = true;
		} else if (c == 'e') {
			*type = optarg;
		} else {
			fprintf(c == 'h' ? stdout : stderr, use, ctx->prog);
			*rc = c == 'h' ? CLI_OK : CLI_USAGE;
			return -1;
		}
	}
	if (!*type || optind != argc - 1) {
		fprintf(stderr, use, ctx->prog);
		return -1;
	}
	if (!event_find(*type)) {
		fprintf(stderr, "%s: apply: \"%s\" is not a subscription type the agent handles:\n", ctx->prog, *type);
		for (const struct event_type *t = event_types; t->name; t++)
			fprintf(stderr, "  %s\n", t->name);
		return -1;
	}
	*file = argv[optind];
	return 0;
}

/* Prints what apply made (the LDIF of a dry run) and the summary; 0 or CLI_FAIL. */
static int apply_output(struct cli_ctx *ctx, const struct apply_ctx *a, const struct sbuf *ldif)
{
	struct sbuf summary;

	fwrite(sbuf_str(ldif), 1, ldif->len, stdout);
	if (fflush(stdout) != 0 || ldif->failed) {
		fprintf(stderr, "%s: apply: cannot write the output\n", ctx->prog);
		return CLI_FAIL;
	}
	sbuf_init(&summary);
	apply_summary_line(a, 0, &summary);
	fprintf(stderr, "%s\n", sbuf_str(&summary));
	sbuf_free(&summary);
	return CLI_OK;
}

static int cmd_apply(struct cli_ctx *ctx, int argc, char **argv)
{
	struct apply_ctx a = { 0 };
	struct config *cfg = NULL;
	struct mapping *m = NULL;
	struct ldapw *lw = NULL;
	struct store *st = NULL;
	struct factorial *api = NULL;
	struct related *rel = NULL;
	unsigned need;
	struct sbuf err, ldif;
	const char *type = NULL, *file = NULL;
	cJSON *body = NULL;
	char today[16];
	bool dry_run = false;
	int rc = CLI_USAGE;

	sbuf_init(&err);
	sbuf_init(&ldif);
	if (apply_options(ctx, argc, argv, &dry_run, &type, &file, &rc) < 0 || load_config(ctx, &cfg) < 0 ||
	    load_mapping(cfg->mapping, &m) < 0)
		goto cleanup;
	log_setup((enum log_level)cfg->log.level, LOG_TARGET_STDERR, false);
	rc = CLI_FAIL;
	need = related_needs(m);
	if (!(body = render_read_json(file, &err)) || factorial_open(cfg, &api, &err) < 0 ||
	    (need && related_load_api(api, need, &rel, &err) < 0)) {
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
		goto cleanup;
	}
	if (open_directory(ctx, cfg, "", &lw) < 0 || open_state(ctx, cfg, dry_run, &st) < 0)
		goto cleanup;
	clock_today(today, sizeof(today));
	a = (struct apply_ctx){ .m = m, .lw = lw, .st = dry_run ? NULL : st, .state = st, .dry_run = dry_run,
		                .today = today, .ldif = &ldif, .api = cfg->factorial.enrich ? api : NULL,
		                .reader = api, .related = rel, .related_complete = true };
	if (apply_delivery(&a, type, body, &err) < 0) {
		fwrite(sbuf_str(&ldif), 1, ldif.len, stdout);
		fflush(stdout);
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
		goto cleanup;
	}
	rc = apply_output(ctx, &a, &ldif);
cleanup:
	cJSON_Delete(body);
	related_free(rel);
	store_close(st);
	ldapw_close(lw);
	factorial_close(api);
	mapping_free(m);
	config_free(cfg);
	sbuf_free(&err);
	sbuf_free(&ldif);
	return rc;
}

static int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc > 1) {
		if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
			printf("Usage: %s [-c FILE] run\n", ctx->prog);
			return CLI_OK;
		}
		fprintf(stderr, "%s: run: unexpected argument \"%s\"\n", ctx->prog, argv[1]);
		return CLI_USAGE;
	}
	return agentd_run(ctx->config_path);
}

static int parse_id(const char *s, int64_t *id)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v <= 0)
		return -1;
	*id = v;
	return 0;
}

/* After queue retry: whether a running agent takes the deliveries now. */
static void say_who_applies(struct cli_ctx *ctx, const char *state_dir)
{
	struct statedir_holder h;
	struct sbuf err;
	char who[64];
	int held;

	sbuf_init(&err);
	held = statedir_held(state_dir, &h, &err);
	statedir_holder_text(&h, who, sizeof(who));
	if (held == 1 && strcmp(h.command, "run") == 0)
		fprintf(stderr, "%s: queue retry: the agent running as %s applies them now\n", ctx->prog, who);
	else if (held == 0)
		fprintf(stderr, "%s: queue retry: no agent is running on %s: they are applied when `run` starts\n",
		        ctx->prog, state_dir);
	sbuf_free(&err);
}

/* What `queue ACTION` was asked. */
struct queue_args {
	const char *action;
	int64_t id;
	bool force;
	bool json;
	const char *state_dir;
};

/* One row of `queue list`: a table line, or an object of the --json array. */
struct listing {
	bool json;
	cJSON *rows;
	struct sbuf out;
};

/* What a pending delivery is doing, in words. */
static void pending_reason(const struct queue_row *r, char *buf, size_t len)
{
	char when[32] = "";

	if (r->next_attempt > 0) {
		time_t t = (time_t)r->next_attempt;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	if (r->waiting_on)
		snprintf(buf, len, "waits for %s", r->waiting_on);
	else if (r->attempts && *when)
		snprintf(buf, len, "next attempt %s: %s", when, r->last_error ? r->last_error : "");
	else
		snprintf(buf, len, "due");
}

static int list_row(void *ctx, const struct queue_row *r)
{
	struct listing *l = ctx;
	char reason[1200];
	bool pending = strcmp(r->state, "pending") == 0;

	if (pending)
		pending_reason(r, reason, sizeof(reason));
	else
		snprintf(reason, sizeof(reason), "%s", r->last_error ? r->last_error : "");
	if (l->json) {
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(l->rows, o))
			return (cJSON_Delete(o), -1);
		cJSON_AddNumberToObject(o, "id", (double)r->id);
		cJSON_AddStringToObject(o, "state", r->state);
		cJSON_AddStringToObject(o, "type", r->type);
		cJSON_AddStringToObject(o, "record", r->record_key);
		cJSON_AddNumberToObject(o, "attempts", r->attempts);
		cJSON_AddStringToObject(o, "received", r->received);
		cJSON_AddStringToObject(o, "reason", reason);
		if (r->waiting_on)
			cJSON_AddStringToObject(o, "waiting_on", r->waiting_on);
		return 0;
	}
	sbuf_addf(&l->out, "%-6lld  %-7s  %-24s  %-42s  %-8d  %s: %s\n", (long long)r->id, r->state, r->received, r->type,
	          r->attempts, r->record_key, reason);
	return 0;
}

static int queue_do_list(struct cli_ctx *ctx, struct queue *q, const struct queue_args *qa, struct sbuf *err)
{
	struct listing l = { .json = qa->json };
	long pending, dead, held;
	cJSON *doc = NULL;
	char *text = NULL;
	int rc = -1;

	(void)ctx;
	sbuf_init(&l.out);
	if (queue_counts(q, &pending, &dead, &held, err) < 0)
		goto cleanup;
	if (l.json) {
		cJSON *counts;
		if (!(doc = cJSON_CreateObject()) || !(counts = cJSON_AddObjectToObject(doc, "counts")) ||
		    !(l.rows = cJSON_AddArrayToObject(doc, "deliveries")))
			goto cleanup;
		cJSON_AddNumberToObject(counts, "pending", (double)pending);
		cJSON_AddNumberToObject(counts, "held", (double)held);
		cJSON_AddNumberToObject(counts, "dead", (double)dead);
	} else {
		sbuf_addf(&l.out, "%ld pending, %ld held, %ld dead\n", pending, held, dead);
		if (pending || held || dead)
			sbuf_addf(&l.out, "%-6s  %-7s  %-24s  %-42s  %-8s  %s\n", "ID", "STATE", "RECEIVED", "TYPE",
			          "ATTEMPTS", "RECORD: REASON");
	}
	if (queue_rows(q, list_row, &l, err) != 0)
		goto cleanup;
	if (l.json && !(text = cJSON_Print(doc)))
		goto cleanup;
	fputs(l.json ? text : sbuf_str(&l.out), stdout);
	if (l.json)
		fputc('\n', stdout);
	rc = CLI_OK;
cleanup:
	if (rc < 0 && !err->len)
		sbuf_adds(err, "queue list: out of memory");
	cJSON_free(text);
	cJSON_Delete(doc);
	sbuf_free(&l.out);
	return rc;
}

static int queue_do_retry(struct cli_ctx *ctx, struct queue *q, const struct queue_args *qa, struct sbuf *err)
{
	long n = queue_retry(q, qa->id, qa->force, err);

	if (n < 0)
		return -1;
	if (qa->id && n == 0) {
		fprintf(stderr, "%s: queue retry: no %s %lld\n", ctx->prog,
		        qa->force ? "dead letter or held delivery" : "dead letter (held deliveries need --force)",
		        (long long)qa->id);
		return CLI_FAIL;
	}
	printf("%ld deliver%s queued again\n", n, n == 1 ? "y" : "ies");
	if (n > 0)
		say_who_applies(ctx, qa->state_dir);
	return CLI_OK;
}

static int queue_do_drop(struct cli_ctx *ctx, struct queue *q, const struct queue_args *qa, struct sbuf *err)
{
	int n = queue_drop(q, qa->id, err);

	if (n < 0)
		return -1;
	if (n == 0) {
		fprintf(stderr, "%s: queue drop: no dead letter %lld\n", ctx->prog, (long long)qa->id);
		return CLI_FAIL;
	}
	printf("dead letter %lld dropped\n", (long long)qa->id);
	return CLI_OK;
}

static const struct {
	const char *name;
	bool takes_id;  /* an ID may follow */
	bool needs_id;  /* ... and must */
	bool takes_force;
	bool takes_json;
	int (*run)(struct cli_ctx *ctx, struct queue *q, const struct queue_args *qa, struct sbuf *err);
} queue_actions[] = {
	{ "list", false, false, false, true, queue_do_list },
	{ "retry", true, false, true, false, queue_do_retry },
	{ "drop", true, true, false, false, queue_do_drop },
	{ NULL, false, false, false, false, NULL },
};

static int cmd_queue(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char use[] = "Usage: %s queue list [--json] | retry [ID] | drop ID\n"
	                          "       (retry --force [ID]: also deliveries the deletion guard held)\n";
	struct queue_args qa = { .action = argc > 1 ? argv[1] : "" };
	struct config *cfg = NULL;
	struct queue *q = NULL;
	const char *idarg = NULL;
	struct sbuf err;
	size_t k;
	int rc = CLI_USAGE;
	bool bad = false;

	sbuf_init(&err);
	for (k = 0; queue_actions[k].name && strcmp(queue_actions[k].name, qa.action) != 0; k++)
		;
	for (int i = 2; queue_actions[k].name && i < argc; i++) {
		if (queue_actions[k].takes_force && strcmp(argv[i], "--force") == 0 && !qa.force)
			qa.force = true;
		else if (queue_actions[k].takes_json && strcmp(argv[i], "--json") == 0 && !qa.json)
			qa.json = true;
		else if (queue_actions[k].takes_id && !idarg && argv[i][0] != '-')
			idarg = argv[i];
		else
			bad = true;
	}
	if (!queue_actions[k].name || bad || (queue_actions[k].needs_id && !idarg)) {
		fprintf(stderr, use, ctx->prog);
		goto cleanup;
	}
	if (idarg && parse_id(idarg, &qa.id) < 0) {
		fprintf(stderr, "%s: queue %s: \"%s\" is not a delivery id\n", ctx->prog, qa.action, idarg);
		goto cleanup;
	}
	if (load_config(ctx, &cfg) < 0)
		goto cleanup;
	qa.state_dir = cfg->state_dir;
	rc = queue_open(cfg->state_dir, &q, &err) < 0 ? -1 : queue_actions[k].run(ctx, q, &qa, &err);
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
		rc = CLI_FAIL;
	}
cleanup:
	queue_close(q);
	config_free(cfg);
	sbuf_free(&err);
	return rc;
}

/* subscriptions delete without --yes: the dry run is shown, and a person at a
 * terminal says yes; true to go on.  Without a terminal nothing is asked. */
static bool confirm_delete(struct cli_ctx *ctx, struct factorial *api, const struct config *cfg, struct sbuf *err)
{
	struct subscriptions_result res;
	struct sbuf out;
	char answer[16] = "";
	bool yes = false;

	if (!isatty(STDIN_FILENO)) {
		fprintf(stderr, "%s: subscriptions delete: give --yes to delete without being asked, or --dry-run to see "
		        "what would go\n", ctx->prog);
		return false;
	}
	sbuf_init(&out);
	if (subscriptions_delete(api, cfg, true, &out, &res, err) == 0) {
		fputs(sbuf_str(&out), stdout);
		if (res.deleted == 0) {
			sbuf_free(&out);
			return true; /* nothing to ask about */
		}
		printf("Delete these %u subscriptions? Factorial stops sending their deliveries. [y/N] ", res.deleted);
		fflush(stdout);
		yes = fgets(answer, sizeof(answer), stdin) && (answer[0] == 'y' || answer[0] == 'Y');
		if (!yes)
			printf("nothing deleted\n");
	}
	sbuf_free(&out);
	return yes;
}

static int cmd_subscriptions(struct cli_ctx *ctx, int argc, char **argv)
{
	static const char use[] = "Usage: %s subscriptions list | sync [--dry-run] | delete [--dry-run | --yes]\n";
	struct subscriptions_result res;
	struct config *cfg = NULL;
	struct factorial *api = NULL;
	struct sbuf out, err;
	const char *what = argc > 1 ? argv[1] : "";
	bool dry_run = argc == 3 && strcmp(argv[2], "--dry-run") == 0;
	bool yes = argc == 3 && strcmp(argv[2], "--yes") == 0;
	int rc = CLI_USAGE, r;

	sbuf_init(&out);
	sbuf_init(&err);
	if (!((strcmp(what, "list") == 0 && argc == 2) || (strcmp(what, "delete") == 0 && (argc == 2 || dry_run || yes)) ||
	      (strcmp(what, "sync") == 0 && (argc == 2 || dry_run)))) {
		fprintf(stderr, use, ctx->prog);
		goto cleanup;
	}
	if (load_config(ctx, &cfg) < 0)
		goto cleanup;
	rc = CLI_FAIL;
	if (factorial_open(cfg, &api, &err) < 0) {
		fprintf(stderr, "%s: subscriptions %s: %s\n", ctx->prog, what, sbuf_str(&err));
		goto cleanup;
	}
	if (strcmp(what, "delete") == 0 && !dry_run && !yes && !confirm_delete(ctx, api, cfg, &err)) {
		if (err.len)
			fprintf(stderr, "%s: subscriptions delete: %s\n", ctx->prog, sbuf_str(&err));
		rc = err.len ? CLI_FAIL : isatty(STDIN_FILENO) ? CLI_OK : CLI_USAGE;
		goto cleanup;
	}
	if (strcmp(what, "list") == 0)
		r = subscriptions_list(api, cfg, &out, &err);
	else if (strcmp(what, "sync") == 0)
		r = subscriptions_sync(api, cfg, dry_run, &out, &res, &err);
	else
		r = subscriptions_delete(api, cfg, dry_run, &out, &res, &err);
	fputs(sbuf_str(&out), stdout);
	fflush(stdout);
	if (r < 0)
		fprintf(stderr, "%s: subscriptions %s: %s\n", ctx->prog, what, sbuf_str(&err));
	else
		rc = CLI_OK;
cleanup:
	factorial_close(api);
	config_free(cfg);
	sbuf_free(&out);
	sbuf_free(&err);
	return rc;
}

/* The signal that asked a running command to stop, 0 while none did. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

/* SIGINT and SIGTERM only set stop_signal: the command stops between operations. */
static void catch_stop_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop_signal, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* A real sync writes the directory and the store: one writer per state folder.
 * CLI_OK with *lock, or the exit code of the refusal. */
static int own_state(struct cli_ctx *ctx, const struct config *cfg, struct statedir_lock **lock)
{
	struct statedir_holder h;
	struct sbuf err;
	char who[64];
	int r;

	sbuf_init(&err);
	r = statedir_prepare(cfg->state_dir, &err) < 0 ? -1 : statedir_lock(cfg->state_dir, lock, &h, &err);
	if (r < 0)
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
	sbuf_free(&err);
	if (r <= 0)
		return r < 0 ? CLI_FAIL : CLI_OK;
	statedir_holder_text(&h, who, sizeof(who));
	if (strcmp(h.command, "run") == 0)
		fprintf(stderr,
		        "%s: sync: the agent running as %s owns the state folder %s and applies changes there; a second "
		        "writer would race it.  It reconciles by itself every sync.interval; to reconcile now, "
		        "kill -USR1 %ld (its log shows the outcome).  sync --dry-run works alongside it.\n",
		        ctx->prog, who, cfg->state_dir, (long)h.pid);
	else
		fprintf(stderr, "%s: sync: %s is using the state folder %s; wait until it ends, then sync again\n",
		        ctx->prog, who, cfg->state_dir);
	return CLI_FAIL;
}

/* The summary lines and the exit code of a sync. */
static int sync_report(struct cli_ctx *ctx, const struct reconcile_options *opt, int r,
                       const struct reconcile_report *rep, const struct sbuf *err)
{
	struct apply_ctx sumctx = { .dry_run = opt->dry_run, .sum = rep->sum };
	struct sbuf summary;

	if (r < 0) {
		fprintf(stderr, "%s: sync: %s\n", ctx->prog, sbuf_str(err));
		return CLI_FAIL;
	}
	sbuf_init(&summary);
	apply_summary_line(&sumctx, rep->record_errors, &summary);
	if (rep->interrupted)
		fprintf(stderr, "%s: sync: %s: stopped between two operations; what is listed was done, the rest was "
		                "not looked at\n",
		        ctx->prog, stop_signal == SIGTERM ? "SIGTERM" : "SIGINT");
	fprintf(stderr, "%ld employees read; %ld records checked, %ld differ%s", rep->employees, rep->checked,
	        rep->differing, opt->dry_run ? "" : "ed");
	if (rep->record_errors)
		fprintf(stderr, ", %ld failed", rep->record_errors);
	fprintf(stderr, "; %ld orphan%s%s%s\n", rep->orphans, rep->orphans == 1 ? "" : "s",
	        rep->guard_tripped ? ", the deletion guard held changes back" : "",
	        rep->interrupted ? " (interrupted)" : "");
	fprintf(stderr, "%s\n", sbuf_str(&summary));
	sbuf_free(&summary);
	if (rep->interrupted)
		return 128 + (stop_signal ? stop_signal : SIGINT);
	return r == 0 ? CLI_OK : CLI_FAIL;
}

/* sync on a terminal: one line kept up to date, cleared at the end. */
static void sync_progress(void *ctx, long checked, long total, double seconds, bool done)
{
	double rate = seconds > 0 ? (double)checked / seconds : 0;

	(void)ctx;
	if (done) {
		fputs("\r\033[K", stderr);
	} else if (total > 0 && rate > 0) {
		fprintf(stderr, "\r\033[Ksync: %ld of %ld employees read and checked (%.0f%%), %.0f/s, about %.0f s left",
		        checked, total, 100.0 * (double)checked / (double)total, rate,
		        (double)(total > checked ? total - checked : 0) / rate);
	} else {
		fprintf(stderr, "\r\033[Ksync: %ld employees read and checked, %.0f/s", checked, rate);
	}
	fflush(stderr);
}

/* sync's options: -1 and usage printed (or *rc CLI_OK after --help), 0 with opt filled. */
static int sync_options(struct cli_ctx *ctx, int argc, char **argv, struct reconcile_options *opt, int *rc)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "employee", required_argument, NULL, 'e' },
		{ "force", no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char use[] = "Usage: %s sync [--dry-run] [--employee ID] [--force] [--verbose]\n";
	int c;

	*rc = CLI_USAGE;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hne:fv", opts, NULL)) != -1) {
		if (c == 'n') {
			opt->dry_run = true;
		} else if (c == 'v') {
			opt->verbose = true;
		} else if (c == 'e') {
			opt->employee_id = optarg;
		} else if (c == 'f') {
			opt->force = true;
		} else {
			fprintf(c == 'h' ? stdout : stderr, use, ctx->prog);
			*rc = c == 'h' ? CLI_OK : CLI_USAGE;
			return -1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, use, ctx->prog);
		return -1;
	}
	return 0;
}

static int cmd_sync(struct cli_ctx *ctx, int argc, char **argv)
{
	struct reconcile_options opt = { .stop = &stop_signal };
	struct reconcile_report rep;
	struct config *cfg = NULL;
	struct mapping *m = NULL;
	struct ldapw *lw = NULL;
	struct store *st = NULL;
	struct statedir_lock *lock = NULL;
	struct factorial *api = NULL;
	struct sbuf err, ldif, report;
	int rc = CLI_USAGE, r;

	sbuf_init(&err);
	sbuf_init(&ldif);
	sbuf_init(&report);
	if (sync_options(ctx, argc, argv, &opt, &rc) < 0)
		goto cleanup;
	if (load_config(ctx, &cfg) < 0 || load_mapping(cfg->mapping, &m) < 0)
		goto cleanup;
	log_setup((enum log_level)cfg->log.level, LOG_TARGET_STDERR, false);
	rc = opt.dry_run ? CLI_OK : own_state(ctx, cfg, &lock);
	if (rc != CLI_OK)
		goto cleanup;
	rc = CLI_FAIL;
	if (factorial_open(cfg, &api, &err) < 0) {
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
		goto cleanup;
	}
	if (open_directory(ctx, cfg, "", &lw) < 0 || open_state(ctx, cfg, opt.dry_run, &st) < 0)
		goto cleanup;
	catch_stop_signals();
	if (isatty(STDERR_FILENO))
		opt.progress = sync_progress; /* not in a log or a pipe: those stay one line per event */
	r = reconcile_run(cfg, m, lw, api, st, &opt, &ldif, &report, &rep, &err);
	fwrite(sbuf_str(&ldif), 1, ldif.len, stdout);
	fflush(stdout);
	print_lines(ctx, report.s);
	rc = sync_report(ctx, &opt, r, &rep, &err);
cleanup:
	store_close(st);
	ldapw_close(lw);
	factorial_close(api);
	statedir_unlock(lock);
	mapping_free(m);
	config_free(cfg);
	sbuf_free(&err);
	sbuf_free(&ldif);
	sbuf_free(&report);
	return rc;
}

int cli_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli_ctx ctx = { .config_path = CONFIG_DEFAULT_PATH, .prog = PACKAGE_NAME };
	int c;

	log_setup(LOG_LVL_INFO, LOG_TARGET_STDERR, false);
	opterr = 1;
	while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			ctx.config_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return CLI_OK;
		case 'V':
			printf("%s %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return CLI_OK;
		default:
			usage(stderr);
			return CLI_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s: no command given\n\n", ctx.prog);
		usage(stderr);
		return CLI_USAGE;
	}
	for (const struct command *cmd = commands; cmd->name; cmd++) {
		if (strcmp(cmd->name, argv[optind]) == 0)
			return cmd->run(&ctx, argc - optind, argv + optind);
	}
	fprintf(stderr, "%s: unknown command \"%s\" (see %s --help)\n", ctx.prog, argv[optind], ctx.prog);
	return CLI_USAGE;
}
