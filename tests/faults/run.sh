#!/usr/bin/env bash
# Jepsen-style fault run: a 3-node vaultfs cluster in network namespaces, one
# mount per node, concurrent clients (faultclient) reading, writing and
# deleting a few keys through every mount while a nemesis injects faults on a
# seeded random schedule; then the history is checked for linearizability
# (lincheck) and the cluster for recovery and secrecy at rest.
#
#   tests/faults/run.sh [--short] [--duration SEC] [--seed N] [--nemesis LIST]
#                       [--keys K] [--clients N] [--epoch SEC] [--keep DIR]
#                       [--campaign N]
#     --short        the CI run: 90 s of faults (default duration 300 s)
#     --seed N       reproduces a run's choices (printed at the start; default random)
#     --nemesis LIST comma-separated subset of: kill,pause,isolate,oneway,bridge,
#                    lossy,stepdown,member,disk-full,disk-error,disk-slow
#                    (default: all)
#     --keep DIR     copy the histories, logs, fault schedule and checker
#                    output to DIR (a failed run always keeps them)
#     --campaign N   N runs one after the other, each with a fresh random seed
#                    (--seed gives the first), the other options as given;
#                    stops at the first failing run and keeps its files
#                    (tests/faults/campaign.sh)
# The disk nemeses hit one node's disk (the leader's half of the time) for 5-8 s:
#   disk-full   its data directory is a tmpfs of VFS_DISK_MB MiB (default 64,
#               mounted on every node's data directory before it starts when
#               disk-full is selected), filled until ENOSPC, then emptied
#   disk-error  its raft.db's writes (eio-write) or fsyncs (eio-fsync) fail
#               with EIO, through the fault VFS of src/raft/faultvfs.h
#   disk-slow   its raft.db's fsyncs take 100-1,000 ms longer (same VFS)
# The fault VFS needs a -Dfailpoints=true build (as every test build is).
# Needs root, network namespaces and nft (nftables). VAULTFSD, MOUNT_VAULTFS,
# LINCHECK and FAULTCLIENT point to the binaries (meson sets them; run by
# hand they default to the build directory $VAULTFS_BUILD, else build-test).
# Output is TAP. A failed run keeps its histories and logs in a directory it
# prints (/tmp/vaultfs-faults-SEED-*).
#
# Pass criteria: every key's history is linearizable (lincheck, which also
# catches a lost acknowledged write, a write applied twice and a read of a
# value nobody wrote: every written value is unique), every nemesis fault
# heals, every node is back, unsealed, takes a write through its mount and
# is caught up at the end, the final reads on every node agree with the
# history, no data directory holds a written value or key name in
# plaintext, and every daemon exits 0 with no sanitizer report. With a disk
# nemesis, also: while one node's disk was bad, a write through another
# node's mount was acknowledged after a failover's grace (election timeout +
# 2 s), and the node takes writes again within 60 s of the fault healing,
# without a restart; the run prints per disk fault how long writes were
# unavailable ("# disk-full on leader n2: writes unavailable for 1.8 s ...").
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_DIR=${VAULTFS_BUILD:-$HERE/../../build-test}
: "${VAULTFSD:=$BUILD_DIR/src/daemon/vaultfsd}"
: "${MOUNT_VAULTFS:=$BUILD_DIR/mount-helper/mount.vaultfs}"
: "${LINCHECK:=$BUILD_DIR/tests/faults/lincheck}"
: "${FAULTCLIENT:=$BUILD_DIR/tests/faults/faultclient}"
export VAULTFSD MOUNT_VAULTFS

DURATION=300
SEED=$(( (RANDOM << 15) | RANDOM ))
NEMESES=kill,pause,isolate,oneway,bridge,lossy,stepdown,member,disk-full,disk-error,disk-slow
KEYS=5
CLIENTS=3
EPOCH=60
KEEP=
# --campaign N: hand every other option to campaign.sh, which runs this
# script N times.
ARGS=("$@")
for ((i = 0; i < ${#ARGS[@]}; i++)); do
	if [ "${ARGS[i]}" = --campaign ]; then
		exec bash "$HERE/campaign.sh" "${ARGS[i + 1]:-}" "${ARGS[@]:0:i}" "${ARGS[@]:i + 2}"
	fi
done
while [ $# -gt 0 ]; do
	case $1 in
	--short) DURATION=90 ;;
	--duration) DURATION=$2; shift ;;
	--seed) SEED=$2; shift ;;
	--nemesis) NEMESES=$2; shift ;;
	--keys) KEYS=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--epoch) EPOCH=$2; shift ;;
	--keep) KEEP=$2; shift ;;
	*) echo "usage: $0 [--short] [--duration SEC] [--seed N] [--nemesis LIST] [--keys K] [--clients N] [--epoch SEC] [--keep DIR] [--campaign N]" >&2
	   exit 2 ;;
	esac
	shift
done

# Timeouts short enough that a fault costs seconds, not minutes: a request
# waits at most 3 s for a leader, a mount at most 8 s for its daemon (a
# paused daemon).
export VFS_ELECTION_MS=${VFS_ELECTION_MS:-1000}
export VFS_REQUEST_TIMEOUT_MS=${VFS_REQUEST_TIMEOUT_MS:-3000}
# Small snapshots, so faults also hit snapshot install and log compaction.
export VFS_SNAPSHOT_THRESHOLD=${VFS_SNAPSHOT_THRESHOLD:-512}
export VFS_TRAILING_LOGS=${VFS_TRAILING_LOGS:-256}
MOUNT_OPTS=timeout_ms=8000
# Disk faults: the other two nodes must be committing again within a
# failover (an election timeout, and 2 s for the election and the clients'
# retries) of a fault's start; a fault holds 5-8 s so that the rest of it
# shows whether they do. A full data directory is this small.
DISK_GRACE_MS=$((VFS_ELECTION_MS + 2000))
DISK_MB=${VFS_DISK_MB:-64}

# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v nft >/dev/null 2>&1 || ! vfs_netns_setup 3; then
	echo "1..0 # SKIP needs root, nft and network namespaces"
	exit 0
fi
for b in "$LINCHECK" "$FAULTCLIENT"; do
	[ -x "$b" ] || { echo "Bail out! $b is not built"; exit 1; }
done
# The disk nemeses' tmpfs mounts go too when the run ends, however it ends:
# unmounted lazily, as the daemons inside may still hold files open (they
# are stopped right after).
DISK_MOUNTS=()
disk_umount_all() {
	local d
	for d in "${DISK_MOUNTS[@]}"; do
		vfs_is_mounted "$d" && { umount -l "$d" 2>/dev/null || true; }
	done
}
trap 'vfs_umount_listed; disk_umount_all; vfs_cleanup; vfs_netns_cleanup' EXIT
RANDOM=$SEED
echo "# seed $SEED, ${DURATION}s, nemesis: $NEMESES (reproduce: $0 --seed $SEED --duration $DURATION --nemesis $NEMESES)"
# Also on stderr: what CI shows of a failed test.
echo "# seed $SEED, ${DURATION}s, nemesis: $NEMESES" >&2

NODES=(n1 n2 n3)
declare -A MNT=() NS=() IP=() STATE=()
HIST=$VFS_TMP/history
mkdir -p "$HIST"
T0=$SECONDS
# The fault schedule on the histories' clock (and the wall clock of the
# daemons' logs): lincheck shows the faults around an anomaly from it.
FAULT_LOG=$VFS_TMP/faults.log
: > "$FAULT_LOG"
# note MESSAGE: one line of the nemesis log, with the time into the run and
# the wall clock (UTC, as the daemons' logs).
note() {
	local clock real
	clock=$("$FAULTCLIENT" --clock)
	real=${clock#* }
	echo "$clock $*" >> "$FAULT_LOG"
	echo "# [$((SECONDS - T0))s $(date -u -d "@${real:0:${#real}-9}.${real: -9}" +%T.%3N)] $*"
}

# ---- the cluster ----

has_nemesis() { [[ ",$NEMESES," == *",$1,"* ]]; }
# disk-error and disk-slow steer each node's raft.db through its own control
# file (src/raft/faultvfs.h); disk-full needs the data directories on small
# filesystems of their own, mounted before the daemons start, so that the
# daemons (each in a mount namespace of its own, a copy made by
# `ip netns exec`) see them.
DISK_INJECT=0
if has_nemesis disk-error || has_nemesis disk-slow; then
	DISK_INJECT=1
fi
disk_control() { echo "$VFS_TMP/$1.diskfault"; }

# start_node NODE: starts (or restarts) NODE's daemon in its namespace.
start_node() {
	if [ "$DISK_INJECT" -eq 1 ]; then
		VAULTFS_DISKFAULT=$(disk_control "$1") vfs_start_in "${NS[$1]}" "$1"
	else
		vfs_start_in "${NS[$1]}" "$1"
	fi
}

# disk_mount NODE: NODE's data directory on a tmpfs of DISK_MB MiB.
disk_mount() {
	local d
	d=$(vfs_data "$1")
	mkdir -p "$d" || return 1
	DISK_MOUNTS+=("$d")
	mount -t tmpfs -o "size=${DISK_MB}m,mode=0700" "vaultfs-$1" "$d"
}

# wipe_data NODE: empties NODE's data directory (a mount point stays).
wipe_data() {
	local d
	d=$(vfs_data "$1")
	if vfs_is_mounted "$d"; then
		find "$d" -mindepth 1 -delete
	else
		rm -rf "$d"
	fi
}

cluster_addr_of() { echo "http://${IP[$1]}:8201"; }
for i in 1 2 3; do
	n=n$i
	NS[$n]=${VFS_NETNS[$i]}
	IP[$n]=10.250.0.$i
	MNT[$n]=$VFS_TMP/m-$n
	STATE[$n]=up
	vfs_config_at "$n" "$(cluster_addr_of "$n")"
	if has_nemesis disk-full; then
		disk_mount "$n" || { echo "Bail out! cannot mount a ${DISK_MB} MiB tmpfs for $n"; exit 1; }
	fi
	start_node "$n" || { echo "Bail out! cannot start $n"; exit 1; }
	if [ "$DISK_INJECT" -eq 1 ] && ! grep -q 'disk fault injection on' "$VFS_TMP/$n.log"; then
		echo "Bail out! $VAULTFSD has no disk fault injection: disk-error and disk-slow need a -Dfailpoints=true build"
		exit 1
	fi
	vfs_mount "$n" "${MNT[$n]}" "$MOUNT_OPTS" || { echo "Bail out! cannot mount $n"; exit 1; }
done

leader_of() { vfs_status_field "${MNT[$1]}" leader; }
voters_of() { awk 'NR > 1 && $5 == "true"' "${MNT[$1]}/.vault/peers" | wc -l; }

form_cluster() {
	vfs_init "${MNT[n1]}" && vfs_unseal "${MNT[n1]}" &&
		vfs_wait_until 20 grep -qx 'ha_mode: active' "${MNT[n1]}/.vault/status" || return 1
	local n
	for n in n2 n3; do
		echo "$(cluster_addr_of n1)" > "${MNT[$n]}/.vault/join" && vfs_unseal "${MNT[$n]}" || return 1
	done
	vfs_wait_until 30 all_healthy && mkdir "${MNT[n1]}/reg" "${MNT[n1]}/tmp"
}

# all_healthy: every node is unsealed and names the same leader, which lists
# three voters.
all_healthy() {
	local n l first=
	for n in "${NODES[@]}"; do
		grep -qx 'sealed: false' "${MNT[$n]}/.vault/status" || return 1
		l=$(leader_of "$n")
		[ -n "$l" ] || return 1
		[ -z "$first" ] || [ "$l" = "$first" ] || return 1
		first=$l
	done
	[ "$(voters_of "$first")" -eq 3 ]
}
# wait_healthy: all_healthy within 60 s (a fault heals), else explains.
wait_healthy() {
	vfs_wait_until 60 all_healthy && return 0
	show_status
	return 1
}
show_status() {
	local n
	for n in "${NODES[@]}"; do
		echo "# $n (${STATE[$n]}): $(tr '\n' ' ' < "${MNT[$n]}/.vault/status" 2>&1)"
	done
}
# write_through NODE: a write through NODE's mount commits (outside reg/,
# so the histories do not see it).
write_through() { date +%s%N > "${MNT[$1]}/tmp/probe-$1"; }
# caught_up: every node has applied everything the leader had committed a
# moment before.
caught_up() {
	local l n target
	find_leader l || return 1
	target=$(vfs_status_field "${MNT[$l]}" commit_index)
	for n in "${NODES[@]}"; do
		[ "$(vfs_status_field "${MNT[$n]}" applied_index)" -ge "$target" ] || return 1
	done
}
ok "a 3-node cluster forms (init, unseal, join, unseal)" form_cluster ||
	{ echo "Bail out! no cluster"; exit 1; }

# ---- the nemesis ----
#
# Each fault picks its victim(s), applies, holds for 1-5 s (a disk fault 5-8
# s), heals, and waits for the whole cluster to be healthy again (a TAP line
# per fault).

# Random choices are made in this shell, never in a $(...) subshell: bash
# reseeds RANDOM in every subshell, which would make runs irreproducible.
# pick VAR ITEM...: sets VAR to one of the ITEMs.
# (Helpers that set a caller's variable keep locals with a _ prefix, so a
# caller's variable is never shadowed.)
pick() {
	local _var=$1
	shift
	printf -v "$_var" '%s' "${@:RANDOM % $# + 1:1}"
}
hold() { local s=$((1 + RANDOM % 5)); note "holding ${s}s"; sleep "$s"; }
# find_leader VAR: sets VAR to the leader the first answering node names.
find_leader() {
	local _n _l
	for _n in "${NODES[@]}"; do
		_l=$(leader_of "$_n" 2>/dev/null) && [ -n "$_l" ] && { printf -v "$1" '%s' "$_l"; return 0; }
	done
	return 1
}
others_than() { local n; for n in "${NODES[@]}"; do [ "$n" != "$1" ] && echo "$n"; done; }
# choose_victim: sets V to the leader half of the time, to any node otherwise.
choose_victim() {
	if [ $((RANDOM % 2)) -eq 0 ] && find_leader V; then
		return 0
	fi
	pick V "${NODES[@]}"
}

# restart_and_unseal NODE: starts NODE's daemon again and unseals it through
# its mount, which reconnects by itself.
restart_and_unseal() {
	start_node "$1" && vfs_wait_until 20 test -r "${MNT[$1]}/.vault/status" &&
		vfs_unseal "${MNT[$1]}"
}

# stop_cleanly NODE: SIGTERM; the daemon must exit 0 within 20 s.
stop_cleanly() {
	local pid=${VFS_PID[$1]} rc
	kill -TERM "$pid"
	vfs_wait_until 20 bash -c "! kill -0 $pid" || { note "$1 ignores SIGTERM"; return 1; }
	wait "$pid"
	rc=$?
	unset "VFS_PID[$1]"
	[ "$rc" -eq 0 ] || { note "$1 exited with status $rc on SIGTERM"; return 1; }
}

nem_kill() {
	choose_victim
	local v=$V
	note "kill: SIGKILL $v"
	vfs_stop "$v" KILL
	STATE[$v]=down
	hold
	note "kill: restart and unseal $v"
	restart_and_unseal "$v" && STATE[$v]=up
}

nem_pause() {
	choose_victim
	local v=$V
	note "pause: SIGSTOP $v"
	kill -STOP "${VFS_PID[$v]}"
	STATE[$v]=paused
	hold
	note "pause: SIGCONT $v"
	kill -CONT "${VFS_PID[$v]}" && STATE[$v]=up
}

nem_isolate() {
	choose_victim
	local v=$V
	note "isolate: $v's link down"
	vfs_netns_link "${NS[$v]}" down
	hold
	note "isolate: $v's link up"
	vfs_netns_link "${NS[$v]}" up
}

# nft_drop_from NODE PEER...: NODE stops receiving anything from the PEERs
# (each rule one way: NODE can still send to them).
nft_drop_from() {
	local node=$1 p
	shift
	nft_in "$node" || return 1
	for p in "$@"; do
		ip netns exec "${NS[$node]}" nft add rule inet nemesis in ip saddr "${IP[$p]}" drop || return 1
	done
}
nft_in() {
	ip netns exec "${NS[$1]}" nft add table inet nemesis &&
		ip netns exec "${NS[$1]}" nft add chain inet nemesis in '{ type filter hook input priority 0; }'
}
nft_clear() {
	local n
	for n in "${NODES[@]}"; do
		ip netns exec "${NS[$n]}" nft delete table inet nemesis 2>/dev/null
	done
	return 0
}

nem_oneway() {
	choose_victim
	local v=$V p
	pick p $(others_than "$v")
	note "oneway: $v hears nothing from $p (but $p hears $v)"
	nft_drop_from "$v" "$p"
	hold
	note "oneway: healed"
	nft_clear
}

# bridge: the middle node talks to both others, which cannot talk to each
# other (the leader may be either side).
nem_bridge() {
	choose_victim
	local m=$V a b
	read -r a b < <(others_than "$m" | tr '\n' ' ')
	note "bridge: $a and $b cut from each other, $m bridges"
	nft_drop_from "$a" "$b" && nft_drop_from "$b" "$a"
	hold
	note "bridge: healed"
	nft_clear
}

nem_lossy() {
	local pct=$((20 + RANDOM % 40))
	choose_victim
	local v=$V
	note "lossy: $v drops ${pct}% of what it receives"
	nft_in "$v" &&
		ip netns exec "${NS[$v]}" nft add rule inet nemesis in numgen random mod 100 "<" "$pct" drop
	hold
	note "lossy: healed"
	nft_clear
}

nem_stepdown() {
	local v
	pick v "${NODES[@]}"
	note "stepdown: written on $v (leader $(leader_of "$v"))"
	# May fail when an election is already running: then nothing moved.
	echo > "${MNT[$v]}/.vault/step-down" 2>/dev/null || note "stepdown: refused on $v"
}

# not_a_member NODE PEER: NODE's configuration no longer lists PEER.
not_a_member() { ! grep -q "^$2 " "${MNT[$1]}/.vault/peers"; }

# member: a follower is removed from the configuration, wiped, and joins
# again from scratch (new data directory, unsealed with the same shares).
nem_member() {
	local l v
	find_leader l || { note "member: no leader, skipped"; return 0; }
	pick v $(others_than "$l")
	note "member: remove-peer $v on leader $l"
	if ! echo "$v" > "${MNT[$l]}/.vault/remove-peer"; then
		# Like any write, a removal whose answer was lost (EAGAIN) may
		# have committed: look before going on.
		if ! vfs_wait_until 10 not_a_member "$l" "$v"; then
			note "member: remove-peer failed and $v is still a member: nothing to heal"
			return 0
		fi
		note "member: remove-peer failed, but $v was removed"
	fi
	STATE[$v]=down
	stop_cleanly "$v" || return 1
	wipe_data "$v"
	hold
	note "member: $v joins again via $l"
	start_node "$v" && vfs_wait_until 20 test -r "${MNT[$v]}/.vault/status" &&
		echo "$(cluster_addr_of "$l")" > "${MNT[$v]}/.vault/join" &&
		vfs_unseal "${MNT[$v]}" && STATE[$v]=up
}

# ---- disk faults ----
#
# A disk fault hits one node's storage, the leader's half of the time. While
# it holds, the other two nodes are a majority that can persist: they must be
# committing writes again within DISK_GRACE_MS (a failover) of the fault's
# start. Once it heals, the node must recover by itself: no restart.

disk_hold() { local s=$((5 + RANDOM % 4)); note "holding ${s}s"; sleep "$s"; }
now_ns() { local c; c=$("$FAULTCLIENT" --clock) && echo "${c%% *}"; }

# disk_victim: sets V as choose_victim does, and ROLE to what V is now.
disk_victim() {
	local leader=
	choose_victim
	find_leader leader
	if [ "$V" = "$leader" ]; then ROLE=leader; else ROLE=follower; fi
}

# disk_fill NODE: fills NODE's data directory's filesystem until ENOSPC.
disk_fill() {
	local d used free
	d=$(vfs_data "$1")
	used=$(du -sm "$d" | cut -f1)
	# dd stops at the first short write, with ENOSPC: the filesystem is full.
	dd if=/dev/zero of="$d/filler" bs=1M 2>/dev/null
	# The node's answer to a full disk can free some (SQLite deletes its
	# WAL when the session closes): fill that too, once it has.
	sleep 1
	dd if=/dev/zero of="$d/filler" bs=1M oflag=append conv=notrunc 2>/dev/null
	free=$(df --output=avail -B1 "$d" | tail -n 1)
	free=${free// /}
	note "disk-full: $1's data took ${used} MiB; now $free bytes free"
	# What the node frees as it stops (its WAL, its index) may leave some
	# KiB: far below what it needs to resume (NODE_STORAGE_MIN_FREE).
	[ "$free" -lt $((1 << 20)) ]
}
disk_full_apply() {
	vfs_is_mounted "$(vfs_data "$1")" || { note "disk-full: $1's data directory is no tmpfs"; return 1; }
	note "disk-full: filling $1's data directory ($ROLE)"
	disk_fill "$1"
}
disk_full_heal() { rm -f "$(vfs_data "$1")/filler"; }

# The apply functions set DISK_DETAIL to what exactly went wrong.
disk_error_apply() {
	local mode
	pick mode eio-write eio-fsync
	DISK_DETAIL=$mode
	note "disk-error: $1's raft.db: $mode ($ROLE)"
	echo "$mode" > "$(disk_control "$1")"
}
disk_slow_apply() {
	local ms=$((100 + RANDOM % 901))
	DISK_DETAIL="+$ms ms"
	note "disk-slow: $1's raft.db: fsyncs $ms ms slower ($ROLE)"
	echo "slow-fsync $ms" > "$(disk_control "$1")"
}
disk_vfs_heal() { rm -f "$(disk_control "$1")"; }

# write_acks NODE FROM TO: the completion times (ns on the histories' clock),
# sorted, of the writes and deletes acknowledged through the other nodes'
# mounts that began at FROM or later and completed by TO.
write_acks() {
	awk -v skip="m-$1" -v from="$2" -v to="$3" '
		FNR == 1 { mount = "" }
		$1 == "#" && $2 == "process" { mount = $5; next }
		/^#/ { next }
		mount != skip && ($2 == "w" || $2 == "d") && $7 == "ok" && $5 >= from && $6 <= to { print $6 }
	' "$HIST"/hist-* | sort -n
}

# read_acks NODE FROM TO: how many reads through NODE's own mount that began
# at FROM or later and completed by TO were answered with a value (a node
# whose disk is bad still serves the reads it can prove linearizable; the
# checker judges them with the rest).
read_acks() {
	awk -v mine="m-$1" -v from="$2" -v to="$3" '
		FNR == 1 { mount = "" }
		$1 == "#" && $2 == "process" { mount = $5; next }
		/^#/ { next }
		mount == mine && $2 == "r" && $7 == "ok" && $5 >= from && $6 <= to { n++ }
		END { print n + 0 }
	' "$HIST"/hist-*
}

# disk_window KIND NODE ROLE FROM TO [NOTE]: reports how long writes were
# unavailable through the other nodes while NODE's disk was bad (the longest
# stretch of the window without an acknowledged write, from its start), and
# records in DISK_STALLED a window in which none was acknowledged after the
# grace. NOTE qualifies the fault in both.
DISK_REPORT=()
DISK_STALLED=()
disk_window() {
	local v=$2 from=$4 to=$5 about="$1 on $3 $2${6:-}" n first gap late open span what others
	read -r n first gap late open span < <(write_acks "$v" "$from" "$to" | awk \
		-v from="$from" -v to="$to" -v grace="$DISK_GRACE_MS" '
		BEGIN { prev = from; gap = 0 }
		{
			if (n++ == 0) first = $1 - from
			if ($1 - prev > gap) gap = $1 - prev
			prev = $1
			if ($1 - from >= grace * 1e6) late++
		}
		END {
			open = to - prev > gap
			if (open) gap = to - prev
			printf "%d %.2f %.1f %d %d %.1f\n", n, n ? first / 1e9 : -1, gap / 1e9, late, open, (to - from) / 1e9
		}')
	others=$(others_than "$v" | paste -sd/)
	if [ "$open" -eq 1 ]; then
		what="at least $gap s, until the fault healed"
	else
		what="$gap s"
	fi
	what="$about: writes unavailable for $what ($n acknowledged through $others in the fault's $span s"
	if [ "$n" -gt 0 ]; then
		what="$what, the first $first s after it began)"
	else
		what="$what)"
	fi
	what="$what; $(read_acks "$v" "$from" "$to") reads served through $v meanwhile"
	DISK_REPORT+=("$what")
	echo "# $what"
	if [ "$late" -eq 0 ]; then
		what="$about: no write through $others acknowledged from $((DISK_GRACE_MS / 1000)) s after the fault began until it healed ($span s): the majority stopped committing"
		DISK_STALLED+=("$what")
		echo "# $what"
	fi
}

# disk_recovered KIND NODE: once its disk is healthy again NODE must serve
# writes and catch up by itself; the harness never restarts it to help. (A
# status that looks healthy is not enough: a leader that cannot append still
# names itself leader of three voters.)
disk_recovered() {
	local t0=$SECONDS
	vfs_wait_until 60 all_healthy && vfs_wait_until 30 write_through "$2" &&
		vfs_wait_until 30 caught_up && return 0
	note "$1: $2 has not recovered $((SECONDS - t0)) s after its disk healed (it must, without a restart)"
	write_through "$2" 2>&1 | sed 's/^/# a write through its mount: /'
	kill -0 "${VFS_PID[$2]}" 2>/dev/null || note "$1: $2's daemon has exited"
	show_status
	echo "# $2's last errors and warnings:"
	grep -E ': (error|warning): ' "$VFS_TMP/$2.log" | tail -n 5 | sed 's/^/#   /'
	return 1
}

# disk_fault KIND APPLY HEAL: APPLY NODE makes a victim's disk bad, HEAL NODE
# makes it good again.
disk_fault() {
	local kind=$1 apply=$2 heal=$3 v role from to before='' l=''
	DISK_DETAIL=
	# On a cluster that cannot commit already, the numbers say little about
	# this fault alone.
	if ! all_healthy || ! find_leader l || ! write_through "$l" 2>/dev/null; then
		before=" (the cluster took no write before it)"
	fi
	disk_victim
	v=$V role=$ROLE
	if ! "$apply" "$v"; then
		"$heal" "$v"
		note "$kind: could not be applied on $v"
		return 1
	fi
	from=$(now_ns)
	disk_hold
	to=$(now_ns)
	"$heal" "$v"
	note "$kind: $v's disk healthy again"
	disk_window "$kind${DISK_DETAIL:+ ($DISK_DETAIL)}" "$v" "$role" "$from" "$to" "$before"
	disk_recovered "$kind" "$v"
}
nem_disk_full() { disk_fault disk-full disk_full_apply disk_full_heal; }
nem_disk_error() { disk_fault disk-error disk_error_apply disk_vfs_heal; }
nem_disk_slow() { disk_fault disk-slow disk_slow_apply disk_vfs_heal; }

IFS=, read -r -a NEMESIS_LIST <<<"$NEMESES"
# A nemesis disk-full is the function nem_disk_full.
nemesis_fn() { echo "nem_${1//-/_}"; }
for f in "${NEMESIS_LIST[@]}"; do
	declare -F "$(nemesis_fn "$f")" >/dev/null || { echo "Bail out! unknown nemesis $f"; exit 1; }
done
declare -A FAULTS=()

# The faults run in this shell (they keep VFS_PID up to date for cleanup),
# so they cannot be a `bash -c`: apply each directly and check after.
fault_round() {
	local f=$1
	FAULTS[$f]=$((${FAULTS[$f]:-0} + 1))
	"$(nemesis_fn "$f")" && wait_healthy
}

# ---- the run ----

T0=$SECONDS
"$FAULTCLIENT" --out "$HIST" --seed "$SEED" --duration "$DURATION" --clients "$CLIENTS" \
	--keys "$KEYS" --epoch "$EPOCH" "${MNT[n1]}" "${MNT[n2]}" "${MNT[n3]}" \
	> "$VFS_TMP/faultclient.out" 2>&1 &
CLIENT_PID=$!
while [ $((SECONDS - T0)) -lt $((DURATION - 10)) ]; do
	sleep $((1 + RANDOM % 3))
	pick f "${NEMESIS_LIST[@]}"
	ok "fault $f: applied, healed, the cluster is healthy again" fault_round "$f"
done
nft_clear
note "nemesis done: $(for f in "${!FAULTS[@]}"; do printf '%s=%s ' "$f" "${FAULTS[$f]}"; done)"

client_finished() {
	vfs_wait_gone "$CLIENT_PID" $((DURATION + 60)) || return 1
	sed 's/^/# /' "$VFS_TMP/faultclient.out"
	grep -q '^faultclient: ' "$VFS_TMP/faultclient.out"
}
ok "the clients finish" client_finished

ok "every node is up, unsealed and names the same leader" wait_healthy
# A status can look healthy on a cluster that cannot commit (a leader that
# cannot append still names itself leader of three voters).
writes_everywhere() {
	local n rv=0
	for n in "${NODES[@]}"; do
		vfs_wait_until 30 write_through "$n" ||
			{ write_through "$n" 2>&1 | sed "s/^/# $n: /"; rv=1; }
	done
	return $rv
}
ok "a write through every node's mount commits" writes_everywhere
show_indexes() {
	local n
	for n in "${NODES[@]}"; do
		echo "# $n: $(grep -E '^(ha_mode|term|commit_index|applied_index):' "${MNT[$n]}/.vault/status" | tr '\n' ' ')"
	done
}
catches_up() { vfs_wait_until 60 caught_up || { show_indexes; false; }; }
ok "every node catches up with the leader's commit index" catches_up

"$FAULTCLIENT" --final --out "$HIST" --duration "$DURATION" --keys "$KEYS" --epoch "$EPOCH" \
	--first-process 1000 "${MNT[n1]}" "${MNT[n2]}" "${MNT[n3]}" > "$VFS_TMP/final.out" 2>&1
final_reads_ok() {
	sed 's/^/# /' "$VFS_TMP/final.out"
	! grep -q ' fail$' "$HIST"/hist-100[0-9]
}
ok "the final reads of every key succeed on every node" final_reads_ok

some_work_done() {
	local w r
	w=$(cat "$HIST"/hist-* | awk '$2 == "w" && $7 == "ok"' | wc -l)
	r=$(cat "$HIST"/hist-* | awk '$2 == "r" && $7 == "ok" && $4 != "-"' | wc -l)
	echo "# acknowledged writes: $w, reads that saw a value: $r"
	[ "$w" -ge 20 ] && [ "$r" -ge 20 ]
}
ok "the clients got work done under faults" some_work_done

# The disk faults' windows, all together (the numbers for a closing note).
disk_majority_committed() {
	local r
	[ "${#DISK_REPORT[@]}" -gt 0 ] || { echo "# no disk fault in this run"; return 0; }
	for r in "${DISK_REPORT[@]}"; do echo "# $r"; done
	for r in "${DISK_STALLED[@]}"; do echo "# stalled: $r"; done
	[ "${#DISK_STALLED[@]}" -eq 0 ]
}
if has_nemesis disk-full || has_nemesis disk-error || has_nemesis disk-slow; then
	ok "while one node's disk was bad, the other two kept committing writes" disk_majority_committed
fi

linearizable() {
	"$LINCHECK" --faults "$FAULT_LOG" "$HIST"/hist-* > "$VFS_TMP/lincheck.out" 2>&1
	local rc=$?
	sed 's/^/# /' "$VFS_TMP/lincheck.out" | tail -n 40
	return $rc
}
ok "every key's history is linearizable (lincheck)" linearizable

# A positive control on this run's own history: one final read made to
# return a value that was certainly overwritten (the key's first acknowledged
# write, when another acknowledged write began after it completed) must be
# caught, so the check above is not passing vacuously.
checker_catches_stale_read() {
	local mutated=$VFS_TMP/mutated.hist
	grep -hv '^#' "$HIST"/hist-* | awk '
		{ line[NR] = $0; p[NR] = $1; op[NR] = $2; k[NR] = $3; v[NR] = $4
		  inv[NR] = $5; cmp[NR] = $6; out[NR] = $7 }
		op[NR] == "w" && out[NR] == "ok" && (!(k[NR] in first) || cmp[NR] < cmp[first[k[NR]]]) { first[k[NR]] = NR }
		END {
			for (i = 1; i <= NR; i++)
				if (op[i] == "w" && out[i] == "ok" && k[i] in first && inv[i] > cmp[first[k[i]]])
					later[k[i]] = 1
			done = 0
			for (i = 1; i <= NR; i++) {
				if (!done && p[i] >= 1000 && op[i] == "r" && out[i] == "ok" && (k[i] in later) &&
				    v[i] != v[first[k[i]]]) {
					print p[i], "r", k[i], v[first[k[i]]], inv[i], cmp[i], "ok"
					done = 1
					continue
				}
				print line[i]
			}
			exit !done
		}' > "$mutated" || { echo "# no final read to mutate"; return 1; }
	"$LINCHECK" --quiet "$mutated" > /dev/null 2>&1
	local rc=$?
	echo "# lincheck on the mutated history: exit $rc (1 = not linearizable)"
	[ "$rc" -eq 1 ]
}
ok "lincheck catches a stale read planted in this history" checker_catches_stale_read

# No written value and no key name in plaintext in any data directory
# (SQLite files, WAL, snapshots).
plaintext_absent() {
	local pats=$VFS_TMP/patterns n found=0
	{
		cat "$HIST"/hist-* | awk '$2 == "w" { print $4 }'
		cat "$HIST"/hist-* | awk '!/^#/ { print $3 }' | sort -u
	} > "$pats"
	for n in "${NODES[@]}"; do
		if grep -r -a -l -F -f "$pats" "$(vfs_data "$n")"; then
			echo "# plaintext found under $n's data directory; what matched (test data):"
			grep -r -a -o -F -f "$pats" "$(vfs_data "$n")" | sort | uniq -c | head -n 10 |
				sed 's/^/#   /'
			found=1
		fi
	done
	echo "# searched for $(wc -l < "$pats") values and names"
	[ "$found" -eq 0 ]
}
ok "no data directory holds a written value or key name in plaintext" plaintext_absent

# What stopped a process, on stderr (CI shows a failed test's stderr; the
# logs themselves go with the test's directory).
crash_reports() {
	local f
	for f in "$VFS_TMP"/*.log "$VFS_TMP"/sanitizer.*; do
		[ -e "$f" ] || continue
		grep -a -B3 -A30 -E 'Assertion|AddressSanitizer|LeakSanitizer|runtime error|SUMMARY:' "$f" |
			head -n 80 | sed "s|^|${f##*/}: |"
	done
}
[ "$VFS_FAILED" -ne 0 ] && crash_reports >&2
if [ "$VFS_FAILED" -ne 0 ] && [ -z "$KEEP" ]; then
	KEEP=$(mktemp -d "/tmp/vaultfs-faults-$SEED-XXXXXX")
fi
if [ -n "$KEEP" ]; then
	mkdir -p "$KEEP" && cp -r "$HIST" "$VFS_TMP"/*.log "$VFS_TMP"/*.out "$VFS_TMP"/sanitizer.* "$KEEP"/ 2>/dev/null
	[ -s "$VFS_TMP/lincheck.out" ] && grep -B2 -A30 'NOT linearizable$' "$VFS_TMP/lincheck.out" \
		> "$KEEP/lincheck-anomalies.txt"
	echo "# histories and logs kept in $KEEP"
fi
vfs_done
