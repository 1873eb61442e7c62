/* Key rotation and rekey: new keyring terms and root keys, made by the
 * leader, for the members only.
 *
 * A rotation is a Raft entry (raft/fsm.h) whose payload is
 *   u8 version 1 | u32 term | i64 install time (ns) | box list
 * where the box list (crypto/boxlist.h) seals "u32 term || term key" to the
 * identity of each server in the leader's configuration. A rekey is a
 * rotation that also replaces the root key (the one the unseal key shares
 * make up):
 *   u8 version 2 | u32 term | i64 install time | u8 shares | u8 threshold |
 *   box list of "u32 term || term key || root key"
 * Tying the root key to a term orders rekeys without a counter of their
 * own: a node's root key is always current as of its newest term (it seals
 * its keyring again whenever either changes), so a rekey entry's root key is
 * taken exactly when its term is new to the node, and ignored on a replay. The entry itself
 * is a barrier ciphertext under the term before, so only a keyring holder
 * can make one; the boxes keep the new key from whoever holds only older
 * keys: a removed node, or a thief with a removed node's keyring and a
 * later copy of a member's log. Applying it adds the term on every member
 * (a replay of an entry already applied changes nothing), seals the grown
 * keyring under the root key and rewrites the seal file, so that the node
 * hands joiners the current keyring and opens with it after a restart.
 * The log stays the authority: a seal file that could not be rewritten is
 * made good when the entry is applied again at the next start.
 *
 * A snapshot taken while the keyring has more than one term carries the
 * whole keyring, the root key and the share counts, boxed to the members
 * (raft/fsm.c), so that a member that missed a rotation or a rekey, and
 * gets a snapshot instead of the entry, can open it, and afterwards opens
 * only with the shares of the newest rekey.
 *
 * Who gets a box: the configuration when the leader proposes. A leader
 * proposes only with no configuration change in flight (the boxes would be
 * for a configuration that may not happen) and after it has applied
 * everything before its term (node_query_committed_in_term: the next term number
 * is then known). A joiner is added only with no rotation in flight and
 * only if it holds the newest term (node_cluster.c), so every member either
 * got a box or had the term before it joined. */
#include "node/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "crypto/boxlist.h"
#include "crypto/secmem.h"
#include "lib/log.h"
#include "raft/raftaddr.h"

#define ROTATION_VERSION 1u
#define REKEY_VERSION 2u
#define ROTATION_TICK_MS 1000u /* checks the interval; retries a rotation owed */
#define ROTATION_RETRY_MS 100u /* while a configuration change is in flight */
#define BOX_LEN (4u + BARRIER_TERM_KEY_LEN)
#define REKEY_BOX_LEN (BOX_LEN + BARRIER_ROOT_KEY_LEN)
#define SNAPSHOT_BOX_HDR (2u + BARRIER_ROOT_KEY_LEN) /* shares, threshold, root */

/* Someone waiting for a rotation that starts after they asked. */
struct keys_waiter {
	struct keys_waiter *next;
	void (*cb)(void *arg, int status);
	void *arg;
};

/* A new root key waiting to be proposed (leader). */
struct keys_rekey {
	uint8_t *root; /* secure memory */
	unsigned shares, threshold;
	void (*cb)(void *arg, int status);
	void *arg;
};

struct node_keys {
	uv_timer_t timer;
	struct raft_apply apply;
	bool inflight;               /* this leader's rotation entry is not applied yet */
	struct keys_waiter *current; /* answered when the rotation in flight is applied */
	struct keys_waiter *next;    /* answered by the next rotation */
	struct keys_rekey *rekey;    /* goes into the next rotation */
	struct keys_rekey *rekey_inflight; /* is in the rotation in flight */
	struct raft_barrier barrier; /* a new leader's first commit (rotation_blocked) */
	bool barrier_inflight;
	uint64_t barrier_raft_term;
	int64_t last_failure_log;    /* uv_now of the last "cannot rotate" line */
};

/* How many unseal key shares a root key is split into. */
struct keys_seal {
	unsigned shares, threshold;
};

static bool keys_seal_valid(const struct keys_seal *s)
{
	return s->threshold >= 1 && s->threshold <= s->shares && s->shares <= 255;
}

/* ---- The keyring on disk ---- */

/* Seals the grown keyring again and rewrites the seal file. */
static void keys_save(struct node *n)
{
	struct buf sealed;
	buf_init(&sealed);
	int rv = barrier_reseal(n->barrier, &sealed);
	if (rv == 0) {
		buf_clear(&n->sealed_keyring);
		buf_put_raw(&n->sealed_keyring, sealed.data, sealed.len);
		rv = n->sealed_keyring.err;
	}
	buf_free(&sealed);
	if (rv == 0)
		rv = node_save_seal_file(n);
	if (rv != 0)
		log_warn("node %s: cannot save the new keyring in %s: %s; the node will take the "
			 "new key term from the Raft log again at its next start",
			 n->node_id, n->seal_path, strerror(-rv));
}

/* ---- Applying (every member) ---- */

/* The unseal key shares of a new root key: the node unseals with
 * THRESHOLD of them from now on. */
static int set_seal_params(struct node *n, unsigned shares, unsigned threshold)
{
	struct unsealer *u;
	int rv = unsealer_new(&u, threshold);
	if (rv != 0)
		return rv;
	unsealer_free(n->unsealer);
	n->unsealer = u;
	n->shares = shares;
	n->threshold = threshold;
	return 0;
}

/* Takes a new root key (a rekey): sealed again under it, the keyring no
 * longer opens with the old shares. */
static int take_root_key(struct node *n, const uint8_t *root, const struct keys_seal *seal)
{
	int rv = barrier_set_root_key(n->barrier, root);
	if (rv == 0)
		rv = set_seal_params(n, seal->shares, seal->threshold);
	if (rv == 0)
		log_info("node %s: rekeyed: %u new key shares, threshold %u; the old shares no "
			 "longer open this node", n->node_id, seal->shares, seal->threshold);
	return rv;
}

/* SEAL: the share counts of a rekey; NULL for a rotation. */
static int take_boxed_term(struct node *n, uint32_t term, int64_t installed,
			   const struct keys_seal *seal, const struct buf *box)
{
	struct cursor c;
	cursor_init(&c, box->data, box->len);
	uint32_t boxed_term = cursor_u32(&c);
	const uint8_t *key = cursor_raw(&c, BARRIER_TERM_KEY_LEN);
	const uint8_t *root = seal != NULL ? cursor_raw(&c, BARRIER_ROOT_KEY_LEN) : NULL;
	if (cursor_done(&c) != 0 || boxed_term != term)
		return -EBADMSG;
	int rv = barrier_add_term(n->barrier, term, key, installed);
	if (rv == -EALREADY)
		return 0; /* applied before this start, or a replay: its root key is older */
	if (rv == -EKEYREJECTED)
		log_error("node %s: key term %" PRIu32 " arrived with another key than the one "
			  "this node holds", n->node_id, term);
	else if (rv == -ERANGE)
		log_error("node %s: key term %" PRIu32 " arrived, but this node lacks the terms "
			  "before it", n->node_id, term);
	if (rv == 0 && root != NULL)
		rv = take_root_key(n, root, seal);
	if (rv != 0)
		return rv;
	keys_save(n);
	log_info("node %s: key term %" PRIu32 " installed", n->node_id, term);
	return 0;
}

static int keys_apply_rotation(void *arg, const uint8_t *payload, size_t len)
{
	struct node *n = arg;
	struct cursor c;
	cursor_init(&c, payload, len);
	uint8_t version = cursor_u8(&c);
	uint32_t term = cursor_u32(&c);
	int64_t installed = cursor_i64(&c);
	struct keys_seal seal = { 0 };
	if (version == REKEY_VERSION) {
		seal.shares = cursor_u8(&c);
		seal.threshold = cursor_u8(&c);
	}
	if (c.err != 0 || (version != ROTATION_VERSION && version != REKEY_VERSION) || term < 2 ||
	    (version == REKEY_VERSION && !keys_seal_valid(&seal)))
		return -EBADMSG;
	struct buf box;
	buf_init(&box);
	int rv = boxlist_open(c.p, c.left, node_trust_me(n), &box);
	if (rv == -ENOENT) {
		/* Not a member when it was made: fine if it joined later with a
		 * keyring that has the term already. */
		uint8_t *held = secmem_alloc(BARRIER_TERM_KEY_LEN);
		rv = held == NULL ? -ENOMEM : barrier_term_key(n->barrier, term, held);
		secmem_free(held);
		if (rv == -ENOKEY)
			log_error("node %s: key term %" PRIu32 " was made for the members of the "
				  "time, and this node was not one; it cannot read what follows. "
				  "Write '%s' to .vault/remove-peer on a member, move %s aside, "
				  "start vaultfsd again and join", n->node_id, term, n->node_id,
				  n->data_dir);
	} else if (rv == 0) {
		rv = take_boxed_term(n, term, installed, version == REKEY_VERSION ? &seal : NULL,
				     &box);
	}
	buf_free(&box);
	return rv;
}

/* ---- Snapshots ---- */

/* The identities of R's latest configuration, or -EPROTO if a server has
 * none (a configuration from before identities: it cannot get keys). */
static int config_identities(const struct raft *r, uint8_t (**ret)[CHANNEL_ID_LEN], size_t *ret_n)
{
	const struct raft_configuration *conf = &r->configuration;
	uint8_t(*ids)[CHANNEL_ID_LEN] = calloc(conf->n > 0 ? conf->n : 1, CHANNEL_ID_LEN);
	if (ids == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < conf->n; i++) {
		struct raftaddr a;
		if (raftaddr_parse(conf->servers[i].address, &a) != 0 || !a.has_id) {
			free(ids);
			return -EPROTO;
		}
		memcpy(ids[i], a.id, CHANNEL_ID_LEN);
	}
	*ret = ids;
	*ret_n = conf->n;
	return 0;
}

static int keys_snapshot_boxes(void *arg, struct buf *out)
{
	struct node *n = arg;
	uint8_t(*ids)[CHANNEL_ID_LEN];
	size_t count;
	if (n->session == NULL)
		return -EAGAIN; /* inside raft_start: libraft takes it later */
	int rv = config_identities(&n->session->raft, &ids, &count);
	if (rv != 0)
		return rv;
	/* shares, threshold, root key, keyring: key material, in a buf (wiped) */
	struct buf pt;
	buf_init(&pt);
	buf_put_u8(&pt, (uint8_t)n->shares);
	buf_put_u8(&pt, (uint8_t)n->threshold);
	rv = buf_reserve(&pt, BARRIER_ROOT_KEY_LEN);
	if (rv == 0 && (rv = barrier_root_key(n->barrier, pt.data + pt.len)) == 0)
		pt.len += BARRIER_ROOT_KEY_LEN;
	if (rv == 0)
		rv = barrier_keyring_export(n->barrier, &pt);
	if (rv == 0)
		rv = boxlist_encode(pt.data, pt.len, (const uint8_t(*)[CHANNEL_ID_LEN])ids, count,
				    out);
	buf_free(&pt);
	free(ids);
	return rv;
}

static int keys_restore_boxes(void *arg, const uint8_t *boxes, size_t len)
{
	struct node *n = arg;
	struct buf pt;
	buf_init(&pt);
	int rv = boxlist_open(boxes, len, node_trust_me(n), &pt);
	if (rv == -ENOENT) {
		buf_free(&pt);
		return 0; /* joined after it was taken: the body's term is held */
	}
	struct keys_seal seal = { 0 };
	if (rv == 0 && pt.len > SNAPSHOT_BOX_HDR) {
		seal.shares = pt.data[0];
		seal.threshold = pt.data[1];
	}
	if (rv == 0 && !keys_seal_valid(&seal))
		rv = -EBADMSG;
	if (rv == 0)
		rv = barrier_keyring_merge(n->barrier, pt.data + SNAPSHOT_BOX_HDR,
					   pt.len - SNAPSHOT_BOX_HDR);
	int added = rv;
	/* Newer terms than ours: its root key is newer too (or the same). */
	if (added > 0)
		rv = barrier_root_key_is(n->barrier, pt.data + 2)
			     ? 0
			     : take_root_key(n, pt.data + 2, &seal);
	if (added > 0 && rv == 0) {
		keys_save(n);
		log_info("node %s: took %d key term(s) from a snapshot", n->node_id, added);
	} else if (rv == -EKEYREJECTED) {
		log_error("node %s: a snapshot's keyring holds another key for a term this node "
			  "holds", n->node_id);
	}
	buf_free(&pt);
	return rv < 0 ? rv : 0;
}

static const struct fsm_keys keys_fsm_ops = {
	.apply_rotation = keys_apply_rotation,
	.snapshot_boxes = keys_snapshot_boxes,
	.restore_boxes = keys_restore_boxes,
};

const struct fsm_keys *node_keys_fsm(void)
{
	return &keys_fsm_ops;
}

/* ---- Proposing (the leader) ---- */

static void waiters_answer(struct keys_waiter **list, int status)
{
	struct keys_waiter *w = *list;
	*list = NULL;
	while (w != NULL) {
		struct keys_waiter *next = w->next;
		w->cb(w->arg, status);
		free(w);
		w = next;
	}
}

static void rekey_answer(struct keys_rekey **slot, int status)
{
	struct keys_rekey *r = *slot;
	*slot = NULL;
	if (r == NULL)
		return;
	secmem_free(r->root);
	r->cb(r->arg, status);
	free(r);
}

/* The entry's payload: the next term's fresh key (and REKEY's root key, if
 * not NULL), boxed to every server. */
static int rotation_payload(struct node *n, uint32_t term, const struct keys_rekey *rekey,
			    struct buf *out)
{
	uint8_t(*ids)[CHANNEL_ID_LEN];
	size_t count;
	int rv = config_identities(&n->session->raft, &ids, &count);
	if (rv != 0)
		return rv;
	size_t box_len = rekey != NULL ? REKEY_BOX_LEN : BOX_LEN;
	uint8_t *pt = secmem_alloc(box_len);
	if (pt == NULL) {
		free(ids);
		return -ENOMEM;
	}
	pt[0] = (uint8_t)term;
	pt[1] = (uint8_t)(term >> 8);
	pt[2] = (uint8_t)(term >> 16);
	pt[3] = (uint8_t)(term >> 24);
	randombytes_buf(pt + 4, BARRIER_TERM_KEY_LEN);
	if (rekey != NULL)
		memcpy(pt + BOX_LEN, rekey->root, BARRIER_ROOT_KEY_LEN);
	buf_put_u8(out, rekey != NULL ? REKEY_VERSION : ROTATION_VERSION);
	buf_put_u32(out, term);
	buf_put_i64(out, node_now_ns());
	if (rekey != NULL) {
		buf_put_u8(out, (uint8_t)rekey->shares);
		buf_put_u8(out, (uint8_t)rekey->threshold);
	}
	rv = out->err != 0 ? out->err
			   : boxlist_encode(pt, box_len, (const uint8_t(*)[CHANNEL_ID_LEN])ids,
					    count, out);
	secmem_free(pt);
	free(ids);
	return rv;
}

static void on_keys_timer(uv_timer_t *t);

static void on_rotation_applied(struct raft_apply *req, int status, void *result)
{
	struct node *n = req->data;
	struct node_keys *k = n->keys;
	(void)result;
	k->inflight = false;
	if (status != 0)
		log_warn("node %s: key rotation not committed: %s", n->node_id,
			 raft_strerror(status));
	waiters_answer(&k->current, node_query_raft_errno(status));
	rekey_answer(&k->rekey_inflight, node_query_raft_errno(status));
	if (k->next != NULL || k->rekey != NULL)
		uv_timer_start(&k->timer, on_keys_timer, 0, ROTATION_TICK_MS);
}

static void on_keys_barrier(struct raft_barrier *req, int status)
{
	struct node *n = req->data;
	struct node_keys *k = n->keys;
	k->barrier_inflight = false;
	if (status == 0 && n->session != NULL &&
	    n->session->raft.current_term == k->barrier_raft_term)
		n->barrier_term = k->barrier_raft_term;
}

/* A leader knows the next key term once it has applied everything before
 * its own term: the first entry it commits in its term shows that. Reads
 * make one; without reads, this does. */
static void commit_in_term(struct node *n)
{
	struct node_keys *k = n->keys;
	if (k->barrier_inflight)
		return;
	k->barrier.data = n;
	k->barrier_raft_term = n->session->raft.current_term;
	if (raft_barrier(&n->session->raft, &k->barrier, on_keys_barrier) == 0)
		k->barrier_inflight = true;
}

/* Why the leader cannot propose now; 0 if it can. -EBUSY passes by
 * itself (retried), the rest is the caller's answer. */
static int rotation_blocked(struct node *n)
{
	if (n->session == NULL || n->phase != NODE_ACTIVE || !node_query_is_leader(n))
		return -EAGAIN;
	if (!node_query_committed_in_term(n)) {
		commit_in_term(n);
		return -EBUSY;
	}
	if (n->session->raft.configuration_uncommitted_index != 0)
		return -EBUSY;
	return 0;
}

static int propose(struct node *n)
{
	struct node_keys *k = n->keys;
	uint32_t newest;
	int64_t installed;
	barrier_newest(n->barrier, &newest, &installed);
	if (newest >= BARRIER_MAX_TERMS)
		return -ENOSPC;
	struct buf payload;
	buf_init(&payload);
	struct raft_buffer entry = { 0 };
	int rv = rotation_payload(n, newest + 1, k->rekey, &payload);
	if (rv == 0)
		rv = fsm_encode_rotation(n->barrier, payload.data, payload.len, &entry);
	buf_free(&payload);
	if (rv != 0)
		return rv;
	k->apply.data = n;
	rv = node_cluster_propose(n, &k->apply, &entry, on_rotation_applied);
	if (rv != 0)
		return rv;
	log_info("node %s: %s the keyring to term %" PRIu32, n->node_id,
		 k->rekey != NULL ? "rekeying, rotating" : "rotating", newest + 1);
	k->inflight = true;
	k->current = k->next;
	k->next = NULL;
	k->rekey_inflight = k->rekey;
	k->rekey = NULL;
	return 0;
}

/* Proposes the rotation the waiters in NEXT or a rekey ask for, if it can
 * now. */
static void rotation_try(struct node *n)
{
	struct node_keys *k = n->keys;
	if (k->inflight)
		return;
	int rv = rotation_blocked(n);
	if (rv == 0)
		rv = propose(n);
	if (rv == -EBUSY) {
		uv_timer_start(&k->timer, on_keys_timer, ROTATION_RETRY_MS, ROTATION_TICK_MS);
		return;
	}
	if (rv != 0) {
		if (rv == -EPROTO)
			log_warn("node %s: cannot rotate: a member has no node identity (a "
				 "configuration from before identities)", n->node_id);
		else if (rv == -ENOSPC)
			log_warn("node %s: cannot rotate: the keyring is full (%u terms)",
				 n->node_id, BARRIER_MAX_TERMS);
		waiters_answer(&k->next, rv);
		rekey_answer(&k->rekey, rv);
	}
}

static bool interval_due(const struct node *n)
{
	if (n->cfg.rotation_interval_ms == 0 || n->session == NULL)
		return false;
	uint32_t term;
	int64_t installed;
	barrier_newest(n->barrier, &term, &installed);
	int64_t age_ms = (node_now_ns() - installed) / 1000000;
	return term > 0 && age_ms >= 0 && (uint64_t)age_ms >= n->cfg.rotation_interval_ms;
}

static void on_keys_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	struct node_keys *k = n->keys;
	bool asked = k->next != NULL || k->rekey != NULL;
	if (!asked && !k->inflight && interval_due(n) && rotation_blocked(n) == 0 &&
	    propose(n) != 0) {
		int64_t now = (int64_t)uv_now(n->loop);
		if (k->last_failure_log == 0 || now - k->last_failure_log >= 60000) {
			log_warn("node %s: rotation_interval: cannot rotate the keyring now",
				 n->node_id);
			k->last_failure_log = now;
		}
	}
	if (asked)
		rotation_try(n);
}

bool node_keys_rotating(const struct node *n)
{
	return n->keys->inflight;
}

void node_keys_rotate(struct node *n, void (*cb)(void *arg, int status), void *arg)
{
	struct node_keys *k = n->keys;
	struct keys_waiter *w = calloc(1, sizeof *w);
	if (w == NULL) {
		cb(arg, -ENOMEM);
		return;
	}
	w->cb = cb;
	w->arg = arg;
	/* A rotation in flight may have boxed its key to someone removed
	 * since: this one waits for the next. */
	w->next = k->next;
	k->next = w;
	rotation_try(n);
}

void node_keys_rekey(struct node *n, const uint8_t root[BARRIER_ROOT_KEY_LEN], unsigned shares,
		     unsigned threshold, void (*cb)(void *arg, int status), void *arg)
{
	struct node_keys *k = n->keys;
	struct keys_seal seal = { shares, threshold };
	if (!keys_seal_valid(&seal)) {
		cb(arg, -EINVAL);
		return;
	}
	if (k->rekey != NULL || k->rekey_inflight != NULL) {
		cb(arg, -EBUSY);
		return;
	}
	struct keys_rekey *r = calloc(1, sizeof *r);
	uint8_t *copy = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	if (r == NULL || copy == NULL) {
		free(r);
		secmem_free(copy);
		cb(arg, -ENOMEM);
		return;
	}
	memcpy(copy, root, BARRIER_ROOT_KEY_LEN);
	*r = (struct keys_rekey){ copy, shares, threshold, cb, arg };
	k->rekey = r;
	rotation_try(n);
}

/* ---- Status ---- */

uint32_t node_keys_status(const struct node *n, char when[NODE_KEYS_TIME_LEN])
{
	uint32_t term;
	int64_t installed;
	barrier_newest(n->barrier, &term, &installed);
	snprintf(when, NODE_KEYS_TIME_LEN, "-");
	time_t secs = (time_t)(installed / 1000000000);
	struct tm tm;
	if (installed > 0 && gmtime_r(&secs, &tm) != NULL)
		strftime(when, NODE_KEYS_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return term;
}

/* ---- Lifecycle ---- */

int node_keys_init(struct node *n)
{
	n->keys = calloc(1, sizeof *n->keys);
	return n->keys != NULL ? 0 : -ENOMEM;
}

void node_keys_open(struct node *n)
{
	uv_timer_init(n->loop, &n->keys->timer);
	n->keys->timer.data = n;
}

void node_keys_session_start(struct node *n)
{
	struct node_keys *k = n->keys;
	k->inflight = false;
	k->barrier_inflight = false;
	uv_timer_start(&k->timer, on_keys_timer, ROTATION_TICK_MS, ROTATION_TICK_MS);
}

void node_keys_fail_all(struct node *n, int status)
{
	struct node_keys *k = n->keys;
	waiters_answer(&k->current, status);
	waiters_answer(&k->next, status);
	rekey_answer(&k->rekey, status);
	rekey_answer(&k->rekey_inflight, status);
	uv_timer_stop(&k->timer);
}

int node_keys_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->keys->timer, node_handle_closed);
	return 1;
}

void node_keys_free(struct node *n)
{
	free(n->keys);
	n->keys = NULL;
}
