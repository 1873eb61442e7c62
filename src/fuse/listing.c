/* An open directory's listing: see listing.h. */
#include "fuse/listing.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

struct entry {
	uint64_t ino;
	mode_t mode;
	char *name;
	bool has_attr;
	uint32_t page; /* with has_attr: its index in pages */
	struct vfs_attr attr;
};

struct listing {
	struct entry *ents;
	size_t n, cap;
	struct cache_ttl *pages; /* the grant of each READDIRPLUS page */
	size_t npages, pages_cap;
};

struct listing *listing_new(void)
{
	return calloc(1, sizeof(struct listing));
}

void listing_free(struct listing *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->ents[i].name);
	free(l->ents);
	free(l->pages);
	free(l);
}

/* Makes room for one more element in *ARR (*CAP of SIZE bytes each). */
static int grow(void **arr, size_t *cap, size_t used, size_t size)
{
	if (used < *cap)
		return 0;
	size_t ncap = *cap > 0 ? *cap * 2 : 16;
	void *p = realloc(*arr, ncap * size);
	if (p == NULL)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* The new last entry, its name copied; NULL when out of memory. */
static struct entry *append(struct listing *l, uint64_t ino, mode_t mode, const char *name,
			    size_t len)
{
	if (grow((void **)&l->ents, &l->cap, l->n, sizeof(*l->ents)) < 0)
		return NULL;
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, name, len);
	copy[len] = '\0';
	struct entry *e = &l->ents[l->n++];
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->mode = mode;
	e->name = copy;
	return e;
}

int listing_add(struct listing *l, uint64_t ino, mode_t mode, const char *name, size_t len)
{
	return append(l, ino, mode, name, len) != NULL ? 0 : -ENOMEM;
}

/* A name as the daemon may send it: the kernel refuses a listing with a
 * '/' or a NUL in one, and so would every program reading it. */
static bool name_ok(const uint8_t *name, size_t len)
{
	return len > 0 && memchr(name, '\0', len) == NULL && memchr(name, '/', len) == NULL;
}

int listing_add_page(struct listing *l, const uint8_t *p, size_t len,
		     const struct cache_ttl *ttl, uint64_t after, uint64_t *ret_next)
{
	struct cursor c;
	cursor_init(&c, p, len);
	uint64_t next = cursor_u64(&c);
	uint32_t n = cursor_u32(&c);
	/* Every entry takes at least an attr, a length and one byte: bound n
	 * before trusting it; a page that goes on must have moved on. */
	if (c.err != 0 || n > len / (VFS_ATTR_LEN + 5) || (next != 0 && (n == 0 || next <= after)))
		return -EIO;
	if (grow((void **)&l->pages, &l->pages_cap, l->npages, sizeof(*l->pages)) < 0)
		return -ENOMEM;
	l->pages[l->npages] = *ttl;
	uint64_t last = after;
	for (uint32_t i = 0; i < n; i++) {
		struct vfs_attr a;
		size_t nlen;
		vfs_attr_get(&c, &a);
		const uint8_t *name = cursor_blob(&c, VFS_MAX_NAME, &nlen);
		if (c.err != 0 || !name_ok(name, nlen) || a.ino <= last)
			return -EIO;
		last = a.ino;
		struct entry *e = append(l, a.ino, (mode_t)a.mode, (const char *)name, nlen);
		if (e == NULL)
			return -ENOMEM;
		e->has_attr = true;
		e->page = (uint32_t)l->npages;
		e->attr = a;
	}
	if (cursor_done(&c) != 0 || (next != 0 && next != last))
		return -EIO;
	l->npages++;
	*ret_next = next;
	return 0;
}

size_t listing_count(const struct listing *l)
{
	return l->n;
}

void listing_at(const struct listing *l, size_t i, struct listing_entry *ret)
{
	assert(i < l->n);
	const struct entry *e = &l->ents[i];
	assert(!e->has_attr || e->page < l->npages);
	ret->ino = e->ino;
	ret->mode = e->mode;
	ret->name = e->name;
	ret->attr = e->has_attr ? &e->attr : NULL;
	ret->ttl = e->has_attr ? &l->pages[e->page] : NULL;
}
