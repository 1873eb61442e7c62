#!/usr/bin/env bash
# The vaultfs walkthrough: builds vaultfs, starts a node on loopback with its
# FUSE mount, and goes through init -> unseal -> write -> read -> seal ->
# unseal -> restart, printing each command and what it answered.
#
#   examples/demo.sh          run the walkthrough, then stop and clean up
#   examples/demo.sh --keep   leave the node running and mounted afterwards
#
# Run as root on Debian 12 (FUSE mounts); missing packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
case "${1:-}" in
--keep) KEEP=1 ;;
"") ;;
*) echo "usage: examples/demo.sh [--keep]" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
	echo "examples/demo.sh: run as root (it mounts a FUSE filesystem)" >&2
	exit 1
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; bash -c "$*" 2>&1 | sed 's/^/  /'; return "${PIPESTATUS[0]}"; }
wait_for() { # SECONDS CMD...
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

step "Installing build dependencies (Debian packages) if missing"
bash tools/install-deps.sh

step "Building vaultfs (meson + ninja) in ./build"
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
echo "  built build/src/daemon/vaultfsd and build/mount-helper/mount.vaultfs"

WORK=$(mktemp -d /tmp/vaultfs-demo.XXXXXX)
MNT=$WORK/mnt
DAEMON_PID=
cleanup() {
	if [ "$KEEP" = 1 ]; then
		return
	fi
	mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u "$MNT"
	if [ -n "$DAEMON_PID" ]; then
		kill "$DAEMON_PID" 2>/dev/null || true
		wait "$DAEMON_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# The example config, pointed at this run's scratch directory.
sed -e "s|/var/lib/vaultfs/node1|$WORK/node1|" -e "s|/run/vaultfs/node1.sock|$WORK/node1.sock|" \
	examples/node1.hcl > "$WORK/node1.hcl"

start_daemon() {
	build/src/daemon/vaultfsd -config="$WORK/node1.hcl" >>"$WORK/node1.log" 2>&1 &
	DAEMON_PID=$!
	wait_for 10 test -S "$WORK/node1.sock" || { cat "$WORK/node1.log"; exit 1; }
}

step "Starting vaultfsd with examples/node1.hcl (data and socket under $WORK)"
show "cat $WORK/node1.hcl"
start_daemon
echo "  vaultfsd running as pid $DAEMON_PID; its log: $WORK/node1.log"

step "Mounting it: mount.vaultfs SOCKET MOUNTPOINT"
mkdir -p "$MNT"
show "build/mount-helper/mount.vaultfs $WORK/node1.sock $MNT -o allow_other"
show "ls -l $MNT/.vault"

step "A new vault is uninitialised and sealed: it refuses secrets"
show "cat $MNT/.vault/status"
show "ls $MNT || true"

step "Init: 5 key shares, any 3 unseal (the shares are shown once)"
show "echo 'shares=5 threshold=3' > $MNT/.vault/init"
# Key shares stay in this shell's memory only, never in a file.
INIT_OUTPUT=$(cat "$MNT/.vault/init")
mapfile -t KEYS < <(awk '/^Unseal Key/ {print $4}' <<<"$INIT_OUTPUT")
printf '$ cat %s/.vault/init\n' "$MNT"
sed -E 's/^(Unseal Key [0-9]+: ).*/\1******** (hidden by the demo)/' <<<"$INIT_OUTPUT" | sed 's/^/  /'
show "cat $MNT/.vault/init; echo '(empty: shown only once)'"

step "Unseal with three of the five shares"
for i in 1 2 3; do
	printf '$ echo "$KEY%s" > %s/.vault/unseal\n' "$i" "$MNT"
	echo "${KEYS[$((i - 1))]}" > "$MNT/.vault/unseal"
	show "cat $MNT/.vault/unseal"
done
show "cat $MNT/.vault/status"
show "cat $MNT/.vault/peers"

step "Write a secret (Vault: kv put secret/dbcreds admin=password)"
show "mkdir -p $MNT/secret/dbcreds"
show "echo password > $MNT/secret/dbcreds/admin"
show "chmod 0600 $MNT/secret/dbcreds/admin"
show "ls -l $MNT/secret/dbcreds"

step "Read it back (Vault: kv get secret/dbcreds)"
show "cat $MNT/secret/dbcreds/admin"

step "Seal: the node forgets its keys and refuses secrets"
show "echo 1 > $MNT/.vault/seal"
show "cat $MNT/secret/dbcreds/admin || true"
show "grep sealed $MNT/.vault/status"

step "Restart the daemon: the mount stays and recovers; the node comes back sealed"
kill "$DAEMON_PID"; wait "$DAEMON_PID" || true
start_daemon
wait_for 10 grep -q 'sealed: true' "$MNT/.vault/status"
show "grep -E '^(initialized|sealed|progress)' $MNT/.vault/status"

step "Unseal again with three shares, and the secret is still there"
for i in 3 4 5; do
	echo "${KEYS[$((i - 1))]}" > "$MNT/.vault/unseal"
done
echo "  (three shares written to .vault/unseal)"
show "cat $MNT/secret/dbcreds/admin"

step "At rest nothing is plaintext: grep the data directory for the value and the path"
show "grep -r -a -c -e password -e dbcreds $WORK/node1 | grep -v ':0$' || echo 'no match: data is encrypted at rest'"

if [ "$KEEP" = 1 ]; then
	step "Left running (--keep)"
	cat <<EOM
  mount:  $MNT
  daemon: pid $DAEMON_PID, config $WORK/node1.hcl, log $WORK/node1.log
  unseal key shares (shown once; keep them apart, as with vault operator init):
$(printf '    %s\n' "${KEYS[@]}")
  stop:   fusermount3 -u $MNT; kill $DAEMON_PID; rm -rf $WORK
EOM
else
	step "Done: unmounting, stopping the daemon, removing $WORK"
fi
