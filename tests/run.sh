#!/usr/bin/env bash
# The README's test command: installs the Debian packages the build and the
# tests need, builds with AddressSanitizer + UndefinedBehaviorSanitizer and
# -Werror, and runs every suite (unit, integration). Run as root on Debian 12:
# the integration tests mount real FUSE filesystems.
#   VAULTFS_NO_APT=1   skip the package installation
#   VAULTFS_BUILD=DIR  build directory (default build-test)
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
