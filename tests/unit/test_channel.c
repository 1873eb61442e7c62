/* Channel: handshake (mutual proof of the cluster key and of each side's
 * identity), agreement on the keyring term whose cluster key it uses, node
 * identities, refusal of a connection to oneself, directional frame
 * encryption, rejection of forged/replayed/reordered frames, the state
 * machine, and the cluster keys derived from the barrier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <sodium.h>

#include "crypto/barrier.h"
#include "crypto/channel.h"
#include "crypto/secmem.h"

/* Field offsets inside HELLO and REPLY, from the layout in channel.h. */
#define HELLO_OFF_VERSION 4u
#define HELLO_OFF_EPHEMERAL 5u
#define HELLO_OFF_STATIC (HELLO_OFF_EPHEMERAL + CHANNEL_ID_LEN)
#define HELLO_OFF_TERM (HELLO_OFF_STATIC + CHANNEL_ID_LEN)
#define REPLY_OFF_STATIC CHANNEL_ID_LEN
#define REPLY_OFF_TERM (2u * CHANNEL_ID_LEN)
#define REPLY_OFF_MAC (REPLY_OFF_TERM + 4u)
#define CHANNEL_VERSION 3u
#define MAX_TERMS 3u

/* The cluster keys of terms 1..MAX_TERMS of two clusters, A and B (secmem,
 * MAX_TERMS x CHANNEL_KEY_LEN bytes each), shared by all tests of one run. */
static uint8_t *keys_a;
static uint8_t *keys_b;

/* A node's keyring as the channel sees it through its key callback: terms
 * 1..n of one cluster's keys (n == 0: sealed). CALLS counts the questions. */
struct ring {
	const uint8_t *keys;
	uint32_t n;
	int calls;
};

/* Both clusters' keyrings before any rotation: term 1 only. Most tests use
 * these as the one cluster key each side holds. */
static struct ring ring_a;
static struct ring ring_b;

static int ring_key(void *arg, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN])
{
	struct ring *r = arg;
	r->calls++;
	if (r->n == 0 || *term > r->n)
		return -ENOKEY;
	if (*term == 0)
		*term = r->n;
	memcpy(out, r->keys + (*term - 1) * CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	return 0;
}

static struct ring ring_of(const uint8_t *keys, uint32_t n)
{
	return (struct ring){ .keys = keys, .n = n };
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
/* Three node identities (secmem): A initiates and B responds unless a test
 * says otherwise; C is a third member whose key others may try to claim. */
static struct channel_identity *id_a;
static struct channel_identity *id_b;
static struct channel_identity *id_c;

static int group_setup(void **state)
{
	(void)state;
	if (crypto_global_init(true) < 0)
		return -1;
	keys_a = secmem_alloc(MAX_TERMS * CHANNEL_KEY_LEN);
	keys_b = secmem_alloc(MAX_TERMS * CHANNEL_KEY_LEN);
	if (keys_a == NULL || keys_b == NULL)
		return -1;
	/* Distinct, fixed keys that differ in one bit only: the channel must
	 * not care where they came from. */
	for (unsigned t = 0; t < MAX_TERMS; t++) {
		memset(keys_a + t * CHANNEL_KEY_LEN, 0xa5 + t, CHANNEL_KEY_LEN);
		memset(keys_b + t * CHANNEL_KEY_LEN, 0xa5 + t, CHANNEL_KEY_LEN);
		keys_b[(t + 1) * CHANNEL_KEY_LEN - 1] ^= 1;
	}
	ring_a = ring_of(keys_a, 1);
	ring_b = ring_of(keys_b, 1);
	id_a = secmem_alloc(sizeof(*id_a));
	id_b = secmem_alloc(sizeof(*id_b));
	id_c = secmem_alloc(sizeof(*id_c));
	if (id_a == NULL || id_b == NULL || id_c == NULL)
		return -1;
	channel_identity_generate(id_a);
	channel_identity_generate(id_b);
	channel_identity_generate(id_c);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	secmem_free(keys_a);
	secmem_free(keys_b);
	secmem_free(id_a);
	secmem_free(id_b);
	secmem_free(id_c);
	return 0;
}

/* An initiator/responder pair and the messages they exchanged. */
struct pair {
	struct channel *ini;
	struct channel *resp;
	struct buf hello;
	struct buf reply;
	struct buf auth;
};

/* A initiates with keys from INI_KEYS(INI_ARG), B responds with keys from
 * RESP_KEYS(RESP_ARG). */
static void pair_new_keys(struct pair *p, channel_key_fn ini_keys, void *ini_arg,
			  channel_key_fn resp_keys, void *resp_arg)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(channel_new(&p->ini, id_a, ini_keys, ini_arg), 0);
	assert_int_equal(channel_new(&p->resp, id_b, resp_keys, resp_arg), 0);
	buf_init(&p->hello);
	buf_init(&p->reply);
	buf_init(&p->auth);
}

static void pair_new_as(struct pair *p, struct ring *ini_ring,
			const struct channel_identity *ini_id, struct ring *resp_ring,
			const struct channel_identity *resp_id)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(channel_new(&p->ini, ini_id, ring_key, ini_ring), 0);
	assert_int_equal(channel_new(&p->resp, resp_id, ring_key, resp_ring), 0);
	buf_init(&p->hello);
	buf_init(&p->reply);
	buf_init(&p->auth);
}

/* A initiates, B responds. */
static void pair_new(struct pair *p, struct ring *ini_ring, struct ring *resp_ring)
{
	pair_new_as(p, ini_ring, id_a, resp_ring, id_b);
}

static void pair_free(struct pair *p)
{
	channel_free(p->ini);
	channel_free(p->resp);
	buf_free(&p->hello);
	buf_free(&p->reply);
	buf_free(&p->auth);
}

/* HELLO then REPLY: leaves the initiator waiting for REPLY delivery. */
static void pair_hello_reply(struct pair *p)
{
	assert_int_equal(channel_hello(p->ini, &p->hello), 0);
	assert_int_equal(p->hello.len, CHANNEL_HELLO_LEN);
	assert_int_equal(channel_on_hello(p->resp, p->hello.data, p->hello.len, &p->reply), 0);
	assert_int_equal(p->reply.len, CHANNEL_REPLY_LEN);
}

/* C's peer identity is PK; a missing one fails the test rather than
 * crashing it. */
static void assert_peer(const struct channel *c, const uint8_t *pk)
{
	const uint8_t *peer = channel_peer_id(c);
	assert_non_null(peer);
	assert_memory_equal(peer, pk, CHANNEL_ID_LEN);
}

/* A full, successful handshake with the same key on both sides. */
static void pair_connect(struct pair *p)
{
	pair_new(p, &ring_a, &ring_a);
	pair_hello_reply(p);
	assert_int_equal(channel_on_reply(p->ini, p->reply.data, p->reply.len, &p->auth), 0);
	assert_int_equal(p->auth.len, CHANNEL_AUTH_LEN);
	assert_int_equal(channel_on_auth(p->resp, p->auth.data, p->auth.len), 0);
	assert_true(channel_ready(p->ini));
	assert_true(channel_ready(p->resp));
}

/* Seals PT on FROM into FRAME (cleared first) and checks the prefix. */
static void seal_frame(struct channel *from, const void *pt, size_t len, struct buf *frame)
{
	buf_clear(frame);
	assert_int_equal(channel_seal(from, pt, len, frame), 0);
	assert_int_equal(frame->len, 4 + len + CHANNEL_TAG_LEN);
	uint32_t prefix = (uint32_t)frame->data[0] | (uint32_t)frame->data[1] << 8 |
			  (uint32_t)frame->data[2] << 16 | (uint32_t)frame->data[3] << 24;
	assert_int_equal(prefix, len + CHANNEL_TAG_LEN);
}

/* Opens FRAME on TO and checks that PT comes out. */
static void open_frame(struct channel *to, const struct buf *frame, const void *pt, size_t len)
{
	struct buf out;
	buf_init(&out);
	assert_int_equal(channel_open(to, frame->data + 4, frame->len - 4, &out), 0);
	assert_int_equal(out.len, len);
	if (len != 0)
		assert_memory_equal(out.data, pt, len);
	buf_free(&out);
}

/* Opening must fail with -EBADMSG, append nothing, and break the channel. */
static void assert_open_rejected(struct channel *to, const uint8_t *ct, size_t len)
{
	struct buf out;
	buf_init(&out);
	assert_int_equal(channel_open(to, ct, len, &out), -EBADMSG);
	assert_int_equal(out.len, 0);
	assert_false(channel_ready(to));
	assert_int_equal(channel_open(to, ct, len, &out), -EPIPE);
	assert_int_equal(channel_seal(to, "x", 1, &out), -EPIPE);
	assert_int_equal(out.len, 0);
	buf_free(&out);
}

static void test_handshake_and_frames_both_ways(void **state)
{
	(void)state;
	struct pair p;
	pair_connect(&p);
	assert_peer(p.resp, id_a->pk);
	assert_peer(p.ini, id_b->pk);
	assert_memory_equal(p.hello.data, CHANNEL_MAGIC, 4);

	size_t sizes[] = { 0, 1, 15, 16, 17, 1000, 65536, CHANNEL_MAX_FRAME };
	uint8_t *pt = malloc(CHANNEL_MAX_FRAME);
	assert_non_null(pt);
	for (size_t i = 0; i < CHANNEL_MAX_FRAME; i++)
		pt[i] = (uint8_t)(i * 31u + 7u);

	struct buf frame;
	buf_init(&frame);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		seal_frame(p.ini, pt, sizes[i], &frame);
		/* Encrypted: a non-trivial plaintext does not appear as is. */
		if (sizes[i] >= 16)
			assert_memory_not_equal(frame.data + 4, pt, 16);
		open_frame(p.resp, &frame, pt, sizes[i]);

		seal_frame(p.resp, pt + 1, sizes[i] > 0 ? sizes[i] - 1 : 0, &frame);
		open_frame(p.ini, &frame, pt + 1, sizes[i] > 0 ? sizes[i] - 1 : 0);
	}
	/* Several frames in flight in one direction, opened in order. */
	struct buf f1, f2;
	buf_init(&f1);
	buf_init(&f2);
	seal_frame(p.resp, "one", 3, &f1);
	seal_frame(p.resp, "two", 3, &f2);
	open_frame(p.ini, &f1, "one", 3);
	open_frame(p.ini, &f2, "two", 3);
	assert_true(channel_ready(p.ini));

	buf_free(&f1);
	buf_free(&f2);
	buf_free(&frame);
	free(pt);
	pair_free(&p);
}

static void test_same_plaintext_gives_different_frames(void **state)
{
	(void)state;
	struct pair p;
	pair_connect(&p);
	struct buf f1, f2;
	buf_init(&f1);
	buf_init(&f2);
	/* The counter nonce makes every frame distinct. */
	seal_frame(p.ini, "same", 4, &f1);
	seal_frame(p.ini, "same", 4, &f2);
	assert_memory_not_equal(f1.data + 4, f2.data + 4, f1.len - 4);
	/* Directions use different keys: the same counter and plaintext from
	 * the other side still differ. */
	struct buf g1;
	buf_init(&g1);
	seal_frame(p.resp, "same", 4, &g1);
	assert_memory_not_equal(f1.data + 4, g1.data + 4, f1.len - 4);
	buf_free(&f1);
	buf_free(&f2);
	buf_free(&g1);
	pair_free(&p);
}

static void test_oversized_frame_refused(void **state)
{
	(void)state;
	struct pair p;
	pair_connect(&p);
	struct buf out;
	buf_init(&out);
	uint8_t small[1] = { 0 };
	/* Length is checked before the plaintext is touched. */
	assert_int_equal(channel_seal(p.ini, small, CHANNEL_MAX_FRAME + 1, &out), -EMSGSIZE);
	assert_int_equal(out.len, 0);
	assert_true(channel_ready(p.ini));
	/* A ciphertext claiming more than the maximum is malformed. */
	assert_open_rejected(p.resp, small, (size_t)CHANNEL_MAX_FRAME + CHANNEL_TAG_LEN + 1);
	buf_free(&out);
	pair_free(&p);
}

static void test_peer_ids_after_handshake(void **state)
{
	(void)state;
	/* Several pairs, both ways round, so that each peer id must come from
	 * the other side's message and not from anything fixed. */
	const struct channel_identity *ids[][2] = {
		{ id_a, id_b }, { id_b, id_a }, { id_c, id_b }, { id_a, id_c },
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		const struct channel_identity *ini = ids[i][0], *resp = ids[i][1];
		struct pair p;
		pair_new_as(&p, &ring_a, ini, &ring_a, resp);
		/* Nothing heard from the peer yet. */
		assert_null(channel_peer_id(p.ini));
		assert_null(channel_peer_id(p.resp));

		assert_int_equal(channel_hello(p.ini, &p.hello), 0);
		assert_int_equal(p.hello.data[HELLO_OFF_VERSION], CHANNEL_VERSION);
		assert_memory_equal(p.hello.data + HELLO_OFF_STATIC, ini->pk, CHANNEL_ID_LEN);
		assert_null(channel_peer_id(p.ini));

		assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), 0);
		/* The responder has the initiator's claim before AUTH, but only a
		 * claim: the channel is not ready to carry anything. */
		assert_peer(p.resp, ini->pk);
		assert_false(channel_ready(p.resp));
		assert_memory_equal(p.reply.data + REPLY_OFF_STATIC, resp->pk, CHANNEL_ID_LEN);

		assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), 0);
		assert_true(channel_ready(p.ini));
		assert_peer(p.ini, resp->pk);
		assert_false(channel_ready(p.resp));

		assert_int_equal(channel_on_auth(p.resp, p.auth.data, p.auth.len), 0);
		assert_true(channel_ready(p.resp));
		assert_peer(p.resp, ini->pk);
		pair_free(&p);
	}
	assert_null(channel_peer_id(NULL));
}

static void test_identities_distinct_and_derivable(void **state)
{
	(void)state;
	enum { N = 8 };
	struct channel_identity *ids = secmem_alloc(N * sizeof(*ids));
	struct channel_identity *copy = secmem_alloc(sizeof(*copy));
	assert_non_null(ids);
	assert_non_null(copy);
	for (size_t i = 0; i < N; i++)
		channel_identity_generate(&ids[i]);
	/* Fresh key pairs, none shared with another or with the group's. */
	for (size_t i = 0; i < N; i++) {
		for (size_t j = 0; j < i; j++) {
			assert_memory_not_equal(ids[i].sk, ids[j].sk, CHANNEL_ID_LEN);
			assert_memory_not_equal(ids[i].pk, ids[j].pk, CHANNEL_ID_LEN);
		}
		assert_memory_not_equal(ids[i].pk, id_a->pk, CHANNEL_ID_LEN);
		assert_memory_not_equal(ids[i].pk, id_b->pk, CHANNEL_ID_LEN);
		assert_memory_not_equal(ids[i].pk, id_c->pk, CHANNEL_ID_LEN);
	}
	assert_memory_not_equal(id_a->pk, id_b->pk, CHANNEL_ID_LEN);
	assert_memory_not_equal(id_a->pk, id_c->pk, CHANNEL_ID_LEN);
	assert_memory_not_equal(id_b->pk, id_c->pk, CHANNEL_ID_LEN);

	/* A node stores only its secret key and recomputes the public one. */
	for (size_t i = 0; i < N; i++) {
		memcpy(copy->sk, ids[i].sk, CHANNEL_ID_LEN);
		memset(copy->pk, 0, CHANNEL_ID_LEN);
		channel_identity_derive(copy);
		assert_memory_equal(copy->pk, ids[i].pk, CHANNEL_ID_LEN);
		assert_memory_equal(copy->sk, ids[i].sk, CHANNEL_ID_LEN);
	}

	/* RFC 7748, 6.1 (Alice): the public key is X25519's, not merely some
	 * function that generate and derive happen to share. */
	static const uint8_t rfc_sk[CHANNEL_ID_LEN] = {
		0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1,
		0x72, 0x51, 0xb2, 0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0,
		0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a,
	};
	static const uint8_t rfc_pk[CHANNEL_ID_LEN] = {
		0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d,
		0xdc, 0xb4, 0x3e, 0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38,
		0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a,
	};
	memcpy(copy->sk, rfc_sk, CHANNEL_ID_LEN);
	memset(copy->pk, 0, CHANNEL_ID_LEN);
	channel_identity_derive(copy);
	assert_memory_equal(copy->pk, rfc_pk, CHANNEL_ID_LEN);

	secmem_free(copy);
	secmem_free(ids);
}

static void test_self_connection_refused(void **state)
{
	(void)state;
	/* A's HELLO reaches A's own listener (an address that leads back to
	 * the sender): the responder refuses it and is done. */
	struct pair p;
	pair_new_as(&p, &ring_a, id_a, &ring_a, id_a);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -ELOOP);
	assert_int_equal(p.reply.len, 0);
	assert_false(channel_ready(p.resp));
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -EPIPE);
	uint8_t zeros[CHANNEL_AUTH_LEN] = { 0 };
	assert_int_equal(channel_on_auth(p.resp, zeros, sizeof(zeros)), -EPIPE);
	assert_int_equal(p.reply.len, 0);
	pair_free(&p);

	/* The initiator's own check: a REPLY presenting A's key reaches A. The
	 * responder holding A's identity cannot answer A's HELLO (above), so
	 * it answers B's, and that REPLY is delivered to A instead. */
	pair_new_as(&p, &ring_a, id_a, &ring_a, id_a);
	struct channel *ini_b;
	assert_int_equal(channel_new(&ini_b, id_b, ring_key, &ring_a), 0);
	struct buf hello_b;
	buf_init(&hello_b);
	assert_int_equal(channel_hello(ini_b, &hello_b), 0);
	assert_int_equal(channel_on_hello(p.resp, hello_b.data, hello_b.len, &p.reply), 0);
	assert_memory_equal(p.reply.data + REPLY_OFF_STATIC, id_a->pk, CHANNEL_ID_LEN);

	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -ELOOP);
	assert_int_equal(p.auth.len, 0);
	assert_false(channel_ready(p.ini));
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EPIPE);
	assert_int_equal(channel_seal(p.ini, "x", 1, &p.auth), -EPIPE);
	assert_int_equal(p.auth.len, 0);

	channel_free(ini_b);
	buf_free(&hello_b);
	pair_free(&p);
}

/* A copy (secmem) of identity WHO's public key with OTHER's secret key:
 * a node that holds OTHER's secret and claims to be WHO. */
static struct channel_identity *impostor_new(const struct channel_identity *who,
					     const struct channel_identity *other)
{
	struct channel_identity *id = secmem_alloc(sizeof(*id));
	assert_non_null(id);
	memcpy(id->pk, who->pk, CHANNEL_ID_LEN);
	memcpy(id->sk, other->sk, CHANNEL_ID_LEN);
	return id;
}

static void test_responder_claiming_other_identity_rejected(void **state)
{
	(void)state;
	/* B's REPLY rewritten in flight to present C. */
	struct pair p;
	pair_new(&p, &ring_a, &ring_a);
	pair_hello_reply(&p);
	memcpy(p.reply.data + REPLY_OFF_STATIC, id_c->pk, CHANNEL_ID_LEN);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	assert_false(channel_ready(p.ini));
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EPIPE);
	pair_free(&p);

	/* A responder with the cluster key and B's secret that answers as C.
	 * Its REPLY hashes the same transcript the initiator does, so only the
	 * DH with C's key, which it cannot compute, tells it apart. */
	struct channel_identity *fake = impostor_new(id_c, id_b);
	pair_new_as(&p, &ring_a, id_a, &ring_a, fake);
	pair_hello_reply(&p);
	assert_memory_equal(p.reply.data + REPLY_OFF_STATIC, id_c->pk, CHANNEL_ID_LEN);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	assert_false(channel_ready(p.ini));
	pair_free(&p);
	secmem_free(fake);
}

/* K and both MACs the way the header defines them, computed outside the
 * channel by an initiator with keyring RING that sent HELLO (whose e_i is
 * EPH's public key) and uses S_SK as the secret of the identity HELLO
 * claims. The labels are channel.c's. */
static void initiator_macs(const struct ring *ring, const uint8_t *hello,
			   const uint8_t *reply, const struct channel_identity *eph,
			   const uint8_t *s_sk, uint8_t mac_r[32], uint8_t mac_i[32])
{
	static const uint8_t label_hs[8] = { 'v', 'f', 's', '-', 'h', 's', '-', '3' };
	static const uint8_t label_resp[8] = { 'v', 'f', 's', '-', 'r', 'e', 's', 'p' };
	static const uint8_t label_init[8] = { 'v', 'f', 's', '-', 'i', 'n', 'i', 't' };
	const uint8_t *e_r = reply, *s_r = reply + REPLY_OFF_STATIC;
	const uint8_t *term = reply + REPLY_OFF_TERM;
	assert_in_range(get_le32(term), 1, ring->n);
	const uint8_t *cluster_key = ring->keys + (get_le32(term) - 1) * CHANNEL_KEY_LEN;
	uint8_t dh[3][CHANNEL_ID_LEN], k[CHANNEL_KEY_LEN];
	assert_int_equal(crypto_scalarmult(dh[0], eph->sk, e_r), 0);
	assert_int_equal(crypto_scalarmult(dh[1], s_sk, e_r), 0);
	assert_int_equal(crypto_scalarmult(dh[2], eph->sk, s_r), 0);

	crypto_generichash_state st;
	crypto_generichash_init(&st, cluster_key, CHANNEL_KEY_LEN, sizeof(k));
	crypto_generichash_update(&st, label_hs, sizeof(label_hs));
	crypto_generichash_update(&st, hello, CHANNEL_HELLO_LEN);
	crypto_generichash_update(&st, e_r, CHANNEL_ID_LEN);
	crypto_generichash_update(&st, s_r, CHANNEL_ID_LEN);
	crypto_generichash_update(&st, term, 4);
	for (size_t i = 0; i < 3; i++)
		crypto_generichash_update(&st, dh[i], CHANNEL_ID_LEN);
	crypto_generichash_final(&st, k, sizeof(k));
	crypto_generichash(mac_r, 32, label_resp, sizeof(label_resp), k, sizeof(k));
	crypto_generichash(mac_i, 32, label_init, sizeof(label_init), k, sizeof(k));
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(dh, sizeof(dh));
	sodium_memzero(k, sizeof(k));
}

static void test_initiator_claiming_other_identity_rejected(void **state)
{
	(void)state;
	/* A's HELLO rewritten in flight to claim C. The responder takes the
	 * claim (it cannot know better before AUTH); A hashed the HELLO it
	 * sent, so it rejects the REPLY and sends no AUTH. */
	struct pair p;
	pair_new(&p, &ring_a, &ring_a);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	memcpy(p.hello.data + HELLO_OFF_STATIC, id_c->pk, CHANNEL_ID_LEN);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), 0);
	assert_peer(p.resp, id_c->pk);
	assert_false(channel_ready(p.resp));
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	pair_free(&p);

	/* A node with the cluster key and A's secret claiming C, through the
	 * channel code: MAC_r covers DH(s_i, e_r) as well, so it cannot even
	 * check the REPLY and the channel gives it no AUTH to send. */
	struct channel_identity *fake = impostor_new(id_c, id_a);
	pair_new_as(&p, &ring_a, fake, &ring_a, id_b);
	pair_hello_reply(&p);
	assert_peer(p.resp, id_c->pk);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	pair_free(&p);

	/* Outside the channel code it can still send the AUTH its best guess
	 * at K gives: A's secret in place of C's. First (honest) the same
	 * computation with C's secret, which must match MAC_r and be accepted,
	 * so that the rejection is about the missing secret and not about this
	 * test computing something other than the channel does. */
	struct channel_identity *eph = secmem_alloc(sizeof(*eph));
	assert_non_null(eph);
	for (int honest = 1; honest >= 0; honest--) {
		pair_new_as(&p, &ring_a, id_a, &ring_a, id_b);
		channel_identity_generate(eph);
		uint8_t hello[CHANNEL_HELLO_LEN];
		memcpy(hello, CHANNEL_MAGIC, 4);
		hello[HELLO_OFF_VERSION] = CHANNEL_VERSION;
		memcpy(hello + HELLO_OFF_EPHEMERAL, eph->pk, CHANNEL_ID_LEN);
		memcpy(hello + HELLO_OFF_STATIC, id_c->pk, CHANNEL_ID_LEN);
		put_le32(hello + HELLO_OFF_TERM, 1);
		assert_int_equal(channel_on_hello(p.resp, hello, sizeof(hello), &p.reply), 0);
		assert_peer(p.resp, id_c->pk);

		uint8_t mac_r[32], mac_i[32];
		initiator_macs(&ring_a, hello, p.reply.data, eph, honest ? id_c->sk : id_a->sk,
			       mac_r, mac_i);
		if (honest) {
			assert_memory_equal(mac_r, p.reply.data + REPLY_OFF_MAC, sizeof(mac_r));
			assert_int_equal(channel_on_auth(p.resp, mac_i, sizeof(mac_i)), 0);
			assert_true(channel_ready(p.resp));
			assert_peer(p.resp, id_c->pk);
		} else {
			assert_int_equal(channel_on_auth(p.resp, mac_i, sizeof(mac_i)), -EBADMSG);
			assert_false(channel_ready(p.resp));
			assert_int_equal(channel_on_auth(p.resp, mac_i, sizeof(mac_i)), -EPIPE);
		}
		pair_free(&p);
	}
	secmem_free(eph);
	secmem_free(fake);
}

static void test_wrong_key_initiator_rejects_reply(void **state)
{
	(void)state;
	/* The right identities with the wrong cluster key: an identity alone is
	 * not enough. */
	struct pair p;
	pair_new(&p, &ring_a, &ring_b);
	pair_hello_reply(&p);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	assert_false(channel_ready(p.ini));
	assert_int_equal(channel_seal(p.ini, "x", 1, &p.auth), -EPIPE);
	pair_free(&p);
}

static void test_wrong_key_responder_rejects_auth(void **state)
{
	(void)state;
	/* An initiator with key B talks to a responder with key A; to obtain an
	 * AUTH at all it must accept a REPLY, so give it one from a B responder
	 * that saw the same HELLO. The AUTH then proves key B, not key A. */
	struct pair p;
	pair_new(&p, &ring_b, &ring_a);
	pair_hello_reply(&p);

	/* Same identity as the A responder, so that only the key differs. */
	struct channel *resp_b;
	assert_int_equal(channel_new(&resp_b, id_b, ring_key, &ring_b), 0);
	struct buf reply_b;
	buf_init(&reply_b);
	assert_int_equal(channel_on_hello(resp_b, p.hello.data, p.hello.len, &reply_b), 0);
	assert_int_equal(channel_on_reply(p.ini, reply_b.data, reply_b.len, &p.auth), 0);

	/* Key A's responder chose its own e_r and holds key A: reject. */
	assert_int_equal(channel_on_auth(p.resp, p.auth.data, p.auth.len), -EBADMSG);
	assert_false(channel_ready(p.resp));
	assert_int_equal(channel_on_auth(p.resp, p.auth.data, p.auth.len), -EPIPE);
	/* The B responder accepts it: the rejection above was the key (and
	 * e_r), not a malformed AUTH. */
	assert_int_equal(channel_on_auth(resp_b, p.auth.data, p.auth.len), 0);

	channel_free(resp_b);
	buf_free(&reply_b);
	pair_free(&p);
}

static void test_wrong_key_responder_gets_no_auth(void **state)
{
	(void)state;
	/* In the straight exchange the key-B initiator stops at the REPLY and
	 * sends no AUTH; whatever an attacker sends instead is refused. */
	struct pair p;
	pair_new(&p, &ring_b, &ring_a);
	pair_hello_reply(&p);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	uint8_t guess[CHANNEL_AUTH_LEN];
	memset(guess, 0, sizeof(guess));
	assert_int_equal(channel_on_auth(p.resp, guess, sizeof(guess)), -EBADMSG);
	assert_false(channel_ready(p.resp));
	pair_free(&p);
}

static void test_tampered_hello_fails(void **state)
{
	(void)state;
	/* Flip each HELLO byte on the way to the responder. Magic and version
	 * are rejected outright; any other change (e_i, s_i, or the term
	 * offered: both sides hold terms 1..3, so a lower offer is one the
	 * responder takes) makes the REPLY invalid for the initiator, and the
	 * responder then gets no AUTH it can accept, not even the one of an
	 * honest session between the same two identities. */
	struct ring a3 = ring_of(keys_a, 3);
	for (size_t i = 0; i < CHANNEL_HELLO_LEN; i++) {
		struct pair p;
		pair_new(&p, &a3, &a3);
		assert_int_equal(channel_hello(p.ini, &p.hello), 0);
		uint8_t bad[CHANNEL_HELLO_LEN];
		memcpy(bad, p.hello.data, sizeof(bad));
		bad[i] ^= 0x01;
		int r = channel_on_hello(p.resp, bad, sizeof(bad), &p.reply);
		if (i < HELLO_OFF_EPHEMERAL) {
			assert_int_equal(r, -EBADMSG);
			assert_int_equal(p.reply.len, 0);
			pair_free(&p);
			continue;
		}
		assert_int_equal(r, 0);
		/* The responder takes whatever identity the HELLO claims. */
		assert_peer(p.resp, bad + HELLO_OFF_STATIC);
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth),
				 -EBADMSG);

		/* An honest session between A and B yields a real AUTH... */
		struct channel *ini2, *resp2;
		assert_int_equal(channel_new(&ini2, id_a, ring_key, &ring_a), 0);
		assert_int_equal(channel_new(&resp2, id_b, ring_key, &ring_a), 0);
		struct buf h2, r2, a2;
		buf_init(&h2);
		buf_init(&r2);
		buf_init(&a2);
		assert_int_equal(channel_hello(ini2, &h2), 0);
		assert_int_equal(channel_on_hello(resp2, h2.data, h2.len, &r2), 0);
		assert_int_equal(channel_on_reply(ini2, r2.data, r2.len, &a2), 0);
		/* ...which the responder that saw the tampered HELLO rejects. */
		assert_int_equal(channel_on_auth(p.resp, a2.data, a2.len), -EBADMSG);
		assert_false(channel_ready(p.resp));

		channel_free(ini2);
		channel_free(resp2);
		buf_free(&h2);
		buf_free(&r2);
		buf_free(&a2);
		pair_free(&p);
	}
}

static void test_bad_magic_and_version(void **state)
{
	(void)state;
	struct pair p;
	pair_new(&p, &ring_a, &ring_a);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	uint8_t bad[CHANNEL_HELLO_LEN];
	/* The previous version (whose HELLO had another layout) and a future
	 * one, both at the current length so that only the version differs. */
	uint8_t versions[] = { CHANNEL_VERSION - 1, CHANNEL_VERSION + 1 };
	for (size_t i = 0; i < sizeof(versions); i++) {
		memcpy(bad, p.hello.data, sizeof(bad));
		bad[HELLO_OFF_VERSION] = versions[i];
		assert_int_equal(channel_on_hello(p.resp, bad, sizeof(bad), &p.reply), -EBADMSG);
		assert_null(channel_peer_id(p.resp)); /* no claim taken from it */
		assert_int_equal(p.reply.len, 0);
		channel_free(p.resp);
		assert_int_equal(channel_new(&p.resp, id_b, ring_key, &ring_a), 0);
	}

	memcpy(bad, p.hello.data, sizeof(bad));
	memcpy(bad, "VFSD", 4);
	assert_int_equal(channel_on_hello(p.resp, bad, sizeof(bad), &p.reply), -EBADMSG);
	/* Broken for good: even the genuine HELLO is refused now. */
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -EPIPE);
	pair_free(&p);
}

static void test_hello_wrong_length(void **state)
{
	(void)state;
	size_t lens[] = { 0, CHANNEL_HELLO_LEN - 1, CHANNEL_HELLO_LEN + 1 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct pair p;
		pair_new(&p, &ring_a, &ring_a);
		assert_int_equal(channel_hello(p.ini, &p.hello), 0);
		uint8_t msg[CHANNEL_HELLO_LEN + 1];
		memcpy(msg, p.hello.data, CHANNEL_HELLO_LEN);
		msg[CHANNEL_HELLO_LEN] = 0;
		assert_int_equal(channel_on_hello(p.resp, msg, lens[i], &p.reply), -EBADMSG);
		assert_int_equal(p.reply.len, 0);
		pair_free(&p);
	}
}

static void test_tampered_reply_rejected(void **state)
{
	(void)state;
	for (size_t i = 0; i < CHANNEL_REPLY_LEN; i++) {
		struct pair p;
		pair_new(&p, &ring_a, &ring_a);
		pair_hello_reply(&p);
		p.reply.data[i] ^= 0x80;
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth),
				 -EBADMSG);
		assert_int_equal(p.auth.len, 0);
		assert_false(channel_ready(p.ini));
		pair_free(&p);
	}
}

static void test_truncated_or_extended_reply_rejected(void **state)
{
	(void)state;
	size_t lens[] = { 0, CHANNEL_REPLY_LEN - 1, CHANNEL_REPLY_LEN + 1 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct pair p;
		pair_new(&p, &ring_a, &ring_a);
		pair_hello_reply(&p);
		buf_put_u8(&p.reply, 0); /* room for the extended case */
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, lens[i], &p.auth),
				 -EBADMSG);
		assert_int_equal(p.auth.len, 0);
		/* Even the genuine REPLY is refused afterwards. */
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, CHANNEL_REPLY_LEN, &p.auth),
				 -EPIPE);
		pair_free(&p);
	}
}

/* Handshake up to a valid AUTH that has not been delivered yet. */
static void pair_until_auth(struct pair *p)
{
	pair_new(p, &ring_a, &ring_a);
	pair_hello_reply(p);
	assert_int_equal(channel_on_reply(p->ini, p->reply.data, p->reply.len, &p->auth), 0);
	buf_put_u8(&p->auth, 0); /* room for the extended case */
}

static void test_tampered_auth_rejected(void **state)
{
	(void)state;
	for (size_t i = 0; i < CHANNEL_AUTH_LEN; i++) {
		struct pair p;
		pair_until_auth(&p);
		p.auth.data[i] ^= 0x04;
		assert_int_equal(channel_on_auth(p.resp, p.auth.data, CHANNEL_AUTH_LEN), -EBADMSG);
		assert_false(channel_ready(p.resp));
		/* The genuine AUTH is refused afterwards too. */
		p.auth.data[i] ^= 0x04;
		assert_int_equal(channel_on_auth(p.resp, p.auth.data, CHANNEL_AUTH_LEN), -EPIPE);
		pair_free(&p);
	}
}

static void test_truncated_or_extended_auth_rejected(void **state)
{
	(void)state;
	size_t lens[] = { 0, CHANNEL_AUTH_LEN - 1, CHANNEL_AUTH_LEN + 1 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct pair p;
		pair_until_auth(&p);
		assert_int_equal(channel_on_auth(p.resp, p.auth.data, lens[i]), -EBADMSG);
		assert_false(channel_ready(p.resp));
		pair_free(&p);
	}
}

static void test_auth_from_other_session_rejected(void **state)
{
	(void)state;
	/* A recorded AUTH is bound to its session's e_r. */
	struct pair old, p;
	pair_until_auth(&old);
	pair_new(&p, &ring_a, &ring_a);
	assert_int_equal(channel_on_hello(p.resp, old.hello.data, old.hello.len, &p.reply), 0);
	assert_int_equal(channel_on_auth(p.resp, old.auth.data, CHANNEL_AUTH_LEN), -EBADMSG);
	pair_free(&old);
	pair_free(&p);
}

static void test_every_frame_byte_flip_rejected(void **state)
{
	(void)state;
	static const char msg[] = "raft append";
	size_t ct_len = sizeof(msg) + CHANNEL_TAG_LEN;
	for (size_t i = 0; i < ct_len; i++) {
		struct pair p;
		pair_connect(&p);
		struct buf frame;
		buf_init(&frame);
		seal_frame(p.ini, msg, sizeof(msg), &frame);
		frame.data[4 + i] ^= 0x01;
		assert_open_rejected(p.resp, frame.data + 4, ct_len);
		buf_free(&frame);
		pair_free(&p);
	}
}

static void test_frame_truncated_or_extended_rejected(void **state)
{
	(void)state;
	static const char msg[] = "raft append";
	size_t ct_len = sizeof(msg) + CHANNEL_TAG_LEN;
	/* A length prefix changed in flight reaches channel_open as a
	 * different len: shorter, longer, or too short for a tag. */
	size_t lens[] = { 0, CHANNEL_TAG_LEN - 1, CHANNEL_TAG_LEN, ct_len - 1, ct_len + 1 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct pair p;
		pair_connect(&p);
		struct buf frame;
		buf_init(&frame);
		seal_frame(p.ini, msg, sizeof(msg), &frame);
		buf_put_u8(&frame, 0);
		assert_open_rejected(p.resp, frame.data + 4, lens[i]);
		buf_free(&frame);
		pair_free(&p);
	}
}

static void test_frame_replay_rejected(void **state)
{
	(void)state;
	struct pair p;
	pair_connect(&p);
	struct buf f1, f2;
	buf_init(&f1);
	buf_init(&f2);
	seal_frame(p.ini, "first", 5, &f1);
	seal_frame(p.ini, "second", 6, &f2);
	open_frame(p.resp, &f1, "first", 5);
	open_frame(p.resp, &f2, "second", 6);
	assert_open_rejected(p.resp, f1.data + 4, f1.len - 4);
	buf_free(&f1);
	buf_free(&f2);
	pair_free(&p);
}

static void test_frame_reorder_rejected(void **state)
{
	(void)state;
	struct pair p;
	pair_connect(&p);
	struct buf f1, f2;
	buf_init(&f1);
	buf_init(&f2);
	seal_frame(p.ini, "first", 5, &f1);
	seal_frame(p.ini, "secnd", 5, &f2);
	assert_open_rejected(p.resp, f2.data + 4, f2.len - 4);
	buf_free(&f1);
	buf_free(&f2);
	pair_free(&p);
}

static void test_frame_reflected_rejected(void **state)
{
	(void)state;
	/* A frame sent back to its own sender: directional keys differ. */
	struct pair p;
	pair_connect(&p);
	struct buf f;
	buf_init(&f);
	seal_frame(p.ini, "echo", 4, &f);
	assert_open_rejected(p.ini, f.data + 4, f.len - 4);
	buf_free(&f);
	pair_free(&p);
}

static void test_frame_from_other_session_rejected(void **state)
{
	(void)state;
	/* Same cluster key, fresh ephemeral keys: the session keys differ, so even the
	 * first frame (same counter) of one session fails in the other. */
	struct pair s1, s2;
	pair_connect(&s1);
	pair_connect(&s2);
	struct buf f;
	buf_init(&f);
	seal_frame(s1.ini, "hello", 5, &f);
	open_frame(s1.resp, &f, "hello", 5); /* valid where it belongs */
	assert_open_rejected(s2.resp, f.data + 4, f.len - 4);
	seal_frame(s1.resp, "hello", 5, &f);
	open_frame(s1.ini, &f, "hello", 5);
	assert_open_rejected(s2.ini, f.data + 4, f.len - 4);
	buf_free(&f);
	pair_free(&s1);
	pair_free(&s2);
}

static void test_wrong_order_calls(void **state)
{
	(void)state;
	struct pair p;
	pair_new(&p, &ring_a, &ring_a);
	struct buf junk;
	buf_init(&junk);
	uint8_t zeros[CHANNEL_REPLY_LEN] = { 0 };

	/* Nothing but hello/on_hello on a fresh channel. */
	assert_false(channel_ready(p.ini));
	assert_int_equal(channel_seal(p.ini, "x", 1, &junk), -EINVAL);
	assert_int_equal(channel_open(p.ini, zeros, CHANNEL_TAG_LEN, &junk), -EINVAL);
	assert_int_equal(channel_on_reply(p.ini, zeros, CHANNEL_REPLY_LEN, &junk), -EINVAL);
	assert_int_equal(channel_on_auth(p.resp, zeros, CHANNEL_AUTH_LEN), -EINVAL);

	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	/* Initiator: no second hello, no responder steps, no frames yet. */
	assert_int_equal(channel_hello(p.ini, &junk), -EINVAL);
	assert_int_equal(channel_on_hello(p.ini, p.hello.data, p.hello.len, &junk), -EINVAL);
	assert_int_equal(channel_on_auth(p.ini, zeros, CHANNEL_AUTH_LEN), -EINVAL);
	assert_int_equal(channel_seal(p.ini, "x", 1, &junk), -EINVAL);

	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), 0);
	/* Responder: no second HELLO, no initiator steps, no frames yet. */
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &junk), -EINVAL);
	assert_int_equal(channel_hello(p.resp, &junk), -EINVAL);
	assert_int_equal(channel_on_reply(p.resp, p.reply.data, p.reply.len, &junk), -EINVAL);
	assert_int_equal(channel_seal(p.resp, "x", 1, &junk), -EINVAL);
	assert_int_equal(channel_open(p.resp, zeros, CHANNEL_TAG_LEN, &junk), -EINVAL);
	assert_int_equal(junk.len, 0);

	/* None of that disturbed the handshake. */
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), 0);
	assert_int_equal(channel_on_auth(p.resp, p.auth.data, p.auth.len), 0);

	/* Ready: handshake steps are over on both sides. */
	assert_int_equal(channel_hello(p.ini, &junk), -EINVAL);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &junk), -EINVAL);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &junk), -EINVAL);
	assert_int_equal(channel_on_auth(p.resp, p.auth.data, p.auth.len), -EINVAL);
	assert_int_equal(junk.len, 0);

	/* Still usable. */
	struct buf f;
	buf_init(&f);
	seal_frame(p.ini, "ok", 2, &f);
	open_frame(p.resp, &f, "ok", 2);

	assert_false(channel_ready(NULL));
	channel_free(NULL);
	buf_free(&f);
	buf_free(&junk);
	pair_free(&p);
}

/* --- Agreeing on a term ------------------------------------------------ */

/* The rest of P's handshake after pair_hello_reply: neither side has a
 * term before it is ready, both have WANT after, and frames flow both
 * ways. */
static void pair_finish_on(struct pair *p, uint32_t want)
{
	assert_int_equal(channel_term(p->ini), 0);
	assert_int_equal(channel_term(p->resp), 0);
	assert_int_equal(channel_on_reply(p->ini, p->reply.data, p->reply.len, &p->auth), 0);
	assert_int_equal(channel_term(p->resp), 0);
	assert_int_equal(channel_on_auth(p->resp, p->auth.data, p->auth.len), 0);
	assert_int_equal(channel_term(p->ini), want);
	assert_int_equal(channel_term(p->resp), want);
	struct buf f;
	buf_init(&f);
	seal_frame(p->ini, "up", 2, &f);
	open_frame(p->resp, &f, "up", 2);
	seal_frame(p->resp, "down", 4, &f);
	open_frame(p->ini, &f, "down", 4);
	buf_free(&f);
}

static void test_term_newest_shared(void **state)
{
	(void)state;
	/* A rotation to term 3 that one side has applied and the other not yet
	 * (or never: it was down): both use term 2, whichever side dials. */
	struct ring a1 = ring_of(keys_a, 1), a2 = ring_of(keys_a, 2), a3 = ring_of(keys_a, 3);
	struct {
		struct ring *ini, *resp;
		uint32_t offered, agreed;
	} cases[] = {
		{ &a3, &a2, 3, 2 }, { &a2, &a3, 2, 2 }, { &a3, &a3, 3, 3 },
		{ &a1, &a3, 1, 1 }, { &a3, &a1, 3, 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pair p;
		pair_new(&p, cases[i].ini, cases[i].resp);
		pair_hello_reply(&p);
		assert_int_equal(get_le32(p.hello.data + HELLO_OFF_TERM), cases[i].offered);
		assert_int_equal(get_le32(p.reply.data + REPLY_OFF_TERM), cases[i].agreed);
		pair_finish_on(&p, cases[i].agreed);
		pair_free(&p);
	}
	assert_int_equal(channel_term(NULL), 0);
}

static void test_reply_term_out_of_range_refused(void **state)
{
	(void)state;
	/* The responder may only go down from the term offered. A genuine
	 * REPLY (valid MAC) for term 3, from a responder shown the initiator's
	 * HELLO with its offer raised from 2 to 3, is refused before the
	 * initiator even asks for a key. */
	struct ring a2 = ring_of(keys_a, 2), a3 = ring_of(keys_a, 3);
	struct pair p;
	pair_new(&p, &a2, &a3);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	put_le32(p.hello.data + HELLO_OFF_TERM, 3);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), 0);
	assert_int_equal(get_le32(p.reply.data + REPLY_OFF_TERM), 3);
	int calls = a2.calls;
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(a2.calls, calls);
	assert_int_equal(p.auth.len, 0);
	assert_false(channel_ready(p.ini));
	assert_int_equal(channel_term(p.ini), 0);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EPIPE);
	pair_free(&p);

	/* Term 0 and terms above the offer in an otherwise genuine REPLY. */
	uint32_t terms[] = { 0, 3, 4, UINT32_MAX };
	for (size_t i = 0; i < sizeof(terms) / sizeof(terms[0]); i++) {
		pair_new(&p, &a2, &a3);
		pair_hello_reply(&p);
		put_le32(p.reply.data + REPLY_OFF_TERM, terms[i]);
		calls = a2.calls;
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth),
				 -EBADMSG);
		assert_int_equal(a2.calls, calls);
		assert_int_equal(p.auth.len, 0);
		pair_free(&p);
	}
}

static void test_hello_term_zero_refused(void **state)
{
	(void)state;
	/* There is no term 0: such a HELLO is malformed; the responder takes
	 * no claim from it and asks for no key. */
	struct ring a3 = ring_of(keys_a, 3);
	struct pair p;
	pair_new(&p, &ring_a, &a3);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	put_le32(p.hello.data + HELLO_OFF_TERM, 0);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -EBADMSG);
	assert_int_equal(p.reply.len, 0);
	assert_null(channel_peer_id(p.resp));
	assert_int_equal(a3.calls, 0);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -EPIPE);
	pair_free(&p);
}

static void test_term_tampering_fails(void **state)
{
	(void)state;
	/* A keyring whose terms 2 and 3 have the same key: only the term
	 * numbers tell them apart, so these handshakes fail only because both
	 * terms are part of what K is derived from. */
	uint8_t *twin = secmem_alloc(3 * CHANNEL_KEY_LEN);
	assert_non_null(twin);
	memcpy(twin, keys_a, 2 * CHANNEL_KEY_LEN);
	memcpy(twin + 2 * CHANNEL_KEY_LEN, keys_a + CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	struct ring t3 = ring_of(twin, 3), t3_peer = ring_of(twin, 3), t2 = ring_of(twin, 2);

	/* Control: left alone, they agree on 3. */
	struct pair p;
	pair_new(&p, &t3, &t3_peer);
	pair_hello_reply(&p);
	pair_finish_on(&p, 3);
	pair_free(&p);

	/* HELLO's offer lowered from 3 to 2 in flight (a downgrade): the
	 * responder answers for term 2, which the initiator would accept (it
	 * is below its offer), but the HELLO the initiator hashed says 3. */
	pair_new(&p, &t3, &t3_peer);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	put_le32(p.hello.data + HELLO_OFF_TERM, 2);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), 0);
	assert_int_equal(get_le32(p.reply.data + REPLY_OFF_TERM), 2);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	assert_int_equal(p.auth.len, 0);
	pair_free(&p);

	/* REPLY's term changed in flight, down (3 to 2) and up (2 to 3, still
	 * within the offer): the initiator fetches the same key bytes, but the
	 * responder hashed the term it chose. */
	struct ring *responders[] = { &t3_peer, &t2 };
	uint32_t forged[] = { 2, 3 };
	for (size_t i = 0; i < 2; i++) {
		pair_new(&p, &t3, responders[i]);
		pair_hello_reply(&p);
		assert_int_not_equal(get_le32(p.reply.data + REPLY_OFF_TERM), forged[i]);
		put_le32(p.reply.data + REPLY_OFF_TERM, forged[i]);
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth),
				 -EBADMSG);
		assert_int_equal(p.auth.len, 0);
		assert_false(channel_ready(p.ini));
		pair_free(&p);
	}
	secmem_free(twin);
}

static void test_other_cluster_fails_whatever_the_terms(void **state)
{
	(void)state;
	/* Two clusters share no term key: whatever terms each holds and
	 * whichever dials, the initiator rejects the REPLY and sends no AUTH,
	 * and the responder accepts none. */
	struct ring a3 = ring_of(keys_a, 3), b3 = ring_of(keys_b, 3), b2 = ring_of(keys_b, 2);
	struct ring *cases[][2] = {
		{ &a3, &b3 }, { &b3, &a3 }, { &a3, &b2 }, { &b2, &a3 }, { &ring_a, &b3 },
	};
	uint8_t guess[CHANNEL_AUTH_LEN] = { 0 };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pair p;
		pair_new(&p, cases[i][0], cases[i][1]);
		pair_hello_reply(&p);
		assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth),
				 -EBADMSG);
		assert_int_equal(p.auth.len, 0);
		assert_int_equal(channel_on_auth(p.resp, guess, sizeof(guess)), -EBADMSG);
		assert_false(channel_ready(p.resp));
		pair_free(&p);
	}
}

static void test_no_key_fails_locally(void **state)
{
	(void)state;
	/* A sealed initiator offers nothing: -ENOKEY, no HELLO, and the
	 * channel can still start once there are keys again. */
	struct ring keys = ring_of(keys_a, 0);
	struct pair p;
	pair_new(&p, &keys, &ring_a);
	assert_int_equal(channel_hello(p.ini, &p.hello), -ENOKEY);
	assert_int_equal(p.hello.len, 0);
	keys.n = 1;
	pair_hello_reply(&p);
	pair_finish_on(&p, 1);
	pair_free(&p);

	/* A sealed responder answers nothing and is done. */
	keys.n = 0;
	pair_new(&p, &ring_a, &keys);
	assert_int_equal(channel_hello(p.ini, &p.hello), 0);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -ENOKEY);
	assert_int_equal(p.reply.len, 0);
	assert_int_equal(channel_on_hello(p.resp, p.hello.data, p.hello.len, &p.reply), -EPIPE);
	pair_free(&p);

	/* An initiator sealed between HELLO and REPLY: -ENOKEY (its own
	 * state, not the peer's doing), no AUTH. */
	keys.n = 1;
	pair_new(&p, &keys, &ring_a);
	pair_hello_reply(&p);
	keys.n = 0;
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -ENOKEY);
	assert_int_equal(p.auth.len, 0);
	assert_false(channel_ready(p.ini));
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EPIPE);
	pair_free(&p);
}

/* --- barrier_cluster_key --------------------------------------------- */

struct keyring {
	uint8_t *root; /* secmem */
	struct barrier *b;
	struct buf sealed;
};

static void keyring_new(struct keyring *k)
{
	k->root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	assert_non_null(k->root);
	barrier_generate_root_key(k->root);
	buf_init(&k->sealed);
	assert_int_equal(barrier_new(&k->b), 0);
	assert_int_equal(barrier_init_keyring(k->b, k->root, &k->sealed), 0);
}

static void keyring_free(struct keyring *k)
{
	barrier_free(k->b);
	buf_free(&k->sealed);
	secmem_free(k->root);
}

/* barrier_cluster_key as a channel_key_fn. */
static int barrier_keys(void *arg, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN])
{
	return barrier_cluster_key(arg, term, out);
}

/* A barrier unsealed with the keyring of terms 1..N whose keys are
 * TERM_KEYS (N x 32 bytes), sealed as barrier.c lays it out ("VFK" 1,
 * nonce, XChaCha20-Poly1305 of u32 count, count x (u32 term, key)): one
 * node of a cluster before or after applying a rotation. */
static struct barrier *barrier_with_terms(const uint8_t *term_keys, uint32_t n)
{
	static const char aad[] = "vaultfs-keyring-v1";
	enum { NONCE = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES };
	size_t pt_len = 4 + (size_t)n * (4 + CHANNEL_KEY_LEN);
	size_t len = 4 + NONCE + pt_len + crypto_aead_xchacha20poly1305_ietf_ABYTES;
	uint8_t *pt = secmem_alloc(pt_len), *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	uint8_t *blob = malloc(len);
	assert_non_null(pt);
	assert_non_null(root);
	assert_non_null(blob);
	put_le32(pt, n);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *e = pt + 4 + (size_t)i * (4 + CHANNEL_KEY_LEN);
		put_le32(e, i + 1);
		memcpy(e + 4, term_keys + (size_t)i * CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	}
	barrier_generate_root_key(root);
	memcpy(blob, "VFK\x01", 4);
	randombytes_buf(blob + 4, NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(blob + 4 + NONCE, NULL, pt, pt_len,
						   (const uint8_t *)aad, sizeof(aad) - 1, NULL,
						   blob + 4, root);
	struct barrier *b;
	assert_int_equal(barrier_new(&b), 0);
	assert_int_equal(barrier_unseal(b, root, blob, len), 0);
	free(blob);
	secmem_free(root);
	secmem_free(pt);
	return b;
}

static void test_cluster_key_sealed(void **state)
{
	(void)state;
	struct barrier *b;
	assert_int_equal(barrier_new(&b), 0);
	uint8_t *out = secmem_alloc(CHANNEL_KEY_LEN);
	assert_non_null(out);
	memset(out, 0xee, CHANNEL_KEY_LEN);
	for (uint32_t want = 0; want < 2; want++) {
		uint32_t term = want;
		assert_int_equal(barrier_cluster_key(b, &term, out), -ENOKEY);
		assert_int_equal(term, want);
	}
	for (size_t i = 0; i < CHANNEL_KEY_LEN; i++)
		assert_int_equal(out[i], 0xee);

	/* And again after sealing an unsealed barrier. */
	struct keyring k;
	keyring_new(&k);
	uint32_t term = 0;
	assert_int_equal(barrier_cluster_key(k.b, &term, out), 0);
	assert_int_equal(term, 1);
	barrier_seal(k.b);
	term = 0;
	assert_int_equal(barrier_cluster_key(k.b, &term, out), -ENOKEY);
	term = 1;
	assert_int_equal(barrier_cluster_key(k.b, &term, out), -ENOKEY);

	keyring_free(&k);
	secmem_free(out);
	barrier_free(b);
}

static void test_cluster_key_deterministic_per_keyring(void **state)
{
	(void)state;
	struct keyring k1, k2;
	keyring_new(&k1);
	keyring_new(&k2);
	uint8_t *a = secmem_alloc(CHANNEL_KEY_LEN);
	uint8_t *a2 = secmem_alloc(CHANNEL_KEY_LEN);
	uint8_t *b = secmem_alloc(CHANNEL_KEY_LEN);
	uint8_t *zero = secmem_alloc(CHANNEL_KEY_LEN);
	assert_non_null(a);
	assert_non_null(a2);
	assert_non_null(b);
	assert_non_null(zero);

	/* A fresh keyring has term 1 only. */
	uint32_t term = 0;
	assert_int_equal(barrier_cluster_key(k1.b, &term, a), 0);
	assert_int_equal(term, 1);
	assert_memory_not_equal(a, zero, CHANNEL_KEY_LEN);
	term = 1;
	assert_int_equal(barrier_cluster_key(k1.b, &term, a2), 0);
	assert_int_equal(term, 1);
	assert_memory_equal(a, a2, CHANNEL_KEY_LEN);
	term = 2;
	assert_int_equal(barrier_cluster_key(k1.b, &term, a2), -ENOKEY);

	/* Another node unsealing the same keyring gets the same key. */
	struct barrier *other;
	assert_int_equal(barrier_new(&other), 0);
	assert_int_equal(barrier_unseal(other, k1.root, k1.sealed.data, k1.sealed.len), 0);
	term = 0;
	assert_int_equal(barrier_cluster_key(other, &term, a2), 0);
	assert_memory_equal(a, a2, CHANNEL_KEY_LEN);
	term = 0;
	assert_int_equal(barrier_cluster_key(k1.b, &term, a2), 0);
	assert_memory_equal(a, a2, CHANNEL_KEY_LEN);

	/* A different keyring gives a different key. */
	term = 0;
	assert_int_equal(barrier_cluster_key(k2.b, &term, b), 0);
	assert_memory_not_equal(a, b, CHANNEL_KEY_LEN);

	/* Not the root key, and not something barrier_hash (the name subkey)
	 * produces for obvious inputs. */
	assert_memory_not_equal(a, k1.root, CHANNEL_KEY_LEN);
	uint8_t h[BARRIER_HASH_LEN];
	assert_int_equal(barrier_hash(k1.b, "", 0, h), 0);
	assert_memory_not_equal(a, h, CHANNEL_KEY_LEN);
	assert_int_equal(barrier_hash(k1.b, "vfsclst_", 8, h), 0);
	assert_memory_not_equal(a, h, CHANNEL_KEY_LEN);
	assert_int_equal(barrier_hash(k1.b, a, CHANNEL_KEY_LEN, h), 0);
	assert_memory_not_equal(a, h, CHANNEL_KEY_LEN);

	barrier_free(other);
	secmem_free(a);
	secmem_free(a2);
	secmem_free(b);
	secmem_free(zero);
	keyring_free(&k1);
	keyring_free(&k2);
}

static void test_cluster_key_by_term(void **state)
{
	(void)state;
	/* Two nodes of one cluster, one of which applied the rotation to term
	 * 3: each term's cluster key is the same on both, and distinct from
	 * the other terms'. */
	struct barrier *b3 = barrier_with_terms(keys_a, 3), *b2 = barrier_with_terms(keys_a, 2);
	uint8_t *k = secmem_alloc(4 * CHANNEL_KEY_LEN); /* terms 1..3 of b3, then scratch */
	assert_non_null(k);
	uint8_t *scratch = k + 3 * CHANNEL_KEY_LEN;

	uint32_t term = 0;
	assert_int_equal(barrier_cluster_key(b3, &term, scratch), 0);
	assert_int_equal(term, 3);
	for (uint32_t t = 1; t <= 3; t++) {
		term = t;
		assert_int_equal(barrier_cluster_key(b3, &term, k + (t - 1) * CHANNEL_KEY_LEN), 0);
		assert_int_equal(term, t);
	}
	assert_memory_equal(scratch, k + 2 * CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	assert_memory_not_equal(k, k + CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	assert_memory_not_equal(k + CHANNEL_KEY_LEN, k + 2 * CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);

	term = 0;
	assert_int_equal(barrier_cluster_key(b2, &term, scratch), 0);
	assert_int_equal(term, 2);
	assert_memory_equal(scratch, k + CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	term = 1;
	assert_int_equal(barrier_cluster_key(b2, &term, scratch), 0);
	assert_memory_equal(scratch, k, CHANNEL_KEY_LEN);

	/* A term the keyring does not have: -ENOKEY, OUT and *TERM untouched. */
	memset(scratch, 0xee, CHANNEL_KEY_LEN);
	term = 3;
	assert_int_equal(barrier_cluster_key(b2, &term, scratch), -ENOKEY);
	assert_int_equal(term, 3);
	term = 4;
	assert_int_equal(barrier_cluster_key(b3, &term, scratch), -ENOKEY);
	assert_int_equal(term, 4);
	for (size_t i = 0; i < CHANNEL_KEY_LEN; i++)
		assert_int_equal(scratch[i], 0xee);

	secmem_free(k);
	barrier_free(b2);
	barrier_free(b3);
}

static void test_cluster_key_drives_handshake(void **state)
{
	(void)state;
	/* Two nodes on the same keyring connect; a node on another does not. */
	struct keyring k1, k2;
	keyring_new(&k1);
	keyring_new(&k2);
	struct barrier *peer;
	assert_int_equal(barrier_new(&peer), 0);
	assert_int_equal(barrier_unseal(peer, k1.root, k1.sealed.data, k1.sealed.len), 0);

	struct pair p;
	pair_new_keys(&p, barrier_keys, k1.b, barrier_keys, peer);
	pair_hello_reply(&p);
	pair_finish_on(&p, 1);
	pair_free(&p);

	pair_new_keys(&p, barrier_keys, k1.b, barrier_keys, k2.b);
	pair_hello_reply(&p);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	pair_free(&p);

	/* Across a rotation one node applied: term 2, whichever dials; a
	 * keyring of another cluster with as many terms still fails. */
	struct barrier *b3 = barrier_with_terms(keys_a, 3), *b2 = barrier_with_terms(keys_a, 2);
	struct barrier *other3 = barrier_with_terms(keys_b, 3);
	pair_new_keys(&p, barrier_keys, b3, barrier_keys, b2);
	pair_hello_reply(&p);
	pair_finish_on(&p, 2);
	pair_free(&p);
	pair_new_keys(&p, barrier_keys, b2, barrier_keys, b3);
	pair_hello_reply(&p);
	pair_finish_on(&p, 2);
	pair_free(&p);
	pair_new_keys(&p, barrier_keys, b3, barrier_keys, other3);
	pair_hello_reply(&p);
	assert_int_equal(channel_on_reply(p.ini, p.reply.data, p.reply.len, &p.auth), -EBADMSG);
	pair_free(&p);

	barrier_free(other3);
	barrier_free(b2);
	barrier_free(b3);
	barrier_free(peer);
	keyring_free(&k1);
	keyring_free(&k2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_frames_both_ways),
		cmocka_unit_test(test_same_plaintext_gives_different_frames),
		cmocka_unit_test(test_oversized_frame_refused),
		cmocka_unit_test(test_peer_ids_after_handshake),
		cmocka_unit_test(test_identities_distinct_and_derivable),
		cmocka_unit_test(test_self_connection_refused),
		cmocka_unit_test(test_responder_claiming_other_identity_rejected),
		cmocka_unit_test(test_initiator_claiming_other_identity_rejected),
		cmocka_unit_test(test_wrong_key_initiator_rejects_reply),
		cmocka_unit_test(test_wrong_key_responder_rejects_auth),
		cmocka_unit_test(test_wrong_key_responder_gets_no_auth),
		cmocka_unit_test(test_tampered_hello_fails),
		cmocka_unit_test(test_bad_magic_and_version),
		cmocka_unit_test(test_hello_wrong_length),
		cmocka_unit_test(test_tampered_reply_rejected),
		cmocka_unit_test(test_truncated_or_extended_reply_rejected),
		cmocka_unit_test(test_tampered_auth_rejected),
		cmocka_unit_test(test_truncated_or_extended_auth_rejected),
		cmocka_unit_test(test_auth_from_other_session_rejected),
		cmocka_unit_test(test_every_frame_byte_flip_rejected),
		cmocka_unit_test(test_frame_truncated_or_extended_rejected),
		cmocka_unit_test(test_frame_replay_rejected),
		cmocka_unit_test(test_frame_reorder_rejected),
		cmocka_unit_test(test_frame_reflected_rejected),
		cmocka_unit_test(test_frame_from_other_session_rejected),
		cmocka_unit_test(test_wrong_order_calls),
		cmocka_unit_test(test_term_newest_shared),
		cmocka_unit_test(test_reply_term_out_of_range_refused),
		cmocka_unit_test(test_hello_term_zero_refused),
		cmocka_unit_test(test_term_tampering_fails),
		cmocka_unit_test(test_other_cluster_fails_whatever_the_terms),
		cmocka_unit_test(test_no_key_fails_locally),
		cmocka_unit_test(test_cluster_key_sealed),
		cmocka_unit_test(test_cluster_key_deterministic_per_keyring),
		cmocka_unit_test(test_cluster_key_by_term),
		cmocka_unit_test(test_cluster_key_drives_handshake),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
