/* cli_http.h - the clients' blocking HTTP exchanges with the server
 * (libcurl easy API) and how a failed one is told to the user. */
#ifndef PPA_CLI_HTTP_H
#define PPA_CLI_HTTP_H

#include "buf.h"
#include "cli_common.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define CLI_MAX_REPLY (1024 * 1024) /* JSON answers from the server */
#define CLI_API_TIMEOUT_S 120L      /* one /upload-less API call */
#define CLI_CONNECT_TIMEOUT_S 10L

/* The result of one HTTP exchange. The caller buf_init()s body and frees it. */
struct cli_reply {
    CURLcode code; /* transport result */
    long status;   /* HTTP status when code == CURLE_OK */
    int replayed;     /* the answer carried Idempotent-Replayed: true */
    long retry_after; /* its Retry-After in seconds, -1 when absent */
    struct buf body;
    char err[CURL_ERROR_SIZE];
};

/* The upload progress bar (drawn on stderr). */
struct cli_progress {
    const struct cli_conn *c;
    const char *name;
    int last_pct;
    double last_draw;
};

/* One exchange with the server: POST `json`, POST multipart `photo` (with a
 * progress bar when `pg` is set), or GET when both are NULL; `header` is one
 * more request header line ("Name: value") or NULL. Fills `r`.
 * Returns 0 when an HTTP answer came back (any status), -1 on a transport
 * error (r->code, r->err). */
int cli_call(const struct cli_conn *c, const char *url, const char *json, const char *header, const char *photo,
             const char *photo_type, long timeout_s, struct cli_progress *pg, struct cli_reply *r);

/* PUT the file at `path` to a presigned URL (S3 direct upload) with exactly
 * the signed Content-Type and no Authorization. Fills `r` like cli_call. */
int cli_put_file(const char *url, const char *content_type, const char *path, struct cli_progress *pg,
                 struct cli_reply *r);

/* Describe a failed exchange for the user into msg; `what` names the step
 * ("upload", "generate"...). */
void cli_describe_failure(const struct cli_conn *c, const char *what, const struct cli_reply *r, char *msg,
                          size_t cap);

/* A 200 JSON object answer -> parsed (caller deletes); NULL otherwise with
 * the reason in msg. */
cJSON *cli_json_ok(const struct cli_conn *c, const char *what, const struct cli_reply *r, char *msg, size_t cap);

/* The error code of a JSON error answer ({"error":{"code"}}) into out, "" when
 * it has none. */
void cli_error_code(const struct cli_reply *r, char *out, size_t cap);

/* Copy a non-empty JSON string that fits into out[cap]. 0, or -1 when it is
 * missing, not a string, empty or too long. */
int cli_copy_string(const cJSON *v, char *out, size_t cap);

#endif
