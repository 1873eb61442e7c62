/* Unit tests for src/raft/transport_wire.c's frame admission
 * (transport_wire_frame_admit): how much one frame may add to the message
 * it belongs to, decided from the frame's header before its bytes are
 * kept. No socket: a struct conn whose channel finished a handshake in
 * memory, and an identify callback that says whether its identity is a
 * member. test_transport.c covers the same rules end to end. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crypto/channel.h"
#include "crypto/secmem.h"
#include "raft/transport_internal.h"

#define MEMBER_ID 7u

static const uint8_t cluster_key[CHANNEL_KEY_LEN] = "transport_wire unit test key...";

/* A keyring of one term. */
static int one_key(void *arg, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN])
{
	(void)arg;
	if (*term > 1)
		return -ENOKEY;
	*term = 1;
	memcpy(out, cluster_key, CHANNEL_KEY_LEN);
	return 0;
}

struct fx {
	struct channel_identity initiator, responder;
	struct channel *init_ch;
	struct transport t;
	struct conn c; /* the responder's end: what the frames arrive on */
	bool member;   /* the initiator's identity is a member */
	unsigned identify_calls;
};

static int identify(void *ctx, const uint8_t key[CHANNEL_ID_LEN], uint64_t *ret_id,
		    const char **ret_address)
{
	struct fx *f = ctx;
	f->identify_calls++;
	if (!f->member || memcmp(key, f->initiator.pk, CHANNEL_ID_LEN) != 0)
		return -ENOENT;
	*ret_id = MEMBER_ID;
	*ret_address = "127.0.0.1:9";
	return 0;
}

/* The full handshake between f->init_ch and the connection's channel. */
static void handshake(struct fx *f)
{
	struct buf hello, reply, auth;
	buf_init(&hello);
	buf_init(&reply);
	buf_init(&auth);
	assert_int_equal(channel_new(&f->init_ch, &f->initiator, one_key, NULL), 0);
	assert_int_equal(channel_new(&f->c.ch, &f->responder, one_key, NULL), 0);
	assert_int_equal(channel_hello(f->init_ch, &hello), 0);
	assert_int_equal(channel_on_hello(f->c.ch, hello.data, hello.len, &reply), 0);
	assert_int_equal(channel_on_reply(f->init_ch, reply.data, reply.len, &auth), 0);
	assert_int_equal(channel_on_auth(f->c.ch, auth.data, auth.len), 0);
	assert_true(channel_ready(f->c.ch));
	buf_free(&hello);
	buf_free(&reply);
	buf_free(&auth);
}

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	channel_identity_generate(&f->initiator);
	channel_identity_generate(&f->responder);
	f->t.identify = identify;
	f->t.ctx = f;
	f->c.t = &f->t;
	f->c.inbound = true;
	f->c.state = C_READY;
	buf_init(&f->c.rx);
	buf_init(&f->c.frag);
	handshake(f);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	f->c.frag.len = 0; /* set by admit, without data */
	buf_free(&f->c.frag);
	buf_free(&f->c.rx);
	channel_free(f->c.ch);
	channel_free(f->init_ch);
	free(f);
	return 0;
}

/* The frame of N plaintext bytes that follows FRAG bytes of its message
 * on C: 0 (admitted), -EFBIG or -EPERM. */
static int admit(struct conn *c, size_t frag, size_t n)
{
	c->frag.len = frag;
	return transport_wire_frame_admit(c, (uint32_t)(n + CHANNEL_TAG_LEN));
}

/* C may carry messages of LIMIT bytes and no more, in one frame (if one
 * can hold LIMIT bytes) or in fragments. */
static void assert_bound(struct conn *c, size_t limit)
{
	if (limit <= CHANNEL_MAX_FRAME) {
		assert_int_equal(admit(c, 0, limit), 0);
		assert_int_equal(admit(c, 0, limit + 1), -EFBIG);
	}
	assert_int_equal(admit(c, limit - 100, 100), 0);
	assert_int_equal(admit(c, limit - 100, 101), -EFBIG);
	assert_int_equal(admit(c, limit, 1), -EFBIG);
}

/* An identity that is no member may send NONMEMBER_MESSAGE_MAX bytes in a
 * message: not even the header of a larger frame is kept. */
static void test_nonmember(void **state)
{
	struct fx *f = *state;
	assert_bound(&f->c, NONMEMBER_MESSAGE_MAX);
	assert_int_equal(admit(&f->c, 0, CHANNEL_MAX_FRAME), -EFBIG);
	assert_int_equal(f->c.peer_id, 0);
	assert_int_not_equal(f->identify_calls, 0);
}

/* A member may send whole frames, and messages up to MAX_MESSAGE. */
static void test_member(void **state)
{
	struct fx *f = *state;
	f->member = true;
	assert_bound(&f->c, MAX_MESSAGE);
	assert_int_equal(f->c.peer_id, MEMBER_ID);
	assert_int_equal(admit(&f->c, 0, CHANNEL_MAX_FRAME), 0);
	assert_int_equal(admit(&f->c, MAX_MESSAGE - CHANNEL_MAX_FRAME, CHANNEL_MAX_FRAME), 0);
}

/* Who sends is asked at each frame: a member removed in the middle of a
 * message loses the connection at its next frame (one that never was a
 * member is only bounded: test_nonmember). */
static void test_member_removed(void **state)
{
	struct fx *f = *state;
	f->member = true;
	assert_int_equal(admit(&f->c, 0, CHANNEL_MAX_FRAME), 0);
	f->member = false;
	assert_int_equal(admit(&f->c, CHANNEL_MAX_FRAME, 1), -EPERM);
	assert_int_equal(admit(&f->c, 0, 1), -EPERM);
}

/* Before the address frame, even a member may send only an address. */
static void test_address_frame(void **state)
{
	struct fx *f = *state;
	f->member = true;
	f->c.state = C_IN_ADDRESS;
	assert_bound(&f->c, 1u + MAX_ADDRESS);
}

/* On our own outbound connection the responder only answers our RPCs,
 * whoever it is. */
static void test_outbound(void **state)
{
	struct fx *f = *state;
	f->member = true;
	f->c.inbound = false;
	assert_bound(&f->c, RPC_RESP_MAX);
	assert_int_equal(f->identify_calls, 0);
}

static int group_setup(void **state)
{
	(void)state;
	return crypto_global_init(true);
}

/* A test on a fixture of its own. */
#define FX_TEST(test) cmocka_unit_test_setup_teardown(test, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		FX_TEST(test_nonmember),
		FX_TEST(test_member),
		FX_TEST(test_member_removed),
		FX_TEST(test_address_frame),
		FX_TEST(test_outbound),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
