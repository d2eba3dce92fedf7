"""The shipped 389 Directory Server profile against a real 389-ds, as sites
run it: the agent bound as an ordinary account given write access by ACIs on
the managed units only, the server's stock limits.  Hires, renames, teams,
leavers locked with nsAccountLock and out of their groups, returns, a sync
of more entries than the server's size limit, check --online, and a delivery
through `run`.  Every test reads the directory back as Directory Manager."""

import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import TOP_SRCDIR, AgentDir, AgentProcess, http, metric, run_agent, wait_for  # noqa: E402
from ds389 import DS389  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import person  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
TODAY = {"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}
H = {"x-factorial-wh-challenge": "test-challenge", "Content-Type": "application/json"}


def setUpModule():
    global DS, FAKE
    DS = DS389().start()
    FAKE = FakeFactorial(fixtures=None).start()


def tearDownModule():
    DS.stop()
    FAKE.stop()


class TestDS389(unittest.TestCase):
    def setUp(self):
        DS.clear(PEOPLE, GROUPS)
        FAKE.employees.clear()
        FAKE.teams = {}
        self.d = AgentDir()
        self.addCleanup(self.d.close)
        shutil.copy(os.path.join(TOP_SRCDIR, "mappings", "389ds-inetorgperson.yaml"),
                    os.path.join(self.d.path, "mapping.yaml"))
        self.cfg = self.d.daemon(ldap_uri=DS.uri, base_url=FAKE.base_url, enrich=False,
                                 public_url="https://agent.example.com/hooks")
        with open(self.cfg) as f:
            text = f.read()
        self.d.secret("ldap-password", DS.agent_pw)
        self.assertIn(f"bind_dn: {DS.agent_dn}", text)  # the ordinary account, not Directory Manager

    def apply(self, event, record, dry=False):
        args = ["-c", self.cfg, "apply"] + (["--dry-run"] if dry else []) + ["--event", event, "-"]
        return run_agent(*args, input=json.dumps(record, ensure_ascii=False), env=TODAY)

    def ok(self, event, record, **kw):
        r = self.apply(event, record, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stderr.splitlines()[-1]

    def user(self, i):
        found = DS.search(PEOPLE, f"(employeeNumber={i})", ["*", "nsAccountLock", "memberOf"])
        self.assertLessEqual(len(found), 1)
        return next(iter(found.items())) if found else (None, None)

    def binds(self, dn, password):
        r = subprocess.run(["ldapwhoami", "-x", "-H", DS.uri, "-D", dn, "-w", password], capture_output=True, text=True)
        return r.returncode, (r.stdout + r.stderr).strip()

    def test_hire_rename_team_leaver_and_return(self):
        # the Active Directory story on 389: a hire binds with its initial password, a leaver is
        # locked and out of the team, a return unlocks
        ana = person(1, "Ana", "García", login_email="ana.garcia@example.com", job_title="Engineer")
        bob = person(2, "Bob", "Stone", login_email="bob@example.com", manager_id=1)
        hook = os.path.join(self.d.path, "passwords")
        r = run_agent("-c", self.cfg, "apply", "--event", "employees/employee/create_with_contract", "-",
                      input=json.dumps(ana, ensure_ascii=False),
                      env=dict(TODAY, FACTORIAL_LDAP_AGENT_TEST_PASSWORD_FILE=hook))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.splitlines()[-1], "1 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        with open(hook) as f:
            pw = f.read().split()[1]
        os.unlink(hook)
        self.assertNotIn(pw, r.stdout + r.stderr)
        # the new account binds with its initial password
        who = subprocess.run(["ldapwhoami", "-x", "-H", DS.uri, "-D", f"uid=ana.garcia,{PEOPLE}", "-w", pw],
                             capture_output=True, text=True)
        self.assertEqual(who.returncode, 0, who.stderr)
        self.ok("employees/employee/create_with_contract", bob)
        # the helpdesk gives Bob a password of his own: he binds with it
        bob_dn = self.user(2)[0]
        DS.modify(f"dn: {bob_dn}\nchangetype: modify\nreplace: userPassword\nuserPassword: bobs-own-pw\n")
        self.assertEqual(self.binds(bob_dn, "bobs-own-pw"), (0, f"dn: {bob_dn}"))
        dn, e = self.user(1)
        self.assertEqual(dn, f"uid=ana.garcia,{PEOPLE}")
        self.assertEqual((e["cn"], e["sn"], e["mail"]), (["Ana García"], ["García"], ["ana.garcia@example.com"]))
        self.assertEqual(self.user(2)[1]["manager"], [dn])
        self.assertEqual(self.ok("employees/employee/update", ana), "nothing to do")
        self.ok("teams/team/create", {"id": 5, "name": "Ops", "description": "Operations", "employee_ids": [1, 2]})
        g = DS.entry(f"cn=team-ops,{GROUPS}")
        self.assertEqual(sorted(g["member"]), sorted([dn, f"uid=bob,{PEOPLE}"]))
        # a new last name: the uid stays (create_only), the manager reference and the membership hold
        self.assertEqual(self.ok("employees/employee/update", dict(ana, last_name="Müller", full_name="Ana Müller")),
                         "0 added, 1 modified, 0 renamed, 0 disabled, 0 deleted")
        self.assertEqual(self.user(1)[1]["sn"], ["Müller"])
        self.assertEqual(self.user(2)[1]["manager"], [dn])
        # Bob leaves: locked where he is, out of the team
        gone = dict(bob, terminated_on="2026-11-20", active=False)
        self.assertEqual(self.ok("employees/employee/terminate", gone),
                         "0 added, 1 modified, 0 renamed, 1 disabled, 0 deleted")
        bob_dn, e = self.user(2)
        self.assertEqual(bob_dn, f"uid=bob,{PEOPLE}")
        self.assertEqual(e["nsAccountLock"], ["true"])
        self.assertEqual(DS.entry(f"cn=team-ops,{GROUPS}")["member"], [dn])
        # his password no longer lets him in
        rc, said = self.binds(bob_dn, "bobs-own-pw")
        self.assertNotEqual(rc, 0, said)
        # and comes back: unlocked, his password lets him in again
        self.ok("employees/employee/unterminate", dict(bob, terminated_on=None, active=True))
        self.assertNotIn("nsAccountLock", self.user(2)[1])
        self.assertEqual(self.binds(bob_dn, "bobs-own-pw"), (0, f"dn: {bob_dn}"))

    def test_sync_of_more_entries_than_the_stock_size_limit(self):
        n = 2100  # 389's nsslapd-sizelimit is 2,000 for an ordinary account
        for i in range(1, n + 1):
            FAKE.put_employee(dict(person(i, f"P{i}", "Many", login_email=f"p{i}@example.com"), company_id=1234))
        r = run_agent("-c", self.cfg, "sync", env=TODAY, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(r.stderr.splitlines()[-1], f"{n} added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        r = run_agent("-c", self.cfg, "sync", env=TODAY, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")
        # 389 applies nsslapd-sizelimit to each page of a paged read, not to the whole: one pass reads all
        self.assertNotIn("size limit", r.stderr)

    def test_check_online_finds_the_profile_fits(self):
        r = run_agent("-c", self.cfg, "check", "--online")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"mapping {self.d.path}/mapping.yaml: ok against the directory (schema, bases)", r.stdout)
        self.assertIn("leavers: cannot bind: nsAccountLock: true (the server refuses the account's binds)\n", r.stdout)

    def test_a_delivery_through_run(self):
        agent = AgentProcess(self.cfg, os.path.join(self.d.path, "agent.log"), env=TODAY).start()
        self.addCleanup(agent.stop)
        body = json.dumps(person(7, "Eva", "Run", login_email="eva@example.com"))
        self.assertEqual(http("POST", agent.url("/hooks/employees/employee/create_with_contract"), body, H)[0], 200)
        wait_for(lambda: self.user(7)[0], 30, what="the hire in 389-ds")
        wait_for(lambda: metric(agent, "queue_depth") == 0, 30, what="an empty queue")
        self.assertEqual(self.user(7)[0], f"uid=eva,{PEOPLE}")


if __name__ == "__main__":
    taprunner.main()
