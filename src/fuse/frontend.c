#include "fuse/frontend.h"
#include "fuse/cache.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fuse/absent.h"
#include "fuse/control.h"
#include "fuse/listing.h"
#include "fuse/valuecache.h"
#include "lib/buf.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/monoclock.h"
#include "vaultfs/client.h"
#include "vaultfs/proto.h"

/* Entries and attributes that came without a grant (control files, answers
 * that were not linearizable) are not kept by the kernel; the grants and
 * the notices that keep the rest coherent are in cache.h. */
#define FRONTEND_ENTRY_TIMEOUT 0.0
#define FRONTEND_ATTR_TIMEOUT 0.0

#define FRONTEND_BLOCK 4096u
/* The kernel's ids of new secrets whose creation waits for their first
 * commit (frontend_create_later): above every inode number the daemon gives
 * (below INT64_MAX) and those of the control files (CONTROL_DIR_INO up). */
#define FRONTEND_NEW_NODEID (UINT64_C(1) << 63)
/* How long the kernel may keep a new secret's attributes from its CREATE
 * (s): just past the open() that made it, which checks permissions on the
 * node (without them cached, one GETATTR more per create). Only the
 * creator's descriptors reach that node, and the kernel drops what it
 * keeps itself on a write; a SETATTR's answer replaces it. */
#define FRONTEND_NEW_ATTR_TIMEOUT 0.001
/* How old the daemon's word at a LOOKUP on whether a write could commit
 * may be when a CREATE of that name takes it for its own (absent.h). The
 * kernel sends the two back to back; a CREATE that comes later asks. */
#define FRONTEND_ABSENT_FRESH_NS (20 * 1000000ull)
/* At most one line about refusals for the budget per this long. */
#define FRONTEND_REFUSAL_LOG_NS (10 * 1000000000ull)

/* Every open file and directory is on the frontend's list, so that handles
 * the kernel never released (lazy unmount, abort) are still wiped. */
struct frontend_handle {
	struct frontend_handle *prev;
	struct frontend_handle *next;
	bool is_dir; /* struct frontend_dir, else struct frontend_file */
};

struct frontend {
	struct vfs_client *client;
	struct cache *cache; /* NULL: nothing is cached in the kernel */
	struct valuecache *values; /* the values of open secrets, and their budget */
	struct absent *absent;     /* names just looked up and found absent */
	unsigned timeout_ms;
	bool trace_calls;        /* -d: log each call to the daemon */
	struct timespec started; /* times of the control files */
	pthread_mutex_t lock;    /* protects handles and next_new */
	struct frontend_handle handles;
	uint64_t next_new;       /* node ids handed out to new secrets so far */
	_Atomic unsigned n_new;  /* handles whose secret is not created yet */
	pthread_mutex_t log_lock; /* protects the two below */
	uint64_t refusal_logged_ns; /* when a refusal for the budget was last logged */
	unsigned refusals_unlogged; /* and how many came since */
};

/* An open regular file: a secret's value (valuecache.h: shared until
 * written, then private), or a control file's contents read at open. */
struct frontend_file {
	struct frontend_handle link;
	pthread_mutex_t lock; /* several threads may use one fh at once */
	uint64_t nodeid;      /* the kernel's id of the file (set once) */
	uint64_t ino;         /* the daemon's (0 until a new secret is created) */
	/* A new secret, opened by CREATE without O_EXCL, is created on the
	 * daemon when its value is first committed (frontend_create_later):
	 * new is true until then. parent, name, mode and creator say how (set
	 * once). */
	bool new;
	uint64_t parent;
	char *name;
	uint32_t mode;
	struct vfs_caller creator;
	const struct control_file *ctl; /* NULL for a secret */
	struct valuecache_copy *value;  /* a secret's; NULL: empty */
	uint8_t *ctl_data;              /* a control file's */
	size_t ctl_len;
	bool dirty;  /* written to: differs from the committed value */
	bool trunc_pending; /* opened with O_TRUNC, the empty value not committed yet */
	int failed;  /* -errno: a write could not be held (over VFS_MAX_VALUE,
			over the budget, out of memory): never commit */
	bool append;
	bool ctl_sent;  /* a control command was already run through this handle */
	int ctl_status; /* and this was its result */
	uint64_t stream; /* a control stream's daemon handle (CONTROL_STREAM) */
	bool stream_written;  /* bytes were written to it */
	bool stream_finished; /* and FINISH ran, with ctl_status as its result */
	pid_t opener;         /* the process that opened it */
	bool have_attr;       /* attr: the secret's attributes as last seen */
	struct vfs_attr attr; /* (what fstat shows once it is unlinked) */
};

/* An open directory: the whole listing, fetched once at opendir. */
struct frontend_dir {
	struct frontend_handle link;
	struct listing *list;
};

/* ---- helpers ------------------------------------------------------------ */

static struct frontend *frontend_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void frontend_track(struct frontend *fe, struct frontend_handle *h)
{
	pthread_mutex_lock(&fe->lock);
	h->next = fe->handles.next;
	h->prev = &fe->handles;
	fe->handles.next->prev = h;
	fe->handles.next = h;
	pthread_mutex_unlock(&fe->lock);
}

static void frontend_untrack(struct frontend *fe, struct frontend_handle *h)
{
	pthread_mutex_lock(&fe->lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fe->lock);
}

static void frontend_wipe(uint8_t *p, size_t cap)
{
	if (p != NULL) {
		explicit_bzero(p, cap);
		free(p);
	}
}

/* Names longer than VFS_MAX_NAME are refused here: the kernel lets FUSE
 * names grow to 1024 bytes. */
static int frontend_check_name(const char *name)
{
	return strlen(name) > VFS_MAX_NAME ? -ENAMETOOLONG : 0;
}

static bool frontend_is_vault_dir(fuse_ino_t parent, const char *name)
{
	return parent == FUSE_ROOT_ID && strcmp(name, CONTROL_DIR_NAME) == 0;
}

/* The caller's command name, for a daemon that audits (an empty name
 * otherwise, or when the process is gone): FUSE gives only the pid, and
 * /proc in the mount's pid namespace is where that pid means something. */
static void frontend_caller_comm(pid_t pid, char comm[VFS_COMM_LEN])
{
	char path[32];
	memset(comm, 0, VFS_COMM_LEN);
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, comm, VFS_COMM_LEN - 1);
	close(fd);
	if (n <= 0) {
		memset(comm, 0, VFS_COMM_LEN);
		return;
	}
	if (comm[n - 1] == '\n')
		comm[n - 1] = '\0';
}

/* REQ's caller, as the daemon is told (the command only when it audits). */
static void frontend_caller(fuse_req_t req, struct vfs_caller *who)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	*who = (struct vfs_caller){ .uid = (uint32_t)ctx->uid, .gid = (uint32_t)ctx->gid,
				    .pid = ctx->pid > 0 ? (uint32_t)ctx->pid : 0 };
	if (vfs_client_audited(frontend_of(req)->client))
		frontend_caller_comm(ctx->pid, who->comm);
	else
		memset(who->comm, 0, sizeof(who->comm));
}

/* One call to the daemon on behalf of WHO (NULL: req's caller). *ret_resp
 * (if wanted) is released with vfs_client_free_resp. The answer is
 * admitted by the cache (cache.h) before anything of it reaches the
 * kernel; *ret_ttl (if wanted) says how long the kernel may keep what it
 * says. */
static int frontend_call_as(fuse_req_t req, const struct vfs_caller *who, uint16_t op,
			    const struct buf *payload, uint8_t **ret_resp, size_t *ret_len,
			    struct cache_ttl *ret_ttl, unsigned timeout_ms)
{
	struct frontend *fe = frontend_of(req);
	uint8_t *resp = NULL;
	size_t len = 0;
	int r;

	if (ret_ttl != NULL)
		*ret_ttl = (struct cache_ttl){ 0 }; /* nothing to keep */
	if (payload != NULL && payload->err != 0)
		return payload->err;
	if (fe->client == NULL)
		return -ENOTCONN;
	if (fe->trace_calls)
		fprintf(stderr, "vaultfs: daemon call %s\n", vfs_op_name(op));
	struct vfs_resp_meta meta = { 0, 0 };
	struct vfs_caller own;
	if (who == NULL) {
		frontend_caller(req, &own);
		who = &own;
	}
	r = vfs_client_call_as(fe->client, op, who, payload != NULL ? payload->data : NULL,
			       payload != NULL ? payload->len : 0, timeout_ms, &resp, &len,
			       &meta);
	struct cache_ttl ttl = cache_admit(fe->cache, &meta);
	if (ret_ttl != NULL)
		*ret_ttl = ttl;
	if (r < 0)
		return r;
	if (ret_resp != NULL) {
		*ret_resp = resp;
		*ret_len = len;
	} else {
		vfs_client_free_resp(resp, len);
	}
	return 0;
}

static int frontend_call(fuse_req_t req, uint16_t op, const struct buf *payload,
			 uint8_t **ret_resp, size_t *ret_len, struct cache_ttl *ret_ttl)
{
	return frontend_call_as(req, NULL, op, payload, ret_resp, ret_len, ret_ttl,
				frontend_of(req)->timeout_ms);
}

/* A call for WHO (NULL: req's caller) whose response payload is one
 * vfs_attr. */
static int frontend_call_attr_as(fuse_req_t req, const struct vfs_caller *who, uint16_t op,
				 const struct buf *payload, struct vfs_attr *ret,
				 struct cache_ttl *ret_ttl)
{
	struct cursor c;
	struct vfs_attr a;
	uint8_t *resp = NULL;
	size_t len = 0;
	int r;

	r = frontend_call_as(req, who, op, payload, &resp, &len, ret_ttl,
			     frontend_of(req)->timeout_ms);
	if (r < 0)
		return r;
	cursor_init(&c, resp, len);
	vfs_attr_get(&c, &a);
	r = cursor_done(&c);
	vfs_client_free_resp(resp, len);
	if (r < 0)
		return -EIO; /* malformed answer: the daemon is at fault */
	*ret = a;
	return 0;
}

static int frontend_call_attr(fuse_req_t req, uint16_t op, const struct buf *payload,
			      struct vfs_attr *ret, struct cache_ttl *ret_ttl)
{
	return frontend_call_attr_as(req, NULL, op, payload, ret, ret_ttl);
}

/* The attributes of INO, and how long the kernel may keep them: held by
 * the mount, or asked of the daemon. */
static int frontend_getattr_ino(fuse_req_t req, fuse_ino_t ino, struct vfs_attr *ret,
				struct cache_ttl *ret_ttl)
{
	struct frontend *fe = frontend_of(req);
	struct buf b;
	int r;

	if (cache_held_attr(fe->cache, ino, ret, ret_ttl))
		return 0;
	buf_init(&b);
	buf_put_u64(&b, ino);
	r = frontend_call_attr(req, VFS_OP_GETATTR, &b, ret, ret_ttl);
	buf_free(&b);
	if (r == 0)
		cache_hold_attr(fe->cache, ret_ttl, ret);
	return r;
}

/* The daemon answers ENOENT for an inode that no longer exists. A request
 * on an inode (not on a parent and a name) means the kernel resolved the
 * path before a concurrent unlink or rename replaced what it named: ESTALE
 * makes the kernel walk the path again, once, revalidating (as for NFS), so
 * open() or stat() of a path that rename() atomically replaces never fails
 * with ENOENT. */
static int frontend_ino_error(int r)
{
	return r == -ENOENT ? -ESTALE : r;
}

static struct timespec frontend_ts(int64_t ns)
{
	struct timespec ts;
	int64_t sec = ns / 1000000000;
	int64_t rem = ns % 1000000000;

	if (rem < 0) {
		rem += 1000000000;
		sec--;
	}
	ts.tv_sec = (time_t)sec;
	ts.tv_nsec = (long)rem;
	return ts;
}

static void frontend_attr_to_stat(const struct vfs_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_nlink = a->nlink;
	st->st_size = (off_t)a->size;
	st->st_blksize = FRONTEND_BLOCK;
	st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	st->st_mtim = frontend_ts(a->mtime_ns);
	st->st_atim = frontend_ts(a->atime_ns);
	st->st_ctim = frontend_ts(a->ctime_ns);
}

static void frontend_fill_entry(const struct stat *st, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = st->st_ino;
	e->attr = *st;
	e->attr_timeout = FRONTEND_ATTR_TIMEOUT;
	e->entry_timeout = FRONTEND_ENTRY_TIMEOUT;
}

/* Tests (failpoint FAILPOINT, in ms): holds a reply between the mount's
 * look at what it says and the kernel's reading of it, which is where a
 * notice acted on in between must not be missed (cache.h). */
static void frontend_delay_reply(const char *failpoint, const char *what)
{
	long ms = failpoint_value(failpoint);

	if (ms <= 0)
		return;
	log_info("mount: failpoint: holding %s reply for %ld ms", what, ms);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	log_info("mount: failpoint: %s reply released", what);
}

static void frontend_reply_entry_attr(fuse_req_t req, const struct vfs_attr *a,
				      const struct cache_ttl *ttl)
{
	struct fuse_entry_param e;
	struct stat st;

	frontend_attr_to_stat(a, &st);
	frontend_fill_entry(&st, &e); /* ttls 0 */
	struct cache *c = frontend_of(req)->cache;
	if (cache_given(c, e.ino, ttl)) {
		e.attr_timeout = cache_ttl_left(ttl, ttl->attr);
		e.entry_timeout = cache_ttl_left(ttl, ttl->entry);
	}
	if (S_ISREG(a->mode)) /* a secret's: the directories on its path go on */
		frontend_delay_reply("lookup_reply_delay_ms", "an entry");
	if (fuse_reply_entry(req, &e) < 0)
		cache_not_given(c, e.ino);
}

static void frontend_reply_control_stat(fuse_req_t req, fuse_ino_t ino)
{
	struct stat st;

	control_stat(ino, &frontend_of(req)->started, &st);
	fuse_reply_attr(req, &st, FRONTEND_ATTR_TIMEOUT);
}

/* The file handle behind fi, or NULL when there is none (or it is a
 * directory's: the link is the first member of both handle structs). */
static struct frontend_file *frontend_file_of(const struct fuse_file_info *fi)
{
	struct frontend_handle *h;

	if (fi == NULL || fi->fh == 0)
		return NULL;
	h = (struct frontend_handle *)(uintptr_t)fi->fh;
	return h->is_dir ? NULL : (struct frontend_file *)h;
}

/* ---- file handles --------------------------------------------------------- */

/* What a GETATTR of INO shows given its open handles, in one walk over
 * them. fstat() comes as a path-based GETATTR (the kernel names no handle,
 * MINE is NULL then): a handle being written (MINE, if named) shows the
 * size it will commit. Every handle remembers the attributes the daemon
 * gave, so that once the secret is GONE (the daemon said ENOENT) a handle
 * shows them, with no links. Returns true if *A was changed. */
static bool frontend_handles_getattr(struct frontend *fe, const struct frontend_file *mine,
				     uint64_t ino, bool gone, struct vfs_attr *a)
{
	const struct vfs_attr seen = *a;
	bool changed = false;
	pthread_mutex_lock(&fe->lock);
	for (struct frontend_handle *h = fe->handles.next; h != &fe->handles; h = h->next) {
		struct frontend_file *f = (struct frontend_file *)h;
		if (h->is_dir || f->nodeid != ino || f->ctl != NULL)
			continue;
		pthread_mutex_lock(&f->lock);
		if (gone && !changed && f->have_attr) {
			*a = f->attr;
			a->nlink = 0;
			a->size = valuecache_len(f->value);
			changed = true;
		} else if (!gone) {
			f->attr = seen;
			f->have_attr = true;
			if (!changed && (mine == NULL || f == mine) && (f->dirty || f->trunc_pending)) {
				a->size = valuecache_len(f->value);
				changed = true;
			}
		}
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&fe->lock);
	return changed;
}

static int frontend_file_commit(fuse_req_t req, struct frontend_file *f, bool trunc);
static int frontend_make_node(fuse_req_t req, const struct vfs_caller *who, fuse_ino_t parent,
			      const char *name, mode_t mode, uint16_t op,
			      const struct valuecache_copy *value, struct vfs_attr *ret,
			      struct cache_ttl *ret_ttl);

/* Commits what req's caller has written to INO through its own handles and
 * not closed yet. Setting mtime comes before close() in tools that copy
 * times (cp -p: write, futimens, close); without this the commit at close
 * would set mtime again, to the time of the commit. Only the caller's own
 * handles: another process's pending value may be half written. The
 * kernel names no handle here. Returns 0 or the commit's error. */
static int frontend_commit_own_handles(fuse_req_t req, uint64_t ino)
{
	struct frontend *fe = frontend_of(req);
	pid_t caller = fuse_req_ctx(req)->pid;
	int r = 0;
	pthread_mutex_lock(&fe->lock);
	for (struct frontend_handle *h = fe->handles.next; h != &fe->handles && r == 0;
	     h = h->next) {
		struct frontend_file *f = (struct frontend_file *)h;
		if (h->is_dir || f->nodeid != ino || f->ctl != NULL || f->opener != caller)
			continue;
		pthread_mutex_lock(&f->lock);
		r = frontend_file_commit(req, f, true);
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&fe->lock);
	return r;
}

static struct frontend_file *frontend_file_new(uint64_t ino, const struct control_file *ctl)
{
	struct frontend_file *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	pthread_mutex_init(&f->lock, NULL);
	f->nodeid = ino;
	f->ino = ino;
	f->ctl = ctl;
	return f;
}

static void frontend_file_free(struct frontend *fe, struct frontend_file *f)
{
	if (f == NULL)
		return;
	valuecache_drop(fe->values, f->value);
	frontend_wipe(f->ctl_data, f->ctl_len);
	if (f->new)
		fe->n_new--;
	free(f->name);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/* For assert(): someone holds LOCK (a mutex this thread holds is busy to
 * it too). Acquires it if not, but then the assertion fails anyway. */
static bool frontend_locked(pthread_mutex_t *lock)
{
	return pthread_mutex_trylock(lock) == EBUSY;
}

/* What a read of the handle reads. Caller holds f->lock. */
static const uint8_t *frontend_file_bytes(const struct frontend_file *f, size_t *ret_len)
{
	assert(frontend_locked((pthread_mutex_t *)&f->lock));
	if (f->ctl != NULL) {
		*ret_len = f->ctl_len;
		return f->ctl_data;
	}
	*ret_len = valuecache_len(f->value);
	return valuecache_bytes(f->value);
}

/* Logs why an open or a write was refused for the budget: at most one
 * line per FRONTEND_REFUSAL_LOG_NS, saying how many were not logged (a
 * user holding files open could otherwise fill the log). The inode number
 * names no secret. */
static void frontend_log_refusal(fuse_req_t req, uint64_t ino, const char *what)
{
	struct frontend *fe = frontend_of(req);
	uint64_t now = monoclock_ns();
	pthread_mutex_lock(&fe->log_lock);
	bool log = fe->refusal_logged_ns == 0 || now - fe->refusal_logged_ns >= FRONTEND_REFUSAL_LOG_NS;
	unsigned unlogged = fe->refusals_unlogged;
	if (log) {
		fe->refusal_logged_ns = now;
		fe->refusals_unlogged = 0;
	} else {
		fe->refusals_unlogged++;
	}
	pthread_mutex_unlock(&fe->log_lock);
	if (!log)
		return;
	char note[64] = "";
	if (unlogged > 0)
		snprintf(note, sizeof(note), " (%u more since the last such line)", unlogged);
	log_warn("mount: %s of inode %llu by uid %u refused (ENOBUFS): open files hold %zu KiB "
		 "of values, the budget is max_cached_mb=%zu; close files or raise max_cached_mb%s",
		 what, (unsigned long long)ino, (unsigned)fuse_req_ctx(req)->uid,
		 valuecache_used(fe->values) / 1024, valuecache_budget(fe->values) >> 20, note);
}

/* The handle's value can no longer be committed whole (ERR): it is dropped,
 * so that close() fails with ERR and the secret keeps its old value.
 * Caller holds f->lock. */
static int frontend_file_fail(fuse_req_t req, struct frontend_file *f, int err)
{
	assert(frontend_locked(&f->lock));
	if (err == -ENOBUFS)
		frontend_log_refusal(req, f->nodeid, "a write");
	f->failed = err;
	f->dirty = false;
	f->trunc_pending = false;
	valuecache_drop(frontend_of(req)->values, f->value);
	f->value = NULL;
	return err;
}

/* Sets the secret's pending value's length, zero-filling growth. Caller
 * holds f->lock. */
static int frontend_file_resize(fuse_req_t req, struct frontend_file *f, uint64_t size)
{
	int r;

	if (f->failed)
		return f->failed;
	if (size > VFS_MAX_VALUE)
		return -EFBIG;
	r = valuecache_resize(frontend_of(req)->values, &f->value, (size_t)size);
	if (r < 0)
		return frontend_file_fail(req, f, r);
	f->dirty = true;
	return 0;
}

/* Where a value fetched at open goes. */
struct frontend_load {
	struct frontend *fe;
	struct frontend_file *f;
};

/* A secret's value: a share of its copy (valuecache.h). A control file's
 * contents: its own buffer (root's `cat .vault/status` must work however
 * full the budget is, and they are a few hundred bytes). */
static int frontend_file_load(void *arg, const uint8_t *p, size_t len)
{
	struct frontend_load *l = arg;
	struct frontend_file *f = l->f;

	assert(f->value == NULL && f->ctl_data == NULL);
	if (f->ctl == NULL)
		return valuecache_share(l->fe->values, f->ino, p, len, &f->value);
	f->ctl_data = malloc(len > 0 ? len : 1);
	if (f->ctl_data == NULL)
		return -ENOMEM;
	if (len > 0)
		memcpy(f->ctl_data, p, len);
	f->ctl_len = len;
	return 0;
}

/* Fetches the current value of a secret (held by the mount, or from the
 * daemon) or contents of a control file into the handle. */
static int frontend_file_fetch(fuse_req_t req, struct frontend_file *f)
{
	struct frontend *fe = frontend_of(req);
	struct frontend_load load = { fe, f };
	uint8_t *resp = NULL;
	size_t len = 0;
	struct buf b;
	int r;

	if (f->ctl == NULL) {
		r = cache_held_value(fe->cache, f->ino, frontend_file_load, &load);
		if (r != 0)
			return r < 0 ? r : 0;
	}
	buf_init(&b);
	if (f->ctl != NULL)
		buf_put_blob(&b, f->ctl->name, strlen(f->ctl->name));
	else
		buf_put_u64(&b, f->ino);
	struct cache_ttl ttl;
	r = frontend_call(req, f->ctl != NULL ? VFS_OP_CTL_READ : VFS_OP_READ, &b, &resp, &len,
			  &ttl);
	buf_free(&b);
	if (r < 0)
		return r;
	/* The whole response payload is the value (no length prefix). */
	r = len > VFS_MAX_VALUE ? -EIO : frontend_file_load(&load, resp, len);
	if (r == 0 && f->ctl == NULL)
		cache_hold_value(fe->cache, &ttl, f->ino, resp, len);
	vfs_client_free_resp(resp, len);
	return r;
}

/* F's pending value committed, answered with attributes A. Caller holds
 * f->lock. */
static void frontend_file_committed(fuse_req_t req, struct frontend_file *f,
				    const struct cache_ttl *ttl, const struct vfs_attr *a)
{
	f->dirty = false;
	f->trunc_pending = false;
	/* Granted (node_ops.c): the next open's GETATTR is answered here. */
	cache_hold_attr(frontend_of(req)->cache, ttl, a);
}

/* F's new secret was created on the daemon with attributes A, or its
 * creation ended with R < 0. Caller holds f->lock. */
static int frontend_file_created(fuse_req_t req, struct frontend_file *f, int r,
				 const struct vfs_attr *a)
{
	f->new = false;
	frontend_of(req)->n_new--;
	if (r < 0)
		return frontend_file_fail(req, f, r);
	f->ino = a->ino;
	f->attr = *a;
	return 0;
}

/* Creates F's new secret on the daemon, empty, as its creator (its value
 * is committed next, as any value is). Once that fails the handle has
 * failed: close() reports it, and nothing is retried. Caller holds
 * f->lock. */
static int frontend_file_create(fuse_req_t req, struct frontend_file *f)
{
	assert(frontend_locked(&f->lock));
	struct vfs_attr a;

	if (!f->new)
		return 0;
	int r = frontend_make_node(req, &f->creator, f->parent, f->name, f->mode, VFS_OP_CREATE,
				   NULL, &a, NULL);
	return frontend_file_created(req, f, r, &a);
}

/* Creates F's new secret with its pending value in one commit, as its
 * creator. Returns 1 if the cluster cannot take that yet (proto.h: then
 * it is CREATE and WRITE), else 0 or -errno as frontend_file_create.
 * Caller holds f->lock. */
static int frontend_file_create_value(fuse_req_t req, struct frontend_file *f)
{
	assert(frontend_locked(&f->lock) && f->new && f->dirty);
	struct vfs_attr a;
	struct cache_ttl ttl;
	int r = frontend_make_node(req, &f->creator, f->parent, f->name, f->mode,
				   VFS_OP_CREATE_VALUE, f->value, &a, &ttl);
	if (r == -ENOSYS)
		return 1;
	r = frontend_file_created(req, f, r, &a);
	if (r == 0)
		frontend_file_committed(req, f, &ttl, &a);
	return r;
}

/* Creates the new secrets of this mount that are not yet on the daemon
 * and are named NAME in PARENT (NAME NULL: any name in PARENT; PARENT 0:
 * anywhere): a lookup, a listing or a removal in this mount sees them as
 * every other mount will. Errors stay with the handles (close() reports
 * them). */
static void frontend_create_new(fuse_req_t req, uint64_t parent, const char *name)
{
	struct frontend *fe = frontend_of(req);

	if (fe->n_new == 0)
		return;
	pthread_mutex_lock(&fe->lock);
	for (struct frontend_handle *h = fe->handles.next; h != &fe->handles; h = h->next) {
		struct frontend_file *f = (struct frontend_file *)h;
		if (h->is_dir || f->name == NULL || (parent != 0 && f->parent != parent) ||
		    (name != NULL && strcmp(f->name, name) != 0))
			continue;
		pthread_mutex_lock(&f->lock);
		(void)frontend_file_create(req, f);
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&fe->lock);
}

/* Runs FN on the open handle of node id NODEID (FI's if it is that), under
 * its lock; -ESTALE if there is none. A handle found on the list cannot be
 * released meanwhile: fe->lock is held throughout. */
static int frontend_with_nodeid(fuse_req_t req, uint64_t nodeid, struct fuse_file_info *fi,
				int (*fn)(fuse_req_t req, struct frontend_file *f, void *arg),
				void *arg)
{
	struct frontend *fe = frontend_of(req);
	struct frontend_file *f = frontend_file_of(fi);
	bool search = f == NULL || f->nodeid != nodeid;
	int r = -ESTALE;

	if (search) {
		pthread_mutex_lock(&fe->lock);
		f = NULL;
		for (struct frontend_handle *h = fe->handles.next; h != &fe->handles; h = h->next) {
			if (!h->is_dir && ((struct frontend_file *)h)->nodeid == nodeid) {
				f = (struct frontend_file *)h;
				break;
			}
		}
	}
	if (f != NULL) {
		pthread_mutex_lock(&f->lock);
		r = fn(req, f, arg);
		pthread_mutex_unlock(&f->lock);
	}
	if (search)
		pthread_mutex_unlock(&fe->lock);
	return r;
}

/* frontend_with_nodeid: the daemon's inode (uint64_t *ARG) of a new
 * secret, created now if need be. */
static int frontend_new_created(fuse_req_t req, struct frontend_file *f, void *arg)
{
	int r = f->new ? frontend_file_create(req, f) : f->failed;
	*(uint64_t *)arg = f->ino;
	return r;
}

/* frontend_with_nodeid: what a GETATTR of a new secret shows (struct
 * vfs_attr *ARG); 1 while it is not created, 0 once it is (ARG's ino is
 * then the daemon's inode, to ask it). */
static int frontend_new_attr(fuse_req_t req, struct frontend_file *f, void *arg)
{
	struct vfs_attr *a = arg;
	(void)req;
	if (f->failed)
		return f->failed;
	if (!f->new) {
		a->ino = f->ino;
		return 0;
	}
	*a = f->attr;
	a->size = valuecache_len(f->value);
	return 1;
}

/* Commits a written (or, with `trunc`, a truncated) secret buffer as the
 * whole new value. Caller holds f->lock. */
static int frontend_file_commit(fuse_req_t req, struct frontend_file *f, bool trunc)
{
	assert(frontend_locked(&f->lock));
	struct vfs_attr a;
	struct buf b;
	int r;

	if (f->ctl != NULL)
		return 0;
	if (f->failed)
		return f->failed;
	/* A new secret with nothing written waits for its value (the shell's
	 * `printf x > f` closes a descriptor before writing), unless this is
	 * the last chance (TRUNC). */
	if (f->new && f->dirty && (r = frontend_file_create_value(req, f)) <= 0)
		return r;
	if (f->new && (f->dirty || trunc) && (r = frontend_file_create(req, f)) < 0)
		return r;
	if (!f->dirty && !(trunc && f->trunc_pending))
		return 0;
	buf_init(&b);
	buf_put_u64(&b, f->ino);
	buf_put_blob(&b, valuecache_bytes(f->value), valuecache_len(f->value));
	struct cache_ttl ttl;
	r = frontend_call_attr(req, VFS_OP_WRITE, &b, &a, &ttl);
	buf_free(&b);
	if (r == 0)
		frontend_file_committed(req, f, &ttl, &a);
	return r;
}

/* Hands a new handle to the kernel; frees it if the open was interrupted
 * (the kernel then never sends release). */
static void frontend_reply_open_file(fuse_req_t req, struct frontend_file *f,
				     struct fuse_file_info *fi, const struct fuse_entry_param *e)
{
	struct frontend *fe = frontend_of(req);
	int r;

	fi->fh = (uint64_t)(uintptr_t)f;
	/* Every read and write must reach the handle's buffer: the page cache
	 * would split the atomic commit, and the kernel changes a file's size
	 * on its own when one of its handles truncates or writes, which its
	 * readers would see before the commit. Values are held by the mount
	 * instead (cache.h). */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* A read-only handle never has anything to commit: no FLUSH at each
	 * close (FOPEN_NOFLUSH, Linux 5.16), one FUSE round trip less per
	 * `cat`. RELEASE still comes and frees the buffer. */
	fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
	f->opener = fuse_req_ctx(req)->pid;
	frontend_track(fe, &f->link);
	/* A new secret's own node id is never named by a notice. */
	bool counted = e != NULL && e->ino < FRONTEND_NEW_NODEID;
	const struct cache_ttl none = { 0 }; /* E's ttls are 0 */
	if (counted)
		(void)cache_given(fe->cache, e->ino, &none);
	r = e != NULL ? fuse_reply_create(req, e, fi) : fuse_reply_open(req, fi);
	if (r < 0) {
		if (counted)
			cache_not_given(fe->cache, e->ino);
		frontend_untrack(fe, &f->link);
		frontend_file_free(fe, f);
	}
}

/* ---- operations: lifecycle, lookup, attributes ---------------------------- */

static void frontend_init(void *userdata, struct fuse_conn_info *conn)
{
	struct frontend *fe = userdata;
	/* Names may be cached only if one notice can drop them all. */
	if (fe->cache != NULL)
		cache_set_names(fe->cache, conn->proto_minor >= 44);
	/* open(O_TRUNC) must not become a separate truncate: that would commit
	 * an empty value that readers could see. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* Listings bring the attributes of their entries (READDIRPLUS), so
	 * that `ls -l` or `du` need no LOOKUP per file; only worth it when
	 * the kernel may keep what they bring (a cache, grants). AUTO: the
	 * kernel asks for them in a directory's first buffer, and in the rest
	 * only once its entries were looked up, so a plain `ls` or `find` of
	 * a large directory does not make an inode per entry. */
	if (fe->cache != NULL && (conn->capable & FUSE_CAP_READDIRPLUS))
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
	else
		conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	/* The handle buffer is the only write cache; the kernel must not keep
	 * another one that flushes on its own schedule. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

/* LOOKUP_WRITABLE of NAME in PARENT (PAYLOAD): 0 and *RET as a LOOKUP, or
 * -ENOENT, having kept what the daemon said a create of it would meet. */
static int frontend_call_lookup(fuse_req_t req, const struct buf *payload, uint64_t parent,
				const char *name, struct vfs_attr *ret, struct cache_ttl *ret_ttl)
{
	struct frontend *fe = frontend_of(req);
	uint8_t *resp = NULL;
	size_t len = 0;
	int r = frontend_call(req, VFS_OP_LOOKUP_WRITABLE, payload, &resp, &len, ret_ttl);
	if (r < 0)
		return r;
	struct cursor c;
	cursor_init(&c, resp, len);
	bool found = cursor_u8(&c) != 0;
	int writable = 0;
	if (found)
		vfs_attr_get(&c, ret);
	else
		writable = cursor_i32(&c);
	r = cursor_done(&c);
	vfs_client_free_resp(resp, len);
	if (r < 0 || writable > 0 || writable < -VFS_MAX_ERRNO)
		return -EIO; /* malformed answer: the daemon is at fault */
	if (found)
		return 0;
	absent_put(fe->absent, parent, name, writable, monoclock_ns());
	return -ENOENT;
}

/* A LOOKUP answered from a name the mount holds (from a listing or an
 * earlier LOOKUP), if it holds this one: how listings spare the daemon a
 * call per name (cache.h says why the name goes to the kernel this way and
 * not with the listing). */
static bool frontend_lookup_held(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs_attr a;
	struct cache_ttl ttl;

	if (!cache_held_name(frontend_of(req)->cache, parent, name, &a, &ttl))
		return false;
	frontend_reply_entry_attr(req, &a, &ttl);
	return true;
}

static void frontend_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfs_attr a;
	struct buf b;
	int r;

	if (parent == CONTROL_DIR_INO || frontend_is_vault_dir(parent, name)) {
		const struct control_file *f = NULL;
		struct fuse_entry_param e;
		struct stat st;

		if (parent == CONTROL_DIR_INO && (f = control_by_name(name)) == NULL) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		control_stat(f != NULL ? f->ino : CONTROL_DIR_INO, &frontend_of(req)->started, &st);
		frontend_fill_entry(&st, &e);
		fuse_reply_entry(req, &e);
		return;
	}
	if (control_is_ino(parent)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	r = frontend_check_name(name);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	frontend_create_new(req, parent, name);
	if (frontend_lookup_held(req, parent, name))
		return;
	buf_init(&b);
	buf_put_u64(&b, parent);
	buf_put_blob(&b, name, strlen(name));
	struct cache_ttl ttl;
	r = frontend_call_lookup(req, &b, parent, name, &a, &ttl);
	buf_free(&b);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	cache_hold_name(frontend_of(req)->cache, &ttl, parent, name, &a);
	frontend_reply_entry_attr(req, &a, &ttl);
}

/* Inode numbers belong to the daemon; the cache counts the lookups the
 * kernel holds (cache.h: inodes the kernel has not read yet). */
static void frontend_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	cache_forgotten(frontend_of(req)->cache, ino, nlookup);
	fuse_reply_none(req);
}

static void frontend_forget_multi(fuse_req_t req, size_t count,
				  struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		cache_forgotten(frontend_of(req)->cache, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void frontend_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct frontend_file *f = frontend_file_of(fi);
	struct vfs_attr a;
	struct stat st;
	int r;

	if (control_is_ino(ino)) {
		frontend_reply_control_stat(req, ino);
		return;
	}
	uint64_t daemon_ino = ino;
	if (ino >= FRONTEND_NEW_NODEID) {
		r = frontend_with_nodeid(req, ino, fi, frontend_new_attr, &a);
		if (r > 0) { /* not created yet: the handle's own attributes */
			frontend_attr_to_stat(&a, &st);
			fuse_reply_attr(req, &st, 0);
			return;
		}
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
		daemon_ino = a.ino;
	}
	struct cache_ttl held;
	r = frontend_getattr_ino(req, daemon_ino, &a, &held);
	/* A secret unlinked (here or on another node) while open stays
	 * readable through its handles, as on any filesystem: fstat shows it
	 * with no links, not ESTALE. */
	bool gone = r == -ENOENT;
	double ttl = held.attr;
	/* What a handle shows is not for the kernel to keep. */
	if ((r == 0 || gone) && frontend_handles_getattr(frontend_of(req), f, ino, gone, &a)) {
		r = 0;
		ttl = 0;
	}
	r = frontend_ino_error(r);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	frontend_attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, cache_ttl_left(&held, ttl));
}

/* Control files accept truncation (open with O_TRUNC, `echo > file`) and
 * time changes as no-ops; ownership and mode are fixed. */
static void frontend_setattr_control(fuse_req_t req, fuse_ino_t ino, int to_set)
{
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && ino == CONTROL_DIR_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	frontend_reply_control_stat(req, ino);
}

/* The time a setattr asks for: the caller's, or now (UTIME_NOW). */
static int64_t frontend_time_ns(const struct timespec *ts, bool now)
{
	struct timespec t;

	if (now) {
		clock_gettime(CLOCK_REALTIME, &t);
		ts = &t;
	}
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static void frontend_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			     int to_set, struct fuse_file_info *fi)
{
	struct frontend_file *f = frontend_file_of(fi);
	uint32_t valid = 0;
	struct vfs_attr a;
	struct stat st;
	struct buf b;
	int r;

	if (control_is_ino(ino)) {
		frontend_setattr_control(req, ino, to_set);
		return;
	}
	/* The kernel's id for INO, whose handles are looked for by it. */
	uint64_t nodeid = ino;
	if (ino >= FRONTEND_NEW_NODEID &&
	    (r = frontend_with_nodeid(req, nodeid, fi, frontend_new_created, &ino)) < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		valid |= VFS_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID)
		valid |= VFS_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID)
		valid |= VFS_SET_GID;
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))
		valid |= VFS_SET_MTIME;
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
		valid |= VFS_SET_ATIME;
	/* ftruncate() on an open handle changes that handle's pending value,
	 * committed with the rest on close; a path truncate goes to the daemon. */
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (attr->st_size < 0) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		if (f != NULL && f->ctl == NULL) {
			pthread_mutex_lock(&f->lock);
			r = frontend_file_resize(req, f, (uint64_t)attr->st_size);
			pthread_mutex_unlock(&f->lock);
			if (r < 0) {
				fuse_reply_err(req, -r);
				return;
			}
		} else if ((uint64_t)attr->st_size > VFS_MAX_VALUE) {
			fuse_reply_err(req, EFBIG);
			return;
		} else {
			valid |= VFS_SET_SIZE;
		}
	}
	if ((valid & VFS_SET_MTIME) && (r = frontend_commit_own_handles(req, nodeid)) < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	/* A ctime-only change is accepted and ignored (ctime is the daemon's
	 * to keep). Answer with the current attributes. */
	if (valid == 0) {
		struct cache_ttl ttl;
		r = frontend_getattr_ino(req, ino, &a, &ttl);
	} else {
		buf_init(&b);
		buf_put_u64(&b, ino);
		buf_put_u32(&b, valid);
		buf_put_u32(&b, (uint32_t)(attr->st_mode & 07777));
		buf_put_u32(&b, (uint32_t)attr->st_uid);
		buf_put_u32(&b, (uint32_t)attr->st_gid);
		buf_put_u64(&b, (valid & VFS_SET_SIZE) ? (uint64_t)attr->st_size : 0);
		buf_put_i64(&b, (valid & VFS_SET_MTIME)
					? frontend_time_ns(&attr->st_mtim,
							   to_set & FUSE_SET_ATTR_MTIME_NOW)
					: 0);
		buf_put_i64(&b, (valid & VFS_SET_ATIME)
					? frontend_time_ns(&attr->st_atim,
							   to_set & FUSE_SET_ATTR_ATIME_NOW)
					: 0);
		r = frontend_call_attr(req, VFS_OP_SETATTR, &b, &a, NULL);
		buf_free(&b);
	}
	r = frontend_ino_error(r);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	if (f != NULL && f->ctl == NULL) {
		pthread_mutex_lock(&f->lock);
		if (f->dirty || f->trunc_pending)
			a.size = valuecache_len(f->value);
		pthread_mutex_unlock(&f->lock);
	}
	frontend_attr_to_stat(&a, &st);
	fuse_reply_attr(req, &st, FRONTEND_ATTR_TIMEOUT);
}

/* ---- operations: directories ---------------------------------------------- */

static void frontend_dir_free(struct frontend_dir *d)
{
	if (d == NULL)
		return;
	listing_free(d->list);
	free(d);
}

/* Entries of the control directory come from the table. */
static int frontend_dir_fill_control(struct listing *l)
{
	int r = 0;

	for (size_t i = 0; i < control_count() && r == 0; i++) {
		const struct control_file *f = control_at(i);

		r = listing_add(l, f->ino, S_IFREG | f->mode, f->name, strlen(f->name));
	}
	return r;
}

/* The mount holds the names of listing L of directory DIR (cache.h): the
 * LOOKUPs that follow a listing (`ls -l`, `du`) are answered from them. */
static void frontend_dir_hold_names(struct frontend *fe, uint64_t dir, const struct listing *l)
{
	for (size_t i = 0; i < listing_count(l); i++) {
		struct listing_entry e;

		listing_at(l, i, &e);
		if (e.attr != NULL)
			cache_hold_name(fe->cache, e.ttl, dir, e.name, e.attr);
	}
}

/* The daemon's entries of directory INO with their attributes, page by
 * page: each page is a linearizable read with a grant of its own. */
static int frontend_dir_fill_daemon(fuse_req_t req, fuse_ino_t ino, struct listing *l)
{
	uint64_t after = 0;
	int r;

	do {
		uint8_t *resp = NULL;
		size_t len = 0;
		struct cache_ttl ttl;
		struct buf b;

		buf_init(&b);
		buf_put_u64(&b, ino);
		buf_put_u64(&b, after);
		r = frontend_call(req, VFS_OP_READDIRPLUS, &b, &resp, &len, &ttl);
		buf_free(&b);
		if (r < 0)
			return r;
		r = listing_add_page(l, resp, len, &ttl, after, &after);
		vfs_client_free_resp(resp, len);
	} while (r == 0 && after != 0);
	if (r == 0)
		frontend_dir_hold_names(frontend_of(req), ino, l);
	return r;
}

static int frontend_dir_load(fuse_req_t req, fuse_ino_t ino, struct frontend_dir **ret)
{
	struct frontend_dir *d = calloc(1, sizeof(*d));
	int r;

	if (d == NULL || (d->list = listing_new()) == NULL) {
		free(d);
		return -ENOMEM;
	}
	/* The parent is not known here (the daemon's attributes do not name
	 * it) and the kernel resolves ".." itself, so the root's inode stands
	 * in for the d_ino of "..". */
	r = listing_add(d->list, ino, S_IFDIR, ".", 1);
	if (r == 0)
		r = listing_add(d->list, FUSE_ROOT_ID, S_IFDIR, "..", 2);
	if (r == 0 && ino == FUSE_ROOT_ID)
		r = listing_add(d->list, CONTROL_DIR_INO, S_IFDIR, CONTROL_DIR_NAME,
				strlen(CONTROL_DIR_NAME));
	if (r == 0)
		r = ino == CONTROL_DIR_INO ? frontend_dir_fill_control(d->list) :
					     frontend_dir_fill_daemon(req, ino, d->list);
	if (r < 0) {
		frontend_dir_free(d);
		return r;
	}
	*ret = d;
	return 0;
}

static void frontend_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct frontend *fe = frontend_of(req);
	struct frontend_dir *d;
	int r;

	if (control_by_ino(ino) != NULL) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	frontend_create_new(req, ino, NULL);
	r = frontend_ino_error(frontend_dir_load(req, ino, &d));
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	d->link.is_dir = true;
	frontend_track(fe, &d->link);
	if (fuse_reply_open(req, fi) < 0) {
		frontend_untrack(fe, &d->link);
		frontend_dir_free(d);
	}
}

/* What READDIRPLUS says of entry E: its attributes for the kernel to keep
 * while they are good, but never its name (entry ttl 0: cache.h says why;
 * the kernel LOOKUPs the name when it uses it, answered from the names the
 * mount holds); or, when the attributes are not good (gone stale, no
 * grant, "." and "..", control files), only what READDIR says (ino 0).
 * An entry with an ino hands the kernel a lookup: the cache counts it
 * (cache_entry_give), and it must be given back if the entry is not sent. */
static void frontend_dir_entry_param(struct frontend *fe, const struct listing_entry *e,
				     struct fuse_entry_param *ret)
{
	struct cache_ttl now;

	memset(ret, 0, sizeof(*ret));
	ret->attr.st_ino = e->ino;
	ret->attr.st_mode = e->mode;
	if (e->attr == NULL || !cache_entry_give(fe->cache, e->ttl, e->ino, &now))
		return;
	frontend_attr_to_stat(e->attr, &ret->attr);
	ret->ino = e->ino;
	ret->attr_timeout = cache_ttl_left(&now, now.attr); /* entry ttl 0 */
}

/* Offsets are positions in the listing taken at opendir, so a directory
 * changing during the listing neither repeats nor skips entries. */
static void frontend_dir_reply(fuse_req_t req, size_t size, off_t off,
			       struct fuse_file_info *fi, bool plus)
{
	struct frontend_dir *d = (struct frontend_dir *)(uintptr_t)fi->fh;
	struct cache *c = frontend_of(req)->cache;
	size_t used = 0, n = listing_count(d->list), n_given = 0;
	/* The inodes this reply hands the kernel (an entry takes at least
	 * the 24 bytes of struct fuse_dirent's fixed part). */
	uint64_t *given = plus ? calloc(size / 24 + 1, sizeof(*given)) : NULL;
	char *out;

	out = malloc(size > 0 ? size : 1);
	if (out == NULL || (plus && given == NULL)) {
		free(out);
		free(given);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t end = off < 0 ? n : (size_t)off; end < n; end++) {
		struct listing_entry e;
		struct fuse_entry_param ep;
		size_t need;

		listing_at(d->list, end, &e);
		if (plus) {
			frontend_dir_entry_param(frontend_of(req), &e, &ep);
			need = fuse_add_direntry_plus(req, out + used, size - used, e.name, &ep,
						      (off_t)(end + 1));
		} else {
			memset(&ep.attr, 0, sizeof(ep.attr));
			ep.attr.st_ino = e.ino;
			ep.attr.st_mode = e.mode;
			need = fuse_add_direntry(req, out + used, size - used, e.name, &ep.attr,
						 (off_t)(end + 1));
		}
		if (plus && ep.ino != 0 && need <= size - used)
			given[n_given++] = ep.ino;
		else if (plus && ep.ino != 0)
			cache_not_given(c, ep.ino); /* counted, but not sent */
		if (need > size - used)
			break;
		used += need;
	}
	if (plus && used > 0)
		frontend_delay_reply("readdirplus_reply_delay_ms", "a READDIRPLUS");
	if (fuse_reply_buf(req, out, used) < 0)
		for (size_t i = 0; i < n_given; i++)
			cache_not_given(c, given[i]);
	free(given);
	free(out);
}

static void frontend_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			     struct fuse_file_info *fi)
{
	(void)ino;
	frontend_dir_reply(req, size, off, fi, false);
}

static void frontend_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
				 struct fuse_file_info *fi)
{
	(void)ino;
	frontend_dir_reply(req, size, off, fi, true);
}

static void frontend_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct frontend_dir *d = (struct frontend_dir *)(uintptr_t)fi->fh;

	(void)ino;
	frontend_untrack(frontend_of(req), &d->link);
	frontend_dir_free(d);
	fuse_reply_err(req, 0);
}

/* Checks shared by the operations that create or remove a name: nothing is
 * created or removed inside /.vault, and /.vault itself stays. */
static int frontend_check_modify(fuse_ino_t parent, const char *name, int vault_err)
{
	if (control_is_ino(parent))
		return -EPERM;
	if (frontend_is_vault_dir(parent, name))
		return -vault_err;
	return frontend_check_name(name);
}

/* mkdir and create, for WHO (NULL: req's caller): same checks and
 * payload, different op (VFS_OP_MKDIR, VFS_OP_CREATE, or
 * VFS_OP_CREATE_VALUE with VALUE). Returns 0 with the new node's
 * attributes, or -errno. */
static int frontend_make_node(fuse_req_t req, const struct vfs_caller *who, fuse_ino_t parent,
			      const char *name, mode_t mode, uint16_t op,
			      const struct valuecache_copy *value, struct vfs_attr *ret,
			      struct cache_ttl *ret_ttl)
{
	assert(op == VFS_OP_CREATE_VALUE || value == NULL);
	struct buf b;
	int r = frontend_check_modify(parent, name, EEXIST);
	if (r < 0)
		return r;
	buf_init(&b);
	buf_put_u64(&b, parent);
	buf_put_blob(&b, name, strlen(name));
	buf_put_u32(&b, (uint32_t)(mode & 07777));
	if (op == VFS_OP_CREATE_VALUE)
		buf_put_blob(&b, valuecache_bytes(value), valuecache_len(value));
	r = frontend_call_attr_as(req, who, op, &b, ret, ret_ttl);
	buf_free(&b);
	return r;
}

static void frontend_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct vfs_attr a;
	struct cache_ttl ttl;
	int r = frontend_make_node(req, NULL, parent, name, mode, VFS_OP_MKDIR, NULL, &a, &ttl);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		frontend_reply_entry_attr(req, &a, &ttl);
}

/* unlink and rmdir: same payload, different op. */
static void frontend_remove(fuse_req_t req, fuse_ino_t parent, const char *name, uint16_t op)
{
	struct buf b;
	int r;

	r = frontend_check_modify(parent, name, EPERM);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	/* What rmdir removes holds no new secret of this mount only. */
	if (op == VFS_OP_RMDIR)
		frontend_create_new(req, 0, NULL);
	else
		frontend_create_new(req, parent, name);
	buf_init(&b);
	buf_put_u64(&b, parent);
	buf_put_blob(&b, name, strlen(name));
	r = frontend_call(req, op, &b, NULL, NULL, NULL);
	buf_free(&b);
	fuse_reply_err(req, -r);
}

static void frontend_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	frontend_remove(req, parent, name, VFS_OP_UNLINK);
}

static void frontend_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	frontend_remove(req, parent, name, VFS_OP_RMDIR);
}

static void frontend_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
			    fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct buf b;
	int r;

	if (flags & ~(VFS_RENAME_NOREPLACE | VFS_RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL); /* RENAME_WHITEOUT: no overlay support */
		return;
	}
	r = frontend_check_modify(parent, name, EPERM);
	if (r == 0)
		r = frontend_check_modify(newparent, newname, EPERM);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	frontend_create_new(req, parent, name);
	frontend_create_new(req, newparent, newname);
	buf_init(&b);
	buf_put_u64(&b, parent);
	buf_put_blob(&b, name, strlen(name));
	buf_put_u64(&b, newparent);
	buf_put_blob(&b, newname, strlen(newname));
	buf_put_u32(&b, flags);
	r = frontend_call(req, VFS_OP_RENAME, &b, NULL, NULL, NULL);
	buf_free(&b);
	fuse_reply_err(req, -r);
}

/* ---- operations: files ------------------------------------------------------ */

/* open(O_CREAT) of a new name without O_EXCL. The kernel holds the
 * directory's lock through CREATE, so a CREATE that waited for a commit
 * would let one create per directory run at a time. The secret is created
 * on the daemon instead when its value is first committed (the close after
 * a write, an fsync, the last close), or when something in this mount
 * looks at its name (frontend_create_new); until then only the handle
 * knows it, under a node id of its own (FRONTEND_NEW_NODEID), and other
 * mounts do not see it. The kernel asked the daemon (LOOKUP_WRITABLE)
 * just before: the vault was unsealed, the name free, and whether a write
 * could commit then; a CREATE that comes too long after its LOOKUP asks
 * again (VFS_OP_WRITABLE). */
static void frontend_create_later(fuse_req_t req, fuse_ino_t parent, const char *name,
				  mode_t mode, struct fuse_file_info *fi)
{
	struct frontend *fe = frontend_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct fuse_entry_param e;
	struct stat st;
	int r = frontend_check_modify(parent, name, EEXIST);
	/* The shell ignores close()'s error (`echo v > f` closes through
	 * dup2()): what the node knows will fail fails here, as a create that
	 * committed at once did. */
	int writable;
	if (r == 0 && absent_take(fe->absent, parent, name, monoclock_ns(),
				  FRONTEND_ABSENT_FRESH_NS, &writable))
		r = writable;
	else if (r == 0)
		r = frontend_call(req, VFS_OP_WRITABLE, NULL, NULL, NULL, NULL);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	struct frontend_file *f = frontend_file_new(0, NULL);
	if (f == NULL || (f->name = strdup(name)) == NULL) {
		frontend_file_free(fe, f);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fe->lock);
	f->nodeid = FRONTEND_NEW_NODEID + ++fe->next_new;
	pthread_mutex_unlock(&fe->lock);
	f->new = true;
	fe->n_new++;
	f->parent = parent;
	f->mode = (uint32_t)(mode & 07777);
	frontend_caller(req, &f->creator);
	int64_t now_ns = frontend_time_ns(NULL, true);
	f->attr = (struct vfs_attr){ .ino = f->nodeid, .mode = S_IFREG | f->mode,
				     .uid = (uint32_t)ctx->uid, .gid = (uint32_t)ctx->gid,
				     .nlink = 1, .mtime_ns = now_ns, .ctime_ns = now_ns,
				     .atime_ns = now_ns };
	f->have_attr = true;
	f->append = (fi->flags & O_APPEND) != 0;
	frontend_attr_to_stat(&f->attr, &st);
	frontend_fill_entry(&st, &e); /* no name to cache */
	e.attr_timeout = FRONTEND_NEW_ATTR_TIMEOUT;
	frontend_reply_open_file(req, f, fi, &e);
}

/* O_EXCL promises that the name was free when open() returned, which only
 * the daemon can say: such a create commits before it answers. */
static void frontend_create(fuse_req_t req, fuse_ino_t parent, const char *name,
			    mode_t mode, struct fuse_file_info *fi)
{
	struct frontend_file *f;
	struct fuse_entry_param e;
	struct vfs_attr a;
	struct stat st;
	if (!(fi->flags & O_EXCL)) {
		frontend_create_later(req, parent, name, mode, fi);
		return;
	}
	int r = frontend_make_node(req, NULL, parent, name, mode, VFS_OP_CREATE, NULL, &a, NULL);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	/* The new secret is empty on the daemon: the handle starts clean. */
	f = frontend_file_new(a.ino, NULL);
	if (f != NULL) {
		f->attr = a;
		f->have_attr = true;
	}
	if (f == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	f->append = (fi->flags & O_APPEND) != 0;
	frontend_attr_to_stat(&a, &st);
	frontend_fill_entry(&st, &e);
	frontend_reply_open_file(req, f, fi, &e);
}

/* ---- control streams: .vault/snapshot and .vault/restore ---------------- */

/* How long a restore may take before the mount gives up waiting (the
 * daemon finishes it anyway). */
#define FRONTEND_STREAM_FINISH_MS (30u * 60u * 1000u)

static bool frontend_is_stream(const struct frontend_file *f)
{
	return f->ctl != NULL && (f->ctl->flags & CONTROL_STREAM);
}

static int frontend_stream_open(fuse_req_t req, struct frontend_file *f, int flags)
{
	bool write = (f->ctl->flags & CONTROL_WRITE) != 0;
	int acc = flags & O_ACCMODE;
	if (acc != (write ? O_WRONLY : O_RDONLY))
		return -EACCES;
	struct buf b;
	buf_init(&b);
	buf_put_blob(&b, f->ctl->name, strlen(f->ctl->name));
	buf_put_u8(&b, write);
	uint8_t *resp;
	size_t len;
	int r = frontend_call(req, VFS_OP_CTL_OPEN, &b, &resp, &len, NULL);
	buf_free(&b);
	if (r < 0)
		return r;
	struct cursor c;
	cursor_init(&c, resp, len);
	f->stream = cursor_u64(&c);
	(void)cursor_u64(&c); /* the size: reads go on to the end anyway */
	r = cursor_done(&c) != 0 ? -EIO : 0;
	vfs_client_free_resp(resp, len);
	return r;
}

static void frontend_stream_read(fuse_req_t req, struct frontend_file *f, size_t size,
				 off_t off)
{
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, f->stream);
	buf_put_u64(&b, (uint64_t)off);
	buf_put_u32(&b, (uint32_t)(size < VFS_MAX_VALUE ? size : VFS_MAX_VALUE));
	uint8_t *resp;
	size_t len;
	int r = frontend_call(req, VFS_OP_CTL_PREAD, &b, &resp, &len, NULL);
	buf_free(&b);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fuse_reply_buf(req, (const char *)resp, len < size ? len : size);
	vfs_client_free_resp(resp, len);
}

static void frontend_stream_write(fuse_req_t req, struct frontend_file *f, const char *data,
				  size_t size, off_t off)
{
	struct buf b;
	int r = off < 0 ? -EINVAL : f->stream_finished ? -EBADF : 0;
	if (r == 0) {
		buf_init(&b);
		buf_put_u64(&b, f->stream);
		buf_put_u64(&b, (uint64_t)off);
		buf_put_blob(&b, data, size);
		r = frontend_call(req, VFS_OP_CTL_PWRITE, &b, NULL, NULL, NULL);
		buf_free(&b);
	}
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	pthread_mutex_lock(&f->lock);
	f->stream_written = true;
	pthread_mutex_unlock(&f->lock);
	fuse_reply_write(req, size);
}

/* At the first close after something was written: the daemon runs the
 * restore, and its result is close()'s. */
static int frontend_stream_finish(fuse_req_t req, struct frontend_file *f)
{
	pthread_mutex_lock(&f->lock);
	if (f->stream_written && !f->stream_finished) {
		struct buf b;
		buf_init(&b);
		buf_put_u64(&b, f->stream);
		f->ctl_status = frontend_call_as(req, NULL, VFS_OP_CTL_FINISH, &b, NULL, NULL,
						 NULL, FRONTEND_STREAM_FINISH_MS);
		buf_free(&b);
		f->stream_finished = true;
	}
	int r = f->stream_finished ? f->ctl_status : 0;
	pthread_mutex_unlock(&f->lock);
	return r;
}

static void frontend_stream_close(fuse_req_t req, struct frontend_file *f)
{
	struct buf b;
	buf_init(&b);
	buf_put_u64(&b, f->stream);
	(void)frontend_call(req, VFS_OP_CTL_CLOSE, &b, NULL, NULL, NULL);
	buf_free(&b);
}

static int frontend_open_control(fuse_req_t req, struct frontend_file *f, int flags)
{
	int acc = flags & O_ACCMODE;

	if (frontend_is_stream(f))
		return frontend_stream_open(req, f, flags);
	if (acc != O_RDONLY && !(f->ctl->flags & CONTROL_WRITE))
		return -EACCES;
	if (acc != O_WRONLY && (f->ctl->flags & CONTROL_READ))
		return frontend_file_fetch(req, f);
	return 0;
}

static int frontend_open_secret(fuse_req_t req, struct frontend_file *f, int flags)
{
	struct vfs_attr a;
	int r;

	f->append = (flags & O_APPEND) != 0;
	/* With FUSE_CAP_ATOMIC_O_TRUNC the truncation arrives here, as a new
	 * empty value that is not committed before there is something to
	 * commit (see frontend_flush). Still ask the daemon now, so a sealed
	 * vault or a vanished file fails open() rather than close(). */
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
		struct cache_ttl ttl;
		r = frontend_getattr_ino(req, f->ino, &a, &ttl);
		if (r == 0)
			f->trunc_pending = true;
		return r;
	}
	return frontend_file_fetch(req, f);
}

static void frontend_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	const struct control_file *ctl = control_by_ino(ino);
	struct frontend_file *f;
	int r;

	if (ino == CONTROL_DIR_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	/* Another open of a new secret (/proc/PID/fd/N): it is created now. */
	uint64_t daemon_ino = ino;
	if (ino >= FRONTEND_NEW_NODEID &&
	    (r = frontend_with_nodeid(req, ino, NULL, frontend_new_created, &daemon_ino)) < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	f = frontend_file_new(daemon_ino, ctl);
	if (f == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	f->nodeid = ino;
	r = ctl != NULL ? frontend_open_control(req, f, fi->flags) :
			  frontend_ino_error(frontend_open_secret(req, f, fi->flags));
	if (r == -ENOBUFS)
		frontend_log_refusal(req, ino, "an open");
	if (r < 0) {
		frontend_file_free(frontend_of(req), f);
		fuse_reply_err(req, -r);
		return;
	}
	/* Usually held: the kernel looked the path up just before. */
	struct cache_ttl left;
	if (ctl == NULL)
		f->have_attr = cache_held_attr(frontend_of(req)->cache, daemon_ino, &f->attr, &left);
	frontend_reply_open_file(req, f, fi, NULL);
}

static void frontend_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	struct frontend_file *f = frontend_file_of(fi);
	const uint8_t *data;
	size_t len;

	(void)ino;
	if (frontend_is_stream(f)) {
		frontend_stream_read(req, f, size, off);
		return;
	}
	pthread_mutex_lock(&f->lock);
	data = frontend_file_bytes(f, &len);
	if (off < 0 || (uint64_t)off >= len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, (const char *)data + off,
			       size < len - (size_t)off ? size : len - (size_t)off);
	pthread_mutex_unlock(&f->lock);
}

static bool frontend_is_blank(const char *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n' && data[i] != '\r')
			return false;
	}
	return true;
}

/* Each write() to a control file is one command, run now so that its error
 * is write()'s error. A blank write after a command on the same open file is
 * the end of that command's line written separately (`(printf %s "$k";
 * echo) > unseal`): it is not a command of its own and reports the result of
 * the command it ends. A blank first write is a command (`echo > init`
 * means the defaults). */
static void frontend_write_control(fuse_req_t req, struct frontend_file *f,
				   const char *data, size_t size)
{
	struct buf b;
	int r = 0;

	pthread_mutex_lock(&f->lock);
	if (f->ctl_sent && frontend_is_blank(data, size)) {
		r = f->ctl_status;
	} else {
		buf_init(&b);
		buf_put_blob(&b, f->ctl->name, strlen(f->ctl->name));
		buf_put_blob(&b, data, size);
		r = frontend_call(req, VFS_OP_CTL_WRITE, &b, NULL, NULL, NULL);
		buf_free(&b); /* wipes: the payload may be a key share */
		f->ctl_sent = true;
		f->ctl_status = r;
	}
	pthread_mutex_unlock(&f->lock);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

/* Caller holds f->lock. */
static int frontend_write_secret(fuse_req_t req, struct frontend_file *f, const char *data,
				 size_t size, off_t off)
{
	assert(frontend_locked(&f->lock));
	size_t pos;
	int r;

	if (f->failed)
		return f->failed;
	if (off < 0)
		return -EINVAL;
	pos = f->append ? valuecache_len(f->value) : (size_t)off;
	/* The value being written can never be committed whole. */
	if ((uint64_t)pos + size > VFS_MAX_VALUE)
		return frontend_file_fail(req, f, -EFBIG);
	if (size == 0)
		return 0;
	r = valuecache_write(frontend_of(req)->values, &f->value, pos, (const uint8_t *)data,
			     size);
	if (r < 0)
		return frontend_file_fail(req, f, r);
	f->dirty = true;
	return 0;
}

/* libfuse hands WRITE data over inside its per-thread request buffer (or a
 * heap copy of a spliced request), which it reuses or frees without wiping:
 * an unseal key share or a secret value would stay there until some later,
 * longer request overwrote it. That memory is libfuse's own and writable
 * (the const is the API's promise to us), and it is done with the request
 * once the handler has the bytes. */
static void frontend_wipe_request_data(const char *data, size_t size)
{
	if (data != NULL && size > 0)
		explicit_bzero((char *)data, size);
}

static void frontend_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct frontend_file *f = frontend_file_of(fi);
	int r;

	(void)ino;
	if (frontend_is_stream(f)) {
		frontend_stream_write(req, f, data, size, off);
		frontend_wipe_request_data(data, size);
		return;
	}
	if (f->ctl != NULL) {
		frontend_write_control(req, f, data, size);
		frontend_wipe_request_data(data, size);
		return;
	}
	pthread_mutex_lock(&f->lock);
	r = frontend_write_secret(req, f, data, size, off);
	pthread_mutex_unlock(&f->lock);
	frontend_wipe_request_data(data, size);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

static void frontend_commit(fuse_req_t req, struct fuse_file_info *fi, bool trunc)
{
	struct frontend_file *f = frontend_file_of(fi);
	int r;

	if (frontend_is_stream(f)) {
		fuse_reply_err(req, -frontend_stream_finish(req, f));
		return;
	}
	pthread_mutex_lock(&f->lock);
	r = frontend_file_commit(req, f, trunc);
	pthread_mutex_unlock(&f->lock);
	fuse_reply_err(req, -r);
}

/* flush comes with every close() of every descriptor of the handle, so it
 * commits only a value that was written: the shell's `printf x > f` opens
 * with O_TRUNC, dup2()s and closes the first descriptor before writing, and
 * committing then would show readers an empty value. Its error is close()'s
 * error. */
static void frontend_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	frontend_commit(req, fi, false);
}

/* An explicit fsync commits whatever is pending, a bare truncation too. */
static void frontend_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
			   struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	frontend_commit(req, fi, true);
}

/* The last close. An O_TRUNC open that wrote nothing (`: > f`) commits its
 * empty value here; nobody is left to report an error to. A written value
 * still dirty here failed to commit at flush, and close() reported that: it
 * is dropped, not retried behind the caller's back. */
static void frontend_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct frontend_file *f = frontend_file_of(fi);

	(void)ino;
	if (frontend_is_stream(f))
		frontend_stream_close(req, f);
	pthread_mutex_lock(&f->lock);
	if (!f->dirty)
		(void)frontend_file_commit(req, f, true);
	pthread_mutex_unlock(&f->lock);
	frontend_untrack(frontend_of(req), &f->link);
	frontend_file_free(frontend_of(req), f);
	fuse_reply_err(req, 0);
}

/* ---- operations: filesystem, refused ------------------------------------- */

static void frontend_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	struct cursor c;
	uint64_t files, bytes;
	uint8_t *resp;
	size_t len;
	int r;

	(void)ino;
	r = frontend_call(req, VFS_OP_STATFS, NULL, &resp, &len, NULL);
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	cursor_init(&c, resp, len);
	files = cursor_u64(&c);
	bytes = cursor_u64(&c);
	r = cursor_done(&c);
	vfs_client_free_resp(resp, len);
	if (r < 0) {
		fuse_reply_err(req, EIO);
		return;
	}
	/* The vault has no fixed capacity. Report usage truthfully and a free
	 * figure that tools checking for room (cp, editors) accept. */
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = FRONTEND_BLOCK;
	sv.f_frsize = FRONTEND_BLOCK;
	sv.f_bfree = UINT32_MAX;
	sv.f_bavail = UINT32_MAX;
	sv.f_blocks = (bytes + FRONTEND_BLOCK - 1) / FRONTEND_BLOCK + sv.f_bfree;
	sv.f_ffree = UINT32_MAX;
	sv.f_favail = UINT32_MAX;
	sv.f_files = files + sv.f_ffree;
	sv.f_namemax = VFS_MAX_NAME;
	fuse_reply_statfs(req, &sv);
}

/* Symlinks, hard links and device nodes have no meaning in a vault. */
static void frontend_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
			     const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void frontend_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
			  const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

static void frontend_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
			   mode_t mode, dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, EPERM);
}

/* ---- public ------------------------------------------------------------------ */

static const struct fuse_lowlevel_ops frontend_ops_table = {
	.init = frontend_init,
	.lookup = frontend_lookup,
	.forget = frontend_forget,
	.forget_multi = frontend_forget_multi,
	.getattr = frontend_getattr,
	.setattr = frontend_setattr,
	.mknod = frontend_mknod,
	.mkdir = frontend_mkdir,
	.unlink = frontend_unlink,
	.rmdir = frontend_rmdir,
	.symlink = frontend_symlink,
	.rename = frontend_rename,
	.link = frontend_link,
	.open = frontend_open,
	.read = frontend_read,
	.write = frontend_write,
	.flush = frontend_flush,
	.release = frontend_release,
	.fsync = frontend_fsync,
	.opendir = frontend_opendir,
	.readdir = frontend_readdir,
	.readdirplus = frontend_readdirplus,
	.releasedir = frontend_releasedir,
	.statfs = frontend_statfs,
	/* No xattr handlers: libfuse answers ENOSYS, after which the kernel
	 * answers ENOTSUP itself for the life of the mount. An ENOTSUP from us
	 * instead would cost a round trip per write (the kernel asks for
	 * security.capability before every write to drop it). */
	.create = frontend_create,
};

const struct fuse_lowlevel_ops *frontend_ops(void)
{
	return &frontend_ops_table;
}

int frontend_new(struct frontend **ret, unsigned timeout_ms, size_t max_cached)
{
	struct frontend *fe = calloc(1, sizeof(*fe));

	if (fe == NULL)
		return -ENOMEM;
	if (valuecache_new(&fe->values, max_cached) < 0 || (fe->absent = absent_new()) == NULL) {
		valuecache_free(fe->values);
		free(fe);
		return -ENOMEM;
	}
	fe->timeout_ms = timeout_ms;
	clock_gettime(CLOCK_REALTIME, &fe->started);
	pthread_mutex_init(&fe->lock, NULL);
	pthread_mutex_init(&fe->log_lock, NULL);
	fe->handles.next = &fe->handles;
	fe->handles.prev = &fe->handles;
	*ret = fe;
	return 0;
}

void frontend_set_cache(struct frontend *fe, struct cache *cache)
{
	fe->cache = cache;
}

void frontend_set_client(struct frontend *fe, struct vfs_client *client)
{
	fe->client = client;
}

void frontend_set_trace(struct frontend *fe, bool trace_calls)
{
	fe->trace_calls = trace_calls;
}

void frontend_free(struct frontend *fe)
{
	if (fe == NULL)
		return;
	while (fe->handles.next != &fe->handles) {
		struct frontend_handle *h = fe->handles.next;

		h->prev->next = h->next;
		h->next->prev = h->prev;
		/* The link is each handle struct's first member. */
		if (h->is_dir)
			frontend_dir_free((struct frontend_dir *)h);
		else
			frontend_file_free(fe, (struct frontend_file *)h);
	}
	valuecache_free(fe->values);
	absent_free(fe->absent);
	pthread_mutex_destroy(&fe->log_lock);
	pthread_mutex_destroy(&fe->lock);
	free(fe);
}
