/* Unit tests for the exactly-once window (store_once.c): replays, floors,
 * the cap on kept results, client expiry, and the window across a dump and
 * restore. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "store_fixture.h"

static void test_dedup(void **state)
{
	struct fx *f = *state;
	struct cmd c = create_cmd("once");
	assert_int_equal(apply_as(f->s, c, 7, 5, 0, 1), 2);
	/* A retry, even with a different time, changes nothing. */
	assert_fails_unchanged(f, apply_as(f->s, c, 7, 5, 0, 2), 2);
	assert_fails_unchanged(f, apply_as(f->s, c, 7, 5, 5, 3), 2);

	/* Another client with the same seq is independent. */
	assert_int_equal(apply_as(f->s, c, 8, 5, 0, 4), -EEXIST);

	/* A failed command's result is remembered too. */
	struct cmd u = named(CMD_UNLINK, VFS_ROOT_INO, "once");
	assert_int_equal(apply_as(f->s, u, 9, 1, 0, 5), 0);
	assert_int_equal(apply_as(f->s, c, 8, 5, 0, 6), -EEXIST);
	struct vfs_attr a;
	assert_int_equal(lookup(f, VFS_ROOT_INO, "once", &a), -ENOENT);
	/* ... and so is the success of the unlink, whose replay would fail. */
	assert_int_equal(apply_as(f->s, u, 9, 1, 0, 7), 0);

	/* The next sequence number is applied. */
	assert_int_equal(apply_as(f->s, c, 8, 6, 0, 8), 3);
	assert_int_equal(apply_as(f->s, c, 7, 6, 0, 9), -EEXIST);
	/* Seqs are u64: the largest one is an ordinary seq, below it too. */
	c = create_cmd("big");
	assert_int_equal(apply_as(f->s, c, 7, UINT64_MAX, 0, 10), 4);
	assert_fails_unchanged(f, apply_as(f->s, c, 7, UINT64_MAX, 0, 11), 4);
	c = create_cmd("big2");
	assert_int_equal(apply_as(f->s, c, 7, 0x8000000000000000u, 0, 12), 5);
	assert_int_equal(apply_as(f->s, c, 7, 0x7fffffffffffffffu, 0, 13), -EEXIST);
}

/* Pipelined commands whose answers were lost reach the log out of order
 * after a leader change: each is applied exactly once, with its own
 * result. */
static void test_out_of_order(void **state)
{
	struct fx *f = *state;
	struct cmd six = create_cmd("six"), five = create_cmd("five");
	assert_int_equal(apply_as(f->s, six, 7, 6, 5, 100), 2);
	assert_int_equal(apply_as(f->s, five, 7, 5, 5, 101), 3);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "six"), 2);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "five"), 3);

	/* Retries of both, in either order, answer as the first time. */
	assert_fails_unchanged(f, apply_as(f->s, five, 7, 5, 5, 102), 3);
	assert_fails_unchanged(f, apply_as(f->s, six, 7, 6, 5, 103), 2);
	/* A retry is known by (client, seq), not by what it carries. */
	struct cmd other = create_cmd("other");
	assert_fails_unchanged(f, apply_as(f->s, other, 7, 5, 5, 104), 3);

	/* Below the floor (seqs < 5 are acknowledged): never applied. */
	assert_fails_unchanged(f, apply_as(f->s, other, 7, 4, 5, 105), -EALREADY);
	/* A gap above the floor is still open: seq 8 then 7. */
	struct cmd eight = create_cmd("eight"), seven = create_cmd("seven");
	assert_int_equal(apply_as(f->s, eight, 7, 8, 5, 106), 4);
	assert_int_equal(apply_as(f->s, seven, 7, 7, 5, 107), 5);
	assert_fails_unchanged(f, apply_as(f->s, eight, 7, 8, 7, 108), 4);
	assert_int_equal(ino_of(f, VFS_ROOT_INO, "seven"), 5);
}

/* The kept seqs of CLIENT in F's store, via a dump. */
static void kept_seqs(struct store *s, uint64_t client, uint64_t *floor, uint64_t *seqs,
		      uint32_t max, uint32_t *n)
{
	struct buf d;
	struct dedup dd;
	buf_init(&d);
	assert_int_equal(store_dump(s, &d), 0);
	parse_dedup(&d, &dd);
	const struct dclient *dc = dclient_of(&dd, client);
	assert_non_null(dc);
	*floor = dc->floor;
	*n = dc->k;
	assert_true(dc->k <= max);
	for (uint32_t i = 0; i < dc->k; i++)
		seqs[i] = get_u64_at(&d, dc->rows_off + 16 * i);
	buf_free(&d);
}

/* ack_below forgets answered results; a command below the floor is never
 * applied, however it arrives. */
static void test_ack_below(void **state)
{
	struct fx *f = *state;
	struct cmd a = create_cmd("a"), b = create_cmd("b"), c = create_cmd("c");
	uint64_t floor, seqs[8];
	uint32_t n;
	assert_int_equal(apply_as(f->s, a, 7, 1, 1, 10), 2);
	assert_int_equal(apply_as(f->s, b, 7, 2, 1, 11), 3);
	assert_int_equal(apply_as(f->s, c, 7, 3, 1, 12), 4);
	kept_seqs(f->s, 7, &floor, seqs, 8, &n);
	assert_true(floor == 1);
	assert_int_equal(n, 3);

	/* seq 4 says 1 and 2 are answered: their rows go. */
	assert_int_equal(apply_as(f->s, noop_cmd(), 7, 4, 3, 13), -ENOENT);
	kept_seqs(f->s, 7, &floor, seqs, 8, &n);
	assert_true(floor == 3);
	assert_int_equal(n, 2);
	assert_true(seqs[0] == 3 && seqs[1] == 4);

	/* A (buggy or very late) retry of seq 2 or 1 applies nothing, even
	 * though "b" no longer exists and it would succeed again. */
	struct cmd ub = named(CMD_UNLINK, VFS_ROOT_INO, "b");
	assert_int_equal(apply_as(f->s, ub, 8, 1, 0, 14), 0);
	assert_fails_unchanged(f, apply_as(f->s, b, 7, 2, 3, 15), -EALREADY);
	assert_fails_unchanged(f, apply_as(f->s, a, 7, 1, 0, 16), -EALREADY);
	/* seq 3 is still above the floor: its answer is kept. */
	assert_fails_unchanged(f, apply_as(f->s, c, 7, 3, 3, 17), 4);

	/* A lower ack_below never lowers the floor. */
	assert_int_equal(apply_as(f->s, noop_cmd(), 7, 5, 1, 18), -ENOENT);
	assert_fails_unchanged(f, apply_as(f->s, b, 7, 2, 1, 19), -EALREADY);
	/* A duplicate raises the floor too; then seq 3 is gone. */
	assert_fails_unchanged(f, apply_as(f->s, c, 7, 5, 4, 20), -ENOENT);
	assert_fails_unchanged(f, apply_as(f->s, c, 7, 3, 4, 21), -EALREADY);
	kept_seqs(f->s, 7, &floor, seqs, 8, &n);
	assert_true(floor == 4);
	assert_int_equal(n, 2);
	assert_true(seqs[0] == 4 && seqs[1] == 5);
	/* Acknowledging its own seq: the command is below the floor. */
	assert_fails_unchanged(f, apply_as(f->s, c, 7, 6, 7, 22), -EALREADY);
	kept_seqs(f->s, 7, &floor, seqs, 8, &n);
	assert_true(floor == 7);
	assert_int_equal(n, 0);
	/* Floors and order are unsigned across 2^63 (client 9). */
	const uint64_t mid = 0x8000000000000000u;
	assert_int_equal(apply_as(f->s, noop_cmd(), 9, UINT64_MAX, 0, 23), -ENOENT);
	assert_int_equal(apply_as(f->s, noop_cmd(), 9, mid, 0, 24), -ENOENT);
	assert_int_equal(apply_as(f->s, noop_cmd(), 9, mid - 1, 0, 25), -ENOENT);
	assert_int_equal(apply_as(f->s, noop_cmd(), 9, 1, 0, 26), -ENOENT);
	kept_seqs(f->s, 9, &floor, seqs, 8, &n);
	assert_int_equal(n, 4);
	assert_true(seqs[0] == 1 && seqs[1] == mid - 1 && seqs[2] == mid && seqs[3] == UINT64_MAX);
	assert_fails_unchanged(f, apply_as(f->s, b, 9, 2, mid + 1, 27), -EALREADY);
	kept_seqs(f->s, 9, &floor, seqs, 8, &n);
	assert_true(floor == mid + 1);
	assert_int_equal(n, 1);
	assert_true(seqs[0] == UINT64_MAX);
	assert_fails_unchanged(f, apply_as(f->s, b, 9, mid, 0, 28), -EALREADY);
	assert_fails_unchanged(f, apply_as(f->s, b, 9, UINT64_MAX, 0, 29), -ENOENT);

	/* The other client kept its own floor and row. */
	kept_seqs(f->s, 8, &floor, seqs, 8, &n);
	assert_true(floor == 0);
	assert_int_equal(n, 1);
}

/* Beyond STORE_MAX_RESULTS kept results the lowest are forgotten, and their
 * retries are answered -EALREADY rather than applied again. */
static void test_cap_eviction(void **state)
{
	struct fx *f = *state;
	const uint64_t cap = STORE_MAX_RESULTS;
	struct cmd a = create_cmd("a"), b = create_cmd("b");
	assert_int_equal(apply_as(f->s, a, 7, 1, 0, 1), 2);
	assert_int_equal(apply_as(f->s, b, 7, 2, 0, 2), 3);
	/* Seqs 3..cap: a full table, nothing forgotten yet. */
	for (uint64_t seq = 3; seq <= cap; seq++)
		assert_int_equal(apply_as(f->s, noop_cmd(), 7, seq, 0, 3), -ENOENT);
	struct cmd ua = named(CMD_UNLINK, VFS_ROOT_INO, "a");
	assert_int_equal(apply_as(f->s, ua, 8, 1, 0, 3), 0);
	assert_fails_unchanged(f, apply_as(f->s, a, 7, 1, 0, 3), 2);

	/* One more: seq 1 goes, the floor moves just past it. */
	assert_int_equal(apply_as(f->s, noop_cmd(), 7, cap + 1, 0, 3), -ENOENT);
	assert_fails_unchanged(f, apply_as(f->s, a, 7, 1, 0, 3), -EALREADY);
	assert_fails_unchanged(f, apply_as(f->s, b, 7, 2, 0, 3), 3);
	struct buf d;
	struct dedup dd;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	parse_dedup(&d, &dd);
	const struct dclient *dc = dclient_of(&dd, 7);
	assert_non_null(dc);
	assert_true(dc->floor == 2);
	assert_true(dc->k == cap);
	assert_true(get_u64_at(&d, dc->rows_off) == 2);
	assert_true(get_u64_at(&d, dc->rows_off + 16 * (cap - 1)) == cap + 1);
	/* A dump at the cap restores. */
	struct fx *g = fx_new_on(f);
	assert_int_equal(store_restore(g->s, d.data, d.len), 0);
	assert_fails_unchanged(g, apply_as(g->s, b, 7, 2, 0, 3), 3);
	fx_free(g);
	buf_free(&d);

	/* A new seq above a gap still applies: only seqs below the floor are
	 * refused. Two more commands push out seq 2 (and the floor to 3). */
	assert_int_equal(apply_as(f->s, noop_cmd(), 7, cap + 10, 0, 3), -ENOENT);
	assert_fails_unchanged(f, apply_as(f->s, b, 7, 2, 0, 3), -EALREADY);
}

/* Idle clients are forgotten after STORE_CLIENT_EXPIRY_NS of command time,
 * only at every STORE_EXPIRY_EVERY-th apply, identically on every replica. */
static void expiry_script(struct store *s)
{
	const int64_t t0 = 1000000;
	const int64_t late = t0 + STORE_CLIENT_EXPIRY_NS + 1;
	/* Apply #1, #2: client 10 at t0, client 11 at exactly late - expiry. */
	assert_int_equal(apply_as(s, create_cmd("a"), 10, 1, 0, t0), 2);
	assert_int_equal(apply_as(s, noop_cmd(), 11, 1, 0, late - STORE_CLIENT_EXPIRY_NS),
			 -ENOENT);
	/* #3 .. #997: client 20, much later. */
	uint64_t seq = 0;
	for (uint32_t i = 3; i <= STORE_EXPIRY_EVERY - 3; i++) {
		seq++;
		assert_int_equal(apply_as(s, noop_cmd(), 20, seq, seq, late), -ENOENT);
	}
	/* #998: a retry of client 11 stamped earlier does not age it. */
	assert_int_equal(apply_as(s, noop_cmd(), 11, 1, 0, t0 - 5), -ENOENT);
	/* #999: no sweep yet, client 10's answer is still kept. */
	assert_int_equal(apply_as(s, create_cmd("a"), 10, 1, 0, t0), 2);
	/* #1000: the sweep forgets client 10, not 11 (exactly at the limit)
	 * nor 20. */
	seq++;
	assert_int_equal(apply_as(s, noop_cmd(), 20, seq, seq, late), -ENOENT);
}

static void test_client_expiry(void **state)
{
	struct fx *f = *state;
	struct fx *g = fx_new_on(f);
	expiry_script(f->s);
	expiry_script(g->s);

	struct buf d;
	struct dedup dd;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	parse_dedup(&d, &dd);
	assert_true(dd.applies == STORE_EXPIRY_EVERY);
	assert_null(dclient_of(&dd, 10));
	assert_non_null(dclient_of(&dd, 11));
	assert_non_null(dclient_of(&dd, 20));
	/* Both replicas agree byte for byte on the exactly-once state. */
	assert_same_once_state(f->s, g->s);
	assert_same_tree(f->s, g->s);

	/* Forgotten: client 10's seq 1 is new again (and now fails). */
	assert_int_equal(apply_as(f->s, create_cmd("a"), 10, 1, 0, 5), -EEXIST);
	fx_free(g);
	buf_free(&d);
}

/* The command whose count triggers a sweep is never swept with its client,
 * however long that client was idle before it: its result, just kept, must
 * answer its retry. */
static void test_sweep_spares_current_client(void **state)
{
	struct fx *f = *state;
	const int64_t t0 = 1000000;
	const int64_t late = t0 + STORE_CLIENT_EXPIRY_NS + 1;
	/* #1, #2: clients 10 and 11 at t0; #3 .. #999: client 20, much later. */
	assert_int_equal(apply_as(f->s, create_cmd("a"), 10, 1, 0, t0), 2);
	assert_int_equal(apply_as(f->s, noop_cmd(), 11, 1, 0, t0), -ENOENT);
	for (uint64_t seq = 1; seq <= STORE_EXPIRY_EVERY - 3; seq++)
		assert_int_equal(apply_as(f->s, noop_cmd(), 20, seq, seq, late), -ENOENT);
	/* #1000 sweeps: client 10 is back, as idle as client 11. */
	assert_int_equal(apply_as(f->s, create_cmd("b"), 10, 2, 0, late), 3);

	uint64_t floor, seqs[4];
	uint32_t n;
	kept_seqs(f->s, 10, &floor, seqs, 4, &n);
	assert_int_equal(n, 2);
	assert_fails_unchanged(f, apply_as(f->s, create_cmd("b"), 10, 2, 0, late), 3);
	assert_fails_unchanged(f, apply_as(f->s, create_cmd("a"), 10, 1, 0, late), 2);
	/* The sweep did run: client 11 is forgotten, its seq 1 is new again. */
	assert_int_equal(apply_as(f->s, create_cmd("a"), 11, 1, 0, late), -EEXIST);
}

/* Command times are replicated input and may be anything: a sweep less than
 * STORE_CLIENT_EXPIRY_NS after the earliest time there is forgets nobody
 * (no client can be that idle), and computes no time before it. */
static void test_sweep_at_earliest_times(void **state)
{
	struct fx *f = *state;
	const int64_t t0 = INT64_MIN;
	const int64_t now = t0 + STORE_CLIENT_EXPIRY_NS - 1;
	assert_int_equal(apply_as(f->s, create_cmd("a"), 10, 1, 0, t0), 2);
	/* #2 .. #1000, the last of which sweeps. */
	for (uint64_t seq = 1; seq <= STORE_EXPIRY_EVERY - 1; seq++)
		assert_int_equal(apply_as(f->s, noop_cmd(), 20, seq, seq, now), -ENOENT);
	assert_fails_unchanged(f, apply_as(f->s, create_cmd("a"), 10, 1, 0, now), 2);
}

/* A replica restored from a dump answers every command as the original:
 * kept results, the floor (raised here by an ack_below that later commands
 * do not repeat) and the gaps above it come along. */
static void test_window_after_restore(void **state)
{
	struct fx *f = *state;
	assert_int_equal(apply_as(f->s, create_cmd("a"), 7, 5, 5, 10), 2);
	assert_int_equal(apply_as(f->s, create_cmd("b"), 7, 7, 5, 11), 3);
	struct buf d;
	buf_init(&d);
	assert_int_equal(store_dump(f->s, &d), 0);
	struct fx *g = fx_new_on(f);
	assert_int_equal(store_restore(g->s, d.data, d.len), 0);
	buf_free(&d);

	struct fx *both[] = { f, g };
	for (size_t i = 0; i < 2; i++) {
		struct fx *h = both[i];
		assert_fails_unchanged(h, apply_as(h->s, create_cmd("x"), 7, 4, 0, 12), -EALREADY);
		assert_fails_unchanged(h, apply_as(h->s, create_cmd("x"), 7, 5, 0, 13), 2);
		assert_fails_unchanged(h, apply_as(h->s, create_cmd("x"), 7, 7, 0, 14), 3);
		assert_int_equal(apply_as(h->s, create_cmd("x"), 7, 6, 0, 15), 4);
	}
	assert_same_once_state(f->s, g->s);
	fx_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		STORE_TEST(test_dedup),
		STORE_TEST(test_out_of_order),
		STORE_TEST(test_ack_below),
		STORE_TEST(test_cap_eviction),
		STORE_TEST(test_client_expiry),
		STORE_TEST(test_sweep_spares_current_client),
		STORE_TEST(test_sweep_at_earliest_times),
		STORE_TEST(test_window_after_restore),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
