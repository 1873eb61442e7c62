/* The local API's parsers: a request body as the daemon reads it from a
 * mount's socket, a response body as mount.vaultfs reads it, and struct
 * vfs_attr read through a cursor. The input is one frame body (no length
 * prefix), tried as both. Invariants: a parsed header re-frames to exactly
 * the input, and every attr read re-encodes to the bytes it was read from. */
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "vaultfs/proto.h"

#define ATTR_WIRE_LEN 56u

/* Reads attrs from P until the cursor runs out, checking each round trip. */
static void check_attrs(const uint8_t *p, size_t len)
{
	struct cursor c;
	struct buf b;

	cursor_init(&c, p, len);
	buf_init(&b);
	for (;;) {
		const uint8_t *at = c.p;
		struct vfs_attr a;
		vfs_attr_get(&c, &a);
		if (c.err != 0)
			break;
		buf_clear(&b);
		vfs_attr_put(&b, &a);
		FUZZ_CHECK(b.err == 0 && b.len == ATTR_WIRE_LEN);
		FUZZ_CHECK(memcmp(b.data, at, ATTR_WIRE_LEN) == 0);
	}
	FUZZ_CHECK(c.left < ATTR_WIRE_LEN);
	buf_free(&b);
}

static void check_request(const uint8_t *data, uint32_t len)
{
	struct vfs_req_header h;
	const uint8_t *payload = NULL;
	uint32_t plen = 0;

	if (vfs_req_parse(data, len, &h, &payload, &plen) != 0)
		return;
	uint32_t hlen = VFS_REQ_HEADER_LEN + ((h.flags & VFS_REQ_CALLER) ? VFS_REQ_CALLER_LEN : 0);
	FUZZ_CHECK(plen == len - hlen && payload == data + hlen);
	FUZZ_CHECK(h.comm[VFS_COMM_LEN - 1] == '\0');
	FUZZ_CHECK(h.op > 0 && h.op < VFS_OP_MAX_ && (h.flags & ~VFS_REQ_FLAGS_KNOWN) == 0);

	struct buf b;
	buf_init(&b);
	vfs_req_frame(&b, &h, payload, plen);
	FUZZ_CHECK(b.err == 0 && b.len == 4u + len);
	FUZZ_CHECK(memcmp(b.data + 4, data, len) == 0);
	buf_free(&b);
	check_attrs(payload, plen);
}

static void check_response(const uint8_t *data, uint32_t len)
{
	uint32_t id;
	int32_t status;
	const uint8_t *payload = NULL;
	uint32_t plen = 0;
	struct vfs_resp_meta meta;

	if (vfs_resp_parse(data, len, &id, &status, &meta, &payload, &plen) != 0)
		return;
	FUZZ_CHECK(status <= 0 && (status == 0 || plen == 0));

	struct buf b;
	buf_init(&b);
	vfs_resp_frame(&b, id, status, &meta, payload, plen);
	FUZZ_CHECK(b.err == 0 && b.len == 4u + len);
	FUZZ_CHECK(memcmp(b.data + 4, data, len) == 0);
	buf_free(&b);
	check_attrs(payload, plen);
}

static void seed_frame(const char *dir, const char *name, const struct buf *frame)
{
	FUZZ_CHECK(frame->err == 0 && frame->len >= 4);
	fuzz_write_seed(dir, name, frame->data + 4, frame->len - 4); /* body only */
}

static void write_seeds(const char *dir)
{
	struct buf p, f;
	struct vfs_req_header h = { .id = 7, .op = VFS_OP_HELLO, .flags = 0, .uid = 1000, .gid = 1000 };
	struct vfs_attr a = { .ino = 42, .mode = S_IFREG | 0600, .uid = 1000, .gid = 1000,
			      .nlink = 1, .size = 11, .mtime_ns = 1700000000000000000,
			      .ctime_ns = 1700000000000000001, .atime_ns = 1000000000000000000 };

	buf_init(&p);
	buf_init(&f);
	buf_put_u32(&p, VFS_PROTO_VERSION);
	vfs_req_frame(&f, &h, p.data, (uint32_t)p.len);
	seed_frame(dir, "req_hello", &f);

	buf_clear(&p);
	buf_clear(&f);
	h.op = VFS_OP_LOOKUP;
	h.flags = VFS_REQ_LOCAL_READ;
	buf_put_u64(&p, VFS_ROOT_INO);
	buf_put_blob(&p, "db-password", 11);
	vfs_req_frame(&f, &h, p.data, (uint32_t)p.len);
	seed_frame(dir, "req_lookup", &f);

	buf_clear(&f);
	h.flags |= VFS_REQ_CALLER;
	h.pid = 4242;
	memcpy(h.comm, "cat", 4);
	vfs_req_frame(&f, &h, p.data, (uint32_t)p.len);
	seed_frame(dir, "req_lookup_caller", &f);
	h.pid = 0;
	memset(h.comm, 0, sizeof(h.comm));

	buf_clear(&p);
	buf_clear(&f);
	h.op = VFS_OP_SETATTR;
	h.flags = 0;
	buf_put_u64(&p, 42);
	buf_put_u32(&p, VFS_SET_MODE | VFS_SET_MTIME | VFS_SET_ATIME);
	buf_put_u32(&p, 0640);
	buf_put_u32(&p, 0);
	buf_put_u32(&p, 0);
	buf_put_u64(&p, 0);
	buf_put_i64(&p, 1700000000000000000);
	buf_put_i64(&p, 1000000000000000000);
	vfs_req_frame(&f, &h, p.data, (uint32_t)p.len);
	seed_frame(dir, "req_setattr", &f);

	buf_clear(&p);
	buf_clear(&f);
	vfs_attr_put(&p, &a);
	vfs_resp_frame(&f, 7, 0, NULL, p.data, (uint32_t)p.len);
	seed_frame(dir, "resp_attr", &f);

	buf_clear(&p);
	buf_clear(&f);
	vfs_attr_put(&p, &a);
	a.ino = 43;
	a.mode = S_IFDIR | 0755;
	vfs_attr_put(&p, &a);
	vfs_resp_frame(&f, 8, 0, NULL, p.data, (uint32_t)p.len);
	seed_frame(dir, "resp_two_attrs", &f);

	buf_clear(&f);
	vfs_resp_frame(&f, 9, -2, NULL, NULL, 0);
	seed_frame(dir, "resp_enoent", &f);

	buf_free(&f);
	buf_free(&p);
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
	/* The framing layer refuses bodies above VFS_MAX_FRAME before parsing. */
	if (size > VFS_MAX_FRAME)
		return 0;
	check_request(data, (uint32_t)size);
	check_response(data, (uint32_t)size);
	check_attrs(data, size);
	return 0;
}
