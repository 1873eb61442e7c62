/* Fault-injecting SQLite VFS (tests only). See faultvfs.h.
 *
 * One mutex guards the control file's path, the mode read from it last and
 * the time of the next read: this is test infrastructure, and the lock is
 * held for a copy except once per FAULTVFS_POLL_MS. */
#include "raft/faultvfs.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

/* Files whose writes reach the disk for good; temporary files pass through. */
#define FV_DURABLE                                                                       \
	(SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL |              \
	 SQLITE_OPEN_SUPER_JOURNAL)
#define FV_CONTROL_MAX 64 /* the longest meaningful first line, and then some */

enum fv_kind { FV_HEALTHY, FV_EIO_WRITE, FV_EIO_FSYNC, FV_SLOW_FSYNC, FV_UNKNOWN };

struct fv_mode {
	enum fv_kind kind;
	long ms; /* FV_SLOW_FSYNC: the delay */
};

struct fv_file {
	sqlite3_file base;
	sqlite3_file *real; /* the wrapped file: the bytes right after this struct */
};

static pthread_mutex_t fv_mutex = PTHREAD_MUTEX_INITIALIZER;
static sqlite3_vfs *base_vfs; /* set once, by the first registration */
static sqlite3_vfs fv_vfs;
static char *control_path;
static struct fv_mode current;
static bool polled;                /* current was read from control_path */
static struct timespec next_poll; /* CLOCK_MONOTONIC */

/* ---- the control file ---- */

static bool timespec_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void timespec_add_ms(struct timespec *t, long ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

/* The mode a control file's first line TEXT asks for. */
static struct fv_mode parse_mode(const char *text)
{
	struct fv_mode m = { FV_UNKNOWN, 0 };
	size_t len = strcspn(text, "\r\n");
	char *end = NULL;
	if (len == 0)
		m.kind = FV_HEALTHY;
	else if (len == strlen("eio-write") && strncmp(text, "eio-write", len) == 0)
		m.kind = FV_EIO_WRITE;
	else if (len == strlen("eio-fsync") && strncmp(text, "eio-fsync", len) == 0)
		m.kind = FV_EIO_FSYNC;
	else if (strncmp(text, "slow-fsync ", strlen("slow-fsync ")) == 0) {
		errno = 0;
		long ms = strtol(text + strlen("slow-fsync "), &end, 10);
		if (errno == 0 && end == text + len && ms >= 1 && ms <= FAULTVFS_SLOW_MAX_MS) {
			m.kind = FV_SLOW_FSYNC;
			m.ms = ms;
		}
	}
	return m;
}

/* What the control file asks for now; a missing or unreadable file is a
 * healthy disk (the harness heals by removing it). */
static struct fv_mode read_control(const char *path)
{
	char text[FV_CONTROL_MAX + 1] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return (struct fv_mode){ FV_HEALTHY, 0 };
	ssize_t n = read(fd, text, FV_CONTROL_MAX);
	close(fd);
	text[n > 0 ? n : 0] = '\0';
	return parse_mode(text);
}

static void log_change(struct fv_mode m)
{
	switch (m.kind) {
	case FV_HEALTHY:
		log_warn("disk fault injection: raft.db healthy again");
		break;
	case FV_EIO_WRITE:
		log_warn("disk fault injection: raft.db writes fail with EIO");
		break;
	case FV_EIO_FSYNC:
		log_warn("disk fault injection: raft.db fsyncs fail with EIO");
		break;
	case FV_SLOW_FSYNC:
		log_warn("disk fault injection: raft.db fsyncs take %ld ms longer", m.ms);
		break;
	case FV_UNKNOWN:
		log_warn("disk fault injection: %s holds no known mode; raft.db stays healthy",
			 control_path);
		break;
	}
}

/* The mode to apply to the I/O call at hand: the control file's, read again
 * if the last read is FAULTVFS_POLL_MS old. Errors of the clock are treated
 * as "time to read". */
static struct fv_mode mode_now(void)
{
	struct timespec now = { 0, 0 };
	(void)clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&fv_mutex);
	if (!polled || !timespec_before(&now, &next_poll)) {
		struct fv_mode m = read_control(control_path);
		/* A healthy start is not news; every change after it is. */
		bool changed = polled ? m.kind != current.kind || m.ms != current.ms
				      : m.kind != FV_HEALTHY;
		if (changed)
			log_change(m);
		current = m;
		polled = true;
		next_poll = now;
		timespec_add_ms(&next_poll, FAULTVFS_POLL_MS);
	}
	struct fv_mode m = current;
	pthread_mutex_unlock(&fv_mutex);
	if (m.kind == FV_UNKNOWN)
		m.kind = FV_HEALTHY;
	return m;
}

static void sleep_ms(long ms)
{
	struct timespec left = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&left, &left) != 0 && errno == EINTR)
		;
}

/* ---- io methods ---- */

static sqlite3_file *real_of(sqlite3_file *file)
{
	return ((struct fv_file *)file)->real;
}

static int fv_close(sqlite3_file *file)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xClose(real);
}

static int fv_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xRead(real, buf, amt, off);
}

static int fv_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	if (mode_now().kind == FV_EIO_WRITE) {
		errno = EIO;
		return SQLITE_IOERR_WRITE;
	}
	sqlite3_file *real = real_of(file);
	return real->pMethods->xWrite(real, buf, amt, off);
}

static int fv_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	if (mode_now().kind == FV_EIO_WRITE) {
		errno = EIO;
		return SQLITE_IOERR_TRUNCATE;
	}
	sqlite3_file *real = real_of(file);
	return real->pMethods->xTruncate(real, size);
}

static int fv_sync(sqlite3_file *file, int flags)
{
	struct fv_mode m = mode_now();
	if (m.kind == FV_EIO_FSYNC) {
		errno = EIO;
		return SQLITE_IOERR_FSYNC;
	}
	if (m.kind == FV_SLOW_FSYNC)
		sleep_ms(m.ms);
	sqlite3_file *real = real_of(file);
	return real->pMethods->xSync(real, flags);
}

/* Everything else passes through. */

static int fv_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xFileSize(real, size);
}

static int fv_lock(sqlite3_file *file, int lock)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xLock(real, lock);
}

static int fv_unlock(sqlite3_file *file, int lock)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xUnlock(real, lock);
}

static int fv_check_reserved_lock(sqlite3_file *file, int *out)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xCheckReservedLock(real, out);
}

static int fv_file_control(sqlite3_file *file, int op, void *arg)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xFileControl(real, op, arg);
}

static int fv_sector_size(sqlite3_file *file)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xSectorSize(real);
}

static int fv_device_characteristics(sqlite3_file *file)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xDeviceCharacteristics(real);
}

static int fv_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xShmMap(real, pg, pgsz, extend, pp);
}

static int fv_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xShmLock(real, offset, n, flags);
}

static void fv_shm_barrier(sqlite3_file *file)
{
	sqlite3_file *real = real_of(file);
	real->pMethods->xShmBarrier(real);
}

static int fv_shm_unmap(sqlite3_file *file, int delete_flag)
{
	sqlite3_file *real = real_of(file);
	return real->pMethods->xShmUnmap(real, delete_flag);
}

/* Version 2: no xFetch, so no page is ever written behind our back through
 * a memory map (SQLite only reads through one, but version 2 is all the
 * crash VFS below may offer). */
static const sqlite3_io_methods fv_io = {
	.iVersion = 2,
	.xClose = fv_close,
	.xRead = fv_read,
	.xWrite = fv_write,
	.xTruncate = fv_truncate,
	.xSync = fv_sync,
	.xFileSize = fv_file_size,
	.xLock = fv_lock,
	.xUnlock = fv_unlock,
	.xCheckReservedLock = fv_check_reserved_lock,
	.xFileControl = fv_file_control,
	.xSectorSize = fv_sector_size,
	.xDeviceCharacteristics = fv_device_characteristics,
	.xShmMap = fv_shm_map,
	.xShmLock = fv_shm_lock,
	.xShmBarrier = fv_shm_barrier,
	.xShmUnmap = fv_shm_unmap,
};

/* ---- vfs methods ---- */

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		   int *out_flags)
{
	(void)vfs;
	if (name == NULL || (flags & FV_DURABLE) == 0) {
		/* Temporary files: the base VFS serves them with its own
		 * methods. */
		return base_vfs->xOpen(base_vfs, name, file, flags, out_flags);
	}
	struct fv_file *f = (struct fv_file *)file;
	f->base.pMethods = NULL;
	f->real = (sqlite3_file *)(f + 1);
	f->real->pMethods = NULL;
	int rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		/* SQLite calls xClose on a failed open only if pMethods is
		 * set: close what the base VFS may have left open itself. */
		if (f->real->pMethods != NULL)
			f->real->pMethods->xClose(f->real);
		return rc;
	}
	f->base.pMethods = &fv_io;
	return SQLITE_OK;
}

/* ---- registration ---- */

/* Registers fv_vfs over BASE (fv_mutex held). */
static int register_over(sqlite3_vfs *base)
{
	assert(base_vfs == NULL);
	/* Everything but xOpen (full pathname, delete, access, randomness,
	 * time) is the base VFS's; its methods get our vfs object, whose
	 * pAppData is the base one's too. */
	fv_vfs = *base;
	fv_vfs.pNext = NULL;
	fv_vfs.zName = FAULTVFS_NAME;
	fv_vfs.szOsFile = (int)sizeof(struct fv_file) + base->szOsFile;
	fv_vfs.xOpen = fv_open;
	int rc = sqlite3_vfs_register(&fv_vfs, 0);
	if (rc == SQLITE_OK)
		base_vfs = base;
	return rc;
}

int faultvfs_register(const char *base, const char *control)
{
	assert(control != NULL);
	sqlite3_vfs *b = sqlite3_vfs_find(base);
	if (b == NULL)
		return SQLITE_ERROR;
	char *path = strdup(control);
	if (path == NULL)
		return SQLITE_NOMEM;
	pthread_mutex_lock(&fv_mutex);
	int rc = SQLITE_OK;
	if (base_vfs == NULL)
		rc = register_over(b);
	else if (base_vfs != b)
		rc = SQLITE_MISUSE;
	if (rc == SQLITE_OK) {
		free(control_path);
		control_path = path;
		path = NULL;
		polled = false; /* the next I/O call reads the new file */
	}
	pthread_mutex_unlock(&fv_mutex);
	free(path);
	return rc;
}

const char *faultvfs_wrap(const char *base)
{
	const char *control = getenv(FAULTVFS_ENV);
	if (control == NULL || control[0] == '\0')
		return base;
	int rc = faultvfs_register(base, control);
	if (rc != SQLITE_OK) {
		log_error("%s is set but the fault-injecting SQLite VFS cannot be registered: %s",
			  FAULTVFS_ENV, sqlite3_errstr(rc));
		return base;
	}
	log_warn("disk fault injection on (%s=%s, test builds only): raft.db I/O fails or "
		 "slows down as that file says",
		 FAULTVFS_ENV, control);
	return FAULTVFS_NAME;
}
