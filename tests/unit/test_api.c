/* Tests for the local API server and client over a real Unix socket.
 *
 * A background thread runs a libuv loop that owns the server; the test
 * thread drives it through a uv_async command channel and talks to it with
 * vfs_client (and raw sockets for malformed input). The handler:
 *   READ     echo the payload at once
 *   GETATTR  u32 delay_ms, rest: echo the whole payload after delay_ms
 *   UNLINK   u32 errno: fail with -errno
 *   LOOKUP   reply u32 peer_uid, u32 uid, u32 gid
 *   STATFS   succeed with no payload */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "api/server.h"
#include "vaultfs/client.h"
#include "vaultfs/proto.h"

#define CALL_TIMEOUT_MS 10000u
#define CLOSE_DEADLINE_MS 5000
#define NOBODY_CLIENT_ARG "--nobody-client"

enum cmd { CMD_NONE, CMD_START, CMD_STOP, CMD_STOP_ANSWERING, CMD_QUIT };

struct harness {
	uv_loop_t loop;
	uv_async_t async;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum cmd cmd;
	bool done;
	int result;
	struct api_server *srv;
	char dir[64];
	char path[128];
	char errmsg[256];
	atomic_int in_flight;
	atomic_int max_in_flight;
	atomic_int handled_reads;
	struct deferred *held; /* the latest delayed GETATTR not answered yet */
};

static struct harness H;

/* ---- handler (loop thread) ---- */

struct deferred {
	uv_timer_t timer;
	struct api_request *req;
};

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void reply(struct api_request *req, int status, const void *payload, size_t len)
{
	atomic_fetch_sub(&H.in_flight, 1);
	api_reply(req, status, payload, len);
}

static void timer_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void timer_cb(uv_timer_t *t)
{
	struct deferred *d = t->data;
	if (H.held == d)
		H.held = NULL;
	reply(d->req, 0, d->req->payload, d->req->len);
	uv_close((uv_handle_t *)t, timer_close_cb);
}

static void handler(void *ctx, struct api_request *req)
{
	(void)ctx;
	int now = atomic_fetch_add(&H.in_flight, 1) + 1;
	int max = atomic_load(&H.max_in_flight);
	while (now > max && !atomic_compare_exchange_weak(&H.max_in_flight, &max, now))
		;
	switch (req->op) {
	case VFS_OP_READ:
		atomic_fetch_add(&H.handled_reads, 1);
		reply(req, 0, req->payload, req->len);
		return;
	case VFS_OP_GETATTR: {
		if (req->len < 4) {
			reply(req, -EINVAL, NULL, 0);
			return;
		}
		struct deferred *d = malloc(sizeof(*d));
		if (d == NULL)
			abort(); /* cmocka asserts must not run on the loop thread */
		d->req = req;
		uv_timer_init(&H.loop, &d->timer);
		d->timer.data = d;
		uv_timer_start(&d->timer, timer_cb, get_u32(req->payload), 0);
		H.held = d;
		return;
	}
	case VFS_OP_UNLINK:
		reply(req, req->len == 4 ? -(int)get_u32(req->payload) : -EINVAL, NULL, 0);
		return;
	case VFS_OP_LOOKUP: {
		uint8_t out[16 + VFS_COMM_LEN];
		put_u32(out, req->peer_uid);
		put_u32(out + 4, req->uid);
		put_u32(out + 8, req->gid);
		put_u32(out + 12, req->pid);
		memcpy(out + 16, req->comm, VFS_COMM_LEN);
		reply(req, 0, out, sizeof(out));
		return;
	}
	default:
		reply(req, 0, NULL, 0);
		return;
	}
}

/* ---- loop thread and command channel ---- */

static void cmd_finish(int result)
{
	pthread_mutex_lock(&H.mu);
	H.result = result;
	H.done = true;
	pthread_cond_signal(&H.cv);
	pthread_mutex_unlock(&H.mu);
}

static void stopped_cb(void *arg)
{
	(void)arg;
	cmd_finish(0);
}

/* Like the daemon's node_stop: the stop callback answers the request the
 * handler still holds, which frees the last connection from inside the
 * callback. */
static void stopped_answering_cb(void *arg)
{
	struct deferred *d = H.held;
	(void)arg;
	if (d != NULL) {
		H.held = NULL;
		uv_timer_stop(&d->timer);
		reply(d->req, -ESHUTDOWN, NULL, 0);
		uv_close((uv_handle_t *)&d->timer, timer_close_cb);
	}
	cmd_finish(0);
}

static void async_cb(uv_async_t *a)
{
	(void)a;
	pthread_mutex_lock(&H.mu);
	enum cmd cmd = H.cmd;
	H.cmd = CMD_NONE;
	pthread_mutex_unlock(&H.mu);
	switch (cmd) {
	case CMD_START:
		cmd_finish(api_server_start(&H.srv, &H.loop, H.path, handler, NULL, H.errmsg,
					    sizeof(H.errmsg)));
		break;
	case CMD_STOP: {
		struct api_server *s = H.srv;
		H.srv = NULL;
		api_server_stop(s, stopped_cb, NULL);
		break;
	}
	case CMD_STOP_ANSWERING: {
		struct api_server *s = H.srv;
		H.srv = NULL;
		api_server_stop(s, stopped_answering_cb, NULL);
		break;
	}
	case CMD_QUIT:
		if (H.srv != NULL)
			api_server_stop(H.srv, NULL, NULL);
		H.srv = NULL;
		uv_close((uv_handle_t *)&H.async, NULL);
		cmd_finish(0);
		break;
	case CMD_NONE:
		break;
	}
}

static void *loop_main(void *arg)
{
	(void)arg;
	uv_run(&H.loop, UV_RUN_DEFAULT);
	return NULL;
}

static int harness_cmd(enum cmd cmd)
{
	struct timespec abs;
	pthread_mutex_lock(&H.mu);
	H.cmd = cmd;
	H.done = false;
	pthread_mutex_unlock(&H.mu);
	uv_async_send(&H.async);
	clock_gettime(CLOCK_REALTIME, &abs);
	abs.tv_sec += 10;
	pthread_mutex_lock(&H.mu);
	while (!H.done)
		assert_int_not_equal(pthread_cond_timedwait(&H.cv, &H.mu, &abs), ETIMEDOUT);
	int r = H.result;
	pthread_mutex_unlock(&H.mu);
	return r;
}

static int setup(void **state)
{
	(void)state;
	memset(&H, 0, sizeof(H));
	strcpy(H.dir, "/tmp/vfs-api-XXXXXX");
	assert_non_null(mkdtemp(H.dir));
	snprintf(H.path, sizeof(H.path), "%s/run/vaultfsd.sock", H.dir);
	pthread_mutex_init(&H.mu, NULL);
	pthread_cond_init(&H.cv, NULL);
	assert_int_equal(uv_loop_init(&H.loop), 0);
	assert_int_equal(uv_async_init(&H.loop, &H.async, async_cb), 0);
	assert_int_equal(pthread_create(&H.thread, NULL, loop_main, NULL), 0);
	int r = harness_cmd(CMD_START);
	if (r != 0)
		fprintf(stderr, "api_server_start: %s\n", H.errmsg);
	assert_int_equal(r, 0);
	return 0;
}

static int teardown(void **state)
{
	char p[200];
	(void)state;
	harness_cmd(CMD_QUIT);
	pthread_join(H.thread, NULL);
	assert_int_equal(uv_loop_close(&H.loop), 0);
	pthread_cond_destroy(&H.cv);
	pthread_mutex_destroy(&H.mu);
	unlink(H.path);
	snprintf(p, sizeof(p), "%s/stale", H.dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/run", H.dir);
	rmdir(p);
	rmdir(H.dir);
	return 0;
}

/* ---- helpers ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct vfs_client *connect_ok(void)
{
	struct vfs_client *c = NULL;
	char err[256] = "";
	int r = vfs_client_connect(&c, H.path, err, sizeof(err));
	if (r != 0)
		fprintf(stderr, "connect: %s\n", err);
	assert_int_equal(r, 0);
	return c;
}

static void echo_ok(struct vfs_client *c, const char *msg)
{
	uint8_t *resp = NULL;
	size_t len = 0;
	assert_int_equal(vfs_client_call(c, VFS_OP_READ, 0, 0, msg, strlen(msg), CALL_TIMEOUT_MS,
					 &resp, &len, NULL),
			 0);
	assert_int_equal(len, strlen(msg));
	assert_memory_equal(resp, msg, len);
	vfs_client_free_resp(resp, len);
}

static int delayed_call(struct vfs_client *c, uint32_t delay_ms, const char *tag,
			unsigned timeout_ms)
{
	uint8_t req[64];
	size_t tlen = strlen(tag);
	assert_true(tlen + 4 <= sizeof(req));
	put_u32(req, delay_ms);
	memcpy(req + 4, tag, tlen);
	uint8_t *resp = NULL;
	size_t len = 0;
	int r = vfs_client_call(c, VFS_OP_GETATTR, 0, 0, req, tlen + 4, timeout_ms, &resp, &len, NULL);
	if (r == 0) {
		assert_int_equal(len, tlen + 4);
		assert_memory_equal(resp, req, len);
		vfs_client_free_resp(resp, len);
	}
	return r;
}

static int raw_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, H.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void frame(struct buf *b, uint32_t id, uint16_t op, const void *payload, uint32_t len)
{
	struct vfs_req_header h = { .id = id, .op = op, .uid = 0, .gid = 0 };
	vfs_req_frame(b, &h, payload, len);
	assert_int_equal(b->err, 0);
}

static void hello_frame(struct buf *b, uint32_t version)
{
	uint8_t v[4];
	put_u32(v, version);
	frame(b, 1, VFS_OP_HELLO, v, sizeof(v));
}

/* Reads until EOF or reset within the deadline; returns the bytes that came
 * before it, or -1 if the server kept the connection open. */
static ssize_t raw_wait_closed(int fd)
{
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	ssize_t total = 0;
	uint8_t tmp[4096];
	for (;;) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return -1;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
			continue;
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return total;
		if (n < 0)
			return -1;
		total += n;
	}
}

/* Reads one response frame with a deadline. */
static void raw_read_resp(int fd, uint32_t *ret_id, int32_t *ret_status, uint8_t *payload,
			  uint32_t *ret_len)
{
	static uint8_t body[VFS_MAX_FRAME];
	uint8_t hdr[4];
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	uint8_t *dst = hdr;
	size_t want = 4, got = 0;
	bool in_body = false;
	for (;;) {
		while (got < want) {
			uint64_t now = now_ms();
			assert_true(now < deadline);
			struct pollfd pfd = { .fd = fd, .events = POLLIN };
			if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
				continue;
			ssize_t n = read(fd, dst + got, want - got);
			assert_true(n > 0);
			got += (size_t)n;
		}
		if (in_body)
			break;
		want = get_u32(hdr);
		assert_true(want >= VFS_RESP_HEADER_LEN && want <= VFS_MAX_FRAME);
		dst = body;
		got = 0;
		in_body = true;
	}
	const uint8_t *p;
	assert_int_equal(vfs_resp_parse(body, (uint32_t)want, ret_id, ret_status, NULL, &p, ret_len), 0);
	if (payload != NULL && *ret_len > 0)
		memcpy(payload, p, *ret_len);
}

/* ---- tests ---- */

static void test_hello_and_fields(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	uint8_t *resp = NULL;
	size_t len = 0;
	assert_int_equal(vfs_client_call(c, VFS_OP_LOOKUP, 1234, 5678, NULL, 0, CALL_TIMEOUT_MS,
					 &resp, &len, NULL),
			 0);
	assert_int_equal(len, 16 + VFS_COMM_LEN);
	assert_int_equal(get_u32(resp), geteuid());
	assert_int_equal(get_u32(resp + 4), 1234);
	assert_int_equal(get_u32(resp + 8), 5678);
	assert_int_equal(get_u32(resp + 12), 0); /* no caller pid */
	assert_int_equal(resp[16], 0);
	vfs_client_free_resp(resp, len);

	/* The caller's pid and command reach the handler, the command cut
	 * to a C string whatever the caller of the client gave. */
	struct vfs_caller who = { .uid = 7, .gid = 8, .pid = 4321 };
	memset(who.comm, 'x', sizeof(who.comm));
	memcpy(who.comm, "a\"b", 3);
	assert_int_equal(vfs_client_call_as(c, VFS_OP_LOOKUP, &who, NULL, 0, CALL_TIMEOUT_MS,
					    &resp, &len, NULL),
			 0);
	assert_int_equal(get_u32(resp + 4), 7);
	assert_int_equal(get_u32(resp + 12), 4321);
	assert_memory_equal(resp + 16, "a\"bxxxxxxxxxxxx", VFS_COMM_LEN);
	vfs_client_free_resp(resp, len);
	assert_false(vfs_client_audited(c)); /* the harness keeps no audit log */

	resp = (uint8_t *)"x";
	len = 9;
	assert_int_equal(vfs_client_call(c, VFS_OP_STATFS, 0, 0, NULL, 0, CALL_TIMEOUT_MS, &resp,
					 &len, NULL),
			 0);
	assert_null(resp);
	assert_int_equal(len, 0);
	vfs_client_close(c);
}

static void test_socket_mode(void **state)
{
	(void)state;
	struct stat st;
	assert_int_equal(lstat(H.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/run", H.dir);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755);
}

static void test_error_status(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	const int errs[] = { ENOENT, EACCES, ENOKEY, ENOTEMPTY, EFBIG };
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		uint8_t req[4];
		uint8_t *resp = (uint8_t *)"untouched";
		put_u32(req, (uint32_t)errs[i]);
		assert_int_equal(vfs_client_call(c, VFS_OP_UNLINK, 0, 0, req, 4, CALL_TIMEOUT_MS,
						 &resp, &(size_t){ 0 }, NULL),
				 -errs[i]);
		assert_string_equal((char *)resp, "untouched");
	}
	/* Payloads too large for a frame never reach the wire. */
	assert_int_equal(vfs_client_call(c, VFS_OP_READ, 0, 0, "", VFS_MAX_FRAME, CALL_TIMEOUT_MS,
					 NULL, NULL, NULL),
			 -EMSGSIZE);
	echo_ok(c, "still fine");
	vfs_client_close(c);
}

static void test_big_payload(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	size_t n = VFS_MAX_VALUE;
	uint8_t *big = malloc(n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	uint8_t *resp = NULL;
	size_t len = 0;
	assert_int_equal(vfs_client_call(c, VFS_OP_READ, 0, 0, big, n, CALL_TIMEOUT_MS, &resp, &len, NULL),
			 0);
	assert_int_equal(len, n);
	assert_memory_equal(resp, big, n);
	vfs_client_free_resp(resp, len);
	free(big);
	vfs_client_close(c);
}

struct worker {
	struct vfs_client *c;
	int index;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned seed = (unsigned)w->index * 7919u + 1u;
	for (int i = 0; i < 150; i++) {
		char tag[48];
		snprintf(tag, sizeof(tag), "thread %d call %d", w->index, i);
		int kind = rand_r(&seed) % 3;
		uint8_t *resp = NULL;
		size_t len = 0;
		if (kind == 0) {
			if (vfs_client_call(w->c, VFS_OP_READ, 0, 0, tag, strlen(tag), CALL_TIMEOUT_MS,
					    &resp, &len, NULL) != 0 ||
			    len != strlen(tag) || memcmp(resp, tag, len) != 0)
				w->failures++;
			vfs_client_free_resp(resp, len);
		} else {
			uint8_t req[64];
			put_u32(req, (uint32_t)(rand_r(&seed) % 6));
			memcpy(req + 4, tag, strlen(tag));
			size_t rlen = strlen(tag) + 4;
			if (vfs_client_call(w->c, VFS_OP_GETATTR, 0, 0, req, rlen, CALL_TIMEOUT_MS,
					    &resp, &len, NULL) != 0 ||
			    len != rlen || memcmp(resp, req, len) != 0)
				w->failures++;
			vfs_client_free_resp(resp, len);
		}
	}
	return NULL;
}

static void test_concurrent_pipelined(void **state)
{
	(void)state;
	enum { NTHREADS = 8 };
	struct vfs_client *c = connect_ok();
	pthread_t th[NTHREADS];
	struct worker w[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .c = c, .index = i, .failures = 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failures, 0);
	}
	/* Several threads were waiting at once: the calls really overlapped. */
	assert_true(atomic_load(&H.max_in_flight) > 1);
	vfs_client_close(c);
}

struct slow_call {
	struct vfs_client *c;
	uint32_t delay;
	unsigned timeout;
	int result;
	atomic_bool finished;
};

static void *slow_main(void *arg);

/* More callers than the client has connections (64): the rest wait for a
 * connection to come back instead of failing, and the daemon never sees
 * more than 64 requests from the client at once. */
static void test_more_callers_than_connections(void **state)
{
	(void)state;
	enum { NCALLERS = 80 };
	struct vfs_client *c = connect_ok();
	pthread_t th[NCALLERS];
	static struct slow_call s[NCALLERS];
	atomic_store(&H.max_in_flight, 0);
	for (int i = 0; i < NCALLERS; i++) {
		s[i] = (struct slow_call){ .c = c, .delay = 300, .timeout = CALL_TIMEOUT_MS };
		assert_int_equal(pthread_create(&th[i], NULL, slow_main, &s[i]), 0);
	}
	for (int i = 0; i < NCALLERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(s[i].result, 0);
	}
	assert_true(atomic_load(&H.max_in_flight) > 1);
	assert_true(atomic_load(&H.max_in_flight) <= 64);
	echo_ok(c, "after the crowd");
	vfs_client_close(c);
}

/* With every connection held by a slow call, another call waits for one
 * no longer than its own timeout. */
static void test_wait_for_connection_times_out(void **state)
{
	(void)state;
	enum { NHELD = 64 };
	struct vfs_client *c = connect_ok();
	pthread_t th[NHELD];
	static struct slow_call s[NHELD];
	for (int i = 0; i < NHELD; i++) {
		s[i] = (struct slow_call){ .c = c, .delay = 1500, .timeout = CALL_TIMEOUT_MS };
		assert_int_equal(pthread_create(&th[i], NULL, slow_main, &s[i]), 0);
	}
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	while (atomic_load(&H.in_flight) < NHELD)
		assert_true(now_ms() < deadline);
	uint64_t t0 = now_ms();
	assert_int_equal(delayed_call(c, 0, "no room", 200), -ETIMEDOUT);
	/* Not before its deadline; and not by waiting out the held calls,
	 * which would have given it a connection and a success. */
	assert_true(now_ms() - t0 >= 190);
	for (int i = 0; i < NHELD; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(s[i].result, 0);
	}
	vfs_client_close(c);
}

static void *slow_main(void *arg)
{
	struct slow_call *s = arg;
	s->result = delayed_call(s->c, s->delay, "slow", s->timeout);
	atomic_store(&s->finished, true);
	return NULL;
}

static void test_out_of_order(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	struct slow_call s = { .c = c, .delay = 1500, .timeout = CALL_TIMEOUT_MS };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, slow_main, &s), 0);
	/* Wait until the slow request is held by the handler. */
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	while (atomic_load(&H.in_flight) == 0)
		assert_true(now_ms() < deadline);
	/* Sent later, answered first. */
	assert_int_equal(delayed_call(c, 0, "fast", CALL_TIMEOUT_MS), 0);
	echo_ok(c, "also fast");
	assert_false(atomic_load(&s.finished));
	pthread_join(th, NULL);
	assert_int_equal(s.result, 0);
	vfs_client_close(c);
}

static void test_timeout(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	uint64_t t0 = now_ms();
	assert_int_equal(delayed_call(c, 1000, "late", 100), -ETIMEDOUT);
	uint64_t took = now_ms() - t0;
	assert_true(took >= 90 && took < 900);
	/* The connection survives; the late answer is dropped when it comes. */
	echo_ok(c, "after timeout");
	assert_int_equal(delayed_call(c, 1200, "after late", CALL_TIMEOUT_MS), 0);
	vfs_client_close(c);
}

static void garbage_case(struct vfs_client *c, const char *name, const void *p, size_t n,
			 bool hello_first)
{
	struct buf b;
	buf_init(&b);
	if (hello_first)
		hello_frame(&b, VFS_PROTO_VERSION);
	buf_put_raw(&b, p, n);
	int fd = raw_connect();
	raw_send(fd, b.data, b.len);
	ssize_t before_eof = raw_wait_closed(fd);
	if (before_eof < 0)
		fail_msg("server kept the connection open after %s", name);
	/* At most the HELLO answer came before the close. */
	assert_true(before_eof == 0 || before_eof == 4 + VFS_RESP_HEADER_LEN + 8);
	close(fd);
	buf_free(&b);
	echo_ok(c, name);
}

static void test_garbage_frames(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	struct buf b;
	uint8_t tmp[64];

	/* Random bytes; the top length byte is forced so the length is invalid. */
	unsigned seed = 12345;
	for (size_t i = 0; i < sizeof(tmp); i++)
		tmp[i] = (uint8_t)rand_r(&seed);
	tmp[3] |= 0x80;
	garbage_case(c, "random bytes", tmp, sizeof(tmp), false);
	garbage_case(c, "random bytes after hello", tmp, sizeof(tmp), true);

	/* Oversized length. */
	put_u32(tmp, VFS_MAX_FRAME + 1);
	garbage_case(c, "oversized length", tmp, 4, true);

	/* Lengths shorter than a request header, with the bytes present. */
	memset(tmp, 0, sizeof(tmp));
	for (uint32_t n = 0; n < VFS_REQ_HEADER_LEN; n += 5) {
		put_u32(tmp, n);
		garbage_case(c, "truncated header", tmp, 4 + n, true);
	}

	/* A well-formed request that is not HELLO as the first frame. */
	buf_init(&b);
	frame(&b, 9, VFS_OP_READ, "hi", 2);
	garbage_case(c, "non-HELLO first", b.data, b.len, false);
	buf_free(&b);

	/* HELLO with another protocol version. */
	buf_init(&b);
	hello_frame(&b, VFS_PROTO_VERSION + 1);
	garbage_case(c, "wrong version", b.data, b.len, false);
	buf_free(&b);
	/* A mount of the build before atime (version 2: 48-byte attrs, no
	 * atime in SETATTR) or before control streams (version 3) is refused
	 * at HELLO, not misread. */
	assert_int_equal(VFS_PROTO_MIN_VERSION, 4);
	for (uint32_t old = 2; old < VFS_PROTO_MIN_VERSION; old++) {
		buf_init(&b);
		hello_frame(&b, old);
		garbage_case(c, "an older version", b.data, b.len, false);
		buf_free(&b);
	}

	/* An unknown flag bit, and an unknown op, after a good HELLO. */
	buf_init(&b);
	frame(&b, 2, VFS_OP_READ, NULL, 0);
	b.data[4 + 6] = 0x4; /* not a VFS_REQ_* flag */
	garbage_case(c, "unknown flag bits", b.data, b.len, true);
	b.data[4 + 6] = 0;
	b.data[4 + 4] = (uint8_t)VFS_OP_MAX_;
	garbage_case(c, "unknown op", b.data, b.len, true);
	buf_free(&b);

	vfs_client_close(c);
}

/* A raw connection of a client of VERSION that sent OP (LEN bytes of P)
 * right after its HELLO; the HELLO's answer is read, and its length
 * returned through *RET_LEN. */
static int raw_hello_then(uint32_t version, uint16_t op, const void *p, uint32_t len,
			  uint32_t *ret_len)
{
	struct buf b;
	buf_init(&b);
	hello_frame(&b, version);
	frame(&b, 2, op, p, len);
	int fd = raw_connect();
	raw_send(fd, b.data, b.len);
	buf_free(&b);
	uint32_t id;
	int32_t status;
	static uint8_t payload[64];
	raw_read_resp(fd, &id, &status, payload, ret_len);
	assert_int_equal(status, 0);
	assert_int_equal(get_u32(payload), version);
	return fd;
}

/* A version-4 mount (no caller in its requests, a 4-byte HELLO answer)
 * still works with this daemon: an upgrade need not stop the mounts. */
static void test_hello_version4(void **state)
{
	(void)state;
	uint32_t id, len;
	int32_t status;
	static uint8_t payload[64];
	int fd = raw_hello_then(4, VFS_OP_LOOKUP, NULL, 0, &len);
	assert_int_equal(len, 4);
	raw_read_resp(fd, &id, &status, payload, &len);
	assert_int_equal(id, 2);
	assert_int_equal(status, 0);
	assert_int_equal(get_u32(payload + 12), 0); /* no pid */
	close(fd);
}

/* Ops are served to the versions that have them: READDIRPLUS (version 6)
 * from a version-5 mount is a protocol error, as any unknown op was to a
 * version-5 daemon; from a version-6 mount it reaches the handler. */
static void test_op_needs_version(void **state)
{
	(void)state;
	uint8_t p[16] = { 0 };
	uint32_t id, len;
	int32_t status;
	static uint8_t payload[64];
	int fd = raw_hello_then(5, VFS_OP_READDIRPLUS, p, sizeof(p), &len);
	assert_int_equal(raw_wait_closed(fd), 0); /* nothing after HELLO's answer */
	close(fd);
	fd = raw_hello_then(6, VFS_OP_READDIRPLUS, p, sizeof(p), &len);
	raw_read_resp(fd, &id, &status, payload, &len);
	assert_int_equal(id, 2);
	assert_int_equal(status, 0);
	close(fd);
}

static void test_raw_partial_and_batched(void **state)
{
	(void)state;
	enum { N = 20 };
	struct buf b;
	buf_init(&b);
	hello_frame(&b, VFS_PROTO_VERSION);
	for (uint32_t i = 0; i < N; i++) {
		uint8_t p[4];
		put_u32(p, i);
		frame(&b, 100 + i, VFS_OP_READ, p, sizeof(p));
	}
	int fd = raw_connect();
	/* Byte by byte first (partial reads), then the rest in one write
	 * (many frames per read). */
	size_t split = 4 + VFS_REQ_HEADER_LEN + 4 + 10;
	for (size_t i = 0; i < split; i++)
		raw_send(fd, b.data + i, 1);
	raw_send(fd, b.data + split, b.len - split);

	uint32_t id, len;
	int32_t status;
	uint8_t payload[16];
	raw_read_resp(fd, &id, &status, payload, &len);
	assert_int_equal(id, 1);
	assert_int_equal(status, 0);
	assert_int_equal(len, 8);
	assert_int_equal(get_u32(payload), VFS_PROTO_VERSION);
	assert_int_equal(get_u32(payload + 4), 0); /* no VFS_HELLO_* flags */
	for (uint32_t i = 0; i < N; i++) {
		raw_read_resp(fd, &id, &status, payload, &len);
		assert_int_equal(status, 0);
		assert_int_equal(len, 4);
		assert_int_equal(id, 100 + get_u32(payload));
	}
	close(fd);
	buf_free(&b);
}

static void test_backpressure(void **state)
{
	(void)state;
	enum { N = 1000 };
	struct buf b;
	buf_init(&b);
	hello_frame(&b, VFS_PROTO_VERSION);
	for (uint32_t i = 0; i < N; i++) {
		uint8_t p[4];
		put_u32(p, 20); /* each held 20 ms by the handler */
		frame(&b, 1000 + i, VFS_OP_GETATTR, p, sizeof(p));
	}
	int fd = raw_connect();
	raw_send(fd, b.data, b.len);
	uint32_t id, len;
	int32_t status;
	bool seen[N] = { false };
	raw_read_resp(fd, &id, &status, NULL, &len);
	assert_int_equal(id, 1);
	for (int i = 0; i < N; i++) {
		raw_read_resp(fd, &id, &status, NULL, &len);
		assert_int_equal(status, 0);
		assert_true(id >= 1000 && id < 1000 + N);
		assert_false(seen[id - 1000]);
		seen[id - 1000] = true;
	}
	/* The server never held more than its per-connection bound. */
	int max = atomic_load(&H.max_in_flight);
	assert_true(max > 1 && max <= 256);
	close(fd);
	buf_free(&b);
}

/* Echoes of 1 MiB the client does not read pile up as pending output; the
 * server must stop reading requests near 64 MiB instead of growing. */
static void test_output_bound(void **state)
{
	(void)state;
	enum { N = 80 };
	const size_t plen = VFS_MAX_VALUE;
	const size_t resp_len = 4 + VFS_RESP_HEADER_LEN + plen;
	uint8_t *payload = calloc(1, plen);
	assert_non_null(payload);
	struct buf b;
	buf_init(&b);
	hello_frame(&b, VFS_PROTO_VERSION);
	int fd = raw_connect();
	raw_send(fd, b.data, b.len);
	buf_clear(&b);
	frame(&b, 5000, VFS_OP_READ, payload, (uint32_t)plen);
	free(payload);

	int sent = 0;
	size_t off = 0;
	bool stalled = false;
	while (sent < N) {
		ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			off += (size_t)w;
			if (off == b.len) {
				sent++;
				off = 0;
			}
			continue;
		}
		assert_true(errno == EAGAIN);
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, 1000) == 0) {
			stalled = true;
			break;
		}
	}
	assert_true(stalled);
	int handled = atomic_load(&H.handled_reads);
	assert_true(handled > 0 && handled <= 66);

	/* Reading the answers lets the server resume; everything completes. */
	size_t want = 4 + VFS_RESP_HEADER_LEN + 8 + (size_t)N * resp_len, got = 0;
	uint64_t deadline = now_ms() + 60000;
	static uint8_t sink[1 << 16];
	while (got < want) {
		assert_true(now_ms() < deadline);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		if (sent < N)
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 1000) <= 0)
			continue;
		if (pfd.revents & POLLIN) {
			ssize_t n = read(fd, sink, sizeof(sink));
			assert_true(n > 0);
			got += (size_t)n;
		}
		if ((pfd.revents & POLLOUT) && sent < N) {
			ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0 && (off += (size_t)w) == b.len) {
				sent++;
				off = 0;
			}
		}
	}
	assert_int_equal(got, want);
	assert_int_equal(atomic_load(&H.handled_reads), N);
	close(fd);
	buf_free(&b);
}

/* A client that hangs up while answers are still being written must not
 * take the daemon down (SIGPIPE) or disturb other clients. */
static void test_client_vanishes(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	for (int round = 0; round < 5; round++) {
		struct buf b;
		buf_init(&b);
		hello_frame(&b, VFS_PROTO_VERSION);
		uint8_t *payload = calloc(1, VFS_MAX_VALUE);
		assert_non_null(payload);
		for (uint32_t i = 0; i < 4; i++)
			frame(&b, 10 + i, VFS_OP_READ, payload, VFS_MAX_VALUE);
		free(payload);
		int fd = raw_connect();
		size_t off = 0;
		/* Wait until the server has answered at least one of them. */
		int before = atomic_load(&H.handled_reads);
		uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
		while (atomic_load(&H.handled_reads) == before) {
			assert_true(now_ms() < deadline);
			ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0)
				off += (size_t)w;
			if (off == b.len)
				continue;
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			poll(&pfd, 1, 10);
		}
		close(fd);
		buf_free(&b);
		echo_ok(c, "others unaffected");
	}
	vfs_client_close(c);
}

static void test_restart(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	echo_ok(c, "before restart");

	/* A request the handler still holds when the server stops: the caller
	 * gets -ENOTCONN, and the late reply is dropped by the server. */
	struct slow_call s = { .c = c, .delay = 300, .timeout = CALL_TIMEOUT_MS };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, slow_main, &s), 0);
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	while (atomic_load(&H.in_flight) == 0)
		assert_true(now_ms() < deadline);

	assert_int_equal(harness_cmd(CMD_STOP), 0);
	pthread_join(th, NULL);
	assert_int_equal(s.result, -ENOTCONN);
	struct stat st;
	assert_int_equal(lstat(H.path, &st), -1); /* socket file removed */

	/* Daemon down: calls fail, they do not hang. */
	assert_int_equal(vfs_client_call(c, VFS_OP_READ, 0, 0, "x", 1, CALL_TIMEOUT_MS, NULL, NULL, NULL),
			 -ENOTCONN);

	assert_int_equal(harness_cmd(CMD_START), 0);
	echo_ok(c, "after restart");
	/* The late reply to the old connection must have been dropped cleanly. */
	deadline = now_ms() + CLOSE_DEADLINE_MS;
	while (atomic_load(&H.in_flight) != 0)
		assert_true(now_ms() < deadline);
	echo_ok(c, "still after restart");
	vfs_client_close(c);
}

/* Regression (found by the fault harness): the daemon's stop callback
 * answers held requests; the last answer freed the server inside the
 * callback, and the server then read its freed struct (ASan: use after
 * free in server_check_done). */
static void test_stop_callback_answers_held_request(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	struct slow_call s = { .c = c, .delay = 60000, .timeout = CALL_TIMEOUT_MS };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, slow_main, &s), 0);
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	while (atomic_load(&H.in_flight) == 0)
		assert_true(now_ms() < deadline);

	assert_int_equal(harness_cmd(CMD_STOP_ANSWERING), 0);
	pthread_join(th, NULL);
	assert_int_equal(s.result, -ENOTCONN); /* the connection was closed first */
	assert_int_equal(atomic_load(&H.in_flight), 0);
	assert_int_equal(harness_cmd(CMD_START), 0);
	echo_ok(c, "after a stop that answered");
	vfs_client_close(c);
}

static void test_second_daemon_refused(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct api_server *s = NULL;
	char err[256] = "";
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(api_server_start(&s, &loop, H.path, handler, NULL, err, sizeof(err)),
			 -EADDRINUSE);
	assert_non_null(strstr(err, "already listening"));
	assert_int_equal(uv_loop_close(&loop), 0);
	/* The live server was not disturbed. */
	struct vfs_client *c = connect_ok();
	echo_ok(c, "first daemon still serving");
	vfs_client_close(c);
}

static void test_stale_socket_replaced(void **state)
{
	(void)state;
	assert_int_equal(harness_cmd(CMD_STOP), 0);
	/* Leave a socket file nobody listens on, as a crashed daemon would. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, H.path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(harness_cmd(CMD_START), 0);
	struct vfs_client *c = connect_ok();
	echo_ok(c, "after stale socket");
	vfs_client_close(c);

	/* Something that is not a socket is never removed. */
	uv_loop_t loop;
	struct api_server *s = NULL;
	char err[256] = "", path[160];
	snprintf(path, sizeof(path), "%s/stale", H.dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(api_server_start(&s, &loop, path, handler, NULL, err, sizeof(err)),
			 -EEXIST);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(access(path, F_OK), 0);
}

static void test_missing_socket_message(void **state)
{
	(void)state;
	char path[160], err[512] = "";
	struct vfs_client *c = NULL;
	snprintf(path, sizeof(path), "%s/nope.sock", H.dir);
	assert_int_equal(vfs_client_connect(&c, path, err, sizeof(err)), -ENOENT);
	assert_null(c);
	assert_non_null(strstr(err, "cannot connect to vaultfsd at"));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "No such file or directory"));
	assert_non_null(strstr(err, "is vaultfsd running?"));
}

/* Child: become nobody, connect, send HELLO; exit 0 if the server hangs
 * up without answering. Only async-signal-safe calls after fork. */
static void nonroot_child(const uint8_t *hello, size_t n)
{
	uint8_t tmp[64];
	if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
		_exit(10);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	memcpy(sa.sun_path, H.path, strlen(H.path) + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		_exit(11); /* would be the mode bits, not SO_PEERCRED */
	(void)!send(fd, hello, n, MSG_NOSIGNAL);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, CLOSE_DEADLINE_MS) <= 0)
		_exit(12);
	ssize_t got = read(fd, tmp, sizeof(tmp));
	_exit(got > 0 ? 13 : 0);
}

static void test_nonroot_refused(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/run", H.dir);
	/* Open the path up so that only SO_PEERCRED stands in the way. */
	assert_int_equal(chmod(H.dir, 0755), 0);
	assert_int_equal(chmod(H.path, 0666), 0);
	struct buf b;
	buf_init(&b);
	hello_frame(&b, VFS_PROTO_VERSION);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		nonroot_child(b.data, b.len);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	buf_free(&b);

	/* The same through vfs_client, in a fresh process (exec, so that the
	 * client's threads start from a clean state). */
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	assert_true(n > 0);
	self[n] = '\0';
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		execl(self, self, NOBODY_CLIENT_ARG, H.path, (char *)NULL);
		_exit(11);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	struct vfs_client *c = connect_ok();
	echo_ok(c, "root still admitted");
	vfs_client_close(c);
}

static void test_close_fails_inflight(void **state)
{
	(void)state;
	struct vfs_client *c = connect_ok();
	struct slow_call s = { .c = c, .delay = 2000, .timeout = CALL_TIMEOUT_MS };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, slow_main, &s), 0);
	uint64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
	while (atomic_load(&H.in_flight) == 0)
		assert_true(now_ms() < deadline);
	uint64_t t0 = now_ms();
	vfs_client_close(c); /* returns once the waiting call has left */
	assert_true(now_ms() - t0 < 1500);
	pthread_join(th, NULL);
	assert_int_equal(s.result, -ENOTCONN);
	vfs_client_close(NULL);
}

/* Runs as uid 65534 (see test_nonroot_refused): the daemon must hang up
 * during the handshake and the client must say so. */
static int nobody_client_main(const char *path)
{
	struct vfs_client *c = NULL;
	char err[512] = "";
	int r = vfs_client_connect(&c, path, err, sizeof(err));
	if (r == 0) {
		fprintf(stderr, "non-root client was admitted\n");
		vfs_client_close(c);
		return 1;
	}
	if (strstr(err, "closed the connection during the handshake") == NULL) {
		fprintf(stderr, "unexpected refusal: %s\n", err);
		return 2;
	}
	fprintf(stderr, "non-root client refused as expected: %s\n", err);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], NOBODY_CLIENT_ARG) == 0)
		return nobody_client_main(argv[2]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hello_and_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_payload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_more_callers_than_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_for_connection_times_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_version4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_op_needs_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_partial_and_batched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_vanishes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_callback_answers_held_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_daemon_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_socket_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nonroot_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_fails_inflight, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
