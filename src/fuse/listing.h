/* An open directory's listing, as the mount keeps it from opendir to
 * releasedir: names, types and inode numbers in the order readdir hands
 * them out (an offset is a position in it, so a directory that changes
 * while it is read neither repeats nor skips entries), and for the
 * daemon's entries the attributes that came with them and the grant of the
 * READDIRPLUS page that brought them (cache.h says when they may still be
 * handed to the kernel).
 *
 * Not thread-safe: the kernel reads one open directory at a time. */
#ifndef VAULTFS_FUSE_LISTING_H
#define VAULTFS_FUSE_LISTING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fuse/cache.h"
#include "vaultfs/proto.h"

struct listing;

struct listing_entry {
	uint64_t ino;
	mode_t mode;
	const char *name;
	const struct vfs_attr *attr; /* NULL: none came with it */
	const struct cache_ttl *ttl; /* the grant for attr and the name (with attr only) */
};

/* NULL when out of memory. */
struct listing *listing_new(void);
void listing_free(struct listing *l); /* NULL is fine */

/* Appends an entry without attributes ("." and "..", control files). LEN
 * bytes of NAME. 0 or -ENOMEM. */
int listing_add(struct listing *l, uint64_t ino, mode_t mode, const char *name, size_t len);
/* Appends the entries of one VFS_OP_READDIRPLUS answer (P, LEN), asked for
 * the children above AFTER and admitted with TTL. *RET_NEXT is the AFTER of
 * the next page, 0 when the listing is complete. 0, -ENOMEM, or -EIO when
 * the answer is malformed: short, a bad name, entries not in ino order
 * above AFTER, or a NEXT that would not make progress. */
int listing_add_page(struct listing *l, const uint8_t *p, size_t len,
		     const struct cache_ttl *ttl, uint64_t after, uint64_t *ret_next);

size_t listing_count(const struct listing *l);
/* Entry I < listing_count: its pointers stay good until the listing grows
 * or is freed. */
void listing_at(const struct listing *l, size_t i, struct listing_entry *ret);

#endif
