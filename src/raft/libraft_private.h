/* The only place that touches libraft's internals: what the node needs
 * and libraft 0.15 has no call for. The leader's per-follower replication
 * state (struct raft's leader_state.progress[]), the in-memory log and the
 * election timer are in libraft 0.15's public header but are not part of
 * its API (later libraft versions moved them out); meson refuses any other libraft version, so that a change of
 * that struct is seen at build time, not in production. */
#ifndef VAULTFS_RAFT_LIBRAFT_PRIVATE_H
#define VAULTFS_RAFT_LIBRAFT_PRIVATE_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

/* The libraft version this file is written for (meson checks it). */
#define LIBRAFT_PRIVATE_VERSION "0.15"

/* Leader R: makes every follower's last AppendEntries look a heartbeat
 * interval old, so that libraft's next tick sends each one (a heartbeat,
 * or the entries it lacks) at once. Only send times change. */
void libraft_private_heartbeat_all(struct raft *r);

/* Leader R: the highest index follower ID acknowledged as stored, into
 * *RET; false if ID is not in R's configuration. */
bool libraft_private_match_index(const struct raft *r, raft_id id, raft_index *ret);

/* How many entries R keeps in its log (in memory, as on disk), and their
 * payload bytes. */
void libraft_private_log_stats(const struct raft *r, uint64_t *ret_entries, uint64_t *ret_bytes);

/* Follower R: ms since its election timer last restarted, which libraft
 * does on each message from its leader (and on a vote it grants). */
uint64_t libraft_private_ms_since_leader(struct raft *r);

#endif
