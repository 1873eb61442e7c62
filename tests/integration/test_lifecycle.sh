#!/usr/bin/env bash
# One node end to end, as an operator uses it: init, unseal, files, seal,
# restart, crash, secrecy at rest, and bad input at the control files.
. "$(dirname "$0")/lib.sh"

M=$VFS_TMP/mnt
vfs_start n1
ok "mount.vaultfs mounts a sealed, uninitialised node" vfs_mount n1 "$M"
ok "status says not initialised and sealed" \
	bash -c "grep -qx 'initialized: false' '$M/.vault/status' && grep -qx 'sealed: true' '$M/.vault/status'"
ok "secrets are refused before init (ENOKEY)" fails_with "Required key not available" ls "$M/"
ok "unseal before init is refused" fails_with "Invalid argument" bash -c "echo AAAA > '$M/.vault/unseal'"
ok "init with bad arguments is refused" fails_with "Invalid argument" bash -c "echo 'shares=2 threshold=3' > '$M/.vault/init'"

ok "init prints five key shares once" vfs_init "$M"
ok "the shares are gone after the first read" test -z "$(cat "$M/.vault/init")"
ok "init twice fails with EALREADY" fails_with "Operation already in progress" bash -c "echo > '$M/.vault/init'"
ok "status: initialised, sealed, 5 shares, threshold 3, progress 0/3" \
	bash -c "grep -qx 'initialized: true' '$M/.vault/status' && grep -qx 'sealed: true' '$M/.vault/status' &&
		 grep -qx 'shares: 5' '$M/.vault/status' && grep -qx 'threshold: 3' '$M/.vault/status' &&
		 grep -qx 'progress: 0/3' '$M/.vault/status'"
ok "a malformed share is refused (EINVAL)" fails_with "Invalid argument" bash -c "echo not-base64 > '$M/.vault/unseal'"

wrong_share() { (head -c 32 /dev/urandom; printf "\\x$1") | base64 -w0; echo; }
wrong_shares() {
	wrong_share 01 > "$M/.vault/unseal" && wrong_share 02 > "$M/.vault/unseal" || return 1
	fails_with "Key was rejected by service" bash -c "$(declare -f wrong_share); wrong_share 03 > '$M/.vault/unseal'"
}
ok "wrong shares are rejected at the threshold (EKEYREJECTED)" wrong_shares
ok "a rejected attempt resets progress" grep -qx 'progress: 0/3' "$M/.vault/status"
ok "the same share twice does not count twice" \
	bash -c "echo ${VFS_KEYS[0]} > '$M/.vault/unseal'; ! echo ${VFS_KEYS[0]} > '$M/.vault/unseal' 2>/dev/null; grep -qx 'progress: 1/3' '$M/.vault/status'"
ok "unseal reset discards progress" bash -c "echo reset > '$M/.vault/unseal' && grep -qx 'progress: 0/3' '$M/.vault/unseal'"
ok "three right shares unseal" vfs_unseal "$M"
ok "status: active leader of a one-node cluster" \
	bash -c "grep -qx 'ha_mode: active' '$M/.vault/status' && grep -qx 'leader: n1' '$M/.vault/status'"
ok "peers lists this node as leader and voter" \
	bash -c "head -n1 '$M/.vault/peers' | grep -q '^Node  *Address  *Identity  *State  *Voter  *LastContact  *Lag$' && grep -q '^n1  *127.0.0.1:[0-9]*  *[0-9a-f]\{16\}  *leader  *true  *0ms  *0$' '$M/.vault/peers'"

ok "mkdir -p makes nested directories" mkdir -p "$M/secret/dbcreds"
ok "echo > writes a secret" bash -c "echo s3cr3t-value > '$M/secret/dbcreds/admin'"
ok "cat reads it back" test "$(cat "$M/secret/dbcreds/admin")" = "s3cr3t-value"
ok "ls -l shows a root-owned 0644 file of 13 bytes" \
	bash -c "ls -l '$M/secret/dbcreds' | grep -q '^-rw-r--r-- 1 root root 13 .* admin$'"
ok "cp copies a secret" cp "$M/secret/dbcreds/admin" "$M/secret/dbcreds/backup"
ok "mv renames a secret" mv "$M/secret/dbcreds/backup" "$M/secret/moved"
ok "the moved secret keeps its value" test "$(cat "$M/secret/moved")" = "s3cr3t-value"
ok "chmod 0600 is kept" bash -c "chmod 0600 '$M/secret/moved' && stat -c %a '$M/secret/moved' | grep -qx 600"
ok "chown is kept" bash -c "chown 1234:5678 '$M/secret/moved' && stat -c %u:%g '$M/secret/moved' | grep -qx 1234:5678"
ok "rmdir of a non-empty directory fails (ENOTEMPTY)" fails_with "not empty" rmdir "$M/secret/dbcreds"
ok "rm removes a secret" bash -c "rm '$M/secret/moved' && ! test -e '$M/secret/moved'"
ok "rmdir removes an empty directory" bash -c "mkdir '$M/empty' && rmdir '$M/empty' && ! test -e '$M/empty'"

ok "seal succeeds" bash -c "echo 1 > '$M/.vault/seal'"
ok "a sealed node refuses secrets (ENOKEY)" fails_with "Required key not available" cat "$M/secret/dbcreds/admin"
ok "status still reads while sealed" grep -qx 'sealed: true' "$M/.vault/status"
ok "unseal again" vfs_unseal "$M"
ok "data intact after seal/unseal" test "$(cat "$M/secret/dbcreds/admin")" = "s3cr3t-value"

vfs_stop n1 TERM
vfs_start n1
ok "the mount recovers after a daemon restart and shows it sealed" \
	vfs_wait_until 10 grep -qx 'sealed: true' "$M/.vault/status"
ok "unseal after restart" vfs_unseal "$M"
ok "data intact after restart" test "$(cat "$M/secret/dbcreds/admin")" = "s3cr3t-value"

ok "a write acknowledged just before SIGKILL" bash -c "echo after-crash > '$M/secret/crash'"
vfs_stop n1 KILL
vfs_start n1
ok "unseal after SIGKILL" vfs_wait_until 10 vfs_unseal "$M"
ok "the acknowledged write survived SIGKILL" test "$(cat "$M/secret/crash")" = "after-crash"

vfs_stop n1 TERM
ok "at rest: no secret value or name in plaintext in the data directory" \
	bash -c "! grep -r -a -l -e s3cr3t-value -e dbcreds -e after-crash '$(vfs_data n1)'"
vfs_start n1
vfs_wait_until 10 grep -qx 'sealed: true' "$M/.vault/status"
vfs_done
