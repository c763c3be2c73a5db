/* http.c - libmicrohttpd glue: daemon start/stop, the request lifecycle and
 * the dispatcher (routing, 404/405, CORS preflight, auth, rate limits, body
 * limits). The answers themselves are built in http_reply.c.
 *
 * Lifecycle (as in MHD's largepost.c): the access handler is called once with
 * headers only (we allocate struct req and run the central checks), then once
 * per body chunk, then once more with *upload_data_size == 0 (we run the
 * handler). A handler that needs an upstream answer suspends the connection;
 * when the upstream I/O thread resumes it, MHD calls the access handler again
 * and we run r->cont. NOTIFY_COMPLETED frees the request and writes the access
 * log line. */
#include "http.h"
#include "http_internal.h"
#include "app.h"
#include "config.h"
#include "diskguard.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "resultsig.h"
#include "upload.h"
#include "upstream.h"
#include "storage.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

/* Per-connection memory pool: libmicrohttpd's own default. MHD clears all of
 * it on every keep-alive request (memset was 8 % of GET /status' CPU at
 * 64 KiB); 32 KiB still takes a 20 KB request header (tried), and the 1 MB upload
 * bench (bench/spool.sh) did not move. bench/run.sh reads this line for its
 * libmicrohttpd-alone servers. */
#define CONNECTION_MEMORY_LIMIT (32 * 1024)

/* A request id in UUID v4 form. Ids only correlate log lines, so they come
 * from a per-thread splitmix64 generator seeded once from the kernel rather
 * than from libuuid (a getrandom call each); stored names keep using libuuid. */
static void request_id(char out[37])
{
    static _Thread_local uint64_t state;
    static _Thread_local int seeded;
    unsigned char b[16];

    if (!seeded) {
        uuid_t seed;
        uuid_generate_random(seed);
        memcpy(&state, seed, sizeof state);
        seeded = 1;
    }
    for (int half = 0; half < 2; half++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(b + 8 * half, &z, 8);
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    uuid_unparse_lower(b, out);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void app_public_base_url(struct app *a, char *out, size_t cap)
{
    pthread_mutex_lock(&a->public_lock);
    snprintf(out, cap, "%s", a->public_base_url);
    pthread_mutex_unlock(&a->public_lock);
}

void app_set_public_base_url(struct app *a, const char *url)
{
    pthread_mutex_lock(&a->public_lock);
    snprintf(a->public_base_url, sizeof a->public_base_url, "%s", url);
    pthread_mutex_unlock(&a->public_lock);
}

void http_public_base(struct req *r, char *out, size_t cap)
{
    app_public_base_url(r->app, out, cap);
}

const char *http_query(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_header(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* ---- async ---------------------------------------------------------------- */

void http_suspend(struct req *r, enum MHD_Result (*cont)(struct req *r))
{
    r->cont = cont;
    r->suspended = 1;
    atomic_store(&r->async_done, 0);
    atomic_fetch_add(&r->app->suspended, 1);
    MHD_suspend_connection(r->conn);
}

void http_resume(struct req *r)
{
    atomic_store(&r->async_done, 1);
    atomic_fetch_sub(&r->app->suspended, 1);
    MHD_resume_connection(r->conn); /* never touch r after this line */
}

enum MHD_Result http_submit(struct req *r, struct upstream_call *c, enum MHD_Result (*cont)(struct req *r))
{
    http_suspend(r, cont);
    if (upstream_submit(r->app->up, c)) {
        c->result = ERR_UPSTREAM;
        snprintf(c->error, sizeof c->error, "server shutting down");
        http_resume(r);
    }
    return MHD_YES;
}

/* ---- routing -------------------------------------------------------------- */

/* Match `path` against `pattern`; on a {param} match copy the segment. */
static int route_match(const char *pattern, const char *path, char *param, size_t cap)
{
    const char *brace = strchr(pattern, '{');
    size_t prefix;
    size_t rest;

    if (!brace)
        return strcmp(pattern, path) == 0;
    prefix = (size_t)(brace - pattern);
    if (strncmp(pattern, path, prefix) != 0)
        return 0;
    path += prefix;
    rest = strlen(path);
    if (rest == 0 || rest >= cap || strchr(path, '/'))
        return 0;
    memcpy(param, path, rest + 1);
    return 1;
}

/* Find the route; *path_known tells whether any method matches the path;
 * `allow` receives the methods for the Allow header. */
static const struct route *route_find(const char *method, const char *path, char *param, size_t cap,
                                      int *path_known, char *allow, size_t allow_cap)
{
    const struct route *found = NULL;
    size_t alen = 0;
    int head = strcmp(method, "HEAD") == 0;

    *path_known = 0;
    allow[0] = '\0';
    for (const struct route *rt = ROUTES; rt->method; rt++) {
        char tmp[256] = "";
        if (!route_match(rt->pattern, path, tmp, sizeof tmp))
            continue;
        *path_known = 1;
        alen += (size_t)snprintf(allow + alen, allow_cap - alen, "%s%s%s", alen ? ", " : "", rt->method,
                                 strcmp(rt->method, "GET") == 0 ? ", HEAD" : "");
        if (alen >= allow_cap)
            alen = allow_cap - 1;
        if (!found && (strcmp(rt->method, method) == 0 || (head && strcmp(rt->method, "GET") == 0))) {
            found = rt;
            snprintf(param, cap, "%s", tmp);
        }
    }
    return found;
}

/* The value of the last `name` header of the request (NULL if none): a
 * proxy appends its view after whatever the client sent. */
struct last_header {
    const char *name;
    const char *value;
};

static enum MHD_Result keep_last(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct last_header *lh = cls;
    (void)kind;
    if (key && value && strcasecmp(key, lh->name) == 0)
        lh->value = value;
    return MHD_YES;
}

static const char *last_header(struct req *r, const char *name)
{
    struct last_header lh = {.name = name, .value = NULL};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, keep_last, &lh);
    return lh.value;
}

/* Copy the IP address in s[0..n) (spaces trimmed) to out if it is one. */
static void take_ip(char *out, size_t cap, const char *s, size_t n)
{
    char ip[64];
    unsigned char tmp[16];

    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= sizeof ip)
        return;
    memcpy(ip, s, n);
    ip[n] = '\0';
    if (inet_pton(AF_INET, ip, tmp) == 1 || inet_pton(AF_INET6, ip, tmp) == 1)
        snprintf(out, cap, "%s", ip);
}

/* The socket peer; behind a trusted proxy, the address it reports. Only the
 * proxy's own entry counts: with X-Forwarded-For that is the last one, since
 * a client may send any list and the proxy appends what it saw. */
static void client_ip(struct req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const char *h;

    snprintf(r->client_ip, sizeof r->client_ip, "unknown");
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, r->client_ip,
                      sizeof r->client_ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, r->client_ip,
                      sizeof r->client_ip);
    }
    switch (r->app->cfg->trust_proxy) {
    case TRUST_XFF:
        h = last_header(r, "X-Forwarded-For");
        if (h) {
            const char *comma = strrchr(h, ',');
            const char *entry = comma ? comma + 1 : h;
            take_ip(r->client_ip, sizeof r->client_ip, entry, strlen(entry));
        }
        break;
    case TRUST_CLOUDFLARE:
        h = last_header(r, "CF-Connecting-IP");
        if (h)
            take_ip(r->client_ip, sizeof r->client_ip, h, strlen(h));
        break;
    case TRUST_NONE:
        break;
    }
}

/* Constant-time check of "Authorization: Bearer <API_TOKEN>": both sides are
 * hashed first so the comparison has a fixed length. */
int http_bearer_ok(struct req *r, const char *token)
{
    const char *h = http_header(r, "Authorization");
    unsigned char want[SHA256_DIGEST_LENGTH];
    unsigned char got[SHA256_DIGEST_LENGTH];

    if (!token)
        return 1;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    SHA256((const unsigned char *)token, strlen(token), want);
    SHA256((const unsigned char *)h, strlen(h), got);
    return CRYPTO_memcmp(want, got, sizeof want) == 0;
}

static int auth_ok(struct req *r)
{
    return http_bearer_ok(r, r->app->cfg->api_token);
}

int http_rate_limit(struct req *r, struct ratelimit *rl, enum MHD_Result *answer)
{
    struct timespec ts;
    long wait;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    wait = ratelimit_take(rl, r->client_ip, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    if (!wait)
        return 0;
    *answer = http_error_retry(r, 429, "rate_limited", wait,
                               "Too many requests from your address; try again in %ld s.", wait);
    return 1;
}

/* ---- request framing: what libmicrohttpd 0.9.75 lets through ----------------
 * A header name must be an RFC 9110 token (no space before the colon: a proxy
 * may read "Content-Length : 41" as the length, we would not); at most one
 * Content-Length; Transfer-Encoding only "chunked" and never together with a
 * Content-Length. Anything else is a request-smuggling primitive: 400, close. */

struct framing {
    int n_length;
    int n_te;
    int te_chunked;
    const char *bad_name;
};

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct framing *f = cls;
    (void)kind;
    for (const char *p = key; *p; p++)
        if (!is_tchar((unsigned char)*p)) {
            f->bad_name = key;
            return MHD_YES;
        }
    if (!*key)
        f->bad_name = key;
    if (strcasecmp(key, "Content-Length") == 0)
        f->n_length++;
    if (strcasecmp(key, "Transfer-Encoding") == 0) {
        f->n_te++;
        f->te_chunked = value && strcasecmp(value, "chunked") == 0;
    }
    return MHD_YES;
}

/* NULL when the framing is sound, else why not. */
static const char *framing_problem(struct req *r)
{
    struct framing f;

    memset(&f, 0, sizeof f);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_header, &f);
    if (f.bad_name)
        return "a header name is not a token (a space before the colon?)";
    /* (checked here, not with MHD_OPTION_STRICT_FOR_CLIENT: 0.9.75's own 400
     * repeats its header block) */
    if (!MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST) && r->version &&
        strcmp(r->version, MHD_HTTP_VERSION_1_0) != 0)
        return "HTTP/1.1 without Host";
    if (f.n_length > 1)
        return "more than one Content-Length";
    if (f.n_te > 1 || (f.n_te && !f.te_chunked))
        return "Transfer-Encoding other than chunked";
    if (f.n_te && f.n_length)
        return "both Content-Length and Transfer-Encoding";
    return NULL;
}

/* Central checks on the first callback (headers only). Returns MHD_YES to go
 * on reading the body, or the result of queueing an early answer. *answered
 * tells which. */
static enum MHD_Result first_call(struct req *r, int *answered)
{
    const struct config *cfg = r->app->cfg;
    const char *cl = http_header(r, "Content-Length");
    unsigned long long length = 0;
    int has_length = 0;
    char allow[128];
    int path_known;

    *answered = 1;
    {
        const char *why = framing_problem(r);
        if (why) {
            r->close = 1;
            log_warn("request %s: malformed framing from %s: %s", r->id, r->client_ip, why);
            return http_error(r, 400, "bad_request", "Malformed request: %s.", why);
        }
    }
    if (cl) {
        long v;
        if (config_parse_long(cl, 0, 0x7fffffffffffffffL, &v) == 0) {
            length = (unsigned long long)v;
            has_length = 1;
            r->has_length = 1;
        }
    }
    r->route = route_find(r->method, r->path, r->param, sizeof r->param, &path_known, allow, sizeof allow);
    if (strcmp(r->method, "OPTIONS") == 0 && path_known) {
        char methods[160];
        snprintf(methods, sizeof methods, "%s, OPTIONS", allow);
        return http_preflight(r, methods);
    }
    if (!r->route) {
        if (!path_known)
            return http_error(r, 404, "not_found", "There is no route for %s %.200s.", r->method, r->path);
        return http_method_not_allowed(r, allow);
    }
    if ((r->route->flags & ROUTE_AUTH) && !auth_ok(r) &&
        !((r->route->flags & ROUTE_SIGNED) && resultsig_ok(r->app->results_key, r->param, http_query(r, "exp"),
                                                         http_query(r, "sig"), time(NULL))))
        return http_unauthorized(r);
    /* uploads are limited here; /generate only once the request is valid and
     * about to reach KIE (http_rate_limit), so a 400 costs no budget */
    if (r->route->flags & ROUTE_RL_UPLOAD) {
        enum MHD_Result answer;
        if (http_rate_limit(r, r->app->rl_upload, &answer))
            return answer;
    }
    if (r->route->flags & (ROUTE_JSON_BODY | ROUTE_RAW_BODY)) {
        if (has_length && length > MAX_JSON_BODY)
            return http_error(r, 413, "body_too_large", "The request body is larger than %d bytes.",
                              MAX_JSON_BODY);
        buf_init(&r->body, MAX_JSON_BODY);
    }
    if (r->route->flags & ROUTE_MULTIPART) {
        int oom = 0;
        /* multipart framing adds a few hundred bytes around the file */
        if (has_length && length > (unsigned long long)cfg->max_upload_bytes + 16384)
            return http_error(r, 413, "file_too_large", "The file is larger than the limit of %ld bytes.",
                              cfg->max_upload_bytes);
        if ((!r->app->store || strcmp(r->app->store->ops->name, "local") == 0) &&
            disk_low(cfg->upload_dir, cfg->min_free_disk_mb))
            return http_error(r, 507, "insufficient_storage", "The server's storage is full; try again later.");
        r->upload = upload_new(r->conn, r->app->store->ops->spool_dir(r->app->store),
                               (unsigned long long)cfg->max_upload_bytes, &oom);
        if (!r->upload) {
            if (oom)
                return MHD_NO;
            return http_error(r, 400, "not_multipart",
                              "Send the image as multipart/form-data with a field named \"file\" "
                              "(curl -F file=@photo.jpg).");
        }
    }
    *answered = 0;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct app *app = cls;
    struct req *r = *req_cls;

    if (!r) {
        int answered;
        enum MHD_Result ret;

        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        *req_cls = r;
        atomic_fetch_add(&app->active_requests, 1);
        r->app = app;
        r->conn = conn;
        r->method = method;
        r->path = url;
        r->version = version;
        r->start_ms = now_ms();
        r->is_head = strcmp(method, "HEAD") == 0;
        request_id(r->id);
        client_ip(r);
        ret = first_call(r, &answered);
        return answered ? ret : MHD_YES;
    }
    if (r->suspended) {
        if (!atomic_load(&r->async_done))
            return MHD_YES; /* spurious call */
        r->suspended = 0;
        return r->cont(r);
    }
    if (r->status)
        return MHD_YES; /* already answered (early), drain */
    if (*upload_data_size && r->app->cfg->upload_timeout > 0 &&
        now_ms() - r->start_ms > (double)r->app->cfg->upload_timeout * 1000.0) {
        /* a trickle: the whole body gets UPLOAD_TIMEOUT, not one per read.
         * libmicrohttpd 0.9.75 cannot answer in the middle of a body
         * (MHD_queue_response needs the headers or the whole request), so
         * the connection is closed */
        log_warn("request %s: body from %s still arriving after UPLOAD_TIMEOUT (%ld s): closing", r->id,
                 r->client_ip, r->app->cfg->upload_timeout);
        r->status = 408;
        return MHD_NO;
    }
    if (*upload_data_size) {
        if (r->upload) {
            unsigned long long framing_max = (unsigned long long)r->app->cfg->max_upload_bytes + 16384;
            unsigned status = 0;
            const char *code;
            const char *msg;
            r->body_bytes += *upload_data_size;
            upload_feed(r->upload, upload_data, *upload_data_size);
            *upload_data_size = 0;
            if (upload_failed(r->upload))
                upload_error(r->upload, &status, &code, &msg);
            if (!r->has_length && (r->body_bytes > framing_max || (upload_failed(r->upload) && status == 413))) {
                /* over the limit without a Content-Length (chunked): stop
                 * reading now rather than drain what may never end. With a
                 * Content-Length the body is bounded (a larger one was refused
                 * from the headers), so it is drained and answered 413 */
                log_warn("request %s: body from %s over MAX_UPLOAD_BYTES (%ld) while streaming: closing", r->id,
                         r->client_ip, r->app->cfg->max_upload_bytes);
                r->status = 413;
                return MHD_NO;
            }
            return MHD_YES;
        } else if (r->route && (r->route->flags & (ROUTE_JSON_BODY | ROUTE_RAW_BODY))) {
            if (buf_append(&r->body, upload_data, *upload_data_size)) {
                /* chunked past MAX_JSON_BODY (a Content-Length was checked up front) */
                log_warn("request %s: body from %s over %d bytes while streaming: closing", r->id, r->client_ip,
                         MAX_JSON_BODY);
                r->status = 413;
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return r->route->handler(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct app *app = cls;
    struct req *r = *req_cls;
    (void)conn;

    if (!r)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->status)
        r->status = 499; /* client went away / timed out before an answer */
    {
        size_t n_routes = 0;
        while (ROUTES[n_routes].method)
            n_routes++;
        log_access(r->id, r->client_ip, r->method, r->path, r->status, r->bytes, now_ms() - r->start_ms);
        metrics_request(app->metrics, r->route ? (size_t)(r->route - ROUTES) : n_routes, r->status,
                        now_ms() - r->start_ms);
    }
    upload_free(r->upload);
    buf_free(&r->body);
    if (r->state_free)
        r->state_free(r->state);
    free(r);
    *req_cls = NULL;
    atomic_fetch_sub(&app->active_requests, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_warn("libmicrohttpd: %s", msg);
}

struct MHD_Daemon *http_start(struct app *app, char *err, size_t cap)
{
    const struct config *cfg = app->cfg;
    struct sockaddr_in sa;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    unsigned pool = (unsigned)cfg->thread_pool_size;

    if (pool == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        pool = n > 0 ? (unsigned)n : 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->host, &sa.sin_addr) != 1) {
        snprintf(err, cap, "HOST must be an IPv4 address (got %s)", cfg->host);
        return NULL;
    }
    /* poll(), not epoll: with MHD_USE_EPOLL, libmicrohttpd 0.9.75 often misses
     * the FIN of a client that sends part of a body and goes away (the socket
     * sits in CLOSE-WAIT, the spool file with it, until CONNECTION_TIMEOUT);
     * tests/e2e/test_api.py has the case */
    d = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME |
                             MHD_USE_ERROR_LOG,
                         0, NULL, NULL, on_request, app,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_THREAD_POOL_SIZE, pool,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                         MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->per_ip_connections,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->connection_timeout,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY_LIMIT,
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, app,
                         MHD_OPTION_END);
    if (!d) {
        snprintf(err, cap, "cannot listen on %s:%ld: the port is in use or not allowed; choose another with PORT= "
                 "(e.g. PORT=8080)", cfg->host, cfg->port);
        return NULL;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    app->port = info ? info->port : (unsigned)cfg->port;
    return d;
}

MHD_socket http_quiesce(struct app *app, long grace_ms)
{
    double deadline = now_ms() + (double)grace_ms;
    /* stop accepting; MHD hands back the listen socket, which must only be
     * closed after MHD_stop_daemon */
    MHD_socket ls = MHD_quiesce_daemon(app->daemon);
    /* and refuse new connections now, instead of letting them wait in the
     * backlog until the end: shutdown() stops the socket listening (new
     * SYNs get a reset) without freeing the descriptor a worker thread
     * might still hold in its poll set */
    if (ls != MHD_INVALID_SOCKET)
        shutdown(ls, SHUT_RDWR);
    while (atomic_load(&app->active_requests) > 0 && now_ms() < deadline)
        usleep(10000);
    if (atomic_load(&app->active_requests) > 0)
        log_warn("shutdown: %ld request(s) still running after %ld ms; cutting them",
                 atomic_load(&app->active_requests), grace_ms);
    return ls;
}
