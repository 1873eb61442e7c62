/* Authenticated, encrypted channel: handshake state machine and frames.
 *
 * The whole struct lives in secure memory because it holds the cluster key
 * (fetched from the key callback just before K is derived, wiped right
 * after), the identity's secret key (until the handshake ends) and both
 * session keys. Any failure that could come from an attacker (bad MAC,
 * malformed message, forged frame) breaks the channel for good and wipes
 * its keys: the caller must drop the connection and start a fresh
 * handshake, which yields fresh keys.
 *
 * Frame nonce: u64 LE per-direction counter, then 16 zero bytes. Distinct
 * keys per direction and per session make (key, nonce) pairs unique. */
#include "crypto/channel.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "crypto/barrier.h"
#include "crypto/secmem.h"

#define CHANNEL_VERSION 3u
#define CHANNEL_MAC_LEN 32u
#define CHANNEL_LEN_PREFIX 4u
#define CHANNEL_AEAD_NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
/* Past this many frames in one direction we refuse rather than let the
 * counter approach wrap-around; a reconnect gives fresh keys. */
#define CHANNEL_MAX_COUNTER (UINT64_C(1) << 63)

/* Offsets inside HELLO and REPLY. */
#define HELLO_OFF_VERSION 4u
#define HELLO_OFF_EPHEMERAL 5u
#define CHANNEL_TERM_LEN 4u
#define HELLO_OFF_STATIC (HELLO_OFF_EPHEMERAL + CHANNEL_ID_LEN)
#define HELLO_OFF_TERM (HELLO_OFF_STATIC + CHANNEL_ID_LEN)
#define REPLY_OFF_STATIC CHANNEL_ID_LEN
#define REPLY_OFF_TERM (2u * CHANNEL_ID_LEN)
#define REPLY_OFF_MAC (REPLY_OFF_TERM + CHANNEL_TERM_LEN)

_Static_assert(CHANNEL_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "session keys are AEAD keys");
_Static_assert(CHANNEL_ID_LEN == crypto_scalarmult_BYTES &&
		       CHANNEL_ID_LEN == crypto_scalarmult_SCALARBYTES,
	       "identities are X25519 keys");
_Static_assert(CHANNEL_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES,
	       "frame tag length");
_Static_assert(CHANNEL_KEY_LEN == BARRIER_CLUSTER_KEY_LEN,
	       "barrier_cluster_key is a channel_key_fn");
_Static_assert(CHANNEL_HELLO_LEN == HELLO_OFF_TERM + CHANNEL_TERM_LEN, "HELLO layout");
_Static_assert(CHANNEL_REPLY_LEN == REPLY_OFF_MAC + CHANNEL_MAC_LEN, "REPLY layout");
_Static_assert(CHANNEL_AUTH_LEN == CHANNEL_MAC_LEN, "AUTH layout");
_Static_assert(CHANNEL_MAX_FRAME <= UINT32_MAX - CHANNEL_TAG_LEN, "length fits the prefix");

/* Labels are 8 bytes so that no hash input is a prefix of another. */
static const uint8_t label_hs[8] = { 'v', 'f', 's', '-', 'h', 's', '-', '3' };
static const uint8_t label_resp[8] = { 'v', 'f', 's', '-', 'r', 'e', 's', 'p' };
static const uint8_t label_init[8] = { 'v', 'f', 's', '-', 'i', 'n', 'i', 't' };
static const uint8_t label_i2r[8] = { 'v', 'f', 's', '-', 'i', '2', 'r', '_' };
static const uint8_t label_r2i[8] = { 'v', 'f', 's', '-', 'r', '2', 'i', '_' };

enum channel_state {
	CHANNEL_NEW,        /* either role may start */
	CHANNEL_HELLO_SENT, /* initiator waits for REPLY */
	CHANNEL_REPLY_SENT, /* responder waits for AUTH */
	CHANNEL_READY,
	CHANNEL_BROKEN,     /* keys wiped; every call returns -EPIPE */
};

struct channel {
	channel_key_fn keys;
	void *keys_arg;
	uint8_t cluster_key[CHANNEL_KEY_LEN]; /* only while K is derived */
	/* Initiator: the term offered, then the agreed one; responder: the
	 * one chosen. */
	uint32_t term;
	struct channel_identity me;           /* wiped once the handshake ends */
	uint8_t eph_sk[CHANNEL_ID_LEN];       /* initiator's ephemeral secret */
	uint8_t hs_key[CHANNEL_KEY_LEN];      /* K, until the handshake ends */
	uint8_t peer[CHANNEL_ID_LEN];         /* the peer's static public key */
	bool have_peer;
	uint8_t tx_key[CHANNEL_KEY_LEN];
	uint8_t rx_key[CHANNEL_KEY_LEN];
	uint8_t hello[CHANNEL_HELLO_LEN];     /* transcript, as sent/received */
	uint64_t tx_counter;
	uint64_t rx_counter;
	enum channel_state state;
};

static void put_le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
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

void channel_identity_generate(struct channel_identity *id)
{
	randombytes_buf(id->sk, sizeof id->sk);
	channel_identity_derive(id);
}

void channel_identity_derive(struct channel_identity *id)
{
	crypto_scalarmult_base(id->pk, id->sk);
}

int channel_new(struct channel **ret, const struct channel_identity *me, channel_key_fn keys,
		void *keys_arg)
{
	if (ret == NULL || me == NULL || keys == NULL)
		return -EINVAL;
	struct channel *c = secmem_alloc(sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->keys = keys;
	c->keys_arg = keys_arg;
	c->me = *me;
	c->state = CHANNEL_NEW;
	*ret = c;
	return 0;
}

void channel_free(struct channel *c)
{
	secmem_free(c); /* wipes keys and transcript */
}

bool channel_ready(const struct channel *c)
{
	return c != NULL && c->state == CHANNEL_READY;
}

const uint8_t *channel_peer_id(const struct channel *c)
{
	return c != NULL && c->have_peer ? c->peer : NULL;
}

uint32_t channel_term(const struct channel *c)
{
	return channel_ready(c) ? c->term : 0;
}

/* Wipes every key and makes the channel refuse all further calls. Returns
 * ERR so that error paths read `return channel_break(c, -EBADMSG);`. */
static int channel_break(struct channel *c, int err)
{
	secmem_wipe(c, sizeof(*c));
	c->state = CHANNEL_BROKEN;
	return err;
}

/* -EPIPE on a broken channel, -EINVAL if the call does not belong to the
 * current state; otherwise 0. Wrong-order calls are caller bugs, not peer
 * misbehaviour, so they leave the channel as it was. */
static int channel_expect(const struct channel *c, enum channel_state want)
{
	if (c == NULL)
		return -EINVAL;
	if (c->state == CHANNEL_BROKEN)
		return -EPIPE;
	return c->state == want ? 0 : -EINVAL;
}

/* Takes the peer's static key; -ELOOP if it is our own. */
static int channel_set_peer(struct channel *c, const uint8_t *pk)
{
	memcpy(c->peer, pk, CHANNEL_ID_LEN);
	c->have_peer = true;
	return sodium_memcmp(pk, c->me.pk, CHANNEL_ID_LEN) == 0 ? -ELOOP : 0;
}

/* Asks the key callback for term *TERM's cluster key (0: the newest, and
 * *TERM becomes its term) into c->cluster_key. Any failure is -ENOKEY: a
 * callback that answers 0 without naming a term has no usable key either. */
static int channel_fetch_key(struct channel *c, uint32_t *term)
{
	uint32_t want = *term;
	int r = c->keys(c->keys_arg, term, c->cluster_key);
	if (r != 0 || *term == 0 || (want != 0 && *term != want)) {
		sodium_memzero(c->cluster_key, CHANNEL_KEY_LEN);
		return -ENOKEY;
	}
	return 0;
}

/* K from the transcript (HELLO, e_r, s_r, the chosen term) and the three
 * DH results, keyed with the chosen term's cluster key (in c->cluster_key).
 * Wipes the DH results and the cluster key. */
static void channel_derive_hs_key(struct channel *c, const uint8_t *e_r, const uint8_t *s_r,
				  uint8_t dh[3][CHANNEL_ID_LEN])
{
	uint8_t term[CHANNEL_TERM_LEN];
	put_le32(term, c->term);
	crypto_generichash_state st;
	crypto_generichash_init(&st, c->cluster_key, CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	crypto_generichash_update(&st, label_hs, sizeof label_hs);
	crypto_generichash_update(&st, c->hello, CHANNEL_HELLO_LEN);
	crypto_generichash_update(&st, e_r, CHANNEL_ID_LEN);
	crypto_generichash_update(&st, s_r, CHANNEL_ID_LEN);
	crypto_generichash_update(&st, term, sizeof term);
	for (unsigned i = 0; i < 3; i++)
		crypto_generichash_update(&st, dh[i], CHANNEL_ID_LEN);
	crypto_generichash_final(&st, c->hs_key, CHANNEL_KEY_LEN);
	sodium_memzero(&st, sizeof(st)); /* keyed state */
	sodium_memzero(dh, 3 * CHANNEL_ID_LEN);
	sodium_memzero(c->cluster_key, CHANNEL_KEY_LEN);
}

/* BLAKE2b(K, LABEL): both MACs and both session keys. */
static void channel_hs_hash(const struct channel *c, const uint8_t label[8], uint8_t out[32])
{
	crypto_generichash(out, 32, label, 8, c->hs_key, CHANNEL_KEY_LEN);
}

/* Both sides verified: derive directional keys, drop everything else. */
static void channel_finish(struct channel *c, bool initiator)
{
	uint8_t *i2r = initiator ? c->tx_key : c->rx_key;
	uint8_t *r2i = initiator ? c->rx_key : c->tx_key;
	channel_hs_hash(c, label_i2r, i2r);
	channel_hs_hash(c, label_r2i, r2i);
	sodium_memzero(c->hs_key, CHANNEL_KEY_LEN);
	sodium_memzero(&c->me, sizeof c->me);
	sodium_memzero(c->eph_sk, CHANNEL_ID_LEN);
	c->tx_counter = 0;
	c->rx_counter = 0;
	c->state = CHANNEL_READY;
}

/* Compares the peer's MAC with the expected one in constant time. */
static bool channel_mac_ok(const struct channel *c, const uint8_t label[8], const uint8_t *mac)
{
	uint8_t want[CHANNEL_MAC_LEN];
	channel_hs_hash(c, label, want);
	bool ok = sodium_memcmp(want, mac, CHANNEL_MAC_LEN) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

int channel_hello(struct channel *c, struct buf *out)
{
	int r = channel_expect(c, CHANNEL_NEW);
	if (r < 0)
		return r;
	if (out == NULL)
		return -EINVAL;
	/* Reserve first so that a failed allocation leaves no partial output
	 * and the call can be retried. */
	if (buf_reserve(out, CHANNEL_HELLO_LEN) < 0)
		return -ENOMEM;
	/* Only the newest term's number is needed now; the key for the term
	 * the responder chooses is fetched when its REPLY arrives. */
	uint32_t term = 0;
	r = channel_fetch_key(c, &term);
	sodium_memzero(c->cluster_key, CHANNEL_KEY_LEN);
	if (r < 0)
		return r;

	c->term = term;
	memcpy(c->hello, CHANNEL_MAGIC, 4);
	c->hello[HELLO_OFF_VERSION] = CHANNEL_VERSION;
	randombytes_buf(c->eph_sk, CHANNEL_ID_LEN);
	crypto_scalarmult_base(c->hello + HELLO_OFF_EPHEMERAL, c->eph_sk);
	memcpy(c->hello + HELLO_OFF_STATIC, c->me.pk, CHANNEL_ID_LEN);
	put_le32(c->hello + HELLO_OFF_TERM, term);
	buf_put_raw(out, c->hello, CHANNEL_HELLO_LEN);
	c->state = CHANNEL_HELLO_SENT;
	return 0;
}

int channel_on_reply(struct channel *c, const uint8_t *reply, size_t len, struct buf *out)
{
	int r = channel_expect(c, CHANNEL_HELLO_SENT);
	if (r < 0)
		return r;
	if (out == NULL)
		return -EINVAL;
	if (reply == NULL || len != CHANNEL_REPLY_LEN)
		return channel_break(c, -EBADMSG);
	if (buf_reserve(out, CHANNEL_AUTH_LEN) < 0)
		return -ENOMEM;
	const uint8_t *e_r = reply, *s_r = reply + REPLY_OFF_STATIC;
	if ((r = channel_set_peer(c, s_r)) != 0)
		return channel_break(c, r);
	/* The responder may only go down from what we offered. */
	uint32_t term = get_le32(reply + REPLY_OFF_TERM);
	if (term == 0 || term > c->term)
		return channel_break(c, -EBADMSG);
	c->term = term;
	if ((r = channel_fetch_key(c, &term)) != 0)
		return channel_break(c, r);

	/* DH(e_i,e_r), DH(s_i,e_r), DH(e_i,s_r); a low-order point gives
	 * an all-zero result, which scalarmult refuses. */
	uint8_t dh[3][CHANNEL_ID_LEN];
	bool ok = crypto_scalarmult(dh[0], c->eph_sk, e_r) == 0 &&
		  crypto_scalarmult(dh[1], c->me.sk, e_r) == 0 &&
		  crypto_scalarmult(dh[2], c->eph_sk, s_r) == 0;
	channel_derive_hs_key(c, e_r, s_r, dh);
	if (!ok || !channel_mac_ok(c, label_resp, reply + REPLY_OFF_MAC))
		return channel_break(c, -EBADMSG);

	uint8_t mac_i[CHANNEL_MAC_LEN];
	channel_hs_hash(c, label_init, mac_i);
	buf_put_raw(out, mac_i, sizeof(mac_i));
	channel_finish(c, true);
	return 0;
}

/* Responder: the newest term both ends hold, min(OFFERED, our newest), and
 * its key into c->cluster_key. Keyrings are contiguous, so an offer below
 * our newest is a term we have. */
static int channel_choose_term(struct channel *c, uint32_t offered)
{
	uint32_t term = 0;
	int r = channel_fetch_key(c, &term);
	if (r == 0 && offered < term) {
		term = offered;
		r = channel_fetch_key(c, &term);
	}
	c->term = r == 0 ? term : 0;
	return r;
}

int channel_on_hello(struct channel *c, const uint8_t *hello, size_t len, struct buf *out)
{
	int r = channel_expect(c, CHANNEL_NEW);
	if (r < 0)
		return r;
	if (out == NULL)
		return -EINVAL;
	if (hello == NULL || len != CHANNEL_HELLO_LEN ||
	    memcmp(hello, CHANNEL_MAGIC, 4) != 0 || hello[HELLO_OFF_VERSION] != CHANNEL_VERSION ||
	    get_le32(hello + HELLO_OFF_TERM) == 0)
		return channel_break(c, -EBADMSG);
	if (buf_reserve(out, CHANNEL_REPLY_LEN) < 0)
		return -ENOMEM;
	const uint8_t *e_i = hello + HELLO_OFF_EPHEMERAL, *s_i = hello + HELLO_OFF_STATIC;
	/* Only a claim until AUTH verifies: s_i is bound into MAC_i. */
	if ((r = channel_set_peer(c, s_i)) != 0)
		return channel_break(c, r);
	if ((r = channel_choose_term(c, get_le32(hello + HELLO_OFF_TERM))) != 0)
		return channel_break(c, r);

	memcpy(c->hello, hello, CHANNEL_HELLO_LEN);
	uint8_t e_sk[CHANNEL_ID_LEN], e_r[CHANNEL_ID_LEN], dh[3][CHANNEL_ID_LEN];
	randombytes_buf(e_sk, sizeof e_sk);
	crypto_scalarmult_base(e_r, e_sk);
	bool ok = crypto_scalarmult(dh[0], e_sk, e_i) == 0 &&
		  crypto_scalarmult(dh[1], e_sk, s_i) == 0 &&
		  crypto_scalarmult(dh[2], c->me.sk, e_i) == 0;
	sodium_memzero(e_sk, sizeof e_sk);
	channel_derive_hs_key(c, e_r, c->me.pk, dh);
	if (!ok)
		return channel_break(c, -EBADMSG);

	uint8_t mac_r[CHANNEL_MAC_LEN];
	channel_hs_hash(c, label_resp, mac_r);
	uint8_t term[CHANNEL_TERM_LEN];
	put_le32(term, c->term);
	buf_put_raw(out, e_r, CHANNEL_ID_LEN);
	buf_put_raw(out, c->me.pk, CHANNEL_ID_LEN);
	buf_put_raw(out, term, sizeof term);
	buf_put_raw(out, mac_r, sizeof(mac_r));
	c->state = CHANNEL_REPLY_SENT;
	return 0;
}

int channel_on_auth(struct channel *c, const uint8_t *auth, size_t len)
{
	int r = channel_expect(c, CHANNEL_REPLY_SENT);
	if (r < 0)
		return r;
	if (auth == NULL || len != CHANNEL_AUTH_LEN || !channel_mac_ok(c, label_init, auth))
		return channel_break(c, -EBADMSG);
	channel_finish(c, false);
	return 0;
}

static void channel_frame_nonce(uint64_t counter, uint8_t nonce[CHANNEL_AEAD_NONCE_LEN])
{
	memset(nonce, 0, CHANNEL_AEAD_NONCE_LEN);
	put_le64(nonce, counter);
}

int channel_seal(struct channel *c, const void *pt, size_t len, struct buf *out)
{
	int r = channel_expect(c, CHANNEL_READY);
	if (r < 0)
		return r;
	if (out == NULL || (pt == NULL && len != 0))
		return -EINVAL;
	if (len > CHANNEL_MAX_FRAME)
		return -EMSGSIZE;
	/* Never reuse a nonce: stop before the counter could wrap. */
	if (c->tx_counter >= CHANNEL_MAX_COUNTER)
		return channel_break(c, -EOVERFLOW);
	size_t ct_len = len + CHANNEL_TAG_LEN;
	if (buf_reserve(out, CHANNEL_LEN_PREFIX + ct_len) < 0)
		return -ENOMEM;

	uint8_t ad[CHANNEL_LEN_PREFIX];
	put_le32(ad, (uint32_t)ct_len);
	uint8_t nonce[CHANNEL_AEAD_NONCE_LEN];
	channel_frame_nonce(c->tx_counter, nonce);
	buf_put_raw(out, ad, sizeof(ad));
	/* sodium wants a valid pointer even for an empty message. */
	static const uint8_t empty;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->data + out->len, NULL,
						   len != 0 ? pt : &empty, len, ad, sizeof(ad),
						   NULL, nonce, c->tx_key);
	out->len += ct_len;
	c->tx_counter++;
	return 0;
}

int channel_open(struct channel *c, const uint8_t *ct, size_t len, struct buf *out)
{
	int r = channel_expect(c, CHANNEL_READY);
	if (r < 0)
		return r;
	if (out == NULL)
		return -EINVAL;
	if (ct == NULL || len < CHANNEL_TAG_LEN || len - CHANNEL_TAG_LEN > CHANNEL_MAX_FRAME)
		return channel_break(c, -EBADMSG);
	if (c->rx_counter >= CHANNEL_MAX_COUNTER)
		return channel_break(c, -EOVERFLOW);
	size_t pt_len = len - CHANNEL_TAG_LEN;
	/* At least one byte so that the destination pointer is valid. */
	if (buf_reserve(out, pt_len + 1) < 0)
		return -ENOMEM;

	uint8_t ad[CHANNEL_LEN_PREFIX];
	put_le32(ad, (uint32_t)len);
	uint8_t nonce[CHANNEL_AEAD_NONCE_LEN];
	channel_frame_nonce(c->rx_counter, nonce);
	uint8_t *dst = out->data + out->len;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(dst, NULL, NULL, ct, len, ad, sizeof(ad),
						       nonce, c->rx_key) != 0) {
		secmem_wipe(dst, pt_len);
		return channel_break(c, -EBADMSG);
	}
	out->len += pt_len;
	c->rx_counter++;
	return 0;
}
