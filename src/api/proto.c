/* Codecs for the local API framing (see include/vaultfs/proto.h). */
#include "vaultfs/proto.h"

#include <errno.h>
#include <string.h>

void vfs_attr_put(struct buf *b, const struct vfs_attr *a)
{
	buf_put_u64(b, a->ino);
	buf_put_u32(b, a->mode);
	buf_put_u32(b, a->uid);
	buf_put_u32(b, a->gid);
	buf_put_u32(b, a->nlink);
	buf_put_u64(b, a->size);
	buf_put_i64(b, a->mtime_ns);
	buf_put_i64(b, a->ctime_ns);
	buf_put_i64(b, a->atime_ns);
}

void vfs_attr_get(struct cursor *c, struct vfs_attr *ret)
{
	ret->ino = cursor_u64(c);
	ret->mode = cursor_u32(c);
	ret->uid = cursor_u32(c);
	ret->gid = cursor_u32(c);
	ret->nlink = cursor_u32(c);
	ret->size = cursor_u64(c);
	ret->mtime_ns = cursor_i64(c);
	ret->ctime_ns = cursor_i64(c);
	ret->atime_ns = cursor_i64(c);
}

void vfs_req_frame(struct buf *b, const struct vfs_req_header *h,
		   const void *payload, uint32_t len)
{
	uint32_t hlen = VFS_REQ_HEADER_LEN + ((h->flags & VFS_REQ_CALLER) ? VFS_REQ_CALLER_LEN : 0);
	if (len > UINT32_MAX - hlen) {
		b->err = -EOVERFLOW;
		return;
	}
	buf_put_u32(b, hlen + len);
	buf_put_u32(b, h->id);
	buf_put_u16(b, h->op);
	buf_put_u16(b, h->flags);
	buf_put_u32(b, h->uid);
	buf_put_u32(b, h->gid);
	if (h->flags & VFS_REQ_CALLER) {
		buf_put_u32(b, h->pid);
		buf_put_raw(b, h->comm, VFS_COMM_LEN);
	}
	buf_put_raw(b, payload, len);
}

void vfs_resp_frame(struct buf *b, uint32_t id, int32_t status,
		    const struct vfs_resp_meta *meta, const void *payload, uint32_t len)
{
	if (len > UINT32_MAX - VFS_RESP_HEADER_LEN) {
		b->err = -EOVERFLOW;
		return;
	}
	/* The format carries a payload only on success. */
	if (status != 0)
		len = 0;
	buf_put_u32(b, VFS_RESP_HEADER_LEN + len);
	buf_put_u32(b, id);
	buf_put_i32(b, status);
	buf_put_u64(b, meta != NULL ? meta->state_index : 0);
	buf_put_u64(b, meta != NULL ? meta->cache_until_ns : 0);
	buf_put_raw(b, payload, len);
}

int vfs_req_parse(const uint8_t *body, uint32_t len, struct vfs_req_header *ret,
		  const uint8_t **ret_payload, uint32_t *ret_payload_len)
{
	struct cursor c;
	struct vfs_req_header h;

	if (len < VFS_REQ_HEADER_LEN)
		return -EBADMSG;
	cursor_init(&c, body, len);
	h.id = cursor_u32(&c);
	h.op = cursor_u16(&c);
	h.flags = cursor_u16(&c);
	h.uid = cursor_u32(&c);
	h.gid = cursor_u32(&c);
	h.pid = 0;
	memset(h.comm, 0, sizeof(h.comm));
	if (h.flags & VFS_REQ_CALLER) {
		h.pid = cursor_u32(&c);
		const uint8_t *comm = cursor_raw(&c, VFS_COMM_LEN);
		if (comm != NULL)
			memcpy(h.comm, comm, VFS_COMM_LEN);
	}
	/* The command is a C string in its field, as the kernel keeps it. */
	if (c.err != 0 || h.comm[VFS_COMM_LEN - 1] != '\0' || (h.flags & ~VFS_REQ_FLAGS_KNOWN) != 0 || h.op == 0 || h.op >= VFS_OP_MAX_)
		return -EBADMSG;
	*ret = h;
	*ret_payload = c.p;
	*ret_payload_len = (uint32_t)c.left;
	return 0;
}

int vfs_resp_parse(const uint8_t *body, uint32_t len, uint32_t *ret_id,
		   int32_t *ret_status, struct vfs_resp_meta *ret_meta,
		   const uint8_t **ret_payload, uint32_t *ret_payload_len)
{
	struct cursor c;

	if (len < VFS_RESP_HEADER_LEN)
		return -EBADMSG;
	cursor_init(&c, body, len);
	uint32_t id = cursor_u32(&c);
	int32_t status = cursor_i32(&c);
	struct vfs_resp_meta meta;
	meta.state_index = cursor_u64(&c);
	meta.cache_until_ns = cursor_u64(&c);
	if (c.err != 0 || status > 0 || status < -VFS_MAX_ERRNO)
		return -EBADMSG;
	if (status != 0 && c.left != 0)
		return -EBADMSG;
	*ret_id = id;
	*ret_status = status;
	if (ret_meta != NULL)
		*ret_meta = meta;
	*ret_payload = c.p;
	*ret_payload_len = (uint32_t)c.left;
	return 0;
}

const char *vfs_op_name(uint16_t op)
{
	static const char *const names[VFS_OP_MAX_] = {
		[VFS_OP_HELLO] = "HELLO",	[VFS_OP_LOOKUP] = "LOOKUP",
		[VFS_OP_GETATTR] = "GETATTR",	[VFS_OP_READDIR] = "READDIR",
		[VFS_OP_READ] = "READ",		[VFS_OP_WRITE] = "WRITE",
		[VFS_OP_CREATE] = "CREATE",	[VFS_OP_MKDIR] = "MKDIR",
		[VFS_OP_UNLINK] = "UNLINK",	[VFS_OP_RMDIR] = "RMDIR",
		[VFS_OP_RENAME] = "RENAME",	[VFS_OP_SETATTR] = "SETATTR",
		[VFS_OP_STATFS] = "STATFS",	[VFS_OP_CTL_READ] = "CTL_READ",
		[VFS_OP_CTL_WRITE] = "CTL_WRITE", [VFS_OP_WATCH] = "WATCH",
		[VFS_OP_WATCH_ACK] = "WATCH_ACK", [VFS_OP_CTL_OPEN] = "CTL_OPEN",
		[VFS_OP_CTL_PREAD] = "CTL_PREAD", [VFS_OP_CTL_PWRITE] = "CTL_PWRITE",
		[VFS_OP_CTL_FINISH] = "CTL_FINISH", [VFS_OP_CTL_CLOSE] = "CTL_CLOSE",
		[VFS_OP_READDIRPLUS] = "READDIRPLUS",
		[VFS_OP_WRITABLE] = "WRITABLE",
		[VFS_OP_CREATE_VALUE] = "CREATE_VALUE",
		[VFS_OP_LOOKUP_WRITABLE] = "LOOKUP_WRITABLE",
	};
	return op < VFS_OP_MAX_ && names[op] != NULL ? names[op] : "?";
}

uint32_t vfs_op_version(uint16_t op)
{
	/* Ops of versions before VFS_PROTO_MIN_VERSION count as that one:
	 * no older client is served anyway. */
	switch (op) {
	case VFS_OP_READDIRPLUS:
		return 6u;
	case VFS_OP_WRITABLE:
		return 7u;
	case VFS_OP_CREATE_VALUE:
		return 8u;
	case VFS_OP_LOOKUP_WRITABLE:
		return 9u;
	default:
		return VFS_PROTO_MIN_VERSION;
	}
}
