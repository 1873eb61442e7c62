/* Failure injection for tests, compiled in only with -Dfailpoints=true.
 *
 * VAULTFS_FAILPOINTS="name=N,other=M" makes failpoint_hit("name") true the
 * first N times it is asked (N = -1: always); failpoint_value("name") is N
 * itself, for a failpoint that takes a number. Release builds compile every
 * failpoint away. */
#ifndef VAULTFS_LIB_FAILPOINT_H
#define VAULTFS_LIB_FAILPOINT_H

#include <stdbool.h>

#ifdef VAULTFS_FAILPOINTS
bool failpoint_hit(const char *name);
/* The number set for NAME, 0 if none; neither counts nor logs. */
long failpoint_value(const char *name);
#else
static inline bool failpoint_hit(const char *name)
{
	(void)name;
	return false;
}
static inline long failpoint_value(const char *name)
{
	(void)name;
	return 0;
}
#endif

#endif
