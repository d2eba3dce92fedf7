"""Benchmark: `sync` of 10,000 employees (fake Factorial API, real slapd).

1. Directory already in step: wall time and peak RSS of `sync` (the goal:
   under 3 s and under 50 MB on this 2-core machine).
2. Directory empty: `sync` adding every entry, against plain `ldapadd` of the
   same entries (rendered by the same mapping) into an identical fresh slapd,
   alternating, 2 rounds each; the add rate of sync should reach 90% of
   ldapadd's.

Usage: python3 bench/sync_bench.py AGENT [N]
"""

import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from agenttest import AgentDir  # noqa: E402
from fakefactorial import FakeFactorial, generated_employees  # noqa: E402
from slapd import AGENT_DN, Slapd  # noqa: E402

# a site tuned for speed lifts slapd's size limit for the agent (docs/directories.md); the
# tests run with the stock limit
TUNED = f'limits dn.exact="{AGENT_DN}" size=unlimited'

FIRST = ["Ana", "José", "Seán", "Zoë", "Łukasz", "Björk", "Renée", "John", "María", "Øyvind"]


def employees(n):
    out = generated_employees(n)
    for e in out:
        i = e["id"]
        e["first_name"] = FIRST[i % 10]
        e["full_name"] = f"{e['first_name']} {e['last_name']}"
        e["manager_id"] = (i // 10) or None
    return out


# The peak RSS a process reports includes the image it was forked from, until
# exec: measured from this (large) script it would count the script too.  So a
# small launcher forks the command and reports the child's own peak.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), ru.ru_maxrss)
"""


def run_measured(cmd):
    """Wall time, peak RSS (MiB), exit code and standard error of one command."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True)
    dt = time.perf_counter() - t
    rc, rss = r.stdout.split()
    return dt, int(rss) / 1024, int(rc), r.stderr


def main():
    agent = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    emps = employees(n)
    with FakeFactorial(fixtures=None) as fake, AgentDir() as d:
        for e in emps:
            fake.put_employee(e)
        fake.contract_versions = {e["id"]: {"id": e["id"], "employee_id": e["id"], "job_title": "Engineer",
                                            "effective_on": "2026-01-01"} for e in emps}
        with open(os.path.join(TOP, "mappings", "openldap-posix.yaml")) as f:
            d.file("mapping.yaml", f.read())
        ldif = subprocess.run([agent, "render", "-m", os.path.join(d.path, "mapping.yaml"), "-"],
                              input=__import__("json").dumps(emps, ensure_ascii=False).encode(),
                              capture_output=True).stdout
        add_sync, add_ldapadd = [], []
        for rnd in range(2):
            # plain ldapadd of the same entries (as the service account, like the agent)
            with Slapd(extra_conf=TUNED) as s:
                t = time.perf_counter()
                r = subprocess.run(["ldapadd", "-H", s.uri, "-x", "-D", s.agent_dn, "-w", s.agent_pw],
                                   input=ldif, capture_output=True)
                add_ldapadd.append(time.perf_counter() - t)
                assert r.returncode == 0, r.stderr
            # sync into an empty directory
            with Slapd(extra_conf=TUNED) as s:
                cfg = d.standard(ldap_uri=s.uri, base_url=fake.base_url, enrich=False,
                                 extra="log: { level: warn }\n")
                dt, rss, rc, err = run_measured([agent, "-c", cfg, "sync"])
                assert rc == 0, err[-2000:]
                add_sync.append(dt)
                if rnd == 1:
                    insteps = []
                    for _ in range(3):
                        insteps.append(run_measured([agent, "-c", cfg, "sync"]))
                    assert all(x[2] == 0 for x in insteps), insteps[0][3][-2000:]
                    assert "nothing to do" in insteps[0][3]
    ld, sy = statistics.median(add_ldapadd), statistics.median(add_sync)
    print(f"{n} employees, posix profile (13 attributes, unique uid, {{@uid}}, employee_dn)")
    print(f"directory empty, 2 rounds alternating:")
    print(f"  ldapadd of the rendered entries: {[round(x, 2) for x in add_ldapadd]} s -> {n / ld:.0f} adds/s")
    print(f"  sync (API reads included):       {[round(x, 2) for x in add_sync]} s -> {n / sy:.0f} adds/s")
    print(f"  sync add rate / ldapadd add rate: {ld / sy:.2f}")
    print(f"directory in step, 3 runs:")
    for dt, rss, _, _ in insteps:
        print(f"  sync: {dt:.2f} s, peak RSS {rss:.1f} MiB")
    out = os.environ.get("FLA_BENCH_RESULTS")
    if out:
        with open(os.path.join(out, "sync.json"), "w") as f:
            json.dump({"n": n, "empty": {"ldapadd": add_ldapadd, "sync": add_sync},
                       "in_step": [{"seconds": dt, "peak_rss_mib": rss} for dt, rss, _, _ in insteps]}, f, indent=1)


if __name__ == "__main__":
    main()
