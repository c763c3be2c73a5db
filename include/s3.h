/* s3.h - S3 request builder (no I/O): URLs, signed headers, presigned URLs.
 *
 * The caller performs the transfer (libcurl) with exactly what is returned:
 * req.method, req.url and each of req.headers[0..nheaders) as one
 * "Name: value" line (curl_slist_append). Do NOT also set CURLOPT_AWS_SIGV4.
 * Every function returns 0 on success and a negative value on invalid input or
 * if a result does not fit; outputs are then empty. Nothing is allocated that
 * outlives a call, and there is no global state.
 */
#ifndef S3_H
#define S3_H

#include <stddef.h>
#include <time.h>

#include "sigv4.h"

#define S3_URL_MAX 8192
#define S3_HEADER_MAX 4096 /* one "Name: value" line (session tokens are long) */
#define S3_MAX_HEADERS 8
#define S3_KEY_MAX 1024
#define S3_TOKEN_MAX 1024           /* a ListObjectsV2 continuation token */
#define S3_LIST_MAX_KEYS 1000       /* S3 answers at most this many keys per page */
#define S3_LIST_SCAN_MAX (8u << 20) /* larger list answers are refused, not scanned */

struct s3_target {
    const char *endpoint; /* "http://127.0.0.1:4569" (scheme://host[:port][/]);
                             NULL => https://s3.<region>.amazonaws.com (AWS) */
    int path_style;       /* 1: <endpoint>/<bucket>/<key>; 0: <bucket>.<host>/<key> */
    const char *bucket;   /* DNS-style name: 3-63 of [a-z0-9.-] */
    const char *region;   /* e.g. "us-east-1" */
    struct sigv4_creds creds;
};

struct s3_request {
    char method[8];
    char url[S3_URL_MAX];
    size_t nheaders;
    char headers[S3_MAX_HEADERS][S3_HEADER_MAX]; /* "Name: value", no CR/LF */
};

/* Object key "<prefix><uuid>.<ext>". prefix may be "" or e.g. "uploads/";
 * uuid is 1-64 of [0-9A-Za-z-]; ext is 1-16 of [0-9A-Za-z]. */
int s3_make_key(const char *prefix, const char *uuid, const char *ext, char *out, size_t cap);

/* Public (unsigned) URL of an object: the key is percent-encoded, '/' kept. */
int s3_object_url(const struct s3_target *t, const char *key, char *out, size_t cap);

/* Header-signed PUT of a whole object. payload_sha256_hex: hex SHA-256 of the
 * body (sigv4_sha256_hex) or NULL for UNSIGNED-PAYLOAD. Headers returned:
 * Content-Type, Content-Length, x-amz-content-sha256, x-amz-date,
 * [x-amz-security-token], Authorization. Send the body with
 * CURLOPT_UPLOAD + CURLOPT_INFILESIZE_LARGE = content_length. */
int s3_sign_put(const struct s3_target *t, const char *key, const char *content_type, unsigned long long content_length,
                const char *payload_sha256_hex, time_t now, struct s3_request *out);

/* Header-signed request without a body; method is "GET", "HEAD" or "DELETE".
 * Headers: x-amz-content-sha256 (empty-body hash), x-amz-date,
 * [x-amz-security-token], Authorization. */
int s3_sign_get(const struct s3_target *t, const char *method, const char *key, time_t now, struct s3_request *out);

/* Header-signed ListObjectsV2 (GET /?list-type=2) of the keys under prefix
 * ("" or NULL: all), at most max_keys (1..S3_LIST_MAX_KEYS), in key order,
 * after start_after, or going on from a truncated page's continuation_token
 * (each NULL or ""; not both). Headers as s3_sign_get; the query is in
 * canonical order in req.url. */
int s3_sign_list(const struct s3_target *t, const char *prefix, const char *start_after, const char *continuation_token,
                 unsigned max_keys, time_t now, struct s3_request *out);

/* Presigned GET URL valid for expires seconds (1..604800) from now.
 * out->nheaders is 0: the client needs no header. */
int s3_presign_get(const struct s3_target *t, const char *key, unsigned expires, time_t now, struct s3_request *out);

/* Presigned PUT URL that also signs Content-Type: the uploader must send the
 * headers in out->headers ("Content-Type: <content_type>") exactly. */
int s3_presign_put(const struct s3_target *t, const char *key, const char *content_type, unsigned expires, time_t now,
                   struct s3_request *out);

/* Pull <Code> and <Message> out of an S3 XML error body (len bytes, need not
 * be NUL-terminated). The five XML entities are decoded, control characters
 * become '?', long values are truncated to fit. Returns 0 when a complete
 * <Code> element was found; otherwise negative with code (and maybe msg) "". */
int s3_parse_error(const char *body, size_t len, char *code, size_t code_cap, char *msg, size_t msg_cap);

/* Parse a ListObjectsV2 answer (len bytes, need not be NUL-terminated; it is
 * hostile input). on_key(key, arg) runs for each <Contents><Key> in document
 * order with the key XML-decoded; a key that is empty, longer than
 * S3_KEY_MAX, has control characters or an unknown entity is counted in
 * *skipped (may be NULL) instead. A non-zero return from on_key stops the
 * parse and is returned. *truncated is <IsTruncated>; next_token receives
 * <NextContinuationToken> ("" when there is none). Returns 0, on_key's value,
 * or -1 when the body is not a ListBucketResult, is longer than
 * S3_LIST_SCAN_MAX, IsTruncated is missing or neither true nor false, or a
 * truncated answer has no valid token (printable, at most S3_TOKEN_MAX). */
int s3_parse_list(const char *body, size_t len, int (*on_key)(const char *key, void *arg), void *arg, int *truncated,
                  char *next_token, size_t token_cap, size_t *skipped);

#endif /* S3_H */
