"""The demo behind examples/demo.sh: starts a throwaway slapd and the fake
Factorial, writes an agent configuration for them, and walks through what the
agent does today.  Everything it starts is stopped and removed at the end."""

import json
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))

from agenttest import AgentDir  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402
from slapd import Slapd  # noqa: E402

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


def main():
    with Slapd() as ldap, FakeFactorial(api_key="demo-api-key") as fake, AgentDir() as d:
        step("A throwaway directory and a fake Factorial")
        print(f"slapd:     {ldap.uri}  (base dc=example,dc=com)")
        print(f"Factorial: {fake.base_url}  ({len(fake.employees)} employees, {len(fake.teams)} teams)")
        for e in sorted(fake.employees.values(), key=lambda x: x["id"]):
            state = "terminated " + e["terminated_on"] if e.get("terminated_on") else "active"
            print(f"  employee {e['id']:>2}  {e['full_name']:<28} {state}")

        cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url,
                         public_url="http://127.0.0.1:18080/hooks")
        d.secret("api-key", "demo-api-key")
        with open(os.path.join(TOP, "mappings", "openldap-inetorgperson.yaml")) as f:
            d.file("mapping.yaml", f.read())

        step("The configuration and the mapping are checked (every mistake, by file:line:column)")
        agent("-c", cfg, "check")
        with open(cfg) as f:
            text = f.read().replace("company_id: 1234", "company_id: ACME").replace("ldap://", "ldpa://")
        bad = d.file("broken.yaml", text + "log:\n  levle: info\n")
        agent("-c", bad, "check")

        step("What the mapping makes of Factorial's employees (render: offline, as LDIF)")
        people = d.file("people.json", json.dumps([fake.employees[i] for i in (1, 2, 3, 8, 10)],
                                                  ensure_ascii=False))
        agent("-c", cfg, "render", people)

        step("The directory as it stands")
        for dn in sorted(ldap.search(attrs=["1.1"]), key=lambda x: (x.count(","), x)):
            print(f"  {dn}")

        step("What comes next")
        print("This version checks its configuration and renders the mapping; run, apply, sync,\n"
              "subscriptions and queue say they are not available yet rather than pretend.  As\n"
              "they land, this demo registers the agent's webhook subscriptions with Factorial,\n"
              "receives sample deliveries and shows the entries they produce in the directory.")
    print("\nEverything the demo started has been stopped and removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
