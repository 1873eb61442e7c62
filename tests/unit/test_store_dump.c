/* Unit tests for dump and restore (store_dump.c): round trips, the
 * previous version, refused input (truncated, malformed, tampered) that
 * leaves the state as it was, ciphertexts bound to their place in the tree,
 * and no plaintext in a dump. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_fixture.h"

static void test_dump_restore(void **state)
{
	struct fx *f = *state;
	script(f);
	struct buf d;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);

	/* A fresh store on the same keyring. */
	struct store *s2;
	char err[128];
	assert_int_equal(store_open(&s2, f->b, err, sizeof(err)), 0);
	assert_int_equal(store_restore(s2, d.data, d.len), 0);
	assert_same_tree(f->s, s2);
	struct vfs_attr a;

	/* Kept results and the inode counter came along. */
	int fatal = 0;
	struct cmd c = named(CMD_CREATE, VFS_ROOT_INO, "after");
	c.client_id = f->client;
	c.seq = 1; /* applied: mkdir "secret" */
	assert_int_equal(store_apply(s2, &c, &fatal), 2);
	assert_int_equal(store_lookup(s2, VFS_ROOT_INO, (const uint8_t *)"after", 5, &a), -ENOENT);
	c.seq = f->seq; /* applied, failed */
	assert_int_equal(store_apply(s2, &c, &fatal), -EEXIST);
	c.seq = f->seq + 1;
	int64_t ino2 = store_apply(s2, &c, &fatal);
	assert_int_equal(mk(f, VFS_ROOT_INO, "after", false, 0), ino2);
	assert_int_equal(fatal, 0);

	/* Restoring over a non-empty store replaces everything. */
	assert_int_equal(store_restore(s2, d.data, d.len), 0);
	assert_int_equal(store_lookup(s2, VFS_ROOT_INO, (const uint8_t *)"after", 5, &a), -ENOENT);

	/* Dumps of an unchanged store are stable. */
	struct buf d2;
	buf_init(&d2);
	assert_int_equal(store_dump(s2, &d2), 0);
	assert_int_equal(d2.len, d.len);
	assert_memory_equal(d2.data, d.data, d.len);
	buf_free(&d2);
	store_close(s2);
	buf_free(&d);
}

/* CREATE_VALUE leaves what CREATE then SET_VALUE leave; an existing name
 * refuses it whole. */
static void test_create_value(void **state)
{
	struct fx *f = *state;
	struct cmd c = named(CMD_CREATE_VALUE, VFS_ROOT_INO, "new");
	c.mode = 04755;
	c.uid = 1000;
	c.value = (const uint8_t *)"first";
	c.value_len = 5;
	c.flags = CMD_SET_VALUE_UNPRIVILEGED;
	int64_t ino = apply(f, c);
	assert_true(ino > 1);
	assert_value(f, (uint64_t)ino, "first");
	struct vfs_attr a;
	assert_int_equal(lookup(f, VFS_ROOT_INO, "new", &a), 0);
	assert_int_equal(a.size, 5);
	assert_int_equal(a.uid, 1000);
	/* Written by an unprivileged creator: no set-user-ID, as a write. */
	assert_int_equal(a.mode & 07777, 0755);
	c.value = (const uint8_t *)"second";
	c.value_len = 6;
	assert_fails_unchanged(f, apply(f, c), -EEXIST);
	assert_value(f, (uint64_t)ino, "first");
}

/* The feature level rises, never falls through commands, and comes with a
 * dump; at the base level the dump stays in the version an earlier
 * release reads. */
static void test_features_in_dump(void **state)
{
	struct fx *f = *state;
	script(f);
	assert_int_equal(store_features(f->s), CMD_FEATURES_BASE);
	struct buf base;
	buf_init(&base);
	assert_int_equal(store_dump(f->s, &base), 0);
	assert_int_equal(base.data[4], 3); /* u32 version after the magic */

	struct cmd c = { .type = CMD_FEATURES, .features = CMD_FEATURES_CREATE_VALUE };
	assert_int_equal(apply(f, c), 0);
	assert_int_equal(store_features(f->s), CMD_FEATURES_CREATE_VALUE);
	c.features = CMD_FEATURES_BASE;
	assert_int_equal(apply(f, c), 0);
	assert_int_equal(store_features(f->s), CMD_FEATURES_CREATE_VALUE);
	struct buf raised;
	buf_init(&raised);
	assert_int_equal(store_dump(f->s, &raised), 0);
	assert_int_equal(raised.data[4], 4);
	assert_int_equal(raised.len, base.len + 4);

	struct store *s2;
	char err[128];
	assert_int_equal(store_open(&s2, f->b, err, sizeof(err)), 0);
	assert_int_equal(store_restore(s2, raised.data, raised.len), 0);
	assert_int_equal(store_features(s2), CMD_FEATURES_CREATE_VALUE);
	assert_same_tree(f->s, s2);
	/* A snapshot is the state: its level with it. A backup restored into
	 * a running cluster keeps the level the cluster agreed to. */
	assert_int_equal(store_restore_backup(s2, base.data, base.len), 0);
	assert_int_equal(store_features(s2), CMD_FEATURES_CREATE_VALUE);
	assert_int_equal(store_restore(s2, base.data, base.len), 0);
	assert_int_equal(store_features(s2), CMD_FEATURES_BASE);
	/* A version 4 dump below the level that needs it is malformed; one
	 * above what this release applies is a later release's. */
	memset(raised.data + raised.len - 4, 0, 4);
	raised.data[raised.len - 4] = 1;
	assert_int_equal(store_restore(s2, raised.data, raised.len), -EBADMSG);
	raised.data[raised.len - 4] = CMD_FEATURES_CURRENT + 1;
	assert_int_equal(store_restore(s2, raised.data, raised.len), -EBADMSG);
	store_close(s2);
	buf_free(&base);
	buf_free(&raised);
}

/* ---- Dump surgery: the test knows the documented dump layout ---------- */

struct drow {
	uint64_t ino;
	size_t parent_off;
	size_t hash_off, name_off, mode_off, mtime_off, value_off; /* u32 length or field */
	size_t name_len, value_len;
};

static size_t parse_dump(const struct buf *d, struct drow *rows, size_t max)
{
	struct cursor c;
	size_t len;
	cursor_init(&c, d->data, d->len);
	cursor_u32(&c);
	cursor_u32(&c);
	cursor_u64(&c);
	uint32_t n = cursor_u32(&c);
	assert_true(n <= max);
	for (uint32_t i = 0; i < n; i++) {
		struct drow *r = &rows[i];
		r->ino = cursor_u64(&c);
		r->parent_off = d->len - c.left;
		cursor_u64(&c);
		r->hash_off = d->len - c.left;
		cursor_blob(&c, 64, &len);
		r->name_off = d->len - c.left;
		cursor_blob(&c, 1024, &r->name_len);
		r->mode_off = d->len - c.left;
		cursor_u32(&c);
		cursor_u32(&c);
		cursor_u32(&c);
		cursor_u64(&c);
		r->mtime_off = d->len - c.left;
		cursor_i64(&c);
		cursor_i64(&c);
		cursor_i64(&c);
		r->value_off = d->len - c.left;
		cursor_blob(&c, VFS_MAX_VALUE + 1024, &r->value_len);
	}
	assert_int_equal(c.err, 0);
	return n;
}

static struct drow *row_of(struct drow *rows, size_t n, uint64_t ino)
{
	for (size_t i = 0; i < n; i++)
		if (rows[i].ino == ino)
			return &rows[i];
	fail_msg("inode %llu not in dump", (unsigned long long)ino);
	return NULL;
}

static void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t t = a[i];
		a[i] = b[i];
		b[i] = t;
	}
}

static void put_u64_at(struct buf *d, size_t off, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		d->data[off + i] = (uint8_t)(v >> (8 * i));
}

static void put_u32_at(struct buf *d, size_t off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		d->data[off + i] = (uint8_t)(v >> (8 * i));
}

static void build_small_tree(struct fx *f)
{
	assert_int_equal(mk(f, VFS_ROOT_INO, "d1", true, 0700), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "d2", true, 0700), 3);
	assert_int_equal(mk(f, 2, "aa", false, 0600), 4);
	assert_int_equal(mk(f, 3, "bb", false, 0600), 5);
	assert_int_equal(setval(f, 4, "value-one"), 4);
	assert_int_equal(setval(f, 5, "value-two"), 5);
	assert_int_equal(mk(f, 3, "sub", true, 0700), 6);
}

/* Restoring DATA into F's store must fail and leave its whole state as it
 * was: the tree, and byte for byte all a dump holds (the inode and apply
 * counters, clients and kept results). */
static void assert_restore_rejected(struct fx *f, const uint8_t *data, size_t len)
{
	struct buf before, after;
	buf_init(&before);
	buf_init(&after);
	assert_int_equal(store_dump(f->s, &before), 0);
	assert_fails_unchanged(f, store_restore(f->s, data, len), -EBADMSG);
	assert_int_equal(store_dump(f->s, &after), 0);
	assert_int_equal(before.len, after.len);
	assert_memory_equal(before.data, after.data, before.len);
	buf_free(&before);
	buf_free(&after);
}

/* atime survives a dump and restore. */
static void test_dump_restore_atime(void **state)
{
	struct fx *f = *state;
	build_small_tree(f);
	assert_int_equal(set_times(f, 4, VFS_SET_ATIME, 0, 1000000000000000000), 4);
	struct buf d;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	assert_int_equal(get_u64_at(&d, 0) >> 32, 3); /* the version */
	struct fx *g = fx_new_on(f);
	assert_int_equal(store_restore(g->s, d.data, d.len), 0);
	assert_same_tree(f->s, g->s);
	struct vfs_attr a;
	assert_int_equal(store_getattr(g->s, 4, &a), 0);
	assert_int_equal(a.atime_ns, 1000000000000000000);
	assert_int_equal(store_getattr(g->s, 5, &a), 0);
	assert_int_equal(a.atime_ns, 4000); /* created by seq 4 */
	fx_free(g);
	buf_free(&d);
}

/* D as version 2 wrote it: the same rows without atime_ns. */
static void dump_as_v2(const struct buf *d, struct buf *out)
{
	struct drow rows[16];
	size_t n = parse_dump(d, rows, 16);
	buf_put_raw(out, d->data, 4);
	buf_put_u32(out, 2);
	size_t from = 8;
	for (size_t i = 0; i < n; i++) {
		size_t atime_off = rows[i].mtime_off + 16;
		buf_put_raw(out, d->data + from, atime_off - from);
		from = atime_off + 8;
	}
	buf_put_raw(out, d->data + from, d->len - from);
	assert_int_equal(out->err, 0);
}

/* A version 2 dump (snapshots already on disk) still restores, with atime
 * = mtime, what version 2 showed; nothing else differs. */
static void test_restore_v2_dump(void **state)
{
	struct fx *f = *state;
	build_small_tree(f);
	assert_int_equal(set_times(f, 4, VFS_SET_ATIME, 0, 1000000000000000000), 4);
	struct buf d, v2, again;
	buf_init(&d);
	buf_init(&v2);
	buf_init(&again);
	assert_int_equal(store_dump(f->s, &d), 0);
	dump_as_v2(&d, &v2);
	assert_int_equal(v2.len, d.len - 6 * 8);

	struct fx *g = fx_new_on(f);
	assert_int_equal(store_restore(g->s, v2.data, v2.len), 0);
	for (uint64_t ino = 1; ino <= 6; ino++) {
		struct vfs_attr want, got;
		assert_int_equal(store_getattr(f->s, ino, &want), 0);
		assert_int_equal(store_getattr(g->s, ino, &got), 0);
		assert_int_equal(got.atime_ns, want.mtime_ns);
		want.atime_ns = want.mtime_ns;
		assert_memory_equal(&got, &want, sizeof(got));
	}
	assert_value(g, 4, "value-one");
	/* Written back in the current version, with the atime it got. */
	assert_int_equal(store_dump(g->s, &again), 0);
	assert_int_equal(again.len, d.len);
	assert_int_equal(get_u64_at(&again, 0) >> 32, 3);

	/* A version 2 header on a version 3 body is refused. */
	put_u32_at(&d, 4, 2);
	assert_restore_rejected(g, d.data, d.len);
	fx_free(g);
	buf_free(&again);
	buf_free(&v2);
	buf_free(&d);
}

/* Restoring a copy of D changed by STMT (on BAD) into G must fail and
 * leave G as it was. */
#define MUTATE(stmt)                                                                             \
	do {                                                                                     \
		buf_clear(&bad);                                                                 \
		buf_put_raw(&bad, d.data, d.len);                                                \
		stmt;                                                                            \
		assert_restore_rejected(g, bad.data, bad.len);                                   \
	} while (0)

static void test_restore_rejects(void **state)
{
	struct fx *f = *state;
	build_small_tree(f);
	struct buf d, bad;
	struct drow rows[16];
	buf_init(&d);
	buf_init(&bad);
	assert_int_equal(store_dump(f->s, &d), 0);
	size_t n = parse_dump(&d, rows, 16);
	assert_int_equal(n, 6);

	/* A different, live tree in a target store on the same keyring. */
	struct fx *g = fx_new_on(f);
	assert_int_equal(mk(g, VFS_ROOT_INO, "other", false, 0600), 2);

	for (size_t len = 0; len < d.len; len++)
		assert_restore_rejected(g, d.data, len);
	assert_int_equal(ino_of(g, VFS_ROOT_INO, "other"), 2);

	MUTATE(buf_put_u8(&bad, 0));              /* trailing byte */
	MUTATE(bad.data[0] ^= 1);                 /* magic */
	MUTATE(bad.data[4] = 1);                  /* old version */
	MUTATE(bad.data[4] = 4);                  /* future version */
	MUTATE(put_u64_at(&bad, 8, 1));           /* next_ino too small */
	MUTATE(put_u64_at(&bad, 8, 6));           /* next_ino not above max ino */
	MUTATE(put_u32_at(&bad, row_of(rows, n, 4)->mode_off, S_IFLNK | 0777));
	MUTATE(put_u32_at(&bad, row_of(rows, n, 4)->mode_off, S_IFREG | 0100000u << 1));
	MUTATE(put_u64_at(&bad, row_of(rows, n, 4)->parent_off, 77)); /* orphan */
	MUTATE(put_u64_at(&bad, row_of(rows, n, 3)->parent_off, 4));  /* parent is a file */
	MUTATE(put_u64_at(&bad, row_of(rows, n, 3)->parent_off, 6));  /* cycle 3 -> 6 -> 3 */
	MUTATE(put_u64_at(&bad, row_of(rows, n, 1)->parent_off, 1));  /* root with a parent */
	MUTATE(put_u64_at(&bad, row_of(rows, n, 5)->parent_off - 8, 4)); /* duplicate ino */
	MUTATE(put_u64_at(&bad, row_of(rows, n, 1)->parent_off - 8, 9)); /* no root */
	/* Same name hash twice in one directory. */
	MUTATE(memcpy(bad.data + row_of(rows, n, 3)->hash_off,
		      bad.data + row_of(rows, n, 2)->hash_off, 4 + BARRIER_HASH_LEN));
	/* Value ciphertext length that disagrees with size. */
	MUTATE(put_u32_at(&bad, row_of(rows, n, 5)->mtime_off - 8, 1));
	/* A directory, or the root, with a size (and so with a value). */
	MUTATE(put_u64_at(&bad, row_of(rows, n, 2)->mtime_off - 8, 5));
	MUTATE(put_u64_at(&bad, row_of(rows, n, 1)->mtime_off - 8, 5));

	/* And the untouched dump still restores. */
	assert_int_equal(store_restore(g->s, d.data, d.len), 0);
	assert_same_tree(f->s, g->s);
	fx_free(g);
	buf_free(&bad);
	buf_free(&d);
}

static void test_ciphertext_binding(void **state)
{
	struct fx *f = *state;
	build_small_tree(f);
	struct buf d;
	struct drow rows[16];
	struct vfs_attr a;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	size_t n = parse_dump(&d, rows, 16);

	/* Swap the value ciphertexts of inodes 4 and 5 (same length). */
	struct drow *r4 = row_of(rows, n, 4), *r5 = row_of(rows, n, 5);
	assert_int_equal(r4->value_len, r5->value_len);
	swap_bytes(d.data + r4->value_off, d.data + r5->value_off, 4 + r4->value_len);

	/* Names moved between rows are refused at restore: each name opens
	 * only in its own row, and its lookup hash must match it. */
	struct buf swapped;
	buf_init(&swapped);
	buf_put_raw(&swapped, d.data, d.len);
	assert_int_equal(r4->name_len, r5->name_len);
	swap_bytes(swapped.data + r4->name_off, swapped.data + r5->name_off, 4 + r4->name_len);

	struct fx *g = fx_new();
	struct store *s2;
	char err[128];
	assert_int_equal(store_open(&s2, f->b, err, sizeof(err)), 0);
	assert_int_equal(store_restore(s2, swapped.data, swapped.len), -EBADMSG);
	buf_free(&swapped);
	/* Values moved between rows restore (the rows are intact) but do not
	 * decrypt: a value opens only under its own inode. */
	assert_int_equal(store_restore(s2, d.data, d.len), 0);
	struct buf v;
	buf_init(&v);
	buf_put_raw(&v, "keep", 4);
	assert_int_equal(store_read(s2, 4, &v), -EIO);
	assert_int_equal(store_read(s2, 5, &v), -EIO);
	assert_int_equal(v.len, 4); /* nothing appended on failure */
	buf_free(&v);
	/* Lookups by hash and metadata are unaffected. */
	assert_int_equal(store_lookup(s2, 2, (const uint8_t *)"aa", 2, &a), 0);
	assert_int_equal(a.ino, 4);
	/* A value written afresh is readable again. */
	int fatal = 0;
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_SET_VALUE;
	c.client_id = 99;
	c.seq = 1;
	c.ino = 4;
	c.value = (const uint8_t *)"new";
	c.value_len = 3;
	assert_int_equal(store_apply(s2, &c, &fatal), 4);
	buf_init(&v);
	assert_int_equal(store_read(s2, 4, &v), 0);
	assert_int_equal(v.len, 3);
	buf_free(&v);
	/* Truncating an undecryptable value is a storage failure. */
	c.type = CMD_SETATTR;
	c.seq = 2;
	c.ino = 5;
	c.valid = VFS_SET_SIZE;
	c.size = 1;
	assert_int_equal(store_apply(s2, &c, &fatal), -EIO);
	assert_int_equal(fatal, 1);
	store_close(s2);

	/* A store under a different keyring cannot even restore it. */
	assert_int_equal(store_restore(g->s, d.data, d.len), -EBADMSG);
	fx_free(g);
	buf_free(&d);
}

/* Two names in one directory: swapping their ciphertexts must not make the
 * listing show each entry under the other's name. */
static void test_name_swap_same_dir(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mk(f, VFS_ROOT_INO, "user", false, 0644), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "pass", false, 0600), 3);
	struct buf d;
	struct drow rows[4];
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	size_t n = parse_dump(&d, rows, 4);
	struct drow *r2 = row_of(rows, n, 2), *r3 = row_of(rows, n, 3);
	assert_int_equal(r2->name_len, r3->name_len);
	swap_bytes(d.data + r2->name_off, d.data + r3->name_off, 4 + r2->name_len);

	struct fx *g = fx_new_on(f);
	assert_int_equal(store_restore(g->s, d.data, d.len), -EBADMSG);
	/* Names back in place, but the lookup hashes swapped: lookup and
	 * readdir would disagree, so that is refused too (a fuzzer finding). */
	swap_bytes(d.data + r2->name_off, d.data + r3->name_off, 4 + r2->name_len);
	assert_int_equal(store_restore(g->s, d.data, d.len), 0);
	swap_bytes(d.data + r2->hash_off, d.data + r3->hash_off, 4 + BARRIER_HASH_LEN);
	assert_int_equal(store_restore(g->s, d.data, d.len), -EBADMSG);
	fx_free(g);
	buf_free(&d);
}

static void test_no_plaintext_in_dump(void **state)
{
	struct fx *f = *state;
	const char *name = "SUPERSECRETNAME-dbcreds";
	const char *value = "PLAINTEXT-PASSWORD-hunter2";
	assert_int_equal(mk(f, VFS_ROOT_INO, name, true, 0700), 2);
	assert_int_equal(mk(f, 2, name, false, 0600), 3);
	assert_int_equal(setval(f, 3, value), 3);
	assert_int_equal(mv(f, 2, name, VFS_ROOT_INO, "RENAMEDSECRET", 0), 0);

	struct buf d;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	assert_null(memmem(d.data, d.len, name, strlen(name)));
	assert_null(memmem(d.data, d.len, "SUPERSECRET", 11));
	assert_null(memmem(d.data, d.len, "RENAMEDSECRET", 13));
	assert_null(memmem(d.data, d.len, value, strlen(value)));
	assert_null(memmem(d.data, d.len, "hunter2", 7));
	buf_free(&d);
}

/* Malformed exactly-once state in a dump is refused as a whole, and the
 * target keeps its own state, kept results included. */
static void test_restore_rejects_dedup(void **state)
{
	struct fx *f = *state;
	assert_int_equal(apply_as(f->s, create_cmd("a"), 7, 3, 3, 10), 2);
	assert_int_equal(apply_as(f->s, noop_cmd(), 7, 4, 3, 11), -ENOENT);
	assert_int_equal(apply_as(f->s, create_cmd("b"), 7, 6, 3, 12), 3);
	assert_int_equal(apply_as(f->s, noop_cmd(), 8, 1, 0, 13), -ENOENT);
	struct buf d, bad;
	struct dedup dd;
	buf_init(&d);
	buf_init(&bad);
	assert_int_equal(store_dump(f->s, &d), 0);
	parse_dedup(&d, &dd);
	assert_int_equal(dd.n, 2);
	const struct dclient *c7 = dclient_of(&dd, 7), *c8 = dclient_of(&dd, 8);
	assert_non_null(c7);
	assert_non_null(c8);
	assert_true(c7->floor == 3 && c7->k == 3 && c7->last_now_ns == 12);
	assert_true(get_u64_at(&d, c7->rows_off + 32) == 6);
	assert_true(get_u64_at(&d, c7->rows_off + 40) == 3);
	size_t k7 = c7->off + 24, row0 = c7->rows_off;

	/* The target has kept results of its own. */
	struct fx *g = fx_new_on(f);
	assert_int_equal(apply_as(g->s, create_cmd("g"), 7, 3, 0, 1), 2);

	MUTATE(put_u64_at(&bad, row0, 2));                 /* result below the floor */
	MUTATE(put_u64_at(&bad, c7->off + 8, 4));          /* floor above a result */
	MUTATE(put_u64_at(&bad, row0 + 16, 3));            /* seq twice */
	MUTATE(put_u64_at(&bad, row0 + 16, 7));            /* seqs not ascending */
	MUTATE(put_u64_at(&bad, row0 + 8, (uint64_t)-5000)); /* not a result */
	MUTATE(put_u64_at(&bad, c8->off, 7));              /* client twice */
	MUTATE(put_u32_at(&bad, k7, 2));                   /* fewer rows than there are */
	MUTATE(put_u32_at(&bad, k7, 4));                   /* more rows than there are */
	MUTATE(put_u32_at(&bad, k7, STORE_MAX_RESULTS + 1)); /* over the cap */
	MUTATE(put_u32_at(&bad, dd.applies_off + 8, 3));   /* more clients */
	MUTATE(put_u32_at(&bad, dd.applies_off + 8, 1));   /* fewer clients */
	/* Over the cap with every row present and otherwise valid. */
	MUTATE({
		bad.len = c7->off;
		buf_put_u64(&bad, 7);
		buf_put_u64(&bad, 0);
		buf_put_i64(&bad, 0);
		buf_put_u32(&bad, STORE_MAX_RESULTS + 1);
		for (uint64_t seq = 0; seq <= STORE_MAX_RESULTS; seq++) {
			buf_put_u64(&bad, seq);
			buf_put_i64(&bad, -ENOENT);
		}
		put_u32_at(&bad, dd.applies_off + 8, 1);
	});
	/* G's own kept result survived every rejected restore. */
	assert_fails_unchanged(g, apply_as(g->s, create_cmd("x"), 7, 3, 0, 2), 2);

	/* The untouched dump restores, and retries stay deduplicated. */
	assert_int_equal(store_restore(g->s, d.data, d.len), 0);
	struct fx *both[] = { f, g };
	for (size_t i = 0; i < 2; i++) {
		struct fx *h = both[i];
		assert_fails_unchanged(h, apply_as(h->s, create_cmd("x"), 7, 6, 3, 20), 3);
		assert_fails_unchanged(h, apply_as(h->s, create_cmd("x"), 7, 2, 3, 21), -EALREADY);
		assert_int_equal(apply_as(h->s, create_cmd("x"), 7, 5, 3, 22), 4);
	}
	/* Same commands after the same state: same exactly-once state. */
	assert_same_once_state(f->s, g->s);
	fx_free(g);
	buf_free(&bad);
	buf_free(&d);
}

/* ---- Streamed dumps --------------------------------------------------- */

struct sink_log {
	struct buf all;
	size_t calls;
	size_t largest;
	int fail_at; /* call number that fails (0: none) */
};

static int sink_collect(void *arg, const uint8_t *p, size_t len)
{
	struct sink_log *l = arg;
	l->calls++;
	if (l->fail_at != 0 && l->calls == (size_t)l->fail_at)
		return -ENOSPC;
	if (len > l->largest)
		l->largest = len;
	buf_put_raw(&l->all, p, len);
	return l->all.err;
}

/* A streamed dump is the very bytes of a whole one, in pieces of bounded
 * size; a sink's error stops it and is returned. */
static void test_dump_stream(void **state)
{
	struct fx *f = *state;
	script(f);
	char value[4000];
	memset(value, 'v', sizeof value - 1);
	value[sizeof value - 1] = '\0';
	for (int i = 0; i < 300; i++) {
		char name[32];
		snprintf(name, sizeof name, "k%d", i);
		int64_t ino = mk(f, VFS_ROOT_INO, name, false, 0600);
		assert_true(ino > 0);
		assert_true(setval(f, (uint64_t)ino, value) >= 0);
	}
	struct buf whole;
	buf_init(&whole);
	assert_int_equal(store_dump(f->s, &whole), 0);
	struct sink_log l = { .calls = 0 };
	buf_init(&l.all);
	assert_int_equal(store_dump_stream(f->s, sink_collect, &l), 0);
	assert_true(l.calls > 1);
	assert_true(l.largest < 512u * 1024u);
	assert_int_equal(l.all.len, whole.len);
	assert_memory_equal(l.all.data, whole.data, whole.len);
	buf_free(&l.all);

	struct sink_log bad = { .fail_at = 2 };
	buf_init(&bad.all);
	assert_int_equal(store_dump_stream(f->s, sink_collect, &bad), -ENOSPC);
	assert_int_equal(bad.calls, 2);
	buf_free(&bad.all);
	buf_free(&whole);
}

/* A copy made in steps, with the tree changing between them, ends as the
 * state after the last step: its dump is the source's. */
static void test_copy_in_steps(void **state)
{
	struct fx *f = *state;
	script(f);
	char value[3000];
	memset(value, 'c', sizeof value - 1);
	value[sizeof value - 1] = '\0';
	for (int i = 0; i < 200; i++) {
		char name[32];
		snprintf(name, sizeof name, "c%d", i);
		int64_t ino = mk(f, VFS_ROOT_INO, name, false, 0600);
		assert_true(setval(f, (uint64_t)ino, value) >= 0);
	}
	char path[] = "/tmp/vfs-copy-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct store_copy *c;
	assert_int_equal(store_copy_begin(f->s, path, &c), 0);
	int steps = 0, rc;
	while ((rc = store_copy_step(c, 4)) == 1) {
		steps++;
		if (steps % 10 == 0) {
			char name[32];
			snprintf(name, sizeof name, "during%d", steps);
			assert_true(mk(f, VFS_ROOT_INO, name, false, 0600) > 0);
		}
	}
	assert_int_equal(rc, 0);
	assert_true(steps > 20);
	store_copy_end(c);
	struct store *copy;
	char err[128];
	assert_int_equal(store_open_copy(&copy, path, err, sizeof err), 0);
	struct buf a, b;
	buf_init(&a);
	buf_init(&b);
	assert_int_equal(store_dump(f->s, &a), 0);
	assert_int_equal(store_dump(copy, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.data, b.data, a.len);
	store_close(copy);
	unlink(path);
	buf_free(&a);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		STORE_TEST(test_dump_restore),
		STORE_TEST(test_restore_rejects),
		STORE_TEST(test_dump_restore_atime),
		STORE_TEST(test_restore_v2_dump),
		STORE_TEST(test_ciphertext_binding),
		STORE_TEST(test_name_swap_same_dir),
		STORE_TEST(test_no_plaintext_in_dump),
		STORE_TEST(test_restore_rejects_dedup),
		STORE_TEST(test_dump_stream),
		STORE_TEST(test_copy_in_steps),
		STORE_TEST(test_create_value),
		STORE_TEST(test_features_in_dump),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
