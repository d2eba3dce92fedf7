#!/usr/bin/env bash
# Builds an optimised agent (no sanitizers) under _build/bench and runs the
# benchmarks.  Results go to standard output; docs/benchmarks.md records them.
# FLA_BENCH_BASELINE=REV also builds git revision REV (under
# _build/bench-baseline) and measures render against it side by side.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib/bootstrap.sh
. "$top/tests/lib/bootstrap.sh"
fla_install_deps
fla_build "$top/_build/bench"
baseline=""
if [ -n "${FLA_BENCH_BASELINE:-}" ]; then
	src="$top/_build/bench-baseline/src"
	rm -rf "$src" && mkdir -p "$src"
	git -C "$top" archive "$FLA_BENCH_BASELINE" | tar -x -C "$src"
	(cd "$src" && ./autogen.sh >/dev/null 2>&1 && mkdir -p b && cd b && ../configure >/dev/null && make -j"$(nproc)" factorial-ldap-agent >/dev/null)
	baseline="$src/b/factorial-ldap-agent"
fi
python3 "$top/bench/render_bench.py" "$top/_build/bench/factorial-ldap-agent" "${1:-10000}" ${baseline:+"$baseline"}
python3 "$top/bench/receive_bench.py" "$top/_build/bench/factorial-ldap-agent" 5
python3 "$top/bench/sync_bench.py" "$top/_build/bench/factorial-ldap-agent" 10000
