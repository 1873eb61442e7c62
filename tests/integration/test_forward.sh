#!/usr/bin/env bash
# Forwarded writes: exactly once when the leader's answer is lost, and a
# clear EAGAIN (not a hang, not a false success) when quorum is lost.
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60 VFS_REQUEST_TIMEOUT_MS=3000
M1=$VFS_TMP/m-n1 M2=$VFS_TMP/m-n2
# The leader loses (drops) its answers to the first two forwarded writes.
VAULTFS_FAILPOINTS="drop_forward_reply=2" vfs_start n1
vfs_start n2
vfs_mount n1 "$M1" && vfs_mount n2 "$M2" || { echo "Bail out! cannot mount"; exit 1; }
ok "init n1" vfs_init "$M1"
ok "unseal n1" vfs_unseal "$M1"
ok "n2 joins" bash -c "echo $(vfs_cluster_addr n1) > '$M2/.vault/join'"
ok "n2 is unsealed" vfs_unseal "$M2"
ok "n2 follows n1" vfs_wait_until 10 grep -qx 'leader: n1' "$M2/.vault/status"

if [ "${VAULTFS_TEST_FAILPOINTS:-0}" = 1 ]; then
	ok "create on the follower succeeds although the leader's answer was lost" \
		bash -c "echo once > '$M2/created-once'"
	ok "the leader really dropped the answer (failpoint hit)" \
		grep -q "failpoint drop_forward_reply triggered" "$VFS_TMP/n1.log"
	ok "mkdir on the follower too (a second apply would be EEXIST)" mkdir "$M2/dir-once"
	ok "both answers were dropped" \
		test "$(grep -c "failpoint drop_forward_reply triggered" "$VFS_TMP/n1.log")" -eq 2
	ok "the value is there once, on both nodes" \
		bash -c "test \"\$(cat '$M1/created-once')\" = once && test \"\$(ls '$M1' | grep -c created-once)\" -eq 1"
else
	echo "ok $((VFS_TESTS + 1)) - lost-answer checks # SKIP vaultfsd built without -Dfailpoints=true"
	VFS_TESTS=$((VFS_TESTS + 1))
fi

ok "a write acknowledged before quorum loss" bash -c "echo kept > '$M1/kept'"
vfs_stop n2 KILL
# quorum_lost_write WRITER...: WRITER fails with EAGAIN within the request
# timeout (3 s) plus slack, not a hang, and nothing is written.
quorum_lost_write() {
	local start=$SECONDS out
	if out=$("$@" 2>&1); then
		echo "# the write succeeded without a quorum"
		return 1
	fi
	[[ "$out" == *"Resource temporarily unavailable"* ]] || { echo "# got: $out"; return 1; }
	[ $((SECONDS - start)) -le 10 ]
}
# At once, a new secret's open() may still succeed (the node heard from n2
# less than an election timeout ago): its close() fails, as dd reports.
ok "without a quorum a write fails with EAGAIN within the request timeout" \
	quorum_lost_write sh -c "echo lost | dd of='$M1/not-acknowledged' status=none"
# Past an election timeout n1 knows (it no longer leads): open() fails,
# which the shell's `>` reports (it ignores close()'s errors).
# n1 has not heard from n2 for an election timeout (peers: LastContact),
# or no longer leads.
n2_silent() {
	awk '$1 == "n2" { sub(/ms$/, "", $6); if ($6 == "-" || $6 + 0 > 600) ok = 1 }
	     END { exit !ok }' "$M1/.vault/peers" 2>/dev/null
}
quorum_lost_open() {
	vfs_wait_until 10 n2_silent || { echo "# n1 still hears n2"; return 1; }
	quorum_lost_write sh -c "echo lost > '$M1/not-acknowledged-2'"
}
ok "an election timeout later, the shell's echo > new file reports EAGAIN" quorum_lost_open
vfs_start n2
ok "n2 restarts sealed and is unsealed" vfs_wait_until 10 vfs_unseal "$M2"
ok "writes work again once the quorum is back" \
	vfs_wait_until 15 bash -c "echo back > '$M1/back'"
ok "the acknowledged write survived" test "$(cat "$M2/kept")" = kept
vfs_done
