/* Local API client: a pool of Unix socket connections shared by many
 * threads.
 *
 * A call takes an idle connection (or opens one: connect + HELLO), writes
 * its request, reads its own response on the same connection, and puts the
 * connection back. One call per connection at a time, so the calling
 * thread reads its answer itself: no reader thread to wake and no hand-off
 * through a condition variable, which on a busy machine cost about as much
 * as the daemon's work for a small request. The daemon serves each
 * connection's requests in order and many connections at once.
 *
 * Locks: one, c->lock, never held across I/O. A connection's fd is closed
 * only by the thread that owns the connection (the caller using it, or
 * vfs_client_close for idle ones) after unlinking it under the lock, so
 * vfs_client_close can shutdown() a busy fd to wake its caller without ever
 * touching a recycled fd. */
#include "vaultfs/client.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/monoclock.h"

/* Connect + HELLO must not hang a FUSE thread forever on a wedged daemon. */
#define CLIENT_CONNECT_TIMEOUT_MS 10000u
/* Connections per client: calls beyond this wait for one to come back. It
 * bounds the daemon's descriptors per mount; a mount serves at most 128
 * requests at once anyway, and most of them never reach the daemon. */
#define CLIENT_MAX_CONNS 64u

struct conn {
	struct conn *next, *prev; /* c->conns: every open connection */
	struct conn *next_idle;   /* c->idle: those not in use */
	int fd;
	bool busy;
};

struct vfs_client {
	char *path;
	pthread_mutex_t lock;  /* protects everything below */
	pthread_cond_t changed; /* a connection came back, or a call ended */
	struct conn *conns;
	struct conn *idle;
	unsigned n_conns;
	unsigned active_calls;
	bool closing;
	bool warned;    /* an outage was already logged */
	uint32_t next_id;
	uint16_t flags; /* VFS_REQ_* sent with every call */
	uint32_t hello_flags; /* VFS_HELLO_* of the last connection opened */
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
	return monoclock_ns() / 1000000u;
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

/* Waits until FD is readable (DEADLINE 0: the read itself blocks), then
 * reads once into IOV. Returns the bytes read (> 0), -ECONNRESET on EOF,
 * -ETIMEDOUT or -errno. */
static ssize_t read_once(int fd, const struct iovec *iov, int iovcnt, uint64_t deadline)
{
	for (;;) {
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
		ssize_t got = readv(fd, iov, iovcnt);
		if (got > 0)
			return got;
		if (got == 0)
			return -ECONNRESET;
		if (errno != EINTR)
			return -errno;
	}
}

/* Reads exactly N bytes. DEADLINE 0 blocks forever.
 * Returns 0, -ECONNRESET on EOF, -ETIMEDOUT or -errno. */
static int read_all(int fd, uint8_t *p, size_t n, uint64_t deadline)
{
	for (size_t done = 0; done < n;) {
		struct iovec iov = { p + done, n - done };
		ssize_t got = read_once(fd, &iov, 1, deadline);
		if (got < 0)
			return (int)got;
		done += (size_t)got;
	}
	return 0;
}

/* The body length frame header HDR announces, or -EBADMSG when no answer
 * can be that long. */
static int64_t frame_len(const uint8_t hdr[4])
{
	uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
		       (uint32_t)hdr[3] << 24;
	return len < VFS_RESP_HEADER_LEN || len > VFS_MAX_FRAME ? -EBADMSG : (int64_t)len;
}

/* Reads one response frame. On success *ret_body is a malloc'd body. */
static int read_frame(int fd, uint64_t deadline, uint8_t **ret_body, uint32_t *ret_len)
{
	uint8_t hdr[4];
	int r = read_all(fd, hdr, sizeof(hdr), deadline);
	if (r < 0)
		return r;
	int64_t n = frame_len(hdr);
	if (n < 0)
		return (int)n;
	uint32_t len = (uint32_t)n;
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

/* How much of a body the first read takes with the frame's header: most
 * answers fit, so a call costs one poll and one readv instead of a poll
 * and a read for each. */
#define FRAME_FIRST_BODY 4096u

/* The first read of an answer: its header into HDR and what follows of its
 * body, up to FRAME_FIRST_BODY bytes, into BODY. Returns the body bytes
 * read (the whole header was read) or -errno as read_all. */
static ssize_t read_answer_start(int fd, uint8_t hdr[4], uint8_t *body, uint64_t deadline)
{
	struct iovec iov[2] = { { hdr, 4 }, { body, FRAME_FIRST_BODY } };
	ssize_t got = read_once(fd, iov, 2, deadline);
	if (got < 0)
		return got;
	if (got >= 4)
		return got - 4;
	int r = read_all(fd, hdr + got, 4 - (size_t)got, deadline);
	return r < 0 ? r : 0;
}

/* read_frame for a connection that carries one request at a time (so
 * nothing of a next frame can follow the answer): reads it in fewer calls.
 * More bytes than the frame are a protocol error. */
static int read_answer(int fd, uint64_t deadline, uint8_t **ret_body, uint32_t *ret_len)
{
	uint8_t hdr[4];
	uint8_t *body = malloc(FRAME_FIRST_BODY);
	if (body == NULL)
		return -ENOMEM;
	ssize_t have = read_answer_start(fd, hdr, body, deadline);
	if (have < 0) {
		vfs_client_free_resp(body, FRAME_FIRST_BODY);
		return (int)have;
	}
	int64_t n = frame_len(hdr);
	uint32_t len = n < 0 ? 0 : (uint32_t)n;
	if (n < 0 || (size_t)have > len) {
		vfs_client_free_resp(body, (size_t)have);
		return -EBADMSG;
	}
	if (len > FRAME_FIRST_BODY) {
		uint8_t *whole = malloc(len);
		if (whole == NULL) {
			vfs_client_free_resp(body, (size_t)have);
			return -ENOMEM;
		}
		memcpy(whole, body, (size_t)have);
		vfs_client_free_resp(body, (size_t)have);
		body = whole;
	}
	int r = read_all(fd, body + have, len - (size_t)have, deadline);
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

/* Only root or this process's own user may be trusted with what the mount
 * sends (keys written to .vault/unseal, secrets) and answers (every read):
 * anyone else could have put a socket at PATH, or listen behind one. */
static bool trusted_uid(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

/* Checks the owner of the socket file and the credentials of the process
 * that accepted the connection, before anything is sent on FD. */
static int check_daemon(int fd, const char *path, char *errmsg, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
		set_err(errmsg, errlen, "%s is not a socket: refusing to use it", path);
		return -ENOTSOCK;
	}
	if (!trusted_uid(st.st_uid)) {
		set_err(errmsg, errlen,
			"%s is owned by uid %u, neither root nor this user: refusing to talk to it "
			"(vaultfsd's socket belongs to the user it runs as)",
			path, (unsigned)st.st_uid);
		return -EPERM;
	}
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		int e = errno;
		set_err(errmsg, errlen, "%s: cannot learn who listens there: %s", path, strerror(e));
		return -e;
	}
	if (!trusted_uid(cred.uid)) {
		set_err(errmsg, errlen,
			"the process listening on %s (pid %d) runs as uid %u, neither root nor "
			"this user: refusing to talk to it",
			path, (int)cred.pid, (unsigned)cred.uid);
		return -EPERM;
	}
	return 0;
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
	r = check_daemon(fd, path, errmsg, errlen);
	if (r != 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* The answer must be our own version and the daemon's VFS_HELLO_* flags. */
static int check_hello_resp(uint8_t *body, uint32_t len, uint32_t id, uint32_t *ret_flags)
{
	uint32_t rid, plen;
	int32_t status;
	const uint8_t *payload;
	int r = vfs_resp_parse(body, len, &rid, &status, NULL, &payload, &plen);
	if (r == 0 && (rid != id || status != 0))
		r = status < 0 ? status : -EPROTO;
	if (r == 0) {
		struct cursor c;
		cursor_init(&c, payload, plen);
		uint32_t v = cursor_u32(&c);
		*ret_flags = cursor_u32(&c);
		if (cursor_done(&c) != 0)
			r = -EPROTO;
		else if (v != VFS_PROTO_VERSION)
			r = -EPROTONOSUPPORT;
	}
	vfs_client_free_resp(body, len);
	return r;
}

/* Sends HELLO on a new connection and waits for its answer. */
static int hello(int fd, uint32_t id, uint64_t deadline, const char *path,
		 uint32_t *ret_flags, char *errmsg, size_t errlen)
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
		r = read_answer(fd, deadline, &body, &len);
	if (r == 0)
		r = check_hello_resp(body, len, id, ret_flags);
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

/* ---- the pool ---- */

/* Opens a connection and says HELLO, by the call's DEADLINE (0: none) and
 * within CLIENT_CONNECT_TIMEOUT_MS; *RET_FLAGS gets the daemon's VFS_HELLO_*
 * flags. Returns 0 or -errno with a message. */
static int conn_open(const char *path, uint32_t id, uint64_t call_deadline, int *ret_fd,
		     uint32_t *ret_flags, char *errmsg, size_t errlen)
{
	uint64_t deadline = now_ms() + CLIENT_CONNECT_TIMEOUT_MS;
	if (call_deadline != 0 && call_deadline < deadline)
		deadline = call_deadline;
	int fd = -1;
	int r = open_socket(path, deadline, &fd, errmsg, errlen);
	if (r < 0)
		return r;
	r = hello(fd, id, deadline, path, ret_flags, errmsg, errlen);
	if (r < 0) {
		close(fd);
		return r;
	}
	/* Writes use poll; clear the connect timeout again. */
	struct timeval tv = { 0, 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*ret_fd = fd;
	return 0;
}

/* True if an idle connection was closed by the daemon (it restarted): EOF
 * or a hang-up is already pending, and a request sent on it would be lost. */
static bool conn_is_stale(const struct conn *k)
{
	struct pollfd pfd = { .fd = k->fd, .events = POLLIN };
	return poll(&pfd, 1, 0) != 0;
}

/* For assert(): someone holds C's lock (a mutex this thread holds is busy
 * to it too). Acquires it if not, but then the assertion fails anyway. */
static bool client_locked(struct vfs_client *c)
{
	return pthread_mutex_trylock(&c->lock) == EBUSY;
}

/* Caller holds lock. */
static void conn_link(struct vfs_client *c, struct conn *k)
{
	assert(client_locked(c));
	k->prev = NULL;
	k->next = c->conns;
	if (c->conns != NULL)
		c->conns->prev = k;
	c->conns = k;
	c->n_conns++;
}

/* Caller holds lock; closes nothing (the owner closes the fd after). */
static void conn_unlink(struct vfs_client *c, struct conn *k)
{
	assert(client_locked(c));
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		c->conns = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	c->n_conns--;
	pthread_cond_broadcast(&c->changed);
}

static void conn_discard(struct vfs_client *c, struct conn *k)
{
	pthread_mutex_lock(&c->lock);
	conn_unlink(c, k);
	pthread_mutex_unlock(&c->lock);
	close(k->fd);
	free(k);
}

/* Logs the first failure of an outage (conn_take logs the recovery).
 * Caller holds lock. */
static void note_outage(struct vfs_client *c, const char *msg)
{
	assert(client_locked(c));
	if (!c->warned && !c->closing)
		log_warn("%s", msg);
	c->warned = true;
}

/* Waits for a connection to come back, until DEADLINE (ms on the
 * monotonic clock, 0: none). Caller holds lock. Returns 0 or -ETIMEDOUT. */
static int wait_changed(struct vfs_client *c, uint64_t deadline)
{
	assert(client_locked(c));
	if (deadline == 0)
		return -pthread_cond_wait(&c->changed, &c->lock);
	struct timespec abs = { .tv_sec = (time_t)(deadline / 1000u),
				.tv_nsec = (long)(deadline % 1000u) * 1000000L };
	return pthread_cond_timedwait(&c->changed, &c->lock, &abs) == ETIMEDOUT ? -ETIMEDOUT : 0;
}

/* Takes a connection for one call: an idle one, else a new one (up to
 * CLIENT_MAX_CONNS, else waits for one to come back, until DEADLINE).
 * Caller holds lock; it is released while connecting. Returns NULL with
 * *ret_err set. */
static struct conn *conn_take(struct vfs_client *c, uint64_t deadline, int *ret_err)
{
	assert(client_locked(c));
	for (;;) {
		if (c->closing) {
			*ret_err = -ENOTCONN;
			return NULL;
		}
		struct conn *k = c->idle;
		if (k != NULL) {
			c->idle = k->next_idle;
			k->busy = true;
			if (!conn_is_stale(k))
				return k;
			conn_unlink(c, k);
			pthread_mutex_unlock(&c->lock);
			close(k->fd);
			free(k);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (c->n_conns < CLIENT_MAX_CONNS)
			break;
		if (wait_changed(c, deadline) == -ETIMEDOUT) {
			*ret_err = -ETIMEDOUT;
			return NULL;
		}
	}
	struct conn *k = calloc(1, sizeof(*k));
	if (k == NULL) {
		*ret_err = -ENOMEM;
		return NULL;
	}
	k->busy = true;
	k->fd = -1;
	conn_link(c, k); /* counted now, so that the cap holds while connecting */
	uint32_t id = c->next_id++;
	pthread_mutex_unlock(&c->lock);
	char errmsg[256];
	uint32_t flags = 0;
	int r = conn_open(c->path, id, deadline, &k->fd, &flags, errmsg, sizeof(errmsg));
	pthread_mutex_lock(&c->lock);
	if (r == 0)
		c->hello_flags = flags; /* the daemon may have restarted with another config */
	if (r < 0) {
		conn_unlink(c, k);
		free(k);
		note_outage(c, errmsg);
		*ret_err = -ENOTCONN;
		return NULL;
	}
	if (c->warned) {
		log_info("reconnected to vaultfsd at %s", c->path);
		c->warned = false;
	}
	if (c->closing) { /* vfs_client_close missed it: it was connecting */
		shutdown(k->fd, SHUT_RDWR);
	}
	return k;
}

/* Puts K back after a complete exchange. Caller holds lock. */
static void conn_give_back(struct vfs_client *c, struct conn *k)
{
	assert(client_locked(c));
	k->busy = false;
	k->next_idle = c->idle;
	c->idle = k;
	pthread_cond_broadcast(&c->changed);
}

static void client_free(struct vfs_client *c)
{
	pthread_cond_destroy(&c->changed);
	pthread_mutex_destroy(&c->lock);
	free(c->path);
	free(c);
}

int vfs_client_connect(struct vfs_client **ret, const char *socket_path, char *errmsg,
		       size_t errlen)
{
	struct vfs_client *c = calloc(1, sizeof(*c));
	struct conn *k = calloc(1, sizeof(*k));
	if (c == NULL || k == NULL || (c->path = strdup(socket_path)) == NULL) {
		free(c);
		free(k);
		set_err(errmsg, errlen, "out of memory");
		return -ENOMEM;
	}
	c->next_id = 2;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_t mono; /* deadlines are on the monotonic clock (now_ms) */
	pthread_condattr_init(&mono);
	pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
	pthread_cond_init(&c->changed, &mono);
	pthread_condattr_destroy(&mono);
	/* The first connection now: a mount must fail at once, with the
	 * reason, when the daemon is not there. */
	int r = conn_open(c->path, 1, 0, &k->fd, &c->hello_flags, errmsg, errlen);
	if (r < 0) {
		free(k);
		client_free(c);
		return r;
	}
	pthread_mutex_lock(&c->lock); /* not shared yet, but the helpers' rule holds */
	conn_link(c, k);
	conn_give_back(c, k);
	pthread_mutex_unlock(&c->lock);
	*ret = c;
	return 0;
}

void vfs_client_close(struct vfs_client *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	c->closing = true;
	/* Busy connections: wake their callers, who close them. */
	for (struct conn *k = c->conns; k != NULL; k = k->next)
		if (k->busy && k->fd >= 0)
			shutdown(k->fd, SHUT_RDWR);
	while (c->active_calls > 0)
		pthread_cond_wait(&c->changed, &c->lock);
	struct conn *k;
	while ((k = c->conns) != NULL) {
		conn_unlink(c, k);
		close(k->fd);
		free(k);
	}
	c->idle = NULL;
	pthread_mutex_unlock(&c->lock);
	client_free(c);
}

/* ---- calls ---- */

/* A response: the body as read, and where its parts are in it. */
struct answer {
	uint8_t *body;
	uint32_t body_len;
	int32_t status;
	const uint8_t *payload;
	uint32_t len;
	struct vfs_resp_meta meta;
};

/* Writes FRAME on K and reads the answer to ID into A. Returns 0, -ENOMEM,
 * -ETIMEDOUT, -ENOTCONN (the daemon went away) or -EPROTO. */
static int exchange(struct vfs_client *c, struct conn *k, const struct buf *frame, uint32_t id,
		    uint64_t deadline, struct answer *a)
{
	bool sent = false;
	int r = write_all(k->fd, frame->data, frame->len, deadline, &sent);
	if (r == 0)
		r = read_answer(k->fd, deadline, &a->body, &a->body_len);
	if (r == 0) {
		uint32_t rid;
		if (vfs_resp_parse(a->body, a->body_len, &rid, &a->status, &a->meta, &a->payload,
				   &a->len) != 0 ||
		    rid != id) {
			vfs_client_free_resp(a->body, a->body_len);
			return -EPROTO;
		}
		return 0;
	}
	if (r == -ETIMEDOUT || r == -ENOMEM)
		return r;
	pthread_mutex_lock(&c->lock);
	char msg[300];
	snprintf(msg, sizeof(msg),
		 "lost connection to vaultfsd at %s (%s); reconnecting on the next request",
		 c->path, r == -ECONNRESET ? "the daemon closed it" : strerror(-r));
	note_outage(c, msg);
	pthread_mutex_unlock(&c->lock);
	return -ENOTCONN;
}

int vfs_client_call(struct vfs_client *c, uint16_t op, uint32_t uid, uint32_t gid,
		    const void *payload, size_t len, unsigned timeout_ms, uint8_t **ret_resp,
		    size_t *ret_len, struct vfs_resp_meta *ret_meta)
{
	struct vfs_caller who = { .uid = uid, .gid = gid };
	return vfs_client_call_as(c, op, &who, payload, len, timeout_ms, ret_resp, ret_len,
				  ret_meta);
}

bool vfs_client_audited(struct vfs_client *c)
{
	pthread_mutex_lock(&c->lock);
	bool audited = (c->hello_flags & VFS_HELLO_AUDIT) != 0;
	pthread_mutex_unlock(&c->lock);
	return audited;
}

int vfs_client_call_as(struct vfs_client *c, uint16_t op, const struct vfs_caller *who,
		       const void *payload, size_t len, unsigned timeout_ms, uint8_t **ret_resp,
		       size_t *ret_len, struct vfs_resp_meta *ret_meta)
{
	struct vfs_req_header h = { .id = 0, .op = op, .uid = who->uid, .gid = who->gid,
				    .pid = who->pid };
	memcpy(h.comm, who->comm, sizeof(h.comm) - 1);
	h.comm[sizeof(h.comm) - 1] = '\0'; /* the daemon refuses it otherwise */
	uint64_t deadline = timeout_ms != 0 ? now_ms() + timeout_ms : 0;
	int r = 0;

	if (len > VFS_MAX_FRAME - VFS_REQ_HEADER_LEN - VFS_REQ_CALLER_LEN)
		return -EMSGSIZE;
	pthread_mutex_lock(&c->lock);
	c->active_calls++;
	h.flags = c->flags | VFS_REQ_CALLER;
	h.id = c->next_id++;
	struct conn *k = conn_take(c, deadline, &r);
	pthread_mutex_unlock(&c->lock);

	struct answer a = { 0 };
	if (k != NULL) {
		struct buf frame;
		buf_init(&frame);
		vfs_req_frame(&frame, &h, payload, (uint32_t)len);
		r = frame.err != 0 ? frame.err : exchange(c, k, &frame, h.id, deadline, &a);
		buf_free(&frame); /* wipes a secret being written */
		if (r == 0) {
			pthread_mutex_lock(&c->lock);
			conn_give_back(c, k);
			pthread_mutex_unlock(&c->lock);
		} else {
			/* A late answer, half a frame or a dead daemon: the
			 * stream is no use to the next call. */
			conn_discard(c, k);
		}
	}
	pthread_mutex_lock(&c->lock);
	if (--c->active_calls == 0)
		pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->lock);
	if (r != 0)
		return r;
	if (ret_meta != NULL)
		*ret_meta = a.meta;
	if (a.status != 0) {
		vfs_client_free_resp(a.body, a.body_len);
		return a.status;
	}
	uint8_t *resp = body_to_resp(a.body, a.body_len, a.payload, a.len);
	if (ret_resp != NULL && ret_len != NULL) {
		*ret_resp = resp;
		*ret_len = a.len;
	} else {
		vfs_client_free_resp(resp, a.len);
	}
	return 0;
}

void vfs_client_set_flags(struct vfs_client *c, uint16_t flags)
{
	pthread_mutex_lock(&c->lock);
	c->flags = flags;
	pthread_mutex_unlock(&c->lock);
}

/* ---- watching ---- */

struct vfs_watch {
	int fd;
	uint32_t id;
};

static int watch_send(struct vfs_watch *w, uint16_t op, const struct buf *payload)
{
	struct vfs_req_header h = { .id = w->id, .op = op };
	struct buf b;
	bool sent;
	buf_init(&b);
	vfs_req_frame(&b, &h, payload != NULL ? payload->data : NULL,
		      payload != NULL ? (uint32_t)payload->len : 0);
	int r = b.err != 0 ? b.err : write_all(w->fd, b.data, b.len, now_ms() + 10000, &sent);
	buf_free(&b);
	return r;
}

/* Reads one frame for the watch: the WATCH answer or a notice. */
static int watch_read(struct vfs_watch *w, uint64_t deadline, struct vfs_resp_meta *meta,
		      struct cursor *c, uint8_t **ret_body, uint32_t *ret_len)
{
	uint32_t rid, plen;
	int32_t status;
	const uint8_t *payload;
	int r = read_frame(w->fd, deadline, ret_body, ret_len);
	if (r < 0)
		return r;
	r = vfs_resp_parse(*ret_body, *ret_len, &rid, &status, meta, &payload, &plen);
	if (r == 0 && rid != w->id)
		r = -EPROTO;
	if (r == 0 && status != 0)
		r = status;
	if (r < 0) {
		vfs_client_free_resp(*ret_body, *ret_len);
		return r;
	}
	cursor_init(c, payload, plen);
	return 0;
}

int vfs_watch_open(struct vfs_watch **ret, const char *socket_path, uint64_t *ret_start,
		   char *errmsg, size_t errlen)
{
	struct vfs_watch *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -ENOMEM;
	w->id = 1;
	uint64_t deadline = now_ms() + CLIENT_CONNECT_TIMEOUT_MS;
	uint32_t flags;
	int r = conn_open(socket_path, 0, deadline, &w->fd, &flags, errmsg, errlen);
	if (r < 0) {
		free(w);
		return r;
	}
	r = watch_send(w, VFS_OP_WATCH, NULL);
	struct vfs_resp_meta meta;
	struct cursor c;
	uint8_t *body = NULL;
	uint32_t len = 0;
	if (r == 0)
		r = watch_read(w, deadline, &meta, &c, &body, &len);
	if (r == 0) {
		*ret_start = cursor_u64(&c);
		if (cursor_done(&c) != 0)
			r = -EPROTO;
		vfs_client_free_resp(body, len);
	}
	if (r < 0) {
		set_err(errmsg, errlen, "cannot watch vaultfsd at %s: %s", socket_path,
			strerror(-r));
		vfs_watch_close(w);
		return r;
	}
	*ret = w;
	return 0;
}

/* Reads a notice's N attributes (VFS_NOTICE_ATTRS) into RET. */
static int notice_attrs(struct cursor *c, uint32_t n, struct vfs_notice *ret)
{
	ret->attrs = calloc(n, sizeof(*ret->attrs));
	if (ret->attrs == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < n && c->err == 0; i++) {
		if (cursor_u8(c) == 0)
			continue; /* gone: ino 0 */
		vfs_attr_get(c, &ret->attrs[i]);
		if (ret->attrs[i].ino != ret->inos[i])
			return -EPROTO;
	}
	return c->err != 0 ? -EPROTO : 0;
}

int vfs_watch_next(struct vfs_watch *w, unsigned timeout_ms, struct vfs_notice *ret)
{
	struct vfs_resp_meta meta;
	struct cursor c;
	uint8_t *body;
	uint32_t len;
	int r = watch_read(w, now_ms() + timeout_ms, &meta, &c, &body, &len);
	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->index = meta.state_index;
	ret->flags = cursor_u8(&c);
	uint32_t n = cursor_u32(&c);
	if (c.err == 0 && n <= VFS_NOTICE_MAX_INOS && n > 0)
		ret->inos = calloc(n, sizeof(uint64_t));
	if (n > 0 && ret->inos == NULL)
		r = c.err != 0 || n > VFS_NOTICE_MAX_INOS ? -EPROTO : -ENOMEM;
	for (uint32_t i = 0; r == 0 && i < n; i++)
		ret->inos[i] = cursor_u64(&c);
	if (r == 0 && (ret->flags & VFS_NOTICE_ATTRS) && n > 0)
		r = notice_attrs(&c, n, ret);
	if (r == 0 && cursor_done(&c) != 0)
		r = -EPROTO;
	ret->n = n;
	vfs_client_free_resp(body, len);
	if (r < 0)
		vfs_notice_free(ret);
	return r;
}

void vfs_notice_free(struct vfs_notice *notice)
{
	free(notice->inos);
	free(notice->attrs);
	notice->inos = NULL;
	notice->attrs = NULL;
	notice->n = 0;
}

int vfs_watch_ack(struct vfs_watch *w, uint64_t index)
{
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, index);
	int r = b.err != 0 ? b.err : watch_send(w, VFS_OP_WATCH_ACK, &b);
	buf_free(&b);
	return r;
}

void vfs_watch_close(struct vfs_watch *w)
{
	if (w == NULL)
		return;
	close(w->fd);
	free(w);
}
