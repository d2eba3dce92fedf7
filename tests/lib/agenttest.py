"""Helpers for tests that run the factorial-ldap-agent binary.

AGENT (the built binary) and TOP_SRCDIR come from the environment that
`make check` sets; run by hand, they default to the in-tree build.
AgentDir makes a private folder holding an agent.yaml, its secret files
(mode 0600) and a mapping, and removes it afterwards.
"""

import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.environ.get("TOP_SRCDIR", os.path.abspath(os.path.join(HERE, "..", "..")))
AGENT = os.environ.get("AGENT", os.path.join(TOP_SRCDIR, "factorial-ldap-agent"))
API_LIST = os.environ.get("API_LIST", os.path.join(os.path.dirname(AGENT), "tests", "tools", "api_list"))
FIXTURES = os.path.join(TOP_SRCDIR, "tests", "fixtures")

# What must never be logged, kept in the state folder or shown by /metrics:
# the secrets the test folders hold, and the sensitive fields test payloads
# carry (test_apply.person() sends them with every employee).
IBAN, SSN, SALARY = "ES9121000418450200051332", "281234567840", 7654321
NEVER_SEEN = {
    "test-api-key": "the API key",
    "agent-secret": "the LDAP bind password",
    "test-challenge": "the webhook challenge",
    "test-client-secret": "the OAuth client secret",
    "test-refresh-token": "the OAuth refresh token",
    "test-company-token": "the OAuth company token",
    IBAN: "an IBAN sent in a payload",
    SSN: "a social security number sent in a payload",
    str(SALARY): "a salary sent in a payload",
}
# Files that hold a secret by design: the inputs, and the rotated OAuth token.
SECRET_FILES = {"api-key", "challenge", "ldap-password", "client-secret", "refresh-token", "oauth-refresh-token",
                "company-token"}


def leaks(text, where):
    """The secrets and personal data text holds, as messages naming where."""
    return [f"{what} ({needle}) appears in {where}" for needle, what in NEVER_SEEN.items() if needle in text]


def scan_folder(path):
    """leaks() of every file under path but the secret files themselves."""
    found = []
    for root, _, files in os.walk(path):
        for name in files:
            if name in SECRET_FILES or name.startswith("oauth-refresh-token"):
                continue
            p = os.path.join(root, name)
            try:
                with open(p, "rb") as f:
                    found += leaks(f.read().decode("latin-1"), p)
            except OSError:
                pass
    return found


def wired_mapping(text, cluster=None):
    """A mapping as a site whose company is on that database cluster writes it (the environment's
    by default, FLA_FAKE_CLUSTER): the small ids it names (legal_entity_id: [1, 2], when: {
    location_id: 2 }, the keys of its tables) written as that cluster's ids.  Ids already past the
    first cluster are left as they are."""
    import re
    from fakefactorial import wid

    def big(m):
        n = int(m.group(0))
        return wid(n, cluster) if n < 10**9 else m.group(0)

    if int(wid(0, cluster)) == 0:
        return text
    text = re.sub(r"\b(\w+_id): (\[[0-9, ]+\]|[0-9]+(?![0-9]))",
                  lambda m: m.group(1) + ": " + re.sub(r"[0-9]+", big, m.group(2)), text)
    out, in_tables = [], False
    for line in text.split("\n"):
        if line == "tables:":
            in_tables = True
        elif in_tables and not line.startswith(" "):
            in_tables = False
        elif in_tables:
            line = re.sub(r"(?<=[{,] )[0-9]+(?=:)", big, line)
        out.append(line)
    return "\n".join(out)


def run_agent(*args, input=None, env=None, timeout=60):
    """Runs the agent; returns CompletedProcess with text stdout and stderr."""
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([AGENT, *args], input=input, capture_output=True, text=True,
                          env=e, timeout=timeout)


class AgentDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="fla-agent-")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Removes the folder, after checking that no log and no state file in it holds a secret
        or personal data (AssertionError naming them, once the folder is gone)."""
        found = scan_folder(self.path) if os.path.isdir(self.path) else []
        shutil.rmtree(self.path, ignore_errors=True)
        if found:
            raise AssertionError("\n".join(found))

    def file(self, name, content, mode=0o644):
        """Writes name (a mapping, *mapping*.yaml, as wired_mapping() makes it) whole, by a rename,
        so that an agent reading it meanwhile (a clock file moved on, a configuration reloaded)
        sees the old content or the new, never an empty file; returns its path."""
        p = os.path.join(self.path, name)
        if "mapping" in os.path.basename(name) and name.endswith(".yaml"):
            content = wired_mapping(content)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        tmp = p + ".writing"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, mode)
        if os.path.exists(p):  # its owner stays (a test may have given it to the agent's user)
            st = os.stat(p)
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, p)
        return p

    def secret(self, name, content):
        return self.file(name, content + "\n", 0o600)

    def standard(self, ldap_uri="ldap://127.0.0.1:389", base_url="http://127.0.0.1:9",
                 public_url="http://127.0.0.1:8080/hooks", extra="", enrich=None, ldap_extra=""):
        """Writes a valid agent.yaml with its secrets and mapping; returns its path."""
        from fakefactorial import AGENT_API_VERSION, wid
        from slapd import free_port
        self.secret("api-key", "test-api-key")
        self.secret("challenge", "test-challenge")
        self.secret("ldap-password", "agent-secret")
        if not os.path.exists(os.path.join(self.path, "mapping.yaml")):
            with open(os.path.join(TOP_SRCDIR, "examples", "mapping.yaml"), encoding="utf-8") as f:
                self.file("mapping.yaml", f.read())
        os.makedirs(os.path.join(self.path, "state"), exist_ok=True)
        return self.file("agent.yaml", f"""factorial:
  base_url: {base_url}
  api_version: "{AGENT_API_VERSION}"
  company_id: {wid(1234)}
  api_key_file: api-key
{"" if enrich is None else f"  enrich: {'true' if enrich else 'false'}{chr(10)}"}webhooks:
  listen: "127.0.0.1:18080"
  metrics_listen: "127.0.0.1:{free_port()}"
  public_url: {public_url}
  challenge_file: challenge
ldap:
  uri: {ldap_uri}
  bind_dn: cn=factorial-agent,ou=services,dc=example,dc=com
  bind_password_file: ldap-password
{ldap_extra}mapping: mapping.yaml
state_dir: state
{extra}""")


    def daemon(self, port=None, webhooks_extra="  manage_subscriptions: false\n", **standard):
        """standard(), listening on port (a free one by default), with more webhooks keys
        (by default: subscriptions left alone, for tests without a Factorial to keep them in)."""
        from slapd import free_port
        with open(self.standard(**standard), encoding="utf-8") as f:
            text = f.read()
        text = text.replace('listen: "127.0.0.1:18080"', f'listen: "127.0.0.1:{port or free_port()}"')
        text = text.replace("  challenge_file: challenge\n", "  challenge_file: challenge\n" + webhooks_extra)
        return self.file("agent.yaml", text)


class AgentProcess:
    """`factorial-ldap-agent run` in the background, its log in a file."""

    def __init__(self, config, log_path, env=None):
        self.config = config
        self.log_path = log_path
        self.env = env
        self.proc = None
        self.port = None
        self.metrics_port = None
        self.command = None  # another command line (a user switch in front, say); default: the agent's run

    def start(self, wait=True):
        import re
        import urllib.error
        import urllib.request
        import time
        with open(self.config) as f:
            text = f.read()
        self.port = int(re.search(r'^  listen: "127\.0\.0\.1:(\d+)"', text, re.M).group(1))
        m = re.search(r'^  metrics_listen: "127\.0\.0\.1:(\d+)"', text, re.M)
        self.metrics_port = int(m.group(1)) if m else None
        # at debug, so that the secret scan sees everything the agent could say
        e = dict(os.environ, FACTORIAL_LDAP_AGENT_LOG_LEVEL="debug")
        if self.env:
            e.update(self.env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command or [AGENT, "-c", self.config, "run"], stdout=self.log,
                                     stderr=self.log, env=e)
        if not wait:
            return self
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the agent exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=2):
                    return self
            except urllib.error.HTTPError:
                return self  # it answers (503 is an answer: the test decides)
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the agent did not answer /healthz in time:\n" + self.log_text())

    def url(self, path):
        """The agent's URL for path: /metrics and /healthz on its metrics listener (webhooks.metrics_listen)."""
        if path in ("/metrics", "/healthz") and self.metrics_port:
            return f"http://127.0.0.1:{self.metrics_port}{path}"
        return f"http://127.0.0.1:{self.port}{path}"

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def metrics_leaks(self):
        """leaks() of what /metrics shows now ([] when the agent does not answer)."""
        try:
            return leaks(http("GET", self.url("/metrics"), timeout=5)[1], "/metrics")
        except OSError:
            return []

    def stop(self, timeout=60):
        import signal
        if self.proc and self.proc.poll() is None:
            found = self.metrics_leaks()
            if found:
                self.proc.kill()
                raise AssertionError("\n".join(found))
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
            self.log = None
        return self.proc.returncode if self.proc else None

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()
        self.log = None


def http(method, url, body=None, headers=None, timeout=30):
    """(status, body text) of one request; HTTP errors are answers, not exceptions."""
    import urllib.error
    import urllib.request
    data = body.encode("utf-8") if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def wait_for(pred, timeout=60, every=0.1, what="condition"):
    """Polls pred until it returns something true (returned), or fails the test after timeout seconds."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def metric(agent, name, **labels):
    """The value of one sample of the agent's /metrics (0 when absent)."""
    status, text = http("GET", agent.url("/metrics"))
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(f"factorial_ldap_agent_{name}{want} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
