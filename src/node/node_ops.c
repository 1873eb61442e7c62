/* Tree operations from the local API: reads served from the local store,
 * writes proposed through Raft and answered once applied. */
#include "node/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/log.h"
#include "raft/fsm.h"
#include "vaultfs/proto.h"

struct write_req {
	struct raft_apply apply; /* first: libraft hands it back */
	struct node *node;
	struct api_request *req;
};

/* Checks that the node may serve the tree; 0 or the errno to answer. */
static int serve_check(const struct node *n)
{
	switch (n->phase) {
	case NODE_ACTIVE:
		return 0;
	case NODE_STARTING:
		return -EAGAIN; /* unsealed, no leader yet */
	case NODE_SEALED:
	case NODE_CLOSING:
		break;
	}
	return -ENOKEY;
}

/* While sealed the mount point itself must still stat, or the mount and
 * .vault/ would be unusable; it shows as an empty root-owned directory. */
static bool sealed_root_getattr(struct node *n, struct api_request *req)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	uint64_t ino = cursor_u64(&c);
	if (req->op != VFS_OP_GETATTR || cursor_done(&c) != 0 || ino != VFS_ROOT_INO)
		return false;
	struct vfs_attr a = { .ino = VFS_ROOT_INO, .mode = S_IFDIR | 0755, .nlink = 2,
			      .mtime_ns = n->started_ns, .ctime_ns = n->started_ns };
	struct buf b;
	buf_init(&b);
	vfs_attr_put(&b, &a);
	api_reply(req, b.err, b.data, b.len);
	buf_free(&b);
	return true;
}

/* Reads a name field: 1..VFS_MAX_NAME bytes. */
static const uint8_t *get_name(struct cursor *c, size_t *ret_len, int *ret_err)
{
	const uint8_t *name = cursor_blob(c, VFS_MAX_FRAME, ret_len);
	if (c->err != 0)
		*ret_err = -EBADMSG;
	else if (*ret_len > VFS_MAX_NAME)
		*ret_err = -ENAMETOOLONG;
	else if (*ret_len == 0 || memchr(name, '/', *ret_len) || memchr(name, '\0', *ret_len))
		*ret_err = -EINVAL;
	return name;
}

static void reply_attr(struct api_request *req, int rv, const struct vfs_attr *a)
{
	if (rv != 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	struct buf b;
	buf_init(&b);
	vfs_attr_put(&b, a);
	api_reply(req, b.err, b.data, b.len);
	buf_free(&b);
}

static void reply_buf(struct api_request *req, int rv, struct buf *b)
{
	if (rv == 0 && b->err != 0)
		rv = b->err;
	api_reply(req, rv, rv == 0 ? b->data : NULL, rv == 0 ? b->len : 0);
	buf_free(b);
}

void node_ops_read(struct node *n, struct api_request *req)
{
	int rv = serve_check(n);
	if (rv != 0) {
		if (rv != -ENOKEY || !sealed_root_getattr(n, req))
			api_reply(req, rv, NULL, 0);
		return;
	}
	struct store *s = n->session->store;
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	struct vfs_attr a;
	struct buf b;
	buf_init(&b);
	switch (req->op) {
	case VFS_OP_LOOKUP: {
		uint64_t parent = cursor_u64(&c);
		size_t len = 0;
		int err = 0;
		const uint8_t *name = get_name(&c, &len, &err);
		rv = err != 0 ? err : cursor_done(&c);
		if (rv == 0)
			rv = store_lookup(s, parent, name, len, &a);
		reply_attr(req, rv, &a);
		return;
	}
	case VFS_OP_GETATTR: {
		uint64_t ino = cursor_u64(&c);
		rv = cursor_done(&c);
		if (rv == 0)
			rv = store_getattr(s, ino, &a);
		reply_attr(req, rv, &a);
		return;
	}
	case VFS_OP_READDIR:
	case VFS_OP_READ: {
		uint64_t ino = cursor_u64(&c);
		rv = cursor_done(&c);
		if (rv == 0)
			rv = req->op == VFS_OP_READDIR ? store_readdir(s, ino, &b) : store_read(s, ino, &b);
		reply_buf(req, rv, &b);
		return;
	}
	case VFS_OP_STATFS: {
		uint64_t files = 0, bytes = 0;
		store_stats(s, &files, &bytes);
		buf_put_u64(&b, files);
		buf_put_u64(&b, bytes);
		reply_buf(req, 0, &b);
		return;
	}
	default:
		api_reply(req, -ENOSYS, NULL, 0);
		return;
	}
}

bool node_op_is_write(uint16_t op)
{
	switch (op) {
	case VFS_OP_WRITE:
	case VFS_OP_CREATE:
	case VFS_OP_MKDIR:
	case VFS_OP_UNLINK:
	case VFS_OP_RMDIR:
	case VFS_OP_RENAME:
	case VFS_OP_SETATTR:
		return true;
	default:
		return false;
	}
}


/* Turns a write request's payload into a command; 0 or -errno. */
static int decode_write(const struct api_request *req, struct cmd *cmd)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	int err = 0;
	cmd->ino = cursor_u64(&c);
	switch (req->op) {
	case VFS_OP_WRITE:
		cmd->type = CMD_SET_VALUE;
		cmd->value = cursor_blob(&c, VFS_MAX_FRAME, &cmd->value_len);
		if (c.err == 0 && cmd->value_len > VFS_MAX_VALUE)
			err = -EFBIG;
		break;
	case VFS_OP_CREATE:
	case VFS_OP_MKDIR:
		cmd->type = req->op == VFS_OP_CREATE ? CMD_CREATE : CMD_MKDIR;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		cmd->mode = cursor_u32(&c) & 07777;
		cmd->uid = req->uid;
		cmd->gid = req->gid;
		break;
	case VFS_OP_UNLINK:
	case VFS_OP_RMDIR:
		cmd->type = req->op == VFS_OP_UNLINK ? CMD_UNLINK : CMD_RMDIR;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		break;
	case VFS_OP_RENAME:
		cmd->type = CMD_RENAME;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		cmd->new_parent = cursor_u64(&c);
		if (err == 0)
			cmd->new_name = get_name(&c, &cmd->new_name_len, &err);
		cmd->flags = cursor_u32(&c);
		if (cmd->flags & ~(VFS_RENAME_NOREPLACE | VFS_RENAME_EXCHANGE))
			err = err ? err : -EINVAL;
		break;
	case VFS_OP_SETATTR:
		cmd->type = CMD_SETATTR;
		cmd->valid = cursor_u32(&c);
		cmd->mode = cursor_u32(&c) & 07777;
		cmd->uid = cursor_u32(&c);
		cmd->gid = cursor_u32(&c);
		cmd->size = cursor_u64(&c);
		cmd->mtime_ns = cursor_i64(&c);
		if (c.err == 0 && (cmd->valid & VFS_SET_SIZE) && cmd->size > VFS_MAX_VALUE)
			err = -EFBIG;
		break;
	default:
		return -ENOSYS;
	}
	if (err != 0)
		return err;
	return cursor_done(&c);
}

static bool op_replies_attr(uint16_t op)
{
	return op == VFS_OP_WRITE || op == VFS_OP_CREATE || op == VFS_OP_MKDIR ||
	       op == VFS_OP_SETATTR;
}

static int raft_error_to_errno(int status)
{
	switch (status) {
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED:
		return -EAGAIN;
	case RAFT_NOSPACE:
		return -ENOSPC;
	case RAFT_TOOBIG:
		return -EFBIG;
	default:
		return -EIO;
	}
}

static void on_applied(struct raft_apply *apply, int status, void *result)
{
	struct write_req *w = (struct write_req *)apply;
	struct node *n = w->node;
	struct api_request *req = w->req;
	free(w);
	if (status != 0) {
		log_warn("node %s: write not committed: %s", n->node_id, raft_strerror(status));
		api_reply(req, raft_error_to_errno(status), NULL, 0);
		return;
	}
	int64_t r = fsm_result_unpack(result);
	if (r < 0 || !op_replies_attr(req->op) || n->session == NULL) {
		api_reply(req, r < 0 ? (int)r : 0, NULL, 0);
		return;
	}
	struct vfs_attr a;
	int rv = store_getattr(n->session->store, (uint64_t)r, &a);
	reply_attr(req, rv, &a);
}

void node_ops_write(struct node *n, struct api_request *req)
{
	int rv = serve_check(n);
	if (rv == 0 && raft_state(&n->session->raft) != RAFT_LEADER)
		rv = -EAGAIN;
	struct cmd cmd;
	memset(&cmd, 0, sizeof(cmd));
	if (rv == 0)
		rv = decode_write(req, &cmd);
	if (rv != 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	cmd.client_id = n->client_id;
	cmd.seq = ++n->seq;
	cmd.now_ns = node_now_ns();
	struct write_req *w = calloc(1, sizeof(*w));
	struct raft_buffer entry = { 0 };
	rv = w ? fsm_encode_entry(n->barrier, &cmd, &entry) : -ENOMEM;
	if (rv == 0) {
		w->node = n;
		w->req = req;
		int rrv = raft_apply(&n->session->raft, &w->apply, &entry, 1, on_applied);
		if (rrv != 0) {
			raft_free(entry.base);
			rv = raft_error_to_errno(rrv);
		}
	}
	if (rv != 0) {
		free(w);
		api_reply(req, rv, NULL, 0);
	}
}
