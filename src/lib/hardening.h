/* Process hardening shared by vaultfsd and mount.vaultfs. */
#ifndef VAULTFS_LIB_HARDENING_H
#define VAULTFS_LIB_HARDENING_H

/* Forbids core dumps of this process (RLIMIT_CORE 0, and not dumpable,
 * which also keeps other processes of the same user from attaching with
 * ptrace or reading its memory through /proc): a core of an unsealed
 * daemon or of a mount holds keys and secrets. Returns 0 or -errno. */
int hardening_no_core_dumps(void);

#endif
