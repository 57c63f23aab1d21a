#!/usr/bin/env bash
# Runs every test of repfabric on a fresh Debian 12 machine:
#   1. installs the Debian packages that are missing (scripts/deps.sh),
#   2. checks formatting (clang-format),
#   3. configures and builds with -Werror into build/,
#   4. runs every test through ctest (unit, functional, soft-RoCE VM),
#   5. builds the unit suite under ASan+UBSan into build-asan/ and runs it,
#   6. builds it under TSan into build-tsan/ and runs it,
#   7. builds the fuzz targets with clang + libFuzzer into build-fuzz/ and
#      runs each for RF_FUZZ_SECONDS (default 45); a crash fails the run
#      and leaves its input in build-fuzz/crashes/ (add it to
#      tests/fuzz/corpus/TARGET/ with the fix: it becomes a regression test).
# Exits non-zero on any failure. A skipped test fails the run too, unless
# RF_ALLOW_SKIP=1 (a skip is not a pass).
#
# Options:
#   -R REGEX     run only the ctest tests matching REGEX (both builds)
#   --no-asan    skip the sanitizer builds
#   --no-fuzz    skip the fuzzing step
#   --no-deps    do not try to install packages
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. scripts/deps.sh

regex=()
asan=1
fuzz=1
deps=1
while [ $# -gt 0 ]; do
	case $1 in
	-R) regex=(-R "$2"); shift 2 ;;
	--no-asan) asan=0; shift ;;
	--no-fuzz) fuzz=0; shift ;;
	--no-deps) deps=0; shift ;;
	-h|--help) sed -n "2,21p" "$0"; exit 0 ;;
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

if [ "$fuzz" = 1 ] && [ ${#regex[@]} -eq 0 ]; then
	secs=${RF_FUZZ_SECONDS:-45}
	step "fuzzing (libFuzzer, ${secs} s per target, build-fuzz/)"
	CC=clang cmake -S . -B build-fuzz -DREPFABRIC_WERROR=ON -DREPFABRIC_FUZZ=ON \
		-DREPFABRIC_UNIT_ONLY=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j"$jobs" --target fuzz_ctl fuzz_ring fuzz_config
	mkdir -p build-fuzz/crashes
	for t in ctl ring config; do
		work=$(mktemp -d)
		if ! build-fuzz/tests/fuzz/fuzz_$t -max_total_time="$secs" -rss_limit_mb=2048 \
			-artifact_prefix=build-fuzz/crashes/$t- -print_final_stats=1 \
			"$work" "tests/fuzz/corpus/$t" >"build-fuzz/fuzz_$t.log" 2>&1; then
			tail -n 40 "build-fuzz/fuzz_$t.log"
			echo "!! fuzz_$t found a crash: see build-fuzz/crashes/" >&2
			rm -rf "$work"
			exit 1
		fi
		echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' \
			"build-fuzz/fuzz_$t.log" | awk '{print $2}') inputs, no crash"
		rm -rf "$work"
	done
fi

step "all tests passed in $(($(date +%s) - start)) s"
