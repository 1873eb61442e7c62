/* Client side of the local API (used by mount.vaultfs).
 *
 * Thread-safe: any number of threads may call vfs_client_call at once; each
 * uses a connection of its own from a pool (up to 64; more calls wait for
 * one), so none waits for another's response. If the daemon goes away,
 * calls in flight fail with -ENOTCONN and the next call reconnects, so a
 * mount survives a daemon restart. */
#ifndef VAULTFS_CLIENT_H
#define VAULTFS_CLIENT_H

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
 * no limit; -ETIMEDOUT past it). Returns the response status (0 or -errno).
 * On 0, *ret_resp is a malloc'd copy of the payload (NULL if empty) that the
 * caller releases with vfs_client_free_resp, which wipes it. */
int vfs_client_call(struct vfs_client *c, uint16_t op, uint32_t uid, uint32_t gid,
		    const void *payload, size_t len, unsigned timeout_ms,
		    uint8_t **ret_resp, size_t *ret_len);

void vfs_client_free_resp(uint8_t *resp, size_t len);

/* Sets the VFS_REQ_* flags sent with every later call (e.g.
 * VFS_REQ_LOCAL_READ for a mount that accepts possibly stale reads). */
void vfs_client_set_flags(struct vfs_client *c, uint16_t flags);

#endif
