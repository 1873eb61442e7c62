/* Kernel cache coherence: the node side of VFS_OP_WATCH.
 *
 * A mount that caches attributes and names in the kernel watches its node:
 * after each loop turn in which the state machine changed something, every
 * watcher gets a notice (seq, the changed inodes, whether names went away)
 * and acknowledges it once the kernel dropped those entries. Seqs number
 * the notices of this node's lifetime, across seal and unseal, so a mount
 * never sees them go backwards.
 *
 * Grants. A linearizable answer about attributes, names or a value carries
 * a grant: the kernel (attributes, names) and the mount (attributes,
 * values) may keep it until round start + NODE_CACHE_MS, where the round
 * is the read round that made the answer linearizable (for a sole voter,
 * which needs no round, the answer itself; under a lease, the round that
 * gave the lease, node_ops.c).
 *
 * Visibility. A node's visible index is the Raft index up to which it has
 * applied the log AND every watcher has acknowledged the notices of those
 * entries: no mount of that node can show anything older any more.
 *
 * The write rule (leader). A write at index I, applied by the leader at time
 * T, is answered (to a local client, or to the follower that forwarded it)
 * only once
 *   (a) every node that may hold a grant has a visible index >= I, or
 *   (b) T + NODE_CACHE_MS has passed.
 * A node may hold a grant if the leader received its read-index request less
 * than NODE_CACHE_MS ago (the leader itself: if it granted in that time).
 * (b) holds whatever happened before: an answer that missed the write came
 * from a read index taken before the write committed, so its grant (counted
 * from an earlier round start) expires before T + NODE_CACHE_MS. A new
 * leader does not know the grants its predecessor's rounds gave: in its
 * first NODE_CACHE_MS only (b) counts. So a dead node costs a write at most
 * NODE_CACHE_MS, and a failover NODE_CACHE_MS more.
 * A follower that forwarded a write also waits for its own visible index
 * before answering (its own mounts).
 *
 * The safe index (leader). An entry is safe once the write rule holds for
 * it; both parts are monotone in the index. Nothing shows an entry before
 * it is safe (node_safe.c): otherwise a node that has applied a write could
 * show it while another node's mounts still show what it replaced, and a
 * read there after a read here would go back in time.
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
 * starts another.
 *
 * When a watcher goes away while grants are alive, and when a session
 * starts (grants given before a seal may still be alive), the node's visible
 * index stops moving until they have expired ("frozen"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "node/internal.h"

/* How long a mount may trust a cached entry, and how long a watcher may
 * take to acknowledge a notice before it is dropped. */
#define NODE_CACHE_MS 100u
#define NODE_WATCH_ACK_TIMEOUT_MS 2000u
/* Clock skew and delivery slack when the leader decides who may hold a
 * grant. */
#define NODE_GRANT_SLACK_MS 10u
/* A lease ends this much before the grants of its round (clock rates). */
#define NODE_LEASE_MARGIN_MS 5u
/* Loop turns whose applied index is remembered, for the safe index. */
#define NODE_APPLY_SAMPLES 512u
/* Notices sent but not yet acknowledged by every watcher (a watcher that
 * lets more pile up is dropped). */
#define NODE_MAX_MARKS 4096u

struct watcher {
	struct watcher *next;
	struct api_conn *conn;
	int pid;          /* of its mount: only that process gets grants */
	uint64_t acked;   /* seq of the last notice it acted on */
	uint64_t sent_at; /* mono_ms of the oldest notice it has not acknowledged */
};

/* A notice closed but not sent yet. */
struct queued {
	uint64_t seq;
	struct buf b;
};

/* A notice sent: its seq and the applied index it covers. */
struct mark {
	uint64_t seq;
	uint64_t index;
};

/* What the leader knows of another node. */
struct peer {
	raft_id id;
	uint64_t round_ms; /* its last read-index request came then */
	uint64_t visible;  /* its visible index, as last reported */
};

/* The applied index at the end of a loop turn, and when. */
struct sample {
	uint64_t index;
	uint64_t ms;
};

enum waiter_kind {
	WAIT_OWN_MOUNTS, /* our own mounts show the index */
	WAIT_WRITTEN,    /* the write rule (leader) */
	WAIT_SAFE,       /* the leader's safe index reaches it */
};

struct waiter {
	struct waiter *next;
	uint64_t index;
	uint64_t applied_ms; /* WAIT_WRITTEN: when the leader applied it */
	enum waiter_kind kind;
	void (*cb)(void *arg, int status);
	void *arg;
	int status; /* when done */
};

struct node_watch {
	struct watcher *watchers;
	struct waiter *waiters;
	uint64_t seq;            /* of the last notice sent */
	bool pending;            /* changes not yet in a notice */
	bool pending_names;
	bool pending_all;
	unsigned n_pending;
	uint64_t pending_floor;  /* applied index before the first pending change */
	uint64_t pending_since;  /* mono_ms of the first pending change */
	uint64_t pending_ino[VFS_NOTICE_MAX_INOS];
	bool stamped;            /* a response named the pending notice's seq */
	/* Closed notices waiting for the end of the loop turn (sending can
	 * drop a watcher, which runs waiters: not from inside an apply). */
	struct queued *queue;
	unsigned n_queued, cap_queued;
	bool queue_failed;       /* out of memory or marks: drop every watcher */
	struct mark marks[NODE_MAX_MARKS]; /* ring of unacknowledged notices */
	unsigned mark_head, n_marks;
	uint64_t visible_base;   /* index of the last notice every watcher acked */
	uint64_t frozen_until;   /* mono_ms: the visible index does not move */
	uint64_t frozen_visible; /* ... from this value */
	uint64_t granted_until;  /* mono_ms: the last grant expires */
	/* When entries were applied here (rule (b)): a ring, oldest first,
	 * and the newest sample that left it. */
	struct sample samples[NODE_APPLY_SAMPLES];
	unsigned sample_head, n_samples;
	struct sample sample_base;
	bool unsynced;           /* watchers were not told of skipped notices */
	/* Leader side. */
	uint64_t leader_term;    /* the term in which we lead, 0 if we do not */
	uint64_t leader_since;   /* mono_ms */
	struct peer *peers;
	unsigned n_peers;
	/* Follower side. */
	uint64_t round_ms;       /* our last read round started then */
	uint64_t reported;       /* visible index last told to the leader */
	uint64_t reported_term;
	bool report_inflight;
	uv_check_t flush;        /* sends notices and reports after each loop turn */
	uv_timer_t timer;        /* ends freezes and rule (b) waits, drops silent watchers */
};

/* Grants are deadlines on this clock, not on uv_now: the loop's cached
 * time lags, and a grant must never look expired here while a kernel can
 * still use it. */
static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ms(void)
{
	return mono_ns() / 1000000u;
}

static uint64_t cache_ms(const struct node *n)
{
	unsigned quarter = n->cfg.election_timeout_ms / 4;
	return quarter < NODE_CACHE_MS ? quarter : NODE_CACHE_MS;
}

/* True while a mount of this node may hold a grant that has not expired. */
static bool node_caches_live(const struct node *n)
{
	uint64_t now = mono_ms();
	return n->watch->granted_until > now || n->watch->frozen_until > now;
}

/* ---- The visible index ---- */

static uint64_t local_visible(const struct node *n)
{
	const struct node_watch *w = n->watch;
	uint64_t v;
	if (w->n_marks > 0)
		v = w->visible_base;
	else if (w->pending)
		v = w->pending_floor;
	else
		v = node_query_applied_index(n);
	if (mono_ms() < w->frozen_until && v > w->frozen_visible)
		v = w->frozen_visible;
	return v;
}

static void freeze(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t until = mono_ms() + cache_ms(n) + 1;
	if (w->frozen_until <= mono_ms())
		w->frozen_visible = local_visible(n);
	if (until > w->frozen_until)
		w->frozen_until = until;
}

static uint64_t min_acked(const struct node_watch *w)
{
	uint64_t m = w->seq;
	for (const struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked < m)
			m = x->acked;
	return m;
}

/* Forgets the notices every watcher acknowledged. */
static void pop_marks(struct node_watch *w)
{
	uint64_t acked = min_acked(w);
	while (w->n_marks > 0 && w->marks[w->mark_head].seq <= acked) {
		w->visible_base = w->marks[w->mark_head].index;
		w->mark_head = (w->mark_head + 1) % NODE_MAX_MARKS;
		w->n_marks--;
	}
}

/* ---- The leader's view ---- */

/* Resets the leader state when we lead in a new term (or stop leading). */
static void sync_leadership(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t term = node_query_is_leader(n) ? n->session->raft.current_term : 0;
	if (term == w->leader_term)
		return;
	w->leader_term = term;
	w->leader_since = mono_ms();
	w->n_peers = 0;
}

static struct peer *peer_get(struct node *n, raft_id id, bool add)
{
	struct node_watch *w = n->watch;
	for (unsigned i = 0; i < w->n_peers; i++)
		if (w->peers[i].id == id)
			return &w->peers[i];
	if (!add)
		return NULL;
	struct peer *p = realloc(w->peers, (w->n_peers + 1) * sizeof(*p));
	if (p == NULL)
		return NULL;
	w->peers = p;
	p = &w->peers[w->n_peers++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	return p;
}

void node_watch_round_asked(struct node *n, raft_id id)
{
	sync_leadership(n);
	struct peer *p = peer_get(n, id, true);
	if (p != NULL)
		p->round_ms = mono_ms();
	else
		n->watch->leader_since = mono_ms(); /* out of memory: rule (b) only */
}

/* Rule (a): every node that may hold a grant shows INDEX. */
static bool all_show(struct node *n, uint64_t index)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms();
	if (now < w->leader_since + cache_ms(n) + NODE_GRANT_SLACK_MS)
		return false; /* grants of the previous leader's rounds */
	if (node_caches_live(n) && local_visible(n) < index)
		return false;
	for (unsigned i = 0; i < w->n_peers; i++) {
		const struct peer *p = &w->peers[i];
		if (p->round_ms + cache_ms(n) + NODE_GRANT_SLACK_MS > now && p->visible < index)
			return false;
	}
	return true;
}

/* ---- The safe index ----
 *
 * An entry is safe once no mount anywhere can show what it replaced: the
 * write rule holds for it, (a) or (b). Both are monotone in the index, so
 * the safe index is the highest index for which one holds. Every answer
 * that shows the state machine waits until the state it shows is safe
 * (node_ops.c): a node that has applied a write must not show it while
 * another node's mounts may still show what it replaced, or a read there
 * would go back in time. */

static struct sample *sample_at(struct node_watch *w, unsigned i)
{
	return &w->samples[(w->sample_head + i) % NODE_APPLY_SAMPLES];
}

/* Remembers when the applied index moved (at the end of a loop turn: no
 * earlier than the entries were applied, as rule (b) wants). */
static void sample_applied(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t index = node_query_applied_index(n);
	uint64_t newest = w->n_samples > 0 ? sample_at(w, w->n_samples - 1)->index :
					     w->sample_base.index;
	if (index <= newest)
		return;
	if (w->n_samples == NODE_APPLY_SAMPLES) {
		w->sample_base = *sample_at(w, 0);
		w->sample_head = (w->sample_head + 1) % NODE_APPLY_SAMPLES;
		w->n_samples--;
	}
	*sample_at(w, w->n_samples++) = (struct sample){ index, mono_ms() };
}

/* When this node had applied INDEX (UINT64_MAX: not yet). */
static uint64_t applied_at(struct node_watch *w, uint64_t index)
{
	if (w->sample_base.index >= index && w->sample_base.ms != 0)
		return w->sample_base.ms;
	for (unsigned i = 0; i < w->n_samples; i++)
		if (sample_at(w, i)->index >= index)
			return sample_at(w, i)->ms;
	return UINT64_MAX;
}

/* Rule (b): the highest index applied NODE_CACHE_MS ago. */
static uint64_t safe_by_time(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms();
	for (unsigned i = w->n_samples; i-- > 0;)
		if (sample_at(w, i)->ms + cache_ms(n) + 1 <= now)
			return sample_at(w, i)->index;
	if (w->sample_base.ms != 0 && w->sample_base.ms + cache_ms(n) + 1 <= now)
		return w->sample_base.index;
	return 0;
}

/* Rule (a): the highest index every node that may hold a grant shows. */
static uint64_t safe_by_visibility(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms();
	if (now < w->leader_since + cache_ms(n) + NODE_GRANT_SLACK_MS)
		return 0; /* grants of the previous leader's rounds */
	uint64_t m = node_query_applied_index(n);
	if (node_caches_live(n) && local_visible(n) < m)
		m = local_visible(n);
	for (unsigned i = 0; i < w->n_peers; i++) {
		const struct peer *p = &w->peers[i];
		if (p->round_ms + cache_ms(n) + NODE_GRANT_SLACK_MS > now && p->visible < m)
			m = p->visible;
	}
	return m;
}

uint64_t node_safe_index(struct node *n)
{
	sync_leadership(n);
	if (n->watch->leader_term == 0)
		return 0;
	uint64_t a = safe_by_visibility(n), b = safe_by_time(n);
	return a > b ? a : b;
}

/* 1 when V is done, 0 while it waits, or the error to fail it with. */
static int waiter_state(struct node *n, const struct waiter *v)
{
	switch (v->kind) {
	case WAIT_OWN_MOUNTS:
		return !node_caches_live(n) || local_visible(n) >= v->index;
	case WAIT_WRITTEN:
		sync_leadership(n);
		return mono_ms() >= v->applied_ms + cache_ms(n) + 1 || all_show(n, v->index);
	case WAIT_SAFE:
		if (!node_query_is_leader(n) || n->phase != NODE_ACTIVE)
			return -EAGAIN; /* ask the next leader */
		return node_safe_index(n) >= v->index;
	}
	return -EINVAL;
}

/* Lagging nodes that may hold grants need our commit index now, not at the
 * next heartbeat, to apply the entry and report it. */
static void push_to_laggards(struct node *n, uint64_t index)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms();
	for (unsigned i = 0; i < w->n_peers; i++) {
		const struct peer *p = &w->peers[i];
		if (p->round_ms + cache_ms(n) + NODE_GRANT_SLACK_MS > now && p->visible < index)
			node_cluster_push_commit(n, p->id);
	}
}

/* ---- Waiters ---- */

static void on_timer(uv_timer_t *t);

/* A pending notice closes at the end of the loop turn; with the failpoint
 * notice_delay_ms, only after that many ms of turns, as if they were one
 * long turn (tests/faults/test_stamp.sh). 0 in release builds. */
static uint64_t notice_delay_ms(void)
{
	return (uint64_t)failpoint_value("notice_delay_ms");
}

/* Wakes up when a freeze or a rule (b) wait ends, or a watcher is overdue. */
static void arm_timer(struct node *n)
{
	struct node_watch *w = n->watch;
	uint64_t now = mono_ms(), due = UINT64_MAX;
	if (w->frozen_until > now && w->waiters != NULL)
		due = w->frozen_until;
	if (w->granted_until > now && w->granted_until < due && w->waiters != NULL)
		due = w->granted_until; /* waiters for our own mounts may be done then */
	for (struct waiter *v = w->waiters; v != NULL; v = v->next) {
		uint64_t t = v->kind == WAIT_WRITTEN ? v->applied_ms :
			     v->kind == WAIT_SAFE    ? applied_at(w, v->index) :
						       UINT64_MAX;
		if (t != UINT64_MAX && t + cache_ms(n) + 1 < due)
			due = t + cache_ms(n) + 1;
	}
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

static void run_waiters(struct node *n)
{
	struct node_watch *w = n->watch;
	struct waiter **pp = &w->waiters;
	struct waiter *ready = NULL, **tail = &ready;
	while (*pp != NULL) {
		struct waiter *v = *pp;
		int state = waiter_state(n, v);
		if (state != 0) {
			v->status = state < 0 ? state : 0;
			*pp = v->next;
			v->next = NULL;
			*tail = v;
			tail = &v->next;
		} else {
			pp = &v->next;
		}
	}
	while (ready != NULL) {
		struct waiter *v = ready;
		ready = v->next;
		v->cb(v->arg, v->status);
		free(v);
	}
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

static void add_waiter(struct node *n, struct waiter *proto)
{
	int state = waiter_state(n, proto);
	if (state != 0) {
		proto->cb(proto->arg, state < 0 ? state : 0);
		return;
	}
	struct waiter *v = malloc(sizeof(*v));
	if (v == NULL) {
		proto->cb(proto->arg, -ENOMEM);
		return;
	}
	*v = *proto;
	v->next = n->watch->waiters;
	n->watch->waiters = v;
	arm_timer(n);
}

void node_wait_visible(struct node *n, uint64_t index, void (*cb)(void *arg, int status),
		       void *arg)
{
	struct waiter v = { .index = index, .kind = WAIT_OWN_MOUNTS, .cb = cb, .arg = arg };
	add_waiter(n, &v);
}

void node_wait_safe(struct node *n, uint64_t index, void (*cb)(void *arg, int status),
		    void *arg)
{
	struct waiter v = { .index = index, .kind = WAIT_SAFE, .cb = cb, .arg = arg };
	add_waiter(n, &v);
	if (n->watch->waiters != NULL)
		push_to_laggards(n, index);
}

void node_wait_grants_gone(struct node *n, void (*cb)(void *arg, int status), void *arg)
{
	node_wait_visible(n, UINT64_MAX, cb, arg);
}

void node_wait_written(struct node *n, uint64_t index, void (*cb)(void *arg, int status),
		       void *arg)
{
	struct waiter v = {
		.index = index, .applied_ms = mono_ms(), .kind = WAIT_WRITTEN, .cb = cb, .arg = arg
	};
	add_waiter(n, &v);
	if (n->watch->waiters != NULL)
		push_to_laggards(n, index);
}

void node_watch_fail_waiters(struct node *n, int status)
{
	struct waiter *v = n->watch->waiters;
	n->watch->waiters = NULL;
	while (v != NULL) {
		struct waiter *next = v->next;
		v->cb(v->arg, status);
		free(v);
		v = next;
	}
}

/* ---- Changes and notices ---- */

static void close_or_skip(struct node *n);

void node_watch_changed(void *arg, const struct store_changes *ch)
{
	struct node *n = arg;
	struct node_watch *w = n->watch;
	if (w->pending && w->stamped)
		close_or_skip(n); /* the stamp rule: this change goes into the next */
	if (!w->pending) {
		/* The entry being applied comes after the applied index. */
		w->pending_floor = node_query_applied_index(n);
		w->pending_since = mono_ms();
		w->pending = true;
	}
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
	for (unsigned i = 0; i < w->n_queued; i++)
		buf_free(&w->queue[i].b);
	w->n_queued = 0;
	w->queue_failed = false;
}

static bool queue_push(struct node_watch *w, uint64_t seq, struct buf *b)
{
	if (w->n_queued == w->cap_queued) {
		unsigned cap = w->cap_queued ? 2 * w->cap_queued : 4;
		struct queued *q = realloc(w->queue, cap * sizeof(*q));
		if (q == NULL)
			return false;
		w->queue = q;
		w->cap_queued = cap;
	}
	w->queue[w->n_queued++] = (struct queued){ seq, *b };
	return true;
}

/* Turns the pending changes into the next notice, queued for the end of
 * the loop turn, and remembers which applied index it covers. */
static void close_notice(struct node *n)
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
	clear_pending(w);
	/* The watchers hear of every seq from this notice on. */
	w->unsynced = false;
	uint64_t now = mono_ms();
	for (struct watcher *x = w->watchers; x != NULL; x = x->next)
		if (x->acked + 1 == w->seq)
			x->sent_at = now; /* its oldest unacknowledged notice */
	bool overflow = w->n_marks == NODE_MAX_MARKS;
	if (!overflow) {
		struct mark *m = &w->marks[(w->mark_head + w->n_marks++) % NODE_MAX_MARKS];
		m->seq = w->seq;
		m->index = node_query_applied_index(n);
	}
	if (b.err != 0 || overflow || !queue_push(w, w->seq, &b)) {
		log_error("node %s: %s: every mount watching is dropped", n->node_id,
			  overflow ? "mounts do not acknowledge cache notices" :
				     "out of memory for a cache notice");
		w->queue_failed = true;
		buf_free(&b);
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
			if (x->acked < q->seq)
				api_notice(x->conn, q->seq, q->b.data, q->b.len);
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
static void skip_notices(struct node_watch *w)
{
	w->seq++;
	clear_pending(w);
	free_queue(w);
	w->n_marks = 0;
	for (struct watcher *x = w->watchers; x != NULL; x = x->next)
		x->acked = w->seq;
	w->unsynced = w->watchers != NULL;
}

/* Ends the pending notice: queued if a mount may hold what it changes. */
static void close_or_skip(struct node *n)
{
	if (n->watch->watchers == NULL || !node_caches_live(n))
		skip_notices(n->watch);
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
	n->watch->report_inflight = false;
	if (status != 0)
		n->watch->reported_term = 0; /* tell the next leader (or this one) again */
}

/* A follower that may hold grants tells the leader how far its mounts are
 * coherent, whenever that moves. */
static void report_visible(struct node *n)
{
	struct node_watch *w = n->watch;
	if (w->report_inflight || n->phase != NODE_ACTIVE || n->session == NULL ||
	    node_query_is_leader(n) ||
	    mono_ms() > w->round_ms + cache_ms(n) + 2 * NODE_GRANT_SLACK_MS)
		return; /* (a little longer than the leader counts us) */
	uint64_t term = n->session->raft.current_term, v = local_visible(n);
	const char *leader = node_query_leader_address(n);
	if (leader == NULL || (term == w->reported_term && v <= w->reported))
		return;
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, term);
	buf_put_u64(&b, v);
	if (b.err == 0 && transport_rpc(n->session->transport, leader, NODE_RPC_VISIBLE, b.data,
					b.len, n->cfg.request_timeout_ms, on_reported, n) == 0) {
		w->report_inflight = true;
		w->reported = v;
		w->reported_term = term;
	}
	buf_free(&b);
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
	sync_leadership(n);
	struct peer *p = term == n->watch->leader_term ? peer_get(n, rpc->peer_id, false) : NULL;
	if (p != NULL && index > p->visible)
		p->visible = index;
	transport_rpc_reply(rpc, 0, NULL, 0);
	run_waiters(n);
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
	sample_applied(n);
	report_visible(n);
	if (w->waiters != NULL)
		run_waiters(n);
}

/* ---- Grants ---- */

static bool may_grant(const struct node *n)
{
	/* Without storage its read rounds hold no grants (node_storage.c). */
	if (n->phase != NODE_ACTIVE || n->session == NULL || node_storage_mute(n))
		return false;
	return !node_query_is_sole_voter(n) || node_query_committed_in_term(n);
}

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

uint64_t node_cache_grant(struct node *n, const struct api_request *req,
			  uint64_t round_start_ns)
{
	if (!may_grant(n) || !watching(n->watch, req->peer_pid))
		return 0;
	if (n->watch->unsynced)
		sync_watchers(n->watch);
	uint64_t ms = cache_ms(n), until = round_start_ns + ms * 1000000u;
	if (until / 1000000u + 1 > n->watch->granted_until)
		n->watch->granted_until = until / 1000000u + 1;
	return until;
}

bool node_lease_holds(struct node *n, uint64_t round_start_ns, bool *ret_renew)
{
	if (!may_grant(n) || round_start_ns == 0)
		return false;
	uint64_t len = (cache_ms(n) - NODE_LEASE_MARGIN_MS) * 1000000u, now = mono_ns();
	*ret_renew = now >= round_start_ns + len / 2;
	return now < round_start_ns + len;
}

uint64_t node_watch_round_start(struct node *n)
{
	n->watch->round_ms = mono_ms();
	return mono_ns();
}

void node_watch_session_start(struct node *n)
{
	/* Grants given before a seal may outlive it by up to NODE_CACHE_MS:
	 * our mounts may still show them. */
	if (n->watch->granted_until > mono_ms()) {
		freeze(n);
		arm_timer(n);
	}
	n->watch->reported_term = 0;
	/* A new session applies the log again from its snapshot. */
	n->watch->n_samples = 0;
	n->watch->sample_base = (struct sample){ 0, 0 };
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
	pop_marks(n->watch);
	run_waiters(n);
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
	if (n->watch->granted_until > mono_ms())
		freeze(n);
	*pp = x->next;
	free(x);
	pop_marks(n->watch);
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
		free(n->watch->peers);
	}
	free(n->watch);
	n->watch = NULL;
}
