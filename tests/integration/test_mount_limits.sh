#!/usr/bin/env bash
# The mount's local limits: open files of one secret share one copy of its
# value, the copies held by all open files stay within -o max_cached_mb,
# past which open() (and a write that needs a copy of its own) fails with
# ENOBUFS while everything else keeps working, and the memory goes back to
# the system once the files are closed. Memory is the mount process's
# VmRSS, measured with 400 descriptors of a 1 MiB secret held by another
# user.
. "$(dirname "$0")/lib.sh"

MIB=1048576
N_OPENS=400
BUDGET_MB=64 # the default of max_cached_mb
HOLDERS=()
trap 'for p in "${HOLDERS[@]}"; do kill "$p" 2>/dev/null; done; vfs_cleanup' EXIT

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }

# ASan keeps freed memory in a quarantine (256 MiB by default) to catch
# uses after free: in a sanitizer build the 1 MiB answers each open reads
# from the daemon would sit there and hide whether the mount gave its
# memory back. A small quarantine still catches them.
export ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=8"

# start_mount DIR [OPTIONS]: a foreground mount of n1 on DIR (its log is
# DIR.log, its pid MOUNT_PID), usable on return.
start_mount() {
	mkdir -p "$1"
	VFS_MOUNTS+=("$1")
	"$MOUNT_VAULTFS" "$(vfs_socket n1)" "$1" -f -o "allow_other${2:+,$2}" 2>"$1.log" &
	MOUNT_PID=$!
	vfs_wait_until 30 mountpoint -q "$1"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
mib() { echo "$((($1 + 1023) / 1024)) MiB"; }

# A process of nobody's that opens each PATH (the same one again and again,
# or several), reads a byte through each descriptor, and holds them all
# until told to close. It writes IPC/ready: "open NAME ok|ERRNO" per open,
# then "sha NAME SHA256" for the whole value read through the first and the
# last descriptor of each NAME; closes everything when IPC/go appears.
HOLDER=$VFS_TMP/holder.py
cat >"$HOLDER" <<'EOF'
import errno, hashlib, os, sys, time
ipc, paths = sys.argv[1], sys.argv[2:]
held, lines = {}, []
for p in paths:
    name = os.path.basename(p)
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError as e:
        lines.append("open %s %s" % (name, errno.errorcode.get(e.errno, e.errno)))
        continue
    os.pread(fd, 1, 0)
    held.setdefault(name, []).append(fd)
    lines.append("open %s ok" % name)
def whole(fd):
    out, off = b"", 0
    while True:
        chunk = os.pread(fd, 1 << 20, off)
        if not chunk:
            return out
        out += chunk
        off += len(chunk)
for name, fds in held.items():
    for fd in (fds[0], fds[-1]):
        lines.append("sha %s %s" % (name, hashlib.sha256(whole(fd)).hexdigest()))
with open(ipc + "/ready.tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
os.rename(ipc + "/ready.tmp", ipc + "/ready")
deadline = time.monotonic() + 600  # never outlives a failed test for long
while not os.path.exists(ipc + "/go") and time.monotonic() < deadline:
    time.sleep(0.05)
for fds in held.values():
    for fd in fds:
        os.close(fd)
EOF
chmod 0644 "$HOLDER"

# hold IPC PATH...: starts a holder; returns once it holds its files.
hold() {
	local ipc=$1
	shift
	mkdir -p "$ipc" && chmod 0777 "$ipc"
	# Debian's python3: another user cannot run root's own (a pyenv shim).
	as_nobody /usr/bin/python3 "$HOLDER" "$ipc" "$@" 2>"$ipc.err" &
	HOLDERS+=($!)
	HOLDER_PID=$!
	vfs_wait_until 300 eval "test -e '$ipc/ready' || ! kill -0 $HOLDER_PID"
	test -e "$ipc/ready" ||
		{ echo "# holder did not get ready:"; sed 's/^/# /' "$ipc.err"; return 1; }
}
# release IPC PID: the holder closes its files and exits.
release() {
	touch "$1/go"
	vfs_wait_gone "$2" 60
}
count() { grep -c "^$2\$" "$1/ready"; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
# every_sha IPC NAME SHA: every whole read of NAME through the holder's
# descriptors gave SHA.
every_sha() {
	local got
	got=$(awk -v n="$2" '$1 == "sha" && $2 == n { print $3 }' "$1/ready" | sort -u)
	[ "$got" = "$3" ] || { echo "# $2: read $got, expected $3"; return 1; }
}

# ---- the option --------------------------------------------------------------

vfs_start n1
mkdir -p "$VFS_TMP/m-bad"
# refused VALUE: mount.vaultfs exits 1 naming the bad option, and mounts nothing.
refused() {
	local out rv=0
	out=$("$MOUNT_VAULTFS" "$(vfs_socket n1)" "$VFS_TMP/m-bad" -o "max_cached_mb=$1" 2>&1) || rv=$?
	[ "$rv" -eq 1 ] && [[ "$out" == *"max_cached_mb=$1"* ]] && ! vfs_is_mounted "$VFS_TMP/m-bad" ||
		{ echo "# exit $rv: $out"; return 1; }
}
for bad in 0 -1 abc 4x "" 1048577 99999999999999999999; do
	ok "max_cached_mb='$bad' is refused with exit status 1 and a message" refused "$bad"
done

# ---- 400 descriptors of one 1 MiB secret -------------------------------------

M=$VFS_TMP/m-default
start_mount "$M" || { echo "Bail out! cannot mount n1"; exit 1; }
DEFAULT_PID=$MOUNT_PID
vfs_init "$M" && vfs_unseal "$M" || { echo "Bail out! cannot init/unseal"; exit 1; }
mkdir -p "$M/app" && chmod 0755 "$M/app"
head -c "$MIB" /dev/urandom >"$VFS_TMP/big"
cp "$VFS_TMP/big" "$M/app/big" && chmod 0644 "$M/app/big"
BIG_SHA=$(sha_of "$VFS_TMP/big")
rm -f "$VFS_TMP/big"

# The baseline is taken once the mount has served a few whole reads of the
# secret: its threads, their request buffers and its connection to the
# daemon exist before as after.
for i in 1 2 3 4; do as_nobody cat "$M/app/big" >/dev/null; cat "$M/app/big" >/dev/null; done
sleep 1
BASE=$(rss_kib "$DEFAULT_PID")
paths=()
for i in $(seq 1 "$N_OPENS"); do paths+=("$M/app/big"); done
ok "nobody holds $N_OPENS descriptors of a 1 MiB secret" hold "$VFS_TMP/ipc-1" "${paths[@]}"
H1=$HOLDER_PID
HELD=$(rss_kib "$DEFAULT_PID")
ok "all $N_OPENS opens succeed (one shared copy, not $N_OPENS)" \
	test "$(count "$VFS_TMP/ipc-1" "open big ok")" -eq "$N_OPENS"
ok "the first and the last descriptor read the whole value" every_sha "$VFS_TMP/ipc-1" big "$BIG_SHA"
echo "# mount RSS: baseline $(mib "$BASE"), $N_OPENS descriptors held $(mib "$HELD")"
ok "while held, RSS <= baseline + max_cached_mb + 20 MiB" \
	test "$HELD" -le "$((BASE + (BUDGET_MB + 20) * 1024))"
ok "root reads the secret meanwhile" test "$(sha_of "$M/app/big")" = "$BIG_SHA"
ok "the holder closes everything and exits" release "$VFS_TMP/ipc-1" "$H1"
# RELEASE reaches the mount after close() returns: give it time.
back_to_base() { [ "$(rss_kib "$DEFAULT_PID")" -le "$((BASE + 8 * 1024))" ]; }
vfs_wait_until 30 back_to_base
AFTER=$(rss_kib "$DEFAULT_PID")
echo "# mount RSS after close: $(mib "$AFTER") (baseline $(mib "$BASE"))"
ok "after close, RSS is back within 8 MiB of the baseline" back_to_base

# ---- a 4 MiB budget and eight different 1 MiB secrets ----------------------------

S=$VFS_TMP/m-small
start_mount "$S" max_cached_mb=4 || { echo "Bail out! cannot mount with max_cached_mb=4"; exit 1; }
declare -A SHA=()
for i in 1 2 3 4 5 6 7 8; do
	head -c "$MIB" /dev/urandom >"$VFS_TMP/v"
	cp "$VFS_TMP/v" "$M/app/big$i" && chmod 0644 "$M/app/big$i"
	SHA[big$i]=$(sha_of "$VFS_TMP/v")
	[ "$i" -eq 1 ] && mv "$VFS_TMP/v" "$VFS_TMP/big1"
done
rm -f "$VFS_TMP/v"
echo small-secret >"$M/app/small" && chmod 0644 "$M/app/small"
echo other-small-secret >"$M/app/small2" && chmod 0644 "$M/app/small2"
SHA[small]=$(sha_of "$M/app/small")

paths=("$S/app/small")
for i in 1 2 3 4 5 6 7 8; do paths+=("$S/app/big$i"); done
ok "nobody opens a small secret, then eight different 1 MiB ones" hold "$VFS_TMP/ipc-2" "${paths[@]}"
H2=$HOLDER_PID
sed 's/^/# /' "$VFS_TMP/ipc-2/ready" | grep '# open'
ok "the small one and 3 big ones open (4 MiB: the 4th would pass it)" \
	test "$(grep -c '^open .* ok$' "$VFS_TMP/ipc-2/ready")" -eq 4
ok "the other 5 fail with ENOBUFS" test "$(count "$VFS_TMP/ipc-2" "open big[0-9] ENOBUFS")" -eq 5
ok "the first three are the ones that opened" \
	test "$(grep '^open big.* ok$' "$VFS_TMP/ipc-2/ready" | tr '\n' ' ')" = \
	"open big1 ok open big2 ok open big3 ok "
ok "the small secret reads through its descriptor" every_sha "$VFS_TMP/ipc-2" small "${SHA[small]}"
for i in 1 2 3; do
	ok "big$i reads through its descriptor" every_sha "$VFS_TMP/ipc-2" "big$i" "${SHA[big$i]}"
done
ok "an open value opens again (shared: no new copy)" test "$(as_nobody sha256sum "$S/app/big2" | cut -d' ' -f1)" = "${SHA[big2]}"
ok "so does the open small secret" test "$(as_nobody cat "$S/app/small")" = small-secret
ok "root gets ENOBUFS too for a 1 MiB value not held yet" \
	fails_with "No buffer space available" cat "$S/app/big8"
ok "a small secret not held yet still opens (it fits in what is left)" \
	test "$(as_nobody cat "$S/app/small2")" = other-small-secret
ok "another mount of the same node is not affected" test "$(sha_of "$M/app/big8")" = "${SHA[big8]}"
# overwrite FILE: writes "more" over the first bytes of FILE, in place.
overwrite() { printf more | dd of="$1" conv=notrunc status=none; }
ok "a write that needs its own copy of an open value fails with ENOBUFS" \
	fails_with "No buffer space available" overwrite "$S/app/big1"
ok "... and the secret keeps its value" test "$(sha_of "$M/app/big1")" = "${SHA[big1]}"
ok "the refusal is logged, with the option to raise" \
	grep -q "max_cached_mb=4" "$S.log"
ok "... at most once in a burst of refusals" test "$(grep -c "max_cached_mb=4" "$S.log")" -le 2
ok "the holder closes everything and exits" release "$VFS_TMP/ipc-2" "$H2"
# once_free NAME: NAME opens (after the RELEASEs of the closed files arrived).
reads_back() { [ "$(as_nobody sha256sum "$S/app/$1" | cut -d' ' -f1)" = "${SHA[$1]}" ]; }
for i in 4 5 6 7 8; do
	ok "after close, big$i opens and reads" vfs_wait_until 30 reads_back "big$i"
done
ok "a write that needs its own copy succeeds now" overwrite "$S/app/big1"
overwrite "$VFS_TMP/big1"
ok "... and is committed whole" cmp -s "$M/app/big1" "$VFS_TMP/big1"
ok "the small-budget mount unmounts" fusermount3 -u "$S"
ok "... and its process exits 0" wait "$MOUNT_PID"
vfs_done
