/* A vaultfs node: seal state (init, unseal, seal), the Raft server with its
 * state machine, and the handling of every local API request.
 *
 * Everything here runs on the daemon's loop thread. Raft runs only while the
 * node is unsealed: its log is encrypted with the keyring, so a sealed node
 * could not apply it anyway: a sealed node leaves Raft. */
#ifndef VAULTFS_NODE_NODE_H
#define VAULTFS_NODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api/server.h"

struct node_config {
	const char *data_dir;
	const char *node_id;
	const char *cluster_addr; /* host:port */
	unsigned snapshot_threshold;
	unsigned trailing_logs;
	unsigned election_timeout_ms;
	unsigned heartbeat_interval_ms;
	unsigned request_timeout_ms;
	uint64_t rotation_interval_ms; /* 0: no scheduled key rotation */
	/* vaultfsd -recover: at the first unseal, this node's configuration
	 * becomes itself alone (the majority is lost for good). */
	bool recover;
	/* telemetry: .vault/metrics also written to this file (NULL: none)
	 * every METRICS_INTERVAL_MS, for node_exporter's textfile collector. */
	const char *metrics_textfile;
	unsigned metrics_interval_ms;
	/* retry_join: an uninitialised node fetches the cluster's keyring from
	 * the first of these cluster addresses that answers (tried in turn,
	 * with backoff), then waits to be unsealed as after .vault/join. */
	const char *const *retry_join;
	unsigned n_retry_join;
	/* autopilot: the leader removes a voter it has not heard from for
	 * this long (0: never), keeping at least MIN_QUORUM voters. */
	uint64_t dead_server_cleanup_ms;
	unsigned min_quorum;
	/* snapshot "local": the leader writes a backup into SNAPSHOT_DIR every
	 * SNAPSHOT_INTERVAL_MS and keeps the newest SNAPSHOT_RETAIN of them
	 * (NULL: none). */
	const char *snapshot_dir;
	uint64_t snapshot_interval_ms;
	unsigned snapshot_retain;
	/* autopilot: a joining node is added as a non-voter and promoted once
	 * it has been caught up and heard from for this long without a break. */
	uint64_t server_stabilization_ms;
	/* audit "file": every request gets a JSON line in this file (NULL:
	 * none); with FAIL_CLOSED, one whose line cannot be written fails. */
	const char *audit_path;
	bool audit_fail_closed;
};

struct node;

/* Creates the node on LOOP: makes the data directory (0700) if needed and
 * reads its seal file. The node starts sealed. Strings in CFG are copied.
 * Returns 0 or -errno with a message in errmsg. */
int node_start(struct node **ret, uv_loop_t *loop, const struct node_config *cfg,
	       char *errmsg, size_t errlen);

/* The api_handler_fn for api_server_start; CTX is the struct node. */
void node_handle_request(void *ctx, struct api_request *req);

/* The hooks to pass to api_server_set_watch (same CTX as the handler):
 * mounts that cache watch the node for changes. */
const struct api_watch_hooks *node_watch_hooks_for_api(void);

/* The observer to pass to api_server_set_observer (same CTX as the
 * handler): requests and clients, for .vault/metrics. */
const struct api_observer *node_metrics_observer_for_api(void);
/* Opens the audit log's file again (SIGHUP, after logrotate moved it). */
void node_audit_reopen(struct node *n);

/* Seals (stops Raft, wipes keys), fails requests still waiting, then frees
 * the node and calls CB (if not NULL). */
void node_stop(struct node *n, void (*cb)(void *arg), void *arg);

#endif
