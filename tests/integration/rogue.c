/* rogue: test-only tool of tests/integration/test_outsider.sh. It plays an
 * outsider that holds the cluster key (a stolen seal file and enough
 * shares, or a node removed from the cluster) but no member's identity
 * secret key. It speaks through the project's own transport
 * (raft/transport.h) with a fresh identity of its own, so every channel it
 * opens is genuine: whatever a node refuses, it refuses because of who the
 * tool proved to be, never because of a broken handshake.
 *
 * The cluster key comes on stdin: 64 hex digits, or keyprobe's line
 * "cluster <hex>" (the newest term's). It stays in secure memory and is
 * wiped once the transport closed. The tool holds that one term's key
 * (--key-term), offers it in every handshake and can use no other, as an
 * outsider with one stolen keyring would.
 *
 *   rogue [OPTIONS] rpc ADDR TYPE [ITEM...]
 *     Sends one RPC of TYPE (forward, read-index, step-down, join, remove,
 *     confirm, visible, safe, members, or a number) to ADDR ("host:port":
 *     any responder holding the cluster key is accepted), its payload made
 *     of the ITEMs in order:
 *       u8:N u16:N u32:N u64:N  little-endian integers
 *       id:NAME                 u64 Raft id of node NAME (node_raft_id_of)
 *       blob:TEXT               u32 length, then TEXT
 *       raw:TEXT                TEXT as it is
 *       hex:HEX                 bytes
 *       mkdir:NAME              an encoded command making directory NAME in
 *                               the root (what a follower forwards)
 *     In TEXT, "{me}" stands for this tool's own identity (64 hex digits),
 *     the only one it can prove. Prints "status=S len=N", S being 0 or the
 *     errno's name (EPERM, ...); exit 0 if the node answered (even with an
 *     error), 1 if no answer came (the transport's own ETIMEDOUT,
 *     ECONNREFUSED, ECONNRESET, ESHUTDOWN), 2 on a local error.
 *   rogue [OPTIONS] members ADDR
 *     MEMBERS, which non-members may ask (a joining node needs it): prints
 *     "ID ADDRESS" for each server in ADDR's configuration. Exit as rpc.
 *   rogue [OPTIONS] append ADDR CLAIMED TERM
 *     Sends ADDR a forged Raft AppendEntries (a heartbeat: no entries,
 *     prev_log_index 0, so that a receiver that believed it would take it
 *     as from its leader) in TERM, announcing Raft address CLAIMED, e.g. the
 *     leader's "n1@127.0.0.1:PORT#<its identity>" with a free PORT (the tool
 *     listens there, as a member does at its own address; the message itself
 *     carries no sender, only the connection's address frame does). Prints
 *     "sent=1" once the message was written to an established channel
 *     ("sent=0" if not), then keeps the connection open for --wait MS so
 *     that the node reads it before the close. Exit 0 if sent, 1 if not.
 *
 * OPTIONS (before the command):
 *   --as ADDRESS   for rpc and members: announce Raft address ADDRESS (a
 *                  member's name and identity, a free port) as append's
 *                  CLAIMED does, so that a node attributing traffic by the
 *                  claim instead of the proof would take the tool for that
 *                  member
 *   --proxied      sets NODE_RPC_PROXIED: claims the RPC was relayed by a
 *                  member
 *   --key-term N   the keyring term the cluster key on stdin belongs to
 *                  (default 1, the only one before any rotation)
 *   --timeout MS   how long to wait for an answer or a send (default 5000)
 *   --wait MS      append: how long to stay connected after sending (300) */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto/channel.h"
#include "crypto/secmem.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "node/internal.h"
#include "raft/msgcodec.h"
#include "raft/raftaddr.h"
#include "raft/transport.h"
#include "store/cmd.h"
#include "vaultfs/proto.h"

#define ME_TOKEN "{me}"

struct rogue {
	uv_loop_t loop;
	struct transport *t;
	bool started;   /* handed to raftio's start: closed through io->close */
	bool closing;
	char me_hex[RAFTADDR_ID_HEX + 1];
	uint8_t *key; /* the cluster key, secure memory, until the loop ends */
	uint32_t key_term;
	/* rpc, members */
	bool answered;
	int status;
	struct buf resp;
	/* append */
	struct raft_io_send send_req;
	bool sent;
	uv_timer_t timer; /* overall deadline; append: then the wait after sending */
	unsigned wait_ms;
};

static _Noreturn void die(const char *msg)
{
	fprintf(stderr, "rogue: %s\n", msg);
	exit(2);
}

static const char *errno_name(int status)
{
	static char num[32];
	if (status == 0)
		return "0";
	const char *name = strerrorname_np(-status);
	if (name != NULL)
		return name;
	snprintf(num, sizeof num, "%d", status);
	return num;
}

/* The cluster key from stdin into secure memory KEY. */
static void read_cluster_key(uint8_t *key)
{
	char *text = secmem_alloc(512);
	if (text == NULL)
		die("out of memory");
	size_t len = fread(text, 1, 511, stdin);
	text[len] = '\0';
	const char *hex = text;
	while (*hex == ' ' || *hex == '\n')
		hex++;
	if (strncmp(hex, "cluster ", 8) == 0)
		hex += 8;
	size_t hex_len = strspn(hex, "0123456789abcdefABCDEF");
	size_t bin_len = 0;
	bool rest_blank = strspn(hex + hex_len, " \r\n") == strlen(hex + hex_len);
	if (hex_len != 2 * CHANNEL_KEY_LEN || !rest_blank ||
	    sodium_hex2bin(key, CHANNEL_KEY_LEN, hex, hex_len, NULL, &bin_len, NULL) != 0 ||
	    bin_len != CHANNEL_KEY_LEN) {
		secmem_free(text);
		die("stdin: expected the cluster key (64 hex digits)");
	}
	secmem_free(text);
}

/* TEXT with every "{me}" replaced by this tool's identity, appended to OUT. */
static void put_text(struct rogue *r, struct buf *out, const char *text)
{
	const char *p = text, *q;
	while ((q = strstr(p, ME_TOKEN)) != NULL) {
		buf_put_raw(out, p, (size_t)(q - p));
		buf_put_raw(out, r->me_hex, strlen(r->me_hex));
		p = q + strlen(ME_TOKEN);
	}
	buf_put_raw(out, p, strlen(p));
}

static uint64_t parse_u64(const char *s, uint64_t max)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0' || v > max)
		die("bad number in a payload item");
	return v;
}

/* A CMD_MKDIR of NAME in the root, as a follower forwards a client's mkdir:
 * if a leader took it from the tool, the directory would appear. */
static void put_mkdir(struct buf *out, const char *name)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct cmd c = {
		.type = CMD_MKDIR,
		.client_id = ((uint64_t)randombytes_random() << 32) | randombytes_random(),
		.seq = 1,
		.ack_below = 1,
		.now_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
		.ino = VFS_ROOT_INO,
		.name = (const uint8_t *)name,
		.name_len = strlen(name),
		.mode = 0755,
	};
	if (cmd_encode(&c, out) != 0)
		die("cannot encode the mkdir command");
}

static void put_item(struct rogue *r, struct buf *out, const char *item)
{
	const char *colon = strchr(item, ':');
	if (colon == NULL)
		die("payload items are KIND:VALUE");
	size_t klen = (size_t)(colon - item);
	const char *v = colon + 1;
#define KIND(s) (klen == strlen(s) && strncmp(item, s, klen) == 0)
	if (KIND("u8")) {
		buf_put_u8(out, (uint8_t)parse_u64(v, UINT8_MAX));
	} else if (KIND("u16")) {
		buf_put_u16(out, (uint16_t)parse_u64(v, UINT16_MAX));
	} else if (KIND("u32")) {
		buf_put_u32(out, (uint32_t)parse_u64(v, UINT32_MAX));
	} else if (KIND("u64")) {
		buf_put_u64(out, parse_u64(v, UINT64_MAX));
	} else if (KIND("id")) {
		buf_put_u64(out, node_raft_id_of(v));
	} else if (KIND("blob") || KIND("raw")) {
		struct buf text;
		buf_init(&text);
		put_text(r, &text, v);
		if (text.err != 0)
			die("out of memory");
		if (KIND("blob"))
			buf_put_blob(out, text.data, text.len);
		else
			buf_put_raw(out, text.data, text.len);
		buf_free(&text);
	} else if (KIND("hex")) {
		size_t hlen = strlen(v), blen = 0;
		uint8_t *bin = malloc(hlen / 2 + 1);
		if (bin == NULL ||
		    sodium_hex2bin(bin, hlen / 2 + 1, v, hlen, NULL, &blen, NULL) != 0)
			die("bad hex item");
		buf_put_raw(out, bin, blen);
		free(bin);
	} else if (KIND("mkdir")) {
		put_mkdir(out, v);
	} else {
		die("unknown payload item kind");
	}
#undef KIND
}

static const struct {
	const char *name;
	uint16_t type;
} rpc_types[] = {
	{ "forward", NODE_RPC_FORWARD },   { "read-index", NODE_RPC_READ_INDEX },
	{ "step-down", NODE_RPC_STEP_DOWN }, { "join", NODE_RPC_JOIN },
	{ "remove", NODE_RPC_REMOVE },     { "confirm", NODE_RPC_CONFIRM },
	{ "visible", NODE_RPC_VISIBLE },   { "safe", NODE_RPC_SAFE },
	{ "members", NODE_RPC_MEMBERS },
};

static uint16_t parse_type(const char *s)
{
	for (size_t i = 0; i < sizeof rpc_types / sizeof rpc_types[0]; i++)
		if (strcmp(s, rpc_types[i].name) == 0)
			return rpc_types[i].type;
	return (uint16_t)parse_u64(s, UINT16_MAX);
}

/* ---- The transport: knows nobody, serves nothing ---- */

/* The transport's cluster keys: the one term the tool holds, offered as
 * its newest; any other term is one it does not have. */
static int rogue_key(void *ctx, uint32_t *term, uint8_t *out)
{
	struct rogue *r = ctx;
	if (r->key == NULL || (*term != 0 && *term != r->key_term))
		return -ENOKEY;
	memcpy(out, r->key, CHANNEL_KEY_LEN);
	*term = r->key_term;
	return 0;
}

static int identify_nobody(void *ctx, const uint8_t key[CHANNEL_ID_LEN], uint64_t *ret_id,
			   const char **ret_address)
{
	(void)ctx;
	(void)key;
	(void)ret_id;
	(void)ret_address;
	return -ENOENT;
}

static void serve_nothing(void *ctx, struct transport_rpc_req *req)
{
	(void)ctx;
	transport_rpc_reply(req, -ENOSYS, NULL, 0);
}

/* Never called: identify_nobody makes the transport drop every Raft
 * message that reaches the tool's listener. */
static void on_raft_message(struct raftio_transport *io, struct raft_message *msg, void *arg)
{
	(void)io;
	(void)arg;
	msgcodec_release(msg);
}

static void on_timer_closed(uv_handle_t *h)
{
	(void)h;
}

static void on_transport_closed(void *arg)
{
	(void)arg;
}

static void rogue_close(struct rogue *r)
{
	if (r->closing)
		return;
	r->closing = true;
	uv_timer_stop(&r->timer);
	uv_close((uv_handle_t *)&r->timer, on_timer_closed);
	if (r->started)
		transport_raftio(r->t)->close(transport_raftio(r->t), on_transport_closed, r);
	else
		transport_free_unused(r->t);
}

static void rogue_open(struct rogue *r, const char *announce)
{
	r->key = secmem_alloc(CHANNEL_KEY_LEN);
	struct channel_identity *me = secmem_alloc(sizeof *me);
	if (r->key == NULL || me == NULL)
		die("out of memory");
	read_cluster_key(r->key);
	channel_identity_generate(me);
	sodium_bin2hex(r->me_hex, sizeof r->me_hex, me->pk, CHANNEL_ID_LEN);
	if (uv_loop_init(&r->loop) != 0)
		die("cannot make a loop");
	struct transport_config cfg = {
		.loop = &r->loop,
		.cluster_key = rogue_key,
		.identity = me,
		.identify = identify_nobody,
		.rpc_handler = serve_nothing,
		.ctx = r,
	};
	int rv = transport_new(&r->t, &cfg);
	secmem_free(me);
	if (rv != 0)
		die("cannot make the transport");
	uv_timer_init(&r->loop, &r->timer);
	r->timer.data = r;
	buf_init(&r->resp);
	fprintf(stderr, "rogue: identity %s\n", r->me_hex);
	if (announce == NULL)
		return;
	struct raftaddr a;
	char name[RAFTADDR_MAX + 1];
	if (raftaddr_parse(announce, &a) != 0 || a.name_len == 0)
		die("--as/CLAIMED: expected a Raft address name@host:port[#identity]");
	memcpy(name, a.name, a.name_len);
	name[a.name_len] = '\0';
	/* Started as a member is, under the claimed name's id and address;
	 * the address is what the channel's address frame announces. */
	rv = transport_raftio(r->t)->start(transport_raftio(r->t), node_raft_id_of(name), announce,
					   on_raft_message, r);
	if (rv != 0)
		die("cannot listen at the claimed address (is its port free?)");
	r->started = true;
}

static int rogue_run(struct rogue *r)
{
	uv_run(&r->loop, UV_RUN_DEFAULT);
	secmem_free(r->key); /* the transport is gone */
	r->key = NULL;
	return uv_loop_close(&r->loop);
}

/* ---- rpc, members ---- */

static bool transport_failure(int status)
{
	return status == -ETIMEDOUT || status == -ECONNREFUSED || status == -ECONNRESET ||
	       status == -ESHUTDOWN;
}

static void on_rpc(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct rogue *r = arg;
	r->answered = true;
	r->status = status;
	buf_put_raw(&r->resp, resp, len);
	rogue_close(r);
}

static int send_rpc(struct rogue *r, const char *addr, uint16_t type, const struct buf *payload,
		    unsigned timeout_ms)
{
	if (payload->err != 0)
		die("out of memory");
	int rv = transport_rpc(r->t, addr, type, payload->data, payload->len, timeout_ms, on_rpc,
			       r);
	if (rv != 0) {
		fprintf(stderr, "rogue: transport_rpc: %s\n", strerror(-rv));
		rogue_close(r);
		rogue_run(r);
		return 2;
	}
	if (rogue_run(r) != 0 || !r->answered)
		die("the loop ended without an answer");
	return 0;
}

static int cmd_rpc(struct rogue *r, const char *addr, uint16_t type, int nitems, char **items,
		   unsigned timeout_ms)
{
	struct buf payload;
	buf_init(&payload);
	for (int i = 0; i < nitems; i++)
		put_item(r, &payload, items[i]);
	int rv = send_rpc(r, addr, type, &payload, timeout_ms);
	buf_free(&payload);
	if (rv != 0)
		return rv;
	printf("status=%s len=%zu\n", errno_name(r->status), r->resp.len);
	buf_free(&r->resp);
	return transport_failure(r->status) ? 1 : 0;
}

static int cmd_members(struct rogue *r, const char *addr, unsigned timeout_ms)
{
	struct buf payload;
	buf_init(&payload);
	int rv = send_rpc(r, addr, NODE_RPC_MEMBERS, &payload, timeout_ms);
	buf_free(&payload);
	if (rv != 0)
		return rv;
	if (r->status != 0) {
		printf("status=%s\n", errno_name(r->status));
		return transport_failure(r->status) ? 1 : 0;
	}
	struct cursor c;
	cursor_init(&c, r->resp.data, r->resp.len);
	uint32_t count = cursor_u32(&c);
	for (uint32_t i = 0; i < count && c.err == 0; i++) {
		uint64_t id = cursor_u64(&c);
		size_t alen = 0;
		const uint8_t *address = cursor_blob(&c, RAFTADDR_MAX, &alen);
		if (c.err == 0)
			printf("%" PRIu64 " %.*s\n", id, (int)alen, (const char *)address);
	}
	rv = cursor_done(&c);
	buf_free(&r->resp);
	if (rv != 0)
		die("malformed MEMBERS answer");
	return 0;
}

/* ---- append ---- */

static void on_deadline(uv_timer_t *t)
{
	rogue_close(t->data);
}

static void on_sent(struct raft_io_send *req, int status)
{
	struct rogue *r = req->data;
	r->sent = status == 0;
	if (status != 0) {
		fprintf(stderr, "rogue: send failed: %s\n", raft_strerror(status));
		rogue_close(r);
		return;
	}
	/* Written to the channel; stay connected while the node reads it. */
	uv_timer_start(&r->timer, on_deadline, r->wait_ms, 0);
}

static int cmd_append(struct rogue *r, const char *addr, uint64_t term, unsigned timeout_ms)
{
	struct raft_message m;
	memset(&m, 0, sizeof m);
	m.type = RAFT_IO_APPEND_ENTRIES;
	m.server_id = 1; /* the destination's; the transport dials server_address */
	m.server_address = addr;
	m.append_entries.term = term;
	r->send_req.data = r;
	uv_timer_start(&r->timer, on_deadline, timeout_ms, 0);
	struct raftio_transport *io = transport_raftio(r->t);
	if (io->send(io, &r->send_req, &m, on_sent) != 0) {
		rogue_close(r);
		rogue_run(r);
		die("cannot send");
	}
	if (rogue_run(r) != 0)
		die("the loop did not close");
	printf("sent=%d\n", r->sent ? 1 : 0);
	return r->sent ? 0 : 1;
}

static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: rogue [--key-term N] [--as ADDRESS] [--proxied] [--timeout MS]\n"
		"             rpc ADDR TYPE [ITEM...]\n"
		"       rogue [--key-term N] [--as ADDRESS] [--timeout MS] members ADDR\n"
		"       rogue [--key-term N] [--timeout MS] [--wait MS] append ADDR CLAIMED TERM\n"
		"(the cluster key on stdin; see the top of tests/integration/rogue.c)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *announce = NULL;
	bool proxied = false;
	unsigned timeout_ms = 5000, wait_ms = 300;
	uint32_t key_term = 1;
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--proxied") == 0)
			proxied = true;
		else if (i + 1 >= argc)
			usage();
		else if (strcmp(argv[i], "--as") == 0)
			announce = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0)
			timeout_ms = (unsigned)parse_u64(argv[++i], 600000);
		else if (strcmp(argv[i], "--wait") == 0)
			wait_ms = (unsigned)parse_u64(argv[++i], 600000);
		else if (strcmp(argv[i], "--key-term") == 0)
			key_term = (uint32_t)parse_u64(argv[++i], UINT32_MAX);
		else
			usage();
	}
	if (i >= argc || key_term == 0)
		usage();
	const char *cmd = argv[i];
	int left = argc - i - 1;
	char **args = argv + i + 1;
	if (crypto_global_init(true) != 0)
		die("cannot initialise libsodium");
	log_set_ident("rogue");
	struct rogue r;
	memset(&r, 0, sizeof r);
	r.wait_ms = wait_ms;
	r.key_term = key_term;
	if (strcmp(cmd, "rpc") == 0 && left >= 2) {
		uint16_t type = parse_type(args[1]);
		if (proxied)
			type = (uint16_t)(type | NODE_RPC_PROXIED);
		rogue_open(&r, announce);
		return cmd_rpc(&r, args[0], type, left - 2, args + 2, timeout_ms);
	}
	if (strcmp(cmd, "members") == 0 && left == 1) {
		rogue_open(&r, announce);
		return cmd_members(&r, args[0], timeout_ms);
	}
	if (strcmp(cmd, "append") == 0 && left == 3 && announce == NULL) {
		uint64_t term = parse_u64(args[2], UINT64_MAX);
		rogue_open(&r, args[1]);
		return cmd_append(&r, args[0], term, timeout_ms);
	}
	usage();
}
