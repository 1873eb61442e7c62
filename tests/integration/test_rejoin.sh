#!/usr/bin/env bash
# rejoin: a node removed from the cluster starts over in one write.
# "rejoin ADDRESS" to its .vault/join seals it, moves its data directory
# aside (DIR.removed-TIME), fetches the cluster's sealed keyring through
# ADDRESS; unsealed with the cluster's shares it joins as a new member with
# a new identity. On a node that was not removed it is refused and nothing
# moves.
. "$(dirname "$0")/lib.sh"

declare -A MNT
vfs_start_mount n1 n2 n3
M1=${MNT[n1]} M2=${MNT[n2]} M3=${MNT[n3]}
join() { echo "$(vfs_cluster_addr n1)" > "${MNT[$1]}/.vault/join" && vfs_unseal "${MNT[$1]}"; }
init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
ok "init and unseal n1" init_unseal
ok "n2 joins" join n2
ok "n3 joins" join n3
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
ok "a secret written" bash -c "printf before > '$M1/s'"
ok "rejoin on a member that was not removed is refused (EINVAL)" \
	fails_with "Invalid argument" bash -c "echo rejoin $(vfs_cluster_addr n1) > '$M2/.vault/join'"
ok "... and nothing moved" bash -c "! ls -d '$(vfs_data n2)'.removed-* 2>/dev/null && grep -qx 'sealed: false' '$M2/.vault/status'"

OLD_ID=$(vfs_status_field "$M3" identity)
ok "remove-peer n3 on the leader" bash -c "echo n3 > '$M1/.vault/remove-peer'"
ok "n3 learns it was removed" vfs_wait_until 20 grep -qx 'removed: true' "$M3/.vault/status"
ok "rejoin without an address is refused (EINVAL)" \
	fails_with "Invalid argument" bash -c "echo rejoin > '$M3/.vault/join'"
ok "rejoin through n1 on the removed node" bash -c "echo rejoin $(vfs_cluster_addr n1) > '$M3/.vault/join'"
ok "its old data directory was moved aside, not deleted" \
	bash -c "ls -d '$(vfs_data n3)'.removed-* >/dev/null && test -e \"\$(ls -d '$(vfs_data n3)'.removed-* | head -1)/raft.db\""
ok "it holds the cluster's sealed keyring again, waiting to be unsealed" \
	bash -c "grep -qx 'initialized: true' '$M3/.vault/status' && grep -qx 'sealed: true' '$M3/.vault/status' &&
	grep -qx 'removed: false' '$M3/.vault/status'"
ok "unsealed with the cluster's shares" vfs_unseal "$M3"
ok "three voters again" vfs_wait_until 20 vfs_three_voters "$M1"
new_identity() {
	local id
	id=$(vfs_status_field "$M3" identity)
	echo "# identity ${OLD_ID:0:16}... -> ${id:0:16}..."
	[ -n "$id" ] && [ "$id" != "$OLD_ID" ]
}
ok "with a new identity" new_identity
ok "it serves the cluster's secrets, old and new" \
	bash -c "printf after > '$M1/t' && test \"\$(cat '$M3/s')\" = before && test \"\$(cat '$M3/t')\" = after"
ok "and writes through it commit" bash -c "printf via-n3 > '$M3/u' && test \"\$(cat '$M2/u')\" = via-n3"

vfs_done
