/* sigv4.h - AWS Signature Version 4 (AWS4-HMAC-SHA256) on OpenSSL, no I/O.
 *
 * Two entry points do everything callers normally need:
 *   sigv4_sign_headers()  -> an Authorization header value (header auth)
 *   sigv4_presign_url()   -> a presigned URL (query auth)
 * The lower-level functions below them are public so that unit tests can check
 * each step against the official test vectors.
 *
 * Conventions: every function writing text takes (out, cap), always
 * NUL-terminates when cap > 0, and returns the length written (>= 0) or a
 * negative value on bad input or if the result (plus NUL) does not fit.
 * Nothing here keeps state or allocates memory that outlives a call.
 */
#ifndef SIGV4_H
#define SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4_MAX_EXPIRES 604800u /* 7 days: the signing key is date-scoped */

struct sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "" when not using temporary credentials */
};

/* A name/value pair. Query pairs are given decoded (raw bytes); a NULL value
 * is the same as "" (a bare "?lifecycle" is signed as "lifecycle="). */
struct sigv4_kv {
    const char *name;
    const char *value;
};

/* Everything that goes into a canonical request (header or query auth). */
struct sigv4_request {
    const char *method;           /* "GET", "PUT", ... (used verbatim) */
    const char *canonical_uri;    /* from sigv4_canonical_uri() */
    const struct sigv4_kv *query; /* decoded; sorted and encoded here */
    size_t nquery;
    const struct sigv4_kv *headers; /* every header to sign, any case/order, */
    size_t nheaders;                /* duplicates are joined with ',' */
    const char *payload_hash;       /* hex SHA-256 or UNSIGNED-PAYLOAD */
};

/* Hex SHA-256 of data (lowercase, NUL-terminated). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

/* RFC 3986 percent-encoding: every byte except A-Z a-z 0-9 - . _ ~ becomes
 * %XX (upper-case hex); '/' is kept when keep_slash is non-zero. */
int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t cap);

/* Canonical URI of `path` (the request path as given, without query).
 * normalize != 0 (generic AWS services): remove "." / ".." segments and
 * repeated slashes first. normalize == 0 (S3): the path is kept as is.
 * Then the result is URI-encoded once, keeping '/'. An empty path gives "/". */
int sigv4_canonical_uri(const char *path, int normalize, char *out, size_t cap);

/* Canonical query string: pairs encoded, sorted by name then value, '&'-joined. */
int sigv4_canonical_query(const struct sigv4_kv *query, size_t nquery, char *out, size_t cap);

/* Canonical request (the 6 lines, no trailing newline). If signed_headers is
 * not NULL it also receives the "a;b;c" SignedHeaders list (sh_cap bytes).
 * At least one header (host) is required; names must be non-empty tokens;
 * values are trimmed and runs of whitespace (including CR/LF of folded lines)
 * collapse to one space. */
int sigv4_canonical_request(const struct sigv4_request *req, char *out, size_t cap, char *signed_headers,
                            size_t sh_cap);

/* "YYYYMMDDTHHMMSSZ" and "YYYYMMDD" for a UTC time. Returns 0 or negative. */
int sigv4_format_time(time_t now, char amz_date[17], char date8[9]);

/* Credential scope "YYYYMMDD/<region>/<service>/aws4_request". */
int sigv4_scope(const char *date8, const char *region, const char *service, char *out, size_t cap);

/* "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(creq)>". */
int sigv4_string_to_sign(const char *amz_date, const char *scope, const char *creq, char *out, size_t cap);

/* Derive the signing key (kSigning) and sign a string-to-sign.
 * Both return 0 or negative (NULL/oversized input). */
int sigv4_signing_key(const char *secret_key, const char *date8, const char *region, const char *service,
                      unsigned char key[32]);
int sigv4_signature(const unsigned char key[32], const char *string_to_sign, char out[65]);

/* Header auth. Signs `host` (include ":port" when it is not the scheme's
 * default), x-amz-date, x-amz-security-token (when creds has a token) and every
 * header in `headers` (e.g. x-amz-content-sha256, content-type). The caller
 * must send Host, X-Amz-Date: amz_date, X-Amz-Security-Token (if any) and all
 * of `headers` verbatim, plus Authorization: <authorization>.
 * path: s3_mode != 0 -> raw (unencoded) object path, encoded once, never
 * normalized (S3 rules); s3_mode == 0 -> the request path as sent, normalized
 * and encoded once more (AWS's "double encoding" for other services).
 * payload_sha256_hex: hex SHA-256 of the body or UNSIGNED-PAYLOAD.
 * `headers` must not contain host, x-amz-date or x-amz-security-token. */
int sigv4_sign_headers(const struct sigv4_creds *c, const char *region, const char *service, const char *method,
                       const char *host, const char *path, const struct sigv4_kv *query, size_t nquery,
                       const struct sigv4_kv *headers, size_t nheaders, const char *payload_sha256_hex, time_t now,
                       int s3_mode, char *authorization, size_t auth_cap, char amz_date[17]);

/* Query auth (presigned URL) "<scheme>://<host><path>?<query>&X-Amz-Signature=…".
 * Adds X-Amz-Algorithm/Credential/Date/Expires/SignedHeaders (and
 * X-Amz-Security-Token when creds has a token) to `query`, which must not
 * contain any of those names itself. The query is in canonical order. Signs host plus
 * `headers` (which the client must then send verbatim, e.g. Content-Type for a
 * PUT). payload_hash NULL means UNSIGNED-PAYLOAD (S3). expires: 1..604800.
 * Path rules as for sigv4_sign_headers(); with s3_mode == 0 the path is put
 * in the URL as given, so it must already be a valid URL path. */
int sigv4_presign_url(const struct sigv4_creds *c, const char *region, const char *service, const char *method,
                      const char *scheme, const char *host, const char *path, const struct sigv4_kv *query,
                      size_t nquery, const struct sigv4_kv *headers, size_t nheaders, const char *payload_hash,
                      unsigned expires_seconds, time_t now, int s3_mode, char *url_out, size_t url_cap);

#endif /* SIGV4_H */
