"""Convergence: the webhook path and `sync` are two roads to one directory.

Each test is one seeded "day" of HR changes (hires, renames, manager and
preferred-name changes, leavers now and later, returns, teams made, renamed
and deleted, joins and leaves, bulk upserts, and the touch-only employee
events).  Every change updates the fake Factorial and makes the delivery
Factorial would send; the deliveries reach `run` in the order Factorial's
retries give them: some repeated, some late (after newer ones).  When the
queue has drained, `sync --dry-run` must find nothing to change, and
replaying every delivery once more must change nothing.

  FLA_CONVERGENCE_DAYS        how many days (default 20), seeds FLA_CONVERGENCE_SEED.. (default 1)
  FLA_CONVERGENCE_SITE_DAYS   how many days (default 6) with SITES_MAPPING (an OU per site, groups by
                              rule, tables, conditions, unique candidates) and people who move site and
                              legal entity, seeds from FLA_CONVERGENCE_SEED + 1000
  FLA_CONVERGENCE_DELIVERIES  at least this many deliveries a day (default 300)
  FLA_CONVERGENCE_SHRINK=0    on a failure, do not look for a shorter failing day
  FLA_CONVERGENCE_SHRINK_SECONDS  how long to look for it (default 300): the shortest found by then

A failure names its seed and, unless told not to, the shortest sequence of
changes found that still fails.  Replay one day:
  FLA_CONVERGENCE_SEED=17 FLA_CONVERGENCE_DAYS=1 python3 tests/integration/test_convergence.py
"""

import copy
import json
import os
import random
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import AgentDir, AgentProcess, http, metric, run_agent, wait_for  # noqa: E402
from fakefactorial import FakeFactorial, wid  # noqa: E402
from servercase import ServersCase  # noqa: E402
from slapd import Slapd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import MAPPING, RULE_GROUPS  # noqa: E402

# the mapping language at full stretch: people placed per site (OUs made on demand),
# jdoe then john.doe, a country (l) from a table, an attribute under a condition, a display
# name from the first alternative that has every field, the office's name from the API, a group
# per office and one for the French legal entity
SITES_MAPPING = MAPPING.replace("version: 1\n", "version: 1\ntables:\n  sites: { 1: madrid, 2: paris, 3: berlin }\n"
                                "  countries: { 1: ES, 2: FR }\n", 1).replace(
    "  base: ou=people,dc=example,dc=com\n",
    "  base: \"ou={location_id|map(sites)},ou=people,dc=example,dc=com\"\n  create_bases: true\n", 1).replace(
    '    uid: { value: "{first_name|slug}.{last_name|slug}", unique: true }\n',
    '    uid: { value: ["{first_name|truncate(1)|slug}{last_name|slug}", "{first_name|slug}.{last_name|slug}"], '
    'unique: true, create_only: true }\n    l: "{legal_entity_id|map(countries)}"\n'
    '    departmentNumber: { value: "FR-{id}", when: { legal_entity_id: 2 } }\n'
    '    displayName: { first: ["{preferred_name} {last_name}", "{first_name} {last_name}"] }\n'
    '    physicalDeliveryOfficeName: "{location.name}"\n', 1) + RULE_GROUPS
assert SITES_MAPPING.count("map(sites)") == 2 and "departmentNumber" in SITES_MAPPING

NOW = "2026-11-27T12:00:00Z"
TODAY = "2026-11-27"
CHALLENGE = "test-challenge"
H = {"x-factorial-wh-challenge": CHALLENGE, "Content-Type": "application/json"}
FIRST = ["Ana", "Luis", "Eva", "Jose", "Marta", "Iker", "Nuria", "Pablo", "Sara", "Tomas", "Ines", "Raul"]
LAST = ["Garcia", "Nunez", "Lopez", "Martin", "Sanz", "Gil", "Ruiz", "Vidal", "Serra", "Mora", "Soler"]

DAYS = int(os.environ.get("FLA_CONVERGENCE_DAYS", "20"))
SITE_DAYS = int(os.environ.get("FLA_CONVERGENCE_SITE_DAYS", "6"))
FIRST_SEED = int(os.environ.get("FLA_CONVERGENCE_SEED", "1"))
DELIVERIES = int(os.environ.get("FLA_CONVERGENCE_DELIVERIES", "300"))
SHRINK = os.environ.get("FLA_CONVERGENCE_SHRINK", "1") != "0"
SHRINK_SECONDS = float(os.environ.get("FLA_CONVERGENCE_SHRINK_SECONDS", "300"))


# ---- the day's changes ----------------------------------------------------------

class Paper:
    """A stand-in for the fake Factorial while a day is planned."""

    def __init__(self):
        import threading
        self.lock = threading.RLock()
        self.teams = {}

    def put_employee(self, e):
        pass

    @staticmethod
    def to_agent(record):
        return record


def plan_day(seed, deliveries, sites=False):
    """The changes of one day, each a small dict, until they make at least that many
    deliveries; they name employees and teams by their ids and are replayed by World,
    which skips a change whose subject is gone.  With sites, people also move between
    sites and legal entities."""
    rng = random.Random(seed)
    paper = World(Paper())
    ops = []
    emp = 0
    team = 0
    # the morning: people and teams that exist before the day's churn
    for _ in range(12):
        emp += 1
        ops.append({"op": "hire", "id": emp, "first": rng.choice(FIRST), "last": rng.choice(LAST),
                    "manager": rng.randint(1, emp - 1) if emp > 1 and rng.random() < 0.7 else None})
    for _ in range(3):
        team += 1
        ops.append({"op": "team_create", "id": team, "members": rng.sample(range(1, emp + 1), 3)})
    kinds = [("hire", 10), ("rename", 8), ("manager", 8), ("preferred", 6), ("leave_now", 6),
             ("leave_later", 4), ("come_back", 6), ("touch", 6), ("team_create", 3), ("team_rename", 3),
             ("team_delete", 2), ("join", 12), ("leave_team", 10), ("bulk_join", 3)]
    if sites:
        kinds += [("relocate", 8), ("entity", 6)]
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    for op in ops:
        paper.play(op)
    while len(paper.deliveries) < deliveries:
        k = rng.choices(names, weights)[0]
        if k == "hire":
            emp += 1
            ops.append({"op": k, "id": emp, "first": rng.choice(FIRST), "last": rng.choice(LAST),
                        "manager": rng.randint(1, emp - 1) if rng.random() < 0.7 else None})
        elif k == "team_create":
            team += 1
            ops.append({"op": k, "id": team, "members": rng.sample(range(1, emp + 1), min(2, emp))})
        elif k in ("team_rename", "team_delete"):
            ops.append({"op": k, "team": rng.randint(1, team)})
        elif k in ("join", "leave_team"):
            ops.append({"op": k, "team": rng.randint(1, team), "emp": rng.randint(1, emp)})
        elif k == "bulk_join":
            ops.append({"op": k, "team": rng.randint(1, team), "emps": rng.sample(range(1, emp + 1), min(3, emp))})
        elif k in ("relocate", "entity"):
            ops.append({"op": k, "emp": rng.randint(1, emp), "to": rng.randint(1, 3 if k == "relocate" else 2)})
        else:
            ops.append({"op": k, "emp": rng.randint(1, emp), "last": rng.choice(LAST),
                        "manager": rng.randint(1, emp), "preferred": rng.choice(FIRST + [None])})
        paper.play(ops[-1])
    return ops


class World:
    """Plays the changes: the fake Factorial's records follow them, and each
    change makes the delivery Factorial sends for it (type, body)."""

    def __init__(self, fake):
        self.fake = fake
        self.employees = {}
        self.teams = {}
        self.memberships = {}
        self.next_membership = 1
        self.seconds = 0
        self.deliveries = []

    def stamp(self):
        """updated_at of the next change: a second after the previous one."""
        import datetime
        self.seconds += 1
        t = datetime.datetime(2026, 11, 27, 8, 0, 0) + datetime.timedelta(seconds=self.seconds, milliseconds=7)
        return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def send(self, type_, body):
        self.deliveries.append((type_, json.dumps(self.fake.to_agent(body), ensure_ascii=False)))

    def put_employee(self, e, type_):
        e["updated_at"] = self.stamp()
        self.employees[e["id"]] = e
        self.fake.put_employee(copy.deepcopy(e))
        self.send(type_, e)

    def put_team(self, t, type_):
        with self.fake.lock:
            self.fake.teams[t["id"]] = copy.deepcopy(t)
        self.send(type_, t)

    def membership(self, team, emp):
        key = (team, emp)
        if key not in self.memberships:
            self.memberships[key] = {"id": self.next_membership, "company_id": 1234, "employee_id": emp,
                                     "team_id": team, "lead": False}
            self.next_membership += 1
        return dict(self.memberships[key])

    def play(self, op):
        """Plays one change; returns the deliveries it made."""
        before = len(self.deliveries)
        getattr(self, "op_" + op["op"])(op)
        return self.deliveries[before:]

    # employees
    def op_hire(self, op):
        if op["id"] in self.employees:
            return
        manager = op["manager"] if op["manager"] in self.employees else None
        e = {"id": op["id"], "access_id": 1000 + op["id"], "first_name": op["first"],
             "last_name": f"{op['last']}{op['id']}", "full_name": f"{op['first']} {op['last']}{op['id']}",
             "preferred_name": None, "login_email": f"e{op['id']}@example.com", "legal_entity_id": 1,
             "company_id": 1234, "location_id": 1, "manager_id": manager, "terminated_on": None,
             "active": True, "is_terminating": False, "attendable": True}
        self.put_employee(e, "employees/employee/create_with_contract")

    def changed(self, op, **fields):
        e = self.employees.get(op["emp"])
        if e is None:
            return None
        e = dict(e, **fields)
        return e

    def op_rename(self, op):
        e = self.changed(op)
        if e:
            last = f"{op['last']}{e['id']}x{self.seconds}"
            e.update(last_name=last, full_name=f"{e['first_name']} {last}")
            self.put_employee(e, "employees/employee/update")

    def op_manager(self, op):
        e = self.changed(op)
        if e and op["manager"] != e["id"] and op["manager"] in self.employees:
            e["manager_id"] = op["manager"]
            self.put_employee(e, "employees/employee/update")

    def op_preferred(self, op):
        e = self.changed(op, preferred_name=op["preferred"])
        if e:
            self.put_employee(e, "employees/employee/update")

    def op_relocate(self, op):
        e = self.changed(op, location_id=op["to"])
        if e:
            self.put_employee(e, "employees/employee/update")

    def op_entity(self, op):
        e = self.changed(op, legal_entity_id=op["to"])
        if e:
            self.put_employee(e, "employees/employee/update")

    def op_touch(self, op):
        e = self.changed(op)
        if e:
            self.put_employee(e, "employees/employee/set_regular_access_start_date")

    def op_leave_now(self, op):
        e = self.changed(op, terminated_on="2026-11-26", active=False, is_terminating=False)
        if e:
            self.put_employee(e, "employees/employee/terminate")

    def op_leave_later(self, op):
        e = self.changed(op)
        if e and e["active"]:
            e.update(terminated_on="2026-12-20", is_terminating=True)
            self.put_employee(e, "employees/employee/terminate")

    def op_come_back(self, op):
        e = self.changed(op)
        if e and e["terminated_on"]:
            e.update(terminated_on=None, active=True, is_terminating=False)
            self.put_employee(e, "employees/employee/unterminate")

    # teams
    def op_team_create(self, op):
        if op["id"] in self.teams:
            return
        t = {"id": op["id"], "name": f"Team {op['id']}", "description": f"Team number {op['id']}",
             "company_id": 1234, "employee_ids": [m for m in op["members"] if m in self.employees],
             "lead_ids": []}
        self.teams[t["id"]] = t
        self.put_team(t, "teams/team/create")

    def op_team_rename(self, op):
        t = self.teams.get(op["team"])
        if t:
            t = dict(t, name=f"Team {t['id']} v{self.seconds}")
            self.teams[t["id"]] = t
            self.put_team(t, "teams/team/update")

    def op_team_delete(self, op):
        t = self.teams.pop(op["team"], None)
        if t:
            with self.fake.lock:
                self.fake.teams.pop(t["id"], None)
            self.send("teams/team/delete", t)

    def op_join(self, op):
        t = self.teams.get(op["team"])
        if t and op["emp"] in self.employees and op["emp"] not in t["employee_ids"]:
            t = dict(t, employee_ids=t["employee_ids"] + [op["emp"]])
            self.teams[t["id"]] = t
            with self.fake.lock:
                self.fake.teams[t["id"]] = copy.deepcopy(t)
            self.send("teams/membership/create", self.membership(t["id"], op["emp"]))

    def op_leave_team(self, op):
        t = self.teams.get(op["team"])
        if t and op["emp"] in t["employee_ids"]:
            t = dict(t, employee_ids=[m for m in t["employee_ids"] if m != op["emp"]])
            self.teams[t["id"]] = t
            with self.fake.lock:
                self.fake.teams[t["id"]] = copy.deepcopy(t)
            self.send("teams/membership/delete", self.membership(t["id"], op["emp"]))

    def op_bulk_join(self, op):
        t = self.teams.get(op["team"])
        if not t:
            return
        new = [e for e in op["emps"] if e in self.employees and e not in t["employee_ids"]]
        if new:
            t = dict(t, employee_ids=t["employee_ids"] + new)
            self.teams[t["id"]] = t
            with self.fake.lock:
                self.fake.teams[t["id"]] = copy.deepcopy(t)
            self.send("teams/membership/bulk_upsert", [self.membership(t["id"], e) for e in new])


class Arrivals:
    """The order Factorial's retries give: about one in ten deliveries late (after up to
    60 newer ones), about one in ten delivered twice."""

    def __init__(self, seed):
        self.rng = random.Random(seed * 7919 + 1)
        self.waiting = []  # (when, delivery)
        self.made = 0

    def add(self, delivery):
        i = self.made
        self.made += 1
        late = self.rng.randint(5, 60) if self.rng.random() < 0.1 else 0
        self.waiting.append((i + late + self.rng.random() * 0.5, delivery))
        if self.rng.random() < 0.1:
            self.waiting.append((i + self.rng.randint(1, 80) + self.rng.random(), delivery))

    def due(self, everything=False):
        """The deliveries whose time has come, in arrival order."""
        self.waiting.sort(key=lambda x: x[0])
        n = len(self.waiting) if everything else sum(1 for w, _ in self.waiting if w < self.made)
        out = [d for _, d in self.waiting[:n]]
        del self.waiting[:n]
        return out


# ---- one day against a real slapd and run ---------------------------------------------

class Day:
    def __init__(self, seed, ops, mapping=MAPPING, tag=""):
        self.seed = seed
        self.ops = ops
        self.mapping = mapping
        self.tag = tag  # in the kept log's name: a shrinking run keeps the first failure's log

    def run(self):
        """None when the day converged, else what went wrong."""
        with Slapd() as ldap, FakeFactorial(fixtures=None) as fake, AgentDir() as d:
            world = World(fake)
            fake.locations = {i: {"id": i, "name": f"Office {i}"} for i in (1, 2, 3)}
            d.file("mapping.yaml", self.mapping)
            cfg = d.daemon(ldap_uri=ldap.uri, base_url=fake.base_url, enrich=True,
                           public_url="https://agent.example.com/hooks",
                           extra="queue: { retry_delay: 1s, max_attempts: 30, workers: 4 }\n"
                                 "sync: { interval: 0 }\nsafety: { max_disables: 100000 }\n")
            env = {"FACTORIAL_LDAP_AGENT_NOW": NOW}
            agent = AgentProcess(cfg, os.path.join(d.path, "agent.log"), env=env).start()
            try:
                problem = self.live(agent, world)
                if not problem:
                    problem = self.drained(agent)
                if not problem:
                    problem = self.in_step(cfg, env)
                if not problem:
                    before = ldap.dump()
                    problem = self.post(agent, world.deliveries) or self.drained(agent)
                    if not problem and ldap.dump() != before:
                        problem = "replaying every delivery changed the directory"
                if problem:
                    kept = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fla-convergence-{self.seed}{self.tag}.log")
                    with open(kept, "w") as f:
                        f.write(agent.log_text())
                    problem += f"\n(the agent's whole log: {kept})\n" + "\n".join(agent.log_text().splitlines()[-40:])
                return problem
            finally:
                agent.stop()

    def live(self, agent, world):
        """Plays the changes one by one, posting the deliveries whose time has come as it goes."""
        arrivals = Arrivals(self.seed)
        for op in self.ops:
            for delivery in world.play(op):
                arrivals.add(delivery)
            problem = self.post(agent, arrivals.due())
            if problem:
                return problem
        return self.post(agent, arrivals.due(everything=True))

    @staticmethod
    def post(agent, deliveries):
        for type_, body in deliveries:
            status = http("POST", agent.url("/hooks/" + type_), body, H)[0]
            if status != 200:
                return f"a {type_} delivery was answered {status}"
        return None

    @staticmethod
    def drained(agent):
        try:
            wait_for(lambda: metric(agent, "queue_depth") == 0 and Day.settled(agent), 240, 0.2,
                     what="the queue to drain")
        except AssertionError as e:
            return str(e)
        dead = metric(agent, "dead_letters")
        return f"{dead:.0f} deliveries ended as dead letters" if dead else None

    @staticmethod
    def settled(agent):
        time.sleep(0.3)
        return metric(agent, "queue_depth") == 0

    @staticmethod
    def in_step(cfg, env):
        r = run_agent("-c", cfg, "sync", "--dry-run", env=env, timeout=300)
        last = r.stderr.splitlines()[-1] if r.stderr else ""
        if r.returncode != 0 or last != "0 to add, 0 to modify, 0 to rename, 0 to disable, 0 to delete":
            return f"sync --dry-run after the day (exit {r.returncode}) wants:\n{r.stdout}\n{r.stderr[-3000:]}"
        return None


def shrink(seed, ops, budget=SHRINK_SECONDS, mapping=MAPPING):
    """The shortest sub-sequence of changes found that still fails (delta debugging),
    within budget seconds: the best found by then."""
    deadline = time.monotonic() + budget
    n = 2
    while len(ops) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(ops) // n)
        smaller = None
        for start in range(0, len(ops), chunk):
            if time.monotonic() >= deadline:
                break
            candidate = ops[:start] + ops[start + chunk:]
            if candidate and Day(seed, candidate, mapping, tag="-shrink").run():
                smaller = candidate
                break
        if smaller is not None:
            ops = smaller
            n = max(n - 1, 2)
        elif chunk == 1:
            break
        else:
            n = min(n * 2, len(ops))
    return ops


class Findings(ServersCase):
    """The three ways the two roads once parted, each on its own."""

    enrich = False
    mapping = MAPPING

    def setUp(self):
        super().setUp()
        self.cfg = self.d.daemon(ldap_uri=self.ldap.uri, base_url=self.fake.base_url, enrich=self.enrich,
                                 extra="queue: { retry_delay: 1s }\nsync: { interval: 0 }\n")
        self.env = {"FACTORIAL_LDAP_AGENT_NOW": NOW}
        self.agent = AgentProcess(self.cfg, os.path.join(self.d.path, "agent.log"), env=self.env).start()
        self.addCleanup(self.agent.stop)

    def person(self, i, first, last, stamp, **kw):
        e = {"id": i, "first_name": first, "last_name": last, "full_name": f"{first} {last}",
             "login_email": f"p{i}@example.com", "legal_entity_id": 1, "company_id": 1234, "manager_id": None,
             "terminated_on": None, "active": True, "updated_at": stamp}
        e.update(kw)
        return e

    def deliver(self, type_, body, drain=True):
        self.assertEqual(http("POST", self.agent.url("/hooks/" + type_), json.dumps(self.fake.to_agent(body)), H)[0], 200)
        if drain:
            self.assertIsNone(Day.drained(self.agent), self.agent.log_text())

    def in_step(self):
        self.assertIsNone(Day.in_step(self.cfg, self.env))

    def members(self, cn):
        return sorted(self.ldap.entry(f"cn={cn},ou=groups,dc=example,dc=com")["member"])


class TestStaleRetry(Findings):
    def test_an_older_snapshot_after_a_newer_one_changes_nothing(self):
        people, former = "ou=people,dc=example,dc=com", "ou=former,dc=example,dc=com"
        self.deliver("employees/employee/create_with_contract",
                     self.person(1, "Ana", "Stale", "2026-11-27T09:00:00.000Z"))
        left = self.person(1, "Ana", "Stale", "2026-11-27T11:00:00.000Z", terminated_on="2026-11-26", active=False)
        self.deliver("employees/employee/terminate", left)
        self.assertEqual(self.ldap.entry(f"uid=ana.stale,{former}")["loginShell"], ["/usr/sbin/nologin"])
        # Factorial's retry of the 10:00 update comes after the 11:00 termination
        self.deliver("employees/employee/update",
                     self.person(1, "Ana", "Stale", "2026-11-27T10:00:00.000Z", phone_number="+34 1"))
        entry = self.ldap.entry(f"uid=ana.stale,{former}")
        self.assertEqual(entry["loginShell"], ["/usr/sbin/nologin"])
        self.assertNotIn("telephoneNumber", entry)
        self.assertIsNone(self.ldap.entry(f"uid=ana.stale,{people}"))
        self.assertIn(f"employee {wid(1)} (update): skipped-stale: updated_at 2026-11-27T10:00:00.000Z is older than "
                      "2026-11-27T11:00:00.000Z, already applied: nothing changes", self.agent.log_text())
        self.assertEqual(metric(self.agent, "applies_total", operation="skipped-stale", result="ok"), 1)
        import sqlite3
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        rows = db.execute("SELECT event, record_id, attributes FROM audit WHERE operation = 'skipped-stale'").fetchall()
        db.close()
        self.assertEqual(rows, [("employees/employee/update", wid(1), "2026-11-27T10:00:00.000Z")])
        # the same snapshot again applies (and changes nothing): equal is not older
        self.deliver("employees/employee/terminate", left)
        self.assertEqual(metric(self.agent, "applies_total", operation="skipped-stale", result="ok"), 1)
        self.assertEqual(self.ldap.entry(f"uid=ana.stale,{former}")["loginShell"], ["/usr/sbin/nologin"])


class TestReturningEmployee(Findings):
    enrich = True

    def test_a_return_rejoins_the_teams_factorial_lists(self):
        for e in (self.person(1, "Ana", "Team", "2026-11-27T09:00:00.000Z"),
                  self.person(3, "Eva", "Back", "2026-11-27T09:00:01.000Z")):
            self.fake.put_employee(e)
            self.deliver("employees/employee/create_with_contract", e)
        team = {"id": 5, "name": "Ops", "description": "Ops", "company_id": 1234, "employee_ids": [1, 3]}
        with self.fake.lock:
            self.fake.teams[5] = dict(team)
        self.deliver("teams/team/create", team)
        eva = "uid=eva.back,ou=people,dc=example,dc=com"
        self.assertIn(eva, self.members("team-ops"))
        gone = self.person(3, "Eva", "Back", "2026-11-27T10:00:00.000Z", terminated_on="2026-11-26", active=False)
        self.fake.put_employee(gone)
        self.deliver("employees/employee/terminate", gone)
        self.assertEqual(self.members("team-ops"), ["uid=ana.team,ou=people,dc=example,dc=com"])
        back = self.person(3, "Eva", "Back", "2026-11-27T11:00:00.000Z")
        self.fake.put_employee(back)
        self.deliver("employees/employee/unterminate", back)
        self.assertEqual(self.members("team-ops"), ["uid=ana.team,ou=people,dc=example,dc=com", eva])
        self.assertEqual(self.ldap.entry(eva)["loginShell"], ["/bin/bash"])
        self.in_step()


class TestLateMembershipDelete(Findings):
    enrich = True

    def test_a_late_delete_does_not_remove_a_member_who_joined_again(self):
        e = self.person(1, "Ana", "Again", "2026-11-27T09:00:00.000Z")
        self.fake.put_employee(e)
        self.deliver("employees/employee/create_with_contract", e)
        team = {"id": 5, "name": "Ops", "description": "Ops", "company_id": 1234, "employee_ids": []}
        with self.fake.lock:
            self.fake.teams[5] = dict(team)
        self.deliver("teams/team/create", team)
        membership = {"id": 9, "company_id": 1234, "employee_id": 1, "team_id": 5, "lead": False}
        # she joined, left and joined again; the delete's first attempt failed and its retry comes last
        with self.fake.lock:
            self.fake.teams[5]["employee_ids"] = [1]
        self.deliver("teams/membership/create", membership)
        self.deliver("teams/membership/create", membership)
        self.deliver("teams/membership/delete", membership)
        self.assertEqual(self.members("team-ops"), ["uid=ana.again,ou=people,dc=example,dc=com"])
        self.in_step()


class TestConvergence(unittest.TestCase):
    pass


class TestConvergenceSites(unittest.TestCase):
    pass


def _day_test(seed, sites=False):
    mapping = SITES_MAPPING if sites else MAPPING

    def test(self):
        ops = plan_day(seed, DELIVERIES, sites)
        problem = Day(seed, ops, mapping).run()
        if problem:
            detail = f"seed {seed} did not converge: {problem}"
            if SHRINK:
                small = shrink(seed, ops, mapping=mapping)
                detail += (f"\nshortest failing sequence found ({len(small)} of {len(ops)} changes):\n" +
                           "\n".join(json.dumps(o) for o in small))
            self.fail(detail)
    return test


for _seed in range(FIRST_SEED, FIRST_SEED + DAYS):
    setattr(TestConvergence, f"test_day_{_seed:04d}", _day_test(_seed))
for _seed in range(FIRST_SEED + 1000, FIRST_SEED + 1000 + SITE_DAYS):
    setattr(TestConvergenceSites, f"test_day_{_seed:04d}", _day_test(_seed, sites=True))


if __name__ == "__main__":
    taprunner.main()
