/* Barrier: keyring sealing, data AEAD with bound AAD and term, keyed hash,
 * and the sealed state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include <sodium.h>

#include "crypto/barrier.h"
#include "crypto/secmem.h"

struct fixture {
	uint8_t *root; /* secmem */
	struct barrier *b;
	struct buf sealed;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	if (f->root == NULL)
		return -1;
	barrier_generate_root_key(f->root);
	buf_init(&f->sealed);
	if (barrier_new(&f->b) < 0 || barrier_init_keyring(f->b, f->root, &f->sealed) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	barrier_free(f->b);
	buf_free(&f->sealed);
	secmem_free(f->root);
	free(f);
	return 0;
}

static const char path_a[] = "secret/dbcreds/admin";
static const char path_b[] = "secret/dbcreds/guest";
static const char value[] = "hunter2, but longer than one block of anything";

static void encrypt_value(struct barrier *b, const char *aad, struct buf *ct)
{
	buf_init(ct);
	assert_int_equal(barrier_encrypt(b, aad, strlen(aad), value, sizeof(value), ct), 0);
	assert_int_equal(ct->len, sizeof(value) + BARRIER_OVERHEAD);
}

static void test_init_unseals_and_reports_state(void **state)
{
	struct fixture *f = *state;
	assert_true(barrier_is_unsealed(f->b));
	/* magic/version 4 + nonce 24 + count 4 + (term 4 + time 8 + key 32) + tag 16 */
	assert_int_equal(f->sealed.len, 4 + 24 + 4 + 44 + 16);
	struct buf again;
	buf_init(&again);
	assert_int_equal(barrier_init_keyring(f->b, f->root, &again), -EALREADY);
	assert_int_equal(again.len, 0);
	assert_int_equal(barrier_unseal(f->b, f->root, f->sealed.data, f->sealed.len),
			 -EALREADY);
	buf_free(&again);
	assert_false(barrier_is_unsealed(NULL));
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	encrypt_value(f->b, path_a, &ct);
	/* Term 1, little-endian, leads the ciphertext. */
	assert_int_equal(ct.data[0], 1);
	assert_int_equal(ct.data[1] | ct.data[2] | ct.data[3], 0);
	/* The value does not appear in clear. */
	assert_null(memmem(ct.data, ct.len, "hunter2", 7));

	buf_init(&pt);
	buf_put_raw(&pt, "prefix", 6); /* decrypt appends */
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len, &pt), 0);
	assert_int_equal(pt.len, 6 + sizeof(value));
	assert_memory_equal(pt.data, "prefix", 6);
	assert_memory_equal(pt.data + 6, value, sizeof(value));

	/* Random nonces: the same value encrypts differently each time. */
	struct buf ct2;
	encrypt_value(f->b, path_a, &ct2);
	assert_memory_not_equal(ct.data, ct2.data, ct.len);

	buf_free(&ct);
	buf_free(&ct2);
	buf_free(&pt);
}

static void test_empty_plaintext_and_aad(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	buf_init(&ct);
	buf_init(&pt);
	assert_int_equal(barrier_encrypt(f->b, NULL, 0, NULL, 0, &ct), 0);
	assert_int_equal(ct.len, BARRIER_OVERHEAD);
	assert_int_equal(barrier_decrypt(f->b, NULL, 0, ct.data, ct.len, &pt), 0);
	assert_int_equal(pt.len, 0);
	/* An empty AAD is still an AAD: a non-empty one must not match. */
	assert_int_equal(barrier_decrypt(f->b, "x", 1, ct.data, ct.len, &pt), -EBADMSG);
	buf_free(&ct);
	buf_free(&pt);
}

static void test_tampered_ciphertext(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	encrypt_value(f->b, path_a, &ct);
	buf_init(&pt);
	/* Every byte after the term: nonce, body and tag. */
	for (size_t i = 4; i < ct.len; i++) {
		ct.data[i] ^= 0x40;
		assert_int_equal(
			barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len, &pt),
			-EBADMSG);
		assert_int_equal(pt.len, 0);
		ct.data[i] ^= 0x40;
	}
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len, &pt), 0);
	buf_free(&ct);
	buf_free(&pt);
}

static void test_truncated_ciphertext(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	encrypt_value(f->b, path_a, &ct);
	buf_init(&pt);
	static const size_t lens[] = { 0, 3, 4, 27, 28, 43, 44, 45 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, lens[i], &pt),
				 -EBADMSG);
	assert_int_equal(
		barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len - 1, &pt), -EBADMSG);
	assert_int_equal(pt.len, 0);
	buf_free(&ct);
	buf_free(&pt);
}

static void test_value_moved_to_other_path(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	encrypt_value(f->b, path_a, &ct);
	buf_init(&pt);
	assert_int_equal(barrier_decrypt(f->b, path_b, strlen(path_b), ct.data, ct.len, &pt),
			 -EBADMSG);
	/* A prefix of the right AAD is a different AAD too. */
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a) - 1, ct.data, ct.len, &pt),
			 -EBADMSG);
	assert_int_equal(pt.len, 0);
	buf_free(&ct);
	buf_free(&pt);
}

static void test_unknown_term(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	encrypt_value(f->b, path_a, &ct);
	buf_init(&pt);
	static const uint8_t terms[][4] = { { 2, 0, 0, 0 }, { 0, 0, 0, 0 }, { 1, 0, 0, 1 } };
	for (size_t i = 0; i < sizeof(terms) / sizeof(terms[0]); i++) {
		memcpy(ct.data, terms[i], 4);
		assert_int_equal(
			barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len, &pt),
			-ENOKEY);
	}
	assert_int_equal(pt.len, 0);
	buf_free(&ct);
	buf_free(&pt);
}

static void test_reseal_unseal_keeps_keyring(void **state)
{
	struct fixture *f = *state;
	struct buf ct, pt;
	uint8_t h1[BARRIER_HASH_LEN], h2[BARRIER_HASH_LEN];
	encrypt_value(f->b, path_a, &ct);
	assert_int_equal(barrier_hash(f->b, path_a, strlen(path_a), h1), 0);

	barrier_seal(f->b);
	barrier_seal(f->b); /* idempotent */
	assert_false(barrier_is_unsealed(f->b));
	assert_int_equal(barrier_unseal(f->b, f->root, f->sealed.data, f->sealed.len), 0);
	assert_true(barrier_is_unsealed(f->b));

	buf_init(&pt);
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len, &pt), 0);
	assert_memory_equal(pt.data, value, sizeof(value));
	assert_int_equal(barrier_hash(f->b, path_a, strlen(path_a), h2), 0);
	assert_memory_equal(h1, h2, sizeof(h1));
	buf_free(&ct);
	buf_free(&pt);
}

static void test_wrong_root_key(void **state)
{
	struct fixture *f = *state;
	barrier_seal(f->b);
	uint8_t *other = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	assert_non_null(other);
	memcpy(other, f->root, BARRIER_ROOT_KEY_LEN);
	other[31] ^= 0x80;
	assert_int_equal(barrier_unseal(f->b, other, f->sealed.data, f->sealed.len), -EKEYREJECTED);
	assert_false(barrier_is_unsealed(f->b));
	secmem_free(other);
}

static void test_tampered_or_malformed_keyring(void **state)
{
	struct fixture *f = *state;
	barrier_seal(f->b);
	uint8_t *s = f->sealed.data;
	size_t len = f->sealed.len;

	/* Bad magic or version: not ours at all. */
	s[0] ^= 1;
	assert_int_equal(barrier_unseal(f->b, f->root, s, len), -EBADMSG);
	s[0] ^= 1;
	s[3] = 3;
	assert_int_equal(barrier_unseal(f->b, f->root, s, len), -EBADMSG);
	s[3] = 0;
	assert_int_equal(barrier_unseal(f->b, f->root, s, len), -EBADMSG);
	/* Version 1's AAD: the version byte is bound too. */
	s[3] = 1;
	assert_int_equal(barrier_unseal(f->b, f->root, s, len), -EKEYREJECTED);
	s[3] = 2;
	/* Shorter than header + tag. */
	assert_int_equal(barrier_unseal(f->b, f->root, s, 0), -EBADMSG);
	assert_int_equal(barrier_unseal(f->b, f->root, s, 4 + 24 + 15), -EBADMSG);
	/* A flipped ciphertext bit fails authentication like a wrong key. */
	s[len - 20] ^= 4;
	assert_int_equal(barrier_unseal(f->b, f->root, s, len), -EKEYREJECTED);
	s[len - 20] ^= 4;
	assert_int_equal(barrier_unseal(f->b, f->root, s, len - 1), -EKEYREJECTED);
	assert_false(barrier_is_unsealed(f->b));

	assert_int_equal(barrier_unseal(f->b, f->root, s, len), 0);
}

/* A keyring sealed before install times (version 1) still opens. */
static void test_version_1_keyring_opens(void **state)
{
	struct fixture *f = *state;
	barrier_seal(f->b);
	uint8_t pt[4 + 4 + 32] = { 1, 0, 0, 0, 1, 0, 0, 0 };
	randombytes_buf(pt + 8, 32);
	uint8_t blob[4 + 24 + sizeof(pt) + 16] = { 'V', 'F', 'K', 1 };
	randombytes_buf(blob + 4, 24);
	static const char aad[] = "vaultfs-keyring-v1";
	crypto_aead_xchacha20poly1305_ietf_encrypt(blob + 28, NULL, pt, sizeof(pt),
						   (const uint8_t *)aad, sizeof(aad) - 1, NULL,
						   blob + 4, f->root);
	assert_int_equal(barrier_unseal(f->b, f->root, blob, sizeof(blob)), 0);
	uint32_t term;
	int64_t installed;
	barrier_newest(f->b, &term, &installed);
	assert_int_equal(term, 1);
	assert_int_equal(installed, 0);
	uint8_t key[BARRIER_TERM_KEY_LEN];
	assert_int_equal(barrier_term_key(f->b, 1, key), 0);
	assert_memory_equal(key, pt + 8, 32);
	/* Sealed again, it is a version 2 blob. */
	struct buf again;
	buf_init(&again);
	assert_int_equal(barrier_reseal(f->b, &again), 0);
	assert_int_equal(again.data[3], 2);
	buf_free(&again);
}

/* The audit key: a key of its own (not the storage key), the same after a
 * rotation, none while sealed. */
static void test_audit_key(void **state)
{
	struct fixture *f = *state;
	uint8_t a1[BARRIER_AUDIT_KEY_LEN], a2[BARRIER_AUDIT_KEY_LEN], st[BARRIER_STORAGE_KEY_LEN];
	uint8_t key2[BARRIER_TERM_KEY_LEN];
	assert_int_equal(barrier_audit_key(f->b, a1), 0);
	assert_int_equal(barrier_storage_key(f->b, st), 0);
	assert_memory_not_equal(a1, st, sizeof(a1));
	randombytes_buf(key2, sizeof key2);
	assert_int_equal(barrier_add_term(f->b, 2, key2, 1), 0);
	assert_int_equal(barrier_audit_key(f->b, a2), 0);
	assert_memory_equal(a1, a2, sizeof(a1));
	barrier_seal(f->b);
	assert_int_equal(barrier_audit_key(f->b, a2), -ENOKEY);
	sodium_memzero(a1, sizeof(a1));
	sodium_memzero(a2, sizeof(a2));
	sodium_memzero(st, sizeof(st));
}

/* Rotation: terms are added one after the other; data under every term
 * stays readable, new data uses the newest, and the grown keyring seals. */
static void test_add_term(void **state)
{
	struct fixture *f = *state;
	struct buf old_ct, new_ct, pt, resealed;
	encrypt_value(f->b, path_a, &old_ct);
	uint8_t key2[BARRIER_TERM_KEY_LEN], other[BARRIER_TERM_KEY_LEN];
	randombytes_buf(key2, sizeof key2);
	randombytes_buf(other, sizeof other);

	assert_int_equal(barrier_add_term(f->b, 3, key2, 5), -ERANGE);
	assert_int_equal(barrier_add_term(f->b, 0, key2, 5), -ERANGE);
	assert_int_equal(barrier_add_term(f->b, 2, key2, 1234567), 0);
	assert_int_equal(barrier_add_term(f->b, 2, key2, 1234567), -EALREADY);
	assert_int_equal(barrier_add_term(f->b, 2, other, 1234567), -EKEYREJECTED);
	uint32_t term;
	int64_t installed;
	barrier_newest(f->b, &term, &installed);
	assert_int_equal(term, 2);
	assert_int_equal(installed, 1234567);

	encrypt_value(f->b, path_a, &new_ct);
	assert_int_equal(new_ct.data[0], 2);
	buf_init(&resealed);
	assert_int_equal(barrier_reseal(f->b, &resealed), 0);
	barrier_seal(f->b);
	assert_int_equal(barrier_reseal(f->b, &resealed), -ENOKEY);
	assert_int_equal(barrier_add_term(f->b, 3, other, 1), -ENOKEY);

	/* The old seal opens only term 1; the new one both. */
	buf_init(&pt);
	assert_int_equal(barrier_unseal(f->b, f->root, f->sealed.data, f->sealed.len), 0);
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), new_ct.data, new_ct.len,
					 &pt),
			 -ENOKEY);
	barrier_seal(f->b);
	assert_int_equal(barrier_unseal(f->b, f->root, resealed.data, resealed.len), 0);
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), new_ct.data, new_ct.len,
					 &pt),
			 0);
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), old_ct.data, old_ct.len,
					 &pt),
			 0);
	assert_int_equal(pt.len, 2 * sizeof(value));
	/* Under an older term on purpose. */
	struct buf t1;
	buf_init(&t1);
	assert_int_equal(barrier_encrypt_term(f->b, 1, "x", 1, value, sizeof(value), &t1), 0);
	assert_int_equal(t1.data[0], 1);
	assert_int_equal(barrier_encrypt_term(f->b, 3, "x", 1, value, sizeof(value), &t1),
			 -ENOKEY);
	buf_free(&t1);
	buf_free(&old_ct);
	buf_free(&new_ct);
	buf_free(&pt);
	buf_free(&resealed);
}

/* A member that missed rotations takes them from another's export. */
static void test_keyring_export_merge(void **state)
{
	struct fixture *f = *state;
	struct barrier *lag;
	assert_int_equal(barrier_new(&lag), 0);
	assert_int_equal(barrier_unseal(lag, f->root, f->sealed.data, f->sealed.len), 0);
	uint8_t k[BARRIER_TERM_KEY_LEN];
	for (uint32_t t = 2; t <= 3; t++) {
		randombytes_buf(k, sizeof k);
		assert_int_equal(barrier_add_term(f->b, t, k, t), 0);
	}
	struct buf exported, ct, pt;
	buf_init(&exported);
	buf_init(&pt);
	assert_int_equal(barrier_keyring_export(f->b, &exported), 0);
	encrypt_value(f->b, path_b, &ct);
	assert_int_equal(barrier_decrypt(lag, path_b, strlen(path_b), ct.data, ct.len, &pt),
			 -ENOKEY);
	assert_int_equal(barrier_keyring_merge(lag, exported.data, exported.len), 2);
	assert_int_equal(barrier_keyring_merge(lag, exported.data, exported.len), 0);
	assert_int_equal(barrier_decrypt(lag, path_b, strlen(path_b), ct.data, ct.len, &pt), 0);
	/* A different key for a term held: refused, nothing changes. */
	exported.data[exported.len - 1] ^= 1;
	assert_int_equal(barrier_keyring_merge(lag, exported.data, exported.len), -EKEYREJECTED);
	assert_int_equal(barrier_keyring_merge(lag, exported.data, exported.len - 1), -EBADMSG);
	barrier_free(lag);
	buf_free(&exported);
	buf_free(&ct);
	buf_free(&pt);
}

static void test_sealed_refuses_everything(void **state)
{
	struct fixture *f = *state;
	struct buf ct, out;
	uint8_t h[BARRIER_HASH_LEN];
	encrypt_value(f->b, path_a, &ct);
	barrier_seal(f->b);

	buf_init(&out);
	assert_int_equal(barrier_encrypt(f->b, path_a, strlen(path_a), value, sizeof(value), &out),
			 -ENOKEY);
	assert_int_equal(barrier_decrypt(f->b, path_a, strlen(path_a), ct.data, ct.len, &out),
			 -ENOKEY);
	assert_int_equal(barrier_hash(f->b, path_a, strlen(path_a), h), -ENOKEY);
	assert_int_equal(out.len, 0);

	/* A brand-new barrier starts sealed. */
	struct barrier *fresh;
	assert_int_equal(barrier_new(&fresh), 0);
	assert_false(barrier_is_unsealed(fresh));
	assert_int_equal(barrier_hash(fresh, "x", 1, h), -ENOKEY);
	barrier_free(fresh);
	barrier_free(NULL);
	buf_free(&ct);
}

static void test_hash_deterministic_and_keyed(void **state)
{
	struct fixture *f = *state;
	uint8_t h1[BARRIER_HASH_LEN], h2[BARRIER_HASH_LEN], h3[BARRIER_HASH_LEN];
	assert_int_equal(barrier_hash(f->b, path_a, strlen(path_a), h1), 0);
	assert_int_equal(barrier_hash(f->b, path_a, strlen(path_a), h2), 0);
	assert_memory_equal(h1, h2, sizeof(h1));
	assert_int_equal(barrier_hash(f->b, path_b, strlen(path_b), h3), 0);
	assert_memory_not_equal(h1, h3, sizeof(h1));

	/* Another keyring hashes the same name differently. */
	uint8_t *root2 = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	assert_non_null(root2);
	barrier_generate_root_key(root2);
	assert_memory_not_equal(root2, f->root, BARRIER_ROOT_KEY_LEN);
	struct barrier *b2;
	struct buf sealed2;
	buf_init(&sealed2);
	assert_int_equal(barrier_new(&b2), 0);
	assert_int_equal(barrier_init_keyring(b2, root2, &sealed2), 0);
	assert_int_equal(barrier_hash(b2, path_a, strlen(path_a), h3), 0);
	assert_memory_not_equal(h1, h3, sizeof(h1));

	/* ...and cannot open the first keyring's data. */
	struct buf ct, pt;
	encrypt_value(f->b, path_a, &ct);
	buf_init(&pt);
	assert_int_equal(barrier_decrypt(b2, path_a, strlen(path_a), ct.data, ct.len, &pt),
			 -EBADMSG);
	/* Nor does its root key open the first keyring. */
	barrier_seal(f->b);
	assert_int_equal(barrier_unseal(f->b, root2, f->sealed.data, f->sealed.len),
			 -EKEYREJECTED);

	barrier_free(b2);
	buf_free(&sealed2);
	buf_free(&ct);
	buf_free(&pt);
	secmem_free(root2);
}

int main(void)
{
	if (crypto_global_init(false) < 0)
		return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_init_unseals_and_reports_state),
		T(test_version_1_keyring_opens),
		T(test_add_term),
		T(test_audit_key),
		T(test_keyring_export_merge),
		T(test_round_trip),
		T(test_empty_plaintext_and_aad),
		T(test_tampered_ciphertext),
		T(test_truncated_ciphertext),
		T(test_value_moved_to_other_path),
		T(test_unknown_term),
		T(test_reseal_unseal_keeps_keyring),
		T(test_wrong_root_key),
		T(test_tampered_or_malformed_keyring),
		T(test_sealed_refuses_everything),
		T(test_hash_deterministic_and_keyed),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
