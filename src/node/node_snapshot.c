/* Backups as control files: .vault/snapshot (read), .vault/restore
 * (written), both control streams (VFS_OP_CTL_OPEN ... CTL_CLOSE), and
 * scheduled snapshots (snapshot "local").
 *
 * Opening .vault/snapshot goes through the read path (node_ops.c), so the
 * backup (node_backup.c) holds at least everything acknowledged before
 * the open; it is then read piecewise: the header from memory, the body
 * from its unlinked file in the data directory. What a backup holds is
 * ciphertext and the keyring sealed under the root key, what the data
 * directory holds too.
 *
 * A restore's bytes go into a staging file in the data directory; FINISH
 * hands it to node_restore.c. A stream idle for VFS_CTL_STREAM_IDLE_S
 * (its mount died) is forgotten and its file removed. */
#include "node/internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/fileutil.h"
#include "lib/log.h"
#include "node/snapfile.h"

#define SNAPSHOT_STREAMS 4u
#define SNAPSHOT_TICK_MS 1000u
#define SNAPSHOT_FORCE_PREFIX "force\n"

struct ctl_stream {
	uint64_t id; /* 0: a free slot */
	bool write;
	int fd;
	struct buf header;   /* read: served before the body */
	uint64_t size;       /* read: header and body */
	uint64_t last_used;  /* uv_now */
	char path[4096];     /* write: the staging file, removed at close */
	uint64_t skip;       /* write: bytes of a leading "force" line */
	bool force;
	bool finishing;      /* write: handed to node_restore.c */
};

struct node_snapshot {
	struct ctl_stream streams[SNAPSHOT_STREAMS];
	char *dir;               /* snapshot "local" path; NULL: none */
	uv_timer_t timer;
	uint64_t next_scheduled; /* uv_now of the next scheduled snapshot */
	bool schedule_failed;    /* the last scheduled one failed (logged once) */
};

/* ---- Streams ---- */

static struct ctl_stream *stream_find(struct node *n, uint64_t id)
{
	for (unsigned i = 0; i < SNAPSHOT_STREAMS && id != 0; i++) {
		struct ctl_stream *st = &n->snapshot->streams[i];
		if (st->id == id) {
			st->last_used = uv_now(n->loop);
			return st;
		}
	}
	return NULL;
}

static struct ctl_stream *stream_new(struct node *n, bool write)
{
	for (unsigned i = 0; i < SNAPSHOT_STREAMS; i++) {
		struct ctl_stream *st = &n->snapshot->streams[i];
		if (st->id != 0)
			continue;
		memset(st, 0, sizeof *st);
		while (st->id == 0)
			randombytes_buf(&st->id, sizeof st->id);
		st->write = write;
		st->fd = -1;
		buf_init(&st->header);
		st->last_used = uv_now(n->loop);
		return st;
	}
	return NULL;
}

static void stream_free(struct ctl_stream *st)
{
	if (st->fd >= 0)
		close(st->fd);
	if (st->path[0] != '\0')
		unlink(st->path);
	buf_free(&st->header);
	memset(st, 0, sizeof *st);
	st->fd = -1;
}

/* A backup shows the state, so its handle waits, as any read's answer
 * does, until what it shows is safe (node_safe.c); a restore's does not. */
static void reply_handle(struct node *n, struct api_request *req, const struct ctl_stream *st)
{
	uint8_t out[16];
	for (unsigned i = 0; i < 8; i++) {
		out[i] = (uint8_t)(st->id >> (8 * i));
		out[8 + i] = (uint8_t)(st->size >> (8 * i));
	}
	if (st->write)
		api_reply(req, 0, out, sizeof out);
	else
		node_safe_reply(n, req, 0, out, sizeof out);
}

static void on_stream_backup(struct node *n, void *arg, int status, int body_fd,
			     struct buf *header)
{
	struct api_request *req = arg;
	struct ctl_stream *st = status == 0 ? stream_new(n, false) : NULL;
	if (status == 0 && st == NULL) {
		log_warn("node %s: %u backups or restores are open already", n->node_id,
			 SNAPSHOT_STREAMS);
		status = -EBUSY;
	}
	if (status != 0) {
		if (body_fd >= 0)
			close(body_fd);
		api_reply(req, status, NULL, 0);
		return;
	}
	st->fd = body_fd;
	st->header = *header; /* taken over */
	buf_init(header);
	struct stat sb;
	st->size = st->header.len + (fstat(st->fd, &sb) == 0 ? (uint64_t)sb.st_size : 0);
	reply_handle(n, req, st);
}

void node_snapshot_take(struct node *n, struct api_request *req)
{
	int rv = node_backup_take(n, NULL, on_stream_backup, req);
	if (rv != 0)
		api_reply(req, rv, NULL, 0);
}

static void stream_open_restore(struct node *n, struct api_request *req)
{
	int rv = node_restore_may_start(n);
	struct ctl_stream *st = rv == 0 ? stream_new(n, true) : NULL;
	if (rv == 0 && st == NULL)
		rv = -EBUSY;
	if (st != NULL) {
		snprintf(st->path, sizeof st->path, "%s/restore-%016" PRIx64 ".incoming",
			 n->data_dir, st->id);
		st->fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (st->fd < 0) {
			rv = -errno;
			log_error("node %s: cannot create %s: %s", n->node_id, st->path,
				  strerror(errno));
			st->path[0] = '\0';
			stream_free(st);
		}
	}
	if (rv != 0)
		api_reply(req, rv, NULL, 0);
	else
		reply_handle(n, req, st);
}

static void stream_open(struct node *n, struct api_request *req, struct cursor *c)
{
	size_t len = 0;
	const uint8_t *name = cursor_blob(c, 32, &len);
	bool write = cursor_u8(c) != 0;
	if (cursor_done(c) != 0) {
		api_reply(req, -EBADMSG, NULL, 0);
		return;
	}
	bool snapshot = len == 8 && memcmp(name, "snapshot", 8) == 0;
	bool restore = len == 7 && memcmp(name, "restore", 7) == 0;
	if (!snapshot && !restore) {
		api_reply(req, -ENOENT, NULL, 0);
		return;
	}
	/* Root's, whatever the mount's mode bits say. */
	if (req->uid != 0 || snapshot == write) {
		log_warn("node %s: uid %u may not %s .vault/%s", n->node_id, req->uid,
			 write ? "write" : "read", snapshot ? "snapshot" : "restore");
		api_reply(req, -EACCES, NULL, 0);
		return;
	}
	if (restore)
		stream_open_restore(n, req);
	else
		node_ops_read(n, req); /* linearizable: node_snapshot_take */
}

static void stream_pread(struct node *n, struct api_request *req, struct ctl_stream *st,
			 struct cursor *c)
{
	uint64_t off = cursor_u64(c);
	uint32_t size = cursor_u32(c);
	if (cursor_done(c) != 0 || st->write) {
		api_reply(req, -EBADMSG, NULL, 0);
		return;
	}
	if (size > VFS_MAX_VALUE)
		size = VFS_MAX_VALUE;
	if (off >= st->size)
		size = 0;
	else if (size > st->size - off)
		size = (uint32_t)(st->size - off);
	uint8_t *out = malloc(size > 0 ? size : 1);
	if (out == NULL) {
		api_reply(req, -ENOMEM, NULL, 0);
		return;
	}
	size_t from_header = 0;
	if (off < st->header.len) {
		from_header = st->header.len - off < size ? st->header.len - off : size;
		memcpy(out, st->header.data + off, from_header);
	}
	int rv = 0;
	if (size > from_header) {
		uint64_t body_off = off + from_header - st->header.len;
		ssize_t got = pread(st->fd, out + from_header, size - from_header, (off_t)body_off);
		rv = got == (ssize_t)(size - from_header) ? 0 : got < 0 ? -errno : -EIO;
		if (rv != 0)
			log_error("node %s: cannot read the backup's body: %s", n->node_id,
				  strerror(-rv));
	}
	api_reply(req, rv, out, rv == 0 ? size : 0);
	free(out);
}

static void stream_pwrite(struct node *n, struct api_request *req, struct ctl_stream *st,
			  struct cursor *c)
{
	uint64_t off = cursor_u64(c);
	size_t len = 0;
	const uint8_t *data = cursor_blob(c, VFS_MAX_VALUE, &len);
	if (cursor_done(c) != 0 || !st->write || st->finishing) {
		api_reply(req, -EBADMSG, NULL, 0);
		return;
	}
	/* `(echo force; cat backup.snap) > .vault/restore`: restore a backup
	 * of another vault. */
	size_t prefix = sizeof(SNAPSHOT_FORCE_PREFIX) - 1;
	if (off == 0 && len >= prefix && memcmp(data, SNAPSHOT_FORCE_PREFIX, prefix) == 0) {
		st->force = true;
		st->skip = prefix;
	}
	if (off < st->skip && off + len > 0 && !(off == 0 && st->force)) {
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	uint64_t at = off < st->skip ? 0 : off - st->skip;
	size_t from = off < st->skip ? (size_t)(st->skip - off) : 0;
	int rv = 0;
	size_t done = from;
	while (rv == 0 && done < len) {
		ssize_t w = pwrite(st->fd, data + done, len - done, (off_t)(at + done - from));
		if (w < 0 && errno != EINTR)
			rv = -errno;
		else if (w > 0)
			done += (size_t)w;
	}
	if (rv != 0)
		log_error("node %s: cannot stage the restore in %s: %s", n->node_id, st->path,
			  strerror(-rv));
	api_reply(req, rv, NULL, 0);
}

static void stream_finish(struct node *n, struct api_request *req, struct ctl_stream *st)
{
	if (!st->write || st->finishing) {
		api_reply(req, st->write ? -EBUSY : 0, NULL, 0);
		return;
	}
	st->finishing = true;
	node_restore_start(n, req, st->fd, st->path, st->force);
}

void node_snapshot_request(struct node *n, struct api_request *req)
{
	struct cursor c;
	cursor_init(&c, req->payload, req->len);
	if (req->op == VFS_OP_CTL_OPEN) {
		stream_open(n, req, &c);
		return;
	}
	struct ctl_stream *st = stream_find(n, cursor_u64(&c));
	if (st == NULL || req->uid != 0) {
		api_reply(req, st == NULL ? -EBADF : -EACCES, NULL, 0);
		return;
	}
	switch (req->op) {
	case VFS_OP_CTL_PREAD:
		stream_pread(n, req, st, &c);
		return;
	case VFS_OP_CTL_PWRITE:
		stream_pwrite(n, req, st, &c);
		return;
	case VFS_OP_CTL_FINISH:
		stream_finish(n, req, st);
		return;
	case VFS_OP_CTL_CLOSE:
		/* A restore under way reads its own descriptor; a fresh node's
		 * restore has renamed the file already. */
		stream_free(st);
		api_reply(req, 0, NULL, 0);
		return;
	default:
		api_reply(req, -ENOSYS, NULL, 0);
		return;
	}
}

/* ---- Scheduled snapshots: snapshot "local" { path, interval, retain } ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Removes the oldest of the files this node made until RETAIN are left. */
static void schedule_prune(struct node *n, const char *dir, const char *prefix, unsigned retain)
{
	char **names = NULL;
	size_t count = 0;
	if (file_list_prefix(dir, prefix, &names, &count) != 0)
		return;
	qsort(names, count, sizeof *names, name_cmp);
	for (size_t i = 0; i + retain < count; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (unlink(path) == 0)
			log_info("node %s: removed old snapshot %s", n->node_id, path);
	}
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
}

static void on_scheduled(struct node *n, void *arg, int status, int body_fd,
			 struct buf *header)
{
	struct node_snapshot *sn = n->snapshot;
	(void)arg;
	(void)header;
	assert(body_fd < 0);
	if (status == 0) {
		char prefix[300];
		snprintf(prefix, sizeof prefix, "vaultfs-%s-", n->node_id);
		schedule_prune(n, sn->dir, prefix, n->cfg.snapshot_retain);
	} else if (!sn->schedule_failed) {
		log_error("node %s: scheduled snapshot into %s failed: %s (retrying every "
			  "interval)", n->node_id, sn->dir, strerror(-status));
	}
	sn->schedule_failed = status != 0;
}

static void schedule_tick(struct node *n)
{
	struct node_snapshot *sn = n->snapshot;
	uint64_t now = uv_now(n->loop);
	if (sn->dir == NULL || now < sn->next_scheduled)
		return;
	/* The leader's job; a follower just keeps checking. */
	if (n->phase != NODE_ACTIVE || !node_query_is_leader(n))
		return;
	sn->next_scheduled = now + n->cfg.snapshot_interval_ms;
	char when[32], path[4096];
	time_t secs = time(NULL);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
	snprintf(path, sizeof path, "%s/vaultfs-%s-%s.snap", sn->dir, n->node_id, when);
	int rv = file_mkdir_p(sn->dir, 0700);
	if (rv == 0)
		rv = node_backup_take(n, path, on_scheduled, NULL);
	if (rv != 0)
		on_scheduled(n, NULL, rv, -1, NULL);
}

/* ---- Module ---- */

static void on_snapshot_timer(uv_timer_t *t)
{
	struct node *n = t->data;
	uint64_t now = uv_now(n->loop);
	for (unsigned i = 0; i < SNAPSHOT_STREAMS; i++) {
		struct ctl_stream *st = &n->snapshot->streams[i];
		if (st->id != 0 && now - st->last_used > (uint64_t)VFS_CTL_STREAM_IDLE_S * 1000) {
			log_warn("node %s: forgetting a %s idle for %u s", n->node_id,
				 st->write ? "restore" : "backup", VFS_CTL_STREAM_IDLE_S);
			stream_free(st);
		}
	}
	schedule_tick(n);
	node_restore_tick(n);
}

int node_snapshot_init(struct node *n)
{
	n->snapshot = calloc(1, sizeof(*n->snapshot));
	if (n->snapshot == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < SNAPSHOT_STREAMS; i++)
		n->snapshot->streams[i].fd = -1;
	if (n->cfg.snapshot_dir != NULL && (n->snapshot->dir = strdup(n->cfg.snapshot_dir)) == NULL)
		return -ENOMEM;
	return 0;
}

void node_snapshot_open(struct node *n)
{
	struct node_snapshot *sn = n->snapshot;
	uv_timer_init(n->loop, &sn->timer);
	sn->timer.data = n;
	sn->next_scheduled = uv_now(n->loop) + n->cfg.snapshot_interval_ms;
	uv_timer_start(&sn->timer, on_snapshot_timer, SNAPSHOT_TICK_MS, SNAPSHOT_TICK_MS);
	/* Staging files of a restore that a crash interrupted. */
	file_remove_matching(n->data_dir, "restore-", ".incoming");
}

int node_snapshot_close(struct node *n)
{
	for (unsigned i = 0; i < SNAPSHOT_STREAMS; i++) {
		if (n->snapshot->streams[i].id != 0)
			stream_free(&n->snapshot->streams[i]);
	}
	uv_close((uv_handle_t *)&n->snapshot->timer, node_handle_closed);
	return 1;
}

void node_snapshot_free(struct node *n)
{
	if (n->snapshot != NULL)
		free(n->snapshot->dir);
	free(n->snapshot);
	n->snapshot = NULL;
}
