#!/usr/bin/env bash
# Caching kept coherent: the kernel caches names and attributes, the mounts
# hold values (read through the page cache) and attributes, the nodes serve
# reads under leases. A one-node cluster with two mounts, then a second
# node. Whatever one mount changes, every other mount shows at once, on
# either node, although they all cache; a handle that outlives its value
# cannot put it back; a sealed node's mounts show no value; concurrent
# readers never go back in time; and the cache really saves round trips
# (counted on debug mounts, of the leader and of the follower, for reads,
# for writes and for names looked up again).
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

# A directory's attributes: each change in it through A drops them in B's
# kernel, and the notice that does brings them (B answers the kernel's
# GETATTR itself): B sees the new link count and times at once, also for
# changes that come in quick succession, each in a notice of its own or
# several in one.
dir_coherent() {
	local i bad=0 want
	mkdir -p "$A/dd"
	stat "$B/dd" >/dev/null
	for i in $(seq 1 "$1"); do
		mkdir "$A/dd/s$i"
		want=$((i + 2))
		[ "$(stat -c %h "$B/dd")" = "$want" ] || { echo "# nlink stale at $i"; bad=1; }
		echo "x$i" > "$A/dd/f$i"
		touch -d "@$((1000000 + i))" "$A/dd"
		[ "$(stat -c %Y "$B/dd")" = $((1000000 + i)) ] || { echo "# mtime stale at $i"; bad=1; }
		[ "$(stat -c %h "$B/dd")" = "$want" ] || { echo "# nlink stale at $i (2)"; bad=1; }
	done
	return $bad
}
ok "50 rounds of mkdir/create/utime in a directory through A, its attributes seen at once through B" \
	dir_coherent 50

# A handle opened before a write still reads what it opened (its copy),
# and reading it again may put that old value back into the page cache:
# opens after the write must see the new value all the same, while that
# handle is open and after it is closed. Same-length values: only the
# daemon's notice, not the size, tells the kernel the value changed.
old_handles() {
	python3 - "$1" "$2" <<'EOP'
import os, sys
writer, reader = sys.argv[1], sys.argv[2]
def put(v):
    with open(writer, "w") as f:
        f.write(v)
def get():
    with open(reader) as f:
        return f.read()
bad = 0
for i in range(100):
    old, new = "old-%03d" % i, "new-%03d" % i
    put(old)
    fd = os.open(reader, os.O_RDONLY)
    first = os.read(fd, 64).decode()
    if first != old:
        print("# %d: a fresh handle read %r, not %r" % (i, first, old)); bad = 1
    put(new)
    os.lseek(fd, 0, os.SEEK_SET)
    os.read(fd, 64)  # the old copy, possibly into the page cache
    seen = get()
    if seen != new:
        print("# %d: with an old handle open, read %r, not %r" % (i, seen, new)); bad = 1
    os.close(fd)
    seen = get()
    if seen != new:
        print("# %d: after the old handle closed, read %r, not %r" % (i, seen, new)); bad = 1
sys.exit(bad)
EOP
}
ok "100 rounds: a handle that outlived its value never puts it back in front of new opens" \
	old_handles "$A/d/h" "$B/d/h"

# Readers on every mount while one writer counts up: a read that starts
# after a write returned, or after another read returned a value, shows
# that value or a later one (linearizable), whether it opens anew or after
# reading an open handle again.
never_back() {
	python3 - "$@" <<'EOP'
import os, sys, threading, time
writer, readers = sys.argv[1], sys.argv[2:]
with open(writer, "w") as f:
    f.write("0")
acked = 0
seen_max = 0  # the highest value a finished read returned
errors = []
stop = threading.Event()
def write():
    global acked
    k = 0
    # (an exception here ends the writes: acked stays low, which fails)
    while not stop.is_set():
        k += 1
        with open(writer, "w") as f:
            f.write(str(k))
        acked = k
def check(path):
    global seen_max
    floor = max(acked, seen_max)
    with open(path) as f:
        seen = f.read()
    if not seen.isdigit():
        errors.append("%s: read %r, which was never written" % (path, seen))
    elif int(seen) < floor:
        errors.append("%s: read %s after %d was written or read" % (path, seen, floor))
    else:
        seen_max = max(seen_max, int(seen))
def guarded(body):
    def run(*args):
        try:
            body(*args)
        except Exception as e:
            errors.append("%r" % e)
    return run
@guarded
def read_opens(path):
    while not stop.is_set():
        check(path)
@guarded
def read_handle(path):
    fd = os.open(path, os.O_RDONLY)
    while not stop.is_set():
        os.pread(fd, 64, 0)  # an old copy, read again
        check(path)
    os.close(fd)
threads = [threading.Thread(target=write)]
for p in readers:
    threads += [threading.Thread(target=read_opens, args=(p,)),
                threading.Thread(target=read_handle, args=(p,))]
for t in threads:
    t.start()
time.sleep(3)
stop.set()
for t in threads:
    t.join()
print("# %d writes; %d stale reads" % (acked, len(errors)))
for e in errors[:5]:
    print("# " + e)
sys.exit(1 if errors or acked < 10 else 0)
EOP
}
ok "3 s of counting up through one mount: no read through any mount goes back" \
	never_back "$A/d/n" "$A/d/n" "$B/d/n"

# Sealing a node through one mount: once the seal returns, no mount of the
# node shows a value it held (or the page cache kept) before.
sealed_shows_nothing() {
	echo held-value > "$A/d/s"
	cat "$A/d/s" "$B/d/s" >/dev/null
	echo 1 > "$B/.vault/seal" || return 1
	local out
	if out=$(cat "$A/d/s" 2>&1); then
		echo "# read after seal: a value was shown"; return 1
	fi
	echo "# $out"
	case $out in *"Required key not available"*) return 0 ;; esac
	return 1
}
ok "after a seal returns, the mounts show no held value (ENOKEY)" sealed_shows_nothing
ok "unseal again" vfs_unseal "$A"
ok "active again" vfs_wait_until 10 grep -qx 'ha_mode: active' "$A/.vault/status"

# FUSE requests for 20 cats of a cached path, from a debug mount of NODE.
# Uncached, each cat is 2 LOOKUPs and 3 GETATTRs; cached, a name is looked
# up again only when its grant (100 ms) ran out, and cat's fstat after a
# read still asks (the kernel drops atime after every read; the mount
# answers it from the attributes it holds). A name the mount answers from
# what it holds carries what is left of the mount's latest grant, which
# may be little, so the directory's attributes are asked for a few times
# more (MAX_GETATTR 25 on the leader; 22 seen under load). On a follower
# the root's GETATTR may ask too (41): the root is answered even without
# a quorum, and cached only while the node has a lease from a read round.
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
	ok "$node: every cat still opens (the kernel never keeps a value)" \
		test "$opens" -eq 20
	fusermount3 -u "$D"
}
count_cats n1 25

# Daemon calls for 20 `echo > file` of an existing secret, from a debug
# mount of NODE (it logs each call it makes). Each write's open asks the
# kernel for the file's attributes (GETATTR: the last write changed them);
# the write's answer gave them with a grant, so the mount answers that
# itself: one daemon call per write (WRITE), not two. A grant needs the
# node's lease (node_ops.c), which writes renew but which a very slow
# machine may let lapse now and then: hence "at most half" (without the
# grants, every one of them reaches the daemon).
count_writes() {
	local node=$1 log=$VFS_TMP/dbg-w-$1.log
	mkdir -p "$D"
	VFS_MOUNTS+=("$D")
	"$MOUNT_VAULTFS" "$(vfs_socket "$node")" "$D" -d 2>"$log" &
	ok "debug mount of $node for writes" vfs_wait_until 5 mountpoint -q "$D"
	echo w0 >"$D/d/w"
	: >"$log"
	for i in $(seq 1 20); do echo "w$i" >"$D/d/w"; done
	local fuse_getattrs getattrs writes
	fuse_getattrs=$(grep -ac "opcode: GETATTR " "$log")
	getattrs=$(grep -ac "daemon call GETATTR" "$log")
	writes=$(grep -ac "daemon call WRITE" "$log")
	echo "# 20 writes on $node: $fuse_getattrs FUSE GETATTR; daemon calls: $getattrs GETATTR, $writes WRITE"
	ok "$node: every write commits (20 WRITE calls)" test "$writes" -eq 20
	ok "$node: the kernel asks for attributes at each open (>= 20 GETATTRs)" \
		test "$fuse_getattrs" -ge 20
	ok "$node: the mount answers them from the writes' answers (at most half reach the daemon)" \
		test "$getattrs" -le 10
	ok "$node: the last write reads back" test "$(cat "$D/d/w")" = w20
	fusermount3 -u "$D"
}
echo w >"$A/d/w"
count_writes n1

# Names a mount looked up stay with it while its grants run on without a
# gap (cache.h: runs), although the kernel's copy of each expires after
# 100 ms: with a writer keeping the debug mount's grants alive, 5 passes of
# `stat` over 50 names, 0.2 s apart, send no LOOKUP to the daemon but the
# first pass's (250 without; a very slow machine may let a run lapse now
# and then: hence "at most 50"). What the mount holds stays coherent:
# changes through another mount are seen at once (and after the run lapsed
# too: held_after_lapse, below).
stat_quietly() { stat "$@" >/dev/null; }
held_names() {
	local i log=$VFS_TMP/dbg-names.log names=()
	mkdir -p "$A/held" "$D"
	for i in $(seq 1 50); do echo v >"$A/held/m$i"; names+=("$D/held/m$i"); done
	VFS_MOUNTS+=("$D")
	"$MOUNT_VAULTFS" "$(vfs_socket n1)" "$D" -d 2>"$log" &
	ok "debug mount of n1 for names" vfs_wait_until 5 mountpoint -q "$D"
	rm -f "$VFS_TMP/stop-writer"
	(while [ ! -e "$VFS_TMP/stop-writer" ]; do echo x >"$D/d/w"; done) &
	local writer=$!
	ok "50 secrets looked up through the debug mount" stat_quietly "${names[@]}"
	: >"$log"
	local bad=0
	for i in 1 2 3 4 5; do sleep 0.2; stat_quietly "${names[@]}" || bad=1; done
	ok "and again 5 times, 0.2 s apart" test $bad = 0
	local lookups
	lookups=$(grep -ac "daemon call LOOKUP" "$log")
	echo "# 5 passes over 50 held names: $lookups daemon LOOKUPs"
	ok "names looked up once are answered in the mount (at most 50 of 250 reach the daemon)" \
		test "$lookups" -le 50
	chmod 640 "$A/held/m1" && mv "$A/held/m2" "$A/held/m2x" && rm "$A/held/m3" &&
		echo longer >"$A/held/m3"
	ok "a held name's new mode is seen at once" test "$(stat -c %a "$D/held/m1")" = 640
	ok "a held name moved away is gone at once" test ! -e "$D/held/m2"
	ok "its new name is there" test -e "$D/held/m2x"
	ok "a held name removed and made again shows the new secret" \
		test "$(stat -c %s "$D/held/m3")" = 7
	touch "$VFS_TMP/stop-writer"
	wait "$writer"
	fusermount3 -u "$D"
}
held_names

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
ok "3 s of counting up through the leader: no read through either node's mounts goes back" \
	never_back "$A/d/m" "$A/d/m" "$B/d/m" "$VFS_TMP/c/d/m"
ok "3 s of counting up through the follower: no read through either node's mounts goes back" \
	never_back "$VFS_TMP/c/d/k" "$A/d/k" "$VFS_TMP/c/d/k"
count_cats n2 41
count_writes n2

# When every grant of n1's mounts has ended, n1 skips their notices: a
# change made through n2 then reaches no mount of n1. A debug mount of n1
# that held the name before must not show it once a new grant begins a new
# run (cache.h: runs).
held_after_lapse() {
	chmod 600 "$A/held/m4"
	mkdir -p "$D"
	VFS_MOUNTS+=("$D")
	"$MOUNT_VAULTFS" "$(vfs_socket n1)" "$D" 2>/dev/null &
	ok "a mount of n1 again" vfs_wait_until 5 mountpoint -q "$D"
	ok "it holds a name" test "$(stat -c %a "$D/held/m4")" = 600
	sleep 0.3 # every grant of n1's mounts ends
	chmod 604 "$VFS_TMP/c/held/m4"
	cat "$D/d/w" >/dev/null # a new grant for it: a new run
	ok "after a lapse, a name held before it shows a change made meanwhile" \
		test "$(stat -c %a "$D/held/m4")" = 604
	fusermount3 -u "$D"
}
held_after_lapse
vfs_done
