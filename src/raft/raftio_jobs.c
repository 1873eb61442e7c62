/* raftio's job queue: requests batched into one transaction per job on
 * the thread pool (or inline), their callbacks, and what a storage failure
 * does to them (raftio_internal.h). */
#include "raft/raftio_internal.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* The worker and its queue */

static void work_run(uv_work_t *w)
{
	struct raftio *rio = w->data;
	char *err = rio->job_errmsg;
	int rv;

	if (rio->failed) {
		snprintf(err, RAFT_ERRMSG_BUF_SIZE, "%s", rio->failed_errmsg);
		rio->job_status = RAFT_IOERR;
		return;
	}
	uint64_t start = uv_hrtime();
	rio->job_appends = false;
	raftio_rows_lock(rio);
	rv = raftio_rows_tx_begin(rio, err);
	for (struct op *op = rio->job_ops; op != NULL && rv == 0; op = op->next) {
		switch (op->kind) {
		case OP_APPEND:
			rv = raftio_rows_op_append(rio, op, err);
			rio->job_appends = true;
			break;
		case OP_TRUNCATE:
			rv = raftio_rows_delete_entries(rio, ST_ENTRY_TRUNCATE, op->truncate.index,
							 err);
			break;
		case OP_SNAPSHOT_PUT:
			rv = raftio_rows_op_snapshot_put(rio, op, err);
			break;
		case OP_SNAPSHOT_GET:
			/* A read: its failure is its own, not the transaction's. */
			op->status = raftio_rows_snapshot_read_latest(rio, &op->get.result, err);
			if (op->status == 0 && op->get.result == NULL) {
				raftio_rows_set_err(err, rio, "no snapshot stored");
				op->status = RAFT_NOTFOUND;
			}
			break;
		}
	}
	rio->job_status = raftio_rows_tx_end(rio, rv, err);
	raftio_rows_unlock(rio);
	rio->job_ns = uv_hrtime() - start;
}

void raftio_jobs_fire(struct raftio *rio, struct op *op)
{
	switch (op->kind) {
	case OP_APPEND:
		if (op->append.cb != NULL)
			op->append.cb(op->append.req, op->status);
		break;
	case OP_TRUNCATE:
		break;
	case OP_SNAPSHOT_PUT:
		if (op->put.cb != NULL)
			op->put.cb(op->put.req, op->status);
		break;
	case OP_SNAPSHOT_GET:
		if (op->status != 0) {
			raftio_rows_snapshot_free(op->get.result);
			op->get.result = NULL;
		}
		op->get.cb(op->get.req, op->get.result, op->status);
		break;
	}
	(void)rio;
}

static void work_done(uv_work_t *w, int uvstatus);

/* Starts a job with every request queued so far: all those of the loop
 * turn that queued the first one share its transaction, and a leader's
 * sends of that turn (libraft sends right after it appends) leave before
 * its own disk write starts competing with them for the CPU. */
static void job_start(uv_timer_t *h)
{
	struct raftio *rio = h->data;
	rio->job_due = false;
	rio->job_ops = rio->queue_head;
	rio->queue_head = rio->queue_tail = NULL;
	rio->job_status = 0;
	rio->job_errmsg[0] = '\0';
	rio->busy = true;
	bool run_inline =
		!rio->closing && rio->inline_ok != NULL && rio->inline_ok(rio->inline_arg);
	/* uv_queue_work cannot fail with valid arguments; run inline rather
	 * than lose requests if it does. */
	if (run_inline || uv_queue_work(rio->loop, &rio->work, work_run, work_done) != 0) {
		work_run(&rio->work);
		work_done(&rio->work, 0);
	}
	/* io_close left the timer open for this job (or, called from one of
	 * its callbacks, has closed it already). */
	if (rio->closing && !rio->job_due && !uv_is_closing((uv_handle_t *)&rio->job_timer))
		uv_close((uv_handle_t *)&rio->job_timer, raftio_timer_closed);
}

/* Schedules a job for what is queued, unless one is running or due. */
static void kick(struct raftio *rio)
{
	if (rio->busy || rio->job_due || rio->queue_head == NULL)
		return;
	rio->job_due = true;
	if (uv_is_closing((uv_handle_t *)&rio->job_timer))
		job_start(&rio->job_timer); /* closing: no later turn to wait for */
	else
		uv_timer_start(&rio->job_timer, job_start, 0, 0);
}

void raftio_jobs_storage_failed(struct raftio *rio, int code, const char *msg)
{
	if (rio->failed)
		return;
	rio->failed = true;
	rio->failed_code = code == RAFT_NOSPACE ? RAFT_NOSPACE : RAFT_IOERR;
	snprintf(rio->failed_errmsg, sizeof rio->failed_errmsg, "%s", msg);
	if (rio->on_failure != NULL)
		rio->on_failure(rio->failure_arg, rio->failed_code, rio->sys_errno, msg);
}

void raftio_jobs_hold(struct raftio *rio, struct op *op)
{
	assert(op->kind == OP_APPEND);
	op->next = rio->held;
	rio->held = op;
}

void raftio_jobs_fire_held(struct raftio *rio)
{
	assert(rio->closing); /* libraft is unavailable (raft_close) */
	rio->completing++;
	while (rio->held != NULL) {
		struct op *op = rio->held;
		rio->held = op->next;
		op->status = 0;
		raftio_jobs_fire(rio, op);
		free(op);
	}
	rio->completing--;
}

/* Whether OP, whose job failed, completes anyway: a mute IO stores
 * nothing, and a write of it completes as if stored (raftio_mute). */
static bool mute_completes(const struct raftio *rio, const struct op *op)
{
	return rio->mute && op->kind != OP_SNAPSHOT_GET;
}

/* OP's transaction committed: what it wrote is durable. */
static void note_durable(struct raftio *rio, const struct op *op)
{
	switch (op->kind) {
	case OP_APPEND:
		rio->durable_index = op->append.index + op->append.n - 1;
		break;
	case OP_TRUNCATE:
		if (op->truncate.index <= rio->durable_index)
			rio->durable_index = op->truncate.index - 1;
		break;
	case OP_SNAPSHOT_PUT:
		if (op->put.trailing == 0 || op->put.snapshot->index > rio->durable_index)
			rio->durable_index = op->put.snapshot->index;
		break;
	case OP_SNAPSHOT_GET:
		break;
	}
}

static void work_done(uv_work_t *w, int uvstatus)
{
	struct raftio *rio = w->data;
	struct op *ops = rio->job_ops;
	int status = rio->job_status;
	bool any_error = status != 0;

	(void)uvstatus; /* we never cancel */
	rio->job_ops = NULL;
	rio->busy = false;
	if (status != 0)
		raftio_jobs_storage_failed(rio, status, rio->job_errmsg); /* may mute us */
	for (struct op *op = ops; op != NULL; op = op->next) {
		if (status != 0)
			op->status = mute_completes(rio, op) ? 0 : status;
		else
			note_durable(rio, op);
		any_error |= op->status != 0;
	}
	if (any_error)
		snprintf(rio->io->errmsg, sizeof rio->io->errmsg, "%s", rio->job_errmsg);

	/* Callbacks may submit new requests or even close us: queue them, and
	 * only free ourselves after the loop. */
	rio->completing++;
	while (ops != NULL) {
		struct op *next = ops->next;
		if (status != 0 && ops->kind == OP_APPEND && !rio->mute) {
			raftio_jobs_hold(rio, ops);
		} else {
			raftio_jobs_fire(rio, ops);
			free(ops);
		}
		ops = next;
	}
	rio->completing--;
	if (rio->closing)
		raftio_jobs_fire_held(rio); /* a job that failed while closing */
	if (status == 0 && rio->job_appends && rio->on_append_sync != NULL && !rio->closing)
		rio->on_append_sync(rio->append_sync_arg, rio->job_ns);
	kick(rio);
	raftio_maybe_finish_close(rio);
}

int raftio_jobs_check_open(struct raftio *rio)
{
	if (rio->closing)
		return RAFT_CANCELED;
	if (rio->failed && !rio->mute) {
		snprintf(rio->io->errmsg, sizeof rio->io->errmsg, "%s", rio->failed_errmsg);
		return rio->failed_code;
	}
	return 0;
}

struct op *raftio_jobs_op_alloc(enum op_kind kind, int *rv)
{
	struct op *op = calloc(1, sizeof *op);
	*rv = op != NULL ? 0 : RAFT_NOMEM;
	if (op != NULL)
		op->kind = kind;
	return op;
}

struct op *raftio_jobs_op_new(struct raftio *rio, enum op_kind kind, int *rv)
{
	*rv = raftio_jobs_check_open(rio);
	return *rv == 0 ? raftio_jobs_op_alloc(kind, rv) : NULL;
}

void raftio_jobs_enqueue(struct raftio *rio, struct op *op)
{
	if (rio->queue_tail != NULL)
		rio->queue_tail->next = op;
	else
		rio->queue_head = op;
	rio->queue_tail = op;
	kick(rio);
}

