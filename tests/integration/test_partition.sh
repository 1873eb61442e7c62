#!/usr/bin/env bash
# Real network partitions: three nodes, each vaultfsd in its own network
# namespace (10.250.0.1-3 on a bridge in a namespace of its own, all created
# here and deleted at exit), mounted from the root namespace through their
# Unix sockets. Cutting a node's link is a partition.
#
# 1. A follower is cut off: the majority keeps writing; reads on the cut-off
#    follower fail with EAGAIN within request_timeout_ms instead of serving
#    stale data; healed, it catches up (through a snapshot install).
# 2. The leader is cut off: the other two elect a leader and keep writing;
#    the old leader can neither write (a write through a file opened before
#    the cut, and a create) nor read stale data; healed, it follows the new
#    leader, catches up, and the write it refused never shows up.
# 3. Every node's own copy (local_reads mounts) holds exactly the values the
#    cluster acknowledged, and so does a linearizable read of the whole tree.
. "$(dirname "$0")/lib.sh"

# A small snapshot threshold so a node cut off during ~50 writes can only
# catch up by snapshot; fast elections; a short request timeout.
export VFS_SNAPSHOT_THRESHOLD=32 VFS_TRAILING_LOGS=8
export VFS_ELECTION_MS=${VFS_ELECTION_MS:-600} VFS_HEARTBEAT_MS=${VFS_HEARTBEAT_MS:-60}
export VFS_REQUEST_TIMEOUT_MS=${VFS_REQUEST_TIMEOUT_MS:-3000}
# An operation that cannot reach a leader must fail within the request
# timeout, twice over: for a name it already knows, the kernel first
# revalidates the cached entry (one LOOKUP, which times out) and then looks
# it up afresh (a second one). The slack covers a sanitizer build's FUSE
# round trips.
LIMIT_MS=$((2 * VFS_REQUEST_TIMEOUT_MS + 1500))
NWRITES=50
EAGAIN_MSG="Resource temporarily unavailable"

if [ "$(id -u)" -ne 0 ] || ! vfs_netns_setup 3; then
	echo "1..0 # SKIP network namespaces unavailable"
	exit 0
fi
echo "# namespaces: $VFS_NETNS_BR ${VFS_NETNS[*]}"

declare -A MNT=() LMNT=() NSOF=()
for i in 1 2 3; do
	n=n$i
	NSOF[$n]=${VFS_NETNS[$i]}
	MNT[$n]=$VFS_TMP/m-$n
	LMNT[$n]=$VFS_TMP/l-$n
	vfs_config_at "$n" "http://10.250.0.$i:8201"
	vfs_start_in "${NSOF[$n]}" "$n" || { echo "Bail out! cannot start $n"; exit 1; }
	vfs_mount "$n" "${MNT[$n]}" || { echo "Bail out! cannot mount $n"; exit 1; }
	# The node's own copy, read without asking the leader.
	vfs_mount "$n" "${LMNT[$n]}" local_reads || { echo "Bail out! cannot mount $n"; exit 1; }
done
for n in n1 n2 n3; do
	ok "$n's daemon runs in ${NSOF[$n]} (pid ${VFS_PID[$n]} is vaultfsd)" vfs_in_netns "$n" "${NSOF[$n]}"
done

# Every value the cluster acknowledged, by path under the mount.
declare -A EXPECT=()
# put MNT PATH VALUE: writes a secret and records it once acknowledged.
put() {
	printf '%s' "$3" > "$1/$2" || return 1
	EXPECT[$2]=$3
}
# put_many MNT PREFIX: NWRITES secrets PREFIX/kI = PREFIX-value-I.
put_many() {
	local i
	mkdir -p "$1/$2" || return 1
	for i in $(seq 1 "$NWRITES"); do
		put "$1" "$2/k$i" "$2-value-$i" || { echo "# write $2/k$i failed"; return 1; }
	done
}
# read_values MNT PATH...: "path=value" for each PATH, sorted; fails if any
# read fails. Reads run 8 at a time: a follower batches concurrent
# linearizable reads into one round, and serial reads on a follower cost a
# round (about a heartbeat) each.
read_values() {
	local m=$1
	shift
	[ "$#" -gt 0 ] || return 0
	printf '%s\0' "$@" | (cd "$m" && xargs -0 -P 8 -n 8 sh -c \
		'for f; do v=$(cat "$f") || exit 255; printf "%s=%s\n" "$f" "$v"; done' sh) | LC_ALL=C sort
	[ "${PIPESTATUS[1]}" -eq 0 ]
}
# has_all MNT PREFIX: every PREFIX/kI reads back PREFIX-value-I.
has_all() {
	local i got want paths=()
	for i in $(seq 1 "$NWRITES"); do paths+=("$2/k$i"); done
	got=$(read_values "$1" "${paths[@]}") || { echo "# a read failed on $1"; return 1; }
	want=$(for i in $(seq 1 "$NWRITES"); do echo "$2/k$i=$2-value-$i"; done | LC_ALL=C sort)
	[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got") | sed 's/^/# /' | head; return 1; }
}
reads_as() { [ "$(cat "$1/$2" 2>/dev/null)" = "$3" ]; }
# read_refused MNT PATH: a read must fail with EAGAIN within LIMIT_MS; a
# value or ENOENT would be stale data served silently.
read_refused() {
	local out t0 ms
	t0=$(date +%s%N)
	if out=$(cat "$1/$2" 2>&1); then
		echo "# STALE READ: $1/$2 returned '$out' (latest value: '${EXPECT[$2]:-<none>}')"
		return 1
	fi
	ms=$((($(date +%s%N) - t0) / 1000000))
	echo "# cat $2 failed after $ms ms: $out"
	[[ "$out" == *"$EAGAIN_MSG"* ]] || { echo "# expected EAGAIN"; return 1; }
	[ "$ms" -le "$LIMIT_MS" ] || { echo "# slower than $LIMIT_MS ms"; return 1; }
}
# tree_dump MNT: "path=value" for every secret, sorted; fails on any error.
tree_dump() {
	local list=()
	mapfile -d '' list < <(cd "$1" && find . -path ./.vault -prune -o -type f -printf '%P\0')
	[ "${#list[@]}" -gt 0 ] || return 1
	read_values "$1" "${list[@]}"
}
expected_dump() {
	local k
	for k in "${!EXPECT[@]}"; do printf '%s=%s\n' "$k" "${EXPECT[$k]}"; done | LC_ALL=C sort
}
holds_exactly_expected() {
	local got
	got=$(tree_dump "$1") || return 1
	[ "$got" = "$(expected_dump)" ]
}
# converges SECONDS MNT: within SECONDS (0: at once) MNT holds exactly the
# acknowledged values; otherwise shows the difference.
converges() {
	vfs_wait_until "$1" holds_exactly_expected "$2" && return 0
	diff <(expected_dump) <(tree_dump "$2") | sed 's/^/# /' | head -n 20
	return 1
}
leader_of() { vfs_status_field "$1" leader; }
# stable_leader: all three nodes name the same leader and list three voters.
stable_leader() {
	local l1 l2 l3
	l1=$(leader_of "${MNT[n1]}") l2=$(leader_of "${MNT[n2]}") l3=$(leader_of "${MNT[n3]}")
	[ -n "$l1" ] && [ "$l1" = "$l2" ] && [ "$l2" = "$l3" ] && vfs_three_voters "${MNT[$l1]}"
}
# The last Raft index a node holds, and the first entry still in its log.
last_index() {
	vfs_raft_sql "$1" "SELECT max((SELECT coalesce(max(idx), 0) FROM entries),
		(SELECT coalesce(max(idx), 0) FROM snapshots))"
}
first_entry() { vfs_raft_sql "$1" "SELECT coalesce(min(idx), 0) FROM entries"; }
# needs_snapshot LEADER BEHIND LAST: the leader's log starts after LAST + 1,
# the last index BEHIND held: it can only catch up by a snapshot install.
needs_snapshot() {
	local first
	first=$(first_entry "$1") || return 1
	echo "# $2 holds up to index $3; $1's log starts at $first"
	[ "$first" -gt $(($3 + 1)) ]
}
HAVE_SQLITE=0
command -v sqlite3 >/dev/null 2>&1 && HAVE_SQLITE=1
ok_needs_snapshot() {
	if [ "$HAVE_SQLITE" -eq 1 ]; then
		ok "$1" needs_snapshot "$2" "$3" "$4"
	else
		VFS_TESTS=$((VFS_TESTS + 1))
		echo "ok $VFS_TESTS - $1 # SKIP no sqlite3 shell"
	fi
}

M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}
ok "init n1" vfs_init "$M1"
ok "unseal n1" vfs_unseal "$M1"
ok "n1 leads a one-node cluster" vfs_wait_until 10 grep -qx 'ha_mode: active' "$M1/.vault/status"
ok "n2 joins via http://10.250.0.1:8201 (across the bridge)" \
	bash -c "echo http://10.250.0.1:8201 > '$M2/.vault/join'"
ok "unseal n2" vfs_unseal "$M2"
ok "n3 joins via http://10.250.0.1:8201" bash -c "echo http://10.250.0.1:8201 > '$M3/.vault/join'"
ok "unseal n3" vfs_unseal "$M3"
ok "peers lists three voters and one leader" vfs_wait_until 20 vfs_three_voters "$M1"
ok "all three nodes name the same leader" vfs_wait_until 10 stable_leader

L=$(leader_of "$M1")
FOLLOWERS=()
for n in n1 n2 n3; do [ "$n" != "$L" ] && FOLLOWERS+=("$n"); done
F=${FOLLOWERS[0]} O=${FOLLOWERS[1]}
ML=${MNT[$L]} MF=${MNT[$F]} MO=${MNT[$O]}
echo "# leader $L; partitioning follower $F"

write_base() { mkdir -p "$ML/secret" && put "$ML" secret/base before-partition; }
ok "write a secret on the leader" write_base
ok "it reads back on the follower $F" reads_as "$MF" secret/base before-partition
F_LAST=$( [ "$HAVE_SQLITE" -eq 1 ] && last_index "$F" )

# ---- 1. partition a follower ----
ok "partition follower $F (eth0 down in ${NSOF[$F]})" \
	bash -c "$(declare -f vfs_netns_link vfs_netns_link_is); vfs_netns_link '${NSOF[$F]}' down && vfs_netns_link_is '${NSOF[$F]}' DOWN"
ok "the majority overwrites secret/base" put "$ML" secret/base during-partition-1
ok "the majority accepts $NWRITES writes on the leader $L" put_many "$ML" p1
ok "and $O, the connected follower, reads them" has_all "$MO" p1
ok "a read of an overwritten secret on $F fails with EAGAIN, not the stale value" read_refused "$MF" secret/base
ok "a read of a secret created meanwhile on $F fails with EAGAIN, not ENOENT" read_refused "$MF" p1/k1
ok "a write on $F fails with EAGAIN within the request timeout" \
	vfs_fails_within "$LIMIT_MS" "$EAGAIN_MSG" bash -c "printf x > '$MF/secret/from-cut-off-follower'"
ok_needs_snapshot "the leader's log has moved past what $F holds (catch-up needs a snapshot)" "$L" "$F" "$F_LAST"
ok "heal: $F's link is up again" \
	bash -c "$(declare -f vfs_netns_link vfs_netns_link_is); vfs_netns_link '${NSOF[$F]}' up && vfs_netns_link_is '${NSOF[$F]}' UP"
T0=$SECONDS
ok "$F catches up: the last secret written during the partition reads back" \
	vfs_wait_until 30 reads_as "$MF" p1/k$NWRITES "p1-value-$NWRITES"
echo "# caught up in about $((SECONDS - T0)) s"
ok "every secret written during the partition reads back correctly on $F" has_all "$MF" p1
ok "$F reads the overwritten secret's new value" reads_as "$MF" secret/base during-partition-1
ok "$F's own copy (local_reads) has every secret" vfs_wait_until 10 has_all "${LMNT[$F]}" p1
ok "the write refused on $F never shows up" bash -c "! test -e '$ML/secret/from-cut-off-follower'"

# ---- 2. partition the leader ----
ok "the cluster settles on one leader with three voters" vfs_wait_until 20 stable_leader
L=$(leader_of "$M1")
OTHERS=()
for n in n1 n2 n3; do [ "$n" != "$L" ] && OTHERS+=("$n"); done
A=${OTHERS[0]} B=${OTHERS[1]}
ML=${MNT[$L]} MA=${MNT[$A]} MB=${MNT[$B]}
echo "# leader $L; partitioning it"
ok "write secret/held on the leader" put "$ML" secret/held held-before

# A writer that opens secret/held on the leader before the partition and
# writes and closes it (the commit) once told to, after the cut.
HELD_OUT=$VFS_TMP/held.out HELD_GO=$VFS_TMP/held.go
perl -MPOSIX -e '
	my ($path, $go, $val) = @ARGV;
	my $fd = POSIX::open($path, O_WRONLY);
	defined $fd or do { print "open: $!\n"; exit 1 };
	print "opened\n";
	STDOUT->flush;
	select(undef, undef, undef, 0.02) until -e $go;
	POSIX::write($fd, $val, length $val) == length $val or do { print "write: $!\n"; exit 1 };
	my $r = POSIX::close($fd);
	print defined $r ? "closed ok\n" : "close: $!\n";
	' "$ML/secret/held" "$HELD_GO" held-by-partitioned-leader > "$HELD_OUT" 2>&1 &
HELD_PID=$!
ok "a file on the leader is opened for writing before the partition" \
	vfs_wait_until 10 grep -qx opened "$HELD_OUT"
L_LAST=$( [ "$HAVE_SQLITE" -eq 1 ] && last_index "$L" )

ok "partition the leader $L (eth0 down in ${NSOF[$L]})" \
	bash -c "$(declare -f vfs_netns_link vfs_netns_link_is); vfs_netns_link '${NSOF[$L]}' down && vfs_netns_link_is '${NSOF[$L]}' DOWN"
held_write_refused() {
	local t0 ms
	t0=$(date +%s%N)
	touch "$HELD_GO"
	vfs_wait_gone "$HELD_PID" $((LIMIT_MS / 1000 + 10)) || { echo "# the writer hangs"; return 1; }
	ms=$((($(date +%s%N) - t0) / 1000000))
	sed 's/^/# writer: /' "$HELD_OUT"
	echo "# commit answered after $ms ms"
	grep -qx "close: $EAGAIN_MSG" "$HELD_OUT" && [ "$ms" -le "$LIMIT_MS" ]
}
ok "on the cut-off leader, committing a write (close) fails with EAGAIN within the timeout" held_write_refused
new_leader_elected() {
	local la lb
	la=$(leader_of "$MA") lb=$(leader_of "$MB")
	[ -n "$la" ] && [ "$la" != "$L" ] && [ "$la" = "$lb" ]
}
ok "$A and $B elect a new leader among themselves" vfs_wait_until 15 new_leader_elected
L2=$(leader_of "$MA")
echo "# new leader $L2"
ok "the new leader's status says active" grep -qx 'ha_mode: active' "${MNT[$L2]}/.vault/status"
F2=$A
[ "$F2" = "$L2" ] && F2=$B
ok "the majority accepts $NWRITES writes on the new leader $L2" put_many "${MNT[$L2]}" p2
ok "and a write on $F2 (forwarded to $L2) overwrites secret/base" put "${MNT[$F2]}" secret/base during-partition-2
ok "$F2 reads every secret written on $L2" has_all "${MNT[$F2]}" p2
ok "a create on the old leader fails with EAGAIN within the timeout" \
	vfs_fails_within "$LIMIT_MS" "$EAGAIN_MSG" bash -c "printf x > '$ML/secret/from-old-leader'"
ok "a read of an overwritten secret on the old leader fails with EAGAIN, not the stale value" \
	read_refused "$ML" secret/base
ok "a read of a secret created meanwhile on the old leader fails with EAGAIN, not ENOENT" \
	read_refused "$ML" p2/k1
ok "the cut-off old leader steps down (its status, read through local_reads, says standby)" \
	vfs_wait_until 10 grep -qx 'ha_mode: standby' "${LMNT[$L]}/.vault/status"
# .vault/status is served by the daemon locally, but with attribute timeouts
# of 0 and default_permissions the kernel first asks for the mount root's
# attributes, a linearizable GETATTR that needs a leader: without one the
# status file of a cut-off node cannot be read through its default mount.
status_readable() {
	local out t0 ms
	t0=$(date +%s%N)
	out=$(cat "$1/.vault/status" 2>&1)
	local rv=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$rv" -eq 0 ] || echo "# cat .vault/status failed after $ms ms: $out"
	[ "$rv" -eq 0 ]
}
ok "the cut-off old leader's .vault/status can be read through its default mount" status_readable "$ML"
ok_needs_snapshot "the new leader's log has moved past what $L holds (catch-up needs a snapshot)" "$L2" "$L" "$L_LAST"
ok "heal: $L's link is up again" \
	bash -c "$(declare -f vfs_netns_link vfs_netns_link_is); vfs_netns_link '${NSOF[$L]}' up && vfs_netns_link_is '${NSOF[$L]}' UP"
T0=$SECONDS
ok "the old leader $L catches up: the last secret written during the partition reads back" \
	vfs_wait_until 30 reads_as "$ML" p2/k$NWRITES "p2-value-$NWRITES"
echo "# caught up in about $((SECONDS - T0)) s"
ok "every secret written during the partition reads back correctly on $L" has_all "$ML" p2
old_leader_follows() {
	local l
	l=$(leader_of "$ML")
	[ -n "$l" ] && [ "$l" != "$L" ] && grep -qx 'ha_mode: standby' "$ML/.vault/status"
}
ok "$L is a follower that names another leader" vfs_wait_until 10 old_leader_follows
ok "all three nodes agree on the leader again" vfs_wait_until 20 stable_leader
ok "the write the old leader refused never shows up (secret/held keeps its value)" \
	reads_as "$MA" secret/held held-before
ok "nor does the refused create" bash -c "! test -e '$MA/secret/from-old-leader'"

# ---- 3. every node holds exactly what was acknowledged ----
for n in n1 n2 n3; do
	ok "$n's own copy (local_reads) holds exactly the acknowledged values" converges 20 "${LMNT[$n]}"
done
# Linearizable reads cost a round each on a follower (the followers' mounts
# were checked key by key above), so the whole tree is read on the leader.
L3=$(leader_of "$M1")
ok "the leader $L3's linearizable mount reads exactly the acknowledged values" converges 0 "${MNT[$L3]}"
ok "a write after healing is read on every node" bash -c "printf final > '$ML/secret/final' &&
	for m in '$M1' '$M2' '$M3'; do test \"\$(cat \$m/secret/final)\" = final || exit 1; done"
vfs_done
