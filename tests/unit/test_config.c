/* Unit tests for the vaultfsd config loader: every error carries the right
 * FILE:LINE prefix and message, and valid files give the right values. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/config.h"
#include "vaultfs/proto.h"

static char tmpdir[PATH_MAX];
static char cfgpath[PATH_MAX + 16];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vaultfs-test-config-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(cfgpath, sizeof(cfgpath), "%s/node.hcl", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(cfgpath);
	rmdir(tmpdir);
	return 0;
}

static void write_file(const char *text)
{
	FILE *f = fopen(cfgpath, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Loads TEXT and expects -EINVAL with exactly "FILE:LINE: MSG" ("FILE: MSG"
 * when line is 0), leaving *ret untouched. */
static void expect_error(const char *text, int line, const char *msg)
{
	struct config c;
	struct config sentinel;
	char err[512];
	char want[PATH_MAX + 1024];

	write_file(text);
	memset(&c, 0xA5, sizeof(c));
	memcpy(&sentinel, &c, sizeof(c));
	int rv = config_load(cfgpath, &c, err, sizeof(err));
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", cfgpath, line, msg);
	else
		snprintf(want, sizeof(want), "%s: %s", cfgpath, msg);
	assert_int_equal(rv, -EINVAL);
	assert_string_equal(err, want);
	assert_memory_equal(&c, &sentinel, sizeof(c));
}

static void load_ok(const char *text, struct config *c)
{
	char err[512] = "";
	write_file(text);
	int rv = config_load(cfgpath, c, err, sizeof(err));
	if (rv != 0)
		print_error("unexpected error: %s\n", err);
	assert_int_equal(rv, 0);
}

#define STORAGE_OK                                    \
	"storage \"raft\" {\n"                        \
	"  path    = \"/var/lib/vaultfs/node1\"\n"    \
	"  node_id = \"node1\"\n"                     \
	"}\n"
#define ADDR_OK "cluster_addr = \"http://127.0.0.1:8201\"\n"

static void test_minimal_defaults(void **state)
{
	(void)state;
	struct config c;
	load_ok(STORAGE_OK ADDR_OK, &c);
	assert_string_equal(c.data_dir, "/var/lib/vaultfs/node1");
	assert_string_equal(c.node_id, "node1");
	assert_string_equal(c.cluster_addr, "127.0.0.1:8201");
	assert_string_equal(c.socket_path, VFS_DEFAULT_SOCKET);
	assert_false(c.disable_mlock);
	assert_int_equal(c.snapshot_threshold, 8192);
	assert_int_equal(c.trailing_logs, 10240);
	assert_int_equal(c.election_timeout_ms, 1000);
	assert_int_equal(c.heartbeat_interval_ms, 100);
	assert_int_equal(c.request_timeout_ms, 10000);
	assert_int_equal(c.rotation_interval_ms, 0);
	config_free(&c);
	assert_null(c.data_dir);
	assert_null(c.node_id);
	assert_null(c.cluster_addr);
	assert_null(c.socket_path);
	config_free(&c); /* safe twice */
	config_free(NULL);
}

static void test_full(void **state)
{
	(void)state;
	struct config c;
	load_ok("# full config\n"
		"storage \"raft\" {\n"
		"  path    = \"/data/vfs\"   # data\n"
		"  node_id = \"Node_1.a-b\"\n"
		"  snapshot_threshold    = 64\n"
		"  trailing_logs         = 128\n"
		"  election_timeout_ms   = 3000\n"
		"  heartbeat_interval_ms = 250\n"
		"}\n"
		"cluster_addr = \"http://node-a.example.com:9000/\"\n"
		"listener \"unix\" {\n"
		"  path = \"/run/vfs/a.sock\"\n"
		"}\n"
		"disable_mlock = true\n"
		"request_timeout_ms = 2500\n",
		&c);
	assert_string_equal(c.data_dir, "/data/vfs");
	assert_string_equal(c.node_id, "Node_1.a-b");
	assert_string_equal(c.cluster_addr, "node-a.example.com:9000");
	assert_string_equal(c.socket_path, "/run/vfs/a.sock");
	assert_true(c.disable_mlock);
	assert_int_equal(c.snapshot_threshold, 64);
	assert_int_equal(c.trailing_logs, 128);
	assert_int_equal(c.election_timeout_ms, 3000);
	assert_int_equal(c.heartbeat_interval_ms, 250);
	assert_int_equal(c.request_timeout_ms, 2500);
	config_free(&c);
}

/* audit "file": values, the fail_closed default, and mistakes. */
static void test_audit(void **state)
{
	(void)state;
	struct config c;
	load_ok(STORAGE_OK ADDR_OK "audit \"file\" {\n  path = \"/var/log/vaultfs/audit.log\"\n}\n", &c);
	assert_string_equal(c.audit_path, "/var/log/vaultfs/audit.log");
	assert_true(c.audit_fail_closed);
	config_free(&c);
	assert_null(c.audit_path);
	load_ok(STORAGE_OK ADDR_OK "audit \"file\" {\n  path = \"/a.log\"\n  fail_closed = false\n}\n",
		&c);
	assert_false(c.audit_fail_closed);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK, &c);
	assert_null(c.audit_path);
	config_free(&c);

	expect_error(STORAGE_OK ADDR_OK "audit \"file\" {\n  fail_closed = true\n}\n", 0,
		     "audit \"file\" block needs path (the audit log file)");
	expect_error(STORAGE_OK ADDR_OK "audit \"file\" {\n  path = \"a.log\"\n}\n", 7,
		     "audit \"file\" path must be an absolute path, got \"a.log\"");
	expect_error(STORAGE_OK ADDR_OK "audit \"syslog\" {\n  path = \"/a.log\"\n}\n", 6,
		     "audit type \"syslog\" is not supported; use audit \"file\"");
}

/* telemetry and retry_join: values, defaults and every mistake. */
static void test_telemetry_and_retry_join(void **state)
{
	(void)state;
	struct config c;
	load_ok(STORAGE_OK ADDR_OK
		"telemetry {\n"
		"  prometheus_textfile = \"/var/lib/node_exporter/vaultfs.prom\"\n"
		"  interval = \"1m\"\n"
		"}\n"
		"retry_join {\n  leader_addr = \"http://10.0.0.1:8201\"\n}\n"
		"retry_join {\n  leader_addr = \"[::1]:8202/\"\n}\n",
		&c);
	assert_string_equal(c.metrics_textfile, "/var/lib/node_exporter/vaultfs.prom");
	assert_int_equal(c.metrics_interval_ms, 60000);
	assert_int_equal(c.n_retry_join, 2);
	assert_string_equal(c.retry_join[0], "10.0.0.1:8201");
	assert_string_equal(c.retry_join[1], "[::1]:8202");
	config_free(&c);
	assert_null(c.retry_join);
	assert_null(c.metrics_textfile);
	load_ok(STORAGE_OK ADDR_OK "telemetry {\n  prometheus_textfile = \"/t.prom\"\n}\n", &c);
	assert_int_equal(c.metrics_interval_ms, 15000);
	assert_int_equal(c.n_retry_join, 0);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK, &c);
	assert_null(c.metrics_textfile);
	config_free(&c);

	expect_error(STORAGE_OK ADDR_OK "telemetry {\n  interval = \"10s\"\n}\n", 0,
		     "telemetry block needs prometheus_textfile (the file to write)");
	expect_error(STORAGE_OK ADDR_OK "telemetry {\n  prometheus_textfile = \"t.prom\"\n}\n", 7,
		     "telemetry prometheus_textfile must be an absolute path, got \"t.prom\"");
	expect_error(STORAGE_OK ADDR_OK "telemetry {\n  prometheus_textfile = \"/t\"\n"
		     "  interval = \"0s\"\n}\n", 8,
		     "interval must be a duration from 1s to 1d such as \"15s\" (units s, m, h, d), "
		     "got \"0s\"");
	expect_error(STORAGE_OK ADDR_OK "telemetry {\n  prometheus_textfile = \"/a\"\n}\n"
		     "telemetry {\n  prometheus_textfile = \"/b\"\n}\n", 9,
		     "second telemetry block; only one is allowed");
	expect_error(STORAGE_OK ADDR_OK "retry_join {\n  leader_addr = \"https://h:1\"\n}\n", 7,
		     "leader_addr \"https://h:1\" is https://, but the cluster port speaks "
		     "vaultfs's own encrypted protocol, not TLS (use http:// or none)");
	expect_error(STORAGE_OK ADDR_OK "retry_join {\n}\n", 0,
		     "retry_join block 1 needs leader_addr (a member's cluster address)");
	expect_error(STORAGE_OK ADDR_OK "retry_join {\n  leader_addr = \"h:1\"\n"
		     "  leader_addr = \"h:2\"\n}\n", 8,
		     "leader_addr is set twice (first on line 7)");
	expect_error(STORAGE_OK ADDR_OK "leader_addr = \"h:1\"\n", 6,
		     "unknown key 'leader_addr' (it belongs inside the retry_join block)");
	expect_error(STORAGE_OK ADDR_OK "retry_join {\n  cluster_addr = \"h:1\"\n}\n", 7,
		     "unknown key 'cluster_addr' in retry_join block (it belongs at the top level, "
		     "outside any block)");
}

static void test_autopilot(void **state)
{
	(void)state;
	struct config c;
	load_ok(STORAGE_OK ADDR_OK, &c);
	assert_int_equal(c.dead_server_cleanup_ms, 0);
	assert_int_equal(c.min_quorum, 3);
	assert_int_equal(c.server_stabilization_ms, 10000);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK "autopilot {\n  server_stabilization_time = \"0s\"\n}\n", &c);
	assert_int_equal(c.server_stabilization_ms, 0);
	assert_int_equal(c.min_quorum, 3);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK "autopilot {\n  server_stabilization_time = \"2m\"\n}\n", &c);
	assert_int_equal(c.server_stabilization_ms, 120000);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK "autopilot {\n  dead_server_cleanup_threshold = \"5m\"\n"
		"  min_quorum = 5\n}\n", &c);
	assert_int_equal(c.dead_server_cleanup_ms, 300000);
	assert_int_equal(c.min_quorum, 5);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK "autopilot {\n  dead_server_cleanup_threshold = \"off\"\n}\n", &c);
	assert_int_equal(c.dead_server_cleanup_ms, 0);
	config_free(&c);
	expect_error(STORAGE_OK ADDR_OK "autopilot {\n  min_quorum = 0\n}\n", 7,
		     "min_quorum must be between 1 and 64, got 0");
	expect_error(STORAGE_OK ADDR_OK "autopilot {\n  dead_server_cleanup_threshold = \"5s\"\n}\n", 7,
		     "dead_server_cleanup_threshold must be \"off\" or a duration from 10s to 365d "
		     "such as \"5m\" (units s, m, h, d), got \"5s\"");
	expect_error(STORAGE_OK ADDR_OK "autopilot {\n  server_stabilization_time = \"2h\"\n}\n", 7,
		     "server_stabilization_time must be a duration from 0s to 1h such as \"10s\" "
		     "(units s, m, h, d), got \"2h\"");
	expect_error(STORAGE_OK ADDR_OK "autopilot {\n  server_stabilization_time = \"off\"\n}\n", 7,
		     "server_stabilization_time must be a duration from 0s to 1h such as \"10s\" "
		     "(units s, m, h, d), got \"off\"");
}

/* snapshot "local", and one-line blocks with commas as HCL writes them
 * (the README's examples); a comma in a string stays, one outside any
 * block is still an error. */
static void test_snapshot_and_commas(void **state)
{
	(void)state;
	struct config c;
	load_ok(STORAGE_OK ADDR_OK, &c);
	assert_null(c.snapshot_dir);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK "snapshot \"local\" {\n  path = \"/var/backups/v,1\"\n}\n", &c);
	assert_string_equal(c.snapshot_dir, "/var/backups/v,1");
	assert_int_equal(c.snapshot_interval_ms, 3600000);
	assert_int_equal(c.snapshot_retain, 24);
	config_free(&c);
	load_ok(STORAGE_OK ADDR_OK
		"snapshot \"local\" { path = \"/b\", interval = \"10m\", retain = 3 }\n"
		"autopilot { dead_server_cleanup_threshold = \"5m\", min_quorum = 5 }\n", &c);
	assert_string_equal(c.snapshot_dir, "/b");
	assert_int_equal(c.snapshot_interval_ms, 600000);
	assert_int_equal(c.snapshot_retain, 3);
	assert_int_equal(c.dead_server_cleanup_ms, 300000);
	assert_int_equal(c.min_quorum, 5);
	config_free(&c);
	expect_error(STORAGE_OK ADDR_OK "snapshot \"local\" {\n  interval = \"1h\"\n}\n", 0,
		     "snapshot \"local\" block needs path (the directory to write into)");
	expect_error(STORAGE_OK ADDR_OK "snapshot \"local\" {\n  path = \"b\"\n}\n", 7,
		     "snapshot \"local\" path must be an absolute path, got \"b\"");
	expect_error(STORAGE_OK ADDR_OK "snapshot \"local\" {\n  path = \"/b\"\n  retain = 0\n}\n", 8,
		     "retain must be between 1 and 100000, got 0");
}

static void test_cluster_addr_forms(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "127.0.0.1:8201", "127.0.0.1:8201" },
		{ "http://10.0.0.5:1", "10.0.0.5:1" },
		{ "http://[::1]:8201/", "[::1]:8201" },
		{ "[fe80::1:2]:65535", "[fe80::1:2]:65535" },
		{ "localhost:08201", "localhost:8201" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[512];
		struct config c;
		snprintf(text, sizeof(text), STORAGE_OK "cluster_addr = \"%s\"\n", cases[i].in);
		load_ok(text, &c);
		assert_string_equal(c.cluster_addr, cases[i].out);
		config_free(&c);
	}
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_error("storage \"raft\" {\n"
		     "  path = \"/x\"\n"
		     "  node_id =\n"
		     "}\n",
		     4, "syntax error near '}'");
	expect_error(STORAGE_OK ADDR_OK "}\n", 6, "unexpected '}' with no open block");
	expect_error("\nstorage \"raft\" {\n"
		     "  path = \"/x\"\n",
		     2, "block opened here is never closed (missing '}')");
	expect_error(STORAGE_OK "cluster_addr =\n", 6, "unexpected end of file");
	expect_error(STORAGE_OK "cluster_addr = \"http://\n\n", 5,
		     "string opened here is never closed (missing \")");
	expect_error(STORAGE_OK "/* note\n\n", 5, "comment opened here is never closed (missing */)");
	expect_error(STORAGE_OK "cluster_addr \"x\"\n", 5, "expected '=' after 'cluster_addr'");
	expect_error("storage {\n}\n", 1, "storage must be written as storage \"raft\" { ... }");
}

static void test_unknown_top_key(void **state)
{
	(void)state;
	expect_error(STORAGE_OK ADDR_OK "\napi_addr = \"x\"\n", 7, "unknown key 'api_addr'");
	expect_error(STORAGE_OK ADDR_OK "node_id = \"n\"\n", 6,
		     "unknown key 'node_id' (it belongs inside the storage \"raft\" block)");
	expect_error(STORAGE_OK ADDR_OK "seal \"transit\" {\n}\n", 6, "unknown key 'seal'");
}

/* libconfuse 3.3 alone miscounts lines after comments. */
static void test_lines_after_comments(void **state)
{
	(void)state;
	expect_error("# one\n"
		     "// two\n"
		     "/* three\n"
		     "   four */\n"
		     "storage \"raft\" { # five\n"
		     "  # six\n"
		     "  path = \"/d\" // seven\n"
		     "  node_id = \"a#b\"  # eight: the # in quotes is not a comment\n"
		     "}\n",
		     8, "node_id must be 1 to 64 characters from A-Z a-z 0-9 . _ -, got \"a#b\"");
	expect_error("# c\n# c\n# c\nstorage \"raft\" {\n  # c\n  paht = \"/x\"\n}\n", 6,
		     "unknown key 'paht' in storage \"raft\" block");
}

static void test_unknown_storage_key(void **state)
{
	(void)state;
	expect_error("storage \"raft\" {\n"
		     "  node_id = \"node1\"\n"
		     "  # typo below\n"
		     "  paht = \"/x\"\n"
		     "}\n" ADDR_OK,
		     4, "unknown key 'paht' in storage \"raft\" block");
	expect_error("storage \"raft\" {\n"
		     "  cluster_addr = \"127.0.0.1:1\"\n"
		     "}\n",
		     2,
		     "unknown key 'cluster_addr' in storage \"raft\" block "
		     "(it belongs at the top level, outside any block)");
	expect_error(STORAGE_OK ADDR_OK "listener \"unix\" {\n  address = \"x\"\n}\n", 7,
		     "unknown key 'address' in listener \"unix\" block");
}

static void test_missing(void **state)
{
	(void)state;
	expect_error(ADDR_OK, 0, "missing storage \"raft\" block (with path and node_id)");
	expect_error("", 0, "missing storage \"raft\" block (with path and node_id)");
	expect_error("storage \"raft\" {\n  node_id = \"n\"\n}\n" ADDR_OK, 0,
		     "storage \"raft\" block needs path (the data directory)");
	expect_error("storage \"raft\" {\n  path = \"/d\"\n}\n" ADDR_OK, 0,
		     "storage \"raft\" block needs node_id");
	expect_error(STORAGE_OK, 0,
		     "cluster_addr is required, e.g. cluster_addr = \"http://127.0.0.1:8201\"");
}

static void test_duplicate_blocks(void **state)
{
	(void)state;
	expect_error(STORAGE_OK ADDR_OK "\nstorage \"raft\" {\n  path = \"/b\"\n}\n", 7,
		     "second storage block; only one storage \"raft\" block is allowed");
	/* An empty repeat has no keys: reported when it closes. */
	expect_error(STORAGE_OK ADDR_OK "storage \"raft\" {}\n", 6,
		     "second storage block; only one storage \"raft\" block is allowed");
	expect_error(STORAGE_OK ADDR_OK "listener \"unix\" {\n  path = \"/a\"\n}\n"
				       "listener \"unix\" {\n  path = \"/b\"\n}\n",
		     9, "second listener block; only one listener \"unix\" block is allowed");
	expect_error(STORAGE_OK "  \n" ADDR_OK "cluster_addr = \"127.0.0.1:2\"\n", 7,
		     "cluster_addr is set twice (first on line 6)");
}

static void test_wrong_types(void **state)
{
	(void)state;
	expect_error("\nstorage \"consul\" {\n"
		     "  address = \"127.0.0.1:8500\"\n"
		     "}\n" ADDR_OK,
		     2, "storage type \"consul\" is not supported; use storage \"raft\"");
	expect_error("storage \"file\" {}\n" ADDR_OK, 1,
		     "storage type \"file\" is not supported; use storage \"raft\"");
	expect_error(STORAGE_OK ADDR_OK "listener \"tcp\" {\n"
				       "  address = \"127.0.0.1:8200\"\n"
				       "}\n",
		     6, "listener type \"tcp\" is not supported; use listener \"unix\"");
}

static void test_relative_paths(void **state)
{
	(void)state;
	expect_error("storage \"raft\" {\n  path = \"data/node1\"\n  node_id = \"n\"\n}\n" ADDR_OK,
		     2, "storage \"raft\" path must be an absolute path, got \"data/node1\"");
	expect_error("storage \"raft\" {\n  path = \"\"\n  node_id = \"n\"\n}\n" ADDR_OK, 2,
		     "storage \"raft\" path must be an absolute path, got \"\"");
	expect_error(STORAGE_OK ADDR_OK "listener \"unix\" {\n  path = \"vfs.sock\"\n}\n", 7,
		     "listener \"unix\" path must be an absolute path, got \"vfs.sock\"");

	char text[1024];
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	snprintf(text, sizeof(text), STORAGE_OK ADDR_OK "listener \"unix\" {\n  path = \"%s\"\n}\n",
		 longp);
	expect_error(text, 7, "listener \"unix\" path is too long (at most 107 bytes)");
}

static void test_bad_node_id(void **state)
{
	(void)state;
	const char *why = "node_id must be 1 to 64 characters from A-Z a-z 0-9 . _ -, got ";
	char want[256];

	snprintf(want, sizeof(want), "%s\"node 1\"", why);
	expect_error("storage \"raft\" {\n  path = \"/d\"\n  node_id = \"node 1\"\n}\n" ADDR_OK, 3,
		     want);
	snprintf(want, sizeof(want), "%s\"\"", why);
	expect_error("storage \"raft\" {\n  path = \"/d\"\n  node_id = \"\"\n}\n" ADDR_OK, 3, want);
	snprintf(want, sizeof(want), "%s\"n/1\"", why);
	expect_error("storage \"raft\" {\n  path = \"/d\"\n  node_id = \"n/1\"\n}\n" ADDR_OK, 3,
		     want);

	/* 64 is fine, 65 is not. */
	char id[66];
	char text[512];
	struct config c;
	memset(id, 'x', 64);
	id[64] = '\0';
	snprintf(text, sizeof(text), "storage \"raft\" {\n path = \"/d\"\n node_id = \"%s\"\n}\n" ADDR_OK,
		 id);
	load_ok(text, &c);
	assert_int_equal(strlen(c.node_id), 64);
	config_free(&c);
	id[64] = 'x';
	id[65] = '\0';
	snprintf(text, sizeof(text), "storage \"raft\" {\n path = \"/d\"\n node_id = \"%s\"\n}\n" ADDR_OK,
		 id);
	write_file(text);
	char err[512];
	assert_int_equal(config_load(cfgpath, &c, err, sizeof(err)), -EINVAL);
	char prefix[PATH_MAX + 64];
	snprintf(prefix, sizeof(prefix), "%s:3: node_id must be", cfgpath);
	assert_memory_equal(err, prefix, strlen(prefix));
}

static void expect_addr_error(const char *addr, const char *why)
{
	char text[512];
	char want[256];
	snprintf(text, sizeof(text), STORAGE_OK "\ncluster_addr = \"%s\"\n", addr);
	snprintf(want, sizeof(want), "cluster_addr \"%s\" %s", addr, why);
	expect_error(text, 6, want);
}

static void test_bad_cluster_addr(void **state)
{
	(void)state;
	expect_addr_error("http://127.0.0.1", "needs a port, e.g. 127.0.0.1:8201");
	expect_addr_error("127.0.0.1:", "needs a port between 1 and 65535");
	expect_addr_error("127.0.0.1:0", "needs a port between 1 and 65535");
	expect_addr_error("127.0.0.1:70000", "needs a port between 1 and 65535");
	expect_addr_error("127.0.0.1:80a", "needs a port between 1 and 65535");
	expect_addr_error("tcp://127.0.0.1:8201", "has an unsupported scheme (use http:// or none)");
	expect_addr_error("://127.0.0.1:8201", "has an unsupported scheme (use http:// or none)");
	expect_addr_error("https://127.0.0.1:8201",
			  "is https://, but the cluster port speaks vaultfs's own encrypted "
			  "protocol, not TLS (use http:// or none)");
	expect_addr_error(":8201", "has an empty host");
	expect_addr_error("http://:8201", "has an empty host");
	expect_addr_error("[]:8201", "has an empty host");
	expect_addr_error("::1:8201", "needs brackets around an IPv6 address, e.g. [::1]:8201");
	expect_addr_error("[::g]:8201", "has an invalid IPv6 address");
	expect_addr_error("[::1:8201", "has an unclosed '[' in its IPv6 address");
	expect_addr_error("999.1.1.1:8201", "has an invalid host name");
	expect_addr_error("bad host:8201", "has an invalid host name");
	expect_addr_error("http://h:1/raft", "must be host:port without a path");
	expect_addr_error("", "has an empty host");
}

static void expect_number_error(const char *key, const char *value, const char *msg)
{
	char text[512];
	bool top = strcmp(key, "request_timeout_ms") == 0;
	if (top)
		snprintf(text, sizeof(text), STORAGE_OK ADDR_OK "%s = %s\n", key, value);
	else
		snprintf(text, sizeof(text),
			 "storage \"raft\" {\n  path = \"/d\"\n  node_id = \"n\"\n  %s = %s\n}\n" ADDR_OK,
			 key, value);
	expect_error(text, top ? 6 : 4, msg);
}

static void test_bad_numbers(void **state)
{
	(void)state;
	expect_number_error("election_timeout_ms", "50",
			    "election_timeout_ms must be between 100 and 60000, got 50");
	expect_number_error("election_timeout_ms", "60001",
			    "election_timeout_ms must be between 100 and 60000, got 60001");
	expect_number_error("snapshot_threshold", "0",
			    "snapshot_threshold must be between 1 and 1000000000, got 0");
	expect_number_error("trailing_logs", "-5",
			    "trailing_logs must be between 1 and 1000000000, got -5");
	expect_number_error("heartbeat_interval_ms", "abc",
			    "heartbeat_interval_ms must be a whole number, got \"abc\"");
	expect_number_error("heartbeat_interval_ms", "0x10",
			    "heartbeat_interval_ms must be a whole number, got \"0x10\"");
	expect_number_error("snapshot_threshold", "99999999999999999999999",
			    "snapshot_threshold must be between 1 and 1000000000, got "
			    "99999999999999999999999");
	expect_number_error("request_timeout_ms", "0",
			    "request_timeout_ms must be between 100 and 600000, got 0");
	expect_number_error("request_timeout_ms", "1.5",
			    "request_timeout_ms must be a whole number, got \"1.5\"");

	/* Heartbeat must stay below the election timeout: points at the
	 * heartbeat line, or at the election line when only that was set. */
	expect_error("storage \"raft\" {\n  path = \"/d\"\n  node_id = \"n\"\n"
		     "  election_timeout_ms = 500\n"
		     "  heartbeat_interval_ms = 500\n"
		     "}\n" ADDR_OK,
		     5, "heartbeat_interval_ms (500) must be less than election_timeout_ms (500)");
	expect_error("storage \"raft\" {\n  path = \"/d\"\n  node_id = \"n\"\n"
		     "  heartbeat_interval_ms = 2000\n"
		     "}\n" ADDR_OK,
		     4, "heartbeat_interval_ms (2000) must be less than election_timeout_ms (1000)");
	expect_error("storage \"raft\" {\n  path = \"/d\"\n  node_id = \"n\"\n"
		     "  election_timeout_ms = 100\n"
		     "}\n" ADDR_OK,
		     4, "heartbeat_interval_ms (100) must be less than election_timeout_ms (100)");
}

static void test_rotation_interval(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint64_t ms;
	} good[] = {
		{ "\"24h\"", 24ull * 3600 * 1000 }, { "10s", 10000 },   { "\"90m\"", 5400000 },
		{ "\"7d\"", 7ull * 86400 * 1000 },  { "\"off\"", 0 }, { "\"365d\"", 365ull * 86400000 },
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		char text[512];
		struct config c;
		snprintf(text, sizeof text, STORAGE_OK ADDR_OK "rotation_interval = %s\n",
			 good[i].text);
		load_ok(text, &c);
		assert_int_equal(c.rotation_interval_ms, good[i].ms);
		config_free(&c);
	}
	static const char *const bad[] = { "\"9s\"", "\"366d\"", "\"24\"", "\"h\"",
					   "\"1.5h\"", "\"-1h\"", "\"24H\"", "\"999999999d\"" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[512], msg[256], shown[32];
		snprintf(text, sizeof text, STORAGE_OK ADDR_OK "rotation_interval = %s\n", bad[i]);
		snprintf(shown, sizeof shown, "%.*s", (int)strlen(bad[i]) - 2, bad[i] + 1);
		snprintf(msg, sizeof msg,
			 "rotation_interval must be \"off\" or a duration from 10s to 365d such as "
			 "\"24h\" (units s, m, h, d), got \"%s\"",
			 shown);
		expect_error(text, 6, msg);
	}
}

static void test_bad_bool(void **state)
{
	(void)state;
	expect_error(STORAGE_OK ADDR_OK "disable_mlock = maybe\n", 6,
		     "disable_mlock must be true or false");
}

static void test_unreadable(void **state)
{
	(void)state;
	struct config c;
	char err[512];
	char want[PATH_MAX + 128];
	char missing[PATH_MAX + 32];

	snprintf(missing, sizeof(missing), "%s/nope.hcl", tmpdir);
	assert_int_equal(config_load(missing, &c, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want), "%s: cannot read: %s", missing, strerror(ENOENT));
	assert_string_equal(err, want);

	assert_int_equal(config_load(tmpdir, &c, err, sizeof(err)), -EISDIR);
	snprintf(want, sizeof(want), "%s: cannot read: %s", tmpdir, strerror(EISDIR));
	assert_string_equal(err, want);

	/* Root reads anything, so only an unprivileged run can test EACCES. */
	if (geteuid() != 0) {
		write_file(STORAGE_OK ADDR_OK);
		assert_int_equal(chmod(cfgpath, 0), 0);
		assert_int_equal(config_load(cfgpath, &c, err, sizeof(err)), -EACCES);
		snprintf(want, sizeof(want), "%s: cannot read: %s", cfgpath, strerror(EACCES));
		assert_string_equal(err, want);
	}

	/* A tiny error buffer is never overrun, and a zero-size one is allowed. */
	char small[8];
	memset(small, 'z', sizeof(small));
	assert_int_equal(config_load(missing, &c, small, 5), -ENOENT);
	assert_int_equal(strlen(small), 4);
	assert_int_equal(small[5], 'z');
	assert_int_equal(config_load(missing, &c, small, 0), -ENOENT);
}

/* The build runs tests from the build tree; the examples live next to the
 * sources, which __FILE__ names relative to the build root. */
static void example_path(int n, char *out, size_t outlen)
{
	char src[PATH_MAX];
	if (__FILE__[0] == '/') {
		snprintf(src, sizeof(src), "%s", __FILE__);
	} else {
		char exe[PATH_MAX];
		ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		assert_true(len > 0);
		exe[len] = '\0';
		/* exe is BUILD/tests/unit/test_config */
		for (int i = 0; i < 3; i++)
			*strrchr(exe, '/') = '\0';
		snprintf(src, sizeof(src), "%.2000s/%.1000s", exe, __FILE__);
	}
	*strrchr(src, '/') = '\0';
	snprintf(out, outlen, "%.3000s/../../examples/node%d.hcl", src, n);
}

static void test_examples(void **state)
{
	(void)state;
	for (int n = 1; n <= 3; n++) {
		char path[PATH_MAX];
		char want[64];
		char err[512] = "";
		struct config c;
		example_path(n, path, sizeof(path));
		int rv = config_load(path, &c, err, sizeof(err));
		if (rv != 0)
			print_error("%s\n", err);
		assert_int_equal(rv, 0);
		snprintf(want, sizeof(want), "/var/lib/vaultfs/node%d", n);
		assert_string_equal(c.data_dir, want);
		snprintf(want, sizeof(want), "node%d", n);
		assert_string_equal(c.node_id, want);
		snprintf(want, sizeof(want), "127.0.0.1:820%d", n);
		assert_string_equal(c.cluster_addr, want);
		snprintf(want, sizeof(want), "/run/vaultfs/node%d.sock", n);
		assert_string_equal(c.socket_path, want);
		assert_false(c.disable_mlock);
		assert_int_equal(c.election_timeout_ms, 1000);
		config_free(&c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_minimal_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_cluster_addr_forms),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_unknown_top_key),
		cmocka_unit_test(test_unknown_storage_key),
		cmocka_unit_test(test_lines_after_comments),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_duplicate_blocks),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_bad_node_id),
		cmocka_unit_test(test_bad_cluster_addr),
		cmocka_unit_test(test_bad_numbers),
		cmocka_unit_test(test_rotation_interval),
		cmocka_unit_test(test_bad_bool),
		cmocka_unit_test(test_unreadable),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_telemetry_and_retry_join),
		cmocka_unit_test(test_audit),
		cmocka_unit_test(test_autopilot),
		cmocka_unit_test(test_snapshot_and_commas),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
