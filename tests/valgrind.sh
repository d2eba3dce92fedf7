#!/usr/bin/env bash
# The integration suites with every agent process run under valgrind
# (memcheck, definite and indirect leaks counted as errors).  Builds a plain
# build (no sanitizers, which valgrind cannot run beside) under
# _build/valgrind, runs the named suites (all of them by default; the
# convergence suite one short day), and ends with the number of agent
# processes whose valgrind log holds an error.  Exits 1 if any does.  The
# receiver process each `run` starts is traced too (--trace-children).
#
#   bash tests/valgrind.sh                    every integration suite
#   bash tests/valgrind.sh test_run test_sync  just these
#
# The suites' own verdicts are printed too, but under valgrind the agent is
# tens of times slower, so a test that times its answer may fail there: the
# verdict of this script is valgrind's.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/_build/valgrind"
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 2; }

mkdir -p "$build"
cd "$build" || exit 2
if [ ! -f Makefile ]; then
	[ -x "$top/configure" ] || (cd "$top" && ./autogen.sh) >/dev/null || exit 2
	"$top/configure" >configure.out 2>&1 || { tail -20 configure.out >&2; exit 2; }
fi
make -j"$(nproc)" factorial-ldap-agent tests/tools/api_list tests/tools/intruder.so >make.out 2>&1 || { tail -20 make.out >&2; exit 2; }

# the folder open to all: some tests run the agent as nobody
logs=$(mktemp -d /tmp/fla-valgrind-XXXXXX)
chmod 1777 "$logs"
cat >"$logs/factorial-ldap-agent" <<WRAP
#!/bin/sh
exec valgrind -q --vgdb=no --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite,indirect \
	--show-leak-kinds=definite,indirect --log-file=$logs/vg.%p.log \
	$build/factorial-ldap-agent "\$@"
WRAP
chmod 755 "$logs/factorial-ldap-agent"

suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
	for f in "$top"/tests/integration/test_*.py; do suites+=("$(basename "$f" .py)"); done
fi
export AGENT="$logs/factorial-ldap-agent" TOP_SRCDIR="$top" API_LIST="$build/tests/tools/api_list"
export FLA_CONVERGENCE_DAYS="${FLA_CONVERGENCE_DAYS:-1}" FLA_CONVERGENCE_DELIVERIES="${FLA_CONVERGENCE_DELIVERIES:-150}"
export FLA_CONVERGENCE_SHRINK=0
for s in "${suites[@]}"; do
	out=$(cd "$top/tests/integration" && python3 "$s.py" 2>&1)
	echo "$s: $(grep -c '^ok' <<<"$out") passed, $(grep -c '^not ok' <<<"$out") failed"
	grep '^not ok' <<<"$out" | sed 's/^/  /'
done

# valgrind does not know Landlock's system calls: it says so, and the receiver
# runs without Landlock (with a warning of its own).  That notice is no error.
notice='WARNING: unhandled amd64-linux syscall: 44[4-6]|You may be able to write your own handler|Read the file README_MISSING_SYSCALL_OR_IOCTL|Nevertheless we consider this a bug|it at http://valgrind.org/support/bug_reports.html'
bad=0
for f in "$logs"/vg.*.log; do
	[ -s "$f" ] || continue
	grep -v -E "^(==|--)[0-9]+(==|--) ($notice)" "$f" | grep -q . || continue
	bad=$((bad + 1))
	echo "== $f"; head -40 "$f"
done
runs=$(find "$logs" -name 'vg.*.log' | wc -l)
echo "$runs agent processes under valgrind, $bad with errors (logs in $logs)"
[ "$bad" -eq 0 ]
