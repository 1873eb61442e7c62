/* Authenticated, encrypted channel for cluster traffic between members.
 *
 * Every node has its own long-term X25519 key pair, its identity; members
 * know each other's public keys. Both ends of a channel prove their
 * identity and that they hold the cluster key (a pre-shared key from the
 * keyring), so that neither the cluster key alone (a removed node keeps
 * it) nor an identity alone is enough.
 *
 * Handshake (three messages, fixed sizes, fresh ephemeral keys on both
 * sides so that nothing recorded from one connection is accepted on
 * another):
 *   initiator -> responder  HELLO  magic "VFSC", u8 version 2, e_i, s_i (69 bytes)
 *   responder -> initiator  REPLY  e_r, s_r, MAC_r                      (96 bytes)
 *   initiator -> responder  AUTH   MAC_i                                (32 bytes)
 * (e: ephemeral public key, s: static public key = identity.) Both sides
 * compute K = BLAKE2b(cluster key, label || HELLO || e_r || s_r ||
 * DH(e_i,e_r) || DH(s_i,e_r) || DH(e_i,s_r)); MAC_r, MAC_i and the two
 * directional session keys are BLAKE2b(K, their own label). Only the holder
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

#include "crypto/barrier.h"
#include "lib/buf.h"

#define CHANNEL_KEY_LEN 32u
#define CHANNEL_ID_LEN 32u /* an identity: X25519 public key */
#define CHANNEL_HELLO_LEN 69u
#define CHANNEL_REPLY_LEN 96u
#define CHANNEL_AUTH_LEN 32u
#define CHANNEL_TAG_LEN 16u
#define CHANNEL_MAGIC "VFSC"
#define CHANNEL_MAX_FRAME (8u * 1024u * 1024u) /* largest plaintext */

/* Derives the cluster key (the newest term's "cluster" subkey) into OUT,
 * which must be secure memory. Returns 0 or -ENOKEY if sealed. */
int barrier_cluster_key(struct barrier *b, uint8_t out[CHANNEL_KEY_LEN]);

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

/* A channel in handshake state, copying CLUSTER_KEY and ME into secure
 * memory. Returns 0 or -ENOMEM. */
int channel_new(struct channel **ret, const uint8_t cluster_key[CHANNEL_KEY_LEN],
		const struct channel_identity *me);
void channel_free(struct channel *c); /* wipes; NULL is fine */

/* Initiator, step 1: appends HELLO to OUT. */
int channel_hello(struct channel *c, struct buf *out);
/* Initiator, step 2: checks REPLY (exactly CHANNEL_REPLY_LEN bytes); on
 * success appends AUTH to OUT and the channel is ready; the caller then
 * checks channel_peer_id against the member it meant to reach. -EBADMSG if
 * the peer does not hold the cluster key and the secret key of the
 * identity it presents, or the message is malformed; -ELOOP if it presents
 * this node's own identity. */
int channel_on_reply(struct channel *c, const uint8_t *reply, size_t len, struct buf *out);

/* Responder, step 1: checks HELLO (exactly CHANNEL_HELLO_LEN bytes) and
 * appends REPLY to OUT. -EBADMSG if malformed, -ELOOP if the initiator
 * presents this node's own identity. */
int channel_on_hello(struct channel *c, const uint8_t *hello, size_t len, struct buf *out);
/* Responder, step 2: checks AUTH; on success the channel is ready and
 * channel_peer_id is the initiator's proven identity. -EBADMSG if the
 * initiator does not hold the cluster key and its identity's secret key. */
int channel_on_auth(struct channel *c, const uint8_t *auth, size_t len);

/* The peer's identity (CHANNEL_ID_LEN bytes): proven once the channel is
 * ready, only claimed before. NULL before the peer's first message. */
const uint8_t *channel_peer_id(const struct channel *c);

bool channel_ready(const struct channel *c);

/* Appends one frame (u32 length + ciphertext) carrying PT to OUT.
 * -EINVAL if not ready, -EMSGSIZE if len > CHANNEL_MAX_FRAME. */
int channel_seal(struct channel *c, const void *pt, size_t len, struct buf *out);
/* Opens the ciphertext CT of one frame (the bytes after the u32 length)
 * and appends the plaintext to OUT. -EBADMSG if forged, replayed,
 * reordered or truncated; the channel is then unusable (-EPIPE after). */
int channel_open(struct channel *c, const uint8_t *ct, size_t len, struct buf *out);

#endif
