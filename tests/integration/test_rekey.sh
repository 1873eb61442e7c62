#!/usr/bin/env bash
# Rekey on three real nodes: new unseal key shares for the whole cluster.
#
# 1. .vault/rekey: "shares=N threshold=T" starts it (a second start is
#    EBUSY), then the current shares one at a time as for unseal (progress
#    shown; a bad, repeated or wrong share fails as it does for unseal), then
#    a read commits it and shows the new shares once, in init's format.
# 2. Afterwards the old shares open no node and the new ones open every
#    node, including one that was down during the rekey: it still opens
#    with the old shares until it catches up (by the log), then only with
#    the new ones. Down during a second rekey while the log is compacted,
#    it catches up by a snapshot, with the same result.
# 3. reset starts over; a sealed node refuses; a non-root user may not.
. "$(dirname "$0")/lib.sh"

export VFS_SNAPSHOT_THRESHOLD=32 VFS_TRAILING_LOGS=8
export VFS_ELECTION_MS=${VFS_ELECTION_MS:-600} VFS_HEARTBEAT_MS=${VFS_HEARTBEAT_MS:-60}

declare -A MNT=()
vfs_start_mount n1 n2 n3 other
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]} MO=${MNT[other]}

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
reads_as() { [ "$(cat "$1/$2" 2>/dev/null)" = "$3" ]; }
field() { vfs_status_field "$1" "$2"; }
# unseal_with MOUNT SHARE...: gives the shares; fails if it stays sealed.
unseal_with() {
	local m=$1 s
	shift
	for s in "$@"; do
		echo "$s" > "$m/.vault/unseal" || return 1
	done
	grep -qx 'sealed: false' "$m/.vault/status"
}
# unseal_refused MOUNT SHARE...: the last share makes the attempt fail with
# EKEYREJECTED, as wrong shares do, and the node stays sealed.
unseal_refused() {
	local m=$1 s out
	shift
	for s in "${@:1:$(($# - 1))}"; do
		echo "$s" > "$m/.vault/unseal" || return 1
	done
	out=$( (echo "${@: -1}" > "$m/.vault/unseal") 2>&1) && { echo "# unsealed"; return 1; }
	[[ "$out" == *"Key was rejected by service"* ]] || { echo "# $out"; return 1; }
	grep -qx 'sealed: true' "$m/.vault/status"
}
restart() {
	local n=$1
	vfs_umount "${MNT[$n]}" && vfs_stop "$n" && vfs_start "$n" && vfs_mount "$n" "${MNT[$n]}"
}
stop_node() { vfs_umount "${MNT[$1]}" && vfs_stop "$1"; }
start_node() { vfs_start "$1" && vfs_mount "$1" "${MNT[$1]}"; }
rekey_write() { echo "$2" > "$1/.vault/rekey"; }

# Another vault, for shares that are valid but not this cluster's.
ok "init another vault" vfs_init "$MO"
OTHER=("${VFS_KEYS[@]}")
ok "init n1" vfs_init "$M1"
OLD=("${VFS_KEYS[@]}")
ok "unseal n1" unseal_with "$M1" "${OLD[@]:0:3}"
ok "n1 leads" vfs_wait_until 10 grep -qx 'ha_mode: active' "$M1/.vault/status"
for n in n2 n3; do
	ok "$n joins and unseals" bash -c "echo $(vfs_cluster_addr n1) > '${MNT[$n]}/.vault/join'"
	ok "unseal $n" unseal_with "${MNT[$n]}" "${OLD[@]:0:3}"
done
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
ok "a value" bash -c "mkdir '$M1/app' && printf v1 > '$M1/app/v1'"
ok "n3 has it" vfs_wait_until 10 reads_as "$M3" app/v1 v1

# ---- 1. the flow, on a follower, with n3 down ----
ok "n3 stops (down during the rekey)" stop_node n3
ok "rekey shows nothing started" grep -qx 'started: false' "$M2/.vault/rekey"
ok "a share before the start is refused (EINVAL)" \
	fails_with "Invalid argument" rekey_write "$M2" "${OLD[0]}"
ok "a threshold above the shares is refused (EINVAL)" \
	fails_with "Invalid argument" rekey_write "$M2" "shares=2 threshold=3"
ok "a non-root user may not rekey" \
	fails_with "Permission denied" as_nobody bash -c "echo shares=3 > '$M2/.vault/rekey'"
ok "start: 3 new shares, threshold 2" rekey_write "$M2" "shares=3 threshold=2"
ok "progress 0/3, shares 3, threshold 2" bash -c "[ \"\$(cat '$M2/.vault/rekey')\" = \"\$(printf 'started: true\nprogress: 0/3\nshares: 3\nthreshold: 2')\" ]"
ok "a second start is refused (EBUSY)" \
	fails_with "Device or resource busy" rekey_write "$M2" "shares=5 threshold=3"
ok "a malformed share is refused (EINVAL)" fails_with "Invalid argument" rekey_write "$M2" "not-a-share"
ok "share 1" rekey_write "$M2" "${OLD[0]}"
ok "the same share again is refused (EEXIST)" fails_with "File exists" rekey_write "$M2" "${OLD[0]}"
ok "progress 1/3" grep -qx 'progress: 1/3' "$M2/.vault/rekey"
ok "another vault's shares" rekey_write "$M2" "${OTHER[1]}"
ok "... complete a set that is not this vault's: EKEYREJECTED" \
	fails_with "Key was rejected by service" rekey_write "$M2" "${OTHER[2]}"
ok "progress is reset, the rekey still started" grep -qx 'progress: 0/3' "$M2/.vault/rekey"
ok "share 1" rekey_write "$M2" "${OLD[2]}"
ok "share 2" rekey_write "$M2" "${OLD[3]}"
ok "share 3: the threshold" rekey_write "$M2" "${OLD[4]}"
TERM_BEFORE=$(field "$M1" key_term)
ok "nothing committed before the read: n1 still says 5 shares" grep -qx 'shares: 5' "$M1/.vault/status"
OUT=$(cat "$M2/.vault/rekey")
mapfile -t NEW < <(awk '/^Unseal Key/ {print $4}' <<<"$OUT")
ok "the read shows 3 new shares in init's format" test "${#NEW[@]}" -eq 3
ok "and says what they are" grep -q 'Rekeyed with 3 key shares and a key threshold of 2' <<<"$OUT"
ok "the new shares are new" bash -c "! printf '%s\n' ${OLD[*]} | grep -qx '${NEW[0]}'"
ok "a second read shows them no more" grep -qx 'started: false' "$M2/.vault/rekey"
ok "n1 and n2 say 3 shares, threshold 2" vfs_wait_until 10 bash -c \
	"grep -qx 'shares: 3' '$M1/.vault/status' && grep -qx 'threshold: 2' '$M2/.vault/status'"
ok "the rekey also rotated the keyring" test "$(field "$M1" key_term)" -eq $((TERM_BEFORE + 1))
ok "a value written after it" bash -c "printf v2 > '$M1/app/v2'"

# ---- 2. which shares open what ----
ok "n1 sealed" bash -c "echo > '$M1/.vault/seal'"
# (Two shares: the threshold is 2 now, so the second completes an attempt.)
ok "the old shares no longer open n1 (EKEYREJECTED)" unseal_refused "$M1" "${OLD[@]:0:2}"
ok "two new shares do" unseal_with "$M1" "${NEW[0]}" "${NEW[2]}"
ok "n1 reads both values" vfs_wait_until 10 bash -c "[ \"\$(cat '$M1/app/v1')\" = v1 ] &&
	[ \"\$(cat '$M1/app/v2')\" = v2 ]"
ok "n3 comes back" start_node n3
ok "down during the rekey, n3 still opens with the old shares" unseal_with "$M3" "${OLD[@]:0:3}"
ok "it catches up: 3 shares, threshold 2" vfs_wait_until 20 grep -qx 'threshold: 2' "$M3/.vault/status"
ok "it reads the value written after the rekey" vfs_wait_until 10 reads_as "$M3" app/v2 v2
ok "n3 restarted" restart n3
ok "the old shares no longer open n3" unseal_refused "$M3" "${OLD[@]:0:2}"
ok "the new ones do" unseal_with "$M3" "${NEW[1]}" "${NEW[2]}"

# A second rekey while n2 is down and the log is compacted past it.
ok "three voters again" vfs_wait_until 20 vfs_three_voters "$M1"
ok "n2 stops" stop_node n2
leader_alive() { local l; l=$(field "$M3" leader); [ "$l" = n1 ] || [ "$l" = n3 ]; }
ok "n3 knows a leader that runs" vfs_wait_until 10 leader_alive
ok "rekey on n3: start" rekey_write "$M3" "shares=4 threshold=3"
ok "two current shares" bash -c "echo ${NEW[0]} > '$M3/.vault/rekey' && echo ${NEW[1]} > '$M3/.vault/rekey'"
OUT=$(cat "$M3/.vault/rekey")
mapfile -t NEWER < <(awk '/^Unseal Key/ {print $4}' <<<"$OUT")
ok "the read commits and shows 4 shares" test "${#NEWER[@]}" -eq 4
fill() { local i; for i in $(seq 1 80); do printf "f$i" > "$1/app/f$i" || return 1; done; }
ok "80 writes (the log is compacted past the rekey)" fill "$M1"
LINES2=$(wc -l < "$VFS_TMP/n2.log")
ok "n2 comes back" start_node n2
ok "n2 opens with the shares it knew (the first rekey's)" unseal_with "$M2" "${NEW[@]:0:2}"
ok "it catches up by a snapshot: 4 shares, threshold 3" \
	vfs_wait_until 20 grep -qx 'threshold: 3' "$M2/.vault/status"
ok "its log says it took the keys from a snapshot" bash -c \
	"tail -n +$((LINES2 + 1)) '$VFS_TMP/n2.log' | grep -q 'from a snapshot'"
ok "it reads the last value" vfs_wait_until 10 reads_as "$M2" app/f80 f80
ok "n2 restarted" restart n2
ok "the first rekey's shares no longer open n2" unseal_refused "$M2" "${NEW[@]}"
ok "the newest ones do" unseal_with "$M2" "${NEWER[@]:1:3}"

# ---- 3. reset, sealed ----
ok "start again" rekey_write "$M1" "shares=5 threshold=3"
ok "one share" rekey_write "$M1" "${NEWER[0]}"
ok "reset" rekey_write "$M1" reset
ok "nothing started" grep -qx 'started: false' "$M1/.vault/rekey"
ok "n1 sealed" bash -c "echo > '$M1/.vault/seal'"
ok "a sealed node refuses to start a rekey (ENOKEY)" \
	fails_with "Required key not available" rekey_write "$M1" "shares=5 threshold=3"
ok "unseal n1 with the newest shares" unseal_with "$M1" "${NEWER[@]:0:3}"

vfs_done
