/* Kernel cache coherence, the mount side (the daemon side is
 * src/node/node_watch.c; the protocol is VFS_OP_WATCH in proto.h).
 *
 * A thread watches the daemon: for every notice it drops the kernel's
 * cached attributes of the listed inodes (and every cached name when names
 * were removed or moved), then acknowledges it. The daemon answers a write
 * only after that, so a cached entry is never older than an acknowledged
 * write. Each answer from the daemon passes cache_admit before it reaches
 * the kernel: it waits until the notices up to the answer's state are acted
 * on (nothing newer is shown while a cache may still show older), and gives
 * the time the kernel may keep what the answer says. The mount holds such
 * answers too (values and attributes of secrets), and serves them itself
 * while they are good. */
#ifndef VAULTFS_FUSE_CACHE_H
#define VAULTFS_FUSE_CACHE_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vaultfs/proto.h"

struct cache;

/* Starts the watching thread for the daemon at SOCKET_PATH. NAMES: the
 * kernel can drop every cached name at once (FUSE_NOTIFY_INC_EPOCH, FUSE
 * 7.44, Linux 6.16); without it names are never cached. 0 or -errno. */
int cache_start(struct cache **ret, struct fuse_session *se, const char *socket_path);
/* Stops and frees (NULL is fine). */
void cache_stop(struct cache *c);
/* Whether the kernel can drop all names at once (from FUSE INIT). */
void cache_set_names(struct cache *c, bool names);

/* What the kernel may keep of one answer from the daemon: ttls in seconds
 * (0: do not cache); for answers the mount may hold itself, the watch
 * (numbered from 1) during which it came, the seq of the state it was read
 * from and the grant's end (0: not to be held). */
struct cache_ttl {
	double attr;
	double entry;
	uint64_t watch;
	uint64_t state;
	uint64_t until_ns;
	uint64_t given_ns; /* CLOCK_MONOTONIC when attr and entry were computed */
};
/* Called with every answer's META before it reaches the kernel (C may be
 * NULL: no caching). */
struct cache_ttl cache_admit(struct cache *c, const struct vfs_resp_meta *meta);
/* TTL_S (TTL's attr or entry) less the time since it was computed: what
 * to hand the kernel now. The kernel counts a ttl from when it gets the
 * reply, so time the mount spent on the way must not stretch the grant. */
double cache_ttl_left(const struct cache_ttl *ttl, double ttl_s);

/* The mount holds answers itself too (held.h), under the same grants: a
 * linearizable answer is good until its grant ends or a notice drops it.
 * These hold an admitted answer (TTL from cache_admit; nothing happens
 * when it may not be held). */
void cache_hold_attr(struct cache *c, const struct cache_ttl *ttl, const struct vfs_attr *a);
void cache_hold_value(struct cache *c, const struct cache_ttl *ttl, uint64_t ino,
		      const uint8_t *data, size_t len);
/* Whether an entry of a listing (name and attributes of INO) admitted with
 * TTL may still reach the kernel: its grant has not ended and no notice
 * since dropped INO's attributes or any name. *RET_NOW: the ttls left to
 * it. */
bool cache_entry_good(struct cache *c, const struct cache_ttl *ttl, uint64_t ino,
		      struct cache_ttl *ret_now);
/* The held attributes of INO and the ttls left to them; false if none. */
bool cache_held_attr(struct cache *c, uint64_t ino, struct vfs_attr *ret,
		     struct cache_ttl *ret_ttl);
/* Hands the held value of INO to LOAD, under the cache's lock (LOAD must
 * copy it). 1 if it did, 0 if none is held, or LOAD's error. */
int cache_held_value(struct cache *c, uint64_t ino,
		     int (*load)(void *arg, const uint8_t *data, size_t len), void *arg);

#endif
