"""Fault injection: the directory frozen or restarted mid-stream, the agent
SIGKILLed again and again under load, the store's file system full, the
Factorial API failing and stalling, the clock jumping.  In every case: no
delivery answered 200 is lost or applied twice, and the agent says what is
wrong while it is wrong."""

import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import http, metric, run_agent, wait_for  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import person  # noqa: E402
from test_daemon import receiver_of  # noqa: E402
from test_run import FORMER, PEOPLE, Daemon  # noqa: E402


class Faults(Daemon):
    def setUp(self):
        super().setUp()
        # operations time out after 2 s, so that a frozen directory is seen quickly
        with open(self.cfg) as f:
            text = f.read().replace("  bind_password_file: ldap-password\n",
                                    "  bind_password_file: ldap-password\n  timeout: 2s\n  network_timeout: 2s\n")
        self.d.file("agent.yaml", text)

    def hire(self, i, surname="Fault", **extra):
        return self.post("employees/employee/create_with_contract",
                         person(i, f"N{i}", surname, login_email=f"n{i}@example.com", **extra))

    def audited_adds(self, i):
        db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
        try:
            return db.execute("SELECT COUNT(*) FROM audit WHERE operation = 'add' AND kind = 'employee' AND record_id = ?",
                              (str(i),)).fetchone()[0]
        finally:
            db.close()


class TestDirectoryFaults(Faults):
    def test_a_frozen_directory_times_out_turns_health_red_and_loses_nothing(self):
        agent = self.start()
        self.assertEqual(self.hire(1), 200)
        self.drained()
        os.kill(self.ldap.proc.pid, signal.SIGSTOP)
        try:
            frozen = time.monotonic()
            acked = [i for i in range(2, 12) if self.hire(i) == 200]
            self.assertEqual(acked, list(range(2, 12)), "deliveries are stored while the directory hangs")
            wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 503, 30, what="/healthz 503")
            self.assertLess(time.monotonic() - frozen, 30)
            self.assertIn("directory", http("GET", agent.url("/healthz"))[1])
        finally:
            os.kill(self.ldap.proc.pid, signal.SIGCONT)
        self.drained(120)
        wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 200, 30, what="/healthz 200 again")
        self.assertEqual([i for i in range(1, 12) if self.count(i) != 1], [])
        self.assertRegex(agent.log_text(), r"[Tt]ime(d)? ?out")
        self.assertEqual(metric(agent, "dead_letters"), 0)

    def test_the_directory_killed_and_restarted_mid_stream(self):
        agent = self.start()
        stop = threading.Event()
        acked, statuses = [], []

        def stream():
            n = 100
            while not stop.is_set():
                n += 1
                st = self.hire(n, "Restart")
                statuses.append(st)
                if st == 200:
                    acked.append(n)
                time.sleep(0.05)

        th = threading.Thread(target=stream)
        th.start()
        try:
            wait_for(lambda: len(acked) >= 20, 30, what="a stream under way")
            self.ldap.pause()  # killed
            time.sleep(3)
            self.ldap.resume()  # and started again on the same data
            wait_for(lambda: len(acked) >= 80, 60, what="the stream going on")
        finally:
            stop.set()
            th.join()
        self.assertEqual(set(statuses), {200})
        self.drained(120)
        self.assertEqual([n for n in acked if self.count(n) != 1], [])
        # an add is made once; one whose answer the killed server never sent has no audit row
        self.assertEqual([n for n in acked if self.audited_adds(n) > 1], [])


class TestAgentKilled(Faults):
    def test_ten_sigkills_under_load_lose_nothing_and_double_nothing(self):
        acked = []
        lock = threading.Lock()
        base = 1000
        random.seed(7)
        for round_ in range(10):
            agent = self.start()

            def send(i):
                try:
                    st = self.hire(i, "Killed")
                except OSError:
                    return
                if st == 200:
                    with lock:
                        acked.append(i)

            before = len(acked)
            pool = ThreadPoolExecutor(6)
            futures = [pool.submit(send, base + round_ * 100 + k) for k in range(100)]
            wait_for(lambda: len(acked) - before >= random.randint(10, 60), 60, 0.005, "deliveries acknowledged")
            rx = receiver_of(agent)
            agent.kill()
            for f in futures:
                f.result()
            pool.shutdown()
            # the receiver goes with the daemon: nothing is left holding the port
            wait_for(lambda: rx is None or not os.path.exists(f"/proc/{rx}"), 10, what="the receiver gone")
        agent = self.start()
        self.drained(180)
        self.assertGreaterEqual(len(acked), 100)
        self.assertEqual([i for i in acked if self.count(i) != 1], [], "acknowledged deliveries lost or doubled")
        # an add is never made twice (one killed between the directory's answer and its audit row
        # leaves none: the entry is there, and the next attempt finds it)
        self.assertEqual([i for i in acked if self.audited_adds(i) > 1], [], "applied twice")
        for i in range(base, base + 1000):
            self.assertLessEqual(self.count(i), 1)
        self.acked_total = len(acked)


class TestStoreFull(Faults):
    def test_a_full_file_system_answers_503_never_200_and_recovers(self):
        agent = self.start()
        self.assertEqual(self.hire(1), 200)
        self.drained()
        state = os.path.join(self.d.path, "state")
        used = sum(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state))
        limit = used + (256 << 10)
        # the file system is full: no file of the store may grow past where it is now, give or take
        # (the daemon writes it; the receiver holds no file)
        resource.prlimit(agent.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        note = "x" * (48 << 10)
        statuses = []
        for i in range(2, 60):
            statuses.append((i, self.hire(i, note=note)))
            if statuses[-1][1] == 503:
                break
        self.assertEqual(statuses[-1][1], 503, "a store that cannot grow still answered 200")
        self.assertEqual({st for _, st in statuses[:-1]}, {200})
        # while it is full: 503 every time, never 200, and /healthz says so
        for i in range(60, 65):
            self.assertEqual(self.hire(i, note=note), 503)
        st, body = http("GET", agent.url("/healthz"))
        self.assertEqual(st, 503)
        self.assertIn("state store", body)
        # space comes back (regression: a wait mark whose release failed while the store was full
        # kept its delivery waiting until the next start)
        resource.prlimit(agent.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        wait_for(lambda: self.hire(70) == 200, 60, what="200 again once there is space")
        wait_for(lambda: http("GET", agent.url("/healthz"))[0] == 200, 60, what="/healthz 200 again")
        try:
            self.drained(120)
        except AssertionError:
            db = sqlite3.connect(os.path.join(self.d.path, "state", "state.db"))
            rows = db.execute("SELECT id, record_key, state, attempts, next_attempt, waiting_on FROM deliveries").fetchall()
            db.close()
            self.fail_with_log(f"the queue did not drain after space came back: {rows}")
        acked = [1, 70] + [i for i, st in statuses if st == 200]
        self.assertEqual([i for i in acked if self.count(i) != 1], [])
        self.assertEqual(self.count(60), 0)  # answered 503: not kept, Factorial sends it again
        self.assertEqual(agent.proc.poll(), None, "the agent is still running")


class TestApiFaults(Faults):
    common_webhooks = ""

    def setUp(self):
        super().setUp()
        self.fake = FakeFactorial(max_retries=3, retry_interval=0.05).start()
        self.addCleanup(self.fake.stop)
        with open(self.cfg) as f:
            text = f.read().replace("base_url: http://127.0.0.1:9", f"base_url: {self.fake.base_url}")
            text = text.replace("  challenge_file: challenge\n", "  challenge_file: challenge\n  check_interval: 1s\n")
            text = text.replace("  api_key_file: api-key\n",
                                "  api_key_file: api-key\n  timeout: 3s\n  connect_timeout: 2s\n")
        self.d.file("agent.yaml", text)

    def test_sync_through_500_429_and_a_stall(self):
        for i in range(1, 31):
            self.fake.put_employee(dict(person(i, f"S{i}", "Sync"), company_id=1234))
        self.fake.fail_next(500, count=2, prefix="/api/2026-07-01/resources/employees/employees")
        self.fake.fail_next(429, count=1, retry_after=1, prefix="/api/2026-07-01/resources/employees/employees")
        self.fake.slow_next(5, count=1, prefix="/api/2026-07-01/resources/employees/employees")  # past timeout
        r = run_agent("-c", self.cfg, "sync", env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"}, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([i for i in range(1, 31) if self.count(i) != 1], [])

    def test_subscription_upkeep_through_500_429_and_a_stall(self):
        self.fake.fail_next(500, count=2, prefix="/api/2026-07-01/resources/api_public/webhook_subscriptions")
        self.fake.fail_next(429, count=2, retry_after=1,
                            prefix="/api/2026-07-01/resources/api_public/webhook_subscriptions")
        self.fake.slow_next(5, count=2, prefix="/api/2026-07-01/resources/api_public/webhook_subscriptions")
        agent = self.start()
        wait_for(lambda: len(self.fake.subscriptions) == 19, 90, what="the subscriptions made despite the faults")
        # deliveries are answered all along
        self.assertEqual(self.hire(1), 200)
        self.drained()
        self.assertEqual(self.count(1), 1)
        self.assertIsNone(agent.proc.poll())


class TestClockJumps(Faults):
    def test_terminations_follow_the_clock_forward_and_never_twice(self):
        agent = self.start()
        self.assertEqual(self.post("employees/employee/create_with_contract", person(9, "Fu", "Ture")), 200)
        self.assertEqual(self.post("employees/employee/terminate",
                                   person(9, "Fu", "Ture", terminated_on="2026-12-05")), 200)
        self.assertEqual(self.post("employees/employee/create_with_contract", person(10, "La", "Ter")), 200)
        self.assertEqual(self.post("employees/employee/terminate",
                                   person(10, "La", "Ter", terminated_on="2027-03-01")), 200)
        self.drained()
        # a jump of weeks forward: the first is due, the second is not
        self.d.file("now", "2026-12-20T10:00:00Z\n")
        wait_for(lambda: self.ldap.entry(f"uid=fu.ture,{FORMER}"), 30, what="the termination due after the jump")
        time.sleep(3)
        self.assertIsNotNone(self.ldap.entry(f"uid=la.ter,{PEOPLE}"))
        # back in time (an NTP correction): nothing is undone, nothing applied again
        self.d.file("now", "2026-11-01T10:00:00Z\n")
        time.sleep(3)
        self.assertIsNotNone(self.ldap.entry(f"uid=fu.ture,{FORMER}"))
        self.assertIsNotNone(self.ldap.entry(f"uid=la.ter,{PEOPLE}"))
        # forward past the second date
        self.d.file("now", "2027-03-01T00:05:00Z\n")
        wait_for(lambda: self.ldap.entry(f"uid=la.ter,{FORMER}"), 30, what="the second termination")
        self.drained()
        log = agent.log_text()
        self.assertEqual(log.count("employee 9: termination due: queued"), 1)
        self.assertEqual(log.count("employee 10: termination due: queued"), 1)


if __name__ == "__main__":
    taprunner.main()
