#!/usr/bin/env bash
# New secrets: open(O_CREAT) without O_EXCL answers at once and the secret
# is created on the daemon with its value, at the close after a write (or
# an fsync, or the last close, or when something in the same mount looks
# at the name). So creates in one directory do not wait for each other's
# commits (the kernel holds the directory's lock through CREATE), and no
# other mount ever sees a new secret without its value. O_EXCL still
# creates at once. Two mounts of one node (A, B; A with allow_other); the
# node's fsyncs take 1 s (its disk-fault file), so that what waits for a
# commit shows in the order of events.
. "$(dirname "$0")/lib.sh"

A=$VFS_TMP/a B=$VFS_TMP/b
VAULTFS_DISKFAULT=$VFS_TMP/n1.diskfault vfs_start n1
vfs_mount n1 "$A" allow_other && vfs_mount n1 "$B" || { echo "Bail out! cannot mount"; exit 1; }
ok "init" vfs_init "$A"
ok "unseal" vfs_unseal "$A"
ok "active" vfs_wait_until 10 grep -qx 'ha_mode: active' "$A/.vault/status"
mkdir -p "$A/d" "$A/shared" && chmod 1777 "$A/shared"
echo "slow-fsync 1000" > "$VFS_TMP/n1.diskfault"

# Four writers create a secret each in one directory at once: every open()
# returns before any close() does. Committing in CREATE, the second open
# waits for the first create's commit, and the first close comes before
# the third open.
parallel_creates() {
	python3 - "$A/d" <<'EOP'
import os, sys, threading, time
d = sys.argv[1]
opened, closed = [0.0] * 4, [0.0] * 4
def writer(i):
    fd = os.open(os.path.join(d, "p%d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    opened[i] = time.monotonic()
    os.write(fd, b"value-%d\n" % i)
    os.close(fd)
    closed[i] = time.monotonic()
ts = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("# opens returned after %.2f s at most; the first close after %.2f s"
      % (max(opened) - min(opened), min(closed) - min(opened)))
sys.exit(0 if max(opened) < min(closed) else 1)
EOP
}
ok "4 creates in one directory: every open() returns before any close()" parallel_creates
all_four() {
	local i
	for i in 0 1 2 3; do [ "$(cat "$B/d/p$i")" = "value-$i" ] || return 1; done
}
ok "and every value is there, seen through the other mount" all_four

# A new secret held open with part of its value written: the other mount
# does not see it; once closed, it sees it with its whole value. fstat on
# the handle shows what was written so far, with the mode asked for.
held_open() {
	python3 - "$A/d/held" "$B/d/held" "$B/d" <<'EOP'
import os, stat, sys
mine, other, other_dir = sys.argv[1:4]
fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
os.write(fd, b"part-one,")
st = os.fstat(fd)
bad = 0
if st.st_size != 9 or stat.S_IMODE(st.st_mode) != 0o640 or not stat.S_ISREG(st.st_mode):
    print("# fstat: size %d mode %o" % (st.st_size, st.st_mode)); bad = 1
if os.path.exists(other) or "held" in os.listdir(other_dir):
    print("# the other mount sees the secret before its value is committed"); bad = 1
os.write(fd, b"part-two")
os.close(fd)
with open(other) as f:
    v = f.read()
if v != "part-one,part-two":
    print("# the other mount reads %r" % v); bad = 1
sys.exit(bad)
EOP
}
ok "a new secret held open: unseen elsewhere, then seen whole after close" held_open

# Looking at the name in the same mount creates the secret first (empty:
# its value comes at close), so this mount and the others agree.
same_mount_sees() {
	python3 - "$A/d" "$B/d" <<'EOP'
import os, sys
a, b = sys.argv[1:3]
fd = os.open(os.path.join(a, "seen"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"v")
bad = 0
if "seen" not in os.listdir(a):
    print("# ls in the creating mount misses it"); bad = 1
if os.stat(os.path.join(b, "seen")).st_size != 0:
    print("# the other mount does not see it, empty, once listed"); bad = 1
os.close(fd)
if open(os.path.join(b, "seen")).read() != "v":
    print("# its value did not follow"); bad = 1
sys.exit(bad)
EOP
}
ok "ls in the creating mount creates it; the value follows at close" same_mount_sees

# A new secret renamed or removed while open (rename and unlink in the
# same mount create it first).
rename_open() {
	python3 - "$A/d" "$B/d" <<'EOP'
import os, sys
a, b = sys.argv[1:3]
fd = os.open(os.path.join(a, "tmp"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"moved")
os.rename(os.path.join(a, "tmp"), os.path.join(a, "final"))
os.close(fd)
bad = 0
if open(os.path.join(b, "final")).read() != "moved" or os.path.exists(os.path.join(b, "tmp")):
    print("# rename of an open new secret lost it"); bad = 1
fd = os.open(os.path.join(a, "gone"), os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"x")
os.unlink(os.path.join(a, "gone"))
try:
    os.close(fd)  # the value has nowhere to go: ENOENT, as for any unlinked secret
except FileNotFoundError:
    pass
if os.path.exists(os.path.join(b, "gone")):
    print("# an unlinked new secret came back"); bad = 1
sys.exit(bad)
EOP
}
ok "a new secret renamed or unlinked while open" rename_open

# touch creates at once (futimens goes to the daemon); `: > f` creates as
# its last descriptor closes.
ok "touch: seen by the other mount at once" sh -c "touch '$A/d/touched' && test -e '$B/d/touched'"
: > "$A/d/empty"
ok "': > f': seen by the other mount" vfs_wait_until 10 test -e "$B/d/empty"
ok "and empty" test ! -s "$B/d/empty"

# O_EXCL creates at once: the other mount sees the name while the file is
# still open, and an O_EXCL create of it there fails.
excl() {
	python3 - "$A/d/excl" "$B/d/excl" <<'EOP'
import errno, os, sys
mine, other = sys.argv[1:3]
fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
bad = 0
if not os.path.exists(other):
    print("# O_EXCL did not create at once"); bad = 1
try:
    os.close(os.open(other, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    print("# a second O_EXCL create succeeded"); bad = 1
except OSError as e:
    if e.errno != errno.EEXIST:
        print("# a second O_EXCL create: %s" % e); bad = 1
os.write(fd, b"excl")
os.close(fd)
sys.exit(bad)
EOP
}
ok "O_EXCL: created at once, a second O_EXCL create fails with EEXIST" excl

# Another mount creates the same name first: this close fails with EEXIST
# and the other value stays.
conflict() {
	python3 - "$A/d/race" "$B/d/race" <<'EOP'
import errno, os, sys
mine, other = sys.argv[1:3]
fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with open(other, "w") as f:
    f.write("theirs")
os.write(fd, b"mine")
try:
    os.close(fd)
    print("# close succeeded"); sys.exit(1)
except OSError as e:
    if e.errno != errno.EEXIST:
        print("# close: %s" % e); sys.exit(1)
sys.exit(0 if open(other).read() == "theirs" else 1)
EOP
}
ok "created elsewhere first: close() fails with EEXIST, their value stays" conflict

# Whoever looks the name up first, the secret belongs to its creator.
owner() {
	setpriv --reuid=65534 --regid=65534 --clear-groups -- /usr/bin/python3 - "$A/shared/nob" <<'EOP' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"n")
time.sleep(1.5)
os.close(fd)
EOP
	local pid=$! st
	vfs_wait_until 10 sh -c "ls '$A/shared' | grep -qx nob" || { wait "$pid"; return 1; }
	st=$(stat -c '%u:%g %a' "$B/shared/nob")
	wait "$pid" || return 1
	[ "$st" = "65534:65534 600" ] || { echo "# owner and mode: $st"; return 1; }
	[ "$(cat "$B/shared/nob")" = n ]
}
ok "root's ls creates nobody's new secret as nobody's" owner

# Once every member applies it (a node alone here: at once), the secret
# and its first value are one Raft entry: create, write and close commit
# once.
rm -f "$VFS_TMP/n1.diskfault"
ok "the cluster's feature level is 2" vfs_wait_until 10 grep -qx 'feature_level: 2' "$A/.vault/status"
applied() { awk '$1 == "applied_index:" { print $2 }' "$A/.vault/status"; }
one_entry_each() {
	local before after i
	before=$(applied)
	for i in 1 2 3 4 5 6 7 8; do printf 'v%s' "$i" > "$A/d/one$i" || return 1; done
	after=$(applied)
	echo "# 8 new secrets: applied index $before -> $after"
	for i in 1 2 3 4 5 6 7 8; do [ "$(cat "$B/d/one$i")" = "v$i" ] || return 1; done
	[ $((after - before)) -eq 8 ]
}
ok "a new secret with its value is one Raft entry" one_entry_each

# What the daemon is asked for a new secret, from a debug mount (it logs
# each call): the kernel's LOOKUP of the free name, answered with whether
# a write could commit, and the commit; no WRITABLE round trip of its own.
D=$VFS_TMP/dbg
mkdir -p "$D"
VFS_MOUNTS+=("$D")
log=$VFS_TMP/dbg-n1.log
"$MOUNT_VAULTFS" "$(vfs_socket n1)" "$D" -d 2>"$log" &
ok "debug mount of n1" vfs_wait_until 5 mountpoint -q "$D"
calls_per_create() {
	local i
	: >"$log"
	for i in 1 2 3 4 5 6 7 8; do printf 'v%s' "$i" > "$D/d/dbg$i" || return 1; done
	writable=$(grep -ac "daemon call WRITABLE$" "$log")
	commits=$(grep -ac "daemon call CREATE_VALUE$" "$log")
	getattrs=$(grep -ac "daemon call GETATTR$" "$log")
	# The new secrets' own node ids, from 2^63 on (frontend.c).
	new_getattrs=$(grep -ac "opcode: GETATTR (3), nodeid: 92233720368547758" "$log")
	echo "# 8 new secrets: $writable WRITABLE, $commits CREATE_VALUE, $getattrs GETATTR" \
		"daemon calls; $new_getattrs FUSE GETATTR of a new secret"
	[ "$commits" -eq 8 ]
}
ok "8 new secrets through the debug mount" calls_per_create
ok "a new secret costs no WRITABLE call: its LOOKUP answered that" test "$writable" -eq 0
# Each create changes the directory: the notice that drops its attributes
# in the kernel brings the new ones, and the kernel's GETATTR of the
# directory before the next create is answered by the mount.
ok "the directory's GETATTR after a create is answered by the mount (<= 2 of 8)" \
	test "$getattrs" -le 2
# The open() that creates checks permissions on the new node: its
# attributes, from the CREATE, are kept by the kernel just long enough.
ok "no GETATTR of a new secret's node (the kernel kept its CREATE's)" \
	test "$new_getattrs" -eq 0
new_fstat() {
	python3 - "$D/d/fst" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # not O_EXCL: made at its commit
before = os.fstat(fd)
os.write(fd, b"hello")
after_write = os.fstat(fd)
os.fchmod(fd, 0o640)
after_chmod = os.fstat(fd)
os.close(fd)
ok = (before.st_size == 0 and after_write.st_size == 5 and
      after_chmod.st_mode & 0o777 == 0o640 and os.stat(sys.argv[1]).st_size == 5)
print("# fstat of a new secret: size %d, then %d; mode %o" %
      (before.st_size, after_write.st_size, after_chmod.st_mode & 0o777))
sys.exit(0 if ok else 1)
PY
}
ok "fstat of a new secret shows its writes and its chmod at once" new_fstat

vfs_done
