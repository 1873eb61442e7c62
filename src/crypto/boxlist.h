/* Box lists: one plaintext sealed to each of several node identities, so
 * that only those members can read it. Used to hand a new keyring term (or
 * the whole keyring) to the members of the configuration and to nobody
 * else: not to a removed node, which keeps every older key, and not to
 * anyone who reads a copy of the Raft log with those older keys.
 *
 * Format: u32 count, then count x (32-byte identity public key, u32 length,
 * crypto_box_seal of the plaintext to that key). crypto_box_seal is
 * anonymous: a box proves nothing about its sender, so callers carry box
 * lists inside something the keyring authenticates (a barrier ciphertext).
 * Integers little-endian. */
#ifndef VAULTFS_CRYPTO_BOXLIST_H
#define VAULTFS_CRYPTO_BOXLIST_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/channel.h"
#include "lib/buf.h"

#define BOXLIST_MAX_RECIPIENTS 256u
#define BOXLIST_MAX_PLAINTEXT (1u << 20)

/* Appends a box list sealing PT (LEN bytes, at most BOXLIST_MAX_PLAINTEXT)
 * to each of the N identities IDS (at most BOXLIST_MAX_RECIPIENTS) to OUT.
 * Returns 0, -EINVAL (too many, too long) or -ENOMEM. */
int boxlist_encode(const uint8_t *pt, size_t len, const uint8_t (*ids)[CHANNEL_ID_LEN], size_t n,
		   struct buf *out);

/* Opens the box in list P (exactly LEN bytes) addressed to ME's public key
 * and appends its plaintext to OUT (a buf: it wipes). Returns 0, -ENOENT if
 * no box is addressed to ME, -EBADMSG if the list is malformed or ME's box
 * does not open, -ENOMEM. */
int boxlist_open(const uint8_t *p, size_t len, const struct channel_identity *me,
		 struct buf *out);

#endif
