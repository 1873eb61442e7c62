/* The secrets tree in an in-memory SQLite database: the schema, the SQLite
 * and crypto helpers, the commands (store_apply), the reads and the
 * lifecycle. The exactly-once window is in store_once.c, dump and restore
 * (the snapshot format) in store_dump.c; store_internal.h is what the three
 * files share.
 *
 * Schema:
 *   inodes(ino, parent, name_hash, name_ct, mode, uid, gid, size, mtime_ns,
 *          ctime_ns, atime_ns, value_ct), UNIQUE(parent, name_hash)
 *   meta(next_ino, applies, features)  one row; applies counts store_apply
 *                               calls; features is the cluster's feature
 *                               level (cmd.h)
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
 * order (range deletes and "lowest seq" run in SQL). */
#include "store/store.h"
#include "store/store_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "lib/log.h"

/* A parent chain longer than this can only come from a corrupt table. */
#define STORE_MAX_DEPTH (1u << 24)

#define NODE_COLS "ino, parent, mode, uid, gid, size, mtime_ns, ctime_ns, atime_ns"
#define NODE_NCOLS 9 /* the columns of NODE_COLS: a query's next one is at this index */
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
	[Q_NAME] = "SELECT parent, name_ct FROM inodes WHERE ino = ?1",
	[Q_CHILDREN] = "SELECT " NODE_COLS ", name_ct FROM inodes WHERE parent = ?1 AND ino > ?2 "
		       "ORDER BY ino",
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
	[Q_FEATURES_GET] = "SELECT features FROM meta",
	[Q_FEATURES_SET] = "UPDATE meta SET features = ?1",
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
	[Q_COUNT_CLIENTS] = "SELECT count(*) FROM clients",
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
	/* A directory's link count counts its subdirectories: without this
	 * index every stat of a directory reads all its entries. */
	"CREATE INDEX inodes_subdirs ON inodes(parent) WHERE (mode & " S_IFMT_STR ") = "
	S_IFDIR_STR ";"
	"CREATE TABLE meta (next_ino INTEGER NOT NULL, applies INTEGER NOT NULL,"
	" features INTEGER NOT NULL);"
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
	"INSERT INTO meta VALUES (2, 0, 1);"
	"INSERT INTO inodes (ino, parent, mode, uid, gid, size, mtime_ns, ctime_ns, atime_ns)"
	" VALUES (1, 0, 16877, 0, 0, 0, 0, 0, 0);"; /* 16877 = S_IFDIR | 0755 */

static const uint8_t empty_value[1];

/* ---- SQLite helpers ---------------------------------------------------- */

int store_db_fail(struct store *s, const char *what)
{
	/* sqlite3_errmsg names tables and columns, never bound values. */
	log_error("store: %s: %s", what, sqlite3_errmsg(s->db));
	s->fatal = true;
	return -EIO;
}

sqlite3_stmt *store_stmt(struct store *s, enum sid id)
{
	if (s->stmts[id] == NULL &&
	    sqlite3_prepare_v3(s->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[id],
			       NULL) != SQLITE_OK) {
		store_db_fail(s, "prepare");
		return NULL;
	}
	return s->stmts[id];
}

void store_stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

void store_bind_u64(sqlite3_stmt *st, int i, uint64_t v)
{
	sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

void store_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
	sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/* Binds without copying (the caller keeps P alive until store_stmt_done()); a NULL or
 * empty blob binds SQL NULL. */
static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
	if (p == NULL || n == 0)
		return sqlite3_bind_null(st, i);
	return sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)n, SQLITE_STATIC);
}

uint64_t store_col_u64(sqlite3_stmt *st, int i)
{
	return (uint64_t)sqlite3_column_int64(st, i);
}

uint32_t store_col_u32(sqlite3_stmt *st, int i)
{
	return (uint32_t)sqlite3_column_int64(st, i);
}

const uint8_t *store_col_blob(sqlite3_stmt *st, int i, size_t *ret_len)
{
	const uint8_t *p = sqlite3_column_blob(st, i);
	*ret_len = (size_t)sqlite3_column_bytes(st, i);
	return p;
}

int store_run(struct store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	store_stmt_done(st);
	if (rc != SQLITE_DONE)
		return store_db_fail(s, what);
	return 0;
}

int store_exec(struct store *s, enum sid id)
{
	sqlite3_stmt *st = store_stmt(s, id);
	if (st == NULL)
		return -EIO;
	return store_run(s, st, sql_text[id]);
}

int store_exec_i64(struct store *s, enum sid id, int64_t arg)
{
	sqlite3_stmt *st = store_stmt(s, id);
	if (st == NULL)
		return -EIO;
	store_bind_i64(st, 1, arg);
	return store_run(s, st, sql_text[id]);
}

int store_query_count(struct store *s, enum sid id, bool has_arg, uint64_t arg, uint64_t *ret)
{
	sqlite3_stmt *st = store_stmt(s, id);
	if (st == NULL)
		return -EIO;
	if (has_arg)
		store_bind_u64(st, 1, arg);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		store_stmt_done(st);
		return store_db_fail(s, "count");
	}
	*ret = store_col_u64(st, 0);
	store_stmt_done(st);
	return 0;
}

void store_rollback(struct store *s)
{
	if (store_exec(s, Q_ROLLBACK) != 0 || store_exec(s, Q_RELEASE) != 0)
		log_error("store: rollback failed; state is not trustworthy");
}

void store_buf_truncate(struct buf *b, size_t len)
{
	if (b->data != NULL && b->len > len)
		explicit_bzero(b->data + len, b->len - len);
	if (b->len > len)
		b->len = len;
}

/* ---- Crypto helpers ---------------------------------------------------- */

void store_put_le64(uint8_t out[8], uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

/* AAD = label || u64 LE: binds a ciphertext to its parent or inode. */
static size_t make_aad(uint8_t out[16], const char *label, uint64_t v)
{
	size_t n = strlen(label);
	memcpy(out, label, n);
	store_put_le64(out + n, v);
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
	assert(len <= VFS_MAX_NAME); /* names are checked first (name_valid) */
	store_put_le64(in, parent);
	memcpy(in + 8, name, len);
	int rc = barrier_hash(s->barrier, in, 8 + len, out);
	explicit_bzero(in, sizeof(in));
	if (rc != 0)
		return crypto_fail(s, rc, "hash name", parent);
	return 0;
}

size_t store_name_aad(uint8_t out[24], uint64_t parent, uint64_t ino)
{
	size_t n = make_aad(out, "name", parent);
	store_put_le64(out + n, ino);
	return n + 8;
}

static int encrypt_name(struct store *s, uint64_t parent, uint64_t ino, const uint8_t *name,
			size_t len, struct buf *out)
{
	uint8_t aad[24];
	size_t aad_len = store_name_aad(aad, parent, ino);
	int rc = barrier_encrypt(s->barrier, aad, aad_len, name, len, out);
	if (rc != 0)
		return crypto_fail(s, rc, "encrypt name", parent);
	return 0;
}

static int decrypt_name(struct store *s, uint64_t parent, uint64_t ino, const uint8_t *ct,
			size_t ct_len, struct buf *out)
{
	uint8_t aad[24];
	size_t aad_len = store_name_aad(aad, parent, ino);
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
		store_buf_truncate(out, start);
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
	n->ino = store_col_u64(st, 0);
	n->parent = store_col_u64(st, 1);
	n->mode = store_col_u32(st, 2);
	n->uid = store_col_u32(st, 3);
	n->gid = store_col_u32(st, 4);
	n->size = store_col_u64(st, 5);
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
	store_stmt_done(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return store_db_fail(s, "read inode");
}

static int get_inode(struct store *s, uint64_t ino, struct inode *ret)
{
	sqlite3_stmt *st = store_stmt(s, Q_GET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, ino);
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
	sqlite3_stmt *st = store_stmt(s, Q_CHILD);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, parent);
	if (bind_blob(st, 2, hash, BARRIER_HASH_LEN) != SQLITE_OK) {
		store_stmt_done(st);
		return store_db_fail(s, "bind");
	}
	return inode_step(s, st, ret);
}

static int has_children(struct store *s, uint64_t ino, bool *ret)
{
	uint64_t n;
	int rc = store_query_count(s, Q_HASCHILD, true, ino, &n);
	if (rc == 0)
		*ret = n > 0;
	return rc;
}

static int inode_attr(struct store *s, const struct inode *n, struct vfs_attr *ret)
{
	uint64_t subdirs = 0;
	if (inode_is_dir(n)) {
		int rc = store_query_count(s, Q_NSUBDIRS, true, n->ino, &subdirs);
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
	sqlite3_stmt *st = store_stmt(s, Q_TOUCH);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, ino);
	store_bind_i64(st, 2, now_ns);
	return store_run(s, st, "touch");
}

static int delete_inode(struct store *s, uint64_t ino)
{
	mark_changed(s, ino, true);
	sqlite3_stmt *st = store_stmt(s, Q_DELETE);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, ino);
	return store_run(s, st, "delete inode");
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
	sqlite3_stmt *st = rc == 0 ? store_stmt(s, Q_SETNAME) : NULL;
	if (rc == 0 && st == NULL)
		rc = -EIO;
	if (rc == 0) {
		store_bind_u64(st, 1, ino);
		store_bind_u64(st, 2, parent);
		store_bind_i64(st, 5, now_ns);
		if (bind_blob(st, 3, hash, sizeof(hash)) != SQLITE_OK ||
		    bind_blob(st, 4, ct.data, ct.len) != SQLITE_OK) {
			store_stmt_done(st);
			rc = store_db_fail(s, "bind");
		} else {
			rc = store_run(s, st, "rename inode");
		}
	}
	buf_free(&ct);
	return rc;
}

/* ---- Commands ---------------------------------------------------------- */

int store_insert_inode(struct store *s, const struct inode *n, const uint8_t *hash,
		       size_t hash_len, const struct buf *name_ct, const struct buf *value_ct)
{
	sqlite3_stmt *st = store_stmt(s, Q_INSERT);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, n->ino);
	store_bind_u64(st, 2, n->parent);
	sqlite3_bind_int64(st, 5, n->mode);
	sqlite3_bind_int64(st, 6, n->uid);
	sqlite3_bind_int64(st, 7, n->gid);
	store_bind_u64(st, 8, n->size);
	store_bind_i64(st, 9, n->mtime_ns);
	store_bind_i64(st, 10, n->ctime_ns);
	store_bind_i64(st, 12, n->atime_ns);
	if (bind_blob(st, 3, hash, hash_len) != SQLITE_OK ||
	    bind_blob(st, 4, name_ct->data, name_ct->len) != SQLITE_OK ||
	    bind_blob(st, 11, value_ct->data, value_ct->len) != SQLITE_OK) {
		store_stmt_done(st);
		return store_db_fail(s, "bind");
	}
	return store_run(s, st, "insert inode");
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
	rc = store_query_count(s, Q_NEXTINO_GET, false, 0, &next);
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
		rc = store_insert_inode(s, &n, hash, sizeof(hash), &name_ct, &value_ct);
	buf_free(&name_ct);
	buf_free(&value_ct);
	if (rc != 0)
		return rc;

	sqlite3_stmt *st = store_stmt(s, Q_NEXTINO_SET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, next + 1);
	rc = store_run(s, st, "advance inode counter");
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
	sqlite3_stmt *st = rc == 0 ? store_stmt(s, Q_SETVAL) : NULL;
	if (rc == 0 && st == NULL)
		rc = -EIO;
	if (rc == 0) {
		store_bind_u64(st, 1, ino);
		store_bind_u64(st, 3, (uint64_t)len);
		store_bind_i64(st, 4, mtime_ns);
		store_bind_i64(st, 5, ctime_ns);
		if (bind_blob(st, 2, ct.data, ct.len) != SQLITE_OK) {
			store_stmt_done(st);
			rc = store_db_fail(s, "bind");
		} else {
			rc = store_run(s, st, "write value");
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

/* A new regular file with its first value, as CREATE then SET_VALUE by
 * the same writer would leave it. */
static int64_t op_create_value(struct store *s, const struct cmd *c)
{
	if (c->value_len > VFS_MAX_VALUE)
		return -EFBIG;
	int64_t ino = op_create(s, c, false);
	if (ino < 0)
		return ino;
	struct cmd set = *c;
	set.type = CMD_SET_VALUE;
	set.ino = (uint64_t)ino;
	return op_set_value(s, &set);
}

int store_features_set(struct store *s, uint32_t level, bool only_up)
{
	uint64_t now;
	int rc = store_query_count(s, Q_FEATURES_GET, false, 0, &now);
	if (rc != 0 || (only_up && level <= now))
		return rc;
	sqlite3_stmt *st = store_stmt(s, Q_FEATURES_SET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, level);
	return store_run(s, st, "set features");
}

uint32_t store_features(struct store *s)
{
	uint64_t level = CMD_FEATURES_BASE;
	if (store_query_count(s, Q_FEATURES_GET, false, 0, &level) != 0 || level > UINT32_MAX)
		return CMD_FEATURES_BASE;
	return (uint32_t)level;
}

/* Reads the plaintext value of file N into OUT. */
static int read_value(struct store *s, const struct inode *n, struct buf *out)
{
	sqlite3_stmt *st = store_stmt(s, Q_GETVAL);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, n->ino);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		store_stmt_done(st);
		return rc == SQLITE_DONE ? -ENOENT : store_db_fail(s, "read value");
	}
	size_t ct_len;
	const uint8_t *ct = store_col_blob(st, 0, &ct_len);
	rc = decrypt_value(s, n->ino, ct, ct_len, out);
	store_stmt_done(st);
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
		store_buf_truncate(&v, (size_t)size);
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
	sqlite3_stmt *st = store_stmt(s, Q_SETATTR);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, n->ino);
	sqlite3_bind_int64(st, 2, n->mode);
	sqlite3_bind_int64(st, 3, n->uid);
	sqlite3_bind_int64(st, 4, n->gid);
	store_bind_i64(st, 5, mtime_ns);
	store_bind_i64(st, 6, ctime_ns);
	store_bind_i64(st, 7, n->atime_ns);
	return store_run(s, st, "setattr");
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
	sqlite3_stmt *st = store_stmt(s, Q_CLEARHASH);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, dst->ino);
	rc = store_run(s, st, "exchange");
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
	case CMD_CREATE_VALUE:
		return op_create_value(s, c);
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
	if (store_exec(s, Q_BEGIN) != 0) {
		*ret_fatal = 1;
		return -EIO;
	}
	/* The cluster's own command: no client to answer exactly once. */
	if (cmd->type == CMD_FEATURES) {
		/* Levels only rise: a late or repeated one changes nothing. */
		result = store_features_set(s, cmd->features, true);
		if (result == 0 && !s->fatal && store_exec(s, Q_RELEASE) == 0)
			return 0;
		store_rollback(s);
		*ret_fatal = 1;
		return -EIO;
	}
	int rc = store_once_client_load(s, cmd->client_id, &c);
	if (rc == 0)
		rc = store_once_check(s, &c, cmd, &fresh, &result);
	if (rc == 0 && fresh) {
		result = apply_op(s, cmd);
		/* A failed command keeps nothing but its result, so a retry
		 * gets the same answer. */
		if (!s->fatal && result < 0 && store_exec(s, Q_ROLLBACK) != 0)
			s->fatal = true;
	}
	if (rc == 0 && !s->fatal)
		rc = store_once_record(s, &c, cmd, fresh, result);
	if (rc == 0 && !s->fatal)
		rc = store_exec(s, Q_RELEASE);
	if (rc != 0 || s->fatal) {
		store_rollback(s);
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

/* INO's parent and name (appended to NAME). */
static int name_of(struct store *s, uint64_t ino, uint64_t *ret_parent, struct buf *name)
{
	sqlite3_stmt *st = store_stmt(s, Q_NAME);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, ino);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		size_t ct_len;
		const uint8_t *ct = store_col_blob(st, 1, &ct_len);
		*ret_parent = store_col_u64(st, 0);
		rc = decrypt_name(s, *ret_parent, ino, ct, ct_len, name);
	} else {
		rc = rc == SQLITE_DONE ? -ENOENT : store_db_fail(s, "read a name");
	}
	store_stmt_done(st);
	return rc;
}

int store_path(struct store *s, uint64_t ino, struct buf *out)
{
	int rc = check_unsealed(s);
	if (rc != 0)
		return rc;
	if (ino == VFS_ROOT_INO) {
		buf_put_raw(out, "/", 1);
		return out->err;
	}
	/* Built from the leaf up: each step puts "/name" in front. */
	struct buf path, next, name;
	buf_init(&path);
	buf_init(&next);
	buf_init(&name);
	for (uint32_t depth = 0; rc == 0 && ino != VFS_ROOT_INO; depth++) {
		uint64_t parent = 0;
		buf_clear(&name);
		if (depth >= STORE_MAX_DEPTH)
			rc = -ELOOP;
		else
			rc = name_of(s, ino, &parent, &name);
		if (rc != 0)
			break;
		buf_clear(&next);
		buf_put_raw(&next, "/", 1);
		buf_put_raw(&next, name.data, name.len);
		buf_put_raw(&next, path.data, path.len);
		rc = next.err;
		struct buf t = path;
		path = next;
		next = t;
		ino = parent;
	}
	if (rc == 0) {
		buf_put_raw(out, path.data, path.len);
		rc = out->err;
	}
	buf_free(&path);
	buf_free(&next);
	buf_free(&name);
	return rc;
}

/* Called for each child in a listing with its row and its decrypted name:
 * 0 goes on, 1 ends the listing there (the child is not listed), -errno
 * fails it. */
typedef int (*child_fn)(struct store *s, const struct inode *child, const struct buf *name,
			void *arg);

/* Hands the children of directory DIR whose ino is above AFTER to EMIT, in
 * ino order: so a paged listing resumes where it stopped, and a child that
 * exists throughout it is listed exactly once. 0 or -errno. */
static int each_child(struct store *s, uint64_t dir, uint64_t after, child_fn emit, void *arg)
{
	sqlite3_stmt *st = store_stmt(s, Q_CHILDREN);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, dir);
	store_bind_u64(st, 2, after);
	struct buf name;
	buf_init(&name);
	struct inode child;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		inode_read(st, &child);
		size_t ct_len;
		const uint8_t *ct = store_col_blob(st, NODE_NCOLS, &ct_len);
		buf_clear(&name);
		if ((rc = decrypt_name(s, dir, child.ino, ct, ct_len, &name)) != 0)
			break;
		if ((rc = emit(s, &child, &name, arg)) != 0)
			break;
	}
	store_stmt_done(st);
	buf_free(&name);
	if (rc == SQLITE_DONE || rc == 1)
		rc = 0;
	else if (rc > 0)
		rc = store_db_fail(s, "list a directory");
	return rc;
}

/* A listing being appended to OUT (after its own header at START). */
struct listing {
	struct buf *out;
	size_t start;
	uint32_t n;
	uint64_t last; /* the last child listed */
	bool full;     /* a page ended before the last child */
};

static void put_u32_at(struct buf *b, size_t at, uint32_t v)
{
	assert(at + 4 <= b->len);
	for (unsigned i = 0; i < 4; i++)
		b->data[at + i] = (uint8_t)(v >> (8 * i));
}

static int emit_dirent(struct store *s, const struct inode *child, const struct buf *name,
		       void *arg)
{
	struct listing *l = arg;
	(void)s;
	buf_put_u64(l->out, child->ino);
	buf_put_u32(l->out, child->mode);
	buf_put_blob(l->out, name->data, name->len);
	l->n++;
	return l->out->err;
}

static int emit_dirent_plus(struct store *s, const struct inode *child, const struct buf *name,
			    void *arg)
{
	struct listing *l = arg;
	size_t entry_len = VFS_ATTR_LEN + 4 + name->len;
	if (l->n > 0 && l->out->len - l->start + entry_len > VFS_READDIRPLUS_PAGE) {
		l->full = true;
		return 1;
	}
	struct vfs_attr a;
	int rc = inode_attr(s, child, &a);
	if (rc != 0)
		return rc;
	vfs_attr_put(l->out, &a);
	buf_put_blob(l->out, name->data, name->len);
	l->n++;
	l->last = child->ino;
	return l->out->err;
}

/* Lists directory INO into OUT: HEADER_LEN bytes of header, whose last four
 * are the count, then what EMIT puts for each child above AFTER. On
 * failure OUT is as it was. */
static int list_dir(struct store *s, uint64_t ino, uint64_t after, size_t header_len,
		    child_fn emit, struct listing *l)
{
	struct inode dir;
	int rc = check_unsealed(s);
	if (rc == 0)
		rc = get_dir(s, ino, &dir);
	if (rc != 0)
		return rc;
	assert(header_len >= 4);
	l->start = l->out->len;
	for (size_t i = 0; i < header_len; i++)
		buf_put_u8(l->out, 0); /* patched below */
	rc = l->out->err;
	if (rc == 0)
		rc = each_child(s, ino, after, emit, l);
	if (rc == 0)
		rc = l->out->err;
	if (rc != 0) {
		store_buf_truncate(l->out, l->start);
		return rc;
	}
	put_u32_at(l->out, l->start + header_len - 4, l->n);
	return 0;
}

int store_readdir(struct store *s, uint64_t ino, struct buf *out)
{
	struct listing l = { .out = out };
	return list_dir(s, ino, 0, 4, emit_dirent, &l);
}

int store_readdirplus(struct store *s, uint64_t ino, uint64_t after, struct buf *out)
{
	struct listing l = { .out = out };
	int rc = list_dir(s, ino, after, 12, emit_dirent_plus, &l);
	if (rc == 0 && l.full) {
		put_u32_at(out, l.start, (uint32_t)l.last);
		put_u32_at(out, l.start + 4, (uint32_t)(l.last >> 32));
	}
	return rc;
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
	sqlite3_stmt *st = store_stmt(s, Q_STATS);
	if (st == NULL)
		return;
	if (sqlite3_step(st) == SQLITE_ROW) {
		*ret_files = store_col_u64(st, 0);
		*ret_bytes = store_col_u64(st, 1);
	} else {
		log_error("store: stats: %s", sqlite3_errmsg(s->db));
	}
	store_stmt_done(st);
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
