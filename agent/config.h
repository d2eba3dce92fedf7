/*
 * config: the agent configuration file (agent.yaml), parsed once into an
 * immutable snapshot.
 *
 * config_load() reads the file, checks every key (unknown key, wrong type,
 * missing required key, bad URL or LDAP URI, unreadable file, a secret file
 * open to group or others) and reports every mistake it finds through a diag
 * as "file:line:column: key: what is wrong".  It returns a snapshot only when
 * there was none.  Relative paths in the file are resolved against the
 * directory that holds it.  Defaults are documented in docs/configuration.md.
 *
 * The snapshot is never modified after config_load() returns; a reload loads
 * a new snapshot and swaps the pointer, so readers holding the old one keep a
 * consistent view until they let it go.  It holds file names of secrets,
 * never their content (see secret.h).
 *
 * Memory: config_load() allocates the snapshot and everything it points to;
 * config_free() releases all of it.
 */
#ifndef FLA_CONFIG_H
#define FLA_CONFIG_H

/* The environment variable that overrides log.level (error, warn, info, debug). */
#define CONFIG_LOG_LEVEL_ENV "FACTORIAL_LDAP_AGENT_LOG_LEVEL"

#include <stdbool.h>
#include <stddef.h>

#include "common/diag.h"
#include "common/log.h"

#define CONFIG_DEFAULT_PATH "/etc/factorial-ldap-agent/agent.yaml"

struct config_strlist {
	char **v;
	size_t n;
};

enum config_orphans {
	CONFIG_ORPHANS_REPORT = 0,
	CONFIG_ORPHANS_DISABLE,
	CONFIG_ORPHANS_DELETE,
};

struct config {
	char *path; /* the file this snapshot was loaded from */

	struct {
		char *base_url;
		char *api_version;
		long long company_id;
		char *api_key_file;
		bool oauth; /* an oauth: block was given */
		char *token_url;
		char *client_id;
		char *client_secret_file;
		char *refresh_token_file;
		char *token_file; /* oauth: a company token (never expires, never refreshed) instead */
		bool enrich;
		char *ca_file;
		long long connect_timeout; /* seconds */
		long long timeout;         /* seconds */
		long long max_response_bytes;
	} factorial;

	struct {
		char *listen;
		char *public_url;
		char *challenge_file;
		struct config_strlist subscriptions;
		long long max_body_bytes;
		long long request_timeout; /* seconds: silence, and head to complete body */
		long long header_timeout;  /* seconds: opening to a complete request head */
		long long max_connections;
		long long max_connections_per_address;
		char *tls_cert_file;
		char *tls_key_file;
		long long check_interval; /* seconds */
		bool manage_subscriptions;
		bool take_over_subscriptions; /* another integration's subscription of a configured type: take it */
		bool public_healthz; /* /healthz on listen too (a status and a word), not only on metrics_listen */
		char *metrics_listen;
	} webhooks;

	struct {
		char *uri;
		bool starttls;
		char *ca_file;
		char *bind_dn;
		char *bind_password_file;
		char *sasl_mech;
		long long network_timeout; /* seconds */
		long long timeout;         /* seconds */
	} ldap;

	char *mapping;
	char *state_dir;
	char *user; /* run drops root for this account after binding; NULL: stays as started */
	char *receiver_user; /* the receiver's account while the daemon stays root; NULL: nobody */

	struct {
		long long interval; /* seconds, 0 = off */
		int orphans;        /* enum config_orphans */
		long long retry_delay; /* seconds before a failed reconcile in run is tried again; doubles */
	} sync;

	struct {
		long long max_disables;
		double max_disables_percent; /* < 0: not set, no percentage limit */
	} safety;

	struct {
		long long workers;        /* records applied in parallel */
		long long max_attempts;   /* record-level failures before a dead letter */
		long long retry_delay;    /* seconds before the first retry; doubles each time */
		long long schedule_check; /* seconds between checks for due terminations */
	} queue;

	struct {
		int level;  /* enum log_level */
		int target; /* enum log_target */
	} log;
};

/* Loads and validates path.  On success stores a new snapshot in *out and
 * returns 0; otherwise returns -1 with every mistake in d. */
int config_load(const char *path, struct config **out, struct diag *d);
void config_free(struct config *cfg);

/* Parses a duration ("90", "90s", "10m", "6h", "1d", "1h30m"; "0" is zero)
 * into seconds; returns 0 or -1. */
int config_parse_duration(const char *s, long long *seconds);

#endif
