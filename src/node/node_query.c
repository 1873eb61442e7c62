/* Leaf queries on the node and its Raft session, and the errno mappings
 * every node file uses. Calls no other node file: the other files call
 * these. */
#include "node/internal.h"

#include <errno.h>

#include "raft/libraft_private.h"
#include "raft/raftio.h"

unsigned node_query_attempt_timeout(const struct node *n, uint64_t deadline)
{
	uint64_t now = uv_now(n->loop);
	uint64_t left = deadline > now ? deadline - now : 1;
	uint64_t t = n->cfg.request_timeout_ms / 4;
	if (t < 200)
		t = 200;
	return (unsigned)(t < left ? t : left);
}

bool node_query_is_leader(const struct node *n)
{
	return n->session != NULL && n->phase != NODE_CLOSING &&
	       raft_state(&n->session->raft) == RAFT_LEADER;
}

const char *node_query_leader_address(const struct node *n)
{
	if (n->session == NULL || n->phase == NODE_CLOSING)
		return NULL;
	raft_id id;
	const char *address;
	raft_leader((struct raft *)&n->session->raft, &id, &address);
	return id != 0 ? address : NULL;
}

unsigned node_query_voter_count(const struct raft *r)
{
	unsigned voters = 0;
	for (unsigned i = 0; i < r->configuration.n; i++)
		voters += r->configuration.servers[i].role == RAFT_VOTER;
	return voters;
}

bool node_query_quorum_in_touch(struct node *n)
{
	struct raft *r = &n->session->raft;
	uint64_t horizon = n->cfg.election_timeout_ms, ms = 0;
	if (raft_state(r) == RAFT_FOLLOWER)
		return node_query_leader_address(n) != NULL &&
		       libraft_private_ms_since_leader(r) <= horizon;
	if (raft_state(r) != RAFT_LEADER)
		return false;
	unsigned in_touch = 0;
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		if (srv->role == RAFT_VOTER &&
		    (srv->id == r->id || (raftio_last_heard(r->io, srv->id, &ms) && ms <= horizon)))
			in_touch++;
	}
	return in_touch * 2 > node_query_voter_count(r);
}

bool node_query_committed_in_term(const struct node *n)
{
	return n->session != NULL && n->barrier_term == n->session->raft.current_term;
}

bool node_query_is_sole_voter(const struct node *n)
{
	return node_query_is_leader(n) && node_query_voter_count(&n->session->raft) == 1;
}

uint64_t node_query_applied_index(const struct node *n)
{
	return n->session != NULL ? raft_last_applied((struct raft *)&n->session->raft) : 0;
}

const struct raft_server *node_query_config_find(const struct raft *r, raft_id id)
{
	for (unsigned i = 0; i < r->configuration.n; i++)
		if (r->configuration.servers[i].id == id)
			return &r->configuration.servers[i];
	return NULL;
}

int node_query_raft_errno(int status)
{
	switch (status) {
	case 0:
		return 0;
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
	case RAFT_SHUTDOWN:
	case RAFT_CANCELED:
	case RAFT_CANTCHANGE:
		return -EAGAIN;
	case RAFT_NOMEM:
		return -ENOMEM;
	case RAFT_NOSPACE:
		return -ENOSPC;
	case RAFT_TOOBIG:
		return -EFBIG;
	case RAFT_DUPLICATEID:
	case RAFT_DUPLICATEADDRESS:
		return -EEXIST;
	case RAFT_BADID:
	case RAFT_NOTFOUND:
		return -ENOENT;
	default:
		return -EIO;
	}
}

/* Transport failures mean "the leader could not be reached": EAGAIN, as
 * for any request (README's error table). */
int node_query_unreachable_errno(int status)
{
	switch (status) {
	case -ETIMEDOUT:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ESHUTDOWN:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ENOTCONN:
	case -EPIPE:
		return -EAGAIN;
	default:
		return status;
	}
}

bool node_query_in_configuration(const struct node *n)
{
	return n->session != NULL && node_query_config_find(&n->session->raft, n->raft_id) != NULL;
}
