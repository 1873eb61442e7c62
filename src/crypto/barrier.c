/* Keyring and data encryption.
 *
 * Sealed keyring blob:
 *   "VFK" | version 1 | 24-byte nonce | XChaCha20-Poly1305(root key,
 *   AAD "vaultfs-keyring-v1", plaintext below)
 * Keyring plaintext: u32 count, then count x (u32 term, 32-byte key), terms
 * strictly increasing, so the newest term is last.
 *
 * Data ciphertext: u32 term | 24-byte nonce | ciphertext+tag, with AEAD
 * additional data = u32 term || caller's AAD. The term is bound as well as
 * stored so that relabelling a ciphertext with another term fails even if
 * that term's key were known to the attacker. All integers little-endian. */
#include "crypto/barrier.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/channel.h"
#include "crypto/secmem.h"

#define KEY_LEN 32u
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define TERM_LEN 4u

static const uint8_t keyring_magic[4] = { 'V', 'F', 'K', 1 };
static const char keyring_aad[] = "vaultfs-keyring-v1";
#define KEYRING_ENTRY_LEN (TERM_LEN + KEY_LEN)
/* Far more than rotation will ever produce; bounds what a blob can make us
 * allocate. */
#define KEYRING_MAX_TERMS 65536u

/* crypto_kdf contexts are exactly 8 bytes; one subkey per purpose so that no
 * key is used for two things. The cluster context is reserved for the
 * transport (see the report to the lead): derive it the same way. */
#define KDF_CTX_DATA "vfsdata_"
#define KDF_CTX_NAME "vfsname_"
#define KDF_CTX_CLUSTER "vfsclst_"
#define KDF_SUBKEY_ID 1u

/* One term, in secure memory. */
struct term_keys {
	uint32_t term;
	uint8_t key[KEY_LEN];      /* the keyring key itself, re-sealed on rotation */
	uint8_t data_key[KEY_LEN]; /* AEAD of values and names */
	uint8_t name_key[KEY_LEN]; /* keyed hash of paths */
};

struct barrier {
	struct term_keys *terms; /* secmem; NULL while sealed */
	size_t nterms;
};

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

int barrier_new(struct barrier **ret)
{
	struct barrier *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	*ret = b;
	return 0;
}

void barrier_free(struct barrier *b)
{
	if (b == NULL)
		return;
	barrier_seal(b);
	free(b);
}

bool barrier_is_unsealed(const struct barrier *b)
{
	return b != NULL && b->terms != NULL;
}

void barrier_generate_root_key(uint8_t root_key[BARRIER_ROOT_KEY_LEN])
{
	randombytes_buf(root_key, BARRIER_ROOT_KEY_LEN);
}

void barrier_seal(struct barrier *b)
{
	if (b == NULL)
		return;
	secmem_free(b->terms); /* wipes */
	b->terms = NULL;
	b->nterms = 0;
}

static struct term_keys *keyring_alloc(size_t n)
{
	return secmem_alloc(n * sizeof(struct term_keys));
}

static void term_derive(struct term_keys *tk)
{
	crypto_kdf_derive_from_key(tk->data_key, KEY_LEN, KDF_SUBKEY_ID, KDF_CTX_DATA, tk->key);
	crypto_kdf_derive_from_key(tk->name_key, KEY_LEN, KDF_SUBKEY_ID, KDF_CTX_NAME, tk->key);
}

static const struct term_keys *term_find(const struct barrier *b, uint32_t term)
{
	/* Newest first: almost all data is under the newest term. */
	for (size_t i = b->nterms; i-- > 0;)
		if (b->terms[i].term == term)
			return &b->terms[i];
	return NULL;
}

static const struct term_keys *term_newest(const struct barrier *b)
{
	return &b->terms[b->nterms - 1];
}

/* Serialises the keyring into secure memory: the plaintext is key material. */
static uint8_t *keyring_encode(const struct term_keys *terms, size_t n, size_t *ret_len)
{
	size_t len = TERM_LEN + n * KEYRING_ENTRY_LEN;
	uint8_t *p = secmem_alloc(len);
	if (p == NULL)
		return NULL;
	put_le32(p, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = p + TERM_LEN + i * KEYRING_ENTRY_LEN;
		put_le32(e, terms[i].term);
		memcpy(e + TERM_LEN, terms[i].key, KEY_LEN);
	}
	*ret_len = len;
	return p;
}

/* Parses a decrypted keyring into secure memory and derives the subkeys. */
static int keyring_decode(const uint8_t *p, size_t len, struct term_keys **ret_terms,
			  size_t *ret_n)
{
	if (len < TERM_LEN)
		return -EBADMSG;
	uint32_t n = get_le32(p);
	if (n == 0 || n > KEYRING_MAX_TERMS || len != TERM_LEN + (size_t)n * KEYRING_ENTRY_LEN)
		return -EBADMSG;

	struct term_keys *terms = keyring_alloc(n);
	if (terms == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = p + TERM_LEN + i * KEYRING_ENTRY_LEN;
		terms[i].term = get_le32(e);
		/* Term 0 is never issued; order makes the newest term the last. */
		if (terms[i].term == 0 || (i > 0 && terms[i].term <= terms[i - 1].term)) {
			secmem_free(terms);
			return -EBADMSG;
		}
		memcpy(terms[i].key, e + TERM_LEN, KEY_LEN);
		term_derive(&terms[i]);
	}
	*ret_terms = terms;
	*ret_n = n;
	return 0;
}

static int keyring_seal(const struct term_keys *terms, size_t n,
			const uint8_t root_key[BARRIER_ROOT_KEY_LEN], struct buf *out)
{
	size_t pt_len;
	uint8_t *pt = keyring_encode(terms, n, &pt_len);
	if (pt == NULL)
		return -ENOMEM;

	if (buf_reserve(out, sizeof(keyring_magic) + NONCE_LEN + pt_len + TAG_LEN) < 0) {
		secmem_free(pt);
		return -ENOMEM;
	}
	buf_put_raw(out, keyring_magic, sizeof(keyring_magic));
	uint8_t nonce[NONCE_LEN];
	randombytes_buf(nonce, sizeof(nonce));
	buf_put_raw(out, nonce, sizeof(nonce));

	unsigned long long ct_len;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->data + out->len, &ct_len, pt, pt_len,
						   (const uint8_t *)keyring_aad,
						   sizeof(keyring_aad) - 1, NULL, nonce, root_key);
	out->len += (size_t)ct_len;
	secmem_free(pt);
	return 0;
}

int barrier_init_keyring(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
			 struct buf *ret_sealed)
{
	if (barrier_is_unsealed(b))
		return -EALREADY;

	struct term_keys *terms = keyring_alloc(1);
	if (terms == NULL)
		return -ENOMEM;
	terms[0].term = 1;
	randombytes_buf(terms[0].key, KEY_LEN);
	term_derive(&terms[0]);

	int r = keyring_seal(terms, 1, root_key, ret_sealed);
	if (r < 0) {
		secmem_free(terms);
		return r;
	}
	b->terms = terms;
	b->nterms = 1;
	return 0;
}

int barrier_unseal(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
		   const uint8_t *sealed, size_t len)
{
	if (barrier_is_unsealed(b))
		return -EALREADY;
	size_t hdr = sizeof(keyring_magic) + NONCE_LEN;
	if (len < hdr + TAG_LEN || memcmp(sealed, keyring_magic, sizeof(keyring_magic)) != 0)
		return -EBADMSG;

	const uint8_t *nonce = sealed + sizeof(keyring_magic);
	size_t ct_len = len - hdr;
	uint8_t *pt = secmem_alloc(ct_len - TAG_LEN);
	if (pt == NULL)
		return -ENOMEM;
	/* A wrong root key and a flipped bit look the same to an AEAD; the
	 * likely cause is wrong shares, so that is what we report. */
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, sealed + hdr, ct_len,
						       (const uint8_t *)keyring_aad,
						       sizeof(keyring_aad) - 1, nonce,
						       root_key) != 0) {
		secmem_free(pt);
		return -EKEYREJECTED;
	}

	struct term_keys *terms;
	size_t n;
	int r = keyring_decode(pt, ct_len - TAG_LEN, &terms, &n);
	secmem_free(pt);
	if (r < 0)
		return r;
	b->terms = terms;
	b->nterms = n;
	return 0;
}

/* AEAD additional data: u32 term || caller's AAD. Kept in a wiping buf
 * because the caller's AAD is typically a secret path. */
static int build_ad(uint32_t term, const void *aad, size_t aad_len, struct buf *ad)
{
	buf_init(ad);
	buf_put_u32(ad, term);
	buf_put_raw(ad, aad, aad_len);
	if (ad->err != 0) {
		buf_free(ad);
		return -ENOMEM;
	}
	return 0;
}

int barrier_encrypt(struct barrier *b, const void *aad, size_t aad_len,
		    const void *pt, size_t pt_len, struct buf *out)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	const struct term_keys *tk = term_newest(b);

	struct buf ad;
	int r = build_ad(tk->term, aad, aad_len, &ad);
	if (r < 0)
		return r;
	if (pt_len > SIZE_MAX - BARRIER_OVERHEAD || buf_reserve(out, pt_len + BARRIER_OVERHEAD) < 0) {
		buf_free(&ad);
		return -ENOMEM;
	}

	buf_put_u32(out, tk->term);
	uint8_t nonce[NONCE_LEN];
	randombytes_buf(nonce, sizeof(nonce));
	buf_put_raw(out, nonce, sizeof(nonce));
	unsigned long long ct_len;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->data + out->len, &ct_len, pt, pt_len,
						   ad.data, ad.len, NULL, nonce, tk->data_key);
	out->len += (size_t)ct_len;
	buf_free(&ad);
	return 0;
}

int barrier_decrypt(struct barrier *b, const void *aad, size_t aad_len,
		    const uint8_t *ct, size_t ct_len, struct buf *out)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	if (ct_len < BARRIER_OVERHEAD)
		return -EBADMSG;
	const struct term_keys *tk = term_find(b, get_le32(ct));
	if (tk == NULL)
		return -ENOKEY;

	struct buf ad;
	int r = build_ad(tk->term, aad, aad_len, &ad);
	if (r < 0)
		return r;
	size_t pt_len = ct_len - BARRIER_OVERHEAD;
	/* Reserve at least one byte so that out->data is valid for sodium. */
	if (buf_reserve(out, pt_len + 1) < 0) {
		buf_free(&ad);
		return -ENOMEM;
	}
	uint8_t *dst = out->data + out->len;
	const uint8_t *nonce = ct + TERM_LEN;
	r = crypto_aead_xchacha20poly1305_ietf_decrypt(dst, NULL, NULL, nonce + NONCE_LEN,
						       ct_len - TERM_LEN - NONCE_LEN, ad.data,
						       ad.len, nonce, tk->data_key);
	buf_free(&ad);
	if (r != 0) {
		secmem_wipe(dst, pt_len);
		return -EBADMSG;
	}
	out->len += pt_len;
	return 0;
}

int barrier_hash(struct barrier *b, const void *data, size_t len,
		 uint8_t out[BARRIER_HASH_LEN])
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	/* The oldest term's key: stored lookup hashes must stay valid when a
	 * newer term is added to the keyring. */
	const struct term_keys *tk = &b->terms[0];
	crypto_generichash(out, BARRIER_HASH_LEN, data, len, tk->name_key, KEY_LEN);
	return 0;
}

int barrier_cluster_key(struct barrier *b, uint32_t *term,
			uint8_t out[BARRIER_CLUSTER_KEY_LEN])
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	/* Derived on demand rather than stored in term_keys: only the
	 * transport needs it, so the barrier keeps no extra copy. Any term's,
	 * not only the newest: nodes whose newest terms differ (a rotation
	 * applies at different moments) handshake with the newest they share. */
	const struct term_keys *tk = *term == 0 ? term_newest(b) : term_find(b, *term);
	if (tk == NULL)
		return -ENOKEY;
	_Static_assert(BARRIER_CLUSTER_KEY_LEN == KEY_LEN, "cluster key is a term subkey");
	crypto_kdf_derive_from_key(out, BARRIER_CLUSTER_KEY_LEN, KDF_SUBKEY_ID, KDF_CTX_CLUSTER,
				   tk->key);
	*term = tk->term;
	return 0;
}
