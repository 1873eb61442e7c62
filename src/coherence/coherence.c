/* The cache-coherence rules (coherence.h).
 *
 * Grants. A linearizable answer about attributes, names or a value carries
 * a grant: the kernel (attributes, names) and the mount (attributes,
 * values) may keep it until round start + cache_ms, where the round is the
 * read round that made the answer linearizable (for a sole voter, which
 * needs no round, the answer itself; under a lease, the round that gave
 * the lease).
 *
 * Visibility. A node's visible index is the Raft index up to which it has
 * applied the log AND every watcher has acknowledged the notices of those
 * entries: no mount of that node can show anything older any more. When a
 * watcher goes away while grants are alive, and when a session starts
 * (grants given before a seal may still be alive), the visible index stops
 * moving until they have expired ("frozen").
 *
 * The write rule (leader). A write at index I, applied by the leader at time
 * T, is answered (to a local client, or to the follower that forwarded it)
 * only once
 *   (a) every node that may hold a grant has a visible index >= I, or
 *   (b) T + cache_ms has passed.
 * A node may hold a grant if the leader received its read-index request less
 * than cache_ms ago (the leader itself: if it granted in that time).
 * (b) holds whatever happened before: an answer that missed the write came
 * from a read index taken before the write committed, so its grant (counted
 * from an earlier round start) expires before T + cache_ms. A new leader
 * does not know the grants its predecessor's rounds gave: in its first
 * cache_ms only (b) counts. So a dead node costs a write at most cache_ms,
 * and a failover cache_ms more. A follower that forwarded a write also
 * waits for its own visible index before answering (its own mounts).
 *
 * The safe index (leader). An entry is safe once the write rule holds for
 * it; both parts are monotone in the index, so the safe index is the
 * highest index for which one holds. Nothing shows an entry before it is
 * safe (coherence_may_show): otherwise a node that has applied a write
 * could show it while another node's mounts still show what it replaced,
 * and a read there after a read here would go back in time.
 *
 * Leases. Once a round's reads were served, the local state stays
 * linearizable for a little less than the round's grants: the leader
 * counts this node as holding grants from that round, so a write becomes
 * safe only once it is visible here too (or once that time is over). */
#include "coherence/coherence.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Clock skew and delivery slack when the leader decides who may hold a
 * grant. */
#define GRANT_SLACK_MS 10u
/* A lease ends this much before the grants of its round (clock rates). */
#define LEASE_MARGIN_MS 5u
/* A lease asks for renewal once this part of it (1 / N) has passed. An
 * answer's grant runs to its round's start + cache_ms, so answers served
 * late in a lease give the kernel short grants: renewing at half its
 * length, a steady reader's answers carried 50 to 100 ms (100 ms leases)
 * and a writer of one file looked it up again every few puts. Renewing
 * at a quarter keeps them at 75 ms or more for one round every 24 ms. */
#define LEASE_RENEW_PART 4u
/* Loop turns whose applied index is remembered, for rule (b). */
#define APPLY_SAMPLES 512u
/* Notices sent but not yet acknowledged by every watcher. */
#define MAX_MARKS 4096u

/* A notice sent: its seq and the applied index it covers. */
struct mark {
	uint64_t seq;
	uint64_t index;
};

/* The applied index at the end of a loop turn, and when. */
struct sample {
	uint64_t index;
	uint64_t ms;
};

/* What the leader knows of another node. */
struct peer {
	uint64_t id;
	uint64_t round_ms; /* its last read-index request came then */
	uint64_t visible;  /* its visible index, as last reported */
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
	coherence_cb cb;
	void *arg;
	int status; /* when done */
};

struct coherence {
	struct coherence_env env;
	uint64_t cache_ms;
	struct waiter *waiters;
	/* This node's mounts. */
	bool pending;            /* changes not yet in a notice */
	uint64_t pending_floor;  /* applied index before the first of them */
	struct mark marks[MAX_MARKS]; /* ring of unacknowledged notices */
	unsigned mark_head, n_marks;
	uint64_t visible_base;   /* index of the last notice every watcher acked */
	uint64_t frozen_until;   /* ms: the visible index does not move */
	uint64_t frozen_visible; /* ... from this value */
	uint64_t granted_until;  /* ms: the last grant expires */
	uint64_t lease_round_ns; /* start of the newest round served */
	/* When entries were applied here (rule (b)): a ring, oldest first,
	 * and the newest sample that left it. */
	struct sample samples[APPLY_SAMPLES];
	unsigned sample_head, n_samples;
	struct sample sample_base;
	/* Leader side. */
	uint64_t leader_term;    /* the term in which we lead, 0 if we do not */
	uint64_t leader_since;   /* ms */
	struct peer *peers;
	unsigned n_peers;
	/* Follower side. */
	uint64_t known_safe;     /* the leader's safe index, as last heard */
	uint64_t round_ms;       /* our last read round started then */
	uint64_t reported;       /* visible index last told to the leader */
	uint64_t reported_term;
	bool report_inflight;
};

struct coherence *coherence_new(const struct coherence_env *env, unsigned cache_ms)
{
	assert(cache_ms > LEASE_MARGIN_MS);
	struct coherence *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->env = *env;
	c->cache_ms = cache_ms < COHERENCE_CACHE_MS ? cache_ms : COHERENCE_CACHE_MS;
	return c;
}

void coherence_free(struct coherence *c)
{
	if (c == NULL)
		return;
	assert(c->waiters == NULL);
	free(c->peers);
	free(c);
}

static uint64_t now_ms(const struct coherence *c)
{
	return c->env.now_ns(c->env.ctx) / 1000000u;
}

static uint64_t applied(const struct coherence *c)
{
	return c->env.applied_index(c->env.ctx);
}

/* ---- The visible index ---- */

bool coherence_caches_live(struct coherence *c)
{
	uint64_t now = now_ms(c);
	return c->granted_until > now || c->frozen_until > now;
}

uint64_t coherence_visible(struct coherence *c)
{
	uint64_t v;
	if (c->n_marks > 0)
		v = c->visible_base;
	else if (c->pending)
		v = c->pending_floor;
	else
		v = applied(c);
	if (now_ms(c) < c->frozen_until && v > c->frozen_visible)
		v = c->frozen_visible;
	return v;
}

static void freeze(struct coherence *c)
{
	uint64_t until = now_ms(c) + c->cache_ms + 1;
	if (c->frozen_until <= now_ms(c))
		c->frozen_visible = coherence_visible(c);
	if (until > c->frozen_until)
		c->frozen_until = until;
	c->env.rearm(c->env.ctx);
}

void coherence_change_pending(struct coherence *c)
{
	if (c->pending)
		return;
	/* The entry being applied comes after the applied index. */
	c->pending_floor = applied(c);
	c->pending = true;
}

bool coherence_notice_sent(struct coherence *c, uint64_t seq)
{
	c->pending = false;
	if (c->n_marks == MAX_MARKS)
		return false;
	assert(c->n_marks == 0 || seq > c->marks[(c->mark_head + c->n_marks - 1) % MAX_MARKS].seq);
	struct mark *m = &c->marks[(c->mark_head + c->n_marks++) % MAX_MARKS];
	m->seq = seq;
	m->index = applied(c);
	return true;
}

void coherence_notices_skipped(struct coherence *c)
{
	c->pending = false;
	c->n_marks = 0;
}

void coherence_acked(struct coherence *c, uint64_t acked)
{
	while (c->n_marks > 0 && c->marks[c->mark_head].seq <= acked) {
		c->visible_base = c->marks[c->mark_head].index;
		c->mark_head = (c->mark_head + 1) % MAX_MARKS;
		c->n_marks--;
	}
}

void coherence_watcher_gone(struct coherence *c)
{
	if (c->granted_until > now_ms(c))
		freeze(c);
}

/* ---- Grants and leases ---- */

uint64_t coherence_round_start(struct coherence *c)
{
	uint64_t ns = c->env.now_ns(c->env.ctx);
	c->round_ms = ns / 1000000u;
	return ns;
}

uint64_t coherence_grant(struct coherence *c, uint64_t round_start_ns)
{
	if (!c->env.may_grant(c->env.ctx))
		return 0;
	uint64_t until = round_start_ns + c->cache_ms * 1000000u;
	if (until / 1000000u + 1 > c->granted_until)
		c->granted_until = until / 1000000u + 1;
	return until;
}

void coherence_round_served(struct coherence *c, uint64_t round_start_ns)
{
	if (round_start_ns > c->lease_round_ns)
		c->lease_round_ns = round_start_ns;
}

uint64_t coherence_lease(struct coherence *c, bool *ret_renew)
{
	*ret_renew = false;
	if (c->lease_round_ns == 0 || !c->env.may_grant(c->env.ctx))
		return 0;
	uint64_t len = (c->cache_ms - LEASE_MARGIN_MS) * 1000000u;
	uint64_t now = c->env.now_ns(c->env.ctx);
	if (now >= c->lease_round_ns + len)
		return 0;
	*ret_renew = now >= c->lease_round_ns + len / LEASE_RENEW_PART;
	return c->lease_round_ns;
}

/* ---- The leader's view ---- */

/* Resets the leader state when we lead in a new term (or stop leading). */
static void sync_leadership(struct coherence *c)
{
	uint64_t term = c->env.is_leader(c->env.ctx) ? c->env.term(c->env.ctx) : 0;
	if (term == c->leader_term)
		return;
	c->leader_term = term;
	c->leader_since = now_ms(c);
	c->n_peers = 0;
}

static struct peer *peer_get(struct coherence *c, uint64_t id, bool add)
{
	for (unsigned i = 0; i < c->n_peers; i++)
		if (c->peers[i].id == id)
			return &c->peers[i];
	if (!add)
		return NULL;
	struct peer *p = realloc(c->peers, (c->n_peers + 1) * sizeof(*p));
	if (p == NULL)
		return NULL;
	c->peers = p;
	p = &c->peers[c->n_peers++];
	memset(p, 0, sizeof(*p));
	p->id = id;
	return p;
}

void coherence_round_asked(struct coherence *c, uint64_t peer)
{
	sync_leadership(c);
	struct peer *p = peer_get(c, peer, true);
	if (p != NULL)
		p->round_ms = now_ms(c);
	else
		c->leader_since = now_ms(c); /* out of memory: rule (b) only */
}

/* PEER may hold a grant from a round whose read index we gave. */
static bool peer_may_hold(const struct coherence *c, const struct peer *p, uint64_t now)
{
	return p->round_ms + c->cache_ms + GRANT_SLACK_MS > now;
}

/* Rule (a): the highest index every node that may hold a grant shows, at
 * most UPTO. */
static uint64_t shown_everywhere(struct coherence *c, uint64_t upto)
{
	uint64_t now = now_ms(c);
	if (now < c->leader_since + c->cache_ms + GRANT_SLACK_MS)
		return 0; /* grants of the previous leader's rounds */
	uint64_t m = upto;
	if (coherence_caches_live(c) && coherence_visible(c) < m)
		m = coherence_visible(c);
	for (unsigned i = 0; i < c->n_peers; i++) {
		const struct peer *p = &c->peers[i];
		if (peer_may_hold(c, p, now) && p->visible < m)
			m = p->visible;
	}
	return m;
}

void coherence_peer_visible(struct coherence *c, uint64_t peer, uint64_t term, uint64_t index)
{
	sync_leadership(c);
	struct peer *p = term == c->leader_term ? peer_get(c, peer, false) : NULL;
	if (p != NULL && index > p->visible)
		p->visible = index;
	coherence_poll(c);
}

static struct sample *sample_at(struct coherence *c, unsigned i)
{
	return &c->samples[(c->sample_head + i) % APPLY_SAMPLES];
}

/* Remembers when the applied index moved (at the end of a loop turn: no
 * earlier than the entries were applied, as rule (b) wants). */
static void sample_applied(struct coherence *c)
{
	uint64_t index = applied(c);
	uint64_t newest = c->n_samples > 0 ? sample_at(c, c->n_samples - 1)->index :
					     c->sample_base.index;
	if (index <= newest)
		return;
	if (c->n_samples == APPLY_SAMPLES) {
		c->sample_base = *sample_at(c, 0);
		c->sample_head = (c->sample_head + 1) % APPLY_SAMPLES;
		c->n_samples--;
	}
	*sample_at(c, c->n_samples++) = (struct sample){ index, now_ms(c) };
}

/* When this node had applied INDEX (UINT64_MAX: not yet). */
static uint64_t applied_at(struct coherence *c, uint64_t index)
{
	if (c->sample_base.index >= index && c->sample_base.ms != 0)
		return c->sample_base.ms;
	/* Samples' indexes rise (sample_applied): the first one at or past
	 * INDEX, by halving. */
	unsigned lo = 0, hi = c->n_samples;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (sample_at(c, mid)->index >= index)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo < c->n_samples ? sample_at(c, lo)->ms : UINT64_MAX;
}

/* Rule (b): the highest index applied cache_ms ago. */
static uint64_t safe_by_time(struct coherence *c)
{
	uint64_t now = now_ms(c);
	for (unsigned i = c->n_samples; i-- > 0;)
		if (sample_at(c, i)->ms + c->cache_ms + 1 <= now)
			return sample_at(c, i)->index;
	if (c->sample_base.ms != 0 && c->sample_base.ms + c->cache_ms + 1 <= now)
		return c->sample_base.index;
	return 0;
}

uint64_t coherence_safe_index(struct coherence *c)
{
	sync_leadership(c);
	if (c->leader_term == 0)
		return 0;
	uint64_t a = shown_everywhere(c, applied(c)), b = safe_by_time(c);
	return a > b ? a : b;
}

bool coherence_safe_learned(struct coherence *c, uint64_t safe)
{
	if (safe <= c->known_safe)
		return false;
	c->known_safe = safe;
	return true;
}

bool coherence_may_show(struct coherence *c, uint64_t index)
{
	if (c->env.is_leader(c->env.ctx))
		return index <= coherence_safe_index(c);
	return index <= c->known_safe;
}

/* Lagging nodes that may hold grants need our commit index now, not at the
 * next heartbeat, to apply the entry and report it. */
static void push_to_laggards(struct coherence *c, uint64_t index)
{
	uint64_t now = now_ms(c);
	for (unsigned i = 0; i < c->n_peers; i++) {
		const struct peer *p = &c->peers[i];
		if (peer_may_hold(c, p, now) && p->visible < index)
			c->env.push_commit(c->env.ctx, p->id);
	}
}

/* ---- Waiters ---- */

/* 1 when V is done, 0 while it waits, or the error to fail it with. */
static int waiter_state(struct coherence *c, const struct waiter *v)
{
	switch (v->kind) {
	case WAIT_OWN_MOUNTS:
		return !coherence_caches_live(c) || coherence_visible(c) >= v->index;
	case WAIT_WRITTEN:
		sync_leadership(c);
		return now_ms(c) >= v->applied_ms + c->cache_ms + 1 ||
		       shown_everywhere(c, v->index) >= v->index;
	case WAIT_SAFE:
		if (!c->env.is_leader(c->env.ctx) || !c->env.serving(c->env.ctx))
			return -EAGAIN; /* ask the next leader */
		return coherence_safe_index(c) >= v->index;
	}
	return -EINVAL;
}

uint64_t coherence_due_ms(struct coherence *c)
{
	uint64_t now = now_ms(c), due = UINT64_MAX;
	if (c->waiters == NULL)
		return due;
	if (c->frozen_until > now)
		due = c->frozen_until;
	if (c->granted_until > now && c->granted_until < due)
		due = c->granted_until; /* waiters for our own mounts may be done then */
	/* applied_at rises with the index: the lowest index waiting to be
	 * safe is the first to come due by time. */
	uint64_t lowest_safe = UINT64_MAX;
	for (struct waiter *v = c->waiters; v != NULL; v = v->next) {
		if (v->kind == WAIT_SAFE && v->index < lowest_safe)
			lowest_safe = v->index;
		if (v->kind == WAIT_WRITTEN && v->applied_ms + c->cache_ms + 1 < due)
			due = v->applied_ms + c->cache_ms + 1;
	}
	uint64_t t = lowest_safe != UINT64_MAX ? applied_at(c, lowest_safe) : UINT64_MAX;
	if (t != UINT64_MAX && t + c->cache_ms + 1 < due)
		due = t + c->cache_ms + 1;
	return due;
}

void coherence_poll(struct coherence *c)
{
	struct waiter **pp = &c->waiters;
	struct waiter *ready = NULL, **tail = &ready;
	while (*pp != NULL) {
		struct waiter *v = *pp;
		int state = waiter_state(c, v);
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
	/* Callbacks last: they may add waiters. */
	while (ready != NULL) {
		struct waiter *v = ready;
		ready = v->next;
		v->cb(v->arg, v->status);
		free(v);
	}
}

/* Adds PROTO's copy, or calls its callback now; true if it waits. */
static bool add_waiter(struct coherence *c, const struct waiter *proto)
{
	int state = waiter_state(c, proto);
	if (state != 0) {
		proto->cb(proto->arg, state < 0 ? state : 0);
		return false;
	}
	struct waiter *v = malloc(sizeof(*v));
	if (v == NULL) {
		proto->cb(proto->arg, -ENOMEM);
		return false;
	}
	*v = *proto;
	v->next = c->waiters;
	c->waiters = v;
	c->env.rearm(c->env.ctx);
	return true;
}

void coherence_wait_visible(struct coherence *c, uint64_t index, coherence_cb cb, void *arg)
{
	struct waiter v = { .index = index, .kind = WAIT_OWN_MOUNTS, .cb = cb, .arg = arg };
	add_waiter(c, &v);
}

void coherence_wait_grants_gone(struct coherence *c, coherence_cb cb, void *arg)
{
	coherence_wait_visible(c, UINT64_MAX, cb, arg);
}

void coherence_wait_written(struct coherence *c, uint64_t index, coherence_cb cb, void *arg)
{
	struct waiter v = {
		.index = index, .applied_ms = now_ms(c), .kind = WAIT_WRITTEN, .cb = cb, .arg = arg
	};
	if (add_waiter(c, &v))
		push_to_laggards(c, index);
}

void coherence_wait_safe(struct coherence *c, uint64_t index, coherence_cb cb, void *arg)
{
	struct waiter v = { .index = index, .kind = WAIT_SAFE, .cb = cb, .arg = arg };
	if (add_waiter(c, &v))
		push_to_laggards(c, index);
}

void coherence_fail_waiters(struct coherence *c, int status)
{
	struct waiter *v = c->waiters;
	c->waiters = NULL;
	while (v != NULL) {
		struct waiter *next = v->next;
		v->cb(v->arg, status);
		free(v);
		v = next;
	}
}

/* ---- Sessions and turns ---- */

void coherence_session_start(struct coherence *c)
{
	/* Grants given before a seal may outlive it by up to cache_ms: our
	 * mounts may still show them. */
	if (c->granted_until > now_ms(c))
		freeze(c);
	c->reported_term = 0;
	c->lease_round_ns = 0;
	c->known_safe = 0;
	/* A new session applies the log again from its snapshot. */
	c->n_samples = 0;
	c->sample_base = (struct sample){ 0, 0 };
}

void coherence_report_done(struct coherence *c, int status)
{
	c->report_inflight = false;
	if (status != 0)
		c->reported_term = 0; /* tell the next leader (or this one) again */
}

/* A follower that may hold grants tells the leader how far its mounts are
 * coherent, whenever that moves. */
static void report_visible(struct coherence *c)
{
	if (c->report_inflight || c->env.is_leader(c->env.ctx) ||
	    now_ms(c) > c->round_ms + c->cache_ms + 2 * GRANT_SLACK_MS)
		return; /* (a little longer than the leader counts us) */
	uint64_t term = c->env.term(c->env.ctx), v = coherence_visible(c);
	if (term == c->reported_term && v <= c->reported)
		return;
	if (c->env.report_visible(c->env.ctx, term, v) == 0) {
		c->report_inflight = true;
		c->reported = v;
		c->reported_term = term;
	}
}

void coherence_turn_ended(struct coherence *c)
{
	sample_applied(c);
	report_visible(c);
	if (c->waiters != NULL)
		coherence_poll(c);
}
