/* .vault/metrics: this node's own figures in Prometheus's text format
 * (version 0.0.4), and the same text written to a file for
 * node_exporter's textfile collector (telemetry { prometheus_textfile }).
 *
 * Every figure is this node's: a follower reports its own term, indexes,
 * latencies and requests, never the leader's. Counters count from the
 * daemon's start. Gauges are read when the text is made; counters and
 * histograms are fed by the files that see the events (node_storage.c:
 * log writes; the fsm: applies and snapshots; the API server: requests and
 * clients; node_ops.c: forwarded writes). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/fileutil.h"
#include "lib/histogram.h"
#include "lib/log.h"
#include "node/internal.h"
#include "raft/libraft_private.h"
#include "raft/raftaddr.h"
#include "vaultfs/proto.h"

/* Request results are counted per errno up to this (Linux's are < 134). */
#define METRICS_ERRNO_MAX 134

enum metrics_kind { KIND_READ, KIND_WRITE, KIND_CONTROL, KIND_OTHER, KIND_N };

static const char *const metrics_kind_names[KIND_N] = { "read", "write", "control", "other" };

struct node_metrics {
	uint64_t requests[VFS_OP_MAX_][METRICS_ERRNO_MAX + 1]; /* [op][errno]; 0: ok */
	struct histogram request_seconds[KIND_N];
	uint64_t forwarded;
	struct histogram log_write, apply, snapshot;
	unsigned clients;
	uint64_t leader_changes;
	raft_id leader_id; /* the leader last seen, and in which term */
	uint64_t leader_term;
	uv_check_t check;  /* watches for leader changes after each loop turn */
	uv_timer_t timer;  /* writes the textfile */
	char *textfile;    /* NULL: none */
	bool textfile_failed; /* the last write failed (logged once) */
};

static enum metrics_kind kind_of(uint16_t op)
{
	switch (op) {
	case VFS_OP_LOOKUP:
	case VFS_OP_LOOKUP_WRITABLE:
	case VFS_OP_GETATTR:
	case VFS_OP_READDIR:
	case VFS_OP_READDIRPLUS:
	case VFS_OP_READ:
	case VFS_OP_STATFS:
		return KIND_READ;
	case VFS_OP_CTL_READ:
	case VFS_OP_CTL_WRITE:
	case VFS_OP_CTL_OPEN:
	case VFS_OP_CTL_PREAD:
	case VFS_OP_CTL_PWRITE:
	case VFS_OP_CTL_FINISH:
	case VFS_OP_CTL_CLOSE:
		return KIND_CONTROL;
	default:
		return node_ops_is_write(op) ? KIND_WRITE : KIND_OTHER;
	}
}

/* ---- Events ---- */

static void observe_request(void *ctx, uint16_t op, int status, uint64_t ns)
{
	struct node_metrics *m = ((struct node *)ctx)->metrics;
	int e = -status;
	if (op >= VFS_OP_MAX_)
		return;
	m->requests[op][e >= 0 && e <= METRICS_ERRNO_MAX ? e : METRICS_ERRNO_MAX]++;
	histogram_observe(&m->request_seconds[kind_of(op)], ns);
}

static void observe_clients(void *ctx, unsigned n)
{
	((struct node *)ctx)->metrics->clients = n;
}

static const struct api_observer metrics_observer = {
	.request_done = observe_request,
	.clients = observe_clients,
};

const struct api_observer *node_metrics_observer_for_api(void)
{
	return &metrics_observer;
}

void node_metrics_forwarded(struct node *n)
{
	n->metrics->forwarded++;
}

void node_metrics_log_write(struct node *n, uint64_t ns)
{
	histogram_observe(&n->metrics->log_write, ns);
}

void node_metrics_fsm_timed(void *arg, enum fsm_timed what, uint64_t ns)
{
	struct node_metrics *m = ((struct node *)arg)->metrics;
	histogram_observe(what == FSM_TIMED_APPLY ? &m->apply : &m->snapshot, ns);
}

static void on_check(uv_check_t *h)
{
	struct node *n = h->data;
	struct node_metrics *m = n->metrics;
	if (n->session == NULL || n->phase == NODE_CLOSING)
		return;
	raft_id id;
	const char *address;
	raft_leader(&n->session->raft, &id, &address);
	uint64_t term = n->session->raft.current_term;
	if (id == 0 || (id == m->leader_id && term == m->leader_term))
		return;
	m->leader_changes++;
	m->leader_id = id;
	m->leader_term = term;
}

/* ---- The text ---- */

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
	buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(struct buf *b, const char *name, const char *help, uint64_t v)
{
	family(b, name, "gauge", help);
	buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void seal_metrics(struct node *n, struct buf *b)
{
	gauge(b, "vaultfs_initialized", "1 once this node was initialised or joined.",
	      n->initialized);
	gauge(b, "vaultfs_sealed", "1 while this node is sealed.",
	      !barrier_is_unsealed(n->barrier));
	gauge(b, "vaultfs_unseal_progress", "Unseal key shares given so far.",
	      n->unsealer != NULL ? unsealer_count(n->unsealer) : 0);
	gauge(b, "vaultfs_unseal_threshold", "Unseal key shares needed.", n->threshold);
	char when[NODE_KEYS_TIME_LEN];
	gauge(b, "vaultfs_key_term", "The newest keyring term (0 while sealed).",
	      node_keys_status(n, when));
	gauge(b, "vaultfs_clients_connected",
	      "Processes (mounts) connected to the local API socket.", n->metrics->clients);
}

/* Leader: each other server's match index. */
static void peer_metrics(struct raft *r, struct buf *b)
{
	family(b, "vaultfs_raft_peer_match_index", "gauge",
	       "Leader only: the highest log index each other server has stored.");
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *s = &r->configuration.servers[i];
		raft_index match;
		if (s->id == r->id || !libraft_private_match_index(r, s->id, &match))
			continue;
		const char *name, *hostport;
		size_t name_len, hostport_len;
		raftaddr_show(s->address, &name, &name_len, &hostport, &hostport_len);
		buf_printf(b, "vaultfs_raft_peer_match_index{peer=\"%.*s\"} %" PRIu64 "\n", (int)name_len,
		    name, (uint64_t)match);
	}
}

static void raft_metrics(struct node *n, struct buf *b)
{
	bool running = n->session != NULL && n->phase != NODE_CLOSING;
	struct raft *r = running ? &n->session->raft : NULL;
	bool leader = r != NULL && raft_state(r) == RAFT_LEADER;
	gauge(b, "vaultfs_raft_term", "Current Raft term (0 while sealed).",
	      r != NULL ? r->current_term : 0);
	gauge(b, "vaultfs_raft_commit_index", "Highest log index known committed.",
	      r != NULL ? r->commit_index : 0);
	gauge(b, "vaultfs_raft_applied_index", "Highest log index applied here.",
	      r != NULL ? raft_last_applied(r) : 0);
	gauge(b, "vaultfs_raft_is_leader", "1 while this node leads.", leader);
	gauge(b, "vaultfs_raft_voters", "Voters in this node's configuration.",
	      r != NULL ? node_query_voter_count(r) : 0);
	family(b, "vaultfs_raft_leader_changes_total", "counter",
	       "New leaders (or terms) this node has seen since it started.");
	buf_printf(b, "vaultfs_raft_leader_changes_total %" PRIu64 "\n", n->metrics->leader_changes);
	if (r != NULL && (leader || raft_state(r) == RAFT_FOLLOWER))
		gauge(b, "vaultfs_raft_leader_last_contact_ms",
		      "Milliseconds since this follower last heard from its leader (0 on the "
		      "leader; absent while a candidate or sealed).",
		      leader ? 0 : libraft_private_ms_since_leader(r));
	uint64_t entries = 0, bytes = 0;
	if (r != NULL)
		libraft_private_log_stats(r, &entries, &bytes);
	gauge(b, "vaultfs_raft_log_entries", "Entries in this node's Raft log.", entries);
	gauge(b, "vaultfs_raft_log_bytes", "Payload bytes of those entries.", bytes);
	if (leader)
		peer_metrics(r, b);
}

static void histogram_family(struct buf *b, const char *name, const char *help,
			     const struct histogram *h)
{
	family(b, name, "histogram", help);
	histogram_write(h, name, "", b);
}

static void request_metrics(const struct node_metrics *m, struct buf *b)
{
	family(b, "vaultfs_requests_total", "counter",
	       "Requests answered, by operation and result (ok or the errno's name).");
	for (uint16_t op = 1; op < VFS_OP_MAX_; op++) {
		for (int e = 0; e <= METRICS_ERRNO_MAX; e++) {
			if (m->requests[op][e] == 0)
				continue;
			const char *name = e == 0 ? "ok" : strerrorname_np(e);
			buf_printf(b, "vaultfs_requests_total{op=\"%s\",result=\"%s\"} %" PRIu64 "\n",
			    vfs_op_name(op), name != NULL ? name : "other", m->requests[op][e]);
		}
	}
	family(b, "vaultfs_request_seconds", "histogram",
	       "Time from a request's arrival to its answer, by kind.");
	for (unsigned k = 0; k < KIND_N; k++) {
		char labels[32];
		snprintf(labels, sizeof(labels), "kind=\"%s\"", metrics_kind_names[k]);
		histogram_write(&m->request_seconds[k], "vaultfs_request_seconds", labels, b);
	}
	family(b, "vaultfs_forwarded_requests_total", "counter",
	       "Writes this node sent to the leader (retries included).");
	buf_printf(b, "vaultfs_forwarded_requests_total %" PRIu64 "\n", m->forwarded);
}

void node_metrics_text(struct node *n, struct buf *out)
{
	const struct node_metrics *m = n->metrics;
	seal_metrics(n, out);
	raft_metrics(n, out);
	request_metrics(m, out);
	histogram_family(out, "vaultfs_raft_log_write_seconds",
			 "Transactions that stored Raft log entries (their fsync, mostly).",
			 &m->log_write);
	histogram_family(out, "vaultfs_fsm_apply_seconds",
			 "Committed commands decrypted and applied to the store.", &m->apply);
	histogram_family(out, "vaultfs_snapshot_seconds",
			 "Raft snapshots: how long each held the node, the state copied (count: how many).",
			 &m->snapshot);
}

/* ---- The textfile ---- */

/* Written whole and renamed into place (file_write_atomic), so the
 * collector never reads half a file. */
static void on_textfile_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_metrics *m = n->metrics;
	struct buf b;
	buf_init(&b);
	node_metrics_text(n, &b);
	int rv = b.err != 0 ? b.err : file_write_atomic(m->textfile, b.data, b.len, 0644);
	buf_free(&b);
	if (rv != 0 && !m->textfile_failed)
		log_warn("node %s: cannot write the metrics to %s: %s (trying again every %u ms)",
			 n->node_id, m->textfile, strerror(-rv), n->cfg.metrics_interval_ms);
	else if (rv == 0 && m->textfile_failed)
		log_info("node %s: metrics written to %s again", n->node_id, m->textfile);
	m->textfile_failed = rv != 0;
}

/* ---- Life cycle ---- */

int node_metrics_init(struct node *n)
{
	n->metrics = calloc(1, sizeof(*n->metrics));
	if (n->metrics == NULL)
		return -ENOMEM;
	if (n->cfg.metrics_textfile != NULL &&
	    (n->metrics->textfile = strdup(n->cfg.metrics_textfile)) == NULL) {
		free(n->metrics);
		n->metrics = NULL;
		return -ENOMEM;
	}
	return 0;
}

void node_metrics_open(struct node *n)
{
	struct node_metrics *m = n->metrics;
	uv_check_init(n->loop, &m->check);
	m->check.data = n;
	uv_check_start(&m->check, on_check);
	uv_timer_init(n->loop, &m->timer);
	m->timer.data = n;
	if (m->textfile != NULL) {
		assert(n->cfg.metrics_interval_ms > 0);
		uv_timer_start(&m->timer, on_textfile_timer, 0, n->cfg.metrics_interval_ms);
	}
}

int node_metrics_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->metrics->check, node_handle_closed);
	uv_close((uv_handle_t *)&n->metrics->timer, node_handle_closed);
	return 2;
}

void node_metrics_free(struct node *n)
{
	if (n->metrics != NULL)
		free(n->metrics->textfile);
	free(n->metrics);
	n->metrics = NULL;
}
