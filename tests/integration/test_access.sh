#!/usr/bin/env bash
# Who may do what: other users through allow_other get exactly what the mode
# bits allow, and their writes drop set-user-ID and set-group-ID as on Linux;
# control writes are root's; the API socket admits only root and survives
# garbage.
. "$(dirname "$0")/lib.sh"

M=$VFS_TMP/mnt
vfs_start n1
vfs_mount n1 "$M" allow_other
vfs_init "$M" && vfs_unseal "$M" || { echo "Bail out! cannot init/unseal"; exit 1; }

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }

mkdir -p "$M/app"
echo private > "$M/app/root-only"; chmod 0600 "$M/app/root-only"
echo public > "$M/app/world-readable"; chmod 0644 "$M/app/world-readable"
echo mine > "$M/app/nobody-owned"; chown 65534:65534 "$M/app/nobody-owned"; chmod 0600 "$M/app/nobody-owned"

ok "another user reads a 0644 secret" test "$(as_nobody cat "$M/app/world-readable")" = public
ok "another user cannot read a root 0600 secret (EACCES)" \
	fails_with "Permission denied" as_nobody cat "$M/app/root-only"
ok "another user cannot overwrite a root 0644 secret" \
	fails_with "Permission denied" as_nobody bash -c "echo x > '$M/app/world-readable'"
ok "the owner reads and writes its own 0600 secret" \
	as_nobody bash -c "echo changed > '$M/app/nobody-owned' && test \"\$(cat '$M/app/nobody-owned')\" = changed"
# setid_after_write WHO MODE: the mode left after WHO writes root's file
# of MODE (world-writable, so that another user may write it).
setid_after_write() {
	local f=$M/app/setid-$1-$2
	rm -f "$f"
	echo a > "$f" && chmod "$2" "$f" || return 1
	if [ "$1" = nobody ]; then as_nobody bash -c "echo b > '$f'"; else echo b > "$f"; fi || return 1
	stat -c %a "$f"
}
ok "a write by another user drops set-user-ID" test "$(setid_after_write nobody 4777)" = 777
ok "and set-group-ID of a group-executable file" test "$(setid_after_write nobody 6777)" = 777
ok "but not set-group-ID without group execute (a lock mark)" \
	test "$(setid_after_write nobody 2666)" = 2666
ok "root's write keeps both" test "$(setid_after_write root 6777)" = 6777
ok "another user cannot create in a root 0755 directory" \
	fails_with "Permission denied" as_nobody touch "$M/app/new"
ok "another user cannot unseal/seal (root-only control files)" \
	fails_with "Permission denied" as_nobody bash -c "echo 1 > '$M/.vault/seal'"
ok "another user can read status" as_nobody grep -q '^sealed: false' "$M/.vault/status"
ok "still unsealed after the refused seal" grep -qx 'sealed: false' "$M/.vault/status"

SOCK=$(vfs_socket n1)
ok "the API socket is mode 0600" test "$(stat -c %a "$SOCK")" = 600
garbage() {
	head -c 4096 /dev/urandom | timeout 10 socat -u - "UNIX-CONNECT:$SOCK" 2>/dev/null
	printf '\xff\xff\xff\x7f' | timeout 10 socat -u - "UNIX-CONNECT:$SOCK" 2>/dev/null
	printf '\x10\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x00' | timeout 10 socat -u - "UNIX-CONNECT:$SOCK" 2>/dev/null
	true
}
ok "garbage and oversized frames on the API socket" garbage
ok "the daemon keeps serving after garbage" test "$(cat "$M/app/world-readable")" = public
nonroot_client() {
	chmod 0666 "$SOCK"
	# SO_PEERCRED refusal: the daemon closes the connection without answering.
	local out
	out=$(printf "$HELLO" |
		as_nobody timeout 10 socat -t 5 - "UNIX-CONNECT:$SOCK" 2>/dev/null | wc -c)
	chmod 0600 "$SOCK"
	[ "$out" -eq 0 ]
}
# HELLO, protocol version 4 (the last u32).
HELLO='\x14\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00'
ok "root gets an answer to a hello on the API socket" \
	test "$(printf "$HELLO" | timeout 10 socat -t 5 - "UNIX-CONNECT:$SOCK" | wc -c)" -gt 0
ok "a non-root process on the API socket is refused" nonroot_client
ok "the refusal is logged" grep -q "uid 65534" "$VFS_TMP/n1.log"
ok "the daemon still serves root" grep -qx 'sealed: false' "$M/.vault/status"

# A chmod that takes a permission away holds for every process that starts
# after it returned, even when the mount had an answer with the old mode on
# its way to a kernel that did not hold the inode yet (cache.h, "Inodes the
# kernel has not read yet"). Mount L holds each entry reply 1.5 s (test
# builds, failpoint lookup_reply_delay_ms); the chmod goes through M, whose
# kernel holds the inode.
if [ "${VAULTFS_TEST_FAILPOINTS:-0}" = 1 ]; then
	L=$VFS_TMP/late llog=$VFS_TMP/late.log
	mkdir -p "$L"
	VFS_MOUNTS+=("$L")
	VAULTFS_FAILPOINTS="lookup_reply_delay_ms=1500" \
		"$MOUNT_VAULTFS" "$(vfs_socket n1)" "$L" -o allow_other -f 2>"$llog" &
	vfs_wait_until 5 mountpoint -q "$L" || { echo "Bail out! cannot mount $L"; exit 1; }
	echo late-secret > "$M/app/late"; chmod 0644 "$M/app/late"
	late_chmod() {
		local before out
		before=$(grep -c "holding an entry reply" "$llog")
		# nobody looks the secret up (held in the mount), then reads it the
		# moment the lookup returns, after the chmod below has returned.
		as_nobody sh -c "stat -c %a '$L/app/late' >/dev/null; cat '$L/app/late'" \
			> "$VFS_TMP/late.out" 2>&1 &
		local pid=$!
		vfs_wait_until 10 sh -c "[ \$(grep -c 'holding an entry reply' '$llog') -gt $before ]" ||
			{ wait "$pid"; echo "# the reply was not held"; return 1; }
		chmod 0600 "$M/app/late"
		wait "$pid"
		out=$(cat "$VFS_TMP/late.out")
		case $out in
		*late-secret*) echo "# read after the chmod: $out"; return 1 ;;
		*"Permission denied"*) return 0 ;;
		*) echo "# unexpected: $out"; return 1 ;;
		esac
	}
	ok "a chmod holds for a read that starts after it, with a lookup on its way" late_chmod
fi
vfs_done
