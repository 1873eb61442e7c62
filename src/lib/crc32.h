/* CRC-32 (ISO-HDLC: reflected polynomial 0xEDB88320, as zlib's crc32 and
 * Ethernet), which the Raft store keeps with every row. */
#ifndef VAULTFS_LIB_CRC32_H
#define VAULTFS_LIB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of the bytes already covered by CRC (0 for none) followed by
 * the N bytes at P: crc32_update(crc32_update(0, a), b) is the CRC of a
 * then b. Thread-safe. */
uint32_t crc32_update(uint32_t crc, const void *p, size_t n);

#endif
