"""test_sync.py's cases, `sync` reconciling the directory against the API, against a company on
Factorial's second database cluster: every id past 2^53, sent as strings (API 2026-07-01)."""

import os
import runpy

os.environ["FLA_FAKE_CLUSTER"] = "2"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_sync.py"), run_name="__main__")
