/*
 * agentd: `factorial-ldap-agent run`, the daemon.
 *
 * It wires the modules together: the HTTP endpoint (http), in a receiver
 * process of its own that holds no credentials and no file (receiverd.c),
 * checks each delivery and sends it to the daemon (wire), which checks it
 * again and commits it to the queue before the receiver answers 200
 * (intake.c); worker threads, each with its own directory connection
 * (ldapw) and store handles, take deliveries from the queue in arrival order
 * per record and apply them (apply); a connection failure pauses every
 * worker with exponential backoff and jitter, never dropping anything; a
 * record failure is retried, then kept as a dead letter.  A scheduler turns
 * terminations that have come due into deliveries.  GET /healthz and
 * GET /metrics answer on the same listener (or on webhooks.metrics_listen).
 *
 * Signals: SIGTERM and SIGINT stop accepting, let what is in flight finish
 * and return 0; SIGHUP reloads the configuration and the mapping, keeping
 * the running ones when the new ones have mistakes (which are logged).
 *
 * The daemon is split by role (daemon.h lists the parts): this file's
 * agentd_run() starts and stops it; receiver.c, intake.c, workers.c,
 * timers.c and monitor.c do the rest.
 *
 * Memory: agentd_run() owns everything it starts and releases all of it
 * before returning.
 */
#ifndef FLA_AGENTD_H
#define FLA_AGENTD_H

/* Runs until SIGTERM/SIGINT; returns the process exit code (0, 1, or 2 when
 * the configuration or mapping at start is invalid). */
int agentd_run(const char *config_path);

/* The receiver process (receiverd.c): the configuration path when this
 * process was started as one by `run`, else NULL; and its main, returning
 * the exit code. */
const char *receiverd_requested(void);
int receiverd_main(const char *config_path);

#endif
