/* config_load: vaultfsd's configuration file (libconfuse plus the
 * project's own prescan and checks). The input is the file's content,
 * written to a memfd and loaded through /proc/self/fd/N. An accepted
 * configuration must satisfy what config.h promises. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/config.h"
#include "fuzz_common.h"

static int config_fd = -1;
static char config_path[64];

static bool node_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void check_config(const struct config *c)
{
	FUZZ_CHECK(c->data_dir != NULL && c->data_dir[0] == '/');
	FUZZ_CHECK(c->node_id != NULL && node_id_ok(c->node_id));
	FUZZ_CHECK(c->cluster_addr != NULL && strstr(c->cluster_addr, "://") == NULL);
	FUZZ_CHECK(strchr(c->cluster_addr, ':') != NULL);
	FUZZ_CHECK(c->socket_path != NULL && c->socket_path[0] == '/' &&
		   strlen(c->socket_path) <= 107);
	FUZZ_CHECK(c->snapshot_threshold >= 1 && c->snapshot_threshold <= 1000000000u);
	FUZZ_CHECK(c->trailing_logs >= 1 && c->trailing_logs <= 1000000000u);
	FUZZ_CHECK(c->election_timeout_ms >= 100 && c->election_timeout_ms <= 60000);
	FUZZ_CHECK(c->heartbeat_interval_ms >= 10 && c->heartbeat_interval_ms <= 10000);
	FUZZ_CHECK(c->heartbeat_interval_ms < c->election_timeout_ms);
	FUZZ_CHECK(c->request_timeout_ms >= 100 && c->request_timeout_ms <= 600000);
}

static const char *const seeds[][2] = {
	{ "minimal", "storage \"raft\" {\n  path = \"/var/lib/vaultfs\"\n  node_id = \"node1\"\n}\n"
		     "cluster_addr = \"127.0.0.1:8201\"\n" },
	{ "full",
	  "# comment\nstorage \"raft\" {\n  path    = \"/var/lib/vaultfs/node1\"\n"
	  "  node_id = \"node-1.a_b\"\n  snapshot_threshold = 8192\n  trailing_logs = 10240\n"
	  "  election_timeout_ms = 1000\n  heartbeat_interval_ms = 100\n}\n"
	  "cluster_addr = \"http://127.0.0.1:8201/\"\n"
	  "listener \"unix\" {\n  path = \"/run/vaultfs/node1.sock\"\n}\n"
	  "disable_mlock = true\nrequest_timeout_ms = 10000\n" },
	{ "https_ipv6", "storage \"raft\" { path = \"/d\", node_id = \"n\" }\n"
			"cluster_addr = \"https://[::1]:8201\"\n/* block comment */\n"
			"disable_mlock = false\n" },
	{ "bad_heartbeat", "storage \"raft\" {\n  path = \"/d\"\n  node_id = \"n\"\n"
			   "  election_timeout_ms = 100\n  heartbeat_interval_ms = 100\n}\n"
			   "cluster_addr = \"h:1\"\n" },
	{ "unclosed", "storage \"raft\" {\n  path = \"/d\"\ncluster_addr = \"h:1\"\n" },
	{ "twice", "storage \"raft\" { path = \"/d\" node_id = \"n\" }\n"
		   "storage \"raft\" { path = \"/e\" node_id = \"m\" }\ncluster_addr = \"h:1\"\n"
		   "cluster_addr = \"h:2\"\n" },
};

static void write_seeds(const char *dir)
{
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		fuzz_write_seed(dir, seeds[i][0], seeds[i][1], strlen(seeds[i][1]));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet_log();
	const char *dir = fuzz_seed_dir();
	if (dir != NULL) {
		write_seeds(dir);
		exit(0);
	}
	config_fd = memfd_create("vaultfs-fuzz-config", MFD_CLOEXEC);
	FUZZ_CHECK(config_fd >= 0);
	snprintf(config_path, sizeof(config_path), "/proc/self/fd/%d", config_fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char errmsg[512];

	FUZZ_CHECK(ftruncate(config_fd, 0) == 0);
	size_t done = 0;
	while (done < size) {
		ssize_t w = pwrite(config_fd, data + done, size - done, (off_t)done);
		FUZZ_CHECK(w > 0);
		done += (size_t)w;
	}

	memset(&c, 0, sizeof(c));
	int rv = config_load(config_path, &c, errmsg, sizeof(errmsg));
	if (rv == 0) {
		check_config(&c);
		config_free(&c);
	} else {
		/* Every refusal says why. */
		FUZZ_CHECK(memchr(errmsg, '\0', sizeof(errmsg)) != NULL && errmsg[0] != '\0');
		FUZZ_CHECK(rv == -EINVAL || rv == -EFBIG || rv == -ENOMEM);
	}
	return 0;
}
