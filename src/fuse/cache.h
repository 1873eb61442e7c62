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
 * while they are good.
 *
 * Inodes the kernel has not read yet. The kernel drops the attributes of
 * an inode it holds when told to, and a LOOKUP or GETATTR answer sent
 * before that is then thrown away (it samples an attribute version before
 * asking). But it ignores a notice for an inode it does not hold yet, and
 * an entry reply (LOOKUP, CREATE, MKDIR, READDIRPLUS) that makes the inode
 * applies the attributes it carries whatever came in between. So an answer
 * admitted before a chmod, read by the kernel after the chmod's notice was
 * acknowledged, would make a new inode with the old mode, for the rest of
 * its grant: a process that starts after the chmod returned could open
 * with the old permissions. The mount counts the lookups it hands out
 * (lookups.h); when a notice names an inode the kernel does not hold but
 * the mount handed out, a reply may be on its way, and every cached name
 * is dropped before the notice is acknowledged: whatever starts after
 * that looks its path up again, and that LOOKUP meets an inode the kernel
 * holds, whose attribute version discards anything older. */
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
	uint64_t run;   /* the run of grants it came in */
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

/* An entry reply is about to hand INO to the kernel, with what an answer
 * admitted with TTL says of it: counts it, and says whether the reply may
 * carry TTL's ttls (false: a notice since dropped INO; the reply must not
 * let the kernel keep anything). Counting and looking at the notices under
 * one lock is what closes the window of "Inodes the kernel has not read
 * yet": a notice acted on after the count meets the count, one acted on
 * before it shows here. If the reply then failed (the kernel never read
 * it), cache_not_given. FORGET gives back N. */
bool cache_given(struct cache *c, uint64_t ino, const struct cache_ttl *ttl);
void cache_not_given(struct cache *c, uint64_t ino);
void cache_forgotten(struct cache *c, uint64_t ino, uint64_t n);

/* The mount holds answers itself too (held.h, names.h). A value is good
 * until its own grant ends or a notice drops it. Attributes and names are
 * good while the run of grants they came in lasts, unless a notice drops
 * them.
 *
 * Runs. A run is a stretch of time in which this mount always held a live
 * grant: it begins with a grant admitted when every earlier one had ended
 * (or was within CACHE_MARGIN_NS of it) and lasts until the latest grant
 * admitted since ends. Throughout a run the node's own grants are alive
 * (its grants end no earlier than any it gave this mount), so it sends
 * this mount every notice and skips none (node_watch.c). A held answer,
 * read from state S and not dropped since, is then still true: a write
 * after S is either one whose notice this mount acted on (it dropped the
 * answer), or one answered by the leader under its rule (b) at T + cache_ms
 * (src/coherence): the latest grant of the run comes from a read round
 * that started before T, or it would have been admitted only after this
 * mount acted on the write's notice, so it ends before T + cache_ms, and
 * the run with it. When a run ends, notices may have been skipped, so what
 * it held is forgotten; answers admitted in it are not held after. This
 * spares the daemon a LOOKUP each time the kernel's copy of a name it uses
 * often expires. These hold an admitted answer (TTL from cache_admit;
 * nothing happens when it may not be held). */
void cache_hold_attr(struct cache *c, const struct cache_ttl *ttl, const struct vfs_attr *a);
void cache_hold_value(struct cache *c, const struct cache_ttl *ttl, uint64_t ino,
		      const uint8_t *data, size_t len);
/* Names reach the kernel only in answers to its LOOKUPs, never in a
 * READDIRPLUS entry (whose entry ttl is always 0), because of when the
 * kernel reads the name epoch that FUSE_NOTIFY_INC_EPOCH advances:
 *
 * - LOOKUP (fuse_lookup; a revalidation keeps the dentry's epoch): before
 *   it sends the request. The mount looks at its state after that; a notice
 *   acted on before the look is seen by it, one acted on after it advances
 *   the epoch past what the dentry carries, so the name is looked up again.
 * - READDIRPLUS (fuse_direntplus_link): when it reads the reply, after the
 *   mount wrote it. A notice that drops names, acted on and acknowledged
 *   in between, is missed by the mount's look and leaves the old name
 *   cached under the new epoch, for its whole entry ttl, counted from a
 *   link that may come arbitrarily late. Nothing in the request orders the
 *   two, so no check in the mount can close that window.
 *
 * So a listing gives the kernel attributes only (under the same
 * attr_version rule as a LOOKUP's: sampled before the request), and its
 * names stay in the mount (names.h): the kernel LOOKUPs each name it uses
 * and the mount answers from the listing (or an earlier LOOKUP's answer)
 * while the run lasts, no notice since dropped names (act_on empties the
 * table before the notice is acknowledged) and, with the inode's
 * attributes held now or the name's own when none dropped them since.
 * Such an answer is what a read at the notices acted on would return, and
 * it is a LOOKUP's: the first rule above covers it. */

/* Whether the attributes of INO from a listing admitted with TTL may still
 * reach the kernel in a READDIRPLUS entry: its grant has not ended and no
 * notice since dropped INO's attributes or any name (a name gone stale is
 * not linked either, to spare the kernel the work). If so, INO is counted
 * as handed to the kernel, as cache_given does, and *RET_NOW holds the
 * ttls left to them; its entry ttl is 0. */
bool cache_entry_give(struct cache *c, const struct cache_ttl *ttl, uint64_t ino,
		      struct cache_ttl *ret_now);
/* Holds a listing's entry or a LOOKUP's answer: NAME in directory DIR is
 * A's inode, admitted with TTL (nothing happens when it may not be held). */
void cache_hold_name(struct cache *c, const struct cache_ttl *ttl, uint64_t dir,
		     const char *name, const struct vfs_attr *a);
/* What a held name says NAME in DIR is, and the ttls left to it (the
 * answer to a LOOKUP); false if none is good now. */
bool cache_held_name(struct cache *c, uint64_t dir, const char *name, struct vfs_attr *ret,
		     struct cache_ttl *ret_ttl);
/* The held attributes of INO and the ttls left to them; false if none. */
bool cache_held_attr(struct cache *c, uint64_t ino, struct vfs_attr *ret,
		     struct cache_ttl *ret_ttl);
/* Hands the held value of INO to LOAD, under the cache's lock (LOAD must
 * copy it). 1 if it did, 0 if none is held, or LOAD's error. */
int cache_held_value(struct cache *c, uint64_t ino,
		     int (*load)(void *arg, const uint8_t *data, size_t len), void *arg);

#endif
