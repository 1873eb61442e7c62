/* What a mount itself holds of the daemon's answers: the attributes of
 * inodes, until a notice drops them or the run of grants they came in ends
 * (the cache then forgets them all), and the values of secrets, each until
 * the end of the grant that came with it (cache.h says when an answer may
 * be held and when it must be dropped).
 *
 * A held answer spares the daemon a call: an open() for reading, the
 * GETATTR before an open and an open(O_TRUNC) are answered in the mount.
 * Values are secrets: like a handle's buffer they live in the mount's
 * memory, but only until their grant ends (a tenth of a second) and the
 * next sweep, never more than a fixed total, and are wiped when dropped.
 *
 * Seqs order the daemon's states: an answer read from state S reflects
 * every notice up to S. A drop at seq D makes every answer read before D
 * invalid, held or still on its way.
 *
 * Not thread-safe: the cache calls it under its lock. */
#ifndef VAULTFS_FUSE_HELD_H
#define VAULTFS_FUSE_HELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vaultfs/proto.h"

struct held;

/* NULL when out of memory. */
struct held *held_new(void);
/* Wipes and frees everything (NULL is fine). */
void held_free(struct held *h);

/* Holds A unless something about its inode was dropped after STATE, the
 * seq of the state it was read from. */
void held_put_attr(struct held *h, uint64_t state, const struct vfs_attr *a);
/* The same for the value of INO (LEN bytes at DATA, copied), until UNTIL_NS
 * (CLOCK_MONOTONIC). */
void held_put_value(struct held *h, uint64_t state, uint64_t until_ns, uint64_t ino,
		    const uint8_t *data, size_t len);

/* The attributes held of INO: true of the state after every drop so far. */
bool held_attr(struct held *h, uint64_t ino, struct vfs_attr *ret);
/* The value held of INO, if still good at NOW_NS. Its bytes stay owned by
 * the table: copy them before letting go of the caller's lock. */
bool held_value(struct held *h, uint64_t ino, uint64_t now_ns, const uint8_t **ret_data,
		size_t *ret_len);

/* Whether nothing about INO was dropped after STATE: an answer about it
 * read from STATE is still true (whether or not it is held). */
bool held_unchanged(const struct held *h, uint64_t ino, uint64_t state);
/* Drops what is held about INO because of the notice SEQ. */
void held_drop(struct held *h, uint64_t ino, uint64_t seq);
/* Drops everything read before SEQ (UINT64_MAX: everything, until
 * held_reset). */
void held_drop_all(struct held *h, uint64_t seq);
/* Wipes everything and forgets past drops: a new watch numbers its seqs
 * from its own start. */
void held_reset(struct held *h);
/* Wipes what was dropped or is no longer good at NOW_NS. */
void held_sweep(struct held *h, uint64_t now_ns);
/* Forgets every attribute held (values stay): the run of grants under
 * which they were good has ended. */
void held_forget_attrs(struct held *h);

#endif
