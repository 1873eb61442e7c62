/* A connection's life: its handles (socket and handshake deadline), the
 * line logged when an inbound one is dropped, closing, and writing bytes
 * to it (transport_internal.h). Its memory outlives the handles while RPC
 * requests that arrived on it are unanswered (in_req). */
#include "raft/transport_internal.h"

#include <assert.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "lib/log.h"

/* ------------------------------------------------------------------------ */
/* Life cycle */

static const char why_timeout[] = "handshake timed out";
const char transport_conn_why_evicted[] = "evicted: too many unauthenticated connections";
const char transport_conn_why_evicted_source[] =
	"evicted: too many unauthenticated connections from its address";

static void conn_timeout_cb(uv_timer_t *h)
{
	transport_conn_close(h->data, why_timeout);
}

struct conn *transport_conn_new(struct transport *t, bool inbound)
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

static void conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct transport *t = c->t;
	assert(c->handles > 0);
	if (--c->handles > 0) {
		transport_handle_closed(t);
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
	transport_handle_closed(t);
}

void transport_conn_free_detached(struct conn *c)
{
	assert(c->t == NULL && c->refs == 0);
	channel_free(c->ch);
	buf_free(&c->rx);
	buf_free(&c->frag);
	free(c->peer_address);
	free(c);
}

void transport_conn_peer_ip(struct conn *c, char *out, size_t out_len)
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
	bool ours = why == why_timeout || why == transport_conn_why_evicted ||
		    why == transport_conn_why_evicted_source;
	if (c->state == C_IN_MAGIC && c->rx.len == 0 && !ours) {
		log_debug("cluster transport: connection closed before sending anything: %s", why);
		return;
	}
	bool join = c->state == C_JOIN;
	if (!transport_log_allowed(c->t, join ? &c->t->join_log : &c->t->drop_log, note,
				   sizeof note))
		return;
	if (c->peer_address != NULL && c->peer_address[0] != '\0') {
		log_warn("cluster transport: dropped connection from %s: %s%s", c->peer_address,
			 why, note);
		return;
	}
	transport_conn_peer_ip(c, who, sizeof who);
	log_warn("cluster transport: dropped %sconnection from %s: %s%s",
		 join ? "join-info " : c->unauth ? "unauthenticated " : "", who, why, note);
}

void transport_conn_close(struct conn *c, const char *why)
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
		assert(t->n_unauth > 0);
		c->unauth = false;
		t->n_unauth--;
	}
	if (c->joining) {
		assert(t->n_join > 0);
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
			transport_peer_conn_lost(p, was_ready, why);
	}
}

void transport_conn_tune_socket(uv_tcp_t *tcp)
{
	uv_os_fd_t fd;
	unsigned user_timeout_ms = 10000;
	uv_tcp_nodelay(tcp, 1);
	uv_tcp_keepalive(tcp, 1, 5);
	if (uv_fileno((uv_handle_t *)tcp, &fd) == 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
				 sizeof user_timeout_ms);
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
		transport_conn_close(c, status == UV_ECANCELED ? NULL : uv_strerror(status));
	else if (wr->close_after)
		transport_conn_close(c, NULL);
	free(wr);
}

void transport_conn_write(struct conn *c, uint8_t *data, size_t len, struct raft_io_send *req,
			  raft_io_send_cb cb, bool close_after)
{
	/* Raft sends go through a peer's live connection, whose transport
	 * is set until its handles close: a completion always has a home. */
	assert(req == NULL || c->t != NULL);
	struct wreq *wr = calloc(1, sizeof *wr);
	if (wr == NULL || c->closing) {
		free(wr);
		free(data);
		if (req != NULL)
			transport_defer_send(c->t, req, cb, RAFT_NOCONNECTION);
		if (!c->closing)
			transport_conn_close(c, "out of memory");
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
			transport_defer_send(c->t, req, cb, 0);
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
			transport_defer_send(c->t, req, cb, RAFT_NOCONNECTION);
		transport_conn_close(c, uv_strerror(rv));
	}
}

void transport_conn_write_buf(struct conn *c, struct buf *b)
{
	if (b->err != 0) {
		buf_free(b);
		transport_conn_close(c, "out of memory");
		return;
	}
	size_t len;
	uint8_t *data = buf_steal(b, &len);
	transport_conn_write(c, data, len, NULL, NULL, false);
}
