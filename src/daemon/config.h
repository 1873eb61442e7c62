/* vaultfsd configuration: the seed's Vault syntax, parsed with libconfuse.
 *
 *   storage "raft" { path = "...", node_id = "...",
 *                    [snapshot_threshold = N, trailing_logs = N,
 *                     election_timeout_ms = N, heartbeat_interval_ms = N] }
 *   cluster_addr = "http://127.0.0.1:8201"
 *   listener "unix" { path = "/run/vaultfs/vaultfsd.sock" }
 *   disable_mlock = false
 *   request_timeout_ms = N
 *   rotation_interval = "24h"
 *   snapshot "local" { path = "/var/backups/vaultfs", [interval = "1h",
 *                      retain = 24] }
 *   audit "file" { path = "/var/log/vaultfs/audit.log", fail_closed = true }
 *
 * Accepted ranges (defaults in struct config below): snapshot_threshold and
 * trailing_logs 1..1000000000, election_timeout_ms 100..60000,
 * heartbeat_interval_ms 10..10000 and below election_timeout_ms,
 * request_timeout_ms 100..600000, rotation_interval "off" (the default) or
 * 10s..365d with a unit s, m, h or d. Numbers are plain decimal. A listener
 * block is optional; listener path must fit a Unix socket (<= 107 bytes).
 * A key set twice is an error. Single-threaded use only (libconfuse's lexer
 * has global state).
 */
#ifndef VAULTFS_DAEMON_CONFIG_H
#define VAULTFS_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config {
	char *data_dir;      /* storage "raft" path */
	char *node_id;
	char *cluster_addr;  /* normalised "host:port" (scheme and trailing / removed) */
	char *socket_path;   /* listener "unix" path, default VFS_DEFAULT_SOCKET */
	bool disable_mlock;
	unsigned snapshot_threshold;    /* default 8192 entries */
	unsigned trailing_logs;         /* default 10240 entries */
	unsigned election_timeout_ms;   /* default 1000 */
	unsigned heartbeat_interval_ms; /* default 100 */
	unsigned request_timeout_ms;    /* default 10000 */
	uint64_t rotation_interval_ms;  /* default 0: off */
	char *metrics_textfile;         /* telemetry prometheus_textfile; NULL: none */
	unsigned metrics_interval_ms;   /* telemetry interval, default 15 s */
	char **retry_join;              /* each retry_join leader_addr, normalised */
	unsigned n_retry_join;
	uint64_t dead_server_cleanup_ms; /* autopilot; 0: off (the default) */
	unsigned min_quorum;             /* autopilot, default 3 */
	char *snapshot_dir;              /* snapshot "local" path; NULL: none */
	uint64_t snapshot_interval_ms;   /* default 1 h */
	unsigned snapshot_retain;        /* default 24 */
	uint64_t server_stabilization_ms; /* autopilot, default 10 s */
	char *audit_path;                /* audit "file" path; NULL: no audit log */
	bool audit_fail_closed;          /* audit fail_closed, default true */
};

/* Loads FILE. On error returns -errno (-EINVAL for content errors) and
 * writes "FILE:LINE: message" (or "FILE: message" when no line applies) into
 * errmsg. Errors: unreadable file, syntax error, unknown key, missing
 * storage block/path/node_id/cluster_addr, second storage or listener block,
 * storage type other than "raft", listener type other than "unix", node_id
 * empty or with characters outside [A-Za-z0-9._-] or longer than 64,
 * cluster_addr without a valid port, relative paths, zero or out-of-range
 * numbers. */
int config_load(const char *file, struct config *ret, char *errmsg, size_t errlen);

void config_free(struct config *c);

#endif
