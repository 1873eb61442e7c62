/* Shared between transport.c (the raft_io methods, RPCs, the listener and
 * the API), transport_conn.c (a connection's life), transport_wire.c (the
 * protocol on a connection) and transport_peer.c (outbound peers and
 * dialing), and their unit tests, only; not an interface for anything else
 * in the tree. transport.h is the module's interface. The wire format and
 * the ownership rules are at the top of transport.c. */
#ifndef VAULTFS_RAFT_TRANSPORT_INTERNAL_H
#define VAULTFS_RAFT_TRANSPORT_INTERNAL_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "crypto/channel.h"
#include "lib/buf.h"
#include "raft/raftaddr.h"
#include "raft/raftio.h"
#include "raft/transport.h"

#define HANDSHAKE_TIMEOUT_MS 5000u
#define MAX_UNAUTH 64u	     /* concurrent unauthenticated inbound connections */
#define MAX_UNAUTH_PER_SOURCE 8u /* of them from one source (struct source) */
/* Join-info answers being written, apart from the handshakes: see
 * join_request (transport_wire.c). */
#define MAX_JOIN 16u
#define MAX_JOIN_PER_SOURCE 4u
/* Anyone who can reach the port can make us log (a dropped connection, a
 * join-info request): at most PEER_LOG_BURST such lines per
 * PEER_LOG_WINDOW_MS, counted apart for join-info requests and for the
 * rest, so that a flood of one kind cannot hide the other. */
#define PEER_LOG_BURST 20u
#define PEER_LOG_WINDOW_MS 10000u
#define QUEUE_MAX_ITEMS 256u /* messages queued while connecting */
#define QUEUE_MAX_BYTES (32u * 1024u * 1024u)
#define WRITE_QUEUE_MAX (32u * 1024u * 1024u) /* unwritten bytes on a live connection */
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 2000u
#define PROBE_ATTEMPTS 3u /* redials of a peer whose working connection closed */
#define MAX_MESSAGE (1024u * 1024u * 1024u) /* reassembled from fragments */
/* The largest message (kind byte and body) an identity that is no member
 * may send. The node serves such a sender only JOIN and MEMBERS RPCs, whose
 * requests are a few hundred bytes (an id and a Raft address), and drops
 * anything else it sends; 64 KiB leaves ample room and bounds what any
 * holder of the cluster key can make a node buffer per connection. */
#define NONMEMBER_MESSAGE_MAX (64u * 1024u)
/* The largest answer to one of our RPCs: kind, u64 id, i32 status, payload. */
#define RPC_RESP_MAX (1u + 8u + 4u + TRANSPORT_MAX_RPC)
_Static_assert(NONMEMBER_MESSAGE_MAX == 64u * 1024u, "transport_wire_step_error says 64 KiB");
_Static_assert(WRITE_QUEUE_MAX == 32u * 1024u * 1024u, "transport_rpc_reply says 32 MiB");
#define MAX_ADDRESS RAFTADDR_MAX
#define FRAME_HEADER_LEN 4u

enum frame_kind { K_ADDRESS = 0, K_RAFT = 1, K_RPC_REQ = 2, K_RPC_RESP = 3, K_FRAGMENT = 4 };

enum conn_state {
	C_IN_MAGIC,	  /* inbound: waiting for "VFSC"/"VFSJ" */
	C_IN_HELLO,	  /* inbound: waiting for the full HELLO */
	C_IN_AUTH,	  /* inbound: REPLY sent, waiting for AUTH */
	C_IN_ADDRESS,	  /* inbound: authenticated, waiting for the address frame */
	C_JOIN,		  /* inbound: answering a join-info request */
	C_OUT_CONNECTING, /* outbound: resolving or connecting */
	C_OUT_REPLY,	  /* outbound: HELLO sent, waiting for REPLY */
	C_READY,	  /* frames both ways */
};

enum peer_state { P_IDLE, P_CONNECTING, P_READY, P_BACKOFF };

struct transport;
struct peer;

/* Where an inbound connection comes from, for the per-source limits: an
 * IPv4 address, or an IPv6 /64 (a single host is commonly given a whole
 * /64: counting IPv6 addresses one by one would give it 2^64 budgets). An
 * IPv4-mapped IPv6 address counts as the IPv4 address. */
struct source {
	uint8_t family; /* 4, 6, or 0: unknown (all such count as one source) */
	uint8_t addr[8];
};

/* The peer-caused log lines of one kind in the current window. */
struct log_budget {
	uint64_t window_start; /* uv_now when the current window began */
	unsigned logged;       /* lines logged in it */
	unsigned suppressed;   /* and left out */
};

struct resolve {
	uv_getaddrinfo_t req;
	struct conn *conn; /* NULL once the connection gave up waiting */
	int port;
};

struct conn {
	struct conn *next, *prev;
	struct transport *t; /* NULL once the handles are closed */
	struct peer *peer;   /* outbound only */
	uv_tcp_t tcp;
	uv_timer_t timer; /* handshake deadline */
	uv_connect_t connect;
	struct resolve *resolving;
	enum conn_state state;
	bool inbound, closing;
	bool unauth;  /* counted in n_unauth: inbound, handshake not done */
	bool joining; /* counted in n_join: writing a join-info answer */
	bool frame_admitted; /* the frame at the head of rx passed transport_wire_frame_admit */
	struct source src;   /* inbound */
	int handles; /* open uv handles (tcp, timer) */
	int refs;    /* incoming RPC requests not yet answered */
	struct channel *ch;
	struct buf rx;	 /* received, not yet processed */
	struct buf frag; /* fragments of a message being reassembled */
	uint64_t peer_id;   /* inbound: the member proving the identity, 0 if none */
	bool was_member;    /* inbound: peer_id was non-zero once */
	bool told_not_member; /* inbound: logged that it is no member */
	char *peer_address; /* inbound: what the initiator announced (for logs) */
};

struct qitem { /* plaintext waiting for a connection */
	struct qitem *next;
	uint8_t *pt;
	size_t len;
	struct raft_io_send *req; /* raft sends only */
	raft_io_send_cb cb;
};

struct peer {
	struct peer *next;
	struct transport *t;
	char *address;
	enum peer_state state;
	struct conn *conn;
	unsigned backoff_ms;
	bool warned; /* a failure was logged since the last success */
	unsigned probes; /* redials left to tell a dead peer (peer_probe) */
	uv_timer_t timer;
	struct qitem *qhead, **qtail;
	size_t qcount, qbytes;
};

struct send_done { /* a send callback to fire on the next loop iteration */
	struct send_done *next;
	struct raft_io_send *req;
	raft_io_send_cb cb;
	int status;
};

struct rpc {
	struct rpc *next, *prev;
	struct transport *t;
	struct peer *peer; /* NULL once failed */
	uint64_t id;
	transport_rpc_cb cb;
	void *arg;
	uv_timer_t timer; /* timeout, or 0 ms to deliver FAIL_STATUS */
	int fail_status;
	bool done;
};

struct in_req {
	struct transport_rpc_req pub;
	struct conn *conn;
	uint64_t id;
	uint8_t payload[];
};

struct wreq {
	uv_write_t w;
	struct conn *conn;
	uint8_t *data;
	struct raft_io_send *req;
	raft_io_send_cb cb;
	bool close_after;
};

struct transport {
	struct raftio_transport io;
	uv_loop_t *loop;
	channel_key_fn cluster_key;
	/* Secure memory the stale_key check has cluster_key fill: it only
	 * needs the term, so the key is wiped at once. */
	uint8_t *key_scratch;
	struct channel_identity *identity; /* secure memory */
	transport_identify identify;
	transport_rpc_handler rpc_handler;
	transport_join_provider join_provider;
	transport_peer_gone peer_gone;
	void *ctx;
	unsigned hs_timeout_ms;

	bool started, closing, finishing;
	bool flood_logged;
	bool source_flood_logged;  /* a per-source eviction was logged ... */
	uint64_t source_flood_at;  /* ... at this uv_now */
	struct log_budget drop_log; /* dropped connections and the like */
	struct log_budget join_log; /* join-info requests */
	char *address;
	void (*recv)(struct raftio_transport *t, struct raft_message *msg, void *arg);
	void *recv_arg;
	void (*close_cb)(void *arg);
	void *close_arg;

	uv_tcp_t *listener;
	struct conn *conns;
	struct peer *peers;
	struct rpc *rpcs;
	uint64_t next_rpc_id;
	uint8_t rpc_version; /* transport_config's */
	unsigned n_unauth;
	unsigned n_join;
	int handles; /* open handles besides defer_timer */

	uv_timer_t defer_timer;
	struct send_done *defer_head, **defer_tail;
};

/* transport.c: handle accounting, deferred send completions, RPCs we sent,
 * and what one source of inbound connections may cost. */
/* One of t->handles closed; the transport finishes closing after the last. */
void transport_handle_closed(struct transport *t);
/* Calls CB(REQ, STATUS) on the next loop iteration; at once only when
 * memory is out. */
void transport_defer_send(struct transport *t, struct raft_io_send *req, raft_io_send_cb cb,
			  int status);
/* Unlinks R and calls its callback, once; later calls do nothing. */
void transport_rpc_finish(struct rpc *r, int status, const uint8_t *resp, size_t len);
/* Fails, on the next loop iteration, every RPC waiting for an answer from P. */
void transport_rpcs_fail_peer(struct transport *t, struct peer *p, int status);
/* How many unauthenticated connections (JOIN: join-info answers) come from
 * SRC; *RET_OLDEST (optional) gets the oldest of them. */
unsigned transport_source_count(struct transport *t, const struct source *src, bool join,
				struct conn **ret_oldest);
/* Returns false when the current window's lines of budget B are used up.
 * Otherwise NOTE gets, for the first line of a new window, how many lines
 * the previous one left out (else ""). */
bool transport_log_allowed(struct transport *t, struct log_budget *b, char *note,
			   size_t note_len);

/* transport_conn.c: a connection's handles, writes and closing. */
/* Why transport.c closes a connection to make room for another. They are
 * compared by address: a connection this node closes is logged even if it
 * sent nothing. */
extern const char transport_conn_why_evicted[];
extern const char transport_conn_why_evicted_source[];
/* A connection with open handles and its handshake deadline running;
 * NULL if out of memory. */
struct conn *transport_conn_new(struct transport *t, bool inbound);
/* Closes C's handles (its memory goes with the last of them, or with the
 * last RPC request that references it); WHY, if not NULL, is logged for an
 * inbound connection and handed to its peer for an outbound one. Does
 * nothing to a connection already closing. */
void transport_conn_close(struct conn *c, const char *why);
/* Frees a connection whose handles are closed once its last RPC request is
 * released. */
void transport_conn_free_detached(struct conn *c);
/* Writes DATA (malloc'd; ownership moves here) and, if REQ, calls CB once
 * written or failed. Never calls CB synchronously. */
void transport_conn_write(struct conn *c, uint8_t *data, size_t len, struct raft_io_send *req,
			  raft_io_send_cb cb, bool close_after);
/* Writes B's bytes (B is consumed), or closes C if B ran out of memory. */
void transport_conn_write_buf(struct conn *c, struct buf *b);
/* The inbound peer's IP; valid until its socket is closed. */
void transport_conn_peer_ip(struct conn *c, char *out, size_t out_len);
/* A peer that vanishes without a RST (power loss, partition) would
 * otherwise hold its connection, and everything queued on it, for the
 * kernel's retransmission timeout of many minutes. */
void transport_conn_tune_socket(uv_tcp_t *tcp);

/* transport_wire.c: the protocol on one connection. */
/* Seals the plaintext PT (kind byte first) into one or more frames and
 * writes them as one unit. Returns 0 (then CB is called later) or -errno. */
int transport_wire_send(struct conn *c, const uint8_t *pt, size_t len, struct raft_io_send *req,
			raft_io_send_cb cb);
/* uv_read_start's callbacks for every connection: they run the handshake,
 * then open, reassemble and deliver frames. */
void transport_wire_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b);
void transport_wire_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
/* What a step's -errno means, for the log. */
const char *transport_wire_step_error(long rv);
/* Checks, from its header alone, that a frame of N ciphertext bytes keeps
 * the message it belongs to within what C may send, before its bytes are
 * buffered: a non-member cannot make us hold a whole 8 MiB frame either.
 * Returns 0, -EFBIG, or conn_message_max's error (-EPERM: a member removed
 * since its last message). */
int transport_wire_frame_admit(struct conn *c, uint32_t n);

/* transport_peer.c: outbound peers, their queues, dialing and backoff. */
/* The peer at ADDRESS, made on first use; NULL if out of memory. */
struct peer *transport_peer_get(struct transport *t, const char *address);
/* Sends or queues the plaintext PT (ownership moves here on success).
 * Returns 0, -ENOBUFS (queue full), -ECONNREFUSED (in backoff or the
 * connection attempt failed at once) or -ENOMEM. */
int transport_peer_submit(struct peer *p, struct buf *pt, struct raft_io_send *req,
			  raft_io_send_cb cb);
/* P's connection finished its handshake: writes what is queued. */
void transport_peer_ready(struct peer *p);
/* The peer's connection is gone. EVER_READY tells a dropped connection
 * (reconnect on the next message) from a failed attempt (back off). */
void transport_peer_conn_lost(struct peer *p, bool ever_ready, const char *why);
/* At the transport's close: cancels what P has queued and closes its
 * timer. */
void transport_peer_close(struct peer *p);
/* Frees every peer, once their timers are closed. */
void transport_peer_free_all(struct transport *t);

#endif
