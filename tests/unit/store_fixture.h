/* What the store's unit tests share (test_store.c, test_store_once.c,
 * test_store_dump.c): a store on a fresh keyring, commands applied as a
 * client, a plaintext fingerprint of the tree, and reading the dump's
 * exactly-once section. */
#ifndef VAULTFS_TESTS_STORE_FIXTURE_H
#define VAULTFS_TESTS_STORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "crypto/barrier.h"
#include "store/store.h"

struct fx {
	struct barrier *b;
	struct store *s;
	uint8_t root_key[BARRIER_ROOT_KEY_LEN];
	struct buf sealed;
	uint64_t client;
	uint64_t seq;
	bool shared_barrier;
};

/* A fixture with its own keyring, or on OTHER's keyring if not NULL. */
struct fx *fx_new_on(const struct fx *other);
struct fx *fx_new(void);
void fx_free(struct fx *f);
/* cmocka's setup and teardown: *STATE is a fixture of its own. */
int setup(void **state);
int teardown(void **state);
/* A test on a fixture of its own (setup, teardown). */
#define STORE_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
/* cmocka's group setup: the crypto library, once, before any test. */
int group_setup(void **state);

/* Commands. */
/* Applies C as the next command of the fixture's client; times are derived
 * from the sequence number so that runs are reproducible. */
int64_t apply(struct fx *f, struct cmd c);
struct cmd named(uint8_t type, uint64_t parent, const char *name);
int64_t mk(struct fx *f, uint64_t parent, const char *name, bool dir, uint32_t mode);
int64_t setval(struct fx *f, uint64_t ino, const char *value);
int64_t rm(struct fx *f, uint64_t parent, const char *name, bool dir);
int64_t mv(struct fx *f, uint64_t parent, const char *name, uint64_t new_parent,
	   const char *new_name, uint32_t flags);
int64_t setattr(struct fx *f, uint64_t ino, uint32_t valid, uint32_t mode, uint32_t uid,
		uint32_t gid, uint64_t size, int64_t mtime);
int64_t set_times(struct fx *f, uint64_t ino, uint32_t valid, int64_t mtime, int64_t atime);
/* The same scripted history, applied to two stores with different keys. */
void script(struct fx *f);
/* Applies C as command SEQ of CLIENT, acknowledging below ACK at time NOW;
 * a storage failure fails the test. */
int64_t apply_as(struct store *s, struct cmd c, uint64_t client, uint64_t seq,
		 uint64_t ack, int64_t now);
struct cmd create_cmd(const char *name);
/* A command that fails without touching the tree or the barrier: cheap
 * filler whose result (-ENOENT) is still kept. */
struct cmd noop_cmd(void);

/* Reads. */
int lookup(struct fx *f, uint64_t parent, const char *name, struct vfs_attr *a);
uint64_t ino_of(struct fx *f, uint64_t parent, const char *name);
void assert_value(struct fx *f, uint64_t ino, const char *want);
/* A canonical plaintext description of the whole tree: equal trees give
 * equal bytes. */
void fingerprint(struct store *s, struct buf *out);
void assert_same_tree(struct store *a, struct store *b);

/* Runs FN's failing command and checks the tree did not change. */
#define assert_fails_unchanged(f, expr, err)                                                     \
	do {                                                                                     \
		struct buf before_, after_;                                                      \
		buf_init(&before_);                                                              \
		buf_init(&after_);                                                               \
		fingerprint((f)->s, &before_);                                                   \
		assert_int_equal((expr), (err));                                                 \
		fingerprint((f)->s, &after_);                                                    \
		assert_int_equal(before_.len, after_.len);                                       \
		assert_memory_equal(before_.data, after_.data, before_.len);                     \
		buf_free(&before_);                                                              \
		buf_free(&after_);                                                               \
	} while (0)

/* The dump's exactly-once section, as the dump format documents it. */
struct dclient {
	uint64_t id, floor;
	int64_t last_now_ns;
	uint32_t k;
	size_t off;      /* of client_id */
	size_t rows_off; /* of the first (seq, result) */
};

struct dedup {
	size_t applies_off;
	uint64_t applies;
	uint32_t n;
	struct dclient c[8];
};

/* Offset of the dump's exactly-once section (just after the inodes). */
size_t skip_inodes(const struct buf *d);
void parse_dedup(const struct buf *d, struct dedup *ret);
const struct dclient *dclient_of(const struct dedup *dd, uint64_t id);
uint64_t get_u64_at(const struct buf *d, size_t off);
/* The exactly-once state of A and B (their dumps from the apply counter
 * on) is the same, byte for byte; their tree sections differ, as every
 * ciphertext has a random nonce. */
void assert_same_once_state(struct store *a, struct store *b);

#endif
