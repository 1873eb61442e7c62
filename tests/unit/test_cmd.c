/* Unit tests for command encoding: exact round trip for every type, strict
 * rejection of every malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store/cmd.h"
#include "vaultfs/proto.h"

static const uint8_t name1[] = "alpha";
static const uint8_t name2[] = "beta/not-a-path-but-bytes";
static const uint8_t value1[] = "s3cr3t value";

/* A command of TYPE with every field relevant to it set to a distinct
 * non-zero value; irrelevant fields are left zero, as decode leaves them. */
static struct cmd sample(uint8_t type)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = type;
	c.client_id = 0x0102030405060708u;
	c.seq = 0x1112131415161718u;
	c.ack_below = 0x5152535455565758u;
	c.now_ns = -0x2122232425262728;
	c.ino = 0x3132333435363738u;
	switch (type) {
	case CMD_CREATE:
	case CMD_MKDIR:
		c.name = name1;
		c.name_len = sizeof(name1) - 1;
		c.mode = 0640;
		c.uid = 1000;
		c.gid = 1001;
		break;
	case CMD_SET_VALUE:
		c.value = value1;
		c.value_len = sizeof(value1) - 1;
		break;
	case CMD_SETATTR:
		c.valid = VFS_SET_MODE | VFS_SET_SIZE | VFS_SET_MTIME | VFS_SET_ATIME;
		c.mode = 0600;
		c.uid = 7;
		c.gid = 8;
		c.size = 123456;
		c.mtime_ns = INT64_MIN + 5;
		c.atime_ns = INT64_MAX - 6;
		break;
	case CMD_UNLINK:
	case CMD_RMDIR:
		c.name = name1;
		c.name_len = sizeof(name1) - 1;
		break;
	case CMD_RENAME:
		c.name = name1;
		c.name_len = sizeof(name1) - 1;
		c.new_parent = 0x4142434445464748u;
		c.new_name = name2;
		c.new_name_len = sizeof(name2) - 1;
		c.flags = VFS_RENAME_NOREPLACE;
		break;
	case CMD_CREATE_VALUE:
		c.name = name1;
		c.name_len = sizeof(name1) - 1;
		c.mode = 0640;
		c.uid = 1000;
		c.gid = 1001;
		c.value = value1;
		c.value_len = sizeof(value1) - 1;
		c.flags = CMD_SET_VALUE_UNPRIVILEGED;
		break;
	case CMD_FEATURES:
		c.features = 0x71727374u;
		break;
	default:
		break;
	}
	return c;
}

static void assert_bytes_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	assert_int_equal(alen, blen);
	if (alen > 0)
		assert_memory_equal(a, b, alen);
}

static void assert_cmd_equal(const struct cmd *a, const struct cmd *b)
{
	assert_int_equal(a->type, b->type);
	assert_true(a->client_id == b->client_id);
	assert_true(a->seq == b->seq);
	assert_true(a->ack_below == b->ack_below);
	assert_true(a->now_ns == b->now_ns);
	assert_true(a->ino == b->ino);
	assert_true(a->new_parent == b->new_parent);
	assert_bytes_equal(a->name, a->name_len, b->name, b->name_len);
	assert_bytes_equal(a->new_name, a->new_name_len, b->new_name, b->new_name_len);
	assert_bytes_equal(a->value, a->value_len, b->value, b->value_len);
	assert_int_equal(a->mode, b->mode);
	assert_int_equal(a->uid, b->uid);
	assert_int_equal(a->gid, b->gid);
	assert_int_equal(a->valid, b->valid);
	assert_true(a->size == b->size);
	assert_true(a->mtime_ns == b->mtime_ns);
	assert_true(a->atime_ns == b->atime_ns);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->features, b->features);
}

static void test_round_trip_all_types(void **state)
{
	(void)state;
	for (uint8_t t = CMD_CREATE; t < CMD_TYPE_MAX_; t++) {
		struct cmd in = sample(t), out;
		struct buf b;
		buf_init(&b);
		assert_int_equal(cmd_encode(&in, &b), 0);
		assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
		assert_cmd_equal(&in, &out);
		/* Decoded pointers point into the encoding, not at the input. */
		if (out.name_len > 0)
			assert_true(out.name >= b.data && out.name < b.data + b.len);
		buf_free(&b);
	}
}

static void test_round_trip_limits(void **state)
{
	(void)state;
	uint8_t *big = malloc(VFS_MAX_VALUE);
	uint8_t longname[VFS_MAX_NAME];
	assert_non_null(big);
	memset(big, 0xab, VFS_MAX_VALUE);
	memset(longname, 'n', sizeof(longname));

	struct cmd in = sample(CMD_SET_VALUE), out;
	in.value = big;
	in.value_len = VFS_MAX_VALUE;
	struct buf b;
	buf_init(&b);
	assert_int_equal(cmd_encode(&in, &b), 0);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_cmd_equal(&in, &out);
	buf_free(&b);

	/* Empty value. */
	in.value = NULL;
	in.value_len = 0;
	assert_int_equal(cmd_encode(&in, &b), 0);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.value_len, 0);
	buf_free(&b);

	in = sample(CMD_RENAME);
	in.name = longname;
	in.name_len = VFS_MAX_NAME;
	in.new_name = longname;
	in.new_name_len = VFS_MAX_NAME;
	assert_int_equal(cmd_encode(&in, &b), 0);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_cmd_equal(&in, &out);
	buf_free(&b);
	free(big);
}

static void test_encode_rejects(void **state)
{
	(void)state;
	uint8_t longname[VFS_MAX_NAME + 1];
	memset(longname, 'n', sizeof(longname));
	struct buf b;
	buf_init(&b);

	struct cmd c = sample(CMD_CREATE);
	c.type = 0;
	assert_int_equal(cmd_encode(&c, &b), -EINVAL);
	c.type = CMD_TYPE_MAX_;
	assert_int_equal(cmd_encode(&c, &b), -EINVAL);

	c = sample(CMD_CREATE);
	c.name = longname;
	c.name_len = sizeof(longname);
	assert_int_equal(cmd_encode(&c, &b), -EINVAL);

	c = sample(CMD_RENAME);
	c.new_name = longname;
	c.new_name_len = sizeof(longname);
	assert_int_equal(cmd_encode(&c, &b), -EINVAL);

	c = sample(CMD_SET_VALUE);
	c.value_len = VFS_MAX_VALUE + 1;
	assert_int_equal(cmd_encode(&c, &b), -EINVAL);
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

/* Every proper prefix of every valid encoding is rejected, and so is the
 * encoding with one byte appended. */
static void test_truncated_and_trailing(void **state)
{
	(void)state;
	for (uint8_t t = CMD_CREATE; t < CMD_TYPE_MAX_; t++) {
		struct cmd in = sample(t), out;
		struct buf b;
		buf_init(&b);
		assert_int_equal(cmd_encode(&in, &b), 0);
		for (size_t n = 0; n < b.len; n++) {
			/* Copy so ASan catches any read past the prefix. */
			uint8_t *p = malloc(n > 0 ? n : 1);
			assert_non_null(p);
			memcpy(p, b.data, n);
			assert_int_equal(cmd_decode(p, n, &out), -EBADMSG);
			free(p);
		}
		buf_put_u8(&b, 0);
		assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
		buf_free(&b);
	}
	struct cmd out;
	assert_int_equal(cmd_decode(NULL, 0, &out), -EBADMSG);
}

static void test_bad_version_and_type(void **state)
{
	(void)state;
	struct cmd in = sample(CMD_UNLINK), out;
	struct buf b;
	buf_init(&b);
	assert_int_equal(cmd_encode(&in, &b), 0);

	b.data[0] = 0;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	b.data[0] = CMD_VERSION + 1;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	b.data[0] = CMD_VERSION;
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);

	b.data[1] = 0;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	b.data[1] = CMD_TYPE_MAX_;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	b.data[1] = 0xff;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	/* Another valid type with the wrong body is malformed too. */
	b.data[1] = CMD_SETATTR;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	buf_free(&b);
}

/* ack_below survives the round trip at its extremes, independently of seq. */
static void test_ack_below(void **state)
{
	(void)state;
	const uint64_t values[] = { 0, 1, 0x8000000000000000u, UINT64_MAX };
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct cmd in = sample(CMD_SET_VALUE), out;
		in.seq = 7;
		in.ack_below = values[i];
		struct buf b;
		buf_init(&b);
		assert_int_equal(cmd_encode(&in, &b), 0);
		assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
		assert_true(out.ack_below == values[i]);
		assert_true(out.seq == 7);
		assert_cmd_equal(&in, &out);
		buf_free(&b);
	}
}

/* A version 1 command (no ack_below) is refused, not misread: both as it
 * was written then and relabelled with the current version byte, which
 * leaves it 8 bytes short. */
static void test_old_version(void **state)
{
	(void)state;
	struct cmd out;
	struct buf b;
	buf_init(&b);
	assert_int_equal(CMD_VERSION, 3);
	buf_put_u8(&b, 1);
	buf_put_u8(&b, CMD_UNLINK);
	buf_put_u64(&b, 9);        /* client_id */
	buf_put_u64(&b, 3);        /* seq */
	buf_put_i64(&b, 1000);     /* now_ns */
	buf_put_u64(&b, VFS_ROOT_INO);
	buf_put_blob(&b, "name", 4);
	assert_int_equal(b.err, 0);
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	b.data[0] = CMD_VERSION;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	b.data[0] = CMD_VERSION_PREV;
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);

	/* The same command in the current layout decodes. */
	buf_clear(&b);
	buf_put_u8(&b, CMD_VERSION);
	buf_put_u8(&b, CMD_UNLINK);
	buf_put_u64(&b, 9);
	buf_put_u64(&b, 3);
	buf_put_u64(&b, 2); /* ack_below */
	buf_put_i64(&b, 1000);
	buf_put_u64(&b, VFS_ROOT_INO);
	buf_put_blob(&b, "name", 4);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_true(out.client_id == 9 && out.seq == 3 && out.ack_below == 2);
	assert_true(out.now_ns == 1000 && out.ino == VFS_ROOT_INO);
	assert_int_equal(out.name_len, 4);
	assert_memory_equal(out.name, "name", 4);
	buf_free(&b);
}

/* Version 2 (entries already in logs) still decodes: its SET_VALUE has no
 * flags, and reads as a privileged write. In version 3 the flags are
 * there, and an unknown flag is refused. */
static void test_version_2_set_value(void **state)
{
	(void)state;
	struct cmd out;
	struct buf b;
	for (unsigned version = 2; version <= 3; version++) {
		buf_init(&b);
		buf_put_u8(&b, (uint8_t)version);
		buf_put_u8(&b, CMD_SET_VALUE);
		buf_put_u64(&b, 9);  /* client_id */
		buf_put_u64(&b, 3);  /* seq */
		buf_put_u64(&b, 2);  /* ack_below */
		buf_put_i64(&b, 1000);
		buf_put_u64(&b, 7);  /* ino */
		buf_put_blob(&b, "value", 5);
		if (version == 3)
			buf_put_u32(&b, CMD_SET_VALUE_UNPRIVILEGED);
		assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
		assert_int_equal(out.value_len, 5);
		assert_int_equal(out.flags, version == 3 ? CMD_SET_VALUE_UNPRIVILEGED : 0);
		if (version == 3) {
			b.data[b.len - 4] = 2;
			assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
		} else {
			/* Relabelled as version 3 it is 4 bytes short. */
			b.data[0] = 3;
			assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
		}
		buf_free(&b);
	}
}

/* A SETATTR as VERSION writes it; version 3 adds atime_ns. */
static void put_setattr(struct buf *b, unsigned version, uint32_t valid)
{
	buf_put_u8(b, (uint8_t)version);
	buf_put_u8(b, CMD_SETATTR);
	buf_put_u64(b, 9);  /* client_id */
	buf_put_u64(b, 3);  /* seq */
	buf_put_u64(b, 2);  /* ack_below */
	buf_put_i64(b, 1000);
	buf_put_u64(b, 7);  /* ino */
	buf_put_u32(b, valid);
	buf_put_u32(b, 0600);
	buf_put_u32(b, 5);  /* uid */
	buf_put_u32(b, 6);  /* gid */
	buf_put_u64(b, 0);  /* size */
	buf_put_i64(b, 1500000000000000000); /* mtime_ns */
	if (version >= 3)
		buf_put_i64(b, 1000000000000000000); /* atime_ns */
	assert_int_equal(b->err, 0);
}

/* Version 3's SETATTR carries atime_ns after mtime_ns; version 2's (entries
 * already in logs) has none and decodes with atime unset. A version 2
 * entry with the then unknown VFS_SET_ATIME bit, which the store refused,
 * decodes to a bit the store still refuses, never to an atime change. */
static void test_setattr_atime_versions(void **state)
{
	(void)state;
	struct cmd out;
	struct buf b;
	buf_init(&b);
	put_setattr(&b, 3, VFS_SET_MTIME | VFS_SET_ATIME);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.valid, VFS_SET_MTIME | VFS_SET_ATIME);
	assert_true(out.mtime_ns == 1500000000000000000);
	assert_true(out.atime_ns == 1000000000000000000);
	b.data[0] = 2; /* 8 bytes too long for version 2 */
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);

	buf_clear(&b);
	put_setattr(&b, 2, VFS_SET_MODE | VFS_SET_MTIME);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.valid, VFS_SET_MODE | VFS_SET_MTIME);
	assert_true(out.mtime_ns == 1500000000000000000);
	assert_true(out.atime_ns == 0);
	assert_true(out.uid == 5 && out.gid == 6 && out.mode == 0600 && out.ino == 7);
	b.data[0] = 3; /* 8 bytes short for version 3 */
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);

	buf_clear(&b);
	put_setattr(&b, 2, VFS_SET_MTIME | VFS_SET_ATIME);
	assert_int_equal(cmd_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.valid, VFS_SET_MTIME | CMD_SETATTR_REFUSED);
	assert_true(out.atime_ns == 0);
	buf_free(&b);
}

/* Hand-built encodings whose length prefixes exceed the limits. */
static void test_oversized(void **state)
{
	(void)state;
	struct cmd out;
	struct buf b;
	uint8_t longname[VFS_MAX_NAME + 1];
	memset(longname, 'n', sizeof(longname));

	buf_init(&b);
	buf_put_u8(&b, CMD_VERSION);
	buf_put_u8(&b, CMD_CREATE);
	buf_put_u64(&b, 1);
	buf_put_u64(&b, 1);
	buf_put_u64(&b, 1); /* ack_below */
	buf_put_i64(&b, 1);
	buf_put_u64(&b, VFS_ROOT_INO);
	buf_put_blob(&b, longname, sizeof(longname));
	buf_put_u32(&b, 0644);
	buf_put_u32(&b, 0);
	buf_put_u32(&b, 0);
	assert_int_equal(b.err, 0);
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	buf_free(&b);

	uint8_t *big = calloc(1, VFS_MAX_VALUE + 1);
	assert_non_null(big);
	buf_put_u8(&b, CMD_VERSION);
	buf_put_u8(&b, CMD_SET_VALUE);
	buf_put_u64(&b, 1);
	buf_put_u64(&b, 1);
	buf_put_u64(&b, 1); /* ack_below */
	buf_put_i64(&b, 1);
	buf_put_u64(&b, 2);
	buf_put_blob(&b, big, VFS_MAX_VALUE + 1);
	assert_int_equal(b.err, 0);
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	buf_free(&b);
	free(big);

	/* A length prefix larger than the rest of the input. */
	buf_put_u8(&b, CMD_VERSION);
	buf_put_u8(&b, CMD_UNLINK);
	buf_put_u64(&b, 1);
	buf_put_u64(&b, 1);
	buf_put_u64(&b, 1); /* ack_below */
	buf_put_i64(&b, 1);
	buf_put_u64(&b, 1);
	buf_put_u32(&b, 10);
	buf_put_raw(&b, "abc", 3);
	assert_int_equal(cmd_decode(b.data, b.len, &out), -EBADMSG);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_all_types),
		cmocka_unit_test(test_round_trip_limits),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_truncated_and_trailing),
		cmocka_unit_test(test_bad_version_and_type),
		cmocka_unit_test(test_oversized),
		cmocka_unit_test(test_setattr_atime_versions),
		cmocka_unit_test(test_ack_below),
		cmocka_unit_test(test_old_version),
		cmocka_unit_test(test_version_2_set_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
