/* Unseal key shares as users see them, and the collection of shares until
 * the threshold is reached. */
#ifndef VAULTFS_CRYPTO_SEAL_H
#define VAULTFS_CRYPTO_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/shamir.h"

/* Base64 (standard alphabet, padded) of a 33-byte share is 44 characters. */
#define SEAL_SHARE_TEXT_LEN 44u

/* Writes the base64 text of SHARE plus a NUL into OUT (>= 45 bytes). A
 * shorter OUT gets an empty string. */
void seal_share_encode(const uint8_t share[SHAMIR_SHARE_LEN], char *out, size_t out_len);

/* Parses user input: leading/trailing whitespace trimmed, then exactly one
 * base64 share of 33 bytes with a non-zero x. Returns 0 or -EINVAL (SHARE is
 * then zeroed). */
int seal_share_decode(const char *text, size_t len, uint8_t share[SHAMIR_SHARE_LEN]);

/* Shares collected so far, in secure memory. */
struct unsealer;

/* Returns 0 or -ENOMEM / -EINVAL (threshold 0 or > 255). */
int unsealer_new(struct unsealer **ret, unsigned threshold);
void unsealer_free(struct unsealer *u); /* wipes; NULL is fine */

/* Adds one share. Returns the number collected, or -EEXIST if a share with
 * the same x was already given (progress unchanged). Also -EINVAL for x == 0
 * and -ENOSPC if THRESHOLD shares are already held (combine, then reset). */
int unsealer_add(struct unsealer *u, const uint8_t share[SHAMIR_SHARE_LEN]);
unsigned unsealer_count(const struct unsealer *u);
unsigned unsealer_threshold(const struct unsealer *u);

/* With count == threshold, combines the shares into ROOT_KEY (secure memory
 * of the caller). Returns 0, or -EAGAIN if not enough shares yet (or
 * -ENOMEM). Does not reset: the caller resets after trying the key. */
int unsealer_combine(const struct unsealer *u, uint8_t root_key[SHAMIR_SECRET_LEN]);

/* Wipes the collected shares. */
void unsealer_reset(struct unsealer *u);

#endif
