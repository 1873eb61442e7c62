/* Shared between raftio.c (the raft_io methods), raftio_rows.c (the SQL
 * schema and rows) and raftio_jobs.c (the job queue) only; not an
 * interface. raftio.h is the module's interface.
 * The threading rules are at the top of raftio.c. */
#ifndef VAULTFS_RAFT_RAFTIO_INTERNAL_H
#define VAULTFS_RAFT_RAFTIO_INTERNAL_H

#include <raft.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "raft/raftio.h"

#define RAFTIO_DB_NAME "raft.db"
#define RAFTIO_PROBE_NAME "raft-probe.db"
/* 2: every row carries a keyed MAC (rowmac.h). A version 1 database has
 * none to check, and no way to tell one made before the MACs from one whose
 * MACs were stripped: it is refused unless empty. */
#define RAFTIO_SCHEMA_VERSION 2
/* Snapshots kept in the database; older ones are deleted on snapshot_put.
 * Only the newest is ever loaded or sent. */
#define RAFTIO_KEEP_SNAPSHOTS 1
/* Format byte of our own configuration encoding (snapshots table). */
#define RAFTIO_CONF_FORMAT 1
#define RAFTIO_MAX_ADDRESS 1024

typedef char errbuf_t[RAFT_ERRMSG_BUF_SIZE];

enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_META_GET,
	ST_META_PUT,
	ST_ENTRY_PUT,
	ST_ENTRY_TRUNCATE,
	ST_ENTRY_COMPACT,
	ST_ENTRY_CLEAR,
	ST_ENTRY_RANGE,
	ST_ENTRY_LOAD,
	ST_SNAP_PUT,
	ST_SNAP_PRUNE,
	ST_SNAP_LATEST,
	ST_SNAP_MAX,
	ST_MAX_TERM,
	ST_COUNT
};

enum op_kind { OP_APPEND, OP_TRUNCATE, OP_SNAPSHOT_PUT, OP_SNAPSHOT_GET };

/* One queued request. Pointers into libraft memory (entries, snapshot) stay
 * valid until we fire the request's callback, so the worker reads them in
 * place instead of copying. */
struct op {
	enum op_kind kind;
	int status;
	struct op *next;
	union {
		struct {
			struct raft_io_append *req;
			raft_io_append_cb cb;
			const struct raft_entry *entries;
			unsigned n;
			raft_index index; /* of entries[0] */
		} append;
		struct {
			raft_index index;
		} truncate;
		struct {
			struct raft_io_snapshot_put *req;
			raft_io_snapshot_put_cb cb;
			const struct raft_snapshot *snapshot;
			unsigned trailing;
		} put;
		struct {
			struct raft_io_snapshot_get *req;
			raft_io_snapshot_get_cb cb;
			struct raft_snapshot *result;
		} get;
	};
};

/* When a server's last message arrived (raftio_last_heard). */
#define RAFTIO_HEARD_MAX 64u
struct raftio_heard {
	raft_id id;
	uint64_t ms; /* uv_now */
};

struct raftio {
	struct raft_io *io;
	uv_loop_t *loop;
	char *path; /* DIR/raft.db, for messages */
	struct raftio_transport *transport;
	bool transport_started;
	raft_id id;
	char *address;
	struct raftio_heard heard[RAFTIO_HEARD_MAX];
	unsigned n_heard;
	/* ROWMAC_KEY_LEN bytes of secure memory: the key of every row's MAC.
	 * NULL in raftio_check, which checks only the CRCs. */
	uint8_t *key;

	sqlite3 *db;
	uv_mutex_t db_lock; /* serializes every use of db and stmt */
	uintptr_t db_holder; /* the thread holding db_lock (atomic), 0: none */
	sqlite3_stmt *stmt[ST_COUNT];

	uv_timer_t timer;
	raft_io_tick_cb tick_cb;
	unsigned tick_ms;      /* libraft's tick period (io_start) */
	raft_time clock_ahead; /* added to uv_now by io_time: raftio_skip_ahead */
	raft_io_recv_cb recv_cb;
	unsigned rand_state;

	/* Index the next appended entry gets; tracks submissions, not commits. */
	raft_index next_index;

	/* Requests not yet handed to a job (FIFO). */
	struct op *queue_head, *queue_tail;
	/* The job in flight: owned by the worker until work_done runs. */
	bool busy;
	uv_work_t work;
	/* A job begins in the loop turn after the one that queued its first
	 * request (job_timer, 0 ms): see job_start. */
	uv_timer_t job_timer;
	bool job_due; /* job_timer will start the next job */
	/* Jobs run on the loop thread instead of the pool while
	 * inline_ok(inline_arg) says so (raftio_set_inline). */
	bool (*inline_ok)(void *arg);
	void *inline_arg;
	struct op *job_ops;
	int job_status;
	uint64_t job_ns;     /* how long the job's transaction took */
	bool job_appends;    /* the job stored log entries */
	void (*on_append_sync)(void *arg, uint64_t ns);
	void *append_sync_arg;
	errbuf_t job_errmsg;
	/* A write transaction failed: state on disk is no longer what Raft
	 * believes, so every later request fails too, with failed_code
	 * (RAFT_NOSPACE or RAFT_IOERR), and on_failure was told. */
	bool failed;
	int failed_code;
	errbuf_t failed_errmsg;
	void (*on_failure)(void *arg, int code, int sys_errno, const char *msg);
	void *failure_arg;
	bool mute; /* raftio_mute: after a failure, following in memory only */
	/* Appends that failed, or came after a failure, newest first: their
	 * callbacks fire at close, not before (see io_close). */
	struct op *held;
	/* The errno of the system call behind the last SQLite failure (0: none
	 * known), set by db_fail under db_lock. */
	int sys_errno;
	/* The last index whose write was committed: what follows may be on
	 * disk or not after a failed write (raftio_drop_after). */
	raft_index durable_index;

	int completing; /* >0 while callbacks of a job are being fired */
	bool closing;
	int pending_closes; /* timer and transport close callbacks awaited */
	int async_jobs;     /* io->async_work requests not answered yet */
	raft_io_close_cb close_cb;
};

/* What load() hands to libraft. */
struct loaded_state {
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snapshot;
	raft_index start;
	struct raft_entry *entries;
	size_t n;
};

/* raftio_rows.c: the schema, rows and their checks (db_lock held unless
 * said otherwise). */
/* Formats "PATH: message" into ERR (RAFT_ERRMSG_BUF_SIZE bytes). */
__attribute__((format(printf, 3, 4))) void raftio_rows_set_err(char *err,
								const struct raftio *rio,
								const char *fmt, ...);
/* Takes db_lock, noting its holder so that what needs it can assert it. */
void raftio_rows_lock(struct raftio *rio);
void raftio_rows_unlock(struct raftio *rio);
int raftio_rows_tx_begin(struct raftio *rio, char *err);
int raftio_rows_tx_end(struct raftio *rio, int status, char *err);
int raftio_rows_meta_read(struct raftio *rio, raft_term *term, raft_id *vote, char *err);
void raftio_rows_snapshot_free(struct raft_snapshot *snap);
/* Latest snapshot or NULL if there is none. */
int raftio_rows_snapshot_read_latest(struct raftio *rio, struct raft_snapshot **ret, char *err);
int raftio_rows_last_index(struct raftio *rio, raft_index *ret, char *err);
int raftio_rows_max_term(struct raftio *rio, raft_term *ret, char *err);
int raftio_rows_meta_put(struct raftio *rio, raft_term term, raft_id vote, char *err);
int raftio_rows_delete_entries(struct raftio *rio, int st, raft_index idx, char *err);
int raftio_rows_op_append(struct raftio *rio, struct op *op, char *err);
/* Stores the snapshot, prunes older ones, then compacts or clears the log. */
int raftio_rows_op_snapshot_put(struct raftio *rio, struct op *op, char *err);
void raftio_rows_loaded_state_free(struct loaded_state *ls);
/* Reads term, vote, the latest snapshot and the log in one transaction (a
 * consistent view), checking every row on the way (db_lock held). With FIX,
 * a log that lies wholly before the snapshot is deleted, as load() must;
 * a check only reads. On failure LS holds nothing. */
int raftio_rows_load_state(struct raftio *rio, bool fix, struct loaded_state *ls, char *err);
int raftio_rows_write_conf_entry(struct raftio *rio, const struct raft_configuration *conf,
			    raft_index idx, raft_term term, bool set_term, char *err);
int raftio_rows_db_exec(struct raftio *rio, const char *sql, char *err);
int raftio_rows_db_open(struct raftio *rio, char *err);
/* SQLite's structural check: damage anywhere in the file, also in rows
 * that load() never reads, is found before anything is served. */
int raftio_rows_db_quick_check(struct raftio *rio, char *err);

/* raftio_jobs.c: the job queue, failures and what is held. */
void raftio_jobs_fire(struct raftio *rio, struct op *op);
/* A write failed (loop thread): from now on nothing is written, and the
 * owner is told once so that it can reopen the storage. */
void raftio_jobs_storage_failed(struct raftio *rio, int code, const char *msg);
/* A failed append is answered only at close, and then as if it had
 * succeeded. libraft 0.15 answers a failed append by truncating its
 * in-memory log from the request's first index, while appends that cover
 * the same entries may be outstanding: the next failed callback then
 * releases and truncates entries that are gone (double frees and SEGVs in
 * removeSuffix, seen in fault runs, in either order of the callbacks).
 * Held, the appends look merely slow to libraft until the node closes it
 * (node_storage.c), or mutes it once it follows (raftio_mute: they then
 * complete as if stored, in memory only). At close libraft is already
 * unavailable: it neither sends nor commits anything, and a successful
 * append callback only releases the request's entries, with no
 * truncation. Nothing of this reaches the disk or a peer, and the next
 * session drops the uncertain tail of the stored log anyway
 * (raftio_drop_after). */
void raftio_jobs_hold(struct raftio *rio, struct op *op);
/* At close: every held append completes, as stored. */
void raftio_jobs_fire_held(struct raftio *rio);
/* Returns 0 or the error a new request must fail with right away. */
int raftio_jobs_check_open(struct raftio *rio);
struct op *raftio_jobs_op_alloc(enum op_kind kind, int *rv);
struct op *raftio_jobs_op_new(struct raftio *rio, enum op_kind kind, int *rv);
void raftio_jobs_enqueue(struct raftio *rio, struct op *op);

/* raftio.c */
/* The last step of close(): runs once no job, callback or handle is left. */
void raftio_maybe_finish_close(struct raftio *rio);
void raftio_timer_closed(uv_handle_t *h);

#endif
