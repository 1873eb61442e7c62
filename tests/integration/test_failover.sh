#!/usr/bin/env bash
# Failover without waiting out the election timeout. The election timeout
# here is 10 s, so Raft alone cannot elect anyone in less than 10 s after the
# leader goes quiet. When the leader's process dies, its cluster port refuses
# connections at once, and the followers use that to start the election at
# once: a new leader must be serving within 5 s. A paused leader (SIGSTOP:
# the process lives, its port still accepts) must not cause an election.
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=10000 VFS_HEARTBEAT_MS=100

for n in n1 n2 n3; do
	vfs_start "$n"
	vfs_mount "$n" "$VFS_TMP/m-$n" || { echo "Bail out! cannot mount $n"; exit 1; }
done
declare -A M=([n1]=$VFS_TMP/m-n1 [n2]=$VFS_TMP/m-n2 [n3]=$VFS_TMP/m-n3)

ok "init n1" vfs_init "${M[n1]}"
ok "unseal n1" vfs_unseal "${M[n1]}"
ok "n1 leads" vfs_wait_until 10 grep -qx 'ha_mode: active' "${M[n1]}/.vault/status"
for n in n2 n3; do
	ok "$n joins" bash -c "echo $(vfs_cluster_addr n1) > '${M[$n]}/.vault/join'"
	ok "$n unseals" vfs_unseal "${M[$n]}"
done
ok "three voters" vfs_wait_until 20 vfs_three_voters "${M[n1]}"
ok "a secret written before the faults" bash -c "echo before > '${M[n1]}/s1'"

# The leader named by the node behind mount MOUNT (empty if none).
leader_seen_by() { vfs_status_field "$1" leader; }
# new_leader_among OLD NAME...: every listed node names the same leader,
# and it is not OLD.
new_leader_among() {
	local old=$1 n l first=
	shift
	for n in "$@"; do
		l=$(leader_seen_by "${M[$n]}")
		[ -n "$l" ] && [ "$l" != "$old" ] || return 1
		[ -z "$first" ] && first=$l
		[ "$l" = "$first" ] || return 1
	done
}
others() { local n; for n in n1 n2 n3; do [ "$n" != "$1" ] && echo "$n"; done; }

# ---- a paused leader is not replaced -----------------------------------
L=$(leader_seen_by "${M[n2]}")
T0=$(vfs_status_field "${M[n2]}" term)
ok "the followers agree on the leader ($L, term $T0)" \
	bash -c "[ \"\$(sed -n 's/^leader: //p' '${M[n3]}/.vault/status')\" = '$L' ]"
kill -STOP "${VFS_PID[$L]}"
# 3 s paused: well past a heartbeat, well short of the 10 s timeout. The
# process is alive and its port accepts connections, so nothing may start an
# election early.
sleep 3
unchanged=1
for n in $(others "$L"); do
	[ "$(vfs_status_field "${M[$n]}" term)" = "$T0" ] || unchanged=0
	[ "$(leader_seen_by "${M[$n]}")" = "$L" ] || unchanged=0
done
kill -CONT "${VFS_PID[$L]}"
ok "a leader paused for 3 s keeps its term and its followers" test "$unchanged" = 1
ok "it serves again after SIGCONT" vfs_wait_until 10 bash -c "echo resumed > '${M[$L]}/s2'"

# ---- a killed leader is replaced at once -------------------------------
mapfile -t S < <(others "$L")
kill -KILL "${VFS_PID[$L]}"
vfs_wait_gone "${VFS_PID[$L]}" 10
unset "VFS_PID[$L]"
ok "the survivors elect a new leader within 5 s of SIGKILL (timeout 10 s)" \
	vfs_wait_until 5 new_leader_among "$L" "${S[@]}"
ok "a write through each survivor succeeds" \
	bash -c "echo after-kill > '${M[${S[0]}]}/s3' && echo after-kill2 > '${M[${S[1]}]}/s4'"
ok "reads agree on both survivors" \
	bash -c "[ \"\$(cat '${M[${S[0]}]}/s4')\" = after-kill2 ] && [ \"\$(cat '${M[${S[1]}]}/s3')\" = after-kill ]"
ok "a survivor logged why it did not wait" \
	bash -c "grep -q 'leader .* is gone (its cluster port refuses connections)' '$VFS_TMP/${S[0]}.log' '$VFS_TMP/${S[1]}.log'"

ok "the killed node restarts" vfs_start "$L"
ok "and unseals" vfs_unseal "${M[$L]}"
ok "it catches up as a follower" vfs_wait_until 20 bash -c "[ \"\$(cat '${M[$L]}/s4' 2>/dev/null)\" = after-kill2 ]"
ok "three voters again" vfs_wait_until 20 vfs_three_voters "${M[$L]}"

# ---- a leader stopped with SIGTERM is replaced at once too -------------
L2=$(leader_seen_by "${M[$L]}")
mapfile -t S < <(others "$L2")
vfs_stop "$L2"
ok "after SIGTERM of the leader, a new one within 5 s" \
	vfs_wait_until 5 new_leader_among "$L2" "${S[@]}"
ok "and it serves writes" bash -c "echo after-term > '${M[${S[0]}]}/s5'"
ok "the stopped node restarts" vfs_start "$L2"
ok "and unseals" vfs_unseal "${M[$L2]}"
ok "it catches up" vfs_wait_until 20 bash -c "[ \"\$(cat '${M[$L2]}/s5' 2>/dev/null)\" = after-term ]"

vfs_done
