/* Client side of the local API (used by mount.vaultfs).
 *
 * Thread-safe: any number of threads may call vfs_client_call at once; each
 * uses a connection of its own from a pool (up to 64; more calls wait for
 * one), so none waits for another's response. If the daemon goes away,
 * calls in flight fail with -ENOTCONN and the next call reconnects, so a
 * mount survives a daemon restart. */
#ifndef VAULTFS_CLIENT_H
#define VAULTFS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vaultfs/proto.h"

struct vfs_client;

/* Connects to SOCKET_PATH and does the HELLO exchange. On failure writes a
 * message an administrator can act on ("cannot connect to vaultfsd at PATH:
 * ...; is vaultfsd running?") into errmsg and returns -errno. */
int vfs_client_connect(struct vfs_client **ret, const char *socket_path,
		       char *errmsg, size_t errlen);

/* Closes the connection; calls in flight fail with -ENOTCONN. NULL is fine. */
void vfs_client_close(struct vfs_client *c);

/* Sends one request and waits for its response (up to timeout_ms; 0 means
 * no limit; -ETIMEDOUT past it). Returns the response status (0 or -errno);
 * *RET_META (if not NULL) gets the response's meta whenever one came back.
 * On 0, *ret_resp is a malloc'd copy of the payload (NULL if empty) that the
 * caller releases with vfs_client_free_resp, which wipes it. */
int vfs_client_call(struct vfs_client *c, uint16_t op, uint32_t uid, uint32_t gid,
		    const void *payload, size_t len, unsigned timeout_ms,
		    uint8_t **ret_resp, size_t *ret_len, struct vfs_resp_meta *ret_meta);

/* Who a call is made for: the FUSE caller (proto.h, struct vfs_req_header). */
struct vfs_caller {
	uint32_t uid;
	uint32_t gid;
	uint32_t pid;            /* 0: unknown */
	char comm[VFS_COMM_LEN]; /* NUL-padded; all NULs when not audited */
};

/* vfs_client_call on behalf of WHO (vfs_client_call is this with pid 0
 * and no command). */
int vfs_client_call_as(struct vfs_client *c, uint16_t op, const struct vfs_caller *who,
		       const void *payload, size_t len, unsigned timeout_ms,
		       uint8_t **ret_resp, size_t *ret_len, struct vfs_resp_meta *ret_meta);

/* Whether the daemon said, at the last connection's HELLO, that it keeps an
 * audit log (VFS_HELLO_AUDIT): only then is a caller's command worth
 * reading from /proc. */
bool vfs_client_audited(struct vfs_client *c);

void vfs_client_free_resp(uint8_t *resp, size_t len);

/* Sets the VFS_REQ_* flags sent with every later call (e.g.
 * VFS_REQ_LOCAL_READ for a mount that accepts possibly stale reads). */
void vfs_client_set_flags(struct vfs_client *c, uint16_t flags);

/* A watch: a connection of its own on which the daemon sends a notice for
 * every change it applies (proto.h). Not thread-safe: one thread reads it. */
struct vfs_watch;
struct vfs_notice {
	uint64_t index; /* the notice covers the entries up to this index */
	uint8_t flags;  /* VFS_NOTICE_* */
	uint32_t n;
	uint64_t *inos; /* the inodes whose attributes changed */
	/* With VFS_NOTICE_ATTRS: inos[i]'s attributes in the notice's state
	 * (ino 0: it is gone); else NULL. */
	struct vfs_attr *attrs;
};

/* Connects and sends WATCH; *RET_START is the index the notices start
 * after. Returns 0 or -errno with a message in errmsg. */
int vfs_watch_open(struct vfs_watch **ret, const char *socket_path, uint64_t *ret_start,
		   char *errmsg, size_t errlen);
/* Waits up to TIMEOUT_MS for the next notice: 0, -ETIMEDOUT, or another
 * -errno (the connection is then useless). Release with vfs_notice_free. */
int vfs_watch_next(struct vfs_watch *w, unsigned timeout_ms, struct vfs_notice *ret);
void vfs_notice_free(struct vfs_notice *notice);
/* Tells the daemon every notice up to INDEX has been acted on. */
int vfs_watch_ack(struct vfs_watch *w, uint64_t index);
void vfs_watch_close(struct vfs_watch *w); /* NULL is fine */

#endif
