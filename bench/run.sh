#!/usr/bin/env bash
# Builds an optimised agent (no sanitizers) under _build/bench and runs the
# benchmarks.  Results go to standard output; docs/benchmarks.md records them.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib/bootstrap.sh
. "$top/tests/lib/bootstrap.sh"
fla_install_deps
fla_build "$top/_build/bench"
python3 "$top/bench/render_bench.py" "$top/_build/bench/factorial-ldap-agent" "${1:-10000}"
python3 "$top/bench/receive_bench.py" "$top/_build/bench/factorial-ldap-agent" 5
python3 "$top/bench/sync_bench.py" "$top/_build/bench/factorial-ldap-agent" 10000
