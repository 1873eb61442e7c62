/* What lincheck tells about the moment of an anomaly, besides the
 * operations: which mount each process used (from the `# process P mount M`
 * lines faultclient writes at the top of each history) and the nemesis
 * faults around it (a faults file: `<monotonic_ns> <realtime_ns> <text>`
 * per line, on the clock of the histories), with the wall-clock time of the
 * anomaly so that the daemons' logs can be lined up. */
#ifndef VAULTFS_TESTS_LINCONTEXT_H
#define VAULTFS_TESTS_LINCONTEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Faults this far before or after an anomaly are printed with it. */
#define LINCONTEXT_WINDOW_NS 5000000000u

/* Takes a history comment line; true if it named a process's mount. */
bool lincontext_note_line(const char *line);
/* Reads the faults file; 0, or -1 after printing why. */
int lincontext_load_faults(const char *path);
/* The mount process P used, or NULL when unknown. */
const char *lincontext_mount_of(uint64_t process);
/* Prints, indented, the wall-clock time of AT_NS (a history time) and the
 * faults within LINCONTEXT_WINDOW_NS of it, relative to it. */
void lincontext_print_faults(FILE *out, uint64_t at_ns);
void lincontext_free(void);

#endif
