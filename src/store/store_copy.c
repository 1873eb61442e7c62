/* A copy of the state in a file, made a few pages at a time (SQLite's
 * online backup), so that the loop thread that owns the store is never held
 * for longer than one step. SQLite carries every change the store makes
 * meanwhile (through the same connection) into the copy, so a finished copy
 * is the state as of the last step. The file holds what the store holds:
 * ciphertext, inode numbers, the exactly-once table. */
#include "store/store.h"
#include "store/store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "lib/log.h"

/* An in-memory database restarts an online backup at every commit, so a
 * copy under a steady stream of writes might never finish in steps: after
 * this many restarts the rest is copied in one step (about 2 ms per MiB). */
#define STORE_COPY_MAX_RESTARTS 3

struct store_copy {
	sqlite3 *dest;
	sqlite3_backup *backup;
	int remaining; /* pages left after the last step; -1 before the first */
	unsigned restarts;
};

static int copy_errno(int rc)
{
	return rc == SQLITE_NOMEM ? -ENOMEM : rc == SQLITE_FULL ? -ENOSPC : -EIO;
}

int store_copy_begin(struct store *s, const char *path, struct store_copy **ret)
{
	struct store_copy *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	int rc = sqlite3_open_v2(path, &c->dest,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(c->dest, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF",
				  NULL, NULL, NULL);
	c->remaining = -1;
	if (rc == SQLITE_OK) {
		c->backup = sqlite3_backup_init(c->dest, "main", s->db, "main");
		if (c->backup == NULL)
			rc = sqlite3_errcode(c->dest);
	}
	if (rc != SQLITE_OK) {
		log_error("store: cannot start a copy into %s: %s", path, sqlite3_errstr(rc));
		sqlite3_close(c->dest);
		free(c);
		return copy_errno(rc);
	}
	*ret = c;
	return 0;
}

int store_copy_step(struct store_copy *c, int pages)
{
	if (c->restarts >= STORE_COPY_MAX_RESTARTS)
		pages = -1;
	int rc = sqlite3_backup_step(c->backup, pages);
	if (rc == SQLITE_DONE)
		return 0;
	int remaining = sqlite3_backup_remaining(c->backup);
	/* A step that leaves at least as much to do as before started over. */
	if (c->remaining >= 0 && remaining >= c->remaining && ++c->restarts ==
	    STORE_COPY_MAX_RESTARTS)
		log_info("store: the copy was restarted %u times by writes; copying the rest in "
			 "one step", c->restarts);
	c->remaining = remaining;
	if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return 1;
	log_error("store: copy failed: %s", sqlite3_errstr(rc));
	return copy_errno(rc);
}

void store_copy_end(struct store_copy *c)
{
	if (c == NULL)
		return;
	sqlite3_backup_finish(c->backup);
	sqlite3_close(c->dest);
	free(c);
}

int store_open_copy(struct store **ret, const char *path, char *errmsg, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(errmsg, errlen, "out of memory");
		return -ENOMEM;
	}
	int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(errmsg, errlen, "cannot open the copy %s: %s", path, sqlite3_errstr(rc));
		store_close(s);
		return copy_errno(rc);
	}
	*ret = s;
	return 0;
}

int store_image(struct store *s, struct store_image *ret)
{
	sqlite3_int64 len = 0;
	unsigned char *data = sqlite3_serialize(s->db, "main", &len, 0);
	if (data == NULL)
		return -ENOMEM; /* the database is never empty: it has a schema */
	ret->data = data;
	ret->len = (size_t)len;
	return 0;
}

void store_image_free(struct store_image *img)
{
	if (img->data != NULL)
		explicit_bzero(img->data, img->len);
	sqlite3_free(img->data);
	img->data = NULL;
	img->len = 0;
}

int store_open_image(struct store **ret, struct store_image *img)
{
	struct store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	int rc = sqlite3_open_v2(":memory:", &s->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc == SQLITE_OK) {
		/* The connection owns the image from here, even on failure. */
		rc = sqlite3_deserialize(s->db, "main", img->data, (sqlite3_int64)img->len,
					 (sqlite3_int64)img->len,
					 SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY);
		img->data = NULL;
		img->len = 0;
	}
	if (rc != SQLITE_OK) {
		store_image_free(img);
		store_close(s);
		return copy_errno(rc);
	}
	*ret = s;
	return 0;
}
