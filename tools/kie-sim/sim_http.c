/*
 * sim_http.c - the HTTP shell of kie-sim (see sim_http.h): response helpers,
 * authentication, the route table and dispatcher, body reading and the
 * send/drop/reset/hang actions.
 */
#include "sim_http.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/crypto.h>

#include "sim_admin.h"
#include "sim_credits.h"
#include "sim_files.h"
#include "sim_form.h"
#include "sim_results.h"
#include "sim_tasks.h"
#include "sim_upload.h"

#define SIM_POLL_SLICE_MS 50

const char sim_unauth_msg[] = "You do not have access permissions";

/* ------------------------------------------------------------ responses */

void sim_resp_text(struct sim_resp *r, unsigned status, const char *ctype, const char *text)
{
    free(r->body);
    r->status = status;
    r->ctype = ctype;
    r->body = sim_xstrdup(text);
    r->len = strlen(text);
    r->action = SIM_SEND;
}

void sim_resp_json(struct sim_resp *r, unsigned status, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);

    cJSON_Delete(obj);
    free(r->body);
    r->status = status;
    r->ctype = "application/json";
    r->body = s;
    r->len = s ? strlen(s) : 0;
    r->action = SIM_SEND;
}

void sim_resp_kie(struct sim_resp *r, unsigned status, int code, const char *msg, bool null_data)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddNumberToObject(o, "code", code);
    cJSON_AddStringToObject(o, "msg", msg);
    if (null_data)
        cJSON_AddNullToObject(o, "data");
    sim_resp_json(r, status, o);
}

void sim_resp_mode(struct sim_resp *r, int mode, bool record)
{
    switch (mode) {
    case SIM_MODE_HTTP500:
        sim_resp_text(r, 500, "text/plain", "Internal Server Error\n");
        break;
    case SIM_MODE_NONJSON:
        sim_resp_text(r, 200, "text/html",
                      "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                      "<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n");
        break;
    case SIM_MODE_HANG:
        r->action = SIM_HANG;
        break;
    case SIM_MODE_RESET:
        r->action = SIM_RESET;
        break;
    case SIM_MODE_CODE401:
        sim_resp_kie(r, 200, 401, sim_unauth_msg, false);
        break;
    case SIM_MODE_CODE402:
        sim_resp_kie(r, 200, 402, "Insufficient credits", false);
        break;
    case SIM_MODE_CODE422:
        sim_resp_kie(r, 200, 422, record ? "recordInfo is null" : "Validation error (simulated)", true);
        break;
    case SIM_MODE_CODE429:
        sim_resp_kie(r, 429, 429, "Rate limited: too many requests, please try again later", false);
        break;
    case SIM_MODE_CODE455:
        sim_resp_kie(r, 200, 455, "Service unavailable: system maintenance", false);
        break;
    case SIM_MODE_CODE500:
        sim_resp_kie(r, 200, 500, "Server error, please try again later", false);
        break;
    case SIM_MODE_CODE501:
        sim_resp_kie(r, 200, 501, "Generation failed", false);
        break;
    default:
        sim_resp_kie(r, 500, 500, "unknown simulator mode", false);
        break;
    }
}

/* --------------------------------------------------- connection helpers */

static int sim_conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

    return ci ? ci->connect_fd : -1;
}

int sim_wait_client(struct sim_app *app, struct MHD_Connection *c, long ms)
{
    long long deadline = sim_mono_ms() + ms;
    int fd = sim_conn_fd(c);

    for (;;) {
        long long left = deadline - sim_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};

        if (atomic_load(&app->stopping))
            return -1;
        if (left <= 0)
            return 0;
        if (left > SIM_POLL_SLICE_MS)
            left = SIM_POLL_SLICE_MS;
        if (fd < 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};

            nanosleep(&ts, NULL);
        } else if (poll(&p, 1, (int)left) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
            return -1;
        }
    }
}

int sim_auth_key(const struct sim_app *app, struct MHD_Connection *c, bool *present)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t n;
    int found = -1;

    *present = h != NULL;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return -1;
    h += 7;
    while (*h == ' ')
        h++;
    n = strlen(h);
    while (n > 0 && h[n - 1] == ' ')
        n--;
    for (size_t i = 0; i < app->n_keys; i++) { /* every key is compared, in constant time */
        size_t klen = strlen(app->api_keys[i]);

        if (n == klen && CRYPTO_memcmp(h, app->api_keys[i], klen) == 0 && found < 0)
            found = (int)i;
    }
    return found;
}

bool sim_auth_ok(const struct sim_app *app, struct MHD_Connection *c, bool *present)
{
    return sim_auth_key(app, c, present) >= 0;
}

/* --------------------------------------------------------------- router */

typedef void sim_handler_fn(struct sim_app *, struct MHD_Connection *, struct sim_req *, struct sim_resp *);

enum {
    SIM_ROUTE_PREFIX = 1u << 0, /* path is a prefix ("/results/") */
    SIM_ROUTE_UPLOAD = 1u << 1, /* the upload API: its envelope for 405/413 */
    SIM_ROUTE_TRIM = 1u << 2,   /* log long body strings shortened */
};

struct sim_route {
    const char *method;
    const char *path;
    const char *allow;
    unsigned flags;
    sim_handler_fn *fn;
    size_t (*max_body)(struct sim_app *app); /* NULL: SIM_MAX_BODY */
    const struct sim_sink_ops *sink;         /* NULL: body buffered in r->body */
};

#define SIM_GET_ALLOW "GET, HEAD"

static const struct sim_route sim_routes[] = {
    {"POST", "/api/v1/jobs/createTask", "POST", 0, sim_h_create, NULL, NULL},
    {"GET", "/api/v1/jobs/recordInfo", "GET", 0, sim_h_record, NULL, NULL},
    {"GET", "/api/v1/chat/credit", "GET", 0, sim_h_credit, NULL, NULL},
    {"GET", "/results/", SIM_GET_ALLOW, SIM_ROUTE_PREFIX, sim_h_result, NULL, NULL},
    {"HEAD", "/results/", SIM_GET_ALLOW, SIM_ROUTE_PREFIX, sim_h_result, NULL, NULL},
    {"GET", "/sim/config", "GET, POST", 0, sim_h_config_get, NULL, NULL},
    {"POST", "/sim/config", "GET, POST", 0, sim_h_config_set, NULL, NULL},
    {"GET", "/sim/requests", "GET, DELETE", 0, sim_h_requests_get, NULL, NULL},
    {"DELETE", "/sim/requests", "GET, DELETE", 0, sim_h_requests_delete, NULL, NULL},
    {"GET", "/sim/tasks", "GET", 0, sim_h_tasks, NULL, NULL},
    {"POST", "/api/file-stream-upload", "POST", SIM_ROUTE_UPLOAD, sim_h_upload_stream, sim_upload_stream_max_body,
     &sim_upload_form_ops},
    {"POST", "/api/file-base64-upload", "POST", SIM_ROUTE_UPLOAD | SIM_ROUTE_TRIM, sim_h_upload_base64,
     sim_upload_base64_max_body, NULL},
    {"POST", "/api/file-url-upload", "POST", SIM_ROUTE_UPLOAD, sim_h_upload_url, NULL, NULL},
    {"GET", "/kie-files/", SIM_GET_ALLOW, SIM_ROUTE_PREFIX, sim_h_file_get, NULL, NULL},
    {"HEAD", "/kie-files/", SIM_GET_ALLOW, SIM_ROUTE_PREFIX, sim_h_file_get, NULL, NULL},
    {"GET", "/kie-download/", SIM_GET_ALLOW, SIM_ROUTE_PREFIX, sim_h_file_get, NULL, NULL},
    {"HEAD", "/kie-download/", SIM_GET_ALLOW, SIM_ROUTE_PREFIX, sim_h_file_get, NULL, NULL},
    {"GET", "/sim/files", "GET, DELETE", 0, sim_h_files_list, NULL, NULL},
    {"DELETE", "/sim/files", "GET, DELETE", 0, sim_h_files_clear, NULL, NULL},
};
#define SIM_N_ROUTES (sizeof sim_routes / sizeof sim_routes[0])

static bool sim_route_path(const struct sim_route *rt, const char *url)
{
    if (rt->flags & SIM_ROUTE_PREFIX)
        return strncmp(url, rt->path, strlen(rt->path)) == 0;
    return strcmp(url, rt->path) == 0;
}

/* The route for method and url, or NULL; *path_rt gets any route with this
 * path (for 405 and the envelope), NULL if the path is unknown. */
static const struct sim_route *sim_route_find(const char *method, const char *url, const struct sim_route **path_rt)
{
    *path_rt = NULL;
    for (size_t i = 0; i < SIM_N_ROUTES; i++) {
        if (!sim_route_path(&sim_routes[i], url))
            continue;
        *path_rt = &sim_routes[i];
        if (strcmp(sim_routes[i].method, method) == 0)
            return &sim_routes[i];
    }
    return NULL;
}

static void sim_dispatch(struct sim_app *app, struct MHD_Connection *c, const char *method, struct sim_req *r,
                         struct sim_resp *resp)
{
    const struct sim_route *rt = r->route, *path_rt = r->path_route;
    unsigned flags = path_rt ? path_rt->flags : 0;

    if (strncmp(r->url, "/sim/", 5) != 0) /* the test-only routes are not logged */
        sim_log_request(app, c, method, r->url, r, rt && rt->sink ? rt->sink->summary(r->sink) : NULL,
                        (flags & SIM_ROUTE_TRIM) != 0);
    if (r->too_large && (flags & SIM_ROUTE_UPLOAD)) {
        char msg[128];

        snprintf(msg, sizeof msg, "File size exceeds the limit: the request body is larger than %zu bytes", r->max);
        sim_upload_error(resp, 400, 400, msg);
    } else if (r->too_large) {
        sim_resp_kie(resp, 413, 413, "request body too large", false);
    } else if (rt) {
        rt->fn(app, c, r, resp);
    } else if (path_rt) {
        if (flags & SIM_ROUTE_UPLOAD)
            sim_upload_error(resp, 405, 405, "Method not allowed");
        else
            sim_resp_kie(resp, 405, 405, "Method not allowed", false);
        resp->allow = path_rt->allow;
    } else {
        sim_resp_kie(resp, 404, 404, "Not found", false);
    }
}

/* Carry out resp: queue it, or drop/reset/hang the connection. */
static enum MHD_Result sim_finish(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r,
                                  struct sim_resp *resp)
{
    struct MHD_Response *mr;
    enum MHD_Result ret;
    int fd;

    r->responded = true;
    switch (resp->action) {
    case SIM_DROP:
        free(resp->body);
        return MHD_NO;
    case SIM_RESET:
        fd = sim_conn_fd(c);
        if (fd >= 0) { /* linger 0: close() sends RST instead of FIN */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        free(resp->body);
        return MHD_NO;
    case SIM_HANG:
        free(resp->body);
        pthread_mutex_lock(&app->lock);
        {
            long max = app->cfg.hang_max_ms;

            pthread_mutex_unlock(&app->lock);
            sim_wait_client(app, c, max);
        }
        return MHD_NO;
    case SIM_SEND:
        break;
    }
    if (resp->body) {
        mr = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
        if (!mr)
            free(resp->body);
    } else {
        mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    resp->body = NULL;
    if (!mr)
        return MHD_NO;
    if (resp->ctype)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp->ctype);
    if (resp->allow)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, resp->allow);
    ret = MHD_queue_response(c, resp->status ? resp->status : 500, mr);
    MHD_destroy_response(mr);
    return ret;
}

enum MHD_Result sim_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                           const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    struct sim_app *app = cls;
    struct sim_req *r = *req_cls;
    struct sim_resp resp = {.action = SIM_SEND};

    (void)version;
    if (!r) { /* first call: headers only */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        long n;

        r = sim_xmalloc(sizeof *r);
        memset(r, 0, sizeof *r);
        *req_cls = r;
        r->url = url;
        r->route = sim_route_find(method, url, &r->path_route);
        r->max = r->route && r->route->max_body ? r->route->max_body(app) : SIM_MAX_BODY;
        if (cl && (sim_parse_long(cl, 0, LONG_MAX, &n) != 0 || (unsigned long)n > r->max)) {
            /* answer before reading the body; MHD closes the connection */
            r->too_large = true;
            sim_dispatch(app, c, method, r, &resp);
            return sim_finish(app, c, r, &resp);
        }
        if (r->route && r->route->sink)
            r->sink = r->route->sink->open(app, c);
        return MHD_YES;
    }
    if (r->responded) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size && r->route && r->route->sink) {
        if (r->sink)
            r->route->sink->feed(r->sink, upload_data, *upload_data_size);
        r->len += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;

        if (!r->too_large && n <= r->max - r->len) {
            char *nb = sim_reserve(r->body, &r->cap, r->len + n + 1, r->max + 1);

            if (!nb)
                return MHD_NO;
            r->body = nb;
            memcpy(r->body + r->len, upload_data, n);
            r->len += n;
            r->body[r->len] = '\0';
        } else {
            r->too_large = true; /* keep draining, answer 413 at the end */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->sink)
        r->route->sink->end(r->sink);
    sim_dispatch(app, c, method, r, &resp);
    return sim_finish(app, c, r, &resp);
}

void sim_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    struct sim_req *r = *req_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (r) {
        if (r->sink)
            r->route->sink->close(r->sink);
        free(r->body);
        free(r);
        *req_cls = NULL;
    }
}

