/* Unit tests for src/lib/crc32: the CRC-32 the Raft store keeps with each
 * row, against its check value and a bit-at-a-time reference, over every
 * length and alignment a step of eight bytes can split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/crc32.h"

/* The definition, a bit at a time. */
static uint32_t reference(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
	}
	return ~crc;
}

static void test_check_value(void **state)
{
	(void)state;
	/* The catalogued check value of CRC-32/ISO-HDLC. */
	assert_int_equal(crc32_update(0, "123456789", 9), 0xCBF43926u);
	assert_int_equal(crc32_update(0, "", 0), 0);
	assert_int_equal(crc32_update(0x12345678u, NULL, 0), 0x12345678u);
}

static void test_every_length_and_alignment(void **state)
{
	(void)state;
	uint8_t buf[300];
	srand(7);
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)rand();
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; off + len <= sizeof buf; len++)
			assert_int_equal(crc32_update(0, buf + off, len), reference(0, buf + off, len));
}

static void test_chained_is_whole(void **state)
{
	(void)state;
	uint8_t buf[1000];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	uint32_t whole = crc32_update(0, buf, sizeof buf);
	for (size_t cut = 0; cut <= sizeof buf; cut += 37) {
		uint32_t first = crc32_update(0, buf, cut);
		assert_int_equal(crc32_update(first, buf + cut, sizeof buf - cut), whole);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_every_length_and_alignment),
		cmocka_unit_test(test_chained_is_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
