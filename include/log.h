/* log.h - leveled, one-line-per-event logging to stderr, as text or JSON.
 *
 * The only global state of the program besides atomic counters: the level and
 * the format, set once by log_setup() before any thread starts. Callers must
 * never pass secrets (keys, tokens) in a message. */
#ifndef PPA_LOG_H
#define PPA_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* json != 0 writes one JSON object per line (CloudWatch friendly). */
void log_setup(enum log_level level, int json);
/* Parse "debug|info|warn|error" into *out; 0 or ERR_INVALID. */
int log_level_parse(const char *s, enum log_level *out);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);

/* The access-log line of one finished request. */
void log_access(const char *request_id, const char *client_ip, const char *method,
                const char *path, unsigned status, unsigned long long bytes, double ms);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
