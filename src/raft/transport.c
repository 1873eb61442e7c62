/* Cluster transport over libuv TCP; see transport.h for the contract.
 *
 * Wire, per connection:
 *   initiator: HELLO (73) ... AUTH (32), then channel frames (crypto/channel.h)
 *   responder: REPLY (100), then channel frames
 * or, unauthenticated: "VFSJ" [u8 version] -> u32 status, u32 len, payload,
 * close.
 * Frame plaintext: u8 kind + body:
 *   0 ADDRESS   the initiator's Raft address (first frame, initiator only;
 *               for logs: messages are attributed by proven identity)
 *   1 RAFT      msgcodec message (initiator -> responder)
 *   2 RPC_REQ   u64 rpc_id (its top byte the payload's version), u16 type,
 *               payload (initiator -> responder)
 *   3 RPC_RESP  u64 rpc_id, i32 status, payload (responder -> initiator)
 *   4 FRAGMENT  leading part of a message larger than one channel frame; the
 *               final part comes with the real kind.
 *
 * Ownership: the transport owns peers (outbound, keyed by address), every
 * connection, every pending RPC and the deferred send completions. A
 * connection's memory outlives its handles while incoming RPC requests still
 * reference it. Nothing is freed synchronously inside a public call: every
 * free happens from a libuv close callback, so callers' callbacks can re-enter
 * the transport (even close it) without invalidating what is on the stack.
 *
 * The parts, sharing transport_internal.h:
 *   transport.c       this file: handle accounting, deferred send
 *                     completions, RPCs sent and answered, the limits per
 *                     source of inbound connections, the listener, the
 *                     raft_io methods and the API of transport.h;
 *   transport_conn.c  a connection's life: its handles, writes, closing;
 *   transport_wire.c  the protocol on a connection: handshake steps,
 *                     framing and fragments, what a frame may carry,
 *                     join-info answers, delivery of what arrives;
 *   transport_peer.c  outbound peers: queueing while connecting, dialing,
 *                     backoff and probes;
 *   transport_join.c  the join-info client, which needs no transport. */
#include "raft/transport_internal.h"

#include <assert.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "crypto/secmem.h"
#include "lib/log.h"
#include "raft/msgcodec.h"
#include "raft/raftaddr.h"

static void maybe_finish(struct transport *t);
static void defer_kick(struct transport *t);

/* ------------------------------------------------------------------------ */
/* Handle accounting and deferred send callbacks */

void transport_handle_closed(struct transport *t)
{
	assert(t->handles > 0);
	t->handles--;
	maybe_finish(t);
}

void transport_defer_send(struct transport *t, struct raft_io_send *req, raft_io_send_cb cb,
			  int status)
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
/* RPC client side */

static void rpc_closed(uv_handle_t *h)
{
	struct rpc *r = h->data;
	struct transport *t = r->t;
	free(r);
	transport_handle_closed(t);
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

void transport_rpc_finish(struct rpc *r, int status, const uint8_t *resp, size_t len)
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
	transport_rpc_finish(r, r->fail_status != 0 ? r->fail_status : -ETIMEDOUT, NULL, 0);
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

void transport_rpcs_fail_peer(struct transport *t, struct peer *p, int status)
{
	for (struct rpc *r = t->rpcs; r != NULL; r = r->next)
		if (r->peer == p)
			rpc_fail_async(r, status);
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

unsigned transport_source_count(struct transport *t, const struct source *src, bool join,
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
/* What peers may make us log */

bool transport_log_allowed(struct transport *t, struct log_budget *b, char *note,
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
		unsigned n = c->unauth ? transport_source_count(t, &c->src, false, NULL) : 0;
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
	if (transport_source_count(t, &c->src, false, &victim) >= MAX_UNAUTH_PER_SOURCE) {
		log_source_flood(t, &c->src);
		transport_conn_close(victim, transport_conn_why_evicted_source);
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
		transport_conn_close(victim, transport_conn_why_evicted);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct transport *t = server->data;
	if (status < 0) {
		log_warn("cluster transport: accept failed: %s", uv_strerror(status));
		return;
	}
	struct conn *c = transport_conn_new(t, true);
	if (c == NULL) {
		log_warn("cluster transport: out of memory accepting a connection");
		return;
	}
	c->state = C_IN_MAGIC;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		transport_conn_close(c, NULL);
		return;
	}
	source_of(&c->tcp, &c->src);
	unauth_make_room(t, c);
	c->unauth = true;
	t->n_unauth++;
	transport_conn_tune_socket(&c->tcp);
	int rv = uv_read_start((uv_stream_t *)&c->tcp, transport_wire_alloc_cb,
			       transport_wire_read_cb);
	if (rv != 0)
		transport_conn_close(c, uv_strerror(rv));
}

static void listener_closed(uv_handle_t *h)
{
	struct transport *t = h->data;
	free(h);
	transport_handle_closed(t);
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
	struct peer *p =
		msg->server_address != NULL ? transport_peer_get(t, msg->server_address) : NULL;
	rv = p != NULL ? transport_peer_submit(p, &pt, req, cb) : -ECONNREFUSED;
	if (rv != 0) {
		/* Raft retries on its own; the callback reports the failure. */
		buf_free(&pt);
		transport_defer_send(t, req, cb, RAFT_NOCONNECTION);
	}
	return 0;
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
		transport_conn_close(c, NULL);
	for (struct peer *p = t->peers; p != NULL; p = p->next)
		transport_peer_close(p);
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
	transport_peer_free_all(t);
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
	t->rpc_version = cfg->rpc_version;
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
	return transport_rpc_in(t, t->rpc_version, address, type, payload, len, timeout_ms, cb,
				arg);
}

int transport_rpc_in(struct transport *t, uint8_t version, const char *address, uint16_t type,
		     const void *payload, size_t len, unsigned timeout_ms, transport_rpc_cb cb,
		     void *arg)
{
	char host[RAFTADDR_HOST_MAX];
	int port;
	assert(version <= t->rpc_version);
	if (t->closing)
		return -ESHUTDOWN;
	if (cb == NULL || address == NULL || raftaddr_host_port(address, host, &port) != 0)
		return -EINVAL;
	if (len > TRANSPORT_MAX_RPC)
		return -EMSGSIZE;
	struct peer *p = transport_peer_get(t, address);
	struct rpc *r = calloc(1, sizeof *r);
	if (p == NULL || r == NULL) {
		free(r);
		return -ENOMEM;
	}
	struct buf pt;
	buf_init(&pt);
	r->id = (uint64_t)version << TRANSPORT_RPC_VERSION_SHIFT |
		(++t->next_rpc_id & ((UINT64_C(1) << TRANSPORT_RPC_VERSION_SHIFT) - 1));
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
	int rv = transport_peer_submit(p, &pt, NULL, NULL);
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
	assert(c->refs > 0);
	explicit_bzero(in->payload, in->pub.len);
	free(in);
	if (--c->refs == 0 && c->t == NULL)
		transport_conn_free_detached(c);
}

/* Answers are all an inbound connection carries after the handshake, and
 * nothing else bounds them: a peer that keeps asking and never reads would
 * make them pile up here. Past WRITE_QUEUE_MAX unwritten bytes it loses the
 * connection. Raft sends to a slow member (outbound connections) are
 * bounded by transport_peer_submit instead, which refuses the message (Raft retries)
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
			transport_conn_close(c, "it does not read its answers "
						 "(more than 32 MiB unwritten)");
		else if (pt.err != 0 || transport_wire_send(c, pt.data, pt.len, NULL, NULL) != 0)
			transport_conn_close(c, "out of memory");
		buf_free(&pt);
	}
	rpc_req_release(in);
}

void transport_rpc_drop(struct transport_rpc_req *req)
{
	rpc_req_release(req->priv);
}
