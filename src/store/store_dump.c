/* Dump and restore: the whole state as bytes, the snapshot format. A
 * restore checks every field, each name against its lookup hash and the
 * tree's shape, and keeps the previous state on any error; a value
 * ciphertext is checked only when it is read (store_read).
 *
 * Dump format (version 3, little-endian):
 *   u32 magic STORE_DUMP_MAGIC, u32 version, u64 next_ino,
 *   u32 n, n x (u64 ino, u64 parent, blob name_hash, blob name_ct, u32 mode,
 *               u32 uid, u32 gid, u64 size, i64 mtime_ns, i64 ctime_ns,
 *               i64 atime_ns, blob value_ct)    ordered by ino
 *   u64 applies,
 *   u32 m, m x (u64 client_id, u64 floor, i64 last_now_ns,
 *               u32 k, k x (u64 seq, i64 result))   seq ascending, >= floor
 * where blob is u32 length + bytes and an absent column is an empty blob
 * (a real hash or ciphertext is never empty). Version 4 is version 3 and
 * then u32 features (store_features); a dump is written in version 3 while
 * the level is CMD_FEATURES_BASE, so that a member of an earlier release
 * can still take it. Version 2 (snapshots already on disk) is version 3
 * without atime_ns; it restores with atime = mtime, what version 2 showed
 * as atime. */
#include "store/store.h"
#include "store/store_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "lib/log.h"

#define STORE_DUMP_MAGIC 0x53534656u /* "VFSS" */
#define STORE_DUMP_VERSION 4u
#define STORE_DUMP_VERSION_BASE 3u /* no features: written at CMD_FEATURES_BASE */
#define STORE_DUMP_VERSION_PREV 2u /* no atime_ns; still restored */

/* Where a dump goes: into B, handed to SINK (if any) whenever B holds
 * STORE_DUMP_CHUNK bytes, so that a streamed dump of any size needs no
 * more memory than that. */
struct dump_out {
	struct buf *b;
	store_dump_sink sink;
	void *arg;
};

#define STORE_DUMP_CHUNK (256u * 1024u)

static int dump_flush(struct dump_out *o, bool all)
{
	if (o->b->err != 0)
		return o->b->err;
	if (o->sink == NULL || o->b->len == 0 || (!all && o->b->len < STORE_DUMP_CHUNK))
		return 0;
	int rc = o->sink(o->arg, o->b->data, o->b->len);
	buf_clear(o->b);
	return rc;
}

static void put_col_blob(struct buf *out, sqlite3_stmt *st, int i)
{
	size_t n;
	const uint8_t *p = store_col_blob(st, i, &n);
	buf_put_blob(out, p, n);
}

static void dump_inode_row(struct buf *out, sqlite3_stmt *st)
{
	buf_put_u64(out, store_col_u64(st, 0));
	buf_put_u64(out, store_col_u64(st, 1));
	put_col_blob(out, st, 2);
	put_col_blob(out, st, 3);
	buf_put_u32(out, store_col_u32(st, 4));
	buf_put_u32(out, store_col_u32(st, 5));
	buf_put_u32(out, store_col_u32(st, 6));
	buf_put_u64(out, store_col_u64(st, 7));
	buf_put_i64(out, sqlite3_column_int64(st, 8));
	buf_put_i64(out, sqlite3_column_int64(st, 9));
	buf_put_i64(out, sqlite3_column_int64(st, 10));
	put_col_blob(out, st, 11);
}

static int dump_inodes(struct store *s, struct dump_out *o)
{
	uint64_t count;
	int rc = store_query_count(s, Q_COUNT_ALL, false, 0, &count);
	if (rc != 0)
		return rc;
	if (count > UINT32_MAX)
		return -EOVERFLOW;
	buf_put_u32(o->b, (uint32_t)count);
	sqlite3_stmt *st = store_stmt(s, Q_DUMP_INODES);
	if (st == NULL)
		return -EIO;
	uint64_t n = 0;
	int frc = 0;
	while (frc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		dump_inode_row(o->b, st);
		n++;
		frc = dump_flush(o, false);
	}
	store_stmt_done(st);
	if (frc != 0)
		return frc;
	if (rc != SQLITE_DONE)
		return store_db_fail(s, "dump inodes");
	return n == count ? 0 : -EIO;
}

/* Appends client C's kept results; there must be exactly N of them. */
static int dump_results(struct store *s, uint64_t client, uint64_t n, struct dump_out *o)
{
	if (n > STORE_MAX_RESULTS)
		return -EIO;
	buf_put_u32(o->b, (uint32_t)n);
	sqlite3_stmt *st = store_stmt(s, Q_DUMP_RESULTS);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, client);
	uint64_t seen = 0;
	int rc, frc = 0;
	while (frc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		buf_put_u64(o->b, store_once_col_seq(st, 0));
		buf_put_i64(o->b, sqlite3_column_int64(st, 1));
		seen++;
		frc = dump_flush(o, false);
	}
	store_stmt_done(st);
	if (frc != 0)
		return frc;
	if (rc != SQLITE_DONE)
		return store_db_fail(s, "dump results");
	return seen == n ? 0 : -EIO;
}

static int dump_clients(struct store *s, struct dump_out *o)
{
	uint64_t applies, count;
	int rc = store_query_count(s, Q_APPLIES_GET, false, 0, &applies);
	if (rc == 0)
		rc = store_query_count(s, Q_COUNT_CLIENTS, false, 0, &count);
	if (rc != 0)
		return rc;
	if (count > UINT32_MAX)
		return -EOVERFLOW;
	buf_put_u64(o->b, applies);
	buf_put_u32(o->b, (uint32_t)count);
	/* Q_DUMP_CLIENTS stays open while Q_DUMP_RESULTS runs per client. */
	sqlite3_stmt *st = store_stmt(s, Q_DUMP_CLIENTS);
	if (st == NULL || store_stmt(s, Q_DUMP_RESULTS) == NULL)
		return -EIO;
	uint64_t n = 0;
	int drc = 0;
	while (drc == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t client = store_col_u64(st, 0);
		buf_put_u64(o->b, client);
		buf_put_u64(o->b, store_col_u64(st, 1));
		buf_put_i64(o->b, sqlite3_column_int64(st, 2));
		drc = dump_results(s, client, store_col_u64(st, 3), o);
		if (drc == -EIO)
			log_error("store: client result count is off; cannot dump");
		n++;
	}
	store_stmt_done(st);
	if (drc != 0)
		return drc;
	if (rc != SQLITE_DONE)
		return store_db_fail(s, "dump clients");
	return n == count ? 0 : -EIO;
}

static int dump_all(struct store *s, struct dump_out *o)
{
	uint64_t next, features = CMD_FEATURES_BASE;
	int rc = store_query_count(s, Q_NEXTINO_GET, false, 0, &next);
	if (rc == 0)
		rc = store_query_count(s, Q_FEATURES_GET, false, 0, &features);
	if (rc == 0 && features > UINT32_MAX)
		rc = -EIO;
	bool base = features <= CMD_FEATURES_BASE;
	if (rc == 0) {
		buf_put_u32(o->b, STORE_DUMP_MAGIC);
		buf_put_u32(o->b, base ? STORE_DUMP_VERSION_BASE : STORE_DUMP_VERSION);
		buf_put_u64(o->b, next);
		rc = dump_inodes(s, o);
	}
	if (rc == 0)
		rc = dump_clients(s, o);
	if (rc == 0 && !base)
		buf_put_u32(o->b, (uint32_t)features);
	if (rc == 0)
		rc = dump_flush(o, true);
	return rc;
}

int store_dump(struct store *s, struct buf *out)
{
	size_t start = out->len;
	struct dump_out o = { out, NULL, NULL };
	int rc = dump_all(s, &o);
	if (rc != 0)
		store_buf_truncate(out, start);
	return rc;
}

int store_dump_stream(struct store *s, store_dump_sink sink, void *arg)
{
	assert(sink != NULL);
	struct buf b;
	buf_init(&b);
	struct dump_out o = { &b, sink, arg };
	int rc = dump_all(s, &o);
	buf_free(&b);
	return rc;
}

struct dump_row {
	struct inode n;
	const uint8_t *hash, *name_ct, *value_ct;
	size_t hash_len, name_ct_len, value_ct_len;
};

/* Field-level checks of one dumped inode; the tree shape is checked by SQL
 * once every row is in. */
static bool row_valid(const struct dump_row *r, uint64_t next_ino)
{
	const struct inode *n = &r->n;
	uint32_t type = n->mode & (uint32_t)S_IFMT;
	if (n->ino == 0 || n->ino >= next_ino)
		return false;
	if ((n->mode & ~((uint32_t)S_IFMT | 07777u)) != 0 ||
	    (type != (uint32_t)S_IFDIR && type != (uint32_t)S_IFREG))
		return false;
	if (n->ino == VFS_ROOT_INO)
		return n->parent == 0 && type == (uint32_t)S_IFDIR && r->hash_len == 0 &&
		       r->name_ct_len == 0 && r->value_ct_len == 0 && n->size == 0;
	if (n->parent == 0 || r->hash_len != BARRIER_HASH_LEN ||
	    r->name_ct_len <= BARRIER_OVERHEAD || r->name_ct_len > BARRIER_OVERHEAD + VFS_MAX_NAME)
		return false;
	if (type == (uint32_t)S_IFDIR)
		return r->value_ct_len == 0 && n->size == 0;
	return n->size <= VFS_MAX_VALUE && r->value_ct_len == n->size + BARRIER_OVERHEAD;
}

/* The lookup hash of a dumped row must be the hash of its own name, or
 * readdir and lookup would disagree about what the name means. Checked on
 * the plaintext, without marking the store failed: a bad snapshot is just
 * refused. Returns 0, -EBADMSG, or -ENOKEY/-ENOMEM. */
static int row_name_matches(struct store *s, const struct dump_row *r)
{
	if (r->n.ino == VFS_ROOT_INO)
		return 0;
	uint8_t aad[24];
	size_t aad_len = store_name_aad(aad, r->n.parent, r->n.ino);
	struct buf name;
	buf_init(&name);
	int rc = barrier_decrypt(s->barrier, aad, aad_len, r->name_ct, r->name_ct_len, &name);
	uint8_t in[8 + VFS_MAX_NAME], hash[BARRIER_HASH_LEN];
	if (rc == 0 && (name.len == 0 || name.len > VFS_MAX_NAME))
		rc = -EBADMSG;
	if (rc == 0) {
		store_put_le64(in, r->n.parent);
		memcpy(in + 8, name.data, name.len);
		rc = barrier_hash(s->barrier, in, 8 + name.len, hash);
		explicit_bzero(in, sizeof(in));
	}
	if (rc == 0 && memcmp(hash, r->hash, BARRIER_HASH_LEN) != 0)
		rc = -EBADMSG;
	buf_free(&name);
	return rc == -ENOKEY || rc == -ENOMEM ? rc : (rc != 0 ? -EBADMSG : 0);
}

static int restore_inodes(struct store *s, struct cursor *c, uint32_t version,
			  uint64_t next_ino)
{
	uint32_t count = cursor_u32(c);
	bool have_root = false;
	for (uint32_t i = 0; i < count && c->err == 0; i++) {
		struct dump_row r;
		struct buf name_ct, value_ct;
		r.n.ino = cursor_u64(c);
		r.n.parent = cursor_u64(c);
		r.hash = cursor_blob(c, BARRIER_HASH_LEN, &r.hash_len);
		r.name_ct = cursor_blob(c, BARRIER_OVERHEAD + VFS_MAX_NAME, &r.name_ct_len);
		r.n.mode = cursor_u32(c);
		r.n.uid = cursor_u32(c);
		r.n.gid = cursor_u32(c);
		r.n.size = cursor_u64(c);
		r.n.mtime_ns = cursor_i64(c);
		r.n.ctime_ns = cursor_i64(c);
		r.n.atime_ns = version >= 3 ? cursor_i64(c) : r.n.mtime_ns;
		r.value_ct = cursor_blob(c, BARRIER_OVERHEAD + VFS_MAX_VALUE, &r.value_ct_len);
		if (c->err != 0 || !row_valid(&r, next_ino))
			return -EBADMSG;
		int rc = row_name_matches(s, &r);
		if (rc != 0)
			return rc;
		have_root = have_root || r.n.ino == VFS_ROOT_INO;
		/* store_insert_inode takes bufs; wrap the borrowed bytes without copying. */
		name_ct = (struct buf){ .data = (uint8_t *)(uintptr_t)r.name_ct,
					.len = r.name_ct_len };
		value_ct = (struct buf){ .data = (uint8_t *)(uintptr_t)r.value_ct,
					 .len = r.value_ct_len };
		rc = store_insert_inode(s, &r.n, r.hash, r.hash_len, &name_ct, &value_ct);
		if (rc != 0)
			/* Duplicate ino or name: the dump is malformed. */
			return sqlite3_errcode(s->db) == SQLITE_CONSTRAINT ? -EBADMSG : rc;
	}
	return c->err == 0 && have_root ? 0 : -EBADMSG;
}

/* A result as store_apply produces it: an inode number or -errno. */
static bool result_valid(int64_t result)
{
	return result >= -4095;
}

/* Reads client C's K results: ascending, none below the floor, each a
 * plausible result. */
static int restore_results(struct store *s, struct cursor *cur, const struct client *c)
{
	bool first = true;
	uint64_t prev = 0;
	for (uint64_t i = 0; i < c->nresults; i++) {
		uint64_t seq = cursor_u64(cur);
		int64_t result = cursor_i64(cur);
		if (cur->err != 0 || seq < c->floor || (!first && seq <= prev) ||
		    !result_valid(result))
			return -EBADMSG;
		int rc = store_once_result_put(s, c->id, seq, result);
		if (rc != 0)
			return rc;
		first = false;
		prev = seq;
	}
	return 0;
}

static int restore_clients(struct store *s, struct cursor *cur)
{
	uint64_t applies = cursor_u64(cur);
	uint32_t count = cursor_u32(cur);
	if (cur->err != 0)
		return -EBADMSG;
	sqlite3_stmt *st = store_stmt(s, Q_APPLIES_SET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, applies);
	int rc = store_run(s, st, "restore apply counter");
	for (uint32_t i = 0; i < count && rc == 0; i++) {
		struct client c;
		c.id = cursor_u64(cur);
		c.floor = cursor_u64(cur);
		c.last_now_ns = cursor_i64(cur);
		c.nresults = cursor_u32(cur);
		if (cur->err != 0 || c.nresults > STORE_MAX_RESULTS)
			return -EBADMSG;
		rc = store_once_client_save(s, Q_CLIENT_INSERT, &c);
		if (rc != 0)
			/* The same client twice: the dump is malformed. */
			return sqlite3_errcode(s->db) == SQLITE_CONSTRAINT ? -EBADMSG : rc;
		rc = restore_results(s, cur, &c);
	}
	return rc;
}

/* The dump's level, or with KEEP the higher of it and the current one. A
 * level above what this release applies comes from a later release, whose
 * log this node could not follow: refused. */
static int restore_features(struct store *s, struct cursor *c, uint32_t version, bool keep)
{
	uint32_t level = version >= 4 ? cursor_u32(c) : CMD_FEATURES_BASE;
	if (c->err != 0 || level < (version >= 4 ? CMD_FEATURES_CREATE_VALUE : CMD_FEATURES_BASE) ||
	    level > CMD_FEATURES_CURRENT)
		return -EBADMSG;
	return store_features_set(s, level, keep);
}

/* Every node hangs off a directory and is reachable from the root. */
static int restore_check_tree(struct store *s)
{
	uint64_t orphans, reachable, total;
	int rc = store_query_count(s, Q_ORPHANS, false, 0, &orphans);
	if (rc == 0)
		rc = store_query_count(s, Q_REACHABLE, false, 0, &reachable);
	if (rc == 0)
		rc = store_query_count(s, Q_COUNT_ALL, false, 0, &total);
	if (rc != 0)
		return rc;
	return orphans == 0 && reachable == total ? 0 : -EBADMSG;
}

static int restore_all(struct store *s, const uint8_t *data, size_t len, bool keep_features)
{
	struct cursor c;
	cursor_init(&c, data, len);
	uint32_t magic = cursor_u32(&c);
	uint32_t version = cursor_u32(&c);
	uint64_t next_ino = cursor_u64(&c);
	if (c.err != 0 || magic != STORE_DUMP_MAGIC || version < STORE_DUMP_VERSION_PREV ||
	    version > STORE_DUMP_VERSION || next_ino < 2 || next_ino > (uint64_t)INT64_MAX)
		return -EBADMSG;

	int rc = store_exec(s, Q_WIPE_INODES);
	if (rc == 0)
		rc = store_exec(s, Q_WIPE_CLIENTS);
	if (rc == 0)
		rc = store_exec(s, Q_WIPE_RESULTS);
	if (rc == 0)
		rc = restore_inodes(s, &c, version, next_ino);
	if (rc == 0)
		rc = restore_clients(s, &c);
	if (rc == 0)
		rc = restore_features(s, &c, version, keep_features);
	if (rc == 0 && cursor_done(&c) != 0)
		rc = -EBADMSG;
	if (rc == 0)
		rc = restore_check_tree(s);
	if (rc != 0)
		return rc;
	sqlite3_stmt *st = store_stmt(s, Q_NEXTINO_SET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, next_ino);
	return store_run(s, st, "restore inode counter");
}

static int restore(struct store *s, const uint8_t *data, size_t len, bool keep_features)
{
	int rc = store_exec(s, Q_BEGIN);
	if (rc != 0)
		return rc;
	rc = restore_all(s, data, len, keep_features);
	if (rc == 0)
		rc = store_exec(s, Q_RELEASE);
	if (rc != 0) {
		store_rollback(s);
		log_error("store: snapshot rejected (%s); previous state kept", strerror(-rc));
	}
	return rc;
}

int store_restore(struct store *s, const uint8_t *data, size_t len)
{
	return restore(s, data, len, false);
}

int store_restore_backup(struct store *s, const uint8_t *data, size_t len)
{
	return restore(s, data, len, true);
}
