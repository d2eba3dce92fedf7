"""test_daemon.py's cases, the daemon (`run`) as a deployment meets it, against API 2026-04-01, the
version before ids became strings: every id a JSON number."""

import os
import runpy

os.environ["FLA_TEST_API_VERSION"] = "2026-04-01"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_daemon.py"), run_name="__main__")
