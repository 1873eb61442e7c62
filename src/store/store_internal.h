/* Shared between store.c (the tree, commands, reads, lifecycle and the
 * SQLite and crypto helpers), store_once.c (the exactly-once window) and
 * store_dump.c (dump and restore) only; not an interface. store.h is the
 * module's interface. The schema is at the top of store.c. */
#ifndef VAULTFS_STORE_STORE_INTERNAL_H
#define VAULTFS_STORE_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "lib/buf.h"
#include "store/cmd.h"
#include "store/store.h"

/* The prepared statements; their SQL is in store.c, next to the schema. */
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
	Q_NAME,
	Q_CHILDREN,
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
	Q_FEATURES_GET,
	Q_FEATURES_SET,
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
	Q_COUNT_CLIENTS,
	Q_COUNT_
};

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

/* One client's row in the exactly-once window; a client not in the table
 * reads as floor 0, no results, and a last_now_ns older than any command. */
struct client {
	uint64_t id;
	uint64_t floor;
	int64_t last_now_ns;
	uint64_t nresults;
};

/* store.c: SQLite helpers. Every SQLite failure goes to store_db_fail. */
/* Logs WHAT with SQLite's message (which names no bound value) and sets
 * s->fatal; returns -EIO. */
int store_db_fail(struct store *s, const char *what);
/* Statement ID, prepared on first use; NULL on failure. */
sqlite3_stmt *store_stmt(struct store *s, enum sid id);
/* Resets a statement after use; clears bindings so that no pointer to a
 * caller's (about to be wiped) buffer outlives the call. */
void store_stmt_done(sqlite3_stmt *st);
void store_bind_u64(sqlite3_stmt *st, int i, uint64_t v);
void store_bind_i64(sqlite3_stmt *st, int i, int64_t v);
uint64_t store_col_u64(sqlite3_stmt *st, int i);
uint32_t store_col_u32(sqlite3_stmt *st, int i);
const uint8_t *store_col_blob(sqlite3_stmt *st, int i, size_t *ret_len);
/* Runs a statement that returns no rows (bindings already made). */
int store_run(struct store *s, sqlite3_stmt *st, const char *what);
/* Runs statement ID, which takes no argument, or one i64 argument. */
int store_exec(struct store *s, enum sid id);
int store_exec_i64(struct store *s, enum sid id, int64_t arg);
/* Runs a one-row, one-integer query with an optional u64 argument. */
int store_query_count(struct store *s, enum sid id, bool has_arg, uint64_t arg, uint64_t *ret);

/* Sets the feature level to LEVEL (ONLY_UP: unless it is as high
 * already). 0 or -errno. */
int store_features_set(struct store *s, uint32_t level, bool only_up);
/* Rolls back the open savepoint (Q_BEGIN) and closes it. */
void store_rollback(struct store *s);
/* Shortens B to LEN bytes, wiping what is cut off. */
void store_buf_truncate(struct buf *b, size_t len);

/* store.c: crypto and tree helpers. */
void store_put_le64(uint8_t out[8], uint64_t v);
/* AAD = "name" || parent || ino: a name ciphertext opens only in its own
 * row, so names cannot be swapped between entries, even in one directory. */
size_t store_name_aad(uint8_t out[24], uint64_t parent, uint64_t ino);
/* Inserts the row of N with these (borrowed) hash and ciphertexts. */
int store_insert_inode(struct store *s, const struct inode *n, const uint8_t *hash,
		       size_t hash_len, const struct buf *name_ct, const struct buf *value_ct);

/* store_once.c: the exactly-once window (rules in store.h). */
/* results.seq as stored (XOR 2^63), read back as the seq. */
uint64_t store_once_col_seq(sqlite3_stmt *st, int i);
/* Client ID's row, or an empty one if it has none. */
int store_once_client_load(struct store *s, uint64_t id, struct client *ret);
/* Writes C with statement ID: Q_CLIENT_PUT, or Q_CLIENT_INSERT, which
 * fails on a client already there. */
int store_once_client_save(struct store *s, enum sid id, const struct client *c);
int store_once_result_put(struct store *s, uint64_t client, uint64_t seq, int64_t result);
/* Decides whether CMD, from client C, is new (*RET_NEW) or, if not, what
 * it is answered (*RET_RESULT). Only reads: the bookkeeping is written
 * after the command so that rolling back a failed command cannot undo it. */
int store_once_check(struct store *s, const struct client *c, const struct cmd *cmd,
		     bool *ret_new, int64_t *ret_result);
/* Writes what store_apply learnt from CMD: the raised floor, the result of
 * a command just applied (RESULT, if APPLIED), the client's clock; then
 * counts the call and, when due, forgets idle clients. */
int store_once_record(struct store *s, struct client *c, const struct cmd *cmd, bool applied,
		      int64_t result);

#endif
