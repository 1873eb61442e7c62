#!/usr/bin/env bash
# Autopilot's dead-server cleanup: four nodes configured with
# autopilot { dead_server_cleanup_threshold = "10s", min_quorum = 3 }.
# A voter killed for good is removed by the leader after the threshold
# (peers shows three, the log says why); a second one killed is not, since
# that would leave fewer than min_quorum voters, and the three left keep
# writing with two of them. A fifth node that joins and dies before it
# is a voter (server_stabilization_time "4s") is removed too: a non-voter
# counts for no quorum, so min_quorum does not keep it.
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60 VFS_STABILIZATION=4s
export VFS_AUTOPILOT='  dead_server_cleanup_threshold = "10s"
  min_quorum = 3'
declare -A MNT
for n in n1 n2 n3 n4 n5; do vfs_config "$n"; done
vfs_start_mount n1 n2 n3 n4
M1=${MNT[n1]}
join() { echo "$(vfs_cluster_addr n1)" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
ok "init and unseal n1" init_unseal
ok "n2 joins" join n2
ok "n3 joins" join n3
ok "n4 joins" join n4
four() { [ "$(vfs_voter_count "$M1")" -eq 4 ]; }
ok "four voters" vfs_wait_until 20 four
L=$(vfs_status_field "$M1" leader)
# Two followers to lose, never the leader.
VICTIMS=()
for n in n4 n3 n2; do [ "$n" != "$L" ] && VICTIMS+=("$n"); done
V1=${VICTIMS[0]} V2=${VICTIMS[1]}
ML=${MNT[$L]}
echo "# leader $L; losing $V1, then $V2"
lose() { vfs_umount "${MNT[$1]}"; kill -KILL "${VFS_PID[$1]}" && vfs_wait_gone "${VFS_PID[$1]}" 10 && unset "VFS_PID[$1]"; }
ok "$V1 is killed" lose "$V1"
kept_for() { ! vfs_wait_until "$1" bash -c "! grep -q '^$2 ' '$ML/.vault/peers'"; }
ok "it stays a voter for the first 5 s (threshold 10 s)" kept_for 5 "$V1"
gone() { [ "$(vfs_voter_count "$ML")" -eq 3 ] && ! grep -q "^$V1 " "$ML/.vault/peers"; }
ok "within 20 s the leader removed it: three voters" vfs_wait_until 20 gone
ok "the leader's log says why" vfs_log_says "$L" "autopilot: removing $V1@.*silent for [0-9]+ ms"
ok "$V2 is killed" lose "$V2"
three() { [ "$(vfs_voter_count "$ML")" -eq 3 ]; }
ok "15 s later it is still a voter: removing it would leave fewer than min_quorum (3)" \
	kept_for 15 "$V2"
ok "still three voters" three
ok "the two left keep writing" bash -c "printf w > '$ML/w' && test \"\$(cat '$ML/w')\" = w"

vfs_start_mount n5
join_n5() { echo "$(vfs_cluster_addr "$L")" > "${MNT[n5]}/.vault/join" && vfs_unseal "${MNT[n5]}"; }
ok "n5 joins" join_n5
n5_non_voter() { awk 'NR > 1 && $1 == "n5" && $5 == "false"' "$ML/.vault/peers" | grep -q .; }
ok "it is a non-voter" n5_non_voter
# The leader has led for well over the threshold by now; a joiner it has
# never heard from is not silent for that long, only since it joined.
n5_kept() { ! vfs_wait_until 2 bash -c "! awk '\$1 == \"n5\"' '$ML/.vault/peers' | grep -q ."; }
ok "2 s later it is still there, not removed as silent" n5_kept
ok "and still a non-voter (server_stabilization_time 4 s)" n5_non_voter
ok "n5 is killed before it is a voter" lose n5
n5_gone() { ! grep -q "^n5 " "$ML/.vault/peers" && three; }
ok "within 25 s the leader removed it, with three voters left (min_quorum)" vfs_wait_until 25 n5_gone
ok "the leader's log says why" vfs_log_says "$L" "autopilot: removing non-voter n5@" "leaving 3 voters"

vfs_done
