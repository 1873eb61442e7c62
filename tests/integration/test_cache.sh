#!/usr/bin/env bash
# Kernel caching of attributes and names, kept coherent: a one-node cluster
# with two mounts, then a second node. Whatever one mount changes, every
# other mount shows at once, on either node, although they all let the
# kernel cache; and the cache really saves round trips (counted on debug
# mounts, of the leader and of the follower).
. "$(dirname "$0")/lib.sh"

A=$VFS_TMP/a B=$VFS_TMP/b D=$VFS_TMP/dbg
vfs_start n1
vfs_mount n1 "$A" && vfs_mount n1 "$B" || { echo "Bail out! cannot mount"; exit 1; }
ok "init" vfs_init "$A"
ok "unseal" vfs_unseal "$A"
ok "active" vfs_wait_until 10 grep -qx 'ha_mode: active' "$A/.vault/status"
mkdir -p "$A/d" && echo v0 > "$A/d/f"

# coherent ROUNDS: each change through A is seen by B's next look.
coherent() {
	local i bad=0 want
	for i in $(seq 1 "$1"); do
		echo "v$i" > "$A/d/f"
		[ "$(cat "$B/d/f")" = "v$i" ] || { echo "# value stale at $i"; bad=1; }
		[ "$(stat -c %s "$B/d/f")" = $((${#i} + 2)) ] || { echo "# size stale at $i"; bad=1; }
		want=$((600 + i % 2 * 40))
		chmod "$want" "$A/d/f"
		[ "$(stat -c %a "$B/d/f")" = "$want" ] || { echo "# mode stale at $i"; bad=1; }
		mv "$A/d/f" "$A/d/g"
		[ ! -e "$B/d/f" ] || { echo "# old name still seen at $i"; bad=1; }
		mv "$B/d/g" "$B/d/f" || { echo "# new name not seen at $i"; bad=1; }
		[ -e "$A/d/f" ] || { echo "# name moved back not seen at $i"; bad=1; }
	done
	return $bad
}
ok "200 rounds of write/chmod/rename through one mount, each seen at once through the other" \
	coherent 200

# FUSE requests for 20 cats of a cached path, from a debug mount of NODE.
# Uncached, each cat is 2 LOOKUPs and 3 GETATTRs; cached, a name is looked
# up again only when its grant (100 ms) ran out, and cat's fstat after a
# read still asks (the kernel drops atime after every read). So does the
# root's GETATTR on a follower (MAX_GETATTR 41): the root is answered
# without a read round, so that it stats without a quorum, hence uncached.
count_cats() {
	local node=$1 max_getattr=$2 log=$VFS_TMP/dbg-$1.log
	mkdir -p "$D"
	VFS_MOUNTS+=("$D")
	"$MOUNT_VAULTFS" "$(vfs_socket "$node")" "$D" -d 2>"$log" &
	ok "debug mount of $node" vfs_wait_until 5 mountpoint -q "$D"
	cat "$D/d/f" >/dev/null
	: >"$log"
	for i in $(seq 1 20); do cat "$D/d/f" >/dev/null; done
	local lookups getattrs opens
	lookups=$(grep -ac "opcode: LOOKUP " "$log")
	getattrs=$(grep -ac "opcode: GETATTR " "$log")
	opens=$(grep -ac "opcode: OPEN " "$log")
	echo "# 20 cats on $node: $lookups LOOKUP, $getattrs GETATTR, $opens OPEN"
	ok "$node: cached names, at most half the LOOKUPs of an uncached mount (40)" \
		test "$lookups" -le 20
	ok "$node: cached attributes, at most $max_getattr GETATTRs (60 uncached)" \
		test "$getattrs" -le "$max_getattr"
	ok "$node: every cat still opens through the daemon (values are never cached)" \
		test "$opens" -eq 20
	fusermount3 -u "$D"
}
count_cats n1 21

# A second node joins: its writes are seen at once through the first
# node's mounts, the first node's through its own, both caching.
vfs_start n2
vfs_mount n2 "$VFS_TMP/c" || { echo "Bail out! cannot mount n2"; exit 1; }
ok "n2 joins" bash -c "echo $(vfs_cluster_addr n1) > '$VFS_TMP/c/.vault/join'"
ok "n2 unsealed" vfs_unseal "$VFS_TMP/c"
ok "n2 follows n1" vfs_wait_until 20 grep -qx 'leader: n1' "$VFS_TMP/c/.vault/status"
through_n2() {
	local i bad=0
	for i in $(seq 1 50); do
		chmod $((600 + i % 2 * 40)) "$VFS_TMP/c/d/f"
		[ "$(stat -c %a "$A/d/f")" = $((600 + i % 2 * 40)) ] || { echo "# mode stale at $i"; bad=1; }
		echo "w$i" > "$VFS_TMP/c/d/f"
		[ "$(stat -c %s "$B/d/f")" = $((${#i} + 2)) ] || { echo "# size stale at $i"; bad=1; }
	done
	return $bad
}
ok "50 changes through the joined node, each seen at once through n1's mounts" through_n2
through_n1() {
	local i bad=0
	for i in $(seq 1 50); do
		stat "$VFS_TMP/c/d/f" >/dev/null # cache it on n2
		chmod $((600 + i % 2 * 40)) "$A/d/f"
		[ "$(stat -c %a "$VFS_TMP/c/d/f")" = $((600 + i % 2 * 40)) ] || { echo "# mode stale at $i"; bad=1; }
		mv "$A/d/f" "$A/d/g"
		[ ! -e "$VFS_TMP/c/d/f" ] || { echo "# old name still seen at $i"; bad=1; }
		mv "$A/d/g" "$A/d/f"
		[ -e "$VFS_TMP/c/d/f" ] || { echo "# name back not seen at $i"; bad=1; }
	done
	return $bad
}
ok "50 changes through the leader, each seen at once through the follower's mount" through_n1
count_cats n2 41
vfs_done
