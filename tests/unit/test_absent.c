/* Unit tests for src/fuse/absent: what the daemon said of an absent name
 * at its LOOKUP is taken once, by the CREATE of that very name, only while
 * it is fresh; another directory's or name's answer is never taken. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "fuse/absent.h"

#define MS 1000000ull

static void test_taken_once_while_fresh(void **state)
{
	(void)state;
	struct absent *t = absent_new();
	assert_non_null(t);
	int w = 1;
	assert_false(absent_take(t, 5, "a", 100 * MS, 20 * MS, &w));
	absent_put(t, 5, "a", 0, 100 * MS);
	absent_put(t, 5, "full", -ENOSPC, 100 * MS);
	assert_false(absent_take(t, 6, "a", 101 * MS, 20 * MS, &w)); /* another directory */
	assert_false(absent_take(t, 5, "b", 101 * MS, 20 * MS, &w)); /* another name */
	assert_true(absent_take(t, 5, "a", 110 * MS, 20 * MS, &w));
	assert_int_equal(w, 0);
	assert_false(absent_take(t, 5, "a", 110 * MS, 20 * MS, &w)); /* once */
	assert_true(absent_take(t, 5, "full", 120 * MS, 20 * MS, &w));
	assert_int_equal(w, -ENOSPC);
	absent_put(t, 5, "late", 0, 100 * MS);
	assert_false(absent_take(t, 5, "late", 121 * MS, 20 * MS, &w)); /* too old */
	assert_false(absent_take(t, 5, "late", 101 * MS, 20 * MS, &w)); /* and forgotten */
	absent_put(t, 5, "a", -EAGAIN, 200 * MS);
	absent_put(t, 5, "a", 0, 201 * MS); /* the newest answer wins */
	assert_true(absent_take(t, 5, "a", 202 * MS, 20 * MS, &w));
	assert_int_equal(w, 0);
	absent_free(t);
}

/* Many names at once: each is either taken with its own answer or not at
 * all (a collision loses the older one), never with another name's. */
static void test_collisions_never_mix(void **state)
{
	(void)state;
	struct absent *t = absent_new();
	assert_non_null(t);
	char name[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		absent_put(t, (uint64_t)(i % 7), name, -(i % 100) - 1, 100 * MS);
	}
	int taken = 0;
	for (int i = 0; i < 2000; i++) {
		int w = 0;
		snprintf(name, sizeof(name), "n%d", i);
		if (absent_take(t, (uint64_t)(i % 7), name, 100 * MS, 20 * MS, &w)) {
			assert_int_equal(w, -(i % 100) - 1);
			taken++;
		}
	}
	assert_true(taken > 0 && taken <= 256);
	absent_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_taken_once_while_fresh),
		cmocka_unit_test(test_collisions_never_mix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
