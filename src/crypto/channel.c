/* Authenticated, encrypted channel: handshake state machine and frames.
 *
 * The whole struct lives in secure memory because it holds the cluster key
 * (until the handshake ends) and both session keys. Any failure that could
 * come from an attacker (bad MAC, malformed message, forged frame) breaks
 * the channel for good and wipes its keys: the caller must drop the
 * connection and start a fresh handshake, which yields fresh keys.
 *
 * Session keys bind the whole transcript (HELLO, which contains nonce_i, and
 * nonce_r):
 *   i2r = BLAKE2b(cluster key, "vfs-i2r" || HELLO || nonce_r)
 *   r2i = BLAKE2b(cluster key, "vfs-r2i" || HELLO || nonce_r)
 * Frame nonce: u64 LE per-direction counter, then 16 zero bytes. Distinct
 * keys per direction and per session make (key, nonce) pairs unique. */
#include "crypto/channel.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "crypto/secmem.h"

#define CHANNEL_VERSION 1u
#define CHANNEL_NONCE_LEN 32u
#define CHANNEL_MAC_LEN 32u
#define CHANNEL_LEN_PREFIX 4u
#define CHANNEL_AEAD_NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
/* Past this many frames in one direction we refuse rather than let the
 * counter approach wrap-around; a reconnect gives fresh keys. */
#define CHANNEL_MAX_COUNTER (UINT64_C(1) << 63)

/* Offsets inside HELLO. */
#define HELLO_OFF_VERSION 4u
#define HELLO_OFF_ID 5u
#define HELLO_OFF_NONCE 13u

_Static_assert(CHANNEL_KEY_LEN == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "session keys are AEAD keys");
_Static_assert(CHANNEL_TAG_LEN == crypto_aead_xchacha20poly1305_ietf_ABYTES,
	       "frame tag length");
_Static_assert(CHANNEL_HELLO_LEN == HELLO_OFF_NONCE + CHANNEL_NONCE_LEN, "HELLO layout");
_Static_assert(CHANNEL_REPLY_LEN == CHANNEL_NONCE_LEN + CHANNEL_MAC_LEN, "REPLY layout");
_Static_assert(CHANNEL_AUTH_LEN == CHANNEL_MAC_LEN, "AUTH layout");
_Static_assert(CHANNEL_MAX_FRAME <= UINT32_MAX - CHANNEL_TAG_LEN, "length fits the prefix");

/* Labels are 8 bytes so that no MAC input is a prefix of another. */
static const uint8_t label_resp[8] = { 'v', 'f', 's', '-', 'r', 'e', 's', 'p' };
static const uint8_t label_init[8] = { 'v', 'f', 's', '-', 'i', 'n', 'i', 't' };
static const uint8_t label_i2r[7] = { 'v', 'f', 's', '-', 'i', '2', 'r' };
static const uint8_t label_r2i[7] = { 'v', 'f', 's', '-', 'r', '2', 'i' };

enum channel_state {
	CHANNEL_NEW,        /* either role may start */
	CHANNEL_HELLO_SENT, /* initiator waits for REPLY */
	CHANNEL_REPLY_SENT, /* responder waits for AUTH */
	CHANNEL_READY,
	CHANNEL_BROKEN,     /* keys wiped; every call returns -EPIPE */
};

struct channel {
	uint8_t cluster_key[CHANNEL_KEY_LEN]; /* wiped once the handshake ends */
	uint8_t tx_key[CHANNEL_KEY_LEN];
	uint8_t rx_key[CHANNEL_KEY_LEN];
	uint8_t hello[CHANNEL_HELLO_LEN];       /* transcript, as sent/received */
	uint8_t nonce_r[CHANNEL_NONCE_LEN];
	uint64_t tx_counter;
	uint64_t rx_counter;
	enum channel_state state;
};

static void put_le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int channel_new(struct channel **ret, const uint8_t cluster_key[CHANNEL_KEY_LEN])
{
	if (ret == NULL || cluster_key == NULL)
		return -EINVAL;
	struct channel *c = secmem_alloc(sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	memcpy(c->cluster_key, cluster_key, CHANNEL_KEY_LEN);
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

/* BLAKE2b(cluster key, LABEL || HELLO || nonce_r); used for both MACs and
 * both session keys, told apart by the label. */
static void channel_transcript_hash(const struct channel *c, const uint8_t *label,
				    size_t label_len, uint8_t out[32])
{
	crypto_generichash_state st;
	crypto_generichash_init(&st, c->cluster_key, CHANNEL_KEY_LEN, 32);
	crypto_generichash_update(&st, label, label_len);
	crypto_generichash_update(&st, c->hello, CHANNEL_HELLO_LEN);
	crypto_generichash_update(&st, c->nonce_r, CHANNEL_NONCE_LEN);
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st)); /* keyed state */
}

/* Both sides verified: derive directional keys, drop the cluster key. */
static void channel_finish(struct channel *c, bool initiator)
{
	uint8_t *i2r = initiator ? c->tx_key : c->rx_key;
	uint8_t *r2i = initiator ? c->rx_key : c->tx_key;
	channel_transcript_hash(c, label_i2r, sizeof(label_i2r), i2r);
	channel_transcript_hash(c, label_r2i, sizeof(label_r2i), r2i);
	sodium_memzero(c->cluster_key, CHANNEL_KEY_LEN);
	c->tx_counter = 0;
	c->rx_counter = 0;
	c->state = CHANNEL_READY;
}

/* Compares the peer's MAC with the expected one in constant time. */
static bool channel_mac_ok(const struct channel *c, const uint8_t *label, const uint8_t *mac)
{
	uint8_t want[CHANNEL_MAC_LEN];
	channel_transcript_hash(c, label, 8, want);
	bool ok = sodium_memcmp(want, mac, CHANNEL_MAC_LEN) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

int channel_hello(struct channel *c, uint64_t my_id, struct buf *out)
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

	memcpy(c->hello, CHANNEL_MAGIC, 4);
	c->hello[HELLO_OFF_VERSION] = CHANNEL_VERSION;
	put_le64(c->hello + HELLO_OFF_ID, my_id);
	randombytes_buf(c->hello + HELLO_OFF_NONCE, CHANNEL_NONCE_LEN);
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

	memcpy(c->nonce_r, reply, CHANNEL_NONCE_LEN);
	if (!channel_mac_ok(c, label_resp, reply + CHANNEL_NONCE_LEN))
		return channel_break(c, -EBADMSG);

	uint8_t mac_i[CHANNEL_MAC_LEN];
	channel_transcript_hash(c, label_init, sizeof(label_init), mac_i);
	buf_put_raw(out, mac_i, sizeof(mac_i));
	channel_finish(c, true);
	return 0;
}

int channel_on_hello(struct channel *c, const uint8_t *hello, size_t len,
		     uint64_t *ret_peer_id, struct buf *out)
{
	int r = channel_expect(c, CHANNEL_NEW);
	if (r < 0)
		return r;
	if (out == NULL || ret_peer_id == NULL)
		return -EINVAL;
	if (hello == NULL || len != CHANNEL_HELLO_LEN ||
	    memcmp(hello, CHANNEL_MAGIC, 4) != 0 || hello[HELLO_OFF_VERSION] != CHANNEL_VERSION)
		return channel_break(c, -EBADMSG);
	if (buf_reserve(out, CHANNEL_REPLY_LEN) < 0)
		return -ENOMEM;

	memcpy(c->hello, hello, CHANNEL_HELLO_LEN);
	randombytes_buf(c->nonce_r, CHANNEL_NONCE_LEN);
	uint8_t mac_r[CHANNEL_MAC_LEN];
	channel_transcript_hash(c, label_resp, sizeof(label_resp), mac_r);
	buf_put_raw(out, c->nonce_r, CHANNEL_NONCE_LEN);
	buf_put_raw(out, mac_r, sizeof(mac_r));
	c->state = CHANNEL_REPLY_SENT;
	/* Only a claim until AUTH verifies: the HELLO is bound into MAC_i. */
	*ret_peer_id = get_le64(hello + HELLO_OFF_ID);
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
