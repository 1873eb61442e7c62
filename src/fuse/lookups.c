/* Lookup counts (lookups.h): an open-addressing table of (ino, count),
 * linear probing, grown at half full; removal shifts the rest of a run
 * back, so no tombstones pile up. Inode 0 marks an empty slot (no inode
 * has that number). */
#include "fuse/lookups.h"

#include <assert.h>
#include <stdlib.h>

#define LOOKUPS_MIN_SLOTS 1024u

struct slot {
	uint64_t ino;
	uint64_t n;
};

struct lookups {
	struct slot *slots;
	size_t cap; /* a power of two */
	size_t used;
	bool lost;  /* a count could not be kept: assume every inode held */
};

static size_t slot_of(const struct lookups *l, uint64_t ino)
{
	uint64_t h = ino * UINT64_C(0x9E3779B97F4A7C15); /* Fibonacci hashing */
	return (size_t)(h >> 32) & (l->cap - 1);
}

/* The slot holding INO, or the empty slot where it would go. */
static struct slot *find(const struct lookups *l, uint64_t ino)
{
	size_t i = slot_of(l, ino);
	while (l->slots[i].ino != 0 && l->slots[i].ino != ino)
		i = (i + 1) & (l->cap - 1);
	return &l->slots[i];
}

struct lookups *lookups_new(void)
{
	struct lookups *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->cap = LOOKUPS_MIN_SLOTS;
	l->slots = calloc(l->cap, sizeof(*l->slots));
	if (l->slots == NULL) {
		free(l);
		return NULL;
	}
	return l;
}

void lookups_free(struct lookups *l)
{
	if (l == NULL)
		return;
	free(l->slots);
	free(l);
}

static bool grow(struct lookups *l)
{
	struct lookups bigger = { calloc(l->cap * 2, sizeof(*l->slots)), l->cap * 2, l->used,
				  l->lost };
	if (bigger.slots == NULL)
		return false;
	for (size_t i = 0; i < l->cap; i++)
		if (l->slots[i].ino != 0)
			*find(&bigger, l->slots[i].ino) = l->slots[i];
	free(l->slots);
	*l = bigger;
	return true;
}

bool lookups_add(struct lookups *l, uint64_t ino)
{
	assert(ino != 0);
	if ((l->used + 1) * 2 > l->cap && !grow(l)) {
		l->lost = true;
		return false;
	}
	struct slot *s = find(l, ino);
	if (s->ino == 0) {
		s->ino = ino;
		l->used++;
	}
	s->n++;
	return true;
}

/* Empties slot I and moves back the entries after it that probing would
 * no longer reach. */
static void remove_at(struct lookups *l, size_t i)
{
	size_t j = i;
	l->slots[i] = (struct slot){ 0, 0 };
	l->used--;
	for (;;) {
		j = (j + 1) & (l->cap - 1);
		if (l->slots[j].ino == 0)
			return;
		size_t home = slot_of(l, l->slots[j].ino);
		/* Entry j stays if its home lies cyclically in (i, j]. */
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			l->slots[i] = l->slots[j];
			l->slots[j] = (struct slot){ 0, 0 };
			i = j;
		}
	}
}

void lookups_forget(struct lookups *l, uint64_t ino, uint64_t n)
{
	struct slot *s = find(l, ino);
	if (s->ino == 0)
		return;
	if (s->n > n) {
		s->n -= n;
		return;
	}
	remove_at(l, (size_t)(s - l->slots));
}

bool lookups_held(const struct lookups *l, uint64_t ino)
{
	return l->lost || find(l, ino)->ino != 0;
}
