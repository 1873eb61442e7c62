/* Unit tests for Raft addresses (raft/raftaddr.h): what members announce
 * and what MEMBERS answers and JOIN requests carry, so every malformed
 * form must be refused rather than half-read. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "raft/raftaddr.h"

static const uint8_t id_a[CHANNEL_ID_LEN] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
	0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87, 0x78, 0x69, 0x5a, 0x4b, 0x3c, 0x2d, 0x1e, 0xff,
};
#define HEX_A "000102030405060708090a0b0c0d0e0ff0e1d2c3b4a5968778695a4b3c2d1eff"

static void test_format_then_parse(void **state)
{
	(void)state;
	char out[RAFTADDR_MAX + 1];
	assert_int_equal(raftaddr_format(out, sizeof out, "n1", "10.0.0.1:8201", id_a), 0);
	assert_string_equal(out, "n1@10.0.0.1:8201#" HEX_A);
	struct raftaddr a;
	assert_int_equal(raftaddr_parse(out, &a), 0);
	assert_int_equal(a.name_len, 2);
	assert_memory_equal(a.name, "n1", 2);
	assert_string_equal(a.host, "10.0.0.1");
	assert_int_equal(a.port, 8201);
	assert_true(a.has_id);
	assert_memory_equal(a.id, id_a, CHANNEL_ID_LEN);
	assert_true(raftaddr_has_id(out, id_a));
	uint8_t other[CHANNEL_ID_LEN];
	memcpy(other, id_a, sizeof other);
	other[31] ^= 1;
	assert_false(raftaddr_has_id(out, other));
}

static void test_dial_forms(void **state)
{
	(void)state;
	struct raftaddr a;
	assert_int_equal(raftaddr_parse("127.0.0.1:1", &a), 0);
	assert_int_equal(a.name_len, 0);
	assert_false(a.has_id);
	assert_string_equal(a.host, "127.0.0.1");
	assert_int_equal(a.port, 1);
	assert_int_equal(raftaddr_parse("[::1]:65535", &a), 0);
	assert_string_equal(a.host, "::1");
	assert_int_equal(a.port, 65535);
	assert_int_equal(raftaddr_parse("node.example:8201", &a), 0);
	assert_string_equal(a.host, "node.example");
	/* A name may hold '@': the last one before host:port counts. */
	assert_int_equal(raftaddr_parse("a@b@h:2", &a), 0);
	assert_int_equal(a.name_len, 3);
	assert_string_equal(a.host, "h");
	assert_int_equal(raftaddr_parse("n@[fe80::1]:9#" HEX_A, &a), 0);
	assert_string_equal(a.host, "fe80::1");
	assert_true(a.has_id);
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"host",                 /* no port */
		"host:",                /* empty port */
		"host:0",               /* port out of range */
		"host:65536",
		"host:123456",
		"host:80a",
		":8201",                /* empty host */
		"::1:8201",             /* unbracketed IPv6 */
		"[::1:8201",            /* unclosed bracket */
		"[::1]8201",
		"n@h:1#" HEX_A "0",     /* 65 hex digits: the port is then not a number */
		"n@h:1#" "000102030405060708090a0b0c0d0e0ff0e1d2c3b4a5968778695a4b3c2d1eFF",
		"https://h:1",          /* a scheme is no host */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct raftaddr a;
		if (raftaddr_parse(bad[i], &a) != -EINVAL)
			fail_msg("'%s' was accepted", bad[i]);
	}
	char longer[RAFTADDR_MAX + 16];
	memset(longer, 'x', sizeof longer);
	memcpy(longer + sizeof longer - 8, ":8201", 6);
	struct raftaddr a;
	assert_int_equal(raftaddr_parse(longer, &a), -EINVAL);
}

static void test_format_too_long(void **state)
{
	(void)state;
	char name[RAFTADDR_MAX];
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	char out[2 * RAFTADDR_MAX];
	assert_int_equal(raftaddr_format(out, sizeof out, name, "h:1", id_a), -ENAMETOOLONG);
	char small[16];
	assert_int_equal(raftaddr_format(small, sizeof small, "n1", "h:1", id_a), -ENAMETOOLONG);
}

static void test_show(void **state)
{
	(void)state;
	const char *name, *hp;
	size_t name_len, hp_len;
	raftaddr_show("n1@10.0.0.1:8201#" HEX_A, &name, &name_len, &hp, &hp_len);
	assert_int_equal(name_len, 2);
	assert_memory_equal(name, "n1", 2);
	assert_int_equal(hp_len, strlen("10.0.0.1:8201"));
	assert_memory_equal(hp, "10.0.0.1:8201", hp_len);
	raftaddr_show("h:1", &name, &name_len, &hp, &hp_len);
	assert_int_equal(name_len, 0);
	assert_int_equal(hp_len, 3);
	assert_memory_equal(hp, "h:1", 3);
	/* Something that only looks like an identity is shown whole. */
	raftaddr_show("n@h:1#zz", &name, &name_len, &hp, &hp_len);
	assert_int_equal(hp_len, strlen("h:1#zz"));
}

/* What the transport dials: host and port of an address, a numeric host
 * as a socket address, a resolved one given the port. */
static void test_socket_addresses(void **state)
{
	(void)state;
	char host[RAFTADDR_HOST_MAX];
	int port = 0;
	assert_int_equal(raftaddr_host_port("n1@10.1.2.3:8201", host, &port), 0);
	assert_string_equal(host, "10.1.2.3");
	assert_int_equal(port, 8201);
	assert_int_equal(raftaddr_host_port("no-port", host, &port), -EINVAL);

	struct sockaddr_storage ss;
	assert_int_equal(raftaddr_sockaddr("10.1.2.3", 8201, &ss), 0);
	const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
	assert_int_equal(in->sin_family, AF_INET);
	assert_int_equal(ntohs(in->sin_port), 8201);
	assert_int_equal(raftaddr_sockaddr("::1", 9, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(raftaddr_sockaddr("vault.example", 9, &ss), -EINVAL);

	raftaddr_set_port((struct sockaddr *)&ss, 4242);
	assert_int_equal(ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port), 4242);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_then_parse),
		cmocka_unit_test(test_dial_forms),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_format_too_long),
		cmocka_unit_test(test_show),
		cmocka_unit_test(test_socket_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
