/* http.h - the libmicrohttpd glue: the route table, the dispatcher that does
 * the central checks (404/405, CORS, auth, rate limits, body limits), and the
 * response helpers every handler uses. Handlers return what MHD expects from
 * the access handler (MHD_YES after queueing a response or suspending). */
#ifndef PPA_HTTP_H
#define PPA_HTTP_H

#include "buf.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <sys/types.h>

struct app;
struct req;
struct upload;
struct upstream_call;

#define MAX_JSON_BODY (64 * 1024)
#define MAX_UPSTREAM_RESPONSE (1024 * 1024)

enum route_flags {
    ROUTE_JSON_BODY = 1u << 0, /* buffer a JSON body up to MAX_JSON_BODY */
    ROUTE_MULTIPART = 1u << 1, /* stream a multipart upload */
    ROUTE_AUTH = 1u << 2,      /* needs API_TOKEN when one is set */
    ROUTE_RL_GENERATE = 1u << 3, /* taken by the handler, once valid (http_rate_limit) */
    ROUTE_RL_UPLOAD = 1u << 4,
    ROUTE_RAW_BODY = 1u << 5,  /* buffer any body up to MAX_JSON_BODY */
    ROUTE_SIGNED = 1u << 6,    /* with ROUTE_AUTH: a valid ?exp=&sig= for {param} (resultsig.h) does instead */
};

struct route {
    const char *method;  /* "GET" (also serves HEAD), "POST" */
    const char *pattern; /* "/files/{name}": a {param} matches one segment */
    enum MHD_Result (*handler)(struct req *r);
    unsigned flags;
    const char *summary;
};

/* The route table (defined in routes.c); terminated by a NULL method. */
extern const struct route ROUTES[];

/* One request. Allocated on MHD's first callback, freed when MHD says the
 * request is complete. Handlers may read the public fields. */
struct req {
    struct app *app;
    struct MHD_Connection *conn;
    const struct route *route;
    const char *method;
    const char *path;       /* MHD's decoded path; valid for the request */
    const char *version;    /* "HTTP/1.1"; valid for the request */
    char param[256];        /* the {param} segment, if the route has one */
    char id[37];            /* request id (UUID) */
    char client_ip[64];
    double start_ms;
    int is_head;
    int close;              /* answer with Connection: close (malformed framing, early error) */
    unsigned long long body_bytes; /* multipart body bytes seen */
    int has_length;         /* a valid Content-Length came (the body is bounded by it) */
    struct buf body;        /* ROUTE_JSON_BODY / ROUTE_RAW_BODY */
    struct upload *upload;  /* ROUTE_MULTIPART */
    /* async: a handler suspends, work finishes on another thread, then
     * `cont` runs on an MHD thread to answer */
    enum MHD_Result (*cont)(struct req *r);
    atomic_int async_done;
    int suspended;
    void *state;            /* handler state, freed with state_free */
    void (*state_free)(void *state);
    /* what was answered, for the access log */
    unsigned status;
    unsigned long long bytes;
};

/* Start/stop the daemon on cfg->host:cfg->port (port 0 = any). */
struct MHD_Daemon *http_start(struct app *app, char *err, size_t cap);

/* Answer with `json` (ownership taken, freed here). */
enum MHD_Result http_json(struct req *r, unsigned status, cJSON *json);
/* Answer {"error":{"code","message","request_id"}} (+ `extra` members if
 * not NULL, ownership taken). */
enum MHD_Result http_error_extra(struct req *r, unsigned status, const char *code, cJSON *extra,
                                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define http_error(r, status, code, ...) http_error_extra(r, status, code, NULL, __VA_ARGS__)
/* The same with "retry_after" in the error and a Retry-After header (429, 503). */
enum MHD_Result http_error_retry_extra(struct req *r, unsigned status, const char *code, long retry_after,
                                       cJSON *extra, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define http_error_retry(r, status, code, retry_after, ...) \
    http_error_retry_extra(r, status, code, retry_after, NULL, __VA_ARGS__)
/* Answer `text` (malloc'd JSON, ownership taken) as is, with one optional
 * extra header (NULL for none). */
enum MHD_Result http_json_text(struct req *r, unsigned status, char *text, const char *header, const char *value);
/* Answer with a prepared MHD response (ownership taken); adds common headers. */
enum MHD_Result http_send(struct req *r, unsigned status, struct MHD_Response *resp,
                          unsigned long long bytes);
/* Common headers (request id, CORS, nosniff) on any response. */
void http_add_common_headers(struct req *r, struct MHD_Response *resp);
/* Content-Security-Policy (sandbox) and Cross-Origin-Resource-Policy for a
 * served image (/files, /results). */
void http_add_file_headers(struct MHD_Response *resp);
/* 302 to `location`. */
enum MHD_Result http_redirect(struct req *r, const char *location);

/* Take a token from `rl` for the client; 1 after answering 429 (with
 * Retry-After, in seconds) into *answer, 0 to go on. NULL rl: no limit. */
struct ratelimit;
int http_rate_limit(struct req *r, struct ratelimit *rl, enum MHD_Result *answer);

/* Suspend the connection until http_resume(r) is called from any thread;
 * then `cont` runs to answer. Call only from a handler. */
void http_suspend(struct req *r, enum MHD_Result (*cont)(struct req *r));
void http_resume(struct req *r);
/* Suspend r until `c` (done/arg set by the caller, whose done resumes r) has
 * run on the upstream I/O thread, then `cont` answers. When the call cannot
 * be queued (shutting down), c fails with ERR_UPSTREAM at once. */
enum MHD_Result http_submit(struct req *r, struct upstream_call *c, enum MHD_Result (*cont)(struct req *r));

/* 1 when token is NULL or the request carries Authorization: Bearer <token>
 * (constant-time comparison). */
int http_bearer_ok(struct req *r, const char *token);
/* A query argument or header of the request, or NULL. */
const char *http_query(struct req *r, const char *name);
const char *http_header(struct req *r, const char *name);

/* The absolute base URL KIE can use for this server: the public base URL or
 * "" when unknown. */
void http_public_base(struct req *r, char *out, size_t cap);

/* Stop accepting and wait up to `grace_ms` for in-flight requests. Returns
 * the listen socket, to close after MHD_stop_daemon (or MHD_INVALID_SOCKET). */
MHD_socket http_quiesce(struct app *app, long grace_ms);

#endif
