/* vaultfs local API: the protocol between mount.vaultfs and vaultfsd over
 * the daemon's Unix socket.
 *
 * Framing: every message is a u32 little-endian body length followed by the
 * body. A body longer than VFS_MAX_FRAME is a protocol error and the
 * connection is dropped. All integers are little-endian. "name" and "bytes"
 * fields are a u32 length followed by that many bytes.
 *
 * Request body:  u32 id, u16 op, u16 flags (VFS_REQ_*), u32 uid, u32 gid,
 *                [u32 pid, u8[VFS_COMM_LEN] comm: only with VFS_REQ_CALLER], payload
 * Response body: u32 id, i32 status (0 or -errno), u64 state_index,
 *                u64 cache_until_ns, payload (only if status 0)
 *
 * state_index is the daemon's applied Raft index when it answered, and
 * cache_until_ns (CLOCK_MONOTONIC; 0: never) how long the attributes and
 * names in the answer stay true without a notice (struct vfs_resp_meta).
 * A client that caches them must WATCH: the daemon then sends it a notice
 * for every change it applies and acknowledges a write only once every
 * watcher has acknowledged the notices up to that write's index.
 *
 * The first request on a connection must be VFS_OP_HELLO; the server answers
 * it itself. A version-9 daemon also accepts clients of versions 4 to 8
 * and answers them as those versions did: version-4 requests never
 * carry VFS_REQ_CALLER, and an op newer than the client's version
 * (vfs_op_version) is a protocol error.
 * Requests are pipelined: a client may send many before reading, and
 * responses may come back in any order, matched by id.
 */
#ifndef VAULTFS_PROTO_H
#define VAULTFS_PROTO_H

#include <stdint.h>

#include "lib/buf.h"

#define VFS_PROTO_VERSION 9u /* 3: atime in attr and SETATTR; 4: control streams;
				 5: caller pid and command (VFS_REQ_CALLER), HELLO flags;
				 6: READDIRPLUS; 7: WRITABLE; 8: CREATE_VALUE;
				 9: LOOKUP_WRITABLE */
#define VFS_PROTO_MIN_VERSION 4u /* the oldest client version a daemon accepts */
#define VFS_CTL_STREAM_IDLE_S 600u
#define VFS_DEFAULT_SOCKET "/run/vaultfs/vaultfsd.sock"

#define VFS_MAX_VALUE (1024u * 1024u) /* largest secret value, bytes */
#define VFS_MAX_NAME 255u             /* largest file name, bytes */
#define VFS_MAX_FRAME (VFS_MAX_VALUE + 4096u)
#define VFS_REQ_HEADER_LEN 16u /* without the VFS_REQ_CALLER extension */
#define VFS_COMM_LEN 16u       /* TASK_COMM_LEN: a command name and its NUL */
#define VFS_REQ_CALLER_LEN (4u + VFS_COMM_LEN)
#define VFS_RESP_HEADER_LEN 24u
/* A status on the wire is 0 or -1 to -VFS_MAX_ERRNO; anything else is not
 * an errno and would confuse the FUSE side. */
#define VFS_MAX_ERRNO 4095
/* A READDIRPLUS page's payload stops growing past this many bytes: well
 * under VFS_MAX_FRAME whatever the names, and small enough that a large
 * directory comes in several frames rather than one that holds the
 * daemon's loop for long. */
#define VFS_READDIRPLUS_PAGE (256u * 1024u)

#define VFS_ROOT_INO 1u

/* Payloads; "->" is the response payload when status is 0. */
enum vfs_op {
	VFS_OP_HELLO = 1,  /* u32 version -> u32 version (the client's own), then
			      u32 flags (VFS_HELLO_*) to a client of version 5 or later */
	VFS_OP_LOOKUP,     /* u64 parent, name -> attr */
	VFS_OP_GETATTR,    /* u64 ino -> attr */
	VFS_OP_READDIR,    /* u64 ino -> u32 n, n x (u64 ino, u32 mode, name) */
	VFS_OP_READ,       /* u64 ino -> the whole value: raw bytes, no length prefix */
	VFS_OP_WRITE,      /* u64 ino, bytes -> attr; replaces the whole value atomically */
	VFS_OP_CREATE,     /* u64 parent, name, u32 mode -> attr (regular file, empty) */
	VFS_OP_MKDIR,      /* u64 parent, name, u32 mode -> attr */
	VFS_OP_UNLINK,     /* u64 parent, name -> (nothing) */
	VFS_OP_RMDIR,      /* u64 parent, name -> (nothing) */
	VFS_OP_RENAME,     /* u64 parent, name, u64 newparent, newname, u32 flags -> (nothing) */
	VFS_OP_SETATTR,    /* u64 ino, u32 valid (VFS_SET_*), u32 mode, u32 uid, u32 gid,
	                      u64 size, i64 mtime_ns, i64 atime_ns -> attr */
	VFS_OP_STATFS,     /* -> u64 files, u64 bytes */
	VFS_OP_CTL_READ,   /* name -> raw bytes: contents of the control file .vault/NAME */
	VFS_OP_CTL_WRITE,  /* name, bytes -> (nothing): runs the command of .vault/NAME */
	VFS_OP_WATCH,      /* -> u64 index: from now on this connection carries only
	                      notices (below) and WATCH_ACKs */
	VFS_OP_WATCH_ACK,  /* u64 index: every notice up to index is acted on (no response) */
	/* Control streams: control files too large for one frame (a backup),
	 * read and written piecewise through a handle the daemon keeps until
	 * CTL_CLOSE (or until it has been idle for VFS_CTL_STREAM_IDLE_S). */
	VFS_OP_CTL_OPEN,   /* name, u8 write -> u64 handle, u64 size (0 for a write) */
	VFS_OP_CTL_PREAD,  /* u64 handle, u64 offset, u32 size -> raw bytes (short at the end) */
	VFS_OP_CTL_PWRITE, /* u64 handle, u64 offset, bytes -> (nothing) */
	VFS_OP_CTL_FINISH, /* u64 handle -> (nothing): runs what was written; its status */
	VFS_OP_CTL_CLOSE,  /* u64 handle -> (nothing): forgets the stream */
	/* Version 6. A directory's entries with their attributes, one page at
	 * a time: those whose ino is above AFTER (0: from the start), in ino
	 * order, as many as fit in VFS_READDIRPLUS_PAGE bytes of payload (at
	 * least one). NEXT is the AFTER of the next page, 0 once the listing
	 * is complete. An entry that exists throughout a listing is in it
	 * exactly once. The grant in the meta covers every entry's name and
	 * attributes, as a LOOKUP's does. */
	VFS_OP_READDIRPLUS, /* u64 ino, u64 after -> u64 next, u32 n, n x (attr, name) */
	/* Version 7. Whether a write through this node could commit now, as
	 * far as the node can tell without writing: status 0, or the errno
	 * the write would most likely end with (ENOSPC, EIO: its storage is
	 * down; EAGAIN: no leader, or a leader out of touch with a majority
	 * for an election timeout; ENOKEY: sealed). The mount asks before it
	 * answers an open() that creates a secret at its first commit. */
	VFS_OP_WRITABLE,    /* -> (nothing) */
	/* Version 8. CREATE and then WRITE of its first value, as the caller,
	 * committed as one: the new secret is never seen empty. ENOSYS while
	 * the cluster's feature level (cmd.h) is below what that needs: then
	 * CREATE and WRITE it is. */
	VFS_OP_CREATE_VALUE, /* u64 parent, name, u32 mode, bytes -> attr */
	/* Version 9. A LOOKUP that answers an absent name with status 0 and
	 * what WRITABLE would have answered at the same moment: the kernel
	 * looks a name up just before it creates it, and this spares the
	 * create its own round trip. FOUND 1: ATTR follows (a LOOKUP's
	 * answer, with its grant); 0: WRITABLE's status (0 or -errno). */
	VFS_OP_LOOKUP_WRITABLE, /* u64 parent, name -> u8 found, found ? attr : i32 writable */
	VFS_OP_MAX_
};

/* A notice on a WATCH connection is a response frame with the WATCH
 * request's id, status 0, meta.state_index = the index of the entries it
 * covers, and the payload: u8 flags (VFS_NOTICE_*), u32 n, n x u64 ino:
 * the inodes whose attributes (or value) changed; with VFS_NOTICE_ATTRS
 * (to a watcher of version 9 or later) then n x (u8 known, attr if known):
 * each inode's attributes in the notice's state, in the same order (an
 * inode listed twice: the later one holds; known 0: it is gone). */
#define VFS_NOTICE_NAMES 0x1u /* names were removed or moved: cached names are stale */
#define VFS_NOTICE_ALL 0x2u   /* anything may have changed (no inodes listed) */
#define VFS_NOTICE_ATTRS 0x4u /* the attributes follow the inodes */
#define VFS_NOTICE_MAX_INOS 4096u

/* SETATTR valid bits. */
#define VFS_SET_MODE 0x1u
#define VFS_SET_UID 0x2u
#define VFS_SET_GID 0x4u
#define VFS_SET_SIZE 0x8u
#define VFS_SET_MTIME 0x10u
#define VFS_SET_ATIME 0x20u

/* RENAME flags: the values of renameat2(2). */
#define VFS_RENAME_NOREPLACE 0x1u
#define VFS_RENAME_EXCHANGE 0x2u

#define VFS_ATTR_LEN 56u /* a struct vfs_attr on the wire */

/* Attributes of one node in the tree (VFS_ATTR_LEN bytes on the wire, in this order).
 * atime is what was last set (creation, utimensat); reads never change it,
 * as with the noatime mount option. */
struct vfs_attr {
	uint64_t ino;
	uint32_t mode; /* includes S_IFREG / S_IFDIR */
	uint32_t uid;
	uint32_t gid;
	uint32_t nlink;
	uint64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
	int64_t atime_ns;
};

/* OP's name in capitals ("LOOKUP"), or "?" (logs and metrics). */
const char *vfs_op_name(uint16_t op);
/* The protocol version that introduced OP (a client of an older version
 * must not send it). */
uint32_t vfs_op_version(uint16_t op);
void vfs_attr_put(struct buf *b, const struct vfs_attr *a);
/* Reads one attr; errors are left in c->err. */
void vfs_attr_get(struct cursor *c, struct vfs_attr *ret);

/* HELLO answer flags. */
#define VFS_HELLO_AUDIT 0x1u /* the daemon keeps an audit log: send the caller's command */

/* Request flags; unknown bits are a protocol error. */
#define VFS_REQ_LOCAL_READ 0x1u /* serve a read from local state: fast, possibly stale */
#define VFS_REQ_CALLER 0x2u     /* the header carries the caller's pid and command */
#define VFS_REQ_FLAGS_KNOWN (VFS_REQ_LOCAL_READ | VFS_REQ_CALLER)

/* Request and response headers. */
struct vfs_req_header {
	uint32_t id;
	uint16_t op;
	uint16_t flags;
	uint32_t uid;
	uint32_t gid;
	/* With VFS_REQ_CALLER: the caller's pid as FUSE reports it (0:
	 * unknown, e.g. a kernel-initiated request) and its command name,
	 * NUL-padded, the last byte always NUL (all NULs: not sent, the
	 * daemon does not audit). */
	uint32_t pid;
	char comm[VFS_COMM_LEN];
};

/* What every response says besides its status (see the top of this file). */
struct vfs_resp_meta {
	uint64_t state_index;
	uint64_t cache_until_ns;
};

/* Appends a complete request frame (length prefix, header, payload). */
void vfs_req_frame(struct buf *b, const struct vfs_req_header *h,
		   const void *payload, uint32_t len);
/* Appends a complete response frame. */
void vfs_resp_frame(struct buf *b, uint32_t id, int32_t status,
		    const struct vfs_resp_meta *meta, const void *payload, uint32_t len);
/* Parses a request body (without its length prefix). Payload points into
 * body. Returns 0 or -EBADMSG (short, unknown flag bits, unknown op, a
 * command name without its NUL). */
int vfs_req_parse(const uint8_t *body, uint32_t len, struct vfs_req_header *ret,
		  const uint8_t **ret_payload, uint32_t *ret_payload_len);
/* Parses a response body. Returns 0 or -EBADMSG. */
int vfs_resp_parse(const uint8_t *body, uint32_t len, uint32_t *ret_id,
		   int32_t *ret_status, struct vfs_resp_meta *ret_meta,
		   const uint8_t **ret_payload, uint32_t *ret_payload_len);

#endif
