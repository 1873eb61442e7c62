#include "lib/auditlog.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct auditlog {
	char *path;
	int fd;
};

static int open_path(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	return fd >= 0 ? fd : -errno;
}

int auditlog_open(struct auditlog **ret, const char *path)
{
	struct auditlog *a = calloc(1, sizeof(*a));
	if (a == NULL || (a->path = strdup(path)) == NULL) {
		free(a);
		return -ENOMEM;
	}
	a->fd = open_path(path);
	if (a->fd < 0) {
		int rv = a->fd;
		free(a->path);
		free(a);
		return rv;
	}
	*ret = a;
	return 0;
}

void auditlog_close(struct auditlog *a)
{
	if (a == NULL)
		return;
	close(a->fd);
	free(a->path);
	free(a);
}

int auditlog_reopen(struct auditlog *a)
{
	int fd = open_path(a->path);
	if (fd < 0)
		return fd;
	close(a->fd);
	a->fd = fd;
	return 0;
}

int auditlog_append(struct auditlog *a, const void *line, size_t len)
{
	assert(len > 0 && ((const char *)line)[len - 1] == '\n');
	const char *p = line;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(a->fd, p + done, len - done);
		if (n > 0) {
			done += (size_t)n;
		} else if (n < 0 && errno != EINTR) {
			break;
		}
	}
	if (done == len)
		return 0;
	int rv = errno != 0 ? -errno : -EIO;
	/* Only part of it went in (the disk filled up meanwhile): cut it off,
	 * as nobody else appends to this file, so that the next line does
	 * not continue a torn one. */
	off_t end;
	if (done > 0 && (end = lseek(a->fd, 0, SEEK_END)) >= (off_t)done &&
	    ftruncate(a->fd, end - (off_t)done) != 0)
		return -errno;
	return rv;
}

/* ---- JSON lines ---- */

void auditlog_line_begin(struct auditlog_line *l, struct buf *b)
{
	l->b = b;
	l->first = true;
	buf_put_raw(b, "{", 1);
}

static void put_key(struct auditlog_line *l, const char *key)
{
	if (!l->first)
		buf_put_raw(l->b, ",", 1);
	l->first = false;
	buf_printf(l->b, "\"%s\":", key); /* keys are the caller's literals */
}

/* Length of the valid UTF-8 sequence at P (at most LEFT bytes), or 0. */
static size_t utf8_len(const uint8_t *p, size_t left)
{
	size_t n;
	uint32_t cp;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1fu;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0fu;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3fu);
	}
	static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, out of range, or a surrogate */
	return n;
}

static void put_escaped(struct buf *b, const char *s, size_t len)
{
	const uint8_t *p = (const uint8_t *)s;
	buf_put_raw(b, "\"", 1);
	for (size_t i = 0; i < len;) {
		uint8_t c = p[i];
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			buf_put_raw(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
			i++;
		} else {
			size_t n = utf8_len(p + i, len - i);
			if (n == 0) {
				buf_put_raw(b, "\\ufffd", 6);
				i++;
			} else {
				buf_put_raw(b, p + i, n);
				i += n;
			}
		}
	}
	buf_put_raw(b, "\"", 1);
}

void auditlog_line_str(struct auditlog_line *l, const char *key, const char *s, size_t len)
{
	put_key(l, key);
	put_escaped(l->b, s, len);
}

void auditlog_line_cstr(struct auditlog_line *l, const char *key, const char *s)
{
	if (s == NULL)
		auditlog_line_null(l, key);
	else
		auditlog_line_str(l, key, s, strlen(s));
}

void auditlog_line_u64(struct auditlog_line *l, const char *key, uint64_t v)
{
	put_key(l, key);
	buf_printf(l->b, "%llu", (unsigned long long)v);
}

void auditlog_line_null(struct auditlog_line *l, const char *key)
{
	put_key(l, key);
	buf_put_raw(l->b, "null", 4);
}

void auditlog_line_time(struct auditlog_line *l, const char *key, int64_t ns)
{
	time_t sec = (time_t)(ns / 1000000000);
	long frac = (long)(ns % 1000000000);
	if (frac < 0) {
		sec--;
		frac += 1000000000;
	}
	struct tm tm;
	char day[32];
	if (gmtime_r(&sec, &tm) == NULL || strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(day, sizeof(day), "1970-01-01T00:00:00");
	put_key(l, key);
	buf_printf(l->b, "\"%s.%09ldZ\"", day, frac);
}

void auditlog_line_end(struct auditlog_line *l)
{
	buf_put_raw(l->b, "}\n", 2);
}
