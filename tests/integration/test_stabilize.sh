#!/usr/bin/env bash
# Autopilot's server_stabilization_time ("4s" here): a joining node is a
# non-voter until the leader has seen it caught up and heard from it for
# 4 s without a break. A joiner killed during that time never becomes a
# voter; once back it does, and a leader change in the middle of its
# stabilization does not keep it from it: the new leader promotes it after
# watching it for the whole time itself.
. "$(dirname "$0")/lib.sh"

export VFS_STABILIZATION=4s
declare -A MNT
vfs_start_mount n1 n2 n3
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}
N1_ADDR=$(vfs_cluster_addr n1)

# voter_of MOUNT NODE: NODE's Voter column in MOUNT's peers ("" if absent).
voter_of() { awk -v n="$2" 'NR > 1 && $1 == n { print $5 }' "$1/.vault/peers" 2>/dev/null; }
is_voter() { [ "$(voter_of "$1" "$2")" = true ]; }
is_non_voter() { [ "$(voter_of "$1" "$2")" = false ]; }
now() { echo "${EPOCHREALTIME/./}"; } # microseconds
# at_least_s SINCE_US SECONDS: at least SECONDS have passed since SINCE_US.
at_least_s() {
	local d=$(($(now) - $1))
	echo "# $((d / 1000)) ms"
	[ "$d" -ge $(($2 * 1000000)) ]
}
leader_mount() { echo "${MNT[$(vfs_status_field "$M1" leader)]}"; }

init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
ok "init and unseal n1" init_unseal
join() { echo "$N1_ADDR" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
T2=$(now)
ok "n2 joins (the unseal returns once it serves)" join n2
ok "right after, n2 is a non-voter (peers: Voter false)" is_non_voter "$M1" n2
ok "and serves: a write through n2 reads back on n1" \
	bash -c "printf a > '$M2/a' && test \"\$(cat '$M1/a')\" = a"
ok "n2 becomes a voter" vfs_wait_until 30 is_voter "$M1" n2
ok "no sooner than 4 s after it began to join" at_least_s "$T2" 4
ok "n1's log says why" vfs_log_says n1 "autopilot: making n2@" "caught up and heard from for"

# A joiner that dies while it stabilizes stays a non-voter.
ok "n3 joins" join n3
ok "n3 is a non-voter" is_non_voter "$M1" n3
kill_n3() { vfs_umount "$M3"; kill -KILL "${VFS_PID[n3]}" && vfs_wait_gone "${VFS_PID[n3]}" 10 && unset "VFS_PID[n3]"; }
ok "n3 is killed within its 4 s" kill_n3
stays_non_voter() { ! vfs_wait_until 8 is_voter "$M1" n3 && is_non_voter "$M1" n3; }
ok "8 s later it is still a non-voter" stays_non_voter
two_voters() { [ "$(vfs_voter_count "$M1")" -eq 2 ]; }
ok "two voters" two_voters
ok "writes go on with the two voters" bash -c "printf b > '$M1/b' && test \"\$(cat '$M2/b')\" = b"

# Back, it stabilizes again; the leader changes meanwhile.
restart_n3() { vfs_start n3 && vfs_mount n3 "$M3" && vfs_unseal "$M3"; }
ok "n3 is started again and unsealed" restart_n3
OLD_LEADER=$(vfs_status_field "$M1" leader)
ok "a step-down right away moves leadership" bash -c "echo 1 > '$M1/.vault/step-down'"
T3=$(now)
new_leader() { local l; l=$(vfs_status_field "$M1" leader); [ -n "$l" ] && [ "$l" != "$OLD_LEADER" ]; }
ok "to the other voter" vfs_wait_until 10 new_leader
NEW_LEADER=$(vfs_status_field "$M1" leader)
echo "# leader $OLD_LEADER -> $NEW_LEADER"
ok "n3 is still a non-voter under the new leader" is_non_voter "$(leader_mount)" n3
ok "the new leader makes n3 a voter" vfs_wait_until 30 is_voter "$(leader_mount)" n3
# The new leader watched it for 4 s from its own start, which is at most
# the hand-over's few ms before the step-down returned.
ok "about 4 s after the leader changed, not sooner" at_least_s "$T3" 3
ok "the new leader's log says so" vfs_log_says "$NEW_LEADER" "autopilot: making n3@" "caught up"
everywhere() { vfs_three_voters "$M1" && vfs_three_voters "$M2" && vfs_three_voters "$M3"; }
ok "three voters and one leader on every node" vfs_wait_until 10 everywhere
ok "a write through n3 reads back on n2" bash -c "printf c > '$M3/c' && test \"\$(cat '$M2/c')\" = c"

vfs_done
