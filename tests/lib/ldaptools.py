"""Reading and writing a test directory through the OpenLDAP command line
tools (ldapadd, ldapmodify, ldapdelete, ldapsearch), so that the tests see it
exactly as any other client would.

Directory is the client side that the server harnesses (slapd.Slapd,
sambadc.SambaDC) share: a subclass sets `uri`, `suffix` and `error` (the
exception it raises) and says how to bind in `_bind_args(admin)`.  It is also a
context manager over the subclass's start() and stop().
"""

import base64
import subprocess


def make_certificates(d, ip, host="localhost"):
    """A throwaway CA and a server certificate for ip and host in folder d: (ca.pem, server.pem, server.key)."""
    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}", "-keyout", f"{d}/server.key",
        "-out", f"{d}/server.csr")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write(f"subjectAltName=IP:{ip},DNS:{host}\n")
    ssl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext.cnf", "-out", f"{d}/server.pem")
    return f"{d}/ca.pem", f"{d}/server.pem", f"{d}/server.key"


def wait_answering(uri, bind_dn, password, base, proc, error, timeout=60.0):
    """Polls with ldapsearch until the server at uri answers a bind and a base search;
    raises error when proc (None: a server that detaches) exits first or the time runs out."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise error(f"the server exited with {proc.returncode}")
        r = subprocess.run(["ldapsearch", "-x", "-H", uri, "-D", bind_dn, "-w", password, "-b", base, "-s", "base",
                            "-o", "nettimeout=1", "1.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise error("the server did not answer in time")


class Directory:
    error = RuntimeError
    uri = None
    suffix = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _bind_args(self, admin):
        raise NotImplementedError

    def _tool(self, tool, ldif, admin=True, extra=()):
        r = subprocess.run([tool, "-H", self.uri, *self._bind_args(admin), *extra],
                           input=ldif.encode("utf-8"), capture_output=True)
        if r.returncode != 0:
            raise self.error(f"{tool} failed ({r.returncode}): {r.stderr.decode('utf-8', 'replace')}")
        return r

    def add(self, ldif, admin=True):
        return self._tool("ldapadd", ldif, admin)

    def modify(self, ldif, admin=True):
        return self._tool("ldapmodify", ldif, admin)

    def search(self, base=None, filt="(objectClass=*)", attrs=(), scope="sub", admin=True):
        """Returns {dn: {attribute: [values]}}, with attribute names as the server sends them."""
        r = subprocess.run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-H", self.uri,
                            *self._bind_args(admin), "-b", base or self.suffix, "-s", scope,
                            filt, *attrs], capture_output=True)
        if r.returncode == 32:
            return {}
        if r.returncode != 0:
            raise self.error(f"ldapsearch failed ({r.returncode}): {r.stderr.decode('utf-8', 'replace')}")
        return parse_ldif(r.stdout.decode("utf-8"))

    def clear(self, *bases):
        """Deletes every entry below each base (the bases stay)."""
        for base in bases:
            for dn in self.search(base, attrs=["1.1"], scope="one"):
                self._tool("ldapdelete", "", extra=["-r", dn])

    def dump(self, base=None):
        """Every entry below base with all its user attributes, values sorted: for comparing directories."""
        out = {}
        for dn, attrs in self.search(base, attrs=["*"]).items():
            out[dn.lower()] = {k.lower(): sorted(v) for k, v in attrs.items()}
        return out

    def entry(self, dn, attrs=("*",)):
        """The entry named dn (however the server spells it), or None."""
        found = self.search(dn, attrs=attrs, scope="base")
        return next(iter(found.values())) if found else None


def parse_ldif(text):
    """Parses ldapsearch -LLL output (unwrapped) into {dn: {attr: [values]}}."""
    entries = {}
    for block in text.strip().split("\n\n"):
        dn = None
        attrs = {}
        for line in block.splitlines():
            if not line or line.startswith("#"):
                continue
            name, sep, rest = line.partition(":")
            if rest.startswith(":"):
                value = base64.b64decode(rest[1:].strip()).decode("utf-8")
            else:
                value = rest[1:] if rest.startswith(" ") else rest
            if name == "dn":
                dn = value
            else:
                attrs.setdefault(name, []).append(value)
        if dn is not None:
            entries[dn] = attrs
    return entries
