/* Shared by the libFuzzer harnesses: invariant checks, quiet logging, a
 * deterministic random source, and the seed-writing mode.
 *
 * Seed mode: with VAULTFS_FUZZ_WRITE_SEEDS=DIR in the environment, a
 * harness writes valid inputs made with the project's own encoders into
 * DIR (from LLVMFuzzerInitialize) and exits, so the committed corpora in
 * tests/fuzz/corpus/<target>/ can be regenerated when a format changes:
 *   VAULTFS_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/msgcodec build-fuzz/tests/fuzz/fuzz_msgcodec
 */
#ifndef VAULTFS_TESTS_FUZZ_COMMON_H
#define VAULTFS_TESTS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The harness entry points (libFuzzer declares no header for them). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a finding: abort so that libFuzzer saves the input. */
#define FUZZ_CHECK(cond)                                                            \
	do {                                                                        \
		if (!(cond)) {                                                      \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__,  \
				__LINE__, #cond);                                   \
			abort();                                                    \
		}                                                                   \
	} while (0)

/* Silences the project's log (rejected inputs log an error each; that would
 * drown the fuzzer's output). VAULTFS_FUZZ_LOG=1 keeps it. */
void fuzz_quiet_log(void);

/* Installs a deterministic libsodium random source and then calls
 * crypto_global_init(true), so that keys made at start-up are the same in
 * every run (the store's seeds hold ciphertexts that must decrypt) and a
 * crash reproduces. Aborts on failure. */
void fuzz_crypto_init(void);


/* The seed directory when in seed mode, else NULL. */
const char *fuzz_seed_dir(void);
/* Writes one seed file DIR/NAME; aborts on failure. */
void fuzz_write_seed(const char *dir, const char *name, const void *data, size_t len);

#endif
