/* The floor of tests/bench/bench.sh: a FUSE filesystem that does no work,
 * mounted as the vaultfs mount is (libfuse low-level API, the multithreaded
 * loop with the mount's thread settings, default_permissions, direct_io on
 * every open, atomic O_TRUNC, no writeback cache), so that the same put and
 * read clients measure what FUSE alone costs on this machine.
 *
 *   nullfs MOUNTPOINT     serves MOUNTPOINT in the foreground until unmounted
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
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NULLFS_VALUE "value-read\n"
#define NULLFS_TTL 1.0
/* Those of mount.vaultfs (mount-helper/mount_vaultfs.c). */
#define NULLFS_MAX_THREADS 128
#define NULLFS_IDLE_THREADS 16

/* Bit 0 of an inode number says "directory"; the root is 1. */
static fuse_ino_t nullfs_ino(fuse_ino_t parent, const char *name)
{
	uint64_t h = 1469598103934665603u ^ parent;
	for (const char *p = name; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211u;
	h = (h << 1) | (name[0] == 'd');
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

/* Directories list nothing (the names are all there, but none is listed). */
static void nullfs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)ino;
	(void)size;
	(void)off;
	(void)fi;
	fuse_reply_buf(req, NULL, 0);
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
};

int main(int argc, char **argv)
{
	char *fargv[] = { argv[0], "-o", "default_permissions,fsname=nullfs,subtype=nullfs", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_loop_config *loop;
	struct fuse_session *se;
	int r = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: nullfs MOUNTPOINT\n");
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
