"""Tests of the fake Factorial server itself: it must behave as
docs/api.md ("What the agent relies on") describes, or the agent's tests prove nothing."""

import json
import os
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import taprunner  # noqa: E402
from fakefactorial import FakeFactorial  # noqa: E402

V = "2026-07-01"
SUBS = f"/api/{V}/resources/api_public/webhook_subscriptions"
EMPS = f"/api/{V}/resources/employees/employees"


def ids(*numbers):
    """Ids as 2026-07-01 writes them: strings."""
    return [str(n) for n in numbers]


def call(fake, method, path, body=None, key="test-api-key", bearer=None, raw=False):
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    elif key is not None:
        headers["x-api-key"] = key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(fake.base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


class Receiver:
    """A webhook receiver that answers each POST with the next status of a script."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.got = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                rec.got.append((self.path, self.headers, json.loads(body)))
                status = rec.statuses.pop(0) if rec.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def body_cursor(i):
    """The cursor 2026-07-01 gives for the page that ends at id i."""
    import base64
    return base64.b64encode(str(i).encode()).decode()


class FakeTestCase(unittest.TestCase):
    fake_args = {}

    def setUp(self):
        self.fake = FakeFactorial(**self.fake_args).start()

    def tearDown(self):
        self.fake.stop()


class TestAuth(FakeTestCase):
    def test_api_key_accepted(self):
        status, body, _ = call(self.fake, "GET", EMPS)
        self.assertEqual(status, 200)
        self.assertEqual(len(body["data"]), 12)

    def test_wrong_or_missing_key_is_401(self):
        self.assertEqual(call(self.fake, "GET", EMPS, key="wrong")[0], 401)
        self.assertEqual(call(self.fake, "GET", EMPS, key=None)[0], 401)
        self.assertEqual(call(self.fake, "GET", EMPS, key=None, bearer="nope")[0], 401)

    def test_unknown_version_is_404(self):
        self.assertEqual(call(self.fake, "GET", "/api/2019-01-01/resources/employees/employees")[0], 404)

    def test_oauth_refresh_rotates_and_bearer_works(self):
        form = "grant_type=refresh_token&refresh_token=test-refresh-token&client_id=test-client&client_secret=test-client-secret"
        req = urllib.request.Request(self.fake.base_url + "/oauth/token", data=form.encode(),
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req) as r:
            tok = json.loads(r.read())
        self.assertEqual(tok["token_type"], "Bearer")
        self.assertEqual(tok["expires_in"], 7200)
        self.assertNotEqual(tok["refresh_token"], "test-refresh-token")
        self.assertEqual(call(self.fake, "GET", EMPS, bearer=tok["access_token"])[0], 200)
        # the old refresh token is spent
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(urllib.request.Request(self.fake.base_url + "/oauth/token", data=form.encode()))
        self.assertEqual(cm.exception.code, 400)
        # an expired access token is refused
        self.fake.expire_access_tokens()
        self.assertEqual(call(self.fake, "GET", EMPS, bearer=tok["access_token"])[0], 401)
        self.assertEqual(self.fake.token_requests, 2)


class TestPagination(FakeTestCase):
    fake_args = {"fixtures": None, "generate_employees": 1000}

    def test_cursor_paging_reads_all_in_ten_pages(self):
        seen, pages, after = [], 0, None
        while True:
            path = EMPS + "?limit=100" + (f"&after_id={after}" if after else "")
            status, body, _ = call(self.fake, "GET", path)
            self.assertEqual(status, 200)
            pages += 1
            seen += [e["id"] for e in body["data"]]
            meta = body["meta"]
            self.assertEqual(meta["total"], 1000)
            if not meta["has_next_page"]:
                break
            after = meta["end_cursor"]
        self.assertEqual(pages, 10)
        self.assertEqual(seen, ids(*range(1, 1001)))

    def test_page_paging_reads_all_in_ten_pages(self):
        seen = []
        for page in range(1, 12):
            status, body, _ = call(self.fake, "GET", EMPS + f"?page={page}&limit=100")
            self.assertEqual(status, 200)
            seen += [e["id"] for e in body["data"]]
            if page == 10:
                self.assertFalse(body["meta"]["has_next_page"])
        self.assertEqual(seen, ids(*range(1, 1001)))

    def test_limit_is_capped_at_100(self):
        status, body, _ = call(self.fake, "GET", EMPS + "?limit=500")
        self.assertEqual(len(body["data"]), 100)
        self.assertEqual(body["meta"]["limit"], 100)
        self.assertTrue(body["meta"]["has_next_page"])
        self.assertEqual(body["meta"]["end_cursor"], "MTAw")  # opaque: base64

    def test_ids_filter(self):
        status, body, _ = call(self.fake, "GET", EMPS + "?ids[]=5&ids[]=700")
        self.assertEqual([e["id"] for e in body["data"]], ids(5, 700))
        # an id of no employee of this company (another cluster's, say) matches nothing
        status, body, _ = call(self.fake, "GET", EMPS + "?ids[]=18446744073709555")
        self.assertEqual((status, body["data"]), (200, []))

    def test_a_page_costs_the_page_not_the_table(self):
        # the ids are put in order once, not on every page, so that 100,000 people page in O(page)
        call(self.fake, "GET", EMPS + "?limit=100")
        order = self.fake.employees._order
        status, body, _ = call(self.fake, "GET", EMPS + "?limit=100&after_id=" + body_cursor(500))
        self.assertIs(self.fake.employees._order, order)
        self.assertEqual([e["id"] for e in body["data"]][:2], ids(501, 502))
        # a new employee makes the order again, and is on its page
        self.fake.put_employee(dict(self.fake.employees[5], id=1500))
        status, body, _ = call(self.fake, "GET", EMPS + "?limit=100&after_id=" + body_cursor(1000))
        self.assertIsNot(self.fake.employees._order, order)
        self.assertEqual([e["id"] for e in body["data"]], ids(1500))


class TestPageOnly(FakeTestCase):
    fake_args = {"fixtures": None, "generate_employees": 250, "paging": "page"}

    def test_no_cursor_in_the_older_api(self):
        status, body, _ = call(self.fake, "GET", EMPS + "?limit=100&after_id=100")
        self.assertEqual([e["id"] for e in body["data"]][:2], ids(1, 2))  # after_id is not known
        self.assertNotIn("end_cursor", body["meta"])
        _, last, _ = call(self.fake, "GET", EMPS + "?limit=100&page=3")
        self.assertEqual([e["id"] for e in last["data"]], ids(*range(201, 251)))


class TestResources(FakeTestCase):
    def test_get_employee_by_id_and_404(self):
        status, body, _ = call(self.fake, "GET", EMPS + "/2")
        self.assertEqual(status, 200)
        self.assertEqual(body["first_name"], "José")
        self.assertEqual(call(self.fake, "GET", EMPS + "/9999")[0], 404)

    def test_only_active_filter(self):
        status, body, _ = call(self.fake, "GET", EMPS + "?only_active=true")
        self.assertNotIn("8", [e["id"] for e in body["data"]])

    def test_teams_memberships_contract_versions(self):
        _, teams, _ = call(self.fake, "GET", f"/api/{V}/resources/teams/teams")
        self.assertEqual([t["name"] for t in teams["data"]], ["Engineering", "Ventas y Márketing", "R&D, Labs"])
        _, ms, _ = call(self.fake, "GET", f"/api/{V}/resources/teams/memberships?team_ids[]=3")
        self.assertEqual(sorted(m["employee_id"] for m in ms["data"]), ids(11, 9))
        _, cv, _ = call(self.fake, "GET", f"/api/{V}/resources/contracts/contract_versions?employee_ids[]=2")
        self.assertEqual([c["job_title"] for c in cv["data"]], ["Junior Software Engineer", "Software Engineer"])

    def test_fixture_names(self):
        _, body, _ = call(self.fake, "GET", EMPS)
        names = {e["full_name"] for e in body["data"]}
        for n in ("José Núñez", "Seán O'Brien", "John Smith, Jr.", "王小明", "Дмитрий Иванов"):
            self.assertIn(n, names)


class TestSubscriptions(FakeTestCase):
    def _create(self, type_="employees/employee/update", url="https://a.example/hooks/x"):
        return call(self.fake, "POST", SUBS, {"subscription_type": type_, "target_url": url,
                                             "company_id": "1234", "challenge": "c", "name": "n"})

    def test_crud(self):
        status, s, _ = self._create()
        self.assertEqual(status, 201)
        self.assertEqual(s["type"], "employees/employee/update")
        self.assertNotIn("subscription_type", s)
        self.assertTrue(s["enabled"])
        status, got, _ = call(self.fake, "GET", f"{SUBS}/{s['id']}")
        self.assertEqual((status, got["target_url"]), (200, "https://a.example/hooks/x"))
        status, upd, _ = call(self.fake, "PUT", f"{SUBS}/{s['id']}", {"enabled": False})
        self.assertEqual((status, upd["enabled"]), (200, False))
        status, lst, _ = call(self.fake, "GET", SUBS + "?enabled=false")
        self.assertEqual([x["id"] for x in lst["data"]], [s["id"]])
        self.assertIn("meta", lst)
        status, deleted, _ = call(self.fake, "DELETE", f"{SUBS}/{s['id']}")
        self.assertEqual((status, deleted["id"]), (200, s["id"]))
        self.assertEqual(call(self.fake, "GET", f"{SUBS}/{s['id']}")[0], 404)

    def test_create_validates_required_fields(self):
        status, body, _ = call(self.fake, "POST", SUBS, {"target_url": "https://x"})
        self.assertEqual(status, 422)
        self.assertIn("subscription_type", body["errors"])
        self.assertIn("company_id", body["errors"])

    def test_duplicate_overwrites_by_default(self):
        _, first, _ = self._create(url="https://a.example/1")
        status, second, _ = self._create(url="https://a.example/2")
        self.assertEqual(status, 201)
        self.assertEqual(second["id"], first["id"])
        _, lst, _ = call(self.fake, "GET", SUBS)
        self.assertEqual([x["target_url"] for x in lst["data"]], ["https://a.example/2"])


class TestDuplicateReject(FakeTestCase):
    fake_args = {"duplicates": "reject"}

    def test_duplicate_is_422(self):
        self.assertEqual(call(self.fake, "POST", SUBS, {"subscription_type": "teams/team/create",
                                                        "target_url": "https://a/1", "company_id": "1234"})[0], 201)
        status, body, _ = call(self.fake, "POST", SUBS, {"subscription_type": "teams/team/create",
                                                         "target_url": "https://a/2", "company_id": "1234"})
        self.assertEqual(status, 422)
        self.assertIn("has already been taken", json.dumps(body))
        _, lst, _ = call(self.fake, "GET", SUBS)
        self.assertEqual([x["target_url"] for x in lst["data"]], ["https://a/1"])


class TestIdsOnTheWire(FakeTestCase):
    """Ids as each version writes them, and a company on the second database cluster."""
    fake_args = {"cluster": 2}
    BIG = 18446744073709550

    def test_strings_past_two_to_the_53_and_numbers_before(self):
        _, body, _ = call(self.fake, "GET", EMPS + "?limit=2")
        e = body["data"][0]
        self.assertEqual((e["id"], e["company_id"]), (str(self.BIG + 1), str(self.BIG + 1234)))
        self.assertEqual(e["manager_id"], None)
        self.assertEqual(body["data"][1]["manager_id"], str(self.BIG + 1))
        # the id, exactly, finds it; a rounded one does not
        self.assertEqual(call(self.fake, "GET", EMPS + f"/{self.BIG + 2}")[1]["id"], str(self.BIG + 2))
        self.assertEqual(call(self.fake, "GET", EMPS + f"/{self.BIG + 2}")[0], 200)
        self.assertEqual(call(self.fake, "GET", EMPS + "/18446744073709552000")[0], 404)
        # the cursor is opaque, and leads on
        after = body["meta"]["end_cursor"]
        self.assertFalse(after.isdigit())
        _, more, _ = call(self.fake, "GET", EMPS + f"?limit=2&after_id={after}")
        self.assertEqual(more["data"][0]["id"], str(self.BIG + 3))
        # the version before sends numbers
        _, old, _ = call(self.fake, "GET", "/api/2026-04-01/resources/employees/employees?limit=1")
        self.assertEqual(old["data"][0]["id"], self.BIG + 1)

    def test_a_subscription_for_the_exact_company_only(self):
        body = {"subscription_type": "teams/team/create", "target_url": "https://a/1"}
        self.assertEqual(call(self.fake, "POST", SUBS, dict(body, company_id=str(self.BIG + 1234)))[0], 201)
        # rounded through a double: another company
        status, err, _ = call(self.fake, "POST", SUBS, dict(body, company_id="18446744073709552"))
        self.assertEqual((status, err["errors"]["company_id"]), (422, ["is not a company you have access to"]))
        # a number where 2026-07-01 wants a string
        self.assertEqual(call(self.fake, "POST", SUBS, dict(body, company_id=self.BIG + 1234))[0], 422)


class TestFaults(FakeTestCase):
    def test_429_with_retry_after_then_ok(self):
        self.fake.fail_next(429, retry_after=2)
        status, _, headers = call(self.fake, "GET", EMPS)
        self.assertEqual(status, 429)
        self.assertEqual(headers.get("Retry-After"), "2")
        self.assertEqual(call(self.fake, "GET", EMPS)[0], 200)

    def test_500_run_and_401(self):
        self.fake.fail_next(500, count=3)
        self.assertEqual([call(self.fake, "GET", EMPS)[0] for _ in range(4)], [500, 500, 500, 200])
        self.fake.fail_next(401)
        self.assertEqual(call(self.fake, "GET", EMPS)[0], 401)

    def test_fault_limited_to_prefix(self):
        self.fake.fail_next(500, prefix=f"/api/{V}/resources/teams/")
        self.assertEqual(call(self.fake, "GET", EMPS)[0], 200)
        self.assertEqual(call(self.fake, "GET", f"/api/{V}/resources/teams/teams")[0], 500)

    def test_slow_answer(self):
        self.fake.slow_next(0.5)
        t = time.monotonic()
        self.assertEqual(call(self.fake, "GET", EMPS)[0], 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.5)


class TestDeliveries(FakeTestCase):
    fake_args = {"max_retries": 3, "retry_interval": 0.02}

    def test_delivery_carries_challenge_and_bare_record(self):
        rec = Receiver([200])
        try:
            self.fake.add_subscription("employees/employee/update", rec.url + "/hooks/employees/employee/update",
                                       challenge="s3cret")
            emp = {"id": 2, "first_name": "José"}
            self.assertEqual(len(self.fake.deliver("employees/employee/update", emp, author_id=1)), 1)
            self.assertTrue(self.fake.wait_deliveries(10))
            self.assertEqual(len(rec.got), 1)
            path, headers, body = rec.got[0]
            self.assertEqual(path, "/hooks/employees/employee/update")
            self.assertEqual(headers["x-factorial-wh-challenge"], "s3cret")
            self.assertEqual(headers["x-factorial-author-type"], "employee")
            self.assertEqual(body, dict(emp, id="2"))  # the subscription's api_version: ids as strings
        finally:
            rec.close()

    def test_failures_retried_then_ok(self):
        rec = Receiver([500, 503, 200])
        try:
            s = self.fake.add_subscription("teams/team/create", rec.url + "/t", challenge="c")
            self.fake.deliver("teams/team/create", {"id": 1})
            self.assertTrue(self.fake.wait_deliveries(10))
            self.assertEqual(len(rec.got), 3)
            self.assertEqual([d["status"] for d in self.fake.deliveries], [500, 503, 200])
            self.assertTrue(self.fake.subscriptions[s["id"]]["enabled"])
        finally:
            rec.close()

    def test_retry_budget_exhausted_disables_subscription(self):
        rec = Receiver([500] * 10)
        try:
            s = self.fake.add_subscription("teams/team/update", rec.url + "/t", challenge="c")
            self.fake.deliver("teams/team/update", {"id": 1})
            self.assertTrue(self.fake.wait_deliveries(10))
            self.assertEqual(len(rec.got), 4)  # first try + 3 retries
            self.assertFalse(self.fake.subscriptions[s["id"]]["enabled"])
            status, got, _ = call(self.fake, "GET", f"{SUBS}/{s['id']}")
            self.assertFalse(got["enabled"])
            # disabled: nothing more is delivered until it is re-enabled
            self.assertEqual(self.fake.deliver("teams/team/update", {"id": 2}), [])
            call(self.fake, "PUT", f"{SUBS}/{s['id']}", {"enabled": True})
            self.assertEqual(len(self.fake.deliver("teams/team/update", {"id": 3})), 1)
            self.assertTrue(self.fake.wait_deliveries(10))
        finally:
            rec.close()

    def test_unreachable_target_counts_as_failure(self):
        s = self.fake.add_subscription("teams/team/delete", "http://127.0.0.1:9/unreachable", challenge="c")
        self.fake.deliver("teams/team/delete", {"id": 1})
        self.assertTrue(self.fake.wait_deliveries(20))
        self.assertFalse(self.fake.subscriptions[s["id"]]["enabled"])
        self.assertTrue(all(d["error"] for d in self.fake.deliveries))


class TestProgram(unittest.TestCase):
    """The fake runs as a program too, for the demo and shell scripts."""

    def test_program_serves_and_controls(self):
        import subprocess
        import tempfile
        d = tempfile.mkdtemp(prefix="fla-fake-")
        portfile = os.path.join(d, "port")
        p = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "..", "lib", "fakefactorial.py"),
                              "--port", "0", "--port-file", portfile, "--api-key", "k1"],
                             stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(portfile) and time.monotonic() < deadline:
                time.sleep(0.02)
            with open(portfile) as f:
                port = int(f.read())

            class F:
                base_url = f"http://127.0.0.1:{port}"
            self.assertEqual(call(F, "GET", EMPS, key="k1")[0], 200)
            self.assertEqual(call(F, "GET", EMPS, key="k2")[0], 401)
            self.assertEqual(call(F, "POST", "/__control/fault", {"status": 500}, key=None)[0], 200)
            self.assertEqual(call(F, "GET", EMPS, key="k1")[0], 500)
            status, body, _ = call(F, "GET", "/__control/requests", key=None)
            self.assertEqual([r[2] for r in body["data"]], [200, 401, 500])
        finally:
            p.terminate()
            p.wait(10)
            import shutil
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    taprunner.main()
