/* The backup file (.vault/snapshot, .vault/restore, scheduled snapshots):
 * a self-describing header and a body that is the store's dump (ciphertext
 * and inode numbers only, names included: store/store_dump.c).
 *
 * Layout (little-endian):
 *   8 bytes magic "VFSBACKU", u32 format version (SNAPFILE_VERSION),
 *   u32 header length H (bytes from here to the body),
 *   H bytes of header:
 *     16 bytes cluster id (barrier_cluster_id), u64 Raft index, u64 Raft
 *     term, i64 time taken (ns since the epoch), u64 body length, 32 bytes
 *     SHA-256 of the body, u8 shares, u8 threshold, u32 newest key term,
 *     blob node id (who took it), blob sealed keyring (opens with the unseal
 *     key shares valid when it was taken), 32 bytes HMAC-SHA-256 under the
 *     vault's backup key (barrier_backup_key) of everything before it;
 *   the body.
 * The SHA-256 lets anyone (vaultfsd -inspect) check the body without keys;
 * the HMAC lets a member of the vault (or a node that opened the keyring in
 * the header) tell a backup the vault made from a forged one. */
#ifndef VAULTFS_NODE_SNAPFILE_H
#define VAULTFS_NODE_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define SNAPFILE_VERSION 1u
#define SNAPFILE_PREFIX_LEN 16u /* magic, version, header length */
#define SNAPFILE_HEADER_MAX (4u * 1024u * 1024u)
#define SNAPFILE_ID_LEN 16u
#define SNAPFILE_HASH_LEN 32u
#define SNAPFILE_MAC_LEN 32u
#define SNAPFILE_KEY_LEN 32u
#define SNAPFILE_NODE_ID_MAX 256u

struct snapfile_header {
	uint32_t version;
	uint8_t cluster_id[SNAPFILE_ID_LEN];
	uint64_t index;
	uint64_t term;
	int64_t time_ns;
	uint64_t body_len;
	uint8_t body_hash[SNAPFILE_HASH_LEN];
	uint8_t shares;
	uint8_t threshold;
	uint32_t key_term;
	char node_id[SNAPFILE_NODE_ID_MAX + 1];
	const uint8_t *keyring; /* points into the bytes it was decoded from */
	size_t keyring_len;
	uint8_t mac[SNAPFILE_MAC_LEN];
};

/* Appends prefix and header (H's mac ignored: computed with KEY) to OUT.
 * Returns 0 or -errno. */
int snapfile_header_encode(const struct snapfile_header *h,
			   const uint8_t key[SNAPFILE_KEY_LEN], struct buf *out);

/* The header length announced by the first SNAPFILE_PREFIX_LEN bytes of a
 * file (the whole prefix + header is SNAPFILE_PREFIX_LEN + the result), or
 * -EBADMSG (not a backup) / -EPROTONOSUPPORT (another format version). */
int64_t snapfile_prefix(const uint8_t prefix[SNAPFILE_PREFIX_LEN]);

/* Decodes prefix + header (P, LEN: exactly what snapfile_prefix said).
 * RET's keyring points into P. 0 or -EBADMSG / -EPROTONOSUPPORT. */
int snapfile_header_decode(const uint8_t *p, size_t len, struct snapfile_header *ret);

/* Whether the header bytes P, LEN (as decoded) carry a valid HMAC under KEY. */
bool snapfile_mac_ok(const uint8_t *p, size_t len, const uint8_t key[SNAPFILE_KEY_LEN]);

/* Reads the prefix and header of the file open at FD (from offset 0) into
 * *RET_BYTES (a buf the caller frees) and decodes them into RET. Returns
 * 0, -EBADMSG, -EPROTONOSUPPORT or -errno; WHY says what is wrong. */
int snapfile_read_header(int fd, struct buf *ret_bytes, struct snapfile_header *ret,
			 char *why, size_t why_len);

/* Checks that the body following the header at offset START of FD is
 * exactly H->body_len bytes with H's SHA-256. 0 or -EBADMSG (WHY says
 * truncated, trailing bytes or hash mismatch) or -errno. */
int snapfile_check_body(int fd, uint64_t start, const struct snapfile_header *h, char *why,
			size_t why_len);

/* Formats H for people (vaultfsd -inspect) into OUT. */
void snapfile_describe(const struct snapfile_header *h, struct buf *out);

#endif
