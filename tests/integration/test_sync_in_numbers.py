"""test_sync.py's cases, `sync` reconciling the directory against the API, against API 2026-04-01, the
version before ids became strings: every id a JSON number."""

import os
import runpy

os.environ["FLA_TEST_API_VERSION"] = "2026-04-01"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_sync.py"), run_name="__main__")
