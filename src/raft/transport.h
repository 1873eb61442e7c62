/* Cluster transport: libuv TCP between nodes, every connection an
 * authenticated encrypted channel (crypto/channel.h) keyed from the keyring.
 *
 * Carries two things over the same connections:
 *  - Raft messages, through the struct raftio_transport handed to raftio;
 *  - small request/response RPCs between nodes' node modules (forwarded
 *    writes, read index, step-down, join, remove-peer).
 * It also answers unauthenticated join-info requests (magic "VFSJ") with
 * whatever the node provides, so that a new node can fetch the sealed
 * keyring before it has any key (Vault's raft join).
 *
 * Addresses are Raft addresses (raft/raftaddr.h); the transport dials
 * host:port and, when the address names an identity, accepts only a
 * responder that proves it (a dial address without one, as joining uses,
 * accepts any holder of the cluster key). Every inbound message is
 * attributed to the initiator's proven identity through the identify
 * callback, at the moment it arrives, never to anything the initiator
 * claims: Raft messages from an identity that is not a member are dropped,
 * RPCs from one arrive with peer_id 0, and none of its messages may exceed
 * 64 KiB (it loses the connection). Outbound connections are made on
 * demand, one per peer, and
 * re-made with exponential backoff (50 ms .. 2 s) after a failure. A peer
 * that fails the handshake, or sends anything malformed, is disconnected
 * without affecting other connections. Runs entirely on the loop thread.
 *
 * Every handshake asks the cluster_key callback for the key of the term it
 * agrees on (the newest both ends hold); the transport keeps no key. */
#ifndef VAULTFS_RAFT_TRANSPORT_H
#define VAULTFS_RAFT_TRANSPORT_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "crypto/channel.h"
#include "lib/buf.h"
#include "raft/raftio.h"

#define TRANSPORT_MAX_RPC (2u * 1024u * 1024u) /* largest RPC payload */

struct transport;

/* An RPC that arrived; owned by the handler until transport_rpc_reply. */
struct transport_rpc_req {
	uint16_t type;
	uint64_t peer_id; /* the sender's member id; 0: not a member */
	uint8_t peer_key[CHANNEL_ID_LEN]; /* the sender's proven identity */
	/* The connection's handshake agreed on a term older than this node's
	 * newest when the request arrived (or this node has no key any more):
	 * the sender's keyring lacks the latest rotation, as a removed node's
	 * does. */
	bool stale_key;
	/* The version of the payload's format, which the answer must be in
	 * too (transport_config.rpc_version of the sender; 0 from a previous
	 * release, which carries none). */
	uint8_t version;
	const uint8_t *payload;
	size_t len;
	void *priv; /* transport's */
};

typedef void (*transport_rpc_handler)(void *ctx, struct transport_rpc_req *req);
/* Fills OUT with the join-info answer in VERSION's format (the highest the
 * requester reads, at most TRANSPORT_JOIN_VERSION; 0 from a previous
 * release, which names none); returns 0 or -errno (the joiner then gets
 * that error). */
typedef int (*transport_join_provider)(void *ctx, unsigned version, struct buf *out);
/* Told that the peer at ADDRESS is gone: a working connection to it closed
 * and redialling it at once was refused, so no process listens there. A
 * peer behind a partition, or merely paused, is never reported. */
typedef void (*transport_peer_gone)(void *ctx, const char *address);
/* Which member proves identity KEY: 0 with its Raft id and address (valid
 * until the next loop turn), or -ENOENT if none. Called for every inbound
 * message, so it must be cheap. */
typedef int (*transport_identify)(void *ctx, const uint8_t key[CHANNEL_ID_LEN], uint64_t *ret_id,
				  const char **ret_address);

struct transport_config {
	uv_loop_t *loop;
	/* Cluster keys by term, called with ctx. Asked on every handshake and
	 * on every inbound RPC (term 0, for stale_key), so it must be cheap. */
	channel_key_fn cluster_key;
	const struct channel_identity *identity; /* this node's; copied */
	transport_identify identify;
	transport_rpc_handler rpc_handler;
	transport_join_provider join_provider;
	transport_peer_gone peer_gone; /* optional */
	void *ctx; /* passed to all callbacks */
	/* Deadline for an inbound connection to finish its handshake and for
	 * an outbound one to connect and finish it; 0 means 5000 ms. */
	unsigned handshake_timeout_ms;
	/* The version of the payloads of the RPCs this node sends, carried in
	 * the top byte of each request's id (TRANSPORT_RPC_VERSION_SHIFT): a
	 * previous release numbers its requests from 1, so its version is 0,
	 * and echoes the id of ours unread. */
	uint8_t rpc_version;
};
#define TRANSPORT_RPC_VERSION_SHIFT 56

/* Creates the transport. It listens once raftio starts it (with this node's
 * id and address). Returns 0 or -errno. */
int transport_new(struct transport **ret, const struct transport_config *cfg);

/* The vtable to pass to raftio_init. raftio's close closes and frees the
 * transport; a transport never handed to raftio is freed with
 * transport_free_unused. */
struct raftio_transport *transport_raftio(struct transport *t);
void transport_free_unused(struct transport *t);

/* Sends an RPC to ADDRESS ("node_id@host:port" or "host:port") and calls
 * CB exactly once on the loop thread: with status 0 and the response
 * payload (valid only during the call), with the responder's -errno, or
 * with -ETIMEDOUT after TIMEOUT_MS / -ECONNREFUSED-like errors /
 * -ESHUTDOWN when the transport closes first. Returns 0 or -errno (then CB
 * is not called). */
typedef void (*transport_rpc_cb)(void *arg, int status, const uint8_t *resp, size_t len);
int transport_rpc(struct transport *t, const char *address, uint16_t type, const void *payload,
		  size_t len, unsigned timeout_ms, transport_rpc_cb cb, void *arg);

/* transport_rpc in VERSION (at most transport_config.rpc_version): a relay
 * speaks for its asker in the asker's version. */
int transport_rpc_in(struct transport *t, uint8_t version, const char *address, uint16_t type,
		     const void *payload, size_t len, unsigned timeout_ms, transport_rpc_cb cb,
		     void *arg);

/* Answers an incoming RPC (status 0 or -errno) and frees REQ. Safe if the
 * connection is gone (the answer is dropped). A peer that leaves more than
 * 32 MiB of answers unread loses the connection instead. */
void transport_rpc_reply(struct transport_rpc_req *req, int status, const void *payload,
			 size_t len);

/* Frees REQ without answering: the caller sees a timeout (failure
 * injection in tests: a reply lost in the network). */
void transport_rpc_drop(struct transport_rpc_req *req);

/* Without any key: asks the node at ADDRESS ("host:port", or
 * "node_id@host:port") for its join info and calls CB once with status 0
 * and the payload, or -errno (-ECONNREFUSED etc., -ETIMEDOUT after
 * TIMEOUT_MS, -EBADMSG for a malformed answer, the provider's error).
 * Independent of any transport instance. On success *RET_FETCH identifies
 * the request until CB runs; transport_join_cancel makes sure CB is never
 * called (the handles close in the background). Returns 0 or -errno. */
/* A join-info request: these four bytes, then a u8 version, the highest
 * join-info version the requester reads. A previous release sends the
 * magic alone (version 0) and, as a responder, ignores the byte after it,
 * answering in version 0. */
#define TRANSPORT_JOIN_MAGIC "VFSJ"
#define TRANSPORT_JOIN_VERSION 1u
struct transport_join_fetch;
int transport_join_fetch(uv_loop_t *loop, const char *address, unsigned timeout_ms,
			 transport_rpc_cb cb, void *arg, struct transport_join_fetch **ret_fetch);
void transport_join_cancel(struct transport_join_fetch *f);

#endif
