#!/usr/bin/env bash
# A follower whose snapshot went unanswered gets it again soon. libraft
# sends a snapshot again only once the last one went unanswered for
# install_snapshot_timeout, and a follower taking a snapshot of its own
# when one arrives drops it without an answer; the node sizes that wait to
# its snapshots (a few election timeouts for a small one), not libraft's
# default 30 s, which once kept a follower 30 s behind after its slow disk
# healed. Here n3 restarts behind the leader's compacted log, so it needs a
# snapshot, and drops the first one it is sent (failpoint).
. "$(dirname "$0")/lib.sh"

if [ "${VAULTFS_TEST_FAILPOINTS:-0}" != 1 ]; then
	echo "1..0 # SKIP vaultfsd built without -Dfailpoints=true"
	exit 0
fi
export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60
# A node that was down catches up by snapshot.
export VFS_SNAPSHOT_THRESHOLD=32 VFS_TRAILING_LOGS=8
M1=$VFS_TMP/m-n1 M2=$VFS_TMP/m-n2 M3=$VFS_TMP/m-n3

for n in n1 n2 n3; do
	vfs_start "$n"
	vfs_mount "$n" "$VFS_TMP/m-$n" || { echo "Bail out! cannot mount $n"; exit 1; }
done
vfs_form_three
ok "a write through n1" bash -c "echo before > '$M1/before'"
ok "n3 serves it" vfs_wait_until 10 grep -qx before "$M3/before"

vfs_umount "$M3"
vfs_stop n3
write_many() {
	local i
	for i in $(seq 1 100); do echo "v$i" > "$M1/k$i" || return 1; done
}
ok "100 writes while n3 is down (the leader compacts its log past n3)" write_many

VAULTFS_FAILPOINTS="drop_install_snapshot=1" vfs_start n3
vfs_mount n3 "$M3" || { echo "Bail out! cannot mount n3 again"; exit 1; }
ok "unseal n3 again" vfs_unseal "$M3"
# libraft's default wait would make this 30 s or more.
ok "n3 serves the latest write within 15 s" vfs_wait_until 15 grep -qx v100 "$M3/k100"
ok "n3 dropped the first snapshot it was sent (failpoint hit)" \
	grep -q "failpoint drop_install_snapshot triggered" "$VFS_TMP/n3.log"
ok "and installed the one sent again" \
	grep -q "installing a snapshot from the leader" "$VFS_TMP/n3.log"
ok "n3 has every write" bash -c "for i in \$(seq 1 100); do grep -qx v\$i '$M3/k'\$i || exit 1; done"
vfs_done
