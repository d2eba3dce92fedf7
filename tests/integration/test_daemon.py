"""`run` and `sync` as a deployment meets them: one agent per state folder, a
start that fails before writing anything, a fair queue, health that costs the
directory nothing, OAuth rotation that survives a read-only configuration
folder, a start-up reconcile retried, honest sync summaries and audit, private
state files.  Real slapd, the fake Factorial."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import AGENT, AgentProcess, http, metric, run_agent, wait_for  # noqa: E402
from fakefactorial import AGENT_API_VERSION, wid  # noqa: E402
from servercase import ServersCase  # noqa: E402
from slapd import free_port  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import MAPPING, person  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=com"
CHALLENGE = "test-challenge"
H = {"x-factorial-wh-challenge": CHALLENGE, "Content-Type": "application/json"}
TODAY = {"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}
EMPLOYEES = f"/api/{AGENT_API_VERSION}/resources/employees/employees/"


def tree(path):
    """Every file below path with its size, mode and content hash, to compare before and after."""
    import hashlib
    out = {}
    for root, dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            st = os.stat(p)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = (st.st_size, st.st_mode, st.st_mtime_ns,
                                                 hashlib.sha256(f.read()).hexdigest())
    return out


class Case(ServersCase):
    """A slapd, a fake Factorial and an agent folder; configurations made per test."""

    mapping = MAPPING

    def config(self, name="agent.yaml", port=None, public="https://agent.example.com/hooks", extra="",
               webhooks_extra="", state="state", enrich=False):
        with open(self.d.daemon(port=port, webhooks_extra=webhooks_extra, ldap_uri=self.ldap.uri,
                                base_url=self.fake.base_url, enrich=enrich, public_url=public, extra=extra)) as f:
            text = f.read().replace("state_dir: state\n", f"state_dir: {state}\n")
        return self.d.file(name, text)

    def start(self, cfg, log="agent.log", env=None):
        agent = AgentProcess(cfg, os.path.join(self.d.path, log), env=env).start()
        self.addCleanup(agent.stop)
        return agent

    def post(self, agent, type_, record):
        return http("POST", agent.url("/hooks/" + type_), json.dumps(self.fake.to_agent(record)), H)[0]

    def people_dns(self):
        return sorted(self.ldap.search(PEOPLE, scope="one", attrs=["1.1"]))


class TestOneAgentPerStateFolder(Case):
    def test_a_second_run_exits_at_once_naming_the_first(self):
        first = self.start(self.config(public="https://first.example.com/hooks",
                                       extra="sync: { interval: 0 }\n"))
        wait_for(lambda: len(self.fake.subscriptions) == 19, 30, what="the first agent's subscriptions")
        targets = sorted(s["target_url"] for s in self.fake.subscriptions.values())
        self.assertTrue(all(t.startswith("https://first.example.com/hooks/") for t in targets))
        second = self.config(name="second.yaml", public="https://second.example.com/hooks",
                             extra="sync: { interval: 0 }\n")
        t0 = time.monotonic()
        r = run_agent("-c", second, "run", timeout=30)
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"pid {first.proc.pid} (run)", r.stderr)
        self.assertIn(os.path.join(self.d.path, "state"), r.stderr)
        self.assertIn("one agent per state folder", r.stderr)
        time.sleep(0.5)
        self.assertEqual(sorted(s["target_url"] for s in self.fake.subscriptions.values()), targets)
        self.assertEqual(first.proc.poll(), None)

    def test_sync_refuses_while_run_holds_the_folder_and_sigusr1_reconciles(self):
        self.fake.put_employee(dict(person(1, "Ana", "Lock"), company_id=1234))
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        agent = self.start(cfg)
        r = run_agent("-c", cfg, "sync", env=TODAY)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"the agent running as pid {agent.proc.pid} (run) owns the state folder", r.stderr)
        self.assertIn(f"kill -USR1 {agent.proc.pid}", r.stderr)
        self.assertEqual(self.people_dns(), [])
        dry = run_agent("-c", cfg, "sync", "--dry-run", env=TODAY)
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertIn("1 to add", dry.stderr)
        self.assertEqual(run_agent("-c", cfg, "queue", "list").returncode, 0)
        agent.signal(signal.SIGUSR1)
        wait_for(lambda: self.people_dns() == [f"uid=ana.lock,{PEOPLE}"], 30, what="the requested reconcile")
        self.assertIn("sync: starting (SIGUSR1)", agent.log_text())

    def test_queue_retry_says_who_applies_the_deliveries(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 0 }\nqueue: { retry_delay: 1s, max_attempts: 1 }\n")
        agent = self.start(cfg)
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract",
                                   person(7, "No", "Mail", login_email=None)), 200)
        wait_for(lambda: metric(agent, "dead_letters") == 1, 30, what="a dead letter")
        r = run_agent("-c", cfg, "queue", "retry")
        self.assertEqual((r.returncode, r.stdout), (0, "1 delivery queued again\n"))
        self.assertIn(f"the agent running as pid {agent.proc.pid} (run) applies them now", r.stderr)
        wait_for(lambda: metric(agent, "dead_letters") == 1 and metric(agent, "queue_depth") == 0, 30,
                 what="the retry to fail again")
        agent.stop()
        r = run_agent("-c", cfg, "queue", "retry")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no agent is running on", r.stderr)
        self.assertIn("they are applied when `run` starts", r.stderr)


class TestQueueListing(Case):
    def test_pending_deliveries_are_listed_with_what_they_wait_for(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        with open(cfg) as f:
            self.d.file("agent.yaml", f.read().replace(self.ldap.uri, "ldap://127.0.0.1:9"))
        agent = self.start(cfg)
        for i in (1, 2):
            self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(i, "Q", f"Row{i}")), 200)
        r = run_agent("-c", cfg, "queue", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "2 pending, 0 held, 0 dead")
        self.assertEqual(len(lines), 4, r.stdout)
        self.assertRegex(lines[2], r"^1\s+pending\s+\S+\s+employees/employee/create_with_contract\s+0\s+employee:" + wid(1) + ": due$")
        self.assertRegex(lines[3], r"^2\s+pending\s+.*employee:" + wid(2) + ": due$")
        self.assertEqual(json.loads(run_agent("-c", cfg, "queue", "list", "--json").stdout)["counts"],
                         {"pending": 2, "held": 0, "dead": 0})
        self.assertEqual(run_agent("-c", cfg, "queue", "list", "--bogus").returncode, 2)


class TestServiceManager(Case):
    """Under systemd (Type=notify): ready once listening, reloading and ready again on SIGHUP,
    stopping on SIGTERM."""

    def test_sd_notify(self):
        path = os.path.join(self.d.path, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30)
        self.addCleanup(sock.close)
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        agent = self.start(cfg, env={"NOTIFY_SOCKET": path})
        self.assertEqual(sock.recv(4096), b"READY=1\nSTATUS=listening")
        self.assertIn(http("GET", agent.url("/healthz"))[0], (200, 503))  # ready means answering
        agent.signal(signal.SIGHUP)
        self.assertEqual(sock.recv(4096), b"RELOADING=1")
        self.assertEqual(sock.recv(4096), b"READY=1\nSTATUS=reloaded")
        agent.signal(signal.SIGTERM)
        self.assertEqual(sock.recv(4096), b"STOPPING=1")


class TestMonitoring(Case):
    def test_metrics_on_their_own_loopback_listener_with_sync_and_subscription_health(self):
        self.fake.put_employee(dict(person(1, "Ana", "Mon"), company_id=1234))
        cfg = self.config(webhooks_extra="", extra="sync: { interval: 1h }\n")
        agent = self.start(cfg)
        # not on the webhook listener, which whoever sends deliveries reaches
        self.assertEqual(http("GET", f"http://127.0.0.1:{agent.port}/metrics")[0], 404)
        self.assertEqual(http("GET", f"http://127.0.0.1:{agent.port}/healthz")[0], 404)
        wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 200, 30, what="/healthz")
        wait_for(lambda: metric(agent, "last_sync_success_timestamp_seconds") > 0 and
                 metric(agent, "subscriptions_ok") == 1, 30, what="the start-up sync and subscription check")
        self.assertEqual(metric(agent, "build_info", version="0.1.0"), 1)
        self.assertEqual(metric(agent, "directory_up"), 1)
        self.assertEqual(metric(agent, "subscriptions_wanted"), 19)
        self.assertEqual(metric(agent, "subscriptions_repaired_total"), 19)  # all made at the first check
        self.assertEqual(metric(agent, "sync_failures_total"), 0)
        self.assertEqual(metric(agent, "held_deliveries"), 0)
        self.assertGreater(metric(agent, "subscriptions_checked_timestamp_seconds"), time.time() - 60)
        status, text = http("GET", agent.url("/metrics"))
        self.assertIn("# TYPE factorial_ldap_agent_sync_failures_total counter\n", text)
        # the alert rules and the dashboard in examples/ use only metrics the agent has
        import re
        from agenttest import TOP_SRCDIR
        shown = set(re.findall(r"^# TYPE (factorial_ldap_agent_\w+)", text, re.M))
        for example in ("prometheus-alerts.yml", "grafana-dashboard.json"):
            with open(os.path.join(TOP_SRCDIR, "examples", example)) as f:
                used = {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"factorial_ldap_agent_\w+", f.read())}
            self.assertTrue(used, example)
            self.assertEqual(used - shown, set(), example)
        # the directory goes away: directory_up follows /healthz
        self.ldap.stop()
        wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 503, 60, what="/healthz 503")
        self.assertEqual(metric(agent, "directory_up"), 0)


class TestStartOrder(Case):
    def test_a_port_in_use_ends_the_start_having_written_nothing(self):
        # a first run leaves a store, a subscription set and an entry behind
        cfg = self.config(public="https://agent.example.com/hooks", extra="sync: { interval: 1h }\n")
        agent = self.start(cfg)
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Port")), 200)
        wait_for(lambda: self.people_dns() == [f"uid=ana.port,{PEOPLE}"], 30, what="the entry")
        wait_for(lambda: len(self.fake.subscriptions) == 19, 30, what="the subscriptions")
        self.assertEqual(agent.stop(), 0)
        # then the configuration changes (another public URL, a drifted employee) and the port is taken
        self.fake.put_employee(dict(person(2, "Eva", "Port"), company_id=1234))
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = free_port()
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        self.addCleanup(busy.close)
        cfg = self.config(port=port, public="https://moved.example.com/hooks", extra="sync: { interval: 1h }\n")
        store = tree(os.path.join(self.d.path, "state"))
        subs = json.dumps(self.fake.subscriptions, sort_keys=True)
        requests = len(self.fake.requests)
        entries = self.ldap.search("dc=example,dc=com", attrs=["*", "+"])
        t0 = time.monotonic()
        r = run_agent("-c", cfg, "run", timeout=30)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"webhooks.listen: cannot listen on 127.0.0.1:{port}: Address already in use", r.stderr)
        self.assertEqual(tree(os.path.join(self.d.path, "state")), store)
        self.assertEqual(json.dumps(self.fake.subscriptions, sort_keys=True), subs)
        self.assertEqual(len(self.fake.requests), requests)
        self.assertEqual(self.ldap.search("dc=example,dc=com", attrs=["*", "+"]), entries)


class TestFairQueue(Case):
    def test_refused_deliveries_do_not_delay_a_good_one(self):
        # the directory refuses every employee that has a shoe size (an attribute its schema lacks)
        self.d.file("mapping.yaml", MAPPING.replace("    loginShell: /bin/bash\n",
                                                    "    loginShell: /bin/bash\n    shoeSize: \"{shoe}\"\n"))
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 0 }\nqueue: { retry_delay: 1s, max_attempts: 1000 }\n")
        agent = self.start(cfg)
        bad = 3000

        def send(i):
            return self.post(agent, "employees/employee/update", dict(person(10000 + i, f"B{i}", "Bad"), shoe=42))

        with ThreadPoolExecutor(8) as pool:
            self.assertEqual(set(pool.map(send, range(bad))), {200})
        # every bad one was refused at least once: they back off and come back, again and again
        wait_for(lambda: metric(agent, "queue_depth") == bad and "attempt 1 of 1000" in agent.log_text()
                 and self.refused(agent) >= bad, 180, 0.5, what="every bad delivery refused once")
        t0 = time.monotonic()
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Good", "Hire")), 200)
        wait_for(lambda: self.people_dns() == [f"uid=good.hire,{PEOPLE}"], 30, 0.02, what="the good hire")
        self.assertLess(time.monotonic() - t0, 2.0, "a good delivery waited behind refused ones")

    def test_a_delivery_backing_off_does_not_hold_back_the_record_it_waits_for(self):
        # a membership for employee 8 arrives before 8's hire: it fails (no entry yet) and is
        # retried a minute later; the hire, which merely is named by it, goes at once
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 0 }\nqueue: { retry_delay: 60s, max_attempts: 5 }\n")
        agent = self.start(cfg)
        self.assertEqual(self.post(agent, "teams/team/create", {"id": 3, "name": "Ops", "employee_ids": []}), 200)
        ops = "cn=team-ops,ou=groups,dc=example,dc=com"
        wait_for(lambda: self.ldap.entry(ops), 30, what="the team's group")
        self.assertEqual(self.post(agent, "teams/membership/create", {"id": 1, "employee_id": 8, "team_id": 3}), 200)
        wait_for(lambda: f"membership {wid(1)}: employee {wid(8)} has no entry in the directory yet" in agent.log_text()
                 and "attempt 1 of 5, next in" in agent.log_text(), 30, what="the membership to fail once")
        t0 = time.monotonic()
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(8, "Wai", "Ting")), 200)
        wait_for(lambda: self.people_dns() == [f"uid=wai.ting,{PEOPLE}"], 30, 0.02, what="the hire")
        self.assertLess(time.monotonic() - t0, 5.0, "the hire waited for the membership backing off")
        # the membership is still the one waiting for its turn, not the hire
        listing = run_agent("-c", cfg, "queue", "list").stdout
        self.assertIn("1 pending, 0 held, 0 dead", listing)
        self.assertRegex(listing, r"pending\s+\S+\s+teams/membership/create\s+1\s+membership:" + wid(3) + ":" + wid(8))

    @staticmethod
    def refused(agent):
        return metric(agent, "applies_total", operation="none", result="error")


class TestHealth(Case):
    def slapd_options(self):
        return {"log_operations": True}

    def test_healthz_asks_the_directory_nothing_and_still_sees_it_go(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        agent = self.start(cfg)
        wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 200, 10, what="a healthy agent")
        before = len(self.ldap.operations())
        for _ in range(100):
            status, body = http("GET", agent.url("/healthz"))
            self.assertEqual(status, 200)
        self.assertEqual(len(self.ldap.operations()), before, "health checks reached the directory")
        self.assertRegex(body, r"^ok\ndirectory ldap://127\.0\.0\.1:\d+: ok.*\nstate store: ok\n"
                               r"queue: 0 pending, 0 held, 0 dead\n$")
        self.ldap.pause()
        t0 = time.monotonic()
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(http("GET", agent.url("/healthz"))),
                                15, 0.2, what="503")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertIn(f"directory {self.ldap.uri}: unreachable", body)
        self.ldap.resume()
        wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 200, 30, what="health back")

    def test_the_public_healthz_says_a_word_and_nothing_else(self):
        # for a load balancer that probes the webhooks' port: a status and a word; the directory's
        # address, its errors and the queue only on the metrics listener
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n  public_healthz: true\n",
                          extra="sync: { interval: 0 }\n")
        agent = self.start(cfg)
        public = f"http://127.0.0.1:{agent.port}/healthz"
        wait_for(lambda: http("GET", public)[0] == 200, 10, what="a healthy agent")
        self.assertEqual(http("GET", public), (200, "ok\n"))
        self.assertIn("queue: 0 pending", http("GET", agent.url("/healthz"))[1])
        self.ldap.stop()
        wait_for(lambda: http("GET", public)[0] == 503, 30, what="503")
        self.assertEqual(http("GET", public), (503, "unavailable\n"))
        self.assertIn(f"directory {self.ldap.uri}: unreachable", http("GET", agent.url("/healthz"))[1])


class TestAppliedAgain(Case):
    """The workers record what they applied (done marks, audit, versions) without waiting for
    the disk, so a power cut can undo the last of those commits, in the order they were made:
    those deliveries are then applied again.  Here the state a power cut would leave is made by
    hand: the second apply writes nothing, and what it could not redo (who has left, the groups
    a leaver was taken out of) was kept."""

    def test_deliveries_whose_done_marks_are_undone_change_nothing(self):
        ana = person(1, "Ana", "Again", updated_at="2026-11-01T10:00:00.000Z")
        gone = dict(ana, terminated_on="2026-11-20", active=False, updated_at="2026-11-20T10:00:00.000Z")
        steps = [("employees/employee/create_with_contract", "employee:" + wid(1), ana),
                 ("teams/team/create", "team:" + wid(5), {"id": 5, "name": "Ops", "employee_ids": [1]}),
                 ("employees/employee/terminate", "employee:" + wid(1), gone)]
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        agent = self.start(cfg)
        ops = "cn=team-ops,ou=groups,dc=example,dc=com"
        for type_, _, body in steps:
            self.assertEqual(self.post(agent, type_, body), 200)
            wait_for(lambda: metric(agent, "queue_depth") == 0, 30, what="the queue to drain")
        former = "uid=ana.again,ou=former,dc=example,dc=com"
        self.assertIsNotNone(self.ldap.entry(former))
        self.assertNotIn(former, self.ldap.entry(ops, ["member"]).get("member", []))
        agent.stop()
        before = self.ldap.search("dc=example,dc=com", attrs=["entryCSN"])
        # the last two deliveries' done marks and the versions they recorded are undone
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        with db:
            db.execute("DELETE FROM versions WHERE record = ?", ("employee:" + wid(1),))
            db.execute("INSERT INTO versions (record, updated, stamp) VALUES (?, 1793527200, ?)",
                       ("employee:" + wid(1), ana["updated_at"]))
            for type_, key, body in steps[1:]:
                cur = db.execute("INSERT INTO deliveries (type, record_key, body, received) VALUES (?, ?, ?, ?)",
                                 (type_, key, json.dumps(self.fake.to_agent(body)), "2026-11-27T10:00:00.000Z"))
                if key.startswith("team:"):
                    db.execute("INSERT INTO delivery_refs (ref_key, delivery_id) VALUES (?, ?)",
                               ("employee:" + wid(1), cur.lastrowid))
        db.close()
        agent = self.start(cfg, log="again.log")
        wait_for(lambda: metric(agent, "queue_depth") == 0, 30, what="the deliveries applied again")
        self.assertEqual(metric(agent, "dead_letters"), 0)
        self.assertEqual(self.ldap.search("dc=example,dc=com", attrs=["entryCSN"]), before, agent.log_text())
        # the groups she left are still known: her return puts her back
        back = dict(ana, updated_at="2026-11-25T10:00:00.000Z")
        self.assertEqual(self.post(agent, "employees/employee/unterminate", back), 200)
        ana_dn = "uid=ana.again,ou=people,dc=example,dc=com"
        wait_for(lambda: ana_dn in self.ldap.entry(ops, ["member"]).get("member", []), 30, what="her return")


class TestGuardEvaluatesOnce(Case):
    def slapd_options(self):
        return {"log_operations": True}

    def key_searches(self):
        """Searches slapd logged that look for employee 1's entry (alone, or with its unique values)."""
        return sum(1 for line in self.ldap.log_text().splitlines() if " SRCH base=" in line and f"(employeeNumber={wid(1)})" in line)

    def test_a_termination_under_the_guard_is_read_and_searched_once(self):
        ana = dict(person(1, "Ana", "Once"), company_id=1234)
        self.fake.put_employee(ana)
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 0 }\nsafety: { max_disables: 5 }\n", enrich=True)
        agent = self.start(cfg)
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", ana), 200)
        wait_for(lambda: self.people_dns() == [f"uid=ana.once,{PEOPLE}"], 30, what="the entry")
        gone = dict(ana, terminated_on="2026-11-20", active=False)
        self.fake.put_employee(gone)
        reads = sum(1 for r in self.fake.requests if r[1].startswith(EMPLOYEES + wid(1)))
        searches = self.key_searches()
        self.assertEqual(self.post(agent, "employees/employee/terminate", gone), 200)
        wait_for(lambda: self.ldap.entry("uid=ana.once,ou=former,dc=example,dc=com"), 30, what="the termination")
        wait_for(lambda: metric(agent, "queue_depth") == 0, 30, what="the queue to drain")
        # the guard was asked (5 a hour) and the delivery read from the API and searched for once, not twice
        self.assertEqual(sum(1 for r in self.fake.requests
                             if r[1].startswith(EMPLOYEES + wid(1))), reads + 1)
        self.assertEqual(self.key_searches(), searches + 1)
        self.assertEqual(metric(agent, "applies_total", operation="disable", result="ok"), 1)


class TestLookalikeIds(Case):
    def test_ids_the_directory_would_take_for_others_change_nothing(self):
        # a leaked challenge, and ids that a directory's matching rules (spaces and width aside)
        # would take for employee 1 and team 6: no one leaves the group, the group stays
        ana = dict(person(1, "Ana", "Alike"), company_id=1234)
        self.fake.put_employee(ana)
        with self.fake.lock:
            self.fake.teams[6] = {"id": 6, "name": "Ops", "description": "Ops", "employee_ids": [1]}
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n",
                          enrich=True)
        agent = self.start(cfg)
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", ana), 200)
        self.assertEqual(self.post(agent, "teams/team/create", self.fake.teams[6]), 200)
        group = "cn=team-ops,ou=groups,dc=example,dc=com"
        wait_for(lambda: (self.ldap.entry(group) or {}).get("member") == [f"uid=ana.alike,{PEOPLE}"], 30,
                 what="the group")
        before = self.ldap.dump()
        one, six = wid(1), wid(6)
        forged = [("teams/membership/delete", {"id": 9, "employee_id": one + " ", "team_id": six}),
                  ("teams/membership/delete", {"id": 9, "employee_id": "".join(chr(0xFF10 + int(c)) for c in one),
                                               "team_id": six}),
                  ("teams/membership/delete", {"id": 9, "employee_id": "0" + one, "team_id": six}),
                  ("teams/team/delete", {"id": six + " ", "name": "Ops"}),
                  ("teams/team/delete", {"id": " " + six, "name": "Ops"}),
                  ("employees/employee/terminate", dict(ana, id=one + " ", terminated_on="2026-11-01"))]
        for type_, body in forged:
            status = http("POST", agent.url("/hooks/" + type_), json.dumps(body), H)[0]
            self.assertEqual(status, 200, body)
        # refused for good at once, not retried: no retry makes them ids (those of one record applied
        # together are one dead letter)
        wait_for(lambda: metric(agent, "queue_depth") == 0 and metric(agent, "dead_letters") > 0 and
                 self.settled(agent), 15, what="every forged delivery refused")
        self.assertNotIn("failed (attempt 1 of", agent.log_text())
        self.assertIn("failed for good (no retry can change it), kept as a dead letter: ", agent.log_text())
        self.assertEqual(self.ldap.dump(), before)
        log = agent.log_text()
        for said in (f'employee_id "{one} " is not an id', f'team "{six} ": id "{six} " is not an id',
                     f'employee "{one} ": id "{one} " is not an id'):
            self.assertIn(said, log)
        # nor was the API asked for them (a team "6 " the API does not know was once taken as deleted)
        self.assertEqual([r for r in self.fake.requests if "%20" in r[1] or "%EF%BC" in r[1] or "/0" in r[1]], [])

    @staticmethod
    def settled(agent):
        time.sleep(0.5)
        return metric(agent, "queue_depth") == 0


class TestEnrichedReferences(Case):
    def test_a_manager_only_the_api_names_is_not_changed_under_the_delivery(self):
        # the employee's delivery names no manager; the API's record does, and that
        # manager is being renamed by another worker: the delivery waits for it
        boss = dict(person(1, "Ana", "Boss"), company_id=1234)
        staff = dict(person(2, "Luis", "Gil"), company_id=1234)
        for p in (boss, staff):
            self.fake.put_employee(p)
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n",
                          enrich=True)
        agent = self.start(cfg)
        for p in (boss, staff):
            self.assertEqual(self.post(agent, "employees/employee/create_with_contract", p), 200)
        wait_for(lambda: self.people_dns() == [f"uid=ana.boss,{PEOPLE}", f"uid=luis.gil,{PEOPLE}"], 30,
                 what="the entries")
        renamed = dict(boss, first_name="Anna", full_name="Anna Boss")
        self.fake.put_employee(renamed)
        self.fake.put_employee(dict(staff, manager_id=1))
        self.fake.slow_next(2.0, prefix=EMPLOYEES + wid(1))
        self.assertEqual(self.post(agent, "employees/employee/update", renamed), 200)
        wait_for(lambda: not self.fake.faults, 30, what="the manager's delivery to read her")
        self.assertEqual(self.post(agent, "employees/employee/update", staff), 200)
        new_dn = f"uid=anna.boss,{PEOPLE}"
        wait_for(lambda: (self.ldap.entry(f"uid=luis.gil,{PEOPLE}") or {}).get("manager") == [new_dn], 30,
                 what="the manager reference")
        wait_for(lambda: metric(agent, "queue_depth") == 0, 30, what="the queue to drain")
        log = agent.log_text()
        self.assertIn(f"employee:{wid(2)}: waits for employee:{wid(1)}, which is being applied now", log)
        lines = log.splitlines()
        done = [i for i, line in enumerate(lines) if ": ok (" in line]
        boss_ok = [i for i in done if f" employee:{wid(1)}: " in lines[i]][-1]
        staff_ok = [i for i in done if f" employee:{wid(2)}: " in lines[i]][-1]
        self.assertLess(boss_ok, staff_ok)


class TestCoalescedReferences(Case):
    def test_a_later_delivery_of_the_run_names_a_record_being_applied(self):
        # two deliveries of Luis wait to be applied together; only the second names Ana, his new
        # manager, whose own delivery is being applied: the run waits for her, as the first alone would not
        ana, luis, cy = (dict(person(i, f, "Run"), company_id=1234) for i, f in ((1, "Ana"), (2, "Luis"), (3, "Cy")))
        for p in (ana, luis, cy):
            self.fake.put_employee(p)
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 0 }\nqueue: { workers: 2 }\n", enrich=True)
        agent = self.start(cfg)
        for p in (ana, luis, cy):
            self.assertEqual(self.post(agent, "employees/employee/create_with_contract", p), 200)
        wait_for(lambda: len(self.people_dns()) == 3, 30, what="the entries")
        renamed = dict(ana, first_name="Anna", full_name="Anna Run")
        self.fake.put_employee(renamed)
        self.fake.put_employee(dict(luis, manager_id=1))
        # both workers busy: Anna's rename (3 s) and Cy's update (1 s)
        self.fake.slow_next(3.0, prefix=EMPLOYEES + wid(1))
        self.fake.slow_next(1.0, prefix=EMPLOYEES + wid(3))
        self.assertEqual(self.post(agent, "employees/employee/update", renamed), 200)
        self.assertEqual(self.post(agent, "employees/employee/update", cy), 200)
        wait_for(lambda: not self.fake.faults, 30, what="both workers to be busy")
        self.assertEqual(self.post(agent, "employees/employee/update", luis), 200)
        self.assertEqual(self.post(agent, "employees/employee/update", dict(luis, manager_id=1)), 200)
        new_dn = f"uid=anna.run,{PEOPLE}"
        wait_for(lambda: metric(agent, "queue_depth") == 0 and
                 (self.ldap.entry(f"uid=luis.run,{PEOPLE}") or {}).get("manager") == [new_dn], 30,
                 what="Luis's manager")
        lines = agent.log_text().splitlines()
        done = [i for i, line in enumerate(lines) if ": ok (" in line]
        self.assertLess([i for i in done if f" employee:{wid(1)}: " in lines[i]][-1],
                        [i for i in done if f" employee:{wid(2)}: " in lines[i]][-1])


class TestContractVersions(Case):
    """A new job title comes as a contract version: its webhook re-reads the employee, with the title
    in force today; one dated later is applied on its day."""
    mapping = MAPPING.replace("    loginShell: /bin/bash\n", "    loginShell: /bin/bash\n    title: \"{job_title}\"\n")

    def test_a_title_changes_through_its_webhook_and_a_later_one_on_its_day(self):
        clock = self.d.file("now", "2026-11-27T09:00:00Z\n")
        ana = dict(person(1, "Ana", "Titulo"), company_id=1234)
        self.fake.put_employee(ana)
        self.fake.contract_versions = {1: {"id": 1, "employee_id": 1, "job_title": "Engineer",
                                           "effective_on": "2026-01-01"}}
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", enrich=True,
                          extra="sync: { interval: 0 }\nqueue: { schedule_check: 1s }\n")
        agent = self.start(cfg, env={"FACTORIAL_LDAP_AGENT_NOW": "@" + clock})
        dn = f"uid=ana.titulo,{PEOPLE}"
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", ana), 200)
        wait_for(lambda: (self.ldap.entry(dn) or {}).get("title") == ["Engineer"], 30, what="the first title")
        # a promotion in force today
        self.fake.contract_versions[2] = {"id": 2, "employee_id": 1, "job_title": "Senior Engineer",
                                          "effective_on": "2026-11-27"}
        self.assertEqual(self.post(agent, "contracts/contract_version/create", self.fake.contract_versions[2]), 200)
        wait_for(lambda: self.ldap.entry(dn).get("title") == ["Senior Engineer"], 30, what="the promotion")
        # one dated next month: nothing changes today, and it is applied on its day
        self.fake.contract_versions[3] = {"id": 3, "employee_id": 1, "job_title": "Staff Engineer",
                                          "effective_on": "2026-12-15"}
        self.assertEqual(self.post(agent, "contracts/contract_version/create", self.fake.contract_versions[3]), 200)
        wait_for(lambda: "the contract version taking effect on 2026-12-15 is applied on that day" in agent.log_text(),
                 30, what="the later one scheduled")
        self.assertEqual(self.ldap.entry(dn)["title"], ["Senior Engineer"])
        self.d.file("now", "2026-12-15T00:10:00Z\n")
        wait_for(lambda: self.ldap.entry(dn).get("title") == ["Staff Engineer"], 30, what="the title on its day")
        self.assertIn(f"employee {wid(1)}: contract version taking effect: queued", agent.log_text())


class TestRelatedRecords(Case):
    """{location.name} in run: the locations are read once, and again when a record names one
    made since."""
    mapping = MAPPING.replace("    cn: \"{full_name}\"\n", "    cn: \"{full_name}\"\n    l: \"{location.name}\"\n", 1)

    def test_a_new_location_is_read_when_a_record_names_it(self):
        self.assertNotEqual(self.mapping, MAPPING)
        self.fake.locations = {1: {"id": 1, "name": "Madrid HQ"}}
        agent = self.start(self.config(webhooks_extra="  manage_subscriptions: false\n",
                                       extra="sync: { interval: 0 }\n"))
        reads = lambda: sum(1 for r in self.fake.requests if "/resources/locations/locations" in r[1])  # noqa: E731
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Loc", location_id=1)), 200)
        wait_for(lambda: self.ldap.entry(f"uid=ana.loc,{PEOPLE}"), 30, what="the entry")
        self.assertEqual(self.ldap.entry(f"uid=ana.loc,{PEOPLE}")["l"], ["Madrid HQ"])
        self.assertEqual(reads(), 1)
        # a second delivery reads nothing again
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(2, "Bo", "Loc", location_id=1)), 200)
        wait_for(lambda: self.ldap.entry(f"uid=bo.loc,{PEOPLE}"), 30, what="the second entry")
        self.assertEqual(reads(), 1)
        # Lisbon opens after the read (past the 5 s within which a missing one is taken as unknown)
        time.sleep(5.5)
        self.fake.locations[3] = {"id": 3, "name": "Lisbon"}
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(3, "Cy", "Loc", location_id=3)), 200)
        wait_for(lambda: self.ldap.entry(f"uid=cy.loc,{PEOPLE}"), 30, what="the third entry")
        self.assertEqual(self.ldap.entry(f"uid=cy.loc,{PEOPLE}")["l"], ["Lisbon"])
        self.assertEqual(reads(), 2)
        self.assertIn("reading the locations and legal entities again", agent.log_text())
        self.assertEqual(metric(agent, "dead_letters"), 0)


class TestMissingScope(Case):
    """An OAuth app without the contracts scope, a mapping with a job title: each employee delivery
    fails as that record's failure, naming the scope; the rest of the queue goes on."""
    mapping = TestContractVersions.mapping

    def test_deliveries_are_not_held_behind_it(self):
        self.fake.withheld_scopes = {"contracts"}
        ana = dict(person(1, "Ana", "Scope"), company_id=1234)
        self.fake.put_employee(ana)
        self.fake.teams = {4: {"id": 4, "name": "Ops", "employee_ids": []}}
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", enrich=True,
                          extra="sync: { interval: 0 }\nqueue: { retry_delay: 1s, max_attempts: 2 }\n")
        agent = self.start(cfg)
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", ana), 200)
        self.assertEqual(self.post(agent, "teams/team/create", {"id": 4, "name": "Ops", "employee_ids": []}), 200)
        wait_for(lambda: self.ldap.entry("cn=team-ops,ou=groups,dc=example,dc=com"), 10, what="the team, meanwhile")
        wait_for(lambda: metric(agent, "dead_letters") == 1, 30, what="the employee's dead letter")
        listing = run_agent("-c", cfg, "queue", "list").stdout
        self.assertIn("HTTP 403: the token may not read contract versions: an OAuth app needs the contracts scope", listing)
        self.assertNotIn("unavailable", agent.log_text())


class TestLocationRenamed(Case):
    """A location renamed in Factorial: its webhook reads the locations again and applies its people
    again, who move to the OU of its new name and carry it in l."""
    mapping = MAPPING.replace("  base: ou=people,dc=example,dc=com\n",
                              "  base: \"ou={location.name|slug},ou=people,dc=example,dc=com\"\n  create_bases: true\n",
                              1).replace("    cn: \"{full_name}\"\n", "    cn: \"{full_name}\"\n    l: \"{location.name}\"\n", 1)

    def test_the_people_follow_the_new_name(self):
        self.assertNotIn("  base: ou=people,dc=example,dc=com\n", self.mapping)
        self.fake.locations = {1: {"id": 1, "name": "Madrid Office"}, 2: {"id": 2, "name": "Paris"}}
        people = [dict(person(1, "Ana", "Sede", location_id=1), company_id=1234),
                  dict(person(2, "Bo", "Sede", location_id=1), company_id=1234),
                  dict(person(3, "Cy", "Sede", location_id=2), company_id=1234)]
        for p in people:
            self.fake.put_employee(p)
        agent = self.start(self.config(webhooks_extra="  manage_subscriptions: false\n",
                                       extra="sync: { interval: 0 }\n"))
        for p in people:
            self.assertEqual(self.post(agent, "employees/employee/create_with_contract", p), 200)
        wait_for(lambda: len(self.ldap.search(PEOPLE, "(employeeNumber=*)", attrs=["1.1"])) == 3, 30,
                 what="the three entries")
        self.assertEqual(self.ldap.entry(f"uid=ana.sede,ou=madrid-office,{PEOPLE}")["l"], ["Madrid Office"])
        self.fake.locations[1] = {"id": 1, "name": "Madrid HQ"}
        self.assertEqual(self.post(agent, "locations/location/update", self.fake.locations[1]), 200)
        for who in ("ana", "bo"):
            wait_for(lambda: (self.ldap.entry(f"uid={who}.sede,ou=madrid-hq,{PEOPLE}") or {}).get("l") == ["Madrid HQ"],
                     30, what=f"{who} in the renamed location")
        self.assertIsNone(self.ldap.entry(f"uid=ana.sede,ou=madrid-office,{PEOPLE}"))
        # the people of other locations are left as they are
        self.assertEqual(self.ldap.entry(f"uid=cy.sede,ou=paris,{PEOPLE}")["l"], ["Paris"])
        self.assertIn(f"2 people of location {wid(1)} queued to be applied again", agent.log_text())
        self.assertEqual(metric(agent, "dead_letters"), 0)


class TestOAuthRotation(Case):
    """The configuration folder is read-only for the agent's user (as under ProtectSystem=strict)."""

    def oauth_config(self):
        self.d.secret("client-secret", "test-client-secret")
        self.d.secret("refresh-token", "test-refresh-token")
        cfg = self.config(extra="sync: { interval: 0 }\n")
        text = open(cfg).read().replace(
            "  api_key_file: api-key\n",
            f"  oauth:\n    token_url: {self.fake.base_url}/oauth/token\n    client_id: test-client\n"
            "    client_secret_file: client-secret\n    refresh_token_file: refresh-token\n")
        return self.d.file("agent.yaml", text)

    def as_nobody(self):
        """The agent runs as nobody: it reads its configuration and writes only its state folder."""
        if not os.path.exists("/usr/bin/setpriv"):
            self.skipTest("setpriv (util-linux) is missing")
        os.chmod(self.d.path, 0o755)
        for name in os.listdir(self.d.path):
            p = os.path.join(self.d.path, name)
            if os.stat(p).st_mode & 0o077 == 0 and os.path.isfile(p):
                os.chown(p, 65534, 65534)  # secrets: the agent's own, 0600
        os.chown(os.path.join(self.d.path, "state"), 65534, 65534)
        os.chmod(os.path.join(self.d.path, "state"), 0o700)
        return ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

    def start_as(self, prefix, cfg, log):
        agent = AgentProcess(cfg, os.path.join(self.d.path, log))
        agent.command = prefix + [AGENT, "-c", cfg, "run"]
        agent.start()
        self.addCleanup(agent.stop)
        return agent

    def test_rotation_survives_a_restart_with_a_read_only_configuration_folder(self):
        cfg = self.oauth_config()
        prefix = self.as_nobody()
        agent = self.start_as(prefix, cfg, "one.log")
        wait_for(lambda: len(self.fake.subscriptions) == 19, 30, what="subscriptions made with an OAuth token")
        self.assertEqual(agent.stop(), 0)
        kept = os.path.join(self.d.path, "state", "oauth-refresh-token")
        with open(kept) as f:
            token = f.read().strip()
        self.assertEqual(self.fake.refresh_tokens, {token})  # the seed is spent, the rotated one is kept
        self.assertEqual(os.stat(kept).st_mode & 0o777, 0o600)
        with open(os.path.join(self.d.path, "refresh-token")) as f:
            self.assertEqual(f.read(), "test-refresh-token\n")
        self.assertNotIn("could not be saved", agent.log_text())
        # a restart spends the kept token, not the spent seed
        self.fake.subscriptions.clear()
        requests = self.fake.token_requests
        agent = self.start_as(prefix, cfg, "two.log")
        wait_for(lambda: len(self.fake.subscriptions) == 19, 30, what="subscriptions after the restart")
        self.assertEqual(self.fake.token_requests, requests + 1)
        self.assertNotIn("invalid_grant", agent.log_text())
        self.assertEqual(metric(agent, "oauth_refresh_token_unsaved"), 0)

    def test_a_token_that_cannot_be_saved_is_kept_in_memory_and_shown(self):
        cfg = self.oauth_config()
        with open(cfg) as f:
            text = f.read().replace("  challenge_file: challenge\n", "  challenge_file: challenge\n  check_interval: 1s\n")
        self.d.file("agent.yaml", text)
        os.makedirs(os.path.join(self.d.path, "state", "oauth-refresh-token.new"))  # in the way of the new file
        agent = self.start(cfg)
        wait_for(lambda: len(self.fake.subscriptions) == 19, 30, what="subscriptions")
        self.assertIn("OAuth: the rotated refresh token could not be saved", agent.log_text())
        self.assertIn("make the state folder writable", agent.log_text())
        self.assertEqual(metric(agent, "oauth_refresh_token_unsaved"), 1)
        self.assertFalse(os.path.exists(os.path.join(self.d.path, "state", "oauth-refresh-token")))
        # the agent goes on with the rotated token it holds in memory
        requests = self.fake.token_requests
        self.fake.expire_access_tokens()
        wait_for(lambda: self.fake.token_requests > requests, 30, what="another refresh")
        time.sleep(1.5)
        self.assertNotIn("invalid_grant", agent.log_text())
        self.assertNotIn("subscriptions: OAuth", agent.log_text())


class TestRefreshTokenWeek(Case):
    """Factorial's refresh tokens last a week: an idle run (nothing delivered, no sync, no subscription
    upkeep) spends its token in time, eight days running, and says how old it is."""

    def test_kept_alive_across_eight_idle_days(self):
        import datetime
        self.d.secret("client-secret", "test-client-secret")
        self.d.secret("refresh-token", "test-refresh-token")
        start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        clock = self.d.file("now", start.strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 0 }\nqueue: { schedule_check: 1s }\n")
        text = open(cfg).read().replace(
            "  api_key_file: api-key\n",
            f"  oauth:\n    token_url: {self.fake.base_url}/oauth/token\n    client_id: test-client\n"
            "    client_secret_file: client-secret\n    refresh_token_file: refresh-token\n")
        self.d.file("agent.yaml", text)
        agent = self.start(cfg, env={"FACTORIAL_LDAP_AGENT_NOW": "@" + clock})
        wait_for(lambda: self.fake.token_requests >= 1, 30, what="the first token")
        # spent at three days old: one, two, renewed (0), one, two, renewed, one, two
        for day, age in zip(range(1, 9), (1, 2, 0, 1, 2, 0, 1, 2)):
            self.fake.advance(86400)
            self.d.file("now", (start + datetime.timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
            if age:
                wait_for(lambda: abs(metric(agent, "oauth_refresh_token_age_seconds") - age * 86400) < 5, 30,
                         what=f"a refresh token {age} days old on day {day}")
            else:
                wait_for(lambda: "oauth_refresh_token_age_seconds" not in http("GET", agent.url("/metrics"))[1] or
                         metric(agent, "oauth_refresh_token_age_seconds") < 5, 30,
                         what=f"the refresh token renewed on day {day}")
        # on the eighth day the API still takes the agent's token
        self.assertNotIn("could not be renewed", agent.log_text())
        self.assertNotIn("invalid_grant", agent.log_text())
        self.assertGreaterEqual(self.fake.token_requests, 3)  # spent on days 3 and 6 at least
        self.assertNotIn("test-refresh-token", self.fake.refresh_tokens)


class TestStartupReconcileRetried(Case):
    def test_a_failed_start_up_reconcile_is_tried_again(self):
        self.fake.put_employee(dict(person(1, "Ana", "Retry"), company_id=1234))
        self.fake.fail_next(500, count=12, prefix=f"/api/{AGENT_API_VERSION}/resources/employees/")
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n",
                          extra="sync: { interval: 1h, retry_delay: 1s }\n")
        agent = self.start(cfg, env=TODAY)
        wait_for(lambda: self.people_dns() == [f"uid=ana.retry,{PEOPLE}"], 60, what="the retried reconcile")
        log = agent.log_text()
        self.assertIn("sync: starting (at start)", log)
        self.assertIn("sync: trying again in 1 s", log)
        self.assertIn("sync: starting (trying again after a failure)", log)


class TestSyncHonesty(Case):
    def sync_config(self, n, managed=False):
        for i in range(1, n + 1):
            # with managed, each one's manager comes later in the list (a second look resolves it)
            self.fake.put_employee(dict(person(i, f"P{i}", "Sync", manager_id=i + 1 if managed and i < n else None),
                                        company_id=1234))
        return self.config(webhooks_extra="  manage_subscriptions: false\n")

    def test_a_base_that_does_not_exist_is_counted_as_failures(self):
        self.d.file("mapping.yaml", MAPPING.replace("base: ou=people,dc=example,dc=com",
                                                    "base: ou=nowhere,dc=example,dc=com"))
        cfg = self.sync_config(14, managed=True)  # a record that failed is counted once, not again at the second look
        r = run_agent("-c", cfg, "sync", env=TODAY)
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.splitlines()
        self.assertEqual(sum("No such object (32)" in line for line in lines), 14, r.stderr)
        self.assertIn("14 employees read; 14 records checked, 14 differed, 14 failed; 0 orphans", r.stderr)
        self.assertEqual(lines[-1], "0 added, 0 modified, 0 renamed, 0 disabled, 0 deleted, 14 failed")

    def test_an_interrupted_sync_reports_what_it_did_and_the_audit_matches(self):
        cfg = self.sync_config(3000)
        proc = subprocess.Popen([AGENT, "-c", cfg, "sync"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, **TODAY))
        wait_for(lambda: len(self.people_dns()) >= 100 or proc.poll() is not None, 120, 0.05,
                 what="the sync to be under way")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, err[-3000:])
        added = len(self.people_dns())
        self.assertLess(added, 3000)
        self.assertIn("sync: SIGINT: stopped between two operations", err)
        self.assertIn("(interrupted)", err)
        self.assertEqual(err.splitlines()[-1], f"{added} added, 0 modified, 0 renamed, 0 disabled, 0 deleted")
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        audited = sorted(row[0] for row in db.execute("SELECT dn FROM audit WHERE operation = 'add'"))
        db.close()
        self.assertEqual(audited, self.people_dns())
        # a log line for each add, and none for one that was not made
        self.assertEqual(err.count(" (sync): add uid="), added)


def post_from(source, port, path, body, timeout=10):
    """The status of a POST made from the local address `source` (127.0.0.2, say)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        c.request("POST", path, body=body, headers=H)
        return c.getresponse().status
    finally:
        c.close()


def exchange(port, raw, timeout=10):
    """What the agent answers to raw bytes sent on one connection, read until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        out = b""
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    return out, True
                out += got
        except socket.timeout:
            return out, False


class TestHostileClients(Case):
    def test_a_length_two_readers_could_read_two_ways_is_refused(self):
        # behind a proxy that frames by Content-Length, a chunked body could carry a second request
        agent = self.start(self.config())
        t = "/hooks/employees/employee/create_with_contract"
        hidden = json.dumps(self.fake.to_agent(person(2, "Hidden", "Request")))
        smuggled = (f"POST {t} HTTP/1.1\r\nHost: agent\r\nx-factorial-wh-challenge: {CHALLENGE}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(hidden)}\r\n\r\n{hidden}")
        head = f"POST {t} HTTP/1.1\r\nHost: agent\r\nx-factorial-wh-challenge: {CHALLENGE}\r\n"
        one = json.dumps(self.fake.to_agent(person(1, "Ana", "Framed")))
        cases = {
            "both": head + f"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
            "both, the other way round": head + f"Transfer-Encoding: chunked\r\nContent-Length: {len(one)}\r\n\r\n"
                                                f"{len(one):x}\r\n{one}\r\n0\r\n\r\n" + smuggled,
            "two lengths that differ": head + f"Content-Length: {len(one)}\r\nContent-Length: 0\r\n\r\n{one}" + smuggled,
            "two lengths alike": head + f"Content-Length: {len(one)}\r\nContent-Length: {len(one)}\r\n\r\n{one}",
            "an encoding other than chunked": head + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled,
        }
        for why, raw in cases.items():
            out, closed = exchange(agent.port, raw.encode())
            self.assertTrue(out.startswith(b"HTTP/1.1 400 "), (why, out[:200]))
            self.assertEqual(out.count(b"HTTP/1.1 "), 1, (why, out))  # nothing after it was read as a request
            self.assertTrue(closed, why)
        # a plain delivery still goes in, and nothing of the refused ones did
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(3, "Eva", "Plain")), 200)
        wait_for(lambda: self.people_dns() == [f"uid=eva.plain,{PEOPLE}"], 30, what="the plain delivery")
        self.assertEqual(metric(agent, "deliveries_total", type="employees/employee/create_with_contract",
                                status="400"), len(cases))
        for why in ("both Content-Length and Transfer-Encoding", "more than one Content-Length",
                    "a Transfer-Encoding other than chunked"):
            wait_for(lambda: f"(400 ({why})" in agent.log_text() or f"refused 400 ({why})" in agent.log_text()
                     or f" 400 ({why}) " in agent.log_text(), 15, what=why)
        self.assertEqual(self.people_dns(), [f"uid=eva.plain,{PEOPLE}"])

    def test_keep_alive_connections_held_from_many_addresses_keep_no_delivery_out(self):
        # 17 addresses, each holding as many connections as one address may (16), each connection
        # kept alive with a request every few seconds: no deadline fires, and they are more than the
        # agent takes at once (256); /healthz on the webhooks' port, as for a load balancer, answers them
        import resource
        import selectors
        import threading
        agent = self.start(self.config(webhooks_extra="  public_healthz: true\n"))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        sources = [f"127.0.0.{i}" for i in range(2, 19)]
        probe = b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n"
        stop = threading.Event()
        reconnects = [0]

        def attack():
            sel = selectors.DefaultSelector()
            due = {}

            def connect(src):
                try:
                    c = socket.create_connection(("127.0.0.1", agent.port), timeout=2, source_address=(src, 0))
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, src)
                    due[c] = time.monotonic()
                except OSError:
                    pass
            for src in sources:
                for _ in range(16):
                    connect(src)
            while not stop.is_set():
                now = time.monotonic()
                for c, when in list(due.items()):
                    if when <= now:
                        try:
                            c.send(probe)
                        except OSError:
                            pass
                        due[c] = now + 5
                for key, _ in sel.select(0.05):
                    c = key.fileobj
                    try:
                        data = c.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:  # closed by the agent: back at once
                        sel.unregister(c)
                        due.pop(c, None)
                        c.close()
                        reconnects[0] += 1
                        connect(key.data)
            for c in list(due):
                c.close()

        # Factorial's own connection, kept alive after a delivery, keeps its place
        import http.client
        factorial = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=5, source_address=("127.0.0.50", 0))
        self.addCleanup(factorial.close)
        factorial.request("POST", "/hooks/employees/employee/update", headers=H,
                          body=json.dumps(self.fake.to_agent(person(99, "Kept", "Alive"))))
        self.assertEqual(factorial.getresponse().read() and 200, 200)
        kept = factorial.sock
        attacker = threading.Thread(target=attack)
        attacker.start()
        try:
            time.sleep(3)  # the connections are all open and kept alive
            factorial.request("POST", "/hooks/employees/employee/update", headers=H,
                              body=json.dumps(self.fake.to_agent(person(98, "Still", "Alive"))))
            self.assertEqual(factorial.getresponse().status, 200)
            self.assertIs(factorial.sock, kept)  # the same connection: not closed to make room
            took = []
            for i in range(100):
                start = time.monotonic()
                try:
                    st = post_from("127.0.0.100", agent.port, "/hooks/employees/employee/update",
                                   json.dumps(self.fake.to_agent(person(100 + i, f"P{i}", "Through"))), timeout=3)
                except OSError:
                    st = None
                took.append((st, time.monotonic() - start))
                time.sleep(0.1)
        finally:
            stop.set()
            attacker.join()
        fast = [t for st, t in took if st == 200 and t < 2]
        self.assertGreaterEqual(len(fast), 99, took)
        self.assertGreater(reconnects[0], 0)  # the attack's connections were the ones closed
        self.assertIn("idle one(s) to make room", agent.log_text())

    def test_a_flood_of_refused_requests_grows_the_log_by_a_line_now_and_then(self):
        # one client without the challenge, as fast as it can for ten seconds, at the default level
        import http.client
        agent = self.start(self.config(), env={"FACTORIAL_LDAP_AGENT_LOG_LEVEL": "info"})
        before = len(agent.log_text().encode())
        path = "/hooks/employees/employee/create_with_contract/%E2%80%AEtxt.exe" + "x" * 3000
        body = json.dumps(person(9, "No", "Challenge"))
        c = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
        sent, end = 0, time.monotonic() + 10
        while time.monotonic() < end:
            for target, headers in ((path, {}), ("/hooks/employees/employee/update",
                                                 {"x-factorial-wh-challenge": "wrong" + "y" * 500})):
                try:
                    c.request("POST", target, body=body, headers=dict(headers, **{"Content-Type": "application/json"}))
                    c.getresponse().read()
                    sent += 1
                except (OSError, http.client.HTTPException):
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
        c.close()
        self.assertGreater(sent, 2000)

        def summed():
            return sum(int(m.group(1)) for m in re.finditer(r"refused (\d+) more requests? in \d+ s: ", agent.log_text()))
        # every refusal is counted: the first said at once, the others in the summaries
        wait_for(lambda: summed() == sent - 1, 15, what=f"{sent - 1} refusals summed up")
        grown = len(agent.log_text().encode()) - before
        self.assertLess(grown, 64 * 1024, agent.log_text()[-3000:])
        log = agent.log_text()
        self.assertIn("refused 404 (no such path): POST /hooks/employees/employee/create_with_contract/\\u202etxt.exe"
                      "xxxx", log)
        self.assertRegex(log, r"401 \(wrong challenge\) \d+: 127\.0\.0\.1 \d+")
        self.assertNotIn("\u202e", log)
        self.assertNotIn("y" * 100, log)

    def test_stalled_connections_from_one_address_keep_no_delivery_out(self):
        import resource
        agent = self.start(self.config())
        # this process may hold more sockets than the agent (whose limit is the usual 1024)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        stalled = []
        self.addCleanup(lambda: [s.close() for s in stalled])
        for _ in range(1500):  # headers begun and never finished
            try:
                s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
                stalled.append(s)
                s.sendall(b"POST /hooks/employees/employee/create_with_contract HTTP/1.1\r\nHost: agent\r\n")
            except OSError:
                pass  # closed by the agent: one address may hold only so many
        start = time.monotonic()
        self.assertEqual(post_from("127.0.0.2", agent.port, "/hooks/employees/employee/create_with_contract",
                                   json.dumps(self.fake.to_agent(person(1, "Ana", "Other")))), 200)
        self.assertLess(time.monotonic() - start, 5)
        wait_for(lambda: self.ldap.search(PEOPLE, f"(employeeNumber={wid(1)})", attrs=["uid"]), 30, what="the hire applied")


    def trickle_until_closed(self, agent, head, then, limit):
        """Sends head, then one byte of `then` a second; the seconds until the agent closes."""
        s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
        self.addCleanup(s.close)
        start = time.monotonic()
        s.sendall(head)
        for b in then:
            if time.monotonic() - start > limit:
                break
            time.sleep(0.5)
            try:
                s.sendall(bytes([b]))
            except OSError:
                return time.monotonic() - start  # reset by the agent
            s.settimeout(0.5)
            try:
                if s.recv(1024) == b"":
                    return time.monotonic() - start
            except socket.timeout:
                pass
            except OSError:
                return time.monotonic() - start
        return None

    def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_header_deadline(self):
        agent = self.start(self.config(webhooks_extra="  header_timeout: 2s\n  request_timeout: 4s\n"))
        took = self.trickle_until_closed(agent, b"POST /hooks/employees/employee/create_with_contract HTTP/1.1\r\n",
                                         b"X-Slow: " + b"a" * 200, 15)
        self.assertIsNotNone(took, "a connection that never finished its headers stayed open")
        self.assertLess(took, 5)
        self.assertGreaterEqual(took, 1.5)
        wait_for(lambda: "sent no complete request within 2 s" in agent.log_text(), 10, what="the cut logged")
        # a well-behaved delivery on the same listener is still served
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Prompt")), 200)

    def test_a_body_trickled_a_byte_at_a_time_is_cut_at_the_request_deadline(self):
        agent = self.start(self.config(webhooks_extra="  header_timeout: 2s\n  request_timeout: 4s\n"))
        head = (f"POST /hooks/employees/employee/create_with_contract HTTP/1.1\r\nHost: agent\r\n"
                f"x-factorial-wh-challenge: {CHALLENGE}\r\nContent-Type: application/json\r\n"
                f"Content-Length: 400\r\n\r\n").encode()
        took = self.trickle_until_closed(agent, head, b"{" + b" " * 399, 20)
        self.assertIsNotNone(took, "a body trickled forever kept its connection")
        self.assertLess(took, 7)
        self.assertGreaterEqual(took, 3.5)
        wait_for(lambda: "whose body took longer than 4 s" in agent.log_text(), 10, what="the cut logged")


def children(pid):
    """The pids whose parent is pid, with their command lines."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    out[int(name)] = f.read().rstrip(b"\0").decode()
        except (OSError, IndexError, ValueError):
            pass
    return out


def receiver_of(agent):
    found = [p for p, cmd in children(agent.proc.pid).items() if cmd == "factorial-ldap-agent: receiver"]
    return found[0] if len(found) == 1 else None


def status_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def memory_holds(pid, needles):
    """Which of needles appear in the process's memory (read as root; huge reserved regions skipped)."""
    seen = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or hi - lo > 64 << 20 or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            try:
                mem.seek(lo)
                chunk = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            seen.update(n for n in needles if n in chunk)
    return seen


class TestPrivilegeSeparation(Case):
    def intruder_env(self, **more):
        """tests/tools/intruder.so, loaded into the agent: it plays code an attacker got into the
        receiver after its sandbox was applied (the daemon never calls what it takes the place of)."""
        intruder = os.path.join(os.path.dirname(AGENT), "tests", "tools", "intruder.so")
        self.assertTrue(os.path.exists(intruder), f"{intruder} is not built (`make check` builds it)")
        return dict({"LD_PRELOAD": intruder,
                     "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}, **more)

    def test_a_compromised_receiver_reaches_nothing(self):
        # the rotated OAuth token, the daemon's state database (its tables: a far-future version
        # row kept a leaver active, forced rows passed the deletion guard), the directory by
        # ldapi:// and by TCP, a port of its own, the daemon's memory (what it publishes included:
        # a row count written there once crashed the daemon) are all out of its reach
        import urllib.parse
        self.d.secret("client-secret", "test-client-secret")
        self.d.secret("refresh-token", "test-refresh-token")
        text = open(self.config(extra="sync: { interval: 0 }\n")).read().replace(
            "  api_key_file: api-key\n",
            f"  oauth:\n    token_url: {self.fake.base_url}/oauth/token\n    client_id: test-client\n"
            "    client_secret_file: client-secret\n    refresh_token_file: refresh-token\n")
        cfg = self.d.file("agent.yaml", text)
        token = os.path.join(self.d.path, "state", "oauth-refresh-token")
        env = self.intruder_env(
            FLA_INTRUDER_TOKEN=token, FLA_INTRUDER_STATE=os.path.join(self.d.path, "state", "state.db"),
            FLA_INTRUDER_LDAPI=urllib.parse.unquote(self.ldap.ldapi_uri[len("ldapi://"):]),
            FLA_INTRUDER_TCP=self.ldap.uri[len("ldap://"):])
        agent = self.start(cfg, env=env)
        wait_for(lambda: os.path.exists(token), 30, what="the rotated OAuth token in the state folder")
        first = receiver_of(agent)
        os.kill(agent.proc.pid, signal.SIGHUP)  # a new receiver, now that the token is there
        wait_for(lambda: receiver_of(agent) not in (None, first), 30, what="a new receiver")
        wait_for(lambda: agent.log_text().count("intruder: done") >= 2, 30, what="the second receiver's attempts")
        # started as root without `user:`: it is nobody, with no capability, for good
        st = status_of(receiver_of(agent))
        self.assertEqual((st["CapEff"], st["CapPrm"], st["CapBnd"]), ("0" * 16,) * 3)
        self.assertEqual(st["Uid"].split(), ["65534"] * 4)
        self.assertEqual(st["Gid"].split(), ["65534"] * 4)
        self.assertEqual(status_of(agent.proc.pid)["Uid"].split(), ["0"] * 4)
        tried = [line.split("intruder: ", 1)[1] for line in agent.log_text().splitlines() if "intruder: " in line]
        tried = tried[tried.index("done") + 1:]  # the second receiver's
        for what in ("read the OAuth token", "open the daemon's state database",
                     "connect to the directory's ldapi socket",
                     "connect to the directory over TCP", "listen on a port of its own",
                     "write the daemon's published memory", "map the daemon's published memory to write",
                     "change the size of the daemon's published memory", "read the daemon's environment"):
            self.assertTrue(any(t.startswith(what + ": refused (") for t in tried), (what, tried))
        self.assertEqual([t for t in tried if t.endswith(": DONE")], [])
        # and it still does its own work
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Held")), 200)
        wait_for(lambda: self.people_dns() == [f"uid=ana.held,{PEOPLE}"], 30, what="the hire applied")
    def test_the_receiver_holds_the_challenge_and_no_credential(self):
        agent = self.start(self.config())
        rx = receiver_of(agent)
        self.assertIsNotNone(rx, f"no receiver process under {agent.proc.pid}: {children(agent.proc.pid)}")
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Split")), 200)
        wait_for(lambda: self.people_dns(), 30, what="the hire applied by the daemon")
        wait_for(lambda: len(self.fake.subscriptions) == 19, 30, what="subscriptions made with the API key")
        st = status_of(rx)
        self.assertEqual(st["NoNewPrivs"].strip(), "1")
        self.assertEqual(st["Seccomp"].strip(), "2")  # a filter
        secrets = [b"agent-secret", b"test-api-key", b"test-challenge"]
        self.assertEqual(memory_holds(rx, secrets), {b"test-challenge"})
        # the same reading finds the credentials where they are: in the daemon
        self.assertTrue({b"test-api-key"} <= memory_holds(agent.proc.pid, secrets))

    def test_a_receiver_that_dies_stops_the_agent_with_code_1(self):
        agent = self.start(self.config())
        rx = receiver_of(agent)
        os.kill(rx, signal.SIGKILL)
        self.assertEqual(agent.proc.wait(timeout=30), 1)
        self.assertIn(f"the receiver process (pid {rx}) ended (killed by signal 9)", agent.log_text())

    def test_sighup_starts_a_receiver_with_the_new_challenge(self):
        agent = self.start(self.config())
        first = receiver_of(agent)
        self.d.secret("challenge", "a-new-challenge")
        os.kill(agent.proc.pid, signal.SIGHUP)
        wait_for(lambda: receiver_of(agent) not in (None, first), 30, what="a new receiver")
        wait_for(lambda: not os.path.exists(f"/proc/{first}"), 30, what="the old receiver gone")
        body = json.dumps(self.fake.to_agent(person(2, "Bo", "Rotated")))
        url = agent.url("/hooks/employees/employee/create_with_contract")
        self.assertEqual(http("POST", url, body, H)[0], 401)
        self.assertEqual(http("POST", url, body, dict(H, **{"x-factorial-wh-challenge": "a-new-challenge"}))[0], 200)
        wait_for(lambda: self.people_dns(), 30, what="the hire applied")

    def test_the_daemon_takes_only_its_words_from_the_receiver(self):
        # the receiver's conversation with the daemon (fd 5) is messages the daemon checks: a new
        # receiver that writes anything else is stopped before it serves (the reload fails and the
        # old receiver goes on); the receiver serving that does so is stopped, and the agent with it
        flag = os.path.join(tempfile.mkdtemp(prefix="fla-garbage-"), "now")  # where nobody may look
        os.chmod(os.path.dirname(flag), 0o755)
        self.addCleanup(shutil.rmtree, os.path.dirname(flag))
        agent = self.start(self.config(), env=self.intruder_env(FLA_INTRUDER_GARBAGE=flag))
        first = receiver_of(agent)
        open(flag, "w").close()
        os.kill(agent.proc.pid, signal.SIGHUP)
        wait_for(lambda: "the receiver with the previous configuration goes on" in agent.log_text(), 30,
                 what="the reload to fail")
        broke = r"the receiver process \(pid (\d+)\) broke the conversation with the daemon \(a message of " \
                r"kind \d+, which this side does not take\): it is stopped"
        fresh = re.findall(broke, agent.log_text())
        self.assertEqual(len(fresh), 1, agent.log_text())
        self.assertNotEqual(int(fresh[0]), first)
        self.assertIsNone(agent.proc.poll(), agent.log_text())
        self.assertEqual(receiver_of(agent), first)
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Stays")), 200)
        wait_for(lambda: self.people_dns() == [f"uid=ana.stays,{PEOPLE}"], 30, what="the hire applied")
        os.kill(first, signal.SIGUSR2)  # the serving receiver writes the same bytes
        self.assertEqual(agent.proc.wait(30), 1)
        self.assertEqual([int(p) for p in re.findall(broke, agent.log_text())], [int(fresh[0]), first])

    def test_deliveries_a_compromised_receiver_forges_are_checked_again(self):
        # sent on the receiver's conversation with the daemon, past every check the receiver makes:
        # the daemon parses and scrubs each body again, and works out its record itself. The
        # directory is out of reach, so the one it takes stays in the queue while the state folder
        # is read: what was stored is what the daemon made of it, not what the receiver sent
        forged = self.fake.to_agent(person(72, "Forged", "Scrubbed", **{"Bank-Number": "ES9121000418450200051332",
                                                                        "identifier": "12345678Z"}))
        text = open(self.config()).read().replace(self.ldap.uri, f"ldap://127.0.0.1:{free_port()}")
        agent = self.start(self.d.file("agent.yaml", text),
                           env=self.intruder_env(FLA_INTRUDER_FORGE=json.dumps(forged)))
        wait_for(lambda: "intruder: forged deliveries sent" in agent.log_text(), 30, what="the forgeries")
        log = wait_for(lambda: (lambda t: t if t.count("the receiver sent a delivery the daemon refuses") >= 2
                                else None)(agent.log_text()), 30, what="the forgeries refused")
        self.assertIn("the receiver sent a delivery the daemon refuses (employees/employee/update: more than one "
                      "JSON value): answered 400", log)
        self.assertIn("the receiver sent a delivery the daemon refuses (no/such/type: not a subscription type the "
                      "agent knows): answered 400", log)
        db = os.path.join(self.d.path, "state", "state.db")

        def stored():
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return [r[0] for r in con.execute("SELECT body FROM deliveries")]
            finally:
                con.close()
        bodies = wait_for(stored, 30, what="the forged delivery the daemon took, queued")
        self.assertEqual(len(bodies), 1, bodies)
        body = json.loads(bodies[0])
        self.assertEqual(body["first_name"], "Forged")
        self.assertNotIn("Bank-Number", body)
        self.assertNotIn("identifier", body)
        self.assertIsNone(agent.proc.poll(), agent.log_text())
        state = os.path.join(self.d.path, "state")
        for name in os.listdir(state):
            with open(os.path.join(state, name), "rb") as f:
                data = f.read()
            for needle in (b"ES9121000418450200051332", b"12345678Z"):
                self.assertNotIn(needle, data, name)

    def test_started_as_root_with_user_it_runs_as_that_user(self):
        cfg = self.config(extra="user: nobody\n")
        # what the user reads at reload: its own secrets, a folder it can enter
        os.chmod(self.d.path, 0o755)
        for name in os.listdir(self.d.path):
            p = os.path.join(self.d.path, name)
            if os.path.isfile(p) and os.stat(p).st_mode & 0o077 == 0:
                os.chown(p, 65534, 65534)
        agent = self.start(cfg)
        rx = receiver_of(agent)
        for pid in (agent.proc.pid, rx):
            st = status_of(pid)
            self.assertEqual(st["Uid"].split(), ["65534"] * 4, pid)
            self.assertEqual(st["Gid"].split(), ["65534"] * 4, pid)
            self.assertEqual(st["Groups"].strip(), "", pid)
        self.assertIn("running as nobody (uid 65534, gid 65534)", agent.log_text())
        self.assertNotIn("running as root", agent.log_text())
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", person(1, "Ana", "Nobody")), 200)
        wait_for(lambda: self.people_dns(), 30, what="the hire applied")
        state = os.path.join(self.d.path, "state")
        for name in [""] + os.listdir(state):
            self.assertEqual(os.stat(os.path.join(state, name)).st_uid, 65534, name or state)

    def test_started_as_root_without_user_it_warns(self):
        agent = self.start(self.config())
        self.assertIn("running as root: set `user:`", agent.log_text())

    def test_an_unknown_user_is_a_configuration_mistake(self):
        cfg = self.config(extra="user: no-such-account\n")
        r = run_agent("-c", cfg, "run", timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"agent.yaml:\d+:\d+: user: no such user on this system")


class TestStateLinks(Case):
    def test_a_state_file_that_is_a_link_is_refused_and_nothing_is_made_where_it_points(self):
        # planted by whoever could write the folder once: followed by a root daemon, it would make
        # (or overwrite) a file wherever it points
        outside = os.path.join(self.d.path, "elsewhere")
        os.makedirs(outside)
        state = os.path.join(self.d.path, "state")
        os.makedirs(state, exist_ok=True)
        for name in ("state.db", "state.db-wal"):
            for f in os.listdir(state):
                os.remove(os.path.join(state, f))
            os.symlink(os.path.join(outside, "planted"), os.path.join(state, name))
            r = run_agent("-c", self.config(), "run", timeout=30)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(f"state store: {state}/{name} is a symbolic link: the state folder's files are the "
                          "agent's own; remove it", r.stderr)
            self.assertEqual(os.listdir(outside), [])
            r = run_agent("-c", self.config(), "queue", "list")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("is a symbolic link", r.stderr)
            self.assertEqual(os.listdir(outside), [])


class TestPrivateData(Case):
    def test_bank_social_security_and_salary_are_never_kept(self):
        agent = self.start(self.config(extra="log: { level: debug }\n"))
        secrets = ["ES9121000418450200051332", "281234567840", "5400000", "DEUTDEFF"]
        body = dict(person(1, "Ana", "Private"), bank_number=secrets[0], social_security_number=secrets[1],
                    salary_amount=int(secrets[2]), bank_account={"swift_bic": secrets[3]})
        self.ldap.stop()  # the delivery stays stored, waiting for the directory
        self.assertEqual(self.post(agent, "employees/employee/create_with_contract", body), 200)
        wait_for(lambda: metric(agent, "queue_depth") == 1, 30, what="the delivery stored")
        seen = agent.log_text() + http("GET", agent.url("/metrics"))[1]
        for root, _, files in os.walk(os.path.join(self.d.path, "state")):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    seen += f.read().decode("latin-1")
        for s in secrets:
            self.assertFalse(s in seen, f"{s} was kept or logged")
        self.assertTrue("Private" in seen, "the rest of the delivery was stored")


class TestPrivateState(Case):
    def test_state_files_are_private_whatever_the_umask(self):
        self.fake.put_employee(dict(person(1, "Ana", "Umask"), company_id=1234))
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", state="fresh-state")
        r = subprocess.run([AGENT, "-c", cfg, "sync"], capture_output=True, text=True,
                           env=dict(os.environ, **TODAY), preexec_fn=lambda: os.umask(0))
        self.assertEqual(r.returncode, 0, r.stderr)
        state = os.path.join(self.d.path, "fresh-state")
        self.assertEqual(os.stat(state).st_mode & 0o777, 0o700)
        names = sorted(os.listdir(state))
        self.assertIn("state.db", names)
        for name in names:
            self.assertEqual(os.stat(os.path.join(state, name)).st_mode & 0o777, 0o600, name)

    def test_files_an_older_version_left_open_are_narrowed(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        state = os.path.join(self.d.path, "state")
        db = sqlite3.connect(os.path.join(state, "state.db"))
        db.execute("CREATE TABLE t (x)")
        db.close()
        os.chmod(os.path.join(state, "state.db"), 0o644)
        self.assertEqual(run_agent("-c", cfg, "queue", "list").returncode, 0)
        self.assertEqual(os.stat(os.path.join(state, "state.db")).st_mode & 0o777, 0o600)

    def test_refused_bodies_an_older_version_kept_are_replaced_by_their_size(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        self.assertEqual(run_agent("-c", cfg, "queue", "list").returncode, 0)  # a store of today's version
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        db.execute("INSERT INTO rejected (received, type, reason, body) VALUES "
                   "('2026-01-01', 'employees/employee/update', 'not valid JSON', 'iban ES9121000418450200051332 {')")
        db.execute("PRAGMA user_version = 2")  # as an older version left it
        db.commit()
        db.close()
        self.assertEqual(run_agent("-c", cfg, "queue", "list").returncode, 0)
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        self.assertEqual(db.execute("SELECT body FROM rejected").fetchall(), [("(31 bytes, not kept)",)])
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 3)
        db.close()

    def test_a_store_from_a_newer_version_is_refused_untouched(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        self.assertEqual(run_agent("-c", cfg, "queue", "list").returncode, 0)
        path = os.path.join(self.d.path, "state", "state.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
        r = run_agent("-c", cfg, "queue", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("state store: it was written by a newer version of the agent (store version 99; this version "
                      "knows up to 3)", r.stderr)
        db = sqlite3.connect(path)
        self.assertEqual(db.execute("PRAGMA user_version").fetchone()[0], 99)
        db.close()

    def test_a_state_folder_others_may_write_to_is_refused(self):
        cfg = self.config(webhooks_extra="  manage_subscriptions: false\n", extra="sync: { interval: 0 }\n")
        state = os.path.join(self.d.path, "state")
        os.chmod(state, 0o775)
        r = run_agent("-c", cfg, "run", timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"state_dir: {state} is writable by group (mode 0775)", r.stderr)
        self.assertIn(f"chmod 700 {state}", r.stderr)
        self.assertEqual(os.listdir(state), [])
        r = run_agent("-c", cfg, "sync", env=TODAY)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"chmod 700 {state}", r.stderr)


if __name__ == "__main__":
    taprunner.main()
