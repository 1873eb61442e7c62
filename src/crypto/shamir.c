/* Shamir over GF(2^8), in constant time.
 *
 * The field is libgfshare's (polynomial x^8+x^4+x^3+x^2+1, 0x11d), so that
 * shares made by earlier versions, which used libgfshare, still combine to
 * the same root key. The arithmetic is our own rather than libgfshare's log
 * and exp tables: a table lookup indexed by a secret byte leaks that byte
 * through the cache to a process sharing the CPU. Every operation on
 * secret bytes here (share values, coefficients, the secret) runs the same
 * instructions and touches the same memory whatever their values; only the
 * x coordinates, which are public, steer control flow.
 *
 * Secret material (coefficients, partial sums) lives in secure memory or in
 * locals that are wiped before returning. */
#include "crypto/shamir.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "crypto/secmem.h"

#define SHAMIR_X_COUNT 255u /* non-zero x coordinates in GF(2^8) */
#define GF_POLY_LOW 0x1du   /* 0x11d without the x^8 term */

/* a*b: shift-and-add over all 8 bits of b, with masks instead of branches. */
static uint8_t gf_mul(uint8_t a, uint8_t b)
{
	uint8_t p = 0;
	for (unsigned i = 0; i < 8; i++) {
		p ^= (uint8_t)(-(b & 1u) & a);
		uint8_t carry = (uint8_t)-(a >> 7);
		a = (uint8_t)((a << 1) ^ (carry & GF_POLY_LOW));
		b >>= 1;
	}
	return p;
}

/* a^-1 = a^254 (0 for 0), by a fixed chain of squarings and products. */
static uint8_t gf_inv(uint8_t a)
{
	uint8_t a2 = gf_mul(a, a), r = a2; /* a^2 */
	for (unsigned i = 0; i < 6; i++) { /* r = a^(2+4+...+128) = a^254 */
		a2 = gf_mul(a2, a2);
		r = gf_mul(r, a2);
	}
	return r;
}

static int shamir_check_params(unsigned n, unsigned t)
{
	if (n == 1 && t == 1)
		return 0;
	if (t < 2 || t > n || n > SHAMIR_MAX_SHARES)
		return -EINVAL;
	return 0;
}

/* N distinct random non-zero x: the first N of a Fisher-Yates shuffle of
 * 1..255, so no x is ever retried or biased. */
static void shamir_pick_xs(uint8_t *xs, unsigned n)
{
	uint8_t pool[SHAMIR_X_COUNT];
	for (unsigned i = 0; i < SHAMIR_X_COUNT; i++)
		pool[i] = (uint8_t)(i + 1);
	for (unsigned i = 0; i < n; i++) {
		unsigned j = i + randombytes_uniform(SHAMIR_X_COUNT - i);
		uint8_t tmp = pool[i];
		pool[i] = pool[j];
		pool[j] = tmp;
		xs[i] = pool[i];
	}
}

/* The x coordinates must be non-zero and distinct: x == 0 would be the
 * secret itself, and a repeated x makes the interpolation divide by 0. */
static int shamir_check_xs(const uint8_t *xs, unsigned k)
{
	uint8_t seen[256] = { 0 };
	if (k == 0 || k > SHAMIR_MAX_SHARES)
		return -EINVAL;
	for (unsigned i = 0; i < k; i++) {
		if (xs[i] == 0 || seen[xs[i]])
			return -EINVAL;
		seen[xs[i]] = 1;
	}
	return 0;
}

int shamir_split_with(const uint8_t secret[SHAMIR_SECRET_LEN], const uint8_t *xs, unsigned n,
		      unsigned t, const uint8_t *coeffs, uint8_t *shares)
{
	int r = shamir_check_params(n, t);
	if (r == 0)
		r = shamir_check_xs(xs, n);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *share = shares + (size_t)i * SHAMIR_SHARE_LEN;
		for (unsigned j = 0; j < SHAMIR_SECRET_LEN; j++) {
			/* Horner: ((c_{t-1} x + c_{t-2}) x + ... + c_1) x + secret */
			uint8_t y = 0;
			for (unsigned d = t - 1; d >= 1; d--)
				y = gf_mul((uint8_t)(y ^ coeffs[(size_t)(d - 1) * SHAMIR_SECRET_LEN + j]),
					   xs[i]);
			share[j] = (uint8_t)(y ^ secret[j]);
		}
		share[SHAMIR_SECRET_LEN] = xs[i];
	}
	return 0;
}

int shamir_split(const uint8_t secret[SHAMIR_SECRET_LEN], unsigned n, unsigned t,
		 uint8_t *shares)
{
	int r = shamir_check_params(n, t);
	if (r < 0)
		return r;
	uint8_t xs[SHAMIR_X_COUNT];
	shamir_pick_xs(xs, n);
	size_t clen = (size_t)(t > 1 ? t - 1 : 1) * SHAMIR_SECRET_LEN;
	uint8_t *coeffs = secmem_alloc(clen);
	if (coeffs == NULL)
		return -ENOMEM;
	randombytes_buf(coeffs, clen);
	r = shamir_split_with(secret, xs, n, t, coeffs, shares);
	secmem_free(coeffs); /* wipes */
	return r;
}

/* The Lagrange basis value of share I at 0: prod_{m != i} x_m / (x_m - x_i),
 * where minus is xor. Depends on the public x coordinates only. */
static uint8_t lagrange_at_zero(const uint8_t *xs, unsigned k, unsigned i)
{
	uint8_t num = 1, den = 1;
	for (unsigned m = 0; m < k; m++) {
		if (m == i)
			continue;
		num = gf_mul(num, xs[m]);
		den = gf_mul(den, (uint8_t)(xs[m] ^ xs[i]));
	}
	return gf_mul(num, gf_inv(den));
}

int shamir_combine(const uint8_t *shares, unsigned k, uint8_t secret[SHAMIR_SECRET_LEN])
{
	uint8_t xs[SHAMIR_X_COUNT];
	if (k == 0 || k > SHAMIR_MAX_SHARES)
		return -EINVAL;
	for (unsigned i = 0; i < k; i++)
		xs[i] = shares[(size_t)i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
	int r = shamir_check_xs(xs, k);
	if (r < 0)
		return r;
	uint8_t *acc = secmem_alloc(SHAMIR_SECRET_LEN);
	if (acc == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < k; i++) {
		uint8_t l = lagrange_at_zero(xs, k, i);
		const uint8_t *y = shares + (size_t)i * SHAMIR_SHARE_LEN;
		for (unsigned j = 0; j < SHAMIR_SECRET_LEN; j++)
			acc[j] ^= gf_mul(y[j], l);
	}
	memcpy(secret, acc, SHAMIR_SECRET_LEN);
	secmem_free(acc);
	return 0;
}
