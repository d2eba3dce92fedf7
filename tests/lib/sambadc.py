"""A real Samba Active Directory domain controller for the tests.

SambaDC() provisions the domain EXAMPLE.TEST (DC=example,DC=test) into a
private temporary directory, with only the LDAP service, listening on
127.0.0.2 so that it never meets a server the machine itself runs on 389.  It
adds OU=People and OU=Groups and the agent's own account (agent_dn), with full
control delegated on those two OUs only, as a domain administrator delegates
"create, delete and manage" there; Administrator is for the tests' own setup
and inspection.  It polls until LDAP answers, and on stop()
terminates the server and removes the directory.  Use it as a context manager
so that it is stopped even when a test fails.

LDAPS answers at ldaps_uri with a certificate for 127.0.0.2 from a throwaway
CA (ca_file): the agent talks to it as to a production domain, with the
certificate verified, and passwords (unicodePwd) can be set.  Plain LDAP
simple binds are allowed too ("ldap server require strong auth = no"), for
the tests' own setup and inspection with the command line tools.

Reading and writing go through the OpenLDAP command line tools (ldaptools.Directory),
as for slapd.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from ldaptools import Directory, make_certificates, wait_answering

SUFFIX = "DC=example,DC=test"
ADMIN_DN = "CN=Administrator,CN=Users," + SUFFIX
AGENT_DN = "CN=factorial-agent,CN=Users," + SUFFIX
AGENT_PW = "Agent-Secret-123"
ADMIN_PW = "Adm1n-Passw0rd!"
ADDRESS = "127.0.0.2"

_running = set()
atexit.register(lambda: [s.stop() for s in list(_running)])


class SambaError(Exception):
    pass


def _find(name):
    for d in ("/usr/sbin", "/usr/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return shutil.which(name)


class SambaDC(Directory):
    error = SambaError

    def __init__(self):
        self.dir = None
        self.proc = None
        self._log = None
        self.uri = f"ldap://{ADDRESS}"
        self.ldaps_uri = f"ldaps://{ADDRESS}"
        self.ca_file = None
        self.suffix = SUFFIX
        self.admin_dn = ADMIN_DN
        self.admin_pw = ADMIN_PW
        self.agent_dn = AGENT_DN
        self.agent_pw = AGENT_PW

    def _provision(self):
        tool = _find("samba-tool")
        if not tool:
            raise SambaError("samba-tool not found: install the Debian packages samba and samba-ad-provision")
        d = self.dir
        for sub in ("run", "log"):
            os.makedirs(os.path.join(d, sub))
        empty = os.path.join(d, "empty.conf")
        open(empty, "w").close()
        options = {
            "interfaces": f"{ADDRESS}/8",
            "bind interfaces only": "yes",
            "pid directory": f"{d}/run",
            "log file": f"{d}/log/samba.log",
            "ncalrpc dir": f"{d}/run/ncalrpc",
            "winbindd socket directory": f"{d}/run/winbindd",
            "server services": "ldap",
        }
        args = [tool, "domain", "provision", "-s", empty, "--realm=EXAMPLE.TEST", "--domain=EXAMPLE",
                "--host-name=dc1", "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307",
                f"--adminpass={ADMIN_PW}", f"--targetdir={d}/dc"]
        args += [f"--option={k}={v}" for k, v in options.items()]
        # samba-tool is Python: the tests' own PYTHONPATH must not reach it
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        r = subprocess.run(args, capture_output=True, env=env)
        if r.returncode != 0:
            raise SambaError("samba-tool domain provision failed:\n"
                             + r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace"))
        # provision leaves these two out of the smb.conf it writes
        conf = os.path.join(d, "dc", "etc", "smb.conf")
        with open(conf, encoding="utf-8") as f:
            text = f.read()
        # LDAPS with a certificate for the address the tests use (Samba's own names the host)
        tls = os.path.join(d, "tls")
        os.makedirs(tls)
        self.ca_file, cert, key = make_certificates(tls, ADDRESS, "dc1")
        os.chmod(key, 0o600)
        text = text.replace("[global]\n", "[global]\n\tldap server require strong auth = no\n"
                            f"\tntp signd socket directory = {d}/run/ntp_signd\n"
                            f"\ttls enabled = yes\n\ttls keyfile = {key}\n\ttls certfile = {cert}\n"
                            f"\ttls cafile = {self.ca_file}\n", 1)
        with open(conf, "w", encoding="utf-8") as f:
            f.write(text)
        return conf

    def start(self):
        samba = _find("samba")
        if not samba:
            raise SambaError("samba not found: install the Debian packages samba and samba-ad-dc")
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ADDRESS, 389))
            except OSError as e:
                raise SambaError(f"{ADDRESS}:389 is taken ({e.strerror}): is a system LDAP server "
                                 "listening on every address?") from None
        self.dir = tempfile.mkdtemp(prefix="fla-samba-")
        _running.add(self)
        try:
            conf = self._provision()
            self._log = open(os.path.join(self.dir, "log", "samba.out"), "wb")
            self.proc = subprocess.Popen([samba, "-s", conf, "-i"], stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            self._wait_ready()
            self.add(f"""dn: OU=People,{SUFFIX}
objectClass: organizationalUnit
ou: People

dn: OU=Groups,{SUFFIX}
objectClass: organizationalUnit
ou: Groups
""")
            self._make_agent()
        except BaseException:
            log = self.log_text()
            self.stop()
            raise SambaError(f"samba did not start:\n{log}")
        return self

    def _make_agent(self):
        """The agent's own account, with full control delegated on OU=People and OU=Groups
        only (as an administrator delegates "create, delete and manage" there)."""
        import base64
        import struct
        pw = base64.b64encode(f'"{AGENT_PW}"'.encode("utf-16-le")).decode()
        r = subprocess.run(["ldapadd", "-x", "-H", self.ldaps_uri, "-D", ADMIN_DN, "-w", ADMIN_PW],
                           input=f"dn: {AGENT_DN}\nobjectClass: user\nsAMAccountName: factorial-agent\n"
                                 f"userAccountControl: 512\nunicodePwd:: {pw}\n",
                           capture_output=True, text=True, env=dict(os.environ, LDAPTLS_CACERT=self.ca_file))
        if r.returncode != 0:
            raise SambaError(f"the agent's account could not be made: {r.stderr}")
        sid = base64.b64decode(self._sid_b64())
        n = sid[1]
        text = f"S-{sid[0]}-{int.from_bytes(sid[2:8], 'big')}-" + "-".join(
            map(str, struct.unpack("<" + "I" * n, sid[8:8 + 4 * n])))
        sam = os.path.join(self.dir, "dc", "private", "sam.ldb")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        for ou in ("People", "Groups"):
            r = subprocess.run([_find("samba-tool"), "dsacl", "set", "-H", sam, f"--objectdn=OU={ou},{SUFFIX}",
                                f"--sddl=(A;CI;GA;;;{text})"], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SambaError(f"delegating OU={ou} failed: {r.stderr}")

    def _sid_b64(self):
        r = subprocess.run(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", self.uri, "-D", ADMIN_DN,
                            "-w", ADMIN_PW, "-b", AGENT_DN, "-s", "base", "objectSid"], capture_output=True, text=True)
        return r.stdout.split("objectSid:: ", 1)[1].split()[0]

    def _wait_ready(self):
        wait_answering(self.uri, ADMIN_DN, ADMIN_PW, SUFFIX, self.proc, SambaError)

    def stop(self):
        if self.proc:
            # samba's children outlive it by a moment and would write into a
            # removed folder: the whole process group goes, then the folder
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while self._signal_group(0) and time.monotonic() < deadline:
                self.proc.poll()
                time.sleep(0.05)
            self._signal_group(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None
        if self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        _running.discard(self)

    def _signal_group(self, sig):
        """Sends sig to samba's process group; False when the group is gone."""
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def log_text(self):
        out = ""
        for name in ("samba.out", "samba.log"):
            try:
                with open(os.path.join(self.dir, "log", name), "rb") as f:
                    out += f.read().decode("utf-8", "replace")[-4000:]
            except (OSError, TypeError):
                pass
        return out

    # -- client side -------------------------------------------------------
    def _bind_args(self, admin):
        return ["-x", "-D", ADMIN_DN, "-w", ADMIN_PW]
