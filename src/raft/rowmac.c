/* Keyed MACs of raft.db rows. See rowmac.h. */
#include "raft/rowmac.h"

#include <sodium.h>

/* Each kind of row hashes a distinct label first, so that the fields of one
 * kind can never be read as those of another. */
static const char rowmac_label_entry[] = "vaultfs-row-entry";
static const char rowmac_label_snapshot[] = "vaultfs-row-snapshot";
static const char rowmac_label_meta[] = "vaultfs-row-meta";

static void rowmac_u64(crypto_generichash_state *st, uint64_t v)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	crypto_generichash_update(st, le, sizeof le);
}

static void rowmac_begin(crypto_generichash_state *st, const uint8_t key[ROWMAC_KEY_LEN],
			 const char *label, size_t label_len, uint64_t id)
{
	_Static_assert(ROWMAC_LEN >= crypto_generichash_BYTES_MIN &&
			       ROWMAC_LEN <= crypto_generichash_BYTES_MAX,
		       "ROWMAC_LEN is a BLAKE2b output length");
	crypto_generichash_init(st, key, ROWMAC_KEY_LEN, ROWMAC_LEN);
	crypto_generichash_update(st, (const unsigned char *)label, label_len);
	rowmac_u64(st, id);
}

/* Length-prefixed, so that moving bytes between two fields changes the MAC. */
static void rowmac_bytes(crypto_generichash_state *st, const void *p, size_t len)
{
	rowmac_u64(st, len);
	if (len > 0)
		crypto_generichash_update(st, p, len);
}

static void rowmac_end(crypto_generichash_state *st, uint8_t out[ROWMAC_LEN])
{
	crypto_generichash_final(st, out, ROWMAC_LEN);
	sodium_memzero(st, sizeof *st);
}

void rowmac_entry(const uint8_t key[ROWMAC_KEY_LEN], uint64_t id, uint64_t idx, uint64_t term,
		  unsigned type, const void *data, size_t len, uint8_t out[ROWMAC_LEN])
{
	crypto_generichash_state st;
	rowmac_begin(&st, key, rowmac_label_entry, sizeof rowmac_label_entry - 1, id);
	rowmac_u64(&st, idx);
	rowmac_u64(&st, term);
	rowmac_u64(&st, type);
	rowmac_bytes(&st, data, len);
	rowmac_end(&st, out);
}

void rowmac_snapshot(const uint8_t key[ROWMAC_KEY_LEN], uint64_t id, uint64_t idx,
		     uint64_t term, uint64_t conf_index, const void *conf, size_t conf_len,
		     const void *data, size_t len, uint8_t out[ROWMAC_LEN])
{
	crypto_generichash_state st;
	rowmac_begin(&st, key, rowmac_label_snapshot, sizeof rowmac_label_snapshot - 1, id);
	rowmac_u64(&st, idx);
	rowmac_u64(&st, term);
	rowmac_u64(&st, conf_index);
	rowmac_bytes(&st, conf, conf_len);
	rowmac_bytes(&st, data, len);
	rowmac_end(&st, out);
}

void rowmac_meta(const uint8_t key[ROWMAC_KEY_LEN], uint64_t id, uint64_t term, uint64_t vote,
		 uint8_t out[ROWMAC_LEN])
{
	crypto_generichash_state st;
	rowmac_begin(&st, key, rowmac_label_meta, sizeof rowmac_label_meta - 1, id);
	rowmac_u64(&st, term);
	rowmac_u64(&st, vote);
	rowmac_end(&st, out);
}

bool rowmac_equal(const uint8_t want[ROWMAC_LEN], const void *stored, size_t len)
{
	return stored != NULL && len == ROWMAC_LEN && sodium_memcmp(want, stored, ROWMAC_LEN) == 0;
}
