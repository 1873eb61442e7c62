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
