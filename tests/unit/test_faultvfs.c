/* Tests for src/raft/faultvfs.c, the fault-injecting SQLite VFS (built only
 * with -Dfailpoints=true): while its control file says so, writes or syncs
 * of a database's durable files fail with SQLITE_IOERR (errno EIO), or syncs
 * are late by the given time; once the file is gone they succeed again, on
 * the same open files and the same connection. The VFS is picked the way
 * the daemon picks it, through crashvfs_vfs() and VAULTFS_DISKFAULT; meson
 * runs this program a second time with VAULTFS_CRASHVFS=1, where the fault
 * VFS sits on the crash VFS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "raft/crashvfs.h"
#include "raft/faultvfs.h"

#define SLOW_MS 300
#define DURABLE_FLAGS (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE)

static char dir[64];
static char control[128];

static void path_in_dir(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

/* Writes TEXT as the control file (NULL: removes it) and waits until the
 * VFS must have read it: one poll interval and some. */
static void set_control(const char *text)
{
	if (text == NULL) {
		assert_true(unlink(control) == 0 || errno == ENOENT);
	} else {
		FILE *f = fopen(control, "w");
		assert_non_null(f);
		fputs(text, f);
		assert_int_equal(fclose(f), 0);
	}
	struct timespec wait = { 0, (FAULTVFS_POLL_MS + 30) * 1000000L };
	nanosleep(&wait, NULL);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000L + (now.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* One file opened through the fault VFS directly, below SQLite's pager. */
struct vfile {
	sqlite3_file *f;
	char path[160];
};

static void vfile_open(struct vfile *v, const char *name, int flags)
{
	sqlite3_vfs *vfs = sqlite3_vfs_find(FAULTVFS_NAME);
	assert_non_null(vfs);
	v->f = calloc(1, (size_t)vfs->szOsFile);
	assert_non_null(v->f);
	path_in_dir(v->path, sizeof v->path, name);
	int out = 0;
	assert_int_equal(vfs->xOpen(vfs, v->path, v->f, flags, &out), SQLITE_OK);
}

static void vfile_close(struct vfile *v)
{
	assert_int_equal(v->f->pMethods->xClose(v->f), SQLITE_OK);
	free(v->f);
	unlink(v->path);
}

static int vwrite(struct vfile *v, const char *text, sqlite3_int64 off)
{
	return v->f->pMethods->xWrite(v->f, text, (int)strlen(text), off);
}

static int vsync(struct vfile *v)
{
	return v->f->pMethods->xSync(v->f, SQLITE_SYNC_NORMAL);
}

static int setup(void **state)
{
	(void)state;
	set_control(NULL);
	return 0;
}

static void test_healthy_passes_through(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "plain.db", DURABLE_FLAGS);
	assert_int_equal(vwrite(&v, "hello", 0), SQLITE_OK);
	assert_int_equal(vsync(&v), SQLITE_OK);
	char buf[6] = "";
	assert_int_equal(v.f->pMethods->xRead(v.f, buf, 5, 0), SQLITE_OK);
	assert_string_equal(buf, "hello");
	vfile_close(&v);
}

static void test_eio_write_fails_writes_until_healed(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "w.db", DURABLE_FLAGS);
	assert_int_equal(vwrite(&v, "before", 0), SQLITE_OK);
	set_control("eio-write\n");
	errno = 0;
	assert_int_equal(vwrite(&v, "during", 0), SQLITE_IOERR_WRITE);
	assert_int_equal(errno, EIO);
	assert_int_equal(v.f->pMethods->xTruncate(v.f, 0), SQLITE_IOERR_TRUNCATE);
	/* Only writes fail: reads and syncs of what is there still work. */
	char buf[7] = "";
	assert_int_equal(v.f->pMethods->xRead(v.f, buf, 6, 0), SQLITE_OK);
	assert_string_equal(buf, "before");
	assert_int_equal(vsync(&v), SQLITE_OK);
	set_control(NULL);
	assert_int_equal(vwrite(&v, "after!", 0), SQLITE_OK);
	assert_int_equal(v.f->pMethods->xRead(v.f, buf, 6, 0), SQLITE_OK);
	assert_string_equal(buf, "after!");
	vfile_close(&v);
}

static void test_eio_fsync_fails_syncs_until_healed(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "s.db", DURABLE_FLAGS);
	set_control("eio-fsync");
	assert_int_equal(vwrite(&v, "data", 0), SQLITE_OK);
	errno = 0;
	assert_int_equal(vsync(&v), SQLITE_IOERR_FSYNC);
	assert_int_equal(errno, EIO);
	set_control("");
	assert_int_equal(vsync(&v), SQLITE_OK);
	vfile_close(&v);
}

static void test_slow_fsync_delays_syncs(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "slow.db", DURABLE_FLAGS);
	assert_int_equal(vwrite(&v, "data", 0), SQLITE_OK);
	char text[32];
	snprintf(text, sizeof text, "slow-fsync %d\n", SLOW_MS);
	set_control(text);
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(vsync(&v), SQLITE_OK);
	long slow = ms_since(&t0);
	print_message("# slow-fsync %d: xSync took %ld ms\n", SLOW_MS, slow);
	assert_true(slow >= SLOW_MS);
	assert_true(slow < SLOW_MS + 700); /* about the given time, on a busy machine */
	set_control(NULL);
	/* Healed, no sync is delayed; the disk itself sometimes takes a
	 * fraction of a second (a CI run saw 396 ms), so the fastest of
	 * three must be under the fault's delay, which each would carry. */
	long healthy = LONG_MAX;
	for (int i = 0; i < 3; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(vsync(&v), SQLITE_OK);
		long took = ms_since(&t0);
		if (took < healthy)
			healthy = took;
	}
	print_message("# healthy: the fastest of 3 xSyncs took %ld ms\n", healthy);
	assert_true(healthy < SLOW_MS);
	vfile_close(&v);
}

/* Temporary files are not the database's durable state: never faulted. */
static void test_temporary_files_pass_through(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "temp", SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_CREATE |
				       SQLITE_OPEN_READWRITE | SQLITE_OPEN_DELETEONCLOSE);
	set_control("eio-write");
	assert_int_equal(vwrite(&v, "scratch", 0), SQLITE_OK);
	vfile_close(&v);
}

/* A typo in the control file must not look like a fault. */
static void test_unknown_mode_is_healthy(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "typo.db", DURABLE_FLAGS);
	const char *bad[] = { "eio", "slow-fsync", "slow-fsync 0", "slow-fsync 5x", "eio-writes" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		set_control(bad[i]);
		assert_int_equal(vwrite(&v, "data", 0), SQLITE_OK);
		assert_int_equal(vsync(&v), SQLITE_OK);
	}
	vfile_close(&v);
}

static int count_rows(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return n;
}

/* Through SQLite, as raftio uses it (WAL, synchronous=FULL): a commit
 * during the fault fails with the fault's error and leaves nothing behind;
 * the same connection commits again once the disk is healthy. */
static void commit_fails_then_recovers(const char *mode, int extended)
{
	char db_path[160];
	path_in_dir(db_path, sizeof db_path, "raft.db");
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					 crashvfs_vfs()),
			 SQLITE_OK);
	sqlite3_extended_result_codes(db, 1);
	assert_int_equal(sqlite3_exec(db,
				      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
				      "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	set_control(mode);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (2)", NULL, NULL, NULL), extended);
	set_control(NULL);
	assert_int_equal(count_rows(db), 1);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (3)", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(count_rows(db), 2);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	const char *suffix[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		char p[176];
		snprintf(p, sizeof p, "%s%s", db_path, suffix[i]);
		unlink(p);
	}
}

static void test_sqlite_commit_eio_write(void **state)
{
	(void)state;
	commit_fails_then_recovers("eio-write", SQLITE_IOERR_WRITE);
}

static void test_sqlite_commit_eio_fsync(void **state)
{
	(void)state;
	commit_fails_then_recovers("eio-fsync", SQLITE_IOERR_FSYNC);
}

/* With VAULTFS_CRASHVFS=1 the fault VFS wraps the crash VFS: a healthy
 * write still stays off the disk until a sync, and a failed sync writes
 * nothing through. */
static void test_stacked_over_crash_vfs(void **state)
{
	(void)state;
	struct vfile v;
	vfile_open(&v, "stacked.db", DURABLE_FLAGS);
	struct stat st;
	assert_int_equal(vwrite(&v, "unsynced", 0), SQLITE_OK);
	assert_int_equal(stat(v.path, &st), 0);
	assert_int_equal(st.st_size, 0);
	set_control("eio-fsync");
	assert_int_equal(vsync(&v), SQLITE_IOERR_FSYNC);
	assert_int_equal(stat(v.path, &st), 0);
	assert_int_equal(st.st_size, 0);
	set_control(NULL);
	assert_int_equal(vsync(&v), SQLITE_OK);
	assert_int_equal(stat(v.path, &st), 0);
	assert_int_equal(st.st_size, (off_t)strlen("unsynced"));
	vfile_close(&v);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/test_faultvfs.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return 1;
	path_in_dir(control, sizeof control, "control");
	/* The daemon's way: the environment, read once, through crashvfs_vfs(). */
	setenv(FAULTVFS_ENV, control, 1);
	const char *name = crashvfs_vfs();
	if (name == NULL || strcmp(name, FAULTVFS_NAME) != 0) {
		fprintf(stderr, "crashvfs_vfs() gave %s, not %s\n", name ? name : "NULL",
			FAULTVFS_NAME);
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_healthy_passes_through, setup),
		cmocka_unit_test_setup(test_eio_write_fails_writes_until_healed, setup),
		cmocka_unit_test_setup(test_eio_fsync_fails_syncs_until_healed, setup),
		cmocka_unit_test_setup(test_slow_fsync_delays_syncs, setup),
		cmocka_unit_test_setup(test_temporary_files_pass_through, setup),
		cmocka_unit_test_setup(test_unknown_mode_is_healthy, setup),
		cmocka_unit_test_setup(test_sqlite_commit_eio_write, setup),
		cmocka_unit_test_setup(test_sqlite_commit_eio_fsync, setup),
		cmocka_unit_test_setup(test_stacked_over_crash_vfs, setup), /* last */
	};
	/* The last test only where the crash VFS is below. */
	size_t n = sizeof tests / sizeof *tests;
	const char *crash = getenv(CRASHVFS_ENV);
	if (crash == NULL || strcmp(crash, "1") != 0)
		n--;
	int failed = _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
	unlink(control);
	rmdir(dir);
	return failed;
}
