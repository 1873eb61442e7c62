#include "lib/failpoint.h"

#ifdef VAULTFS_FAILPOINTS
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

/* Parsed once from the environment into a small table. failpoint_hit
 * counts without a lock: only the daemon's loop thread asks it; the
 * mount's threads ask failpoint_value, which only reads. */
#define FAILPOINT_MAX 16

static struct {
	char name[32];
	long left;
} failpoints[FAILPOINT_MAX];
static pthread_once_t failpoints_once = PTHREAD_ONCE_INIT;

static void failpoints_parse(void)
{
	const char *env = getenv("VAULTFS_FAILPOINTS");
	if (env == NULL)
		return;
	char copy[512];
	strncpy(copy, env, sizeof(copy) - 1);
	copy[sizeof(copy) - 1] = '\0';
	size_t i = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok && i < FAILPOINT_MAX;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || (size_t)(eq - tok) >= sizeof(failpoints[i].name))
			continue;
		memcpy(failpoints[i].name, tok, (size_t)(eq - tok));
		failpoints[i].left = strtol(eq + 1, NULL, 10);
		log_warn("failpoint %s set to %ld", failpoints[i].name, failpoints[i].left);
		i++;
	}
}

bool failpoint_hit(const char *name)
{
	pthread_once(&failpoints_once, failpoints_parse);
	for (size_t i = 0; i < FAILPOINT_MAX; i++) {
		if (strcmp(failpoints[i].name, name) != 0 || failpoints[i].left == 0)
			continue;
		if (failpoints[i].left > 0)
			failpoints[i].left--;
		log_warn("failpoint %s triggered", name);
		return true;
	}
	return false;
}

long failpoint_value(const char *name)
{
	pthread_once(&failpoints_once, failpoints_parse);
	for (size_t i = 0; i < FAILPOINT_MAX; i++)
		if (strcmp(failpoints[i].name, name) == 0)
			return failpoints[i].left;
	return 0;
}
#endif
