/* Names the daemon just said were absent: see absent.h. */
#include "fuse/absent.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vaultfs/proto.h"

/* Enough for one create in flight per FUSE thread of a busy mount; a
 * collision only costs the create a WRITABLE call. */
#define ABSENT_SLOTS 256u

struct absent_slot {
	uint64_t dir;
	uint64_t at_ns; /* 0: empty */
	int writable;
	char name[VFS_MAX_NAME + 1];
};

struct absent {
	pthread_mutex_t lock;
	struct absent_slot slots[ABSENT_SLOTS];
};

struct absent *absent_new(void)
{
	struct absent *t = calloc(1, sizeof(*t));
	if (t != NULL)
		pthread_mutex_init(&t->lock, NULL);
	return t;
}

void absent_free(struct absent *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* FNV-1a of DIR and NAME. */
static struct absent_slot *slot_of(struct absent *t, uint64_t dir, const char *name)
{
	uint64_t h = 1469598103934665603u;
	for (int i = 0; i < 8; i++, dir >>= 8)
		h = (h ^ (dir & 0xff)) * 1099511628211u;
	for (const char *p = name; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211u;
	return &t->slots[h % ABSENT_SLOTS];
}

void absent_put(struct absent *t, uint64_t dir, const char *name, int writable,
		uint64_t now_ns)
{
	size_t len = strlen(name);
	assert(now_ns != 0 && writable <= 0);
	if (len > VFS_MAX_NAME)
		return;
	pthread_mutex_lock(&t->lock);
	struct absent_slot *s = slot_of(t, dir, name);
	s->dir = dir;
	s->at_ns = now_ns;
	s->writable = writable;
	memcpy(s->name, name, len + 1);
	pthread_mutex_unlock(&t->lock);
}

bool absent_take(struct absent *t, uint64_t dir, const char *name, uint64_t now_ns,
		 uint64_t max_age_ns, int *ret_writable)
{
	pthread_mutex_lock(&t->lock);
	struct absent_slot *s = slot_of(t, dir, name);
	bool found = s->at_ns != 0 && s->dir == dir && strcmp(s->name, name) == 0 &&
		     s->at_ns <= now_ns && now_ns - s->at_ns <= max_age_ns;
	if (found)
		*ret_writable = s->writable;
	if (s->dir == dir && strcmp(s->name, name) == 0)
		s->at_ns = 0; /* used once, or too old to be */
	pthread_mutex_unlock(&t->lock);
	return found;
}
