#include "lib/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_full(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_parent_dir(const char *path)
{
	char copy[PATH_MAX];
	if (strlen(path) >= sizeof(copy))
		return -ENAMETOOLONG;
	strcpy(copy, path);
	int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rv = fsync(dfd) == 0 ? 0 : -errno;
	close(dfd);
	return rv;
}

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* A fresh temporary file, never one planted there (a symlink in a
	 * directory others can write would send root's write elsewhere). */
	if (unlink(tmp) != 0 && errno != ENOENT)
		return -errno;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	/* MODE exactly, whatever the umask (the daemon's is 077). */
	int rv = fchmod(fd, mode) == 0 ? 0 : -errno;
	if (rv == 0)
		rv = write_full(fd, data, len);
	if (rv == 0 && fsync(fd) != 0)
		rv = -errno;
	if (close(fd) != 0 && rv == 0)
		rv = -errno;
	if (rv == 0 && rename(tmp, path) != 0)
		rv = -errno;
	if (rv != 0) {
		unlink(tmp);
		return rv;
	}
	return fsync_parent_dir(path);
}

int file_read_all(const char *path, size_t max, struct buf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rv = 0;
	size_t start = out->len; /* max limits the file, not what OUT held */
	for (;;) {
		if (buf_reserve(out, 4096) != 0) {
			rv = -ENOMEM;
			break;
		}
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rv = -errno;
			break;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		if (out->len - start > max) {
			rv = -EFBIG;
			break;
		}
	}
	close(fd);
	return rv;
}

int file_mkdir_p(const char *path, mode_t mode)
{
	char copy[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(copy))
		return -EINVAL;
	strcpy(copy, path);
	for (char *p = copy + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(copy, mode) == 0) {
			/* A new directory's entry is durable only once its
			 * parent is synced: without this, a power loss could
			 * take the data directory, and everything synced in
			 * it, away. */
			int rv = fsync_parent_dir(copy);
			if (rv != 0)
				return rv;
		} else if (errno != EEXIST) {
			return -errno;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
