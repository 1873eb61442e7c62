/* Unit tests for the raft_fsm glue: entries and snapshots go through the
 * libraft vtable exactly as libraft would drive them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/barrier.h"
#include "crypto/secmem.h"
#include "raft/fsm.h"

struct fx {
	struct barrier *b;
	struct store *s;
	struct fsm fsm;
	int fatal_calls;
	uint64_t seq;
};

static void count_fatal(void *arg)
{
	((struct fx *)arg)->fatal_calls++;
}

static void fx_open(struct fx *f, struct barrier *b)
{
	char err[128];
	memset(f, 0, sizeof(*f));
	f->b = b;
	assert_int_equal(store_open(&f->s, b, err, sizeof(err)), 0);
	fsm_init(&f->fsm, f->s, b, count_fatal, f);
}

static struct barrier *new_barrier(void)
{
	struct barrier *b;
	uint8_t root_key[BARRIER_ROOT_KEY_LEN];
	struct buf sealed;
	buf_init(&sealed);
	assert_int_equal(barrier_new(&b), 0);
	barrier_generate_root_key(root_key);
	assert_int_equal(barrier_init_keyring(b, root_key, &sealed), 0);
	secmem_wipe(root_key, sizeof(root_key));
	buf_free(&sealed);
	return b;
}

static struct cmd create_cmd(struct fx *f, const char *name)
{
	struct cmd c;
	memset(&c, 0, sizeof(c));
	c.type = CMD_CREATE;
	c.client_id = 1;
	c.seq = ++f->seq;
	c.now_ns = 42;
	c.ino = VFS_ROOT_INO;
	c.name = (const uint8_t *)name;
	c.name_len = strlen(name);
	c.mode = 0600;
	return c;
}

/* Encodes C and applies it through the vtable; returns the packed result. */
static int apply_cmd(struct fx *f, const struct cmd *c, int64_t *ret)
{
	struct raft_buffer entry;
	void *result = NULL;
	assert_int_equal(fsm_encode_entry(f->b, c, &entry), 0);
	int rc = f->fsm.raft.apply(&f->fsm.raft, &entry, &result);
	raft_free(entry.base);
	if (rc == 0)
		*ret = fsm_result_unpack(result);
	return rc;
}

static void test_apply(void **state)
{
	(void)state;
	struct fx f;
	int64_t r;
	fx_open(&f, new_barrier());
	assert_int_equal(f.fsm.raft.version, 3);

	struct cmd c = create_cmd(&f, "topsecret-name");
	assert_int_equal(apply_cmd(&f, &c, &r), 0);
	assert_int_equal(r, 2);
	struct vfs_attr a;
	assert_int_equal(store_lookup(f.s, VFS_ROOT_INO, c.name, c.name_len, &a), 0);
	assert_int_equal(a.ino, 2);

	/* Errors travel as negative results, not as apply failures. */
	c.seq = ++f.seq;
	assert_int_equal(apply_cmd(&f, &c, &r), 0);
	assert_int_equal(r, -EEXIST);

	/* Results pack and unpack losslessly. */
	assert_true(fsm_result_unpack(fsm_result_pack(INT64_MIN + 1)) == INT64_MIN + 1);
	assert_true(fsm_result_unpack(fsm_result_pack(-EIO)) == -EIO);

	/* The entry holds no plaintext and is encrypted, not just encoded. */
	struct cmd v;
	memset(&v, 0, sizeof(v));
	v.type = CMD_SET_VALUE;
	v.client_id = 1;
	v.seq = ++f.seq;
	v.ino = 2;
	v.value = (const uint8_t *)"hunter2-password";
	v.value_len = 16;
	struct raft_buffer entry;
	assert_int_equal(fsm_encode_entry(f.b, &v, &entry), 0);
	assert_null(memmem(entry.base, entry.len, "hunter2", 7));
	raft_free(entry.base);
	assert_int_equal(fsm_encode_entry(f.b, &c, &entry), 0);
	assert_null(memmem(entry.base, entry.len, "topsecret", 9));
	raft_free(entry.base);

	/* Invalid commands are refused at encode time. */
	c.type = 0;
	assert_int_equal(fsm_encode_entry(f.b, &c, &entry), -EINVAL);

	struct barrier *b = f.b;
	store_close(f.s);
	barrier_free(b);
}

static void test_tampered_entry(void **state)
{
	(void)state;
	struct fx f;
	void *result = (void *)0x1;
	fx_open(&f, new_barrier());
	struct cmd c = create_cmd(&f, "x");
	struct raft_buffer entry;
	assert_int_equal(fsm_encode_entry(f.b, &c, &entry), 0);

	/* Every single-byte flip is detected. */
	uint8_t *p = entry.base;
	for (size_t i = 0; i < entry.len; i++) {
		p[i] ^= 0x01;
		assert_int_not_equal(f.fsm.raft.apply(&f.fsm.raft, &entry, &result), 0);
		p[i] ^= 0x01;
	}
	/* Each of them told the node to stop rather than stall. */
	assert_int_equal(f.fatal_calls, (int)entry.len);
	/* Truncated. */
	struct raft_buffer shorter = { .base = entry.base, .len = entry.len - 1 };
	assert_int_not_equal(f.fsm.raft.apply(&f.fsm.raft, &shorter, &result), 0);
	assert_true(result == (void *)0x1); /* result untouched on failure */

	/* Valid ciphertext, wrong AAD (a snapshot is not a command). */
	struct buf plain, ct;
	buf_init(&plain);
	buf_init(&ct);
	assert_int_equal(cmd_encode(&c, &plain), 0);
	assert_int_equal(barrier_encrypt(f.b, "vaultfs-snapshot", 16, plain.data, plain.len, &ct),
			 0);
	struct raft_buffer wrong = { .base = ct.data, .len = ct.len };
	assert_int_equal(f.fsm.raft.apply(&f.fsm.raft, &wrong, &result), RAFT_CORRUPT);
	/* Right AAD, but not a command. */
	buf_clear(&ct);
	assert_int_equal(barrier_encrypt(f.b, "vaultfs-cmd", 11, "garbage", 7, &ct), 0);
	wrong.base = ct.data;
	wrong.len = ct.len;
	assert_int_equal(f.fsm.raft.apply(&f.fsm.raft, &wrong, &result), RAFT_CORRUPT);
	buf_free(&plain);
	buf_free(&ct);

	/* From another cluster's keyring. */
	struct barrier *other = new_barrier();
	struct raft_buffer foreign;
	assert_int_equal(fsm_encode_entry(other, &c, &foreign), 0);
	assert_int_not_equal(f.fsm.raft.apply(&f.fsm.raft, &foreign, &result), 0);
	raft_free(foreign.base);
	barrier_free(other);

	/* Nothing was applied; the genuine entry still is. */
	struct vfs_attr a;
	assert_int_equal(store_lookup(f.s, VFS_ROOT_INO, (const uint8_t *)"x", 1, &a), -ENOENT);
	assert_int_equal(f.fsm.raft.apply(&f.fsm.raft, &entry, &result), 0);
	assert_int_equal(fsm_result_unpack(result), 2);
	raft_free(entry.base);

	struct barrier *b = f.b;
	store_close(f.s);
	barrier_free(b);
}

/* Hands a copy of SRC to restore the way libraft does: raft_malloc'd, and
 * owned by the FSM only if restore succeeds. */
static int restore_copy(struct fx *f, const struct raft_buffer *src)
{
	struct raft_buffer buf = { .base = raft_malloc(src->len), .len = src->len };
	assert_non_null(buf.base);
	memcpy(buf.base, src->base, src->len);
	int rc = f->fsm.raft.restore(&f->fsm.raft, &buf);
	if (rc != 0)
		raft_free(buf.base);
	return rc;
}

/* Takes a snapshot the way libraft does with a version 3 FSM: the loop's
 * part, then the thread pool's (here on this thread). */
static void take_snapshot(struct fsm *fsm, struct raft_buffer **bufs, unsigned *n)
{
	assert_int_equal(fsm->raft.snapshot(&fsm->raft, bufs, n), 0);
	assert_int_equal(*n, 0);
	assert_int_equal(fsm->raft.snapshot_async(&fsm->raft, bufs, n), 0);
	assert_int_equal(*n, 1);
}

/* libraft is done with the snapshot: the FSM frees it. */
static void drop_snapshot(struct fsm *fsm, struct raft_buffer **bufs, unsigned *n)
{
	assert_int_equal(fsm->raft.snapshot_finalize(&fsm->raft, bufs, n), 0);
	assert_null(*bufs);
	assert_int_equal(*n, 0);
}

/* A snapshot is the state when libraft asked for it (its index), not when
 * the thread pool got to it: commands applied in between are not in it. A
 * seal in between does not stop it either (its key was copied). */
static void test_snapshot_point_in_time(void **state)
{
	(void)state;
	struct barrier *b = new_barrier();
	struct fx f, g;
	int64_t r;
	fx_open(&f, b);
	fx_open(&g, b);
	struct cmd before = create_cmd(&f, "before-the-index");
	assert_int_equal(apply_cmd(&f, &before, &r), 0);
	struct raft_buffer *bufs = NULL;
	unsigned n = 0;
	assert_int_equal(f.fsm.raft.snapshot(&f.fsm.raft, &bufs, &n), 0);
	struct cmd after = create_cmd(&f, "after-the-index");
	assert_int_equal(apply_cmd(&f, &after, &r), 0);
	assert_int_equal(f.fsm.raft.snapshot_async(&f.fsm.raft, &bufs, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(restore_copy(&g, &bufs[0]), 0);
	struct vfs_attr a;
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, before.name, before.name_len, &a), 0);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, after.name, after.name_len, &a), -ENOENT);
	drop_snapshot(&f.fsm, &bufs, &n);
	/* Another one, sealed before the thread pool's part. */
	assert_int_equal(f.fsm.raft.snapshot(&f.fsm.raft, &bufs, &n), 0);
	barrier_seal(b);
	assert_int_equal(f.fsm.raft.snapshot_async(&f.fsm.raft, &bufs, &n), 0);
	assert_true(bufs[0].len > BARRIER_OVERHEAD);
	drop_snapshot(&f.fsm, &bufs, &n);
	fsm_free(&f.fsm);
	fsm_free(&g.fsm);
	store_close(f.s);
	store_close(g.s);
	barrier_free(b);
}

static void test_snapshot_restore(void **state)
{
	(void)state;
	struct barrier *b = new_barrier();
	struct fx f, g;
	int64_t r;
	fx_open(&f, b);
	fx_open(&g, b);

	struct cmd c = create_cmd(&f, "snap-secret-name");
	assert_int_equal(apply_cmd(&f, &c, &r), 0);
	struct cmd v;
	memset(&v, 0, sizeof(v));
	v.type = CMD_SET_VALUE;
	v.client_id = 1;
	v.seq = ++f.seq;
	v.ino = (uint64_t)r;
	v.value = (const uint8_t *)"snap-secret-value";
	v.value_len = 17;
	assert_int_equal(apply_cmd(&f, &v, &r), 0);

	struct raft_buffer *bufs = NULL;
	unsigned n = 0;
	take_snapshot(&f.fsm, &bufs, &n);
	assert_null(memmem(bufs[0].base, bufs[0].len, "snap-secret", 11));

	/* A tampered snapshot is rejected and G keeps its own state. */
	struct cmd gc = create_cmd(&g, "g-only");
	assert_int_equal(apply_cmd(&g, &gc, &r), 0);
	((uint8_t *)bufs[0].base)[bufs[0].len / 2] ^= 0x80;
	assert_int_not_equal(restore_copy(&g, &bufs[0]), 0);
	((uint8_t *)bufs[0].base)[bufs[0].len / 2] ^= 0x80;
	struct vfs_attr a;
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, (const uint8_t *)"g-only", 6, &a), 0);

	assert_int_equal(restore_copy(&g, &bufs[0]), 0);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, c.name, c.name_len, &a), 0);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, (const uint8_t *)"g-only", 6, &a),
			 -ENOENT);
	struct buf val;
	buf_init(&val);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, c.name, c.name_len, &a), 0);
	assert_int_equal(store_read(g.s, a.ino, &val), 0);
	assert_int_equal(val.len, 17);
	assert_memory_equal(val.data, "snap-secret-value", 17);
	buf_free(&val);

	/* Dedup state travelled with the snapshot. */
	assert_int_equal(apply_cmd(&g, &v, &r), 0);
	assert_int_equal(r, (int64_t)v.ino);

	drop_snapshot(&f.fsm, &bufs, &n);
	store_close(f.s);
	store_close(g.s);
	barrier_free(b);
}

/* Key hooks standing in for the node: the "payload" of a rotation is
 * u32 term || key, the "box list" of a snapshot the exported keyring. */
struct keys_fx {
	struct fx fx;
	int rotations;
	int restores;
};

static int fake_apply_rotation(void *arg, const uint8_t *p, size_t len)
{
	struct keys_fx *k = arg;
	k->rotations++;
	if (len != 4 + BARRIER_TERM_KEY_LEN)
		return -EBADMSG;
	uint32_t term = (uint32_t)p[0] | (uint32_t)p[1] << 8;
	int rc = barrier_add_term(k->fx.b, term, p + 4, 99);
	return rc == -EALREADY ? 0 : rc;
}

static int fake_snapshot_boxes(void *arg, struct buf *out)
{
	struct keys_fx *k = arg;
	return barrier_keyring_export(k->fx.b, out);
}

static int fake_restore_boxes(void *arg, const uint8_t *p, size_t len)
{
	struct keys_fx *k = arg;
	k->restores++;
	int rc = barrier_keyring_merge(k->fx.b, p, len);
	return rc < 0 ? rc : 0;
}

static const struct fsm_keys fake_keys = {
	.apply_rotation = fake_apply_rotation,
	.snapshot_boxes = fake_snapshot_boxes,
	.restore_boxes = fake_restore_boxes,
};

static void keys_open(struct keys_fx *k, struct barrier *b)
{
	memset(k, 0, sizeof *k);
	fx_open(&k->fx, b);
	k->fx.fsm.arg = k;
	k->fx.fsm.keys = &fake_keys;
}

static int apply_rotation(struct keys_fx *k, uint32_t term, const uint8_t *key)
{
	uint8_t payload[4 + BARRIER_TERM_KEY_LEN] = { (uint8_t)term, (uint8_t)(term >> 8) };
	memcpy(payload + 4, key, BARRIER_TERM_KEY_LEN);
	struct raft_buffer entry;
	void *result = NULL;
	assert_int_equal(fsm_encode_rotation(k->fx.b, payload, sizeof payload, &entry), 0);
	/* Not a command: 4 zero bytes, then a barrier ciphertext. */
	assert_memory_equal(entry.base, "\0\0\0\0", 4);
	assert_null(memmem(entry.base, entry.len, key, BARRIER_TERM_KEY_LEN));
	int rc = k->fx.fsm.raft.apply(&k->fx.fsm.raft, &entry, &result);
	raft_free(entry.base);
	return rc;
}

/* A rotation entry reaches the key hook decrypted; later commands are
 * under the new term; a tampered one stops the node. */
static void test_rotation_entry(void **state)
{
	(void)state;
	struct keys_fx k;
	int64_t r;
	keys_open(&k, new_barrier());
	uint8_t key[BARRIER_TERM_KEY_LEN];
	memset(key, 7, sizeof key);
	assert_int_equal(apply_rotation(&k, 2, key), 0);
	assert_int_equal(k.rotations, 1);
	assert_int_equal(k.fx.fatal_calls, 0);
	struct cmd c = create_cmd(&k.fx, "after-rotation");
	struct raft_buffer entry;
	assert_int_equal(fsm_encode_entry(k.fx.b, &c, &entry), 0);
	assert_int_equal(((uint8_t *)entry.base)[0], 2); /* the new term */
	raft_free(entry.base);
	assert_int_equal(apply_cmd(&k.fx, &c, &r), 0);

	/* A hook that fails (here: a gap) is fatal. */
	assert_int_not_equal(apply_rotation(&k, 9, key), 0);
	assert_int_equal(k.fx.fatal_calls, 1);

	/* So is an entry that does not decrypt. */
	uint8_t payload[4 + BARRIER_TERM_KEY_LEN] = { 3 };
	assert_int_equal(fsm_encode_rotation(k.fx.b, payload, sizeof payload, &entry), 0);
	((uint8_t *)entry.base)[entry.len - 1] ^= 1;
	void *result;
	assert_int_not_equal(k.fx.fsm.raft.apply(&k.fx.fsm.raft, &entry, &result), 0);
	raft_free(entry.base);
	assert_int_equal(k.fx.fatal_calls, 2);
	assert_int_equal(k.rotations, 2);

	/* Without key hooks a rotation entry cannot be applied. */
	k.fx.fsm.keys = NULL;
	assert_int_not_equal(apply_rotation(&k, 3, key), 0);
	assert_int_equal(k.fx.fatal_calls, 3);
	store_close(k.fx.s);
	barrier_free(k.fx.b);
}

/* A member that missed a rotation restores a snapshot taken under the new
 * term: the header (under term 1) gives it the term first. */
static void test_snapshot_carries_keys(void **state)
{
	(void)state;
	uint8_t root_key[BARRIER_ROOT_KEY_LEN];
	struct buf sealed;
	buf_init(&sealed);
	struct barrier *b1, *b2;
	assert_int_equal(barrier_new(&b1), 0);
	assert_int_equal(barrier_new(&b2), 0);
	barrier_generate_root_key(root_key);
	assert_int_equal(barrier_init_keyring(b1, root_key, &sealed), 0);
	assert_int_equal(barrier_unseal(b2, root_key, sealed.data, sealed.len), 0);
	secmem_wipe(root_key, sizeof root_key);
	buf_free(&sealed);

	struct keys_fx leader, lagging;
	int64_t r;
	keys_open(&leader, b1);
	keys_open(&lagging, b2);
	uint8_t key[BARRIER_TERM_KEY_LEN];
	memset(key, 9, sizeof key);
	assert_int_equal(apply_rotation(&leader, 2, key), 0);
	struct cmd c = create_cmd(&leader.fx, "written-under-2");
	assert_int_equal(apply_cmd(&leader.fx, &c, &r), 0);

	struct raft_buffer *bufs = NULL;
	unsigned n = 0;
	take_snapshot(&leader.fx.fsm, &bufs, &n);
	assert_memory_equal(bufs[0].base, "\0\0\0\0", 4);
	assert_int_equal(restore_copy(&lagging.fx, &bufs[0]), 0);
	assert_int_equal(lagging.restores, 1);
	struct vfs_attr a;
	assert_int_equal(store_lookup(lagging.fx.s, VFS_ROOT_INO, c.name, c.name_len, &a), 0);

	drop_snapshot(&leader.fx.fsm, &bufs, &n);
	store_close(leader.fx.s);
	store_close(lagging.fx.s);
	barrier_free(b1);
	barrier_free(b2);
}

/* ---- Restore steps ---- */

static int64_t apply_step(struct fx *f, uint8_t kind, uint64_t id, uint64_t len,
			  const uint8_t *hash, const uint8_t *data, size_t data_len)
{
	struct fsm_restore_step st = { .kind = kind, .id = id, .len = len, .data = data,
				       .data_len = data_len };
	if (hash != NULL)
		memcpy(st.hash, hash, FSM_RESTORE_HASH_LEN);
	struct raft_buffer entry;
	void *result = NULL;
	assert_int_equal(fsm_encode_restore(f->b, &st, &entry), 0);
	assert_int_equal(f->fsm.raft.apply(&f->fsm.raft, &entry, &result), 0);
	raft_free(entry.base);
	return fsm_result_unpack(result);
}

/* Sends DUMP in pieces of PIECE bytes, in order; returns END's answer. */
static int64_t restore_dump(struct fx *f, uint64_t id, const struct buf *dump, size_t piece,
			    bool swap_two)
{
	uint8_t hash[FSM_RESTORE_HASH_LEN];
	crypto_hash_sha256(hash, dump->data, dump->len);
	assert_int_equal(apply_step(f, FSM_RESTORE_BEGIN, id, dump->len, hash, NULL, 0), 0);
	size_t n = (dump->len + piece - 1) / piece;
	for (size_t i = 0; i < n; i++) {
		size_t k = swap_two && i < 2 ? 1 - i : i;
		size_t off = k * piece;
		size_t len = dump->len - off < piece ? dump->len - off : piece;
		assert_int_equal(apply_step(f, FSM_RESTORE_CHUNK, id, off, NULL,
					    dump->data + off, len), 0);
		/* Raft snapshots wait while a restore is being collected. */
		struct raft_buffer *bufs = NULL;
		unsigned nb = 0;
		assert_int_equal(f->fsm.raft.snapshot(&f->fsm.raft, &bufs, &nb), RAFT_BUSY);
	}
	return apply_step(f, FSM_RESTORE_END, id, 0, NULL, NULL, 0);
}

/* A restore through the log replaces the state; pieces out of order, a
 * wrong hash, an END of another restore or after an ABORT change nothing. */
static void test_restore_steps(void **state)
{
	(void)state;
	struct barrier *b = new_barrier();
	struct fx f, g;
	int64_t r;
	fx_open(&f, b);
	fx_open(&g, b);
	struct cmd c = create_cmd(&f, "in-the-backup");
	assert_int_equal(apply_cmd(&f, &c, &r), 0);
	struct buf dump;
	buf_init(&dump);
	assert_int_equal(store_dump(f.s, &dump), 0);
	struct cmd gc = create_cmd(&g, "only-in-g");
	assert_int_equal(apply_cmd(&g, &gc, &r), 0);
	struct vfs_attr a;

	assert_int_equal(restore_dump(&g, 7, &dump, 64, true), -EBADMSG);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, (const uint8_t *)"only-in-g", 9, &a), 0);
	assert_false(fsm_restore_active(&g.fsm, NULL));

	uint8_t zero[FSM_RESTORE_HASH_LEN] = { 0 };
	assert_int_equal(apply_step(&g, FSM_RESTORE_BEGIN, 8, dump.len, zero, NULL, 0), 0);
	assert_int_equal(apply_step(&g, FSM_RESTORE_CHUNK, 8, 0, NULL, dump.data, dump.len), 0);
	assert_int_equal(apply_step(&g, FSM_RESTORE_END, 8, 0, NULL, NULL, 0), -EBADMSG);
	assert_int_equal(apply_step(&g, FSM_RESTORE_END, 9, 0, NULL, NULL, 0), -ESTALE);

	assert_int_equal(apply_step(&g, FSM_RESTORE_BEGIN, 10, dump.len, zero, NULL, 0), 0);
	assert_true(fsm_restore_active(&g.fsm, NULL));
	assert_int_equal(apply_step(&g, FSM_RESTORE_ABORT, 10, 0, NULL, NULL, 0), 0);
	assert_false(fsm_restore_active(&g.fsm, NULL));
	assert_int_equal(apply_step(&g, FSM_RESTORE_END, 10, 0, NULL, NULL, 0), -ESTALE);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, (const uint8_t *)"only-in-g", 9, &a), 0);

	assert_int_equal(restore_dump(&g, 11, &dump, 64, false), 0);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, c.name, c.name_len, &a), 0);
	assert_int_equal(store_lookup(g.s, VFS_ROOT_INO, (const uint8_t *)"only-in-g", 9, &a),
			 -ENOENT);
	assert_int_equal(g.fatal_calls, 0);
	struct raft_buffer *bufs = NULL;
	unsigned nb = 0;
	take_snapshot(&g.fsm, &bufs, &nb);
	drop_snapshot(&g.fsm, &bufs, &nb);
	buf_free(&dump);
	fsm_free(&f.fsm);
	fsm_free(&g.fsm);
	store_close(f.s);
	store_close(g.s);
	barrier_free(b);
}

int main(void)
{
	if (crypto_global_init(true) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_tampered_entry),
		cmocka_unit_test(test_snapshot_restore),
		cmocka_unit_test(test_snapshot_point_in_time),
		cmocka_unit_test(test_rotation_entry),
		cmocka_unit_test(test_snapshot_carries_keys),
		cmocka_unit_test(test_restore_steps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
