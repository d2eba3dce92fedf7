#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: builds the libFuzzer targets with clang in a tree of
# their own (_build/fuzz: the agent's libraries built with the same flags),
# seeds a corpus for each from the shipped examples, mappings and test
# fixtures, and runs each target for SECONDS (default 30).  One line per
# target, then "fuzz: N passed, N failed".  A crash leaves its input in
# _build/fuzz/crashes/; turn it into a unit test before fixing it.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
build=${FLA_FUZZ_BUILD:-$top/_build/fuzz}
targets="config mapping tmpl record delivery ldif"
say() { printf '==> %s\n' "$*" >&2; }

command -v clang >/dev/null 2>&1 || { echo "error: clang is missing (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
mkdir -p "$build" || exit 1
(
	set -e
	cd "$top"
	if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
		./autogen.sh >/dev/null 2>&1
	fi
	cd "$build"
	if [ ! -f config.status ]; then
		say "configure (clang, libFuzzer)"
		"$top/configure" CC=clang CFLAGS="$flags" >configure.out 2>&1 || { cat configure.out >&2; exit 1; }
	fi
	say "make fuzz-targets"
	make -j"$(nproc)" fuzz-targets >make.out 2>&1 || { tail -40 make.out >&2; exit 1; }
) || { echo "fuzz: 0 passed, 1 failed"; exit 1; }

# Seeds: what the project itself feeds these parsers.
seed() { # seed TARGET FILE...
	local dir="$build/corpus/$1" f
	shift
	mkdir -p "$dir"
	for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done
}
seed config "$top"/examples/agent.yaml "$top"/tests/fixtures/*/*.yaml
seed mapping "$top"/mappings/*.yaml "$top"/examples/mapping.yaml "$top"/fuzz/regressions/mapping-*.yaml
json=$(find "$top/examples/payloads" "$top/mappings/fixtures" "$top/tests/fixtures" -name '*.json' 2>/dev/null)
# shellcheck disable=SC2086
seed record $json
# shellcheck disable=SC2086
seed delivery $json
mkdir -p "$build/corpus/tmpl" "$build/corpus/ldif"
i=0
grep -ho '"[^"]*{[^"]*}[^"]*"' "$top"/mappings/*.yaml "$top"/examples/mapping.yaml | sort -u | while IFS= read -r t; do
	i=$((i + 1))
	t=${t#\"}
	printf '%s' "${t%\"}" >"$build/corpus/tmpl/seed-$i"
done
for f in "$top"/examples/payloads/*.ldif; do
	awk -v out="$build/corpus/ldif/$(basename "$f")" '/^dn: /{dn=substr($0,5)} /^[a-zA-Z]+: /&&!/^dn: /{split($0,kv,": "); printf "%s\0%s\0%s", dn, kv[1], kv[2] > (out "-" NR)}' "$f"
done

passed=0
failed=0
mkdir -p "$build/crashes"
for t in $targets; do
	log="$build/fuzz_$t.log"
	"$build/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
		-artifact_prefix="$build/crashes/fuzz_$t-" "$build/corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ "$rc" -eq 0 ]; then
		printf 'fuzz/fuzz_%-30s %4d passed, 0 failed (%s runs in %s s)\n' "$t" 1 "${runs:-?}" "$seconds"
		passed=$((passed + 1))
	else
		printf 'fuzz/fuzz_%-30s %4d passed, 1 failed\n' "$t" 0
		grep -E 'ERROR|SUMMARY|#0 |#1 |#2 |#3 |Test unit written' "$log" | head -30 | sed 's/^/    | /'
		failed=$((failed + 1))
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
