/* What a mount holds of the daemon's answers: see held.h. */
#include "fuse/held.h"

#include <stdlib.h>
#include <string.h>

/* Buckets of the table, and of the seqs of the last drop per bucket (a
 * drop in a bucket invalidates the answers about all its inodes: a false
 * conflict only costs a call to the daemon). */
#define HELD_BUCKETS 1024u
/* Bounds: entries (attributes live as long as the run of grants they came
 * in, so a table that fills forgets them all and starts over), and bytes
 * of values. */
#define HELD_MAX_ENTRIES 65536u
#define HELD_MAX_BYTES (4u << 20)

struct entry {
	struct entry *next;
	uint64_t ino;
	bool has_attr;
	uint64_t attr_state;
	struct vfs_attr attr;
	uint64_t value_until; /* 0: no value held */
	uint64_t value_state;
	uint8_t *value;
	size_t len;
};

struct held {
	struct entry *bucket[HELD_BUCKETS];
	uint64_t dropped[HELD_BUCKETS]; /* seq of the last drop in the bucket */
	uint64_t dropped_all;          /* seq of the last drop of everything */
	unsigned n_entries;
	size_t bytes;
};

static unsigned bucket_of(uint64_t ino)
{
	return (unsigned)(ino % HELD_BUCKETS);
}

struct held *held_new(void)
{
	return calloc(1, sizeof(struct held));
}

bool held_unchanged(const struct held *h, uint64_t ino, uint64_t state)
{
	return state >= h->dropped_all && state >= h->dropped[bucket_of(ino)];
}

static void wipe_value(struct held *h, struct entry *e)
{
	if (e->value != NULL) {
		explicit_bzero(e->value, e->len);
		free(e->value);
		h->bytes -= e->len;
	}
	e->value = NULL;
	e->len = 0;
	e->value_until = 0;
}

/* Unlinks and frees *LINK's entry. */
static void remove_entry(struct held *h, struct entry **link)
{
	struct entry *e = *link;
	*link = e->next;
	wipe_value(h, e);
	free(e);
	h->n_entries--;
}

static struct entry **find(struct held *h, uint64_t ino)
{
	struct entry **link = &h->bucket[bucket_of(ino)];
	while (*link != NULL && (*link)->ino != ino)
		link = &(*link)->next;
	return link;
}

/* The entry for INO, made if need be, when an answer read from STATE may
 * still be held; NULL otherwise. */
static struct entry *entry_for(struct held *h, uint64_t ino, uint64_t state)
{
	if (!held_unchanged(h, ino, state))
		return NULL;
	struct entry **link = find(h, ino);
	if (*link != NULL)
		return *link;
	if (h->n_entries == HELD_MAX_ENTRIES) {
		held_forget_attrs(h);
		link = find(h, ino);
	}
	if (h->n_entries == HELD_MAX_ENTRIES)
		return NULL;
	struct entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->ino = ino;
	*link = e;
	h->n_entries++;
	return e;
}

void held_put_attr(struct held *h, uint64_t state, const struct vfs_attr *a)
{
	struct entry *e = entry_for(h, a->ino, state);
	if (e == NULL)
		return;
	e->attr = *a;
	e->has_attr = true;
	e->attr_state = state;
}

void held_put_value(struct held *h, uint64_t state, uint64_t until_ns, uint64_t ino,
		    const uint8_t *data, size_t len)
{
	if (len > HELD_MAX_BYTES - h->bytes)
		return;
	uint8_t *copy = malloc(len > 0 ? len : 1);
	if (copy == NULL)
		return;
	struct entry *e = entry_for(h, ino, state);
	if (e == NULL) {
		free(copy);
		return;
	}
	wipe_value(h, e);
	if (len > 0)
		memcpy(copy, data, len);
	e->value = copy;
	e->len = len;
	e->value_until = until_ns;
	e->value_state = state;
	h->bytes += len;
}

/* An entry is removed when its inode is dropped, so one that is there
 * was not dropped since it was put: only a drop of everything counts. */
bool held_attr(struct held *h, uint64_t ino, struct vfs_attr *ret)
{
	struct entry *e = *find(h, ino);
	if (e == NULL || !e->has_attr || e->attr_state < h->dropped_all)
		return false;
	*ret = e->attr;
	return true;
}

bool held_value(struct held *h, uint64_t ino, uint64_t now_ns, const uint8_t **ret_data,
		size_t *ret_len)
{
	struct entry *e = *find(h, ino);
	if (e == NULL || e->value_until <= now_ns ||
	    !held_unchanged(h, ino, e->value_state))
		return false;
	*ret_data = e->value;
	*ret_len = e->len;
	return true;
}

void held_drop(struct held *h, uint64_t ino, uint64_t seq)
{
	unsigned b = bucket_of(ino);
	if (seq > h->dropped[b])
		h->dropped[b] = seq;
	struct entry **link = find(h, ino);
	if (*link != NULL)
		remove_entry(h, link);
}

void held_drop_all(struct held *h, uint64_t seq)
{
	if (seq > h->dropped_all)
		h->dropped_all = seq;
}

/* Whether what E holds is gone: dropped, or past its grant at NOW_NS. */
static bool value_gone(const struct held *h, const struct entry *e, uint64_t now_ns)
{
	return e->value_until <= now_ns || !held_unchanged(h, e->ino, e->value_state);
}

/* Keeps in each entry what KEEP_ATTR and the values' grants at NOW_NS
 * allow, and removes the entries left empty. */
static void prune(struct held *h, bool keep_attr, uint64_t now_ns)
{
	for (unsigned b = 0; b < HELD_BUCKETS && h->n_entries > 0; b++) {
		struct entry **link = &h->bucket[b];
		while (*link != NULL) {
			struct entry *e = *link;
			if (e->value != NULL && value_gone(h, e, now_ns))
				wipe_value(h, e);
			if (!keep_attr || e->attr_state < h->dropped_all)
				e->has_attr = false;
			if (e->value == NULL && !e->has_attr)
				remove_entry(h, link);
			else
				link = &e->next;
		}
	}
}

void held_sweep(struct held *h, uint64_t now_ns)
{
	prune(h, true, now_ns);
}

void held_forget_attrs(struct held *h)
{
	prune(h, false, 0);
}

static void remove_all(struct held *h)
{
	for (unsigned b = 0; b < HELD_BUCKETS; b++)
		while (h->bucket[b] != NULL)
			remove_entry(h, &h->bucket[b]);
}

void held_reset(struct held *h)
{
	remove_all(h);
	memset(h->dropped, 0, sizeof(h->dropped));
	h->dropped_all = 0;
}

void held_free(struct held *h)
{
	if (h == NULL)
		return;
	remove_all(h);
	free(h);
}
