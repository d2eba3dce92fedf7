"""Writes docs/benchmarks.md and docs/benchmarks.png from the figures the
benchmarks left in a results folder (bench/run.sh runs them all first).

The generated part: the machine, the commands, every measure with its
median, rounds and ratio, and whether each target is met.  The explanation
of each measure (how it is taken, and where a target is not met, where the
time or the memory goes, with the profiles behind it) is bench/notes.md,
included after the table: it is written by hand from those profiles.

Usage: python3 bench/report.py RESULTS_DIR [DOCS_DIR]
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
med = statistics.median


def load(results, name):
    try:
        with open(os.path.join(results, name + ".json")) as f:
            return json.load(f)
    except OSError:
        return None


def machine(meta):
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rev = meta.get("rev", "")
    slapd = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "slapd"], capture_output=True, text=True).stdout
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, slapd {slapd or '?'}, "
            f"agent at {rev.strip() or '?'}, optimised build without sanitizers (`_build/bench`)")


def fmt(x, unit="s"):
    return f"{x:.2f} {unit}" if unit else f"{x:.2f}"


def rounds(xs, unit="s"):
    return ", ".join(f"{x:.2f}" for x in xs) + (f" {unit}" if unit else "")


def verdict(ok):
    if ok is None:
        return "a measure, no target"
    return "**met**" if ok else "**not met** (see below)"


def rows(r):
    """(measure, agent, compared with, ratio or figure, target, met) for every measure there are figures for."""
    out = []
    w = r.get("webhook") or {}
    if "hires" in w:
        h = w["hires"]["seconds"]
        n = w["hires"]["n"]
        ratio = med(h["ldapadd"]) / med(h["agent"])
        out.append(("end to end, distinct hires, POST to entry in the directory",
                    f"{n / med(h['agent']):.0f}/s ({rounds(h['agent'])})",
                    f"`ldapadd` {n / med(h['ldapadd']):.0f}/s ({rounds(h['ldapadd'])})",
                    f"{ratio:.2f} ×", "≥ 0.9 ×", ratio >= 0.9))
        if h.get("floor"):
            fl = med(h["ldapadd"]) / med(h["floor"])
            out.append(("slapd asked what a hire asks (a search and an add) by its own tools, no agent",
                        f"{n / med(h['floor']):.0f}/s ({rounds(h['floor'])})",
                        f"`ldapadd` {n / med(h['ldapadd']):.0f}/s", f"{fl:.2f} ×", "the ceiling of the first row",
                        None))
        diy = med(h["diy"]) / med(h["agent"])
        out.append(("against the do-it-yourself peer (`webhook` + `jq` + `ldapadd`), same load",
                    f"{n / med(h['agent']):.0f}/s", f"peer {n / med(h['diy']):.0f}/s ({rounds(h['diy'])})",
                    f"{diy:.1f} ×", "≥ 10 ×", diy >= 10))
    if "bursts" in w:
        b = w["bursts"]
        s = b["seconds"]
        ratio = med(s["ldapmodify"]) / med(s["agent"])
        total = b["people"] * b["changes"]
        got = f"; the last answered 200 after {med(s['received']):.2f} s" if s.get("received") else ""
        out.append((f"bursts: {b['people']} employees changed {b['changes']} times each, until the last change is in",
                    f"{med(s['agent']):.2f} s ({rounds(s['agent'])}{got})",
                    f"`ldapmodify` of all {total:,} changes {med(s['ldapmodify']):.2f} s ({rounds(s['ldapmodify'])})",
                    f"{ratio:.2f} ×", "≥ 1.5 ×", ratio >= 1.5))
    if "intake" in w:
        i = w["intake"]
        rate = med(i["rate"])
        out.append(("intake (directory unreachable: receive, durable commit, 200), 16 connections",
                    f"{rate:,.0f}/s ({', '.join(f'{x:,.0f}' for x in i['rate'])})", "", f"{rate:,.0f}/s",
                    "≥ 10,000/s", rate >= 10000))
        p99 = med(i["p99"])
        out.append((f"intake latency at about {med(i['paced_rate']):,.0f} deliveries/s",
                    f"p50 {med(i['p50']):.2f} ms, p90 {med(i['p90']):.2f} ms, p99 {p99:.2f} ms", "",
                    f"p99 {p99:.2f} ms", "p99 < 20 ms at 1,000/s", p99 < 20))
    if "rss_idle" in w:
        d, rcv = w["rss_idle"]
        out.append(("idle RSS of `run` after start (daemon; its receiver process)",
                    f"{d / 1024:.1f} MiB; {rcv / 1024:.1f} MiB", "", f"{d / 1024:.1f} MiB", "< 10 MiB",
                    d < 10 * 1024))
    if "many" in w and "rss_after_hires" in w:
        first = w["rss_after_hires"][0]
        m = w["many"]
        grow = (m["rss"][0] - first[0]) / 1024
        out.append((f"RSS after 2,000 / {m['n']:,} deliveries (daemon)",
                    f"{first[0] / 1024:.1f} MiB / {m['rss'][0] / 1024:.1f} MiB "
                    f"(receiver {first[1] / 1024:.1f} / {m['rss'][1] / 1024:.1f})", "",
                    f"{grow:+.1f} MiB", "flat (no growth)", abs(grow) < 2.0))
    s = r.get("sync")
    if s:
        ins = s["in_step"]
        t = med(x["seconds"] for x in ins)
        rss = max(x["peak_rss_mib"] for x in ins)
        out.append((f"`sync` of {s['n']:,} in step", f"{t:.2f} s, peak RSS {rss:.0f} MiB", "", f"{t:.2f} s",
                    "< 3 s, < 50 MiB", t < 3 and rss < 50))
        e = s["empty"]
        ratio = med(e["ldapadd"]) / med(e["sync"])
        out.append((f"`sync` of {s['n']:,} into an empty directory", f"{s['n'] / med(e['sync']):.0f} adds/s",
                    f"`ldapadd` {s['n'] / med(e['ldapadd']):.0f} adds/s", f"{ratio:.2f} ×", "≥ 0.9 ×", ratio >= 0.9))
    rd = r.get("render")
    if rd:
        t = rd["seconds"]
        out.append((f"`render` of {rd['n']:,} employees (openldap-posix profile)", f"{med(t['posix']) * 1000:.0f} ms",
                    f"minimal mapping {med(t['minimal']) * 1000:.0f} ms ({med(t['posix']) / med(t['minimal']):.2f} ×)",
                    f"{med(t['posix']) * 1000:.0f} ms", "well under 1 s", med(t["posix"]) < 1))
    return out


def plot(r, png):
    """Two panels: deliveries per second (agent, ldapadd, the DIY peer), and intake latency percentiles."""
    w = r.get("webhook") or {}
    if "hires" not in w or "intake" not in w:
        return False
    h = w["hires"]["seconds"]
    n = w["hires"]["n"]
    i = w["intake"]
    with open(png + ".rates", "w") as f:
        f.write(f'"agent" {n / med(h["agent"]):.1f}\n"ldapadd" {n / med(h["ldapadd"]):.1f}\n'
                f'"webhook+jq+ldapadd" {n / med(h["diy"]):.1f}\n')
        if "bursts" in w:
            b = w["bursts"]
            total = b["people"] * b["changes"]
            f.write(f'"agent, bursts" {total / med(b["seconds"]["agent"]):.1f}\n'
                    f'"ldapmodify, bursts" {total / med(b["seconds"]["ldapmodify"]):.1f}\n')
    with open(png + ".lat", "w") as f:
        for p in ("p50", "p90", "p99"):
            f.write(f'"{p}" {med(i[p]):.3f}\n')
    script = f"""
set terminal pngcairo size 1100,420 font ",10"
set output "{png}"
set multiplot layout 1,2
set style fill solid 0.7 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:*]
set title "Deliveries applied per second ({n:,} hires; bursts: 2,000 changes)"
set ylabel "per second"
set xtics rotate by -20
plot "{png}.rates" using 0:2:xtic(1) with boxes notitle lc rgb "#4472c4", \\
     "" using 0:2:(sprintf("%.0f", $2)) with labels offset 0,0.7 notitle
set title "Intake latency at about {med(i['paced_rate']):,.0f} deliveries/s (16 connections)"
set ylabel "milliseconds"
set xtics norotate
plot "{png}.lat" using 0:2:xtic(1) with boxes notitle lc rgb "#ed7d31", \\
     "" using 0:2:(sprintf("%.2f", $2)) with labels offset 0,0.7 notitle
unset multiplot
"""
    r2 = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    for ext in (".rates", ".lat"):
        os.unlink(png + ext)
    if r2.returncode != 0:
        print(r2.stderr, file=sys.stderr)
    return r2.returncode == 0


def memory_table(w):
    d = w.get("rss_idle_detail")
    if not d:
        return ""
    lines = ["| daemon, idle | KiB | receiver, idle | KiB |", "|---|---|---|---|"]
    for (a, ka), (b, kb) in zip(d["daemon"], d["receiver"]):
        lines.append(f"| {a} | {ka:,} | {b} | {kb:,} |")
    pss = d["pss"]
    return ("\n".join(lines) + f"\n\nProportional set size (each shared page divided among the processes that map "
            f"it): daemon {pss[0] / 1024:.1f} MiB, receiver {pss[1] / 1024:.1f} MiB.\n")


def cpu_table(w):
    """Processor time per hire of every process, and the directory operations per hire."""
    h = w.get("hires") or {}
    c = h.get("cpu_per_delivery_ms")
    if not c:
        return ""
    a, l = c["agent"], c["ldapadd"]
    lines = ["| per hire, ms of processor time | the agent's run | `ldapadd`'s run |", "|---|---|---|",
             f"| slapd | {a.get('slapd', 0):.3f} | {l.get('slapd', 0):.3f} |",
             f"| the daemon (workers) | {a.get('daemon', 0):.3f} | |",
             f"| the receiver | {a.get('receiver', 0):.3f} | |",
             f"| `ldapadd` | | {l.get('ldapadd', 0):.3f} |",
             f"| **all** | **{sum(a.values()):.3f}** | **{sum(l.values()):.3f}** |"]
    ops = w.get("hire_operations")
    text = "\n".join(lines) + "\n"
    if ops:
        text += (f"\nWhat a hire asks of slapd (counted in its log, in a run of its own): {ops['SRCH']:.2f} searches, "
                 f"{ops['ADD']:.2f} adds, {ops['MOD']:.2f} modifies; `ldapadd` asks one add.\n")
    return text


def main():
    results = sys.argv[1]
    docs = sys.argv[2] if len(sys.argv) > 2 else os.path.join(TOP, "docs")
    r = {k: load(results, k) for k in ("webhook", "sync", "render")}
    meta = load(results, "meta") or {}
    table = rows(r)
    png = os.path.join(docs, "benchmarks.png")
    drawn = plot(r, png)
    with open(os.path.join(HERE, "notes.md")) as f:
        notes = f.read()
    w = r.get("webhook") or {}
    out = [
        "# Benchmarks",
        "",
        "<!-- written by bench/report.py from the figures of `bash bench/run.sh`; edit bench/notes.md -->",
        "",
        f"Measured on {meta.get('date', time.strftime('%Y-%m-%d'))}: {machine(meta)}. Every figure below comes "
        "from one run of",
        "`bash bench/run.sh`, each measure alternating with what it is compared to, round after round, so",
        "that the machine's noise falls on both alike; what counts is the ratio.",
        "",
        "| measure | the agent | compared with | ratio / figure | target | |",
        "|---|---|---|---|---|---|",
    ]
    for m, a, c, ratio, target, ok in table:
        out.append(f"| {m} | {a} | {c} | {ratio} | {target} | {verdict(ok)} |")
    out.append("")
    if drawn:
        out += ["![Deliveries per second and intake latency](benchmarks.png)", ""]
    mem = memory_table(w)
    out.append(notes.replace("{{memory_table}}", mem).replace("{{cpu_table}}", cpu_table(w)).rstrip() + "\n")
    with open(os.path.join(docs, "benchmarks.md"), "w") as f:
        f.write("\n".join(out))
    for m, a, c, ratio, target, ok in table:
        print(f"{'   ' if ok is None else 'ok ' if ok else 'NOT'} {m}: {ratio} (target {target})")


if __name__ == "__main__":
    main()
