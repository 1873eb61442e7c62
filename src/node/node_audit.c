/* The audit log (audit "file" { ... }): one JSON line when a request
 * reaches the node, before anything of it is done, and one when it is
 * answered; and .vault/audit-hash, which shows the hash a path has in those
 * lines.
 *
 * Paths are never written: each is "hmac-sha256:HEX", HMAC-SHA-256 under
 * the keyring's audit key (barrier_audit_key) of the path inside the
 * mount, "/db/password", rebuilt from the inode through the store. While
 * the node is sealed there is no key, and no path: the field is null. */
#include "node/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/barrier.h"
#include "crypto/secmem.h"
#include "lib/auditlog.h"
#include "lib/log.h"
#include "store/store.h"
#include "vaultfs/proto.h"

#define AUDIT_HASH_PREFIX "hmac-sha256:"
#define AUDIT_HASH_STR_LEN (sizeof(AUDIT_HASH_PREFIX) - 1 + 2 * crypto_auth_hmacsha256_BYTES)
#define AUDIT_WARN_EVERY_NS (10LL * 1000000000) /* one warning per 10 s at most */
#define AUDIT_CTL_NAME_MAX 32u
#define AUDIT_CTL_DIR "/.vault/" /* where the mount shows control files */

struct node_audit {
	struct auditlog *log;
	char *path;
	bool fail_closed;
	bool freed;        /* the node is gone; the last record frees this */
	unsigned pending;  /* records waiting for their answer */
	uint64_t next_id;  /* request ids: unique in this daemon's run */
	uint8_t *key;      /* secure memory, wiped after each use */
	char last_hash[AUDIT_HASH_STR_LEN + 1]; /* .vault/audit-hash ("": none) */
	int64_t warned_ns; /* last warning, and how many were left out since */
	unsigned unwarned;
	char node_id[80];
};

/* What the answer's line repeats of the request's: paths cannot be
 * rebuilt once an unlink or a rename is done. */
struct audit_rec {
	struct node_audit *a;
	uint64_t id;
	char path[AUDIT_HASH_STR_LEN + 1]; /* "": null */
	char new_path[AUDIT_HASH_STR_LEN + 1];
	char control[AUDIT_CTL_NAME_MAX + 1];
	bool has_size;
	uint64_t size;
};

int node_audit_init(struct node *n, char *errmsg, size_t errlen)
{
	if (n->cfg.audit_path == NULL)
		return 0;
	struct node_audit *a = calloc(1, sizeof(*a));
	if (a == NULL || (a->key = secmem_alloc(BARRIER_AUDIT_KEY_LEN)) == NULL ||
	    (a->path = strdup(n->cfg.audit_path)) == NULL) {
		if (a != NULL)
			secmem_free(a->key);
		free(a);
		snprintf(errmsg, errlen, "node: out of memory");
		return -ENOMEM;
	}
	int rv = auditlog_open(&a->log, n->cfg.audit_path);
	if (rv != 0) {
		snprintf(errmsg, errlen, "audit: cannot open %s: %s", n->cfg.audit_path,
			 strerror(-rv));
		secmem_free(a->key);
		free(a->path);
		free(a);
		return rv;
	}
	a->fail_closed = n->cfg.audit_fail_closed;
	a->next_id = 1;
	snprintf(a->node_id, sizeof(a->node_id), "%s", n->node_id);
	n->audit = a;
	log_info("audit: logging every request to %s (%s)", n->cfg.audit_path,
		 a->fail_closed ? "fail_closed: a request that cannot be logged fails"
				: "fail_closed = false: requests go on when it cannot be written");
	return 0;
}

static void audit_free(struct node_audit *a)
{
	auditlog_close(a->log);
	secmem_free(a->key);
	free(a->path);
	free(a);
}

void node_audit_free(struct node *n)
{
	struct node_audit *a = n->audit;
	n->audit = NULL;
	if (a == NULL)
		return;
	a->freed = true;
	if (a->pending == 0)
		audit_free(a);
}

void node_audit_reopen(struct node *n)
{
	if (n->audit == NULL)
		return;
	int rv = auditlog_reopen(n->audit->log);
	if (rv != 0)
		log_error("audit: cannot reopen %s: %s; lines go on to the old file",
			  n->audit->path, strerror(-rv));
	else
		log_info("audit: reopened %s", n->audit->path);
}

/* ---- hashes ---- */

/* OUT = "hmac-sha256:HEX" of PATH; "" while sealed. */
static void hash_path(struct node *n, const uint8_t *path, size_t len,
		      char out[AUDIT_HASH_STR_LEN + 1])
{
	struct node_audit *a = n->audit;
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	out[0] = '\0';
	if (barrier_audit_key(n->barrier, a->key) != 0)
		return;
	_Static_assert(BARRIER_AUDIT_KEY_LEN == crypto_auth_hmacsha256_KEYBYTES, "HMAC key");
	crypto_auth_hmacsha256(mac, path, len, a->key);
	sodium_memzero(a->key, BARRIER_AUDIT_KEY_LEN);
	memcpy(out, AUDIT_HASH_PREFIX, sizeof(AUDIT_HASH_PREFIX) - 1);
	sodium_bin2hex(out + sizeof(AUDIT_HASH_PREFIX) - 1,
		       AUDIT_HASH_STR_LEN + 1 - (sizeof(AUDIT_HASH_PREFIX) - 1), mac, sizeof(mac));
}

/* The hash of INO's path, or of NAME inside it (NAME may be NULL). */
static void hash_ino(struct node *n, uint64_t ino, const uint8_t *name, size_t name_len,
		     char out[AUDIT_HASH_STR_LEN + 1])
{
	out[0] = '\0';
	if (n->session == NULL || !barrier_is_unsealed(n->barrier))
		return;
	struct buf path;
	buf_init(&path);
	if (store_path(n->session->store, ino, &path) == 0) {
		if (name != NULL) {
			if (path.len == 1) /* the root: "/" + name, not "//" + name */
				path.len = 0;
			buf_put_raw(&path, "/", 1);
			buf_put_raw(&path, name, name_len);
		}
		if (path.err == 0)
			hash_path(n, path.data, path.len, out);
	}
	buf_free(&path); /* wipes the plaintext path */
}

/* Fills REC's paths, control name and size from the request's payload
 * (proto.h gives each op's layout). A malformed payload leaves them null:
 * the op answers -EBADMSG itself. */
static void describe(struct node *n, const struct api_request *req, struct audit_rec *rec)
{
	struct cursor c;
	size_t len = 0, len2 = 0;
	const uint8_t *name, *name2;
	cursor_init(&c, req->payload, req->len);
	switch (req->op) {
	case VFS_OP_LOOKUP:
	case VFS_OP_LOOKUP_WRITABLE:
	case VFS_OP_CREATE:
	case VFS_OP_MKDIR:
	case VFS_OP_UNLINK:
	case VFS_OP_RMDIR: {
		uint64_t parent = cursor_u64(&c);
		name = cursor_blob(&c, VFS_MAX_NAME, &len);
		if (c.err == 0)
			hash_ino(n, parent, name, len, rec->path);
		break;
	}
	case VFS_OP_CREATE_VALUE: {
		uint64_t parent = cursor_u64(&c);
		name = cursor_blob(&c, VFS_MAX_NAME, &len);
		(void)cursor_u32(&c);
		(void)cursor_blob(&c, VFS_MAX_VALUE, &len2);
		if (c.err == 0) {
			hash_ino(n, parent, name, len, rec->path);
			rec->has_size = true;
			rec->size = len2;
		}
		break;
	}
	case VFS_OP_RENAME: {
		uint64_t parent = cursor_u64(&c);
		name = cursor_blob(&c, VFS_MAX_NAME, &len);
		uint64_t newparent = cursor_u64(&c);
		name2 = cursor_blob(&c, VFS_MAX_NAME, &len2);
		if (c.err == 0) {
			hash_ino(n, parent, name, len, rec->path);
			hash_ino(n, newparent, name2, len2, rec->new_path);
		}
		break;
	}
	case VFS_OP_WRITE: {
		uint64_t ino = cursor_u64(&c);
		(void)cursor_blob(&c, VFS_MAX_VALUE, &len);
		if (c.err == 0) {
			hash_ino(n, ino, NULL, 0, rec->path);
			rec->has_size = true;
			rec->size = len;
		}
		break;
	}
	case VFS_OP_GETATTR:
	case VFS_OP_READDIR:
	case VFS_OP_READDIRPLUS: /* a page: the line names the directory */
	case VFS_OP_READ:
	case VFS_OP_SETATTR: {
		uint64_t ino = cursor_u64(&c);
		if (c.err == 0)
			hash_ino(n, ino, NULL, 0, rec->path);
		break;
	}
	case VFS_OP_CTL_PWRITE: {
		/* A stream's piece: its CTL_OPEN's line named the file. */
		(void)cursor_u64(&c);
		(void)cursor_u64(&c);
		(void)cursor_blob(&c, VFS_MAX_FRAME, &len);
		rec->has_size = c.err == 0;
		rec->size = len;
		break;
	}
	case VFS_OP_CTL_OPEN:
	case VFS_OP_CTL_READ:
	case VFS_OP_CTL_WRITE: {
		name = cursor_blob(&c, AUDIT_CTL_NAME_MAX, &len);
		if (c.err != 0)
			break;
		/* Control file names are the same in every vault: in the clear. */
		memcpy(rec->control, name, len);
		rec->control[len] = '\0';
		char path[sizeof(AUDIT_CTL_DIR) + AUDIT_CTL_NAME_MAX];
		int w = snprintf(path, sizeof(path), AUDIT_CTL_DIR "%s", rec->control);
		hash_path(n, (const uint8_t *)path, (size_t)w, rec->path);
		if (req->op == VFS_OP_CTL_WRITE) {
			(void)cursor_blob(&c, VFS_MAX_FRAME, &len);
			rec->has_size = c.err == 0;
			rec->size = len;
		}
		break;
	}
	default:
		break;
	}
}

/* ---- lines ---- */

/* Logs that a line was not written: at most once per AUDIT_WARN_EVERY_NS. */
static void warn_unwritten(struct node_audit *a, int err, bool refused)
{
	int64_t now = node_now_ns();
	if (a->warned_ns != 0 && now - a->warned_ns < AUDIT_WARN_EVERY_NS) {
		a->unwarned++;
		return;
	}
	log_warn("audit: cannot write to %s: %s; %s (%u warnings like this left out before it)",
		 a->path, strerror(-err),
		 refused ? "the request fails with EIO (fail_closed)"
			 : "the request goes on unaudited",
		 a->unwarned);
	a->warned_ns = now;
	a->unwarned = 0;
}

static void put_hash(struct auditlog_line *l, const char *key, const char *hash)
{
	auditlog_line_cstr(l, key, hash[0] != '\0' ? hash : NULL);
}

/* Appends REC's line for REQ: a request line (ANSWERED false) or an
 * answer line with STATUS. */
static int write_line(struct node_audit *a, const struct api_request *req,
		      const struct audit_rec *rec, bool answered, int status)
{
	struct buf b;
	struct auditlog_line l;
	buf_init(&b);
	auditlog_line_begin(&l, &b);
	auditlog_line_time(&l, "time", node_now_ns());
	auditlog_line_cstr(&l, "type", answered ? "response" : "request");
	auditlog_line_cstr(&l, "node", a->node_id);
	auditlog_line_u64(&l, "request_id", rec->id);
	auditlog_line_u64(&l, "uid", req->uid);
	auditlog_line_u64(&l, "gid", req->gid);
	if (req->pid != 0)
		auditlog_line_u64(&l, "pid", req->pid);
	else
		auditlog_line_null(&l, "pid");
	auditlog_line_cstr(&l, "comm", req->comm[0] != '\0' ? req->comm : NULL);
	auditlog_line_cstr(&l, "op", vfs_op_name(req->op));
	put_hash(&l, "path", rec->path);
	put_hash(&l, "new_path", rec->new_path);
	auditlog_line_cstr(&l, "control", rec->control[0] != '\0' ? rec->control : NULL);
	if (rec->has_size)
		auditlog_line_u64(&l, "size", rec->size);
	else
		auditlog_line_null(&l, "size");
	if (answered) {
		auditlog_line_u64(&l, "result", (uint64_t)-status);
		auditlog_line_cstr(&l, "error", status != 0 ? strerrorname_np(-status) : NULL);
	} else {
		auditlog_line_null(&l, "result");
		auditlog_line_null(&l, "error");
	}
	auditlog_line_end(&l);
	int rv = b.err != 0 ? b.err : auditlog_append(a->log, b.data, b.len);
	buf_free(&b);
	return rv;
}

static void on_reply(void *arg, const struct api_request *req, int status)
{
	struct audit_rec *rec = arg;
	struct node_audit *a = rec->a;
	if (!a->freed) {
		int rv = write_line(a, req, rec, true, status);
		/* The request's line is written: what happened is on record,
		 * and failing the answer now would not undo it. */
		(void)rv;
	}
	a->pending--;
	free(rec);
	if (a->freed && a->pending == 0)
		audit_free(a);
}

bool node_audit_request(struct node *n, struct api_request *req)
{
	struct node_audit *a = n->audit;
	if (a == NULL)
		return true;
	struct audit_rec *rec = calloc(1, sizeof(*rec));
	if (rec == NULL) {
		if (a->fail_closed) {
			api_reply(req, -EIO, NULL, 0);
			return false;
		}
		return true;
	}
	rec->a = a;
	rec->id = a->next_id++;
	describe(n, req, rec);
	int rv = write_line(a, req, rec, false, 0);
	if (rv != 0) {
		warn_unwritten(a, rv, a->fail_closed);
		free(rec);
		if (a->fail_closed) {
			api_reply(req, -EIO, NULL, 0);
			return false;
		}
		return true;
	}
	a->pending++;
	req->on_reply = on_reply;
	req->on_reply_arg = rec;
	return true;
}

/* ---- .vault/audit-hash ---- */

void node_audit_hash_read(struct node *n, struct api_request *req)
{
	struct node_audit *a = n->audit;
	if (a == NULL || a->last_hash[0] == '\0') {
		api_reply(req, a == NULL ? -ENODATA : 0, NULL, 0);
		return;
	}
	char out[AUDIT_HASH_STR_LEN + 2];
	int w = snprintf(out, sizeof(out), "%s\n", a->last_hash);
	api_reply(req, 0, out, (size_t)w);
}

void node_audit_hash_write(struct node *n, struct api_request *req, const uint8_t *in,
			   size_t len)
{
	struct node_audit *a = n->audit;
	if (a == NULL) {
		api_reply(req, -ENODATA, NULL, 0); /* no audit "file" block */
		return;
	}
	while (len > 0 && (in[len - 1] == '\n' || in[len - 1] == '\r'))
		len--;
	/* The path as the audit log hashes it: from the mount's root, one
	 * slash between names, none at the end (but "/" itself). */
	bool ok = len > 0 && in[0] == '/' && (len == 1 || in[len - 1] != '/') &&
		  memchr(in, '\0', len) == NULL;
	for (size_t i = 1; ok && i < len; i++)
		ok = !(in[i] == '/' && in[i - 1] == '/');
	if (!ok) {
		api_reply(req, -EINVAL, NULL, 0);
		return;
	}
	char hash[AUDIT_HASH_STR_LEN + 1];
	hash_path(n, in, len, hash);
	if (hash[0] == '\0') {
		api_reply(req, -ENOKEY, NULL, 0); /* sealed: no key */
		return;
	}
	memcpy(a->last_hash, hash, sizeof(hash));
	api_reply(req, 0, NULL, 0);
}
