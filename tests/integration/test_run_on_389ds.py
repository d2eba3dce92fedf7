"""test_run.py's cases, the daemon (`run`): receiving, storing and applying, against 389 Directory Server: the
agent bound as an ACI'd ordinary account, the server's stock limits."""

import os
import runpy

os.environ["FLA_TEST_DIRECTORY"] = "389ds"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_run.py"), run_name="__main__")
