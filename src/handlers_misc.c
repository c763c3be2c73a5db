/* handlers_misc.c - the web page, its static files, /healthz, /config and
 * /openapi.json. The files come from the copy built into the binary, or from
 * WEB_DIR when set (for working on the page without rebuilding). */
#include "app.h"
#include "config.h"
#include "diskguard.h"
#include "handlers.h"
#include "http.h"
#include "imagepool.h"
#include "kieupload.h"
#include "metrics.h"
#include "results.h"
#include "storage.h"
#include "upstream.h"
#include "validate.h"
#include "web.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE_CSP_FMT                                                                                       \
    "default-src 'self'; img-src 'self' data: blob: http: https:; connect-src 'self'%s%s; style-src 'self'; " \
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

#define DEFAULT_PROMPT                                                                                     \
    "Preserve the exact composition and all props of the product; place it in a clean, professional "    \
    "studio setting with soft, even lighting, a seamless neutral background, realistic shadows and "      \
    "reflections, sharp focus, high-end e-commerce product photography."

static const char *content_type_for(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp(dot, ".json") == 0)
        return "application/json";
    return "application/octet-stream";
}

/* Serve one of the page's files by bare name (already checked: no '/'). */
static enum MHD_Result serve_asset(struct req *r, const char *name)
{
    struct MHD_Response *resp = NULL;
    unsigned long long len = 0;
    const char *dir = r->app->cfg->web_dir;

    if (dir) {
        char path[4096];
        struct stat st;
        int fd;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            len = (unsigned long long)st.st_size;
            resp = MHD_create_response_from_fd64(len, fd);
        } else if (fd >= 0) {
            close(fd);
        }
    } else {
        for (const struct web_asset *a = WEB_ASSETS; a->name; a++) {
            if (strcmp(a->name, name) == 0) {
                len = a->len;
                resp = MHD_create_response_from_buffer(a->len, (void *)(uintptr_t)a->data,
                                                       MHD_RESPMEM_PERSISTENT);
                break;
            }
        }
    }
    if (!resp)
        return http_error(r, 404, "not_found", "There is no such file.");
    MHD_add_response_header(resp, "Content-Type", content_type_for(name));
    /* small, and must change together after an upgrade: revalidate every time */
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    if (strcmp(name, "index.html") == 0) {
        /* S3 mode: the page may PUT straight to the bucket (presigned) */
        const struct storage *store = r->app->store;
        const char *origin = store->ops->direct_upload_origin ? store->ops->direct_upload_origin(r->app->store) : NULL;
        char csp[1024];
        snprintf(csp, sizeof csp, PAGE_CSP_FMT, origin ? " " : "", origin ? origin : "");
        MHD_add_response_header(resp, "Content-Security-Policy", csp);
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    }
    return http_send(r, 200, resp, len);
}

enum MHD_Result h_page(struct req *r)
{
    return serve_asset(r, "index.html");
}

/* The page's scripts and style sheets in web/: a name that is no
 * dot file and ends in .js or .css; index.html only at /. */
static int is_static_name(const char *name)
{
    size_t n = strlen(name);

    if (name[0] == '.' || n < 4)
        return 0;
    return strcmp(name + n - 3, ".js") == 0 || strcmp(name + n - 4, ".css") == 0;
}

enum MHD_Result h_static(struct req *r)
{
    if (!is_static_name(r->param))
        return http_error(r, 404, "not_found", "There is no such file.");
    return serve_asset(r, r->param);
}

enum MHD_Result h_openapi(struct req *r)
{
    return serve_asset(r, "openapi.json");
}

enum MHD_Result h_healthz(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    cJSON *j = cJSON_CreateObject();

    int low = strcmp(r->app->store->ops->name, "local") == 0 && disk_low(cfg->upload_dir, cfg->min_free_disk_mb);

    /* still 200 when degraded: the server answers, but uploads and kept results are refused (507) */
    cJSON_AddStringToObject(j, "status", low ? "degraded" : "ok");
    if (low)
        cJSON_AddStringToObject(j, "reason", "storage full: free space in UPLOAD_DIR is below MIN_FREE_DISK_MB, so "
                                             "uploads and kept results are refused");
    cJSON_AddStringToObject(j, "storage", r->app->store->ops->name);
    cJSON_AddBoolToObject(j, "kie_configured", cfg->kie_api_key != NULL);
    cJSON_AddNumberToObject(j, "uptime_seconds", (double)(time(NULL) - r->app->started));
    cJSON_AddNumberToObject(j, "active_requests", (double)atomic_load(&r->app->active_requests));
    cJSON_AddNumberToObject(j, "waiting_on_upstream", (double)atomic_load(&r->app->suspended));
    if (r->app->images) {
        long queued = 0, running = 0;
        cJSON *img = cJSON_AddObjectToObject(j, "image_workers");
        imagepool_load(r->app->images, &queued, &running);
        cJSON_AddNumberToObject(img, "workers", imagepool_workers(r->app->images));
        cJSON_AddNumberToObject(img, "running", (double)running);
        cJSON_AddNumberToObject(img, "queued", (double)queued);
    }
    return http_json(r, 200, j);
}

/* How KIE will get what /upload hands out: "s3" (presigned or public S3
 * URLs), "public_url" (PUBLIC_BASE_URL, or a private one the operator allowed
 * with ALLOW_PRIVATE_INPUT_URLS), "kie_upload" (pushed to KIE's file upload
 * by /generate), or "none" (KIE cannot get it: the warning is shown). */
static const char *kie_input_way(struct req *r, char *base, size_t cap)
{
    const struct config *cfg = r->app->cfg;
    struct url_parts u;
    int public_base;

    http_public_base(r, base, cap);
    if (strcmp(r->app->store->ops->name, "s3") == 0)
        return "s3";
    public_base = base[0] && (cfg->allow_private_input_urls || (url_parse(base, &u) == 0 && !url_host_is_private(u.host)));
    if (cfg->kie_upload == KIE_UPLOAD_ALWAYS || (cfg->kie_upload == KIE_UPLOAD_AUTO && !public_base))
        return "kie_upload";
    return public_base ? "public_url" : "none";
}

/* The KIE the server talks to is on this machine or a private network: the
 * simulator (make sim), so results are simulated. */
static int kie_simulated(const struct config *cfg)
{
    struct url_parts u;
    return url_parse(cfg->kie_base_url, &u) == 0 && url_host_is_private(u.host);
}

enum MHD_Result h_config(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    char base[512];
    const char *way = kie_input_way(r, base, sizeof base);
    int ok = strcmp(way, "none") != 0;
    cJSON *j = cJSON_CreateObject();
    cJSON *warnings = cJSON_CreateArray();

    cJSON_AddStringToObject(j, "storage", r->app->store->ops->name);
    if (base[0])
        cJSON_AddStringToObject(j, "public_base_url", base);
    else
        cJSON_AddNullToObject(j, "public_base_url");
    cJSON_AddBoolToObject(j, "public_url_ok", ok);
    cJSON_AddStringToObject(j, "kie_input", way);
    cJSON_AddBoolToObject(j, "kie_simulated", kie_simulated(cfg));
    cJSON_AddBoolToObject(j, "kie_configured", cfg->kie_api_key != NULL);
    cJSON_AddBoolToObject(j, "auth_required", cfg->api_token != NULL);
    cJSON_AddBoolToObject(j, "direct_upload", cfg->use_s3);
    cJSON_AddNumberToObject(j, "max_upload_bytes", (double)cfg->max_upload_bytes);
    if (cfg->use_s3) /* what a direct PUT to the bucket may carry */
        cJSON_AddNumberToObject(j, "max_direct_upload_bytes", (double)cfg->max_direct_upload_bytes);
    cJSON_AddNumberToObject(j, "image_max_side", (double)cfg->image_max_side);
    cJSON_AddNumberToObject(j, "image_max_pixels", (double)cfg->image_max_pixels);
    {
        cJSON *types = cJSON_AddArrayToObject(j, "accepted_types");
        for (int t = IMAGE_JPEG; t <= IMAGE_TYPE_LAST; t++)
            cJSON_AddItemToArray(types, cJSON_CreateString(image_mime((enum image_type)t)));
    }
    if (r->app->images)
        cJSON_AddNumberToObject(j, "image_workers", imagepool_workers(r->app->images));
    cJSON_AddItemToObject(j, "aspect_ratios", cJSON_CreateStringArray(ASPECT_RATIOS, N_ASPECT_RATIOS));
    cJSON_AddItemToObject(j, "resolutions", cJSON_CreateStringArray(RESOLUTIONS, N_RESOLUTIONS));
    cJSON_AddStringToObject(j, "default_prompt", DEFAULT_PROMPT);
    if (!ok)
        cJSON_AddItemToArray(warnings,
                             cJSON_CreateString("KIE cannot download files from this server: KIE fetches your "
                                                "photo from its own servers and cannot reach localhost, and "
                                                "KIE_UPLOAD=never. Set KIE_UPLOAD=auto (the server then sends "
                                                "photos through KIE's file upload), or set PUBLIC_BASE_URL to a "
                                                "public URL (e.g. a tunnel), or use S3 mode (USE_S3=1)."));
    if (!cfg->kie_api_key)
        cJSON_AddItemToArray(warnings, cJSON_CreateString("KIE_API_KEY is not set: uploads work, but "
                                                          "generating images does not."));
    {
        /* every upstream call ends within these (on Lambda below API Gateway's 30 s integration timeout) */
        cJSON *t = cJSON_AddObjectToObject(j, "upstream_timeout_seconds");
        cJSON_AddNumberToObject(t, "kie", (double)cfg->kie_timeout_seconds);
        cJSON_AddNumberToObject(t, "result_download", (double)(results_timeout_ms(cfg) / 1000));
        cJSON_AddBoolToObject(j, "on_lambda", cfg->on_lambda);
        if (cfg->on_lambda && cfg->kie_timeout_seconds >= 30)
            cJSON_AddItemToArray(warnings, cJSON_CreateString(
                                               "KIE_TIMEOUT_SECONDS is 30 or more on Lambda: API Gateway's 30 s "
                                               "integration timeout answers 503 before this server's 504; set 25."));
    }
    cJSON_AddItemToObject(j, "warnings", warnings);
    return http_json(r, 200, j);
}

/* ---- GET /metrics ------------------------------------------------------------------ */

void app_metrics_gauges(struct app *a, struct metrics_gauges *g)
{
    memset(g, 0, sizeof *g);
    g->active_requests = atomic_load(&a->active_requests);
    g->waiting_on_upstream = atomic_load(&a->suspended);
    g->upstream_inflight = a->up ? upstream_inflight(a->up) : 0;
    if (a->images)
        imagepool_load(a->images, &g->image_queue, &g->image_running);
    g->disk_low = a->store && strcmp(a->store->ops->name, "local") == 0 &&
                  disk_low(a->cfg->upload_dir, a->cfg->min_free_disk_mb);
}

enum MHD_Result h_metrics(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    const char *need = cfg->metrics_token ? cfg->metrics_token : cfg->api_token;
    const char *methods[64];
    const char *patterns[64];
    struct metrics_gauges g;
    struct MHD_Response *resp;
    size_t n = 0;
    char *text;

    if (need && !http_bearer_ok(r, need))
        return http_error(r, 401, "unauthorized", "GET /metrics needs Authorization: Bearer <%s>.",
                          cfg->metrics_token ? "METRICS_TOKEN" : "API_TOKEN");
    if (!r->app->metrics)
        return http_error(r, 503, "metrics_off", "This server keeps no metrics.");
    for (; ROUTES[n].method && n < 64; n++) {
        methods[n] = ROUTES[n].method;
        patterns[n] = ROUTES[n].pattern;
    }
    app_metrics_gauges(r->app, &g);
    text = metrics_prometheus(r->app->metrics, methods, patterns, &g);
    if (!text)
        return MHD_NO;
    resp = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return http_send(r, 200, resp, strlen(text));
}
