/* Unit tests for src/fuse/lookups: the lookup counts the mount hands the
 * kernel, given back by FORGET, through growth and removals in the middle
 * of probe runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "fuse/lookups.h"

static void test_count_and_forget(void **state)
{
	(void)state;
	struct lookups *l = lookups_new();
	assert_non_null(l);
	assert_false(lookups_held(l, 7));
	assert_true(lookups_add(l, 7));
	assert_true(lookups_add(l, 7));
	assert_true(lookups_add(l, 7));
	assert_true(lookups_held(l, 7));
	lookups_forget(l, 7, 2);
	assert_true(lookups_held(l, 7));
	lookups_forget(l, 7, 1);
	assert_false(lookups_held(l, 7));
	lookups_forget(l, 7, 5); /* more than it had: nothing left, no harm */
	lookups_forget(l, 8, 1); /* never handed out */
	assert_false(lookups_held(l, 7));
	assert_false(lookups_held(l, 8));
	lookups_free(l);
}

/* 20,000 random inodes (the table grows many times, and runs form:
 * Fibonacci hashing spreads sequential numbers too evenly to collide),
 * then every other one forgotten, then the rest: every answer on the way
 * matches the plain array's. */
static void test_many(void **state)
{
	(void)state;
	enum { N = 20000 };
	struct lookups *l = lookups_new();
	uint64_t *inos = calloc(N, sizeof(*inos));
	assert_non_null(l);
	assert_non_null(inos);
	srandom(20261207);
	for (size_t i = 0; i < N; i++) {
		inos[i] = ((uint64_t)random() << 31 | (uint64_t)random()) + 1;
		assert_true(lookups_add(l, inos[i]));
	}
	for (size_t i = 0; i < N; i += 2)
		lookups_forget(l, inos[i], 1);
	for (size_t i = 0; i < N; i++)
		assert_int_equal(lookups_held(l, inos[i]), i % 2 == 1);
	for (size_t i = 1; i < N; i += 2)
		lookups_forget(l, inos[i], 1);
	for (size_t i = 0; i < N; i++)
		assert_false(lookups_held(l, inos[i]));
	free(inos);
	lookups_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_count_and_forget),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
