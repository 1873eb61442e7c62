/* A crash-simulating SQLite VFS, for tests only: it is compiled in only with
 * -Dfailpoints=true (VAULTFS_FAILPOINTS); release builds get the stub below
 * and open their databases with SQLite's default VFS.
 *
 * It wraps the default (unix) VFS. Writes and truncations of the files that
 * hold durable state (main database, WAL, rollback journal) go to an
 * in-memory overlay of the file instead of the disk; reads see the overlay
 * over the real file. Only xSync writes the overlay through to the real file
 * and fsyncs it. A process killed with SIGKILL therefore leaves on disk what
 * a power loss would have left (everything up to its last sync, nothing
 * after), where a plain SIGKILL loses nothing, because the kernel's page
 * cache outlives the process.
 *
 * The overlay of a file is shared by every handle on the same path in the
 * process, as the page cache is. What is not modelled: directory operations
 * (creating and deleting files pass through; SQLite fsyncs the directory
 * itself where that matters), and a crash during xSync writes an arbitrary
 * prefix of the overlay's blocks (a real disk may land any subset). The WAL
 * index (-shm) passes through: it is not durable state, and the first
 * connection after a crash rebuilds it from the WAL, whose frame checksums
 * and salts end the log at the first frame that never reached the disk. */
#ifndef VAULTFS_RAFT_CRASHVFS_H
#define VAULTFS_RAFT_CRASHVFS_H

#include <stddef.h>

#define CRASHVFS_NAME "vaultfs-crash"
#define CRASHVFS_ENV "VAULTFS_CRASHVFS"

#ifdef VAULTFS_FAILPOINTS
/* Registers the VFS as CRASHVFS_NAME (never as SQLite's default).
 * Idempotent and thread-safe. Returns SQLITE_OK or an SQLite error code. */
int crashvfs_register(void);

/* The VFS name to open the Raft database with: CRASHVFS_NAME, registered,
 * if the environment variable CRASHVFS_ENV is "1", else NULL (SQLite's
 * default); either wrapped by the fault-injecting VFS of faultvfs.h
 * (FAULTVFS_NAME) if its variable FAULTVFS_ENV is set. The variables are
 * read once per process; the first call logs a warning for each test VFS
 * that is on. */
const char *crashvfs_vfs(void);
#else
static inline const char *crashvfs_vfs(void)
{
	return NULL;
}
#endif

#endif
