# vaultfsd configuration for node1 of a 3-node cluster on one machine.
# Start it with: vaultfsd -config=examples/node1.hcl

# Integrated Raft storage; the only storage type vaultfs supports.
storage "raft" {
  path    = "/var/lib/vaultfs/node1"  # data directory (Raft log, state), created 0700
  node_id = "node1"                   # unique within the cluster: A-Z a-z 0-9 . _ -

  # Optional tuning, shown with their defaults:
  # snapshot_threshold    = 8192      # log entries between snapshots
  # trailing_logs         = 10240     # entries kept after a snapshot
  # election_timeout_ms   = 1000      # 100..60000
  # heartbeat_interval_ms = 100       # must be below election_timeout_ms
}

# Address other nodes use to reach this one for Raft traffic; this node
# listens on it and advertises it. The http:// scheme is optional (no
# https://: the port speaks vaultfs's own encrypted protocol, not TLS).
cluster_addr = "http://127.0.0.1:8201"

# Local API socket that mount.vaultfs connects to (root or the daemon's uid only).
listener "unix" {
  path = "/run/vaultfs/node1.sock"
}

# false (the default): key material is locked in RAM so it never reaches swap.
disable_mlock = false

# Optional: how long a request may wait for a leader, in ms (default 10000).
# request_timeout_ms = 10000

# Optional: the leader writes a backup (as .vault/snapshot gives) into this
# directory every interval and keeps the newest `retain`.
# snapshot "local" {
#   path     = "/var/backups/vaultfs"
#   interval = "1h"
#   retain   = 24
# }

# Optional: a joining node becomes a voter once caught up and heard from
# for server_stabilization_time (default 10s); see vaultfs.hcl(5).
# autopilot {
#   server_stabilization_time = "10s"
# }
