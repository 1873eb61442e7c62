/* Shamir split/combine: known answers against an independent GF(2^8)
 * reference (bitwise, no tables, field polynomial 0x11d as libgfshare),
 * both directions against libgfshare itself (shares made by earlier
 * versions, which used it, must still open), threshold behaviour, input
 * validation, and the end-to-end property that a corrupt share makes the
 * keyring refuse to open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <libgfshare.h>

#include "crypto/barrier.h"
#include "crypto/secmem.h"
#include "crypto/shamir.h"

/* ---- reference field arithmetic ---- */

static uint8_t gf_mul(uint8_t a, uint8_t b)
{
	unsigned r = 0, x = a;
	while (b != 0) {
		if (b & 1u)
			r ^= x;
		x <<= 1;
		if (x & 0x100u)
			x ^= 0x11du;
		b >>= 1;
	}
	return (uint8_t)r;
}

static uint8_t gf_inv(uint8_t a)
{
	/* a^254 = a^-1 in GF(2^8)* */
	uint8_t r = 1;
	for (int i = 0; i < 254; i++)
		r = gf_mul(r, a);
	return r;
}

/* Lagrange interpolation of byte J of K shares at point AT. */
static uint8_t ref_interpolate(const uint8_t *shares, unsigned k, unsigned j, uint8_t at)
{
	uint8_t acc = 0;
	for (unsigned i = 0; i < k; i++) {
		uint8_t xi = shares[i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
		uint8_t num = 1, den = 1;
		for (unsigned m = 0; m < k; m++) {
			if (m == i)
				continue;
			uint8_t xm = shares[m * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
			num = gf_mul(num, (uint8_t)(at ^ xm));
			den = gf_mul(den, (uint8_t)(xi ^ xm));
		}
		acc ^= gf_mul(shares[i * SHAMIR_SHARE_LEN + j], gf_mul(num, gf_inv(den)));
	}
	return acc;
}

/* ---- fixed vector, computed independently (Python, same field) ----
 * P(x) = S + C1*x + C2*x^2 per byte j, with C1[j] = 7j+3, C2[j] = 13j+0x41. */
static const uint8_t kat_secret[32] = "vaultfs known answer test vect!!";
static const uint8_t kat_y[4][32] = {
	{ 0x34, 0x25, 0x3f, 0x1c, 0x1e, 0xc2, 0xd1, 0x88, 0xf9, 0x9a, 0xe5,
	  0xf7, 0xe4, 0x94, 0xf3, 0x06, 0x11, 0x13, 0xcf, 0xc2, 0xea, 0xb0,
	  0xa7, 0xbb, 0xa6, 0x14, 0x5c, 0x05, 0x09, 0x00, 0x33, 0x29 },
	{ 0x69, 0x50, 0x26, 0xe1, 0x83, 0x18, 0x2f, 0x02, 0x83, 0x08, 0xd6,
	  0xb0, 0x93, 0x13, 0x50, 0xa6, 0xd1, 0xfb, 0xd6, 0x9f, 0x2a, 0x10,
	  0x23, 0x8b, 0xc6, 0x7b, 0x6f, 0x42, 0x7e, 0x27, 0xad, 0xf3 },
	{ 0x35, 0x24, 0x49, 0xad, 0x80, 0x52, 0x50, 0x18, 0x9d, 0xdd, 0x20,
	  0x23, 0xde, 0x1e, 0x72, 0x25, 0x10, 0x12, 0xff, 0xaa, 0x11, 0x2d,
	  0x2b, 0x2b, 0x5d, 0x9d, 0xeb, 0x97, 0x75, 0x53, 0x45, 0x07 },
	{ 0xaa, 0x3e, 0x1d, 0xfc, 0xab, 0x55, 0xf9, 0x08, 0xf5, 0x19, 0x57,
	  0xed, 0x3d, 0x24, 0x87, 0x16, 0xe7, 0x60, 0x91, 0x6f, 0x41, 0x18,
	  0xb0, 0x83, 0x23, 0x4e, 0x64, 0x63, 0xac, 0xfd, 0xef, 0x06 },
};
static const uint8_t kat_x[4] = { 0x01, 0x02, 0x53, 0xff };

static void kat_share(unsigned row, uint8_t out[SHAMIR_SHARE_LEN])
{
	memcpy(out, kat_y[row], SHAMIR_SECRET_LEN);
	out[SHAMIR_SECRET_LEN] = kat_x[row];
}

static void libgfshare_random(unsigned char *p, unsigned int n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (unsigned char)rand();
}

static void random_secret(uint8_t s[SHAMIR_SECRET_LEN])
{
	for (unsigned i = 0; i < SHAMIR_SECRET_LEN; i++)
		s[i] = (uint8_t)rand();
}

/* ---- tests ---- */

static void test_reference_field(void **state)
{
	(void)state;
	/* Products in GF(2^8)/0x11d, computed by hand/Python. */
	assert_int_equal(gf_mul(0x02, 0x80), 0x1d);
	assert_int_equal(gf_mul(0x53, 0xca), 0x8f);
	assert_int_equal(gf_mul(0xff, 0xff), 0xe2);
	for (unsigned a = 1; a < 256; a++)
		assert_int_equal(gf_mul((uint8_t)a, gf_inv((uint8_t)a)), 1);
	/* The reference reproduces the fixed vector it is meant to check. */
	uint8_t shares[3 * SHAMIR_SHARE_LEN];
	for (unsigned r = 0; r < 3; r++)
		kat_share(r, shares + r * SHAMIR_SHARE_LEN);
	for (unsigned j = 0; j < 32; j++)
		assert_int_equal(ref_interpolate(shares, 3, j, 0), kat_secret[j]);
}

static void test_combine_known_vector(void **state)
{
	(void)state;
	static const unsigned picks[][3] = { { 0, 1, 2 }, { 2, 3, 1 }, { 3, 0, 2 } };
	for (size_t p = 0; p < sizeof(picks) / sizeof(picks[0]); p++) {
		uint8_t shares[3 * SHAMIR_SHARE_LEN], out[32];
		for (unsigned r = 0; r < 3; r++)
			kat_share(picks[p][r], shares + r * SHAMIR_SHARE_LEN);
		assert_int_equal(shamir_combine(shares, 3, out), 0);
		assert_memory_equal(out, kat_secret, 32);
	}
	/* More shares than needed still give the secret. */
	uint8_t all[4 * SHAMIR_SHARE_LEN], out[32];
	for (unsigned r = 0; r < 4; r++)
		kat_share(r, all + r * SHAMIR_SHARE_LEN);
	assert_int_equal(shamir_combine(all, 4, out), 0);
	assert_memory_equal(out, kat_secret, 32);
	/* Two shares of a degree-2 polynomial do not. */
	assert_int_equal(shamir_combine(all, 2, out), 0);
	assert_memory_not_equal(out, kat_secret, 32);
}

static void test_split_known_answer(void **state)
{
	(void)state;
	static uint8_t shares[255 * SHAMIR_SHARE_LEN];
	uint8_t xs[255], coeffs[64];
	for (unsigned i = 0; i < 255; i++)
		xs[i] = (uint8_t)(255 - i);
	for (unsigned j = 0; j < 32; j++) {
		coeffs[j] = (uint8_t)(7 * j + 3);       /* degree 1 */
		coeffs[32 + j] = (uint8_t)(13 * j + 0x41); /* degree 2 */
	}
	assert_int_equal(shamir_split_with(kat_secret, xs, 255, 3, coeffs, shares), 0);
	/* Refused: a repeated or a zero x. */
	xs[1] = xs[0];
	assert_int_equal(shamir_split_with(kat_secret, xs, 3, 3, coeffs, shares), -EINVAL);
	xs[1] = 0;
	assert_int_equal(shamir_split_with(kat_secret, xs, 3, 3, coeffs, shares), -EINVAL);
	xs[1] = 254;

	/* With N = 255 every non-zero x occurs exactly once. */
	unsigned seen[256] = { 0 };
	for (unsigned i = 0; i < 255; i++) {
		const uint8_t *s = shares + i * SHAMIR_SHARE_LEN;
		uint8_t x = s[SHAMIR_SECRET_LEN];
		assert_int_not_equal(x, 0);
		seen[x]++;
		for (unsigned r = 0; r < 4; r++)
			if (x == kat_x[r])
				assert_memory_equal(s, kat_y[r], 32);
		for (unsigned j = 0; j < 32; j++) {
			uint8_t c1 = (uint8_t)(7 * j + 3), c2 = (uint8_t)(13 * j + 0x41);
			uint8_t want = (uint8_t)(kat_secret[j] ^ gf_mul(c1, x) ^
						 gf_mul(c2, gf_mul(x, x)));
			assert_int_equal(s[j], want);
		}
	}
	for (unsigned x = 1; x < 256; x++)
		assert_int_equal(seen[x], 1);
}

static void pick_subset(unsigned n, unsigned k, unsigned *idx);
static void gather(const uint8_t *shares, const unsigned *idx, unsigned k, uint8_t *out);

/* Shares made by libgfshare (as every vault before this code was) combine
 * here to the same secret, for many random secrets, thresholds and subsets. */
static void test_libgfshare_shares_combine(void **state)
{
	(void)state;
	gfshare_fill_rand = libgfshare_random;
	for (unsigned round = 0; round < 200; round++) {
		unsigned n = 1 + (unsigned)rand() % 12, t = n == 1 ? 1 : 2 + (unsigned)rand() % (n - 1);
		unsigned char xs[12];
		for (unsigned i = 0; i < n; i++) /* distinct, non-zero */
			xs[i] = (unsigned char)(1 + (round * 17 + i * 23) % 255);
		uint8_t secret[32], shares[12 * SHAMIR_SHARE_LEN], out[32];
		random_secret(secret);
		gfshare_ctx *ctx = gfshare_ctx_init_enc(xs, n, (unsigned char)t, 32);
		assert_non_null(ctx);
		gfshare_ctx_enc_setsecret(ctx, secret);
		for (unsigned i = 0; i < n; i++) {
			gfshare_ctx_enc_getshare(ctx, (unsigned char)i, shares + i * SHAMIR_SHARE_LEN);
			shares[i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN] = xs[i];
		}
		gfshare_ctx_free(ctx);
		unsigned idx[12];
		uint8_t subset[12 * SHAMIR_SHARE_LEN];
		pick_subset(n, t, idx);
		gather(shares, idx, t, subset);
		assert_int_equal(shamir_combine(subset, t, out), 0);
		assert_memory_equal(out, secret, 32);
	}
}

/* And the other way: libgfshare combines the shares made here. */
static void test_our_shares_combine_in_libgfshare(void **state)
{
	(void)state;
	gfshare_fill_rand = libgfshare_random;
	for (unsigned round = 0; round < 200; round++) {
		unsigned n = 1 + (unsigned)rand() % 12, t = n == 1 ? 1 : 2 + (unsigned)rand() % (n - 1);
		uint8_t secret[32], shares[12 * SHAMIR_SHARE_LEN], y[32], out[32];
		random_secret(secret);
		assert_int_equal(shamir_split(secret, n, t, shares), 0);
		unsigned idx[12];
		unsigned char xs[12];
		pick_subset(n, t, idx);
		for (unsigned i = 0; i < t; i++)
			xs[i] = shares[idx[i] * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
		gfshare_ctx *ctx = gfshare_ctx_init_dec(xs, t, 32);
		assert_non_null(ctx);
		for (unsigned i = 0; i < t; i++) {
			memcpy(y, shares + idx[i] * SHAMIR_SHARE_LEN, 32);
			gfshare_ctx_dec_giveshare(ctx, (unsigned char)i, y);
		}
		gfshare_ctx_dec_extract(ctx, out);
		gfshare_ctx_free(ctx);
		assert_memory_equal(out, secret, 32);
	}
}

/* Random coefficients: every share must lie on one polynomial of degree
 * T-1 whose value at 0 is the secret. */
static void test_split_matches_reference(void **state)
{
	(void)state;
	static const unsigned cases[][2] = { { 5, 3 }, { 2, 2 }, { 7, 4 }, { 20, 20 } };
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		unsigned n = cases[c][0], t = cases[c][1];
		uint8_t secret[32], shares[20 * SHAMIR_SHARE_LEN];
		random_secret(secret);
		assert_int_equal(shamir_split(secret, n, t, shares), 0);
		for (unsigned j = 0; j < 32; j++) {
			assert_int_equal(ref_interpolate(shares, t, j, 0), secret[j]);
			for (unsigned i = t; i < n; i++) {
				uint8_t x = shares[i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
				assert_int_equal(ref_interpolate(shares, t, j, x),
						 shares[i * SHAMIR_SHARE_LEN + j]);
			}
		}
	}
}

static void pick_subset(unsigned n, unsigned k, unsigned *idx)
{
	unsigned pool[255];
	for (unsigned i = 0; i < n; i++)
		pool[i] = i;
	for (unsigned i = 0; i < k; i++) {
		unsigned j = i + (unsigned)rand() % (n - i);
		unsigned tmp = pool[i];
		pool[i] = pool[j];
		pool[j] = tmp;
		idx[i] = pool[i];
	}
}

static void gather(const uint8_t *shares, const unsigned *idx, unsigned k, uint8_t *out)
{
	for (unsigned i = 0; i < k; i++)
		memcpy(out + i * SHAMIR_SHARE_LEN, shares + idx[i] * SHAMIR_SHARE_LEN,
		       SHAMIR_SHARE_LEN);
}

static void test_any_t_of_n(void **state)
{
	(void)state;
	static const unsigned cases[][2] = { { 5, 3 },	 { 1, 1 },     { 2, 2 },   { 3, 2 },
					     { 10, 7 },	 { 255, 2 },   { 255, 128 }, { 255, 255 },
					     { 254, 17 } };
	static uint8_t shares[255 * SHAMIR_SHARE_LEN], sub[255 * SHAMIR_SHARE_LEN];
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		unsigned n = cases[c][0], t = cases[c][1];
		uint8_t secret[32], out[32];
		random_secret(secret);
		assert_int_equal(shamir_split(secret, n, t, shares), 0);

		uint8_t seen[256] = { 0 };
		for (unsigned i = 0; i < n; i++) {
			uint8_t x = shares[i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
			assert_int_not_equal(x, 0);
			assert_int_equal(seen[x], 0);
			seen[x] = 1;
		}
		for (int round = 0; round < 5; round++) {
			unsigned idx[255];
			pick_subset(n, t, idx);
			gather(shares, idx, t, sub);
			memset(out, 0, sizeof(out));
			assert_int_equal(shamir_combine(sub, t, out), 0);
			assert_memory_equal(out, secret, 32);
		}
		assert_int_equal(shamir_combine(shares, n, out), 0);
		assert_memory_equal(out, secret, 32);
	}
}

static void test_one_of_one(void **state)
{
	(void)state;
	uint8_t secret[32], share[SHAMIR_SHARE_LEN], out[32];
	random_secret(secret);
	assert_int_equal(shamir_split(secret, 1, 1, share), 0);
	assert_int_not_equal(share[SHAMIR_SECRET_LEN], 0);
	/* Degree-0 polynomial: y is the secret itself. */
	assert_memory_equal(share, secret, 32);
	assert_int_equal(shamir_combine(share, 1, out), 0);
	assert_memory_equal(out, secret, 32);
}

static void test_fewer_than_t_is_wrong(void **state)
{
	(void)state;
	static const unsigned cases[][2] = { { 5, 3 }, { 2, 2 }, { 10, 7 }, { 255, 200 } };
	static uint8_t shares[255 * SHAMIR_SHARE_LEN], sub[255 * SHAMIR_SHARE_LEN];
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		unsigned n = cases[c][0], t = cases[c][1];
		uint8_t secret[32], out[32];
		random_secret(secret);
		assert_int_equal(shamir_split(secret, n, t, shares), 0);
		unsigned idx[255];
		pick_subset(n, t - 1, idx);
		gather(shares, idx, t - 1, sub);
		assert_int_equal(shamir_combine(sub, t - 1, out), 0);
		assert_memory_not_equal(out, secret, 32);
	}
}

static void test_split_rejects_bad_params(void **state)
{
	(void)state;
	static const unsigned bad[][2] = { { 0, 0 }, { 1, 0 }, { 5, 1 }, { 2, 1 },
					   { 5, 6 }, { 1, 2 }, { 256, 3 }, { 300, 300 } };
	uint8_t secret[32] = { 1 };
	static uint8_t shares[300 * SHAMIR_SHARE_LEN];
	for (size_t c = 0; c < sizeof(bad) / sizeof(bad[0]); c++)
		assert_int_equal(shamir_split(secret, bad[c][0], bad[c][1], shares), -EINVAL);
}

static void test_combine_rejects_bad_x(void **state)
{
	(void)state;
	uint8_t shares[3 * SHAMIR_SHARE_LEN], out[32], before[32];
	for (unsigned r = 0; r < 3; r++)
		kat_share(r, shares + r * SHAMIR_SHARE_LEN);
	memset(out, 0xa5, sizeof(out));
	memcpy(before, out, sizeof(out));

	assert_int_equal(shamir_combine(shares, 0, out), -EINVAL);

	uint8_t dup[3 * SHAMIR_SHARE_LEN];
	memcpy(dup, shares, sizeof(dup));
	dup[2 * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN] = dup[SHAMIR_SECRET_LEN];
	assert_int_equal(shamir_combine(dup, 3, out), -EINVAL);

	uint8_t zero[3 * SHAMIR_SHARE_LEN];
	memcpy(zero, shares, sizeof(zero));
	zero[SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN] = 0;
	assert_int_equal(shamir_combine(zero, 3, out), -EINVAL);
	assert_int_equal(shamir_combine(zero + SHAMIR_SHARE_LEN, 1, out), -EINVAL);

	/* Rejections leave the output alone. */
	assert_memory_equal(out, before, 32);
}

static void test_corrupt_share_rejected_by_barrier(void **state)
{
	(void)state;
	uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	uint8_t *key = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	assert_non_null(root);
	assert_non_null(key);
	barrier_generate_root_key(root);

	struct barrier *b;
	assert_int_equal(barrier_new(&b), 0);
	struct buf sealed;
	buf_init(&sealed);
	assert_int_equal(barrier_init_keyring(b, root, &sealed), 0);
	barrier_seal(b);

	uint8_t shares[5 * SHAMIR_SHARE_LEN];
	assert_int_equal(shamir_split(root, 5, 3, shares), 0);

	shares[SHAMIR_SHARE_LEN + 7] ^= 0x01; /* one bit of share 2's y */
	assert_int_equal(shamir_combine(shares, 3, key), 0);
	assert_memory_not_equal(key, root, BARRIER_ROOT_KEY_LEN);
	assert_int_equal(barrier_unseal(b, key, sealed.data, sealed.len), -EKEYREJECTED);
	assert_false(barrier_is_unsealed(b));

	/* The three intact shares still open it. */
	assert_int_equal(shamir_combine(shares + 2 * SHAMIR_SHARE_LEN, 3, key), 0);
	assert_int_equal(barrier_unseal(b, key, sealed.data, sealed.len), 0);
	assert_true(barrier_is_unsealed(b));

	barrier_free(b);
	buf_free(&sealed);
	secmem_free(root);
	secmem_free(key);
}

int main(void)
{
	if (crypto_global_init(false) < 0)
		return 1;
	srand(20240611);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_field),
		cmocka_unit_test(test_combine_known_vector),
		cmocka_unit_test(test_split_known_answer),
		cmocka_unit_test(test_libgfshare_shares_combine),
		cmocka_unit_test(test_our_shares_combine_in_libgfshare),
		cmocka_unit_test(test_split_matches_reference),
		cmocka_unit_test(test_any_t_of_n),
		cmocka_unit_test(test_one_of_one),
		cmocka_unit_test(test_fewer_than_t_is_wrong),
		cmocka_unit_test(test_split_rejects_bad_params),
		cmocka_unit_test(test_combine_rejects_bad_x),
		cmocka_unit_test(test_corrupt_share_rejected_by_barrier),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
