/* Autopilot, conservative (autopilot { dead_server_cleanup_threshold,
 * min_quorum }): the leader removes a voter it has not heard from for the
 * threshold, as remove-peer would (the keyring rotates), but never leaves
 * fewer than min_quorum voters, and only one removal at a time. Off unless
 * configured: a member that is down for maintenance longer than the
 * threshold has to join again. */
#include "node/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "raft/raftio.h"

#define AUTOPILOT_EVERY_MS 1000u

struct node_autopilot {
	uv_timer_t timer;
	uint64_t leader_term; /* the term this node leads in, 0: not leading */
	uint64_t leader_since; /* uv_now when it began */
	bool removing;
};

static void on_removed(struct node *n, int status)
{
	n->autopilot->removing = false;
	if (status != 0)
		log_warn("node %s: autopilot: the removal failed: %s (trying again)", n->node_id,
			 strerror(-status));
}

/* How long the leader has not heard from SRV: since its last message, or
 * since this node leads if none came in that time. */
static uint64_t silent_ms(struct node *n, const struct raft_server *srv, uint64_t now)
{
	uint64_t ago;
	uint64_t leading = now - n->autopilot->leader_since;
	if (!raftio_last_heard(&n->session->io, srv->id, &ago) || ago > leading)
		ago = leading;
	return ago;
}

static void check_voters(struct node *n)
{
	struct node_autopilot *ap = n->autopilot;
	struct raft *r = &n->session->raft;
	uint64_t now = uv_now(n->loop);
	unsigned voters = node_query_voter_count(r);
	for (unsigned i = 0; i < r->configuration.n && !ap->removing; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		if (srv->id == r->id || srv->role != RAFT_VOTER)
			continue;
		uint64_t silent = silent_ms(n, srv, now);
		if (silent < n->cfg.dead_server_cleanup_ms || voters <= n->cfg.min_quorum)
			continue;
		log_warn("node %s: autopilot: removing %s, silent for %" PRIu64
			 " ms (dead_server_cleanup_threshold), leaving %u voters",
			 n->node_id, srv->address, silent, voters - 1);
		ap->removing = true;
		node_rpc_remove_dead(n, srv->id, on_removed);
	}
}

static void on_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_autopilot *ap = n->autopilot;
	bool leading = n->phase == NODE_ACTIVE && node_query_is_leader(n);
	uint64_t term = leading ? n->session->raft.current_term : 0;
	if (term != ap->leader_term) {
		ap->leader_term = term;
		ap->leader_since = uv_now(n->loop);
	}
	if (leading && !ap->removing)
		check_voters(n);
}

int node_autopilot_init(struct node *n)
{
	n->autopilot = calloc(1, sizeof(*n->autopilot));
	return n->autopilot != NULL ? 0 : -ENOMEM;
}

void node_autopilot_open(struct node *n)
{
	struct node_autopilot *ap = n->autopilot;
	uv_timer_init(n->loop, &ap->timer);
	ap->timer.data = n;
	if (n->cfg.dead_server_cleanup_ms > 0)
		uv_timer_start(&ap->timer, on_timer, AUTOPILOT_EVERY_MS, AUTOPILOT_EVERY_MS);
}

int node_autopilot_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->autopilot->timer, node_handle_closed);
	return 1;
}

void node_autopilot_free(struct node *n)
{
	free(n->autopilot);
	n->autopilot = NULL;
}
