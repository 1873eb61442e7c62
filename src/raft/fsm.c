/* libraft FSM glue: committed entries are barrier ciphertexts of encoded
 * commands; snapshots are barrier ciphertexts of store dumps.
 *
 * Memory: the single snapshot buffer and its array are raft_malloc'd and
 * freed by libraft (version 1 FSM, no snapshot_finalize). A restore buffer
 * becomes ours only when restore succeeds (libraft frees it on failure), so
 * it is raft_free'd only on success. */
#include "raft/fsm.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "lib/log.h"

static const char fsm_cmd_aad[] = "vaultfs-cmd";
static const char fsm_snapshot_aad[] = "vaultfs-snapshot";

static int errno_to_raft(int rc)
{
	switch (rc) {
	case -ENOMEM:
		return RAFT_NOMEM;
	case -EBADMSG:
		return RAFT_CORRUPT;
	case -ENOKEY:
		return RAFT_UNAUTHORIZED;
	default:
		return RAFT_IOERR;
	}
}

static int report_fatal(struct fsm *f, int rv)
{
	if (f->on_fatal != NULL)
		f->on_fatal(f->arg);
	return rv;
}

static int fsm_apply(struct raft_fsm *raft_fsm, const struct raft_buffer *buf, void **result)
{
	struct fsm *f = raft_fsm->data;
	struct store *s = f->store;
	struct buf plain;
	struct cmd cmd;
	int fatal = 0;

	buf_init(&plain);
	int rc = barrier_decrypt(store_barrier(s), fsm_cmd_aad, sizeof(fsm_cmd_aad) - 1,
				 buf->base, buf->len, &plain);
	if (rc != 0) {
		/* A committed entry that does not open means a different keyring
		 * or tampering: applying anything further would diverge. */
		log_error("fsm: committed entry does not decrypt: %s", strerror(-rc));
		buf_free(&plain);
		return rc == -ENOMEM ? RAFT_NOMEM : report_fatal(f, RAFT_CORRUPT);
	}
	rc = cmd_decode(plain.data, plain.len, &cmd);
	if (rc != 0) {
		log_error("fsm: committed entry is not a valid command");
		buf_free(&plain);
		return report_fatal(f, RAFT_CORRUPT);
	}
	int64_t r = store_apply(s, &cmd, &fatal);
	buf_free(&plain); /* cmd points into it; wiped here */
	if (fatal) {
		log_error("fsm: state machine failed to apply a committed entry");
		return report_fatal(f, RAFT_IOERR);
	}
	if (f->on_change != NULL)
		f->on_change(f->arg, store_last_changes(s));
	*result = fsm_result_pack(r);
	return 0;
}

/* Copies SRC into one raft_malloc'd buffer. */
static int to_raft_buffer(const struct buf *src, struct raft_buffer *ret)
{
	void *p = raft_malloc(src->len > 0 ? src->len : 1);
	if (p == NULL)
		return -ENOMEM;
	if (src->len > 0)
		memcpy(p, src->data, src->len);
	ret->base = p;
	ret->len = src->len;
	return 0;
}

static int fsm_snapshot(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct store *s = ((struct fsm *)raft_fsm->data)->store;
	struct buf dump, ct;
	buf_init(&dump);
	buf_init(&ct);

	int rc = store_dump(s, &dump);
	if (rc == 0)
		rc = barrier_encrypt(store_barrier(s), fsm_snapshot_aad,
				     sizeof(fsm_snapshot_aad) - 1, dump.data, dump.len, &ct);
	buf_free(&dump);
	struct raft_buffer *arr = NULL;
	if (rc == 0) {
		arr = raft_malloc(sizeof(*arr));
		rc = arr != NULL ? to_raft_buffer(&ct, &arr[0]) : -ENOMEM;
	}
	buf_free(&ct);
	if (rc != 0) {
		raft_free(arr);
		log_error("fsm: cannot take snapshot: %s", strerror(-rc));
		return errno_to_raft(rc);
	}
	*bufs = arr;
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *raft_fsm, struct raft_buffer *buf)
{
	struct fsm *f = raft_fsm->data;
	struct store *s = f->store;
	struct buf dump;
	buf_init(&dump);

	int rc = barrier_decrypt(store_barrier(s), fsm_snapshot_aad, sizeof(fsm_snapshot_aad) - 1,
				 buf->base, buf->len, &dump);
	if (rc != 0)
		log_error("fsm: snapshot does not decrypt: %s", strerror(-rc));
	else
		rc = store_restore(s, dump.data, dump.len);
	buf_free(&dump);
	if (rc != 0)
		return errno_to_raft(rc);
	if (f->on_change != NULL)
		f->on_change(f->arg, NULL);
	raft_free(buf->base);
	buf->base = NULL;
	buf->len = 0;
	return 0;
}

void fsm_init(struct fsm *fsm, struct store *store, struct barrier *barrier,
	      void (*on_fatal)(void *arg), void *arg)
{
	/* The FSM reaches the barrier through the store. */
	assert(barrier == store_barrier(store));
	(void)barrier; /* unused when NDEBUG */
	memset(fsm, 0, sizeof(*fsm));
	fsm->store = store;
	fsm->on_fatal = on_fatal;
	fsm->arg = arg;
	fsm->raft.version = 1;
	fsm->raft.data = fsm;
	fsm->raft.apply = fsm_apply;
	fsm->raft.snapshot = fsm_snapshot;
	fsm->raft.restore = fsm_restore;
}

int fsm_seal_entry(struct barrier *barrier, const uint8_t *cmd, size_t len,
		   struct raft_buffer *ret)
{
	struct buf ct;
	buf_init(&ct);
	int rc = barrier_encrypt(barrier, fsm_cmd_aad, sizeof(fsm_cmd_aad) - 1, cmd, len, &ct);
	if (rc == 0)
		rc = to_raft_buffer(&ct, ret);
	buf_free(&ct);
	return rc;
}

int fsm_encode_entry(struct barrier *barrier, const struct cmd *cmd, struct raft_buffer *ret)
{
	struct buf plain;
	buf_init(&plain);
	int rc = cmd_encode(cmd, &plain);
	if (rc == 0)
		rc = fsm_seal_entry(barrier, plain.data, plain.len, ret);
	buf_free(&plain);
	return rc;
}
