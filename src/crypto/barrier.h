/* The barrier: holds the keyring while unsealed and does all data
 * encryption (XChaCha20-Poly1305) and keyed hashing (BLAKE2b).
 *
 * The keyring is a list of terms, each with a 32-byte key; new data uses the
 * newest term. Subkeys for different purposes (data encryption, name hashing,
 * cluster traffic) are derived from the term key with crypto_kdf so that no
 * key is used for two purposes.
 *
 * The keyring itself is stored "sealed": encrypted under the 32-byte root
 * key, which comes from combining Shamir shares and is kept, like the
 * keyring, only while unsealed, so that a keyring grown by rotation can be
 * sealed again. Terms are numbered 1, 2, ... without gaps and never
 * dropped: data written under any term stays readable. */
#ifndef VAULTFS_CRYPTO_BARRIER_H
#define VAULTFS_CRYPTO_BARRIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define BARRIER_ROOT_KEY_LEN 32u
#define BARRIER_TERM_KEY_LEN 32u
/* A keyring holds at most this many terms (44 bytes each when sealed: a
 * full one is about 700 KiB): years of daily, or hourly, rotation. */
#define BARRIER_MAX_TERMS 16384u
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

/* Creates a fresh keyring (term 1, random key, installed now), installs it
 * (the barrier is then unsealed) and appends the keyring encrypted under ROOT_KEY to
 * RET_SEALED. Returns 0, -EALREADY if unsealed already, or -ENOMEM. */
int barrier_init_keyring(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
			 struct buf *ret_sealed);

/* Opens SEALED with ROOT_KEY and installs the keyring. Returns 0,
 * -EKEYREJECTED if the root key does not open it, -EBADMSG if SEALED is
 * malformed, -EALREADY if unsealed already. */
int barrier_unseal(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
		   const uint8_t *sealed, size_t len);

/* Forgets the keyring and the root key (wipes them). Sealed afterwards;
 * idempotent. */
void barrier_seal(struct barrier *b);

/* Appends the current keyring, sealed under the root key it was opened
 * with, to OUT (the format barrier_unseal takes). 0, -ENOKEY, -ENOMEM. */
int barrier_reseal(struct barrier *b, struct buf *out);

/* Rekey: whether ROOT_KEY is the root key the keyring was opened with
 * (constant time; false while sealed); a copy of it into OUT (caller's
 * secure memory); and replacing it, so that barrier_reseal seals under the
 * new one. The last two return 0 or -ENOKEY if sealed. */
bool barrier_root_key_is(const struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN]);
int barrier_root_key(const struct barrier *b, uint8_t out[BARRIER_ROOT_KEY_LEN]);
int barrier_set_root_key(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN]);

/* The newest term and when it was made (ns since the epoch; 0 if the
 * keyring predates install times). Both 0 while sealed. */
void barrier_newest(const struct barrier *b, uint32_t *ret_term, int64_t *ret_install_ns);

/* Copies TERM's key into OUT (caller's secure memory), to hand it to a
 * member that lacks it. 0 or -ENOKEY (sealed, no such term). */
int barrier_term_key(const struct barrier *b, uint32_t term, uint8_t out[BARRIER_TERM_KEY_LEN]);

/* Adds TERM with KEY (rotation). Returns 0; -EALREADY if TERM is held
 * with this very key (a replay: nothing changes); -EKEYREJECTED if TERM is
 * held with another key; -ERANGE if TERM is not the next term; -ENOKEY
 * if sealed; -ENOMEM. */
int barrier_add_term(struct barrier *b, uint32_t term, const uint8_t key[BARRIER_TERM_KEY_LEN],
		     int64_t install_ns);

/* Appends the keyring's plaintext (key material: OUT must be a buf, which
 * wipes) to OUT, for barrier_keyring_merge on another member. */
int barrier_keyring_export(const struct barrier *b, struct buf *out);

/* Adds the terms of an exported keyring that this one lacks. Returns the
 * number added (0: nothing new), -EKEYREJECTED if a term held here has
 * another key there, -EBADMSG if malformed, -ENOKEY if sealed. */
int barrier_keyring_merge(struct barrier *b, const uint8_t *pt, size_t len);

/* Appends term || nonce || ciphertext+tag of PT to OUT. AAD binds the
 * ciphertext to its context (e.g. the inode it belongs to) and is not stored.
 * Returns 0, -ENOKEY if sealed, -ENOMEM. */
int barrier_encrypt(struct barrier *b, const void *aad, size_t aad_len,
		    const void *pt, size_t pt_len, struct buf *out);

/* Like barrier_encrypt, under TERM instead of the newest term: for what
 * every member must open, also one that has not caught up with the newest
 * term yet. -ENOKEY also if TERM is not held. */
int barrier_encrypt_term(struct barrier *b, uint32_t term, const void *aad, size_t aad_len,
			 const void *pt, size_t pt_len, struct buf *out);

/* The newest term's data key, copied out of the barrier (into locked
 * memory), so that another thread can encrypt what barrier_decrypt opens
 * while the barrier itself changes or seals. -ENOKEY if sealed, -ENOMEM. */
struct barrier_sealer;
int barrier_sealer_new(struct barrier *b, struct barrier_sealer **ret);
/* barrier_encrypt under the sealer's term and key; 0 or -ENOMEM. */
int barrier_sealer_encrypt(const struct barrier_sealer *s, const void *aad, size_t aad_len,
			   const void *pt, size_t pt_len, struct buf *out);
void barrier_sealer_free(struct barrier_sealer *s); /* wipes; NULL is fine */

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

/* The key that authenticates this vault's stored Raft state (raft/rowmac.h)
 * into OUT, which must be secure memory: a subkey of the first term, so that
 * what was stored before a rotation still verifies after it. Returns 0 or
 * -ENOKEY if sealed. */
#define BARRIER_STORAGE_KEY_LEN 32u
int barrier_storage_key(struct barrier *b, uint8_t out[BARRIER_STORAGE_KEY_LEN]);

/* The key that authenticates a backup of this vault (node_snapshot.c), a
 * subkey of the first term like the storage key, into secure memory OUT.
 * 0 or -ENOKEY if sealed. */
#define BARRIER_BACKUP_KEY_LEN 32u
int barrier_backup_key(struct barrier *b, uint8_t out[BARRIER_BACKUP_KEY_LEN]);

/* The key of the audit log's path HMACs into OUT (secure memory): a
 * subkey of the first term, so that a path's hash stays the same across
 * rotations and an operator can look it up in old logs. 0 or -ENOKEY. */
#define BARRIER_AUDIT_KEY_LEN 32u
int barrier_audit_key(struct barrier *b, uint8_t out[BARRIER_AUDIT_KEY_LEN]);

/* This vault's public name, the same on every member for its whole life: a
 * first-term subkey, which tells nothing of any other key. A backup
 * carries it so that it is not restored into another vault by mistake.
 * 0 or -ENOKEY if sealed. */
#define BARRIER_CLUSTER_ID_LEN 16u
int barrier_cluster_id(struct barrier *b, uint8_t out[BARRIER_CLUSTER_ID_LEN]);

#endif
