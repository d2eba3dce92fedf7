"""Benchmark: `render` of 10,000 employees with the openldap-posix profile.

Runs, alternating in one session so that machine noise hits both alike:
  posix    render -m mappings/openldap-posix.yaml employees.json
  minimal  render with a mapping of only the key and the RDN (the floor:
           reading and parsing the JSON, writing LDIF)
and reports the median wall time of each, their ratio, and peak RSS.  With
BASELINE (another build of the agent, say the previous release), its posix
render joins the alternation as "baseline" and the ratio posix / baseline is
reported: a change's cost, measured side by side.

Usage: python3 bench/render_bench.py AGENT [N] [BASELINE]   (N employees, default 10000)
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from fakefactorial import generated_employees  # noqa: E402

FIRST = ["Ana", "José", "Seán", "Zoë", "Łukasz", "Björk", "Renée", "John", "María", "Øyvind"]
LAST = ["García", "Núñez", "O'Brien", "Müller", "Żółć", "Guðmundsdóttir", "D'Arcy", "Smith, Jr.", "López", "Ærø"]

MINIMAL = """version: 1
employees:
  base: ou=people,dc=example,dc=com
  key: { attribute: employeeNumber, value: "{id}" }
  rdn: employeeNumber
  object_classes: [inetOrgPerson]
  attributes: {}
"""


def run(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{cmd} failed: {r.stderr.decode()[:500]}")
    return dt


def save(result):
    """Writes the figures to $FLA_BENCH_RESULTS/render.json for bench/report.py."""
    out = os.environ.get("FLA_BENCH_RESULTS")
    if out:
        with open(os.path.join(out, "render.json"), "w") as f:
            json.dump(result, f, indent=1)


def main():
    agent = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    baseline = sys.argv[3] if len(sys.argv) > 3 else None
    rounds = 7
    d = tempfile.mkdtemp(prefix="fla-bench-")
    emps = generated_employees(n)
    for e in emps:
        i = e["id"]
        e["first_name"] = FIRST[i % 10]
        e["last_name"] = LAST[(i // 10) % 10]
        e["full_name"] = f"{e['first_name']} {e['last_name']}"
        e["manager_id"] = (i // 10) or None
        e["login_email"] = f"user{i}@example.com"
    data = os.path.join(d, "employees.json")
    with open(data, "w", encoding="utf-8") as f:
        json.dump(emps, f, ensure_ascii=False)
    minimal = os.path.join(d, "minimal.yaml")
    with open(minimal, "w") as f:
        f.write(MINIMAL)
    posix = os.path.join(TOP, "mappings", "openldap-posix.yaml")
    cmds = {"posix": [agent, "render", "-m", posix, data], "minimal": [agent, "render", "-m", minimal, data]}
    if baseline:
        cmds["baseline"] = [baseline, "render", "-m", posix, data]
    times = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, c in cmds.items():
            times[k].append(run(c))
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"render of {n} employees, {rounds} rounds each, alternating")
    for k in cmds:
        print(f"  {k:8s} median {med[k]*1000:7.1f} ms   (min {min(times[k])*1000:.1f}, max {max(times[k])*1000:.1f})")
    print(f"  ratio posix / minimal: {med['posix'] / med['minimal']:.2f}")
    if baseline:
        print(f"  ratio posix / baseline: {med['posix'] / med['baseline']:.3f}")
    print(f"  peak RSS of the renders: {rss_kb / 1024:.1f} MiB")
    print(f"  posix per employee: {med['posix'] / n * 1e6:.1f} us")
    save({"n": n, "rounds": rounds, "seconds": times, "peak_rss_kib": rss_kb})
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    os.rmdir(d)


if __name__ == "__main__":
    main()
