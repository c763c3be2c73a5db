/* fuzz_sigv4.c - SigV4 canonicalisation (sigv4.h): URI encoding, canonical
 * URI (S3 and normalized), canonical query, canonical request, header
 * signing and presigned URLs, on fields split from the input.
 *
 * Input: 2 control bytes, then NUL-separated fields: path, method, host,
 * region, session token, then name/value pairs (query pairs first, then
 * header pairs). Control byte 0: bit 0 normalize (s3_mode off), bits 1-3
 * number of query pairs, bits 4-6 number of header pairs; byte 1: a small
 * output capacity for the truncation paths and the expiry.
 *
 * Oracles: every output is NUL-terminated, its length is the return value
 * and fits the buffer (buffers are exact-size heap blocks, so ASan sees any
 * overrun); a failure leaves "". Encoding round-trips; the canonical URI
 * decodes back to the path (S3) or is a fixed point of normalization with no
 * dot or empty segments; the canonical query is a sorted permutation of the
 * encoded pairs; whenever the documented preconditions hold, signing and
 * presigning succeed and produce the documented shapes. */
#include "fuzz_check.h"
#include "sigv4.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FIELDS 40
#define NOW ((time_t)1440938160) /* 20150830T123600Z, the AWS test-suite date */

struct fields {
    char *buf; /* all fields, NUL-separated, owned */
    const char *f[MAX_FIELDS];
    size_t n;
};

static const char *field(const struct fields *fs, size_t i)
{
    return i < fs->n ? fs->f[i] : "";
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode sigv4's encoding: only unreserved bytes, '/' (when allowed) and %XX
 * with upper-case hex may appear. Returns a malloc'd string or NULL. */
static char *decode(const char *s, int allow_slash)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    size_t k = 0;

    FUZZ_CHECK(out != NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = hexval(s[i + 1]); /* s[i + 1] is at worst the NUL */
            int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
            FUZZ_CHECK(hi >= 0 && lo >= 0, "bad escape in '%s'", s);
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                           c == '.' || c == '_' || c == '~' || (allow_slash && c == '/'),
                       "byte 0x%02x left unencoded in '%s'", c, s);
            out[k++] = (char)c;
        }
    }
    out[k] = '\0';
    return out;
}

/* The text contract: rc < 0 -> ""; else rc == strlen < cap. */
static void check_text(int rc, const char *out, size_t cap, const char *what)
{
    FUZZ_CHECK(cap > 0 && memchr(out, 0, cap) != NULL, "%s: output not terminated", what);
    if (rc < 0)
        FUZZ_CHECK(out[0] == '\0', "%s failed but left '%s'", what, out);
    else
        FUZZ_CHECK((size_t)rc == strlen(out) && (size_t)rc < cap, "%s: rc %d, strlen %zu, cap %zu", what, rc,
                   strlen(out), cap);
}

static void check_encode(const char *s, size_t small)
{
    for (int keep = 0; keep <= 1; keep++) {
        size_t cap = 3 * strlen(s) + 1;
        char *out = malloc(cap);
        char *tiny = malloc(small);
        char *back;
        int rc;

        FUZZ_CHECK(out && tiny, "out of memory");
        rc = sigv4_uri_encode(s, keep, out, cap);
        check_text(rc, out, cap, "sigv4_uri_encode");
        FUZZ_CHECK(rc >= 0, "sigv4_uri_encode failed with room for every byte escaped");
        back = decode(out, keep);
        FUZZ_CHECK(strcmp(back, s) == 0, "uri encoding does not round-trip");
        rc = sigv4_uri_encode(s, keep, tiny, small);
        check_text(rc, tiny, small, "sigv4_uri_encode (small)");
        if (rc >= 0)
            FUZZ_CHECK(strcmp(tiny, out) == 0, "small buffer gave a different encoding");
        free(back);
        free(tiny);
        free(out);
    }
}

static int has_bad_segment(const char *p)
{
    /* p starts with '/'; look at every segment */
    while (*p == '/') {
        const char *seg = p + 1;
        size_t n = strcspn(seg, "/");
        int last = seg[n] == '\0';
        if ((n == 0 && !last) || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 1;
        p = seg + n;
    }
    return 0;
}

static void check_canonical_uri(const char *path, size_t small)
{
    for (int norm = 0; norm <= 1; norm++) {
        size_t cap = 3 * strlen(path) + 4;
        char *out = malloc(cap);
        char *again = malloc(cap);
        char *tiny = malloc(small);
        char *dec;
        int rc;

        FUZZ_CHECK(out && again && tiny, "out of memory");
        rc = sigv4_canonical_uri(path, norm, out, cap);
        check_text(rc, out, cap, "sigv4_canonical_uri");
        FUZZ_CHECK(rc > 0 && out[0] == '/', "canonical uri of '%s' (normalize %d): rc %d '%s'", path, norm, rc, out);
        dec = decode(out, 1);
        if (norm) {
            FUZZ_CHECK(!has_bad_segment(dec), "normalized '%s' still has . / .. / empty segments: '%s'", path, dec);
            rc = sigv4_canonical_uri(dec, 1, again, cap);
            FUZZ_CHECK(rc >= 0 && strcmp(again, out) == 0, "normalization is not idempotent: '%s' -> '%s' -> '%s'",
                       path, out, again);
        } else {
            FUZZ_CHECK(strcmp(dec, path) == 0 || (path[0] != '/' && dec[0] == '/' && strcmp(dec + 1, path) == 0),
                       "S3 canonical uri changed the path: '%s' -> '%s'", path, dec);
        }
        rc = sigv4_canonical_uri(path, norm, tiny, small);
        check_text(rc, tiny, small, "sigv4_canonical_uri (small)");
        if (rc >= 0)
            FUZZ_CHECK(strcmp(tiny, out) == 0, "small buffer gave a different canonical uri");
        free(dec);
        free(tiny);
        free(again);
        free(out);
    }
}

static void check_canonical_query(const struct sigv4_kv *q, size_t nq)
{
    size_t cap = 64;
    char *out;
    char *p;
    char prev[2][4096];
    int used[8] = {0};
    size_t count = 0;
    int rc;

    for (size_t i = 0; i < nq; i++)
        cap += 3 * (strlen(q[i].name) + strlen(q[i].value)) + 2;
    out = malloc(cap);
    FUZZ_CHECK(out != NULL, "out of memory");
    rc = sigv4_canonical_query(q, nq, out, cap);
    check_text(rc, out, cap, "sigv4_canonical_query");
    FUZZ_CHECK(rc >= 0, "sigv4_canonical_query failed with enough room");
    prev[0][0] = prev[1][0] = '\0';
    for (p = out; nq > 0;) {
        size_t len = strcspn(p, "&");
        char *pair = strndup(p, len);
        char *eq;
        char *name;
        char *value;
        size_t j;

        FUZZ_CHECK(pair != NULL, "out of memory");
        eq = strchr(pair, '=');
        FUZZ_CHECK(eq != NULL, "pair without '=' in '%s'", out);
        *eq = '\0';
        /* sorted by encoded name, then encoded value */
        FUZZ_CHECK(count == 0 || strcmp(prev[0], pair) < 0 || (strcmp(prev[0], pair) == 0 && strcmp(prev[1], eq + 1) <= 0),
                   "canonical query not sorted: '%s'", out);
        snprintf(prev[0], sizeof prev[0], "%s", pair);
        snprintf(prev[1], sizeof prev[1], "%s", eq + 1);
        name = decode(pair, 0);
        value = decode(eq + 1, 0);
        for (j = 0; j < nq; j++)
            if (!used[j] && strcmp(q[j].name, name) == 0 && strcmp(q[j].value, value) == 0)
                break;
        FUZZ_CHECK(j < nq, "canonical query holds a pair that was not given: '%s'", out);
        used[j] = 1;
        count++;
        free(name);
        free(value);
        free(pair);
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    FUZZ_CHECK(count == nq, "%zu pairs in, %zu out", nq, count);
    free(out);
}

static int valid_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= 32 || (unsigned char)*s >= 127 || *s == ':')
            return 0;
    return 1;
}

static int valid_scope(const char *s)
{
    if (!*s || strlen(s) >= 64)
        return 0;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s <= 32)
            return 0;
    return 1;
}

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    return strspn(s, "0123456789abcdef") == 64;
}

static void check_canonical_request(const char *method, const char *path, const struct sigv4_kv *q, size_t nq,
                                    const struct sigv4_kv *h, size_t nh)
{
    struct sigv4_request r;
    size_t ucap = 3 * strlen(path) + 4;
    char *curi = malloc(ucap);
    size_t cap = 256 + 3 * strlen(path) + strlen(method);
    char *out;
    char *sh;
    int rc;
    int ok = method[0] != '\0';
    const char *line;

    FUZZ_CHECK(curi != NULL, "out of memory");
    FUZZ_CHECK(sigv4_canonical_uri(path, 0, curi, ucap) >= 0, "canonical uri failed");
    for (size_t i = 0; i < nq; i++)
        cap += 3 * (strlen(q[i].name) + strlen(q[i].value)) + 2;
    for (size_t i = 0; i < nh; i++) {
        cap += 2 * strlen(h[i].name) + strlen(h[i].value) + 4;
        ok = ok && valid_token(h[i].name);
    }
    out = malloc(cap);
    sh = malloc(cap);
    FUZZ_CHECK(out && sh, "out of memory");
    r = (struct sigv4_request){method, curi, q, nq, h, nh, SIGV4_UNSIGNED_PAYLOAD};
    rc = sigv4_canonical_request(&r, out, cap, sh, cap);
    check_text(rc, out, cap, "sigv4_canonical_request");
    if (nh == 0 || !ok) {
        FUZZ_CHECK(rc < 0, "canonical request accepted without headers or with a bad header name");
        goto out;
    }
    FUZZ_CHECK(rc >= 0, "canonical request failed on valid input");
    check_text(rc >= 0 ? (int)strlen(sh) : -1, sh, cap, "signed headers");
    /* method, uri, query, headers..., "", signed headers, payload */
    FUZZ_CHECK(strncmp(out, method, strlen(method)) == 0 && out[strlen(method)] == '\n', "method line");
    line = strrchr(out, '\n');
    FUZZ_CHECK(line && strcmp(line + 1, SIGV4_UNSIGNED_PAYLOAD) == 0, "payload line");
    FUZZ_CHECK(line - out > (long)strlen(sh) && strncmp(line - strlen(sh), sh, strlen(sh)) == 0 &&
                   line[-(long)strlen(sh) - 1] == '\n' && line[-(long)strlen(sh) - 2] == '\n',
               "signed headers '%s' are not the second-to-last line", sh);
    for (const char *c = sh; *c; c++)
        FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'), "signed headers not lower case: %s", sh);
out:
    free(out);
    free(sh);
    free(curi);
}

static int reserved_header(const char *n)
{
    return strcasecmp(n, "host") == 0 || strcasecmp(n, "x-amz-date") == 0 ||
           strcasecmp(n, "x-amz-security-token") == 0 || strcasecmp(n, "authorization") == 0;
}

static int reserved_query(const char *n)
{
    static const char *const r[] = {"X-Amz-Algorithm",     "X-Amz-Credential",     "X-Amz-Date",     "X-Amz-Expires",
                                    "X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature"};
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (strcasecmp(n, r[i]) == 0)
            return 1;
    return 0;
}

static void check_signing(const struct fields *fs, const struct sigv4_kv *q, size_t nq, const struct sigv4_kv *h,
                          size_t nh, int s3_mode, size_t small, unsigned expires)
{
    const char *path = field(fs, 0);
    const char *method = field(fs, 1);
    const char *host = field(fs, 2);
    const char *region = field(fs, 3);
    struct sigv4_creds c = {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", field(fs, 4)};
    int hdr_ok = method[0] && host[0] && valid_scope(region);
    int pre_ok;
    size_t cap = 4096 + 3 * strlen(path) + strlen(host) + 3 * strlen(c.session_token);
    char *out;
    char *tiny = malloc(small);
    char amz_date[17];
    const char *sig;
    int rc;

    for (size_t i = 0; i < nh; i++)
        hdr_ok = hdr_ok && valid_token(h[i].name) && !reserved_header(h[i].name);
    pre_ok = hdr_ok;
    for (size_t i = 0; i < nq; i++) {
        pre_ok = pre_ok && !reserved_query(q[i].name);
        cap += 3 * (strlen(q[i].name) + strlen(q[i].value)) + 2;
    }
    out = malloc(cap);
    FUZZ_CHECK(out && tiny, "out of memory");

    rc = sigv4_sign_headers(&c, region, "s3", method, host, path, q, nq, h, nh, SIGV4_EMPTY_SHA256, NOW, s3_mode,
                            out, cap, amz_date);
    check_text(rc, out, cap, "sigv4_sign_headers");
    FUZZ_CHECK(hdr_ok ? rc >= 0 : rc < 0, "sigv4_sign_headers rc %d, preconditions %s", rc, hdr_ok ? "met" : "not met");
    if (rc >= 0) {
        FUZZ_CHECK(strcmp(amz_date, "20150830T123600Z") == 0, "amz_date '%s'", amz_date);
        FUZZ_CHECK(strncmp(out, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/", 49) == 0, "auth: %s", out);
        sig = out + strlen(out) - (12 + 64);
        FUZZ_CHECK(strlen(out) > 12 + 64 && strncmp(sig, ", Signature=", 12) == 0 && is_hex64(sig + 12),
                   "auth does not end with the signature: %s", out);
        rc = sigv4_sign_headers(&c, region, "s3", method, host, path, q, nq, h, nh, SIGV4_EMPTY_SHA256, NOW,
                                s3_mode, tiny, small, amz_date);
        check_text(rc, tiny, small, "sigv4_sign_headers (small)");
        if (rc >= 0)
            FUZZ_CHECK(strcmp(tiny, out) == 0, "signing is not deterministic");
    }

    rc = sigv4_presign_url(&c, region, "s3", method, "https", host, path, q, nq, h, nh, NULL, expires, NOW, s3_mode,
                           out, cap);
    check_text(rc, out, cap, "sigv4_presign_url");
    FUZZ_CHECK(pre_ok ? rc >= 0 : rc < 0, "sigv4_presign_url rc %d, preconditions %s", rc, pre_ok ? "met" : "not met");
    if (rc >= 0) {
        FUZZ_CHECK(strncmp(out, "https://", 8) == 0 && strncmp(out + 8, host, strlen(host)) == 0, "url: %s", out);
        FUZZ_CHECK(strstr(out, "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2F") != NULL, "credential: %s", out);
        sig = out + strlen(out) - (17 + 64);
        FUZZ_CHECK(strlen(out) > 17 + 64 && strncmp(sig, "&X-Amz-Signature=", 17) == 0 && is_hex64(sig + 17),
                   "url does not end with the signature: %s", out);
        rc = sigv4_presign_url(&c, region, "s3", method, "https", host, path, q, nq, h, nh, NULL, expires, NOW,
                               s3_mode, tiny, small);
        check_text(rc, tiny, small, "sigv4_presign_url (small)");
        if (rc >= 0)
            FUZZ_CHECK(strcmp(tiny, out) == 0, "presigning is not deterministic");
    }
    free(tiny);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fields fs = {0};
    struct sigv4_kv q[8];
    struct sigv4_kv h[9];
    size_t nq;
    size_t nh;
    size_t small;
    size_t next = 5;
    int norm;
    unsigned expires;

    if (size < 2 || size > 8192)
        return 0;
    norm = data[0] & 1;
    nq = (data[0] >> 1) & 7;
    nh = (data[0] >> 4) & 7;
    small = (size_t)(data[1] & 0x7f) + 1;
    expires = data[1] & 0x80 ? SIGV4_MAX_EXPIRES : (unsigned)data[1] + 1;
    fs.buf = malloc(size - 1);
    FUZZ_CHECK(fs.buf != NULL, "out of memory");
    memcpy(fs.buf, data + 2, size - 2);
    fs.buf[size - 2] = '\0';
    for (char *p = fs.buf; fs.n < MAX_FIELDS;) {
        fs.f[fs.n++] = p;
        p += strlen(p);
        if (p >= fs.buf + size - 2)
            break;
        p++;
    }
    for (size_t i = 0; i < nq; i++, next += 2)
        q[i] = (struct sigv4_kv){field(&fs, next), field(&fs, next + 1)};
    for (size_t i = 0; i < nh; i++, next += 2)
        h[i] = (struct sigv4_kv){field(&fs, next), field(&fs, next + 1)};

    check_encode(field(&fs, 0), small);
    check_canonical_uri(field(&fs, 0), small);
    check_canonical_query(q, nq);
    h[nh] = (struct sigv4_kv){"host", field(&fs, 2)};
    check_canonical_request(field(&fs, 1), field(&fs, 0), q, nq, h, nh + 1);
    check_signing(&fs, q, nq, h, nh, !norm, small, expires);
    free(fs.buf);
    return 0;
}
