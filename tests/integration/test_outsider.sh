#!/usr/bin/env bash
# An outsider that holds the cluster key but no member's identity gets
# nothing from a three-node cluster. The attacker is tests/integration/
# rogue.c: the project's own transport with a fresh identity, keyed with the
# cluster key that keyprobe recovers from the shares (a stolen seal file and
# a threshold of shares, or a removed node, give the same). Its channels are
# genuine, so every refusal below is the node judging who the rogue proved
# to be; each RPC also announces a member's name and identity in the
# channel's address frame, as a member does, so that a node that believed
# the claim instead of the proof would take the rogue for that member.
#
# Against the leader: FORWARD (a real mkdir), READ_INDEX, SAFE, VISIBLE,
# STEP_DOWN and REMOVE of a member are refused with EPERM and have no
# effect (no directory, same leader, same members). Against a follower:
# the same RPCs get EAGAIN (a follower serves none of them, and relays
# none) and have no effect; CONFIRM in the current term, claiming to come
# from the leader, gets no yes. JOIN, through the leader and through a
# follower: a new name with another member's identity, the rogue's own name
# with an existing member's address and identity, and a JOIN flagged as
# relayed by a member are refused with EBADMSG; a member's name with the
# rogue's own (provable) identity is refused with EEXIST; the configuration,
# identities included, never changes. A forged AppendEntries with the term
# plus 100, to a follower claiming to be the leader and to the leader
# claiming to be a follower: the receiver logs that it dropped a Raft
# message from an identity that is not a member, no term moves and the
# leader stays. Controls: the rogue's channel works (MEMBERS, which joining
# nodes need, answers it), and a wrong cluster key gets no answer at all.
# Last, every node still writes and reads.
#
# Key material lives only in shell variables and pipes.
. "$(dirname "$0")/lib.sh"
: "${KEYPROBE:?KEYPROBE must point to the keyprobe tool}"
: "${ROGUE:?ROGUE must point to the rogue tool}"

# A long election timeout: the term checks must not see an election the
# loaded machine held on its own.
export VFS_ELECTION_MS=${VFS_ELECTION_MS:-2000}

declare -A MNT=()
vfs_start_mount n1 n2 n3

ok "init n1" vfs_init "${MNT[n1]}"
ok "unseal n1" vfs_unseal "${MNT[n1]}"
ok "n1 leads a one-node cluster" \
	vfs_wait_until 10 grep -qx 'ha_mode: active' "${MNT[n1]}/.vault/status"
ok "n2 joins via n1" bash -c "echo $(vfs_cluster_addr n1) > '${MNT[n2]}/.vault/join'"
ok "unseal n2" vfs_unseal "${MNT[n2]}"
ok "n3 joins via n1" bash -c "echo $(vfs_cluster_addr n1) > '${MNT[n3]}/.vault/join'"
ok "unseal n3" vfs_unseal "${MNT[n3]}"
ok "three voters, one leader" vfs_wait_until 30 vfs_three_voters "${MNT[n1]}"
ok "every node lists them" vfs_wait_until 10 bash -c \
	"$(declare -f vfs_three_voters vfs_voter_count); vfs_three_voters '${MNT[n2]}' && vfs_three_voters '${MNT[n3]}'"

KEY=$(printf '%s\n' "${VFS_KEYS[@]}" | "$KEYPROBE" keys --seal-file "$(vfs_data n1)/seal" |
	sed -n 's/^cluster //p')
ok "keyprobe recovers the cluster key from the shares" test "${#KEY}" -eq 64

# ---- Helpers ----

port_of() { vfs_cluster_addr "$1" | sed 's/.*://'; }
hostport() { echo "127.0.0.1:$(port_of "$1")"; }
id_hex() { od -An -v -tx1 -j 8 -N 32 "$(vfs_data "$1")/identity" | tr -d ' \n'; }
raft_addr() { echo "$1@$(hostport "$1")#$(id_hex "$1")"; }
# claim NAME: what the rogue announces to pass for member NAME: its name
# and identity, at a free port (the rogue listens there).
claim() { echo "$1@127.0.0.1:$(vfs_free_port)#$(id_hex "$1")"; }
term_of() { vfs_status_field "${MNT[$1]}" term; }
terms() { local n; for n in n1 n2 n3; do printf '%s:%s ' "$n" "$(term_of "$n")"; done; }
alive() { kill -0 "${VFS_PID[$1]}" 2>/dev/null; }
# roles: L the leader, F and G the followers.
roles() {
	local n
	L= F= G=
	for n in n1 n2 n3; do
		grep -qx 'ha_mode: active' "${MNT[$n]}/.vault/status" && L=$n
	done
	for n in n3 n2 n1; do
		[ "$n" = "$L" ] && continue
		if [ -z "$F" ]; then F=$n; else G=$n; fi
	done
	[ -n "$L" ]
}
# rogue ARGS...: runs the rogue with the cluster key on stdin; its stderr
# (transport log lines, its identity) goes to rogue.log, the identity of
# the last run to ROGUE_ID.
ROGUE_ID=
rogue() {
	local rv
	printf '%s\n' "$KEY" | "$ROGUE" "$@" 2> "$VFS_TMP/rogue.err"
	rv=$?
	cat "$VFS_TMP/rogue.err" >> "$VFS_TMP/rogue.log"
	ROGUE_ID=$(sed -n 's/^rogue: identity //p' "$VFS_TMP/rogue.err")
	return $rv
}
# answers NODE CLAIMED STATUS [--proxied] TYPE [ITEM...]: an RPC to NODE,
# announcing member CLAIMED, is answered with STATUS.
answers() {
	local node=$1 claimed=$2 want=$3 out opts=()
	shift 3
	[ "$1" = --proxied ] && { opts+=(--proxied); shift; }
	out=$(rogue --as "$(claim "$claimed")" "${opts[@]}" --timeout 4000 \
		rpc "$(hostport "$node")" "$@")
	[[ "$out" == "status=$want "* ]] && return
	echo "# $node answered ${opts[*]} $* with: ${out:-nothing} (want $want)"
	return 1
}
# The configuration as MEMBERS tells it: every Raft address, identities
# included.
config_of() { rogue members "$(hostport "$1")" | awk '{ print $2 }' | LC_ALL=C sort; }
CONFIG0=$(config_of n1)
[ "$(wc -l <<<"$CONFIG0")" -eq 3 ] || echo "# MEMBERS from n1: ${CONFIG0:-nothing}"
same_config() {
	local n now
	for n in n1 n2 n3; do
		now=$(config_of "$n")
		[ "$now" = "$CONFIG0" ] || { echo "# $n's configuration: $(echo $now)"; return 1; }
	done
}
no_dir() {
	local n
	for n in n1 n2 n3; do
		! test -e "${MNT[$n]}/$1" || { echo "# $1 exists on $n"; return 1; }
	done
}
leader_is() {
	roles && [ "$L" = "$1" ] || { echo "# leader is now ${L:-none}, was $1"; return 1; }
}

# ---- Controls ----

expected_config() { local n; for n in n1 n2 n3; do raft_addr "$n"; done | LC_ALL=C sort; }
ok "control: MEMBERS (joining nodes need it) answers the rogue: the members' Raft addresses" \
	test "$CONFIG0" = "$(expected_config)"
wrong_key_no_answer() {
	local out
	out=$(KEY=$(head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n') \
		rogue --timeout 3000 rpc "$(hostport n1)" members)
	[ $? -eq 1 ] && [[ "$out" == status=E* ]] || { echo "# with a wrong key: $out"; return 1; }
	echo "# with a wrong key: $out"
}
ok "control: with a wrong cluster key the handshake fails and nothing answers" wrong_key_no_answer
roles
echo "# leader $L, followers $F and $G"
TERMS0=$(terms)
LEADER0=$L

# ---- RPCs to the leader, passing for follower F ----

VT=$(term_of "$L")
VI=$(vfs_status_field "${MNT[$L]}" commit_index)
ok "leader: FORWARD (a mkdir) is refused with EPERM" \
	answers "$L" "$F" EPERM forward mkdir:outsider-leader
ok "leader: and the directory is nowhere" no_dir outsider-leader
ok "leader: READ_INDEX is refused with EPERM" answers "$L" "$F" EPERM read-index u64:0
ok "leader: SAFE is refused with EPERM" answers "$L" "$F" EPERM safe u64:1
ok "leader: VISIBLE is refused with EPERM" answers "$L" "$F" EPERM visible "u64:$VT" "u64:$VI"

# ---- RPCs to a follower, passing for the leader ----

ok "follower: FORWARD (a mkdir) gets EAGAIN" \
	answers "$F" "$L" EAGAIN forward mkdir:outsider-follower
ok "follower: and the directory is nowhere" no_dir outsider-follower
ok "follower: READ_INDEX gets EAGAIN" answers "$F" "$L" EAGAIN read-index u64:0
ok "follower: SAFE gets EAGAIN" answers "$F" "$L" EAGAIN safe u64:1
ok "follower: VISIBLE gets EAGAIN" answers "$F" "$L" EAGAIN visible "u64:$VT" "u64:$VI"
ok "follower: CONFIRM of the current term, claiming the leader, gets no yes (EAGAIN)" \
	answers "$F" "$L" EAGAIN confirm "u64:$(term_of "$F")"

# ---- JOIN ----

for via in leader follower; do
	[ "$via" = leader ] && T=$L || T=$F
	N9="n9@127.0.0.1:$(vfs_free_port)#$(id_hex "$G")" # a new node with G's identity
	ok "JOIN via the $via: a new name with $G's identity is refused with EBADMSG" \
		answers "$T" "$G" EBADMSG join id:n9 "blob:$N9"
	ok "JOIN via the $via: the rogue's own name with $G's address and identity: EBADMSG" \
		answers "$T" "$G" EBADMSG join id:rogue "blob:rogue@$(hostport "$G")#$(id_hex "$G")"
	ok "JOIN via the $via, flagged as relayed by a member, with $G's identity: EBADMSG" \
		answers "$T" "$G" EBADMSG --proxied join id:n9 "blob:$N9"
	ok "JOIN via the $via: $G's name with the rogue's own identity is refused with EEXIST" \
		answers "$T" "$G" EEXIST join "id:$G" "blob:$G@$(hostport "$G")#{me}"
	ok "JOIN via the $via: every node's configuration is unchanged, identities included" \
		same_config
done
# Both refusals came within seconds: the leader says so once (a joiner
# that keeps retrying must not flood its log).
ok "the leader logged the refused name once, not once per JOIN" \
	test "$(grep -c "refusing to add $G@" "$VFS_TMP/$L.log")" -eq 1

# ---- Forged Raft AppendEntries, term + 100 ----

# forged TARGET CLAIMED: sends TARGET an AppendEntries in the term + 100,
# announcing member CLAIMED's name and identity.
forged() {
	local out
	START=$(wc -l < "$VFS_TMP/$1.log")
	# Not in $(...): ROGUE_ID must reach this shell.
	rogue append "$(hostport "$1")" "$(claim "$2")" $(($(term_of "$1") + 100)) \
		> "$VFS_TMP/rogue.out"
	out=$(cat "$VFS_TMP/rogue.out")
	[ "$out" = sent=1 ] && [ -n "$ROGUE_ID" ] || { echo "# rogue: ${out:-nothing}"; return 1; }
}
# dropped NODE: NODE logged, since START, that it dropped a Raft message
# from the rogue's identity.
dropped() {
	tail -n "+$((START + 1))" "$VFS_TMP/$1.log" | grep -Eq \
		"a Raft message from 127\.0\.0\.1, whose identity ${ROGUE_ID:0:16}\.\.\. is not a member: dropped"
}
same_terms() {
	local t
	t=$(terms)
	[ "$t" = "$TERMS0" ] || { echo "# terms were $TERMS0, now $t"; return 1; }
}
for target in follower leader; do
	roles
	[ "$target" = leader ] && { T=$L; C=$F; } || { T=$F; C=$L; }
	ok "forged AppendEntries to the $target $T, claiming $C, term + 100: written to the channel" \
		forged "$T" "$C"
	ok "$T logs that it dropped a Raft message from an identity that is not a member" \
		vfs_wait_until 10 dropped "$T"
	# The rogue stayed connected 300 ms after sending, and $T has logged the
	# drop: by now a term taken from the message would show.
	ok "no node's term moved" same_terms
	ok "$LEADER0 still leads" leader_is "$LEADER0"
done

# ---- REMOVE and STEP_DOWN (last: on a node without the checks they change the cluster) ----

# Roles again before each: on such a node the one before may have moved
# leadership, and an RPC to a former leader would prove nothing.
member_everywhere() {
	local n
	for n in n1 n2 n3; do
		grep -q "^$1 " "${MNT[$n]}/.vault/peers" || { echo "# $n does not list $1"; return 1; }
	done
}
roles
ok "follower: REMOVE of $G gets EAGAIN" answers "$F" "$L" EAGAIN remove "id:$G"
ok "$G is still a member on every node" member_everywhere "$G"
roles
ok "leader: REMOVE of $G is refused with EPERM" answers "$L" "$F" EPERM remove "id:$G"
ok "$G is still a member on every node" member_everywhere "$G"
roles
ok "follower: STEP_DOWN gets EAGAIN" answers "$F" "$L" EAGAIN step-down
ok "$LEADER0 still leads" leader_is "$LEADER0"
roles
ok "leader: STEP_DOWN is refused with EPERM" answers "$L" "$F" EPERM step-down
leads_same_terms() { leader_is "$LEADER0" && same_terms; }
ok "$LEADER0 still leads, and no term moved" leads_same_terms
ok "every node's configuration is unchanged, identities included" same_config

# ---- The cluster still serves ----

all_alive() {
	local n
	for n in n1 n2 n3; do
		alive "$n" || { echo "# $n's daemon is gone"; return 1; }
	done
}
ok "every daemon runs" all_alive
writes_and_reads() {
	local w r
	for w in n1 n2 n3; do
		echo "from-$w" > "${MNT[$w]}/after-$w" || { echo "# write on $w failed"; return 1; }
		for r in n1 n2 n3; do
			[ "$(cat "${MNT[$r]}/after-$w")" = "from-$w" ] ||
				{ echo "# $r does not read after-$w"; return 1; }
		done
	done
}
ok "a write on every node is read on every node" writes_and_reads
ok "the only entries in the root are the test's" \
	test "$(ls -A "${MNT[n1]}" | LC_ALL=C sort | tr '\n' ' ')" = ".vault after-n1 after-n2 after-n3 "
vfs_done
