/* Unit tests of src/lib/auditlog.c: JSON escaping, the time stamp, and the
 * file (created 0600, appended, reopened after a move, never a symlink). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/auditlog.h"
#include "lib/fileutil.h"

static char *line_of(struct buf *b, const char *s, size_t len)
{
	struct auditlog_line l;
	buf_init(b);
	auditlog_line_begin(&l, b);
	auditlog_line_str(&l, "k", s, len);
	auditlog_line_end(&l);
	buf_put_u8(b, 0);
	assert_int_equal(b->err, 0);
	return (char *)b->data;
}

/* Quotes, backslashes and control characters cannot end the string or
 * the line; bytes that are not UTF-8 are replaced, valid UTF-8 kept. */
static void test_escaping(void **state)
{
	(void)state;
	struct buf b;
	assert_string_equal(line_of(&b, "plain", 5), "{\"k\":\"plain\"}\n");
	buf_free(&b);
	assert_string_equal(line_of(&b, "a\"b\\c", 5), "{\"k\":\"a\\\"b\\\\c\"}\n");
	buf_free(&b);
	assert_string_equal(line_of(&b, "x\ny\t\x01\x7f", 6),
			    "{\"k\":\"x\\u000ay\\u0009\\u0001\\u007f\"}\n");
	buf_free(&b);
	assert_string_equal(line_of(&b, "\xc3\xa9t\xc3\xa9", 5), "{\"k\":\"\xc3\xa9t\xc3\xa9\"}\n");
	buf_free(&b);
	/* A lone continuation byte, a truncated sequence, an overlong "/". */
	assert_string_equal(line_of(&b, "\x80z\xe2\x82\xc0\xaf", 6),
			    "{\"k\":\"\\ufffdz\\ufffd\\ufffd\\ufffd\\ufffd\"}\n");
	buf_free(&b);
	assert_string_equal(line_of(&b, "a\0b", 3), "{\"k\":\"a\\u0000b\"}\n");
	buf_free(&b);
}

static void test_fields_and_time(void **state)
{
	(void)state;
	struct buf b;
	struct auditlog_line l;
	buf_init(&b);
	auditlog_line_begin(&l, &b);
	auditlog_line_time(&l, "time", INT64_C(1796625253) * 1000000000 + 5);
	auditlog_line_u64(&l, "n", UINT64_MAX);
	auditlog_line_null(&l, "x");
	auditlog_line_cstr(&l, "s", NULL);
	auditlog_line_cstr(&l, "t", "v");
	auditlog_line_end(&l);
	buf_put_u8(&b, 0);
	assert_string_equal((char *)b.data,
			    "{\"time\":\"2026-12-07T06:34:13.000000005Z\",\"n\":18446744073709551615,"
			    "\"x\":null,\"s\":null,\"t\":\"v\"}\n");
	buf_free(&b);
}

static void test_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/vfs-auditlog-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128], moved[128], link[128];
	snprintf(path, sizeof(path), "%s/audit.log", dir);
	snprintf(moved, sizeof(moved), "%s/audit.log.1", dir);
	snprintf(link, sizeof(link), "%s/link.log", dir);

	struct auditlog *a;
	mode_t old = umask(0);
	assert_int_equal(auditlog_open(&a, path), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(auditlog_append(a, "one\n", 4), 0);
	assert_int_equal(rename(path, moved), 0);
	assert_int_equal(auditlog_append(a, "two\n", 4), 0); /* still the moved file */
	assert_int_equal(auditlog_reopen(a), 0);
	assert_int_equal(auditlog_append(a, "three\n", 6), 0);
	auditlog_close(a);

	struct buf b;
	buf_init(&b);
	assert_int_equal(file_read_all(moved, 100, &b), 0);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "one\ntwo\n", 8);
	buf_clear(&b);
	b.len = 0;
	assert_int_equal(file_read_all(path, 100, &b), 0);
	assert_int_equal(b.len, 6);
	buf_free(&b);

	/* A symlink planted at the path is not followed. */
	assert_int_equal(symlink(moved, link), 0);
	assert_int_equal(auditlog_open(&a, link), -ELOOP);

	unlink(path);
	unlink(moved);
	unlink(link);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_fields_and_time),
		cmocka_unit_test(test_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
