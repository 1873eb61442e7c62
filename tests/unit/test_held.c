/* Unit tests for src/fuse/held: what a mount holds of the daemon's answers:
 * values until their grants end, attributes until their run ends, either
 * until a notice drops them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fuse/held.h"

#define NOW 1000u
#define UNTIL 2000u

static struct vfs_attr attr_of(uint64_t ino, uint64_t size)
{
	struct vfs_attr a = { .ino = ino, .mode = 0100600, .nlink = 1, .size = size };
	return a;
}

static bool value_is(struct held *h, uint64_t ino, uint64_t now, const char *want)
{
	const uint8_t *data;
	size_t len;
	if (!held_value(h, ino, now, &data, &len))
		return false;
	return len == strlen(want) && memcmp(data, want, len) == 0;
}

static void test_held_until_the_grant_ends(void **state)
{
	(void)state;
	struct held *h = held_new();
	assert_non_null(h);
	struct vfs_attr a = attr_of(7, 3), got;
	held_put_attr(h, 5, &a);
	held_put_value(h, 5, UNTIL, 7, (const uint8_t *)"abc", 3);
	assert_true(held_attr(h, 7, &got));
	assert_int_equal(got.size, 3);
	assert_true(value_is(h, 7, NOW, "abc"));
	/* The value not at or after its end; the attributes until forgotten;
	 * nothing about other inodes. */
	assert_false(value_is(h, 7, UNTIL, "abc"));
	assert_false(held_attr(h, 8, &got));
	held_sweep(h, UNTIL);
	assert_true(held_attr(h, 7, &got));
	held_forget_attrs(h);
	assert_false(held_attr(h, 7, &got));
	held_free(h);
}

/* A drop removes what is held of its inode only: the attributes of another
 * inode in the same bucket, put before the drop, are still true. */
static void test_a_drop_spares_the_bucket_s_other_inodes(void **state)
{
	(void)state;
	struct held *h = held_new();
	struct vfs_attr a = attr_of(7, 3), b = attr_of(7 + 1024, 4), got;
	held_put_attr(h, 5, &a);
	held_put_attr(h, 5, &b);
	held_drop(h, 7, 6);
	assert_false(held_attr(h, 7, &got));
	assert_true(held_attr(h, 7 + 1024, &got));
	assert_int_equal(got.size, 4);
	/* But an answer about it read before the drop is not taken. */
	struct vfs_attr c = attr_of(7 + 2048, 5);
	held_put_attr(h, 5, &c);
	assert_false(held_attr(h, 7 + 2048, &got));
	held_free(h);
}

static void test_a_notice_drops_and_bars_older_answers(void **state)
{
	(void)state;
	struct held *h = held_new();
	struct vfs_attr a = attr_of(7, 3), got;
	held_put_value(h, 5, UNTIL, 7, (const uint8_t *)"old", 3);
	held_put_attr(h, 4, &a);
	held_drop(h, 7, 6);
	assert_false(value_is(h, 7, NOW, "old"));
	assert_false(held_attr(h, 7, &got));
	/* An answer read before the notice, arriving after it, is not held. */
	held_put_value(h, 5, UNTIL, 7, (const uint8_t *)"old", 3);
	held_put_attr(h, 5, &a);
	assert_false(value_is(h, 7, NOW, "old"));
	assert_false(held_attr(h, 7, &got));
	/* One read from the notice's state on is. */
	held_put_value(h, 6, UNTIL, 7, (const uint8_t *)"new", 3);
	assert_true(value_is(h, 7, NOW, "new"));
	held_free(h);
}

static void test_drop_all_and_reset(void **state)
{
	(void)state;
	struct held *h = held_new();
	struct vfs_attr a = attr_of(8, 1), got;
	held_put_attr(h, 5, &a);
	held_put_value(h, 5, UNTIL, 7, (const uint8_t *)"x", 1);
	held_put_value(h, 5, UNTIL, 9, (const uint8_t *)"y", 1);
	held_drop_all(h, 6);
	assert_false(value_is(h, 7, NOW, "x"));
	assert_false(value_is(h, 9, NOW, "y"));
	assert_false(held_attr(h, 8, &got));
	held_put_value(h, 5, UNTIL, 7, (const uint8_t *)"x", 1);
	assert_false(value_is(h, 7, NOW, "x"));
	/* A watch that ended: nothing is held until the next one begins. */
	held_drop_all(h, UINT64_MAX);
	held_put_value(h, 1000, UNTIL, 7, (const uint8_t *)"x", 1);
	assert_false(value_is(h, 7, NOW, "x"));
	held_reset(h);
	held_put_value(h, 1, UNTIL, 7, (const uint8_t *)"x", 1);
	assert_true(value_is(h, 7, NOW, "x"));
	held_free(h);
}

static void test_sweep_wipes_what_is_gone(void **state)
{
	(void)state;
	struct held *h = held_new();
	struct vfs_attr a = attr_of(7, 1), got;
	held_put_value(h, 5, NOW + 10, 7, (const uint8_t *)"x", 1);
	held_put_attr(h, 5, &a);
	held_put_value(h, 5, UNTIL, 9, (const uint8_t *)"y", 1);
	held_sweep(h, NOW + 10);
	assert_false(value_is(h, 7, NOW, "x")); /* wiped, even asked for earlier */
	assert_true(held_attr(h, 7, &got));
	assert_true(value_is(h, 9, NOW, "y"));
	held_sweep(h, UNTIL);
	assert_true(held_attr(h, 7, &got)); /* attributes are not timed */
	assert_false(value_is(h, 9, NOW, "y"));
	held_forget_attrs(h);
	assert_false(held_attr(h, 7, &got));
	held_free(h);
}

static void test_bounded(void **state)
{
	(void)state;
	struct held *h = held_new();
	/* More entries than it keeps (65,536): a full table forgets every
	 * attribute and holds the new ones; values stay. */
	held_put_value(h, 1, UNTIL, 100000, (const uint8_t *)"v", 1);
	for (uint64_t ino = 1; ino <= 70000; ino++) {
		struct vfs_attr a = attr_of(ino, 0);
		held_put_attr(h, 1, &a);
	}
	struct vfs_attr got;
	assert_false(held_attr(h, 1, &got));
	assert_true(held_attr(h, 70000, &got));
	assert_true(value_is(h, 100000, NOW, "v"));
	/* A value larger than all it may hold is not held. */
	static uint8_t big[5u << 20];
	held_put_value(h, 1, UNTIL, 1, big, sizeof(big));
	const uint8_t *data;
	size_t len;
	assert_false(held_value(h, 1, NOW, &data, &len));
	held_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_held_until_the_grant_ends),
		cmocka_unit_test(test_a_drop_spares_the_bucket_s_other_inodes),
		cmocka_unit_test(test_a_notice_drops_and_bars_older_answers),
		cmocka_unit_test(test_drop_all_and_reset),
		cmocka_unit_test(test_sweep_wipes_what_is_gone),
		cmocka_unit_test(test_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
