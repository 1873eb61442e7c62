/* See store_fixture.h. */
#include "store_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto/secmem.h"

struct fx *fx_new_on(const struct fx *other)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];
	assert_non_null(f);
	buf_init(&f->sealed);
	if (other != NULL) {
		f->b = other->b;
		f->shared_barrier = true;
	} else {
		assert_int_equal(barrier_new(&f->b), 0);
		barrier_generate_root_key(f->root_key);
		assert_int_equal(barrier_init_keyring(f->b, f->root_key, &f->sealed), 0);
	}
	assert_int_equal(store_open(&f->s, f->b, err, sizeof(err)), 0);
	f->client = 1;
	return f;
}

struct fx *fx_new(void)
{
	return fx_new_on(NULL);
}

void fx_free(struct fx *f)
{
	store_close(f->s);
	if (!f->shared_barrier)
		barrier_free(f->b);
	buf_free(&f->sealed);
	free(f);
}

int setup(void **state)
{
	*state = fx_new();
	return 0;
}

int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

int group_setup(void **state)
{
	(void)state;
	return crypto_global_init(true) != 0 ? -1 : 0;
}

int64_t apply(struct fx *f, struct cmd c)
{
	int fatal = 0;
	c.client_id = f->client;
	c.seq = ++f->seq;
	c.now_ns = (int64_t)f->seq * 1000;
	int64_t r = store_apply(f->s, &c, &fatal);
	assert_int_equal(fatal, 0);
	return r;
}

struct cmd named(uint8_t type, uint64_t parent, const char *name)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = type;
	c.ino = parent;
	c.name = (const uint8_t *)name;
	c.name_len = strlen(name);
	return c;
}

int64_t mk(struct fx *f, uint64_t parent, const char *name, bool dir, uint32_t mode)
{
	struct cmd c = named(dir ? CMD_MKDIR : CMD_CREATE, parent, name);
	c.mode = mode;
	c.uid = 1000;
	c.gid = 100;
	return apply(f, c);
}

int64_t setval(struct fx *f, uint64_t ino, const char *value)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_SET_VALUE;
	c.ino = ino;
	c.value = (const uint8_t *)value;
	c.value_len = strlen(value);
	return apply(f, c);
}

int64_t rm(struct fx *f, uint64_t parent, const char *name, bool dir)
{
	return apply(f, named(dir ? CMD_RMDIR : CMD_UNLINK, parent, name));
}

int64_t mv(struct fx *f, uint64_t parent, const char *name, uint64_t new_parent,
	   const char *new_name, uint32_t flags)
{
	struct cmd c = named(CMD_RENAME, parent, name);
	c.new_parent = new_parent;
	c.new_name = (const uint8_t *)new_name;
	c.new_name_len = strlen(new_name);
	c.flags = flags;
	return apply(f, c);
}

int64_t setattr(struct fx *f, uint64_t ino, uint32_t valid, uint32_t mode, uint32_t uid,
		uint32_t gid, uint64_t size, int64_t mtime)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_SETATTR;
	c.ino = ino;
	c.valid = valid;
	c.mode = mode;
	c.uid = uid;
	c.gid = gid;
	c.size = size;
	c.mtime_ns = mtime;
	return apply(f, c);
}

int64_t set_times(struct fx *f, uint64_t ino, uint32_t valid, int64_t mtime, int64_t atime)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_SETATTR;
	c.ino = ino;
	c.valid = valid;
	c.mtime_ns = mtime;
	c.atime_ns = atime;
	return apply(f, c);
}

void script(struct fx *f)
{
	char name[32];
	assert_true(mk(f, VFS_ROOT_INO, "secret", true, 0755) > 0);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "k%d", i);
		int64_t ino = mk(f, 2, name, i % 4 == 0, 0640);
		assert_true(ino > 0);
		if (i % 4 != 0)
			assert_int_equal(setval(f, (uint64_t)ino, name), ino);
	}
	assert_int_equal(mv(f, 2, "k1", 2, "k2", 0), 0);
	assert_int_equal(mv(f, 2, "k3", 7, "moved", 0), 0);
	assert_int_equal(rm(f, 2, "k5", false), 0);
	assert_int_equal(rm(f, 2, "k8", true), 0);
	assert_int_equal(mk(f, 2, "k8", false, 0600), 23);
	assert_int_equal(mv(f, 2, "k6", 2, "k7", VFS_RENAME_EXCHANGE), 0);
	assert_int_equal(setattr(f, 10, VFS_SET_SIZE | VFS_SET_UID, 0, 42, 0, 2, 0), 10);
	assert_int_equal(mk(f, 2, "k8", false, 0600), -EEXIST);
}

int64_t apply_as(struct store *s, struct cmd c, uint64_t client, uint64_t seq,
		 uint64_t ack, int64_t now)
{
	int fatal = 0;
	c.client_id = client;
	c.seq = seq;
	c.ack_below = ack;
	c.now_ns = now;
	int64_t r = store_apply(s, &c, &fatal);
	assert_int_equal(fatal, 0);
	return r;
}

struct cmd create_cmd(const char *name)
{
	struct cmd c = named(CMD_CREATE, VFS_ROOT_INO, name);
	c.mode = 0600;
	return c;
}

struct cmd noop_cmd(void)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_SETATTR;
	c.ino = 999999;
	c.valid = VFS_SET_MODE;
	return c;
}

int lookup(struct fx *f, uint64_t parent, const char *name, struct vfs_attr *a)
{
	return store_lookup(f->s, parent, (const uint8_t *)name, strlen(name), a);
}

uint64_t ino_of(struct fx *f, uint64_t parent, const char *name)
{
	struct vfs_attr a;
	assert_int_equal(lookup(f, parent, name, &a), 0);
	return a.ino;
}

void assert_value(struct fx *f, uint64_t ino, const char *want)
{
	struct buf b;
	buf_init(&b);
	assert_int_equal(store_read(f->s, ino, &b), 0);
	assert_int_equal(b.len, strlen(want));
	if (b.len > 0)
		assert_memory_equal(b.data, want, b.len);
	buf_free(&b);
}

static void put_attr(struct buf *out, const struct vfs_attr *a)
{
	buf_put_u64(out, a->ino);
	buf_put_u32(out, a->mode);
	buf_put_u32(out, a->uid);
	buf_put_u32(out, a->gid);
	buf_put_u32(out, a->nlink);
	buf_put_u64(out, a->size);
	buf_put_i64(out, a->mtime_ns);
	buf_put_i64(out, a->ctime_ns);
	buf_put_i64(out, a->atime_ns);
}

/* A canonical plaintext description of the tree under INO: readdir order,
 * attributes, names and values. Equal trees give equal bytes. */
static void fingerprint_dir(struct store *s, uint64_t ino, struct buf *out)
{
	struct buf d;
	struct cursor c;
	buf_init(&d);
	assert_int_equal(store_readdir(s, ino, &d), 0);
	cursor_init(&c, d.data, d.len);
	uint32_t n = cursor_u32(&c);
	for (uint32_t i = 0; i < n; i++) {
		struct vfs_attr a;
		size_t name_len;
		uint64_t child = cursor_u64(&c);
		uint32_t mode = cursor_u32(&c);
		const uint8_t *name = cursor_blob(&c, VFS_MAX_NAME, &name_len);
		assert_int_equal(c.err, 0);
		assert_int_equal(store_getattr(s, child, &a), 0);
		assert_int_equal(a.mode, mode);
		put_attr(out, &a);
		buf_put_blob(out, name, name_len);
		if (S_ISDIR(mode)) {
			fingerprint_dir(s, child, out);
		} else {
			struct buf v;
			buf_init(&v);
			assert_int_equal(store_read(s, child, &v), 0);
			buf_put_blob(out, v.data, v.len);
			buf_free(&v);
		}
	}
	assert_int_equal(cursor_done(&c), 0);
	buf_free(&d);
}

void fingerprint(struct store *s, struct buf *out)
{
	struct vfs_attr a;
	assert_int_equal(store_getattr(s, VFS_ROOT_INO, &a), 0);
	put_attr(out, &a);
	fingerprint_dir(s, VFS_ROOT_INO, out);
	assert_int_equal(out->err, 0);
}

void assert_same_tree(struct store *a, struct store *b)
{
	struct buf fa, fb;
	buf_init(&fa);
	buf_init(&fb);
	fingerprint(a, &fa);
	fingerprint(b, &fb);
	assert_int_equal(fa.len, fb.len);
	assert_memory_equal(fa.data, fb.data, fa.len);
	buf_free(&fa);
	buf_free(&fb);
}

size_t skip_inodes(const struct buf *d)
{
	struct cursor c;
	size_t len;
	cursor_init(&c, d->data, d->len);
	cursor_raw(&c, 16);
	uint32_t n = cursor_u32(&c);
	for (uint32_t i = 0; i < n; i++) {
		cursor_raw(&c, 16);
		cursor_blob(&c, 64, &len);
		cursor_blob(&c, 1024, &len);
		cursor_raw(&c, 12 + 32);
		cursor_blob(&c, VFS_MAX_VALUE + 1024, &len);
	}
	assert_int_equal(c.err, 0);
	return d->len - c.left;
}

void parse_dedup(const struct buf *d, struct dedup *ret)
{
	struct cursor c;
	memset(ret, 0, sizeof(*ret));
	ret->applies_off = skip_inodes(d);
	cursor_init(&c, d->data + ret->applies_off, d->len - ret->applies_off);
	ret->applies = cursor_u64(&c);
	ret->n = cursor_u32(&c);
	assert_true(ret->n <= 8);
	for (uint32_t i = 0; i < ret->n; i++) {
		struct dclient *dc = &ret->c[i];
		dc->off = d->len - c.left;
		dc->id = cursor_u64(&c);
		dc->floor = cursor_u64(&c);
		dc->last_now_ns = cursor_i64(&c);
		dc->k = cursor_u32(&c);
		dc->rows_off = d->len - c.left;
		assert_non_null(cursor_raw(&c, (size_t)dc->k * 16));
	}
	assert_int_equal(cursor_done(&c), 0);
}

const struct dclient *dclient_of(const struct dedup *dd, uint64_t id)
{
	for (uint32_t i = 0; i < dd->n; i++)
		if (dd->c[i].id == id)
			return &dd->c[i];
	return NULL;
}

uint64_t get_u64_at(const struct buf *d, size_t off)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)d->data[off + i] << (8 * i);
	return v;
}

void assert_same_once_state(struct store *a, struct store *b)
{
	struct buf da, db;
	buf_init(&da);
	buf_init(&db);
	assert_int_equal(store_dump(a, &da), 0);
	assert_int_equal(store_dump(b, &db), 0);
	size_t oa = skip_inodes(&da), ob = skip_inodes(&db);
	assert_int_equal(da.len - oa, db.len - ob);
	assert_memory_equal(da.data + oa, db.data + ob, da.len - oa);
	buf_free(&da);
	buf_free(&db);
}
