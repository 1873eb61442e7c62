/* Joining a cluster (Vault's raft join): fetch the sealed keyring from a
 * member, then, once this node is unsealed, ask the leader to add it. The
 * fetch is asked for by .vault/join, or done by retry_join: the configured
 * addresses in turn, with backoff, until one answers. Also the answer a
 * member gives to a node that fetches. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/fileutil.h"
#include "lib/log.h"
#include "node/ctl_parse.h"
#include "raft/raftaddr.h"

#define JOIN_RETRY_MS 200u
#define ADDRESS_MAX RAFTADDR_MAX
/* retry_join: the wait after a failed attempt, doubled after each round
 * through the addresses, up to the maximum. */
#define RETRY_JOIN_MIN_MS 500u
#define RETRY_JOIN_MAX_MS 5000u
/* retry_join: how long one address is tried (refused connections are
 * retried within it) before the next. */
#define RETRY_JOIN_ATTEMPT_MS 3000u

struct node_retry_join {
	char **addrs;       /* parsed like .vault/join's input */
	int *last_status;   /* per address: its last outcome logged */
	unsigned n;
	unsigned next;      /* the address of the next attempt */
	unsigned backoff_ms;
	bool active;        /* still trying (uninitialised, no manual join) */
	uv_timer_t timer;
};

/* ---- Joining: fetch the sealed keyring, then (after unseal) ask to be
 * added ---- */

static void retry_join_next(struct node *n, int status);

static void join_finish(struct node *n, int status)
{
	if (status != 0) {
		free(n->join_addr);
		n->join_addr = NULL;
	}
	if (n->join_waiter != NULL) {
		api_reply(n->join_waiter, status, NULL, 0);
		n->join_waiter = NULL;
	} else if (n->retry_join != NULL && n->retry_join->active) {
		retry_join_next(n, status);
	}
}

/* The join info: u8 shares, u8 threshold, blob sealed keyring, blob
 * leader address, then, from version 1 on, u8 version. A member of a
 * previous release answers version 0, which ends before it; one of a
 * later release answers at most the TRANSPORT_JOIN_VERSION we asked for. */
static int join_install_info(struct node *n, const uint8_t *info, size_t len)
{
	struct cursor c;
	cursor_init(&c, info, len);
	unsigned shares = cursor_u8(&c);
	unsigned threshold = cursor_u8(&c);
	size_t klen = 0, llen = 0;
	const uint8_t *keyring = cursor_blob(&c, 1024u * 1024u, &klen);
	cursor_blob(&c, ADDRESS_MAX, &llen);
	unsigned version = c.left > 0 ? cursor_u8(&c) : 0;
	if (cursor_done(&c) != 0 || version > TRANSPORT_JOIN_VERSION || threshold == 0 ||
	    threshold > shares || klen == 0)
		return -EBADMSG;
	buf_clear(&n->sealed_keyring);
	buf_put_raw(&n->sealed_keyring, keyring, klen);
	node_trust_forget_identity(n);
	n->shares = shares;
	n->threshold = threshold;
	int rv = n->sealed_keyring.err;
	if (rv == 0)
		rv = node_save_seal_file(n);
	if (rv == 0)
		rv = unsealer_new(&n->unsealer, threshold);
	if (rv == 0)
		n->initialized = true;
	return rv;
}

static void join_fetch_attempt(struct node *n);

static void on_join_retry(uv_timer_t *t)
{
	join_fetch_attempt(t->data);
}

static bool join_retryable(int status)
{
	return status == -ECONNREFUSED || status == -ETIMEDOUT || status == -EAGAIN ||
	       status == -ECONNRESET || status == -EHOSTUNREACH || status == -ENETUNREACH;
}

static void on_join_info(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct node *n = arg;
	n->join_fetch = NULL;
	if (status != 0 && join_retryable(status) && uv_now(n->loop) < n->join_deadline) {
		uv_timer_start(&n->join_timer, on_join_retry, JOIN_RETRY_MS, 0);
		return;
	}
	if (status == 0 && n->initialized)
		status = -EALREADY; /* initialised meanwhile: keep its own keyring */
	if (status == 0)
		status = join_install_info(n, resp, len);
	bool automatic = n->join_waiter == NULL && n->retry_join != NULL;
	if (status != 0 && !automatic)
		log_warn("node %s: join via %s failed: %s", n->node_id, n->join_addr,
			 strerror(-status));
	else if (status == 0)
		log_info("node %s: fetched the cluster's sealed keyring from %s; unseal this node "
			 "with the cluster's key shares to finish joining", n->node_id, n->join_addr);
	join_finish(n, status);
}

static void join_fetch_attempt(struct node *n)
{
	uint64_t now = uv_now(n->loop);
	unsigned left = n->join_deadline > now ? (unsigned)(n->join_deadline - now) : 1;
	int rv = transport_join_fetch(n->loop, n->join_addr, left, on_join_info, n, &n->join_fetch);
	if (rv != 0)
		join_finish(n, rv);
}

static void join_begin(struct node *n, struct api_request *req, const uint8_t *addr, size_t len);
static void rejoin(struct node *n, struct api_request *req, const uint8_t *addr, size_t len);

void node_join_start(struct node *n, struct api_request *req, const uint8_t *addr, size_t len)
{
	static const char word[] = "rejoin";
	if (len >= sizeof(word) - 1 && memcmp(addr, word, sizeof(word) - 1) == 0 &&
	    (len == sizeof(word) - 1 || addr[sizeof(word) - 1] == ' ' ||
	     addr[sizeof(word) - 1] == '\n')) {
		rejoin(n, req, addr + sizeof(word) - 1, len - (sizeof(word) - 1));
		return;
	}
	join_begin(n, req, addr, len);
}

static void join_begin(struct node *n, struct api_request *req, const uint8_t *addr, size_t len)
{
	char parsed[ADDRESS_MAX + 1];
	if (n->initialized) {
		api_reply(req, -EALREADY, NULL, 0);
		return;
	}
	if (n->join_waiter != NULL) {
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	node_join_stop_retry(n); /* the operator's address from now on */
	if (n->join_fetch != NULL || uv_is_active((uv_handle_t *)&n->join_timer)) {
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	if (ctl_parse_join_addr(addr, len, parsed, sizeof(parsed)) != 0) {
		log_warn("node %s: join: expected a member's cluster address, e.g. "
			 "http://127.0.0.1:8201", n->node_id);
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	free(n->join_addr);
	n->join_addr = strdup(parsed);
	if (n->join_addr == NULL) {
		api_reply(req, -ENOMEM, NULL, 0);
		return;
	}
	n->join_waiter = req;
	n->join_deadline = uv_now(n->loop) + n->cfg.request_timeout_ms;
	log_info("node %s: joining via %s", n->node_id, n->join_addr);
	join_fetch_attempt(n);
}

static void on_join_rpc(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct node *n = arg;
	(void)resp;
	(void)len;
	n->join_rpc_inflight = false;
	/* Retried every JOIN_RETRY_MS: each outcome is logged once. */
	bool news = status != n->join_rpc_status;
	n->join_rpc_status = status;
	if (status == 0)
		log_info("node %s: joined the cluster; the leader makes it a voter once it is "
			 "caught up and stable (peers shows when)", n->node_id);
	else if (status == -EEXIST && news)
		log_warn("node %s: join request to %s: the cluster has a member named %s with "
			 "another identity; write '%s' to .vault/remove-peer on a member if that "
			 "member is gone (retrying)",
			 n->node_id, n->join_addr, n->node_id, n->node_id);
	else if (status == -EKEYEXPIRED && news)
		log_warn("node %s: join request to %s: the cluster rotated its keys since this node "
			 "fetched them (or it was removed); to join, stop vaultfsd, move %s aside, "
			 "start it again, write the address to .vault/join and unseal (retrying)",
			 n->node_id, n->join_addr, n->data_dir);
	else if (status != -ESHUTDOWN && news)
		log_warn("node %s: join request to %s: %s; retrying", n->node_id, n->join_addr,
			 strerror(-status));
}

/* Called by the readiness poll of an unsealed node that is not in the
 * Raft configuration yet. */
void node_join_after_unseal(struct node *n)
{
	if (n->join_addr == NULL || n->join_rpc_inflight || n->session == NULL)
		return;
	uint64_t now = uv_now(n->loop);
	if (n->join_rpc_last != 0 && now - n->join_rpc_last < JOIN_RETRY_MS)
		return;
	node_trust_joining(n);
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, n->raft_id);
	buf_put_blob(&b, n->raft_address, strlen(n->raft_address));
	int rv = b.err != 0 ? b.err
			    : transport_rpc(n->session->transport, n->join_addr, NODE_RPC_JOIN,
					    b.data, b.len, n->cfg.request_timeout_ms, on_join_rpc, n);
	buf_free(&b);
	n->join_rpc_last = now;
	if (rv == 0)
		n->join_rpc_inflight = true;
}

const char *node_join_state_word(struct node *n)
{
	if (node_query_in_configuration(n))
		return "member";
	if (n->join_fetch != NULL || n->join_waiter != NULL ||
	    uv_is_active((uv_handle_t *)&n->join_timer))
		return "fetching"; /* or between two tries of one address */
	if (n->join_addr != NULL && n->session != NULL)
		return "joining";
	if (n->join_addr != NULL && n->initialized)
		return "unsealing";
	if (n->retry_join != NULL && n->retry_join->active)
		return "retrying";
	return "none";
}

void node_join_state(struct node *n, struct buf *out)
{
	const char *state = node_join_state_word(n);
	if (strcmp(state, "unsealing") == 0)
		state = "unseal this node to finish joining";
	buf_printf(out, "state: %s\njoin_addr: %s\n", state, n->join_addr ? n->join_addr : "");
}

/* ---- rejoin: a removed node starts over ----
 *
 * "rejoin ADDRESS" on a node the members removed: it seals, moves its data
 * directory aside (DIR.removed-TIME: nothing is deleted), and joins through
 * ADDRESS as a new node would (a new identity at its unseal). */

static void rejoin(struct node *n, struct api_request *req, const uint8_t *addr, size_t len)
{
	char parsed[ADDRESS_MAX + 1];
	while (len > 0 && (*addr == ' ' || *addr == '\t')) {
		addr++;
		len--;
	}
	if (!node_trust_removed(n)) {
		log_warn("node %s: rejoin: the members have not removed this node (status says "
			 "removed: true once they have, after an unseal); nothing changed",
			 n->node_id);
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	if (ctl_parse_join_addr(addr, len, parsed, sizeof(parsed)) != 0) {
		log_warn("node %s: rejoin: write 'rejoin ADDRESS', ADDRESS a member's cluster "
			 "address, e.g. rejoin http://10.0.0.1:8201",
			 n->node_id);
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	if (n->seal_waiter != NULL || n->join_waiter != NULL || n->rejoin_addr != NULL) {
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	n->rejoin_addr = strdup(parsed);
	if (n->rejoin_addr == NULL) {
		api_reply(req, -ENOMEM, NULL, 0);
		return;
	}
	log_info("node %s: rejoin via %s: sealing first", n->node_id, parsed);
	n->seal_waiter = req; /* node.c calls node_join_rejoin_sealed once sealed */
	node_seal_begin(n);
	if (n->phase == NODE_SEALED && n->seal_waiter == req) {
		n->seal_waiter = NULL;
		node_join_rejoin_sealed(n, req);
	}
}

/* DIR moves to DIR.removed-TIME and an empty DIR takes its place. */
static int move_data_aside(struct node *n, char *aside, size_t len)
{
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", gmtime_r(&now, &tm));
	if (snprintf(aside, len, "%s.removed-%s", n->data_dir, when) >= (int)len)
		return -ENAMETOOLONG;
	if (rename(n->data_dir, aside) != 0)
		return -errno;
	return file_mkdir_p(n->data_dir, 0700);
}

void node_join_rejoin_sealed(struct node *n, struct api_request *req)
{
	char *addr = n->rejoin_addr;
	n->rejoin_addr = NULL;
	assert(addr != NULL);
	if (n->phase != NODE_SEALED || n->session != NULL) {
		/* Unseal refuses while a rejoin waits; this is a last guard. */
		log_error("node %s: rejoin: the node is not sealed any more; nothing moved",
			  n->node_id);
		api_reply(req, -EBUSY, NULL, 0);
		free(addr);
		return;
	}
	char aside[4096];
	int rv = move_data_aside(n, aside, sizeof aside);
	if (rv != 0) {
		log_error("node %s: rejoin: cannot move %s aside: %s", n->node_id, n->data_dir,
			  strerror(-rv));
		api_reply(req, rv, NULL, 0);
		free(addr);
		return;
	}
	log_warn("node %s: rejoin: its old data is in %s; joining via %s as a new node", n->node_id,
		 aside, addr);
	/* Uninitialised again, as a fresh data directory says. */
	n->initialized = false;
	n->shares = n->threshold = 0;
	buf_clear(&n->sealed_keyring);
	unsealer_free(n->unsealer);
	n->unsealer = NULL;
	free(n->join_addr);
	n->join_addr = NULL;
	node_trust_forget_identity(n);
	node_storage_make_reserve(n);
	join_begin(n, req, (const uint8_t *)addr, strlen(addr));
	free(addr);
}

/* ---- retry_join ---- */

void node_join_stop_retry(struct node *n)
{
	struct node_retry_join *rj = n->retry_join;
	if (rj == NULL || !rj->active)
		return;
	rj->active = false;
	uv_timer_stop(&rj->timer);
	uv_timer_stop(&n->join_timer); /* a refused address's next try */
	if (n->join_fetch != NULL) {
		transport_join_cancel(n->join_fetch);
		n->join_fetch = NULL;
	}
	free(n->join_addr);
	n->join_addr = NULL;
}

static void retry_join_attempt(struct node *n)
{
	struct node_retry_join *rj = n->retry_join;
	if (!rj->active || n->initialized || n->join_fetch != NULL) {
		rj->active = rj->active && !n->initialized;
		return;
	}
	free(n->join_addr);
	n->join_addr = strdup(rj->addrs[rj->next]);
	if (n->join_addr == NULL) {
		retry_join_next(n, -ENOMEM);
		return;
	}
	n->join_deadline = uv_now(n->loop) + RETRY_JOIN_ATTEMPT_MS;
	join_fetch_attempt(n);
}

static void on_retry_join_timer(uv_timer_t *t)
{
	retry_join_attempt(t->data);
}

/* The attempt at address NEXT ended with STATUS: the next address after
 * the backoff, unless it fetched the keyring. Each address's outcome is
 * logged when it changes. */
static void retry_join_next(struct node *n, int status)
{
	struct node_retry_join *rj = n->retry_join;
	if (status == 0 || n->initialized || status == -ESHUTDOWN) {
		rj->active = false;
		return;
	}
	if (rj->last_status[rj->next] != status)
		log_warn("node %s: retry_join: %s: %s (trying the addresses in turn until one "
			 "answers)",
			 n->node_id, rj->addrs[rj->next], strerror(-status));
	rj->last_status[rj->next] = status;
	rj->next = (rj->next + 1) % rj->n;
	unsigned wait = rj->backoff_ms;
	if (rj->next == 0)
		rj->backoff_ms = rj->backoff_ms * 2 < RETRY_JOIN_MAX_MS ? rj->backoff_ms * 2
									: RETRY_JOIN_MAX_MS;
	uv_timer_start(&rj->timer, on_retry_join_timer, wait, 0);
}

static void retry_join_free(struct node_retry_join *rj)
{
	for (unsigned i = 0; rj != NULL && i < rj->n; i++)
		free(rj->addrs[i]);
	if (rj != NULL) {
		free(rj->addrs);
		free(rj->last_status);
	}
	free(rj);
}

int node_join_init(struct node *n)
{
	if (n->cfg.n_retry_join == 0)
		return 0;
	struct node_retry_join *rj = calloc(1, sizeof(*rj));
	if (rj == NULL)
		return -ENOMEM;
	rj->addrs = calloc(n->cfg.n_retry_join, sizeof(*rj->addrs));
	rj->last_status = calloc(n->cfg.n_retry_join, sizeof(*rj->last_status));
	if (rj->addrs == NULL || rj->last_status == NULL) {
		retry_join_free(rj);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n->cfg.n_retry_join; i++) {
		char parsed[ADDRESS_MAX + 1];
		const char *a = n->cfg.retry_join[i];
		int rv = ctl_parse_join_addr((const uint8_t *)a, strlen(a), parsed, sizeof(parsed));
		assert(rv == 0); /* the configuration checked it */
		rj->addrs[i] = rv == 0 ? strdup(parsed) : NULL;
		rj->n = i + 1;
		if (rj->addrs[i] == NULL) {
			retry_join_free(rj);
			return -ENOMEM;
		}
	}
	rj->backoff_ms = RETRY_JOIN_MIN_MS;
	n->retry_join = rj;
	return 0;
}

void node_join_open(struct node *n)
{
	uv_timer_init(n->loop, &n->join_timer);
	n->join_timer.data = n;
	struct node_retry_join *rj = n->retry_join;
	if (rj == NULL)
		return;
	uv_timer_init(n->loop, &rj->timer);
	rj->timer.data = n;
	rj->active = !n->initialized;
	if (rj->active) {
		log_info("node %s: retry_join: not initialised; fetching the cluster's keyring "
			 "from %u configured address%s",
			 n->node_id, rj->n, rj->n == 1 ? "" : "es");
		uv_timer_start(&rj->timer, on_retry_join_timer, 0, 0);
	}
}

int node_join_close(struct node *n)
{
	if (n->retry_join != NULL)
		n->retry_join->active = false;
	if (n->join_fetch != NULL) {
		transport_join_cancel(n->join_fetch);
		n->join_fetch = NULL;
	}
	join_finish(n, -ESHUTDOWN);
	uv_close((uv_handle_t *)&n->join_timer, node_handle_closed);
	if (n->retry_join == NULL)
		return 1;
	uv_close((uv_handle_t *)&n->retry_join->timer, node_handle_closed);
	return 2;
}

void node_join_free(struct node *n)
{
	retry_join_free(n->retry_join);
	n->retry_join = NULL;
}

/* ---- Join info for new nodes (unauthenticated: the keyring is sealed
 * under the root key, useless without the unseal key shares) ---- */

int node_join_provider(void *ctx, unsigned version, struct buf *out)
{
	struct node *n = ctx;
	assert(version <= TRANSPORT_JOIN_VERSION);
	const char *leader =
		node_query_is_leader(n) ? n->raft_address : node_query_leader_address(n);
	buf_put_u8(out, (uint8_t)n->shares);
	buf_put_u8(out, (uint8_t)n->threshold);
	buf_put_blob(out, n->sealed_keyring.data, n->sealed_keyring.len);
	buf_put_blob(out, leader ? leader : "", leader ? strlen(leader) : 0);
	/* Version 0 (a previous release's requester) ends here: its decoder
	 * refuses trailing bytes. */
	if (version >= 1)
		buf_put_u8(out, 1);
	return out->err;
}
