#include "crypto/secmem.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

/* Set once by crypto_global_init, before any thread allocates. */
static bool secmem_no_mlock;

int crypto_global_init(bool disable_mlock)
{
	/* sodium_init returns 1 when already initialised: not an error. */
	if (sodium_init() < 0)
		return -EIO;
	secmem_no_mlock = disable_mlock;
	return 0;
}

void *secmem_alloc(size_t n)
{
	/* sodium_malloc mlocks best-effort and fills with 0xdb; the contract is
	 * zeroed memory. It refuses n == 0 on some builds, so round up. */
	size_t len = n != 0 ? n : 1;
	void *p = sodium_malloc(len);
	if (p == NULL)
		return NULL;
	if (secmem_no_mlock)
		sodium_munlock(p, len); /* also zeroes; guard pages stay */
	else
		sodium_memzero(p, len);
	return p;
}

void secmem_free(void *p)
{
	/* sodium_free wipes, unlocks and unmaps; it accepts NULL. */
	sodium_free(p);
}

void secmem_wipe(void *p, size_t n)
{
	if (p != NULL)
		sodium_memzero(p, n);
}
