/* One line per event on stderr: "TIME vaultfsd[pid]: LEVEL: message", TIME
 * in UTC to the millisecond (left out when stderr is journald's, which
 * stamps lines itself), or to syslog once log_use_syslog was called.
 * Never pass a secret value, a secret name or key material to these. */
#ifndef VAULTFS_LIB_LOG_H
#define VAULTFS_LIB_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Program name shown in each line; default "vaultfs". */
void log_set_ident(const char *ident);
void log_set_level(enum log_level min);
/* From now on to syslog (LOG_DAEMON): for a process without a stderr. */
void log_use_syslog(void);
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
