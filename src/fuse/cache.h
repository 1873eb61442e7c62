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
 * the time the kernel may keep what the answer says. */
#ifndef VAULTFS_FUSE_CACHE_H
#define VAULTFS_FUSE_CACHE_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>

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

/* The ttls for one answer from the daemon, in seconds (0: do not cache). */
struct cache_ttl {
	double attr;
	double entry;
};
/* Called with every answer's META before it reaches the kernel (C may be
 * NULL: no caching). */
struct cache_ttl cache_admit(struct cache *c, const struct vfs_resp_meta *meta);

#endif
