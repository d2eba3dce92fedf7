"""Benchmark: the webhook path of `run`, against plain LDAP tools and a
do-it-yourself peer, side by side in one run.  Load comes from wrk
(bench/post.lua), the directory is a fresh slapd for every round, the agent
binds as the service account.

Measures (each alternating with what it is compared to, ROUNDS rounds):

  hires   N distinct new employees posted (16 connections), from the first
          POST until every delivery is applied (queue empty; the entries are
          then counted in the directory), against `ldapadd` of the same
          entries (rendered by the same mapping) over one connection, and
          against the do-it-yourself peer: Debian's `webhook` running a hook
          that turns each body into LDIF with `jq` and pipes it to `ldapadd`.
  bursts  200 employees (already in the directory) changed 10 times each,
          2,000 deliveries, until the last change of each is in, against
          `ldapmodify` replaying the 2,000 changes over one connection.
  intake  the directory unreachable: receive, durable commit and 200 only;
          16 connections flat out (rate), then 16 connections at about
          1,000 deliveries/s (latency percentiles).
  memory  RSS of the daemon and of its receiver process: idle after start,
          after the hires, after 100,000 more deliveries.

Usage: python3 bench/webhook_bench.py AGENT RESULTS.json [N] [ROUNDS]
"""

import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from agenttest import AgentDir  # noqa: E402
from slapd import Slapd, free_port  # noqa: E402

MAPPING = os.path.join(TOP, "mappings", "openldap-inetorgperson.yaml")
PEOPLE = "ou=people,dc=example,dc=com"
CHALLENGE = "test-challenge"
CONNECTIONS = 16
# the load client's connections come from one address: room for them and for its reconnections
WEBHOOKS = "  manage_subscriptions: false\n  max_connections_per_address: 64\n"
THREADS = 2


def employee(i, version=0):
    """An employee body as Factorial delivers it; version > 0 changes the job title."""
    return {"id": i, "access_id": 100000 + i, "first_name": "Bench", "last_name": f"Mark{i}",
            "full_name": f"Bench Mark{i}", "company_id": 1234, "login_email": f"bench{i}@example.com",
            "job_title": f"Version {version}" if version else "Engineer", "manager_id": None,
            "phone_number": None, "terminated_on": None, "active": True, "company_identifier": f"B{i:06d}",
            "created_at": "2026-01-01T00:00:00.000Z",
            "updated_at": f"2026-02-01T00:{version // 60:02d}:{version % 60:02d}.000Z"}


def request_file(path, items):
    with open(path, "w") as f:
        for kind, body in items:
            f.write(f"/hooks/employees/employee/{kind}\t{json.dumps(body, separators=(',', ':'))}\n")
    return path


def wrk(url, file, connections=CONNECTIONS, script=os.path.join(HERE, "post.lua")):
    """Posts every request of file with wrk (bench/post.lua), stopping it once each
    thread has all its answers; its output."""
    with tempfile.TemporaryDirectory() as marks:
        cmd = ["wrk", "-t", str(THREADS), "-c", str(connections), "-d", "600s", "--latency", "-s", script,
               url, "--", file, CHALLENGE, str(THREADS), marks]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: len(os.listdir(marks)) == THREADS or p.poll() is not None, timeout=600, every=0.01)
        finally:
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=60)
    m = re.search(r"posts answered (\d+), not 200 (\d+)", out)
    assert m and m.group(2) == "0", out + err
    return out


def wrk_seconds(text):
    """How long wrk ran, by its own clock (from its first request, after its set-up)."""
    m = re.search(r"requests in ([\d.]+)(ms|s|m)\b", text)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "ms" else v * 60 if m.group(2) == "m" else v


def metrics(mport):
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(rf"^factorial_ldap_agent_{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def cpu_seconds(pid):
    """User and system processor time of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return int(re.search(r"^Pss:\s+(\d+)", f.read(), re.M).group(1))


def breakdown(pid, top=12):
    """Resident KiB by mapping (library, heap, anonymous), largest first."""
    per, cur = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                cur = os.path.basename(parts[5]) if len(parts) > 5 else "[anonymous]"
            elif line.startswith("Rss:"):
                per[cur] = per.get(cur, 0) + int(line.split()[1])
    return sorted(per.items(), key=lambda kv: -kv[1])[:top]


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def count_entries(s, filt="(employeeNumber=*)"):
    r = subprocess.run(["ldapsearch", "-LLL", "-H", s.uri, "-x", "-D", s.admin_dn, "-w", s.admin_pw, "-b", PEOPLE,
                        "-z", "0", filt, "1.1"], capture_output=True, text=True)
    return r.stdout.count("dn: ")


def log_tail(d):
    with open(os.path.join(d.path, "agent.log"), errors="replace") as f:
        return "".join(f.readlines()[-20:])


def wait_until(pred, timeout=600, every=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(every)
    raise TimeoutError("benchmark did not finish in time")


class Agent:
    """`run` against a directory, its webhook and metrics ports."""

    def __init__(self, agent, d, ldap_uri):
        self.port = free_port()
        cfg = d.daemon(port=self.port, ldap_uri=ldap_uri, webhooks_extra=WEBHOOKS, enrich=False, extra="log: { level: warn }\nsync: { interval: 0 }\n")
        with open(cfg) as f:
            self.mport = int(re.search(r'metrics_listen: "127\.0\.0\.1:(\d+)"', f.read()).group(1))
        self.log = open(os.path.join(d.path, "agent.log"), "a")
        self.proc = subprocess.Popen([agent, "-c", cfg, "run"], stderr=self.log)
        wait_until(self.ready, timeout=30, every=0.05)

    def ready(self):
        try:
            metrics(self.mport)
            return bool(children(self.proc.pid))
        except OSError:
            return False

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def drained(self):
        t = metrics(self.mport)
        return metric(t, "queue_depth") == 0

    def rss(self):
        """RSS of the daemon and of its receiver process, KiB."""
        kids = children(self.proc.pid)
        return rss_kib(self.proc.pid), (rss_kib(kids[0]) if kids else 0)

    def detail(self):
        kids = children(self.proc.pid)
        return {"pss": [pss_kib(self.proc.pid), pss_kib(kids[0])],
                "daemon": breakdown(self.proc.pid), "receiver": breakdown(kids[0])}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def render(agent, d, bodies):
    """The LDIF the mapping makes of the bodies (what ldapadd is given)."""
    src = os.path.join(d.path, "bodies.json")
    with open(src, "w") as f:
        json.dump(bodies, f)
    r = subprocess.run([agent, "render", "-m", os.path.join(d.path, "mapping.yaml"), src], capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def ldap_tool(tool, s, ldif, cpu=None):
    """Runs ldapadd or ldapmodify over one connection: seconds; with cpu (a dict), the
    processor time the tool and slapd took is added to it."""
    slapd0 = cpu_seconds(s.proc.pid)
    tool0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([tool, "-H", s.uri, "-x", "-D", s.agent_dn, "-w", s.agent_pw], input=ldif,
                       capture_output=True)
    dt = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    if cpu is not None:
        tool1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu["slapd"] = cpu.get("slapd", 0) + cpu_seconds(s.proc.pid) - slapd0
        cpu[tool] = cpu.get(tool, 0) + (tool1.ru_utime + tool1.ru_stime) - (tool0.ru_utime + tool0.ru_stime)
    return dt


DIY_HOOK = """#!/bin/sh
# the do-it-yourself peer: one delivery body in $1, made into an entry with jq, added with ldapadd
printf '%s' "$1" | jq -r '"dn: uid=\\(.login_email | split("@")[0] | ascii_downcase),{people}\\n" +
  "objectClass: top\\nobjectClass: person\\nobjectClass: organizationalPerson\\nobjectClass: inetOrgPerson\\n" +
  "uid: \\(.login_email | split("@")[0] | ascii_downcase)\\ncn: \\(.full_name)\\nsn: \\(.last_name)\\n" +
  "givenName: \\(.first_name)\\ndisplayName: \\(.first_name) \\(.last_name)\\ntitle: \\(.job_title)\\n" +
  "mail: \\(.login_email | ascii_downcase)\\nemployeeType: \\(.company_identifier)\\n" +
  "employeeNumber: \\(.id)\\n"' | ldapadd -x -H {uri} -D '{dn}' -w '{pw}' >/dev/null
"""


def diy_round(tmp, s, file, n):
    """The do-it-yourself peer taking the hires: seconds until all n entries are in."""
    hook = os.path.join(tmp, "diy-hook.sh")
    with open(hook, "w") as f:
        f.write(DIY_HOOK.format(people=PEOPLE, uri=s.uri, dn=s.agent_dn, pw=s.agent_pw))
    os.chmod(hook, 0o755)
    hooks = os.path.join(tmp, "hooks.json")
    with open(hooks, "w") as f:
        json.dump([{"id": "employees", "execute-command": hook, "pass-arguments-to-command":
                    [{"source": "entire-payload"}],
                    "trigger-rule": {"match": {"type": "value", "value": CHALLENGE, "parameter":
                                               {"source": "header", "name": "x-factorial-wh-challenge"}}}}], f)
    port = free_port()
    # webhook serves /hooks/ID; the post script's paths become /hooks/employees/employee/create: ID "employees"
    # would not match, so the peer gets its own request file
    peer_file = os.path.join(tmp, "diy-requests.txt")
    with open(file) as src, open(peer_file, "w") as dst:
        for line in src:
            dst.write("/hooks/employees\t" + line.split("\t", 1)[1])
    p = subprocess.Popen(["webhook", "-hooks", hooks, "-ip", "127.0.0.1", "-port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
            return True
        wait_until(up, timeout=30, every=0.05)
        t = time.perf_counter()
        wrk(f"http://127.0.0.1:{port}", peer_file)
        wait_until(lambda: count_entries(s) >= n, timeout=600, every=0.1)
        return time.perf_counter() - t
    finally:
        p.terminate()
        p.wait(30)


def agent_round(agent, d, s, file, n, until, cpu=None):
    """The agent taking the deliveries of file: seconds from the first POST until until() holds
    (with cpu, a dict, the processor time of the daemon, its receiver and slapd is added to it,
    and the seconds until the last delivery was answered, as received_seconds)."""
    a = Agent(agent, d, s.uri)
    try:
        pids = {"daemon": a.proc.pid, "receiver": children(a.proc.pid)[0], "slapd": s.proc.pid}
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        t = time.perf_counter()
        wrk(a.url(), file)
        received = time.perf_counter() - t  # every delivery answered 200
        wait_until(lambda: a.drained() and until())
        dt = time.perf_counter() - t
        if cpu is not None:
            cpu["received_seconds"] = cpu.get("received_seconds", 0) + received
            for k, p in pids.items():
                cpu[k] = cpu.get(k, 0) + cpu_seconds(p) - before[k]
        rss = a.rss()
    finally:
        a.stop()
    return dt, rss


def floor_round(s, ldif, filters):
    """What a hire asks of slapd, asked by its own tools with no agent: one search per hire (as the
    agent's, from the same base) in one client while ldapadd adds the entries in another.  Seconds."""
    t = time.perf_counter()
    # ldapsearch -f puts one (escaped) value a line into the filter: the key varies, the unique value
    # is one nobody holds, which costs slapd the same index lookup
    search = subprocess.Popen(["ldapsearch", "-LLL", "-H", s.uri, "-x", "-D", s.agent_dn, "-w", s.agent_pw,
                               "-b", "dc=example,dc=com", "-f", filters, "(|(employeeNumber=%s)(uid=nobody-holds-it))"],
                              stdout=subprocess.DEVNULL)
    add = subprocess.run(["ldapadd", "-H", s.uri, "-x", "-D", s.agent_dn, "-w", s.agent_pw], input=ldif,
                         capture_output=True)
    assert search.wait() == 0 and add.returncode == 0, add.stderr
    return time.perf_counter() - t


def hires(agent, d, tmp, n, rounds, out):
    bodies = [employee(100 + i) for i in range(n)]
    file = request_file(os.path.join(tmp, "hires.txt"), [("create_with_contract", b) for b in bodies])
    ldif = render(agent, d, bodies)
    res = {"agent": [], "ldapadd": [], "diy": [], "floor": []}
    cpu = {"agent": {}, "ldapadd": {}}
    filters = os.path.join(tmp, "keys.txt")
    with open(filters, "w") as f:
        f.write("\n".join(str(b["id"]) for b in bodies))
    for _ in range(rounds):
        with Slapd() as s:
            res["floor"].append(floor_round(s, ldif, filters))
        with Slapd() as s:
            res["ldapadd"].append(ldap_tool("ldapadd", s, ldif, cpu["ldapadd"]))
        with Slapd() as s:
            shutil.rmtree(os.path.join(d.path, "state"), ignore_errors=True)
            dt, rss = agent_round(agent, d, s, file, n, lambda: True, cpu["agent"])
            got = count_entries(s)
            assert got == n, f"{got} of {n} hires are in the directory:\n" + log_tail(d)
            res["agent"].append(dt)
            out.setdefault("rss_after_hires", []).append(rss)
        with Slapd() as s:
            res["diy"].append(diy_round(tmp, s, file, n))
    # what a hire costs the directory, counted in slapd's log (a run of its own: logging slows slapd)
    with Slapd(log_operations=True) as s:
        shutil.rmtree(os.path.join(d.path, "state"), ignore_errors=True)
        def count():
            log = s.log_text()
            return {op: len(re.findall(rf" op=\d+ {op} (?:base|dn)=", log)) for op in ("SRCH", "ADD", "MOD")}
        setup = count()
        agent_round(agent, d, s, file, n, lambda: True)
        out["hire_operations"] = {op: (k - setup[op]) / n for op, k in count().items()}
    received = cpu["agent"].pop("received_seconds", 0) / rounds
    out["hires"] = {"n": n, "seconds": res, "received_mean_seconds": received,
                    "cpu_per_delivery_ms": {side: {k: v / rounds / n * 1000 for k, v in c.items()} for side, c in cpu.items()}}


def bursts(agent, d, tmp, rounds, out, people=200, changes=10):
    first = [employee(100 + i) for i in range(people)]
    ldif = render(agent, d, first)
    changes_ldif = "".join(
        f"dn: uid=bench{100 + i},{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Version {v}\n\n"
        for v in range(1, changes + 1) for i in range(people)).encode()
    file = request_file(os.path.join(tmp, "bursts.txt"),
                        [("update", employee(100 + i, v)) for v in range(1, changes + 1) for i in range(people)])
    res = {"agent": [], "ldapmodify": [], "received": []}
    for _ in range(rounds):
        with Slapd() as s:
            ldap_tool("ldapadd", s, ldif)
            res["ldapmodify"].append(ldap_tool("ldapmodify", s, changes_ldif))
        with Slapd() as s:
            ldap_tool("ldapadd", s, ldif)
            shutil.rmtree(os.path.join(d.path, "state"), ignore_errors=True)
            seen = {}
            dt, _ = agent_round(agent, d, s, file, people * changes,
                                lambda: count_entries(s, f"(title=Version {changes})") == people, seen)
            res["agent"].append(dt)
            res["received"].append(seen["received_seconds"])
    out["bursts"] = {"people": people, "changes": changes, "seconds": res}


def latency_ms(text, pct):
    m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def intake(agent, d, tmp, rounds, out, n=40000):
    file = request_file(os.path.join(tmp, "intake.txt"), [("update", employee(1000000 + i)) for i in range(n)])
    paced = os.path.join(tmp, "paced.lua")
    with open(os.path.join(HERE, "post.lua")) as f:
        # about 1,000 deliveries a second: each connection waits 16 ms after each answer
        text = f.read() + "\nfunction delay()\n\treturn 16\nend\n"
    with open(paced, "w") as f:
        f.write(text)
    slow = request_file(os.path.join(tmp, "paced.txt"), [("update", employee(2000000 + i)) for i in range(5000)])
    res = {"rate": [], "paced_rate": [], "p50": [], "p90": [], "p99": [], "p999": []}
    for _ in range(rounds):
        shutil.rmtree(os.path.join(d.path, "state"), ignore_errors=True)
        a = Agent(agent, d, "ldap://127.0.0.1:9")
        try:
            res["rate"].append(n / wrk_seconds(wrk(a.url(), file)))
            text = wrk(a.url(), slow, script=paced)
            res["paced_rate"].append(5000 / wrk_seconds(text))
            for p, k in (("50", "p50"), ("90", "p90"), ("99", "p99")):
                res[k].append(latency_ms(text, p))
        finally:
            a.stop()
    out["intake"] = res


def memory(agent, d, tmp, out, many=100000):
    """RSS idle after start, then after `many` deliveries (2,000 people, updated over and over) are applied."""
    with Slapd() as s:
        people = 2000
        ldap_tool("ldapadd", s, render(agent, d, [employee(100 + i) for i in range(people)]))
        file = request_file(os.path.join(tmp, "many.txt"),
                            [("update", employee(100 + i % people, 1 + (i // people) % 3000)) for i in range(many)])
        shutil.rmtree(os.path.join(d.path, "state"), ignore_errors=True)
        a = Agent(agent, d, s.uri)
        try:
            time.sleep(3)  # settled: the start-up work done
            out["rss_idle"] = a.rss()
            out["rss_idle_detail"] = a.detail()
            t = time.perf_counter()
            wrk(a.url(), file)
            wait_until(a.drained, timeout=900, every=0.2)
            out["many"] = {"n": many, "seconds": time.perf_counter() - t, "rss": a.rss(), "detail": a.detail()}
        finally:
            a.stop()


def main():
    agent, results = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    only = os.environ.get("FLA_BENCH_ONLY", "hires,bursts,intake,memory").split(",")
    out = {}
    with AgentDir() as d, tempfile.TemporaryDirectory() as tmp:
        with open(MAPPING) as f:
            d.file("mapping.yaml", f.read())
        if "hires" in only:
            hires(agent, d, tmp, n, rounds, out)
        if "bursts" in only:
            bursts(agent, d, tmp, rounds, out)
        if "intake" in only:
            intake(agent, d, tmp, max(rounds, 5), out)  # the flush of each commit varies most: more rounds
        if "memory" in only:
            memory(agent, d, tmp, out)
    with open(results, "w") as f:
        json.dump(out, f, indent=1)
    med = statistics.median
    if "hires" in out:
        h = out["hires"]["seconds"]
        print(f"hires ({n}): agent {[round(x, 2) for x in h['agent']]} s, ldapadd {[round(x, 2) for x in h['ldapadd']]}"
              f" s, diy {[round(x, 2) for x in h['diy']]} s; agent/ldapadd {med(h['ldapadd']) / med(h['agent']):.2f},"
              f" agent/diy {med(h['diy']) / med(h['agent']):.1f}")
    if "bursts" in out:
        b = out["bursts"]["seconds"]
        print(f"bursts: agent {[round(x, 2) for x in b['agent']]} s, ldapmodify"
              f" {[round(x, 2) for x in b['ldapmodify']]} s; ratio {med(b['ldapmodify']) / med(b['agent']):.2f}")
    if "intake" in out:
        i = out["intake"]
        print(f"intake: {[round(x) for x in i['rate']]}/s; at {[round(x) for x in i['paced_rate']]}/s"
              f" p50 {i['p50']} p90 {i['p90']} p99 {i['p99']} ms")
    if "rss_idle" in out:
        print(f"rss idle {out['rss_idle']} KiB; after hires {out.get('rss_after_hires')}; after {out['many']['n']}:"
              f" {out['many']['rss']} KiB in {out['many']['seconds']:.1f} s")


if __name__ == "__main__":
    main()
