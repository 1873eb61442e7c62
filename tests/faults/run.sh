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
#                    lossy,stepdown,member (default: all)
#     --keep DIR     copy the histories, logs, fault schedule and checker
#                    output to DIR (a failed run always keeps them)
#     --campaign N   N runs one after the other, each with a fresh random seed
#                    (--seed gives the first), the other options as given;
#                    stops at the first failing run and keeps its files
#                    (tests/faults/campaign.sh)
# Needs root, network namespaces and nft (nftables). VAULTFSD, MOUNT_VAULTFS,
# LINCHECK and FAULTCLIENT point to the binaries (meson sets them; run by
# hand they default to the build directory $VAULTFS_BUILD, else build-test).
# Output is TAP. A failed run keeps its histories and logs in a directory it
# prints (/tmp/vaultfs-faults-SEED-*).
#
# Pass criteria: every key's history is linearizable (lincheck, which also
# catches a lost acknowledged write, a write applied twice and a read of a
# value nobody wrote: every written value is unique), every nemesis fault
# heals, every node is back, unsealed and caught up at the end, the final
# reads on every node agree with the history, no data directory holds a
# written value or key name in plaintext, and every daemon exits 0 with no
# sanitizer report.
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
NEMESES=kill,pause,isolate,oneway,bridge,lossy,stepdown,member
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

# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v nft >/dev/null 2>&1 || ! vfs_netns_setup 3; then
	echo "1..0 # SKIP needs root, nft and network namespaces"
	exit 0
fi
for b in "$LINCHECK" "$FAULTCLIENT"; do
	[ -x "$b" ] || { echo "Bail out! $b is not built"; exit 1; }
done
RANDOM=$SEED
echo "# seed $SEED, ${DURATION}s, nemesis: $NEMESES (reproduce: $0 --seed $SEED --duration $DURATION --nemesis $NEMESES)"

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

cluster_addr_of() { echo "http://${IP[$1]}:8201"; }
for i in 1 2 3; do
	n=n$i
	NS[$n]=${VFS_NETNS[$i]}
	IP[$n]=10.250.0.$i
	MNT[$n]=$VFS_TMP/m-$n
	STATE[$n]=up
	vfs_config_at "$n" "$(cluster_addr_of "$n")"
	vfs_start_in "${NS[$n]}" "$n" || { echo "Bail out! cannot start $n"; exit 1; }
	vfs_mount "$n" "${MNT[$n]}" "$MOUNT_OPTS" || { echo "Bail out! cannot mount $n"; exit 1; }
done

leader_of() { vfs_status_field "${MNT[$1]}" leader; }
voters_of() { grep -c ' true$' "${MNT[$1]}/.vault/peers"; }

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
	local n
	for n in "${NODES[@]}"; do
		echo "# $n (${STATE[$n]}): $(tr '\n' ' ' < "${MNT[$n]}/.vault/status" 2>&1)"
	done
	return 1
}
ok "a 3-node cluster forms (init, unseal, join, unseal)" form_cluster ||
	{ echo "Bail out! no cluster"; exit 1; }

# ---- the nemesis ----
#
# Each fault picks its victim(s), applies, holds for 1-5 s, heals, and waits
# for the whole cluster to be healthy again (a TAP line per fault).

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
	vfs_start_in "${NS[$1]}" "$1" && vfs_wait_until 20 test -r "${MNT[$1]}/.vault/status" &&
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
	rm -rf "$(vfs_data "$v")"
	hold
	note "member: $v joins again via $l"
	vfs_start_in "${NS[$v]}" "$v" && vfs_wait_until 20 test -r "${MNT[$v]}/.vault/status" &&
		echo "$(cluster_addr_of "$l")" > "${MNT[$v]}/.vault/join" &&
		vfs_unseal "${MNT[$v]}" && STATE[$v]=up
}

IFS=, read -r -a NEMESIS_LIST <<<"$NEMESES"
for f in "${NEMESIS_LIST[@]}"; do
	declare -F "nem_$f" >/dev/null || { echo "Bail out! unknown nemesis $f"; exit 1; }
done
declare -A FAULTS=()

# The faults run in this shell (they keep VFS_PID up to date for cleanup),
# so they cannot be a `bash -c`: apply each directly and check after.
fault_round() {
	local f=$1
	FAULTS[$f]=$((${FAULTS[$f]:-0} + 1))
	"nem_$f" && wait_healthy
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

# caught_up: every node has applied everything the leader committed once the
# clients stopped.
caught_up() {
	local l n target
	find_leader l || return 1
	target=$(vfs_status_field "${MNT[$l]}" commit_index)
	for n in "${NODES[@]}"; do
		[ "$(vfs_status_field "${MNT[$n]}" applied_index)" -ge "$target" ] || return 1
	done
}
ok "every node is up, unsealed and names the same leader" wait_healthy
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
			echo "# plaintext found under $n's data directory"
			found=1
		fi
	done
	echo "# searched for $(wc -l < "$pats") values and names"
	[ "$found" -eq 0 ]
}
ok "no data directory holds a written value or key name in plaintext" plaintext_absent

if [ "$VFS_FAILED" -ne 0 ] && [ -z "$KEEP" ]; then
	KEEP=$(mktemp -d "/tmp/vaultfs-faults-$SEED-XXXXXX")
fi
if [ -n "$KEEP" ]; then
	mkdir -p "$KEEP" && cp -r "$HIST" "$VFS_TMP"/*.log "$VFS_TMP"/*.out "$KEEP"/ 2>/dev/null
	[ -s "$VFS_TMP/lincheck.out" ] && grep -B2 -A30 'NOT linearizable$' "$VFS_TMP/lincheck.out" \
		> "$KEEP/lincheck-anomalies.txt"
	echo "# histories and logs kept in $KEEP"
fi
vfs_done
