/* http_reply.c - the response builders: common and CORS headers, JSON, errors, redirects, preflight, 405, 401. */
#include "http.h"
#include "http_internal.h"
#include "app.h"
#include "config.h"
#include "jsonprint.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Is `origin` allowed by CORS_ORIGINS? Returns the value to send or NULL. */
static const char *cors_allow(struct req *r, const char *origin)
{
    const char *list = r->app->cfg->cors_origins;
    size_t ol;

    if (!origin || !list)
        return NULL;
    if (strcmp(list, "*") == 0)
        return "*";
    ol = strlen(origin);
    for (const char *p = list; *p;) {
        size_t n;
        while (*p == ' ' || *p == ',')
            p++;
        n = strcspn(p, ",");
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == ol && n > 0 && strncmp(p, origin, n) == 0)
            return origin;
        p += strcspn(p, ",");
    }
    return NULL;
}

void http_add_common_headers(struct req *r, struct MHD_Response *resp)
{
    const char *origin = http_header(r, "Origin");
    const char *allow = cors_allow(r, origin);

    MHD_add_response_header(resp, "X-Request-Id", r->id);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (allow) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", allow);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "X-Request-Id, Retry-After, Idempotent-Replayed");
        if (strcmp(allow, "*") != 0)
            MHD_add_response_header(resp, "Vary", "Origin");
    }
}

void http_add_file_headers(struct MHD_Response *resp)
{
    /* a stored image is never a document: no script, no plugin, no frame,
     * even if a browser were talked into sniffing it as HTML */
    MHD_add_response_header(resp, "Content-Security-Policy", "default-src 'none'; sandbox");
    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-site");
}

enum MHD_Result http_send(struct req *r, unsigned status, struct MHD_Response *resp,
                          unsigned long long bytes)
{
    enum MHD_Result ret;

    if (!resp)
        return MHD_NO;
    http_add_common_headers(r, resp);
    r->status = status;
    r->bytes = r->is_head ? 0 : bytes;
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_json(struct req *r, unsigned status, cJSON *json)
{
    char *text = jsonprint_consume(json);
    struct MHD_Response *resp;
    size_t len;

    cJSON_Delete(json);
    if (!text)
        return MHD_NO;
    len = strlen(text);
    resp = MHD_create_response_from_buffer_with_free_callback(len, text, cJSON_free);
    if (!resp) {
        cJSON_free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return http_send(r, status, resp, len);
}

/* {"error":{code, message, request_id, ...extra}}; NULL on out of memory. */
static cJSON *error_body(struct req *r, const char *code, cJSON *extra, const char *msg)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_CreateObject();

    if (!root || !err) {
        cJSON_Delete(root);
        cJSON_Delete(err);
        cJSON_Delete(extra);
        return NULL;
    }
    cJSON_AddItemToObject(root, "error", err);
    cJSON_AddStringToObject(err, "code", code);
    cJSON_AddStringToObject(err, "message", msg);
    cJSON_AddStringToObject(err, "request_id", r->id);
    if (extra) {
        cJSON *child = extra->child;
        while (child) {
            cJSON *next = child->next;
            cJSON_AddItemToObject(err, child->string, cJSON_DetachItemViaPointer(extra, child));
            child = next;
        }
        cJSON_Delete(extra);
    }
    return root;
}

enum MHD_Result http_error_extra(struct req *r, unsigned status, const char *code, cJSON *extra,
                                 const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    cJSON *root;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    root = error_body(r, code, extra, msg);
    if (!root)
        return MHD_NO;
    if (status >= 500)
        log_warn("request %s: %u %s: %s", r->id, status, code, msg);
    return http_json(r, status, root);
}

enum MHD_Result http_error_retry_extra(struct req *r, unsigned status, const char *code, long retry_after,
                                       cJSON *extra, const char *fmt, ...)
{
    char msg[1024];
    char secs[24];
    va_list ap;
    cJSON *root;
    struct MHD_Response *resp;
    char *text;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!extra)
        extra = cJSON_CreateObject();
    if (extra)
        cJSON_AddNumberToObject(extra, "retry_after", (double)retry_after);
    root = error_body(r, code, extra, msg);
    text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, cJSON_free);
    if (!resp) {
        cJSON_free(text);
        return MHD_NO;
    }
    snprintf(secs, sizeof secs, "%ld", retry_after);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Retry-After", secs);
    if (status >= 500)
        log_warn("request %s: %u %s: %s", r->id, status, code, msg);
    return http_send(r, status, resp, strlen(text));
}

enum MHD_Result http_json_text(struct req *r, unsigned status, char *text, const char *header, const char *value)
{
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, text, free);

    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (header)
        MHD_add_response_header(resp, header, value);
    return http_send(r, status, resp, len);
}

enum MHD_Result http_redirect(struct req *r, const char *location)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Location", location);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return http_send(r, 302, resp, 0);
}

/* ---- the dispatcher's own answers (http_internal.h) ---------------------- */

enum MHD_Result http_preflight(struct req *r, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if (cors_allow(r, http_header(r, "Origin"))) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    MHD_add_response_header(resp, "Allow", allow);
    return http_send(r, 204, resp, 0);
}

enum MHD_Result http_method_not_allowed(struct req *r, const char *allow)
{
    struct MHD_Response *resp;
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"Use %s for this path.\","
                     "\"request_id\":\"%s\"}}",
                     allow, r->id);
    resp = MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Allow", allow);
    return http_send(r, 405, resp, (unsigned long long)n);
}

enum MHD_Result http_unauthorized(struct req *r)
{
    struct MHD_Response *resp;
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"code\":\"unauthorized\",\"message\":\"This server needs an API token: "
                     "send Authorization: Bearer <API_TOKEN>.\",\"request_id\":\"%s\"}}",
                     r->id);
    resp = MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    return http_send(r, 401, resp, (unsigned long long)n);
}
