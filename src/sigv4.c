/* sigv4.c - AWS Signature Version 4 (see sigv4.h): hashing, keys and signing. Pure: libc + OpenSSL. */
#include "sigv4.h"
#include "hex.h"
#include "sigv4_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIGV4_ALGO "AWS4-HMAC-SHA256"
#define SIGV4_MAX_SECRET 512

/* ---- hashing ---------------------------------------------------------------- */

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        out[0] = '\0'; /* cannot happen with a working libcrypto */
        return;
    }
    hex_lower(md, 32, out);
}

static int hmac256(const unsigned char *key, size_t keylen, const char *msg, size_t msglen, unsigned char out[32])
{
    unsigned int outlen = 0;
    if (keylen > INT_MAX)
        return -1;
    if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, msglen, out, &outlen) == NULL || outlen != 32)
        return -1;
    return 0;
}

/* ---- dates, scope, string to sign, key ------------------------------------------------ */

int sigv4_format_time(time_t now, char amz_date[17], char date8[9])
{
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL)
        return -1;
    if (strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -1;
    if (date8 != NULL) {
        memcpy(date8, amz_date, 8);
        date8[8] = '\0';
    }
    return 0;
}

static int valid_scope_part(const char *s)
{
    if (s == NULL || *s == '\0' || strnlen(s, 64) >= 64)
        return 0;
    for (; *s != '\0'; s++)
        if (*s == '/' || is_ws(*s) || (unsigned char)*s < 32)
            return 0;
    return 1;
}

int sigv4_scope(const char *date8, const char *region, const char *service, char *out, size_t cap)
{
    struct sv_out o;
    out_init(&o, out, cap);
    if (date8 == NULL || strlen(date8) != 8 || !valid_scope_part(region) || !valid_scope_part(service)) {
        o.err = 1;
    } else {
        out_str(&o, date8);
        out_ch(&o, '/');
        out_str(&o, region);
        out_ch(&o, '/');
        out_str(&o, service);
        out_str(&o, "/aws4_request");
    }
    return out_done(&o);
}

int sigv4_string_to_sign(const char *amz_date, const char *scope, const char *creq, char *out, size_t cap)
{
    struct sv_out o;
    char hash[65];
    out_init(&o, out, cap);
    if (amz_date == NULL || scope == NULL || creq == NULL || strlen(amz_date) != 16) {
        o.err = 1;
    } else {
        sigv4_sha256_hex(creq, strlen(creq), hash);
        out_str(&o, SIGV4_ALGO "\n");
        out_str(&o, amz_date);
        out_ch(&o, '\n');
        out_str(&o, scope);
        out_ch(&o, '\n');
        out_str(&o, hash);
    }
    return out_done(&o);
}

int sigv4_signing_key(const char *secret_key, const char *date8, const char *region, const char *service,
                      unsigned char key[32])
{
    char k0[4 + SIGV4_MAX_SECRET + 1];
    unsigned char a[32], b[32];
    size_t sl;
    int rc = -1;

    if (secret_key == NULL || date8 == NULL || strlen(date8) != 8 || !valid_scope_part(region) ||
        !valid_scope_part(service))
        return -1;
    sl = strnlen(secret_key, SIGV4_MAX_SECRET + 1);
    if (sl == 0 || sl > SIGV4_MAX_SECRET)
        return -1;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret_key, sl);
    if (hmac256((const unsigned char *)k0, 4 + sl, date8, 8, a) == 0 &&
        hmac256(a, 32, region, strlen(region), b) == 0 && hmac256(b, 32, service, strlen(service), a) == 0 &&
        hmac256(a, 32, "aws4_request", 12, key) == 0)
        rc = 0;
    OPENSSL_cleanse(k0, sizeof(k0));
    OPENSSL_cleanse(a, sizeof(a));
    OPENSSL_cleanse(b, sizeof(b));
    return rc;
}

int sigv4_signature(const unsigned char key[32], const char *string_to_sign, char out[65])
{
    unsigned char mac[32];
    out[0] = '\0';
    if (key == NULL || string_to_sign == NULL)
        return -1;
    if (hmac256(key, 32, string_to_sign, strlen(string_to_sign), mac) != 0)
        return -1;
    hex_lower(mac, 32, out);
    return 0;
}

/* ---- high level ------------------------------------------------------------------------ */

/* Upper bound of the canonical request length for `r` (uri already encoded). */
static size_t creq_bound(const struct sigv4_request *r)
{
    size_t n = 64 + strlen(r->method) + strlen(r->canonical_uri) + strlen(r->payload_hash);
    for (size_t i = 0; i < r->nquery; i++)
        n += 3 * (strlen(r->query[i].name) + (r->query[i].value ? strlen(r->query[i].value) : 0)) + 2;
    for (size_t i = 0; i < r->nheaders; i++)
        n += 2 * strlen(r->headers[i].name) + (r->headers[i].value ? strlen(r->headers[i].value) : 0) + 4;
    return n;
}

static int creds_ok(const struct sigv4_creds *c)
{
    return c != NULL && c->access_key != NULL && c->secret_key != NULL && c->access_key[0] != '\0' &&
           strnlen(c->access_key, 256) < 256 && (c->session_token == NULL || !too_long(c->session_token));
}

static int has_token(const struct sigv4_creds *c)
{
    return c->session_token != NULL && c->session_token[0] != '\0';
}

/* Everything common to both signing styles once the request is complete:
 * canonical request -> string to sign -> hex signature. */
static int sign_request(const struct sigv4_creds *c, const char *region, const char *service, const char *amz_date,
                        const char *date8, const struct sigv4_request *r, char *scope, size_t scope_cap, char *sh,
                        size_t sh_cap, char sig[65])
{
    char *creq = NULL, *sts = NULL;
    size_t bound = creq_bound(r);
    unsigned char key[32];
    int rc = -1;

    if (sigv4_scope(date8, region, service, scope, scope_cap) < 0)
        goto out;
    creq = malloc(bound);
    sts = malloc(256);
    if (creq == NULL || sts == NULL)
        goto out;
    if (sigv4_canonical_request(r, creq, bound, sh, sh_cap) < 0)
        goto out;
    if (sigv4_string_to_sign(amz_date, scope, creq, sts, 256) < 0)
        goto out;
    if (sigv4_signing_key(c->secret_key, date8, region, service, key) < 0)
        goto out;
    if (sigv4_signature(key, sts, sig) < 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(key, sizeof(key));
    free(creq);
    free(sts);
    return rc;
}

static int make_canonical_uri(const char *path, int s3_mode, char **out)
{
    size_t cap;
    *out = NULL;
    if (too_long(path))
        return -1;
    cap = 3 * strlen(path) + 2;
    *out = malloc(cap);
    if (*out == NULL)
        return -1;
    return sigv4_canonical_uri(path, !s3_mode, *out, cap) < 0 ? -1 : 0;
}

static int check_common(const struct sigv4_creds *c, const char *region, const char *service, const char *method,
                        const char *host, const char *path, const struct sigv4_kv *query, size_t nquery,
                        const struct sigv4_kv *headers, size_t nheaders)
{
    if (!creds_ok(c) || !valid_scope_part(region) || !valid_scope_part(service) || too_long(method) ||
        method[0] == '\0' || too_long(host) || host[0] == '\0' || too_long(path) || (nquery > 0 && query == NULL) ||
        (nheaders > 0 && headers == NULL) || nquery > 1000 || nheaders > 100)
        return -1;
    for (size_t i = 0; i < nquery; i++)
        if (too_long(query[i].name))
            return -1;
    for (size_t i = 0; i < nheaders; i++) {
        if (!sv_valid_header_name(headers[i].name))
            return -1;
        if (sv_name_is(headers[i].name, "host") || sv_name_is(headers[i].name, "x-amz-date") ||
            sv_name_is(headers[i].name, "x-amz-security-token") || sv_name_is(headers[i].name, "authorization"))
            return -1;
    }
    return 0;
}

int sigv4_sign_headers(const struct sigv4_creds *c, const char *region, const char *service, const char *method,
                       const char *host, const char *path, const struct sigv4_kv *query, size_t nquery,
                       const struct sigv4_kv *headers, size_t nheaders, const char *payload_sha256_hex, time_t now,
                       int s3_mode, char *authorization, size_t auth_cap, char amz_date[17])
{
    struct sigv4_kv *all = NULL;
    char *curi = NULL, *sh = NULL;
    char date8[9], scope[160], sig[65];
    size_t n = 0, sh_cap = 64;
    struct sigv4_request r;
    struct sv_out o;
    int rc;

    out_init(&o, authorization, auth_cap);
    if (amz_date != NULL)
        amz_date[0] = '\0';
    if (amz_date == NULL || too_long(payload_sha256_hex) ||
        check_common(c, region, service, method, host, path, query, nquery, headers, nheaders) < 0 ||
        sigv4_format_time(now, amz_date, date8) < 0)
        goto fail;
    all = calloc(nheaders + 3, sizeof(*all));
    if (all == NULL)
        goto fail;
    for (size_t i = 0; i < nheaders; i++) {
        all[n++] = headers[i];
        sh_cap += strlen(headers[i].name) + 1;
    }
    all[n++] = (struct sigv4_kv){"host", host};
    all[n++] = (struct sigv4_kv){"x-amz-date", amz_date};
    if (has_token(c))
        all[n++] = (struct sigv4_kv){"x-amz-security-token", c->session_token};
    sh = malloc(sh_cap);
    if (sh == NULL || make_canonical_uri(path, s3_mode, &curi) < 0)
        goto fail;
    r = (struct sigv4_request){method, curi, query, nquery, all, n, payload_sha256_hex};
    if (sign_request(c, region, service, amz_date, date8, &r, scope, sizeof(scope), sh, sh_cap, sig) < 0)
        goto fail;
    out_str(&o, SIGV4_ALGO " Credential=");
    out_str(&o, c->access_key);
    out_ch(&o, '/');
    out_str(&o, scope);
    out_str(&o, ", SignedHeaders=");
    out_str(&o, sh);
    out_str(&o, ", Signature=");
    out_str(&o, sig);
    goto done;
fail:
    o.err = 1;
done:
    rc = out_done(&o);
    if (rc < 0 && amz_date != NULL)
        amz_date[0] = '\0';
    free(all);
    free(curi);
    free(sh);
    return rc < 0 ? -1 : rc;
}

static int is_reserved_query_name(const char *name)
{
    static const char *const reserved[] = {"X-Amz-Algorithm", "X-Amz-Credential",    "X-Amz-Date",
                                           "X-Amz-Expires",   "X-Amz-SignedHeaders", "X-Amz-Security-Token",
                                           "X-Amz-Signature"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (sv_name_is(name, reserved[i]))
            return 1;
    return 0;
}

int sigv4_presign_url(const struct sigv4_creds *c, const char *region, const char *service, const char *method,
                      const char *scheme, const char *host, const char *path, const struct sigv4_kv *query,
                      size_t nquery, const struct sigv4_kv *headers, size_t nheaders, const char *payload_hash,
                      unsigned expires_seconds, time_t now, int s3_mode, char *url_out, size_t url_cap)
{
    struct sigv4_kv *hs = NULL, *qs = NULL;
    char *curi = NULL, *sh = NULL, *cred = NULL, *cq = NULL;
    char amz_date[17], date8[9], scope[160], sig[65], expires[16];
    size_t nh = 0, nq = 0, sh_cap = 8, cred_cap, cq_cap;
    struct sigv4_request r;
    struct sv_out o, t;
    int rc;

    out_init(&o, url_out, url_cap);
    if (payload_hash == NULL)
        payload_hash = SIGV4_UNSIGNED_PAYLOAD;
    if (too_long(payload_hash) || too_long(scheme) || scheme[0] == '\0' || expires_seconds < 1 ||
        expires_seconds > SIGV4_MAX_EXPIRES ||
        check_common(c, region, service, method, host, path, query, nquery, headers, nheaders) < 0 ||
        sigv4_format_time(now, amz_date, date8) < 0 || sigv4_scope(date8, region, service, scope, sizeof(scope)) < 0)
        goto fail;
    for (size_t i = 0; i < nquery; i++)
        if (is_reserved_query_name(query[i].name))
            goto fail;

    /* SignedHeaders goes into the query, so it is computed first. */
    hs = calloc(nheaders + 1, sizeof(*hs));
    if (hs == NULL)
        goto fail;
    hs[nh++] = (struct sigv4_kv){"host", host};
    for (size_t i = 0; i < nheaders; i++) {
        hs[nh++] = headers[i];
        sh_cap += strlen(headers[i].name) + 1;
    }
    sh = malloc(sh_cap);
    cred_cap = strlen(c->access_key) + strlen(scope) + 2;
    cred = malloc(cred_cap);
    if (sh == NULL || cred == NULL || sv_signed_headers(hs, nh, sh, sh_cap) < 0)
        goto fail;
    out_init(&t, cred, cred_cap);
    out_str(&t, c->access_key);
    out_ch(&t, '/');
    out_str(&t, scope);
    if (out_done(&t) < 0)
        goto fail;
    out_init(&t, expires, sizeof(expires));
    {
        char digits[12];
        size_t nd = 0;
        unsigned v = expires_seconds;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (nd > 0)
            out_ch(&t, digits[--nd]);
    }
    if (out_done(&t) < 0)
        goto fail;

    qs = calloc(nquery + 6, sizeof(*qs));
    if (qs == NULL)
        goto fail;
    for (size_t i = 0; i < nquery; i++)
        qs[nq++] = query[i];
    qs[nq++] = (struct sigv4_kv){"X-Amz-Algorithm", SIGV4_ALGO};
    qs[nq++] = (struct sigv4_kv){"X-Amz-Credential", cred};
    qs[nq++] = (struct sigv4_kv){"X-Amz-Date", amz_date};
    qs[nq++] = (struct sigv4_kv){"X-Amz-Expires", expires};
    qs[nq++] = (struct sigv4_kv){"X-Amz-SignedHeaders", sh};
    if (has_token(c))
        qs[nq++] = (struct sigv4_kv){"X-Amz-Security-Token", c->session_token};

    if (make_canonical_uri(path, s3_mode, &curi) < 0)
        goto fail;
    r = (struct sigv4_request){method, curi, qs, nq, hs, nh, payload_hash};
    cq_cap = creq_bound(&r);
    cq = malloc(cq_cap);
    if (cq == NULL || sigv4_canonical_query(qs, nq, cq, cq_cap) < 0)
        goto fail;
    if (sign_request(c, region, service, amz_date, date8, &r, scope, sizeof(scope), NULL, 0, sig) < 0)
        goto fail;

    out_str(&o, scheme);
    out_str(&o, "://");
    out_str(&o, host);
    if (s3_mode)
        out_str(&o, curi);
    else
        out_str(&o, path[0] != '\0' ? path : "/");
    out_ch(&o, '?');
    out_str(&o, cq);
    out_str(&o, "&X-Amz-Signature=");
    out_str(&o, sig);
    goto done;
fail:
    o.err = 1;
done:
    rc = out_done(&o);
    free(hs);
    free(qs);
    free(curi);
    free(sh);
    free(cred);
    free(cq);
    return rc < 0 ? -1 : rc;
}
