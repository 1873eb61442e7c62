#!/usr/bin/env bash
# Installs the Debian 12 packages vaultfs builds, runs and is tested with
# (etcd: tests/bench/bench.sh measures vaultfs next to it).
# Used by examples/demo.sh and tests/run.sh; set VAULTFS_NO_APT=1 to skip.
set -euo pipefail
PACKAGES=(
	build-essential meson ninja-build pkg-config
	libraft-dev liblz4-dev libuv1-dev libsqlite3-dev libsodium-dev
	libconfuse-dev libgfshare-dev libfuse3-dev fuse3 libcmocka-dev
	socat util-linux iproute2 sqlite3 nftables python3 python3-prometheus-client
	clang libclang-rt-14-dev
	etcd-server etcd-client
	debhelper dpkg-dev
)
[ "${VAULTFS_NO_APT:-0}" = 1 ] && exit 0
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages: ${missing[*]} (run as root, or install them first)" >&2
	exit 1
fi
echo "== installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
