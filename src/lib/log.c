#include "lib/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_ident = "vaultfs";
static enum log_level log_min = LOG_LEVEL_INFO;
static bool log_syslog;

void log_set_ident(const char *ident) { log_ident = ident; }
void log_set_level(enum log_level min) { log_min = min; }

void log_use_syslog(void)
{
	openlog(log_ident, LOG_PID, LOG_DAEMON);
	log_syslog = true;
}

/* systemd sets JOURNAL_STREAM to "DEV:INO" of the journal's stream when it
 * connects stderr to journald, which stamps every line itself. A child's
 * stderr redirected elsewhere inherits the variable, so it only counts
 * while stderr is still that stream. */
static bool log_to_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) != 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* "2026-12-06T12:46:39.123Z ": UTC to the millisecond, so that the logs of
 * several nodes (and a test's own records) line up. */
static void log_stamp(char *out, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, size - n, ".%03ldZ ", ts.tv_nsec / 1000000);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	static int journal = -1; /* not known yet */
	if (level < log_min)
		return;
	if (journal < 0)
		journal = log_to_journal();
	char line[1024], stamp[40] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_syslog) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
		syslog(prio[level], "%s: %s", names[level], line);
		return;
	}
	if (!journal)
		log_stamp(stamp, sizeof(stamp));
	/* One write per line so that concurrent writers do not interleave. */
	fprintf(stderr, "%s%s[%d]: %s: %s\n", stamp, log_ident, (int)getpid(), names[level], line);
}
