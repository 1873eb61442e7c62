#include "lib/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->err = 0;
}

void buf_free(struct buf *b)
{
	if (b->data != NULL) {
		explicit_bzero(b->data, b->cap);
		free(b->data);
	}
	buf_init(b);
}

void buf_clear(struct buf *b)
{
	if (b->data != NULL)
		explicit_bzero(b->data, b->len);
	b->len = 0;
	b->err = 0;
}

int buf_reserve(struct buf *b, size_t n)
{
	if (b->err != 0)
		return b->err;
	if (n <= b->cap - b->len)
		return 0;
	size_t need = b->len + n;
	if (need < b->len) {
		b->err = -ENOMEM;
		return b->err;
	}
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap * 2 < cap ? need : cap * 2;
	/* No realloc: the old block may hold secrets and must be wiped. */
	uint8_t *p = malloc(cap);
	if (p == NULL) {
		b->err = -ENOMEM;
		return b->err;
	}
	if (b->data != NULL) {
		memcpy(p, b->data, b->len);
		explicit_bzero(b->data, b->cap);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

uint8_t *buf_steal(struct buf *b, size_t *ret_len)
{
	uint8_t *p = b->data;
	*ret_len = b->len;
	buf_init(b);
	return p;
}

void buf_put_raw(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) != 0 || n == 0)
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put_le(struct buf *b, uint64_t v, unsigned width)
{
	uint8_t tmp[8];
	for (unsigned i = 0; i < width; i++)
		tmp[i] = (uint8_t)(v >> (8 * i));
	buf_put_raw(b, tmp, width);
}

void buf_put_u8(struct buf *b, uint8_t v) { put_le(b, v, 1); }
void buf_put_u16(struct buf *b, uint16_t v) { put_le(b, v, 2); }
void buf_put_u32(struct buf *b, uint32_t v) { put_le(b, v, 4); }
void buf_put_u64(struct buf *b, uint64_t v) { put_le(b, v, 8); }
void buf_put_i32(struct buf *b, int32_t v) { put_le(b, (uint32_t)v, 4); }
void buf_put_i64(struct buf *b, int64_t v) { put_le(b, (uint64_t)v, 8); }

void buf_put_blob(struct buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		b->err = -EOVERFLOW;
		return;
	}
	buf_put_u32(b, (uint32_t)n);
	buf_put_raw(b, p, n);
}

void cursor_init(struct cursor *c, const void *p, size_t n)
{
	c->p = p;
	c->left = n;
	c->err = 0;
}

const uint8_t *cursor_raw(struct cursor *c, size_t n)
{
	if (c->err != 0 || n > c->left) {
		c->err = -EBADMSG;
		return NULL;
	}
	const uint8_t *p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

static uint64_t get_le(struct cursor *c, unsigned width)
{
	const uint8_t *p = cursor_raw(c, width);
	uint64_t v = 0;
	if (p == NULL)
		return 0;
	for (unsigned i = 0; i < width; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint8_t cursor_u8(struct cursor *c) { return (uint8_t)get_le(c, 1); }
uint16_t cursor_u16(struct cursor *c) { return (uint16_t)get_le(c, 2); }
uint32_t cursor_u32(struct cursor *c) { return (uint32_t)get_le(c, 4); }
uint64_t cursor_u64(struct cursor *c) { return get_le(c, 8); }
int32_t cursor_i32(struct cursor *c) { return (int32_t)(uint32_t)get_le(c, 4); }
int64_t cursor_i64(struct cursor *c) { return (int64_t)get_le(c, 8); }

const uint8_t *cursor_blob(struct cursor *c, size_t max, size_t *ret_len)
{
	uint32_t n = cursor_u32(c);
	if (c->err == 0 && n > max)
		c->err = -EBADMSG;
	const uint8_t *p = cursor_raw(c, n);
	*ret_len = p != NULL ? n : 0;
	return p;
}

int cursor_done(const struct cursor *c)
{
	if (c->err != 0)
		return c->err;
	return c->left == 0 ? 0 : -EBADMSG;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->err = b->err != 0 ? b->err : -EINVAL;
		return;
	}
	/* Room for vsnprintf's NUL, which is not kept. */
	if (buf_reserve(b, (size_t)n + 1) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}
