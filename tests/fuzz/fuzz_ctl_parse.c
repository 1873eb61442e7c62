/* The control files' write parsers (node/ctl_parse.h): what root writes to
 * .vault/init, unseal, join and remove-peer. Every input goes to every
 * parser, as the same bytes could be written to any of those files.
 * Invariants: what ctl_parse.h promises; an accepted init gives a vault
 * that Shamir can split and that one share alone does not open, with the
 * defaults where a field is missing; an accepted address is NUL-terminated
 * in its buffer, re-parses to itself and is the input without its trimmed
 * whitespace, one scheme and one slash; a node id is the trimmed input;
 * and a refusal leaves every output untouched. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "node/ctl_parse.h"

/* As node_join_start's buffer. */
#define JOIN_OUT_LEN 301u
#define SENTINEL 0xa5

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool has(const uint8_t *p, size_t len, const char *needle)
{
	return memmem(p, len, needle, strlen(needle)) != NULL;
}

static bool all_sentinel(const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		if (b[i] != SENTINEL)
			return false;
	return true;
}

/* Returns the trimmed span after checking it. */
static void check_trim(const uint8_t *data, size_t size, const uint8_t **ret_p, size_t *ret_len)
{
	const uint8_t *p = data;
	size_t len = size;
	ctl_parse_trim(&p, &len);
	FUZZ_CHECK(p >= data && len <= size && (size_t)(p - data) + len <= size);
	for (const uint8_t *q = data; q < p; q++)
		FUZZ_CHECK(is_space(*q));
	for (const uint8_t *q = p + len; q < data + size; q++)
		FUZZ_CHECK(is_space(*q));
	FUZZ_CHECK(len == 0 || (!is_space(p[0]) && !is_space(p[len - 1])));
	const uint8_t *again = p;
	size_t again_len = len;
	ctl_parse_trim(&again, &again_len);
	FUZZ_CHECK(again == p && again_len == len);
	*ret_p = p;
	*ret_len = len;
}

static void check_init(const uint8_t *data, size_t size)
{
	unsigned shares = 0xa5a5a5a5u, threshold = 0xa5a5a5a5u;
	int rv = ctl_parse_init(data, size, &shares, &threshold);
	if (rv != 0) {
		FUZZ_CHECK(rv == -EINVAL);
		FUZZ_CHECK(shares == 0xa5a5a5a5u && threshold == 0xa5a5a5a5u);
		return;
	}
	FUZZ_CHECK(size <= CTL_PARSE_INIT_MAX);
	FUZZ_CHECK(memchr(data, '\0', size) == NULL);
	FUZZ_CHECK(1 <= threshold && threshold <= shares && shares <= 255);
	FUZZ_CHECK(shares == 1 || threshold >= 2);
	if (!has(data, size, "shares"))
		FUZZ_CHECK(shares == CTL_PARSE_DEFAULT_SHARES);
	if (!has(data, size, "threshold"))
		FUZZ_CHECK(threshold == (shares < CTL_PARSE_DEFAULT_THRESHOLD
						 ? shares
						 : CTL_PARSE_DEFAULT_THRESHOLD));

	/* The canonical forms, in both orders, say the same. */
	char text[64];
	unsigned s2 = 0, t2 = 0;
	int n = snprintf(text, sizeof(text), "shares=%u threshold=%u\n", shares, threshold);
	FUZZ_CHECK(ctl_parse_init((const uint8_t *)text, (size_t)n, &s2, &t2) == 0);
	FUZZ_CHECK(s2 == shares && t2 == threshold);
	n = snprintf(text, sizeof(text), "threshold=%u shares=%u", threshold, shares);
	FUZZ_CHECK(ctl_parse_init((const uint8_t *)text, (size_t)n, &s2, &t2) == 0);
	FUZZ_CHECK(s2 == shares && t2 == threshold);
}

static void check_is_reset(const uint8_t *trimmed, size_t trimmed_len, const uint8_t *data,
			   size_t size)
{
	bool want = trimmed_len == 5 && memcmp(trimmed, "reset", 5) == 0;
	FUZZ_CHECK(ctl_parse_is_reset(data, size) == want);
}

/* Parses into an exactly sized heap buffer, so that ASan sees any write
 * past OUT_LEN; returns the buffer (caller frees) and the result. */
static char *join_parse(const uint8_t *in, size_t len, size_t out_len, int *ret_rv)
{
	char *out = malloc(out_len > 0 ? out_len : 1);
	FUZZ_CHECK(out != NULL);
	memset(out, SENTINEL, out_len > 0 ? out_len : 1);
	*ret_rv = ctl_parse_join_addr(in, len, out, out_len);
	FUZZ_CHECK(*ret_rv == 0 || *ret_rv == -EINVAL);
	if (*ret_rv != 0)
		FUZZ_CHECK(all_sentinel(out, out_len > 0 ? out_len : 1));
	return out;
}

static void check_join(const uint8_t *trimmed, size_t trimmed_len, const uint8_t *data,
		       size_t size)
{
	int rv;
	char *out = join_parse(data, size, JOIN_OUT_LEN, &rv);
	if (rv != 0) {
		free(out);
		return;
	}
	const char *nul = memchr(out, '\0', JOIN_OUT_LEN);
	FUZZ_CHECK(nul != NULL);
	size_t len = (size_t)(nul - out);
	FUZZ_CHECK(len >= 1 && memchr(out, ':', len) != NULL && memchr(out, '/', len) == NULL);
	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)out[i];
		FUZZ_CHECK(c > ' ' && c != 0x7f); /* no whitespace or control byte */
	}

	/* The input is the address with at most one scheme, never "https://"
	 * (the cluster port does not speak TLS), and one slash. */
	FUZZ_CHECK(trimmed_len < 8 || memcmp(trimmed, "https://", 8) != 0);
	size_t at = 0;
	if (trimmed_len > 7 && memcmp(trimmed, "http://", 7) == 0)
		at = 7;
	FUZZ_CHECK(trimmed_len >= at + len && memcmp(trimmed + at, out, len) == 0);
	FUZZ_CHECK(trimmed_len == at + len ||
		   (trimmed_len == at + len + 1 && trimmed[trimmed_len - 1] == '/'));

	/* It re-parses to itself, and needs exactly len + 1 bytes. */
	int rv2;
	char *again = join_parse((const uint8_t *)out, len, len + 1, &rv2);
	FUZZ_CHECK(rv2 == 0 && strcmp(again, out) == 0);
	free(again);
	char *tight = join_parse(data, size, len, &rv2);
	FUZZ_CHECK(rv2 == -EINVAL);
	free(tight);
	free(out);
}

static void check_node_id(const uint8_t *trimmed, size_t trimmed_len, const uint8_t *data,
			  size_t size)
{
	char id[CTL_PARSE_NODE_ID_MAX + 1];
	memset(id, SENTINEL, sizeof(id));
	int rv = ctl_parse_node_id(data, size, id);
	bool want = trimmed_len >= 1 && trimmed_len <= CTL_PARSE_NODE_ID_MAX &&
		    memchr(trimmed, '\0', trimmed_len) == NULL;
	if (!want) {
		FUZZ_CHECK(rv == -EINVAL && all_sentinel(id, sizeof(id)));
		return;
	}
	FUZZ_CHECK(rv == 0);
	FUZZ_CHECK(strlen(id) == trimmed_len && memcmp(id, trimmed, trimmed_len) == 0);
}

/* What an operator writes to those files. */
static const char *const seeds[][2] = {
	{ "init_newline", "\n" },
	{ "init_default", "shares=5 threshold=3\n" },
	{ "init_reversed", "threshold=2 shares=4" },
	{ "init_one", "shares=1\n" },
	{ "init_max", "shares=255\tthreshold=255\r\n" },
	{ "init_threshold_one", "shares=5 threshold=1" },
	{ "unseal_reset", "reset\n" },
	{ "join_http", "http://127.0.0.1:8201\n" },
	{ "join_https_slash", "https://vault-1.example.com:8201/" }, /* refused */
	{ "join_raft_addr", "node1@127.0.0.1:8201" },
	{ "join_ipv6", " [::1]:8201\n" },
	{ "remove_peer", "node2\n" },
};

static void write_seeds(const char *dir)
{
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		fuzz_write_seed(dir, seeds[i][0], seeds[i][1], strlen(seeds[i][1]));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *trimmed;
	size_t trimmed_len;
	check_trim(data, size, &trimmed, &trimmed_len);
	check_is_reset(trimmed, trimmed_len, data, size);
	check_init(data, size);
	check_join(trimmed, trimmed_len, data, size);
	check_node_id(trimmed, trimmed_len, data, size);
	return 0;
}
