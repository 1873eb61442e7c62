#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

#include "crypto/secmem.h"
#include "lib/log.h"

void fuzz_quiet_log(void)
{
	const char *v = getenv("VAULTFS_FUZZ_LOG");
	if (v == NULL || strcmp(v, "1") != 0)
		log_set_level((enum log_level)(LOG_LEVEL_ERROR + 1));
}

/* ChaCha20 keystream under a fixed key, one block of calls per counter
 * value: randombytes_buf_deterministic is libsodium's own expansion. */
static uint64_t fuzz_rng_counter;

static void fuzz_rng_buf(void *const out, const size_t len)
{
	uint8_t seed[randombytes_SEEDBYTES];
	memset(seed, 0x5a, sizeof(seed));
	memcpy(seed, &fuzz_rng_counter, sizeof(fuzz_rng_counter));
	fuzz_rng_counter++;
	randombytes_buf_deterministic(out, len, seed);
}

static uint32_t fuzz_rng_random(void)
{
	uint32_t v;
	fuzz_rng_buf(&v, sizeof(v));
	return v;
}

static const char *fuzz_rng_name(void)
{
	return "vaultfs-fuzz-deterministic";
}

static struct randombytes_implementation fuzz_rng = {
	.implementation_name = fuzz_rng_name,
	.random = fuzz_rng_random,
	.stir = NULL,
	.uniform = NULL, /* libsodium derives it from random() */
	.buf = fuzz_rng_buf,
	.close = NULL,
};

void fuzz_crypto_init(void)
{
	/* Must precede sodium_init (inside crypto_global_init). */
	if (randombytes_set_implementation(&fuzz_rng) != 0 || crypto_global_init(true) != 0) {
		fprintf(stderr, "fuzz: cannot initialise libsodium\n");
		abort();
	}
}

const char *fuzz_seed_dir(void)
{
	const char *d = getenv("VAULTFS_FUZZ_WRITE_SEEDS");
	return d != NULL && d[0] != '\0' ? d : NULL;
}

void fuzz_write_seed(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];
	int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		fprintf(stderr, "fuzz: seed path too long: %s/%s\n", dir, name);
		abort();
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
		abort();
	}
	const uint8_t *p = data;
	size_t left = len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
			abort();
		}
		p += w;
		left -= (size_t)w;
	}
	if (close(fd) != 0) {
		fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
		abort();
	}
	printf("seed %s (%zu bytes)\n", path, len);
}
