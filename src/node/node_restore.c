/* Restores (.vault/restore, written with a backup: node_snapshot.c).
 *
 * Every restore is refused, with nothing changed and a log line that says
 * why, if the file is not one whole backup whose body matches its SHA-256.
 * Then:
 *  (a) An uninitialised node takes the backup's header as its seal file
 *      (sealed keyring, share counts) and keeps the file as
 *      DATA/restore.pending. Unsealed with the shares valid when the
 *      backup was taken, it checks the backup's HMAC under the keyring it
 *      opened, bootstraps a one-node cluster and, once it leads, restores
 *      the body through its log before it serves anything. Others join it.
 *  (b) An unsealed member of a running vault restores only a backup of
 *      this vault (cluster id, and HMAC under this vault's backup key):
 *      the body goes through the Raft log as restore steps (raft/fsm.h),
 *      proposed here by the leader or sent to it step by step, so that
 *      every member replaces its state at the same index. A backup of
 *      another vault cannot be restored into a running one: its data
 *      opens only with that vault's keys, which this one does not hold
 *      ("force" does not change that; restore it into a fresh node).
 *
 * One restore at a time per node. A restore cut short (its proposer lost
 * leadership or died) leaves steps collected on the members; the leader
 * aborts it once it has made no progress for RESTORE_STALE_MS, so that
 * Raft snapshots, which wait for it, resume. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/secmem.h"
#include "lib/failpoint.h"
#include "lib/fileutil.h"
#include "lib/log.h"
#include "node/snapfile.h"

#define RESTORE_CHUNK (512u * 1024u)
#define RESTORE_STALE_MS 30000u /* tests: failpoint restore_stale_ms */
#define RESTORE_PENDING "restore.pending"

_Static_assert(RESTORE_CHUNK <= FSM_RESTORE_CHUNK_MAX, "a chunk fits in one step");
_Static_assert(RESTORE_CHUNK + 64u <= TRANSPORT_MAX_RPC, "a step fits in one RPC");
_Static_assert(SNAPFILE_HASH_LEN == FSM_RESTORE_HASH_LEN, "the body's hash is the dump's");

/* One restore being proposed, a step at a time. */
struct restore_run {
	struct node *node;
	int fd;
	uint64_t start;       /* the body's offset in fd */
	uint64_t len;         /* and its length */
	uint64_t id;
	uint8_t hash[FSM_RESTORE_HASH_LEN];
	uint8_t next_kind;    /* the step to send next */
	uint64_t next_off;    /* CHUNK: its offset in the body */
	uint8_t *chunk;       /* RESTORE_CHUNK bytes */
	struct raft_apply apply;
	struct api_request *req; /* answered at the end; NULL: the pending one */
	void (*done)(struct node *n, int status);
};

struct node_restore {
	struct restore_run *run;
	uint64_t stale_id;     /* a restore collected in the log, not ours */
	uint64_t stale_bytes;  /* how far it had come */
	uint64_t stale_since;  /* uv_now when it last moved */
	struct raft_apply abort_apply;
	bool aborting;
};

static void pending_path(const struct node *n, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", n->data_dir, RESTORE_PENDING);
}

bool node_restore_is_pending(const struct node *n)
{
	char path[4096];
	pending_path(n, path, sizeof path);
	return access(path, F_OK) == 0;
}

/* ---- Checking a file ---- */

struct restore_file {
	struct buf bytes;      /* prefix and header as read */
	struct snapfile_header h;
};

/* Reads and checks the header and the body's hash. 0, or -EBADMSG /
 * -EPROTONOSUPPORT / -errno, logged with the reason. */
static int file_check(struct node *n, int fd, struct restore_file *f)
{
	char why[256] = "";
	buf_init(&f->bytes);
	int rv = snapfile_read_header(fd, &f->bytes, &f->h, why, sizeof why);
	if (rv == 0)
		rv = snapfile_check_body(fd, f->bytes.len, &f->h, why, sizeof why);
	if (rv != 0)
		log_warn("node %s: restore refused, nothing changed: %s", n->node_id, why);
	return rv;
}

/* Whether the header's HMAC is right under the backup key of the keyring
 * this node holds now. */
static bool file_mac_ok(struct node *n, const struct restore_file *f)
{
	uint8_t *key = secmem_alloc(SNAPFILE_KEY_LEN);
	bool ok = key != NULL && barrier_backup_key(n->barrier, key) == 0 &&
		  snapfile_mac_ok(f->bytes.data, f->bytes.len, key);
	secmem_free(key);
	return ok;
}

static void cluster_hex(const uint8_t id[SNAPFILE_ID_LEN], char out[2 * SNAPFILE_ID_LEN + 1])
{
	sodium_bin2hex(out, 2 * SNAPFILE_ID_LEN + 1, id, SNAPFILE_ID_LEN);
}

/* ---- Proposing the steps ---- */

static void run_step(struct restore_run *run);

static void run_end(struct restore_run *run, int status)
{
	struct node *n = run->node;
	assert(n->restore->run == run);
	n->restore->run = NULL;
	if (status == 0)
		log_info("node %s: restore %016" PRIx64 " done: %" PRIu64 " bytes", n->node_id,
			 run->id, run->len);
	else
		log_warn("node %s: restore %016" PRIx64 " failed: %s", n->node_id, run->id,
			 strerror(-status));
	if (run->req != NULL)
		api_reply(run->req, status, NULL, 0);
	if (run->done != NULL)
		run->done(n, status);
	close(run->fd);
	free(run->chunk);
	free(run);
}

/* One step answered with RESULT (fsm.h); END's answer ends the run. */
static void run_stepped(struct restore_run *run, int status, int64_t result)
{
	if (status == 0 && result < 0)
		status = (int)result;
	if (status != 0 || run->next_kind == FSM_RESTORE_END + 1) {
		run_end(run, status);
		return;
	}
	run_step(run);
}

static void on_run_visible(void *arg, int status)
{
	run_stepped(arg, status, 0);
}

static void on_run_applied(struct raft_apply *apply, int status, void *result)
{
	struct restore_run *run = apply->data;
	int64_t r = status == 0 ? fsm_result_unpack(result) : 0;
	if (status == 0 && r == 0 && run->next_kind == FSM_RESTORE_END + 1) {
		/* Answered once no mount shows what it replaced (coherence.c). */
		coherence_wait_written(run->node->coherence, apply->index, on_run_visible, run);
		return;
	}
	run_stepped(run, status != 0 ? node_query_raft_errno(status) : 0, r);
}

static void on_run_forwarded(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct restore_run *run = arg;
	struct cursor c;
	cursor_init(&c, resp, len);
	int64_t r = status == 0 ? cursor_i64(&c) : 0;
	uint64_t index = status == 0 ? cursor_u64(&c) : 0;
	if (status == 0 && cursor_done(&c) != 0)
		status = -EIO;
	if (status == 0 && r == 0 && run->next_kind == FSM_RESTORE_END + 1) {
		node_safe_learned(run->node, index);
		coherence_wait_visible(run->node->coherence, index, on_run_visible, run);
		return;
	}
	run_stepped(run, status, r);
}

/* Fills STEP with the next step; 0 or -errno. */
static int run_next(struct restore_run *run, struct fsm_restore_step *step)
{
	memset(step, 0, sizeof *step);
	step->kind = run->next_kind;
	step->id = run->id;
	switch (run->next_kind) {
	case FSM_RESTORE_BEGIN:
		step->len = run->len;
		memcpy(step->hash, run->hash, sizeof step->hash);
		run->next_kind = run->len > 0 ? FSM_RESTORE_CHUNK : FSM_RESTORE_END;
		return 0;
	case FSM_RESTORE_CHUNK: {
		uint64_t left = run->len - run->next_off;
		size_t n = left < RESTORE_CHUNK ? (size_t)left : RESTORE_CHUNK;
		ssize_t got = pread(run->fd, run->chunk, n, (off_t)(run->start + run->next_off));
		if (got != (ssize_t)n)
			return got < 0 ? -errno : -EIO;
		step->len = run->next_off;
		step->data = run->chunk;
		step->data_len = n;
		run->next_off += n;
		if (run->next_off == run->len)
			run->next_kind = FSM_RESTORE_END;
		return 0;
	}
	default:
		assert(run->next_kind == FSM_RESTORE_END);
		run->next_kind = FSM_RESTORE_END + 1; /* done once answered */
		return 0;
	}
}

/* Proposes STEP here (the leader) or sends it to the leader. */
static int run_submit(struct restore_run *run, const struct fsm_restore_step *step)
{
	struct node *n = run->node;
	if (n->session == NULL || n->phase == NODE_CLOSING)
		return -EAGAIN;
	if (node_query_is_leader(n)) {
		struct raft_buffer entry = { 0 };
		int rv = fsm_encode_restore(n->barrier, step, &entry);
		if (rv != 0)
			return rv;
		run->apply.data = run;
		return node_cluster_propose(n, &run->apply, &entry, on_run_applied);
	}
	const char *leader = node_query_leader_address(n);
	if (leader == NULL)
		return -EAGAIN;
	struct buf b;
	buf_init(&b);
	fsm_restore_step_encode(step, &b);
	int rv = b.err != 0 ? b.err
			    : transport_rpc(n->session->transport, leader, NODE_RPC_RESTORE, b.data,
					    b.len, n->cfg.request_timeout_ms, on_run_forwarded, run);
	buf_free(&b);
	return rv;
}

static void run_step(struct restore_run *run)
{
	/* Tests: a proposer that stops before END (it then gets killed). */
	if (run->next_kind == FSM_RESTORE_END && failpoint_hit("restore_stall"))
		return;
	struct fsm_restore_step step;
	int rv = run_next(run, &step);
	if (rv == 0)
		rv = run_submit(run, &step);
	if (rv != 0)
		run_end(run, rv);
}

/* Starts proposing the body of F in FD (which the run then owns). */
static int run_start(struct node *n, int fd, const struct restore_file *f,
		     struct api_request *req, void (*done)(struct node *n, int status))
{
	if (n->restore->run != NULL)
		return -EBUSY;
	struct restore_run *run = calloc(1, sizeof *run);
	uint8_t *chunk = malloc(RESTORE_CHUNK);
	int dup_fd = run && chunk ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (dup_fd < 0) {
		free(run);
		free(chunk);
		return -ENOMEM;
	}
	run->node = n;
	run->fd = dup_fd;
	run->start = f->bytes.len;
	run->len = f->h.body_len;
	memcpy(run->hash, f->h.body_hash, sizeof run->hash);
	run->chunk = chunk;
	run->req = req;
	run->done = done;
	run->next_kind = FSM_RESTORE_BEGIN;
	randombytes_buf(&run->id, sizeof run->id);
	n->restore->run = run;
	char id[2 * SNAPFILE_ID_LEN + 1];
	cluster_hex(f->h.cluster_id, id);
	log_info("node %s: restoring the backup of index %" PRIu64 " (%" PRIu64 " bytes, vault "
		 "%s) as restore %016" PRIx64, n->node_id, f->h.index, f->h.body_len, id, run->id);
	run_step(run);
	return 0;
}

/* ---- The leader's side of a member's steps ---- */

struct restore_serve {
	struct raft_apply apply;
	struct transport_rpc_req *rpc;
	struct node *node;
	int64_t result;
};

static void serve_reply(struct restore_serve *op, int status)
{
	if (status != 0) {
		transport_rpc_reply(op->rpc, status, NULL, 0);
	} else {
		struct buf out;
		buf_init(&out);
		buf_put_i64(&out, op->result);
		buf_put_u64(&out, op->apply.index);
		transport_rpc_reply(op->rpc, out.err, out.data, out.len);
		buf_free(&out);
	}
	free(op);
}

static void on_serve_visible(void *arg, int status)
{
	serve_reply(arg, status);
}

static void on_serve_applied(struct raft_apply *apply, int status, void *result)
{
	struct restore_serve *op = (struct restore_serve *)apply;
	if (status != 0) {
		serve_reply(op, node_query_raft_errno(status));
		return;
	}
	op->result = fsm_result_unpack(result);
	coherence_wait_written(op->node->coherence, apply->index, on_serve_visible, op);
}

void node_restore_serve(struct node *n, struct transport_rpc_req *rpc)
{
	struct fsm_restore_step step;
	if (fsm_restore_step_decode(rpc->payload, rpc->len, &step) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	struct restore_serve *op = calloc(1, sizeof *op);
	struct raft_buffer entry = { 0 };
	int rv = op != NULL ? fsm_encode_restore(n->barrier, &step, &entry) : -ENOMEM;
	if (rv == 0) {
		op->rpc = rpc;
		op->node = n;
		rv = node_cluster_propose(n, &op->apply, &entry, on_serve_applied);
	}
	if (rv != 0) {
		free(op);
		transport_rpc_reply(rpc, rv, NULL, 0);
	}
}

/* ---- (a) A fresh node ---- */

static int fresh_take(struct node *n, const char *staged, const struct restore_file *f)
{
	char pending[4096];
	pending_path(n, pending, sizeof pending);
	int rv = file_sync_path(staged);
	if (rv == 0 && rename(staged, pending) != 0)
		rv = -errno;
	if (rv == 0)
		rv = file_sync_path(n->data_dir);
	struct unsealer *u = NULL;
	if (rv == 0)
		rv = unsealer_new(&u, f->h.threshold);
	if (rv == 0) {
		buf_clear(&n->sealed_keyring);
		buf_put_raw(&n->sealed_keyring, f->h.keyring, f->h.keyring_len);
		n->shares = f->h.shares;
		n->threshold = f->h.threshold;
		rv = n->sealed_keyring.err;
	}
	/* Last: once the seal file exists the node counts as initialised. */
	if (rv == 0)
		rv = node_save_seal_file(n);
	if (rv != 0) {
		unsealer_free(u);
		unlink(pending);
		buf_clear(&n->sealed_keyring);
		n->shares = n->threshold = 0;
		return rv;
	}
	unsealer_free(n->unsealer);
	n->unsealer = u;
	n->initialized = true;
	return 0;
}

static int restore_fresh(struct node *n, const char *staged, const struct restore_file *f)
{
	if (n->join_waiter != NULL || n->join_addr != NULL)
		return -EBUSY; /* joining a cluster already */
	node_join_stop_retry(n);
	int rv = fresh_take(n, staged, f);
	char id[2 * SNAPFILE_ID_LEN + 1];
	cluster_hex(f->h.cluster_id, id);
	if (rv != 0) {
		log_error("node %s: cannot take the backup: %s", n->node_id, strerror(-rv));
		return rv;
	}
	log_info("node %s: initialized from a backup of vault %s (index %" PRIu64 "); sealed: "
		 "unseal it with %u of the %u key shares that were valid when the backup was "
		 "taken", n->node_id, id, f->h.index, f->h.threshold, f->h.shares);
	return 0;
}

int node_restore_unseal(struct node *n)
{
	char path[4096];
	pending_path(n, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	struct restore_file f;
	int rv = file_check(n, fd, &f);
	close(fd);
	if (rv == 0 && !file_mac_ok(n, &f)) {
		log_error("node %s: %s does not carry a valid HMAC under the keyring it holds: it "
			  "was altered; nothing restored", n->node_id, path);
		rv = -EBADMSG;
	}
	buf_free(&f.bytes);
	if (rv == 0)
		rv = node_trust_identity(n, false);
	if (rv == 0) {
		/* Already there if a first attempt stopped half-way. */
		rv = node_bootstrap_raft(n);
		if (rv == -EEXIST)
			rv = 0;
	}
	return rv;
}

static void on_pending_done(struct node *n, int status)
{
	char path[4096];
	pending_path(n, path, sizeof path);
	if (status == 0 && (unlink(path) != 0 || file_sync_path(n->data_dir) != 0))
		log_warn("node %s: cannot remove %s: %s (the backup is restored again at the next "
			 "start)", n->node_id, path, strerror(errno));
	node_ready_after_restore(n, status);
}

void node_restore_pending_run(struct node *n)
{
	if (n->restore->run != NULL)
		return; /* under way: its end makes the node ready */
	char path[4096];
	pending_path(n, path, sizeof path);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct restore_file f;
	int rv = fd >= 0 ? file_check(n, fd, &f) : -errno;
	if (rv == 0) {
		rv = run_start(n, fd, &f, NULL, on_pending_done);
		buf_free(&f.bytes);
	}
	if (fd >= 0)
		close(fd);
	if (rv != 0)
		node_ready_after_restore(n, rv);
}

/* ---- (b) A running vault, and the entry point ---- */

static int restore_running(struct node *n, int fd, const struct restore_file *f, bool force,
			   struct api_request *req)
{
	uint8_t mine[BARRIER_CLUSTER_ID_LEN];
	int rv = barrier_cluster_id(n->barrier, mine);
	if (rv != 0)
		return rv;
	if (sodium_memcmp(mine, f->h.cluster_id, sizeof mine) != 0) {
		char theirs[2 * SNAPFILE_ID_LEN + 1], ours[2 * SNAPFILE_ID_LEN + 1];
		cluster_hex(f->h.cluster_id, theirs);
		cluster_hex(mine, ours);
		log_warn("node %s: restore refused%s, nothing changed: the backup is of vault %s, "
			 "this is vault %s, and its data opens only with that vault's keys: "
			 "restore it into a fresh, uninitialised node instead", n->node_id,
			 force ? " even with force" : "", theirs, ours);
		return -EINVAL;
	}
	if (!file_mac_ok(n, f)) {
		log_warn("node %s: restore refused, nothing changed: the backup's HMAC is wrong "
			 "(it was altered)", n->node_id);
		return -EBADMSG;
	}
	if (n->phase != NODE_ACTIVE)
		return -EAGAIN;
	return run_start(n, fd, f, req, NULL);
}

int node_restore_may_start(const struct node *n)
{
	if (!n->initialized)
		return 0;
	if (n->phase == NODE_SEALED || n->phase == NODE_CLOSING)
		return -ENOKEY;
	return n->restore->run != NULL ? -EBUSY : 0;
}

void node_restore_start(struct node *n, struct api_request *req, int fd, const char *staged,
			bool force)
{
	struct restore_file f;
	int rv = node_restore_may_start(n);
	if (rv == 0)
		rv = file_check(n, fd, &f);
	else
		buf_init(&f.bytes);
	if (rv == 0 && !n->initialized)
		rv = restore_fresh(n, staged, &f);
	else if (rv == 0) {
		rv = restore_running(n, fd, &f, force, req);
		if (rv == 0)
			req = NULL; /* the run answers */
	}
	buf_free(&f.bytes);
	if (req != NULL)
		api_reply(req, rv, NULL, 0);
}

/* ---- Stale restores ---- */

static void on_abort_applied(struct raft_apply *apply, int status, void *result)
{
	struct node_restore *r = (struct node_restore *)((char *)apply -
							  offsetof(struct node_restore, abort_apply));
	(void)status;
	(void)result;
	r->aborting = false;
}

void node_restore_tick(struct node *n)
{
	struct node_restore *r = n->restore;
	uint64_t id;
	if (n->session == NULL || n->phase != NODE_ACTIVE || r->aborting ||
	    !fsm_restore_active(&n->session->fsm, &id) || !node_query_is_leader(n)) {
		r->stale_id = 0;
		return;
	}
	uint64_t now = uv_now(n->loop), bytes = n->session->fsm.restore.data.len;
	if (id != r->stale_id || bytes != r->stale_bytes) {
		r->stale_id = id;
		r->stale_bytes = bytes;
		r->stale_since = now;
		return;
	}
	long stale_ms = failpoint_value("restore_stale_ms");
	if (stale_ms <= 0)
		stale_ms = RESTORE_STALE_MS;
	if (now - r->stale_since < (uint64_t)stale_ms)
		return;
	log_warn("node %s: restore %016" PRIx64 " made no progress for %ld ms: aborting it",
		 n->node_id, id, stale_ms);
	struct fsm_restore_step step = { .kind = FSM_RESTORE_ABORT, .id = id };
	struct raft_buffer entry = { 0 };
	if (fsm_encode_restore(n->barrier, &step, &entry) != 0)
		return;
	if (node_cluster_propose(n, &r->abort_apply, &entry, on_abort_applied) != 0)
		return;
	r->aborting = true;
	r->stale_id = 0;
}

/* ---- Module ---- */

int node_restore_init(struct node *n)
{
	n->restore = calloc(1, sizeof(*n->restore));
	return n->restore != NULL ? 0 : -ENOMEM;
}

void node_restore_free(struct node *n)
{
	free(n->restore);
	n->restore = NULL;
}
