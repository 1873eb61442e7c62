/* FUSE low-level frontend: maps filesystem operations onto the daemon's
 * local API (include/vaultfs/proto.h).
 *
 * Inode numbers are the daemon's (root = VFS_ROOT_INO = FUSE_ROOT_ID), plus
 * the reserved control inodes of control.h. Every request carries the
 * caller's uid/gid. An open secret file reads a copy of its value, shared
 * with the other open files that read the same (valuecache.h) until it
 * writes; the whole value is committed on flush/fsync, so writes are
 * atomic.
 *
 * Usage: frontend_new(), pass frontend_ops() and the frontend as userdata to
 * fuse_session_new(), frontend_set_client() before the session loop starts,
 * frontend_free() after fuse_session_destroy(). */
#ifndef VAULTFS_FUSE_FRONTEND_H
#define VAULTFS_FUSE_FRONTEND_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312 /* 3.12: fuse_loop_cfg_* (libfuse 3.14 in Debian 12) */
#endif

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stddef.h>

struct frontend;
struct vfs_client;

/* timeout_ms bounds every call to the daemon (0: no limit). max_cached
 * (> 0) bounds the bytes the values of all open files take: past it an
 * open, or a write that needs a copy of its own, fails with ENOBUFS.
 * Returns 0 or -ENOMEM. */
int frontend_new(struct frontend **ret, unsigned timeout_ms, size_t max_cached);

/* The client the handlers use. Borrowed: the caller closes it after the
 * session loop has ended. Set it before the loop starts. */
void frontend_set_client(struct frontend *fe, struct vfs_client *client);

/* Whether to log each call to the daemon to stderr (mount.vaultfs -d): the
 * FUSE requests the mount answers itself are the ones without one. */
void frontend_set_trace(struct frontend *fe, bool trace_calls);

/* The kernel cache coherence to use (cache.h; borrowed, NULL: none).
 * Set it before the session loop starts. */
struct cache;
void frontend_set_cache(struct frontend *fe, struct cache *cache);

/* The operations table; its userdata must be a struct frontend. */
const struct fuse_lowlevel_ops *frontend_ops(void);

/* Frees the frontend and wipes the buffers of handles still open (a lazily
 * unmounted filesystem is torn down without their release). NULL is fine. */
void frontend_free(struct frontend *fe);

#endif
