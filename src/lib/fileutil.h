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

#endif
