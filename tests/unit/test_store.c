/* Unit tests for the store's tree (store.c): every command's success and
 * error paths, determinism, and what a sealed barrier allows. The
 * exactly-once window is tested in test_store_once.c, dump and restore in
 * test_store_dump.c; store_fixture.c is what the three share. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_fixture.h"

#define BIG_NAME_LEN 255

static void test_root(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	struct buf d;
	assert_int_equal(store_getattr(f->s, VFS_ROOT_INO, &a), 0);
	assert_int_equal(a.ino, VFS_ROOT_INO);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_int_equal(a.uid, 0);
	assert_int_equal(a.gid, 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(store_getattr(f->s, 0, &a), -ENOENT);
	assert_int_equal(store_getattr(f->s, 99, &a), -ENOENT);
	buf_init(&d);
	assert_int_equal(store_readdir(f->s, VFS_ROOT_INO, &d), 0);
	assert_int_equal(d.len, 4);
	assert_int_equal(d.data[0] | d.data[1] | d.data[2] | d.data[3], 0);
	assert_int_equal(store_read(f->s, VFS_ROOT_INO, &d), -EISDIR);
	assert_int_equal(d.len, 4);
	buf_free(&d);
}

/* Child I's name: its number, then 'x' up to the longest name. */
static void child_name(char name[BIG_NAME_LEN + 1], unsigned i)
{
	snprintf(name, BIG_NAME_LEN + 1, "%05u", i);
	memset(name + 5, 'x', BIG_NAME_LEN - 5);
	name[BIG_NAME_LEN] = '\0';
}

/* READDIRPLUS pages: every child once, in ino order, with the attributes
 * GETATTR gives, a page never past VFS_READDIRPLUS_PAGE, NEXT resuming
 * where the page stopped and 0 on the last; a child removed between pages
 * does not shift the others. */
static void test_readdirplus_pages(void **state)
{
	struct fx *f = *state;
	char name[BIG_NAME_LEN + 1];
	const unsigned n = 2000; /* about 620 KiB of entries: three pages */
	assert_int_equal(mk(f, VFS_ROOT_INO, "d", true, 0700), 2);
	for (unsigned i = 0; i < n; i++) {
		child_name(name, i);
		assert_int_equal(mk(f, 2, name, i % 100 == 0, 0600), 3 + i);
	}
	struct buf d;
	buf_init(&d);
	uint64_t after = 0, want = 3;
	unsigned pages = 0;
	do {
		buf_clear(&d);
		assert_int_equal(store_readdirplus(f->s, 2, after, &d), 0);
		assert_true(d.len <= 12 + VFS_READDIRPLUS_PAGE);
		struct cursor c;
		cursor_init(&c, d.data, d.len);
		uint64_t next = cursor_u64(&c);
		uint32_t count = cursor_u32(&c);
		assert_true(count > 0);
		for (uint32_t i = 0; i < count; i++, want++) {
			struct vfs_attr a, g;
			size_t len;
			vfs_attr_get(&c, &a);
			const uint8_t *nm = cursor_blob(&c, BIG_NAME_LEN, &len);
			assert_int_equal(c.err, 0);
			assert_int_equal(a.ino, want);
			assert_int_equal(len, BIG_NAME_LEN);
			snprintf(name, sizeof(name), "%05u", (unsigned)(want - 3));
			assert_memory_equal(nm, name, 5);
			assert_int_equal(store_getattr(f->s, a.ino, &g), 0);
			assert_memory_equal(&a, &g, sizeof(a));
			after = a.ino;
		}
		assert_int_equal(cursor_done(&c), 0);
		assert_true(next == 0 || next == after);
		after = next;
		if (++pages == 1) { /* the first child of the next page goes */
			child_name(name, (unsigned)(want - 3));
			assert_int_equal(rm(f, 2, name, (want - 3) % 100 == 0), 0);
			want++;
		}
	} while (after != 0);
	assert_int_equal(want, 3 + n);
	assert_int_equal(pages, 3);

	/* From the middle; past the end; not a directory; no such inode. */
	buf_clear(&d);
	assert_int_equal(store_readdirplus(f->s, 2, 3 + n - 3, &d), 0);
	assert_int_equal(d.len, 12 + 2 * (VFS_ATTR_LEN + 4 + BIG_NAME_LEN));
	buf_clear(&d);
	assert_int_equal(store_readdirplus(f->s, 2, 3 + n, &d), 0);
	assert_int_equal(d.len, 12);
	assert_int_equal(store_readdirplus(f->s, 3 + 1, 0, &d), -ENOTDIR);
	assert_int_equal(store_readdirplus(f->s, 99999, 0, &d), -ENOENT);
	assert_int_equal(d.len, 12);
	buf_free(&d);
}

static void test_create_mkdir(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;

	assert_int_equal(mk(f, VFS_ROOT_INO, "file", false, S_IFDIR | 04640), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "dir", true, S_IFREG | 0750), 3);
	assert_int_equal(lookup(f, VFS_ROOT_INO, "file", &a), 0);
	assert_int_equal(a.ino, 2);
	assert_int_equal(a.mode, S_IFREG | 04640);
	assert_int_equal(a.uid, 1000);
	assert_int_equal(a.gid, 100);
	assert_int_equal(a.nlink, 1);
	assert_int_equal(a.size, 0);
	assert_int_equal(a.mtime_ns, 1000);
	assert_int_equal(a.ctime_ns, 1000);
	assert_value(f, 2, "");

	assert_int_equal(lookup(f, VFS_ROOT_INO, "dir", &a), 0);
	assert_int_equal(a.ino, 3);
	assert_int_equal(a.mode, S_IFDIR | 0750);
	assert_int_equal(a.nlink, 2);

	assert_int_equal(store_getattr(f->s, VFS_ROOT_INO, &a), 0);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(a.mtime_ns, 2000);
	assert_int_equal(a.ctime_ns, 2000);

	/* Nested, and the same name in another directory is fine. */
	assert_int_equal(mk(f, 3, "file", false, 0600), 4);
	assert_int_equal(ino_of(f, 3, "file"), 4);
	assert_int_equal(lookup(f, 3, "dir", &a), -ENOENT);
	assert_int_equal(lookup(f, 2, "x", &a), -ENOTDIR);
	assert_int_equal(lookup(f, 42, "x", &a), -ENOENT);

	/* Errors change nothing and consume no inode number. */
	assert_fails_unchanged(f, mk(f, 42, "x", false, 0600), -ENOENT);
	assert_fails_unchanged(f, mk(f, 2, "x", true, 0700), -ENOTDIR);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, "file", false, 0600), -EEXIST);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, "file", true, 0600), -EEXIST);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, "dir", true, 0600), -EEXIST);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, "", false, 0600), -EINVAL);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, ".", true, 0600), -EINVAL);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, "..", false, 0600), -EINVAL);
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, "a/b", false, 0600), -EINVAL);

	struct cmd c = named(CMD_CREATE, VFS_ROOT_INO, "");
	c.name = (const uint8_t *)"a\0b";
	c.name_len = 3;
	assert_fails_unchanged(f, apply(f, c), -EINVAL);

	char big[BIG_NAME_LEN + 2];
	memset(big, 'x', sizeof(big));
	big[BIG_NAME_LEN + 1] = '\0';
	assert_fails_unchanged(f, mk(f, VFS_ROOT_INO, big, false, 0600), -EINVAL);
	big[BIG_NAME_LEN] = '\0';
	assert_int_equal(mk(f, VFS_ROOT_INO, big, false, 0600), 5);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, big), 5);
	/* Names are arbitrary bytes otherwise. */
	assert_int_equal(mk(f, VFS_ROOT_INO, "...", false, 0600), 6);
	assert_int_equal(mk(f, VFS_ROOT_INO, "\xff\x01 sp", false, 0600), 7);
}

static void test_readdir_format(void **state)
{
	struct fx *f = *state;
	struct buf d;
	struct cursor c;
	assert_int_equal(mk(f, VFS_ROOT_INO, "b", false, 0600), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "a", true, 0700), 3);
	assert_int_equal(mk(f, 3, "inner", false, 0600), 4);

	buf_init(&d);
	buf_put_raw(&d, "prefix", 6); /* readdir appends */
	assert_int_equal(store_readdir(f->s, VFS_ROOT_INO, &d), 0);
	assert_memory_equal(d.data, "prefix", 6);
	cursor_init(&c, d.data + 6, d.len - 6);
	assert_int_equal(cursor_u32(&c), 2);
	assert_int_equal(cursor_u64(&c), 2);
	assert_int_equal(cursor_u32(&c), S_IFREG | 0600);
	assert_int_equal(cursor_u32(&c), 1);
	assert_memory_equal(cursor_raw(&c, 1), "b", 1);
	assert_int_equal(cursor_u64(&c), 3);
	assert_int_equal(cursor_u32(&c), S_IFDIR | 0700);
	assert_int_equal(cursor_u32(&c), 1);
	assert_memory_equal(cursor_raw(&c, 1), "a", 1);
	assert_int_equal(cursor_done(&c), 0);

	size_t len = d.len;
	assert_int_equal(store_readdir(f->s, 2, &d), -ENOTDIR);
	assert_int_equal(store_readdir(f->s, 77, &d), -ENOENT);
	assert_int_equal(d.len, len);
	buf_free(&d);
}

static void test_set_value(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	assert_int_equal(mk(f, VFS_ROOT_INO, "f", false, 0600), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "d", true, 0700), 3);
	assert_int_equal(setval(f, 2, "hello"), 2);
	assert_value(f, 2, "hello");
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.size, 5);
	assert_int_equal(a.mtime_ns, 3000);
	assert_int_equal(a.ctime_ns, 3000);
	assert_int_equal(setval(f, 2, ""), 2);
	assert_value(f, 2, "");

	assert_fails_unchanged(f, setval(f, 3, "x"), -EISDIR);
	assert_fails_unchanged(f, setval(f, VFS_ROOT_INO, "x"), -EISDIR);
	assert_fails_unchanged(f, setval(f, 99, "x"), -ENOENT);

	uint8_t *big = malloc(VFS_MAX_VALUE + 1);
	assert_non_null(big);
	memset(big, 'v', VFS_MAX_VALUE + 1);
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_SET_VALUE;
	c.ino = 2;
	c.value = big;
	c.value_len = VFS_MAX_VALUE + 1;
	assert_fails_unchanged(f, apply(f, c), -EFBIG);
	c.value_len = VFS_MAX_VALUE;
	assert_int_equal(apply(f, c), 2);
	struct buf v;
	buf_init(&v);
	assert_int_equal(store_read(f->s, 2, &v), 0);
	assert_int_equal(v.len, VFS_MAX_VALUE);
	assert_memory_equal(v.data, big, VFS_MAX_VALUE);
	buf_free(&v);
	free(big);
	assert_int_equal(store_read(f->s, 99, &v), -ENOENT);
}

/* A write by someone other than root drops set-user-ID, and set-group-ID
 * when the file is group-executable; root's write keeps both. */
static void test_unprivileged_write_drops_setid(void **state)
{
	struct fx *f = *state;
	static const struct {
		uint32_t before, after;
	} cases[] = {
		{ 04755, 0755 }, { 06775, 0775 }, { 02775, 0775 },
		{ 02664, 02664 }, /* no group execute: set-group-ID stays */
		{ 0644, 0644 },
	};
	struct vfs_attr a;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char name[16];
		snprintf(name, sizeof name, "s%zu", i);
		int64_t ino = mk(f, VFS_ROOT_INO, name, false, cases[i].before);
		assert_true(ino > 0);
		struct cmd c;
		memset(&c, 0, sizeof(c));
		c.type = CMD_SET_VALUE;
		c.ino = (uint64_t)ino;
		c.value = (const uint8_t *)"x";
		c.value_len = 1;
		assert_int_equal(apply(f, c), ino); /* root's write */
		assert_int_equal(store_getattr(f->s, (uint64_t)ino, &a), 0);
		assert_int_equal(a.mode & 07777, cases[i].before);
		c.flags = CMD_SET_VALUE_UNPRIVILEGED;
		assert_int_equal(apply(f, c), ino);
		assert_int_equal(store_getattr(f->s, (uint64_t)ino, &a), 0);
		assert_int_equal(a.mode & 07777, cases[i].after);
		assert_value(f, (uint64_t)ino, "x");
	}
}

/* atime is the creation time until set; writes and truncation keep it;
 * setting atime and setting mtime leave each other alone; both change
 * ctime. */
static void test_atime(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	assert_int_equal(mk(f, VFS_ROOT_INO, "f", false, 0600), 2); /* seq 1 */
	assert_int_equal(mk(f, VFS_ROOT_INO, "d", true, 0700), 3);  /* seq 2 */
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.atime_ns, 1000);
	assert_int_equal(a.mtime_ns, 1000);
	assert_int_equal(lookup(f, VFS_ROOT_INO, "d", &a), 0);
	assert_int_equal(a.atime_ns, 2000);

	assert_int_equal(setval(f, 2, "abc"), 2); /* seq 3 */
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.mtime_ns, 3000);
	assert_int_equal(a.atime_ns, 1000);

	/* seq 4: atime alone (touch -a). */
	assert_int_equal(set_times(f, 2, VFS_SET_ATIME, 777, 1000000000000000000), 2);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.atime_ns, 1000000000000000000);
	assert_int_equal(a.mtime_ns, 3000);
	assert_int_equal(a.ctime_ns, 4000);

	/* seq 5: mtime alone (touch -m). */
	assert_int_equal(set_times(f, 2, VFS_SET_MTIME, 1500000000000000000, 888), 2);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.mtime_ns, 1500000000000000000);
	assert_int_equal(a.atime_ns, 1000000000000000000);
	assert_int_equal(a.ctime_ns, 5000);

	/* seq 6: both, including times before the epoch; seq 7: a truncate
	 * and a write keep atime. */
	assert_int_equal(set_times(f, 2, VFS_SET_MTIME | VFS_SET_ATIME, -3, -4), 2);
	assert_int_equal(setattr(f, 2, VFS_SET_SIZE, 0, 0, 0, 1, 0), 2);
	assert_int_equal(setval(f, 2, "xyz"), 2);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.atime_ns, -4);
	assert_int_equal(a.mtime_ns, 8000);

	/* Directories too. */
	assert_int_equal(set_times(f, 3, VFS_SET_ATIME, 0, 42), 3);
	assert_int_equal(store_getattr(f->s, 3, &a), 0);
	assert_int_equal(a.atime_ns, 42);
	assert_int_equal(a.mtime_ns, 2000);

	/* What a version 2 SETATTR with the bit decodes to stays refused. */
	assert_fails_unchanged(f, set_times(f, 2, CMD_SETATTR_REFUSED | VFS_SET_MTIME, 1, 0),
			       -EINVAL);
}

static void test_setattr(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	assert_int_equal(mk(f, VFS_ROOT_INO, "f", false, 0600), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "d", true, 0700), 3);
	assert_int_equal(setval(f, 2, "abcdef"), 2);

	/* seq 4: mode keeps the type; uid/gid; explicit mtime. */
	assert_int_equal(setattr(f, 2, VFS_SET_MODE | VFS_SET_UID | VFS_SET_GID | VFS_SET_MTIME,
				 S_IFDIR | 02644, 5, 6, 0, 123),
			 2);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.mode, S_IFREG | 02644);
	assert_int_equal(a.uid, 5);
	assert_int_equal(a.gid, 6);
	assert_int_equal(a.mtime_ns, 123);
	assert_int_equal(a.ctime_ns, 4000);
	assert_int_equal(a.size, 6);

	/* seq 5: truncate. */
	assert_int_equal(setattr(f, 2, VFS_SET_SIZE, 0, 0, 0, 3, 0), 2);
	assert_value(f, 2, "abc");
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.size, 3);
	assert_int_equal(a.mtime_ns, 5000);
	assert_int_equal(a.uid, 5);

	/* seq 6: zero-extend. */
	assert_int_equal(setattr(f, 2, VFS_SET_SIZE, 0, 0, 0, 6, 0), 2);
	struct buf v;
	buf_init(&v);
	assert_int_equal(store_read(f->s, 2, &v), 0);
	assert_int_equal(v.len, 6);
	assert_memory_equal(v.data, "abc\0\0\0", 6);
	buf_free(&v);

	/* Directories: mode is fine, size is not. */
	assert_int_equal(setattr(f, 3, VFS_SET_MODE, 0755, 0, 0, 0, 0), 3);
	assert_int_equal(store_getattr(f->s, 3, &a), 0);
	assert_int_equal(a.mode, S_IFDIR | 0755);
	assert_fails_unchanged(f, setattr(f, 3, VFS_SET_SIZE, 0, 0, 0, 0, 0), -EISDIR);
	assert_fails_unchanged(f, setattr(f, 2, VFS_SET_SIZE, 0, 0, 0, VFS_MAX_VALUE + 1, 0),
			       -EFBIG);
	assert_fails_unchanged(f, setattr(f, 99, VFS_SET_MODE, 0, 0, 0, 0, 0), -ENOENT);
	assert_fails_unchanged(f, setattr(f, 2, 0x100, 0, 0, 0, 0, 0), -EINVAL);
	assert_int_equal(setattr(f, 2, VFS_SET_SIZE, 0, 0, 0, VFS_MAX_VALUE, 0), 2);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.size, VFS_MAX_VALUE);
}

static void test_unlink_rmdir(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	uint64_t files, bytes;
	assert_int_equal(mk(f, VFS_ROOT_INO, "f", false, 0600), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "d", true, 0700), 3);
	assert_int_equal(mk(f, 3, "g", false, 0600), 4);
	assert_int_equal(setval(f, 2, "12345"), 2);
	assert_int_equal(setval(f, 4, "678"), 4);
	store_stats(f->s, &files, &bytes);
	assert_int_equal(files, 2);
	assert_int_equal(bytes, 8);

	assert_fails_unchanged(f, rm(f, VFS_ROOT_INO, "d", false), -EISDIR);
	assert_fails_unchanged(f, rm(f, VFS_ROOT_INO, "f", true), -ENOTDIR);
	assert_fails_unchanged(f, rm(f, VFS_ROOT_INO, "d", true), -ENOTEMPTY);
	assert_fails_unchanged(f, rm(f, VFS_ROOT_INO, "nope", false), -ENOENT);
	assert_fails_unchanged(f, rm(f, VFS_ROOT_INO, "nope", true), -ENOENT);
	assert_fails_unchanged(f, rm(f, 99, "f", false), -ENOENT);
	assert_fails_unchanged(f, rm(f, 2, "f", false), -ENOTDIR);
	assert_fails_unchanged(f, rm(f, VFS_ROOT_INO, "..", true), -EINVAL);

	assert_int_equal(rm(f, 3, "g", false), 0);
	assert_int_equal(lookup(f, 3, "g", &a), -ENOENT);
	assert_int_equal(store_getattr(f->s, 4, &a), -ENOENT);
	assert_int_equal(store_getattr(f->s, 3, &a), 0);
	assert_int_equal(a.mtime_ns, (int64_t)f->seq * 1000);
	assert_int_equal(rm(f, VFS_ROOT_INO, "d", true), 0);
	assert_int_equal(rm(f, VFS_ROOT_INO, "f", false), 0);
	assert_int_equal(store_getattr(f->s, VFS_ROOT_INO, &a), 0);
	assert_int_equal(a.nlink, 2);
	store_stats(f->s, &files, &bytes);
	assert_int_equal(files, 0);
	assert_int_equal(bytes, 0);
	/* Inode numbers are never reused. */
	assert_int_equal(mk(f, VFS_ROOT_INO, "f", false, 0600), 5);
}

static void test_rename_basic(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	assert_int_equal(mk(f, VFS_ROOT_INO, "a", true, 0700), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "b", true, 0700), 3);
	assert_int_equal(mk(f, 2, "x", false, 0600), 4);
	assert_int_equal(setval(f, 4, "xval"), 4);

	/* Move across directories: value and inode kept, name re-bound. */
	assert_int_equal(mv(f, 2, "x", 3, "y", 0), 0);
	assert_int_equal(lookup(f, 2, "x", &a), -ENOENT);
	assert_int_equal(ino_of(f, 3, "y"), 4);
	assert_value(f, 4, "xval");
	assert_int_equal(store_getattr(f->s, 4, &a), 0);
	assert_int_equal(a.ctime_ns, (int64_t)f->seq * 1000);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.mtime_ns, (int64_t)f->seq * 1000);
	assert_int_equal(store_getattr(f->s, 3, &a), 0);
	assert_int_equal(a.mtime_ns, (int64_t)f->seq * 1000);

	/* Rename in place; same source and target is a no-op. */
	assert_int_equal(mv(f, 3, "y", 3, "z", 0), 0);
	assert_int_equal(ino_of(f, 3, "z"), 4);
	assert_fails_unchanged(f, mv(f, 3, "z", 3, "z", 0), 0);
	assert_fails_unchanged(f, mv(f, 3, "z", 3, "z", VFS_RENAME_EXCHANGE), 0);

	/* Replace a file: the old target is gone. */
	assert_int_equal(mk(f, 3, "w", false, 0600), 5);
	assert_int_equal(setval(f, 5, "wval"), 5);
	assert_int_equal(mv(f, 3, "w", 3, "z", 0), 0);
	assert_int_equal(ino_of(f, 3, "z"), 5);
	assert_value(f, 5, "wval");
	assert_int_equal(store_getattr(f->s, 4, &a), -ENOENT);
	assert_int_equal(lookup(f, 3, "w", &a), -ENOENT);

	/* Directory moves carry their subtree. */
	assert_int_equal(mv(f, VFS_ROOT_INO, "b", 2, "b2", 0), 0);
	assert_int_equal(ino_of(f, 2, "b2"), 3);
	assert_int_equal(ino_of(f, 3, "z"), 5);
	assert_int_equal(store_getattr(f->s, 2, &a), 0);
	assert_int_equal(a.nlink, 3);
	assert_int_equal(store_getattr(f->s, VFS_ROOT_INO, &a), 0);
	assert_int_equal(a.nlink, 3);
}

static char *path_of(struct fx *f, uint64_t ino, struct buf *b)
{
	buf_init(b);
	int rc = store_path(f->s, ino, b);
	buf_put_u8(b, 0);
	return rc == 0 ? (char *)b->data : NULL;
}

/* The audit log's full paths: rebuilt from the parents, following renames. */
static void test_path(void **state)
{
	struct fx *f = *state;
	struct buf b;
	assert_int_equal(mk(f, VFS_ROOT_INO, "db", true, 0700), 2);
	assert_int_equal(mk(f, 2, "password", false, 0600), 3);
	assert_string_equal(path_of(f, VFS_ROOT_INO, &b), "/");
	buf_free(&b);
	assert_string_equal(path_of(f, 2, &b), "/db");
	buf_free(&b);
	assert_string_equal(path_of(f, 3, &b), "/db/password");
	buf_free(&b);
	assert_int_equal(mk(f, VFS_ROOT_INO, "app", true, 0700), 4);
	assert_int_equal(mv(f, VFS_ROOT_INO, "db", 4, "db2", 0), 0);
	assert_string_equal(path_of(f, 3, &b), "/app/db2/password");
	buf_free(&b);
	assert_null(path_of(f, 99, &b));
	buf_free(&b);
}

static void test_rename_errors(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mk(f, VFS_ROOT_INO, "d1", true, 0700), 2);
	assert_int_equal(mk(f, 2, "sub", true, 0700), 3);
	assert_int_equal(mk(f, 3, "deep", true, 0700), 4);
	assert_int_equal(mk(f, VFS_ROOT_INO, "full", true, 0700), 5);
	assert_int_equal(mk(f, 5, "child", false, 0600), 6);
	assert_int_equal(mk(f, VFS_ROOT_INO, "file", false, 0600), 7);
	assert_int_equal(mk(f, VFS_ROOT_INO, "file2", false, 0600), 8);
	assert_int_equal(mk(f, VFS_ROOT_INO, "empty", true, 0700), 9);

	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "nope", VFS_ROOT_INO, "x", 0), -ENOENT);
	assert_fails_unchanged(f, mv(f, 99, "file", VFS_ROOT_INO, "x", 0), -ENOENT);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", 99, "x", 0), -ENOENT);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", 8, "x", 0), -ENOTDIR);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "a/b", 0), -EINVAL);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "..", 0), -EINVAL);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "", 0), -EINVAL);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "x", 0x4), -EINVAL);
	assert_fails_unchanged(f,
			       mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "file2",
				  VFS_RENAME_NOREPLACE | VFS_RENAME_EXCHANGE),
			       -EINVAL);
	assert_fails_unchanged(
		f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "file2", VFS_RENAME_NOREPLACE), -EEXIST);
	assert_fails_unchanged(
		f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "nope", VFS_RENAME_EXCHANGE), -ENOENT);
	/* Directory over non-empty directory, over file; file over directory. */
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "empty", VFS_ROOT_INO, "full", 0),
			       -ENOTEMPTY);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "empty", VFS_ROOT_INO, "file", 0), -ENOTDIR);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "file", VFS_ROOT_INO, "empty", 0), -EISDIR);
	/* Into its own subtree (itself, a child, a grandchild). */
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "d1", 2, "x", 0), -EINVAL);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "d1", 3, "x", 0), -EINVAL);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "d1", 4, "x", 0), -EINVAL);
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "d1", 4, "x", VFS_RENAME_NOREPLACE),
			       -EINVAL);
	/* Over an ancestor: the ancestor is not empty. */
	assert_fails_unchanged(f, mv(f, 3, "deep", VFS_ROOT_INO, "d1", 0), -ENOTEMPTY);
	/* Exchange that would put a directory inside itself. */
	assert_fails_unchanged(f, mv(f, VFS_ROOT_INO, "d1", 3, "deep", VFS_RENAME_EXCHANGE),
			       -EINVAL);
	assert_fails_unchanged(f, mv(f, 3, "deep", VFS_ROOT_INO, "d1", VFS_RENAME_EXCHANGE),
			       -EINVAL);

	/* Directory over an empty directory works. */
	assert_int_equal(mv(f, VFS_ROOT_INO, "full", VFS_ROOT_INO, "empty", 0), 0);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "empty"), 5);
	assert_int_equal(ino_of(f, 5, "child"), 6);
	struct vfs_attr a;
	assert_int_equal(store_getattr(f->s, 9, &a), -ENOENT);
}

static void test_rename_exchange(void **state)
{
	struct fx *f = *state;
	assert_int_equal(mk(f, VFS_ROOT_INO, "a", true, 0700), 2);
	assert_int_equal(mk(f, VFS_ROOT_INO, "b", false, 0600), 3);
	assert_int_equal(mk(f, 2, "c", false, 0600), 4);
	assert_int_equal(setval(f, 3, "bval"), 3);
	assert_int_equal(setval(f, 4, "cval"), 4);

	/* Same directory. */
	assert_int_equal(mv(f, VFS_ROOT_INO, "a", VFS_ROOT_INO, "b", VFS_RENAME_EXCHANGE), 0);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "a"), 3);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "b"), 2);
	assert_int_equal(ino_of(f, 2, "c"), 4);
	/* Across directories. */
	assert_int_equal(mv(f, VFS_ROOT_INO, "a", 2, "c", VFS_RENAME_EXCHANGE), 0);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "a"), 4);
	assert_int_equal(ino_of(f, 2, "c"), 3);
	assert_value(f, 3, "bval");
	assert_value(f, 4, "cval");

	struct buf fp;
	buf_init(&fp);
	fingerprint(f->s, &fp); /* every name and value still decrypts */
	buf_free(&fp);
}

static void test_unknown_type(void **state)
{
	struct fx *f = *state;
	struct cmd c = named(0, VFS_ROOT_INO, "x");
	assert_fails_unchanged(f, apply(f, c), -EINVAL);
	c.type = CMD_TYPE_MAX_;
	assert_fails_unchanged(f, apply(f, c), -EINVAL);
	c.type = 200;
	assert_fails_unchanged(f, apply(f, c), -EINVAL);
}

static void test_determinism(void **state)
{
	(void)state;
	struct fx *a = fx_new(), *b = fx_new();
	script(a);
	script(b);
	assert_same_tree(a->s, b->s);
	/* The next inode number agrees too. */
	assert_int_equal(mk(a, VFS_ROOT_INO, "n", false, 0600), mk(b, VFS_ROOT_INO, "n", false, 0600));
	fx_free(a);
	fx_free(b);
}

static void test_sealed(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	struct buf v;
	assert_int_equal(mk(f, VFS_ROOT_INO, "f", false, 0600), 2);
	assert_int_equal(setval(f, 2, "val"), 2);

	barrier_seal(f->b);
	buf_init(&v);
	assert_int_equal(store_lookup(f->s, VFS_ROOT_INO, (const uint8_t *)"f", 1, &a), -ENOKEY);
	assert_int_equal(store_getattr(f->s, 2, &a), -ENOKEY);
	assert_int_equal(store_read(f->s, 2, &v), -ENOKEY);
	assert_int_equal(store_readdir(f->s, VFS_ROOT_INO, &v), -ENOKEY);
	assert_int_equal(v.len, 0);

	/* Applying needs the keys: fatal, and nothing is half-applied. */
	int fatal = 0;
	struct cmd c = named(CMD_CREATE, VFS_ROOT_INO, "g");
	c.client_id = 5;
	c.seq = 1;
	assert_int_equal(store_apply(f->s, &c, &fatal), -EIO);
	assert_int_equal(fatal, 1);

	assert_int_equal(barrier_unseal(f->b, f->root_key, f->sealed.data, f->sealed.len), 0);
	assert_int_equal(lookup(f, VFS_ROOT_INO, "g", &a), -ENOENT);
	assert_value(f, 2, "val");
	/* The failed attempt was not recorded as applied. */
	fatal = 0;
	assert_int_equal(store_apply(f->s, &c, &fatal), 3);
	assert_int_equal(fatal, 0);
	buf_free(&v);
}

static void test_lookup_names(void **state)
{
	struct fx *f = *state;
	struct vfs_attr a;
	char big[VFS_MAX_NAME + 2];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(lookup(f, VFS_ROOT_INO, "", &a), -ENOENT);
	assert_int_equal(lookup(f, VFS_ROOT_INO, ".", &a), -ENOENT);
	assert_int_equal(lookup(f, VFS_ROOT_INO, big, &a), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		STORE_TEST(test_root),
		STORE_TEST(test_create_mkdir),
		STORE_TEST(test_readdir_format),
		STORE_TEST(test_readdirplus_pages),
		STORE_TEST(test_set_value),
		STORE_TEST(test_unprivileged_write_drops_setid),
		STORE_TEST(test_setattr),
		STORE_TEST(test_atime),
		STORE_TEST(test_unlink_rmdir),
		STORE_TEST(test_rename_basic),
		STORE_TEST(test_path),
		STORE_TEST(test_rename_errors),
		STORE_TEST(test_rename_exchange),
		STORE_TEST(test_unknown_type),
		cmocka_unit_test(test_determinism),
		STORE_TEST(test_sealed),
		STORE_TEST(test_lookup_names),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
