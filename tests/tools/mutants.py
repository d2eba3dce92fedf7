#!/usr/bin/env python3
"""Mutation testing: is every rule the agent claims pinned by a test?

Each entry of tests/tools/mutants.list is one plausible bug, written as a
one-line change to one source file (a comparison flipped, a branch dropped, a
count off by one), with the tests that should notice it.  This script copies
the tracked files of the tree into a temporary folder (the developer's own
tree is never touched), builds it once, runs every named test on the
unchanged build (they must pass, or a "caught" would mean nothing), then for
each entry: applies the change, rebuilds, runs its tests until one fails, and
puts the file back.  An entry whose tests all pass SURVIVED: the rule it
breaks is not tested.

    python3 tests/tools/mutants.py                 every entry
    python3 tests/tools/mutants.py NAME...         those entries only
    python3 tests/tools/mutants.py --list-names    the entries' names

Options: --list FILE (another list), --keep (keep the work folder),
--sanitizers (build with --enable-sanitizers, slower), --timeout SECONDS
(per test command, 900; a test that runs out of time counts as catching).

Exit status: 0 when every entry was caught; 1 when one survived, or one no
longer applies (its text is not in its file exactly once) or does not build;
2 when the unchanged build fails its tests or cannot be built.

The list's format: one section per entry, e.g.

    [guard-counts-deletes]
    why = the deletion guard in run counts deletes as it counts disables
    file = agent/workers.c
    from = bool made = ac->sum.disable || ac->sum.del;
    to = bool made = ac->sum.disable;
    tests = test_run:TestDeletionGuard

`from` must occur exactly once in `file`; `to` replaces it (it may be
empty).  `tests` names integration suites with optional test classes or
Class.method (suite:Name), and C unit tests (unit:test_secret).
"""

import argparse
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LIST = os.path.join(TOP, "tests", "tools", "mutants.list")


def say(*args):
    print(*args, flush=True)


def read_list(path):
    cp = configparser.ConfigParser(delimiters=("=",), interpolation=None, comment_prefixes=("#",),
                                   inline_comment_prefixes=None, empty_lines_in_values=False)
    cp.optionxform = str
    with open(path, encoding="utf-8") as f:
        cp.read_file(f)
    entries = []
    for name in cp.sections():
        e = cp[name]
        missing = [k for k in ("why", "file", "from", "to", "tests") if k not in e]
        if missing:
            raise SystemExit(f"{path}: [{name}]: missing {', '.join(missing)}")
        entries.append({"name": name, "why": e["why"], "file": e["file"], "from": e["from"], "to": e["to"],
                        "tests": e["tests"].split()})
    return entries


def copy_tree(dest):
    # what git tracks, and new files it does not ignore: the tree as it stands
    files = subprocess.run(["git", "-C", TOP, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if not rel or not os.path.lexists(os.path.join(TOP, rel)):
            continue
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(os.path.join(TOP, rel), os.path.join(dest, rel), follow_symlinks=False)


def run(cmd, cwd, log, env=None, timeout=None):
    """Runs cmd, its output appended to log; (returncode, seconds), returncode None on a timeout."""
    t0 = time.monotonic()
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        try:
            p = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout,
                               start_new_session=True)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = None
    return rc, time.monotonic() - t0


class Tree:
    """The copy, its build folder, and how to run a named test there."""

    def __init__(self, root, sanitizers, timeout):
        self.root = root
        self.build = os.path.join(root, "_build", "mutants")
        self.log = root + ".log"  # kept when the folder is removed
        self.timeout = timeout
        self.sanitizers = sanitizers
        self.jobs = str(os.cpu_count() or 2)

    def configure(self):
        if run(["./autogen.sh"], self.root, self.log)[0] != 0:
            return False
        os.makedirs(self.build, exist_ok=True)
        opts = ["--enable-sanitizers"] if self.sanitizers else []
        return run([os.path.join(self.root, "configure"), *opts], self.build, self.log)[0] == 0

    def make(self, tests):
        targets = ["factorial-ldap-agent", "tests/tools/api_list", "tests/tools/intruder.so"]
        targets += ["tests/unit/" + t.split(":", 1)[1] for t in tests if t.startswith("unit:")]
        return run(["make", "-j" + self.jobs, *targets], self.build, self.log)[0] == 0

    def env(self):
        e = dict(os.environ)
        e.update({
            "AGENT": os.path.join(self.build, "factorial-ldap-agent"),
            "API_LIST": os.path.join(self.build, "tests", "tools", "api_list"),
            "TOP_SRCDIR": self.root,
            "PYTHONPATH": os.path.join(self.root, "tests", "lib"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "CMOCKA_MESSAGE_OUTPUT": "TAP",
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        e.pop("FLA_TEST_DIRECTORY", None)
        return e

    def command(self, spec):
        suite, _, name = spec.partition(":")
        if suite == "unit":
            return [os.path.join(self.build, "tests", "unit", name)]
        path = os.path.join(self.root, "tests", "integration", suite + ".py")
        if not os.path.exists(path):
            raise SystemExit(f"no such suite: {spec}")
        return [sys.executable, path] + ([name] if name else [])

    def passes(self, spec):
        """(True when the test passed, seconds, 'timed out' or '')."""
        rc, secs = run(self.command(spec), self.build, self.log, env=self.env(), timeout=self.timeout)
        return rc == 0, secs, "timed out" if rc is None else ""


def apply_change(root, e):
    path = os.path.join(root, e["file"])
    with open(path, encoding="utf-8") as f:
        text = f.read()
    n = text.count(e["from"])
    if n != 1:
        return None, f"its text is in {e['file']} {n} times, not once: update the entry"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(e["from"], e["to"]))
    return text, ""


def restore(root, e, text):
    with open(os.path.join(root, e["file"]), "w", encoding="utf-8") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--list", default=LIST)
    ap.add_argument("--list-names", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--sanitizers", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()

    entries = read_list(args.list)
    if args.list_names:
        for e in entries:
            say(f"{e['name']:32} {e['why']}")
        return 0
    unknown = set(args.names) - {e["name"] for e in entries}
    if unknown:
        say("no such entries: " + ", ".join(sorted(unknown)))
        return 2
    if args.names:
        entries = [e for e in entries if e["name"] in args.names]

    root = tempfile.mkdtemp(prefix="fla-mutants-")
    tree = Tree(root, args.sanitizers, args.timeout)
    try:
        deps = subprocess.run(["bash", "-c", f". '{TOP}/tests/lib/bootstrap.sh' && fla_install_deps"])
        if deps.returncode != 0:
            say("error: could not install the packages the build and the tests need")
            return 2
        copy_tree(root)
        say(f"mutants: {len(entries)} entries; building a copy of the tree in {root} (log: {tree.log})")
        all_tests = sorted({t for e in entries for t in e["tests"]})
        if not tree.configure() or not tree.make(all_tests):
            say(f"error: the unchanged tree does not build; see {tree.log}")
            return 2
        for spec in all_tests:
            ok, secs, how = tree.passes(spec)
            if not ok:
                say(f"error: {spec} fails on the unchanged tree ({how or 'failed'}); see {tree.log}")
                return 2
        say(f"mutants: the {len(all_tests)} tests named pass on the unchanged tree")

        caught = survived = broken = 0
        for e in entries:
            original, why = apply_change(root, e)
            if original is None:
                broken += 1
                say(f"NOT APPLIED {e['name']}: {why}")
                continue
            try:
                if not tree.make(e["tests"]):
                    broken += 1
                    say(f"NOT BUILT   {e['name']}: the changed tree does not build; see {tree.log}")
                    continue
                by = None
                for spec in e["tests"]:
                    ok, secs, how = tree.passes(spec)
                    if not ok:
                        by = f"{spec}{' ' + how if how else ''}, {secs:.0f} s"
                        break
                if by:
                    caught += 1
                    say(f"caught      {e['name']} (by {by})")
                else:
                    survived += 1
                    say(f"SURVIVED    {e['name']}: {e['why']}; no test of {' '.join(e['tests'])} failed")
            finally:
                restore(root, e, original)
        say(f"mutants: {len(entries)} entries: {caught} caught, {survived} survived, {broken} not applied or not built")
        return 0 if survived == 0 and broken == 0 else 1
    finally:
        if args.keep:
            say(f"mutants: the work folder is kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
