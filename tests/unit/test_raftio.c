/* Tests for src/raft/raftio.c: our struct raft_io on SQLite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "crypto/secmem.h"
#include "raft/raftio.h"
#include "raft/zeroheap.h"

#define ADDR "127.0.0.1:9001"
#define DEADLINE_MS 10000

/* The key rows are authenticated with; another_key stands for another
 * vault's (or a guess). */
static const uint8_t test_key[RAFTIO_KEY_LEN] = "raftio unit test storage key...";
static const uint8_t another_key[RAFTIO_KEY_LEN] = "some other vault's storage key.";

struct fx {
	char dir[64];
	char db[96];
	uv_loop_t loop;
	struct raft_io io;
	bool open;
};

/* ---- loop helpers: always bounded by a deadline, never sleeps ---- */

/* Counts the loop turns run_until runs: callbacks of one job see one. */
static unsigned loop_turn;

static void run_until(uv_loop_t *loop, const int *counter, int target)
{
	uint64_t deadline = uv_hrtime() + (uint64_t)DEADLINE_MS * 1000000u;
	while (*counter < target) {
		assert_true(uv_hrtime() < deadline);
		loop_turn++;
		int alive = uv_run(loop, UV_RUN_ONCE);
		if (!alive && *counter < target)
			fail_msg("loop has nothing left to do (%d of %d)", *counter, target);
	}
}

static void io_closed(struct raft_io *io)
{
	(*(int *)io->data)++;
}

static void fx_open(struct fx *f)
{
	char err[256];
	int rv = raftio_init(&f->io, &f->loop, f->dir, test_key, NULL, err, sizeof err);
	if (rv != 0)
		fail_msg("raftio_init: %d %s", rv, err);
	assert_int_equal(f->io.init(&f->io, 1, ADDR), 0);
	f->open = true;
}

static void fx_close(struct fx *f)
{
	int closed = 0;
	f->io.data = &closed;
	f->io.close(&f->io, io_closed);
	assert_int_equal(closed, 0); /* never synchronous */
	run_until(&f->loop, &closed, 1);
	f->open = false;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_raftio.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof f->db, "%s/raft.db", f->dir);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[128];
	if (f->open)
		fx_close(f);
	assert_int_equal(uv_loop_close(&f->loop), 0); /* no leaked handles */
	const char *suffix[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", f->db, suffix[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- data helpers ---- */

static void make_conf(struct raft_configuration *c, unsigned n)
{
	char a[32];
	raft_configuration_init(c);
	for (unsigned i = 1; i <= n; i++) {
		snprintf(a, sizeof a, "127.0.0.1:90%02u", i);
		assert_int_equal(raft_configuration_add(c, i, a, RAFT_VOTER), 0);
	}
}

static void bootstrap(struct fx *f)
{
	struct raft_configuration c;
	make_conf(&c, 1);
	assert_int_equal(f->io.bootstrap(&f->io, &c), 0);
	raft_configuration_close(&c);
}

/* Bootstraps and moves to term 2, in which the tests append: libraft always
 * stores a term before it writes entries of that term. */
static void bootstrap_in_term_2(struct fx *f)
{
	bootstrap(f);
	assert_int_equal(f->io.set_term(&f->io, 2), 0);
}

struct loaded {
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snap;
	raft_index start;
	struct raft_entry *entries;
	size_t n;
};

static void snapshot_destroy(struct raft_snapshot *s)
{
	if (s == NULL)
		return;
	raft_configuration_close(&s->configuration);
	for (unsigned i = 0; i < s->n_bufs; i++)
		raft_free(s->bufs[i].base);
	raft_free(s->bufs);
	raft_free(s);
}

static int load(struct fx *f, struct loaded *l)
{
	memset(l, 0, sizeof *l);
	return f->io.load(&f->io, &l->term, &l->vote, &l->snap, &l->start, &l->entries, &l->n);
}

static void loaded_free(struct loaded *l)
{
	if (l->entries != NULL) {
		/* All entries share one batch, exactly as libraft frees them. */
		for (size_t i = 1; i < l->n; i++)
			assert_ptr_equal(l->entries[i].batch, l->entries[0].batch);
		raft_free(l->entries[0].batch);
		raft_free(l->entries);
	}
	snapshot_destroy(l->snap);
	memset(l, 0, sizeof *l);
}

/* Entry payload for index I in "generation" G, so overwritten entries differ. */
static void payload(char *out, size_t n, raft_index i, int g)
{
	snprintf(out, n, "entry-%llu-gen-%d", i, g);
}

static sqlite3_int64 db_count(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	sqlite3_int64 v = -1;
	assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(h);
	return v;
}

static void db_exec(const char *db, const char *sql)
{
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/* An append request whose memory (entries, payloads) we own until the cb. */
struct append_req {
	struct raft_io_append req;
	struct fx *f;
	struct raft_entry entries[8];
	char data[8][40];
	unsigned n;
	raft_index first;
	unsigned kept;   /* entries a truncate queued after it leaves in place */
	int *order;      /* shared completion counter */
	int seq;         /* expected position in completion order */
	int status;
	bool done;
	unsigned turn; /* loop_turn when called back */
};

static void append_cb(struct raft_io_append *req, int status)
{
	struct append_req *a = req->data;
	char sql[128];
	a->status = status;
	a->done = true;
	a->turn = loop_turn;
	assert_int_equal(*a->order, a->seq); /* in submission order */
	(*a->order)++;
	if (status != 0)
		return;
	/* Durable means visible to another connection before we are told. */
	snprintf(sql, sizeof sql, "SELECT count(*) FROM entries WHERE idx BETWEEN %llu AND %llu",
		 a->first, a->first + a->kept - 1);
	assert_int_equal(db_count(a->f->db, sql), a->kept);
}

static void submit(struct fx *f, struct append_req *a, raft_index first, unsigned n, int gen,
		   int *order, int seq)
{
	memset(a, 0, sizeof *a);
	a->f = f;
	a->n = n;
	a->first = first;
	a->kept = n;
	a->order = order;
	a->seq = seq;
	a->req.data = a;
	for (unsigned i = 0; i < n; i++) {
		payload(a->data[i], sizeof a->data[i], first + i, gen);
		a->entries[i].term = 2;
		a->entries[i].type = RAFT_COMMAND;
		a->entries[i].buf.base = a->data[i];
		a->entries[i].buf.len = strlen(a->data[i]);
	}
	assert_int_equal(f->io.append(&f->io, &a->req, a->entries, n, append_cb), 0);
}

static void check_entry(const struct raft_entry *e, raft_index idx, int gen)
{
	char want[40];
	payload(want, sizeof want, idx, gen);
	assert_int_equal(e->type, RAFT_COMMAND);
	assert_int_equal(e->term, 2);
	assert_int_equal(e->buf.len, strlen(want));
	assert_memory_equal(e->buf.base, want, e->buf.len);
}

/* ---- tests ---- */

static void test_bootstrap_load(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	struct raft_configuration c;
	struct raft_buffer enc;

	assert_false(raftio_has_state(f->dir));
	fx_open(f);
	assert_false(raftio_has_state(f->dir)); /* empty schema is not state */
	bootstrap(f);
	assert_true(raftio_has_state(f->dir));

	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.term, 1);
	assert_int_equal(l.vote, 0);
	assert_null(l.snap);
	assert_int_equal(l.start, 1);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.entries[0].type, RAFT_CHANGE);
	assert_int_equal(l.entries[0].term, 1);
	make_conf(&c, 1);
	assert_int_equal(raft_configuration_encode(&c, &enc), 0);
	assert_int_equal(l.entries[0].buf.len, enc.len);
	assert_memory_equal(l.entries[0].buf.base, enc.base, enc.len);
	raft_free(enc.base);
	raft_configuration_close(&c);
	loaded_free(&l);
}

/* libraft pads an encoded configuration to 8 bytes without writing the
 * padding; the daemon's zero-filling heap keeps stale heap bytes out of
 * raft.db and off the network. Dirty a block of the same size first, so the
 * plain allocator would hand back non-zero bytes. */
static void test_configuration_padding_is_zero(void **state)
{
	(void)state;
	struct raft_configuration c;
	struct raft_buffer enc;
	raft_configuration_init(&c);
	assert_int_equal(raft_configuration_add(&c, 7, "n1@10.0.0.1:8201", RAFT_VOTER), 0);
	/* version, count, then id + address + NUL + role per server */
	size_t used = 1 + 8 + 8 + strlen("n1@10.0.0.1:8201") + 1 + 1;
	assert_int_equal(raft_configuration_encode(&c, &enc), 0);
	size_t len = enc.len;
	raft_free(enc.base);
	assert_true(len > used); /* there is padding to check */
	for (int round = 0; round < 4; round++) {
		unsigned char *dirty = raft_malloc(len);
		assert_non_null(dirty);
		memset(dirty, 0xA5, len);
		raft_free(dirty);
		assert_int_equal(raft_configuration_encode(&c, &enc), 0);
		assert_int_equal(enc.len, len);
		for (size_t i = used; i < len; i++)
			assert_int_equal(((unsigned char *)enc.base)[i], 0);
		raft_free(enc.base);
	}
	raft_configuration_close(&c);
}

static void test_bootstrap_twice(void **state)
{
	struct fx *f = *state;
	struct raft_configuration c;
	make_conf(&c, 3);
	fx_open(f);
	assert_int_equal(f->io.bootstrap(&f->io, &c), 0);
	assert_int_equal(f->io.bootstrap(&f->io, &c), RAFT_CANTBOOTSTRAP);
	fx_close(f);
	fx_open(f);
	assert_int_equal(f->io.bootstrap(&f->io, &c), RAFT_CANTBOOTSTRAP);
	assert_non_null(strstr(f->io.errmsg, "cannot bootstrap"));
	raft_configuration_close(&c);
}

static void test_append_batches_and_reopen(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	struct append_req a[4];
	int order = 0;

	fx_open(f);
	bootstrap_in_term_2(f);
	assert_int_equal(load(f, &l), 0);
	loaded_free(&l);

	/* Submitted back to back, in one loop turn: one job (one
	 * transaction), whose callbacks all fire in one turn. */
	submit(f, &a[0], 2, 3, 0, &order, 0);
	submit(f, &a[1], 5, 1, 0, &order, 1);
	submit(f, &a[2], 6, 4, 0, &order, 2);
	submit(f, &a[3], 10, 2, 0, &order, 3);
	assert_int_equal(order, 0); /* never called back synchronously */
	run_until(&f->loop, &order, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(a[i].status, 0);
		assert_int_equal(a[i].turn, a[0].turn);
	}

	fx_close(f);
	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.start, 1);
	assert_int_equal(l.n, 11);
	assert_int_equal(l.entries[0].type, RAFT_CHANGE);
	for (raft_index i = 2; i <= 11; i++)
		check_entry(&l.entries[i - 1], i, 0);
	loaded_free(&l);

	/* Appends continue after what load() returned. */
	submit(f, &a[0], 12, 1, 0, &order, 4);
	run_until(&f->loop, &order, 5);
	assert_int_equal(db_count(f->db, "SELECT max(idx) FROM entries"), 12);
}

static bool inline_flag(void *arg)
{
	return *(bool *)arg;
}

/* Jobs run on the loop thread (raftio_set_inline): never from inside
 * append(), in submission order, durable before each callback, whichever
 * way the choice goes from one job to the next; a job due inline when
 * close() comes still runs, and close leaves no handle behind. */
static void test_append_inline(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	struct append_req a[4];
	int order = 0;
	bool on = true;

	fx_open(f);
	bootstrap_in_term_2(f);
	assert_int_equal(load(f, &l), 0);
	loaded_free(&l);
	raftio_set_inline(&f->io, inline_flag, &on);

	submit(f, &a[0], 2, 3, 0, &order, 0);
	submit(f, &a[1], 5, 1, 0, &order, 1);
	assert_int_equal(order, 0);
	run_until(&f->loop, &order, 2);
	on = false; /* this job goes to the pool... */
	submit(f, &a[2], 6, 4, 0, &order, 2);
	on = true; /* ...and this one, queued behind it, runs inline */
	submit(f, &a[3], 10, 2, 0, &order, 3);
	assert_int_equal(order, 2);
	run_until(&f->loop, &order, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(a[i].status, 0);

	submit(f, &a[0], 12, 1, 0, &order, 4);
	fx_close(f);
	assert_true(a[0].done);
	assert_int_equal(a[0].status, 0);

	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.n, 12);
	for (raft_index i = 2; i <= 12; i++)
		check_entry(&l.entries[i - 1], i, 0);
	loaded_free(&l);
}

static void test_truncate(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	struct append_req a[2];
	int order = 0;

	fx_open(f);
	bootstrap_in_term_2(f);
	assert_int_equal(load(f, &l), 0);
	loaded_free(&l);

	/* Truncating right after submitting must still apply after the append
	 * (the three share a transaction). */
	submit(f, &a[0], 2, 5, 0, &order, 0);
	a[0].kept = 2;
	assert_int_equal(f->io.truncate(&f->io, 4), 0);
	submit(f, &a[1], 4, 2, 1, &order, 1);
	run_until(&f->loop, &order, 2);

	fx_close(f);
	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.n, 5);
	check_entry(&l.entries[1], 2, 0);
	check_entry(&l.entries[2], 3, 0);
	check_entry(&l.entries[3], 4, 1);
	check_entry(&l.entries[4], 5, 1);
	loaded_free(&l);

	assert_int_equal(f->io.truncate(&f->io, 2), 0);
	fx_close(f); /* close waits for the queued truncate */
	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.n, 1);
	loaded_free(&l);
}

static void test_term_vote(void **state)
{
	struct fx *f = *state;
	struct loaded l;

	fx_open(f);
	assert_int_equal(f->io.set_term(&f->io, 5), 0);
	assert_int_equal(f->io.set_vote(&f->io, 2), 0);
	assert_true(raftio_has_state(f->dir));
	fx_close(f);

	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.term, 5);
	assert_int_equal(l.vote, 2);
	assert_int_equal(l.n, 0);
	assert_int_equal(l.start, 1);
	loaded_free(&l);
	assert_int_equal(f->io.set_term(&f->io, 6), 0); /* resets the vote */
	fx_close(f);

	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.term, 6);
	assert_int_equal(l.vote, 0);
	loaded_free(&l);
	/* Raft ids are node-id hashes and use all 64 bits: a vote for one
	 * above INT64_MAX comes back as it was (it was once stored clamped,
	 * which would let a restarted node vote twice in a term). */
	const raft_id big = 0xF00DFACE12345678ull;
	assert_int_equal(f->io.set_vote(&f->io, big), 0);
	fx_close(f);
	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.term, 6);
	assert_true(l.vote == big);
	loaded_free(&l);
}

struct put_req {
	struct raft_io_snapshot_put req;
	struct raft_snapshot snap;
	struct raft_buffer bufs[2];
	int status;
	int *done;
};

static void put_cb(struct raft_io_snapshot_put *req, int status)
{
	struct put_req *p = req->data;
	p->status = status;
	(*p->done)++;
}

/* Stores a snapshot at INDEX whose data is "snap-" + "INDEX" in two bufs. */
static void put_snapshot(struct fx *f, raft_index index, unsigned trailing, unsigned nconf)
{
	struct put_req p;
	char tail[24];
	int done = 0;
	memset(&p, 0, sizeof p);
	snprintf(tail, sizeof tail, "%llu", index);
	p.req.data = &p;
	p.done = &done;
	p.snap.index = index;
	p.snap.term = 2;
	make_conf(&p.snap.configuration, nconf);
	p.snap.configuration_index = 1;
	p.bufs[0].base = "snap-";
	p.bufs[0].len = 5;
	p.bufs[1].base = tail;
	p.bufs[1].len = strlen(tail);
	p.snap.bufs = p.bufs;
	p.snap.n_bufs = 2;
	assert_int_equal(f->io.snapshot_put(&f->io, trailing, &p.req, &p.snap, put_cb), 0);
	run_until(&f->loop, &done, 1);
	assert_int_equal(p.status, 0);
	raft_configuration_close(&p.snap.configuration);
}

/* Stores a snapshot at INDEX of LEN bytes (all 'x'). */
static void put_big_snapshot(struct fx *f, raft_index index, size_t len)
{
	struct put_req p;
	int done = 0;
	memset(&p, 0, sizeof p);
	p.req.data = &p;
	p.done = &done;
	p.snap.index = index;
	p.snap.term = 2;
	make_conf(&p.snap.configuration, 1);
	p.snap.configuration_index = 1;
	p.bufs[0].base = malloc(len);
	assert_non_null(p.bufs[0].base);
	memset(p.bufs[0].base, 'x', len);
	p.bufs[0].len = len;
	p.snap.bufs = p.bufs;
	p.snap.n_bufs = 1;
	assert_int_equal(f->io.snapshot_put(&f->io, 2, &p.req, &p.snap, put_cb), 0);
	run_until(&f->loop, &done, 1);
	assert_int_equal(p.status, 0);
	free(p.bufs[0].base);
	raft_configuration_close(&p.snap.configuration);
}

static void check_snapshot(const struct raft_snapshot *s, raft_index index, unsigned nconf)
{
	char want[32];
	snprintf(want, sizeof want, "snap-%llu", index);
	assert_non_null(s);
	assert_int_equal(s->index, index);
	assert_int_equal(s->term, 2);
	assert_int_equal(s->configuration_index, 1);
	assert_int_equal(s->configuration.n, nconf);
	assert_int_equal(s->configuration.servers[nconf - 1].id, nconf);
	assert_int_equal(s->configuration.servers[0].role, RAFT_VOTER);
	assert_string_equal(s->configuration.servers[0].address, "127.0.0.1:9001");
	assert_int_equal(s->n_bufs, 1);
	assert_int_equal(s->bufs[0].len, strlen(want));
	assert_memory_equal(s->bufs[0].base, want, strlen(want));
}

static void fill_log(struct fx *f, raft_index last)
{
	struct append_req a;
	int order = 0;
	struct loaded l;
	bootstrap_in_term_2(f);
	assert_int_equal(load(f, &l), 0);
	loaded_free(&l);
	for (raft_index i = 2; i <= last; i += 8) {
		unsigned n = (unsigned)(last - i + 1 < 8 ? last - i + 1 : 8);
		submit(f, &a, i, n, 0, &order, order);
		run_until(&f->loop, &order, order + 1);
	}
}

static void test_snapshot_trailing(void **state)
{
	struct fx *f = *state;
	struct loaded l;

	fx_open(f);
	fill_log(f, 20);
	put_snapshot(f, 8, 3, 2);  /* keeps 6.. */
	put_snapshot(f, 12, 3, 3); /* keeps 10.. */
	put_snapshot(f, 16, 3, 3); /* keeps 14..; older snapshots pruned */
	assert_int_equal(db_count(f->db, "SELECT count(*) FROM snapshots"), 1);
	fx_close(f);

	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	check_snapshot(l.snap, 16, 3);
	assert_int_equal(l.start, 14);
	assert_int_equal(l.n, 7);
	for (raft_index i = 14; i <= 20; i++)
		check_entry(&l.entries[i - 14], i, 0);
	loaded_free(&l);
}

/* A snapshot passes through the WAL whole; once a checkpoint has emptied
 * the WAL, its file is cut back to 16 MiB rather than kept at the largest
 * size it ever had. */
static void test_wal_cut_back(void **state)
{
	struct fx *f = *state;
	struct append_req a;
	int order = 0;
	char wal[128];
	struct stat st;

	fx_open(f);
	fill_log(f, 4);
	put_big_snapshot(f, 3, 24u << 20);
	snprintf(wal, sizeof wal, "%s-wal", f->db);
	assert_int_equal(stat(wal, &st), 0);
	assert_true(st.st_size > (16 << 20)); /* it did pass through */
	/* The next write starts the WAL over, and cuts it. */
	submit(f, &a, 5, 1, 0, &order, order);
	run_until(&f->loop, &order, order + 1);
	assert_int_equal(stat(wal, &st), 0);
	assert_true(st.st_size <= (16 << 20));
}

/* Only the newest snapshot is kept, and the older ones are deleted before
 * it is written: the file holds one snapshot, not two or three. */
static void test_one_snapshot_on_disk(void **state)
{
	struct fx *f = *state;
	struct stat st;

	fx_open(f);
	fill_log(f, 8);
	for (raft_index i = 3; i <= 7; i += 2)
		put_big_snapshot(f, i, 8u << 20);
	fx_close(f); /* checkpoints the WAL into the file */
	assert_int_equal(db_count(f->db, "SELECT count(*) FROM snapshots"), 1);
	assert_int_equal(stat(f->db, &st), 0);
	assert_true(st.st_size < (12 << 20));
}

struct get_req {
	struct raft_io_snapshot_get req;
	struct raft_snapshot *snap;
	int status;
	int done;
};

static void get_cb(struct raft_io_snapshot_get *req, struct raft_snapshot *snap, int status)
{
	struct get_req *g = req->data;
	g->snap = snap;
	g->status = status;
	g->done++;
}

static void test_snapshot_install_and_get(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	struct append_req a;
	struct get_req g = { .req.data = &g };
	int order = 0;

	fx_open(f);
	fill_log(f, 10);

	/* No snapshot yet: get reports NOTFOUND, asynchronously. */
	assert_int_equal(f->io.snapshot_get(&f->io, &g.req, get_cb), 0);
	assert_int_equal(g.done, 0);
	run_until(&f->loop, &g.done, 1);
	assert_int_equal(g.status, RAFT_NOTFOUND);
	assert_null(g.snap);

	put_snapshot(f, 50, 0, 1); /* install: replaces the whole log */
	assert_int_equal(db_count(f->db, "SELECT count(*) FROM entries"), 0);
	submit(f, &a, 51, 2, 0, &order, 0); /* appends continue after it */
	run_until(&f->loop, &order, 1);

	g.done = 0;
	assert_int_equal(f->io.snapshot_get(&f->io, &g.req, get_cb), 0);
	assert_int_equal(g.done, 0);
	run_until(&f->loop, &g.done, 1);
	assert_int_equal(g.status, 0);
	check_snapshot(g.snap, 50, 1);
	snapshot_destroy(g.snap);
	fx_close(f);

	fx_open(f);
	assert_int_equal(load(f, &l), 0);
	check_snapshot(l.snap, 50, 1);
	assert_int_equal(l.start, 51);
	assert_int_equal(l.n, 2);
	check_entry(&l.entries[0], 51, 0);
	check_entry(&l.entries[1], 52, 0);
	loaded_free(&l);
	assert_true(raftio_has_state(f->dir));
}

static void test_corrupt_file(void **state)
{
	struct fx *f = *state;
	char err[256] = "";
	FILE *fp = fopen(f->db, "wb");
	assert_non_null(fp);
	for (int i = 0; i < 4096; i++)
		fputc((i * 7919 + 13) & 0xFF, fp);
	fclose(fp);

	int rv = raftio_init(&f->io, &f->loop, f->dir, test_key, NULL, err, sizeof err);
	assert_int_equal(rv, RAFT_CORRUPT);
	assert_non_null(strstr(err, "raft.db"));
	assert_non_null(strstr(err, "not a database"));
	assert_true(raftio_has_state(f->dir)); /* never bootstrap over it */
}

static void test_corrupt_rows(void **state)
{
	struct fx *f = *state;
	struct loaded l;

	fx_open(f);
	fill_log(f, 6);
	put_snapshot(f, 4, 2, 1);
	fx_close(f);

	/* A flipped payload byte is caught by the checksum. */
	db_exec(f->db, "UPDATE entries SET data = x'00' WHERE idx = 5");
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "index 5"));
	assert_null(l.entries);
	assert_null(l.snap);
	fx_close(f);

	/* A hole in the log is never served. */
	db_exec(f->db, "DELETE FROM entries WHERE idx = 5");
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "holes"));
	fx_close(f);

	/* An undecodable snapshot configuration. */
	db_exec(f->db, "DELETE FROM entries WHERE idx > 4; UPDATE snapshots SET conf = x'ff'");
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "snapshot"));
}

/* raftio_check: what vaultfsd runs at start, before it serves anything. */
static void test_check(void **state)
{
	struct fx *f = *state;
	char err[256] = "";
	struct stat st;

	assert_int_equal(raftio_check(f->dir, err, sizeof err), 0); /* nothing stored yet */
	assert_int_equal(access(f->db, F_OK), -1);                  /* and nothing created */
	fx_open(f);
	fill_log(f, 6);
	put_snapshot(f, 4, 2, 1);
	fx_close(f);
	assert_int_equal(raftio_check(f->dir, err, sizeof err), 0);

	/* A flipped payload byte in the last entry: file and index named. */
	db_exec(f->db, "UPDATE entries SET data = x'00' WHERE idx = 6");
	assert_int_equal(raftio_check(f->dir, err, sizeof err), RAFT_CORRUPT);
	assert_non_null(strstr(err, f->db));
	assert_non_null(strstr(err, "entry checksum mismatch (index 6)"));

	/* A file cut short: SQLite itself refuses it. */
	assert_int_equal(stat(f->db, &st), 0);
	assert_int_equal(truncate(f->db, st.st_size / 2), 0);
	assert_int_equal(raftio_check(f->dir, err, sizeof err), RAFT_CORRUPT);
	assert_non_null(strstr(err, f->db));
	assert_non_null(strstr(err, "malformed"));
}

/* ---- tampering: what an attacker with the disk but no keys can write ---- */

/* CRC-32 as raftio computes it (zlib's polynomial, chained). */
static uint32_t crc32_update(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	crc = ~crc;
	for (size_t i = 0; i < n; i++) {
		crc ^= b[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
	}
	return ~crc;
}

static uint32_t crc32_u64(uint32_t crc, uint64_t v)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	return crc32_update(crc, le, sizeof le);
}

/* Makes row IDX of entries a copy of row FROM (term, type, data and MAC),
 * with the CRC fixed for IDX: what anyone can compute without keys. */
static void copy_entry_fix_crc(const char *db, raft_index from, raft_index idx)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	char sql[256];
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	snprintf(sql, sizeof sql, "SELECT term, type, data FROM entries WHERE idx = %llu", from);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	uint64_t term = (uint64_t)sqlite3_column_int64(s, 0);
	uint64_t type = (uint64_t)sqlite3_column_int64(s, 1);
	uint32_t crc = crc32_u64(crc32_u64(crc32_u64(0, idx), term), type);
	crc = crc32_update(crc, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2));
	sqlite3_finalize(s);
	snprintf(sql, sizeof sql,
		 "UPDATE entries SET (term, type, data, mac, crc) = (SELECT term, type, data, mac, %u "
		 "FROM entries WHERE idx = %llu) WHERE idx = %llu",
		 crc, from, idx);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/* An older entry copied over a newer one, checksum fixed: raftio_check
 * (no key, before unseal) cannot tell; load() with the key refuses it and
 * names the entry. */
static void test_tampered_entry(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	char err[256] = "";

	fx_open(f);
	fill_log(f, 6);
	fx_close(f);
	copy_entry_fix_crc(f->db, 3, 6);
	assert_int_equal(raftio_check(f->dir, err, sizeof err), 0);
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, f->db));
	assert_non_null(strstr(f->io.errmsg, "log entry (index 6) fails authentication"));
	assert_null(l.entries);
	fx_close(f);

	/* Swapped rows (each with its own CRC fixed) fail as well. */
	copy_entry_fix_crc(f->db, 4, 6);
	copy_entry_fix_crc(f->db, 6, 4); /* 6 holds 4's bytes now: 4 gets them back */
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "(index 6)"));
}

/* Fixes the CRC of snapshot IDX after an edit. */
static void fix_snapshot_crc(const char *db, raft_index idx)
{
	sqlite3 *h = NULL;
	sqlite3_stmt *s = NULL;
	char sql[256];
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	snprintf(sql, sizeof sql,
		 "SELECT term, conf_index, conf, data FROM snapshots WHERE idx = %llu", idx);
	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	uint32_t crc = crc32_u64(crc32_u64(crc32_u64(0, idx), (uint64_t)sqlite3_column_int64(s, 0)),
				 (uint64_t)sqlite3_column_int64(s, 1));
	crc = crc32_update(crc, sqlite3_column_blob(s, 2), (size_t)sqlite3_column_bytes(s, 2));
	crc = crc32_update(crc, sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3));
	sqlite3_finalize(s);
	snprintf(sql, sizeof sql, "UPDATE snapshots SET crc = %u WHERE idx = %llu", crc, idx);
	assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

static void test_tampered_snapshot_and_term(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	char err[256] = "";

	fx_open(f);
	fill_log(f, 8);
	put_snapshot(f, 4, 8, 1);
	fx_close(f);
	/* An attacker's copy of the older snapshot (only the newest is kept). */
	db_exec(f->db, "CREATE TABLE old AS SELECT data, mac FROM snapshots WHERE idx = 4");
	fx_open(f);
	put_snapshot(f, 6, 8, 1);
	fx_close(f);

	/* The older snapshot's bytes and MAC copied over the newer one. */
	db_exec(f->db, "UPDATE snapshots SET (data, mac) = (SELECT data, mac FROM old) "
		       "WHERE idx = 6; DROP TABLE old");
	fix_snapshot_crc(f->db, 6);
	assert_int_equal(raftio_check(f->dir, err, sizeof err), 0);
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "the snapshot (index 6) fails authentication"));
	fx_close(f);
	db_exec(f->db, "DELETE FROM snapshots WHERE idx = 6");

	/* A vote taken back (it carries no CRC: only the MAC guards it). */
	fx_open(f);
	assert_int_equal(f->io.set_vote(&f->io, 3), 0);
	fx_close(f);
	db_exec(f->db, "UPDATE meta SET vote = 2");
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "the term and vote row"));
	fx_close(f);

	/* The term row deleted, which would let the node vote again. */
	db_exec(f->db, "DELETE FROM meta");
	fx_open(f);
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "term row is missing or older than the log"));
}

/* Rows written under one vault's key do not load under another's. */
static void test_other_key(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	char err[256];

	fx_open(f);
	fill_log(f, 3);
	fx_close(f);
	assert_int_equal(raftio_init(&f->io, &f->loop, f->dir, another_key, NULL, err, sizeof err),
			 0);
	assert_int_equal(f->io.init(&f->io, 1, ADDR), 0);
	f->open = true;
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
	assert_non_null(strstr(f->io.errmsg, "fails authentication"));
	fx_close(f);

	/* Nor under another node's id: the MAC binds the row to its node. */
	assert_int_equal(raftio_init(&f->io, &f->loop, f->dir, test_key, NULL, err, sizeof err), 0);
	assert_int_equal(f->io.init(&f->io, 2, ADDR), 0);
	f->open = true;
	assert_int_equal(load(f, &l), RAFT_CORRUPT);
}

/* Storage format 1 had no MACs: refused unless it holds nothing. */
static void test_format_1(void **state)
{
	struct fx *f = *state;
	char err[256] = "";
	static const char v1[] =
		"CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1),"
		"  term INTEGER NOT NULL, vote INTEGER NOT NULL);"
		"CREATE TABLE entries (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
		"  type INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL);"
		"CREATE TABLE snapshots (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
		"  conf BLOB NOT NULL, conf_index INTEGER NOT NULL, data BLOB NOT NULL,"
		"  crc INTEGER NOT NULL);"
		"PRAGMA user_version = 1;";

	db_exec(f->db, v1);
	fx_open(f); /* empty: it becomes format 2 */
	fill_log(f, 2);
	fx_close(f);
	assert_int_equal(db_count(f->db, "PRAGMA user_version"), 2);

	unlink(f->db);
	db_exec(f->db, v1);
	db_exec(f->db, "INSERT INTO meta VALUES (1, 1, 0)");
	assert_int_equal(raftio_init(&f->io, &f->loop, f->dir, test_key, NULL, err, sizeof err),
			 RAFT_CORRUPT);
	assert_non_null(strstr(err, "storage format 1"));
	assert_int_equal(raftio_check(f->dir, err, sizeof err), RAFT_CORRUPT);
}

static void test_misc(void **state)
{
	struct fx *f = *state;
	struct raft_io_send req;
	struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE };
	int seen[10] = { 0 };

	fx_open(f);
	for (int i = 0; i < 2000; i++) {
		int v = f->io.random(&f->io, 100, 110);
		assert_true(v >= 100 && v < 110);
		seen[v - 100]++;
	}
	for (int i = 0; i < 10; i++)
		assert_true(seen[i] > 100); /* roughly uniform */
	assert_int_equal(f->io.random(&f->io, 5, 5), 5);
	uv_update_time(&f->loop);
	assert_int_equal(f->io.time(&f->io), uv_now(&f->loop));
	assert_int_equal(f->io.send(&f->io, &req, &m, NULL), RAFT_NOCONNECTION);

	char err[256];
	struct raft_io io2;
	assert_int_equal(raftio_init(&io2, &f->loop, "/nonexistent/dir", test_key, NULL, err, sizeof err),
			 RAFT_IOERR);
	assert_non_null(strstr(err, "/nonexistent/dir/raft.db"));
}

static void test_recover(void **state)
{
	struct fx *f = *state;
	struct loaded l;
	struct raft_configuration c;
	struct raft_buffer enc;

	fx_open(f);
	fill_log(f, 5);
	make_conf(&c, 2);
	assert_int_equal(f->io.recover(&f->io, &c), 0);
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.n, 6);
	assert_int_equal(l.entries[5].type, RAFT_CHANGE);
	assert_true(l.entries[5].term >= 2);
	assert_int_equal(raft_configuration_encode(&c, &enc), 0);
	assert_int_equal(l.entries[5].buf.len, enc.len);
	assert_memory_equal(l.entries[5].buf.base, enc.base, enc.len);
	raft_free(enc.base);
	raft_configuration_close(&c);
	loaded_free(&l);
}

/* What raftio_set_on_failure reported. */
static struct {
	int calls, code, sys_errno;
	char msg[256];
} failures;

static void on_failure(void *arg, int code, int sys_errno, const char *msg)
{
	(void)arg;
	failures.calls++;
	failures.code = code;
	failures.sys_errno = sys_errno;
	snprintf(failures.msg, sizeof failures.msg, "%s", msg);
}

/* The held append's callback: its status, and one more on the completion
 * counter the other append checks its turn against. */
static int held_status;
static int *held_order;

static void held_cb(struct raft_io_append *req, int status)
{
	*(int *)req->data = status;
	(*held_order)++;
}

static void test_write_failure(void **state)
{
	struct fx *f = *state;
	struct append_req a;
	struct raft_entry e = { .term = 2, .type = RAFT_COMMAND, .buf = { "x", 1 } };
	struct raft_io_append req;
	int order = 0;

	fx_open(f);
	memset(&failures, 0, sizeof failures);
	raftio_set_on_failure(&f->io, on_failure, NULL);
	fill_log(f, 3);
	assert_int_equal(raftio_durable_index(&f->io), 3);
	/* Another connection makes every later write fail. */
	db_exec(f->db, "CREATE TRIGGER boom BEFORE INSERT ON entries "
		       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;");
	submit(f, &a, 4, 2, 0, &order, 0);
	/* The owner hears of it once, at the first failure; libraft does
	 * not, until close (raftio.c, hold). */
	run_until(&f->loop, &failures.calls, 1);
	assert_false(a.done);
	assert_int_equal(failures.code, RAFT_IOERR);
	assert_non_null(strstr(failures.msg, f->db));
	assert_non_null(strstr(failures.msg, "disk on fire"));
	/* Nothing of the failed batch is on disk. */
	assert_int_equal(db_count(f->db, "SELECT max(idx) FROM entries"), 3);
	/* After a failed write the on-disk log no longer matches what Raft
	 * believes: nothing is written from now on. An append is held like
	 * the failed one; a vote, written at once, fails; a term is kept in
	 * memory only (a failed leader must step down when it hears of its
	 * successor) and election messages no longer reach libraft. */
	held_order = &order;
	req.data = &held_status;
	held_status = -1;
	assert_int_equal(f->io.append(&f->io, &req, &e, 1, held_cb), 0);
	assert_int_equal(f->io.set_vote(&f->io, 2), RAFT_IOERR);
	assert_non_null(strstr(f->io.errmsg, "disk on fire"));
	assert_int_equal(f->io.set_term(&f->io, 9), 0);
	assert_int_equal(db_count(f->db, "SELECT count(*) FROM meta WHERE term = 9"), 0);
	assert_int_equal(failures.calls, 1);
	assert_int_equal(raftio_durable_index(&f->io), 3);
	/* At close both are answered, the newer first (append_cb checks it is
	 * second), as stored: libraft is unavailable then, and its failure
	 * path would truncate its log under requests still outstanding. */
	a.seq = 1;
	a.kept = 0; /* append_cb: nothing of it is on disk */
	fx_close(f);
	assert_int_equal(held_status, 0);
	assert_true(a.done);
	assert_int_equal(a.status, 0);
	assert_int_equal(db_count(f->db, "SELECT max(idx) FROM entries"), 3);

	/* A new raft_io on the same directory drops what followed the last
	 * committed write (here a row the failed batch might have left) and
	 * loads the rest. */
	db_exec(f->db, "DROP TRIGGER boom");
	db_exec(f->db, "INSERT INTO entries(idx, term, type, data, crc, mac) "
		       "SELECT 4, term, type, data, crc, mac FROM entries WHERE idx = 3");
	fx_open(f);
	char err[256] = "";
	assert_int_equal(raftio_drop_after(&f->io, 3, err, sizeof err), 0);
	struct loaded l;
	assert_int_equal(load(f, &l), 0);
	assert_int_equal(l.start + l.n - 1, 3);
	assert_int_equal(raftio_durable_index(&f->io), 3);
	loaded_free(&l);
}

/* A write that fails while the raft_io closes is answered before the
 * close completes. */
static void test_write_failure_while_closing(void **state)
{
	struct fx *f = *state;
	struct append_req a;
	int order = 0;

	fx_open(f);
	fill_log(f, 3);
	db_exec(f->db, "CREATE TRIGGER boom BEFORE INSERT ON entries "
		       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;");
	submit(f, &a, 4, 2, 0, &order, 0); /* its job starts in the next loop turn */
	a.kept = 0;
	fx_close(f);
	assert_true(a.done); /* answered (as stored: see test_write_failure) */
	assert_int_equal(db_count(f->db, "SELECT max(idx) FROM entries"), 3);
}

/* ---- a fake transport: checks start/send/close plumbing ---- */

struct fake_transport {
	struct raftio_transport t;
	int started, sent, closed;
	raft_id id;
	char address[32];
	void (*recv)(struct raftio_transport *t, struct raft_message *msg, void *arg);
	void *arg;
	uv_idle_t idle; /* stands for the transport's own handles */
	void (*close_cb)(void *arg);
	void *close_arg;
};

static int fake_start(struct raftio_transport *t, raft_id id, const char *address,
		      void (*recv)(struct raftio_transport *, struct raft_message *, void *),
		      void *arg)
{
	struct fake_transport *ft = t->data;
	ft->started++;
	ft->id = id;
	snprintf(ft->address, sizeof ft->address, "%s", address);
	ft->recv = recv;
	ft->arg = arg;
	return 0;
}

static int fake_send(struct raftio_transport *t, struct raft_io_send *req,
		     const struct raft_message *msg, raft_io_send_cb cb)
{
	struct fake_transport *ft = t->data;
	(void)msg;
	ft->sent++;
	cb(req, 0);
	return 0;
}

static void fake_idle_closed(uv_handle_t *h)
{
	struct fake_transport *ft = h->data;
	ft->closed++;
	ft->close_cb(ft->close_arg);
}

static void fake_close(struct raftio_transport *t, void (*cb)(void *arg), void *arg)
{
	struct fake_transport *ft = t->data;
	ft->close_cb = cb;
	ft->close_arg = arg;
	uv_close((uv_handle_t *)&ft->idle, fake_idle_closed);
}

static int ticks;
static struct raft_message *received;
static void count_tick(struct raft_io *io)
{
	(void)io;
	ticks++;
}
static void keep_recv(struct raft_io *io, struct raft_message *msg)
{
	(void)io;
	received = msg;
}
static void send_cb(struct raft_io_send *req, int status)
{
	*(int *)req->data = status == 0 ? 1 : -1;
}

/* Opens F's IO on the fake transport FT as node 7 and starts it (5 ms
 * ticks counted in TICKS, messages kept in RECEIVED). */
static void fx_open_started(struct fx *f, struct fake_transport *ft)
{
	char err[256];
	*ft = (struct fake_transport){ .t = { .data = ft, .start = fake_start, .send = fake_send,
					      .close = fake_close } };
	uv_idle_init(&f->loop, &ft->idle);
	ft->idle.data = ft;
	assert_int_equal(raftio_init(&f->io, &f->loop, f->dir, test_key, &ft->t, err, sizeof err),
			 0);
	assert_int_equal(f->io.init(&f->io, 7, "10.0.0.7:1"), 0);
	f->open = true;
	ticks = 0;
	received = NULL;
	assert_int_equal(f->io.start(&f->io, 5, count_tick, keep_recv), 0);
}

static void test_transport(void **state)
{
	struct fx *f = *state;
	struct fake_transport ft;
	fx_open_started(f, &ft);
	assert_int_equal(ft.started, 1);
	assert_int_equal(ft.id, 7);
	assert_string_equal(ft.address, "10.0.0.7:1");

	int sent = 0;
	struct raft_io_send req = { .data = &sent };
	struct raft_message m = { .type = RAFT_IO_REQUEST_VOTE };
	assert_int_equal(f->io.send(&f->io, &req, &m, send_cb), 0);
	assert_int_equal(sent, 1);
	struct raft_message in = { .type = RAFT_IO_REQUEST_VOTE, .server_id = 2 };
	ft.recv(&ft.t, &in, ft.arg);
	assert_ptr_equal(received, &in);

	run_until(&f->loop, &ticks, 3);
	fx_close(f);
	assert_int_equal(ft.closed, 1);
}

static void mute_on_failure(void *arg, int code, int sys_errno, const char *msg)
{
	on_failure(arg, code, sys_errno, msg);
	raftio_mute(arg);
}

static void count_turn(uv_timer_t *t)
{
	(*(int *)t->data)++;
}

/* Runs LOOP for MS milliseconds. */
static void run_for(uv_loop_t *loop, unsigned ms)
{
	uv_timer_t t;
	int fired = 0;
	uv_timer_init(loop, &t);
	t.data = &fired;
	uv_timer_start(&t, count_turn, ms, 0);
	run_until(loop, &fired, 1);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

/* Muted at its first failure, an IO follows in memory only: the write that
 * failed and every later one complete as if stored, nothing reaches the
 * disk, nothing is sent, ticks stop, and only a leader's replication gets
 * through to libraft. */
static void test_write_failure_mute(void **state)
{
	struct fx *f = *state;
	struct fake_transport ft;
	fx_open_started(f, &ft);
	memset(&failures, 0, sizeof failures);
	raftio_set_on_failure(&f->io, mute_on_failure, &f->io);
	fill_log(f, 3);
	assert_int_equal(f->io.set_term(&f->io, 4), 0);
	assert_false(raftio_is_mute(&f->io));

	db_exec(f->db, "CREATE TRIGGER boom BEFORE INSERT ON entries "
		       "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;");
	struct append_req a, b;
	int order = 0;
	submit(f, &a, 4, 2, 0, &order, 0);
	a.kept = 0; /* append_cb: none of it on disk */
	run_until(&f->loop, &order, 1);
	assert_int_equal(failures.calls, 1);
	assert_true(raftio_is_mute(&f->io));
	assert_int_equal(a.status, 0);
	submit(f, &b, 6, 1, 0, &order, 1);
	b.kept = 0;
	run_until(&f->loop, &order, 2);
	assert_int_equal(b.status, 0);
	assert_int_equal(f->io.set_term(&f->io, 9), 0);
	assert_int_equal(f->io.set_vote(&f->io, 2), 0);
	assert_int_equal(db_count(f->db, "SELECT max(idx) FROM entries"), 3);
	assert_int_equal(db_count(f->db, "SELECT term FROM meta"), 4);
	assert_int_equal(db_count(f->db, "SELECT vote FROM meta"), 0);
	assert_int_equal(raftio_durable_index(&f->io), 3);
	assert_int_equal(failures.calls, 1);

	int sent = 0;
	struct raft_io_send req = { .data = &sent };
	struct raft_message m = { .type = RAFT_IO_APPEND_ENTRIES_RESULT };
	assert_int_equal(f->io.send(&f->io, &req, &m, send_cb), RAFT_NOCONNECTION);
	struct raft_message vote = { .type = RAFT_IO_REQUEST_VOTE, .server_id = 2 };
	ft.recv(&ft.t, &vote, ft.arg);
	struct raft_message now = { .type = RAFT_IO_TIMEOUT_NOW, .server_id = 2 };
	ft.recv(&ft.t, &now, ft.arg);
	assert_null(received);
	struct raft_message ae = { .type = RAFT_IO_APPEND_ENTRIES, .server_id = 2 };
	ft.recv(&ft.t, &ae, ft.arg);
	assert_ptr_equal(received, &ae);
	int before = ticks;
	run_for(&f->loop, 30);
	assert_int_equal(ticks, before);
	fx_close(f);
}

/* ---- end to end with a real struct raft ---- */

struct counter {
	uint64_t sum;
	unsigned applied;
	unsigned snapshots;
	unsigned restores;
};

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
	struct counter *c = fsm->data;
	uint64_t v;
	assert_int_equal(buf->len, sizeof v);
	memcpy(&v, buf->base, sizeof v);
	c->sum += v;
	c->applied++;
	*result = NULL;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
	struct counter *c = fsm->data;
	*bufs = raft_malloc(sizeof **bufs);
	assert_non_null(*bufs);
	(*bufs)[0].base = raft_malloc(2 * sizeof(uint64_t));
	assert_non_null((*bufs)[0].base);
	uint64_t state[2] = { c->sum, c->applied };
	memcpy((*bufs)[0].base, state, sizeof state);
	(*bufs)[0].len = sizeof state;
	*n = 1;
	c->snapshots++;
	return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct counter *c = fsm->data;
	uint64_t state[2];
	assert_int_equal(buf->len, sizeof state);
	memcpy(state, buf->base, sizeof state);
	c->sum = state[0];
	c->applied = (unsigned)state[1];
	c->restores++;
	raft_free(buf->base); /* the FSM owns the restored buffer */
	return 0;
}

struct node {
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	struct counter counter;
	int applied_cbs;
	int closed;
};

static void node_start(struct fx *f, struct node *n, bool boot)
{
	char err[256];
	memset(n, 0, sizeof *n);
	n->fsm = (struct raft_fsm){ .version = 1, .data = &n->counter, .apply = fsm_apply,
				    .snapshot = fsm_snapshot, .restore = fsm_restore };
	assert_int_equal(raftio_init(&n->io, &f->loop, f->dir, test_key, NULL, err, sizeof err), 0);
	assert_int_equal(raft_init(&n->raft, &n->io, &n->fsm, 1, ADDR), 0);
	raft_set_snapshot_threshold(&n->raft, 16);
	raft_set_snapshot_trailing(&n->raft, 8);
	raft_set_heartbeat_timeout(&n->raft, 20);
	raft_set_election_timeout(&n->raft, 100);
	if (boot) {
		struct raft_configuration c;
		make_conf(&c, 1);
		assert_int_equal(raft_bootstrap(&n->raft, &c), 0);
		raft_configuration_close(&c);
	}
	int rv = raft_start(&n->raft);
	if (rv != 0)
		fail_msg("raft_start: %s", raft_errmsg(&n->raft));
}

static void wait_leader(struct fx *f, struct node *n)
{
	uint64_t deadline = uv_hrtime() + (uint64_t)DEADLINE_MS * 1000000u;
	while (raft_state(&n->raft) != RAFT_LEADER) {
		assert_true(uv_hrtime() < deadline);
		uv_run(&f->loop, UV_RUN_ONCE);
	}
}

static void raft_closed(struct raft *r)
{
	struct node *n = (struct node *)((char *)r - offsetof(struct node, raft));
	n->closed = 1;
}

static void node_stop(struct fx *f, struct node *n)
{
	raft_close(&n->raft, raft_closed);
	run_until(&f->loop, &n->closed, 1);
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
	struct node *n = req->data;
	(void)result;
	assert_int_equal(status, 0);
	n->applied_cbs++;
	free(req);
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	assert_int_equal(status, 0);
	(*(int *)req->data)++;
}

static void test_end_to_end(void **state)
{
	struct fx *f = *state;
	struct node *n = calloc(1, sizeof *n);
	const int total = 60;
	uint64_t want = 0;
	assert_non_null(n);

	node_start(f, n, true);
	wait_leader(f, n);
	/* Bursts of applies so that several land in one group commit. */
	for (int i = 1; i <= total; i++) {
		struct raft_apply *req = calloc(1, sizeof *req);
		struct raft_buffer buf = { .base = raft_malloc(sizeof(uint64_t)),
					   .len = sizeof(uint64_t) };
		uint64_t v = (uint64_t)i * 3;
		assert_non_null(req);
		memcpy(buf.base, &v, sizeof v);
		want += v;
		req->data = n;
		assert_int_equal(raft_apply(&n->raft, req, &buf, 1, apply_cb), 0);
		if (i % 10 == 0)
			run_until(&f->loop, &n->applied_cbs, i);
	}
	run_until(&f->loop, &n->applied_cbs, total);
	assert_int_equal(n->counter.applied, total);
	assert_int_equal(n->counter.sum, want);
	assert_true(n->counter.snapshots >= 1); /* libraft used snapshot_put */
	node_stop(f, n);
	assert_true(raftio_has_state(f->dir));
	assert_true(db_count(f->db, "SELECT count(*) FROM snapshots") >= 1);
	assert_true(db_count(f->db, "SELECT min(idx) FROM entries") > 1); /* compacted */

	/* A new raft on the same directory replays snapshot + log. */
	node_start(f, n, false);
	assert_int_equal(n->counter.restores, 1);
	wait_leader(f, n);
	int barriers = 0;
	struct raft_barrier b = { .data = &barriers };
	assert_int_equal(raft_barrier(&n->raft, &b, barrier_cb), 0);
	run_until(&f->loop, &barriers, 1);
	assert_int_equal(n->counter.applied, total);
	assert_int_equal(n->counter.sum, want);
	node_stop(f, n);
	free(n);
}

int main(void)
{
	zeroheap_install(); /* as vaultfsd does */
	if (crypto_global_init(true) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_configuration_padding_is_zero),
		cmocka_unit_test_setup_teardown(test_bootstrap_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bootstrap_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_batches_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_term_vote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_trailing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_install_and_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_cut_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_snapshot_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_rows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_snapshot_and_term, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_while_closing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_mute, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transport, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_to_end, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
