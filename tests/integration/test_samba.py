"""The shipped Active Directory profile against a real Samba AD domain
controller: users, groups, the unique sAMAccountName, renames, and leavers
disabled and taken out of their groups.  Every test reads the directory back."""

import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import TOP_SRCDIR, AgentDir, AgentProcess, http, metric, run_agent, wait_for  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402
from slapd import free_port  # noqa: E402
from sambadc import SambaDC  # noqa: E402
from ldaptools import parse_ldif  # noqa: E402

PEOPLE = "OU=People,DC=example,DC=test"
GROUPS = "OU=Groups,DC=example,DC=test"
USER_ATTRS = ["cn", "sAMAccountName", "userPrincipalName", "userAccountControl", "employeeID",
              "givenName", "sn", "displayName", "mail", "title", "manager", "memberOf"]
GROUP_ATTRS = ["cn", "sAMAccountName", "description", "groupType", "member", "adminDescription"]


def person(i, first, last, email, **kw):
    e = {"id": i, "first_name": first, "last_name": last, "full_name": f"{first} {last}",
         "preferred_name": None, "login_email": email, "legal_entity_id": 1, "company_id": 1234,
         "terminated_on": None, "active": True, "manager_id": None, "phone_number": None,
         "job_title": None}
    e.update(kw)
    return e


def setUpModule():
    global DC, DIR, CFG
    DC = SambaDC().start()
    DIR = AgentDir()
    shutil.copy(os.path.join(TOP_SRCDIR, "mappings", "active-directory.yaml"),
                os.path.join(DIR.path, "mapping.yaml"))
    DIR.secret("api-key", "test-api-key")
    DIR.secret("challenge", "test-challenge")
    DIR.secret("ldap-password", DC.agent_pw)
    os.makedirs(os.path.join(DIR.path, "state"))
    CFG = DIR.file("agent.yaml", f"""factorial:
  base_url: http://127.0.0.1:9
  company_id: 1234
  api_key_file: api-key
  enrich: false
webhooks:
  public_url: http://127.0.0.1:8080/hooks
  challenge_file: challenge
ldap:
  uri: {DC.ldaps_uri}
  ca_file: {DC.ca_file}
  bind_dn: {DC.agent_dn}
  bind_password_file: ldap-password
mapping: mapping.yaml
state_dir: state
""")


def tearDownModule():
    DC.stop()
    DIR.close()


class TestActiveDirectory(unittest.TestCase):
    def setUp(self):
        DC.clear(PEOPLE, GROUPS)

    def apply(self, event, record, dry=False):
        args = ["-c", CFG, "apply"] + (["--dry-run"] if dry else []) + ["--event", event, "-"]
        return run_agent(*args, input=json.dumps(record, ensure_ascii=False),
                         env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"})

    def ok(self, event, record, **kw):
        r = self.apply(event, record, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_check_online_finds_the_profile_fits_the_schema(self):
        # no Factorial API here: that half fails; the directory half is what is looked at
        r = run_agent("-c", CFG, "check", "--online")
        self.assertIn(f"mapping {DIR.path}/mapping.yaml: ok against the directory (schema, bases)", r.stdout,
                      r.stderr)
        self.assertIn("leavers: cannot bind: userAccountControl marks the account disabled\n", r.stdout)
        self.assertNotIn("mapping.yaml:", r.stderr)

    def user(self, i):
        found = DC.search(PEOPLE, f"(employeeID={i})", USER_ATTRS)
        self.assertLessEqual(len(found), 1)
        return next(iter(found.items())) if found else (None, None)

    def group(self, cn):
        return DC.entry(f"CN={cn},{GROUPS}", GROUP_ATTRS)

    def test_user_created_enabled_then_nothing_to_do(self):
        ana = person(1, "Ana", "García", "Ana.Garcia@example.com", job_title="Engineer")
        r = self.ok("employees/employee/create_with_contract", ana)
        self.assertEqual(r.stderr.splitlines()[-1], "1 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        dn, e = self.user(1)
        self.assertEqual(dn, f"CN=Ana García,{PEOPLE}")
        self.assertEqual(e["sAMAccountName"], ["ana.garcia"])
        self.assertEqual(e["userPrincipalName"], ["ana.garcia@example.com"])
        self.assertEqual(e["userAccountControl"], ["512"])
        self.assertEqual(e["displayName"], ["Ana García"])
        self.assertEqual(e["title"], ["Engineer"])
        r = self.ok("employees/employee/update", ana)
        self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")
        r = self.ok("employees/employee/update", ana, dry=True)
        self.assertEqual(r.stdout, "")

    def test_a_hire_is_enabled_and_binds_with_its_initial_password_over_ldaps(self):
        hook = os.path.join(DIR.path, "passwords")
        ana = person(1, "Ana", "García", "Ana.Garcia@example.com")
        r = self.apply("employees/employee/create_with_contract", ana, dry=True)
        self.assertIn("# unicodePwd: a random initial password, made when the entry is (never shown)\n", r.stdout)
        r = run_agent("-c", CFG, "apply", "--event", "employees/employee/create_with_contract", "-",
                      input=json.dumps(ana, ensure_ascii=False),
                      env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27", "FACTORIAL_LDAP_AGENT_TEST_PASSWORD_FILE": hook,
                           "FACTORIAL_LDAP_AGENT_LOG_LEVEL": "debug"})
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(hook) as f:
            rid, pw = f.read().split()
        os.unlink(hook)
        self.assertEqual((rid, len(pw)), ("1", 24))
        self.assertNotIn(pw, r.stdout + r.stderr)
        self.assertEqual(self.user(1)[1]["userAccountControl"], ["512"])
        # the account binds with it, over LDAPS, with the domain's certificate checked
        bind = subprocess.run(["ldapsearch", "-x", "-H", DC.ldaps_uri, "-D", "ana.garcia@example.com", "-w", pw,
                               "-b", "", "-s", "base", "1.1"], capture_output=True, text=True,
                              env=dict(os.environ, LDAPTLS_CACERT=DC.ca_file))
        self.assertEqual(bind.returncode, 0, bind.stderr)
        wrong = subprocess.run(["ldapsearch", "-x", "-H", DC.ldaps_uri, "-D", "ana.garcia@example.com", "-w",
                                pw + "x", "-b", "", "-s", "base", "1.1"], capture_output=True, text=True,
                               env=dict(os.environ, LDAPTLS_CACERT=DC.ca_file))
        self.assertEqual(wrong.returncode, 49)

    def test_a_password_the_policy_refuses_is_said_in_words_with_the_employee_and_dn(self):
        def min_length(n):  # the domain's password policy lives on the domain object
            DC.modify(f"dn: DC=example,DC=test\nchangetype: modify\nreplace: minPwdLength\nminPwdLength: {n}\n")
        min_length(40)
        try:
            r = self.apply("employees/employee/create_with_contract",
                           person(9, "Pol", "Icy", "pol.icy@example.com"))
        finally:
            min_length(7)
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"employee 9: .*(?i:cn)=Pol Icy,OU=People,DC=example,DC=test.*Constraint violation "
                                   r"\(19\): the password does not meet the domain's password policy \(length, "
                                   r"complexity or history\); the server says: 0000052D")
        self.assertIsNone(self.user(9)[0])  # refused whole: no account without its password

    def test_three_ana_garcias_get_three_accounts(self):
        for i, domain in enumerate(("example.com", "example.org", "example.net"), start=1):
            self.ok("employees/employee/create_with_contract",
                    person(i, "Ana", "García", f"ana.garcia.de.la.fuente@{domain}"))
        names = [self.user(i)[1]["sAMAccountName"][0] for i in (1, 2, 3)]
        self.assertEqual(names, ["ana.garcia.de.la.fue", "ana.garcia.de.la.fu2", "ana.garcia.de.la.fu3"])
        self.assertTrue(all(len(n) <= 20 for n in names))
        self.assertEqual(len({self.user(i)[0] for i in (1, 2, 3)}), 3)  # three DNs: the cn made unique too
        for i in (1, 2, 3):
            self.assertEqual(self.user(i)[1]["userAccountControl"], ["512"])

    def test_renames_keep_group_membership_and_manager_references(self):
        self.ok("employees/employee/create_with_contract", person(1, "Ana", "Garcia", "ana@example.com"))
        self.ok("employees/employee/create_with_contract", person(2, "Bob", "Stone", "bob@example.com", manager_id=1))
        self.ok("teams/team/create", {"id": 5, "name": "Ops", "description": None, "employee_ids": [1, 2]})
        self.ok("employees/employee/update", person(1, "Ana", "Torres", "ana@example.com"))
        ana_dn = self.user(1)[0]
        self.assertEqual(ana_dn, f"CN=Ana Torres,{PEOPLE}")
        self.assertEqual(self.user(2)[1]["manager"], [ana_dn])
        self.assertIn(ana_dn, self.group("Team Ops")["member"])
        r = self.ok("teams/team/update", {"id": 5, "name": "Ops", "description": None, "employee_ids": [1, 2]})
        self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")

    def binds(self, upn, password):
        r = subprocess.run(["ldapsearch", "-x", "-H", DC.ldaps_uri, "-D", upn, "-w", password, "-b", "", "-s", "base",
                            "1.1"], capture_output=True, text=True, env=dict(os.environ, LDAPTLS_CACERT=DC.ca_file))
        return r.returncode

    def test_a_leaver_cannot_bind_and_binds_again_on_return(self):
        import base64
        from sambadc import ADMIN_DN, ADMIN_PW
        eva = person(4, "Eva", "Lock", "eva.lock@example.com")
        self.ok("employees/employee/create_with_contract", eva)
        dn = self.user(4)[0]
        # the helpdesk sets her password
        pw = "Helpdesk-Set-1!"
        value = base64.b64encode(f'"{pw}"'.encode("utf-16-le")).decode()
        r = subprocess.run(["ldapmodify", "-x", "-H", DC.ldaps_uri, "-D", ADMIN_DN, "-w", ADMIN_PW],
                           input=f"dn: {dn}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {value}\n",
                           capture_output=True, text=True, env=dict(os.environ, LDAPTLS_CACERT=DC.ca_file))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.binds("eva.lock@example.com", pw), 0)
        self.ok("employees/employee/terminate", dict(eva, terminated_on="2026-11-20", active=False))
        self.assertEqual(self.user(4)[1]["userAccountControl"], ["514"])
        self.assertEqual(self.binds("eva.lock@example.com", pw), 49)
        self.ok("employees/employee/unterminate", eva)
        self.assertEqual(self.user(4)[1]["userAccountControl"], ["512"])
        self.assertEqual(self.binds("eva.lock@example.com", pw), 0)

    def test_the_server_keeps_references_in_groups_the_agent_does_not_manage(self):
        # Active Directory rewrites every reference itself: the agent relies on it, and says so
        self.ok("employees/employee/create_with_contract", person(3, "Eva", "Vieja", "eva@example.com"))
        old = self.user(3)[0]
        DC.add(f"dn: CN=VPN Users,{GROUPS}\nobjectClass: group\ncn: VPN Users\nsAMAccountName: vpn-users\n"
               f"member: {old}\n")
        r = self.ok("employees/employee/update", person(3, "Eva", "Nueva", "eva@example.com"))
        self.assertNotIn("follow rename", r.stderr)
        new = self.user(3)[0]
        self.assertEqual(new, f"CN=Eva Nueva,{PEOPLE}")
        self.assertEqual(DC.entry(f"CN=VPN Users,{GROUPS}", ["member"])["member"], [new])
        r = run_agent("-c", CFG, "check", "--online")
        self.assertIn("references: kept by the server itself (Active Directory rewrites member, manager and the like "
                      "when an entry is renamed, moved or deleted)\n", r.stdout)

    def config_with(self, fake, port):
        """The module's configuration, with a Factorial API and a listener of its own."""
        with open(CFG) as f:
            text = f.read().replace("base_url: http://127.0.0.1:9", f"base_url: {fake.base_url}")
        from slapd import free_port
        text = text.replace("webhooks:\n", f"webhooks:\n  listen: \"127.0.0.1:{port}\"\n"
                                         f"  metrics_listen: \"127.0.0.1:{free_port()}\"\n  manage_subscriptions: false\n")
        text += "sync: { interval: 0 }\n"
        return DIR.file("agent-api.yaml", text)

    def test_sync_then_nothing_to_do(self):
        with FakeFactorial(fixtures=None) as fake:
            for i in range(1, 31):
                fake.put_employee(dict(person(i, f"P{i}", "Sync", f"p{i}@example.com"), company_id=1234))
            cfg = self.config_with(fake, free_port())
            r = run_agent("-c", cfg, "sync", env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            self.assertEqual(r.stderr.splitlines()[-1], "30 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
            r = run_agent("-c", cfg, "sync", env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")
        self.assertEqual(self.user(30)[1]["userAccountControl"], ["512"])

    def test_a_delivery_through_run(self):
        with FakeFactorial(fixtures=None) as fake:
            cfg = self.config_with(fake, free_port())
            agent = AgentProcess(cfg, os.path.join(DIR.path, "agent.log"),
                                 env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}).start()
            self.addCleanup(agent.stop)
            body = json.dumps(person(7, "Eva", "Run", "eva@example.com"))
            h = {"x-factorial-wh-challenge": "test-challenge", "Content-Type": "application/json"}
            self.assertEqual(http("POST", agent.url("/hooks/employees/employee/create_with_contract"), body, h)[0], 200)
            wait_for(lambda: self.user(7)[0], 60, what="the hire in Samba")
            wait_for(lambda: metric(agent, "queue_depth") == 0, 30, what="an empty queue")
            self.assertEqual(self.user(7)[1]["userAccountControl"], ["512"])
            self.assertEqual(agent.stop(), 0)

    def test_sam_account_name_made_unique_within_20_characters(self):
        self.ok("employees/employee/create_with_contract",
                person(1, "John", "Smith", "jsmith@example.com"))
        self.ok("employees/employee/create_with_contract",
                person(2, "Jane", "Smith", "jsmith@example.org"))
        self.ok("employees/employee/create_with_contract",
                person(3, "Maximiliana", "Longname", "maximiliana.longname.x@example.com"))
        self.ok("employees/employee/create_with_contract",
                person(4, "Maximiliana", "Longnamer", "maximiliana.longname.y@example.com"))
        self.assertEqual(self.user(1)[1]["sAMAccountName"], ["jsmith"])
        self.assertEqual(self.user(2)[1]["sAMAccountName"], ["jsmith2"])
        self.assertEqual(self.user(3)[1]["sAMAccountName"], ["maximiliana.longname"])
        self.assertEqual(self.user(4)[1]["sAMAccountName"], ["maximiliana.longnam2"])

    def test_rename_keeps_the_account_name(self):
        self.ok("employees/employee/create_with_contract", person(1, "Ana", "Garcia", "ana@example.com"))
        r = self.ok("employees/employee/update",
                    person(1, "Ana", "Müller, Jr.", "ana.mueller@example.com"))
        self.assertEqual(r.stderr.splitlines()[-1], "0 added, 1 modified, 1 renamed, 0 disabled, 0 deleted")
        dn, e = self.user(1)
        self.assertEqual(dn, f"CN=Ana Müller\\, Jr.,{PEOPLE}")
        self.assertEqual(e["cn"], ["Ana Müller, Jr."])
        self.assertEqual(e["sAMAccountName"], ["ana"])
        self.assertEqual(e["userPrincipalName"], ["ana.mueller@example.com"])

    def test_team_group_members_and_leaver(self):
        boss = person(1, "Ana", "Garcia", "ana@example.com")
        bob = person(2, "Bob", "Stone", "bob@example.com", manager_id=1)
        self.ok("employees/employee/create_with_contract", boss)
        self.ok("employees/employee/create_with_contract", bob)
        bob_dn, e = self.user(2)
        self.assertEqual(e["manager"], [f"CN=Ana Garcia,{PEOPLE}"])
        self.ok("teams/team/create", {"id": 5, "name": "Ops", "description": "Operations",
                                      "employee_ids": [1, 2]})
        g = self.group("Team Ops")
        self.assertEqual(g["groupType"], ["-2147483646"])
        self.assertEqual(g["sAMAccountName"], ["team-ops"])
        self.assertEqual(g["adminDescription"], ["factorial-team-5"])
        self.assertEqual(sorted(g["member"]), sorted([f"CN=Ana Garcia,{PEOPLE}", bob_dn]))
        # memberOf is the server's own view of the membership
        self.assertEqual(self.user(2)[1]["memberOf"], [f"CN=Team Ops,{GROUPS}"])
        # DN values the server spells its own way are still the same values
        r = self.ok("employees/employee/update", bob)
        self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")
        r = self.ok("teams/team/update", {"id": 5, "name": "Ops", "description": "Operations",
                                          "employee_ids": [1, 2]})
        self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")

        r = self.ok("employees/employee/update", dict(bob, terminated_on="2026-11-20", active=False),
                    dry=True)
        self.assertIn("userAccountControl: 514", r.stdout)
        self.assertEqual(self.user(2)[1]["userAccountControl"], ["512"])

        r = self.ok("employees/employee/update", dict(bob, terminated_on="2026-11-20", active=False))
        self.assertEqual(r.stderr.splitlines()[-1], "0 added, 1 modified, 0 renamed, 1 disabled, 0 deleted")
        dn, e = self.user(2)
        self.assertEqual(dn, bob_dn)
        self.assertEqual(e["userAccountControl"], ["514"])
        self.assertNotIn("memberOf", e)
        self.assertEqual(self.group("Team Ops")["member"], [f"CN=Ana Garcia,{PEOPLE}"])
        # a team update that still lists the leaver does not put him back
        self.ok("teams/team/update", {"id": 5, "name": "Ops", "description": "Operations",
                                      "employee_ids": [1, 2]})
        self.assertEqual(self.group("Team Ops")["member"], [f"CN=Ana Garcia,{PEOPLE}"])

    def test_team_renamed_in_place(self):
        self.ok("employees/employee/create_with_contract", person(1, "Ana", "Garcia", "ana@example.com"))
        self.ok("teams/team/create", {"id": 6, "name": "R&D", "description": None, "employee_ids": [1]})
        self.assertIsNotNone(self.group("Team R&D"))
        self.ok("teams/team/update", {"id": 6, "name": "Labs", "description": "Research", "employee_ids": [1]})
        self.assertIsNone(self.group("Team R&D"))
        g = self.group("Team Labs")
        self.assertEqual(g["description"], ["Research"])
        self.assertEqual(g["adminDescription"], ["factorial-team-6"])
        self.assertEqual(g["member"], [f"CN=Ana Garcia,{PEOPLE}"])

    def test_rendered_fixtures_load_as_they_are(self):
        fixtures = os.path.join(TOP_SRCDIR, "mappings", "fixtures", "active-directory")
        for name in ("people", "special-characters"):
            r = run_agent("render", "-m", os.path.join(TOP_SRCDIR, "mappings", "active-directory.yaml"),
                          os.path.join(fixtures, name + ".json"),
                          env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"})
            self.assertEqual(r.returncode, 0, r.stderr)
            DC.add(r.stdout)
            want = parse_ldif(r.stdout)
            self.assertGreater(len(want), 0)
            for dn, attrs in want.items():
                got = DC.entry(dn, list(attrs))
                self.assertIsNotNone(got, dn)
                for a, vals in attrs.items():
                    if a in ("manager", "member"):
                        # the server spells the attribute types of DN values its own way
                        self.assertEqual(sorted(v.lower() for v in got[a]), sorted(v.lower() for v in vals),
                                         f"{name} {dn} {a}")
                    elif a != "objectClass":
                        self.assertEqual(sorted(got[a]), sorted(vals), f"{name} {dn} {a}")
            DC.clear(PEOPLE, GROUPS)


if __name__ == "__main__":
    taprunner.main()
