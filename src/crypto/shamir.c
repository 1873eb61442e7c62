/* Shamir over GF(2^8) with libgfshare doing the field arithmetic.
 *
 * libgfshare keeps its coefficients and shares in its own malloc'd context
 * (it scrubs them through gfshare_fill_rand before freeing); everything we
 * hand it or get back passes through secure memory only. */
#include "crypto/shamir.h"

#include <errno.h>
#include <libgfshare.h>
#include <sodium.h>
#include <string.h>

#include "crypto/secmem.h"

#define SHAMIR_X_COUNT 255u /* non-zero x coordinates in GF(2^8) */

static void shamir_fill_random(unsigned char *p, unsigned int n)
{
	randombytes_buf(p, n);
}

/* libgfshare's hook starts out NULL (it would crash) and is process-global.
 * Install ours unless someone already did: the unit tests install a
 * deterministic one to check known answers. */
static void shamir_install_rng(void)
{
	if (gfshare_fill_rand == NULL)
		gfshare_fill_rand = shamir_fill_random;
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
static void shamir_pick_xs(unsigned char *xs, unsigned n)
{
	unsigned char pool[SHAMIR_X_COUNT];
	for (unsigned i = 0; i < SHAMIR_X_COUNT; i++)
		pool[i] = (unsigned char)(i + 1);
	for (unsigned i = 0; i < n; i++) {
		unsigned j = i + randombytes_uniform(SHAMIR_X_COUNT - i);
		unsigned char tmp = pool[i];
		pool[i] = pool[j];
		pool[j] = tmp;
		xs[i] = pool[i];
	}
}

int shamir_split(const uint8_t secret[SHAMIR_SECRET_LEN], unsigned n, unsigned t,
		 uint8_t *shares)
{
	int r = shamir_check_params(n, t);
	if (r < 0)
		return r;
	shamir_install_rng();

	unsigned char xs[SHAMIR_X_COUNT];
	shamir_pick_xs(xs, n);

	/* libgfshare takes a non-const secret: hand it a copy in secure memory
	 * rather than casting the caller's const away. */
	unsigned char *copy = secmem_alloc(SHAMIR_SECRET_LEN);
	if (copy == NULL)
		return -ENOMEM;
	memcpy(copy, secret, SHAMIR_SECRET_LEN);

	gfshare_ctx *ctx = gfshare_ctx_init_enc(xs, n, (unsigned char)t, SHAMIR_SECRET_LEN);
	if (ctx == NULL) {
		secmem_free(copy);
		return -ENOMEM;
	}
	gfshare_ctx_enc_setsecret(ctx, copy);
	secmem_free(copy);

	for (unsigned i = 0; i < n; i++) {
		uint8_t *share = shares + (size_t)i * SHAMIR_SHARE_LEN;
		gfshare_ctx_enc_getshare(ctx, (unsigned char)i, share);
		share[SHAMIR_SECRET_LEN] = xs[i];
	}
	gfshare_ctx_free(ctx);
	return 0;
}

/* libgfshare silently skips x == 0 and divides by zero on duplicates, so
 * both are refused here. */
static int shamir_check_xs(const uint8_t *shares, unsigned k, unsigned char *xs)
{
	uint8_t seen[256] = { 0 };
	if (k == 0 || k > SHAMIR_MAX_SHARES)
		return -EINVAL;
	for (unsigned i = 0; i < k; i++) {
		uint8_t x = shares[(size_t)i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
		if (x == 0 || seen[x])
			return -EINVAL;
		seen[x] = 1;
		xs[i] = x;
	}
	return 0;
}

int shamir_combine(const uint8_t *shares, unsigned k, uint8_t secret[SHAMIR_SECRET_LEN])
{
	unsigned char xs[SHAMIR_X_COUNT];
	int r = shamir_check_xs(shares, k, xs);
	if (r < 0)
		return r;
	shamir_install_rng(); /* gfshare_ctx_free scrubs through it */

	/* Same const issue as in split: give each y through secure memory. */
	unsigned char *y = secmem_alloc(SHAMIR_SECRET_LEN);
	if (y == NULL)
		return -ENOMEM;
	gfshare_ctx *ctx = gfshare_ctx_init_dec(xs, k, SHAMIR_SECRET_LEN);
	if (ctx == NULL) {
		secmem_free(y);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < k; i++) {
		memcpy(y, shares + (size_t)i * SHAMIR_SHARE_LEN, SHAMIR_SECRET_LEN);
		gfshare_ctx_dec_giveshare(ctx, (unsigned char)i, y);
	}
	secmem_free(y);
	gfshare_ctx_dec_extract(ctx, secret);
	gfshare_ctx_free(ctx);
	return 0;
}
