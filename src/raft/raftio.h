/* Our struct raft_io: the Raft log, term, vote and snapshots in SQLite, on a
 * libuv loop.
 *
 * Storage: <dir>/raft.db in WAL mode with synchronous=FULL. Appends are done
 * in the loop turn after the one that submitted them, on a worker thread
 * (uv_queue_work) or, where raftio_set_inline says so, on the loop thread
 * itself. The appends of one loop turn, and those queued while a job runs,
 * are batched into a single transaction (group commit), and each append
 * callback fires on the loop thread only after its entries are durable.
 * Term and vote are written synchronously (they are rare and must be
 * durable before Raft answers a vote). In test builds (-Dfailpoints=true) with VAULTFS_CRASHVFS=1
 * the database goes through the crash-simulating VFS of crashvfs.h.
 * Snapshots are stored in the same database; snapshot_put
 * with trailing > 0 also deletes log entries older than
 * (snapshot index - trailing).
 *
 * Transport: handed to a struct raftio_transport so that the cluster
 * transport can be plugged in; with none, send() fails with
 * RAFT_NOCONNECTION (a one-voter cluster never sends). */
#ifndef VAULTFS_RAFT_RAFTIO_H
#define VAULTFS_RAFT_RAFTIO_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Network side, optional. send() must eventually call cb exactly once. */
struct raftio_transport {
	void *data;
	int (*start)(struct raftio_transport *t, raft_id id, const char *address,
		     void (*recv)(struct raftio_transport *t, struct raft_message *msg, void *arg),
		     void *arg);
	int (*send)(struct raftio_transport *t, struct raft_io_send *req,
		    const struct raft_message *msg, raft_io_send_cb cb);
	/* Closes the transport; CB(ARG) once every handle is closed. */
	void (*close)(struct raftio_transport *t, void (*cb)(void *arg), void *arg);
};

/* The key that authenticates every stored row (raft/rowmac.h): the vault's
 * barrier_storage_key. */
#define RAFTIO_KEY_LEN 32u

/* Initializes IO (version 2) to keep its state in DIR/raft.db and run on
 * LOOP, authenticating what it stores and loads with KEY (copied; a row
 * that does not verify fails load() with RAFT_CORRUPT and a message naming
 * it). TRANSPORT may be NULL. Opens (creating if needed) the database
 * right away so that configuration errors surface here: returns 0 or a RAFT_*
 * error code with a message in errmsg. The struct raft_io is owned by the
 * caller; its close() method releases everything. */
int raftio_init(struct raft_io *io, uv_loop_t *loop, const char *dir,
		const uint8_t key[RAFTIO_KEY_LEN], struct raftio_transport *transport,
		char *errmsg, size_t errlen);

/* Checks DIR/raft.db without serving from it and without the key (before
 * unseal): SQLite's structural check, then term, vote, the latest snapshot
 * and every log entry as load() reads them, CRCs included, MACs not. A missing file is fine. Returns 0 or a RAFT_*
 * code (RAFT_CORRUPT for damage) with a message in errmsg that names the
 * file and, for a bad entry, its index. */
int raftio_check(const char *dir, char *errmsg, size_t errlen);

/* Storage failures. A write that fails (an append, a snapshot, the term or
 * vote) leaves the database no longer what libraft believes, so from then
 * on every request on IO fails: with RAFT_NOSPACE if the filesystem is
 * full or a quota is exceeded (ENOSPC, EDQUOT), else RAFT_IOERR. CB(ARG,
 * code, sys_errno, message) is called once, on the loop thread, at the
 * first failure; it must not close IO itself (schedule that). The way on is
 * a new raft_io on the same directory, after raftio_drop_after. */
void raftio_set_on_failure(struct raft_io *io,
			   void (*cb)(void *arg, int code, int sys_errno, const char *msg), void *arg);

/* After each transaction that stored log entries, CB(ARG, NS) on the loop
 * thread, with how long it took (its fsync, mostly): how a leader learns
 * that its disk is what its commits wait for. */
void raftio_set_on_append_sync(struct raft_io *io, void (*cb)(void *arg, uint64_t ns), void *arg);

/* A follower whose storage failed may go on following without it: called
 * from the failure callback (where it takes effect for the write that
 * failed) or later, on the loop thread but not from inside libraft, it
 * makes IO mute. From then on nothing is written and nothing said: the
 * appends held since the failure, and every later append, truncation and
 * snapshot, complete as if stored
 * (in memory only), term and vote are kept in libraft's memory, no message
 * leaves (send fails with RAFT_NOCONNECTION), ticks stop (no election
 * timeout, so no campaign), and of what arrives only AppendEntries and
 * InstallSnapshot reach libraft (no vote, no TimeoutNow). So libraft goes
 * on applying what its leaders commit while the cluster cannot tell it
 * from a node whose answers are lost: it acknowledges nothing and votes
 * for no one. The durable index stays where the failure left it, and the
 * way back is a new raft_io, as after any failure. */
void raftio_mute(struct raft_io *io);
bool raftio_is_mute(struct raft_io *io);

/* The last log index whose write committed (loaded, bootstrapped or
 * appended): entries after it were never acknowledged, and after a failed
 * fsync, whether they are on disk is not known. */
raft_index raftio_durable_index(struct raft_io *io);

/* On a newly opened IO, before load: deletes the entries after INDEX (the
 * old IO's raftio_durable_index) and checkpoints the WAL into the main
 * file with a sync, so that nothing written after the last good sync is
 * trusted, and what stays is rewritten through a working sync (the lesson
 * of PostgreSQL's fsyncgate: after a failed fsync the page cache may hold
 * pages the disk never got). Returns 0 or a RAFT_* code with errmsg. */
int raftio_drop_after(struct raft_io *io, raft_index index, char *errmsg, size_t errlen);

/* Whether storage in DIR works again after a failure: writes and syncs a
 * small scratch database there, through the VFS raft.db uses, and deletes
 * it. 0, RAFT_NOSPACE or RAFT_IOERR. On the loop thread: it waits for the
 * disk, so it is for a node whose storage already failed. */
int raftio_probe(const char *dir);

/* True if DIR/raft.db holds any Raft state (a bootstrapped or joined node). */
int raftio_has_state(const char *dir);

/* How long ago (ms) the last Raft message from server ID arrived; false if
 * none has since IO started (of more than 64 servers, those heard from
 * longest ago are forgotten). */
bool raftio_last_heard(struct raft_io *io, raft_id id, uint64_t *ret_ms_ago);
/* Runs libraft's tick on the next loop iteration instead of at the end of
 * the current tick period (the period is unchanged). A no-op before start
 * or after close. */
void raftio_tick_now(struct raft_io *io);

/* Moves IO's clock (what libraft reads through io->time) MS milliseconds
 * ahead and runs libraft's tick on the next loop iteration. Every timeout
 * libraft keeps is relative to that clock, so this is what a pause of MS
 * would look like to it: a follower told that its leader's process is gone
 * uses it to start an election without waiting out the election timeout.
 * Safe at any time (an early election is a liveness matter, never a safety
 * one); a no-op before start or after close. */
void raftio_skip_ahead(struct raft_io *io, unsigned ms);

/* Where IO runs its transactions: on the loop thread itself while
 * INLINE_OK(ARG) returns true when a job starts; on the thread pool
 * otherwise (NULL: always).
 * Inline, the loop waits for the fsync, but a follower's append is then
 * answered without two thread hand-offs (the worker's wake-up and the
 * loop's), which on a small machine is a good part of a commit's latency;
 * a leader, whose loop must keep sending and serving meanwhile, should
 * keep the pool. Requests of one loop turn still share one transaction. */
void raftio_set_inline(struct raft_io *io, bool (*inline_ok)(void *arg), void *arg);

#endif
