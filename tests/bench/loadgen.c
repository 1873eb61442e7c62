/* A tiny closed-loop load generator for tests/bench/bench.sh: N threads,
 * each doing one operation at a time, for at most SECONDS seconds or MAXOPS
 * operations in all. No process is started per operation, so neither side
 * pays a fork/exec (etcdctl alone costs ~17 ms a command).
 *
 *   loadgen fs-put    THREADS SECONDS MAXOPS PREFIX     open(O_WRONLY|O_TRUNC)/write/close of PREFIX<thread>
 *   loadgen fs-get    THREADS SECONDS MAXOPS FILE       open(O_RDONLY)/read/close of FILE
 *   loadgen cat       THREADS SECONDS MAXOPS FILE       the `cat FILE` command (posix_spawn of
 *                                                       /bin/cat, output to /dev/null, waitpid)
 *   loadgen etcd-put  THREADS SECONDS MAXOPS HOST:PORT KEYPREFIX   POST /v3/kv/put  (key KEYPREFIX<thread>)
 *   loadgen etcd-get  THREADS SECONDS MAXOPS HOST:PORT KEY         POST /v3/kv/range (linearizable)
 *   loadgen etcd-sget THREADS SECONDS MAXOPS HOST:PORT KEY         the same, serializable (local, no ReadIndex)
 *   loadgen fs-putmany   THREADS SECONDS MAXOPS ROOT NDIRS NFILES  fs-put over NFILES distinct secrets per
 *                                                       thread, ROOT/dNN/cTTT-KKKKK (K mod NDIRS = NN),
 *                                                       one after the other, round and round
 *   loadgen etcd-putmany THREADS SECONDS MAXOPS HOST:PORT PREFIX NDIRS NFILES   the same as puts of
 *                                                       PREFIXdNN/cTTT-KKKKK
 *   loadgen fs-create    THREADS SECONDS MAXOPS ROOT SHAPE   creates of new secrets, open(O_CREAT|O_TRUNC)/
 *                                                       write/close; SHAPE "spread": ROOT/dTTT-D/nKKKKKKK,
 *                                                       each thread in CREATE_DIRS directories of its own
 *                                                       in turn; "shared": ROOT/dshared/nTTT-KKKKKKK, every
 *                                                       thread in one directory
 *   loadgen etcd-create  THREADS SECONDS MAXOPS HOST:PORT PREFIX SHAPE   the same as puts of new keys
 *                                                       PREFIXdTTT-D/nKKKKKKK or PREFIXdshared/nTTT-KKKKKKK
 *   loadgen fs-mixed     THREADS SECONDS MAXOPS ROOT NDIRS NFILES WPCT   over the fill tree's secrets
 *                                                       ROOT/dNNN/sNNNNNN (NDIRS x NFILES): each operation
 *                                                       picks one uniformly at random and writes it
 *                                                       (WPCT % of operations; open(O_TRUNC)/write/close of
 *                                                       a 64-byte value) or reads it (open/read/close)
 *   loadgen etcd-mixed   THREADS SECONDS MAXOPS HOST:PORT PREFIX NDIRS NFILES WPCT   the same as puts and
 *                                                       linearizable gets of PREFIXdNNN/sNNNNNN
 *   loadgen fs-failover   PID TIMEOUT FILE              SIGKILL PID, then start a write of FILE.<k mod 64> every 10 ms
 *   loadgen etcd-failover PID TIMEOUT HOST:PORT KEY     SIGKILL PID, then start a put of KEY.<k mod 64> every 10 ms
 *                                                       (both: until one succeeds; see failover())
 *   loadgen exec-failover PID TIMEOUT CMD [ARG...]      the same, but each attempt is a new process: CMD
 *                                                       exec'd with "{}" in its arguments replaced by
 *                                                       k mod 64; the first one to exit 0 ends it
 *   loadgen fs-once   FILE                              one write of FILE (open(O_TRUNC)/write/close)
 *   loadgen etcd-once HOST:PORT KEY                     one put of KEY on a new connection
 *                                                       (both: exit status 0 if it worked; the attempts
 *                                                       of exec-failover)
 *   loadgen fs-fill   THREADS ROOT NDIRS NFILES         mkdir ROOT/dNNN (NDIRS), then create NFILES
 *                                                       files of 64 bytes in each: ROOT/dNNN/sNNNNNN
 *   loadgen etcd-fill THREADS HOST:PORT PREFIX NDIRS NFILES   the same as puts of PREFIXdNNN/sNNNNNN
 *   loadgen fs-wait   T0_US TIMEOUT FILE LEN            start a read of FILE every 10 ms until one
 *                                                       returns exactly LEN bytes
 *   loadgen etcd-wait T0_US TIMEOUT HOST:PORT KEY       start a linearizable get of KEY every 10 ms
 *                                                       until one finds it (both: see wait_for_read())
 *
 * The etcd modes use etcd's HTTP/JSON gateway (served on the client port in
 * 3.4) over plain blocking sockets with keep-alive, one connection per thread.
 * fs-put creates PREFIX<thread> first (untimed) if it does not exist; the
 * putmany modes create each thread's secrets first (untimed) unless they are
 * all there (ROOT must exist; etcd: a count of each directory's keys).
 *
 * Output, one line: ops=N secs=S ops_s=X p50_us=A p99_us=B errors=E cpu_us=C
 * (C: the CPU time, user + system, of this process while its threads ran;
 * the untimed set-up before them is not counted), then with
 * LOADGEN_CPU="ROLE=PID ..." in the environment, cpu_us_ROLE=U for each:
 * the CPU time of process PID (all its threads, user + system, from
 * /proc/PID/stat, so in clock ticks: 10 ms at USER_HZ 100) over the same
 * window, and cpu_us_machine=U, the busy time of all CPUs (/proc/stat: all
 * but idle and iowait).
 * (fill: the same, ops counting secrets; fs-fill: secs include the mkdirs,
 * plus dirs=D; mixed: also read_ops=, read_p50_us=, read_p99_us=,
 * write_ops=, write_p50_us=, write_p99_us= for each kind of operation;
 * failover: ms=T attempts=K first_ok_attempt=J; wait: ms=T attempts=K).
 * Exit status 1 if nothing succeeded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum mode { FS_PUT, FS_GET, CAT, ETCD_PUT, ETCD_GET, ETCD_SGET, FS_FILL, ETCD_FILL, FS_MANY,
	    ETCD_MANY, FS_CREATE, ETCD_CREATE, FS_MIXED, ETCD_MIXED };

static enum mode g_mode;
static int g_threads;
static double g_seconds;
static long g_maxops;
static const char *g_path;   /* fs: prefix or file */
static const char *g_host;   /* etcd */
static int g_port;
static const char *g_key;    /* etcd: key prefix or key */
/* Workers wait at g_ready once their set-up is done and at g_start for the
 * clock to start: the timed window must not include anyone's set-up. */
static pthread_barrier_t g_ready, g_start;
static uint64_t g_t0, g_deadline;
/* fill: NDIRS directories of NFILES files; work items are taken in order */
static long g_ndirs, g_nfiles;
static long g_next_dir, g_next_file;
static pthread_barrier_t g_dirs_done;
/* putmany: NDIRS directories, NFILES secrets per thread (g_ndirs, g_nfiles) */
/* create: 1 for the shared directory, 0 for directories of each thread's own */
static int g_shared;
/* A thread's own directories in the spread shape: enough that its creates
 * are not all in one directory, few enough that 64 threads' set-up stays
 * quick (256 mkdirs). */
#define CREATE_DIRS 4
/* mixed: the percentage of writes; the fill tree is g_ndirs x g_nfiles */
static int g_write_pct;
/* mixed: a latency's top bit says "write", so one array holds both kinds */
#define LAT_WRITE 0x80000000u

struct worker {
	int id;
	pthread_t tid;
	long cap;
	long n;
	long errors;
	long dirs;
	uint32_t *lat_us;
	uint64_t end;
	int conn;
	char path[4096];
	char req[1024];
	size_t req_len;
	char rbuf[65536];
	size_t rlen;
};

static uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static void b64(const char *in, size_t n, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, o = 0;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16 |
			     (uint32_t)(unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = t[(v >> 6) & 63];
		out[o++] = t[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16 | (uint32_t)(unsigned char)in[i + 1] << 8;
		out[o++] = t[v >> 18];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = t[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = 0;
}

/* ---- filesystem ---------------------------------------------------------- */

/* open(FLAGS)/write/close: 0 if all of it worked. */
static int fs_write_flags(const char *path, int flags, const char *val, size_t len)
{
	int fd = open(path, flags, 0600);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, val, len);
	int rc = close(fd);
	return (w == (ssize_t)len && rc == 0) ? 0 : -1;
}

static int fs_write(const char *path, const char *val, size_t len)
{
	return fs_write_flags(path, O_WRONLY | O_TRUNC, val, len);
}

/* A new secret: create (a separate FUSE create), write, close. */
static int fs_create(const char *path, const char *val, size_t len)
{
	return fs_write_flags(path, O_WRONLY | O_CREAT | O_TRUNC, val, len);
}

/* 0 if FILE reads back exactly LEN bytes. */
static int fs_read_len(const char *path, size_t len)
{
	char buf[4096];
	size_t got = 0;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		got += (size_t)r;
	int rc = close(fd);
	return (r == 0 && rc == 0 && got == len) ? 0 : -1;
}

/* What a user's `cat FILE` costs: a process, its start-up, the reads. */
static int cat_cmd(const char *path)
{
	posix_spawn_file_actions_t fa;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	char *argv[] = { "cat", (char *)path, NULL };
	pid_t pid;
	int r = posix_spawn(&pid, "/bin/cat", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -1;
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int fs_read(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		;
	int rc = close(fd);
	return (r == 0 && rc == 0) ? 0 : -1;
}

/* ---- etcd HTTP/JSON gateway ---------------------------------------------- */

static int tcp_connect(const char *host, int port, int timeout_s)
{
	struct sockaddr_in sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, host, &sa.sin_addr);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (timeout_s > 0) {
		struct timeval tv = { .tv_sec = timeout_s };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static size_t http_build(char *out, size_t cap, const char *host, int port, const char *path,
			 const char *body)
{
	int n = snprintf(out, cap,
			 "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 path, host, port, strlen(body), body);
	return (size_t)n;
}

/* Sends one request on w->conn and reads one response (Content-Length or
 * chunked). Returns the HTTP status, or -1 on a transport error (the
 * connection is then closed). The body is left in w->rbuf. */
static int http_roundtrip(struct worker *w)
{
	size_t off = 0;
	while (off < w->req_len) {
		ssize_t s = send(w->conn, w->req + off, w->req_len - off, MSG_NOSIGNAL);
		if (s <= 0)
			goto fail;
		off += (size_t)s;
	}
	w->rlen = 0;
	char *hend = NULL;
	for (;;) {
		if (w->rlen > 0) {
			w->rbuf[w->rlen] = 0;
			if ((hend = strstr(w->rbuf, "\r\n\r\n")) != NULL)
				break;
		}
		if (w->rlen + 1 >= sizeof(w->rbuf))
			goto fail;
		ssize_t r = recv(w->conn, w->rbuf + w->rlen, sizeof(w->rbuf) - 1 - w->rlen, 0);
		if (r <= 0)
			goto fail;
		w->rlen += (size_t)r;
	}
	int status = 0;
	if (sscanf(w->rbuf, "HTTP/1.%*d %d", &status) != 1)
		goto fail;
	size_t hlen = (size_t)(hend - w->rbuf) + 4;
	*hend = 0;
	const char *cl = strcasestr(w->rbuf, "\r\nContent-Length:");
	int chunked = strcasestr(w->rbuf, "\r\nTransfer-Encoding: chunked") != NULL;
	*hend = '\r';
	if (cl != NULL && !chunked) {
		size_t want = hlen + strtoul(cl + 17, NULL, 10);
		if (want + 1 > sizeof(w->rbuf))
			goto fail;
		while (w->rlen < want) {
			ssize_t r = recv(w->conn, w->rbuf + w->rlen, want - w->rlen, 0);
			if (r <= 0)
				goto fail;
			w->rlen += (size_t)r;
		}
		w->rbuf[w->rlen] = 0;
		memmove(w->rbuf, w->rbuf + hlen, w->rlen - hlen + 1);
		w->rlen -= hlen;
		return status;
	}
	if (!chunked) {
		/* Neither: the body ends with the connection. */
		for (;;) {
			if (w->rlen + 1 >= sizeof(w->rbuf))
				goto fail;
			ssize_t r = recv(w->conn, w->rbuf + w->rlen, sizeof(w->rbuf) - 1 - w->rlen, 0);
			if (r < 0)
				goto fail;
			if (r == 0)
				break;
			w->rlen += (size_t)r;
		}
		w->rbuf[w->rlen] = 0;
		memmove(w->rbuf, w->rbuf + hlen, w->rlen - hlen + 1);
		w->rlen -= hlen;
		close(w->conn);
		w->conn = -1;
		return status;
	}
	/* Chunked: read until the terminating "0\r\n\r\n". */
	for (;;) {
		w->rbuf[w->rlen] = 0;
		if (w->rlen >= hlen + 5 && strstr(w->rbuf + hlen, "\r\n0\r\n\r\n") != NULL)
			break;
		if (w->rlen >= hlen + 5 && strncmp(w->rbuf + hlen, "0\r\n\r\n", 5) == 0)
			break;
		if (w->rlen + 1 >= sizeof(w->rbuf))
			goto fail;
		ssize_t r = recv(w->conn, w->rbuf + w->rlen, sizeof(w->rbuf) - 1 - w->rlen, 0);
		if (r <= 0)
			goto fail;
		w->rlen += (size_t)r;
	}
	memmove(w->rbuf, w->rbuf + hlen, w->rlen - hlen + 1);
	w->rlen -= hlen;
	return status;
fail:
	if (w->conn >= 0)
		close(w->conn);
	w->conn = -1;
	return -1;
}

static void etcd_put_req(struct worker *w, const char *key, const char *val)
{
	char k64[512], v64[512], body[1200];
	b64(key, strlen(key), k64);
	b64(val, strlen(val), v64);
	snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
	w->req_len = http_build(w->req, sizeof(w->req), g_host, g_port, "/v3/kv/put", body);
}

static void etcd_get_req(struct worker *w, const char *key, int serializable)
{
	char k64[512], body[600];
	b64(key, strlen(key), k64);
	snprintf(body, sizeof(body), "{\"key\":\"%s\"%s}", k64,
		 serializable ? ",\"serializable\":true" : "");
	w->req_len = http_build(w->req, sizeof(w->req), g_host, g_port, "/v3/kv/range", body);
}

/* One etcd request (w->req) on a kept-alive connection; 0 on a 200 answer
 * (for a range: one that holds the key). */
static int etcd_call(struct worker *w, int timeout_s, int want_kvs)
{
	if (w->conn < 0 && (w->conn = tcp_connect(g_host, g_port, timeout_s)) < 0)
		return -1;
	int st = http_roundtrip(w);
	if (st < 0) /* the connection is closed; the next call reconnects */
		return -1;
	if (st != 200 || strstr(w->rbuf, "\"error\"") != NULL)
		return -1;
	if (want_kvs && strstr(w->rbuf, "\"kvs\"") == NULL)
		return -1;
	return 0;
}

/* ---- putmany -------------------------------------------------------------- */

/* Secret K of thread W in the putmany modes. */
static void many_name(const struct worker *w, long k, char *out, size_t cap)
{
	if (g_mode == FS_MANY)
		snprintf(out, cap, "%s/d%02ld/c%03d-%05ld", g_path, k % g_ndirs, w->id, k);
	else
		snprintf(out, cap, "%sd%02ld/c%03d-%05ld", g_key, k % g_ndirs, w->id, k);
}

/* How many keys of etcd start with PREFIX (-1 on an error). */
static long etcd_count_prefix(struct worker *w, const char *prefix)
{
	char end[512], k64[700], e64[700], body[1500];
	size_t n = strlen(prefix);
	if (n == 0 || n >= sizeof(end))
		return -1;
	memcpy(end, prefix, n + 1);
	end[n - 1]++;
	b64(prefix, n, k64);
	b64(end, n, e64);
	snprintf(body, sizeof(body), "{\"key\":\"%s\",\"range_end\":\"%s\",\"count_only\":true}",
		 k64, e64);
	w->req_len = http_build(w->req, sizeof(w->req), g_host, g_port, "/v3/kv/range", body);
	if (etcd_call(w, 10, 0) < 0)
		return -1;
	/* int64 fields are JSON strings; a zero one is left out. */
	const char *c = strstr(w->rbuf, "\"count\":\"");
	return c != NULL ? atol(c + 9) : 0;
}

/* The untimed set-up of a putmany thread: its NFILES secrets, created
 * unless there. Failures count as errors. */
static void many_prepare(struct worker *w)
{
	char name[4096], val[64];
	long k, d;
	int len = snprintf(val, sizeof(val), "value-%d-init\n", w->id);

	if (g_mode == FS_MANY) {
		for (d = 0; d < g_ndirs && d < g_nfiles; d++) {
			snprintf(name, sizeof(name), "%s/d%02ld", g_path, d);
			if (mkdir(name, 0700) < 0 && errno != EEXIST)
				w->errors++;
		}
		for (k = 0; k < g_nfiles; k++) {
			many_name(w, k, name, sizeof(name));
			if (access(name, F_OK) != 0 && fs_create(name, val, (size_t)len) < 0)
				w->errors++;
		}
		return;
	}
	for (d = 0; d < g_ndirs && d < g_nfiles; d++) {
		char prefix[512];
		snprintf(prefix, sizeof(prefix), "%sd%02ld/c%03d-", g_key, d, w->id);
		if (etcd_count_prefix(w, prefix) == (g_nfiles - d + g_ndirs - 1) / g_ndirs)
			continue;
		for (k = d; k < g_nfiles; k += g_ndirs) {
			many_name(w, k, name, sizeof(name));
			etcd_put_req(w, name, val);
			if (etcd_call(w, 10, 0) < 0)
				w->errors++;
		}
	}
}

/* ---- create and mixed ---------------------------------------------------- */

/* The new secret SEQ of thread W in the create modes. */
static void create_name(const struct worker *w, long seq, char *out, size_t cap)
{
	const char *sep = g_mode == FS_CREATE ? "/" : "";
	const char *root = g_mode == FS_CREATE ? g_path : g_key;
	if (g_shared)
		snprintf(out, cap, "%s%sdshared/n%03d-%07ld", root, sep, w->id, seq);
	else
		snprintf(out, cap, "%s%sd%03d-%ld/n%07ld", root, sep, w->id, seq % CREATE_DIRS, seq);
}

/* The untimed set-up of an fs-create thread: its directories (or the
 * shared one); one that is there already is fine. */
static void create_prepare(struct worker *w)
{
	char name[4096];
	for (int d = 0; d < (g_shared ? 1 : CREATE_DIRS); d++) {
		if (g_shared)
			snprintf(name, sizeof(name), "%s/dshared", g_path);
		else
			snprintf(name, sizeof(name), "%s/d%03d-%d", g_path, w->id, d);
		if (mkdir(name, 0700) < 0 && errno != EEXIST)
			w->errors++;
	}
}

/* fill: one synthetic value per secret, FILL_VALUE_LEN bytes (below) */
#define FILL_VALUE_LEN 64
static void fill_value(long k, char *out);

/* One operation of the mixed modes on a secret of the fill tree picked
 * uniformly at random (xorshift64 state *RND); its latency's LAT_WRITE bit
 * says whether it was a write. The value written keeps the fill's length
 * (the cold start reads the tree's last secret back by its length). */
static int mixed_op(struct worker *w, uint64_t *rnd, long seq, uint32_t *kind)
{
	char name[4096], val[FILL_VALUE_LEN + 1];
	uint64_t x = *rnd;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*rnd = x;
	long k = (long)((x >> 8) % (uint64_t)(g_ndirs * g_nfiles));
	int write = (int)((x >> 1) % 100) < g_write_pct;
	*kind = write ? LAT_WRITE : 0;
	if (write) {
		fill_value(k, val);
		/* a new value each time: "mixed-<thread>-<seq>-" over the fill's */
		int n = snprintf(val, sizeof(val), "mixed-%03d-%09ld-", w->id, seq);
		val[n] = 'x';
	}
	if (g_mode == FS_MIXED) {
		snprintf(name, sizeof(name), "%s/d%03ld/s%06ld", g_path, k / g_nfiles, k);
		return write ? fs_write(name, val, FILL_VALUE_LEN) : fs_read(name);
	}
	snprintf(name, sizeof(name), "%sd%03ld/s%06ld", g_key, k / g_nfiles, k);
	if (write)
		etcd_put_req(w, name, val);
	else
		etcd_get_req(w, name, 0);
	return etcd_call(w, 10, !write);
}

/* ---- workers ------------------------------------------------------------- */

/* A worker's set-up is done: waits for every other one's, then for the
 * clock to start (run_workers). */
static void start_gate(void)
{
	pthread_barrier_wait(&g_ready);
	pthread_barrier_wait(&g_start);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	char key[512], val[128];
	long seq = 0;
	uint32_t kind = 0;
	/* mixed: each thread its own random sequence */
	uint64_t rnd = 0x9e3779b97f4a7c15u * (uint64_t)(w->id + 1) ^ now_ns();

	w->conn = -1;
	if (g_mode == FS_PUT) {
		snprintf(w->path, sizeof(w->path), "%s%d", g_path, w->id);
		if (access(w->path, F_OK) != 0) {
			int fd = open(w->path, O_WRONLY | O_CREAT, 0600);
			if (fd >= 0)
				close(fd);
		}
	} else if (g_mode == FS_GET || g_mode == CAT) {
		snprintf(w->path, sizeof(w->path), "%s", g_path);
	} else if (g_mode == FS_MANY) {
		many_prepare(w);
	} else if (g_mode == FS_CREATE) {
		create_prepare(w);
	} else if (g_mode == FS_MIXED) {
		/* nothing: the secrets are the fill's */
	} else {
		w->conn = tcp_connect(g_host, g_port, 10);
		if (g_mode == ETCD_PUT)
			snprintf(key, sizeof(key), "%s%d", g_key, w->id);
		else if (g_mode == ETCD_MANY)
			many_prepare(w);
		else if (g_mode == ETCD_GET || g_mode == ETCD_SGET)
			etcd_get_req(w, g_key, g_mode == ETCD_SGET);
	}
	start_gate();
	while (w->n < w->cap) {
		uint64_t t = now_ns();
		if (t >= g_deadline)
			break;
		int r;
		switch (g_mode) {
		case FS_PUT: {
			int len = snprintf(val, sizeof(val), "value-%d-%ld\n", w->id, seq++);
			r = fs_write(w->path, val, (size_t)len);
			break;
		}
		case FS_GET:
			r = fs_read(w->path);
			break;
		case CAT:
			r = cat_cmd(w->path);
			break;
		case FS_MANY: {
			int len = snprintf(val, sizeof(val), "value-%d-%ld\n", w->id, seq);
			many_name(w, seq++ % g_nfiles, w->path, sizeof(w->path));
			r = fs_write(w->path, val, (size_t)len);
			break;
		}
		case FS_CREATE: {
			int len = snprintf(val, sizeof(val), "value-%d-%ld\n", w->id, seq);
			create_name(w, seq++, w->path, sizeof(w->path));
			r = fs_create(w->path, val, (size_t)len);
			break;
		}
		case FS_MIXED:
		case ETCD_MIXED:
			r = mixed_op(w, &rnd, seq++, &kind);
			break;
		case ETCD_PUT:
		case ETCD_MANY:
		case ETCD_CREATE:
			if (g_mode == ETCD_MANY)
				many_name(w, seq % g_nfiles, key, sizeof(key));
			else if (g_mode == ETCD_CREATE)
				create_name(w, seq, key, sizeof(key));
			snprintf(val, sizeof(val), "value-%d-%ld\n", w->id, seq++);
			etcd_put_req(w, key, val);
			r = etcd_call(w, 10, 0);
			break;
		default:
			r = etcd_call(w, 10, 1);
			break;
		}
		uint64_t d = now_ns() - t;
		if (r == 0)
			w->lat_us[w->n++] = (uint32_t)(d / 1000) | kind;
		else
			w->errors++;
		if (w->errors > 1000)
			break;
	}
	w->end = now_ns();
	if (w->conn >= 0)
		close(w->conn);
	return NULL;
}

/* fill: one synthetic value per secret, FILL_VALUE_LEN bytes (not a secret;
 * the same for both systems). */

static void fill_value(long k, char *out)
{
	int n = snprintf(out, FILL_VALUE_LEN + 1, "scale-value-%06ld-", k);
	memset(out + n, 'x', (size_t)(FILL_VALUE_LEN - n));
	out[FILL_VALUE_LEN] = 0;
}

/* fs-fill / etcd-fill: the threads share one sequence of work items, so the
 * writes land directory by directory as a restore or a migration would write
 * them. fs-fill makes the directories first (timed: they are part of
 * writing the tree). Secret k is dNNN/sNNNNNN with NNN = k / NFILES. */
static void *fill_run(void *arg)
{
	struct worker *w = arg;
	char val[FILL_VALUE_LEN + 1], key[512];
	long total = g_ndirs * g_nfiles;

	w->conn = -1;
	if (g_mode == ETCD_FILL)
		w->conn = tcp_connect(g_host, g_port, 10);
	start_gate();
	if (g_mode == FS_FILL) {
		for (;;) {
			long d = __atomic_fetch_add(&g_next_dir, 1, __ATOMIC_RELAXED);
			if (d >= g_ndirs)
				break;
			snprintf(w->path, sizeof(w->path), "%s/d%03ld", g_path, d);
			if (mkdir(w->path, 0700) == 0 || errno == EEXIST)
				w->dirs++;
			else
				w->errors++;
		}
		pthread_barrier_wait(&g_dirs_done);
	}
	for (;;) {
		long k = __atomic_fetch_add(&g_next_file, 1, __ATOMIC_RELAXED);
		if (k >= total)
			break;
		fill_value(k, val);
		uint64_t t = now_ns();
		int r;
		if (g_mode == FS_FILL) {
			snprintf(w->path, sizeof(w->path), "%s/d%03ld/s%06ld", g_path, k / g_nfiles, k);
			r = fs_create(w->path, val, FILL_VALUE_LEN);
		} else {
			snprintf(key, sizeof(key), "%sd%03ld/s%06ld", g_key, k / g_nfiles, k);
			etcd_put_req(w, key, val);
			r = etcd_call(w, 10, 0);
		}
		uint64_t d = now_ns() - t;
		if (r == 0 && w->n < w->cap)
			w->lat_us[w->n++] = (uint32_t)(d / 1000);
		else
			w->errors++;
	}
	w->end = now_ns();
	if (w->conn >= 0)
		close(w->conn);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int run_workers(long cap, void *(*fn)(void *));

#define CPU_MAX_PROCS 8
static struct {
	char role[32];
	int pid;
	uint64_t us0;
} g_cpu[CPU_MAX_PROCS];
static int g_ncpu;

/* Process PID's CPU time so far (utime + stime) in microseconds; PID 0:
 * the machine's busy time. 0 if it cannot be read. */
static uint64_t proc_cpu_us(int pid)
{
	char path[64], buf[2048];
	unsigned long long v[8] = { 0 };
	size_t n;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f;

	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	else
		snprintf(path, sizeof(path), "/proc/stat");
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	if (pid > 0) {
		/* After "PID (COMM) ": state is field 3, utime 14, stime 15. */
		char *p = strrchr(buf, ')');
		if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
					&v[0], &v[1]) != 2)
			return 0;
		return (v[0] + v[1]) * 1000000u / (unsigned long long)hz;
	}
	/* cpu user nice system idle iowait irq softirq steal */
	if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) != 8)
		return 0;
	return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * 1000000u / (unsigned long long)hz;
}

/* LOADGEN_CPU="ROLE=PID ...", and the machine. */
static void cpu_parse(void)
{
	const char *e = getenv("LOADGEN_CPU");
	char role[32];
	int pid, used;

	while (e != NULL && g_ncpu < CPU_MAX_PROCS - 1 &&
	       sscanf(e, " %31[a-z0-9_]=%d%n", role, &pid, &used) == 2) {
		snprintf(g_cpu[g_ncpu].role, sizeof(g_cpu[g_ncpu].role), "%s", role);
		g_cpu[g_ncpu++].pid = pid;
		e += used;
	}
	if (g_ncpu > 0)
		snprintf(g_cpu[g_ncpu++].role, sizeof(g_cpu[0].role), "machine");
}

/* This process's CPU time so far, user + system, in microseconds. */
static uint64_t cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}
static int fill(int argc, char **argv);

static int usage(void)
{
	fprintf(stderr, "usage: see the comment at the top of loadgen.c\n");
	return 2;
}

static int parse_hostport(const char *s)
{
	static char host[64];
	const char *c = strrchr(s, ':');
	if (c == NULL || (size_t)(c - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(c - s));
	host[c - s] = 0;
	g_host = host;
	g_port = atoi(c + 1);
	return 0;
}

/* fs-failover / etcd-failover: the clock starts at the SIGKILL. A new write
 * attempt starts every 10 ms, each in its own thread, whether or not earlier
 * ones have answered: a request caught in flight by the crash may hang until
 * a server-side timeout (etcd: ~5 s for a lost proposal) or fail at once,
 * and neither should decide the result. The figure is the time at which the
 * first attempt succeeds.
 *
 * Attempt k writes FILE.<k mod FO_SLOTS> (etcd: KEY.<k mod FO_SLOTS>), all
 * written once before the kill: on a filesystem, attempts on one file queue
 * on its inode lock in the kernel (open(O_TRUNC) and write() take it), so a
 * hundred new writers a second on a single file would measure that queue,
 * not the failover. 64 slots at 10 ms apart: no two attempts share a file
 * within the first 640 ms. */
#define FO_SLOTS 64
static int attempt_loop(double timeout);
/* How attempt_loop starts attempt k (0 if it did; default: a thread) and
 * what it does before it exits (exec-failover: kill the attempts left). */
static int (*fo_start)(long k);
static void (*fo_finish)(void);
static const char *fo_target, *fo_key;
static int fo_etcd, fo_timeout_s;
static int fo_read;         /* the wait modes: attempts are reads */
static size_t fo_len;       /* fs-wait: the length the read must return */
static clockid_t fo_clock = CLOCK_MONOTONIC;
static uint64_t fo_t0;      /* on fo_clock */
static pthread_mutex_t fo_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t fo_first_ok;   /* 0: none yet */
static long fo_ok_attempt;

static void *fo_attempt(void *arg)
{
	long k = (long)(intptr_t)arg;
	char val[64];
	int r;
	char slot[4200]; /* the writes' file or key */
	snprintf(val, sizeof(val), "after-kill-%ld\n", k);
	if (!fo_read)
		snprintf(slot, sizeof(slot), "%s.%ld", fo_etcd ? fo_key : fo_target, k % FO_SLOTS);
	if (fo_etcd) {
		struct worker *w = calloc(1, sizeof(*w));
		if (w == NULL)
			return NULL;
		w->conn = -1;
		if (fo_read)
			etcd_get_req(w, fo_key, 0);
		else
			etcd_put_req(w, slot, val);
		r = etcd_call(w, fo_timeout_s, fo_read);
		if (w->conn >= 0)
			close(w->conn);
		free(w);
	} else if (fo_read) {
		r = fs_read_len(fo_target, fo_len);
	} else {
		r = fs_write(slot, val, strlen(val));
	}
	uint64_t t = clock_ns(fo_clock);
	pthread_mutex_lock(&fo_lock);
	if (r == 0 && (fo_first_ok == 0 || t < fo_first_ok)) {
		fo_first_ok = t;
		fo_ok_attempt = k;
	}
	pthread_mutex_unlock(&fo_lock);
	return NULL;
}

static int failover(int argc, char **argv, int etcd)
{
	if (argc != (etcd ? 6 : 5))
		return usage();
	pid_t pid = (pid_t)atoi(argv[2]);
	double timeout = atof(argv[3]);
	static struct worker w;

	fo_etcd = etcd;
	fo_timeout_s = (int)timeout > 0 ? (int)timeout : 1;
	w.conn = -1;
	if (etcd) {
		if (parse_hostport(argv[4]) < 0)
			return usage();
		fo_key = argv[5];
	} else {
		fo_target = argv[4];
	}
	/* Writes before the kill: FILE/KEY itself and every slot exist, and
	 * the path (connection, mount) is warm. */
	for (long k = -1; k < FO_SLOTS; k++) {
		char slot[4200];
		const char *base = etcd ? argv[5] : argv[4];
		if (k < 0)
			snprintf(slot, sizeof(slot), "%s", base);
		else
			snprintf(slot, sizeof(slot), "%s.%ld", base, k);
		if (etcd) {
			etcd_put_req(&w, slot, "before-kill");
			if (etcd_call(&w, 5, 0) != 0) {
				fprintf(stderr, "loadgen: the put before the kill failed\n");
				return 1;
			}
			continue;
		}
		/* Created if need be (O_CREAT is a separate create on FUSE). */
		int fd = open(slot, O_WRONLY | O_CREAT, 0600);
		if (fd >= 0)
			close(fd);
		if (fs_write(slot, "before-kill\n", 12) != 0) {
			perror("loadgen: the write before the kill");
			return 1;
		}
	}
	if (w.conn >= 0)
		close(w.conn);
	w.conn = -1;
	fo_t0 = now_ns();
	if (kill(pid, SIGKILL) != 0) {
		perror("loadgen: kill");
		return 1;
	}
	return attempt_loop(timeout);
}

/* exec-failover: as failover(), but each attempt is a process of its own,
 * as a user's `echo v > FILE` or a script's put is: its start-up, its own
 * path lookup and (etcd) its own connection are in the time. Attempt k
 * runs CMD with "{}" in its arguments replaced by k mod FO_SLOTS; the
 * figure is the time at which the first attempt process to exit 0 has
 * exited, as seen by a thread waiting for the children. Attempts still
 * running at the end are killed. */
#define EX_MAX_ATTEMPTS 2000
static pid_t ex_pid[EX_MAX_ATTEMPTS + 1]; /* by attempt; 0 once reaped */

static void *ex_reaper(void *arg)
{
	(void)arg;
	for (;;) {
		int st;
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0) {
			if (errno == ECHILD) /* none running yet: the next comes within 10 ms */
				usleep(1000);
			continue;
		}
		uint64_t t = now_ns();
		pthread_mutex_lock(&fo_lock);
		for (long k = 1; k <= EX_MAX_ATTEMPTS; k++) {
			if (ex_pid[k] != p)
				continue;
			ex_pid[k] = 0;
			if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && fo_first_ok == 0) {
				fo_first_ok = t;
				fo_ok_attempt = k;
			}
			break;
		}
		pthread_mutex_unlock(&fo_lock);
	}
	return NULL;
}

/* exec-failover's CMD, and what its attempts need. */
static char **ex_cmd, **ex_av;
static int ex_ncmd;
static posix_spawn_file_actions_t ex_fa;

/* Starts attempt K of exec-failover: CMD with "{}" replaced by its slot. */
static int ex_start(long k)
{
	char slot[16], *bufs[64];
	int nb = 0, r;
	pid_t p;
	if (k > EX_MAX_ATTEMPTS)
		return -1;
	snprintf(slot, sizeof(slot), "%ld", k % FO_SLOTS);
	for (int i = 0; i < ex_ncmd; i++) {
		const char *at = strstr(ex_cmd[i], "{}");
		ex_av[i] = ex_cmd[i];
		if (at == NULL || nb >= 64)
			continue;
		size_t len = strlen(ex_cmd[i]) + sizeof(slot);
		char *b = malloc(len);
		if (b == NULL)
			continue;
		snprintf(b, len, "%.*s%s%s", (int)(at - ex_cmd[i]), ex_cmd[i], slot, at + 2);
		ex_av[i] = bufs[nb++] = b;
	}
	ex_av[ex_ncmd] = NULL;
	/* the lock: the reaper must find the pid once the child exits */
	pthread_mutex_lock(&fo_lock);
	r = posix_spawn(&p, ex_av[0], &ex_fa, NULL, ex_av, environ);
	if (r == 0)
		ex_pid[k] = p;
	pthread_mutex_unlock(&fo_lock);
	while (nb > 0)
		free(bufs[--nb]);
	return r == 0 ? 0 : -1;
}

/* The attempts still running when exec-failover ends: killed. */
static void ex_finish(void)
{
	pthread_mutex_lock(&fo_lock);
	for (long k = 1; k <= EX_MAX_ATTEMPTS; k++)
		if (ex_pid[k] > 0)
			kill(ex_pid[k], SIGKILL);
	pthread_mutex_unlock(&fo_lock);
}

static int exec_failover(int argc, char **argv)
{
	if (argc < 5)
		return usage();
	pid_t victim = (pid_t)atoi(argv[2]);
	double timeout = atof(argv[3]);
	pthread_t tid;

	ex_cmd = argv + 4;
	ex_ncmd = argc - 4;
	ex_av = calloc((size_t)ex_ncmd + 1, sizeof(*ex_av));
	if (ex_av == NULL || posix_spawn_file_actions_init(&ex_fa) != 0)
		return 1;
	posix_spawn_file_actions_addopen(&ex_fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&ex_fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	if (pthread_create(&tid, NULL, ex_reaper, NULL) != 0)
		return 1;
	fo_start = ex_start;
	fo_finish = ex_finish;
	fo_t0 = now_ns();
	if (kill(victim, SIGKILL) != 0) {
		perror("loadgen: kill");
		return 1;
	}
	return attempt_loop(timeout);
}

/* fs-once FILE / etcd-once HOST:PORT KEY: one attempt of exec-failover. */
static int once(int argc, char **argv, int etcd)
{
	static struct worker w;
	if (argc != (etcd ? 4 : 3))
		return usage();
	if (!etcd)
		return fs_write(argv[2], "after-kill\n", 11) == 0 ? 0 : 1;
	if (parse_hostport(argv[2]) < 0)
		return usage();
	w.conn = -1;
	etcd_put_req(&w, argv[3], "after-kill");
	return etcd_call(&w, 10, 0) == 0 ? 0 : 1;
}

/* fs-wait / etcd-wait (cold start): the clock started at T0_US, the
 * CLOCK_REALTIME microsecond at which the caller started the server. Reads
 * are attempted as in failover(): one every 10 ms, each in its own thread,
 * so that one caught by the restart cannot hold the result back. */
static int wait_for_read(int argc, char **argv, int etcd)
{
	if (argc != 6)
		return usage();
	fo_t0 = (uint64_t)strtoull(argv[2], NULL, 10) * 1000u;
	double timeout = atof(argv[3]);
	fo_etcd = etcd;
	fo_read = 1;
	fo_clock = CLOCK_REALTIME;
	fo_timeout_s = (int)timeout > 0 ? (int)timeout : 1;
	if (fo_t0 == 0)
		return usage();
	if (etcd) {
		if (parse_hostport(argv[4]) < 0)
			return usage();
		fo_key = argv[5];
	} else {
		fo_target = argv[4];
		fo_len = (size_t)strtoul(argv[5], NULL, 10);
	}
	return attempt_loop(timeout);
}

/* Starts an attempt every 10 ms until one succeeds (printing the time from
 * fo_t0 to the first success) or TIMEOUT seconds from fo_t0 pass. */
static pthread_attr_t fo_attr;

/* Starts attempt K in a thread of its own (the default of attempt_loop). */
static int fo_thread_start(long k)
{
	pthread_t tid;
	if (k > 2000)
		return -1;
	return pthread_create(&tid, &fo_attr, fo_attempt, (void *)(intptr_t)k) == 0 ? 0 : -1;
}

static int attempt_loop(double timeout)
{
	long attempts = 0;
	pthread_attr_init(&fo_attr);
	pthread_attr_setdetachstate(&fo_attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&fo_attr, 256 * 1024);
	if (fo_start == NULL)
		fo_start = fo_thread_start;
	uint64_t end = fo_t0 + (uint64_t)(timeout * 1e9);
	for (;;) {
		pthread_mutex_lock(&fo_lock);
		uint64_t ok = fo_first_ok;
		long k = fo_ok_attempt;
		pthread_mutex_unlock(&fo_lock);
		if (ok != 0 || clock_ns(fo_clock) >= end) {
			/* Threads still blocked in an attempt die with us;
			 * processes are killed by fo_finish. */
			if (fo_finish != NULL)
				fo_finish();
			if (ok != 0)
				printf("ms=%.1f attempts=%ld first_ok_attempt=%ld\n",
				       (double)(ok - fo_t0) / 1e6, attempts, k);
			else
				printf("ms=timeout attempts=%ld\n", attempts);
			fflush(stdout);
			_exit(ok != 0 ? 0 : 1);
		}
		if (fo_start(attempts + 1) == 0)
			attempts++;
		usleep(10000);
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "fs-failover") == 0)
		return failover(argc, argv, 0);
	if (strcmp(argv[1], "etcd-failover") == 0)
		return failover(argc, argv, 1);
	if (strcmp(argv[1], "exec-failover") == 0)
		return exec_failover(argc, argv);
	if (strcmp(argv[1], "fs-once") == 0)
		return once(argc, argv, 0);
	if (strcmp(argv[1], "etcd-once") == 0)
		return once(argc, argv, 1);
	if (strcmp(argv[1], "fs-wait") == 0)
		return wait_for_read(argc, argv, 0);
	if (strcmp(argv[1], "etcd-wait") == 0)
		return wait_for_read(argc, argv, 1);
	if (strcmp(argv[1], "fs-fill") == 0 || strcmp(argv[1], "etcd-fill") == 0)
		return fill(argc, argv);
	if (strcmp(argv[1], "fs-put") == 0)
		g_mode = FS_PUT;
	else if (strcmp(argv[1], "fs-get") == 0)
		g_mode = FS_GET;
	else if (strcmp(argv[1], "cat") == 0)
		g_mode = CAT;
	else if (strcmp(argv[1], "etcd-put") == 0)
		g_mode = ETCD_PUT;
	else if (strcmp(argv[1], "etcd-get") == 0)
		g_mode = ETCD_GET;
	else if (strcmp(argv[1], "etcd-sget") == 0)
		g_mode = ETCD_SGET;
	else if (strcmp(argv[1], "fs-putmany") == 0)
		g_mode = FS_MANY;
	else if (strcmp(argv[1], "etcd-putmany") == 0)
		g_mode = ETCD_MANY;
	else if (strcmp(argv[1], "fs-create") == 0)
		g_mode = FS_CREATE;
	else if (strcmp(argv[1], "etcd-create") == 0)
		g_mode = ETCD_CREATE;
	else if (strcmp(argv[1], "fs-mixed") == 0)
		g_mode = FS_MIXED;
	else if (strcmp(argv[1], "etcd-mixed") == 0)
		g_mode = ETCD_MIXED;
	else
		return usage();
	int etcd = g_mode == ETCD_PUT || g_mode == ETCD_GET || g_mode == ETCD_SGET ||
		   g_mode == ETCD_MANY || g_mode == ETCD_CREATE || g_mode == ETCD_MIXED;
	int many = g_mode == FS_MANY || g_mode == ETCD_MANY;
	int create = g_mode == FS_CREATE || g_mode == ETCD_CREATE;
	int mixed = g_mode == FS_MIXED || g_mode == ETCD_MIXED;
	if (argc != (etcd ? 7 : 6) + (many ? 2 : 0) + (create ? 1 : 0) + (mixed ? 3 : 0))
		return usage();
	if (many) {
		g_ndirs = atol(argv[argc - 2]);
		g_nfiles = atol(argv[argc - 1]);
		if (g_ndirs < 1 || g_ndirs > 100 || g_nfiles < 1 || g_nfiles > 99999)
			return usage();
	}
	if (create) {
		if (strcmp(argv[argc - 1], "shared") != 0 && strcmp(argv[argc - 1], "spread") != 0)
			return usage();
		g_shared = strcmp(argv[argc - 1], "shared") == 0;
	}
	if (mixed) {
		g_ndirs = atol(argv[argc - 3]);
		g_nfiles = atol(argv[argc - 2]);
		g_write_pct = atoi(argv[argc - 1]);
		if (g_ndirs < 1 || g_ndirs > 1000 || g_nfiles < 1 || g_ndirs * g_nfiles > 1000000 ||
		    g_write_pct < 0 || g_write_pct > 100)
			return usage();
	}
	g_threads = atoi(argv[2]);
	g_seconds = atof(argv[3]);
	g_maxops = atol(argv[4]);
	if (g_threads < 1 || g_seconds <= 0 || g_maxops < g_threads)
		return usage();
	if (etcd) {
		if (parse_hostport(argv[5]) < 0)
			return usage();
		g_key = argv[6];
	} else {
		g_path = argv[5];
	}

	return run_workers(g_maxops / g_threads, run);
}

/* fs-fill THREADS ROOT NDIRS NFILES / etcd-fill THREADS HOST:PORT PREFIX NDIRS NFILES */
static int fill(int argc, char **argv)
{
	int etcd = strcmp(argv[1], "etcd-fill") == 0;
	if (argc != (etcd ? 7 : 6))
		return usage();
	g_mode = etcd ? ETCD_FILL : FS_FILL;
	g_threads = atoi(argv[2]);
	if (etcd) {
		if (parse_hostport(argv[3]) < 0)
			return usage();
		g_key = argv[4];
	} else {
		g_path = argv[3];
	}
	g_ndirs = atol(argv[argc - 2]);
	g_nfiles = atol(argv[argc - 1]);
	if (g_threads < 1 || g_ndirs < 1 || g_ndirs > 1000 || g_nfiles < 1 ||
	    g_ndirs * g_nfiles > 1000000)
		return usage();
	pthread_barrier_init(&g_dirs_done, NULL, (unsigned)g_threads);
	return run_workers(g_ndirs * g_nfiles, fill_run);
}

/* Starts g_threads workers running FN (each may record up to CAP
 * latencies), releases them together, and prints the one-line result. */
static int run_workers(long cap, void *(*fn)(void *))
{
	struct worker *ws = calloc((size_t)g_threads, sizeof(*ws));
	if (ws == NULL)
		return 1;
	cpu_parse();
	pthread_barrier_init(&g_ready, NULL, (unsigned)g_threads + 1);
	pthread_barrier_init(&g_start, NULL, (unsigned)g_threads + 1);
	for (int i = 0; i < g_threads; i++) {
		ws[i].id = i;
		ws[i].cap = cap;
		ws[i].lat_us = malloc(sizeof(uint32_t) * (size_t)(cap > 0 ? cap : 1));
		if (ws[i].lat_us == NULL)
			return 1;
		pthread_create(&ws[i].tid, NULL, fn, &ws[i]);
	}
	pthread_barrier_wait(&g_ready);
	/* Every thread has done its set-up. Set before the workers are
	 * released (the barrier orders it). */
	g_t0 = now_ns();
	g_deadline = g_t0 + (uint64_t)(g_seconds * 1e9);
	pthread_barrier_wait(&g_start);
	uint64_t cpu0 = cpu_us();
	for (int i = 0; i < g_ncpu; i++)
		g_cpu[i].us0 = proc_cpu_us(g_cpu[i].pid);
	long total = 0, errors = 0;
	uint64_t last = g_t0;
	for (int i = 0; i < g_threads; i++) {
		pthread_join(ws[i].tid, NULL);
		total += ws[i].n;
		errors += ws[i].errors;
		if (ws[i].end > last)
			last = ws[i].end;
	}
	uint64_t cpu = cpu_us() - cpu0;
	for (int i = 0; i < g_ncpu; i++)
		g_cpu[i].us0 = proc_cpu_us(g_cpu[i].pid) - g_cpu[i].us0;
	uint32_t *all = malloc(sizeof(uint32_t) * (size_t)(total > 0 ? total : 1));
	long k = 0;
	for (int i = 0; i < g_threads; i++) {
		memcpy(all + k, ws[i].lat_us, sizeof(uint32_t) * (size_t)ws[i].n);
		k += ws[i].n;
	}
	/* mixed: each kind on its own ([0] reads, [1] writes), then all */
	uint32_t *kinds[2] = { NULL, NULL };
	long nk[2] = { 0, 0 };
	if (g_mode == FS_MIXED || g_mode == ETCD_MIXED) {
		kinds[0] = malloc(sizeof(uint32_t) * (size_t)(total > 0 ? total : 1));
		kinds[1] = malloc(sizeof(uint32_t) * (size_t)(total > 0 ? total : 1));
		if (kinds[0] == NULL || kinds[1] == NULL)
			return 1;
		for (long i = 0; i < total; i++) {
			int wr = (all[i] & LAT_WRITE) != 0;
			all[i] &= ~LAT_WRITE;
			kinds[wr][nk[wr]++] = all[i];
		}
		qsort(kinds[0], (size_t)nk[0], sizeof(uint32_t), cmp_u32);
		qsort(kinds[1], (size_t)nk[1], sizeof(uint32_t), cmp_u32);
	}
	qsort(all, (size_t)total, sizeof(uint32_t), cmp_u32);
	double secs = (double)(last - g_t0) / 1e9;
	uint32_t p50 = total ? all[(total - 1) * 50 / 100] : 0;
	uint32_t p99 = total ? all[(total - 1) * 99 / 100] : 0;
	printf("ops=%ld secs=%.3f ops_s=%.1f p50_us=%u p99_us=%u errors=%ld cpu_us=%llu", total,
	       secs, secs > 0 ? (double)total / secs : 0.0, p50, p99, errors,
	       (unsigned long long)cpu);
	for (int i = 0; i < g_ncpu; i++)
		printf(" cpu_us_%s=%llu", g_cpu[i].role, (unsigned long long)g_cpu[i].us0);
	if (g_mode == FS_FILL) {
		long dirs = 0;
		for (int i = 0; i < g_threads; i++)
			dirs += ws[i].dirs;
		printf(" dirs=%ld", dirs);
	}
	for (int wr = 0; wr < 2 && kinds[0] != NULL; wr++)
		printf(" %s_ops=%ld %s_p50_us=%u %s_p99_us=%u", wr ? "write" : "read", nk[wr],
		       wr ? "write" : "read", nk[wr] ? kinds[wr][(nk[wr] - 1) * 50 / 100] : 0,
		       wr ? "write" : "read", nk[wr] ? kinds[wr][(nk[wr] - 1) * 99 / 100] : 0);
	printf("\n");
	return total > 0 ? 0 : 1;
}
