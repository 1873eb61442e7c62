#!/usr/bin/env bash
# The README's test command: installs the Debian packages the build and the
# tests need, builds with AddressSanitizer + UndefinedBehaviorSanitizer and
# -Werror, runs every suite (unit, integration), the benchmark in its short
# mode, and the fuzzers. Run as root on Debian 12: the integration tests and
# the benchmark mount real FUSE filesystems.
#   VAULTFS_NO_APT=1   skip the package installation
#   VAULTFS_BUILD=DIR  build directory (default build-test)
#   VAULTFS_BENCH=0    skip the short benchmark (tests/bench/bench.sh --short)
#   VAULTFS_PACKAGE=0  skip building and checking the Debian package
#   VAULTFS_FUZZ_BUILD=DIR     libFuzzer build directory (default build-fuzz)
#   VAULTFS_FUZZ_SECONDS=N     time per fuzzer (default 20; 0 skips the fuzz stage)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "tests/run.sh: run as root (the integration tests mount FUSE filesystems)" >&2
	exit 1
fi
bash tools/install-deps.sh
if [ ! -e /dev/fuse ]; then
	modprobe fuse 2>/dev/null || true
fi

BUILD=${VAULTFS_BUILD:-build-test}
echo "== building with sanitizers in $BUILD"
if [ -d "$BUILD" ]; then
	meson setup --reconfigure "$BUILD" -Dsanitize=true -Dfailpoints=true --werror >/dev/null
else
	meson setup "$BUILD" -Dsanitize=true -Dfailpoints=true --werror
fi
ninja -C "$BUILD"

echo "== running tests"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
meson test -C "$BUILD" --print-errorlogs --num-processes 1
# meson exits non-zero on any failure (set -e stops here); count the suites
# for the closing summary line.
SUITES_PASSED=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l).get("result") == "OK"))' \
	"$BUILD/meson-logs/testlog.json" 2>/dev/null || echo 0)

# Short benchmark: every cell of tests/bench/bench.sh (etcd side by side,
# failover, scale, stability, examples/demo.sh), tiny. It fails when
# something does not work, never because of a figure. It builds its own
# release tree in build-bench (about 25 s from scratch on 2 cores), and the
# demo builds ./build; the run itself takes about a minute.
if [ "${VAULTFS_BENCH:-1}" = 0 ]; then
	echo "== short benchmark skipped (VAULTFS_BENCH=0)"
else
	echo "== short benchmark (tests/bench/bench.sh --short, release build in build-bench)"
	BENCH_BUILD_DIR=build-bench bash tests/bench/bench.sh --short
	SUITES_PASSED=$((SUITES_PASSED + 1))
fi

# The Debian package: dpkg-buildpackage -us -uc -b on a scratch copy of the
# tracked files (a release build, about a minute), and what it holds.
if [ "${VAULTFS_PACKAGE:-1}" = 0 ]; then
	echo "== Debian package skipped (VAULTFS_PACKAGE=0)"
else
	echo "== Debian package (tests/check_package.sh)"
	bash tests/check_package.sh
	SUITES_PASSED=$((SUITES_PASSED + 1))
fi

# Fuzz stage: every decoder of untrusted input has a libFuzzer harness
# (tests/fuzz). Each runs for a bounded time from its seed corpus (copied,
# so the tree is not modified); a crash, leak, timeout or broken invariant
# fails the script and leaves the reproducer in the printed directory.
FUZZ_SECONDS=${VAULTFS_FUZZ_SECONDS:-20}
FUZZ_TARGETS=(msgcodec api_proto cmd channel share config store_restore ctl_parse)
if [ "$FUZZ_SECONDS" = 0 ]; then
	echo "== fuzzing skipped (VAULTFS_FUZZ_SECONDS=0)"
	echo "summary: $SUITES_PASSED passed, 0 failed"
	exit 0
fi
if ! command -v clang >/dev/null 2>&1; then
	echo "== fuzzing skipped: clang is not installed (tools/install-deps.sh installs it)"
	echo "summary: $SUITES_PASSED passed, 0 failed"
	exit 0
fi
FUZZ_BUILD=${VAULTFS_FUZZ_BUILD:-build-fuzz}
echo "== building the fuzzers in $FUZZ_BUILD"
# No --werror here: clang warns about things gcc does not, in code the
# -Werror build above already holds to gcc's warnings.
if [ -d "$FUZZ_BUILD" ]; then
	CC=clang meson setup --reconfigure "$FUZZ_BUILD" -Dfuzz=true -Dsanitize=true >/dev/null
else
	CC=clang meson setup "$FUZZ_BUILD" -Dfuzz=true -Dsanitize=true >/dev/null
fi
ninja -C "$FUZZ_BUILD" "${FUZZ_TARGETS[@]/#/tests/fuzz/fuzz_}"

echo "== fuzzing, ${FUZZ_SECONDS}s per target"
FUZZ_WORK=$(mktemp -d /tmp/vaultfs-fuzz.XXXXXX)
fuzz_one() {
	local t=$1 w=$FUZZ_WORK/$1
	mkdir -p "$w/corpus" "$w/artifacts"
	cp tests/fuzz/corpus/"$t"/* "$w/corpus/"
	# Past findings (tests/fuzz/crashes/TARGET-*) are replayed as seeds.
	cp tests/fuzz/crashes/"$t"-* "$w/corpus/" 2>/dev/null || true
	local rc=0
	"$FUZZ_BUILD/tests/fuzz/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -timeout=5 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$w/artifacts/" \
		"$w/corpus" "tests/fuzz/corpus/$t" >"$w/log" 2>&1 || rc=$?
	echo "$rc" >"$w/rc"
}
# As many at a time as there are cores (at most 4): the stage stays near
# ceil(8 / cores) * FUZZ_SECONDS.
jobs_max=$(nproc 2>/dev/null || echo 1)
[ "$jobs_max" -gt 4 ] && jobs_max=4
running=0
for t in "${FUZZ_TARGETS[@]}"; do
	fuzz_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs_max" ]; then
		wait -n || true
		running=$((running - 1))
	fi
done
wait || true

fuzz_failed=0
for t in "${FUZZ_TARGETS[@]}"; do
	w=$FUZZ_WORK/$t
	rc=$(cat "$w/rc" 2>/dev/null || echo missing)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -n 1)
	inputs=$(find "$w/corpus" -type f | wc -l)
	if [ "$rc" = 0 ]; then
		echo "fuzz_$t: ok, ${execs:-?} execs in ${FUZZ_SECONDS}s, corpus $inputs inputs"
	else
		fuzz_failed=1
		echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} execs; log and reproducer in $w"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant broken)' "$w/log" | head -n 5 || true
		ls "$w/artifacts"
	fi
done
if [ "$fuzz_failed" -ne 0 ]; then
	echo "tests/run.sh: a fuzzer failed; rerun one with: $FUZZ_BUILD/tests/fuzz/fuzz_TARGET REPRODUCER" >&2
	exit 1
fi
rm -rf "$FUZZ_WORK"
echo "summary: $((SUITES_PASSED + ${#FUZZ_TARGETS[@]})) passed, 0 failed"
