/* libraft FSM glue: committed entries are barrier ciphertexts of encoded
 * commands; snapshots are barrier ciphertexts of store dumps.
 *
 * Keyring entries and snapshot headers start with a u32 0, which no
 * barrier ciphertext does (term 0 is never issued):
 *   rotation entry: u32 0 | barrier ciphertext (AAD "vaultfs-rotation") of
 *                   the node's rotation payload;
 *   restore entry:  u32 0 | u32 0 | barrier ciphertext (AAD "vaultfs-restore")
 *                   of u8 kind, u64 id, u64 len, then for BEGIN the 32-byte
 *                   hash, for CHUNK a blob of dump bytes (a rotation's
 *                   ciphertext never starts with a u32 0: term 0 is never
 *                   issued);
 *   snapshot:       u32 0 | u32 n | n bytes: barrier ciphertext under term 1
 *                   (AAD "vaultfs-snapshot-keys") of the node's keyring box
 *                   list | barrier ciphertext of the dump.
 * The snapshot header is under term 1 so that a member that missed a
 * rotation (and will get the snapshot instead of the entry) can open it
 * and take the newer terms from its box before it opens the body.
 *
 * Snapshots (version 3 FSM): fsm_snapshot copies the state on the loop,
 * fsm_snapshot_async dumps and seals it on libraft's io->async_work thread,
 * fsm_snapshot_finalize frees it; libraft frees none of it. A restore
 * buffer becomes ours only when restore succeeds (libraft frees it on
 * failure), so it is raft_free'd only on success. */
#include "raft/fsm.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <errno.h>
#include <sodium.h>
#include <inttypes.h>
#include <string.h>
#include <uv.h>

#include "lib/log.h"

static const char fsm_cmd_aad[] = "vaultfs-cmd";
static const char fsm_snapshot_aad[] = "vaultfs-snapshot";
static const char fsm_rotation_aad[] = "vaultfs-rotation";
static const char fsm_keys_aad[] = "vaultfs-snapshot-keys";
static const char fsm_restore_aad[] = "vaultfs-restore";
#define FSM_FIRST_TERM 1u
#define FSM_KEYS_HEADER_MAX (16u * 1024u * 1024u)

/* Keyring entries and snapshot headers start with 4 zero bytes. */
static bool is_keyring_kind(const uint8_t *p, size_t len)
{
	static const uint8_t zero[4];
	return len >= sizeof zero && memcmp(p, zero, sizeof zero) == 0;
}

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

static int apply_rotation(struct fsm *f, const uint8_t *ct, size_t len, void **result)
{
	struct buf plain;
	buf_init(&plain);
	int rc = barrier_decrypt(store_barrier(f->store), fsm_rotation_aad,
				 sizeof(fsm_rotation_aad) - 1, ct, len, &plain);
	if (rc == 0)
		rc = f->keys != NULL ? f->keys->apply_rotation(f->arg, plain.data, plain.len)
				     : -ENOSYS;
	buf_free(&plain);
	if (rc == -ENOMEM)
		return RAFT_NOMEM;
	if (rc != 0) {
		/* Entries after it are under the new term: going on would
		 * fail at the next one anyway, with a less useful message. */
		log_error("fsm: cannot apply a key rotation: %s", strerror(-rc));
		return report_fatal(f, RAFT_CORRUPT);
	}
	*result = fsm_result_pack(0);
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

/* ---- Restore through the log ---- */

static void restore_drop(struct fsm_restore *r)
{
	buf_free(&r->data);
	buf_init(&r->data);
	r->active = false;
	r->broken = false;
	r->id = 0;
	r->len = 0;
}

static int64_t restore_end(struct fsm *f, uint64_t id)
{
	struct fsm_restore *r = &f->restore;
	if (!r->active || r->id != id)
		return -ESTALE;
	int64_t rc = 0;
	uint8_t hash[FSM_RESTORE_HASH_LEN];
	crypto_hash_sha256(hash, r->data.data, r->data.len);
	if (r->broken || r->data.err != 0 || r->data.len != r->len ||
	    sodium_memcmp(hash, r->hash, sizeof hash) != 0)
		rc = -EBADMSG;
	if (rc == 0)
		rc = store_restore_backup(f->store, r->data.data, r->data.len);
	if (rc != 0)
		log_error("fsm: restore %016" PRIx64 " refused: %s; the state is as it was", id,
			  strerror((int)-rc));
	else
		log_info("fsm: restored a backup of %" PRIu64 " bytes", r->len);
	restore_drop(r);
	if (rc == 0 && f->on_change != NULL)
		f->on_change(f->arg, NULL);
	return rc;
}

/* Applies one decrypted restore step; the result is the step's answer. */
static int64_t restore_step(struct fsm *f, const struct fsm_restore_step *st)
{
	struct fsm_restore *r = &f->restore;
	switch (st->kind) {
	case FSM_RESTORE_BEGIN:
		restore_drop(r);
		r->active = true;
		r->id = st->id;
		r->len = st->len;
		memcpy(r->hash, st->hash, sizeof r->hash);
		return 0;
	case FSM_RESTORE_CHUNK:
		if (!r->active || r->id != st->id)
			return -ESTALE;
		/* Chunks come in log order; one out of place (a proposer's
		 * retry) spoils the restore for every member alike. */
		if (st->len != r->data.len || r->data.len + st->data_len > r->len)
			r->broken = true;
		else
			buf_put_raw(&r->data, st->data, st->data_len);
		return 0;
	case FSM_RESTORE_END:
		return restore_end(f, st->id);
	case FSM_RESTORE_ABORT:
		if (r->active && r->id == st->id)
			restore_drop(r);
		return 0;
	default:
		return -EINVAL;
	}
}

int fsm_restore_step_decode(const uint8_t *p, size_t len, struct fsm_restore_step *ret)
{
	struct cursor c;
	cursor_init(&c, p, len);
	memset(ret, 0, sizeof *ret);
	ret->kind = cursor_u8(&c);
	ret->id = cursor_u64(&c);
	ret->len = cursor_u64(&c);
	if (ret->kind == FSM_RESTORE_BEGIN) {
		const uint8_t *h = cursor_raw(&c, FSM_RESTORE_HASH_LEN);
		if (h != NULL)
			memcpy(ret->hash, h, FSM_RESTORE_HASH_LEN);
	} else if (ret->kind == FSM_RESTORE_CHUNK) {
		ret->data = cursor_blob(&c, FSM_RESTORE_CHUNK_MAX, &ret->data_len);
	}
	return cursor_done(&c);
}

static int apply_restore(struct fsm *f, const uint8_t *ct, size_t len, void **result)
{
	struct buf plain;
	buf_init(&plain);
	struct fsm_restore_step st;
	int rc = barrier_decrypt(store_barrier(f->store), fsm_restore_aad,
				 sizeof(fsm_restore_aad) - 1, ct, len, &plain);
	if (rc == 0)
		rc = fsm_restore_step_decode(plain.data, plain.len, &st);
	if (rc != 0) {
		buf_free(&plain);
		log_error("fsm: committed restore entry does not open: %s", strerror(-rc));
		return rc == -ENOMEM ? RAFT_NOMEM : report_fatal(f, RAFT_CORRUPT);
	}
	*result = fsm_result_pack(restore_step(f, &st));
	buf_free(&plain);
	return 0;
}

void fsm_restore_step_encode(const struct fsm_restore_step *step, struct buf *out)
{
	buf_put_u8(out, step->kind);
	buf_put_u64(out, step->id);
	buf_put_u64(out, step->len);
	if (step->kind == FSM_RESTORE_BEGIN)
		buf_put_raw(out, step->hash, FSM_RESTORE_HASH_LEN);
	else if (step->kind == FSM_RESTORE_CHUNK)
		buf_put_blob(out, step->data, step->data_len);
}

int fsm_encode_restore(struct barrier *barrier, const struct fsm_restore_step *step,
		       struct raft_buffer *ret)
{
	if (step->data_len > FSM_RESTORE_CHUNK_MAX)
		return -EMSGSIZE;
	struct buf plain, entry;
	buf_init(&plain);
	buf_init(&entry);
	fsm_restore_step_encode(step, &plain);
	buf_put_u32(&entry, 0);
	buf_put_u32(&entry, 0);
	int rc = plain.err != 0 ? plain.err : entry.err;
	if (rc == 0)
		rc = barrier_encrypt(barrier, fsm_restore_aad, sizeof(fsm_restore_aad) - 1,
				     plain.data, plain.len, &entry);
	if (rc == 0)
		rc = to_raft_buffer(&entry, ret);
	buf_free(&plain);
	buf_free(&entry);
	return rc;
}

bool fsm_restore_active(const struct fsm *fsm, uint64_t *ret_id)
{
	if (ret_id != NULL)
		*ret_id = fsm->restore.id;
	return fsm->restore.active;
}

static void snapshot_job_free(struct fsm_snapshot_job *job);

void fsm_free(struct fsm *fsm)
{
	restore_drop(&fsm->restore);
	snapshot_job_free(fsm->snapshot);
	fsm->snapshot = NULL;
}

/* ---- Commands ---- */

static bool is_restore_kind(const uint8_t *p, size_t len)
{
	return is_keyring_kind(p, len) && is_keyring_kind(p + 4, len - 4);
}

static int fsm_apply_command(struct raft_fsm *raft_fsm, const struct raft_buffer *buf,
			     void **result)
{
	struct fsm *f = raft_fsm->data;
	struct store *s = f->store;
	struct buf plain;
	struct cmd cmd;
	int fatal = 0;

	if (is_restore_kind(buf->base, buf->len))
		return apply_restore(f, (const uint8_t *)buf->base + 8, buf->len - 8, result);
	if (is_keyring_kind(buf->base, buf->len))
		return apply_rotation(f, (const uint8_t *)buf->base + 4, buf->len - 4, result);
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

static int fsm_apply(struct raft_fsm *raft_fsm, const struct raft_buffer *buf, void **result)
{
	struct fsm *f = raft_fsm->data;
	uint64_t start = uv_hrtime();
	int rc = fsm_apply_command(raft_fsm, buf, result);
	if (rc == 0 && f->on_timed != NULL)
		f->on_timed(f->arg, FSM_TIMED_APPLY, uv_hrtime() - start);
	return rc;
}


/* Appends the header (u32 0, u32 length, ciphertext of the box list) to
 * OUT; nothing when the node hands out no keys (a keyring of one term
 * needs none: every member has term 1). */
static int snapshot_keys_header(struct fsm *f, struct buf *out)
{
	struct barrier *b = store_barrier(f->store);
	uint32_t newest;
	int64_t installed;
	barrier_newest(b, &newest, &installed);
	if (f->keys == NULL || newest <= FSM_FIRST_TERM)
		return 0;
	struct buf boxes, ct;
	buf_init(&boxes);
	buf_init(&ct);
	int rc = f->keys->snapshot_boxes(f->arg, &boxes);
	if (rc == 0)
		rc = barrier_encrypt_term(b, FSM_FIRST_TERM, fsm_keys_aad, sizeof(fsm_keys_aad) - 1,
					  boxes.data, boxes.len, &ct);
	if (rc == 0) {
		buf_put_u32(out, 0);
		buf_put_blob(out, ct.data, ct.len);
		rc = out->err;
	}
	buf_free(&boxes);
	buf_free(&ct);
	return rc;
}

/* Takes the terms a snapshot's header gives this node, and leaves *P, *LEN
 * at the body. */
static int restore_keys_header(struct fsm *f, const uint8_t **p, size_t *len)
{
	if (!is_keyring_kind(*p, *len))
		return 0;
	struct cursor c;
	cursor_init(&c, *p + 4, *len - 4);
	size_t ct_len = 0;
	const uint8_t *ct = cursor_blob(&c, FSM_KEYS_HEADER_MAX, &ct_len);
	if (c.err != 0)
		return -EBADMSG;
	struct buf boxes;
	buf_init(&boxes);
	int rc = barrier_decrypt(store_barrier(f->store), fsm_keys_aad, sizeof(fsm_keys_aad) - 1,
				 ct, ct_len, &boxes);
	if (rc == 0)
		rc = f->keys != NULL ? f->keys->restore_boxes(f->arg, boxes.data, boxes.len)
				     : -ENOSYS;
	buf_free(&boxes);
	*p = c.p;
	*len = c.left;
	return rc;
}

/* A snapshot on its way from the loop (fsm_snapshot: the state at the
 * snapshot's index, the key to seal it with, the keys header) through the
 * thread pool (fsm_snapshot_async: the dump, sealed) to libraft, which
 * writes it and hands it back (fsm_snapshot_finalize frees it). */
struct fsm_snapshot_job {
	struct store_image image;
	struct barrier_sealer *sealer;
	struct buf out;         /* the keys header, then the sealed dump */
	struct raft_buffer buf; /* OUT's bytes, for libraft */
};

static void snapshot_job_free(struct fsm_snapshot_job *job)
{
	if (job == NULL)
		return;
	store_image_free(&job->image);
	barrier_sealer_free(job->sealer);
	buf_free(&job->out);
	free(job);
}

static void snapshot_sized(struct fsm *f, size_t bytes)
{
	f->snapshot_bytes = bytes;
	if (f->on_snapshot_sized != NULL)
		f->on_snapshot_sized(f->arg);
}

/* On the loop: everything else of the snapshot happens on the thread pool,
 * so this is what a snapshot holds the node for (FSM_TIMED_SNAPSHOT). */
static int fsm_snapshot(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct fsm *f = raft_fsm->data;
	if (f->restore.active)
		return RAFT_BUSY; /* see fsm.h: libraft tries again later */
	assert(f->snapshot == NULL); /* libraft takes one at a time */
	uint64_t start = uv_hrtime();
	struct fsm_snapshot_job *job = calloc(1, sizeof(*job));
	int rc = job != NULL ? 0 : -ENOMEM;
	if (rc == 0) {
		buf_init(&job->out);
		rc = snapshot_keys_header(f, &job->out);
	}
	if (rc == 0)
		rc = barrier_sealer_new(store_barrier(f->store), &job->sealer);
	if (rc == 0)
		rc = store_image(f->store, &job->image);
	if (rc != 0) {
		snapshot_job_free(job);
		log_error("fsm: cannot take snapshot: %s", strerror(-rc));
		return errno_to_raft(rc);
	}
	f->snapshot = job;
	*bufs = NULL;
	*n_bufs = 0;
	if (f->on_timed != NULL)
		f->on_timed(f->arg, FSM_TIMED_SNAPSHOT, uv_hrtime() - start);
	return 0;
}

/* On a thread of the pool: touches nothing but its job. */
static int fsm_snapshot_async(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
			      unsigned *n_bufs)
{
	struct fsm_snapshot_job *job = ((struct fsm *)raft_fsm->data)->snapshot;
	assert(job != NULL);
	struct store *copy = NULL;
	struct buf dump;
	buf_init(&dump);
	int rc = store_open_image(&copy, &job->image);
	if (rc == 0)
		rc = store_dump(copy, &dump);
	store_close(copy);
	if (rc == 0)
		rc = barrier_sealer_encrypt(job->sealer, fsm_snapshot_aad,
					    sizeof(fsm_snapshot_aad) - 1, dump.data, dump.len,
					    &job->out);
	buf_free(&dump);
	if (rc != 0) {
		log_error("fsm: cannot take snapshot: %s", strerror(-rc));
		return errno_to_raft(rc);
	}
	job->buf.base = job->out.data;
	job->buf.len = job->out.len;
	*bufs = &job->buf;
	*n_bufs = 1;
	return 0;
}

/* On the loop, once libraft is done with the snapshot (written or not). */
static int fsm_snapshot_finalize(struct raft_fsm *raft_fsm, struct raft_buffer *bufs[],
				 unsigned *n_bufs)
{
	struct fsm *f = raft_fsm->data;
	if (f->snapshot != NULL && f->snapshot->buf.len > 0) /* it was made */
		snapshot_sized(f, f->snapshot->buf.len);
	snapshot_job_free(f->snapshot);
	f->snapshot = NULL;
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

static int fsm_restore(struct raft_fsm *raft_fsm, struct raft_buffer *buf)
{
	struct fsm *f = raft_fsm->data;
	struct store *s = f->store;
	struct buf dump;
	buf_init(&dump);

	const uint8_t *body = buf->base;
	size_t body_len = buf->len;
	int rc = restore_keys_header(f, &body, &body_len);
	if (rc != 0)
		log_error("fsm: cannot take the keys of a snapshot: %s", strerror(-rc));
	else
		rc = barrier_decrypt(store_barrier(s), fsm_snapshot_aad,
				     sizeof(fsm_snapshot_aad) - 1, body, body_len, &dump);
	if (rc != 0)
		log_error("fsm: snapshot does not decrypt: %s", strerror(-rc));
	else
		rc = store_restore(s, dump.data, dump.len);
	buf_free(&dump);
	if (rc != 0)
		return errno_to_raft(rc);
	if (f->on_change != NULL)
		f->on_change(f->arg, NULL);
	snapshot_sized(f, buf->len);
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
	buf_init(&fsm->restore.data);
	fsm->store = store;
	fsm->on_fatal = on_fatal;
	fsm->arg = arg;
	fsm->raft.version = 3;
	fsm->raft.data = fsm;
	fsm->raft.apply = fsm_apply;
	fsm->raft.snapshot = fsm_snapshot;
	fsm->raft.restore = fsm_restore;
	fsm->raft.snapshot_finalize = fsm_snapshot_finalize;
	fsm->raft.snapshot_async = fsm_snapshot_async;
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

int fsm_encode_rotation(struct barrier *barrier, const uint8_t *payload, size_t len,
			struct raft_buffer *ret)
{
	struct buf entry;
	buf_init(&entry);
	buf_put_u32(&entry, 0);
	int rc = entry.err != 0 ? entry.err
				: barrier_encrypt(barrier, fsm_rotation_aad,
						  sizeof(fsm_rotation_aad) - 1, payload, len, &entry);
	if (rc == 0)
		rc = to_raft_buffer(&entry, ret);
	buf_free(&entry);
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
