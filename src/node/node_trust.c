/* Who this node is, and which identities are members.
 *
 * Identity: each node's long-term key pair (crypto/channel.h), made when it
 * initialises a vault or first unseals after joining one, and kept in
 * <data_dir>/identity with the secret key encrypted under the keyring, so
 * that a disk without the unseal key shares does not give it away. The
 * public key is part of the node's Raft address (raft/raftaddr.h): it
 * enters the replicated configuration when the node is added and leaves it
 * when the node is removed, so removal revokes it on every member.
 *
 * Members: an identity belongs to a member if this node's Raft
 * configuration has an address carrying it. A node can lack a member's
 * identity: joining, it has no configuration yet; back from a long outage,
 * it may not know a member that joined meanwhile and now leads. Such a node
 * learns by introduction: it asks the members it knows (and, while joining,
 * the node it joins through) for their configuration (NODE_RPC_MEMBERS),
 * over channels that prove the identities it dialled, and also accepts the
 * identities in the answers for INTRO_TTL_MS. Its own configuration takes
 * over once it catches up. A leader never goes by introductions: its
 * configuration is the newest. Each use of an introduction asks again (at
 * most once per INTRO_ASK_EVERY_MS), and each round's answers replace the
 * last round's, so an introduction of a node removed since lapses within a
 * round; with no answers at all, introductions lapse after INTRO_TTL_MS.
 * The joiner trusts the node it joins through as far as it trusts the join
 * itself: that node holds the cluster key. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/secmem.h"
#include "lib/fileutil.h"
#include "lib/log.h"
#include "raft/raftaddr.h"

#define IDENTITY_MAGIC "VFSID001"
#define IDENTITY_MAGIC_LEN 8u
#define IDENTITY_FILE_MAX 4096u
#define INTRO_MAX 64u             /* identities learnt by introduction */
#define INTRO_TTL_MS 10000u       /* how long an introduction counts */
#define INTRO_ASK_EVERY_MS 1000u  /* at most one round of questions per second */

/* The identity's secret key is bound to its public key. */
static const char identity_aad[] = "vaultfs-identity-v1";

struct intro {
	raft_id id;
	char *address;
};

struct node_trust {
	char path[4096];                   /* <data_dir>/identity */
	struct channel_identity *identity; /* secure memory */
	bool have_identity;
	struct intro intros[INTRO_MAX];
	unsigned n_intros;
	uint64_t intro_until; /* uv_now: introductions count until then */
	uint64_t last_ask;    /* uv_now of the last round of questions */
	bool ask_wanted;      /* an unknown identity knocked */
	uint64_t round;       /* rounds of questions asked */
	uint64_t intro_round; /* the round the introductions come from */
	bool removed;         /* a member's configuration lacks this node */
	uv_timer_t timer;     /* rounds of questions, every INTRO_ASK_EVERY_MS */
};

/* One MEMBERS question in flight. */
struct ask {
	struct node *node;
	uint64_t round;
	bool verified; /* the answer comes from the identity we dialled: */
	uint8_t responder[CHANNEL_ID_LEN];
};

static void identity_aad_of(const struct channel_identity *id, struct buf *aad)
{
	buf_put_raw(aad, identity_aad, sizeof identity_aad - 1);
	buf_put_raw(aad, id->pk, CHANNEL_ID_LEN);
}

static int identity_save(struct node *n, const struct channel_identity *id)
{
	const char *path = n->trust->path;
	struct buf aad, file;
	buf_init(&aad);
	buf_init(&file);
	identity_aad_of(id, &aad);
	buf_put_raw(&file, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN);
	buf_put_raw(&file, id->pk, CHANNEL_ID_LEN);
	struct buf ct;
	buf_init(&ct);
	int rv = aad.err != 0 ? aad.err
			      : barrier_encrypt(n->barrier, aad.data, aad.len, id->sk,
						CHANNEL_ID_LEN, &ct);
	buf_put_blob(&file, ct.data, ct.len);
	if (rv == 0)
		rv = file.err != 0 ? file.err : file_write_atomic(path, file.data, file.len, 0600);
	buf_free(&ct);
	buf_free(&aad);
	buf_free(&file);
	return rv;
}

/* 0, -ENOENT (no file), -EBADMSG (not an identity file, or its secret key
 * does not match its public key), or the barrier's error (-ENOKEY: made
 * under another keyring). */
static int identity_load(struct node *n, struct channel_identity *id)
{
	const char *path = n->trust->path;
	struct buf file, aad, sk;
	buf_init(&file);
	buf_init(&aad);
	buf_init(&sk);
	int rv = file_read_all(path, IDENTITY_FILE_MAX, &file);
	struct cursor c;
	cursor_init(&c, file.data, file.len);
	const uint8_t *magic = cursor_raw(&c, IDENTITY_MAGIC_LEN);
	const uint8_t *pk = cursor_raw(&c, CHANNEL_ID_LEN);
	size_t ct_len = 0;
	const uint8_t *ct = cursor_blob(&c, IDENTITY_FILE_MAX, &ct_len);
	if (rv == 0 && (cursor_done(&c) != 0 || memcmp(magic, IDENTITY_MAGIC, IDENTITY_MAGIC_LEN)))
		rv = -EBADMSG;
	if (rv == 0) {
		memcpy(id->pk, pk, CHANNEL_ID_LEN);
		identity_aad_of(id, &aad);
		rv = aad.err != 0 ? aad.err
				  : barrier_decrypt(n->barrier, aad.data, aad.len, ct, ct_len, &sk);
	}
	if (rv == 0 && sk.len != CHANNEL_ID_LEN)
		rv = -EBADMSG;
	if (rv == 0) {
		memcpy(id->sk, sk.data, CHANNEL_ID_LEN);
		channel_identity_derive(id);
		if (memcmp(id->pk, pk, CHANNEL_ID_LEN) != 0)
			rv = -EBADMSG;
	}
	buf_free(&file);
	buf_free(&aad);
	buf_free(&sk);
	return rv;
}

static int set_raft_address(struct node *n)
{
	char address[RAFTADDR_MAX + 1];
	int rv = raftaddr_format(address, sizeof address, n->node_id, n->cluster_addr,
				 n->trust->identity->pk);
	char *copy = rv == 0 ? strdup(address) : NULL;
	if (copy == NULL)
		return rv != 0 ? rv : -ENOMEM;
	free(n->raft_address);
	n->raft_address = copy;
	return 0;
}

int node_trust_identity(struct node *n, bool fresh)
{
	const char *path = n->trust->path;
	struct node_trust *t = n->trust;
	int rv = fresh ? -ENOENT : identity_load(n, t->identity);
	if (rv == -ENOENT) {
		channel_identity_generate(t->identity);
		rv = identity_save(n, t->identity);
		if (rv != 0)
			log_error("node %s: %s: cannot write: %s", n->node_id, path, strerror(-rv));
		else if (!fresh)
			log_info("node %s: made its identity key pair (%s)", n->node_id, path);
	} else if (rv != 0) {
		log_error("node %s: %s does not open with this vault's keys (%s); if this node "
			  "is no member, move the file aside and unseal again; if it is one, "
			  "write '%s' to .vault/remove-peer on another member, move %s aside, and "
			  "join this node again",
			  n->node_id, path, strerror(-rv), n->node_id, n->data_dir);
		rv = -EIO;
	}
	if (rv == 0)
		rv = set_raft_address(n);
	t->have_identity = rv == 0;
	return rv;
}

const struct channel_identity *node_trust_me(const struct node *n)
{
	assert(n->trust->have_identity);
	return n->trust->identity;
}

void node_trust_identity_hex(const struct node *n, char out[RAFTADDR_ID_HEX + 1])
{
	out[0] = '\0';
	if (n->trust->have_identity)
		sodium_bin2hex(out, RAFTADDR_ID_HEX + 1, n->trust->identity->pk, CHANNEL_ID_LEN);
}

void node_trust_forget_identity(struct node *n)
{
	const char *path = n->trust->path;
	if (unlink(path) != 0 && errno != ENOENT)
		log_warn("node %s: cannot remove %s: %s", n->node_id, path, strerror(errno));
	n->trust->have_identity = false;
	n->trust->removed = false; /* that was the old identity */
}

/* ---- Members and introductions ---- */

static void intros_clear(struct node_trust *t)
{
	for (unsigned i = 0; i < t->n_intros; i++)
		free(t->intros[i].address);
	t->n_intros = 0;
}

static void intro_add(struct node_trust *t, raft_id id, const char *address, size_t len)
{
	for (unsigned i = 0; i < t->n_intros; i++)
		if (t->intros[i].id == id && strncmp(t->intros[i].address, address, len) == 0 &&
		    t->intros[i].address[len] == '\0')
			return;
	if (t->n_intros == INTRO_MAX)
		intros_clear(t);
	char *copy = strndup(address, len);
	if (copy == NULL)
		return;
	t->intros[t->n_intros].id = id;
	t->intros[t->n_intros].address = copy;
	t->n_intros++;
}

static void trust_want_intros(struct node *n);

int node_trust_identify(void *ctx, const uint8_t key[CHANNEL_ID_LEN], uint64_t *ret_id,
			const char **ret_address)
{
	struct node *n = ctx;
	struct node_trust *t = n->trust;
	if (n->session != NULL) {
		const struct raft_configuration *conf = &n->session->raft.configuration;
		for (unsigned i = 0; i < conf->n; i++) {
			if (raftaddr_has_id(conf->servers[i].address, key)) {
				*ret_id = conf->servers[i].id;
				*ret_address = conf->servers[i].address;
				return 0;
			}
		}
	}
	/* The leader's configuration is the newest there is: an identity it
	 * does not list is no member (a joiner, a removed node). */
	if (node_query_is_leader(n))
		return -ENOENT;
	/* Every use of an introduction asks again, so that one made before a
	 * removal stops counting within a round. */
	trust_want_intros(n);
	if (uv_now(n->loop) < t->intro_until) {
		for (unsigned i = 0; i < t->n_intros; i++) {
			if (raftaddr_has_id(t->intros[i].address, key)) {
				*ret_id = t->intros[i].id;
				*ret_address = t->intros[i].address;
				return 0;
			}
		}
	}
	return -ENOENT;
}

/* MEMBERS answer: u32 n, then n times u64 id, blob address. */
void node_trust_serve_members(struct node *n, struct transport_rpc_req *rpc)
{
	const struct raft_configuration *conf = &n->session->raft.configuration;
	struct buf b;
	buf_init(&b);
	buf_put_u32(&b, conf->n);
	for (unsigned i = 0; i < conf->n; i++) {
		buf_put_u64(&b, conf->servers[i].id);
		buf_put_blob(&b, conf->servers[i].address, strlen(conf->servers[i].address));
	}
	transport_rpc_reply(rpc, b.err, b.err == 0 ? b.data : NULL, b.err == 0 ? b.len : 0);
	buf_free(&b);
}

/* Takes the introductions of an answer to Q. Returns whether the answer
 * lists this node (by identity or by id); *RET_SELF tells whether it lists
 * its responder. */
static bool members_answer(struct node *n, const struct ask *q, const uint8_t *resp, size_t len,
			   bool *ret_self)
{
	struct node_trust *t = n->trust;
	bool me = false;
	*ret_self = false;
	/* A round's first answer replaces the last round's introductions;
	 * until then those stand, so a member known only by introduction
	 * keeps its connection. */
	if (q->round != t->intro_round) {
		intros_clear(t);
		t->intro_round = q->round;
	}
	struct cursor c;
	cursor_init(&c, resp, len);
	uint32_t count = cursor_u32(&c);
	for (uint32_t i = 0; i < count && i < INTRO_MAX && c.err == 0; i++) {
		raft_id id = cursor_u64(&c);
		size_t alen = 0;
		const uint8_t *address = cursor_blob(&c, RAFTADDR_MAX, &alen);
		struct raftaddr a;
		char text[RAFTADDR_MAX + 1];
		if (c.err != 0 || id == 0 || memchr(address, '\0', alen) != NULL)
			break;
		memcpy(text, address, alen);
		text[alen] = '\0';
		if (raftaddr_parse(text, &a) != 0 || !a.has_id)
			continue;
		if (memcmp(a.id, q->responder, CHANNEL_ID_LEN) == 0)
			*ret_self = true;
		/* Listed under its id with another identity, this node was not
		 * removed: its identity file was replaced (check_own_identity). */
		if (memcmp(a.id, t->identity->pk, CHANNEL_ID_LEN) == 0 || id == n->raft_id)
			me = true;
		else
			intro_add(t, id, text, alen);
	}
	t->intro_until = uv_now(n->loop) + INTRO_TTL_MS;
	return me;
}

static void on_members(void *arg, int status, const uint8_t *resp, size_t len)
{
	struct ask *q = arg;
	struct node *n = q->node;
	bool self = false, me = false;
	if (status == 0 && n->phase != NODE_CLOSING && n->session != NULL)
		me = members_answer(n, q, resp, len, &self);
	bool verified = q->verified;
	free(q);
	/* Only a member this node dialled by identity, which counts itself a
	 * member (not one that is still joining), can tell this node that it
	 * was removed; anyone else holding the cluster key could lie. */
	if (status != 0 || !verified || !self || me == !n->trust->removed)
		return;
	n->trust->removed = !me;
	if (!me)
		log_warn("node %s: the members no longer list this node: it was removed from the "
			 "cluster (remove-peer). To serve again, move %s aside, start vaultfsd again "
			 "and join", n->node_id, n->data_dir);
}

static void trust_ask(struct node *n, const char *address)
{
	struct raftaddr a;
	struct ask *q = calloc(1, sizeof *q);
	if (q == NULL)
		return;
	q->node = n;
	q->round = n->trust->round;
	q->verified = raftaddr_parse(address, &a) == 0 && a.has_id;
	if (q->verified)
		memcpy(q->responder, a.id, CHANNEL_ID_LEN);
	/* Failures are retried by the next round. */
	if (transport_rpc(n->session->transport, address, NODE_RPC_MEMBERS, NULL, 0,
			  n->cfg.request_timeout_ms, on_members, q) != 0)
		free(q);
}

/* A round, when wanted: every other member this node knows, and the node
 * it joins through while it is not in the configuration. Wanted when an
 * unknown identity knocked, and while no leader is known: a removed node
 * hears from nobody and must ask to learn that it was removed. */
static void on_trust_timer(uv_timer_t *timer)
{
	struct node *n = timer->data;
	struct node_trust *t = n->trust;
	if (n->session == NULL || n->phase == NODE_CLOSING) {
		uv_timer_stop(timer);
		return;
	}
	raft_id leader;
	const char *leader_address;
	raft_leader(&n->session->raft, &leader, &leader_address);
	if (!t->ask_wanted && leader != 0)
		return;
	t->ask_wanted = false;
	t->last_ask = uv_now(n->loop);
	t->round++;
	const struct raft_configuration *conf = &n->session->raft.configuration;
	for (unsigned i = 0; i < conf->n; i++)
		if (conf->servers[i].id != n->raft_id)
			trust_ask(n, conf->servers[i].address);
	if (n->join_addr != NULL && !node_query_in_configuration(n))
		trust_ask(n, n->join_addr);
}

static void trust_want_intros(struct node *n)
{
	struct node_trust *t = n->trust;
	if (n->session == NULL || t->ask_wanted)
		return;
	t->ask_wanted = true;
	/* From the timer: identify runs inside the transport's dispatch. */
	if (uv_now(n->loop) >= t->last_ask + INTRO_ASK_EVERY_MS)
		uv_timer_start(&t->timer, on_trust_timer, 0, INTRO_ASK_EVERY_MS);
}

bool node_trust_removed(const struct node *n)
{
	return n->trust->removed;
}

void node_trust_joining(struct node *n)
{
	trust_want_intros(n);
}

/* A member whose identity file was lost or replaced is known to the others
 * by its old identity, and they will not listen to the new one. */
static void check_own_identity(struct node *n)
{
	const struct raft_configuration *conf = &n->session->raft.configuration;
	for (unsigned i = 0; i < conf->n; i++) {
		struct raftaddr a;
		const char *address = conf->servers[i].address;
		if (conf->servers[i].id != n->raft_id || raftaddr_has_id(address, n->trust->identity->pk))
			continue;
		/* A configuration from before node identities: alone, the node
		 * needs none; with others, nobody can tell who is who, and a
		 * joiner cannot check the leader. */
		if (raftaddr_parse(address, &a) == 0 && !a.has_id)
			log_warn("node %s: its Raft configuration was made before node identities: "
				 "a one-node vault serves as before but cannot take members, and the "
				 "members of a cluster will not recognise each other; form such a "
				 "cluster again", n->node_id);
		else
			log_error("node %s: the cluster knows this node as %s, with another identity "
				  "than its identity file's (lost or replaced?); the members will not "
				  "listen to it. Write '%s' to .vault/remove-peer on another member, "
				  "move %s aside, start vaultfsd again and join",
				  n->node_id, conf->servers[i].address, n->node_id, n->data_dir);
	}
}

void node_trust_session_start(struct node *n)
{
	struct node_trust *t = n->trust;
	check_own_identity(n);
	intros_clear(t);
	t->intro_until = 0;
	t->last_ask = 0;
	t->ask_wanted = false;
	t->removed = false;
	uv_timer_start(&t->timer, on_trust_timer, INTRO_ASK_EVERY_MS, INTRO_ASK_EVERY_MS);
}

/* ---- Lifecycle ---- */

int node_trust_init(struct node *n)
{
	struct node_trust *t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	t->identity = secmem_alloc(sizeof *t->identity);
	if (t->identity == NULL) {
		free(t);
		return -ENOMEM;
	}
	if (snprintf(t->path, sizeof t->path, "%s/identity", n->data_dir) >= (int)sizeof t->path) {
		secmem_free(t->identity);
		free(t);
		return -ENAMETOOLONG;
	}
	n->trust = t;
	return 0;
}

void node_trust_open(struct node *n)
{
	uv_timer_init(n->loop, &n->trust->timer);
	n->trust->timer.data = n;
}

int node_trust_close(struct node *n)
{
	uv_close((uv_handle_t *)&n->trust->timer, node_handle_closed);
	return 1;
}

void node_trust_free(struct node *n)
{
	struct node_trust *t = n->trust;
	if (t == NULL)
		return;
	intros_clear(t);
	secmem_free(t->identity);
	free(t);
	n->trust = NULL;
}
