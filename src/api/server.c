/* Local API server: a libuv Unix-socket listener owned by the loop thread.
 *
 * Lifetimes: a connection struct is referenced by its libuv handle (until the
 * close callback) and by every request handed to the handler (until
 * api_reply), so a deferred reply never touches freed memory. The server is
 * freed once it was stopped, all handles are closed and every connection
 * struct is gone. */
#include "api/server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fileutil.h"
#include "lib/log.h"
#include "vaultfs/proto.h"

/* Per-connection memory bounds: past either limit the server stops reading
 * from that client until it has drained to half. */
#define API_MAX_OUTSTANDING 256u
#define API_MAX_PENDING_OUT (64u * 1024u * 1024u)
#define API_READ_CHUNK (64u * 1024u)
/* An idle connection gives back an input buffer grown by a large frame. */
#define API_KEEP_INPUT (256u * 1024u)
#define API_BACKLOG 128

struct api_server {
	uv_loop_t *loop;
	uv_pipe_t pipe;
	char *path;
	dev_t sock_dev; /* identity of our socket file, so stop removes only ours */
	ino_t sock_ino;
	api_handler_fn handler;
	void *ctx;
	const struct api_watch_hooks *watch;
	const struct api_observer *observer;
	uint32_t hello_flags;   /* VFS_HELLO_* told to version-4 clients */
	struct api_conn *conns; /* every connection struct not yet freed */
	unsigned handles;       /* open libuv handles: listener + connections */
	bool stopping;
	bool stop_cb_done;
	bool in_stop_cb; /* the stop callback is running: do not free yet */
	void (*stop_cb)(void *arg);
	void *stop_arg;
};

struct api_conn {
	uv_pipe_t pipe;
	struct api_server *srv;
	struct api_conn *prev, *next;
	unsigned refs;        /* handle (until close cb) + outstanding requests */
	unsigned outstanding; /* requests held by the handler */
	size_t pending_out;   /* response bytes queued in uv_write */
	struct buf in;        /* received bytes not yet parsed into frames */
	uint32_t peer_uid;
	int peer_pid;
	bool closing;
	uint32_t version;  /* the client's, from HELLO; 0 before it */
	bool watching;     /* a WATCH connection: notices out, acks in */
	uint32_t watch_id; /* the WATCH request's id, carried by every notice */
	bool reading;
	bool processing; /* guards against re-entry from synchronous replies */
};

struct api_req_priv {
	struct api_request pub;
	uint64_t received_ns; /* uv_hrtime when it arrived */
	size_t alloc_len;
	uint8_t payload[];
};

struct api_write {
	uv_write_t req;
	struct api_conn *conn;
	struct buf frame;
};

static void server_check_done(struct api_server *s);
static void conn_process(struct api_conn *conn);

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *errmsg, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (errmsg == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errmsg, errlen, fmt, ap);
	va_end(ap);
}

/* ---- connection lifetime ---- */

/* Tells the observer how many processes are connected (conns with a
 * known pid, each pid once). */
static void count_clients(struct api_server *s)
{
	if (s->observer == NULL)
		return;
	unsigned n = 0;
	for (const struct api_conn *c = s->conns; c != NULL; c = c->next) {
		const struct api_conn *d = s->conns;
		while (d != c && d->peer_pid != c->peer_pid)
			d = d->next;
		n += c->peer_pid >= 0 && d == c;
	}
	s->observer->clients(s->ctx, n);
}

static void conn_free(struct api_conn *conn)
{
	struct api_server *s = conn->srv;
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		s->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	buf_free(&conn->in);
	free(conn);
	count_clients(s);
	server_check_done(s);
}

/* Returns true when the struct was freed. */
static bool conn_unref(struct api_conn *conn)
{
	if (--conn->refs > 0)
		return false;
	conn_free(conn);
	return true;
}

static void conn_close_cb(uv_handle_t *h)
{
	struct api_conn *conn = h->data;
	struct api_server *s = conn->srv;
	s->handles--;
	/* Input may hold secrets; do not keep it until the last reply. */
	buf_free(&conn->in);
	if (!conn_unref(conn))
		server_check_done(s);
}

static void conn_close(struct api_conn *conn)
{
	if (conn->closing)
		return;
	conn->closing = true;
	conn->reading = false;
	if (conn->watching && conn->srv->watch != NULL)
		conn->srv->watch->gone(conn->srv->ctx, conn);
	uv_close((uv_handle_t *)&conn->pipe, conn_close_cb);
}

static void conn_drop(struct api_conn *conn, const char *why)
{
	log_warn("api: closing connection from pid %d uid %u: %s", conn->peer_pid,
		 conn->peer_uid, why);
	conn_close(conn);
}

/* ---- output ---- */

static bool conn_over_limit(const struct api_conn *conn)
{
	return conn->outstanding >= API_MAX_OUTSTANDING ||
	       conn->pending_out >= API_MAX_PENDING_OUT;
}

static void conn_maybe_resume(struct api_conn *conn)
{
	if (conn->closing || conn->reading || conn->processing)
		return;
	/* Hysteresis: resume only at half the limits so a busy client does not
	 * flip reading on and off for every reply. */
	if (conn->outstanding > API_MAX_OUTSTANDING / 2 ||
	    conn->pending_out > API_MAX_PENDING_OUT / 2)
		return;
	conn_process(conn);
}

static void write_cb(uv_write_t *req, int status)
{
	struct api_write *w = req->data;
	struct api_conn *conn = w->conn;
	conn->pending_out -= w->frame.len;
	buf_free(&w->frame);
	free(w);
	if (status < 0 && status != UV_ECANCELED && !conn->closing) {
		log_debug("api: write to pid %d failed: %s", conn->peer_pid, uv_strerror(status));
		conn_close(conn);
		return;
	}
	conn_maybe_resume(conn);
}

static void conn_send(struct api_conn *conn, uint32_t id, int32_t status,
		      const struct vfs_resp_meta *meta, const void *payload, uint32_t len)
{
	struct api_write *w = malloc(sizeof(*w));
	if (w == NULL) {
		conn_drop(conn, "out of memory for a response");
		return;
	}
	w->conn = conn;
	w->req.data = w;
	buf_init(&w->frame);
	vfs_resp_frame(&w->frame, id, status, meta, payload, len);
	if (w->frame.err != 0) {
		buf_free(&w->frame);
		free(w);
		conn_drop(conn, "out of memory for a response");
		return;
	}
	uv_buf_t ub = uv_buf_init((char *)w->frame.data, (unsigned)w->frame.len);
	/* Most answers fit the socket buffer: written at once, they cost no
	 * write request and no poll for writability (uv_write would ask the
	 * kernel to stop polling again after every one). uv_try_write refuses
	 * while earlier bytes are queued, so the order holds. */
	int r = uv_try_write((uv_stream_t *)&conn->pipe, &ub, 1);
	if (r == (int)ub.len) {
		buf_free(&w->frame);
		free(w);
		return;
	}
	if (r >= 0 || r == UV_EAGAIN || r == UV_ENOSYS) {
		size_t done = r > 0 ? (size_t)r : 0;
		ub = uv_buf_init((char *)w->frame.data + done, (unsigned)(w->frame.len - done));
		r = uv_write(&w->req, (uv_stream_t *)&conn->pipe, &ub, 1, write_cb);
	}
	if (r < 0) {
		buf_free(&w->frame);
		free(w);
		conn_drop(conn, uv_strerror(r));
		return;
	}
	conn->pending_out += w->frame.len;
}

void api_reply(struct api_request *req, int status, const void *payload, size_t len)
{
	struct api_req_priv *priv = (struct api_req_priv *)req;
	struct api_conn *conn = req->conn;

	if (status > 0 || status < -4095) {
		log_error("api: handler replied to op %u with invalid status %d", req->op, status);
		status = -EIO;
	}
	if (status == 0 && len > VFS_MAX_FRAME - VFS_RESP_HEADER_LEN) {
		log_error("api: response to op %u too large (%zu bytes)", req->op, len);
		status = -EMSGSIZE;
	}
	assert(req->outcome <= 0);
	int outcome = status == 0 && req->outcome != 0 ? req->outcome : status;
	if (req->on_reply != NULL)
		req->on_reply(req->on_reply_arg, req, outcome);
	if (status != 0)
		len = 0;
	struct vfs_resp_meta meta = { 0, status == 0 ? req->cache_until_ns : 0 };
	if (req->state_index_set)
		meta.state_index = req->state_index;
	else if (conn->srv->watch != NULL)
		meta.state_index = conn->srv->watch->state_index(conn->srv->ctx);
	if (!conn->closing)
		conn_send(conn, req->id, status, &meta, payload, (uint32_t)len);
	if (conn->srv->observer != NULL)
		conn->srv->observer->request_done(conn->srv->ctx, req->op, outcome,
						  uv_hrtime() - priv->received_ns);
	conn->outstanding--;
	explicit_bzero(priv, priv->alloc_len);
	free(priv);
	conn_maybe_resume(conn);
	conn_unref(conn);
}

/* ---- input ---- */

static void handle_hello(struct api_conn *conn, const struct vfs_req_header *h,
			 const uint8_t *payload, uint32_t len)
{
	struct cursor c;
	cursor_init(&c, payload, len);
	uint32_t version = cursor_u32(&c);
	if (cursor_done(&c) != 0) {
		conn_drop(conn, "malformed HELLO");
		return;
	}
	if (version < VFS_PROTO_MIN_VERSION || version > VFS_PROTO_VERSION) {
		log_warn("api: closing connection from pid %d uid %u: client speaks protocol "
			 "version %u, this vaultfsd speaks %u to %u (upgrade mount.vaultfs and "
			 "vaultfsd together)",
			 conn->peer_pid, conn->peer_uid, version, VFS_PROTO_MIN_VERSION,
			 VFS_PROTO_VERSION);
		conn_close(conn);
		return;
	}
	conn->version = version;
	/* A client gets its own version back; version 4 knew no flags. */
	struct buf b;
	buf_init(&b);
	buf_put_u32(&b, version);
	if (version >= 5)
		buf_put_u32(&b, conn->srv->hello_flags);
	if (b.err == 0)
		conn_send(conn, h->id, 0, NULL, b.data, (uint32_t)b.len);
	else
		conn_drop(conn, "out of memory for a response");
	buf_free(&b);
}

void api_server_set_hello_flags(struct api_server *s, uint32_t flags)
{
	s->hello_flags = flags;
}

/* ---- watch connections ---- */

void api_server_set_watch(struct api_server *s, const struct api_watch_hooks *hooks)
{
	s->watch = hooks;
}

void api_server_set_observer(struct api_server *s, const struct api_observer *obs)
{
	s->observer = obs;
}

void api_notice(struct api_conn *conn, uint64_t index, const void *payload, size_t len)
{
	if (conn->closing)
		return;
	if (conn->pending_out >= API_MAX_PENDING_OUT) {
		conn_drop(conn, "watcher does not read its notices");
		return;
	}
	struct vfs_resp_meta meta = { index, 0 };
	conn_send(conn, conn->watch_id, 0, &meta, payload, (uint32_t)len);
}

int api_conn_pid(const struct api_conn *conn)
{
	return conn->peer_pid;
}

uint32_t api_conn_version(const struct api_conn *conn)
{
	return conn->version;
}

void api_watch_drop(struct api_conn *conn, const char *why)
{
	conn_drop(conn, why);
}

static void handle_watch(struct api_conn *conn, const struct vfs_req_header *h)
{
	struct api_server *s = conn->srv;
	if (s->watch == NULL || conn->watching || conn->outstanding > 0) {
		conn_send(conn, h->id, s->watch == NULL ? -ENOSYS : -EINVAL, NULL, NULL, 0);
		return;
	}
	conn->watching = true;
	conn->watch_id = h->id;
	uint64_t start = s->watch->start(s->ctx, conn);
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, start);
	if (b.err == 0)
		conn_send(conn, h->id, 0, NULL, b.data, (uint32_t)b.len);
	else
		conn_drop(conn, "out of memory for a response");
	buf_free(&b);
}

static void handle_watch_ack(struct api_conn *conn, const uint8_t *payload, uint32_t len)
{
	struct cursor c;
	cursor_init(&c, payload, len);
	uint64_t index = cursor_u64(&c);
	if (!conn->watching || cursor_done(&c) != 0) {
		conn_drop(conn, "WATCH_ACK on a connection that does not watch, or malformed");
		return;
	}
	conn->srv->watch->ack(conn->srv->ctx, conn, index);
}

static void dispatch(struct api_conn *conn, const struct vfs_req_header *h,
		     const uint8_t *payload, uint32_t len)
{
	size_t alloc_len = sizeof(struct api_req_priv) + len;
	struct api_req_priv *priv = malloc(alloc_len);
	if (priv == NULL) {
		conn_drop(conn, "out of memory for a request");
		return;
	}
	priv->alloc_len = alloc_len;
	priv->received_ns = uv_hrtime();
	if (len > 0)
		memcpy(priv->payload, payload, len);
	priv->pub.id = h->id;
	priv->pub.op = h->op;
	priv->pub.flags = h->flags;
	priv->pub.uid = h->uid;
	priv->pub.gid = h->gid;
	priv->pub.peer_uid = conn->peer_uid;
	priv->pub.peer_pid = conn->peer_pid;
	priv->pub.pid = h->pid;
	memcpy(priv->pub.comm, h->comm, sizeof(priv->pub.comm));
	priv->pub.on_reply = NULL;
	priv->pub.on_reply_arg = NULL;
	priv->pub.payload = priv->payload;
	priv->pub.len = len;
	priv->pub.cache_until_ns = 0;
	priv->pub.state_index_set = false;
	priv->pub.outcome = 0;
	priv->pub.conn = conn;
	conn->outstanding++;
	conn->refs++;
	conn->srv->handler(conn->srv->ctx, &priv->pub);
}

/* Handles the frame at conn->in[*off] if it is complete. Returns 1 when a
 * frame was consumed, 0 when more bytes are needed, -1 after closing the
 * connection for a protocol error. */
static int conn_next_frame(struct api_conn *conn, size_t *off)
{
	size_t avail = conn->in.len - *off;
	const uint8_t *p = conn->in.data + *off;
	struct vfs_req_header h;
	const uint8_t *payload;
	uint32_t plen;

	if (avail < 4)
		return 0;
	uint32_t flen = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			(uint32_t)p[3] << 24;
	if (flen > VFS_MAX_FRAME || flen < VFS_REQ_HEADER_LEN) {
		char why[96];
		snprintf(why, sizeof(why), "bad frame length %u (must be %u..%u)", flen,
			 VFS_REQ_HEADER_LEN, VFS_MAX_FRAME);
		conn_drop(conn, why);
		return -1;
	}
	if (avail - 4 < flen)
		return 0;
	*off += 4 + (size_t)flen;
	if (vfs_req_parse(p + 4, flen, &h, &payload, &plen) != 0) {
		conn_drop(conn, "malformed request header");
		return -1;
	}
	if (h.op == VFS_OP_HELLO) {
		handle_hello(conn, &h, payload, plen);
		return conn->closing ? -1 : 1;
	}
	if (conn->version == 0) {
		conn_drop(conn, "first request is not HELLO");
		return -1;
	}
	if (vfs_op_version(h.op) > conn->version) {
		conn_drop(conn, "an op its protocol version does not have");
		return -1;
	}
	if (h.op == VFS_OP_WATCH_ACK) {
		handle_watch_ack(conn, payload, plen);
		return conn->closing ? -1 : 1;
	}
	if (conn->watching) {
		conn_drop(conn, "a watching connection sends only WATCH_ACK");
		return -1;
	}
	if (h.op == VFS_OP_WATCH) {
		handle_watch(conn, &h);
		return conn->closing ? -1 : 1;
	}
	dispatch(conn, &h, payload, plen);
	return 1;
}

/* Removes consumed bytes from the front of the input, wiping what is left
 * behind (requests may carry secret values). */
static void conn_consume(struct api_conn *conn, size_t off)
{
	struct buf *in = &conn->in;
	if (off == 0)
		return;
	size_t rest = in->len - off;
	memmove(in->data, in->data + off, rest);
	explicit_bzero(in->data + rest, off);
	in->len = rest;
	if (rest == 0 && in->cap > API_KEEP_INPUT)
		buf_free(in);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *ret)
{
	struct api_conn *conn = h->data;
	struct buf *in = &conn->in;
	size_t want = API_READ_CHUNK;
	(void)suggested;
	/* Make room for the rest of a large frame in one go. */
	if (in->len >= 4) {
		const uint8_t *p = in->data;
		size_t flen = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 |
			      (size_t)p[3] << 24;
		if (flen <= VFS_MAX_FRAME && 4 + flen > in->len && 4 + flen - in->len > want)
			want = 4 + flen - in->len;
	}
	if (buf_reserve(in, want) != 0) {
		*ret = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
		return;
	}
	*ret = uv_buf_init((char *)in->data + in->len, (unsigned)(in->cap - in->len));
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *ub)
{
	struct api_conn *conn = stream->data;
	(void)ub;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (nread == UV_ENOBUFS)
			conn_drop(conn, "out of memory for input");
		else if (nread != UV_EOF)
			log_debug("api: read from pid %d failed: %s", conn->peer_pid,
				  uv_strerror((int)nread));
		else if (conn->in.len > 0)
			log_debug("api: pid %d disconnected in the middle of a frame",
				  conn->peer_pid);
		conn_close(conn);
		return;
	}
	conn->in.len += (size_t)nread;
	conn_process(conn);
}

/* Dispatches every complete frame that the memory bounds allow, then starts
 * or stops reading to match. */
static void conn_process(struct api_conn *conn)
{
	size_t off = 0;
	if (conn->processing || conn->closing)
		return;
	conn->processing = true;
	conn->refs++; /* a synchronous reply must not free us mid-loop */
	while (!conn->closing && !conn_over_limit(conn)) {
		if (conn_next_frame(conn, &off) <= 0)
			break;
	}
	if (!conn->closing) {
		conn_consume(conn, off);
		if (conn_over_limit(conn) && conn->reading) {
			uv_read_stop((uv_stream_t *)&conn->pipe);
			conn->reading = false;
		} else if (!conn_over_limit(conn) && !conn->reading) {
			int r = uv_read_start((uv_stream_t *)&conn->pipe, alloc_cb, read_cb);
			if (r < 0)
				conn_drop(conn, uv_strerror(r));
			else
				conn->reading = true;
		}
	}
	conn->processing = false;
	conn_unref(conn);
}

/* ---- accepting ---- */

static bool peer_allowed(struct api_conn *conn)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&conn->pipe, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		log_warn("api: cannot read peer credentials (%s); refusing connection",
			 strerror(errno));
		return false;
	}
	conn->peer_uid = cred.uid;
	conn->peer_pid = cred.pid;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	log_warn("api: refused connection from pid %d uid %u: only root or uid %u may use "
		 "the local API",
		 (int)cred.pid, cred.uid, (unsigned)geteuid());
	return false;
}

static void connection_cb(uv_stream_t *listener, int status)
{
	struct api_server *s = listener->data;
	if (status < 0) {
		log_warn("api: accept on %s failed: %s", s->path, uv_strerror(status));
		return;
	}
	struct api_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		log_error("api: out of memory accepting a connection");
		return;
	}
	conn->srv = s;
	conn->refs = 1;
	conn->peer_pid = -1;
	buf_init(&conn->in);
	uv_pipe_init(s->loop, &conn->pipe, 0);
	conn->pipe.data = conn;
	conn->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = conn;
	s->conns = conn;
	s->handles++;
	int r = uv_accept(listener, (uv_stream_t *)&conn->pipe);
	if (r < 0) {
		log_warn("api: accept on %s failed: %s", s->path, uv_strerror(r));
		conn_close(conn);
		return;
	}
	if (!peer_allowed(conn)) {
		conn_close(conn);
		return;
	}
	count_clients(s);
	conn_process(conn); /* starts reading */
}

/* ---- start / stop ---- */

/* Succeeds if PATH does not exist or is a stale socket (removed). */
static int clear_stale_socket(const char *path, char *errmsg, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		int e = errno;
		set_err(errmsg, errlen, "cannot stat %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISSOCK(st.st_mode)) {
		set_err(errmsg, errlen,
			"%s exists and is not a socket; refusing to replace it (remove it or "
			"choose another listener \"unix\" path)",
			path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		int e = errno;
		set_err(errmsg, errlen, "socket: %s", strerror(e));
		return -e;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	close(fd);
	/* EAGAIN: a listener with a full backlog is alive too. */
	if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
		set_err(errmsg, errlen,
			"another vaultfsd is already listening on %s; stop it first or choose "
			"another listener \"unix\" path",
			path);
		return -EADDRINUSE;
	}
	if (e != ECONNREFUSED) {
		set_err(errmsg, errlen, "cannot check existing socket %s: %s", path, strerror(e));
		return -e;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		e = errno;
		set_err(errmsg, errlen, "cannot remove stale socket %s: %s", path, strerror(e));
		return -e;
	}
	log_info("api: removed stale socket %s", path);
	return 0;
}

static int make_parent_dir(const char *path, char *errmsg, size_t errlen)
{
	char *dir = strdup(path);
	if (dir == NULL)
		return -ENOMEM;
	char *slash = strrchr(dir, '/');
	int r = 0;
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		r = file_mkdir_p(dir, 0755);
		if (r < 0)
			set_err(errmsg, errlen, "cannot create socket directory %s: %s", dir,
				strerror(-r));
	}
	free(dir);
	return r;
}

/* Creates, binds and chmods the listening socket; returns the fd or -errno. */
static int bind_socket(const char *path, struct stat *ret_st, char *errmsg, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		set_err(errmsg, errlen, "socket: %s", strerror(e));
		return -e;
	}
	/* The umask makes bind create the file 0600 so there is no window in
	 * which another user could connect; the chmod below is the guarantee. */
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (r != 0) {
		set_err(errmsg, errlen, "cannot bind %s: %s", path, strerror(e));
		close(fd);
		return -e;
	}
	if (chmod(path, 0600) != 0 || lstat(path, ret_st) != 0) {
		e = errno;
		set_err(errmsg, errlen, "cannot set mode 0600 on %s: %s", path, strerror(e));
		unlink(path);
		close(fd);
		return -e;
	}
	return fd;
}

/* libuv writes with write(2), so a client hanging up while its answer is
 * in flight raises SIGPIPE, which by default kills the daemon. We want
 * EPIPE in the write callback instead. A handler someone installed is
 * left alone. */
static void ignore_sigpipe(void)
{
	struct sigaction old;
	if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
	    old.sa_handler == SIG_DFL) {
		struct sigaction sa = { .sa_handler = SIG_IGN };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGPIPE, &sa, NULL);
	}
}

static void server_free(struct api_server *s)
{
	free(s->path);
	free(s);
}

static void listener_close_cb(uv_handle_t *h)
{
	struct api_server *s = h->data;
	s->handles--;
	server_check_done(s);
}

int api_server_start(struct api_server **ret, uv_loop_t *loop, const char *path,
		     api_handler_fn handler, void *ctx, char *errmsg, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		set_err(errmsg, errlen, "socket path %s is too long (max %zu bytes)", path,
			sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	struct api_server *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->path = strdup(path)) == NULL) {
		free(s);
		set_err(errmsg, errlen, "out of memory");
		return -ENOMEM;
	}
	ignore_sigpipe();
	s->loop = loop;
	s->handler = handler;
	s->ctx = ctx;
	r = make_parent_dir(path, errmsg, errlen);
	if (r == 0)
		r = clear_stale_socket(path, errmsg, errlen);
	int fd = r == 0 ? bind_socket(path, &st, errmsg, errlen) : r;
	if (fd < 0) {
		server_free(s);
		return fd;
	}
	s->sock_dev = st.st_dev;
	s->sock_ino = st.st_ino;
	/* From here on failure must go through uv_close. */
	uv_pipe_init(loop, &s->pipe, 0);
	s->pipe.data = s;
	s->handles = 1;
	r = uv_pipe_open(&s->pipe, fd);
	if (r < 0)
		close(fd); /* not adopted by the handle */
	else
		r = uv_listen((uv_stream_t *)&s->pipe, API_BACKLOG, connection_cb);
	if (r < 0) {
		set_err(errmsg, errlen, "cannot listen on %s: %s", path, uv_strerror(r));
		unlink(path);
		s->stopping = true;
		s->stop_cb_done = true;
		uv_close((uv_handle_t *)&s->pipe, listener_close_cb);
		return r;
	}
	log_info("api: listening on %s", path);
	*ret = s;
	return 0;
}

static void server_check_done(struct api_server *s)
{
	if (!s->stopping || s->handles > 0 || s->in_stop_cb)
		return;
	if (!s->stop_cb_done) {
		s->stop_cb_done = true;
		/* The callback may answer the last held requests, which frees
		 * their connections and calls back here: the server must
		 * outlive it, and is freed below instead. */
		if (s->stop_cb != NULL) {
			s->in_stop_cb = true;
			s->stop_cb(s->stop_arg);
			s->in_stop_cb = false;
		}
	}
	if (s->conns == NULL)
		server_free(s);
}

void api_server_stop(struct api_server *s, void (*cb)(void *arg), void *arg)
{
	struct stat st;
	if (s == NULL || s->stopping)
		return;
	s->stopping = true;
	s->stop_cb = cb;
	s->stop_arg = arg;
	/* Remove the file only if it is still ours: a new daemon may own it now. */
	if (lstat(s->path, &st) == 0 && st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
		unlink(s->path);
	uv_close((uv_handle_t *)&s->pipe, listener_close_cb);
	for (struct api_conn *c = s->conns; c != NULL; c = c->next)
		conn_close(c);
	log_info("api: stopped listening on %s", s->path);
}
