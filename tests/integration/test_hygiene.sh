#!/usr/bin/env bash
# Secrets hygiene on one node:
#
# 1. The daemon itself refuses to show key material to anyone but root:
#    a request on the API socket reading .vault/init or .vault/rekey for
#    uid 65534 gets EACCES (the mount's mode bits aside), while status is
#    answered.
# 2. init's shares are forgotten, and the log says so, when the node is
#    sealed before they are read, or when nobody reads them in time (10
#    minutes; in test builds the failpoint init_shares_ttl_ms shortens it).
# 3. mount.vaultfs talks only to a socket of root's (or its own user's),
#    served by such a process: a socket of another user's, or one root owns
#    but another user's process listens behind, gets nothing, not even a
#    HELLO.
# 4. Neither vaultfsd nor mount.vaultfs leaves a core file by default, even
#    with RLIMIT_CORE unlimited and ASan allowed to dump; with -d (and the
#    mount's -o dumpable) they do: the control that cores are possible here.
. "$(dirname "$0")/lib.sh"

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
declare -A MNT=()

# ---- 1. the daemon checks who reads ----
vfs_start_mount n1
M=${MNT[n1]}
SOCK=$(vfs_socket n1)
ok "init" bash -c "echo 'shares=3 threshold=2' > '$M/.vault/init'"
# A frame: u32 length, u32 id, u16 op, u16 flags, u32 uid, u32 gid, payload.
# HELLO (op 1, protocol version 4), then CTL_READ (op 14) of NAME for UID.
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
HELLO="$(le32 20)$(le32 1)\x01\x00\x00\x00$(le32 0)$(le32 0)$(le32 4)"
ctl_read_status() { # NAME UID: the status of the CTL_READ answer, as a signed number
	local name=$1 uid=$2 frame
	frame="$(le32 $((16 + 4 + ${#name})))$(le32 2)\x0e\x00\x00\x00$(le32 "$uid")$(le32 "$uid")$(le32 ${#name})$name"
	printf "$HELLO$frame" | timeout 10 socat -t 5 - "UNIX-CONNECT:$SOCK" |
		od -An -t d4 -j 40 -N 4 | tr -d ' '
}
ok "control: status is answered for uid 65534" test "$(ctl_read_status status 65534)" = 0
ok "init is refused for uid 65534 by the daemon: EACCES" test "$(ctl_read_status init 65534)" = -13
ok "rekey is refused for uid 65534 by the daemon: EACCES" test "$(ctl_read_status rekey 65534)" = -13
ok "the refusal is logged" grep -q "uid 65534 may not read .vault/init" "$VFS_TMP/n1.log"
# CTL_OPEN (op 18) of .vault/snapshot for reading (u8 0): a backup holds the
# sealed keyring and every ciphertext, root's only.
ctl_open_status() { # NAME UID
	local name=$1 uid=$2 frame
	frame="$(le32 $((16 + 4 + ${#name} + 1)))$(le32 2)\x12\x00\x00\x00$(le32 "$uid")$(le32 "$uid")$(le32 ${#name})$name\x00"
	printf "$HELLO$frame" | timeout 10 socat -t 5 - "UNIX-CONNECT:$SOCK" |
		od -An -t d4 -j 40 -N 4 | tr -d ' '
}
ok "a backup is refused for uid 65534 by the daemon: EACCES" test "$(ctl_open_status snapshot 65534)" = -13
ok "through the mount it is refused too" fails_with "Permission denied" as_nobody cat "$M/.vault/init"
SHARES=$(cat "$M/.vault/init")
ok "root reads the shares" test "$(grep -c '^Unseal Key' <<<"$SHARES")" -eq 3
ok "once" test -z "$(cat "$M/.vault/init")"

# ---- 2. unread shares do not stay ----
vfs_umount "$M"
vfs_stop n1
rm -rf "$(vfs_data n1)"
vfs_start_mount n1
ok "init again" bash -c "echo 'shares=3 threshold=2' > '$M/.vault/init'"
ok "seal before the shares are read" bash -c "echo 1 > '$M/.vault/seal'"
ok "the shares are gone" test -z "$(cat "$M/.vault/init")"
ok "the log says so, and what to do" \
	grep -q "key shares of init were never read and are gone (sealed).*init again" "$VFS_TMP/n1.log"
if [ "${VAULTFS_TEST_FAILPOINTS:-0}" = 1 ]; then
	vfs_umount "$M"
	vfs_stop n1
	rm -rf "$(vfs_data n1)"
	VAULTFS_FAILPOINTS=init_shares_ttl_ms=1500 vfs_start n1
	vfs_mount n1 "$M"
	ok "init with a 1.5 s wait for the shares (failpoint)" \
		bash -c "echo 'shares=3 threshold=2' > '$M/.vault/init'"
	ok "they are forgotten when nobody reads them in time" vfs_wait_until 10 \
		grep -q "never read and are gone (not read within" "$VFS_TMP/n1.log"
	ok "and cannot be read afterwards" test -z "$(cat "$M/.vault/init")"
else
	echo "# init_shares_ttl_ms needs a failpoints build: the 10-minute limit is not tested"
fi

# ---- 3. whom the mount talks to ----
FAKE=$VFS_TMP/fake
mkdir -p "$FAKE" && chmod 0777 "$FAKE"
# fake_socket OWNER_AFTER: a listener run by uid 65534 that records what it
# gets; with OWNER_AFTER=root its socket file is then given to root.
fake_socket() {
	rm -f "$FAKE/sock" "$FAKE/got"
	setpriv --reuid=65534 --regid=65534 --clear-groups -- \
		socat -u "UNIX-LISTEN:$FAKE/sock,fork" "OPEN:$FAKE/got,creat,append" \
		</dev/null >/dev/null 2>&1 &
	FAKE_PID=$!
	vfs_wait_until 10 test -S "$FAKE/sock" || return 1
	[ "$1" != root ] || chown root:root "$FAKE/sock"
}
refused_mount() { # WHAT: the mount fails, says WHAT, and the fake got nothing
	local out rv=0
	mkdir -p "$VFS_TMP/m-fake"
	out=$("$MOUNT_VAULTFS" "$FAKE/sock" "$VFS_TMP/m-fake" 2>&1) || rv=$?
	echo "# $out"
	kill "$FAKE_PID" 2>/dev/null
	wait "$FAKE_PID" 2>/dev/null
	mountpoint -q "$VFS_TMP/m-fake" && { fusermount3 -u "$VFS_TMP/m-fake"; return 1; }
	[ "$rv" -ne 0 ] && [[ "$out" == *"$1"* ]] && [ ! -s "$FAKE/got" ]
}
ok "a listener of uid 65534 starts" fake_socket nobody
ok "mount.vaultfs refuses a socket owned by another user, sending nothing" \
	refused_mount "is owned by uid 65534, neither root nor this user"
ok "a listener of uid 65534 behind a socket file given to root" fake_socket root
ok "mount.vaultfs refuses a daemon of another user, sending nothing" \
	refused_mount "runs as uid 65534, neither root nor this user"
ok "control: the real daemon's socket mounts" bash -c "mountpoint -q '$M'"

# ---- 4. no core files by default ----
CORE_DIR=$VFS_TMP/cores
mkdir -p "$CORE_DIR"
CORE_PATTERN_ORIG=$(cat /proc/sys/kernel/core_pattern)
restore_pattern() { printf '%s\n' "$CORE_PATTERN_ORIG" > /proc/sys/kernel/core_pattern; }
trap 'restore_pattern; vfs_cleanup' EXIT
echo "$CORE_DIR/core.%p" > /proc/sys/kernel/core_pattern
DUMPABLE_ASAN="${ASAN_OPTIONS:-}:disable_coredump=0:handle_segv=0:handle_abort=0:use_madv_dontdump=1"
# crash NAME MOUNTPOINT [DAEMON-ARGS [MOUNT-OPTS]]: a daemon and its mount
# started as dumpable as the environment allows, each sent SIGSEGV; CORES
# is then how many core files each left. (Not run in $(...): the EXIT trap
# would clean up after the subshell.)
CORES=
crash() {
	local name=$1 mnt=$2 pid mpid
	vfs_config "$name"
	ASAN_OPTIONS=$DUMPABLE_ASAN prlimit --core=unlimited -- \
		"$VAULTFSD" -config="$VFS_TMP/$name.hcl" ${3:-} >> "$VFS_TMP/$name.log" 2>&1 &
	pid=$!
	vfs_wait_until 20 test -S "$(vfs_socket "$name")" || return 1
	mkdir -p "$mnt"
	ASAN_OPTIONS=$DUMPABLE_ASAN prlimit --core=unlimited -- \
		"$MOUNT_VAULTFS" "$(vfs_socket "$name")" "$mnt" ${4:-} >> "$VFS_TMP/$name-mount.log" 2>&1 ||
		return 1
	mpid=$(pgrep -f -- " $mnt( |\$)" | head -n 1)
	[ -n "$mpid" ] || return 1
	kill -SEGV "$mpid" "$pid"
	vfs_wait_gone "$pid" 30
	vfs_wait_gone "$mpid" 30
	fusermount3 -u "$mnt" 2>/dev/null
	CORES="$(ls "$CORE_DIR" | grep -cx "core.$pid") $(ls "$CORE_DIR" | grep -cx "core.$mpid")"
	echo "# core files of $name's daemon and mount: $CORES"
}
crash c1 "$VFS_TMP/m-c1"
ok "by default, SIGSEGV leaves no core of the daemon or of the mount" test "$CORES" = "0 0"
crash c2 "$VFS_TMP/m-c2" -d "-o dumpable"
ok "control: with -d and -o dumpable both leave one" test "$CORES" = "1 1"
restore_pattern
rm -rf "$CORE_DIR"

vfs_done
