"""`sync`: the whole directory against the Factorial API (the fake), read back
from a real slapd."""

import json
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import AgentDir, AgentProcess, run_agent  # noqa: E402
from fakefactorial import AGENT_API_VERSION, FakeFactorial, wid  # noqa: E402
from slapd import directory_kind, free_port, test_directory  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import MAPPING, RULE_GROUPS  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=com"
FORMER = "ou=former,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
TODAY = {"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}

# the contract's mapping plus a title from the contract versions
SYNC_MAPPING = MAPPING.replace("    loginShell: /bin/bash\n", "    loginShell: /bin/bash\n    title: \"{job_title}\"\n")


def people(n, start=1):
    out = []
    for i in range(start, start + n):
        out.append({"id": i, "first_name": f"P{i}", "last_name": "Sync", "full_name": f"P{i} Sync",
                    "login_email": f"p{i}@example.com", "legal_entity_id": 1, "company_id": 1234,
                    "terminated_on": None, "active": True, "manager_id": (i - 1) if i > start else None})
    return out


class SyncCase(unittest.TestCase):
    n = 300
    directory_options = {}  # for test_directory()

    def setUp(self):
        self.ldap = test_directory(**self.directory_options).start()
        self.addCleanup(self.ldap.stop)
        self.fake = FakeFactorial(fixtures=None).start()
        self.addCleanup(self.fake.stop)
        for e in people(self.n):
            self.fake.put_employee(e)
        self.fake.contract_versions = {e["id"]: {"id": e["id"], "employee_id": e["id"], "job_title": "Engineer",
                                                 "effective_on": "2026-01-01"} for e in people(self.n)}
        self.fake.teams = {1: {"id": 1, "name": "All", "description": "Everyone", "employee_ids": [1, 2, 3]}}
        self.d = AgentDir()
        self.addCleanup(self.d.close)
        self.d.file("mapping.yaml", SYNC_MAPPING)
        self.cfg = self.d.standard(ldap_uri=self.ldap.uri, base_url=self.fake.base_url, enrich=False,
                                   extra="safety: { max_disables: 25, max_disables_percent: 20 }\n")

    def sync(self, *args, env=TODAY):
        return run_agent("-c", self.cfg, "sync", *args, env=env, timeout=300)

    def entries(self, base=PEOPLE):
        return self.ldap.search(base, scope="one", attrs=["*"])

    def last(self, r):
        return r.stderr.splitlines()[-1]


class TestFirstAndSecond(SyncCase):
    def test_first_sync_creates_all_second_changes_nothing(self):
        r = self.sync("--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "301 to add, 0 to modify, 0 to rename, 0 to disable, 0 to delete")
        self.assertEqual(self.entries(), {})
        self.assertFalse(os.path.exists(os.path.join(self.d.path, "state", "state.db")))  # nothing written
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "301 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        es = self.entries()
        self.assertEqual(len(es), 300)
        e = es[f"uid=p2.sync,{PEOPLE}"]
        self.assertEqual(e["title"], ["Engineer"])
        # a manager created later in the run is still set (the second look)
        self.assertEqual(e["manager"], [f"uid=p1.sync,{PEOPLE}"])
        self.assertEqual(es[f"uid=p300.sync,{PEOPLE}"]["manager"], [f"uid=p299.sync,{PEOPLE}"])
        self.assertEqual(sorted(self.ldap.entry(f"cn=team-all,{GROUPS}")["member"]),
                         sorted(f"uid=p{i}.sync,{PEOPLE}" for i in (1, 2, 3)))
        before = self.ldap.dump()
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "nothing to do")
        self.assertIn("300 employees read; 301 records checked, 0 differed; 0 orphans", r.stderr)
        self.assertEqual(self.ldap.dump(), before)
        r = self.sync("--dry-run")
        self.assertEqual((r.returncode, r.stdout), (0, ""))
        self.assertEqual(self.last(r), "0 to add, 0 to modify, 0 to rename, 0 to disable, 0 to delete")


class TestStockSizeLimit(SyncCase):
    """slapd's default size limit (500, for the paged total too), the agent an ordinary account."""
    n = 700

    def test_more_entries_than_the_limit_sync_and_the_second_run_has_nothing_to_do(self):
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "701 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "nothing to do")
        self.assertIn("700 employees read; 701 records checked, 0 differed; 0 orphans", r.stderr)
        self.assertEqual(r.stderr.count("the server's size limit was reached; reading in slices by employeeNumber"),
                         1)
        self.assertIn('limits dn.exact="cn=factorial-agent,ou=services,dc=example,dc=com" size=unlimited', r.stderr)

    def test_a_read_no_slice_keeps_under_the_limit_disables_nothing(self):
        self.assertEqual(self.sync().returncode, 0)
        # 600 managed entries Factorial does not know, keys no slice can tell apart
        self.ldap.add("\n".join(f"dn: uid=stray{i},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: stray{i}\ncn: S\n"
                                f"sn: S\nemployeeNumber: #{i}\n" for i in range(600)))
        before = self.ldap.dump()
        cfg = open(self.cfg).read() + "sync: { orphans: disable }\n"
        self.d.file("agent.yaml", cfg)
        r = self.sync()
        self.assertEqual(r.returncode, 1, r.stderr[-2000:])
        self.assertIn("Size limit exceeded (4), even read in slices by employeeNumber", r.stderr)
        self.assertIn('limits dn.exact="cn=factorial-agent,ou=services,dc=example,dc=com" size=unlimited', r.stderr)
        self.assertNotIn("orphan:", r.stderr)
        self.assertEqual(self.ldap.dump(), before)


class TestSliceUnderSlice(SyncCase):
    """A site limit of 100 (`limits ... size=100`) with 300 people: the slices of 1 and 2 (1, 10-19,
    100-199: 111 entries) are over the limit too and are read split again, each with the rest
    of its prefix (the entry whose key is 1 or 2 itself)."""
    n = 300
    directory_options = {"extra_conf": 'limits dn.exact="cn=factorial-agent,ou=services,dc=example,dc=com" '
                                       "size=100\n"}

    def test_every_entry_is_read_and_the_dry_run_wants_nothing(self):
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "301 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        r = self.sync("--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(r.stdout, "")
        self.assertIn("300 employees read; 301 records checked, 0 differ; 0 orphans\n", r.stderr)
        self.assertEqual(self.last(r), "0 to add, 0 to modify, 0 to rename, 0 to disable, 0 to delete")
        self.assertIn("the server's size limit was reached; reading in slices by employeeNumber", r.stderr)


class TestSecondCluster(SyncCase):
    """A company on Factorial's second database cluster: every id past 2^53, as strings (2026-07-01)
    or as numbers (the version before): managers and team members resolve, and the second sync
    has nothing to do."""
    n = 30
    BIG = 18446744073709550

    def setUp(self):
        super().setUp()
        self.fake = FakeFactorial(fixtures=None, cluster=2).start()
        self.addCleanup(self.fake.stop)
        for e in people(self.n):
            self.fake.put_employee(e)
        self.fake.teams = {1: {"id": 1, "name": "All", "description": "Everyone", "employee_ids": [1, 2, 3]}}
        with open(self.cfg) as f:
            text = f.read()
        text = text.replace("company_id: 1234", f"company_id: {self.BIG + 1234}")
        self.d.file("agent.yaml", re.sub(r"base_url: \S+", f"base_url: {self.fake.base_url}", text))
        # the scope names the legal entities by their ids, as the API writes them
        self.d.file("mapping.yaml", SYNC_MAPPING.replace("only_if: { legal_entity_id: [1, 2] }",
                                                         f"only_if: {{ legal_entity_id: [{self.BIG + 1}, "
                                                         f"{self.BIG + 2}] }}"))

    def check(self):
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertNotIn("has no entry", r.stderr)
        e = self.entries()
        p2 = e[f"uid=p2.sync,{PEOPLE}"]
        self.assertEqual((p2["employeeNumber"], p2["manager"]), ([str(self.BIG + 2)], [f"uid=p1.sync,{PEOPLE}"]))
        self.assertEqual(sorted(self.ldap.entry(f"cn=team-all,{GROUPS}")["member"]),
                         [f"uid=p{i}.sync,{PEOPLE}" for i in (1, 2, 3)])
        self.assertEqual(self.last(self.sync()), "nothing to do")

    def test_strings(self):
        self.check()

    def test_numbers_of_the_version_before(self):
        with open(self.cfg) as f:
            self.d.file("agent.yaml", f.read().replace('api_version: "2026-07-01"', 'api_version: "2026-04-01"'))
        self.check()


class TestPlacedBySite(SyncCase):
    """base as a template in sync: each site's OU planned once, made once, then nothing to do."""
    n = 6

    def test_one_ou_per_site(self):
        for e in people(self.n):
            self.fake.update_employee(e["id"], location_id=1 + e["id"] % 2)
        self.d.file("mapping.yaml", SYNC_MAPPING.replace("version: 1\n", "version: 1\ntables:\n  sites: { 1: madrid, 2: paris }\n", 1)
                    .replace("  base: ou=people,dc=example,dc=com\n  search_base: dc=example,dc=com\n",
                             "  base: \"ou={location_id|map(sites)},ou=people,dc=example,dc=com\"\n"
                             "  search_base: dc=example,dc=com\n  create_bases: true\n", 1))
        r = self.sync("--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        for site in ("madrid", "paris"):
            self.assertEqual(r.stdout.count(f"dn: ou={site},{PEOPLE}\nchangetype: add\n"), 1, r.stdout)
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.last(r), "7 added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        self.assertEqual(len(self.entries(f"ou=madrid,{PEOPLE}")), 3)
        self.assertEqual(len(self.entries(f"ou=paris,{PEOPLE}")), 3)
        r = self.sync()
        self.assertEqual(self.last(r), "nothing to do", r.stderr[-2000:])


class TestRuleGroupsInSync(SyncCase):
    """groups: by rule in sync: made once, members gained and lost as records change, leavers
    out, and a second run finds nothing to do."""
    n = 6

    def group(self, cn):
        e = self.ldap.entry(f"cn={cn},{GROUPS}")
        return sorted(e["member"]) if e else None

    def test_groups_follow_the_records(self):
        for e in people(self.n):
            self.fake.update_employee(e["id"], location_id=1 + e["id"] % 2, legal_entity_id=1 + (e["id"] == 3))
        self.d.file("mapping.yaml", SYNC_MAPPING.replace(
            "version: 1\n", "version: 1\ntables:\n  sites: { 1: madrid, 2: paris }\n", 1) + RULE_GROUPS)
        dn = {i: f"uid=p{i}.sync,{PEOPLE}" for i in range(1, self.n + 1)}
        r = self.sync("--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        # each group planned once, the others of the run join it
        self.assertEqual(r.stdout.count(f"dn: cn=office-paris,{GROUPS}\nchangetype: add\n"), 1, r.stdout)
        self.assertEqual(r.stdout.count(f"dn: cn=office-paris,{GROUPS}\nchangetype: modify\nadd: member\n"), 2)
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(self.group("office-paris"), sorted([dn[1], dn[3], dn[5]]))
        self.assertEqual(self.group("office-madrid"), sorted([dn[2], dn[4], dn[6]]))
        self.assertEqual(self.group("staff-fr"), [dn[3]])
        self.assertEqual(self.last(self.sync()), "nothing to do")
        # p1 moves to Madrid, p3 leaves the French entity, p4 leaves the company, p6 is gone from
        # Factorial (an orphan, disabled)
        self.fake.update_employee(1, location_id=1)
        self.fake.update_employee(3, legal_entity_id=1)
        self.fake.update_employee(4, terminated_on="2026-11-01", active=False)
        self.fake.employees.pop(6)
        with open(self.cfg, "a") as f:
            f.write("sync: { orphans: disable }\n")
        r = self.sync("--force")  # two of six is over the deletion guard's share
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn(f"employee {wid(4)} (sync): leave group cn=office-madrid,{GROUPS}: member", r.stderr)
        self.assertEqual(self.group("office-paris"), sorted([dn[3], dn[5]]))
        self.assertEqual(self.group("office-madrid"), sorted([dn[1], dn[2]]))
        self.assertEqual(self.group("staff-fr"), ["cn=nobody"])
        r = self.sync("--dry-run")
        self.assertEqual(self.last(r), "0 to add, 0 to modify, 0 to rename, 0 to disable, 0 to delete", r.stdout)


class TestRelatedInSync(SyncCase):
    """{location.name}: read once a sync; a renamed location renames it on everyone's entry."""
    n = 4

    def test_location_names(self):
        for e in people(self.n):
            self.fake.update_employee(e["id"], location_id=1 + e["id"] % 2)
        self.fake.locations = {1: {"id": 1, "name": "Madrid HQ"}, 2: {"id": 2, "name": "Paris Office"}}
        self.d.file("mapping.yaml", SYNC_MAPPING.replace("    cn: \"{full_name}\"\n",
                                                          "    cn: \"{full_name}\"\n    l: \"{location.name}\"\n", 1))
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(sorted((e["uid"][0], e["l"][0]) for e in self.entries().values()),
                         [("p1.sync", "Paris Office"), ("p2.sync", "Madrid HQ"), ("p3.sync", "Paris Office"),
                          ("p4.sync", "Madrid HQ")])
        self.assertEqual(sum(1 for q in self.fake.requests if "/resources/locations/locations" in q[1]), 1)
        self.fake.locations[2]["name"] = "Paris Rivoli"
        r = self.sync()
        self.assertEqual(self.last(r), "0 added, 2 modified, 0 renamed, 0 disabled, 0 deleted", r.stderr[-2000:])
        self.assertEqual(self.ldap.entry(f"uid=p1.sync,{PEOPLE}")["l"], ["Paris Rivoli"])
        self.assertEqual(self.last(self.sync("--dry-run")), "0 to add, 0 to modify, 0 to rename, 0 to disable, 0 to delete")


class TestManyOrphans(SyncCase):
    n = 3

    def test_orphans_are_counted_past_the_first_ten(self):
        self.assertEqual(self.sync().returncode, 0)
        self.ldap.add("\n".join(f"dn: uid=gone{i},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: gone{i}\ncn: G\nsn: G\n"
                                f"employeeNumber: {900 + i}\n" for i in range(12)))
        r = self.sync("--dry-run")
        lines = [x for x in r.stderr.splitlines() if "orphan: " in x]
        self.assertEqual(len(lines), 11, r.stderr)
        self.assertEqual(lines[-1], "factorial-ldap-agent: orphan: ... and 2 more left as they are "
                                    "(sync --verbose names them all)")
        self.assertIn("; 12 orphans", r.stderr)
        r = self.sync("--dry-run", "--verbose")
        self.assertEqual(len([x for x in r.stderr.splitlines() if "orphan: uid=gone" in x]), 12)


class TestProgress(SyncCase):
    n = 450

    def test_progress_on_a_terminal_and_none_in_a_pipe(self):
        import pty
        import select
        from agenttest import AGENT
        main, sub = pty.openpty()
        p = subprocess.Popen([AGENT, "-c", self.cfg, "sync", "--dry-run"], stdout=subprocess.DEVNULL, stderr=sub,
                             env=dict(os.environ, **TODAY))
        os.close(sub)
        seen = b""
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        p.wait(timeout=60)
        os.close(main)
        text = seen.decode(errors="replace")
        self.assertEqual(p.returncode, 0, text[-2000:])
        self.assertRegex(text, r"sync: \d+ of 450 employees read and checked \(\d+%\), \d+/s, about \d+ s left")
        self.assertIn("450 employees read;", text)
        # not a terminal: no progress line
        r = self.sync("--dry-run")
        self.assertNotIn("employees read and checked", r.stderr)


class TestDrift(SyncCase):
    n = 40

    def test_drift_found_by_dry_run_and_fixed(self):
        self.assertEqual(self.sync().returncode, 0)
        # hand-made drift
        self.ldap.modify(f"dn: uid=p5.sync,{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Intern\n")
        self.ldap.modify(f"dn: uid=p6.sync,{PEOPLE}\nchangetype: delete\n")
        self.fake.update_employee(7, last_name="Renamed", full_name="P7 Renamed")
        self.fake.update_employee(8, terminated_on="2026-11-01", active=False)
        self.ldap.add(f"dn: uid=ghost,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: ghost\ncn: Ghost\nsn: Ghost\n"
                      "employeeNumber: 999\n")
        before = self.ldap.dump()
        r = self.sync("--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.ldap.dump(), before)
        out = r.stdout
        self.assertIn(f"# employee {wid(5)} (sync): modify uid=p5.sync,{PEOPLE}: title\n", out)
        self.assertIn(f"# employee {wid(6)} (sync): add uid=p6.sync,{PEOPLE}\n", out)
        self.assertIn(f"# employee {wid(7)} (sync): rename uid=p7.sync,{PEOPLE} to uid=p7.renamed,{PEOPLE}\n", out)
        self.assertIn(f"# employee {wid(8)} (sync): rename uid=p8.sync,{PEOPLE} to uid=p8.sync,{FORMER}\n", out)
        self.assertIn(f"orphan: uid=ghost,{PEOPLE} (employeeNumber=999): no employee in Factorial has this key",
                      r.stderr)
        # modify: p5's title, p7's cn and sn, p8's manager (p7 renamed), p9's manager (p8 moved)
        self.assertEqual(self.last(r), "1 to add, 4 to modify, 1 to rename, 1 to disable, 0 to delete")
        # the dry run's LDIF, applied by ldapmodify to a copy, gives what the real sync gives
        with test_directory() as copy:
            copy.add(self._export(), admin=True)
            m = subprocess.run(["ldapmodify", "-H", copy.uri, "-x", "-D", copy.admin_dn, "-w", copy.admin_pw],
                               input=out.encode(), capture_output=True)
            self.assertEqual(m.returncode, 0, m.stderr.decode())
            r = self.sync()
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(copy.dump(), self.ldap.dump())
        es = self.entries()
        self.assertEqual(es[f"uid=p5.sync,{PEOPLE}"]["title"], ["Engineer"])
        self.assertIn(f"uid=p6.sync,{PEOPLE}", es)
        self.assertIn(f"uid=p7.renamed,{PEOPLE}", es)
        self.assertEqual(es[f"uid=p9.sync,{PEOPLE}"]["manager"], [f"uid=p8.sync,{FORMER}"])
        self.assertEqual(self.ldap.entry(f"uid=p8.sync,{FORMER}")["loginShell"], ["/usr/sbin/nologin"])
        self.assertEqual(es[f"uid=p8.renamed,{PEOPLE}".replace("p8.renamed", "p7.renamed")]["manager"],
                         [f"uid=p6.sync,{PEOPLE}"])
        self.assertIn(f"uid=ghost,{PEOPLE}", es)  # sync.orphans: report leaves it
        self.assertEqual(self.sync().stderr.splitlines()[-1], "nothing to do")

    def _export(self):
        blocks = []
        for base in (PEOPLE, GROUPS, FORMER):
            r = subprocess.run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", self.ldap.uri, "-x", "-D",
                                self.ldap.admin_dn, "-w", self.ldap.admin_pw, "-b", base, "-s", "one"],
                               capture_output=True, text=True)
            blocks += [b for b in r.stdout.strip().split("\n\n") if b]
        blocks.sort(key=lambda b: b.splitlines()[0].count(","))
        return "\n\n".join(blocks) + "\n"

    def test_orphans_disable_and_delete(self):
        self.assertEqual(self.sync().returncode, 0)
        for n in ("ghost1", "ghost2"):
            self.ldap.add(f"dn: uid={n},{PEOPLE}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\nuid: {n}\n"
                          f"cn: G\nsn: G\nemployeeNumber: {n}\nuidNumber: 1\ngidNumber: 1\n"
                          f"homeDirectory: /h\nloginShell: /bin/bash\n")
        self.ldap.modify(f"dn: cn=team-all,{GROUPS}\nchangetype: modify\nadd: member\nmember: uid=ghost1,{PEOPLE}\n")
        with open(self.cfg) as f:
            text = f.read()
        self.d.file("agent.yaml", text + "sync: { orphans: disable }\n")
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr)
        g = self.ldap.entry(f"uid=ghost1,{FORMER}")
        self.assertEqual(g["loginShell"], ["/usr/sbin/nologin"])
        self.assertNotIn("description", g)  # "left on {terminated_on}" has no record to read
        self.assertNotIn(f"uid=ghost1,{PEOPLE}", self.ldap.entry(f"cn=team-all,{GROUPS}")["member"])
        self.assertEqual(self.last(r), "0 added, 1 modified, 0 renamed, 2 disabled, 0 deleted")
        self.d.file("agent.yaml", text + "sync: { orphans: delete }\n")
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(self.ldap.entry(f"uid=ghost1,{FORMER}"))
        self.assertIsNone(self.ldap.entry(f"uid=ghost2,{FORMER}"))
        self.assertEqual(self.last(r), "0 added, 0 modified, 0 renamed, 0 disabled, 2 deleted")


class TestGuard(SyncCase):
    n = 50

    def test_guard_stops_sixty_percent_and_force_passes(self):
        self.assertEqual(self.sync().returncode, 0)
        for i in range(1, 31):
            self.fake.update_employee(i, terminated_on="2026-11-20", active=False)
        self.fake.update_employee(40, phone_number="+34 600")  # an ordinary change still goes through
        before_people = set(self.entries())
        r = self.sync()
        self.assertEqual(r.returncode, 1)
        self.assertIn("deletion guard: this sync would disable or delete 30 entries (60% of 50 managed)", r.stderr)
        self.assertIn(f"  uid=p1.sync,{PEOPLE}\n", r.stderr)
        self.assertEqual(set(self.entries()), before_people)
        self.assertEqual(self.entries()[f"uid=p40.sync,{PEOPLE}"]["telephoneNumber"], ["+34 600"])
        r = self.sync("--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.entries()), 20)
        self.assertEqual(len(self.entries(FORMER)), 30)
        self.assertIn("--force: applied", r.stderr)

    def test_exactly_the_limit_goes_through(self):
        # 10 of 50 is max_disables_percent (20%) itself, not more: applied without --force
        self.assertEqual(self.sync().returncode, 0)
        for i in range(1, 11):
            self.fake.update_employee(i, terminated_on="2026-11-20", active=False)
        r = self.sync()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("deletion guard", r.stderr)
        self.assertEqual((len(self.entries()), len(self.entries(FORMER))), (40, 10))

    def test_empty_employee_list_disables_nothing(self):
        self.assertEqual(self.sync().returncode, 0)
        self.fake.employees.clear()
        with open(self.cfg) as f:
            text = f.read()
        self.d.file("agent.yaml", text + "sync: { orphans: delete }\n")
        before = self.ldap.dump()
        for args in ((), ("--force",)):
            r = self.sync(*args)
            self.assertEqual(self.ldap.dump(), before)
            self.assertIn("0 employees read", r.stderr)
        self.assertEqual(len(self.entries()), 50)


class TestClockAndScope(SyncCase):
    n = 5

    def test_future_termination_applied_when_the_clock_passes_it(self):
        self.fake.update_employee(3, terminated_on="2026-12-15", is_terminating=True)
        r = self.sync(env={"FACTORIAL_LDAP_AGENT_NOW": "2026-12-14"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNotNone(self.ldap.entry(f"uid=p3.sync,{PEOPLE}"))
        r = self.sync(env={"FACTORIAL_LDAP_AGENT_NOW": "2026-12-14T23:59:59"})
        self.assertEqual(self.last(r), "nothing to do")
        r = self.sync(env={"FACTORIAL_LDAP_AGENT_NOW": "2026-12-15T00:00:01"})
        self.assertEqual(r.returncode, 0, r.stderr)
        # modify: leaving team All, and p4's manager following p3 to ou=former
        self.assertEqual(self.last(r), "0 added, 2 modified, 0 renamed, 1 disabled, 0 deleted")
        self.assertIsNone(self.ldap.entry(f"uid=p3.sync,{PEOPLE}"))
        # the team still lists p3 in Factorial: the leaver stays out of the group
        self.assertEqual(sorted(self.ldap.entry(f"cn=team-all,{GROUPS}")["member"]),
                         [f"uid=p1.sync,{PEOPLE}", f"uid=p2.sync,{PEOPLE}"])
        r = self.sync(env={"FACTORIAL_LDAP_AGENT_NOW": "2026-12-16"})
        self.assertEqual(self.last(r), "nothing to do")
        self.assertEqual(self.ldap.entry(f"uid=p3.sync,{FORMER}")["description"], ["left on 2026-12-15"])

    def test_one_employee(self):
        self.assertEqual(self.sync().returncode, 0)
        self.fake.update_employee(2, phone_number="+1 2")
        self.fake.update_employee(4, phone_number="+1 4")
        r = self.sync("--employee", wid(2))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.last(r), "0 added, 1 modified, 0 renamed, 0 disabled, 0 deleted")
        self.assertNotIn("telephoneNumber", self.entries()[f"uid=p4.sync,{PEOPLE}"])
        r = self.sync("--employee", wid(77))
        self.assertIn(f"employee {wid(77)}: not in Factorial", r.stderr)

    def test_refused_adds_are_reported_per_record(self):
        # the adds of a sync are pipelined: a refusal comes back later and still names its record
        self.d.file("mapping.yaml", SYNC_MAPPING.replace("    loginShell: /bin/bash\n",
                                                         "    loginShell: /bin/bash\n    shoeSize: \"{id}\"\n"))
        r = self.sync()
        self.assertEqual(r.returncode, 1)
        said = {"openldap": "Undefined attribute type (17): shoeSize: attribute type undefined",
                "389ds": 'Object class violation (65): attribute "shoesize" not allowed'}[directory_kind()]
        for i in range(1, 6):
            self.assertIn(f"factorial-ldap-agent: employee {wid(i)}: uid=p{i}.sync,{PEOPLE}: add: {said}\n", r.stderr)
        # only the team's group was added (its members had no entries: the placeholder stands in);
        # the summary counts the refused ones
        self.assertEqual(self.last(r), "1 added, 0 modified, 0 renamed, 0 disabled, 0 deleted, 5 failed")
        self.assertIn("6 records checked, 6 differed, 5 failed; 0 orphans\n", r.stderr)
        self.assertEqual(self.entries(), {})
        self.assertEqual(self.ldap.entry(f"cn=team-all,{GROUPS}")["member"], ["cn=nobody"])

    def test_unreachable_api_fails_cleanly(self):
        with open(self.cfg) as f:
            text = f.read().replace(self.fake.base_url, "http://127.0.0.1:9")
        self.d.file("agent.yaml", text)
        r = self.sync()
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"factorial-ldap-agent: sync: GET http://127.0.0.1:9/api/{AGENT_API_VERSION}/resources/", r.stderr)
        self.assertEqual(self.entries(), {})


class TestRunReconciles(SyncCase):
    n = 10

    def test_run_syncs_every_interval_and_guards_deliveries(self):
        port = free_port()
        with open(self.cfg) as f:
            text = f.read().replace('listen: "127.0.0.1:18080"', f'listen: "127.0.0.1:{port}"')
        text = text.replace("  challenge_file: challenge\n", "  challenge_file: challenge\n  manage_subscriptions: false\n")
        text = text.replace("safety: { max_disables: 25, max_disables_percent: 20 }\n",
                            "safety: { max_disables: 2, max_disables_percent: 100 }\n")
        self.d.file("agent.yaml", text + "sync: { interval: 2s }\n")
        agent = AgentProcess(self.cfg, os.path.join(self.d.path, "agent.log")).start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(self.entries()) < 10:
                time.sleep(0.2)
            self.assertEqual(len(self.entries()), 10, agent.log_text())
            self.fake.update_employee(5, phone_number="+9 5")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "telephoneNumber" not in self.entries()[f"uid=p5.sync,{PEOPLE}"]:
                time.sleep(0.2)
            self.assertEqual(self.entries()[f"uid=p5.sync,{PEOPLE}"]["telephoneNumber"], ["+9 5"])
            self.assertIn("sync: 10 employees read", agent.log_text())
            from agenttest import http
            status, text = http("GET", agent.url("/metrics"))
            self.assertIn('factorial_ldap_agent_drift_entries{outcome="checked"} 11', text)  # 10 employees, 1 team
            # the guard in run: the third termination delivery within the hour is held
            h = {"x-factorial-wh-challenge": "test-challenge"}
            for i in (1, 2, 3):
                rec = dict(self.fake.employees[i], terminated_on="2026-11-01", active=False)
                self.fake.update_employee(i, terminated_on="2026-11-01", active=False)
                self.assertEqual(http("POST", agent.url("/hooks/employees/employee/terminate"),
                                      json.dumps(self.fake.to_agent(rec)), h)[0], 200)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "1 held" not in run_agent("-c", self.cfg, "queue", "list").stdout:
                time.sleep(0.2)
            listing = run_agent("-c", self.cfg, "queue", "list").stdout
            self.assertIn("0 pending, 1 held, 0 dead", listing)
            self.assertRegex(listing, r"held\s+\S+\s+employees/employee/terminate\s+\d+\s+employee:" + wid(3) + ": deletion guard")
            self.assertIsNotNone(self.ldap.entry(f"uid=p3.sync,{PEOPLE}"))
            r = run_agent("-c", self.cfg, "queue", "retry", "--force")
            self.assertEqual(r.returncode, 0, r.stderr)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.ldap.entry(f"uid=p3.sync,{PEOPLE}"):
                time.sleep(0.2)
            self.assertIsNotNone(self.ldap.entry(f"uid=p3.sync,{FORMER}"))
            self.assertEqual(agent.stop(), 0)
        finally:
            agent.stop()


if directory_kind() != "openldap":
    # slapd's own limits (389's paged reads are not capped: test_389ds.py)
    del TestStockSizeLimit, TestSliceUnderSlice

if __name__ == "__main__":
    taprunner.main()
