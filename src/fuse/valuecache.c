/* The values of open secret files: see valuecache.h.
 *
 * Each copy is a mapping of its own (mmap), not heap memory: munmap gives
 * its pages back to the system the moment its last holder drops it, which
 * no allocator promises (glibc keeps freed chunks in its arenas, pinned
 * there by any small allocation made next to them; ASan keeps them in its
 * quarantine). Whole pages also make the budget exact. Except that a few
 * one-page mappings, wiped, are kept for the next copies (VALUECACHE_SPARES):
 * most values fit in a page, and an mmap, its page fault and an munmap
 * (which interrupts every other CPU the mount runs on) per put or read cost
 * more than the rest of the mount's own work on a value. A private copy grows
 * with mremap, which moves its pages instead of copying them, so no unwiped
 * old copy is left behind. The pages are left out of core dumps
 * (MADV_DONTDUMP), as the daemon's key memory is. They are not mlock'ed: a
 * budget of tens of MiB would pass the RLIMIT_MEMLOCK of a mount run by a
 * user, and the same values pass through libfuse's and the client's
 * buffers, which are not locked either.
 *
 * Invariant: the bytes of a mapping past a copy's length are zero (new
 * pages are, and a cut wipes what it cuts off), so growth needs no fill. */
#include "fuse/valuecache.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Shared copies by inode; a few hundred distinct values open at once is
 * already a lot. */
#define VALUECACHE_BUCKETS 256u

struct valuecache_copy {
	struct valuecache_copy *next; /* in its bucket, while shared */
	uint64_t ino;
	unsigned refs; /* holders; a private copy has one */
	bool shared;   /* in the table: its bytes never change */
	uint8_t *data; /* map_len bytes mapped */
	size_t len;
	size_t map_len; /* whole pages: what counts against the budget */
};

struct valuecache {
	pthread_mutex_t lock; /* protects everything below and every refs */
	size_t page;
	size_t budget;
	size_t used;
	struct valuecache_copy *bucket[VALUECACHE_BUCKETS];
	pthread_mutex_t spare_lock; /* protects spare and n_spare; taken after lock */
	uint8_t *spare[VALUECACHE_SPARES]; /* one-page mappings, all zero */
	unsigned n_spare;
};

int valuecache_new(struct valuecache **ret, size_t budget)
{
	assert(budget > 0);
	struct valuecache *vc = calloc(1, sizeof(*vc));
	if (vc == NULL)
		return -ENOMEM;
	pthread_mutex_init(&vc->lock, NULL);
	pthread_mutex_init(&vc->spare_lock, NULL);
	vc->page = (size_t)sysconf(_SC_PAGESIZE);
	vc->budget = budget;
	*ret = vc;
	return 0;
}

void valuecache_free(struct valuecache *vc)
{
	if (vc == NULL)
		return;
	assert(vc->used == 0);
	for (unsigned i = 0; i < vc->n_spare; i++)
		munmap(vc->spare[i], vc->page);
	pthread_mutex_destroy(&vc->spare_lock);
	pthread_mutex_destroy(&vc->lock);
	free(vc);
}

static size_t round_pages(const struct valuecache *vc, size_t n)
{
	assert(n <= SIZE_MAX - vc->page);
	return (n + vc->page - 1) / vc->page * vc->page;
}

/* Takes N bytes of the budget. Lock held. */
static int charge(struct valuecache *vc, size_t n)
{
	if (n > vc->budget - vc->used)
		return -ENOBUFS;
	vc->used += n;
	return 0;
}

static void uncharge(struct valuecache *vc, size_t n)
{
	assert(n <= vc->used);
	vc->used -= n;
}

static int charge_locked(struct valuecache *vc, size_t n)
{
	pthread_mutex_lock(&vc->lock);
	int r = charge(vc, n);
	pthread_mutex_unlock(&vc->lock);
	return r;
}

static void uncharge_locked(struct valuecache *vc, size_t n)
{
	pthread_mutex_lock(&vc->lock);
	uncharge(vc, n);
	pthread_mutex_unlock(&vc->lock);
}

static void exclude_from_dumps(uint8_t *p, size_t len)
{
	/* A kernel without MADV_DONTDUMP still serves the value. */
	(void)madvise(p, len, MADV_DONTDUMP);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	uint8_t any = 0;
	for (size_t i = 0; i < len; i++)
		any |= p[i];
	return any == 0;
}

/* A spare mapping of MAP_LEN bytes, or NULL: only one-page ones are kept. */
static uint8_t *spare_take(struct valuecache *vc, size_t map_len)
{
	if (map_len != vc->page)
		return NULL;
	pthread_mutex_lock(&vc->spare_lock);
	uint8_t *p = vc->n_spare > 0 ? vc->spare[--vc->n_spare] : NULL;
	pthread_mutex_unlock(&vc->spare_lock);
	assert(p == NULL || all_zero(p, map_len));
	return p;
}

/* Keeps the wiped mapping P of MAP_LEN bytes as a spare if there is room;
 * false: the caller unmaps it. */
static bool spare_keep(struct valuecache *vc, uint8_t *p, size_t map_len)
{
	if (map_len != vc->page)
		return false;
	pthread_mutex_lock(&vc->spare_lock);
	bool kept = vc->n_spare < VALUECACHE_SPARES;
	if (kept)
		vc->spare[vc->n_spare++] = p;
	pthread_mutex_unlock(&vc->spare_lock);
	return kept;
}

/* A new copy of MAP_LEN (> 0, whole pages) zero bytes, not charged. */
static struct valuecache_copy *copy_new(struct valuecache *vc, uint64_t ino, size_t map_len)
{
	struct valuecache_copy *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	uint8_t *spare = spare_take(vc, map_len);
	if (spare != NULL) {
		c->data = spare; /* left out of dumps when it was mapped */
	} else {
		void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);
		if (p == MAP_FAILED) {
			free(c);
			return NULL;
		}
		c->data = p;
		exclude_from_dumps(c->data, map_len);
	}
	c->map_len = map_len;
	c->ino = ino;
	c->refs = 1;
	return c;
}

/* Wipes a copy no one holds any more (not charged any more) and keeps its
 * mapping as a spare or unmaps it. The bytes past its length are zero
 * already, so a spare is all zero. */
static void copy_destroy(struct valuecache *vc, struct valuecache_copy *c)
{
	explicit_bzero(c->data, c->len);
	if (!spare_keep(vc, c->data, c->map_len))
		munmap(c->data, c->map_len);
	free(c);
}

/* The same LEN bytes at A and B, in a time that does not depend on where
 * they differ: how long an open takes tells nothing of another version. */
static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t len)
{
	uint8_t diff = 0;
	for (size_t i = 0; i < len; i++)
		diff |= (uint8_t)(a[i] ^ b[i]);
	return diff == 0;
}

static struct valuecache_copy **bucket_of(struct valuecache *vc, uint64_t ino)
{
	return &vc->bucket[ino % VALUECACHE_BUCKETS];
}

/* The shared copy of INO with these bytes, or NULL. Lock held. */
static struct valuecache_copy *find_shared(struct valuecache *vc, uint64_t ino,
					   const uint8_t *data, size_t len)
{
	for (struct valuecache_copy *c = *bucket_of(vc, ino); c != NULL; c = c->next) {
		if (c->ino == ino && c->len == len && same_bytes(c->data, data, len))
			return c;
	}
	return NULL;
}

static void unlink_shared(struct valuecache *vc, struct valuecache_copy *c)
{
	struct valuecache_copy **link = bucket_of(vc, c->ino);
	while (*link != c)
		link = &(*link)->next;
	*link = c->next;
}

/* A new shared copy of DATA, charged and in the table. Lock held. */
static int share_new(struct valuecache *vc, uint64_t ino, const uint8_t *data, size_t len,
		     struct valuecache_copy **ret)
{
	size_t map_len = round_pages(vc, len);
	int r = charge(vc, map_len);
	if (r < 0)
		return r;
	struct valuecache_copy *c = copy_new(vc, ino, map_len);
	if (c == NULL) {
		uncharge(vc, map_len);
		return -ENOMEM;
	}
	memcpy(c->data, data, len);
	c->len = len;
	c->shared = true;
	c->next = *bucket_of(vc, ino);
	*bucket_of(vc, ino) = c;
	*ret = c;
	return 0;
}

int valuecache_share(struct valuecache *vc, uint64_t ino, const uint8_t *data, size_t len,
		     struct valuecache_copy **ret)
{
	if (len == 0) {
		*ret = NULL;
		return 0;
	}
	pthread_mutex_lock(&vc->lock);
	struct valuecache_copy *c = find_shared(vc, ino, data, len);
	int r = 0;
	if (c != NULL)
		c->refs++;
	else
		r = share_new(vc, ino, data, len, &c);
	pthread_mutex_unlock(&vc->lock);
	if (r == 0)
		*ret = c;
	return r;
}

void valuecache_drop(struct valuecache *vc, struct valuecache_copy *copy)
{
	if (copy == NULL)
		return;
	pthread_mutex_lock(&vc->lock);
	assert(copy->refs > 0);
	bool last = --copy->refs == 0;
	if (last) {
		if (copy->shared)
			unlink_shared(vc, copy);
		uncharge(vc, copy->map_len);
	}
	pthread_mutex_unlock(&vc->lock);
	/* Out of the table and the budget: no one else can reach it. */
	if (last)
		copy_destroy(vc, copy);
}

const uint8_t *valuecache_bytes(const struct valuecache_copy *copy)
{
	return copy != NULL ? copy->data : NULL;
}

size_t valuecache_len(const struct valuecache_copy *copy)
{
	return copy != NULL ? copy->len : 0;
}

/* Grows the private copy C to MAP_LEN bytes of pages. */
static int grow(struct valuecache *vc, struct valuecache_copy *c, size_t map_len)
{
	int r = charge_locked(vc, map_len - c->map_len);
	if (r < 0)
		return r;
	void *p = mremap(c->data, c->map_len, map_len, MREMAP_MAYMOVE);
	if (p == MAP_FAILED) {
		uncharge_locked(vc, map_len - c->map_len);
		return -ENOMEM;
	}
	c->data = p;
	c->map_len = map_len;
	exclude_from_dumps(c->data, map_len);
	return 0;
}

/* Makes *COPY a private copy with room for NEED (> 0) bytes. A new one
 * keeps the first NEED bytes of the value it replaces. */
static int own(struct valuecache *vc, struct valuecache_copy **copy, size_t need)
{
	assert(need > 0);
	struct valuecache_copy *old = *copy;
	size_t map_len = round_pages(vc, need);
	if (old != NULL && !old->shared)
		return old->map_len >= need ? 0 : grow(vc, old, map_len);
	int r = charge_locked(vc, map_len);
	if (r < 0)
		return r;
	struct valuecache_copy *c = copy_new(vc, old != NULL ? old->ino : 0, map_len);
	if (c == NULL) {
		uncharge_locked(vc, map_len);
		return -ENOMEM;
	}
	/* A shared copy's bytes do not change while this holder holds it. */
	c->len = valuecache_len(old) < need ? valuecache_len(old) : need;
	if (c->len > 0)
		memcpy(c->data, old->data, c->len);
	*copy = c;
	valuecache_drop(vc, old);
	return 0;
}

int valuecache_write(struct valuecache *vc, struct valuecache_copy **copy, size_t pos,
		     const uint8_t *data, size_t size)
{
	assert(size > 0 && pos <= SIZE_MAX - size);
	size_t end = pos + size, len = valuecache_len(*copy);
	int r = own(vc, copy, end > len ? end : len);
	if (r < 0)
		return r;
	struct valuecache_copy *c = *copy;
	memcpy(c->data + pos, data, size);
	if (end > c->len)
		c->len = end;
	return 0;
}

int valuecache_resize(struct valuecache *vc, struct valuecache_copy **copy, size_t len)
{
	struct valuecache_copy *c = *copy;
	if (len == valuecache_len(c))
		return 0;
	if (len == 0 && c->shared) {
		valuecache_drop(vc, c);
		*copy = NULL;
		return 0;
	}
	if (len > 0) {
		int r = own(vc, copy, len);
		if (r < 0)
			return r;
		c = *copy;
	}
	if (len < c->len)
		explicit_bzero(c->data + len, c->len - len);
	c->len = len;
	return 0;
}

size_t valuecache_used(struct valuecache *vc)
{
	pthread_mutex_lock(&vc->lock);
	size_t used = vc->used;
	pthread_mutex_unlock(&vc->lock);
	return used;
}

unsigned valuecache_spares(struct valuecache *vc)
{
	pthread_mutex_lock(&vc->spare_lock);
	unsigned n = vc->n_spare;
	pthread_mutex_unlock(&vc->spare_lock);
	return n;
}

size_t valuecache_budget(const struct valuecache *vc)
{
	return vc->budget;
}
