/* s3.c - S3 request builder (see s3.h). Pure: libc + sigv4. */
#include "s3.h"

#include <stdio.h>
#include <string.h>

#define S3_HOST_MAX 320
#define S3_ERROR_SCAN_MAX (1u << 20) /* look at most 1 MiB into an error body */

/* Where requests go: scheme, Host header value, and the unencoded path. */
struct s3_loc {
    char scheme[8];
    char host[S3_HOST_MAX];
    char path[S3_KEY_MAX + 80];
};

static int is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_alnum(char c)
{
    return is_alnum_lower(c) || (c >= 'A' && c <= 'Z');
}

static int valid_bucket(const char *b)
{
    size_t n;
    if (b == NULL)
        return 0;
    n = strnlen(b, 64);
    if (n < 3 || n > 63 || !is_alnum_lower(b[0]) || !is_alnum_lower(b[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum_lower(b[i]) && b[i] != '.' && b[i] != '-')
            return 0;
    return 1;
}

static int valid_region(const char *r)
{
    size_t n;
    if (r == NULL)
        return 0;
    n = strnlen(r, 33);
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum_lower(r[i]) && r[i] != '-')
            return 0;
    return 1;
}

/* 1..S3_KEY_MAX bytes, no control characters (they are legal in S3 keys but
 * never produced by this service, and would be a logging/header hazard). */
static int valid_key(const char *k)
{
    size_t n;
    if (k == NULL)
        return 0;
    n = strnlen(k, S3_KEY_MAX + 1);
    if (n == 0 || n > S3_KEY_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
            return 0;
    return 1;
}

/* Printable ASCII only, so it is safe as a header value. */
static int valid_header_value(const char *v, size_t max)
{
    size_t n;
    if (v == NULL)
        return 0;
    n = strnlen(v, max + 1);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

/* Appends with truncation detection; *len tracks the used length. */
static int append(char *out, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len >= cap || n >= cap - *len)
        return -1;
    memcpy(out + *len, s, n + 1);
    *len += n;
    return 0;
}

/* scheme://authority[/] -> scheme + authority (default port removed). */
static int parse_endpoint(const char *ep, char *scheme, size_t scheme_cap, char *auth, size_t auth_cap)
{
    const char *a, *end, *colon = NULL;
    size_t n, len = 0;

    if (strncmp(ep, "http://", 7) == 0) {
        a = ep + 7;
        if (append(scheme, scheme_cap, &len, "http") < 0)
            return -1;
    } else if (strncmp(ep, "https://", 8) == 0) {
        a = ep + 8;
        if (append(scheme, scheme_cap, &len, "https") < 0)
            return -1;
    } else {
        return -1;
    }
    end = a;
    while (*end != '\0' && *end != '/')
        end++;
    if (!(*end == '\0' || (end[0] == '/' && end[1] == '\0')))
        return -1; /* a base path is not supported */
    n = (size_t)(end - a);
    if (n == 0 || n >= auth_cap)
        return -1;
    for (const char *p = a; p < end; p++) {
        if (*p == ':') {
            if (colon != NULL)
                return -1;
            colon = p;
        } else if (colon != NULL ? !(*p >= '0' && *p <= '9') : !(is_alnum(*p) || *p == '.' || *p == '-')) {
            return -1; /* no userinfo, IPv6 literals or odd characters */
        }
    }
    if (colon == a || (colon != NULL && (colon + 1 == end || end - colon > 6)))
        return -1;
    if (colon != NULL && ((strcmp(scheme, "http") == 0 && strncmp(colon, ":80", 3) == 0 && end - colon == 3) ||
                          (strcmp(scheme, "https") == 0 && strncmp(colon, ":443", 4) == 0 && end - colon == 4)))
        n = (size_t)(colon - a); /* clients omit a default port from Host */
    memcpy(auth, a, n);
    auth[n] = '\0';
    return 0;
}

/* key NULL: the bucket itself ("/" or "/<bucket>" path style), for listings. */
static int locate_any(const struct s3_target *t, const char *key, struct s3_loc *loc)
{
    char auth[S3_HOST_MAX];
    size_t hl = 0, pl = 0;

    memset(loc, 0, sizeof(*loc));
    if (t == NULL || !valid_bucket(t->bucket) || !valid_region(t->region) || (key != NULL && !valid_key(key)))
        return -1;
    if (t->endpoint == NULL) {
        size_t al = 0;
        if (append(loc->scheme, sizeof(loc->scheme), &al, "https") < 0)
            return -1;
        al = 0;
        if (append(auth, sizeof(auth), &al, "s3.") < 0 || append(auth, sizeof(auth), &al, t->region) < 0 ||
            append(auth, sizeof(auth), &al, ".amazonaws.com") < 0)
            return -1;
    } else if (parse_endpoint(t->endpoint, loc->scheme, sizeof(loc->scheme), auth, sizeof(auth)) < 0) {
        return -1;
    }
    if (!t->path_style && (append(loc->host, sizeof(loc->host), &hl, t->bucket) < 0 ||
                           append(loc->host, sizeof(loc->host), &hl, ".") < 0))
        return -1;
    if (append(loc->host, sizeof(loc->host), &hl, auth) < 0)
        return -1;
    if (append(loc->path, sizeof(loc->path), &pl, "/") < 0)
        return -1;
    if (t->path_style && append(loc->path, sizeof(loc->path), &pl, t->bucket) < 0)
        return -1;
    if (key == NULL)
        return 0;
    if (t->path_style && append(loc->path, sizeof(loc->path), &pl, "/") < 0)
        return -1;
    return append(loc->path, sizeof(loc->path), &pl, key);
}

static int locate(const struct s3_target *t, const char *key, struct s3_loc *loc)
{
    return key == NULL ? -1 : locate_any(t, key, loc);
}

static int creds_ok(const struct s3_target *t)
{
    const struct sigv4_creds *c = &t->creds;
    return valid_header_value(c->access_key, 128) && c->secret_key != NULL && c->secret_key[0] != '\0' &&
           (c->session_token == NULL || c->session_token[0] == '\0' ||
            valid_header_value(c->session_token, S3_HEADER_MAX - 32));
}

static int has_token(const struct s3_target *t)
{
    return t->creds.session_token != NULL && t->creds.session_token[0] != '\0';
}

static void reset(struct s3_request *out)
{
    out->method[0] = '\0';
    out->url[0] = '\0';
    out->nheaders = 0;
}

static int add_header(struct s3_request *out, const char *name, const char *value)
{
    int n;
    if (out->nheaders >= S3_MAX_HEADERS)
        return -1;
    n = snprintf(out->headers[out->nheaders], S3_HEADER_MAX, "%s: %s", name, value);
    if (n < 0 || (size_t)n >= S3_HEADER_MAX)
        return -1;
    out->nheaders++;
    return 0;
}

static int set_method(struct s3_request *out, const char *m)
{
    size_t len = 0;
    return append(out->method, sizeof(out->method), &len, m);
}

/* scheme://host + encoded path [+ nothing else] */
static int base_url(const struct s3_loc *loc, char *out, size_t cap)
{
    size_t len = 0;
    int n;
    if (append(out, cap, &len, loc->scheme) < 0 || append(out, cap, &len, "://") < 0 ||
        append(out, cap, &len, loc->host) < 0)
        return -1;
    n = sigv4_uri_encode(loc->path, 1, out + len, cap - len);
    return n < 0 ? -1 : 0;
}

int s3_make_key(const char *prefix, const char *uuid, const char *ext, char *out, size_t cap)
{
    size_t len = 0, n;
    if (out == NULL || cap == 0)
        return -1;
    out[0] = '\0';
    if (prefix == NULL || uuid == NULL || ext == NULL)
        return -1;
    n = strnlen(uuid, 65);
    if (n == 0 || n > 64)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(uuid[i]) && uuid[i] != '-')
            return -1;
    n = strnlen(ext, 17);
    if (n == 0 || n > 16)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(ext[i]))
            return -1;
    if (append(out, cap, &len, prefix) < 0 || append(out, cap, &len, uuid) < 0 || append(out, cap, &len, ".") < 0 ||
        append(out, cap, &len, ext) < 0 || !valid_key(out)) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int s3_object_url(const struct s3_target *t, const char *key, char *out, size_t cap)
{
    struct s3_loc loc;
    if (out == NULL || cap == 0)
        return -1;
    out[0] = '\0';
    if (locate(t, key, &loc) < 0 || base_url(&loc, out, cap) < 0) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

/* Shared by the header-signed builders. signed_h: headers signed besides
 * host/x-amz-date/x-amz-security-token, already in out->headers order.
 * query (decoded pairs, may be NULL) is signed and appended to the URL in
 * canonical form. */
static int sign_common(const struct s3_target *t, const char *method, const struct s3_loc *loc,
                       const struct sigv4_kv *query, size_t nquery, const struct sigv4_kv *signed_h, size_t nsigned,
                       const char *payload, time_t now, struct s3_request *out)
{
    char auth[1024], amz[17];
    if (sigv4_sign_headers(&t->creds, t->region, "s3", method, loc->host, loc->path, query, nquery, signed_h, nsigned,
                           payload, now, 1, auth, sizeof(auth), amz) < 0)
        return -1;
    if (set_method(out, method) < 0 || base_url(loc, out->url, sizeof(out->url)) < 0)
        return -1;
    if (nquery > 0) {
        size_t len = strlen(out->url);
        if (len + 1 >= sizeof(out->url))
            return -1;
        out->url[len++] = '?';
        out->url[len] = '\0';
        if (sigv4_canonical_query(query, nquery, out->url + len, sizeof(out->url) - len) < 0)
            return -1;
    }
    if (add_header(out, "x-amz-date", amz) < 0 ||
        (has_token(t) && add_header(out, "x-amz-security-token", t->creds.session_token) < 0) ||
        add_header(out, "Authorization", auth) < 0)
        return -1;
    return 0;
}

static int is_hex64(const char *s)
{
    if (strnlen(s, 65) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int s3_sign_put(const struct s3_target *t, const char *key, const char *content_type, unsigned long long content_length,
                const char *payload_sha256_hex, time_t now, struct s3_request *out)
{
    struct s3_loc loc;
    char clen[24];
    const char *payload = payload_sha256_hex ? payload_sha256_hex : SIGV4_UNSIGNED_PAYLOAD;
    struct sigv4_kv h[2];

    if (out == NULL)
        return -1;
    reset(out);
    if (locate(t, key, &loc) < 0 || !creds_ok(t) || !valid_header_value(content_type, 255) ||
        (payload_sha256_hex != NULL && !is_hex64(payload_sha256_hex)))
        goto fail;
    snprintf(clen, sizeof(clen), "%llu", content_length);
    h[0] = (struct sigv4_kv){"Content-Type", content_type};
    h[1] = (struct sigv4_kv){"x-amz-content-sha256", payload};
    if (add_header(out, "Content-Type", content_type) < 0 || add_header(out, "Content-Length", clen) < 0 ||
        add_header(out, "x-amz-content-sha256", payload) < 0 ||
        sign_common(t, "PUT", &loc, NULL, 0, h, 2, payload, now, out) < 0)
        goto fail;
    return 0;
fail:
    reset(out);
    return -1;
}

int s3_sign_get(const struct s3_target *t, const char *method, const char *key, time_t now, struct s3_request *out)
{
    struct s3_loc loc;
    const struct sigv4_kv h[] = {{"x-amz-content-sha256", SIGV4_EMPTY_SHA256}};

    if (out == NULL)
        return -1;
    reset(out);
    if (method == NULL || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "DELETE") != 0))
        goto fail;
    if (locate(t, key, &loc) < 0 || !creds_ok(t) || add_header(out, "x-amz-content-sha256", SIGV4_EMPTY_SHA256) < 0 ||
        sign_common(t, method, &loc, NULL, 0, h, 1, SIGV4_EMPTY_SHA256, now, out) < 0)
        goto fail;
    return 0;
fail:
    reset(out);
    return -1;
}

/* A continuation token as S3 hands it out: printable ASCII, no spaces. */
static int valid_token(const char *s)
{
    size_t n;
    if (s == NULL)
        return 0;
    n = strnlen(s, S3_TOKEN_MAX + 1);
    if (n == 0 || n > S3_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

int s3_sign_list(const struct s3_target *t, const char *prefix, const char *start_after, const char *continuation_token,
                 unsigned max_keys, time_t now, struct s3_request *out)
{
    struct s3_loc loc;
    const struct sigv4_kv h[] = {{"x-amz-content-sha256", SIGV4_EMPTY_SHA256}};
    struct sigv4_kv q[4];
    size_t nq = 0;
    char mk[16];

    if (out == NULL)
        return -1;
    reset(out);
    if (max_keys < 1 || max_keys > S3_LIST_MAX_KEYS || (prefix != NULL && prefix[0] && !valid_key(prefix)) ||
        (start_after != NULL && start_after[0] && !valid_key(start_after)) ||
        (continuation_token != NULL && continuation_token[0] && !valid_token(continuation_token)) ||
        (start_after != NULL && start_after[0] && continuation_token != NULL && continuation_token[0]))
        goto fail;
    snprintf(mk, sizeof(mk), "%u", max_keys);
    q[nq++] = (struct sigv4_kv){"list-type", "2"};
    q[nq++] = (struct sigv4_kv){"max-keys", mk};
    if (prefix != NULL && prefix[0])
        q[nq++] = (struct sigv4_kv){"prefix", prefix};
    if (start_after != NULL && start_after[0])
        q[nq++] = (struct sigv4_kv){"start-after", start_after};
    else if (continuation_token != NULL && continuation_token[0])
        q[nq++] = (struct sigv4_kv){"continuation-token", continuation_token};
    if (locate_any(t, NULL, &loc) < 0 || !creds_ok(t) ||
        add_header(out, "x-amz-content-sha256", SIGV4_EMPTY_SHA256) < 0 ||
        sign_common(t, "GET", &loc, q, nq, h, 1, SIGV4_EMPTY_SHA256, now, out) < 0)
        goto fail;
    return 0;
fail:
    reset(out);
    return -1;
}

static int presign(const struct s3_target *t, const char *method, const char *key, const char *content_type,
                   unsigned expires, time_t now, struct s3_request *out)
{
    struct s3_loc loc;
    struct sigv4_kv h[1];
    size_t nh = 0;

    if (out == NULL)
        return -1;
    reset(out);
    if (locate(t, key, &loc) < 0 || !creds_ok(t))
        goto fail;
    if (content_type != NULL) {
        if (!valid_header_value(content_type, 255))
            goto fail;
        h[nh++] = (struct sigv4_kv){"Content-Type", content_type};
        if (add_header(out, "Content-Type", content_type) < 0)
            goto fail;
    }
    if (set_method(out, method) < 0 ||
        sigv4_presign_url(&t->creds, t->region, "s3", method, loc.scheme, loc.host, loc.path, NULL, 0, h, nh, NULL,
                          expires, now, 1, out->url, sizeof(out->url)) < 0)
        goto fail;
    return 0;
fail:
    reset(out);
    return -1;
}

int s3_presign_get(const struct s3_target *t, const char *key, unsigned expires, time_t now, struct s3_request *out)
{
    return presign(t, "GET", key, NULL, expires, now, out);
}

int s3_presign_put(const struct s3_target *t, const char *key, const char *content_type, unsigned expires, time_t now,
                   struct s3_request *out)
{
    if (content_type == NULL) {
        if (out != NULL)
            reset(out);
        return -1;
    }
    return presign(t, "PUT", key, content_type, expires, now, out);
}

/* ---- error body ---------------------------------------------------------- */

/* Text of the first <tag>...</tag> in body[0..len), XML-unescaped into out.
 * Returns 0 if both tags were found. */
static int xml_element(const char *body, size_t len, const char *tag, char *out, size_t cap)
{
    char open[32], close[32];
    const char *s, *e;
    size_t o = 0;
    int n1 = snprintf(open, sizeof(open), "<%s>", tag);
    int n2 = snprintf(close, sizeof(close), "</%s>", tag);

    if (out == NULL || cap == 0)
        return -1;
    out[0] = '\0';
    if (body == NULL || n1 < 0 || n2 < 0 || (size_t)n2 >= sizeof(close))
        return -1;
    s = memmem(body, len, open, (size_t)n1);
    if (s == NULL)
        return -1;
    s += n1;
    e = memmem(s, len - (size_t)(s - body), close, (size_t)n2);
    if (e == NULL)
        return -1;
    while (s < e && o + 1 < cap) {
        static const struct {
            const char *ent;
            char ch;
        } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
        char c = *s;
        size_t adv = 1;
        if (c == '&') {
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t el = strlen(ents[i].ent);
                if ((size_t)(e - s) >= el && memcmp(s, ents[i].ent, el) == 0) {
                    c = ents[i].ch;
                    adv = el;
                    break;
                }
            }
        }
        if ((unsigned char)c < 0x20 || c == 0x7f)
            c = '?';
        out[o++] = c;
        s += adv;
    }
    out[o] = '\0';
    return 0;
}

int s3_parse_error(const char *body, size_t len, char *code, size_t code_cap, char *msg, size_t msg_cap)
{
    int rc;
    if (len > S3_ERROR_SCAN_MAX)
        len = S3_ERROR_SCAN_MAX;
    if (msg != NULL && msg_cap > 0)
        msg[0] = '\0';
    rc = xml_element(body, len, "Code", code, code_cap);
    if (rc < 0 || code[0] == '\0')
        return -1;
    if (msg != NULL && msg_cap > 0)
        (void)xml_element(body, len, "Message", msg, msg_cap);
    return 0;
}

/* ---- ListObjectsV2 answer ------------------------------------------------ */

/* XML text in [s, e) decoded into out (cap bytes with the NUL): the five
 * named entities and &#N; / &#xH; below 0x80. Unlike xml_element this never
 * truncates or replaces: -1 when it does not fit or has another entity. */
static int xml_text_strict(const char *s, const char *e, char *out, size_t cap)
{
    static const struct {
        const char *ent;
        char ch;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t o = 0;

    while (s < e) {
        char c = *s++;
        if (c == '&') {
            const char *semi = memchr(s, ';', (size_t)(e - s) < 12 ? (size_t)(e - s) : 12);
            int found = 0;
            if (semi == NULL)
                return -1;
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]) && !found; i++) {
                size_t el = strlen(ents[i].ent) - 1; /* after the '&' */
                if ((size_t)(semi + 1 - s) == el && memcmp(s, ents[i].ent + 1, el) == 0) {
                    c = ents[i].ch;
                    found = 1;
                }
            }
            if (!found && s[0] == '#') {
                int hex = s[1] == 'x' || s[1] == 'X';
                const char *d = s + 1 + hex;
                unsigned long v = 0;
                if (d == semi)
                    return -1;
                for (; d < semi; d++) {
                    int dv = (*d >= '0' && *d <= '9')          ? *d - '0'
                             : hex && (*d >= 'a' && *d <= 'f') ? *d - 'a' + 10
                             : hex && (*d >= 'A' && *d <= 'F') ? *d - 'A' + 10
                                                               : -1;
                    if (dv < 0)
                        return -1;
                    v = v * (hex ? 16u : 10u) + (unsigned long)dv;
                    if (v >= 0x80)
                        return -1; /* only ASCII by reference: our keys are ASCII */
                }
                c = (char)v;
                found = 1;
            }
            if (!found)
                return -1;
            s = semi + 1;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = c;
    }
    if (cap == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* The text between open and close tags inside [s, e) into ts and te, or -1. */
static int find_element(const char *s, const char *e, const char *open, const char *close, const char **ts,
                        const char **te)
{
    size_t ol = strlen(open), cl = strlen(close);
    const char *a = memmem(s, (size_t)(e - s), open, ol), *b;
    if (a == NULL)
        return -1;
    a += ol;
    b = memmem(a, (size_t)(e - a), close, cl);
    if (b == NULL)
        return -1;
    *ts = a;
    *te = b;
    return 0;
}

int s3_parse_list(const char *body, size_t len, int (*on_key)(const char *key, void *arg), void *arg, int *truncated,
                  char *next_token, size_t token_cap, size_t *skipped)
{
    const char *p, *end, *ts, *te;
    char key[S3_KEY_MAX + 1];
    int rc;

    if (next_token != NULL && token_cap > 0)
        next_token[0] = '\0';
    if (skipped != NULL)
        *skipped = 0;
    if (truncated != NULL)
        *truncated = 0;
    if (body == NULL || truncated == NULL || next_token == NULL || token_cap == 0 || on_key == NULL)
        return -1;
    if (len > S3_LIST_SCAN_MAX)
        return -1; /* never a listing of at most 1000 keys */
    end = body + len;
    /* Text never holds a raw '<', so a tag found anywhere is markup. */
    if (memmem(body, len, "<ListBucketResult", 17) == NULL)
        return -1;
    if (find_element(body, end, "<IsTruncated>", "</IsTruncated>", &ts, &te) < 0)
        return -1;
    if (te - ts == 4 && memcmp(ts, "true", 4) == 0)
        *truncated = 1;
    else if (!(te - ts == 5 && memcmp(ts, "false", 5) == 0))
        return -1;
    if (find_element(body, end, "<NextContinuationToken>", "</NextContinuationToken>", &ts, &te) == 0 &&
        (xml_text_strict(ts, te, next_token, token_cap) < 0 || !valid_token(next_token))) {
        next_token[0] = '\0';
        return -1;
    }
    if (*truncated && next_token[0] == '\0')
        return -1; /* a truncated listing we could not continue */
    for (p = body; p < end;) {
        const char *cs = memmem(p, (size_t)(end - p), "<Contents>", 10), *ce;
        if (cs == NULL)
            break;
        ce = memmem(cs, (size_t)(end - cs), "</Contents>", 11);
        if (ce == NULL)
            return -1;
        if (find_element(cs, ce, "<Key>", "</Key>", &ts, &te) < 0 || xml_text_strict(ts, te, key, sizeof(key)) < 0 ||
            !valid_key(key)) {
            if (skipped != NULL)
                (*skipped)++;
        } else if ((rc = on_key(key, arg)) != 0) {
            return rc;
        }
        p = ce + 11;
    }
    return 0;
}
