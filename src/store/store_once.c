/* The exactly-once window (rules in store.h; its rows are the clients and
 * results tables, at the top of store.c). store_apply asks it whether a
 * command is new (store_once_check) and, once the command ran, tells it
 * what came of it (store_once_record): floors rise, results are kept,
 * evicted past STORE_MAX_RESULTS, and idle clients expire. */
#include "store/store_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "lib/log.h"

#define SEQ_BIAS (UINT64_C(1) << 63)

/* results.seq as stored: signed order of the key = unsigned order of seq. */
static void bind_seq(sqlite3_stmt *st, int i, uint64_t seq)
{
	store_bind_u64(st, i, seq ^ SEQ_BIAS);
}

uint64_t store_once_col_seq(sqlite3_stmt *st, int i)
{
	return store_col_u64(st, i) ^ SEQ_BIAS;
}

int store_once_client_load(struct store *s, uint64_t id, struct client *ret)
{
	sqlite3_stmt *st = store_stmt(s, Q_CLIENT_GET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, id);
	*ret = (struct client){ .id = id, .last_now_ns = INT64_MIN };
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		ret->floor = store_col_u64(st, 0);
		ret->last_now_ns = sqlite3_column_int64(st, 1);
		ret->nresults = store_col_u64(st, 2);
	}
	store_stmt_done(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_fail(s, "read client");
	return 0;
}

int store_once_client_save(struct store *s, enum sid id, const struct client *c)
{
	assert(id == Q_CLIENT_PUT || id == Q_CLIENT_INSERT);
	sqlite3_stmt *st = store_stmt(s, id);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, c->id);
	store_bind_u64(st, 2, c->floor);
	store_bind_i64(st, 3, c->last_now_ns);
	store_bind_u64(st, 4, c->nresults);
	return store_run(s, st, "write client");
}

static int result_get(struct store *s, uint64_t client, uint64_t seq, bool *ret_found,
		      int64_t *ret_result)
{
	sqlite3_stmt *st = store_stmt(s, Q_RESULT_GET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, client);
	bind_seq(st, 2, seq);
	int rc = sqlite3_step(st);
	*ret_found = rc == SQLITE_ROW;
	if (rc == SQLITE_ROW)
		*ret_result = sqlite3_column_int64(st, 0);
	store_stmt_done(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_db_fail(s, "read result");
	return 0;
}

int store_once_result_put(struct store *s, uint64_t client, uint64_t seq, int64_t result)
{
	sqlite3_stmt *st = store_stmt(s, Q_RESULT_INSERT);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, client);
	bind_seq(st, 2, seq);
	store_bind_i64(st, 3, result);
	return store_run(s, st, "write result");
}

/* Raises C's floor to FLOOR (never lowers it) and forgets the results
 * below it: the client promised never to ask for them again. */
static int raise_floor(struct store *s, struct client *c, uint64_t floor)
{
	if (floor <= c->floor)
		return 0;
	sqlite3_stmt *st = store_stmt(s, Q_RESULT_TRIM);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, c->id);
	bind_seq(st, 2, floor);
	int rc = store_run(s, st, "trim results");
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
		sqlite3_stmt *st = store_stmt(s, Q_RESULT_LOWEST);
		if (st == NULL)
			return -EIO;
		store_bind_u64(st, 1, c->id);
		int rc = sqlite3_step(st);
		uint64_t lowest = rc == SQLITE_ROW ? store_once_col_seq(st, 0) : 0;
		store_stmt_done(st);
		if (rc != SQLITE_ROW)
			return store_db_fail(s, "find lowest result");
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

/* Counts this call and, every STORE_EXPIRY_EVERY calls, forgets clients
 * idle for more than STORE_CLIENT_EXPIRY_NS of command time before NOW_NS.
 * Only replicated inputs decide, so every replica sweeps alike. */
static int tick_and_expire(struct store *s, int64_t now_ns)
{
	uint64_t applies;
	int rc = store_query_count(s, Q_APPLIES_GET, false, 0, &applies);
	if (rc != 0)
		return rc;
	applies++;
	sqlite3_stmt *st = store_stmt(s, Q_APPLIES_SET);
	if (st == NULL)
		return -EIO;
	store_bind_u64(st, 1, applies);
	rc = store_run(s, st, "count applies");
	if (rc != 0 || applies % STORE_EXPIRY_EVERY != 0)
		return rc;
	if (now_ns < INT64_MIN + STORE_CLIENT_EXPIRY_NS)
		return 0; /* nothing can be that old */
	int64_t cutoff = now_ns - STORE_CLIENT_EXPIRY_NS;
	/* Results first: their query finds the clients to forget. */
	rc = store_exec_i64(s, Q_EXPIRE_RESULTS, cutoff);
	if (rc == 0)
		rc = store_exec_i64(s, Q_EXPIRE_CLIENTS, cutoff);
	return rc;
}

int store_once_check(struct store *s, const struct client *c, const struct cmd *cmd,
		     bool *ret_new, int64_t *ret_result)
{
	assert(c->id == cmd->client_id);
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

int store_once_record(struct store *s, struct client *c, const struct cmd *cmd, bool applied,
		      int64_t result)
{
	assert(c->id == cmd->client_id);
	int rc = raise_floor(s, c, cmd->ack_below);
	if (rc == 0 && applied) {
		rc = store_once_result_put(s, c->id, cmd->seq, result);
		if (rc == 0) {
			c->nresults++;
			rc = evict_excess(s, c);
		}
	}
	if (cmd->now_ns > c->last_now_ns)
		c->last_now_ns = cmd->now_ns;
	if (rc == 0)
		rc = store_once_client_save(s, Q_CLIENT_PUT, c);
	/* After the save, so that the current client is never swept. */
	if (rc == 0)
		rc = tick_and_expire(s, cmd->now_ns);
	return rc;
}

