#!/usr/bin/env bash
# Runs every test of repfabric on a fresh Debian 12 machine:
#   1. installs the Debian packages that are missing (scripts/deps.sh),
#   2. checks formatting (clang-format),
#   3. configures and builds with -Werror into build/,
#   4. runs every test through ctest (unit, functional, soft-RoCE VM),
#   5. builds the unit suite under ASan+UBSan into build-asan/ and runs it,
#   6. builds it under TSan into build-tsan/ and runs it.
# Exits non-zero on any failure. A skipped test fails the run too, unless
# RF_ALLOW_SKIP=1 (a skip is not a pass).
#
# Options:
#   -R REGEX     run only the ctest tests matching REGEX (both builds)
#   --no-asan    skip the sanitizer builds
#   --no-deps    do not try to install packages
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/deps.sh

regex=()
asan=1
deps=1
while [ $# -gt 0 ]; do
	case $1 in
	-R) regex=(-R "$2"); shift 2 ;;
	--no-asan) asan=0; shift ;;
	--no-deps) deps=0; shift ;;
	-h|--help) sed -n "2,16p" "$0"; exit 0 ;;
	*) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
	esac
done

start=$(date +%s)
jobs=$(nproc)
step() { echo; echo "== $* ($(($(date +%s) - start)) s)"; }

if [ "$deps" = 1 ]; then
	step "dependencies"
	rf_install_deps
fi

step "format check (clang-format)"
mapfile -t sources < <(git ls-files --cached --others --exclude-standard '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
clang-format --dry-run -Werror "${sources[@]}"
echo "${#sources[@]} files formatted correctly"

# run_ctest DIR LABEL-ARGS...: run ctest, print its summary, fail on a
# failed or a skipped test.
run_ctest() {
	local dir=$1 log rc=0; shift
	log=$(mktemp)
	ctest --test-dir "$dir" --output-on-failure "${regex[@]}" "$@" 2>&1 | tee "$log" || rc=1
	if grep -q 'tests passed\|tests failed' "$log"; then :; else rc=1; fi
	if grep -qE '\(Skipped\)|\*\*\*Skipped' "$log" && [ "${RF_ALLOW_SKIP:-0}" != 1 ]; then
		echo "!! some tests were skipped (see above); set RF_ALLOW_SKIP=1 to accept that" >&2
		rc=1
	fi
	rm -f "$log"
	return $rc
}

step "configure + build (build/, -Werror)"
cmake -S . -B build -DREPFABRIC_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

step "tests (ctest, build/)"
run_ctest build

if [ "$asan" = 1 ]; then
	step "unit tests under ASan+UBSan (build-asan/)"
	cmake -S . -B build-asan -DREPFABRIC_WERROR=ON -DREPFABRIC_SANITIZE=address \
		-DREPFABRIC_UNIT_ONLY=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j"$jobs"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		run_ctest build-asan -L unit

	step "unit tests under TSan (build-tsan/)"
	cmake -S . -B build-tsan -DREPFABRIC_WERROR=ON -DREPFABRIC_SANITIZE=thread \
		-DREPFABRIC_UNIT_ONLY=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-tsan -j"$jobs"
	TSAN_OPTIONS=halt_on_error=1 run_ctest build-tsan -L unit
fi

step "all tests passed in $(($(date +%s) - start)) s"
