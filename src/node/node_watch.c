/* Kernel cache coherence: the node side of VFS_OP_WATCH, around the
 * rules of src/coherence (grants, leases, the visible index, the write
 * rule and the safe index: coherence.c says what they are and why).
 *
 * A mount that caches attributes and names in the kernel watches its node:
 * after each loop turn in which the state machine changed something, every
 * watcher gets a notice (seq, the changed inodes, whether names went away)
 * and acknowledges it once the kernel dropped those entries. Seqs number
 * the notices of this node's lifetime, across seal and unseal, so a mount
 * never sees them go backwards. This file keeps the watchers and the
 * notices, feeds the coherence module (notices sent and acknowledged,
 * watchers gone, loop turns, reports between nodes) and gives it the
 * node's clock, state and RPCs.
 *
 * The read rule (mount). Every response carries the seq of the state it
 * was read from (node_watch_state_seq): the mount holds it until it has
 * acted on the notices up to there, so nobody is told something newer than
 * what its own caches may still say.
 *
 * The stamp rule. A response stamped S reflects every change of the
 * notices up to S and no change of a later one: the mount holds (held.h)
 * what it says unless a notice after S dropped its inode, so the notice S
 * that drops an inode must not carry a change made after the response was
 * read. Changes applied in one loop turn share a notice, and a response
 * read between two of them is stamped with that notice's seq; the next
 * change therefore closes the notice (queued until the turn ends) and
 * starts another. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coherence/coherence.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/monoclock.h"
#include "node/internal.h"

/* How long a watcher may take to acknowledge a notice before it is
 * dropped. */
#define NODE_WATCH_ACK_TIMEOUT_MS 2000u

struct watcher {
	struct watcher *next;
	struct api_conn *conn;
	int pid;          /* of its mount: only that process gets grants */
	uint64_t acked;   /* seq of the last notice it acted on */
	uint64_t sent_at; /* mono_ms of the oldest notice it has not acknowledged */
	bool attrs;       /* it takes notices with attributes (version 9 on) */
};

/* A notice closed but not sent yet: without attributes, and with them
 * (empty when not every inode's were read). */
struct queued {
	uint64_t seq;
	struct buf b;
	struct buf b_attrs;
};

struct node_watch {
	struct watcher *watchers;
	uint64_t seq;            /* of the last notice sent */
	bool pending;            /* changes not yet in a notice */
	bool pending_names;
	bool pending_all;
	unsigned n_pending;
	uint64_t pending_since;  /* mono_ms of the first pending change */
	uint64_t pending_ino[VFS_NOTICE_MAX_INOS];
	/* Their attributes right after the change that listed them (ino 0:
	 * gone), while pending_attrs: a watcher wanted them for every one. */
	struct vfs_attr pending_attr[VFS_NOTICE_MAX_INOS];
	bool pending_attrs;
	bool stamped;            /* a response named the pending notice's seq */
	/* Closed notices waiting for the end of the loop turn (sending can
	 * drop a watcher, which runs waiters: not from inside an apply). */
	struct queued *queue;
	unsigned n_queued, cap_queued;
	bool queue_failed;       /* out of memory or marks: drop every watcher */
	bool unsynced;           /* watchers were not told of skipped notices */
	uv_check_t flush;        /* sends notices and reports after each loop turn */
	uv_timer_t timer;        /* coherence_due_ms, silent watchers */
};

/* Grants are deadlines on this clock, not on uv_now: the loop's cached
 * time lags, and a grant must never look expired here while a kernel can
 * still use it. */
static uint64_t mono_ms(void)
{
	return monoclock_ns() / 1000000u;
}

static uint64_t min_acked(const struct node_watch *w)
{
	uint64_t m = w->seq;
	for (const struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked < m)
			m = x->acked;
	return m;
}

/* ---- Timer ---- */

static void on_timer(uv_timer_t *t);

/* A pending notice closes at the end of the loop turn; with the failpoint
 * notice_delay_ms, only after that many ms of turns, as if they were one
 * long turn (tests/faults/test_stamp.sh). 0 in release builds. */
static uint64_t notice_delay_ms(void)
{
	return (uint64_t)failpoint_value("notice_delay_ms");
}

/* Wakes up when the coherence rules have something to do by time, or a
 * watcher is overdue. */
static void arm_timer(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms(), due = coherence_due_ms(n->coherence);
	for (struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked < w->seq && x->sent_at + NODE_WATCH_ACK_TIMEOUT_MS < due)
			due = x->sent_at + NODE_WATCH_ACK_TIMEOUT_MS;
	uint64_t delay = notice_delay_ms();
	if (w->pending && delay > 0 && w->pending_since + delay > now &&
	    w->pending_since + delay < due)
		due = w->pending_since + delay; /* notice_due then */
	if (due == UINT64_MAX)
		uv_timer_stop(&w->timer);
	else
		uv_timer_start(&w->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms();
	struct watcher *x = w->watchers;
	while (x != NULL) {
		struct watcher *next = x->next;
		if (x->acked < w->seq && now >= x->sent_at + NODE_WATCH_ACK_TIMEOUT_MS)
			api_watch_drop(x->conn, "did not acknowledge a cache notice in time");
		x = next; /* the drop unlinks x through the gone hook */
	}
	coherence_poll(n->coherence);
	arm_timer(n);
}

/* ---- Changes and notices ---- */

static void close_or_skip(struct node *n);

/* Whether a watcher would take the pending notice's attributes. */
static bool wants_attrs(const struct node_watch *w)
{
	for (const struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->attrs)
			return true;
	return false;
}

void node_watch_changed(void *arg, const struct store_changes *ch)
{
	struct node *n = arg;
	struct node_watch *w = n->watch;
	if (w->pending && w->stamped)
		close_or_skip(n); /* the stamp rule: this change goes into the next */
	if (!w->pending) {
		coherence_change_pending(n->coherence);
		w->pending_since = mono_ms();
		w->pending = true;
		w->pending_attrs = wants_attrs(w);
	}
	if (ch == NULL || ch->overflow) {
		w->pending_all = true;
		return;
	}
	w->pending_names |= ch->names;
	struct store *s = n->session != NULL ? n->session->store : NULL;
	w->pending_attrs &= s != NULL && wants_attrs(w);
	for (unsigned i = 0; i < ch->n; i++) {
		if (w->n_pending == VFS_NOTICE_MAX_INOS) {
			w->pending_all = true;
			continue;
		}
		/* The state now is the notice's for this inode, unless a later
		 * change of it comes: that one is listed again. */
		struct vfs_attr *a = &w->pending_attr[w->n_pending];
		if (w->pending_attrs && store_getattr(s, ch->ino[i], a) != 0)
			a->ino = 0;
		w->pending_ino[w->n_pending++] = ch->ino[i];
	}
}

/* The seq of the notice that will carry everything applied so far. */
uint64_t node_watch_state_seq(struct node *n)
{
	struct node_watch *w = n->watch;
	if (!w->pending)
		return w->seq;
	w->stamped = true;
	return w->seq + 1;
}

static void clear_pending(struct node_watch *w)
{
	w->pending = w->pending_names = w->pending_all = w->stamped = false;
	w->n_pending = 0;
}

static void free_queue(struct node_watch *w)
{
	for (unsigned i = 0; i < w->n_queued; i++) {
		buf_free(&w->queue[i].b);
		buf_free(&w->queue[i].b_attrs);
	}
	w->n_queued = 0;
	w->queue_failed = false;
}

static bool queue_push(struct node_watch *w, uint64_t seq, struct buf *b, struct buf *b_attrs)
{
	if (w->n_queued == w->cap_queued) {
		unsigned cap = w->cap_queued ? 2 * w->cap_queued : 4;
		struct queued *q = realloc(w->queue, cap * sizeof(*q));
		if (q == NULL)
			return false;
		w->queue = q;
		w->cap_queued = cap;
	}
	w->queue[w->n_queued++] = (struct queued){ seq, *b, *b_attrs };
	return true;
}

/* The pending notice as FLAGS and its inodes into B; with their
 * attributes if ATTRS. */
static void encode_notice(const struct node_watch *w, uint8_t flags, bool attrs, struct buf *b)
{
	unsigned n_inos = w->pending_all ? 0 : w->n_pending;
	buf_put_u8(b, flags | (attrs ? VFS_NOTICE_ATTRS : 0));
	buf_put_u32(b, n_inos);
	for (unsigned i = 0; i < n_inos; i++)
		buf_put_u64(b, w->pending_ino[i]);
	for (unsigned i = 0; attrs && i < n_inos; i++) {
		const struct vfs_attr *a = &w->pending_attr[i];
		buf_put_u8(b, a->ino != 0);
		if (a->ino != 0)
			vfs_attr_put(b, a);
	}
}

/* Turns the pending changes into the next notice, queued for the end of
 * the loop turn, and remembers which applied index it covers. */
static void close_notice(struct node *n)
{
	struct node_watch *w = n->watch;
	struct buf b, b_attrs;
	buf_init(&b);
	buf_init(&b_attrs);
	uint8_t flags = (w->pending_names ? VFS_NOTICE_NAMES : 0) |
			(w->pending_all ? VFS_NOTICE_ALL : 0);
	encode_notice(w, flags, false, &b);
	if (w->pending_attrs && !w->pending_all && w->n_pending > 0)
		encode_notice(w, flags, true, &b_attrs);
	w->seq++;
	clear_pending(w);
	/* The watchers hear of every seq from this notice on. */
	w->unsynced = false;
	uint64_t now = mono_ms();
	for (struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked + 1 == w->seq)
			x->sent_at = now; /* its oldest unacknowledged notice */
	bool overflow = !coherence_notice_sent(n->coherence, w->seq);
	if (b.err != 0 || b_attrs.err != 0 || overflow || !queue_push(w, w->seq, &b, &b_attrs)) {
		log_error("node %s: %s: every mount watching is dropped", n->node_id,
			  overflow ? "mounts do not acknowledge cache notices" :
				     "out of memory for a cache notice");
		w->queue_failed = true;
		buf_free(&b);
		buf_free(&b_attrs);
	}
}

static void send_queued(struct node *n)
{
	struct node_watch *w = n->watch;
	for (unsigned i = 0; i < w->n_queued && !w->queue_failed; i++) {
		const struct queued *q = &w->queue[i];
		struct watcher *x = w->watchers;
		while (x != NULL) {
			struct watcher *next = x->next;
			/* A watcher that began after the notice closed starts
			 * from a later seq (hook_start): it holds nothing older. */
			const struct buf *b = x->attrs && q->b_attrs.len > 0 ? &q->b_attrs : &q->b;
			if (x->acked < q->seq)
				api_notice(x->conn, q->seq, b->data, b->len);
			x = next; /* a drop unlinks x through the gone hook */
		}
	}
	if (w->queue_failed) {
		struct watcher *x = w->watchers;
		while (x != NULL) {
			struct watcher *next = x->next;
			api_watch_drop(x->conn, "cannot send cache notices");
			x = next;
		}
	}
	free_queue(w);
}

/* No kernel holds an entry that has not expired: nothing to drop, nothing
 * to wait for; the visible index follows the applied index. Notices queued
 * are not needed either. */
static void skip_notices(struct node *n)
{
	struct node_watch *w = n->watch;
	w->seq++;
	clear_pending(w);
	free_queue(w);
	coherence_notices_skipped(n->coherence);
	for (struct watcher *x = w->watchers; x != NULL; x = x->next)
		x->acked = w->seq;
	w->unsynced = w->watchers != NULL;
}

/* Ends the pending notice: queued if a mount may hold what it changes. */
static void close_or_skip(struct node *n)
{
	if (n->watch->watchers == NULL || !coherence_caches_live(n->coherence))
		skip_notices(n);
	else
		close_notice(n);
}

/* Before the first grant after skipped notices: an empty notice tells the
 * watchers the seq they are at, or they would wait for the skipped ones
 * before caching anything. */
static void sync_watchers(struct node_watch *w)
{
	static const uint8_t empty[5] = { 0 }; /* flags 0, no inodes */
	w->unsynced = false;
	struct watcher *x = w->watchers;
	while (x != NULL) {
		struct watcher *next = x->next;
		api_notice(x->conn, w->seq, empty, sizeof(empty));
		x = next; /* a drop unlinks x through the gone hook */
	}
}

static void on_reported(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct node *n = arg;
	(void)resp;
	(void)len;
	coherence_report_done(n->coherence, status);
}

void node_watch_serve_visible(struct node *n, struct transport_rpc_req *rpc)
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	uint64_t term = cursor_u64(&c), index = cursor_u64(&c);
	if (cursor_done(&c) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	raft_id peer = rpc->peer_id;
	transport_rpc_reply(rpc, 0, NULL, 0);
	coherence_peer_visible(n->coherence, peer, term, index);
}

static bool notice_due(const struct node_watch *w)
{
	uint64_t delay = notice_delay_ms();
	return delay == 0 || mono_ms() >= w->pending_since + delay;
}

static void on_flush(uv_check_t *h)
{
	struct node *n = h->data;
	struct node_watch *w = n->watch;
	if (w->pending && notice_due(w))
		close_or_skip(n);
	else if (w->pending)
		arm_timer(n); /* for notice_due */
	if (w->n_queued > 0 || w->queue_failed) {
		send_queued(n);
		arm_timer(n);
	}
	coherence_turn_ended(n->coherence);
}

/* ---- Grants ---- */

/* Whether process PID watches this node now. Its answers may carry grants:
 * a mount whose watch was dropped may not have seen it go yet, and would
 * hold what no notice will ever drop (what it was granted before is
 * covered by the freeze). */
static bool watching(const struct node_watch *w, int pid)
{
	for (const struct watcher *x = w->watchers; x != NULL && pid >= 0; x = x->next)
		if (x->pid == pid)
			return true;
	return false;
}

uint64_t node_watch_grant(struct node *n, const struct api_request *req, uint64_t round_start_ns)
{
	if (!watching(n->watch, req->peer_pid))
		return 0;
	uint64_t until = coherence_grant(n->coherence, round_start_ns);
	if (until != 0 && n->watch->unsynced)
		sync_watchers(n->watch);
	return until;
}

/* ---- API hooks ---- */

static uint64_t hook_state_index(void *ctx)
{
	return node_watch_state_seq(ctx);
}

static uint64_t hook_start(void *ctx, struct api_conn *conn)
{
	struct node *n = ctx;
	struct watcher *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		api_watch_drop(conn, "out of memory for a watcher");
		return 0;
	}
	x->conn = conn;
	x->pid = api_conn_pid(conn);
	x->attrs = api_conn_version(conn) >= 9;
	/* Changes already applied but not yet noticed go out in the next
	 * notice, which this watcher will get. */
	x->acked = n->watch->seq;
	x->next = n->watch->watchers;
	n->watch->watchers = x;
	log_debug("node %s: a mount watches for cache notices from seq %llu", n->node_id,
		  (unsigned long long)x->acked);
	return x->acked;
}

static struct watcher **find_watcher(struct node *n, const struct api_conn *conn)
{
	struct watcher **pp = &n->watch->watchers;
	while (*pp != NULL && (*pp)->conn != conn)
		pp = &(*pp)->next;
	return pp;
}

static void hook_ack(void *ctx, struct api_conn *conn, uint64_t seq)
{
	struct node *n = ctx;
	struct watcher *x = *find_watcher(n, conn);
	if (x == NULL)
		return;
	if (seq > n->watch->seq) {
		api_watch_drop(conn, "acknowledged a cache notice it was never sent");
		return;
	}
	/* Skipped notices count as acknowledged (skip_notices): the ack of a
	 * notice sent before them may still come, and tells nothing new. */
	if (seq <= x->acked)
		return;
	x->acked = seq;
	x->sent_at = mono_ms(); /* the clock restarts for the next one */
	coherence_acked(n->coherence, min_acked(n->watch));
	coherence_poll(n->coherence);
}

static void hook_gone(void *ctx, struct api_conn *conn)
{
	struct node *n = ctx;
	struct watcher **pp = find_watcher(n, conn);
	struct watcher *x = *pp;
	if (x == NULL)
		return;
	/* Its kernel cache lives on until its grants expire, and it may not
	 * have dropped what recent changes made stale. */
	coherence_watcher_gone(n->coherence);
	*pp = x->next;
	free(x);
	coherence_acked(n->coherence, min_acked(n->watch));
	coherence_poll(n->coherence);
	arm_timer(n);
}

static const struct api_watch_hooks watch_hooks = {
	.state_index = hook_state_index,
	.start = hook_start,
	.ack = hook_ack,
	.gone = hook_gone,
};

const struct api_watch_hooks *node_watch_hooks_for_api(void)
{
	return &watch_hooks;
}

/* ---- What the coherence rules need of the node ---- */

static uint64_t env_now_ns(void *ctx)
{
	(void)ctx;
	return monoclock_ns();
}

static uint64_t env_applied_index(void *ctx)
{
	return node_query_applied_index(ctx);
}

static uint64_t env_term(void *ctx)
{
	const struct node *n = ctx;
	return n->session != NULL ? n->session->raft.current_term : 0;
}

static bool env_is_leader(void *ctx)
{
	return node_query_is_leader(ctx);
}

static bool env_serving(void *ctx)
{
	const struct node *n = ctx;
	return n->phase == NODE_ACTIVE && n->session != NULL;
}

static bool env_may_grant(void *ctx)
{
	const struct node *n = ctx;
	/* Without storage its read rounds hold no grants (node_storage.c). */
	if (!env_serving(ctx) || node_storage_mute(n))
		return false;
	return !node_query_is_sole_voter(n) || node_query_committed_in_term(n);
}

static void env_push_commit(void *ctx, uint64_t peer)
{
	node_cluster_push_commit(ctx, peer);
}

static int env_report_visible(void *ctx, uint64_t term, uint64_t index)
{
	struct node *n = ctx;
	const char *leader = node_query_leader_address(n);
	if (!env_serving(n) || leader == NULL)
		return -EAGAIN;
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, term);
	buf_put_u64(&b, index);
	int rv = b.err != 0 ? b.err :
			      transport_rpc(n->session->transport, leader, NODE_RPC_VISIBLE, b.data,
					    b.len, n->cfg.request_timeout_ms, on_reported, n);
	buf_free(&b);
	return rv;
}

static void env_rearm(void *ctx)
{
	arm_timer(ctx);
}

/* ---- Life cycle ---- */

int node_watch_init(struct node *n)
{
	const struct coherence_env env = {
		.ctx = n,
		.now_ns = env_now_ns,
		.applied_index = env_applied_index,
		.term = env_term,
		.is_leader = env_is_leader,
		.serving = env_serving,
		.may_grant = env_may_grant,
		.push_commit = env_push_commit,
		.report_visible = env_report_visible,
		.rearm = env_rearm,
	};
	unsigned quarter = n->cfg.election_timeout_ms / 4;
	n->watch = calloc(1, sizeof(*n->watch));
	n->coherence = coherence_new(&env, quarter < COHERENCE_CACHE_MS ? quarter :
									COHERENCE_CACHE_MS);
	if (n->watch == NULL || n->coherence == NULL) {
		free(n->watch);
		coherence_free(n->coherence);
		n->watch = NULL;
		n->coherence = NULL;
		return -ENOMEM;
	}
	uv_check_init(n->loop, &n->watch->flush);
	n->watch->flush.data = n;
	uv_check_start(&n->watch->flush, on_flush);
	uv_timer_init(n->loop, &n->watch->timer);
	n->watch->timer.data = n;
	return 0;
}

int node_watch_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->watch->flush, node_handle_closed);
	uv_close((uv_handle_t *)&n->watch->timer, node_handle_closed);
	return 2;
}

/* After both handles closed (node_free). */
void node_watch_free(struct node *n)
{
	struct watcher *x = n->watch != NULL ? n->watch->watchers : NULL;
	while (x != NULL) {
		struct watcher *next = x->next;
		free(x);
		x = next;
	}
	if (n->watch != NULL) {
		free_queue(n->watch);
		free(n->watch->queue);
	}
	free(n->watch);
	n->watch = NULL;
	coherence_free(n->coherence);
	n->coherence = NULL;
}
