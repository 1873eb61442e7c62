/* Unit tests for the backup file format (node/snapfile.c): the header's
 * round trip, its HMAC, and what a reader refuses (another format, bad
 * magic, a short header, a body that is truncated, too long or altered). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "node/snapfile.h"

static const uint8_t body[] = "ciphertext-body-bytes-of-a-dump";

static void sample(struct snapfile_header *h)
{
	memset(h, 0, sizeof *h);
	memset(h->cluster_id, 0xab, sizeof h->cluster_id);
	h->index = 1234;
	h->term = 7;
	h->time_ns = 1700000000000000000LL;
	h->body_len = sizeof body;
	crypto_hash_sha256(h->body_hash, body, sizeof body);
	h->shares = 5;
	h->threshold = 3;
	h->key_term = 2;
	snprintf(h->node_id, sizeof h->node_id, "n3");
	h->keyring = (const uint8_t *)"sealed-keyring";
	h->keyring_len = 14;
}

static void test_round_trip(void **state)
{
	(void)state;
	uint8_t key[SNAPFILE_KEY_LEN], other[SNAPFILE_KEY_LEN];
	randombytes_buf(key, sizeof key);
	randombytes_buf(other, sizeof other);
	struct snapfile_header h, d;
	sample(&h);
	struct buf b;
	buf_init(&b);
	assert_int_equal(snapfile_header_encode(&h, key, &b), 0);
	assert_int_equal(snapfile_prefix(b.data), (int64_t)(b.len - SNAPFILE_PREFIX_LEN));
	assert_int_equal(snapfile_header_decode(b.data, b.len, &d), 0);
	assert_memory_equal(d.cluster_id, h.cluster_id, SNAPFILE_ID_LEN);
	assert_int_equal(d.index, 1234);
	assert_int_equal(d.term, 7);
	assert_int_equal(d.time_ns, h.time_ns);
	assert_int_equal(d.body_len, sizeof body);
	assert_memory_equal(d.body_hash, h.body_hash, SNAPFILE_HASH_LEN);
	assert_int_equal(d.shares, 5);
	assert_int_equal(d.threshold, 3);
	assert_int_equal(d.key_term, 2);
	assert_string_equal(d.node_id, "n3");
	assert_int_equal(d.keyring_len, 14);
	assert_memory_equal(d.keyring, "sealed-keyring", 14);
	assert_true(snapfile_mac_ok(b.data, b.len, key));
	assert_false(snapfile_mac_ok(b.data, b.len, other));
	/* Any header byte changed (here the index) breaks the HMAC. */
	b.data[SNAPFILE_PREFIX_LEN + SNAPFILE_ID_LEN] ^= 1;
	assert_int_equal(snapfile_header_decode(b.data, b.len, &d), 0);
	assert_false(snapfile_mac_ok(b.data, b.len, key));
	buf_free(&b);
}

static void test_refused_headers(void **state)
{
	(void)state;
	uint8_t key[SNAPFILE_KEY_LEN] = { 1 };
	struct snapfile_header h, d;
	sample(&h);
	struct buf b;
	buf_init(&b);
	assert_int_equal(snapfile_header_encode(&h, key, &b), 0);
	assert_int_equal(snapfile_header_decode(b.data, b.len - 1, &d), -EBADMSG);
	b.data[8] = 2; /* format version 2 */
	assert_int_equal(snapfile_header_decode(b.data, b.len, &d), -EPROTONOSUPPORT);
	b.data[8] = 1;
	b.data[0] = 'X';
	assert_int_equal(snapfile_header_decode(b.data, b.len, &d), -EBADMSG);
	buf_clear(&b);
	h.threshold = 6; /* more than the shares */
	assert_int_equal(snapfile_header_encode(&h, key, &b), 0);
	assert_int_equal(snapfile_header_decode(b.data, b.len, &d), -EBADMSG);
	buf_free(&b);
}

/* A file of header + BODY_LEN bytes of the body (+ EXTRA bytes); checked. */
static int check_file(size_t body_len, size_t extra, bool flip, char *why, size_t why_len)
{
	uint8_t key[SNAPFILE_KEY_LEN] = { 2 };
	struct snapfile_header h, d;
	sample(&h);
	struct buf b, read;
	buf_init(&b);
	buf_init(&read);
	assert_int_equal(snapfile_header_encode(&h, key, &b), 0);
	buf_put_raw(&b, body, body_len);
	for (size_t i = 0; i < extra; i++)
		buf_put_u8(&b, 0);
	if (flip)
		b.data[b.len - 1] ^= 1;
	FILE *f = tmpfile();
	assert_non_null(f);
	assert_int_equal(fwrite(b.data, 1, b.len, f), b.len);
	fflush(f);
	int fd = fileno(f);
	int rv = snapfile_read_header(fd, &read, &d, why, why_len);
	assert_int_equal(rv, 0);
	rv = snapfile_check_body(fd, read.len, &d, why, why_len);
	fclose(f);
	buf_free(&b);
	buf_free(&read);
	return rv;
}

static void test_body_checks(void **state)
{
	(void)state;
	char why[256];
	assert_int_equal(check_file(sizeof body, 0, false, why, sizeof why), 0);
	assert_int_equal(check_file(sizeof body - 3, 0, false, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "truncated"));
	assert_int_equal(check_file(sizeof body, 1, false, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "trailing"));
	assert_int_equal(check_file(sizeof body, 0, true, why, sizeof why), -EBADMSG);
	assert_non_null(strstr(why, "SHA-256"));
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_refused_headers),
		cmocka_unit_test(test_body_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
