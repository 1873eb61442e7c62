/* Names the mount holds: what each name of a directory resolved to (its
 * inode's attributes), from the READDIRPLUS pages of listings and from
 * LOOKUP answers. The mount answers a LOOKUP from them, so a listing spares
 * the daemon a call per name although the kernel is never given a name by
 * a listing (cache.h says why), and a name looked up once is not asked for
 * again while the run of grants it came in lasts.
 *
 * Not thread-safe: the cache calls it under its lock, and empties it
 * whenever a notice drops names, before the notice is acknowledged, and
 * when the run of grants ends. */
#ifndef VAULTFS_FUSE_NAMES_H
#define VAULTFS_FUSE_NAMES_H

#include <stdbool.h>
#include <stdint.h>

#include "vaultfs/proto.h"

struct names;

/* NULL when out of memory. */
struct names *names_new(void);
void names_free(struct names *n); /* NULL is fine */

/* Holds that NAME in directory DIR is A's inode (read from state STATE),
 * in place of what was held for it. A full table first forgets every
 * name; nothing happens when memory is short (a name not held costs a
 * call to the daemon). */
void names_put(struct names *n, uint64_t dir, const char *name, uint64_t state,
	       const struct vfs_attr *a);
/* What is held for NAME in DIR: the attributes and the state they were
 * read from. */
bool names_get(const struct names *n, uint64_t dir, const char *name, struct vfs_attr *ret,
	       uint64_t *ret_state);
/* Forgets every name. */
void names_clear(struct names *n);

#endif
