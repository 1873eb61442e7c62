#!/usr/bin/env bash
# The filesystem as users and scripts use it: mount.vaultfs argument
# handling, everyday file operations on an unsealed node, the 1 MiB limit,
# refused operations, and atomic writes under a racing reader.
. "$(dirname "$0")/lib.sh"

M=$VFS_TMP/mnt
vfs_start n1
SOCK=$(vfs_socket n1)

# ---- mount.vaultfs arguments -------------------------------------------------

ok "--help prints usage" bash -c "'$MOUNT_VAULTFS' --help | grep -q '^usage: mount.vaultfs \[SOCKET\] MOUNTPOINT'"
ok "-V prints the version" bash -c "'$MOUNT_VAULTFS' -V | grep -q '^mount.vaultfs (vaultfs) '"
ok "a missing MOUNTPOINT is a usage error" fails_with "missing MOUNTPOINT" "$MOUNT_VAULTFS"
mkdir -p "$VFS_TMP/m2"
ok "an unknown option is refused by name" \
	fails_with "unknown option 'bogus'" "$MOUNT_VAULTFS" "$SOCK" "$VFS_TMP/m2" -o rw,bogus
ok "a bad timeout_ms is refused" \
	fails_with "timeout_ms=abc" "$MOUNT_VAULTFS" "$SOCK" "$VFS_TMP/m2" -o timeout_ms=abc
ok "an unreachable daemon fails with a clear message" \
	fails_with "$VFS_TMP/nowhere.sock" "$MOUNT_VAULTFS" "$VFS_TMP/nowhere.sock" "$VFS_TMP/m2"
ok "... and leaves no mount behind" bash -c "! mountpoint -q '$VFS_TMP/m2'"
# What mount(8) runs for an fstab line with the usual mount(8)-only options.
VFS_MOUNTS+=("$VFS_TMP/m2")
ok "mount(8)-style invocation with fstab options mounts" \
	bash -c "'$MOUNT_VAULTFS' '$SOCK' '$VFS_TMP/m2' -n -s -v \
	-o rw,relatime,defaults,noauto,nofail,_netdev,x-systemd.automount,comment=x,nosuid,nodev,timeout_ms=5000 \
	2>&1 | grep -q '^mount.vaultfs: mounting '"
ok "... the mount is there at once, type fuse.vaultfs, source = socket" \
	bash -c "findmnt -n -o FSTYPE,SOURCE '$VFS_TMP/m2' | grep -qx 'fuse.vaultfs  *$SOCK'"
ok "... with nosuid,nodev and default_permissions" \
	bash -c "findmnt -n -o OPTIONS '$VFS_TMP/m2' | grep -q 'nosuid,nodev.*default_permissions'"
ok "... and unmounts with fusermount3 -u" fusermount3 -u "$VFS_TMP/m2"
ok "-o socket= with a label as the source mounts" \
	"$MOUNT_VAULTFS" none "$VFS_TMP/m2" -o "socket=$SOCK,ro"
ok "... read-only" bash -c "findmnt -n -o OPTIONS '$VFS_TMP/m2' | grep -q '^ro,'"
fusermount3 -u "$VFS_TMP/m2"

# ---- everyday operations ---------------------------------------------------------

ok "mount" vfs_mount n1 "$M"
ok "init" vfs_init "$M"
ok "unseal" vfs_unseal "$M"
ok "ls -a of the root shows .vault" bash -c "ls -a '$M' | grep -qx .vault"
ok ".vault lists its control files" \
	bash -c "ls '$M/.vault' | tr '\n' ' ' | grep -qx 'audit-hash health init join metrics peers rekey remove-peer restore rotate seal snapshot status step-down unseal '"
ok "writable control files are 0600 root, readable ones 0444" \
	bash -c "stat -c '%a %U %n' '$M/.vault/unseal' '$M/.vault/status' | tr '\n' ' ' | grep -q '600 root .*444 root'"

ok "mkdir -p makes nested directories" mkdir -p "$M/secret/db/prod"
ok "echo > writes a secret" bash -c "echo hunter2 > '$M/secret/db/prod/password'"
ok "cat reads it back" test "$(cat "$M/secret/db/prod/password")" = "hunter2"
ok "ls -l shows owner, mode and size" \
	bash -c "ls -l '$M/secret/db/prod' | grep -q '^-rw-r--r-- 1 root root 8 .* password$'"
ok "ls -ld shows directories as 0755 root" \
	bash -c "ls -ld '$M/secret/db' | grep -q '^drwxr-xr-x .* root root '"
ok ">> appends" bash -c "echo more >> '$M/secret/db/prod/password' && test \"\$(cat '$M/secret/db/prod/password')\" = \$'hunter2\\nmore'"
ok "cp copies a secret" bash -c "cp '$M/secret/db/prod/password' '$M/secret/copy' && cmp '$M/secret/db/prod/password' '$M/secret/copy'"
ok "mv renames a file" bash -c "mv '$M/secret/copy' '$M/secret/moved' && ! test -e '$M/secret/copy' && test -f '$M/secret/moved'"
ok "mv over an existing file replaces it" \
	bash -c "echo old > '$M/secret/target' && echo new > '$M/secret/src' && mv '$M/secret/src' '$M/secret/target' &&
		 test \"\$(cat '$M/secret/target')\" = new && ! test -e '$M/secret/src'"
ok "mv renames a directory with its contents" \
	bash -c "mv '$M/secret/db' '$M/secret/database' && test \"\$(head -n1 '$M/secret/database/prod/password')\" = hunter2"
ok "rmdir of a non-empty directory fails (ENOTEMPTY)" fails_with "Directory not empty" rmdir "$M/secret/database"
ok "rm removes a secret" bash -c "rm '$M/secret/moved' && ! test -e '$M/secret/moved'"
ok "rmdir removes an empty directory" bash -c "mkdir '$M/empty' && rmdir '$M/empty' && ! test -e '$M/empty'"
ok "rm -r removes a tree" bash -c "cp -r '$M/secret/database' '$M/tree' && rm -r '$M/tree' && ! test -e '$M/tree'"
ok "chmod is kept" bash -c "chmod 0640 '$M/secret/target' && stat -c %a '$M/secret/target' | grep -qx 640"
ok "chown is kept" bash -c "chown 1234:5678 '$M/secret/target' && stat -c %u:%g '$M/secret/target' | grep -qx 1234:5678"
ok "touch -d sets mtime" bash -c "touch -d '2020-01-02 03:04:05 UTC' '$M/secret/target' && stat -c %Y '$M/secret/target' | grep -qx 1577934245"
# atime is stored as set (touch -a, utimensat, cp -p); reads never change it.
T="$M/secret/times"
ok "a new file's atime is its creation time" bash -c "now=\$(date +%s); : > '$T' &&
	a=\$(stat -c %X '$T') && test \$((a - now)) -ge -2 -a \$((a - now)) -le 5"
ok "touch -a -d sets atime alone" bash -c "m=\$(stat -c %Y '$T') && touch -a -d @1000000000 '$T' &&
	test \"\$(stat -c '%X %Y' '$T')\" = \"1000000000 \$m\""
ok "touch -m -d sets mtime and keeps atime" bash -c "touch -m -d @1500000000 '$T' &&
	test \"\$(stat -c '%X %Y' '$T')\" = '1000000000 1500000000'"
ok "a write keeps atime" bash -c "echo v > '$T' && test \"\$(stat -c %X '$T')\" = 1000000000"
ok "reading does not change atime (noatime)" bash -c "cat '$T' > /dev/null && cat '$T' > /dev/null &&
	test \"\$(stat -c %X '$T')\" = 1000000000"
# cp -p sets the times before close(): the mount commits what cp wrote
# first, so that the commit does not set mtime again.
ok "cp -p preserves atime and mtime" bash -c "touch -m -d @1500000000 '$T' &&
	cp -p '$T' '$M/secret/times-copy' &&
	test \"\$(stat -c '%X %Y' '$M/secret/times-copy')\" = '1000000000 1500000000' &&
	cmp '$T' '$M/secret/times-copy'"
ok "utimensat with UTIME_NOW for atime and UTIME_OMIT for mtime" \
	python3 -c "import ctypes, os, sys, time
class TS(ctypes.Structure): _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]
libc = ctypes.CDLL(None, use_errno=True)
ts = (TS * 2)(TS(0, (1 << 30) - 1), TS(0, (1 << 30) - 2))  # UTIME_NOW, UTIME_OMIT
if libc.utimensat(-100, sys.argv[1].encode(), ts, 0) != 0: sys.exit(os.strerror(ctypes.get_errno()))
st = os.stat(sys.argv[1])
sys.exit(0 if abs(st.st_atime - time.time()) < 5 and int(st.st_mtime) == 1500000000 else 1)" "$T"
ok "touch sets atime and mtime to about now" bash -c "touch -a -d @1000000000 '$T' && touch '$T' &&
	now=\$(date +%s) && set -- \$(stat -c '%X %Y' '$T') &&
	test \$((now - \$1)) -le 5 -a \$((now - \$1)) -ge -2 -a \$((now - \$2)) -le 5 -a \$((now - \$2)) -ge -2"
ok "truncate shrinks a secret" bash -c "printf 0123456789 > '$M/secret/t' && truncate -s 4 '$M/secret/t' && test \"\$(cat '$M/secret/t')\" = 0123"
ok "truncate grows a secret with zeros" bash -c "truncate -s 6 '$M/secret/t' && cmp <(printf '0123\\0\\0') '$M/secret/t'"
ok "truncate beyond 1 MiB fails (EFBIG)" fails_with "File too large" truncate -s 2M "$M/secret/t"
ok "a directory of 300 entries lists completely" \
	bash -c "mkdir '$M/many' && for i in \$(seq 300); do : > '$M/many/f'\$i || exit 1; done; test \$(ls '$M/many' | wc -l) -eq 300"
ok "df reports the mount" bash -c "df -P '$M' | tail -n1 | grep -q '^$SOCK '"
ok "a 255-byte name works" bash -c "n=\$(printf 'n%.0s' \$(seq 255)); echo x > '$M/'\$n && test -f '$M/'\$n && rm '$M/'\$n"
ok "a 256-byte name is refused (ENAMETOOLONG)" \
	fails_with "File name too long" bash -c "n=\$(printf 'n%.0s' \$(seq 256)); echo x > '$M/'\$n"

# ---- 1 MiB limit -------------------------------------------------------------------

head -c 1048576 /dev/urandom > "$VFS_TMP/1m"
head -c 1048577 /dev/urandom > "$VFS_TMP/1m+1"
ok "a 1 MiB secret round-trips" bash -c "cp '$VFS_TMP/1m' '$M/big' && cmp '$VFS_TMP/1m' '$M/big'"
ok "a 1 MiB + 1 write fails with EFBIG" fails_with "File too large" cp "$VFS_TMP/1m+1" "$M/big"
ok "... and the old value is intact" cmp "$VFS_TMP/1m" "$M/big"
ok "ls -l shows 1048576 bytes" bash -c "stat -c %s '$M/big' | grep -qx 1048576"

# ---- refused operations ---------------------------------------------------------

ok "symlinks are refused (EPERM)" fails_with "Operation not permitted" ln -s target "$M/secret/link"
ok "hard links are refused (EPERM)" fails_with "Operation not permitted" ln "$M/secret/target" "$M/secret/hard"
ok "device nodes and fifos are refused (EPERM)" fails_with "Operation not permitted" mkfifo "$M/secret/fifo"
ok "xattrs are refused (ENOTSUP)" fails_with "Operation not supported" \
	python3 -c "import os,sys; os.setxattr(sys.argv[1], 'user.x', b'1')" "$M/secret/target"
for call in "os.getxattr(p, 'user.x')" "os.listxattr(p)" "os.removexattr(p, 'user.x')" \
	"os.getxattr(p, 'security.capability')"; do
	ok "$call is refused (ENOTSUP), again on a second call" bash -c "for i in 1 2; do
		python3 -c \"import os,sys; p=sys.argv[1]; $call\" '$M/secret/target' 2>&1 |
			grep -q 'Operation not supported' || exit 1; done"
done
ok "/.vault cannot be created over" fails_with "File exists" mkdir "$M/.vault"
ok "/.vault cannot be removed" fails_with "Operation not permitted" rmdir "$M/.vault"
ok "/.vault cannot be renamed" fails_with "Operation not permitted" mv "$M/.vault" "$M/vault2"
ok "nothing can be created inside /.vault" fails_with "Operation not permitted" touch "$M/.vault/new"

# ---- sealed -------------------------------------------------------------------------

echo before-seal > "$M/secret/sealed"
ok "seal" bash -c "echo 1 > '$M/.vault/seal'"
ok "while sealed, echo > fails at open() (ENOKEY)" \
	fails_with "Required key not available" bash -c "echo after-seal > '$M/secret/sealed'"
ok "while sealed, /.vault is still listed" bash -c "ls '$M/.vault' | grep -qx status"
ok "unseal again" vfs_unseal "$M"
ok "the refused write left the old value" test "$(cat "$M/secret/sealed")" = before-seal

# ---- atomic writes ----------------------------------------------------------------

atomic_open_write() {
	python3 - "$M/secret/atomic" <<'EOP'
import os, sys
p = sys.argv[1]
with open(p, "w") as f:
    f.write("old")
w = os.open(p, os.O_WRONLY | os.O_TRUNC)
os.write(w, b"new-")
os.write(w, b"value")
with open(p) as r:
    seen = r.read()
assert seen == "old", "reader saw %r before close" % seen
os.close(w)
with open(p) as r:
    seen = r.read()
assert seen == "new-value", "after close: %r" % seen
EOP
}
ok "a value being written stays invisible until close, then appears whole" atomic_open_write

race() {
	local A B fails=$VFS_TMP/race-fails i
	A=$(head -c 60000 /dev/zero | tr '\0' A)
	B=$(head -c 90000 /dev/zero | tr '\0' B)
	printf '%s' "$A" > "$M/secret/race" || return 1
	: > "$fails"
	(
		for i in $(seq 150); do
			printf '%s' "$A" > "$M/secret/race"
			printf '%s' "$B" > "$M/secret/race"
		done
	) &
	local writer=$!
	while kill -0 "$writer" 2>/dev/null; do
		v=$(cat "$M/secret/race")
		if [ "$v" != "$A" ] && [ "$v" != "$B" ]; then
			echo "saw ${#v} bytes: ${v:0:8}...${v: -8}" >> "$fails"
		fi
	done
	wait "$writer"
	if [ -s "$fails" ]; then
		sed 's/^/# /' "$fails" | head -n 5
		return 1
	fi
}
ok "a reader racing a writer sees only whole values (never partial or empty)" race

# A path that rename() atomically replaces always exists: a reader racing the
# renames never gets ENOENT (the kernel resolves the path before it opens the
# inode; vaultfs answers ESTALE for an inode replaced in between, and the
# kernel walks the path again). Found by the fault harness (tests/faults):
# reads of a key that always existed returned "absent".
rename_race() {
	local errs=$VFS_TMP/rename-race-errs reads=0 i
	echo v0 > "$M/secret/renamed" || return 1
	: > "$errs"
	(
		for i in $(seq 300); do
			echo "v$i" > "$M/secret/next.$i" && mv "$M/secret/next.$i" "$M/secret/renamed"
		done
	) &
	local writer=$!
	while kill -0 "$writer" 2>/dev/null; do
		cat "$M/secret/renamed" > /dev/null 2>> "$errs"
		reads=$((reads + 1))
	done
	wait "$writer"
	echo "# $reads reads raced 300 renames"
	sort "$errs" | uniq -c | sed 's/^/# /' | head -n 5
	# The kernel walks the path again only once: a second rename inside
	# that window gives ESTALE, as on NFS. Never ENOENT.
	! grep -v 'Stale file handle' "$errs" | grep -q .
}
ok "a reader racing rename() over the file never finds it missing" rename_race

# What fstat() says about an open handle: the size written through it so
# far, and, once the secret is unlinked (through this mount or another,
# e.g. another node's), no links, while the handle still reads the value.
OTHER=$VFS_TMP/m-other
vfs_mount n1 "$OTHER"
fstat_semantics() {
	python3 - "$M/secret/open-$1" "$2/secret/open-$1" <<'EOP'
import os, sys
path, unlink_path = sys.argv[1], sys.argv[2]
with open(path, "w") as f:
    f.write("old")
fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"0123456789")
assert os.fstat(fd).st_size == 10, os.fstat(fd).st_size
os.write(fd, b"abc")
assert os.fstat(fd).st_size == 13, os.fstat(fd).st_size
os.close(fd)
assert os.stat(path).st_size == 13
fd = os.open(path, os.O_RDONLY)
before = os.fstat(fd)
os.unlink(unlink_path)
st = os.fstat(fd)
assert st.st_nlink == 0, st.st_nlink
assert st.st_size == 13 and st.st_ino == before.st_ino and st.st_mode == before.st_mode
assert os.read(fd, 100) == b"0123456789abc"
os.close(fd)
assert not os.path.exists(path)
EOP
}
ok "fstat on a handle being written shows the size written so far; unlinked while open, it reads on and fstat says nlink 0" \
	fstat_semantics here "$M"
ok "... the same when another mount unlinks it" fstat_semantics other "$OTHER"

vfs_done
