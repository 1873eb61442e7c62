/* The .vault control files: status, health, metrics, init, unseal, seal, peers, join,
 * step-down, remove-peer, rotate, rekey, audit-hash (node_audit.c). */
#include "node/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/secmem.h"
#include "crypto/shamir.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "node/ctl_parse.h"
#include "raft/libraft_private.h"
#include "raft/raftaddr.h"
#include "raft/raftio.h"
#include "vaultfs/proto.h"

#define CTL_NAME_MAX 32u
#define CTL_INPUT_MAX 4096u

static void reply_text(struct api_request *req, struct buf *text)
{
	if (text->err != 0)
		api_reply(req, text->err, NULL, 0);
	else
		api_reply(req, 0, text->data, text->len);
	buf_free(text);
}

/* ---- status ---- */

static void leader_of(struct node *n, const char **ret_id, const char **ret_addr,
		      char *id_buf, size_t id_len, char *addr_buf, size_t addr_len)
{
	*ret_id = "";
	*ret_addr = "";
	if (n->session == NULL || n->phase == NODE_CLOSING)
		return;
	raft_id id;
	const char *address;
	raft_leader(&n->session->raft, &id, &address);
	if (id == 0 || address == NULL)
		return;
	const char *name, *hostport;
	size_t name_len, hostport_len;
	raftaddr_show(address, &name, &name_len, &hostport, &hostport_len);
	snprintf(id_buf, id_len, "%.*s", (int)name_len, name);
	snprintf(addr_buf, addr_len, "%.*s", (int)hostport_len, hostport);
	*ret_id = id_buf;
	*ret_addr = addr_buf;
}

static void ctl_status(struct node *n, struct api_request *req)
{
	struct buf b;
	buf_init(&b);
	bool sealed = !barrier_is_unsealed(n->barrier);
	buf_printf(&b, "initialized: %s\n", n->initialized ? "true" : "false");
	buf_printf(&b, "sealed: %s\n", sealed ? "true" : "false");
	buf_printf(&b, "shares: %u\n", n->shares);
	buf_printf(&b, "threshold: %u\n", n->threshold);
	buf_printf(&b, "progress: %u/%u\n", n->unsealer ? unsealer_count(n->unsealer) : 0,
		   n->threshold);
	buf_printf(&b, "node_id: %s\n", n->node_id);
	buf_printf(&b, "cluster_addr: %s\n", n->cluster_addr);
	char identity[RAFTADDR_ID_HEX + 1];
	node_trust_identity_hex(n, identity);
	buf_printf(&b, "identity: %s\n", identity);
	buf_printf(&b, "removed: %s\n", node_trust_removed(n) ? "true" : "false");
	buf_printf(&b, "join_state: %s\n", node_join_state_word(n));
	char key_time[NODE_KEYS_TIME_LEN];
	uint32_t key_term = node_keys_status(n, key_time);
	buf_printf(&b, "key_term: %" PRIu32 "\n", key_term);
	buf_printf(&b, "key_install_time: %s\n", key_time);
	bool leading = n->session != NULL && n->phase == NODE_ACTIVE &&
		       raft_state(&n->session->raft) == RAFT_LEADER;
	buf_printf(&b, "ha_mode: %s\n", leading ? "active" : "standby");
	char id_buf[128], addr_buf[RAFTADDR_MAX + 1];
	const char *leader_id, *leader_addr;
	leader_of(n, &leader_id, &leader_addr, id_buf, sizeof(id_buf), addr_buf, sizeof addr_buf);
	buf_printf(&b, "leader: %s\n", leader_id);
	buf_printf(&b, "leader_addr: %s\n", leader_addr);
	uint64_t term = 0, commit = 0, applied = 0;
	if (n->session != NULL && n->phase != NODE_CLOSING) {
		term = n->session->raft.current_term;
		commit = n->session->raft.commit_index;
		applied = raft_last_applied(&n->session->raft);
	}
	buf_printf(&b, "term: %" PRIu64 "\n", term);
	buf_printf(&b, "commit_index: %" PRIu64 "\n", commit);
	buf_printf(&b, "applied_index: %" PRIu64 "\n", applied);
	buf_printf(&b, "storage: %s\n", node_storage_status(n));
	buf_printf(&b, "feature_level: %u\n",
		   n->session != NULL && n->phase != NODE_CLOSING ? node_features_level(n) : 0u);
	reply_text(req, &b);
}

/* ---- health ---- */

const char *node_ctl_health(struct node *n)
{
	if (!n->initialized)
		return "uninitialized";
	if (node_trust_removed(n))
		return "removed";
	if (!barrier_is_unsealed(n->barrier))
		return "sealed";
	if (n->session == NULL || n->phase != NODE_ACTIVE)
		return "no-leader"; /* unsealed, not serving yet (or reopening) */
	if (node_query_is_leader(n))
		return "active";
	/* libraft forgets the leader once it has not heard from it for an
	 * election timeout (the follower then stands for election). */
	return node_query_leader_address(n) != NULL ? "standby" : "no-leader";
}

static void ctl_health(struct node *n, struct api_request *req)
{
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "%s\n", node_ctl_health(n));
	reply_text(req, &b);
}

/* ---- metrics ---- */

static void ctl_metrics(struct node *n, struct api_request *req)
{
	struct buf b;
	buf_init(&b);
	node_metrics_text(n, &b);
	reply_text(req, &b);
}

/* ---- peers ---- */

/* What this node knows of SRV: how long ago it last heard from it
 * (a leader of each server, a follower of its leader only), and how many
 * entries behind the leader's log it is (the leader only); "-" if unknown. */
static void peer_contact_lag(struct raft *r, const struct raft_server *srv, bool leading,
			     raft_id leader_id, char contact[24], char lag[24])
{
	uint64_t ms = 0;
	raft_index match = 0;
	snprintf(contact, 24, "-");
	snprintf(lag, 24, "-");
	if (srv->id == r->id) {
		snprintf(contact, 24, "0ms");
		if (leading)
			snprintf(lag, 24, "0");
		return;
	}
	if (leading && raftio_last_heard(r->io, srv->id, &ms))
		snprintf(contact, 24, "%" PRIu64 "ms", ms);
	else if (!leading && srv->id == leader_id && raft_state(r) == RAFT_FOLLOWER)
		snprintf(contact, 24, "%" PRIu64 "ms", libraft_private_ms_since_leader(r));
	if (leading && libraft_private_match_index(r, srv->id, &match)) {
		raft_index last = raft_last_index(r);
		snprintf(lag, 24, "%" PRIu64, (uint64_t)(last > match ? last - match : 0));
	}
}

static void ctl_peers(struct node *n, struct api_request *req)
{
	if (n->session == NULL || n->phase == NODE_CLOSING) {
		api_reply(req, -ENOKEY, NULL, 0);
		return;
	}
	struct raft *r = &n->session->raft;
	raft_id leader_id;
	const char *leader_addr;
	raft_leader(r, &leader_id, &leader_addr);
	bool leading = raft_state(r) == RAFT_LEADER;
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "%-12s %-24s %-17s %-10s %-5s %-11s %s\n", "Node", "Address", "Identity",
		   "State", "Voter", "LastContact", "Lag");
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *srv = &r->configuration.servers[i];
		const char *name, *addr;
		size_t name_len, addr_len;
		raftaddr_show(srv->address, &name, &name_len, &addr, &addr_len);
		const char *state = srv->id == leader_id ? "leader" : "follower";
		/* The first 16 hex digits: enough to compare with a node's status. */
		struct raftaddr a;
		char id[17] = "-";
		if (raftaddr_parse(srv->address, &a) == 0 && a.has_id)
			sodium_bin2hex(id, sizeof id, a.id, 8);
		char contact[24], lag[24];
		peer_contact_lag(r, srv, leading, leader_id, contact, lag);
		buf_printf(&b, "%-12.*s %-24.*s %-17s %-10s %-5s %-11s %s\n", (int)name_len, name,
			   (int)addr_len, addr, id, state, srv->role == RAFT_VOTER ? "true" : "false",
			   contact, lag);
	}
	reply_text(req, &b);
}

/* ---- init ---- */

int node_ctl_format_shares(const uint8_t *shares, unsigned count, unsigned threshold,
			   const char *what, char **ret, size_t *ret_len)
{
	size_t cap = (size_t)count * 80 + 256;
	char *out = secmem_alloc(cap);
	if (out == NULL)
		return -ENOMEM;
	size_t len = 0;
	for (unsigned i = 0; i < count; i++) {
		char text[SEAL_SHARE_TEXT_LEN + 1];
		seal_share_encode(shares + (size_t)i * SHAMIR_SHARE_LEN, text, sizeof(text));
		len += (size_t)snprintf(out + len, cap - len, "Unseal Key %u: %s\n", i + 1, text);
		secmem_wipe(text, sizeof(text));
	}
	len += (size_t)snprintf(out + len, cap - len,
				"\n%s with %u key shares and a key threshold of %u.\n"
				"These keys are shown only once: store them apart, then unseal with\n"
				"%u of them, one at a time: echo KEY > .vault/unseal\n",
				what, count, threshold, threshold);
	*ret = out;
	*ret_len = len;
	return 0;
}

/* How long init's shares wait to be read (failpoint init_shares_ttl_ms in
 * test builds): a daemon should not hold the keys to the vault for whoever
 * comes by later. */
#define INIT_SHARES_TTL_MS (10u * 60u * 1000u)

void node_ctl_forget_init_shares(struct node *n, const char *why)
{
	if (n->init_output == NULL)
		return;
	secmem_free(n->init_output);
	n->init_output = NULL;
	n->init_output_len = 0;
	uv_timer_stop(&n->shares_timer);
	log_warn("node %s: the key shares of init were never read and are gone (%s); without "
		 "them the vault cannot be unsealed: stop vaultfsd, empty %s and init again",
		 n->node_id, why, n->data_dir);
}

static void on_shares_timer(uv_timer_t *t)
{
	node_ctl_forget_init_shares(t->data, "not read within 10 minutes");
}

static int format_shares(struct node *n, const uint8_t *shares, unsigned count)
{
	secmem_free(n->init_output);
	n->init_output = NULL;
	int rv = node_ctl_format_shares(shares, count, n->threshold, "Initialized",
					&n->init_output, &n->init_output_len);
	long ttl = failpoint_value("init_shares_ttl_ms");
	if (rv == 0)
		uv_timer_start(&n->shares_timer, on_shares_timer,
			       ttl > 0 ? (uint64_t)ttl : INIT_SHARES_TTL_MS, 0);
	return rv;
}

/* Root key and shares exist only inside this function, in secure memory. */
static int do_init(struct node *n, unsigned shares, unsigned threshold)
{
	uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	uint8_t *share_bytes = secmem_alloc((size_t)shares * SHAMIR_SHARE_LEN);
	int rv = root && share_bytes ? 0 : -ENOMEM;
	if (rv == 0) {
		barrier_generate_root_key(root);
		rv = shamir_split(root, shares, threshold, share_bytes);
	}
	if (rv == 0) {
		buf_clear(&n->sealed_keyring);
		rv = barrier_init_keyring(n->barrier, root, &n->sealed_keyring);
	}
	if (rv == 0) {
		n->shares = shares;
		n->threshold = threshold;
		rv = format_shares(n, share_bytes, shares);
	}
	if (rv == 0)
		rv = node_trust_identity(n, true);
	if (rv == 0)
		rv = node_bootstrap_raft(n);
	/* Last: once the seal file exists the node counts as initialised. */
	if (rv == 0)
		rv = node_save_seal_file(n);
	if (rv != 0) {
		secmem_free(n->init_output);
		n->init_output = NULL;
	}
	if (rv == 0) {
		unsealer_free(n->unsealer);
		n->unsealer = NULL;
		rv = unsealer_new(&n->unsealer, threshold);
	}
	/* Like Vault, a freshly initialised vault starts sealed. */
	barrier_seal(n->barrier);
	secmem_free(root);
	secmem_free(share_bytes);
	return rv;
}

static void ctl_init_write(struct node *n, struct api_request *req, const uint8_t *in,
			   size_t len)
{
	if (n->initialized) {
		api_reply(req, -EALREADY, NULL, 0);
		return;
	}
	if (n->join_waiter != NULL) {
		api_reply(req, -EBUSY, NULL, 0); /* a join is fetching the cluster's keyring */
		return;
	}
	/* The operator's init from now on, not retry_join's fetch. */
	node_join_stop_retry(n);
	unsigned shares, threshold;
	int rv = ctl_parse_init(in, len, &shares, &threshold);
	if (rv != 0) {
		log_warn("node %s: init: expected \"shares=N threshold=T\" with 1 <= T <= N <= 255",
			 n->node_id);
		api_reply(req, rv, NULL, 0);
		return;
	}
	rv = do_init(n, shares, threshold);
	if (rv != 0) {
		log_error("node %s: init failed: %s", n->node_id, strerror(-rv));
		api_reply(req, rv, NULL, 0);
		return;
	}
	n->initialized = true;
	log_info("node %s: initialized with %u shares, threshold %u; sealed", n->node_id,
		 shares, threshold);
	api_reply(req, 0, NULL, 0);
}

static void ctl_init_read(struct node *n, struct api_request *req)
{
	if (n->init_output == NULL) {
		api_reply(req, 0, NULL, 0);
		return;
	}
	/* The shares are handed out once, then forgotten. */
	api_reply(req, 0, n->init_output, n->init_output_len);
	secmem_free(n->init_output);
	n->init_output = NULL;
	n->init_output_len = 0;
	uv_timer_stop(&n->shares_timer);
}

/* ---- unseal ---- */

static int try_unseal(struct node *n)
{
	uint8_t *root = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	if (root == NULL)
		return -ENOMEM;
	int rv = unsealer_combine(n->unsealer, root);
	if (rv == 0)
		rv = barrier_unseal(n->barrier, root, n->sealed_keyring.data, n->sealed_keyring.len);
	secmem_free(root);
	unsealer_reset(n->unsealer);
	return rv;
}

static void ctl_unseal_write(struct node *n, struct api_request *req, const uint8_t *in,
			     size_t len)
{
	if (!n->initialized) {
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	if (n->phase != NODE_SEALED) {
		/* Unsealed already (or sealing): nothing to do, like Vault. */
		api_reply(req, n->phase == NODE_CLOSING ? -EBUSY : 0, NULL, 0);
		return;
	}
	if (n->seal_waiter != NULL || n->rejoin_addr != NULL) {
		/* Sealed, but the seal (or a rejoin after it) is not done. */
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	if (ctl_parse_is_reset(in, len)) {
		unsealer_reset(n->unsealer);
		api_reply(req, 0, NULL, 0);
		return;
	}
	uint8_t *share = secmem_alloc(SHAMIR_SHARE_LEN);
	int rv = share ? seal_share_decode((const char *)in, len, share) : -ENOMEM;
	if (rv == 0)
		rv = unsealer_add(n->unsealer, share);
	secmem_free(share);
	if (rv < 0) {
		api_reply(req, rv, NULL, 0);
		return;
	}
	if (unsealer_count(n->unsealer) < unsealer_threshold(n->unsealer)) {
		api_reply(req, 0, NULL, 0);
		return;
	}
	rv = try_unseal(n);
	if (rv == 0)
		rv = node_unseal_start_raft(n);
	if (rv != 0) {
		log_warn("node %s: unseal failed: %s", n->node_id,
			 rv == -EKEYREJECTED ? "the key shares do not open the keyring (progress reset)"
					     : strerror(-rv));
		api_reply(req, rv, NULL, 0);
		return;
	}
	log_info("node %s: unsealed; starting Raft", n->node_id);
	/* Answered once the node serves, so that `echo KEY > unseal; cat f`
	 * works without a retry loop. */
	n->unseal_waiter = req;
}

static void ctl_unseal_read(struct node *n, struct api_request *req)
{
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "progress: %u/%u\n", n->unsealer ? unsealer_count(n->unsealer) : 0,
		   n->threshold);
	reply_text(req, &b);
}

/* ---- seal ---- */

static void ctl_seal_write(struct node *n, struct api_request *req, const uint8_t *in,
			   size_t len)
{
	(void)in;
	(void)len;
	if (n->phase == NODE_SEALED) {
		node_ctl_forget_init_shares(n, "sealed");
		api_reply(req, 0, NULL, 0);
		return;
	}
	if (n->seal_waiter != NULL) {
		api_reply(req, -EBUSY, NULL, 0);
		return;
	}
	log_info("node %s: sealing", n->node_id);
	node_ctl_forget_init_shares(n, "sealed");
	n->seal_waiter = req;
	node_seal_begin(n);
	if (n->phase == NODE_SEALED && n->seal_waiter == req) {
		n->seal_waiter = NULL;
		api_reply(req, 0, NULL, 0);
	}
}

/* ---- join, step-down, remove-peer ---- */

static void ctl_join_read(struct node *n, struct api_request *req)
{
	struct buf b;
	buf_init(&b);
	node_join_state(n, &b);
	reply_text(req, &b);
}

static void ctl_join_write(struct node *n, struct api_request *req, const uint8_t *in,
			   size_t len)
{
	node_join_start(n, req, in, len);
}

static void ctl_step_down_write(struct node *n, struct api_request *req, const uint8_t *in,
				size_t len)
{
	(void)in;
	(void)len;
	node_rpc_step_down(n, req);
}

static void ctl_rotate_write(struct node *n, struct api_request *req, const uint8_t *in,
			     size_t len)
{
	(void)in;
	(void)len;
	node_rpc_rotate(n, req);
}

static void ctl_remove_peer_write(struct node *n, struct api_request *req, const uint8_t *in,
				  size_t len)
{
	node_rpc_remove_peer(n, req, in, len);
}

/* ---- dispatch ---- */

struct ctl_file {
	const char *name;
	bool read_root_only; /* what it shows is key material */
	void (*read)(struct node *n, struct api_request *req);
	void (*write)(struct node *n, struct api_request *req, const uint8_t *in, size_t len);
};

static const struct ctl_file ctl_files[] = {
	{ "status", false, ctl_status, NULL },
	{ "init", true, ctl_init_read, ctl_init_write },
	{ "unseal", false, ctl_unseal_read, ctl_unseal_write },
	{ "seal", false, NULL, ctl_seal_write },
	{ "peers", false, ctl_peers, NULL },
	{ "join", false, ctl_join_read, ctl_join_write },
	{ "step-down", false, NULL, ctl_step_down_write },
	{ "remove-peer", false, NULL, ctl_remove_peer_write },
	{ "rotate", false, NULL, ctl_rotate_write },
	{ "rekey", true, node_rekey_read, node_rekey_write },
	{ "health", false, ctl_health, NULL },
	{ "metrics", false, ctl_metrics, NULL },
	{ "audit-hash", true, node_audit_hash_read, node_audit_hash_write },
};

/* Reads the leading name field and finds its control file. */
static const struct ctl_file *ctl_find(struct cursor *c)
{
	size_t len = 0;
	const uint8_t *name = cursor_blob(c, CTL_NAME_MAX, &len);
	if (name == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(ctl_files) / sizeof(ctl_files[0]); i++) {
		if (strlen(ctl_files[i].name) == len && memcmp(ctl_files[i].name, name, len) == 0)
			return &ctl_files[i];
	}
	return NULL;
}

void node_ctl_read(struct node *n, struct api_request *req)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	const struct ctl_file *f = ctl_find(&c);
	if (f == NULL || cursor_done(&c) != 0) {
		api_reply(req, f == NULL ? -ENOENT : -EBADMSG, NULL, 0);
		return;
	}
	if (f->read == NULL) {
		api_reply(req, 0, NULL, 0);
		return;
	}
	/* Root's, whatever the mount's mode bits say (a mount with other
	 * permissions, or a client of the socket other than a mount). */
	if (f->read_root_only && req->uid != 0) {
		log_warn("node %s: uid %u may not read .vault/%s", n->node_id, req->uid, f->name);
		api_reply(req, -EACCES, NULL, 0);
		return;
	}
	f->read(n, req);
}

void node_ctl_write(struct node *n, struct api_request *req)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	const struct ctl_file *f = ctl_find(&c);
	size_t len = 0;
	const uint8_t *data = cursor_blob(&c, CTL_INPUT_MAX, &len);
	if (f == NULL || cursor_done(&c) != 0) {
		api_reply(req, f == NULL ? -ENOENT : -EINVAL, NULL, 0);
		return;
	}
	if (f->write == NULL) {
		api_reply(req, -EACCES, NULL, 0);
		return;
	}
	/* Control actions are root's, whatever the mount's mode bits say. */
	if (req->uid != 0) {
		log_warn("node %s: uid %u may not write .vault/%s", n->node_id, req->uid, f->name);
		api_reply(req, -EACCES, NULL, 0);
		return;
	}
	f->write(n, req, data, len);
}
