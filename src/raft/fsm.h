/* Glue between libraft's struct raft_fsm and the store.
 *
 * Log entries hold commands encrypted by the barrier (AAD "vaultfs-cmd"), so
 * nothing in the Raft log is plaintext; snapshots are the store's dump
 * encrypted the same way (AAD "vaultfs-snapshot"). The apply result handed to
 * raft_apply's callback is not a pointer but an int64 packed with
 * fsm_result_pack: libraft does not free results on followers, so the FSM
 * never allocates one. */
#ifndef VAULTFS_RAFT_FSM_H
#define VAULTFS_RAFT_FSM_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "crypto/barrier.h"
#include "lib/buf.h"
#include "store/cmd.h"
#include "store/store.h"

/* Key rotation, done by the node, which holds the identity the new keys
 * are boxed to (crypto/boxlist.h). All return 0 or -errno. */
struct fsm_keys {
	/* A committed rotation entry's payload (fsm_encode_rotation's). An
	 * error stops the node (on_fatal): later entries need the new term. */
	int (*apply_rotation)(void *arg, const uint8_t *payload, size_t len);
	/* Appends a box list of the whole keyring for the members, carried
	 * in every snapshot taken while the keyring has more than one term. */
	int (*snapshot_boxes)(void *arg, struct buf *out);
	/* Takes the terms this node lacks from a snapshot's box list. */
	int (*restore_boxes)(void *arg, const uint8_t *boxes, size_t len);
};

enum fsm_timed {
	FSM_TIMED_APPLY,    /* one command decrypted and applied */
	FSM_TIMED_SNAPSHOT, /* the loop's part of a snapshot: the state copied */
};

/* A restore replaces the whole state through the log, so that every member
 * takes the same state at the same index: BEGIN (id, dump length, SHA-256
 * of the dump), the dump in CHUNKs in order, END. Each member collects the
 * chunks; END restores the dump if it is whole and matches the hash, or
 * fails on every member alike (the state stays). ABORT (or another BEGIN)
 * drops what was collected. No snapshot is taken while a restore is being
 * collected (libraft retries later): a member that catches up from a
 * snapshot then has the whole restore, BEGIN included, still in its log. */
enum fsm_restore_kind {
	FSM_RESTORE_BEGIN = 1,
	FSM_RESTORE_CHUNK,
	FSM_RESTORE_END,
	FSM_RESTORE_ABORT,
};
#define FSM_RESTORE_HASH_LEN 32u

struct fsm_restore_step {
	uint8_t kind;  /* enum fsm_restore_kind */
	uint64_t id;   /* the restore's (random, from the proposer) */
	uint64_t len;  /* BEGIN: dump length; CHUNK: offset of DATA */
	uint8_t hash[FSM_RESTORE_HASH_LEN]; /* BEGIN */
	const uint8_t *data; /* CHUNK */
	size_t data_len;
};

/* What a member collected of a restore in the log. */
struct fsm_restore {
	bool active;
	bool broken; /* a chunk out of order: END will fail */
	uint64_t id;
	uint64_t len;
	uint8_t hash[FSM_RESTORE_HASH_LEN];
	struct buf data;
};

/* The state machine handed to raft_init (&fsm->raft). */
struct fsm_snapshot_job;

struct fsm {
	struct fsm_restore restore;
	struct fsm_snapshot_job *snapshot; /* fsm.c: the snapshot being taken */
	struct raft_fsm raft;
	struct store *store;
	void (*on_fatal)(void *arg);
	/* After each applied command and each restored snapshot (CH NULL:
	 * everything may have changed); may be NULL. */
	void (*on_change)(void *arg, const struct store_changes *ch);
	/* How long each apply and each snapshot took, in ns; may be NULL. */
	void (*on_timed)(void *arg, enum fsm_timed what, uint64_t ns);
	/* A snapshot was taken or restored: snapshot_bytes changed; may be
	 * NULL. */
	void (*on_snapshot_sized)(void *arg);
	/* The size of the latest snapshot taken or restored (0: none yet):
	 * about what a follower that needs one has to receive and store. */
	size_t snapshot_bytes;
	/* Key rotation; NULL: rotation entries stop the node, snapshots carry
	 * no keys. */
	const struct fsm_keys *keys;
	void *arg;
};

/* Frees what FSM collected of a restore (at the end of its session). */
void fsm_free(struct fsm *fsm);
/* Whether a restore is being collected, and its id. */
bool fsm_restore_active(const struct fsm *fsm, uint64_t *ret_id);

/* A restore step's entry, in a raft_buffer allocated with raft_malloc.
 * Applying it gives 0, or for END -EBADMSG (the dump is not whole or does
 * not match its hash), -ESTALE (no such restore being collected) or the
 * store's refusal (store_restore). Returns 0 or -errno. */
int fsm_encode_restore(struct barrier *barrier, const struct fsm_restore_step *step,
		       struct raft_buffer *ret);
/* A step as plain bytes (a member sends its steps to the leader this way)
 * and back; decoded data points into P. Decode returns 0 or -EBADMSG. */
#define FSM_RESTORE_CHUNK_MAX (1024u * 1024u)
void fsm_restore_step_encode(const struct fsm_restore_step *step, struct buf *out);
int fsm_restore_step_decode(const uint8_t *p, size_t len, struct fsm_restore_step *ret);

/* Fills FSM (raft_fsm version 1) to apply into STORE, which must use
 * BARRIER; both are borrowed. When a committed entry cannot be applied
 * (it does not decrypt or decode, or the store fails) libraft would retry it
 * forever and the node would hang: ON_FATAL(ARG) is called instead (from
 * inside libraft: it must only schedule the node's shutdown). */
void fsm_init(struct fsm *fsm, struct store *store, struct barrier *barrier,
	      void (*on_fatal)(void *arg), void *arg);

/* Encodes and encrypts CMD into a raft_buffer allocated with raft_malloc,
 * ready for raft_apply. Returns 0 or -errno. */
int fsm_encode_entry(struct barrier *barrier, const struct cmd *cmd, struct raft_buffer *ret);

/* A rotation entry carrying PAYLOAD (applied through fsm_keys), in a
 * raft_buffer allocated with raft_malloc. Returns 0 or -errno. */
int fsm_encode_rotation(struct barrier *barrier, const uint8_t *payload, size_t len,
			struct raft_buffer *ret);

/* Like fsm_encode_entry for a command already encoded with cmd_encode
 * (e.g. one forwarded by another node). */
int fsm_seal_entry(struct barrier *barrier, const uint8_t *cmd, size_t len,
		   struct raft_buffer *ret);

static inline void *fsm_result_pack(int64_t v) { return (void *)(intptr_t)v; }
static inline int64_t fsm_result_unpack(void *p) { return (int64_t)(intptr_t)p; }

#endif
