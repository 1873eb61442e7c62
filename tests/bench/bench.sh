#!/usr/bin/env bash
# vaultfs vs etcd, side by side, in one run on this machine.
#
#   tests/bench/bench.sh          (root, /dev/fuse; ~2-3 minutes)
#
# Starts a 3-node etcd cluster (Debian etcd-server, installed if missing) and a
# 3-node vaultfs cluster (release build in build-bench/, one FUSE mount per
# node), everything on 127.0.0.1 under one temporary directory, and measures
# with tests/bench/loadgen.c (closed loop, N threads, no process per op):
#   1. puts, 1/16/64 clients: vaultfs open(O_TRUNC)/write/close through the
#      leader's mount and through a follower's; etcd POST /v3/kv/put (HTTP/JSON
#      gateway, keep-alive) on the leader and on a follower (which forwards);
#   2. linearizable reads on a follower, 1/16 clients: vaultfs open/read/close;
#      etcd POST /v3/kv/range (serializable=false); plus etcd serializable
#      reads for context;
#   3. failover: SIGKILL the leader, time to the next successful write through
#      a survivor (polled every 10 ms), BENCH_FAILOVERS times each (the killed
#      node is restarted between trials);
#   4. the floor: open+read+close of an empty file on tmpfs, on a vaultfs mount
#      with -o local_reads (FUSE + local API, no Raft), and linearizable.
# Cells of the two systems run alternately so that machine noise hits both.
# Not part of tests/run.sh or CI.
#
# Environment: BENCH_SECONDS (per cell, default 4), BENCH_MAXOPS (per cell,
# default 200000), BENCH_FAILOVERS (default 3), VAULTFS_NO_APT=1 (no apt-get),
# BENCH_BUILD_DIR (default build-bench), BENCH_LOGS=DIR (keep the daemons' logs).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SECS=${BENCH_SECONDS:-4}
MAXOPS=${BENCH_MAXOPS:-200000}
FAILOVERS=${BENCH_FAILOVERS:-3}
BUILD=$ROOT/${BENCH_BUILD_DIR:-build-bench}

die() { echo "bench: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, control files)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# ---- dependencies and build ---------------------------------------------------
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
	[ "${VAULTFS_NO_APT:-0}" = 1 ] && die "etcd/etcdctl missing and VAULTFS_NO_APT=1"
	echo "# installing etcd-server etcd-client"
	DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >/dev/null ||
		die "apt-get install etcd-server etcd-client failed"
fi
# The Debian package may start a system etcd on the default ports; ours use
# free ports, so it does not matter.
if [ ! -e "$BUILD/build.ninja" ]; then
	meson setup "$BUILD" "$ROOT" -Dbuildtype=release >/dev/null || die "meson setup failed"
fi
ninja -C "$BUILD" >/dev/null || die "build failed"
export VAULTFSD=$BUILD/src/daemon/vaultfsd MOUNT_VAULTFS=$BUILD/mount-helper/mount.vaultfs

# lib.sh: temp dir $VFS_TMP, daemons, mounts, and its cleanup on EXIT.
export VFS_ELECTION_MS=1000 VFS_HEARTBEAT_MS=100 # etcd's defaults
. "$ROOT/tests/integration/lib.sh"
unset ASAN_OPTIONS UBSAN_OPTIONS

LOADGEN=$VFS_TMP/loadgen
SHM=
declare -A ETCD_PID=()
bench_cleanup() {
	local p
	for p in "${ETCD_PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "${ETCD_PID[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$SHM" ] && rm -rf "$SHM"
	if [ -n "${BENCH_LOGS:-}" ]; then
		mkdir -p "$BENCH_LOGS" && cp "$VFS_TMP"/*.log "$BENCH_LOGS"/ 2>/dev/null
	fi
	vfs_cleanup # unmounts, stops the vaultfs daemons, removes $VFS_TMP
}
trap bench_cleanup EXIT

cc -O2 -Wall -pthread -o "$LOADGEN" "$ROOT/tests/bench/loadgen.c" || die "cannot build loadgen"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- etcd: 3 members --------------------------------------------------------
declare -A ECP=() EPP=()
used=" "
pick_port() {
	local p
	while :; do
		p=$(vfs_free_port)
		[[ "$used" == *" $p "* ]] || break
	done
	echo "$p"
}
for i in 1 2 3; do
	ECP[$i]=$(pick_port); used+="${ECP[$i]} "
	EPP[$i]=$(pick_port); used+="${EPP[$i]} "
done
ECLUSTER="e1=http://127.0.0.1:${EPP[1]},e2=http://127.0.0.1:${EPP[2]},e3=http://127.0.0.1:${EPP[3]}"
ENDPOINTS="127.0.0.1:${ECP[1]},127.0.0.1:${ECP[2]},127.0.0.1:${ECP[3]}"

etcd_start() {
	local i=$1
	etcd --name "e$i" --data-dir "$VFS_TMP/etcd-e$i" \
		--listen-client-urls "http://127.0.0.1:${ECP[$i]}" \
		--advertise-client-urls "http://127.0.0.1:${ECP[$i]}" \
		--listen-peer-urls "http://127.0.0.1:${EPP[$i]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${EPP[$i]}" \
		--initial-cluster "$ECLUSTER" --initial-cluster-token "bench-$$" \
		--initial-cluster-state new >>"$VFS_TMP/etcd-e$i.log" 2>&1 &
	ETCD_PID[$i]=$!
}
etcd_healthy() { # etcd_healthy I...: every listed member answers a linearizable get
	local i
	for i in "$@"; do
		ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${ECP[$i]}" --command-timeout=2s \
			get bench/health >/dev/null 2>&1 || return 1
	done
}
# The index (1..3) of the etcd leader, asking the members listed.
etcd_leader() {
	local i eps="" out
	for i in "$@"; do eps+="${eps:+,}127.0.0.1:${ECP[$i]}"; done
	out=$(ETCDCTL_API=3 etcdctl --endpoints="$eps" --command-timeout=2s endpoint status -w fields 2>/dev/null) || return 1
	# -w fields prints one block per member; "Endpoint" comes last.
	awk -v p1="${ECP[1]}" -v p2="${ECP[2]}" -v p3="${ECP[3]}" '
		/^"MemberID"/ { id = $3 }
		/^"Leader"/ { ld = $3 }
		/^"Endpoint"/ { if (id != "" && id == ld) { ep = $3; gsub(/"/, "", ep); n = split(ep, a, ":")
			if (a[n] == p1) print 1; else if (a[n] == p2) print 2; else if (a[n] == p3) print 3 }
			id = ""; ld = "" }' <<<"$out"
}

echo "# starting etcd (3 members) and vaultfs (3 nodes) in $VFS_TMP"
for i in 1 2 3; do etcd_start "$i"; done
vfs_wait_until 30 etcd_healthy 1 2 3 || die "etcd cluster did not come up (see $VFS_TMP/etcd-e*.log)"

# ---- vaultfs: 3 nodes, one mount each ---------------------------------------
for n in n1 n2 n3; do
	vfs_start "$n" || die "vaultfsd $n did not start"
	vfs_mount "$n" "$VFS_TMP/m-$n" || die "cannot mount $n"
done
declare -A MNT=([n1]=$VFS_TMP/m-n1 [n2]=$VFS_TMP/m-n2 [n3]=$VFS_TMP/m-n3)
vfs_init "${MNT[n1]}" && vfs_unseal "${MNT[n1]}" || die "init/unseal n1 failed"
vfs_wait_until 10 grep -qx 'ha_mode: active' "${MNT[n1]}/.vault/status" || die "n1 does not lead"
for n in n2 n3; do
	echo "$(vfs_cluster_addr n1)" > "${MNT[$n]}/.vault/join" || die "join $n failed"
	vfs_unseal "${MNT[$n]}" || die "unseal $n failed"
done
three_voters() {
	local p=$1/.vault/peers
	[ "$(grep -c ' true$' "$p")" -eq 3 ] && [ "$(grep -c ' leader ' "$p")" -eq 1 ]
}
vfs_wait_until 30 three_voters "${MNT[n1]}" || die "vaultfs cluster did not form"
vfs_mount n1 "$VFS_TMP/m-n1-local" local_reads || die "cannot mount n1 with local_reads"

VL=$(vfs_status_field "${MNT[n1]}" leader)
[ -n "$VL" ] || die "no vaultfs leader"
VF=; for n in n1 n2 n3; do [ "$n" != "$VL" ] && { VF=$n; break; }; done
EL=$(etcd_leader 1 2 3)
[ -n "$EL" ] || die "no etcd leader"
EF=; for i in 1 2 3; do [ "$i" != "$EL" ] && { EF=$i; break; }; done
echo "# vaultfs leader $VL, follower $VF; etcd leader e$EL, follower e$EF"

mkdir -p "${MNT[$VL]}/bench" || die "mkdir on vaultfs failed"
printf 'value-read\n' > "${MNT[$VL]}/bench/read" || die "write on vaultfs failed"
: > "${MNT[$VL]}/bench/empty" || die "write on vaultfs failed"
ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" put bench/read value-read >/dev/null || die "etcd put failed"
SHM=$(mktemp -d /dev/shm/vaultfs-bench.XXXXXX)
: > "$SHM/empty"
vfs_wait_until 10 test -e "${MNT[$VF]}/bench/read" || die "the follower does not see the files"

# ---- measuring ----------------------------------------------------------------
declare -A R=() # R[cell,field] = value; fields: ops_s p50 p99 err
# For vaultfs cells, also the number of Raft log entries committed per
# operation (the leader's commit_index before and after).
run_cell() { # run_cell CELL LOADGEN-ARGS...
	local cell=$1 out c0= c1= ops
	shift
	[[ "$cell" == *-v* ]] && c0=$(vfs_status_field "${MNT[$VL]}" commit_index)
	out=$("$LOADGEN" "$@" 2>&1) || echo "# $cell: $out" >&2
	[[ "$cell" == *-v* ]] && c1=$(vfs_status_field "${MNT[$VL]}" commit_index)
	ops=$(sed -n 's/^ops=\([0-9]*\).*/\1/p' <<<"$out")
	R[$cell,epo]=$(awk -v a="$c0" -v b="$c1" -v n="$ops" \
		'BEGIN { if (a == "" || b == "" || n == "" || n == 0) print "-"; else printf "%.2f", (b - a) / n }')
	[[ "$cell" == *-v* ]] && out+=" raft_entries_per_op=${R[$cell,epo]}"
	R[$cell,ops_s]=$(sed -n 's/.*ops_s=\([0-9.]*\).*/\1/p' <<<"$out")
	R[$cell,p50]=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$out")
	R[$cell,p99]=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$out")
	R[$cell,err]=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$out")
	echo "#   $cell: $out"
}

echo "# 1. puts"
for c in 1 16 64; do
	run_cell "put-vl-$c" fs-put "$c" "$SECS" "$MAXOPS" "${MNT[$VL]}/bench/put-l$c-"
	run_cell "put-e-$c" etcd-put "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EL]}" "bench/put-$c-"
	run_cell "put-vf-$c" fs-put "$c" "$SECS" "$MAXOPS" "${MNT[$VF]}/bench/put-f$c-"
	run_cell "put-ef-$c" etcd-put "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" "bench/putf-$c-"
done

echo "# 2. linearizable reads on a follower"
for c in 1 16; do
	run_cell "get-v-$c" fs-get "$c" "$SECS" "$MAXOPS" "${MNT[$VF]}/bench/read"
	run_cell "get-e-$c" etcd-get "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" bench/read
	run_cell "sget-e-$c" etcd-sget "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" bench/read
done

echo "# 4. floor: empty open+read+close, 1 client"
FS=$(( SECS > 2 ? 2 : SECS ))
run_cell "floor-tmpfs" fs-get 1 "$FS" "$MAXOPS" "$SHM/empty"
run_cell "floor-local" fs-get 1 "$FS" "$MAXOPS" "$VFS_TMP/m-n1-local/bench/empty"
run_cell "floor-lin-leader" fs-get 1 "$FS" "$MAXOPS" "${MNT[$VL]}/bench/empty"

echo "# 3. failover: SIGKILL the leader, next successful write through a survivor"
VFO=() EFO=()
for t in $(seq 1 "$FAILOVERS"); do
	# vaultfs
	ldr=$(vfs_status_field "${MNT[$VF]}" leader)
	surv=; for n in n1 n2 n3; do [ "$n" != "$ldr" ] && { surv=$n; break; }; done
	disown "${VFS_PID[$ldr]}" 2>/dev/null # no "Killed" job notice
	out=$("$LOADGEN" fs-failover "${VFS_PID[$ldr]}" 30 "${MNT[$surv]}/bench/failover" 2>&1)
	echo "#   vaultfs trial $t (killed $ldr, wrote via $surv): $out"
	VFO+=("$(sed -n 's/^ms=\([0-9.]*\).*/\1/p' <<<"$out")")
	kill -KILL "${VFS_PID[$ldr]}" 2>/dev/null # if loadgen failed before its kill
	vfs_wait_gone "${VFS_PID[$ldr]}" 10
	unset "VFS_PID[$ldr]"
	# etcd
	eld=$(etcd_leader 1 2 3)
	es=; for i in 1 2 3; do [ "$i" != "$eld" ] && { es=$i; break; }; done
	disown "${ETCD_PID[$eld]}" 2>/dev/null
	out=$("$LOADGEN" etcd-failover "${ETCD_PID[$eld]}" 30 "127.0.0.1:${ECP[$es]}" bench/failover 2>&1)
	echo "#   etcd trial $t (killed e$eld, put via e$es): $out"
	EFO+=("$(sed -n 's/^ms=\([0-9.]*\).*/\1/p' <<<"$out")")
	kill -KILL "${ETCD_PID[$eld]}" 2>/dev/null
	vfs_wait_gone "${ETCD_PID[$eld]}" 10
	unset "ETCD_PID[$eld]"
	# bring both back for the next trial
	if [ "$t" -lt "$FAILOVERS" ]; then
		etcd_start "$eld"
		vfs_start "$ldr" || die "cannot restart vaultfsd $ldr"
		vfs_wait_until 20 grep -qx 'sealed: true' "${MNT[$ldr]}/.vault/status" || die "$ldr not back"
		vfs_unseal "${MNT[$ldr]}" || die "cannot unseal $ldr"
		# (its value may be empty: attempts still blocked in open(O_TRUNC)
		# when loadgen exited commit the truncation on release)
		vfs_wait_until 30 test -e "${MNT[$ldr]}/bench/failover" ||
			die "$ldr does not serve reads again"
		vfs_wait_until 30 three_voters "${MNT[$ldr]}" || die "$ldr is not a voter again"
		vfs_wait_until 30 etcd_healthy 1 2 3 || die "etcd e$eld did not come back"
		sleep 1
	fi
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report -------------------------------------------------------------------
median() { printf '%s\n' "$@" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.2f", a / b }'; }
ms() { awk -v u="$1" 'BEGIN { if (u == "") print "-"; else printf "%.2f", u / 1000 }'; }
num() { awk -v x="$1" 'BEGIN { if (x == "") print "-"; else printf "%.0f", x }'; }

row() { # row LABEL VAULTFS-CELL ETCD-CELL
	printf '| %-28s | %8s | %7s | %7s | %7s | %8s | %7s | %7s | %8s |\n' "$1" \
		"$(num "${R[$2,ops_s]:-}")" "$(ms "${R[$2,p50]:-}")" "$(ms "${R[$2,p99]:-}")" "${R[$2,epo]:--}" \
		"$(num "${R[$3,ops_s]:-}")" "$(ms "${R[$3,p50]:-}")" "$(ms "${R[$3,p99]:-}")" \
		"$(ratio "${R[$2,ops_s]:-}" "${R[$3,ops_s]:-}")"
}

echo
echo "## vaultfs vs etcd — $(date -u '+%Y-%m-%d %H:%M UTC'), one run"
echo
echo "machine: nproc $(nproc), $(uname -sr), load average $LOAD_START at start, $LOAD_END at end;"
echo "etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), vaultfs release build ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')); data dirs on $(df --output=source,fstype "$VFS_TMP" | tail -1 | tr -s ' ');"
echo "$SECS s per cell, closed loop (each client waits for its answer); latencies in ms;"
echo "vfs e/op = vaultfs Raft log entries committed per operation (etcd: 1 per put, 0 per read);"
echo "vfs/etcd = ratio of op/s (1.00 = as fast as etcd, higher is better)."
echo
printf '| %-28s | %8s | %7s | %7s | %7s | %8s | %7s | %7s | %8s |\n' workload "vfs op/s" "vfs p50" "vfs p99" "vfs e/op" "etcd op/s" "etcd p50" "etcd p99" "vfs/etcd"
echo "|------------------------------|---------:|--------:|--------:|--------:|---------:|--------:|--------:|---------:|"
for c in 1 16 64; do row "put, $c cl., via leader" "put-vl-$c" "put-e-$c"; done
for c in 1 16 64; do row "put, $c cl., via follower" "put-vf-$c" "put-ef-$c"; done
for c in 1 16; do row "lin. read, follower, $c cl." "get-v-$c" "get-e-$c"; done
for c in 1 16; do row "vs etcd serializable, $c cl." "get-v-$c" "sget-e-$c"; done
echo
vmed=$(median "${VFO[@]}") emed=$(median "${EFO[@]}")
printf '| %-28s | %22s | %22s | %13s |\n' "failover: SIGKILL -> write" "vaultfs ms" "etcd ms" "vfs/etcd time"
echo "|------------------------------|-----------------------:|-----------------------:|--------------:|"
printf '| %-28s | %22s | %22s | %13s |\n' "median of $FAILOVERS trials" "${vmed:--}" "${emed:--}" "$(ratio "$vmed" "$emed")"
printf '| %-28s | %22s | %22s | %13s |\n' "each trial" "${VFO[*]}" "${EFO[*]}" ""
echo
printf '| %-36s | %9s | %9s | %9s |\n' "floor: empty open+read+close, 1 cl." "op/s" "p50 us" "p99 us"
echo "|--------------------------------------|----------:|----------:|----------:|"
for cell in floor-tmpfs:"tmpfs (/dev/shm)" floor-local:"vaultfs -o local_reads (no Raft)" \
	floor-lin-leader:"vaultfs linearizable, leader mount"; do
	k=${cell%%:*} l=${cell#*:}
	printf '| %-36s | %9s | %9s | %9s |\n' "$l" "$(num "${R[$k,ops_s]:-}")" "${R[$k,p50]:--}" "${R[$k,p99]:--}"
done
errs=0
for k in "${!R[@]}"; do [[ "$k" == *,err ]] && errs=$((errs + ${R[$k]:-0})); done
echo
echo "failed operations during the cells: $errs"
