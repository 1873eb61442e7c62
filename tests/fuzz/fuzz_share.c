/* seal_share_decode: what a user writes to the unseal control file. A share
 * that parses goes into an unsealer the way the node does it, together with
 * a fixed second share, and the two are combined.
 * Invariants: 33 bytes of base64 have exactly one 44-character encoding, so
 * an accepted input is, once trimmed, the share's own encoding; and a
 * rejected input leaves the output zeroed (see below for one exception). */
#include <errno.h>
#include <string.h>

#include "crypto/seal.h"
#include "crypto/secmem.h"
#include "fuzz_common.h"

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void combine_with_fixed(const uint8_t share[SHAMIR_SHARE_LEN])
{
	struct unsealer *u = NULL;
	uint8_t other[SHAMIR_SHARE_LEN];
	memset(other, 0x33, SHAMIR_SECRET_LEN);
	other[SHAMIR_SECRET_LEN] = 0x80; /* x */

	uint8_t *root = secmem_alloc(SHAMIR_SECRET_LEN);
	FUZZ_CHECK(root != NULL);
	FUZZ_CHECK(unsealer_new(&u, 2) == 0);
	FUZZ_CHECK(unsealer_add(u, share) == 1);
	FUZZ_CHECK(unsealer_combine(u, root) == -EAGAIN);
	int rv = unsealer_add(u, other);
	if (share[SHAMIR_SECRET_LEN] == other[SHAMIR_SECRET_LEN]) {
		FUZZ_CHECK(rv == -EEXIST && unsealer_count(u) == 1);
	} else {
		FUZZ_CHECK(rv == 2);
		FUZZ_CHECK(unsealer_combine(u, root) == 0);
		FUZZ_CHECK(unsealer_add(u, share) == -EEXIST);
		uint8_t third[SHAMIR_SHARE_LEN];
		memcpy(third, other, sizeof(third));
		third[SHAMIR_SECRET_LEN] = share[SHAMIR_SECRET_LEN] == 1 ? 2 : 1;
		FUZZ_CHECK(unsealer_add(u, third) == -ENOSPC);
	}
	secmem_free(root);
	unsealer_reset(u);
	FUZZ_CHECK(unsealer_count(u) == 0);
	unsealer_free(u);
}

static void write_seeds(const char *dir)
{
	uint8_t share[SHAMIR_SHARE_LEN];
	char text[SEAL_SHARE_TEXT_LEN + 1];
	char line[SEAL_SHARE_TEXT_LEN + 8];

	for (unsigned k = 0; k < SHAMIR_SHARE_LEN; k++)
		share[k] = (uint8_t)(k * 7 + 1);
	seal_share_encode(share, text, sizeof(text));
	fuzz_write_seed(dir, "share", text, SEAL_SHARE_TEXT_LEN);
	snprintf(line, sizeof(line), "  %s\n", text);
	fuzz_write_seed(dir, "share_whitespace", line, strlen(line));

	memset(share, 0xff, sizeof(share));
	share[SHAMIR_SECRET_LEN] = 0x80;
	seal_share_encode(share, text, sizeof(text));
	snprintf(line, sizeof(line), "%s\r\n", text);
	fuzz_write_seed(dir, "share_same_x", line, strlen(line));

	share[SHAMIR_SECRET_LEN] = 0;
	seal_share_encode(share, text, sizeof(text));
	fuzz_write_seed(dir, "share_x_zero", text, SEAL_SHARE_TEXT_LEN);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_log();
	fuzz_crypto_init();
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t share[SHAMIR_SHARE_LEN], again[SHAMIR_SHARE_LEN];
	char text[SEAL_SHARE_TEXT_LEN + 1];

	size_t start = 0, end = size;
	while (start < end && is_space(data[start]))
		start++;
	while (end > start && is_space(data[end - 1]))
		end--;

	memset(share, 0xa5, sizeof(share));
	if (seal_share_decode((const char *)data, size, share) != 0) {
		/* seal.h promises a zeroed SHARE on every -EINVAL (regression:
		 * tests/fuzz/crashes/share-short-input-not-zeroed). */
		static const uint8_t zero[SHAMIR_SHARE_LEN];
		FUZZ_CHECK(memcmp(share, zero, sizeof(zero)) == 0);
		return 0;
	}
	FUZZ_CHECK(share[SHAMIR_SECRET_LEN] != 0);
	seal_share_encode(share, text, sizeof(text));
	FUZZ_CHECK(strlen(text) == SEAL_SHARE_TEXT_LEN);
	FUZZ_CHECK(end - start == SEAL_SHARE_TEXT_LEN);
	/* Only canonical base64 is accepted: non-ASCII bytes, which
	 * libsodium 1.0.18 reads as '/', are refused (regression:
	 * tests/fuzz/crashes/share-high-byte-accepted). */
	FUZZ_CHECK(memcmp(data + start, text, SEAL_SHARE_TEXT_LEN) == 0);
	FUZZ_CHECK(seal_share_decode(text, SEAL_SHARE_TEXT_LEN, again) == 0);
	FUZZ_CHECK(memcmp(share, again, sizeof(share)) == 0);

	combine_with_fixed(share);
	return 0;
}
