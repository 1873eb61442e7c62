/* Keyed MACs of the rows of raft.db (raftio.h): what makes the stored Raft
 * state tamper-evident.
 *
 * The CRC-32 each row also carries finds bit rot and torn writes before
 * unseal, when no key is at hand, but anyone can recompute it. The MAC is a
 * keyed BLAKE2b (barrier_storage_key) over the row's place and contents: the
 * node's Raft id, the entry's index, term and type (a snapshot's index, term
 * and configuration), and its bytes. An entry copied to another index or
 * another node's database, an older snapshot copied over a newer one, or an
 * edited byte no longer verifies. What a MAC cannot show is a row that is
 * missing at the end (a log cut back, a whole older raft.db): see the
 * README's security model. */
#ifndef VAULTFS_RAFT_ROWMAC_H
#define VAULTFS_RAFT_ROWMAC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROWMAC_KEY_LEN 32u
#define ROWMAC_LEN 32u

/* The MAC of log entry IDX of node ID. */
void rowmac_entry(const uint8_t key[ROWMAC_KEY_LEN], uint64_t id, uint64_t idx, uint64_t term,
		  unsigned type, const void *data, size_t len, uint8_t out[ROWMAC_LEN]);

/* The MAC of a snapshot row: CONF is its encoded configuration. */
void rowmac_snapshot(const uint8_t key[ROWMAC_KEY_LEN], uint64_t id, uint64_t idx,
		     uint64_t term, uint64_t conf_index, const void *conf, size_t conf_len,
		     const void *data, size_t len, uint8_t out[ROWMAC_LEN]);

/* The MAC of the term and vote row. */
void rowmac_meta(const uint8_t key[ROWMAC_KEY_LEN], uint64_t id, uint64_t term, uint64_t vote,
		 uint8_t out[ROWMAC_LEN]);

/* Whether the stored MAC (LEN bytes at STORED) is WANT, in constant time. */
bool rowmac_equal(const uint8_t want[ROWMAC_LEN], const void *stored, size_t len);

#endif
