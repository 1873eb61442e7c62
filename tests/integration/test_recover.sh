#!/usr/bin/env bash
# Lost quorum, as an operator recovers from it: three nodes, two of them
# lost for good (SIGKILL, data directories deleted). The survivor cannot
# write; restarted with -recover and unsealed, it leads alone with every
# secret; two fresh nodes join it; it restarts without -recover as a member
# of the new cluster. -recover on a node without Raft state refuses to start.
# Then recover.peers: two survivors of a lost node recover as a cluster of
# the two listed; a malformed list stops the daemon at start.
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60 VFS_REQUEST_TIMEOUT_MS=3000
declare -A MNT
vfs_start_mount n1 n2 n3
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}
join() { echo "$(vfs_cluster_addr "$2")" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
ok "init and unseal n1" init_unseal
ok "n2 joins" join n2 n1
ok "n3 joins" join n3 n1
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
write_all() {
	local i
	mkdir -p "$M1/app" || return 1
	for i in $(seq 1 20); do printf "secret-$i" > "$M1/app/s$i" || return 1; done
}
ok "20 secrets written" write_all
ok "n3 has them" vfs_wait_until 10 test "$(cat "$M3/app/s20" 2>/dev/null)" = secret-20

# n2 and n3 are lost for good.
lose() {
	vfs_umount "${MNT[$1]}"
	kill -KILL "${VFS_PID[$1]}" && vfs_wait_gone "${VFS_PID[$1]}" 10 && unset "VFS_PID[$1]" &&
		rm -rf "$(vfs_data "$1")"
}
ok "n2 is lost: killed, its data directory deleted" lose n2
ok "n3 is lost: killed, its data directory deleted" lose n3
ok "n1 alone has no leader" vfs_wait_until 10 grep -qx no-leader "$M1/.vault/health"
ok "a write on n1 fails (EAGAIN): no quorum" \
	vfs_fails_within $((2 * VFS_REQUEST_TIMEOUT_MS + 1500)) "Resource temporarily unavailable" \
	bash -c "printf x > '$M1/app/during'"

refused() {
	vfs_config fresh
	local out rc=0
	out=$("$VAULTFSD" -config="$VFS_TMP/fresh.hcl" -recover 2>&1) || rc=$?
	echo "# $out" | tail -1
	[ "$rc" -ne 0 ] && grep -q "nothing to recover" <<<"$out"
}
ok "-recover on a node without Raft state refuses to start, and says why" refused

start_recover() {
	vfs_umount "$M1" && vfs_stop n1 || return 1
	rm -f "$(vfs_socket n1)"
	"$VAULTFSD" -config="$VFS_TMP/n1.hcl" -recover >>"$VFS_TMP/n1.log" 2>&1 &
	VFS_PID[n1]=$!
	vfs_wait_until 20 test -S "$(vfs_socket n1)" && vfs_mount n1 "$M1"
}
ok "n1 restarted with -recover" start_recover
ok "unsealed" vfs_unseal "$M1"
ok "it leads alone: active" vfs_wait_until 10 grep -qx active "$M1/.vault/health"
ok "the log says what -recover did" vfs_log_says n1 "-recover: the configuration is now this node alone"
every_secret() {
	local m=$1 i
	for i in $(seq 1 20); do [ "$(cat "$m/app/s$i")" = "secret-$i" ] || { echo "# s$i on $m"; return 1; }; done
}
ok "every secret is there" every_secret "$M1"
ok "peers lists n1 alone" bash -c "[ \$(tail -n +2 '$M1/.vault/peers' | wc -l) -eq 1 ] && grep -q '^n1 ' '$M1/.vault/peers'"
ok "writes work again" bash -c "printf after > '$M1/app/after' && test \"\$(cat '$M1/app/after')\" = after"

vfs_start_mount n4 n5
ok "a fresh node n4 joins the survivor" join n4 n1
ok "a fresh node n5 joins the survivor" join n5 n1
ok "three voters again" vfs_wait_until 20 vfs_three_voters "$M1"
ok "a fresh node has every secret" vfs_wait_until 10 every_secret "${MNT[n5]}"
restart_plain() {
	vfs_umount "$M1" && vfs_stop n1 && vfs_start n1 && vfs_mount n1 "$M1" && vfs_unseal "$M1"
}
ok "n1 restarts without -recover" restart_plain
ok "the new cluster has a leader and three voters" vfs_wait_until 20 vfs_three_voters "${MNT[n4]}"
ok "written through n1, read on n4" \
	bash -c "printf last > '$M1/app/last' && test \"\$(cat '${MNT[n4]}/app/last')\" = last"


# recover.peers: n1 and n4 survive, n5 is lost; the two recover as a
# cluster of both, each with the same list.
ID1=$(vfs_status_field "$M1" identity) ID4=$(vfs_status_field "${MNT[n4]}" identity)
hostport() { vfs_cluster_addr "$1" | sed 's|^http://||'; }
ok "n5 is lost: killed, its data directory deleted" lose n5
stop_node() { vfs_umount "${MNT[$1]}" && vfs_stop "$1"; }
stop_both() { stop_node n1 && stop_node n4; }
ok "n1 and n4 stop" stop_both
bad_peers() {
	printf '# survivors\n\nn1 %s\n' "$(hostport n1)" > "$(vfs_data n1)/recover.peers"
	local out rc=0
	out=$(timeout 20 "$VAULTFSD" -config="$VFS_TMP/n1.hcl" -recover 2>&1) || rc=$?
	echo "# $(tail -1 <<<"$out")"
	[ "$rc" -ne 0 ] && grep -q "recover.peers:3: expected three fields" <<<"$out"
}
ok "a malformed recover.peers stops -recover at start, naming the line" bad_peers
start_recover_node() {
	rm -f "$(vfs_socket "$1")"
	"$VAULTFSD" -config="$VFS_TMP/$1.hcl" -recover >>"$VFS_TMP/$1.log" 2>&1 &
	VFS_PID[$1]=$!
	vfs_wait_until 20 test -S "$(vfs_socket "$1")" && vfs_mount "$1" "${MNT[$1]}" &&
		vfs_unseal "${MNT[$1]}"
}
write_peers() {
	local d
	for d in "$(vfs_data n1)" "$(vfs_data n4)"; do
		printf 'n1 %s %s\nn4 %s %s\n' "$(hostport n1)" "$ID1" "$(hostport n4)" "$ID4" \
			> "$d/recover.peers" || return 1
	done
}
ok "recover.peers listing n1 and n4, in both data directories" write_peers
ok "n1 restarted with -recover and unsealed" start_recover_node n1
ok "n4 restarted with -recover and unsealed" start_recover_node n4
two_voters() {
	[ "$(vfs_voter_count "$M1")" -eq 2 ] && grep -q '^n1 ' "$M1/.vault/peers" &&
		grep -q '^n4 ' "$M1/.vault/peers" &&
		{ grep -qx active "$M1/.vault/health" || grep -qx active "${MNT[n4]}/.vault/health"; }
}
ok "the two form the cluster: peers lists n1 and n4 only, one of them active" \
	vfs_wait_until 20 two_voters
ok "every secret is there, and writes commit on the two" \
	bash -c "$(declare -f every_secret); every_secret '$M1' && printf two > '$M1/app/two' &&
	test \"\$(cat '${MNT[n4]}/app/two')\" = two"
ok "recover.peers was renamed recover.peers.applied" \
	bash -c "test -e '$(vfs_data n1)/recover.peers.applied' && test ! -e '$(vfs_data n1)/recover.peers'"
again() {
	vfs_umount "$M1" && vfs_stop n1 || return 1
	local out rc=0
	out=$(timeout 20 "$VAULTFSD" -config="$VFS_TMP/n1.hcl" -recover 2>&1) || rc=$?
	echo "# $(tail -1 <<<"$out")"
	[ "$rc" -ne 0 ] && grep -q "recover.peers.applied exists" <<<"$out"
}
ok "-recover again, with the list applied and gone, refuses to start (no cluster of one)" again
back() { vfs_start n1 && vfs_mount n1 "$M1" && vfs_unseal "$M1"; }
ok "started without -recover it is one of the two again" back
ok "and the two still commit" vfs_wait_until 20 bash -c "printf three > '$M1/app/three'"

vfs_done
