#!/usr/bin/env bash
# A write whose outcome is unknown is never reported as refused. A follower
# forwards a write; the leader applies it but its answer is lost
# (failpoint); before the follower tries again, the follower is removed
# from the cluster, so the leader refuses the retry (EPERM: no longer a
# member). The write did commit: the follower must answer "maybe" (EAGAIN),
# not EPERM, which says that nothing was written. Found by a fault run
# (seed 5091815: a delete reported refused, then seen applied).
. "$(dirname "$0")/lib.sh"

if [ "${VAULTFS_TEST_FAILPOINTS:-0}" != 1 ]; then
	echo "1..0 # SKIP vaultfsd built without -Dfailpoints=true"
	exit 0
fi
export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60
M1=$VFS_TMP/m-n1 M2=$VFS_TMP/m-n2 M3=$VFS_TMP/m-n3
# The leader loses its answer to the first forwarded write.
VAULTFS_FAILPOINTS="drop_forward_reply=1" vfs_start n1
vfs_start n2
vfs_start n3
for n in n1 n2 n3; do
	vfs_mount "$n" "$VFS_TMP/m-$n" || { echo "Bail out! cannot mount $n"; exit 1; }
done
vfs_form_three

# The write through n2, in the background: dd reports close()'s error.
OUT=$VFS_TMP/write.out
(echo applied | dd of="$M2/k" status=none; echo "exit $?") > "$OUT" 2>&1 &
WRITER=$!
ok "the leader applied the write and dropped its answer (failpoint hit)" \
	vfs_wait_until 10 grep -q "failpoint drop_forward_reply triggered" "$VFS_TMP/n1.log"
ok "n2 is removed before it tries again" bash -c "echo n2 > '$M1/.vault/remove-peer'"
ok "the write ends" vfs_wait_until 30 bash -c "! kill -0 $WRITER 2>/dev/null"
echo "# the writer: $(tr '\n' ' ' < "$OUT")"
ok "the write committed (the leader has it)" grep -qx applied "$M1/k"
ok "n2 did not answer EPERM for a write that committed" \
	bash -c "! grep -q 'Operation not permitted' '$OUT'"
ok "it answered EAGAIN (outcome unknown)" grep -q "Resource temporarily unavailable" "$OUT"
ok "n2 says why" grep -q "write refused (this node was removed) after an earlier attempt" "$VFS_TMP/n2.log"
vfs_done
