/* Wire encoding of struct raft_message.
 *
 * Layout (little endian), version 1:
 *   u8 version, u8 type, then the type's body:
 *   REQUEST_VOTE         u64 term, candidate_id, last_log_index, last_log_term,
 *                        u8 flags (bit 0 disrupt_leader, bit 1 pre_vote)
 *   REQUEST_VOTE_RESULT  u64 term, u8 vote_granted (0/1), u8 pre_vote (tribool)
 *   APPEND_ENTRIES       u64 term, prev_log_index, prev_log_term, leader_commit,
 *                        u32 n, n x (u64 term, u16 type, u32 len), then the n
 *                        payloads back to back
 *   APPEND_ENTRIES_RESULT u64 term, rejected, last_log_index
 *   INSTALL_SNAPSHOT     u64 term, last_index, last_term, conf_index,
 *                        u32 n, n x (u64 id, u16 addr_len, addr, u8 role),
 *                        u64 data_len, data
 *   TIMEOUT_NOW          u64 term, last_log_index, last_log_term
 *
 * server_id and server_address are not encoded: the receiver takes them from
 * the authenticated connection, never from what the peer claims. Entry
 * headers come before the payloads so that the decoder can size the single
 * batch allocation before copying anything. */
#include "raft/msgcodec.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define MSGCODEC_VERSION 1u
#define MSGCODEC_MAX_ADDRESS 300u
#define ENTRY_HEADER_LEN (8u + 2u + 4u)
#define SERVER_MIN_LEN (8u + 2u + 1u)
/* Entry payloads start 8-byte aligned inside the batch, like libraft's own
 * decoder does, so that an FSM may read them in place. */
#define BATCH_ALIGN 8u

/* ------------------------------------------------------------------------ */
/* Encoding */

static void encode_request_vote(const struct raft_request_vote *p, struct buf *out)
{
	buf_put_u64(out, p->term);
	buf_put_u64(out, p->candidate_id);
	buf_put_u64(out, p->last_log_index);
	buf_put_u64(out, p->last_log_term);
	buf_put_u8(out, (uint8_t)((p->disrupt_leader ? 1u : 0u) | (p->pre_vote ? 2u : 0u)));
}

static void encode_request_vote_result(const struct raft_request_vote_result *p, struct buf *out)
{
	buf_put_u64(out, p->term);
	buf_put_u8(out, p->vote_granted ? 1 : 0);
	buf_put_u8(out, (uint8_t)p->pre_vote);
}

static int encode_append_entries(const struct raft_append_entries *p, struct buf *out)
{
	buf_put_u64(out, p->term);
	buf_put_u64(out, p->prev_log_index);
	buf_put_u64(out, p->prev_log_term);
	buf_put_u64(out, p->leader_commit);
	buf_put_u32(out, p->n_entries);
	for (unsigned i = 0; i < p->n_entries; i++) {
		const struct raft_entry *e = &p->entries[i];
		if (e->buf.len > UINT32_MAX)
			return -EINVAL;
		buf_put_u64(out, e->term);
		buf_put_u16(out, e->type);
		buf_put_u32(out, (uint32_t)e->buf.len);
	}
	for (unsigned i = 0; i < p->n_entries; i++)
		buf_put_raw(out, p->entries[i].buf.base, p->entries[i].buf.len);
	return 0;
}

static void encode_append_entries_result(const struct raft_append_entries_result *p,
					 struct buf *out)
{
	buf_put_u64(out, p->term);
	buf_put_u64(out, p->rejected);
	buf_put_u64(out, p->last_log_index);
}

static int encode_install_snapshot(const struct raft_install_snapshot *p, struct buf *out)
{
	buf_put_u64(out, p->term);
	buf_put_u64(out, p->last_index);
	buf_put_u64(out, p->last_term);
	buf_put_u64(out, p->conf_index);
	buf_put_u32(out, p->conf.n);
	for (unsigned i = 0; i < p->conf.n; i++) {
		const struct raft_server *s = &p->conf.servers[i];
		size_t alen = s->address != NULL ? strlen(s->address) : 0;
		if (alen > MSGCODEC_MAX_ADDRESS || s->role < 0 || s->role > 255)
			return -EINVAL;
		buf_put_u64(out, s->id);
		buf_put_u16(out, (uint16_t)alen);
		buf_put_raw(out, s->address, alen);
		buf_put_u8(out, (uint8_t)s->role);
	}
	buf_put_u64(out, p->data.len);
	buf_put_raw(out, p->data.base, p->data.len);
	return 0;
}

static void encode_timeout_now(const struct raft_timeout_now *p, struct buf *out)
{
	buf_put_u64(out, p->term);
	buf_put_u64(out, p->last_log_index);
	buf_put_u64(out, p->last_log_term);
}

int msgcodec_encode(const struct raft_message *m, struct buf *out)
{
	size_t start = out->len;
	int rv = 0;

	if (m->type < RAFT_IO_APPEND_ENTRIES || m->type > RAFT_IO_TIMEOUT_NOW)
		return -EINVAL;
	buf_put_u8(out, MSGCODEC_VERSION);
	buf_put_u8(out, (uint8_t)m->type);
	switch (m->type) {
	case RAFT_IO_REQUEST_VOTE:
		encode_request_vote(&m->request_vote, out);
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		encode_request_vote_result(&m->request_vote_result, out);
		break;
	case RAFT_IO_APPEND_ENTRIES:
		rv = encode_append_entries(&m->append_entries, out);
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		encode_append_entries_result(&m->append_entries_result, out);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		rv = encode_install_snapshot(&m->install_snapshot, out);
		break;
	default:
		encode_timeout_now(&m->timeout_now, out);
		break;
	}
	if (rv == 0 && out->err != 0)
		rv = -ENOMEM;
	if (rv != 0 && out->err == 0 && out->len > start) {
		/* Leave OUT as it was, so a caller can keep using it. */
		memset(out->data + start, 0, out->len - start);
		out->len = start;
	}
	return rv;
}

/* ------------------------------------------------------------------------ */
/* Decoding */

static bool get_bool(struct cursor *c, uint8_t v)
{
	if (v > 1)
		c->err = -EBADMSG;
	return v == 1;
}

static void decode_request_vote(struct cursor *c, struct raft_request_vote *p)
{
	p->term = cursor_u64(c);
	p->candidate_id = cursor_u64(c);
	p->last_log_index = cursor_u64(c);
	p->last_log_term = cursor_u64(c);
	uint8_t flags = cursor_u8(c);
	if ((flags & ~3u) != 0)
		c->err = -EBADMSG;
	p->disrupt_leader = (flags & 1u) != 0;
	p->pre_vote = (flags & 2u) != 0;
}

static void decode_request_vote_result(struct cursor *c, struct raft_request_vote_result *p)
{
	p->term = cursor_u64(c);
	p->vote_granted = get_bool(c, cursor_u8(c));
	uint8_t tri = cursor_u8(c);
	switch (tri) {
	case raft_tribool_unknown:
		p->pre_vote = raft_tribool_unknown;
		break;
	case raft_tribool_true:
		p->pre_vote = raft_tribool_true;
		break;
	case raft_tribool_false:
		p->pre_vote = raft_tribool_false;
		break;
	default:
		c->err = -EBADMSG;
		p->pre_vote = raft_tribool_unknown;
		break;
	}
}

static bool entry_type_valid(uint16_t type)
{
	return type == RAFT_COMMAND || type == RAFT_BARRIER || type == RAFT_CHANGE;
}

static size_t align_up(size_t n)
{
	return (n + BATCH_ALIGN - 1) & ~(size_t)(BATCH_ALIGN - 1);
}

/* Reads the N entry headers into ENTRIES (lengths go to buf.len) and returns
 * the size the batch needs, or sets c->err. */
static size_t decode_entry_headers(struct cursor *c, struct raft_entry *entries, unsigned n)
{
	size_t payload = 0, batch = 0;
	for (unsigned i = 0; i < n && c->err == 0; i++) {
		entries[i].term = cursor_u64(c);
		uint16_t type = cursor_u16(c);
		entries[i].type = type;
		entries[i].buf.len = cursor_u32(c);
		if (c->err == 0 && !entry_type_valid(type))
			c->err = -EBADMSG;
		/* Each length is at most 4 GiB and checked against what is left
		 * before the next is added, so neither sum can overflow. */
		payload += entries[i].buf.len;
		if (c->err == 0 && payload > c->left)
			c->err = -EBADMSG;
		batch = align_up(batch) + entries[i].buf.len;
	}
	if (c->err == 0 && payload != c->left)
		c->err = -EBADMSG; /* trailing bytes after the last payload */
	return batch;
}

static int decode_append_entries(struct cursor *c, struct raft_append_entries *p)
{
	p->term = cursor_u64(c);
	p->prev_log_index = cursor_u64(c);
	p->prev_log_term = cursor_u64(c);
	p->leader_commit = cursor_u64(c);
	uint32_t n = cursor_u32(c);
	p->entries = NULL;
	p->n_entries = 0;
	if (c->err != 0)
		return -EBADMSG;
	if (n == 0)
		return 0; /* libraft expects entries == NULL for a heartbeat */
	if (n > c->left / ENTRY_HEADER_LEN)
		return -EBADMSG;

	struct raft_entry *entries = raft_calloc(n, sizeof *entries);
	if (entries == NULL)
		return -ENOMEM;
	size_t batch_len = decode_entry_headers(c, entries, n);
	if (c->err != 0) {
		raft_free(entries);
		return -EBADMSG;
	}
	/* One allocation even when every payload is empty: libraft frees
	 * entries[0].batch and expects it set. */
	uint8_t *batch = raft_malloc(batch_len > 0 ? batch_len : 1);
	if (batch == NULL) {
		raft_free(entries);
		return -ENOMEM;
	}
	size_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		off = align_up(off);
		const uint8_t *src = cursor_raw(c, entries[i].buf.len);
		if (entries[i].buf.len > 0)
			memcpy(batch + off, src, entries[i].buf.len);
		entries[i].buf.base = batch + off;
		entries[i].batch = batch;
		off += entries[i].buf.len;
	}
	p->entries = entries;
	p->n_entries = n;
	return 0;
}

static void decode_append_entries_result(struct cursor *c, struct raft_append_entries_result *p)
{
	p->term = cursor_u64(c);
	p->rejected = cursor_u64(c);
	p->last_log_index = cursor_u64(c);
}

static bool role_valid(uint8_t role)
{
	return role == RAFT_VOTER || role == RAFT_STANDBY || role == RAFT_SPARE;
}

static int decode_server(struct cursor *c, struct raft_configuration *conf)
{
	char address[MSGCODEC_MAX_ADDRESS + 1];
	raft_id id = cursor_u64(c);
	uint16_t alen = cursor_u16(c);
	if (c->err != 0 || alen > MSGCODEC_MAX_ADDRESS)
		return -EBADMSG;
	const uint8_t *a = cursor_raw(c, alen);
	uint8_t role = cursor_u8(c);
	if (c->err != 0 || id == 0 || !role_valid(role) || memchr(a, '\0', alen) != NULL)
		return -EBADMSG;
	memcpy(address, a, alen);
	address[alen] = '\0';
	int rv = raft_configuration_add(conf, id, address, role);
	if (rv == RAFT_NOMEM)
		return -ENOMEM;
	return rv == 0 ? 0 : -EBADMSG; /* duplicate id or address */
}

static int decode_install_snapshot(struct cursor *c, struct raft_install_snapshot *p)
{
	int rv;
	p->term = cursor_u64(c);
	p->last_index = cursor_u64(c);
	p->last_term = cursor_u64(c);
	p->conf_index = cursor_u64(c);
	raft_configuration_init(&p->conf);
	p->data.base = NULL;
	p->data.len = 0;
	uint32_t n = cursor_u32(c);
	if (c->err != 0 || n > c->left / SERVER_MIN_LEN)
		return -EBADMSG;
	for (uint32_t i = 0; i < n; i++) {
		rv = decode_server(c, &p->conf);
		if (rv != 0)
			goto err_after_conf;
	}
	uint64_t dlen = cursor_u64(c);
	if (c->err != 0 || dlen != c->left) {
		rv = -EBADMSG;
		goto err_after_conf;
	}
	/* Never NULL, even when empty, so that the FSM's restore always gets
	 * a buffer it owns. */
	p->data.base = raft_malloc(dlen > 0 ? (size_t)dlen : 1);
	if (p->data.base == NULL) {
		rv = -ENOMEM;
		goto err_after_conf;
	}
	p->data.len = (size_t)dlen;
	if (dlen > 0)
		memcpy(p->data.base, cursor_raw(c, (size_t)dlen), (size_t)dlen);
	return 0;

err_after_conf:
	raft_configuration_close(&p->conf);
	raft_configuration_init(&p->conf);
	return rv;
}

static void decode_timeout_now(struct cursor *c, struct raft_timeout_now *p)
{
	p->term = cursor_u64(c);
	p->last_log_index = cursor_u64(c);
	p->last_log_term = cursor_u64(c);
}

int msgcodec_decode(const uint8_t *data, size_t len, struct raft_message *m)
{
	struct cursor c;
	struct raft_message tmp;
	int rv = 0;

	memset(&tmp, 0, sizeof tmp);
	cursor_init(&c, data, len);
	uint8_t version = cursor_u8(&c);
	uint8_t type = cursor_u8(&c);
	if (c.err != 0 || version != MSGCODEC_VERSION)
		return -EBADMSG;
	tmp.type = type;
	switch (type) {
	case RAFT_IO_REQUEST_VOTE:
		decode_request_vote(&c, &tmp.request_vote);
		break;
	case RAFT_IO_REQUEST_VOTE_RESULT:
		decode_request_vote_result(&c, &tmp.request_vote_result);
		break;
	case RAFT_IO_APPEND_ENTRIES:
		rv = decode_append_entries(&c, &tmp.append_entries);
		break;
	case RAFT_IO_APPEND_ENTRIES_RESULT:
		decode_append_entries_result(&c, &tmp.append_entries_result);
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		rv = decode_install_snapshot(&c, &tmp.install_snapshot);
		break;
	case RAFT_IO_TIMEOUT_NOW:
		decode_timeout_now(&c, &tmp.timeout_now);
		break;
	default:
		return -EBADMSG;
	}
	if (rv != 0)
		return rv; /* the type's decoder freed what it allocated */
	if (cursor_done(&c) != 0) {
		/* Only the fixed-size types get here with an error, and they
		 * allocate nothing; the others check their own tail. */
		msgcodec_release(&tmp);
		return -EBADMSG;
	}
	tmp.server_id = 0;
	tmp.server_address = NULL;
	*m = tmp;
	return 0;
}

void msgcodec_release(struct raft_message *m)
{
	if (m == NULL)
		return;
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		if (m->append_entries.entries != NULL) {
			if (m->append_entries.n_entries > 0)
				raft_free(m->append_entries.entries[0].batch);
			raft_free(m->append_entries.entries);
		}
		m->append_entries.entries = NULL;
		m->append_entries.n_entries = 0;
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		raft_configuration_close(&m->install_snapshot.conf);
		raft_configuration_init(&m->install_snapshot.conf);
		raft_free(m->install_snapshot.data.base);
		m->install_snapshot.data.base = NULL;
		m->install_snapshot.data.len = 0;
		break;
	default:
		break;
	}
}
