/* Names the daemon just said were absent, with whether a write could have
 * committed then (VFS_OP_LOOKUP_WRITABLE). An open() that creates a secret
 * makes the kernel LOOKUP the name and then CREATE it, under the
 * directory's lock; the mount answers that CREATE itself (the secret is
 * created at its first commit), and what the daemon said at the LOOKUP
 * spares it a WRITABLE round trip of its own.
 *
 * A small table with its own lock: a slot per hash of (directory, name),
 * the newest answer wins, each is taken at most once. */
#ifndef VAULTFS_FUSE_ABSENT_H
#define VAULTFS_FUSE_ABSENT_H

#include <stdbool.h>
#include <stdint.h>

struct absent;

/* NULL when out of memory. */
struct absent *absent_new(void);
void absent_free(struct absent *t); /* NULL is fine */

/* The daemon said at NOW_NS (CLOCK_MONOTONIC) that NAME in DIR is absent
 * and that a write would end with WRITABLE (0 or -errno). */
void absent_put(struct absent *t, uint64_t dir, const char *name, int writable,
		uint64_t now_ns);
/* Takes what was put for NAME in DIR no earlier than NOW_NS - MAX_AGE_NS:
 * true and *RET_WRITABLE if there is one (it is then forgotten). */
bool absent_take(struct absent *t, uint64_t dir, const char *name, uint64_t now_ns,
		 uint64_t max_age_ns, int *ret_writable);

#endif
