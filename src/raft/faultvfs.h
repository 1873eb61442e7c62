/* A fault-injecting SQLite VFS, for tests only: compiled in only with
 * -Dfailpoints=true (VAULTFS_FAILPOINTS), like the crash VFS of crashvfs.h.
 * The fault harness (tests/faults/run.sh, nemeses disk-error and disk-slow)
 * uses it to make one node's disk fail or crawl for a while, and heal,
 * without restarting the node.
 *
 * It wraps another VFS (the crash VFS when VAULTFS_CRASHVFS=1, else SQLite's
 * default) and is steered at run time by a control file, named by the
 * environment variable FAULTVFS_ENV (VAULTFS_DISKFAULT=/path/to/file). The
 * file's first line says what the durable files (main database, WAL,
 * rollback journal) opened through this VFS do:
 *
 *   (no file, empty)  healthy: every call passes through
 *   eio-write         xWrite and xTruncate fail with SQLITE_IOERR_WRITE or
 *                     SQLITE_IOERR_TRUNCATE, errno EIO; nothing is written
 *   eio-fsync         xSync fails with SQLITE_IOERR_FSYNC, errno EIO; nothing
 *                     is synced (the data written before stays written, as
 *                     after a real failed fsync it may or may not be on disk)
 *   slow-fsync MS     xSync sleeps MS milliseconds (1-60000), then syncs
 *
 * Anything else counts as healthy and is logged as unknown. Reads, locks,
 * the WAL index (-shm), deletes and temporary files always pass through.
 * A failed call leaves errno at EIO, as the unix VFS's would. (A full disk
 * is not modelled here: SQLite reports it as SQLITE_FULL; the harness fills
 * a real filesystem for that.)
 *
 * Cost: the file is read at most once every FAULTVFS_POLL_MS, by the first
 * I/O call on a durable file after that time; the other calls use the mode
 * read last. A change therefore takes effect within FAULTVFS_POLL_MS of it
 * (plus the time to the next I/O call), and a healthy run pays one small
 * read(2) per 50 ms of database activity. Each change of mode is logged
 * once, so a node's log shows when its disk went bad and came back. The
 * daemon opens only raft.db through crashvfs_vfs(), so only raft.db's files
 * are affected. */
#ifndef VAULTFS_RAFT_FAULTVFS_H
#define VAULTFS_RAFT_FAULTVFS_H

#define FAULTVFS_NAME "vaultfs-fault"
#define FAULTVFS_ENV "VAULTFS_DISKFAULT"
#define FAULTVFS_POLL_MS 50
#define FAULTVFS_SLOW_MAX_MS 60000

#ifdef VAULTFS_FAILPOINTS
/* Registers the VFS as FAULTVFS_NAME (never as SQLite's default) over the
 * VFS named BASE (NULL: SQLite's default), steered by the control file
 * CONTROL. The first call registers; a later one may name another control
 * file (read at the next I/O call) but must name the same BASE (else
 * SQLITE_MISUSE). Thread-safe. Returns SQLITE_OK or an SQLite error code. */
int faultvfs_register(const char *base, const char *control);

/* The VFS to open the Raft database with, given BASE, the one it would be
 * opened with otherwise (NULL: SQLite's default): FAULTVFS_NAME, registered
 * over BASE, if the environment variable FAULTVFS_ENV names a control file,
 * else BASE. Logs a warning when fault injection is on. Call it once per
 * process (crashvfs_vfs() does). */
const char *faultvfs_wrap(const char *base);
#endif

#endif
