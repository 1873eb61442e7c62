#!/usr/bin/env bash
# Crash safety of the Raft log and state. Every daemon runs with the
# crash-simulating SQLite VFS (VAULTFS_CRASHVFS=1, failpoint builds only),
# so a SIGKILL loses exactly what a power loss would: every database write
# since the last sync. Then:
#  a. one node, killed at a random moment of a write storm, 5 times over;
#  b. three nodes: a follower, then the leader, then all three at once are
#     killed during a write storm; the restarted nodes load their log and
#     catch up;
#  c. a torn WAL tail loads (SQLite drops the torn frame); a checksum-failing
#     row or a truncated raft.db makes vaultfsd refuse to start with a message
#     that says which file, what is wrong and what to do, and doing that
#     brings the node back.
# After every crash, every acknowledged write must be there: the last
# acknowledged value of each file, or a later attempt of the same writer.
# Acknowledged means close() returned 0 (dd checks it; bash's own `>` does
# not). What was acknowledged is kept in this shell's memory only.
. "$(dirname "$0")/lib.sh"

if [ "${VAULTFS_TEST_FAILPOINTS:-0}" != 1 ]; then
	echo "1..0 # SKIP vaultfsd built without -Dfailpoints=true (no crash-simulating VFS)"
	exit 0
fi

SEED=${VFS_CRASH_SEED:-$(((RANDOM << 15) | RANDOM))}
RANDOM=$SEED
echo "# seed $SEED (VFS_CRASH_SEED=$SEED repeats these kill times)"
export VAULTFS_CRASHVFS=1
export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60 VFS_REQUEST_TIMEOUT_MS=3000
WRITERS=4
STOP=$VFS_TMP/stop-storm
# Writers of a storm still running when the test ends stop first.
trap 'touch "$STOP" 2>/dev/null; vfs_cleanup' EXIT

# ---- the write storm ----

# storm_writer MNT NAME: writes "NAME-SEQ" to MNT/NAME for SEQ = 1, 2, ...
# until the stop file appears (or the test's directory is gone: the test
# ended early); prints "ack SEQ" once close() returned 0, "fail SEQ"
# otherwise.
storm_writer() {
	local mnt=$1 name=$2 seq=0
	while [ ! -e "$STOP" ] && [ -d "$VFS_TMP" ]; do
		seq=$((seq + 1))
		if printf '%s' "$name-$seq" | dd of="$mnt/$name" status=none 2>/dev/null; then
			echo "ack $seq"
		else
			echo "fail $seq"
			sleep 0.02 # the node is down or electing: do not spin
		fi
	done
}

# Per file written by a storm: the last acknowledged and the last attempted
# sequence number.
declare -A ACKED=() TRIED=()
STORM_FD=() STORM_PID=() STORM_NAME=()

# storm_start MNT TAG: WRITERS concurrent writers on MNT/TAG-w1... .
storm_start() {
	local mnt=$1 tag=$2 i fd
	rm -f "$STOP"
	STORM_FD=() STORM_PID=() STORM_NAME=()
	for i in $(seq 1 "$WRITERS"); do
		exec {fd}< <(storm_writer "$mnt" "$tag-w$i")
		STORM_PID+=("$!")
		STORM_FD+=("$fd")
		STORM_NAME+=("$tag-w$i")
	done
}

# storm_stop: stops the writers and records what they were told.
storm_stop() {
	local j fd name kind seq ack last rc rv=0
	touch "$STOP"
	for j in "${!STORM_FD[@]}"; do
		fd=${STORM_FD[$j]} name=${STORM_NAME[$j]} ack=0 last=0
		# Up to EOF, when the writer is gone; a timeout means it hangs.
		while read -r -t 60 -u "$fd" kind seq; rc=$?; [ "$rc" -eq 0 ]; do
			last=$seq
			[ "$kind" = ack ] && ack=$seq
		done
		if [ "$rc" -gt 128 ]; then
			echo "# writer $name hangs"
			pkill -KILL -P "${STORM_PID[$j]}" 2>/dev/null
			kill -KILL "${STORM_PID[$j]}" 2>/dev/null
			rv=1
		fi
		wait "${STORM_PID[$j]}" 2>/dev/null
		exec {fd}<&-
		ACKED[$name]=$ack
		TRIED[$name]=$last
	done
	return $rv
}

storm_acks() {
	local j n=0
	for j in "${STORM_NAME[@]}"; do n=$((n + ACKED[$j])); done
	echo "$n"
}

# check_file MNT NAME: NAME holds its last acknowledged write or a later
# attempt (missing only if nothing was acknowledged).
check_file() {
	local mnt=$1 name=$2 ack=${ACKED[$2]} last=${TRIED[$2]} v k
	if ! v=$(cat "$mnt/$name" 2>/dev/null); then
		if [ "$ack" -eq 0 ] && [ ! -e "$mnt/$name" ]; then return 0; fi
		echo "# $name: unreadable, but write $ack was acknowledged"
		return 1
	fi
	k=${v#"$name"-}
	if [[ "$v" != "$name-"* ]] || ! [[ "$k" =~ ^[0-9]+$ ]] || [ "$k" -lt "$ack" ] ||
		[ "$k" -gt "$last" ]; then
		echo "# $name: holds a value that is not write $ack..$last of its writer"
		return 1
	fi
}

# check_all MNT PREFIX: every file whose name starts with PREFIX, of every
# storm so far.
check_all() {
	local name files=0 bad=0 acks=0
	for name in "${!ACKED[@]}"; do
		[[ "$name" == "$2"* ]] || continue
		check_file "$1" "$name" || bad=$((bad + 1))
		files=$((files + 1)) acks=$((acks + ACKED[$name]))
	done
	echo "# checked $files files ($acks acknowledged writes) on $1: $bad wrong"
	[ "$files" -gt 0 ] && [ "$bad" -eq 0 ]
}

# random_pause MIN MAX: sleeps a random number of milliseconds (the seed
# decides): the moment of a kill is the point of this test.
random_pause() {
	local ms=$(($1 + RANDOM % ($2 - $1 + 1)))
	echo "# killing after $ms ms"
	sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
}

# storm_running MNT TAG: the storm's writers have acknowledged a write.
storm_running() {
	local i
	for i in $(seq 1 "$WRITERS"); do [ -e "$1/$2-w$i" ] || return 1; done
}

# restart_unseal NAME MNT: starts NAME again and unseals it with the shares
# kept in memory, once its mount has reconnected.
restart_unseal() {
	vfs_start "$1" || return 1
	vfs_wait_until 20 grep -qx 'sealed: true' "$2/.vault/status" || return 1
	vfs_unseal "$2"
}

status_of() { vfs_status_field "$1" "$2"; }

# ---- a. one node, killed during a storm, five times ----

MS=$VFS_TMP/m-solo
vfs_start solo
vfs_mount solo "$MS" || { echo "Bail out! cannot mount solo"; exit 1; }
ok "solo: init" vfs_init "$MS"
ok "solo: unseal" vfs_unseal "$MS"
ok "solo: the daemon uses the crash-simulating VFS" \
	grep -q "crash-simulating SQLite VFS on" "$VFS_TMP/solo.log"
for round in 1 2 3 4 5; do
	storm_start "$MS" "solo$round"
	vfs_wait_until 20 storm_running "$MS" "solo$round"
	random_pause 100 1500
	vfs_stop solo KILL
	storm_stop
	echo "# round $round: $(storm_acks) writes acknowledged before the kill"
	ok "solo round $round: writes were acknowledged before the SIGKILL" \
		test "$(storm_acks)" -gt 0
	ok "solo round $round: restarted, its log loads and it unseals" restart_unseal solo "$MS"
	ok "solo round $round: every acknowledged write of every round is there" check_all "$MS" solo
done
ok "solo: the log never reported corruption" bash -c "! grep -qi corrupt '$VFS_TMP/solo.log'"

# ---- b. three nodes ----

declare -A MNT=() LOCAL=()
for n in c1 c2 c3; do
	vfs_start "$n"
	MNT[$n]=$VFS_TMP/m-$n LOCAL[$n]=$VFS_TMP/l-$n
	vfs_mount "$n" "${MNT[$n]}" || { echo "Bail out! cannot mount $n"; exit 1; }
	# -o local_reads reads the node's own copy: what it really holds.
	vfs_mount "$n" "${LOCAL[$n]}" local_reads || { echo "Bail out! cannot mount $n"; exit 1; }
done

join_unseal() {
	echo "$(vfs_cluster_addr "$2")" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"
}
# leader_seen_by NODE: the leader NODE knows of, if any.
leader_seen_by() { status_of "${MNT[$1]}" leader; }
# new_leader NODE OLD: NODE knows a leader other than OLD.
new_leader() {
	local l
	l=$(leader_seen_by "$1")
	[ -n "$l" ] && [ "$l" != "$2" ]
}
others() {
	local n
	for n in c1 c2 c3; do [ "$n" != "$1" ] && echo "$n"; done
}
# caught_up NODE LEADER: NODE applied everything LEADER has committed.
caught_up() {
	local c a
	c=$(status_of "${MNT[$2]}" commit_index) && a=$(status_of "${MNT[$1]}" applied_index) &&
		[ -n "$c" ] && [ -n "$a" ] && [ "$a" -ge "$c" ]
}
# restarted_node_is_whole NODE LEADER LABEL: after NODE was restarted it
# catches up with LEADER and its own copy holds every acknowledged write.
restarted_node_is_whole() {
	ok "$3: $1 catches up (applied_index reaches $2's commit_index)" \
		vfs_wait_until 30 caught_up "$1" "$2"
	ok "$3: every acknowledged write is in $1's own copy" check_all "${LOCAL[$1]}" c-
}

ok "cluster: init c1" vfs_init "${MNT[c1]}"
ok "cluster: unseal c1" vfs_unseal "${MNT[c1]}"
ok "cluster: c2 joins" join_unseal c2 c1
ok "cluster: c3 joins" join_unseal c3 c1
ok "cluster: three voters, one leader" vfs_wait_until 20 vfs_three_voters "${MNT[c1]}"

# b1. A follower loses power during a storm sent through the other follower.
L=$(leader_seen_by c1)
read -r F1 F2 <<<"$(others "$L" | xargs)"
echo "# leader $L; $F1 is killed, the storm goes through $F2"
storm_start "${MNT[$F2]}" c-folkill
vfs_wait_until 20 storm_running "${MNT[$F2]}" c-folkill
random_pause 100 1000
vfs_stop "$F1" KILL
random_pause 200 800 # the storm goes on without it
storm_stop
ok "follower down: writes were acknowledged" test "$(storm_acks)" -gt 0
ok "follower down: $F1 restarts, loads its log and unseals" restart_unseal "$F1" "${MNT[$F1]}"
restarted_node_is_whole "$F1" "$L" "follower down"

# b2. The leader loses power during a storm sent through a follower.
L=$(leader_seen_by c1)
F=$(others "$L" | head -n 1)
echo "# leader $L is killed, the storm goes through $F"
storm_start "${MNT[$F]}" c-leadkill
vfs_wait_until 20 storm_running "${MNT[$F]}" c-leadkill
random_pause 100 1000
vfs_stop "$L" KILL
ok "leader down: another leader is elected" vfs_wait_until 20 new_leader "$F" "$L"
random_pause 200 800
storm_stop
ok "leader down: writes were acknowledged" test "$(storm_acks)" -gt 0
ok "leader down: $L restarts, loads its log and unseals" restart_unseal "$L" "${MNT[$L]}"
restarted_node_is_whole "$L" "$(leader_seen_by "$F")" "leader down"
ok "leader down: every acknowledged write is served through $F" check_all "${MNT[$F]}" c-

# b3. The whole cluster loses power at once.
F=$(others "$(leader_seen_by c1)" | head -n 1)
storm_start "${MNT[$F]}" c-allkill
vfs_wait_until 20 storm_running "${MNT[$F]}" c-allkill
random_pause 100 1500
kill -KILL "${VFS_PID[c1]}" "${VFS_PID[c2]}" "${VFS_PID[c3]}"
for n in c1 c2 c3; do vfs_stop "$n" KILL; done
storm_stop
ok "all down: writes were acknowledged" test "$(storm_acks)" -gt 0
unseal_all() {
	local n p pids=() rv=0
	for n in c1 c2 c3; do
		(vfs_wait_until 20 grep -qx 'sealed: true' "${MNT[$n]}/.vault/status" &&
			vfs_unseal "${MNT[$n]}") &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p" || rv=1; done
	return $rv
}
for n in c1 c2 c3; do vfs_start "$n"; done
ok "all down: all three restart, load their logs and unseal" unseal_all
ok "all down: a leader is elected" vfs_wait_until 20 new_leader c1 ""
L=$(leader_seen_by c1)
ok "all down: every acknowledged write is served" check_all "${MNT[c1]}" c-
for n in c1 c2 c3; do
	[ "$n" = "$L" ] && continue
	restarted_node_is_whole "$n" "$L" "all down"
done

# ---- c. torn and corrupt logs ----

# write_seq MNT NAME COUNT: COUNT acknowledged writes, one after the other.
write_seq() {
	local seq
	ACKED[$2]=0 TRIED[$2]=0
	for seq in $(seq 1 "$3"); do
		TRIED[$2]=$seq
		printf '%s' "$2-$seq" | dd of="$1/$2" status=none || return 1
		ACKED[$2]=$seq
	done
}

# WAL layout: a 32-byte header (page size at 8, salts at 16 and 20), then
# frames of a 24-byte header (salts at 8 and 12) and a page. The frames of
# the current WAL generation come first and carry the header's salts.
be32() { od -An -tu4 --endian=big -j "$2" -N 4 "$1" | tr -d ' '; }
wal_frame_current() { # WAL FRAMESIZE I SALT1 SALT2
	local off=$((32 + $3 * $2))
	[ "$(be32 "$1" $((off + 8)))" = "$4" ] && [ "$(be32 "$1" $((off + 12)))" = "$5" ]
}
# tear_last_frame WAL: truncates WAL in the middle of its last current
# frame, as a write torn by a power loss would leave it.
tear_last_frame() {
	local wal=$1 frame s1 s2 lo hi mid
	frame=$(($(be32 "$wal" 8) + 24)) s1=$(be32 "$wal" 16) s2=$(be32 "$wal" 20)
	lo=0 hi=$((($(stat -c %s "$wal") - 32) / frame))
	while [ "$lo" -lt "$hi" ]; do # lo = number of current frames
		mid=$(((lo + hi + 1) / 2))
		if wal_frame_current "$wal" "$frame" $((mid - 1)) "$s1" "$s2"; then lo=$mid; else hi=$((mid - 1)); fi
	done
	[ "$lo" -gt 0 ] || { echo "# no current frame in $wal"; return 1; }
	echo "# tearing frame $lo of $lo (frame size $frame)"
	truncate -s $((32 + (lo - 1) * frame + frame / 2)) "$wal"
}

# refuses_to_start NODE: vaultfsd exits with status 1 before serving.
refuses_to_start() {
	local rc=0
	timeout 60 "$VAULTFSD" -config="$VFS_TMP/$1.hcl" >>"$VFS_TMP/$1.log" 2>&1 || rc=$?
	echo "# vaultfsd $1 exited with status $rc"
	[ "$rc" -eq 1 ]
}

# c1. A follower's WAL ends in a torn frame.
L=$(leader_seen_by c1)
F=$(others "$L" | head -n 1)
ok "torn WAL: writes before the crash" write_seq "${MNT[$L]}" c-torn 20
ok "torn WAL: $F has them" vfs_wait_until 30 caught_up "$F" "$L"
vfs_stop "$F" KILL
ok "torn WAL: $F's last WAL frame is cut in half" tear_last_frame "$(vfs_data "$F")/raft.db-wal"
ok "torn WAL: $F starts, loads its log and unseals" restart_unseal "$F" "${MNT[$F]}"
restarted_node_is_whole "$F" "$L" "torn WAL"
ok "torn WAL: no corruption reported (SQLite drops a torn frame)" \
	bash -c "! grep -qi corrupt '$VFS_TMP/$F.log'"

# c2. A committed row whose checksum fails: refuse, say what to do, do it.
L=$(leader_seen_by c1)
F=$(others "$L" | head -n 1)
vfs_stop "$F" TERM
DB=$(vfs_data "$F")/raft.db
IDX=$(vfs_raft_sql "$F" "SELECT max(idx) FROM entries WHERE data != zeroblob(length(data))")
sqlite3 "$DB" "UPDATE entries SET data = zeroblob(length(data)) WHERE idx = $IDX"
ok "corrupt row: vaultfsd $F refuses to start on entry $IDX" refuses_to_start "$F"
ok "corrupt row: the message names the file, the index and the fix" \
	vfs_log_says "$F" "$DB" "checksum" "index $IDX" "remove-peer" "join"
ok "corrupt row: $F is removed from the cluster, as the message says" \
	bash -c "echo $F > '${MNT[$L]}/.vault/remove-peer'"
mv "$(vfs_data "$F")" "$(vfs_data "$F").damaged"
vfs_start "$F"
ok "corrupt row: with a new data directory $F joins again" join_unseal "$F" "$L"
ok "corrupt row: three voters again" vfs_wait_until 20 vfs_three_voters "${MNT[$L]}"
restarted_node_is_whole "$F" "$L" "corrupt row"

# c3. A truncated raft.db: refused; the file restored, the node comes back.
L=$(leader_seen_by c1)
F=$(others "$L" | tail -n 1)
vfs_stop "$F" TERM
DB=$(vfs_data "$F")/raft.db
cp "$DB" "$VFS_TMP/raft.db.saved"
truncate -s $(($(stat -c %s "$DB") / 2)) "$DB"
ok "truncated raft.db: vaultfsd $F refuses to start" refuses_to_start "$F"
ok "truncated raft.db: the message names the file and the fix" \
	vfs_log_says "$F" "$DB" "malformed" "remove-peer"
mv "$VFS_TMP/raft.db.saved" "$DB"
ok "truncated raft.db: restored, $F starts and unseals" restart_unseal "$F" "${MNT[$F]}"
restarted_node_is_whole "$F" "$L" "truncated raft.db"
vfs_done
