/* The kernel's lookup counts, as far as the mount can tell: how many times
 * each inode was handed to the kernel (entry replies: LOOKUP, CREATE,
 * MKDIR, READDIRPLUS entries) less what FORGET gave back. An inode with a
 * count may be known to the kernel, or be on its way there in a reply the
 * kernel has not read yet (cache.h says why that matters).
 *
 * Not thread-safe: the cache calls it under its lock. */
#ifndef VAULTFS_FUSE_LOOKUPS_H
#define VAULTFS_FUSE_LOOKUPS_H

#include <stdbool.h>
#include <stdint.h>

struct lookups;

/* NULL when out of memory. */
struct lookups *lookups_new(void);
void lookups_free(struct lookups *l); /* NULL is fine */

/* INO is handed to the kernel once more. False if out of memory (the
 * count is then unknown: lookups_held says true for every inode). */
bool lookups_add(struct lookups *l, uint64_t ino);
/* The kernel gave back N lookups of INO (FORGET), or a reply that would
 * have handed it over failed (N = 1). */
void lookups_forget(struct lookups *l, uint64_t ino, uint64_t n);
/* Whether INO's count is above zero. */
bool lookups_held(const struct lookups *l, uint64_t ino);

#endif
