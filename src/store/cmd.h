/* Commands: the state machine's input, carried in Raft log entries.
 *
 * Every command names its proposer (client_id) and that proposer's sequence
 * number (seq), so that the state machine applies a retried command only
 * once even when a client's commands reach the log out of seq order (a
 * pipelining client retries, after a leader change, only the commands it
 * got no answer for). ack_below is the client's promise that it has the
 * answers of all its seqs < ack_below and will never retry them, which lets
 * the state machine forget those answers (Raft dissertation §6.3; the rule
 * is in store.h). Time is chosen by the proposer (now_ns) so that applying
 * is deterministic on every node. */
#ifndef VAULTFS_STORE_CMD_H
#define VAULTFS_STORE_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Version 2 added ack_below, version 3 SET_VALUE's flags and SETATTR's
 * atime_ns (a version 2 SETATTR decodes with atime_ns 0 and VFS_SET_ATIME
 * clear, see CMD_SETATTR_REFUSED). Commands are
 * written in the current version; the one before is still read (entries
 * already in a log), any other is refused, never guessed at. */
#define CMD_VERSION 3u
#define CMD_VERSION_PREV 2u

enum cmd_type {
	CMD_CREATE = 1, /* parent, name, mode, uid, gid: new empty regular file */
	CMD_MKDIR,      /* parent, name, mode, uid, gid */
	CMD_SET_VALUE,  /* ino, value, flags (CMD_SET_VALUE_*): replace the whole value */
	CMD_SETATTR,    /* ino, valid (VFS_SET_*), mode, uid, gid, size, mtime_ns,
	                   atime_ns */
	CMD_UNLINK,     /* parent, name */
	CMD_RMDIR,      /* parent, name */
	CMD_RENAME,     /* parent, name, new_parent, new_name, flags (VFS_RENAME_*) */
	CMD_CREATE_VALUE, /* parent, name, mode, uid, gid, value, flags: CREATE then
	                     SET_VALUE in one entry (features >= CMD_FEATURES_CREATE_VALUE) */
	CMD_FEATURES,   /* features: raises the cluster's feature level (store.h) */
	CMD_TYPE_MAX_
};

/* Feature levels. A command type a node of an earlier release cannot
 * decode stops that node (fsm.c), so such a type is proposed only once the
 * cluster's level, raised by CMD_FEATURES when every member runs a release
 * that knows it (node_features.c), says every member can apply it. */
#define CMD_FEATURES_BASE 1u         /* what every release applies */
#define CMD_FEATURES_CREATE_VALUE 2u /* CMD_CREATE_VALUE, CMD_FEATURES */
#define CMD_FEATURES_CURRENT CMD_FEATURES_CREATE_VALUE

/* SET_VALUE: the writer is not root, so, as on Linux for a process without
 * CAP_FSETID, the write drops set-user-ID, and set-group-ID if the file is
 * group-executable. */
#define CMD_SET_VALUE_UNPRIVILEGED 1u

/* SETATTR valid bit that no store version knows: a version 2 SETATTR that
 * carried VFS_SET_ATIME (unknown then, so refused with -EINVAL) decodes with
 * this bit instead, so that replaying it gives the same answer. */
#define CMD_SETATTR_REFUSED 0x80000000u

/* Decoded pointers (name, new_name, value) point into the encoded input. */
struct cmd {
	uint8_t type;
	uint64_t client_id;
	uint64_t seq;
	uint64_t ack_below; /* all seqs < ack_below are answered: never retried */
	int64_t now_ns;
	uint64_t ino;        /* target for SET_VALUE/SETATTR; parent otherwise */
	uint64_t new_parent; /* RENAME */
	const uint8_t *name;
	size_t name_len;
	const uint8_t *new_name;
	size_t new_name_len;
	const uint8_t *value;
	size_t value_len;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint32_t valid;
	uint64_t size;
	int64_t mtime_ns;
	int64_t atime_ns;    /* SETATTR, version 3 */
	uint32_t flags;      /* RENAME: VFS_RENAME_*; SET_VALUE, CREATE_VALUE:
	                        CMD_SET_VALUE_* */
	uint32_t features;   /* FEATURES */
};

/* Appends the encoding of CMD to OUT. Returns 0, -EINVAL (unknown type, name
 * longer than VFS_MAX_NAME, value longer than VFS_MAX_VALUE) or -ENOMEM. */
int cmd_encode(const struct cmd *cmd, struct buf *out);

/* Decodes DATA; RET's pointers point into DATA. Returns 0 or -EBADMSG for
 * anything malformed (wrong version, unknown type, short, trailing bytes,
 * oversized name or value). */
int cmd_decode(const uint8_t *data, size_t len, struct cmd *ret);

#endif
