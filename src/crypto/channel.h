/* Authenticated, encrypted channel for cluster traffic between members.
 *
 * Every node has its own long-term X25519 key pair, its identity; members
 * know each other's public keys. Both ends of a channel prove their
 * identity and that they hold the cluster key (a pre-shared key from the
 * keyring), so that neither the cluster key alone (a removed node keeps
 * it) nor an identity alone is enough.
 *
 * Every keyring term has its own cluster key, and a rotation reaches the
 * nodes at different moments (a node that was down meanwhile, much later),
 * so the two ends agree on a term: the initiator offers its newest, the
 * responder chooses min(offer, its own newest). Keyrings are contiguous
 * (terms 1..N, never dropped), so both hold the chosen term's key. The
 * agreed term (channel_term) tells the caller whether the peer is behind
 * this node's newest term: a removed node keeps its old keyring.
 *
 * Handshake (three messages, fixed sizes, fresh ephemeral keys on both
 * sides so that nothing recorded from one connection is accepted on
 * another):
 *   initiator -> responder  HELLO  magic "VFSC", u8 version 3, e_i, s_i, term_i  (73 bytes)
 *   responder -> initiator  REPLY  e_r, s_r, term, MAC_r                        (100 bytes)
 *   initiator -> responder  AUTH   MAC_i                                         (32 bytes)
 * (e: ephemeral public key, s: static public key = identity; term_i: u32
 * LE, the initiator's newest term, not 0; term: u32 LE, the chosen one,
 * 1 <= term <= term_i, or the message is malformed.) Both sides compute
 * K = BLAKE2b(cluster key of term, label || HELLO || e_r || s_r || term ||
 * DH(e_i,e_r) || DH(s_i,e_r) || DH(e_i,s_r)); MAC_r, MAC_i and the two
 * directional session keys are BLAKE2b(K, their own label). Both terms are
 * in the transcript (term_i as part of HELLO), so a term changed in flight
 * (say, a downgrade to an older term) makes the MACs fail. Only the holder
 * of s_r's secret key can compute MAC_r, only the holder of s_i's MAC_i.
 * A channel whose peer presents this node's own identity is refused
 * (-ELOOP): a connection redirected back to its sender.
 *
 * Frames after the handshake: u32 LE ciphertext length, then
 * XChaCha20-Poly1305 ciphertext (16-byte tag) whose nonce is a per-direction
 * counter and whose AAD is the length, so a replayed, reordered, truncated
 * or forged frame fails to open. */
#ifndef VAULTFS_CRYPTO_CHANNEL_H
#define VAULTFS_CRYPTO_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define CHANNEL_KEY_LEN 32u
#define CHANNEL_ID_LEN 32u /* an identity: X25519 public key */
#define CHANNEL_HELLO_LEN 73u
#define CHANNEL_REPLY_LEN 100u
#define CHANNEL_AUTH_LEN 32u
#define CHANNEL_TAG_LEN 16u
#define CHANNEL_MAGIC "VFSC"
#define CHANNEL_MAX_FRAME (8u * 1024u * 1024u) /* largest plaintext */

/* Where a channel gets cluster keys (barrier_cluster_key is one, with the
 * barrier as ARG). With *TERM == 0, fills OUT with the newest term's key and
 * sets *TERM to that term; otherwise fills OUT with term *TERM's key. OUT is
 * the channel's secure memory. Returns 0, or -ENOKEY if sealed or there is
 * no such term. */
typedef int (*channel_key_fn)(void *arg, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN]);

/* A node's identity key pair; lives in the caller's secure memory. */
struct channel_identity {
	uint8_t pk[CHANNEL_ID_LEN];
	uint8_t sk[CHANNEL_ID_LEN];
};

/* Fills ID with a fresh random key pair. */
void channel_identity_generate(struct channel_identity *id);
/* Recomputes ID->pk from ID->sk. */
void channel_identity_derive(struct channel_identity *id);

struct channel;

/* A channel in handshake state, copying ME into secure memory. It asks
 * KEYS (with KEYS_ARG, which must outlive the handshake) for a cluster key
 * when the handshake needs one and wipes it once K is derived; it keeps no
 * other copy. Returns 0 or -ENOMEM. */
int channel_new(struct channel **ret, const struct channel_identity *me, channel_key_fn keys,
		void *keys_arg);
void channel_free(struct channel *c); /* wipes; NULL is fine */

/* Initiator, step 1: appends HELLO, offering the newest term, to OUT.
 * -ENOKEY if the key callback has none (sealed); the channel is unchanged
 * then. */
int channel_hello(struct channel *c, struct buf *out);
/* Initiator, step 2: checks REPLY (exactly CHANNEL_REPLY_LEN bytes); on
 * success appends AUTH to OUT and the channel is ready; the caller then
 * checks channel_peer_id against the member it meant to reach. -EBADMSG if
 * the peer does not hold the chosen term's cluster key and the secret key
 * of the identity it presents, or the message is malformed (a term of 0 or
 * above the one offered included); -ELOOP if it presents this node's own
 * identity; -ENOKEY if the key callback no longer has the chosen term
 * (sealed meanwhile: the peer did nothing wrong). */
int channel_on_reply(struct channel *c, const uint8_t *reply, size_t len, struct buf *out);

/* Responder, step 1: checks HELLO (exactly CHANNEL_HELLO_LEN bytes),
 * chooses the term and appends REPLY to OUT. -EBADMSG if malformed (a term
 * of 0 included), -ELOOP if the initiator presents this node's own
 * identity, -ENOKEY if the key callback has no key (sealed). */
int channel_on_hello(struct channel *c, const uint8_t *hello, size_t len, struct buf *out);
/* Responder, step 2: checks AUTH; on success the channel is ready and
 * channel_peer_id is the initiator's proven identity. -EBADMSG if the
 * initiator does not hold the cluster key and its identity's secret key. */
int channel_on_auth(struct channel *c, const uint8_t *auth, size_t len);

/* The peer's identity (CHANNEL_ID_LEN bytes): proven once the channel is
 * ready, only claimed before. NULL before the peer's first message. */
const uint8_t *channel_peer_id(const struct channel *c);

bool channel_ready(const struct channel *c);

/* The term whose cluster key the handshake used, once the channel is ready;
 * 0 before (and on a broken channel). */
uint32_t channel_term(const struct channel *c);

/* Appends one frame (u32 length + ciphertext) carrying PT to OUT.
 * -EINVAL if not ready, -EMSGSIZE if len > CHANNEL_MAX_FRAME. */
int channel_seal(struct channel *c, const void *pt, size_t len, struct buf *out);
/* Opens the ciphertext CT of one frame (the bytes after the u32 length)
 * and appends the plaintext to OUT. -EBADMSG if forged, replayed,
 * reordered or truncated; the channel is then unusable (-EPIPE after). */
int channel_open(struct channel *c, const uint8_t *ct, size_t len, struct buf *out);

#endif
