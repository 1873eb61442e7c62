#include "crypto/seal.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/secmem.h"

#define SEAL_B64 sodium_base64_VARIANT_ORIGINAL

struct unsealer {
	unsigned threshold;
	unsigned count;
	uint8_t *shares; /* secmem, threshold * SHAMIR_SHARE_LEN */
};

void seal_share_encode(const uint8_t share[SHAMIR_SHARE_LEN], char *out, size_t out_len)
{
	/* sodium_bin2base64 aborts the process on a short buffer; a daemon
	 * should rather hand back an empty string. */
	if (out_len < sodium_base64_ENCODED_LEN(SHAMIR_SHARE_LEN, SEAL_B64)) {
		if (out_len > 0)
			out[0] = '\0';
		return;
	}
	sodium_bin2base64(out, out_len, share, SHAMIR_SHARE_LEN, SEAL_B64);
}

static bool seal_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool seal_is_base64(const char *text, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' || ch == '='))
			return false;
	}
	return true;
}

int seal_share_decode(const char *text, size_t len, uint8_t share[SHAMIR_SHARE_LEN])
{
	while (len > 0 && seal_is_space(text[0])) {
		text++;
		len--;
	}
	while (len > 0 && seal_is_space(text[len - 1]))
		len--;
	/* 33 bytes encode to exactly 44 characters with no padding, so any
	 * other length cannot be one share. libsodium 1.0.18 decodes bytes
	 * 0x80-0xff as if they were '/', so the alphabet is checked here. */
	if (len != SEAL_SHARE_TEXT_LEN || !seal_is_base64(text, len)) {
		sodium_memzero(share, SHAMIR_SHARE_LEN);
		return -EINVAL;
	}

	/* Decoded straight into the caller's (secure) buffer, which is wiped
	 * on rejection: a scratch copy would either live outside secure memory
	 * or add an -ENOMEM the contract does not have. */
	size_t bin_len = 0;
	const char *end = NULL;
	int r = sodium_base642bin(share, SHAMIR_SHARE_LEN, text, len, NULL, &bin_len, &end,
				  SEAL_B64);
	if (r != 0 || bin_len != SHAMIR_SHARE_LEN || end != text + len ||
	    share[SHAMIR_SECRET_LEN] == 0) {
		sodium_memzero(share, SHAMIR_SHARE_LEN);
		return -EINVAL;
	}
	return 0;
}

int unsealer_new(struct unsealer **ret, unsigned threshold)
{
	if (threshold == 0 || threshold > SHAMIR_MAX_SHARES)
		return -EINVAL;
	/* The struct holds no secret; only the shares need secure memory. */
	struct unsealer *u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->shares = secmem_alloc((size_t)threshold * SHAMIR_SHARE_LEN);
	if (u->shares == NULL) {
		free(u);
		return -ENOMEM;
	}
	u->threshold = threshold;
	*ret = u;
	return 0;
}

void unsealer_free(struct unsealer *u)
{
	if (u == NULL)
		return;
	secmem_free(u->shares);
	free(u);
}

int unsealer_add(struct unsealer *u, const uint8_t share[SHAMIR_SHARE_LEN])
{
	uint8_t x = share[SHAMIR_SECRET_LEN];
	if (x == 0)
		return -EINVAL;
	for (unsigned i = 0; i < u->count; i++)
		if (u->shares[(size_t)i * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN] == x)
			return -EEXIST;
	if (u->count == u->threshold)
		return -ENOSPC;
	memcpy(u->shares + (size_t)u->count * SHAMIR_SHARE_LEN, share, SHAMIR_SHARE_LEN);
	u->count++;
	return (int)u->count;
}

unsigned unsealer_count(const struct unsealer *u)
{
	return u->count;
}

unsigned unsealer_threshold(const struct unsealer *u)
{
	return u->threshold;
}

int unsealer_combine(const struct unsealer *u, uint8_t root_key[SHAMIR_SECRET_LEN])
{
	if (u->count < u->threshold)
		return -EAGAIN;
	return shamir_combine(u->shares, u->count, root_key);
}

void unsealer_reset(struct unsealer *u)
{
	secmem_wipe(u->shares, (size_t)u->threshold * SHAMIR_SHARE_LEN);
	u->count = 0;
}
