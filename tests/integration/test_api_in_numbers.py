"""test_api.py's subscription cases: `subscriptions` and `run` keeping the webhooks, against API
2026-04-01, the version before ids became strings: every id a JSON number."""

import os
import runpy
import sys

os.environ["FLA_TEST_API_VERSION"] = "2026-04-01"
if len(sys.argv) == 1:  # the cases that register and keep subscriptions, and read the API
    sys.argv[1:] = ["TestSubscriptions", "TestDuplicatesRejected", "TestDuplicatesOverwritten",
                    "TestRunKeepsSubscriptions", "TestClient", "TestEnrichment", "TestCheckOnline"]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_api.py"), run_name="__main__")
