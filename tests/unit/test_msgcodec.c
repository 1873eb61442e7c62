/* Unit tests for src/raft/msgcodec.c: round trips of every message type,
 * strict rejection of truncated, padded and absurd inputs, and the memory
 * layout libraft expects of a received message. Leaks are caught by ASan. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft/msgcodec.h"

/* Encodes M into a fresh buffer, failing the test on error. */
static void encode_ok(const struct raft_message *m, struct buf *out)
{
	buf_init(out);
	assert_int_equal(msgcodec_encode(m, out), 0);
	assert_int_equal(out->err, 0);
}

static void round_trip(const struct raft_message *in, struct raft_message *out)
{
	struct buf b;
	encode_ok(in, &b);
	memset(out, 0xa5, sizeof *out);
	assert_int_equal(msgcodec_decode(b.data, b.len, out), 0);
	assert_int_equal(out->type, in->type);
	assert_int_equal(out->server_id, 0);
	assert_null(out->server_address);
	buf_free(&b);
}

static void test_request_vote(void **state)
{
	(void)state;
	for (int flags = 0; flags < 4; flags++) {
		struct raft_message m = {.type = RAFT_IO_REQUEST_VOTE, .server_id = 9};
		m.request_vote.term = 0x1122334455667788ull;
		m.request_vote.candidate_id = 3;
		m.request_vote.last_log_index = 77;
		m.request_vote.last_log_term = 5;
		m.request_vote.disrupt_leader = (flags & 1) != 0;
		m.request_vote.pre_vote = (flags & 2) != 0;
		struct raft_message d;
		round_trip(&m, &d);
		assert_true(d.request_vote.term == m.request_vote.term);
		assert_int_equal(d.request_vote.candidate_id, 3);
		assert_int_equal(d.request_vote.last_log_index, 77);
		assert_int_equal(d.request_vote.last_log_term, 5);
		assert_int_equal(d.request_vote.disrupt_leader, m.request_vote.disrupt_leader);
		assert_int_equal(d.request_vote.pre_vote, m.request_vote.pre_vote);
		msgcodec_release(&d);
	}
}

static void test_request_vote_result(void **state)
{
	(void)state;
	const raft_tribool tri[] = {raft_tribool_unknown, raft_tribool_true, raft_tribool_false};
	for (int i = 0; i < 3; i++) {
		struct raft_message m = {.type = RAFT_IO_REQUEST_VOTE_RESULT};
		m.request_vote_result.term = 12;
		m.request_vote_result.vote_granted = i == 1;
		m.request_vote_result.pre_vote = tri[i];
		struct raft_message d;
		round_trip(&m, &d);
		assert_int_equal(d.request_vote_result.term, 12);
		assert_int_equal(d.request_vote_result.vote_granted, i == 1);
		assert_int_equal(d.request_vote_result.pre_vote, tri[i]);
	}
}

static void test_append_entries_result(void **state)
{
	(void)state;
	struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES_RESULT};
	m.append_entries_result.term = 4;
	m.append_entries_result.rejected = 99;
	m.append_entries_result.last_log_index = UINT64_MAX;
	struct raft_message d;
	round_trip(&m, &d);
	assert_int_equal(d.append_entries_result.term, 4);
	assert_int_equal(d.append_entries_result.rejected, 99);
	assert_true(d.append_entries_result.last_log_index == UINT64_MAX);
}

static void test_timeout_now(void **state)
{
	(void)state;
	struct raft_message m = {.type = RAFT_IO_TIMEOUT_NOW};
	m.timeout_now.term = 8;
	m.timeout_now.last_log_index = 800;
	m.timeout_now.last_log_term = 7;
	struct raft_message d;
	round_trip(&m, &d);
	assert_int_equal(d.timeout_now.term, 8);
	assert_int_equal(d.timeout_now.last_log_index, 800);
	assert_int_equal(d.timeout_now.last_log_term, 7);
}

/* N entries; entry i has length SIZES[i % nsizes] and bytes derived from i. */
static struct raft_entry *make_entries(unsigned n, const size_t *sizes, size_t nsizes)
{
	struct raft_entry *e = calloc(n > 0 ? n : 1, sizeof *e);
	assert_non_null(e);
	for (unsigned i = 0; i < n; i++) {
		e[i].term = 100 + i;
		e[i].type = (unsigned short)(RAFT_COMMAND + (int)(i % 3));
		e[i].buf.len = sizes[i % nsizes];
		e[i].buf.base = e[i].buf.len > 0 ? malloc(e[i].buf.len) : NULL;
		for (size_t j = 0; j < e[i].buf.len; j++)
			((uint8_t *)e[i].buf.base)[j] = (uint8_t)(i * 31 + j);
	}
	return e;
}

static void free_entries(struct raft_entry *e, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		free(e[i].buf.base);
	free(e);
}

static void check_append_entries(unsigned n, const size_t *sizes, size_t nsizes)
{
	struct raft_message m = {.type = RAFT_IO_APPEND_ENTRIES};
	m.append_entries.term = 3;
	m.append_entries.prev_log_index = 10;
	m.append_entries.prev_log_term = 2;
	m.append_entries.leader_commit = 9;
	m.append_entries.entries = make_entries(n, sizes, nsizes);
	m.append_entries.n_entries = n;

	struct raft_message d;
	round_trip(&m, &d);
	const struct raft_append_entries *a = &d.append_entries;
	assert_int_equal(a->term, 3);
	assert_int_equal(a->prev_log_index, 10);
	assert_int_equal(a->prev_log_term, 2);
	assert_int_equal(a->leader_commit, 9);
	assert_int_equal(a->n_entries, n);
	if (n == 0)
		assert_null(a->entries); /* libraft asserts this for heartbeats */
	for (unsigned i = 0; i < n; i++) {
		const struct raft_entry *x = &m.append_entries.entries[i], *y = &a->entries[i];
		assert_int_equal(y->term, x->term);
		assert_int_equal(y->type, x->type);
		assert_int_equal(y->buf.len, x->buf.len);
		if (x->buf.len > 0)
			assert_memory_equal(y->buf.base, x->buf.base, x->buf.len);
		/* Everything lives in the first entry's batch. */
		assert_ptr_equal(y->batch, a->entries[0].batch);
		assert_true((uint8_t *)y->buf.base >= (uint8_t *)y->batch);
		assert_int_equal(((uintptr_t)y->buf.base) % 8, 0);
	}
	msgcodec_release(&d);
	free_entries(m.append_entries.entries, n);
}

static void test_append_entries(void **state)
{
	(void)state;
	const size_t one[] = {5};
	const size_t empty[] = {0};
	const size_t mixed[] = {0, 1, 7, 8, 9, 4096, 65537, 3};
	check_append_entries(0, one, 1);
	check_append_entries(1, one, 1);
	check_append_entries(1, empty, 1);
	check_append_entries(3, empty, 1);
	check_append_entries(50, mixed, sizeof mixed / sizeof mixed[0]);
}

static void make_snapshot(struct raft_message *m, size_t data_len)
{
	memset(m, 0, sizeof *m);
	m->type = RAFT_IO_INSTALL_SNAPSHOT;
	struct raft_install_snapshot *s = &m->install_snapshot;
	s->term = 6;
	s->last_index = 1000;
	s->last_term = 5;
	s->conf_index = 900;
	raft_configuration_init(&s->conf);
	assert_int_equal(raft_configuration_add(&s->conf, 1, "node1@127.0.0.1:8201", RAFT_VOTER), 0);
	assert_int_equal(raft_configuration_add(&s->conf, 2, "node2@[::1]:8202", RAFT_STANDBY), 0);
	assert_int_equal(raft_configuration_add(&s->conf, 0xffffffffffull, "n3@h:1", RAFT_SPARE), 0);
	s->data.len = data_len;
	s->data.base = data_len > 0 ? malloc(data_len) : NULL;
	for (size_t i = 0; i < data_len; i++)
		((uint8_t *)s->data.base)[i] = (uint8_t)(i ^ 0x5a);
}

static void free_snapshot(struct raft_message *m)
{
	raft_configuration_close(&m->install_snapshot.conf);
	free(m->install_snapshot.data.base);
}

static void test_install_snapshot(void **state)
{
	(void)state;
	const size_t lens[] = {0, 1, 100000};
	for (size_t k = 0; k < 3; k++) {
		struct raft_message m, d;
		make_snapshot(&m, lens[k]);
		round_trip(&m, &d);
		const struct raft_install_snapshot *s = &d.install_snapshot;
		assert_int_equal(s->term, 6);
		assert_int_equal(s->last_index, 1000);
		assert_int_equal(s->last_term, 5);
		assert_int_equal(s->conf_index, 900);
		assert_int_equal(s->conf.n, 3);
		for (unsigned i = 0; i < 3; i++) {
			const struct raft_server *x = &m.install_snapshot.conf.servers[i];
			assert_true(s->conf.servers[i].id == x->id);
			assert_string_equal(s->conf.servers[i].address, x->address);
			assert_int_equal(s->conf.servers[i].role, x->role);
		}
		assert_int_equal(s->data.len, lens[k]);
		assert_non_null(s->data.base);
		if (lens[k] > 0)
			assert_memory_equal(s->data.base, m.install_snapshot.data.base, lens[k]);
		msgcodec_release(&d);
		free_snapshot(&m);
	}
}

static void test_encode_appends_and_rejects_bad_type(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_put_u32(&b, 0xdeadbeef);
	struct raft_message m = {.type = RAFT_IO_TIMEOUT_NOW};
	assert_int_equal(msgcodec_encode(&m, &b), 0);
	assert_int_equal(b.len, 4 + 2 + 24);
	m.type = 0;
	assert_int_equal(msgcodec_encode(&m, &b), -EINVAL);
	m.type = RAFT_IO_TIMEOUT_NOW + 1;
	assert_int_equal(msgcodec_encode(&m, &b), -EINVAL);
	assert_int_equal(b.len, 4 + 2 + 24);

	/* A role the wire cannot carry is refused and OUT is left as it was. */
	struct raft_message s;
	make_snapshot(&s, 3);
	s.install_snapshot.conf.servers[1].role = 300;
	assert_int_equal(msgcodec_encode(&s, &b), -EINVAL);
	assert_int_equal(b.len, 4 + 2 + 24);
	free_snapshot(&s);
	buf_free(&b);
}

/* Every proper prefix and the input plus one trailing byte are rejected,
 * leaving M untouched and nothing allocated (ASan checks the latter). */
static void check_strict(const struct raft_message *m)
{
	struct buf b;
	encode_ok(m, &b);
	for (size_t cut = 0; cut < b.len; cut++) {
		struct raft_message d;
		memset(&d, 0x5c, sizeof d);
		uint8_t *copy = malloc(cut > 0 ? cut : 1); /* exact size: ASan sees overreads */
		assert_non_null(copy);
		memcpy(copy, b.data, cut);
		assert_int_equal(msgcodec_decode(copy, cut, &d), -EBADMSG);
		assert_int_equal(d.type, 0x5c5c);
		free(copy);
	}
	buf_put_u8(&b, 0);
	struct raft_message d;
	assert_int_equal(msgcodec_decode(b.data, b.len, &d), -EBADMSG);
	buf_free(&b);
}

static void test_truncation_and_trailing(void **state)
{
	(void)state;
	struct raft_message m = {.type = RAFT_IO_REQUEST_VOTE};
	check_strict(&m);
	m.type = RAFT_IO_REQUEST_VOTE_RESULT;
	check_strict(&m);
	m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
	check_strict(&m);
	m.type = RAFT_IO_TIMEOUT_NOW;
	check_strict(&m);

	const size_t sizes[] = {0, 3, 17};
	for (unsigned n = 0; n < 4; n++) {
		struct raft_message a = {.type = RAFT_IO_APPEND_ENTRIES};
		a.append_entries.entries = make_entries(n, sizes, 3);
		a.append_entries.n_entries = n;
		check_strict(&a);
		free_entries(a.append_entries.entries, n);
	}
	const size_t lens[] = {0, 5};
	for (size_t k = 0; k < 2; k++) {
		struct raft_message s;
		make_snapshot(&s, lens[k]);
		check_strict(&s);
		free_snapshot(&s);
	}
}

/* Decoding a hand-built input must fail. */
static void expect_bad(const struct buf *b)
{
	struct raft_message d;
	assert_int_equal(b->err, 0);
	assert_int_equal(msgcodec_decode(b->data, b->len, &d), -EBADMSG);
}

static void test_bad_header(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	buf_put_u8(&b, 2); /* unknown version */
	buf_put_u8(&b, RAFT_IO_TIMEOUT_NOW);
	for (int i = 0; i < 3; i++)
		buf_put_u64(&b, 1);
	expect_bad(&b);
	const uint8_t bad_types[] = {0, 7, 255};
	for (size_t i = 0; i < sizeof bad_types; i++) {
		b.data[0] = 1;
		b.data[1] = bad_types[i];
		expect_bad(&b);
	}
	buf_free(&b);
}

static void test_bad_flag_values(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b);
	struct raft_message m = {.type = RAFT_IO_REQUEST_VOTE};
	encode_ok(&m, &b);
	b.data[b.len - 1] = 4; /* unknown flag bit */
	expect_bad(&b);
	buf_free(&b);

	m.type = RAFT_IO_REQUEST_VOTE_RESULT;
	encode_ok(&m, &b);
	b.data[b.len - 2] = 2; /* vote_granted not a bool */
	expect_bad(&b);
	b.data[b.len - 2] = 0;
	b.data[b.len - 1] = 3; /* tribool out of range */
	expect_bad(&b);
	buf_free(&b);
}

static void put_ae_header(struct buf *b, uint32_t n)
{
	buf_put_u8(b, 1);
	buf_put_u8(b, RAFT_IO_APPEND_ENTRIES);
	for (int i = 0; i < 4; i++)
		buf_put_u64(b, 1);
	buf_put_u32(b, n);
}

static void test_absurd_entries(void **state)
{
	(void)state;
	struct buf b;

	buf_init(&b);
	put_ae_header(&b, UINT32_MAX); /* count far beyond the input */
	expect_bad(&b);
	buf_free(&b);

	put_ae_header(&b, 1); /* length beyond the input */
	buf_put_u64(&b, 1);
	buf_put_u16(&b, RAFT_COMMAND);
	buf_put_u32(&b, UINT32_MAX);
	buf_put_raw(&b, "abc", 3);
	expect_bad(&b);
	buf_free(&b);

	put_ae_header(&b, 2); /* lengths that only together exceed the input */
	for (int i = 0; i < 2; i++) {
		buf_put_u64(&b, 1);
		buf_put_u16(&b, RAFT_COMMAND);
		buf_put_u32(&b, 4);
	}
	buf_put_raw(&b, "abcdef", 6);
	expect_bad(&b);
	buf_free(&b);

	put_ae_header(&b, 1); /* unknown entry type */
	buf_put_u64(&b, 1);
	buf_put_u16(&b, 9);
	buf_put_u32(&b, 0);
	expect_bad(&b);
	buf_free(&b);
}

struct server_spec {
	uint64_t id;
	const char *address;
	size_t alen; /* declared length */
	uint8_t role;
};

static void put_snapshot(struct buf *b, const struct server_spec *s, uint32_t n, uint32_t declared,
			 uint64_t dlen)
{
	buf_init(b);
	buf_put_u8(b, 1);
	buf_put_u8(b, RAFT_IO_INSTALL_SNAPSHOT);
	for (int i = 0; i < 4; i++)
		buf_put_u64(b, 1);
	buf_put_u32(b, declared);
	for (uint32_t i = 0; i < n; i++) {
		buf_put_u64(b, s[i].id);
		buf_put_u16(b, (uint16_t)s[i].alen);
		buf_put_raw(b, s[i].address, strlen(s[i].address));
		buf_put_u8(b, s[i].role);
	}
	buf_put_u64(b, dlen);
	buf_put_raw(b, "xy", 2);
}

static void test_bad_configurations(void **state)
{
	(void)state;
	static char longaddr[302];
	memset(longaddr, 'a', 301);
	const struct server_spec good = {1, "a:1", 3, RAFT_VOTER};
	const struct server_spec cases[][2] = {
		{good, {2, "b:1", 3, 3}},		 /* unknown role */
		{good, {0, "b:1", 3, RAFT_VOTER}},	 /* id 0 */
		{good, {1, "b:1", 3, RAFT_VOTER}},	 /* duplicate id */
		{good, {2, "a:1", 3, RAFT_VOTER}},	 /* duplicate address */
		{good, {2, "b\0:1", 4, RAFT_VOTER}},	 /* NUL inside address */
		{good, {2, longaddr, 301, RAFT_VOTER}}, /* address too long */
	};
	struct buf b;
	/* The baseline is accepted, so the failures below are for the reason
	 * the comments give. */
	const struct server_spec ok[2] = {good, {2, "b:1", 3, RAFT_SPARE}};
	put_snapshot(&b, ok, 2, 2, 2);
	struct raft_message d;
	assert_int_equal(msgcodec_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.install_snapshot.conf.n, 2);
	msgcodec_release(&d);
	buf_free(&b);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		put_snapshot(&b, cases[i], 2, 2, 2);
		if (i == 4) { /* the literal holds a NUL: write it byte-exact */
			buf_free(&b);
			buf_init(&b);
			buf_put_u8(&b, 1);
			buf_put_u8(&b, RAFT_IO_INSTALL_SNAPSHOT);
			for (int k = 0; k < 4; k++)
				buf_put_u64(&b, 1);
			buf_put_u32(&b, 1);
			buf_put_u64(&b, 2);
			buf_put_u16(&b, 4);
			buf_put_raw(&b, "b\0:1", 4);
			buf_put_u8(&b, RAFT_VOTER);
			buf_put_u64(&b, 2);
			buf_put_raw(&b, "xy", 2);
		}
		expect_bad(&b);
		buf_free(&b);
	}

	put_snapshot(&b, ok, 2, UINT32_MAX, 2); /* absurd server count */
	expect_bad(&b);
	buf_free(&b);
	put_snapshot(&b, ok, 2, 2, UINT64_MAX); /* absurd data length */
	expect_bad(&b);
	buf_free(&b);
	put_snapshot(&b, ok, 2, 2, 1); /* data length short of the input */
	expect_bad(&b);
	buf_free(&b);
}

/* A sequence of decodes and releases of the same buffer must not leak: the
 * release path is what a transport uses for messages it drops. */
static void test_release_is_complete(void **state)
{
	(void)state;
	const size_t sizes[] = {1, 1000};
	struct raft_message a = {.type = RAFT_IO_APPEND_ENTRIES};
	a.append_entries.entries = make_entries(10, sizes, 2);
	a.append_entries.n_entries = 10;
	struct buf b;
	encode_ok(&a, &b);
	for (int i = 0; i < 20; i++) {
		struct raft_message d;
		assert_int_equal(msgcodec_decode(b.data, b.len, &d), 0);
		msgcodec_release(&d);
		msgcodec_release(&d); /* idempotent */
	}
	buf_free(&b);
	free_entries(a.append_entries.entries, 10);
	msgcodec_release(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_vote),
		cmocka_unit_test(test_request_vote_result),
		cmocka_unit_test(test_append_entries_result),
		cmocka_unit_test(test_timeout_now),
		cmocka_unit_test(test_append_entries),
		cmocka_unit_test(test_install_snapshot),
		cmocka_unit_test(test_encode_appends_and_rejects_bad_type),
		cmocka_unit_test(test_truncation_and_trailing),
		cmocka_unit_test(test_bad_header),
		cmocka_unit_test(test_bad_flag_values),
		cmocka_unit_test(test_absurd_entries),
		cmocka_unit_test(test_bad_configurations),
		cmocka_unit_test(test_release_is_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
