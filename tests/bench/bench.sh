#!/usr/bin/env bash
# vaultfs vs etcd, side by side, in one run on this machine.
#
#   tests/bench/bench.sh           full run (root, /dev/fuse; ~20 minutes, 10 of
#                                  them the stability cell)
#   tests/bench/bench.sh --short   every cell, tiny (~2 minutes after the builds): a
#                                  smoke test that fails when something does not
#                                  work (tests/run.sh runs it)
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
#      reads for context, and the same reads on a -o local_reads mount of
#      the same follower;
#      in cells 1 and 2, the same clients also run against the null
#      filesystem (tests/bench/nullfs.c: FUSE mounted as vaultfs is, doing no
#      work), the floor FUSE sets on this machine; and every process's CPU
#      time over each of those cells is recorded (loadgen reads
#      /proc/PID/stat of the mount, each daemon, each etcd member, the null
#      filesystem, and /proc/stat): CPU per operation per process;
#   2b. puts in a second shape: BENCH_MANY_FILES distinct existing secrets
#      per client (200) across BENCH_MANY_DIRS directories (10), written
#      one after the other (loadgen fs-putmany / etcd-putmany), 1/16/64
#      clients, through the leader and a follower of each, and the null
#      filesystem; the secrets of all 64 clients are created before;
#   2c. creates of new secrets, 1/16/64 clients, through the leader and a
#      follower of each (etcd: puts of new keys) and the null filesystem, in
#      two shapes: each client in 4 directories of its own, and every client
#      in one shared directory (loadgen fs-create / etcd-create);
#   3. the floor: open+read+close of an empty file on tmpfs, on a vaultfs mount
#      with -o local_reads (FUSE + local API, no Raft), and linearizable;
#   4. the `cat` command (a process per read: what a user sees) on a file
#      of the same 11 bytes on tmpfs, on the -o local_reads mount, and on the
#      leader's and a follower's linearizable mounts; p50 against tmpfs;
#   5. FUSE requests per put and per read, by opcode, counted from the log
#      of a debug (-d) mount of the leader's node;
#   6. failover: SIGKILL the leader, time to the next successful write through
#      a survivor (polled every 10 ms), BENCH_FAILOVERS times each, median and
#      max (the killed node is restarted after every trial);
#   6b. the same, with every attempt a new process (loadgen exec'd per
#      attempt for both systems: one write through the survivor's mount, one
#      put on a new connection to a surviving member), as a user's command
#      sees it: BENCH_FAILOVERS trials of its own;
#   7. scale: BENCH_SCALE_DIRS x BENCH_SCALE_FILES secrets of 64 bytes
#      (100 x 100), written by BENCH_SCALE_THREADS writers (loadgen fs-fill
#      through the leader's mount; etcd-fill, the same keys, on the leader's
#      gateway); traversals on a follower: `ls -R`, `ls -lR`, `du -a`, `find
#      -type f` and a `stat` of every secret by name, each on a fresh mount
#      (cold) and again at once (warm), BENCH_TRAVERSE_RUNS times (etcdctl
#      get --prefix --keys-only / get --prefix on a follower as many times;
#      the floor: each on the null filesystem holding a tree of the same
#      shape, listed with attributes, cold), each must see every secret; cold start of a follower (SIGTERM,
#      restart, unseal; etcd: restart) until it serves a linearizable read
#      of a secret (polled every 10 ms); disk per data dir (du -sb) and
#      peak RSS (VmHWM) per node, next to the issue's targets (cold start
#      < 2 s, RSS < 64 MiB per node);
#   7b. mixed: 64 clients through a follower of each, 90 % linearizable
#      reads and 10 % writes of secrets of the scale tree picked uniformly at
#      random (loadgen fs-mixed / etcd-mixed); the tree is filled first if
#      the scale cell did not run;
#   7c. million: BENCH_MILLION_DIRS x BENCH_MILLION_FILES secrets (1000 x
#      1000) in a tree of their own, written as the scale cell's; a
#      follower's cold start; a fresh node joining until it serves the
#      tree's last secret (then removed again); disk and peak RSS per node;
#   8. stability: puts by 16 clients through a follower of each system, both
#      at once, for BENCH_STABILITY_SECONDS; the leader is sampled every
#      second and the terms compared before and after: leader changes and
#      elections while nothing failed;
#   9. the demo: both clusters are stopped, then examples/demo.sh runs on its
#      own (its own build in ./build, its own ports from 8201 and directory;
#      output in BUILD/demo.log): wall time and exit status.
# Cells 1, 2, 2b, 2c, 6, 6b and 7b run the two systems alternately so that
# machine noise hits both (3-5 measure vaultfs alone or against tmpfs); in
# cells 7 and 8 the systems are loaded one after the other (7) or at the
# same time (8).
#
# This script runs the clusters and the load and records what it measured
# (loadgen's output lines, timings, counts, what did not work) as it goes in
# a raw results file next to the JSON file (bench-raw.tsv for bench.json);
# at the end tests/bench/report.py turns that file into the table on stdout
# and the JSON file with every figure (run it again on the raw file to
# rewrite both).
#
# --short (or BENCH_SHORT=1): 1 s cells, 2 failover trials, 10 x 20 secrets,
# 5 s stability, the demo included; exits non-zero if anything did not work
# (a cell without successful operations or with failed ones, a failover or
# cold start that never succeeded, a listing that misses secrets, the demo
# failing, invalid JSON), never because of a figure (no timing limits).
#
# Environment (defaults: full / short):
#   BENCH_SECONDS (per cell, 4 / 1), BENCH_MAXOPS (per cell, 200000),
#   BENCH_FAILOVERS (10 / 2; for failover and failexec each),
#   BENCH_TRAVERSE_RUNS (3 / 2), BENCH_SCALE_DIRS (100 / 10),
#   BENCH_SCALE_FILES (per dir, 100 / 20), BENCH_SCALE_THREADS (16),
#   BENCH_STABILITY_SECONDS (600 / 5), BENCH_MANY_FILES (per client,
#   200 / 20), BENCH_MANY_DIRS (10 / 4), BENCH_MILLION_DIRS (1000 / 5),
#   BENCH_MILLION_FILES (per dir, 1000 / 20), BENCH_DEMO (1; 0 skips the demo),
#   BENCH_STRICT (0 / 1: exit 1 if something did not work),
#   BENCH_JSON (default BUILD/bench.json; the raw results go next to it,
#   NAME-raw.tsv for NAME.json), BENCH_BUILD_DIR (default
#   build-bench), BENCH_LOGS=DIR (keep the daemons' logs), VAULTFS_NO_APT=1
#   (no apt-get), BENCH_CELLS (the cells to run, in order; default all:
#   "puts reads putmany floor upcalls failover failexec scale mixed creates
#   million stability"; the report leaves out the rest).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
die() { echo "bench: $*" >&2; exit 1; }

SHORT=${BENCH_SHORT:-0}
for arg in "$@"; do
	case $arg in
	--short) SHORT=1 ;;
	-h | --help) sed -n '2,/^set -u$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $arg (usage: tests/bench/bench.sh [--short])" ;;
	esac
done
if [ "$SHORT" = 1 ]; then
	SECS=${BENCH_SECONDS:-1} FAILOVERS=${BENCH_FAILOVERS:-2}
	SCALE_DIRS=${BENCH_SCALE_DIRS:-10} SCALE_FILES=${BENCH_SCALE_FILES:-20}
	STAB_SECS=${BENCH_STABILITY_SECONDS:-5} STRICT=${BENCH_STRICT:-1}
	MANY_FILES=${BENCH_MANY_FILES:-20} MANY_DIRS=${BENCH_MANY_DIRS:-4}
	TRAV_RUNS=${BENCH_TRAVERSE_RUNS:-2}
	MILLION_DIRS=${BENCH_MILLION_DIRS:-5} MILLION_FILES=${BENCH_MILLION_FILES:-20}
else
	SECS=${BENCH_SECONDS:-4} FAILOVERS=${BENCH_FAILOVERS:-10}
	SCALE_DIRS=${BENCH_SCALE_DIRS:-100} SCALE_FILES=${BENCH_SCALE_FILES:-100}
	STAB_SECS=${BENCH_STABILITY_SECONDS:-600} STRICT=${BENCH_STRICT:-0}
	MANY_FILES=${BENCH_MANY_FILES:-200} MANY_DIRS=${BENCH_MANY_DIRS:-10}
	TRAV_RUNS=${BENCH_TRAVERSE_RUNS:-3}
	MILLION_DIRS=${BENCH_MILLION_DIRS:-1000} MILLION_FILES=${BENCH_MILLION_FILES:-1000}
fi
MAXOPS=${BENCH_MAXOPS:-200000}
SCALE_THREADS=${BENCH_SCALE_THREADS:-16}
STAB_CLIENTS=16
MIXED_CLIENTS=64 MIXED_WRITE_PCT=10
SCALE_TOTAL=$((SCALE_DIRS * SCALE_FILES))
MILLION_TOTAL=$((MILLION_DIRS * MILLION_FILES))
# The short mode runs the demo too: it is the README's walkthrough and no
# other test runs it; it takes ~5 s, plus a debug build of ./build the first
# time (~20 s on 2 cores).
DEMO=${BENCH_DEMO:-1}
ALL_CELLS="puts reads putmany floor upcalls failover failexec scale mixed creates million stability"
CELLS=${BENCH_CELLS:-$ALL_CELLS}
for cell in $CELLS; do
	[[ " $ALL_CELLS " == *" $cell "* ]] || die "BENCH_CELLS: no cell $cell (the cells: $ALL_CELLS)"
done
BUILD=$ROOT/${BENCH_BUILD_DIR:-build-bench}
JSON_OUT=${BENCH_JSON:-$BUILD/bench.json}
RAW_OUT=${JSON_OUT%.json}-raw.tsv
DEMO_LOG=$BUILD/demo.log

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts, control files)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"
[ "$SCALE_DIRS" -ge 1 ] && [ "$SCALE_DIRS" -le 1000 ] && [ "$SCALE_FILES" -ge 1 ] ||
	die "BENCH_SCALE_DIRS must be 1-1000 and BENCH_SCALE_FILES at least 1"
[ "$MILLION_DIRS" -ge 1 ] && [ "$MILLION_DIRS" -le 1000 ] && [ "$MILLION_FILES" -ge 1 ] &&
	[ "$MILLION_TOTAL" -le 1000000 ] ||
	die "BENCH_MILLION_DIRS must be 1-1000, BENCH_MILLION_FILES at least 1, and their product at most 1000000"
[ "$MANY_DIRS" -ge 1 ] && [ "$MANY_DIRS" -le 100 ] && [ "$MANY_FILES" -ge 1 ] &&
	[ "$MANY_FILES" -le 99999 ] ||
	die "BENCH_MANY_DIRS must be 1-100 and BENCH_MANY_FILES 1-99999"
[[ "$TRAV_RUNS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_TRAVERSE_RUNS must be at least 1"

# ---- dependencies and build ---------------------------------------------------
# tools/install-deps.sh installs etcd too; this covers a machine set up before.
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
# The figures are for a release build, whoever configured the directory.
BUILDTYPE=$(meson introspect "$BUILD" --buildoptions 2>/dev/null |
	python3 -c 'import json, sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"), ""))')
if [ "$BUILDTYPE" != release ]; then
	meson configure "$BUILD" -Dbuildtype=release >/dev/null || die "cannot make $BUILD a release build"
fi
ninja -C "$BUILD" >/dev/null || die "build failed"
export VAULTFSD=$BUILD/src/daemon/vaultfsd MOUNT_VAULTFS=$BUILD/mount-helper/mount.vaultfs

# lib.sh: temp dir $VFS_TMP, daemons, mounts, and its cleanup on EXIT.
export VFS_ELECTION_MS=1000 VFS_HEARTBEAT_MS=100 # etcd's defaults
. "$ROOT/tests/integration/lib.sh"
unset ASAN_OPTIONS UBSAN_OPTIONS

LOADGEN=$VFS_TMP/loadgen
NULLFS=$VFS_TMP/nullfs
NULLFS_PID=
SHM=
DEMO_PID=
BG_PIDS=() # loadgens running in the background (stability cell)
declare -A ETCD_PID=()
bench_cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	[ -n "$DEMO_PID" ] && demo_stop
	for p in "${ETCD_PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "${ETCD_PID[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -n "$SHM" ] && rm -rf "$SHM"
	if [ -n "${BENCH_LOGS:-}" ]; then
		mkdir -p "$BENCH_LOGS" && cp "$VFS_TMP"/*.log "$BENCH_LOGS"/ 2>/dev/null
	fi
	vfs_cleanup # unmounts, stops the vaultfs daemons, removes $VFS_TMP
	# Unmounted above, the null filesystem exits by itself.
	[ -n "$NULLFS_PID" ] && { vfs_wait_gone "$NULLFS_PID" 10 || kill -KILL "$NULLFS_PID" 2>/dev/null; }
}
trap bench_cleanup EXIT

cc -O2 -Wall -pthread -o "$LOADGEN" "$ROOT/tests/bench/loadgen.c" || die "cannot build loadgen"
# shellcheck disable=SC2046 # pkg-config's words
cc -O2 -Wall -o "$NULLFS" "$ROOT/tests/bench/nullfs.c" $(pkg-config --cflags --libs fuse3) ||
	die "cannot build nullfs"

# ---- results: the raw file ------------------------------------------------------
# rec KIND FIELD=VALUE...: appends a record to the raw results file, a line
# of tab-separated fields: KIND, then each FIELD=VALUE (a backslash, tab or
# newline in a value written \\, \t, \n). report.py's docstring lists the
# kinds and their fields.
mkdir -p "$(dirname "$RAW_OUT")" && : > "$RAW_OUT" || die "cannot write $RAW_OUT"
rec() {
	local line=$1 f v
	shift
	for f in "$@"; do
		v=${f#*=}
		v=${v//\\/\\\\}
		v=${v//$'\t'/\\t}
		line+=$'\t'"${f%%=*}=${v//$'\n'/\\n}"
	done
	printf '%s\n' "$line" >> "$RAW_OUT"
}
# Something that did not work (not a slow figure): listed in the report and
# the JSON; with BENCH_STRICT=1 (--short) the script then exits 1.
problem() {
	rec problem msg="$*"
	echo "# PROBLEM: $*" >&2
}
tnow() { printf -v "$1" '%s' "${EPOCHREALTIME/[.,]/}"; } # tnow VAR: wall clock in us
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
is_num() { [[ "${1-}" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
# poll10 SECONDS CMD...: vfs_wait_until with a 10 ms period, for the timed waits.
poll10() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.01
	done
}
vmhwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE_START=$(date -u '+%Y-%m-%dT%H:%M:%SZ')

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
# etcd_stop I: SIGTERM, and wait.
etcd_stop() {
	local pid=${ETCD_PID[$1]}
	kill -TERM "$pid" 2>/dev/null
	vfs_wait_gone "$pid" 20 || { kill -KILL "$pid" 2>/dev/null; vfs_wait_gone "$pid" 5; }
	unset "ETCD_PID[$1]"
}
etcd_healthy() { # etcd_healthy I...: every listed member answers a linearizable get
	local i
	for i in "$@"; do
		ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${ECP[$i]}" --command-timeout=2s \
			get bench/health >/dev/null 2>&1 || return 1
	done
}
# etcd_sample: "LEADER TERM" as the members see them: LEADER is the member
# (e1..e3) that at least two members name (its member id if it is not one
# of ours, "-" if no two agree), TERM the highest RaftTerm reported.
etcd_sample() {
	local out
	out=$(ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" --command-timeout=2s endpoint status -w fields 2>/dev/null)
	# -w fields prints one block per member; "Endpoint" comes last.
	awk -v p1="${ECP[1]}" -v p2="${ECP[2]}" -v p3="${ECP[3]}" '
		/^"MemberID"/ { id = $3 }
		/^"Leader"/ { ld = $3 }
		/^"RaftTerm"/ { if ($3 + 0 > mt) mt = $3 + 0 }
		/^"Endpoint"/ { ep = $3; gsub(/"/, "", ep); n = split(ep, a, ":")
			idx[id] = a[n] == p1 ? "e1" : a[n] == p2 ? "e2" : a[n] == p3 ? "e3" : id
			if (ld != "" && ld != "0") votes[ld]++
			id = ""; ld = "" }
		END { best = "-"; for (l in votes) if (votes[l] >= 2) best = (l in idx) ? idx[l] : l
			print best, mt + 0 }' <<<"$out"
}
# The index (1..3) of the etcd leader.
etcd_leader() {
	local l t
	read -r l t < <(etcd_sample)
	[[ "$l" =~ ^e[123]$ ]] && echo "${l#e}"
}
etcd_has_leader() { [ -n "$(etcd_leader)" ]; }

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
vfs_wait_until 30 vfs_three_voters "${MNT[n1]}" || die "vaultfs cluster did not form"
vfs_mount n1 "$VFS_TMP/m-n1-local" local_reads || die "cannot mount n1 with local_reads"
# The null filesystem, in the foreground of its own process (its CPU is
# measured); unmounting it ends it.
NULL_MNT=$VFS_TMP/m-null
mkdir -p "$NULL_MNT"
VFS_MOUNTS+=("$NULL_MNT")
"$NULLFS" "$NULL_MNT" >>"$VFS_TMP/nullfs.log" 2>&1 &
NULLFS_PID=$!
vfs_wait_until 10 mountpoint -q "$NULL_MNT" || die "cannot mount the null filesystem"

# All three nodes name the same leader.
vfs_agreed_leader() {
	local a b c
	a=$(vfs_status_field "${MNT[n1]}" leader) b=$(vfs_status_field "${MNT[n2]}" leader)
	c=$(vfs_status_field "${MNT[n3]}" leader)
	[ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ]
}
# find_leaders: VL/VF = the vaultfs leader and a follower, EL/EF = the same
# for etcd (again after the failover trials, which move the leaders).
find_leaders() {
	local n i
	vfs_wait_until 30 vfs_agreed_leader || die "the vaultfs nodes do not agree on a leader"
	VL=$(vfs_status_field "${MNT[n1]}" leader)
	VF=; for n in n1 n2 n3; do [ "$n" != "$VL" ] && { VF=$n; break; }; done
	vfs_wait_until 30 etcd_has_leader || die "no etcd leader"
	EL=$(etcd_leader)
	EF=; for i in 1 2 3; do [ "$i" != "$EL" ] && { EF=$i; break; }; done
	echo "# vaultfs leader $VL, follower $VF; etcd leader e$EL, follower e$EF"
}
find_leaders

mkdir -p "${MNT[$VL]}/bench" || die "mkdir on vaultfs failed"
printf 'value-read\n' > "${MNT[$VL]}/bench/read" || die "write on vaultfs failed"
: > "${MNT[$VL]}/bench/empty" || die "write on vaultfs failed"
ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" put bench/read value-read >/dev/null || die "etcd put failed"
SHM=$(mktemp -d /dev/shm/vaultfs-bench.XXXXXX)
: > "$SHM/empty"
printf 'value-read\n' > "$SHM/read"
vfs_wait_until 10 test -e "${MNT[$VF]}/bench/read" || die "the follower does not see the files"

# ---- measuring ----------------------------------------------------------------
# lg_field OUTPUT NAME: the value of NAME=... in loadgen's output ("" if none).
lg_field() { sed -n "s/^\(.* \)\{0,1\}$2=\([0-9.]*\).*/\2/p" <<<"$1" | head -n 1; }
# cell_result CELL ARGS OUTPUT [EPO]: records one loadgen result line (and for
# vaultfs, EPO: Raft log entries committed per operation), and whether the
# cell worked: some successful operations and no failed one.
cell_result() {
	local cell=$1 out=$3 ops err
	rec cell name="$cell" args="$2" out="$out" ${4+"epo=$4"}
	ops=$(lg_field "$out" ops) err=$(lg_field "$out" errors)
	is_num "$ops" && [ "$ops" -gt 0 ] || problem "cell $cell: no successful operation ($out)"
	[ "${err:-x}" = 0 ] || problem "cell $cell: ${err:-?} failed operations"
}
# entries_per_op C0 C1 OUTPUT: Raft log entries committed per operation, from
# the leader's commit_index before (C0) and after (C1) a vaultfs cell.
entries_per_op() {
	awk -v a="$1" -v b="$2" -v n="$(lg_field "$3" ops)" \
		'BEGIN { if (a == "" || b == "" || n == "" || n == 0) print "-"; else printf "%.2f", (b - a) / n }'
}
# The processes whose CPU time the next run_cell measures: CPU_WHO for
# loadgen (LOADGEN_CPU="ROLE=PID ..."), CPU_NODES the same roles with the
# node each one is (recorded with the cell). "follower1" is the follower a
# cell goes through, when it goes through one.
CPU_WHO= CPU_NODES=
cpu_vaultfs() { # cpu_vaultfs NODE [MOUNTPOINT]: a vaultfs cell through NODE's mount (or that one)
	local n other=
	for n in n1 n2 n3; do [ "$n" != "$VL" ] && [ "$n" != "$VF" ] && other=$n; done
	CPU_WHO="mount=$(mount_pid "${2:-${MNT[$1]}}") leader=${VFS_PID[$VL]} follower1=${VFS_PID[$VF]}"
	CPU_WHO+=" follower2=${VFS_PID[$other]}"
	CPU_NODES="mount=$1 leader=$VL follower1=$VF follower2=$other"
}
cpu_etcd() {
	local i other=
	for i in 1 2 3; do [ "$i" != "$EL" ] && [ "$i" != "$EF" ] && other=$i; done
	CPU_WHO="leader=${ETCD_PID[$EL]} follower1=${ETCD_PID[$EF]} follower2=${ETCD_PID[$other]}"
	CPU_NODES="leader=e$EL follower1=e$EF follower2=e$other"
}
cpu_null() { CPU_WHO="fs=$NULLFS_PID" CPU_NODES="fs=nullfs"; }
run_cell() { # run_cell CELL LOADGEN-ARGS...
	local cell=$1 out c0='' c1='' epo args
	shift
	[[ "$cell" == *-v* ]] && c0=$(vfs_status_field "${MNT[$VL]}" commit_index)
	out=$(LOADGEN_CPU="$CPU_WHO" "$LOADGEN" "$@" 2>&1) || echo "# $cell: $out" >&2
	# A 1 s cell (--short) on a machine loaded to 10 and more can end
	# before the first of 64 clients' first writes does: measure once more,
	# 5 s, before calling the cell broken. (LOADGEN-ARGS: mode, clients,
	# seconds, ...)
	if [ "$SHORT" = 1 ] && [ "$(lg_field "$out" ops)" = 0 ] && [ "$(lg_field "$out" errors)" = 0 ]; then
		echo "# $cell: no operation finished within ${3}s (load: $(cut -d' ' -f1 /proc/loadavg)); again for 5 s"
		args=("$@")
		args[2]=5
		out=$(LOADGEN_CPU="$CPU_WHO" "$LOADGEN" "${args[@]}" 2>&1) || echo "# $cell: $out" >&2
	fi
	[[ "$cell" == *-v* ]] && c1=$(vfs_status_field "${MNT[$VL]}" commit_index)
	epo=$(entries_per_op "$c0" "$c1" "$out")
	if [ -n "$CPU_NODES" ]; then
		rec cpu name="$cell" procs="$CPU_NODES"
		[[ "$out" == *cpu_us_machine=* ]] || problem "cell $cell: no CPU figures ($out)"
	fi
	CPU_WHO= CPU_NODES=
	cell_result "$cell" "$*" "$out" "$epo"
	[[ "$cell" == *-v* ]] && out+=" raft_entries_per_op=$epo"
	echo "#   $cell: $out"
}

cell_puts() {
	local c
	echo "# 1. puts"
	for c in 1 16 64; do
		cpu_vaultfs "$VL"
		run_cell "put-vl-$c" fs-put "$c" "$SECS" "$MAXOPS" "${MNT[$VL]}/bench/put-l$c-"
		cpu_etcd
		run_cell "put-e-$c" etcd-put "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EL]}" "bench/put-$c-"
		cpu_vaultfs "$VF"
		run_cell "put-vf-$c" fs-put "$c" "$SECS" "$MAXOPS" "${MNT[$VF]}/bench/put-f$c-"
		cpu_etcd
		run_cell "put-ef-$c" etcd-put "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" "bench/putf-$c-"
		cpu_null
		run_cell "put-n-$c" fs-put "$c" "$SECS" "$MAXOPS" "$NULL_MNT/put-$c-"
	done
}

# The second shape of puts: each client writes MANY_FILES distinct secrets
# in turn, spread over MANY_DIRS directories. They are created first for
# all 64 clients (loadgen's set-up, a tiny run that is not recorded), so the
# cells time updates of existing secrets only.
cell_putmany() {
	local c out t0 t1
	echo "# 2b. puts over $MANY_FILES distinct secrets per client in $MANY_DIRS directories"
	mkdir -p "${MNT[$VL]}/many" || { problem "putmany: mkdir on vaultfs failed"; return; }
	tnow t0
	out=$("$LOADGEN" fs-putmany 64 0.001 64 "${MNT[$VL]}/many" "$MANY_DIRS" "$MANY_FILES" 2>&1)
	[ "$(lg_field "$out" errors)" = 0 ] || problem "putmany: creating the vaultfs secrets failed ($out)"
	tnow t1
	echo "#   vaultfs: $((64 * MANY_FILES)) secrets created in $(elapsed_ms "$t0" "$t1") ms"
	tnow t0
	out=$("$LOADGEN" etcd-putmany 64 0.001 64 "127.0.0.1:${ECP[$EL]}" many/ "$MANY_DIRS" "$MANY_FILES" 2>&1)
	[ "$(lg_field "$out" errors)" = 0 ] || problem "putmany: creating the etcd keys failed ($out)"
	tnow t1
	echo "#   etcd: $((64 * MANY_FILES)) keys put in $(elapsed_ms "$t0" "$t1") ms"
	vfs_wait_until 10 test -e "${MNT[$VF]}/many/d00/c063-00000" ||
		problem "putmany: the follower does not see the secrets"
	for c in 1 16 64; do
		cpu_vaultfs "$VL"
		run_cell "putmany-vl-$c" fs-putmany "$c" "$SECS" "$MAXOPS" "${MNT[$VL]}/many" "$MANY_DIRS" "$MANY_FILES"
		cpu_etcd
		run_cell "putmany-e-$c" etcd-putmany "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EL]}" many/ "$MANY_DIRS" "$MANY_FILES"
		cpu_vaultfs "$VF"
		run_cell "putmany-vf-$c" fs-putmany "$c" "$SECS" "$MAXOPS" "${MNT[$VF]}/many" "$MANY_DIRS" "$MANY_FILES"
		cpu_etcd
		run_cell "putmany-ef-$c" etcd-putmany "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" many/ "$MANY_DIRS" "$MANY_FILES"
		cpu_null
		run_cell "putmany-n-$c" fs-putmany "$c" "$SECS" "$MAXOPS" "$NULL_MNT" "$MANY_DIRS" "$MANY_FILES"
	done
}

# With, next to each linearizable vaultfs cell, the same reads on a
# -o local_reads mount of the same follower (issue 20: it must be at least
# as fast in every read cell), against a linearizable mount of that
# follower made the same way at the same time (a twin: the follower's main
# mount, older and busier, measured 8 % faster than either new one at 16
# clients), in the order twin, local, local, twin so that a drift of the
# machine's load over the four weighs on both alike. The mounts are made
# for this cell only: an idle mount would be sent its node's cache notices
# in the other cells.
cell_reads() {
	local c lmnt=$VFS_TMP/m-local-follower tmnt=$VFS_TMP/m-twin-follower m
	echo "# 2. linearizable reads on a follower (and -o local_reads on the same follower)"
	vfs_mount "$VF" "$lmnt" local_reads || problem "reads: cannot mount $VF with local_reads"
	vfs_mount "$VF" "$tmnt" || problem "reads: cannot mount $VF a second time"
	for m in "$lmnt" "$tmnt"; do
		vfs_wait_until 10 test -e "$m/bench/read" || problem "reads: $m does not see bench/read"
	done
	for c in 1 16; do
		cpu_vaultfs "$VF"
		run_cell "get-v-$c" fs-get "$c" "$SECS" "$MAXOPS" "${MNT[$VF]}/bench/read"
		cpu_vaultfs "$VF" "$tmnt"
		run_cell "gettwin-v-$c" fs-get "$c" "$SECS" "$MAXOPS" "$tmnt/bench/read"
		cpu_vaultfs "$VF" "$lmnt"
		run_cell "getlocal-v-$c" fs-get "$c" "$SECS" "$MAXOPS" "$lmnt/bench/read"
		cpu_vaultfs "$VF" "$lmnt"
		run_cell "getlocal2-v-$c" fs-get "$c" "$SECS" "$MAXOPS" "$lmnt/bench/read"
		cpu_vaultfs "$VF" "$tmnt"
		run_cell "gettwin2-v-$c" fs-get "$c" "$SECS" "$MAXOPS" "$tmnt/bench/read"
		cpu_etcd
		run_cell "get-e-$c" etcd-get "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" bench/read
		cpu_etcd
		run_cell "sget-e-$c" etcd-sget "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" bench/read
		cpu_null
		run_cell "get-n-$c" fs-get "$c" "$SECS" "$MAXOPS" "$NULL_MNT/read"
	done
	vfs_umount "$lmnt" || problem "reads: cannot unmount $lmnt"
	vfs_umount "$tmnt" || problem "reads: cannot unmount $tmnt"
}

# Creates of new secrets (loadgen fs-create / etcd-create: every operation
# a name that was never there; etcd: a put of a new key), 1/16/64 clients,
# through the leader and a follower, and the null filesystem (its names
# starting with n are absent, so these reach FUSE CREATE there too), in two
# shapes: "spread", each client in 4 directories of its own in turn, and
# "shared", every client in one directory (the kernel serialises the
# creates of one directory: the case that hurts). Each cell has a directory
# of its own, made before the cell (its mkdirs are not timed and are not
# in its Raft entries per operation).
create_dirs() { # create_dirs ROOT CLIENTS SHAPE
	local t d dirs=("$1")
	if [ "$3" = shared ]; then
		dirs+=("$1/dshared")
	else
		for t in $(seq 0 $(($2 - 1))); do
			for d in 0 1 2 3; do dirs+=("$(printf '%s/d%03d-%d' "$1" "$t" "$d")"); done
		done
	fi
	mkdir -p "${dirs[@]}"
}
cell_creates() {
	local c shape p root via n e vc ec
	echo "# 2c. creates of new secrets, in each client's own directories and in one shared directory"
	find_leaders
	for shape in spread shared; do
		p=create; [ "$shape" = shared ] && p=createsh
		for c in 1 16 64; do
			# through the leader (cells vl, e), then a follower (vf, ef)
			for via in l f; do
				if [ "$via" = l ]; then n=$VL e=$EL vc=vl ec=e; else n=$VF e=$EF vc=vf ec=ef; fi
				root=${MNT[$n]}/create/$p-$via$c
				create_dirs "$root" "$c" "$shape" || problem "creates: mkdir of $root failed"
				cpu_vaultfs "$n"
				run_cell "$p-$vc-$c" fs-create "$c" "$SECS" "$MAXOPS" "$root" "$shape"
				cpu_etcd
				run_cell "$p-$ec-$c" etcd-create "$c" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$e]}" \
					"create/$p-$via$c/" "$shape"
			done
			cpu_null
			run_cell "$p-n-$c" fs-create "$c" "$SECS" "$MAXOPS" "$NULL_MNT/dc-$p-$c" "$shape"
		done
	done
}

cell_floor() {
	local fs=$((SECS > 2 ? 2 : SECS))
	echo "# 3. floor: empty open+read+close, 1 client"
	run_cell "floor-tmpfs" fs-get 1 "$fs" "$MAXOPS" "$SHM/empty"
	run_cell "floor-local" fs-get 1 "$fs" "$MAXOPS" "$VFS_TMP/m-n1-local/bench/empty"
	run_cell "floor-lin-leader" fs-get 1 "$fs" "$MAXOPS" "${MNT[$VL]}/bench/empty"
	# What a user sees: the `cat` command (a process per read) on a local
	# file and on the mounts, the same 11-byte value everywhere.
	echo "# 4. the cat command, 1 client"
	run_cell "cat-tmpfs" cat 1 "$fs" "$MAXOPS" "$SHM/read"
	run_cell "cat-local" cat 1 "$fs" "$MAXOPS" "$VFS_TMP/m-n1-local/bench/read"
	run_cell "cat-lin-leader" cat 1 "$fs" "$MAXOPS" "${MNT[$VL]}/bench/read"
	run_cell "cat-lin-follower" cat 1 "$fs" "$MAXOPS" "${MNT[$VF]}/bench/read"
}

# FUSE requests per operation, by opcode: a second mount of the leader's
# node in debug mode (-d logs every request it gets), UC_OPS puts and reads
# through it after one of each to warm up, counted from its log.
UC_OPS=20
UC_OPCODES=(GETATTR LOOKUP OPEN CREATE WRITE READ FLUSH RELEASE GETXATTR)
# uc_released LOG N: the log holds at least N RELEASEs.
uc_released() { [ "$(grep -a -c 'opcode: RELEASE ' "$1")" -ge "$2" ]; }
cell_upcalls() {
	local mnt=$VFS_TMP/m-debug log=$VFS_TMP/fuse-debug.log kind from code n total counts
	local released=3
	echo "# 5. FUSE requests per put and per read ($UC_OPS each)"
	mkdir -p "$mnt"
	VFS_MOUNTS+=("$mnt")
	# Appending, so that the offsets below stay valid.
	"$MOUNT_VAULTFS" "$(vfs_socket "$VL")" "$mnt" -d 2>>"$log" &
	if ! vfs_wait_until 10 mountpoint -q "$mnt"; then
		problem "upcalls: the debug mount did not come up"
		return
	fi
	# Warm-up, one release each: create the put target, one put, one read.
	: >"$mnt/bench/upcalls-0"
	"$LOADGEN" fs-put 1 30 1 "$mnt/bench/upcalls-" >/dev/null 2>&1
	"$LOADGEN" fs-get 1 30 1 "$mnt/bench/read" >/dev/null 2>&1
	for kind in put get; do
		# RELEASE comes after close() returns: wait for the earlier ones
		# (the warm-up, then the puts) before taking the offset.
		vfs_wait_until 10 uc_released "$log" "$released" ||
			problem "upcalls: the debug mount did not log $released releases"
		from=$(( $(wc -l <"$log") + 1 ))
		if [ "$kind" = put ]; then
			"$LOADGEN" fs-put 1 30 "$UC_OPS" "$mnt/bench/upcalls-" >/dev/null 2>&1
		else
			"$LOADGEN" fs-get 1 30 "$UC_OPS" "$mnt/bench/read" >/dev/null 2>&1
		fi
		released=$((released + UC_OPS))
		vfs_wait_until 10 uc_released "$log" "$released" ||
			problem "upcalls: the debug mount did not log $UC_OPS ${kind}s"
		total=0 counts=()
		for code in "${UC_OPCODES[@]}"; do
			n=$(tail -n "+$from" "$log" | grep -a -c "opcode: $code " || true)
			total=$((total + n))
			counts+=("$code=$n")
		done
		counts+=("total=$total")
		rec upcalls kind="$kind" ops="$UC_OPS" "${counts[@]}"
		[ "$total" -gt 0 ] || problem "upcalls: no FUSE request counted for a $kind"
		echo "#   ${kind}: ${counts[*]} for $UC_OPS"
	done
	fusermount3 -u "$mnt" || problem "upcalls: cannot unmount the debug mount"
}

# Failover: every trial kills the current leader of each system, and then
# restarts it (after the last trial too: the cells after this one want three
# nodes). Two ways of timing it, each a cell with trials of its own:
# "loop" (cell failover): one loadgen process starts an attempt every 10 ms
# in a thread of its own (fs-failover / etcd-failover); "exec" (cell
# failexec): every attempt is a new process, loadgen exec'd for one write
# (fs-once) or one put on a new connection (etcd-once) by loadgen
# exec-failover, as a user's command or script would be; the same program
# for both systems, so both pay the same start-up.
VFO=() EFO=() VFX=() EFX=() # ms per trial; "" for a trial that never succeeded
# lg_ms OUTPUT: the ms=T of loadgen's failover and wait modes ("" if none).
lg_ms() { sed -n 's/^ms=\([0-9.]*\).*/\1/p' <<<"$1"; }
# failover_trials HOW KIND: BENCH_FAILOVERS trials, recorded as KIND.
failover_trials() {
	local how=$1 kind=$2 t ldr surv eld es out i n k base
	for t in $(seq 1 "$FAILOVERS"); do
		# vaultfs
		ldr=$(vfs_status_field "${MNT[$VF]}" leader)
		surv=; for n in n1 n2 n3; do [ "$n" != "$ldr" ] && { surv=$n; break; }; done
		disown "${VFS_PID[$ldr]}" 2>/dev/null # no "Killed" job notice
		if [ "$how" = loop ]; then
			out=$("$LOADGEN" fs-failover "${VFS_PID[$ldr]}" 30 "${MNT[$surv]}/bench/failover" 2>&1)
		else
			# As fs-failover does: every slot written before the kill,
			# so that the attempts are writes of existing secrets and
			# the survivor's path is warm.
			base=${MNT[$surv]}/bench/failexec
			for k in $(seq 0 63); do
				printf 'before-kill\n' > "$base.$k" || problem "failexec: the write of $base.$k before the kill failed"
			done
			out=$("$LOADGEN" exec-failover "${VFS_PID[$ldr]}" 30 "$LOADGEN" fs-once "$base.{}" 2>&1)
		fi
		echo "#   vaultfs trial $t (killed $ldr, wrote via $surv): $out"
		if [ "$how" = loop ]; then VFO+=("$(lg_ms "$out")"); else VFX+=("$(lg_ms "$out")"); fi
		rec "$kind" sys=vaultfs trial="$t" killed="$ldr" out="$out"
		kill -KILL "${VFS_PID[$ldr]}" 2>/dev/null # if loadgen failed before its kill
		vfs_wait_gone "${VFS_PID[$ldr]}" 10
		unset "VFS_PID[$ldr]"
		# etcd
		eld=$(etcd_leader)
		[ -n "$eld" ] || die "failover trial $t: no etcd leader"
		es=; for i in 1 2 3; do [ "$i" != "$eld" ] && { es=$i; break; }; done
		disown "${ETCD_PID[$eld]}" 2>/dev/null
		if [ "$how" = loop ]; then
			out=$("$LOADGEN" etcd-failover "${ETCD_PID[$eld]}" 30 "127.0.0.1:${ECP[$es]}" bench/failover 2>&1)
		else
			for k in $(seq 0 63); do
				"$LOADGEN" etcd-once "127.0.0.1:${ECP[$es]}" "bench/failexec.$k" ||
					problem "failexec: the put of bench/failexec.$k before the kill failed"
			done
			out=$("$LOADGEN" exec-failover "${ETCD_PID[$eld]}" 30 "$LOADGEN" etcd-once \
				"127.0.0.1:${ECP[$es]}" "bench/failexec.{}" 2>&1)
		fi
		echo "#   etcd trial $t (killed e$eld, put via e$es): $out"
		if [ "$how" = loop ]; then EFO+=("$(lg_ms "$out")"); else EFX+=("$(lg_ms "$out")"); fi
		rec "$kind" sys=etcd trial="$t" killed="e$eld" out="$out"
		kill -KILL "${ETCD_PID[$eld]}" 2>/dev/null
		vfs_wait_gone "${ETCD_PID[$eld]}" 10
		unset "ETCD_PID[$eld]"
		# bring both back
		etcd_start "$eld"
		vfs_start "$ldr" || die "cannot restart vaultfsd $ldr"
		vfs_wait_until 20 grep -qx 'sealed: true' "${MNT[$ldr]}/.vault/status" || die "$ldr not back"
		vfs_unseal "${MNT[$ldr]}" || die "cannot unseal $ldr"
		# (its value may be empty: attempts still blocked in open(O_TRUNC)
		# when loadgen exited commit the truncation on release)
		vfs_wait_until 30 test -e "${MNT[$ldr]}/bench/read" ||
			die "$ldr does not serve reads again"
		vfs_wait_until 30 vfs_three_voters "${MNT[$ldr]}" || die "$ldr is not a voter again"
		vfs_wait_until 30 etcd_healthy 1 2 3 || die "etcd e$eld did not come back"
		sleep 1 # let both clusters settle before the next kill
	done
}
# failover_check KIND VAULTFS-MS ETCD-MS: a problem for each trial that
# never succeeded (the two arrays' names).
failover_check() {
	local -n vms=$2 ems=$3
	local t
	for t in "${!vms[@]}"; do is_num "${vms[$t]}" || problem "vaultfs $1 trial $((t + 1)) never succeeded"; done
	for t in "${!ems[@]}"; do is_num "${ems[$t]}" || problem "etcd $1 trial $((t + 1)) never succeeded"; done
}
cell_failover() {
	echo "# 6. failover: SIGKILL the leader, next successful write through a survivor"
	failover_trials loop failover
	failover_check failover VFO EFO
}
cell_failexec() {
	echo "# 6b. failover, a new process per attempt: SIGKILL the leader, first such write through a survivor"
	failover_trials exec failexec
	failover_check failexec VFX EFX
}

# ---- 7. scale -------------------------------------------------------------------
declare -A HWM_OLD=() # HWM_OLD[node]: VmHWM of its process before a cold start
# The secret written last, dNNN/sNNNNNN: read by the cold starts.
SCALE_LAST=$(printf 'd%03d/s%06d' $(((SCALE_TOTAL - 1) / SCALE_FILES)) $((SCALE_TOTAL - 1)))
du_b() { du -sb "$1" 2>/dev/null | cut -f1; }
# mount_pid MOUNTPOINT: the mount.vaultfs process serving it (the
# mountpoint is its last argument, or the one before its -o options).
mount_pid() { pgrep -f -- "^$MOUNT_VAULTFS .* $1( -o .*)?\$" | head -n 1; }

# count_out FILE REGEX: lines of FILE matching REGEX (0 if none).
count_out() { grep -cE "$2" "$1" 2>/dev/null || true; }

SCALE_FILLED=0 # the scale tree is there (the mixed cell makes it if scale did not run)
# tree_fill CELL TREE DIRS FILES: DIRS x FILES secrets in TREE (a directory
# of the leader's mount; etcd: the prefix TREE/), cells CELL-v and CELL-e.
tree_fill() {
	local cell=$1 tree=$2 dirs=$3 files=$4 out c0 c1 epo ops made
	mkdir "${MNT[$VL]}/$tree" || { problem "$tree: mkdir on vaultfs failed"; return 1; }
	c0=$(vfs_status_field "${MNT[$VL]}" commit_index)
	out=$("$LOADGEN" fs-fill "$SCALE_THREADS" "${MNT[$VL]}/$tree" "$dirs" "$files" 2>&1)
	c1=$(vfs_status_field "${MNT[$VL]}" commit_index)
	epo=$(entries_per_op "$c0" "$c1" "$out")
	cell_result "$cell-v" "fs-fill $SCALE_THREADS ${MNT[$VL]}/$tree $dirs $files" "$out" "$epo"
	echo "#   vaultfs fill via $VL: $out raft_entries_per_op=$epo"
	ops=$(lg_field "$out" ops) made=$(lg_field "$out" dirs)
	[ "${ops:-0}" = $((dirs * files)) ] && [ "${made:-0}" = "$dirs" ] ||
		problem "$tree: vaultfs wrote ${ops:-0}/$((dirs * files)) secrets in ${made:-0}/$dirs dirs"
	out=$("$LOADGEN" etcd-fill "$SCALE_THREADS" "127.0.0.1:${ECP[$EL]}" "$tree/" "$dirs" "$files" 2>&1)
	cell_result "$cell-e" "etcd-fill $SCALE_THREADS 127.0.0.1:${ECP[$EL]} $tree/ $dirs $files" "$out"
	echo "#   etcd fill via e$EL: $out"
	ops=$(lg_field "$out" ops)
	[ "${ops:-0}" = $((dirs * files)) ] || problem "$tree: etcd wrote ${ops:-0}/$((dirs * files)) keys"
}
scale_fill() {
	SCALE_FILLED=1
	tree_fill fill scale "$SCALE_DIRS" "$SCALE_FILES"
}

# scale_list SYSTEM WHAT RUN CACHE REGEX CMD...: times CMD (output to a file)
# and counts the secrets it names; every one of them must be there. RUN:
# 1..TRAV_RUNS; CACHE (vaultfs): cold (the first traversal on a fresh
# mount: nothing in the kernel's caches) or warm (the same again at once).
scale_list() {
	local sys=$1 what=$2 run=$3 cache=$4 re=$5 t0 t1 rc seen ms lines
	shift 5
	tnow t0
	"$@" > "$VFS_TMP/scale-$what.out" 2> "$VFS_TMP/scale-$what.err"
	rc=$?
	tnow t1
	seen=$(count_out "$VFS_TMP/scale-$what.out" "$re")
	ms=$(elapsed_ms "$t0" "$t1")
	lines=$(wc -l < "$VFS_TMP/scale-$what.out")
	rec list sys="$sys" what="$what" run="$run" ${cache:+"cache=$cache"} ms="$ms" seen="$seen" \
		exit="$rc" lines="$lines"
	echo "#   $sys $what${cache:+ $cache} (run $run): $ms ms, exit $rc, $seen/$SCALE_TOTAL secrets, $lines lines"
	[ "$rc" = 0 ] || problem "scale: $sys $what exited $rc: $(head -c 300 "$VFS_TMP/scale-$what.err")"
	[ "$seen" = "$SCALE_TOTAL" ] || problem "scale: $sys $what saw $seen of $SCALE_TOTAL secrets"
}
etcdctl_follower() { ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${ECP[$EF]}" --command-timeout=60s "$@"; }

# The traversals of the scale tree on a follower, vaultfs's as commands on
# a mount: WHAT, the regex of a secret in its output, the command (with
# MNT for the mount; run in the tree's directory's parent for stat_all).
# "stat_all" is a stat of every secret by name, as a program that knows its
# names would (xargs over the list, made before the clock starts; a few
# stat processes for 10,000 names). etcd has no tree: its side is a prefix
# get of the same keys, names only (get --prefix --keys-only, for ls -R and
# find) or with the values (get --prefix, for ls -lR, du -a and stat).
TRAV_WHAT=(ls_R ls_lR du_a find_f stat_all)
declare -A TRAV_RE=([ls_R]='^s[0-9]{6}$' [ls_lR]='^-.* s[0-9]{6}$' [du_a]='/s[0-9]{6}$'
	[find_f]='/s[0-9]{6}$' [stat_all]='^scale/d[0-9]{3}/s[0-9]{6} [0-9]+$')
trav_cmd() { # trav_cmd WHAT MOUNTPOINT
	case $1 in
	ls_R) ls -R "$2/scale" ;;
	ls_lR) ls -lR "$2/scale" ;;
	du_a) du -a "$2/scale" ;;
	find_f) find "$2/scale" -type f ;;
	stat_all) (cd "$2" && xargs -a "$VFS_TMP/scale-names" stat -c '%n %s') ;;
	esac
}
# The floor of a traversal: the same command on the null filesystem holding
# a tree of the same shape, on a mount made for it (cold).
null_traverse() { # null_traverse WHAT RUN
	local mnt=$VFS_TMP/m-travnull pid
	mkdir -p "$mnt"
	"$NULLFS" "$mnt" "$SCALE_DIRS" "$SCALE_FILES" >>"$VFS_TMP/nullfs.log" 2>&1 &
	pid=$!
	if ! vfs_wait_until 10 mountpoint -q "$mnt"; then
		problem "scale: cannot mount the null filesystem for the traversals"
		return
	fi
	scale_list nullfs "$1" "$2" cold "${TRAV_RE[$1]}" trav_cmd "$1" "$mnt"
	fusermount3 -u "$mnt" || problem "scale: cannot unmount $mnt"
	vfs_wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null
}
scale_traverse() {
	local r what mnt=$VFS_TMP/m-trav k
	# The names, for stat_all.
	awk -v d="$SCALE_DIRS" -v f="$SCALE_FILES" 'BEGIN { for (k = 0; k < d * f; k++)
		printf "scale/d%03d/s%06d\n", int(k / f), k }' > "$VFS_TMP/scale-names"
	for r in $(seq 1 "$TRAV_RUNS"); do
		for what in "${TRAV_WHAT[@]}"; do
			# A mount of the follower of its own, made for this
			# traversal and gone after it: the cold run starts with
			# nothing cached in the kernel, whatever ran before.
			vfs_mount "$VF" "$mnt" || { problem "scale: cannot mount $VF for the traversals"; return; }
			scale_list vaultfs "$what" "$r" cold "${TRAV_RE[$what]}" trav_cmd "$what" "$mnt"
			scale_list vaultfs "$what" "$r" warm "${TRAV_RE[$what]}" trav_cmd "$what" "$mnt"
			vfs_umount "$mnt" || problem "scale: cannot unmount $mnt"
			null_traverse "$what" "$r"
		done
		k='^scale/d[0-9]{3}/s[0-9]{6}$'
		scale_list etcd ls_R "$r" '' "$k" etcdctl_follower get --prefix --keys-only scale/
		scale_list etcd du_a "$r" '' "$k" etcdctl_follower get --prefix scale/
	done
}

# Cold start of a vaultfs follower: SIGTERM and wait, then the clock starts
# as vaultfsd is started; the script unseals it as soon as its mount answers,
# and the figure is the first linearizable read of a secret through that
# mount (loadgen fs-wait: an attempt every 10 ms). vfs_start polls for the
# socket every 50 ms, which may add up to 50 ms.
# SECRET (default scale/$SCALE_LAST) is the secret read; CELL, if given,
# goes into the record.
scale_cold_vaultfs() {
	local n=$VF t0 t1 t2 out socket_ms unsealed_ms secret=${1:-scale/$SCALE_LAST}
	HWM_OLD[$n]=$(vmhwm_kb "${VFS_PID[$n]}")
	vfs_stop "$n"
	tnow t0
	vfs_start "$n" || die "cold start: vaultfsd $n did not start"
	tnow t1
	poll10 20 grep -qx 'sealed: true' "${MNT[$n]}/.vault/status" || die "cold start: $n's mount does not answer"
	vfs_unseal "${MNT[$n]}" || die "cold start: cannot unseal $n"
	tnow t2
	out=$("$LOADGEN" fs-wait "$t0" 30 "${MNT[$n]}/$secret" 64 2>&1)
	socket_ms=$(elapsed_ms "$t0" "$t1") unsealed_ms=$(elapsed_ms "$t0" "$t2")
	rec cold sys=vaultfs node="$n" socket_ms="$socket_ms" unsealed_ms="$unsealed_ms" out="$out" \
		${2+"cell=$2"}
	echo "#   vaultfs cold start of $n: socket $socket_ms ms, unsealed $unsealed_ms ms, first read: $out"
	is_num "$(lg_ms "$out")" || problem "scale: vaultfs $n never served a read after its cold start ($out)"
	vfs_wait_until 30 vfs_three_voters "${MNT[$n]}" || die "cold start: $n is not a voter again"
}
# The same for an etcd follower: SIGTERM, restart, first linearizable get of
# a key on that member (loadgen etcd-wait).
scale_cold_etcd() { # [KEY [CELL]], as scale_cold_vaultfs
	local i=$EF t0 out key=${1:-scale/$SCALE_LAST}
	HWM_OLD[e$i]=$(vmhwm_kb "${ETCD_PID[$i]}")
	etcd_stop "$i"
	tnow t0
	etcd_start "$i"
	out=$("$LOADGEN" etcd-wait "$t0" 30 "127.0.0.1:${ECP[$i]}" "$key" 2>&1)
	rec cold sys=etcd node="e$i" out="$out" ${2+"cell=$2"}
	echo "#   etcd cold start of e$i: first read: $out"
	is_num "$(lg_ms "$out")" || problem "scale: etcd e$i never served a read after its cold start ($out)"
	vfs_wait_until 30 etcd_healthy 1 2 3 || die "cold start: etcd e$i is not healthy again"
}

# footprint SYSTEM NODE DATA-DIR PID [MOUNTPOINT]: records a node's disk
# use and peak RSS (and its mount's) at the end of the scale cell. VmHWM is
# per process: for the node restarted by the cold start, its old process's
# peak counts too; nodes restarted by the failover trials were running since.
# CELL (FOOTPRINT_CELL), if set, goes into the record.
footprint() {
	local disk hwm mhwm='' mp
	disk=$(du_b "$3") hwm=$(vmhwm_kb "$4")
	if [ -n "${5-}" ]; then
		mp=$(mount_pid "$5")
		mhwm=${mp:+$(vmhwm_kb "$mp")}
	fi
	[ "${HWM_OLD[$2]:-0}" -gt "${hwm:-0}" ] && hwm=${HWM_OLD[$2]}
	rec footprint sys="$1" node="$2" disk="$disk" hwm="$hwm" ${5+"mount_hwm=$mhwm"} \
		${FOOTPRINT_CELL:+"cell=$FOOTPRINT_CELL"}
	is_num "$hwm" || problem "scale: no VmHWM for $1 node $2"
	is_num "$disk" || problem "scale: no disk figure for $1 node $2"
}

cell_scale() {
	local n i
	echo "# 7. scale: $SCALE_TOTAL secrets in $SCALE_DIRS directories, $SCALE_THREADS writers"
	find_leaders
	for n in n1 n2 n3; do rec disk0 sys=vaultfs node="$n" bytes="$(du_b "$(vfs_data "$n")")"; done
	for i in 1 2 3; do rec disk0 sys=etcd node="e$i" bytes="$(du_b "$VFS_TMP/etcd-e$i")"; done
	if [ "$SCALE_FILLED" = 1 ]; then
		problem "scale: the tree was made before this cell (by the mixed cell?): run scale first"
		return
	fi
	scale_fill
	# Listings on a follower: linearizable, so every secret must be there.
	scale_traverse
	scale_cold_vaultfs
	scale_cold_etcd
	for n in n1 n2 n3; do footprint vaultfs "$n" "$(vfs_data "$n")" "${VFS_PID[$n]}" "${MNT[$n]}"; done
	for i in 1 2 3; do footprint etcd "e$i" "$VFS_TMP/etcd-e$i" "${ETCD_PID[$i]}"; done
}

# ---- 7b. mixed -------------------------------------------------------------------
# MIXED_CLIENTS clients through a follower of each system, each operation on
# a secret of the scale tree picked uniformly at random: MIXED_WRITE_PCT %
# writes (a 64-byte value, as the fill's), the rest linearizable reads
# (vaultfs open/read/close; etcd range, serializable=false). The tree is the
# scale cell's (10,000 secrets in the full run); if that cell did not run,
# it is filled here first.
cell_mixed() {
	echo "# 7b. mixed: $MIXED_CLIENTS clients, $((100 - MIXED_WRITE_PCT)) % reads and $MIXED_WRITE_PCT % writes over $SCALE_TOTAL secrets, via a follower"
	find_leaders
	[ "$SCALE_FILLED" = 1 ] || scale_fill
	vfs_wait_until 30 test -e "${MNT[$VF]}/scale/$SCALE_LAST" ||
		problem "mixed: the follower does not see the scale tree"
	cpu_vaultfs "$VF"
	run_cell "mixed-v-$MIXED_CLIENTS" fs-mixed "$MIXED_CLIENTS" "$SECS" "$MAXOPS" "${MNT[$VF]}/scale" \
		"$SCALE_DIRS" "$SCALE_FILES" "$MIXED_WRITE_PCT"
	cpu_etcd
	run_cell "mixed-e-$MIXED_CLIENTS" etcd-mixed "$MIXED_CLIENTS" "$SECS" "$MAXOPS" "127.0.0.1:${ECP[$EF]}" \
		scale/ "$SCALE_DIRS" "$SCALE_FILES" "$MIXED_WRITE_PCT"
}

# ---- 7c. million -----------------------------------------------------------------
# MILLION_DIRS x MILLION_FILES secrets of 64 bytes (1000 x 1000 in the full
# run), a tree of their own (million/) on both systems: written by
# SCALE_THREADS writers through the leader (as the scale cell's); a
# follower's cold start to its first linearizable read of the tree's last
# secret (as the scale cell's); a fresh node joining and catching up: the
# clock starts as vaultfsd is started (etcd: as the member is added), the
# node is joined and unsealed as soon as its mount answers (etcd: started
# with the cluster "existing"), and the figure is its first linearizable
# read of the tree's last secret, after which it is removed again
# (remove-peer; etcd: member remove); disk and peak RSS per node at the end.
MILLION_LAST=$(printf 'd%03d/s%06d' $(((MILLION_TOTAL - 1) / MILLION_FILES)) $((MILLION_TOTAL - 1)))
million_fill() { tree_fill mfill million "$MILLION_DIRS" "$MILLION_FILES"; }
million_join_vaultfs() {
	local n=n4 mnt=$VFS_TMP/m-n4 t0 out
	vfs_config "$n"
	tnow t0
	vfs_start "$n" || { problem "million: vaultfsd $n did not start"; return; }
	vfs_mount "$n" "$mnt" || { problem "million: cannot mount $n"; return; }
	echo "$(vfs_cluster_addr "$VL")" > "$mnt/.vault/join" || problem "million: $n cannot join"
	vfs_unseal "$mnt" || problem "million: cannot unseal $n"
	out=$("$LOADGEN" fs-wait "$t0" 300 "$mnt/million/$MILLION_LAST" 64 2>&1)
	rec join sys=vaultfs node="$n" out="$out" hwm="$(vmhwm_kb "${VFS_PID[$n]}")" \
		disk="$(du_b "$(vfs_data "$n")")"
	echo "#   vaultfs $n joined and read the last secret: $out"
	is_num "$(lg_ms "$out")" || problem "million: vaultfs $n never served the last secret ($out)"
	echo "$n" > "${MNT[$VL]}/.vault/remove-peer" || problem "million: cannot remove $n"
	fusermount3 -u "$mnt" || problem "million: cannot unmount $mnt"
	vfs_stop "$n"
}
million_join_etcd() {
	local t0 out id start=$SECONDS
	ECP[4]=$(pick_port); used+="${ECP[4]} "
	EPP[4]=$(pick_port); used+="${EPP[4]} "
	# etcd refuses a member while one was restarted less than 5 s ago
	# (the cold start just before): asked again until it takes it, the
	# clock starting at the attempt that did.
	vfs_wait_until 30 etcd_healthy 1 2 3 || problem "million: etcd is not healthy before the join"
	until tnow t0 && ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${ECP[$EL]}" member add e4 \
		--peer-urls="http://127.0.0.1:${EPP[4]}" >/dev/null 2>&1; do
		[ $((SECONDS - start)) -lt 60 ] || { problem "million: etcd member add failed for 60 s"; return; }
		sleep 0.5
	done
	etcd --name e4 --data-dir "$VFS_TMP/etcd-e4" \
		--listen-client-urls "http://127.0.0.1:${ECP[4]}" \
		--advertise-client-urls "http://127.0.0.1:${ECP[4]}" \
		--listen-peer-urls "http://127.0.0.1:${EPP[4]}" \
		--initial-advertise-peer-urls "http://127.0.0.1:${EPP[4]}" \
		--initial-cluster "$ECLUSTER,e4=http://127.0.0.1:${EPP[4]}" \
		--initial-cluster-state existing >>"$VFS_TMP/etcd-e4.log" 2>&1 &
	ETCD_PID[4]=$!
	out=$("$LOADGEN" etcd-wait "$t0" 300 "127.0.0.1:${ECP[4]}" "million/$MILLION_LAST" 2>&1)
	rec join sys=etcd node=e4 out="$out" hwm="$(vmhwm_kb "${ETCD_PID[4]}")" disk="$(du_b "$VFS_TMP/etcd-e4")"
	echo "#   etcd e4 joined and read the last key: $out"
	is_num "$(lg_ms "$out")" || problem "million: etcd e4 never served the last key ($out)"
	id=$(ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${ECP[$EL]}" member list | awk -F', ' '$3 == "e4" { print $1 }')
	[ -n "$id" ] && ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:${ECP[$EL]}" member remove "$id" >/dev/null ||
		problem "million: cannot remove etcd e4"
	etcd_stop 4
}
cell_million() {
	local n i
	echo "# 7c. million: $MILLION_TOTAL secrets in $MILLION_DIRS directories, $SCALE_THREADS writers"
	find_leaders
	for n in n1 n2 n3; do rec disk0 sys=vaultfs node="$n" bytes="$(du_b "$(vfs_data "$n")")" cell=million; done
	for i in 1 2 3; do rec disk0 sys=etcd node="e$i" bytes="$(du_b "$VFS_TMP/etcd-e$i")" cell=million; done
	million_fill || return
	scale_cold_vaultfs "million/$MILLION_LAST" million
	scale_cold_etcd "million/$MILLION_LAST" million
	find_leaders
	million_join_vaultfs
	million_join_etcd
	find_leaders
	for n in n1 n2 n3; do FOOTPRINT_CELL=million footprint vaultfs "$n" "$(vfs_data "$n")" "${VFS_PID[$n]}"; done
	for i in 1 2 3; do FOOTPRINT_CELL=million footprint etcd "e$i" "$VFS_TMP/etcd-e$i" "${ETCD_PID[$i]}"; done
}

# ---- 8. stability ---------------------------------------------------------------
declare -A ST=() # ST[system,metric]
# vfs_sample: "LEADER TERM": the leader at least two nodes name ("-" if
# none), and the highest term any node reports.
vfs_sample() {
	local n st l t mt=0 best=-
	declare -A votes=()
	for n in n1 n2 n3; do
		st=$(cat "${MNT[$n]}/.vault/status" 2>/dev/null) || continue
		l=$(sed -n 's/^leader: //p' <<<"$st") t=$(sed -n 's/^term: //p' <<<"$st")
		[ -n "$l" ] && votes[$l]=$((${votes[$l]:-0} + 1))
		is_num "$t" && [ "$t" -gt "$mt" ] && mt=$t
	done
	for l in "${!votes[@]}"; do [ "${votes[$l]}" -ge 2 ] && best=$l; done
	echo "$best $mt"
}
# stab_track SYSTEM LEADER: counts leader changes between samples, and
# samples in which no two members agreed on a leader.
stab_track() {
	local sys=$1 l=$2
	ST[$sys,samples]=$((${ST[$sys,samples]:-0} + 1))
	if [ "$l" = - ]; then
		ST[$sys,no_leader]=$((${ST[$sys,no_leader]:-0} + 1))
		return
	fi
	if [ -n "${ST[$sys,last]:-}" ] && [ "${ST[$sys,last]}" != "$l" ]; then
		ST[$sys,changes]=$((${ST[$sys,changes]:-0} + 1))
		echo "#   $sys: leader ${ST[$sys,last]} -> $l after $((SECONDS - ST[t0])) s"
	fi
	ST[$sys,last]=$l
}
# Both loads run at the same time, for the same window: the machine is then
# busier than with either alone, which is the harsher condition for a
# spurious election, and both systems see the same noise; it also keeps the
# full run's stability part at 10 minutes instead of 20.
cell_stability() {
	local vp ep l t k vout eout c0 c1 maxops us0 now left sys
	echo "# 8. stability: puts by $STAB_CLIENTS clients via a follower of each, ${STAB_SECS} s, both at once"
	find_leaders
	# loadgen keeps every latency: room for ~20,000 op/s.
	maxops=$((STAB_SECS * 20000 > MAXOPS ? STAB_SECS * 20000 : MAXOPS))
	ST[vaultfs,changes]=0 ST[vaultfs,no_leader]=0 ST[etcd,changes]=0 ST[etcd,no_leader]=0
	read -r l t < <(vfs_sample); ST[vaultfs,leader0]=$l ST[vaultfs,term0]=$t
	read -r l t < <(etcd_sample); ST[etcd,leader0]=$l ST[etcd,term0]=$t
	c0=$(vfs_status_field "${MNT[$VL]}" commit_index)
	ST[t0]=$SECONDS
	"$LOADGEN" fs-put "$STAB_CLIENTS" "$STAB_SECS" "$maxops" "${MNT[$VF]}/bench/stab-" > "$VFS_TMP/stab-v.out" 2>&1 &
	vp=$!
	"$LOADGEN" etcd-put "$STAB_CLIENTS" "$STAB_SECS" "$maxops" "127.0.0.1:${ECP[$EF]}" bench/stab- > "$VFS_TMP/stab-e.out" 2>&1 &
	ep=$!
	BG_PIDS+=("$vp" "$ep")
	# One sample a second (the period is pacing, not a wait for a condition).
	k=0
	tnow us0
	while kill -0 "$vp" 2>/dev/null || kill -0 "$ep" 2>/dev/null; do
		[ "$((SECONDS - ST[t0]))" -gt $((STAB_SECS + 60)) ] && { problem "stability: the loads did not end"; break; }
		read -r l t < <(vfs_sample); stab_track vaultfs "$l"
		read -r l t < <(etcd_sample); stab_track etcd "$l"
		k=$((k + 1))
		tnow now
		left=$((us0 + k * 1000000 - now))
		[ "$left" -gt 0 ] && sleep "$(printf '%d.%06d' $((left / 1000000)) $((left % 1000000)))"
	done
	wait "$vp"; wait "$ep"
	BG_PIDS=()
	c1=$(vfs_status_field "${MNT[$VL]}" commit_index)
	vout=$(cat "$VFS_TMP/stab-v.out") eout=$(cat "$VFS_TMP/stab-e.out")
	cell_result stab-v "fs-put $STAB_CLIENTS $STAB_SECS $maxops ${MNT[$VF]}/bench/stab-" "$vout" \
		"$(entries_per_op "$c0" "$c1" "$vout")"
	cell_result stab-e "etcd-put $STAB_CLIENTS $STAB_SECS $maxops 127.0.0.1:${ECP[$EF]} bench/stab-" "$eout"
	read -r l t < <(vfs_sample); ST[vaultfs,leader1]=$l ST[vaultfs,term1]=$t; stab_track vaultfs "$l"
	read -r l t < <(etcd_sample); ST[etcd,leader1]=$l ST[etcd,term1]=$t; stab_track etcd "$l"
	echo "#   vaultfs via $VF: $vout; term ${ST[vaultfs,term0]} -> ${ST[vaultfs,term1]}, leader ${ST[vaultfs,leader0]} -> ${ST[vaultfs,leader1]}"
	echo "#   etcd via e$EF: $eout; term ${ST[etcd,term0]} -> ${ST[etcd,term1]}, leader ${ST[etcd,leader0]} -> ${ST[etcd,leader1]}"
	for sys in vaultfs etcd; do
		rec stability sys="$sys" leader0="${ST[$sys,leader0]:-}" term0="${ST[$sys,term0]:-}" \
			leader1="${ST[$sys,leader1]:-}" term1="${ST[$sys,term1]:-}" changes="${ST[$sys,changes]:-}" \
			no_leader="${ST[$sys,no_leader]:-}" samples="${ST[$sys,samples]:-}"
		[ "${ST[$sys,term1]:-0}" -gt 0 ] || problem "stability: no $sys term could be read"
	done
	# A leader change is a figure, not a failure: it depends on how loaded the
	# machine is (pass/fail tests hold no timing limits).
}

# Stops both clusters (the demo then runs on an idle machine); $VFS_TMP and
# its logs stay until the EXIT trap.
teardown() {
	local m n i
	for m in "${VFS_MOUNTS[@]}"; do
		vfs_is_mounted "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; }
	done
	for n in "${!VFS_PID[@]}"; do vfs_stop "$n"; done
	for i in "${!ETCD_PID[@]}"; do etcd_stop "$i"; done
}

# ---- 9. demo --------------------------------------------------------------------
# demo_stop: if we are stopped while the demo runs. The demo runs in its own
# process group: SIGTERM to all of it (demo.sh's EXIT trap unmounts, stops
# its daemons and removes its directory); then whatever is left of it, e.g.
# a mount that was being made as the signal came, found by its directory.
demo_stop() {
	local work m p
	kill -TERM -- "-$DEMO_PID" 2>/dev/null
	vfs_wait_gone "$DEMO_PID" 30
	kill -KILL -- "-$DEMO_PID" 2>/dev/null
	work=$(grep -o -m 1 '/tmp/vaultfs-demo\.[A-Za-z0-9]*' "$DEMO_LOG" 2>/dev/null | head -n 1)
	[ -n "$work" ] && [ -d "$work" ] || return 0
	for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts); do
		fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	for p in $(pgrep -f -- "$work/"); do
		kill -TERM "$p" 2>/dev/null
		vfs_wait_gone "$p" 10 || kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$work"
}
cell_demo() {
	local t0 t1 build rc secs
	if [ "$DEMO" != 1 ]; then
		echo "# 9. demo: skipped (BENCH_DEMO=$DEMO)"
		return
	fi
	# demo.sh builds ./build with its defaults; say whether that was work.
	if [ ! -e "$ROOT/build/build.ninja" ]; then
		build=fresh
	elif ninja -C "$ROOT/build" -n 2>/dev/null | grep -q 'no work to do'; then
		build=no-op
	else
		build=incremental
	fi
	echo "# 9. demo: examples/demo.sh (its build of ./build: $build), output in $DEMO_LOG"
	mkdir -p "$(dirname "$DEMO_LOG")"
	tnow t0
	# In the background, so that the EXIT trap can stop it if we are killed;
	# in a process group of its own (setsid execs: a background job is not
	# a group leader), so that demo_stop reaches the commands it runs.
	setsid bash "$ROOT/examples/demo.sh" > "$DEMO_LOG" 2>&1 &
	DEMO_PID=$!
	wait "$DEMO_PID"
	rc=$?
	tnow t1
	DEMO_PID=
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
	rec demo build="$build" secs="$secs" exit="$rc"
	echo "#   demo: $secs s, exit $rc"
	if [ "$rc" != 0 ]; then
		problem "demo: examples/demo.sh exited $rc (log: $DEMO_LOG)"
		tail -n 15 "$DEMO_LOG" | sed 's/^/#   demo: /' >&2
	fi
}

rec run mode="$([ "$SHORT" = 1 ] && echo short || echo full)" date_start="$DATE_START" \
	loadavg_start="$LOAD_START" build="$BUILD" seconds_per_cell="$SECS" maxops="$MAXOPS" \
	failovers="$FAILOVERS" scale_dirs="$SCALE_DIRS" scale_files_per_dir="$SCALE_FILES" \
	scale_threads="$SCALE_THREADS" stability_seconds="$STAB_SECS" stability_clients="$STAB_CLIENTS" \
	many_files="$MANY_FILES" many_dirs="$MANY_DIRS" clk_tck="$(getconf CLK_TCK)" \
	election_ms="$VFS_ELECTION_MS" heartbeat_ms="$VFS_HEARTBEAT_MS" demo="$DEMO" \
	demo_log="$DEMO_LOG" upcall_ops="$UC_OPS" upcall_opcodes="${UC_OPCODES[*]}" \
	traverse_runs="$TRAV_RUNS" mixed_clients="$MIXED_CLIENTS" mixed_write_pct="$MIXED_WRITE_PCT" \
	million_dirs="$MILLION_DIRS" million_files_per_dir="$MILLION_FILES" cells="$CELLS"
for cell in $CELLS; do
	"cell_$cell"
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
DATA_FS=$(df --output=source,fstype "$VFS_TMP" | tail -1 | tr -s ' ')
echo "# stopping both clusters"
teardown
cell_demo

# ---- report -------------------------------------------------------------------
GIT_DIRTY=false
[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ] && GIT_DIRTY=true
rec end date_end="$(date -u '+%Y-%m-%dT%H:%M:%SZ')" wall_seconds="$SECONDS" nproc="$(nproc)" \
	kernel="$(uname -sr)" loadavg_end="$LOAD_END" data_fs="$DATA_FS" \
	etcd_version="$(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p')" \
	git_commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?')" git_dirty="$GIT_DIRTY"
# The tables, the JSON file, and what did not work; exits 1 if something
# did not work and BENCH_STRICT=1.
strict=()
[ "$STRICT" = 1 ] && strict=(--strict)
python3 "$ROOT/tests/bench/report.py" "${strict[@]}" "$RAW_OUT" "$JSON_OUT"
