#!/usr/bin/env bash
# Upgrade: a data directory made by an earlier build (tests/fixtures/
# data-37ed53f.tar.gz: commit 37ed53f, one node n1, cluster address
# 127.0.0.1:31697, five secrets in two directories with modes 0600 and
# 0644, a rename, 40 more secrets, a key rotation to term 2) opens with
# this build: it starts, unseals with that vault's shares, shows every
# secret as it was, takes writes that survive a restart, and a new node
# joins it and gets everything.
#
# The shares below open only that throwaway fixture vault, made for this
# test; it holds nothing but the test's own values.
. "$(dirname "$0")/lib.sh"

FIXTURE=$(cd "$(dirname "$0")/../fixtures" && pwd)/data-37ed53f.tar.gz
FIXTURE_PORT=31697
VFS_KEYS=(5hkvtQ5xpIG4i6Z3rmRAZuskeTKgpR/Tl6ZU6ytY/iBG
	W0Ri6SBnVISCUqaTk51iDbKB1NvuODS42sIUt/+Tv/LS
	fS6lhj2n2HfZMcjc1Bmb5MDAxZNq3PWPsqysoccq12u8)

vfs_config n1
# The node's Raft address is in its log: keep the port it was made with.
sed -i "s|^cluster_addr = .*|cluster_addr = \"http://127.0.0.1:$FIXTURE_PORT\"|" "$VFS_TMP/n1.hcl"
mkdir -p "$(vfs_data n1)" && chmod 700 "$(vfs_data n1)"
tar -C "$(vfs_data n1)" -xzf "$FIXTURE"
declare -A MNT
vfs_start_mount n1
M1=${MNT[n1]}
ok "this build starts on the old data directory: initialised, sealed" \
	bash -c "grep -qx 'initialized: true' '$M1/.vault/status' && grep -qx 'sealed: true' '$M1/.vault/status'"
ok "it unseals with that vault's shares" vfs_unseal "$M1"
ok "and leads" vfs_wait_until 10 grep -qx active "$M1/.vault/health"
ok "its key term is still 2" grep -qx 'key_term: 2' "$M1/.vault/status"
old_secrets() {
	local m=$1 i
	[ "$(cat "$m/app/db/admin")" = s3cr3t-admin ] && [ "$(stat -c %a "$m/app/db/admin")" = 600 ] &&
		[ "$(cat "$m/app/db/reader")" = readonly-user ] && [ "$(stat -c %a "$m/app/db/reader")" = 644 ] &&
		[ "$(cat "$m/team/api-key")" = api-key-1 ] && [ ! -e "$m/team/api" ] &&
		[ "$(cat "$m/team/after")" = after-rotation ] || return 1
	for i in $(seq 1 40); do [ "$(cat "$m/app/k$i")" = "v$i" ] || return 1; done
}
ok "every secret as it was: values, modes, the rename, the 40 more" old_secrets "$M1"
ok "a write on the upgraded node" bash -c "printf new-build > '$M1/team/new'"
restart() { vfs_umount "$M1" && vfs_stop n1 && vfs_start n1 && vfs_mount n1 "$M1" && vfs_unseal "$M1"; }
ok "restarted" restart
ok "the old secrets and the new write survive the restart" \
	bash -c "$(declare -f old_secrets); old_secrets '$M1' && test \"\$(cat '$M1/team/new')\" = new-build"
vfs_start_mount n2
join() { echo "http://127.0.0.1:$FIXTURE_PORT" > "${MNT[n2]}/.vault/join" && vfs_unseal "${MNT[n2]}"; }
ok "a new node joins the upgraded one" join
two() { [ "$(vfs_voter_count "$M1")" -eq 2 ]; }
ok "two voters" vfs_wait_until 20 two
ok "the new node has every secret, old and new" \
	vfs_wait_until 10 bash -c "$(declare -f old_secrets); old_secrets '${MNT[n2]}' && test \"\$(cat '${MNT[n2]}/team/new')\" = new-build"

vfs_done
