/* raftio's SQL schema and rows: statements, checksums and MACs, reading
 * and writing the log, term, vote and snapshots, opening and checking the
 * database (raftio_internal.h). */
#include "raft/raftio_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/crc32.h"
#include "raft/crashvfs.h"
#include "raft/rowmac.h"

/* The WAL file's size once a checkpoint has emptied it, in bytes. */
#define RAFTIO_WAL_LIMIT_STR "16777216"

/* ------------------------------------------------------------------------ */
/* Checksums: every row carries a CRC-32 so that bit rot is reported as
 * RAFT_CORRUPT instead of being served to Raft, also by raftio_check before
 * unseal; and a keyed MAC (rowmac.h), checked once the key is known, so
 * that tampering is reported too. */

static uint32_t crc_u64(uint32_t crc, uint64_t v)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	return crc32_update(crc, le, sizeof le);
}

static uint32_t entry_crc(raft_index idx, raft_term term, unsigned short type,
			  const void *data, size_t len)
{
	uint32_t crc = crc_u64(0, idx);
	crc = crc_u64(crc, term);
	crc = crc_u64(crc, type);
	return crc32_update(crc, data, len);
}

static uint32_t snapshot_header_crc(raft_index idx, raft_term term, raft_index conf_index,
				    const void *conf, size_t conf_len)
{
	uint32_t crc = crc_u64(0, idx);
	crc = crc_u64(crc, term);
	crc = crc_u64(crc, conf_index);
	return crc32_update(crc, conf, conf_len);
}

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

void raftio_rows_set_err(char *err, const struct raftio *rio, const char *fmt, ...)
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
void raftio_rows_lock(struct raftio *rio)
{
	uv_mutex_lock(&rio->db_lock);
	__atomic_store_n(&rio->db_holder, (uintptr_t)uv_thread_self(), __ATOMIC_RELAXED);
}

void raftio_rows_unlock(struct raftio *rio)
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
	raftio_rows_set_err(err, rio, "%s%s%s (%s)", msg, rio->sys_errno != 0 ? ": " : "",
		rio->sys_errno != 0 ? strerror(rio->sys_errno) : "", what);
	return sqlite_to_raft(rc, rio->sys_errno);
}

static int corrupt(struct raftio *rio, char *err, const char *what, raft_index idx)
{
	raftio_rows_set_err(err, rio, "corrupt raft state: %s (index %llu)", what, idx);
	return RAFT_CORRUPT;
}

/* A row whose MAC does not verify: changed on disk since this node wrote it
 * (edited, copied from another index, another node or an older copy). */
static int tampered(struct raftio *rio, char *err, const char *what, raft_index idx)
{
	raftio_rows_set_err(err, rio,
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

int raftio_rows_tx_begin(struct raftio *rio, char *err)
{
	return step_done(rio, ST_BEGIN, err);
}

int raftio_rows_tx_end(struct raftio *rio, int status, char *err)
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

int raftio_rows_meta_read(struct raftio *rio, raft_term *term, raft_id *vote, char *err)
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

void raftio_rows_snapshot_free(struct raft_snapshot *snap)
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
	want = crc32_update(want, data, data_len);
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
		raftio_rows_snapshot_free(snap);
		return RAFT_NOMEM;
	}
	snap->bufs[0].base = raft_malloc(data_len > 0 ? data_len : 1);
	snap->bufs[0].len = data_len;
	snap->n_bufs = 1;
	if (snap->bufs[0].base == NULL) {
		raftio_rows_snapshot_free(snap);
		return RAFT_NOMEM;
	}
	if (data_len > 0)
		memcpy(snap->bufs[0].base, data, data_len);
	*ret = snap;
	return 0;
}

int raftio_rows_snapshot_read_latest(struct raftio *rio, struct raft_snapshot **ret, char *err)
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

int raftio_rows_last_index(struct raftio *rio, raft_index *ret, char *err)
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

int raftio_rows_max_term(struct raftio *rio, raft_term *ret, char *err)
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

int raftio_rows_meta_put(struct raftio *rio, raft_term term, raft_id vote, char *err)
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

int raftio_rows_delete_entries(struct raftio *rio, int st, raft_index idx, char *err)
{
	if (st != ST_ENTRY_CLEAR)
		sqlite3_bind_int64(rio->stmt[st], 1, to_i64(idx));
	return step_done(rio, st, err);
}

int raftio_rows_op_append(struct raftio *rio, struct op *op, char *err)
{
	for (unsigned i = 0; i < op->append.n; i++) {
		int rv = entry_put(rio, op->append.index + i, &op->append.entries[i], err);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int raftio_rows_op_snapshot_put(struct raftio *rio, struct op *op, char *err)
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
	crc = crc32_update(crc, data, len);
	uint8_t mac[ROWMAC_LEN];
	assert(rio->key != NULL);
	rowmac_snapshot(rio->key, rio->id, snap->index, snap->term, snap->configuration_index,
			conf.data, conf.len, data, len, mac);

	/* The older snapshots go first, in the same transaction: the pages
	 * they free then hold the new one, and the file holds one snapshot
	 * rather than one more than it keeps (a snapshot of a million secrets
	 * is about 250 MB). */
	sqlite3_bind_int(rio->stmt[ST_SNAP_PRUNE], 1, RAFTIO_KEEP_SNAPSHOTS - 1);
	rv = step_done(rio, ST_SNAP_PRUNE, err);
	if (rv != 0)
		goto out;
	sqlite3_stmt *s = rio->stmt[ST_SNAP_PUT];
	sqlite3_bind_int64(s, 1, to_i64(snap->index));
	sqlite3_bind_int64(s, 2, to_i64(snap->term));
	bind_blob(s, 3, conf.data, conf.len);
	sqlite3_bind_int64(s, 4, to_i64(snap->configuration_index));
	bind_blob(s, 5, data, len);
	sqlite3_bind_int64(s, 6, crc);
	bind_blob(s, 7, mac, sizeof mac);
	rv = step_done(rio, ST_SNAP_PUT, err);
	if (rv == 0 && op->put.trailing == 0)
		rv = raftio_rows_delete_entries(rio, ST_ENTRY_CLEAR, 0, err);
	else if (rv == 0 && snap->index > op->put.trailing)
		rv = raftio_rows_delete_entries(rio, ST_ENTRY_COMPACT, snap->index - op->put.trailing,
						 err);
out:
	free(joined);
	buf_free(&conf);
	return rv;
}

void raftio_rows_loaded_state_free(struct loaded_state *ls)
{
	if (ls->entries != NULL) {
		raft_free(ls->entries[0].batch);
		raft_free(ls->entries);
	}
	raftio_rows_snapshot_free(ls->snapshot);
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

int raftio_rows_load_state(struct raftio *rio, bool fix, struct loaded_state *ls, char *err)
{
	assert(db_held(rio));
	struct entry_range range;
	bool stale = false;

	memset(ls, 0, sizeof *ls);
	ls->start = 1;
	int rv = raftio_rows_tx_begin(rio, err);
	if (rv == 0)
		rv = raftio_rows_meta_read(rio, &ls->term, &ls->vote, err);
	if (rv == 0)
		rv = raftio_rows_snapshot_read_latest(rio, &ls->snapshot, err);
	if (rv == 0)
		rv = entry_range(rio, &range, err);
	if (rv == 0)
		rv = plan_entries(rio, ls->snapshot, &range, &ls->start, &stale, err);
	if (rv == 0 && stale && fix)
		rv = raftio_rows_delete_entries(rio, ST_ENTRY_CLEAR, 0, err);
	if (rv == 0 && !stale && range.count > 0)
		rv = entries_read(rio, ls->start, &range, &ls->entries, &ls->n, err);
	if (rv == 0)
		rv = check_term_covers_log(rio, ls, err);
	rv = raftio_rows_tx_end(rio, rv, err);
	if (rv != 0) {
		raftio_rows_loaded_state_free(ls);
		ls->start = 1;
	}
	return rv;
}

int raftio_rows_write_conf_entry(struct raftio *rio, const struct raft_configuration *conf,
			    raft_index idx, raft_term term, bool set_term, char *err)
{
	struct raft_entry e = { .term = term, .type = RAFT_CHANGE };
	int rv = raft_configuration_encode(conf, &e.buf);
	if (rv != 0) {
		raftio_rows_set_err(err, rio, "encode configuration: %s", raft_strerror(rv));
		return rv;
	}
	rv = raftio_rows_tx_begin(rio, err);
	if (rv == 0 && set_term)
		rv = raftio_rows_meta_put(rio, term, 0, err);
	if (rv == 0)
		rv = entry_put(rio, idx, &e, err);
	rv = raftio_rows_tx_end(rio, rv, err);
	raft_free(e.buf.base);
	return rv;
}

int raftio_rows_db_exec(struct raftio *rio, const char *sql, char *err)
{
	assert(db_held(rio));
	char *msg = NULL;
	int rc = sqlite3_exec(rio->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		raftio_rows_set_err(err, rio, "%s: %s", sql,
				    msg != NULL ? msg : sqlite3_errstr(rc));
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
		raftio_rows_set_err(err, rio,
			"storage format 1 (written by an older vaultfs, without authenticated "
			"rows): this version cannot vouch for it");
		return RAFT_CORRUPT;
	}
	return raftio_rows_db_exec(rio, schema_v1_drop_sql, err);
}

int raftio_rows_db_open(struct raftio *rio, char *err)
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
		raftio_rows_set_err(err, rio, "schema version %lld is newer than supported (%d)",
				    (long long)version, RAFTIO_SCHEMA_VERSION);
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
		raftio_rows_set_err(err, rio, "cannot enable WAL (journal mode is '%s')", mode);
		return RAFT_IOERR;
	}
	/* FULL: a WAL commit is fsync'ed before COMMIT returns, which is what
	 * makes set_term/set_vote and append callbacks durable. */
	if ((rv = raftio_rows_db_exec(rio, "PRAGMA synchronous = FULL", err)) != 0)
		return rv;
	/* A snapshot is written to the WAL whole before a checkpoint copies
	 * it into the database, and SQLite keeps the WAL file at the largest
	 * size it ever had: 200 MB beside 290 MB of database at 350,000
	 * secrets. Cut it back once a checkpoint has emptied it. */
	if ((rv = raftio_rows_db_exec(rio, "PRAGMA journal_size_limit = " RAFTIO_WAL_LIMIT_STR,
				      err)) != 0)
		return rv;
	/* Only a new (or emptied format 1) database is written to here: a node
	 * must be able to open its log on a full disk, to report that. */
	if (version < RAFTIO_SCHEMA_VERSION &&
	    (rv = raftio_rows_db_exec(rio, schema_sql, err)) != 0)
		return rv;
	for (int i = 0; i < ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(rio->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&rio->stmt[i], NULL);
		if (rc != SQLITE_OK)
			return db_fail(rio, err, rc, "prepare statement");
	}
	return 0;
}

int raftio_rows_db_quick_check(struct raftio *rio, char *err)
{
	sqlite3_stmt *s = NULL;
	int rv = 0;
	int rc = sqlite3_prepare_v2(rio->db, "PRAGMA quick_check(1)", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(s, 0);
		if (res == NULL || strcmp(res, "ok") != 0) {
			raftio_rows_set_err(err, rio, "corrupt database: %s",
					    res != NULL ? res : "no answer");
			rv = RAFT_CORRUPT;
		}
	} else {
		rv = db_fail(rio, err, rc, "PRAGMA quick_check");
	}
	sqlite3_finalize(s);
	return rv;
}

