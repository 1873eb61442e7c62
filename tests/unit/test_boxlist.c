/* Box lists: only the identities a list was made for can open it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/boxlist.h"

static const char secret[] = "term 7 key, thirty-two bytes...";

static void make_list(const struct channel_identity *ids, size_t n, struct buf *out)
{
	uint8_t pks[4][CHANNEL_ID_LEN];
	for (size_t i = 0; i < n; i++)
		memcpy(pks[i], ids[i].pk, CHANNEL_ID_LEN);
	buf_init(out);
	assert_int_equal(boxlist_encode((const uint8_t *)secret, sizeof secret,
					(const uint8_t(*)[CHANNEL_ID_LEN])pks, n, out),
			 0);
}

static void test_recipients_open_others_do_not(void **state)
{
	(void)state;
	struct channel_identity ids[3];
	for (int i = 0; i < 3; i++)
		channel_identity_generate(&ids[i]);
	struct buf list, pt;
	make_list(ids, 2, &list);
	assert_null(memmem(list.data, list.len, secret, 8));
	for (int i = 0; i < 2; i++) {
		buf_init(&pt);
		assert_int_equal(boxlist_open(list.data, list.len, &ids[i], &pt), 0);
		assert_int_equal(pt.len, sizeof secret);
		assert_memory_equal(pt.data, secret, sizeof secret);
		buf_free(&pt);
	}
	/* Not a recipient: nothing to open. */
	buf_init(&pt);
	assert_int_equal(boxlist_open(list.data, list.len, &ids[2], &pt), -ENOENT);
	/* Claiming a recipient's public key without its secret key fails. */
	struct channel_identity thief = ids[2];
	memcpy(thief.pk, ids[0].pk, CHANNEL_ID_LEN);
	assert_int_equal(boxlist_open(list.data, list.len, &thief, &pt), -EBADMSG);
	assert_int_equal(pt.len, 0);
	buf_free(&pt);
	buf_free(&list);
}

static void test_malformed(void **state)
{
	(void)state;
	struct channel_identity id;
	channel_identity_generate(&id);
	struct buf list, pt;
	make_list(&id, 1, &list);
	buf_init(&pt);
	for (size_t cut = 0; cut < list.len; cut += 7)
		assert_int_equal(boxlist_open(list.data, cut, &id, &pt), -EBADMSG);
	/* A flipped bit in the box. */
	list.data[list.len - 3] ^= 1;
	assert_int_equal(boxlist_open(list.data, list.len, &id, &pt), -EBADMSG);
	/* A count far beyond the limit. */
	list.data[3] = 0x7f;
	assert_int_equal(boxlist_open(list.data, list.len, &id, &pt), -EBADMSG);
	buf_free(&list);
	/* Too many recipients to make. */
	uint8_t pks[BOXLIST_MAX_RECIPIENTS + 1][CHANNEL_ID_LEN];
	memset(pks, 9, sizeof pks);
	buf_init(&list);
	assert_int_equal(boxlist_encode((const uint8_t *)"x", 1,
					(const uint8_t(*)[CHANNEL_ID_LEN])pks,
					BOXLIST_MAX_RECIPIENTS + 1, &list),
			 -EINVAL);
	buf_free(&list);
	buf_free(&pt);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recipients_open_others_do_not),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
