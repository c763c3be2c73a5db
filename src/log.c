/* log.c - see log.h. Lines are formatted into a bounded stack buffer and
 * written with one write(2) so lines from different threads never interleave. */
#include "log.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static enum log_level g_level = LOG_INFO;
static int g_json;

void log_setup(enum log_level level, int json)
{
    g_level = level;
    g_json = json;
}

int log_level_parse(const char *s, enum log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (unsigned i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return ERR_INVALID;
}

static const char *level_name(enum log_level l)
{
    switch (l) {
    case LOG_DEBUG: return "debug";
    case LOG_INFO: return "info";
    case LOG_WARN: return "warn";
    default: return "error";
    }
}

static size_t timestamp(char *out, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    return n;
}

/* Append `s` to out[*len..cap) as JSON string content (without quotes). */
static void json_escape_into(char *out, size_t *len, size_t cap, const char *s)
{
    for (; *s && *len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*len)++] = '\\';
            out[(*len)++] = (char)c;
        } else if (c < 0x20) {
            *len += (size_t)snprintf(out + *len, cap - *len, "\\u%04x", c);
        } else {
            out[(*len)++] = (char)c;
        }
    }
}

static void emit(char *line, size_t len)
{
    ssize_t w;
    size_t off = 0;

    while (off < len) {
        w = write(STDERR_FILENO, line + off, len - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX];
    char line[LOG_LINE_MAX * 2];
    char ts[40];
    size_t len = 0;
    va_list ap;

    if (level < g_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof ts);
    if (g_json) {
        len = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                               level_name(level));
        json_escape_into(line, &len, sizeof line - 4, msg);
        line[len++] = '"';
        line[len++] = '}';
    } else {
        len = (size_t)snprintf(line, sizeof line, "%s %-5s %s", ts, level_name(level), msg);
        if (len >= sizeof line - 1)
            len = sizeof line - 2;
    }
    line[len++] = '\n';
    emit(line, len);
}

void log_access(const char *request_id, const char *client_ip, const char *method,
                const char *path, unsigned status, unsigned long long bytes, double ms)
{
    char line[LOG_LINE_MAX];
    char ts[40];
    size_t len = 0;

    if (LOG_INFO < g_level)
        return;
    timestamp(ts, sizeof ts);
    if (g_json) {
        len = (size_t)snprintf(line, sizeof line,
                               "{\"time\":\"%s\",\"level\":\"info\",\"type\":\"access\",\"request_id\":\"%s\","
                               "\"client\":\"",
                               ts, request_id);
        json_escape_into(line, &len, sizeof line - 200, client_ip);
        len += (size_t)snprintf(line + len, sizeof line - len, "\",\"method\":\"");
        json_escape_into(line, &len, sizeof line - 200, method);
        len += (size_t)snprintf(line + len, sizeof line - len, "\",\"path\":\"");
        json_escape_into(line, &len, sizeof line - 120, path);
        len += (size_t)snprintf(line + len, sizeof line - len,
                                "\",\"status\":%u,\"bytes\":%llu,\"ms\":%.2f}", status, bytes, ms);
    } else {
        /* Text format: the path is cut to keep the line bounded; control
         * characters are replaced so a request cannot forge log lines. */
        char safe[512];
        size_t i = 0;
        for (; path[i] && i < sizeof safe - 1; i++)
            safe[i] = ((unsigned char)path[i] < 0x20 || path[i] == 0x7f) ? '?' : path[i];
        safe[i] = '\0';
        len = (size_t)snprintf(line, sizeof line, "%s info  access %s %s %s %s %u %llu %.2fms", ts,
                               request_id, client_ip, method, safe, status, bytes, ms);
    }
    if (len >= sizeof line - 1)
        len = sizeof line - 2;
    line[len++] = '\n';
    emit(line, len);
}
