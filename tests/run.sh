#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing (apt-get),
# builds, runs every suite through `make check` (unit tests in C, the fake
# Factorial's own tests, integration tests against a real slapd), prints one
# line per suite, runs each fuzz target for 30 s (fuzz/run.sh, clang), builds,
# installs and checks the Debian package (tests/package.sh) and ends with
# "N passed, N failed".  Exits non-zero on any
# failure.  In CI (CI=true) it builds with --enable-warnings --enable-sanitizers.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tests/lib/bootstrap.sh
. "$top/tests/lib/bootstrap.sh"

opts=""
build="$top/_build/test"
if [ "${CI:-}" = "true" ] || [ "${FLA_STRICT:-}" = 1 ]; then
	opts="--enable-warnings --enable-sanitizers"
	build="$top/_build/ci"
fi

finish() {
	echo "$1 passed, $2 failed"
	[ "$2" -eq 0 ] && [ "$3" -eq 0 ]
	exit $?
}

if ! fla_install_deps "$FLA_TEST_PACKAGES"; then
	echo "error: could not install the packages the tests need" >&2
	finish 0 1 1
fi
if ! fla_build "$build" $opts; then
	echo "error: the build failed" >&2
	finish 0 1 1
fi

cd "$build" || finish 0 1 1
rm -f tests/*/*.trs tests/*/*.log test-suite.log
fla_say "make check"
make -j"$(nproc)" check >check.out 2>&1
check_rc=$?

passed=0
failed=0
for trs in $(find tests -name '*.trs' | sort); do
	suite=${trs%.trs}
	p=$(grep -c '^:test-result: PASS' "$trs")
	f=$(grep -c -E '^:test-result: (FAIL|ERROR|XPASS|SKIP)' "$trs")
	printf '%-40s %4d passed, %d failed\n' "$suite" "$p" "$f"
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -gt 0 ]; then
		sed 's/^/    | /' "$suite.log" | grep -v '^    | ok ' | head -200
	fi
done
# the fuzz targets, each for FLA_FUZZ_SECONDS (30): a crash is a failure
fla_say "fuzz ($((${FLA_FUZZ_SECONDS:-30} * 6)) s)"
fuzz_out=$(bash "$top/fuzz/run.sh" "${FLA_FUZZ_SECONDS:-30}")
fuzz_rc=$?
printf '%s\n' "$fuzz_out" | grep -v '^fuzz: '
fp=$(printf '%s\n' "$fuzz_out" | sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
ff=$(printf '%s\n' "$fuzz_out" | sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
passed=$((passed + ${fp:-0}))
failed=$((failed + ${ff:-1}))
[ "$fuzz_rc" -ne 0 ] && [ "${ff:-1}" -eq 0 ] && failed=$((failed + 1))
# the Debian package: built, linted, installed, checked, purged
fla_say "package"
pkg_out=$(bash "$top/tests/package.sh")
printf '%s\n' "$pkg_out" | grep -v '^package: [0-9]'
pp=$(printf '%s\n' "$pkg_out" | sed -n 's/^package: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
pf=$(printf '%s\n' "$pkg_out" | sed -n 's/^package: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
passed=$((passed + ${pp:-0}))
failed=$((failed + ${pf:-1}))
if [ "$check_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
	# make check failed outside any suite (a test program did not build, say)
	tail -50 check.out >&2
	failed=$((failed + 1))
fi
finish "$passed" "$failed" "$check_rc"
