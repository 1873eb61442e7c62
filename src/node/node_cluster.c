/* The node's side of the cluster around Raft: the transport of a Raft
 * session, waiting for the local state machine to catch up, retries,
 * pushing the commit index to a follower that needs it, and quick
 * elections after the leader's process died. The RPCs themselves are in
 * node_rpc.c. */
#include "node/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/log.h"
#include "raft/libraft_private.h"


/* ---- Waiting for the state machine ---- */

static void run_apply_waiters(uv_check_t *h)
{
	struct node *n = h->data;
	uint64_t applied = node_query_applied_index(n);
	uint64_t now = uv_now(n->loop);
	struct apply_waiter *due = NULL, **pp = &n->apply_waiters;
	/* Unlink first: callbacks may add new waiters. */
	while (*pp != NULL) {
		struct apply_waiter *w = *pp;
		if (w->index <= applied || now >= w->deadline) {
			*pp = w->next;
			w->next = due;
			due = w;
		} else {
			pp = &w->next;
		}
	}
	if (n->apply_waiters == NULL)
		uv_check_stop(&n->apply_check);
	while (due != NULL) {
		struct apply_waiter *w = due;
		due = w->next;
		w->cb(w->arg, w->index <= applied ? 0 : -EAGAIN);
		free(w);
	}
}

void node_cluster_wait_applied(struct node *n, uint64_t index, uint64_t deadline,
		       void (*cb)(void *arg, int status), void *arg)
{
	if (index <= node_query_applied_index(n)) {
		cb(arg, 0);
		return;
	}
	struct apply_waiter *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		cb(arg, -ENOMEM);
		return;
	}
	w->index = index;
	w->deadline = deadline;
	w->cb = cb;
	w->arg = arg;
	w->next = n->apply_waiters;
	n->apply_waiters = w;
	uv_check_start(&n->apply_check, run_apply_waiters);
	/* Deadlines are checked by the retry timer's turns of the loop too. */
	node_cluster_retry_soon(n);
}

void node_cluster_fail_apply_waiters(struct node *n, int status)
{
	while (n->apply_waiters != NULL) {
		struct apply_waiter *w = n->apply_waiters;
		n->apply_waiters = w->next;
		w->cb(w->arg, status);
		free(w);
	}
	uv_check_stop(&n->apply_check);
}

static void on_retry_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	node_ops_retry(n);
	if (n->apply_waiters != NULL)
		run_apply_waiters(&n->apply_check);
}

void node_cluster_retry_soon(struct node *n)
{
	if (!uv_is_active((uv_handle_t *)&n->retry_timer))
		uv_timer_start(&n->retry_timer, on_retry_timer, 20, 20);
}

int node_cluster_init(struct node *n)
{
	uv_check_init(n->loop, &n->apply_check);
	n->apply_check.data = n;
	uv_timer_init(n->loop, &n->retry_timer);
	n->retry_timer.data = n;
	uv_timer_init(n->loop, &n->quick_election);
	n->quick_election.data = n;
	uv_check_init(n->loop, &n->push_check);
	n->push_check.data = n;
	return 0;
}

int node_cluster_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->apply_check, node_handle_closed);
	uv_close((uv_handle_t *)&n->retry_timer, node_handle_closed);
	uv_close((uv_handle_t *)&n->quick_election, node_handle_closed);
	uv_close((uv_handle_t *)&n->push_check, node_handle_closed);
	return 4;
}

/* ---- Pushing the commit index to a follower that needs it ----
 *
 * A follower that asks for a read index behind our commit index would
 * learn ours only from the next AppendEntries, up to a heartbeat later. So
 * the leader sends every follower an AppendEntries (a heartbeat, or the
 * entries it lacks) at once. libraft 0.15 has no call for this: at each
 * tick it sends to every follower whose last AppendEntries is a heartbeat
 * interval old, so send_heartbeats_now marks them all that old
 * (libraft_private.h) and ticks at once. Only the send times change; what
 * is sent, and the timeouts, are libraft's own.
 *
 * A follower commits only as far as it has stored, and it is usually still
 * writing the latest entries to disk when that push arrives. So the push
 * is repeated once the follower's match index (its acknowledgement that it
 * stored them) reaches the index it needs; the loop's check phase watches
 * for that, for at most a heartbeat interval. One follower is watched at a
 * time: the last to ask. */
#define PUSH_INTERVAL_MS 2 /* at most one push per commit index and this */

static void send_heartbeats_now(struct node *n)
{
	libraft_private_heartbeat_all(&n->session->raft);
	raftio_tick_now(&n->session->io);
}

static void push_watch_stop(struct node *n)
{
	n->push_follower = 0;
	uv_check_stop(&n->push_check);
}

static void on_push_check(uv_check_t *h)
{
	struct node *n = h->data;
	struct raft *r = n->session != NULL ? &n->session->raft : NULL;
	if (r == NULL || n->phase == NODE_CLOSING || raft_state(r) != RAFT_LEADER ||
	    uv_now(n->loop) - n->push_since > n->cfg.heartbeat_interval_ms) {
		push_watch_stop(n);
		return;
	}
	raft_index match = 0;
	if (!libraft_private_match_index(r, n->push_follower, &match)) {
		push_watch_stop(n); /* no longer in the configuration */
		return;
	}
	if (match >= n->push_commit) {
		send_heartbeats_now(n);
		push_watch_stop(n);
	}
}

void node_cluster_push_commit(struct node *n, raft_id follower)
{
	struct raft *r = &n->session->raft;
	uint64_t now = uv_now(n->loop);
	if (raft_state(r) != RAFT_LEADER)
		return;
	if (r->commit_index > n->pushed_commit || now - n->pushed_at >= PUSH_INTERVAL_MS) {
		n->pushed_commit = r->commit_index;
		n->pushed_at = now;
		send_heartbeats_now(n);
	}
	n->push_follower = follower;
	n->push_commit = r->commit_index;
	n->push_since = now;
	uv_check_start(&n->push_check, on_push_check);
}

/* ---- Quick elections after the leader's process died ----
 *
 * A follower whose leader's process is gone (its port refuses connections)
 * need not wait out the election timeout to notice: it moves its Raft clock
 * past the timeout, so that libraft starts the election now. The other
 * followers see the same refusal at the same moment, so none of them
 * rejects the vote because it still believes in the old leader. But
 * starting together, two of them may each vote for itself and split the
 * vote, which libraft would settle only after another full randomized
 * timeout; so until a leader is known, each retries after its own short
 * random delay. Partitions and paused leaders are left to the timeout. */
#define QUICK_ELECTION_RETRIES 5
#define QUICK_ELECTION_MIN_MS 30
#define QUICK_ELECTION_SPREAD_MS 100

static void on_quick_election(uv_timer_t *t);

static void start_election_now(struct node *n)
{
	raftio_skip_ahead(&n->session->io, 2 * n->cfg.election_timeout_ms);
	uv_timer_start(&n->quick_election, on_quick_election,
		       QUICK_ELECTION_MIN_MS + randombytes_uniform(QUICK_ELECTION_SPREAD_MS), 0);
}

static void on_quick_election(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->session == NULL || n->phase == NODE_CLOSING || n->quick_elections_left == 0 ||
	    raft_state(&n->session->raft) == RAFT_LEADER || node_query_leader_address(n) != NULL)
		return;
	n->quick_elections_left--;
	start_election_now(n);
}

static void node_peer_gone(void *ctx, const char *address)
{
	struct node *n = ctx;
	const char *leader = node_query_leader_address(n);
	if (leader == NULL || strcmp(leader, address) != 0 ||
	    raft_state(&n->session->raft) != RAFT_FOLLOWER)
		return;
	log_info("node %s: leader %s is gone (its cluster port refuses connections); "
		 "starting an election now", n->node_id, address);
	n->quick_elections_left = QUICK_ELECTION_RETRIES;
	start_election_now(n);
}

/* The transport's cluster keys: the barrier's, which the node unseals
 * before and seals only after the transport closed. */
static int node_cluster_key(void *ctx, uint32_t *term, uint8_t *out)
{
	struct node *n = ctx;
	return barrier_cluster_key(n->barrier, term, out);
}

int node_cluster_transport(struct node *n, struct raft_session *s)
{
	if (!barrier_is_unsealed(n->barrier))
		return -ENOKEY;
	struct transport_config cfg = {
		.loop = n->loop,
		.cluster_key = node_cluster_key,
		.identity = node_trust_me(n),
		.identify = node_trust_identify,
		.rpc_handler = node_rpc_handle,
		.join_provider = node_join_provider,
		.peer_gone = node_peer_gone,
		.ctx = n,
		.rpc_version = NODE_RPC_VERSION,
	};
	return transport_new(&s->transport, &cfg);
}

int node_cluster_propose(struct node *n, struct raft_apply *apply, struct raft_buffer *entry,
			 raft_apply_cb cb)
{
	int rv = raft_apply(&n->session->raft, apply, entry, 1, cb);
	if (rv == 0)
		return 0;
	raft_free(entry->base);
	return node_query_raft_errno(rv);
}
