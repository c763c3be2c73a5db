/* config.c - table-driven configuration (like redis' static_configs[]).
 *
 * Order of precedence: real environment > .env file > built-in default.
 * The .env format: KEY=VALUE lines, '#' comments, optional 'export ',
 * optional single or double quotes around the value. */
#include "config.h"
#include "err.h"
#include "kieupload.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum cfg_type { CFG_STR, CFG_LONG, CFG_BOOL, CFG_URL };
#define CFG_SECRET 1u

struct cfg_entry {
    const char *name;
    enum cfg_type type;
    size_t offset;
    const char *def; /* NULL: unset */
    long min, max;
    unsigned flags;
    const char *help;
};

#define OFF(f) offsetof(struct config, f)

static const struct cfg_entry entries[] = {
    {"PORT", CFG_LONG, OFF(port), "8000", 0, 65535, 0, "TCP port to listen on (0 = any free port)"},
    {"HOST", CFG_STR, OFF(host), "0.0.0.0", 0, 0, 0, "IPv4 address to bind (127.0.0.1 for local only)"},
    {"UPLOAD_DIR", CFG_STR, OFF(upload_dir), "./uploads", 0, 0, 0,
     "where local uploads are stored (/tmp/uploads on Lambda); created if missing"},
    {"PUBLIC_BASE_URL", CFG_STR, OFF(public_base_url), NULL, 0, 0, 0,
     "public URL of this server (e.g. the tunnel URL) so KIE can fetch /files/...; 'auto' asks cloudflared"},
    {"CORS_ORIGINS", CFG_STR, OFF(cors_origins), "*", 0, 0, 0, "comma-separated allowed browser origins, or *"},
    {"MAX_UPLOAD_BYTES", CFG_LONG, OFF(max_upload_bytes), "33554432", 1, 4294967295L, 0,
     "largest accepted upload in bytes, before re-encoding (raw phone photos included; what KIE gets is always "
     "within its 10 MB)"},
    {"MAX_DIRECT_UPLOAD_BYTES", CFG_LONG, OFF(max_direct_upload_bytes), "33554432", 1, 4294967295L, 0,
     "S3 mode: largest photo a client may PUT straight to the bucket (/upload-url, /upload-complete); it bypasses "
     "this server's request path (and API Gateway's 6 MB), so it may be larger than MAX_UPLOAD_BYTES"},
    {"IMAGE_MAX_SIDE", CFG_LONG, OFF(image_max_side), "2048", 0, 100000, 0,
     "longest side in pixels of the stored image; larger uploads are shrunk (0 = never shrink)"},
    {"IMAGE_MAX_PIXELS", CFG_LONG, OFF(image_max_pixels), "100000000", 1, 10000000000L, 0,
     "largest accepted image in pixels (width x height), checked from the header before decoding"},
    {"IMAGE_WORKERS", CFG_LONG, OFF(image_workers), "0", 0, 256, 0,
     "threads that decode and re-encode uploads (0 = number of CPU cores)"},
    {"IMAGE_QUEUE", CFG_LONG, OFF(image_queue), "32", 0, 100000, 0,
     "uploads waiting for an image worker at most; more are answered 503 with Retry-After"},
    {"KEEP_METADATA", CFG_BOOL, OFF(keep_metadata), "0", 0, 0, 0,
     "1 keeps camera EXIF (make, model, exposure, date) in stored images; GPS, serial numbers, owner names "
     "and XMP/IPTC are always removed"},
    {"THREAD_POOL_SIZE", CFG_LONG, OFF(thread_pool_size), "0", 0, 64, 0,
     "HTTP worker threads (0 = number of CPU cores)"},
    {"MAX_CONNECTIONS", CFG_LONG, OFF(max_connections), "1000", 4, 100000, 0, "total connection limit"},
    {"PER_IP_CONNECTIONS", CFG_LONG, OFF(per_ip_connections), "64", 0, 100000, 0,
     "open connections per client IP (0 = no limit; default 0 with TRUST_PROXY set)"},
    {"CONNECTION_TIMEOUT", CFG_LONG, OFF(connection_timeout), "30", 0, 3600, 0,
     "seconds of inactivity before a connection is closed"},
    {"SHUTDOWN_GRACE_SECONDS", CFG_LONG, OFF(shutdown_grace_seconds), "10", 0, 3600, 0,
     "on SIGTERM/SIGINT: stop accepting, let in-flight requests (and their KIE/S3 calls) finish for this long, "
     "then exit"},
    {"UPLOAD_TIMEOUT", CFG_LONG, OFF(upload_timeout), "120", 0, 86400, 0,
     "seconds a whole request body (an upload) may take, however steadily it trickles in; then the connection is "
     "closed (0 = no limit)"},
    {"ALLOW_PRIVATE_INPUT_URLS", CFG_BOOL, OFF(allow_private_input_urls), "0", 0, 0, 0,
     "1 lets /generate send KIE localhost/private URLs (tests, simulator)"},
    {"ALLOW_PRIVATE_FETCH", CFG_BOOL, OFF(allow_private_fetch), "0", 0, 0, 0,
     "1 lets the server download KIE's result URLs from loopback/private/link-local addresses (tests, "
     "simulator); 0 refuses them, redirects and DNS answers included"},
    {"LOG_FORMAT", CFG_STR, OFF(log_format), "text", 0, 0, 0, "text, or json for one JSON object per line"},
    {"LOG_LEVEL", CFG_STR, OFF(log_level), "info", 0, 0, 0, "debug, info, warn or error"},
    {"WEB_DIR", CFG_STR, OFF(web_dir), NULL, 0, 0, 0,
     "serve the web page from this directory instead of the copy built into the binary"},
    {"KIE_API_KEY", CFG_STR, OFF(kie_api_key), NULL, 0, 0, CFG_SECRET,
     "KIE API key (https://kie.ai/api-key); without it /generate and /status answer 503"},
    {"KIE_BASE_URL", CFG_URL, OFF(kie_base_url), "https://api.kie.ai", 0, 0, 0, "KIE API base URL"},
    {"KIE_MODEL", CFG_STR, OFF(kie_model), "flux-2/pro-image-to-image", 0, 0, 0, "KIE model name"},
    {"KIE_TIMEOUT_SECONDS", CFG_LONG, OFF(kie_timeout_seconds), "30", 1, 600, 0,
     "give up on a KIE call after this many seconds (answer 504)"},
    {"KIE_MAX_CONNECTIONS", CFG_LONG, OFF(kie_max_connections), "512", 1, 4096, 0,
     "upstream connections to KIE/S3 at most (kept alive and reused); further calls queue"},
    {"UPSTREAM_THREADS", CFG_LONG, OFF(upstream_threads), "0", 0, 256, 0,
     "upstream I/O threads, each with its own share of KIE_MAX_CONNECTIONS (0 = number of CPU cores)"},
    {"CALLBACK_SECRET", CFG_STR, OFF(callback_secret), NULL, 0, 0, CFG_SECRET,
     "token in KIE's callBackUrl (generated at start-up when unset)"},
    {"KIE_WEBHOOK_HMAC_KEY", CFG_STR, OFF(kie_webhook_hmac_key), NULL, 0, 0, CFG_SECRET,
     "KIE's webhook HMAC key: when set, callbacks must carry a valid X-Webhook-Signature"},
    {"KIE_UPLOAD", CFG_STR, OFF(kie_upload_name), "auto", 0, 0, 0,
     "how KIE gets a photo stored here: auto = push it to KIE's file upload when this server has no public URL "
     "(no PUBLIC_BASE_URL, not S3); always = push every time; never = only public URLs"},
    {"KIE_UPLOAD_BASE_URL", CFG_URL, OFF(kie_upload_base_url), "https://kieai.redpandaai.co", 0, 0, 0,
     "KIE's file-upload API (same key; files kept about 3 days)"},
    {"CLOUDFLARED_METRICS_URL", CFG_URL, OFF(cloudflared_metrics_url), "http://127.0.0.1:2000", 0, 0, 0,
     "cloudflared metrics server asked for the tunnel hostname when PUBLIC_BASE_URL=auto"},
    {"USE_S3", CFG_BOOL, OFF(use_s3), "0", 0, 0, 0, "1 stores uploads in S3 instead of UPLOAD_DIR"},
    {"S3_BUCKET", CFG_STR, OFF(s3_bucket), NULL, 0, 0, 0, "S3 bucket (required with USE_S3=1)"},
    {"AWS_REGION", CFG_STR, OFF(aws_region), NULL, 0, 0, 0, "AWS region (or AWS_DEFAULT_REGION; default us-east-1)"},
    {"AWS_ACCESS_KEY_ID", CFG_STR, OFF(aws_access_key_id), NULL, 0, 0, 0, "AWS access key id (S3 mode)"},
    {"AWS_SECRET_ACCESS_KEY", CFG_STR, OFF(aws_secret_access_key), NULL, 0, 0, CFG_SECRET,
     "AWS secret access key (S3 mode)"},
    {"AWS_SESSION_TOKEN", CFG_STR, OFF(aws_session_token), NULL, 0, 0, CFG_SECRET,
     "AWS session token (temporary credentials, e.g. on Lambda)"},
    {"S3_ENDPOINT", CFG_URL, OFF(s3_endpoint), NULL, 0, 0, 0,
     "S3-compatible endpoint, e.g. http://127.0.0.1:4569 (default: AWS virtual-hosted URL)"},
    {"S3_FORCE_PATH_STYLE", CFG_BOOL, OFF(s3_force_path_style), "0", 0, 0, 0, "1 uses endpoint/bucket/key URLs"},
    {"S3_PUBLIC", CFG_BOOL, OFF(s3_public), "0", 0, 0, 0, "1 answers public object URLs instead of presigned ones"},
    {"S3_PRESIGN_TTL", CFG_LONG, OFF(s3_presign_ttl), "3600", 60, 604800, 0,
     "lifetime of presigned URLs in seconds (max 7 days)"},
    {"S3_PREFIX", CFG_STR, OFF(s3_prefix), "uploads/", 0, 0, 0, "key prefix for uploaded objects"},
    {"S3_RESULTS_PREFIX", CFG_STR, OFF(s3_results_prefix), "results/", 0, 0, 0,
     "key prefix for kept results (outside S3_PREFIX, so a lifecycle rule can expire uploads alone)"},
    {"TASK_STORE", CFG_STR, OFF(task_store_name), "auto", 0, 0, 0,
     "auto = remember this server's tasks (UPLOAD_DIR/tasks.db, or S3_TASKS_PREFIX in S3 mode) for /tasks, "
     "Idempotency-Key, /credits and DAILY_GENERATION_LIMIT; off = remember nothing"},
    {"S3_TASKS_PREFIX", CFG_STR, OFF(s3_tasks_prefix), "tasks/", 0, 0, 0,
     "key prefix of the task store in S3 mode: one JSON object per task (outside S3_PREFIX, so the uploads' "
     "lifecycle rule does not delete it)"},
    {"RESULTS_URL_SECRET", CFG_STR, OFF(results_url_secret), NULL, 0, 0, CFG_SECRET,
     "key that signs the stable_url of kept results (unset: UPLOAD_DIR/.results-secret, made once; in S3 mode "
     "derived from KIE_API_KEY so every instance agrees)"},
    {"RESULTS_URL_TTL_HOURS", CFG_LONG, OFF(results_url_ttl_hours), "168", 1, 87600, 0,
     "how long a signed stable_url works without API_TOKEN (default 7 days)"},
    {"RATE_LIMIT_RESULTS", CFG_LONG, OFF(rate_limit_results), "60", 0, 100000, 0,
     "GET /results per client IP per minute that are not served from our copy (they ask KIE) (0 = off)"},
    {"METRICS_EMF", CFG_BOOL, OFF(metrics_emf), "0", 0, 0, 0,
     "1 prints the last minute's figures as a CloudWatch Embedded Metric Format line on stdout every minute (on "
     "by itself on Lambda)"},
    {"METRICS_TOKEN", CFG_STR, OFF(metrics_token), NULL, 0, 0, CFG_SECRET,
     "when set, GET /metrics needs Authorization: Bearer <METRICS_TOKEN> (else it is guarded like /status by "
     "API_TOKEN)"},
    {"API_TOKEN", CFG_STR, OFF(api_token), NULL, 0, 0, CFG_SECRET,
     "when set, API routes require Authorization: Bearer <API_TOKEN>"},
    {"RATE_LIMIT_GENERATE", CFG_LONG, OFF(rate_limit_generate), "10", 0, 100000, 0,
     "POST /generate per client IP per minute (0 = off)"},
    {"RATE_LIMIT_UPLOAD", CFG_LONG, OFF(rate_limit_upload), "60", 0, 100000, 0,
     "uploads per client IP per minute (0 = off)"},
    {"DAILY_GENERATION_LIMIT", CFG_LONG, OFF(daily_generation_limit), "0", 0, 100000000, 0,
     "accepted generations per UTC day for the whole server (every instance in S3 mode) at most, then 429 "
     "daily_limit_reached (0 = no limit)"},
    {"TRUST_PROXY", CFG_STR, OFF(trust_proxy_name), "0", 0, 0, 0,
     "client IP for rate limits: 0 = socket peer; 1 = last X-Forwarded-For entry (one proxy in front, e.g. "
     "API Gateway); cloudflare = CF-Connecting-IP"},
    {"UPLOAD_TTL_HOURS", CFG_LONG, OFF(upload_ttl_hours), "24", 0, 87600, 0,
     "local uploads older than this are deleted (0 = keep forever)"},
    {"RESULT_TTL_HOURS", CFG_LONG, OFF(result_ttl_hours), "720", 0, 87600, 0,
     "local kept results (UPLOAD_DIR/results/) older than this are deleted (default 30 days; 0 = keep forever)"},
    {"RESULTS_MAX_MB", CFG_LONG, OFF(results_max_mb), "1024", 0, 10000000, 0,
     "local kept results total at most this many MB; the oldest are deleted first (0 = no cap)"},
    {"MAX_RESULT_BYTES", CFG_LONG, OFF(max_result_bytes), "52428800", 1024, 1073741824, 0,
     "largest KIE result image the server copies (checked from Content-Length and while downloading)"},
    {"MIN_FREE_DISK_MB", CFG_LONG, OFF(min_free_disk_mb), "100", 0, 10000000, 0,
     "refuse uploads (507) when free space in UPLOAD_DIR falls below this"},
};

#define N_ENTRIES (sizeof entries / sizeof entries[0])

static struct config_var_info infos[N_ENTRIES];

const struct config_var_info *config_vars(size_t *n)
{
    for (size_t i = 0; i < N_ENTRIES; i++) {
        infos[i].name = entries[i].name;
        infos[i].def = entries[i].def;
        infos[i].help = entries[i].help;
    }
    *n = N_ENTRIES;
    return infos;
}

int config_parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    while (isspace((unsigned char)*s))
        s++;
    if (!*s || (!isdigit((unsigned char)*s) && *s != '-'))
        return ERR_INVALID;
    errno = 0;
    v = strtol(s, &end, 10);
    while (end && isspace((unsigned char)*end))
        end++;
    if (errno || !end || *end || v < min || v > max)
        return ERR_INVALID;
    *out = v;
    return 0;
}

int config_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    return ERR_INVALID;
}

/* ---- .env ---------------------------------------------------------------- */

#define DOTENV_MAX_BYTES (256 * 1024)
#define DOTENV_MAX_VARS 256

struct dotenv {
    char *names[DOTENV_MAX_VARS];
    char *values[DOTENV_MAX_VARS];
    size_t n;
};

static void dotenv_free(struct dotenv *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->names[i]);
        free(d->values[i]);
    }
    d->n = 0;
}

static char *trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Parse one .env text (NUL-terminated, modified in place). Malformed lines are
 * reported in `errors` and make the load fail like any other invalid value. */
static int dotenv_parse(struct dotenv *d, char *text, const char *path, char *errors, size_t cap,
                        size_t *elen)
{
    int rc = 0;
    unsigned lineno = 0;
    char *save = NULL;

    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq;
        char *key;
        char *val;
        size_t vl;

        lineno++;
        line = trim(line);
        if (!*line || *line == '#')
            continue;
        if (strncmp(line, "export ", 7) == 0)
            line = trim(line + 7);
        eq = strchr(line, '=');
        if (!eq) {
            *elen += (size_t)snprintf(errors + *elen, cap - *elen, "%s:%u: expected KEY=VALUE\n", path,
                                      lineno);
            if (*elen >= cap)
                *elen = cap - 1;
            rc = ERR_INVALID;
            continue;
        }
        *eq = '\0';
        key = trim(line);
        val = trim(eq + 1);
        vl = strlen(val);
        if (vl >= 2 && (val[0] == '"' || val[0] == '\'') && val[vl - 1] == val[0]) {
            val[vl - 1] = '\0';
            val++;
        } else if (val[0] == '#') {
            val[0] = '\0'; /* KEY=   # only a comment */
        } else {
            /* an unquoted value ends at " #" (inline comment) */
            char *hash = strstr(val, " #");
            if (hash) {
                *hash = '\0';
                val = trim(val);
            }
        }
        if (d->n >= DOTENV_MAX_VARS)
            break;
        d->names[d->n] = strdup(key);
        d->values[d->n] = strdup(val);
        if (!d->names[d->n] || !d->values[d->n]) {
            free(d->names[d->n]);
            free(d->values[d->n]);
            return ERR_NOMEM;
        }
        d->n++;
    }
    return rc;
}

static int dotenv_load(struct dotenv *d, const char *path, char *errors, size_t cap, size_t *elen)
{
    FILE *f = NULL;
    char *text = NULL;
    size_t n;
    int rc = 0;

    if (!path)
        return 0;
    f = fopen(path, "r");
    if (!f)
        return 0; /* optional */
    text = malloc(DOTENV_MAX_BYTES + 1);
    if (!text) {
        rc = ERR_NOMEM;
        goto out;
    }
    n = fread(text, 1, DOTENV_MAX_BYTES, f);
    text[n] = '\0';
    rc = dotenv_parse(d, text, path, errors, cap, elen);
out:
    free(text);
    if (f)
        fclose(f);
    return rc;
}

static const char *dotenv_get(const struct dotenv *d, const char *name)
{
    for (size_t i = d->n; i > 0; i--) /* last assignment wins */
        if (strcmp(d->names[i - 1], name) == 0)
            return d->values[i - 1];
    return NULL;
}

/* ---- load ---------------------------------------------------------------- */

static int valid_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 ? s[7] != '\0'
           : strncmp(s, "https://", 8) == 0 ? s[8] != '\0'
                                            : 0;
}

#define ADD_ERR(...)                                                                                   \
    do {                                                                                               \
        if (elen < errors_cap)                                                                         \
            elen += (size_t)snprintf(errors + elen, errors_cap - elen, __VA_ARGS__);                   \
        if (elen >= errors_cap)                                                                        \
            elen = errors_cap - 1;                                                                     \
        bad = 1;                                                                                       \
    } while (0)

int config_load(struct config *c, const char *dotenv_path, const char *(*lookup_env)(const char *),
                char *errors, size_t errors_cap)
{
    struct dotenv d = {.n = 0};
    size_t elen = 0;
    int bad = 0;
    int rc;

    memset(c, 0, sizeof *c);
    errors[0] = '\0';
    rc = dotenv_load(&d, dotenv_path, errors, errors_cap, &elen);
    if (rc == ERR_NOMEM)
        goto out;
    if (rc)
        bad = 1;

    for (size_t i = 0; i < N_ENTRIES; i++) {
        const struct cfg_entry *e = &entries[i];
        const char *v = lookup_env(e->name);
        char *field = (char *)c + e->offset;

        if (!v)
            v = dotenv_get(&d, e->name);
        if (v && !*v && e->type != CFG_BOOL)
            v = NULL; /* VAR= means unset */
        if (!v)
            v = e->def;
        switch (e->type) {
        case CFG_URL:
            if (v && !valid_url(v)) {
                ADD_ERR("%s must be an http:// or https:// URL\n", e->name);
                break;
            }
            /* fall through */
        case CFG_STR: {
            char **dst = (char **)(void *)field;
            if (v) {
                size_t vl = strlen(v);
                *dst = strdup(v);
                if (!*dst) {
                    rc = ERR_NOMEM;
                    goto out;
                }
                /* URLs are joined with paths: drop trailing slashes once here */
                if (e->type == CFG_URL)
                    while (vl > 0 && (*dst)[vl - 1] == '/')
                        (*dst)[--vl] = '\0';
            }
            break;
        }
        case CFG_LONG: {
            long *dst = (long *)(void *)field;
            if (config_parse_long(v, e->min, e->max, dst))
                ADD_ERR("%s must be a whole number from %ld to %ld (got \"%.40s\")\n", e->name, e->min,
                        e->max, e->flags & CFG_SECRET ? "***" : v);
            break;
        }
        case CFG_BOOL: {
            int *dst = (int *)(void *)field;
            if (config_parse_bool(v, dst))
                ADD_ERR("%s must be 1 or 0 (got \"%.40s\")\n", e->name, v);
            break;
        }
        }
    }

    /* cross-field rules */
    {
        const char *fn = lookup_env("AWS_LAMBDA_FUNCTION_NAME");
        const char *lwa = lookup_env("AWS_LWA_PORT");
        c->on_lambda = fn && *fn;
        if (c->on_lambda && !lookup_env("UPLOAD_DIR") && !dotenv_get(&d, "UPLOAD_DIR")) {
            free(c->upload_dir);
            c->upload_dir = strdup("/tmp/uploads");
            if (!c->upload_dir) {
                rc = ERR_NOMEM;
                goto out;
            }
        }
        const char *tp = c->trust_proxy_name ? c->trust_proxy_name : "0";
        int on = 0;
        if (strcasecmp(tp, "cloudflare") == 0)
            c->trust_proxy = TRUST_CLOUDFLARE;
        else if (config_parse_bool(tp, &on) == 0)
            c->trust_proxy = on ? TRUST_XFF : TRUST_NONE;
        else
            ADD_ERR("TRUST_PROXY must be 0, 1 or cloudflare (got \"%.40s\")\n", tp);
        /* behind a proxy every client arrives from the proxy's address: a
         * per-IP cap would cap everyone, so it is off unless set explicitly */
        if (c->trust_proxy != TRUST_NONE && !lookup_env("PER_IP_CONNECTIONS") && !dotenv_get(&d, "PER_IP_CONNECTIONS"))
            c->per_ip_connections = 0;
        /* the Lambda Web Adapter forwards to AWS_LWA_PORT first, then PORT */
        if (lwa && *lwa && config_parse_long(lwa, 1, 65535, &c->port))
            ADD_ERR("AWS_LWA_PORT must be a port number\n");
    }
    if (!c->aws_region) {
        const char *r = lookup_env("AWS_DEFAULT_REGION");
        if (!r || !*r)
            r = dotenv_get(&d, "AWS_DEFAULT_REGION");
        c->aws_region = strdup(r && *r ? r : "us-east-1");
        if (!c->aws_region) {
            rc = ERR_NOMEM;
            goto out;
        }
    }
    if (strcmp(c->kie_upload_name, "auto") == 0)
        c->kie_upload = KIE_UPLOAD_AUTO;
    else if (strcmp(c->kie_upload_name, "always") == 0)
        c->kie_upload = KIE_UPLOAD_ALWAYS;
    else if (strcmp(c->kie_upload_name, "never") == 0)
        c->kie_upload = KIE_UPLOAD_NEVER;
    else
        ADD_ERR("KIE_UPLOAD must be auto, always or never (got \"%.40s\")\n", c->kie_upload_name);
    if (strcmp(c->task_store_name, "auto") == 0)
        c->task_store = 1;
    else if (strcmp(c->task_store_name, "off") == 0)
        c->task_store = 0;
    else
        ADD_ERR("TASK_STORE must be auto or off (got \"%.40s\")\n", c->task_store_name);
    if (!c->task_store && c->daily_generation_limit > 0)
        ADD_ERR("DAILY_GENERATION_LIMIT needs the task store (it counts from it): unset it or set TASK_STORE=auto\n");
    if (strcmp(c->log_format, "text") != 0 && strcmp(c->log_format, "json") != 0)
        ADD_ERR("LOG_FORMAT must be text or json\n");
    {
        enum log_level lvl;
        if (log_level_parse(c->log_level, &lvl))
            ADD_ERR("LOG_LEVEL must be debug, info, warn or error\n");
    }
    if (c->public_base_url && strcmp(c->public_base_url, "auto") != 0) {
        size_t l = strlen(c->public_base_url);
        if (!valid_url(c->public_base_url))
            ADD_ERR("PUBLIC_BASE_URL must be an http(s):// URL or 'auto'\n");
        while (l > 0 && c->public_base_url[l - 1] == '/')
            c->public_base_url[--l] = '\0';
    }
    if (c->use_s3) {
        if (!c->s3_bucket)
            ADD_ERR("USE_S3=1 needs S3_BUCKET\n");
        if (!c->aws_access_key_id || !c->aws_secret_access_key)
            ADD_ERR("USE_S3=1 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n");
    }
    if (c->host && strlen(c->host) > 64)
        ADD_ERR("HOST is too long\n");
    rc = bad ? ERR_INVALID : 0;
out:
    dotenv_free(&d);
    if (rc)
        config_free(c);
    return rc;
}

void config_free(struct config *c)
{
    for (size_t i = 0; i < N_ENTRIES; i++) {
        if (entries[i].type == CFG_STR || entries[i].type == CFG_URL) {
            char **p = (char **)(void *)((char *)c + entries[i].offset);
            free(*p);
            *p = NULL;
        }
    }
    free(c->aws_region);
    c->aws_region = NULL;
}

void config_log(const struct config *c)
{
    for (size_t i = 0; i < N_ENTRIES; i++) {
        const struct cfg_entry *e = &entries[i];
        const char *field = (const char *)c + e->offset;
        switch (e->type) {
        case CFG_STR:
        case CFG_URL: {
            const char *v = *(char *const *)(const void *)field;
            if (e->name[0] == 'A' && strcmp(e->name, "AWS_REGION") == 0)
                v = c->aws_region;
            log_debug("config %s=%s", e->name, !v ? "(unset)" : (e->flags & CFG_SECRET) ? "(set, hidden)" : v);
            break;
        }
        case CFG_LONG:
            log_debug("config %s=%ld", e->name, *(const long *)(const void *)field);
            break;
        case CFG_BOOL:
            log_debug("config %s=%d", e->name, *(const int *)(const void *)field);
            break;
        }
    }
}
