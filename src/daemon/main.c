/* vaultfsd: one vaultfs node. Runs in the foreground, logs to stderr. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/server.h"
#include "crypto/secmem.h"
#include "daemon/config.h"
#include "daemon/health.h"
#include "lib/hardening.h"
#include "lib/log.h"
#include "node/node.h"
#include "node/snapfile.h"
#include "raft/crashvfs.h"
#include "raft/zeroheap.h"

struct daemon {
	uv_loop_t loop;
	uv_signal_t sigterm;
	uv_signal_t sigint;
	uv_signal_t sighup;
	struct config cfg;
	struct node *node;
	struct api_server *api;
	int stopping;
	bool recover; /* -recover */
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: vaultfsd -config=FILE [-d] [-recover]\n"
		"       vaultfsd -config=FILE -health\n"
		"       vaultfsd -inspect BACKUP\n"
		"       vaultfsd -version\n"
		"Runs one vaultfs node in the foreground (logs go to stderr).\n"
		"  -d        debugging: allow core dumps (off by default: a core of an\n"
		"            unsealed node holds its keys)\n"
		"  -health   print the running node's health (active, standby, no-leader,\n"
		"            sealed, uninitialized, removed; unreachable) and exit 0 for\n"
		"            active or standby, 3 no-leader, 4 sealed, 5 uninitialized,\n"
		"            6 removed, 1 unreachable\n"
		"  -inspect  print a backup's header (.vault/snapshot) and check its body's\n"
		"            SHA-256, without keys; exit 0 if whole, 1 if not\n"
		"  -recover  lost quorum: at the next unseal this node's configuration\n"
		"            becomes itself alone, keeping every entry it holds; then\n"
		"            join fresh nodes (see the README, \"Lost quorum\")\n"
		"  -version  print the version and exit\n"
		"See the README for the configuration file; examples/node1.hcl is one.\n");
}

struct args {
	const char *file;
	bool dumpable;
	bool health;
	bool recover;
	const char *inspect; /* -inspect FILE */
};

/* Accepts -config=FILE, -config FILE, --config=FILE, --config FILE, -d,
 * -health, -recover and -version (each also with two dashes). */
static void parse_args(int argc, char **argv, struct args *ret)
{
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "-help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (a[0] == '-' && a[1] == '-')
			a++;
		if (strcmp(a, "-version") == 0) {
			printf("vaultfsd (vaultfs) %s\n", VAULTFS_VERSION);
			exit(0);
		}
		if (strcmp(argv[i], "-d") == 0) {
			ret->dumpable = true;
		} else if (strcmp(a, "-health") == 0) {
			ret->health = true;
		} else if (strcmp(a, "-recover") == 0) {
			ret->recover = true;
		} else if (strncmp(a, "-inspect=", 9) == 0) {
			ret->inspect = a + 9;
		} else if (strcmp(a, "-inspect") == 0 && i + 1 < argc) {
			ret->inspect = argv[++i];
		} else if (strncmp(a, "-config=", 8) == 0) {
			file = a + 8;
		} else if (strcmp(a, "-config") == 0 && i + 1 < argc) {
			file = argv[++i];
		} else {
			fprintf(stderr, "vaultfsd: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			exit(2);
		}
	}
	if (ret->inspect != NULL)
		return;
	if (file == NULL || *file == '\0') {
		fprintf(stderr, "vaultfsd: missing -config=FILE\n");
		usage(stderr);
		exit(2);
	}
	ret->file = file;
}

/* vaultfsd -health: the configuration only says where the socket is. */
static int health_main(const char *file)
{
	struct config cfg;
	char errmsg[512] = "";
	if (config_load(file, &cfg, errmsg, sizeof(errmsg)) != 0) {
		fprintf(stderr, "vaultfsd: %s\n", errmsg);
		return 2;
	}
	int status = health_run(cfg.socket_path);
	config_free(&cfg);
	return status;
}

/* vaultfsd -inspect: what a backup says of itself, checked without keys. */
static int inspect_main(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "vaultfsd: %s: %s\n", path, strerror(errno));
		return 1;
	}
	struct buf bytes, text;
	buf_init(&bytes);
	buf_init(&text);
	struct snapfile_header h;
	char why[256] = "";
	int rv = snapfile_read_header(fd, &bytes, &h, why, sizeof why);
	if (rv == 0) {
		snapfile_describe(&h, &text);
		fwrite(text.data, 1, text.len, stdout);
		rv = snapfile_check_body(fd, bytes.len, &h, why, sizeof why);
	}
	close(fd);
	buf_free(&bytes);
	buf_free(&text);
	if (rv != 0) {
		printf("check: FAILED\n");
		fprintf(stderr, "vaultfsd: %s: %s\n", path, why);
		return 1;
	}
	printf("check: ok (body SHA-256 matches)\n");
	return 0;
}

static void on_node_stopped(void *arg)
{
	struct daemon *d = arg;
	d->node = NULL;
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
}

static void on_api_stopped(void *arg)
{
	struct daemon *d = arg;
	/* Requests still held are answered while the node stops: its
	 * metrics go first. */
	api_server_set_observer(d->api, NULL);
	node_stop(d->node, on_node_stopped, d);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	if (d->stopping++)
		return;
	log_info("received %s; shutting down", strsignal(signum));
	api_server_stop(d->api, on_api_stopped, d);
}

/* SIGHUP: logrotate moved the audit log away. */
static void on_sighup(uv_signal_t *h, int signum)
{
	struct daemon *d = h->data;
	(void)signum;
	if (!d->stopping)
		node_audit_reopen(d->node);
}

static int start(struct daemon *d)
{
	char errmsg[1024] = ""; /* room for a damaged-log report and its advice */
	struct node_config nc = {
		.data_dir = d->cfg.data_dir,
		.node_id = d->cfg.node_id,
		.cluster_addr = d->cfg.cluster_addr,
		.snapshot_threshold = d->cfg.snapshot_threshold,
		.trailing_logs = d->cfg.trailing_logs,
		.election_timeout_ms = d->cfg.election_timeout_ms,
		.heartbeat_interval_ms = d->cfg.heartbeat_interval_ms,
		.request_timeout_ms = d->cfg.request_timeout_ms,
		.rotation_interval_ms = d->cfg.rotation_interval_ms,
		.recover = d->recover,
		.metrics_textfile = d->cfg.metrics_textfile,
		.metrics_interval_ms = d->cfg.metrics_interval_ms,
		.retry_join = (const char *const *)d->cfg.retry_join,
		.n_retry_join = d->cfg.n_retry_join,
		.dead_server_cleanup_ms = d->cfg.dead_server_cleanup_ms,
		.min_quorum = d->cfg.min_quorum,
		.snapshot_dir = d->cfg.snapshot_dir,
		.snapshot_interval_ms = d->cfg.snapshot_interval_ms,
		.snapshot_retain = d->cfg.snapshot_retain,
		.server_stabilization_ms = d->cfg.server_stabilization_ms,
		.audit_path = d->cfg.audit_path,
		.audit_fail_closed = d->cfg.audit_fail_closed,
	};
	int rv = node_start(&d->node, &d->loop, &nc, errmsg, sizeof(errmsg));
	if (rv != 0) {
		fprintf(stderr, "vaultfsd: %s\n", errmsg);
		return rv;
	}
	rv = api_server_start(&d->api, &d->loop, d->cfg.socket_path, node_handle_request,
			      d->node, errmsg, sizeof(errmsg));
	if (rv != 0) {
		fprintf(stderr, "vaultfsd: %s\n", errmsg);
		return rv;
	}
	api_server_set_watch(d->api, node_watch_hooks_for_api());
	api_server_set_observer(d->api, node_metrics_observer_for_api());
	api_server_set_hello_flags(d->api, d->cfg.audit_path != NULL ? VFS_HELLO_AUDIT : 0);
	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sigint);
	uv_signal_init(&d->loop, &d->sighup);
	d->sigterm.data = d;
	d->sigint.data = d;
	d->sighup.data = d;
	uv_signal_start(&d->sigterm, on_signal, SIGTERM);
	uv_signal_start(&d->sigint, on_signal, SIGINT);
	uv_signal_start(&d->sighup, on_sighup, SIGHUP);
	log_info("listening on %s (local API) as node %s, cluster address %s",
		 d->cfg.socket_path, d->cfg.node_id, d->cfg.cluster_addr);
	return 0;
}

int main(int argc, char **argv)
{
	struct args args = { 0 };
	parse_args(argc, argv, &args);
	if (args.inspect != NULL)
		return inspect_main(args.inspect);
	if (args.health)
		return health_main(args.file);
	const char *file = args.file;
	bool dumpable = args.dumpable;
	struct daemon d;
	memset(&d, 0, sizeof(d));
	d.recover = args.recover;
	char errmsg[512] = "";
	if (config_load(file, &d.cfg, errmsg, sizeof(errmsg)) != 0) {
		fprintf(stderr, "vaultfsd: %s\n", errmsg);
		return 1;
	}
	log_set_ident("vaultfsd");
	int rv = dumpable ? 0 : hardening_no_core_dumps();
	if (rv != 0) {
		fprintf(stderr, "vaultfsd: cannot forbid core dumps: %s\n", strerror(-rv));
		config_free(&d.cfg);
		return 1;
	}
	if (dumpable)
		log_warn("-d: core dumps allowed; a core of an unsealed node holds its keys");
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	zeroheap_install(); /* before libraft allocates anything */
	/* Test builds: read VAULTFS_CRASHVFS now, before any database opens,
	 * so that the whole run uses one VFS and the log says so first. */
	(void)crashvfs_vfs();
	if (crypto_global_init(d.cfg.disable_mlock) != 0) {
		fprintf(stderr, "vaultfsd: cannot initialise libsodium\n");
		config_free(&d.cfg);
		return 1;
	}
	uv_loop_init(&d.loop);
	rv = start(&d);
	if (rv != 0) {
		/* Nothing is serving yet: release what started and quit. */
		if (d.node != NULL)
			node_stop(d.node, NULL, NULL);
	} else {
		uv_run(&d.loop, UV_RUN_DEFAULT);
	}
	uv_run(&d.loop, UV_RUN_DEFAULT);
	uv_loop_close(&d.loop);
	config_free(&d.cfg);
	/* A start that failed ends with its reason as the last line. */
	if (rv == 0)
		log_info("stopped");
	return rv == 0 ? 0 : 1;
}
