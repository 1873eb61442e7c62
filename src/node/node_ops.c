/* Tree operations from the local API: reads served from the local store,
 * writes proposed through Raft and answered once applied. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/log.h"
#include "raft/fsm.h"
#include "vaultfs/proto.h"

/* Checks that the node may serve the tree (a read if READ); 0 or the
 * errno to answer. */
static int serve_check(const struct node *n, bool read)
{
	int rv = node_storage_errno(n);
	/* Storage down: ENOSPC or EIO says why, but a node that follows
	 * without it still serves the reads it can prove. */
	if (rv != 0 && !(read && n->phase == NODE_ACTIVE && node_storage_mute(n)))
		return rv;
	switch (n->phase) {
	case NODE_ACTIVE:
		return 0;
	case NODE_STARTING:
		return -EAGAIN; /* unsealed, no leader yet */
	case NODE_SEALED:
	case NODE_CLOSING:
		break;
	}
	return -ENOKEY;
}

/* Whether a write through this node could commit now, as far as it can
 * tell without writing (VFS_OP_WRITABLE's status). */
static int writable_status(struct node *n)
{
	int rv = serve_check(n, false);
	if (rv == 0 && !node_query_quorum_in_touch(n))
		rv = -EAGAIN;
	return rv;
}

static uint64_t lease_round(struct node *n);

/* REQ is answered from a round that made the local state linearizable (a
 * lease, a sole voter): so is a local_reads mount's, which is then an
 * ordinary linearizable answer, granted and shown only once safe. */
static void answer_linearizable(struct api_request *req)
{
	req->flags &= (uint16_t)~VFS_REQ_LOCAL_READ;
}

/* The mount point itself must always stat: the kernel looks at it on every
 * path walk, so without it .vault/status would be unreadable exactly when an
 * operator needs it (sealed, no leader, quorum lost). Its attributes are
 * not secret; they come from the local copy, possibly stale, or while
 * sealed show an empty root-owned directory. */
static bool root_getattr(struct node *n, struct api_request *req)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	uint64_t ino = cursor_u64(&c);
	if (req->op != VFS_OP_GETATTR || cursor_done(&c) != 0 || ino != VFS_ROOT_INO)
		return false;
	struct vfs_attr a = { .ino = VFS_ROOT_INO, .mode = S_IFDIR | 0755, .nlink = 2,
			      .mtime_ns = n->started_ns, .ctime_ns = n->started_ns,
			      .atime_ns = n->started_ns };
	if (n->session != NULL && n->phase != NODE_CLOSING)
		store_getattr(n->session->store, VFS_ROOT_INO, &a);
	/* Linearizable where a sole voter serves it, or under a lease:
	 * cacheable then, once safe, local reads too (otherwise an answer of
	 * whatever this node has, even without a quorum). */
	uint64_t lease = 0;
	if (n->phase == NODE_ACTIVE)
		lease = node_query_is_sole_voter(n) ? coherence_round_start(n->coherence) :
						      lease_round(n);
	if (lease != 0) {
		answer_linearizable(req);
		req->cache_until_ns = node_watch_grant(n, req, lease);
	}
	struct buf b;
	buf_init(&b);
	vfs_attr_put(&b, &a);
	if (req->cache_until_ns != 0)
		node_safe_reply(n, req, b.err, b.data, b.len);
	else
		api_reply(req, b.err, b.data, b.len);
	buf_free(&b);
	return true;
}

/* Reads a name field: 1..VFS_MAX_NAME bytes. */
static const uint8_t *get_name(struct cursor *c, size_t *ret_len, int *ret_err)
{
	const uint8_t *name = cursor_blob(c, VFS_MAX_FRAME, ret_len);
	if (c->err != 0)
		*ret_err = -EBADMSG;
	else if (*ret_len > VFS_MAX_NAME)
		*ret_err = -ENAMETOOLONG;
	else if (*ret_len == 0 || memchr(name, '/', *ret_len) || memchr(name, '\0', *ret_len))
		*ret_err = -EINVAL;
	return name;
}

static void reply_attr(struct api_request *req, int rv, const struct vfs_attr *a)
{
	if (rv != 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	struct buf b;
	buf_init(&b);
	vfs_attr_put(&b, a);
	api_reply(req, b.err, b.data, b.len);
	buf_free(&b);
}

/* The answers below show the state machine: they wait until it is safe. */
static void reply_attr_safe(struct node *n, struct api_request *req, int rv,
			    const struct vfs_attr *a)
{
	struct buf b;
	buf_init(&b);
	if (rv == 0)
		vfs_attr_put(&b, a);
	if (rv == 0 && b.err != 0)
		rv = b.err;
	node_safe_reply(n, req, rv, rv == 0 ? b.data : NULL, rv == 0 ? b.len : 0);
	buf_free(&b);
}

/* ABSENT: the answer says a name is absent (node_safe_reply_absent). */
static void reply_buf_shown(struct node *n, struct api_request *req, int rv, struct buf *b,
			    bool absent)
{
	if (rv == 0 && b->err != 0)
		rv = b->err;
	const uint8_t *data = rv == 0 ? b->data : NULL;
	size_t len = rv == 0 ? b->len : 0;
	if (absent)
		node_safe_reply_absent(n, req, rv, data, len);
	else
		node_safe_reply(n, req, rv, data, len);
	buf_free(b);
}

static void reply_buf_safe(struct node *n, struct api_request *req, int rv, struct buf *b)
{
	reply_buf_shown(n, req, rv, b, false);
}

/* LOOKUP_WRITABLE's answer to the lookup that ended with RV (proto.h). */
static void reply_lookup_writable(struct node *n, struct api_request *req, int rv,
				  const struct vfs_attr *a)
{
	struct buf b;
	buf_init(&b);
	bool absent = rv == -ENOENT;
	if (rv == 0) {
		buf_put_u8(&b, 1);
		vfs_attr_put(&b, a);
	} else if (absent) {
		buf_put_u8(&b, 0);
		buf_put_i32(&b, writable_status(n));
		req->outcome = -ENOENT;
		rv = 0;
	}
	reply_buf_shown(n, req, rv, &b, absent);
}

/* Serves a read from the local state machine. ROUND_START_NS: when the
 * read round that made it linearizable started (0: it is not). */
static void serve_read(struct node *n, struct api_request *req, uint64_t round_start_ns)
{
	struct store *s = n->session->store;
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	struct vfs_attr a;
	struct buf b;
	buf_init(&b);
	int rv;
	/* Linearizable attributes, names and values may be cached for a while
	 * if this node can promise to drop them before any write is answered. */
	if ((req->op == VFS_OP_LOOKUP || req->op == VFS_OP_LOOKUP_WRITABLE ||
	     req->op == VFS_OP_GETATTR || req->op == VFS_OP_READ || req->op == VFS_OP_READDIRPLUS) &&
	    round_start_ns != 0)
		req->cache_until_ns = node_watch_grant(n, req, round_start_ns);
	switch (req->op) {
	case VFS_OP_LOOKUP:
	case VFS_OP_LOOKUP_WRITABLE: {
		uint64_t parent = cursor_u64(&c);
		size_t len = 0;
		int err = 0;
		const uint8_t *name = get_name(&c, &len, &err);
		rv = err != 0 ? err : cursor_done(&c);
		if (rv == 0)
			rv = store_lookup(s, parent, name, len, &a);
		if (req->op == VFS_OP_LOOKUP_WRITABLE && err == 0)
			reply_lookup_writable(n, req, rv, &a);
		else if (rv == -ENOENT)
			node_safe_reply_absent(n, req, rv, NULL, 0);
		else
			reply_attr_safe(n, req, rv, &a);
		return;
	}
	case VFS_OP_GETATTR: {
		uint64_t ino = cursor_u64(&c);
		rv = cursor_done(&c);
		if (rv == 0)
			rv = store_getattr(s, ino, &a);
		reply_attr_safe(n, req, rv, &a);
		return;
	}
	case VFS_OP_READDIR:
	case VFS_OP_READ: {
		uint64_t ino = cursor_u64(&c);
		rv = cursor_done(&c);
		if (rv == 0)
			rv = req->op == VFS_OP_READDIR ? store_readdir(s, ino, &b) : store_read(s, ino, &b);
		reply_buf_safe(n, req, rv, &b);
		return;
	}
	case VFS_OP_READDIRPLUS: {
		uint64_t ino = cursor_u64(&c), after = cursor_u64(&c);
		rv = cursor_done(&c);
		if (rv == 0)
			rv = store_readdirplus(s, ino, after, &b);
		reply_buf_safe(n, req, rv, &b);
		return;
	}
	case VFS_OP_STATFS: {
		uint64_t files = 0, bytes = 0;
		store_stats(s, &files, &bytes);
		buf_put_u64(&b, files);
		buf_put_u64(&b, bytes);
		reply_buf_safe(n, req, 0, &b);
		return;
	}
	case VFS_OP_CTL_OPEN:
		node_snapshot_take(n, req);
		return;
	default:
		api_reply(req, -ENOSYS, NULL, 0);
		return;
	}
}

/* ---- Linearizable reads: read rounds ----
 *
 * A read may be served locally once the local state machine has applied
 * everything the leader had committed when the read began (ReadIndex). The
 * leader takes its commit index and proves it still leads by asking the
 * voters (node_confirm.c), without writing to the log. Until it has
 * committed an entry of its own term its commit index may be incomplete:
 * then it commits a barrier entry instead. Reads are batched: all reads that
 * arrived before a round started share it; reads arriving during a round
 * wait for the next one (an index learned before a read began would not be
 * enough for it). Rounds are pipelined: once a round has its index, its
 * reads wait for the state machine to reach it while the next round asks
 * for the next index. */

static void start_read_round(struct node *n);

/* Serves the reads in LIST, or requeues them for another round, or fails
 * them, as STATUS says. */
static void finish_reads(struct node *n, struct read_op *list, int status,
			 uint64_t round_start_ns)
{
	while (list != NULL) {
		struct read_op *r = list;
		list = r->next;
		if (status == 0 && n->phase == NODE_ACTIVE) {
			serve_read(n, r->req, round_start_ns);
		} else if (status == -EAGAIN && uv_now(n->loop) < r->deadline) {
			r->next = n->read_queue; /* try again in the next round */
			n->read_queue = r;
			continue;
		} else {
			api_reply(r->req, status != 0 ? status : -EAGAIN, NULL, 0);
		}
		free(r);
	}
	if (n->read_queue != NULL) {
		if (status == 0)
			start_read_round(n);
		else
			node_cluster_retry_soon(n); /* no leader right now: back off */
	}
}

/* Ends the round in flight; returns its reads. */
static struct read_op *take_round(struct node *n)
{
	struct read_op *round = n->read_round;
	n->read_round = NULL;
	n->read_round_inflight = false;
	return round;
}

static void finish_read_round(struct node *n, int status)
{
	uint64_t start = n->read_round_start_ns;
	finish_reads(n, take_round(n), status, start);
}

/* A round's reads, waiting for the state machine to reach its index. */
struct applied_batch {
	struct node *node;
	struct read_op *reads;
	uint64_t round_start_ns;
};

static void on_batch_applied(void *arg, int status)
{
	struct applied_batch *b = arg;
	struct node *n = b->node;
	struct read_op *reads = b->reads;
	uint64_t start = b->round_start_ns;
	free(b);
	if (status == 0 && n->phase == NODE_ACTIVE)
		coherence_round_served(n->coherence, start);
	finish_reads(n, reads, status, start);
}

/* The round has its read index: the next round may start. */
static void round_index_known(struct node *n, uint64_t index)
{
	struct applied_batch *b = malloc(sizeof(*b));
	if (b == NULL) {
		finish_read_round(n, -ENOMEM);
		return;
	}
	b->node = n;
	b->round_start_ns = n->read_round_start_ns;
	b->reads = take_round(n);
	uint64_t deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	node_cluster_wait_applied(n, index, deadline, on_batch_applied, b);
	start_read_round(n);
}

static void on_read_barrier(struct raft_barrier *req, int status)
{
	struct node *n = req->data;
	if (status == 0 && n->session != NULL)
		n->barrier_term = n->session->raft.current_term;
	finish_read_round(n, status == 0 ? 0 : -EAGAIN);
}

static void on_read_confirmed(void *arg, int status)
{
	struct node *n = arg;
	if (status != 0 || n->phase != NODE_ACTIVE) {
		finish_read_round(n, status == -ENOMEM ? -ENOMEM : -EAGAIN);
		return;
	}
	round_index_known(n, n->read_round_index);
}

/* The leader's own round. */
static int start_leader_round(struct node *n)
{
	const struct raft *r = &n->session->raft;
	if (node_query_committed_in_term(n)) {
		n->read_round_index = r->commit_index;
		return node_confirm_leadership(n, on_read_confirmed, n);
	}
	n->read_barrier.data = n;
	return raft_barrier(&n->session->raft, &n->read_barrier, on_read_barrier) == 0 ? 0 :
										      -EAGAIN;
}

static void on_read_index(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct node *n = arg;
	struct cursor c;
	cursor_init(&c, resp, len);
	uint64_t index = status == 0 ? cursor_u64(&c) : 0, safe = status == 0 ? cursor_u64(&c) : 0;
	if (status == 0 && cursor_done(&c) != 0)
		status = -EBADMSG;
	if (status != 0 || n->phase != NODE_ACTIVE) {
		finish_read_round(n, status == -EBADMSG ? -EIO : -EAGAIN);
		return;
	}
	node_safe_learned(n, safe);
	round_index_known(n, index);
}

static void start_read_round(struct node *n)
{
	if (n->read_round_inflight || (n->read_queue == NULL && !n->lease_renew))
		return;
	n->read_round = n->read_queue;
	n->read_queue = NULL;
	n->read_round_inflight = true;
	n->lease_renew = false;
	/* Before the read index is asked for: grants count from here. */
	n->read_round_start_ns = coherence_round_start(n->coherence);
	int rv;
	if (node_query_is_leader(n)) {
		rv = start_leader_round(n);
	} else {
		/* Our commit index tells the leader whether we would learn its
		 * own in time without a new entry (node_cluster.c). A node
		 * without storage holds no grants: no write waits for it. */
		const char *leader = node_query_leader_address(n);
		uint64_t deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
		struct buf b;
		buf_init(&b);
		buf_put_u64(&b, n->session->raft.commit_index);
		if (node_storage_mute(n))
			buf_put_u8(&b, NODE_READ_INDEX_NO_GRANTS);
		rv = leader && b.err == 0 ?
			     transport_rpc(n->session->transport, leader, NODE_RPC_READ_INDEX,
					   b.data, b.len, node_query_attempt_timeout(n, deadline),
					   on_read_index, n) :
			     -EAGAIN;
		buf_free(&b);
		if (rv != 0)
			rv = -EAGAIN;
	}
	if (rv != 0)
		finish_read_round(n, rv);
}

/* ---- Leases ----
 *
 * Once a round's reads were served, the local state stays linearizable
 * while coherence_lease holds: the leader counts this node as
 * holding grants from that round, so a write becomes safe only once it is
 * applied here too (or once that time is over), and nothing shows a write
 * before it is safe (node_safe.c). Reads in that time are served at once;
 * once a quarter of the lease has passed a round without reads starts, so
 * that a steady stream of reads never waits for one and its grants stay
 * long (coherence.c). */

/* The start of the round whose lease holds now, or 0. */
static uint64_t lease_round(struct node *n)
{
	bool renew;
	uint64_t start = coherence_lease(n->coherence, &renew);
	if (start != 0 && renew && !n->read_round_inflight) {
		n->lease_renew = true;
		start_read_round(n);
	}
	return start;
}

/* The round that makes the local state linearizable now, without a Raft
 * round trip, or 0. A sole voter cannot be deposed without knowing it: once
 * it has committed an entry of its term, its own state is linearizable;
 * otherwise only under a lease. */
static uint64_t round_now(struct node *n)
{
	if (node_query_is_sole_voter(n) && node_query_committed_in_term(n))
		return coherence_round_start(n->coherence);
	return lease_round(n);
}

void node_ops_read(struct node *n, struct api_request *req)
{
	if (root_getattr(n, req))
		return;
	int rv = serve_check(n, true);
	if (rv != 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	uint64_t round = round_now(n);
	if (round != 0) {
		answer_linearizable(req);
		serve_read(n, req, round);
		return;
	}
	/* Otherwise reads the mount asked to be local are served as they
	 * are, possibly stale, without waiting for a leader; a round without
	 * reads starts, so that the next ones find a lease. */
	if (req->flags & VFS_REQ_LOCAL_READ) {
		serve_read(n, req, 0);
		if (!n->read_round_inflight) {
			n->lease_renew = true;
			start_read_round(n);
		}
		return;
	}
	struct read_op *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		api_reply(req, -ENOMEM, NULL, 0);
		return;
	}
	r->req = req;
	r->deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	r->next = n->read_queue;
	n->read_queue = r;
	start_read_round(n);
}

bool node_ops_is_write(uint16_t op)
{
	switch (op) {
	case VFS_OP_WRITE:
	case VFS_OP_CREATE:
	case VFS_OP_CREATE_VALUE:
	case VFS_OP_MKDIR:
	case VFS_OP_UNLINK:
	case VFS_OP_RMDIR:
	case VFS_OP_RENAME:
	case VFS_OP_SETATTR:
		return true;
	default:
		return false;
	}
}


/* Turns a write request's payload into a command; 0 or -errno. */
static int decode_write(const struct api_request *req, struct cmd *cmd)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	int err = 0;
	cmd->ino = cursor_u64(&c);
	switch (req->op) {
	case VFS_OP_WRITE:
		cmd->type = CMD_SET_VALUE;
		cmd->value = cursor_blob(&c, VFS_MAX_FRAME, &cmd->value_len);
		/* Root stands in for CAP_FSETID: the mount passes the caller's
		 * uid, not its capabilities. */
		cmd->flags = req->uid != 0 ? CMD_SET_VALUE_UNPRIVILEGED : 0;
		if (c.err == 0 && cmd->value_len > VFS_MAX_VALUE)
			err = -EFBIG;
		break;
	case VFS_OP_CREATE:
	case VFS_OP_MKDIR:
		cmd->type = req->op == VFS_OP_CREATE ? CMD_CREATE : CMD_MKDIR;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		cmd->mode = cursor_u32(&c) & 07777;
		cmd->uid = req->uid;
		cmd->gid = req->gid;
		break;
	case VFS_OP_CREATE_VALUE:
		cmd->type = CMD_CREATE_VALUE;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		cmd->mode = cursor_u32(&c) & 07777;
		cmd->uid = req->uid;
		cmd->gid = req->gid;
		cmd->value = cursor_blob(&c, VFS_MAX_FRAME, &cmd->value_len);
		cmd->flags = req->uid != 0 ? CMD_SET_VALUE_UNPRIVILEGED : 0;
		if (c.err == 0 && err == 0 && cmd->value_len > VFS_MAX_VALUE)
			err = -EFBIG;
		break;
	case VFS_OP_UNLINK:
	case VFS_OP_RMDIR:
		cmd->type = req->op == VFS_OP_UNLINK ? CMD_UNLINK : CMD_RMDIR;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		break;
	case VFS_OP_RENAME:
		cmd->type = CMD_RENAME;
		cmd->name = get_name(&c, &cmd->name_len, &err);
		cmd->new_parent = cursor_u64(&c);
		if (err == 0)
			cmd->new_name = get_name(&c, &cmd->new_name_len, &err);
		cmd->flags = cursor_u32(&c);
		if (cmd->flags & ~(VFS_RENAME_NOREPLACE | VFS_RENAME_EXCHANGE))
			err = err ? err : -EINVAL;
		break;
	case VFS_OP_SETATTR:
		cmd->type = CMD_SETATTR;
		cmd->valid = cursor_u32(&c);
		cmd->mode = cursor_u32(&c) & 07777;
		cmd->uid = cursor_u32(&c);
		cmd->gid = cursor_u32(&c);
		cmd->size = cursor_u64(&c);
		cmd->mtime_ns = cursor_i64(&c);
		cmd->atime_ns = cursor_i64(&c);
		if (c.err == 0 && (cmd->valid & VFS_SET_SIZE) && cmd->size > VFS_MAX_VALUE)
			err = -EFBIG;
		break;
	default:
		return -ENOSYS;
	}
	if (err != 0)
		return err;
	return cursor_done(&c);
}

static bool op_replies_attr(uint16_t op)
{
	return op == VFS_OP_WRITE || op == VFS_OP_CREATE || op == VFS_OP_CREATE_VALUE ||
	       op == VFS_OP_MKDIR || op == VFS_OP_SETATTR;
}

static bool retryable(int status)
{
	return node_query_unreachable_errno(status) == -EAGAIN;
}

/* ---- Writes ----
 *
 * Every write becomes a command with this node's (client_id, seq). The
 * leader proposes it; a follower forwards it to the leader. An attempt that
 * fails in a way that may be temporary (no leader, leadership lost, the
 * leader unreachable) is retried with the same seq until the request
 * deadline: the state machine applies each (client_id, seq) once, so a
 * retry of a command that did commit is answered with its first result. */

static void write_op_free(struct write_op *w)
{
	struct node *n = w->node;
	assert(w->inflight == 0); /* an attempt would call back into freed memory */
	if (w->prev != NULL)
		w->prev->next = w->next;
	else if (n->writes == w)
		n->writes = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	buf_free(&w->cmd);
	free(w);
}

/* The attributes a write answers. Where a read now would be served at once
 * and granted (a sole voter, a lease), they are that read: the current
 * state, granted, once safe; the mount holds them, so the GETATTR that the
 * next open of the file brings is answered there, not here. A follower
 * that does not know the current state is safe yet answers the leader's
 * attributes instead, uncached, rather than wait for the leader. */
static void write_answer_attr(struct write_op *w, struct api_request *req, uint64_t ino)
{
	struct node *n = w->node;
	bool current_safe = node_query_is_leader(n) ||
			    coherence_may_show(n->coherence, node_query_applied_index(n));
	uint64_t round = 0;
	if (n->phase == NODE_ACTIVE && (current_safe || !w->has_attr))
		round = round_now(n);
	if (w->has_attr && round == 0) {
		reply_attr(req, 0, &w->attr);
		return;
	}
	if (round != 0) {
		answer_linearizable(req);
		req->cache_until_ns = node_watch_grant(n, req, round);
	}
	struct vfs_attr a;
	int rv = store_getattr(n->session->store, ino, &a);
	reply_attr_safe(n, req, rv, &a);
}

/* Answers the client once; the op lives on while an attempt is in flight. */
static void write_op_answer(struct write_op *w, int64_t result)
{
	struct node *n = w->node;
	struct api_request *req = w->req;
	w->req = NULL;
	if (req != NULL) {
		if (result < 0 || !op_replies_attr(req->op) || n->session == NULL)
			api_reply(req, result < 0 ? (int)result : 0, NULL, 0);
		else
			write_answer_attr(w, req, (uint64_t)result);
	}
	if (w->inflight == 0)
		write_op_free(w);
}

static void write_attempt(struct write_op *w);

/* An attempt ended: answer, schedule a retry, or give up. */
static void write_attempt_done(struct write_op *w, int status, int64_t result)
{
	struct node *n = w->node;
	bool earlier = w->launched > (w->inflight != 0 ? 1u : 0u); /* than this one */
	w->inflight = 0;
	if (w->req == NULL) {
		write_op_free(w);
		return;
	}
	if (status == 0) {
		write_op_answer(w, result);
		return;
	}
	/* The leader's refusal of a removed member (EPERM) is certain for this
	 * attempt only: an earlier one whose answer was lost (the removal
	 * drops the connection) may have committed. The outcome is unknown,
	 * which is what EAGAIN says after a lost answer elsewhere. */
	if (status == -EPERM && earlier) {
		log_warn("node %s: write refused (this node was removed) after an earlier attempt "
			 "that may have committed: answering EAGAIN", n->node_id);
		write_op_answer(w, -EAGAIN);
		return;
	}
	if (retryable(status) && n->phase == NODE_ACTIVE && uv_now(n->loop) < w->deadline) {
		w->retry = true;
		node_cluster_retry_soon(n);
		return;
	}
	if (status != -ENOKEY)
		log_warn("node %s: write not committed: %s", n->node_id, strerror(-status));
	write_op_answer(w, retryable(status) ? -EAGAIN : status);
}

static void on_visible(void *arg, int status)
{
	struct write_op *w = arg;
	write_attempt_done(w, status, status == 0 ? w->result : 0);
}

static void on_applied(struct raft_apply *apply, int status, void *result)
{
	struct write_op *w = (struct write_op *)((char *)apply - offsetof(struct write_op, apply));
	if (status != 0) {
		write_attempt_done(w, node_query_raft_errno(status), 0);
		return;
	}
	/* Answered only once no mount can still show what it replaced
	 * (coherence.c); the attempt stays in flight until then. */
	w->result = fsm_result_unpack(result);
	coherence_wait_written(w->node->coherence, apply->index, on_visible, w);
}

static void on_forwarded(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct write_op *w = arg;
	struct cursor c;
	cursor_init(&c, resp, len);
	int64_t result = status == 0 ? cursor_i64(&c) : 0;
	w->has_attr = status == 0 && cursor_u8(&c) != 0;
	if (w->has_attr)
		vfs_attr_get(&c, &w->attr);
	uint64_t index = status == 0 ? cursor_u64(&c) : 0;
	if (status == 0 && cursor_done(&c) != 0)
		status = -EIO;
	if (status != 0) {
		write_attempt_done(w, status, result);
		return;
	}
	/* The leader made sure no other node's mounts show what it replaced
	 * (it is safe); ours must not either. */
	node_safe_learned(w->node, index);
	w->result = result;
	coherence_wait_visible(w->node->coherence, index, on_visible, w);
}

static int propose_locally(struct write_op *w)
{
	struct node *n = w->node;
	struct raft_buffer entry = { 0 };
	int rv = fsm_seal_entry(n->barrier, w->cmd.data, w->cmd.len, &entry);
	if (rv != 0)
		return rv;
	return node_cluster_propose(n, &w->apply, &entry, on_applied);
}

static void write_attempt(struct write_op *w)
{
	struct node *n = w->node;
	assert(w->req != NULL && w->inflight == 0); /* unanswered, no attempt in flight */
	w->retry = false;
	int rv;
	if (n->phase != NODE_ACTIVE) {
		rv = n->phase == NODE_STARTING ? -EAGAIN : -ENOKEY;
	} else if (node_query_is_leader(n)) {
		rv = propose_locally(w);
	} else {
		const char *leader = node_query_leader_address(n);
		rv = leader ? transport_rpc(n->session->transport, leader, NODE_RPC_FORWARD,
					    w->cmd.data, w->cmd.len,
					    node_query_attempt_timeout(n, w->deadline),
					    on_forwarded, w)
			    : -EAGAIN;
		if (rv == 0)
			node_metrics_forwarded(n);
	}
	if (rv == 0) {
		w->inflight = 1;
		w->launched++;
		return;
	}
	write_attempt_done(w, rv, 0);
}

/* The lowest seq still waiting for an answer, counting SEQ (the command
 * being built): the state machine may forget the results of everything
 * below it. */
static uint64_t ack_below(const struct node *n, uint64_t seq)
{
	uint64_t low = seq;
	for (const struct write_op *w = n->writes; w != NULL; w = w->next)
		if (w->req != NULL && w->seq < low)
			low = w->seq;
	return low;
}

void node_ops_write(struct node *n, struct api_request *req)
{
	int rv = serve_check(n, false);
	struct cmd cmd;
	memset(&cmd, 0, sizeof(cmd));
	if (rv == 0)
		rv = decode_write(req, &cmd);
	/* Every member must be able to apply it (cmd.h). */
	if (rv == 0 && cmd.type == CMD_CREATE_VALUE &&
	    node_features_level(n) < CMD_FEATURES_CREATE_VALUE)
		rv = -ENOSYS;
	struct write_op *w = rv == 0 ? calloc(1, sizeof(*w)) : NULL;
	if (rv == 0 && w == NULL)
		rv = -ENOMEM;
	if (rv != 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	cmd.client_id = n->client_id;
	cmd.seq = ++n->seq;
	cmd.ack_below = ack_below(n, cmd.seq);
	cmd.now_ns = node_now_ns();
	w->node = n;
	w->req = req;
	w->seq = cmd.seq;
	w->deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	buf_init(&w->cmd);
	rv = cmd_encode(&cmd, &w->cmd);
	if (rv != 0) {
		buf_free(&w->cmd);
		free(w);
		api_reply(req, rv, NULL, 0);
		return;
	}
	w->next = NULL;
	w->prev = NULL;
	/* Append: the list stays in seq order. */
	struct write_op **tail = &n->writes;
	struct write_op *last = NULL;
	while (*tail != NULL) {
		last = *tail;
		tail = &(*tail)->next;
	}
	*tail = w;
	w->prev = last;
	write_attempt(w);
}

void node_ops_writable(struct node *n, struct api_request *req)
{
	api_reply(req, writable_status(n), NULL, 0);
}

void node_ops_retry(struct node *n)
{
	/* Collect first: an attempt may free its op. */
	struct write_op *due[64];
	size_t ndue = 0;
	for (struct write_op *w = n->writes; w != NULL && ndue < 64; w = w->next)
		if (w->retry)
			due[ndue++] = w;
	for (size_t i = 0; i < ndue; i++)
		write_attempt(due[i]);
	if (!n->read_round_inflight && n->read_queue != NULL)
		start_read_round(n);
	bool waiting = node_safe_retry(n) || n->read_queue != NULL || n->apply_waiters != NULL;
	for (struct write_op *w = n->writes; w != NULL && !waiting; w = w->next)
		waiting = w->retry;
	if (!waiting)
		uv_timer_stop(&n->retry_timer);
}

void node_ops_fail_all(struct node *n, int status)
{
	for (struct write_op *w = n->writes, *next; w != NULL; w = next) {
		next = w->next;
		w->retry = false;
		write_op_answer(w, status);
	}
	struct read_op *lists[2] = { n->read_queue, n->read_round };
	n->read_queue = NULL;
	n->read_round = NULL;
	for (size_t i = 0; i < 2; i++) {
		while (lists[i] != NULL) {
			struct read_op *r = lists[i];
			lists[i] = r->next;
			api_reply(r->req, status, NULL, 0);
			free(r);
		}
	}
	/* Their rounds' callbacks find no read round left. */
	node_confirm_fail_queued(n, status);
}

void node_ops_free_finished(struct node *n)
{
	/* Called once Raft and the transport are closed: no attempt can call
	 * back any more. */
	while (n->writes != NULL) {
		n->writes->inflight = 0;
		write_op_free(n->writes);
	}
}
