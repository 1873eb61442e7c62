/* cmd_decode: a Raft log entry's command, from the log on disk or a peer.
 * Invariant: the encoding is canonical, so a decoded command re-encodes to
 * exactly the input (if it is in the current version; one of the previous
 * version re-encodes in the current one) and decodes again to the same
 * fields. */
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "store/cmd.h"
#include "vaultfs/proto.h"

static int same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static int same_cmd(const struct cmd *a, const struct cmd *b)
{
	return a->type == b->type && a->client_id == b->client_id && a->seq == b->seq &&
	       a->ack_below == b->ack_below && a->now_ns == b->now_ns && a->ino == b->ino &&
	       a->new_parent == b->new_parent && a->mode == b->mode && a->uid == b->uid &&
	       a->gid == b->gid && a->valid == b->valid && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->atime_ns == b->atime_ns &&
	       a->flags == b->flags &&
	       same_bytes(a->name, a->name_len, b->name, b->name_len) &&
	       same_bytes(a->new_name, a->new_name_len, b->new_name, b->new_name_len) &&
	       same_bytes(a->value, a->value_len, b->value, b->value_len);
}

static void seed(const char *dir, const char *name, const struct cmd *c)
{
	struct buf b;
	buf_init(&b);
	FUZZ_CHECK(cmd_encode(c, &b) == 0);
	fuzz_write_seed(dir, name, b.data, b.len);
	buf_free(&b);
}

static void write_seeds(const char *dir)
{
	const struct cmd base = { .client_id = 0x1122334455667788u, .seq = 17, .ack_below = 15,
				  .now_ns = 1700000000000000000 };
	struct cmd c;

	c = base;
	c.type = CMD_CREATE;
	c.ino = VFS_ROOT_INO;
	c.name = (const uint8_t *)"db-password";
	c.name_len = 11;
	c.mode = S_IFREG | 0600;
	c.uid = 1000;
	c.gid = 1000;
	seed(dir, "create", &c);
	c.type = CMD_MKDIR;
	c.mode = S_IFDIR | 0700;
	seed(dir, "mkdir", &c);

	c = base;
	c.type = CMD_SET_VALUE;
	c.ino = 2;
	c.value = (const uint8_t *)"hunter2\n";
	c.value_len = 8;
	seed(dir, "set_value", &c);

	c = base;
	c.type = CMD_SETATTR;
	c.ino = 2;
	c.valid = VFS_SET_MODE | VFS_SET_SIZE | VFS_SET_MTIME | VFS_SET_ATIME;
	c.mode = 0640;
	c.size = 4;
	c.mtime_ns = 1700000000000000001;
	c.atime_ns = 1000000000000000000;
	seed(dir, "setattr", &c);

	c = base;
	c.type = CMD_UNLINK;
	c.ino = VFS_ROOT_INO;
	c.name = (const uint8_t *)"old";
	c.name_len = 3;
	seed(dir, "unlink", &c);
	c.type = CMD_RMDIR;
	seed(dir, "rmdir", &c);

	c = base;
	c.type = CMD_RENAME;
	c.ino = VFS_ROOT_INO;
	c.name = (const uint8_t *)"a";
	c.name_len = 1;
	c.new_parent = 3;
	c.new_name = (const uint8_t *)"b";
	c.new_name_len = 1;
	c.flags = VFS_RENAME_NOREPLACE;
	seed(dir, "rename", &c);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_log();
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cmd c, c2;
	struct buf b;

	if (cmd_decode(data, size, &c) != 0)
		return 0;
	FUZZ_CHECK(c.name_len <= VFS_MAX_NAME && c.new_name_len <= VFS_MAX_NAME &&
		   c.value_len <= VFS_MAX_VALUE);

	buf_init(&b);
	FUZZ_CHECK(cmd_encode(&c, &b) == 0);
	if (data[0] == CMD_VERSION)
		FUZZ_CHECK(b.len == size && memcmp(b.data, data, size) == 0);
	FUZZ_CHECK(cmd_decode(b.data, b.len, &c2) == 0);
	FUZZ_CHECK(same_cmd(&c, &c2));
	buf_free(&b);
	return 0;
}
