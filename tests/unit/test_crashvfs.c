/* Tests for src/raft/crashvfs.c, the crash-simulating SQLite VFS (built
 * only with -Dfailpoints=true): unsynced writes stay off the disk, a sync
 * puts them there, and a process killed in the middle of its work leaves a
 * database that opens consistently with every synced transaction and none
 * of the unsynced ones, although its WAL index (-shm) still counts them.
 * Then raftio on top of it: a process killed at a random point of a stream
 * of appends loses no entry whose append callback had fired. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "raft/crashvfs.h"
#include "raft/raftio.h"

static const uint8_t crash_key[RAFTIO_KEY_LEN] = "crashvfs unit test storage key.";

#define SYNCED_ROWS 40   /* committed with synchronous=FULL */
#define UNSYNCED_ROWS 10 /* committed with synchronous=NORMAL: no WAL sync */
#define WAL_HEADER 32
#define WAL_FRAME_HEADER 24
#define PAGE_SIZE 4096

struct fx {
	char dir[64];
	char db[96];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/test_crashvfs.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof f->db, "%s/raft.db", f->dir);
	assert_int_equal(crashvfs_register(), SQLITE_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[128];
	const char *suffix[] = { "", "-wal", "-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", f->db, suffix[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* What the real file holds: read with plain read(2), past every cache of
 * ours. Returns the size, or -1 if the file is missing. */
static ssize_t disk_read(const char *path, void *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, cap);
	close(fd);
	return n;
}

static off_t disk_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static sqlite3_file *vfs_open(sqlite3_vfs *vfs, const char *path)
{
	sqlite3_file *file = calloc(1, (size_t)vfs->szOsFile);
	assert_non_null(file);
	int out = 0;
	int flags = SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE;
	assert_int_equal(vfs->xOpen(vfs, path, file, flags, &out), SQLITE_OK);
	return file;
}

static void vfs_close(sqlite3_file *file)
{
	assert_int_equal(file->pMethods->xClose(file), SQLITE_OK);
	free(file);
}

static void expect_read(sqlite3_file *file, sqlite3_int64 off, const void *want, int len, int rc)
{
	char got[64];
	assert_true(len <= (int)sizeof got);
	assert_int_equal(file->pMethods->xRead(file, got, len, off), rc);
	assert_memory_equal(got, want, (size_t)len);
}

/* The overlay at the VFS level: writes and truncations stay in memory,
 * shared by every handle on the file, until xSync. */
static void test_sync_is_the_only_way_to_disk(void **state)
{
	struct fx *f = *state;
	sqlite3_vfs *vfs = sqlite3_vfs_find(CRASHVFS_NAME);
	assert_non_null(vfs);
	char disk[64];
	sqlite3_int64 size = 0;

	sqlite3_file *a = vfs_open(vfs, f->db);
	sqlite3_file *b = vfs_open(vfs, f->db);
	assert_int_equal(a->pMethods->xWrite(a, "hello world", 11, 0), SQLITE_OK);
	assert_int_equal(disk_size(f->db), 0); /* not on disk */
	assert_int_equal(b->pMethods->xFileSize(b, &size), SQLITE_OK);
	assert_int_equal(size, 11);
	expect_read(b, 0, "hello world", 11, SQLITE_OK); /* visible to the other handle */

	assert_int_equal(b->pMethods->xSync(b, SQLITE_SYNC_FULL), SQLITE_OK);
	assert_int_equal(disk_read(f->db, disk, sizeof disk), 11);
	assert_memory_equal(disk, "hello world", 11);

	/* Truncate, then grow again across a block boundary: the truncated
	 * bytes must read as zeros, not come back from the disk. */
	assert_int_equal(a->pMethods->xTruncate(a, 3), SQLITE_OK);
	assert_int_equal(a->pMethods->xWrite(a, "xy", 2, 8), SQLITE_OK);
	assert_int_equal(a->pMethods->xWrite(a, "!", 1, 5000), SQLITE_OK);
	assert_int_equal(disk_read(f->db, disk, sizeof disk), 11);
	assert_memory_equal(disk, "hello world", 11); /* the disk has the synced state */
	expect_read(a, 0, "hel\0\0\0\0\0xy", 10, SQLITE_OK);
	expect_read(a, 4998, "\0\0!\0\0", 5, SQLITE_IOERR_SHORT_READ); /* past the end: zeros */
	assert_int_equal(a->pMethods->xFileSize(a, &size), SQLITE_OK);
	assert_int_equal(size, 5001);

	assert_int_equal(a->pMethods->xSync(a, SQLITE_SYNC_NORMAL), SQLITE_OK);
	assert_int_equal(disk_size(f->db), 5001);
	assert_int_equal(disk_read(f->db, disk, 10), 10);
	assert_memory_equal(disk, "hel\0\0\0\0\0xy", 10);
	vfs_close(a);
	vfs_close(b);

	/* Unsynced data outlives the last handle (as in the page cache)... */
	a = vfs_open(vfs, f->db);
	assert_int_equal(a->pMethods->xTruncate(a, 1), SQLITE_OK);
	vfs_close(a);
	a = vfs_open(vfs, f->db);
	assert_int_equal(a->pMethods->xFileSize(a, &size), SQLITE_OK);
	assert_int_equal(size, 1);
	assert_int_equal(disk_size(f->db), 5001);
	/* ...and a sync, even through the new handle, makes it durable. */
	assert_int_equal(a->pMethods->xSync(a, SQLITE_SYNC_NORMAL), SQLITE_OK);
	assert_int_equal(disk_size(f->db), 1);
	vfs_close(a);
	/* Deleting the file drops its overlay: a new one starts empty. */
	assert_int_equal(vfs->xDelete(vfs, f->db, 0), SQLITE_OK);
	a = vfs_open(vfs, f->db);
	assert_int_equal(a->pMethods->xFileSize(a, &size), SQLITE_OK);
	assert_int_equal(size, 0);
	vfs_close(a);
}

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int insert_row(sqlite3 *db, int k)
{
	char sql[128];
	snprintf(sql, sizeof sql, "INSERT INTO t(k, v) VALUES (%d, randomblob(200))", k);
	return exec(db, sql);
}

/* The child's work: SYNCED_ROWS transactions with synchronous=FULL, then
 * UNSYNCED_ROWS with synchronous=NORMAL (committed, WAL not synced), then a
 * large transaction that spills pages into the WAL and never commits. Then
 * the process dies with SIGKILL, as a power loss would end it. Exits 1
 * (instead of being killed) if anything fails. */
static void child_work_then_die(const char *path, const char *vfs)
{
	sqlite3 *db = NULL;
	int ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) ==
			 SQLITE_OK &&
		 exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			  "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL)") == SQLITE_OK;
	for (int k = 1; ok && k <= SYNCED_ROWS; k++)
		ok = insert_row(db, k) == SQLITE_OK;
	ok = ok && exec(db, "PRAGMA synchronous = NORMAL") == SQLITE_OK;
	for (int k = SYNCED_ROWS + 1; ok && k <= SYNCED_ROWS + UNSYNCED_ROWS; k++)
		ok = insert_row(db, k) == SQLITE_OK;
	ok = ok && exec(db, "PRAGMA cache_size = 4; BEGIN") == SQLITE_OK;
	for (int k = 1000; ok && k < 1300; k++)
		ok = insert_row(db, k) == SQLITE_OK;
	if (!ok)
		_exit(1);
	raise(SIGKILL);
	_exit(2);
}

static void run_child(const char *path, const char *vfs)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child_work_then_die(path, vfs);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		fail_msg("the child did not die by SIGKILL (exit %d): its SQLite work failed",
			 WEXITSTATUS(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

/* mxFrame of the WAL index header left behind in PATH-shm: the last frame
 * the dead process counted as committed. */
static uint32_t shm_mx_frame(const char *db)
{
	char path[128];
	unsigned char hdr[48];
	uint32_t mx;
	snprintf(path, sizeof path, "%s-shm", db);
	assert_int_equal(disk_read(path, hdr, sizeof hdr), sizeof hdr);
	memcpy(&mx, hdr + 16, sizeof mx); /* native byte order, as SQLite wrote it */
	return mx;
}

static uint32_t wal_frames_on_disk(const char *db)
{
	char path[128];
	snprintf(path, sizeof path, "%s-wal", db);
	off_t size = disk_size(path);
	assert_true(size >= WAL_HEADER);
	return (uint32_t)((size - WAL_HEADER) / (PAGE_SIZE + WAL_FRAME_HEADER));
}

/* Opens with SQLite's default VFS, as the next process would, checks the
 * database and returns how many rows it holds. */
static int reopen_and_count(const char *path, int *max_k)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*), max(k), sum(length(v)) FROM t", -1,
					    &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int count = sqlite3_column_int(s, 0);
	*max_k = sqlite3_column_int(s, 1);
	assert_int_equal(sqlite3_column_int(s, 2), 200 * count); /* every row whole */
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return count;
}

static void test_crash_keeps_exactly_the_synced(void **state)
{
	struct fx *f = *state;
	int max_k = 0;

	run_child(f->db, CRASHVFS_NAME);
	/* The WAL index the dead process left counts frames that never
	 * reached the disk: this is the case the frame checksums and salts
	 * must catch when the next process rebuilds the index. */
	uint32_t counted = shm_mx_frame(f->db);
	uint32_t on_disk = wal_frames_on_disk(f->db);
	print_message("# WAL index counts %u frames, the WAL on disk holds %u\n", counted, on_disk);
	assert_true(counted > on_disk);
	assert_true(on_disk >= SYNCED_ROWS);

	assert_int_equal(reopen_and_count(f->db, &max_k), SYNCED_ROWS);
	assert_int_equal(max_k, SYNCED_ROWS);
}

/* The control: without the crash VFS a SIGKILL loses nothing, not even
 * the commits that were never synced, since the page cache survives. */
static void test_plain_kill_keeps_unsynced(void **state)
{
	struct fx *f = *state;
	int max_k = 0;

	run_child(f->db, NULL);
	assert_int_equal(reopen_and_count(f->db, &max_k), SYNCED_ROWS + UNSYNCED_ROWS);
	assert_int_equal(max_k, SYNCED_ROWS + UNSYNCED_ROWS);
}

/* A crash VFS database reopened through the crash VFS again, in the same
 * process: what was committed and closed cleanly is all there. */
static void test_clean_close_is_durable(void **state)
{
	struct fx *f = *state;
	sqlite3 *db = NULL;
	int max_k = 0;

	assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					 CRASHVFS_NAME),
			 SQLITE_OK);
	assert_int_equal(exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
				  "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL)"),
			 SQLITE_OK);
	for (int k = 1; k <= 5; k++)
		assert_int_equal(insert_row(db, k), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK); /* checkpoints and syncs */
	assert_int_equal(reopen_and_count(f->db, &max_k), 5);
}

/* ---- raftio under power loss ---- */

#define ADDR "127.0.0.1:9001"
#define CHILD_INFLIGHT 4
#define CHILD_MAX_INDEX 20000
#define ROUNDS 4

struct child_req {
	struct raft_io_append req;
	struct raft_entry e[3];
	char data[3][32];
	unsigned n;
	raft_index first;
};

/* The child's whole state: it never returns, so it never frees. */
static struct {
	struct raft_io io;
	int ack_fd;
	raft_index next;
	struct child_req reqs[CHILD_INFLIGHT];
} ch;

static void entry_payload(char *out, size_t n, raft_index idx)
{
	snprintf(out, n, "entry-%llu", (unsigned long long)idx);
}

static void child_submit(struct child_req *r);

/* Acknowledged: tell the parent the last index that is now durable. */
static void child_append_cb(struct raft_io_append *req, int status)
{
	struct child_req *r = req->data;
	uint64_t last = r->first + r->n - 1;
	if (status != 0 || write(ch.ack_fd, &last, sizeof last) != (ssize_t)sizeof last)
		_exit(3);
	if (ch.next < CHILD_MAX_INDEX)
		child_submit(r);
}

static void child_submit(struct child_req *r)
{
	r->n = 1 + (unsigned)(ch.next % 3);
	r->first = ch.next;
	for (unsigned i = 0; i < r->n; i++) {
		entry_payload(r->data[i], sizeof r->data[i], r->first + i);
		r->e[i] = (struct raft_entry){ .term = 1, .type = RAFT_COMMAND,
					       .buf = { r->data[i], strlen(r->data[i]) } };
	}
	ch.next += r->n;
	r->req.data = r;
	if (ch.io.append(&ch.io, &r->req, r->e, r->n, child_append_cb) != 0)
		_exit(4);
}

/* Loads the log (bootstrapping it the first time) and appends from its
 * end, CHILD_INFLIGHT requests at a time, until killed. */
static void child_append_until_killed(const char *dir, int ack_fd)
{
	uv_loop_t loop;
	char err[256];
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snap = NULL;
	raft_index start = 0;
	struct raft_entry *entries = NULL;
	size_t n = 0;

	ch.ack_fd = ack_fd;
	if (uv_loop_init(&loop) != 0 ||
	    raftio_init(&ch.io, &loop, dir, crash_key, NULL, err, sizeof err) != 0 ||
	    ch.io.init(&ch.io, 1, ADDR) != 0 ||
	    ch.io.load(&ch.io, &term, &vote, &snap, &start, &entries, &n) != 0)
		_exit(5);
	ch.next = start + n;
	if (n == 0) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		if (raft_configuration_add(&conf, 1, ADDR, RAFT_VOTER) != 0 ||
		    ch.io.bootstrap(&ch.io, &conf) != 0)
			_exit(6);
		ch.next = 2;
	}
	for (int i = 0; i < CHILD_INFLIGHT; i++)
		child_submit(&ch.reqs[i]);
	uv_run(&loop, UV_RUN_DEFAULT);
	for (;;)
		pause(); /* CHILD_MAX_INDEX reached before the kill: wait for it */
}

/* Reads acknowledged indexes from FD: returns the highest, or 0 at EOF
 * before WANT acknowledgements (WANT = 0: read to EOF). */
static uint64_t read_acks(int fd, unsigned want, uint64_t max)
{
	uint64_t idx;
	for (unsigned got = 0; want == 0 || got < want; got++) {
		ssize_t r = read(fd, &idx, sizeof idx);
		if (r == 0)
			return want == 0 ? max : 0;
		assert_int_equal(r, sizeof idx);
		if (idx > max)
			max = idx;
	}
	return max;
}

static void io_closed(struct raft_io *io)
{
	(*(int *)io->data)++;
}

/* Every entry up to ACKED is there, intact, after a restart. */
static void check_log(const char *dir, uint64_t acked)
{
	uv_loop_t loop;
	struct raft_io io;
	char err[256];
	raft_term term;
	raft_id vote;
	struct raft_snapshot *snap = NULL;
	raft_index start = 0;
	struct raft_entry *entries = NULL;
	size_t n = 0;
	char want[32];
	int closed = 0;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(raftio_init(&io, &loop, dir, crash_key, NULL, err, sizeof err), 0);
	assert_int_equal(io.init(&io, 1, ADDR), 0);
	int rv = io.load(&io, &term, &vote, &snap, &start, &entries, &n);
	if (rv != 0)
		fail_msg("load after the crash: %s", io.errmsg);
	assert_null(snap);
	assert_int_equal(start, 1);
	print_message("# acknowledged up to index %llu; the log holds %zu entries\n",
		      (unsigned long long)acked, n);
	assert_true(n >= acked);
	for (size_t i = 1; i < n; i++) {
		entry_payload(want, sizeof want, start + i);
		assert_int_equal(entries[i].buf.len, strlen(want));
		assert_memory_equal(entries[i].buf.base, want, strlen(want));
	}
	raft_free(entries[0].batch);
	raft_free(entries);
	io.data = &closed;
	io.close(&io, io_closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_raftio_acknowledged_appends_survive(void **state)
{
	struct fx *f = *state;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
	print_message("# seed %u\n", seed);
	srand(seed);
	for (int round = 0; round < ROUNDS; round++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(p[0]);
			child_append_until_killed(f->dir, p[1]);
		}
		close(p[1]);
		/* Kill at a random point: after a random number of acks, while
		 * appends keep going. */
		unsigned target = 20 + (unsigned)rand() % 300;
		uint64_t acked = read_acks(p[0], target, 0);
		kill(pid, SIGKILL);
		if (acked == 0)
			fail_msg("the child stopped early (round %d)", round);
		acked = read_acks(p[0], 0, acked); /* acks already in the pipe count */
		close(p[0]);
		int status = 0;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		check_log(f->dir, acked);
	}
}

int main(void)
{
	/* raftio picks the crash VFS from the environment, once. */
	setenv(CRASHVFS_ENV, "1", 1);
	if (crypto_global_init(true) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sync_is_the_only_way_to_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_keeps_exactly_the_synced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_plain_kill_keeps_unsynced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_clean_close_is_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raftio_acknowledged_appends_survive, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
