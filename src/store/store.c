/* The secrets tree in an in-memory SQLite database.
 *
 * Schema:
 *   inodes(ino, parent, name_hash, name_ct, mode, uid, gid, size, mtime_ns,
 *          ctime_ns, atime_ns, value_ct), UNIQUE(parent, name_hash)
 *   meta(next_ino, applies)     one row; applies counts store_apply calls
 *   clients(client_id, floor, last_now_ns, nresults)
 *   results(client_id, seq, result), PRIMARY KEY(client_id, seq)
 * clients/results are the exactly-once state (rules in store.h): every
 * results row has a clients row, seq >= its floor, and nresults is the
 * number of its rows (kept so the cap check needs no count(*)).
 * The root (VFS_ROOT_INO) has parent 0 and no name; directories have no
 * value_ct; every regular file has one (an empty value is still encrypted,
 * so that the row carries its binding to the inode). atime_ns changes only
 * when created or set (SETATTR): reads never reach the log (noatime).
 *
 *   name_hash = barrier_hash(u64 parent || name)
 *   name_ct   = barrier_encrypt(AAD "name" || u64 parent || u64 ino, name)
 *   value_ct  = barrier_encrypt(AAD "value" || u64 ino, value)
 *
 * u64 quantities are stored as SQLite's signed INTEGER (bit pattern kept);
 * comparisons that need unsigned order are done in C, except results.seq,
 * which is stored XOR 2^63 so that SQL's signed order is seq's unsigned
 * order (range deletes and "lowest seq" run in SQL).
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
 * (a real hash or ciphertext is never empty). Version 2 (snapshots already
 * on disk) is the same without atime_ns; it restores with atime = mtime,
 * what version 2 showed as atime. */
#include "store/store.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "lib/log.h"

#define STORE_DUMP_MAGIC 0x53534656u /* "VFSS" */
#define STORE_DUMP_VERSION 3u
#define STORE_DUMP_VERSION_PREV 2u /* no atime_ns; still restored */
/* A parent chain longer than this can only come from a corrupt table. */
#define STORE_MAX_DEPTH (1u << 24)

enum sid {
	Q_BEGIN,
	Q_RELEASE,
	Q_ROLLBACK,
	Q_GET,
	Q_CHILD,
	Q_NSUBDIRS,
	Q_HASCHILD,
	Q_INSERT,
	Q_DELETE,
	Q_TOUCH,
	Q_SETVAL,
	Q_SETATTR,
	Q_SETNAME,
	Q_CLEARHASH,
	Q_GETVAL,
	Q_READDIR,
	Q_NEXTINO_GET,
	Q_NEXTINO_SET,
	Q_CLIENT_GET,
	Q_CLIENT_PUT,
	Q_CLIENT_INSERT,
	Q_RESULT_GET,
	Q_RESULT_INSERT,
	Q_RESULT_TRIM,
	Q_RESULT_LOWEST,
	Q_EXPIRE_RESULTS,
	Q_EXPIRE_CLIENTS,
	Q_APPLIES_GET,
	Q_APPLIES_SET,
	Q_STATS,
	Q_DUMP_INODES,
	Q_DUMP_CLIENTS,
	Q_DUMP_RESULTS,
	Q_WIPE_INODES,
	Q_WIPE_CLIENTS,
	Q_WIPE_RESULTS,
	Q_ORPHANS,
	Q_REACHABLE,
	Q_COUNT_ALL,
	Q_COUNT_
};

#define NODE_COLS "ino, parent, mode, uid, gid, size, mtime_ns, ctime_ns, atime_ns"
#define S_IFDIR_STR "16384"
#define S_IFMT_STR "61440"

static const char *const sql_text[Q_COUNT_] = {
	[Q_BEGIN] = "SAVEPOINT sp",
	[Q_RELEASE] = "RELEASE sp",
	[Q_ROLLBACK] = "ROLLBACK TO sp",
	[Q_GET] = "SELECT " NODE_COLS " FROM inodes WHERE ino = ?1",
	[Q_CHILD] = "SELECT " NODE_COLS " FROM inodes WHERE parent = ?1 AND name_hash = ?2",
	[Q_NSUBDIRS] = "SELECT count(*) FROM inodes WHERE parent = ?1 AND (mode & " S_IFMT_STR
		       ") = " S_IFDIR_STR,
	[Q_HASCHILD] = "SELECT count(*) FROM (SELECT 1 FROM inodes WHERE parent = ?1 LIMIT 1)",
	[Q_INSERT] = "INSERT INTO inodes(ino, parent, name_hash, name_ct, mode, uid, gid, size, "
		     "mtime_ns, ctime_ns, value_ct, atime_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
		     "?8, ?9, ?10, ?11, ?12)",
	[Q_DELETE] = "DELETE FROM inodes WHERE ino = ?1",
	[Q_TOUCH] = "UPDATE inodes SET mtime_ns = ?2, ctime_ns = ?2 WHERE ino = ?1",
	[Q_SETVAL] = "UPDATE inodes SET value_ct = ?2, size = ?3, mtime_ns = ?4, ctime_ns = ?5 "
		     "WHERE ino = ?1",
	[Q_SETATTR] = "UPDATE inodes SET mode = ?2, uid = ?3, gid = ?4, mtime_ns = ?5, "
		      "ctime_ns = ?6, atime_ns = ?7 WHERE ino = ?1",
	[Q_SETNAME] = "UPDATE inodes SET parent = ?2, name_hash = ?3, name_ct = ?4, ctime_ns = ?5 "
		      "WHERE ino = ?1",
	[Q_CLEARHASH] = "UPDATE inodes SET name_hash = NULL WHERE ino = ?1",
	[Q_GETVAL] = "SELECT value_ct FROM inodes WHERE ino = ?1",
	[Q_READDIR] = "SELECT ino, mode, name_ct FROM inodes WHERE parent = ?1 ORDER BY ino",
	[Q_NEXTINO_GET] = "SELECT next_ino FROM meta",
	[Q_NEXTINO_SET] = "UPDATE meta SET next_ino = ?1",
	[Q_CLIENT_GET] = "SELECT floor, last_now_ns, nresults FROM clients WHERE client_id = ?1",
	[Q_CLIENT_PUT] = "INSERT OR REPLACE INTO clients(client_id, floor, last_now_ns, nresults) "
			 "VALUES (?1, ?2, ?3, ?4)",
	[Q_CLIENT_INSERT] = "INSERT INTO clients(client_id, floor, last_now_ns, nresults) "
			    "VALUES (?1, ?2, ?3, ?4)",
	[Q_RESULT_GET] = "SELECT result FROM results WHERE client_id = ?1 AND seq = ?2",
	[Q_RESULT_INSERT] = "INSERT INTO results(client_id, seq, result) VALUES (?1, ?2, ?3)",
	[Q_RESULT_TRIM] = "DELETE FROM results WHERE client_id = ?1 AND seq < ?2",
	[Q_RESULT_LOWEST] = "SELECT seq FROM results WHERE client_id = ?1 ORDER BY seq LIMIT 1",
	[Q_EXPIRE_RESULTS] = "DELETE FROM results WHERE client_id IN "
			     "(SELECT client_id FROM clients WHERE last_now_ns < ?1)",
	[Q_EXPIRE_CLIENTS] = "DELETE FROM clients WHERE last_now_ns < ?1",
	[Q_APPLIES_GET] = "SELECT applies FROM meta",
	[Q_APPLIES_SET] = "UPDATE meta SET applies = ?1",
	[Q_STATS] = "SELECT count(*), coalesce(sum(size), 0) FROM inodes WHERE (mode & " S_IFMT_STR
		    ") != " S_IFDIR_STR,
	[Q_DUMP_INODES] = "SELECT ino, parent, name_hash, name_ct, mode, uid, gid, size, mtime_ns, "
			  "ctime_ns, atime_ns, value_ct FROM inodes ORDER BY ino",
	[Q_DUMP_CLIENTS] = "SELECT client_id, floor, last_now_ns, nresults FROM clients "
			   "ORDER BY client_id",
	[Q_DUMP_RESULTS] = "SELECT seq, result FROM results WHERE client_id = ?1 ORDER BY seq",
	[Q_WIPE_INODES] = "DELETE FROM inodes",
	[Q_WIPE_CLIENTS] = "DELETE FROM clients",
	[Q_WIPE_RESULTS] = "DELETE FROM results",
	/* Non-root nodes whose parent is missing or not a directory. */
	[Q_ORPHANS] = "SELECT count(*) FROM inodes c LEFT JOIN inodes p ON p.ino = c.parent "
		      "WHERE c.ino != 1 AND (p.ino IS NULL OR (p.mode & " S_IFMT_STR ") != "
		      S_IFDIR_STR ")",
	/* Nodes reachable from the root; fewer than all means a cycle. */
	[Q_REACHABLE] = "WITH RECURSIVE r(ino) AS (SELECT 1 UNION SELECT i.ino FROM inodes i "
			"JOIN r ON i.parent = r.ino) SELECT count(*) FROM r",
	[Q_COUNT_ALL] = "SELECT count(*) FROM inodes",
};

static const char schema_sql[] =
	"CREATE TABLE inodes ("
	" ino INTEGER PRIMARY KEY,"
	" parent INTEGER NOT NULL,"
	" name_hash BLOB,"
	" name_ct BLOB,"
	" mode INTEGER NOT NULL,"
	" uid INTEGER NOT NULL,"
	" gid INTEGER NOT NULL,"
	" size INTEGER NOT NULL,"
	" mtime_ns INTEGER NOT NULL,"
	" ctime_ns INTEGER NOT NULL,"
	" atime_ns INTEGER NOT NULL,"
	" value_ct BLOB,"
	" UNIQUE (parent, name_hash));"
	"CREATE TABLE meta (next_ino INTEGER NOT NULL, applies INTEGER NOT NULL);"
	"CREATE TABLE clients ("
	" client_id INTEGER PRIMARY KEY,"
	" floor INTEGER NOT NULL,"
	" last_now_ns INTEGER NOT NULL,"
	" nresults INTEGER NOT NULL);"
	"CREATE TABLE results ("
	" client_id INTEGER NOT NULL,"
	" seq INTEGER NOT NULL,"
	" result INTEGER NOT NULL,"
	" PRIMARY KEY (client_id, seq)) WITHOUT ROWID;"
	"INSERT INTO meta VALUES (2, 0);"
	"INSERT INTO inodes (ino, parent, mode, uid, gid, size, mtime_ns, ctime_ns, atime_ns)"
	" VALUES (1, 0, 16877, 0, 0, 0, 0, 0, 0);"; /* 16877 = S_IFDIR | 0755 */

struct store {
	sqlite3 *db;
	struct barrier *barrier;
	sqlite3_stmt *stmts[Q_COUNT_];
	/* Set by any storage or crypto failure during store_apply. */
	bool fatal;
	struct store_changes changes; /* of the last store_apply */
};

struct inode {
	uint64_t ino;
	uint64_t parent;
	uint32_t mode;
	uint32_t uid;
	uint32_t gid;
	uint64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
	int64_t atime_ns;
};

static const uint8_t empty_value[1];

/* ---- SQLite helpers ---------------------------------------------------- */

static int db_fail(struct store *s, const char *what)
{
	/* sqlite3_errmsg names tables and columns, never bound values. */
	log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
	s->fatal = true;
	return -EIO;
}

static sqlite3_stmt *q(struct store *s, enum sid id)
{
	if (s->stmts[id] == NULL &&
	    sqlite3_prepare_v3(s->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[id],
			       NULL) != SQLITE_OK) {
		db_fail(s, "prepare");
		return NULL;
	}
	return s->stmts[id];
}

/* Resets a statement after use; clears bindings so that no pointer to a
 * caller's (about to be wiped) buffer outlives the call. */
static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static void bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/* Binds without copying (the caller keeps P alive until done()); a NULL or
 * empty blob binds SQL NULL. */
static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	if (p == NULL || n == 0)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)n, SQLITE_STATIC);
}

static uint64_t col_u64(sqlite3_stmt *st, int i)
{
	return (uint64_t)sqlite3_column_int64(st, i);
}

static uint32_t col_u32(sqlite3_stmt *st, int i)
{
	return (uint32_t)sqlite3_column_int64(st, i);
}

static const uint8_t *col_blob(sqlite3_stmt *st, int i, size_t *ret_len)
{
	const uint8_t *p = sqlite3_column_blob(st, i);
	*ret_len = (size_t)sqlite3_column_bytes(st, i);
	return p;
}

/* Runs a statement that returns no rows (bindings already made). */
static int run(struct store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	done(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, what);
	return 0;
}

static int exec_id(struct store *s, enum sid id)
{
	sqlite3_stmt *st = q(s, id);
	if (st == NULL)
		return -EIO;
	return run(s, st, sql_text[id]);
}

/* Runs a one-row, one-integer query with an optional u64 argument. */
static int query_count(struct store *s, enum sid id, bool has_arg, uint64_t arg, uint64_t *ret)
{
	sqlite3_stmt *st = q(s, id);
	if (st == NULL)
		return -EIO;
	if (has_arg)
		bind_u64(st, 1, arg);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		done(st);
		return db_fail(s, "count");
	}
	*ret = col_u64(st, 0);
	done(st);
	return 0;
}

/* Rolls back the open savepoint and closes it. */
static void rollback(struct store *s)
{
	if (exec_id(s, Q_ROLLBACK) != 0 || exec_id(s, Q_RELEASE) != 0)
		log_error("store: rollback failed; state is not trustworthy");
}

static void buf_truncate(struct buf *b, size_t len)
{
	if (b->data != NULL && b->len > len)
		explicit_bzero(b->data + len, b->len - len);
	if (b->len > len)
		b->len = len;
}

/* ---- Crypto helpers ---------------------------------------------------- */

static void put_le64(uint8_t out[8], uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

/* AAD = label || u64 LE: binds a ciphertext to its parent or inode. */
static size_t make_aad(uint8_t out[16], const char *label, uint64_t v)
{
	size_t n = strlen(label);
	memcpy(out, label, n);
	put_le64(out + n, v);
	return n + 8;
}

/* Maps a barrier error to what store callers see: tampering or corruption
 * becomes -EIO, being sealed stays -ENOKEY. Logs without names or values. */
static int crypto_fail(struct store *s, int rc, const char *what, uint64_t ino)
{
	log_error("store: cannot %s (inode %llu): %s", what, (unsigned long long)ino,
		  strerror(-rc));
	s->fatal = true;
	return rc == -ENOKEY || rc == -ENOMEM ? rc : -EIO;
}

static int name_hash(struct store *s, uint64_t parent, const uint8_t *name, size_t len,
		     uint8_t out[BARRIER_HASH_LEN])
{
	uint8_t in[8 + VFS_MAX_NAME];
	put_le64(in, parent);
	memcpy(in + 8, name, len);
	int rc = barrier_hash(s->barrier, in, 8 + len, out);
	explicit_bzero(in, sizeof(in));
	if (rc != 0)
		return crypto_fail(s, rc, "hash name", parent);
	return 0;
}

/* AAD = "name" || parent || ino: a name ciphertext opens only in its own
 * row, so names cannot be swapped between entries, even in one directory. */
static size_t make_name_aad(uint8_t out[24], uint64_t parent, uint64_t ino)
{
	size_t n = make_aad(out, "name", parent);
	put_le64(out + n, ino);
	return n + 8;
}

static int encrypt_name(struct store *s, uint64_t parent, uint64_t ino, const uint8_t *name,
			size_t len, struct buf *out)
{
	uint8_t aad[24];
	size_t aad_len = make_name_aad(aad, parent, ino);
	int rc = barrier_encrypt(s->barrier, aad, aad_len, name, len, out);
	if (rc != 0)
		return crypto_fail(s, rc, "encrypt name", parent);
	return 0;
}

static int decrypt_name(struct store *s, uint64_t parent, uint64_t ino, const uint8_t *ct,
			size_t ct_len, struct buf *out)
{
	uint8_t aad[24];
	size_t aad_len = make_name_aad(aad, parent, ino);
	int rc = barrier_decrypt(s->barrier, aad, aad_len, ct, ct_len, out);
	if (rc != 0)
		return crypto_fail(s, rc, "decrypt name", ino);
	return 0;
}

static int encrypt_value(struct store *s, uint64_t ino, const uint8_t *value, size_t len,
			 struct buf *out)
{
	uint8_t aad[16];
	size_t aad_len = make_aad(aad, "value", ino);
	int rc = barrier_encrypt(s->barrier, aad, aad_len, len > 0 ? value : empty_value, len,
				 out);
	if (rc != 0)
		return crypto_fail(s, rc, "encrypt value", ino);
	return 0;
}

static int decrypt_value(struct store *s, uint64_t ino, const uint8_t *ct, size_t ct_len,
			 struct buf *out)
{
	uint8_t aad[16];
	size_t aad_len = make_aad(aad, "value", ino);
	size_t start = out->len;
	int rc = barrier_decrypt(s->barrier, aad, aad_len, ct, ct_len, out);
	if (rc != 0) {
		buf_truncate(out, start);
		return crypto_fail(s, rc, "decrypt value", ino);
	}
	return 0;
}

/* ---- Node helpers ------------------------------------------------------ */

static bool inode_is_dir(const struct inode *n)
{
	return S_ISDIR(n->mode);
}

static void inode_read(sqlite3_stmt *st, struct inode *n)
{
	n->ino = col_u64(st, 0);
	n->parent = col_u64(st, 1);
	n->mode = col_u32(st, 2);
	n->uid = col_u32(st, 3);
	n->gid = col_u32(st, 4);
	n->size = col_u64(st, 5);
	n->mtime_ns = sqlite3_column_int64(st, 6);
	n->ctime_ns = sqlite3_column_int64(st, 7);
	n->atime_ns = sqlite3_column_int64(st, 8);
}

/* Runs an inode query (bindings made); 0, -ENOENT or -EIO. */
static int inode_step(struct store *s, sqlite3_stmt *st, struct inode *ret)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		inode_read(st, ret);
	done(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return db_fail(s, "read inode");
}

static int get_inode(struct store *s, uint64_t ino, struct inode *ret)
{
	sqlite3_stmt *st = q(s, Q_GET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, ino);
	return inode_step(s, st, ret);
}

static int get_dir(struct store *s, uint64_t ino, struct inode *ret)
{
	int rc = get_inode(s, ino, ret);
	if (rc == 0 && !inode_is_dir(ret))
		return -ENOTDIR;
	return rc;
}

static int find_child(struct store *s, uint64_t parent, const uint8_t hash[BARRIER_HASH_LEN],
		      struct inode *ret)
{
	sqlite3_stmt *st = q(s, Q_CHILD);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, parent);
	if (bind_blob(st, 2, hash, BARRIER_HASH_LEN) != SQLITE_OK) {
		done(st);
		return db_fail(s, "bind");
	}
	return inode_step(s, st, ret);
}

static int has_children(struct store *s, uint64_t ino, bool *ret)
{
	uint64_t n;
	int rc = query_count(s, Q_HASCHILD, true, ino, &n);
	if (rc == 0)
		*ret = n > 0;
	return rc;
}

static int inode_attr(struct store *s, const struct inode *n, struct vfs_attr *ret)
{
	uint64_t subdirs = 0;
	if (inode_is_dir(n)) {
		int rc = query_count(s, Q_NSUBDIRS, true, n->ino, &subdirs);
		if (rc != 0)
			return rc;
	}
	ret->ino = n->ino;
	ret->mode = n->mode;
	ret->uid = n->uid;
	ret->gid = n->gid;
	if (subdirs > UINT32_MAX - 2)
		subdirs = UINT32_MAX - 2;
	ret->nlink = inode_is_dir(n) ? (uint32_t)subdirs + 2u : 1u;
	ret->size = n->size;
	ret->mtime_ns = n->mtime_ns;
	ret->ctime_ns = n->ctime_ns;
	ret->atime_ns = n->atime_ns;
	return 0;
}

/* Names as rename(2) and friends accept them. */
static bool name_valid(const uint8_t *name, size_t len)
{
	if (name == NULL || len == 0 || len > VFS_MAX_NAME)
		return false;
	if (memchr(name, '/', len) != NULL || memchr(name, '\0', len) != NULL)
		return false;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	return true;
}

/* Loads an existing directory PARENT and the hash of NAME in it. */
static int resolve_parent(struct store *s, uint64_t parent, const uint8_t *name, size_t len,
			  struct inode *ret_parent, uint8_t hash[BARRIER_HASH_LEN])
{
	int rc = get_dir(s, parent, ret_parent);
	if (rc != 0)
		return rc;
	if (!name_valid(name, len))
		return -EINVAL;
	return name_hash(s, parent, name, len, hash);
}

/* Records that INO's attributes change in this command (caches of them
 * must be dropped); NAMES: a name was removed or moved. */
static void mark_changed(struct store *s, uint64_t ino, bool names)
{
	struct store_changes *ch = &s->changes;
	ch->names |= names;
	for (unsigned i = 0; i < ch->n; i++)
		if (ch->ino[i] == ino)
			return;
	if (ch->n < STORE_MAX_CHANGES)
		ch->ino[ch->n++] = ino;
	else
		ch->overflow = true;
}

static int touch(struct store *s, uint64_t ino, int64_t now_ns)
{
	mark_changed(s, ino, false);
	sqlite3_stmt *st = q(s, Q_TOUCH);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, ino);
	bind_i64(st, 2, now_ns);
	return run(s, st, "touch");
}

static int delete_inode(struct store *s, uint64_t ino)
{
	mark_changed(s, ino, true);
	sqlite3_stmt *st = q(s, Q_DELETE);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, ino);
	return run(s, st, "delete inode");
}

/* Is ANC the inode INO or one of its ancestors? */
static int is_ancestor(struct store *s, uint64_t anc, uint64_t ino, bool *ret)
{
	for (uint32_t depth = 0; depth < STORE_MAX_DEPTH; depth++) {
		struct inode n;
		if (ino == anc) {
			*ret = true;
			return 0;
		}
		if (ino == VFS_ROOT_INO) {
			*ret = false;
			return 0;
		}
		int rc = get_inode(s, ino, &n);
		if (rc != 0) {
			log_error("store: broken parent chain at inode %llu",
				  (unsigned long long)ino);
			s->fatal = true;
			return -EIO;
		}
		ino = n.parent;
	}
	log_error("store: parent chain too deep (cycle?)");
	s->fatal = true;
	return -EIO;
}

/* Gives inode INO the name NAME in directory PARENT: new hash and a name
 * ciphertext bound to the new parent. */
static int set_name(struct store *s, uint64_t ino, uint64_t parent, const uint8_t *name,
		    size_t len, int64_t now_ns)
{
	mark_changed(s, ino, true);
	uint8_t hash[BARRIER_HASH_LEN];
	struct buf ct;
	buf_init(&ct);
	int rc = name_hash(s, parent, name, len, hash);
	if (rc == 0)
		rc = encrypt_name(s, parent, ino, name, len, &ct);
	sqlite3_stmt *st = rc == 0 ? q(s, Q_SETNAME) : NULL;
	if (rc == 0 && st == NULL)
		rc = -EIO;
	if (rc == 0) {
		bind_u64(st, 1, ino);
		bind_u64(st, 2, parent);
		bind_i64(st, 5, now_ns);
		if (bind_blob(st, 3, hash, sizeof(hash)) != SQLITE_OK ||
		    bind_blob(st, 4, ct.data, ct.len) != SQLITE_OK) {
			done(st);
			rc = db_fail(s, "bind");
		} else {
			rc = run(s, st, "rename inode");
		}
	}
	buf_free(&ct);
	return rc;
}

/* ---- Exactly-once state ------------------------------------------------ */

/* One client's row; a client not in the table reads as floor 0, no
 * results, and a last_now_ns older than any command. */
struct client {
	uint64_t id;
	uint64_t floor;
	int64_t last_now_ns;
	uint64_t nresults;
};

#define SEQ_BIAS (UINT64_C(1) << 63)

/* results.seq as stored: signed order of the key = unsigned order of seq. */
static void bind_seq(sqlite3_stmt *st, int i, uint64_t seq)
{
	bind_u64(st, i, seq ^ SEQ_BIAS);
}

static uint64_t col_seq(sqlite3_stmt *st, int i)
{
	return col_u64(st, i) ^ SEQ_BIAS;
}

static int client_load(struct store *s, uint64_t id, struct client *ret)
{
	sqlite3_stmt *st = q(s, Q_CLIENT_GET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, id);
	*ret = (struct client){ .id = id, .last_now_ns = INT64_MIN };
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		ret->floor = col_u64(st, 0);
		ret->last_now_ns = sqlite3_column_int64(st, 1);
		ret->nresults = col_u64(st, 2);
	}
	done(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(s, "read client");
	return 0;
}

static int client_save(struct store *s, enum sid id, const struct client *c)
{
	sqlite3_stmt *st = q(s, id);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, c->id);
	bind_u64(st, 2, c->floor);
	bind_i64(st, 3, c->last_now_ns);
	bind_u64(st, 4, c->nresults);
	return run(s, st, "write client");
}

static int result_get(struct store *s, uint64_t client, uint64_t seq, bool *ret_found,
		      int64_t *ret_result)
{
	sqlite3_stmt *st = q(s, Q_RESULT_GET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, client);
	bind_seq(st, 2, seq);
	int rc = sqlite3_step(st);
	*ret_found = rc == SQLITE_ROW;
	if (rc == SQLITE_ROW)
		*ret_result = sqlite3_column_int64(st, 0);
	done(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_fail(s, "read result");
	return 0;
}

static int result_put(struct store *s, uint64_t client, uint64_t seq, int64_t result)
{
	sqlite3_stmt *st = q(s, Q_RESULT_INSERT);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, client);
	bind_seq(st, 2, seq);
	bind_i64(st, 3, result);
	return run(s, st, "write result");
}

/* Raises C's floor to FLOOR (never lowers it) and forgets the results
 * below it: the client promised never to ask for them again. */
static int raise_floor(struct store *s, struct client *c, uint64_t floor)
{
	if (floor <= c->floor)
		return 0;
	sqlite3_stmt *st = q(s, Q_RESULT_TRIM);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, c->id);
	bind_seq(st, 2, floor);
	int rc = run(s, st, "trim results");
	if (rc != 0)
		return rc;
	uint64_t gone = (uint64_t)sqlite3_changes64(s->db);
	if (gone > c->nresults) {
		log_error("store: client result count is off; state is not trustworthy");
		s->fatal = true;
		return -EIO;
	}
	c->nresults -= gone;
	c->floor = floor;
	return 0;
}

/* Keeps at most STORE_MAX_RESULTS results for C by forgetting its lowest
 * seqs; the floor moves just past each one so that its retry is answered
 * -EALREADY rather than applied a second time. */
static int evict_excess(struct store *s, struct client *c)
{
	while (c->nresults > STORE_MAX_RESULTS) {
		sqlite3_stmt *st = q(s, Q_RESULT_LOWEST);
		if (st == NULL)
			return -EIO;
		bind_u64(st, 1, c->id);
		int rc = sqlite3_step(st);
		uint64_t lowest = rc == SQLITE_ROW ? col_seq(st, 0) : 0;
		done(st);
		if (rc != SQLITE_ROW)
			return db_fail(s, "find lowest result");
		/* A row below the floor or at the last seq (with more than one
		 * row) breaks the invariants; stop rather than loop forever. */
		if (lowest < c->floor || lowest == UINT64_MAX) {
			log_error("store: kept results out of order; state is not trustworthy");
			s->fatal = true;
			return -EIO;
		}
		rc = raise_floor(s, c, lowest + 1);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int exec_i64(struct store *s, enum sid id, int64_t arg)
{
	sqlite3_stmt *st = q(s, id);
	if (st == NULL)
		return -EIO;
	bind_i64(st, 1, arg);
	return run(s, st, sql_text[id]);
}

/* Counts this call and, every STORE_EXPIRY_EVERY calls, forgets clients
 * idle for more than STORE_CLIENT_EXPIRY_NS of command time before NOW_NS.
 * Only replicated inputs decide, so every replica sweeps alike. */
static int tick_and_expire(struct store *s, int64_t now_ns)
{
	uint64_t applies;
	int rc = query_count(s, Q_APPLIES_GET, false, 0, &applies);
	if (rc != 0)
		return rc;
	applies++;
	sqlite3_stmt *st = q(s, Q_APPLIES_SET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, applies);
	rc = run(s, st, "count applies");
	if (rc != 0 || applies % STORE_EXPIRY_EVERY != 0)
		return rc;
	if (now_ns < INT64_MIN + STORE_CLIENT_EXPIRY_NS)
		return 0; /* nothing can be that old */
	int64_t cutoff = now_ns - STORE_CLIENT_EXPIRY_NS;
	/* Results first: their query finds the clients to forget. */
	rc = exec_i64(s, Q_EXPIRE_RESULTS, cutoff);
	if (rc == 0)
		rc = exec_i64(s, Q_EXPIRE_CLIENTS, cutoff);
	return rc;
}

/* Decides whether CMD is new (*RET_NEW) or, if not, what it is answered
 * (*RET_RESULT). Only reads: the bookkeeping is written after the command
 * so that rolling back a failed command cannot undo it. */
static int dedup_check(struct store *s, const struct client *c, const struct cmd *cmd,
		       bool *ret_new, int64_t *ret_result)
{
	uint64_t floor = cmd->ack_below > c->floor ? cmd->ack_below : c->floor;
	bool found = false;
	*ret_new = false;
	if (cmd->seq < floor) {
		*ret_result = -EALREADY;
		return 0;
	}
	int rc = result_get(s, c->id, cmd->seq, &found, ret_result);
	if (rc == 0)
		*ret_new = !found;
	return rc;
}

/* Writes what store_apply learnt from CMD: the raised floor, the result of
 * a command just applied (RESULT, if APPLIED), the client's clock. */
static int dedup_record(struct store *s, struct client *c, const struct cmd *cmd, bool applied,
			int64_t result)
{
	int rc = raise_floor(s, c, cmd->ack_below);
	if (rc == 0 && applied) {
		rc = result_put(s, c->id, cmd->seq, result);
		if (rc == 0) {
			c->nresults++;
			rc = evict_excess(s, c);
		}
	}
	if (cmd->now_ns > c->last_now_ns)
		c->last_now_ns = cmd->now_ns;
	if (rc == 0)
		rc = client_save(s, Q_CLIENT_PUT, c);
	/* After the save, so that the current client is never swept. */
	if (rc == 0)
		rc = tick_and_expire(s, cmd->now_ns);
	return rc;
}

/* ---- Commands ---------------------------------------------------------- */

static int insert_inode(struct store *s, const struct inode *n, const uint8_t *hash,
		       size_t hash_len, const struct buf *name_ct, const struct buf *value_ct)
{
	sqlite3_stmt *st = q(s, Q_INSERT);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, n->ino);
	bind_u64(st, 2, n->parent);
	sqlite3_bind_int64(st, 5, n->mode);
	sqlite3_bind_int64(st, 6, n->uid);
	sqlite3_bind_int64(st, 7, n->gid);
	bind_u64(st, 8, n->size);
	bind_i64(st, 9, n->mtime_ns);
	bind_i64(st, 10, n->ctime_ns);
	bind_i64(st, 12, n->atime_ns);
	if (bind_blob(st, 3, hash, hash_len) != SQLITE_OK ||
	    bind_blob(st, 4, name_ct->data, name_ct->len) != SQLITE_OK ||
	    bind_blob(st, 11, value_ct->data, value_ct->len) != SQLITE_OK) {
		done(st);
		return db_fail(s, "bind");
	}
	return run(s, st, "insert inode");
}

static int64_t op_create(struct store *s, const struct cmd *c, bool dir)
{
	struct inode parent, existing;
	uint8_t hash[BARRIER_HASH_LEN];
	uint64_t next;
	int rc = resolve_parent(s, c->ino, c->name, c->name_len, &parent, hash);
	if (rc != 0)
		return rc;
	rc = find_child(s, c->ino, hash, &existing);
	if (rc != -ENOENT)
		return rc == 0 ? -EEXIST : rc;
	rc = query_count(s, Q_NEXTINO_GET, false, 0, &next);
	if (rc != 0)
		return rc;
	if (next >= (uint64_t)INT64_MAX)
		return -ENOSPC;

	struct inode n = {
		.ino = next,
		.parent = c->ino,
		.mode = (c->mode & 07777u) | (dir ? (uint32_t)S_IFDIR : (uint32_t)S_IFREG),
		.uid = c->uid,
		.gid = c->gid,
		.size = 0,
		.mtime_ns = c->now_ns,
		.ctime_ns = c->now_ns,
		.atime_ns = c->now_ns,
	};
	struct buf name_ct, value_ct;
	buf_init(&name_ct);
	buf_init(&value_ct);
	rc = encrypt_name(s, n.parent, n.ino, c->name, c->name_len, &name_ct);
	if (rc == 0 && !dir)
		rc = encrypt_value(s, n.ino, NULL, 0, &value_ct);
	if (rc == 0)
		rc = insert_inode(s, &n, hash, sizeof(hash), &name_ct, &value_ct);
	buf_free(&name_ct);
	buf_free(&value_ct);
	if (rc != 0)
		return rc;

	sqlite3_stmt *st = q(s, Q_NEXTINO_SET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, next + 1);
	rc = run(s, st, "advance inode counter");
	if (rc == 0)
		rc = touch(s, c->ino, c->now_ns);
	return rc != 0 ? rc : (int64_t)n.ino;
}

/* Replaces the value of regular file INO, setting size and times. */
static int write_value(struct store *s, uint64_t ino, const uint8_t *value, size_t len,
		       int64_t mtime_ns, int64_t ctime_ns)
{
	mark_changed(s, ino, false);
	struct buf ct;
	buf_init(&ct);
	int rc = encrypt_value(s, ino, value, len, &ct);
	sqlite3_stmt *st = rc == 0 ? q(s, Q_SETVAL) : NULL;
	if (rc == 0 && st == NULL)
		rc = -EIO;
	if (rc == 0) {
		bind_u64(st, 1, ino);
		bind_u64(st, 3, (uint64_t)len);
		bind_i64(st, 4, mtime_ns);
		bind_i64(st, 5, ctime_ns);
		if (bind_blob(st, 2, ct.data, ct.len) != SQLITE_OK) {
			done(st);
			rc = db_fail(s, "bind");
		} else {
			rc = run(s, st, "write value");
		}
	}
	buf_free(&ct);
	return rc;
}

static int store_attrs(struct store *s, const struct inode *n, int64_t mtime_ns,
		       int64_t ctime_ns);

/* What a write by an unprivileged process leaves of MODE (Linux's
 * should_remove_suid): no set-user-ID; no set-group-ID if group-executable
 * (without group execute it marks mandatory locking, not privilege). */
static uint32_t mode_after_unprivileged_write(uint32_t mode)
{
	uint32_t kill = S_ISUID;
	if (mode & S_IXGRP)
		kill |= S_ISGID;
	return mode & ~kill;
}

static int64_t op_set_value(struct store *s, const struct cmd *c)
{
	struct inode n;
	int rc = get_inode(s, c->ino, &n);
	if (rc != 0)
		return rc;
	if (inode_is_dir(&n))
		return -EISDIR;
	if (c->value_len > VFS_MAX_VALUE)
		return -EFBIG;
	rc = write_value(s, n.ino, c->value, c->value_len, c->now_ns, c->now_ns);
	uint32_t mode = (c->flags & CMD_SET_VALUE_UNPRIVILEGED)
				? mode_after_unprivileged_write(n.mode)
				: n.mode;
	if (rc == 0 && mode != n.mode) {
		n.mode = mode;
		rc = store_attrs(s, &n, c->now_ns, c->now_ns);
	}
	return rc != 0 ? rc : (int64_t)n.ino;
}

/* Reads the plaintext value of file N into OUT. */
static int read_value(struct store *s, const struct inode *n, struct buf *out)
{
	sqlite3_stmt *st = q(s, Q_GETVAL);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, n->ino);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		done(st);
		return rc == SQLITE_DONE ? -ENOENT : db_fail(s, "read value");
	}
	size_t ct_len;
	const uint8_t *ct = col_blob(st, 0, &ct_len);
	rc = decrypt_value(s, n->ino, ct, ct_len, out);
	done(st);
	return rc;
}

/* Truncates or zero-extends file N to SIZE bytes. */
static int resize_value(struct store *s, const struct inode *n, uint64_t size, int64_t mtime_ns,
			int64_t ctime_ns)
{
	struct buf v;
	buf_init(&v);
	int rc = read_value(s, n, &v);
	if (rc == 0 && size > v.len) {
		size_t extra = (size_t)size - v.len;
		if (buf_reserve(&v, extra) == 0) {
			memset(v.data + v.len, 0, extra);
			v.len += extra;
		} else {
			rc = crypto_fail(s, -ENOMEM, "extend value", n->ino);
		}
	}
	if (rc == 0) {
		buf_truncate(&v, (size_t)size);
		rc = write_value(s, n->ino, v.data, v.len, mtime_ns, ctime_ns);
	}
	buf_free(&v);
	return rc;
}

static int64_t op_setattr(struct store *s, const struct cmd *c)
{
	const uint32_t known = VFS_SET_MODE | VFS_SET_UID | VFS_SET_GID | VFS_SET_SIZE |
			       VFS_SET_MTIME | VFS_SET_ATIME;
	struct inode n;
	int rc = get_inode(s, c->ino, &n);
	if (rc != 0)
		return rc;
	if ((c->valid & ~known) != 0)
		return -EINVAL;

	int64_t mtime = n.mtime_ns;
	if (c->valid & VFS_SET_SIZE) {
		if (inode_is_dir(&n))
			return -EISDIR;
		if (c->size > VFS_MAX_VALUE)
			return -EFBIG;
		/* truncate(2) updates mtime unless the caller sets it too. */
		mtime = c->now_ns;
	}
	if (c->valid & VFS_SET_MTIME)
		mtime = c->mtime_ns;
	if (c->valid & VFS_SET_ATIME)
		n.atime_ns = c->atime_ns;
	if (c->valid & VFS_SET_MODE)
		n.mode = (n.mode & (uint32_t)S_IFMT) | (c->mode & 07777u);
	if (c->valid & VFS_SET_UID)
		n.uid = c->uid;
	if (c->valid & VFS_SET_GID)
		n.gid = c->gid;

	if (c->valid & VFS_SET_SIZE) {
		rc = resize_value(s, &n, c->size, mtime, c->now_ns);
		if (rc != 0)
			return rc;
	}
	rc = store_attrs(s, &n, mtime, c->now_ns);
	return rc != 0 ? rc : (int64_t)n.ino;
}

/* Writes N's mode, owner, group and atime, with these times. */
static int store_attrs(struct store *s, const struct inode *n, int64_t mtime_ns,
		       int64_t ctime_ns)
{
	mark_changed(s, n->ino, false);
	sqlite3_stmt *st = q(s, Q_SETATTR);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, n->ino);
	sqlite3_bind_int64(st, 2, n->mode);
	sqlite3_bind_int64(st, 3, n->uid);
	sqlite3_bind_int64(st, 4, n->gid);
	bind_i64(st, 5, mtime_ns);
	bind_i64(st, 6, ctime_ns);
	bind_i64(st, 7, n->atime_ns);
	return run(s, st, "setattr");
}

static int64_t op_remove(struct store *s, const struct cmd *c, bool dir)
{
	struct inode parent, n;
	uint8_t hash[BARRIER_HASH_LEN];
	int rc = resolve_parent(s, c->ino, c->name, c->name_len, &parent, hash);
	if (rc != 0)
		return rc;
	rc = find_child(s, c->ino, hash, &n);
	if (rc != 0)
		return rc;
	if (dir && !inode_is_dir(&n))
		return -ENOTDIR;
	if (!dir && inode_is_dir(&n))
		return -EISDIR;
	if (dir) {
		bool busy;
		rc = has_children(s, n.ino, &busy);
		if (rc != 0)
			return rc;
		if (busy)
			return -ENOTEMPTY;
	}
	rc = delete_inode(s, n.ino);
	if (rc == 0)
		rc = touch(s, c->ino, c->now_ns);
	return rc;
}

/* -EINVAL if directory DIR would end up inside its own subtree when moved
 * into directory DEST. */
static int check_not_into_self(struct store *s, const struct inode *dir, uint64_t dest)
{
	bool inside = false;
	if (!inode_is_dir(dir))
		return 0;
	int rc = is_ancestor(s, dir->ino, dest, &inside);
	if (rc != 0)
		return rc;
	return inside ? -EINVAL : 0;
}

static int rename_exchange(struct store *s, const struct cmd *c, const struct inode *src,
			   const struct inode *dst)
{
	int rc = check_not_into_self(s, src, c->new_parent);
	if (rc == 0)
		rc = check_not_into_self(s, dst, c->ino);
	if (rc != 0)
		return rc;
	/* Free dst's (parent, hash) slot first so the UNIQUE index never sees
	 * two nodes with one name in between the two updates. */
	sqlite3_stmt *st = q(s, Q_CLEARHASH);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, dst->ino);
	rc = run(s, st, "exchange");
	if (rc == 0)
		rc = set_name(s, src->ino, c->new_parent, c->new_name, c->new_name_len, c->now_ns);
	if (rc == 0)
		rc = set_name(s, dst->ino, c->ino, c->name, c->name_len, c->now_ns);
	return rc;
}

static int rename_replace(struct store *s, const struct cmd *c, const struct inode *src,
			  const struct inode *dst)
{
	int rc = check_not_into_self(s, src, c->new_parent);
	if (rc != 0)
		return rc;
	if (dst != NULL) {
		if (inode_is_dir(src) && !inode_is_dir(dst))
			return -ENOTDIR;
		if (!inode_is_dir(src) && inode_is_dir(dst))
			return -EISDIR;
		if (inode_is_dir(dst)) {
			bool busy;
			rc = has_children(s, dst->ino, &busy);
			if (rc != 0)
				return rc;
			if (busy)
				return -ENOTEMPTY;
		}
		rc = delete_inode(s, dst->ino);
		if (rc != 0)
			return rc;
	}
	return set_name(s, src->ino, c->new_parent, c->new_name, c->new_name_len, c->now_ns);
}

static int64_t op_rename(struct store *s, const struct cmd *c)
{
	const uint32_t known = VFS_RENAME_NOREPLACE | VFS_RENAME_EXCHANGE;
	struct inode parent, new_parent, src, dst;
	uint8_t hash[BARRIER_HASH_LEN], new_hash[BARRIER_HASH_LEN];

	if ((c->flags & ~known) != 0 || c->flags == known)
		return -EINVAL;
	int rc = resolve_parent(s, c->ino, c->name, c->name_len, &parent, hash);
	if (rc == 0)
		rc = resolve_parent(s, c->new_parent, c->new_name, c->new_name_len, &new_parent,
				    new_hash);
	if (rc == 0)
		rc = find_child(s, c->ino, hash, &src);
	if (rc != 0)
		return rc;
	rc = find_child(s, c->new_parent, new_hash, &dst);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	bool have_dst = rc == 0;

	if ((c->flags & VFS_RENAME_NOREPLACE) && have_dst)
		return -EEXIST;
	if ((c->flags & VFS_RENAME_EXCHANGE) && !have_dst)
		return -ENOENT;
	if (have_dst && dst.ino == src.ino)
		return 0;
	if (c->flags & VFS_RENAME_EXCHANGE)
		rc = rename_exchange(s, c, &src, &dst);
	else
		rc = rename_replace(s, c, &src, have_dst ? &dst : NULL);
	if (rc == 0)
		rc = touch(s, c->ino, c->now_ns);
	if (rc == 0 && c->new_parent != c->ino)
		rc = touch(s, c->new_parent, c->now_ns);
	return rc;
}

static int64_t apply_op(struct store *s, const struct cmd *c)
{
	switch (c->type) {
	case CMD_CREATE:
		return op_create(s, c, false);
	case CMD_MKDIR:
		return op_create(s, c, true);
	case CMD_SET_VALUE:
		return op_set_value(s, c);
	case CMD_SETATTR:
		return op_setattr(s, c);
	case CMD_UNLINK:
		return op_remove(s, c, false);
	case CMD_RMDIR:
		return op_remove(s, c, true);
	case CMD_RENAME:
		return op_rename(s, c);
	default:
		return -EINVAL;
	}
}

int64_t store_apply(struct store *s, const struct cmd *cmd, int *ret_fatal)
{
	struct client c;
	bool fresh = false;
	int64_t result = 0;

	s->fatal = false;
	memset(&s->changes, 0, sizeof(s->changes));
	if (exec_id(s, Q_BEGIN) != 0) {
		*ret_fatal = 1;
		return -EIO;
	}
	int rc = client_load(s, cmd->client_id, &c);
	if (rc == 0)
		rc = dedup_check(s, &c, cmd, &fresh, &result);
	if (rc == 0 && fresh) {
		result = apply_op(s, cmd);
		/* A failed command keeps nothing but its result, so a retry
		 * gets the same answer. */
		if (!s->fatal && result < 0 && exec_id(s, Q_ROLLBACK) != 0)
			s->fatal = true;
	}
	if (rc == 0 && !s->fatal)
		rc = dedup_record(s, &c, cmd, fresh, result);
	if (rc == 0 && !s->fatal)
		rc = exec_id(s, Q_RELEASE);
	if (rc != 0 || s->fatal) {
		rollback(s);
		log_error("store: command type %u from client %llu failed fatally",
			  (unsigned)cmd->type, (unsigned long long)cmd->client_id);
		*ret_fatal = 1;
		return -EIO;
	}
	return result;
}

const struct store_changes *store_last_changes(const struct store *s)
{
	return &s->changes;
}

/* ---- Reads ------------------------------------------------------------- */

static int check_unsealed(const struct store *s)
{
	return barrier_is_unsealed(s->barrier) ? 0 : -ENOKEY;
}

int store_lookup(struct store *s, uint64_t parent, const uint8_t *name, size_t name_len,
		 struct vfs_attr *ret)
{
	struct inode dir, n;
	uint8_t hash[BARRIER_HASH_LEN];
	int rc = check_unsealed(s);
	if (rc != 0)
		return rc;
	rc = get_dir(s, parent, &dir);
	if (rc != 0)
		return rc;
	if (!name_valid(name, name_len))
		return name_len > VFS_MAX_NAME ? -ENAMETOOLONG : -ENOENT;
	rc = name_hash(s, parent, name, name_len, hash);
	if (rc == 0)
		rc = find_child(s, parent, hash, &n);
	if (rc == 0)
		rc = inode_attr(s, &n, ret);
	return rc;
}

int store_getattr(struct store *s, uint64_t ino, struct vfs_attr *ret)
{
	struct inode n;
	int rc = check_unsealed(s);
	if (rc == 0)
		rc = get_inode(s, ino, &n);
	if (rc == 0)
		rc = inode_attr(s, &n, ret);
	return rc;
}

static int readdir_rows(struct store *s, uint64_t ino, struct buf *out, uint32_t *ret_n)
{
	sqlite3_stmt *st = q(s, Q_READDIR);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, ino);
	struct buf name;
	buf_init(&name);
	uint32_t n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t child = col_u64(st, 0);
		size_t ct_len;
		const uint8_t *ct = col_blob(st, 2, &ct_len);
		buf_clear(&name);
		if ((rc = decrypt_name(s, ino, child, ct, ct_len, &name)) != 0)
			break;
		buf_put_u64(out, child);
		buf_put_u32(out, col_u32(st, 1));
		buf_put_blob(out, name.data, name.len);
		n++;
	}
	done(st);
	buf_free(&name);
	if (rc == SQLITE_DONE)
		rc = out->err;
	else if (rc > 0)
		rc = db_fail(s, "readdir");
	*ret_n = n;
	return rc;
}

int store_readdir(struct store *s, uint64_t ino, struct buf *out)
{
	struct inode dir;
	int rc = check_unsealed(s);
	if (rc == 0)
		rc = get_dir(s, ino, &dir);
	if (rc != 0)
		return rc;

	size_t start = out->len;
	uint32_t n = 0;
	buf_put_u32(out, 0); /* count, patched below */
	rc = readdir_rows(s, ino, out, &n);
	if (rc == 0 && out->err != 0)
		rc = out->err;
	if (rc != 0) {
		buf_truncate(out, start);
		return rc;
	}
	for (unsigned i = 0; i < 4; i++)
		out->data[start + i] = (uint8_t)(n >> (8 * i));
	return 0;
}

int store_read(struct store *s, uint64_t ino, struct buf *out)
{
	struct inode n;
	int rc = check_unsealed(s);
	if (rc == 0)
		rc = get_inode(s, ino, &n);
	if (rc != 0)
		return rc;
	if (inode_is_dir(&n))
		return -EISDIR;
	return read_value(s, &n, out);
}

void store_stats(struct store *s, uint64_t *ret_files, uint64_t *ret_bytes)
{
	*ret_files = 0;
	*ret_bytes = 0;
	sqlite3_stmt *st = q(s, Q_STATS);
	if (st == NULL)
		return;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*ret_files = col_u64(st, 0);
		*ret_bytes = col_u64(st, 1);
	} else {
		log_error("store: stats: %s", sqlite3_errmsg(s->db));
	}
	done(st);
}

/* ---- Dump and restore -------------------------------------------------- */

static void put_col_blob(struct buf *out, sqlite3_stmt *st, int i)
{
	size_t n;
	const uint8_t *p = col_blob(st, i, &n);
	buf_put_blob(out, p, n);
}

static int dump_inodes(struct store *s, struct buf *out)
{
	uint64_t count;
	int rc = query_count(s, Q_COUNT_ALL, false, 0, &count);
	if (rc != 0)
		return rc;
	if (count > UINT32_MAX)
		return -EOVERFLOW;
	buf_put_u32(out, (uint32_t)count);
	sqlite3_stmt *st = q(s, Q_DUMP_INODES);
	if (st == NULL)
		return -EIO;
	uint64_t n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		buf_put_u64(out, col_u64(st, 0));
		buf_put_u64(out, col_u64(st, 1));
		put_col_blob(out, st, 2);
		put_col_blob(out, st, 3);
		buf_put_u32(out, col_u32(st, 4));
		buf_put_u32(out, col_u32(st, 5));
		buf_put_u32(out, col_u32(st, 6));
		buf_put_u64(out, col_u64(st, 7));
		buf_put_i64(out, sqlite3_column_int64(st, 8));
		buf_put_i64(out, sqlite3_column_int64(st, 9));
		buf_put_i64(out, sqlite3_column_int64(st, 10));
		put_col_blob(out, st, 11);
		n++;
	}
	done(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, "dump inodes");
	return n == count ? 0 : -EIO;
}

/* Appends client C's kept results; there must be exactly N of them. */
static int dump_results(struct store *s, uint64_t client, uint64_t n, struct buf *out)
{
	if (n > STORE_MAX_RESULTS)
		return -EIO;
	buf_put_u32(out, (uint32_t)n);
	sqlite3_stmt *st = q(s, Q_DUMP_RESULTS);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, client);
	uint64_t seen = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		buf_put_u64(out, col_seq(st, 0));
		buf_put_i64(out, sqlite3_column_int64(st, 1));
		seen++;
	}
	done(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, "dump results");
	return seen == n ? 0 : -EIO;
}

static int dump_clients(struct store *s, struct buf *out)
{
	uint64_t applies;
	int rc = query_count(s, Q_APPLIES_GET, false, 0, &applies);
	if (rc != 0)
		return rc;
	buf_put_u64(out, applies);
	/* Count afterwards and patch: clients have no cheap count query. */
	size_t at = out->len;
	uint32_t n = 0;
	buf_put_u32(out, 0);
	/* Q_DUMP_CLIENTS stays open while Q_DUMP_RESULTS runs per client. */
	sqlite3_stmt *st = q(s, Q_DUMP_CLIENTS);
	if (st == NULL || q(s, Q_DUMP_RESULTS) == NULL)
		return -EIO;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		uint64_t client = col_u64(st, 0);
		buf_put_u64(out, client);
		buf_put_u64(out, col_u64(st, 1));
		buf_put_i64(out, sqlite3_column_int64(st, 2));
		int drc = dump_results(s, client, col_u64(st, 3), out);
		if (drc != 0) {
			done(st);
			log_error("store: client result count is off; cannot dump");
			return drc;
		}
		n++;
	}
	done(st);
	if (rc != SQLITE_DONE)
		return db_fail(s, "dump clients");
	if (out->err != 0)
		return out->err;
	for (unsigned i = 0; i < 4; i++)
		out->data[at + i] = (uint8_t)(n >> (8 * i));
	return 0;
}

int store_dump(struct store *s, struct buf *out)
{
	uint64_t next;
	size_t start = out->len;
	int rc = query_count(s, Q_NEXTINO_GET, false, 0, &next);
	if (rc == 0) {
		buf_put_u32(out, STORE_DUMP_MAGIC);
		buf_put_u32(out, STORE_DUMP_VERSION);
		buf_put_u64(out, next);
		rc = dump_inodes(s, out);
	}
	if (rc == 0)
		rc = dump_clients(s, out);
	if (rc == 0)
		rc = out->err;
	if (rc != 0)
		buf_truncate(out, start);
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
	size_t aad_len = make_name_aad(aad, r->n.parent, r->n.ino);
	struct buf name;
	buf_init(&name);
	int rc = barrier_decrypt(s->barrier, aad, aad_len, r->name_ct, r->name_ct_len, &name);
	uint8_t in[8 + VFS_MAX_NAME], hash[BARRIER_HASH_LEN];
	if (rc == 0 && (name.len == 0 || name.len > VFS_MAX_NAME))
		rc = -EBADMSG;
	if (rc == 0) {
		put_le64(in, r->n.parent);
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
		/* insert_inode takes bufs; wrap the borrowed bytes without copying. */
		name_ct = (struct buf){ .data = (uint8_t *)(uintptr_t)r.name_ct,
					.len = r.name_ct_len };
		value_ct = (struct buf){ .data = (uint8_t *)(uintptr_t)r.value_ct,
					 .len = r.value_ct_len };
		rc = insert_inode(s, &r.n, r.hash, r.hash_len, &name_ct, &value_ct);
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
		int rc = result_put(s, c->id, seq, result);
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
	sqlite3_stmt *st = q(s, Q_APPLIES_SET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, applies);
	int rc = run(s, st, "restore apply counter");
	for (uint32_t i = 0; i < count && rc == 0; i++) {
		struct client c;
		c.id = cursor_u64(cur);
		c.floor = cursor_u64(cur);
		c.last_now_ns = cursor_i64(cur);
		c.nresults = cursor_u32(cur);
		if (cur->err != 0 || c.nresults > STORE_MAX_RESULTS)
			return -EBADMSG;
		rc = client_save(s, Q_CLIENT_INSERT, &c);
		if (rc != 0)
			/* The same client twice: the dump is malformed. */
			return sqlite3_errcode(s->db) == SQLITE_CONSTRAINT ? -EBADMSG : rc;
		rc = restore_results(s, cur, &c);
	}
	return rc;
}

/* Every node hangs off a directory and is reachable from the root. */
static int restore_check_tree(struct store *s)
{
	uint64_t orphans, reachable, total;
	int rc = query_count(s, Q_ORPHANS, false, 0, &orphans);
	if (rc == 0)
		rc = query_count(s, Q_REACHABLE, false, 0, &reachable);
	if (rc == 0)
		rc = query_count(s, Q_COUNT_ALL, false, 0, &total);
	if (rc != 0)
		return rc;
	return orphans == 0 && reachable == total ? 0 : -EBADMSG;
}

static int restore_all(struct store *s, const uint8_t *data, size_t len)
{
	struct cursor c;
	cursor_init(&c, data, len);
	uint32_t magic = cursor_u32(&c);
	uint32_t version = cursor_u32(&c);
	uint64_t next_ino = cursor_u64(&c);
	if (c.err != 0 || magic != STORE_DUMP_MAGIC ||
	    (version != STORE_DUMP_VERSION && version != STORE_DUMP_VERSION_PREV) ||
	    next_ino < 2 || next_ino > (uint64_t)INT64_MAX)
		return -EBADMSG;

	int rc = exec_id(s, Q_WIPE_INODES);
	if (rc == 0)
		rc = exec_id(s, Q_WIPE_CLIENTS);
	if (rc == 0)
		rc = exec_id(s, Q_WIPE_RESULTS);
	if (rc == 0)
		rc = restore_inodes(s, &c, version, next_ino);
	if (rc == 0)
		rc = restore_clients(s, &c);
	if (rc == 0 && cursor_done(&c) != 0)
		rc = -EBADMSG;
	if (rc == 0)
		rc = restore_check_tree(s);
	if (rc != 0)
		return rc;
	sqlite3_stmt *st = q(s, Q_NEXTINO_SET);
	if (st == NULL)
		return -EIO;
	bind_u64(st, 1, next_ino);
	return run(s, st, "restore inode counter");
}

int store_restore(struct store *s, const uint8_t *data, size_t len)
{
	int rc = exec_id(s, Q_BEGIN);
	if (rc != 0)
		return rc;
	rc = restore_all(s, data, len);
	if (rc == 0)
		rc = exec_id(s, Q_RELEASE);
	if (rc != 0) {
		rollback(s);
		log_error("store: snapshot rejected (%s); previous state kept", strerror(-rc));
	}
	return rc;
}

/* ---- Lifecycle --------------------------------------------------------- */

int store_open(struct store **ret, struct barrier *barrier, char *errmsg, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return -ENOMEM;
	}
	s->barrier = barrier;
	int rc = sqlite3_open_v2(":memory:", &s->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		snprintf(errmsg, errlen, "cannot open state database: %s", sqlite3_errstr(rc));
		store_close(s);
		return rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	}
	char *err = NULL;
	rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, &err);
	if (rc != SQLITE_OK) {
		snprintf(errmsg, errlen, "cannot create state schema: %s",
			 err != NULL ? err : sqlite3_errstr(rc));
		sqlite3_free(err);
		store_close(s);
		return -EIO;
	}
	*ret = s;
	return 0;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < Q_COUNT_; i++)
		sqlite3_finalize(s->stmts[i]);
	sqlite3_close(s->db);
	free(s);
}

struct barrier *store_barrier(const struct store *s)
{
	return s->barrier;
}
