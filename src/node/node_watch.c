/* Kernel cache coherence: the node side of VFS_OP_WATCH.
 *
 * A mount that caches attributes and names in the kernel watches the node:
 * after each loop turn in which the state machine changed something, every
 * watcher gets a notice (seq, the changed inodes, whether names went away)
 * and acknowledges it once the kernel dropped those entries. Seqs number
 * the notices of this node's lifetime, across seal and unseal, so a mount
 * never sees them go backwards.
 *
 * Two promises make cached answers linearizable:
 *  - a write is answered only once every watcher acknowledged the notice
 *    that carries its changes (node_wait_visible), so no mount can answer
 *    from a cache the write made stale after the writer was told "done";
 *  - every response carries the seq of the state it was read from
 *    (node_watch_state_seq): the mount holds it until it has acted on the
 *    notices up to there, so nobody is told something newer than what a
 *    cache may still say.
 * A cached entry lives at most NODE_CACHE_MS (the grant in the response).
 * When a watcher goes away without acknowledging, and when a session starts
 * (caches granted before a seal may still be alive), writes wait until
 * everything granted before has expired ("frozen").
 *
 * Only a sole voter grants caching: its own writes are the only ones. With
 * more nodes a write is acknowledged by the leader, which does not wait for
 * the other nodes' mounts, so they get no grants (0 in every response). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "node/internal.h"

/* How long a mount may trust a cached entry, and how long a watcher may
 * take to acknowledge a notice before it is dropped. */
#define NODE_CACHE_MS 100u
#define NODE_WATCH_ACK_TIMEOUT_MS 2000u
/* How long a node stops granting once another asked to join. */
#define NODE_WITHHOLD_MS 5000u

struct watcher {
	struct watcher *next;
	struct api_conn *conn;
	uint64_t acked;   /* seq of the last notice it acted on */
	uint64_t sent_at; /* mono_ms of the oldest notice it has not acknowledged */
};

struct visible_waiter {
	struct visible_waiter *next;
	uint64_t seq;
	void (*cb)(void *arg, int status);
	void *arg;
};

struct node_watch {
	struct watcher *watchers;
	struct visible_waiter *waiters;
	uint64_t seq;              /* of the last notice sent */
	bool pending;              /* changes not yet in a notice */
	bool pending_names;
	bool pending_all;
	unsigned n_pending;
	uint64_t pending_ino[VFS_NOTICE_MAX_INOS];
	uint64_t frozen_until;     /* mono_ms: writes wait until then */
	uint64_t granted_until;    /* mono_ms: the last cache grant expires */
	uint64_t withhold_until;   /* mono_ms: no grants until then */
	uv_check_t flush;          /* sends notices after each loop turn */
	uv_timer_t timer;          /* ends freezes, drops silent watchers */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Grants are deadlines on this clock, not on uv_now: the loop's cached
 * time lags, and a grant must never look expired here while a kernel can
 * still use it. */
static uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}

static uint64_t cache_ms(const struct node *n)
{
	unsigned quarter = n->cfg.election_timeout_ms / 4;
	return quarter < NODE_CACHE_MS ? quarter : NODE_CACHE_MS;
}

static void freeze(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t until = mono_ms() + cache_ms(n) + 1;
	if (until > w->frozen_until)
		w->frozen_until = until;
}

/* ---- Waiters ---- */

static bool seq_visible(const struct node *n, uint64_t seq)
{
	const struct node_watch *w = n->watch;
	if (mono_ms() < w->frozen_until)
		return false;
	for (const struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked < seq)
			return false;
	return true;
}

static void run_waiters(struct node *n)
{
	struct node_watch *w = n->watch;
	struct visible_waiter **pp = &w->waiters;
	struct visible_waiter *ready = NULL, **tail = &ready;
	while (*pp != NULL) {
		struct visible_waiter *v = *pp;
		if (seq_visible(n, v->seq)) {
			*pp = v->next;
			v->next = NULL;
			*tail = v;
			tail = &v->next;
		} else {
			pp = &v->next;
		}
	}
	while (ready != NULL) {
		struct visible_waiter *v = ready;
		ready = v->next;
		v->cb(v->arg, 0);
		free(v);
	}
}

static void on_timer(uv_timer_t *t);

/* Wakes up when the freeze ends or the oldest unacknowledged notice is
 * due, whichever comes first. */
static void arm_timer(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms(), due = UINT64_MAX;
	if (w->frozen_until > now && w->waiters != NULL)
		due = w->frozen_until;
	for (struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked < w->seq && x->sent_at + NODE_WATCH_ACK_TIMEOUT_MS < due)
			due = x->sent_at + NODE_WATCH_ACK_TIMEOUT_MS;
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
	run_waiters(n);
	arm_timer(n);
}

void node_wait_visible(struct node *n, uint64_t seq, void (*cb)(void *arg, int status),
		       void *arg)
{
	if (seq_visible(n, seq)) {
		cb(arg, 0);
		return;
	}
	struct visible_waiter *v = malloc(sizeof(*v));
	if (v == NULL) {
		cb(arg, -ENOMEM);
		return;
	}
	v->seq = seq;
	v->cb = cb;
	v->arg = arg;
	v->next = n->watch->waiters;
	n->watch->waiters = v;
	arm_timer(n);
}

void node_watch_fail_waiters(struct node *n, int status)
{
	struct visible_waiter *v = n->watch->waiters;
	n->watch->waiters = NULL;
	while (v != NULL) {
		struct visible_waiter *next = v->next;
		v->cb(v->arg, status);
		free(v);
		v = next;
	}
}

/* ---- Changes and notices ---- */

void node_watch_changed(void *arg, const struct store_changes *ch)
{
	struct node *n = arg;
	struct node_watch *w = n->watch;
	w->pending = true;
	if (ch == NULL || ch->overflow) {
		w->pending_all = true;
		return;
	}
	w->pending_names |= ch->names;
	for (unsigned i = 0; i < ch->n; i++) {
		if (w->n_pending == VFS_NOTICE_MAX_INOS)
			w->pending_all = true;
		else
			w->pending_ino[w->n_pending++] = ch->ino[i];
	}
}

uint64_t node_watch_state_seq(const struct node *n)
{
	return n->watch->seq + (n->watch->pending ? 1 : 0);
}

static void send_notices(struct node *n)
{
	struct node_watch *w = n->watch;
	struct buf b;
	buf_init(&b);
	uint8_t flags = (w->pending_names ? VFS_NOTICE_NAMES : 0) |
			(w->pending_all ? VFS_NOTICE_ALL : 0);
	buf_put_u8(&b, flags);
	unsigned n_inos = w->pending_all ? 0 : w->n_pending;
	buf_put_u32(&b, n_inos);
	for (unsigned i = 0; i < n_inos; i++)
		buf_put_u64(&b, w->pending_ino[i]);
	w->seq++;
	w->pending = w->pending_names = w->pending_all = false;
	w->n_pending = 0;
	if (b.err != 0) {
		/* No notice can go out: make every watcher reconnect. */
		log_error("node %s: out of memory for a cache notice", n->node_id);
		b.len = 0;
	}
	uint64_t now = mono_ms();
	struct watcher *x = w->watchers;
	while (x != NULL) {
		struct watcher *next = x->next;
		if (x->acked + 1 == w->seq)
			x->sent_at = now; /* its oldest unacknowledged notice */
		if (b.len == 0)
			api_watch_drop(x->conn, "out of memory");
		else
			api_notice(x->conn, w->seq, b.data, b.len);
		x = next;
	}
	buf_free(&b);
}

static void on_flush(uv_check_t *h)
{
	struct node *n = h->data;
	struct node_watch *w = n->watch;
	if (w->pending) {
		if (w->watchers == NULL || !node_caches_live(n)) {
			/* No kernel holds an entry that has not expired: nothing
			 * to drop, nothing to wait for. */
			w->seq++;
			w->pending = w->pending_names = w->pending_all = false;
			w->n_pending = 0;
			for (struct watcher *x = w->watchers; x != NULL; x = x->next)
				x->acked = w->seq;
		} else {
			send_notices(n);
			arm_timer(n);
		}
	}
	if (w->waiters != NULL)
		run_waiters(n);
}

/* ---- Grants ---- */

bool node_may_grant_cache(const struct node *n)
{
	const struct raft *r;
	if (n->phase != NODE_ACTIVE || n->session == NULL || !node_committed_in_term(n))
		return false;
	r = &n->session->raft;
	return r->state == RAFT_LEADER && r->configuration.n == 1 &&
	       mono_ms() >= n->watch->withhold_until;
}

bool node_caches_withhold(struct node *n)
{
	n->watch->withhold_until = mono_ms() + NODE_WITHHOLD_MS;
	return node_caches_expire_in(n) > 0;
}

uint64_t node_cache_grant(struct node *n)
{
	if (!node_may_grant_cache(n))
		return 0;
	uint64_t ms = cache_ms(n), now = mono_ns();
	n->watch->granted_until = now / 1000000u + ms + 1;
	return now + ms * 1000000u;
}

uint64_t node_caches_expire_in(const struct node *n)
{
	uint64_t now = mono_ms();
	return n->watch->granted_until > now ? n->watch->granted_until - now : 0;
}

bool node_caches_live(const struct node *n)
{
	uint64_t now = mono_ms();
	return n->watch->granted_until > now || n->watch->frozen_until > now;
}

void node_watch_session_start(struct node *n)
{
	/* Caches granted before a seal may outlive it by up to NODE_CACHE_MS:
	 * writes of the new session wait for them to expire. */
	if (n->watch->granted_until > mono_ms()) {
		freeze(n);
		arm_timer(n);
	}
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
	if (seq > n->watch->seq || seq < x->acked) {
		api_watch_drop(conn, "acknowledged a cache notice it was never sent");
		return;
	}
	x->acked = seq;
	x->sent_at = mono_ms(); /* the clock restarts for the next one */
	run_waiters(n);
}

static void hook_gone(void *ctx, struct api_conn *conn)
{
	struct node *n = ctx;
	struct watcher **pp = find_watcher(n, conn);
	struct watcher *x = *pp;
	if (x == NULL)
		return;
	*pp = x->next;
	free(x);
	/* Its kernel cache lives on until its grants expire, and it may not
	 * have dropped what recent writes changed. */
	if (n->watch->granted_until > mono_ms())
		freeze(n);
	run_waiters(n);
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

/* ---- Life cycle ---- */

int node_watch_init(struct node *n)
{
	n->watch = calloc(1, sizeof(*n->watch));
	if (n->watch == NULL)
		return -ENOMEM;
	uv_check_init(n->loop, &n->watch->flush);
	n->watch->flush.data = n;
	uv_check_start(&n->watch->flush, on_flush);
	uv_timer_init(n->loop, &n->watch->timer);
	n->watch->timer.data = n;
	return 0;
}

int node_watch_close(struct node *n)
{
	node_watch_fail_waiters(n, -ESHUTDOWN);
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
	free(n->watch);
	n->watch = NULL;
}
