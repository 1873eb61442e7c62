/* The floor of tests/bench/bench.sh: a FUSE filesystem that does no work,
 * mounted as the vaultfs mount is (libfuse low-level API, the multithreaded
 * loop with the mount's thread settings, default_permissions, direct_io on
 * every open, atomic O_TRUNC, no writeback cache), so that the same put and
 * read clients measure what FUSE alone costs on this machine.
 *
 *   nullfs MOUNTPOINT [DIRS FILES]
 *                         serves MOUNTPOINT in the foreground until unmounted
 *
 * With DIRS and FILES it also holds bench.sh's scale tree, for the floor of
 * its traversals: scale/dNNN/sKKKKKK, DIRS directories of FILES files each
 * (KKKKKK counts across them), listed with their attributes (READDIRPLUS,
 * as the vaultfs mount lists).
 *
 * Every name is there but those starting with 'n': a name starting with 'd'
 * is a directory, any other a regular file of NULLFS_VALUE. A name starting
 * with 'n' is never there (lookups answer ENOENT, not cached), so that
 * loadgen's creates of new secrets (nNNN) reach CREATE as on vaultfs. Each name has its own inode number (a hash
 * of its parent and name), so distinct files are distinct to the kernel.
 * Opens, creates, writes, flushes and releases succeed and keep nothing;
 * reads return NULLFS_VALUE. Names and attributes are cached by the kernel
 * for a second, as a mount holding grants would. */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <stdbool.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NULLFS_VALUE "value-read\n"
#define NULLFS_TTL 1.0
#define NULLFS_SCALE "scale"
#define NULLFS_MAX_DIRS 100000u

/* The scale tree: its directories' inode numbers, by index. */
static unsigned nullfs_dirs, nullfs_files;
static fuse_ino_t nullfs_scale_ino;
static fuse_ino_t *nullfs_dir_ino;
/* Those of mount.vaultfs (mount-helper/mount_vaultfs.c). */
#define NULLFS_MAX_THREADS 128
#define NULLFS_IDLE_THREADS 16

/* Bit 0 of an inode number says "directory"; the root is 1. */
static fuse_ino_t nullfs_ino(fuse_ino_t parent, const char *name)
{
	uint64_t h = 1469598103934665603u ^ parent;
	for (const char *p = name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211u;
	h = (h << 1) | (name[0] == 'd' || (parent == FUSE_ROOT_ID && strcmp(name, NULLFS_SCALE) == 0));
	return h < 4 ? h + 4 : h;
}

static void nullfs_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (ino == FUSE_ROOT_ID || (ino & 1)) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0644;
		st->st_nlink = 1;
		st->st_size = sizeof(NULLFS_VALUE) - 1;
	}
}

static void nullfs_entry(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = nullfs_ino(parent, name);
	e->generation = 1;
	e->attr_timeout = NULLFS_TTL;
	e->entry_timeout = NULLFS_TTL;
	nullfs_stat(e->ino, &e->attr);
}

static void nullfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
}

static void nullfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	if (name[0] == 'n') {
		fuse_reply_err(req, ENOENT);
		return;
	}
	nullfs_entry(parent, name, &e);
	fuse_reply_entry(req, &e);
}

static void nullfs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void nullfs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	nullfs_stat(ino, &st);
	fuse_reply_attr(req, &st, NULLFS_TTL);
}

static void nullfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			   struct fuse_file_info *fi)
{
	(void)attr;
	(void)to_set;
	nullfs_getattr(req, ino, fi);
}

static void nullfs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)mode;
	if (name[0] != 'd') {
		fuse_reply_err(req, EPERM);
		return;
	}
	nullfs_lookup(req, parent, name);
}

static void nullfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
	fuse_reply_open(req, fi);
}

static void nullfs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			  struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	(void)mode;
	if (name[0] == 'd') {
		fuse_reply_err(req, EISDIR);
		return;
	}
	nullfs_entry(parent, name, &e);
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fuse_reply_create(req, &e, fi);
}

static void nullfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	const size_t len = sizeof(NULLFS_VALUE) - 1;
	(void)ino;
	(void)fi;
	if (off < 0 || (size_t)off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	fuse_reply_buf(req, NULLFS_VALUE + off, size < len - (size_t)off ? size : len - (size_t)off);
}

static void nullfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	(void)ino;
	(void)buf;
	(void)off;
	(void)fi;
	fuse_reply_write(req, size);
}

static void nullfs_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/* Entry I of directory INO in the scale tree into NAME: false past its
 * last (directories outside the tree list nothing, although every name is
 * there). */
static bool nullfs_listed(fuse_ino_t ino, off_t i, char *name, size_t len)
{
	if (ino == nullfs_scale_ino && nullfs_dirs > 0) {
		if (i >= (off_t)nullfs_dirs)
			return false;
		snprintf(name, len, "d%03u", (unsigned)i);
		return true;
	}
	for (unsigned d = 0; d < nullfs_dirs; d++) {
		if (nullfs_dir_ino[d] != ino)
			continue;
		if (i >= (off_t)nullfs_files)
			return false;
		snprintf(name, len, "s%06llu", (unsigned long long)d * nullfs_files + (unsigned long long)i);
		return true;
	}
	return false;
}

/* A listing from entry OFF on, as much as fits in SIZE: with attributes
 * (READDIRPLUS) if PLUS. */
static void nullfs_list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	char *buf = malloc(size);
	char name[32];
	size_t used = 0;
	if (buf == NULL) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (off_t i = off; nullfs_listed(ino, i, name, sizeof(name)); i++) {
		struct fuse_entry_param e;
		nullfs_entry(ino, name, &e);
		size_t n = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, i + 1)
				: fuse_add_direntry(req, buf + used, size - used, name, &e.attr, i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void nullfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	nullfs_list(req, ino, size, off, false);
}

static void nullfs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			       struct fuse_file_info *fi)
{
	(void)fi;
	nullfs_list(req, ino, size, off, true);
}

static const struct fuse_lowlevel_ops nullfs_ops = {
	.init = nullfs_init,
	.lookup = nullfs_lookup,
	.forget = nullfs_forget,
	.getattr = nullfs_getattr,
	.setattr = nullfs_setattr,
	.mkdir = nullfs_mkdir,
	.open = nullfs_open,
	.create = nullfs_create,
	.read = nullfs_read,
	.write = nullfs_write,
	.flush = nullfs_ok,
	.release = nullfs_ok,
	.readdir = nullfs_readdir,
	.readdirplus = nullfs_readdirplus,
};

/* Makes the scale tree of DIRS x FILES; false if the numbers are wrong. */
static bool nullfs_tree(const char *dirs, const char *files)
{
	char *end1, *end2;
	unsigned long d = strtoul(dirs, &end1, 10), f = strtoul(files, &end2, 10);
	if (*end1 != '\0' || *end2 != '\0' || d == 0 || d > NULLFS_MAX_DIRS || f == 0 ||
	    f > 1000000u / d)
		return false;
	nullfs_dirs = (unsigned)d;
	nullfs_files = (unsigned)f;
	nullfs_scale_ino = nullfs_ino(FUSE_ROOT_ID, NULLFS_SCALE);
	nullfs_dir_ino = calloc(d, sizeof(*nullfs_dir_ino));
	if (nullfs_dir_ino == NULL)
		return false;
	for (unsigned i = 0; i < nullfs_dirs; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d%03u", i);
		nullfs_dir_ino[i] = nullfs_ino(nullfs_scale_ino, name);
	}
	return true;
}

int main(int argc, char **argv)
{
	char *fargv[] = { argv[0], "-o", "default_permissions,fsname=nullfs,subtype=nullfs", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_loop_config *loop;
	struct fuse_session *se;
	int r = 1;

	if ((argc != 2 && argc != 4) || (argc == 4 && !nullfs_tree(argv[2], argv[3]))) {
		fprintf(stderr, "usage: nullfs MOUNTPOINT [DIRS FILES]\n");
		return 2;
	}
	se = fuse_session_new(&args, &nullfs_ops, sizeof(nullfs_ops), NULL);
	if (se == NULL)
		return 1;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, argv[1]) != 0)
		goto out_signals;
	loop = fuse_loop_cfg_create();
	if (loop != NULL) {
		fuse_loop_cfg_set_clone_fd(loop, 0);
		fuse_loop_cfg_set_max_threads(loop, NULLFS_MAX_THREADS);
		fuse_loop_cfg_set_idle_threads(loop, NULLFS_IDLE_THREADS);
		r = fuse_session_loop_mt(se, loop) < 0;
		fuse_loop_cfg_destroy(loop);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	return r;
}
