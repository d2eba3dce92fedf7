"""`run`: the daemon receives Factorial's deliveries, stores each durably
before answering 200, and applies them to a real slapd, losing nothing."""

import json
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import IBAN as IBAN_TEXT, NEVER_SEEN, SSN as SSN_TEXT, AgentDir, AgentProcess, http, metric, run_agent, scan_folder, wait_for  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402
from slapd import free_port, test_directory  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import MAPPING, every_type_steps, person  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
FORMER = "ou=former,dc=example,dc=com"
CHALLENGE = "test-challenge"
H = {"x-factorial-wh-challenge": CHALLENGE, "Content-Type": "application/json"}


class Daemon(unittest.TestCase):
    """A slapd and an agent configuration per test; the agent started by the test."""

    extra = "queue: { retry_delay: 1s, max_attempts: 2, schedule_check: 1s }\nsync: { interval: 0 }\n"
    webhooks_extra = ""
    common_webhooks = "  manage_subscriptions: false\n"   # no Factorial API in these tests

    directory_options = {}  # for test_directory()

    def setUp(self):
        self.ldap = test_directory(**self.directory_options).start()
        self.addCleanup(self.ldap.stop)
        self.d = AgentDir()
        self.addCleanup(self.d.close)
        self.port = free_port()
        self.d.file("mapping.yaml", MAPPING)
        self.clock = self.d.file("now", "2026-11-27T09:00:00Z\n")
        cfg = self.d.standard(ldap_uri=self.ldap.uri, enrich=False,
                              public_url=f"https://agent.example.com/hooks", extra=self.extra)
        with open(cfg) as f:
            text = f.read()
        text = text.replace('listen: "127.0.0.1:18080"', f'listen: "127.0.0.1:{self.port}"')
        text = text.replace("  challenge_file: challenge\n",
                            "  challenge_file: challenge\n" + self.common_webhooks + self.webhooks_extra)
        self.cfg = self.d.file("agent.yaml", text)
        self.agent = None

    def start(self):
        self.agent = AgentProcess(self.cfg, os.path.join(self.d.path, "agent.log"),
                                  env={"FACTORIAL_LDAP_AGENT_NOW": "@" + self.clock}).start()
        self.addCleanup(self.agent.stop)
        return self.agent

    def post(self, type_, record, challenge=CHALLENGE):
        h = dict(H)
        if challenge is None:
            del h["x-factorial-wh-challenge"]
        else:
            h["x-factorial-wh-challenge"] = challenge
        body = record if isinstance(record, (str, bytes)) else json.dumps(record, ensure_ascii=False)
        return http("POST", self.agent.url("/hooks/" + type_), body, h)[0]

    def drained(self, timeout=90):
        wait_for(lambda: metric(self.agent, "queue_depth") == 0 and self.busy_free(), timeout, what="an empty queue")

    def busy_free(self):
        time.sleep(0.2)  # a delivery being applied has left the queue only when done
        return metric(self.agent, "queue_depth") == 0

    def count(self, i):
        return len(self.ldap.search(filt=f"(employeeNumber={i})", attrs=["1.1"]))

    def state_leaks(self):
        """Secrets and personal data in the state folder now (its database and WAL), checking that
        the deliveries themselves are there to be looked at."""
        state = os.path.join(self.d.path, "state")
        db = sqlite3.connect(os.path.join(state, "state.db"), timeout=30)
        try:
            stored = [r[0] for r in db.execute("SELECT body FROM deliveries WHERE state = 'pending'")]
        finally:
            db.close()
        self.assertTrue(stored and all('"last_name"' in b for b in stored), stored[:3])
        return scan_folder(state) + [f"a stored body holds {what}" for body in stored
                                     for needle, what in NEVER_SEEN.items() if needle in body]

    def fail_with_log(self, msg):
        self.fail(msg + "\n" + (self.agent.log_text() if self.agent else ""))


class TestReceiver(Daemon):
    def test_every_type_ends_in_the_directory(self):
        agent = self.start()
        fake = FakeFactorial(max_retries=3, retry_interval=0.05).start()
        self.addCleanup(fake.stop)
        types = ["employees/employee/create_with_contract", "employees/employee/invite", "employees/employee/update",
                 "employees/employee/set_regular_access_start_date", "employees/employee/terminate",
                 "employees/employee/unterminate", "teams/team/create", "teams/team/update", "teams/team/delete",
                 "teams/membership/create", "teams/membership/update", "teams/membership/delete",
                 "teams/membership/bulk_upsert"]
        for t in types:
            fake.add_subscription(t, agent.url("/hooks/" + t), challenge=CHALLENGE)
        steps = every_type_steps()
        for t, rec in steps:
            fake.deliver(t, rec)
        self.assertTrue(fake.wait_deliveries(30))
        self.assertEqual({d["status"] for d in fake.deliveries}, {200})
        self.drained()
        self.assertEqual(self.ldap.entry(f"uid=ana.perez,{PEOPLE}")["telephoneNumber"], ["+34 600"])
        self.assertEqual(self.ldap.entry(f"uid=luis.gil,{PEOPLE}")["manager"], [f"uid=ana.perez,{PEOPLE}"])
        # in arrival order: the team update lists Eva, her termination then takes her out of
        # every group, and unterminate puts her back in the groups the termination took her out of
        self.assertEqual(self.ldap.entry(f"cn=team-operations,{GROUPS}")["member"],
                         [f"uid=ana.perez,{PEOPLE}", f"uid=eva.sanz,{PEOPLE}"])
        self.assertEqual(self.ldap.entry(f"uid=eva.sanz,{PEOPLE}")["loginShell"], ["/bin/bash"])
        self.assertIsNone(self.ldap.entry(f"cn=team-temp,{GROUPS}"))
        self.assertEqual(metric(agent, "dead_letters"), 0)
        # regression: memberships of one team once raced each other and failed once
        self.assertEqual(metric(agent, "applies_total", operation="none", result="error"), 0)
        self.assertNotIn("failed (attempt", agent.log_text())

    def test_a_request_cannot_forge_log_lines(self):
        # libmicrohttpd decodes %0a in the path before the agent sees it; the refusal is logged
        agent = self.start()
        forged = "%0a2026-01-01T00:00:00.000Z%20factorial-ldap-agent:%20error:%20forged%0d%1b[2J"
        self.assertEqual(http("GET", agent.url("/elsewhere" + forged))[0], 404)
        self.assertEqual(self.post("employees/employee/delete" + forged, person(1, "A", "B")), 404)
        wait_for(lambda: agent.log_text().count("refused") >= 2, 10, what="the refusals logged")
        log = agent.log_text()
        self.assertNotIn("\nfactorial-ldap-agent: error: forged", log)
        self.assertFalse(any(line.startswith("2026-01-01T00:00:00.000Z") for line in log.splitlines()), log)
        self.assertIn("/elsewhere\\x0a2026-01-01T00:00:00.000Z factorial-ldap-agent: error: forged\\x0d\\x1b[2J",
                      log)
        self.assertFalse(any(c in log for c in "\r\x1b"), log)

    def test_deep_nesting_and_huge_arrays_are_refused_before_parsing(self):
        agent = self.start()
        deep = '{"id": 1, "x": ' + "[" * 100000 + "]" * 100000 + "}"
        self.assertEqual(self.post("employees/employee/update", deep), 400)
        wide = "[" + ",".join(["0"] * 300000) + "]"   # 600 KB: 300,000 values
        self.assertEqual(self.post("teams/membership/bulk_upsert", wide), 400)
        tricky = json.dumps(dict(person(2, "Comma", "Quoted"), note="," * 200000 + "[" * 1000))
        self.assertEqual(self.post("employees/employee/update", tricky), 200)  # inside a string: not counted
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        reasons = [r[0] for r in db.execute("SELECT reason FROM rejected ORDER BY id")]
        db.close()
        self.assertEqual(reasons, ["JSON nested deeper than 64 levels", "JSON with more than 100000 values"])
        self.drained()
        self.assertEqual(self.count(2), 1)

    def test_refusals_and_the_process_stays_up(self):
        agent = self.start()
        t = "employees/employee/update"
        self.assertEqual(self.post(t, person(1, "A", "B"), challenge="wrong"), 401)
        self.assertEqual(self.post(t, person(1, "A", "B"), challenge=None), 401)
        self.assertEqual(self.post("employees/employee/delete", person(1, "A", "B")), 404)
        self.assertEqual(http("GET", agent.url("/hooks/" + t))[0], 405)
        self.assertEqual(http("GET", agent.url("/elsewhere"))[0], 404)
        self.assertEqual(self.post(t, "{not json"), 400)
        self.assertEqual(self.post(t, "[1, 2]"), 400)
        self.assertEqual(self.post(t, ""), 400)
        # 2 MiB, declared: refused from the headers, the body is not read
        big = json.dumps({"id": 9, "blob": "x" * (2 << 20)})
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
            s.sendall((f"POST /hooks/{t} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       f"x-factorial-wh-challenge: {CHALLENGE}\r\nContent-Length: {len(big)}\r\n"
                       "Expect: 100-continue\r\n\r\n").encode())
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 413"))
        # chunked, no length: cut off once past the limit, the rest not read.  The 413
        # is sent, but a client still sending may see the connection reset instead.
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as s:
            s.sendall((f"POST /hooks/{t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       f"x-factorial-wh-challenge: {CHALLENGE}\r\n\r\n").encode())
            chunk = b"x" * 65536
            try:
                for _ in range(40):
                    s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                answer = s.recv(4096)
            except OSError:
                answer = b""
            self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:100])
        # a request that stalls is dropped, and others are served meanwhile
        stall = socket.create_connection(("127.0.0.1", agent.port), timeout=60)
        stall.sendall(f"POST /hooks/{t} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                      f"x-factorial-wh-challenge: {CHALLENGE}\r\n\r\n{{".encode())
        self.assertEqual(self.post(t, person(1, "Still", "Here")), 200)
        self.assertEqual(stall.recv(4096), b"")  # closed by the agent after webhooks.request_timeout
        stall.close()
        self.drained()
        self.assertEqual(self.count(1), 1)
        self.assertEqual(metric(agent, "deliveries_total", type=t, status="401"), 2)
        self.assertEqual(metric(agent, "deliveries_total", type="unknown", status="404"), 2)
        self.assertEqual(metric(agent, "deliveries_total", type=t, status="400"), 3)
        self.assertEqual(metric(agent, "deliveries_total", type=t, status="413"), 2)
        self.assertEqual(metric(agent, "deliveries_total", type=t, status="200"), 1)
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        reasons = [r[0] for r in db.execute("SELECT reason FROM rejected ORDER BY id")]
        db.close()
        self.assertEqual(reasons, ["not valid JSON", "not a JSON object", "empty body"])
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        bodies = [r[0] for r in db.execute("SELECT body FROM rejected ORDER BY id")]
        db.close()
        # a refused body may hold anything; only its size is kept
        self.assertEqual(bodies, ["(9 bytes, not kept)", "(6 bytes, not kept)", "(0 bytes, not kept)"])
        log = agent.log_text()
        self.assertNotIn(CHALLENGE, log)
        self.assertNotIn("wrong", log.replace("(wrong challenge)", ""))
        self.assertEqual(agent.stop(), 0)

    webhooks_extra = "  request_timeout: 2s\n"   # the stalled request is dropped quickly

    def test_the_challenge_must_match_whole(self):
        # the header is the secret, all of it and nothing more: not a prefix, not an extension,
        # not the same letters in another case
        agent = self.start()
        t = "employees/employee/update"
        near = [CHALLENGE + "X", CHALLENGE + "-and-more", CHALLENGE + CHALLENGE, CHALLENGE[:-1], CHALLENGE[1:],
                "X" + CHALLENGE, CHALLENGE.upper(), CHALLENGE.capitalize(), CHALLENGE[:-1] + "E", "", "t"]
        for i, challenge in enumerate(near):
            self.assertEqual(self.post(t, person(50 + i, "Near", "Miss"), challenge=challenge), 401, repr(challenge))
        self.assertEqual(self.post(t, person(1, "Right", "One")), 200)
        self.drained()
        self.assertEqual(metric(agent, "deliveries_total", type=t, status="401"), len(near))
        self.assertEqual(self.count(1), 1)
        self.assertEqual([i for i in range(50, 50 + len(near)) if self.count(i)], [])

    def test_personal_data_cannot_ride_along(self):
        # a leaked challenge is in the threat model: whatever its holder sends, no bank, national
        # id, social security or tax number reaches the state folder
        agent = self.start()
        t = "employees/employee/update"
        one = json.dumps(person(7, "Ana", "Rides"))
        national = "X1234567L"
        refused = {
            "a second value after the object": one + json.dumps({"iban": IBAN_TEXT}),
            "text after the object": one + " iban=" + IBAN_TEXT,
            "a name holding NUL": one[:-1] + ', "\\u0000iban": "' + IBAN_TEXT + '"}',
            "a value holding NUL": one[:-1] + ', "note": "a\\u0000b"}',
        }
        for why, body in refused.items():
            self.assertEqual(self.post(t, body), 400, why)
        self.ldap.pause()  # what is sent next waits in the store, to be looked at
        spelled = dict(person(8, "Bo", "Rides"), bankNumber=IBAN_TEXT, **{"Social-Security-Number": SSN_TEXT},
                       tax_id="B12345678", identifier=national, identifier_type="dni",
                       disability_percentage_cents=3300, contact_name="Mum", contact_number="+34 600 000 000",
                       address={"city": "Bilbao", "IBAN": IBAN_TEXT})
        self.assertEqual(self.post(t, spelled), 200)
        self.assertEqual(self.post(t, one + "\n"), 200)  # white space after the value is no second value
        wait_for(lambda: metric(agent, "queue_depth") == 2, 30, what="both stored")
        self.assertEqual(self.state_leaks(), [])
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"), timeout=30)
        bodies = [json.loads(r[0]) for r in db.execute("SELECT body FROM deliveries WHERE state = 'pending' ORDER BY id")]
        db.close()
        self.assertEqual(sorted(k for k in bodies[0] if k not in person(8, "Bo", "Rides")), ["address"])
        self.assertEqual(bodies[0]["address"], {"city": "Bilbao"})
        self.assertNotIn(national, json.dumps(bodies))
        self.ldap.resume()
        self.drained()
        self.assertEqual(self.count(7), 1)
        # the first refusal is said at once, the rest counted and summed up within seconds
        self.assertIn(f"refused 400 (more than one JSON value): POST {t} from 127.0.0.1", agent.log_text())
        wait_for(lambda: re.search(r"refused 3 more requests in \d+ s: 400 \(more than one JSON value\) 1: 127\.0\.0\.1 1; "
                                   r"400 \(a NUL character \(\\u0000\)\) 2: 127\.0\.0\.1 2\n", agent.log_text()) or
                 re.search(r"refused 3 more requests in \d+ s: 400 \(a NUL character \(\\u0000\)\) 2: 127\.0\.0\.1 2; "
                           r"400 \(more than one JSON value\) 1: 127\.0\.0\.1 1\n", agent.log_text()),
                 15, what="the refusals summed up")


class TestListeners(Daemon):
    def test_https_and_a_separate_metrics_listener(self):
        import ssl
        import subprocess
        d = self.d.path
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", f"{d}/hook.key", "-out", f"{d}/hook.pem"], check=True, capture_output=True)
        os.chmod(f"{d}/hook.key", 0o600)
        mport = free_port()
        with open(self.cfg) as f:
            text = f.read()
        import re
        text = re.sub(r'  metrics_listen: "127\.0\.0\.1:\d+"\n', f'  metrics_listen: "127.0.0.1:{mport}"\n', text)
        text = text.replace("  challenge_file: challenge\n",
                            "  challenge_file: challenge\n  tls_cert_file: hook.pem\n  tls_key_file: hook.key\n")
        self.d.file("agent.yaml", text)
        agent = AgentProcess(self.cfg, os.path.join(d, "agent.log")).start(wait=False)
        self.addCleanup(agent.stop)
        agent.port = mport  # /healthz and /metrics over plain HTTP on the metrics listener
        wait_for(lambda: self._answers(f"http://127.0.0.1:{mport}/healthz"), 30, what="the metrics listener")
        ctx = ssl.create_default_context(cafile=f"{d}/hook.pem")
        import urllib.request
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/hooks/employees/employee/update",
                                     data=json.dumps(person(1, "Tls", "Hook")).encode(), headers=H, method="POST")
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            self.assertEqual(r.status, 200)
        with self.assertRaises(OSError):  # plain HTTP on the TLS port is not a delivery
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{self.port}/hooks/employees/employee/update", data=b"{}", headers=H), timeout=5)
        self.assertEqual(http("POST", f"http://127.0.0.1:{mport}/hooks/employees/employee/update", "{}", H)[0],
                         404)  # the metrics listener takes no deliveries
        self.agent = agent
        self.drained()
        self.assertEqual(self.count(1), 1)
        self.assertEqual(metric(agent, "deliveries_total", type="employees/employee/update", status="200"), 1)
        self.assertEqual(agent.stop(), 0)

    @staticmethod
    def _answers(url):
        try:
            return http("GET", url, timeout=2)[0] in (200, 503)
        except OSError:
            return False


class TestDurability(Daemon):
    def test_sigkill_midway_loses_nothing_and_doubles_nothing(self):
        agent = self.start()
        ok = []
        lock = threading.Lock()

        def send(i):
            try:
                st = self.post("employees/employee/create_with_contract",
                               person(1000 + i, f"N{i}", "Durable", login_email=f"n{i}@example.com"))
            except OSError:
                return
            if st == 200:
                with lock:
                    ok.append(1000 + i)

        pool = ThreadPoolExecutor(8)
        futures = [pool.submit(send, i) for i in range(500)]
        wait_for(lambda: len(ok) >= 200, 60, 0.01, "200 acknowledged deliveries")
        agent.kill()
        for f in futures:
            f.result()
        pool.shutdown()
        acked = sorted(ok)
        self.assertGreaterEqual(len(acked), 200)
        agent = self.start()
        self.drained(120)
        missing = [i for i in acked if self.count(i) != 1]
        self.assertEqual(missing, [], "acknowledged deliveries missing or doubled")
        # nothing that was never acknowledged appears twice either
        for i in range(1000, 1500):
            self.assertLessEqual(self.count(i), 1)

    def test_directory_outage_keeps_everything_in_order(self):
        agent = self.start()
        self.assertEqual(self.post("employees/employee/create_with_contract", person(1, "Ana", "Order")), 200)
        self.drained()
        stop = threading.Event()
        sent = []
        statuses = []

        def stream():
            n = 0
            while not stop.is_set():
                n += 1
                statuses.append(self.post("employees/employee/update",
                                          person(1, "Ana", "Order", phone_number=f"+1 {n:04d}")))
                statuses.append(self.post("employees/employee/create_with_contract",
                                          person(100 + n, f"P{n}", "Stream", login_email=f"s{n}@example.com")))
                sent.append(n)
                time.sleep(0.1)

        th = threading.Thread(target=stream)
        th.start()
        time.sleep(1)
        self.ldap.pause()
        down = time.monotonic()
        saw_503 = False
        while time.monotonic() - down < 10:
            st, body = http("GET", agent.url("/healthz"))
            if st == 503:
                saw_503 = True
                self.assertIn("directory", body)
            time.sleep(0.5)
        # what waits for the directory is stored without the bank, social security and salary
        # fields the payloads carry (once applied, a body is gone: SQLite's secure_delete zeroes
        # it, and the scan when the test's folder is removed finds nothing of it either way)
        self.assertGreater(metric(agent, "queue_depth"), 0)
        self.assertEqual(self.state_leaks(), [])
        self.ldap.resume()
        time.sleep(1)
        stop.set()
        th.join()
        self.assertTrue(saw_503, "/healthz never said 503 while the directory was down")
        self.assertEqual(set(statuses), {200})
        self.drained(120)
        self.assertEqual(http("GET", agent.url("/healthz"))[0], 200)
        last = sent[-1]
        self.assertEqual(self.ldap.entry(f"uid=ana.order,{PEOPLE}")["telephoneNumber"], [f"+1 {last:04d}"])
        missing = [n for n in sent if self.count(100 + n) != 1]
        self.assertEqual(missing, [])
        self.assertIn("directory unavailable", agent.log_text())

    def test_store_that_cannot_commit_answers_503(self):
        agent = self.start()
        self.assertEqual(self.post("employees/employee/update", person(1, "A", "Lock")), 200)
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"), isolation_level=None, timeout=30)
        db.execute("BEGIN EXCLUSIVE")
        try:
            self.assertEqual(self.post("employees/employee/update", person(2, "B", "Lock")), 503)
            st, body = http("GET", agent.url("/healthz"))
            self.assertEqual(st, 503)
            self.assertIn("state store", body)
        finally:
            db.execute("ROLLBACK")
            db.close()
        self.assertEqual(self.post("employees/employee/update", person(3, "C", "Lock")), 200)
        self.drained()
        self.assertEqual((self.count(1), self.count(2), self.count(3)), (1, 0, 1))
        self.assertEqual(metric(agent, "deliveries_total", type="employees/employee/update", status="503"), 1)

    def test_a_store_that_refuses_deliveries_is_unhealthy_until_one_goes_in(self):
        # the daemon's own check of the store writes elsewhere and succeeds: /healthz must still
        # say what every delivery is answered
        agent = self.start()
        self.assertEqual(self.post("employees/employee/update", person(1, "A", "Broken")), 200)
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"), isolation_level=None, timeout=30)
        db.execute("CREATE TRIGGER broken BEFORE INSERT ON deliveries BEGIN "
                   "SELECT RAISE(ABORT, 'database disk image is malformed'); END")
        try:
            def checked():
                row = db.execute("SELECT value FROM meta WHERE key = 'probe'").fetchone()
                return row[0] if row else None
            last = checked()
            self.assertEqual(self.post("employees/employee/update", person(2, "B", "Broken")), 503)
            # the daemon's check of the store runs since, and finds it writable
            wait_for(lambda: checked() != last, 30, what="the daemon's next check of the store")
            st, body = http("GET", agent.url("/healthz"))
            self.assertEqual((st, body.splitlines()[0]), (503, "unavailable"))
            self.assertIn("state store: deliveries cannot be stored (answered 503): ", body)
            self.assertIn("malformed", body)
        finally:
            db.execute("DROP TRIGGER broken")
            db.close()
        self.assertEqual(self.post("employees/employee/update", person(3, "C", "Broken")), 200)
        self.assertEqual(http("GET", agent.url("/healthz"))[0], 200)
        self.drained()
        self.assertEqual((self.count(1), self.count(2), self.count(3)), (1, 0, 1))


class TestDeletionGuard(Daemon):
    """The guard in run counts deletes as it counts disables: with `terminated: { action: delete }`
    and safety.max_disables 2, the third termination within the hour is held, and so is every one
    after it, however many workers ask at once.  slapd answers each operation after a second
    (the retcode overlay's retcode-sleep), so that the four workers ask the guard while the others'
    deletes are still being made."""

    extra = Daemon.extra + "safety: { max_disables: 2 }\n"
    directory_options = {"extra_conf": 'moduleload retcode\noverlay retcode\n'
                                       'retcode-parent "ou=retcode,dc=example,dc=com"\nretcode-sleep 1\n'}

    def setUp(self):
        super().setUp()
        start = MAPPING.index("  terminated:\n")
        self.d.file("mapping.yaml", MAPPING[:start] + "  terminated:\n    action: delete\n" +
                    MAPPING[MAPPING.index("teams:\n"):])

    def present(self):
        """The employee numbers under ou=people, in one search."""
        found = self.ldap.search(PEOPLE, scope="one", attrs=["employeeNumber"])
        return sorted(int(e["employeeNumber"][0]) for e in found.values())

    def test_past_the_limit_within_the_hour_deletes_are_held(self):
        agent = self.start()
        ids = list(range(1, 7))
        for i in ids:
            self.assertEqual(self.post("employees/employee/create_with_contract", person(i, f"D{i}", "Guard")), 200)
        self.drained()
        self.assertEqual(self.present(), ids)
        # six leavers at once, taken by four workers together: two are deleted, four held
        for i in ids:
            self.assertEqual(self.post("employees/employee/terminate",
                                       person(i, f"D{i}", "Guard", terminated_on="2026-11-20")), 200)
        try:
            wait_for(lambda: metric(agent, "held_deliveries") == 4, 60, what="four terminations held")
        except AssertionError:
            self.fail_with_log(f"not four held: {self.present()} left")
        left = self.present()
        self.assertEqual(len(left), 4, left)
        self.assertEqual(self.ldap.search(FORMER, scope="one", attrs=["1.1"]), {})
        listing = run_agent("-c", self.cfg, "queue", "list").stdout
        self.assertIn("0 pending, 4 held, 0 dead", listing)
        for i in left:
            self.assertRegex(listing, r"held\s+\S+\s+employees/employee/terminate\s+\d+\s+employee:%d: deletion guard: "
                                      r"2 disables and deletes in the last hour" % i)
        # she comes back before anyone looked at the held termination: her return waits behind it
        back = left[0]
        self.assertEqual(self.post("employees/employee/unterminate", person(back, f"D{back}", "Guard")), 200)
        wait_for(lambda: f"employee:{back}: waits for employee:{back}"
                 in run_agent("-c", self.cfg, "queue", "list").stdout, 30, what="the return waiting")
        self.assertEqual(self.present(), left)
        r = run_agent("-c", self.cfg, "queue", "retry", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        # the held leavers go, and the one who came back is there again, as the order they came in says
        wait_for(lambda: metric(agent, "queue_depth") == 0 and metric(agent, "held_deliveries") == 0
                 and self.present() == [back], 60, what="the forced deletes, then the return")


class TestLifecycle(Daemon):
    def test_sighup_broken_mapping_keeps_the_old_one(self):
        agent = self.start()
        self.d.file("mapping.yaml", MAPPING.replace("{first_name|slug}", "{first_name|slugify}"))
        agent.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in agent.log_text(), 20, what="the refusal")
        self.assertIn("unknown filter \"slugify\"", agent.log_text())
        self.assertEqual(self.post("employees/employee/create_with_contract", person(1, "Old", "Map")), 200)
        self.drained()
        self.assertEqual(self.ldap.entry(f"uid=old.map,{PEOPLE}")["loginShell"], ["/bin/bash"])
        self.d.file("mapping.yaml", MAPPING.replace("loginShell: /bin/bash", "loginShell: /bin/zsh"))
        agent.signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in agent.log_text(), 20, what="the reload")
        self.assertEqual(self.post("employees/employee/create_with_contract", person(2, "New", "Map")), 200)
        self.drained()
        self.assertEqual(self.ldap.entry(f"uid=new.map,{PEOPLE}")["loginShell"], ["/bin/zsh"])
        self.assertEqual(agent.stop(), 0)
        self.assertIn("stopped", agent.log_text())

    def test_dead_letters_and_queue_commands(self):
        agent = self.start()
        self.assertEqual(self.post("employees/employee/create_with_contract",
                                   person(7, "No", "Mail", login_email=None)), 200)
        wait_for(lambda: metric(agent, "dead_letters") == 1, 30, what="a dead letter")
        r = run_agent("-c", self.cfg, "queue", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "0 pending, 0 held, 1 dead")
        self.assertRegex(lines[2], r"^1\s+dead\s+\S+\s+employees/employee/create_with_contract\s+2\s+employee:7: "
                                   r"employee 7: mail: required, but \"\{login_email\|lower\}\" is empty: login_email is "
                                   r"null \(Factorial sends such fields null to a token of a user who is not an "
                                   r"administrator\)$")
        # retried while the daemon runs: it fails again, and is dead again
        r = run_agent("-c", self.cfg, "queue", "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        listing = json.loads(r.stdout)
        self.assertEqual(listing["counts"], {"pending": 0, "held": 0, "dead": 1})
        self.assertEqual({k: listing["deliveries"][0][k] for k in ("id", "state", "type", "record", "attempts")},
                         {"id": 1, "state": "dead", "type": "employees/employee/create_with_contract",
                          "record": "employee:7", "attempts": 2})
        self.assertIn("mail: required", listing["deliveries"][0]["reason"])
        r = run_agent("-c", self.cfg, "queue", "retry", "1")
        self.assertEqual((r.returncode, r.stdout), (0, "1 delivery queued again\n"))
        wait_for(lambda: "failed for good after 2 attempts" in agent.log_text().split("queued again")[-1]
                 and metric(agent, "dead_letters") == 1, 30, what="the retry to fail")
        r = run_agent("-c", self.cfg, "queue", "drop", "1")
        self.assertEqual((r.returncode, r.stdout), (0, "dead letter 1 dropped\n"))
        self.assertEqual(run_agent("-c", self.cfg, "queue", "drop", "1").returncode, 1)
        self.assertEqual(run_agent("-c", self.cfg, "queue", "list").stdout, "0 pending, 0 held, 0 dead\n")
        self.assertEqual(run_agent("-c", self.cfg, "queue", "drop").returncode, 2)
        self.assertEqual(metric(agent, "applies_total", operation="none", result="error"), 4)

    def test_membership_waits_for_its_employee(self):
        agent = self.start()
        self.assertEqual(self.post("teams/team/create", {"id": 5, "name": "Ops", "employee_ids": []}), 200)
        self.drained()
        # the membership arrives right behind the employee it names
        self.assertEqual(self.post("employees/employee/create_with_contract", person(8, "Wai", "Ting")), 200)
        self.assertEqual(self.post("teams/membership/create", {"id": 1, "employee_id": 8, "team_id": 5}), 200)
        self.drained()
        self.assertEqual(self.ldap.entry(f"cn=team-ops,{GROUPS}")["member"], [f"uid=wai.ting,{PEOPLE}"])
        self.assertEqual(metric(agent, "dead_letters"), 0)

    def test_termination_after_a_team_update_applies_in_arrival_order(self):
        # regression: a termination once raced the team update delivered before it and
        # lost, leaving the leaver in the group
        agent = self.start()
        ids = list(range(30, 38))
        for i in ids:
            self.assertEqual(self.post("employees/employee/create_with_contract", person(i, f"T{i}", "Race")), 200)
        self.drained()
        self.assertEqual(self.post("teams/team/create", {"id": 4, "name": "Race", "employee_ids": ids}), 200)
        for i in ids:
            self.assertEqual(self.post("employees/employee/terminate",
                                       person(i, f"T{i}", "Race", terminated_on="2026-11-01")), 200)
        self.drained()
        self.assertEqual(self.ldap.entry(f"cn=team-race,{GROUPS}")["member"], ["cn=nobody"])
        self.assertEqual(metric(agent, "dead_letters"), 0)

    def test_a_burst_keeps_the_newest_state_not_the_last_to_arrive(self):
        # without enrichment the bodies are all there is: of a burst of one record's updates
        # waiting together, the one stamped latest wins, whatever the order they came in
        agent = self.start()
        self.assertEqual(self.post("employees/employee/create_with_contract",
                                   person(4, "Ana", "Burst", updated_at="2026-11-27T09:00:00Z")), 200)
        self.drained()
        self.ldap.pause()
        try:
            for stamp, phone in (("2026-11-27T11:00:00Z", "+34 611"), ("2026-11-27T10:00:00Z", "+34 610")):
                self.assertEqual(self.post("employees/employee/update",
                                           person(4, "Ana", "Burst", phone_number=phone, updated_at=stamp)), 200)
            wait_for(lambda: metric(agent, "queue_depth") == 2, 30, what="both updates stored")
        finally:
            self.ldap.resume()
        self.drained()
        self.assertEqual(self.ldap.entry(f"uid=ana.burst,{PEOPLE}")["telephoneNumber"], ["+34 611"])
        self.assertIn("(2 deliveries coalesced)", agent.log_text())

    def test_scheduled_termination_applied_when_due(self):
        agent = self.start()
        self.assertEqual(self.post("employees/employee/create_with_contract", person(9, "Fu", "Ture")), 200)
        self.assertEqual(self.post("employees/employee/terminate",
                                   person(9, "Fu", "Ture", terminated_on="2026-12-01")), 200)
        self.drained()
        self.assertIsNotNone(self.ldap.entry(f"uid=fu.ture,{PEOPLE}"))
        self.d.file("now", "2026-12-01T00:30:00Z\n")
        wait_for(lambda: self.ldap.entry(f"uid=fu.ture,{FORMER}"), 30, what="the due termination")
        self.assertIsNone(self.ldap.entry(f"uid=fu.ture,{PEOPLE}"))
        self.assertIn("employee 9: termination due: queued", agent.log_text())

    def test_metrics_match_what_was_sent(self):
        agent = self.start()
        for i in range(5):
            self.assertEqual(self.post("employees/employee/create_with_contract",
                                       person(20 + i, f"M{i}", "Etric")), 200)
        self.assertEqual(self.post("teams/team/create", {"id": 3, "name": "M", "employee_ids": []}), 200)
        self.assertEqual(self.post("teams/team/create", "oops"), 400)
        self.drained()
        self.assertEqual(metric(agent, "deliveries_total", type="employees/employee/create_with_contract",
                                status="200"), 5)
        self.assertEqual(metric(agent, "deliveries_total", type="teams/team/create", status="200"), 1)
        self.assertEqual(metric(agent, "deliveries_total", type="teams/team/create", status="400"), 1)
        self.assertEqual(metric(agent, "applies_total", operation="add", result="ok"), 6)
        self.assertEqual(metric(agent, "queue_depth"), 0)
        self.assertGreaterEqual(metric(agent, "store_commit_seconds_count"), 1)
        self.assertGreaterEqual(metric(agent, "ldap_operation_seconds_count"), 12)
        status, text = http("GET", agent.url("/metrics"))
        self.assertIn("# TYPE factorial_ldap_agent_ldap_operation_seconds histogram", text)
        self.assertTrue(re.search(r'ldap_operation_seconds_bucket\{le="\+Inf"\} \d+', text))

    def test_invalid_configuration_at_start_exits_2(self):
        self.d.file("mapping.yaml", "version: 1\nemployees: {}\n")
        r = run_agent("-c", self.cfg, "run", timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("mapping.yaml:2:12: employees.base: required key is missing", r.stderr)


if __name__ == "__main__":
    taprunner.main()
