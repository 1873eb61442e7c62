/* Parsers for what root writes to the .vault control files (README,
 * "Control files"). Pure functions (no node, no I/O, no logging) so that they can be
 * unit tested and fuzzed alone; the callers in node_ctl.c and
 * node_cluster.c log and reply.
 *
 * Every input is the bytes of one write(): not NUL-terminated, any byte
 * possible. Out-parameters are written only on success. */
#ifndef VAULTFS_NODE_CTL_PARSE_H
#define VAULTFS_NODE_CTL_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* .vault/init with an empty write: Vault's defaults. */
#define CTL_PARSE_DEFAULT_SHARES 5u
#define CTL_PARSE_DEFAULT_THRESHOLD 3u
/* Longest .vault/init write accepted, in bytes. */
#define CTL_PARSE_INIT_MAX 255u
/* Longest node id, as the configuration file allows. */
#define CTL_PARSE_NODE_ID_MAX 64u

/* Narrows P/LEN to exclude leading and trailing ASCII whitespace (space,
 * \t, \n, \v, \f, \r), whatever the locale. */
void ctl_parse_trim(const uint8_t **p, size_t *len);

/* .vault/unseal: true if the write is "reset", whitespace around aside. */
bool ctl_parse_is_reset(const uint8_t *in, size_t len);

/* .vault/init: "shares=N threshold=T", in any order, separated by spaces,
 * tabs, CR or LF; a repeated field keeps its last value. Without threshold
 * T = min(N, 3); without shares N = 5. Returns 0, or -EINVAL when the input
 * is longer than CTL_PARSE_INIT_MAX or has a NUL byte, a token other than
 * these two fields or a value that is not a number <= 255, or when not
 * 1 <= T <= N, or T < 2 while N > 1 (one share alone must not open a
 * multi-share vault). */
int ctl_parse_init(const uint8_t *in, size_t len, unsigned *ret_shares,
		   unsigned *ret_threshold);

/* .vault/join: a member's cluster address, "host:port" with an optional
 * "http://" before and "/" after, whitespace around; a Raft address
 * "node_id@host:port" also does. Writes the address without scheme and
 * slash, NUL-terminated, to OUT. Returns 0, or -EINVAL when it starts with
 * "https://" (the cluster port speaks vaultfs's own encrypted protocol, not
 * TLS), or when the address is empty, does not fit in OUT_LEN bytes with its
 * NUL, has no ':', or has a '/', whitespace or a control byte (NUL and DEL
 * included). Host and port are checked when the address is dialled. */
int ctl_parse_join_addr(const uint8_t *in, size_t len, char *out, size_t out_len);

/* .vault/remove-peer: a node id, whitespace around. Writes it,
 * NUL-terminated, to RET_ID. Returns 0, or -EINVAL when it is empty, longer
 * than CTL_PARSE_NODE_ID_MAX or has a NUL byte. */
int ctl_parse_node_id(const uint8_t *in, size_t len, char ret_id[CTL_PARSE_NODE_ID_MAX + 1]);

#endif
