/* mount.vaultfs: mounts a vaultfsd node as a FUSE filesystem.
 *
 *   mount.vaultfs [SOCKET] MOUNTPOINT [-o OPTIONS] [-f]
 *
 * Also run by mount(8) as "mount.vaultfs SOCKET MOUNTPOINT [-sfnv] -o OPTS"
 * for `mount -t vaultfs` and /etc/fstab, so options meant for mount(8)
 * itself are accepted and dropped here. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse/cache.h"
#include "fuse/frontend.h"
#include "lib/hardening.h"
#include "lib/log.h"
#include "vaultfs/client.h"

#ifndef VAULTFS_VERSION
#define VAULTFS_VERSION "unknown"
#endif

#define MOUNT_PROG "mount.vaultfs"
/* Default bound on one call to the daemon: long enough for a forwarded
 * write through a leader election, short enough that a wedged daemon does
 * not hang every process touching the mount. */
#define MOUNT_DEFAULT_TIMEOUT_MS 30000u
/* Default bound on the memory the values of open files take, MiB: 64
 * values of the largest size (1 MiB), or thousands of ordinary ones. */
#define MOUNT_DEFAULT_MAX_CACHED_MB 64u
/* 1 TiB: well past any machine's memory, and far from overflowing. */
#define MOUNT_MAX_MAX_CACHED_MB (1u << 20)

struct mount_args {
	const char *source;    /* first positional argument, if two were given */
	char *socket;          /* -o socket=PATH */
	const char *mountpoint;
	unsigned timeout_ms;
	unsigned max_cached_mb;
	bool local_reads; /* -o local_reads: possibly stale, no round trip to the leader */
	bool foreground;
	bool debug;
	bool dumpable; /* -o dumpable (or -d): core dumps allowed */
	bool sloppy;
	bool verbose;
	char *fuse_opts; /* options handed to libfuse, comma-separated */
	char *fsname;    /* -o fsname=NAME, else the socket path */
};

static void mount_usage(FILE *out)
{
	fprintf(out,
		"usage: " MOUNT_PROG " [SOCKET] MOUNTPOINT [-o OPTIONS] [-f]\n"
		"\n"
		"Mounts the vaultfsd node listening on SOCKET (default " VFS_DEFAULT_SOCKET ")\n"
		"on MOUNTPOINT. Returns once the mount is usable; stays in the background\n"
		"unless -f. Unmount with `umount MOUNTPOINT` or `fusermount3 -u MOUNTPOINT`.\n"
		"\n"
		"  -f              stay in the foreground\n"
		"  -d              debug: log every FUSE request, and each call it makes to\n"
		"                  the daemon, to stderr (implies -f and dumpable)\n"
		"  -o OPTIONS      comma-separated mount options, see below\n"
		"  -s              sloppy: ignore unknown options (mount(8) passes this)\n"
		"  -v              verbose\n"
		"  -n              accepted and ignored (mount(8): no mtab)\n"
		"  -h, --help      this text\n"
		"  -V, --version   version\n"
		"\n"
		"vaultfs options:\n"
		"  socket=PATH     the daemon's local API socket\n"
		"  timeout_ms=N    bound on each request to the daemon, 0 = none (default %u)\n"
		"  max_cached_mb=N bound on the memory the values of open files take, MiB,\n"
		"                  1 to %u (default %u): past it open() fails with ENOBUFS\n"
		"  local_reads     when a read cannot be linearizable at once, serve it from\n"
		"                  this node's copy without asking the leader: it works\n"
		"                  without a quorum, but may miss a write made elsewhere\n"
		"  debug           same as -d\n"
		"  dumpable        allow core dumps (off by default: a core of the mount\n"
		"                  holds the secrets it has read)\n"
		"\n"
		"Passed to the kernel: ro, nosuid, suid, nodev, dev, noexec, exec, sync,\n"
		"async, dirsync, atime, noatime, allow_other, allow_root, auto_unmount,\n"
		"fsname=NAME. default_permissions is always on: the kernel enforces each\n"
		"secret's mode bits, and with allow_other other users get what they allow.\n"
		"\n"
		"Accepted and ignored (for mount(8) and fstab): defaults, auto, noauto,\n"
		"user, nouser, users, owner, group, nofail, _netdev, rw, relatime,\n"
		"norelatime, strictatime, nostrictatime, diratime, nodiratime, lazytime,\n"
		"nolazytime, silent, loud, default_permissions, x-*, comment=*, user=*.\n"
		"\n"
		"fstab:  " VFS_DEFAULT_SOCKET " /mnt/secrets vaultfs defaults,allow_other 0 0\n",
		MOUNT_DEFAULT_TIMEOUT_MS, MOUNT_MAX_MAX_CACHED_MB, MOUNT_DEFAULT_MAX_CACHED_MB);
}

static bool mount_opt_in(const char *opt, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strcmp(opt, list[i]) == 0)
			return true;
	}
	return false;
}

static bool mount_opt_prefixed(const char *opt, const char *const *list)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		if (strncmp(opt, list[i], strlen(list[i])) == 0)
			return true;
	}
	return false;
}

/* Options for mount(8)/fstab/systemd only: meaningless to the filesystem.
 * rw is the kernel's default; the atime variants libfuse 3.14 does not know
 * are dropped too (this filesystem does not track atime). */
static const char *const mount_opts_dropped[] = {
	"defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group",
	"nofail", "_netdev", "rw", "relatime", "norelatime", "strictatime",
	"nostrictatime", "diratime", "nodiratime", "lazytime", "nolazytime",
	"silent", "loud", "default_permissions", NULL,
};
static const char *const mount_opts_dropped_prefix[] = {
	"x-", "comment=", "user=", NULL,
};
/* Options libfuse turns into kernel mount flags or fuse mount options. */
static const char *const mount_opts_kernel[] = {
	"ro", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
	"dirsync", "atime", "noatime", "allow_other", "allow_root", "auto_unmount", NULL,
};

/* A decimal number from MIN to MAX (digits only). */
static int mount_parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s < '0' || *s > '9' || v < min || v > max)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

static int mount_add_fuse_opt(struct mount_args *a, const char *opt)
{
	return fuse_opt_add_opt(&a->fuse_opts, opt) == 0 ? 0 : -ENOMEM;
}

/* One option from -o. Returns 0, or -1 after printing why. */
static int mount_parse_opt(struct mount_args *a, const char *opt)
{
	if (*opt == '\0' || mount_opt_in(opt, mount_opts_dropped) ||
	    mount_opt_prefixed(opt, mount_opts_dropped_prefix))
		return 0;
	if (strncmp(opt, "socket=", 7) == 0) {
		if (opt[7] == '\0') {
			fprintf(stderr, MOUNT_PROG ": option socket= needs a path\n");
			return -1;
		}
		free(a->socket);
		a->socket = strdup(opt + 7);
		return a->socket != NULL ? 0 : -1;
	}
	if (strncmp(opt, "timeout_ms=", 11) == 0) {
		if (mount_parse_unsigned(opt + 11, 0, UINT_MAX, &a->timeout_ms) < 0) {
			fprintf(stderr, MOUNT_PROG ": bad value in '%s': expected milliseconds "
				"(0 = no limit)\n", opt);
			return -1;
		}
		return 0;
	}
	/* 0 is refused, not read as "no limit": the budget is what keeps one
	 * user's open files from taking the mount's memory. */
	if (strncmp(opt, "max_cached_mb=", 14) == 0) {
		if (mount_parse_unsigned(opt + 14, 1, MOUNT_MAX_MAX_CACHED_MB, &a->max_cached_mb) < 0) {
			fprintf(stderr, MOUNT_PROG ": bad value in '%s': expected MiB from 1 to %u\n",
				opt, MOUNT_MAX_MAX_CACHED_MB);
			return -1;
		}
		return 0;
	}
	if (strcmp(opt, "debug") == 0) {
		a->debug = true;
		return 0;
	}
	if (strcmp(opt, "local_reads") == 0) {
		a->local_reads = true;
		return 0;
	}
	if (strcmp(opt, "dumpable") == 0) {
		a->dumpable = true;
		return 0;
	}
	if (strncmp(opt, "fsname=", 7) == 0) {
		free(a->fsname);
		a->fsname = strdup(opt + 7);
		return a->fsname != NULL ? 0 : -1;
	}
	if (mount_opt_in(opt, mount_opts_kernel))
		return mount_add_fuse_opt(a, opt) == 0 ? 0 : -1;
	if (a->sloppy) {
		fprintf(stderr, MOUNT_PROG ": ignoring unknown option '%s'\n", opt);
		return 0;
	}
	fprintf(stderr, MOUNT_PROG ": unknown option '%s' (see " MOUNT_PROG " --help)\n", opt);
	return -1;
}

/* The option list of one -o; -s may come after it, so lists are kept and
 * parsed once all flags are known. */
static int mount_parse_opts(struct mount_args *a, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	int r = 0;

	if (copy == NULL)
		return -1;
	for (char *opt = strtok_r(copy, ",", &save); opt != NULL && r == 0;
	     opt = strtok_r(NULL, ",", &save))
		r = mount_parse_opt(a, opt);
	free(copy);
	return r;
}

/* Returns 0 to go on, 1 for a clean exit (help/version), -1 on error. */
static int mount_parse_args(struct mount_args *a, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "foreground", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	const char *opt_lists[64];
	size_t nlists = 0;
	int c, npos;

	a->timeout_ms = MOUNT_DEFAULT_TIMEOUT_MS;
	a->max_cached_mb = MOUNT_DEFAULT_MAX_CACHED_MB;
	while ((c = getopt_long(argc, argv, "hVfdsnvo:t:N:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			mount_usage(stdout);
			return 1;
		case 'V':
			printf(MOUNT_PROG " (vaultfs) %s, libfuse %s\n", VAULTFS_VERSION,
			       fuse_pkgversion());
			return 1;
		case 'f':
			a->foreground = true;
			break;
		case 'd':
			a->debug = true;
			break;
		case 's':
			a->sloppy = true;
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'n':
		case 't': /* mount(8) may pass -t vaultfs: nothing to choose */
			break;
		case 'o':
			if (nlists == sizeof(opt_lists) / sizeof(opt_lists[0])) {
				fprintf(stderr, MOUNT_PROG ": too many -o\n");
				return -1;
			}
			opt_lists[nlists++] = optarg;
			break;
		case 'N':
			fprintf(stderr, MOUNT_PROG ": -N (mount namespace) is not supported\n");
			return -1;
		default:
			fprintf(stderr, "Try '" MOUNT_PROG " --help'.\n");
			return -1;
		}
	}
	for (size_t i = 0; i < nlists; i++) {
		if (mount_parse_opts(a, opt_lists[i]) < 0)
			return -1;
	}
	npos = argc - optind;
	if (npos == 1) {
		a->mountpoint = argv[optind];
	} else if (npos == 2) {
		a->source = argv[optind];
		a->mountpoint = argv[optind + 1];
	} else {
		fprintf(stderr, MOUNT_PROG ": %s\nTry '" MOUNT_PROG " --help'.\n",
			npos == 0 ? "missing MOUNTPOINT" : "too many arguments");
		return -1;
	}
	if (a->debug)
		a->foreground = true;
	return 0;
}

/* fstab's first field is often a label ("none", "vaultfs") when socket= is
 * given or the default is meant. */
static const char *mount_socket_path(const struct mount_args *a)
{
	if (a->socket != NULL)
		return a->socket;
	if (a->source != NULL && strcmp(a->source, "none") != 0 &&
	    strcmp(a->source, "vaultfs") != 0)
		return a->source;
	return VFS_DEFAULT_SOCKET;
}

/* The background process runs in "/", so relative paths are made absolute
 * (without resolving symlinks: the socket path is also the mount's source,
 * which mount -a compares against fstab). Returns a malloc'd string. */
static char *mount_absolute(const char *path)
{
	char cwd[PATH_MAX];
	char *out;

	if (path[0] == '/')
		return strdup(path);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

static struct vfs_client *mount_connect(const char *socket_path)
{
	struct vfs_client *client = NULL;
	char errmsg[256] = "";
	int r;

	r = vfs_client_connect(&client, socket_path, errmsg, sizeof(errmsg));
	if (r < 0) {
		fprintf(stderr, MOUNT_PROG ": %s\n",
			errmsg[0] != '\0' ? errmsg : strerror(-r));
		return NULL;
	}
	return client;
}

/* argv for fuse_session_new: fixed options first, the user's after. */
static int mount_build_fuse_args(struct mount_args *a, const char *socket_path,
				 struct fuse_args *args)
{
	char *opts = NULL, *fsname = NULL;
	int r = 0;

	if (asprintf(&fsname, "fsname=%s", a->fsname != NULL ? a->fsname : socket_path) < 0)
		return -1;
	r |= fuse_opt_add_arg(args, MOUNT_PROG);
	if (a->debug)
		r |= fuse_opt_add_arg(args, "-d");
	r |= fuse_opt_add_opt(&opts, "default_permissions");
	r |= fuse_opt_add_opt(&opts, "subtype=vaultfs");
	/* A path may contain commas; libfuse unescapes "\,". */
	r |= fuse_opt_add_opt_escaped(&opts, fsname);
	if (a->fuse_opts != NULL)
		r |= fuse_opt_add_opt(&opts, a->fuse_opts);
	r |= fuse_opt_add_arg(args, "-o");
	if (r == 0)
		r |= fuse_opt_add_arg(args, opts);
	if (r == 0 && a->verbose)
		fprintf(stderr, MOUNT_PROG ": mounting %s on %s (-o %s)\n", socket_path,
			a->mountpoint, opts);
	free(opts);
	free(fsname);
	return r == 0 ? 0 : -1;
}

/* libfuse serves at most 10 requests at once by default. Most of ours wait
 * on the network (a Raft commit, a read round), not on a CPU, so with 64
 * processes writing, 54 would queue in the kernel behind the 10 waiting
 * ones: the concurrency the cluster could batch would be lost. A thread
 * that finds more than MOUNT_IDLE_THREADS idle ones exits. Keeping all 128
 * spared 64 writers a thread creation every 9 puts (8 % less CPU per put)
 * but cost 16 readers 8 % of their reads: the kernel hands each
 * request to the thread that has waited longest, so every idle thread takes
 * its turn, with a cold stack and buffer. Reads it is. */
#define MOUNT_MAX_THREADS 128
#define MOUNT_IDLE_THREADS 16

static struct fuse_loop_config *mount_loop_config(void)
{
	struct fuse_loop_config *loop = fuse_loop_cfg_create();
	if (loop == NULL)
		return NULL;
	fuse_loop_cfg_set_clone_fd(loop, 0);
	fuse_loop_cfg_set_max_threads(loop, MOUNT_MAX_THREADS);
	fuse_loop_cfg_set_idle_threads(loop, MOUNT_IDLE_THREADS);
	return loop;
}

static int mount_run(struct mount_args *a)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *loop = NULL;
	struct fuse_session *se = NULL;
	struct vfs_client *client;
	struct frontend *fe = NULL;
	struct cache *cache = NULL;
	char *socket_path = NULL, *mnt = NULL;
	int ret = 1, r;

	socket_path = mount_absolute(mount_socket_path(a));
	mnt = realpath(a->mountpoint, NULL);
	if (socket_path == NULL || mnt == NULL) {
		fprintf(stderr, MOUNT_PROG ": %s: %s\n",
			socket_path == NULL ? mount_socket_path(a) : a->mountpoint,
			strerror(errno));
		goto out_paths;
	}
	/* Refuse to mount at all when the daemon is not there. */
	client = mount_connect(socket_path);
	if (client == NULL)
		goto out_paths;
	if (frontend_new(&fe, a->timeout_ms, (size_t)a->max_cached_mb << 20) < 0 ||
	    mount_build_fuse_args(a, socket_path, &args) < 0) {
		fprintf(stderr, MOUNT_PROG ": out of memory\n");
		goto out_client;
	}
	se = fuse_session_new(&args, frontend_ops(), sizeof(*frontend_ops()), fe);
	if (se == NULL)
		goto out_client; /* libfuse printed why */
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, mnt) != 0)
		goto out_signals;
	if (!a->foreground) {
		/* The client's connection (and any thread it runs) must belong to
		 * the process that serves the mount: reconnect after the fork.
		 * The mount already exists, so the shell gets its prompt back
		 * only once the mount is usable. */
		vfs_client_close(client);
		client = NULL;
		fuse_daemonize(0);
		log_use_syslog(); /* stderr is /dev/null now */
		client = mount_connect(socket_path);
		if (client == NULL)
			goto out_mount;
	}
	if (a->local_reads)
		vfs_client_set_flags(client, VFS_REQ_LOCAL_READ);
	frontend_set_client(fe, client);
	frontend_set_trace(fe, a->debug);
	/* Attributes and names are cached in the kernel, coherently (local
	 * reads too: whenever the node can answer linearizably at once, it
	 * does, with a grant). A mount that cannot watch the daemon simply
	 * caches nothing. */
	if (cache_start(&cache, se, socket_path) == 0)
		frontend_set_cache(fe, cache);
	loop = mount_loop_config();
	if (loop == NULL) {
		fprintf(stderr, MOUNT_PROG ": out of memory\n");
		goto out_mount;
	}
	r = fuse_session_loop_mt(se, loop);
	fuse_loop_cfg_destroy(loop);
	ret = r < 0 ? 1 : 0;

out_mount:
	cache_stop(cache);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_client:
	vfs_client_close(client);
	frontend_free(fe);
	fuse_opt_free_args(&args);
out_paths:
	free(socket_path);
	free(mnt);
	return ret;
}

int main(int argc, char **argv)
{
	struct mount_args a;
	int r, ret;

	memset(&a, 0, sizeof(a));
	/* Every allocation from 128 KiB up gets pages of its own, given back to
	 * the system when it is freed. Left to itself glibc raises that
	 * threshold to the size of the largest block freed so far, and then
	 * serves the 1 MiB answers that opens of large secrets read (and the
	 * requests that write them) from its per-thread arenas, which keep
	 * what is freed: 16 processes reading 16 different 1 MiB secrets left
	 * a mount at 71 MiB RSS, against 3 MiB with this. (The values open
	 * files hold are mapped by valuecache.c.) */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	log_set_ident(MOUNT_PROG);
	r = mount_parse_args(&a, argc, argv);
	if (r == 0 && !a.dumpable && !a.debug && (r = hardening_no_core_dumps()) != 0) {
		fprintf(stderr, MOUNT_PROG ": cannot forbid core dumps: %s\n", strerror(-r));
		r = -1;
	}
	if (r != 0)
		ret = r > 0 ? 0 : 1;
	else
		ret = mount_run(&a);
	free(a.fuse_opts);
	free(a.fsname);
	free(a.socket);
	return ret;
}
