#!/usr/bin/env bash
# The stale read of fault run seed 4242 (issue 14), forced on real processes.
#
# A node groups the changes of a loop turn into one cache notice. A read
# served between two of them was stamped with that notice's seq, although
# it showed the state before the second change; the mount, which drops what
# a notice names before it admits answers stamped with that seq, then held
# the read's old value after the write was acknowledged, and served it to
# the next open() for up to a grant (~80 ms). In a fault run this needs two
# applies in one loop turn around a read; the failpoint notice_delay_ms
# keeps each notice open for 40 ms of loop turns instead (as one long turn
# would), so the interleaving happens many times a second.
#
# One node, two mounts, writers and readers of a few keys for 10 s
# (stamp_load.py); lincheck must find every key's history linearizable. On
# the code before the fix, reads through the writer's mount returned the
# value a write had replaced after that write was acknowledged, on three or
# four of the four keys in every run. Needs a -Dfailpoints=true build.
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"
: "${LINCHECK:?LINCHECK must point to lincheck}"
if [ "${VAULTFS_TEST_FAILPOINTS:-0}" != 1 ]; then
	echo "1..0 # SKIP vaultfsd built without -Dfailpoints=true"
	exit 0
fi

A=$VFS_TMP/a B=$VFS_TMP/b HIST=$VFS_TMP/history
VAULTFS_FAILPOINTS="notice_delay_ms=40" vfs_start n1
vfs_mount n1 "$A" && vfs_mount n1 "$B" || { echo "Bail out! cannot mount"; exit 1; }
ok "init" vfs_init "$A"
ok "unseal" vfs_unseal "$A"
ok "active" vfs_wait_until 10 grep -qx 'ha_mode: active' "$A/.vault/status"
mkdir -p "$A/reg" "$HIST"

run_load() {
	python3 "$HERE/stamp_load.py" "$A" "$B" 10 "$HIST" || return 1
	local w r
	w=$(cat "$HIST"/hist-* | awk '$2 == "w" && $7 == "ok"' | wc -l)
	r=$(cat "$HIST"/hist-* | awk '$2 == "r" && $7 == "ok"' | wc -l)
	echo "# acknowledged writes: $w, reads: $r"
	[ "$w" -ge 100 ] && [ "$r" -ge 100 ]
}
ok "10 s of writes and reads of five keys through two mounts" run_load
ok "the failpoint was set" grep -q "failpoint notice_delay_ms set to 40" "$VFS_TMP/n1.log"

linearizable() {
	"$LINCHECK" "$HIST"/hist-* > "$VFS_TMP/lincheck.out" 2>&1
	local rc=$?
	sed 's/^/# /' "$VFS_TMP/lincheck.out" | head -n 40
	return $rc
}
ok "every key's history is linearizable: no read shows a value its key lost before it began" \
	linearizable

vfs_done
