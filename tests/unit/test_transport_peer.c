/* Unit tests for src/raft/transport_peer.c's backoff: how long a peer
 * waits before it is dialled again after failed attempts, and what resets
 * the wait. Drives transport_peer_conn_lost and transport_peer_ready on a
 * peer of a bare struct transport; nothing is dialled. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/transport_internal.h"

#define ADDRESS "127.0.0.1:9"

struct fx {
	uv_loop_t loop;
	struct transport t;
	struct peer *p;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->t.loop = &f->loop;
	f->p = transport_peer_get(&f->t, ADDRESS);
	assert_non_null(f->p);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	transport_peer_close(f->p);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f->t.handles, 0);
	transport_peer_free_all(&f->t);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	free(f);
	return 0;
}

/* One failed attempt: the peer waits, with its timer due when the wait
 * ends. */
static void fail_once(struct fx *f, unsigned want_ms)
{
	transport_peer_conn_lost(f->p, false, "test");
	assert_int_equal(f->p->state, P_BACKOFF);
	assert_int_equal(f->p->backoff_ms, want_ms);
	assert_true(uv_is_active((uv_handle_t *)&f->p->timer));
	assert_int_equal(uv_timer_get_due_in(&f->p->timer), want_ms);
}

/* One peer per address, its timer counted among the transport's handles. */
static void test_peer_get(void **state)
{
	struct fx *f = *state;
	assert_ptr_equal(transport_peer_get(&f->t, ADDRESS), f->p);
	assert_string_equal(f->p->address, ADDRESS);
	assert_int_equal(f->p->state, P_IDLE);
	assert_int_equal(f->t.handles, 1);
}

/* The wait starts at BACKOFF_MIN_MS and doubles with each failed attempt
 * up to BACKOFF_MAX_MS, where it stays. */
static void test_backoff_doubles_to_cap(void **state)
{
	struct fx *f = *state;
	unsigned want = BACKOFF_MIN_MS;
	for (unsigned i = 0; i < 12; i++) {
		fail_once(f, want);
		want = want * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : want * 2;
	}
	assert_int_equal(f->p->backoff_ms, BACKOFF_MAX_MS);
	assert_true(f->p->warned);
}

/* Refused while waiting: the caller keeps its message (Raft retries). */
static void test_backoff_refuses(void **state)
{
	struct fx *f = *state;
	fail_once(f, BACKOFF_MIN_MS);
	struct buf pt;
	buf_init(&pt);
	buf_put_u8(&pt, K_RAFT);
	assert_int_equal(transport_peer_submit(f->p, &pt, NULL, NULL), -ECONNREFUSED);
	assert_int_equal(pt.len, 1);
	assert_int_equal(f->p->qcount, 0);
	buf_free(&pt);
}

/* A connection that worked, then closed, is redialled on the next message
 * without waiting; a handshake that succeeds forgets the failures. Either
 * way the next failure waits BACKOFF_MIN_MS again. */
static void test_backoff_resets(void **state)
{
	struct fx *f = *state;
	fail_once(f, BACKOFF_MIN_MS);
	fail_once(f, 2 * BACKOFF_MIN_MS);
	transport_peer_conn_lost(f->p, true, "test");
	assert_int_equal(f->p->state, P_IDLE);
	assert_int_equal(f->p->backoff_ms, 0);
	fail_once(f, BACKOFF_MIN_MS);
	fail_once(f, 2 * BACKOFF_MIN_MS);

	transport_peer_ready(f->p);
	assert_int_equal(f->p->state, P_READY);
	assert_int_equal(f->p->backoff_ms, 0);
	assert_false(f->p->warned);
	fail_once(f, BACKOFF_MIN_MS);
}

/* A test on a fixture of its own. */
#define FX_TEST(test) cmocka_unit_test_setup_teardown(test, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		FX_TEST(test_peer_get),
		FX_TEST(test_backoff_doubles_to_cap),
		FX_TEST(test_backoff_refuses),
		FX_TEST(test_backoff_resets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
