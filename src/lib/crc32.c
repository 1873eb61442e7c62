/* CRC-32: see crc32.h. Eight bytes a step ("slicing by 8"): table k maps
 * a byte to its CRC followed by k zero bytes, so the CRCs of eight bytes
 * combine with XOR instead of eight dependent table lookups; a snapshot of
 * a large store is checked about four times faster than a byte at a time. */
#include "lib/crc32.h"

#include <pthread.h>

static uint32_t crc32_table[8][256];
static pthread_once_t crc32_once = PTHREAD_ONCE_INIT;

static void crc32_tables_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc32_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32_table[t][i] = crc32_table[0][crc32_table[t - 1][i] & 0xFF] ^
					    (crc32_table[t - 1][i] >> 8);
}

/* The 4 bytes at P as a little-endian number, whatever their alignment. */
static uint32_t crc32_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

uint32_t crc32_update(uint32_t crc, const void *p, size_t n)
{
	pthread_once(&crc32_once, crc32_tables_init);
	const uint8_t *b = p;
	uint32_t(*t)[256] = crc32_table;
	crc = ~crc;
	for (; n >= 8; n -= 8, b += 8) {
		uint32_t lo = crc32_le32(b) ^ crc, hi = crc32_le32(b + 4);
		crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^
		      t[4][lo >> 24] ^ t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^
		      t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
	}
	for (; n > 0; n--, b++)
		crc = t[0][(crc ^ *b) & 0xFF] ^ (crc >> 8);
	return ~crc;
}
