/* Raft addresses; see raftaddr.h for the format. */
#include "raft/raftaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* The identity suffix: '#' and exactly RAFTADDR_ID_HEX hex digits at the
 * end. Returns a pointer to the '#', or NULL if there is none. */
static const char *raftaddr_id_suffix(const char *address, size_t len)
{
	if (len < RAFTADDR_ID_HEX + 1 || address[len - RAFTADDR_ID_HEX - 1] != '#')
		return NULL;
	const char *hex = address + len - RAFTADDR_ID_HEX;
	return strspn(hex, "0123456789abcdef") == RAFTADDR_ID_HEX ? hex - 1 : NULL;
}

static int raftaddr_port(const char *p, size_t len, int *ret)
{
	if (len == 0 || len > 5 || strspn(p, "0123456789") < len)
		return -EINVAL;
	long v = 0;
	for (size_t i = 0; i < len; i++)
		v = v * 10 + (p[i] - '0');
	if (v < 1 || v > 65535)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

/* "host:port" or "[v6]:port" in S..S+LEN. */
static int raftaddr_hostport(const char *s, size_t len, struct raftaddr *ret)
{
	const char *end = s + len, *h = s, *hend, *port;
	if (len > 0 && *s == '[') {
		h = s + 1;
		hend = memchr(h, ']', (size_t)(end - h));
		if (hend == NULL || hend + 1 >= end || hend[1] != ':')
			return -EINVAL;
		port = hend + 2;
	} else {
		hend = NULL;
		for (const char *p = s; p < end; p++)
			if (*p == ':')
				hend = p;
		if (hend == NULL || memchr(h, ':', (size_t)(hend - h)) != NULL)
			return -EINVAL; /* a bare IPv6 address must be bracketed */
		port = hend + 1;
	}
	size_t hlen = (size_t)(hend - h);
	if (hlen == 0 || hlen >= RAFTADDR_HOST_MAX || memchr(h, '\0', hlen) != NULL)
		return -EINVAL;
	if (raftaddr_port(port, (size_t)(end - port), &ret->port) != 0)
		return -EINVAL;
	memcpy(ret->host, h, hlen);
	ret->host[hlen] = '\0';
	return 0;
}

int raftaddr_parse(const char *address, struct raftaddr *ret)
{
	size_t len = strnlen(address, RAFTADDR_MAX + 1);
	if (len > RAFTADDR_MAX)
		return -EINVAL;
	struct raftaddr a = { .name = address };
	const char *end = address + len;
	const char *hash = raftaddr_id_suffix(address, len);
	if (hash != NULL) {
		if (sodium_hex2bin(a.id, sizeof a.id, hash + 1, RAFTADDR_ID_HEX, NULL, NULL,
				   NULL) != 0)
			return -EINVAL;
		a.has_id = true;
		end = hash;
	}
	const char *s = address;
	for (const char *p = address; p < end; p++)
		if (*p == '@')
			s = p + 1;
	a.name_len = s > address ? (size_t)(s - address - 1) : 0;
	int rv = raftaddr_hostport(s, (size_t)(end - s), &a);
	if (rv == 0)
		*ret = a;
	return rv;
}

int raftaddr_format(char *out, size_t out_len, const char *name, const char *hostport,
		    const uint8_t id[CHANNEL_ID_LEN])
{
	char hex[RAFTADDR_ID_HEX + 1];
	sodium_bin2hex(hex, sizeof hex, id, CHANNEL_ID_LEN);
	int n = snprintf(out, out_len, "%s@%s#%s", name, hostport, hex);
	return n < 0 || (size_t)n >= out_len || (size_t)n > RAFTADDR_MAX ? -ENAMETOOLONG : 0;
}

void raftaddr_show(const char *address, const char **ret_name, size_t *ret_name_len,
		   const char **ret_hostport, size_t *ret_hostport_len)
{
	size_t len = strlen(address);
	const char *hash = raftaddr_id_suffix(address, len);
	const char *end = hash != NULL ? hash : address + len;
	const char *at = NULL;
	for (const char *p = address; p < end; p++)
		if (*p == '@')
			at = p;
	*ret_name = address;
	*ret_name_len = at != NULL ? (size_t)(at - address) : 0;
	*ret_hostport = at != NULL ? at + 1 : address;
	*ret_hostport_len = (size_t)(end - *ret_hostport);
}

bool raftaddr_has_id(const char *address, const uint8_t id[CHANNEL_ID_LEN])
{
	const char *hash = raftaddr_id_suffix(address, strlen(address));
	if (hash == NULL)
		return false;
	char hex[RAFTADDR_ID_HEX + 1];
	sodium_bin2hex(hex, sizeof hex, id, CHANNEL_ID_LEN);
	return memcmp(hash + 1, hex, RAFTADDR_ID_HEX) == 0;
}

int raftaddr_host_port(const char *address, char host[RAFTADDR_HOST_MAX], int *ret_port)
{
	struct raftaddr a;
	int rv = raftaddr_parse(address, &a);
	if (rv != 0)
		return rv;
	memcpy(host, a.host, sizeof a.host);
	*ret_port = a.port;
	return 0;
}

int raftaddr_sockaddr(const char *host, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return -EINVAL;
}

void raftaddr_set_port(struct sockaddr *sa, int port)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}
