/*
 * cli_queue: queue list, retry and drop, and who applies what was queued
 * again.
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

/* ---- queue ------------------------------------------------------------------- */

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

int cli_cmd_queue(struct cli_ctx *ctx, int argc, char **argv)
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
	if (cli_load_config(ctx, &cfg) < 0)
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
