#!/usr/bin/env bash
# Node identity in the cluster protocol, with three nodes in network
# namespaces (10.250.0.1-3):
#
# 1. Reflection: one DNAT rule in the leader's namespace sends its
#    connection for a joining node back to its own cluster port. The leader
#    must refuse to talk to itself (both ends see their own identity), stay
#    up and unsealed, and keep serving with the other voter; once the rule
#    is gone the joiner is added. (Before node identities, the leader
#    completed the handshake with itself, took its own AppendEntries for a
#    follower's and crashed.)
# 2. Removal revokes: a follower removed with remove-peer keeps running with
#    its whole data directory and keys, yet the members drop its traffic;
#    it cannot serve a read; restarted and unsealed with its data directory
#    it still cannot get back in, and its status says removed: true; the
#    two left keep writing.
# 3. Identities stay put: every node's Raft address carries its identity,
#    and the identity file on disk holds no secret key in the clear.
# 4. A member restarted without its identity file makes a new identity,
#    which the others do not take for it: it says so and what to do, and
#    cannot serve; with its file back it serves again.
. "$(dirname "$0")/lib.sh"

export VFS_ELECTION_MS=${VFS_ELECTION_MS:-600} VFS_HEARTBEAT_MS=${VFS_HEARTBEAT_MS:-60}
export VFS_REQUEST_TIMEOUT_MS=${VFS_REQUEST_TIMEOUT_MS:-3000}
EAGAIN_MSG="Resource temporarily unavailable"

if [ "$(id -u)" -ne 0 ] || ! command -v nft >/dev/null 2>&1 || ! vfs_netns_setup 3; then
	echo "1..0 # SKIP network namespaces or nft unavailable"
	exit 0
fi

declare -A MNT=() NSOF=() IP=()
for i in 1 2 3; do
	n=n$i
	NSOF[$n]=${VFS_NETNS[$i]}
	IP[$n]=10.250.0.$i
	MNT[$n]=$VFS_TMP/m-$n
	vfs_config_at "$n" "http://${IP[$n]}:8201"
	vfs_start_in "${NSOF[$n]}" "$n" || { echo "Bail out! cannot start $n"; exit 1; }
	vfs_mount "$n" "${MNT[$n]}" || { echo "Bail out! cannot mount $n"; exit 1; }
done
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}

voters() { vfs_voter_count "$1"; }
voters_are() { [ "$(voters "$1")" = "$2" ]; }
leader_of() { vfs_status_field "$1" leader; }
alive() { kill -0 "${VFS_PID[$1]}" 2>/dev/null; }
unsealed() { vfs_status_field "$1" sealed | grep -qx false; }
reads_as() { [ "$(cat "$1/$2" 2>/dev/null)" = "$3" ]; }
# log_has NODE REGEX: NODE's log has a line matching REGEX.
log_has() { grep -Eq "$2" "$VFS_TMP/$1.log"; }
lines_of() { wc -l < "$VFS_TMP/$1.log"; }
# log_since NODE LINE REGEX: a line after line LINE of NODE's log matches.
log_since() { tail -n "+$(($2 + 1))" "$VFS_TMP/$1.log" | grep -Eq "$3"; }

ok "init n1" vfs_init "$M1"
ok "unseal n1" vfs_unseal "$M1"
ok "n1 leads a one-node cluster" vfs_wait_until 10 grep -qx 'ha_mode: active' "$M1/.vault/status"
ok "n3 joins via n1" bash -c "echo http://${IP[n1]}:8201 > '$M3/.vault/join'"
ok "unseal n3" vfs_unseal "$M3"
ok "two voters" vfs_wait_until 20 voters_are "$M1" 2

# ---- 1. reflection ----
reflect_on() {
	ip netns exec "${NSOF[n1]}" nft -f - <<EOF
table ip vfs_reflect {
	chain out {
		type nat hook output priority -100;
		ip daddr ${IP[n2]} tcp dport 8201 dnat to ${IP[n1]}:8201
	}
}
EOF
}
reflect_off() { ip netns exec "${NSOF[n1]}" nft delete table ip vfs_reflect; }
N1_LINES=$(lines_of n1)
ok "a DNAT rule in n1's namespace sends n1's connections for ${IP[n2]}:8201 to n1 itself" reflect_on
ok "n2 joins via n1 (n1 must now dial n2, and reaches itself)" \
	bash -c "echo http://${IP[n1]}:8201 > '$M2/.vault/join'"
ok "unseal n2" vfs_unseal "$M2"
ok "n1 refused a channel with its own identity" vfs_wait_until 20 log_since n1 "$N1_LINES" \
	"this node's own identity"
# Long enough for many redials and heartbeats to have gone to the wrong place.
sleep 3
ok "n1 is still running" alive n1
ok "n1 is still unsealed" unsealed "$M1"
ok "n1 still leads" bash -c "grep -qx 'leader: n1' '$M1/.vault/status'"
write_during() { mkdir -p "$M1/t" && printf during > "$M1/t/reflect"; }
ok "the cluster (n1 and n3) keeps writing during the attack" write_during
ok "n3 reads it" vfs_wait_until 10 reads_as "$M3" t/reflect during
ok "the rule is removed" reflect_off
ok "n2 is added once n1 reaches it: three voters" vfs_wait_until 30 voters_are "$M1" 3
ok "n2 reads what was written during the attack" vfs_wait_until 10 reads_as "$M2" t/reflect during
ok "n2 takes a write" bash -c "printf after > '$M2/t/after'"
ok "n1 reads it" vfs_wait_until 10 reads_as "$M1" t/after after

# ---- 3. identities ----
id_hex() { od -An -v -tx1 -j 8 -N 32 "$(vfs_data "$1")/identity" | tr -d ' \n'; }
distinct_ids() {
	local a b c
	a=$(id_hex n1) b=$(id_hex n2) c=$(id_hex n3)
	[ "${#a}" -eq 64 ] && [ "$a" != "$b" ] && [ "$b" != "$c" ] && [ "$a" != "$c" ]
}
ok "each node has its own identity file, with distinct public keys" distinct_ids
# The configuration that Raft replicates names each member's identity.
config_names_identity() {
	local n
	for n in n1 n2 n3; do
		log_has n1 "adding $n@${IP[$n]}:8201#$(id_hex "$n")" ||
			[ "$n" = n1 ] || { echo "# no 'adding' line with $n's identity"; return 1; }
	done
}
ok "members were added with the identity of their own file" config_names_identity
# What an operator compares: a node's status, and another node's peers.
status_names_identity() {
	local n
	for n in n1 n2 n3; do
		grep -qx "identity: $(id_hex "$n")" "${MNT[$n]}/.vault/status" ||
			{ echo "# $n's status: $(grep '^identity:' "${MNT[$n]}/.vault/status")"; return 1; }
		grep -Eq "^$n +${IP[$n]}:8201 +$(id_hex "$n" | cut -c1-16) " "$M3/.vault/peers" ||
			{ echo "# n3's peers:"; sed 's/^/# /' "$M3/.vault/peers"; return 1; }
	done
}
ok "each status names its node's identity, and peers shows its first 16 hex digits" \
	status_names_identity
identity_sealed() {
	local f size
	f=$(vfs_data n1)/identity
	size=$(stat -c %s "$f")
	# magic, public key, then the secret key sealed by the barrier:
	# u32 length, u32 term, 24-byte nonce, 32 bytes, 16-byte tag.
	echo "# $f: $size bytes, mode $(stat -c %a "$f")"
	[ "$size" -eq $((8 + 32 + 4 + 4 + 24 + 32 + 16)) ] && [ "$(stat -c %a "$f")" = 600 ]
}
ok "the identity file holds the secret key sealed (size of a sealed key), mode 0600" identity_sealed

# ---- 2. removal revokes ----
L=$(leader_of "$M1")
R=n2
[ "$L" = n2 ] && R=n3
KEEP=n1
[ "$L" = n1 ] && KEEP=$([ "$R" = n2 ] && echo n3 || echo n2)
ML=${MNT[$L]} MR=${MNT[$R]}
echo "# leader $L; removing $R"
LINES_L=$(lines_of "$L")
ok "remove-peer $R on the leader" bash -c "echo $R > '$ML/.vault/remove-peer'"
ok "peers no longer lists $R" vfs_wait_until 10 bash -c "! grep -q '^$R ' '$ML/.vault/peers'"
ok "$R's process still runs, unsealed" bash -c "kill -0 ${VFS_PID[$R]} && grep -qx 'sealed: false' '$MR/.vault/status'"
ok "the leader drops $R's traffic: not a member" vfs_wait_until 20 log_since "$L" "$LINES_L" \
	"from ${IP[$R]}, whose identity [0-9a-f]+\\.\\.\\. is not a member: dropped"
ok "status on $R says removed: true (the members told it)" \
	vfs_wait_until 20 grep -qx 'removed: true' "$MR/.vault/status"
ok "status on the leader says removed: false" grep -qx 'removed: false' "$ML/.vault/status"
ok "a read on $R fails with EAGAIN (it is no member: no read index)" \
	vfs_fails_within $((2 * VFS_REQUEST_TIMEOUT_MS + 1500)) "$EAGAIN_MSG" cat "$MR/t/after"
ok "the two left keep writing" bash -c "printf removed > '$ML/t/removed'"
restart_removed() {
	vfs_umount "$MR" && vfs_stop "$R" && vfs_start_in "${NSOF[$R]}" "$R" && vfs_mount "$R" "$MR" &&
		vfs_unseal "$MR"
}
LINES_L=$(lines_of "$L")
ok "$R restarted with its data directory and unsealed with the shares" restart_removed
ok "restarted, it learns again that it was removed" \
	vfs_wait_until 20 grep -qx 'removed: true' "$MR/.vault/status"
ok "its connections are still refused" vfs_wait_until 20 log_since "$L" "$LINES_L" \
	"from ${IP[$R]}, whose identity [0-9a-f]+\\.\\.\\. is not a member: dropped"
ok "it cannot read" vfs_fails_within $((2 * VFS_REQUEST_TIMEOUT_MS + 1500)) "$EAGAIN_MSG" \
	cat "$MR/t/removed"
ok "the cluster still writes and reads" bash -c "printf end > '$ML/t/end'"
ok "$KEEP reads it" vfs_wait_until 10 reads_as "${MNT[$KEEP]}" t/end end

# ---- 4. the identity file is what makes a member itself ----
MK=${MNT[$KEEP]}
IDF=$(vfs_data "$KEEP")/identity
restart_keep() { vfs_umount "$MK" && vfs_stop "$KEEP" && vfs_start_in "${NSOF[$KEEP]}" "$KEEP" &&
	vfs_mount "$KEEP" "$MK" && vfs_unseal "$MK"; }
mv "$IDF" "$VFS_TMP/identity.saved"
LINES_K=$(lines_of "$KEEP")
ok "$KEEP restarted without its identity file, unsealed" restart_keep
ok "it says the cluster knows it by another identity, and what to do" \
	vfs_wait_until 10 log_since "$KEEP" "$LINES_K" "knows this node as $KEEP@.*another identity.*remove-peer"
ok "with a new identity it cannot read (the members do not listen to it)" \
	vfs_fails_within $((2 * VFS_REQUEST_TIMEOUT_MS + 1500)) "$EAGAIN_MSG" cat "$MK/t/end"
ok "its status does not claim it was removed" grep -qx 'removed: false' "$MK/.vault/status"
mv "$VFS_TMP/identity.saved" "$IDF"
ok "its own identity file back, restarted and unsealed" restart_keep
ok "it reads again" vfs_wait_until 20 reads_as "$MK" t/end end

vfs_done
