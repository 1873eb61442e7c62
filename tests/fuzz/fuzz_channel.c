/* The cluster channel: everything a peer sends before and after the
 * handshake, both ends holding the keyring of terms 1..KEY_TERMS. Nobody
 * without a term's cluster key and an identity's secret key can pass the
 * handshake or get a frame accepted, and a peer presenting the node's own
 * identity is refused with -ELOOP, so besides "nothing crashes"
 * this checks the channel's promises with frames the harness seals itself
 * and then tampers with.
 *
 * Input: u8 mode, then per mode
 *   0  u8 hello_len, HELLO (hello_len bytes), AUTH (the rest): a responder
 *      with the fixed key and identity gets them as a connecting peer's
 *      messages;
 *   1  REPLY: an initiator that sent its HELLO gets it;
 *   2  a frame (u32 LE length, ciphertext, cut short if the input is)
 *      fed to channel_open of a ready channel;
 *   3  operations on a ready pair: u8 op, u8 len, len bytes of plaintext,
 *      u8 arg; op % 5: 0 deliver, 1 flip bit ARG, 2 cut ARG+1 bytes,
 *      3 deliver the next frame before this one, 4 deliver twice (replay);
 *      op & 0x80 sends from the responder instead of the initiator. */
#include <errno.h>
#include <string.h>

#include "crypto/channel.h"
#include "crypto/secmem.h"
#include "fuzz_common.h"

/* HELLO and REPLY fields the checks look at (layout in channel.h). */
#define CHANNEL_VERSION 3u
#define HELLO_OFF_VERSION 4u
#define HELLO_OFF_STATIC (5u + CHANNEL_ID_LEN)
#define HELLO_OFF_TERM (HELLO_OFF_STATIC + CHANNEL_ID_LEN)
#define REPLY_OFF_STATIC CHANNEL_ID_LEN
#define REPLY_OFF_TERM (2u * CHANNEL_ID_LEN)
#define KEY_TERMS 3u

/* Secure memory, fixed for the process: the cluster keys of terms
 * 1..KEY_TERMS and the identities of the initiator and the responder (made
 * from fixed secret keys so that seeds can present them whatever the
 * random source did before). */
static uint8_t *cluster_keys;
static struct channel_identity *ini_id;
static struct channel_identity *resp_id;

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int fuzz_keys(void *arg, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN])
{
	(void)arg;
	if (*term > KEY_TERMS)
		return -ENOKEY;
	if (*term == 0)
		*term = KEY_TERMS;
	memcpy(out, cluster_keys + (*term - 1) * CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	return 0;
}

static struct channel *new_channel(const struct channel_identity *me)
{
	struct channel *c = NULL;
	FUZZ_CHECK(channel_new(&c, me, fuzz_keys, NULL) == 0);
	return c;
}

static bool is_id(const uint8_t *pk, const struct channel_identity *id)
{
	return memcmp(pk, id->pk, CHANNEL_ID_LEN) == 0;
}

/* A real handshake; both channels end ready. */
static void ready_pair(struct channel **ret_i, struct channel **ret_r)
{
	struct channel *i = new_channel(ini_id), *r = new_channel(resp_id);
	struct buf hello, reply, auth;

	buf_init(&hello);
	buf_init(&reply);
	buf_init(&auth);
	FUZZ_CHECK(channel_hello(i, &hello) == 0 && hello.len == CHANNEL_HELLO_LEN);
	FUZZ_CHECK(channel_on_hello(r, hello.data, hello.len, &reply) == 0);
	FUZZ_CHECK(channel_on_reply(i, reply.data, reply.len, &auth) == 0);
	FUZZ_CHECK(channel_on_auth(r, auth.data, auth.len) == 0);
	FUZZ_CHECK(channel_ready(i) && channel_ready(r));
	FUZZ_CHECK(channel_term(i) == KEY_TERMS && channel_term(r) == KEY_TERMS);
	/* Each side has proven the other's identity. */
	FUZZ_CHECK(channel_peer_id(i) != NULL && is_id(channel_peer_id(i), resp_id));
	FUZZ_CHECK(channel_peer_id(r) != NULL && is_id(channel_peer_id(r), ini_id));
	buf_free(&auth);
	buf_free(&reply);
	buf_free(&hello);
	*ret_i = i;
	*ret_r = r;
}

/* A broken channel refuses everything from then on. */
static void check_broken(struct channel *c)
{
	struct buf out;
	uint8_t ct[CHANNEL_TAG_LEN + 1] = { 0 };
	buf_init(&out);
	FUZZ_CHECK(!channel_ready(c));
	FUZZ_CHECK(channel_open(c, ct, sizeof(ct), &out) == -EPIPE);
	FUZZ_CHECK(channel_seal(c, ct, 1, &out) == -EPIPE);
	FUZZ_CHECK(out.len == 0);
	buf_free(&out);
}

static void fuzz_responder(const uint8_t *p, size_t n)
{
	if (n < 1)
		return;
	size_t hello_len = p[0] < n - 1 ? p[0] : n - 1;
	const uint8_t *hello = p + 1, *auth = p + 1 + hello_len;
	size_t auth_len = n - 1 - hello_len;
	struct channel *r = new_channel(resp_id);
	struct buf reply;
	/* A well-formed HELLO that presents the responder's own identity. */
	bool self = hello_len == CHANNEL_HELLO_LEN && memcmp(hello, CHANNEL_MAGIC, 4) == 0 &&
		    hello[HELLO_OFF_VERSION] == CHANNEL_VERSION &&
		    get_le32(hello + HELLO_OFF_TERM) != 0 &&
		    is_id(hello + HELLO_OFF_STATIC, resp_id);

	buf_init(&reply);
	int rv = channel_on_hello(r, hello, hello_len, &reply);
	if (rv == 0) {
		FUZZ_CHECK(!self);
		FUZZ_CHECK(hello_len == CHANNEL_HELLO_LEN && reply.len == CHANNEL_REPLY_LEN);
		/* The newest term both hold, never 0. */
		uint32_t offered = get_le32(hello + HELLO_OFF_TERM);
		FUZZ_CHECK(offered != 0 && get_le32(reply.data + REPLY_OFF_TERM) ==
						   (offered < KEY_TERMS ? offered : KEY_TERMS));
		/* The claimed identity, not yet proven. */
		const uint8_t *peer = channel_peer_id(r);
		FUZZ_CHECK(peer != NULL &&
			   memcmp(peer, hello + HELLO_OFF_STATIC, CHANNEL_ID_LEN) == 0);
		FUZZ_CHECK(!channel_ready(r));
		/* Only the holder of the cluster key and of the claimed identity's
		 * secret key can answer; the input cannot. */
		rv = channel_on_auth(r, auth, auth_len);
		FUZZ_CHECK(rv == -EBADMSG);
	} else {
		FUZZ_CHECK(rv == (self ? -ELOOP : -EBADMSG) && reply.len == 0);
	}
	check_broken(r);
	buf_free(&reply);
	channel_free(r);
}

static void fuzz_initiator(const uint8_t *p, size_t n)
{
	struct channel *i = new_channel(ini_id);
	struct buf hello, auth;
	/* A REPLY that presents the initiator's own identity. */
	bool self = n == CHANNEL_REPLY_LEN && is_id(p + REPLY_OFF_STATIC, ini_id);

	buf_init(&hello);
	buf_init(&auth);
	FUZZ_CHECK(channel_hello(i, &hello) == 0);
	/* The REPLY must answer this HELLO's fresh e_i: the input cannot. */
	int rv = channel_on_reply(i, p, n, &auth);
	FUZZ_CHECK(rv == (self ? -ELOOP : -EBADMSG) && auth.len == 0);
	check_broken(i);
	buf_free(&auth);
	buf_free(&hello);
	channel_free(i);
}

static void fuzz_frames(const uint8_t *p, size_t n)
{
	struct channel *i, *r;
	struct buf out;

	ready_pair(&i, &r);
	buf_init(&out);
	/* One frame is enough: the first that fails to open breaks the channel. */
	if (n >= 4) {
		size_t len = get_le32(p);
		if (len > n - 4)
			len = n - 4;
		int rv = channel_open(r, p + 4, len, &out);
		/* Forging needs the session key. */
		FUZZ_CHECK(rv == -EBADMSG && out.len == 0);
		check_broken(r);
	}
	buf_free(&out);
	channel_free(r);
	channel_free(i);
}

/* Seals PT on TX; returns the frame's ciphertext (after the u32 length). */
static void seal(struct channel *tx, const uint8_t *pt, size_t len, struct buf *frame)
{
	buf_clear(frame);
	FUZZ_CHECK(channel_seal(tx, pt, len, frame) == 0);
	FUZZ_CHECK(frame->len == 4 + len + CHANNEL_TAG_LEN);
	FUZZ_CHECK(get_le32(frame->data) == len + CHANNEL_TAG_LEN);
}

static void expect_open(struct channel *rx, const struct buf *frame, const uint8_t *pt,
			size_t len)
{
	struct buf out;
	buf_init(&out);
	FUZZ_CHECK(channel_open(rx, frame->data + 4, frame->len - 4, &out) == 0);
	FUZZ_CHECK(out.len == len && (len == 0 || memcmp(out.data, pt, len) == 0));
	buf_free(&out);
}

static void expect_reject(struct channel *rx, const uint8_t *ct, size_t len)
{
	struct buf out;
	buf_init(&out);
	FUZZ_CHECK(channel_open(rx, ct, len, &out) == -EBADMSG && out.len == 0);
	check_broken(rx);
	buf_free(&out);
}

static void fuzz_tamper(const uint8_t *p, size_t n)
{
	struct channel *i, *r;
	struct buf f1, f2;
	bool broken = false;

	ready_pair(&i, &r);
	buf_init(&f1);
	buf_init(&f2);
	while (!broken && n >= 3) {
		uint8_t op = p[0];
		size_t len = p[1] < n - 2 ? p[1] : n - 2;
		const uint8_t *pt = p + 2;
		p += 2 + len;
		n -= 2 + len;
		uint8_t arg = 0;
		if (n > 0) {
			arg = p[0];
			p++;
			n--;
		}
		struct channel *tx = (op & 0x80) ? r : i, *rx = (op & 0x80) ? i : r;
		seal(tx, pt, len, &f1);
		switch (op % 5) {
		case 0:
			expect_open(rx, &f1, pt, len);
			break;
		case 1: {
			size_t at = 4 + (size_t)arg % (f1.len - 4);
			f1.data[at] ^= (uint8_t)(1u << (arg % 8));
			expect_reject(rx, f1.data + 4, f1.len - 4);
			broken = true;
			break;
		}
		case 2: {
			size_t cut = (size_t)arg % (f1.len - 4) + 1;
			expect_reject(rx, f1.data + 4, f1.len - 4 - cut);
			broken = true;
			break;
		}
		case 3:
			seal(tx, pt, len, &f2);
			expect_reject(rx, f2.data + 4, f2.len - 4);
			broken = true;
			break;
		default:
			expect_open(rx, &f1, pt, len);
			expect_reject(rx, f1.data + 4, f1.len - 4);
			broken = true;
			break;
		}
	}
	buf_free(&f2);
	buf_free(&f1);
	channel_free(r);
	channel_free(i);
}

static void write_seeds(const char *dir)
{
	struct channel *i = new_channel(ini_id);
	struct buf b, hello;

	buf_init(&b);
	buf_init(&hello);
	FUZZ_CHECK(channel_hello(i, &hello) == 0);
	buf_put_u8(&b, 0);
	buf_put_u8(&b, CHANNEL_HELLO_LEN);
	buf_put_raw(&b, hello.data, hello.len);
	for (unsigned k = 0; k < CHANNEL_AUTH_LEN; k++)
		buf_put_u8(&b, (uint8_t)k);
	fuzz_write_seed(dir, "responder_hello_auth", b.data, b.len);

	/* The same HELLO presenting the responder's own identity (-ELOOP). */
	memcpy(b.data + 2 + HELLO_OFF_STATIC, resp_id->pk, CHANNEL_ID_LEN);
	fuzz_write_seed(dir, "responder_hello_self", b.data, b.len);

	buf_clear(&b);
	buf_put_u8(&b, 1);
	for (unsigned k = 0; k < CHANNEL_REPLY_LEN; k++)
		buf_put_u8(&b, (uint8_t)(k * 3));
	fuzz_write_seed(dir, "initiator_reply", b.data, b.len);

	/* A REPLY presenting the initiator's own identity (-ELOOP). */
	memcpy(b.data + 1 + REPLY_OFF_STATIC, ini_id->pk, CHANNEL_ID_LEN);
	fuzz_write_seed(dir, "initiator_reply_self", b.data, b.len);

	buf_clear(&b);
	buf_put_u8(&b, 2);
	buf_put_u32(&b, CHANNEL_TAG_LEN + 5);
	buf_put_raw(&b, "hello0123456789abcdef", CHANNEL_TAG_LEN + 5);
	fuzz_write_seed(dir, "frames", b.data, b.len);

	static const uint8_t ops[] = {
		3, 0, 5, 'h', 'e', 'l', 'l', 'o', 0,
		3, 0x80, 0, 0,
		3, 4, 3, 'a', 'b', 'c', 0,
	};
	fuzz_write_seed(dir, "tamper_deliver_replay", ops, sizeof(ops));
	static const uint8_t flip[] = { 3, 0, 2, 'o', 'k', 0, 1, 4, 'd', 'a', 't', 'a', 37 };
	fuzz_write_seed(dir, "tamper_flip", flip, sizeof(flip));
	static const uint8_t cut[] = { 3, 0x82, 4, 'd', 'a', 't', 'a', 2 };
	fuzz_write_seed(dir, "tamper_cut", cut, sizeof(cut));
	static const uint8_t reorder[] = { 3, 3, 1, 'x', 0 };
	fuzz_write_seed(dir, "tamper_reorder", reorder, sizeof(reorder));

	buf_free(&hello);
	buf_free(&b);
	channel_free(i);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_log();
	fuzz_crypto_init();
	cluster_keys = secmem_alloc(KEY_TERMS * CHANNEL_KEY_LEN);
	FUZZ_CHECK(cluster_keys != NULL);
	for (unsigned k = 0; k < KEY_TERMS * CHANNEL_KEY_LEN; k++)
		cluster_keys[k] = (uint8_t)(0xc0 + k);
	ini_id = secmem_alloc(sizeof(*ini_id));
	resp_id = secmem_alloc(sizeof(*resp_id));
	FUZZ_CHECK(ini_id != NULL && resp_id != NULL);
	for (unsigned k = 0; k < CHANNEL_ID_LEN; k++) {
		ini_id->sk[k] = (uint8_t)(0x10 + k);
		resp_id->sk[k] = (uint8_t)(0x80 + k);
	}
	channel_identity_derive(ini_id);
	channel_identity_derive(resp_id);
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 4) {
	case 0:
		fuzz_responder(p, n);
		break;
	case 1:
		fuzz_initiator(p, n);
		break;
	case 2:
		fuzz_frames(p, n);
		break;
	default:
		fuzz_tamper(p, n);
		break;
	}
	return 0;
}
