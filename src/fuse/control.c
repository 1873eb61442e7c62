#include "fuse/control.h"

#include <string.h>

/* To add a control file, append a line: the inode is CONTROL_DIR_INO plus
 * its position, so existing files keep their numbers. Writable files are
 * root-only (0600); the daemon enforces that too. */
static const struct control_file control_files[] = {
	{ "status", CONTROL_DIR_INO + 1, 0444, CONTROL_READ },
	{ "peers", CONTROL_DIR_INO + 2, 0444, CONTROL_READ },
	{ "init", CONTROL_DIR_INO + 3, 0600, CONTROL_READ | CONTROL_WRITE },
	{ "unseal", CONTROL_DIR_INO + 4, 0600, CONTROL_READ | CONTROL_WRITE },
	{ "seal", CONTROL_DIR_INO + 5, 0600, CONTROL_WRITE },
	{ "join", CONTROL_DIR_INO + 6, 0600, CONTROL_READ | CONTROL_WRITE },
	{ "step-down", CONTROL_DIR_INO + 7, 0600, CONTROL_WRITE },
	{ "remove-peer", CONTROL_DIR_INO + 8, 0600, CONTROL_WRITE },
	{ "rotate", CONTROL_DIR_INO + 9, 0600, CONTROL_WRITE },
	{ "rekey", CONTROL_DIR_INO + 10, 0600, CONTROL_READ | CONTROL_WRITE },
	{ "health", CONTROL_DIR_INO + 11, 0444, CONTROL_READ },
	{ "metrics", CONTROL_DIR_INO + 12, 0444, CONTROL_READ },
	{ "snapshot", CONTROL_DIR_INO + 13, 0400, CONTROL_READ | CONTROL_STREAM },
	{ "restore", CONTROL_DIR_INO + 14, 0200, CONTROL_WRITE | CONTROL_STREAM },
	{ "audit-hash", CONTROL_DIR_INO + 15, 0600, CONTROL_READ | CONTROL_WRITE },
};

#define CONTROL_NFILES (sizeof(control_files) / sizeof(control_files[0]))

bool control_is_ino(uint64_t ino)
{
	return ino == CONTROL_DIR_INO || control_by_ino(ino) != NULL;
}

const struct control_file *control_by_ino(uint64_t ino)
{
	if (ino <= CONTROL_DIR_INO || ino > CONTROL_DIR_INO + CONTROL_NFILES)
		return NULL;
	return &control_files[ino - CONTROL_DIR_INO - 1];
}

const struct control_file *control_by_name(const char *name)
{
	for (size_t i = 0; i < CONTROL_NFILES; i++) {
		if (strcmp(control_files[i].name, name) == 0)
			return &control_files[i];
	}
	return NULL;
}

size_t control_count(void)
{
	return CONTROL_NFILES;
}

const struct control_file *control_at(size_t i)
{
	return i < CONTROL_NFILES ? &control_files[i] : NULL;
}

void control_stat(uint64_t ino, const struct timespec *when, struct stat *ret)
{
	const struct control_file *f = control_by_ino(ino);

	memset(ret, 0, sizeof(*ret));
	ret->st_ino = ino;
	if (f == NULL) {
		ret->st_mode = S_IFDIR | 0755;
		ret->st_nlink = 2;
	} else {
		/* Size 0: the files are direct_io, so reads are not bounded by
		 * it, and a size would mislead (contents change per read). */
		ret->st_mode = S_IFREG | f->mode;
		ret->st_nlink = 1;
	}
	ret->st_uid = 0;
	ret->st_gid = 0;
	ret->st_blksize = 4096;
	ret->st_atim = *when;
	ret->st_mtim = *when;
	ret->st_ctim = *when;
}
