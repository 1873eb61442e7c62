/* Unit tests of the cache-coherence rules (src/coherence) on a fake clock
 * and a fake cluster.
 *
 * Each node is a struct coherence with a fake environment: its applied
 * index, term and leadership are plain fields the test sets, its commit
 * pushes and visible-index reports are recorded, and a follower's report
 * can be delivered to the leader's instance (deliver_reports). Time moves
 * only when the test says so (advance_ms).
 *
 * tests/unit/coherence_mutations.sh breaks each rule in a copy of
 * coherence.c and checks that this program then fails. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "coherence/coherence.h"

#define CACHE_MS 100u
#define MS 1000000u

static uint64_t now_ns = 1000 * 1000 * MS;

static void advance_ms(uint64_t ms)
{
	now_ns += ms * MS;
}

/* ---- a fake node ---- */

struct fake {
	struct coherence *c;
	uint64_t id;
	uint64_t applied;
	uint64_t term;
	bool leader;
	bool serving;
	bool storage_ok;
	bool sole_voter;
	uint64_t pushed_to; /* the last peer a commit was pushed to, 0: none */
	unsigned pushes;
	bool report_sent;   /* a report is in flight */
	uint64_t report_term, report_index;
	unsigned rearms;
};

static uint64_t env_now_ns(void *ctx)
{
	(void)ctx;
	return now_ns;
}

static uint64_t env_applied_index(void *ctx)
{
	return ((struct fake *)ctx)->applied;
}

static uint64_t env_term(void *ctx)
{
	return ((struct fake *)ctx)->term;
}

static bool env_is_leader(void *ctx)
{
	return ((struct fake *)ctx)->leader;
}

static bool env_serving(void *ctx)
{
	return ((struct fake *)ctx)->serving;
}

static bool env_may_grant(void *ctx)
{
	const struct fake *f = ctx;
	return f->serving && f->storage_ok && !f->sole_voter;
}

static void env_push_commit(void *ctx, uint64_t peer)
{
	struct fake *f = ctx;
	f->pushed_to = peer;
	f->pushes++;
}

static int env_report_visible(void *ctx, uint64_t term, uint64_t index)
{
	struct fake *f = ctx;
	f->report_sent = true;
	f->report_term = term;
	f->report_index = index;
	return 0;
}

static void env_rearm(void *ctx)
{
	((struct fake *)ctx)->rearms++;
}

static void fake_init(struct fake *f, uint64_t id, bool leader)
{
	memset(f, 0, sizeof(*f));
	const struct coherence_env env = {
		.ctx = f,
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
	f->id = id;
	f->applied = 10;
	f->term = 3;
	f->leader = leader;
	f->serving = true;
	f->storage_ok = true;
	f->c = coherence_new(&env, CACHE_MS);
	assert_non_null(f->c);
	coherence_session_start(f->c);
	coherence_turn_ended(f->c);
}

static void fake_free(struct fake *f)
{
	coherence_fail_waiters(f->c, -ESHUTDOWN);
	coherence_free(f->c);
}

/* The follower's report in flight reaches the leader and is answered. */
static void deliver_report(struct fake *from, struct fake *leader)
{
	if (!from->report_sent)
		return;
	from->report_sent = false;
	coherence_peer_visible(leader->c, from->id, from->report_term, from->report_index);
	coherence_report_done(from->c, 0);
}

/* A waiter's outcome: 1 done, -errno failed, 0 still waiting. */
static void on_done(void *arg, int status)
{
	int *r = arg;
	assert_int_equal(*r, 0); /* called once */
	*r = status == 0 ? 1 : status;
}

/* ---- the cluster of the scenarios: leader L (1), follower F (2) ---- */

static struct fake L, F;
/* A waiter's outcome (on_done); global, because a failed test leaves the
 * waiter to teardown. */
static int done;

static int setup(void **state)
{
	(void)state;
	fake_init(&L, 1, true);
	fake_init(&F, 2, false);
	done = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fake_free(&L);
	fake_free(&F);
	return 0;
}

/* L has led for longer than a grant: only what it knows counts. */
static void leader_settled(void)
{
	coherence_safe_index(L.c); /* L notices it leads */
	advance_ms(CACHE_MS + 20);
}

/* F runs a read round through L now, and serves it (a lease). */
static uint64_t follower_round(void)
{
	uint64_t start = coherence_round_start(F.c);
	coherence_round_asked(L.c, F.id);
	coherence_round_served(F.c, start);
	return start;
}

/* L applies the next entry: a write. */
static uint64_t apply_write(void)
{
	L.applied++;
	coherence_turn_ended(L.c);
	return L.applied;
}

/* L has led a while, F has just run a read round, and L applies a write:
 * its index. */
static uint64_t write_after_follower_round(void)
{
	leader_settled();
	follower_round();
	return apply_write();
}

/* ---- the write rule ---- */

/* A write is answered only once every node that may hold a grant shows
 * it: F's read round lets its mounts cache, so L waits for F's report. */
static void test_write_waits_for_node_with_grant(void **state)
{
	(void)state;
	uint64_t i = write_after_follower_round();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(done, 0);
	assert_int_equal(L.pushed_to, F.id); /* F lags: it gets the commit now */
	/* F applies the entry, its mounts still hold grants and have not
	 * acted on the notice yet: it reports the old index. */
	coherence_grant(F.c, now_ns);
	coherence_change_pending(F.c);
	F.applied = i;
	coherence_turn_ended(F.c);
	deliver_report(&F, &L);
	assert_int_equal(done, 0);
	/* Its notice goes out and is acknowledged: now it shows the write. */
	advance_ms(1);
	assert_true(coherence_notice_sent(F.c, 1));
	coherence_acked(F.c, 1);
	assert_int_equal(coherence_visible(F.c), i);
	coherence_turn_ended(F.c);
	deliver_report(&F, &L);
	assert_int_equal(done, 1);
}

/* A node that may hold grants but never answers (dead, partitioned)
 * costs a write at most the grant length, not a failover: rule (b). */
static void test_dead_node_costs_one_grant(void **state)
{
	(void)state;
	leader_settled();
	follower_round(); /* F's last round: then it dies */
	uint64_t i = apply_write();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(coherence_due_ms(L.c), now_ns / MS + CACHE_MS + 1);
	advance_ms(CACHE_MS);
	coherence_poll(L.c);
	assert_int_equal(done, 0); /* F's grants may be alive still */
	advance_ms(1);
	coherence_poll(L.c);
	assert_int_equal(done, 1);
	/* Once F's grants are over, later writes do not wait for it. */
	advance_ms(20);
	i = apply_write();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(done, 1);
}

/* A node that never asked for a read index holds no grant: writes do not
 * wait for it. */
static void test_node_without_round_is_not_waited_for(void **state)
{
	(void)state;
	leader_settled();
	uint64_t i = apply_write();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(done, 1);
	assert_int_equal(L.pushes, 0);
}

/* A new leader does not know the grants its predecessor's rounds gave:
 * for its first grant length only time counts. */
static void test_new_leader_waits_out_old_grants(void **state)
{
	(void)state;
	leader_settled();
	L.term = 4; /* re-elected: a new term */
	uint64_t i = apply_write();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(done, 0);
	assert_true(coherence_safe_index(L.c) < i);
	advance_ms(CACHE_MS);
	coherence_poll(L.c);
	assert_int_equal(done, 0);
	advance_ms(1);
	coherence_poll(L.c);
	assert_int_equal(done, 1);
}

/* The leader's own mounts count like any node's. */
static void test_leader_waits_for_its_own_mounts(void **state)
{
	(void)state;
	leader_settled();
	coherence_grant(L.c, now_ns); /* a mount of L caches */
	uint64_t i = L.applied + 1;
	coherence_change_pending(L.c);
	L.applied = i;
	assert_true(coherence_notice_sent(L.c, 1));
	coherence_turn_ended(L.c);
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(done, 0);
	coherence_acked(L.c, 1);
	coherence_poll(L.c);
	assert_int_equal(done, 1);
}

/* ---- the safe index ---- */

/* Safe up to what every node with grants shows (a), or what was applied
 * a grant length ago (b), whichever is higher. */
static void test_safe_index(void **state)
{
	(void)state;
	leader_settled();
	assert_int_equal(coherence_safe_index(L.c), 10);
	follower_round();
	F.applied = 10;
	coherence_turn_ended(F.c);
	deliver_report(&F, &L);
	uint64_t i = apply_write();
	advance_ms(CACHE_MS / 2); /* F's grants are alive, it has not applied i */
	assert_int_equal(coherence_safe_index(L.c), 10);
	assert_false(coherence_may_show(L.c, i));
	done = 0;
	coherence_wait_safe(L.c, i, on_done, &done);
	assert_int_equal(done, 0);
	F.applied = i;
	coherence_turn_ended(F.c);
	deliver_report(&F, &L);
	assert_int_equal(coherence_safe_index(L.c), i);
	assert_true(coherence_may_show(L.c, i));
	assert_int_equal(done, 1);
	/* By time alone. */
	uint64_t j = apply_write();
	assert_int_equal(coherence_safe_index(L.c), i);
	advance_ms(CACHE_MS + 1);
	assert_int_equal(coherence_safe_index(L.c), j);
	assert_int_equal(coherence_safe_index(F.c), 0); /* F does not lead */
}

/* A follower shows a state only once the leader said it is safe. */
static void test_follower_shows_only_safe_state(void **state)
{
	(void)state;
	assert_false(coherence_may_show(F.c, 11));
	assert_true(coherence_safe_learned(F.c, 11));
	assert_true(coherence_may_show(F.c, 11));
	assert_false(coherence_may_show(F.c, 12));
	assert_false(coherence_safe_learned(F.c, 5)); /* old news */
	assert_true(coherence_may_show(F.c, 11));
	coherence_session_start(F.c); /* a new session learns it again */
	assert_false(coherence_may_show(F.c, 11));
}

/* A wait for the safe index ends when leadership ends: the next leader
 * is asked. */
static void test_wait_safe_fails_without_leadership(void **state)
{
	(void)state;
	uint64_t i = write_after_follower_round();
	done = 0;
	coherence_wait_safe(L.c, i, on_done, &done);
	assert_int_equal(done, 0);
	L.leader = false;
	coherence_poll(L.c);
	assert_int_equal(done, -EAGAIN);
}

/* ---- grants and leases ---- */

/* A grant runs a grant length from its round's start; while one is alive
 * the node's mounts may hold what it said. */
static void test_grant_expiry(void **state)
{
	(void)state;
	uint64_t start = now_ns;
	advance_ms(30); /* the round took a while */
	uint64_t until = coherence_grant(F.c, start);
	assert_int_equal(until, start + CACHE_MS * MS);
	assert_true(coherence_caches_live(F.c));
	/* A change the mounts have not acted on yet. */
	coherence_change_pending(F.c);
	F.applied = 11;
	assert_true(coherence_notice_sent(F.c, 1));
	assert_true(coherence_visible(F.c) < 11);
	done = 0;
	coherence_wait_visible(F.c, 11, on_done, &done);
	assert_int_equal(done, 0);
	assert_int_equal(coherence_due_ms(F.c), until / MS + 1);
	now_ns = until;
	coherence_poll(F.c);
	assert_int_equal(done, 0);
	advance_ms(1);
	assert_false(coherence_caches_live(F.c));
	coherence_poll(F.c);
	assert_int_equal(done, 1);
}

/* No grant where the node may not give one (storage down, sole voter
 * without an entry of its term). */
static void test_no_grant_when_not_allowed(void **state)
{
	(void)state;
	F.storage_ok = false;
	assert_int_equal(coherence_grant(F.c, now_ns), 0);
	assert_false(coherence_caches_live(F.c));
	bool renew;
	coherence_round_served(F.c, now_ns);
	assert_int_equal(coherence_lease(F.c, &renew), 0);
}

/* A lease ends a margin before its round's grants, and asks for renewal
 * once a quarter of it has passed. */
static void test_lease_margin(void **state)
{
	(void)state;
	bool renew = true;
	assert_int_equal(coherence_lease(F.c, &renew), 0); /* no round yet */
	uint64_t start = follower_round();
	assert_int_equal(coherence_lease(F.c, &renew), start);
	assert_false(renew);
	now_ns = start + (CACHE_MS - 5) * MS / 4 - 1;
	assert_int_equal(coherence_lease(F.c, &renew), start);
	assert_false(renew);
	now_ns = start + (CACHE_MS - 5) * MS / 4;
	assert_int_equal(coherence_lease(F.c, &renew), start);
	assert_true(renew);
	now_ns = start + (CACHE_MS - 5) * MS - 1;
	assert_int_equal(coherence_lease(F.c, &renew), start);
	now_ns = start + (CACHE_MS - 5) * MS;
	assert_int_equal(coherence_lease(F.c, &renew), 0);
	/* An older round served late does not move it back. */
	coherence_round_served(F.c, start - MS);
	uint64_t newer = follower_round();
	coherence_round_served(F.c, start);
	assert_int_equal(coherence_lease(F.c, &renew), newer);
}

/* While F's lease holds, a write through L is not safe until F shows it:
 * a read at F under the lease can never go back in time. */
static void test_lease_read_never_stale(void **state)
{
	(void)state;
	leader_settled();
	uint64_t start = follower_round();
	bool renew;
	uint64_t i = apply_write();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	/* Every moment F's lease says "local state is current", the write is
	 * not acknowledged unless F has applied it. */
	while (coherence_lease(F.c, &renew) == start) {
		coherence_poll(L.c);
		assert_true(done == 0 || F.applied >= i);
		advance_ms(1);
	}
	advance_ms(CACHE_MS - (CACHE_MS - 5) + 1);
	coherence_poll(L.c);
	assert_int_equal(done, 1); /* rule (b), after the lease */
}

/* ---- the visible index ---- */

/* The visible index waits for every watcher to act on the notices. */
static void test_visible_index_follows_acks(void **state)
{
	(void)state;
	coherence_grant(F.c, now_ns);
	assert_int_equal(coherence_visible(F.c), 10);
	coherence_change_pending(F.c);
	F.applied = 11;
	assert_int_equal(coherence_visible(F.c), 10);
	assert_true(coherence_notice_sent(F.c, 1));
	coherence_change_pending(F.c);
	F.applied = 12;
	assert_true(coherence_notice_sent(F.c, 2));
	assert_true(coherence_visible(F.c) < 11);
	coherence_acked(F.c, 1);
	assert_int_equal(coherence_visible(F.c), 11);
	coherence_acked(F.c, 2);
	assert_int_equal(coherence_visible(F.c), 12);
	/* Skipped notices: nothing held, the visible index is the applied. */
	coherence_change_pending(F.c);
	F.applied = 13;
	assert_true(coherence_notice_sent(F.c, 3));
	coherence_notices_skipped(F.c);
	assert_int_equal(coherence_visible(F.c), 13);
}

/* A watcher that goes away while grants are alive may still hold stale
 * entries in its kernel: the visible index stops until they expired. */
static void test_watcher_gone_freezes(void **state)
{
	(void)state;
	coherence_grant(F.c, now_ns);
	coherence_change_pending(F.c);
	F.applied = 11;
	assert_true(coherence_notice_sent(F.c, 1));
	coherence_watcher_gone(F.c);
	coherence_acked(F.c, 1); /* the others acted on it */
	assert_true(coherence_visible(F.c) < 11);
	done = 0;
	coherence_wait_visible(F.c, 11, on_done, &done);
	advance_ms(CACHE_MS);
	coherence_poll(F.c);
	assert_int_equal(done, 0);
	advance_ms(1);
	coherence_poll(F.c);
	assert_int_equal(done, 1);
	assert_int_equal(coherence_visible(F.c), 11);
}

/* Grants given before a seal may outlive it: a new session starts frozen,
 * without a lease. */
static void test_session_start_freezes(void **state)
{
	(void)state;
	follower_round();
	coherence_grant(F.c, now_ns);
	coherence_session_start(F.c);
	bool renew;
	assert_int_equal(coherence_lease(F.c, &renew), 0);
	F.applied = 20; /* the new session applied the log again */
	assert_int_equal(coherence_visible(F.c), 10);
	done = 0;
	coherence_wait_grants_gone(F.c, on_done, &done);
	assert_int_equal(done, 0);
	advance_ms(CACHE_MS + 1);
	coherence_poll(F.c);
	assert_int_equal(done, 1);
	assert_int_equal(coherence_visible(F.c), 20);
}

/* ---- reports ---- */

/* A follower reports its visible index while it may hold grants, once per
 * change, and again to a new leader after a failure. */
static void test_follower_reports(void **state)
{
	(void)state;
	coherence_turn_ended(F.c);
	assert_false(F.report_sent); /* no round: no grants to report on */
	follower_round();
	coherence_turn_ended(F.c);
	assert_true(F.report_sent);
	assert_int_equal(F.report_index, 10);
	F.report_sent = false;
	coherence_report_done(F.c, 0);
	coherence_turn_ended(F.c);
	assert_false(F.report_sent); /* nothing new */
	F.applied = 11;
	coherence_turn_ended(F.c);
	assert_true(F.report_sent);
	assert_int_equal(F.report_index, 11);
	F.report_sent = false;
	coherence_report_done(F.c, -ETIMEDOUT);
	coherence_turn_ended(F.c);
	assert_true(F.report_sent); /* lost: told again */
	/* A report of an older term does not count at the leader. */
	leader_settled();
	follower_round();
	coherence_peer_visible(L.c, F.id, L.term - 1, 99);
	uint64_t i = apply_write();
	done = 0;
	coherence_wait_written(L.c, i, on_done, &done);
	assert_int_equal(done, 0);
	coherence_fail_waiters(L.c, -ESHUTDOWN);
	assert_int_equal(done, -ESHUTDOWN);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_write_waits_for_node_with_grant),
		T(test_dead_node_costs_one_grant),
		T(test_node_without_round_is_not_waited_for),
		T(test_new_leader_waits_out_old_grants),
		T(test_leader_waits_for_its_own_mounts),
		T(test_safe_index),
		T(test_follower_shows_only_safe_state),
		T(test_wait_safe_fails_without_leadership),
		T(test_grant_expiry),
		T(test_no_grant_when_not_allowed),
		T(test_lease_margin),
		T(test_lease_read_never_stale),
		T(test_visible_index_follows_acks),
		T(test_watcher_gone_freezes),
		T(test_session_start_freezes),
		T(test_follower_reports),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
