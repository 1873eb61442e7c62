#!/usr/bin/env bash
# retry_join, as in Vault's integrated storage: nodes configured with
# retry_join stanzas are started before the cluster they join exists (the
# leader last); each keeps asking its addresses in turn, with backoff,
# fetches the sealed keyring once one answers and waits to be unsealed; a
# dead address first in the list only delays it. status shows join_state.
. "$(dirname "$0")/lib.sh"

declare -A MNT
vfs_config n1
N1_ADDR=$(vfs_cluster_addr n1)
DEAD_ADDR="http://127.0.0.1:$(vfs_free_port)"
vfs_config n2
printf 'retry_join {\n  leader_addr = "%s"\n}\n' "$N1_ADDR" >> "$VFS_TMP/n2.hcl"
vfs_config n3
printf 'retry_join {\n  leader_addr = "%s"\n}\nretry_join {\n  leader_addr = "%s"\n}\n' \
	"$DEAD_ADDR" "$N1_ADDR" >> "$VFS_TMP/n3.hcl"

vfs_start_mount n2 n3
M2=${MNT[n2]} M3=${MNT[n3]}
ok "before the cluster exists: n2 is uninitialised, join_state retrying (or fetching)" \
	bash -c "grep -Eqx 'join_state: (retrying|fetching)' '$M2/.vault/status' && grep -qx 'initialized: false' '$M2/.vault/status'"
ok "its log names the address that does not answer (connection refused)" \
	vfs_wait_until 10 vfs_log_says n2 "retry_join: .*: Connection refused"

vfs_start_mount n1
M1=${MNT[n1]}
init_unseal() { vfs_init "$M1" && vfs_unseal "$M1"; }
ok "the leader starts last: init and unseal n1" init_unseal
fetched() { grep -qx 'initialized: true' "$1/.vault/status" && grep -qx 'join_state: unsealing' "$1/.vault/status"; }
ok "n2 fetches the keyring by itself, and waits to be unsealed" vfs_wait_until 15 fetched "$M2"
ok "n3 too, past the dead address first in its list" vfs_wait_until 20 fetched "$M3"
ok "its .vault/join says so" grep -qx 'state: unseal this node to finish joining' "$M3/.vault/join"
ok "unseal n2" vfs_unseal "$M2"
ok "unseal n3" vfs_unseal "$M3"
ok "three voters" vfs_wait_until 20 vfs_three_voters "$M1"
ok "join_state: member on n2 and n3" \
	vfs_wait_until 10 bash -c "grep -qx 'join_state: member' '$M2/.vault/status' && grep -qx 'join_state: member' '$M3/.vault/status'"
ok "a write through n3 reads back on n2" \
	bash -c "printf joined > '$M3/j' && test \"\$(cat '$M2/j')\" = joined"
LINES=$(wc -l < "$VFS_TMP/n2.log")
restart_n2() { vfs_umount "$M2" && vfs_stop n2 && vfs_start n2 && vfs_mount n2 "$M2" && vfs_unseal "$M2"; }
ok "n2 restarts (initialised now)" restart_n2
ok "an initialised node does not retry_join" bash -c "! tail -n +$((LINES + 1)) '$VFS_TMP/n2.log' | grep -q retry_join"
ok "and serves as a member" vfs_wait_until 10 bash -c "test \"\$(cat '$M2/j')\" = joined"

# A manual .vault/join takes over from a retry_join that cannot succeed.
vfs_config n4
printf 'retry_join {\n  leader_addr = "%s"\n}\n' "$DEAD_ADDR" >> "$VFS_TMP/n4.hcl"
vfs_start_mount n4
M4=${MNT[n4]}
ok "n4 retries a dead address" vfs_wait_until 10 vfs_log_says n4 "retry_join: .*: Connection refused"
ok "a write of n1's address to its .vault/join takes over" \
	bash -c "echo $N1_ADDR > '$M4/.vault/join'"
ok "it fetched through n1: unsealing, join_addr n1's" \
	bash -c "grep -qx 'join_state: unsealing' '$M4/.vault/status' && grep -q '^join_addr: 127.0.0.1:' '$M4/.vault/join'"
ok "unseal n4" vfs_unseal "$M4"
four() { [ "$(vfs_voter_count "$M1")" -eq 4 ]; }
ok "four voters" vfs_wait_until 20 four

vfs_done
