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

static int cmd_render(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_apply(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_subscriptions(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_sync(struct cli_ctx *ctx, int argc, char **argv);

static const struct command commands[] = {
	{ "run", cmd_run, "run", "serve webhooks, apply them, keep subscriptions healthy" },
	{ "check", cli_cmd_check, "check [--online] [--fixtures DIR]",
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
	{ "queue", cli_cmd_queue, "queue list [--json] | retry [ID] | drop ID",
	  "inspect the queue; replay deliveries that failed for good\n"
	  "                                     (retry --force: also those the deletion guard held)" },
	{ NULL, NULL, NULL, NULL },
};

/* ---- what every command shares ----------------------------------------------- */

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
int cli_open_directory(struct cli_ctx *ctx, const struct config *cfg, const char *prefix, struct ldapw **lw)
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

int cli_load_config(struct cli_ctx *ctx, struct config **cfg)
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

int cli_load_mapping(const char *path, struct mapping **m)
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
/* ---- render, apply and run --------------------------------------------------- */

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
		if (cli_load_config(ctx, &cfg) < 0)
			goto cleanup;
		ra.mapping_path = cfg->mapping;
	}
	if (cli_load_mapping(ra.mapping_path, &m) < 0)
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
	if (apply_options(ctx, argc, argv, &dry_run, &type, &file, &rc) < 0 || cli_load_config(ctx, &cfg) < 0 ||
	    cli_load_mapping(cfg->mapping, &m) < 0)
		goto cleanup;
	log_setup((enum log_level)cfg->log.level, LOG_TARGET_STDERR, false);
	rc = CLI_FAIL;
	need = related_needs(m);
	if (!(body = render_read_json(file, &err)) || factorial_open(cfg, &api, &err) < 0 ||
	    (need && related_load_api(api, need, &rel, &err) < 0)) {
		fprintf(stderr, "%s: %s\n", ctx->prog, sbuf_str(&err));
		goto cleanup;
	}
	if (cli_open_directory(ctx, cfg, "", &lw) < 0 || open_state(ctx, cfg, dry_run, &st) < 0)
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
/* ---- subscriptions and sync -------------------------------------------------- */

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
	if (cli_load_config(ctx, &cfg) < 0)
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
	if (cli_load_config(ctx, &cfg) < 0 || cli_load_mapping(cfg->mapping, &m) < 0)
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
	if (cli_open_directory(ctx, cfg, "", &lw) < 0 || open_state(ctx, cfg, opt.dry_run, &st) < 0)
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
