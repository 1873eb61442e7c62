#!/usr/bin/env bash
# Security on real processes: a running three-node cluster under attack on
# its cluster port, key material in logs and in a core dump, and secrecy at
# rest after all of it. (The local API socket is covered by test_access:
# non-root peers refused, other users and 0600 secrets through allow_other,
# garbage frames.)
#
# 1. n3 joins through an on-path proxy in front of n1 (tests/integration/
#    netprobe.c) that records the session and tampers with n3's first three
#    authenticated sessions: a flipped bit in a frame, a forged frame (well-
#    formed length, bad tag) and a frame cut in half. Then outsiders attack
#    a quiet cluster: garbage, truncated handshakes, a bad AUTH, the recorded
#    session replayed (also with flipped bytes and with a forged frame after
#    the handshake), and a join-info (VFSJ) request. After each: the node
#    logged it, no node's term or commit index moved, every daemon runs and a
#    write through a follower is read on another node. An outsider never gets
#    past AUTH, so the frame forgeries can only be tried on path. Last, a
#    slowloris flood holds more idle handshakes than the node admits from
#    one address while a follower reconnects from that same address.
#    (The node evicts the flooding address's oldest idle handshake to make
#    room: before, it refused new connections, so a few dozen idle sockets
#    kept peers out; then it evicted the oldest of anyone's, so that one
#    address could push out every other address's handshakes.)
# 2. No unseal share, root key or keyring key, in any encoding, in any log.
# 3. No key material in the core dump of an unsealed daemon, memory and
#    registers; none in the memory of the core of the mount it was unsealed
#    through (its FUSE request buffers kept the last share before they were
#    wiped after each write).
# 4. No secret value or name in any file under any data directory (Raft
#    log, its WAL and snapshots, seal file), nor in any log.
#
# Key material only ever lives in shell variables and pipes
# (tests/integration/keyprobe.c recovers it from the shares).
. "$(dirname "$0")/lib.sh"
: "${KEYPROBE:?KEYPROBE must point to the keyprobe tool}"
: "${NETPROBE:?NETPROBE must point to the netprobe tool}"

# Snapshots every 32 entries, so the data directories hold some. Default
# election timing: an attack must not move the term, and a loaded
# sanitizer build must not hold elections on its own.
export VFS_SNAPSHOT_THRESHOLD=32 VFS_TRAILING_LOGS=8

# Distinctive markers in every secret name and value, for the at-rest and
# core searches.
DIR=sec-dir-Kq9ZmW3x
NAMEMARK=Lr4TyP8v
VALMARK=Hc2NbX6q
value_of() { printf 'value of %s: %s, not to be stored in clear' "$1" "$VALMARK"; }

HELPERS=()         # background processes this test starts besides daemons
CORE_PATTERN_SAVED= # /proc/sys/kernel/core_pattern while we point it elsewhere
CORE_PATTERN_ORIG=$(cat /proc/sys/kernel/core_pattern)
sec_cleanup() {
	local p
	core_pattern_restore
	touch "$VFS_TMP/bg.stop" 2>/dev/null
	for p in "${HELPERS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${HELPERS[@]}"; do wait "$p" 2>/dev/null; done
}
trap 'sec_cleanup; vfs_cleanup' EXIT

declare -A MNT=()
vfs_start_mount n1 n2 n3
port_of() { vfs_cluster_addr "$1" | sed 's/.*://'; }
leader() { vfs_status_field "${MNT[n1]}" leader; }
# follower_other_than NAME...: a node that is neither the leader nor NAME.
follower_other_than() {
	local n l
	l=$(leader)
	for n in n3 n2 n1; do
		[[ " $l $* " == *" $n "* ]] || { echo "$n"; return; }
	done
}

# ---- Secrets: EXPECT holds every value the cluster acknowledged ----

declare -A EXPECT=()
put() { # put MNT NAME VALUE
	printf '%s' "$3" > "$1/$DIR/$2" || return 1
	EXPECT[$2]=$3
}
# The background writer: bg-I through n2, one every 0.1 s, until bg.stop;
# idle (bg.paused) while bg.pause exists. Failed writes are listed in
# bg.failed, the last index written in bg.count.
bg_writer() {
	local i=0
	while [ ! -e "$VFS_TMP/bg.stop" ]; do
		if [ -e "$VFS_TMP/bg.pause" ]; then
			touch "$VFS_TMP/bg.paused"
			sleep 0.05
			continue
		fi
		rm -f "$VFS_TMP/bg.paused"
		i=$((i + 1))
		printf '%s' "$(value_of "bg$i")" > "${MNT[n2]}/$DIR/bg-$i-$NAMEMARK" ||
			echo "$i" >> "$VFS_TMP/bg.failed"
		# Renamed into place: a reader never sees it half written.
		echo "$i" > "$VFS_TMP/bg.count.new" && mv "$VFS_TMP/bg.count.new" "$VFS_TMP/bg.count"
		sleep 0.1
	done
}
bg_count() { cat "$VFS_TMP/bg.count" 2>/dev/null || echo 0; }
bg_no_failure() {
	[ ! -s "$VFS_TMP/bg.failed" ] || { echo "# failed writes: $(tr '\n' ' ' < "$VFS_TMP/bg.failed")"; return 1; }
}
bg_stop() {
	touch "$VFS_TMP/bg.stop"
	wait "$BG_PID"
	local i
	for i in $(seq 1 "$(bg_count)"); do EXPECT[bg-$i-$NAMEMARK]=$(value_of "bg$i"); done
}

# ---- 1a. Forming the cluster; n3 joins through a tampering proxy ----

ok "init n1" vfs_init "${MNT[n1]}"
ok "unseal n1" vfs_unseal "${MNT[n1]}"
# Every key of the cluster, recovered from the five shares: name hex lines.
KEYS=$(printf '%s\n' "${VFS_KEYS[@]}" | "$KEYPROBE" keys --seal-file "$(vfs_data n1)/seal")
ok "keyprobe recovers the root key and keyring keys from the shares" \
	test "$(printf '%s\n' "$KEYS" | grep -c -E '^(share[1-5]|share[1-5]\.y|root|term1\.(key|data|name)|cluster) [0-9a-f]{64,66}$')" -eq 15

ok "n2 joins n1 directly" bash -c "echo $(vfs_cluster_addr n1) > '${MNT[n2]}/.vault/join'"
ok "unseal n2" vfs_unseal "${MNT[n2]}"
mkdir -p "${MNT[n1]}/$DIR"
ok "a large secret (part of every snapshot)" \
	put "${MNT[n1]}" "big-$NAMEMARK" "$(for i in $(seq 1 2000); do printf '%s-%05d.' "$VALMARK" "$i"; done)"
bg_writer &
BG_PID=$!
HELPERS+=("$BG_PID")

# The proxy relays connection N to n1 with action N: the join-info fetch
# passes, n3's first three authenticated sessions are tampered with in
# their second frame (the first is the address frame; the second carries
# the JOIN request), the fourth passes and is the recording replayed below.
PPORT=$(vfs_free_port)
mkdir -p "$VFS_TMP/rec"
"$NETPROBE" proxy "$PPORT" "$(port_of n1)" "$VFS_TMP/rec" pass flip:2 inject:2 truncate:2 pass \
	> "$VFS_TMP/proxy.out" 2>&1 &
HELPERS+=("$!")
# Not by connecting: that would use up the proxy's first action.
vfs_wait_until 10 bash -c "ss -Hltn 'sport = :$PPORT' | grep -q ."
n1_lines=$(wc -l < "$VFS_TMP/n1.log")
ok "n3 joins through the proxy" bash -c "echo http://127.0.0.1:$PPORT > '${MNT[n3]}/.vault/join'"
ok "unseal n3: its JOIN request only gets through on the fourth session" vfs_unseal "${MNT[n3]}"
three_voters() { vfs_three_voters "${MNT[n1]}"; }
ok "three voters" vfs_wait_until 30 three_voters
# The nodes' identity secret keys join the key material searched for below.
KEYS=$(printf '%s\n' "${VFS_KEYS[@]}" | "$KEYPROBE" keys --seal-file "$(vfs_data n1)/seal" \
	--identity "$(vfs_data n1)/identity" --identity "$(vfs_data n2)/identity" \
	--identity "$(vfs_data n3)/identity")
ok "keyprobe opens each node's identity file with the keyring: three secret keys" \
	test "$(printf '%s\n' "$KEYS" | grep -c -E '^identity[1-3]\.sk [0-9a-f]{64}$')" -eq 3
proxy_did() { grep -q "^conn $1 $2 applied=$3 " "$VFS_TMP/proxy.out"; }
proxy_tampered() {
	proxy_did 1 pass no && proxy_did 2 flip:2 yes && proxy_did 3 inject:2 yes &&
		proxy_did 4 truncate:2 yes
}
ok "the proxy flipped a bit, forged a frame and cut a frame in n3's sessions 2-4" \
	vfs_wait_until 10 proxy_tampered
n1_since() { tail -n "+$((n1_lines + 1))" "$VFS_TMP/n1.log"; }
ok "n1 dropped the sessions with the flipped bit and the forged frame" \
	test "$(n1_since | grep -c 'dropped connection from n3@.*: handshake or frame rejected')" -eq 2
ok "n1 logged the frame cut in half" \
	test "$(n1_since | grep -c 'dropped connection from n3@.*: closed in the middle of a frame')" -eq 1
ok "n3 was added once, from the untouched session" \
	test "$(cat "$VFS_TMP"/n[123].log | grep -c 'adding n3@')" -eq 1
bg_wrote() { [ "$(bg_count)" -gt 0 ]; }
bg_going() { vfs_wait_until 10 bg_wrote && bg_no_failure; }
ok "the background writer (through n2) kept going during the join" bg_going

echo "# ${SECONDS}s"
# ---- 1b. Outsiders attack the quiet cluster ----

cluster_raft() {
	local n
	for n in n1 n2 n3; do
		echo "$n term $(vfs_status_field "${MNT[$n]}" term) commit $(vfs_status_field "${MNT[$n]}" commit_index)"
	done
}
raft_still() { local a; a=$(cluster_raft); sleep 0.3; [ "$a" = "$(cluster_raft)" ]; }
# quiesce: pauses the writer and waits until Raft holds still everywhere.
quiesce() {
	touch "$VFS_TMP/bg.pause"
	vfs_wait_until 20 test -e "$VFS_TMP/bg.paused" && vfs_wait_until 10 raft_still
}
log_since_has() { # NODE LINE REGEX
	tail -n "+$(($2 + 1))" "$VFS_TMP/$1.log" | grep -q -E "$3"
}
same_raft() {
	[ "$1" = "$2" ] || { echo "# before: $1"; echo "# after:  $2"; return 1; }
}
all_alive() {
	local n
	for n in "${!VFS_PID[@]}"; do
		kill -0 "${VFS_PID[$n]}" 2>/dev/null || { echo "# $n's daemon is gone"; return 1; }
	done
}
CHECKS=0
# cluster_serves: every daemon runs; a write through a follower is read on
# another node.
cluster_serves() {
	local f r v
	all_alive || return 1
	f=$(follower_other_than)
	r=$(leader)
	CHECKS=$((CHECKS + 1))
	v=$(value_of "ck$CHECKS")
	put "${MNT[$f]}" "ck-$CHECKS-$NAMEMARK" "$v" &&
		test "$(cat "${MNT[$r]}/$DIR/ck-$CHECKS-$NAMEMARK")" = "$v"
}
# attack DESC NODE REGEX CMD...: on a quiet cluster, CMD attacks NODE's
# cluster port and checks what the attacker saw; then NODE must have logged
# a line matching REGEX, no term or commit index may have moved, and the
# cluster must still serve.
attack() {
	local desc=$1 node=$2 regex=$3 before start
	shift 3
	quiesce || echo "# the cluster did not quiesce"
	before=$(cluster_raft)
	start=$(wc -l < "$VFS_TMP/$node.log")
	ok "$desc: $node closes the connection" "$@"
	ok "$desc: $node logs it" vfs_wait_until 10 log_since_has "$node" "$start" "$regex"
	ok "$desc: nothing accepted (no term or commit index moved)" same_raft "$before" "$(cluster_raft)"
	rm -f "$VFS_TMP/bg.pause"
	ok "$desc: every daemon runs; a follower's write is read on another node" cluster_serves
}
# sends PORT MS REGEX [FLIP...]: sends stdin to PORT; what netprobe saw
# ("received=N end=eof|reset|timeout") must match REGEX. The server's bytes
# are left in $VFS_TMP/answer.
sends() {
	local port=$1 ms=$2 regex=$3 seen
	shift 3
	seen=$("$NETPROBE" send "$port" "$ms" "$@" 2>&1 > "$VFS_TMP/answer")
	echo "# $seen"
	[[ "$seen" =~ $regex ]]
}
hello() { printf 'VFSC\x03'; head -c 64 /dev/urandom; printf '\x01\x00\x00\x00'; } # a fresh HELLO (e_i, s_i, term 1)
garbage() { head -c 4096 /dev/urandom | sends "$1" 3000 'received=0 end=(eof|reset)'; }
after_magic() { { printf 'VFSC\xff'; head -c 4096 /dev/urandom; } | sends "$1" 3000 'received=0 end=(eof|reset)'; }
half_hello() { { printf 'VFSC\x03'; head -c 10 /dev/urandom; } | sends "$1" 500 'received=0 end=timeout'; }
half_auth() { { hello; head -c 16 /dev/urandom; } | sends "$1" 500 'received=100 end=timeout'; }
bad_auth() { { hello; head -c 32 /dev/urandom; } | sends "$1" 3000 'received=100 end=(eof|reset)'; }
REC=$VFS_TMP/rec/c2s.5
replay() { sends "$1" 3000 'received=100 end=(eof|reset)' "${@:2}" < "$REC"; }
# Two replays must draw two different REPLY nonces.
replay_twice() {
	local a
	replay "$1" || return 1
	a=$(od -An -v -tx1 "$VFS_TMP/answer" | tr -d ' \n')
	replay "$1" || return 1
	[ "$a" != "$(od -An -v -tx1 "$VFS_TMP/answer" | tr -d ' \n')" ]
}
# The recorded HELLO and AUTH, then a frame with a good length and a bad tag.
forged_frame() {
	{ head -c 105 "$REC"; printf '\x40\x00\x00\x00'; head -c 64 /dev/urandom; } |
		sends "$1" 3000 'received=100 end=(eof|reset)'
}
vfsj() { printf VFSJ | sends "$1" 3000 'received=[1-9][0-9]* end=eof' && cp "$VFS_TMP/answer" "$VFS_TMP/vfsj.answer"; }

recorded_session() {
	echo "# c2s.5: $(stat -c %s "$REC") bytes"
	[ "$(stat -c %s "$REC")" -gt 150 ] && [ "$(head -c 5 "$REC" | od -An -c | tr -d ' ')" = VFSC003 ]
}
ok "the recording is a real session: HELLO, AUTH and frames" recorded_session
L=$(leader)
LP=$(port_of "$L")
REJECTED='handshake or frame rejected'
attack "(a) 4 KiB of random bytes" "$L" 'dropped unauthenticated connection from 127.0.0.1: not a vaultfs cluster connection' garbage "$LP"
attack "(a) garbage after the magic" "$L" "dropped unauthenticated connection from 127.0.0.1: $REJECTED" after_magic "$LP"
attack "(b) a third of a HELLO, then close" "$L" 'dropped unauthenticated connection from 127.0.0.1: closed by peer' half_hello "$LP"
attack "(b) HELLO and half an AUTH, then close" "$L" 'dropped unauthenticated connection from 127.0.0.1: closed by peer' half_auth "$LP"
attack "(b) HELLO and a wrong AUTH" "$L" "dropped unauthenticated connection from 127.0.0.1: $REJECTED" bad_auth "$LP"
attack "(c) the recorded session replayed to n1, twice (fresh nonces)" n1 "$REJECTED" replay_twice "$(port_of n1)"
[ "$L" != n1 ] && attack "(c) the recorded session replayed to the leader" "$L" "$REJECTED" replay "$LP"
FRAME1=$((105 + 4 + 8))
attack "(d) the replay with a byte flipped in frames 1 and 2" n1 "$REJECTED" \
	replay "$(port_of n1)" "$FRAME1" "$(($(stat -c %s "$REC") - 10))"
attack "(d) the recorded handshake, then a forged frame (bad tag)" n1 "$REJECTED" forged_frame "$(port_of n1)"
attack "(e) a join-info request from an outsider" "$L" 'join-info request from 127.0.0.1: answered' vfsj "$LP"

# What VFSJ gave away: u32 status, u32 length, u8 shares, u8 threshold,
# u32 length + sealed keyring, u32 length + leader address (with its public
# identity); nothing else.
hex_of() { od -An -v -tx1 "$1" | tr -d ' \n'; }
le32_at() { # HEX OFFSET: the little-endian u32 at byte OFFSET
	local h=${1:$(($2 * 2)):8}
	echo $((16#${h:6:2}${h:4:2}${h:2:2}${h:0:2}))
}
vfsj_is_sealed_only() {
	local a s klen llen
	a=$(hex_of "$VFS_TMP/vfsj.answer")
	s=$(hex_of "$(vfs_data "$L")/seal")
	klen=$(le32_at "$a" 10)
	llen=$(le32_at "$a" $((14 + klen)))
	[ "${a:0:8}" = 00000000 ] && [ "${a:16:4}" = 0503 ] || { echo "# header: ${a:0:20}"; return 1; }
	[ $((8 + $(le32_at "$a" 4))) -eq $((${#a} / 2)) ] && [ $((18 + klen + llen)) -eq $((${#a} / 2)) ] ||
		{ echo "# unexpected length"; return 1; }
	[ "${a:28:$((2 * klen))}" = "${s:28:$((2 * klen))}" ] || { echo "# not the seal file's keyring"; return 1; }
	# The leader's Raft address names its identity (public key, bytes 8-39
	# of its identity file).
	local id want
	id=$(od -An -v -tx1 -j 8 -N 32 "$(vfs_data "$L")/identity" | tr -d ' \n')
	want="$(leader)@$(vfs_status_field "${MNT[$L]}" leader_addr)#$id"
	[ "${a:$((2 * (18 + klen))):$((2 * llen))}" = "$(printf '%s' "$want" | od -An -v -tx1 | tr -d ' \n')" ] ||
		{ echo "# the address is not the leader's ($want)"; return 1; }
}
ok "(e) the answer holds shares, threshold, the seal file's keyring and the leader's address, nothing else" vfsj_is_sealed_only
no_key_in() { # FILE...: keyprobe finds no key material
	local found
	found=$(printf '%s\n' "$KEYS" | "$KEYPROBE" find "$@")
	local rv=$?
	[ -n "$found" ] && sed 's/^/# /' <<<"$found"
	[ "$rv" -eq 0 ]
}
ok "(e) no key material in it, in any encoding" no_key_in "$VFS_TMP/vfsj.answer"
shares_open_vfsj() {
	printf '%s\n' "${VFS_KEYS[@]}" | "$KEYPROBE" keys --join-answer "$VFS_TMP/vfsj.answer" > /dev/null
}
ok "(e) it is the real keyring, sealed: the shares open it" shares_open_vfsj

echo "# ${SECONDS}s"
# ---- 1c. Slowloris: more idle half-handshakes than the node admits ----
#
# 70 connections (the node admits 8 unauthenticated ones per address, 64 in
# all) send a third of a HELLO and wait; each one the node closes at its
# handshake deadline is opened again at once, for 15 s. Meanwhile a
# follower seals and unseals: it must reconnect to the leader, from the
# flood's own address (every node here is on 127.0.0.1), and get a write
# through.
L=$(leader)
F=$(follower_other_than n2) # not the writer's node
start=$(wc -l < "$VFS_TMP/$L.log")
ok "seal $F" bash -c "echo 1 > '${MNT[$F]}/.vault/seal'"
"$NETPROBE" flood "$(port_of "$L")" 70 15 > "$VFS_TMP/flood.out" 2>&1 &
FLOOD_PID=$!
HELPERS+=("$FLOOD_PID")
ok "70 idle connections to $L" vfs_wait_until 10 grep -qx ready "$VFS_TMP/flood.out"
ok "unseal $F during the flood" vfs_unseal "${MNT[$F]}"
CHECKS=$((CHECKS + 1))
write_during_flood() {
	put "${MNT[$F]}" "ck-$CHECKS-$NAMEMARK" "$(value_of "ck$CHECKS")" &&
		{ kill -0 "$FLOOD_PID" || { echo "# the flood was over first"; return 1; }; }
}
ok "$F's write reaches the leader over a new connection while the flood lasts" write_during_flood
ok "and is read on $L" test "$(cat "${MNT[$L]}/$DIR/ck-$CHECKS-$NAMEMARK")" = "$(value_of "ck$CHECKS")"
wait "$FLOOD_PID"
FLOOD=$(tail -n 1 "$VFS_TMP/flood.out")
echo "# flood: $FLOOD"
flood_field() { sed -n "s/.*\<$1=\([0-9-]*\).*/\1/p" <<<"$FLOOD"; }
# Past 8 from one address its oldest go at once (62 of the 70, and one or
# two more for the follower's own connections), and the deadline closes the
# rest, every 5 s.
ok "the handshake deadline closed the idle connections after ~5 s" \
	test "$(flood_field late)" -ge 6 -a "$(flood_field late_min_ms)" -ge 4500 -a "$(flood_field late_max_ms)" -le 8000
ok "past the cap per address its oldest were evicted at once" test "$(flood_field early)" -ge 62
# Every flood connection was dropped (evicted, timed out or closed): more
# than 70, yet the node may log at most 20 such lines per 10 s: two or
# three windows.
flood_lines() { tail -n "+$((start + 1))" "$VFS_TMP/$L.log"; }
flood_logged_sparingly() {
	local n
	n=$(flood_lines | grep -c 'dropped unauthenticated')
	echo "# $L logged $n of $(flood_field opened) drops"
	[ "$(flood_field opened)" -ge 76 ] && [ "$n" -le 60 ]
}
# At most once per 10 s, whatever the number of evictions.
flood_evict_lines() {
	local n line='more than 8 unauthenticated connections from 127.0.0.1; closing its oldest'
	n=$(flood_lines | grep -c "$line")
	[ "$n" -ge 1 ] && [ "$n" -le 2 ]
}
ok "$L said that it evicts (once per 10 s), not once per connection" flood_evict_lines
ok "$L logged its drops at a limited rate" flood_logged_sparingly
# The first line of the next window counts what was left out; one garbage
# connection a second makes sure there is such a line.
counts_left_out() {
	local deadline=$((SECONDS + 15))
	until flood_lines | grep -q 'earlier such lines not logged: at most 20 per 10 s'; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		head -c 8 /dev/urandom | "$NETPROBE" send "$(port_of "$L")" 100 > /dev/null 2>&1
		sleep 1
	done
}
ok "a later line says how many lines the limit left out" counts_left_out
ok "every daemon still runs" all_alive
ok "the background writer saw no failure during the attacks" bg_no_failure
bg_stop

echo "# ${SECONDS}s"
# ---- Seal/unseal cycles of every node (for the log and core checks) ----

# Unsealed together: one alone would wait for a quorum until its timeout.
seal_all_unseal_all() {
	local n p rv=0 pids=()
	for n in n1 n2 n3; do echo 1 > "${MNT[$n]}/.vault/seal" || return 1; done
	for n in n1 n2 n3; do
		vfs_unseal "${MNT[$n]}" &
		pids+=("$!")
	done
	for p in "${pids[@]}"; do wait "$p" || rv=1; done
	[ "$rv" -eq 0 ] && vfs_wait_until 20 three_voters
}
ok "seal all three nodes, unseal all three" seal_all_unseal_all
ok "the cluster serves after the cycle" vfs_wait_until 20 cluster_serves

echo "# ${SECONDS}s"
# ---- 3. Core dumps of an unsealed daemon and of its mount ----
#
# n3 restarts with -d (core dumps are off by default: test_hygiene), with
# RLIMIT_CORE unlimited, with ASan allowed to dump
# (disable_coredump=0; its shadow memory stays out through
# use_madv_dontdump) and SIGABRT left to the kernel, and with its keys
# mlock'ed (disable_mlock = false, the default). It is unsealed through a
# second mount started the same way (-o dumpable), since the shares pass through the
# mount's FUSE buffers. Once n3 serves, both get SIGABRT; the kernel writes
# the cores where core_pattern says, which points into $VFS_TMP only for
# that moment.
CORE_DIR=$VFS_TMP/cores
DUMPABLE_ASAN="$ASAN_OPTIONS:disable_coredump=0:handle_abort=0:use_madv_dontdump=1"
core_pattern_restore() {
	[ -n "$CORE_PATTERN_SAVED" ] || return 0
	printf '%s\n' "$CORE_PATTERN_SAVED" > /proc/sys/kernel/core_pattern
	CORE_PATTERN_SAVED=
}
core_pattern_set() {
	CORE_PATTERN_SAVED=$(cat /proc/sys/kernel/core_pattern) || return 1
	echo "$CORE_DIR/core.%p" > /proc/sys/kernel/core_pattern
}
start_dumpable() {
	local name=$1
	mkdir -p "$CORE_DIR"
	sed -i 's/^disable_mlock = true$/disable_mlock = false/' "$VFS_TMP/$name.hcl"
	ASAN_OPTIONS=$DUMPABLE_ASAN prlimit --core=unlimited -- \
		"$VAULTFSD" -config="$VFS_TMP/$name.hcl" -d >> "$VFS_TMP/$name.log" 2>&1 &
	VFS_PID[$name]=$!
	vfs_wait_until 20 test -S "$(vfs_socket "$name")"
}
DUMP_MNT=$VFS_TMP/m-n3-dump
mount_dumpable() {
	mkdir -p "$DUMP_MNT"
	VFS_MOUNTS+=("$DUMP_MNT")
	ASAN_OPTIONS=$DUMPABLE_ASAN prlimit --core=unlimited -- \
		"$MOUNT_VAULTFS" -o dumpable "$(vfs_socket n3)" "$DUMP_MNT" >> "$VFS_TMP/n3-mount.log" 2>&1 &&
		mountpoint -q "$DUMP_MNT"
}
vfs_stop n3 TERM
ok "n3 restarts with core dumps enabled" start_dumpable n3
ok "a second mount of n3, with core dumps enabled" mount_dumpable
ok "unseal n3 through it" vfs_unseal "$DUMP_MNT"
n3_serves() {
	local i
	for i in 1 2 3; do put "${MNT[n3]}" "cd-$i-$NAMEMARK" "$(value_of "cd$i")" || return 1; done
	for i in 1 2 3; do
		[ "$(cat "${MNT[n3]}/$DIR/cd-$i-$NAMEMARK")" = "$(value_of "cd$i")" ] || return 1
	done
	[ "$(cat "${MNT[n3]}/$DIR/bg-1-$NAMEMARK")" = "$(value_of bg1)" ]
}
ok "n3 serves: writes through it, reads of earlier secrets" n3_serves
echo "# fs.suid_dumpable=$(cat /proc/sys/fs/suid_dumpable) (matters only for set-id processes; neither daemon nor mount changes ids)"
DAEMON_PID=${VFS_PID[n3]}
MOUNT_PID=$(pgrep -f -- " $DUMP_MNT\$")
# dump PID: SIGABRT; the core must be an ELF file, $CORE_DIR/core.PID.
dump() {
	kill -ABRT "$1" || return 1
	vfs_wait_gone "$1" 60
	[ "$(head -c 4 "$CORE_DIR/core.$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]
}
core_pattern_set
ok "n3's mount is dumpable: SIGABRT leaves an ELF core" dump "$MOUNT_PID"
ok "n3's daemon is dumpable: SIGABRT leaves an ELF core" dump "$DAEMON_PID"
unset "VFS_PID[n3]"
core_pattern_restore
ok "core_pattern is restored" test "$(cat /proc/sys/kernel/core_pattern)" = "$CORE_PATTERN_ORIG"
CORE=$CORE_DIR/core.$DAEMON_PID
MCORE=$CORE_DIR/core.$MOUNT_PID
for c in "$CORE" "$MCORE"; do
	echo "# $(basename "$c"): $(stat -c %s "$c" 2>/dev/null) bytes apparent, $(du -k "$c" 2>/dev/null | cut -f1) KiB on disk"
done
ok "the cores are of manageable size (ASan shadow left out)" \
	test "$(du -k -c "$CORE" "$MCORE" | tail -n 1 | cut -f1)" -lt 1048576
# Positive controls: the daemon's ordinary heap is in its core, e.g. its
# copy of the sealed keyring (not secret: the seal file has it too); the
# mount's memory has its socket path.
core_has() { # NAME HEX FIND-ARGS...
	printf '%s %s\n' "$1" "$2" | "$KEYPROBE" find "${@:3}" | grep -q "^FOUND $1 raw "
}
SEALED=$(hex_of "$(vfs_data n3)/seal")
ok "positive control: the daemon's core holds its heap (the sealed keyring)" \
	core_has sealed-keyring "${SEALED:28:128}" "$CORE"
ok "positive control: the memory of the mount's core holds its socket path" \
	core_has socket-path "$(printf '%s' "$(vfs_socket n3)" | od -An -v -tx1 | tr -d ' \n')" --memory "$MCORE"
# Every pattern in every encoding, between random bytes, through a pipe.
finds_every_encoding() {
	local found n
	n=$(printf '%s\n' "$KEYS" | grep -c .) # 16 cluster keys and 3 identities
	found=$(printf '%s\n' "$KEYS" | "$KEYPROBE" find <(printf '%s\n' "$KEYS" | "$KEYPROBE" encode) | grep -c '^FOUND ')
	[ "$n" -eq 19 ] && [ "$found" -eq $((n * 4)) ] || { echo "# found $found of $((n * 4))"; return 1; }
}
ok "positive control: keyprobe finds every key in every encoding" finds_every_encoding
ok "no unseal share, root key, keyring key, subkey or identity key in the daemon's core (memory and registers)" \
	no_key_in "$CORE"
ok "no unseal share in the memory of the mount's core" no_key_in --memory "$MCORE"
# Not asserted: a worker thread's SIMD registers keep the last bytes it
# copied, e.g. part of the init output, until it copies something else.
echo "# mount core, registers included: $(printf '%s\n' "$KEYS" | "$KEYPROBE" find "$MCORE" | cut -d' ' -f2,3 | tr '\n' ' ')"
for m in "$VALMARK" "$NAMEMARK" "$DIR"; do
	echo "# secret value/name marker '$m': $(grep -a -o -F "$m" "$CORE" | wc -l)x in the daemon's core, $(grep -a -o -F "$m" "$MCORE" | wc -l)x in the mount's"
done

echo "# ${SECONDS}s"
# ---- 2. Keys in logs ----

LOGS=("$VFS_TMP"/*.log "$VFS_TMP"/*.out)
ok "no key material in any daemon, mount or tool log (${#LOGS[@]} files)" no_key_in "${LOGS[@]}"

echo "# ${SECONDS}s"
# ---- 4. Secrecy at rest, and in the logs ----

all_snapshotted() {
	local n
	for n in n1 n2 n3; do
		[ "$(vfs_raft_sql "$n" 'SELECT count(*) FROM snapshots')" -ge 1 ] || return 1
	done
}
ok "every node holds a snapshot" all_snapshotted
echo "# data files: $(cd "$VFS_TMP" && find n?-data -type f -printf '%p:%s ')"
markers_in_clear() {
	grep -r -a -q -F -e "$VALMARK" "${MNT[n1]}/$DIR" && ls "${MNT[n1]}/$DIR" | grep -q -F "$NAMEMARK"
}
ok "positive control: the markers are there in the plaintext (through the mount)" markers_in_clear
# none_of_the_markers FILE...: prints the files that hold one.
none_of_the_markers() {
	local hits
	hits=$(grep -r -a -l -F -e "$VALMARK" -e "$NAMEMARK" -e "$DIR" "$@")
	[ -z "$hits" ] || { printf '# %s\n' $hits; return 1; }
}
ok "no secret value or name in any file of any data directory (log, WAL, snapshots, seal)" \
	none_of_the_markers "$VFS_TMP"/n?-data
ok "no secret value or name in any log" none_of_the_markers "${LOGS[@]}"

# Nothing appeared or changed but the test's own writes.
tree_is_expected() {
	local m=${MNT[n1]} want got
	want=$(printf '%s\n' "${!EXPECT[@]}" | LC_ALL=C sort)
	got=$(ls -A "$m/$DIR" | LC_ALL=C sort)
	[ "$want" = "$got" ] || { echo "# names differ: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | head -5 | tr '\n' ' ')"; return 1; }
	[ "$(ls -A "$m" | LC_ALL=C sort | tr '\n' ' ')" = ".vault $DIR " ] || { echo "# top level: $(ls -A "$m")"; return 1; }
	local k
	for k in "${!EXPECT[@]}"; do
		[ "$(cat "$m/$DIR/$k")" = "${EXPECT[$k]}" ] || { echo "# $k differs"; return 1; }
	done
}
echo "# ${SECONDS}s"
ok "the tree holds exactly the ${#EXPECT[@]} secrets the test wrote, with their values" tree_is_expected
vfs_done
