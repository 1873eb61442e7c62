/* The protocol on one connection (transport_internal.h; the wire format is
 * described at the top of transport.c): sealing messages into frames and
 * fragments, the handshake steps of both ends, answering join-info
 * requests, what a frame may carry before its bytes are kept, and
 * reassembling and delivering what arrives. */
#include "raft/transport_internal.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/secmem.h"
#include "lib/log.h"
#include "raft/msgcodec.h"
#include "raft/raftaddr.h"

/* ------------------------------------------------------------------------ */
/* Sending */

int transport_wire_send(struct conn *c, const uint8_t *pt, size_t len, struct raft_io_send *req,
			raft_io_send_cb cb)
{
	struct buf wire, piece;
	int rv = 0;
	buf_init(&wire);
	buf_init(&piece);
	const uint8_t *body = pt + 1;
	size_t left = len - 1;
	/* Leading fragments carry CHANNEL_MAX_FRAME - 1 body bytes each. */
	while (left + 1 > CHANNEL_MAX_FRAME && rv == 0) {
		size_t n = CHANNEL_MAX_FRAME - 1;
		buf_clear(&piece);
		buf_put_u8(&piece, K_FRAGMENT);
		buf_put_raw(&piece, body, n);
		rv = piece.err != 0 ? piece.err : channel_seal(c->ch, piece.data, piece.len, &wire);
		body += n;
		left -= n;
	}
	if (rv == 0 && body != pt + 1) {
		buf_clear(&piece);
		buf_put_u8(&piece, pt[0]);
		buf_put_raw(&piece, body, left);
		rv = piece.err != 0 ? piece.err : channel_seal(c->ch, piece.data, piece.len, &wire);
	} else if (rv == 0) {
		rv = channel_seal(c->ch, pt, len, &wire);
	}
	buf_free(&piece);
	if (rv == 0 && wire.err != 0)
		rv = wire.err;
	if (rv != 0) {
		buf_free(&wire);
		return rv;
	}
	size_t wlen;
	uint8_t *data = buf_steal(&wire, &wlen);
	transport_conn_write(c, data, wlen, req, cb, false);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Inbound dispatch */

/* Attributes what arrives on inbound C now to the member proving the
 * channel's identity at this moment (peer_id 0: none). A member removed
 * since its last message loses the connection: -EPERM. */
static int conn_identify(struct conn *c, const char **ret_address)
{
	struct transport *t = c->t;
	const uint8_t *key = channel_peer_id(c->ch);
	uint64_t id = 0;
	const char *address = NULL;
	if (t->identify == NULL || key == NULL || t->identify(t->ctx, key, &id, &address) != 0 ||
	    address == NULL)
		id = 0;
	if (id == 0 && c->was_member)
		return -EPERM;
	c->peer_id = id;
	c->was_member = id != 0;
	*ret_address = id != 0 ? address : NULL;
	return 0;
}

/* Once per connection: a removed node keeps sending. */
static void log_not_member(struct conn *c, const char *what)
{
	char note[96], who[INET6_ADDRSTRLEN + 8], hex[17];
	if (c->told_not_member || !transport_log_allowed(c->t, &c->t->drop_log, note, sizeof note))
		return;
	c->told_not_member = true;
	const uint8_t *key = channel_peer_id(c->ch);
	for (unsigned i = 0; i < 8 && key != NULL; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	transport_conn_peer_ip(c, who, sizeof who);
	log_warn("cluster transport: %s from %s, whose identity %s... is not a member: dropped%s",
		 what, who, key != NULL ? hex : "?", note);
}

static int deliver_raft(struct conn *c, const uint8_t *body, size_t len)
{
	struct transport *t = c->t;
	const char *address;
	int rv = conn_identify(c, &address);
	if (rv != 0)
		return rv;
	struct raft_message m;
	rv = msgcodec_decode(body, len, &m);
	if (rv != 0)
		return rv;
	if (c->peer_id == 0)
		log_not_member(c, "a Raft message");
	/* libraft asserts a non-zero sender id; only a started peer has one. */
	if (t->recv == NULL || c->peer_id == 0) {
		msgcodec_release(&m);
		return 0;
	}
	m.server_id = c->peer_id;
	m.server_address = address; /* libraft copies what it keeps */
	t->recv(&t->io, &m, t->recv_arg);
	return 0;
}

/* Whether the term C's handshake agreed on is older than this node's newest
 * at this moment: a rotation applies on each node at its own time, so it is
 * asked per request rather than remembered. With no key at all (sealed
 * meanwhile) nothing vouches for the peer's keyring: stale too. */
static bool conn_stale_key(const struct conn *c)
{
	struct transport *t = c->t;
	uint32_t newest = 0;
	int rv = t->cluster_key(t->ctx, &newest, t->key_scratch);
	secmem_wipe(t->key_scratch, CHANNEL_KEY_LEN);
	return rv != 0 || channel_term(c->ch) < newest;
}

static int deliver_rpc_req(struct conn *c, const uint8_t *body, size_t len)
{
	struct transport *t = c->t;
	const char *address;
	int rv = conn_identify(c, &address);
	if (rv != 0)
		return rv;
	struct cursor cur;
	cursor_init(&cur, body, len);
	uint64_t id = cursor_u64(&cur);
	uint16_t type = cursor_u16(&cur);
	if (cur.err != 0 || cur.left > TRANSPORT_MAX_RPC)
		return -EBADMSG;
	struct in_req *in = malloc(sizeof *in + cur.left);
	if (in == NULL)
		return -ENOMEM;
	memcpy(in->payload, cur.p, cur.left);
	in->pub.type = type;
	in->pub.peer_id = c->peer_id;
	memcpy(in->pub.peer_key, channel_peer_id(c->ch), CHANNEL_ID_LEN);
	in->pub.stale_key = conn_stale_key(c);
	in->pub.version = (uint8_t)(id >> TRANSPORT_RPC_VERSION_SHIFT);
	in->pub.payload = in->payload;
	in->pub.len = cur.left;
	in->pub.priv = in;
	in->conn = c;
	in->id = id;
	c->refs++;
	if (t->rpc_handler == NULL)
		transport_rpc_reply(&in->pub, -ENOSYS, NULL, 0);
	else
		t->rpc_handler(t->ctx, &in->pub);
	return 0;
}

static int deliver_rpc_resp(struct conn *c, const uint8_t *body, size_t len)
{
	struct cursor cur;
	cursor_init(&cur, body, len);
	uint64_t id = cursor_u64(&cur);
	int32_t status = cursor_i32(&cur);
	if (cur.err != 0 || cur.left > TRANSPORT_MAX_RPC || status > 0)
		return -EBADMSG;
	for (struct rpc *r = c->t->rpcs; r != NULL; r = r->next) {
		if (r->id == id) {
			/* A late answer to an RPC that already failed is
			 * dropped with it. */
			if (r->peer == c->peer && r->fail_status == 0)
				transport_rpc_finish(r, status, cur.p, cur.left);
			break;
		}
	}
	return 0;
}

static int deliver_address(struct conn *c, const uint8_t *body, size_t len)
{
	if (len > MAX_ADDRESS || memchr(body, '\0', len) != NULL)
		return -EBADMSG;
	c->peer_address = malloc(len + 1);
	if (c->peer_address == NULL)
		return -ENOMEM;
	memcpy(c->peer_address, body, len);
	c->peer_address[len] = '\0';
	c->state = C_READY;
	uv_timer_stop(&c->timer);
	return 0;
}

static int dispatch(struct conn *c, uint8_t kind, const uint8_t *body, size_t len)
{
	if (c->state == C_IN_ADDRESS)
		return kind == K_ADDRESS ? deliver_address(c, body, len) : -EBADMSG;
	if (c->inbound && kind == K_RAFT)
		return deliver_raft(c, body, len);
	if (c->inbound && kind == K_RPC_REQ)
		return deliver_rpc_req(c, body, len);
	if (!c->inbound && kind == K_RPC_RESP)
		return deliver_rpc_resp(c, body, len);
	return -EBADMSG;
}

/* One opened frame: reassembles fragments, then dispatches. */
static int on_plaintext(struct conn *c, const uint8_t *pt, size_t len)
{
	if (len == 0)
		return -EBADMSG;
	uint8_t kind = pt[0];
	if (kind == K_FRAGMENT) {
		if (c->state != C_READY || c->frag.len + len - 1 > MAX_MESSAGE)
			return -EBADMSG;
		buf_put_raw(&c->frag, pt + 1, len - 1);
		return c->frag.err;
	}
	if (c->frag.len == 0)
		return dispatch(c, kind, pt + 1, len - 1);
	if (c->frag.len + len - 1 > MAX_MESSAGE)
		return -EBADMSG;
	buf_put_raw(&c->frag, pt + 1, len - 1);
	if (c->frag.err != 0)
		return c->frag.err;
	struct buf whole = c->frag;
	buf_init(&c->frag);
	int rv = dispatch(c, kind, whole.data, whole.len);
	buf_free(&whole);
	return rv;
}

/* ------------------------------------------------------------------------ */
/* Join-info answers */

/* Writes the join-info answer (status RV, then PAYLOAD if RV is 0) and
 * closes C once it is written; WHAT says how it went, for the log. */
static void join_write(struct conn *c, int rv, const struct buf *payload, const char *what)
{
	struct transport *t = c->t;
	struct buf wire;
	buf_init(&wire);
	buf_put_u32(&wire, (uint32_t)-rv);
	buf_put_u32(&wire, rv == 0 ? (uint32_t)payload->len : 0);
	if (rv == 0)
		buf_put_raw(&wire, payload->data, payload->len);
	if (wire.err != 0) {
		buf_free(&wire);
		transport_conn_close(c, "out of memory");
		return;
	}
	char who[INET6_ADDRSTRLEN + 8], note[96];
	/* Anyone may ask, and gets only what is sealed under the root key; the
	 * line is there for an audit trail of who fetched it. */
	if (transport_log_allowed(t, &t->join_log, note, sizeof note)) {
		transport_conn_peer_ip(c, who, sizeof who);
		log_info("cluster transport: join-info request from %s: %s%s", who, what, note);
	}
	size_t wlen;
	uint8_t *data = buf_steal(&wire, &wlen);
	transport_conn_write(c, data, wlen, NULL, NULL, true);
}

static void join_answer(struct conn *c, unsigned version)
{
	struct transport *t = c->t;
	struct buf payload;
	buf_init(&payload);
	int rv = t->join_provider != NULL ? t->join_provider(t->ctx, version, &payload) : -ENOSYS;
	if (rv == 0 && payload.err != 0)
		rv = -ENOMEM;
	if (rv == 0 && payload.len > TRANSPORT_MAX_RPC)
		rv = -EMSGSIZE;
	if (rv > 0)
		rv = -EPROTO; /* a provider bug, not an errno to forward */
	join_write(c, rv, &payload, rv == 0 ? "answered" : strerror(-rv));
	buf_free(&payload);
}

/* Why the join-info request on C is refused (NULL: it is not). */
static const char *join_refusal(struct conn *c)
{
	if (c->t->n_join >= MAX_JOIN)
		return "refused: too many at once";
	if (transport_source_count(c->t, &c->src, true, NULL) >= MAX_JOIN_PER_SOURCE)
		return "refused: too many at once from its address";
	return NULL;
}

/* A join-info request ("VFSJ") leaves the handshake budget for its own, so
 * that a flood of either cannot take the other's places: its answer being
 * written never holds a handshake's place, and handshakes never evict an
 * answer half written. An answer is written as soon as the kernel takes it
 * (a sealed keyring is a few KiB), and the handshake deadline still closes
 * the connection, so a place is held long only by a requester that does
 * not read; past the caps, requests are refused with EAGAIN (the joiner
 * tries again) rather than cutting an answer under way. */
static void join_request(struct conn *c, unsigned version)
{
	struct transport *t = c->t;
	assert(c->unauth && t->n_unauth > 0);
	c->unauth = false;
	t->n_unauth--;
	c->state = C_JOIN;
	const char *why = join_refusal(c);
	if (why != NULL) {
		join_write(c, -EAGAIN, NULL, why);
		return;
	}
	c->joining = true;
	t->n_join++;
	join_answer(c, version < TRANSPORT_JOIN_VERSION ? version : TRANSPORT_JOIN_VERSION);
}

/* ------------------------------------------------------------------------ */
/* Handshake steps */

static int step_in_hello(struct conn *c, const uint8_t *p)
{
	struct buf out;
	buf_init(&out);
	struct transport *t = c->t;
	if (c->ch == NULL && channel_new(&c->ch, t->identity, t->cluster_key, t->ctx) != 0)
		return -ENOMEM;
	int rv = channel_on_hello(c->ch, p, CHANNEL_HELLO_LEN, &out);
	if (rv != 0) {
		buf_free(&out);
		return rv;
	}
	c->state = C_IN_AUTH;
	transport_conn_write_buf(c, &out);
	return 0;
}

static int step_in_auth(struct conn *c, const uint8_t *p)
{
	int rv = channel_on_auth(c->ch, p, CHANNEL_AUTH_LEN);
	if (rv != 0)
		return rv;
	assert(c->unauth && c->t->n_unauth > 0);
	c->unauth = false;
	c->t->n_unauth--;
	c->state = C_IN_ADDRESS;
	return 0;
}

/* A dial address that names an identity is answered only by its holder:
 * anyone else on that host:port (another node after an address moved, a
 * redirected connection) is not the member meant. */
static bool peer_proves_address(const struct conn *c)
{
	struct raftaddr a;
	if (c->peer == NULL || raftaddr_parse(c->peer->address, &a) != 0)
		return false;
	return !a.has_id || memcmp(a.id, channel_peer_id(c->ch), CHANNEL_ID_LEN) == 0;
}

static int step_out_reply(struct conn *c, const uint8_t *p)
{
	struct transport *t = c->t;
	struct buf out;
	buf_init(&out);
	int rv = channel_on_reply(c->ch, p, CHANNEL_REPLY_LEN, &out);
	if (rv == 0 && !peer_proves_address(c))
		rv = -EKEYREJECTED;
	if (rv != 0) {
		buf_free(&out);
		return rv;
	}
	/* The address frame goes in the same write as AUTH. */
	struct buf addr;
	buf_init(&addr);
	buf_put_u8(&addr, K_ADDRESS);
	if (t->address != NULL)
		buf_put_raw(&addr, t->address, strlen(t->address));
	rv = addr.err != 0 ? addr.err : channel_seal(c->ch, addr.data, addr.len, &out);
	buf_free(&addr);
	if (rv != 0) {
		buf_free(&out);
		return rv;
	}
	c->state = C_READY;
	uv_timer_stop(&c->timer);
	transport_conn_write_buf(c, &out);
	if (!c->closing && c->peer != NULL)
		transport_peer_ready(c->peer);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Frames */

/* The largest message (kind byte and body, all its fragments together) C
 * may carry now, in *RET_MAX: a member may send whole snapshots, anyone
 * else only what the node serves a non-member. Who sends is asked at each
 * frame, as membership may change in the middle of a message. Returns 0,
 * or -EPERM for a member removed since its last message. */
static int conn_message_max(struct conn *c, size_t *ret_max)
{
	const char *address;
	if (!c->inbound) {
		*ret_max = RPC_RESP_MAX; /* a responder only answers our RPCs */
		return 0;
	}
	if (c->state == C_IN_ADDRESS) {
		*ret_max = 1u + MAX_ADDRESS;
		return 0;
	}
	int rv = conn_identify(c, &address);
	if (rv != 0)
		return rv;
	*ret_max = c->peer_id != 0 ? MAX_MESSAGE : NONMEMBER_MESSAGE_MAX;
	return 0;
}

int transport_wire_frame_admit(struct conn *c, uint32_t n)
{
	assert(n > CHANNEL_TAG_LEN); /* step_frame refuses shorter frames */
	size_t max;
	int rv = conn_message_max(c, &max);
	if (rv != 0)
		return rv;
	return c->frag.len + (n - CHANNEL_TAG_LEN) > max ? -EFBIG : 0;
}

/* Frame: u32 ciphertext length, then the ciphertext. Returns the bytes
 * consumed, 0 if incomplete, or -errno. */
static long step_frame(struct conn *c, const uint8_t *p, size_t avail)
{
	if (avail < FRAME_HEADER_LEN)
		return 0;
	uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		     (uint32_t)p[3] << 24;
	if (n < CHANNEL_TAG_LEN + 1 || n > CHANNEL_MAX_FRAME + CHANNEL_TAG_LEN)
		return -EMSGSIZE;
	if (!c->frame_admitted) { /* once per frame, however many reads it takes */
		int rv = transport_wire_frame_admit(c, n);
		if (rv != 0)
			return rv;
		c->frame_admitted = true;
	}
	if (avail - FRAME_HEADER_LEN < n)
		return 0;
	c->frame_admitted = false;
	struct buf pt;
	buf_init(&pt);
	int rv = channel_open(c->ch, p + FRAME_HEADER_LEN, n, &pt);
	if (rv == 0)
		rv = on_plaintext(c, pt.data, pt.len);
	buf_free(&pt);
	return rv != 0 ? rv : (long)(FRAME_HEADER_LEN + n);
}

/* ------------------------------------------------------------------------ */
/* Reading */

/* Consumes what it can from P. Returns the bytes consumed (0 with a state
 * change counts as progress: *progress is set), or -errno. */
static long conn_step(struct conn *c, const uint8_t *p, size_t avail, bool *progress)
{
	int rv;
	switch (c->state) {
	case C_IN_MAGIC:
		if (avail < 4)
			return 0;
		if (memcmp(p, TRANSPORT_JOIN_MAGIC, 4) == 0) {
			/* The version comes in the magic's write; without it
			 * (a previous release, or a split write) the answer is
			 * version 0, which every requester reads. */
			join_request(c, avail > 4 ? p[4] : 0);
			return (long)avail;
		}
		if (memcmp(p, CHANNEL_MAGIC, 4) != 0)
			return -EPROTO;
		c->state = C_IN_HELLO;
		*progress = true;
		return 0;
	case C_IN_HELLO:
		if (avail < CHANNEL_HELLO_LEN)
			return 0;
		rv = step_in_hello(c, p);
		return rv != 0 ? rv : (long)CHANNEL_HELLO_LEN;
	case C_IN_AUTH:
		if (avail < CHANNEL_AUTH_LEN)
			return 0;
		rv = step_in_auth(c, p);
		return rv != 0 ? rv : (long)CHANNEL_AUTH_LEN;
	case C_OUT_REPLY:
		if (avail < CHANNEL_REPLY_LEN)
			return 0;
		rv = step_out_reply(c, p);
		return rv != 0 ? rv : (long)CHANNEL_REPLY_LEN;
	case C_IN_ADDRESS:
	case C_READY:
		return step_frame(c, p, avail);
	default:
		return (long)avail; /* nothing expected: ignore */
	}
}

const char *transport_wire_step_error(long rv)
{
	switch (rv) {
	case -EBADMSG:
		return "handshake or frame rejected (wrong cluster key or malformed data)";
	case -EMSGSIZE:
		return "frame length out of range";
	case -EFBIG:
		return "message larger than the peer may send (64 KiB for an identity that is no "
		       "member)";
	case -ELOOP:
		return "the peer presented this node's own identity (a connection redirected back "
		       "to this node?)";
	case -EKEYREJECTED:
		return "the peer proved another identity than that of the member dialled";
	case -EPERM:
		return "the peer is no longer a member";
	case -EPROTO:
		return "not a vaultfs cluster connection";
	case -ENOKEY:
		return "this node has no cluster key for the handshake (sealed)";
	default:
		return strerror((int)-rv);
	}
}

static void conn_process(struct conn *c)
{
	size_t pos = 0;
	while (!c->closing && pos < c->rx.len) {
		bool progress = false;
		long n = conn_step(c, c->rx.data + pos, c->rx.len - pos, &progress);
		if (n < 0) {
			transport_conn_close(c, transport_wire_step_error(n));
			return;
		}
		if (n == 0 && !progress)
			break;
		pos += (size_t)n;
	}
	if (c->closing || pos == 0)
		return;
	/* Keep only the incomplete tail. */
	memmove(c->rx.data, c->rx.data + pos, c->rx.len - pos);
	c->rx.len -= pos;
}

void transport_wire_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	b->base = malloc(suggested);
	b->len = b->base != NULL ? suggested : 0;
}

void transport_wire_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = s->data;
	if (nread > 0 && !c->closing) {
		buf_put_raw(&c->rx, b->base, (size_t)nread);
		if (c->rx.err != 0)
			transport_conn_close(c, "out of memory");
		else
			conn_process(c);
	} else if (nread == UV_EOF) {
		/* A node closing its outbound side is routine; the initiator
		 * logs lost connections itself. Half a frame is not. */
		const char *why = "closed by peer";
		if (c->inbound && c->state == C_READY)
			why = c->rx.len > 0 ? "closed in the middle of a frame" : NULL;
		transport_conn_close(c, why);
	} else if (nread < 0) {
		transport_conn_close(c, uv_strerror((int)nread));
	}
	free(b->base);
}

