#!/usr/bin/env bash
# Key rotation on three real nodes:
#
# 1. .vault/rotate (root only) on a follower commits a new keyring term on
#    every node; status shows key_term and key_install_time; values written
#    before and after read on every node; the seal file holds the new term
#    (a restarted node opens with it).
# 2. A node down during a rotation catches up by the log, and, down during
#    another while the log is compacted, by a snapshot that carries the term
#    boxed to it.
# 3. remove-peer rotates: the entries written afterwards are under a term
#    the removed node's keyring lacks, and its data directory holds that
#    term's key nowhere, in no encoding.
# 4. rotation_interval rotates by itself.
. "$(dirname "$0")/lib.sh"

: "${KEYPROBE:?KEYPROBE must point to the keyprobe tool}"
# A node that was down catches up by snapshot when it is far enough behind.
export VFS_SNAPSHOT_THRESHOLD=32 VFS_TRAILING_LOGS=8
export VFS_ELECTION_MS=${VFS_ELECTION_MS:-600} VFS_HEARTBEAT_MS=${VFS_HEARTBEAT_MS:-60}

declare -A MNT=()
vfs_start_mount n1 n2 n3
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}

as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
key_term() { vfs_status_field "$1" key_term; }
term_is() { [ "$(key_term "$1")" = "$2" ]; }
all_terms_are() { term_is "$M1" "$1" && term_is "$M2" "$1" && term_is "$M3" "$1"; }
reads_as() { [ "$(cat "$1/$2" 2>/dev/null)" = "$3" ]; }
rotate() { echo now > "$1/.vault/rotate"; }
log_has() { grep -Eq "$2" "$VFS_TMP/$1.log"; }
restart() {
	local n=$1
	vfs_umount "${MNT[$n]}" && vfs_stop "$n" && vfs_start "$n" &&
		vfs_mount "$n" "${MNT[$n]}" && vfs_unseal "${MNT[$n]}"
}

ok "init n1" vfs_init "$M1"
ok "unseal n1" vfs_unseal "$M1"
ok "n1 leads" vfs_wait_until 10 grep -qx 'ha_mode: active' "$M1/.vault/status"
ok "status shows key term 1 on a fresh vault" term_is "$M1" 1
ok "key_install_time is an RFC 3339 UTC time" \
	grep -Eqx 'key_install_time: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z' \
	"$M1/.vault/status"
ok "n2 joins" bash -c "echo $(vfs_cluster_addr n1) > '$M2/.vault/join'"
ok "unseal n2" vfs_unseal "$M2"
ok "n3 joins" bash -c "echo $(vfs_cluster_addr n1) > '$M3/.vault/join'"
ok "unseal n3" vfs_unseal "$M3"
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"

# ---- 1. rotate ----
ok "a value written under term 1" bash -c "mkdir -p '$M1/app' && printf before > '$M1/app/before'"
ok "a non-root user may not rotate" fails_with "Permission denied" as_nobody bash -c "echo x > '$M2/.vault/rotate'"
ok "still term 1" term_is "$M2" 1
ok "rotate on a follower returns once committed" rotate "$M2"
ok "the leader is at term 2 at once" term_is "$M1" 2
ok "every node gets to term 2" vfs_wait_until 10 all_terms_are 2
ok "a value written under term 2" bash -c "printf after > '$M3/app/after'"
for m in "$M1" "$M2" "$M3"; do
	ok "$(basename "$m") reads both values" bash -c \
		"[ \"\$(cat '$m/app/before')\" = before ] && [ \"\$(cat '$m/app/after')\" = after ]"
done
ok "the nodes log the new term" bash -c "grep -q 'key term 2 installed' '$VFS_TMP/n1.log' &&
	grep -q 'key term 2 installed' '$VFS_TMP/n3.log'"
ok "n3 restarted opens with the new keyring from its seal file" restart n3
ok "and says key term 2 at once" term_is "$M3" 2
ok "and reads both values" vfs_wait_until 10 bash -c "[ \"\$(cat '$M3/app/before')\" = before ] &&
	[ \"\$(cat '$M3/app/after')\" = after ]"

# ---- 2. a node down during rotations ----
stop_n3() { vfs_umount "$M3" && vfs_stop n3; }
start_n3() { vfs_start n3 && vfs_mount n3 "$M3" && vfs_unseal "$M3"; }
ok "n3 stops" stop_n3
ok "rotate while n3 is down (log)" rotate "$M1"
ok "written under term 3" bash -c "printf during > '$M1/app/during'"
ok "n3 comes back and unseals" start_n3
ok "n3 reaches term 3 from the log" vfs_wait_until 20 term_is "$M3" 3
ok "n3 reads what was written under term 3" vfs_wait_until 10 reads_as "$M3" app/during during

ok "n3 stops again" stop_n3
ok "rotate while n3 is down again" rotate "$M2"
fill() { local i; for i in $(seq 1 80); do printf "v$i" > "$1/app/f$i" || return 1; done; }
ok "80 writes under term 4 (the log is compacted past the rotation)" fill "$M1"
LINES3=$(wc -l < "$VFS_TMP/n3.log")
ok "n3 comes back and unseals" start_n3
ok "n3 reaches term 4 from a snapshot" vfs_wait_until 20 term_is "$M3" 4
ok "n3 took the term from the snapshot's box" bash -c \
	"tail -n +$((LINES3 + 1)) '$VFS_TMP/n3.log' | grep -q 'took 1 key term(s) from a snapshot'"
ok "n3 reads a value written under term 4" vfs_wait_until 10 reads_as "$M3" app/f80 v80
ok "and one written under term 1" reads_as "$M3" app/before before

# ---- 3. remove-peer rotates ----
L=$(vfs_status_field "$M1" leader)
R=n3
[ "$L" = n3 ] && R=n2
ML=${MNT[$L]} MR=${MNT[$R]}
echo "# leader $L; removing $R"
SHARES=$(printf '%s\n' "${VFS_KEYS[@]:0:3}")
# keys_of NODE: keyprobe's "name hex" lines for NODE's keyring (seal file).
keys_of() { printf '%s\n' "$SHARES" | "$KEYPROBE" keys --seal-file "$(vfs_data "$1")/seal"; }
newest_in() { keys_of "$1" | sed -n 's/^term\([0-9]*\)\.key .*/\1/p' | sort -n | tail -n 1; }
ok "$R's keyring holds terms up to 4" test "$(newest_in "$R")" = 4
LAST=$(vfs_raft_sql "$L" "SELECT max(idx) FROM entries")
ok "remove-peer $R returns once removed and rotated" bash -c "echo $R > '$ML/.vault/remove-peer'"
ok "the leader is at term 5 at once" term_is "$ML" 5
ok "$R stays at term 4: the new key was boxed to the members only" term_is "$MR" 4
ok "a value written after the removal" bash -c "printf post > '$ML/app/post'"
K=n1
[ "$L" = n1 ] || [ "$R" = n1 ] && K=n2
[ "$L" = n2 ] || [ "$R" = n2 ] && [ "$K" = n2 ] && K=n3
ok "the other member ($K) reads it" vfs_wait_until 10 reads_as "${MNT[$K]}" app/post post
ok "and is at term 5" term_is "${MNT[$K]}" 5
# Commands are barrier ciphertexts: their first 4 bytes are their term.
new_entries_under_5() {
	local terms
	terms=$(vfs_raft_sql "$L" "SELECT DISTINCT hex(substr(data, 1, 4)) FROM entries
		WHERE idx > $LAST AND type = 1 AND hex(substr(data, 1, 4)) != '00000000'")
	echo "# terms of the commands after the removal: $terms"
	[ "$terms" = 05000000 ]
}
ok "every command the leader logged after the removal is under term 5" new_entries_under_5
ok "$R's keyring, opened with the shares, still ends at term 4" test "$(newest_in "$R")" = 4
TERM5=$(keys_of "$L" | grep '^term5\.')
ok "control: the leader's keyring has term 5 (key, data, name, cluster)" \
	test "$(grep -c . <<<"$TERM5")" -eq 4
key_nowhere() { # DIR: no term 5 key in any file under DIR, in any encoding
	local files
	mapfile -t files < <(find "$1" -type f)
	printf '%s\n' "$TERM5" | "$KEYPROBE" find "${files[@]}"
}
ok "no file of $R's data directory holds a term 5 key" key_nowhere "$(vfs_data "$R")"
ok "nor, in the clear, any file of the leader's" key_nowhere "$(vfs_data "$L")"

# The removed node's keys, in the project's own transport (rogue.c): it may
# still ask who the members are, but not join again, under any name.
OLD_CLUSTER=$(keys_of "$R" | sed -n 's/^term4\.cluster //p')
rogue_old() { printf '%s\n' "$OLD_CLUSTER" | "$ROGUE" --key-term 4 --timeout 4000 "$@" 2>>"$VFS_TMP/rogue.log"; }
port_of() { vfs_cluster_addr "$1" | sed 's/.*://'; }
hostport() { echo "127.0.0.1:$(port_of "$1")"; }
members_answered() { rogue_old members "$(hostport "$1")" | grep -q "^"; }
ok "control: with $R's keys, MEMBERS is still answered" members_answered "$L"
join_refused() { # NODE NAME
	local out
	out=$(rogue_old rpc "$(hostport "$1")" join "id:$2" "blob:$2@127.0.0.1:$(vfs_free_port)#{me}")
	[[ "$out" == "status=EKEYEXPIRED "* ]] || { echo "# $1 answered: ${out:-nothing}"; return 1; }
}
ok "with $R's keys, a JOIN to the leader is refused: EKEYEXPIRED" join_refused "$L" rejoin
ok "and to the other member" join_refused "$K" rejoin2
ok "and under $R's own name" join_refused "$L" "$R"
two_voters() { [ "$(vfs_voter_count "$ML")" -eq 2 ]; }
ok "the configuration did not change" two_voters

# ---- 4. rotation_interval ----
vfs_config n4
cp "$VFS_TMP/n4.hcl" "$VFS_TMP/bad.hcl"
echo 'rotation_interval = "5s"' >> "$VFS_TMP/bad.hcl"
bad_interval_refused() {
	local out rv=0
	out=$("$VAULTFSD" -config="$VFS_TMP/bad.hcl" 2>&1) || rv=$?
	echo "# $out"
	[ "$rv" -eq 1 ] && [[ "$out" == *'rotation_interval must be "off" or a duration from 10s to 365d'* ]]
}
ok "vaultfsd refuses rotation_interval = \"5s\" with a message, exit 1" bad_interval_refused
echo 'rotation_interval = "10s"' >> "$VFS_TMP/n4.hcl"
vfs_start_mount n4
M4=${MNT[n4]}
ok "init n4 (rotation_interval 10s)" vfs_init "$M4"
ok "unseal n4" vfs_unseal "$M4"
ok "n4 starts at term 1" term_is "$M4" 1
ok "n4 rotates by itself within 20 s" vfs_wait_until 20 term_is "$M4" 2
ok "its log says so" log_has n4 "rotating the keyring to term 2"
ok "and its data stays readable" bash -c "printf x > '$M4/v' && [ \"\$(cat '$M4/v')\" = x ]"

vfs_done
