/* Unit tests for the control files' write parsers (node/ctl_parse.h):
 * accepted forms give the right values, everything else -EINVAL with the
 * outputs left untouched. Inputs are byte strings, as write() hands them
 * over: string literals here may hold NULs, hence the S() lengths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "node/ctl_parse.h"

/* A literal's bytes and length, embedded NULs included. */
#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* ---- init ---- */

static void init_ok(const uint8_t *in, size_t len, unsigned shares, unsigned threshold)
{
	unsigned s = 0, t = 0;
	assert_int_equal(ctl_parse_init(in, len, &s, &t), 0);
	assert_int_equal(s, shares);
	assert_int_equal(t, threshold);
}

static void init_bad(const uint8_t *in, size_t len)
{
	unsigned s = 77, t = 88;
	assert_int_equal(ctl_parse_init(in, len, &s, &t), -EINVAL);
	assert_int_equal(s, 77);
	assert_int_equal(t, 88);
}

static void test_init_defaults(void **state)
{
	(void)state;
	init_ok(NULL, 0, 5, 3);
	init_ok(S("\n"), 5, 3);
	init_ok(S(" \t\r\n "), 5, 3);
	/* A missing field takes its default; threshold is capped by shares. */
	init_ok(S("shares=7"), 7, 3);
	init_ok(S("shares=3"), 3, 3);
	init_ok(S("shares=2"), 2, 2);
	init_ok(S("shares=1"), 1, 1);
	init_ok(S("threshold=2"), 5, 2);
	init_ok(S("threshold=5"), 5, 5);
	init_bad(S("threshold=6"));
}

static void test_init_fields(void **state)
{
	(void)state;
	init_ok(S("shares=5 threshold=3"), 5, 3);
	init_ok(S("threshold=4 shares=9"), 9, 4);
	init_ok(S("shares=255 threshold=255"), 255, 255);
	init_ok(S("shares=255 threshold=2"), 255, 2);
	init_ok(S("shares=1 threshold=1"), 1, 1);
	init_ok(S("shares=2 threshold=2"), 2, 2);
	init_ok(S("shares=007 threshold=02"), 7, 2);
	/* A repeated field keeps its last value. */
	init_ok(S("shares=3 shares=7"), 7, 3);
	init_ok(S("threshold=2 shares=6 threshold=4"), 6, 4);
	init_bad(S("shares=9 threshold=4 shares=3"));
}

static void test_init_whitespace(void **state)
{
	(void)state;
	init_ok(S("shares=5 threshold=3\n"), 5, 3);
	init_ok(S("  shares=6\tthreshold=2\r\n"), 6, 2);
	init_ok(S("shares=6\n\nthreshold=2\n"), 6, 2);
	init_ok(S("\t\tthreshold=2   shares=4 \t"), 4, 2);
	/* Spaces belong between fields, not inside them. */
	init_bad(S("shares = 5"));
	init_bad(S("shares= 5"));
	init_bad(S("shares =5"));
}

static void test_init_range(void **state)
{
	(void)state;
	init_bad(S("shares=0"));
	init_bad(S("shares=0 threshold=0"));
	init_bad(S("threshold=0"));
	init_bad(S("shares=256"));
	init_bad(S("shares=256 threshold=3"));
	init_bad(S("shares=5 threshold=256"));
	init_bad(S("shares=1000"));
	init_bad(S("shares=18446744073709551616")); /* ERANGE */
	init_bad(S("shares=-1"));
	init_bad(S("shares=3 threshold=4"));
	init_bad(S("shares=2 threshold=3"));
	/* One share must not open a vault split into several. */
	init_bad(S("shares=2 threshold=1"));
	init_bad(S("shares=5 threshold=1"));
	init_bad(S("shares=255 threshold=1"));
}

static void test_init_garbage(void **state)
{
	(void)state;
	init_bad(S("shares"));
	init_bad(S("shares="));
	init_bad(S("shares=x"));
	init_bad(S("shares=5x"));
	init_bad(S("shares=0x5"));
	init_bad(S("shares=5.0"));
	init_bad(S("Shares=5"));
	init_bad(S("SHARES=5"));
	init_bad(S("share=5"));
	init_bad(S("sharesx=5"));
	init_bad(S("shares=5,threshold=3"));
	init_bad(S("shares=5;threshold=3"));
	init_bad(S("shares==5"));
	init_bad(S("=5"));
	init_bad(S("keys=5"));
	init_bad(S("shares=5 threshold=3 extra"));
	init_bad(S("5 3"));
	init_bad(S("\xff\xfe"));
}

/* A NUL used to end the text early, so the fields after it were dropped
 * (tests/fuzz/crashes/ctl_parse-init-nul-truncates). */
static void test_init_nul(void **state)
{
	(void)state;
	init_bad(S("\0"));
	init_bad(S("\0\0\n"));
	init_bad(S("shares=5\0"));
	init_bad(S("shares=5 threshold=3\0\n"));
	init_bad(S("shares=1\0 shares=9"));
	init_bad(S("shares=9\0threshold=9"));
	init_bad(S("shares=1\0""0"));
}

static void test_init_overlong(void **state)
{
	(void)state;
	uint8_t in[CTL_PARSE_INIT_MAX + 2];
	/* Padding counts: the limit is on the write, not on its fields. */
	memset(in, ' ', sizeof(in));
	memcpy(in, "shares=6", 8);
	init_ok(in, CTL_PARSE_INIT_MAX, 6, 3);
	init_bad(in, CTL_PARSE_INIT_MAX + 1);
	init_bad(in, sizeof(in));
	memset(in, '0', sizeof(in));
	memcpy(in, "shares=", 7);
	init_bad(in, CTL_PARSE_INIT_MAX + 1);
	in[CTL_PARSE_INIT_MAX - 1] = '4'; /* shares=000...04 */
	init_ok(in, CTL_PARSE_INIT_MAX, 4, 3);
}

/* ---- unseal: trim and reset ---- */

static void trims_to(const uint8_t *in, size_t len, const uint8_t *want, size_t want_len)
{
	const uint8_t *p = in;
	size_t n = len;
	ctl_parse_trim(&p, &n);
	assert_int_equal(n, want_len);
	assert_memory_equal(p, want, n);
	assert_true(p >= in && p + n <= in + len);
}

static void test_trim(void **state)
{
	(void)state;
	trims_to(S(""), S(""));
	trims_to(S(" \t\n\v\f\r"), S(""));
	trims_to(S("abc"), S("abc"));
	trims_to(S("  a b\n"), S("a b"));
	trims_to(S("\v\fkey\r\n"), S("key"));
	trims_to(S(" \0key\0 "), S("\0key\0")); /* NUL is not whitespace */
	trims_to(S("\xa0x\x85"), S("\xa0x\x85")); /* nor are Latin-1 spaces */
	const uint8_t *p = NULL;
	size_t n = 0;
	ctl_parse_trim(&p, &n);
	assert_null(p);
	assert_int_equal(n, 0);
}

static void test_is_reset(void **state)
{
	(void)state;
	assert_true(ctl_parse_is_reset(S("reset")));
	assert_true(ctl_parse_is_reset(S("reset\n")));
	assert_true(ctl_parse_is_reset(S(" \treset\r\n\v\f")));
	assert_false(ctl_parse_is_reset(NULL, 0));
	assert_false(ctl_parse_is_reset(S("\n")));
	assert_false(ctl_parse_is_reset(S("rese")));
	assert_false(ctl_parse_is_reset(S("resets")));
	assert_false(ctl_parse_is_reset(S("RESET")));
	assert_false(ctl_parse_is_reset(S("re set")));
	assert_false(ctl_parse_is_reset(S("reset now")));
	assert_false(ctl_parse_is_reset(S("reset\0")));
	assert_false(ctl_parse_is_reset(S("\0reset")));
}

/* ---- join ---- */

static void join_ok(const uint8_t *in, size_t len, const char *want)
{
	char out[301];
	memset(out, 'Z', sizeof(out));
	assert_int_equal(ctl_parse_join_addr(in, len, out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void join_bad(const uint8_t *in, size_t len)
{
	char out[301], before[301];
	memset(out, 'Z', sizeof(out));
	memcpy(before, out, sizeof(out));
	assert_int_equal(ctl_parse_join_addr(in, len, out, sizeof(out)), -EINVAL);
	assert_memory_equal(out, before, sizeof(out));
}

static void test_join_forms(void **state)
{
	(void)state;
	join_ok(S("127.0.0.1:8201"), "127.0.0.1:8201");
	join_ok(S("http://127.0.0.1:8201"), "127.0.0.1:8201");
	join_ok(S("http://127.0.0.1:8201/"), "127.0.0.1:8201");
	join_ok(S("127.0.0.1:8201/"), "127.0.0.1:8201");
	join_ok(S("http://vault-1.example.com:443/"), "vault-1.example.com:443");
	join_ok(S("localhost:1"), "localhost:1");
	join_ok(S("[::1]:8201"), "[::1]:8201");
	join_ok(S("http://[fe80::1]:8201/"), "[fe80::1]:8201");
	/* A Raft address, as in the peers file. */
	join_ok(S("node1@127.0.0.1:8201"), "node1@127.0.0.1:8201");
	/* Host and port are the transport's to check when it dials. */
	join_ok(S("h:"), "h:");
	join_ok(S(":1"), ":1");
}

static void test_join_whitespace(void **state)
{
	(void)state;
	join_ok(S("127.0.0.1:8201\n"), "127.0.0.1:8201");
	join_ok(S("  http://127.0.0.1:8201/ \r\n"), "127.0.0.1:8201");
	join_ok(S("\thttp://h:1\v\f"), "h:1");
	join_bad(S(""));
	join_bad(S(" \n"));
}

static void test_join_bad(void **state)
{
	(void)state;
	join_bad(S("127.0.0.1"));
	join_bad(S("localhost"));
	join_bad(S("http://localhost"));
	join_bad(S("http://"));
	join_bad(S("https://"));
	join_bad(S("http:///"));
	join_bad(S("/"));
	join_bad(S("h:1//"));
	join_bad(S("h:1/v1/sys"));
	join_bad(S("ftp://h:1"));
	join_bad(S("HTTP://h:1"));
	join_bad(S("http:/h:1"));
	join_bad(S("//h:1"));
	join_bad(S("h\0:1"));
	join_bad(S("h:1\0"));
	join_bad(S("\0h:1"));
}

/* Whitespace or control bytes inside used to be kept, so that a newline
 * went into the join file and the log (tests/fuzz/crashes/
 * ctl_parse-join-newline-inside). */
static void test_join_inner_whitespace(void **state)
{
	(void)state;
	join_bad(S("h :1"));
	join_bad(S("h: 1"));
	join_bad(S("h:1 /"));
	join_bad(S("http:// h:1"));
	join_bad(S("http://\th:1/\n"));
	join_bad(S("node2\n127.0.0.1:8201"));
	join_bad(S("h:1\r\nx"));
	join_bad(S("h\x01:1"));
	join_bad(S("h\x1b[2J:1"));
	join_bad(S("h:1\x7f"));
	/* Bytes above ASCII are the resolver's to refuse. */
	join_ok(S("h\xc3\xa9:1"), "h\xc3\xa9:1");
}

/* The cluster port speaks vaultfs's own encrypted protocol, not TLS:
 * "https://" used to be accepted (and stripped) as if it did. */
static void test_join_no_https(void **state)
{
	(void)state;
	join_bad(S("https://127.0.0.1:8201"));
	join_bad(S("https://vault-1.example.com:443/"));
	join_bad(S("https://[::1]:8201"));
	join_bad(S("https://node1@127.0.0.1:8201"));
	join_bad(S("\thttps://h:1\v\f"));
	/* A host named https is a host like any other. */
	join_ok(S("https:1"), "https:1");
}

/* Both schemes used to be stripped in a row
 * (tests/fuzz/crashes/ctl_parse-join-two-schemes). */
static void test_join_one_scheme(void **state)
{
	(void)state;
	join_bad(S("http://https://h:1"));
	join_bad(S("http://https://:@/"));
	join_bad(S("https://http://h:1"));
	join_bad(S("http://http://h:1"));
	join_ok(S("http://https:1"), "https:1");
	join_ok(S("http://http:1/"), "http:1");
}

static void test_join_overlong(void **state)
{
	(void)state;
	uint8_t in[8 + 301];
	char out[301];
	/* 300 characters fit in 301 bytes with the NUL; 301 do not. */
	memset(in, 'a', sizeof(in));
	in[1] = ':';
	assert_int_equal(ctl_parse_join_addr(in, 300, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 300);
	join_bad(in, 301);
	/* Scheme and slash do not count. */
	memcpy(in, "http://a:", 9);
	in[7 + 300] = '/';
	assert_int_equal(ctl_parse_join_addr(in, 7 + 300 + 1, out, sizeof(out)), 0);
	assert_int_equal(strlen(out), 300);
	assert_memory_equal(out, "a:aaa", 5);
	/* OUT_LEN is respected whatever it is. */
	assert_int_equal(ctl_parse_join_addr(S("h:1"), out, 4), 0);
	assert_string_equal(out, "h:1");
	memset(out, 'Z', sizeof(out));
	assert_int_equal(ctl_parse_join_addr(S("h:1"), out, 3), -EINVAL);
	assert_int_equal(ctl_parse_join_addr(S("h:1"), out, 0), -EINVAL);
	assert_int_equal(out[0], 'Z');
}

/* ---- remove-peer ---- */

static void node_id_ok(const uint8_t *in, size_t len, const char *want)
{
	char id[CTL_PARSE_NODE_ID_MAX + 1];
	memset(id, 'Z', sizeof(id));
	assert_int_equal(ctl_parse_node_id(in, len, id), 0);
	assert_string_equal(id, want);
}

static void node_id_bad(const uint8_t *in, size_t len)
{
	char id[CTL_PARSE_NODE_ID_MAX + 1];
	memset(id, 'Z', sizeof(id));
	assert_int_equal(ctl_parse_node_id(in, len, id), -EINVAL);
	for (size_t i = 0; i < sizeof(id); i++)
		assert_int_equal(id[i], 'Z');
}

static void test_node_id(void **state)
{
	(void)state;
	node_id_ok(S("node1"), "node1");
	node_id_ok(S("node2\n"), "node2");
	node_id_ok(S(" \tNode_3.a-b\r\n"), "Node_3.a-b");
	node_id_bad(NULL, 0);
	node_id_bad(S(""));
	node_id_bad(S(" \n"));
	node_id_bad(S("node\0""1"));
	node_id_bad(S("node1\0"));
	node_id_bad(S("\0"));

	uint8_t in[CTL_PARSE_NODE_ID_MAX + 3];
	memset(in, 'n', sizeof(in));
	in[0] = ' ';
	in[CTL_PARSE_NODE_ID_MAX + 1] = '\n';
	char id[CTL_PARSE_NODE_ID_MAX + 1];
	assert_int_equal(ctl_parse_node_id(in, CTL_PARSE_NODE_ID_MAX + 2, id), 0);
	assert_int_equal(strlen(id), CTL_PARSE_NODE_ID_MAX);
	memset(in, 'n', sizeof(in));
	node_id_bad(in, CTL_PARSE_NODE_ID_MAX + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_defaults),
		cmocka_unit_test(test_init_fields),
		cmocka_unit_test(test_init_whitespace),
		cmocka_unit_test(test_init_range),
		cmocka_unit_test(test_init_garbage),
		cmocka_unit_test(test_init_nul),
		cmocka_unit_test(test_init_overlong),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_is_reset),
		cmocka_unit_test(test_join_forms),
		cmocka_unit_test(test_join_whitespace),
		cmocka_unit_test(test_join_bad),
		cmocka_unit_test(test_join_inner_whitespace),
		cmocka_unit_test(test_join_no_https),
		cmocka_unit_test(test_join_one_scheme),
		cmocka_unit_test(test_join_overlong),
		cmocka_unit_test(test_node_id),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
