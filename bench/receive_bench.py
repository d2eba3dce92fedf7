"""Benchmark: deliveries acknowledged per second by `run`, one client against
eight concurrent clients, side by side in one run.

Every 200 means the delivery was committed to SQLite with synchronous=FULL.
The directory is left unreachable so that only the receiving path is measured
(the workers wait; the queue keeps everything).  Group commit lets concurrent
requests share one commit: the ratio of the two rates, and the number of
commits against the number of deliveries, show how much.

Usage: python3 bench/receive_bench.py AGENT [SECONDS]
"""

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from agenttest import AgentDir  # noqa: E402
from slapd import free_port  # noqa: E402


def post(port, i):
    body = json.dumps({"id": i, "first_name": "Bench", "last_name": f"Mark{i}", "full_name": f"Bench Mark{i}",
                       "login_email": f"b{i}@example.com"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/employees/employee/update", data=body,
                                 headers={"x-factorial-wh-challenge": "test-challenge"}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def rate(port, clients, seconds, start_id):
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop(k):
        i = start_id + k * 1_000_000
        while time.monotonic() < stop:
            if post(port, i) == 200:
                with lock:
                    done[0] += 1
            i += 1

    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(loop, range(clients)))
    return done[0] / (time.monotonic() - t0)


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        m = re.search(rf"^{name} (\S+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


def main():
    agent = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    with AgentDir() as d:
        port = free_port()
        with open(os.path.join(TOP, "mappings", "openldap-inetorgperson.yaml")) as f:
            d.file("mapping.yaml", f.read())
        cfg = d.standard(ldap_uri="ldap://127.0.0.1:9", enrich=False, public_url="https://x/hooks")
        with open(cfg) as f:
            text = f.read().replace('listen: "127.0.0.1:18080"', f'listen: "127.0.0.1:{port}"')
        d.file("agent.yaml", text)
        mport = int(re.search(r'metrics_listen: "127\.0\.0\.1:(\d+)"', text).group(1))  # /metrics is there
        log = open(os.path.join(d.path, "agent.log"), "w")
        p = subprocess.Popen([agent, "-c", cfg, "run"], stderr=log)
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            rounds = {1: [], 8: []}
            for r in range(3):
                for c in (1, 8):
                    rounds[c].append(rate(port, c, seconds, (r * 10 + c) * 10_000_000))
            commits = metric(mport, "factorial_ldap_agent_store_commit_seconds_count")
            stored = metric(mport, "factorial_ldap_agent_queue_depth")
        finally:
            p.terminate()
            p.wait(30)
            log.close()
    one, eight = statistics.median(rounds[1]), statistics.median(rounds[8])
    print(f"deliveries acknowledged per second, {seconds:.0f} s per round, 3 rounds alternating")
    print(f"  1 client:   median {one:7.0f}/s  {[round(x) for x in rounds[1]]}")
    print(f"  8 clients:  median {eight:7.0f}/s  {[round(x) for x in rounds[8]]}")
    print(f"  ratio 8 / 1: {eight / one:.2f}")
    print(f"  {stored:.0f} deliveries stored in {commits:.0f} commits ({stored / max(commits, 1):.2f} per commit)")


if __name__ == "__main__":
    main()
