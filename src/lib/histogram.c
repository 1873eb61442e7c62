#include "lib/histogram.h"

#include <inttypes.h>
#include <stdio.h>

/* Upper bounds in ns, and as Prometheus's le label. */
static const uint64_t histogram_le_ns[HISTOGRAM_BUCKETS] = {
	100000,	   250000,    500000,	 1000000,    2500000,	 5000000,    10000000,	25000000,
	50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 10000000000,
};
static const char *const histogram_le[HISTOGRAM_BUCKETS] = {
	"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
	"0.05",	  "0.1",     "0.25",   "0.5",	"1",	  "2.5",   "10",
};

void histogram_observe(struct histogram *h, uint64_t ns)
{
	unsigned i = 0;
	while (i < HISTOGRAM_BUCKETS && ns > histogram_le_ns[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum_ns += ns;
}

static void histogram_line(struct buf *out, const char *name, const char *suffix,
			   const char *labels, const char *le, const char *value)
{
	if (le != NULL)
		buf_printf(out, "%s%s{%s%sle=\"%s\"} %s\n", name, suffix, labels,
			   labels[0] != '\0' ? "," : "", le, value);
	else if (labels[0] != '\0')
		buf_printf(out, "%s%s{%s} %s\n", name, suffix, labels, value);
	else
		buf_printf(out, "%s%s %s\n", name, suffix, value);
}

void histogram_write(const struct histogram *h, const char *name, const char *labels,
		     struct buf *out)
{
	char value[32];
	uint64_t cumulative = 0;
	for (unsigned i = 0; i <= HISTOGRAM_BUCKETS; i++) {
		cumulative += h->counts[i];
		snprintf(value, sizeof(value), "%" PRIu64, cumulative);
		histogram_line(out, name, "_bucket", labels,
			       i < HISTOGRAM_BUCKETS ? histogram_le[i] : "+Inf", value);
	}
	snprintf(value, sizeof(value), "%" PRIu64 ".%09" PRIu64, h->sum_ns / 1000000000u,
		 h->sum_ns % 1000000000u);
	histogram_line(out, name, "_sum", labels, NULL, value);
	snprintf(value, sizeof(value), "%" PRIu64, h->count);
	histogram_line(out, name, "_count", labels, NULL, value);
}
