/* Shared between the files of the node module only; not an interface. */
#ifndef VAULTFS_NODE_INTERNAL_H
#define VAULTFS_NODE_INTERNAL_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api/server.h"
#include "crypto/barrier.h"
#include "crypto/seal.h"
#include "raft/fsm.h"
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
	struct node *node;
};

struct node {
	uv_loop_t *loop;
	char *data_dir;
	char *node_id;
	char *cluster_addr;
	char *raft_address; /* "node_id@host:port", the address kept in Raft's configuration */
	struct node_config cfg;
	char seal_path[4096];

	/* Seal state. */
	bool initialized;
	unsigned shares;
	unsigned threshold;
	struct buf sealed_keyring;
	struct unsealer *unsealer;
	struct barrier *barrier;
	char *init_output; /* key shares text until read once; secure memory */
	size_t init_output_len;

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

	int64_t started_ns; /* shown as the root's times while sealed */

	/* Proposer identity for the state machine's deduplication. */
	uint64_t client_id;
	uint64_t seq;
};

/* node.c */
int64_t node_now_ns(void);
/* Writes shares, threshold and the sealed keyring durably. 0 or -errno. */
int node_save_seal_file(struct node *n);
/* Writes the one-voter configuration of a fresh cluster. 0 or -errno. */
int node_bootstrap_raft(struct node *n);
int node_unseal_start_raft(struct node *n);
void node_seal_begin(struct node *n);
const char *node_phase_name(const struct node *n);

/* node_ctl.c: the .vault control files. */
void node_ctl_read(struct node *n, struct api_request *req);
void node_ctl_write(struct node *n, struct api_request *req);

/* node_ops.c: tree operations. */
void node_ops_read(struct node *n, struct api_request *req);
void node_ops_write(struct node *n, struct api_request *req);
bool node_op_is_write(uint16_t op);

#endif
