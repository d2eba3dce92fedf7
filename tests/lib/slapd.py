"""A real OpenLDAP slapd for the tests, in a private temporary directory.

Slapd() generates a slapd.conf (back_mdb; schemas core, cosine, inetorgperson,
nis), listens on a free loopback port and on an ldapi socket, loads the base
tree (dc=example,dc=com with ou=people, ou=groups, ou=former, ou=services and
the agent's service account), polls until the server answers, and on stop()
terminates it and removes the directory.  It runs as sites run it: slapd's
stock limits (500 entries a search for an ordinary account), ACLs that
let the service account write under ou=people, ou=groups and ou=former and
only read elsewhere, and (as a careful site has it) the ppolicy overlay with
a default password policy that has pwdLockout: TRUE, so that
pwdAccountLockedTime locks an account (ppolicy=False: a slapd without it);
the root DN is for the tests' own setup and inspection.  Use it as a context manager so that
it is stopped even when a test fails.

Reading and writing go through the OpenLDAP command line tools (ldapadd,
ldapmodify, ldapsearch), so the tests see the directory exactly as any other
client would.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from ldaptools import Directory, make_certificates, parse_ldif  # noqa: F401  (parse_ldif: for the tests)

SUFFIX = "dc=example,dc=com"
ADMIN_DN = "cn=admin," + SUFFIX
ADMIN_PW = "admin-secret"
AGENT_DN = "cn=factorial-agent,ou=services," + SUFFIX
AGENT_PW = "agent-secret"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIRS = ["/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib64/openldap"]

BASE_LDIF = f"""dn: {SUFFIX}
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: ou=former,{SUFFIX}
objectClass: organizationalUnit
ou: former

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {AGENT_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: factorial-agent
userPassword: {AGENT_PW}
"""

POLICY_DN = "cn=default,ou=policies," + SUFFIX
POLICY_LDIF = f"""dn: ou=policies,{SUFFIX}
objectClass: organizationalUnit
ou: policies

dn: {POLICY_DN}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
"""

_running = set()


def _stop_all():
    for s in list(_running):
        s.stop()


atexit.register(_stop_all)


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


# A test run that is terminated still stops its servers (atexit runs on SystemExit).
if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
    signal.signal(signal.SIGTERM, _sigterm)


_given_ports = set()


def free_port():
    """A loopback port nothing holds now, below the kernel's range of ephemeral ports: a port
    from that range (what binding to port 0 gives) may meanwhile become the source port of any
    outgoing connection of a suite running alongside, and a server started again on it after a
    kill would find it taken."""
    import random
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = max(low, 11000)
    for _ in range(1000):
        port = random.randrange(10000, low)
        if port in _given_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given_ports.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def _find_slapd():
    for p in ("/usr/sbin/slapd", "/usr/local/libexec/slapd", "/usr/libexec/slapd"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("slapd")


class SlapdError(Exception):
    pass


class Slapd(Directory):
    error = SlapdError

    def __init__(self, base_tree=True, extra_conf="", acl=True, tls=False, log_operations=False, ppolicy=True):
        self.tls = tls
        self.ppolicy = ppolicy
        # with log_operations, slapd.log has a line per operation (loglevel stats): operations()
        self.debug = "256" if log_operations else "0"
        self.ca_file = None
        self.ldaps_uri = None
        self.base_tree = base_tree
        self.extra_conf = extra_conf
        self.acl = acl
        self.dir = None
        self.proc = None
        self.port = None
        self.uri = None
        self.ldapi_uri = None
        self.suffix = SUFFIX
        self.admin_dn = ADMIN_DN
        self.admin_pw = ADMIN_PW
        self.agent_dn = AGENT_DN
        self.agent_pw = AGENT_PW

    # -- life cycle ---------------------------------------------------------
    def _conf(self):
        moddir = next((d for d in MODULE_DIRS if os.path.exists(os.path.join(d, "back_mdb.la"))
                       or os.path.exists(os.path.join(d, "back_mdb.so"))), MODULE_DIRS[0])
        acl = ""
        if isinstance(self.acl, str):
            acl = self.acl  # a site's own, verbatim
        elif self.acl:
            acl = f"""
access to dn.subtree="ou=people,{SUFFIX}" attrs=userPassword
    by dn.exact="{AGENT_DN}" =w
    by self write
    by anonymous auth
    by * none
access to attrs=userPassword
    by anonymous auth
    by self write
    by * none
access to dn.subtree="ou=services,{SUFFIX}"
    by * read
access to dn.subtree="ou=people,{SUFFIX}"
    by dn.exact="{AGENT_DN}" write
    by * read
access to dn.subtree="ou=groups,{SUFFIX}"
    by dn.exact="{AGENT_DN}" write
    by * read
access to dn.subtree="ou=former,{SUFFIX}"
    by dn.exact="{AGENT_DN}" write
    by * read
access to *
    by * read
"""
        tls = ""
        if self.tls:
            tls = (f"TLSCACertificateFile {self.dir}/ca.pem\n"
                   f"TLSCertificateFile {self.dir}/server.pem\n"
                   f"TLSCertificateKeyFile {self.dir}/server.key\n")
        ppolicy_module = "moduleload ppolicy\n" if self.ppolicy else ""
        ppolicy_overlay = f'overlay ppolicy\nppolicy_default "{POLICY_DN}"\n' if self.ppolicy else ""
        return f"""# generated by tests/lib/slapd.py
{tls}
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
include {SCHEMA_DIR}/nis.schema
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath {moddir}
moduleload back_mdb
{ppolicy_module}authz-regexp "gidNumber=[0-9]+\\\\+uidNumber=[0-9]+,cn=peercred,cn=external,cn=auth" "{AGENT_DN}"

database mdb
maxsize 1073741824
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PW}
directory {self.dir}/data
index objectClass eq
index uid,cn,mail,employeeNumber,businessCategory,memberUid,member eq
{ppolicy_overlay}{acl}
{self.extra_conf}
"""

    def _make_certificates(self):
        """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""
        self.ca_file = make_certificates(self.dir, "127.0.0.1")[0]

    def _listen(self):
        urls = f"{self.uri}/ {self.ldapi_uri}"
        if self.tls:
            urls += f" {self.ldaps_uri}/"
        return urls

    def start(self):
        slapd = _find_slapd()
        if not slapd:
            raise SlapdError("slapd not found: install the Debian package slapd")
        self.dir = tempfile.mkdtemp(prefix="fla-slapd-")
        os.makedirs(os.path.join(self.dir, "data"))
        with open(os.path.join(self.dir, "slapd.conf"), "w") as f:
            f.write(self._conf())
        sock = os.path.join(self.dir, "ldapi")
        self.ldapi_uri = "ldapi://" + urllib.parse.quote(sock, safe="")
        _running.add(self)
        if self.tls:
            self._make_certificates()
        last = None
        for _ in range(5):
            self.port = free_port()
            self.uri = f"ldap://127.0.0.1:{self.port}"
            if self.tls:
                self.ldaps_uri = f"ldaps://127.0.0.1:{free_port()}"
            self._log = open(os.path.join(self.dir, "slapd.log"), "wb")
            self.proc = subprocess.Popen(
                [slapd, "-f", os.path.join(self.dir, "slapd.conf"),
                 "-h", self._listen(), "-d", self.debug],
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self._wait_ready()
                break
            except SlapdError as e:
                last = e
                self._kill()
        else:
            log = self.log_text()
            self.stop()
            raise SlapdError(f"slapd did not start: {last}\n{log}")
        if self.base_tree:
            self.add(BASE_LDIF + ("\n" + POLICY_LDIF if self.ppolicy else ""), admin=True)
        return self

    def _wait_ready(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SlapdError(f"slapd exited with {self.proc.returncode}")
            r = subprocess.run(["ldapsearch", "-x", "-H", self.uri, "-b", "", "-s", "base",
                                "-o", "nettimeout=1", "namingContexts"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise SlapdError("slapd did not answer in time")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def pause(self):
        """Stops the server but keeps its data, for outage tests; resume() restarts it."""
        self._kill()

    def resume(self):
        slapd = _find_slapd()
        self._log = open(os.path.join(self.dir, "slapd.log"), "ab")
        self.proc = subprocess.Popen(
            [slapd, "-f", os.path.join(self.dir, "slapd.conf"),
             "-h", self._listen(), "-d", self.debug],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def stop(self):
        self._kill()
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        _running.discard(self)

    def operations(self):
        """The operations slapd logged (with log_operations): ["BIND", "SRCH", ...]."""
        import re
        return re.findall(r" op=\d+ (BIND|SRCH|ADD|MOD|MODRDN|DEL|EXT|CMP|UNBIND|ABANDON)\b", self.log_text())

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "slapd.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # -- client side -------------------------------------------------------
    def _bind_args(self, admin):
        if admin:
            return ["-x", "-D", self.admin_dn, "-w", self.admin_pw]
        return ["-x", "-D", self.agent_dn, "-w", self.agent_pw]


def test_directory(**options):
    """The directory the suites run against: slapd, or 389 Directory Server when
    FLA_TEST_DIRECTORY=389ds (from a pool provisioned once per run)."""
    if directory_kind() == "389ds":
        from ds389 import PooledDS389
        return PooledDS389(**options)
    return Slapd(**options)


def directory_kind():
    return os.environ.get("FLA_TEST_DIRECTORY", "openldap")
