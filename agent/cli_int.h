/*
 * cli_int: what the files of the command line share, and nothing outside
 * it includes.  cli.h is the module's face (cli_main()):
 *
 *   cli.c        the commands[] table, usage, what every command shares
 *                (configuration, mapping, directory, state), render, apply,
 *                run, subscriptions and sync
 *   cli_check.c  check: the configuration and mapping, and with --online the
 *                directory, the API and what the server does by itself
 *   cli_queue.c  queue list, retry and drop
 *
 * Memory: nothing outlives a command.
 */
#ifndef FLA_CLI_INT_H
#define FLA_CLI_INT_H

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

/* cli.c */
int cli_open_directory(struct cli_ctx *ctx, const struct config *cfg, const char *prefix, struct ldapw **lw);
int cli_load_config(struct cli_ctx *ctx, struct config **cfg);
int cli_load_mapping(const char *path, struct mapping **m);

/* cli_check.c */
int cli_cmd_check(struct cli_ctx *ctx, int argc, char **argv);

/* cli_queue.c */
int cli_cmd_queue(struct cli_ctx *ctx, int argc, char **argv);

#endif
