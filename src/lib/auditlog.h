/* An audit log: a file of JSON lines, one line per record, appended with
 * one write(2) each, and the writer of those lines.
 *
 * The file is opened O_APPEND | O_CLOEXEC | O_NOFOLLOW and created 0600;
 * auditlog_reopen opens the path again (after logrotate moved the file).
 * A line is either all in the file or not at all: a write that the disk
 * took only part of is cut off again, so that the next line does not
 * continue a torn one. Lines are not fsynced (see the README: an fsync per
 * request would cost more than the request). Single-threaded use. */
#ifndef VAULTFS_LIB_AUDITLOG_H
#define VAULTFS_LIB_AUDITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct auditlog;

/* Opens (creates) PATH. Returns 0 or -errno. */
int auditlog_open(struct auditlog **ret, const char *path);
/* Closes; NULL is fine. */
void auditlog_close(struct auditlog *a);
/* Opens the path again and closes the old file once the new one is open
 * (if the new open fails, lines keep going to the old file). 0 or -errno. */
int auditlog_reopen(struct auditlog *a);
/* Appends LINE (LEN bytes, ending with '\n'). 0 or -errno (-EIO for a
 * write the disk took only part of). */
int auditlog_append(struct auditlog *a, const void *line, size_t len);

/* One JSON object on one line, built into a buf. Keys are literals of the
 * caller's; values are escaped (RFC 8259: quotes, backslashes, control
 * characters; bytes that are not UTF-8 become U+FFFD), so that a command
 * name like `a"b\n` cannot forge a field or a line. */
struct auditlog_line {
	struct buf *b;
	bool first;
};
void auditlog_line_begin(struct auditlog_line *l, struct buf *b);
void auditlog_line_str(struct auditlog_line *l, const char *key, const char *s, size_t len);
void auditlog_line_cstr(struct auditlog_line *l, const char *key, const char *s); /* NULL: null */
void auditlog_line_u64(struct auditlog_line *l, const char *key, uint64_t v);
void auditlog_line_null(struct auditlog_line *l, const char *key);
/* RFC 3339 UTC with nanoseconds: "2026-12-07T06:34:13.123456789Z". */
void auditlog_line_time(struct auditlog_line *l, const char *key, int64_t ns_since_epoch);
/* Closes the object and the line ("}\n"). */
void auditlog_line_end(struct auditlog_line *l);

#endif
