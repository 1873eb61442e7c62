/* Taking a backup (node/snapfile.h) without holding the loop thread.
 *
 * 1. On the loop, the state is copied into a file in the data directory a
 *    few hundred pages per loop turn (store_copy_*), so that heartbeats and
 *    requests go on meanwhile; changes applied during the copy go into it,
 *    so the finished copy is the state at the last step, whose applied
 *    index and Raft term the header records. (Under a steady stream of
 *    writes the copy finishes in one step after a few restarts: about
 *    2 ms per MiB.)
 * 2. On a worker thread, the copy is dumped (store_dump_stream) into an
 *    unlinked file while its SHA-256 is computed, and the header is encoded
 *    and authenticated with the backup key, which was copied into secure
 *    memory on the loop and is wiped as soon as the header is made. For a
 *    scheduled snapshot the worker also writes the whole backup into its
 *    target file (temporary file, fsync, rename).
 * Memory stays bounded by SQLite's page cache and the dump's pieces; disk
 * needs room for the copy and the dump, each about the vault's size, for
 * the duration. One backup at a time per node. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/secmem.h"
#include "lib/fileutil.h"
#include "lib/log.h"
#include "node/snapfile.h"

#define BACKUP_STEP_PAGES 256 /* 1 MiB of 4 KiB pages per loop turn */

struct backup_job {
	struct node *node;
	node_backup_cb cb;
	void *arg;
	char copy_path[4096];
	struct store_copy *copy; /* while copying */
	uint64_t start_ns;
	/* Made on the loop when the copy is complete. */
	struct snapfile_header h;
	struct buf keyring;
	uint8_t *key; /* secure memory; wiped once the header is made */
	char target[4096]; /* "": hand the body and header to CB */
	/* Made by the worker. */
	uv_work_t work;
	int body_fd;
	struct buf header;
	int rv;
};

struct node_backup {
	uv_idle_t idle; /* copy steps, one per loop turn */
	struct backup_job *job;
	bool working; /* the job is on a worker thread */
	bool closing; /* the node stops: the worker's end releases it */
};

/* ---- The worker: dump, hash, header ---- */

struct body_sink {
	int fd;
	uint64_t len;
	crypto_hash_sha256_state hash;
};

static int body_write(void *arg, const uint8_t *p, size_t len)
{
	struct body_sink *b = arg;
	crypto_hash_sha256_update(&b->hash, p, len);
	int rv = file_write_full(b->fd, p, len);
	if (rv == 0)
		b->len += len;
	return rv;
}

/* A file in the data directory, unlinked at once: nothing is left behind
 * whatever happens to the process. */
static int anonymous_file(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/backup-XXXXXX", dir);
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

static int job_dump(struct backup_job *j)
{
	char err[256];
	struct store *copy;
	int rv = store_open_copy(&copy, j->copy_path, err, sizeof err);
	if (rv != 0) {
		log_error("backup: %s", err);
		return rv;
	}
	struct body_sink body = { .fd = j->body_fd };
	crypto_hash_sha256_init(&body.hash);
	rv = store_dump_stream(copy, body_write, &body);
	store_close(copy);
	crypto_hash_sha256_final(&body.hash, j->h.body_hash);
	j->h.body_len = body.len;
	if (rv == 0)
		rv = snapfile_header_encode(&j->h, j->key, &j->header);
	return rv;
}

/* A scheduled snapshot: the whole backup into its target file. */
static int job_write_target(struct backup_job *j)
{
	char tmp[4200];
	int fd = -1;
	int rv = file_create_temp(j->target, tmp, sizeof tmp, &fd);
	if (rv == 0)
		rv = file_write_full(fd, j->header.data, j->header.len);
	if (rv == 0)
		rv = file_copy_fd(j->body_fd, 0, fd);
	if (rv == 0)
		return file_commit_temp(fd, tmp, j->target);
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	return rv;
}

static void job_work(uv_work_t *w)
{
	struct backup_job *j = w->data;
	j->rv = job_dump(j);
	secmem_wipe(j->key, SNAPFILE_KEY_LEN);
	unlink(j->copy_path);
	if (j->rv == 0 && j->target[0] != '\0')
		j->rv = job_write_target(j);
}

/* ---- The loop: copy, then hand over ---- */

static void job_free(struct backup_job *j)
{
	store_copy_end(j->copy);
	if (j->copy_path[0] != '\0')
		unlink(j->copy_path);
	if (j->body_fd >= 0)
		close(j->body_fd);
	secmem_free(j->key);
	buf_free(&j->keyring);
	buf_free(&j->header);
	free(j);
}

static void job_end(struct backup_job *j, int rv)
{
	struct node *n = j->node;
	n->backup->job = NULL;
	if (rv == 0)
		log_info("node %s: backup of %" PRIu64 " bytes at index %" PRIu64 " in %" PRIu64
			 " ms%s%s", n->node_id, j->h.body_len, j->h.index,
			 (uv_hrtime() - j->start_ns) / 1000000, j->target[0] ? " into " : "",
			 j->target);
	else
		log_error("node %s: cannot take a backup: %s", n->node_id, strerror(-rv));
	int fd = -1;
	if (rv == 0 && j->target[0] == '\0') {
		fd = j->body_fd; /* the callback's now */
		j->body_fd = -1;
	}
	j->cb(n, j->arg, rv, fd, &j->header);
	job_free(j);
}

static void job_after_work(uv_work_t *w, int status)
{
	struct backup_job *j = w->data;
	struct node_backup *b = j->node->backup;
	b->working = false;
	if (b->closing) {
		/* The node stops: nobody waits for the answer any more. */
		struct node *n = j->node;
		n->backup->job = NULL;
		job_free(j);
		node_handle_released(n);
		return;
	}
	job_end(j, status != 0 ? -ECANCELED : j->rv);
}

/* The copy is complete: it is the state as of now. */
static int job_prepare(struct backup_job *j)
{
	struct node *n = j->node;
	struct snapfile_header *h = &j->h;
	j->key = secmem_alloc(SNAPFILE_KEY_LEN);
	int rv = j->key != NULL ? 0 : -ENOMEM;
	if (rv == 0)
		rv = barrier_cluster_id(n->barrier, h->cluster_id);
	if (rv == 0)
		rv = barrier_reseal(n->barrier, &j->keyring);
	if (rv == 0)
		rv = barrier_backup_key(n->barrier, j->key);
	if (rv == 0 && (j->body_fd = anonymous_file(n->data_dir)) < 0)
		rv = j->body_fd;
	if (rv != 0)
		return rv;
	int64_t installed;
	barrier_newest(n->barrier, &h->key_term, &installed);
	h->index = node_query_applied_index(n);
	h->term = n->session->raft.current_term;
	h->time_ns = node_now_ns();
	h->shares = (uint8_t)n->shares;
	h->threshold = (uint8_t)n->threshold;
	snprintf(h->node_id, sizeof h->node_id, "%s", n->node_id);
	h->keyring = j->keyring.data;
	h->keyring_len = j->keyring.len;
	return 0;
}

static void on_copy_step(uv_idle_t *idle)
{
	struct node *n = idle->data;
	struct node_backup *b = n->backup;
	struct backup_job *j = b->job;
	assert(j != NULL && j->copy != NULL);
	int rv = store_copy_step(j->copy, BACKUP_STEP_PAGES);
	if (rv == 1)
		return;
	uv_idle_stop(idle);
	store_copy_end(j->copy);
	j->copy = NULL;
	if (rv == 0)
		rv = job_prepare(j);
	if (rv != 0) {
		job_end(j, rv);
		return;
	}
	j->work.data = j;
	b->working = true;
	rv = uv_queue_work(n->loop, &j->work, job_work, job_after_work);
	assert(rv == 0); /* cannot fail with valid arguments */
}

int node_backup_take(struct node *n, const char *target, node_backup_cb cb, void *arg)
{
	struct node_backup *b = n->backup;
	if (n->session == NULL || n->phase != NODE_ACTIVE || !barrier_is_unsealed(n->barrier))
		return -ENOKEY;
	if (b->job != NULL)
		return -EBUSY;
	struct backup_job *j = calloc(1, sizeof *j);
	if (j == NULL)
		return -ENOMEM;
	j->node = n;
	j->cb = cb;
	j->arg = arg;
	j->body_fd = -1;
	j->start_ns = uv_hrtime();
	buf_init(&j->keyring);
	buf_init(&j->header);
	if (target != NULL)
		snprintf(j->target, sizeof j->target, "%s", target);
	snprintf(j->copy_path, sizeof j->copy_path, "%s/backup-XXXXXX.db", n->data_dir);
	int fd = mkostemps(j->copy_path, 3, O_CLOEXEC);
	int rv = fd >= 0 ? 0 : -errno;
	if (fd >= 0)
		close(fd); /* SQLite opens the empty file as an empty database */
	else
		j->copy_path[0] = '\0';
	if (rv == 0)
		rv = store_copy_begin(n->session->store, j->copy_path, &j->copy);
	if (rv != 0) {
		job_free(j);
		return rv;
	}
	b->job = j;
	uv_idle_start(&b->idle, on_copy_step);
	return 0;
}

void node_backup_session_closing(struct node *n)
{
	struct node_backup *b = n->backup;
	if (b->job == NULL || b->job->copy == NULL)
		return; /* none, or the worker has it: it no longer needs the store */
	uv_idle_stop(&b->idle);
	job_end(b->job, -EAGAIN);
}

/* ---- Module ---- */

int node_backup_init(struct node *n)
{
	n->backup = calloc(1, sizeof(*n->backup));
	return n->backup != NULL ? 0 : -ENOMEM;
}

void node_backup_open(struct node *n)
{
	uv_idle_init(n->loop, &n->backup->idle);
	n->backup->idle.data = n;
	/* Copies a crash left behind (the dumps are unlinked at once). */
	file_remove_matching(n->data_dir, "backup-", ".db");
}

int node_backup_close(struct node *n)
{
	struct node_backup *b = n->backup;
	int handles = 1;
	if (b->job != NULL && b->working) {
		b->closing = true;
		handles++; /* released when the worker is done */
	} else if (b->job != NULL) {
		node_backup_session_closing(n);
	}
	uv_close((uv_handle_t *)&b->idle, node_handle_closed);
	return handles;
}

void node_backup_free(struct node *n)
{
	free(n->backup);
	n->backup = NULL;
}
