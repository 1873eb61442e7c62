/* netprobe: test-only attacker for the cluster port, used by
 * tests/integration/test_security.sh. Knows only the public wire layout
 * (transport.c, channel.h), never a key.
 *
 *   netprobe proxy LPORT TPORT DIR [ACTION...]
 *     Listens on 127.0.0.1:LPORT and relays the Nth connection to
 *     127.0.0.1:TPORT with ACTION N (then "pass"), recording what the client
 *     sent in DIR/c2s.N (ciphertext and handshake only). On an authenticated
 *     stream (HELLO 73 bytes, AUTH 32, then frames of u32 length + sealed
 *     bytes) an action tampers with the client's frame K:
 *       pass        relay unchanged
 *       flip:K      flip one bit in the middle of frame K
 *       inject:K    insert, before frame K, a well-formed length header
 *                   followed by random bytes (a frame with a bad tag)
 *       truncate:K  send half of frame K, then close both sides
 *     One line per connection on stdout when it ends:
 *       "conn N ACTION applied=yes|no c2s=BYTES s2c=BYTES"
 *   netprobe send PORT MS [FLIP_OFFSET...]
 *     Connects to 127.0.0.1:PORT, sends stdin (XOR 0x01 at each offset
 *     given), and reads until the server closes or MS ms pass. What the
 *     server sent goes to stdout; stderr gets
 *       "sent=N received=M end=eof|reset|timeout"
 *   netprobe flood PORT COUNT SECONDS
 *     Slowloris: opens COUNT connections that each send a third of a HELLO
 *     and then nothing, and holds them for SECONDS. A connection the server
 *     closes after more than a second (its handshake deadline) is opened
 *     again, so the pressure lasts; one closed sooner (refused or evicted)
 *     is not. Prints "ready" once all COUNT are connected, and at the end
 *       "opened=N early=E late=L open=O late_min_ms=A late_max_ms=B"
 *     (early: closed within a second; late: closed after; open: still open
 *     at the end; A/B: shortest and longest life of the late ones). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HELLO_LEN 73u
#define AUTH_LEN 32u
#define FORGED_CT_LEN 64u /* bytes after the length header: 48 + a 16-byte tag */
#define MAX_FLOOD 1024
#define EARLY_MS 1000

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "netprobe: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sa;
}

static int dial(int port)
{
	struct sockaddr_in sa = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* ---- proxy ---- */

enum action { A_PASS, A_FLIP, A_INJECT, A_TRUNCATE };
enum phase { PH_START, PH_RAW, PH_HANDSHAKE, PH_FRAMES };

struct relay {
	int client, server, record;
	enum action action;
	unsigned target_frame; /* 1-based */
	bool applied;
	enum phase phase;
	size_t hs_left; /* handshake bytes still to pass */
	unsigned frame;
	uint8_t *pend; /* client bytes not yet forwarded */
	size_t plen, pcap;
	size_t c2s, s2c;
};

static bool parse_action(const char *s, enum action *ret, unsigned *ret_frame)
{
	static const struct { const char *name; enum action a; } names[] = {
		{ "flip:", A_FLIP }, { "inject:", A_INJECT }, { "truncate:", A_TRUNCATE },
	};
	*ret_frame = 0;
	if (strcmp(s, "pass") == 0) {
		*ret = A_PASS;
		return true;
	}
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		size_t l = strlen(names[i].name);
		if (strncmp(s, names[i].name, l) == 0 && atoi(s + l) > 0) {
			*ret = names[i].a;
			*ret_frame = (unsigned)atoi(s + l);
			return true;
		}
	}
	return false;
}

static void pend_consume(struct relay *r, size_t n)
{
	memmove(r->pend, r->pend + n, r->plen - n);
	r->plen -= n;
}

static bool emit(struct relay *r, const uint8_t *p, size_t n)
{
	return write_all(r->server, p, n);
}

/* A length header announcing FORGED_CT_LEN bytes, then random bytes: it
 * parses as a frame, and its tag cannot verify. */
static bool emit_forged(struct relay *r)
{
	uint8_t f[4 + FORGED_CT_LEN] = { FORGED_CT_LEN, 0, 0, 0 };
	if (getrandom(f + 4, FORGED_CT_LEN, 0) != FORGED_CT_LEN)
		return false;
	return emit(r, f, sizeof f);
}

/* Forwards the complete frame at the front of pend, tampered with if it
 * is the target. Returns 1 to go on, 0 to close the relay, -1 on error. */
static int pass_frame(struct relay *r, size_t flen)
{
	uint8_t *p = r->pend;
	size_t whole = 4 + flen;
	if (++r->frame != r->target_frame || r->action == A_PASS)
		return emit(r, p, whole) ? 1 : -1;
	r->applied = true;
	switch (r->action) {
	case A_FLIP:
		p[4 + flen / 2] ^= 0x01;
		return emit(r, p, whole) ? 1 : -1;
	case A_INJECT:
		return emit_forged(r) && emit(r, p, whole) ? 1 : -1;
	case A_TRUNCATE:
		return emit(r, p, 4 + flen / 2) ? 0 : -1;
	default:
		return -1;
	}
}

/* Moves what it can from pend to the server. */
static int pump(struct relay *r)
{
	for (;;) {
		if (r->phase == PH_START) {
			if (r->plen < 4)
				return 1;
			bool ours = memcmp(r->pend, "VFSC", 4) == 0;
			r->phase = ours ? PH_HANDSHAKE : PH_RAW;
			r->hs_left = HELLO_LEN + AUTH_LEN;
		} else if (r->phase == PH_RAW || r->phase == PH_HANDSHAKE) {
			size_t n = r->plen;
			if (r->phase == PH_HANDSHAKE && n > r->hs_left)
				n = r->hs_left;
			if (n == 0)
				return 1;
			if (!emit(r, r->pend, n))
				return -1;
			pend_consume(r, n);
			if (r->phase == PH_HANDSHAKE && (r->hs_left -= n) == 0)
				r->phase = PH_FRAMES;
		} else {
			if (r->plen < 4)
				return 1;
			size_t flen = (size_t)r->pend[0] | (size_t)r->pend[1] << 8 |
				      (size_t)r->pend[2] << 16 | (size_t)r->pend[3] << 24;
			if (r->plen < 4 + flen)
				return 1;
			int rv = pass_frame(r, flen);
			if (rv <= 0)
				return rv;
			pend_consume(r, 4 + flen);
		}
	}
}

static int on_client_data(struct relay *r, const uint8_t *p, size_t n)
{
	if (r->record >= 0 && !write_all(r->record, p, n))
		return -1;
	r->c2s += n;
	if (r->plen + n > r->pcap) {
		size_t cap = r->pcap ? r->pcap : 65536;
		while (cap < r->plen + n)
			cap *= 2;
		uint8_t *np = realloc(r->pend, cap);
		if (np == NULL)
			return -1;
		r->pend = np;
		r->pcap = cap;
	}
	memcpy(r->pend + r->plen, p, n);
	r->plen += n;
	return pump(r);
}

/* Relays until either side closes or the action ends the connection. */
static void relay_run(struct relay *r)
{
	static uint8_t buf[65536];
	for (;;) {
		struct pollfd pf[2] = { { r->client, POLLIN, 0 }, { r->server, POLLIN, 0 } };
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		if (pf[0].revents) {
			ssize_t n = read(r->client, buf, sizeof buf);
			if (n <= 0 || on_client_data(r, buf, (size_t)n) <= 0)
				return;
		}
		if (pf[1].revents) {
			ssize_t n = read(r->server, buf, sizeof buf);
			if (n <= 0 || !write_all(r->client, buf, (size_t)n))
				return;
			r->s2c += (size_t)n;
		}
	}
}

static const char *action_text(const char *arg)
{
	return arg != NULL ? arg : "pass";
}

static void proxy_child(int client, int tport, const char *dir, unsigned idx, const char *arg)
{
	struct relay r = { .client = client, .record = -1 };
	char path[4096];
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (!parse_action(action_text(arg), &r.action, &r.target_frame))
		_exit(2);
	snprintf(path, sizeof path, "%s/c2s.%u", dir, idx);
	r.record = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	r.server = dial(tport);
	if (r.server >= 0 && r.record >= 0)
		relay_run(&r);
	printf("conn %u %s applied=%s c2s=%zu s2c=%zu\n", idx, action_text(arg),
	       r.applied ? "yes" : "no", r.c2s, r.s2c);
	fflush(stdout);
	_exit(0);
}

static int cmd_proxy(int lport, int tport, const char *dir, int nactions, char **actions)
{
	struct sockaddr_in sa = loopback(lport);
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 64) != 0)
		die("listen");
	for (int i = 0; i < nactions; i++) {
		enum action a;
		unsigned k;
		if (!parse_action(actions[i], &a, &k)) {
			fprintf(stderr, "netprobe: bad action '%s'\n", actions[i]);
			return 2;
		}
	}
	signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (unsigned idx = 1;; idx++) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED) {
				idx--;
				continue;
			}
			die("accept");
		}
		const char *arg = (int)idx <= nactions ? actions[idx - 1] : NULL;
		pid_t pid = fork();
		if (pid == 0) {
			close(lfd);
			proxy_child(c, tport, dir, idx, arg);
		}
		close(c);
	}
}

/* ---- send ---- */

static uint8_t *slurp_stdin(size_t *ret_len)
{
	size_t len = 0, cap = 65536;
	uint8_t *p = malloc(cap);
	for (;;) {
		if (p == NULL)
			die("out of memory");
		if (len == cap)
			p = realloc(p, cap *= 2);
		if (p == NULL)
			die("out of memory");
		ssize_t n = read(STDIN_FILENO, p + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read stdin");
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret_len = len;
	return p;
}

static int cmd_send(int port, int ms, int nflips, char **flips)
{
	size_t len, got = 0;
	uint8_t *data = slurp_stdin(&len);
	for (int i = 0; i < nflips; i++) {
		size_t off = (size_t)strtoull(flips[i], NULL, 10);
		if (off < len)
			data[off] ^= 0x01;
	}
	int fd = dial(port);
	if (fd < 0)
		die("connect");
	/* The server may close mid-way (that is the point): not an error. */
	bool sent_all = write_all(fd, data, len);
	const char *end = "timeout";
	int64_t deadline = now_ms() + ms;
	uint8_t buf[65536];
	for (;;) {
		int left = (int)(deadline - now_ms());
		struct pollfd pf = { fd, POLLIN, 0 };
		if (left <= 0 || poll(&pf, 1, left) == 0)
			break;
		ssize_t n = read(fd, buf, sizeof buf);
		if (n == 0) {
			end = "eof";
			break;
		}
		if (n < 0) {
			end = errno == ECONNRESET ? "reset" : strerror(errno);
			break;
		}
		fwrite(buf, 1, (size_t)n, stdout);
		got += (size_t)n;
	}
	fflush(stdout);
	fprintf(stderr, "sent=%zu%s received=%zu end=%s\n", len, sent_all ? "" : "(partial)", got,
		end);
	close(fd);
	free(data);
	return 0;
}

/* ---- flood ---- */

struct flood_conn {
	int fd;
	int64_t opened;
};

struct flood_stats {
	int opened, early, late, refused;
	int64_t late_min, late_max;
};

/* A third of a HELLO: enough to leave the magic check, never enough to
 * finish the handshake. */
static int flood_open(struct flood_conn *c, int port, struct flood_stats *st)
{
	static const uint8_t partial[15] = { 'V', 'F', 'S', 'C', 1, 0x42, 0x42, 0x42,
					     0x42, 0x42, 0x42, 0x42, 0x42, 0x13, 0x37 };
	c->fd = dial(port);
	c->opened = now_ms();
	if (c->fd < 0 || !write_all(c->fd, partial, sizeof partial)) {
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		st->refused++;
		return -1;
	}
	st->opened++;
	return 0;
}

static void flood_closed(struct flood_conn *c, int port, struct flood_stats *st, bool reopen)
{
	int64_t life = now_ms() - c->opened;
	close(c->fd);
	c->fd = -1;
	if (life < EARLY_MS) {
		st->early++;
		return;
	}
	st->late++;
	if (st->late_min < 0 || life < st->late_min)
		st->late_min = life;
	if (life > st->late_max)
		st->late_max = life;
	if (reopen)
		flood_open(c, port, st);
}

static int cmd_flood(int port, int count, int seconds)
{
	static struct flood_conn conns[MAX_FLOOD];
	static struct pollfd pf[MAX_FLOOD];
	struct flood_stats st = { .late_min = -1 };
	if (count < 1 || count > MAX_FLOOD)
		return 2;
	for (int i = 0; i < count; i++)
		flood_open(&conns[i], port, &st);
	printf("ready\n");
	fflush(stdout);
	int64_t end = now_ms() + (int64_t)seconds * 1000;
	for (int64_t left; (left = end - now_ms()) > 0;) {
		for (int i = 0; i < count; i++)
			pf[i] = (struct pollfd){ conns[i].fd, POLLIN, 0 };
		if (poll(pf, (nfds_t)count, (int)left) <= 0)
			continue;
		for (int i = 0; i < count; i++) {
			char b[64];
			/* The server never answers a partial HELLO: any event
			 * is the close. */
			if (conns[i].fd >= 0 && pf[i].revents && read(conns[i].fd, b, sizeof b) <= 0)
				flood_closed(&conns[i], port, &st, true);
		}
	}
	int still = 0;
	for (int i = 0; i < count; i++)
		if (conns[i].fd >= 0) {
			still++;
			close(conns[i].fd);
		}
	printf("opened=%d early=%d late=%d open=%d refused=%d late_min_ms=%lld late_max_ms=%lld\n",
	       st.opened, st.early, st.late, still, st.refused, (long long)st.late_min,
	       (long long)st.late_max);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 5 && strcmp(argv[1], "proxy") == 0)
		return cmd_proxy(atoi(argv[2]), atoi(argv[3]), argv[4], argc - 5, argv + 5);
	if (argc >= 4 && strcmp(argv[1], "send") == 0)
		return cmd_send(atoi(argv[2]), atoi(argv[3]), argc - 4, argv + 4);
	if (argc == 5 && strcmp(argv[1], "flood") == 0)
		return cmd_flood(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: netprobe proxy LPORT TPORT DIR [ACTION...]\n"
			"       netprobe send PORT MS [FLIP_OFFSET...] < bytes\n"
			"       netprobe flood PORT COUNT SECONDS\n");
	return 2;
}
