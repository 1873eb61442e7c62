/* Unit tests for src/lib: struct buf / struct cursor codecs and the
 * fileutil helpers. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/fileutil.h"

static void test_round_trip_all_widths(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_put_u8(&b, 0xfe);
	buf_put_u16(&b, 0xbeef);
	buf_put_u32(&b, 0xdeadbeefu);
	buf_put_u64(&b, 0x0123456789abcdefull);
	buf_put_i32(&b, INT32_MIN);
	buf_put_i32(&b, -2);
	buf_put_i64(&b, INT64_MIN);
	buf_put_i64(&b, -3);
	buf_put_raw(&b, "xyz", 3);
	buf_put_blob(&b, "hello", 5);
	buf_put_blob(&b, NULL, 0);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 1 + 2 + 4 + 8 + 4 + 4 + 8 + 8 + 3 + 4 + 5 + 4);

	struct cursor c;
	size_t n;
	cursor_init(&c, b.data, b.len);
	assert_int_equal(cursor_u8(&c), 0xfe);
	assert_int_equal(cursor_u16(&c), 0xbeef);
	assert_int_equal(cursor_u32(&c), 0xdeadbeefu);
	assert_true(cursor_u64(&c) == 0x0123456789abcdefull);
	assert_true(cursor_i32(&c) == INT32_MIN);
	assert_true(cursor_i32(&c) == -2);
	assert_true(cursor_i64(&c) == INT64_MIN);
	assert_true(cursor_i64(&c) == -3);
	assert_memory_equal(cursor_raw(&c, 3), "xyz", 3);
	const uint8_t *p = cursor_blob(&c, 5, &n);
	assert_non_null(p);
	assert_int_equal(n, 5);
	assert_memory_equal(p, "hello", 5);
	p = cursor_blob(&c, 5, &n);
	assert_non_null(p); /* an empty blob is not an error */
	assert_int_equal(n, 0);
	assert_int_equal(cursor_done(&c), 0);
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
}

/* The wire format is little-endian whatever the host is. */
static void test_little_endian_layout(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_put_u16(&b, 0x0102);
	buf_put_u32(&b, 0x03040506u);
	buf_put_u64(&b, 0x0708090a0b0c0d0eull);
	buf_put_blob(&b, "A", 1);
	static const uint8_t want[] = {
		0x02, 0x01, 0x06, 0x05, 0x04, 0x03,
		0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07,
		0x01, 0x00, 0x00, 0x00, 'A',
	};
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	buf_free(&b);
}

static void test_growth_keeps_content(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	for (unsigned i = 0; i < 10000; i++)
		buf_put_u8(&b, (uint8_t)(i * 7));
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 10000);
	assert_true(b.cap >= b.len);
	for (unsigned i = 0; i < 10000; i++)
		assert_int_equal(b.data[i], (uint8_t)(i * 7));
	buf_free(&b);
}

static void test_blob_max_enforced(void **state)
{
	(void)state;
	struct buf b;
	struct cursor c;
	size_t n = 99;
	buf_init(&b);
	buf_put_blob(&b, "0123456789", 10);

	cursor_init(&c, b.data, b.len);
	assert_null(cursor_blob(&c, 9, &n));
	assert_int_equal(n, 0);
	assert_int_equal(c.err, -EBADMSG);
	assert_int_equal(cursor_done(&c), -EBADMSG);

	cursor_init(&c, b.data, b.len);
	assert_non_null(cursor_blob(&c, 10, &n));
	assert_int_equal(n, 10);
	assert_int_equal(cursor_done(&c), 0);

	/* A length prefix larger than the input is an error, not an overread. */
	cursor_init(&c, b.data, b.len - 1);
	assert_null(cursor_blob(&c, 100, &n));
	assert_int_equal(n, 0);
	assert_int_equal(cursor_done(&c), -EBADMSG);
	buf_free(&b);
}

static void test_read_past_end(void **state)
{
	(void)state;
	static const uint8_t in[] = { 1, 2, 3 };
	struct cursor c;

	cursor_init(&c, in, sizeof(in));
	assert_int_equal(cursor_u32(&c), 0);
	assert_int_equal(c.err, -EBADMSG);
	/* The error is sticky: later reads return zero even if bytes remain. */
	assert_int_equal(cursor_u8(&c), 0);
	assert_null(cursor_raw(&c, 1));
	assert_int_equal(cursor_done(&c), -EBADMSG);

	cursor_init(&c, in, sizeof(in));
	assert_int_equal(cursor_u16(&c), 0x0201);
	assert_int_equal(cursor_u16(&c), 0);
	assert_int_equal(cursor_done(&c), -EBADMSG);

	cursor_init(&c, in, sizeof(in));
	assert_true(cursor_u64(&c) == 0);
	assert_true(cursor_i64(&c) == 0);
	assert_int_equal(cursor_i32(&c), 0);
	assert_int_equal(cursor_done(&c), -EBADMSG);

	cursor_init(&c, NULL, 0);
	assert_int_equal(cursor_done(&c), 0);
	assert_int_equal(cursor_u8(&c), 0);
	assert_int_equal(cursor_done(&c), -EBADMSG);
}

static void test_cursor_done_leftovers(void **state)
{
	(void)state;
	static const uint8_t in[] = { 1, 2 };
	struct cursor c;
	cursor_init(&c, in, sizeof(in));
	assert_int_equal(cursor_u8(&c), 1);
	assert_int_equal(c.err, 0);
	assert_int_equal(cursor_done(&c), -EBADMSG);
	assert_int_equal(cursor_u8(&c), 2);
	assert_int_equal(cursor_done(&c), 0);
}

static void test_steal(void **state)
{
	(void)state;
	struct buf b;
	size_t n = 0;
	buf_init(&b);
	buf_put_raw(&b, "secret", 6);
	uint8_t *p = buf_steal(&b, &n);
	assert_non_null(p);
	assert_int_equal(n, 6);
	assert_memory_equal(p, "secret", 6);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
	assert_int_equal(b.err, 0);
	free(p);

	/* The emptied buffer is reusable. */
	buf_put_u8(&b, 9);
	assert_int_equal(b.len, 1);
	buf_free(&b);

	p = buf_steal(&b, &n);
	assert_null(p);
	assert_int_equal(n, 0);
}

/* Text of any length, appended without a NUL. */
static void test_printf(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "%s: %d\n", "term", 7);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "term: 7\n", 8);
	char long_line[3000];
	memset(long_line, 'x', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	buf_printf(&b, "%s", long_line);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 8 + sizeof(long_line) - 1);
	assert_int_equal(b.data[b.len - 1], 'x');
	buf_free(&b);
}

static void test_clear(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_put_raw(&b, "abcdef", 6);
	uint8_t *data = b.data;
	size_t cap = b.cap;
	b.err = -ENOMEM; /* as after a failed put */
	buf_clear(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.err, 0);
	assert_ptr_equal(b.data, data); /* allocation kept */
	assert_int_equal(b.cap, cap);
	static const uint8_t zero[6];
	assert_memory_equal(b.data, zero, 6); /* old bytes wiped */
	buf_put_raw(&b, "xy", 2);
	assert_int_equal(b.len, 2);
	assert_memory_equal(b.data, "xy", 2);
	buf_free(&b);

	buf_clear(&b); /* on an empty buffer: no crash */
	assert_int_equal(b.len, 0);
}

static void test_error_makes_puts_noops(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_put_u8(&b, 1);
	b.err = -ENOMEM;
	buf_put_u32(&b, 5);
	buf_put_raw(&b, "zz", 2);
	assert_int_equal(b.len, 1);
	assert_int_equal(buf_reserve(&b, 1), -ENOMEM);
	buf_free(&b);
}

/* ---- fileutil ---- */

/* fsync is wrapped at link time (-Wl,--wrap=fsync): the inodes synced are
 * recorded, so that a test can tell what would survive a power loss. */
#define SYNCED_MAX 64
static ino_t synced[SYNCED_MAX];
static size_t n_synced;

int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __wrap_fsync(int fd)
{
	struct stat st;
	if (fstat(fd, &st) == 0 && n_synced < SYNCED_MAX)
		synced[n_synced++] = st.st_ino;
	return __real_fsync(fd);
}

static bool was_synced(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	for (size_t i = 0; i < n_synced; i++)
		if (synced[i] == st.st_ino)
			return true;
	return false;
}

static char tmpdir[PATH_MAX];

static int make_tmpdir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vaultfs-test-buf-XXXXXX");
	return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static void join(char *out, size_t outlen, const char *name)
{
	snprintf(out, outlen, "%.2048s/%.1024s", tmpdir, name);
}

static void remove_tree(void)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
}

static void read_back(const char *path, const char *want)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(file_read_all(path, 1 << 20, &b), 0);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(b.data, want, b.len);
	buf_free(&b);
}

static void test_write_atomic_replaces(void **state)
{
	(void)state;
	char path[PATH_MAX + 1024];
	char tmp[PATH_MAX + 1100];
	struct stat st;
	assert_int_equal(make_tmpdir(NULL), 0);
	join(path, sizeof(path), "state");

	n_synced = 0;
	assert_int_equal(file_write_atomic(path, "first version", 13, 0600), 0);
	read_back(path, "first version");
	assert_true(was_synced(path));   /* the data, before the rename */
	assert_true(was_synced(tmpdir)); /* the rename itself */
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(file_write_atomic(path, "2nd", 3, 0600), 0);
	read_back(path, "2nd"); /* shorter: no tail of the old content */
	assert_int_equal(file_write_atomic(path, NULL, 0, 0600), 0);
	read_back(path, "");

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(access(tmp, F_OK), -1); /* no temporary left behind */

	char missing[PATH_MAX + 1024];
	join(missing, sizeof(missing), "no/such/dir/file");
	assert_int_equal(file_write_atomic(missing, "x", 1, 0600), -ENOENT);

	/* A temporary planted as a symlink (someone who can write the
	 * directory) is replaced, never followed; the mode is MODE whatever
	 * the umask. */
	char victim[PATH_MAX + 1024];
	join(victim, sizeof(victim), "victim");
	assert_int_equal(file_write_atomic(victim, "untouched", 9, 0600), 0);
	assert_int_equal(symlink(victim, tmp), 0);
	mode_t old = umask(077);
	assert_int_equal(file_write_atomic(path, "metrics", 7, 0644), 0);
	umask(old);
	read_back(victim, "untouched");
	read_back(path, "metrics");
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	remove_tree();
}

static void test_read_all_limits(void **state)
{
	(void)state;
	char path[PATH_MAX + 1024];
	struct buf b;
	assert_int_equal(make_tmpdir(NULL), 0);
	join(path, sizeof(path), "ten");
	assert_int_equal(file_write_atomic(path, "0123456789", 10, 0600), 0);

	buf_init(&b);
	assert_int_equal(file_read_all(path, 10, &b), 0);
	assert_int_equal(b.len, 10);
	buf_free(&b);

	assert_int_equal(file_read_all(path, 9, &b), -EFBIG);
	buf_free(&b);

	/* The limit is on the file, not on what OUT already held. */
	buf_put_raw(&b, "prefix:", 7);
	assert_int_equal(file_read_all(path, 10, &b), 0);
	assert_int_equal(b.len, 17);
	assert_memory_equal(b.data, "prefix:0123456789", 17);
	buf_free(&b);

	/* Bigger than one read chunk. */
	size_t big = 10000;
	char *data = malloc(big);
	assert_non_null(data);
	for (size_t i = 0; i < big; i++)
		data[i] = (char)('a' + i % 26);
	join(path, sizeof(path), "big");
	assert_int_equal(file_write_atomic(path, data, big, 0600), 0);
	assert_int_equal(file_read_all(path, big, &b), 0);
	assert_int_equal(b.len, big);
	assert_memory_equal(b.data, data, big);
	buf_free(&b);
	assert_int_equal(file_read_all(path, big - 1, &b), -EFBIG);
	buf_free(&b);
	free(data);

	join(path, sizeof(path), "missing");
	assert_int_equal(file_read_all(path, 10, &b), -ENOENT);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	remove_tree();
}

static void test_mkdir_p(void **state)
{
	(void)state;
	char path[PATH_MAX + 1024];
	struct stat st;
	assert_int_equal(make_tmpdir(NULL), 0);

	join(path, sizeof(path), "a/b/c");
	n_synced = 0;
	assert_int_equal(file_mkdir_p(path, 0700), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Each new directory's entry is durable: its parent was synced. */
	char parent[PATH_MAX + 1024];
	assert_true(was_synced(tmpdir));
	join(parent, sizeof(parent), "a");
	assert_true(was_synced(parent));
	join(parent, sizeof(parent), "a/b");
	assert_true(was_synced(parent));
	assert_int_equal(file_mkdir_p(path, 0700), 0); /* existing is fine */

	join(path, sizeof(path), "a/b/d/");
	assert_int_equal(file_mkdir_p(path, 0700), 0); /* trailing slash */
	assert_int_equal(stat(path, &st), 0);

	join(path, sizeof(path), "file");
	assert_int_equal(file_write_atomic(path, "x", 1, 0600), 0);
	assert_int_equal(file_mkdir_p(path, 0700), -ENOTDIR);
	join(path, sizeof(path), "file/sub");
	assert_int_equal(file_mkdir_p(path, 0700), -ENOTDIR);

	assert_int_equal(file_mkdir_p("", 0700), -EINVAL);
	remove_tree();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_all_widths),
		cmocka_unit_test(test_little_endian_layout),
		cmocka_unit_test(test_growth_keeps_content),
		cmocka_unit_test(test_blob_max_enforced),
		cmocka_unit_test(test_read_past_end),
		cmocka_unit_test(test_cursor_done_leftovers),
		cmocka_unit_test(test_steal),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_error_makes_puts_noops),
		cmocka_unit_test(test_write_atomic_replaces),
		cmocka_unit_test(test_read_all_limits),
		cmocka_unit_test(test_mkdir_p),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
