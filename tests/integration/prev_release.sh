#!/usr/bin/env bash
# prev_release.sh CACHE_DIR: builds the previous release's vaultfsd and
# mount.vaultfs (the commit in PREV_RELEASE below; the two speak the local
# API of their own release only) once, into CACHE_DIR/prev-COMMIT, and
# prints the build directory. A rerun finds them built and only prints it.
# Needs the repository's history (a git clone has it).
#
# The previous release is what a rolling upgrade starts from: bump it to
# the commit of each release once it is made.
set -euo pipefail
PREV_RELEASE=4cbdb6df438214e4501ddd94a2b32c8915aa03d9

cache=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
dir=$cache/prev-${PREV_RELEASE:0:12}
build=$dir/build
if [ ! -x "$build/src/daemon/vaultfsd" ] || [ ! -x "$build/mount-helper/mount.vaultfs" ]; then
	git -C "$src" cat-file -e "$PREV_RELEASE^{commit}" 2>/dev/null || {
		echo "prev_release.sh: commit $PREV_RELEASE is not in $src (a shallow clone?)" >&2
		exit 1
	}
	rm -rf "$dir"
	mkdir -p "$dir"
	# An export, not a worktree: nothing is registered in the repository.
	mkdir "$dir/src"
	git -C "$src" archive --format=tar "$PREV_RELEASE" | tar -C "$dir/src" -xf -
	(cd "$dir/src" && meson setup "$dir/build" -Dsanitize=false -Dfailpoints=false \
		--buildtype=debugoptimized >"$dir/setup.log" 2>&1 &&
		ninja -C "$dir/build" -j2 src/daemon/vaultfsd mount-helper/mount.vaultfs \
			>"$dir/build.log" 2>&1) || {
		echo "prev_release.sh: building $PREV_RELEASE failed; see $dir/*.log" >&2
		exit 1
	}
fi
echo "$build"
