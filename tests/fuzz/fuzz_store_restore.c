/* store_restore: a snapshot, from disk or from the leader's
 * InstallSnapshot. The store is in memory with an unsealed barrier whose
 * keyring is the same in every run (fuzz_crypto_init), so the seeds'
 * ciphertexts decrypt.
 * Invariants: a rejected snapshot leaves the previous state (the empty tree)
 * byte for byte; an accepted one dumps to bytes that restore again to the
 * same dump; the restored tree can be listed, read and changed without a
 * crash (decryption failures are errors, not crashes). */
#include <string.h>
#include <sys/stat.h>

#include "crypto/barrier.h"
#include "crypto/secmem.h"
#include "fuzz_common.h"
#include "store/store.h"

static struct barrier *barrier;
static struct store *store;
static struct buf empty_dump;

static uint64_t seq;

static int64_t apply(struct cmd c)
{
	int fatal = 0;
	c.client_id = 0xc1;
	c.seq = ++seq;
	c.ack_below = seq > 2 ? seq - 2 : 0;
	c.now_ns = (int64_t)seq * 1000;
	int64_t r = store_apply(store, &c, &fatal);
	FUZZ_CHECK(fatal == 0);
	return r;
}

static struct cmd named(uint8_t type, uint64_t parent, const char *name, uint32_t mode)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = type;
	c.ino = parent;
	c.name = (const uint8_t *)name;
	c.name_len = strlen(name);
	c.mode = mode;
	c.uid = 1000;
	c.gid = 1000;
	return c;
}

static void seed_dump(const char *dir, const char *name)
{
	struct buf b;
	buf_init(&b);
	FUZZ_CHECK(store_dump(store, &b) == 0);
	fuzz_write_seed(dir, name, b.data, b.len);
	buf_free(&b);
}

static void write_seeds(const char *dir)
{
	seed_dump(dir, "empty");

	int64_t d = apply(named(CMD_MKDIR, VFS_ROOT_INO, "prod", 0700));
	FUZZ_CHECK(d > 0);
	int64_t f = apply(named(CMD_CREATE, (uint64_t)d, "db-password", 0600));
	FUZZ_CHECK(f > 0);
	struct cmd v;
	memset(&v, 0, sizeof(v));
	v.type = CMD_SET_VALUE;
	v.ino = (uint64_t)f;
	v.value = (const uint8_t *)"hunter2\n";
	v.value_len = 8;
	FUZZ_CHECK(apply(v) == f);
	FUZZ_CHECK(apply(named(CMD_CREATE, VFS_ROOT_INO, "empty-file", 0644)) > 0);
	seed_dump(dir, "tree");

	FUZZ_CHECK(apply(named(CMD_CREATE, VFS_ROOT_INO, "empty-file", 0644)) < 0); /* EEXIST */
	struct cmd mv = named(CMD_RENAME, VFS_ROOT_INO, "empty-file", 0);
	mv.new_parent = (uint64_t)d;
	mv.new_name = (const uint8_t *)"moved";
	mv.new_name_len = 5;
	FUZZ_CHECK(apply(mv) >= 0);
	struct cmd sa;
	memset(&sa, 0, sizeof(sa));
	sa.type = CMD_SETATTR;
	sa.ino = (uint64_t)f;
	sa.valid = VFS_SET_MODE | VFS_SET_MTIME | VFS_SET_ATIME;
	sa.mode = 0400;
	sa.mtime_ns = 123456789;
	sa.atime_ns = 987654321;
	FUZZ_CHECK(apply(sa) == f);
	seed_dump(dir, "tree_renamed_results");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char errmsg[256];
	struct buf sealed;

	(void)argc;
	(void)argv;
	fuzz_quiet_log();
	fuzz_crypto_init();
	uint8_t *root_key = secmem_alloc(BARRIER_ROOT_KEY_LEN);
	FUZZ_CHECK(root_key != NULL);
	FUZZ_CHECK(barrier_new(&barrier) == 0);
	barrier_generate_root_key(root_key);
	buf_init(&sealed);
	FUZZ_CHECK(barrier_init_keyring(barrier, root_key, &sealed) == 0);
	buf_free(&sealed);
	secmem_free(root_key);
	if (store_open(&store, barrier, errmsg, sizeof(errmsg)) != 0) {
		fprintf(stderr, "fuzz_store_restore: %s\n", errmsg);
		abort();
	}
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	buf_init(&empty_dump);
	FUZZ_CHECK(store_dump(store, &empty_dump) == 0);
	return 0;
}

static void dump_is(const struct buf *want)
{
	struct buf b;
	buf_init(&b);
	FUZZ_CHECK(store_dump(store, &b) == 0);
	FUZZ_CHECK(b.len == want->len && memcmp(b.data, want->data, b.len) == 0);
	buf_free(&b);
}

/* Lists the root and reads what is in it, as a mount would. */
static void walk_root(void)
{
	struct buf list, val;
	struct cursor c;
	uint64_t files, bytes;

	store_stats(store, &files, &bytes);
	buf_init(&list);
	buf_init(&val);
	if (store_readdir(store, VFS_ROOT_INO, &list) == 0) {
		cursor_init(&c, list.data, list.len);
		uint32_t n = cursor_u32(&c);
		for (uint32_t i = 0; i < n && c.err == 0; i++) {
			uint64_t ino = cursor_u64(&c);
			uint32_t mode = cursor_u32(&c);
			size_t name_len;
			const uint8_t *name = cursor_blob(&c, VFS_MAX_NAME, &name_len);
			FUZZ_CHECK(c.err == 0);
			struct vfs_attr a;
			/* readdir, getattr and lookup by name agree on every
			 * row (regression:
			 * tests/fuzz/crashes/store_restore-hash-name-mismatch). */
			if (store_getattr(store, ino, &a) == 0)
				FUZZ_CHECK(a.ino == ino && a.mode == mode);
			if (store_lookup(store, VFS_ROOT_INO, name, name_len, &a) == 0)
				FUZZ_CHECK(a.ino == ino && a.mode == mode);
			if (S_ISREG(mode)) {
				buf_clear(&val);
				(void)store_read(store, ino, &val);
			} else if (S_ISDIR(mode)) {
				buf_clear(&val);
				(void)store_readdir(store, ino, &val);
			}
		}
		FUZZ_CHECK(cursor_done(&c) == 0);
	}
	buf_free(&val);
	buf_free(&list);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (store_restore(store, data, size) != 0) {
		dump_is(&empty_dump);
		return 0;
	}

	struct buf d1;
	buf_init(&d1);
	FUZZ_CHECK(store_dump(store, &d1) == 0);
	FUZZ_CHECK(store_restore(store, d1.data, d1.len) == 0);
	dump_is(&d1);
	buf_free(&d1);

	walk_root();
	/* A command on the restored state: a storage failure may be reported
	 * as fatal (undecryptable rows are possible in a forged snapshot), but
	 * nothing may crash. */
	struct cmd c = named(CMD_CREATE, VFS_ROOT_INO, "fuzz-new", 0600);
	c.client_id = 0xf022;
	c.seq = 1;
	c.now_ns = 1;
	int fatal = 0;
	(void)store_apply(store, &c, &fatal);

	FUZZ_CHECK(store_restore(store, empty_dump.data, empty_dump.len) == 0);
	dump_is(&empty_dump);
	return 0;
}
