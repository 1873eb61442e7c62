/* Unit tests of src/lib/histogram.c: bucket edges and the exposition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/histogram.h"

static char *text_of(const struct histogram *h, const char *labels, struct buf *b)
{
	buf_init(b);
	histogram_write(h, "t_seconds", labels, b);
	buf_put_u8(b, 0);
	assert_int_equal(b->err, 0);
	return (char *)b->data;
}

/* A value on a bucket's bound counts in that bucket (le: less or equal),
 * buckets are cumulative, and the sum is in seconds. */
static void test_buckets_and_sum(void **state)
{
	(void)state;
	struct histogram h;
	memset(&h, 0, sizeof(h));
	histogram_observe(&h, 100000);	   /* 100 us: the first bucket */
	histogram_observe(&h, 100001);	   /* just above: the second */
	histogram_observe(&h, 2000000000); /* 2 s */
	histogram_observe(&h, 20000000000u); /* 20 s: only +Inf */
	struct buf b;
	char *t = text_of(&h, "", &b);
	assert_non_null(strstr(t, "t_seconds_bucket{le=\"0.0001\"} 1\n"));
	assert_non_null(strstr(t, "t_seconds_bucket{le=\"0.00025\"} 2\n"));
	assert_non_null(strstr(t, "t_seconds_bucket{le=\"1\"} 2\n"));
	assert_non_null(strstr(t, "t_seconds_bucket{le=\"2.5\"} 3\n"));
	assert_non_null(strstr(t, "t_seconds_bucket{le=\"10\"} 3\n"));
	assert_non_null(strstr(t, "t_seconds_bucket{le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(t, "t_seconds_sum 22.000200001\n"));
	assert_non_null(strstr(t, "t_seconds_count 4\n"));
	buf_free(&b);
}

static void test_labels(void **state)
{
	(void)state;
	struct histogram h;
	memset(&h, 0, sizeof(h));
	histogram_observe(&h, 1);
	struct buf b;
	char *t = text_of(&h, "kind=\"read\"", &b);
	assert_non_null(strstr(t, "t_seconds_bucket{kind=\"read\",le=\"0.0001\"} 1\n"));
	assert_non_null(strstr(t, "t_seconds_sum{kind=\"read\"} 0.000000001\n"));
	assert_non_null(strstr(t, "t_seconds_count{kind=\"read\"} 1\n"));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets_and_sum),
		cmocka_unit_test(test_labels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
