/*
 * log: the agent's one way of telling the operator what happens.
 *
 * Four levels (error, warn, info, debug); lines below the configured level are
 * not formatted at all.  The target is standard error (the default, one line
 * per message, with a UTC timestamp when timestamps are on) or syslog (daemon
 * facility).  When standard error is the journal's stream (JOURNAL_STREAM,
 * as systemd connects it), each line starts with its "<N>" priority and has
 * no timestamp of its own: the journal records both.  Each line is written with a single write so that lines from
 * several threads never interleave.
 *
 * Never pass a secret, a challenge, a token or a sensitive employee field
 * (bank, social security, salary) to these functions: the rule is kept at the
 * call sites, and secrets live only in struct secret (secret.h), which has no
 * way of being formatted.
 *
 * A thread sets its context once (log_set_context("delivery 12
 * employees/employee/update employee:42")) and every line it logs until
 * log_clear_context() carries it after the level.
 *
 * Memory: the module keeps a copy of the ident and each thread's context;
 * nothing else is retained.
 */
#ifndef FLA_LOG_H
#define FLA_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

enum log_target {
	LOG_TARGET_STDERR = 0,
	LOG_TARGET_SYSLOG,
};

const char *log_level_name(enum log_level lvl);

/* Sets level and target; with syslog, opens it under ident. */
void log_setup(enum log_level lvl, enum log_target target, bool timestamps);
void log_set_level(enum log_level lvl);
bool log_enabled(enum log_level lvl);
void log_close(void);

/* What the calling thread works on, put in front of each of its lines (at most 255 bytes). */
void log_set_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_clear_context(void);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
