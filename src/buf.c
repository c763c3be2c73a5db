/* buf.c - bounded, growable byte buffer. See buf.h. */
#include "buf.h"
#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static int buf_grow(struct buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 256;
    char *p;

    if (need > b->max)
        return ERR_TOO_LARGE;
    while (cap < need + 1)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    p = realloc(b->data, cap);
    if (!p)
        return ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    int rc;

    if (len > b->max - b->len)
        return ERR_TOO_LARGE;
    if (b->len + len + 1 > b->cap) {
        rc = buf_grow(b, b->len + len);
        if (rc)
            return rc;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_appends(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int n;
    int rc;
    char *big;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ERR_INVALID;
    if ((size_t)n < sizeof small)
        return buf_append(b, small, (size_t)n);
    if ((size_t)n > b->max - b->len)
        return ERR_TOO_LARGE;
    big = malloc((size_t)n + 1);
    if (!big)
        return ERR_NOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

const char *buf_str(const struct buf *b)
{
    return b->data ? b->data : "";
}

char *buf_take(struct buf *b)
{
    char *p = b->data;

    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

const char *err_str(int err)
{
    switch (err) {
    case ERR_OK: return "ERR_OK";
    case ERR_NOMEM: return "ERR_NOMEM";
    case ERR_TOO_LARGE: return "ERR_TOO_LARGE";
    case ERR_INVALID: return "ERR_INVALID";
    case ERR_IO: return "ERR_IO";
    case ERR_UPSTREAM: return "ERR_UPSTREAM";
    case ERR_NOT_FOUND: return "ERR_NOT_FOUND";
    case ERR_TIMEOUT: return "ERR_TIMEOUT";
    case ERR_UNSUPPORTED: return "ERR_UNSUPPORTED";
    default: return "ERR_UNKNOWN";
    }
}
