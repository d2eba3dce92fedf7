"""test_sync.py's cases, `sync`, against 389 Directory Server: the
agent bound as an ACI'd ordinary account, the server's stock limits."""

import os
import runpy

os.environ["FLA_TEST_DIRECTORY"] = "389ds"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_sync.py"), run_name="__main__")
