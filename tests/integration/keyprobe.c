/* keyprobe: test-only tool that recovers a node's key material from its
 * unseal shares, and searches files for key material in every encoding a
 * leak is likely to take. Built for tests/integration/test_security.sh only.
 *
 *   keyprobe keys --seal-file FILE     shares (base64, one per line) on stdin
 *   keyprobe keys --join-answer FILE   the same, keyring from a VFSJ answer
 *     Either may be followed by "--identity FILE" any number of times: a
 *     node's identity file, whose secret key is opened with the keyring
 *     (the same AAD as node_trust.c) and printed as "identityN.sk hex",
 *     after checking that it derives the public key stored beside it.
 *     Combines the shares, opens the sealed keyring with the project's own
 *     barrier (so a wrong guess cannot pass) and prints "name hex" lines to
 *     stdout: each share (33 bytes) and its 32 y-bytes, the root key, every
 *     term key with its data, name and cluster subkeys ("termN.key",
 *     ".data", ".name", ".cluster"), and "cluster", the newest term's
 *     cluster key, which a node offers first. The data and name
 *     subkeys are derived here the way barrier.c does; both are checked
 *     against the barrier's own encrypt and hash, so a change in the
 *     derivation fails loudly instead of making the search look for the
 *     wrong bytes.
 *   keyprobe find [--memory] FILE...   "name hex" lines on stdin
 *     Looks for every pattern in each FILE (read as a stream: pipes work,
 *     so a positive control never needs key material in a file) as raw
 *     bytes, lower- and upper-case hex text and base64 text. Prints
 *     "FOUND name encoding FILE offset" per hit; exit 1 if anything was
 *     found, 0 if nothing, 2 on error. With --memory each FILE is an ELF
 *     core and only its memory (PT_LOAD segments) is searched, not the
 *     notes, which hold the threads' registers.
 *   keyprobe encode                    "name hex" lines on stdin
 *     Writes every encoding of every pattern between random filler bytes:
 *     the input of the positive control for find.
 *
 * The output of keys is key material: the test keeps it in shell variables
 * and pipes, never in a file. Everything here is wiped before exit. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/barrier.h"
#include "crypto/channel.h"
#include "crypto/seal.h"
#include "crypto/secmem.h"
#include "crypto/shamir.h"
#include "lib/buf.h"

#define KEY_LEN 32u
#define MAX_PATTERNS 512u
#define MAX_PATTERN_LEN 128u
#define CHUNK (1u << 20)
/* Must match barrier.c; checked at run time by check_subkeys(). */
#define KDF_CTX_DATA "vfsdata_"
#define KDF_CTX_NAME "vfsname_"
#define KEYRING_HDR (4u + 24u) /* "VFK" version, nonce */
/* Per version (barrier.c): its AAD, and whether entries carry a time. */
static const char *const keyring_aad[] = { NULL, "vaultfs-keyring-v1", "vaultfs-keyring-v2" };

static _Noreturn void die(const char *msg)
{
	fprintf(stderr, "keyprobe: %s\n", msg);
	exit(2);
}

/* Reads all of FD into B (wiping buffer). */
static int read_all(int fd, struct buf *b)
{
	for (;;) {
		if (buf_reserve(b, 65536) != 0)
			return -ENOMEM;
		ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		b->len += (size_t)n;
	}
}

static int read_path(const char *path, struct buf *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rv = read_all(fd, b);
	close(fd);
	return rv;
}

static void print_hex(const char *name, const uint8_t *p, size_t n)
{
	char hex[2 * MAX_PATTERN_LEN + 1];
	sodium_bin2hex(hex, sizeof hex, p, n);
	printf("%s %s\n", name, hex);
	sodium_memzero(hex, sizeof hex);
}

/* ---- keys ---- */

/* The sealed keyring inside a seal file ("VFSSEAL1", u8 shares, u8
 * threshold, u32 len, keyring, ...) or a VFSJ answer (u32 status, u32 len,
 * u8 shares, u8 threshold, u32 len, keyring, ...). */
static int locate_keyring(const struct buf *in, bool join_answer, const uint8_t **ret,
			  size_t *ret_len)
{
	struct cursor c;
	cursor_init(&c, in->data, in->len);
	if (join_answer) {
		if (cursor_u32(&c) != 0)
			return -EBADMSG; /* the node answered an error */
		(void)cursor_u32(&c);
	} else {
		const uint8_t *magic = cursor_raw(&c, 8);
		if (magic == NULL || memcmp(magic, "VFSSEAL1", 8) != 0)
			return -EBADMSG;
	}
	(void)cursor_u8(&c);
	(void)cursor_u8(&c);
	*ret = cursor_blob(&c, 1024 * 1024, ret_len);
	return c.err != 0 || *ret == NULL ? -EBADMSG : 0;
}

/* Shares from stdin, one base64 share per line, into secure memory. */
static unsigned read_shares(uint8_t *shares, unsigned max)
{
	struct buf in;
	buf_init(&in);
	if (read_all(STDIN_FILENO, &in) != 0)
		die("cannot read the shares on stdin");
	unsigned n = 0;
	size_t start = 0;
	for (size_t i = 0; i <= in.len && n < max; i++) {
		if (i < in.len && in.data[i] != '\n')
			continue;
		if (i > start && seal_share_decode((const char *)in.data + start, i - start,
						   shares + (size_t)n * SHAMIR_SHARE_LEN) == 0)
			n++;
		start = i + 1;
	}
	buf_free(&in);
	return n;
}

/* Decrypts the keyring with ROOT into secure memory; the barrier already
 * proved that ROOT opens it. */
static uint8_t *keyring_plain(const uint8_t *sealed, size_t len, const uint8_t *root,
			      size_t *ret_len)
{
	if (len < KEYRING_HDR + crypto_aead_xchacha20poly1305_ietf_ABYTES || sealed[3] < 1 ||
	    sealed[3] > 2)
		return NULL;
	const char *aad = keyring_aad[sealed[3]];
	size_t pt_len = len - KEYRING_HDR - crypto_aead_xchacha20poly1305_ietf_ABYTES;
	uint8_t *pt = secmem_alloc(pt_len);
	if (pt == NULL ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
		    pt, NULL, NULL, sealed + KEYRING_HDR, len - KEYRING_HDR,
		    (const uint8_t *)aad, strlen(aad), sealed + 4, root) != 0) {
		secmem_free(pt);
		return NULL;
	}
	*ret_len = pt_len;
	return pt;
}

/* The derived subkeys must be the barrier's: its hash must equal ours with
 * NAME_KEY (first term), and its ciphertext must open with DATA_KEY
 * (newest term). */
static bool check_subkeys(struct barrier *b, const uint8_t *name_key, const uint8_t *data_key)
{
	static const uint8_t probe[] = "keyprobe";
	uint8_t mine[BARRIER_HASH_LEN], theirs[BARRIER_HASH_LEN];
	if (barrier_hash(b, probe, sizeof probe, theirs) != 0)
		return false;
	crypto_generichash(mine, sizeof mine, probe, sizeof probe, name_key, KEY_LEN);
	bool ok = sodium_memcmp(mine, theirs, sizeof mine) == 0;

	struct buf ct, ad;
	buf_init(&ct);
	buf_init(&ad);
	uint8_t pt[sizeof probe];
	ok = ok && barrier_encrypt(b, "aad", 3, probe, sizeof probe, &ct) == 0;
	if (ok) {
		buf_put_raw(&ad, ct.data, 4); /* AD = u32 term || caller's AAD */
		buf_put_raw(&ad, "aad", 3);
		ok = ad.err == 0 &&
		     crypto_aead_xchacha20poly1305_ietf_decrypt(
			     pt, NULL, NULL, ct.data + 28, ct.len - 28, ad.data, ad.len,
			     ct.data + 4, data_key) == 0 &&
		     memcmp(pt, probe, sizeof probe) == 0;
	}
	buf_free(&ct);
	buf_free(&ad);
	return ok;
}

/* Prints every term key and its subkeys; returns false if the derivation
 * does not match the barrier's. */
static bool print_terms(struct barrier *b, unsigned version, const uint8_t *pt, size_t len)
{
	uint32_t n = len >= 4 ? (uint32_t)pt[0] | (uint32_t)pt[1] << 8 |
					(uint32_t)pt[2] << 16 | (uint32_t)pt[3] << 24
			      : 0;
	size_t time_len = version >= 2 ? 8 : 0, entry_len = 4 + time_len + KEY_LEN;
	if (n == 0 || len != 4 + (size_t)n * entry_len)
		return false;
	uint8_t *sub = secmem_alloc(4 * KEY_LEN); /* data, name, first name, cluster */
	if (sub == NULL)
		return false;
	bool ok = true;
	for (uint32_t i = 0; i < n && ok; i++) {
		const uint8_t *e = pt + 4 + (size_t)i * entry_len;
		uint32_t term = (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 |
				(uint32_t)e[3] << 24;
		e += time_len; /* the key follows term and time as e + 4 */
		char name[64];
		crypto_kdf_derive_from_key(sub, KEY_LEN, 1, KDF_CTX_DATA, e + 4);
		crypto_kdf_derive_from_key(sub + KEY_LEN, KEY_LEN, 1, KDF_CTX_NAME, e + 4);
		if (i == 0)
			memcpy(sub + 2 * KEY_LEN, sub + KEY_LEN, KEY_LEN);
		snprintf(name, sizeof name, "term%u.key", term);
		print_hex(name, e + 4, KEY_LEN);
		snprintf(name, sizeof name, "term%u.data", term);
		print_hex(name, sub, KEY_LEN);
		snprintf(name, sizeof name, "term%u.name", term);
		print_hex(name, sub + KEY_LEN, KEY_LEN);
		/* Every term's cluster key opens handshakes (channel.h). */
		uint32_t t = term;
		ok = barrier_cluster_key(b, &t, sub + 3 * KEY_LEN) == 0;
		snprintf(name, sizeof name, "term%u.cluster", term);
		print_hex(name, sub + 3 * KEY_LEN, KEY_LEN);
	}
	/* sub holds the newest data key and the first name key now. */
	ok = ok && check_subkeys(b, sub + 2 * KEY_LEN, sub);
	secmem_free(sub);
	return ok;
}

static void print_shares(const uint8_t *shares, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *s = shares + (size_t)i * SHAMIR_SHARE_LEN;
		char name[32];
		snprintf(name, sizeof name, "share%u", i + 1);
		print_hex(name, s, SHAMIR_SHARE_LEN);
		snprintf(name, sizeof name, "share%u.y", i + 1);
		print_hex(name, s, SHAMIR_SECRET_LEN);
	}
}

/* Must match node_trust.c: magic, public key, u32 length + ciphertext. */
#define IDENTITY_MAGIC "VFSID001"
#define IDENTITY_AAD "vaultfs-identity-v1"

/* Prints the secret key of identity file PATH as NAME; false if it does
 * not open or does not match its public key. */
static bool print_identity(struct barrier *b, const char *name, const char *path)
{
	struct buf in, aad, sk;
	buf_init(&in);
	buf_init(&aad);
	buf_init(&sk);
	bool ok = read_path(path, &in) == 0 && in.len > 8 + 32 + 4 &&
		  memcmp(in.data, IDENTITY_MAGIC, 8) == 0;
	if (ok) {
		buf_put_raw(&aad, IDENTITY_AAD, strlen(IDENTITY_AAD));
		buf_put_raw(&aad, in.data + 8, 32);
		ok = aad.err == 0 && barrier_decrypt(b, aad.data, aad.len, in.data + 8 + 32 + 4,
						     in.len - 8 - 32 - 4, &sk) == 0 &&
		     sk.len == 32;
	}
	if (ok) {
		struct channel_identity *id = secmem_alloc(sizeof *id);
		if (id == NULL)
			die("out of memory");
		memcpy(id->sk, sk.data, 32);
		channel_identity_derive(id);
		ok = memcmp(id->pk, in.data + 8, 32) == 0;
		if (ok)
			print_hex(name, id->sk, 32);
		secmem_free(id);
	}
	buf_free(&in);
	buf_free(&aad);
	buf_free(&sk);
	return ok;
}

static int cmd_keys(bool join_answer, const char *path, int nid, char **ids)
{
	struct buf in;
	buf_init(&in);
	const uint8_t *sealed;
	size_t sealed_len, pt_len = 0;
	if (read_path(path, &in) != 0 || locate_keyring(&in, join_answer, &sealed, &sealed_len) != 0)
		die("cannot read a sealed keyring from the file given");

	uint8_t *shares = secmem_alloc(SHAMIR_MAX_SHARES * SHAMIR_SHARE_LEN);
	uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	uint8_t *cluster = secmem_alloc(CHANNEL_KEY_LEN);
	struct barrier *b = NULL;
	if (shares == NULL || root == NULL || cluster == NULL || barrier_new(&b) != 0)
		die("out of memory");
	unsigned n = read_shares(shares, SHAMIR_MAX_SHARES);
	if (n == 0 || shamir_combine(shares, n, root) != 0 ||
	    barrier_unseal(b, root, sealed, sealed_len) != 0)
		die("the shares given do not open the keyring");
	uint8_t *pt = keyring_plain(sealed, sealed_len, root, &pt_len);
	uint32_t newest = 0; /* the cluster key a node offers first */
	if (pt == NULL || barrier_cluster_key(b, &newest, cluster) != 0)
		die("cannot decrypt the keyring");

	print_shares(shares, n);
	print_hex("root", root, BARRIER_ROOT_KEY_LEN);
	bool ok = print_terms(b, sealed[3], pt, pt_len);
	print_hex("cluster", cluster, CHANNEL_KEY_LEN);
	for (int i = 0; i < nid; i++) {
		char name[32];
		snprintf(name, sizeof name, "identity%d.sk", i + 1);
		if (!print_identity(b, name, ids[i]))
			die("an identity file does not open with the keyring or does not match its "
			    "public key: update keyprobe.c");
	}
	fflush(stdout);

	secmem_free(pt);
	secmem_free(cluster);
	secmem_free(root);
	secmem_free(shares);
	barrier_free(b);
	buf_free(&in);
	if (!ok)
		die("subkey derivation differs from the barrier's: update keyprobe.c");
	return 0;
}

/* ---- find / encode ---- */

struct pattern {
	char name[48];
	const char *encoding;
	uint8_t bytes[2 * MAX_PATTERN_LEN];
	size_t len;
	bool found; /* in the current file */
};

struct patterns {
	struct pattern *p; /* secure memory: these are keys */
	size_t n;
	size_t max_len;
	uint8_t filter[1u << 13]; /* bit per 16-bit hash of the first 4 bytes */
};

static uint32_t first4_hash(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return (v * 2654435761u) >> 16;
}

static void pattern_add(struct patterns *ps, const char *name, const char *enc, const void *b,
			size_t len)
{
	if (ps->n == MAX_PATTERNS || len < 8 || len > sizeof ps->p[0].bytes)
		die("too many or bad patterns");
	struct pattern *p = &ps->p[ps->n++];
	snprintf(p->name, sizeof p->name, "%s", name);
	p->encoding = enc;
	memcpy(p->bytes, b, len);
	p->len = len;
	if (len > ps->max_len)
		ps->max_len = len;
	uint32_t h = first4_hash(p->bytes);
	ps->filter[h >> 3] |= (uint8_t)(1u << (h & 7));
}

/* Adds RAW and its text encodings. Base64 covers the whole value as it
 * would be printed on its own (the share text of the unseal files). */
static void pattern_add_all(struct patterns *ps, const char *name, const uint8_t *raw, size_t len)
{
	char text[2 * MAX_PATTERN_LEN + 1];
	pattern_add(ps, name, "raw", raw, len);
	sodium_bin2hex(text, sizeof text, raw, len);
	pattern_add(ps, name, "hex", text, 2 * len);
	for (size_t i = 0; i < 2 * len; i++)
		if (text[i] >= 'a' && text[i] <= 'f')
			text[i] = (char)(text[i] - 'a' + 'A');
	pattern_add(ps, name, "HEX", text, 2 * len);
	sodium_bin2base64(text, sizeof text, raw, len, sodium_base64_VARIANT_ORIGINAL);
	/* Without the '=' padding, which a log line might drop. */
	pattern_add(ps, name, "base64", text, strcspn(text, "="));
	sodium_memzero(text, sizeof text);
}

/* "name hex" lines from stdin. */
static void patterns_read(struct patterns *ps)
{
	struct buf in;
	buf_init(&in);
	if (read_all(STDIN_FILENO, &in) != 0 || buf_reserve(&in, 1) != 0)
		die("cannot read patterns on stdin");
	in.data[in.len] = '\0';
	uint8_t *raw = secmem_alloc(MAX_PATTERN_LEN);
	if (raw == NULL)
		die("out of memory");
	char *save = NULL;
	for (char *line = strtok_r((char *)in.data, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');
		size_t raw_len = 0;
		if (sp == NULL)
			continue;
		*sp = '\0';
		if (sodium_hex2bin(raw, MAX_PATTERN_LEN, sp + 1, strlen(sp + 1), NULL, &raw_len,
				   NULL) != 0 ||
		    raw_len < 8)
			die("bad pattern line (want: name hex)");
		pattern_add_all(ps, line, raw, raw_len);
	}
	secmem_free(raw);
	buf_free(&in);
	if (ps->n == 0)
		die("no patterns on stdin");
}

/* Checks every position of DATA[0..scan) (DATA has LEN bytes). */
static int scan(struct patterns *ps, const char *file, const uint8_t *data, size_t scan_len,
		size_t len, uint64_t base)
{
	int found = 0;
	for (size_t i = 0; i < scan_len && i + 4 <= len; i++) {
		uint32_t h = first4_hash(data + i);
		if (!(ps->filter[h >> 3] & (1u << (h & 7))))
			continue;
		for (size_t k = 0; k < ps->n; k++) {
			struct pattern *p = &ps->p[k];
			if (p->found || i + p->len > len || memcmp(data + i, p->bytes, p->len) != 0)
				continue;
			p->found = true;
			found = 1;
			printf("FOUND %s %s %s %llu\n", p->name, p->encoding, file,
			       (unsigned long long)(base + i));
		}
	}
	return found;
}

/* Scans LEN bytes of FD from START (pread), or the whole stream when LEN is
 * UINT64_MAX (read: pipes work). A pattern across a chunk boundary is found
 * because the last max_len - 1 bytes are carried over. Returns 1 if
 * something was found, 0 if not, -1 on error. */
static int find_range(struct patterns *ps, const char *file, int fd, uint64_t start, uint64_t len)
{
	bool stream = len == UINT64_MAX;
	size_t keep = ps->max_len - 1, have = 0;
	uint8_t *data = malloc(CHUNK + keep);
	uint64_t base = start, left = len;
	int found = 0;
	if (data == NULL)
		die("out of memory");
	for (;;) {
		size_t want = left < CHUNK ? (size_t)left : CHUNK;
		ssize_t n = want == 0 ? 0
			    : stream ? read(fd, data + have, want)
				     : pread(fd, data + have, want, (off_t)(base + have));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "keyprobe: %s: %s\n", file, strerror(errno));
			found = -1;
			break;
		}
		if (!stream)
			left -= (uint64_t)n;
		have += (size_t)n;
		bool eof = n == 0;
		size_t scan_len = eof ? have : (have > keep ? have - keep : 0);
		found |= scan(ps, file, data, scan_len, have, base);
		if (eof)
			break;
		memmove(data, data + scan_len, have - scan_len);
		base += scan_len;
		have -= scan_len;
	}
	/* The file may be a core dump: whatever matched stays private. */
	sodium_memzero(data, CHUNK + keep);
	free(data);
	return found;
}

/* Scans the file bytes of every PT_LOAD segment of the ELF core FD. */
static int find_in_core_memory(struct patterns *ps, const char *file, int fd)
{
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_type != ET_CORE || eh.e_phentsize != sizeof(Elf64_Phdr)) {
		fprintf(stderr, "keyprobe: %s: not a 64-bit ELF core\n", file);
		return -1;
	}
	int found = 0;
	for (unsigned i = 0; i < eh.e_phnum && found >= 0; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + i * sizeof ph)) != (ssize_t)sizeof ph) {
			fprintf(stderr, "keyprobe: %s: short program header\n", file);
			return -1;
		}
		if (ph.p_type == PT_LOAD && ph.p_filesz > 0) {
			int r = find_range(ps, file, fd, ph.p_offset, ph.p_filesz);
			found = r < 0 ? r : found | r;
		}
	}
	return found;
}

static int find_in(struct patterns *ps, const char *file, bool memory_only)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "keyprobe: %s: %s\n", file, strerror(errno));
		return -1;
	}
	for (size_t k = 0; k < ps->n; k++)
		ps->p[k].found = false;
	int found = memory_only ? find_in_core_memory(ps, file, fd)
				: find_range(ps, file, fd, 0, UINT64_MAX);
	close(fd);
	return found;
}

static struct patterns *patterns_new(void)
{
	struct patterns *ps = secmem_alloc(sizeof *ps);
	if (ps == NULL || (ps->p = secmem_alloc(MAX_PATTERNS * sizeof *ps->p)) == NULL)
		die("out of memory");
	patterns_read(ps);
	return ps;
}

static void patterns_free(struct patterns *ps)
{
	secmem_free(ps->p);
	secmem_free(ps);
}

static int cmd_find(bool memory_only, int nfiles, char **files)
{
	struct patterns *ps = patterns_new();
	int rv = 0;
	for (int i = 0; i < nfiles; i++) {
		int r = find_in(ps, files[i], memory_only);
		if (r < 0)
			rv = 2;
		else if (r > 0 && rv == 0)
			rv = 1;
	}
	fflush(stdout);
	patterns_free(ps);
	return rv;
}

static void write_filler(void)
{
	uint8_t junk[4096];
	randombytes_buf(junk, sizeof junk);
	fwrite(junk, 1, sizeof junk, stdout);
}

static int cmd_encode(void)
{
	struct patterns *ps = patterns_new();
	write_filler();
	for (size_t k = 0; k < ps->n; k++) {
		fwrite(ps->p[k].bytes, 1, ps->p[k].len, stdout);
		write_filler();
	}
	fflush(stdout);
	patterns_free(ps);
	return 0;
}

int main(int argc, char **argv)
{
	if (crypto_global_init(true) != 0)
		die("cannot initialise libsodium");
	if (argc >= 4 && argc % 2 == 0 && strcmp(argv[1], "keys") == 0 &&
	    (strcmp(argv[2], "--seal-file") == 0 || strcmp(argv[2], "--join-answer") == 0)) {
		char *ids[16];
		int nid = 0;
		for (int i = 4; i + 1 < argc && nid < 16; i += 2) {
			if (strcmp(argv[i], "--identity") != 0)
				die("expected --identity FILE");
			ids[nid++] = argv[i + 1];
		}
		return cmd_keys(strcmp(argv[2], "--join-answer") == 0, argv[3], nid, ids);
	}
	if (argc >= 4 && strcmp(argv[1], "find") == 0 && strcmp(argv[2], "--memory") == 0)
		return cmd_find(true, argc - 3, argv + 3);
	if (argc >= 3 && strcmp(argv[1], "find") == 0)
		return cmd_find(false, argc - 2, argv + 2);
	if (argc == 2 && strcmp(argv[1], "encode") == 0)
		return cmd_encode();
	fprintf(stderr, "usage: keyprobe keys --seal-file|--join-answer FILE [--identity FILE]... "
			"< shares\n"
			"       keyprobe find [--memory] FILE... < patterns\n"
			"       keyprobe encode < patterns\n");
	return 2;
}
