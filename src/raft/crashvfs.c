/* Crash-simulating SQLite VFS (tests only). See crashvfs.h.
 *
 * An overlay holds the blocks of a file written since its last sync, its
 * size as SQLite sees it, and how much of the real file is still current
 * below it (a truncation since the last sync makes the real bytes past it
 * stale: they read as zeros until a write covers them). An overlay with
 * nothing unsynced follows the real file. One mutex guards every overlay:
 * this is test infrastructure, simplicity beats speed. */
#include "raft/crashvfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "raft/faultvfs.h"

#define CV_BLOCK 4096
/* Files whose contents survive a crash; temporary files pass through. */
#define CV_DURABLE                                                                       \
	(SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL |              \
	 SQLITE_OPEN_SUPER_JOURNAL)

struct cv_block {
	sqlite3_int64 no; /* offset / CV_BLOCK */
	unsigned char data[CV_BLOCK];
};

struct cv_overlay {
	char *path;
	int refs;    /* open handles */
	bool linked; /* in the registry; false once the file was deleted */
	struct cv_overlay *next;
	sqlite3_int64 size;      /* what xFileSize answers */
	sqlite3_int64 disk_size; /* the real file's size */
	sqlite3_int64 base;      /* real bytes below this are current, past it stale */
	struct cv_block **blocks; /* written since the last sync, sorted by no */
	size_t n, cap;
};

struct cv_file {
	sqlite3_file base;
	struct cv_overlay *ov;
	sqlite3_file *real; /* the wrapped file: the bytes right after this struct */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs cv_vfs;
static pthread_mutex_t cv_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct cv_overlay *registry;

/* ---- overlays (cv_mutex held) ---- */

static size_t block_pos(const struct cv_overlay *ov, sqlite3_int64 no)
{
	size_t lo = 0, hi = ov->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ov->blocks[mid]->no < no)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct cv_block *block_find(const struct cv_overlay *ov, sqlite3_int64 no)
{
	size_t i = block_pos(ov, no);
	return i < ov->n && ov->blocks[i]->no == no ? ov->blocks[i] : NULL;
}

/* Reads N bytes at OFF from under the overlay: the real file below base,
 * zeros from there on. */
static int base_read(struct cv_file *f, unsigned char *buf, sqlite3_int64 n, sqlite3_int64 off)
{
	memset(buf, 0, (size_t)n);
	if (off >= f->ov->base)
		return SQLITE_OK;
	sqlite3_int64 len = f->ov->base - off < n ? f->ov->base - off : n;
	int rc = f->real->pMethods->xRead(f->real, buf, (int)len, off);
	return rc == SQLITE_IOERR_SHORT_READ ? SQLITE_OK : rc;
}

/* The overlay's block NO, created from what lies under it if needed. */
static int block_get(struct cv_file *f, sqlite3_int64 no, struct cv_block **ret)
{
	struct cv_overlay *ov = f->ov;
	size_t i = block_pos(ov, no);
	if (i < ov->n && ov->blocks[i]->no == no) {
		*ret = ov->blocks[i];
		return SQLITE_OK;
	}
	if (ov->n == ov->cap) {
		size_t cap = ov->cap > 0 ? 2 * ov->cap : 16;
		struct cv_block **grown = realloc(ov->blocks, cap * sizeof *grown);
		if (grown == NULL)
			return SQLITE_NOMEM;
		ov->blocks = grown;
		ov->cap = cap;
	}
	struct cv_block *b = malloc(sizeof *b);
	if (b == NULL)
		return SQLITE_NOMEM;
	b->no = no;
	int rc = base_read(f, b->data, CV_BLOCK, no * CV_BLOCK);
	if (rc != SQLITE_OK) {
		free(b);
		return rc;
	}
	memmove(&ov->blocks[i + 1], &ov->blocks[i], (ov->n - i) * sizeof *ov->blocks);
	ov->blocks[i] = b;
	ov->n++;
	*ret = b;
	return SQLITE_OK;
}

static void blocks_free_from(struct cv_overlay *ov, size_t from)
{
	for (size_t i = from; i < ov->n; i++)
		free(ov->blocks[i]);
	ov->n = from;
}

static void overlay_free(struct cv_overlay *ov)
{
	blocks_free_from(ov, 0);
	free(ov->blocks);
	free(ov->path);
	free(ov);
}

static struct cv_overlay *registry_find(const char *path)
{
	for (struct cv_overlay *ov = registry; ov != NULL; ov = ov->next)
		if (strcmp(ov->path, path) == 0)
			return ov;
	return NULL;
}

static void registry_unlink(struct cv_overlay *ov)
{
	for (struct cv_overlay **p = &registry; *p != NULL; p = &(*p)->next) {
		if (*p == ov) {
			*p = ov->next;
			break;
		}
	}
	ov->linked = false;
}

static bool overlay_clean(const struct cv_overlay *ov)
{
	return ov->n == 0 && ov->size == ov->disk_size && ov->base == ov->disk_size;
}

/* With nothing unsynced the real file is the truth: follow its size, so
 * that a connection through the real VFS (a test, the sqlite3 shell) may
 * write the file too. */
static int overlay_refresh(struct cv_file *f)
{
	struct cv_overlay *ov = f->ov;
	if (!overlay_clean(ov))
		return SQLITE_OK;
	sqlite3_int64 size = 0;
	int rc = f->real->pMethods->xFileSize(f->real, &size);
	if (rc == SQLITE_OK)
		ov->size = ov->disk_size = ov->base = size;
	return rc;
}

/* Unsynced data outlives its last handle, as in the page cache: a later
 * open in this process still sees it. */
static void overlay_unref(struct cv_overlay *ov)
{
	if (--ov->refs > 0)
		return;
	if (ov->linked && !overlay_clean(ov))
		return;
	if (ov->linked)
		registry_unlink(ov);
	overlay_free(ov);
}

static int overlay_attach(struct cv_file *f, const char *path)
{
	struct cv_overlay *ov = registry_find(path);
	if (ov == NULL) {
		sqlite3_int64 size = 0;
		int rc = f->real->pMethods->xFileSize(f->real, &size);
		if (rc != SQLITE_OK)
			return rc;
		ov = calloc(1, sizeof *ov);
		if (ov == NULL || (ov->path = strdup(path)) == NULL) {
			free(ov);
			return SQLITE_NOMEM;
		}
		ov->size = ov->disk_size = ov->base = size;
		ov->linked = true;
		ov->next = registry;
		registry = ov;
	}
	ov->refs++;
	f->ov = ov;
	return SQLITE_OK;
}

/* Writes the overlay through to the real file (not yet fsynced). */
static int overlay_flush(struct cv_file *f)
{
	struct cv_overlay *ov = f->ov;
	sqlite3_file *real = f->real;
	int rc = SQLITE_OK;
	/* First drop what was truncated away, so that it cannot come back
	 * in a hole left by the writes below. */
	sqlite3_int64 disk = ov->disk_size;
	if (ov->base < disk) {
		rc = real->pMethods->xTruncate(real, ov->base);
		disk = ov->base;
	}
	for (size_t i = 0; i < ov->n && rc == SQLITE_OK; i++) {
		sqlite3_int64 start = ov->blocks[i]->no * CV_BLOCK;
		sqlite3_int64 len = ov->size - start < CV_BLOCK ? ov->size - start : CV_BLOCK;
		rc = real->pMethods->xWrite(real, ov->blocks[i]->data, (int)len, start);
		if (start + len > disk)
			disk = start + len;
	}
	if (rc == SQLITE_OK && disk != ov->size)
		rc = real->pMethods->xTruncate(real, ov->size); /* grows with zeros */
	if (rc != SQLITE_OK)
		return rc;
	blocks_free_from(ov, 0);
	ov->disk_size = ov->base = ov->size;
	return SQLITE_OK;
}

/* ---- io methods ---- */

static struct cv_file *cv(sqlite3_file *file)
{
	return (struct cv_file *)file;
}

static int cv_close(sqlite3_file *file)
{
	struct cv_file *f = cv(file);
	int rc = f->real->pMethods->xClose(f->real);
	pthread_mutex_lock(&cv_mutex);
	overlay_unref(f->ov);
	pthread_mutex_unlock(&cv_mutex);
	f->ov = NULL;
	return rc;
}

static int cv_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct cv_file *f = cv(file);
	unsigned char *out = buf;
	pthread_mutex_lock(&cv_mutex);
	int rc = overlay_refresh(f);
	sqlite3_int64 end = off + amt;
	bool short_read = end > f->ov->size;
	if (short_read) {
		/* Like the unix VFS: zero-fill what lies past the end. */
		end = off > f->ov->size ? off : f->ov->size;
		memset(out + (end - off), 0, (size_t)(off + amt - end));
	}
	for (sqlite3_int64 pos = off; pos < end && rc == SQLITE_OK;) {
		sqlite3_int64 in = pos % CV_BLOCK;
		sqlite3_int64 n = end - pos < CV_BLOCK - in ? end - pos : CV_BLOCK - in;
		struct cv_block *b = block_find(f->ov, pos / CV_BLOCK);
		if (b != NULL)
			memcpy(out + (pos - off), b->data + in, (size_t)n);
		else
			rc = base_read(f, out + (pos - off), n, pos);
		pos += n;
	}
	pthread_mutex_unlock(&cv_mutex);
	if (rc == SQLITE_OK && short_read)
		rc = SQLITE_IOERR_SHORT_READ;
	return rc;
}

static int cv_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	struct cv_file *f = cv(file);
	const unsigned char *in_buf = buf;
	pthread_mutex_lock(&cv_mutex);
	int rc = overlay_refresh(f);
	sqlite3_int64 end = off + amt;
	for (sqlite3_int64 pos = off; pos < end && rc == SQLITE_OK;) {
		sqlite3_int64 in = pos % CV_BLOCK;
		sqlite3_int64 n = end - pos < CV_BLOCK - in ? end - pos : CV_BLOCK - in;
		struct cv_block *b = NULL;
		rc = block_get(f, pos / CV_BLOCK, &b);
		if (rc == SQLITE_OK)
			memcpy(b->data + in, in_buf + (pos - off), (size_t)n);
		pos += n;
	}
	if (rc == SQLITE_OK && end > f->ov->size)
		f->ov->size = end;
	pthread_mutex_unlock(&cv_mutex);
	return rc;
}

static int cv_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct cv_overlay *ov = cv(file)->ov;
	pthread_mutex_lock(&cv_mutex);
	int rc = overlay_refresh(cv(file));
	if (rc != SQLITE_OK) {
		pthread_mutex_unlock(&cv_mutex);
		return rc;
	}
	/* Blocks past the new end go; the tail of the one holding the end is
	 * zeroed, so that growing the file again shows zeros there. */
	blocks_free_from(ov, block_pos(ov, (size + CV_BLOCK - 1) / CV_BLOCK));
	struct cv_block *b = size % CV_BLOCK != 0 ? block_find(ov, size / CV_BLOCK) : NULL;
	if (b != NULL)
		memset(b->data + size % CV_BLOCK, 0, (size_t)(CV_BLOCK - size % CV_BLOCK));
	ov->size = size;
	if (ov->base > size)
		ov->base = size;
	pthread_mutex_unlock(&cv_mutex);
	return SQLITE_OK;
}

/* The only way to the disk: write the overlay through, then fsync. */
static int cv_sync(sqlite3_file *file, int flags)
{
	struct cv_file *f = cv(file);
	pthread_mutex_lock(&cv_mutex);
	int rc = overlay_flush(f);
	if (rc == SQLITE_OK)
		rc = f->real->pMethods->xSync(f->real, flags);
	pthread_mutex_unlock(&cv_mutex);
	return rc;
}

static int cv_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	pthread_mutex_lock(&cv_mutex);
	int rc = overlay_refresh(cv(file));
	*size = cv(file)->ov->size;
	pthread_mutex_unlock(&cv_mutex);
	return rc;
}

static int cv_file_control(sqlite3_file *file, int op, void *arg)
{
	sqlite3_file *real = cv(file)->real;
	switch (op) {
	case SQLITE_FCNTL_SIZE_HINT:
		/* Only a hint; the unix VFS would grow the real file behind
		 * the overlay's back. */
		return SQLITE_OK;
	case SQLITE_FCNTL_MMAP_SIZE:
		/* Memory-mapped reads would bypass the overlay: keep it off. */
		*(sqlite3_int64 *)arg = 0;
		return SQLITE_OK;
	default:
		return real->pMethods->xFileControl(real, op, arg);
	}
}

static int cv_device_characteristics(sqlite3_file *file)
{
	sqlite3_file *real = cv(file)->real;
	/* Atomic, sequential or safe-append claims let SQLite skip syncs that
	 * this model needs; power-safe overwrite holds (a lost write never
	 * damages synced bytes next to it). */
	return real->pMethods->xDeviceCharacteristics(real) & SQLITE_IOCAP_POWERSAFE_OVERWRITE;
}

/* Locks, sector size and the WAL index pass through. */

static int cv_lock(sqlite3_file *file, int lock)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xLock(real, lock);
}

static int cv_unlock(sqlite3_file *file, int lock)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xUnlock(real, lock);
}

static int cv_check_reserved_lock(sqlite3_file *file, int *out)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xCheckReservedLock(real, out);
}

static int cv_sector_size(sqlite3_file *file)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xSectorSize(real);
}

static int cv_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xShmMap(real, pg, pgsz, extend, pp);
}

static int cv_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xShmLock(real, offset, n, flags);
}

static void cv_shm_barrier(sqlite3_file *file)
{
	sqlite3_file *real = cv(file)->real;
	real->pMethods->xShmBarrier(real);
}

static int cv_shm_unmap(sqlite3_file *file, int delete_flag)
{
	sqlite3_file *real = cv(file)->real;
	return real->pMethods->xShmUnmap(real, delete_flag);
}

/* Version 2: no xFetch, so SQLite never memory-maps a file behind us. */
static const sqlite3_io_methods cv_io = {
	.iVersion = 2,
	.xClose = cv_close,
	.xRead = cv_read,
	.xWrite = cv_write,
	.xTruncate = cv_truncate,
	.xSync = cv_sync,
	.xFileSize = cv_file_size,
	.xLock = cv_lock,
	.xUnlock = cv_unlock,
	.xCheckReservedLock = cv_check_reserved_lock,
	.xFileControl = cv_file_control,
	.xSectorSize = cv_sector_size,
	.xDeviceCharacteristics = cv_device_characteristics,
	.xShmMap = cv_shm_map,
	.xShmLock = cv_shm_lock,
	.xShmBarrier = cv_shm_barrier,
	.xShmUnmap = cv_shm_unmap,
};

/* ---- vfs methods ---- */

static int cv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		   int *out_flags)
{
	(void)vfs;
	if (name == NULL || (flags & CV_DURABLE) == 0) {
		/* Temporary files never survive a crash: the real VFS serves
		 * them with its own methods. */
		return real_vfs->xOpen(real_vfs, name, file, flags, out_flags);
	}
	struct cv_file *f = cv(file);
	f->base.pMethods = NULL;
	f->ov = NULL;
	f->real = (sqlite3_file *)(f + 1);
	f->real->pMethods = NULL;
	int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
	if (rc == SQLITE_OK) {
		pthread_mutex_lock(&cv_mutex);
		rc = overlay_attach(f, name);
		pthread_mutex_unlock(&cv_mutex);
	}
	if (rc != SQLITE_OK) {
		if (f->real->pMethods != NULL)
			f->real->pMethods->xClose(f->real);
		return rc;
	}
	f->base.pMethods = &cv_io;
	return SQLITE_OK;
}

static int cv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	pthread_mutex_lock(&cv_mutex);
	struct cv_overlay *ov = registry_find(name);
	if (ov != NULL) {
		registry_unlink(ov); /* open handles keep it, as an unlinked file */
		if (ov->refs == 0)
			overlay_free(ov);
	}
	pthread_mutex_unlock(&cv_mutex);
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

/* "Exists" means non-empty for the unix VFS; answer it from the overlay,
 * which may hold data the disk does not have yet. */
static int cv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	if (flags == SQLITE_ACCESS_EXISTS) {
		pthread_mutex_lock(&cv_mutex);
		struct cv_overlay *ov = registry_find(name);
		if (ov != NULL && overlay_clean(ov))
			ov = NULL; /* the disk knows */
		if (ov != NULL)
			*out = ov->size > 0;
		pthread_mutex_unlock(&cv_mutex);
		if (ov != NULL)
			return SQLITE_OK;
	}
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

/* ---- registration ---- */

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_ERROR;

static void do_register(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	if (real_vfs == NULL)
		return;
	/* Everything else (full pathname, randomness, time, dlopen) is the
	 * real VFS's; its methods get our vfs object, whose pAppData is the
	 * real one's too. */
	cv_vfs = *real_vfs;
	cv_vfs.pNext = NULL;
	cv_vfs.zName = CRASHVFS_NAME;
	cv_vfs.szOsFile = (int)sizeof(struct cv_file) + real_vfs->szOsFile;
	cv_vfs.xOpen = cv_open;
	cv_vfs.xDelete = cv_delete;
	cv_vfs.xAccess = cv_access;
	register_rc = sqlite3_vfs_register(&cv_vfs, 0);
}

int crashvfs_register(void)
{
	pthread_once(&register_once, do_register);
	return register_rc;
}

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static const char *env_vfs;

/* The crash VFS if CRASHVFS_ENV asks for it, else NULL (SQLite's default). */
static const char *crash_from_env(void)
{
	const char *v = getenv(CRASHVFS_ENV);
	if (v == NULL || strcmp(v, "1") != 0)
		return NULL;
	int rc = crashvfs_register();
	if (rc != SQLITE_OK) {
		log_error("%s=1 but the crash-simulating SQLite VFS cannot be registered: %s",
			  CRASHVFS_ENV, sqlite3_errstr(rc));
		return NULL;
	}
	log_warn("crash-simulating SQLite VFS on (%s=1, test builds only): database writes reach "
		 "the disk only when SQLite syncs",
		 CRASHVFS_ENV);
	return CRASHVFS_NAME;
}

/* Disk faults are injected above the crash model: a write that fails never
 * reaches the overlay, a sync that fails writes nothing through. */
static void read_env(void)
{
	env_vfs = faultvfs_wrap(crash_from_env());
}

const char *crashvfs_vfs(void)
{
	pthread_once(&env_once, read_env);
	return env_vfs;
}
