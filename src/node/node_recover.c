/* vaultfsd -recover: a survivor of a lost majority becomes a cluster of
 * itself alone, or of the servers listed in DATA_DIR/recover.peers (as
 * Vault's peers.json), keeping every entry it holds.
 *
 * recover.peers: one server per line, "node_id host:port identity" (the
 * identity as the node's status shows it, 64 hex digits); blank lines and
 * lines starting with # are ignored. This node must be listed, with its
 * own identity. The file is checked when the daemon starts (a mistake
 * stops it there, with the line), applied at the first unseal, and then
 * renamed recover.peers.applied. */
#include "node/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "lib/fileutil.h"
#include "lib/log.h"
#include "raft/raftaddr.h"

#define RECOVER_PEERS_NAME "recover.peers"
#define RECOVER_PEERS_MAX (64u * 1024u)
#define RECOVER_MAX_SERVERS 64u

struct recover_server {
	raft_id id;
	char address[RAFTADDR_MAX + 1]; /* node_id@host:port#identity */
};

static int recover_path(const char *dir, const char *suffix, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s%s", dir, RECOVER_PEERS_NAME, suffix);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/* One line's three fields into *RET; a message into ERR if malformed. */
static int recover_parse_line(char *line, struct recover_server *ret, char *err, size_t errlen)
{
	char *save = NULL;
	char *name = strtok_r(line, " \t", &save);
	char *hostport = strtok_r(NULL, " \t", &save);
	char *hex = strtok_r(NULL, " \t", &save);
	uint8_t id[CHANNEL_ID_LEN];
	size_t id_len = 0;
	struct raftaddr a;
	if (hex == NULL || strtok_r(NULL, " \t", &save) != NULL) {
		snprintf(err, errlen, "expected three fields: node_id host:port identity");
		return -EINVAL;
	}
	if (strlen(hex) != RAFTADDR_ID_HEX ||
	    sodium_hex2bin(id, sizeof id, hex, strlen(hex), NULL, &id_len, NULL) != 0 ||
	    id_len != sizeof id) {
		snprintf(err, errlen, "the identity must be 64 hex digits (a node's status shows it)");
		return -EINVAL;
	}
	if (raftaddr_format(ret->address, sizeof ret->address, name, hostport, id) != 0 ||
	    raftaddr_parse(ret->address, &a) != 0 || a.name_len != strlen(name) ||
	    strchr(name, '#') != NULL) {
		snprintf(err, errlen, "'%.64s %.128s' is not a node id and a host:port", name,
			 hostport);
		return -EINVAL;
	}
	ret->id = node_raft_id_of(name);
	return 0;
}

/* Reads DIR's recover.peers into SERVERS: the count, 0 if there is no such
 * file, or -errno with a message naming the line in ERRMSG. */
static int recover_read(const char *dir, struct recover_server *servers, char *errmsg,
			size_t errlen)
{
	char path[4096];
	struct buf text;
	buf_init(&text);
	int rv = recover_path(dir, "", path, sizeof path);
	if (rv == 0)
		rv = file_read_all(path, RECOVER_PEERS_MAX, &text);
	if (rv == -ENOENT) {
		buf_free(&text);
		return 0;
	}
	buf_put_u8(&text, 0);
	if (rv != 0 || text.err != 0) {
		snprintf(errmsg, errlen, "-recover: cannot read %s: %s", path,
			 strerror(rv != 0 ? -rv : -text.err));
		buf_free(&text);
		return rv != 0 ? rv : text.err;
	}
	int count = 0, lineno = 0;
	char *next = (char *)text.data;
	while (next != NULL && rv == 0) {
		char *line = strsep(&next, "\n");
		lineno++;
		line += strspn(line, " \t");
		if (*line == '\0' || *line == '#')
			continue;
		char err[256];
		if (count == RECOVER_MAX_SERVERS) {
			snprintf(err, sizeof err, "more than %u servers", RECOVER_MAX_SERVERS);
			rv = -E2BIG;
		} else {
			rv = recover_parse_line(line, &servers[count], err, sizeof err);
		}
		if (rv != 0)
			snprintf(errmsg, errlen, "-recover: %s:%d: %s", path, lineno, err);
		else
			count++;
	}
	buf_free(&text);
	if (rv == 0 && count == 0) {
		snprintf(errmsg, errlen, "-recover: %s lists no server", path);
		rv = -EINVAL;
	}
	return rv != 0 ? rv : count;
}

int node_recover_check(const char *dir, char *errmsg, size_t errlen)
{
	struct recover_server *servers = calloc(RECOVER_MAX_SERVERS, sizeof(*servers));
	if (servers == NULL)
		return -ENOMEM;
	int rv = recover_read(dir, servers, errmsg, errlen);
	free(servers);
	char applied[4096];
	/* A list already applied must not turn into "this node alone" when
	 * -recover is given again (a unit file that kept the flag): with the
	 * others it would make a second majority. */
	if (rv == 0 && recover_path(dir, ".applied", applied, sizeof applied) == 0 &&
	    access(applied, F_OK) == 0) {
		snprintf(errmsg, errlen,
			 "-recover: %s exists: this node was already recovered with that list; "
			 "start it without -recover (or delete that file to recover it alone)",
			 applied);
		rv = -EEXIST;
	}
	return rv < 0 ? rv : 0;
}

/* The new configuration: recover.peers' servers, or this node alone. */
static int recover_configuration(struct node *n, struct raft_configuration *conf, int *ret_n)
{
	struct recover_server *servers = calloc(RECOVER_MAX_SERVERS, sizeof(*servers));
	if (servers == NULL)
		return -ENOMEM;
	char err[512] = "-recover: out of memory";
	int count = recover_read(n->data_dir, servers, err, sizeof err);
	int rv = count < 0 ? count : 0;
	bool self = false;
	for (int i = 0; i < count && rv == 0; i++) {
		self = self || strcmp(servers[i].address, n->raft_address) == 0;
		rv = raft_configuration_add(conf, servers[i].id, servers[i].address, RAFT_VOTER);
		if (rv != 0)
			snprintf(err, sizeof err, "-recover: %s listed twice, or out of memory",
				 servers[i].address);
	}
	if (rv == 0 && count > 0 && !self) {
		snprintf(err, sizeof err,
			 "-recover: recover.peers must list this node as %s (its node id, "
			 "cluster_addr and identity)",
			 n->raft_address);
		rv = -EINVAL;
	}
	if (rv == 0 && count == 0)
		rv = raft_configuration_add(conf, n->raft_id, n->raft_address, RAFT_VOTER);
	if (rv != 0)
		log_error("node %s: %s", n->node_id, err);
	free(servers);
	*ret_n = count;
	return rv;
}

int node_recover_apply(struct node *n, struct raft_session *s)
{
	struct raft_configuration conf;
	raft_configuration_init(&conf);
	int listed = 0;
	int rv = recover_configuration(n, &conf, &listed);
	if (rv == 0) {
		rv = raft_recover(&s->raft, &conf);
		if (rv != 0)
			log_error("node %s: -recover: %s (%s)", n->node_id, raft_strerror(rv),
				  raft_errmsg(&s->raft));
	}
	raft_configuration_close(&conf);
	if (rv != 0)
		return -EIO;
	n->recover_pending = false;
	if (listed == 0) {
		log_warn("node %s: -recover: the configuration is now this node alone; every "
			 "other server is dropped (never start them again with their old data: "
			 "join fresh nodes instead)",
			 n->node_id);
		return 0;
	}
	char from[4096], to[4096];
	if (recover_path(n->data_dir, "", from, sizeof from) == 0 &&
	    recover_path(n->data_dir, ".applied", to, sizeof to) == 0 && rename(from, to) != 0)
		log_warn("node %s: -recover: cannot rename %s to %s: %s", n->node_id, from, to,
			 strerror(errno));
	log_warn("node %s: -recover: the configuration is now the %d servers of recover.peers "
		 "(renamed recover.peers.applied); start each with its own data and -recover "
		 "too, or it would not accept the new configuration",
		 n->node_id, listed);
	return 0;
}
