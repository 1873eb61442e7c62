/* Outbound peers, one per Raft address: the messages queued while a
 * connection is being made, dialing (resolving, connecting, sending
 * HELLO), backoff after a failed attempt, and probes that tell a peer gone
 * (transport_internal.h). */
#include "raft/transport_internal.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "raft/raftaddr.h"

static void peer_connect(struct peer *p);
static void peer_flush(struct peer *p);
static void peer_probe(struct peer *p);

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
			transport_defer_send(p->t, q->req, q->cb, status);
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

void transport_peer_conn_lost(struct peer *p, bool ever_ready, const char *why)
{
	struct transport *t = p->t;
	p->conn = NULL;
	if (t->closing) {
		p->state = P_IDLE;
		peer_fail_queue(p, RAFT_CANCELED);
		return;
	}
	peer_fail_queue(p, RAFT_NOCONNECTION);
	transport_rpcs_fail_peer(t, p, ever_ready ? -ECONNRESET : -ECONNREFUSED);
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

struct peer *transport_peer_get(struct transport *t, const char *address)
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

void transport_peer_ready(struct peer *p)
{
	p->state = P_READY;
	p->backoff_ms = 0;
	p->probes = 0;
	if (p->warned)
		log_info("cluster transport: connected to %s", p->address);
	p->warned = false;
	peer_flush(p);
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
		transport_conn_close(c, uv_strerror(status));
		if (gone && !c->t->closing)
			c->t->peer_gone(c->t->ctx, p->address);
		return;
	}
	transport_conn_tune_socket(&c->tcp);
	struct buf out;
	buf_init(&out);
	int rv = channel_new(&c->ch, c->t->identity, c->t->cluster_key, c->t->ctx);
	if (rv == 0)
		rv = channel_hello(c->ch, &out);
	if (rv == 0)
		rv = uv_read_start((uv_stream_t *)&c->tcp, transport_wire_alloc_cb,
				   transport_wire_read_cb);
	if (rv != 0) {
		buf_free(&out);
		const char *why = rv == -ENOMEM ? "out of memory" : uv_strerror(rv);
		transport_conn_close(c, rv == -ENOKEY ? transport_wire_step_error(rv) : why);
		return;
	}
	c->state = C_OUT_REPLY;
	transport_conn_write_buf(c, &out);
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
			transport_conn_close(c, uv_strerror(rv));
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
	struct conn *c = transport_conn_new(t, false);
	if (c == NULL) {
		p->state = P_CONNECTING;
		transport_peer_conn_lost(p, false, "out of memory");
		return;
	}
	c->state = C_OUT_CONNECTING;
	c->peer = p;
	p->conn = c;
	p->state = P_CONNECTING;
	int rv = conn_dial(c, p->address);
	if (rv != 0)
		transport_conn_close(c, rv == -EINVAL ? "invalid address" : uv_strerror(rv));
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
		int rv = transport_wire_send(p->conn, q->pt, q->len, q->req, q->cb);
		if (rv != 0 && q->req != NULL)
			transport_defer_send(p->t, q->req, q->cb, RAFT_NOCONNECTION);
		explicit_bzero(q->pt, q->len);
		free(q->pt);
		free(q);
	}
}

int transport_peer_submit(struct peer *p, struct buf *pt, struct raft_io_send *req,
			  raft_io_send_cb cb)
{
	if (p->state == P_READY) {
		assert(p->conn != NULL);
		if (uv_stream_get_write_queue_size((uv_stream_t *)&p->conn->tcp) > WRITE_QUEUE_MAX)
			return -ENOBUFS;
		int rv = transport_wire_send(p->conn, pt->data, pt->len, req, cb);
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
/* Closing */

static void peer_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	transport_handle_closed(p->t);
}

void transport_peer_close(struct peer *p)
{
	peer_fail_queue(p, RAFT_CANCELED);
	uv_close((uv_handle_t *)&p->timer, peer_timer_closed);
}

void transport_peer_free_all(struct transport *t)
{
	struct peer *p = t->peers;
	while (p != NULL) {
		struct peer *next = p->next;
		free(p->address);
		free(p);
		p = next;
	}
}

