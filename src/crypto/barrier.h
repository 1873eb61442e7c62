/* The barrier: holds the keyring while unsealed and does all data
 * encryption (XChaCha20-Poly1305) and keyed hashing (BLAKE2b).
 *
 * The keyring is a list of terms, each with a 32-byte key; new data uses the
 * newest term. Subkeys for different purposes (data encryption, name hashing,
 * cluster traffic) are derived from the term key with crypto_kdf so that no
 * key is used for two purposes.
 *
 * The keyring itself is stored "sealed": encrypted under the 32-byte root
 * key, which only exists while Shamir shares are being combined. */
#ifndef VAULTFS_CRYPTO_BARRIER_H
#define VAULTFS_CRYPTO_BARRIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define BARRIER_ROOT_KEY_LEN 32u
#define BARRIER_HASH_LEN 32u
#define BARRIER_CLUSTER_KEY_LEN 32u /* CHANNEL_KEY_LEN (crypto/channel.h) */
/* Bytes a ciphertext adds to its plaintext: u32 term, 24-byte nonce, 16-byte tag. */
#define BARRIER_OVERHEAD (4u + 24u + 16u)

struct barrier;

/* A new, sealed barrier. Returns 0 or -ENOMEM. */
int barrier_new(struct barrier **ret);
/* Wipes and frees; NULL is fine. */
void barrier_free(struct barrier *b);

bool barrier_is_unsealed(const struct barrier *b);

/* Fills ROOT_KEY (caller's secure memory) with a fresh random root key. */
void barrier_generate_root_key(uint8_t root_key[BARRIER_ROOT_KEY_LEN]);

/* Creates a fresh keyring (term 1, random key), installs it (the barrier is
 * then unsealed) and appends the keyring encrypted under ROOT_KEY to
 * RET_SEALED. Returns 0, -EALREADY if unsealed already, or -ENOMEM. */
int barrier_init_keyring(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
			 struct buf *ret_sealed);

/* Opens SEALED with ROOT_KEY and installs the keyring. Returns 0,
 * -EKEYREJECTED if the root key does not open it, -EBADMSG if SEALED is
 * malformed, -EALREADY if unsealed already. */
int barrier_unseal(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
		   const uint8_t *sealed, size_t len);

/* Forgets the keyring (wipes it). Sealed afterwards; idempotent. */
void barrier_seal(struct barrier *b);

/* Appends term || nonce || ciphertext+tag of PT to OUT. AAD binds the
 * ciphertext to its context (e.g. the inode it belongs to) and is not stored.
 * Returns 0, -ENOKEY if sealed, -ENOMEM. */
int barrier_encrypt(struct barrier *b, const void *aad, size_t aad_len,
		    const void *pt, size_t pt_len, struct buf *out);

/* Appends the plaintext of CT to OUT. Returns 0, -ENOKEY if sealed or the
 * term is unknown, -EBADMSG if CT was tampered with, truncated, or encrypted
 * with a different AAD. */
int barrier_decrypt(struct barrier *b, const void *aad, size_t aad_len,
		    const uint8_t *ct, size_t ct_len, struct buf *out);

/* Keyed hash of DATA with the first term's name-hash key, so that lookups
 * keep working after key rotation. Returns 0 or -ENOKEY. */
int barrier_hash(struct barrier *b, const void *data, size_t len,
		 uint8_t out[BARRIER_HASH_LEN]);

/* A term's cluster key (its "cluster" subkey: the pre-shared key of the
 * cluster channel, crypto/channel.h) into OUT, which must be secure memory.
 * With *TERM == 0 the newest term's, and *TERM is set to that term;
 * otherwise term *TERM's. Returns 0 or -ENOKEY if sealed or there is no
 * such term. With B as its argument, this is a channel_key_fn. */
int barrier_cluster_key(struct barrier *b, uint32_t *term,
			uint8_t out[BARRIER_CLUSTER_KEY_LEN]);

#endif
