/* The cluster's feature level (cmd.h), raised by the leader once every
 * member runs a release that applies what the new level allows, and the
 * joins that level then refuses.
 *
 * A node of an earlier release stops at the first log entry it cannot
 * decode (fsm.c). So the leader asks every server in the configuration
 * for the level it knows (NODE_RPC_FEATURES; a previous release answers
 * no such question with an error) and proposes CMD_FEATURES only when
 * all of them know it, the configuration is unchanged and it still leads
 * in the same term. While that runs, and once the level is raised, no
 * node that does not know the level joins: a JOIN's RPC version says what
 * its sender knows (NODE_RPC_VERSION_FEATURES), and a relay keeps the
 * joiner's version (node_rpc.c). A level is never lowered: there is no
 * downgrade to a release that cannot read the log. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "node/internal.h"

/* How often a leader below the current level asks again. */
#define FEATURES_EVERY_MS 1000u
#define FEATURES_MAX_SERVERS 64u

struct features_round {
	struct node *node;
	uint64_t term;
	unsigned n_ids;
	raft_id ids[FEATURES_MAX_SERVERS]; /* the configuration asked */
	unsigned pending;                  /* RPCs not answered yet */
	bool short_of_it;                  /* a server answered no, or nothing */
};

struct features_raise {
	struct raft_apply apply;
	struct node *node;
};

struct node_features {
	struct features_round *round; /* in flight, or NULL */
	bool raising;                 /* CMD_FEATURES proposed, not applied */
	uint64_t asked_at;            /* uv_now of the last round's start */
	uint64_t refused_at;          /* uv_now of the last refusal logged */
};

int node_features_init(struct node *n)
{
	n->features = calloc(1, sizeof(*n->features));
	return n->features != NULL ? 0 : -ENOMEM;
}

void node_features_free(struct node *n)
{
	/* A round in flight is freed by its last reply (the transport fails
	 * every RPC as it closes), which then finds no node_features. */
	if (n->features != NULL && n->features->round != NULL)
		n->features->round->node = NULL;
	free(n->features);
	n->features = NULL;
}

uint32_t node_features_level(struct node *n)
{
	return n->session != NULL ? store_features(n->session->store) : CMD_FEATURES_BASE;
}

void node_features_serve(struct node *n, struct transport_rpc_req *rpc)
{
	struct buf out;
	buf_init(&out);
	buf_put_u32(&out, CMD_FEATURES_CURRENT);
	(void)n;
	transport_rpc_reply(rpc, out.err, out.data, out.len);
	buf_free(&out);
}

static bool same_configuration(const struct raft *r, const struct features_round *round)
{
	if (r->configuration.n != round->n_ids || r->configuration_uncommitted_index != 0)
		return false;
	for (unsigned i = 0; i < round->n_ids; i++)
		if (node_query_config_find(r, round->ids[i]) == NULL)
			return false;
	return true;
}

static void on_raised(struct raft_apply *apply, int status, void *result)
{
	struct features_raise *raise = (struct features_raise *)apply;
	struct node *n = raise->node;
	(void)result;
	free(raise);
	if (n->features == NULL)
		return;
	n->features->raising = false;
	if (status == 0)
		log_info("node %s: every member runs a release that knows feature level %u: "
			 "the cluster is at that level now",
			 n->node_id, (unsigned)node_features_level(n));
}

static void raise_level(struct node *n)
{
	struct features_raise *raise = calloc(1, sizeof(*raise));
	struct cmd cmd = { .type = CMD_FEATURES, .features = CMD_FEATURES_CURRENT };
	struct raft_buffer entry = { 0 };
	int rv = raise != NULL ? fsm_encode_entry(n->barrier, &cmd, &entry) : -ENOMEM;
	if (rv == 0) {
		raise->node = n;
		rv = node_cluster_propose(n, &raise->apply, &entry, on_raised);
	}
	if (rv != 0) {
		free(raise);
		log_warn("node %s: cannot propose feature level %u: %s", n->node_id,
			 CMD_FEATURES_CURRENT, strerror(-rv));
		return;
	}
	n->features->raising = true;
}

static void round_end(struct features_round *round)
{
	struct node *n = round->node;
	if (n != NULL && n->features != NULL) {
		n->features->round = NULL;
		if (!round->short_of_it && node_query_is_leader(n) &&
		    n->session->raft.current_term == round->term &&
		    same_configuration(&n->session->raft, round))
			raise_level(n);
	}
	free(round);
}

static void on_level(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct features_round *round = arg;
	struct cursor c;
	cursor_init(&c, resp, len);
	uint32_t level = status == 0 ? cursor_u32(&c) : 0;
	if (status != 0 || c.err != 0 || level < CMD_FEATURES_CURRENT)
		round->short_of_it = true;
	if (--round->pending == 0)
		round_end(round);
}

static void ask_members(struct node *n)
{
	const struct raft *r = &n->session->raft;
	if (r->configuration.n > FEATURES_MAX_SERVERS)
		return;
	struct features_round *round = calloc(1, sizeof(*round));
	if (round == NULL)
		return;
	round->node = n;
	round->term = r->current_term;
	round->n_ids = r->configuration.n;
	uint64_t deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	/* Held while asking, so that a reply before the loop ends cannot
	 * end the round under it. */
	round->pending = 1;
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		round->ids[i] = srv->id;
		if (srv->id == n->raft_id)
			continue;
		if (transport_rpc(n->session->transport, srv->address, NODE_RPC_FEATURES, NULL, 0,
				  node_query_attempt_timeout(n, deadline), on_level, round) == 0)
			round->pending++;
		else
			round->short_of_it = true;
	}
	n->features->round = round;
	n->features->asked_at = uv_now(n->loop);
	if (--round->pending == 0)
		round_end(round);
}

void node_features_tick(struct node *n)
{
	struct node_features *f = n->features;
	if (f->round != NULL || f->raising || !node_query_is_leader(n) ||
	    !node_query_committed_in_term(n) || node_features_level(n) >= CMD_FEATURES_CURRENT)
		return;
	uint64_t now = uv_now(n->loop);
	if (f->asked_at != 0 && now - f->asked_at < FEATURES_EVERY_MS)
		return;
	ask_members(n);
}

int node_features_admit(struct node *n, const struct transport_rpc_req *rpc, const char *address)
{
	struct node_features *f = n->features;
	/* Until this leader has applied its predecessors' entries, it may not
	 * know the level yet. */
	if (f->round != NULL || f->raising || !node_query_committed_in_term(n))
		return -EAGAIN;
	if (node_features_level(n) <= CMD_FEATURES_BASE ||
	    rpc->version >= NODE_RPC_VERSION_FEATURES)
		return 0;
	uint64_t now = uv_now(n->loop);
	if (f->refused_at == 0 || now - f->refused_at >= 10000) {
		log_warn("node %s: refusing to add %s: it runs an earlier release than this "
			 "cluster's members (feature level %u); install this release on it first",
			 n->node_id, address, (unsigned)node_features_level(n));
		f->refused_at = now;
	}
	return -EPROTONOSUPPORT;
}
