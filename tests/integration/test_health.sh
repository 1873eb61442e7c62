#!/usr/bin/env bash
# Health as a monitor sees it, in every state and both forms: the file
# .vault/health (one word, 0444, readable by anyone) and `vaultfsd -health
# -config=F`, which asks the node through its socket without a mount and
# exits 0 for active or standby, 3 no-leader, 4 sealed, 5 uninitialized,
# 6 removed, 1 unreachable (2: bad arguments or configuration).
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60 VFS_REQUEST_TIMEOUT_MS=3000

# health_is NODE MOUNT WORD STATUS: both forms say WORD, and -health exits
# with STATUS.
health_is() {
	local node=$1 mnt=$2 word=$3 want=$4 out rc=0
	out=$("$VAULTFSD" -config="$VFS_TMP/$node.hcl" -health 2>"$VFS_TMP/health.err") || rc=$?
	local file
	file=$(cat "$mnt/.vault/health")
	if [ "$out" != "$word" ] || [ "$rc" -ne "$want" ] || [ "$file" != "$word" ]; then
		echo "# $node: -health printed '$out', exit $rc; the file says '$file'; wanted '$word', exit $want"
		sed 's/^/# stderr: /' "$VFS_TMP/health.err"
		return 1
	fi
}

declare -A MNT
vfs_start_mount n1
M1=${MNT[n1]}
ok ".vault/health is listed, mode 0444" \
	bash -c "ls '$M1/.vault' | grep -qx health && test \"\$(stat -c %a '$M1/.vault/health')\" = 444"
ok "a fresh node: uninitialized (exit 5)" health_is n1 "$M1" uninitialized 5
MALL=$VFS_TMP/m-n1-all
ok "a second mount of n1, with allow_other" vfs_mount n1 "$MALL" allow_other
ok "any user may read it" \
	test "$(setpriv --reuid=65534 --regid=65534 --clear-groups -- cat "$MALL/.vault/health")" = uninitialized
ok "init" vfs_init "$M1"
ok "initialised, not unsealed: sealed (exit 4)" health_is n1 "$M1" sealed 4
ok "unseal" vfs_unseal "$M1"
ok "the leader of a one-node cluster: active (exit 0)" \
	vfs_wait_until 10 health_is n1 "$M1" active 0

vfs_start_mount n2 n3
M2=${MNT[n2]} M3=${MNT[n3]}
join() { echo "$(vfs_cluster_addr n1)" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
ok "n2 and n3 join and unseal" bash -c "$(declare -f join vfs_unseal vfs_cluster_addr); \
	VFS_TMP='$VFS_TMP'; declare -A MNT=([n2]='$M2' [n3]='$M3'); VFS_KEYS=(${VFS_KEYS[*]}); join n2 && join n3"
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
ok "a follower: standby (exit 0)" vfs_wait_until 10 health_is n2 "$M2" standby 0
ok "the leader is still active" health_is n1 "$M1" active 0

ok "remove-peer n3" bash -c "echo n3 > '$M1/.vault/remove-peer'"
ok "the removed node: removed (exit 6)" vfs_wait_until 20 health_is n3 "$M3" removed 6

ok "the leader stops" vfs_stop n1
ok "its follower, alone with a dead voter: no-leader (exit 3)" \
	vfs_wait_until 10 health_is n2 "$M2" no-leader 3
ok "n2 stops" vfs_stop n2
unreachable() {
	local out rc=0
	out=$("$VAULTFSD" -config="$VFS_TMP/n2.hcl" -health 2>"$VFS_TMP/health.err") || rc=$?
	sed 's/^/# stderr: /' "$VFS_TMP/health.err"
	[ "$out" = unreachable ] && [ "$rc" -eq 1 ] && grep -q "$(vfs_socket n2)" "$VFS_TMP/health.err"
}
ok "a node that is not running: unreachable (exit 1), and the stderr says where it looked" \
	unreachable
bad_config() {
	local rc=0
	"$VAULTFSD" -config="$VFS_TMP/missing.hcl" -health >/dev/null 2>&1 || rc=$?
	[ "$rc" -eq 2 ]
}
ok "a configuration that cannot be read: exit 2" bad_config
ok "vaultfsd -version names the release" bash -c "'$VAULTFSD' -version | grep -Eq '^vaultfsd \(vaultfs\) [0-9]+\.[0-9]+'"

vfs_done
