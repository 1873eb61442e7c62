/* Raft addresses: what libraft's configuration keeps for each member,
 *   "node_id@host:port#identity"
 * the member's name, where its cluster port listens, and its identity (the
 * public key its channels prove, crypto/channel.h, as 64 lower-case hex
 * digits). Being part of the configuration, a member's identity is
 * replicated with it: it enters the cluster when the member is added and
 * leaves when it is removed. host may be a bracketed IPv6 address. Dial
 * addresses without a name or an identity ("host:port") are parsed too:
 * the join address an operator gives is one. */
#ifndef VAULTFS_RAFT_RAFTADDR_H
#define VAULTFS_RAFT_RAFTADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "crypto/channel.h"

#define RAFTADDR_MAX 512u   /* longest address, without its NUL */
#define RAFTADDR_HOST_MAX 256u
#define RAFTADDR_ID_HEX (2u * CHANNEL_ID_LEN)

struct raftaddr {
	const char *name; /* points into the parsed string; not terminated */
	size_t name_len;  /* 0: no "node_id@" */
	char host[RAFTADDR_HOST_MAX];
	int port;
	bool has_id;
	uint8_t id[CHANNEL_ID_LEN];
};

/* Splits ADDRESS. Returns 0 or -EINVAL (too long, no port, port not in
 * 1..65535, an unbracketed IPv6 host, a malformed identity). */
int raftaddr_parse(const char *address, struct raftaddr *ret);

/* Writes "NAME@HOSTPORT#hex(ID)" to OUT. Returns 0 or -ENAMETOOLONG. */
int raftaddr_format(char *out, size_t out_len, const char *name, const char *hostport,
		    const uint8_t id[CHANNEL_ID_LEN]);

/* What to show an operator: the "host:port" part of ADDRESS (pointer and
 * length into ADDRESS), and its name (empty if none). */
void raftaddr_show(const char *address, const char **ret_name, size_t *ret_name_len,
		   const char **ret_hostport, size_t *ret_hostport_len);

/* True if ADDRESS carries identity ID. */
bool raftaddr_has_id(const char *address, const uint8_t id[CHANNEL_ID_LEN]);

/* The host and port of ADDRESS: 0 or -EINVAL, as raftaddr_parse. */
int raftaddr_host_port(const char *address, char host[RAFTADDR_HOST_MAX], int *ret_port);
/* HOST as a numeric IPv4 or IPv6 address with PORT: 0, or -EINVAL if it
 * is a name (to be resolved). */
int raftaddr_sockaddr(const char *host, int port, struct sockaddr_storage *ss);
/* Sets the port of a resolved IPv4 or IPv6 address. */
void raftaddr_set_port(struct sockaddr *sa, int port);

#endif
