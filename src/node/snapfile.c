/* The backup file format (layout in snapfile.h). */
#include "node/snapfile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

static const uint8_t snapfile_magic[8] = { 'V', 'F', 'S', 'B', 'A', 'C', 'K', 'U' };
#define SNAPFILE_READ_CHUNK (256u * 1024u)

int snapfile_header_encode(const struct snapfile_header *h,
			   const uint8_t key[SNAPFILE_KEY_LEN], struct buf *out)
{
	size_t start = out->len;
	size_t node_len = strlen(h->node_id);
	if (node_len > SNAPFILE_NODE_ID_MAX)
		return -EINVAL;
	buf_put_raw(out, snapfile_magic, sizeof snapfile_magic);
	buf_put_u32(out, SNAPFILE_VERSION);
	size_t len_at = out->len;
	buf_put_u32(out, 0); /* patched below */
	buf_put_raw(out, h->cluster_id, SNAPFILE_ID_LEN);
	buf_put_u64(out, h->index);
	buf_put_u64(out, h->term);
	buf_put_i64(out, h->time_ns);
	buf_put_u64(out, h->body_len);
	buf_put_raw(out, h->body_hash, SNAPFILE_HASH_LEN);
	buf_put_u8(out, h->shares);
	buf_put_u8(out, h->threshold);
	buf_put_u32(out, h->key_term);
	buf_put_blob(out, h->node_id, node_len);
	buf_put_blob(out, h->keyring, h->keyring_len);
	if (out->err != 0)
		return out->err;
	size_t header_len = out->len - start - SNAPFILE_PREFIX_LEN + SNAPFILE_MAC_LEN;
	if (header_len > SNAPFILE_HEADER_MAX)
		return -EFBIG;
	for (unsigned i = 0; i < 4; i++)
		out->data[len_at + i] = (uint8_t)(header_len >> (8 * i));
	uint8_t mac[SNAPFILE_MAC_LEN];
	crypto_auth_hmacsha256(mac, out->data + start, out->len - start, key);
	buf_put_raw(out, mac, sizeof mac);
	return out->err;
}

int64_t snapfile_prefix(const uint8_t prefix[SNAPFILE_PREFIX_LEN])
{
	struct cursor c;
	cursor_init(&c, prefix, SNAPFILE_PREFIX_LEN);
	const uint8_t *magic = cursor_raw(&c, sizeof snapfile_magic);
	uint32_t version = cursor_u32(&c);
	uint32_t header_len = cursor_u32(&c);
	if (c.err != 0 || memcmp(magic, snapfile_magic, sizeof snapfile_magic) != 0)
		return -EBADMSG;
	if (version != SNAPFILE_VERSION)
		return -EPROTONOSUPPORT;
	if (header_len > SNAPFILE_HEADER_MAX || header_len < SNAPFILE_MAC_LEN)
		return -EBADMSG;
	return header_len;
}

int snapfile_header_decode(const uint8_t *p, size_t len, struct snapfile_header *ret)
{
	if (len < SNAPFILE_PREFIX_LEN)
		return -EBADMSG;
	int64_t header_len = snapfile_prefix(p);
	if (header_len < 0)
		return (int)header_len;
	if ((uint64_t)header_len != len - SNAPFILE_PREFIX_LEN)
		return -EBADMSG;
	memset(ret, 0, sizeof *ret);
	ret->version = SNAPFILE_VERSION;
	struct cursor c;
	cursor_init(&c, p + SNAPFILE_PREFIX_LEN, len - SNAPFILE_PREFIX_LEN);
	const uint8_t *id = cursor_raw(&c, SNAPFILE_ID_LEN);
	ret->index = cursor_u64(&c);
	ret->term = cursor_u64(&c);
	ret->time_ns = cursor_i64(&c);
	ret->body_len = cursor_u64(&c);
	const uint8_t *hash = cursor_raw(&c, SNAPFILE_HASH_LEN);
	ret->shares = cursor_u8(&c);
	ret->threshold = cursor_u8(&c);
	ret->key_term = cursor_u32(&c);
	size_t node_len = 0;
	const uint8_t *node = cursor_blob(&c, SNAPFILE_NODE_ID_MAX, &node_len);
	ret->keyring = cursor_blob(&c, SNAPFILE_HEADER_MAX, &ret->keyring_len);
	const uint8_t *mac = cursor_raw(&c, SNAPFILE_MAC_LEN);
	if (cursor_done(&c) != 0 || ret->threshold == 0 || ret->threshold > ret->shares ||
	    ret->keyring_len == 0 || memchr(node, '\0', node_len) != NULL)
		return -EBADMSG;
	memcpy(ret->cluster_id, id, SNAPFILE_ID_LEN);
	memcpy(ret->body_hash, hash, SNAPFILE_HASH_LEN);
	memcpy(ret->node_id, node, node_len);
	ret->node_id[node_len] = '\0';
	memcpy(ret->mac, mac, SNAPFILE_MAC_LEN);
	return 0;
}

bool snapfile_mac_ok(const uint8_t *p, size_t len, const uint8_t key[SNAPFILE_KEY_LEN])
{
	if (len < SNAPFILE_PREFIX_LEN + SNAPFILE_MAC_LEN)
		return false;
	return crypto_auth_hmacsha256_verify(p + len - SNAPFILE_MAC_LEN, p,
					     len - SNAPFILE_MAC_LEN, key) == 0;
}

/* Reads exactly LEN bytes at OFF: 0, -EBADMSG at end of file, or -errno. */
static int read_at(int fd, void *p, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)p + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG;
		got += (size_t)n;
	}
	return 0;
}

int snapfile_read_header(int fd, struct buf *ret_bytes, struct snapfile_header *ret,
			 char *why, size_t why_len)
{
	uint8_t prefix[SNAPFILE_PREFIX_LEN];
	int rv = read_at(fd, prefix, sizeof prefix, 0);
	int64_t header_len = rv == 0 ? snapfile_prefix(prefix) : rv;
	if (header_len == -EPROTONOSUPPORT) {
		snprintf(why, why_len, "backup format version %" PRIu32 " is not one this "
			 "vaultfsd reads (it reads version %u)",
			 (uint32_t)prefix[8] | (uint32_t)prefix[9] << 8 | (uint32_t)prefix[10] << 16 |
				 (uint32_t)prefix[11] << 24,
			 SNAPFILE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (header_len < 0) {
		snprintf(why, why_len, "%s", header_len == -EBADMSG ? "not a vaultfs backup "
			 "(bad magic, or shorter than its header)" : strerror((int)-header_len));
		return (int)header_len;
	}
	buf_clear(ret_bytes);
	rv = buf_reserve(ret_bytes, SNAPFILE_PREFIX_LEN + (size_t)header_len);
	if (rv == 0) {
		memcpy(ret_bytes->data, prefix, sizeof prefix);
		rv = read_at(fd, ret_bytes->data + sizeof prefix, (size_t)header_len,
			     sizeof prefix);
	}
	if (rv == 0) {
		ret_bytes->len = SNAPFILE_PREFIX_LEN + (size_t)header_len;
		rv = snapfile_header_decode(ret_bytes->data, ret_bytes->len, ret);
	}
	if (rv != 0)
		snprintf(why, why_len, "%s", rv == -EBADMSG ? "the header is truncated or malformed"
							  : strerror(-rv));
	return rv;
}

static int check_body_with(int fd, uint64_t start, const struct snapfile_header *h,
			   uint8_t *chunk, char *why, size_t why_len);

int snapfile_check_body(int fd, uint64_t start, const struct snapfile_header *h, char *why,
			size_t why_len)
{
	uint8_t *chunk = malloc(SNAPFILE_READ_CHUNK);
	if (chunk == NULL)
		return -ENOMEM;
	int rv = check_body_with(fd, start, h, chunk, why, why_len);
	free(chunk);
	return rv;
}

static int check_body_with(int fd, uint64_t start, const struct snapfile_header *h,
			   uint8_t *chunk, char *why, size_t why_len)
{
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	uint64_t done = 0;
	while (done < h->body_len) {
		uint64_t left = h->body_len - done;
		size_t n = left < SNAPFILE_READ_CHUNK ? (size_t)left : SNAPFILE_READ_CHUNK;
		int rv = read_at(fd, chunk, n, start + done);
		if (rv == -EBADMSG) {
			snprintf(why, why_len, "truncated: the body ends after %" PRIu64 " of %" PRIu64
				 " bytes", done, h->body_len);
			return rv;
		}
		if (rv != 0) {
			snprintf(why, why_len, "cannot read: %s", strerror(-rv));
			return rv;
		}
		crypto_hash_sha256_update(&st, chunk, n);
		done += n;
	}
	uint8_t extra;
	if (pread(fd, &extra, 1, (off_t)(start + done)) > 0) {
		snprintf(why, why_len, "trailing bytes after the body: the file is not one backup");
		return -EBADMSG;
	}
	uint8_t hash[SNAPFILE_HASH_LEN];
	crypto_hash_sha256_final(&st, hash);
	if (sodium_memcmp(hash, h->body_hash, sizeof hash) != 0) {
		snprintf(why, why_len, "the body's SHA-256 does not match the header: corrupted "
			 "or altered");
		return -EBADMSG;
	}
	return 0;
}

static void put_hex(struct buf *out, const uint8_t *p, size_t n)
{
	char hex[2 * SNAPFILE_HASH_LEN + 1];
	if (n > SNAPFILE_HASH_LEN)
		n = SNAPFILE_HASH_LEN;
	sodium_bin2hex(hex, sizeof hex, p, n);
	buf_printf(out, "%s", hex);
}

void snapfile_describe(const struct snapfile_header *h, struct buf *out)
{
	time_t secs = (time_t)(h->time_ns / 1000000000);
	struct tm tm;
	char when[64] = "?";
	if (gmtime_r(&secs, &tm) != NULL)
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_printf(out, "format: %" PRIu32 "\n", h->version);
	buf_printf(out, "cluster_id: ");
	put_hex(out, h->cluster_id, SNAPFILE_ID_LEN);
	buf_printf(out, "\nindex: %" PRIu64 "\nterm: %" PRIu64 "\n", h->index, h->term);
	buf_printf(out, "time: %s\n", when);
	buf_printf(out, "node: %s\n", h->node_id);
	buf_printf(out, "body_bytes: %" PRIu64 "\n", h->body_len);
	buf_printf(out, "body_sha256: ");
	put_hex(out, h->body_hash, SNAPFILE_HASH_LEN);
	buf_printf(out, "\nshares: %u\nthreshold: %u\nkey_term: %" PRIu32 "\n", h->shares,
		   h->threshold, h->key_term);
	buf_printf(out, "sealed_keyring_bytes: %zu\n", h->keyring_len);
}
