/* Node lifecycle: seal file, Raft session start/stop, readiness, dispatch. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "crypto/secmem.h"
#include "lib/fileutil.h"
#include "lib/log.h"
#include "raft/fsm.h"
#include "raft/raftio.h"
#include "vaultfs/proto.h"

#define SEAL_MAGIC "VFSSEAL1"
#define SEAL_MAGIC_LEN 8u
#define SEAL_FILE_MAX (1024u * 1024u) /* a full keyring fits (BARRIER_MAX_TERMS) */
#define READY_POLL_MS 5u

/* Raft ids must be stable, unique and non-zero; a node is named by its
 * node_id, so the id is a hash of it (FNV-1a; collisions among a handful of
 * names are not a practical concern, and join refuses a duplicate id). */
raft_id node_raft_id_of(const char *node_id)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const unsigned char *p = (const unsigned char *)node_id; *p; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
	}
	return h != 0 ? h : 1;
}

static int load_seal_file(struct node *n, char *errmsg, size_t errlen)
{
	struct buf file;
	buf_init(&file);
	int rv = file_read_all(n->seal_path, SEAL_FILE_MAX, &file);
	if (rv == -ENOENT) {
		buf_free(&file);
		return 0; /* not initialised yet */
	}
	if (rv != 0) {
		snprintf(errmsg, errlen, "%s: cannot read: %s", n->seal_path, strerror(-rv));
		buf_free(&file);
		return rv;
	}
	struct cursor c;
	cursor_init(&c, file.data, file.len);
	const uint8_t *magic = cursor_raw(&c, SEAL_MAGIC_LEN);
	uint8_t shares = cursor_u8(&c);
	uint8_t threshold = cursor_u8(&c);
	size_t klen = 0, jlen = 0;
	const uint8_t *keyring = cursor_blob(&c, SEAL_FILE_MAX, &klen);
	/* A node that joined remembers where to ask to be added. */
	const uint8_t *join = c.left > 0 ? cursor_blob(&c, 512, &jlen) : NULL;
	if (join != NULL && c.err == 0 && (jlen == 0 || memchr(join, '\0', jlen) != NULL))
		c.err = -EBADMSG;
	if (cursor_done(&c) != 0 || memcmp(magic, SEAL_MAGIC, SEAL_MAGIC_LEN) != 0 ||
	    threshold == 0 || threshold > shares) {
		snprintf(errmsg, errlen,
			 "%s: not a vaultfs seal file or corrupt; restore it from backup", n->seal_path);
		buf_free(&file);
		return -EINVAL;
	}
	buf_put_raw(&n->sealed_keyring, keyring, klen);
	if (join != NULL && (n->join_addr = strndup((const char *)join, jlen)) == NULL) {
		buf_free(&file);
		return -ENOMEM;
	}
	n->shares = shares;
	n->threshold = threshold;
	n->initialized = true;
	buf_free(&file);
	return n->sealed_keyring.err;
}

int node_save_seal_file(struct node *n)
{
	struct buf file;
	buf_init(&file);
	buf_put_raw(&file, SEAL_MAGIC, SEAL_MAGIC_LEN);
	buf_put_u8(&file, (uint8_t)n->shares);
	buf_put_u8(&file, (uint8_t)n->threshold);
	buf_put_blob(&file, n->sealed_keyring.data, n->sealed_keyring.len);
	if (n->join_addr != NULL)
		buf_put_blob(&file, n->join_addr, strlen(n->join_addr));
	int rv = file.err != 0 ? file.err
			       : file_write_atomic(n->seal_path, file.data, file.len, 0600);
	buf_free(&file);
	return rv;
}

/* What an operator can do about a damaged Raft log: appended to every
 * report of one (at start and at unseal). */
static void format_damaged_log(const struct node *n, const char *what, char *out, size_t len)
{
	snprintf(out, len,
		 "%s. The Raft log of node %s is damaged; vaultfsd does not serve from it. If the "
		 "other nodes are healthy: write '%s' to .vault/remove-peer on one of them, move %s "
		 "aside, start this node again, write a member's cluster address to its .vault/join "
		 "and unseal it: it gets everything from the leader. A one-node vault: restore %s "
		 "from a backup",
		 what, n->node_id, n->node_id, n->data_dir, n->data_dir);
}

static void log_damaged_log(const struct node *n, const char *what)
{
	char msg[1024];
	format_damaged_log(n, what, msg, sizeof msg);
	log_error("node %s: %s", n->node_id, msg);
}

/* A damaged log found at start stops the daemon before it serves anything;
 * without this it would only show at unseal, as an EIO. */
static int check_raft_log(struct node *n, char *errmsg, size_t errlen)
{
	char what[512];
	int rv = raftio_check(n->data_dir, what, sizeof what);
	if (rv == 0)
		return 0;
	if (rv == RAFT_CORRUPT)
		format_damaged_log(n, what, errmsg, errlen);
	else
		snprintf(errmsg, errlen, "cannot read the Raft log: %s", what);
	return rv == RAFT_NOMEM ? -ENOMEM : -EIO;
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void node_free(struct node *n)
{
	buf_free(&n->sealed_keyring);
	unsealer_free(n->unsealer);
	barrier_free(n->barrier);
	secmem_free(n->init_output);
	node_watch_free(n);
	node_trust_free(n);
	node_keys_free(n);
	node_storage_free(n);
	node_rekey_free(n);
	node_metrics_free(n);
	node_join_free(n);
	node_autopilot_free(n);
	node_features_free(n);
	node_snapshot_free(n);
	node_restore_free(n);
	node_backup_free(n);
	node_audit_free(n);
	free(n->data_dir);
	free(n->node_id);
	free(n->cluster_addr);
	free(n->raft_address);
	free(n->join_addr);
	free(n->rejoin_addr);
	free(n);
}

static int node_copy_config(struct node *n, const struct node_config *cfg)
{
	n->cfg = *cfg;
	n->data_dir = dup_or_null(cfg->data_dir);
	n->node_id = dup_or_null(cfg->node_id);
	n->cluster_addr = dup_or_null(cfg->cluster_addr);
	if (n->data_dir == NULL || n->node_id == NULL || n->cluster_addr == NULL)
		return -ENOMEM;
	if (asprintf(&n->raft_address, "%s@%s", n->node_id, n->cluster_addr) < 0) {
		n->raft_address = NULL;
		return -ENOMEM;
	}
	n->cfg.data_dir = n->data_dir;
	n->cfg.node_id = n->node_id;
	n->cfg.cluster_addr = n->cluster_addr;
	if (snprintf(n->seal_path, sizeof(n->seal_path), "%s/seal", n->data_dir) >=
	    (int)sizeof(n->seal_path))
		return -ENAMETOOLONG;
	return 0;
}

static int node_prepare_data_dir(const char *dir, char *errmsg, size_t errlen)
{
	int rv = file_mkdir_p(dir, 0700);
	if (rv != 0) {
		snprintf(errmsg, errlen, "%s: cannot create data directory: %s", dir, strerror(-rv));
		return rv;
	}
	/* Only ciphertext lives here, but names of files and sizes still tell
	 * something: keep the directory private even if it pre-existed. */
	if (chmod(dir, 0700) != 0) {
		rv = -errno;
		snprintf(errmsg, errlen, "%s: cannot chmod 0700: %s", dir, strerror(errno));
		return rv;
	}
	return 0;
}

int node_start(struct node **ret, uv_loop_t *loop, const struct node_config *cfg,
	       char *errmsg, size_t errlen)
{
	struct node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return -ENOMEM;
	n->loop = loop;
	buf_init(&n->sealed_keyring);
	int rv = node_copy_config(n, cfg);
	if (rv != 0) {
		snprintf(errmsg, errlen, "node: cannot copy configuration: %s", strerror(-rv));
		goto err_free;
	}
	rv = node_storage_check_start(n->data_dir, errmsg, errlen);
	if (rv == 0)
		rv = node_prepare_data_dir(n->data_dir, errmsg, errlen);
	if (rv != 0)
		goto err_free;
	node_storage_make_reserve(n);
	rv = load_seal_file(n, errmsg, errlen);
	if (rv == 0)
		rv = check_raft_log(n, errmsg, errlen);
	if (rv == 0 && cfg->recover && raftio_has_state(n->data_dir) != 1) {
		snprintf(errmsg, errlen,
			 "-recover: %s holds no Raft state: nothing to recover (start this node "
			 "without -recover and init or join it)",
			 n->data_dir);
		rv = -EINVAL;
	}
	if (rv == 0 && cfg->recover)
		rv = node_recover_check(n->data_dir, errmsg, errlen);
	n->recover_pending = cfg->recover;
	if (rv != 0)
		goto err_free;
	rv = barrier_new(&n->barrier);
	if (rv == 0 && n->initialized)
		rv = unsealer_new(&n->unsealer, n->threshold);
	if (rv != 0) {
		snprintf(errmsg, errlen, "node: out of memory");
		goto err_free;
	}
	/* A fresh proposer identity per process: sequence numbers restart at 1,
	 * and the state machine must not take them for replays. */
	if (getrandom(&n->client_id, sizeof(n->client_id), 0) != sizeof(n->client_id)) {
		rv = -EIO;
		snprintf(errmsg, errlen, "node: getrandom failed");
		goto err_free;
	}
	rv = node_audit_init(n, errmsg, errlen);
	if (rv != 0)
		goto err_free;
	/* The last steps that can fail: they open handles only on success. */
	if (node_trust_init(n) != 0 || node_keys_init(n) != 0 || node_rekey_init(n) != 0 ||
	    node_watch_init(n) != 0 || node_storage_init(n) != 0 || node_metrics_init(n) != 0 ||
	    node_join_init(n) != 0 || node_autopilot_init(n) != 0 ||
	    node_features_init(n) != 0 || node_snapshot_init(n) != 0 ||
	    node_restore_init(n) != 0 || node_backup_init(n) != 0) {
		rv = -ENOMEM;
		snprintf(errmsg, errlen, "node: out of memory");
		goto err_free;
	}
	node_trust_open(n);
	node_keys_open(n);
	node_metrics_open(n);
	node_autopilot_open(n);
	node_snapshot_open(n);
	node_backup_open(n);
	node_storage_open(n);
	uv_timer_init(loop, &n->ready_timer);
	n->ready_timer.data = n;
	uv_timer_init(loop, &n->fatal_timer);
	n->fatal_timer.data = n;
	uv_timer_init(loop, &n->shares_timer);
	n->shares_timer.data = n;
	node_cluster_init(n);
	node_join_open(n);
	n->raft_id = node_raft_id_of(n->node_id);
	n->phase = NODE_SEALED;
	n->started_ns = node_now_ns();
	log_info("node %s: %s, sealed", n->node_id,
		 n->initialized ? "initialized" : "not initialized (write .vault/init)");
	*ret = n;
	return 0;

err_free:
	node_free(n);
	return rv;
}

int64_t node_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *node_phase_name(const struct node *n)
{
	switch (n->phase) {
	case NODE_SEALED: return "sealed";
	case NODE_STARTING: return "starting";
	case NODE_ACTIVE: return "active";
	case NODE_CLOSING: return "closing";
	}
	return "unknown";
}

/* ---- Readiness: a node serves once it leads and has applied its log. ---- */

static void reply_unseal_waiter(struct node *n, int status)
{
	if (n->unseal_waiter != NULL) {
		api_reply(n->unseal_waiter, status, NULL, 0);
		n->unseal_waiter = NULL;
	}
}

static void become_active(struct node *n, const char *role);
static void on_ready_poll(uv_timer_t *t);

static void on_ready_barrier(struct raft_barrier *req, int status)
{
	struct raft_session *s = req->data;
	struct node *n = s->node;
	if (n->phase != NODE_STARTING || n->session != s)
		return;
	if (status != 0) {
		log_warn("node %s: leadership barrier failed: %s; retrying", n->node_id,
			 raft_strerror(status));
		uv_timer_start(&n->ready_timer, on_ready_poll, READY_POLL_MS, 0);
		return;
	}
	n->barrier_term = s->raft.current_term;
	/* A node made from a backup serves only once it holds it (node_restore.c). */
	if (node_restore_is_pending(n)) {
		node_restore_pending_run(n);
		return;
	}
	become_active(n, "leader");
}

void node_ready_after_restore(struct node *n, int status)
{
	if (n->phase != NODE_STARTING)
		return;
	if (status == 0) {
		become_active(n, "leader");
		return;
	}
	log_error("node %s: the backup this node was made from could not be restored (%s); "
		  "sealing. Move the data directory aside and restore the backup again",
		  n->node_id, strerror(-status));
	reply_unseal_waiter(n, status);
	node_seal_begin(n);
}

static void become_active(struct node *n, const char *role)
{
	/* A member now: a later restart must not ask to join again (e.g. after
	 * it was removed). */
	if (n->join_addr != NULL) {
		free(n->join_addr);
		n->join_addr = NULL;
		if (node_save_seal_file(n) != 0)
			log_warn("node %s: cannot update the seal file", n->node_id);
	}
	n->phase = NODE_ACTIVE;
	log_info("node %s: active (%s, term %" PRIu64 ", applied %" PRIu64 ")", n->node_id, role,
		 (uint64_t)n->session->raft.current_term, node_query_applied_index(n));
	reply_unseal_waiter(n, 0);
}

static void on_ready_poll(uv_timer_t *t)
{
	struct node *n = t->data;
	struct raft_session *s = n->session;
	if (n->phase != NODE_STARTING || s == NULL)
		return;
	if (raft_state(&s->raft) == RAFT_LEADER) {
		/* Entries of earlier terms count as committed only once an
		 * entry of this term commits (Raft 5.4.2): the barrier does it
		 * and makes sure everything is applied before we serve. */
		s->ready_barrier.data = s;
		int rv = raft_barrier(&s->raft, &s->ready_barrier, on_ready_barrier);
		if (rv == 0)
			return;
		log_warn("node %s: raft_barrier: %s", n->node_id, raft_strerror(rv));
	} else if (node_query_in_configuration(n)) {
		/* A follower serves once it knows whom to forward to; its reads
		 * wait for the leader's commit index anyway. */
		if (node_query_leader_address(n) != NULL) {
			become_active(n, "follower");
			return;
		}
	} else {
		node_join_after_unseal(n);
	}
	if (uv_now(n->loop) >= n->ready_deadline && n->unseal_waiter != NULL) {
		log_warn("node %s: unsealed, but no leader yet after %u ms", n->node_id,
			 n->cfg.request_timeout_ms);
		reply_unseal_waiter(n, 0);
	}
	uv_timer_start(&n->ready_timer, on_ready_poll, READY_POLL_MS, 0);
}

static void ready_poll_start(struct node *n)
{
	n->ready_deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	uv_timer_start(&n->ready_timer, on_ready_poll, 0, 0);
}

/* ---- Raft session ---- */

static void session_free(struct raft_session *s)
{
	fsm_free(&s->fsm); /* a zeroed fsm too (calloc) */
	store_close(s->store);
	free(s);
}

static void on_io_closed_after_failed_init(struct raft_io *io)
{
	session_free((struct raft_session *)((char *)io - offsetof(struct raft_session, io)));
}

static void on_fatal_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	if (n->phase == NODE_STARTING || n->phase == NODE_ACTIVE)
		node_seal_begin(n);
}

/* Called from inside libraft's apply: closing Raft there would pull the
 * ground from under it, so the seal happens on the next loop iteration. */
static void on_fsm_fatal(void *arg)
{
	struct node *n = arg;
	log_error("node %s: a committed entry cannot be applied; sealing this node so that it "
		  "stops serving. Check the log above, then restart and unseal it (it will "
		  "catch up from the log or a snapshot)", n->node_id);
	uv_timer_start(&n->fatal_timer, on_fatal_timer, 0, 0);
}

/* A follower's appends are what a commit waits for: one that serves no
 * write of its own stores them on its loop thread (raftio_set_inline),
 * saving two thread hand-offs per append. The leader keeps the thread pool,
 * and so does a follower with writes of its own in flight: their loops send
 * and answer meanwhile (a follower's writes wait for its loop three times:
 * forwarded, answered, shown), and so does a follower whose last log
 * write was slow: its loop would stop serving reads for as long. */
static bool follower_appends_inline(void *arg)
{
	struct raft_session *s = arg;
	return raft_state(&s->raft) == RAFT_FOLLOWER && s->node->writes == NULL &&
	       !node_storage_slow(s->node);
}

/* The session's raft_io, keyed with the storage key (the barrier is
 * unsealed whenever a session opens). */
static int session_raftio_init(struct node *n, struct raft_session *s, char *errmsg,
			       size_t errlen)
{
	uint8_t *key = secmem_alloc(RAFTIO_KEY_LEN);
	if (key == NULL)
		return RAFT_NOMEM;
	_Static_assert(RAFTIO_KEY_LEN == BARRIER_STORAGE_KEY_LEN, "raftio takes the storage key");
	int rv = barrier_storage_key(n->barrier, key);
	assert(rv == 0);
	rv = raftio_init(&s->io, n->loop, n->data_dir, key,
			 s->transport ? transport_raftio(s->transport) : NULL, errmsg, errlen);
	secmem_free(key);
	return rv;
}

/* Both follow the size of the latest snapshot taken or restored (fsm.h).
 *
 * The resend wait: libraft sends a follower a snapshot again only once the
 * last one went unanswered for install_snapshot_timeout (30 s by default),
 * and a follower that is taking a snapshot of its own when one arrives
 * drops it without an answer: a follower that lost that race stayed 30 s
 * behind. The wait need only cover sending and storing the snapshot on a
 * slow disk, and a few election timeouts at least.
 *
 * The threshold: a snapshot costs every node time in proportion to the
 * store (dump, encrypt, write, sync), so taking one every
 * snapshot_threshold entries whatever the size made a growing store's
 * writes slower and slower (filling 400,000 secrets: 2,800 writes/s for
 * the first 100,000, 1,200 for the fourth). The log may grow by about a
 * quarter of the store between snapshots instead, up to a bound on the
 * entries libraft holds in memory. */
#define SNAPSHOT_STORE_BYTES_PER_S (4u << 20)
#define SNAPSHOT_WAIT_ELECTIONS 3u
#define SNAPSHOT_ENTRY_BYTES 256u /* what an entry adds to a snapshot, about */
#define SNAPSHOT_GROWTH_PART 4u
#define SNAPSHOT_THRESHOLD_MAX 131072u

static void session_size_snapshots(struct node *n, struct raft_session *s)
{
	uint64_t bytes = s->fsm.snapshot_bytes;
	uint64_t ms = (uint64_t)SNAPSHOT_WAIT_ELECTIONS * n->cfg.election_timeout_ms;
	uint64_t by_size = bytes * 1000u / SNAPSHOT_STORE_BYTES_PER_S;
	if (by_size > ms)
		ms = by_size;
	raft_set_install_snapshot_timeout(&s->raft, ms < UINT32_MAX ? (unsigned)ms : UINT32_MAX);

	uint64_t entries = bytes / SNAPSHOT_GROWTH_PART / SNAPSHOT_ENTRY_BYTES;
	if (entries > SNAPSHOT_THRESHOLD_MAX)
		entries = SNAPSHOT_THRESHOLD_MAX;
	if (entries < n->cfg.snapshot_threshold)
		entries = n->cfg.snapshot_threshold;
	raft_set_snapshot_threshold(&s->raft, (unsigned)entries);
}

/* fsm: a snapshot was taken or restored. Inside raft_start the session is
 * not the node's yet: start_raft sizes them after it. */
static void on_snapshot_sized(void *arg)
{
	struct node *n = arg;
	if (n->session != NULL)
		session_size_snapshots(n, n->session);
}

/* fsm: a change was applied (CH NULL: a whole state came). */
static void on_fsm_change(void *arg, const struct store_changes *ch)
{
	struct node *n = arg;
	node_safe_changed(n, ch);
	node_watch_changed(n, ch);
}

/* A session for serving (WITH_TRANSPORT) or just for writing the
 * bootstrap configuration. */
static int session_open(struct node *n, bool with_transport, struct raft_session **ret)
{
	char errmsg[512];
	struct raft_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->node = n;
	int rv = store_open(&s->store, n->barrier, errmsg, sizeof(errmsg));
	if (rv != 0) {
		log_error("node %s: %s", n->node_id, errmsg);
		free(s);
		return rv;
	}
	if (with_transport && (rv = node_cluster_transport(n, s)) != 0) {
		log_error("node %s: cluster transport: %s", n->node_id, strerror(-rv));
		session_free(s);
		return rv;
	}
	rv = session_raftio_init(n, s, errmsg, sizeof errmsg);
	if (rv != 0) {
		if (rv == RAFT_CORRUPT)
			log_damaged_log(n, errmsg);
		else
			log_error("node %s: raft storage: %s", n->node_id, errmsg);
		if (s->transport != NULL)
			transport_free_unused(s->transport);
		session_free(s);
		return -EIO;
	}
	rv = node_storage_attach(n, &s->io, errmsg, sizeof errmsg);
	if (rv != 0) {
		log_error("node %s: raft storage: %s", n->node_id, errmsg);
		s->io.close(&s->io, on_io_closed_after_failed_init);
		return -EIO;
	}
	fsm_init(&s->fsm, s->store, n->barrier, on_fsm_fatal, n);
	s->fsm.on_change = on_fsm_change;
	s->fsm.on_timed = node_metrics_fsm_timed;
	s->fsm.on_snapshot_sized = on_snapshot_sized;
	s->fsm.keys = node_keys_fsm();
	rv = raft_init(&s->raft, &s->io, &s->fsm.raft, n->raft_id, n->raft_address);
	if (rv != 0) {
		log_error("node %s: raft_init: %s", n->node_id, raft_strerror(rv));
		s->io.close(&s->io, on_io_closed_after_failed_init);
		return -EIO;
	}
	s->raft.data = s;
	raftio_set_inline(&s->io, follower_appends_inline, s);
	raft_set_election_timeout(&s->raft, n->cfg.election_timeout_ms);
	raft_set_heartbeat_timeout(&s->raft, n->cfg.heartbeat_interval_ms);
	raft_set_snapshot_trailing(&s->raft, n->cfg.trailing_logs);
	raft_set_pre_vote(&s->raft, true);
	session_size_snapshots(n, s);
	*ret = s;
	return 0;
}

/* The node's handles live inside it: it is freed after the last close. */
void node_handle_closed(uv_handle_t *h)
{
	node_handle_released(h->data);
}

void node_handle_released(struct node *n)
{
	if (--n->handles_open > 0)
		return;
	void (*cb)(void *) = n->stop_cb;
	void *arg = n->stop_arg;
	node_free(n);
	if (cb != NULL)
		cb(arg);
}

static void node_finish_stop(struct node *n)
{
	/* Whatever is still waiting gets its answer before the node goes
	 * (writes waiting to be visible first: they are write ops in flight). */
	coherence_fail_waiters(n->coherence, -ESHUTDOWN);
	node_ops_fail_all(n, -ESHUTDOWN);
	node_cluster_fail_apply_waiters(n, -ESHUTDOWN);
	node_keys_fail_all(n, -ESHUTDOWN);
	node_ops_free_finished(n);
	n->handles_open = 3;
	n->handles_open += node_cluster_close(n);
	n->handles_open += node_join_close(n);
	n->handles_open += node_watch_close(n);
	n->handles_open += node_trust_close(n);
	n->handles_open += node_keys_close(n);
	n->handles_open += node_storage_close(n);
	n->handles_open += node_metrics_close(n);
	n->handles_open += node_autopilot_close(n);
	n->handles_open += node_snapshot_close(n);
	n->handles_open += node_backup_close(n);
	uv_close((uv_handle_t *)&n->fatal_timer, node_handle_closed);
	uv_close((uv_handle_t *)&n->shares_timer, node_handle_closed);
	uv_close((uv_handle_t *)&n->ready_timer, node_handle_closed);
}

static void reply_seal_waiter(void *arg, int status)
{
	struct node *n = arg;
	struct api_request *req = n->seal_waiter;
	n->seal_waiter = NULL;
	if (req != NULL && status == 0 && n->rejoin_addr != NULL) {
		node_join_rejoin_sealed(n, req); /* the seal was a rejoin's first step */
		return;
	}
	free(n->rejoin_addr); /* a rejoin whose seal failed does not happen later */
	n->rejoin_addr = NULL;
	if (req != NULL)
		api_reply(req, status, NULL, 0);
}

static void on_session_closed(struct raft *r)
{
	struct raft_session *s = r->data;
	struct node *n = s->node;
	session_free(s);
	if (n->session == s)
		n->session = NULL;
	barrier_seal(n->barrier);
	n->phase = NODE_SEALED;
	log_info("node %s: sealed", n->node_id);
	/* Sealed means no mount of ours shows a value any more: what they
	 * hold was dropped at seal_begin, and their grants must have run out
	 * too (kernel caches cannot all be dropped at once). */
	if (n->seal_waiter != NULL && !n->stopping)
		coherence_wait_grants_gone(n->coherence, reply_seal_waiter, n);
	if (n->stopping)
		node_finish_stop(n);
}

/* Called with the barrier unsealed. On failure the barrier is sealed again
 * if SEAL_ON_FAILURE. */
static int start_raft(struct node *n, bool seal_on_failure)
{
	struct raft_session *s = NULL;
	assert(n->session == NULL); /* on_snapshot_sized: no other session */
	int rv = node_restore_is_pending(n) ? node_restore_unseal(n) : 0;
	if (rv == 0)
		rv = node_trust_identity(n, false);
	if (rv == 0)
		rv = session_open(n, true, &s);
	if (rv == 0) {
		if (n->recover_pending)
			rv = node_recover_apply(n, s);
		if (rv == 0)
			rv = raft_start(&s->raft);
		if (rv != 0) {
			if (rv == RAFT_CORRUPT)
				log_damaged_log(n, raft_errmsg(&s->raft));
			else
				log_error("node %s: raft_start: %s (%s)", n->node_id,
					  raft_strerror(rv), raft_errmsg(&s->raft));
			n->session = s;
			n->phase = NODE_CLOSING;
			raft_close(&s->raft, on_session_closed);
			return -EIO;
		}
	}
	if (rv != 0) {
		if (seal_on_failure)
			barrier_seal(n->barrier);
		return rv;
	}
	n->session = s;
	session_size_snapshots(n, s); /* raft_start restored its snapshot */
	n->pushed_commit = 0;
	n->lease_renew = false;
	n->pushed_at = 0;
	n->push_follower = 0;
	n->phase = NODE_STARTING;
	coherence_session_start(n->coherence);
	node_safe_changed(n, NULL); /* the state it starts from */
	node_trust_session_start(n);
	node_keys_session_start(n);
	node_storage_session_started(n);
	ready_poll_start(n);
	return 0;
}

int node_unseal_start_raft(struct node *n)
{
	return start_raft(n, true);
}

int node_restart_raft(struct node *n)
{
	assert(barrier_is_unsealed(n->barrier) && n->session == NULL);
	return start_raft(n, false);
}

static void close_session(struct node *n)
{
	raft_close(&n->session->raft, on_session_closed);
}

static void on_session_closed_keep_keys(struct raft *r)
{
	struct raft_session *s = r->data;
	struct node *n = s->node;
	if (n->stopping || n->seal_waiter != NULL) {
		on_session_closed(r); /* asked for meanwhile */
		return;
	}
	session_free(s);
	if (n->session == s)
		n->session = NULL;
	n->phase = NODE_STARTING;
	node_storage_session_closed(n);
}

static void close_session_keep_keys(struct node *n)
{
	raft_close(&n->session->raft, on_session_closed_keep_keys);
}

/* What is waiting is answered with STATUS, and the mounts drop what they
 * hold: the node serves nothing until a new session starts. */
static void stop_serving(struct node *n, int status)
{
	n->phase = NODE_CLOSING;
	node_backup_session_closing(n);
	node_watch_changed(n, NULL);
	node_safe_fail_all(n, status);
	node_ops_fail_all(n, status);
	node_cluster_fail_apply_waiters(n, status);
	node_keys_fail_all(n, status);
	node_rekey_forget(n);
}

void node_close_raft_keep_keys(struct node *n, int status)
{
	assert(n->session != NULL && n->phase != NODE_CLOSING);
	uv_timer_stop(&n->ready_timer);
	reply_unseal_waiter(n, status);
	stop_serving(n, status);
	node_transfer_hand_over_then(n, close_session_keep_keys);
}

void node_seal_begin(struct node *n)
{
	uv_timer_stop(&n->ready_timer);
	reply_unseal_waiter(n, -ENOKEY);
	if (n->session == NULL) {
		barrier_seal(n->barrier);
		n->phase = NODE_SEALED;
		return;
	}
	if (n->phase == NODE_CLOSING)
		return;
	stop_serving(n, -ENOKEY);
	node_transfer_hand_over_then(n, close_session);
}

void node_stop(struct node *n, void (*cb)(void *arg), void *arg)
{
	n->stopping = true;
	n->stop_cb = cb;
	n->stop_arg = arg;
	if (n->seal_waiter != NULL) {
		api_reply(n->seal_waiter, -ESHUTDOWN, NULL, 0);
		n->seal_waiter = NULL;
	}
	free(n->rejoin_addr);
	n->rejoin_addr = NULL;
	node_seal_begin(n);
	if (n->session == NULL)
		node_finish_stop(n); /* nothing asynchronous to wait for */
}

void node_handle_request(void *ctx, struct api_request *req)
{
	struct node *n = ctx;
	if (!node_audit_request(n, req))
		return;
	switch (req->op) {
	case VFS_OP_CTL_READ:
		node_ctl_read(n, req);
		return;
	case VFS_OP_CTL_WRITE:
		node_ctl_write(n, req);
		return;
	case VFS_OP_CTL_OPEN:
	case VFS_OP_CTL_PREAD:
	case VFS_OP_CTL_PWRITE:
	case VFS_OP_CTL_FINISH:
	case VFS_OP_CTL_CLOSE:
		node_snapshot_request(n, req);
		return;
	case VFS_OP_WRITABLE:
		node_ops_writable(n, req);
		return;
	default:
		break;
	}
	if (node_ops_is_write(req->op))
		node_ops_write(n, req);
	else
		node_ops_read(n, req);
}

/* ---- Bootstrap at init: this node alone is the cluster's first voter. ---- */

static void on_bootstrap_session_closed(struct raft *r)
{
	session_free(r->data);
}

int node_bootstrap_raft(struct node *n)
{
	struct raft_session *s = NULL;
	int rv = session_open(n, false, &s);
	if (rv != 0)
		return rv;
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	rv = raft_configuration_add(&conf, n->raft_id, n->raft_address, RAFT_VOTER);
	if (rv == 0)
		rv = raft_bootstrap(&s->raft, &conf);
	if (rv != 0 && rv != RAFT_CANTBOOTSTRAP)
		log_error("node %s: raft_bootstrap: %s (%s)", n->node_id, raft_strerror(rv),
			  raft_errmsg(&s->raft));
	raft_configuration_close(&conf);
	raft_close(&s->raft, on_bootstrap_session_closed);
	return rv == 0 ? 0 : rv == RAFT_CANTBOOTSTRAP ? -EEXIST : -EIO;
}
