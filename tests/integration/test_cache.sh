#!/usr/bin/env bash
# Kernel caching of attributes and names, kept coherent: a one-node cluster
# (the only kind that grants caching so far) with two mounts. Whatever one
# mount changes, the other shows at once, although both let the kernel
# cache; and the cache really saves round trips (counted on a debug mount).
# Then a second node joins: grants stop, and nothing stale is seen.
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

# FUSE requests for 20 cats of a cached path, from a debug mount's log.
mkdir -p "$D"
VFS_MOUNTS+=("$D")
"$MOUNT_VAULTFS" "$(vfs_socket n1)" "$D" -d 2>"$VFS_TMP/dbg.log" &
ok "debug mount" vfs_wait_until 5 mountpoint -q "$D"
cat "$D/d/f" >/dev/null
: >"$VFS_TMP/dbg.log"
for i in $(seq 1 20); do cat "$D/d/f" >/dev/null; done
count() { grep -ac "opcode: $1 " "$VFS_TMP/dbg.log"; }
echo "# 20 cats: $(count LOOKUP) LOOKUP, $(count GETATTR) GETATTR, $(count OPEN) OPEN"
ok "cached names: at most 2 LOOKUPs for 20 cats of the same path (40 uncached)" test "$(count LOOKUP)" -le 2
ok "cached attributes: at most one GETATTR per cat (60 uncached; cat's fstat after a read)" \
	test "$(count GETATTR)" -le 21
ok "every cat still opens through the daemon (values are never cached)" test "$(count OPEN)" -eq 20
fusermount3 -u "$D"

# A second node joins: from then on nothing is granted, and the joined
# node's writes are seen at once through the first node's mounts.
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
vfs_done
