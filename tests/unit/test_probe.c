/* Unit tests of the probe's verdicts: whether a leaver can still bind, from
 * the termination policy and what the server is known to do. */
#include "build.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "probe.h"
#include "testutil.h"

static struct mapping *with_terminated(const char *terminated)
{
	char text[2048], *path;
	struct mapping *m = NULL;
	struct diag d;

	snprintf(text, sizeof(text),
	         "version: 1\nemployees:\n  base: ou=people,dc=example,dc=com\n"
	         "  key: { attribute: employeeNumber, value: \"{id}\" }\n  rdn: uid\n"
	         "  object_classes: [inetOrgPerson]\n  attributes:\n    uid: \"{first_name}\"\n"
	         "    loginShell: /bin/bash\n  terminated:\n%s",
	         terminated);
	path = tu_write(tu_dir, "m.yaml", 0644, text);
	diag_init(&d);
	assert_int_equal(mapping_load(path, &m, &d), 0);
	diag_free(&d);
	free(path);
	return m;
}

/* The verdict, and whether its sentence holds want. */
static enum probe_verdict verdict(const char *terminated, const struct probe_facts *f, const char *want)
{
	struct mapping *m = with_terminated(terminated);
	struct sbuf how;
	enum probe_verdict v;

	sbuf_init(&how);
	v = probe_leaver_lock(&m->obj[MAPPING_EMPLOYEE], f, &how);
	if (!strstr(sbuf_str(&how), want))
		fail_msg("\"%s\" not in \"%s\"", want, sbuf_str(&how));
	sbuf_free(&how);
	mapping_free(m);
	return v;
}

static void test_openldap(void **state)
{
	struct probe_facts f;

	(void)state;
	probe_facts_init(&f);
	/* a shell and an expiry date stop no bind; the fix names ppolicy */
	assert_int_equal(verdict("    action: disable\n    attributes: { loginShell: /usr/sbin/nologin, shadowExpire: \"1\" }\n",
	                         &f, "leavers could still log in"),
	                 PROBE_NO);
	assert_int_equal(verdict("    action: disable\n    attributes: { loginShell: /usr/sbin/nologin }\n", &f,
	                         "load the ppolicy overlay with a default password policy that has pwdLockout: TRUE"),
	                 PROBE_NO);
	/* the lock, on a server without ppolicy: every termination would be refused */
	assert_int_equal(verdict("    action: disable\n    attributes: { pwdAccountLockedTime: \"000001010000Z\" }\n", &f,
	                         "which this server does not know (the ppolicy overlay is not loaded)"),
	                 PROBE_NO);
	/* with ppolicy, but no readable policy that locks */
	f.has_pwd_locked_time = true;
	assert_int_equal(verdict("    action: disable\n    attributes: { pwdAccountLockedTime: \"000001010000Z\" }\n", &f,
	                         "unless the overlay's default policy (ppolicy_default) sets pwdLockout: TRUE"),
	                 PROBE_UNKNOWN);
	assert_int_equal(verdict("    action: disable\n    attributes: { loginShell: /usr/sbin/nologin }\n", &f,
	                         "set pwdAccountLockedTime: \"000001010000Z\" under terminated.attributes"),
	                 PROBE_NO);
	/* and with one: locked; a lock that is not fixed text is no lock */
	vlist_push_copy(&f.lockout_policies, "cn=default,ou=policies,dc=example,dc=com", 40);
	assert_int_equal(verdict("    action: move\n    move_to: ou=former,dc=example,dc=com\n"
	                         "    attributes: { pwdAccountLockedTime: \"000001010000Z\" }\n",
	                         &f, "cn=default,ou=policies,dc=example,dc=com has pwdLockout: TRUE"),
	                 PROBE_YES);
	assert_int_equal(verdict("    action: disable\n    attributes: { pwdAccountLockedTime: \"{terminated_on}\" }\n", &f,
	                         "leavers could still log in"),
	                 PROBE_NO);
	/* deleted: nothing left to bind as */
	probe_facts_free(&f);
	probe_facts_init(&f);
	assert_int_equal(verdict("    action: delete\n", &f, "leavers are deleted"), PROBE_YES);
	probe_facts_free(&f);
}

static void test_389_and_active_directory(void **state)
{
	struct probe_facts f;

	(void)state;
	probe_facts_init(&f);
	f.has_ns_account_lock = true;
	assert_int_equal(verdict("    action: disable\n    attributes: { nsAccountLock: \"true\" }\n", &f,
	                         "nsAccountLock: true"),
	                 PROBE_YES);
	assert_int_equal(verdict("    action: disable\n    attributes: { nsAccountLock: \"false\" }\n", &f,
	                         "set nsAccountLock: \"true\""),
	                 PROBE_NO);
	f.has_ns_account_lock = false;
	f.active_directory = true;
	assert_int_equal(verdict("    action: disable\n    attributes: { userAccountControl: \"514\" }\n", &f,
	                         "userAccountControl marks the account disabled"),
	                 PROBE_YES);
	assert_int_equal(verdict("    action: move\n    move_to: ou=former,dc=example,dc=com\n"
	                         "    attributes: { userAccountControl: \"512\" }\n",
	                         &f, "set userAccountControl: \"514\""),
	                 PROBE_NO);
	probe_facts_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openldap),
		cmocka_unit_test(test_389_and_active_directory),
	};
	return cmocka_run_group_tests_name("probe", tests, tu_dir_setup, tu_dir_teardown);
}
