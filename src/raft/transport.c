/* Cluster transport over libuv TCP; see transport.h for the contract.
 *
 * Wire, per connection:
 *   initiator: HELLO (45) ... AUTH (32), then channel frames
 *   responder: REPLY (64), then channel frames
 * or, unauthenticated: "VFSJ" -> u32 status, u32 len, payload, close.
 * Frame plaintext: u8 kind + body:
 *   0 ADDRESS   the initiator's Raft address (first frame, initiator only;
 *               for logs: messages are attributed by proven identity)
 *   1 RAFT      msgcodec message (initiator -> responder)
 *   2 RPC_REQ   u64 rpc_id, u16 type, payload (initiator -> responder)
 *   3 RPC_RESP  u64 rpc_id, i32 status, payload (responder -> initiator)
 *   4 FRAGMENT  leading part of a message larger than one channel frame; the
 *               final part comes with the real kind.
 *
 * Ownership: the transport owns peers (outbound, keyed by address), every
 * connection, every pending RPC and the deferred send completions. A
 * connection's memory outlives its handles while incoming RPC requests still
 * reference it. Nothing is freed synchronously inside a public call: every
 * free happens from a libuv close callback, so callers' callbacks can re-enter
 * the transport (even close it) without invalidating what is on the stack. */
#include "raft/transport.h"

#include <errno.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto/secmem.h"
#include "lib/log.h"
#include "raft/msgcodec.h"
#include "raft/raftaddr.h"

#define HANDSHAKE_TIMEOUT_MS 5000u
#define MAX_UNAUTH 64u	     /* concurrent unauthenticated inbound connections */
#define MAX_UNAUTH_PER_SOURCE 8u /* of them from one source (struct source) */
/* Join-info answers being written, apart from the handshakes: see
 * join_request. */
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
_Static_assert(NONMEMBER_MESSAGE_MAX == 64u * 1024u, "step_error says 64 KiB");
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
	bool frame_admitted; /* the frame at the head of rx passed frame_admit */
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
	unsigned n_unauth;
	unsigned n_join;
	int handles; /* open handles besides defer_timer */

	uv_timer_t defer_timer;
	struct send_done *defer_head, **defer_tail;
};

static void conn_close(struct conn *c, const char *why);
static void maybe_finish(struct transport *t);
static void peer_flush(struct peer *p);
static void peer_connect(struct peer *p);
static void peer_probe(struct peer *p);
static void defer_kick(struct transport *t);

/* ------------------------------------------------------------------------ */
/* Handle accounting and deferred send callbacks */

static void handle_closed(struct transport *t)
{
	t->handles--;
	maybe_finish(t);
}

static void defer_send(struct transport *t, struct raft_io_send *req, raft_io_send_cb cb, int status)
{
	struct send_done *d = malloc(sizeof *d);
	if (d == NULL) {
		/* Losing the callback would leak libraft's request; a
		 * synchronous one is the lesser evil when memory is out. */
		if (cb != NULL)
			cb(req, status);
		return;
	}
	d->next = NULL;
	d->req = req;
	d->cb = cb;
	d->status = status;
	*t->defer_tail = d;
	t->defer_tail = &d->next;
	defer_kick(t);
}

static void defer_timer_cb(uv_timer_t *h)
{
	struct transport *t = h->data;
	struct send_done *d = t->defer_head;
	t->defer_head = NULL;
	t->defer_tail = &t->defer_head;
	while (d != NULL) {
		struct send_done *next = d->next;
		if (d->cb != NULL)
			d->cb(d->req, d->status);
		free(d);
		d = next;
	}
	maybe_finish(t);
}

static void defer_kick(struct transport *t)
{
	if (!uv_is_active((uv_handle_t *)&t->defer_timer))
		uv_timer_start(&t->defer_timer, defer_timer_cb, 0, 0);
}

/* ------------------------------------------------------------------------ */
/* Writing */

static void write_cb(uv_write_t *w, int status)
{
	struct wreq *wr = w->data;
	struct conn *c = wr->conn;
	free(wr->data);
	if (wr->cb != NULL) {
		int rv = 0;
		if (status != 0)
			rv = c->t != NULL && c->t->closing ? RAFT_CANCELED : RAFT_NOCONNECTION;
		wr->cb(wr->req, rv);
	}
	if (status != 0)
		conn_close(c, status == UV_ECANCELED ? NULL : uv_strerror(status));
	else if (wr->close_after)
		conn_close(c, NULL);
	free(wr);
}

/* Writes DATA (malloc'd; ownership moves here) and, if REQ, calls CB once
 * written or failed. Never calls CB synchronously. */
static void conn_write(struct conn *c, uint8_t *data, size_t len, struct raft_io_send *req,
		       raft_io_send_cb cb, bool close_after)
{
	struct wreq *wr = calloc(1, sizeof *wr);
	if (wr == NULL || c->closing) {
		free(wr);
		free(data);
		if (req != NULL)
			defer_send(c->t, req, cb, RAFT_NOCONNECTION);
		if (!c->closing)
			conn_close(c, "out of memory");
		return;
	}
	wr->w.data = wr;
	wr->conn = c;
	wr->data = data;
	wr->req = req;
	wr->cb = cb;
	wr->close_after = close_after;
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	/* Most messages fit the socket buffer: written at once, they need no
	 * write request and no poll for writability (after a uv_write, libuv
	 * asks the kernel to stop polling again, one more system call per
	 * message). uv_try_write refuses while earlier bytes are queued, so
	 * the order holds; the callback still comes later, never from here. */
	int rv = close_after ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (rv == (int)len) {
		free(data);
		free(wr);
		if (req != NULL)
			defer_send(c->t, req, cb, 0);
		return;
	}
	if (rv >= 0 || rv == UV_EAGAIN || rv == UV_ENOSYS) {
		size_t done = rv > 0 ? (size_t)rv : 0;
		b = uv_buf_init((char *)data + done, (unsigned)(len - done));
		rv = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
	}
	if (rv != 0) {
		free(data);
		free(wr);
		if (req != NULL)
			defer_send(c->t, req, cb, RAFT_NOCONNECTION);
		conn_close(c, uv_strerror(rv));
	}
}

/* Seals the plaintext PT (kind byte first) into one or more frames and
 * writes them as one unit. Returns 0 (then CB is called later) or -errno. */
static int conn_send_plain(struct conn *c, const uint8_t *pt, size_t len, struct raft_io_send *req,
			   raft_io_send_cb cb)
{
	struct buf wire, piece;
	int rv = 0;
	buf_init(&wire);
	buf_init(&piece);
	const uint8_t *body = pt + 1;
	size_t left = len - 1;
	/* Leading fragments carry CHANNEL_MAX_FRAME - 1 body bytes each. */
	while (left + 1 > CHANNEL_MAX_FRAME && rv == 0) {
		size_t n = CHANNEL_MAX_FRAME - 1;
		buf_clear(&piece);
		buf_put_u8(&piece, K_FRAGMENT);
		buf_put_raw(&piece, body, n);
		rv = piece.err != 0 ? piece.err : channel_seal(c->ch, piece.data, piece.len, &wire);
		body += n;
		left -= n;
	}
	if (rv == 0 && body != pt + 1) {
		buf_clear(&piece);
		buf_put_u8(&piece, pt[0]);
		buf_put_raw(&piece, body, left);
		rv = piece.err != 0 ? piece.err : channel_seal(c->ch, piece.data, piece.len, &wire);
	} else if (rv == 0) {
		rv = channel_seal(c->ch, pt, len, &wire);
	}
	buf_free(&piece);
	if (rv == 0 && wire.err != 0)
		rv = wire.err;
	if (rv != 0) {
		buf_free(&wire);
		return rv;
	}
	size_t wlen;
	uint8_t *data = buf_steal(&wire, &wlen);
	conn_write(c, data, wlen, req, cb, false);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* RPC client side */

static void rpc_closed(uv_handle_t *h)
{
	struct rpc *r = h->data;
	struct transport *t = r->t;
	free(r);
	handle_closed(t);
}

static void rpc_unlink(struct rpc *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		r->t->rpcs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
}

static void rpc_finish(struct rpc *r, int status, const uint8_t *resp, size_t len)
{
	if (r->done)
		return;
	r->done = true;
	rpc_unlink(r);
	uv_close((uv_handle_t *)&r->timer, rpc_closed);
	r->cb(r->arg, status, resp, len);
}

static void rpc_timer_cb(uv_timer_t *h)
{
	struct rpc *r = h->data;
	rpc_finish(r, r->fail_status != 0 ? r->fail_status : -ETIMEDOUT, NULL, 0);
}

/* Fails R on the next loop iteration (never inside the caller's call). */
static void rpc_fail_async(struct rpc *r, int status)
{
	if (r->done || r->fail_status != 0)
		return;
	r->fail_status = status;
	r->peer = NULL;
	uv_timer_start(&r->timer, rpc_timer_cb, 0, 0);
}

static void rpcs_fail_peer(struct transport *t, struct peer *p, int status)
{
	for (struct rpc *r = t->rpcs; r != NULL; r = r->next)
		if (r->peer == p)
			rpc_fail_async(r, status);
}

/* ------------------------------------------------------------------------ */
/* Peers (outbound) */

static void peer_fail_queue(struct peer *p, int status)
{
	struct qitem *q = p->qhead;
	p->qhead = NULL;
	p->qtail = &p->qhead;
	p->qcount = 0;
	p->qbytes = 0;
	while (q != NULL) {
		struct qitem *next = q->next;
		if (q->req != NULL)
			defer_send(p->t, q->req, q->cb, status);
		explicit_bzero(q->pt, q->len);
		free(q->pt);
		free(q);
		q = next;
	}
}

static void peer_backoff_cb(uv_timer_t *h)
{
	struct peer *p = h->data;
	if (p->state == P_BACKOFF) {
		p->state = P_IDLE;
		if (p->probes > 0)
			peer_connect(p);
	}
}

/* The peer's connection is gone. EVER_READY tells a dropped connection
 * (reconnect on the next message) from a failed attempt (back off). */
static void peer_conn_lost(struct peer *p, bool ever_ready, const char *why)
{
	struct transport *t = p->t;
	p->conn = NULL;
	if (t->closing) {
		p->state = P_IDLE;
		peer_fail_queue(p, RAFT_CANCELED);
		return;
	}
	peer_fail_queue(p, RAFT_NOCONNECTION);
	rpcs_fail_peer(t, p, ever_ready ? -ECONNRESET : -ECONNREFUSED);
	if (ever_ready) {
		log_warn("cluster transport: connection to %s lost: %s", p->address,
			 why != NULL ? why : "closed");
		p->state = P_IDLE;
		p->backoff_ms = 0;
		if (t->peer_gone != NULL)
			peer_probe(p);
		return;
	}
	p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS : p->backoff_ms * 2;
	if (p->backoff_ms > BACKOFF_MAX_MS)
		p->backoff_ms = BACKOFF_MAX_MS;
	if (!p->warned)
		log_warn("cluster transport: cannot connect to %s: %s (retrying with backoff)",
			 p->address, why != NULL ? why : "closed");
	p->warned = true;
	if (p->probes > 0)
		p->probes--;
	p->state = P_BACKOFF;
	uv_timer_start(&p->timer, peer_backoff_cb, p->backoff_ms, 0);
}

/* Redials a peer whose working connection just closed: if nothing listens
 * at its address any more (ECONNREFUSED, which is what a killed process's
 * host answers), connect_cb reports the peer gone. A dying process may
 * still accept, then reset, the first attempt, hence a few attempts (with
 * the usual backoff). Anything else - it answers, or the network says
 * nothing - is an ordinary reconnect. */
static void peer_probe(struct peer *p)
{
	p->probes = PROBE_ATTEMPTS;
	peer_connect(p);
}

static struct peer *peer_get(struct transport *t, const char *address)
{
	for (struct peer *p = t->peers; p != NULL; p = p->next)
		if (strcmp(p->address, address) == 0)
			return p;
	struct peer *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	p->address = strdup(address);
	if (p->address == NULL) {
		free(p);
		return NULL;
	}
	p->t = t;
	p->qtail = &p->qhead;
	uv_timer_init(t->loop, &p->timer);
	p->timer.data = p;
	t->handles++;
	p->next = t->peers;
	t->peers = p;
	return p;
}

/* ------------------------------------------------------------------------ */
/* Sources of inbound connections */

static void source_of(uv_tcp_t *tcp, struct source *out)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct sockaddr_storage ss;
	int len = sizeof ss;
	memset(out, 0, sizeof *out);
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		out->family = 4;
		memcpy(out->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		const uint8_t *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
		bool mapped = memcmp(a, v4mapped, sizeof v4mapped) == 0;
		out->family = mapped ? 4 : 6;
		memcpy(out->addr, mapped ? a + 12 : a, mapped ? 4 : 8);
	}
}

static bool source_equal(const struct source *a, const struct source *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* For logs: "192.0.2.1", or "2001:db8:0:1::/64". */
static void source_name(const struct source *s, char *out, size_t out_len)
{
	uint8_t a6[16] = {0};
	memcpy(a6, s->addr, sizeof s->addr);
	if (s->family == 4 && inet_ntop(AF_INET, s->addr, out, (socklen_t)out_len) != NULL)
		return;
	if (s->family == 6 && inet_ntop(AF_INET6, a6, out, (socklen_t)out_len) != NULL) {
		size_t n = strlen(out);
		snprintf(out + n, out_len - n, "/64");
		return;
	}
	snprintf(out, out_len, "an unknown address");
}

/* How many unauthenticated connections (JOIN: join-info answers) come from
 * SRC; *RET_OLDEST (optional) gets the oldest of them. */
static unsigned source_count(struct transport *t, const struct source *src, bool join,
			     struct conn **ret_oldest)
{
	unsigned n = 0;
	struct conn *oldest = NULL;
	for (struct conn *c = t->conns; c != NULL; c = c->next) { /* newest first */
		if ((join ? c->joining : c->unauth) && source_equal(&c->src, src)) {
			n++;
			oldest = c;
		}
	}
	if (ret_oldest != NULL)
		*ret_oldest = oldest;
	return n;
}

/* ------------------------------------------------------------------------ */
/* Connections */

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct transport *t = c->t;
	if (--c->handles > 0) {
		handle_closed(t);
		return;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->t = NULL;
	if (c->refs == 0) {
		channel_free(c->ch);
		buf_free(&c->rx);
		buf_free(&c->frag);
		free(c->peer_address);
		free(c);
	}
	handle_closed(t);
}

static void conn_free_detached(struct conn *c)
{
	channel_free(c->ch);
	buf_free(&c->rx);
	buf_free(&c->frag);
	free(c->peer_address);
	free(c);
}

static const char why_timeout[] = "handshake timed out";
static const char why_evicted[] = "evicted: too many unauthenticated connections";
static const char why_evicted_source[] =
	"evicted: too many unauthenticated connections from its address";

static void conn_timeout_cb(uv_timer_t *h)
{
	conn_close(h->data, why_timeout);
}

static struct conn *conn_new(struct transport *t, bool inbound)
{
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	if (uv_tcp_init(t->loop, &c->tcp) != 0) {
		free(c);
		return NULL;
	}
	uv_timer_init(t->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	t->handles += 2;
	c->t = t;
	c->inbound = inbound;
	buf_init(&c->rx);
	buf_init(&c->frag);
	c->next = t->conns;
	if (t->conns != NULL)
		t->conns->prev = c;
	t->conns = c;
	uv_timer_start(&c->timer, conn_timeout_cb, t->hs_timeout_ms, 0);
	return c;
}

/* Returns false when the current window's lines of budget B are used up.
 * Otherwise NOTE gets, for the first line of a new window, how many lines
 * the previous one left out (else ""). */
static bool peer_log_allowed(struct transport *t, struct log_budget *b, char *note,
			     size_t note_len)
{
	uint64_t now = uv_now(t->loop);
	note[0] = '\0';
	if (now - b->window_start >= PEER_LOG_WINDOW_MS) {
		if (b->suppressed > 0)
			snprintf(note, note_len, " (%u earlier such lines not logged: at most %u per %u s)",
				 b->suppressed, PEER_LOG_BURST, PEER_LOG_WINDOW_MS / 1000u);
		b->window_start = now;
		b->suppressed = 0;
		b->logged = 0;
	}
	if (b->logged >= PEER_LOG_BURST) {
		b->suppressed++;
		return false;
	}
	b->logged++;
	return true;
}

/* The inbound peer's IP; valid until its socket is closed. */
static void conn_peer_ip(struct conn *c, char *out, size_t out_len)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	snprintf(out, out_len, "unknown peer");
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		uv_ip_name((struct sockaddr *)&ss, out, out_len);
}

/* Names an inbound peer by its announced address, else by its IP. */
static void log_inbound_drop(struct conn *c, const char *why)
{
	char who[INET6_ADDRSTRLEN + 8];
	char note[96];
	/* A probe that connects and leaves without a byte is routine on an
	 * open port; one that sends anything, or that this node closes (its
	 * deadline, an eviction: often before its first bytes are read), is
	 * worth a line. */
	bool ours = why == why_timeout || why == why_evicted || why == why_evicted_source;
	if (c->state == C_IN_MAGIC && c->rx.len == 0 && !ours) {
		log_debug("cluster transport: connection closed before sending anything: %s", why);
		return;
	}
	bool join = c->state == C_JOIN;
	if (!peer_log_allowed(c->t, join ? &c->t->join_log : &c->t->drop_log, note, sizeof note))
		return;
	if (c->peer_address != NULL && c->peer_address[0] != '\0') {
		log_warn("cluster transport: dropped connection from %s: %s%s", c->peer_address,
			 why, note);
		return;
	}
	conn_peer_ip(c, who, sizeof who);
	log_warn("cluster transport: dropped %sconnection from %s: %s%s",
		 join ? "join-info " : c->unauth ? "unauthenticated " : "", who, why, note);
}

static void conn_close(struct conn *c, const char *why)
{
	if (c->closing)
		return;
	struct transport *t = c->t;
	bool was_ready = c->state == C_READY;
	/* While the socket is still open, so that the peer's IP is known. */
	if (c->peer == NULL && why != NULL && !t->closing)
		log_inbound_drop(c, why);
	c->closing = true;
	if (c->unauth) {
		c->unauth = false;
		t->n_unauth--;
	}
	if (c->joining) {
		c->joining = false;
		t->n_join--;
	}
	if (c->resolving != NULL) {
		c->resolving->conn = NULL;
		c->resolving = NULL;
	}
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
	if (c->peer != NULL) {
		struct peer *p = c->peer;
		c->peer = NULL;
		if (p->conn == c)
			peer_conn_lost(p, was_ready, why);
	}
}

/* A peer that vanishes without a RST (power loss, partition) would
 * otherwise hold its connection, and everything queued on it, for the
 * kernel's retransmission timeout of many minutes. */
static void tune_socket(uv_tcp_t *tcp)
{
	uv_os_fd_t fd;
	unsigned user_timeout_ms = 10000;
	uv_tcp_nodelay(tcp, 1);
	uv_tcp_keepalive(tcp, 1, 5);
	if (uv_fileno((uv_handle_t *)tcp, &fd) == 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
				 sizeof user_timeout_ms);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(suggested);
	b->len = b->base != NULL ? suggested : 0;
}

/* ------------------------------------------------------------------------ */
/* Inbound dispatch */

/* Attributes what arrives on inbound C now to the member proving the
 * channel's identity at this moment (peer_id 0: none). A member removed
 * since its last message loses the connection: -EPERM. */
static int conn_identify(struct conn *c, const char **ret_address)
{
	struct transport *t = c->t;
	const uint8_t *key = channel_peer_id(c->ch);
	uint64_t id = 0;
	const char *address = NULL;
	if (t->identify == NULL || key == NULL || t->identify(t->ctx, key, &id, &address) != 0 ||
	    address == NULL)
		id = 0;
	if (id == 0 && c->was_member)
		return -EPERM;
	c->peer_id = id;
	c->was_member = id != 0;
	*ret_address = id != 0 ? address : NULL;
	return 0;
}

/* Once per connection: a removed node keeps sending. */
static void log_not_member(struct conn *c, const char *what)
{
	char note[96], who[INET6_ADDRSTRLEN + 8], hex[17];
	if (c->told_not_member || !peer_log_allowed(c->t, &c->t->drop_log, note, sizeof note))
		return;
	c->told_not_member = true;
	const uint8_t *key = channel_peer_id(c->ch);
	for (unsigned i = 0; i < 8 && key != NULL; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	conn_peer_ip(c, who, sizeof who);
	log_warn("cluster transport: %s from %s, whose identity %s... is not a member: dropped%s",
		 what, who, key != NULL ? hex : "?", note);
}

static int deliver_raft(struct conn *c, const uint8_t *body, size_t len)
{
	struct transport *t = c->t;
	const char *address;
	int rv = conn_identify(c, &address);
	if (rv != 0)
		return rv;
	struct raft_message m;
	rv = msgcodec_decode(body, len, &m);
	if (rv != 0)
		return rv;
	if (c->peer_id == 0)
		log_not_member(c, "a Raft message");
	/* libraft asserts a non-zero sender id; only a started peer has one. */
	if (t->recv == NULL || c->peer_id == 0) {
		msgcodec_release(&m);
		return 0;
	}
	m.server_id = c->peer_id;
	m.server_address = address; /* libraft copies what it keeps */
	t->recv(&t->io, &m, t->recv_arg);
	return 0;
}

/* Whether the term C's handshake agreed on is older than this node's newest
 * at this moment: a rotation applies on each node at its own time, so it is
 * asked per request rather than remembered. With no key at all (sealed
 * meanwhile) nothing vouches for the peer's keyring: stale too. */
static bool conn_stale_key(const struct conn *c)
{
	struct transport *t = c->t;
	uint32_t newest = 0;
	int rv = t->cluster_key(t->ctx, &newest, t->key_scratch);
	secmem_wipe(t->key_scratch, CHANNEL_KEY_LEN);
	return rv != 0 || channel_term(c->ch) < newest;
}

static int deliver_rpc_req(struct conn *c, const uint8_t *body, size_t len)
{
	struct transport *t = c->t;
	const char *address;
	int rv = conn_identify(c, &address);
	if (rv != 0)
		return rv;
	struct cursor cur;
	cursor_init(&cur, body, len);
	uint64_t id = cursor_u64(&cur);
	uint16_t type = cursor_u16(&cur);
	if (cur.err != 0 || cur.left > TRANSPORT_MAX_RPC)
		return -EBADMSG;
	struct in_req *in = malloc(sizeof *in + cur.left);
	if (in == NULL)
		return -ENOMEM;
	memcpy(in->payload, cur.p, cur.left);
	in->pub.type = type;
	in->pub.peer_id = c->peer_id;
	memcpy(in->pub.peer_key, channel_peer_id(c->ch), CHANNEL_ID_LEN);
	in->pub.stale_key = conn_stale_key(c);
	in->pub.payload = in->payload;
	in->pub.len = cur.left;
	in->pub.priv = in;
	in->conn = c;
	in->id = id;
	c->refs++;
	if (t->rpc_handler == NULL)
		transport_rpc_reply(&in->pub, -ENOSYS, NULL, 0);
	else
		t->rpc_handler(t->ctx, &in->pub);
	return 0;
}

static int deliver_rpc_resp(struct conn *c, const uint8_t *body, size_t len)
{
	struct cursor cur;
	cursor_init(&cur, body, len);
	uint64_t id = cursor_u64(&cur);
	int32_t status = cursor_i32(&cur);
	if (cur.err != 0 || cur.left > TRANSPORT_MAX_RPC || status > 0)
		return -EBADMSG;
	for (struct rpc *r = c->t->rpcs; r != NULL; r = r->next) {
		if (r->id == id) {
			/* A late answer to an RPC that already failed is
			 * dropped with it. */
			if (r->peer == c->peer && r->fail_status == 0)
				rpc_finish(r, status, cur.p, cur.left);
			break;
		}
	}
	return 0;
}

static int deliver_address(struct conn *c, const uint8_t *body, size_t len)
{
	if (len > MAX_ADDRESS || memchr(body, '\0', len) != NULL)
		return -EBADMSG;
	c->peer_address = malloc(len + 1);
	if (c->peer_address == NULL)
		return -ENOMEM;
	memcpy(c->peer_address, body, len);
	c->peer_address[len] = '\0';
	c->state = C_READY;
	uv_timer_stop(&c->timer);
	return 0;
}

static int dispatch(struct conn *c, uint8_t kind, const uint8_t *body, size_t len)
{
	if (c->state == C_IN_ADDRESS)
		return kind == K_ADDRESS ? deliver_address(c, body, len) : -EBADMSG;
	if (c->inbound && kind == K_RAFT)
		return deliver_raft(c, body, len);
	if (c->inbound && kind == K_RPC_REQ)
		return deliver_rpc_req(c, body, len);
	if (!c->inbound && kind == K_RPC_RESP)
		return deliver_rpc_resp(c, body, len);
	return -EBADMSG;
}

/* One opened frame: reassembles fragments, then dispatches. */
static int on_plaintext(struct conn *c, const uint8_t *pt, size_t len)
{
	if (len == 0)
		return -EBADMSG;
	uint8_t kind = pt[0];
	if (kind == K_FRAGMENT) {
		if (c->state != C_READY || c->frag.len + len - 1 > MAX_MESSAGE)
			return -EBADMSG;
		buf_put_raw(&c->frag, pt + 1, len - 1);
		return c->frag.err;
	}
	if (c->frag.len == 0)
		return dispatch(c, kind, pt + 1, len - 1);
	if (c->frag.len + len - 1 > MAX_MESSAGE)
		return -EBADMSG;
	buf_put_raw(&c->frag, pt + 1, len - 1);
	if (c->frag.err != 0)
		return c->frag.err;
	struct buf whole = c->frag;
	buf_init(&c->frag);
	int rv = dispatch(c, kind, whole.data, whole.len);
	buf_free(&whole);
	return rv;
}

/* ------------------------------------------------------------------------ */
/* Handshake steps */

/* Writes the join-info answer (status RV, then PAYLOAD if RV is 0) and
 * closes C once it is written; WHAT says how it went, for the log. */
static void join_write(struct conn *c, int rv, const struct buf *payload, const char *what)
{
	struct transport *t = c->t;
	struct buf wire;
	buf_init(&wire);
	buf_put_u32(&wire, (uint32_t)-rv);
	buf_put_u32(&wire, rv == 0 ? (uint32_t)payload->len : 0);
	if (rv == 0)
		buf_put_raw(&wire, payload->data, payload->len);
	if (wire.err != 0) {
		buf_free(&wire);
		conn_close(c, "out of memory");
		return;
	}
	char who[INET6_ADDRSTRLEN + 8], note[96];
	/* Anyone may ask, and gets only what is sealed under the root key; the
	 * line is there for an audit trail of who fetched it. */
	if (peer_log_allowed(t, &t->join_log, note, sizeof note)) {
		conn_peer_ip(c, who, sizeof who);
		log_info("cluster transport: join-info request from %s: %s%s", who, what, note);
	}
	size_t wlen;
	uint8_t *data = buf_steal(&wire, &wlen);
	conn_write(c, data, wlen, NULL, NULL, true);
}

static void join_answer(struct conn *c)
{
	struct transport *t = c->t;
	struct buf payload;
	buf_init(&payload);
	int rv = t->join_provider != NULL ? t->join_provider(t->ctx, &payload) : -ENOSYS;
	if (rv == 0 && payload.err != 0)
		rv = -ENOMEM;
	if (rv == 0 && payload.len > TRANSPORT_MAX_RPC)
		rv = -EMSGSIZE;
	if (rv > 0)
		rv = -EPROTO; /* a provider bug, not an errno to forward */
	join_write(c, rv, &payload, rv == 0 ? "answered" : strerror(-rv));
	buf_free(&payload);
}

/* Why the join-info request on C is refused (NULL: it is not). */
static const char *join_refusal(struct conn *c)
{
	if (c->t->n_join >= MAX_JOIN)
		return "refused: too many at once";
	if (source_count(c->t, &c->src, true, NULL) >= MAX_JOIN_PER_SOURCE)
		return "refused: too many at once from its address";
	return NULL;
}

/* A join-info request ("VFSJ") leaves the handshake budget for its own, so
 * that a flood of either cannot take the other's places: its answer being
 * written never holds a handshake's place, and handshakes never evict an
 * answer half written. An answer is written as soon as the kernel takes it
 * (a sealed keyring is a few KiB), and the handshake deadline still closes
 * the connection, so a place is held long only by a requester that does
 * not read; past the caps, requests are refused with EAGAIN (the joiner
 * tries again) rather than cutting an answer under way. */
static void join_request(struct conn *c)
{
	struct transport *t = c->t;
	c->unauth = false;
	t->n_unauth--;
	c->state = C_JOIN;
	const char *why = join_refusal(c);
	if (why != NULL) {
		join_write(c, -EAGAIN, NULL, why);
		return;
	}
	c->joining = true;
	t->n_join++;
	join_answer(c);
}

static void conn_write_buf(struct conn *c, struct buf *b)
{
	if (b->err != 0) {
		buf_free(b);
		conn_close(c, "out of memory");
		return;
	}
	size_t len;
	uint8_t *data = buf_steal(b, &len);
	conn_write(c, data, len, NULL, NULL, false);
}

static int step_in_hello(struct conn *c, const uint8_t *p)
{
	struct buf out;
	buf_init(&out);
	struct transport *t = c->t;
	if (c->ch == NULL && channel_new(&c->ch, t->identity, t->cluster_key, t->ctx) != 0)
		return -ENOMEM;
	int rv = channel_on_hello(c->ch, p, CHANNEL_HELLO_LEN, &out);
	if (rv != 0) {
		buf_free(&out);
		return rv;
	}
	c->state = C_IN_AUTH;
	conn_write_buf(c, &out);
	return 0;
}

static int step_in_auth(struct conn *c, const uint8_t *p)
{
	int rv = channel_on_auth(c->ch, p, CHANNEL_AUTH_LEN);
	if (rv != 0)
		return rv;
	c->unauth = false;
	c->t->n_unauth--;
	c->state = C_IN_ADDRESS;
	return 0;
}

static void peer_ready(struct peer *p)
{
	p->state = P_READY;
	p->backoff_ms = 0;
	p->probes = 0;
	if (p->warned)
		log_info("cluster transport: connected to %s", p->address);
	p->warned = false;
	peer_flush(p);
}

/* A dial address that names an identity is answered only by its holder:
 * anyone else on that host:port (another node after an address moved, a
 * redirected connection) is not the member meant. */
static bool peer_proves_address(const struct conn *c)
{
	struct raftaddr a;
	if (c->peer == NULL || raftaddr_parse(c->peer->address, &a) != 0)
		return false;
	return !a.has_id || memcmp(a.id, channel_peer_id(c->ch), CHANNEL_ID_LEN) == 0;
}

static int step_out_reply(struct conn *c, const uint8_t *p)
{
	struct transport *t = c->t;
	struct buf out;
	buf_init(&out);
	int rv = channel_on_reply(c->ch, p, CHANNEL_REPLY_LEN, &out);
	if (rv == 0 && !peer_proves_address(c))
		rv = -EKEYREJECTED;
	if (rv != 0) {
		buf_free(&out);
		return rv;
	}
	/* The address frame goes in the same write as AUTH. */
	struct buf addr;
	buf_init(&addr);
	buf_put_u8(&addr, K_ADDRESS);
	if (t->address != NULL)
		buf_put_raw(&addr, t->address, strlen(t->address));
	rv = addr.err != 0 ? addr.err : channel_seal(c->ch, addr.data, addr.len, &out);
	buf_free(&addr);
	if (rv != 0) {
		buf_free(&out);
		return rv;
	}
	c->state = C_READY;
	uv_timer_stop(&c->timer);
	conn_write_buf(c, &out);
	if (!c->closing && c->peer != NULL)
		peer_ready(c->peer);
	return 0;
}

/* The largest message (kind byte and body, all its fragments together) C
 * may carry now, in *RET_MAX: a member may send whole snapshots, anyone
 * else only what the node serves a non-member. Who sends is asked at each
 * frame, as membership may change in the middle of a message. Returns 0,
 * or -EPERM for a member removed since its last message. */
static int conn_message_max(struct conn *c, size_t *ret_max)
{
	const char *address;
	if (!c->inbound) {
		*ret_max = RPC_RESP_MAX; /* a responder only answers our RPCs */
		return 0;
	}
	if (c->state == C_IN_ADDRESS) {
		*ret_max = 1u + MAX_ADDRESS;
		return 0;
	}
	int rv = conn_identify(c, &address);
	if (rv != 0)
		return rv;
	*ret_max = c->peer_id != 0 ? MAX_MESSAGE : NONMEMBER_MESSAGE_MAX;
	return 0;
}

/* Checks, from its header alone, that a frame of N ciphertext bytes keeps
 * the message it belongs to within what C may send, before its bytes are
 * buffered: a non-member cannot make us hold a whole 8 MiB frame either.
 * Returns 0, -EFBIG, or conn_message_max's error. */
static int frame_admit(struct conn *c, uint32_t n)
{
	size_t max;
	int rv = conn_message_max(c, &max);
	if (rv != 0)
		return rv;
	return c->frag.len + (n - CHANNEL_TAG_LEN) > max ? -EFBIG : 0;
}

/* Frame: u32 ciphertext length, then the ciphertext. Returns the bytes
 * consumed, 0 if incomplete, or -errno. */
static long step_frame(struct conn *c, const uint8_t *p, size_t avail)
{
	if (avail < FRAME_HEADER_LEN)
		return 0;
	uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		     (uint32_t)p[3] << 24;
	if (n < CHANNEL_TAG_LEN + 1 || n > CHANNEL_MAX_FRAME + CHANNEL_TAG_LEN)
		return -EMSGSIZE;
	if (!c->frame_admitted) { /* once per frame, however many reads it takes */
		int rv = frame_admit(c, n);
		if (rv != 0)
			return rv;
		c->frame_admitted = true;
	}
	if (avail - FRAME_HEADER_LEN < n)
		return 0;
	c->frame_admitted = false;
	struct buf pt;
	buf_init(&pt);
	int rv = channel_open(c->ch, p + FRAME_HEADER_LEN, n, &pt);
	if (rv == 0)
		rv = on_plaintext(c, pt.data, pt.len);
	buf_free(&pt);
	return rv != 0 ? rv : (long)(FRAME_HEADER_LEN + n);
}

/* Consumes what it can from P. Returns the bytes consumed (0 with a state
 * change counts as progress: *progress is set), or -errno. */
static long conn_step(struct conn *c, const uint8_t *p, size_t avail, bool *progress)
{
	int rv;
	switch (c->state) {
	case C_IN_MAGIC:
		if (avail < 4)
			return 0;
		if (memcmp(p, TRANSPORT_JOIN_MAGIC, 4) == 0) {
			join_request(c);
			return (long)avail;
		}
		if (memcmp(p, CHANNEL_MAGIC, 4) != 0)
			return -EPROTO;
		c->state = C_IN_HELLO;
		*progress = true;
		return 0;
	case C_IN_HELLO:
		if (avail < CHANNEL_HELLO_LEN)
			return 0;
		rv = step_in_hello(c, p);
		return rv != 0 ? rv : (long)CHANNEL_HELLO_LEN;
	case C_IN_AUTH:
		if (avail < CHANNEL_AUTH_LEN)
			return 0;
		rv = step_in_auth(c, p);
		return rv != 0 ? rv : (long)CHANNEL_AUTH_LEN;
	case C_OUT_REPLY:
		if (avail < CHANNEL_REPLY_LEN)
			return 0;
		rv = step_out_reply(c, p);
		return rv != 0 ? rv : (long)CHANNEL_REPLY_LEN;
	case C_IN_ADDRESS:
	case C_READY:
		return step_frame(c, p, avail);
	default:
		return (long)avail; /* nothing expected: ignore */
	}
}

static const char *step_error(long rv)
{
	switch (rv) {
	case -EBADMSG:
		return "handshake or frame rejected (wrong cluster key or malformed data)";
	case -EMSGSIZE:
		return "frame length out of range";
	case -EFBIG:
		return "message larger than the peer may send (64 KiB for an identity that is no "
		       "member)";
	case -ELOOP:
		return "the peer presented this node's own identity (a connection redirected back "
		       "to this node?)";
	case -EKEYREJECTED:
		return "the peer proved another identity than that of the member dialled";
	case -EPERM:
		return "the peer is no longer a member";
	case -EPROTO:
		return "not a vaultfs cluster connection";
	case -ENOKEY:
		return "this node has no cluster key for the handshake (sealed)";
	default:
		return strerror((int)-rv);
	}
}

static void conn_process(struct conn *c)
{
	size_t pos = 0;
	while (!c->closing && pos < c->rx.len) {
		bool progress = false;
		long n = conn_step(c, c->rx.data + pos, c->rx.len - pos, &progress);
		if (n < 0) {
			conn_close(c, step_error(n));
			return;
		}
		if (n == 0 && !progress)
			break;
		pos += (size_t)n;
	}
	if (c->closing || pos == 0)
		return;
	/* Keep only the incomplete tail. */
	memmove(c->rx.data, c->rx.data + pos, c->rx.len - pos);
	c->rx.len -= pos;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = s->data;
	if (nread > 0 && !c->closing) {
		buf_put_raw(&c->rx, b->base, (size_t)nread);
		if (c->rx.err != 0)
			conn_close(c, "out of memory");
		else
			conn_process(c);
	} else if (nread == UV_EOF) {
		/* A node closing its outbound side is routine; the initiator
		 * logs lost connections itself. Half a frame is not. */
		const char *why = "closed by peer";
		if (c->inbound && c->state == C_READY)
			why = c->rx.len > 0 ? "closed in the middle of a frame" : NULL;
		conn_close(c, why);
	} else if (nread < 0) {
		conn_close(c, uv_strerror((int)nread));
	}
	free(b->base);
}

/* ------------------------------------------------------------------------ */
/* Listening */

/* At the global cap: the oldest connection of the source that holds the
 * most (the oldest of all among equals), so that a real node's lone
 * handshake is the last to go, after every source's surplus. */
static struct conn *unauth_global_victim(struct transport *t)
{
	struct conn *victim = NULL;
	unsigned most = 0;
	for (struct conn *c = t->conns; c != NULL; c = c->next) { /* newest first */
		unsigned n = c->unauth ? source_count(t, &c->src, false, NULL) : 0;
		if (n > 0 && n >= most) {
			most = n;
			victim = c;
		}
	}
	return victim;
}

/* Logged at most once per log window: the drops themselves are logged,
 * rate-limited, with the address. */
static void log_source_flood(struct transport *t, const struct source *src)
{
	char name[INET6_ADDRSTRLEN + 8];
	uint64_t now = uv_now(t->loop);
	if (t->source_flood_logged && now - t->source_flood_at < PEER_LOG_WINDOW_MS)
		return;
	t->source_flood_logged = true;
	t->source_flood_at = now;
	source_name(src, name, sizeof name);
	log_warn("cluster transport: more than %u unauthenticated connections from %s; closing "
		 "its oldest to make room for new ones",
		 MAX_UNAUTH_PER_SOURCE, name);
}

/* Makes room for the new unauthenticated connection C. Past the cap, the
 * oldest one makes room rather than the new one being refused: refusing
 * would let anyone who holds the idle connections (renewed at each
 * deadline) keep every node from reconnecting, while a real handshake takes
 * one round trip, so to evict it a flood must open a cap's worth of
 * connections within that round trip. The cap per source comes first and
 * evicts that source's own oldest: whoever floods from one address (an IPv6
 * /64) only competes with itself, and a node that shares its address (NAT,
 * one host) still gets in unless the flood opens MAX_UNAUTH_PER_SOURCE
 * connections within that node's round trip. Only past MAX_UNAUTH in all,
 * which takes MAX_UNAUTH / MAX_UNAUTH_PER_SOURCE sources, does a source
 * lose a connection to another, and then the source holding the most. */
static void unauth_make_room(struct transport *t, struct conn *c)
{
	struct conn *victim;
	if (source_count(t, &c->src, false, &victim) >= MAX_UNAUTH_PER_SOURCE) {
		log_source_flood(t, &c->src);
		conn_close(victim, why_evicted_source);
		return;
	}
	if (t->n_unauth < MAX_UNAUTH) {
		t->flood_logged = false;
		return;
	}
	/* Logged once per flood, not once per connection. */
	if (!t->flood_logged)
		log_warn("cluster transport: more than %u unauthenticated connections; closing "
			 "the oldest of the address holding the most to make room for new ones",
			 MAX_UNAUTH);
	t->flood_logged = true;
	victim = unauth_global_victim(t);
	if (victim != NULL)
		conn_close(victim, why_evicted);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct transport *t = server->data;
	if (status < 0) {
		log_warn("cluster transport: accept failed: %s", uv_strerror(status));
		return;
	}
	struct conn *c = conn_new(t, true);
	if (c == NULL) {
		log_warn("cluster transport: out of memory accepting a connection");
		return;
	}
	c->state = C_IN_MAGIC;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c, NULL);
		return;
	}
	source_of(&c->tcp, &c->src);
	unauth_make_room(t, c);
	c->unauth = true;
	t->n_unauth++;
	tune_socket(&c->tcp);
	int rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (rv != 0)
		conn_close(c, uv_strerror(rv));
}

static void listener_closed(uv_handle_t *h)
{
	struct transport *t = h->data;
	free(h);
	handle_closed(t);
}

static int resolve_sync(const char *host, int port, struct sockaddr_storage *ss)
{
	if (raftaddr_sockaddr(host, port, ss) == 0)
		return 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
		return -EHOSTUNREACH;
	memset(ss, 0, sizeof *ss);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	raftaddr_set_port((struct sockaddr *)ss, port);
	return 0;
}

static int listen_on(struct transport *t, const char *address)
{
	char host[RAFTADDR_HOST_MAX];
	int port;
	struct sockaddr_storage ss;
	int rv = raftaddr_host_port(address, host, &port);
	if (rv != 0) {
		log_error("cluster transport: invalid address '%s' (expected [node_id@]host:port)",
			  address);
		return RAFT_INVALID;
	}
	if (resolve_sync(host, port, &ss) != 0) {
		log_error("cluster transport: cannot resolve '%s'", address);
		return RAFT_IOERR;
	}
	t->listener = malloc(sizeof *t->listener);
	if (t->listener == NULL)
		return RAFT_NOMEM;
	uv_tcp_init(t->loop, t->listener);
	t->listener->data = t;
	t->handles++;
	/* libuv sets SO_REUSEADDR on bind, so a restarted node can rebind
	 * while old connections sit in TIME_WAIT. */
	rv = uv_tcp_bind(t->listener, (struct sockaddr *)&ss, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)t->listener, 128, on_connection);
	if (rv != 0) {
		log_error("cluster transport: cannot listen on %s: %s", address, uv_strerror(rv));
		uv_close((uv_handle_t *)t->listener, listener_closed);
		t->listener = NULL;
		return RAFT_IOERR;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Connecting */

static void connect_cb(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	if (c->closing)
		return;
	if (status != 0) {
		struct peer *p = c->peer;
		bool gone = p != NULL && p->probes > 0 && status == UV_ECONNREFUSED;
		if (gone)
			p->probes = 0;
		conn_close(c, uv_strerror(status));
		if (gone && !c->t->closing)
			c->t->peer_gone(c->t->ctx, p->address);
		return;
	}
	tune_socket(&c->tcp);
	struct buf out;
	buf_init(&out);
	int rv = channel_new(&c->ch, c->t->identity, c->t->cluster_key, c->t->ctx);
	if (rv == 0)
		rv = channel_hello(c->ch, &out);
	if (rv == 0)
		rv = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
	if (rv != 0) {
		buf_free(&out);
		const char *why = rv == -ENOMEM ? "out of memory" : uv_strerror(rv);
		conn_close(c, rv == -ENOKEY ? step_error(rv) : why);
		return;
	}
	c->state = C_OUT_REPLY;
	conn_write_buf(c, &out);
}

static int conn_connect(struct conn *c, const struct sockaddr *sa)
{
	c->connect.data = c;
	return uv_tcp_connect(&c->connect, &c->tcp, sa, connect_cb);
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct resolve *r = req->data;
	struct conn *c = r->conn;
	if (c != NULL) {
		c->resolving = NULL;
		int rv = status;
		if (rv == 0) {
			raftaddr_set_port(res->ai_addr, r->port);
			rv = conn_connect(c, res->ai_addr);
		}
		if (rv != 0)
			conn_close(c, uv_strerror(rv));
	}
	uv_freeaddrinfo(res);
	free(r);
}

/* Starts resolving/connecting C to ADDRESS. Returns 0 or -errno. */
static int conn_dial(struct conn *c, const char *address)
{
	char host[RAFTADDR_HOST_MAX];
	int port;
	struct sockaddr_storage ss;
	int rv = raftaddr_host_port(address, host, &port);
	if (rv != 0)
		return rv;
	if (raftaddr_sockaddr(host, port, &ss) == 0)
		return conn_connect(c, (struct sockaddr *)&ss);
	struct resolve *r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	r->req.data = r;
	r->conn = c;
	r->port = port;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	rv = uv_getaddrinfo(c->t->loop, &r->req, resolve_cb, host, NULL, &hints);
	if (rv != 0) {
		free(r);
		return rv;
	}
	c->resolving = r;
	return 0;
}

static void peer_connect(struct peer *p)
{
	struct transport *t = p->t;
	struct conn *c = conn_new(t, false);
	if (c == NULL) {
		p->state = P_CONNECTING;
		peer_conn_lost(p, false, "out of memory");
		return;
	}
	c->state = C_OUT_CONNECTING;
	c->peer = p;
	p->conn = c;
	p->state = P_CONNECTING;
	int rv = conn_dial(c, p->address);
	if (rv != 0)
		conn_close(c, rv == -EINVAL ? "invalid address" : uv_strerror(rv));
}

/* Writes the queued messages once the handshake is done. */
static void peer_flush(struct peer *p)
{
	while (p->qhead != NULL && p->state == P_READY && p->conn != NULL) {
		struct qitem *q = p->qhead;
		p->qhead = q->next;
		if (p->qhead == NULL)
			p->qtail = &p->qhead;
		p->qcount--;
		p->qbytes -= q->len;
		int rv = conn_send_plain(p->conn, q->pt, q->len, q->req, q->cb);
		if (rv != 0 && q->req != NULL)
			defer_send(p->t, q->req, q->cb, RAFT_NOCONNECTION);
		explicit_bzero(q->pt, q->len);
		free(q->pt);
		free(q);
	}
}

/* Sends or queues the plaintext PT (ownership moves here on success).
 * Returns 0, -ENOBUFS (queue full), -ECONNREFUSED (in backoff or the
 * connection attempt failed at once) or -ENOMEM. */
static int peer_submit(struct peer *p, struct buf *pt, struct raft_io_send *req, raft_io_send_cb cb)
{
	if (p->state == P_READY) {
		if (uv_stream_get_write_queue_size((uv_stream_t *)&p->conn->tcp) > WRITE_QUEUE_MAX)
			return -ENOBUFS;
		int rv = conn_send_plain(p->conn, pt->data, pt->len, req, cb);
		if (rv == 0)
			buf_free(pt);
		return rv != 0 ? -ENOMEM : 0;
	}
	if (p->state == P_BACKOFF)
		return -ECONNREFUSED;
	if (p->qcount >= QUEUE_MAX_ITEMS || p->qbytes + pt->len > QUEUE_MAX_BYTES)
		return -ENOBUFS;
	struct qitem *q = calloc(1, sizeof *q);
	if (q == NULL)
		return -ENOMEM;
	if (p->state == P_IDLE) {
		peer_connect(p);
		if (p->state != P_CONNECTING) {
			free(q);
			return -ECONNREFUSED;
		}
	}
	q->pt = buf_steal(pt, &q->len);
	q->req = req;
	q->cb = cb;
	*p->qtail = q;
	p->qtail = &q->next;
	p->qcount++;
	p->qbytes += q->len;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* raftio vtable */

static struct transport *from_io(struct raftio_transport *io)
{
	return (struct transport *)((char *)io - offsetof(struct transport, io));
}

static int t_start(struct raftio_transport *io, raft_id id, const char *address,
		   void (*recv)(struct raftio_transport *t, struct raft_message *msg, void *arg),
		   void *arg)
{
	struct transport *t = from_io(io);
	if (t->closing)
		return RAFT_CANCELED;
	if (t->started)
		return RAFT_BUSY;
	char *copy = strdup(address);
	if (copy == NULL)
		return RAFT_NOMEM;
	int rv = listen_on(t, address);
	if (rv != 0) {
		free(copy);
		return rv;
	}
	free(t->address);
	t->address = copy;
	(void)id; /* the identity says who this node is */
	t->recv = recv;
	t->recv_arg = arg;
	t->started = true;
	return 0;
}

static int t_send(struct raftio_transport *io, struct raft_io_send *req,
		  const struct raft_message *msg, raft_io_send_cb cb)
{
	struct transport *t = from_io(io);
	if (t->closing)
		return RAFT_CANCELED;
	struct buf pt;
	buf_init(&pt);
	buf_put_u8(&pt, K_RAFT);
	int rv = msgcodec_encode(msg, &pt);
	if (rv != 0) {
		buf_free(&pt);
		return rv == -ENOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
	}
	struct peer *p = msg->server_address != NULL ? peer_get(t, msg->server_address) : NULL;
	rv = p != NULL ? peer_submit(p, &pt, req, cb) : -ECONNREFUSED;
	if (rv != 0) {
		/* Raft retries on its own; the callback reports the failure. */
		buf_free(&pt);
		defer_send(t, req, cb, RAFT_NOCONNECTION);
	}
	return 0;
}

static void peer_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	handle_closed(p->t);
}

static void shutdown_all(struct transport *t)
{
	if (t->closing)
		return;
	t->closing = true;
	if (t->listener != NULL) {
		uv_close((uv_handle_t *)t->listener, listener_closed);
		t->listener = NULL;
	}
	for (struct conn *c = t->conns; c != NULL; c = c->next)
		conn_close(c, NULL);
	for (struct peer *p = t->peers; p != NULL; p = p->next) {
		peer_fail_queue(p, RAFT_CANCELED);
		uv_close((uv_handle_t *)&p->timer, peer_timer_closed);
	}
	for (struct rpc *r = t->rpcs; r != NULL; r = r->next)
		rpc_fail_async(r, -ESHUTDOWN);
	maybe_finish(t);
}

static void t_close(struct raftio_transport *io, void (*cb)(void *arg), void *arg)
{
	struct transport *t = from_io(io);
	t->close_cb = cb;
	t->close_arg = arg;
	shutdown_all(t);
}

static void transport_destroy(struct transport *t)
{
	struct peer *p = t->peers;
	while (p != NULL) {
		struct peer *next = p->next;
		free(p->address);
		free(p);
		p = next;
	}
	secmem_free(t->key_scratch);
	secmem_free(t->identity);
	free(t->address);
	free(t);
}

static void final_closed(uv_handle_t *h)
{
	struct transport *t = h->data;
	void (*cb)(void *) = t->close_cb;
	void *arg = t->close_arg;
	transport_destroy(t);
	if (cb != NULL)
		cb(arg);
}

static void maybe_finish(struct transport *t)
{
	if (!t->closing || t->finishing || t->handles > 0 || t->defer_head != NULL)
		return;
	t->finishing = true;
	uv_close((uv_handle_t *)&t->defer_timer, final_closed);
}

/* ------------------------------------------------------------------------ */
/* Public API */

int transport_new(struct transport **ret, const struct transport_config *cfg)
{
	if (cfg == NULL || cfg->loop == NULL || cfg->cluster_key == NULL || cfg->identity == NULL)
		return -EINVAL;
	struct transport *t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	t->key_scratch = secmem_alloc(CHANNEL_KEY_LEN);
	t->identity = secmem_alloc(sizeof *t->identity);
	if (t->key_scratch == NULL || t->identity == NULL) {
		secmem_free(t->key_scratch);
		secmem_free(t->identity);
		free(t);
		return -ENOMEM;
	}
	t->cluster_key = cfg->cluster_key;
	*t->identity = *cfg->identity;
	t->identify = cfg->identify;
	t->loop = cfg->loop;
	t->rpc_handler = cfg->rpc_handler;
	t->join_provider = cfg->join_provider;
	t->peer_gone = cfg->peer_gone;
	t->ctx = cfg->ctx;
	t->hs_timeout_ms = cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms
							  : HANDSHAKE_TIMEOUT_MS;
	t->io.start = t_start;
	t->io.send = t_send;
	t->io.close = t_close;
	t->defer_tail = &t->defer_head;
	uv_timer_init(t->loop, &t->defer_timer);
	t->defer_timer.data = t;
	*ret = t;
	return 0;
}

struct raftio_transport *transport_raftio(struct transport *t)
{
	return &t->io;
}

void transport_free_unused(struct transport *t)
{
	if (t == NULL)
		return;
	t->close_cb = NULL;
	shutdown_all(t);
}

int transport_rpc(struct transport *t, const char *address, uint16_t type, const void *payload,
		  size_t len, unsigned timeout_ms, transport_rpc_cb cb, void *arg)
{
	char host[RAFTADDR_HOST_MAX];
	int port;
	if (t->closing)
		return -ESHUTDOWN;
	if (cb == NULL || address == NULL || raftaddr_host_port(address, host, &port) != 0)
		return -EINVAL;
	if (len > TRANSPORT_MAX_RPC)
		return -EMSGSIZE;
	struct peer *p = peer_get(t, address);
	struct rpc *r = calloc(1, sizeof *r);
	if (p == NULL || r == NULL) {
		free(r);
		return -ENOMEM;
	}
	struct buf pt;
	buf_init(&pt);
	r->id = ++t->next_rpc_id;
	buf_put_u8(&pt, K_RPC_REQ);
	buf_put_u64(&pt, r->id);
	buf_put_u16(&pt, type);
	buf_put_raw(&pt, payload, len);
	if (pt.err != 0) {
		buf_free(&pt);
		free(r);
		return -ENOMEM;
	}
	/* Linked before submitting, so that a connection failing inside the
	 * submission fails this RPC too. */
	r->t = t;
	r->peer = p;
	r->cb = cb;
	r->arg = arg;
	uv_timer_init(t->loop, &r->timer);
	r->timer.data = r;
	t->handles++;
	r->next = t->rpcs;
	if (t->rpcs != NULL)
		t->rpcs->prev = r;
	t->rpcs = r;
	uv_timer_start(&r->timer, rpc_timer_cb, timeout_ms, 0);
	int rv = peer_submit(p, &pt, NULL, NULL);
	buf_free(&pt);
	if (rv == -ECONNREFUSED) {
		rpc_fail_async(r, -ECONNREFUSED);
	} else if (rv != 0) {
		rpc_unlink(r);
		r->done = true;
		uv_close((uv_handle_t *)&r->timer, rpc_closed);
		return rv;
	}
	return 0;
}

static void rpc_req_release(struct in_req *in)
{
	struct conn *c = in->conn;
	explicit_bzero(in->payload, in->pub.len);
	free(in);
	if (--c->refs == 0 && c->t == NULL)
		conn_free_detached(c);
}

/* Answers are all an inbound connection carries after the handshake, and
 * nothing else bounds them: a peer that keeps asking and never reads would
 * make them pile up here. Past WRITE_QUEUE_MAX unwritten bytes it loses the
 * connection. Raft sends to a slow member (outbound connections) are
 * bounded by peer_submit instead, which refuses the message (Raft retries)
 * and leaves the connection up. */
static bool reply_backlog_full(struct conn *c, size_t len)
{
	size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
	return queued > WRITE_QUEUE_MAX || len > WRITE_QUEUE_MAX - queued;
}

void transport_rpc_reply(struct transport_rpc_req *req, int status, const void *payload,
			 size_t len)
{
	struct in_req *in = req->priv;
	struct conn *c = in->conn;
	if (c->t != NULL && !c->closing && c->state == C_READY) {
		if (len > TRANSPORT_MAX_RPC) {
			status = -EMSGSIZE;
			len = 0;
		}
		if (status > 0)
			status = -EPROTO;
		struct buf pt;
		buf_init(&pt);
		buf_put_u8(&pt, K_RPC_RESP);
		buf_put_u64(&pt, in->id);
		buf_put_i32(&pt, status);
		if (status == 0)
			buf_put_raw(&pt, payload, len);
		if (pt.err == 0 && reply_backlog_full(c, pt.len))
			conn_close(c, "it does not read its answers (more than 32 MiB unwritten)");
		else if (pt.err != 0 || conn_send_plain(c, pt.data, pt.len, NULL, NULL) != 0)
			conn_close(c, "out of memory");
		buf_free(&pt);
	}
	rpc_req_release(in);
}

void transport_rpc_drop(struct transport_rpc_req *req)
{
	rpc_req_release(req->priv);
}
