/* Shared between the files of the node module only; not an interface. */
#ifndef VAULTFS_NODE_INTERNAL_H
#define VAULTFS_NODE_INTERNAL_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api/server.h"
#include "coherence/coherence.h"
#include "crypto/barrier.h"
#include "crypto/seal.h"
#include "raft/fsm.h"
#include "raft/transport.h"
#include "lib/buf.h"
#include "node/node.h"
#include "store/store.h"

enum node_phase {
	NODE_SEALED,   /* no keys, Raft not running */
	NODE_STARTING, /* keys present, Raft started, not yet serving */
	NODE_ACTIVE,   /* serving requests */
	NODE_CLOSING,  /* Raft closing (seal or shutdown) */
};

/* One run of Raft, from unseal to seal. Heap-allocated because libraft's
 * close is asynchronous and may outlive a seal/unseal cycle's request. */
struct raft_session {
	struct raft raft;
	struct raft_io io;
	struct fsm fsm;
	struct store *store;
	struct raft_barrier ready_barrier;
	struct transport *transport; /* owned by io once raftio_init succeeded */
	struct node *node;
};

/* The version of the node RPC payloads below (transport_config's
 * rpc_version). Version 0, a previous release's, has the same bytes: it
 * carried no version. A node answers in the version it was asked in, and
 * refuses a higher one than its own with -EPROTONOSUPPORT, so that a later
 * release can fall back; a previous release cannot refuse, so a change
 * that it would misread waits until no previous-release node is left. */
#define NODE_RPC_VERSION 2
/* A node that sends this version or later answers NODE_RPC_FEATURES and
 * applies every command of CMD_FEATURES_CURRENT (node_features.c). */
#define NODE_RPC_VERSION_FEATURES 2

/* RPCs between nodes (transport_rpc types). */
enum node_rpc {
	NODE_RPC_FORWARD = 1, /* encoded command -> i64 result, u8 has_attr, [attr] */
	NODE_RPC_READ_INDEX,  /* u64 commit, [u8 flags] -> u64 index: reads after
			       * it are linearizable; u64 safe index */
	NODE_RPC_STEP_DOWN,   /* -> answered once leadership moved */
	NODE_RPC_JOIN,        /* u64 raft id, address -> answered once in the
			       * configuration as a non-voter given the log (a
			       * voter, from a leader before autopilot's
			       * server_stabilization_time) */
	NODE_RPC_REMOVE,      /* node_id -> answered once removed */
	NODE_RPC_CONFIRM,     /* u64 term -> 0 if the receiver follows the sender in that term */
	NODE_RPC_VISIBLE,     /* u64 term, u64 index: the sender's mounts show index (coherence.c) */
	NODE_RPC_SAFE,        /* u64 index -> u64 safe index, once it reaches index (node_safe.c) */
	NODE_RPC_MEMBERS,     /* -> the receiver's configuration (node_trust.c) */
	NODE_RPC_ROTATE,      /* -> answered once a new key term is committed (node_keys.c) */
	NODE_RPC_REKEY,       /* u8 shares, u8 threshold, root key -> answered once committed */
	NODE_RPC_RESTORE,     /* a restore step (raft/fsm.h) -> i64 result, u64 index */
	NODE_RPC_FEATURES,    /* -> u32 the highest feature level (cmd.h) the receiver applies */
	NODE_RPC_PROXIED = 0x100, /* flag: already relayed once, do not relay again */
};

/* NODE_RPC_READ_INDEX flags: the asker will hold no cache grants from
 * this round (its storage is down: node_storage.c). */
#define NODE_READ_INDEX_NO_GRANTS 1u

/* A callback waiting for the local state machine to reach an index. */
struct apply_waiter {
	struct apply_waiter *next;
	uint64_t index;
	uint64_t deadline; /* uv_now ms */
	void (*cb)(void *arg, int status);
	void *arg;
};

/* A client request waiting for a linearizable read point. */
struct read_op {
	struct read_op *next;
	struct api_request *req;
	uint64_t deadline;
};

/* A write in flight: proposed locally or forwarded to the leader, retried
 * with the same (client_id, seq) until answered or its deadline passes. */
struct write_op {
	struct write_op *next;
	struct write_op *prev;
	struct node *node;
	struct api_request *req; /* NULL once answered */
	uint64_t seq;
	uint64_t deadline;
	struct buf cmd;          /* the encoded command (plaintext: wiped on free) */
	int inflight;            /* a raft_apply or an RPC is outstanding */
	bool has_attr;           /* the leader sent the resulting attributes */
	struct vfs_attr attr;
	bool retry;              /* waiting for the retry timer */
	unsigned launched;       /* attempts proposed or sent: each may commit */
	int64_t result;          /* applied, waiting to be visible (node_watch.c) */
	struct raft_apply apply;
};

struct node {
	/* node.c: configuration, seal state and the Raft session. */
	uv_loop_t *loop;
	char *data_dir;
	char *node_id;
	char *cluster_addr;
	char *raft_address; /* "node_id@host:port", the address kept in Raft's configuration */
	struct node_config cfg;
	char seal_path[4096];
	bool initialized;
	unsigned shares;
	unsigned threshold;
	struct buf sealed_keyring;
	struct unsealer *unsealer;
	struct barrier *barrier;
	char *init_output; /* key shares text until read once; secure memory */
	size_t init_output_len;
	uv_timer_t shares_timer; /* forgets init_output if it is not read */
	enum node_phase phase;
	struct raft_session *session;
	raft_id raft_id;
	uv_timer_t ready_timer;
	uv_timer_t fatal_timer; /* seals the node after a state machine failure */
	uint64_t ready_deadline;
	struct api_request *unseal_waiter; /* the unseal write waiting for readiness */
	struct api_request *seal_waiter;   /* the seal write waiting for Raft to close */
	bool stopping;
	void (*stop_cb)(void *arg);
	void *stop_arg;
	int handles_open; /* while stopping */
	/* Term of the last barrier this node committed as leader: set by
	 * whichever file commits one (node_query_committed_in_term). */
	uint64_t barrier_term;
	int64_t started_ns; /* shown as the root's times while sealed */
	bool recover_pending; /* -recover, not done yet (node.c, start_raft) */
	/* Proposer identity for the state machine's deduplication. */
	uint64_t client_id;
	uint64_t seq;

	/* node_ops.c: requests in flight, read rounds and leases. */
	struct write_op *writes;       /* doubly linked, oldest first */
	struct read_op *read_queue;    /* waiting for the next read round */
	struct read_op *read_round;    /* served by the round in flight */
	bool read_round_inflight;
	struct raft_barrier read_barrier;
	uint64_t read_round_index;     /* what the leader's round must have applied */
	uint64_t read_round_start_ns;  /* when the round in flight started (grants) */
	bool lease_renew;              /* a round without reads should start */

	/* node_safe.c: answers waiting for the safe index. */
	struct safe_reply *safe_replies;
	bool safe_asking;              /* NODE_RPC_SAFE in flight */
	uint64_t names_gone_index;     /* the last entry that removed or moved
					* a name; UINT64_MAX: a whole state
					* came since (node_safe_changed) */

	/* node_confirm.c: leadership confirmation rounds. */
	struct confirm_round *confirm_round; /* the round in flight */
	struct confirm_waiter *confirm_queue; /* waiting for the next round */

	/* node_cluster.c: apply waiters, retries, commit pushes, quick
	 * elections. */
	struct apply_waiter *apply_waiters;
	uv_check_t apply_check;        /* runs the waiters after each loop turn */
	uv_timer_t retry_timer;        /* retries and deadlines */
	uint64_t pushed_commit; /* commit index last pushed to followers, this session */
	uint64_t pushed_at;     /* uv_now of that push */
	uv_check_t push_check;  /* watches push_follower's match index */
	raft_id push_follower;  /* 0: none watched */
	uint64_t push_commit;   /* the index it needs */
	uint64_t push_since;    /* uv_now when it asked */
	uv_timer_t quick_election;     /* re-runs an election after the leader died */
	unsigned quick_elections_left;
	uint64_t join_refused_at;      /* uv_now of the last EEXIST logged (leader) */

	/* node_join.c: this node joining a cluster. */
	char *join_addr;               /* where to ask to be added; saved in the seal file */
	struct transport_join_fetch *join_fetch;
	uv_timer_t join_timer;         /* retries fetching the join info */
	uint64_t join_rpc_last;        /* uv_now of the last JOIN RPC sent */
	struct api_request *join_waiter;
	uint64_t join_deadline;
	bool join_rpc_inflight;
	int join_rpc_status;           /* outcome of the last JOIN RPC */
	struct node_retry_join *retry_join; /* retry_join addresses; NULL: none */
	char *rejoin_addr;             /* a rejoin waiting for its seal */

	/* node_transfer.c: step-down and hand-over. */
	struct raft_transfer transfer;
	bool transfer_inflight;
	struct api_request *transfer_waiter;
	struct transport_rpc_req *transfer_rpc;
	bool seal_after_transfer;
	void (*hand_over_close)(struct node *n);

	/* State of the other node files, each in its own struct. */
	struct node_watch *watch; /* node_watch.c: notices to the mounts */
	struct coherence *coherence; /* src/coherence: its rules (node_watch.c makes it) */
	struct node_trust *trust; /* node_trust.c: identity and members */
	struct node_keys *keys;   /* node_keys.c: key rotation */
	struct node_rekey *rekey; /* node_rekey.c: .vault/rekey */
	struct node_storage *storage; /* node_storage.c: storage health */
	struct node_metrics *metrics; /* node_metrics.c: counters and histograms */
	struct node_autopilot *autopilot; /* node_autopilot.c: dead-server cleanup */
	struct node_features *features; /* node_features.c: the cluster's feature level */
	struct node_snapshot *snapshot; /* node_snapshot.c: control streams, schedule */
	struct node_backup *backup; /* node_backup.c: the backup being taken */
	struct node_restore *restore; /* node_restore.c: restores */
	struct node_audit *audit; /* node_audit.c: the audit log; NULL: none */
};

/* node.c */
/* Close callback of every handle inside struct node: frees it after the last. */
void node_handle_closed(uv_handle_t *h);
/* The same for something counted as a handle that is not one (work on a
 * thread that outlived the node's close). */
void node_handle_released(struct node *n);
/* The Raft id of a node id (a hash: ids need not be numbers). */
raft_id node_raft_id_of(const char *node_id);
int64_t node_now_ns(void);
/* Writes shares, threshold and the sealed keyring durably. 0 or -errno. */
int node_save_seal_file(struct node *n);
/* Writes the one-voter configuration of a fresh cluster. 0 or -errno. */
int node_bootstrap_raft(struct node *n);
int node_unseal_start_raft(struct node *n);
/* Starts Raft again with the keys kept (storage reopened): 0 or -errno;
 * the barrier stays unsealed either way. */
int node_restart_raft(struct node *n);
/* Stops serving (what waits gets STATUS), hands leadership over and closes
 * the session, keeping the keys; node_storage_session_closed follows
 * unless a seal or a stop was asked for meanwhile. */
void node_close_raft_keep_keys(struct node *n, int status);
void node_seal_begin(struct node *n);
const char *node_phase_name(const struct node *n);
/* A node made from a backup restored it (STATUS 0: it serves now) or could
 * not (it seals). */
void node_ready_after_restore(struct node *n, int status);

/* node_ctl.c: the .vault control files. */
void node_ctl_read(struct node *n, struct api_request *req);
void node_ctl_write(struct node *n, struct api_request *req);
/* .vault/health: one word, "active", "standby", "sealed", "uninitialized",
 * "no-leader" or "removed". */
const char *node_ctl_health(struct node *n);
/* Forgets init's key shares if they are still unread (seal, timeout),
 * logging WHY and what the operator must do. */
void node_ctl_forget_init_shares(struct node *n, const char *why);
/* Unseal key shares as init shows them, into *RET (secure memory, the
 * caller frees it with secmem_free): WHAT is "Initialized" or "Rekeyed". */
int node_ctl_format_shares(const uint8_t *shares, unsigned count, unsigned threshold,
			   const char *what, char **ret, size_t *ret_len);

/* node_rekey.c: .vault/rekey (new unseal key shares for the cluster). */
int node_rekey_init(struct node *n); /* 0 or -ENOMEM */
void node_rekey_free(struct node *n);
void node_rekey_read(struct node *n, struct api_request *req);
void node_rekey_write(struct node *n, struct api_request *req, const uint8_t *in, size_t len);
/* Leader: NODE_RPC_REKEY. */
void node_rekey_serve(struct node *n, struct transport_rpc_req *rpc);
/* At seal: forgets a rekey not committed (its shares never open anything). */
void node_rekey_forget(struct node *n);

/* node_ops.c: tree operations. */
void node_ops_read(struct node *n, struct api_request *req);
void node_ops_write(struct node *n, struct api_request *req);
/* VFS_OP_WRITABLE: answers whether a write could commit now (proto.h). */
void node_ops_writable(struct node *n, struct api_request *req);
bool node_ops_is_write(uint16_t op);
/* Answers every waiting read and write with STATUS (seal, shutdown). */
void node_ops_fail_all(struct node *n, int status);
/* Retries due writes and reads, expires deadlines (retry timer). */
void node_ops_retry(struct node *n);
/* At stop: frees answered writes whose attempt will never call back. */
void node_ops_free_finished(struct node *n);

/* node_confirm.c: leadership confirmed by a majority, without a log write. */
typedef void (*node_confirm_cb)(void *arg, int status);
/* Calls CB(ARG, 0) once a majority of the voters confirmed, in a round that
 * began after this call, that this node leads in its current term; else
 * CB(ARG, -EAGAIN). Rounds are shared by concurrent callers. CB may run
 * before this returns. Returns 0, or -ENOMEM (CB not called). */
int node_confirm_leadership(struct node *n, node_confirm_cb cb, void *arg);
/* Answers the callers still waiting for a round with STATUS (seal). A round
 * in flight ends by itself when the transport closes. */
void node_confirm_fail_queued(struct node *n, int status);
/* A voter's answer to NODE_RPC_CONFIRM. */
void node_confirm_serve(struct node *n, struct transport_rpc_req *rpc);

/* node_watch.c: kernel cache coherence, the node side of VFS_OP_WATCH
 * around src/coherence (n->coherence, which it makes and feeds; the other
 * node files ask it directly: the rules are in coherence.c). */
int node_watch_init(struct node *n);   /* at node_start: 0 or -ENOMEM */
int node_watch_close(struct node *n);  /* closes its handles; returns how many */
void node_watch_free(struct node *n);  /* after they closed */
/* The fsm's on_change callback (ARG is the node). */
void node_watch_changed(void *arg, const struct store_changes *ch);
/* The seq of the state applied now (what a response's state_index says):
 * the answer reflects every notice up to it, all of each, and nothing
 * applied later (a change after it goes into a later notice). */
uint64_t node_watch_state_seq(struct node *n);
/* The grant for REQ's answer, made linearizable by a round that started at
 * ROUND_START_NS (a sole voter: now): a CLOCK_MONOTONIC deadline in ns, or
 * 0 when this node may not grant, or REQ's process does not watch it. */
uint64_t node_watch_grant(struct node *n, const struct api_request *req,
			  uint64_t round_start_ns);
/* Leader: NODE_RPC_VISIBLE from a follower. */
void node_watch_serve_visible(struct node *n, struct transport_rpc_req *rpc);

/* node_safe.c: answers that show the state wait until it is safe. */
/* Answers REQ with RV and DATA (copied if need be) once the state applied
 * now is safe (at once for local reads). */
void node_safe_reply(struct node *n, struct api_request *req, int rv, const uint8_t *data,
		     size_t len);
/* The same for an answer that a name is absent: at once when no entry
 * that is not safe yet removed or moved a name (node_safe.c says why). */
void node_safe_reply_absent(struct node *n, struct api_request *req, int rv,
			    const uint8_t *data, size_t len);
/* Every change applied (CH NULL: a whole state came, from a snapshot or a
 * restore), and a session's start (CH NULL). */
void node_safe_changed(struct node *n, const struct store_changes *ch);
/* Follower: the leader's safe index is at least SAFE. */
void node_safe_learned(struct node *n, uint64_t safe);
/* Leader: NODE_RPC_SAFE. */
void node_safe_serve(struct node *n, struct transport_rpc_req *rpc);
/* From the retry timer: true while answers still wait. */
bool node_safe_retry(struct node *n);
/* At seal: every waiting answer gets STATUS. */
void node_safe_fail_all(struct node *n, int status);

/* node_query.c: leaf queries and errno mappings (calls no other node
 * file). */
bool node_query_is_leader(const struct node *n);
/* The leader's Raft address ("node_id@host:port"), or NULL if unknown. */
const char *node_query_leader_address(const struct node *n);
/* How many servers of R's configuration are voters. */
unsigned node_query_voter_count(const struct raft *r);
/* (N has a session.) A majority of the voters is in touch: a follower
 * heard from its leader, a leader from enough voters, within an election
 * timeout. */
bool node_query_quorum_in_touch(struct node *n);
/* The server ID in R's configuration, or NULL. */
const struct raft_server *node_query_config_find(const struct raft *r, raft_id id);
/* This node is in its session's configuration. */
bool node_query_in_configuration(const struct node *n);
/* True once this node, as leader, committed an entry of its current term
 * (barrier_term): from then on its commit index is complete (thesis 6.4). */
bool node_query_committed_in_term(const struct node *n);
/* True if this node is the only voter: its own reads are linearizable. */
bool node_query_is_sole_voter(const struct node *n);
uint64_t node_query_applied_index(const struct node *n);
/* How long one attempt (an RPC to the leader) may take: a fraction of the
 * request timeout, so that a lost answer leaves time for a retry. */
unsigned node_query_attempt_timeout(const struct node *n, uint64_t deadline);
/* A libraft status as the -errno users see. */
int node_query_raft_errno(int status);
/* Maps "the leader could not be reached" errors to -EAGAIN. */
int node_query_unreachable_errno(int status);

/* node_cluster.c: the cluster around Raft. */
int node_cluster_init(struct node *n);  /* handles, at node_start */
/* Closes the module's handles (node_handle_closed for each); returns how
 * many. */
int node_cluster_close(struct node *n);
/* The transport of session S, with node_rpc_handle for its RPCs. */
int node_cluster_transport(struct node *n, struct raft_session *s);
/* Leader: sends FOLLOWER our commit index now, and again once it has
 * stored the entries up to it. */
void node_cluster_push_commit(struct node *n, raft_id follower);
/* Calls CB(ARG, 0) once the state machine applied INDEX, or
 * CB(ARG, -EAGAIN) at DEADLINE; may call it before returning. */
void node_cluster_wait_applied(struct node *n, uint64_t index, uint64_t deadline,
			       void (*cb)(void *arg, int status), void *arg);
void node_cluster_fail_apply_waiters(struct node *n, int status);
/* raft_apply of ENTRY (raft_malloc'd) with APPLY and CB; on failure the
 * entry is freed and the error returned as -errno. */
int node_cluster_propose(struct node *n, struct raft_apply *apply, struct raft_buffer *entry,
			 raft_apply_cb cb);
void node_cluster_retry_soon(struct node *n);

/* node_rpc.c: node RPCs, served and sent. */
/* transport_rpc_handler of the cluster transport (CTX is the node). */
void node_rpc_handle(void *ctx, struct transport_rpc_req *rpc);
/* Answers RPC (a struct transport_rpc_req *) with STATUS and no payload: a
 * completion callback for leader work asked for by another member. */
void node_rpc_reply_status(void *rpc, int status);
/* .vault/step-down and .vault/remove-peer, here or through the leader. */
void node_rpc_step_down(struct node *n, struct api_request *req);
void node_rpc_remove_peer(struct node *n, struct api_request *req, const uint8_t *id,
			  size_t len);
/* .vault/rotate: a new key term, through the leader. */
void node_rpc_rotate(struct node *n, struct api_request *req);
/* Leader: removes member ID as remove-peer does (and rotates); DONE(n,
 * status) when finished. */
void node_rpc_remove_dead(struct node *n, raft_id id, void (*done)(struct node *n, int status));

/* node_join.c: joining a cluster (.vault/join, retry_join). */
int node_join_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
/* Opens its timers; starts retry_join on an uninitialised node. */
void node_join_open(struct node *n);
void node_join_free(struct node *n);
int node_join_close(struct node *n); /* returns the handles it closes */
/* .vault/join: ADDRESS, or "rejoin ADDRESS" on a removed node. */
void node_join_start(struct node *n, struct api_request *req, const uint8_t *addr, size_t len);
/* Stops retry_join and its fetch in flight (init or .vault/join takes
 * over). */
void node_join_stop_retry(struct node *n);
/* A rejoin's seal is done: moves the data aside and joins; answers REQ. */
void node_join_rejoin_sealed(struct node *n, struct api_request *req);
/* From the readiness poll of an unsealed node not yet in the configuration. */
void node_join_after_unseal(struct node *n);
/* .vault/join's text: "state: ...", "join_addr: ...". */
void node_join_state(struct node *n, struct buf *out);
/* The join state alone: none, retrying, fetching, unsealing, joining,
 * member (status's join_state). */
const char *node_join_state_word(struct node *n);
/* transport_join_provider: what a node that fetches gets (the sealed
 * keyring, useless without the unseal key shares), in join-info VERSION. */
int node_join_provider(void *ctx, unsigned version, struct buf *out);

/* node_transfer.c: leadership transfer. */
/* A leader starts handing leadership to an up-to-date voter: 0, -EINVAL
 * (not the leader, or the only voter), -EBUSY (a transfer is under way). */
int node_transfer_leadership(struct node *n);
/* Leader hands over first if another voter exists; then CLOSE(n) runs. */
void node_transfer_hand_over_then(struct node *n, void (*close)(struct node *n));
/* The leader's own .vault/step-down: REQ is answered once leadership moved. */
void node_transfer_step_down(struct node *n, struct api_request *req);
/* Leader: NODE_RPC_STEP_DOWN from a follower. */
void node_transfer_serve_step_down(struct node *n, struct transport_rpc_req *rpc);

/* node_trust.c: this node's identity and which identities are members. */
int node_trust_init(struct node *n); /* 0 or -errno; opens no handle */
void node_trust_open(struct node *n); /* opens the handle; cannot fail */
int node_trust_close(struct node *n); /* returns the handles it closes */
void node_trust_free(struct node *n);
/* Loads this node's identity from the data directory, or makes and saves
 * one (always, if FRESH), and sets raft_address. Needs the keyring.
 * Returns 0 or -errno (logged). */
int node_trust_identity(struct node *n, bool fresh);
const struct channel_identity *node_trust_me(const struct node *n);
/* This node's public identity in hex; empty until it is loaded (unseal). */
void node_trust_identity_hex(const struct node *n, char out[2 * CHANNEL_ID_LEN + 1]);
/* A joining node starts over: its old identity, if any, is deleted, and
 * with it what the members said of it (removed). */
void node_trust_forget_identity(struct node *n);
/* transport_identify for the cluster transport. */
int node_trust_identify(void *ctx, const uint8_t key[CHANNEL_ID_LEN], uint64_t *ret_id,
			const char **ret_address);
void node_trust_serve_members(struct node *n, struct transport_rpc_req *rpc);
/* A joining node asks the node it joins through who the members are. */
void node_trust_joining(struct node *n);
void node_trust_session_start(struct node *n);
/* A member this node dialled by identity says it is no longer a member. */
bool node_trust_removed(const struct node *n);

/* node_storage.c: the health of the Raft storage; a session whose write
 * failed is closed and reopened without a restart. */
/* Free space a node needs to start, or to resume after a full disk. */
#define NODE_STORAGE_MIN_FREE (8u << 20)
/* A file of this size in the data directory, made while there is room:
 * deleting it is the quick way out of a full disk. */
#define NODE_STORAGE_RESERVE_NAME "reserve"
#define NODE_STORAGE_RESERVE (8u << 20)
int node_storage_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_storage_open(struct node *n);
int node_storage_close(struct node *n); /* returns the handles it closes */
void node_storage_free(struct node *n);
/* At start: 0, or -EROFS / -ENOSPC with a one-line message for the
 * operator when DIR is read-only or has less than NODE_STORAGE_MIN_FREE. */
int node_storage_check_start(const char *dir, char *errmsg, size_t errlen);
/* Makes the reserve file if it is missing and there is room for it. */
void node_storage_make_reserve(const struct node *n);
/* For a new session's raft_io, before raft_init: watches it for failures,
 * and after one drops the uncertain tail of the log (raftio_drop_after).
 * 0 or a RAFT_* code with a message in ERRMSG. */
int node_storage_attach(struct node *n, struct raft_io *io, char *errmsg, size_t errlen);
void node_storage_session_started(struct node *n);
void node_storage_session_closed(struct node *n);
/* The last log write took long (STORAGE_SLOW_MS or more in node_storage.c):
 * the next had better not run on the loop thread. */
bool node_storage_slow(const struct node *n);
/* "ok", "full" or "failed" (status). */
const char *node_storage_status(const struct node *n);
/* 0, or the errno every write through this node gets while its storage
 * is down (-ENOSPC for a full disk, else -EIO), and every read too unless
 * node_storage_mute: nothing is written then. */
int node_storage_errno(const struct node *n);
/* The storage is down and the session follows without it (raftio_mute):
 * reads this node can prove linearizable are still served. */
bool node_storage_mute(const struct node *n);

/* node_audit.c: the audit log and .vault/audit-hash. */
/* Opens cfg.audit_path (nothing without one): 0 or -errno with a message. */
int node_audit_init(struct node *n, char *errmsg, size_t errlen);
void node_audit_free(struct node *n);
/* Writes REQ's request line before anything of it is done. Returns true
 * if the request may go on; false if it was answered (-EIO: fail_closed
 * and the line could not be written). Its answer gets a line too. */
bool node_audit_request(struct node *n, struct api_request *req);
void node_audit_hash_read(struct node *n, struct api_request *req);
void node_audit_hash_write(struct node *n, struct api_request *req, const uint8_t *in,
			   size_t len);

/* node_metrics.c: .vault/metrics (Prometheus text) and its textfile. */
int node_metrics_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_metrics_open(struct node *n);
int node_metrics_close(struct node *n); /* returns the handles it closes */
void node_metrics_free(struct node *n);
/* Appends the whole exposition to OUT. */
void node_metrics_text(struct node *n, struct buf *out);
/* A write sent to the leader. */
void node_metrics_forwarded(struct node *n);
/* A transaction that stored log entries took NS. */
void node_metrics_log_write(struct node *n, uint64_t ns);
/* The fsm's on_timed callback (ARG is the node). */
void node_metrics_fsm_timed(void *arg, enum fsm_timed what, uint64_t ns);

/* node_snapshot.c: backups (.vault/snapshot, scheduled snapshots) and the
 * control streams (VFS_OP_CTL_OPEN ... CLOSE) that carry them. */
int node_snapshot_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_snapshot_open(struct node *n);
int node_snapshot_close(struct node *n); /* returns the handles it closes */
void node_snapshot_free(struct node *n);
/* CTL_OPEN, CTL_PREAD, CTL_PWRITE, CTL_FINISH, CTL_CLOSE. */
void node_snapshot_request(struct node *n, struct api_request *req);
/* CTL_OPEN of .vault/snapshot at a linearizable point (node_ops.c). */
void node_snapshot_take(struct node *n, struct api_request *req);

/* node_backup.c: taking a backup without holding the loop. */
int node_backup_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_backup_open(struct node *n);
int node_backup_close(struct node *n); /* returns the handles it closes */
void node_backup_free(struct node *n);
/* What a backup gives: STATUS 0 or -errno; without a target the body in
 * the unlinked file BODY_FD (the callback's to close) and the header in
 * *HEADER (the callback may take it over, leaving it initialised). */
typedef void (*node_backup_cb)(struct node *n, void *arg, int status, int body_fd,
			       struct buf *header);
/* Starts a backup of the state applied now or later (a serving, unsealed
 * node); TARGET (NULL: none) is a file it then writes whole, atomically.
 * CB runs on the loop thread once it is made. 0, or -EBUSY (one is under
 * way), -ENOKEY, -errno (CB is then not called). */
int node_backup_take(struct node *n, const char *target, node_backup_cb cb, void *arg);
/* The session ends: a copy in progress ends with -EAGAIN. */
void node_backup_session_closing(struct node *n);

/* node_restore.c: .vault/restore. */
int node_restore_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_restore_free(struct node *n);
/* 0 if a restore may begin now, else why not (-ENOKEY sealed, -EBUSY). */
int node_restore_may_start(const struct node *n);
/* Restores the backup written into FD (staged in the file STAGED, which it
 * may keep); FORCE: the writer asked for "force". Answers REQ. */
void node_restore_start(struct node *n, struct api_request *req, int fd, const char *staged,
			bool force);
/* Leader: NODE_RPC_RESTORE. */
void node_restore_serve(struct node *n, struct transport_rpc_req *rpc);
/* A node made from a backup that it has not restored yet. */
bool node_restore_is_pending(const struct node *n);
/* At unseal of such a node: checks the backup under the keyring just
 * opened and bootstraps its one-node cluster. 0 or -errno. */
int node_restore_unseal(struct node *n);
/* Once it leads: restores the backup, then node_ready_after_restore. */
void node_restore_pending_run(struct node *n);
/* Every second (node_snapshot.c): the leader aborts a stale restore. */
void node_restore_tick(struct node *n);

/* node_autopilot.c: the leader makes non-voters voters once they are
 * stable (server_stabilization_time), and removes servers silent for
 * dead_server_cleanup_threshold (off by default). */
int node_autopilot_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_autopilot_open(struct node *n);
int node_autopilot_close(struct node *n); /* returns the handles it closes */
void node_autopilot_free(struct node *n);

/* node_features.c: the cluster's feature level (store/cmd.h). */
int node_features_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_features_free(struct node *n);
/* The level this node has applied (CMD_FEATURES_BASE while sealed). */
uint32_t node_features_level(struct node *n);
/* Any node: answers NODE_RPC_FEATURES. */
void node_features_serve(struct node *n, struct transport_rpc_req *rpc);
/* Leader, on autopilot's tick: raises the level once every member knows it. */
void node_features_tick(struct node *n);
/* Leader: whether the sender of JOIN request RPC (from ADDRESS) may join
 * now: 0, -EAGAIN (ask again), or -EPROTONOSUPPORT (its release is older
 * than the cluster's level allows; logged). */
int node_features_admit(struct node *n, const struct transport_rpc_req *rpc, const char *address);

/* node_recover.c: vaultfsd -recover (lost majority). */
/* At start: DIR's recover.peers, if any, is well formed. 0 or -errno with
 * a message naming the line. */
int node_recover_check(const char *dir, char *errmsg, size_t errlen);
/* Before raft_start of the first session: the configuration becomes the
 * servers of recover.peers, or this node alone. 0 or -EIO (logged). */
int node_recover_apply(struct node *n, struct raft_session *s);

/* node_keys.c: key rotation (a new keyring term for the members only). */
int node_keys_init(struct node *n); /* 0 or -ENOMEM; opens no handle */
void node_keys_open(struct node *n);
int node_keys_close(struct node *n); /* returns the handles it closes */
void node_keys_free(struct node *n);
void node_keys_session_start(struct node *n);
/* The fsm's key hooks (the fsm's ARG is the node). */
const struct fsm_keys *node_keys_fsm(void);
/* Leader: CB(ARG, 0) once a rotation proposed after this call is committed
 * and applied here, or CB(ARG, -errno): -EAGAIN if not (or no longer) the
 * leader. May call CB before returning. */
void node_keys_rotate(struct node *n, void (*cb)(void *arg, int status), void *arg);
/* Leader: CB(ARG, 0) once a rotation that also makes ROOT (copied) the root
 * key, split into SHARES shares with THRESHOLD, is committed and applied
 * here; CB(ARG, -errno) otherwise: -EBUSY if a rekey is already waiting or
 * in flight, -EAGAIN if not the leader. */
void node_keys_rekey(struct node *n, const uint8_t root[BARRIER_ROOT_KEY_LEN], unsigned shares,
		     unsigned threshold, void (*cb)(void *arg, int status), void *arg);
/* Leader: a rotation of this leader's is proposed and not applied yet. */
bool node_keys_rotating(const struct node *n);
/* Answers every waiting rotation with STATUS (seal, shutdown). */
void node_keys_fail_all(struct node *n, int status);
/* The newest key term (0: sealed), and into WHEN when it was made (UTC,
 * "2026-12-06T18:41:08Z"; "-" if unknown). */
#define NODE_KEYS_TIME_LEN 32u
uint32_t node_keys_status(const struct node *n, char when[NODE_KEYS_TIME_LEN]);

#endif
