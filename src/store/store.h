/* The state machine's storage: the secrets tree in an in-memory SQLite
 * database, owned by the loop thread.
 *
 * Nodes are inodes: root is VFS_ROOT_INO; new inodes are numbered from a
 * counter kept in the database, so every node assigns the same numbers.
 * Names are stored encrypted (barrier, AAD = parent inode) and found by a
 * keyed hash of (parent inode, name); values are stored encrypted with
 * AAD = inode number, so a value copied to another inode does not decrypt.
 * The durable copy of this state is the Raft log plus snapshots
 * (store_dump/store_restore), both of which hold only ciphertext. */
#ifndef VAULTFS_STORE_STORE_H
#define VAULTFS_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/barrier.h"
#include "lib/buf.h"
#include "store/cmd.h"
#include "vaultfs/proto.h"

struct store;

/* Opens an empty tree (just the root directory, mode 0755, owned by root)
 * that uses BARRIER (borrowed; must outlive the store) for encryption.
 * Returns 0 or -errno with a message in errmsg. */
int store_open(struct store **ret, struct barrier *barrier, char *errmsg, size_t errlen);
void store_close(struct store *s); /* NULL is fine */
/* The barrier given to store_open (borrowed), for code layered on the store
 * (the FSM glue) that encrypts with the same keys. */
struct barrier *store_barrier(const struct store *s);

/* Reads. All return 0 or -errno: -ENOENT, -ENOTDIR, -EISDIR, -ENOKEY (sealed),
 * -EIO (database or decryption failure: logged, never silently ignored). */
int store_lookup(struct store *s, uint64_t parent, const uint8_t *name, size_t name_len,
		 struct vfs_attr *ret);
int store_getattr(struct store *s, uint64_t ino, struct vfs_attr *ret);
/* Appends the VFS_OP_READDIR response payload (u32 n, then entries). */
int store_readdir(struct store *s, uint64_t ino, struct buf *out);
/* Appends the plaintext value of regular file INO. */
int store_read(struct store *s, uint64_t ino, struct buf *out);
/* Totals for statfs. */
void store_stats(struct store *s, uint64_t *ret_files, uint64_t *ret_bytes);

/* Applies one command. Deterministic: the same sequence of commands on the
 * same initial state gives the same tree and the same inode numbers.
 * A command whose (client_id, seq) is not newer than the last one applied
 * for that client is not applied again; its original result is returned.
 * Returns the result as the proposer sees it: >= 0 on success (the inode
 * created or changed, 0 if none), or -errno (-EEXIST, -ENOENT, -ENOTEMPTY,
 * -ENOTDIR, -EISDIR, -EINVAL, -EFBIG...). A failing command changes nothing.
 * A storage failure (SQLite error, undecryptable row) sets *RET_FATAL = 1:
 * the state can no longer be trusted and the caller must stop the node. */
int64_t store_apply(struct store *s, const struct cmd *cmd, int *ret_fatal);

/* Serializes the whole state (ciphertexts as stored, counters, dedup table)
 * into OUT. Returns 0 or -errno. */
int store_dump(struct store *s, struct buf *out);
/* Replaces the whole state with a dump. Returns 0 or -EBADMSG/-errno; on
 * error the previous state is kept. */
int store_restore(struct store *s, const uint8_t *data, size_t len);

#endif
