"""test_convergence.py's days: the webhook path and `sync` reach one directory, against a company on
Factorial's second database cluster: every id past 2^53, sent as strings (API 2026-07-01)."""

import os
import runpy

os.environ["FLA_FAKE_CLUSTER"] = "2"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_convergence.py"), run_name="__main__")
