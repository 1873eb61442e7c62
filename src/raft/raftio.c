/* struct raft_io (version 1) on SQLite + libuv. See raftio.h.
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

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "raft/crashvfs.h"
#include "raft/rowmac.h"

#define RAFTIO_DB_NAME "raft.db"
#define RAFTIO_PROBE_NAME "raft-probe.db"
/* 2: every row carries a keyed MAC (rowmac.h). A version 1 database has
 * none to check, and no way to tell one made before the MACs from one whose
 * MACs were stripped: it is refused unless empty. */
#define RAFTIO_SCHEMA_VERSION 2
/* Snapshots kept in the database; older ones are deleted on snapshot_put. */
#define RAFTIO_KEEP_SNAPSHOTS 2
/* Format byte of our own configuration encoding (snapshots table). */
#define RAFTIO_CONF_FORMAT 1
#define RAFTIO_MAX_ADDRESS 1024

typedef char errbuf_t[RAFT_ERRMSG_BUF_SIZE];

/* ------------------------------------------------------------------------ */
/* Checksums: every row carries a CRC-32 so that bit rot is reported as
 * RAFT_CORRUPT instead of being served to Raft, also by raftio_check before
 * unseal; and a keyed MAC (rowmac.h), checked once the key is known, so
 * that tampering is reported too. */

static uint32_t crc_table[256];
static uv_once_t crc_once = UV_ONCE_INIT;

static void crc_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
		crc_table[i] = c;
	}
}

static uint32_t crc_update(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = crc_table[(crc ^ b[i]) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

static uint32_t crc_u64(uint32_t crc, uint64_t v)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	return crc_update(crc, le, sizeof le);
}

static uint32_t entry_crc(raft_index idx, raft_term term, unsigned short type,
			  const void *data, size_t len)
{
	uint32_t crc = crc_u64(0, idx);
	crc = crc_u64(crc, term);
	crc = crc_u64(crc, type);
	return crc_update(crc, data, len);
}

static uint32_t snapshot_header_crc(raft_index idx, raft_term term, raft_index conf_index,
				    const void *conf, size_t conf_len)
{
	uint32_t crc = crc_u64(0, idx);
	crc = crc_u64(crc, term);
	crc = crc_u64(crc, conf_index);
	return crc_update(crc, conf, conf_len);
}

/* ------------------------------------------------------------------------ */
/* State */

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

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_META_GET] = "SELECT term, vote, mac FROM meta WHERE id = 1",
	[ST_META_PUT] = "INSERT OR REPLACE INTO meta(id, term, vote, mac) VALUES (1, ?1, ?2, ?3)",
	[ST_ENTRY_PUT] = "INSERT INTO entries(idx, term, type, data, crc, mac) "
			 "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_ENTRY_TRUNCATE] = "DELETE FROM entries WHERE idx >= ?1",
	[ST_ENTRY_COMPACT] = "DELETE FROM entries WHERE idx <= ?1",
	[ST_ENTRY_CLEAR] = "DELETE FROM entries",
	[ST_ENTRY_RANGE] = "SELECT count(*), min(idx), max(idx), coalesce(sum(length(data)), 0) "
			   "FROM entries",
	[ST_ENTRY_LOAD] = "SELECT idx, term, type, data, crc, mac FROM entries WHERE idx >= ?1 "
			  "ORDER BY idx",
	[ST_SNAP_PUT] = "INSERT OR REPLACE INTO snapshots(idx, term, conf, conf_index, data, crc, mac) "
			"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_SNAP_PRUNE] = "DELETE FROM snapshots WHERE idx NOT IN "
			  "(SELECT idx FROM snapshots ORDER BY idx DESC LIMIT ?1)",
	[ST_SNAP_LATEST] = "SELECT idx, term, conf, conf_index, data, crc, mac FROM snapshots "
			   "ORDER BY idx DESC LIMIT 1",
	[ST_SNAP_MAX] = "SELECT coalesce(max(idx), 0) FROM snapshots",
	[ST_MAX_TERM] = "SELECT max((SELECT coalesce(max(term), 0) FROM entries),"
			" (SELECT coalesce(max(term), 0) FROM snapshots),"
			" (SELECT coalesce(max(term), 0) FROM meta))",
};

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta ("
	"  id INTEGER PRIMARY KEY CHECK (id = 1),"
	"  term INTEGER NOT NULL, vote INTEGER NOT NULL, mac BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS entries ("
	"  idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL,"
	"  data BLOB NOT NULL, crc INTEGER NOT NULL, mac BLOB NOT NULL);"
	"CREATE TABLE IF NOT EXISTS snapshots ("
	"  idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, conf BLOB NOT NULL,"
	"  conf_index INTEGER NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL,"
	"  mac BLOB NOT NULL);"
	"PRAGMA user_version = 2;";

/* A version 1 database that holds nothing (made by raftio_init, never
 * written) becomes version 2 by starting over. */
static const char schema_v1_drop_sql[] =
	"DROP TABLE IF EXISTS meta; DROP TABLE IF EXISTS entries; DROP TABLE IF EXISTS snapshots;";

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

struct raftio {
	struct raft_io *io;
	uv_loop_t *loop;
	char *path; /* DIR/raft.db, for messages */
	struct raftio_transport *transport;
	bool transport_started;
	raft_id id;
	char *address;
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
	void (*on_append_sync)(void *arg, unsigned ms);
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
	raft_io_close_cb close_cb;
};

/* ------------------------------------------------------------------------ */
/* SQLite helpers. All of these expect db_lock to be held. */

/* SYS is the errno behind RC: a full filesystem and an exceeded quota are
 * RAFT_NOSPACE, which the node reports as ENOSPC, not as an I/O error. */
static int sqlite_to_raft(int rc, int sys)
{
	rc &= 0xFF;
	if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB)
		return RAFT_CORRUPT;
	if (rc == SQLITE_FULL || sys == ENOSPC || sys == EDQUOT)
		return RAFT_NOSPACE;
	return RAFT_IOERR;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, const struct raftio *rio,
							   const char *fmt, ...)
{
	/* "PATH: message", truncated to fit like every raft errmsg. */
	int n = snprintf(err, RAFT_ERRMSG_BUF_SIZE, "%s: ", rio->path);
	if (n < 0 || n >= RAFT_ERRMSG_BUF_SIZE)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err + n, (size_t)(RAFT_ERRMSG_BUF_SIZE - n), fmt, ap);
	va_end(ap);
}

/* db_lock, noting its holder so that what needs it can assert it. */
static void db_lock(struct raftio *rio)
{
	uv_mutex_lock(&rio->db_lock);
	__atomic_store_n(&rio->db_holder, (uintptr_t)uv_thread_self(), __ATOMIC_RELAXED);
}

static void db_unlock(struct raftio *rio)
{
	__atomic_store_n(&rio->db_holder, (uintptr_t)0, __ATOMIC_RELAXED);
	uv_mutex_unlock(&rio->db_lock);
}

static bool db_held(struct raftio *rio)
{
	return __atomic_load_n(&rio->db_holder, __ATOMIC_RELAXED) == (uintptr_t)uv_thread_self();
}

/* Formats "PATH: sqlite message (WHAT)" and maps RC to a RAFT_* code. SQLite's
 * message goes first so that truncation only eats the context. */
static int db_fail(struct raftio *rio, char *err, int rc, const char *what)
{
	const char *msg = rio->db != NULL ? sqlite3_errmsg(rio->db) : sqlite3_errstr(rc);
	rio->sys_errno = rio->db != NULL ? sqlite3_system_errno(rio->db) : 0;
	set_err(err, rio, "%s%s%s (%s)", msg, rio->sys_errno != 0 ? ": " : "",
		rio->sys_errno != 0 ? strerror(rio->sys_errno) : "", what);
	return sqlite_to_raft(rc, rio->sys_errno);
}

static int corrupt(struct raftio *rio, char *err, const char *what, raft_index idx)
{
	set_err(err, rio, "corrupt raft state: %s (index %llu)", what, idx);
	return RAFT_CORRUPT;
}

/* A row whose MAC does not verify: changed on disk since this node wrote it
 * (edited, copied from another index, another node or an older copy). */
static int tampered(struct raftio *rio, char *err, const char *what, raft_index idx)
{
	set_err(err, rio,
		"tampered raft state: %s (index %llu) fails authentication: it was changed on disk "
		"after this node wrote it",
		what, idx);
	return RAFT_CORRUPT;
}

/* Whether column COL of S's current row is the MAC WANT. */
static bool mac_matches(sqlite3_stmt *s, int col, const uint8_t want[ROWMAC_LEN])
{
	const void *stored = sqlite3_column_blob(s, col);
	return rowmac_equal(want, stored, (size_t)sqlite3_column_bytes(s, col));
}

static sqlite3_int64 to_i64(unsigned long long v)
{
	return v > (unsigned long long)INT64_MAX ? INT64_MAX : (sqlite3_int64)v;
}

/* Runs a statement that returns no rows and resets it. */
static int step_done(struct raftio *rio, int st, char *err)
{
	assert(db_held(rio));
	sqlite3_stmt *s = rio->stmt[st];
	int rc = sqlite3_step(s);
	int ret = 0;
	if (rc != SQLITE_DONE)
		ret = db_fail(rio, err, rc, stmt_sql[st]);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return ret;
}

static int tx_begin(struct raftio *rio, char *err)
{
	return step_done(rio, ST_BEGIN, err);
}

static int tx_end(struct raftio *rio, int status, char *err)
{
	if (status == 0)
		status = step_done(rio, ST_COMMIT, err);
	if (status != 0 && !sqlite3_get_autocommit(rio->db)) {
		errbuf_t ignored;
		step_done(rio, ST_ROLLBACK, ignored);
	}
	return status;
}

/* Binds a blob that may be empty: a NULL pointer would store SQL NULL. */
static int bind_blob(sqlite3_stmt *s, int col, const void *p, size_t n)
{
	return sqlite3_bind_blob64(s, col, n > 0 ? p : "", (sqlite3_uint64)n, SQLITE_STATIC);
}

/* Raft ids use all 64 bits (node ids hash to them): stored as the int64
 * with the same bits, where to_i64 would clamp them. */
static void bind_id(sqlite3_stmt *s, int col, raft_id id)
{
	sqlite3_bind_int64(s, col, (sqlite3_int64)id);
}

static bool col_id(sqlite3_stmt *s, int col, raft_id *ret)
{
	*ret = (raft_id)sqlite3_column_int64(s, col);
	return sqlite3_column_type(s, col) == SQLITE_INTEGER;
}

/* Reads a non-negative integer column; negative means a corrupt row. */
static bool col_u64(sqlite3_stmt *s, int col, unsigned long long *ret)
{
	sqlite3_int64 v = sqlite3_column_int64(s, col);
	*ret = (unsigned long long)v;
	return v >= 0 && sqlite3_column_type(s, col) == SQLITE_INTEGER;
}

/* ------------------------------------------------------------------------ */
/* Configuration encoding for the snapshots table. Our own format (libraft's
 * public API can encode but not decode): u8 format, u32 n, then per server
 * u64 id, u8 role, u32-length-prefixed address. */

static int conf_encode(const struct raft_configuration *c, struct buf *b)
{
	buf_put_u8(b, RAFTIO_CONF_FORMAT);
	buf_put_u32(b, c->n);
	for (unsigned i = 0; i < c->n; i++) {
		const struct raft_server *s = &c->servers[i];
		buf_put_u64(b, s->id);
		buf_put_u8(b, (uint8_t)s->role);
		buf_put_blob(b, s->address, strlen(s->address));
	}
	return b->err != 0 ? RAFT_NOMEM : 0;
}

/* Returns 0, RAFT_NOMEM, or RAFT_MALFORMED for anything undecodable. */
static int conf_decode(const void *p, size_t n, struct raft_configuration *c)
{
	struct cursor cur;
	char address[RAFTIO_MAX_ADDRESS + 1];

	raft_configuration_init(c);
	cursor_init(&cur, p, n);
	if (cursor_u8(&cur) != RAFTIO_CONF_FORMAT)
		return RAFT_MALFORMED;
	uint32_t count = cursor_u32(&cur);
	for (uint32_t i = 0; i < count && cur.err == 0; i++) {
		uint64_t id = cursor_u64(&cur);
		uint8_t role = cursor_u8(&cur);
		size_t len;
		const uint8_t *a = cursor_blob(&cur, RAFTIO_MAX_ADDRESS, &len);
		if (cur.err != 0 || id == 0 || len == 0 || memchr(a, 0, len) != NULL)
			goto bad;
		if (role != RAFT_STANDBY && role != RAFT_VOTER && role != RAFT_SPARE)
			goto bad;
		memcpy(address, a, len);
		address[len] = '\0';
		int rv = raft_configuration_add(c, id, address, role);
		if (rv != 0) {
			raft_configuration_close(c);
			return rv == RAFT_NOMEM ? RAFT_NOMEM : RAFT_MALFORMED;
		}
	}
	if (cursor_done(&cur) != 0 || count == 0)
		goto bad;
	return 0;
bad:
	raft_configuration_close(c);
	raft_configuration_init(c);
	return RAFT_MALFORMED;
}

/* ------------------------------------------------------------------------ */
/* Reading state (db_lock held) */

static int meta_read(struct raftio *rio, raft_term *term, raft_id *vote, char *err)
{
	assert(db_held(rio));
	sqlite3_stmt *s = rio->stmt[ST_META_GET];
	int rc = sqlite3_step(s);
	int ret = 0;
	*term = 0;
	*vote = 0;
	if (rc == SQLITE_ROW) {
		if (!col_u64(s, 0, term) || !col_id(s, 1, vote)) {
			ret = corrupt(rio, err, "bad term/vote row", 0);
		} else if (rio->key != NULL) {
			uint8_t want[ROWMAC_LEN];
			rowmac_meta(rio->key, rio->id, *term, *vote, want);
			if (!mac_matches(s, 2, want))
				ret = tampered(rio, err, "the term and vote row", 0);
		}
	} else if (rc != SQLITE_DONE) {
		ret = db_fail(rio, err, rc, "read term and vote");
	}
	sqlite3_reset(s);
	return ret;
}

struct entry_range {
	raft_index count, min, max, bytes;
};

static int entry_range(struct raftio *rio, struct entry_range *r, char *err)
{
	sqlite3_stmt *s = rio->stmt[ST_ENTRY_RANGE];
	int rc = sqlite3_step(s);
	int ret = 0;
	memset(r, 0, sizeof *r);
	if (rc != SQLITE_ROW) {
		ret = db_fail(rio, err, rc, "read log range");
	} else if (!col_u64(s, 0, &r->count) || !col_u64(s, 3, &r->bytes)) {
		ret = corrupt(rio, err, "bad log summary", 0);
	} else if (r->count > 0 && (!col_u64(s, 1, &r->min) || !col_u64(s, 2, &r->max))) {
		ret = corrupt(rio, err, "bad entry index", 0);
	}
	sqlite3_reset(s);
	return ret;
}

/* Runs a one-row, one-column statement that yields an unsigned number. */
static int query_u64(struct raftio *rio, int stmt, unsigned long long *ret, const char *what,
		     const char *bad, char *err)
{
	sqlite3_stmt *s = rio->stmt[stmt];
	int rc = sqlite3_step(s);
	int rv = 0;
	if (rc != SQLITE_ROW)
		rv = db_fail(rio, err, rc, what);
	else if (!col_u64(s, 0, ret))
		rv = corrupt(rio, err, bad, 0);
	sqlite3_reset(s);
	return rv;
}

static int snapshot_max(struct raftio *rio, raft_index *ret, char *err)
{
	return query_u64(rio, ST_SNAP_MAX, ret, "read snapshot index", "bad snapshot index", err);
}

static void snapshot_free(struct raft_snapshot *snap)
{
	if (snap == NULL)
		return;
	raft_configuration_close(&snap->configuration);
	for (unsigned i = 0; i < snap->n_bufs; i++)
		raft_free(snap->bufs[i].base);
	raft_free(snap->bufs);
	raft_free(snap);
}

/* Builds a raft_malloc'd snapshot from the current row of ST_SNAP_LATEST. */
static int snapshot_from_row(struct raftio *rio, sqlite3_stmt *s, struct raft_snapshot **ret,
			     char *err)
{
	raft_index idx, term, conf_index, crc;
	if (!col_u64(s, 0, &idx) || !col_u64(s, 1, &term) || !col_u64(s, 3, &conf_index) ||
	    !col_u64(s, 5, &crc) || idx == 0 || term == 0 || conf_index > idx)
		return corrupt(rio, err, "bad snapshot header", 0);

	const void *conf = sqlite3_column_blob(s, 2);
	size_t conf_len = (size_t)sqlite3_column_bytes(s, 2);
	const void *data = sqlite3_column_blob(s, 4);
	size_t data_len = (size_t)sqlite3_column_bytes(s, 4);
	if (conf_len == 0 || (data_len > 0 && data == NULL))
		return sqlite3_errcode(rio->db) == SQLITE_NOMEM ? RAFT_NOMEM
								: corrupt(rio, err, "empty snapshot configuration", idx);
	uint32_t want = snapshot_header_crc(idx, term, conf_index, conf, conf_len);
	want = crc_update(want, data, data_len);
	if (want != crc)
		return corrupt(rio, err, "snapshot checksum mismatch", idx);
	if (rio->key != NULL) {
		uint8_t mac[ROWMAC_LEN];
		rowmac_snapshot(rio->key, rio->id, idx, term, conf_index, conf, conf_len, data,
				data_len, mac);
		if (!mac_matches(s, 6, mac))
			return tampered(rio, err, "the snapshot", idx);
	}

	struct raft_snapshot *snap = raft_calloc(1, sizeof *snap);
	if (snap == NULL)
		return RAFT_NOMEM;
	int rv = conf_decode(conf, conf_len, &snap->configuration);
	if (rv != 0) {
		raft_free(snap);
		return rv == RAFT_NOMEM ? rv : corrupt(rio, err, "undecodable snapshot configuration", idx);
	}
	snap->index = idx;
	snap->term = term;
	snap->configuration_index = conf_index;
	snap->bufs = raft_malloc(sizeof *snap->bufs);
	if (snap->bufs == NULL) {
		snapshot_free(snap);
		return RAFT_NOMEM;
	}
	snap->bufs[0].base = raft_malloc(data_len > 0 ? data_len : 1);
	snap->bufs[0].len = data_len;
	snap->n_bufs = 1;
	if (snap->bufs[0].base == NULL) {
		snapshot_free(snap);
		return RAFT_NOMEM;
	}
	if (data_len > 0)
		memcpy(snap->bufs[0].base, data, data_len);
	*ret = snap;
	return 0;
}

/* Latest snapshot or NULL if there is none. */
static int snapshot_read_latest(struct raftio *rio, struct raft_snapshot **ret, char *err)
{
	assert(db_held(rio));
	sqlite3_stmt *s = rio->stmt[ST_SNAP_LATEST];
	int rc = sqlite3_step(s);
	int rv = 0;
	*ret = NULL;
	if (rc == SQLITE_ROW)
		rv = snapshot_from_row(rio, s, ret, err);
	else if (rc != SQLITE_DONE)
		rv = db_fail(rio, err, rc, "read snapshot");
	sqlite3_reset(s);
	return rv;
}

/* Decides which entries load() returns. Without a snapshot the log must
 * start at 1; with one, it may keep trailing entries at or below the
 * snapshot index but must not leave a gap after it. */
static int plan_entries(struct raftio *rio, const struct raft_snapshot *snap,
			const struct entry_range *r, raft_index *start, bool *stale, char *err)
{
	raft_index after = snap != NULL ? snap->index + 1 : 1;
	*stale = false;
	*start = after;
	if (r->count == 0)
		return 0;
	if (r->max - r->min + 1 != r->count)
		return corrupt(rio, err, "log has holes", r->min);
	if (snap == NULL && r->min != 1)
		return corrupt(rio, err, "log does not start at 1 and there is no snapshot", r->min);
	if (r->min > after)
		return corrupt(rio, err, "log starts after the snapshot", r->min);
	if (snap != NULL && r->max < snap->index) {
		/* All entries are older than the snapshot: drop them, or later
		 * appends at snapshot+1 would leave a hole. */
		*stale = true;
		return 0;
	}
	*start = r->min;
	return 0;
}

/* Whether the current row of ST_ENTRY_LOAD has the MAC of these fields
 * (always, without a key). */
static bool entry_mac_ok(const struct raftio *rio, sqlite3_stmt *s, raft_index idx,
			 raft_term term, unsigned type, const void *data, size_t len)
{
	if (rio->key == NULL)
		return true;
	uint8_t want[ROWMAC_LEN];
	rowmac_entry(rio->key, rio->id, idx, term, type, data, len, want);
	return mac_matches(s, 5, want);
}

/* Loads entries [start, ...] into one raft_malloc'd batch. */
static int entries_read(struct raftio *rio, raft_index start, const struct entry_range *r,
			struct raft_entry **ret, size_t *ret_n, char *err)
{
	size_t n = (size_t)(r->max - start + 1);
	size_t total = (size_t)r->bytes; /* upper bound: bytes of all entries */
	struct raft_entry *entries = raft_calloc(n, sizeof *entries);
	uint8_t *batch = raft_malloc(total > 0 ? total : 1);
	size_t used = 0, i = 0;
	int rv = 0;

	if (entries == NULL || batch == NULL) {
		rv = RAFT_NOMEM;
		goto out;
	}
	sqlite3_stmt *s = rio->stmt[ST_ENTRY_LOAD];
	sqlite3_bind_int64(s, 1, to_i64(start));
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		raft_index idx, term, type, crc;
		if (!col_u64(s, 0, &idx) || !col_u64(s, 1, &term) || !col_u64(s, 2, &type) ||
		    !col_u64(s, 4, &crc) || i >= n || idx != start + i) {
			rv = corrupt(rio, err, "bad entry row", start + i);
			break;
		}
		const void *data = sqlite3_column_blob(s, 3);
		size_t len = (size_t)sqlite3_column_bytes(s, 3);
		if (term == 0 || type < RAFT_COMMAND || type > RAFT_CHANGE || len > total - used ||
		    (len > 0 && data == NULL)) {
			rv = corrupt(rio, err, "bad entry term, type or data", idx);
			break;
		}
		if (entry_crc(idx, term, (unsigned short)type, data, len) != crc) {
			rv = corrupt(rio, err, "entry checksum mismatch", idx);
			break;
		}
		if (!entry_mac_ok(rio, s, idx, term, (unsigned)type, data, len)) {
			rv = tampered(rio, err, "log entry", idx);
			break;
		}
		if (len > 0)
			memcpy(batch + used, data, len);
		entries[i].term = term;
		entries[i].type = (unsigned short)type;
		entries[i].buf.base = batch + used;
		entries[i].buf.len = len;
		entries[i].batch = batch;
		used += len;
		i++;
	}
	if (rv == 0 && rc != SQLITE_DONE)
		rv = db_fail(rio, err, rc, "read log entries");
	if (rv == 0 && i != n)
		rv = corrupt(rio, err, "log changed while loading", start + i);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	if (rv != 0) {
		raft_free(batch);
		raft_free(entries);
		return rv;
	}
	*ret = entries;
	*ret_n = n;
	return 0;
}

static int last_index(struct raftio *rio, raft_index *ret, char *err)
{
	assert(db_held(rio));
	struct entry_range r;
	raft_index snap = 0;
	int rv = entry_range(rio, &r, err);
	if (rv == 0)
		rv = snapshot_max(rio, &snap, err);
	if (rv != 0)
		return rv;
	*ret = r.count > 0 && r.max > snap ? r.max : snap;
	return 0;
}

static int max_term(struct raftio *rio, raft_term *ret, char *err)
{
	return query_u64(rio, ST_MAX_TERM, ret, "read highest term", "bad term", err);
}

/* ------------------------------------------------------------------------ */
/* Writing (db_lock held, inside a transaction where it matters) */

static int entry_put(struct raftio *rio, raft_index idx, const struct raft_entry *e, char *err)
{
	sqlite3_stmt *s = rio->stmt[ST_ENTRY_PUT];
	sqlite3_bind_int64(s, 1, to_i64(idx));
	sqlite3_bind_int64(s, 2, to_i64(e->term));
	sqlite3_bind_int(s, 3, e->type);
	bind_blob(s, 4, e->buf.base, e->buf.len);
	sqlite3_bind_int64(s, 5, entry_crc(idx, e->term, e->type, e->buf.base, e->buf.len));
	uint8_t mac[ROWMAC_LEN];
	assert(rio->key != NULL);
	rowmac_entry(rio->key, rio->id, idx, e->term, e->type, e->buf.base, e->buf.len, mac);
	bind_blob(s, 6, mac, sizeof mac);
	return step_done(rio, ST_ENTRY_PUT, err);
}

static int meta_put(struct raftio *rio, raft_term term, raft_id vote, char *err)
{
	sqlite3_stmt *s = rio->stmt[ST_META_PUT];
	uint8_t mac[ROWMAC_LEN];
	assert(rio->key != NULL);
	rowmac_meta(rio->key, rio->id, term, vote, mac);
	sqlite3_bind_int64(s, 1, to_i64(term));
	bind_id(s, 2, vote);
	bind_blob(s, 3, mac, sizeof mac);
	return step_done(rio, ST_META_PUT, err);
}

static int delete_entries(struct raftio *rio, int st, raft_index idx, char *err)
{
	if (st != ST_ENTRY_CLEAR)
		sqlite3_bind_int64(rio->stmt[st], 1, to_i64(idx));
	return step_done(rio, st, err);
}

static int op_append(struct raftio *rio, struct op *op, char *err)
{
	for (unsigned i = 0; i < op->append.n; i++) {
		int rv = entry_put(rio, op->append.index + i, &op->append.entries[i], err);
		if (rv != 0)
			return rv;
	}
	return 0;
}

/* Stores the snapshot, prunes older ones, then compacts or clears the log. */
static int op_snapshot_put(struct raftio *rio, struct op *op, char *err)
{
	const struct raft_snapshot *snap = op->put.snapshot;
	struct buf conf;
	uint8_t *joined = NULL;
	const void *data = NULL;
	size_t len = 0;
	int rv;

	buf_init(&conf);
	rv = conf_encode(&snap->configuration, &conf);
	if (rv != 0)
		goto out;
	for (unsigned i = 0; i < snap->n_bufs; i++)
		len += snap->bufs[i].len;
	if (snap->n_bufs == 1) {
		data = snap->bufs[0].base;
	} else if (len > 0) {
		/* SQLite wants one contiguous blob. */
		joined = malloc(len);
		if (joined == NULL) {
			rv = RAFT_NOMEM;
			goto out;
		}
		for (size_t off = 0, i = 0; i < snap->n_bufs; off += snap->bufs[i].len, i++)
			if (snap->bufs[i].len > 0)
				memcpy(joined + off, snap->bufs[i].base, snap->bufs[i].len);
		data = joined;
	}
	uint32_t crc = snapshot_header_crc(snap->index, snap->term, snap->configuration_index,
					   conf.data, conf.len);
	crc = crc_update(crc, data, len);
	uint8_t mac[ROWMAC_LEN];
	assert(rio->key != NULL);
	rowmac_snapshot(rio->key, rio->id, snap->index, snap->term, snap->configuration_index,
			conf.data, conf.len, data, len, mac);

	sqlite3_stmt *s = rio->stmt[ST_SNAP_PUT];
	sqlite3_bind_int64(s, 1, to_i64(snap->index));
	sqlite3_bind_int64(s, 2, to_i64(snap->term));
	bind_blob(s, 3, conf.data, conf.len);
	sqlite3_bind_int64(s, 4, to_i64(snap->configuration_index));
	bind_blob(s, 5, data, len);
	sqlite3_bind_int64(s, 6, crc);
	bind_blob(s, 7, mac, sizeof mac);
	rv = step_done(rio, ST_SNAP_PUT, err);
	if (rv == 0) {
		sqlite3_bind_int(rio->stmt[ST_SNAP_PRUNE], 1, RAFTIO_KEEP_SNAPSHOTS);
		rv = step_done(rio, ST_SNAP_PRUNE, err);
	}
	if (rv == 0 && op->put.trailing == 0)
		rv = delete_entries(rio, ST_ENTRY_CLEAR, 0, err);
	else if (rv == 0 && snap->index > op->put.trailing)
		rv = delete_entries(rio, ST_ENTRY_COMPACT, snap->index - op->put.trailing, err);
out:
	free(joined);
	buf_free(&conf);
	return rv;
}

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
	db_lock(rio);
	rv = tx_begin(rio, err);
	for (struct op *op = rio->job_ops; op != NULL && rv == 0; op = op->next) {
		switch (op->kind) {
		case OP_APPEND:
			rv = op_append(rio, op, err);
			rio->job_appends = true;
			break;
		case OP_TRUNCATE:
			rv = delete_entries(rio, ST_ENTRY_TRUNCATE, op->truncate.index, err);
			break;
		case OP_SNAPSHOT_PUT:
			rv = op_snapshot_put(rio, op, err);
			break;
		case OP_SNAPSHOT_GET:
			/* A read: its failure is its own, not the transaction's. */
			op->status = snapshot_read_latest(rio, &op->get.result, err);
			if (op->status == 0 && op->get.result == NULL) {
				set_err(err, rio, "no snapshot stored");
				op->status = RAFT_NOTFOUND;
			}
			break;
		}
	}
	rio->job_status = tx_end(rio, rv, err);
	db_unlock(rio);
	rio->job_ns = uv_hrtime() - start;
}

static void fire(struct raftio *rio, struct op *op)
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
			snapshot_free(op->get.result);
			op->get.result = NULL;
		}
		op->get.cb(op->get.req, op->get.result, op->status);
		break;
	}
	(void)rio;
}

static void maybe_finish_close(struct raftio *rio);
static void work_done(uv_work_t *w, int uvstatus);
static void timer_closed(uv_handle_t *h);

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
		uv_close((uv_handle_t *)&rio->job_timer, timer_closed);
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

/* A write failed (loop thread): from now on nothing is written, and the
 * owner is told once so that it can reopen the storage. */
static void storage_failed(struct raftio *rio, int code, const char *msg)
{
	if (rio->failed)
		return;
	rio->failed = true;
	rio->failed_code = code == RAFT_NOSPACE ? RAFT_NOSPACE : RAFT_IOERR;
	snprintf(rio->failed_errmsg, sizeof rio->failed_errmsg, "%s", msg);
	if (rio->on_failure != NULL)
		rio->on_failure(rio->failure_arg, rio->failed_code, rio->sys_errno, msg);
}

/* A failed append is answered only at close, and then as if it had
 * succeeded. libraft 0.15 answers a failed append by truncating its
 * in-memory log from the request's first index, while appends that cover
 * the same entries may be outstanding: the next failed callback then
 * releases and truncates entries that are gone (double frees and SEGVs in
 * removeSuffix, seen in fault runs, in either order of the callbacks).
 * Held, the appends look merely slow to libraft until the node closes it
 * (node_storage.c), or mutes it once it follows (raftio_mute: they then
 * complete as if stored, in memory only). By then libraft is unavailable: it neither sends nor
 * commits anything, and a successful append callback only releases the
 * request's entries, with no truncation. Nothing of this reaches the disk
 * or a peer, and the next session drops the uncertain tail of the stored
 * log anyway (raftio_drop_after). */
static void hold(struct raftio *rio, struct op *op)
{
	assert(op->kind == OP_APPEND);
	op->next = rio->held;
	rio->held = op;
}

static void fire_held(struct raftio *rio)
{
	assert(rio->closing); /* libraft is unavailable (raft_close) */
	rio->completing++;
	while (rio->held != NULL) {
		struct op *op = rio->held;
		rio->held = op->next;
		op->status = 0;
		fire(rio, op);
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
		storage_failed(rio, status, rio->job_errmsg); /* may mute us */
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
			hold(rio, ops);
		} else {
			fire(rio, ops);
			free(ops);
		}
		ops = next;
	}
	rio->completing--;
	if (rio->closing)
		fire_held(rio); /* a job that failed while closing */
	if (status == 0 && rio->job_appends && rio->on_append_sync != NULL && !rio->closing)
		rio->on_append_sync(rio->append_sync_arg, (unsigned)(rio->job_ns / 1000000u));
	kick(rio);
	maybe_finish_close(rio);
}

/* Returns 0 or the error a new request must fail with right away. */
static int check_open(struct raftio *rio)
{
	if (rio->closing)
		return RAFT_CANCELED;
	if (rio->failed && !rio->mute) {
		snprintf(rio->io->errmsg, sizeof rio->io->errmsg, "%s", rio->failed_errmsg);
		return rio->failed_code;
	}
	return 0;
}

static struct op *op_alloc(enum op_kind kind, int *rv)
{
	struct op *op = calloc(1, sizeof *op);
	*rv = op != NULL ? 0 : RAFT_NOMEM;
	if (op != NULL)
		op->kind = kind;
	return op;
}

static struct op *op_new(struct raftio *rio, enum op_kind kind, int *rv)
{
	*rv = check_open(rio);
	return *rv == 0 ? op_alloc(kind, rv) : NULL;
}

static void enqueue(struct raftio *rio, struct op *op)
{
	if (rio->queue_tail != NULL)
		rio->queue_tail->next = op;
	else
		rio->queue_head = op;
	rio->queue_tail = op;
	kick(rio);
}

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

/* What load() hands to libraft. */
struct loaded_state {
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snapshot;
	raft_index start;
	struct raft_entry *entries;
	size_t n;
};

static void loaded_state_free(struct loaded_state *ls)
{
	if (ls->entries != NULL) {
		raft_free(ls->entries[0].batch);
		raft_free(ls->entries);
	}
	snapshot_free(ls->snapshot);
	memset(ls, 0, sizeof *ls);
}

/* A node's term is never older than the entries it stored (it takes a
 * term before it writes in it): a term row that is missing or behind the
 * log was deleted or rolled back on disk, which would let the node vote
 * twice in a term. */
static int check_term_covers_log(struct raftio *rio, const struct loaded_state *ls, char *err)
{
	raft_term last = ls->n > 0 ? ls->entries[ls->n - 1].term : 0;
	if (ls->snapshot != NULL && ls->snapshot->term > last)
		last = ls->snapshot->term;
	if (ls->term < last)
		return corrupt(rio, err, "the term row is missing or older than the log",
			       ls->start + ls->n - 1);
	return 0;
}

/* Reads term, vote, the latest snapshot and the log in one transaction (a
 * consistent view), checking every row on the way (db_lock held). With FIX,
 * a log that lies wholly before the snapshot is deleted, as load() must;
 * a check only reads. On failure LS holds nothing. */
static int load_state(struct raftio *rio, bool fix, struct loaded_state *ls, char *err)
{
	assert(db_held(rio));
	struct entry_range range;
	bool stale = false;

	memset(ls, 0, sizeof *ls);
	ls->start = 1;
	int rv = tx_begin(rio, err);
	if (rv == 0)
		rv = meta_read(rio, &ls->term, &ls->vote, err);
	if (rv == 0)
		rv = snapshot_read_latest(rio, &ls->snapshot, err);
	if (rv == 0)
		rv = entry_range(rio, &range, err);
	if (rv == 0)
		rv = plan_entries(rio, ls->snapshot, &range, &ls->start, &stale, err);
	if (rv == 0 && stale && fix)
		rv = delete_entries(rio, ST_ENTRY_CLEAR, 0, err);
	if (rv == 0 && !stale && range.count > 0)
		rv = entries_read(rio, ls->start, &range, &ls->entries, &ls->n, err);
	if (rv == 0)
		rv = check_term_covers_log(rio, ls, err);
	rv = tx_end(rio, rv, err);
	if (rv != 0) {
		loaded_state_free(ls);
		ls->start = 1;
	}
	return rv;
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
		   struct raft_snapshot **snapshot, raft_index *start_index,
		   struct raft_entry *entries[], size_t *n_entries)
{
	struct raftio *rio = io->impl;
	struct loaded_state ls;

	db_lock(rio);
	int rv = load_state(rio, true, &ls, io->errmsg);
	db_unlock(rio);
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
static int write_conf_entry(struct raftio *rio, const struct raft_configuration *conf,
			    raft_index idx, raft_term term, bool set_term, char *err)
{
	struct raft_entry e = { .term = term, .type = RAFT_CHANGE };
	int rv = raft_configuration_encode(conf, &e.buf);
	if (rv != 0) {
		set_err(err, rio, "encode configuration: %s", raft_strerror(rv));
		return rv;
	}
	rv = tx_begin(rio, err);
	if (rv == 0 && set_term)
		rv = meta_put(rio, term, 0, err);
	if (rv == 0)
		rv = entry_put(rio, idx, &e, err);
	rv = tx_end(rio, rv, err);
	raft_free(e.buf.base);
	return rv;
}

/* The end of a write made on the loop thread (term, vote, bootstrap): a
 * storage failure there is one like a failed append. Returns RV. */
static int sync_write_done(struct raftio *rio, int rv)
{
	if (rv == RAFT_NOSPACE || rv == RAFT_IOERR)
		storage_failed(rio, rv, rio->io->errmsg);
	return rio->mute ? 0 : rv; /* muted, it is kept in memory */
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	struct raftio *rio = io->impl;
	raft_term term;
	raft_id vote;
	raft_index last = 0;
	int rv;

	if ((rv = check_open(rio)) != 0)
		return rv;
	db_lock(rio);
	rv = meta_read(rio, &term, &vote, io->errmsg);
	if (rv == 0)
		rv = last_index(rio, &last, io->errmsg);
	if (rv == 0 && (term != 0 || last != 0)) {
		set_err(io->errmsg, rio, "already has raft state, cannot bootstrap");
		rv = RAFT_CANTBOOTSTRAP;
	}
	if (rv == 0)
		rv = write_conf_entry(rio, conf, 1, 1, true, io->errmsg);
	db_unlock(rio);
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

	if ((rv = check_open(rio)) != 0)
		return rv;
	db_lock(rio);
	rv = meta_read(rio, &term, &vote, io->errmsg);
	if (rv == 0)
		rv = last_index(rio, &last, io->errmsg);
	/* The highest term anywhere keeps entry terms non-decreasing. */
	if (rv == 0)
		rv = max_term(rio, &max, io->errmsg);
	if (rv == 0)
		rv = write_conf_entry(rio, conf, last + 1, max > 0 ? max : 1, term == 0,
				      io->errmsg);
	db_unlock(rio);
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
	db_lock(rio);
	rv = meta_put(rio, term, 0, io->errmsg);
	db_unlock(rio);
	return sync_write_done(rio, rv);
}

static int io_set_vote(struct raft_io *io, raft_id server_id)
{
	struct raftio *rio = io->impl;
	int rv = check_open(rio);
	if (rv != 0 || rio->mute)
		return rv;
	raft_term term;
	raft_id old_vote;
	db_lock(rio);
	rv = meta_read(rio, &term, &old_vote, io->errmsg);
	if (rv == 0)
		rv = meta_put(rio, term, server_id, io->errmsg);
	db_unlock(rio);
	return sync_write_done(rio, rv);
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
		     const struct raft_entry entries[], unsigned n, raft_io_append_cb cb)
{
	struct raftio *rio = io->impl;
	int rv;
	/* After a failure an append is held like the failed ones (hold):
	 * failing it here would take libraft's error path all the same. A
	 * mute IO completes it instead, from a job that stores nothing. */
	bool held = rio->failed && !rio->closing && !rio->mute;
	struct op *op = held ? op_alloc(OP_APPEND, &rv) : op_new(rio, OP_APPEND, &rv);
	if (op == NULL)
		return rv;
	op->append.req = req;
	op->append.cb = cb;
	op->append.entries = entries;
	op->append.n = n;
	op->append.index = rio->next_index;
	rio->next_index += n;
	if (held)
		hold(rio, op);
	else
		enqueue(rio, op);
	return 0;
}

static int io_truncate(struct raft_io *io, raft_index index)
{
	struct raftio *rio = io->impl;
	int rv;
	struct op *op = op_new(rio, OP_TRUNCATE, &rv);
	if (op == NULL)
		return rv;
	op->truncate.index = index;
	if (index < rio->next_index)
		rio->next_index = index;
	enqueue(rio, op);
	return 0;
}

static int io_snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
			   const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
	struct raftio *rio = io->impl;
	int rv;
	struct op *op = op_new(rio, OP_SNAPSHOT_PUT, &rv);
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
	enqueue(rio, op);
	return 0;
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			   raft_io_snapshot_get_cb cb)
{
	struct raftio *rio = io->impl;
	int rv;
	struct op *op = op_new(rio, OP_SNAPSHOT_GET, &rv);
	if (op == NULL)
		return rv;
	op->get.req = req;
	op->get.cb = cb;
	enqueue(rio, op); /* the callback always fires later, from work_done */
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

static void transport_recv(struct raftio_transport *t, struct raft_message *msg, void *arg)
{
	struct raftio *rio = arg;
	(void)t;
	if (rio->closing || rio->recv_cb == NULL || (rio->failed && !failed_hears(rio, msg))) {
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
		fire(rio, op);
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
	int rv = check_open(rio);
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

/* The last step of close(): runs once no job, callback or handle is left. */
static void maybe_finish_close(struct raftio *rio)
{
	if (!rio->closing || rio->busy || rio->job_due || rio->queue_head != NULL ||
	    rio->completing > 0 || rio->pending_closes > 0)
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

static void timer_closed(uv_handle_t *h)
{
	struct raftio *rio = h->data;
	rio->pending_closes--;
	maybe_finish_close(rio);
}

static void transport_closed(void *arg)
{
	struct raftio *rio = arg;
	rio->pending_closes--;
	maybe_finish_close(rio);
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
	struct raftio *rio = io->impl;
	if (rio == NULL || rio->closing)
		return;
	rio->closing = true;
	rio->close_cb = cb;
	fire_held(rio);
	/* All counted before any close starts: a transport may call back
	 * synchronously. A timer's uv_close callback is always deferred, so
	 * CB never runs inside this call. */
	rio->pending_closes = rio->transport != NULL ? 3 : 2;
	uv_timer_stop(&rio->timer);
	uv_close((uv_handle_t *)&rio->timer, timer_closed);
	/* A job that is due still starts (its callbacks must fire), on the
	 * thread pool; the timer closes after it (job_start). */
	if (!rio->job_due)
		uv_close((uv_handle_t *)&rio->job_timer, timer_closed);
	if (rio->transport != NULL)
		rio->transport->close(rio->transport, transport_closed, rio);
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

static int db_exec(struct raftio *rio, const char *sql, char *err)
{
	assert(db_held(rio));
	char *msg = NULL;
	int rc = sqlite3_exec(rio->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		set_err(err, rio, "%s: %s", sql, msg != NULL ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return sqlite_to_raft(rc, sqlite3_system_errno(rio->db));
	}
	return 0;
}

/* Reads a single integer from SQL (a pragma). */
static int db_int(struct raftio *rio, const char *sql, sqlite3_int64 *ret, char *err)
{
	assert(db_held(rio));
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(rio->db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*ret = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		}
	}
	int rv = rc == SQLITE_OK ? 0 : db_fail(rio, err, rc, sql);
	sqlite3_finalize(s);
	return rv;
}

static int db_leave_v1(struct raftio *rio, char *err)
{
	sqlite3_int64 rows = 0;
	int rv = db_int(rio,
			"SELECT (SELECT count(*) FROM meta) + (SELECT count(*) FROM entries)"
			" + (SELECT count(*) FROM snapshots)",
			&rows, err);
	if (rv != 0)
		return rv;
	if (rows > 0) {
		set_err(err, rio,
			"storage format 1 (written by an older vaultfs, without authenticated "
			"rows): this version cannot vouch for it");
		return RAFT_CORRUPT;
	}
	return db_exec(rio, schema_v1_drop_sql, err);
}

static int db_open(struct raftio *rio, char *err)
{
	sqlite3_int64 version = 0;
	char mode[16] = "";
	int rc = sqlite3_open_v2(rio->path, &rio->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
				 crashvfs_vfs());
	if (rc != SQLITE_OK)
		return db_fail(rio, err, rc, "open");
	sqlite3_extended_result_codes(rio->db, 1);
	sqlite3_busy_timeout(rio->db, 5000);

	/* The first real read: a garbage file fails here with NOTADB. */
	int rv = db_int(rio, "PRAGMA user_version", &version, err);
	if (rv != 0)
		return rv;
	if (version > RAFTIO_SCHEMA_VERSION) {
		set_err(err, rio, "schema version %lld is newer than supported (%d)", (long long)version,
			RAFTIO_SCHEMA_VERSION);
		return RAFT_CORRUPT;
	}
	if (version == 1 && (rv = db_leave_v1(rio, err)) != 0)
		return rv;
	sqlite3_stmt *s = NULL;
	rc = sqlite3_prepare_v2(rio->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *m = sqlite3_column_text(s, 0);
		snprintf(mode, sizeof mode, "%s", m != NULL ? (const char *)m : "");
		rc = SQLITE_OK;
	}
	rv = rc == SQLITE_OK ? 0 : db_fail(rio, err, rc, "enable WAL");
	sqlite3_finalize(s);
	if (rv != 0)
		return rv;
	if (strcmp(mode, "wal") != 0) {
		set_err(err, rio, "cannot enable WAL (journal mode is '%s')", mode);
		return RAFT_IOERR;
	}
	/* FULL: a WAL commit is fsync'ed before COMMIT returns, which is what
	 * makes set_term/set_vote and append callbacks durable. */
	if ((rv = db_exec(rio, "PRAGMA synchronous = FULL", err)) != 0)
		return rv;
	/* Only a new (or emptied format 1) database is written to here: a node
	 * must be able to open its log on a full disk, to report that. */
	if (version < RAFTIO_SCHEMA_VERSION && (rv = db_exec(rio, schema_sql, err)) != 0)
		return rv;
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(rio->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&rio->stmt[i], NULL);
		if (rc != SQLITE_OK)
			return db_fail(rio, err, rc, "prepare statement");
	}
	return 0;
}

/* SQLite's structural check: damage anywhere in the file, also in rows
 * that load() never reads, is found before anything is served. */
static int db_quick_check(struct raftio *rio, char *err)
{
	sqlite3_stmt *s = NULL;
	int rv = 0;
	int rc = sqlite3_prepare_v2(rio->db, "PRAGMA quick_check(1)", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(s, 0);
		if (res == NULL || strcmp(res, "ok") != 0) {
			set_err(err, rio, "corrupt database: %s", res != NULL ? res : "no answer");
			rv = RAFT_CORRUPT;
		}
	} else {
		rv = db_fail(rio, err, rc, "PRAGMA quick_check");
	}
	sqlite3_finalize(s);
	return rv;
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
	io->version = 1;
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
	io->async_work = NULL; /* version 1 */
}

int raftio_init(struct raft_io *io, uv_loop_t *loop, const char *dir,
		const uint8_t key[RAFTIO_KEY_LEN], struct raftio_transport *transport,
		char *errmsg, size_t errlen)
{
	errbuf_t err = "";
	raft_index last = 0;
	int rv;

	uv_once(&crc_once, crc_table_init);
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
	db_lock(rio);
	rv = db_open(rio, err);
	if (rv == 0)
		rv = last_index(rio, &last, err); /* load() refines this */
	db_unlock(rio);
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

void raftio_set_on_append_sync(struct raft_io *io, void (*cb)(void *arg, unsigned ms), void *arg)
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
	db_lock(rio);
	int rv = tx_begin(rio, err);
	if (rv == 0)
		rv = delete_entries(rio, ST_ENTRY_TRUNCATE, index + 1, err);
	rv = tx_end(rio, rv, err);
	/* Copies every page this connection sees into the main file and syncs
	 * it: pages a failed fsync left only in the page cache are written
	 * again, so what is loaded next is what is on disk. */
	if (rv == 0)
		rv = db_exec(rio, "PRAGMA wal_checkpoint(TRUNCATE)", err);
	db_unlock(rio);
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

	uv_once(&crc_once, crc_table_init);
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
	db_lock(rio);
	rv = db_open(rio, err);
	if (rv == 0)
		rv = db_quick_check(rio, err);
	if (rv == 0) {
		rv = load_state(rio, false, &ls, err);
		if (rv == 0)
			loaded_state_free(&ls);
	}
	db_unlock(rio);
	if (rv != 0 && errlen > 0)
		snprintf(errmsg, errlen, "%s", err[0] != '\0' ? err : raft_strerror(rv));
	rio_free(rio);
	return rv;
}
