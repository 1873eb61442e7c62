/* Share text encoding and the unsealer that collects shares. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>

#include "crypto/barrier.h"
#include "crypto/seal.h"
#include "crypto/secmem.h"

/* Vectors checked with Python's base64 module. */
static const char text_1_to_33[] = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAh";
static const char text_ff_x7[] = "//////////////////////////////////////////8H";
static const char text_x0[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A";

static void share_1_to_33(uint8_t s[SHAMIR_SHARE_LEN])
{
	for (unsigned i = 0; i < SHAMIR_SHARE_LEN; i++)
		s[i] = (uint8_t)(i + 1);
}

static int decode_str(const char *text, uint8_t share[SHAMIR_SHARE_LEN])
{
	return seal_share_decode(text, strlen(text), share);
}

static void test_encode_known(void **state)
{
	(void)state;
	uint8_t s[SHAMIR_SHARE_LEN];
	char out[SEAL_SHARE_TEXT_LEN + 1];
	share_1_to_33(s);
	memset(out, 'z', sizeof(out));
	seal_share_encode(s, out, sizeof(out));
	assert_string_equal(out, text_1_to_33);

	memset(s, 0xff, SHAMIR_SECRET_LEN);
	s[SHAMIR_SECRET_LEN] = 7;
	seal_share_encode(s, out, sizeof(out));
	assert_string_equal(out, text_ff_x7); /* '/', not '_': standard alphabet */

	/* Too small a buffer yields "" rather than a truncated share. */
	char small[SEAL_SHARE_TEXT_LEN];
	memset(small, 'z', sizeof(small));
	seal_share_encode(s, small, sizeof(small));
	assert_int_equal(small[0], '\0');
}

static void test_decode_known_and_round_trip(void **state)
{
	(void)state;
	uint8_t s[SHAMIR_SHARE_LEN], want[SHAMIR_SHARE_LEN];
	share_1_to_33(want);
	assert_int_equal(decode_str(text_1_to_33, s), 0);
	assert_memory_equal(s, want, SHAMIR_SHARE_LEN);

	uint8_t secret[SHAMIR_SECRET_LEN] = "round trip through base64 text!";
	uint8_t shares[10 * SHAMIR_SHARE_LEN];
	assert_int_equal(shamir_split(secret, 10, 4, shares), 0);
	for (unsigned i = 0; i < 10; i++) {
		char text[SEAL_SHARE_TEXT_LEN + 1];
		seal_share_encode(shares + i * SHAMIR_SHARE_LEN, text, sizeof(text));
		assert_int_equal(strlen(text), SEAL_SHARE_TEXT_LEN);
		assert_int_equal(decode_str(text, s), 0);
		assert_memory_equal(s, shares + i * SHAMIR_SHARE_LEN, SHAMIR_SHARE_LEN);
	}
}

static void test_decode_trims_whitespace(void **state)
{
	(void)state;
	uint8_t s[SHAMIR_SHARE_LEN], want[SHAMIR_SHARE_LEN];
	share_1_to_33(want);
	char text[128];
	static const char *wraps[][2] = { { "", "\n" },	      { "  ", "" },
					  { " \t", "\r\n" }, { "\n\n", " \v\f\n" } };
	for (size_t i = 0; i < sizeof(wraps) / sizeof(wraps[0]); i++) {
		snprintf(text, sizeof(text), "%s%s%s", wraps[i][0], text_1_to_33, wraps[i][1]);
		memset(s, 0, sizeof(s));
		assert_int_equal(decode_str(text, s), 0);
		assert_memory_equal(s, want, SHAMIR_SHARE_LEN);
	}
	/* LEN is honoured: bytes past it are not looked at. */
	snprintf(text, sizeof(text), "%s\nGARBAGE", text_1_to_33);
	assert_int_equal(seal_share_decode(text, SEAL_SHARE_TEXT_LEN + 1, s), 0);
	assert_memory_equal(s, want, SHAMIR_SHARE_LEN);
}

static void test_decode_rejects_malformed(void **state)
{
	(void)state;
	uint8_t s[SHAMIR_SHARE_LEN];
	char text[128];
	static const char *bad[] = {
		"",
		" \n\t ",
		"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",	 /* 43 chars */
		"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhA", /* 45 chars */
		"AQIDBAUGBwgJCgsMDQ4P EBESExQVFhcYGRobHB0eHyAh", /* inner space */
		"AQIDBAUGBwgJCgsMDQ4P!BESExQVFhcYGRobHB0eHyAh",	 /* bad char */
		"__________________________________________8H", /* url-safe alphabet */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",	 /* 32 bytes, padded */
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==", /* 34 bytes */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(decode_str(bad[i], s), -EINVAL);

	/* An embedded NUL inside the given length is not skipped. */
	memcpy(text, text_1_to_33, SEAL_SHARE_TEXT_LEN);
	text[10] = '\0';
	assert_int_equal(seal_share_decode(text, SEAL_SHARE_TEXT_LEN, s), -EINVAL);

	/* Bytes 0x80-0xff are not base64 (libsodium 1.0.18 reads them as '/'). */
	memcpy(text, text_1_to_33, SEAL_SHARE_TEXT_LEN);
	text[5] = (char)0xaf;
	assert_int_equal(seal_share_decode(text, SEAL_SHARE_TEXT_LEN, s), -EINVAL);

	/* Every rejection wipes the output, whatever the reason. */
	memset(s, 0xa5, sizeof(s));
	assert_int_equal(decode_str("", s), -EINVAL);
	for (size_t i = 0; i < sizeof(s); i++)
		assert_int_equal(s[i], 0);
}

static void test_decode_rejects_zero_x(void **state)
{
	(void)state;
	uint8_t s[SHAMIR_SHARE_LEN];
	memset(s, 0xaa, sizeof(s));
	assert_int_equal(decode_str(text_x0, s), -EINVAL);
	/* A rejected share leaves nothing of itself behind. */
	uint8_t zero[SHAMIR_SHARE_LEN] = { 0 };
	assert_memory_equal(s, zero, sizeof(s));
}

static void test_unsealer_new_limits(void **state)
{
	(void)state;
	struct unsealer *u = NULL;
	assert_int_equal(unsealer_new(&u, 0), -EINVAL);
	assert_int_equal(unsealer_new(&u, 256), -EINVAL);
	assert_null(u);
	assert_int_equal(unsealer_new(&u, 255), 0);
	assert_int_equal(unsealer_threshold(u), 255);
	assert_int_equal(unsealer_count(u), 0);
	unsealer_free(u);
	unsealer_free(NULL);
}

static void test_unsealer_progress(void **state)
{
	(void)state;
	uint8_t secret[SHAMIR_SECRET_LEN] = "five shares, threshold of three";
	uint8_t shares[5 * SHAMIR_SHARE_LEN];
	assert_int_equal(shamir_split(secret, 5, 3, shares), 0);
	uint8_t *key = secmem_alloc(SHAMIR_SECRET_LEN);
	assert_non_null(key);

	struct unsealer *u;
	assert_int_equal(unsealer_new(&u, 3), 0);
	assert_int_equal(unsealer_threshold(u), 3);
	assert_int_equal(unsealer_combine(u, key), -EAGAIN);
	assert_int_equal(unsealer_add(u, shares + 4 * SHAMIR_SHARE_LEN), 1);
	assert_int_equal(unsealer_add(u, shares + 1 * SHAMIR_SHARE_LEN), 2);

	/* Same share again, or another share with that x: refused, no progress. */
	assert_int_equal(unsealer_add(u, shares + 1 * SHAMIR_SHARE_LEN), -EEXIST);
	uint8_t forged[SHAMIR_SHARE_LEN];
	memcpy(forged, shares, SHAMIR_SHARE_LEN);
	forged[SHAMIR_SECRET_LEN] = shares[4 * SHAMIR_SHARE_LEN + SHAMIR_SECRET_LEN];
	assert_int_equal(unsealer_add(u, forged), -EEXIST);
	forged[SHAMIR_SECRET_LEN] = 0;
	assert_int_equal(unsealer_add(u, forged), -EINVAL);
	assert_int_equal(unsealer_count(u), 2);
	assert_int_equal(unsealer_combine(u, key), -EAGAIN);

	assert_int_equal(unsealer_add(u, shares + 2 * SHAMIR_SHARE_LEN), 3);
	/* Full: the caller combines and resets before more shares. */
	assert_int_equal(unsealer_add(u, shares), -ENOSPC);
	assert_int_equal(unsealer_count(u), 3);
	assert_int_equal(unsealer_combine(u, key), 0);
	assert_memory_equal(key, secret, SHAMIR_SECRET_LEN);
	/* combine does not reset */
	assert_int_equal(unsealer_count(u), 3);

	unsealer_reset(u);
	assert_int_equal(unsealer_count(u), 0);
	assert_int_equal(unsealer_combine(u, key), -EAGAIN);
	/* After a reset the same shares are welcome again. */
	assert_int_equal(unsealer_add(u, shares + 4 * SHAMIR_SHARE_LEN), 1);
	assert_int_equal(unsealer_add(u, shares + 0 * SHAMIR_SHARE_LEN), 2);
	assert_int_equal(unsealer_add(u, shares + 3 * SHAMIR_SHARE_LEN), 3);
	memset(key, 0, SHAMIR_SECRET_LEN);
	assert_int_equal(unsealer_combine(u, key), 0);
	assert_memory_equal(key, secret, SHAMIR_SECRET_LEN);

	unsealer_free(u);
	secmem_free(key);
}

static void test_unsealer_one_of_one(void **state)
{
	(void)state;
	uint8_t secret[SHAMIR_SECRET_LEN] = "a single share opens the vault";
	uint8_t share[SHAMIR_SHARE_LEN], key[SHAMIR_SECRET_LEN];
	assert_int_equal(shamir_split(secret, 1, 1, share), 0);
	struct unsealer *u;
	assert_int_equal(unsealer_new(&u, 1), 0);
	assert_int_equal(unsealer_add(u, share), 1);
	assert_int_equal(unsealer_combine(u, key), 0);
	assert_memory_equal(key, secret, SHAMIR_SECRET_LEN);
	unsealer_free(u);
}

/* The operator workflow: init prints shares, the operator types T of them
 * back in (with newlines), and the keyring opens; a wrong share set does not. */
static void test_unseal_workflow(void **state)
{
	(void)state;
	uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	uint8_t *key = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	assert_non_null(root);
	assert_non_null(key);
	barrier_generate_root_key(root);
	struct barrier *b;
	struct buf sealed;
	buf_init(&sealed);
	assert_int_equal(barrier_new(&b), 0);
	assert_int_equal(barrier_init_keyring(b, root, &sealed), 0);
	barrier_seal(b);

	uint8_t shares[5 * SHAMIR_SHARE_LEN];
	assert_int_equal(shamir_split(root, 5, 3, shares), 0);
	char lines[5][SEAL_SHARE_TEXT_LEN + 2];
	for (unsigned i = 0; i < 5; i++) {
		seal_share_encode(shares + i * SHAMIR_SHARE_LEN, lines[i], sizeof(lines[i]));
		strcat(lines[i], "\n");
	}

	struct unsealer *u;
	assert_int_equal(unsealer_new(&u, 3), 0);
	static const unsigned order[] = { 3, 0, 4 };
	for (unsigned i = 0; i < 3; i++) {
		uint8_t s[SHAMIR_SHARE_LEN];
		assert_int_equal(decode_str(lines[order[i]], s), 0);
		assert_int_equal(unsealer_add(u, s), (int)i + 1);
	}
	assert_int_equal(unsealer_combine(u, key), 0);
	assert_int_equal(barrier_unseal(b, key, sealed.data, sealed.len), 0);
	unsealer_reset(u);
	barrier_seal(b);

	/* Two good shares and a damaged one reach the threshold, but the
	 * keyring refuses the key they make. */
	uint8_t s[SHAMIR_SHARE_LEN];
	assert_int_equal(decode_str(lines[1], s), 0);
	assert_int_equal(unsealer_add(u, s), 1);
	assert_int_equal(decode_str(lines[2], s), 0);
	assert_int_equal(unsealer_add(u, s), 2);
	assert_int_equal(decode_str(lines[3], s), 0);
	s[0] ^= 0xff;
	assert_int_equal(unsealer_add(u, s), 3);
	assert_int_equal(unsealer_combine(u, key), 0);
	assert_int_equal(barrier_unseal(b, key, sealed.data, sealed.len), -EKEYREJECTED);
	assert_false(barrier_is_unsealed(b));

	unsealer_free(u);
	barrier_free(b);
	buf_free(&sealed);
	secmem_free(root);
	secmem_free(key);
}

int main(void)
{
	if (crypto_global_init(false) < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_known),
		cmocka_unit_test(test_decode_known_and_round_trip),
		cmocka_unit_test(test_decode_trims_whitespace),
		cmocka_unit_test(test_decode_rejects_malformed),
		cmocka_unit_test(test_decode_rejects_zero_x),
		cmocka_unit_test(test_unsealer_new_limits),
		cmocka_unit_test(test_unsealer_progress),
		cmocka_unit_test(test_unsealer_one_of_one),
		cmocka_unit_test(test_unseal_workflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
