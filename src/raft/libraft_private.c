/* libraft 0.15 internals (libraft_private.h). */
#include "raft/libraft_private.h"

#include <assert.h>

void libraft_private_heartbeat_all(struct raft *r)
{
	assert(raft_state(r) == RAFT_LEADER);
	for (unsigned i = 0; i < r->configuration.n; i++)
		r->leader_state.progress[i].last_send = 0;
}

bool libraft_private_match_index(const struct raft *r, raft_id id, raft_index *ret)
{
	assert(raft_state((struct raft *)r) == RAFT_LEADER);
	for (unsigned i = 0; i < r->configuration.n; i++) {
		if (r->configuration.servers[i].id == id) {
			*ret = r->leader_state.progress[i].match_index;
			return true;
		}
	}
	return false;
}

void libraft_private_log_stats(const struct raft *r, uint64_t *ret_entries, uint64_t *ret_bytes)
{
	const struct raft_log *l = &r->log;
	size_t n = l->back >= l->front ? l->back - l->front : l->size - l->front + l->back;
	uint64_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += l->entries[(l->front + i) % l->size].buf.len;
	*ret_entries = n;
	*ret_bytes = bytes;
}

uint64_t libraft_private_ms_since_leader(struct raft *r)
{
	assert(raft_state(r) == RAFT_FOLLOWER);
	raft_time now = r->io->time(r->io);
	return now > r->election_timer_start ? now - r->election_timer_start : 0;
}
