/* The control directory "/.vault" and its files.
 *
 * The directory and its files are synthesised by the frontend: they exist
 * whether the vault is sealed or not, and their inode numbers are reserved
 * constants far above anything the daemon hands out. Reading a control file
 * fetches its contents from the daemon (VFS_OP_CTL_READ); each write() to one
 * runs its command (VFS_OP_CTL_WRITE). This module only knows the table of
 * files and how to describe them; handles and replies live in frontend.c. */
#ifndef VAULTFS_FUSE_CONTROL_H
#define VAULTFS_FUSE_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

/* Name of the control directory inside the mount's root. */
#define CONTROL_DIR_NAME ".vault"
/* Reserved inode of "/.vault"; its files follow it (CONTROL_DIR_INO + 1 ...).
 * The daemon never allocates inode numbers this high. */
#define CONTROL_DIR_INO (UINT64_C(1) << 62)

/* What a control file supports. */
#define CONTROL_READ 0x1u  /* open for reading fetches VFS_OP_CTL_READ */
#define CONTROL_WRITE 0x2u /* each write() runs VFS_OP_CTL_WRITE */
/* A control stream (VFS_OP_CTL_OPEN ...): read piecewise (CONTROL_READ)
 * or written whole and run at close (CONTROL_WRITE), of any size. */
#define CONTROL_STREAM 0x4u

struct control_file {
	const char *name; /* sent to the daemon as the op's name */
	uint64_t ino;
	mode_t mode;      /* permission bits only */
	unsigned flags;   /* CONTROL_READ | CONTROL_WRITE */
};

/* True for the control directory and for every control file. */
bool control_is_ino(uint64_t ino);
/* The control file with this inode, or NULL (also NULL for the directory). */
const struct control_file *control_by_ino(uint64_t ino);
/* The control file with this name inside "/.vault", or NULL. */
const struct control_file *control_by_name(const char *name);
/* Number of control files and the i-th one (0 <= i < control_count()),
 * in a stable order, for readdir. */
size_t control_count(void);
const struct control_file *control_at(size_t i);
/* Fills *ret for the control directory or a control file (ino must satisfy
 * control_is_ino). Owner root:root, size 0, all times set to `when`. */
void control_stat(uint64_t ino, const struct timespec *when, struct stat *ret);

#endif
