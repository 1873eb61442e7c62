/* Names the mount holds: see names.h. */
#include "fuse/names.h"

#include <stdlib.h>
#include <string.h>

/* Buckets of the table, and how many names it holds at most (a 10,000-file
 * directory fits; a full table forgets every name and starts over). */
#define NAMES_BUCKETS 16384u
#define NAMES_MAX 65536u

struct name {
	struct name *next;
	uint64_t dir;
	uint64_t state;
	struct vfs_attr attr;
	char text[]; /* NUL-terminated */
};

struct names {
	struct name *bucket[NAMES_BUCKETS];
	unsigned count;
};

/* FNV-1a over the directory's inode and the name. */
static unsigned bucket_of(uint64_t dir, const char *name)
{
	uint64_t h = 14695981039346656037u;
	for (int i = 0; i < 8; i++)
		h = (h ^ ((dir >> (8 * i)) & 0xff)) * 1099511628211u;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211u;
	return (unsigned)(h % NAMES_BUCKETS);
}

struct names *names_new(void)
{
	return calloc(1, sizeof(struct names));
}

void names_free(struct names *n)
{
	if (n == NULL)
		return;
	names_clear(n);
	free(n);
}

/* The link to NAME in DIR, or the link at the end of its bucket. */
static struct name **find(struct names *n, uint64_t dir, const char *name)
{
	struct name **link = &n->bucket[bucket_of(dir, name)];
	while (*link != NULL && ((*link)->dir != dir || strcmp((*link)->text, name) != 0))
		link = &(*link)->next;
	return link;
}

static void unlink_name(struct names *n, struct name **link)
{
	struct name *e = *link;
	*link = e->next;
	free(e);
	n->count--;
}

void names_put(struct names *n, uint64_t dir, const char *name, uint64_t state,
	       const struct vfs_attr *a)
{
	struct name **link = find(n, dir, name);
	if (*link != NULL)
		unlink_name(n, link);
	if (n->count >= NAMES_MAX) {
		names_clear(n);
		link = find(n, dir, name);
	}
	size_t len = strlen(name);
	struct name *e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return;
	e->next = *link; /* where the replaced one was, or the bucket's end */
	e->dir = dir;
	e->state = state;
	e->attr = *a;
	memcpy(e->text, name, len + 1);
	*link = e;
	n->count++;
}

bool names_get(const struct names *n, uint64_t dir, const char *name, struct vfs_attr *ret,
	       uint64_t *ret_state)
{
	const struct name *e = *find((struct names *)n, dir, name);
	if (e == NULL)
		return false;
	*ret = e->attr;
	*ret_state = e->state;
	return true;
}

void names_clear(struct names *n)
{
	for (unsigned b = 0; b < NAMES_BUCKETS && n->count > 0; b++)
		while (n->bucket[b] != NULL)
			unlink_name(n, &n->bucket[b]);
}
