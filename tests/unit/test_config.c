/* Unit tests of the config loader: every kind of mistake, reported by place. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "common/diag.h"
#include "testutil.h"

struct fx {
	char *dir;
	char *agent; /* path of agent.yaml once written */
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	char *p;

	assert_non_null(fx);
	fx->dir = tu_mkdtemp();
	assert_non_null(fx->dir);
	free(tu_write(fx->dir, "api-key", 0600, "k3y\n"));
	free(tu_write(fx->dir, "challenge", 0600, "ch4llenge\n"));
	free(tu_write(fx->dir, "ldap-password", 0400, "secret\n"));
	free(tu_write(fx->dir, "open-secret", 0644, "secret\n"));
	free(tu_write(fx->dir, "mapping.yaml", 0644, "version: 1\n"));
	p = tu_write(fx->dir, "empty-secret", 0600, "");
	free(p);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	tu_rmtree(fx->dir);
	free(fx->dir);
	free(fx->agent);
	free(fx);
	return 0;
}

#define VALID_HEAD                                   \
	"factorial:\n"                               \
	"  base_url: https://api.factorialhr.com\n"  \
	"  api_version: \"2026-07-01\"\n"            \
	"  company_id: 1234\n"                       \
	"  api_key_file: api-key\n"                  \
	"webhooks:\n"                                \
	"  listen: \"127.0.0.1:8080\"\n"             \
	"  public_url: https://agent.example.com/hooks\n" \
	"  challenge_file: challenge\n"

#define VALID_LDAP                                   \
	"ldap:\n"                                    \
	"  uri: ldap://127.0.0.1:389\n"              \
	"  bind_dn: cn=agent,ou=services,dc=example,dc=com\n" \
	"  bind_password_file: ldap-password\n"

/* Loads text as agent.yaml; returns the diag's lines joined by '\n' (empty
 * when the load succeeded) and the snapshot in *out if asked. */
static char *load(struct fx *fx, const char *text, struct config **out)
{
	struct config *cfg = NULL;
	struct diag d;
	char *all = calloc(1, 1);
	size_t len = 0;
	int rc;

	free(fx->agent);
	fx->agent = tu_write(fx->dir, "agent.yaml", 0644, text);
	assert_non_null(fx->agent);
	diag_init(&d);
	rc = config_load(fx->agent, &cfg, &d);
	/* sort as diag_print would, then format */
	{
		FILE *null = fopen("/dev/null", "w");
		diag_print(&d, null);
		fclose(null);
	}
	for (size_t i = 0; i < d.n; i++) {
		char line[2048];
		const char *rel;
		diag_format(&d, i, line, sizeof(line));
		/* make the temp dir part of file names stable */
		rel = strstr(line, "agent.yaml");
		len += strlen(rel) + 1;
		all = realloc(all, len + 1);
		strcat(all, rel);
		strcat(all, "\n");
	}
	assert_int_equal(rc == 0, d.n == 0);
	diag_free(&d);
	if (out)
		*out = cfg;
	else
		config_free(cfg);
	return all;
}

static void expect_errors(struct fx *fx, const char *text, const char *expected)
{
	char *got = load(fx, text, NULL);
	assert_string_equal(got, expected);
	free(got);
}

static void test_valid_minimal_with_defaults(void **state)
{
	struct fx *fx = *state;
	struct config *cfg = NULL;
	char *errs = load(fx, VALID_HEAD VALID_LDAP "mapping: mapping.yaml\n", &cfg);
	char want[1024];

	assert_string_equal(errs, "");
	free(errs);
	assert_non_null(cfg);
	assert_int_equal(cfg->factorial.company_id, 1234);
	assert_true(cfg->factorial.enrich);
	assert_string_equal(cfg->ldap.uri, "ldap://127.0.0.1:389");
	snprintf(want, sizeof(want), "%s/mapping.yaml", fx->dir);
	assert_string_equal(cfg->mapping, want);
	snprintf(want, sizeof(want), "%s/ldap-password", fx->dir);
	assert_string_equal(cfg->ldap.bind_password_file, want);
	assert_int_equal(cfg->webhooks.max_body_bytes, 1048576);
	assert_int_equal(cfg->webhooks.check_interval, 600);
	assert_int_equal(cfg->sync.interval, 21600);
	assert_int_equal(cfg->safety.max_disables, 25);
	assert_int_equal(cfg->log.level, LOG_LVL_INFO);
	assert_int_equal(cfg->webhooks.subscriptions.n, 19);
	assert_string_equal(cfg->state_dir, "/var/lib/factorial-ldap-agent");
	config_free(cfg);
}

static void test_valid_full(void **state)
{
	struct fx *fx = *state;
	struct config *cfg = NULL;
	char *errs = load(fx,
	                  "factorial:\n"
	                  "  company_id: 7\n"
	                  "  oauth:\n"
	                  "    token_url: https://api.factorialhr.com/oauth/token\n"
	                  "    client_id: abc\n"
	                  "    client_secret_file: api-key\n"
	                  "    refresh_token_file: challenge\n"
	                  "  enrich: false\n"
	                  "webhooks:\n"
	                  "  public_url: http://127.0.0.1:9000/hooks\n"
	                  "  challenge_file: challenge\n"
	                  "  subscriptions: [employees/employee/update, teams/team/create]\n"
	                  "  max_body_bytes: 4096\n"
	                  "  check_interval: 1h30m\n"
	                  "  metrics_listen: \"[::1]:9100\"\n"
	                  "ldap:\n"
	                  "  uri: ldapi://%2Frun%2Fslapd%2Fldapi\n"
	                  "  sasl_mech: EXTERNAL\n"
	                  "mapping: mapping.yaml\n"
	                  "state_dir: .\n"
	                  "sync: { interval: 0, orphans: disable }\n"
	                  "safety: { max_disables: 3, max_disables_percent: 12.5 }\n"
	                  "log: { level: debug, target: syslog }\n",
	                  &cfg);
	assert_string_equal(errs, "");
	free(errs);
	assert_true(cfg->factorial.oauth);
	assert_false(cfg->factorial.enrich);
	assert_int_equal(cfg->webhooks.subscriptions.n, 2);
	assert_string_equal(cfg->webhooks.subscriptions.v[1], "teams/team/create");
	assert_int_equal(cfg->webhooks.check_interval, 5400);
	assert_int_equal(cfg->sync.interval, 0);
	assert_int_equal(cfg->sync.orphans, CONFIG_ORPHANS_DISABLE);
	assert_true(cfg->safety.max_disables_percent > 12.4 && cfg->safety.max_disables_percent < 12.6);
	assert_int_equal(cfg->log.level, LOG_LVL_DEBUG);
	assert_int_equal(cfg->log.target, LOG_TARGET_SYSLOG);
	assert_string_equal(cfg->ldap.sasl_mech, "EXTERNAL");
	config_free(cfg);
}

static void test_unknown_key_with_suggestion(void **state)
{
	expect_errors(*state, VALID_HEAD VALID_LDAP "  bind_pasword_file: x\nmapping: mapping.yaml\nfoo: 1\n",
	              "agent.yaml:14:3: ldap.bind_pasword_file: unknown key (did you mean bind_password_file?)\n"
	              "agent.yaml:16:1: foo: unknown key\n");
}

static void test_wrong_types(void **state)
{
	expect_errors(*state,
	              "factorial:\n"
	              "  company_id: abc\n"
	              "  api_key_file: api-key\n"
	              "  enrich: maybe\n"
	              "webhooks:\n"
	              "  public_url: https://a.example/hooks\n"
	              "  challenge_file: challenge\n"
	              "  subscriptions: employees/employee/update\n"
	              "  check_interval: soon\n"
	              "ldap: [ldap://x]\n"
	              "mapping: { a: b }\n"
	              "log: { level: loud }\n",
	              "agent.yaml:2:15: factorial.company_id: expected an integer, got \"abc\"\n"
	              "agent.yaml:4:11: factorial.enrich: expected true or false, got \"maybe\"\n"
	              "agent.yaml:8:18: webhooks.subscriptions: expected a list of subscription types, got a string\n"
	              "agent.yaml:9:19: webhooks.check_interval: expected a duration such as 30s, 10m, 6h, 1d or 1h30m, got \"soon\"\n"
	              "agent.yaml:10:7: ldap: expected a mapping of keys, got a list\n"
	              "agent.yaml:11:10: mapping: expected a file name, got a mapping\n"
	              "agent.yaml:12:15: log.level: \"loud\" is not one of error | warn | info | debug\n");
}

static void test_missing_required(void **state)
{
	expect_errors(*state,
	              "factorial:\n"
	              "  api_key_file: api-key\n"
	              "webhooks:\n"
	              "  challenge_file: challenge\n"
	              "ldap:\n",
	              "agent.yaml:1:1: mapping: required key is missing\n"
	              "agent.yaml:2:3: factorial.company_id: required key is missing\n"
	              "agent.yaml:4:3: webhooks.public_url: required key is missing\n"
	              "agent.yaml:5:6: ldap.uri: required key is missing\n");
}

static void test_bad_uris(void **state)
{
	expect_errors(*state,
	              "factorial:\n"
	              "  base_url: ftp://api.example.com\n"
	              "  company_id: 1\n"
	              "  api_key_file: api-key\n"
	              "webhooks:\n"
	              "  public_url: not a url\n"
	              "  challenge_file: challenge\n"
	              "  listen: 8080\n"
	              "ldap:\n"
	              "  uri: http://ldap.example.com\n"
	              "  bind_dn: not-a-dn\n"
	              "  bind_password_file: ldap-password\n"
	              "mapping: mapping.yaml\n",
	              "agent.yaml:2:13: factorial.base_url: must be an http:// or https:// URL\n"
	              "agent.yaml:6:15: webhooks.public_url: not a valid URL\n"
	              "agent.yaml:8:11: webhooks.listen: must be host:port (0.0.0.0:8080, 127.0.0.1:8080, [::]:8080)\n"
	              "agent.yaml:10:8: ldap.uri: \"http://ldap.example.com\" is not a valid LDAP URI (use ldap://, ldaps:// or ldapi://)\n"
	              "agent.yaml:11:12: ldap.bind_dn: not a valid distinguished name\n");
}

static void test_files_and_secrets(void **state)
{
	struct fx *fx = *state;
	char *got, want[4096];

	got = load(fx,
	           "factorial:\n"
	           "  company_id: 1\n"
	           "  api_key_file: open-secret\n"
	           "webhooks:\n"
	           "  public_url: https://a.example/hooks\n"
	           "  challenge_file: empty-secret\n"
	           "ldap:\n"
	           "  uri: ldaps://ldap.example.com\n"
	           "  bind_dn: cn=a,dc=example,dc=com\n"
	           "  bind_password_file: no-such-file\n"
	           "  ca_file: /nonexistent/ca.pem\n"
	           "mapping: mapping.yaml\n"
	           "state_dir: mapping.yaml\n",
	           NULL);
	snprintf(want, sizeof(want),
	         "agent.yaml:3:17: factorial.api_key_file: %1$s/open-secret is open to group or others (mode 0644); "
	         "a secret file must be readable by its owner only: chmod 600 %1$s/open-secret\n"
	         "agent.yaml:6:19: webhooks.challenge_file: %1$s/empty-secret is empty\n"
	         "agent.yaml:10:23: ldap.bind_password_file: cannot read %1$s/no-such-file: No such file or directory\n"
	         "agent.yaml:11:12: ldap.ca_file: cannot read /nonexistent/ca.pem: No such file or directory\n"
	         "agent.yaml:13:12: state_dir: %1$s/mapping.yaml is not a directory\n",
	         fx->dir);
	assert_string_equal(got, want);
	free(got);
}

/* Under systemd, LoadCredential= puts secrets in $CREDENTIALS_DIRECTORY: a bare name is read from there. */
static void test_credentials_directory(void **state)
{
	struct fx *fx = *state;
	struct config *cfg = NULL;
	char *errs, *creds = tu_mkdtemp(), want[1024];

	free(tu_write(creds, "vault-key", 0400, "from-systemd\n"));
	setenv("CREDENTIALS_DIRECTORY", creds, 1);
	errs = load(fx,
	            "factorial:\n  company_id: 1\n  api_key_file: vault-key\nwebhooks:\n"
	            "  public_url: https://a.example/hooks\n  challenge_file: challenge\n" VALID_LDAP
	            "mapping: mapping.yaml\n",
	            &cfg);
	assert_string_equal(errs, "");
	snprintf(want, sizeof(want), "%s/vault-key", creds);
	assert_string_equal(cfg->factorial.api_key_file, want);
	/* a name it does not hold is the configuration folder's, as always */
	snprintf(want, sizeof(want), "%s/challenge", fx->dir);
	assert_string_equal(cfg->webhooks.challenge_file, want);
	config_free(cfg);
	free(errs);
	unsetenv("CREDENTIALS_DIRECTORY");
	tu_rmtree(creds);
	free(creds);
}

static void test_three_mistakes_all_reported(void **state)
{
	expect_errors(*state,
	              "factorial:\n"
	              "  company_id: 12x\n"
	              "  api_key_file: api-key\n"
	              "webhooks:\n"
	              "  public_url: https://a.example/hooks\n"
	              "  challenge_file: challenge\n"
	              "  colour: blue\n"
	              "ldap:\n"
	              "  uri: ldap://127.0.0.1:389\n"
	              "  starttls: true\n",
	              "agent.yaml:1:1: mapping: required key is missing\n"
	              "agent.yaml:2:15: factorial.company_id: expected an integer, got \"12x\"\n"
	              "agent.yaml:7:3: webhooks.colour: unknown key\n");
}

static void test_cross_checks(void **state)
{
	expect_errors(*state,
	              "factorial:\n"
	              "  company_id: 1\n"
	              "webhooks:\n"
	              "  public_url: https://a.example/hooks\n"
	              "  challenge_file: challenge\n"
	              "  tls_cert_file: mapping.yaml\n"
	              "ldap:\n"
	              "  uri: ldaps://ldap.example.com\n"
	              "  starttls: yes\n"
	              "  bind_dn: cn=a,dc=example,dc=com\n"
	              "mapping: mapping.yaml\n",
	              "agent.yaml:2:3: factorial: give api_key_file or an oauth block\n"
	              "agent.yaml:4:3: webhooks.tls_key_file: required with tls_cert_file\n"
	              "agent.yaml:8:3: ldap.starttls: cannot be used with an ldaps:// URI (it is TLS already)\n"
	              "agent.yaml:8:3: ldap.bind_password_file: required with bind_dn (or set sasl_mech: EXTERNAL over ldapi://)\n");
}

static void test_subscription_types_and_duplicates(void **state)
{
	expect_errors(*state,
	              VALID_HEAD
	              "  subscriptions:\n"
	              "    - employees/employee/update\n"
	              "    - employees/employee/delete\n"
	              "    - employees/employee/update\n"
	              VALID_LDAP
	              "mapping: mapping.yaml\n"
	              "mapping: other.yaml\n",
	              "agent.yaml:12:7: webhooks.subscriptions: \"employees/employee/delete\" is not a subscription "
	              "type the agent handles (employees/employee/*, teams/team/*, teams/membership/*: see "
	              "docs/configuration.md)\n"
	              "agent.yaml:13:7: webhooks.subscriptions: \"employees/employee/update\" is listed twice\n"
	              "agent.yaml:19:1: mapping: duplicate key (first given on line 18)\n");
}

static void test_syntax_error_and_empty(void **state)
{
	expect_errors(*state, "factorial:\n  company_id: [1, 2\nldap: x\n",
	              "agent.yaml:3:5: YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence\n");
	expect_errors(*state, "", "agent.yaml: the file is empty\n");
	expect_errors(*state, "- a\n- b\n", "agent.yaml:1:1: expected a mapping of keys, got a list\n");
}

static void test_missing_file(void **state)
{
	struct config *cfg = NULL;
	struct diag d;
	char line[512];

	(void)state;
	diag_init(&d);
	assert_int_equal(config_load("/nonexistent/agent.yaml", &cfg, &d), -1);
	assert_null(cfg);
	assert_int_equal(diag_count(&d), 1);
	diag_format(&d, 0, line, sizeof(line));
	assert_string_equal(line, "/nonexistent/agent.yaml: cannot read: No such file or directory");
	diag_free(&d);
}

static void test_durations(void **state)
{
	static const struct {
		const char *in;
		long long out; /* -1: refused */
	} cases[] = {
		{ "0", 0 }, { "90", 90 }, { "90s", 90 }, { "10m", 600 }, { "6h", 21600 },
		{ "1d", 86400 }, { "1h30m", 5400 }, { "", -1 }, { "h", -1 }, { "1h30", -1 },
		{ "-5s", -1 }, { "5w", -1 }, { "99999999999999999999s", -1 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long s = -1;
		int rc = config_parse_duration(cases[i].in, &s);
		if (cases[i].out < 0) {
			assert_int_equal(rc, -1);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(s, cases[i].out);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_minimal_with_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_valid_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_with_suggestion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_uris, setup, teardown),
		cmocka_unit_test_setup_teardown(test_files_and_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_three_mistakes_all_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cross_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscription_types_and_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_error_and_empty, setup, teardown),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_durations),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
