"""The test bed itself: a real slapd comes up, answers on TCP and ldapi,
holds the base tree, takes writes from the agent's service account and is
gone afterwards, even when the code using it fails."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import IBAN, AgentDir  # noqa: E402
from slapd import Slapd, SlapdError  # noqa: E402

SLAPD = None


def setUpModule():
    global SLAPD
    SLAPD = Slapd().start()


def tearDownModule():
    SLAPD.stop()


class TestHarness(unittest.TestCase):
    def test_base_tree(self):
        dns = set(SLAPD.search(attrs=["1.1"]))
        for ou in ("people", "groups", "former", "services"):
            self.assertIn(f"ou={ou},dc=example,dc=com", dns)

    def test_service_account_adds_and_reads_back(self):
        ldif = """dn: uid=jose.nunez,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
uid: jose.nunez
cn:: Sm9zw6kgTsO6w7Fleg==
sn:: TsO6w7Fleg==
employeeNumber: 2
uidNumber: 10002
gidNumber: 10000
homeDirectory: /home/jose.nunez
"""
        SLAPD.add(ldif, admin=False)
        e = SLAPD.entry("uid=jose.nunez,ou=people,dc=example,dc=com")
        self.assertEqual(e["cn"], ["José Núñez"])
        self.assertEqual(e["employeeNumber"], ["2"])
        found = SLAPD.search(filt="(employeeNumber=2)", attrs=["uid"])
        self.assertEqual(list(found), ["uid=jose.nunez,ou=people,dc=example,dc=com"])

    def test_schema_is_enforced(self):
        with self.assertRaises(SlapdError) as cm:
            SLAPD.add("dn: uid=bad,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: bad\n")
        self.assertIn("Object class violation", str(cm.exception))

    def test_service_account_cannot_write_services(self):
        with self.assertRaises(SlapdError) as cm:
            SLAPD.add(f"dn: cn=x,ou=services,dc=example,dc=com\nobjectClass: applicationProcess\ncn: x\n",
                      admin=False)
        self.assertIn("Insufficient access", str(cm.exception))

    def test_wrong_password_is_refused(self):
        r = subprocess.run(["ldapwhoami", "-x", "-H", SLAPD.uri, "-D", SLAPD.agent_dn, "-w", "wrong"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 49, r.stderr)

    def test_ldapi_external_maps_to_service_account(self):
        r = subprocess.run(["ldapwhoami", "-H", SLAPD.ldapi_uri, "-Y", "EXTERNAL", "-Q"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip().lower(), "dn:" + SLAPD.agent_dn.lower())


class TestSecretScan(unittest.TestCase):
    def test_a_secret_or_personal_data_left_in_the_folder_fails_the_test(self):
        d = AgentDir()
        d.standard()  # the secret files themselves are where secrets belong
        d.file("agent.log", "debug: sent x-factorial-wh-challenge: test-challenge\n")
        d.file("state/state.db", f"...{IBAN}...")
        with self.assertRaises(AssertionError) as e:
            d.close()
        self.assertIn("the webhook challenge (test-challenge) appears in", str(e.exception))
        self.assertIn("an IBAN sent in a payload", str(e.exception))
        self.assertNotIn("api-key", str(e.exception))
        self.assertFalse(os.path.exists(d.path))
        clean = AgentDir()
        clean.standard()
        clean.close()  # nothing to say


class TestMutantList(unittest.TestCase):
    """tests/tools/mutants.list names code by its text: an entry whose text the code no longer
    holds (or holds twice) breaks nothing and tests nothing, so the list is checked here."""

    def test_every_entry_names_code_that_is_there_once(self):
        import importlib.util
        top = source_top()
        spec = importlib.util.spec_from_file_location("mutants", os.path.join(top, "tests", "tools", "mutants.py"))
        mutants = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mutants)
        entries = mutants.read_list(os.path.join(top, "tests", "tools", "mutants.list"))
        self.assertGreater(len(entries), 40)
        stale = []
        for e in entries:
            with open(os.path.join(top, e["file"]), encoding="utf-8") as f:
                n = f.read().count(e["from"])
            if n != 1:
                stale.append(f"[{e['name']}] {e['file']}: found {n} times: {e['from']}")
        self.assertEqual(stale, [])


def source_top():
    return os.environ.get("TOP_SRCDIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def c_modules(top):
    """The program's modules and the modules each includes: a module is a .c/.h pair by name in its
    folder, and a family of files around a private header (apply.h, apply_int.h, apply_*.c) one."""
    import glob
    import re
    families = {os.path.basename(p)[:-len("_int.h")] for p in glob.glob(os.path.join(top, "*", "*_int.h"))}

    def module(path):
        folder = os.path.basename(os.path.dirname(path))
        name = os.path.splitext(os.path.basename(path))[0]
        fam = next((f for f in families if name == f or name.startswith(f + "_")), name)
        return f"{folder}/{fam}"
    graph = {}
    for path in glob.glob(os.path.join(top, "agent", "*.[ch]")) + glob.glob(os.path.join(top, "common", "*.[ch]")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        here = module(path)
        for inc in re.findall(r'^#include "([^"]+)"', text, re.M):
            if inc == "build.h":
                continue
            there = module(os.path.join(top, inc) if "/" in inc else os.path.join(os.path.dirname(path), inc))
            if there != here:
                graph.setdefault(here, set()).add(there)
        graph.setdefault(here, set())
    return graph


def include_cycle(graph):
    """One cycle of modules including each other, as a list, or None."""
    state, path = {}, []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        path.pop()
        return None
    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def c_sources(top, pattern="*.[ch]"):
    """(path relative to top, its lines) of every source file of agent/ and common/."""
    import glob
    for path in sorted(glob.glob(os.path.join(top, "agent", pattern)) + glob.glob(os.path.join(top, "common", pattern))):
        with open(path, encoding="utf-8") as f:
            yield os.path.relpath(path, top), f.read().split("\n")


class TestSourceShape(unittest.TestCase):
    """The shape the code keeps: no module includes one that includes it back, no source file over
    1,000 lines, no function over 80 lines."""

    def test_no_source_file_over_1000_lines(self):
        long = [f"{path}: {len(lines) - 1} lines" for path, lines in c_sources(source_top()) if len(lines) - 1 > 1000]
        self.assertEqual(long, [])

    def test_no_include_cycle_between_modules(self):
        graph = c_modules(source_top())
        self.assertGreater(len(graph), 50)
        self.assertIn("agent/ldapw", graph["agent/apply"])
        self.assertIsNone(include_cycle(graph))
        # and the check finds one when there is one
        graph["agent/ldapw"] = graph["agent/ldapw"] | {"agent/apply"}
        self.assertEqual(include_cycle(graph)[0], include_cycle(graph)[-1])

    def test_no_function_over_80_lines(self):
        import re
        long = []
        for path, lines in c_sources(source_top(), "*.c"):
            for i, line in enumerate(lines):
                if not line.startswith("{"):
                    continue
                end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("}"))
                if end - i + 1 > 80:
                    head = next(lines[k] for k in range(i - 1, -1, -1) if "(" in lines[k])
                    name = re.search(r"(\w+)\(", head)
                    long.append(f"{path}:{i + 1}: {name.group(1) if name else '?'}: {end - i + 1} lines")
        self.assertEqual(long, [])


class TestLifecycle(unittest.TestCase):
    def test_stopped_and_removed_even_when_the_test_fails(self):
        with self.assertRaises(RuntimeError):
            with Slapd() as s:
                d, proc = s.dir, s.proc
                self.assertTrue(s.running())
                raise RuntimeError("a failing test")
        self.assertIsNotNone(proc.poll())
        self.assertFalse(os.path.exists(d))

    def test_two_servers_side_by_side(self):
        with Slapd() as a, Slapd() as b:
            self.assertNotEqual(a.port, b.port)
            a.add("dn: cn=only-a,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: only-a\n"
                  "member: cn=admin,dc=example,dc=com\n")
            self.assertIsNone(b.entry("cn=only-a,ou=groups,dc=example,dc=com"))

    def test_pause_and_resume_keep_data(self):
        with Slapd() as s:
            s.add("dn: cn=kept,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: kept\n"
                  "member: cn=admin,dc=example,dc=com\n")
            s.pause()
            r = subprocess.run(["ldapsearch", "-x", "-H", s.uri, "-b", "", "-s", "base"],
                               capture_output=True)
            self.assertEqual(r.returncode, 255)
            s.resume()
            self.assertIsNotNone(s.entry("cn=kept,ou=groups,dc=example,dc=com"))


if __name__ == "__main__":
    taprunner.main()
