/* Small durable-file helpers. */
#ifndef VAULTFS_LIB_FILEUTIL_H
#define VAULTFS_LIB_FILEUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"

/* Replaces PATH with DATA atomically and durably: write a temporary file in
 * the same directory (mode MODE, whatever the umask), fsync it, rename it
 * over PATH, fsync the directory. Returns 0 or -errno. */
int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Appends the whole file to OUT (at most max bytes, else -EFBIG).
 * Returns 0 or -errno (-ENOENT if missing). */
int file_read_all(const char *path, size_t max, struct buf *out);

/* mkdir -p with MODE for every created component; an existing directory is
 * fine. The parent of every created component is fsynced, so that the new
 * directory survives a power loss. Returns 0 or -errno. */
int file_mkdir_p(const char *path, mode_t mode);

/* fsync of the file or directory at PATH. 0 or -errno. */
int file_sync_path(const char *path);

/* Writes all of P to FD (at its offset). 0 or -errno. */
int file_write_full(int fd, const void *p, size_t len);

/* Copies the file open at SRC, from offset FROM to its end, to FD (at its
 * offset). 0 or -errno. */
int file_copy_fd(int src, uint64_t from, int fd);

/* Streaming counterpart of file_write_atomic: creates "PATH.tmp" (0600, a
 * fresh file, never one planted there) into *RET_FD and its name into TMP;
 * file_commit_temp fsyncs, closes and renames it over PATH, then fsyncs the
 * directory (on error the temporary file is removed). 0 or -errno. */
int file_create_temp(const char *path, char *tmp, size_t tmp_len, int *ret_fd);
int file_commit_temp(int fd, const char *tmp, const char *path);

/* The names in DIR that start with PREFIX (malloc'd array of malloc'd
 * strings, in no order; the caller frees them). 0 or -errno. */
int file_list_prefix(const char *dir, const char *prefix, char ***ret, size_t *ret_n);

/* Removes the files in DIR whose names start with PREFIX and end with
 * SUFFIX (leftovers of work a crash cut short). Returns how many. */
unsigned file_remove_matching(const char *dir, const char *prefix, const char *suffix);

#endif
