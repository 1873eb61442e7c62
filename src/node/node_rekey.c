/* .vault/rekey: new unseal key shares for the whole cluster.
 *
 * Like Vault's rekey: write "shares=N threshold=T" to start, then the
 * current shares one at a time, as for unseal. When the threshold is
 * reached and the shares make up the root key this node holds, a new root
 * key is made and split into N shares. Nothing is committed yet: the next
 * read of .vault/rekey commits the new root key through Raft (a rekey entry,
 * node_keys.c) and answers with the new shares once it is committed, in the
 * format of init. So the new shares are shown only by the read that makes
 * them valid: a node that seals or stops in between loses nothing, the old
 * shares still open every node, and a read that fails can be repeated.
 *
 * A failed commit may still have happened (the leader's answer was lost, or
 * it lost leadership after proposing): the next read first checks whether
 * this node's root key is the new one already, and "reset" is refused once
 * it is, so that shares that open the vault are never thrown away here.
 *
 * The collection is this node's, as unseal's is: one rekey at a time here
 * (EBUSY), and "reset" starts over. Two rekeys on two nodes are ordered by
 * Raft; the later one's shares are the valid ones. */
#include "node/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/secmem.h"
#include "crypto/shamir.h"
#include "lib/log.h"
#include "node/ctl_parse.h"

enum rekey_phase {
	REKEY_IDLE,
	REKEY_COLLECTING, /* current shares arriving */
	REKEY_READY,      /* new root key and shares made, not committed */
	REKEY_COMMITTING, /* the read waits for Raft */
};

struct node_rekey {
	enum rekey_phase phase;
	unsigned shares, threshold; /* the new ones */
	struct unsealer *current;   /* the current shares given so far */
	uint8_t *root;              /* REKEY_READY on: the new root key (secure memory) */
	uint8_t *share_bytes;       /* and its shares (secure memory) */
	struct api_request *reader; /* REKEY_COMMITTING: the read to answer */
};

static void rekey_clear(struct node_rekey *r)
{
	unsealer_free(r->current);
	secmem_free(r->root);
	secmem_free(r->share_bytes);
	r->current = NULL;
	r->root = NULL;
	r->share_bytes = NULL;
	r->phase = REKEY_IDLE;
}

static bool looks_like_params(const uint8_t *in, size_t len)
{
	ctl_parse_trim(&in, &len);
	return (len >= 7 && memcmp(in, "shares=", 7) == 0) ||
	       (len >= 10 && memcmp(in, "threshold=", 10) == 0);
}

static int rekey_start(struct node *n, const uint8_t *in, size_t len)
{
	struct node_rekey *r = n->rekey;
	unsigned shares, threshold;
	int rv = ctl_parse_init(in, len, &shares, &threshold);
	if (rv != 0) {
		log_warn("node %s: rekey: expected \"shares=N threshold=T\" with 1 <= T <= N <= "
			 "255", n->node_id);
		return rv;
	}
	rv = unsealer_new(&r->current, n->threshold);
	if (rv != 0)
		return rv;
	r->shares = shares;
	r->threshold = threshold;
	r->phase = REKEY_COLLECTING;
	log_info("node %s: rekey started (%u new shares, threshold %u); give %u current shares",
		 n->node_id, shares, threshold, n->threshold);
	return 0;
}

/* The current shares are complete: if they make up this node's root key,
 * make the new root key and its shares. */
static int rekey_prepare(struct node *n)
{
	struct node_rekey *r = n->rekey;
	uint8_t *old = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	int rv = old != NULL ? unsealer_combine(r->current, old) : -ENOMEM;
	unsealer_reset(r->current);
	if (rv == 0 && !barrier_root_key_is(n->barrier, old))
		rv = -EKEYREJECTED;
	secmem_free(old);
	if (rv != 0)
		return rv;
	r->root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	r->share_bytes = secmem_alloc((size_t)r->shares * SHAMIR_SHARE_LEN);
	if (r->root == NULL || r->share_bytes == NULL)
		return -ENOMEM;
	barrier_generate_root_key(r->root);
	rv = shamir_split(r->root, r->shares, r->threshold, r->share_bytes);
	if (rv == 0) {
		r->phase = REKEY_READY;
		log_info("node %s: rekey: the current shares are right; read .vault/rekey to "
			 "commit and get the new shares", n->node_id);
	}
	return rv;
}

static int rekey_add_share(struct node *n, const uint8_t *in, size_t len)
{
	struct node_rekey *r = n->rekey;
	uint8_t *share = secmem_alloc(SHAMIR_SHARE_LEN);
	int rv = share ? seal_share_decode((const char *)in, len, share) : -ENOMEM;
	if (rv == 0)
		rv = unsealer_add(r->current, share);
	secmem_free(share);
	if (rv < 0 || unsealer_count(r->current) < unsealer_threshold(r->current))
		return rv < 0 ? rv : 0;
	rv = rekey_prepare(n);
	if (rv == -EKEYREJECTED)
		log_warn("node %s: rekey: the key shares given do not make up the current root "
			 "key (progress reset)", n->node_id);
	if (rv != 0 && r->phase != REKEY_READY) {
		secmem_free(r->root);
		secmem_free(r->share_bytes);
		r->root = NULL;
		r->share_bytes = NULL;
	}
	return rv;
}

/* The new root key is this node's already: committed, whatever the read
 * that committed it was told. */
static bool rekey_took_effect(const struct node *n)
{
	const struct node_rekey *r = n->rekey;
	return r->root != NULL && barrier_root_key_is(n->barrier, r->root);
}

static int rekey_reset(struct node *n)
{
	struct node_rekey *r = n->rekey;
	if (r->phase == REKEY_COMMITTING)
		return -EBUSY;
	if (rekey_took_effect(n)) {
		log_warn("node %s: rekey: not reset, it is committed: read .vault/rekey for the "
			 "new shares", n->node_id);
		return -EBUSY;
	}
	rekey_clear(r);
	return 0;
}

void node_rekey_write(struct node *n, struct api_request *req, const uint8_t *in, size_t len)
{
	struct node_rekey *r = n->rekey;
	int rv;
	if (n->session == NULL || n->phase != NODE_ACTIVE)
		rv = -ENOKEY; /* sealed: there is no root key to compare with */
	else if (ctl_parse_is_reset(in, len))
		rv = rekey_reset(n);
	else if (r->phase == REKEY_IDLE)
		rv = rekey_start(n, in, len);
	else if (r->phase != REKEY_COLLECTING || looks_like_params(in, len))
		rv = -EBUSY; /* one rekey at a time: "reset" first */
	else
		rv = rekey_add_share(n, in, len);
	api_reply(req, rv, NULL, 0);
}

/* ---- Commit: the read after the threshold ---- */

static void reply_text(struct api_request *req, const char *text, size_t len)
{
	api_reply(req, 0, (const uint8_t *)text, len);
}

/* Answers the read with the new shares, once, and forgets them. */
static void rekey_show(struct node *n, struct api_request *req)
{
	struct node_rekey *r = n->rekey;
	char *text;
	size_t len;
	int rv = node_ctl_format_shares(r->share_bytes, r->shares, r->threshold, "Rekeyed", &text,
					&len);
	rekey_clear(r);
	if (rv != 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	reply_text(req, text, len);
	secmem_free(text);
}

static void on_committed(void *arg, int status)
{
	struct node *n = arg;
	struct node_rekey *r = n->rekey;
	struct api_request *req = r->reader;
	r->reader = NULL;
	r->phase = REKEY_READY;
	if (status == 0 || rekey_took_effect(n)) {
		rekey_show(n, req);
		return;
	}
	/* Probably not committed (then the old shares open every node); if it
	 * was, this node's root key changes when it applies the entry and
	 * the next read shows the shares. */
	log_error("node %s: rekey: no confirmation that it was committed (%s); read "
		  ".vault/rekey again now: it shows the new shares if it was, and retries if not",
		  n->node_id, strerror(-status));
	api_reply(req, node_query_unreachable_errno(status), NULL, 0);
	if (n->phase != NODE_ACTIVE)
		node_rekey_forget(n);
}

static void on_forwarded(void *arg, int status, const uint8_t *resp, size_t len)
{
	(void)resp;
	(void)len;
	on_committed(arg, status);
}

static void rekey_commit(struct node *n, struct api_request *req)
{
	struct node_rekey *r = n->rekey;
	r->phase = REKEY_COMMITTING;
	r->reader = req;
	if (node_query_is_leader(n)) {
		node_keys_rekey(n, r->root, r->shares, r->threshold, on_committed, n);
		return;
	}
	const char *leader = node_query_leader_address(n);
	struct buf b;
	buf_init(&b);
	buf_put_u8(&b, (uint8_t)r->shares);
	buf_put_u8(&b, (uint8_t)r->threshold);
	buf_put_raw(&b, r->root, BARRIER_ROOT_KEY_LEN);
	int rv = b.err != 0  ? b.err
		 : !leader   ? -EAGAIN
			     : transport_rpc(n->session->transport, leader, NODE_RPC_REKEY, b.data,
					     b.len, n->cfg.request_timeout_ms, on_forwarded, n);
	buf_free(&b); /* wipes the root key */
	if (rv != 0)
		on_committed(n, rv);
}

void node_rekey_read(struct node *n, struct api_request *req)
{
	struct node_rekey *r = n->rekey;
	if (r->phase == REKEY_READY && rekey_took_effect(n)) {
		rekey_show(n, req);
		return;
	}
	if (r->phase == REKEY_READY && n->session != NULL && n->phase == NODE_ACTIVE) {
		rekey_commit(n, req);
		return;
	}
	if (r->phase == REKEY_COMMITTING) {
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	char text[160];
	int len = r->phase == REKEY_IDLE
			  ? snprintf(text, sizeof text, "started: false\n")
			  : snprintf(text, sizeof text,
				     "started: true\nprogress: %u/%u\nshares: %u\nthreshold: %u\n",
				     unsealer_count(r->current), unsealer_threshold(r->current),
				     r->shares, r->threshold);
	reply_text(req, text, (size_t)len);
}

/* Leader: NODE_RPC_REKEY from the member where the shares were given. */
void node_rekey_serve(struct node *n, struct transport_rpc_req *rpc)
{
	struct cursor c;
	cursor_init(&c, rpc->payload, rpc->len);
	unsigned shares = cursor_u8(&c);
	unsigned threshold = cursor_u8(&c);
	const uint8_t *root = cursor_raw(&c, BARRIER_ROOT_KEY_LEN);
	if (cursor_done(&c) != 0) {
		transport_rpc_reply(rpc, -EBADMSG, NULL, 0);
		return;
	}
	node_keys_rekey(n, root, shares, threshold, node_rpc_reply_status, rpc);
}

/* ---- Lifecycle ---- */

void node_rekey_forget(struct node *n)
{
	struct node_rekey *r = n->rekey;
	if (r->phase == REKEY_COMMITTING)
		return; /* on_committed comes (the seal fails the entry) */
	if (rekey_took_effect(n))
		log_error("node %s: sealed with the new shares of a committed rekey unread: they "
			  "are lost", n->node_id);
	else if (r->phase != REKEY_IDLE)
		log_info("node %s: rekey abandoned at seal; the old shares stay valid", n->node_id);
	rekey_clear(r);
}

int node_rekey_init(struct node *n)
{
	n->rekey = calloc(1, sizeof *n->rekey);
	return n->rekey != NULL ? 0 : -ENOMEM;
}

void node_rekey_free(struct node *n)
{
	if (n->rekey == NULL)
		return;
	rekey_clear(n->rekey);
	free(n->rekey);
	n->rekey = NULL;
}
