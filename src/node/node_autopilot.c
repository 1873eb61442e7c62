/* Autopilot, conservative (autopilot { server_stabilization_time,
 * dead_server_cleanup_threshold, min_quorum }), run by whichever node
 * leads:
 *
 * - A joining node is added as a standby (it gets the log, but does not
 *   count for a quorum: node_rpc.c) and made a voter only once the leader
 *   has seen it caught up and heard from it, without a break, for
 *   server_stabilization_time. A node that joins and then dies, or cannot
 *   keep up, never becomes a voter, so it never raises the quorum the
 *   others must reach. A new leader goes on where the old one stopped: it
 *   promotes every standby of the configuration, whoever added it, after
 *   watching it for the whole stabilization time itself. A spare (a join
 *   whose leader was lost between adding it and giving it the log) is made
 *   a standby.
 * - With dead_server_cleanup_threshold set, the leader removes a server it
 *   has not heard from for the threshold, as remove-peer would (the
 *   keyring rotates): a voter only while more than min_quorum voters are
 *   left, a non-voter always (it counts for no quorum). One removal at a
 *   time. A member down for maintenance longer than the threshold has to
 *   join again. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "raft/libraft_private.h"
#include "raft/raftio.h"

#define AUTOPILOT_EVERY_MS 200u
/* A standby this many entries behind the leader's last one counts as
 * caught up: under a steady write load a healthy follower is always a few
 * round trips' worth of entries behind. libraft's own catch-up rounds
 * close the rest when the promotion is asked for. */
#define CAUGHT_UP_MAX_LAG 256u

/* A standby the leader watches: stable since STABLE_SINCE (uv_now), 0 while
 * it is not. */
struct watched {
	raft_id id;
	uint64_t stable_since;
};

/* When this leader first saw a server of its configuration (uv_now). */
struct seen {
	raft_id id;
	uint64_t since;
};

struct node_autopilot {
	uv_timer_t timer;
	struct seen *seen;
	unsigned n_seen;
	uint64_t leader_term; /* the term this node leads in, 0: not leading */
	uint64_t leader_since; /* uv_now when it began */
	bool removing;
	bool changing; /* a promotion (raft_assign) in flight */
	struct watched *watched;
	unsigned n_watched;
};

/* A promotion in flight; its own allocation, as libraft holds it until the
 * change ends, possibly after leadership (or the session) ended. */
struct promotion {
	struct raft_change change;
	struct node *node;
	raft_id id;
	int role;
};

static void on_removed(struct node *n, int status)
{
	n->autopilot->removing = false;
	if (status != 0)
		log_warn("node %s: autopilot: the removal failed: %s (trying again)", n->node_id,
			 strerror(-status));
}

/* When this leader first saw server ID in its configuration (now, if
 * this is the first time); 0 if out of memory (counts as now). */
static uint64_t seen_since(struct node_autopilot *ap, raft_id id, uint64_t now)
{
	for (unsigned i = 0; i < ap->n_seen; i++)
		if (ap->seen[i].id == id)
			return ap->seen[i].since;
	struct seen *s = realloc(ap->seen, (ap->n_seen + 1) * sizeof(*s));
	if (s == NULL)
		return now;
	ap->seen = s;
	ap->seen[ap->n_seen++] = (struct seen){ id, now };
	return now;
}

/* Forgets the servers that left R's configuration (one that comes back is
 * new again). */
static void seen_prune(struct node_autopilot *ap, const struct raft *r)
{
	unsigned kept = 0;
	for (unsigned i = 0; i < ap->n_seen; i++)
		if (node_query_config_find(r, ap->seen[i].id) != NULL)
			ap->seen[kept++] = ap->seen[i];
	ap->n_seen = kept;
}

/* How long the leader has not heard from SRV: since its last message, or,
 * if none came while this node led and the server was in its
 * configuration, since the later of the two began. A joiner just added has
 * not been silent for the whole leadership. */
static uint64_t silent_ms(struct node *n, const struct raft_server *srv, uint64_t now)
{
	struct node_autopilot *ap = n->autopilot;
	uint64_t from = seen_since(ap, srv->id, now);
	if (from < ap->leader_since)
		from = ap->leader_since;
	uint64_t known = now - from, ago;
	if (!raftio_last_heard(&n->session->io, srv->id, &ago) || ago > known)
		ago = known;
	return ago;
}

static void check_dead(struct node *n)
{
	struct node_autopilot *ap = n->autopilot;
	struct raft *r = &n->session->raft;
	uint64_t now = uv_now(n->loop);
	unsigned voters = node_query_voter_count(r);
	seen_prune(ap, r);
	for (unsigned i = 0; i < r->configuration.n && !ap->removing; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		if (srv->id == r->id)
			continue;
		bool voter = srv->role == RAFT_VOTER;
		uint64_t silent = silent_ms(n, srv, now);
		if (silent < n->cfg.dead_server_cleanup_ms || (voter && voters <= n->cfg.min_quorum))
			continue;
		log_warn("node %s: autopilot: removing %s%s, silent for %" PRIu64
			 " ms (dead_server_cleanup_threshold), leaving %u voters",
			 n->node_id, voter ? "" : "non-voter ", srv->address, silent,
			 voter ? voters - 1 : voters);
		ap->removing = true;
		node_rpc_remove_dead(n, srv->id, on_removed);
	}
}

/* ---- Promotion of stable standbys ---- */

static void on_promoted(struct raft_change *req, int status)
{
	struct promotion *p = (struct promotion *)req;
	struct node *n = p->node;
	const struct raft_server *srv =
		n->session != NULL ? node_query_config_find(&n->session->raft, p->id) : NULL;
	const char *who = srv != NULL ? srv->address : "the server";
	n->autopilot->changing = false;
	if (status != 0)
		log_warn("node %s: autopilot: making %s a %s failed: %s (trying again)", n->node_id,
			 who, p->role == RAFT_VOTER ? "voter" : "standby", raft_strerror(status));
	else if (p->role == RAFT_VOTER)
		log_info("node %s: autopilot: %s is a voter now", n->node_id, who);
	free(p);
}

/* Leader: asks libraft to give server ID ROLE; one change at a time. */
static void assign(struct node *n, raft_id id, int role)
{
	struct node_autopilot *ap = n->autopilot;
	struct promotion *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return; /* the next tick tries again */
	p->node = n;
	p->id = id;
	p->role = role;
	int rv = raft_assign(&n->session->raft, &p->change, id, role, on_promoted);
	if (rv != 0) {
		/* RAFT_CANTCHANGE: a join or a removal is under way; the
		 * next tick tries again. */
		if (rv != RAFT_CANTCHANGE)
			log_warn("node %s: autopilot: raft_assign: %s", n->node_id,
				 raft_strerror(rv));
		free(p);
		return;
	}
	ap->changing = true;
}

static struct watched *watched_find(struct node_autopilot *ap, raft_id id)
{
	for (unsigned i = 0; i < ap->n_watched; i++)
		if (ap->watched[i].id == id)
			return &ap->watched[i];
	struct watched *w = realloc(ap->watched, (ap->n_watched + 1) * sizeof(*w));
	if (w == NULL)
		return NULL;
	ap->watched = w;
	w = &ap->watched[ap->n_watched++];
	w->id = id;
	w->stable_since = 0;
	return w;
}

/* Forgets the servers that are no longer standbys of R's configuration. */
static void watched_prune(struct node_autopilot *ap, const struct raft *r)
{
	unsigned kept = 0;
	for (unsigned i = 0; i < ap->n_watched; i++) {
		const struct raft_server *srv = node_query_config_find(r, ap->watched[i].id);
		if (srv != NULL && srv->role == RAFT_STANDBY)
			ap->watched[kept++] = ap->watched[i];
	}
	ap->n_watched = kept;
}

/* Caught up (within CAUGHT_UP_MAX_LAG of our last entry) and heard from
 * within an election timeout: what a voter must be to help, not hinder,
 * a quorum. Heard from while this node leads, too: a new leader's match
 * indexes start at 0, and a short log would make a dead server look caught
 * up. */
static bool is_stable(struct node *n, const struct raft_server *srv, uint64_t now)
{
	struct raft *r = &n->session->raft;
	raft_index match = 0;
	uint64_t ago;
	if (!libraft_private_match_index(r, srv->id, &match) || match == 0 ||
	    !raftio_last_heard(&n->session->io, srv->id, &ago))
		return false;
	raft_index last = raft_last_index(r);
	return match + CAUGHT_UP_MAX_LAG >= last && ago <= n->cfg.election_timeout_ms &&
	       ago <= now - n->autopilot->leader_since;
}

/* Watches one standby; true if it asked for a change. */
static bool check_standby(struct node *n, const struct raft_server *srv, uint64_t now)
{
	struct watched *w = watched_find(n->autopilot, srv->id);
	if (w == NULL)
		return false;
	if (!is_stable(n, srv, now)) {
		if (w->stable_since != 0)
			log_info("node %s: autopilot: %s fell behind or went silent; its "
				 "server_stabilization_time starts again once it is back",
				 n->node_id, srv->address);
		w->stable_since = 0;
		return false;
	}
	if (w->stable_since == 0) {
		w->stable_since = now;
		log_info("node %s: autopilot: %s is caught up; a voter after %" PRIu64
			 " ms more of that (server_stabilization_time)",
			 n->node_id, srv->address, n->cfg.server_stabilization_ms);
	}
	if (now - w->stable_since < n->cfg.server_stabilization_ms)
		return false;
	log_info("node %s: autopilot: making %s a voter: caught up and heard from for %" PRIu64
		 " ms",
		 n->node_id, srv->address, now - w->stable_since);
	assign(n, srv->id, RAFT_VOTER);
	return true;
}

static void check_non_voters(struct node *n)
{
	struct node_autopilot *ap = n->autopilot;
	struct raft *r = &n->session->raft;
	uint64_t now = uv_now(n->loop);
	watched_prune(ap, r);
	for (unsigned i = 0; i < r->configuration.n && !ap->changing; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		if (srv->id == r->id || srv->role == RAFT_VOTER)
			continue;
		if (srv->role == RAFT_SPARE)
			assign(n, srv->id, RAFT_STANDBY);
		else
			check_standby(n, srv, now);
	}
}

static void on_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_autopilot *ap = n->autopilot;
	bool leading = n->phase == NODE_ACTIVE && node_query_is_leader(n);
	uint64_t term = leading ? n->session->raft.current_term : 0;
	if (term != ap->leader_term) {
		ap->leader_term = term;
		ap->leader_since = uv_now(n->loop);
		/* A new leader watches each standby for the whole time itself,
		 * and counts silences from what it saw itself. */
		ap->n_watched = 0;
		ap->n_seen = 0;
	}
	if (!leading)
		return;
	node_features_tick(n);
	if (!ap->changing)
		check_non_voters(n);
	if (n->cfg.dead_server_cleanup_ms > 0 && !ap->removing)
		check_dead(n);
}

int node_autopilot_init(struct node *n)
{
	n->autopilot = calloc(1, sizeof(*n->autopilot));
	return n->autopilot != NULL ? 0 : -ENOMEM;
}

void node_autopilot_open(struct node *n)
{
	struct node_autopilot *ap = n->autopilot;
	uv_timer_init(n->loop, &ap->timer);
	ap->timer.data = n;
	uv_timer_start(&ap->timer, on_timer, AUTOPILOT_EVERY_MS, AUTOPILOT_EVERY_MS);
}

int node_autopilot_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->autopilot->timer, node_handle_closed);
	return 1;
}

void node_autopilot_free(struct node *n)
{
	if (n->autopilot != NULL) { /* NULL: node_start failed before init */
		free(n->autopilot->watched);
		free(n->autopilot->seen);
	}
	free(n->autopilot);
	n->autopilot = NULL;
}
