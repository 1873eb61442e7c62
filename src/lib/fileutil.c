#include "lib/fileutil.h"

#include <dirent.h>
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

static int open_fresh(const char *tmp, mode_t mode)
{
	/* A fresh temporary file, never one planted there (a symlink in a
	 * directory others can write would send root's write elsewhere). */
	if (unlink(tmp) != 0 && errno != ENOENT)
		return -errno;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	/* MODE exactly, whatever the umask (the daemon's is 077). */
	if (fchmod(fd, mode) != 0) {
		int rv = -errno;
		close(fd);
		unlink(tmp);
		return rv;
	}
	return fd;
}

int file_create_temp(const char *path, char *tmp, size_t tmp_len, int *ret_fd)
{
	*ret_fd = -1;
	if (snprintf(tmp, tmp_len, "%s.tmp", path) >= (int)tmp_len)
		return -ENAMETOOLONG;
	int fd = open_fresh(tmp, 0600);
	if (fd < 0)
		return fd;
	*ret_fd = fd;
	return 0;
}

int file_commit_temp(int fd, const char *tmp, const char *path)
{
	int rv = fsync(fd) == 0 ? 0 : -errno;
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

int file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = open_fresh(tmp, mode);
	if (fd < 0)
		return fd;
	int rv = write_full(fd, data, len);
	if (rv != 0) {
		close(fd);
		unlink(tmp);
		return rv;
	}
	return file_commit_temp(fd, tmp, path);
}

int file_sync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	int rv = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rv;
}

int file_write_full(int fd, const void *p, size_t len)
{
	return write_full(fd, p, len);
}

int file_copy_fd(int src, uint64_t from, int fd)
{
	uint8_t chunk[65536];
	for (;;) {
		ssize_t n = pread(src, chunk, sizeof chunk, (off_t)from);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		int rv = write_full(fd, chunk, (size_t)n);
		if (rv != 0)
			return rv;
		from += (uint64_t)n;
	}
}

int file_list_prefix(const char *dir, const char *prefix, char ***ret, size_t *ret_n)
{
	*ret = NULL;
	*ret_n = 0;
	DIR *d = opendir(dir);
	if (d == NULL)
		return -errno;
	size_t plen = strlen(prefix), n = 0, cap = 0;
	char **names = NULL;
	int rv = 0;
	struct dirent *e;
	while (rv == 0 && (e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, prefix, plen) != 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			char **bigger = realloc(names, ncap * sizeof *names);
			if (bigger == NULL) {
				rv = -ENOMEM;
				break;
			}
			names = bigger;
			cap = ncap;
		}
		if ((names[n] = strdup(e->d_name)) == NULL)
			rv = -ENOMEM;
		else
			n++;
	}
	closedir(d);
	if (rv != 0) {
		while (n > 0)
			free(names[--n]);
		free(names);
		return rv;
	}
	*ret = names;
	*ret_n = n;
	return 0;
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

unsigned file_remove_matching(const char *dir, const char *prefix, const char *suffix)
{
	char **names = NULL;
	size_t count = 0;
	unsigned removed = 0;
	if (file_list_prefix(dir, prefix, &names, &count) != 0)
		return 0;
	size_t slen = strlen(suffix);
	for (size_t i = 0; i < count; i++) {
		size_t len = strlen(names[i]);
		char path[PATH_MAX];
		if (len >= slen && strcmp(names[i] + len - slen, suffix) == 0 &&
		    snprintf(path, sizeof path, "%s/%s", dir, names[i]) < (int)sizeof path &&
		    unlink(path) == 0)
			removed++;
		free(names[i]);
	}
	free(names);
	return removed;
}
