/* Local API client: one Unix socket shared by many threads.
 *
 * Senders serialise on send_lock and write whole frames; a reader thread
 * matches responses to waiting callers by id. Locks: send_lock is taken
 * before lock, never the other way round. The socket fd is closed only by a
 * thread holding send_lock after joining the reader, so neither a sender nor
 * the reader ever uses a recycled fd. */
#include "vaultfs/client.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"

#define CLIENT_BUCKETS 64u
/* Connect + HELLO must not hang a FUSE thread forever on a wedged daemon. */
#define CLIENT_CONNECT_TIMEOUT_MS 10000u

struct pending {
	uint32_t id;
	bool done;
	int status;
	uint8_t *resp;
	size_t len;
	pthread_cond_t cond;
	struct pending *next;
};

struct vfs_client {
	char *path;
	pthread_mutex_t send_lock; /* serialises frame writes and reconnects */
	pthread_mutex_t lock;      /* protects everything below */
	pthread_cond_t idle;       /* signalled when active_calls drops to 0 */
	pthread_condattr_t mono;   /* CLOCK_MONOTONIC, for per-call condvars */
	int fd;                    /* -1 before the first connect */
	bool connected;            /* false once the reader saw the socket break */
	bool reader_running;       /* a reader thread exists and must be joined */
	bool closing;
	bool warned;               /* an outage was already logged */
	pthread_t reader;
	uint32_t next_id;
	unsigned active_calls;
	uint16_t flags;            /* VFS_REQ_* sent with every call */
	struct pending *table[CLIENT_BUCKETS];
};

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

void vfs_client_free_resp(uint8_t *resp, size_t len)
{
	if (resp == NULL)
		return;
	explicit_bzero(resp, len);
	free(resp);
}

/* ---- deadlines and raw I/O ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Milliseconds left until DEADLINE for poll(): -1 without a deadline. */
static int poll_timeout(uint64_t deadline)
{
	if (deadline == 0)
		return -1;
	uint64_t now = now_ms();
	if (now >= deadline)
		return 0;
	uint64_t left = deadline - now;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Writes all of P before DEADLINE (0: none). Returns 0, -ETIMEDOUT with
 * *ret_sent telling whether a partial frame went out, or -errno. */
static int write_all(int fd, const uint8_t *p, size_t n, uint64_t deadline, bool *ret_sent)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN) {
			*ret_sent = done > 0;
			return -errno;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int r = poll(&pfd, 1, poll_timeout(deadline));
		if (r == 0) {
			*ret_sent = done > 0;
			return -ETIMEDOUT;
		}
		if (r < 0 && errno != EINTR) {
			*ret_sent = done > 0;
			return -errno;
		}
	}
	*ret_sent = true;
	return 0;
}

/* Reads exactly N bytes. DEADLINE 0 blocks forever (the reader thread).
 * Returns 0, -ECONNRESET on EOF, -ETIMEDOUT or -errno. */
static int read_all(int fd, uint8_t *p, size_t n, uint64_t deadline)
{
	size_t done = 0;
	while (done < n) {
		if (deadline != 0) {
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			int r = poll(&pfd, 1, poll_timeout(deadline));
			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
		}
		ssize_t got = read(fd, p + done, n - done);
		if (got == 0)
			return -ECONNRESET;
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)got;
	}
	return 0;
}

/* Reads one response frame. On success *ret_body is a malloc'd body. */
static int read_frame(int fd, uint64_t deadline, uint8_t **ret_body, uint32_t *ret_len)
{
	uint8_t hdr[4];
	int r = read_all(fd, hdr, sizeof(hdr), deadline);
	if (r < 0)
		return r;
	uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
		       (uint32_t)hdr[3] << 24;
	if (len < VFS_RESP_HEADER_LEN || len > VFS_MAX_FRAME)
		return -EBADMSG;
	uint8_t *body = malloc(len);
	if (body == NULL)
		return -ENOMEM;
	r = read_all(fd, body, len, deadline);
	if (r < 0) {
		vfs_client_free_resp(body, len);
		return r;
	}
	*ret_body = body;
	*ret_len = len;
	return 0;
}

/* Turns a parsed body into the caller's response: the payload is moved to
 * the front of the same allocation (the header bytes left behind are wiped). */
static uint8_t *body_to_resp(uint8_t *body, uint32_t body_len, const uint8_t *payload,
			     uint32_t plen)
{
	if (plen == 0) {
		vfs_client_free_resp(body, body_len);
		return NULL;
	}
	memmove(body, payload, plen);
	explicit_bzero(body + plen, body_len - plen);
	return body;
}

/* ---- pending table (caller holds lock) ---- */

static struct pending **bucket(struct vfs_client *c, uint32_t id)
{
	return &c->table[id % CLIENT_BUCKETS];
}

static struct pending *pending_find(struct vfs_client *c, uint32_t id)
{
	for (struct pending *p = *bucket(c, id); p != NULL; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static void pending_remove(struct vfs_client *c, struct pending *p)
{
	for (struct pending **pp = bucket(c, p->id); *pp != NULL; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static uint32_t alloc_id(struct vfs_client *c)
{
	/* Skip ids still waiting (only possible after 2^32 calls). */
	while (pending_find(c, c->next_id) != NULL)
		c->next_id++;
	return c->next_id++;
}

/* Completes every pending call with STATUS (the connection is gone). */
static void fail_all(struct vfs_client *c, int status)
{
	for (unsigned i = 0; i < CLIENT_BUCKETS; i++) {
		struct pending *p;
		while ((p = c->table[i]) != NULL) {
			c->table[i] = p->next;
			p->done = true;
			p->status = status;
			pthread_cond_signal(&p->cond);
		}
	}
}

/* ---- reader thread ---- */

static void deliver(struct vfs_client *c, uint8_t *body, uint32_t len)
{
	uint32_t id, plen;
	int32_t status;
	const uint8_t *payload;
	if (vfs_resp_parse(body, len, &id, &status, &payload, &plen) != 0) {
		vfs_client_free_resp(body, len);
		return;
	}
	pthread_mutex_lock(&c->lock);
	struct pending *p = pending_find(c, id);
	if (p == NULL) {
		/* The caller timed out; nobody wants this any more. */
		pthread_mutex_unlock(&c->lock);
		vfs_client_free_resp(body, len);
		return;
	}
	pending_remove(c, p);
	p->done = true;
	p->status = status;
	p->len = plen;
	p->resp = body_to_resp(body, len, payload, plen);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&c->lock);
}

static void *reader_main(void *arg)
{
	struct vfs_client *c = arg;
	int fd = c->fd; /* stable: only changed after joining this thread */
	for (;;) {
		uint8_t *body;
		uint32_t len;
		int r = read_frame(fd, 0, &body, &len);
		if (r < 0) {
			pthread_mutex_lock(&c->lock);
			c->connected = false;
			if (!c->closing && !c->warned) {
				log_warn("lost connection to vaultfsd at %s (%s); reconnecting on the "
					 "next request",
					 c->path,
					 r == -ECONNRESET ? "the daemon closed it" : strerror(-r));
				c->warned = true;
			}
			fail_all(c, -ENOTCONN);
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		deliver(c, body, len);
	}
}

/* ---- connecting ---- */

static const char *connect_hint(int err)
{
	switch (err) {
	case ENOENT:
		return "is vaultfsd running? check listener \"unix\" path in its config";
	case ECONNREFUSED:
		return "vaultfsd is not running or not listening; start it";
	case EACCES:
	case EPERM:
		return "only root or the user vaultfsd runs as may connect";
	case EAGAIN:
	case ETIMEDOUT:
		return "vaultfsd is not accepting connections; is it hung or overloaded?";
	default:
		return "is vaultfsd running?";
	}
}

static int open_socket(const char *path, uint64_t deadline, int *ret_fd, char *errmsg,
		       size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	if (n >= sizeof(sa.sun_path)) {
		set_err(errmsg, errlen, "cannot connect to vaultfsd at %s: socket path too long",
			path);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, n + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		set_err(errmsg, errlen, "cannot connect to vaultfsd at %s: socket: %s", path,
			strerror(e));
		return -e;
	}
	/* A Unix connect blocks on a full backlog for at most SO_SNDTIMEO. */
	int ms = poll_timeout(deadline);
	if (ms <= 0)
		ms = 1; /* 0 would mean no timeout at all */
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r != 0 && errno == EINTR);
	if (r != 0) {
		int e = errno;
		set_err(errmsg, errlen, "cannot connect to vaultfsd at %s: %s (%s)", path,
			strerror(e), connect_hint(e));
		close(fd);
		return -e;
	}
	*ret_fd = fd;
	return 0;
}

static int check_hello_resp(uint8_t *body, uint32_t len, uint32_t id)
{
	uint32_t rid, plen;
	int32_t status;
	const uint8_t *payload;
	int r = vfs_resp_parse(body, len, &rid, &status, &payload, &plen);
	if (r == 0 && (rid != id || status != 0 || plen != 4))
		r = status < 0 ? status : -EPROTO;
	if (r == 0) {
		uint32_t v = (uint32_t)payload[0] | (uint32_t)payload[1] << 8 |
			     (uint32_t)payload[2] << 16 | (uint32_t)payload[3] << 24;
		if (v != VFS_PROTO_VERSION)
			r = -EPROTONOSUPPORT;
	}
	vfs_client_free_resp(body, len);
	return r;
}

/* Sends HELLO and waits for its answer before the reader thread exists. */
static int hello(int fd, uint32_t id, uint64_t deadline, const char *path, char *errmsg,
		 size_t errlen)
{
	struct buf b;
	uint8_t ver[4] = { (uint8_t)VFS_PROTO_VERSION, (uint8_t)(VFS_PROTO_VERSION >> 8),
			   (uint8_t)(VFS_PROTO_VERSION >> 16), (uint8_t)(VFS_PROTO_VERSION >> 24) };
	struct vfs_req_header h = { .id = id, .op = VFS_OP_HELLO, .uid = 0, .gid = 0 };
	bool sent;
	uint8_t *body;
	uint32_t len;

	buf_init(&b);
	vfs_req_frame(&b, &h, ver, sizeof(ver));
	int r = b.err != 0 ? b.err : write_all(fd, b.data, b.len, deadline, &sent);
	buf_free(&b);
	if (r == 0)
		r = read_frame(fd, deadline, &body, &len);
	if (r == 0)
		r = check_hello_resp(body, len, id);
	if (r == -ECONNRESET || r == -EPIPE)
		set_err(errmsg, errlen,
			"cannot connect to vaultfsd at %s: the daemon closed the connection "
			"during the handshake (only root or the user vaultfsd runs as may "
			"connect; mount.vaultfs and vaultfsd must speak protocol version %u)",
			path, VFS_PROTO_VERSION);
	else if (r < 0)
		set_err(errmsg, errlen, "cannot connect to vaultfsd at %s: handshake failed: %s",
			path, strerror(-r));
	return r;
}

/* Joins the old reader and closes the old socket. Caller holds send_lock
 * (not lock). */
static void teardown(struct vfs_client *c)
{
	pthread_mutex_lock(&c->lock);
	bool running = c->reader_running;
	int fd = c->fd;
	c->reader_running = false;
	c->fd = -1;
	pthread_mutex_unlock(&c->lock);
	if (fd < 0)
		return;
	/* Wakes the reader out of read() if the daemon has not hung up yet. */
	shutdown(fd, SHUT_RDWR);
	if (running)
		pthread_join(c->reader, NULL);
	close(fd);
}

/* (Re)establishes the connection. Caller holds send_lock (not lock). */
static int reconnect(struct vfs_client *c, unsigned timeout_ms, char *errmsg, size_t errlen)
{
	uint64_t deadline = now_ms() + (timeout_ms != 0 && timeout_ms < CLIENT_CONNECT_TIMEOUT_MS
						? timeout_ms
						: CLIENT_CONNECT_TIMEOUT_MS);
	int fd = -1, r;

	teardown(c);
	r = open_socket(c->path, deadline, &fd, errmsg, errlen);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	uint32_t id = alloc_id(c);
	pthread_mutex_unlock(&c->lock);
	r = hello(fd, id, deadline, c->path, errmsg, errlen);
	if (r < 0) {
		close(fd);
		return r;
	}
	/* Writes use poll; clear the connect timeout again. */
	struct timeval tv = { 0, 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&c->lock);
	c->fd = fd;
	c->connected = true;
	r = -pthread_create(&c->reader, NULL, reader_main, c);
	c->reader_running = r == 0;
	if (r < 0) {
		c->connected = false;
		set_err(errmsg, errlen, "cannot start client reader thread: %s", strerror(-r));
	}
	if (r == 0 && c->warned) {
		log_info("reconnected to vaultfsd at %s", c->path);
		c->warned = false;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

static void client_free(struct vfs_client *c)
{
	pthread_condattr_destroy(&c->mono);
	pthread_cond_destroy(&c->idle);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->send_lock);
	free(c->path);
	free(c);
}

int vfs_client_connect(struct vfs_client **ret, const char *socket_path, char *errmsg,
		       size_t errlen)
{
	struct vfs_client *c = calloc(1, sizeof(*c));
	if (c == NULL || (c->path = strdup(socket_path)) == NULL) {
		free(c);
		set_err(errmsg, errlen, "out of memory");
		return -ENOMEM;
	}
	c->fd = -1;
	c->next_id = 1;
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->idle, NULL);
	pthread_condattr_init(&c->mono);
	pthread_condattr_setclock(&c->mono, CLOCK_MONOTONIC);

	pthread_mutex_lock(&c->send_lock);
	int r = reconnect(c, 0, errmsg, errlen);
	pthread_mutex_unlock(&c->send_lock);
	if (r < 0) {
		client_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

void vfs_client_close(struct vfs_client *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->send_lock);
	pthread_mutex_lock(&c->lock);
	c->closing = true;
	pthread_mutex_unlock(&c->lock);
	teardown(c); /* the reader fails every pending call */
	pthread_mutex_unlock(&c->send_lock);
	pthread_mutex_lock(&c->lock);
	fail_all(c, -ENOTCONN); /* in case no reader was running */
	while (c->active_calls > 0)
		pthread_cond_wait(&c->idle, &c->lock);
	pthread_mutex_unlock(&c->lock);
	client_free(c);
}

/* ---- calls ---- */

/* Registers P and sends its frame. Returns 0 or -errno (P not registered). */
static int send_request(struct vfs_client *c, struct pending *p, const struct buf *frame,
			uint64_t deadline, unsigned timeout_ms)
{
	char errmsg[256];
	int r = 0;
	bool sent = false;

	pthread_mutex_lock(&c->send_lock);
	pthread_mutex_lock(&c->lock);
	bool need = !c->connected && !c->closing;
	pthread_mutex_unlock(&c->lock);
	if (need) {
		r = reconnect(c, timeout_ms, errmsg, sizeof(errmsg));
		if (r < 0) {
			pthread_mutex_lock(&c->lock);
			if (!c->warned)
				log_warn("%s", errmsg);
			c->warned = true;
			pthread_mutex_unlock(&c->lock);
			r = -ENOTCONN;
		}
	}
	pthread_mutex_lock(&c->lock);
	if (r == 0 && (!c->connected || c->closing))
		r = -ENOTCONN;
	if (r == 0) {
		p->id = alloc_id(c);
		/* The id sits at a fixed offset: patch it into the frame. */
		uint8_t *idp = frame->data + 4;
		for (unsigned i = 0; i < 4; i++)
			idp[i] = (uint8_t)(p->id >> (8 * i));
		p->next = *bucket(c, p->id);
		*bucket(c, p->id) = p;
	}
	int fd = c->fd;
	pthread_mutex_unlock(&c->lock);
	if (r == 0) {
		r = write_all(fd, frame->data, frame->len, deadline, &sent);
		if (r < 0) {
			pthread_mutex_lock(&c->lock);
			if (!p->done)
				pending_remove(c, p);
			pthread_mutex_unlock(&c->lock);
			/* Half a frame on the wire desynchronises the stream for
			 * everyone: break it so the next call starts clean. */
			if (sent || r != -ETIMEDOUT)
				shutdown(fd, SHUT_RDWR);
			if (r != -ETIMEDOUT)
				r = -ENOTCONN;
		}
	}
	pthread_mutex_unlock(&c->send_lock);
	return r;
}

/* Waits for P's answer. Caller holds lock. */
static int wait_answer(struct vfs_client *c, struct pending *p, uint64_t deadline)
{
	struct timespec abs;
	if (deadline != 0) {
		abs.tv_sec = (time_t)(deadline / 1000u);
		abs.tv_nsec = (long)(deadline % 1000u) * 1000000L;
	}
	while (!p->done) {
		int r = deadline != 0 ? pthread_cond_timedwait(&p->cond, &c->lock, &abs)
				      : pthread_cond_wait(&p->cond, &c->lock);
		if (r == ETIMEDOUT && !p->done) {
			pending_remove(c, p);
			return -ETIMEDOUT;
		}
	}
	return p->status;
}

int vfs_client_call(struct vfs_client *c, uint16_t op, uint32_t uid, uint32_t gid,
		    const void *payload, size_t len, unsigned timeout_ms, uint8_t **ret_resp,
		    size_t *ret_len)
{
	struct vfs_req_header h = { .id = 0, .op = op, .uid = uid, .gid = gid };
	struct pending p = { 0 };
	pthread_mutex_lock(&c->lock);
	h.flags = c->flags;
	pthread_mutex_unlock(&c->lock);
	struct buf frame;
	uint64_t deadline = timeout_ms != 0 ? now_ms() + timeout_ms : 0;

	if (len > VFS_MAX_FRAME - VFS_REQ_HEADER_LEN)
		return -EMSGSIZE;
	buf_init(&frame);
	vfs_req_frame(&frame, &h, payload, (uint32_t)len);
	if (frame.err != 0) {
		buf_free(&frame);
		return frame.err;
	}
	pthread_cond_init(&p.cond, &c->mono);
	pthread_mutex_lock(&c->lock);
	c->active_calls++;
	pthread_mutex_unlock(&c->lock);

	int r = send_request(c, &p, &frame, deadline, timeout_ms);
	buf_free(&frame); /* wipes a secret being written */

	pthread_mutex_lock(&c->lock);
	if (r == 0)
		r = wait_answer(c, &p, deadline);
	if (--c->active_calls == 0)
		pthread_cond_broadcast(&c->idle);
	pthread_mutex_unlock(&c->lock);
	pthread_cond_destroy(&p.cond);

	if (r != 0) {
		vfs_client_free_resp(p.resp, p.len);
		return r;
	}
	if (ret_resp != NULL && ret_len != NULL) {
		*ret_resp = p.resp;
		*ret_len = p.len;
	} else {
		vfs_client_free_resp(p.resp, p.len);
	}
	return 0;
}

void vfs_client_set_flags(struct vfs_client *c, uint16_t flags)
{
	pthread_mutex_lock(&c->lock);
	c->flags = flags;
	pthread_mutex_unlock(&c->lock);
}
