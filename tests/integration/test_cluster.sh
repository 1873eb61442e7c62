#!/usr/bin/env bash
# The seed's HA walkthrough on three real nodes: init and unseal one, join
# the others and unseal them, list peers, write on the leader and read on a
# follower (and the other way round), step down from a follower, kill the
# leader, restart it and see it catch up (through a snapshot), remove a peer,
# and refuse a join with the wrong shares. Joins take autopilot's default
# server_stabilization_time (10 s), as an operator's would.
. "$(dirname "$0")/lib.sh"

export VFS_STABILIZATION=default

# Small snapshot threshold: a node that was down catches up by snapshot.
export VFS_SNAPSHOT_THRESHOLD=32 VFS_TRAILING_LOGS=8
export VFS_ELECTION_MS=${VFS_ELECTION_MS:-600} VFS_HEARTBEAT_MS=${VFS_HEARTBEAT_MS:-60}

for n in n1 n2 n3; do
	vfs_start "$n"
	vfs_mount "$n" "$VFS_TMP/m-$n" || { echo "Bail out! cannot mount $n"; exit 1; }
done
M1=$VFS_TMP/m-n1 M2=$VFS_TMP/m-n2 M3=$VFS_TMP/m-n3

ok "init n1" vfs_init "$M1"
ok "unseal n1" vfs_unseal "$M1"
ok "n1 leads a one-node cluster" vfs_wait_until 10 grep -qx 'ha_mode: active' "$M1/.vault/status"

ok "join on an initialised node fails with EALREADY" \
	fails_with "Operation already in progress" bash -c "echo $(vfs_cluster_addr n2) > '$M1/.vault/join'"
ok "join to a closed port fails with a clear error" \
	fails_with "Connection refused" bash -c "echo http://127.0.0.1:$(vfs_free_port) > '$M2/.vault/join'"
ok "n2 joins via n1's cluster address" bash -c "echo $(vfs_cluster_addr n1) > '$M2/.vault/join'"
ok "n2 is initialised (sealed) after join" \
	bash -c "grep -qx 'initialized: true' '$M2/.vault/status' && grep -qx 'sealed: true' '$M2/.vault/status'"
ok "unseal n2 with the cluster's shares" vfs_unseal "$M2"
ok "n3 joins via n2, a follower" bash -c "echo $(vfs_cluster_addr n2) > '$M3/.vault/join'"
ok "unseal n3" vfs_unseal "$M3"

n3_non_voter() { awk 'NR > 1 && $1 == "n3" && $5 == "false"' "$M1/.vault/peers" | grep -q .; }
ok "n3 is a non-voter at first (server_stabilization_time)" n3_non_voter
ok "peers lists three voters and one leader" vfs_wait_until 40 vfs_three_voters "$M1"
ok "a follower lists the same peers" vfs_wait_until 10 vfs_three_voters "$M3"
# LastContact and Lag: the leader knows both for each follower; a
# follower knows only how long ago its leader spoke.
peers_columns() {
	awk 'NR > 1 && $4 == "follower" { if ($6 !~ /^[0-9]+ms$/ || $7 !~ /^[0-9]+$/) bad = 1; n++ }
	     NR > 1 && $4 == "leader" { if ($6 != "0ms" || $7 != "0") bad = 1 }
	     END { exit (n == 2 && !bad) ? 0 : 1 }' "$1/.vault/peers" &&
		awk 'NR > 1 && $4 == "leader" { if ($6 !~ /^[0-9]+ms$/ || $7 != "-") bad = 1 }
		     END { exit bad ? 1 : 0 }' "$2/.vault/peers" ||
		{ sed 's/^/# /' "$1/.vault/peers" "$2/.vault/peers"; return 1; }
}
ok "peers: the leader shows each follower's last contact and lag, a follower its leader's contact" \
	peers_columns "$M1" "$M3"
ok "followers are standby and name the leader" \
	bash -c "grep -qx 'ha_mode: standby' '$M2/.vault/status' && grep -qx 'leader: n1' '$M2/.vault/status'"

ok "write on the leader" bash -c "mkdir -p '$M1/secret/dbcreds' && echo password > '$M1/secret/dbcreds/admin'"
ok "read it on a follower" test "$(cat "$M2/secret/dbcreds/admin")" = password
ok "write on a follower (forwarded)" bash -c "echo from-n3 > '$M3/secret/dbcreds/n3'"
ok "read it on the leader" test "$(cat "$M1/secret/dbcreds/n3")" = from-n3
ok "read it on the other follower" test "$(cat "$M2/secret/dbcreds/n3")" = from-n3
ok "mv, chmod and rm on a follower" bash -c "mv '$M2/secret/dbcreds/n3' '$M2/secret/moved' &&
	chmod 600 '$M2/secret/moved' && test \"\$(stat -c %a '$M1/secret/moved')\" = 600 &&
	rm '$M2/secret/moved' && ! test -e '$M1/secret/moved'"

ok "a second mount of n2 with -o local_reads" vfs_mount n2 "$VFS_TMP/m-n2-local" local_reads
ok "serves reads from the follower's own copy" \
	test "$(cat "$VFS_TMP/m-n2-local/secret/dbcreds/admin")" = password

leader_of() { vfs_status_field "$1" leader; }
ok "step-down written on a follower moves leadership" \
	bash -c "echo 1 > '$M2/.vault/step-down'"
ok "a new leader is elected" vfs_wait_until 10 bash -c "l=\$(sed -n 's/^leader: //p' '$M2/.vault/status'); [ -n \"\$l\" ] && [ \"\$l\" != n1 ]"
ok "writes work after the step-down" bash -c "echo after-step-down > '$M1/secret/step'"
ok "and read on every node" bash -c "for m in '$M1' '$M2' '$M3'; do test \"\$(cat \$m/secret/step)\" = after-step-down || exit 1; done"

LEADER=$(leader_of "$M1")
declare -A MNT=([n1]=$M1 [n2]=$M2 [n3]=$M3)
survivors=()
for n in n1 n2 n3; do [ "$n" != "$LEADER" ] && survivors+=("$n"); done
S1=${MNT[${survivors[0]}]} S2=${MNT[${survivors[1]}]}
vfs_stop "$LEADER" KILL
new_leader() { local l; l=$(vfs_status_field "$S1" leader); [ -n "$l" ] && [ "$l" != "$LEADER" ]; }
ok "after SIGKILL of the leader a survivor leads" vfs_wait_until 15 new_leader
ok "the data is still served" test "$(cat "$S2/secret/dbcreds/admin")" = password
write_many() {
	local i
	for i in $(seq 1 60); do echo "value-$i" > "$S1/secret/k$i" || return 1; done
}
ok "writes are accepted after failover (enough for a snapshot)" write_many
vfs_start "$LEADER"
ok "the killed node restarts sealed" vfs_wait_until 10 grep -qx 'sealed: true' "${MNT[$LEADER]}/.vault/status"
ok "unsealed, it rejoins as a follower" vfs_unseal "${MNT[$LEADER]}"
ok "and catches up" \
	vfs_wait_until 20 bash -c "test \"\$(cat '${MNT[$LEADER]}/secret/k60')\" = value-60"
ok "by installing a snapshot from the leader (its log was compacted)" \
	grep -q "installing a snapshot from the leader" "$VFS_TMP/$LEADER.log"
ok "every value written while it was down is there" \
	bash -c "for i in \$(seq 1 60); do test \"\$(cat '${MNT[$LEADER]}/secret/k'\$i)\" = value-\$i || exit 1; done"

vfs_start n4
M4=$VFS_TMP/m-n4
vfs_mount n4 "$M4"
ok "n4 joins" bash -c "echo $(vfs_cluster_addr n1) > '$M4/.vault/join'"
wrong_share() { (head -c 32 /dev/urandom; printf "\\x$1") | base64 -w0; echo; }
ok "n4 with the wrong shares: EKEYREJECTED" bash -c "
	$(declare -f wrong_share)
	wrong_share 01 > '$M4/.vault/unseal' && wrong_share 02 > '$M4/.vault/unseal' || exit 1
	! out=\$(wrong_share 03 2>&1 > '$M4/.vault/unseal') && [[ \"\$out\" == *'Key was rejected'* ]]"
ok "n4 is not added" bash -c "! grep -q '^n4 ' '$M1/.vault/peers'"

ok "remove-peer $LEADER (the restarted node)" bash -c "echo $LEADER > '$S1/.vault/remove-peer'"
ok "peers no longer lists it" vfs_wait_until 10 bash -c "! grep -q '^$LEADER ' '$S1/.vault/peers'"
ok "writes still work with two voters" bash -c "echo two-voters > '$S2/secret/final' && test \"\$(cat '$S1/secret/final')\" = two-voters"
vfs_done
