"""The Factorial API client and the agent's own webhook subscriptions, against
the fake Factorial server (there is no network here)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from agenttest import API_LIST, TOP_SRCDIR, AgentDir, AgentProcess, run_agent  # noqa: E402
from fakefactorial import AGENT_API_VERSION, FakeFactorial, wid  # noqa: E402
from slapd import Slapd, free_port  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_apply import MAPPING, person  # noqa: E402

ALL_TYPES = ["employees/employee/create_with_contract", "employees/employee/invite", "employees/employee/update",
             "employees/employee/terminate", "employees/employee/unterminate",
             "employees/employee/set_regular_access_start_date", "teams/team/create", "teams/team/update",
             "teams/team/delete", "teams/membership/create", "teams/membership/update", "teams/membership/delete",
             "teams/membership/bulk_upsert", "contracts/contract_version/create", "contracts/contract_version/update",
             "contracts/contract_version/delete", "locations/location/create", "locations/location/update",
             "locations/location/delete"]
N = len(ALL_TYPES)
PUBLIC = "https://agent.example.com/hooks"


class Api(unittest.TestCase):
    fake_args = {}

    def setUp(self):
        self.fake = FakeFactorial(**self.fake_args).start()
        self.addCleanup(self.fake.stop)
        self.d = AgentDir()
        self.addCleanup(self.d.close)
        self.d.file("mapping.yaml", MAPPING)
        self.cfg = self.d.standard(base_url=self.fake.base_url, public_url=PUBLIC)

    def agent(self, *args, **kw):
        return run_agent("-c", self.cfg, *args, **kw)

    def ours(self):
        return {s["type"]: s for s in self.fake.subscriptions.values()}

    def modifying_requests(self):
        return [r for r in self.fake.requests if r[0] in ("POST", "PUT", "DELETE")]


class TestSubscriptions(Api):
    def test_sync_creates_one_per_type_then_changes_nothing(self):
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], f"{N} created, 0 updated, 0 deleted, 0 unchanged")
        subs = self.ours()
        self.assertEqual(sorted(subs), sorted(ALL_TYPES))
        for t, s in subs.items():
            self.assertEqual(s["target_url"], f"{PUBLIC}/{t}")
            self.assertEqual(s["challenge"], "test-challenge")
            self.assertEqual(s["name"], f"factorial-ldap-agent {t}")
            self.assertTrue(s["enabled"])
            self.assertEqual(s["company_id"], 1234)
        before = len(self.modifying_requests())
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.stdout.splitlines()[-1], f"0 created, 0 updated, 0 deleted, {N} unchanged")
        self.assertEqual(len(self.modifying_requests()), before)

    def test_wrong_target_and_disabled_are_corrected(self):
        self.agent("subscriptions", "sync")
        subs = self.ours()
        subs["teams/team/create"]["target_url"] = "https://old.example.com/hooks/teams/team/create"
        subs["employees/employee/update"]["enabled"] = False
        subs["teams/team/delete"]["challenge"] = "stale"
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn(f"updated  {wid(subs['teams/team/create']['id'])}  teams/team/create: target_url\n", out)
        self.assertIn(f"updated  {wid(subs['employees/employee/update']['id'])}  employees/employee/update: enabled\n", out)
        self.assertIn(f"updated  {wid(subs['teams/team/delete']['id'])}  teams/team/delete: challenge\n", out)
        subs = self.ours()
        self.assertEqual(subs["teams/team/create"]["target_url"], f"{PUBLIC}/teams/team/create")
        self.assertTrue(subs["employees/employee/update"]["enabled"])
        self.assertEqual(subs["teams/team/delete"]["challenge"], "test-challenge")

    def test_dry_run_changes_nothing(self):
        self.fake.add_subscription("teams/team/create", f"{PUBLIC}/teams/team/create", challenge="old")
        r = self.agent("subscriptions", "sync", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("would create  employees/employee/update  " + PUBLIC + "/employees/employee/update\n", r.stdout)
        self.assertIn(f"would update  {wid(1)}  teams/team/create: challenge, name", r.stdout)
        self.assertEqual(r.stdout.splitlines()[-1], f"{N - 1} to create, 1 to update, 0 to delete, 0 unchanged")
        self.assertEqual(self.modifying_requests(), [])
        self.assertEqual(self.fake.subscriptions[1]["challenge"], "old")

    def test_delete_touches_only_owned(self):
        other = self.fake.add_subscription("companies/legal_entity/create", "https://other.example.com/x", name="erp")
        self.agent("subscriptions", "sync")
        self.assertEqual(len(self.fake.subscriptions), N + 1)
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, rf"\n{wid(other['id'])}\s+companies/legal_entity/create\s+yes\s+no\s+https://other\.example\.com/x\n")
        self.assertRegex(r.stdout, r"\n\d+\s+teams/team/create\s+yes\s+yes\s+" + PUBLIC + "/teams/team/create\n")
        r = self.agent("subscriptions", "delete", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], f"{N} to delete, 1 not this agent's left alone")
        self.assertRegex(r.stdout, r"^would delete  \d+  ")
        self.assertEqual(len(self.fake.subscriptions), N + 1)
        # no terminal to ask, and no --yes: nothing goes
        r = self.agent("subscriptions", "delete")
        self.assertEqual(r.returncode, 2)
        self.assertIn("give --yes to delete without being asked, or --dry-run to see what would go", r.stderr)
        self.assertEqual(len(self.fake.subscriptions), N + 1)
        r = self.agent("subscriptions", "delete", "--yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], f"{N} deleted, 1 not this agent's left alone")
        self.assertEqual(list(self.fake.subscriptions), [other["id"]])

    def test_unconfigured_own_subscription_is_removed(self):
        with open(self.cfg) as f:
            text = f.read().replace("  challenge_file: challenge\n",
                                    "  challenge_file: challenge\n  subscriptions: [employees/employee/update]\n")
        self.d.file("agent.yaml", text)
        stale = self.fake.add_subscription("teams/team/create", f"{PUBLIC}/teams/team/create", challenge="x",
                                           name="factorial-ldap-agent teams/team/create")
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"deleted  {wid(stale['id'])}  teams/team/create (no longer configured)\n", r.stdout)
        self.assertEqual([s["type"] for s in self.fake.subscriptions.values()], ["employees/employee/update"])


class TestDuplicatesRejected(Api):
    fake_args = {"duplicates": "reject"}

    def test_another_integrations_subscription_is_left_alone_and_named(self):
        theirs = self.fake.add_subscription("teams/team/create", "https://crm.example.com/t", challenge="c",
                                            name="crm sync")
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"foreign  {wid(theirs['id'])}  teams/team/create: another integration's (crm sync, "
                      "https://crm.example.com/t), left alone: this agent receives no teams/team/create deliveries; "
                      "to take it over (that integration then receives none), set "
                      "webhooks.take_over_subscriptions: true\n", r.stdout)
        self.assertEqual(r.stdout.splitlines()[-1],
                         f"{N - 1} created, 0 updated, 0 deleted, 0 unchanged, 1 another integration's, left alone")
        self.assertEqual(self.fake.subscriptions[theirs["id"]]["target_url"], "https://crm.example.com/t")
        self.assertEqual(len(self.fake.subscriptions), N)
        # taken over only when the configuration says so
        with open(self.cfg) as f:
            text = f.read()
        self.d.file("agent.yaml", text.replace("  challenge_file: challenge\n",
                                               "  challenge_file: challenge\n  take_over_subscriptions: true\n"))
        r = self.agent("subscriptions", "sync")
        self.assertIn(f"updated  {wid(theirs['id'])}  teams/team/create: target_url, challenge, name (it was another "
                      "integration's: taken over, as webhooks.take_over_subscriptions says)", r.stdout)
        self.assertEqual(self.fake.subscriptions[theirs["id"]]["target_url"], f"{PUBLIC}/teams/team/create")

    def test_api_version_is_kept_in_step(self):
        # it decides the shape of the deliveries: one made with another version is corrected
        self.agent("subscriptions", "sync")
        mine = self.ours()["employees/employee/update"]
        mine["api_version"] = "2025-10-01"
        r = self.agent("subscriptions", "sync")
        self.assertIn(f"updated  {wid(mine['id'])}  employees/employee/update: api_version\n", r.stdout)
        self.assertEqual(self.ours()["employees/employee/update"]["api_version"], AGENT_API_VERSION)

    def test_422_already_taken_turns_into_an_update(self):
        # the list does not show it yet (as if written a moment ago): create answers 422
        theirs = self.fake.add_subscription("teams/team/update", "https://old.example.com/t", challenge="c")
        real_list = self.fake.list_resource
        calls = []

        def stale_list(rest, query, *version):
            calls.append(rest)
            status, body = real_list(rest, query, *version)
            if rest == "api_public/webhook_subscriptions" and len(calls) == 1:
                body["data"] = [s for s in body["data"] if s["id"] != theirs["id"]]
            return status, body
        self.fake.list_resource = stale_list
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        # it is another integration's: found, and left alone
        self.assertIn(f"foreign  {wid(theirs['id'])}  teams/team/update: another integration's (https://old.example.com/t)",
                      r.stdout)
        self.assertIn(("POST", f"/api/{AGENT_API_VERSION}/resources/api_public/webhook_subscriptions", 422), self.fake.requests)
        self.assertEqual(len(self.fake.subscriptions), N)
        self.assertEqual(self.fake.subscriptions[theirs["id"]]["target_url"], "https://old.example.com/t")


class TestSecondCluster(Api):
    """A company on Factorial's second database cluster: its id and its people's ids are past what a
    double holds; the agent keeps them as text and registers for the exact company."""
    fake_args = {"cluster": 2}
    BIG = 18446744073709550

    def setUp(self):
        super().setUp()
        with open(self.cfg) as f:
            text = f.read()
        self.d.file("agent.yaml", text.replace("company_id: 1234", f"company_id: {self.BIG + 1234}"))

    def test_subscriptions_registered_for_the_exact_company(self):
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], f"{N} created, 0 updated, 0 deleted, 0 unchanged")
        self.assertEqual({s["company_id"] for s in self.fake.subscriptions.values()}, {1234})
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.stdout.splitlines()[-1], f"0 created, 0 updated, 0 deleted, {N} unchanged")
        ids = {str(self.BIG + s["id"]) for s in self.fake.subscriptions.values()}
        listed = {line.split()[0] for line in self.agent("subscriptions", "list").stdout.splitlines()[1:]}
        self.assertEqual(listed, ids)
        # and they are deleted by their exact ids
        r = self.agent("subscriptions", "delete", "--yes")
        self.assertEqual((r.returncode, r.stdout.splitlines()[-1]), (0, f"{N} deleted, 0 not this agent's left alone"))
        self.assertEqual(self.fake.subscriptions, {})


class TestScopes(Api):
    """An OAuth app without the contracts scope: check --online names it, with what needs it."""
    fake_args = {"withheld_scopes": {"contracts"}}

    def test_a_missing_scope_is_named(self):
        self.d.file("mapping.yaml", MAPPING.replace("    loginShell: /bin/bash\n",
                                                    "    loginShell: /bin/bash\n    title: \"{job_title}\"\n"))
        with Slapd() as ldap:
            with open(self.cfg) as f:
                self.d.file("agent.yaml", f.read().replace("ldap://127.0.0.1:389", ldap.uri))
            r = self.agent("check", "--online")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f"Factorial API {self.fake.base_url}: ok (version {AGENT_API_VERSION}, company {wid(1234)})\n", r.stdout)
        self.assertIn(f"factorial-ldap-agent: Factorial API {self.fake.base_url}: the token may not read contract "
                      "versions, which job_title needs: an API key should have it\n"
                      "factorial-ldap-agent: (the OAuth scope: contracts)\n", r.stderr)
        # without a title in the mapping, contract versions are not read at all
        self.d.file("mapping.yaml", MAPPING)
        with Slapd() as ldap:
            with open(self.cfg) as f:
                self.d.file("agent.yaml", re.sub(r"ldap://127\.0\.0\.1:\d+", ldap.uri, f.read()))
            r = self.agent("check", "--online")
        self.assertNotIn("contract versions", r.stderr)


class TestCompanyToken(Api):
    """An OAuth company token (resource_owner_type=company) never expires: configured alone, it is
    sent as it is and never refreshed."""

    def test_a_company_token_is_used_as_it_is(self):
        self.fake.company_tokens.add("test-company-token")
        self.d.secret("company-token", "test-company-token")
        with open(self.cfg) as f:
            text = f.read()
        self.d.file("agent.yaml", text.replace("  api_key_file: api-key\n", "  oauth:\n    token_file: company-token\n"))
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], f"{N} created, 0 updated, 0 deleted, 0 unchanged")
        self.assertEqual(self.fake.token_requests, 0)
        self.assertNotIn("test-company-token", r.stdout + r.stderr)
        # revoked: said as such
        self.fake.company_tokens.clear()
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 401: the API refused the credentials (check factorial.oauth.token_file: the company token "
                      "may have been revoked)", r.stderr)
        # with the keys of an app besides, the configuration is refused, at its place
        self.d.file("agent.yaml", text.replace("  api_key_file: api-key\n",
                                               "  oauth:\n    token_file: company-token\n    client_id: x\n"))
        r = self.agent("check")
        self.assertEqual(r.returncode, 2)
        self.assertIn("factorial.oauth.client_id: not with token_file: a company token is used as it is", r.stderr)


class TestDuplicatesOverwritten(Api):
    def test_create_overwrites_an_unlisted_one(self):
        theirs = self.fake.add_subscription("teams/team/update", "https://old.example.com/t", challenge="c")
        real_list = self.fake.list_resource

        def stale_list(rest, query, *version):
            status, body = real_list(rest, query, *version)
            body["data"] = [s for s in body["data"] if s["id"] != theirs["id"]]
            return status, body
        self.fake.list_resource = stale_list
        r = self.agent("subscriptions", "sync")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(self.fake.subscriptions), N)
        self.assertEqual(self.fake.subscriptions[theirs["id"]]["target_url"], f"{PUBLIC}/teams/team/update")


class TestClient(Api):
    def test_429_retry_after_is_respected(self):
        self.fake.fail_next(429, retry_after=2)
        t = time.monotonic()
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(time.monotonic() - t, 2.0)
        self.assertEqual([x[2] for x in self.fake.requests], [429, 200])

    def test_a_run_of_500s_ends_in_a_clear_error(self):
        self.fake.fail_next(500, count=50)
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "factorial-ldap-agent: subscriptions list: GET "
                                   f"{self.fake.base_url}/api/{AGENT_API_VERSION}/resources/api_public/webhook_subscriptions"
                                   f"?company_id={wid(1234)}&limit=100: HTTP 500 (after 5 attempts)\n")
        self.assertEqual(len(self.fake.requests), 5)

    def test_unreachable_api(self):
        with open(self.cfg) as f:
            text = f.read().replace(self.fake.base_url, "http://127.0.0.1:9")
        self.d.file("agent.yaml", text)
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"http://127.0.0.1:9/api/{AGENT_API_VERSION}/resources/api_public/webhook_subscriptions?company_id={wid(1234)}"
                      "&limit=100: Couldn't connect to server (after 5 attempts)", r.stderr)

    def test_wrong_key_is_refused_and_never_shown(self):
        self.d.secret("api-key", "not-the-key")
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 401: the API refused the credentials", r.stderr)
        self.assertNotIn("not-the-key", r.stderr + r.stdout)


class TestResponseCap(unittest.TestCase):
    def test_an_answer_larger_than_the_cap_is_refused_without_retry(self):
        with FakeFactorial(fixtures=None, generate_employees=10) as fake, AgentDir() as d:
            fake.employees[3]["notes"] = "x" * 100000  # one page of about 100 KB
            cfg = d.standard(base_url=fake.base_url)
            with open(cfg) as f:
                text = f.read().replace("  api_key_file: api-key\n", "  api_key_file: api-key\n  max_response_bytes: 65536\n")
            d.file("agent.yaml", text)
            r = subprocess.run([API_LIST, cfg, "employees/employees"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertEqual(r.stderr, f"api_list: GET {fake.base_url}/api/2026-07-01/resources/employees/employees"
                                       "?limit=100: the answer is larger than factorial.max_response_bytes (65536 bytes)\n")
            self.assertEqual(len(fake.requests), 1)
            # under the cap (the default, 64 MiB) the same page is read
            d.file("agent.yaml", text.replace("  max_response_bytes: 65536\n", ""))
            r = subprocess.run([API_LIST, cfg, "employees/employees"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.splitlines()[-1], "10 items, 1 requests, 0 token refreshes")


OAUTH = ("  oauth:\n    token_url: {}/oauth/token\n    client_id: test-client\n    client_secret_file: client-secret\n"
         "    refresh_token_file: refresh-token\n")


class TestOAuth(Api):
    def setUp(self):
        super().setUp()
        self.d.secret("client-secret", "test-client-secret")
        self.d.secret("refresh-token", "test-refresh-token")
        with open(self.cfg) as f:
            text = f.read().replace("  api_key_file: api-key\n", OAUTH.format(self.fake.base_url))
        self.d.file("agent.yaml", text)

    def test_a_401_leads_to_exactly_one_refresh(self):
        self.fake.fail_next(401, prefix="/api/")
        r = subprocess.run([API_LIST, self.cfg, "api_public/webhook_subscriptions"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[-1], "0 items, 4 requests, 2 token refreshes")
        # one refresh to start, one after the 401; the rotated refresh token was kept in the
        # state folder, the configured file (the seed) left as it was
        self.assertEqual(self.fake.token_requests, 2)
        path = os.path.join(self.d.path, "state", "oauth-refresh-token")
        with open(path) as f:
            token = f.read().strip()
        self.assertIn(token, self.fake.refresh_tokens)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(os.path.join(self.d.path, "refresh-token")) as f:
            self.assertEqual(f.read(), "test-refresh-token\n")

    def test_persistent_401_fails_after_one_refresh(self):
        self.fake.fail_next(401, count=10, prefix="/api/")
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 401: the API refused the credentials", r.stderr)
        self.assertEqual(self.fake.token_requests, 2)

    def test_refused_refresh_token(self):
        self.d.secret("refresh-token", "revoked")
        r = self.agent("subscriptions", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"OAuth: POST {self.fake.base_url}/oauth/token: HTTP 400 invalid_grant", r.stderr)
        self.assertNotIn("revoked", r.stderr)


class TestPaginator(unittest.TestCase):
    def run_list(self, paging):
        with FakeFactorial(fixtures=None, generate_employees=1000, paging=paging) as fake, AgentDir() as d:
            cfg = d.standard(base_url=fake.base_url)
            r = subprocess.run([API_LIST, cfg, "employees/employees"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            return [int(x) for x in lines[:-1]], lines[-1], list(fake.requests)

    def test_cursor(self):
        ids, summary, reqs = self.run_list("both")
        self.assertEqual(ids, list(range(1, 1001)))
        self.assertEqual(summary, "1000 items, 10 requests, 0 token refreshes")
        # the cursor is opaque (base64): handed back as it came
        self.assertEqual(reqs[1][1], "/api/2026-07-01/resources/employees/employees?limit=100&after_id=MTAw")

    def test_page_when_the_api_has_no_cursor(self):
        ids, summary, reqs = self.run_list("page")
        self.assertEqual(ids, list(range(1, 1001)))
        self.assertEqual(summary, "1000 items, 10 requests, 0 token refreshes")
        self.assertEqual(reqs[1][1], "/api/2026-07-01/resources/employees/employees?limit=100&page=2")


class TestEnrichment(unittest.TestCase):
    def test_null_email_delivery_is_enriched_into_a_full_entry(self):
        with Slapd() as ldap, FakeFactorial() as fake, AgentDir() as d:
            d.file("mapping.yaml", MAPPING.replace('    loginShell: /bin/bash\n',
                                                   '    loginShell: /bin/bash\n    title: "{job_title}"\n'
                                                   '    departmentNumber: "{team_ids}"\n'))
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url, enrich=True)
            body = dict(fake.employees[2], login_email=None, phone_number=None)
            r = run_agent("-c", cfg, "apply", "--event", "employees/employee/create_with_contract", "-",
                          input=json.dumps(fake.to_agent(body), ensure_ascii=False))
            self.assertEqual(r.returncode, 0, r.stderr)
            e = ldap.entry("uid=jose.nunez,ou=people,dc=example,dc=com")
            self.assertEqual(e["mail"], ["jose.nunez@example.com"])
            self.assertEqual(e["title"], ["Software Engineer"])  # the latest contract version
            self.assertEqual(e["departmentNumber"], [wid(1)])
            # an employee the API no longer knows is skipped
            fake.remove_employee(3)
            r = run_agent("-c", cfg, "apply", "--event", "employees/employee/update", "-",
                          input=json.dumps(fake.to_agent(fake_employee(3))))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"employee {wid(3)} (update): no longer exists in Factorial: skipped", r.stderr)
            self.assertEqual(r.stderr.splitlines()[-1], "nothing to do")

    def test_without_enrich_the_body_is_mapped_as_it_came(self):
        with Slapd() as ldap, FakeFactorial() as fake, AgentDir() as d:
            d.file("mapping.yaml", MAPPING)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url, enrich=False)
            body = dict(fake.employees[2], login_email=None)
            r = run_agent("-c", cfg, "apply", "--event", "employees/employee/create_with_contract", "-",
                          input=json.dumps(fake.to_agent(body), ensure_ascii=False))
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"employee {wid(2)}: mail: required", r.stderr)
            self.assertEqual(fake.requests, [])

    def test_a_token_of_a_user_who_is_not_an_administrator_is_named_in_the_refusal(self):
        # Factorial sends such a user's token employees with login_email (and more) null
        with Slapd() as ldap, FakeFactorial(non_admin=True) as fake, AgentDir() as d:
            d.file("mapping.yaml", MAPPING)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url, enrich=True)
            body = json.dumps(fake.to_agent(fake.employees[2]), ensure_ascii=False)
            d.secret("client-secret", "test-client-secret")
            d.secret("refresh-token", "test-refresh-token")
            with open(cfg) as f:
                oauth = d.file("oauth.yaml", f.read().replace("  api_key_file: api-key\n", OAUTH.format(fake.base_url)))
            r = run_agent("-c", oauth, "apply", "--event", "employees/employee/update", "-", input=body)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"employee {wid(2)}: mail: required, but \"{{login_email|lower}}\" is empty: login_email is "
                          "null (Factorial sends such fields null to a token of a user who is not an administrator)\n",
                          r.stderr)
            self.assertEqual(ldap.search("ou=people,dc=example,dc=com", scope="one", attrs=["1.1"]), {})
            # the API key reads the whole record
            r = run_agent("-c", cfg, "apply", "--event", "employees/employee/update", "-", input=body)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(ldap.entry("uid=jose.nunez,ou=people,dc=example,dc=com")["mail"], ["jose.nunez@example.com"])


def fake_employee(i):
    return {"id": i, "first_name": "Gone", "last_name": "Person", "full_name": "Gone Person",
            "login_email": "gone@example.com", "legal_entity_id": 1}


class TestCheckOnline(unittest.TestCase):
    def test_ok_and_precise_failures(self):
        with Slapd() as ldap, FakeFactorial() as fake, AgentDir() as d:
            d.file("mapping.yaml", MAPPING)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url)
            r = run_agent("-c", cfg, "check", "--online")
            self.assertEqual(r.returncode, 0, r.stderr)
            # the mapping's leavers keep a shell and a description only: said, not an error
            line = next(i for i, t in enumerate(MAPPING.splitlines()) if t == "  terminated:") + 2
            warn = (f"factorial-ldap-agent: warning: {d.path}/mapping.yaml:{line}:5: employees.terminated: leavers "
                    "could still log in: nothing under terminated makes the server refuse their binds (attributes "
                    "such as loginShell or shadowExpire stop only the logins that read them, and a move only changes "
                    "the DN); set pwdAccountLockedTime: \"000001010000Z\" under terminated.attributes, with a default "
                    "password policy that has pwdLockout: TRUE (or terminated.action: delete)\n")
            self.assertEqual(r.stderr, warn)
            self.assertEqual(r.stdout, "configuration ok\n"
                                       f"directory {ldap.uri}: ok (bound as cn=factorial-agent,ou=services,dc=example,dc=com)\n"
                                       f"mapping {d.path}/mapping.yaml: ok against the directory (schema, bases)\n"
                                       f"Factorial API {fake.base_url}: ok (version {AGENT_API_VERSION}, company {wid(1234)})\n")
            d.secret("api-key", "wrong-key")
            r = run_agent("-c", cfg, "check", "--online")
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr, warn + f"factorial-ldap-agent: Factorial API {fake.base_url}: HTTP 401: the API "
                                       "refused the credentials (check factorial.api_key_file or the oauth block)\n")
            self.assertIn(f"directory {ldap.uri}: ok", r.stdout)
            d.secret("api-key", "test-api-key")
            d.secret("ldap-password", "wrong-password")
            r = run_agent("-c", cfg, "check", "--online")
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr, f"factorial-ldap-agent: directory {ldap.uri}: bind as "
                                       "cn=factorial-agent,ou=services,dc=example,dc=com: Invalid credentials (49)\n")
            self.assertIn(f"Factorial API {fake.base_url}: ok", r.stdout)
            self.assertNotIn("wrong-password", r.stdout + r.stderr)


class TestCheckOnlineSchema(unittest.TestCase):
    """check --online reads the server's schema and bases, as the service account."""

    def test_each_problem_named_at_its_place_in_the_mapping(self):
        bad = (MAPPING.replace("  base: ou=people,dc=example,dc=com\n", "  base: ou=nowhere,dc=example,dc=com\n", 1)
               .replace("    sn: \"{last_name}\"\n", "    shoeSize: \"42\"\n", 1)
               .replace("[top, person, organizationalPerson, inetOrgPerson, posixAccount]",
                        "[top, person, organizationalPerson, inetOrgPerson, posixAccount, spaceship]", 1))
        self.assertNotEqual(bad, MAPPING)
        with Slapd() as ldap, FakeFactorial() as fake, AgentDir() as d:
            m = d.file("mapping.yaml", bad)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url)
            r = run_agent("-c", cfg, "check", "--online")
            self.assertEqual(r.returncode, 1, r.stdout)
            lines = r.stderr.splitlines()
            text = bad.splitlines()

            def at(needle, key, msg):
                row = next(i for i, t in enumerate(text) if needle in t)
                col = text[row].index(needle.lstrip()) + 1
                return f"{m}:{row + 1}:{col}: {key}: {msg}"

            self.assertIn(at("ou=nowhere,dc=example,dc=com", "employees.base",
                             "ou=nowhere,dc=example,dc=com does not exist, or "
                             "cn=factorial-agent,ou=services,dc=example,dc=com may not read it"), lines)
            self.assertIn(at("    shoeSize", "employees.attributes.shoeSize",
                             "the server's schema has no attribute \"shoeSize\" (the server would refuse every "
                             "entry that has it: Undefined attribute type)"), lines)
            self.assertIn(at("spaceship", "employees.object_classes",
                             "the server's schema has no object class \"spaceship\" (the server would refuse "
                             "every new entry: Object class violation)"), lines)
            self.assertIn(at("person, organizationalPerson", "employees.object_classes",
                             "person requires sn, which the mapping's attributes do not set (the server would "
                             "refuse every new entry)"), lines)
            # sn said once, though three of the classes require it; besides, a warning that leavers
            # could still bind (the mapping's termination sets a shell and a description only)
            self.assertEqual(len([line for line in lines if line.startswith(m + ":")]), 4, r.stderr)
            self.assertIn(f"directory {ldap.uri}: ok", r.stdout)


    def test_whether_leavers_can_still_bind(self):
        with open(os.path.join(TOP_SRCDIR, "mappings", "openldap-inetorgperson.yaml")) as f:
            profile = f.read()
        # said at the first key under terminated
        term = next(i for i, t in enumerate(profile.splitlines()) if t == "  terminated:") + 2
        for ppolicy, mapping, rc, out, err in (
                (True, profile, 0, "leavers: cannot bind: pwdAccountLockedTime: 000001010000Z (the password policy "
                 "cn=default,ou=policies,dc=example,dc=com has pwdLockout: TRUE; it must be the one ppolicy_default "
                 "names, or the leavers' own)\n", None),
                # no ppolicy: the lock is an attribute the server does not know, and says so twice
                (False, profile, 1, None, "employees.terminated: leavers could still log in: terminated.attributes sets "
                 "pwdAccountLockedTime, which this server does not know (the ppolicy overlay is not loaded)"),
                # a shell, a move: nothing stops a bind
                (True, MAPPING, 0, None, "employees.terminated: leavers could still log in: nothing under terminated "
                 "makes the server refuse their binds")):
            with self.subTest(ppolicy=ppolicy, mapping=mapping[:40]), Slapd(ppolicy=ppolicy) as ldap, \
                    FakeFactorial() as fake, AgentDir() as d:
                m = d.file("mapping.yaml", mapping)
                cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url)
                r = run_agent("-c", cfg, "check", "--online")
                self.assertEqual(r.returncode, rc, r.stdout + r.stderr)
                if out:
                    self.assertIn(out, r.stdout)
                    self.assertNotIn("warning", r.stderr)
                if err:
                    line = term if mapping is profile else \
                        next(i for i, t in enumerate(mapping.splitlines()) if t == "  terminated:") + 2
                    self.assertIn(f"factorial-ldap-agent: warning: {m}:{line}:5: {err}", r.stderr)
                    self.assertNotIn("leavers: cannot bind", r.stdout)

    def test_who_keeps_references_and_what_a_refused_password_leaves(self):
        with Slapd() as ldap, FakeFactorial() as fake, AgentDir() as d:
            d.file("mapping.yaml", MAPPING.replace("  attributes:\n", "  initial_password: { length: 20 }\n"
                                                   "  attributes:\n", 1))
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url)
            ldap.add("dn: cn=vpn-users,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: vpn-users\n"
                     "member: cn=nobody\n")
            r = run_agent("-c", cfg, "check", "--online")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("references: renames, moves and deletions are followed by the agent in member, uniqueMember, "
                          "manager, secretary, seeAlso, owner under dc=example,dc=com; 1 entry the agent does not "
                          "manage holds such values (cn=vpn-users,ou=groups,dc=example,dc=com): the service account "
                          "needs write access to those attributes there\n", r.stdout)
            self.assertIn("initial passwords: cannot tell whether cn=factorial-agent,ou=services,dc=example,dc=com may "
                          "set passwords under ou=people,dc=example,dc=com: the server does not say what an account "
                          "may write before it tries;", r.stdout)

    def test_rule_groups_checked_against_the_schema_and_their_parent(self):
        ruled = MAPPING + """groups:
  offices:
    dn: "cn=office-{location_id},ou=offices,dc=example,dc=com"
    object_classes: [top, groupOfPeople]
    member_attribute: memberOf2
    empty_member: cn=nobody
  staff:
    dn: cn=staff,ou=groups,dc=example,dc=com
    empty_member: cn=nobody
"""
        with Slapd() as ldap, FakeFactorial() as fake, AgentDir() as d:
            m = d.file("mapping.yaml", ruled)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url)
            r = run_agent("-c", cfg, "check", "--online")
            self.assertEqual(r.returncode, 1, r.stdout)
            row = next(i for i, t in enumerate(ruled.splitlines()) if t == "  offices:") + 1
            # (the warning that this mapping's leavers could still bind is test_whether_leavers_can_still_bind's)
            self.assertEqual([line for line in r.stderr.splitlines() if " warning: " not in line], [
                f"{m}:{row}:3: groups.offices: the server's schema has no object class "
                "\"groupOfPeople\" (the server would refuse the groups of this rule: Object class violation)",
                f"{m}:{row}:3: groups.offices: the server's schema has no attribute "
                "\"memberOf2\" (the server would refuse the groups of this rule: Undefined attribute type)",
                f"{m}:{row}:3: groups.offices: ou=offices,dc=example,dc=com does not exist, "
                "or cn=factorial-agent,ou=services,dc=example,dc=com may not read it"])


class TestCheckOnlineBases(unittest.TestCase):
    """With base as a template, check --online says which bases today's people need."""

    def test_needed_bases_exist_or_are_named(self):
        placed = MAPPING.replace("version: 1\n", "version: 1\ntables:\n  sites: { 1: madrid, 2: paris }\n", 1).replace(
            "  base: ou=people,dc=example,dc=com\n  search_base: dc=example,dc=com\n",
            "  base: \"ou={location_id|map(sites)},ou=people,dc=example,dc=com\"\n  search_base: dc=example,dc=com\n",
            1)
        self.assertNotEqual(placed, MAPPING)
        with Slapd() as ldap, FakeFactorial(fixtures=None) as fake, AgentDir() as d:
            ldap.add("dn: ou=madrid,ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: madrid\n")
            for i, site in ((1, 1), (2, 1), (3, 2)):
                fake.put_employee(dict(person(i, f"P{i}", "Base", location_id=site), company_id=1234))
            m = d.file("mapping.yaml", placed)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url)
            r = run_agent("-c", cfg, "check", "--online", env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"})
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("base ou=madrid,ou=people,dc=example,dc=com: 2 people, exists\n", r.stdout)
            row = next(i for i, t in enumerate(placed.splitlines()) if t.startswith("  base:"))
            self.assertIn(f"factorial-ldap-agent: {m}:{row + 1}:9: employees.base: ou=paris,ou=people,dc=example,dc=com "
                          "does not exist, and 1 person would be placed there (make it, or set create_bases: true)\n",
                          r.stderr)
            d.file("mapping.yaml", placed.replace("  search_base: dc=example,dc=com\n",
                                                  "  search_base: dc=example,dc=com\n  create_bases: true\n", 1))
            r = run_agent("-c", cfg, "check", "--online", env={"FACTORIAL_LDAP_AGENT_NOW": "2026-11-27"})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("base ou=paris,ou=people,dc=example,dc=com: 1 person, missing (create_bases makes it when the "
                          "first one is applied)\n", r.stdout)


class TestRunKeepsSubscriptions(unittest.TestCase):
    def test_run_registers_receives_and_reenables(self):
        with Slapd() as ldap, FakeFactorial(max_retries=2, retry_interval=0.05) as fake, AgentDir() as d:
            port = free_port()
            d.file("mapping.yaml", MAPPING)
            cfg = d.standard(ldap_uri=ldap.uri, base_url=fake.base_url, enrich=True,
                             public_url=f"http://127.0.0.1:{port}/hooks",
                             extra="queue: { retry_delay: 1s }\n")
            with open(cfg) as f:
                text = f.read().replace('listen: "127.0.0.1:18080"', f'listen: "127.0.0.1:{port}"')
            text = text.replace("  challenge_file: challenge\n", "  challenge_file: challenge\n  check_interval: 2s\n")
            d.file("agent.yaml", text)
            agent = AgentProcess(cfg, os.path.join(d.path, "agent.log")).start()
            try:
                deadline = time.monotonic() + 30
                while len(fake.subscriptions) < N and time.monotonic() < deadline:
                    time.sleep(0.1)
                self.assertEqual(len(fake.subscriptions), N, agent.log_text())
                # Factorial delivers to the subscriptions the agent registered itself
                fake.deliver("employees/employee/create_with_contract", dict(fake.employees[1], login_email=None))
                self.assertTrue(fake.wait_deliveries(20))
                self.assertEqual([x["status"] for x in fake.deliveries], [200])
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not ldap.entry("uid=ana.garcia-lopez,ou=people,dc=example,dc=com"):
                    time.sleep(0.1)
                e = ldap.entry("uid=ana.garcia-lopez,ou=people,dc=example,dc=com")
                self.assertEqual(e["mail"], ["ana.garcia@example.com"])
                # Factorial gives up on one and disables it: the agent enables it again
                sub = next(s for s in fake.subscriptions.values() if s["type"] == "teams/team/create")
                sub["enabled"] = False
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not sub["enabled"]:
                    time.sleep(0.1)
                self.assertTrue(sub["enabled"])
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and "enabled again" not in agent.log_text():
                    time.sleep(0.1)
                self.assertIn("had been disabled by Factorial (it gave up delivering) and were enabled again; "
                              "deliveries were missed: a full reconcile (sync) is needed", agent.log_text())
                self.assertNotIn("test-api-key", agent.log_text())
                self.assertNotIn("test-challenge", agent.log_text())
                self.assertEqual(agent.stop(), 0)
            finally:
                agent.stop()


if __name__ == "__main__":
    taprunner.main()
