/* Leadership transfer: .vault/step-down (here or asked by a follower), and
 * a leader handing over before it seals, stops or closes its storage. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>

#include "lib/log.h"

static void on_transfer(struct raft_transfer *req)
{
	struct node *n = req->data;
	n->transfer_inflight = false;
	bool moved = n->session == NULL || raft_state(&n->session->raft) != RAFT_LEADER;
	int status = moved ? 0 : -EAGAIN;
	log_info("node %s: leadership %s", n->node_id,
		 moved ? "handed over" : "transfer failed (no up-to-date voter answered)");
	if (n->transfer_waiter != NULL) {
		api_reply(n->transfer_waiter, status, NULL, 0);
		n->transfer_waiter = NULL;
	}
	if (n->transfer_rpc != NULL) {
		transport_rpc_reply(n->transfer_rpc, status, NULL, 0);
		n->transfer_rpc = NULL;
	}
	if (n->seal_after_transfer) {
		n->seal_after_transfer = false;
		n->hand_over_close(n);
	}
}

static int start_transfer(struct node *n)
{
	if (n->transfer_inflight)
		return -EBUSY;
	if (node_query_voter_count(&n->session->raft) < 2)
		return -EINVAL; /* nobody to hand leadership to */
	n->transfer.data = n;
	int rv = raft_transfer(&n->session->raft, &n->transfer, 0, on_transfer);
	if (rv != 0)
		return node_query_raft_errno(rv);
	n->transfer_inflight = true;
	return 0;
}

int node_transfer_leadership(struct node *n)
{
	if (!node_query_is_leader(n))
		return -EINVAL;
	return start_transfer(n);
}

void node_transfer_hand_over_then(struct node *n, void (*close)(struct node *n))
{
	n->hand_over_close = close;
	bool leading = n->session != NULL && raft_state(&n->session->raft) == RAFT_LEADER;
	if (leading && (n->transfer_inflight || start_transfer(n) == 0)) {
		log_info("node %s: handing leadership over before leaving", n->node_id);
		n->seal_after_transfer = true;
		return;
	}
	close(n);
}

void node_transfer_serve_step_down(struct node *n, struct transport_rpc_req *rpc)
{
	int rv = n->transfer_rpc != NULL ? -EBUSY : start_transfer(n);
	if (rv == -EBUSY && n->transfer_inflight && n->transfer_rpc == NULL)
		rv = 0; /* join the transfer already under way */
	if (rv != 0) {
		transport_rpc_reply(rpc, rv, NULL, 0);
		return;
	}
	n->transfer_rpc = rpc;
}

void node_transfer_step_down(struct node *n, struct api_request *req)
{
	assert(node_query_is_leader(n));
	if (n->transfer_waiter != NULL) {
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	int rv = n->transfer_inflight ? 0 : start_transfer(n);
	if (rv != 0) {
		if (rv == -EINVAL)
			log_warn("node %s: step-down: no other voter to hand leadership to",
				 n->node_id);
		api_reply(req, rv, NULL, 0);
		return;
	}
	n->transfer_waiter = req;
}
