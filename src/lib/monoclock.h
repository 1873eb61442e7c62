/* The monotonic clock (CLOCK_MONOTONIC), which deadlines, grants and
 * timeouts are counted on: it never jumps with the wall clock. */
#ifndef VAULTFS_LIB_MONOCLOCK_H
#define VAULTFS_LIB_MONOCLOCK_H

#include <stdint.h>

/* Now, in ns since an arbitrary start (boot). */
uint64_t monoclock_ns(void);

#endif
