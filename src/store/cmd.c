/* Command encoding.
 *
 * Layout (little-endian, via struct buf / struct cursor):
 *   u8 version (CMD_VERSION = 3), u8 type, u64 client_id, u64 seq,
 *   u64 ack_below, i64 now_ns,
 *   then only the fields the type uses:
 *     CREATE, MKDIR  u64 parent, name, u32 mode, u32 uid, u32 gid
 *     SET_VALUE      u64 ino, value, u32 flags (flags: version 3 only)
 *     SETATTR        u64 ino, u32 valid, u32 mode, u32 uid, u32 gid,
 *                    u64 size, i64 mtime_ns, i64 atime_ns (atime: version 3 only)
 *     UNLINK, RMDIR  u64 parent, name
 *     RENAME         u64 parent, name, u64 new_parent, new_name, u32 flags
 *     CREATE_VALUE   u64 parent, name, u32 mode, u32 uid, u32 gid, value,
 *                    u32 flags
 *     FEATURES       u64 0, u32 features
 * where name/value are u32-length-prefixed bytes. Unused fields are not
 * carried, so a decoded command has them zeroed. */
#include "store/cmd.h"

#include <errno.h>
#include <string.h>

#include "vaultfs/proto.h"

static int type_known(uint8_t type)
{
	return type >= CMD_CREATE && type < CMD_TYPE_MAX_;
}

int cmd_encode(const struct cmd *cmd, struct buf *out)
{
	if (!type_known(cmd->type))
		return -EINVAL;
	if (cmd->name_len > VFS_MAX_NAME || cmd->new_name_len > VFS_MAX_NAME ||
	    cmd->value_len > VFS_MAX_VALUE)
		return -EINVAL;

	buf_put_u8(out, (uint8_t)CMD_VERSION);
	buf_put_u8(out, cmd->type);
	buf_put_u64(out, cmd->client_id);
	buf_put_u64(out, cmd->seq);
	buf_put_u64(out, cmd->ack_below);
	buf_put_i64(out, cmd->now_ns);
	buf_put_u64(out, cmd->ino);

	switch ((enum cmd_type)cmd->type) {
	case CMD_CREATE:
	case CMD_MKDIR:
		buf_put_blob(out, cmd->name, cmd->name_len);
		buf_put_u32(out, cmd->mode);
		buf_put_u32(out, cmd->uid);
		buf_put_u32(out, cmd->gid);
		break;
	case CMD_SET_VALUE:
		buf_put_blob(out, cmd->value, cmd->value_len);
		buf_put_u32(out, cmd->flags);
		break;
	case CMD_SETATTR:
		buf_put_u32(out, cmd->valid);
		buf_put_u32(out, cmd->mode);
		buf_put_u32(out, cmd->uid);
		buf_put_u32(out, cmd->gid);
		buf_put_u64(out, cmd->size);
		buf_put_i64(out, cmd->mtime_ns);
		buf_put_i64(out, cmd->atime_ns);
		break;
	case CMD_UNLINK:
	case CMD_RMDIR:
		buf_put_blob(out, cmd->name, cmd->name_len);
		break;
	case CMD_RENAME:
		buf_put_blob(out, cmd->name, cmd->name_len);
		buf_put_u64(out, cmd->new_parent);
		buf_put_blob(out, cmd->new_name, cmd->new_name_len);
		buf_put_u32(out, cmd->flags);
		break;
	case CMD_CREATE_VALUE:
		buf_put_blob(out, cmd->name, cmd->name_len);
		buf_put_u32(out, cmd->mode);
		buf_put_u32(out, cmd->uid);
		buf_put_u32(out, cmd->gid);
		buf_put_blob(out, cmd->value, cmd->value_len);
		buf_put_u32(out, cmd->flags);
		break;
	case CMD_FEATURES:
		buf_put_u32(out, cmd->features);
		break;
	case CMD_TYPE_MAX_:
		return -EINVAL;
	}
	return out->err;
}

int cmd_decode(const uint8_t *data, size_t len, struct cmd *ret)
{
	struct cursor c;
	struct cmd cmd;

	memset(&cmd, 0, sizeof(cmd));
	cursor_init(&c, data, len);
	uint8_t version = cursor_u8(&c);
	if (version != CMD_VERSION && version != CMD_VERSION_PREV)
		return -EBADMSG;
	cmd.type = cursor_u8(&c);
	if (c.err != 0 || !type_known(cmd.type))
		return -EBADMSG;
	cmd.client_id = cursor_u64(&c);
	cmd.seq = cursor_u64(&c);
	cmd.ack_below = cursor_u64(&c);
	cmd.now_ns = cursor_i64(&c);
	cmd.ino = cursor_u64(&c);

	switch ((enum cmd_type)cmd.type) {
	case CMD_CREATE:
	case CMD_MKDIR:
		cmd.name = cursor_blob(&c, VFS_MAX_NAME, &cmd.name_len);
		cmd.mode = cursor_u32(&c);
		cmd.uid = cursor_u32(&c);
		cmd.gid = cursor_u32(&c);
		break;
	case CMD_SET_VALUE:
		cmd.value = cursor_blob(&c, VFS_MAX_VALUE, &cmd.value_len);
		cmd.flags = version >= 3 ? cursor_u32(&c) : 0;
		if ((cmd.flags & ~CMD_SET_VALUE_UNPRIVILEGED) != 0)
			return -EBADMSG;
		break;
	case CMD_SETATTR:
		cmd.valid = cursor_u32(&c);
		cmd.mode = cursor_u32(&c);
		cmd.uid = cursor_u32(&c);
		cmd.gid = cursor_u32(&c);
		cmd.size = cursor_u64(&c);
		cmd.mtime_ns = cursor_i64(&c);
		cmd.atime_ns = version >= 3 ? cursor_i64(&c) : 0;
		/* Version 2's store refused the then unknown VFS_SET_ATIME bit;
		 * replaying such an entry must refuse it again, not set atime. */
		if (version < 3 && (cmd.valid & VFS_SET_ATIME))
			cmd.valid = (cmd.valid & ~VFS_SET_ATIME) | CMD_SETATTR_REFUSED;
		break;
	case CMD_UNLINK:
	case CMD_RMDIR:
		cmd.name = cursor_blob(&c, VFS_MAX_NAME, &cmd.name_len);
		break;
	case CMD_RENAME:
		cmd.name = cursor_blob(&c, VFS_MAX_NAME, &cmd.name_len);
		cmd.new_parent = cursor_u64(&c);
		cmd.new_name = cursor_blob(&c, VFS_MAX_NAME, &cmd.new_name_len);
		cmd.flags = cursor_u32(&c);
		break;
	case CMD_CREATE_VALUE:
		cmd.name = cursor_blob(&c, VFS_MAX_NAME, &cmd.name_len);
		cmd.mode = cursor_u32(&c);
		cmd.uid = cursor_u32(&c);
		cmd.gid = cursor_u32(&c);
		cmd.value = cursor_blob(&c, VFS_MAX_VALUE, &cmd.value_len);
		cmd.flags = cursor_u32(&c);
		if ((cmd.flags & ~CMD_SET_VALUE_UNPRIVILEGED) != 0)
			return -EBADMSG;
		break;
	case CMD_FEATURES:
		cmd.features = cursor_u32(&c);
		if (cmd.features < CMD_FEATURES_BASE)
			return -EBADMSG;
		break;
	case CMD_TYPE_MAX_:
		return -EBADMSG;
	}
	if (cursor_done(&c) != 0)
		return -EBADMSG;
	*ret = cmd;
	return 0;
}
