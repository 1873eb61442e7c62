/* Unit tests for the local API codecs (src/api/proto.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vaultfs/proto.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_req_roundtrip(void **state)
{
	(void)state;
	const char payload[] = "hello payload";
	struct vfs_req_header h = { .id = 0xdeadbeef, .op = VFS_OP_WRITE, .flags = VFS_REQ_LOCAL_READ,
				    .uid = 1000, .gid = 2000 };
	struct buf b;
	buf_init(&b);
	vfs_req_frame(&b, &h, payload, sizeof(payload));
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 4 + VFS_REQ_HEADER_LEN + sizeof(payload));
	assert_int_equal(le32(b.data), VFS_REQ_HEADER_LEN + sizeof(payload));

	struct vfs_req_header got;
	const uint8_t *p;
	uint32_t plen;
	assert_int_equal(vfs_req_parse(b.data + 4, (uint32_t)b.len - 4, &got, &p, &plen), 0);
	assert_int_equal(got.id, h.id);
	assert_int_equal(got.op, h.op);
	assert_int_equal(got.flags, VFS_REQ_LOCAL_READ);
	assert_int_equal(got.uid, h.uid);
	assert_int_equal(got.gid, h.gid);
	assert_int_equal(plen, sizeof(payload));
	assert_memory_equal(p, payload, sizeof(payload));
	buf_free(&b);
}

static void test_req_empty_payload(void **state)
{
	(void)state;
	struct vfs_req_header h = { .id = 7, .op = VFS_OP_STATFS, .uid = 0, .gid = 0 };
	struct buf b;
	buf_init(&b);
	vfs_req_frame(&b, &h, NULL, 0);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 4 + VFS_REQ_HEADER_LEN);

	struct vfs_req_header got;
	const uint8_t *p;
	uint32_t plen = 99;
	assert_int_equal(vfs_req_parse(b.data + 4, VFS_REQ_HEADER_LEN, &got, &p, &plen), 0);
	assert_int_equal(plen, 0);
	assert_int_equal(got.op, VFS_OP_STATFS);
	buf_free(&b);
}

/* VFS_REQ_CALLER: pid and command after the header, parsed back; a
 * command without its NUL, or a cut extension, is refused. */
static void test_req_caller(void **state)
{
	(void)state;
	struct vfs_req_header h = { .id = 9, .op = VFS_OP_READ, .flags = VFS_REQ_CALLER,
				    .uid = 1000, .gid = 100, .pid = 4242 };
	memcpy(h.comm, "cat", 4);
	struct buf b;
	buf_init(&b);
	vfs_req_frame(&b, &h, "xy", 2);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 4 + VFS_REQ_HEADER_LEN + VFS_REQ_CALLER_LEN + 2);
	struct vfs_req_header got;
	const uint8_t *p;
	uint32_t plen;
	uint32_t len = (uint32_t)b.len - 4;
	assert_int_equal(vfs_req_parse(b.data + 4, len, &got, &p, &plen), 0);
	assert_int_equal(got.pid, 4242);
	assert_string_equal(got.comm, "cat");
	assert_int_equal(plen, 2);
	assert_memory_equal(p, "xy", 2);
	assert_int_equal(vfs_req_parse(b.data + 4, VFS_REQ_HEADER_LEN + 10, &got, &p, &plen),
			 -EBADMSG);
	b.data[4 + VFS_REQ_HEADER_LEN + 4 + VFS_COMM_LEN - 1] = 'x';
	assert_int_equal(vfs_req_parse(b.data + 4, len, &got, &p, &plen), -EBADMSG);
	buf_free(&b);

	/* Without the flag: no extension, pid 0, no command. */
	h.flags = 0;
	buf_init(&b);
	vfs_req_frame(&b, &h, "xy", 2);
	assert_int_equal(b.len, 4 + VFS_REQ_HEADER_LEN + 2);
	assert_int_equal(vfs_req_parse(b.data + 4, (uint32_t)b.len - 4, &got, &p, &plen), 0);
	assert_int_equal(got.pid, 0);
	assert_int_equal(got.comm[0], 0);
	buf_free(&b);
}

static void test_req_every_truncation(void **state)
{
	(void)state;
	struct vfs_req_header h = { .id = 1, .op = VFS_OP_HELLO, .uid = 3, .gid = 4 };
	struct buf b;
	buf_init(&b);
	vfs_req_frame(&b, &h, NULL, 0);
	for (uint32_t n = 0; n < VFS_REQ_HEADER_LEN; n++) {
		struct vfs_req_header got = { .id = 42 };
		const uint8_t *p = NULL;
		uint32_t plen = 42;
		assert_int_equal(vfs_req_parse(b.data + 4, n, &got, &p, &plen), -EBADMSG);
		/* Out-parameters untouched on failure. */
		assert_int_equal(got.id, 42);
		assert_int_equal(plen, 42);
	}
	buf_free(&b);
}

static void test_req_bad_fields(void **state)
{
	(void)state;
	struct vfs_req_header h = { .id = 1, .op = VFS_OP_LOOKUP, .uid = 0, .gid = 0 };
	struct vfs_req_header got;
	const uint8_t *p;
	uint32_t plen;
	struct buf b;
	buf_init(&b);
	vfs_req_frame(&b, &h, "x", 1);
	uint8_t *body = b.data + 4;
	uint32_t len = (uint32_t)b.len - 4;

	/* Every unknown flag bit on its own. */
	for (unsigned bit = 0; bit < 16; bit++) {
		if ((1u << bit) & VFS_REQ_FLAGS_KNOWN)
			continue;
		body[6] = (uint8_t)((1u << bit) & 0xff);
		body[7] = (uint8_t)((1u << bit) >> 8);
		assert_int_equal(vfs_req_parse(body, len, &got, &p, &plen), -EBADMSG);
	}
	body[6] = body[7] = 0;
	assert_int_equal(vfs_req_parse(body, len, &got, &p, &plen), 0);

	/* op 0, VFS_OP_MAX_ and beyond. */
	const uint16_t bad_ops[] = { 0, VFS_OP_MAX_, VFS_OP_MAX_ + 1, 0xffff };
	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		body[4] = (uint8_t)bad_ops[i];
		body[5] = (uint8_t)(bad_ops[i] >> 8);
		assert_int_equal(vfs_req_parse(body, len, &got, &p, &plen), -EBADMSG);
	}
	/* Every valid op parses. */
	for (uint16_t op = VFS_OP_HELLO; op < VFS_OP_MAX_; op++) {
		body[4] = (uint8_t)op;
		body[5] = (uint8_t)(op >> 8);
		assert_int_equal(vfs_req_parse(body, len, &got, &p, &plen), 0);
		assert_int_equal(got.op, op);
	}
	buf_free(&b);
}

static void test_resp_roundtrip(void **state)
{
	(void)state;
	const uint8_t payload[] = { 1, 2, 3, 4, 5 };
	struct buf b;
	buf_init(&b);
	const struct vfs_resp_meta meta = { 0x0102030405060708ull, 0x1112131415161718ull };
	vfs_resp_frame(&b, 99, 0, &meta, payload, sizeof(payload));
	assert_int_equal(b.err, 0);
	assert_int_equal(le32(b.data), VFS_RESP_HEADER_LEN + sizeof(payload));

	uint32_t id, plen;
	int32_t status;
	const uint8_t *p;
	struct vfs_resp_meta got;
	assert_int_equal(vfs_resp_parse(b.data + 4, (uint32_t)b.len - 4, &id, &status, &got, &p,
					&plen),
			 0);
	assert_true(got.state_index == meta.state_index);
	assert_true(got.cache_until_ns == meta.cache_until_ns);
	assert_int_equal(id, 99);
	assert_int_equal(status, 0);
	assert_int_equal(plen, sizeof(payload));
	assert_memory_equal(p, payload, sizeof(payload));
	buf_free(&b);
}

static void test_resp_error_drops_payload(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	vfs_resp_frame(&b, 5, -ENOENT, NULL, "ignored", 7);
	assert_int_equal(b.len, 4 + VFS_RESP_HEADER_LEN);

	uint32_t id, plen;
	int32_t status;
	const uint8_t *p;
	assert_int_equal(vfs_resp_parse(b.data + 4, (uint32_t)b.len - 4, &id, &status, NULL, &p, &plen), 0);
	assert_int_equal(id, 5);
	assert_int_equal(status, -ENOENT);
	assert_int_equal(plen, 0);
	buf_free(&b);
}

static void test_resp_rejects(void **state)
{
	(void)state;
	uint32_t id = 77, plen = 77;
	int32_t status = 77;
	const uint8_t *p;
	struct buf b;
	buf_init(&b);
	vfs_resp_frame(&b, 1, 0, NULL, "abc", 3);
	for (uint32_t n = 0; n < VFS_RESP_HEADER_LEN; n++)
		assert_int_equal(vfs_resp_parse(b.data + 4, n, &id, &status, NULL, &p, &plen), -EBADMSG);
	assert_int_equal(id, 77);
	assert_int_equal(status, 77);
	buf_free(&b);

	/* An error status with a payload, a positive status, a non-errno. */
	const int32_t bad[] = { -EIO, 1, INT32_MIN };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf_init(&b);
		buf_put_u32(&b, 1);
		buf_put_i32(&b, bad[i]);
		buf_put_u64(&b, 0);
		buf_put_u64(&b, 0);
		if (bad[i] == -EIO)
			buf_put_u8(&b, 0);
		assert_int_equal(vfs_resp_parse(b.data, (uint32_t)b.len, &id, &status, NULL, &p, &plen),
				 -EBADMSG);
		buf_free(&b);
	}
}

static void test_attr_roundtrip(void **state)
{
	(void)state;
	struct vfs_attr a = {
		.ino = 0x0102030405060708ull,
		.mode = 0100644,
		.uid = 1000,
		.gid = 1001,
		.nlink = 1,
		.size = 1048576,
		.mtime_ns = -5,
		.ctime_ns = INT64_MAX,
		.atime_ns = INT64_MIN + 3,
	};
	struct buf b;
	buf_init(&b);
	vfs_attr_put(&b, &a);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, VFS_ATTR_LEN);
	/* atime_ns is the last field (the order proto.h documents). */
	struct cursor at;
	cursor_init(&at, b.data + 48, 8);
	assert_true(cursor_i64(&at) == INT64_MIN + 3);

	struct cursor c;
	struct vfs_attr got;
	cursor_init(&c, b.data, b.len);
	vfs_attr_get(&c, &got);
	assert_int_equal(cursor_done(&c), 0);
	assert_memory_equal(&got, &a, sizeof(a));

	for (size_t n = 0; n < b.len; n++) {
		cursor_init(&c, b.data, n);
		vfs_attr_get(&c, &got);
		assert_int_equal(cursor_done(&c), -EBADMSG);
	}
	buf_free(&b);
}

/* Every op has a name, and the version that brought it: READDIRPLUS is
 * version 6's, WRITABLE 7's, CREATE_VALUE 8's, LOOKUP_WRITABLE 9's, the
 * rest were there in the oldest version served. */
static void test_op_names_and_versions(void **state)
{
	(void)state;
	assert_int_equal(VFS_PROTO_VERSION, 9);
	for (uint16_t op = VFS_OP_HELLO; op < VFS_OP_MAX_; op++) {
		assert_string_not_equal(vfs_op_name(op), "?");
		assert_int_equal(vfs_op_version(op), op == VFS_OP_READDIRPLUS ? 6 :
						     op == VFS_OP_WRITABLE    ? 7 :
						     op == VFS_OP_CREATE_VALUE ? 8 :
						     op == VFS_OP_LOOKUP_WRITABLE ? 9 :
									       VFS_PROTO_MIN_VERSION);
	}
	assert_string_equal(vfs_op_name(VFS_OP_READDIRPLUS), "READDIRPLUS");
	assert_string_equal(vfs_op_name(VFS_OP_WRITABLE), "WRITABLE");
	assert_string_equal(vfs_op_name(VFS_OP_CREATE_VALUE), "CREATE_VALUE");
	assert_string_equal(vfs_op_name(VFS_OP_LOOKUP_WRITABLE), "LOOKUP_WRITABLE");
	assert_string_equal(vfs_op_name(VFS_OP_MAX_), "?");
	/* A page of the longest names, with its header, fits in a frame. */
	assert_true(VFS_RESP_HEADER_LEN + 12 + VFS_READDIRPLUS_PAGE + VFS_ATTR_LEN + 4 +
			    VFS_MAX_NAME <= VFS_MAX_FRAME);
}

static void test_frame_length_overflow(void **state)
{
	(void)state;
	struct vfs_req_header h = { .id = 1, .op = VFS_OP_READ, .uid = 0, .gid = 0 };
	struct buf b;
	buf_init(&b);
	/* A length that cannot be framed fails before touching the payload. */
	vfs_req_frame(&b, &h, NULL, UINT32_MAX);
	assert_int_equal(b.err, -EOVERFLOW);
	buf_free(&b);
	buf_init(&b);
	vfs_resp_frame(&b, 1, 0, NULL, NULL, UINT32_MAX - 3);
	assert_int_equal(b.err, -EOVERFLOW);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_req_roundtrip),
		cmocka_unit_test(test_req_empty_payload),
		cmocka_unit_test(test_req_caller),
		cmocka_unit_test(test_req_every_truncation),
		cmocka_unit_test(test_req_bad_fields),
		cmocka_unit_test(test_resp_roundtrip),
		cmocka_unit_test(test_resp_error_drops_payload),
		cmocka_unit_test(test_resp_rejects),
		cmocka_unit_test(test_attr_roundtrip),
		cmocka_unit_test(test_op_names_and_versions),
		cmocka_unit_test(test_frame_length_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
