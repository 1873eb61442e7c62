/* Unit tests of the node side of cache coherence (src/node/node_watch.c)
 * together with what a mount holds (src/fuse/held.c), on a fake clock.
 *
 * node_watch.c and the coherence rules are compiled in with everything
 * they call elsewhere stubbed: the node is one follower with one mount watching it, the state machine
 * is driven by hand (node_watch_changed, then the applied index moves on,
 * as libraft does after each fsm apply), a loop turn ends with one
 * uv_run(UV_RUN_NOWAIT) (its check phase sends the notices), and the mount
 * acts on each notice as cache.c does: it drops what the notice names and
 * remembers the seq. CLOCK_MONOTONIC is the test's own (--wrap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "fuse/held.h"
#include "lib/log.h"
#include "node/internal.h"

/* ---- the fake clock ---- */

static uint64_t fake_now_ns = 1000000000000u;

int __real_clock_gettime(clockid_t id, struct timespec *ts);
int __wrap_clock_gettime(clockid_t id, struct timespec *ts)
{
	if (id != CLOCK_MONOTONIC)
		return __real_clock_gettime(id, ts);
	ts->tv_sec = (time_t)(fake_now_ns / 1000000000u);
	ts->tv_nsec = (long)(fake_now_ns % 1000000000u);
	return 0;
}

/* ---- the rest of the node, stubbed ---- */

static uint64_t applied;
static struct api_conn *const mount_conn = (struct api_conn *)0x10;
static struct api_conn *const late_conn = (struct api_conn *)0x20;
static unsigned drops;
static struct node node;

void log_msg(enum log_level level, const char *fmt, ...)
{
	(void)level;
	(void)fmt;
}
uint64_t node_query_applied_index(const struct node *n)
{
	(void)n;
	return applied;
}
bool node_query_is_leader(const struct node *n)
{
	(void)n;
	return false;
}
bool node_query_is_sole_voter(const struct node *n)
{
	(void)n;
	return false;
}
bool node_query_committed_in_term(const struct node *n)
{
	(void)n;
	return true;
}
static bool storage_mute;
bool node_storage_mute(const struct node *n)
{
	(void)n;
	return storage_mute;
}
const char *node_query_leader_address(const struct node *n)
{
	(void)n;
	return NULL; /* no leader to report the visible index to */
}
void node_cluster_push_commit(struct node *n, raft_id follower)
{
	(void)n;
	(void)follower;
}
int transport_rpc(struct transport *t, const char *address, uint16_t type, const void *payload,
		  size_t len, unsigned timeout_ms, transport_rpc_cb cb, void *arg)
{
	(void)t, (void)address, (void)type, (void)payload, (void)len, (void)timeout_ms;
	(void)cb, (void)arg;
	return -EAGAIN;
}
void transport_rpc_reply(struct transport_rpc_req *req, int status, const void *payload,
			 size_t len)
{
	(void)req, (void)status, (void)payload, (void)len;
}
void node_handle_closed(uv_handle_t *h)
{
	(void)h;
}
/* The mount is process 100, the late watcher process 200. */
int api_conn_pid(const struct api_conn *conn)
{
	return conn == mount_conn ? 100 : 200;
}
uint32_t api_conn_version(const struct api_conn *conn)
{
	(void)conn;
	return VFS_PROTO_VERSION;
}

void api_watch_drop(struct api_conn *conn, const char *why)
{
	(void)why;
	drops++;
	node_watch_hooks_for_api()->gone(&node, conn);
}

/* ---- the mount (cache.c's act_on, in line) ---- */

static struct held *mount_held;
static uint64_t mount_processed;
static unsigned notices_to_late_conn;

void api_notice(struct api_conn *conn, uint64_t seq, const void *payload, size_t len)
{
	if (conn == late_conn) {
		notices_to_late_conn++;
		return;
	}
	assert_true(conn == mount_conn);
	struct cursor c;
	cursor_init(&c, payload, len);
	uint8_t flags = cursor_u8(&c);
	uint32_t n = cursor_u32(&c);
	if (flags & VFS_NOTICE_ALL)
		held_drop_all(mount_held, seq);
	for (uint32_t i = 0; i < n; i++)
		held_drop(mount_held, cursor_u64(&c), seq);
	assert_int_equal(cursor_done(&c), 0);
	assert_true(seq > mount_processed);
	mount_processed = seq;
}

/* ---- the node ---- */

static struct raft_session session;
static const struct api_watch_hooks *hooks;

static int setup(void **state)
{
	(void)state;
	memset(&node, 0, sizeof(node));
	memset(&session, 0, sizeof(session));
	node.loop = malloc(sizeof(uv_loop_t));
	assert_non_null(node.loop);
	assert_int_equal(uv_loop_init(node.loop), 0);
	node.node_id = "n1";
	node.cfg.election_timeout_ms = 1000; /* grants of 100 ms */
	node.phase = NODE_ACTIVE;
	node.session = &session;
	assert_int_equal(node_watch_init(&node), 0);
	hooks = node_watch_hooks_for_api();
	mount_held = held_new();
	assert_non_null(mount_held);
	mount_processed = hooks->start(&node, mount_conn);
	applied = 100;
	storage_mute = false;
	drops = 0;
	notices_to_late_conn = 0;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	coherence_fail_waiters(node.coherence, -ESHUTDOWN);
	assert_int_equal(node_watch_close(&node), 2);
	uv_run(node.loop, UV_RUN_DEFAULT);
	node_watch_free(&node);
	assert_int_equal(uv_loop_close(node.loop), 0);
	free(node.loop);
	held_free(mount_held);
	return 0;
}

/* The state machine applies the next entry, which changes INO. */
static void apply_change(uint64_t ino)
{
	struct store_changes ch;
	memset(&ch, 0, sizeof(ch));
	ch.n = 1;
	ch.ino[0] = ino;
	node_watch_changed(&node, &ch);
	applied++; /* libraft moves last_applied after the fsm's apply */
}

/* The loop turn ends: the check phase sends what the turn changed. */
static void end_turn(void)
{
	uv_run(node.loop, UV_RUN_NOWAIT);
}

/* A read from process PID served now, after a round that started now: its
 * grant's end (0: none). */
static uint64_t grant_to(int pid)
{
	struct api_request req = { .peer_pid = pid };
	return node_watch_grant(&node, &req, fake_now_ns);
}

/* A read from the mount served now under a grant: its grant's end, and its
 * stamp as api_reply takes it. */
static uint64_t serve_granted(uint64_t *ret_stamp)
{
	uint64_t until = grant_to(100);
	assert_true(until > fake_now_ns);
	*ret_stamp = hooks->state_index(&node);
	return until;
}

static bool mount_holds(uint64_t ino, const char *value)
{
	const uint8_t *data;
	size_t len;
	return held_value(mount_held, ino, fake_now_ns, &data, &len) && len == strlen(value) &&
	       memcmp(data, value, len) == 0;
}

static void on_visible(void *arg, int status)
{
	int *done = arg;
	assert_int_equal(status, 0);
	*done = 1;
}

/* The fault run's stale read (seed 4242): in one loop turn the node applies
 * a change to another secret, serves a granted read of X (old value), then
 * applies a write to X. The read is stamped with the seq of the notice
 * that also drops X; the mount, which acts on that notice before the read's
 * answer arrives, must not hold the old value after the write was
 * acknowledged. */
static void test_read_between_changes_of_one_turn(void **state)
{
	(void)state;
	const uint64_t other = 7, x = 42;
	apply_change(other);
	uint64_t stamp;
	uint64_t until = serve_granted(&stamp);
	apply_change(x); /* the write of X, entry 102 */
	int visible = 0;
	coherence_wait_visible(node.coherence, applied, on_visible, &visible);
	assert_int_equal(visible, 0); /* the mount may still hold X */
	end_turn();
	/* The mount acts on what it was sent and acknowledges. */
	hooks->ack(&node, mount_conn, mount_processed);
	assert_int_equal(visible, 1); /* so the write may be acknowledged */
	/* Now the read's answer reaches the mount: admitted (its notices
	 * were acted on), and offered to the held table. */
	assert_true(mount_processed >= stamp);
	held_put_value(mount_held, stamp, until, x, (const uint8_t *)"old", 3);
	assert_false(mount_holds(x, "old"));
	assert_int_equal(drops, 0);
}

/* A read of X after the write in the same turn shows the new value: the
 * mount may hold it. */
static void test_read_after_change_may_be_held(void **state)
{
	(void)state;
	const uint64_t other = 7, x = 42;
	apply_change(other);
	uint64_t early;
	serve_granted(&early);
	apply_change(x);
	uint64_t stamp;
	uint64_t until = serve_granted(&stamp);
	assert_true(stamp > early);
	end_turn();
	hooks->ack(&node, mount_conn, mount_processed);
	held_put_value(mount_held, stamp, until, x, (const uint8_t *)"new", 3);
	assert_true(mount_holds(x, "new"));
}

/* Without a stamp in between, the changes of a turn share one notice. */
static void test_one_notice_per_turn_without_stamps(void **state)
{
	(void)state;
	uint64_t stamp;
	serve_granted(&stamp); /* a grant alive: notices are sent */
	uint64_t before = mount_processed;
	apply_change(7);
	apply_change(8);
	apply_change(9);
	end_turn();
	assert_int_equal(mount_processed, before + 1);
}

/* Notices skipped while no grant was alive count as acknowledged; the
 * mount's late acknowledgement of a notice sent before them is no protocol
 * error (it dropped the watcher, and with it all the mount held). */
static void test_late_ack_after_skipped_notices(void **state)
{
	(void)state;
	uint64_t stamp;
	uint64_t until = serve_granted(&stamp);
	apply_change(7);
	end_turn();
	uint64_t sent = mount_processed; /* the mount has not acked it yet */
	fake_now_ns = until + 1000000u;  /* every grant is over */
	apply_change(8);
	end_turn(); /* skipped: nobody may hold anything */
	hooks->ack(&node, mount_conn, sent);
	assert_int_equal(drops, 0);
	/* An acknowledgement of a notice never sent still is one. */
	hooks->ack(&node, mount_conn, sent + 100);
	assert_int_equal(drops, 1);
}

/* A mount that starts watching while notices of this turn are queued
 * starts after them: it is not sent any. */
static void test_watch_begun_after_queued_notices(void **state)
{
	(void)state;
	uint64_t stamp;
	serve_granted(&stamp);
	apply_change(7);
	serve_granted(&stamp);
	apply_change(8); /* closes the notice of 7 */
	uint64_t start = hooks->start(&node, late_conn);
	assert_true(start >= stamp);
	end_turn();
	assert_int_equal(notices_to_late_conn, 1); /* only the notice of 8 */
	hooks->gone(&node, late_conn);
}

/* Only a process that watches gets grants: one whose watch was dropped
 * may not know it yet and would hold what no notice drops any more. */
static void test_grants_only_to_watching_processes(void **state)
{
	(void)state;
	assert_true(grant_to(100) > 0);
	assert_int_equal(grant_to(300), 0);  /* never watched */
	assert_int_equal(grant_to(-1), 0);   /* unknown pid */
	api_watch_drop(mount_conn, "test");
	assert_int_equal(grant_to(100), 0);
	mount_processed = hooks->start(&node, mount_conn); /* it watches again */
	assert_true(grant_to(100) > 0);
}

/* A node following without storage holds no grants and no lease: its
 * read rounds told the leader so, and no write waits for it. */
static void test_no_grants_without_storage(void **state)
{
	(void)state;
	bool renew = false;
	assert_true(grant_to(100) > 0);
	coherence_round_served(node.coherence, fake_now_ns);
	assert_true(coherence_lease(node.coherence, &renew) != 0);
	storage_mute = true;
	assert_int_equal(grant_to(100), 0);
	assert_int_equal(coherence_lease(node.coherence, &renew), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_between_changes_of_one_turn, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_read_after_change_may_be_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_notice_per_turn_without_stamps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_late_ack_after_skipped_notices, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_watch_begun_after_queued_notices, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_grants_only_to_watching_processes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_no_grants_without_storage, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
