/* Answers that show the state machine leave only once the state they show
 * is safe: no mount anywhere can still show what it replaced (the safe
 * index, coherence.c).
 *
 * Why: a node shows a write as soon as it has applied it, while another
 * node's mounts may still hold what the write replaced, under a grant,
 * until their notice is acted on (or the grant runs out). A read that saw
 * the write, followed by one through such a mount that did not, would go
 * back in time. So an answer is computed at once, from the state applied
 * now, and held until that state is safe. The leader knows the safe index;
 * a follower learns it from the leader's answers (read index, forwarded
 * writes) and, when an answer waits, asks (NODE_RPC_SAFE). With no writes
 * in flight nothing waits. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "node/internal.h"
#include "vaultfs/proto.h"

struct safe_reply {
	struct safe_reply *next;
	struct api_request *req;
	int rv;
	uint8_t *data; /* may be a secret: wiped */
	size_t len;
	uint64_t index;    /* the state it shows */
	uint64_t deadline; /* uv_now: answer EAGAIN after this */
};

static void reply_free(struct safe_reply *r)
{
	if (r->data != NULL) {
		explicit_bzero(r->data, r->len);
		free(r->data);
	}
	free(r);
}

static void reply_send(struct safe_reply *r, int status)
{
	if (status == 0)
		api_reply(r->req, r->rv, r->data, r->len);
	else
		api_reply(r->req, status, NULL, 0);
	reply_free(r);
}

static struct safe_reply *reply_new(struct node *n, struct api_request *req, int rv,
				    const uint8_t *data, size_t len, uint64_t index)
{
	struct safe_reply *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	if (len > 0 && (r->data = malloc(len)) == NULL) {
		free(r);
		return NULL;
	}
	if (len > 0)
		memcpy(r->data, data, len);
	r->req = req;
	r->rv = rv;
	r->len = len;
	r->index = index;
	r->deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	return r;
}

/* ---- The leader: its own answers ---- */

static void on_leader_safe(void *arg, int status)
{
	struct safe_reply *r = arg;
	reply_send(r, status != 0 ? -EAGAIN : 0);
}

/* ---- A follower: asking the leader ---- */

static void ask_leader(struct node *n);

/* Sends every waiting answer the known safe index covers (or whose time
 * is up, with EAGAIN). */
static void release(struct node *n, bool expire)
{
	uint64_t now = uv_now(n->loop);
	struct safe_reply **pp = &n->safe_replies;
	while (*pp != NULL) {
		struct safe_reply *r = *pp;
		bool safe = coherence_may_show(n->coherence, r->index);
		if (safe || (expire && now >= r->deadline)) {
			*pp = r->next;
			reply_send(r, safe ? 0 : -EAGAIN);
		} else {
			pp = &r->next;
		}
	}
}

void node_safe_learned(struct node *n, uint64_t safe)
{
	if (coherence_safe_learned(n->coherence, safe))
		release(n, false);
}

static void on_safe_answer(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct node *n = arg;
	n->safe_asking = false;
	if (n->phase != NODE_ACTIVE || n->session == NULL)
		return; /* node_safe_fail_all answered them */
	struct cursor c;
	cursor_init(&c, resp, len);
	uint64_t safe = status == 0 ? cursor_u64(&c) : 0;
	if (status == 0 && cursor_done(&c) == 0)
		node_safe_learned(n, safe);
	release(n, true);
	if (n->safe_replies == NULL)
		return;
	if (status == 0)
		ask_leader(n);
	else
		node_cluster_retry_soon(n); /* no leader right now: node_safe_retry */
}

static void ask_leader(struct node *n)
{
	if (n->safe_asking || n->safe_replies == NULL || n->session == NULL)
		return;
	uint64_t index = 0;
	for (const struct safe_reply *r = n->safe_replies; r != NULL; r = r->next)
		if (r->index > index)
			index = r->index;
	const char *leader = node_query_leader_address(n);
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, index);
	uint64_t deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	int rv = leader != NULL && b.err == 0 ?
			 transport_rpc(n->session->transport, leader, NODE_RPC_SAFE, b.data, b.len,
				       node_query_attempt_timeout(n, deadline), on_safe_answer, n) :
			 -EAGAIN;
	buf_free(&b);
	if (rv == 0)
		n->safe_asking = true;
	else
		node_cluster_retry_soon(n);
}

bool node_safe_retry(struct node *n)
{
	if (n->safe_replies == NULL)
		return false;
	release(n, true);
	ask_leader(n);
	return n->safe_replies != NULL;
}

/* ---- Answers ---- */

void node_safe_reply(struct node *n, struct api_request *req, int rv, const uint8_t *data,
		     size_t len)
{
	uint64_t index = node_query_applied_index(n);
	if ((req->flags & VFS_REQ_LOCAL_READ) || coherence_may_show(n->coherence, index)) {
		api_reply(req, rv, data, len);
		return;
	}
	/* The answer must name the state it was read from, not the state
	 * when it leaves: a mount that has acted on a notice since must not
	 * hold it (held.h). */
	req->state_index = node_watch_state_seq(n);
	req->state_index_set = true;
	struct safe_reply *r = reply_new(n, req, rv, data, len, index);
	if (r == NULL) {
		api_reply(req, -ENOMEM, NULL, 0);
		return;
	}
	if (node_query_is_leader(n)) {
		coherence_wait_safe(n->coherence, index, on_leader_safe, r);
		return;
	}
	r->next = n->safe_replies;
	n->safe_replies = r;
	ask_leader(n);
}

/* ---- Answers that a name is absent ---- */

/* "NAME is not in DIR", read from the state applied now (A), is also what
 * the safe state (S <= A) says, unless an entry in (S, A] removed or moved
 * a name: had NAME been there at S, such an entry must have taken it away.
 * So the answer shows nothing of an entry that is not safe yet, and may
 * leave at once. Creates in one directory gain most: the kernel sends one
 * LOOKUP of a new name at a time per directory, and each would otherwise
 * wait for the creates before it to be safe (on a follower, for an RPC to
 * the leader). Any removal or move counts, in any directory: one number,
 * no table. */
void node_safe_changed(struct node *n, const struct store_changes *ch)
{
	if (ch == NULL || ch->overflow || n->session == NULL)
		n->names_gone_index = UINT64_MAX; /* the applied index after it */
	else if (ch->names && n->names_gone_index != UINT64_MAX)
		n->names_gone_index = node_query_applied_index(n) + 1; /* the entry applied now */
}

void node_safe_reply_absent(struct node *n, struct api_request *req, int rv,
			    const uint8_t *data, size_t len)
{
	/* A whole state (a snapshot, a restore) was read in since the marker
	 * was set, and is applied now: it may have removed anything. */
	if (n->names_gone_index == UINT64_MAX)
		n->names_gone_index = node_query_applied_index(n);
	if (coherence_may_show(n->coherence, n->names_gone_index)) {
		api_reply(req, rv, data, len);
		return;
	}
	node_safe_reply(n, req, rv, data, len);
}

/* ---- The leader: NODE_RPC_SAFE ---- */

struct safe_rpc {
	struct node *node;
	struct transport_rpc_req *rpc;
};

static void on_rpc_safe(void *arg, int status)
{
	struct safe_rpc *op = arg;
	if (status != 0) {
		transport_rpc_reply(op->rpc, status, NULL, 0);
	} else {
		struct buf b;
		buf_init(&b);
		buf_put_u64(&b, coherence_safe_index(op->node->coherence));
		transport_rpc_reply(op->rpc, b.err, b.data, b.len);
		buf_free(&b);
	}
	free(op);
}

void node_safe_serve(struct node *n, struct transport_rpc_req *rpc)
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	uint64_t index = cursor_u64(&c);
	if (cursor_done(&c) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	struct safe_rpc *op = malloc(sizeof(*op));
	if (op == NULL) {
		transport_rpc_reply(rpc, -ENOMEM, NULL, 0);
		return;
	}
	op->node = n;
	op->rpc = rpc;
	coherence_wait_safe(n->coherence, index, on_rpc_safe, op);
}

void node_safe_fail_all(struct node *n, int status)
{
	struct safe_reply *r = n->safe_replies;
	n->safe_replies = NULL;
	while (r != NULL) {
		struct safe_reply *next = r->next;
		reply_send(r, status);
		r = next;
	}
}
