#!/usr/bin/env bash
# Rolling upgrade under writes: a 3-node cluster of the previous release
# (tests/integration/prev_release.sh builds it from its pinned commit, once,
# under the build directory) is upgraded to this build one node at a time:
# stop it, start this build on the same data directory, unseal it, wait
# until it has caught up. Meanwhile a writer writes distinct keys through
# the mount of a node that is not being replaced (as a load balancer that
# drains a node first), retrying a write that fails with EAGAIN (no leader
# for a moment: the stopped node led). At the end every write the writer
# saw acknowledged reads back with its value on every node, the writer saw
# no other error, and the cluster has three voters, all of this build.
# Joins across versions: a node of this build joins through a
# previous-release member while the previous release leads, and is then
# removed (remove-peer, which rotates the keyring). Once every member runs
# this build, the cluster's feature level rises to 2 (node_features.c)
# and a previous-release node can no longer join.
. "$(dirname "$0")/lib.sh"

BUILD_ROOT=$(cd "$(dirname "$VAULTFSD")/../.." && pwd)
NEW_VAULTFSD=$VAULTFSD NEW_MOUNT=$MOUNT_VAULTFS
START=$SECONDS
PREV=$(bash "$(dirname "$0")/prev_release.sh" "$BUILD_ROOT") ||
	{ echo "Bail out! cannot build the previous release"; exit 1; }
echo "# previous release: $PREV (ready after $((SECONDS - START)) s)"
# A node's daemon and mount come from one release (one package): the local
# API between them may change between releases.
PREV_VAULTFSD=$PREV/src/daemon/vaultfsd PREV_MOUNT=$PREV/mount-helper/mount.vaultfs

# The previous release knows no server_stabilization_time: no autopilot block.
export VFS_STABILIZATION=default
declare -A MNT
VAULTFSD=$PREV_VAULTFSD MOUNT_VAULTFS=$PREV_MOUNT vfs_start_mount n1 n2 n3
M1=${MNT[n1]}
init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
ok "previous release: init and unseal n1" init_unseal
join() { echo "$(vfs_cluster_addr n1)" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
ok "previous release: n2 joins" join n2
ok "previous release: n3 joins" join n3
ok "previous release: three voters" vfs_wait_until 20 vfs_three_voters "$M1"
runs() { [ "$(readlink "/proc/${VFS_PID[$1]}/exe")" = "$(readlink -f "$2")" ]; }
ok "they run the previous release's binary" runs n1 "$PREV_VAULTFSD"
mkdir -p "$M1/rolling" || { echo "Bail out! mkdir"; exit 1; }

# The writer: key k<i> gets value v<i>-<pid>, through the mount named in
# $VFS_TMP/target; each acknowledged write (close returned 0) is appended
# to acked, each failure's errno to errors (EAGAIN ones are retried).
cat > "$VFS_TMP/writer.py" <<'EOF'
import errno, os, sys, time
tmp = sys.argv[1]
acked = open(os.path.join(tmp, "acked"), "w")
errors = open(os.path.join(tmp, "errors"), "w")
i = 0
while not os.path.exists(os.path.join(tmp, "stop")):
    i += 1
    key, value = "k%d" % i, "v%d-%d" % (i, os.getpid())
    while True:
        with open(os.path.join(tmp, "target")) as f:
            mnt = f.read().strip()
        try:
            with open(os.path.join(mnt, "rolling", key), "w") as f:
                f.write(value)
            break
        except OSError as e:
            errors.write("%s %s %s\n" % (key, errno.errorcode.get(e.errno, e.errno), mnt))
            errors.flush()
            time.sleep(0.05)
    acked.write("%s %s\n" % (key, value))
    acked.flush()
    time.sleep(0.005)
EOF
# set_target MOUNT: atomically, so that the writer never reads it half written.
set_target() { echo "$1" > "$VFS_TMP/target.new" && mv "$VFS_TMP/target.new" "$VFS_TMP/target"; }
set_target "$M1"
python3 "$VFS_TMP/writer.py" "$VFS_TMP" &
WRITER=$!
acked_count() { wc -l < "$VFS_TMP/acked" 2>/dev/null || echo 0; }
acked_over() { [ "$(acked_count)" -gt "$1" ]; }
ok "the writer writes" vfs_wait_until 10 acked_over 20

leader_mount() { echo "${MNT[$(vfs_status_field "$1" leader)]}"; }
# caught_up NODE INDEX: NODE serves, and has applied INDEX.
caught_up() {
	local m=${MNT[$1]} applied
	applied=$(vfs_status_field "$m" applied_index)
	grep -Eqx 'active|standby' "$m/.vault/health" && [ -n "$applied" ] && [ "$applied" -ge "$2" ]
}
# upgrade NODE TARGET: the writer moves to TARGET's mount, NODE (daemon
# and mount) is replaced by this build, unsealed, and catches up with the
# leader.
upgrade() {
	local n=$1 m=${MNT[$1]} before commit
	set_target "${MNT[$2]}"
	before=$(acked_count)
	# The writer's write in flight, if it was on NODE, ends first.
	vfs_wait_until 10 acked_over $((before + 2)) || return 1
	vfs_umount "$m" && vfs_stop "$n" || return 1
	# A key the previous release refuses, as an operator might add now.
	printf 'autopilot {\n  server_stabilization_time = "0s"\n}\n' >> "$VFS_TMP/$n.hcl"
	VAULTFSD=$NEW_VAULTFSD vfs_start "$n" && MOUNT_VAULTFS=$NEW_MOUNT vfs_mount "$n" "$m" || return 1
	grep -qx 'sealed: true' "$m/.vault/status" || return 1
	vfs_unseal "$m" || return 1
	commit=$(vfs_status_field "$(leader_mount "${MNT[$2]}")" commit_index)
	echo "# $n: this build, unsealed; the leader's commit index $commit"
	vfs_wait_until 30 caught_up "$n" "$commit" || return 1
	vfs_wait_until 20 vfs_three_voters "$m"
}
UPGRADE_START=$SECONDS
ok "n1 is replaced by this build and catches up (writer on n2)" upgrade n1 n2
# join_through NODE MEMBER DAEMON MOUNT: NODE, running those binaries,
# joins through MEMBER.
join_through() {
	VAULTFSD=$3 MOUNT_VAULTFS=$4 vfs_start_mount "$1"
	echo "$(vfs_cluster_addr "$2")" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"
}
voters_are() { [ "$(vfs_voter_count "$M1")" -eq "$1" ]; }
# remove NODE: removed through n1, then stopped.
remove() {
	echo "$1" > "$M1/.vault/remove-peer" &&
		vfs_wait_until 20 bash -c "! grep -q '^$1 ' '$M1/.vault/peers'" &&
		vfs_umount "${MNT[$1]}" && vfs_stop "$1"
}
# writes_through NODE: the writer moves to NODE's mount and gets 20 writes
# acknowledged there.
writes_through() { set_target "${MNT[$1]}" && vfs_wait_until 20 acked_over $(($(acked_count) + 20)); }
leader_is_old() { [[ "$(vfs_status_field "$M1" leader)" =~ ^n[23]$ ]]; }
ok "the leader is still of the previous release" leader_is_old
ok "writes through n1, of this build, reach it (forwarded)" writes_through n1
ok "a node of this build joins through n2, of the previous release" join_through n4 n2 "$NEW_VAULTFSD" "$NEW_MOUNT"
ok "four voters" vfs_wait_until 20 voters_are 4
ok "it is removed again (the keyring rotates)" remove n4
ok "three voters" voters_are 3
ok "n2 is replaced by this build and catches up (writer on n1)" upgrade n2 n1
# n3 is the last of the previous release; a leader of this build is made.
new_leader() {
	local l
	l=$(vfs_status_field "$M1" leader)
	[ "$l" = n1 ] || [ "$l" = n2 ] || { echo 1 > "${MNT[n3]}/.vault/step-down"; return 1; }
}
ok "a node of this build leads (n3 steps down if it led)" vfs_wait_until 20 new_leader
ok "writes through n3, of the previous release, reach it (forwarded)" writes_through n3
level_is() { [ "$(vfs_status_field "${MNT[$1]}" feature_level)" = "$2" ]; }
ok "while n3 runs the previous release, the feature level stays 1" level_is n1 1
ok "n3 is replaced by this build and catches up (writer on n1)" upgrade n3 n1
all_at_2() { level_is n1 2 && level_is n2 2 && level_is n3 2; }
ok "every member runs this build: the cluster's feature level becomes 2" vfs_wait_until 20 all_at_2
# A node that cannot apply what the log may now hold never joins: the
# leader refuses it and says why.
refused_join() {
	VAULTFSD=$PREV_VAULTFSD MOUNT_VAULTFS=$PREV_MOUNT vfs_start_mount n5 || return 1
	echo "$(vfs_cluster_addr n1)" > "${MNT[n5]}/.vault/join" || return 1
	vfs_unseal "${MNT[n5]}" 2>/dev/null
	vfs_wait_until 20 grep -q "refusing to add n5@.*earlier release" "$VFS_TMP"/n[123].log || return 1
	grep -h "refusing to add n5@" "$VFS_TMP"/n[123].log | head -n 1 | sed 's/^/# /'
	! grep -q '^n5 ' "$M1/.vault/peers" && voters_are 3
}
ok "a previous-release node cannot join any more (refused, with the reason)" refused_join
vfs_umount "${MNT[n5]}"
vfs_stop n5
ok "the writer goes on after the last one" vfs_wait_until 10 acked_over $(($(acked_count) + 20))
touch "$VFS_TMP/stop"
wait "$WRITER"
echo "# upgrade took $((SECONDS - UPGRADE_START)) s; $(acked_count) writes acknowledged"

errors_summary() { awk '{ print $2 }' "$VFS_TMP/errors" | sort | uniq -c | tr '\n' ' '; }
echo "# writer errors (retried): $(errors_summary)"
only_eagain() {
	! grep -v ' EAGAIN ' "$VFS_TMP/errors" | sed 's/^/# not EAGAIN: /' | grep .
}
ok "the writer saw no error but EAGAIN" only_eagain
# every_key MOUNT: each acknowledged key reads back with its value.
every_key() {
	python3 - "$1/rolling" "$VFS_TMP/acked" <<'EOF'
import os, sys
d, bad, n = sys.argv[1], 0, 0
for line in open(sys.argv[2]):
    key, value = line.split()
    n += 1
    try:
        got = open(os.path.join(d, key)).read()
    except OSError as e:
        got = "(%s)" % e
    if got != value:
        bad += 1
        if bad <= 5:
            print("# %s: %r, wanted %r" % (key, got, value))
print("# %d keys checked under %s, %d wrong" % (n, d, bad))
sys.exit(1 if bad or n == 0 else 0)
EOF
}
for n in n1 n2 n3; do
	ok "every acknowledged write reads back on $n" every_key "${MNT[$n]}"
done
ok "three voters" vfs_three_voters "$M1"
all_new() { runs n1 "$NEW_VAULTFSD" && runs n2 "$NEW_VAULTFSD" && runs n3 "$NEW_VAULTFSD"; }
ok "every node runs this build" all_new

vfs_done
