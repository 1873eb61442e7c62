#!/usr/bin/env bash
# Tampering with a stopped node's disk, by someone who has the disk but no
# keys: the CRC-32 of a row is public arithmetic, so each edit below comes
# with its CRC fixed. Every row also carries a keyed MAC (src/raft/rowmac.h)
# that binds it to its index, term and node; after unseal the node must
# refuse to serve and say which row and what to do.
#  a. Rollback: newer log entries (a chmod 0600 and a new value) overwritten
#     with a copy of an older one, which would bring back the old value with
#     its old mode 0644, readable by any local user.
#  b. A snapshot with one byte edited.
#  c. Untouched, a data directory restarts and unseals as before.
# (Recovering a refused node of a cluster is test_crash.sh's c2.)
. "$(dirname "$0")/lib.sh"

# fix_entry_py DB IDX FROM: row IDX becomes a copy of row FROM (term, type,
# data and MAC: every column but the index) with its CRC recomputed for IDX.
fix_entry_py='
import sqlite3, struct, sys, zlib
db, idx, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = sqlite3.connect(db)
cols = [r[1] for r in c.execute("PRAGMA table_info(entries)") if r[1] not in ("idx", "crc")]
row = dict(zip(cols, c.execute(
    "SELECT %s FROM entries WHERE idx = ?" % ", ".join(cols), (src,)).fetchone()))
row["crc"] = zlib.crc32(row["data"], zlib.crc32(struct.pack("<QQQ", idx, row["term"], row["type"])))
c.execute("UPDATE entries SET %s WHERE idx = ?" % ", ".join(k + " = ?" for k in row),
          (*row.values(), idx))
c.commit()
'
# edit_snapshot_py DB: flips one byte in the middle of the newest snapshot's
# data and fixes its CRC.
edit_snapshot_py='
import sqlite3, struct, sys, zlib
c = sqlite3.connect(sys.argv[1])
idx, term, conf_index, conf, data = c.execute(
    "SELECT idx, term, conf_index, conf, data FROM snapshots ORDER BY idx DESC LIMIT 1").fetchone()
data = bytearray(data)
data[len(data) // 2] ^= 0x01
crc = zlib.crc32(bytes(data), zlib.crc32(conf, zlib.crc32(struct.pack("<QQQ", idx, term, conf_index))))
c.execute("UPDATE snapshots SET data = ?, crc = ? WHERE idx = ?", (bytes(data), crc, idx))
c.commit()
print(idx)
'

not_readable_by_nobody() {
	! setpriv --reuid=65534 --regid=65534 --clear-groups -- cat "$1"
}

# unseal_refused MNT: the share that completes the threshold is refused
# with EIO and the node stays sealed.
unseal_refused() {
	local mnt=$1 k out
	for k in "${VFS_KEYS[@]:0:2}"; do
		echo "$k" > "$mnt/.vault/unseal" || return 1
	done
	out=$( (echo "${VFS_KEYS[2]}" > "$mnt/.vault/unseal") 2>&1) &&
		{ echo "# the last share was accepted"; return 1; }
	echo "# unseal: $out"
	[[ "$out" == *"Input/output error"* ]] && grep -q '^sealed: true' "$mnt/.vault/status"
}


# restart NAME MNT [OPTIONS]: the daemon restarted (it checks CRCs at
# start: every CRC here is right, so it must start) and mounted again.
restart() {
	vfs_umount "$2"
	vfs_start "$1" && vfs_mount "$1" "$2" "${3:-}"
}

# ---- a. rollback by copying an older entry over newer ones ----
M=$VFS_TMP/m-a
vfs_start a
vfs_mount a "$M" allow_other
vfs_init "$M" && vfs_unseal "$M" || { echo "Bail out! cannot init/unseal"; exit 1; }
mkdir -p "$M/app"
echo old-value > "$M/app/db-password"
chmod 0644 "$M/app/db-password"
OLD=$(vfs_raft_sql a "SELECT max(idx) FROM entries")
chmod 0600 "$M/app/db-password"
echo new-value > "$M/app/db-password"
NEW=$(vfs_raft_sql a "SELECT max(idx) FROM entries")
ok "a: the secret is 0600 with its new value" \
	test "$(stat -c %a "$M/app/db-password"):$(cat "$M/app/db-password")" = 600:new-value
vfs_stop a TERM
DB=$(vfs_data a)/raft.db
for ((i = OLD + 1; i <= NEW; i++)); do python3 -c "$fix_entry_py" "$DB" "$i" "$OLD"; done
echo "# entries $((OLD + 1))..$NEW overwritten with entry $OLD"
ok "a: vaultfsd starts (the CRCs are right; it checks them before unseal)" \
	restart a "$M" allow_other
ok "a: unseal is refused (EIO), the node stays sealed" unseal_refused "$M"
ok "a: the log names the file, the first rewritten entry, and the fix" \
	vfs_log_says a "fails authentication" "$DB" "index $((OLD + 1))" "tampered" "remove-peer" "backup"
ok "a: the old value is not served" bash -c "! cat '$M/app/db-password'"
ok "a: nor to another user" not_readable_by_nobody "$M/app/db-password"

# ---- b. a snapshot edited ----
export VFS_SNAPSHOT_THRESHOLD=16 VFS_TRAILING_LOGS=4
MB=$VFS_TMP/m-b
vfs_start b
vfs_mount b "$MB"
vfs_init "$MB" && vfs_unseal "$MB" || { echo "Bail out! cannot init/unseal b"; exit 1; }
for i in $(seq 1 40); do echo "value-$i" > "$MB/k$i" || break; done
ok "b: snapshots were taken" test "$(vfs_raft_sql b "SELECT count(*) FROM snapshots")" -ge 1
vfs_stop b TERM
SNAP=$(python3 -c "$edit_snapshot_py" "$(vfs_data b)/raft.db")
echo "# snapshot $SNAP edited"
ok "b: vaultfsd starts (the snapshot's CRC is right)" restart b "$MB"
ok "b: unseal is refused (EIO), the node stays sealed" unseal_refused "$MB"
ok "b: the log names the snapshot and its index" \
	vfs_log_says b "fails authentication" "the snapshot (index $SNAP)"
unset VFS_SNAPSHOT_THRESHOLD VFS_TRAILING_LOGS

# ---- c. untouched, a restart unseals; a damaged member is replaced ----
MC=$VFS_TMP/m-c
vfs_start c
vfs_mount c "$MC"
vfs_init "$MC" && vfs_unseal "$MC" || { echo "Bail out! cannot init/unseal c"; exit 1; }
echo kept > "$MC/kept"
vfs_stop c TERM
ok "c: an untouched data directory restarts" restart c "$MC"
ok "c: and unseals" vfs_unseal "$MC"
ok "c: with its data" test "$(cat "$MC/kept")" = kept

vfs_done
