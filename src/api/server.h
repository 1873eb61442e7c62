/* Server side of the local API: a libuv Unix-socket listener on the loop
 * thread.
 *
 * The socket is created mode 0600; every connection is checked with
 * SO_PEERCRED and only root or the daemon's own uid is admitted. A
 * malformed frame (bad length, oversized, bad header, wrong first op) drops
 * that connection only; the daemon keeps serving the others. */
#ifndef VAULTFS_API_SERVER_H
#define VAULTFS_API_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vaultfs/proto.h"

struct api_server;
struct api_conn;

/* One request. Owned by the handler from the moment it is handed over until
 * it passes it to api_reply, which frees it. PAYLOAD stays valid until then. */
struct api_request {
	uint32_t id;
	uint16_t op;
	uint16_t flags; /* VFS_REQ_* */
	uint32_t uid; /* the FUSE caller's uid/gid as sent by the client */
	uint32_t gid;
	uint32_t peer_uid; /* the connected process's uid (SO_PEERCRED) */
	int peer_pid;      /* ... and its pid (-1: unknown) */
	/* The FUSE caller's pid and command as the client sent them
	 * (VFS_REQ_CALLER; 0 and "" when it did not). */
	uint32_t pid;
	char comm[VFS_COMM_LEN];
	const uint8_t *payload;
	uint32_t len;
	/* Set by the handler before api_reply: until when (CLOCK_MONOTONIC ns)
	 * the client may cache the attributes and names in the answer; 0 (the
	 * default): it may not. */
	uint64_t cache_until_ns;
	/* Set by a handler that answers later from a state read earlier: the
	 * seq of that state (the watch hook's state_index then). Unset (the
	 * default): the hook's value when the answer leaves. */
	uint64_t state_index;
	bool state_index_set;
	/* Set by a handler whose status-0 answer says that what was asked
	 * for does not exist (LOOKUP_WRITABLE of an absent name): the -errno
	 * that the audit log and the metrics report instead of 0 (default 0:
	 * the status), so that they count it as they count a LOOKUP's. */
	int outcome;
	/* Set by the handler (default NULL): called by api_reply with the
	 * final status, before the answer leaves (the audit log's result). */
	void (*on_reply)(void *arg, const struct api_request *req, int status);
	void *on_reply_arg;
	struct api_conn *conn; /* private */
};

/* Called on the loop thread for every request except HELLO. Must call
 * api_reply exactly once, now or later. */
typedef void (*api_handler_fn)(void *ctx, struct api_request *req);

/* Listens on PATH (an existing stale socket file is replaced; its directory is
 * created 0755 if missing). Returns 0 or -errno with a message in errmsg. */
int api_server_start(struct api_server **ret, uv_loop_t *loop, const char *path,
		     api_handler_fn handler, void *ctx, char *errmsg, size_t errlen);

/* Watch connections (VFS_OP_WATCH). Called on the loop thread. STATE_INDEX
 * is stamped on every response; START makes CONN a watcher and returns the
 * index its notices start after; ACK reports a VFS_OP_WATCH_ACK; GONE says
 * CONN closed: no api_notice on it after that. */
struct api_watch_hooks {
	uint64_t (*state_index)(void *ctx);
	uint64_t (*start)(void *ctx, struct api_conn *conn);
	void (*ack)(void *ctx, struct api_conn *conn, uint64_t index);
	void (*gone)(void *ctx, struct api_conn *conn);
};

/* VFS_HELLO_* flags told to every client that connects from now on. */
void api_server_set_hello_flags(struct api_server *s, uint32_t flags);

/* Installs HOOKS (borrowed; NULL: WATCH is answered -ENOSYS). */
void api_server_set_watch(struct api_server *s, const struct api_watch_hooks *hooks);

/* What the server saw, for metrics. Called on the loop thread with the
 * handler's CTX. REQUEST_DONE: a request of OP was answered with STATUS
 * (0 or -errno), NS after it arrived. CLIENTS: how many processes are
 * connected now (each mount is one, however many connections it has). */
struct api_observer {
	void (*request_done)(void *ctx, uint16_t op, int status, uint64_t ns);
	void (*clients)(void *ctx, unsigned n);
};
/* Installs OBS (borrowed; NULL: none). */
void api_server_set_observer(struct api_server *s, const struct api_observer *obs);

/* Sends a notice (see proto.h) on watcher CONN. A watcher that lets notices
 * pile up unread is closed (GONE follows). */
void api_notice(struct api_conn *conn, uint64_t index, const void *payload, size_t len);

/* The pid of the process at the other end of CONN (-1: unknown). */
int api_conn_pid(const struct api_conn *conn);
/* The protocol version CONN's client said it speaks (HELLO). */
uint32_t api_conn_version(const struct api_conn *conn);

/* Closes watcher CONN (GONE follows), logging WHY. */
void api_watch_drop(struct api_conn *conn, const char *why);

/* Sends the response (status 0 or -errno; payload only when status is 0) and
 * frees REQ. Safe after the client disconnected: the response is dropped. */
void api_reply(struct api_request *req, int status, const void *payload, size_t len);

/* Stops listening, closes every connection, removes the socket file. Requests
 * still held by the handler stay valid and may still be passed to
 * api_reply. CB (may be NULL) runs once all handles are closed; the server is
 * freed after the last outstanding request is replied to. */
void api_server_stop(struct api_server *s, void (*cb)(void *arg), void *arg);

#endif
