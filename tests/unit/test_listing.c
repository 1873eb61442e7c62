/* Unit tests for src/fuse/listing: an open directory's listing built from
 * READDIRPLUS pages, and the answers it refuses as malformed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fuse/listing.h"
#include "lib/buf.h"

/* Appends an entry to a page being built. */
static void put_entry(struct buf *b, uint64_t ino, uint32_t mode, const char *name)
{
	struct vfs_attr a = { .ino = ino, .mode = mode, .nlink = 1, .size = ino * 10 };
	vfs_attr_put(b, &a);
	buf_put_blob(b, name, strlen(name));
}

static void page_start(struct buf *b, uint64_t next, uint32_t n)
{
	buf_init(b);
	buf_put_u64(b, next);
	buf_put_u32(b, n);
}

static void test_pages(void **state)
{
	(void)state;
	struct listing *l = listing_new();
	assert_non_null(l);
	assert_int_equal(listing_add(l, 1, S_IFDIR, "..", 2), 0);
	struct cache_ttl t1 = { .attr = 1, .state = 5 }, t2 = { .attr = 2, .state = 6 };
	struct buf b;
	uint64_t next = 99;
	page_start(&b, 4, 2);
	put_entry(&b, 3, S_IFREG | 0600, "a");
	put_entry(&b, 4, S_IFDIR | 0700, "b");
	assert_int_equal(listing_add_page(l, b.data, b.len, &t1, 0, &next), 0);
	assert_int_equal(next, 4);
	buf_free(&b);
	page_start(&b, 0, 1);
	put_entry(&b, 9, S_IFREG | 0640, "c");
	assert_int_equal(listing_add_page(l, b.data, b.len, &t2, 4, &next), 0);
	assert_int_equal(next, 0);
	buf_free(&b);

	assert_int_equal(listing_count(l), 4);
	struct listing_entry e;
	listing_at(l, 0, &e);
	assert_string_equal(e.name, "..");
	assert_null(e.attr);
	listing_at(l, 2, &e);
	assert_string_equal(e.name, "b");
	assert_int_equal(e.ino, 4);
	assert_int_equal(e.mode, S_IFDIR | 0700);
	assert_int_equal(e.attr->size, 40);
	assert_int_equal(e.ttl->state, 5);
	listing_at(l, 3, &e);
	assert_string_equal(e.name, "c");
	assert_int_equal(e.ttl->state, 6);
	listing_free(l);
}

/* Each malformed page is refused whole. */
static void test_malformed(void **state)
{
	(void)state;
	struct cache_ttl t = { 0 };
	struct buf b;
	uint64_t next;
	struct {
		const char *what;
		uint64_t next, after;
		uint32_t n;
		uint64_t ino[2];
		const char *name[2];
		size_t cut; /* bytes cut off the end */
	} cases[] = {
		{ "a next that does not move on", 3, 3, 1, { 3 }, { "a" }, 0 },
		{ "a next that is not the last entry", 5, 0, 2, { 3, 4 }, { "a", "b" }, 0 },
		{ "a next with no entries", 5, 0, 0, { 0 }, { NULL }, 0 },
		{ "entries out of order", 0, 0, 2, { 4, 3 }, { "a", "b" }, 0 },
		{ "an entry at or below after", 0, 3, 1, { 3 }, { "a" }, 0 },
		{ "a slash in a name", 0, 0, 1, { 3 }, { "a/b" }, 0 },
		{ "an empty name", 0, 0, 1, { 3 }, { "" }, 0 },
		{ "a short page", 0, 0, 1, { 3 }, { "abc" }, 1 },
		{ "a count larger than the page", 0, 0, 2, { 3 }, { "a" }, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct listing *l = listing_new();
		page_start(&b, cases[i].next, cases[i].n);
		for (uint32_t k = 0; k < cases[i].n && k < 2 && cases[i].name[k] != NULL; k++)
			put_entry(&b, cases[i].ino[k], S_IFREG | 0600, cases[i].name[k]);
		int r = listing_add_page(l, b.data, b.len - cases[i].cut, &t, cases[i].after, &next);
		if (r != -EIO)
			fail_msg("%s: %d, not -EIO", cases[i].what, r);
		buf_free(&b);
		listing_free(l);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
