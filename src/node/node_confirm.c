/* Leadership confirmation without a log write (Raft thesis §6.4, step 3 of
 * ReadIndex): the leader asks every other voter "am I still your leader in
 * term T?" and counts the yeses. A voter says yes only if its current term
 * is T and it follows this node. A majority of yeses, all given after the
 * round began, proves no other leader could have committed anything in a
 * newer term before then: a newer leader needs votes from a majority, and
 * any voter that says yes had not yet moved past term T.
 *
 * This replaces a barrier entry per read round, which cost a disk sync on a
 * majority. Rounds are shared: every request queued before a round starts is
 * answered by it; requests arriving during a round wait for the next one (a
 * confirmation that began before them proves nothing about their start). */
#include <errno.h>
#include <stdlib.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "node/internal.h"

struct confirm_waiter {
	struct confirm_waiter *next;
	node_confirm_cb cb;
	void *arg;
};

struct confirm_round {
	struct node *node;
	uint64_t term;
	unsigned needed;  /* yeses from other voters that make a majority */
	unsigned yeses;
	unsigned pending; /* RPCs not answered yet: the round lives until 0 */
	bool done;        /* waiters answered */
	struct confirm_waiter *waiters;
};

static void start_round(struct node *n);

static void answer_waiters(struct confirm_waiter *w, int status)
{
	while (w != NULL) {
		struct confirm_waiter *next = w->next;
		w->cb(w->arg, status);
		free(w);
		w = next;
	}
}

static void finish_round(struct confirm_round *round, int status)
{
	struct node *n = round->node;
	round->done = true;
	if (n->confirm_round == round)
		n->confirm_round = NULL;
	/* The yeses are only worth something if nothing changed meanwhile. */
	if (status == 0 &&
	    (!node_query_is_leader(n) || n->session->raft.current_term != round->term))
		status = -EAGAIN;
	struct confirm_waiter *w = round->waiters;
	round->waiters = NULL;
	answer_waiters(w, status);
	if (round->pending == 0)
		free(round);
	start_round(n);
}

static void on_confirm_reply(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct confirm_round *round = arg;
	(void)resp;
	(void)len;
	round->pending--;
	if (round->done) {
		if (round->pending == 0)
			free(round);
		return;
	}
	if (status == 0)
		round->yeses++;
	if (round->yeses >= round->needed)
		finish_round(round, 0);
	else if (round->yeses + round->pending < round->needed)
		finish_round(round, -EAGAIN);
}

/* Asks every other voter; each RPC sent adds one to round->pending. */
static void ask_voters(struct node *n, struct confirm_round *round)
{
	const struct raft *r = &n->session->raft;
	struct buf payload;
	buf_init(&payload);
	buf_put_u64(&payload, round->term);
	uint64_t deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	for (unsigned i = 0; i < r->configuration.n && payload.err == 0; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		if (srv->role != RAFT_VOTER || srv->id == n->raft_id)
			continue;
		if (transport_rpc(n->session->transport, srv->address, NODE_RPC_CONFIRM,
				  payload.data, payload.len,
				  node_query_attempt_timeout(n, deadline), on_confirm_reply,
				  round) == 0)
			round->pending++;
	}
	buf_free(&payload);
}

static void start_round(struct node *n)
{
	if (n->confirm_round != NULL || n->confirm_queue == NULL)
		return;
	struct confirm_waiter *waiters = n->confirm_queue;
	n->confirm_queue = NULL;
	if (!node_query_is_leader(n)) {
		answer_waiters(waiters, -EAGAIN);
		return;
	}
	struct confirm_round *round = calloc(1, sizeof(*round));
	if (round == NULL) {
		answer_waiters(waiters, -ENOMEM);
		return;
	}
	round->node = n;
	round->waiters = waiters;
	round->term = n->session->raft.current_term;
	/* A majority of the voters, this node (a voter: it leads) included. */
	round->needed = node_query_voter_count(&n->session->raft) / 2;
	n->confirm_round = round;
	if (round->needed == 0) {
		finish_round(round, 0);
		return;
	}
	/* Held while asking, so that a reply coming before ask_voters returns
	 * cannot free the round under it. */
	round->pending++;
	ask_voters(n, round);
	round->pending--;
	if (round->done) {
		if (round->pending == 0)
			free(round);
	} else if (round->yeses >= round->needed) {
		finish_round(round, 0);
	} else if (round->yeses + round->pending < round->needed) {
		finish_round(round, -EAGAIN);
	}
}

int node_confirm_leadership(struct node *n, node_confirm_cb cb, void *arg)
{
	struct confirm_waiter *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->cb = cb;
	w->arg = arg;
	w->next = n->confirm_queue;
	n->confirm_queue = w;
	start_round(n);
	return 0;
}

void node_confirm_fail_queued(struct node *n, int status)
{
	struct confirm_waiter *w = n->confirm_queue;
	n->confirm_queue = NULL;
	answer_waiters(w, status);
}

/* The voter's side: yes (0) only to the leader it follows, in its term. */
void node_confirm_serve(struct node *n, struct transport_rpc_req *rpc)
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	uint64_t term = cursor_u64(&c);
	if (cursor_done(&c) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	raft_id leader_id = 0;
	const char *leader_addr;
	/* A node following without storage knows no more than what reaches
	 * it, and says nothing: it confirms no one (node_storage.c). */
	bool yes = n->session != NULL && n->phase == NODE_ACTIVE && !node_storage_mute(n) &&
		   raft_state(&n->session->raft) == RAFT_FOLLOWER &&
		   n->session->raft.current_term == term;
	if (yes) {
		raft_leader(&n->session->raft, &leader_id, &leader_addr);
		yes = leader_id == rpc->peer_id;
	}
	transport_rpc_reply(rpc, yes ? 0 : -EAGAIN, NULL, 0);
}
