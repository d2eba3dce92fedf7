"""The command line as a sysadmin meets it: help, version, check, exit codes."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import AgentDir, run_agent  # noqa: E402

COMMANDS = ["run", "check", "render", "apply", "sync", "subscriptions", "queue"]


class TestHelpAndVersion(unittest.TestCase):
    def test_help_lists_every_command(self):
        r = run_agent("--help")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("Usage: factorial-ldap-agent [-c FILE] COMMAND [ARGS]"))
        for c in COMMANDS:
            self.assertRegex(r.stdout, rf"\n  {c}\b", c)
        self.assertIn("check [--online] [--fixtures DIR]", r.stdout)
        self.assertIn("apply [--dry-run] --event TYPE FILE|-", r.stdout)
        self.assertIn("queue list [--json] | retry [ID] | drop ID", r.stdout)
        self.assertLessEqual(max(len(line) for line in r.stdout.splitlines()), 120)
        self.assertIn("/etc/factorial-ldap-agent/agent.yaml", r.stdout)

    def test_version(self):
        r = run_agent("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^factorial-ldap-agent \d+\.\d+\.\d+\n$")

    def test_no_command_and_unknown_command_are_usage_errors(self):
        r = run_agent()
        self.assertEqual(r.returncode, 2)
        self.assertIn("no command given", r.stderr)
        r = run_agent("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn('unknown command "frobnicate"', r.stderr)
        r = run_agent("--bogus")
        self.assertEqual(r.returncode, 2)


class TestCheck(unittest.TestCase):
    def setUp(self):
        self.d = AgentDir()

    def tearDown(self):
        self.d.close()

    def test_valid_config(self):
        cfg = self.d.standard()
        r = run_agent("-c", cfg, "check")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "configuration ok\n", ""))

    def test_three_mistakes_three_errors(self):
        cfg = self.d.standard(extra="log:\n  level: chatty\n")
        text = open(cfg).read()
        text = text.replace("company_id: 1234", "company_id: twelve")
        text = text.replace("  uri: ldap://127.0.0.1:389\n", "  uri: ldpa://127.0.0.1:389\n")
        self.d.file("agent.yaml", text)
        r = run_agent("-c", cfg, "check")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr.splitlines(), [
            f'{cfg}:4:15: factorial.company_id: expected an integer, got "twelve"',
            f'{cfg}:12:8: ldap.uri: "ldpa://127.0.0.1:389" is not a valid LDAP URI (use ldap://, ldaps:// or ldapi://)',
            f'{cfg}:18:10: log.level: "chatty" is not one of error | warn | info | debug',
        ])

    def test_group_readable_secret_is_refused(self):
        cfg = self.d.standard()
        pw = os.path.join(self.d.path, "ldap-password")
        os.chmod(pw, 0o640)
        r = run_agent("-c", cfg, "check")
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"{cfg}:14:23: ldap.bind_password_file: {pw} is open to group or others (mode 0640)",
                      r.stderr)
        self.assertNotIn("agent-secret", r.stderr + r.stdout)

    def test_missing_config_file(self):
        r = run_agent("-c", "/nonexistent/agent.yaml", "check")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "/nonexistent/agent.yaml: cannot read: No such file or directory\n")
        r = run_agent("-c", self.d.path, "check")
        self.assertEqual((r.returncode, r.stderr), (2, f"{self.d.path}: cannot read: it is a folder\n"))

    def test_relative_paths_follow_the_config_file(self):
        cfg = self.d.standard()
        r = run_agent("-c", cfg, "check", env=None)
        self.assertEqual(r.returncode, 0)
        os.remove(os.path.join(self.d.path, "mapping.yaml"))
        r = run_agent("-c", cfg, "check")
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"mapping: cannot read {self.d.path}/mapping.yaml: No such file or directory", r.stderr)

    def test_check_rejects_stray_arguments(self):
        cfg = self.d.standard()
        r = run_agent("-c", cfg, "check", "extra")
        self.assertEqual(r.returncode, 2)


class TestUsage(unittest.TestCase):
    """Bad usage is exit 2 with the command's usage line, before anything is read."""

    def test_each_command(self):
        for args, usage in ((["sync", "extra"], "sync [--dry-run] [--employee ID] [--force] [--verbose]"),
                            (["sync", "--bogus"], "sync [--dry-run] [--employee ID] [--force] [--verbose]"),
                            (["subscriptions"], "subscriptions list | sync [--dry-run] | delete [--dry-run | --yes]"),
                            (["subscriptions", "sync", "--force"], "subscriptions list | sync [--dry-run] | delete"),
                            (["subscriptions", "delete", "--force"], "delete [--dry-run | --yes]"),
                            (["queue", "retry", "x"], "is not a delivery id"),
                            (["queue"], "queue list [--json] | retry [ID] | drop ID"),
                            (["apply", "-"], "apply [--dry-run] --event TYPE FILE|-"),
                            (["render"], "give at least one FILE"),
                            (["run", "now"], "run: unexpected argument")):
            r = run_agent("-c", "/nonexistent/agent.yaml", *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(usage, r.stderr, args)
            self.assertEqual(r.stdout, "", args)


class TestUnit(unittest.TestCase):
    """The systemd unit: systemd-analyze verifies it, and its exposure stays low."""

    def test_unit_verifies(self):
        import re
        import shutil
        import subprocess
        import tempfile
        from agenttest import AGENT, TOP_SRCDIR
        self.assertIsNotNone(shutil.which("systemd-analyze"), "systemd-analyze (Debian package systemd)")
        with open(os.path.join(TOP_SRCDIR, "examples", "factorial-ldap-agent.service.in")) as f:
            unit = f.read().replace("@sbindir@", os.path.dirname(os.path.abspath(AGENT)))
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        path = os.path.join(d, "factorial-ldap-agent.service")
        with open(path, "w") as f:
            f.write(unit)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, text=True)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", path], capture_output=True, text=True)
        m = re.search(r"Overall exposure level for factorial-ldap-agent.service: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLess(float(m.group(1)), 2.0, r.stdout)


class TestDocumentedCommands(unittest.TestCase):
    """The commands README.md and docs/*.md show, run as shown from a copy of the checkout: each
    line of output they show (but "...") comes out, in order.  Commands that need a live directory
    or a running agent (a configuration of one's own) are shown, not run: those the examples and
    the mappings of the checkout are enough for are run."""

    def commands(self, path):
        """(command, shown lines) for each `$ ` line of the fenced blocks of a Markdown file."""
        out, cur, fenced = [], None, False
        with open(path, encoding="utf-8") as f:
            for line in f.read().splitlines():
                if line.startswith("```"):
                    fenced = not fenced
                    cur = None
                elif fenced and line.startswith("$ "):
                    cur = (line[2:].split("  #")[0].strip(), [])
                    out.append(cur)
                elif fenced and cur is not None and line != "...":
                    cur[1].append(line)
        return out

    def runnable(self, cmd):
        return cmd.startswith("chmod ") or " -m " in cmd or " -c examples/" in cmd

    def test_readme_and_docs(self):
        import shlex
        import shutil
        import subprocess
        import tempfile
        from agenttest import AGENT, TOP_SRCDIR
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        for sub in ("examples", "mappings"):
            shutil.copytree(os.path.join(TOP_SRCDIR, sub), os.path.join(d, sub))
        ran = 0
        for doc in ["README.md"] + sorted("docs/" + n for n in os.listdir(os.path.join(TOP_SRCDIR, "docs"))
                                         if n.endswith(".md")):
            for cmd, shown in self.commands(os.path.join(TOP_SRCDIR, doc)):
                if not self.runnable(cmd):
                    continue
                argv = shlex.split(cmd)
                if argv[0] == "factorial-ldap-agent":
                    argv[0] = os.path.abspath(AGENT)
                r = subprocess.run(argv, cwd=d, capture_output=True, text=True,
                                   env=dict(os.environ, FACTORIAL_LDAP_AGENT_NOW="2026-11-27"))
                got = (r.stdout + r.stderr).splitlines()
                at = 0
                for want in shown:
                    while at < len(got) and got[at] != want:
                        at += 1
                    self.assertLess(at, len(got), f"{doc}: `{cmd}` did not print, in order:\n{want}\n"
                                                  f"it printed:\n{r.stdout}{r.stderr}")
                ran += 1
        self.assertGreaterEqual(ran, 5)


if __name__ == "__main__":
    taprunner.main()
