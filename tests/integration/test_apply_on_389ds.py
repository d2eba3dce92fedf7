"""test_apply.py's cases, the directory writer (`apply`), against 389 Directory Server: the
agent bound as an ACI'd ordinary account, the server's stock limits."""

import os
import runpy

os.environ["FLA_TEST_DIRECTORY"] = "389ds"
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_apply.py"), run_name="__main__")
