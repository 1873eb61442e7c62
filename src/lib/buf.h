/* Growable byte buffers and bounds-checked little-endian codecs.
 *
 * Every wire and disk format in vaultfs is written with struct buf and read
 * with struct cursor, so that no decoder does its own pointer arithmetic.
 * Buffers may hold secrets: buf_free() always wipes the memory first. */
#ifndef VAULTFS_LIB_BUF_H
#define VAULTFS_LIB_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Writer. A failed allocation sets err = -ENOMEM; later puts are no-ops, so
 * callers check err once after a sequence of puts. */
struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	int err;
};

void buf_init(struct buf *b);
/* Wipes and frees the contents; the struct is left empty and reusable. */
void buf_free(struct buf *b);
/* Wipes the contents and sets len to 0, keeping the allocation. */
void buf_clear(struct buf *b);
/* Ensures room for n more bytes; returns 0 or -ENOMEM (and sets err). */
int buf_reserve(struct buf *b, size_t n);
/* Hands the data to the caller (who frees it with free()); b is left empty. */
uint8_t *buf_steal(struct buf *b, size_t *ret_len);

void buf_put_u8(struct buf *b, uint8_t v);
void buf_put_u16(struct buf *b, uint16_t v);
void buf_put_u32(struct buf *b, uint32_t v);
void buf_put_u64(struct buf *b, uint64_t v);
void buf_put_i32(struct buf *b, int32_t v);
void buf_put_i64(struct buf *b, int64_t v);
/* Raw bytes, no length prefix. */
void buf_put_raw(struct buf *b, const void *p, size_t n);
/* u32 length prefix, then the bytes. */
void buf_put_blob(struct buf *b, const void *p, size_t n);
/* printf-formatted text, no terminating NUL (text files: status, metrics). */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reader over borrowed memory. Reading past the end sets err = -EBADMSG and
 * returns zeros/NULL; callers check err once at the end (cursor_done). */
struct cursor {
	const uint8_t *p;
	size_t left;
	int err;
};

void cursor_init(struct cursor *c, const void *p, size_t n);
uint8_t cursor_u8(struct cursor *c);
uint16_t cursor_u16(struct cursor *c);
uint32_t cursor_u32(struct cursor *c);
uint64_t cursor_u64(struct cursor *c);
int32_t cursor_i32(struct cursor *c);
int64_t cursor_i64(struct cursor *c);
/* Returns a pointer to the next n bytes inside the input, or NULL. */
const uint8_t *cursor_raw(struct cursor *c, size_t n);
/* Reads a u32-length-prefixed blob of at most max bytes; points into input.
 * A longer blob sets err = -EBADMSG. */
const uint8_t *cursor_blob(struct cursor *c, size_t max, size_t *ret_len);
/* 0 if everything was read without error and nothing is left over,
 * else -EBADMSG. */
int cursor_done(const struct cursor *c);

#endif
