"""The demo behind examples/demo.sh: starts a throwaway slapd and the fake
Factorial, writes an agent configuration for them, and walks through what the
agent does today.  Everything it starts is stopped and removed at the end."""

import json
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
if len(sys.argv) > 1:
    os.environ["AGENT"] = os.path.abspath(sys.argv[1])  # the helpers below run this binary

from agenttest import AgentDir, AgentProcess  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402
from slapd import Slapd, free_port  # noqa: E402

AGENT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "factorial-ldap-agent")


def step(title):
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def agent(*args):
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ factorial-ldap-agent {shown}", flush=True)
    r = subprocess.run([AGENT, *args], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    print(f"(exit {r.returncode})", flush=True)
    return r


def show_entries(ldap, base, attrs):
    for dn, e in sorted(ldap.search(base, attrs=list(attrs), scope="one").items()):
        shown = "  ".join(f"{a}={','.join(e.get(a, []))}" for a in attrs if e.get(a))
        print(f"  {dn}\n      {shown}")


def main():
    with Slapd() as ldap, FakeFactorial(api_key="demo-api-key") as fake, AgentDir() as d:
        step("A throwaway directory and a fake Factorial")
        print(f"slapd:     {ldap.uri}  (base dc=example,dc=com)")
        print(f"Factorial: {fake.base_url}  ({len(fake.employees)} employees, {len(fake.teams)} teams)")
        for e in sorted(fake.employees.values(), key=lambda x: x["id"]):
            state = "terminated " + e["terminated_on"] if e.get("terminated_on") else "active"
            print(f"  employee {e['id']:>2}  {e['full_name']:<28} {state}")

        port = free_port()
        cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url, enrich=True,
                         public_url=f"http://127.0.0.1:{port}/hooks",
                         extra="queue: { retry_delay: 1s, max_attempts: 2 }\nsync: { interval: 0 }\n")
        with open(cfg) as f:
            text = f.read().replace('listen: "127.0.0.1:18080"', f'listen: "127.0.0.1:{port}"')
        d.file("agent.yaml", text)
        d.secret("api-key", "demo-api-key")
        with open(os.path.join(TOP, "mappings", "openldap-inetorgperson.yaml")) as f:
            d.file("mapping.yaml", f.read())

        step("The configuration and the mapping are checked (every mistake, by file:line:column)")
        agent("-c", cfg, "check")
        with open(cfg) as f:
            text = f.read().replace("company_id: 1234", "company_id: ACME").replace("ldap://", "ldpa://")
        bad = d.file("broken.yaml", text + "log:\n  levle: info\n")
        agent("-c", bad, "check")

        step("What the mapping makes of one employee (render: offline, as LDIF)")
        one = d.file("one.json", json.dumps(fake.employees[2], ensure_ascii=False))
        agent("-c", cfg, "render", one)

        step("The agent checks that it can reach the directory and the API")
        agent("-c", cfg, "check", "--online")

        step("The agent runs: it registers its own webhook subscriptions with Factorial")
        daemon = AgentProcess(cfg, os.path.join(d.path, "agent.log")).start()
        print(f"$ factorial-ldap-agent -c {cfg} run     (listening on 127.0.0.1:{port})")
        wait_for_subscriptions(fake)
        agent("-c", cfg, "subscriptions", "list")

        step("Factorial delivers every employee and team; the agent reads each employee fresh (enrich)")
        for e in sorted(fake.employees.values(), key=lambda x: x["id"]):
            fake.deliver("employees/employee/create_with_contract", e)
        for t in fake.teams.values():
            fake.deliver("teams/team/create", t)
        fake.wait_deliveries(30)
        print(f"{len(fake.deliveries)} deliveries posted, answered {sorted({x['status'] for x in fake.deliveries})}")
        wait_until_applied(daemon)

        step("The directory now")
        show_entries(ldap, "ou=people,dc=example,dc=com", ("uid", "mail", "manager"))
        show_entries(ldap, "ou=former,dc=example,dc=com", ("uid",))
        show_entries(ldap, "ou=groups,dc=example,dc=com", ("member",))

        step("Someone leaves: Factorial delivers the termination")
        leaver = fake.update_employee(3, terminated_on="2026-01-15", active=False)
        fake.deliver("employees/employee/terminate", leaver)
        fake.wait_deliveries(30)
        wait_until_applied(daemon)
        show_entries(ldap, "ou=former,dc=example,dc=com", ("uid",))
        show_entries(ldap, "ou=groups,dc=example,dc=com", ("member",))

        step("What could not be applied waits as a dead letter, with its reason")
        agent("-c", cfg, "queue", "list")

        step("The agent's log")
        daemon.stop()
        print(daemon.log_text().rstrip())

        step("Webhooks missed while the agent was down: sync finds and fixes the drift")
        fake.put_employee(dict(fake.employees[7], id=13, access_id=1013, first_name="Lucía", last_name="Fernández",
                               full_name="Lucía Fernández", login_email="lucia.fernandez@example.com",
                               company_identifier="E0013", manager_id=7, preferred_name=None))
        fake.update_employee(2, phone_number="+34 600 000 002")
        agent("-c", cfg, "sync", "--dry-run")
        agent("-c", cfg, "sync")
        agent("-c", cfg, "sync")
    print("\nEverything the demo started has been stopped and removed.")
    return 0


def wait_for_subscriptions(fake, timeout=30):
    import time
    deadline = time.monotonic() + timeout
    while len(fake.subscriptions) < 13 and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_until_applied(daemon, timeout=60):
    import time
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(daemon.url("/metrics"), timeout=5) as r:
            text = r.read().decode()
        depth = [l for l in text.splitlines() if l.startswith("factorial_ldap_agent_queue_depth ")]
        if depth and float(depth[0].split()[1]) == 0:
            time.sleep(0.3)
            return
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
