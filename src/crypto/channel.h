/* Authenticated, encrypted channel for cluster traffic between nodes that
 * hold the same keyring.
 *
 * Handshake (three messages, fixed sizes, fresh random nonces on both
 * sides so that nothing recorded from one connection is accepted on
 * another):
 *   initiator -> responder  HELLO  magic "VFSC", u8 version, u64 sender id,
 *                                  32-byte nonce_i                 (45 bytes)
 *   responder -> initiator  REPLY  32-byte nonce_r, 32-byte MAC_r   (64 bytes)
 *   initiator -> responder  AUTH   32-byte MAC_i                    (32 bytes)
 * MAC_r = BLAKE2b(cluster key, "vfs-resp" || HELLO || nonce_r) and
 * MAC_i = BLAKE2b(cluster key, "vfs-init" || HELLO || nonce_r), so each side
 * proves it holds the cluster key before the other accepts a single frame.
 * Two directional session keys are derived from the cluster key and both
 * nonces.
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
#define CHANNEL_HELLO_LEN 45u
#define CHANNEL_REPLY_LEN 64u
#define CHANNEL_AUTH_LEN 32u
#define CHANNEL_TAG_LEN 16u
#define CHANNEL_MAGIC "VFSC"
#define CHANNEL_MAX_FRAME (8u * 1024u * 1024u) /* largest plaintext */

/* Derives the cluster key (the newest term's "cluster" subkey) into OUT,
 * which must be secure memory. Returns 0 or -ENOKEY if sealed. */
int barrier_cluster_key(struct barrier *b, uint8_t out[CHANNEL_KEY_LEN]);

struct channel;

/* A channel in handshake state, copying CLUSTER_KEY into secure memory.
 * Returns 0 or -ENOMEM. */
int channel_new(struct channel **ret, const uint8_t cluster_key[CHANNEL_KEY_LEN]);
void channel_free(struct channel *c); /* wipes; NULL is fine */

/* Initiator, step 1: appends HELLO to OUT. */
int channel_hello(struct channel *c, uint64_t my_id, struct buf *out);
/* Initiator, step 2: checks REPLY (exactly CHANNEL_REPLY_LEN bytes); on
 * success appends AUTH to OUT and the channel is ready. -EBADMSG if the
 * peer does not hold the cluster key or the message is malformed. */
int channel_on_reply(struct channel *c, const uint8_t *reply, size_t len, struct buf *out);

/* Responder, step 1: checks HELLO (exactly CHANNEL_HELLO_LEN bytes), gives
 * the claimed sender id and appends REPLY to OUT. -EBADMSG if malformed. */
int channel_on_hello(struct channel *c, const uint8_t *hello, size_t len,
		     uint64_t *ret_peer_id, struct buf *out);
/* Responder, step 2: checks AUTH; on success the channel is ready.
 * -EBADMSG if the initiator does not hold the cluster key. */
int channel_on_auth(struct channel *c, const uint8_t *auth, size_t len);

bool channel_ready(const struct channel *c);

/* Appends one frame (u32 length + ciphertext) carrying PT to OUT.
 * -EINVAL if not ready, -EMSGSIZE if len > CHANNEL_MAX_FRAME. */
int channel_seal(struct channel *c, const void *pt, size_t len, struct buf *out);
/* Opens the ciphertext CT of one frame (the bytes after the u32 length)
 * and appends the plaintext to OUT. -EBADMSG if forged, replayed,
 * reordered or truncated; the channel is then unusable (-EPIPE after). */
int channel_open(struct channel *c, const uint8_t *ct, size_t len, struct buf *out);

#endif
