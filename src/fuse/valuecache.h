/* The values of open secret files, and one budget on the memory they take.
 *
 * An open secret file reads from a copy of the value it opened. The open
 * files of one inode that read the same bytes share one copy, counted by
 * references: 400 descriptors of a 1 MiB secret hold 1 MiB, not 400. The
 * bytes are the version: the daemon's READ answer carries nothing else that
 * names one, and two versions with the same bytes cannot be told apart by a
 * reader anyway. An open that reads other bytes (the secret was written in
 * between) gets a copy of its own, shared in turn by the opens that read
 * the same; the older copy lives on for the files that still read it. A
 * file that writes first makes itself a private copy (copy on write), so a
 * shared copy never changes and what one file writes is seen by no other
 * before it is committed.
 *
 * Every copy counts against the budget, shared ones once, private ones each,
 * in whole pages: a copy that would pass it is refused with -ENOBUFS, and
 * nothing else changes. A copy is wiped and its memory given back to the
 * system when its last holder drops it (valuecache.c says how), except up
 * to VALUECACHE_SPARES one-page mappings, wiped, kept for the next copies
 * (outside the budget: they hold nothing).
 *
 * A copy is handed out as a pointer; NULL is the empty value, which takes
 * no memory. Thread-safe: the table and the budget have their own lock. The
 * bytes of a shared copy never change while it is held, so they are read
 * without a lock; a private copy belongs to its one holder, which must keep
 * its own users of it apart (the frontend's per-handle lock). */
#ifndef VAULTFS_FUSE_VALUECACHE_H
#define VAULTFS_FUSE_VALUECACHE_H

#include <stddef.h>
#include <stdint.h>

struct valuecache;
struct valuecache_copy;

/* One-page mappings kept for reuse, at most: a put or read of a value up
 * to a page from each of 64 processes at once maps nothing. */
#define VALUECACHE_SPARES 64u

/* A cache whose copies may take BUDGET bytes in all (> 0).
 * 0 or -ENOMEM. */
int valuecache_new(struct valuecache **ret, size_t budget);
/* Frees it; every copy must have been dropped. NULL is fine. */
void valuecache_free(struct valuecache *vc);

/* A shared copy of the LEN bytes at DATA, as INO's value: the copy already
 * held with the same bytes (one more reference), else a new one. *RET is
 * NULL for LEN 0. 0, -ENOBUFS (the budget) or -ENOMEM; *RET is written only
 * on success. */
int valuecache_share(struct valuecache *vc, uint64_t ino, const uint8_t *data, size_t len,
		     struct valuecache_copy **ret);
/* Drops one reference (the holder's); the last one wipes the copy and
 * gives its memory back. NULL is fine. */
void valuecache_drop(struct valuecache *vc, struct valuecache_copy *copy);

/* The bytes of COPY and how many there are (NULL: none). */
const uint8_t *valuecache_bytes(const struct valuecache_copy *copy);
size_t valuecache_len(const struct valuecache_copy *copy);

/* Writes SIZE (> 0) bytes from DATA at POS of the value *COPY, the gap
 * between its end and POS reading as zeros. A shared copy (or NULL) is
 * first replaced with a private one, the holder's reference to the shared
 * one dropped. 0, or -ENOBUFS / -ENOMEM with *COPY unchanged. */
int valuecache_write(struct valuecache *vc, struct valuecache_copy **copy, size_t pos,
		     const uint8_t *data, size_t size);
/* Sets the length of the value *COPY to LEN: growth reads as zeros, what is
 * cut off is wiped. Private first, as for valuecache_write (a cut to 0
 * leaves NULL instead of a private empty copy). 0, -ENOBUFS or -ENOMEM with
 * *COPY unchanged. */
int valuecache_resize(struct valuecache *vc, struct valuecache_copy **copy, size_t len);

/* What all copies take now, and the budget, in bytes. */
size_t valuecache_used(struct valuecache *vc);
size_t valuecache_budget(const struct valuecache *vc);
/* The spare mappings kept now (0 to VALUECACHE_SPARES). */
unsigned valuecache_spares(struct valuecache *vc);

#endif
