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

/* Exactly-once limits; part of the replicated behaviour, so every replica
 * must be built with the same values. */
#define STORE_MAX_RESULTS 100000u                         /* kept results per client */
#define STORE_CLIENT_EXPIRY_NS (24LL * 3600 * 1000000000) /* idle command time */
#define STORE_EXPIRY_EVERY 1000u                          /* store_apply calls per sweep */

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
/* Appends one page of the VFS_OP_READDIRPLUS response payload (u64 next,
 * u32 n, then entries with their attributes): the children above AFTER. */
int store_readdirplus(struct store *s, uint64_t ino, uint64_t after, struct buf *out);
/* Appends the plaintext value of regular file INO. */
int store_read(struct store *s, uint64_t ino, struct buf *out);
/* Appends INO's full path from the root ("/" for the root, "/db/password"),
 * names decrypted: plaintext, for a keyed hash only (the audit log). */
int store_path(struct store *s, uint64_t ino, struct buf *out);
/* Totals for statfs. */
void store_stats(struct store *s, uint64_t *ret_files, uint64_t *ret_bytes);

/* Applies one command. Deterministic: the same sequence of commands on the
 * same initial state gives the same tree and the same inode numbers.
 *
 * Exactly once (Raft dissertation §6.3). Per client the store keeps a floor
 * and the result of every applied command with seq >= floor. Applying CMD:
 *  1. floor = max(floor, cmd->ack_below); results below it are forgotten;
 *  2. seq < floor: returns -EALREADY and applies nothing (the client
 *     already has that answer, or it was forgotten by rule 4);
 *  3. a result for (client_id, seq) is kept: returns it, applies nothing;
 *  4. otherwise applies and keeps the result, failures included. A client
 *     with more than STORE_MAX_RESULTS kept results loses its lowest ones
 *     and its floor rises past them: a retry that old gets -EALREADY.
 * So seqs may arrive in any order; each is applied at most once.
 * Every STORE_EXPIRY_EVERY-th call (duplicates count too), clients whose
 * newest now_ns is more than STORE_CLIENT_EXPIRY_NS older than the current
 * command's are forgotten entirely. Both the clock (command time) and the
 * call counter are part of the state, so every replica forgets at the same
 * point. A client that retries after being forgotten is applied again.
 * Returns the result as the proposer sees it: >= 0 on success (the inode
 * created or changed, 0 if none), or -errno (-EEXIST, -ENOENT, -ENOTEMPTY,
 * -ENOTDIR, -EISDIR, -EINVAL, -EFBIG, -EALREADY...). A failing command
 * leaves the tree as it was (only its result is kept).
 * A storage failure (SQLite error, undecryptable row) sets *RET_FATAL = 1:
 * the state can no longer be trusted and the caller must stop the node. */
int64_t store_apply(struct store *s, const struct cmd *cmd, int *ret_fatal);

/* The cluster's feature level (CMD_FEATURES_* in cmd.h): CMD_FEATURES_BASE
 * until a CMD_FEATURES raised it; a snapshot or restore carries it. */
uint32_t store_features(struct store *s);

/* What the last store_apply changed, for caches of the tree (a command
 * that failed may list inodes it did not change in the end). */
#define STORE_MAX_CHANGES 8u
struct store_changes {
	unsigned n;
	uint64_t ino[STORE_MAX_CHANGES]; /* inodes whose attributes or value changed */
	bool names;    /* a name was removed or moved */
	bool overflow; /* more inodes than STORE_MAX_CHANGES: assume everything */
};
const struct store_changes *store_last_changes(const struct store *s);

/* Serializes the whole state (ciphertexts as stored, counters, clients and
 * kept results) into OUT; equal states give equal bytes. Returns 0 or -errno. */
int store_dump(struct store *s, struct buf *out);
/* The same bytes, handed to SINK a piece at a time (at most a few hundred
 * KiB held at once): for a copy of any size. SINK returns 0 or -errno,
 * which stops the dump and is returned. */
typedef int (*store_dump_sink)(void *arg, const uint8_t *p, size_t len);
int store_dump_stream(struct store *s, store_dump_sink sink, void *arg);
/* A copy of the state into the new file PATH, made in steps (SQLite's
 * online backup) so that no step holds the caller for long: every change
 * the store makes before the copy is complete goes into it too, so the
 * finished copy is the state as of its last step. Begin and step run on
 * the store's thread. Step copies at most PAGES database pages and returns
 * 1 if more remain, 0 once the copy is complete, or -errno (-ENOSPC...).
 * An in-memory store restarts the copy at each change, so after a few
 * restarts a step copies all the rest at once (about 2 ms per MiB).
 * End (also to give up) must come before store_close. */
struct store_copy;
int store_copy_begin(struct store *s, const char *path, struct store_copy **ret);
int store_copy_step(struct store_copy *c, int pages);
void store_copy_end(struct store_copy *c); /* NULL is fine */
/* Opens a finished copy, read-only, on any thread: for store_dump_stream
 * (no barrier: nothing it does decrypts). 0 or -errno. */
int store_open_copy(struct store **ret, const char *path, char *errmsg, size_t errlen);

/* The whole state, copied at once (sqlite3_serialize: a memcpy of its
 * pages, a few ms for tens of thousands of secrets), to be dumped on
 * another thread: what a snapshot needs, the state at one index, without
 * holding the store's thread for the dump. */
struct store_image {
	uint8_t *data; /* sqlite3_malloc'd */
	size_t len;
};
int store_image(struct store *s, struct store_image *ret); /* 0 or -ENOMEM */
void store_image_free(struct store_image *img);            /* an empty one is fine */
/* Opens IMG (which it takes: IMG is left empty) read-only as a store of
 * its own, for store_dump on any one thread; no barrier. 0 or -errno. */
int store_open_image(struct store **ret, struct store_image *img);

/* Replaces the whole state with a dump of this or the previous version.
 * Returns 0 or -EBADMSG/-errno (a dump of another version, a malformed tree, a result below its client's
 * floor, more than STORE_MAX_RESULTS for a client...); on error the
 * previous state is kept. */
int store_restore(struct store *s, const uint8_t *data, size_t len);
/* store_restore of a backup into a running cluster: the feature level
 * stays the current one if the dump's is lower, since the log may already
 * hold commands of the current level (cmd.h). */
int store_restore_backup(struct store *s, const uint8_t *data, size_t len);

#endif
