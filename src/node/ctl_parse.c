/* The .vault control files' write parsers (see ctl_parse.h). */
#include "node/ctl_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* isspace() in the C locale, without depending on the process's locale. */
static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

void ctl_parse_trim(const uint8_t **p, size_t *len)
{
	while (*len > 0 && is_space((*p)[*len - 1]))
		(*len)--;
	while (*len > 0 && is_space(**p)) {
		(*p)++;
		(*len)--;
	}
}

bool ctl_parse_is_reset(const uint8_t *in, size_t len)
{
	ctl_parse_trim(&in, &len);
	return len == 5 && memcmp(in, "reset", 5) == 0;
}

/* 1 and *RET set if TOK is "KEY=number" with number <= 255; 0 if TOK is not
 * about KEY; -EINVAL if its value is bad. */
static int parse_uint_field(const char *tok, const char *key, unsigned *ret)
{
	size_t klen = strlen(key);
	if (strncmp(tok, key, klen) != 0 || tok[klen] != '=')
		return 0;
	char *end;
	errno = 0;
	unsigned long v = strtoul(tok + klen + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == tok + klen + 1 || v > 255)
		return -EINVAL;
	*ret = (unsigned)v;
	return 1;
}

int ctl_parse_init(const uint8_t *in, size_t len, unsigned *ret_shares,
		   unsigned *ret_threshold)
{
	char text[CTL_PARSE_INIT_MAX + 1];
	/* A NUL would end the text early and drop the fields after it. */
	if (len > CTL_PARSE_INIT_MAX || (len > 0 && memchr(in, '\0', len) != NULL))
		return -EINVAL;
	if (len > 0) /* IN may be NULL when empty */
		memcpy(text, in, len);
	text[len] = '\0';
	unsigned shares = CTL_PARSE_DEFAULT_SHARES;
	unsigned threshold = CTL_PARSE_DEFAULT_THRESHOLD;
	bool threshold_given = false;
	char *save = NULL;
	static const char sep[] = " \t\r\n";
	for (char *tok = strtok_r(text, sep, &save); tok; tok = strtok_r(NULL, sep, &save)) {
		int rv = parse_uint_field(tok, "shares", &shares);
		if (rv == 0) {
			rv = parse_uint_field(tok, "threshold", &threshold);
			threshold_given = rv == 1;
		}
		if (rv != 1)
			return -EINVAL;
	}
	if (!threshold_given && shares < CTL_PARSE_DEFAULT_THRESHOLD)
		threshold = shares;
	if (shares == 0 || threshold == 0 || threshold > shares)
		return -EINVAL;
	if (shares > 1 && threshold < 2)
		return -EINVAL; /* one share alone must not open a multi-share vault */
	*ret_shares = shares;
	*ret_threshold = threshold;
	return 0;
}

int ctl_parse_join_addr(const uint8_t *in, size_t len, char *out, size_t out_len)
{
	static const char http[] = "http://", https[] = "https://";
	ctl_parse_trim(&in, &len);
	/* The cluster port speaks vaultfs's own encrypted protocol, not TLS:
	 * "https://" would promise what the join does not do. "http://" is
	 * kept because Vault users write it (Vault's leader_api_addr). */
	if (len >= sizeof https - 1 && memcmp(in, https, sizeof https - 1) == 0)
		return -EINVAL;
	if (len > sizeof http - 1 && memcmp(in, http, sizeof http - 1) == 0) {
		/* One scheme only: "http://http://h:1" keeps a '/' and fails. */
		in += sizeof http - 1;
		len -= sizeof http - 1;
	}
	if (len > 0 && in[len - 1] == '/')
		len--;
	if (len == 0 || len >= out_len || memchr(in, '/', len) || memchr(in, ':', len) == NULL)
		return -EINVAL;
	/* No address has these; they would end up in the log, the join file
	 * and the seal file, and the dial would fail later, less clearly. */
	for (size_t i = 0; i < len; i++)
		if (in[i] <= ' ' || in[i] == 0x7f)
			return -EINVAL;
	memcpy(out, in, len);
	out[len] = '\0';
	return 0;
}

int ctl_parse_node_id(const uint8_t *in, size_t len, char ret_id[CTL_PARSE_NODE_ID_MAX + 1])
{
	ctl_parse_trim(&in, &len);
	if (len == 0 || len > CTL_PARSE_NODE_ID_MAX || memchr(in, '\0', len) != NULL)
		return -EINVAL;
	memcpy(ret_id, in, len);
	ret_id[len] = '\0';
	return 0;
}
