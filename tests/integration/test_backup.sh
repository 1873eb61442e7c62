#!/usr/bin/env bash
# Backup and restore as an operator does them: a backup read from
# .vault/snapshot on a follower while another node writes; vaultfsd
# -inspect checks it without keys; it holds no plaintext; restored into a
# fresh node (which unseals with the shares valid when it was taken) and
# into the running cluster through a follower, every secret compared.
# Truncated, corrupted and altered backups, and one of another vault, are
# refused with nothing changed. Non-root may neither read nor write them.
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=600 VFS_HEARTBEAT_MS=60 VFS_REQUEST_TIMEOUT_MS=5000
declare -A MNT
vfs_start_mount n1 n2 n3
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}
BK=$VFS_TMP/backup.snap
join() { echo "$(vfs_cluster_addr "$2")" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
init_unseal_at() { vfs_init "$1" && vfs_unseal "$1"; }
ok "init and unseal n1" init_unseal
ok "n2 joins" join n2 n1
ok "n3 joins" join n3 n1
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"

# 40 secrets in two directories, and one large value, so that the backup's
# body spans several restore steps.
write_all() {
	local i
	mkdir -p "$M1/application/database" "$M1/webserver" || return 1
	for i in $(seq 1 20); do printf "app-secret-%s" "$i" > "$M1/application/database/s$i" || return 1; done
	for i in $(seq 1 20); do printf "web-secret-%s" "$i" > "$M1/webserver/t$i" || return 1; done
	head -c 700000 /dev/urandom | base64 -w0 | head -c 900000 > "$VFS_TMP/big.value"
	cp "$VFS_TMP/big.value" "$M1/application/bigcertificate" && chmod 0640 "$M1/application/bigcertificate"
}
ok "40 secrets and a 900 KB one written" write_all
same_tree() {
	local m=$1 i
	for i in $(seq 1 20); do
		[ "$(cat "$m/application/database/s$i")" = "app-secret-$i" ] || { echo "# $m application/database/s$i"; return 1; }
		[ "$(cat "$m/webserver/t$i")" = "web-secret-$i" ] || { echo "# $m web/t$i"; return 1; }
	done
	cmp -s "$m/application/bigcertificate" "$VFS_TMP/big.value" || { echo "# $m application/bigcertificate"; return 1; }
	[ "$(stat -c %a "$m/application/bigcertificate")" = 640 ] || { echo "# mode of $m/application/bigcertificate"; return 1; }
}
ok "n3 has them" vfs_wait_until 10 same_tree "$M3"

# A writer on n1 while n3 (a follower) takes the backup; it logs each
# write once acknowledged.
writer() {
	local i=0
	mkdir -p "$M1/load"
	while [ ! -e "$VFS_TMP/stop-writer" ]; do
		i=$((i + 1))
		printf "load-%s" "$i" > "$M1/load/w$i" && echo "$i" >> "$VFS_TMP/acked"
	done
}
: > "$VFS_TMP/acked"
writer & WRITER=$!
ok "the writer is writing" vfs_wait_until 10 test -s "$VFS_TMP/acked"
take_backup() {
	ACKED_BEFORE=$(tail -n 1 "$VFS_TMP/acked")
	cp "$M3/.vault/snapshot" "$BK"
}
ok "cp .vault/snapshot on a follower, under writes" take_backup
touch "$VFS_TMP/stop-writer"
wait "$WRITER"
ok "the writer wrote after the backup too" \
	bash -c "[ \$(tail -n 1 '$VFS_TMP/acked') -gt $ACKED_BEFORE ]"
ok ".vault/snapshot is 0400 root" bash -c "[ \"\$(stat -c '%a %U' '$M3/.vault/snapshot')\" = '400 root' ]"
nobody_cannot() { ! setpriv --reuid=65534 --regid=65534 --clear-groups cat "$M3/.vault/snapshot" >/dev/null 2>&1; }
ok "a non-root user cannot read it" nobody_cannot
inspect_ok() {
	local out
	out=$("$VAULTFSD" -inspect "$BK") || return 1
	echo "$out" | sed 's/^/# /'
	grep -q '^cluster_id: [0-9a-f]\{32\}$' <<<"$out" && grep -q '^check: ok' <<<"$out" &&
		grep -q '^node: n3$' <<<"$out" && grep -q '^threshold: 3$' <<<"$out"
}
ok "vaultfsd -inspect prints the header and checks the body" inspect_ok
no_plaintext() {
	local w
	for w in app-secret web-secret load- "$(head -c 40 "$VFS_TMP/big.value")" application \
		database webserver bigcertificate; do
		if grep -qaF -- "$w" "$BK"; then echo "# found '$w'"; return 1; fi
	done
}
ok "the backup holds no plaintext name or value" no_plaintext

# Bad copies of it.
python3_bin=/usr/bin/python3
make_bad() {
	local size
	size=$(stat -c %s "$BK")
	head -c $((size - 100)) "$BK" > "$VFS_TMP/truncated.snap"
	cp "$BK" "$VFS_TMP/corrupt.snap"
	printf '\xff' | dd of="$VFS_TMP/corrupt.snap" bs=1 seek=$((size - 5000)) conv=notrunc status=none
	# Altered: a body with one byte changed and its SHA-256 fixed up in the
	# header, as someone without the keys could do.
	"$python3_bin" - "$BK" "$VFS_TMP/altered.snap" <<'EOF'
import hashlib, struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
hlen = struct.unpack_from('<I', d, 12)[0]
start = 16 + hlen
d[start + 300] ^= 1
body = bytes(d[start:])
# cluster id (16), index, term, time, body length (4 x 8): then the hash
d[16 + 16 + 32:16 + 16 + 32 + 32] = hashlib.sha256(body).digest()
open(sys.argv[2], 'wb').write(d)
EOF
	printf 'not a backup at all\n' > "$VFS_TMP/junk.snap"
}
ok "truncated, corrupted, altered and junk copies made" make_bad
inspect_refuses() { ! "$VAULTFSD" -inspect "$1" >/dev/null 2>&1; }
ok "-inspect refuses the truncated copy" inspect_refuses "$VFS_TMP/truncated.snap"
ok "-inspect refuses the corrupted copy" inspect_refuses "$VFS_TMP/corrupt.snap"
ok "-inspect refuses junk" inspect_refuses "$VFS_TMP/junk.snap"

# Restore into a fresh node.
vfs_start_mount n4
M4=${MNT[n4]}
for bad in truncated corrupt junk; do
	ok "a fresh node refuses the $bad copy (EBADMSG)" \
		fails_with "Bad message" cp "$VFS_TMP/$bad.snap" "$M4/.vault/restore"
done
ok "and is still uninitialised" grep -qx uninitialized "$M4/.vault/health"
ok "the log says why" vfs_log_says n4 "restore refused, nothing changed"
ok "cp backup.snap .vault/restore on a fresh node" cp "$BK" "$M4/.vault/restore"
ok "it is initialised and sealed" grep -qx sealed "$M4/.vault/health"
ok "it unseals with the shares of the backed-up vault" vfs_unseal "$M4"
ok "it is active, a cluster of one" vfs_wait_until 20 grep -qx active "$M4/.vault/health"
ok "every secret is there" same_tree "$M4"
acked_in() {
	local m=$1 i
	for i in $(seq 1 "$ACKED_BEFORE"); do
		[ "$(cat "$m/load/w$i")" = "load-$i" ] || { echo "# load/w$i"; return 1; }
	done
}
ok "every write acknowledged before the backup began is in it" acked_in "$M4"
ok "it takes writes" bash -c "printf new > '$M4/application/new' && test \"\$(cat '$M4/application/new')\" = new"
vfs_start_mount n5
M5=${MNT[n5]}
ok "a fresh node joins the restored one" join n5 n4
ok "and gets every secret" vfs_wait_until 20 same_tree "$M5"

# The altered copy opens only with the keys: the fresh node refuses it at
# unseal and stays sealed.
vfs_start_mount n6
M6=${MNT[n6]}
ok "the altered copy is taken by a fresh node (its hash matches)" \
	cp "$VFS_TMP/altered.snap" "$M6/.vault/restore"
unseal_refused() {
	local k
	echo "${VFS_KEYS[0]}" > "$M6/.vault/unseal" && echo "${VFS_KEYS[1]}" > "$M6/.vault/unseal" &&
		fails_with "Bad message" bash -c "echo '${VFS_KEYS[2]}' > '$M6/.vault/unseal'"
}
ok "but its unseal fails (EBADMSG): the HMAC is wrong" unseal_refused
ok "it stays sealed" grep -qx sealed "$M6/.vault/health"
ok "the log says it was altered" vfs_log_says n6 "was altered"

# Restore into the running cluster, through a follower.
change_things() {
	rm "$M1/application/database/s1" && printf changed > "$M1/application/database/s2" && printf extra > "$M1/webserver/extra" &&
		rm -r "$M1/load"
}
ok "after the backup: a secret removed, one changed, one added" change_things
ok "the running cluster refuses the altered copy (EBADMSG)" \
	fails_with "Bad message" cp "$VFS_TMP/altered.snap" "$M2/.vault/restore"
ok "and the truncated one" fails_with "Bad message" cp "$VFS_TMP/truncated.snap" "$M2/.vault/restore"
ok "nothing changed" bash -c "test \"\$(cat '$M3/application/database/s2')\" = changed && test -e '$M3/webserver/extra'"
nobody_cannot_restore() {
	! setpriv --reuid=65534 --regid=65534 --clear-groups dd if="$BK" of="$M2/.vault/restore" \
		status=none 2>/dev/null
}
ok "a non-root user cannot restore" nobody_cannot_restore
ok "cp backup.snap .vault/restore on follower n2" cp "$BK" "$M2/.vault/restore"
restored_everywhere() {
	local m
	for m in "$M1" "$M2" "$M3"; do
		same_tree "$m" || return 1
		[ ! -e "$m/webserver/extra" ] || { echo "# $m/webserver/extra"; return 1; }
		acked_in "$m" || return 1
	done
}
ok "every node holds the backup's state, read right after" restored_everywhere
no_leftovers() {
	local d
	for d in "$(vfs_data n1)" "$(vfs_data n2)" "$(vfs_data n3)" "$(vfs_data n4)"; do
		if ls "$d" | grep -E '^(restore-|backup-|restore\.pending)'; then return 1; fi
	done
}
ok "no staging file, copy or pending backup is left in any data directory" no_leftovers
ok "writes go on" bash -c "printf after > '$M3/application/after' && test \"\$(cat '$M1/application/after')\" = after"

# A restore whose proposer dies half-way: the leader aborts it once it
# has made no progress for a while, nothing changes, and the next restore
# works. (Failpoints: n2 stops before the restore's last step; the
# leader's patience is 3 s instead of 30.)
if [ "${VAULTFS_TEST_FAILPOINTS:-0}" = 1 ]; then
	restart_with() { # NAME FAILPOINTS
		vfs_umount "${MNT[$1]}" && vfs_stop "$1" &&
			VAULTFS_FAILPOINTS=$2 vfs_start "$1" && vfs_mount "$1" "${MNT[$1]}" &&
			vfs_unseal "${MNT[$1]}"
	}
	ok "n1 restarted" restart_with n1 restore_stale_ms=3000
	ok "n3 restarted" restart_with n3 restore_stale_ms=3000
	ok "n2 restarted, to stall its restores" restart_with n2 "restore_stall=1,restore_stale_ms=3000"
	ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
	ok "a change after the restore" bash -c "printf late > '$M1/application/late'"
	RESTORES_BEFORE=$(grep -c "node n2: restoring the backup" "$VFS_TMP/n2.log")
	cp "$BK" "$M2/.vault/restore" 2>"$VFS_TMP/stalled.err" & STALLED=$!
	n2_restoring() {
		[ "$(grep -c "node n2: restoring the backup" "$VFS_TMP/n2.log")" -gt "$RESTORES_BEFORE" ]
	}
	ok "n2 is restoring" vfs_wait_until 20 n2_restoring
	kill_n2() { kill -KILL "${VFS_PID[n2]}" && vfs_wait_gone "${VFS_PID[n2]}" 10 && unset "VFS_PID[n2]"; }
	ok "n2 is killed before the restore's end" kill_n2
	ok "the leader aborts the stale restore" vfs_wait_until 30 bash -c \
		"grep -q 'made no progress for 3000 ms: aborting it' '$VFS_TMP/n1.log' '$VFS_TMP/n3.log'"
	wait "$STALLED" 2>/dev/null
	fusermount3 -u "$M2" 2>/dev/null
	ok "nothing changed" bash -c "test \"\$(cat '$M3/application/late')\" = late"
	ok "another restore, through n3, works" cp "$BK" "$M3/.vault/restore"
	ok "the backup's state" bash -c "! test -e '$M1/application/late' && ! test -e '$M3/application/late'"
	restart_n2() { vfs_start n2 && vfs_mount n2 "$M2" && vfs_unseal "$M2"; }
	ok "n2 comes back" restart_n2
	ok "and holds the backup's state" vfs_wait_until 20 restored_everywhere
fi

# A backup of another vault.
other_vault() {
	local saved=("${VFS_KEYS[@]}")
	vfs_start_mount n7
	vfs_init "${MNT[n7]}" && vfs_unseal "${MNT[n7]}" &&
		vfs_wait_until 20 grep -qx active "${MNT[n7]}/.vault/health" &&
		cp "${MNT[n7]}/.vault/snapshot" "$VFS_TMP/other.snap"
	local rc=$?
	VFS_KEYS=("${saved[@]}")
	return $rc
}
ok "a backup of another vault" other_vault
ok "is refused by the running cluster (EINVAL)" \
	fails_with "Invalid argument" cp "$VFS_TMP/other.snap" "$M1/.vault/restore"
ok "even with force" fails_with "Invalid argument" \
	bash -c "(echo force; cat '$VFS_TMP/other.snap') > '$M1/.vault/restore'"
ok "the log says whose it is" vfs_log_says n1 "the backup is of vault"
ok "nothing changed" restored_everywhere

# Scheduled snapshots: the leader writes them, a follower does not, and
# only the newest `retain` are kept.
scheduled_node() {
	vfs_config "$1"
	printf 'snapshot "local" {\n  path = "%s"\n  interval = "1s"\n  retain = 2\n}\n' \
		"$VFS_TMP/snaps-$1" >> "$VFS_TMP/$1.hcl"
	vfs_start_mount "$1"
}
scheduled_node n8
scheduled_node n9
M8=${MNT[n8]}
ok "n8 (with a snapshot block) initialised and unsealed" init_unseal_at "$M8"
ok "n9 (the same block) joins it" join n9 n8
ok "the leader writes scheduled snapshots" vfs_wait_until 20 \
	bash -c "[ \$(grep -c 'node n8: backup of .* into ' '$VFS_TMP/n8.log') -ge 4 ]"
snap_count() { find "$VFS_TMP/snaps-$1" -name 'vaultfs-*.snap' 2>/dev/null | wc -l; }
ok "and keeps the newest two" test "$(snap_count n8)" -eq 2
newest_whole() {
	local f
	f=$(ls "$VFS_TMP"/snaps-n8/vaultfs-n8-*.snap | tail -n 1)
	[ "$(stat -c %a "$f")" = 600 ] && "$VAULTFSD" -inspect "$f" >/dev/null
}
ok "they are whole backups, mode 0600" newest_whole
ok "no temporary file is left" bash -c "! ls '$VFS_TMP/snaps-n8' | grep -q tmp"
ok "the follower writes none" test "$(snap_count n9)" -eq 0

vfs_done
