#!/usr/bin/env bash
# Every benchmark, side by side in one run, then docs/benchmarks.md and
# docs/benchmarks.png written from their figures (bench/report.py).
#
#   bash bench/run.sh
#
# Installs what a fresh Debian 12 machine lacks (the build's packages, and
# wrk, webhook, jq and gnuplot for the benchmarks), builds an optimised agent
# without sanitizers under _build/bench, and runs:
#   bench/render_bench.py   render of 10,000 employees
#   bench/webhook_bench.py  the webhook path under wrk: hires and bursts against
#                           ldapadd/ldapmodify and a webhook+jq+ldapadd peer,
#                           intake rate and latency, memory at rest and after load
#   bench/sync_bench.py     sync of 10,000 employees, empty and in step
# The figures stay in _build/bench/results (JSON).
#
# FLA_BENCH_ROUNDS (default 3) rounds per webhook measure; FLA_BENCH_ONLY
# (e.g. "hires,intake") limits webhook_bench.py to some measures;
# FLA_BENCH_BASELINE=REV also builds git revision REV and measures render
# against it.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib/bootstrap.sh
. "$top/tests/lib/bootstrap.sh"
fla_install_deps "wrk webhook jq gnuplot-nox"
fla_build "$top/_build/bench"
agent="$top/_build/bench/factorial-ldap-agent"
results="$top/_build/bench/results"
rm -rf "$results" && mkdir -p "$results"
export FLA_BENCH_RESULTS="$results"
baseline=""
if [ -n "${FLA_BENCH_BASELINE:-}" ]; then
	src="$top/_build/bench-baseline/src"
	rm -rf "$src" && mkdir -p "$src"
	git -C "$top" archive "$FLA_BENCH_BASELINE" | tar -x -C "$src"
	(cd "$src" && ./autogen.sh >/dev/null 2>&1 && mkdir -p b && cd b && ../configure >/dev/null && make -j"$(nproc)" factorial-ldap-agent >/dev/null)
	baseline="$src/b/factorial-ldap-agent"
fi
start=$(date +%s)
# what was measured: the figures name the revision and the day, whenever the report is written
printf '{"rev": "%s", "date": "%s"}\n' "$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
	"$(date +%Y-%m-%d)" >"$results/meta.json"
python3 "$top/bench/render_bench.py" "$agent" 10000 ${baseline:+"$baseline"}
python3 "$top/bench/webhook_bench.py" "$agent" "$results/webhook.json" 2000 "${FLA_BENCH_ROUNDS:-3}"
python3 "$top/bench/sync_bench.py" "$agent" 10000
python3 "$top/bench/report.py" "$results" "$top/docs"
fla_say "benchmarks done in $(($(date +%s) - start)) s: docs/benchmarks.md, docs/benchmarks.png"
