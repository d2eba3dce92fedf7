"""A real 389 Directory Server for the tests, in a private prefix.

DS389() makes an instance without systemd under a temporary prefix (its own
defaults.inf with every /etc, /var, /run and /dev/shm path moved under it),
listening on a free loopback port, with the suffix dc=example,dc=com, the
organizational units people, groups, former and services, and the agent's
service account: an ordinary entry given write access by ACIs on the three
managed units only, read elsewhere, and the server's stock limits (2,000
entries a search).  cn=Directory Manager is for the tests' own setup and
inspection.  Provisioning takes several seconds: a suite makes one instance
and clears the managed units between tests.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

from ldaptools import Directory, wait_answering
from slapd import free_port

SUFFIX = "dc=example,dc=com"
ADMIN_DN = "cn=Directory Manager"
ADMIN_PW = "directory-manager-secret"
AGENT_DN = "cn=factorial-agent,ou=services," + SUFFIX
AGENT_PW = "agent-secret"

_running = set()


class DS389Error(Exception):
    pass


def _owned_dirs(prefix):
    return [os.path.join(prefix, p) for p in ("var/log/dirsrv", "var/lock/dirsrv", "var/lib/dirsrv",
                                                "var/run/dirsrv", "var/shm", "lib/dirsrv", "run/dirsrv",
                                                "run/lock/dirsrv")]


class DS389(Directory):
    error = DS389Error
    name = "fla"

    def __init__(self):
        self.prefix = None
        self.proc = None
        self.port = None
        self.uri = None
        self.suffix = SUFFIX
        self.admin_dn = ADMIN_DN
        self.admin_pw = ADMIN_PW
        self.agent_dn = AGENT_DN
        self.agent_pw = AGENT_PW

    # -- provisioning -------------------------------------------------------
    def _defaults(self):
        """defaults.inf with every system path under the prefix, and no systemd."""
        with open("/usr/share/dirsrv/inf/defaults.inf", encoding="utf-8") as f:
            text = f.read()
        out = []
        for line in text.splitlines():
            key, eq, value = line.partition("=")
            value = value.strip()
            if eq and key.strip() == "with_systemd":
                line = "with_systemd = 0"
            elif eq and any(value.startswith(p) for p in ("/etc", "/var", "/run", "/dev/shm", "/tmp")):
                line = f"{key.strip()} = {self.prefix}{value}"
            out.append(line)
        path = os.path.join(self.prefix, "share", "dirsrv", "inf", "defaults.inf")
        os.makedirs(os.path.dirname(path))
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")

    def _provision(self):
        dscreate = shutil.which("dscreate") or "/usr/sbin/dscreate"
        if not os.access(dscreate, os.X_OK):
            raise DS389Error("dscreate not found: install the Debian package 389-ds-base")
        self._defaults()
        for sub in ("schema", "config"):
            shutil.copytree(f"/etc/dirsrv/{sub}", os.path.join(self.prefix, "etc", "dirsrv", sub))
        import pwd
        ds = pwd.getpwnam("dirsrv")
        os.chmod(self.prefix, 0o755)
        for d in _owned_dirs(self.prefix):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
            os.chown(d, ds.pw_uid, ds.pw_gid)
        inf = os.path.join(self.prefix, "instance.inf")
        with open(inf, "w", encoding="utf-8") as f:
            f.write(f"""[general]
config_version = 2
full_machine_name = localhost
start = False
systemd = False

[slapd]
instance_name = {self.name}
port = {self.port}
secure_port = 0
self_sign_cert = False
root_dn = {ADMIN_DN}
root_password = {ADMIN_PW}

[backend-userroot]
suffix = {SUFFIX}
create_suffix_entry = True
sample_entries = no
""")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PREFIX"] = self.prefix
        r = subprocess.run([dscreate, "from-file", inf], capture_output=True, env=env)
        dse = os.path.join(self.confdir, "dse.ldif")
        if r.returncode != 0 or not os.path.exists(dse):
            raise DS389Error("dscreate failed:\n" + r.stdout.decode("utf-8", "replace")
                             + r.stderr.decode("utf-8", "replace"))
        with open(dse, encoding="utf-8") as f:
            text = f.read()
        # loopback only (it listens on every address otherwise)
        text = text.replace("dn: cn=config\n", "dn: cn=config\nnsslapd-listenhost: 127.0.0.1\n", 1)
        with open(dse, "w", encoding="utf-8") as f:
            f.write(text)

    @property
    def confdir(self):
        return os.path.join(self.prefix, "etc", "dirsrv", f"slapd-{self.name}")

    def start(self):
        self.prefix = tempfile.mkdtemp(prefix="fla-389ds-")
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        _running.add(self)
        try:
            self._provision()
            self._launch()
            self.add("".join(f"""dn: ou={ou},{SUFFIX}
objectClass: top
objectClass: organizationalUnit
ou: {ou}
aci: (targetattr="*")(version 3.0; acl "agent writes {ou}"; allow (all) userdn="ldap:///{AGENT_DN}";)

""" for ou in ("people", "groups", "former")) + f"""dn: ou=services,{SUFFIX}
objectClass: top
objectClass: organizationalUnit
ou: services

dn: {AGENT_DN}
objectClass: top
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: factorial-agent
userPassword: {AGENT_PW}
""")
            # everyone who binds reads the tree (389's stock ACIs let only anonymous read some of it)
            self.modify(f"""dn: {SUFFIX}
changetype: modify
add: aci
aci: (targetattr!="userPassword")(version 3.0; acl "bound users read"; allow (read, search, compare) userdn="ldap:///all";)
""")
        except BaseException as e:
            log = self.log_text()
            self.stop()
            raise DS389Error(f"389-ds did not start: {e}\n{log}")
        return self

    def _launch(self):
        slapd = shutil.which("ns-slapd") or "/usr/sbin/ns-slapd"
        pid = os.path.join(self.prefix, "var", "run", "dirsrv", f"slapd-{self.name}.pid")
        self.proc = subprocess.Popen([slapd, "-D", self.confdir, "-i", pid], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        # ns-slapd detaches: the process started here ends once the server runs
        wait_answering(self.uri, ADMIN_DN, ADMIN_PW, SUFFIX, None, DS389Error)

    def stop(self):
        if self.proc:
            # ns-slapd forks into the background: its pid file names the server
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in self._pids():
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 15
                while self._pids() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not self._pids():
                    break
            self.proc.wait()
            self.proc = None
        if self.prefix and os.path.isdir(self.prefix):
            shutil.rmtree(self.prefix, ignore_errors=True)
        _running.discard(self)

    def _pids(self):
        pids = []
        if self.proc and self.proc.poll() is None:
            pids.append(self.proc.pid)
        try:
            with open(os.path.join(self.prefix, "var", "run", "dirsrv", f"slapd-{self.name}.pid")) as f:
                p = int(f.read().strip())
            os.kill(p, 0)
            pids.append(p)
        except (OSError, ValueError, TypeError):
            pass
        return sorted(set(pids))

    def log_text(self):
        try:
            with open(os.path.join(self.prefix, "var", "log", "dirsrv", f"slapd-{self.name}", "errors"),
                      "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except (OSError, TypeError):
            return ""

    # -- client side -------------------------------------------------------
    def _bind_args(self, admin):
        if admin:
            return ["-x", "-D", ADMIN_DN, "-w", ADMIN_PW]
        return ["-x", "-D", AGENT_DN, "-w", AGENT_PW]


def _stop_all():
    for s in list(_running):
        s.stop()


import atexit  # noqa: E402

atexit.register(_stop_all)


# ---- one provisioning per test run ------------------------------------------
# Provisioning takes seconds: suites run on 389 (FLA_TEST_DIRECTORY=389ds) take
# instances from this pool.  start() hands out an idle one with its managed
# units emptied; stop() gives it back.  They are stopped when the run ends.

_idle = []

MANAGED = ("ou=people," + SUFFIX, "ou=groups," + SUFFIX, "ou=former," + SUFFIX)


class PooledDS389(Directory):
    """A DS389 from the pool, used like a Slapd (start, stop, context manager)."""
    error = DS389Error

    def __init__(self, **_options):
        self._ds = None

    @property
    def uri(self):
        return self._ds.uri

    @property
    def suffix(self):
        return self._ds.suffix

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ds, name)

    def start(self):
        self._ds = _idle.pop() if _idle else DS389().start()
        self._ds.clear(*MANAGED)
        return self

    def stop(self):
        if self._ds:
            _idle.append(self._ds)
            self._ds = None

    def _bind_args(self, admin):
        return self._ds._bind_args(admin)

    def dump(self, base=None):
        """As Directory.dump, but without ou=services: 389 rehashes the service account's
        password each time it binds, which is the server's change, not the agent's."""
        out = self._ds.dump(base)
        return {dn: attrs for dn, attrs in out.items() if not dn.endswith("ou=services," + SUFFIX.lower())
                and dn != "ou=services," + SUFFIX.lower()}

    def pause(self):
        """The server stops, its data kept; resume() starts it again."""
        for pid in self._ds._pids():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while self._ds._pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._ds.proc.wait()

    def resume(self):
        self._ds._launch()
