/* taskstore_s3.c - the task store as S3 objects under S3_TASKS_PREFIX: open,
 * destroy and the ops table, and the names of the objects (the layout and
 * the modules are in taskstore_s3.h). */
#include "taskstore_s3.h"
#include "config.h"
#include "err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- keys ------------------------------------------------------------------ */

/* Task ids as KIE makes them: 1-128 of [A-Za-z0-9._-], not starting with '.'. */
static int valid_id_n(const char *s, size_t n)
{
    if (n == 0 || n > TS3_ID_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

int ts3_valid_id(const char *s)
{
    size_t n = strnlen(s, TS3_ID_MAX + 1);
    return valid_id_n(s, n);
}

static int valid_prefix(const char *p)
{
    size_t n = strnlen(p, TS3_PREFIX_MAX + 1);
    if (n > TS3_PREFIX_MAX || p[0] == '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '/'))
            return 0;
    }
    return 1;
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int ts3_parse_marker(const char *name, long long *inv)
{
    size_t n = strnlen(name, TS3_MARKER_MAX);
    long long v = 0;
    if (n >= TS3_MARKER_MAX || n < 15 || !is_digits(name, 13) || name[13] != '-' || !valid_id_n(name + 14, n - 14))
        return -1;
    for (int i = 0; i < 13; i++)
        v = v * 10 + (name[i] - '0');
    *inv = v;
    return 0;
}

int ts3_format_credits(double v, char *out, size_t cap)
{
    int n;
    if (!(v >= 0 && v < 1e12))
        return -1;
    n = snprintf(out, cap, "%.6f", v);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
    if (n > 0 && out[n - 1] == '.')
        out[--n] = '\0';
    return 0;
}

static int parse_credits(const char *s, double *out)
{
    size_t n = strlen(s), dots = 0;
    char *end = NULL;
    if (n == 0 || n > 24 || s[0] == '.' || s[n - 1] == '.')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.')
            dots++;
        else if (s[i] < '0' || s[i] > '9')
            return -1;
    }
    if (dots > 1)
        return -1;
    *out = strtod(s, &end);
    return end == s + n && isfinite(*out) ? 0 : -1;
}

int ts3_parse_credits_marker(const char *rest, char day[9], double *credits)
{
    const char *us;
    if (strnlen(rest, 9) < 9 || !is_digits(rest, 8) || rest[8] != '/')
        return -1;
    us = strrchr(rest + 9, '_');
    if (!us || !valid_id_n(rest + 9, (size_t)(us - (rest + 9))) || parse_credits(us + 1, credits))
        return -1;
    memcpy(day, rest, 8);
    day[8] = '\0';
    return 0;
}

int ts3_utc_day(time_t t, char day[9])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(day, 9, "%Y%m%d", &tm) != 8)
        return -1;
    return 0;
}

int ts3_make_key(const struct ts3 *s, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    size_t pl = strlen(s->prefix);
    int n;
    if (pl >= cap)
        return ERR_TOO_LARGE;
    memcpy(out, s->prefix, pl + 1);
    va_start(ap, fmt);
    n = vsnprintf(out + pl, cap - pl, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap - pl ? ERR_TOO_LARGE : 0;
}

const char *ts3_key_rest(const struct ts3 *s, const char *key, const char *sub)
{
    size_t pl = strlen(s->prefix), sl = strlen(sub);

    if (strncmp(key, s->prefix, pl) != 0 || strncmp(key + pl, sub, sl) != 0)
        return NULL;
    return key + pl + sl;
}

/* ---- open / destroy -------------------------------------------------------- */

static void ts3_destroy(struct taskstore *st)
{
    struct ts3 *s = st ? st->priv : NULL;
    if (s) {
        s3_config_target_free(&s->ct);
        free(s->prefix);
        free(s);
    }
    free(st);
}

const struct taskstore_ops taskstore_s3_ops = {
    .name = "s3",
    .async = 1,
    .put = ts3_put,
    .get = ts3_get,
    .list = ts3_list,
    .claim = ts3_claim,
    .finish = ts3_finish,
    .release = ts3_release,
    .count = ts3_count,
    .destroy = ts3_destroy,
};

struct taskstore *taskstore_s3_open(const struct config *cfg, struct upstream *up, char *err, size_t cap)
{
    struct taskstore *st = calloc(1, sizeof *st);
    struct ts3 *s = calloc(1, sizeof *s);
    const char *prefix = cfg->s3_tasks_prefix ? cfg->s3_tasks_prefix : "tasks/";

    if (!st || !s) {
        free(st);
        free(s);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    st->ops = &taskstore_s3_ops;
    st->priv = s;
    s->up = up;
    if (s3_config_target_init(&s->ct, cfg, err, cap))
        goto fail;
    if (!valid_prefix(prefix)) {
        snprintf(err, cap, "S3_TASKS_PREFIX must be at most %d of A-Z a-z 0-9 . _ - / and not start with /",
                 TS3_PREFIX_MAX);
        goto fail;
    }
    s->prefix = strdup(prefix);
    if (!s->prefix) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    return st;
fail:
    ts3_destroy(st);
    return NULL;
}
