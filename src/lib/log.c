#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

static const char *log_ident = "vaultfs";
static enum log_level log_min = LOG_LEVEL_INFO;

void log_set_ident(const char *ident) { log_ident = ident; }
void log_set_level(enum log_level min) { log_min = min; }

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	if (level < log_min)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line so that concurrent writers do not interleave. */
	fprintf(stderr, "%s[%d]: %s: %s\n", log_ident, (int)getpid(), names[level], line);
}
