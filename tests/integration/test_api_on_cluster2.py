"""test_api.py's subscription cases: `subscriptions` and `run` keeping the webhooks, against a company
on Factorial's second database cluster: every id past 2^53, sent as strings (API 2026-07-01)."""

import os
import runpy
import sys

os.environ["FLA_FAKE_CLUSTER"] = "2"
if len(sys.argv) == 1:  # the cases that register and keep subscriptions, and read the API
    sys.argv[1:] = ["TestSubscriptions", "TestDuplicatesRejected", "TestDuplicatesOverwritten",
                    "TestRunKeepsSubscriptions", "TestClient", "TestEnrichment", "TestCheckOnline"]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_api.py"), run_name="__main__")
