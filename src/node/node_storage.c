/* The health of this node's Raft storage, and getting it back without a
 * restart when a write fails (a full disk, an I/O error).
 *
 * A failed write leaves raft.db no longer what libraft believes (raftio.h),
 * so the session cannot go on. What this node does instead of waiting for
 * an operator:
 *  1. It stops writing: new writes through it are refused with ENOSPC for
 *     a full disk, else EIO (nothing is written).
 *  2. A leader hands leadership to an up-to-date voter, so that the
 *     majority goes on committing after one election at most.
 *  3. As a follower it goes on without its disk (raftio_mute): it applies
 *     what the leader commits, in memory only, while acknowledging nothing
 *     and voting for no one, so the cluster counts it as down. That keeps
 *     the reads it can prove linearizable: a read round asks the leader
 *     for its read index (saying that this node holds no cache grants, so
 *     that no write waits for it) and is served once this node applied
 *     that far; no lease, no grant to the kernel's caches.
 *     A node that cannot get there (the only voter, a hand-over that does
 *     not happen in time, libraft stopped, unsealing) stops serving
 *     instead: requests in flight fail with the errno above, and the
 *     session is closed without sealing (node_close_raft_keep_keys): the
 *     keys stay, so no unseal is needed to come back.
 *  4. It retries: a full disk once at least NODE_STORAGE_MIN_FREE is free
 *     again (checked each second), an I/O error with backoff; a muted
 *     session is closed then, to reopen the storage. The new
 *     session first drops every log entry after the last write that
 *     committed and rewrites the rest through a working fsync
 *     (raftio_drop_after): after a failed fsync the page cache may hold
 *     what the disk never got, and entries never acknowledged are safe to
 *     lose. It then loads the log and catches up from the leader as any
 *     restarted follower does.
 * One log line starts an episode (what failed, where, how much space is
 * free, what to do); while it lasts, at most one line a minute follows.
 *
 * A slow disk is not a failed one, but libraft commits only what the
 * leader has stored itself, so a leader whose log writes take long makes
 * every write in the cluster wait for its disk. After STORAGE_SLOW_WRITES
 * such writes in a row it hands leadership to an up-to-date voter. A
 * cluster whose disks are all slow would pass leadership round in circles,
 * each leader handing over within seconds: so a node hands over at most
 * once per STORAGE_SLOW_EVERY_MS, unless others led for
 * STORAGE_SLOW_STABLE_MS or more since its last hand-over (then the node
 * it handed to was not slow, and a new slow episode deserves a new
 * hand-over). */
#include "node/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "raft/raftio.h"

#define STORAGE_FULL_POLL_MS 1000u
#define STORAGE_MUTE_POLL_MS 250u
/* Election timeouts a leader has to hand over before it closes instead. */
#define STORAGE_HANDOVER_TIMEOUTS 3u
#define STORAGE_BACKOFF_MIN_MS 500u
#define STORAGE_BACKOFF_MAX_MS 8000u
#define STORAGE_LOG_EVERY_MS 60000u
/* How long a reopened session must run without a failure before the
 * storage counts as healthy again. */
#define STORAGE_HEALTHY_AFTER_MS 5000u
#define STORAGE_SLOW_MS 200u
#define STORAGE_SLOW_WRITES 2u
#define STORAGE_SLOW_EVERY_MS 30000u
#define STORAGE_SLOW_STABLE_MS 10000u

enum storage_state { STORAGE_OK, STORAGE_FULL, STORAGE_FAILED };

struct node_storage {
	enum storage_state state;
	int sys_errno;          /* behind the failure; 0 if unknown */
	bool down;              /* writes refused; the session is muted or closed */
	bool reopen_now;        /* the muted session was closed to reopen */
	uint64_t failed_at;     /* uv_now of the last failure */
	uint64_t handover_until; /* uv_now: a leader must have handed over by then */
	bool drop_tail;         /* the next session drops entries after durable */
	uint64_t durable;       /* raftio_durable_index of the failed session */
	unsigned backoff_ms;
	uint64_t last_log;      /* uv_now of the last "still" line */
	uint64_t reopened_at;   /* uv_now of the last reopen; 0: none */
	unsigned slow_writes;   /* log writes in a row of STORAGE_SLOW_MS or more */
	bool last_slow;         /* the last log write took STORAGE_SLOW_MS or more */
	uint64_t slow_handover_at; /* uv_now of the last hand-over for it; 0: none */
	uint64_t lead_term;     /* the last term this node appended in as leader */
	uint64_t lead_since;    /* uv_now of its first append in lead_term */
	uv_timer_t timer;
};

int node_storage_init(struct node *n)
{
	n->storage = calloc(1, sizeof(*n->storage));
	return n->storage != NULL ? 0 : -ENOMEM;
}

void node_storage_open(struct node *n)
{
	uv_timer_init(n->loop, &n->storage->timer);
	n->storage->timer.data = n;
}

int node_storage_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->storage->timer, node_handle_closed);
	return 1;
}

void node_storage_free(struct node *n)
{
	free(n->storage);
	n->storage = NULL;
}

const char *node_storage_status(const struct node *n)
{
	switch (n->storage->state) {
	case STORAGE_OK:
		return "ok";
	case STORAGE_FULL:
		return "full";
	case STORAGE_FAILED:
		return "failed";
	}
	return "failed";
}

/* When to try to reopen: a full disk is polled, an I/O error backed off. */
static unsigned storage_retry_ms(const struct node_storage *st)
{
	return st->state == STORAGE_FULL ? STORAGE_FULL_POLL_MS : st->backoff_ms;
}

/* What requests get while the storage is down. */
static int storage_errno(const struct node_storage *st)
{
	return st->state == STORAGE_FULL ? -ENOSPC : -EIO;
}

int node_storage_errno(const struct node *n)
{
	const struct node_storage *st = n->storage;
	return st->down ? storage_errno(st) : 0;
}

bool node_storage_mute(const struct node *n)
{
	return n->session != NULL && raftio_is_mute(&n->session->io);
}

/* Whether the session may go on without storage in state STATE: as a
 * follower (raftio_mute), or as a leader handing over first. */
static bool storage_may_go_on(const struct node *n, int state)
{
	return n->session != NULL && n->phase == NODE_ACTIVE && !n->stopping &&
	       n->seal_waiter == NULL && raft_state(&n->session->raft) == state;
}

/* Free bytes for an unprivileged writer on the filesystem of DIR, and
 * whether it is mounted read-only. -errno if statvfs fails. */
static int storage_free_bytes(const char *dir, uint64_t *ret_free, bool *ret_rdonly)
{
	struct statvfs sv;
	if (statvfs(dir, &sv) != 0)
		return -errno;
	*ret_free = (uint64_t)sv.f_bavail * sv.f_frsize;
	*ret_rdonly = (sv.f_flag & ST_RDONLY) != 0;
	return 0;
}

int node_storage_check_start(const char *dir, char *errmsg, size_t errlen)
{
	uint64_t free_bytes = 0;
	bool rdonly = false;
	if (storage_free_bytes(dir, &free_bytes, &rdonly) != 0)
		return 0; /* what fails next says why */
	if (rdonly) {
		snprintf(errmsg, errlen,
			 "%s is on a read-only filesystem; vaultfsd writes its Raft log there: "
			 "remount it read-write, or point storage.path elsewhere",
			 dir);
		return -EROFS;
	}
	if (free_bytes < NODE_STORAGE_MIN_FREE) {
		snprintf(errmsg, errlen,
			 "the filesystem holding %s is full: %" PRIu64 " KiB free, vaultfsd needs "
			 "at least %u MiB there to start: delete %s/%s if it is there (kept for "
			 "this), free space or grow the filesystem (README, \"Disk full\")",
			 dir, free_bytes / 1024, NODE_STORAGE_MIN_FREE >> 20, dir,
			 NODE_STORAGE_RESERVE_NAME);
		return -ENOSPC;
	}
	return 0;
}

void node_storage_make_reserve(const struct node *n)
{
	char path[4096];
	struct stat sb;
	uint64_t free_bytes = 0;
	bool rdonly = false;
	snprintf(path, sizeof path, "%s/%s", n->data_dir, NODE_STORAGE_RESERVE_NAME);
	if (stat(path, &sb) == 0 || storage_free_bytes(n->data_dir, &free_bytes, &rdonly) != 0 ||
	    rdonly)
		return;
	if (free_bytes < (uint64_t)NODE_STORAGE_RESERVE + NODE_STORAGE_MIN_FREE) {
		log_warn("node %s: no room for %s (%u MiB): a full disk will need room made "
			 "elsewhere",
			 n->node_id, path, NODE_STORAGE_RESERVE >> 20);
		return;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int rv = posix_fallocate(fd, 0, NODE_STORAGE_RESERVE);
	close(fd);
	if (rv != 0)
		unlink(path);
}

static void storage_log_episode(struct node *n, const char *msg)
{
	struct node_storage *st = n->storage;
	uint64_t free_bytes = 0;
	bool rdonly = false;
	storage_free_bytes(n->data_dir, &free_bytes, &rdonly);
	if (st->state == STORAGE_FULL)
		log_error("node %s: storage full: %s. %" PRIu64 " KiB free on the filesystem of %s. "
			  "This node refuses writes, hands any leadership over and serves only the "
			  "reads it can prove; it resumes by itself once %u MiB are free: delete "
			  "%s/%s (kept for this), then make "
			  "lasting room: delete files there or grow the filesystem (README, \"Disk "
			  "full\")",
			  n->node_id, msg, free_bytes / 1024, n->data_dir,
			  NODE_STORAGE_MIN_FREE >> 20, n->data_dir, NODE_STORAGE_RESERVE_NAME);
	else
		log_error("node %s: storage failed: %s. This node refuses writes, hands any "
			  "leadership over and serves only the reads it can prove; once a test "
			  "write works (retried with backoff) it reopens %s, drops what it wrote "
			  "since its last good sync and catches up from the leader. If this "
			  "repeats, check the disk (dmesg)",
			  n->node_id, msg, n->data_dir);
}

static void on_storage_timer(uv_timer_t *t);

static void storage_arm(struct node *n, unsigned ms)
{
	uv_timer_start(&n->storage->timer, on_storage_timer, ms, 0);
}

/* raftio's failure callback (loop thread, from inside raftio: the session
 * is closed later, from the timer). */
static void on_storage_failure(void *arg, int code, int sys_errno, const char *msg)
{
	struct node *n = arg;
	struct node_storage *st = n->storage;
	bool new_episode = st->state == STORAGE_OK;
	st->state = code == RAFT_NOSPACE ? STORAGE_FULL : STORAGE_FAILED;
	st->sys_errno = sys_errno;
	st->reopened_at = 0;
	st->failed_at = uv_now(n->loop);
	if (n->session != NULL) {
		st->durable = raftio_durable_index(&n->session->io);
		st->drop_tail = true;
	}
	if (storage_may_go_on(n, RAFT_FOLLOWER)) {
		raftio_mute(&n->session->io);
		st->down = true;
	}
	if (new_episode) {
		st->backoff_ms = STORAGE_BACKOFF_MIN_MS;
		st->last_log = uv_now(n->loop);
		storage_log_episode(n, msg);
	}
	storage_arm(n, 0);
}

/* Whether a slow leader may hand over now (see the top of the file). */
static bool storage_may_hand_over(const struct node_storage *st, uint64_t now)
{
	/* Tests set both: a window that outlasts them, a shorter stable time. */
	long every = failpoint_value("slow_every_ms"), stable = failpoint_value("slow_stable_ms");
	uint64_t every_ms = every > 0 ? (uint64_t)every : STORAGE_SLOW_EVERY_MS;
	uint64_t stable_ms = stable > 0 ? (uint64_t)stable : STORAGE_SLOW_STABLE_MS;
	if (st->slow_handover_at == 0 || now - st->slow_handover_at >= every_ms)
		return true;
	return st->lead_since >= st->slow_handover_at + stable_ms;
}

static void on_append_sync(void *arg, uint64_t ns)
{
	struct node *n = arg;
	struct node_storage *st = n->storage;
	unsigned ms = (unsigned)(ns / 1000000u);
	node_metrics_log_write(n, ns);
	st->last_slow = ms >= STORAGE_SLOW_MS;
	st->slow_writes = st->last_slow ? st->slow_writes + 1 : 0;
	if (!node_query_is_leader(n))
		return;
	uint64_t now = uv_now(n->loop);
	if (n->session->raft.current_term != st->lead_term) {
		st->lead_term = n->session->raft.current_term;
		st->lead_since = now;
	}
	if (st->slow_writes < STORAGE_SLOW_WRITES || !storage_may_hand_over(st, now))
		return;
	st->slow_handover_at = now;
	st->slow_writes = 0;
	log_warn("node %s: storage slow: %u log writes in a row took %u ms or more (the last "
		 "%u ms), and every commit waits for them; handing leadership to another voter. "
		 "Check the disk of %s",
		 n->node_id, STORAGE_SLOW_WRITES, STORAGE_SLOW_MS, ms, n->data_dir);
	node_transfer_leadership(n);
}

bool node_storage_slow(const struct node *n)
{
	return n->storage->last_slow;
}

int node_storage_attach(struct node *n, struct raft_io *io, char *errmsg, size_t errlen)
{
	struct node_storage *st = n->storage;
	raftio_set_on_failure(io, on_storage_failure, n);
	raftio_set_on_append_sync(io, on_append_sync, n);
	st->slow_writes = 0;
	if (!st->drop_tail)
		return 0;
	int rv = raftio_drop_after(io, st->durable, errmsg, errlen);
	if (rv == 0) {
		log_info("node %s: storage: dropped the log after index %" PRIu64
			 " (not known to be on disk) and synced the rest",
			 n->node_id, st->durable);
		st->drop_tail = false;
	}
	return rv;
}

void node_storage_session_closed(struct node *n)
{
	struct node_storage *st = n->storage;
	st->down = true;
	storage_arm(n, st->reopen_now ? 0 : storage_retry_ms(st));
	st->reopen_now = false;
}

/* Whether a full disk has room again; logs at most once a minute if not. */
static bool storage_room_again(struct node *n)
{
	struct node_storage *st = n->storage;
	uint64_t free_bytes = 0;
	bool rdonly = false;
	if (storage_free_bytes(n->data_dir, &free_bytes, &rdonly) != 0)
		return true; /* let the reopen say what is wrong */
	if (free_bytes >= NODE_STORAGE_MIN_FREE)
		return true;
	if (uv_now(n->loop) - st->last_log >= STORAGE_LOG_EVERY_MS) {
		st->last_log = uv_now(n->loop);
		log_warn("node %s: storage still full: %" PRIu64 " KiB free on the filesystem of "
			 "%s, %u MiB needed to resume",
			 n->node_id, free_bytes / 1024, n->data_dir, NODE_STORAGE_MIN_FREE >> 20);
	}
	return false;
}

/* Whether a failed disk takes a write and a sync again, tried once per
 * backoff (raftio_probe): a muted session keeps serving reads until then.
 * Logs at most once a minute if not. */
static bool storage_works_again(struct node *n)
{
	struct node_storage *st = n->storage;
	uint64_t now = uv_now(n->loop);
	if (now - st->failed_at < st->backoff_ms)
		return false;
	if (raftio_probe(n->data_dir) == 0)
		return true;
	st->failed_at = now;
	if (st->backoff_ms < STORAGE_BACKOFF_MAX_MS)
		st->backoff_ms *= 2;
	if (now - st->last_log >= STORAGE_LOG_EVERY_MS) {
		st->last_log = now;
		log_warn("node %s: storage still failing: a test write in %s fails; retrying in "
			 "%u ms. Check the disk (dmesg)",
			 n->node_id, n->data_dir, st->backoff_ms);
	}
	return false;
}

static void storage_reopen(struct node *n)
{
	struct node_storage *st = n->storage;
	if (st->state == STORAGE_FULL && !storage_room_again(n)) {
		storage_arm(n, STORAGE_FULL_POLL_MS);
		return;
	}
	if (node_restart_raft(n) == 0) {
		log_info("node %s: storage: reopened %s/raft.db; catching up as a follower",
			 n->node_id, n->data_dir);
		return;
	}
	if (st->backoff_ms < STORAGE_BACKOFF_MAX_MS)
		st->backoff_ms *= 2;
	storage_arm(n, storage_retry_ms(st));
}

/* A muted session: closed to reopen the storage once that may work (room
 * again, or the backoff over), or at once if it can no longer follow. */
static void storage_mute_tick(struct node *n)
{
	struct node_storage *st = n->storage;
	bool follows = n->phase == NODE_ACTIVE &&
		       raft_state(&n->session->raft) == RAFT_FOLLOWER;
	bool may_reopen = st->state == STORAGE_FULL ? storage_room_again(n) : storage_works_again(n);
	if (follows && !may_reopen) {
		storage_arm(n, STORAGE_MUTE_POLL_MS);
		return;
	}
	if (n->phase == NODE_CLOSING)
		return; /* a seal or a stop closes it */
	st->reopen_now = may_reopen;
	node_close_raft_keep_keys(n, storage_errno(st));
}

/* A leader whose storage failed hands over, then follows muted; or, if
 * it cannot (the only voter), stops serving. */
static void storage_hand_over_or_stop(struct node *n)
{
	struct node_storage *st = n->storage;
	if (storage_may_go_on(n, RAFT_LEADER) && node_query_voter_count(&n->session->raft) >= 2) {
		st->down = true;
		st->handover_until = uv_now(n->loop) + STORAGE_HANDOVER_TIMEOUTS *
							    n->cfg.election_timeout_ms;
		int rv = node_transfer_leadership(n);
		if (rv == 0 || rv == -EBUSY) {
			storage_arm(n, STORAGE_MUTE_POLL_MS);
			return;
		}
	}
	node_close_raft_keep_keys(n, storage_errno(st));
}

/* A leader handing over: once a follower, it goes on muted; if that does
 * not happen in time, it stops serving (and hands over as it closes). */
static void storage_handover_tick(struct node *n)
{
	struct node_storage *st = n->storage;
	if (storage_may_go_on(n, RAFT_FOLLOWER)) {
		raftio_mute(&n->session->io);
		log_info("node %s: storage: handed leadership over; following without storage, "
			 "serving reads only",
			 n->node_id);
		storage_arm(n, STORAGE_MUTE_POLL_MS);
		return;
	}
	if (n->phase == NODE_CLOSING)
		return; /* a seal or a stop closes it */
	if (storage_may_go_on(n, RAFT_LEADER) && uv_now(n->loop) < st->handover_until) {
		storage_arm(n, STORAGE_MUTE_POLL_MS);
		return;
	}
	node_close_raft_keep_keys(n, storage_errno(st));
}

void node_storage_session_started(struct node *n)
{
	struct node_storage *st = n->storage;
	st->down = false;
	if (st->state != STORAGE_OK) {
		st->reopened_at = uv_now(n->loop);
		storage_arm(n, STORAGE_HEALTHY_AFTER_MS);
	}
}

static void on_storage_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_storage *st = n->storage;
	if (st->state == STORAGE_OK)
		return;
	if (!barrier_is_unsealed(n->barrier) || n->stopping)
		return; /* sealed or stopping: the next unseal opens a new session */
	if (st->down) {
		if (n->session == NULL)
			storage_reopen(n);
		else if (node_storage_mute(n))
			storage_mute_tick(n);
		else
			storage_handover_tick(n);
		return;
	}
	if (st->reopened_at != 0) {
		/* A reopened session ran this long without failing. */
		st->state = STORAGE_OK;
		st->reopened_at = 0;
		log_info("node %s: storage: writes work again", n->node_id);
		node_storage_make_reserve(n);
		return;
	}
	if (n->session != NULL && (n->phase == NODE_STARTING || n->phase == NODE_ACTIVE))
		storage_hand_over_or_stop(n);
}
