"""A fake Factorial API server for the tests and the demo.

It follows docs/api.md, "What the agent relies on" (the facts the agent depends on):

* resources under /api/{version}/resources/..., for the versions it is told
  to serve (default 2025-10-01, 2026-04-01, 2026-07-01); others answer 404;
* authentication by `x-api-key: <key>` or `Authorization: Bearer <token>`,
  401 on a wrong or missing one; POST /oauth/token hands out access tokens
  for a refresh token (grant_type=refresh_token), rotating the refresh token
  when told to;
* webhook subscriptions: list (filters id, company_id, type, enabled), get,
  create (201; a second one of the same type either overwrites the first or
  is refused with 422 "has already been taken", as chosen), update (PUT),
  delete (200 with the deleted object); `type` in answers,
  `subscription_type` in requests;
* employees (list with filters, get by id), teams, team memberships and
  contract versions; lists paginate by cursor (`after_id`, ids ascending,
  meta.has_next_page / end_cursor) or by `page`, `limit` at most 100;
* faults on demand: the next N answers (optionally only under a path prefix)
  as 401, 429 with Retry-After, 500 or any status, and slow answers;
* deliveries: deliver(type, record) POSTs the record to the target_url of
  every enabled subscription of that type, with x-factorial-wh-challenge,
  retries a failed delivery up to `max_retries` times `retry_interval`
  seconds apart, and disables the subscription after the last failure;
* ids as each version writes them: from 2026-07-01 every id and reference id
  is a JSON string, before it a JSON number (ids="by-version", the default;
  "numbers" or "strings" force one form); the company and its ids may live
  on a later database cluster (cluster=2: every id offset by
  18446744073709550, past what a double holds; FLA_FAKE_CLUSTER in the
  environment sets the default), and the cursors of 2026-07-01 are opaque
  (base64).  The tests keep talking of small ids: put_employee(), deliver()
  and the tables hold them, and only what goes over the wire carries the
  offset (wire_id() says how an id is written there);
* a token of a user who is not an administrator (non_admin=True: OAuth user
  tokens, not API keys nor company tokens) gets employees restricted, their
  personal fields (login_email among them) null;
* OAuth scopes per family of resources (employees, contracts,
  company_locations, company_legal_entities, webhook subscriptions): those in
  `withheld_scopes` answer 403, as an app without them gets.

Use it in-process (FakeFactorial(...).start()) or as a program:

    python3 fakefactorial.py --port 0 --port-file F --api-key-file K [--fixtures DIR]

The program also serves /__control/... (JSON) so that a shell script can
inject faults, trigger deliveries and read what happened.

Only the Python standard library is used.
"""

import argparse
import base64
import bisect
import copy
import json
import os
import queue
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FIXTURES = os.path.join(HERE, "..", "fixtures", "factorial")
DEFAULT_VERSIONS = ("2025-10-01", "2026-04-01", "2026-07-01")
MAX_LIMIT = 100
REFRESH_TOKEN_LIFE = 7 * 86400  # a week
FIRST_STRING_VERSION = "2026-07-01"
CLUSTER_OFFSETS = {1: 0, 2: 18446744073709550, 3: 36893488147419100}
# the fields of Factorial's records that hold ids, alone or in lists
ID_FIELDS = {"id", "access_id", "company_id", "location_id", "legal_entity_id", "manager_id",
             "timeoff_manager_id", "employee_id", "team_id"}
ID_LISTS = {"employee_ids", "lead_ids", "team_ids"}
# what a token of a user who is not an administrator gets null in employees ("a restricted version
# of the payload")
RESTRICTED_FIELDS = ("login_email", "email", "personal_email", "phone_number", "birthday_on", "identifier",
                     "address_line_1", "address_line_2", "postal_code", "city", "bank_number",
                     "social_security_number")

# The form the suites run against, from the environment: the API version the agent's
# configuration names (FLA_TEST_API_VERSION, default 2026-07-01: ids as strings; 2026-04-01:
# numbers) and the database cluster of the company (FLA_FAKE_CLUSTER, default 1; 2: ids past 2^53).
AGENT_API_VERSION = os.environ.get("FLA_TEST_API_VERSION", FIRST_STRING_VERSION)


def env_cluster():
    return int(os.environ.get("FLA_FAKE_CLUSTER", "1"))


def wid(i, cluster=None):
    """The text of the small id i as the agent sees it on the cluster (the environment's by default):
    "8" on the first, "18446744073709558" on the second."""
    return str(int(i) + CLUSTER_OFFSETS[env_cluster() if cluster is None else cluster])


RESOURCE_RE = re.compile(r"^/api/(?P<version>[^/]+)/resources/(?P<rest>.+?)/?$")


def load_json(path, default):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def generated_employees(n, company_id=1234, start_id=1):
    """n plain employees with ids start_id.. (for pagination tests and benches)."""
    out = []
    for i in range(start_id, start_id + n):
        out.append({
            "id": i, "access_id": 100000 + i, "first_name": f"Person{i}", "last_name": f"Number{i}",
            "full_name": f"Person{i} Number{i}", "company_id": company_id, "location_id": 1,
            "legal_entity_id": 1, "created_at": "2025-01-01T00:00:00.000Z",
            "updated_at": "2026-01-01T00:00:00.000Z", "is_terminating": False, "attendable": True,
            "login_email": f"person{i}@example.com", "email": None, "preferred_name": None,
            "manager_id": None, "phone_number": None, "terminated_on": None, "active": True,
            "company_identifier": f"G{i:06d}",
        })
    return out


class Table(dict):
    """A table of records by internal id that keeps its ids in order, for paging in O(page): the
    order is made again only after the set of ids changed."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._order = None

    def _changed(self):
        self._order = None

    def __setitem__(self, k, v):
        if k not in self:
            self._order = None
        super().__setitem__(k, v)

    def __delitem__(self, k):
        self._order = None
        super().__delitem__(k)

    def pop(self, *a):
        self._order = None
        return super().pop(*a)

    def popitem(self):
        self._order = None
        return super().popitem()

    def clear(self):
        self._order = None
        super().clear()

    def update(self, *a, **kw):
        self._order = None
        super().update(*a, **kw)

    def setdefault(self, k, v=None):
        if k not in self:
            self._order = None
        return super().setdefault(k, v)

    def ids(self):
        """Every id, ascending."""
        if self._order is None:
            self._order = sorted(self)
        return self._order


class Fault:
    def __init__(self, status, count=1, retry_after=None, delay=0.0, prefix=None, body=None):
        self.status = status  # None: only a delay
        self.count = count
        self.retry_after = retry_after
        self.delay = delay
        self.prefix = prefix
        self.body = body

    def matches(self, path):
        return self.prefix is None or path.startswith(self.prefix)


class _Server(ThreadingHTTPServer):
    """A client that stops reading (an agent enforcing its answer size cap, say) is not an error."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FakeFactorial:
    def __init__(self, fixtures=DEFAULT_FIXTURES, api_key="test-api-key", company_id=1234,
                 duplicates="overwrite", versions=DEFAULT_VERSIONS, generate_employees=0,
                 max_retries=20, retry_interval=0.05, delivery_timeout=5.0,
                 refresh_token="test-refresh-token", rotate_refresh_tokens=True, expires_in=7200,
                 client_id="test-client", client_secret="test-client-secret", host="127.0.0.1", port=0,
                 paging="both", ids="by-version", cluster=None, withheld_scopes=(), non_admin=False):
        if duplicates not in ("overwrite", "reject"):
            raise ValueError("duplicates must be overwrite or reject")
        if paging not in ("both", "page"):
            raise ValueError("paging must be both or page")
        # "page": the older API, which knows page + limit but no cursor (after_id is ignored
        # and meta carries no cursor fields)
        self.paging = paging
        if ids not in ("by-version", "numbers", "strings"):
            raise ValueError("ids must be by-version, numbers or strings")
        self.ids = ids
        self.withheld_scopes = set(withheld_scopes)
        # the OAuth user the refresh tokens belong to is no administrator: employees come restricted
        self.non_admin = non_admin
        self.cluster = int(cluster if cluster is not None else env_cluster())
        self.offset = CLUSTER_OFFSETS[self.cluster]
        self.api_key = api_key
        self.company_id = company_id
        self.duplicates = duplicates
        self.versions = set(versions)
        self.max_retries = max_retries
        self.retry_interval = retry_interval
        self.delivery_timeout = delivery_timeout
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens = {refresh_token} if refresh_token else set()
        self.company_tokens = set()  # OAuth tokens of resource_owner_type=company: they never expire
        # refresh tokens last a week (of the fake's clock, which advance() moves)
        self.clock_offset = 0.0
        self.refresh_issued = {refresh_token: time.time()} if refresh_token else {}
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.expires_in = expires_in
        self.access_tokens = {}  # token -> expiry (monotonic)
        self.lock = threading.RLock()
        self.employees = Table()
        self.teams = {}
        self.memberships = {}
        self.contract_versions = {}
        self.locations = {}
        self.legal_entities = {}
        if fixtures:
            self._seed(fixtures)
        if generate_employees:
            start = max(self.employees, default=0) + 1
            for e in generated_employees(generate_employees, company_id, start):
                self.employees[e["id"]] = e
        self.subscriptions = {}
        self.next_subscription_id = 1
        self.faults = []
        self.requests = []  # (method, path, status) of every API request
        self.token_requests = 0
        self.deliveries = []  # one dict per attempt
        self.next_delivery_id = 1
        self._deliver_q = queue.Queue()
        self._pending = 0
        self._pending_cv = threading.Condition(self.lock)
        self.host = host
        self.port = port
        self.httpd = None
        self._threads = []

    # -- ids on the wire --------------------------------------------------------
    def strings(self, version):
        """Whether this version writes ids as strings."""
        return self.ids == "strings" or (self.ids == "by-version" and (version or "") >= FIRST_STRING_VERSION)

    def wire_id(self, i, version=FIRST_STRING_VERSION):
        """How the internal id i is written in version's payloads ("18446744073709551" on cluster 2)."""
        v = int(i) + self.offset
        return str(v) if self.strings(version) else v

    def wire(self, version, obj):
        """A copy of obj with every id written as version writes it."""
        if isinstance(obj, list):
            return [self.wire(version, x) for x in obj]
        if not isinstance(obj, dict):
            return copy.deepcopy(obj)
        out = {}
        for k, v in obj.items():
            if k in ID_FIELDS and isinstance(v, (int, str)) and not isinstance(v, bool) and str(v).isdigit():
                out[k] = self.wire_id(v, version)
            elif k in ID_LISTS and isinstance(v, list):
                out[k] = [self.wire_id(x, version) if isinstance(x, (int, str)) and not isinstance(x, bool)
                          and str(x).isdigit() else x for x in v]
            else:
                out[k] = self.wire(version, v)
        return out

    def to_agent(self, record):
        """record as Factorial delivers it to an agent configured for AGENT_API_VERSION: the body a
        test posts to the agent itself."""
        return self.wire(AGENT_API_VERSION, record)

    @staticmethod
    def scope_of(rest):
        """The OAuth scope a resource path needs."""
        for prefix, scope in (("employees/", "employees"), ("teams/", "employees"), ("contracts/", "contracts"),
                              ("locations/", "company_locations"), ("companies/legal_entities", "company_legal_entities"),
                              ("api_public/webhook_subscriptions", "webhook subscriptions")):
            if rest.startswith(prefix):
                return scope
        return None

    def unwire(self, v):
        """The internal id of an id as a client sent it (a number or a string of digits)."""
        if isinstance(v, bool) or not isinstance(v, (int, str)) or not str(v).isdigit():
            raise ValueError(f"{v!r} is not an id")
        i = int(v) - self.offset
        if i < 0:
            raise ValueError(f"{v!r} is no id of this company")
        return i

    # -- data ---------------------------------------------------------------
    def _seed(self, d):
        for e in load_json(os.path.join(d, "employees.json"), []):
            self.employees[int(e["id"])] = e
        for t in load_json(os.path.join(d, "teams.json"), []):
            self.teams[int(t["id"])] = t
        for m in load_json(os.path.join(d, "memberships.json"), []):
            self.memberships[int(m["id"])] = m
        for c in load_json(os.path.join(d, "contract_versions.json"), []):
            self.contract_versions[int(c["id"])] = c
        for x in load_json(os.path.join(d, "locations.json"), []):
            self.locations[int(x["id"])] = x
        for x in load_json(os.path.join(d, "legal_entities.json"), []):
            self.legal_entities[int(x["id"])] = x

    def put_employee(self, e):
        with self.lock:
            self.employees[int(e["id"])] = e

    def update_employee(self, eid, **fields):
        with self.lock:
            self.employees[int(eid)].update(fields)
            return copy.deepcopy(self.employees[int(eid)])

    def remove_employee(self, eid):
        with self.lock:
            self.employees.pop(int(eid), None)

    # -- faults -------------------------------------------------------------
    def fail_next(self, status, count=1, retry_after=None, prefix=None, body=None):
        with self.lock:
            self.faults.append(Fault(status, count, retry_after, 0.0, prefix, body))

    def slow_next(self, delay, count=1, prefix=None):
        with self.lock:
            self.faults.append(Fault(None, count, None, delay, prefix))

    def clear_faults(self):
        with self.lock:
            self.faults.clear()

    def _take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f.matches(path):
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                    return f
        return None

    # -- server -------------------------------------------------------------
    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self.httpd = _Server((self.host, self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        t = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="fake-factorial-http", daemon=True)
        t.start()
        self._threads.append(t)
        d = threading.Thread(target=self._delivery_loop, name="fake-factorial-deliver", daemon=True)
        d.start()
        self._threads.append(d)
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self._deliver_q.put(None)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- auth -----------------------------------------------------------------
    def issue_token(self, form):
        with self.lock:
            self.token_requests += 1
            if form.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 401, {"error": "invalid_client"}
            rt = form.get("refresh_token")
            if rt not in self.refresh_tokens:
                return 400, {"error": "invalid_grant"}
            if self.now() - self.refresh_issued.get(rt, self.now()) > REFRESH_TOKEN_LIFE:
                return 400, {"error": "invalid_grant", "error_description": "the refresh token has expired"}
            access = "at-" + secrets.token_hex(16)
            self.access_tokens[access] = self.now() + self.expires_in
            body = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in,
                    "created_at": int(time.time())}
            if self.rotate_refresh_tokens:
                self.refresh_tokens.discard(rt)
                new = "rt-" + secrets.token_hex(16)
                self.refresh_tokens.add(new)
                self.refresh_issued[new] = self.now()
                body["refresh_token"] = new
            else:
                body["refresh_token"] = rt
            return 200, body

    def now(self):
        """The fake's clock: the wall clock, moved on by advance()."""
        return time.time() + self.clock_offset

    def advance(self, seconds):
        """Moves the fake's clock on (access and refresh tokens age with it)."""
        with self.lock:
            self.clock_offset += seconds

    def expire_access_tokens(self):
        with self.lock:
            for t in self.access_tokens:
                self.access_tokens[t] = 0.0

    def user_token(self, headers):
        """Whether the request carries an OAuth token of a user (not an API key, not a company token)."""
        auth = headers.get("Authorization", "")
        with self.lock:
            return headers.get("x-api-key") is None and auth.startswith("Bearer ") and auth[7:] not in self.company_tokens

    @staticmethod
    def restricted(out):
        """Employees as a user who is not an administrator gets them: personal fields null."""
        def one(e):
            return dict(e, **{k: None for k in RESTRICTED_FIELDS if k in e}) if isinstance(e, dict) else e
        if isinstance(out, dict) and isinstance(out.get("data"), list):
            return dict(out, data=[one(e) for e in out["data"]])
        return one(out)

    def authorized(self, headers):
        key = headers.get("x-api-key")
        if key is not None:
            return self.api_key is not None and secrets.compare_digest(key, self.api_key)
        auth = headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            tok = auth[7:]
            with self.lock:
                exp = self.access_tokens.get(tok)
                company = tok in self.company_tokens
            return company or (exp is not None and exp > self.now())
        return False

    # -- webhook subscriptions ------------------------------------------------
    def _sub_out(self, s):
        return copy.deepcopy(s)

    def create_subscription(self, body, version=FIRST_STRING_VERSION):
        errors = {}
        for k, t in (("subscription_type", str), ("target_url", str),
                     ("company_id", str if self.strings(version) else int)):
            if k not in body or body[k] is None:
                errors[k] = ["can't be blank"]
            elif not isinstance(body[k], t) or isinstance(body[k], bool):
                errors[k] = ["is invalid"]
        if not errors:
            try:
                body = dict(body, company_id=self.unwire(body["company_id"]))
            except ValueError:
                errors["company_id"] = ["is invalid"]
        if not errors and body["company_id"] != self.company_id:
            errors["company_id"] = ["is not a company you have access to"]
        if errors:
            return 422, {"errors": errors}
        with self.lock:
            existing = [s for s in self.subscriptions.values()
                        if s["type"] == body["subscription_type"] and s["company_id"] == body["company_id"]]
            if existing:
                if self.duplicates == "reject":
                    return 422, {"error": "Subscription type has already been taken",
                                 "errors": {"subscription_type": ["has already been taken"]}}
                s = existing[0]
                s.update(self._sub_fields(body))
                s["enabled"] = bool(body.get("enabled", True))
                return 201, self._sub_out(s)
            s = {"id": self.next_subscription_id, "type": body["subscription_type"],
                 "company_id": body["company_id"], "target_url": body["target_url"],
                 "enabled": bool(body.get("enabled", True)),
                 "api_version": body.get("api_version") or "2026-07-01",
                 "name": body.get("name"), "challenge": body.get("challenge")}
            self.next_subscription_id += 1
            self.subscriptions[s["id"]] = s
            return 201, self._sub_out(s)

    @staticmethod
    def _sub_fields(body):
        out = {}
        for k in ("target_url", "name", "challenge", "api_version"):
            if k in body:
                out[k] = body[k]
        return out

    def update_subscription(self, sid, body):
        with self.lock:
            s = self.subscriptions.get(sid)
            if not s:
                return 404, {"error": "Not found"}
            if "target_url" in body and not isinstance(body["target_url"], str):
                return 422, {"errors": {"target_url": ["is invalid"]}}
            s.update(self._sub_fields(body))
            if "enabled" in body:
                s["enabled"] = bool(body["enabled"])
            if "subscription_type" in body:
                s["type"] = body["subscription_type"]
            return 200, self._sub_out(s)

    def add_subscription(self, type_, target_url, challenge=None, enabled=True, name=None,
                         api_version=AGENT_API_VERSION):
        """Adds a subscription directly (as if another tool had made it)."""
        with self.lock:
            s = {"id": self.next_subscription_id, "type": type_, "company_id": self.company_id,
                 "target_url": target_url, "enabled": enabled, "api_version": api_version,
                 "name": name, "challenge": challenge}
            self.next_subscription_id += 1
            self.subscriptions[s["id"]] = s
            return copy.deepcopy(s)

    # -- deliveries -----------------------------------------------------------
    def deliver(self, type_, record, author_id=None):
        """Queues one delivery of record to every enabled subscription of type_;
        returns the delivery ids (one per subscription)."""
        with self.lock:
            subs = [s for s in self.subscriptions.values() if s["type"] == type_ and s["enabled"]]
            ids = []
            for s in subs:
                did = self.next_delivery_id
                self.next_delivery_id += 1
                ids.append(did)
                self._pending += 1
                body = json.dumps(self.wire(s.get("api_version") or FIRST_STRING_VERSION, record), ensure_ascii=False)
                self._deliver_q.put((did, s["id"], type_, body, author_id, 0))
            return ids

    def wait_deliveries(self, timeout=30.0):
        """Waits until no delivery is pending (delivered or given up)."""
        deadline = time.monotonic() + timeout
        with self._pending_cv:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._pending_cv.wait(left)
        return True

    def _delivery_loop(self):
        delayed = []  # (due, item)
        while True:
            now = time.monotonic()
            due = [d for d in delayed if d[0] <= now]
            for d in due:
                delayed.remove(d)
                self._attempt(d[1], delayed)
            wait = min((d[0] for d in delayed), default=now + 0.2) - time.monotonic()
            try:
                item = self._deliver_q.get(timeout=max(0.0, min(wait, 0.2)))
            except queue.Empty:
                continue
            if item is None:
                return
            self._attempt(item, delayed)

    def _attempt(self, item, delayed):
        did, sid, type_, body, author_id, attempt = item
        with self.lock:
            s = copy.deepcopy(self.subscriptions.get(sid))
        status, error = None, None
        if s is not None:
            headers = {"Content-Type": "application/json", "User-Agent": "fake-factorial"}
            if s.get("challenge") is not None:
                headers["x-factorial-wh-challenge"] = s["challenge"]
            if author_id is not None:
                headers["x-factorial-author-id"] = str(author_id)
                headers["x-factorial-author-type"] = "employee"
            req = urllib.request.Request(s["target_url"], data=body.encode("utf-8"), headers=headers,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.delivery_timeout) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except (urllib.error.URLError, OSError) as e:
                error = str(getattr(e, "reason", e))
        ok = status is not None and 200 <= status < 300
        with self.lock:
            self.deliveries.append({"delivery_id": did, "subscription_id": sid, "type": type_,
                                    "attempt": attempt, "status": status, "error": error,
                                    "time": time.time()})
            if s is None or ok:
                self._done()
                return
            if attempt >= self.max_retries:
                if sid in self.subscriptions:
                    self.subscriptions[sid]["enabled"] = False
                self._done()
                return
        delayed.append((time.monotonic() + self.retry_interval,
                        (did, sid, type_, body, author_id, attempt + 1)))

    def _done(self):
        self._pending -= 1
        self._pending_cv.notify_all()

    # -- listing ------------------------------------------------------------
    def cursor(self, i, version):
        """A page's cursor: opaque base64 from 2026-07-01 ("Mjc="), the id itself before."""
        text = str(int(i) + self.offset)
        return base64.b64encode(text.encode()).decode() if self.strings(version) else text

    def paginate(self, items, query, version=FIRST_STRING_VERSION):
        """Cursor (after_id) or page paging over items sorted by id; items a Table: all of its
        records, a page of them taken in O(page)."""
        if isinstance(items, Table):
            table, keys = items, items.ids()
        else:
            table = {int(x["id"]): x for x in items}
            keys = sorted(table)
        total = len(keys)
        try:
            limit = int(query.get("limit", [MAX_LIMIT])[0])
        except ValueError:
            return 400, {"error": "limit must be an integer"}
        limit = max(1, min(limit, MAX_LIMIT))
        if "page" in query or self.paging == "page":
            try:
                page = int(query.get("page", ["1"])[0])
            except ValueError:
                return 400, {"error": "page must be an integer"}
            page = max(1, page)
            start = (page - 1) * limit
            has_prev = start > 0
            has_next = start + limit < total
        else:
            after = query.get("after_id", [None])[0]
            if after not in (None, ""):
                try:
                    after = self.unwire(after if after.isdigit() else base64.b64decode(after).decode())
                except (ValueError, UnicodeDecodeError):
                    return 400, {"error": "after_id must be a cursor this API gave"}
                start = bisect.bisect_right(keys, after)
                has_prev = True
            else:
                start = 0
                has_prev = False
            has_next = start + limit < total
        chunk = [table[k] for k in keys[start:start + limit]]
        if self.paging == "page":
            meta = {"total": total, "limit": limit, "page": int(query.get("page", ["1"])[0])}
        else:
            meta = {"has_next_page": has_next, "has_previous_page": has_prev,
                    "start_cursor": self.cursor(chunk[0]["id"], version) if chunk else None,
                    "end_cursor": self.cursor(chunk[-1]["id"], version) if chunk else None,
                    "total": total, "limit": limit}
        return 200, {"data": copy.deepcopy(chunk), "meta": meta}

    def list_resource(self, rest, query, version=FIRST_STRING_VERSION):
        def ids_filter(key):
            vals = query.get(key + "[]", []) + query.get(key, [])
            out = set()
            for v in vals:
                for part in str(v).split(","):
                    part = part.strip()
                    try:
                        out.add(self.unwire(part))
                    except ValueError:
                        if not part.isdigit():
                            raise
                        out.add(-1)  # an id of another company: matches nothing
            return out

        def rows(items):
            return items.values() if isinstance(items, dict) else items

        with self.lock:
            if rest == "employees/employees":
                items = self.employees if isinstance(self.employees, Table) else list(self.employees.values())
                ids = ids_filter("ids")
                if ids:
                    items = [e for e in rows(items) if int(e["id"]) in ids]
                emails = set(query.get("emails[]", []))
                if emails:
                    items = [e for e in rows(items) if e.get("login_email") in emails or e.get("email") in emails]
                les = ids_filter("legal_entity_ids")
                if les:
                    items = [e for e in rows(items) if e.get("legal_entity_id") in les]
                locs = ids_filter("location_ids")
                if locs:
                    items = [e for e in rows(items) if e.get("location_id") in locs]
                teams = ids_filter("team_ids")
                if teams:
                    members = {m["employee_id"] for m in self.memberships.values() if m["team_id"] in teams}
                    items = [e for e in rows(items) if int(e["id"]) in members]
                if query.get("only_active", ["false"])[0] == "true":
                    items = [e for e in rows(items) if e.get("active", True)]
                upd = query.get("updated_at_gteq", [None])[0]
                if upd:
                    items = [e for e in rows(items) if (e.get("updated_at") or "") >= upd]
                ci = query.get("company_identifier", [None])[0]
                if ci:
                    items = [e for e in rows(items) if e.get("company_identifier") == ci]
            elif rest == "teams/teams":
                items = list(self.teams.values())
                ids = ids_filter("ids")
                if ids:
                    items = [t for t in items if int(t["id"]) in ids]
            elif rest == "teams/memberships":
                items = list(self.memberships.values())
                emps = ids_filter("employee_ids")
                if emps:
                    items = [m for m in items if m["employee_id"] in emps]
                tms = ids_filter("team_ids")
                if tms:
                    items = [m for m in items if m["team_id"] in tms]
            elif rest == "contracts/contract_versions":
                items = list(self.contract_versions.values())
                emps = ids_filter("employee_ids")
                if emps:
                    items = [c for c in items if c["employee_id"] in emps]
                day = query.get("date", [None])[0]
                if day:  # the versions in force on that day: effective_on on or before it
                    items = [c for c in items if (c.get("effective_on") or "") <= day]
            elif rest in ("locations/locations", "companies/legal_entities"):
                items = list((self.locations if rest.startswith("locations") else self.legal_entities).values())
                ids = ids_filter("ids")
                if ids:
                    items = [x for x in items if int(x["id"]) in ids]
            elif rest == "api_public/webhook_subscriptions":
                items = list(self.subscriptions.values())
                for k, field in (("id", "id"), ("company_id", "company_id")):
                    if k in query:
                        want = {self.unwire(v) for v in query[k]}
                        items = [s for s in items if s[field] in want]
                if "type" in query:
                    items = [s for s in items if s["type"] in set(query["type"])]
                if "enabled" in query:
                    want = query["enabled"][0] == "true"
                    items = [s for s in items if s["enabled"] == want]
            else:
                return 404, {"error": "Not found"}
            return self.paginate(items, query, version)

    def get_resource(self, rest, rid):
        table = {"employees/employees": self.employees, "teams/teams": self.teams,
                 "teams/memberships": self.memberships,
                 "contracts/contract_versions": self.contract_versions,
                 "locations/locations": self.locations, "companies/legal_entities": self.legal_entities,
                 "api_public/webhook_subscriptions": self.subscriptions}.get(rest)
        if table is None:
            return 404, {"error": "Not found"}
        with self.lock:
            obj = table.get(rid)
            if obj is None:
                return 404, {"error": "Not found"}
            return 200, copy.deepcopy(obj)

    # -- control API (for scripts) ---------------------------------------------
    def control(self, method, path, body):
        if method == "GET" and path == "/__control/deliveries":
            with self.lock:
                return 200, {"data": copy.deepcopy(self.deliveries)}
        if method == "GET" and path == "/__control/requests":
            with self.lock:
                return 200, {"data": [list(r) for r in self.requests], "token_requests": self.token_requests}
        if method == "POST" and path == "/__control/deliver":
            ids = self.deliver(body["type"], body["record"], body.get("author_id"))
            if body.get("wait"):
                self.wait_deliveries(float(body.get("timeout", 30)))
            return 200, {"delivery_ids": ids}
        if method == "POST" and path == "/__control/wait":
            ok = self.wait_deliveries(float(body.get("timeout", 30)))
            return (200 if ok else 504), {"done": ok}
        if method == "POST" and path == "/__control/fault":
            if body.get("delay"):
                self.slow_next(float(body["delay"]), int(body.get("count", 1)), body.get("prefix"))
            else:
                self.fail_next(int(body["status"]), int(body.get("count", 1)), body.get("retry_after"),
                               body.get("prefix"))
            return 200, {"ok": True}
        if method == "POST" and path == "/__control/employees":
            self.put_employee(body)
            return 200, {"ok": True}
        if method == "POST" and path == "/__control/reset-faults":
            self.clear_faults()
            return 200, {"ok": True}
        return 404, {"error": "Not found"}


class _Handler(BaseHTTPRequestHandler):
    server_fake = None
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, Nagle's algorithm
    # and the client's delayed ACK stall every answer by some 40 ms
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status, body, extra_headers=None):
        data = json.dumps(body, ensure_ascii=False).encode("utf-8") if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _json_body(self):
        raw = self._body()
        if not raw:
            return {}
        return json.loads(raw.decode("utf-8"))

    def _handle(self, method):
        fake = self.server_fake
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        try:
            if path.startswith("/__control/"):
                body = self._json_body() if method == "POST" else {}
                status, out = fake.control(method, path, body)
                return self._send(status, out)
            fault = fake._take_fault(path)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    self._body()
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    body = fault.body or {"error": f"injected {fault.status}"}
                    self._record(method, path, fault.status)
                    return self._send(fault.status, body, headers)
            if path == "/oauth/token" and method == "POST":
                raw = self._body().decode("utf-8")
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    form = json.loads(raw or "{}")
                else:
                    form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                status, out = fake.issue_token(form)
                self._record(method, path, status)
                return self._send(status, out)
            m = RESOURCE_RE.match(path)
            if not m or m.group("version") not in fake.versions:
                self._body()
                self._record(method, path, 404)
                return self._send(404, {"error": "Not found"})
            if not fake.authorized(self.headers):
                self._body()
                self._record(method, path, 401)
                return self._send(401, {"error": "Unauthorized"})
            version = m.group("version")
            if fake.scope_of(m.group("rest")) in fake.withheld_scopes:
                self._body()
                self._record(method, path, 403)
                return self._send(403, {"error": "insufficient_scope", "scope": fake.scope_of(m.group("rest"))})
            status, out = self._route(method, m.group("rest"), query, version)
            self._record(method, path, status)
            if fake.non_admin and m.group("rest").startswith("employees/employees") and fake.user_token(self.headers):
                out = fake.restricted(out)
            return self._send(status, fake.wire(version, out))
        except (ValueError, KeyError) as e:
            return self._send(400, {"error": f"bad request: {e}"})

    def _record(self, method, path, status):
        with self.server_fake.lock:
            self.server_fake.requests.append((method, self.path, status))

    def _route(self, method, rest, query, version):
        fake = self.server_fake
        parts = rest.split("/")
        collection = "/".join(parts[:2])
        rid = parts[2] if len(parts) == 3 else None
        if len(parts) not in (2, 3):
            return 404, {"error": "Not found"}
        if rid is not None:
            try:
                rid = fake.unwire(rid)
            except ValueError:
                return 404, {"error": "Not found"}
        if method == "GET":
            if rid is None:
                return fake.list_resource(collection, query, version)
            return fake.get_resource(collection, rid)
        if collection != "api_public/webhook_subscriptions":
            return 405, {"error": "Method not allowed"}
        if method == "POST" and rid is None:
            return fake.create_subscription(self._json_body(), version)
        if method in ("PUT", "PATCH") and rid is not None:
            return fake.update_subscription(rid, self._json_body())
        if method == "DELETE" and rid is not None:
            with fake.lock:
                s = fake.subscriptions.pop(rid, None)
            if not s:
                return 404, {"error": "Not found"}
            return 200, s
        return 405, {"error": "Method not allowed"}

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")


def main(argv=None):
    ap = argparse.ArgumentParser(description="fake Factorial API server for tests and the demo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--fixtures", default=DEFAULT_FIXTURES, help="folder of seed JSON files ('' for none)")
    ap.add_argument("--api-key-file", help="file holding the accepted x-api-key")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--company-id", type=int, default=1234)
    ap.add_argument("--duplicates", choices=("overwrite", "reject"), default="overwrite")
    ap.add_argument("--generate-employees", type=int, default=0)
    ap.add_argument("--max-retries", type=int, default=20)
    ap.add_argument("--retry-interval", type=float, default=0.5)
    ap.add_argument("--paging", choices=("both", "page"), default="both")
    a = ap.parse_args(argv)
    key = a.api_key
    if a.api_key_file:
        with open(a.api_key_file, encoding="utf-8") as f:
            key = f.read().strip()
    fake = FakeFactorial(fixtures=a.fixtures or None, api_key=key or "test-api-key",
                         company_id=a.company_id, duplicates=a.duplicates,
                         generate_employees=a.generate_employees, max_retries=a.max_retries,
                         retry_interval=a.retry_interval, host=a.host, port=a.port, paging=a.paging)
    fake.start()
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(fake.port))
        os.replace(tmp, a.port_file)
    print(f"fake Factorial listening on {fake.base_url}", flush=True)
    stop = threading.Event()
    import signal
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
