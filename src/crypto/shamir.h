/* Shamir secret sharing of a 32-byte root key over GF(2^8) (libgfshare's
 * field, 0x11d: its shares combine here), in constant time.
 *
 * Share format (Vault's): the 32 y-bytes followed by one x-coordinate byte,
 * 33 bytes in all. x is random, non-zero and distinct among the N shares. */
#ifndef VAULTFS_CRYPTO_SHAMIR_H
#define VAULTFS_CRYPTO_SHAMIR_H

#include <stdint.h>

#define SHAMIR_SECRET_LEN 32u
#define SHAMIR_SHARE_LEN 33u
#define SHAMIR_MAX_SHARES 255u

/* Splits SECRET into N shares, any T of which reconstruct it
 * (2 <= T <= N <= 255, or T == N == 1). SHARES must hold N * 33 bytes.
 * Returns 0 or -EINVAL / -ENOMEM. */
int shamir_split(const uint8_t secret[SHAMIR_SECRET_LEN], unsigned n, unsigned t,
		 uint8_t *shares);

/* shamir_split with the x coordinates XS (N distinct, non-zero) and the
 * coefficients COEFFS ((T-1) * 32 bytes: degree 1's 32 bytes first, one per
 * secret byte) given rather than random: for known-answer tests. */
int shamir_split_with(const uint8_t secret[SHAMIR_SECRET_LEN], const uint8_t *xs, unsigned n,
		      unsigned t, const uint8_t *coeffs, uint8_t *shares);

/* Reconstructs the secret from K shares (K * 33 bytes). Returns 0, or
 * -EINVAL if K is 0, an x is 0 or two shares have the same x (SECRET is then
 * untouched), or -ENOMEM. With fewer
 * than T shares, or a corrupt share, the result is simply a wrong secret:
 * the caller detects that when the keyring fails to open. */
int shamir_combine(const uint8_t *shares, unsigned k, uint8_t secret[SHAMIR_SECRET_LEN]);

#endif
