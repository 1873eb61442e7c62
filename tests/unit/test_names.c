/* Unit tests for src/fuse/names: the names a mount holds from listings and
 * lookups, each replaced by a newer answer's, all forgotten at once when a
 * notice drops names, the run of grants ends or the table fills. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fuse/names.h"

static struct vfs_attr attr_of(uint64_t ino)
{
	return (struct vfs_attr){ .ino = ino, .mode = S_IFREG | 0600, .nlink = 1, .size = ino };
}

/* Holds NAME in DIR as INO, read from STATE. */
static void put(struct names *n, uint64_t dir, const char *name, uint64_t ino, uint64_t state)
{
	struct vfs_attr a = attr_of(ino);
	names_put(n, dir, name, state, &a);
}

/* The inode NAME in DIR resolves to, 0 if none. */
static uint64_t get(const struct names *n, uint64_t dir, const char *name)
{
	struct vfs_attr a;
	uint64_t state;
	return names_get(n, dir, name, &a, &state) ? a.ino : 0;
}

static void test_put_get(void **state)
{
	(void)state;
	struct names *n = names_new();
	assert_non_null(n);
	put(n, 1, "a", 10, 5);
	put(n, 2, "a", 20, 5); /* the same name in another directory */
	assert_int_equal(get(n, 1, "a"), 10);
	assert_int_equal(get(n, 2, "a"), 20);
	assert_int_equal(get(n, 1, "b"), 0);
	struct vfs_attr a;
	uint64_t st;
	assert_true(names_get(n, 1, "a", &a, &st));
	assert_int_equal(st, 5);
	assert_int_equal(a.size, 10);
	names_free(n);
}

/* A newer listing's entry replaces the older one, wherever it sits in its
 * bucket, and the names after it in the bucket stay. */
static void test_replace(void **state)
{
	(void)state;
	struct names *n = names_new();
	char name[16];
	for (unsigned i = 0; i < 40000; i++) { /* more names than buckets */
		snprintf(name, sizeof(name), "f%u", i);
		put(n, 7, name, i + 1, 1);
	}
	for (unsigned i = 0; i < 40000; i += 3) {
		snprintf(name, sizeof(name), "f%u", i);
		put(n, 7, name, i + 100000, 2);
	}
	for (unsigned i = 0; i < 40000; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		assert_int_equal(get(n, 7, name), i % 3 == 0 ? i + 100000 : i + 1);
	}
	names_free(n); /* ASan: nothing lost on the way */
}

static void test_clear(void **state)
{
	(void)state;
	struct names *n = names_new();
	put(n, 1, "a", 10, 5);
	put(n, 1, "b", 11, 5);
	names_clear(n);
	assert_int_equal(get(n, 1, "a"), 0);
	assert_int_equal(get(n, 1, "b"), 0);
	put(n, 1, "b", 12, 6); /* held again after a clear */
	assert_int_equal(get(n, 1, "b"), 12);
	names_free(n);
}

/* Past its bound (65,536) the table forgets every name and holds the new
 * ones (a name not held costs a daemon call). */
static void test_bound(void **state)
{
	(void)state;
	struct names *n = names_new();
	char name[16];
	unsigned i;
	for (i = 0; i < 70000; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		put(n, 3, name, i + 1, 1);
	}
	assert_int_equal(get(n, 3, "f0"), 0);
	assert_int_equal(get(n, 3, "f69999"), 70000);
	names_free(n); /* ASan: nothing lost on the way */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
