#!/usr/bin/env bash
# The demo: a throwaway slapd, the fake Factorial and the agent, on embedded
# defaults.  Installs what is missing (apt-get), builds, runs, cleans up.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib/bootstrap.sh
. "$top/tests/lib/bootstrap.sh"
fla_install_deps || exit 1
fla_build "$top/_build/demo" || exit 1
exec python3 "$top/examples/demo.py" "$top/_build/demo/factorial-ldap-agent"
