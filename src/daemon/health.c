#include "daemon/health.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "vaultfs/client.h"

/* How long the node may take to answer: the word is computed locally,
 * without a Raft round. */
#define HEALTH_TIMEOUT_MS 5000u

static const struct {
	const char *word;
	int status;
} health_words[] = {
	{ "active", HEALTH_EXIT_SERVING },
	{ "standby", HEALTH_EXIT_SERVING },
	{ "no-leader", HEALTH_EXIT_NO_LEADER },
	{ "sealed", HEALTH_EXIT_SEALED },
	{ "uninitialized", HEALTH_EXIT_UNINITIALIZED },
	{ "removed", HEALTH_EXIT_REMOVED },
};

/* WORD (LEN bytes, its newline taken off) as an exit status, or -1. */
static int health_status_of(const uint8_t *word, size_t len)
{
	for (size_t i = 0; i < sizeof(health_words) / sizeof(health_words[0]); i++)
		if (strlen(health_words[i].word) == len && memcmp(health_words[i].word, word, len) == 0)
			return health_words[i].status;
	return -1;
}

int health_run(const char *socket_path)
{
	char errmsg[512] = "";
	struct vfs_client *c = NULL;
	int rv = vfs_client_connect(&c, socket_path, errmsg, sizeof(errmsg));
	if (rv != 0) {
		fprintf(stderr, "vaultfsd -health: %s\n", errmsg);
		printf("unreachable\n");
		return HEALTH_EXIT_UNREACHABLE;
	}
	struct buf req;
	buf_init(&req);
	buf_put_blob(&req, "health", 6);
	uint8_t *resp = NULL;
	size_t len = 0;
	rv = req.err != 0 ? req.err :
			    vfs_client_call(c, VFS_OP_CTL_READ, 0, 0, req.data, req.len,
					    HEALTH_TIMEOUT_MS, &resp, &len, NULL);
	buf_free(&req);
	vfs_client_close(c);
	size_t word_len = len > 0 && resp[len - 1] == '\n' ? len - 1 : len;
	int status = rv == 0 ? health_status_of(resp, word_len) : -1;
	if (status < 0) {
		if (rv != 0)
			fprintf(stderr, "vaultfsd -health: the node at %s did not answer: %s\n",
				socket_path, strerror(-rv));
		else
			fprintf(stderr, "vaultfsd -health: the node at %s answered '%.*s', not a health word\n",
				socket_path, (int)(len < 64 ? len : 64), (const char *)resp);
		printf("unreachable\n");
		status = HEALTH_EXIT_UNREACHABLE;
	} else {
		printf("%.*s\n", (int)word_len, (const char *)resp);
	}
	vfs_client_free_resp(resp, len);
	return status;
}
