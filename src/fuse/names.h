/* Names the mount holds: what each name of a listed directory resolved to
 * (its inode's attributes), from the READDIRPLUS pages of a listing, each
 * until its page's grant ends. The mount answers a LOOKUP from them, so a
 * listing spares the daemon a call per name although the kernel is never
 * given a name by a listing (cache.h says why).
 *
 * Not thread-safe: the cache calls it under its lock, and empties it
 * whenever a notice drops names, before the notice is acknowledged. */
#ifndef VAULTFS_FUSE_NAMES_H
#define VAULTFS_FUSE_NAMES_H

#include <stdbool.h>
#include <stdint.h>

#include "vaultfs/proto.h"

struct names;

/* NULL when out of memory. */
struct names *names_new(void);
void names_free(struct names *n); /* NULL is fine */

/* Holds that NAME in directory DIR is A's inode (read from state STATE,
 * good until UNTIL_NS, CLOCK_MONOTONIC), in place of what was held for it.
 * Nothing happens when the table is full or memory is short: a name not
 * held costs a call to the daemon. */
void names_put(struct names *n, uint64_t dir, const char *name, uint64_t state,
	       uint64_t until_ns, const struct vfs_attr *a);
/* What is held for NAME in DIR and still good at NOW_NS: the attributes,
 * the state they were read from and when they stop being good. */
bool names_get(const struct names *n, uint64_t dir, const char *name, uint64_t now_ns,
	       struct vfs_attr *ret, uint64_t *ret_state, uint64_t *ret_until_ns);
/* Forgets every name. */
void names_clear(struct names *n);
/* Forgets the names no longer good at NOW_NS. */
void names_sweep(struct names *n, uint64_t now_ns);

#endif
