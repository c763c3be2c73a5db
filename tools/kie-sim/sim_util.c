/*
 * sim_util.c - logging, allocation, clocks and string helpers for kie-sim
 * (prototypes and contracts in sim.h). No state; safe from any thread.
 */
#include "sim.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sim_log(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kie-sim: %s\n", line);
}

void *sim_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fputs("kie-sim: out of memory\n", stderr);
        abort();
    }
    return p;
}

char *sim_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = sim_xmalloc(n);

    memcpy(p, s, n);
    return p;
}

static long long sim_clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000L;
}

long long sim_wall_ms(void)
{
    return sim_clock_ms(CLOCK_REALTIME);
}

long long sim_mono_ms(void)
{
    return sim_clock_ms(CLOCK_MONOTONIC);
}

int sim_parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

void *sim_reserve(void *buf, size_t *cap, size_t need, size_t max)
{
    size_t n = *cap ? *cap : 1024;
    void *nb;

    if (need <= *cap)
        return buf;
    while (n < need)
        n = n > max / 2 ? max : n * 2;
    if (n > max)
        n = max;
    nb = realloc(buf, n);
    if (nb)
        *cap = n;
    return nb;
}

void sim_copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

int sim_enum_index(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

size_t sim_utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xC0u) != 0x80u)
            n++;
    return n;
}

