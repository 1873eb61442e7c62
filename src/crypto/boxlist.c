#include "crypto/boxlist.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>


_Static_assert(CHANNEL_ID_LEN == crypto_box_PUBLICKEYBYTES, "identities are X25519 keys");
_Static_assert(CHANNEL_ID_LEN == crypto_box_SECRETKEYBYTES, "identities are X25519 keys");

int boxlist_encode(const uint8_t *pt, size_t len, const uint8_t (*ids)[CHANNEL_ID_LEN], size_t n,
		   struct buf *out)
{
	if (n > BOXLIST_MAX_RECIPIENTS || len > BOXLIST_MAX_PLAINTEXT)
		return -EINVAL;
	size_t box_len = len + crypto_box_SEALBYTES;
	if (buf_reserve(out, 4 + n * (CHANNEL_ID_LEN + 4 + box_len)) < 0)
		return -ENOMEM;
	buf_put_u32(out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		buf_put_raw(out, ids[i], CHANNEL_ID_LEN);
		buf_put_u32(out, (uint32_t)box_len);
		if (crypto_box_seal(out->data + out->len, pt, len, ids[i]) != 0)
			return -EINVAL; /* not a valid public key */
		out->len += box_len;
	}
	return out->err;
}

int boxlist_open(const uint8_t *p, size_t len, const struct channel_identity *me,
		 struct buf *out)
{
	struct cursor c;
	cursor_init(&c, p, len);
	uint32_t n = cursor_u32(&c);
	if (n > BOXLIST_MAX_RECIPIENTS)
		return -EBADMSG;
	const uint8_t *mine = NULL;
	size_t mine_len = 0;
	for (uint32_t i = 0; i < n && c.err == 0; i++) {
		const uint8_t *id = cursor_raw(&c, CHANNEL_ID_LEN);
		size_t box_len = 0;
		const uint8_t *box =
			cursor_blob(&c, BOXLIST_MAX_PLAINTEXT + crypto_box_SEALBYTES, &box_len);
		if (c.err == 0 && memcmp(id, me->pk, CHANNEL_ID_LEN) == 0) {
			mine = box;
			mine_len = box_len;
		}
	}
	if (cursor_done(&c) != 0)
		return -EBADMSG;
	if (mine == NULL)
		return -ENOENT;
	if (mine_len < crypto_box_SEALBYTES)
		return -EBADMSG;
	size_t pt_len = mine_len - crypto_box_SEALBYTES;
	if (buf_reserve(out, pt_len + 1) < 0)
		return -ENOMEM;
	if (crypto_box_seal_open(out->data + out->len, mine, mine_len, me->pk, me->sk) != 0)
		return -EBADMSG;
	out->len += pt_len;
	return 0;
}
