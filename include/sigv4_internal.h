/* sigv4_internal.h - private to the SigV4 modules; the interface is sigv4.h.
 *   sigv4_canon.c  canonicalisation: percent-encoding, canonical URI, query, headers and request
 *   sigv4.c        hashing, scope, string to sign, signing key, header auth and presigned URLs
 * Both write text through the bounded writer below (static inline: it is on every
 * byte of a canonical request), and the signers check their arguments with the
 * header-name helpers of sigv4_canon.c. */
#ifndef SIGV4_INTERNAL_H
#define SIGV4_INTERNAL_H

#include "sigv4.h"

#include <limits.h>
#include <stddef.h>
#include <string.h>

#define SIGV4_MAX_INPUT (1u << 20) /* no single input string may exceed 1 MiB */

/* ---- bounded output writer ------------------------------------------------ */

struct sv_out {
    char *p;
    size_t cap;
    size_t len;
    int err;
};

static inline void out_init(struct sv_out *o, char *p, size_t cap)
{
    o->p = p;
    o->cap = cap;
    o->len = 0;
    o->err = (p == NULL || cap == 0);
    if (!o->err)
        p[0] = '\0';
}

static inline void out_mem(struct sv_out *o, const char *s, size_t n)
{
    if (o->err)
        return;
    if (n >= o->cap - o->len) {
        o->err = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static inline void out_str(struct sv_out *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

static inline void out_ch(struct sv_out *o, char c)
{
    out_mem(o, &c, 1);
}

/* Finish: the length, or -1 (and an empty string) on overflow. */
static inline int out_done(struct sv_out *o)
{
    if (o->err || o->len > INT_MAX) {
        if (o->p != NULL && o->cap > 0)
            o->p[0] = '\0';
        return -1;
    }
    return (int)o->len;
}

static inline int too_long(const char *s)
{
    return s == NULL || strnlen(s, SIGV4_MAX_INPUT) >= SIGV4_MAX_INPUT;
}

static inline int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ---- sigv4_canon.c, for the signers ------------------------------------------------------ */

/* Name equality as for header names: ASCII case-insensitive. */
int sv_name_is(const char *name, const char *want);

/* A header name: a non-empty token (no controls, spaces or ':') under 1 MiB. */
int sv_valid_header_name(const char *s);

/* The SignedHeaders list ("a;b;c") of n headers: lower-cased, sorted, each name once.
 * Returns the length, or negative on a bad header or if it does not fit (cap bytes). */
int sv_signed_headers(const struct sigv4_kv *h, size_t n, char *out, size_t cap);

#endif /* SIGV4_INTERNAL_H */
