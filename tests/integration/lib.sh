# Shared harness for integration tests: real vaultfsd processes, real FUSE
# mounts, all under one temporary directory that is removed at exit, with
# every mount unmounted and every daemon killed even when a test fails.
#
# Tests print TAP: "ok N - what" / "not ok N - what", and the plan at the end.
# Environment (set by meson): VAULTFSD, MOUNT_VAULTFS.

set -u
: "${VAULTFSD:?VAULTFSD must point to the vaultfsd binary}"
: "${MOUNT_VAULTFS:?MOUNT_VAULTFS must point to the mount.vaultfs binary}"

VFS_TMP=$(mktemp -d /tmp/vaultfs-test.XXXXXX)
chmod 0755 "$VFS_TMP"
declare -A VFS_PID=()
VFS_MOUNTS=()
VFS_TESTS=0
VFS_FAILED=0
# Sanitizer reports (ASan/UBSan/LSan builds) of every process we start land
# here; vfs_done fails the test if there are any.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$VFS_TMP/sanitizer"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$VFS_TMP/sanitizer"

# vfs_is_mounted DIR: true if DIR is in the mount table. Unlike
# `mountpoint -q` this never stats DIR, which may fail on a mount whose node
# cannot serve.
vfs_is_mounted() {
	awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts
}

# VFS_KEEP_TMP=DIR keeps a copy of the test's directory (logs, data) there.
vfs_cleanup() {
	[ -n "${VFS_KEEP_TMP:-}" ] && { cp -a "$VFS_TMP" "$VFS_KEEP_TMP" 2>/dev/null || true; }
	local m p
	for m in "${VFS_MOUNTS[@]}"; do
		if vfs_is_mounted "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	for p in "${VFS_PID[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${VFS_PID[@]}"; do
		vfs_wait_gone "$p" 10 || kill -KILL "$p" 2>/dev/null || true
	done
	if [ "$VFS_FAILED" -ne 0 ]; then
		for f in "$VFS_TMP"/*.log; do
			[ -e "$f" ] || continue
			echo "# ---- $f"
			sed 's/^/# /' "$f" | tail -n 40
		done
	fi
	rm -rf "$VFS_TMP"
}
trap vfs_cleanup EXIT
trap 'exit 130' INT TERM

# vfs_wait_gone PID SECONDS: waits for a process to exit.
vfs_wait_gone() {
	local deadline=$((SECONDS + $2))
	while kill -0 "$1" 2>/dev/null; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.05
	done
	wait "$1" 2>/dev/null || true
	return 0
}

# vfs_wait_until SECONDS CMD...: polls CMD until it succeeds or time runs out.
vfs_wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# A TCP port on loopback that nothing listens on right now, outside the
# kernel's ephemeral range: a daemon binds its cluster port only when it is
# unsealed, and until then any outgoing connection on the machine may get
# that port as its source port (the bind then fails: address in use).
vfs_free_port() {
	local port lo=32768 hi=60999 min=20000 max=60000
	read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
	if [ "$lo" -gt 11024 ]; then
		min=10000 max=$((lo - 1))
	elif [ "$hi" -lt 64511 ]; then
		min=$((hi + 1)) max=65535
	fi
	while :; do
		port=$((min + ((RANDOM << 15) | RANDOM) % (max - min + 1)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
}

# vfs_config NAME: writes $VFS_TMP/NAME.hcl for a node named NAME. Joins
# are made voters at once (server_stabilization_time "0s") unless
# VFS_STABILIZATION says otherwise ("default": the daemon's own, 10 s);
# VFS_AUTOPILOT holds more lines for the autopilot block.
vfs_config() {
	local name=$1 port autopilot=
	port=$(vfs_free_port)
	if [ "${VFS_STABILIZATION:-0s}" != default ]; then
		autopilot="  server_stabilization_time = \"${VFS_STABILIZATION:-0s}\""
	fi
	[ -n "${VFS_AUTOPILOT:-}" ] && autopilot+=${autopilot:+$'\n'}$VFS_AUTOPILOT
	cat > "$VFS_TMP/$name.hcl" <<EOC
storage "raft" {
  path    = "$VFS_TMP/$name-data"
  node_id = "$name"
  snapshot_threshold = ${VFS_SNAPSHOT_THRESHOLD:-8192}
  trailing_logs = ${VFS_TRAILING_LOGS:-10240}
  election_timeout_ms = ${VFS_ELECTION_MS:-1000}
  heartbeat_interval_ms = ${VFS_HEARTBEAT_MS:-100}
}
cluster_addr = "http://127.0.0.1:$port"
listener "unix" {
  path = "$VFS_TMP/$name.sock"
}
disable_mlock = true
request_timeout_ms = ${VFS_REQUEST_TIMEOUT_MS:-10000}
EOC
	[ -z "$autopilot" ] || printf 'autopilot {\n%s\n}\n' "$autopilot" >> "$VFS_TMP/$name.hcl"
}

vfs_socket() { echo "$VFS_TMP/$1.sock"; }
# The cluster address (http://127.0.0.1:PORT) of node NAME.
vfs_cluster_addr() { sed -n 's/^cluster_addr = "\(.*\)"$/\1/p' "$VFS_TMP/$1.hcl"; }
vfs_data() { echo "$VFS_TMP/$1-data"; }

# vfs_start NAME: starts (or restarts) the daemon of node NAME.
vfs_start() {
	local name=$1
	[ -e "$VFS_TMP/$name.hcl" ] || vfs_config "$name"
	# A daemon killed by SIGKILL leaves its socket behind: without this the
	# wait below would return before the new daemon listens.
	rm -f "$(vfs_socket "$name")"
	"$VAULTFSD" -config="$VFS_TMP/$name.hcl" >>"$VFS_TMP/$name.log" 2>&1 &
	VFS_PID[$name]=$!
	vfs_wait_until 20 test -S "$(vfs_socket "$name")" || {
		echo "# vaultfsd $name did not start; the end of its log:"
		tail -n 5 "$VFS_TMP/$name.log" | sed 's/^/#   /'
		return 1
	}
}

# vfs_start_mount NAME...: starts each node and mounts it on $VFS_TMP/m-NAME,
# kept in the caller's associative array MNT; bails out if one cannot.
vfs_start_mount() {
	local n
	for n in "$@"; do
		MNT[$n]=$VFS_TMP/m-$n
		vfs_start "$n" || { echo "Bail out! cannot start $n"; exit 1; }
		vfs_mount "$n" "${MNT[$n]}" || { echo "Bail out! cannot mount $n"; exit 1; }
	done
}

# vfs_stop NAME [SIGNAL]: stops the daemon (SIGTERM by default) and waits.
vfs_stop() {
	local name=$1 sig=${2:-TERM} pid=${VFS_PID[$1]}
	kill "-$sig" "$pid" 2>/dev/null || true
	vfs_wait_gone "$pid" 20 || { kill -KILL "$pid"; vfs_wait_gone "$pid" 5; }
	unset "VFS_PID[$name]"
}

# vfs_mount NAME MOUNTPOINT [OPTIONS]: mounts node NAME.
vfs_mount() {
	local name=$1 mnt=$2 opts=${3:-}
	mkdir -p "$mnt"
	VFS_MOUNTS+=("$mnt")
	"$MOUNT_VAULTFS" "$(vfs_socket "$name")" "$mnt" ${opts:+-o "$opts"} \
		>>"$VFS_TMP/$name-mount.log" 2>&1 || return 1
	mountpoint -q "$mnt"
}

vfs_umount() {
	fusermount3 -u "$1"
}

# vfs_init MOUNTPOINT: init with 5 shares / threshold 3; the shares are kept
# in VFS_KEYS (memory only, never in a file).
VFS_KEYS=()
vfs_init() {
	local mnt=$1 out
	echo "shares=5 threshold=3" > "$mnt/.vault/init" || return 1
	out=$(cat "$mnt/.vault/init") || return 1
	mapfile -t VFS_KEYS < <(awk '/^Unseal Key/ {print $4}' <<<"$out")
	[ "${#VFS_KEYS[@]}" -eq 5 ]
}

# vfs_unseal MOUNTPOINT: unseals with the first three shares.
vfs_unseal() {
	local mnt=$1 k
	for k in "${VFS_KEYS[@]:0:3}"; do
		echo "$k" > "$mnt/.vault/unseal" || return 1
	done
	grep -q '^sealed: false' "$mnt/.vault/status"
}

# vfs_voter_count MOUNTPOINT: how many servers its peers file lists as
# voters (the Voter column).
vfs_voter_count() {
	awk 'NR > 1 && $5 == "true"' "$1/.vault/peers" 2>/dev/null | wc -l
}

# vfs_three_voters MOUNTPOINT: its peers file lists three voters and one leader.
vfs_three_voters() {
	[ "$(vfs_voter_count "$1")" -eq 3 ] && [ "$(grep -c ' leader ' "$1/.vault/peers")" -eq 1 ]
}

# vfs_form_three: n1, n2 and n3 started and mounted at $VFS_TMP/m-NAME
# become a cluster: n1 initialised and unsealed, the others joined through
# it and unsealed, three voters (four TAP tests).
vfs_form_three() {
	local m1=$VFS_TMP/m-n1 m
	ok "init n1" vfs_init "$m1"
	ok "unseal n1" vfs_unseal "$m1"
	ok "n1 leads" vfs_wait_until 10 grep -qx 'ha_mode: active' "$m1/.vault/status"
	for m in "$VFS_TMP/m-n2" "$VFS_TMP/m-n3"; do
		echo "$(vfs_cluster_addr n1)" > "$m/.vault/join" && vfs_unseal "$m" ||
			{ echo "Bail out! cannot join $m"; exit 1; }
	done
	ok "three voters" vfs_wait_until 30 vfs_three_voters "$m1"
}

vfs_status_field() {
	sed -n "s/^$2: //p" "$1/.vault/status"
}

# vfs_log_says NODE TEXT...: the last line of NODE's log with the first
# TEXT has every other TEXT too (prints it).
vfs_log_says() {
	local log=$VFS_TMP/$1.log line
	shift
	line=$(grep -F "$1" "$log" | tail -n 1)
	echo "# $line"
	shift
	for t in "$@"; do
		[[ "$line" == *"$t"* ]] || { echo "# missing '$t' in: $line"; return 1; }
	done
}

# ok DESCRIPTION CMD...: one TAP test line.
ok() {
	local desc=$1
	shift
	VFS_TESTS=$((VFS_TESTS + 1))
	if "$@"; then
		echo "ok $VFS_TESTS - $desc"
	else
		echo "not ok $VFS_TESTS - $desc"
		VFS_FAILED=$((VFS_FAILED + 1))
	fi
}

# fails_with MESSAGE CMD...: CMD must fail and print strerror MESSAGE.
fails_with() {
	local msg=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "# expected failure ($msg) but it succeeded: $*"
		return 1
	fi
	if [[ "$out" != *"$msg"* ]]; then
		echo "# expected '$msg', got: $out"
		return 1
	fi
}

# vfs_stop_all: unmounts every mount and stops every daemon with SIGTERM;
# fails if a daemon does not exit cleanly with status 0.
vfs_stop_all() {
	local m name pid rv=0
	for m in "${VFS_MOUNTS[@]}"; do
		vfs_is_mounted "$m" && { fusermount3 -u "$m" || rv=1; }
	done
	for name in "${!VFS_PID[@]}"; do
		pid=${VFS_PID[$name]}
		kill -TERM "$pid" 2>/dev/null
		if ! wait "$pid"; then
			echo "# vaultfsd $name exited with a failure status"
			rv=1
		fi
		unset "VFS_PID[$name]"
	done
	return $rv
}

no_sanitizer_reports() {
	local f found=0
	for f in "$VFS_TMP"/sanitizer.*; do
		[ -e "$f" ] || continue
		found=1
		sed 's/^/# /' "$f" | head -n 60
	done
	[ "$found" -eq 0 ]
}

# vfs_done: stops everything cleanly, checks for sanitizer reports, prints
# the TAP plan and returns the overall result.
vfs_done() {
	ok "every mount unmounts and every daemon exits 0 on SIGTERM" vfs_stop_all
	# mount.vaultfs leaves after unmounting; give its report time to land.
	vfs_wait_until 10 bash -c "! pgrep -f '^$MOUNT_VAULTFS .*$VFS_TMP'"
	ok "no sanitizer reports from any daemon or mount" no_sanitizer_reports
	echo "1..$VFS_TESTS"
	[ "$VFS_FAILED" -eq 0 ]
}

# ---- Network namespaces (partition tests) ----
#
# vfs_netns_setup N: builds a private network for N nodes, all inside
# namespaces created here (names unique per run): a bridge namespace
# $VFS_NETNS_BR holding bridge br0, and node namespaces VFS_NETNS[1..N], each
# with lo up and eth0 (10.250.0.I/24) whose veth peer vI is a port of br0.
# Nothing is added to the root namespace. Installs an EXIT trap that runs
# vfs_umount_listed, vfs_cleanup, and then deletes the namespaces (which
# removes the veths).
# Fails (after undoing what it made) if namespaces cannot be created.
VFS_NETNS_BR=
declare -A VFS_NETNS=()
vfs_netns_setup() {
	local n=$1 i rid
	command -v ip >/dev/null 2>&1 || return 1
	rid=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
	trap 'vfs_umount_listed; vfs_cleanup; vfs_netns_cleanup' EXIT
	VFS_NETNS_BR=vfs-$rid-br
	ip netns add "$VFS_NETNS_BR" 2>/dev/null || { VFS_NETNS_BR=; return 1; }
	{
		ip -n "$VFS_NETNS_BR" link set lo up &&
		ip -n "$VFS_NETNS_BR" link add br0 type bridge &&
		ip -n "$VFS_NETNS_BR" link set br0 up
	} 2>/dev/null || { vfs_netns_cleanup; return 1; }
	for i in $(seq 1 "$n"); do
		VFS_NETNS[$i]=vfs-$rid-n$i
		{
			ip netns add "${VFS_NETNS[$i]}" &&
			ip -n "$VFS_NETNS_BR" link add "v$i" type veth peer name eth0 netns "${VFS_NETNS[$i]}" &&
			ip -n "$VFS_NETNS_BR" link set "v$i" master br0 &&
			ip -n "$VFS_NETNS_BR" link set "v$i" up &&
			ip -n "${VFS_NETNS[$i]}" link set lo up &&
			ip -n "${VFS_NETNS[$i]}" addr add "10.250.0.$i/24" dev eth0 &&
			ip -n "${VFS_NETNS[$i]}" link set eth0 up
		} 2>/dev/null || { vfs_netns_cleanup; return 1; }
	done
}

# vfs_umount_listed: unmounts every mount of VFS_MOUNTS that the mount
# table lists. Unlike `mountpoint -q` this never stats the mount: on a node
# without a leader stat fails (EAGAIN) and the mount would be left behind.
vfs_umount_listed() {
	local m
	for m in "${VFS_MOUNTS[@]}"; do
		if vfs_is_mounted "$m"; then
			fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
}

# vfs_netns_cleanup: deletes every namespace vfs_netns_setup made.
vfs_netns_cleanup() {
	local i
	for i in "${!VFS_NETNS[@]}"; do
		ip netns del "${VFS_NETNS[$i]}" 2>/dev/null || true
	done
	VFS_NETNS=()
	[ -n "$VFS_NETNS_BR" ] && { ip netns del "$VFS_NETNS_BR" 2>/dev/null || true; }
	VFS_NETNS_BR=
}

# vfs_netns_link NS up|down: brings eth0 of namespace NS up or down (a
# partition: the node can reach no one and no one can reach it).
vfs_netns_link() {
	ip -n "$1" link set eth0 "$2"
}

# vfs_netns_link_is NS UP|DOWN: checks eth0's operational state.
vfs_netns_link_is() {
	ip -n "$1" -o link show eth0 | grep -q "state $2"
}

# vfs_config_at NAME ADDR: like vfs_config (same VFS_* settings), with
# cluster_addr ADDR, e.g. http://10.250.0.1:8201.
vfs_config_at() {
	local name=$1 addr=$2
	vfs_config "$name" || return 1
	sed -i "s|^cluster_addr = .*|cluster_addr = \"$addr\"|" "$VFS_TMP/$name.hcl" &&
		grep -qx "cluster_addr = \"$addr\"" "$VFS_TMP/$name.hcl"
}

# vfs_start_in NS NAME: starts (or restarts) node NAME's daemon inside network
# namespace NS (config from vfs_config_at). `ip netns exec` execs the command,
# so VFS_PID[NAME] is the daemon itself and vfs_stop/vfs_cleanup/vfs_done
# stop it as usual; this is checked once the socket appears.
vfs_start_in() {
	local ns=$1 name=$2 pid
	[ -e "$VFS_TMP/$name.hcl" ] || { echo "# no config for $name: use vfs_config_at"; return 1; }
	rm -f "$(vfs_socket "$name")" # see vfs_start
	ip netns exec "$ns" "$VAULTFSD" -config="$VFS_TMP/$name.hcl" >>"$VFS_TMP/$name.log" 2>&1 &
	pid=$!
	VFS_PID[$name]=$pid
	vfs_wait_until 20 test -S "$(vfs_socket "$name")" ||
		{ echo "# vaultfsd $name did not start in $ns"; return 1; }
	if [ "$(readlink "/proc/$pid/exe")" != "$(readlink -f "$VAULTFSD")" ]; then
		echo "# pid $pid of $name is not vaultfsd: $(readlink "/proc/$pid/exe")"
		return 1
	fi
}

# vfs_in_netns NAME NS: the daemon of node NAME runs in network namespace NS.
vfs_in_netns() {
	[ "$(ip netns identify "${VFS_PID[$1]}" 2>/dev/null)" = "$2" ]
}

# vfs_fails_within MS MESSAGE CMD...: CMD must fail with strerror MESSAGE
# (as fails_with) and return within MS milliseconds.
vfs_fails_within() {
	local max=$1 msg=$2 t0 ms rv
	shift 2
	t0=$(date +%s%N)
	fails_with "$msg" "$@"
	rv=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	echo "# returned after $ms ms (limit $max ms)"
	[ "$rv" -eq 0 ] && [ "$ms" -le "$max" ]
}

# vfs_raft_sql NAME SQL: runs a read-only query on node NAME's Raft log
# database (needs the sqlite3 shell; the daemon keeps it in WAL mode).
vfs_raft_sql() {
	sqlite3 -readonly "$(vfs_data "$1")/raft.db" "$2"
}
