/* Keyring and data encryption.
 *
 * Sealed keyring blob:
 *   "VFK" | version 2 | 24-byte nonce | XChaCha20-Poly1305(root key,
 *   AAD "vaultfs-keyring-v2", plaintext below)
 * Keyring plaintext (barrier_keyring_export's format too): u32 count, then
 * count x (u32 term, i64 install time in ns since the epoch, 32-byte key),
 * terms 1, 2, ... without gaps, so the newest term is last. Version 1
 * blobs (no install time; AAD "vaultfs-keyring-v1") still open.
 *
 * Data ciphertext: u32 term | 24-byte nonce | ciphertext+tag, with AEAD
 * additional data = u32 term || caller's AAD. The term is bound as well as
 * stored so that relabelling a ciphertext with another term fails even if
 * that term's key were known to the attacker. All integers little-endian. */
#include "crypto/barrier.h"

#include <assert.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/channel.h"
#include "crypto/secmem.h"

#define KEY_LEN 32u
#define NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_LEN crypto_aead_xchacha20poly1305_ietf_ABYTES
#define TERM_LEN 4u

static const uint8_t keyring_magic[3] = { 'V', 'F', 'K' };
#define KEYRING_VERSION 2u
static const char *const keyring_aad[] = { NULL, "vaultfs-keyring-v1", "vaultfs-keyring-v2" };
#define TIME_LEN 8u
#define KEYRING_ENTRY_LEN(version) (TERM_LEN + ((version) >= 2 ? TIME_LEN : 0) + KEY_LEN)
#define KEYRING_MAX_TERMS BARRIER_MAX_TERMS

/* crypto_kdf contexts are exactly 8 bytes; one subkey per purpose so that no
 * key is used for two things. The cluster context is reserved for the
 * transport (see the report to the lead): derive it the same way. */
#define KDF_CTX_DATA "vfsdata_"
#define KDF_CTX_NAME "vfsname_"
#define KDF_CTX_CLUSTER "vfsclst_"
#define KDF_CTX_STORAGE "vfsstor_"
#define KDF_CTX_BACKUP "vfsback_"
#define KDF_CTX_CLUSTER_ID "vfsclid_"
#define KDF_CTX_AUDIT "vfsaudt_"
#define KDF_SUBKEY_ID 1u

/* One term, in secure memory. */
struct term_keys {
	uint32_t term;
	int64_t install_ns;        /* when the term was made; 0: unknown (version 1) */
	uint8_t key[KEY_LEN];      /* the keyring key itself, re-sealed on rotation */
	uint8_t data_key[KEY_LEN]; /* AEAD of values and names */
	uint8_t name_key[KEY_LEN]; /* keyed hash of paths */
};

struct barrier {
	struct term_keys *terms; /* secmem; NULL while sealed */
	size_t nterms;
	/* Kept while unsealed, as Vault does, so that a keyring that grows
	 * by rotation can be sealed again (barrier_reseal). */
	uint8_t *root_key; /* secmem; NULL while sealed */
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
	secmem_free(b->root_key);
	b->terms = NULL;
	b->root_key = NULL;
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
	/* Terms are 1..nterms without gaps. */
	if (term == 0 || term > b->nterms)
		return NULL;
	assert(b->terms[term - 1].term == term);
	return &b->terms[term - 1];
}

static const struct term_keys *term_newest(const struct barrier *b)
{
	return &b->terms[b->nterms - 1];
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Serialises the keyring (current version) into secure memory: the
 * plaintext is key material. */
static uint8_t *keyring_encode(const struct term_keys *terms, size_t n, size_t *ret_len)
{
	size_t len = TERM_LEN + n * KEYRING_ENTRY_LEN(KEYRING_VERSION);
	uint8_t *p = secmem_alloc(len);
	if (p == NULL)
		return NULL;
	put_le32(p, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		uint8_t *e = p + TERM_LEN + i * KEYRING_ENTRY_LEN(KEYRING_VERSION);
		put_le32(e, terms[i].term);
		put_le64(e + TERM_LEN, (uint64_t)terms[i].install_ns);
		memcpy(e + TERM_LEN + TIME_LEN, terms[i].key, KEY_LEN);
	}
	*ret_len = len;
	return p;
}

/* Parses a keyring plaintext of VERSION into secure memory and derives the
 * subkeys. */
static int keyring_decode(unsigned version, const uint8_t *p, size_t len,
			  struct term_keys **ret_terms, size_t *ret_n)
{
	size_t entry_len = KEYRING_ENTRY_LEN(version);
	if (len < TERM_LEN)
		return -EBADMSG;
	uint32_t n = get_le32(p);
	if (n == 0 || n > KEYRING_MAX_TERMS || len != TERM_LEN + (size_t)n * entry_len)
		return -EBADMSG;

	struct term_keys *terms = keyring_alloc(n);
	if (terms == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = p + TERM_LEN + i * entry_len;
		terms[i].term = get_le32(e);
		/* Terms are issued one after the other from 1 (term_find). */
		if (terms[i].term != i + 1) {
			secmem_free(terms);
			return -EBADMSG;
		}
		if (version >= 2) {
			terms[i].install_ns = (int64_t)get_le64(e + TERM_LEN);
			e += TIME_LEN;
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

	if (buf_reserve(out, sizeof(keyring_magic) + 1 + NONCE_LEN + pt_len + TAG_LEN) < 0) {
		secmem_free(pt);
		return -ENOMEM;
	}
	buf_put_raw(out, keyring_magic, sizeof(keyring_magic));
	buf_put_u8(out, KEYRING_VERSION);
	uint8_t nonce[NONCE_LEN];
	randombytes_buf(nonce, sizeof(nonce));
	buf_put_raw(out, nonce, sizeof(nonce));

	const char *aad = keyring_aad[KEYRING_VERSION];
	unsigned long long ct_len;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->data + out->len, &ct_len, pt, pt_len,
						   (const uint8_t *)aad, strlen(aad), NULL, nonce,
						   root_key);
	out->len += (size_t)ct_len;
	secmem_free(pt);
	return 0;
}

/* Installs TERMS (secmem, taken) and a copy of ROOT_KEY: unsealed. */
static int barrier_install(struct barrier *b, struct term_keys *terms, size_t n,
			   const uint8_t root_key[BARRIER_ROOT_KEY_LEN])
{
	uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	if (root == NULL) {
		secmem_free(terms);
		return -ENOMEM;
	}
	memcpy(root, root_key, BARRIER_ROOT_KEY_LEN);
	b->terms = terms;
	b->nterms = n;
	b->root_key = root;
	return 0;
}

static int64_t wall_clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
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
	terms[0].install_ns = wall_clock_ns();
	randombytes_buf(terms[0].key, KEY_LEN);
	term_derive(&terms[0]);

	int r = keyring_seal(terms, 1, root_key, ret_sealed);
	if (r < 0) {
		secmem_free(terms);
		return r;
	}
	return barrier_install(b, terms, 1, root_key);
}

int barrier_unseal(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN],
		   const uint8_t *sealed, size_t len)
{
	if (barrier_is_unsealed(b))
		return -EALREADY;
	size_t hdr = sizeof(keyring_magic) + 1 + NONCE_LEN;
	if (len < hdr + TAG_LEN || memcmp(sealed, keyring_magic, sizeof(keyring_magic)) != 0)
		return -EBADMSG;
	unsigned version = sealed[sizeof(keyring_magic)];
	if (version == 0 || version > KEYRING_VERSION)
		return -EBADMSG;

	const uint8_t *nonce = sealed + sizeof(keyring_magic) + 1;
	size_t ct_len = len - hdr;
	uint8_t *pt = secmem_alloc(ct_len - TAG_LEN);
	if (pt == NULL)
		return -ENOMEM;
	/* A wrong root key and a flipped bit look the same to an AEAD; the
	 * likely cause is wrong shares, so that is what we report. */
	const char *aad = keyring_aad[version];
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, sealed + hdr, ct_len,
						       (const uint8_t *)aad, strlen(aad), nonce,
						       root_key) != 0) {
		secmem_free(pt);
		return -EKEYREJECTED;
	}

	struct term_keys *terms;
	size_t n;
	int r = keyring_decode(version, pt, ct_len - TAG_LEN, &terms, &n);
	secmem_free(pt);
	if (r < 0)
		return r;
	return barrier_install(b, terms, n, root_key);
}

int barrier_reseal(struct barrier *b, struct buf *out)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	return keyring_seal(b->terms, b->nterms, b->root_key, out);
}

bool barrier_root_key_is(const struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN])
{
	return barrier_is_unsealed(b) &&
	       sodium_memcmp(b->root_key, root_key, BARRIER_ROOT_KEY_LEN) == 0;
}

int barrier_root_key(const struct barrier *b, uint8_t out[BARRIER_ROOT_KEY_LEN])
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	memcpy(out, b->root_key, BARRIER_ROOT_KEY_LEN);
	return 0;
}

int barrier_set_root_key(struct barrier *b, const uint8_t root_key[BARRIER_ROOT_KEY_LEN])
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	memcpy(b->root_key, root_key, BARRIER_ROOT_KEY_LEN);
	return 0;
}

void barrier_newest(const struct barrier *b, uint32_t *ret_term, int64_t *ret_install_ns)
{
	*ret_term = 0;
	*ret_install_ns = 0;
	if (!barrier_is_unsealed(b))
		return;
	*ret_term = term_newest(b)->term;
	*ret_install_ns = term_newest(b)->install_ns;
}

int barrier_term_key(const struct barrier *b, uint32_t term, uint8_t out[BARRIER_TERM_KEY_LEN])
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	const struct term_keys *tk = term_find(b, term);
	if (tk == NULL)
		return -ENOKEY;
	memcpy(out, tk->key, KEY_LEN);
	return 0;
}

/* Grows the keyring by one term (the next one). */
static int keyring_append(struct barrier *b, const uint8_t key[KEY_LEN], int64_t install_ns)
{
	struct term_keys *terms = keyring_alloc(b->nterms + 1);
	if (terms == NULL)
		return -ENOMEM;
	memcpy(terms, b->terms, b->nterms * sizeof(*terms));
	struct term_keys *tk = &terms[b->nterms];
	tk->term = (uint32_t)b->nterms + 1;
	tk->install_ns = install_ns;
	memcpy(tk->key, key, KEY_LEN);
	term_derive(tk);
	secmem_free(b->terms);
	b->terms = terms;
	b->nterms++;
	return 0;
}

int barrier_add_term(struct barrier *b, uint32_t term, const uint8_t key[BARRIER_TERM_KEY_LEN],
		     int64_t install_ns)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	const struct term_keys *tk = term_find(b, term);
	if (tk != NULL)
		return sodium_memcmp(tk->key, key, KEY_LEN) == 0 ? -EALREADY : -EKEYREJECTED;
	if (term != b->nterms + 1 || b->nterms >= KEYRING_MAX_TERMS)
		return -ERANGE;
	return keyring_append(b, key, install_ns);
}

int barrier_keyring_export(const struct barrier *b, struct buf *out)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	size_t len;
	uint8_t *pt = keyring_encode(b->terms, b->nterms, &len);
	if (pt == NULL)
		return -ENOMEM;
	buf_put_raw(out, pt, len);
	secmem_free(pt);
	return out->err;
}

int barrier_keyring_merge(struct barrier *b, const uint8_t *pt, size_t len)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	struct term_keys *terms;
	size_t n;
	int r = keyring_decode(KEYRING_VERSION, pt, len, &terms, &n);
	if (r != 0)
		return r;
	int added = 0;
	for (size_t i = 0; i < n && r >= 0; i++) {
		r = barrier_add_term(b, terms[i].term, terms[i].key, terms[i].install_ns);
		if (r == 0)
			added++;
		else if (r == -EALREADY)
			r = 0;
	}
	secmem_free(terms);
	return r < 0 ? r : added;
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
	return barrier_encrypt_term(b, term_newest(b)->term, aad, aad_len, pt, pt_len, out);
}

/* Appends term || nonce || ciphertext+tag of PT under DATA_KEY to OUT. */
static int encrypt_with(uint32_t term, const uint8_t data_key[KEY_LEN], const void *aad,
			size_t aad_len, const void *pt, size_t pt_len, struct buf *out)
{
	struct buf ad;
	int r = build_ad(term, aad, aad_len, &ad);
	if (r < 0)
		return r;
	if (pt_len > SIZE_MAX - BARRIER_OVERHEAD || buf_reserve(out, pt_len + BARRIER_OVERHEAD) < 0) {
		buf_free(&ad);
		return -ENOMEM;
	}

	buf_put_u32(out, term);
	uint8_t nonce[NONCE_LEN];
	randombytes_buf(nonce, sizeof(nonce));
	buf_put_raw(out, nonce, sizeof(nonce));
	unsigned long long ct_len;
	crypto_aead_xchacha20poly1305_ietf_encrypt(out->data + out->len, &ct_len, pt, pt_len,
						   ad.data, ad.len, NULL, nonce, data_key);
	out->len += (size_t)ct_len;
	buf_free(&ad);
	return 0;
}

int barrier_encrypt_term(struct barrier *b, uint32_t term, const void *aad, size_t aad_len,
			 const void *pt, size_t pt_len, struct buf *out)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	const struct term_keys *tk = term_find(b, term);
	if (tk == NULL)
		return -ENOKEY;
	return encrypt_with(tk->term, tk->data_key, aad, aad_len, pt, pt_len, out);
}

struct barrier_sealer {
	uint32_t term;
	uint8_t data_key[KEY_LEN];
};

int barrier_sealer_new(struct barrier *b, struct barrier_sealer **ret)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	struct barrier_sealer *s = secmem_alloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	const struct term_keys *tk = term_newest(b);
	s->term = tk->term;
	memcpy(s->data_key, tk->data_key, KEY_LEN);
	*ret = s;
	return 0;
}

int barrier_sealer_encrypt(const struct barrier_sealer *s, const void *aad, size_t aad_len,
			   const void *pt, size_t pt_len, struct buf *out)
{
	return encrypt_with(s->term, s->data_key, aad, aad_len, pt, pt_len, out);
}

void barrier_sealer_free(struct barrier_sealer *s)
{
	secmem_free(s); /* wipes */
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

/* A subkey of the oldest term: the same on every member for the vault's
 * whole life (rotation adds terms, rekey replaces only the root key). */
static int first_term_subkey(struct barrier *b, const char ctx[8], uint8_t *out, size_t len)
{
	if (!barrier_is_unsealed(b))
		return -ENOKEY;
	crypto_kdf_derive_from_key(out, len, KDF_SUBKEY_ID, ctx, b->terms[0].key);
	return 0;
}

int barrier_storage_key(struct barrier *b, uint8_t out[BARRIER_STORAGE_KEY_LEN])
{
	/* Rows stored before a rotation must still verify after it. */
	return first_term_subkey(b, KDF_CTX_STORAGE, out, BARRIER_STORAGE_KEY_LEN);
}

int barrier_backup_key(struct barrier *b, uint8_t out[BARRIER_BACKUP_KEY_LEN])
{
	return first_term_subkey(b, KDF_CTX_BACKUP, out, BARRIER_BACKUP_KEY_LEN);
}

int barrier_audit_key(struct barrier *b, uint8_t out[BARRIER_AUDIT_KEY_LEN])
{
	return first_term_subkey(b, KDF_CTX_AUDIT, out, BARRIER_AUDIT_KEY_LEN);
}

int barrier_cluster_id(struct barrier *b, uint8_t out[BARRIER_CLUSTER_ID_LEN])
{
	_Static_assert(BARRIER_CLUSTER_ID_LEN >= crypto_kdf_BYTES_MIN, "a KDF output");
	return first_term_subkey(b, KDF_CTX_CLUSTER_ID, out, BARRIER_CLUSTER_ID_LEN);
}
