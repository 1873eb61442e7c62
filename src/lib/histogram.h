/* A latency histogram in Prometheus's shape: fixed buckets (seconds, from
 * 100 us to 10 s), a count and a sum, written in the text exposition
 * format. Not thread-safe. */
#ifndef VAULTFS_LIB_HISTOGRAM_H
#define VAULTFS_LIB_HISTOGRAM_H

#include <stdint.h>

#include "lib/buf.h"

#define HISTOGRAM_BUCKETS 15u

struct histogram {
	uint64_t counts[HISTOGRAM_BUCKETS + 1]; /* per bucket; the last: +Inf */
	uint64_t count;
	uint64_t sum_ns;
};

void histogram_observe(struct histogram *h, uint64_t ns);
/* Appends NAME's _bucket, _sum and _count lines, each with LABELS (e.g.
 * "op=\"read\"", or "" for none) before le. No # HELP or # TYPE lines. */
void histogram_write(const struct histogram *h, const char *name, const char *labels,
		     struct buf *out);

#endif
