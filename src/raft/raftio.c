/* struct raft_io (version 2) on SQLite + libuv. See raftio.h.
 *
 * Threading: one sqlite3 connection, guarded by db_lock. The loop thread uses
 * it for the small synchronous operations (load, bootstrap, recover,
 * set_term, set_vote); everything else runs on the libuv threadpool (or,
 * where raftio_set_inline says so, on the loop thread), one job at a time.
 * A job begins in the loop turn after the one that queued its first request
 * and takes every request queued by then, running them in submission order
 * inside a single transaction (group commit); their callbacks fire on the
 * loop thread, in order, after COMMIT returned. Because only one job is
 * ever in flight, truncate and snapshot requests are ordered with the
 * appends submitted before them.
 *
 * Memory handed to libraft follows its conventions: loaded entries share one
 * raft_malloc'd batch (entry.batch), the entries array and snapshots are
 * raft_malloc'd, and configurations are built with raft_configuration_add. */
#include "raft/raftio.h"
#include "raft/raftio_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "raft/crashvfs.h"

/* ------------------------------------------------------------------------ */
/* raft_io methods */

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
	struct raftio *rio = io->impl;
	char *copy = strdup(address != NULL ? address : "");
	if (copy == NULL)
		return RAFT_NOMEM;
	free(rio->address);
	rio->address = copy;
	rio->id = id;
	return 0;
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
		   struct raft_snapshot **snapshot, raft_index *start_index,
		   struct raft_entry *entries[], size_t *n_entries)
{
	struct raftio *rio = io->impl;
	struct loaded_state ls;

	raftio_rows_lock(rio);
	int rv = raftio_rows_load_state(rio, true, &ls, io->errmsg);
	raftio_rows_unlock(rio);
	*term = ls.term;
	*voted_for = ls.vote;
	*snapshot = ls.snapshot;
	*start_index = ls.start;
	*entries = ls.entries;
	*n_entries = ls.n;
	if (rv == 0) {
		rio->next_index = ls.start + ls.n;
		rio->durable_index = ls.start + ls.n - 1;
	}
	return rv;
}

/* Writes CONF as a RAFT_CHANGE entry at IDX with TERM, and optionally sets
 * the term, in one transaction (db_lock held). */
/* The end of a write made on the loop thread (term, vote, bootstrap): a
 * storage failure there is one like a failed append. Returns RV. */
static int sync_write_done(struct raftio *rio, int rv)
{
	if (rv == RAFT_NOSPACE || rv == RAFT_IOERR)
		raftio_jobs_storage_failed(rio, rv, rio->io->errmsg);
	return rio->mute ? 0 : rv; /* muted, it is kept in memory */
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	struct raftio *rio = io->impl;
	raft_term term;
	raft_id vote;
	raft_index last = 0;
	int rv;

	if ((rv = raftio_jobs_check_open(rio)) != 0)
		return rv;
	raftio_rows_lock(rio);
	rv = raftio_rows_meta_read(rio, &term, &vote, io->errmsg);
	if (rv == 0)
		rv = raftio_rows_last_index(rio, &last, io->errmsg);
	if (rv == 0 && (term != 0 || last != 0)) {
		raftio_rows_set_err(io->errmsg, rio, "already has raft state, cannot bootstrap");
		rv = RAFT_CANTBOOTSTRAP;
	}
	if (rv == 0)
		rv = raftio_rows_write_conf_entry(rio, conf, 1, 1, true, io->errmsg);
	raftio_rows_unlock(rio);
	if (rv == 0)
		rio->next_index = 2;
	if (rv == 0)
		rio->durable_index = 1;
	return sync_write_done(rio, rv);
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	struct raftio *rio = io->impl;
	raft_term term, max = 0;
	raft_id vote;
	raft_index last = 0;
	int rv;

	if ((rv = raftio_jobs_check_open(rio)) != 0)
		return rv;
	raftio_rows_lock(rio);
	rv = raftio_rows_meta_read(rio, &term, &vote, io->errmsg);
	if (rv == 0)
		rv = raftio_rows_last_index(rio, &last, io->errmsg);
	/* The highest term anywhere keeps entry terms non-decreasing. */
	if (rv == 0)
		rv = raftio_rows_max_term(rio, &max, io->errmsg);
	if (rv == 0)
		rv = raftio_rows_write_conf_entry(rio, conf, last + 1, max > 0 ? max : 1, term == 0,
				      io->errmsg);
	raftio_rows_unlock(rio);
	if (rv == 0) {
		rio->next_index = last + 2;
		rio->durable_index = last + 1;
	}
	return sync_write_done(rio, rv);
}

static int io_set_term(struct raft_io *io, raft_term term)
{
	struct raftio *rio = io->impl;
	if (rio->closing)
		return RAFT_CANCELED;
	/* After a failure the term is kept in memory only: the node takes no
	 * part in elections any more (no vote is stored, none heard), so what
	 * it forgets at reopen it never acted on; and a failed leader must
	 * learn its successor's term to step down and follow. */
	if (rio->failed)
		return 0;
	int rv;
	raftio_rows_lock(rio);
	rv = raftio_rows_meta_put(rio, term, 0, io->errmsg);
	raftio_rows_unlock(rio);
	return sync_write_done(rio, rv);
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
	struct raftio *rio = io->impl;
	int rv = raftio_jobs_check_open(rio);
	if (rv != 0 || rio->mute)
		return rv;
	raft_term term;
	raft_id old_vote;
	raftio_rows_lock(rio);
	rv = raftio_rows_meta_read(rio, &term, &old_vote, io->errmsg);
	if (rv == 0)
		rv = raftio_rows_meta_put(rio, term, server_id, io->errmsg);
	raftio_rows_unlock(rio);
	return sync_write_done(rio, rv);
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
		     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct raftio *rio = io->impl;
	int rv;
	/* After a failure an append is held like the failed ones (raftio_jobs_hold):
	 * failing it here would take libraft's error path all the same. A
	 * mute IO completes it instead, from a job that stores nothing. */
	bool held = rio->failed && !rio->closing && !rio->mute;
	struct op *op = held ? raftio_jobs_op_alloc(OP_APPEND, &rv)
			      : raftio_jobs_op_new(rio, OP_APPEND, &rv);
	if (op == NULL)
		return rv;
	op->append.req = req;
	op->append.cb = cb;
	op->append.entries = entries;
	op->append.n = n;
	op->append.index = rio->next_index;
	rio->next_index += n;
	if (held)
		raftio_jobs_hold(rio, op);
	else
		raftio_jobs_enqueue(rio, op);
	return 0;
}

static int io_truncate(struct raft_io *io, raft_index index)
{
	struct raftio *rio = io->impl;
	int rv;
	struct op *op = raftio_jobs_op_new(rio, OP_TRUNCATE, &rv);
	if (op == NULL)
		return rv;
	op->truncate.index = index;
	if (index < rio->next_index)
		rio->next_index = index;
	raftio_jobs_enqueue(rio, op);
	return 0;
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
			   const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct raftio *rio = io->impl;
	int rv;
	struct op *op = raftio_jobs_op_new(rio, OP_SNAPSHOT_PUT, &rv);
	if (op == NULL)
		return rv;
	op->put.req = req;
	op->put.cb = cb;
	op->put.snapshot = snapshot;
	op->put.trailing = trailing;
	/* An installed snapshot replaces the log: appends continue after it. */
	if (trailing == 0) {
		rio->next_index = snapshot->index + 1;
		log_info("raft: installing a snapshot from the leader (up to index %llu)",
			 (unsigned long long)snapshot->index);
	}
	raftio_jobs_enqueue(rio, op);
	return 0;
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			   raft_io_snapshot_get_cb cb)
{
	struct raftio *rio = io->impl;
	int rv;
	struct op *op = raftio_jobs_op_new(rio, OP_SNAPSHOT_GET, &rv);
	if (op == NULL)
		return rv;
	op->get.req = req;
	op->get.cb = cb;
	raftio_jobs_enqueue(rio, op); /* the callback always fires later, from work_done */
	return 0;
}

static raft_time io_time(struct raft_io *io)
{
	struct raftio *rio = io->impl;
	return uv_now(rio->loop) + rio->clock_ahead;
}

static int io_random(struct raft_io *io, int min, int max)
{
	struct raftio *rio = io->impl;
	if (max <= min)
		return min;
	uint64_t range = (uint64_t)((int64_t)max - (int64_t)min);
	uint64_t span = (uint64_t)RAND_MAX + 1;
	uint64_t v;
	if (range > span) {
		v = ((uint64_t)rand_r(&rio->rand_state) * span + (uint64_t)rand_r(&rio->rand_state)) % range;
	} else {
		/* Rejection sampling keeps the draw uniform. */
		uint64_t limit = span - span % range;
		do
			v = (uint64_t)rand_r(&rio->rand_state);
		while (v >= limit);
		v %= range;
	}
	return (int)((int64_t)min + (int64_t)v);
}

static void timer_cb(uv_timer_t *t)
{
	struct raftio *rio = t->data;
	if (!rio->closing && !rio->mute && rio->tick_cb != NULL)
		rio->tick_cb(rio->io);
}

/* Frees a message we will not deliver, following libraft's ownership rules
 * for received messages (entries array + shared batch, snapshot conf+data). */
static void message_drop(struct raft_message *m)
{
	switch (m->type) {
	case RAFT_IO_APPEND_ENTRIES:
		if (m->append_entries.entries != NULL) {
			if (m->append_entries.n_entries > 0)
				raft_free(m->append_entries.entries[0].batch);
			raft_free(m->append_entries.entries);
		}
		break;
	case RAFT_IO_INSTALL_SNAPSHOT:
		raft_configuration_close(&m->install_snapshot.conf);
		raft_free(m->install_snapshot.data.base);
		break;
	default:
		break;
	}
}

/* What reaches libraft after a failure: no election messages (the node
 * can store no vote), and for a mute IO only what a leader sends to
 * replicate (raftio_mute). */
static bool failed_hears(const struct raftio *rio, const struct raft_message *m)
{
	if (rio->mute)
		return m->type == RAFT_IO_APPEND_ENTRIES || m->type == RAFT_IO_INSTALL_SNAPSHOT;
	return m->type != RAFT_IO_REQUEST_VOTE && m->type != RAFT_IO_TIMEOUT_NOW;
}

static void note_heard(struct raftio *rio, raft_id id)
{
	unsigned i = 0, oldest = 0;
	while (i < rio->n_heard && rio->heard[i].id != id) {
		if (rio->heard[i].ms < rio->heard[oldest].ms)
			oldest = i;
		i++;
	}
	if (i == rio->n_heard) {
		/* Full: the server heard from longest ago (removed, most likely)
		 * makes room. */
		i = rio->n_heard < RAFTIO_HEARD_MAX ? rio->n_heard++ : oldest;
		rio->heard[i].id = id;
	}
	rio->heard[i].ms = uv_now(rio->loop);
}

bool raftio_last_heard(struct raft_io *io, raft_id id, uint64_t *ret_ms_ago)
{
	struct raftio *rio = io->impl;
	for (unsigned i = 0; rio != NULL && i < rio->n_heard; i++) {
		if (rio->heard[i].id == id) {
			*ret_ms_ago = uv_now(rio->loop) - rio->heard[i].ms;
			return true;
		}
	}
	return false;
}

static void transport_recv(struct raftio_transport *t, struct raft_message *msg, void *arg)
{
	struct raftio *rio = arg;
	(void)t;
	if (rio->closing || rio->recv_cb == NULL || (rio->failed && !failed_hears(rio, msg))) {
		message_drop(msg);
		return;
	}
	note_heard(rio, msg->server_id);
	/* Test builds: a snapshot dropped unanswered, as libraft drops one
	 * that arrives while this node takes its own. */
	if (msg->type == RAFT_IO_INSTALL_SNAPSHOT && failpoint_hit("drop_install_snapshot")) {
		message_drop(msg);
		return;
	}
	rio->recv_cb(rio->io, msg);
}

void raftio_tick_now(struct raft_io *io)
{
	struct raftio *rio = io->impl;
	if (rio == NULL || rio->closing || rio->mute || rio->tick_cb == NULL)
		return;
	/* From the timer, never inside the caller's stack (which may be
	 * libraft's own). */
	uv_timer_start(&rio->timer, timer_cb, 0, rio->tick_ms);
}

void raftio_mute(struct raft_io *io)
{
	struct raftio *rio = io->impl;
	assert(rio->failed && !rio->closing);
	rio->mute = true;
	/* What was held completes as if stored, in the order submitted, as
	 * a disk would have answered. */
	struct op *oldest = NULL;
	while (rio->held != NULL) {
		struct op *op = rio->held;
		rio->held = op->next;
		op->next = oldest;
		oldest = op;
	}
	rio->completing++;
	while (oldest != NULL) {
		struct op *op = oldest;
		oldest = op->next;
		op->status = 0;
		raftio_jobs_fire(rio, op);
		free(op);
	}
	rio->completing--;
}

bool raftio_is_mute(struct raft_io *io)
{
	const struct raftio *rio = io->impl;
	return rio != NULL && rio->mute;
}

void raftio_skip_ahead(struct raft_io *io, unsigned ms)
{
	struct raftio *rio = io->impl;
	if (rio == NULL || rio->closing || rio->tick_cb == NULL)
		return;
	rio->clock_ahead += ms;
	raftio_tick_now(io);
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
	struct raftio *rio = io->impl;
	int rv = raftio_jobs_check_open(rio);
	if (rv != 0)
		return rv;
	rio->tick_cb = tick;
	rio->recv_cb = recv;
	if (rio->transport != NULL && !rio->transport_started) {
		rv = rio->transport->start(rio->transport, rio->id,
					   rio->address != NULL ? rio->address : "", transport_recv,
					   rio);
		if (rv != 0) {
			snprintf(io->errmsg, sizeof io->errmsg, "start transport: %s",
				 raft_strerror(rv));
			return rv;
		}
		rio->transport_started = true;
	}
	rio->tick_ms = msecs;
	uv_timer_start(&rio->timer, timer_cb, msecs, msecs);
	return 0;
}

static int io_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *msg,
		   raft_io_send_cb cb)
{
	struct raftio *rio = io->impl;
	if (rio->closing)
		return RAFT_CANCELED;
	if (rio->transport == NULL || !rio->transport_started || rio->mute)
		return RAFT_NOCONNECTION;
	return rio->transport->send(rio->transport, req, msg, cb);
}

static void rio_free(struct raftio *rio)
{
	assert(rio->held == NULL); /* answered by io_close */
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(rio->stmt[i]);
	if (rio->db != NULL)
		sqlite3_close_v2(rio->db);
	uv_mutex_destroy(&rio->db_lock);
	free(rio->address);
	free(rio->path);
	secmem_free(rio->key);
	free(rio);
}

void raftio_maybe_finish_close(struct raftio *rio)
{
	if (!rio->closing || rio->busy || rio->job_due || rio->queue_head != NULL ||
	    rio->completing > 0 || rio->pending_closes > 0 || rio->async_jobs > 0)
		return;
	struct raft_io *io = rio->io;
	raft_io_close_cb cb = rio->close_cb;
	rio_free(rio);
	io->impl = NULL;
	if (cb != NULL)
		cb(io);
}

void raftio_set_inline(struct raft_io *io, bool (*inline_ok)(void *arg), void *arg)
{
	struct raftio *rio = io->impl;
	if (rio == NULL)
		return;
	rio->inline_ok = inline_ok;
	rio->inline_arg = arg;
}

void raftio_timer_closed(uv_handle_t *h)
{
	struct raftio *rio = h->data;
	rio->pending_closes--;
	raftio_maybe_finish_close(rio);
}

static void transport_closed(void *arg)
{
	struct raftio *rio = arg;
	rio->pending_closes--;
	raftio_maybe_finish_close(rio);
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
	struct raftio *rio = io->impl;
	if (rio == NULL || rio->closing)
		return;
	rio->closing = true;
	rio->close_cb = cb;
	raftio_jobs_fire_held(rio);
	/* All counted before any close starts: a transport may call back
	 * synchronously. A timer's uv_close callback is always deferred, so
	 * CB never runs inside this call. */
	rio->pending_closes = rio->transport != NULL ? 3 : 2;
	uv_timer_stop(&rio->timer);
	uv_close((uv_handle_t *)&rio->timer, raftio_timer_closed);
	/* A job that is due still starts (its callbacks must fire), on the
	 * thread pool; the timer closes after it (job_start). */
	if (!rio->job_due)
		uv_close((uv_handle_t *)&rio->job_timer, raftio_timer_closed);
	if (rio->transport != NULL)
		rio->transport->close(rio->transport, transport_closed, rio);
}

/* ------------------------------------------------------------------------ */
/* io->async_work: libraft's work (an FSM's asynchronous snapshot) on the
 * loop's thread pool, its callback on the loop. Close waits for it: the
 * callback may still call into this IO (snapshot_put, refused then). */

struct async_job {
	uv_work_t work;
	struct raftio *rio;
	struct raft_io_async_work *req;
	raft_io_async_work_cb cb;
	int status;
};

static void async_job_run(uv_work_t *w)
{
	struct async_job *j = w->data;
	j->status = j->req->work(j->req);
}

static void async_job_done(uv_work_t *w, int status)
{
	struct async_job *j = w->data;
	struct raftio *rio = j->rio;
	rio->completing++;
	j->cb(j->req, status == UV_ECANCELED ? RAFT_CANCELED : j->status);
	rio->completing--;
	rio->async_jobs--;
	free(j);
	raftio_maybe_finish_close(rio);
}

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req,
			 raft_io_async_work_cb cb)
{
	struct raftio *rio = io->impl;
	if (rio->closing)
		return RAFT_CANCELED;
	struct async_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return RAFT_NOMEM;
	j->rio = rio;
	j->req = req;
	j->cb = cb;
	j->work.data = j;
	int rv = uv_queue_work(rio->loop, &j->work, async_job_run, async_job_done);
	assert(rv == 0); /* cannot fail with valid arguments */
	(void)rv;
	rio->async_jobs++;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Setup */

static unsigned seed_random(void)
{
	unsigned seed = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, &seed, sizeof seed);
		close(fd);
		if (n == (ssize_t)sizeof seed)
			return seed;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned)ts.tv_nsec ^ (unsigned)getpid();
}

static char *join_path(const char *dir)
{
	size_t n = strlen(dir) + sizeof "/" RAFTIO_DB_NAME;
	char *p = malloc(n);
	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, RAFTIO_DB_NAME);
	return p;
}

static void setup_methods(struct raft_io *io, struct raftio *rio)
{
	memset(io, 0, sizeof *io);
	io->version = 2;
	io->impl = rio;
	io->init = io_init;
	io->close = io_close;
	io->load = io_load;
	io->start = io_start;
	io->bootstrap = io_bootstrap;
	io->recover = io_recover;
	io->set_term = io_set_term;
	io->set_vote = io_set_vote;
	io->send = io_send;
	io->append = io_append;
	io->truncate = io_truncate;
	io->snapshot_put = io_snapshot_put;
	io->snapshot_get = io_snapshot_get;
	io->time = io_time;
	io->random = io_random;
	io->async_work = io_async_work;
}

int raftio_init(struct raft_io *io, uv_loop_t *loop, const char *dir,
		const uint8_t key[RAFTIO_KEY_LEN], struct raftio_transport *transport,
		char *errmsg, size_t errlen)
{
	errbuf_t err = "";
	raft_index last = 0;
	int rv;

	if (errlen > 0)
		errmsg[0] = '\0';
	struct raftio *rio = calloc(1, sizeof *rio);
	if (rio == NULL)
		return RAFT_NOMEM;
	if (uv_mutex_init(&rio->db_lock) != 0) {
		free(rio);
		return RAFT_NOMEM;
	}
	rio->io = io;
	rio->loop = loop;
	rio->transport = transport;
	rio->rand_state = seed_random();
	rio->path = join_path(dir);
	rio->key = secmem_alloc(RAFTIO_KEY_LEN);
	if (rio->path == NULL || rio->key == NULL) {
		rv = RAFT_NOMEM;
		goto fail;
	}
	memcpy(rio->key, key, RAFTIO_KEY_LEN);
	raftio_rows_lock(rio);
	rv = raftio_rows_db_open(rio, err);
	if (rv == 0)
		rv = raftio_rows_last_index(rio, &last, err); /* load() refines this */
	raftio_rows_unlock(rio);
	if (rv != 0)
		goto fail;
	rio->next_index = last + 1;
	/* Last: a timer, once initialized, can only be released asynchronously. */
	uv_timer_init(loop, &rio->timer);
	rio->timer.data = rio;
	uv_timer_init(loop, &rio->job_timer);
	rio->job_timer.data = rio;
	rio->work.data = rio; /* uv_queue_work leaves it as it is */
	setup_methods(io, rio);
	snprintf(io->errmsg, sizeof io->errmsg, "%s", "");
	return 0;
fail:
	if (errlen > 0)
		snprintf(errmsg, errlen, "%s", err[0] != '\0' ? err : raft_strerror(rv));
	rio_free(rio);
	return rv;
}

void raftio_set_on_failure(struct raft_io *io,
			   void (*cb)(void *arg, int code, int sys_errno, const char *msg), void *arg)
{
	struct raftio *rio = io->impl;
	rio->on_failure = cb;
	rio->failure_arg = arg;
}

void raftio_set_on_append_sync(struct raft_io *io, void (*cb)(void *arg, uint64_t ns), void *arg)
{
	struct raftio *rio = io->impl;
	rio->on_append_sync = cb;
	rio->append_sync_arg = arg;
}

raft_index raftio_durable_index(struct raft_io *io)
{
	const struct raftio *rio = io->impl;
	return rio->durable_index;
}

int raftio_drop_after(struct raft_io *io, raft_index index, char *errmsg, size_t errlen)
{
	struct raftio *rio = io->impl;
	errbuf_t err = "";
	raftio_rows_lock(rio);
	int rv = raftio_rows_tx_begin(rio, err);
	if (rv == 0)
		rv = raftio_rows_delete_entries(rio, ST_ENTRY_TRUNCATE, index + 1, err);
	rv = raftio_rows_tx_end(rio, rv, err);
	/* Copies every page this connection sees into the main file and syncs
	 * it: pages a failed fsync left only in the page cache are written
	 * again, so what is loaded next is what is on disk. */
	if (rv == 0)
		rv = raftio_rows_db_exec(rio, "PRAGMA wal_checkpoint(TRUNCATE)", err);
	raftio_rows_unlock(rio);
	if (rv != 0 && errlen > 0)
		snprintf(errmsg, errlen, "%s", err[0] != '\0' ? err : raft_strerror(rv));
	return rv;
}

int raftio_probe(const char *dir)
{
	char path[4096], journal[4200];
	snprintf(path, sizeof path, "%s/%s", dir, RAFTIO_PROBE_NAME);
	snprintf(journal, sizeof journal, "%s-journal", path);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
				 crashvfs_vfs());
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db,
				  "PRAGMA synchronous=FULL;"
				  "CREATE TABLE IF NOT EXISTS probe (x BLOB);"
				  "BEGIN; DELETE FROM probe; INSERT INTO probe VALUES (zeroblob(4096)); "
				  "COMMIT;",
				  NULL, NULL, NULL);
	if (rc != SQLITE_OK && db != NULL)
		rc = sqlite3_extended_errcode(db);
	sqlite3_close_v2(db);
	unlink(path);
	unlink(journal);
	if (rc == SQLITE_OK)
		return 0;
	return (rc & 0xff) == SQLITE_FULL ? RAFT_NOSPACE : RAFT_IOERR;
}

int raftio_has_state(const char *dir)
{
	struct stat st;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int has = 1; /* anything unreadable counts as state: never bootstrap over it */
	char *path = join_path(dir);

	if (path == NULL)
		return 1;
	if (stat(path, &st) != 0 || st.st_size == 0) {
		free(path);
		return 0;
	}
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, crashvfs_vfs()) == SQLITE_OK &&
	    sqlite3_prepare_v2(db,
			       "SELECT (SELECT count(*) FROM meta WHERE term > 0)"
			       " + (SELECT count(*) FROM entries) + (SELECT count(*) FROM snapshots)",
			       -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		has = sqlite3_column_int64(s, 0) > 0;
	else if (db != NULL && (sqlite3_errcode(db) == SQLITE_ERROR) &&
		 strstr(sqlite3_errmsg(db), "no such table") != NULL)
		has = 0; /* created by raftio_init but never written */
	sqlite3_finalize(s);
	sqlite3_close_v2(db);
	free(path);
	return has;
}

int raftio_check(const char *dir, char *errmsg, size_t errlen)
{
	errbuf_t err = "";
	struct stat st;
	struct loaded_state ls;
	int rv;

	if (errlen > 0)
		errmsg[0] = '\0';
	char *path = join_path(dir);
	if (path == NULL)
		return RAFT_NOMEM;
	if (stat(path, &st) != 0 && errno == ENOENT) {
		free(path);
		return 0; /* nothing stored yet */
	}
	struct raftio *rio = calloc(1, sizeof *rio);
	if (rio == NULL || uv_mutex_init(&rio->db_lock) != 0) {
		free(rio);
		free(path);
		return RAFT_NOMEM;
	}
	rio->path = path;
	raftio_rows_lock(rio);
	rv = raftio_rows_db_open(rio, err);
	if (rv == 0)
		rv = raftio_rows_db_quick_check(rio, err);
	if (rv == 0) {
		rv = raftio_rows_load_state(rio, false, &ls, err);
		if (rv == 0)
			raftio_rows_loaded_state_free(&ls);
	}
	raftio_rows_unlock(rio);
	if (rv != 0 && errlen > 0)
		snprintf(errmsg, errlen, "%s", err[0] != '\0' ? err : raft_strerror(rv));
	rio_free(rio);
	return rv;
}

