/* Memory for key material: sodium_malloc'd (guard pages, excluded from core
 * dumps), mlock'ed unless disabled, wiped when freed. */
#ifndef VAULTFS_CRYPTO_SECMEM_H
#define VAULTFS_CRYPTO_SECMEM_H

#include <stdbool.h>
#include <stddef.h>

/* Must be called once before any other crypto function (sodium_init).
 * Returns 0 or -EIO. */
int crypto_global_init(bool disable_mlock);

/* Returns zeroed secure memory or NULL. */
void *secmem_alloc(size_t n);
/* Wipes and frees; NULL is fine. */
void secmem_free(void *p);
/* Wipes N bytes of any memory (sodium_memzero). */
void secmem_wipe(void *p, size_t n);

#endif
