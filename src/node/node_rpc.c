/* What crosses between nodes as node RPCs: the dispatcher, what the leader
 * serves (forwarded writes, read indexes, joins, removals), relaying, and
 * the control actions (.vault/step-down, remove-peer, rotate) that a
 * follower sends to the leader. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "node/ctl_parse.h"
#include "raft/raftaddr.h"

#define ADDRESS_MAX RAFTADDR_MAX

/* ---- RPCs served by the leader ---- */

struct leader_op {
	union {
		struct raft_apply apply;
		struct raft_barrier barrier;
		struct raft_change change;
	};
	struct node *node;
	struct transport_rpc_req *rpc;
	struct api_request *req; /* REMOVE asked of this node, the leader */
	void (*done)(struct node *n, int status); /* REMOVE by autopilot */
	raft_id id;          /* JOIN: the server being added */
	bool removal;        /* REMOVE: rotate the keyring once it is done */
	int64_t result;      /* FORWARD: applied, waiting to be visible */
	uint64_t read_index; /* READ_INDEX: last log index when the request came */
};

static struct leader_op *leader_op_new(struct node *n, struct transport_rpc_req *rpc)
{
	struct leader_op *op = calloc(1, sizeof(*op));
	if (op != NULL) {
		op->node = n;
		op->rpc = rpc;
	}
	return op;
}

/* Answers a membership change and frees OP. */
static void leader_op_done(struct leader_op *op, int status)
{
	if (op->rpc != NULL)
		transport_rpc_reply(op->rpc, status, NULL, 0);
	else if (op->req != NULL)
		api_reply(op->req, status, NULL, 0);
	else
		op->done(op->node, status);
	free(op);
}

static void reply_buf(struct transport_rpc_req *rpc, struct buf *out)
{
	transport_rpc_reply(rpc, out->err, out->data, out->len);
	buf_free(out);
}

/* i64 result, u8 has_attr, [attr], u64 index: the follower answers its
 * client from this once its own mounts show the entry (coherence.c); its
 * next linearizable read waits for it anyway (read index >= this entry). */
static void reply_forwarded(struct node *n, struct transport_rpc_req *rpc, int64_t result,
			    uint64_t index)
{
	struct vfs_attr a;
	bool has_attr = result > 0 && n->session != NULL &&
			store_getattr(n->session->store, (uint64_t)result, &a) == 0;
	struct buf out;
	buf_init(&out);
	buf_put_i64(&out, result);
	buf_put_u8(&out, has_attr);
	if (has_attr)
		vfs_attr_put(&out, &a);
	buf_put_u64(&out, index);
	reply_buf(rpc, &out);
}

static void on_forward_visible(void *arg, int status)
{
	struct leader_op *op = arg;
	if (status != 0)
		transport_rpc_reply(op->rpc, status, NULL, 0);
	else if (failpoint_hit("drop_forward_reply"))
		transport_rpc_drop(op->rpc); /* applied, but the answer is lost */
	else
		reply_forwarded(op->node, op->rpc, op->result, op->apply.index);
	free(op);
}

static void on_forward_applied(struct raft_apply *req, int status, void *result)
{
	struct leader_op *op = (struct leader_op *)req;
	if (status != 0) {
		transport_rpc_reply(op->rpc, node_query_raft_errno(status), NULL, 0);
		free(op);
		return;
	}
	/* Answered once no mount can show what it replaced (coherence.c). */
	op->result = fsm_result_unpack(result);
	coherence_wait_written(op->node->coherence, op->apply.index, on_forward_visible, op);
}

static void serve_forward(struct node *n, struct transport_rpc_req *rpc)
{
	struct cmd cmd;
	if (cmd_decode(rpc->payload, rpc->len, &cmd) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	/* The level is the leader's to raise (node_features.c), and a
	 * follower may have applied it before a new leader did. */
	int refuse = cmd.type == CMD_FEATURES ? -EPERM : 0;
	if (cmd.type == CMD_CREATE_VALUE && node_features_level(n) < CMD_FEATURES_CREATE_VALUE)
		refuse = -ENOSYS;
	if (refuse != 0) {
		transport_rpc_reply(rpc, refuse, NULL, 0);
		return;
	}
	struct leader_op *op = leader_op_new(n, rpc);
	struct raft_buffer entry = { 0 };
	int rv = op ? fsm_seal_entry(n->barrier, rpc->payload, rpc->len, &entry) : -ENOMEM;
	if (rv == 0)
		rv = node_cluster_propose(n, &op->apply, &entry, on_forward_applied);
	if (rv != 0) {
		free(op);
		transport_rpc_reply(rpc, rv, NULL, 0);
	}
}

static void on_read_index_barrier(struct raft_barrier *req, int status)
{
	struct leader_op *op = (struct leader_op *)req;
	if (status != 0) {
		transport_rpc_reply(op->rpc, node_query_raft_errno(status), NULL, 0);
	} else {
		if (op->node->session != NULL)
			op->node->barrier_term = op->node->session->raft.current_term;
		struct buf out;
		buf_init(&out);
		buf_put_u64(&out, op->read_index);
		buf_put_u64(&out, coherence_safe_index(op->node->coherence));
		reply_buf(op->rpc, &out);
	}
	free(op);
}

/* ReadIndex (Raft thesis 6.4). A leader that has not committed an entry
 * of its own term yet may not know the true commit index; it answers its
 * last index instead, which is safe by leader completeness (every
 * acknowledged write is in its log). Either way, once a barrier commits
 * or the voters confirm (serve_read_index), this node has proved it still
 * leads, and the follower waits until it has applied the index. */
static uint64_t read_index_now(const struct node *n)
{
	const struct raft *r = &n->session->raft;
	/* Once an entry of this term committed here, the commit index is
	 * complete (thesis 6.4) and is the cheaper answer: a follower already
	 * has it or gets it with the barrier's AppendEntries, instead of
	 * waiting a heartbeat for entries still in flight. */
	if (node_query_committed_in_term(n))
		return r->commit_index;
	return raft_last_index((struct raft *)r);
}

static void on_read_index_confirmed(void *arg, int status)
{
	struct leader_op *op = arg;
	if (status != 0) {
		transport_rpc_reply(op->rpc, status, NULL, 0);
	} else {
		struct buf out;
		buf_init(&out);
		buf_put_u64(&out, op->read_index);
		buf_put_u64(&out, coherence_safe_index(op->node->coherence));
		reply_buf(op->rpc, &out);
	}
	free(op);
}

/* The follower sends its own commit index. If it already knows ours, a
 * confirmation round (no log write) is enough. If it does not, it would
 * learn ours only from the next AppendEntries, up to a heartbeat later, so
 * the leader sends that AppendEntries at once (node_cluster_push_commit). */
static void serve_read_index(struct node *n, struct transport_rpc_req *rpc)
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	uint64_t follower_commit = cursor_u64(&c);
	uint8_t flags = c.left > 0 ? cursor_u8(&c) : 0;
	if (cursor_done(&c) != 0 || (flags & ~NODE_READ_INDEX_NO_GRANTS) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	struct leader_op *op = leader_op_new(n, rpc);
	if (op == NULL) {
		transport_rpc_reply(rpc, -ENOMEM, NULL, 0);
		return;
	}
	bool grants = !(flags & NODE_READ_INDEX_NO_GRANTS);
	/* From now on its answers may carry grants (coherence.c). */
	if (grants)
		coherence_round_asked(n->coherence, rpc->peer_id);
	op->read_index = read_index_now(n);
	int rv;
	if (node_query_committed_in_term(n)) {
		if (follower_commit < op->read_index && grants)
			node_cluster_push_commit(n, rpc->peer_id);
		rv = node_confirm_leadership(n, on_read_index_confirmed, op);
	} else
		rv = node_query_raft_errno(raft_barrier(&n->session->raft, &op->barrier,
						  on_read_index_barrier));
	if (rv != 0) {
		free(op);
		transport_rpc_reply(rpc, rv, NULL, 0);
	}
}

static void on_removal_rotated(void *arg, int status)
{
	struct leader_op *op = arg;
	if (status != 0)
		log_warn("node %s: removed a member, but could not rotate the keyring (%s): write "
			 "to .vault/rotate, or the removed node can still read what is written now "
			 "if it gets a copy of the log", op->node->node_id, strerror(-status));
	leader_op_done(op, 0);
}

static void on_change_done(struct raft_change *req, int status)
{
	struct leader_op *op = (struct leader_op *)req;
	struct node *n = op->node;
	if (status != 0) {
		log_warn("node %s: membership change failed: %s", n->node_id, raft_strerror(status));
		leader_op_done(op, node_query_raft_errno(status));
		return;
	}
	const struct raft_server *srv =
		n->session ? node_query_config_find(&n->session->raft, op->id) : NULL;
	if (op->id != 0 && srv != NULL && srv->role == RAFT_SPARE) {
		/* raft_add made it a spare, which gets no log: a standby does,
		 * and autopilot makes it a voter once it is stable. */
		int rv = raft_assign(&n->session->raft, &op->change, op->id, RAFT_STANDBY,
				     on_change_done);
		if (rv != 0)
			leader_op_done(op, node_query_raft_errno(rv));
		return;
	}
	if (op->id != 0)
		log_info("node %s: %s is a non-voter now, a voter once caught up and heard from "
			 "for %" PRIu64 " ms (server_stabilization_time)",
			 n->node_id, srv ? srv->address : "server", n->cfg.server_stabilization_ms);
	if (op->removal) {
		/* The removed node keeps every key so far: new data gets one
		 * it never sees. */
		node_keys_rotate(n, on_removal_rotated, op);
		return;
	}
	leader_op_done(op, 0);
}

/* A JOIN names the node to add: u64 raft id, its Raft address. Returns
 * 0 with ADDRESS filled, or -EBADMSG. The address must carry an identity
 * and the id must be its name's; one sent by the joiner itself must carry
 * the identity that joiner proved, so nobody adds an identity but their
 * own, over a channel keyed with the newest key term (else -EKEYEXPIRED).
 * One relayed by a follower comes from a member, which checked both. */
static int join_request(const struct transport_rpc_req *rpc, raft_id *ret_id,
			char address[ADDRESS_MAX + 1])
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	raft_id id = cursor_u64(&c);
	size_t alen = 0;
	const uint8_t *addr = cursor_blob(&c, ADDRESS_MAX, &alen);
	if (cursor_done(&c) != 0 || alen == 0 || memchr(addr, '\0', alen) != NULL)
		return -EBADMSG;
	memcpy(address, addr, alen);
	address[alen] = '\0';
	struct raftaddr a;
	char name[CTL_PARSE_NODE_ID_MAX + 1];
	if (raftaddr_parse(address, &a) != 0 || !a.has_id || a.name_len == 0 ||
	    a.name_len > CTL_PARSE_NODE_ID_MAX)
		return -EBADMSG;
	memcpy(name, a.name, a.name_len);
	name[a.name_len] = '\0';
	bool relayed = (rpc->type & NODE_RPC_PROXIED) != 0;
	if (id != node_raft_id_of(name) || (relayed ? rpc->peer_id == 0
					     : !raftaddr_has_id(address, rpc->peer_key)))
		return -EBADMSG;
	/* Only with the newest key term: after a rotation, a removed node
	 * (and anyone with a copy of an older keyring) cannot join again. */
	if (!relayed && rpc->stale_key)
		return -EKEYEXPIRED;
	*ret_id = id;
	return 0;
}

static void serve_join(struct node *n, struct transport_rpc_req *rpc)
{
	raft_id id;
	char address[ADDRESS_MAX + 1];
	int rv = join_request(rpc, &id, address);
	if (rv != 0) {
		transport_rpc_reply(rpc, rv, NULL, 0);
		return;
	}
	/* A rotation in flight has no box for the joiner, and the joiner
	 * cannot have its term: it asks again. */
	if (node_keys_rotating(n)) {
		transport_rpc_reply(rpc, -EAGAIN, NULL, 0);
		return;
	}
	const struct raft_server *srv = node_query_config_find(&n->session->raft, id);
	rv = srv == NULL || srv->role == RAFT_SPARE ? node_features_admit(n, rpc, address) : 0;
	if (rv != 0) {
		transport_rpc_reply(rpc, rv, NULL, 0);
		return;
	}
	/* Ids are hashes of names: one already taken by another address or
	 * identity (a second node of that name, a wiped node that was never
	 * removed, a made-up collision) must not replace the member. */
	if (srv != NULL && strcmp(srv->address, address) != 0) {
		/* The joiner retries every 200 ms (node_join.c): a line per 10 s. */
		uint64_t now = uv_now(n->loop);
		if (n->join_refused_at == 0 || now - n->join_refused_at >= 10000) {
			log_warn("node %s: refusing to add %s: member %s has that node id; remove "
				 "it first (.vault/remove-peer) if it is gone",
				 n->node_id, address, srv->address);
			n->join_refused_at = now;
		}
		transport_rpc_reply(rpc, -EEXIST, NULL, 0);
		return;
	}
	/* In the configuration and given the log: the joiner is done asking;
	 * autopilot (node_autopilot.c) makes it a voter. */
	if (srv != NULL && srv->role != RAFT_SPARE) {
		transport_rpc_reply(rpc, 0, NULL, 0);
		return;
	}
	struct leader_op *op = leader_op_new(n, rpc);
	if (op == NULL) {
		transport_rpc_reply(rpc, -ENOMEM, NULL, 0);
		return;
	}
	op->id = id;
	if (srv != NULL) {
		rv = raft_assign(&n->session->raft, &op->change, id, RAFT_STANDBY, on_change_done);
	} else {
		log_info("node %s: adding %s to the cluster", n->node_id, address);
		rv = raft_add(&n->session->raft, &op->change, id, address, on_change_done);
	}
	if (rv != 0) {
		log_warn("node %s: cannot add %s: %s", n->node_id, address, raft_strerror(rv));
		free(op);
		transport_rpc_reply(rpc, node_query_raft_errno(rv), NULL, 0);
	}
}

/* Removes member ID; OP (answered when done) is freed either way. */
static void leader_remove(struct node *n, struct leader_op *op, raft_id id)
{
	if (node_query_config_find(&n->session->raft, id) == NULL) {
		leader_op_done(op, -ENOENT);
		return;
	}
	op->removal = true;
	int rv = raft_remove(&n->session->raft, &op->change, id, on_change_done);
	if (rv != 0)
		leader_op_done(op, node_query_raft_errno(rv));
}

static void serve_remove(struct node *n, struct transport_rpc_req *rpc)
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	uint64_t id = cursor_u64(&c);
	if (cursor_done(&c) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	struct leader_op *op = leader_op_new(n, rpc);
	if (op == NULL)
		transport_rpc_reply(rpc, -ENOMEM, NULL, 0);
	else
		leader_remove(n, op, id);
}

/* A JOIN that reached a follower is relayed to the leader once. */
struct relay {
	struct transport_rpc_req *rpc;
};

static void on_relayed(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct relay *r = arg;
	transport_rpc_reply(r->rpc, status, resp, len);
	free(r);
}

static void relay_to_leader(struct node *n, struct transport_rpc_req *rpc)
{
	const char *leader = node_query_leader_address(n);
	struct relay *r = leader && !(rpc->type & NODE_RPC_PROXIED) ? calloc(1, sizeof(*r)) : NULL;
	if (r == NULL) {
		transport_rpc_reply(rpc, -EAGAIN, NULL, 0);
		return;
	}
	r->rpc = rpc;
	/* Sent in the asker's version (at most ours): it says what the asker
	 * knows, which the leader may need (node_features_admit). */
	int rv = transport_rpc_in(n->session->transport, rpc->version, leader,
				  (uint16_t)(rpc->type | NODE_RPC_PROXIED), rpc->payload, rpc->len,
				  n->cfg.request_timeout_ms, on_relayed, r);
	if (rv != 0) {
		free(r);
		transport_rpc_reply(rpc, rv, NULL, 0);
	}
}

void node_rpc_reply_status(void *rpc, int status)
{
	transport_rpc_reply(rpc, status, NULL, 0);
}

void node_rpc_handle(void *ctx, struct transport_rpc_req *rpc)
{
	struct node *n = ctx;
	uint16_t type = (uint16_t)(rpc->type & ~NODE_RPC_PROXIED);
	if (rpc->version > NODE_RPC_VERSION) {
		transport_rpc_reply(rpc, -EPROTONOSUPPORT, NULL, 0);
		return;
	}
	if (n->session == NULL || n->phase == NODE_CLOSING) {
		transport_rpc_reply(rpc, -EAGAIN, NULL, 0);
		return;
	}
	/* Asked of followers by their leader. */
	if (type == NODE_RPC_CONFIRM) {
		node_confirm_serve(n, rpc);
		return;
	}
	/* Asked of every member by the leader, before it raises the level. */
	if (type == NODE_RPC_FEATURES) {
		node_features_serve(n, rpc);
		return;
	}
	/* Part of joining, so non-members may ask too. */
	if (type == NODE_RPC_MEMBERS) {
		node_trust_serve_members(n, rpc);
		return;
	}
	if (!node_query_is_leader(n)) {
		raft_id id;
		char address[ADDRESS_MAX + 1];
		int rv = type == NODE_RPC_JOIN ? join_request(rpc, &id, address) : -EAGAIN;
		if (rv == 0)
			relay_to_leader(n, rpc);
		else
			transport_rpc_reply(rpc, rv, NULL, 0); /* -EAGAIN: the caller retries */
		return;
	}
	/* Only members may use the cluster (a removed node keeps the keys):
	 * peer_id is the member whose identity the sender proved. */
	if (type != NODE_RPC_JOIN &&
	    node_query_config_find(&n->session->raft, rpc->peer_id) == NULL) {
		transport_rpc_reply(rpc, -EPERM, NULL, 0);
		return;
	}
	switch (type) {
	case NODE_RPC_FORWARD:
		serve_forward(n, rpc);
		return;
	case NODE_RPC_READ_INDEX:
		serve_read_index(n, rpc);
		return;
	case NODE_RPC_VISIBLE:
		node_watch_serve_visible(n, rpc);
		return;
	case NODE_RPC_SAFE:
		node_safe_serve(n, rpc);
		return;
	case NODE_RPC_STEP_DOWN:
		node_transfer_serve_step_down(n, rpc);
		return;
	case NODE_RPC_JOIN:
		serve_join(n, rpc);
		return;
	case NODE_RPC_REMOVE:
		serve_remove(n, rpc);
		return;
	case NODE_RPC_ROTATE:
		node_keys_rotate(n, node_rpc_reply_status, rpc);
		return;
	case NODE_RPC_REKEY:
		node_rekey_serve(n, rpc);
		return;
	case NODE_RPC_RESTORE:
		node_restore_serve(n, rpc);
		return;
	default:
		transport_rpc_reply(rpc, -ENOSYS, NULL, 0);
		return;
	}
}

/* ---- Control actions through the leader ---- */

struct forwarded_ctl {
	struct api_request *req;
};

static void on_ctl_forwarded(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct forwarded_ctl *f = arg;
	(void)resp;
	(void)len;
	api_reply(f->req, node_query_unreachable_errno(status), NULL, 0);
	free(f);
}

/* Sends a control action to the leader; the caller's write returns with the
 * leader's answer. */
static void ctl_to_leader(struct node *n, struct api_request *req, uint16_t type,
			  const void *payload, size_t len)
{
	const char *leader = node_query_leader_address(n);
	struct forwarded_ctl *f = leader ? calloc(1, sizeof(*f)) : NULL;
	if (f == NULL) {
		api_reply(req, leader ? -ENOMEM : -EAGAIN, NULL, 0);
		return;
	}
	f->req = req;
	int rv = transport_rpc(n->session->transport, leader, type, payload, len,
			       n->cfg.request_timeout_ms, on_ctl_forwarded, f);
	if (rv != 0) {
		free(f);
		api_reply(req, node_query_unreachable_errno(rv), NULL, 0);
	}
}

void node_rpc_step_down(struct node *n, struct api_request *req)
{
	if (n->session == NULL || n->phase == NODE_CLOSING) {
		api_reply(req, -ENOKEY, NULL, 0);
		return;
	}
	if (!node_query_is_leader(n))
		ctl_to_leader(n, req, NODE_RPC_STEP_DOWN, NULL, 0);
	else
		node_transfer_step_down(n, req);
}

void node_rpc_remove_peer(struct node *n, struct api_request *req, const uint8_t *id,
			  size_t len)
{
	char node_id[CTL_PARSE_NODE_ID_MAX + 1];
	if (ctl_parse_node_id(id, len, node_id) != 0) {
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	if (n->session == NULL || n->phase == NODE_CLOSING) {
		api_reply(req, -ENOKEY, NULL, 0);
		return;
	}
	log_info("node %s: removing %s from the cluster", n->node_id, node_id);
	/* The leader does it itself: a node never connects to itself. */
	if (node_query_is_leader(n)) {
		struct leader_op *op = leader_op_new(n, NULL);
		if (op == NULL) {
			api_reply(req, -ENOMEM, NULL, 0);
			return;
		}
		op->req = req;
		leader_remove(n, op, node_raft_id_of(node_id));
		return;
	}
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, node_raft_id_of(node_id));
	if (b.err == 0)
		ctl_to_leader(n, req, NODE_RPC_REMOVE, b.data, b.len);
	else
		api_reply(req, b.err, NULL, 0);
	buf_free(&b);
}

void node_rpc_remove_dead(struct node *n, raft_id id, void (*done)(struct node *n, int status))
{
	assert(node_query_is_leader(n));
	struct leader_op *op = leader_op_new(n, NULL);
	if (op == NULL) {
		done(n, -ENOMEM);
		return;
	}
	op->done = done;
	leader_remove(n, op, id);
}

static void on_rotated_ctl(void *arg, int status)
{
	api_reply(arg, status, NULL, 0);
}

void node_rpc_rotate(struct node *n, struct api_request *req)
{
	if (n->session == NULL || n->phase == NODE_CLOSING) {
		api_reply(req, -ENOKEY, NULL, 0);
		return;
	}
	if (node_query_is_leader(n))
		node_keys_rotate(n, on_rotated_ctl, req);
	else
		ctl_to_leader(n, req, NODE_RPC_ROTATE, NULL, 0);
}
