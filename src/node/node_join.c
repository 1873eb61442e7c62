/* Joining a cluster (Vault's raft join): fetch the sealed keyring from a
 * member, then, once this node is unsealed, ask the leader to add it. Also
 * the answer a member gives to a node that fetches. */
#include "node/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "node/ctl_parse.h"
#include "raft/raftaddr.h"

#define JOIN_RETRY_MS 200u
#define ADDRESS_MAX RAFTADDR_MAX

/* ---- Joining: fetch the sealed keyring, then (after unseal) ask to be
 * added ---- */

static void join_finish(struct node *n, int status)
{
	if (status != 0) {
		free(n->join_addr);
		n->join_addr = NULL;
	}
	if (n->join_waiter != NULL) {
		api_reply(n->join_waiter, status, NULL, 0);
		n->join_waiter = NULL;
	}
}

static int join_install_info(struct node *n, const uint8_t *info, size_t len)
{
	struct cursor c;
	cursor_init(&c, info, len);
	unsigned shares = cursor_u8(&c);
	unsigned threshold = cursor_u8(&c);
	size_t klen = 0, llen = 0;
	const uint8_t *keyring = cursor_blob(&c, 1024u * 1024u, &klen);
	cursor_blob(&c, ADDRESS_MAX, &llen);
	if (cursor_done(&c) != 0 || threshold == 0 || threshold > shares || klen == 0)
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
	if (status != 0)
		log_warn("node %s: join via %s failed: %s", n->node_id, n->join_addr,
			 strerror(-status));
	else
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

void node_join_start(struct node *n, struct api_request *req, const uint8_t *addr, size_t len)
{
	char parsed[ADDRESS_MAX + 1];
	if (n->initialized) {
		api_reply(req, -EALREADY, NULL, 0);
		return;
	}
	if (n->join_waiter != NULL || n->join_fetch != NULL) {
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
		log_info("node %s: joined the cluster as a voter", n->node_id);
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

void node_join_state(struct node *n, struct buf *out)
{
	const char *state;
	if (node_query_in_configuration(n))
		state = "member";
	else if (n->join_waiter != NULL)
		state = "fetching";
	else if (n->join_addr != NULL && n->session != NULL)
		state = "joining";
	else if (n->join_addr != NULL)
		state = "unseal this node to finish joining";
	else
		state = "none";
	char line[512];
	int len = snprintf(line, sizeof(line), "state: %s\njoin_addr: %s\n", state,
			   n->join_addr ? n->join_addr : "");
	if (len > 0)
		buf_put_raw(out, line, (size_t)len < sizeof(line) ? (size_t)len : sizeof(line) - 1);
}

void node_join_init(struct node *n)
{
	uv_timer_init(n->loop, &n->join_timer);
	n->join_timer.data = n;
}

int node_join_close(struct node *n)
{
	if (n->join_fetch != NULL) {
		transport_join_cancel(n->join_fetch);
		n->join_fetch = NULL;
	}
	join_finish(n, -ESHUTDOWN);
	uv_close((uv_handle_t *)&n->join_timer, node_handle_closed);
	return 1;
}

/* ---- Join info for new nodes (unauthenticated: the keyring is sealed
 * under the root key, useless without the unseal key shares) ---- */

int node_join_provider(void *ctx, struct buf *out)
{
	struct node *n = ctx;
	const char *leader =
		node_query_is_leader(n) ? n->raft_address : node_query_leader_address(n);
	buf_put_u8(out, (uint8_t)n->shares);
	buf_put_u8(out, (uint8_t)n->threshold);
	buf_put_blob(out, n->sealed_keyring.data, n->sealed_keyring.len);
	buf_put_blob(out, leader ? leader : "", leader ? strlen(leader) : 0);
	return out->err;
}
