/* vaultfsd -health: asks a running node for its .vault/health word through
 * its local API socket (no mount needed) and maps it to an exit status. */
#ifndef VAULTFS_DAEMON_HEALTH_H
#define VAULTFS_DAEMON_HEALTH_H

/* Exit statuses of vaultfsd -health. 0 for a node that serves (active or
 * standby); 2 is every vaultfsd's status for bad arguments. */
enum health_exit {
	HEALTH_EXIT_SERVING = 0,
	HEALTH_EXIT_UNREACHABLE = 1,
	HEALTH_EXIT_NO_LEADER = 3,
	HEALTH_EXIT_SEALED = 4,
	HEALTH_EXIT_UNINITIALIZED = 5,
	HEALTH_EXIT_REMOVED = 6,
};

/* Prints the word of the node listening on SOCKET_PATH (or why it cannot
 * be reached, on stderr) and returns its exit status. */
int health_run(const char *socket_path);

#endif
