/* The join-info client (transport.h, transport_join_fetch): one
 * unauthenticated exchange with a member, "VFSJ" u8 version -> u32 status,
 * u32 len, payload, close, by which a new node fetches the cluster's
 * sealed keyring. Needs no key and no transport. */
#include "raft/transport.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "raft/raftaddr.h"

#define JOIN_HEADER_LEN 8u /* u32 status, u32 length */

static void jf_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(suggested);
	b->len = b->base != NULL ? suggested : 0;
}

struct transport_join_fetch {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t connect;
	uv_write_t write;
	uv_getaddrinfo_t gai;
	bool gai_pending, tcp_open, done, canceled;
	int handles;
	int port;
	struct buf rx;
	transport_rpc_cb cb;
	void *arg;
};

static void jf_maybe_free(struct transport_join_fetch *f)
{
	if (f->handles > 0 || f->gai_pending || !f->done)
		return;
	buf_free(&f->rx);
	free(f);
}

static void jf_closed(uv_handle_t *h)
{
	struct transport_join_fetch *f = h->data;
	f->handles--;
	jf_maybe_free(f);
}

static void jf_teardown(struct transport_join_fetch *f)
{
	f->done = true;
	if (f->gai_pending)
		uv_cancel((uv_req_t *)&f->gai);
	if (!uv_is_closing((uv_handle_t *)&f->timer))
		uv_close((uv_handle_t *)&f->timer, jf_closed);
	if (f->tcp_open && !uv_is_closing((uv_handle_t *)&f->tcp))
		uv_close((uv_handle_t *)&f->tcp, jf_closed);
	jf_maybe_free(f);
}

static void jf_finish(struct transport_join_fetch *f, int status, const uint8_t *p, size_t len)
{
	if (f->done)
		return;
	bool call = !f->canceled;
	f->done = true;
	if (call)
		f->cb(f->arg, status, p, len);
	jf_teardown(f);
}

static void jf_timeout(uv_timer_t *h)
{
	jf_finish(h->data, -ETIMEDOUT, NULL, 0);
}

/* Returns true once the answer is complete (and delivered). */
static bool jf_parse(struct transport_join_fetch *f, bool eof)
{
	if (f->rx.len < JOIN_HEADER_LEN) {
		if (eof)
			jf_finish(f, f->rx.len == 0 ? -ECONNRESET : -EBADMSG, NULL, 0);
		return eof;
	}
	struct cursor cur;
	cursor_init(&cur, f->rx.data, f->rx.len);
	uint32_t status = cursor_u32(&cur);
	uint32_t len = cursor_u32(&cur);
	if (len > TRANSPORT_MAX_RPC || status > 4095 || (status != 0 && len != 0) ||
	    cur.left > len) {
		jf_finish(f, -EBADMSG, NULL, 0);
		return true;
	}
	if (cur.left < len) {
		if (eof)
			jf_finish(f, -EBADMSG, NULL, 0);
		return eof;
	}
	if (status != 0)
		jf_finish(f, -(int)status, NULL, 0);
	else
		jf_finish(f, 0, cur.p, len);
	return true;
}

static void jf_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct transport_join_fetch *f = s->data;
	if (!f->done) {
		if (nread > 0) {
			buf_put_raw(&f->rx, b->base, (size_t)nread);
			if (f->rx.err != 0)
				jf_finish(f, -ENOMEM, NULL, 0);
			else
				jf_parse(f, false);
		} else if (nread == UV_EOF) {
			jf_parse(f, true);
		} else if (nread < 0) {
			jf_finish(f, (int)nread, NULL, 0);
		}
	}
	free(b->base);
}

static void jf_written(uv_write_t *w, int status)
{
	struct transport_join_fetch *f = w->data;
	if (status != 0 && status != UV_ECANCELED)
		jf_finish(f, status, NULL, 0);
}

static void jf_connected(uv_connect_t *req, int status)
{
	struct transport_join_fetch *f = req->data;
	if (f->done)
		return;
	if (status != 0) {
		jf_finish(f, status, NULL, 0);
		return;
	}
	/* One write: a responder reads the version only if it came with the
	 * magic (it answers version 0 otherwise, which the caller reads too). */
	static char request[] = TRANSPORT_JOIN_MAGIC "\x01";
	static_assert(TRANSPORT_JOIN_VERSION == 1, "the request names the version");
	uv_buf_t b = uv_buf_init(request, 5);
	f->write.data = f;
	int rv = uv_write(&f->write, (uv_stream_t *)&f->tcp, &b, 1, jf_written);
	if (rv == 0)
		rv = uv_read_start((uv_stream_t *)&f->tcp, jf_alloc, jf_read);
	if (rv != 0)
		jf_finish(f, rv, NULL, 0);
}

static int jf_connect(struct transport_join_fetch *f, const struct sockaddr *sa)
{
	int rv = uv_tcp_init(f->loop, &f->tcp);
	if (rv != 0)
		return rv;
	f->tcp.data = f;
	f->tcp_open = true;
	f->handles++;
	f->connect.data = f;
	return uv_tcp_connect(&f->connect, &f->tcp, sa, jf_connected);
}

static void jf_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct transport_join_fetch *f = req->data;
	f->gai_pending = false;
	if (!f->done) {
		int rv = status;
		if (rv == 0) {
			raftaddr_set_port(res->ai_addr, f->port);
			rv = jf_connect(f, res->ai_addr);
		}
		if (rv != 0)
			jf_finish(f, rv == UV_EAI_NONAME ? -EHOSTUNREACH : rv, NULL, 0);
	}
	uv_freeaddrinfo(res);
	jf_maybe_free(f);
}

int transport_join_fetch(uv_loop_t *loop, const char *address, unsigned timeout_ms,
			 transport_rpc_cb cb, void *arg, struct transport_join_fetch **ret_fetch)
{
	char host[RAFTADDR_HOST_MAX];
	struct sockaddr_storage ss;
	if (loop == NULL || address == NULL || cb == NULL ||
	    raftaddr_host_port(address, host, &(int){0}) != 0)
		return -EINVAL;
	struct transport_join_fetch *f = calloc(1, sizeof *f);
	if (f == NULL)
		return -ENOMEM;
	f->loop = loop;
	f->cb = cb;
	f->arg = arg;
	buf_init(&f->rx);
	raftaddr_host_port(address, host, &f->port);
	uv_timer_init(loop, &f->timer);
	f->timer.data = f;
	f->handles++;
	int rv;
	if (raftaddr_sockaddr(host, f->port, &ss) == 0) {
		rv = jf_connect(f, (struct sockaddr *)&ss);
	} else {
		struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
		f->gai.data = f;
		rv = uv_getaddrinfo(loop, &f->gai, jf_resolved, host, NULL, &hints);
		f->gai_pending = rv == 0;
	}
	if (rv != 0) {
		f->canceled = true;
		jf_teardown(f);
		return rv;
	}
	uv_timer_start(&f->timer, jf_timeout, timeout_ms, 0);
	*ret_fetch = f;
	return 0;
}

void transport_join_cancel(struct transport_join_fetch *f)
{
	if (f == NULL || f->done)
		return;
	f->canceled = true;
	jf_teardown(f);
}
