/* sigv4_canon.c - SigV4 canonicalisation (see sigv4.h): percent-encoding, canonical URI, query and request. */
#include "sigv4.h"
#include "sigv4_internal.h"

#include <stdlib.h>
#include <string.h>

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static void out_encoded(struct sv_out *o, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n && !o->err; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            out_ch(o, (char)c);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            out_mem(o, esc, 3);
        }
    }
}

static char lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* ---- encoding and canonical pieces --------------------------------------------------- */

int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t cap)
{
    struct sv_out o;
    out_init(&o, out, cap);
    if (too_long(in))
        o.err = 1;
    else
        out_encoded(&o, in, strlen(in), keep_slash);
    return out_done(&o);
}

/* RFC 3986 remove_dot_segments plus collapsing of empty segments ("//"). */
static int normalize_path(const char *in, char *out, size_t cap)
{
    size_t len = 0;
    int trailing = 0;
    const char *p = in;

    if (cap < 2)
        return -1;
    out[len++] = '/'; /* invariant: out[0..len) starts and ends with '/' */
    for (;;) {
        const char *seg;
        size_t n;
        while (*p == '/')
            p++;
        seg = p;
        while (*p != '\0' && *p != '/')
            p++;
        n = (size_t)(p - seg);
        if (n == 0)
            break;
        trailing = (*p == '/');
        if (n == 1 && seg[0] == '.') {
            trailing = 1;
        } else if (n == 2 && seg[0] == '.' && seg[1] == '.') {
            if (len > 1) {
                len--; /* drop the final '/', then the segment before it */
                while (len > 0 && out[len - 1] != '/')
                    len--;
            }
            trailing = 1;
        } else {
            if (n + 1 >= cap - len)
                return -1;
            memcpy(out + len, seg, n);
            len += n;
            out[len++] = '/';
        }
    }
    if (!trailing && len > 1)
        len--;
    out[len] = '\0';
    return 0;
}

int sigv4_canonical_uri(const char *path, int normalize, char *out, size_t cap)
{
    struct sv_out o;
    char *tmp = NULL;
    const char *src = path;
    int rc;

    out_init(&o, out, cap);
    if (too_long(path)) {
        o.err = 1;
        goto out;
    }
    if (normalize) {
        size_t tcap = strlen(path) + 3; /* "/" + path + "/" + NUL */
        tmp = malloc(tcap);
        if (tmp == NULL || normalize_path(path, tmp, tcap) != 0) {
            o.err = 1;
            goto out;
        }
        src = tmp;
    }
    if (src[0] != '/')
        out_ch(&o, '/');
    out_encoded(&o, src, strlen(src), 1);
out:
    rc = out_done(&o);
    free(tmp);
    return rc;
}

struct enc_pair {
    char *name; /* encoded; name and value share one allocation */
    char *value;
};

static int cmp_enc_pair(const void *a, const void *b)
{
    const struct enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

int sigv4_canonical_query(const struct sigv4_kv *query, size_t nquery, char *out, size_t cap)
{
    struct sv_out o;
    struct enc_pair *pairs = NULL;
    size_t done = 0;
    int rc;

    out_init(&o, out, cap);
    if (nquery == 0)
        goto out;
    if (query == NULL || nquery > 10000) {
        o.err = 1;
        goto out;
    }
    pairs = calloc(nquery, sizeof(*pairs));
    if (pairs == NULL) {
        o.err = 1;
        goto out;
    }
    for (done = 0; done < nquery; done++) {
        const char *v = query[done].value != NULL ? query[done].value : "";
        size_t nl, vl, sz;
        struct sv_out e;
        if (too_long(query[done].name) || too_long(v)) {
            o.err = 1;
            goto out;
        }
        nl = strlen(query[done].name);
        vl = strlen(v);
        sz = 3 * nl + 3 * vl + 2;
        pairs[done].name = malloc(sz);
        if (pairs[done].name == NULL) {
            o.err = 1;
            goto out;
        }
        out_init(&e, pairs[done].name, 3 * nl + 1);
        out_encoded(&e, query[done].name, nl, 0);
        pairs[done].value = pairs[done].name + e.len + 1;
        out_init(&e, pairs[done].value, 3 * vl + 1);
        out_encoded(&e, v, vl, 0);
    }
    qsort(pairs, nquery, sizeof(*pairs), cmp_enc_pair);
    for (size_t i = 0; i < nquery; i++) {
        if (i > 0)
            out_ch(&o, '&');
        out_str(&o, pairs[i].name);
        out_ch(&o, '=');
        out_str(&o, pairs[i].value);
    }
out:
    rc = out_done(&o);
    if (pairs != NULL)
        for (size_t i = 0; i < done; i++)
            free(pairs[i].name);
    free(pairs);
    return rc;
}

/* Headers sorted by lower-cased name, stable for equal names. */
struct hdr_ref {
    const char *name;
    const char *value;
    size_t idx;
};

static int cmp_name_ci(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)lower_ascii(*a), y = (unsigned char)lower_ascii(*b);
        if (x != y || x == '\0')
            return (int)x - (int)y;
    }
}

int sv_name_is(const char *name, const char *want)
{
    return cmp_name_ci(name, want) == 0;
}

static int cmp_hdr_ref(const void *a, const void *b)
{
    const struct hdr_ref *x = a, *y = b;
    int c = cmp_name_ci(x->name, y->name);
    if (c != 0)
        return c;
    return x->idx < y->idx ? -1 : (x->idx > y->idx ? 1 : 0);
}

int sv_valid_header_name(const char *s)
{
    if (too_long(s) || *s == '\0')
        return 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || c == ':')
            return 0;
    }
    return 1;
}

/* Sorted copy of the header refs (caller frees), or NULL on bad input/OOM. */
static struct hdr_ref *sort_headers(const struct sigv4_kv *h, size_t n)
{
    struct hdr_ref *r;
    if (n == 0 || h == NULL || n > 1000)
        return NULL;
    r = calloc(n, sizeof(*r));
    if (r == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!sv_valid_header_name(h[i].name) || (h[i].value != NULL && too_long(h[i].value))) {
            free(r);
            return NULL;
        }
        r[i].name = h[i].name;
        r[i].value = h[i].value != NULL ? h[i].value : "";
        r[i].idx = i;
    }
    qsort(r, n, sizeof(*r), cmp_hdr_ref);
    return r;
}

static void out_lower(struct sv_out *o, const char *s)
{
    for (; *s != '\0'; s++)
        out_ch(o, lower_ascii(*s));
}

/* Trimmed value with whitespace runs collapsed to one space. */
static void out_header_value(struct sv_out *o, const char *v)
{
    int pending_space = 0;
    while (is_ws(*v))
        v++;
    for (; *v != '\0'; v++) {
        if (is_ws(*v)) {
            pending_space = 1;
            continue;
        }
        if (pending_space)
            out_ch(o, ' ');
        pending_space = 0;
        out_ch(o, *v);
    }
}

static void out_signed_headers(struct sv_out *o, const struct hdr_ref *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_name_ci(r[i].name, r[i - 1].name) == 0)
            continue;
        if (i > 0)
            out_ch(o, ';');
        out_lower(o, r[i].name);
    }
}

int sv_signed_headers(const struct sigv4_kv *h, size_t n, char *out, size_t cap)
{
    struct hdr_ref *sorted = sort_headers(h, n);
    struct sv_out o;
    int rc;

    out_init(&o, out, cap);
    if (sorted == NULL)
        o.err = 1;
    else
        out_signed_headers(&o, sorted, n);
    rc = out_done(&o);
    free(sorted);
    return rc;
}

int sigv4_canonical_request(const struct sigv4_request *req, char *out, size_t cap, char *signed_headers, size_t sh_cap)
{
    struct sv_out o, sh;
    struct hdr_ref *hs = NULL;
    int rc;

    out_init(&o, out, cap);
    out_init(&sh, signed_headers, sh_cap);
    if (req == NULL || too_long(req->method) || too_long(req->canonical_uri) || too_long(req->payload_hash) ||
        req->method[0] == '\0' || req->canonical_uri[0] != '/') {
        o.err = 1;
        goto out;
    }
    hs = sort_headers(req->headers, req->nheaders);
    if (hs == NULL) {
        o.err = 1;
        goto out;
    }
    out_str(&o, req->method);
    out_ch(&o, '\n');
    out_str(&o, req->canonical_uri);
    out_ch(&o, '\n');
    if (!o.err) {
        int q = sigv4_canonical_query(req->query, req->nquery, o.p + o.len, o.cap - o.len);
        if (q < 0)
            o.err = 1;
        else
            o.len += (size_t)q;
    }
    out_ch(&o, '\n');
    for (size_t i = 0; i < req->nheaders; i++) {
        int same = i > 0 && cmp_name_ci(hs[i].name, hs[i - 1].name) == 0;
        if (same) {
            out_ch(&o, ',');
        } else {
            if (i > 0)
                out_ch(&o, '\n');
            out_lower(&o, hs[i].name);
            out_ch(&o, ':');
        }
        out_header_value(&o, hs[i].value);
    }
    out_str(&o, "\n\n");
    {
        size_t mark = o.len;
        out_signed_headers(&o, hs, req->nheaders);
        if (signed_headers != NULL && !o.err)
            out_mem(&sh, o.p + mark, o.len - mark);
    }
    out_ch(&o, '\n');
    out_str(&o, req->payload_hash);
out:
    free(hs);
    rc = out_done(&o);
    if (signed_headers != NULL && (rc < 0 || out_done(&sh) < 0))
        return -1;
    return rc;
}
