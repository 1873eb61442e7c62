/* The cache-coherence rules of a node: grants, leases, the visible index,
 * the leader's write rule and safe index (docs/design.md, "Cache
 * coherence"; the rules and why they hold are at the top of coherence.c).
 *
 * The module keeps its own state and decides; it does no I/O. What it
 * needs of the node (the clock, the applied index, leadership, RPCs) comes
 * through struct coherence_env, so tests drive it with a fake clock and a
 * fake cluster (tests/unit/test_coherence.c). The node delivers events
 * (notices closed and acknowledged, read rounds, reports from peers) and
 * calls coherence_poll whenever time passes or something changed; waiters'
 * callbacks run from the calls that complete them. Single-threaded. */
#ifndef VAULTFS_COHERENCE_H
#define VAULTFS_COHERENCE_H

#include <stdbool.h>
#include <stdint.h>

/* How long a mount may trust a cached entry, at most (a quarter of the
 * election timeout if that is less: coherence_new). */
#define COHERENCE_CACHE_MS 100u

struct coherence;

struct coherence_env {
	void *ctx;
	/* CLOCK_MONOTONIC in ns: grants are deadlines on it. */
	uint64_t (*now_ns)(void *ctx);
	/* The index the state machine has applied. */
	uint64_t (*applied_index)(void *ctx);
	/* The current Raft term (0 without a session), and whether this
	 * node leads in it. */
	uint64_t (*term)(void *ctx);
	bool (*is_leader)(void *ctx);
	/* The node serves requests (unsealed, started, not closing). */
	bool (*serving)(void *ctx);
	/* The node's answers may be linearizable from a read round: it
	 * serves with working storage and is not a sole voter still
	 * without an entry committed in its term. */
	bool (*may_grant)(void *ctx);
	/* Leader: send PEER our commit index now (it lags, and may hold
	 * grants a write waits for). */
	void (*push_commit)(void *ctx, uint64_t peer);
	/* Follower: tell the leader our visible index INDEX in TERM. 0 if
	 * sent: coherence_report_done follows; else nothing was sent. */
	int (*report_visible)(void *ctx, uint64_t term, uint64_t index);
	/* coherence_due_ms may have moved earlier: rearm the timer. */
	void (*rearm)(void *ctx);
};

/* ENV is copied. CACHE_MS: the grant length; capped at COHERENCE_CACHE_MS
 * and must exceed the lease margin (6 ms or more). NULL if out of memory. */
struct coherence *coherence_new(const struct coherence_env *env, unsigned cache_ms);
/* Waiters must have been failed (coherence_fail_waiters). */
void coherence_free(struct coherence *c);

/* ---- Sessions and time ---- */

/* A Raft session starts (after unseal, or a storage reopen): grants given
 * before may still be alive, the log is applied again, and the lease and
 * the leader's safe index learned so far are void. */
void coherence_session_start(struct coherence *c);
/* The end of a loop turn: remembers when the applied index moved (rule
 * (b)), reports the visible index to the leader if need be, runs waiters. */
void coherence_turn_ended(struct coherence *c);
/* Runs every waiter whose condition holds now. */
void coherence_poll(struct coherence *c);
/* When coherence_poll next has something to do by time alone (ms on
 * now_ns's clock), or UINT64_MAX. */
uint64_t coherence_due_ms(struct coherence *c);

/* ---- This node's mounts: notices and the visible index ---- */

/* A change is being applied and will go out in the next notice. */
void coherence_change_pending(struct coherence *c);
/* The pending changes went out as notice SEQ, covering the applied index.
 * False if too many notices are unacknowledged (the node must drop every
 * watcher: coherence_notices_skipped then). */
bool coherence_notice_sent(struct coherence *c, uint64_t seq);
/* No mount needs the pending or unacknowledged notices (none may hold a
 * grant, or all watchers were dropped): the visible index follows the
 * applied index. */
void coherence_notices_skipped(struct coherence *c);
/* Every watcher acted on the notices up to seq ACKED. */
void coherence_acked(struct coherence *c, uint64_t acked);
/* A watcher went away: its kernel's cache lives on until its grants
 * expire, so the visible index stops moving until then. */
void coherence_watcher_gone(struct coherence *c);
/* True while a mount of this node may hold a grant that has not expired. */
bool coherence_caches_live(struct coherence *c);
/* The index up to which no mount of this node can show anything older. */
uint64_t coherence_visible(struct coherence *c);

/* ---- Grants and leases ---- */

/* A read round starts now: returns its start (ns) for its grants. */
uint64_t coherence_round_start(struct coherence *c);
/* A grant for an answer made linearizable by the round that started at
 * ROUND_START_NS: its end (ns), or 0 when this node may not grant. */
uint64_t coherence_grant(struct coherence *c, uint64_t round_start_ns);
/* The round that started at ROUND_START_NS was served: its lease. */
void coherence_round_served(struct coherence *c, uint64_t round_start_ns);
/* The start of the round whose lease holds now, or 0: the local state is
 * linearizable without a round trip. *RET_RENEW: a quarter of the lease
 * has passed, a new round had better start (grants count from a round's
 * start, so the answers of an old lease give short ones). */
uint64_t coherence_lease(struct coherence *c, bool *ret_renew);

/* ---- The leader's view ---- */

/* Node PEER asked for a read index: it may hold grants from now on. */
void coherence_round_asked(struct coherence *c, uint64_t peer);
/* Node PEER reports that its mounts show INDEX, in TERM. */
void coherence_peer_visible(struct coherence *c, uint64_t peer, uint64_t term, uint64_t index);
/* The follower's report (report_visible) was answered with STATUS. */
void coherence_report_done(struct coherence *c, int status);
/* Leader: the safe index, up to which no mount anywhere can show what an
 * entry replaced (the write rule holds); 0 when not leading. */
uint64_t coherence_safe_index(struct coherence *c);
/* Follower: the leader said its safe index is at least SAFE. True if that
 * is news. */
bool coherence_safe_learned(struct coherence *c, uint64_t safe);
/* Whether an answer showing the state at INDEX may leave now: INDEX is
 * safe, as far as this node knows. */
bool coherence_may_show(struct coherence *c, uint64_t index);

/* ---- Waiting ---- */

typedef void (*coherence_cb)(void *arg, int status);
/* CB(ARG, 0) once this node's own mounts show INDEX (at once if none may
 * hold a grant). */
void coherence_wait_visible(struct coherence *c, uint64_t index, coherence_cb cb, void *arg);
/* CB(ARG, 0) once no mount of this node may hold a grant. */
void coherence_wait_grants_gone(struct coherence *c, coherence_cb cb, void *arg);
/* Leader: the write rule for the entry INDEX it has just applied: CB(ARG,
 * 0) once no mount of any node can show what it replaced. */
void coherence_wait_written(struct coherence *c, uint64_t index, coherence_cb cb, void *arg);
/* Leader: CB(ARG, 0) once the safe index reaches INDEX; CB(ARG, -EAGAIN)
 * once this node no longer serves as leader. */
void coherence_wait_safe(struct coherence *c, uint64_t index, coherence_cb cb, void *arg);
/* Every waiter gets CB(ARG, STATUS). */
void coherence_fail_waiters(struct coherence *c, int status);
/* CB may run before a wait call returns; -ENOMEM if no memory. */

#endif
