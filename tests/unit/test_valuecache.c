/* Unit tests for src/fuse/valuecache: the values of open files, shared by
 * version, copied on write, within one budget. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fuse/valuecache.h"

static size_t page;

static int setup(void **state)
{
	(void)state;
	page = (size_t)sysconf(_SC_PAGESIZE);
	return 0;
}

static const uint8_t *u8(const char *s)
{
	return (const uint8_t *)s;
}

static bool holds(const struct valuecache_copy *c, const char *want)
{
	size_t len = strlen(want);
	return valuecache_len(c) == len && (len == 0 || memcmp(valuecache_bytes(c), want, len) == 0);
}

static struct valuecache *cache_of_pages(size_t n)
{
	struct valuecache *vc = NULL;
	assert_int_equal(valuecache_new(&vc, n * page), 0);
	return vc;
}

static void test_one_copy_per_inode_and_bytes(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(8);
	struct valuecache_copy *a, *b, *other_version, *other_ino;
	assert_int_equal(valuecache_share(vc, 7, u8("abc"), 3, &a), 0);
	assert_int_equal(valuecache_share(vc, 7, u8("abc"), 3, &b), 0);
	assert_ptr_equal(a, b);
	assert_int_equal(valuecache_used(vc), page);
	/* Another version of the inode, and the same bytes of another. */
	assert_int_equal(valuecache_share(vc, 7, u8("abd"), 3, &other_version), 0);
	assert_int_equal(valuecache_share(vc, 8, u8("abc"), 3, &other_ino), 0);
	assert_ptr_not_equal(other_version, a);
	assert_ptr_not_equal(other_ino, a);
	assert_int_equal(valuecache_used(vc), 3 * page);
	assert_true(holds(a, "abc"));
	assert_true(holds(other_version, "abd"));
	/* A copy lives while anyone holds it. */
	valuecache_drop(vc, a);
	assert_true(holds(b, "abc"));
	assert_int_equal(valuecache_used(vc), 3 * page);
	valuecache_drop(vc, b);
	valuecache_drop(vc, other_version);
	valuecache_drop(vc, other_ino);
	assert_int_equal(valuecache_used(vc), 0);
	valuecache_free(vc);
}

static void test_a_longer_value_is_another_version(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(8);
	struct valuecache_copy *a, *b;
	assert_int_equal(valuecache_share(vc, 7, u8("abc"), 3, &a), 0);
	assert_int_equal(valuecache_share(vc, 7, u8("abcd"), 4, &b), 0);
	assert_ptr_not_equal(a, b);
	valuecache_drop(vc, a);
	valuecache_drop(vc, b);
	valuecache_free(vc);
}

static void test_the_empty_value_takes_nothing(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(1);
	struct valuecache_copy *c = (struct valuecache_copy *)&c;
	assert_int_equal(valuecache_share(vc, 7, NULL, 0, &c), 0);
	assert_null(c);
	assert_int_equal(valuecache_len(c), 0);
	assert_null(valuecache_bytes(c));
	assert_int_equal(valuecache_used(vc), 0);
	valuecache_drop(vc, c);
	valuecache_free(vc);
}

static void test_the_budget_refuses_new_copies_only(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(2);
	uint8_t *big = malloc(page + 1);
	assert_non_null(big);
	memset(big, 'x', page + 1);
	struct valuecache_copy *a, *b, *c = NULL, *again;
	/* Two pages: one value of two pages, whole pages counted. */
	assert_int_equal(valuecache_share(vc, 1, big, page + 1, &a), 0);
	assert_int_equal(valuecache_used(vc), 2 * page);
	assert_int_equal(valuecache_share(vc, 2, u8("s"), 1, &c), -ENOBUFS);
	assert_null(c); /* not written on failure */
	/* What is held already is shared, not charged again. */
	assert_int_equal(valuecache_share(vc, 1, big, page + 1, &again), 0);
	assert_ptr_equal(again, a);
	valuecache_drop(vc, again);
	/* Dropping gives the budget back. */
	valuecache_drop(vc, a);
	assert_int_equal(valuecache_used(vc), 0);
	assert_int_equal(valuecache_share(vc, 2, u8("s"), 1, &b), 0);
	assert_int_equal(valuecache_share(vc, 3, u8("t"), 1, &c), 0);
	assert_int_equal(valuecache_used(vc), 2 * page);
	valuecache_drop(vc, b);
	valuecache_drop(vc, c);
	valuecache_free(vc);
	free(big);
}

static void test_a_write_copies_a_shared_value(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(4);
	struct valuecache_copy *reader, *writer;
	assert_int_equal(valuecache_share(vc, 7, u8("hello"), 5, &reader), 0);
	assert_int_equal(valuecache_share(vc, 7, u8("hello"), 5, &writer), 0);
	assert_ptr_equal(reader, writer);
	assert_int_equal(valuecache_write(vc, &writer, 0, u8("J"), 1), 0);
	assert_ptr_not_equal(reader, writer);
	assert_true(holds(reader, "hello"));
	assert_true(holds(writer, "Jello"));
	assert_int_equal(valuecache_used(vc), 2 * page);
	/* A private copy is written in place, and never shared. */
	struct valuecache_copy *before = writer, *other;
	assert_int_equal(valuecache_write(vc, &writer, 5, u8("!"), 1), 0);
	assert_ptr_equal(writer, before);
	assert_true(holds(writer, "Jello!"));
	assert_int_equal(valuecache_share(vc, 7, u8("Jello!"), 6, &other), 0);
	assert_ptr_not_equal(other, writer);
	valuecache_drop(vc, other);
	/* The last reader gone, the shared copy is too. */
	valuecache_drop(vc, reader);
	assert_int_equal(valuecache_used(vc), page);
	valuecache_drop(vc, writer);
	assert_int_equal(valuecache_used(vc), 0);
	valuecache_free(vc);
}

static void test_a_write_past_the_end_reads_zeros_between(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(4);
	struct valuecache_copy *c = NULL;
	assert_int_equal(valuecache_write(vc, &c, 3, u8("z"), 1), 0);
	assert_int_equal(valuecache_len(c), 4);
	assert_memory_equal(valuecache_bytes(c), "\0\0\0z", 4);
	/* Growing over a page boundary keeps the bytes. */
	assert_int_equal(valuecache_write(vc, &c, page + 10, u8("end"), 3), 0);
	assert_int_equal(valuecache_len(c), page + 13);
	assert_memory_equal(valuecache_bytes(c), "\0\0\0z\0", 5);
	assert_memory_equal(valuecache_bytes(c) + page + 10, "end", 3);
	assert_int_equal(valuecache_bytes(c)[page + 9], 0);
	assert_int_equal(valuecache_used(vc), 2 * page);
	valuecache_drop(vc, c);
	valuecache_free(vc);
}

static void test_a_write_over_budget_changes_nothing(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(2);
	struct valuecache_copy *reader, *writer, *private = NULL;
	assert_int_equal(valuecache_share(vc, 7, u8("abc"), 3, &reader), 0);
	assert_int_equal(valuecache_share(vc, 7, u8("abc"), 3, &writer), 0);
	assert_int_equal(valuecache_write(vc, &private, 0, u8("p"), 1), 0);
	/* Budget full: no room for a copy of the shared value... */
	assert_int_equal(valuecache_write(vc, &writer, 0, u8("X"), 1), -ENOBUFS);
	assert_ptr_equal(writer, reader);
	assert_true(holds(reader, "abc"));
	/* ...nor for a private one to grow. */
	assert_int_equal(valuecache_write(vc, &private, page, u8("q"), 1), -ENOBUFS);
	assert_true(holds(private, "p"));
	assert_int_equal(valuecache_used(vc), 2 * page);
	valuecache_drop(vc, writer);
	valuecache_drop(vc, reader);
	valuecache_drop(vc, private);
	valuecache_free(vc);
}

static void test_resize(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(4);
	struct valuecache_copy *reader, *c;
	assert_int_equal(valuecache_share(vc, 7, u8("secret"), 6, &reader), 0);
	assert_int_equal(valuecache_share(vc, 7, u8("secret"), 6, &c), 0);
	/* The same length: nothing to copy. */
	assert_int_equal(valuecache_resize(vc, &c, 6), 0);
	assert_ptr_equal(c, reader);
	/* A cut makes a private copy of what is left. */
	assert_int_equal(valuecache_resize(vc, &c, 3), 0);
	assert_ptr_not_equal(c, reader);
	assert_true(holds(c, "sec"));
	assert_true(holds(reader, "secret"));
	/* What was cut off reads as zeros when the value grows again. */
	assert_int_equal(valuecache_resize(vc, &c, 6), 0);
	assert_memory_equal(valuecache_bytes(c), "sec\0\0\0", 6);
	assert_int_equal(valuecache_resize(vc, &c, 0), 0);
	assert_int_equal(valuecache_len(c), 0);
	valuecache_drop(vc, c);
	/* A shared value cut to nothing is just dropped. */
	assert_int_equal(valuecache_share(vc, 7, u8("secret"), 6, &c), 0);
	assert_int_equal(valuecache_resize(vc, &c, 0), 0);
	assert_null(c);
	assert_true(holds(reader, "secret"));
	valuecache_drop(vc, reader);
	assert_int_equal(valuecache_used(vc), 0);
	valuecache_free(vc);
}

/* Dropped one-page copies keep their mappings for the next copies, wiped
 * (a new copy reads zeros past its value, as a fresh mapping does), up to
 * VALUECACHE_SPARES of them, outside the budget; larger ones are unmapped. */
static void test_dropped_pages_are_kept_wiped(void **state)
{
	(void)state;
	struct valuecache *vc = cache_of_pages(VALUECACHE_SPARES + 8);
	struct valuecache_copy *c = NULL, *big = NULL;
	assert_int_equal(valuecache_spares(vc), 0);
	uint8_t *full = malloc(page);
	assert_non_null(full);
	memset(full, 0xA5, page);
	/* A value that fills its page, written by a private copy. */
	assert_int_equal(valuecache_write(vc, &c, 0, full, page), 0);
	const uint8_t *mapping = valuecache_bytes(c);
	valuecache_drop(vc, c);
	assert_int_equal(valuecache_spares(vc), 1);
	assert_int_equal(valuecache_used(vc), 0);
	/* The next copy takes that page, all zero past its 3 bytes. */
	assert_int_equal(valuecache_share(vc, 9, u8("abc"), 3, &c), 0);
	assert_int_equal(valuecache_spares(vc), 0);
	assert_ptr_equal(valuecache_bytes(c), mapping);
	assert_true(holds(c, "abc"));
	for (size_t i = 3; i < page; i++)
		assert_int_equal(valuecache_bytes(c)[i], 0);
	assert_int_equal(valuecache_used(vc), page);
	valuecache_drop(vc, c);
	/* A copy of two pages is unmapped, not kept. */
	assert_int_equal(valuecache_resize(vc, &big, page + 1), 0);
	assert_int_equal(valuecache_used(vc), 2 * page);
	valuecache_drop(vc, big);
	assert_int_equal(valuecache_spares(vc), 1);
	/* No more than VALUECACHE_SPARES are kept. */
	struct valuecache_copy *many[VALUECACHE_SPARES + 4];
	for (size_t i = 0; i < VALUECACHE_SPARES + 4; i++) {
		many[i] = NULL;
		assert_int_equal(valuecache_write(vc, &many[i], 0, full, 1), 0);
	}
	assert_int_equal(valuecache_spares(vc), 0);
	for (size_t i = 0; i < VALUECACHE_SPARES + 4; i++)
		valuecache_drop(vc, many[i]);
	assert_int_equal(valuecache_spares(vc), VALUECACHE_SPARES);
	assert_int_equal(valuecache_used(vc), 0);
	free(full);
	valuecache_free(vc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_copy_per_inode_and_bytes),
		cmocka_unit_test(test_a_longer_value_is_another_version),
		cmocka_unit_test(test_the_empty_value_takes_nothing),
		cmocka_unit_test(test_the_budget_refuses_new_copies_only),
		cmocka_unit_test(test_a_write_copies_a_shared_value),
		cmocka_unit_test(test_a_write_past_the_end_reads_zeros_between),
		cmocka_unit_test(test_a_write_over_budget_changes_nothing),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_dropped_pages_are_kept_wiped),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
