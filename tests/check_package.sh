#!/usr/bin/env bash
# Builds the Debian package from the tracked files (dpkg-buildpackage
# -us -uc -b, in a scratch copy of the tree) and checks what it holds:
# both programs where mount(8) and the unit look for them, the systemd unit
# pointing at the packaged daemon, the manual pages, the examples, and a
# daemon that runs (-version) from the unpacked package, and the logrotate
# file for the audit log (SIGHUP, never copytruncate). TAP on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/src"
git ls-files -z | xargs -0 cp --parents -t "$WORK/src"
echo "1..7"
if ! (cd "$WORK/src" && dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1); then
	tail -n 30 "$WORK/build.log" | sed 's/^/# /'
	echo "Bail out! dpkg-buildpackage -us -uc -b failed"
	exit 1
fi
DEB=$(ls "$WORK"/vaultfs_*_*.deb)
echo "# built $(basename "$DEB")"
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./|/|' >"$WORK/files"
dpkg-deb -x "$DEB" "$WORK/root"
n=0 rc=0
check() {
	n=$((n + 1))
	local what=$1
	shift
	if "$@"; then echo "ok $n - $what"; else echo "not ok $n - $what"; rc=1; fi
}
has() { local f; for f in "$@"; do grep -qx "$f" "$WORK/files" || { echo "# missing: $f"; return 1; }; done; }
check "the programs: /usr/sbin/vaultfsd, /sbin/mount.vaultfs (for mount -t vaultfs)" \
	has /usr/sbin/vaultfsd /sbin/mount.vaultfs
check "the systemd unit, running the packaged daemon" \
	bash -c "grep -q '^ExecStart=/usr/sbin/vaultfsd -config=/etc/vaultfs/%i.hcl\$' '$WORK/root/lib/systemd/system/vaultfsd@.service'"
check "the manual pages" \
	has /usr/share/man/man8/vaultfsd.8.gz /usr/share/man/man8/mount.vaultfs.8.gz /usr/share/man/man5/vaultfs.hcl.5.gz
check "the examples and the copyright file" \
	has /usr/share/doc/vaultfs/examples/node1.hcl /usr/share/doc/vaultfs/examples/fstab /usr/share/doc/vaultfs/copyright
check "/etc/vaultfs for the configurations" has /etc/vaultfs/
# logrotate moves the audit log and tells the daemon (SIGHUP) to reopen it.
logrotate_ok() {
	local f=$WORK/root/etc/logrotate.d/vaultfs
	has /etc/logrotate.d/vaultfs /var/log/vaultfs/ && grep -q '^/var/log/vaultfs/' "$f" &&
		grep -q 'postrotate' "$f" && grep -q 'kill.* HUP' "$f" && ! grep -q '^[^#]*copytruncate' "$f"
}
check "the logrotate file: /var/log/vaultfs, SIGHUP after rotation, no copytruncate" logrotate_ok
check "the packaged daemon runs: -version names the release" \
	bash -c "'$WORK/root/usr/sbin/vaultfsd' -version | grep -Eq '^vaultfsd \\(vaultfs\\) [0-9]+\\.[0-9]+'"
exit $rc
