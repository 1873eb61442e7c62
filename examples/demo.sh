#!/usr/bin/env bash
# The vaultfs walkthrough (Vault's "HA with integrated storage", with files):
# builds vaultfs, starts three nodes on loopback with a FUSE mount each, and
# goes through init -> unseal -> join -> write -> read on another node ->
# step-down -> failover -> catch-up -> key rotation -> backup -> restore into
# a fresh node, printing each command and its answer.
#
#   examples/demo.sh          run the walkthrough, then stop and clean up
#   examples/demo.sh --keep   leave the cluster running and mounted afterwards
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
	echo "examples/demo.sh: run as root (it mounts FUSE filesystems)" >&2
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
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

step "Installing build dependencies (Debian packages) if missing"
bash tools/install-deps.sh

step "Building vaultfs (meson + ninja) in ./build"
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
echo "  built build/src/daemon/vaultfsd and build/mount-helper/mount.vaultfs"
VAULTFSD=build/src/daemon/vaultfsd
MOUNT=build/mount-helper/mount.vaultfs

WORK=$(mktemp -d /tmp/vaultfs-demo.XXXXXX)
declare -A PID=()
cleanup() {
	[ "$KEEP" = 1 ] && return
	for i in 1 2 3 4; do
		mountpoint -q "$WORK/m$i" 2>/dev/null && fusermount3 -u "$WORK/m$i"
	done
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

# examples/nodeN.hcl, pointed at this run's scratch directory (and at other
# ports if 8201-8203 are taken on this machine).
# node4, for the restore at the end, is node1's file with node4's names.
for i in 1 2 3 4; do
	port=$((8200 + i))
	while ! port_free "$port"; do port=$((port + 10)); done
	src=$i; [ "$i" = 4 ] && src=1
	sed -e "s|/var/lib/vaultfs/node$src|$WORK/node$i|" -e "s|/run/vaultfs/node$src.sock|$WORK/node$i.sock|" \
		-e "s|127.0.0.1:820$src|127.0.0.1:$port|" -e "s|\"node$src\"|\"node$i\"|" \
		examples/node$src.hcl > "$WORK/node$i.hcl"
	mkdir -p "$WORK/m$i"
done
addr() { sed -n 's/^cluster_addr = "\(.*\)".*/\1/p' "$WORK/node$1.hcl"; }

start_node() {
	"$VAULTFSD" -config="$WORK/node$1.hcl" >>"$WORK/node$1.log" 2>&1 &
	PID[$1]=$!
	wait_for 10 test -S "$WORK/node$1.sock" || { cat "$WORK/node$1.log"; exit 1; }
}
unseal() { # NODE KEY-NUMBERS...
	local node=$1 k
	shift
	for k in "$@"; do
		printf '$ echo "$KEY%s" > %s/.vault/unseal\n' "$k" "$WORK/m$node"
		echo "${KEYS[$((k - 1))]}" > "$WORK/m$node/.vault/unseal"
	done
}
leader() { sed -n 's/^leader: //p' "$WORK/m$1/.vault/status"; }

step "Starting three nodes: vaultfsd -config=nodeN.hcl (from examples/, data under $WORK)"
show "grep -v '^ *#' $WORK/node1.hcl | grep -v '^\$'"
for i in 1 2 3; do start_node "$i"; done
echo "  vaultfsd pids: ${PID[1]} ${PID[2]} ${PID[3]}; logs: $WORK/nodeN.log"

step "Mounting each node: mount.vaultfs SOCKET MOUNTPOINT"
for i in 1 2 3; do
	show "$MOUNT $WORK/node$i.sock $WORK/m$i -o allow_other"
done
show "ls -l $WORK/m1/.vault"

step "A new vault is uninitialised and sealed: it refuses secrets"
show "cat $WORK/m1/.vault/status"
show "ls $WORK/m1 || true"

step "Init on node1 (Vault: operator init): 5 key shares, any 3 unseal"
show "echo 'shares=5 threshold=3' > $WORK/m1/.vault/init"
# Key shares stay in this shell's memory only, never in a file.
INIT_OUTPUT=$(cat "$WORK/m1/.vault/init")
mapfile -t KEYS < <(awk '/^Unseal Key/ {print $4}' <<<"$INIT_OUTPUT")
printf '$ cat %s/.vault/init\n' "$WORK/m1"
sed -E 's/^(Unseal Key [0-9]+: ).*/\1******** (hidden by the demo)/' <<<"$INIT_OUTPUT" | sed 's/^/  /'
show "cat $WORK/m1/.vault/init; echo '(empty: shown only once)'"

step "Unseal node1 with three shares (Vault: operator unseal, three times)"
unseal 1 1 2 3
show "grep -E '^(sealed|ha_mode|leader):' $WORK/m1/.vault/status"

step "Join node2 and node3 (Vault: operator raft join), then unseal them with the cluster's shares"
show "echo $(addr 1) > $WORK/m2/.vault/join"
show "cat $WORK/m2/.vault/join"
unseal 2 2 4 5
show "echo $(addr 1) > $WORK/m3/.vault/join"
unseal 3 1 3 5
show "cat $WORK/m1/.vault/peers"

step "Autopilot: the leader makes each a voter once caught up and stable for server_stabilization_time (10 s by default)"
wait_for 40 bash -c "[ \$(awk 'NR > 1 && \$5 == \"true\"' $WORK/m1/.vault/peers | wc -l) -eq 3 ]"

step "List the peers (Vault: operator raft list-peers), from any node"
show "cat $WORK/m3/.vault/peers"

step "Write a secret on the leader (Vault: kv put secret/dbcreds admin=password)"
show "mkdir -p $WORK/m1/secret/dbcreds"
show "echo password > $WORK/m1/secret/dbcreds/admin"
show "ls -l $WORK/m1/secret/dbcreds"

step "Read it on a follower (Vault: kv get secret/dbcreds on another node)"
show "grep -E '^(ha_mode|leader):' $WORK/m2/.vault/status"
show "cat $WORK/m2/secret/dbcreds/admin"

step "Write on a follower: it is forwarded to the leader"
show "echo s3cr3t > $WORK/m3/secret/dbcreds/readonly"
show "cat $WORK/m1/secret/dbcreds/readonly"

step "Step down (Vault: operator step-down), written on a follower"
show "echo 1 > $WORK/m2/.vault/step-down"
wait_for 10 bash -c "l=\$(sed -n 's/^leader: //p' $WORK/m2/.vault/status); [ -n \"\$l\" ] && [ \"\$l\" != node1 ]"
show "cat $WORK/m2/.vault/peers"

LEADER=$(leader 2); L=${LEADER#node}
S=$(( L % 3 + 1 ))
step "Failover: kill -9 the leader ($LEADER); the others elect a new one and keep serving"
show "kill -9 ${PID[$L]}"
wait "${PID[$L]}" 2>/dev/null || true
unset "PID[$L]"
wait_for 20 bash -c "l=\$(sed -n 's/^leader: //p' $WORK/m$S/.vault/status); [ -n \"\$l\" ] && [ \"\$l\" != $LEADER ]"
show "grep -E '^(leader|term):' $WORK/m$S/.vault/status"
show "cat $WORK/m$S/secret/dbcreds/admin"
show "echo written-during-failover > $WORK/m$S/secret/dbcreds/rotated"

step "Restart $LEADER: it comes back sealed; unsealed, it rejoins and catches up"
start_node "$L"
wait_for 10 grep -q 'sealed: true' "$WORK/m$L/.vault/status"
show "grep -E '^(initialized|sealed):' $WORK/m$L/.vault/status"
unseal "$L" 1 2 3
show "cat $WORK/m$L/secret/dbcreds/rotated"
show "cat $WORK/m$L/.vault/peers"

step "Rotate the encryption key (Vault: operator rotate): a new key term on every node"
show "echo 1 > $WORK/m$S/.vault/rotate"
wait_for 10 grep -qx 'key_term: 2' "$WORK/m$L/.vault/status"
show "grep -E '^key_(term|install_time):' $WORK/m$L/.vault/status"
show "cat $WORK/m$L/secret/dbcreds/rotated"

step "At rest nothing is plaintext: grep every data directory for the value and the path"
show "grep -r -a -c -e password -e dbcreds $WORK/node1 $WORK/node2 $WORK/node3 | grep -v ':0\$' || echo 'no match: data is encrypted at rest'"

step "Back up from a follower (Vault: operator raft snapshot save): a consistent copy, ciphertext only"
show "cp $WORK/m$L/.vault/snapshot $WORK/backup.snap"
show "$VAULTFSD -inspect $WORK/backup.snap"

step "Restore it into a fresh node (Vault: operator raft snapshot restore into a new cluster)"
start_node 4
show "$MOUNT $WORK/node4.sock $WORK/m4 -o allow_other"
show "cp $WORK/backup.snap $WORK/m4/.vault/restore"
show "grep -E '^(initialized|sealed):' $WORK/m4/.vault/status"
echo "  node4 now holds the backed-up vault; it unseals with that vault's key shares"
unseal 4 1 4 5
wait_for 20 grep -qx active "$WORK/m4/.vault/health"
show "cat $WORK/m4/.vault/health"
show "cat $WORK/m4/secret/dbcreds/admin $WORK/m4/secret/dbcreds/rotated"

if [ "$KEEP" = 1 ]; then
	step "Left running (--keep)"
	cat <<EOM
  mounts:  $WORK/m1 $WORK/m2 $WORK/m3 (one cluster), $WORK/m4 (restored from a backup)
  daemons: pids ${PID[*]}; configs and logs in $WORK
  unseal key shares (shown once; keep them apart, as with vault operator init):
$(printf '    %s\n' "${KEYS[@]}")
  stop:    for m in $WORK/m?; do fusermount3 -u \$m; done; kill ${PID[*]}; rm -rf $WORK
EOM
else
	step "Done: unmounting, stopping the daemons, removing $WORK"
fi
