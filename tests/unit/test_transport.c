/* Unit tests for the transport (src/raft/transport*.c) through its API:
 * real transports on one libuv loop talking real TCP over 127.0.0.1, plus
 * raw sockets playing hostile clients. Every wait is a deadline on the
 * loop, never a sleep. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/barrier.h"
#include "crypto/channel.h"
#include "crypto/secmem.h"
#include "raft/msgcodec.h"
#include "raft/raftaddr.h"
#include "raft/transport.h"

#define MAX_RECV 64

static uv_loop_t loop;
#define MAX_TERMS 3u
/* Cluster keys of terms 1..MAX_TERMS (secmem, MAX_TERMS x CHANNEL_KEY_LEN
 * bytes): the cluster's, and another cluster's. */
static uint8_t *keys_a;
static uint8_t *keys_b;
static struct channel_identity raw_ident; /* the raw clients' identity */

/* A keyring as the transport sees it through its cluster_key callback:
 * terms 1..n of one cluster's keys (n == 0: sealed). */
struct ring {
	const uint8_t *keys;
	uint32_t n;
};

/* Both clusters before any rotation: term 1 only. */
static struct ring ring_a;
static struct ring ring_b;

static struct ring ring_of(const uint8_t *keys, uint32_t n)
{
	return (struct ring){ .keys = keys, .n = n };
}

/* A channel_key_fn over a struct ring. */
static int ring_key(void *arg, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN])
{
	const struct ring *r = arg;
	if (r->n == 0 || *term > r->n)
		return -ENOKEY;
	if (*term == 0)
		*term = r->n;
	memcpy(out, r->keys + (*term - 1) * CHANNEL_KEY_LEN, CHANNEL_KEY_LEN);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Loop helpers */

static void tick_cb(uv_timer_t *h) { (void)h; }

/* Runs the loop until PRED(arg) or MS elapse; returns PRED's last value. */
static bool run_until(bool (*pred)(void *), void *arg, unsigned ms)
{
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 5, 5);
	uv_update_time(&loop);
	uint64_t deadline = uv_now(&loop) + ms;
	bool ok;
	while (!(ok = pred(arg)) && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return ok;
}

static bool never(void *arg)
{
	(void)arg;
	return false;
}

/* Waits until *COUNTER >= WANT. */
static bool wait_count(int *counter, int want, unsigned ms)
{
	uv_timer_t tick;
	uv_timer_init(&loop, &tick);
	uv_timer_start(&tick, tick_cb, 5, 5);
	uv_update_time(&loop);
	uint64_t deadline = uv_now(&loop) + ms;
	while (*counter < want && uv_now(&loop) < deadline)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	return *counter >= want;
}

static void pump(unsigned ms)
{
	run_until(never, NULL, ms);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t len = sizeof sa;
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

/* ------------------------------------------------------------------------ */
/* Membership */

/* What every node's identify callback consults: the identities libraft's
 * configuration would hold, with their ids and addresses. Shared by all the
 * nodes of a test (they are one cluster); emptied when the test ends. */
struct member {
	uint8_t pk[CHANNEL_ID_LEN];
	uint64_t id;
	char address[RAFTADDR_MAX + 1];
	bool removed; /* identify answers -ENOENT, as after a removal */
};

#define MAX_MEMBERS 32

static struct member members[MAX_MEMBERS];
static int n_members;

/* Adds (or, for a known identity, replaces) a member. */
static void member_add(const uint8_t pk[CHANNEL_ID_LEN], uint64_t id, const char *address)
{
	struct member *m = NULL;
	for (int i = 0; i < n_members && m == NULL; i++)
		if (memcmp(members[i].pk, pk, CHANNEL_ID_LEN) == 0)
			m = &members[i];
	if (m == NULL) {
		assert_true(n_members < MAX_MEMBERS);
		m = &members[n_members++];
	}
	memcpy(m->pk, pk, CHANNEL_ID_LEN);
	m->id = id;
	assert_true(strlen(address) < sizeof m->address);
	strcpy(m->address, address);
	m->removed = false;
}

/* From now on identify does not know PK. */
static void member_forget(const uint8_t pk[CHANNEL_ID_LEN])
{
	for (int i = 0; i < n_members; i++)
		if (memcmp(members[i].pk, pk, CHANNEL_ID_LEN) == 0)
			members[i].removed = true;
}

static int identify(void *ctx, const uint8_t key[CHANNEL_ID_LEN], uint64_t *ret_id,
		    const char **ret_address)
{
	(void)ctx;
	for (int i = 0; i < n_members; i++) {
		const struct member *m = &members[i];
		if (!m->removed && memcmp(m->pk, key, CHANNEL_ID_LEN) == 0) {
			*ret_id = m->id;
			*ret_address = m->address;
			return 0;
		}
	}
	return -ENOENT;
}

/* "NAME@127.0.0.1:PORT#hex(PK)" into OUT (RAFTADDR_MAX + 1 bytes). */
static void format_address(char *out, const char *name, int port, const uint8_t *pk)
{
	char hostport[32];
	snprintf(hostport, sizeof hostport, "127.0.0.1:%d", port);
	assert_int_equal(raftaddr_format(out, RAFTADDR_MAX + 1, name, hostport, pk), 0);
}

/* ------------------------------------------------------------------------ */
/* Nodes */

struct node {
	struct transport *t;
	struct raftio_transport *io;
	uint64_t id;
	int port;
	struct channel_identity ident;
	struct ring *ring; /* its keyring: a test may rotate it */
	char address[RAFTADDR_MAX + 1]; /* carries ident.pk */
	bool closed;
	/* received raft messages; server_address copied */
	struct raft_message msgs[MAX_RECV];
	char *from[MAX_RECV];
	int n_msgs;
	/* RPCs held back by the handler */
	struct transport_rpc_req *held[8];
	int n_held;
	int n_rpcs;
	uint64_t last_peer_id; /* what the last RPC arrived with */
	uint8_t last_peer_key[CHANNEL_ID_LEN];
	bool last_stale_key;
	int join_status; /* what the join provider answers */
	bool join_big;	 /* answer with BIG_LEN bytes */
	int n_joins;	 /* join-info requests answered */
	unsigned join_version; /* the version the last one was answered in */
	uint8_t last_version;  /* of the last RPC's payload */
	int join_seen;	       /* n_joins before a request of the test's */
};

/* The largest answer there is: RPC_BIG and join_big answer with it. */
#define BIG_LEN TRANSPORT_MAX_RPC
static uint8_t big_answer[BIG_LEN];

static void on_recv(struct raftio_transport *io, struct raft_message *m, void *arg)
{
	struct node *n = arg;
	assert_ptr_equal(io, n->io);
	assert_non_null(m->server_address);
	if (n->n_msgs == MAX_RECV) {
		msgcodec_release(m);
		return;
	}
	n->from[n->n_msgs] = strdup(m->server_address);
	n->msgs[n->n_msgs++] = *m;
}

enum { RPC_ECHO = 1, RPC_FAIL = 2, RPC_HOLD = 3, RPC_BIG = 4 };

static void on_rpc(void *ctx, struct transport_rpc_req *req)
{
	struct node *n = ctx;
	n->n_rpcs++;
	n->last_peer_id = req->peer_id;
	memcpy(n->last_peer_key, req->peer_key, CHANNEL_ID_LEN);
	n->last_stale_key = req->stale_key;
	n->last_version = req->version;
	switch (req->type) {
	case RPC_ECHO: {
		/* Answer with "<peer id>:" + payload: the caller sees which
		 * member the transport attributed the request to. */
		char out[256];
		int k = snprintf(out, sizeof out, "%llu:", (unsigned long long)req->peer_id);
		assert_true(req->len + (size_t)k <= sizeof out);
		memcpy(out + k, req->payload, req->len);
		transport_rpc_reply(req, 0, out, (size_t)k + req->len);
		break;
	}
	case RPC_FAIL:
		transport_rpc_reply(req, -EPERM, "ignored", 7);
		break;
	case RPC_HOLD:
		assert_true(n->n_held < 8);
		n->held[n->n_held++] = req;
		break;
	case RPC_BIG:
		transport_rpc_reply(req, 0, big_answer, BIG_LEN);
		break;
	default:
		transport_rpc_reply(req, -ENOSYS, NULL, 0);
		break;
	}
}

static int on_join(void *ctx, unsigned version, struct buf *out)
{
	struct node *n = ctx;
	n->n_joins++;
	n->join_version = version;
	if (n->join_status != 0)
		return n->join_status;
	if (n->join_big)
		buf_put_raw(out, big_answer, BIG_LEN);
	else
		buf_put_raw(out, "sealed-keyring", 14);
	return 0;
}

/* The transport's cluster_key callback: the node's keyring. */
static int node_key(void *ctx, uint32_t *term, uint8_t out[CHANNEL_KEY_LEN])
{
	struct node *n = ctx;
	return ring_key(n->ring, term, out);
}

/* A member with keyring RING and identity IDENT (NULL: a fresh one), as a
 * restarted node keeps its own. */
static void node_make_as(struct node *n, uint64_t id, int port, struct ring *ring,
			 unsigned hs_ms, const struct channel_identity *ident)
{
	struct channel_identity copy;
	if (ident != NULL)
		copy = *ident;
	else
		channel_identity_generate(&copy);
	memset(n, 0, sizeof *n);
	n->id = id;
	n->port = port;
	n->ident = copy;
	n->ring = ring;
	char name[32];
	snprintf(name, sizeof name, "node%llu", (unsigned long long)id);
	format_address(n->address, name, port, n->ident.pk);
	member_add(n->ident.pk, id, n->address);
	struct transport_config cfg = {
		.loop = &loop,
		.cluster_key = node_key,
		.identity = &n->ident,
		.identify = identify,
		.rpc_handler = on_rpc,
		.join_provider = on_join,
		.ctx = n,
		/* Odd ids send version 1, even ones 0, as a previous release. */
		.rpc_version = (uint8_t)(id & 1),
		.handshake_timeout_ms = hs_ms,
	};
	assert_int_equal(transport_new(&n->t, &cfg), 0);
	n->io = transport_raftio(n->t);
}

static void node_make(struct node *n, uint64_t id, int port, struct ring *ring, unsigned hs_ms)
{
	node_make_as(n, id, port, ring, hs_ms, NULL);
}

/* Handshake deadline of the nodes most tests start: long enough for a
 * handshake on a loaded machine under ASan (300 ms was not), short enough
 * for the tests that wait for it to expire. */
#define TEST_HANDSHAKE_MS 2000

static void node_start_key(struct node *n, uint64_t id, struct ring *ring)
{
	node_make(n, id, free_port(), ring, TEST_HANDSHAKE_MS);
	assert_int_equal(n->io->start(n->io, id, n->address, on_recv, n), 0);
}

static void node_start(struct node *n, uint64_t id)
{
	node_start_key(n, id, &ring_a);
}

static void on_closed(void *arg)
{
	struct node *n = arg;
	assert_false(n->closed);
	n->closed = true;
}

static bool node_is_closed(void *arg)
{
	return ((struct node *)arg)->closed;
}

static void node_release_msgs(struct node *n)
{
	for (int i = 0; i < n->n_msgs; i++) {
		msgcodec_release(&n->msgs[i]);
		free(n->from[i]);
	}
	n->n_msgs = 0;
}

static void node_close(struct node *n)
{
	n->io->close(n->io, on_closed, n);
	assert_false(n->closed); /* never synchronous */
	assert_true(run_until(node_is_closed, n, 5000));
	node_release_msgs(n);
}

/* Every test ends with no handle left on the loop. */
static void loop_drained(void)
{
	pump(20);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_int_equal(uv_loop_init(&loop), 0);
	n_members = 0;
}

/* ------------------------------------------------------------------------ */
/* Sending raft messages */

struct send_req {
	struct raft_io_send req;
	int status;
	bool done;
};

static int sends_done;

static void on_sent(struct raft_io_send *req, int status)
{
	struct send_req *s = req->data;
	assert_false(s->done);
	s->done = true;
	s->status = status;
	sends_done++;
}

/* Sends M to member ID at ADDRESS, whoever answers there. */
static void send_msg_to(struct node *from, const char *address, uint64_t id,
			struct raft_message *m, struct send_req *s)
{
	memset(s, 0, sizeof *s);
	s->req.data = s;
	m->server_id = id;
	m->server_address = address;
	assert_int_equal(from->io->send(from->io, &s->req, m, on_sent), 0);
	assert_false(s->done); /* never synchronous */
}

static void send_msg(struct node *from, const struct node *to, struct raft_message *m,
		     struct send_req *s)
{
	send_msg_to(from, to->address, to->id, m, s);
}

static struct raft_message msg_of(unsigned short type)
{
	struct raft_message m;
	memset(&m, 0, sizeof m);
	m.type = type;
	return m;
}

static void check_from(const struct node *n, int i, const struct node *sender)
{
	assert_true(n->msgs[i].server_id == sender->id);
	assert_string_equal(n->from[i], sender->address);
}

static void test_raft_messages(void **state)
{
	(void)state;
	struct node a, b;
	node_start(&a, 1);
	node_start(&b, 2);
	sends_done = 0;

	struct send_req s[8];
	struct raft_message m = msg_of(RAFT_IO_REQUEST_VOTE);
	m.request_vote.term = 7;
	m.request_vote.candidate_id = 1;
	m.request_vote.pre_vote = true;
	send_msg(&a, &b, &m, &s[0]);

	m = msg_of(RAFT_IO_REQUEST_VOTE_RESULT);
	m.request_vote_result.term = 7;
	m.request_vote_result.vote_granted = true;
	m.request_vote_result.pre_vote = raft_tribool_true;
	send_msg(&a, &b, &m, &s[1]);

	/* Three entries, one of them bigger than a channel frame, so the
	 * message is fragmented. */
	static uint8_t big[9u * 1024u * 1024u];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7);
	struct raft_entry entries[3] = {
		{.term = 3, .type = RAFT_COMMAND, .buf = {.base = "abc", .len = 3}},
		{.term = 3, .type = RAFT_BARRIER, .buf = {.base = NULL, .len = 0}},
		{.term = 4, .type = RAFT_COMMAND, .buf = {.base = big, .len = sizeof big}},
	};
	m = msg_of(RAFT_IO_APPEND_ENTRIES);
	m.append_entries.term = 4;
	m.append_entries.prev_log_index = 10;
	m.append_entries.leader_commit = 9;
	m.append_entries.entries = entries;
	m.append_entries.n_entries = 3;
	send_msg(&a, &b, &m, &s[2]);

	m = msg_of(RAFT_IO_APPEND_ENTRIES_RESULT);
	m.append_entries_result.term = 4;
	m.append_entries_result.rejected = 11;
	send_msg(&a, &b, &m, &s[3]);

	m = msg_of(RAFT_IO_INSTALL_SNAPSHOT);
	m.install_snapshot.term = 5;
	m.install_snapshot.last_index = 100;
	raft_configuration_init(&m.install_snapshot.conf);
	assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 1, a.address, RAFT_VOTER), 0);
	assert_int_equal(raft_configuration_add(&m.install_snapshot.conf, 2, b.address, RAFT_SPARE), 0);
	m.install_snapshot.data.base = "snapshot";
	m.install_snapshot.data.len = 8;
	send_msg(&a, &b, &m, &s[4]);
	raft_configuration_close(&m.install_snapshot.conf);

	m = msg_of(RAFT_IO_TIMEOUT_NOW);
	m.timeout_now.term = 5;
	send_msg(&a, &b, &m, &s[5]);

	/* And the other direction. */
	m = msg_of(RAFT_IO_APPEND_ENTRIES);
	m.append_entries.term = 9;
	send_msg(&b, &a, &m, &s[6]);

	assert_true(wait_count(&sends_done, 7, 10000));
	for (int i = 0; i < 7; i++)
		assert_int_equal(s[i].status, 0);
	assert_true(wait_count(&b.n_msgs, 6, 5000));
	assert_true(wait_count(&a.n_msgs, 1, 5000));

	/* In order, from the right sender, with the right content. */
	const unsigned short types[] = {RAFT_IO_REQUEST_VOTE, RAFT_IO_REQUEST_VOTE_RESULT,
					RAFT_IO_APPEND_ENTRIES, RAFT_IO_APPEND_ENTRIES_RESULT,
					RAFT_IO_INSTALL_SNAPSHOT, RAFT_IO_TIMEOUT_NOW};
	for (int i = 0; i < 6; i++) {
		assert_int_equal(b.msgs[i].type, types[i]);
		check_from(&b, i, &a);
	}
	assert_true(b.msgs[0].request_vote.pre_vote);
	assert_int_equal(b.msgs[0].request_vote.term, 7);
	assert_true(b.msgs[1].request_vote_result.vote_granted);
	const struct raft_append_entries *ae = &b.msgs[2].append_entries;
	assert_int_equal(ae->n_entries, 3);
	assert_int_equal(ae->prev_log_index, 10);
	assert_int_equal(ae->entries[0].buf.len, 3);
	assert_memory_equal(ae->entries[0].buf.base, "abc", 3);
	assert_int_equal(ae->entries[1].type, RAFT_BARRIER);
	assert_int_equal(ae->entries[2].buf.len, sizeof big);
	assert_memory_equal(ae->entries[2].buf.base, big, sizeof big);
	assert_int_equal(b.msgs[3].append_entries_result.rejected, 11);
	const struct raft_install_snapshot *is = &b.msgs[4].install_snapshot;
	assert_int_equal(is->conf.n, 2);
	assert_string_equal(is->conf.servers[1].address, b.address);
	assert_int_equal(is->conf.servers[1].role, RAFT_SPARE);
	assert_int_equal(is->data.len, 8);
	assert_memory_equal(is->data.base, "snapshot", 8);
	assert_int_equal(b.msgs[5].timeout_now.term, 5);
	assert_int_equal(a.msgs[0].type, RAFT_IO_APPEND_ENTRIES);
	assert_null(a.msgs[0].append_entries.entries);
	check_from(&a, 0, &b);

	node_close(&a);
	node_close(&b);
	loop_drained();
}

static void test_three_nodes(void **state)
{
	(void)state;
	struct node n[3];
	for (int i = 0; i < 3; i++)
		node_start(&n[i], (uint64_t)(10 + i));
	sends_done = 0;
	struct send_req s[6];
	int k = 0;
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 3; j++) {
			if (i == j)
				continue;
			struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
			m.timeout_now.term = (raft_term)(i * 3 + j);
			send_msg(&n[i], &n[j], &m, &s[k++]);
		}
	}
	assert_true(wait_count(&sends_done, 6, 5000));
	for (int i = 0; i < 3; i++) {
		assert_true(wait_count(&n[i].n_msgs, 2, 5000));
		for (int x = 0; x < 2; x++) {
			const struct raft_message *m = &n[i].msgs[x];
			int from = (int)m->server_id - 10;
			assert_true(from >= 0 && from < 3 && from != i);
			assert_int_equal(m->timeout_now.term, from * 3 + i);
			check_from(&n[i], x, &n[from]);
		}
	}
	for (int i = 0; i < 3; i++)
		node_close(&n[i]);
	loop_drained();
}

/* ------------------------------------------------------------------------ */
/* RPCs */

struct rpc_result {
	bool done;
	int status;
	char payload[256];
	size_t len;
	int *counter;
};

static void on_rpc_done(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct rpc_result *r = arg;
	assert_false(r->done);
	r->done = true;
	r->status = status;
	r->len = len;
	if (len > 0) {
		assert_true(len < sizeof r->payload);
		memcpy(r->payload, resp, len);
	}
	r->payload[len] = '\0';
	if (r->counter != NULL)
		(*r->counter)++;
}

static bool rpc_done(void *arg)
{
	return ((struct rpc_result *)arg)->done;
}

static void rpc_ok(struct node *from, const char *to, uint16_t type, const char *payload,
		   unsigned timeout_ms, struct rpc_result *r)
{
	memset(r, 0, sizeof *r);
	assert_int_equal(transport_rpc(from->t, to, type, payload, strlen(payload), timeout_ms,
				       on_rpc_done, r),
			 0);
	assert_false(r->done);
}

static void test_rpc(void **state)
{
	(void)state;
	struct node a, b;
	node_start(&a, 1);
	node_start(&b, 2);
	struct rpc_result r;

	rpc_ok(&a, b.address, RPC_ECHO, "hello", 2000, &r);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "1:hello");
	assert_int_equal(b.last_version, 1);

	/* The other way round, addressed as plain host:port. */
	char plain[64];
	snprintf(plain, sizeof plain, "127.0.0.1:%d", a.port);
	rpc_ok(&b, plain, RPC_ECHO, "x", 2000, &r);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "2:x");
	assert_int_equal(a.last_version, 0); /* and a previous release's answer reached b */

	rpc_ok(&a, b.address, RPC_FAIL, "", 2000, &r);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -EPERM);
	assert_int_equal(r.len, 0);

	rpc_ok(&a, b.address, 999, "", 2000, &r);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -ENOSYS);

	/* The handler keeps it: the caller times out; a late reply is
	 * dropped harmlessly. */
	rpc_ok(&a, b.address, RPC_HOLD, "slow", 150, &r);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -ETIMEDOUT);
	assert_int_equal(b.n_held, 1);
	assert_int_equal(b.held[0]->len, 4);
	transport_rpc_reply(b.held[0], 0, "late", 4);
	pump(50);

	/* Arguments the API refuses. */
	static uint8_t huge[TRANSPORT_MAX_RPC + 1];
	assert_int_equal(transport_rpc(a.t, b.address, RPC_ECHO, huge, sizeof huge, 100,
				       on_rpc_done, &r),
			 -EMSGSIZE);
	assert_int_equal(transport_rpc(a.t, "no-port", RPC_ECHO, "", 0, 100, on_rpc_done, &r),
			 -EINVAL);

	/* Held again, then the requesting side goes away: replying later
	 * is safe and the pending call fails with -ESHUTDOWN. */
	rpc_ok(&a, b.address, RPC_HOLD, "held", 5000, &r);
	assert_true(wait_count(&b.n_held, 2, 5000));
	node_close(&a);
	assert_true(r.done);
	assert_int_equal(r.status, -ESHUTDOWN);
	pump(50);
	transport_rpc_reply(b.held[1], 0, "gone", 4);

	/* A reply after the responder closed is safe too. */
	struct node c;
	node_start(&c, 3);
	rpc_ok(&c, b.address, RPC_HOLD, "h", 5000, &r);
	assert_true(wait_count(&b.n_held, 3, 5000));
	struct transport_rpc_req *held = b.held[2];
	node_close(&b);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -ECONNRESET);
	transport_rpc_reply(held, 0, "after", 5);
	node_close(&c);
	loop_drained();
}

/* ------------------------------------------------------------------------ */
/* Hostile peers */

static void test_wrong_key(void **state)
{
	(void)state;
	struct node a, b, evil;
	node_start(&a, 1);
	node_start(&b, 2);
	node_start_key(&evil, 3, &ring_b);
	sends_done = 0;

	struct send_req s[3];
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	send_msg(&evil, &b, &m, &s[0]); /* evil dials b */
	send_msg(&b, &evil, &m, &s[1]); /* b dials evil */
	struct rpc_result r1, r2;
	rpc_ok(&evil, b.address, RPC_ECHO, "x", 3000, &r1);
	rpc_ok(&b, evil.address, RPC_ECHO, "x", 3000, &r2);
	assert_true(wait_count(&sends_done, 2, 5000));
	assert_int_equal(s[0].status, RAFT_NOCONNECTION);
	assert_int_equal(s[1].status, RAFT_NOCONNECTION);
	assert_true(run_until(rpc_done, &r1, 5000));
	assert_true(run_until(rpc_done, &r2, 5000));
	assert_int_equal(r1.status, -ECONNREFUSED);
	assert_int_equal(r2.status, -ECONNREFUSED);

	/* While in backoff, a send fails fast (still asynchronously). */
	send_msg(&evil, &b, &m, &s[2]);
	assert_true(wait_count(&sends_done, 3, 1000));
	assert_int_equal(s[2].status, RAFT_NOCONNECTION);

	/* Nothing arrived anywhere, and the good pair is unaffected. */
	assert_int_equal(b.n_msgs, 0);
	assert_int_equal(evil.n_msgs, 0);
	assert_int_equal(b.n_rpcs, 0);
	assert_int_equal(evil.n_rpcs, 0);
	struct send_req ok;
	send_msg(&a, &b, &m, &ok);
	assert_true(wait_count(&b.n_msgs, 1, 5000));
	check_from(&b, 0, &a);

	node_close(&evil);
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* A raw client connected from SOURCE, an address of 127.0.0.0/8 (all of
 * them are this host's, so a test has as many sources as it needs), or
 * from 127.0.0.1 if NULL. */
static int raw_connect_from(int port, const char *source)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	if (source != NULL) {
		struct sockaddr_in from = {.sin_family = AF_INET};
		assert_int_equal(inet_pton(AF_INET, source, &from.sin_addr), 1);
		assert_int_equal(bind(fd, (struct sockaddr *)&from, sizeof from), 0);
	}
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static int raw_connect(int port)
{
	return raw_connect_from(port, NULL);
}

static void raw_write(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* Writes what the socket takes while running the loop, until all is
 * written (true) or the write fails: the node closed the connection. */
struct raw_writing {
	int fd;
	const uint8_t *p;
	size_t n, done;
	bool failed;
};

static bool raw_write_step(void *arg)
{
	struct raw_writing *w = arg;
	ssize_t k = write(w->fd, w->p + w->done, w->n - w->done);
	if (k > 0)
		w->done += (size_t)k;
	else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
		w->failed = true;
	return w->done == w->n || w->failed;
}

static bool raw_write_all(int fd, const void *p, size_t n)
{
	struct raw_writing w = {fd, p, n, 0, false};
	assert_true(run_until(raw_write_step, &w, 10000));
	return !w.failed;
}

/* True once the transport closed the raw connection (EOF or reset). What
 * arrived before is read and dropped. */
static bool raw_closed(void *arg)
{
	int fd = *(int *)arg;
	static char tmp[64 * 1024];
	for (;;) {
		ssize_t n = read(fd, tmp, sizeof tmp);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
			return true;
		if (n < 0)
			return false;
	}
}

/* Reads exactly N bytes from the raw socket while running the loop. */
struct raw_read {
	int fd;
	uint8_t *p;
	size_t n, got;
};

static bool raw_read_step(void *arg)
{
	struct raw_read *r = arg;
	ssize_t k = read(r->fd, r->p + r->got, r->n - r->got);
	if (k > 0)
		r->got += (size_t)k;
	return r->got == r->n;
}

/* A raw client's handshake with the cluster key and raw_ident, begun:
 * the first SENT bytes of a real HELLO (kept in HELLO) are written. */
static struct channel *raw_handshake_begin(int fd, struct buf *hello, size_t sent)
{
	struct channel *ch;
	buf_init(hello);
	assert_int_equal(channel_new(&ch, &raw_ident, ring_key, &ring_a), 0);
	assert_int_equal(channel_hello(ch, hello), 0);
	raw_write(fd, hello->data, sent);
	return ch;
}

/* ... and completed: the rest of the HELLO, the REPLY checked, AUTH. */
static void raw_handshake_end(int fd, struct channel *ch, struct buf *hello, size_t sent)
{
	struct buf out;
	buf_init(&out);
	raw_write(fd, hello->data + sent, hello->len - sent);
	buf_free(hello);
	uint8_t reply[CHANNEL_REPLY_LEN];
	struct raw_read rr = {fd, reply, sizeof reply, 0};
	assert_true(run_until(raw_read_step, &rr, 5000));
	assert_int_equal(channel_on_reply(ch, reply, sizeof reply, &out), 0);
	raw_write(fd, out.data, out.len);
	buf_free(&out);
}

/* A raw client that completes a real handshake with the cluster key and
 * raw_ident. */
static struct channel *raw_handshake(int fd)
{
	struct buf hello;
	struct channel *ch = raw_handshake_begin(fd, &hello, CHANNEL_HELLO_LEN);
	raw_handshake_end(fd, ch, &hello, CHANNEL_HELLO_LEN);
	return ch;
}

/* Seals PT (kind byte first) into one frame and writes it; false if the
 * node closed the connection first. */
static bool raw_send(int fd, struct channel *ch, const struct buf *pt)
{
	struct buf wire;
	buf_init(&wire);
	assert_int_equal(channel_seal(ch, pt->data, pt->len, &wire), 0);
	bool ok = raw_write_all(fd, wire.data, wire.len);
	buf_free(&wire);
	return ok;
}

/* The address frame, after which the node takes messages. */
static void raw_announce(int fd, struct channel *ch)
{
	struct buf pt;
	buf_init(&pt);
	buf_put_u8(&pt, 0);
	buf_put_raw(&pt, "raw@127.0.0.1:1", 15);
	assert_true(raw_send(fd, ch, &pt));
	buf_free(&pt);
}

/* A raw client past the handshake and the address frame. */
static struct channel *raw_session(int fd)
{
	struct channel *ch = raw_handshake(fd);
	raw_announce(fd, ch);
	return ch;
}

/* Reads one frame from the node and opens it into PT. */
static void raw_recv(int fd, struct channel *ch, struct buf *pt)
{
	uint8_t hdr[4];
	struct raw_read rr = {fd, hdr, sizeof hdr, 0};
	assert_true(run_until(raw_read_step, &rr, 10000));
	uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
		     (uint32_t)hdr[3] << 24;
	uint8_t *ct = malloc(n);
	assert_non_null(ct);
	rr = (struct raw_read){fd, ct, n, 0};
	assert_true(run_until(raw_read_step, &rr, 10000));
	buf_clear(pt);
	assert_int_equal(channel_open(ch, ct, n, pt), 0);
	free(ct);
}

/* An RPC request frame's plaintext. */
static void put_rpc_req(struct buf *pt, uint64_t id, uint16_t type, const void *payload,
			size_t len)
{
	buf_put_u8(pt, 2);
	buf_put_u64(pt, id);
	buf_put_u16(pt, type);
	buf_put_raw(pt, payload, len);
}

/* Reads the answer to RPC ID: its status, and its payload into PAYLOAD
 * (LEN bytes). */
static int raw_answer(int fd, struct channel *ch, uint64_t id, struct buf *payload)
{
	struct buf pt;
	buf_init(&pt);
	raw_recv(fd, ch, &pt);
	struct cursor cur;
	cursor_init(&cur, pt.data, pt.len);
	assert_int_equal(cursor_u8(&cur), 3);
	assert_true(cursor_u64(&cur) == id);
	int status = cursor_i32(&cur);
	assert_int_equal(cur.err, 0);
	buf_clear(payload);
	buf_put_raw(payload, cur.p, cur.left);
	buf_free(&pt);
	return status;
}

/* An RPC_ECHO of PAYLOAD over a raw session, answered with WANT. */
static void raw_echo(int fd, struct channel *ch, const char *payload, const char *want)
{
	static uint64_t id;
	struct buf pt;
	buf_init(&pt);
	put_rpc_req(&pt, ++id, RPC_ECHO, payload, strlen(payload));
	assert_true(raw_send(fd, ch, &pt));
	assert_int_equal(raw_answer(fd, ch, id, &pt), 0);
	assert_int_equal(pt.len, strlen(want));
	assert_memory_equal(pt.data, want, pt.len);
	buf_free(&pt);
}

/* Sends the message PT (kind byte first) as fragments of PIECE body bytes
 * and a final part, as a node sends messages larger than a frame; false if
 * the node closed the connection first. */
static bool raw_send_fragmented(int fd, struct channel *ch, const struct buf *pt, size_t piece)
{
	struct buf part;
	buf_init(&part);
	const uint8_t *body = pt->data + 1;
	size_t left = pt->len - 1;
	bool ok = true;
	while (ok && left > piece) {
		buf_clear(&part);
		buf_put_u8(&part, 4);
		buf_put_raw(&part, body, piece);
		ok = raw_send(fd, ch, &part);
		body += piece;
		left -= piece;
	}
	if (ok) {
		buf_clear(&part);
		buf_put_u8(&part, pt->data[0]);
		buf_put_raw(&part, body, left);
		ok = raw_send(fd, ch, &part);
	}
	buf_free(&part);
	return ok;
}

static void check_pair_works(struct node *a, struct node *b)
{
	struct send_req s;
	int before = b->n_msgs;
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	send_msg(a, b, &m, &s);
	assert_true(wait_count(&b->n_msgs, before + 1, 5000));
	check_from(b, before, a);
}

static void test_garbage_clients(void **state)
{
	(void)state;
	struct node a, b;
	node_start(&a, 1);
	node_start(&b, 2);
	check_pair_works(&a, &b);
	/* The raw clients are member 77, under an address other than the one
	 * they announce: what arrives is attributed through identify. */
	char raw_address[RAFTADDR_MAX + 1];
	format_address(raw_address, "raw", 1, raw_ident.pk);
	member_add(raw_ident.pk, 77, raw_address);

	int fd = raw_connect(b.port); /* not our protocol */
	raw_write(fd, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);

	/* Right magic, then garbage: at least a whole HELLO of it, so that it
	 * is rejected rather than left for the deadline. */
	fd = raw_connect(b.port);
	uint8_t junk[CHANNEL_HELLO_LEN];
	memset(junk, 0xee, sizeof junk);
	raw_write(fd, "VFSC", 4);
	raw_write(fd, junk, sizeof junk);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);

	fd = raw_connect(b.port); /* half a handshake: the deadline ends it */
	raw_write(fd, "VFSC\x03", 5);
	check_pair_works(&a, &b);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);

	fd = raw_connect(b.port); /* silent: the deadline ends it */
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);

	/* Authenticated but misbehaving: an absurd frame length, a forged
	 * frame, a raft message before the address frame. */
	fd = raw_connect(b.port);
	struct channel *ch = raw_handshake(fd);
	raw_write(fd, "\xff\xff\xff\x7f", 4);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
	channel_free(ch);

	fd = raw_connect(b.port);
	ch = raw_handshake(fd);
	uint8_t forged[4 + 40] = {40, 0, 0, 0};
	raw_write(fd, forged, sizeof forged);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
	channel_free(ch);

	fd = raw_connect(b.port);
	ch = raw_handshake(fd);
	struct buf pt, wire;
	buf_init(&pt);
	buf_init(&wire);
	buf_put_u8(&pt, 1);
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	assert_int_equal(msgcodec_encode(&m, &pt), 0);
	assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	raw_write(fd, wire.data, wire.len);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
	channel_free(ch);

	/* Address frame, then a raft message that does not decode. */
	fd = raw_connect(b.port);
	ch = raw_handshake(fd);
	buf_clear(&pt);
	buf_clear(&wire);
	buf_put_u8(&pt, 0);
	buf_put_raw(&pt, "raw@127.0.0.1:1", 15);
	assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	buf_clear(&pt);
	buf_put_u8(&pt, 1);
	buf_put_raw(&pt, "\x01\x06", 2); /* TIMEOUT_NOW without a body */
	assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	raw_write(fd, wire.data, wire.len);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
	channel_free(ch);

	/* A well-behaved raw peer gets its message through, with the id and
	 * address of the member its identity is. */
	fd = raw_connect(b.port);
	ch = raw_handshake(fd);
	buf_clear(&pt);
	buf_clear(&wire);
	buf_put_u8(&pt, 0);
	buf_put_raw(&pt, "raw@127.0.0.1:1", 15);
	assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	buf_clear(&pt);
	buf_put_u8(&pt, 1);
	m.timeout_now.term = 42;
	assert_int_equal(msgcodec_encode(&m, &pt), 0);
	assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	/* Byte by byte: partial reads everywhere. */
	int before = b.n_msgs;
	for (size_t i = 0; i < wire.len; i++) {
		raw_write(fd, wire.data + i, 1);
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	assert_true(wait_count(&b.n_msgs, before + 1, 5000));
	assert_int_equal(b.msgs[before].server_id, 77);
	assert_string_equal(b.from[before], raw_address);
	assert_int_equal(b.msgs[before].timeout_now.term, 42);
	close(fd);
	channel_free(ch);
	buf_free(&pt);
	buf_free(&wire);

	/* Many connections at once that never speak. */
	int fds[80];
	for (int i = 0; i < 80; i++)
		fds[i] = raw_connect(b.port);
	check_pair_works(&a, &b);
	pump(50);
	for (int i = 0; i < 80; i++)
		close(fds[i]);

	check_pair_works(&a, &b);
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* "127.0.0.BASE+I" into OUT (16 bytes). */
static const char *source_n(char *out, int base, int i)
{
	snprintf(out, 16, "127.0.0.%d", base + i);
	return out;
}

/* An idle half-handshake from SOURCE, accepted before the next one. */
static int half_handshake(int port, const char *source)
{
	int fd = raw_connect_from(port, source);
	raw_write(fd, "VFSC\x03", 5);
	pump(2); /* accepted in order: the first ones are the oldest */
	return fd;
}

/* More than MAX_UNAUTH (64) idle half-handshakes, from 10 sources (7 each:
 * under the cap per source), must not keep a real peer out: the oldest of
 * a source holding the most is evicted to make room, which, as they came
 * in turns, is the oldest of all. The deadline is long here, so only
 * eviction can free a slot in time. */
#define FLOOD 70

static void test_unauth_flood(void **state)
{
	(void)state;
	struct node a, b;
	node_make(&b, 2, free_port(), &ring_a, 60000);
	assert_int_equal(b.io->start(b.io, 2, b.address, on_recv, &b), 0);
	int fds[FLOOD];
	char src[16];
	for (int i = 0; i < FLOOD; i++)
		fds[i] = half_handshake(b.port, source_n(src, 10, i % 10));
	pump(50);
	/* Connections past the cap evicted the oldest ones; the newest stay. */
	for (int i = 0; i < FLOOD - 64; i++)
		assert_true(run_until(raw_closed, &fds[i], 1000));
	for (int i = FLOOD - 64; i < FLOOD; i++)
		assert_false(raw_closed(&fds[i]));

	node_start(&a, 1); /* a fresh peer must get in despite the flood */
	check_pair_works(&a, &b);
	assert_true(raw_closed(&fds[FLOOD - 64])); /* it evicted one more */
	for (int i = 0; i < FLOOD; i++)
		close(fds[i]);
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* One address flooding with half-handshakes evicts only its own: past 8
 * (MAX_UNAUTH_PER_SOURCE) its oldest go, and another source's handshake,
 * older than all of them, survives. Even past 64 in all (9 sources of 8),
 * the global cap takes from the sources that hold the most, never a lone
 * handshake, which then completes and is served. */
static void test_unauth_per_source(void **state)
{
	(void)state;
	struct node b;
	node_make(&b, 2, free_port(), &ring_a, 60000);
	assert_int_equal(b.io->start(b.io, 2, b.address, on_recv, &b), 0);
	struct buf hello;
	int lone = raw_connect_from(b.port, "127.0.0.3");
	struct channel *ch = raw_handshake_begin(lone, &hello, 5);
	pump(2);

	int one[FLOOD];
	for (int i = 0; i < FLOOD; i++)
		one[i] = half_handshake(b.port, "127.0.0.2");
	pump(50);
	for (int i = 0; i < FLOOD - 8; i++)
		assert_true(run_until(raw_closed, &one[i], 1000));
	for (int i = FLOOD - 8; i < FLOOD; i++)
		assert_false(raw_closed(&one[i]));
	assert_false(raw_closed(&lone));

	/* 8 more sources of 8: 1 + 8 + 64 handshakes, 9 over the cap. */
	int many[64];
	char src[16];
	for (int i = 0; i < 64; i++)
		many[i] = half_handshake(b.port, source_n(src, 20, i / 8));
	pump(50);
	int evicted = 0;
	for (int i = 0; i < FLOOD; i++)
		evicted += i >= FLOOD - 8 && raw_closed(&one[i]);
	for (int i = 0; i < 64; i++)
		evicted += raw_closed(&many[i]);
	assert_int_equal(evicted, 9);
	assert_false(raw_closed(&lone));

	raw_handshake_end(lone, ch, &hello, 5);
	raw_announce(lone, ch);
	raw_echo(lone, ch, "still here", "0:still here");
	channel_free(ch);
	close(lone);
	for (int i = 0; i < FLOOD; i++)
		close(one[i]);
	for (int i = 0; i < 64; i++)
		close(many[i]);
	node_close(&b);
	loop_drained();
}

/* What the code under test logs (stderr), captured into a file. */
static FILE *capture_file;
static int capture_saved = -1;

static void capture_start(void)
{
	fflush(stderr);
	capture_file = tmpfile();
	assert_non_null(capture_file);
	capture_saved = dup(2);
	assert_true(capture_saved >= 0);
	assert_true(dup2(fileno(capture_file), 2) >= 0);
}

/* Stops capturing; returns how many captured lines contain NEEDLE. */
static int capture_stop(const char *needle)
{
	char line[2048];
	int n = 0;
	fflush(stderr);
	assert_true(dup2(capture_saved, 2) >= 0);
	close(capture_saved);
	rewind(capture_file);
	while (fgets(line, sizeof line, capture_file) != NULL) {
		fputs(line, stderr);
		n += strstr(line, needle) != NULL;
	}
	fclose(capture_file);
	return n;
}

/* A burst from one source is accepted in one go, so its oldest are evicted
 * before a byte of theirs is read; each eviction is still logged (within
 * the rate limit), as a silent probe's close is not. */
static void test_evictions_logged(void **state)
{
	(void)state;
	struct node b;
	node_make(&b, 2, free_port(), &ring_a, 60000);
	assert_int_equal(b.io->start(b.io, 2, b.address, on_recv, &b), 0);
	int fds[20];
	for (int i = 0; i < 20; i++) {
		fds[i] = raw_connect_from(b.port, "127.0.0.2");
		raw_write(fds[i], "VFSC\x03", 5);
	}
	capture_start();
	int evicted = 0;
	uv_update_time(&loop);
	uint64_t deadline = uv_now(&loop) + 5000;
	while (evicted < 12 && uv_now(&loop) < deadline) {
		pump(10);
		evicted = 0;
		for (int i = 0; i < 20; i++)
			evicted += raw_closed(&fds[i]);
	}
	pump(20);
	assert_int_equal(capture_stop("dropped unauthenticated connection from 127.0.0.2: "
				      "evicted: too many unauthenticated connections from its "
				      "address"),
			 12);
	assert_int_equal(evicted, 12);
	for (int i = 0; i < 20; i++)
		close(fds[i]);
	node_close(&b);
	loop_drained();
}

/* ------------------------------------------------------------------------ */
/* Identities */

/* An RPC_ECHO from FROM to TO, waited for. */
static void echo(struct node *from, const char *to, const char *payload, struct rpc_result *r)
{
	rpc_ok(from, to, RPC_ECHO, payload, 5000, r);
	assert_true(run_until(rpc_done, r, 10000));
}

/* A dial address names the member meant: whoever answers at its host:port
 * with another identity (a node that took the port over, a redirected
 * connection) gets nothing from us, not even a Raft message. */
static void test_wrong_identity(void **state)
{
	(void)state;
	struct node a, b;
	node_start(&a, 1);
	node_start(&b, 2);
	struct channel_identity other;
	channel_identity_generate(&other);
	char wrong[RAFTADDR_MAX + 1];
	format_address(wrong, "node2", b.port, other.pk);

	sends_done = 0;
	struct send_req s;
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	send_msg_to(&a, wrong, b.id, &m, &s);
	struct rpc_result r;
	rpc_ok(&a, wrong, RPC_ECHO, "x", 5000, &r);
	assert_true(wait_count(&sends_done, 1, 5000));
	assert_int_equal(s.status, RAFT_NOCONNECTION);
	/* Refused at the handshake: not left to time out. */
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -ECONNREFUSED);
	pump(50);
	assert_int_equal(b.n_rpcs, 0);
	assert_int_equal(b.n_msgs, 0);

	/* B's own address reaches it, and so does a plain host:port (a join
	 * address), which accepts any holder of the cluster key. */
	echo(&a, b.address, "y", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "1:y");
	char plain[64];
	snprintf(plain, sizeof plain, "127.0.0.1:%d", b.port);
	echo(&a, plain, "z", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "1:z");
	check_pair_works(&a, &b);
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* Attribution is by proven identity alone. A holder of the cluster key
 * whose identity is no member's (a removed node keeps the key) may ask
 * RPCs, which say so (peer_id 0 and its key, for join and the like), but
 * Raft never hears from it. */
static void test_non_member(void **state)
{
	(void)state;
	struct node a, b, s;
	node_start(&a, 1);
	node_start(&b, 2);
	node_start(&s, 3);
	member_forget(s.ident.pk);

	struct rpc_result r;
	echo(&s, b.address, "who", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "0:who");
	assert_int_equal(b.last_peer_id, 0);
	assert_memory_equal(b.last_peer_key, s.ident.pk, CHANNEL_ID_LEN);

	/* A Raft message, then an RPC on the same connection: once the RPC is
	 * answered, the message has been processed. Dropping it leaves the
	 * connection up, as it would for a member. */
	sends_done = 0;
	struct send_req sr;
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	send_msg(&s, &b, &m, &sr);
	echo(&s, b.address, "again", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "0:again");
	assert_true(wait_count(&sends_done, 1, 5000));
	assert_int_equal(sr.status, 0);
	assert_int_equal(b.n_msgs, 0);
	assert_int_equal(b.n_rpcs, 2);

	/* A member, to the same receiver, is attributed as itself. */
	echo(&a, b.address, "me", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "1:me");
	assert_memory_equal(b.last_peer_key, a.ident.pk, CHANNEL_ID_LEN);
	check_pair_works(&a, &b);
	node_close(&s);
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* A Raft message of LEN bytes (kind byte first) carrying one entry. */
static void big_raft_message(struct buf *pt, size_t entry_len, raft_term term)
{
	static uint8_t entry[256 * 1024];
	assert_true(entry_len <= sizeof entry);
	struct raft_entry e = {.term = term, .type = RAFT_COMMAND,
			       .buf = {.base = entry, .len = entry_len}};
	struct raft_message m = msg_of(RAFT_IO_APPEND_ENTRIES);
	m.append_entries.term = term;
	m.append_entries.entries = &e;
	m.append_entries.n_entries = 1;
	buf_clear(pt);
	buf_put_u8(pt, 1);
	assert_int_equal(msgcodec_encode(&m, pt), 0);
}

/* What an identity that is no member may make a node buffer is 64 KiB per
 * connection (NONMEMBER_MESSAGE_MAX), in fragments or in one frame: past
 * it the connection closes, before the rest is read. It is still served
 * what is small (JOIN, MEMBERS). Who sends is asked at each frame, so the
 * bound follows membership: once a member (as a joiner becomes one), the
 * same connection carries messages of any size, and a member removed in
 * the middle of a message loses the connection at its next fragment. */
static void test_nonmember_bounds(void **state)
{
	(void)state;
	struct node b;
	node_start(&b, 2);
	char raw_address[RAFTADDR_MAX + 1];
	format_address(raw_address, "raw", 1, raw_ident.pk);
	struct buf pt;
	buf_init(&pt);

	int fd = raw_connect(b.port);
	struct channel *ch = raw_session(fd);
	raw_echo(fd, ch, "small", "0:small");
	static uint8_t piece[16 * 1024];
	for (int i = 0; i < 5; i++) { /* 80 KiB in all */
		buf_clear(&pt);
		buf_put_u8(&pt, 4);
		buf_put_raw(&pt, piece, sizeof piece);
		if (!raw_send(fd, ch, &pt))
			break;
	}
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
	channel_free(ch);

	/* One frame of 64 KiB and a bit, no fragment: the same. */
	fd = raw_connect(b.port);
	ch = raw_session(fd);
	static uint8_t payload[64 * 1024];
	buf_clear(&pt);
	put_rpc_req(&pt, 1, 999, payload, sizeof payload);
	(void)raw_send(fd, ch, &pt);
	assert_true(run_until(raw_closed, &fd, 5000));
	assert_int_equal(b.n_rpcs, 1); /* only the echo was served */
	close(fd);
	channel_free(ch);

	/* Becoming a member lifts the bound on the same connection. */
	fd = raw_connect(b.port);
	ch = raw_session(fd);
	raw_echo(fd, ch, "joining", "0:joining");
	member_add(raw_ident.pk, 77, raw_address);
	big_raft_message(&pt, 200 * 1024, 8);
	assert_true(raw_send_fragmented(fd, ch, &pt, 48 * 1024));
	assert_true(wait_count(&b.n_msgs, 1, 5000));
	assert_int_equal(b.msgs[0].server_id, 77);
	assert_int_equal(b.msgs[0].append_entries.entries[0].buf.len, 200 * 1024);

	/* Removed after the first fragment of a message: the second closes
	 * the connection, though the message is not complete. */
	struct buf part;
	buf_init(&part);
	buf_put_u8(&part, 4);
	buf_put_raw(&part, pt.data + 1, 48 * 1024);
	assert_true(raw_send(fd, ch, &part));
	pump(20);
	assert_false(raw_closed(&fd));
	member_forget(raw_ident.pk);
	(void)raw_send(fd, ch, &part);
	assert_true(run_until(raw_closed, &fd, 5000));
	assert_int_equal(b.n_msgs, 1);
	buf_free(&part);
	buf_free(&pt);
	close(fd);
	channel_free(ch);
	node_close(&b);
	loop_drained();
}

/* Answers owed to a peer wait while it reads slowly, but not without end:
 * one that keeps asking and never reads loses its connection once more
 * than 32 MiB (WRITE_QUEUE_MAX) of answers wait to be written. */
static void test_unread_answers(void **state)
{
	(void)state;
	struct node b;
	node_start(&b, 2);
	char raw_address[RAFTADDR_MAX + 1];
	format_address(raw_address, "raw", 1, raw_ident.pk);
	member_add(raw_ident.pk, 77, raw_address);
	int fd = raw_connect(b.port);
	struct channel *ch = raw_session(fd);
	struct buf pt, wire;
	buf_init(&pt);
	buf_init(&wire);

	/* 8 answers of 2 MiB, read only once all are queued: all arrive. */
	for (uint64_t id = 1; id <= 8; id++) {
		buf_clear(&pt);
		put_rpc_req(&pt, id, RPC_BIG, NULL, 0);
		assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	}
	assert_true(raw_write_all(fd, wire.data, wire.len));
	assert_true(wait_count(&b.n_rpcs, 8, 5000));
	pump(50);
	for (uint64_t id = 1; id <= 8; id++) {
		assert_int_equal(raw_answer(fd, ch, id, &pt), 0);
		assert_int_equal(pt.len, BIG_LEN);
	}
	assert_false(raw_closed(&fd));

	/* 40 more, never read: 80 MiB of answers would wait. */
	buf_clear(&wire);
	for (uint64_t id = 9; id <= 48; id++) {
		buf_clear(&pt);
		put_rpc_req(&pt, id, RPC_BIG, NULL, 0);
		assert_int_equal(channel_seal(ch, pt.data, pt.len, &wire), 0);
	}
	assert_true(raw_write_all(fd, wire.data, wire.len));
	assert_true(run_until(raw_closed, &fd, 10000));
	assert_true(b.n_rpcs < 48); /* it stopped there */
	buf_free(&pt);
	buf_free(&wire);
	close(fd);
	channel_free(ch);

	/* Others are served as before. */
	struct node a;
	node_start(&a, 1);
	check_pair_works(&a, &b);
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* A node dialling its own address (a stale configuration, a port forwarded
 * back to it) must not talk to itself: libraft would take its own messages
 * for a peer's. Refused at the handshake, whether or not the address names
 * the identity. */
static void test_self_connection(void **state)
{
	(void)state;
	struct node a, b;
	node_start(&a, 1);
	node_start(&b, 2);
	char plain[64];
	snprintf(plain, sizeof plain, "127.0.0.1:%d", a.port);
	const char *selves[2] = {a.address, plain};
	for (int i = 0; i < 2; i++) {
		sends_done = 0;
		struct send_req s;
		struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
		send_msg_to(&a, selves[i], a.id, &m, &s);
		struct rpc_result r;
		rpc_ok(&a, selves[i], RPC_ECHO, "me?", 5000, &r);
		assert_true(wait_count(&sends_done, 1, 5000));
		assert_int_equal(s.status, RAFT_NOCONNECTION);
		assert_true(run_until(rpc_done, &r, 5000));
		assert_int_equal(r.status, -ECONNREFUSED);
	}
	pump(50);
	assert_int_equal(a.n_rpcs, 0);
	assert_int_equal(a.n_msgs, 0);

	/* Other peers are unaffected, both ways. */
	check_pair_works(&a, &b);
	check_pair_works(&b, &a);
	struct rpc_result r;
	echo(&a, b.address, "ok", &r);
	assert_string_equal(r.payload, "1:ok");
	echo(&b, a.address, "ok", &r);
	assert_string_equal(r.payload, "2:ok");
	node_close(&a);
	node_close(&b);
	loop_drained();
}

/* A removed member keeps the cluster key and the connection it opened as a
 * member: the first thing it sends on that connection after the removal
 * closes it, unserved. */
static void test_member_removed(void **state)
{
	(void)state;
	struct node a, b, c;
	node_start(&a, 1);
	node_start(&b, 2);
	node_start(&c, 3);
	struct rpc_result r;
	echo(&a, b.address, "x", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "1:x");
	assert_int_equal(b.n_rpcs, 1);

	member_forget(a.ident.pk);
	echo(&a, b.address, "y", &r);
	assert_int_equal(r.status, -ECONNRESET);
	assert_int_equal(b.n_rpcs, 1);

	/* The same for a Raft message: not delivered, and the RPC behind it
	 * on the connection is not served either. */
	check_pair_works(&c, &b);
	int msgs = b.n_msgs;
	member_forget(c.ident.pk);
	sends_done = 0;
	struct send_req s;
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	send_msg(&c, &b, &m, &s);
	echo(&c, b.address, "z", &r);
	assert_int_equal(r.status, -ECONNRESET);
	assert_true(wait_count(&sends_done, 1, 5000));
	assert_int_equal(b.n_msgs, msgs);
	assert_int_equal(b.n_rpcs, 1);

	/* A new connection from a removed node is that of a non-member. */
	echo(&a, b.address, "w", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "0:w");
	assert_memory_equal(b.last_peer_key, a.ident.pk, CHANNEL_ID_LEN);
	/* And B, still a member, still reaches A. */
	check_pair_works(&b, &a);
	node_close(&a);
	node_close(&b);
	node_close(&c);
	loop_drained();
}

/* Each handshake uses the newest term both ends hold; an RPC arriving on a
 * connection whose term is older than the receiver's newest at that moment
 * says so (stale_key), as one from a removed node, which keeps its old
 * keyring, would. */
static void test_stale_key(void **state)
{
	(void)state;
	/* B has applied the rotation to term 3, A not yet. */
	struct ring ra = ring_of(keys_a, 2), rb = ring_of(keys_a, 3), rc = ring_of(keys_a, 3);
	struct node a, b, c;
	node_start_key(&a, 1, &ra);
	node_start_key(&b, 2, &rb);
	node_start_key(&c, 3, &rc);
	struct rpc_result r;

	/* A dials B: term 2, older than B's newest. */
	echo(&a, b.address, "x", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "1:x");
	assert_true(b.last_stale_key);
	/* B dials A: term 2 as well, which is A's newest. */
	echo(&b, a.address, "y", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "2:y");
	assert_false(a.last_stale_key);
	/* C, on term 3 like B: not stale, either way. */
	echo(&c, b.address, "z", &r);
	assert_int_equal(r.status, 0);
	assert_false(b.last_stale_key);
	echo(&b, c.address, "z", &r);
	assert_int_equal(r.status, 0);
	assert_false(c.last_stale_key);

	/* A applies the rotation: B's connection to A still runs on term 2,
	 * which A now finds stale, request by request. */
	ra.n = 3;
	echo(&b, a.address, "w", &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "2:w");
	assert_true(a.last_stale_key);

	/* A new connection from A agrees on term 3. */
	node_close(&a);
	node_start_key(&a, 1, &ra);
	echo(&a, b.address, "v", &r);
	assert_int_equal(r.status, 0);
	assert_false(b.last_stale_key);

	node_close(&a);
	node_close(&b);
	node_close(&c);
	loop_drained();
}

/* ------------------------------------------------------------------------ */
/* Restart, close, lifecycle */

static void test_peer_restart(void **state)
{
	(void)state;
	struct node a, b;
	node_start(&a, 1);
	node_start(&b, 2);
	check_pair_works(&a, &b);
	int port = b.port;
	node_close(&b);

	/* B is gone: sends fail (connection lost, then refused, then
	 * backoff), always through the callback. */
	sends_done = 0;
	struct send_req s[3];
	struct raft_message m = msg_of(RAFT_IO_TIMEOUT_NOW);
	for (int i = 0; i < 3; i++) {
		send_msg(&a, &b, &m, &s[i]);
		assert_true(wait_count(&sends_done, i + 1, 5000));
		assert_int_equal(s[i].status, RAFT_NOCONNECTION);
	}

	struct node b2; /* the same node restarted: same identity, same address */
	node_make_as(&b2, 2, port, &ring_a, TEST_HANDSHAKE_MS, &b.ident);
	assert_string_equal(b2.address, b.address);
	assert_int_equal(b2.io->start(b2.io, 2, b2.address, on_recv, &b2), 0);
	/* Raft keeps sending; delivery resumes within the backoff bound. */
	uv_update_time(&loop);
	uint64_t deadline = uv_now(&loop) + 5000;
	struct send_req r;
	while (b2.n_msgs == 0 && uv_now(&loop) < deadline) {
		int want = sends_done + 1;
		send_msg(&a, &b2, &m, &r);
		assert_true(wait_count(&sends_done, want, 5000));
		pump(20);
	}
	assert_true(b2.n_msgs >= 1);
	check_from(&b2, 0, &a);
	node_close(&a);
	node_close(&b2);
	loop_drained();
}

static bool start_fails_with_ioerr(void)
{
	struct node a, b;
	node_start(&a, 1);
	node_make(&b, 2, a.port, &ring_a, TEST_HANDSHAKE_MS);
	int rv = b.io->start(b.io, 2, a.address, on_recv, &b);
	node_close(&b);
	node_close(&a);
	return rv == RAFT_IOERR;
}

static void test_lifecycle(void **state)
{
	(void)state;
	/* Never started: close still calls back (asynchronously). */
	struct node n;
	node_make(&n, 1, free_port(), &ring_a, 0);
	node_close(&n);

	/* Never handed to raftio. */
	node_make(&n, 1, free_port(), &ring_a, 0);
	transport_free_unused(n.t);
	transport_free_unused(NULL);

	/* Port taken. */
	assert_true(start_fails_with_ioerr());

	/* Bad address. */
	node_make(&n, 1, free_port(), &ring_a, 0);
	assert_int_not_equal(n.io->start(n.io, 1, "node1@nowhere-without-port", on_recv, &n), 0);
	node_close(&n);
	loop_drained();
}

static void test_close_with_pending(void **state)
{
	(void)state;
	/* A listener that accepts in the kernel but never answers: the
	 * handshake never completes, so everything stays queued. */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int port = free_port();
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(lfd, 16), 0);

	struct node a, mute;
	node_start(&a, 1);
	node_make(&mute, 9, port, &ring_a, 0);
	transport_free_unused(mute.t); /* only for its address string */

	sends_done = 0;
	struct send_req s[4];
	struct raft_message m = msg_of(RAFT_IO_APPEND_ENTRIES);
	for (int i = 0; i < 4; i++)
		send_msg(&a, &mute, &m, &s[i]);
	int rpcs = 0;
	struct rpc_result r[2];
	for (int i = 0; i < 2; i++) {
		rpc_ok(&a, mute.address, RPC_ECHO, "q", 10000, &r[i]);
		r[i].counter = &rpcs;
	}
	pump(50);
	assert_int_equal(sends_done, 0);
	node_close(&a);
	assert_int_equal(sends_done, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(s[i].status, RAFT_CANCELED);
	assert_int_equal(rpcs, 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(r[i].status, -ESHUTDOWN);
	close(lfd);
	loop_drained();
}

/* ------------------------------------------------------------------------ */
/* Join-info */

static void test_join_fetch(void **state)
{
	(void)state;
	struct node b;
	node_start(&b, 2);
	struct transport_join_fetch *f;
	struct rpc_result r;
	char plain[64];
	snprintf(plain, sizeof plain, "127.0.0.1:%d", b.port);

	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, b.address, 2000, on_rpc_done, &r, &f), 0);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, 0);
	assert_string_equal(r.payload, "sealed-keyring");
	assert_int_equal(b.join_version, TRANSPORT_JOIN_VERSION);

	b.join_status = -EACCES;
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, plain, 2000, on_rpc_done, &r, &f), 0);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -EACCES);

	/* By name, resolved asynchronously. */
	b.join_status = 0;
	snprintf(plain, sizeof plain, "localhost:%d", b.port);
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, plain, 2000, on_rpc_done, &r, &f), 0);
	assert_true(run_until(rpc_done, &r, 5000));
	if (r.status != -ECONNREFUSED) /* localhost may resolve to ::1 first */
		assert_int_equal(r.status, 0);

	/* Nothing listening. */
	snprintf(plain, sizeof plain, "127.0.0.1:%d", free_port());
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, plain, 2000, on_rpc_done, &r, &f), 0);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -ECONNREFUSED);

	/* Listening but never answering. */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int port = free_port();
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(lfd, 16), 0);
	snprintf(plain, sizeof plain, "127.0.0.1:%d", port);
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, plain, 150, on_rpc_done, &r, &f), 0);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, -ETIMEDOUT);

	/* Cancelled: never called back, even once the answer would be in. */
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, b.address, 2000, on_rpc_done, &r, &f), 0);
	transport_join_cancel(f);
	pump(200);
	assert_false(r.done);
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, plain, 100, on_rpc_done, &r, &f), 0);
	pump(20);
	transport_join_cancel(f);
	pump(200);
	assert_false(r.done);
	close(lfd);

	assert_int_equal(transport_join_fetch(&loop, "no-port", 100, on_rpc_done, &r, &f), -EINVAL);
	node_close(&b);
	loop_drained();
}

/* Join-info requests from SOURCES[i] (NULL: 127.0.0.1), all sent before
 * the node runs, so that it reads them in one go, while every answer is
 * still under way; then how many were answered (the rest must have been
 * refused with EAGAIN). */
static int join_burst(struct node *b, const char *const *sources, int n)
{
	int fds[32];
	assert_true(n <= 32);
	for (int i = 0; i < n; i++) {
		fds[i] = raw_connect_from(b->port, sources[i]);
		raw_write(fds[i], "VFSJ", 4);
	}
	int answered = 0;
	for (int i = 0; i < n; i++) {
		uint8_t head[8 + 14];
		struct raw_read rr = {fds[i], head, 8, 0};
		assert_true(run_until(raw_read_step, &rr, 5000));
		struct cursor cur;
		cursor_init(&cur, head, 8);
		uint32_t status = cursor_u32(&cur), len = cursor_u32(&cur);
		if (status == 0) {
			assert_int_equal(len, 14);
			rr = (struct raw_read){fds[i], head + 8, 14, 0};
			assert_true(run_until(raw_read_step, &rr, 5000));
			assert_memory_equal(head + 8, "sealed-keyring", 14);
			answered++;
		} else {
			assert_int_equal(status, EAGAIN);
			assert_int_equal(len, 0);
		}
		assert_true(run_until(raw_closed, &fds[i], 5000));
		close(fds[i]);
	}
	return answered;
}

/* Join-info answers have their own budget: at most 4 under way per source
 * (MAX_JOIN_PER_SOURCE) and 16 in all (MAX_JOIN); past it a request is
 * told EAGAIN (the joiner tries again) rather than piling up answers.
 * Outside a burst, everyone is answered. */
static void test_join_budget(void **state)
{
	(void)state;
	struct node b;
	node_start(&b, 2);
	const char *sources[20];
	char names[20][16];
	for (int i = 0; i < 6; i++)
		sources[i] = "127.0.0.40";
	assert_int_equal(join_burst(&b, sources, 6), 4);
	for (int i = 0; i < 20; i++)
		sources[i] = source_n(names[i], 41, i % 5);
	assert_int_equal(join_burst(&b, sources, 20), 16);
	assert_int_equal(b.n_joins, 20);
	for (int i = 0; i < 3; i++)
		assert_int_equal(join_burst(&b, sources, 1), 1);
	node_close(&b);
	loop_drained();
}

static bool answered_joins(void *arg)
{
	struct node *n = arg;
	return n->n_joins > n->join_seen;
}

/* The version a raw request of LEN bytes is answered in. */
static unsigned join_raw_version(struct node *b, const char *req, size_t len)
{
	b->join_seen = b->n_joins;
	int fd = raw_connect(b->port);
	raw_write(fd, req, len);
	assert_true(run_until(answered_joins, b, 5000));
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
	return b->join_version;
}

/* A previous release asks with the magic alone and gets version 0; a later
 * one asking for more gets at most ours. */
static void test_join_version(void **state)
{
	(void)state;
	struct node b;
	node_start(&b, 2);
	assert_int_equal(join_raw_version(&b, "VFSJ", 4), 0);
	assert_int_equal(join_raw_version(&b, "VFSJ\x01", 5), 1);
	assert_int_equal(join_raw_version(&b, "VFSJ\x09", 5), TRANSPORT_JOIN_VERSION);
	node_close(&b);
	loop_drained();
}

static void join_fetch_ok(struct node *b)
{
	struct transport_join_fetch *f;
	struct rpc_result r;
	memset(&r, 0, sizeof r);
	assert_int_equal(transport_join_fetch(&loop, b->address, 2000, on_rpc_done, &r, &f), 0);
	assert_true(run_until(rpc_done, &r, 5000));
	assert_int_equal(r.status, 0);
}

static void garbage_dropped(struct node *b)
{
	int fd = raw_connect(b->port);
	raw_write(fd, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_true(run_until(raw_closed, &fd, 5000));
	close(fd);
}

/* Join-info requests and dropped connections are logged from budgets of
 * their own (20 lines per 10 s each): a flood of either cannot keep the
 * other out of the log. */
static void test_join_log_budget(void **state)
{
	(void)state;
	struct node b, c;
	node_start(&b, 2);
	node_start(&c, 3);
	capture_start();
	for (int i = 0; i < 25; i++)
		join_fetch_ok(&b);
	garbage_dropped(&b);
	assert_int_equal(capture_stop("dropped unauthenticated connection from 127.0.0.1: not a "
				      "vaultfs cluster connection"),
			 1);
	capture_start();
	for (int i = 0; i < 25; i++)
		garbage_dropped(&c);
	join_fetch_ok(&c);
	assert_int_equal(capture_stop("join-info request from 127.0.0.1: answered"), 1);
	node_close(&b);
	node_close(&c);
	loop_drained();
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(crypto_global_init(true), 0);
	uint8_t *keys[2];
	for (int i = 0; i < 2; i++) {
		/* Term 1 from a fresh keyring, as a node derives it; later terms
		 * random: the transport does not care where they come from. */
		struct barrier *b;
		struct buf sealed;
		buf_init(&sealed);
		uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
		keys[i] = secmem_alloc(MAX_TERMS * CHANNEL_KEY_LEN);
		assert_non_null(root);
		assert_non_null(keys[i]);
		assert_int_equal(barrier_new(&b), 0);
		barrier_generate_root_key(root);
		assert_int_equal(barrier_init_keyring(b, root, &sealed), 0);
		uint32_t term = 0;
		assert_int_equal(barrier_cluster_key(b, &term, keys[i]), 0);
		assert_int_equal(term, 1);
		randombytes_buf(keys[i] + CHANNEL_KEY_LEN, (MAX_TERMS - 1) * CHANNEL_KEY_LEN);
		barrier_free(b);
		secmem_free(root);
		buf_free(&sealed);
	}
	keys_a = keys[0];
	keys_b = keys[1];
	ring_a = ring_of(keys_a, 1);
	ring_b = ring_of(keys_b, 1);
	channel_identity_generate(&raw_ident);
	assert_memory_not_equal(keys_a, keys_b, CHANNEL_KEY_LEN);
	/* A raw client writing to a connection the node closed gets EPIPE,
	 * not the end of the test. */
	signal(SIGPIPE, SIG_IGN);
	return uv_loop_init(&loop);
}

static int teardown(void **state)
{
	(void)state;
	secmem_free(keys_a);
	secmem_free(keys_b);
	return uv_loop_close(&loop);
}

/* test_transport [PATTERN]: only the tests whose names match PATTERN (a
 * glob), to run one alone. */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raft_messages),
		cmocka_unit_test(test_three_nodes),
		cmocka_unit_test(test_rpc),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_garbage_clients),
		cmocka_unit_test(test_unauth_flood),
		cmocka_unit_test(test_unauth_per_source),
		cmocka_unit_test(test_evictions_logged),
		cmocka_unit_test(test_wrong_identity),
		cmocka_unit_test(test_non_member),
		cmocka_unit_test(test_nonmember_bounds),
		cmocka_unit_test(test_unread_answers),
		cmocka_unit_test(test_self_connection),
		cmocka_unit_test(test_member_removed),
		cmocka_unit_test(test_stale_key),
		cmocka_unit_test(test_peer_restart),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_close_with_pending),
		cmocka_unit_test(test_join_fetch),
		cmocka_unit_test(test_join_version),
		cmocka_unit_test(test_join_budget),
		cmocka_unit_test(test_join_log_budget),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
