/* storage_s3.c - uploads as S3 objects, signed with our own SigV4 (s3.h).
 *
 * The validated spool file (in TMPDIR) is PUT with a signed payload hash on
 * the upstream I/O thread while the client's connection is suspended; only a
 * 200 from S3 counts as stored. Files are handed out as presigned GET URLs
 * (or public object URLs with S3_PUBLIC=1); GET /files/<name> redirects to a
 * fresh presigned URL so old links keep working. */
#include "config.h"
#include "err.h"
#include "hex.h"
#include "log.h"
#include "s3.h"
#include "s3call.h"
#include "storage.h"
#include "upstream.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S3_TIMEOUT_MS 60000
#define S3_MAX_ERROR_BODY (64 * 1024)

struct s3store {
    struct s3_config_target ct;
    char *prefix, *results_prefix;
    long ttl;
    int public_urls;
    struct upstream *up;
    char spool[512];
    char origin[300]; /* scheme://host[:port] of object URLs */
};

struct s3_put_ctx {
    struct s3store *s;
    struct storage_put *p;
};

static const char *s3_spool_dir(struct storage *s)
{
    return ((struct s3store *)s->priv)->spool;
}

/* Uploads live under S3_PREFIX (direct uploads' raw objects under its
 * "incoming/"), kept results ("results/<task>.<ext>") under
 * S3_RESULTS_PREFIX. */
static int make_key(struct s3store *s, const char *name, char *out, size_t cap)
{
    int n = strncmp(name, "results/", 8) == 0 ? snprintf(out, cap, "%s%s", s->results_prefix, name + 8)
                                               : snprintf(out, cap, "%s%s", s->prefix, name);
    return n < 0 || (size_t)n >= cap ? ERR_TOO_LARGE : 0;
}

/* SHA-256 of the whole file as hex; the fd is left at offset 0. */
static int file_sha256_hex(int fd, char out[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int mdlen = 0;
    char chunk[65536];
    ssize_t n;
    int rc = ERR_IO;

    if (!ctx || lseek(fd, 0, SEEK_SET) != 0 || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        if (EVP_DigestUpdate(ctx, chunk, (size_t)n) != 1)
            goto out;
    if (n < 0 || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || lseek(fd, 0, SEEK_SET) != 0)
        goto out;
    hex_lower(md, 32, out);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

static void put_fail(struct storage_put *p, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put_fail(struct storage_put *p, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    p->http_status = status;
    snprintf(p->error_code, sizeof p->error_code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(p->error_msg, sizeof p->error_msg, fmt, ap);
    va_end(ap);
}

static void on_put_done(struct upstream_call *c, void *arg)
{
    struct s3_put_ctx *ctx = arg;
    struct storage_put *p = ctx->p;
    const char *bucket = ctx->s->ct.bucket;

    if (c->result == ERR_TIMEOUT) {
        put_fail(p, 504, "s3_timeout", "S3 did not answer within %d s while storing into bucket %s.",
                 S3_TIMEOUT_MS / 1000, bucket);
    } else if (c->result && c->http_status == 0) {
        put_fail(p, 502, "s3_unreachable", "Could not reach S3 (bucket %s): %s.", bucket, c->error);
    } else if (c->http_status != 200) {
        char code[128];
        char msg[256];
        if (s3_parse_error(c->response.data ? c->response.data : "", c->response.len, code, sizeof code, msg,
                           sizeof msg) != 0) {
            snprintf(code, sizeof code, "HTTP %ld", c->http_status);
            msg[0] = '\0';
        }
        put_fail(p, 502, "s3_error", "S3 refused to store the file in bucket %s: %s%s%s", bucket, code,
                 msg[0] ? " - " : "", msg);
    }
    if (p->http_status)
        log_error("s3: PUT %s failed: %s", p->name, p->error_msg);
    upstream_call_free(c);
    free(ctx);
    p->done(p, p->arg);
}

static int s3_commit(struct storage *st, struct storage_put *p)
{
    struct s3store *s = st->priv;
    struct s3_request *rq = NULL;
    struct upstream_call *c = NULL;
    struct s3_put_ctx *ctx = NULL;
    char key[S3_KEY_MAX + 1];
    char hash[65];
    int rc = ERR_NOMEM;

    if (make_key(s, p->name, key, sizeof key) || file_sha256_hex(p->fd, hash)) {
        put_fail(p, 500, "storage_error", "Could not prepare the upload for S3.");
        return ERR_IO;
    }
    rq = malloc(sizeof *rq);
    ctx = calloc(1, sizeof *ctx);
    if (!rq || !ctx)
        goto fail;
    if (s3_sign_put(&s->ct.t, key, image_mime(p->type), (unsigned long long)p->size, hash, time(NULL), rq)) {
        put_fail(p, 500, "storage_error", "Could not sign the S3 upload (check S3_BUCKET and S3_ENDPOINT).");
        rc = ERR_INVALID;
        goto fail;
    }
    c = s3_call_new(rq, S3_TIMEOUT_MS, S3_MAX_ERROR_BODY);
    if (!c)
        goto fail;
    c->upload_fd = p->fd;
    c->upload_size = (curl_off_t)p->size;
    ctx->s = s;
    ctx->p = p;
    c->done = on_put_done;
    c->arg = ctx;
    free(rq);
    if (upstream_submit(s->up, c)) {
        put_fail(p, 503, "shutting_down", "The server is shutting down; retry the upload.");
        upstream_call_free(c);
        free(ctx);
        return ERR_INVALID;
    }
    return STORAGE_PENDING;
fail:
    if (!p->http_status)
        put_fail(p, 500, "internal_error", "Out of memory.");
    free(rq);
    free(ctx);
    upstream_call_free(c);
    return rc;
}

static int s3_file_url(struct storage *st, const char *name, long ttl, char *out, size_t cap, time_t *expires_at)
{
    struct s3store *s = st->priv;
    struct s3_request *rq;
    char key[S3_KEY_MAX + 1];
    time_t now = time(NULL);
    int rc;

    if (ttl < s->ttl)
        ttl = s->ttl;
    if (make_key(s, name, key, sizeof key))
        return ERR_TOO_LARGE;
    if (s->public_urls) {
        if (expires_at)
            *expires_at = 0;
        return s3_object_url(&s->ct.t, key, out, cap) ? ERR_INVALID : 0;
    }
    rq = malloc(sizeof *rq);
    if (!rq)
        return ERR_NOMEM;
    rc = s3_presign_get(&s->ct.t, key, (unsigned)ttl, now, rq);
    if (rc == 0 && (size_t)snprintf(out, cap, "%s", rq->url) >= cap)
        rc = ERR_TOO_LARGE;
    free(rq);
    if (expires_at)
        *expires_at = now + ttl;
    return rc ? ERR_INVALID : 0;
}

static int s3_open_file(struct storage *st, const char *name, struct storage_file *out)
{
    out->fd = -1;
    out->size = 0;
    out->mtime = 0;
    return s3_file_url(st, name, 0, out->redirect, sizeof out->redirect, NULL);
}

static void incoming_name(const char *upload_id, char *out, size_t cap)
{
    snprintf(out, cap, "incoming/%s", upload_id);
}

static int s3_presign_put_json(struct storage *st, const char *upload_id, const char *content_type, long long size,
                               cJSON *out)
{
    struct s3store *s = st->priv;
    struct s3_request *rq = malloc(sizeof *rq);
    char name[64];
    char key[S3_KEY_MAX + 1];
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    cJSON *headers;
    int rc = ERR_INVALID;

    if (!rq)
        return ERR_NOMEM;
    incoming_name(upload_id, name, sizeof name);
    if (make_key(s, name, key, sizeof key) || s3_presign_put(&s->ct.t, key, content_type, (unsigned)s->ttl, now, rq))
        goto out;
    cJSON_AddStringToObject(out, "upload_url", rq->url);
    cJSON_AddStringToObject(out, "method", "PUT");
    headers = cJSON_AddObjectToObject(out, "headers");
    for (size_t i = 0; i < rq->nheaders; i++) {
        char line[S3_HEADER_MAX];
        char *colon;
        snprintf(line, sizeof line, "%s", rq->headers[i]);
        colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        cJSON_AddStringToObject(headers, line, colon[1] == ' ' ? colon + 2 : colon + 1);
    }
    cJSON_AddStringToObject(out, "key", key);
    if (size >= 0)
        cJSON_AddNumberToObject(out, "size", (double)size);
    now += s->ttl;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(out, "expires_at", when);
    rc = 0;
out:
    free(rq);
    return rc;
}

/* A signed request without a body for the incoming object of upload_id. */
static struct upstream_call *incoming_call(struct s3store *s, const char *method, const char *upload_id,
                                           size_t max_response)
{
    struct s3_request *rq = malloc(sizeof *rq);
    struct upstream_call *c = NULL;
    char name[64];
    char key[S3_KEY_MAX + 1];

    if (!rq)
        return NULL;
    incoming_name(upload_id, name, sizeof name);
    if (make_key(s, name, key, sizeof key) || s3_sign_get(&s->ct.t, method, key, time(NULL), rq))
        goto out;
    c = s3_call_new(rq, S3_TIMEOUT_MS, max_response);
out:
    free(rq);
    return c;
}

static void fetch_fail(struct storage_fetch *f, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fetch_fail(struct storage_fetch *f, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    f->http_status = status;
    snprintf(f->error_code, sizeof f->error_code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(f->error_msg, sizeof f->error_msg, fmt, ap);
    va_end(ap);
}

struct fetch_ctx {
    struct s3store *s;
    struct storage_fetch *f;
};

static void on_fetch_done(struct upstream_call *c, void *arg)
{
    struct fetch_ctx *ctx = arg;
    struct storage_fetch *f = ctx->f;
    const char *bucket = ctx->s->ct.bucket;

    f->size = (long long)c->downloaded;
    if (c->result == ERR_TOO_LARGE) {
        fetch_fail(f, 413, "file_too_large", "The uploaded file is larger than the limit of %lld bytes.", f->max_bytes);
    } else if (c->result == ERR_TIMEOUT) {
        fetch_fail(f, 504, "s3_timeout", "S3 did not answer within %d s (bucket %s).", S3_TIMEOUT_MS / 1000, bucket);
    } else if (c->result && c->http_status == 0) {
        fetch_fail(f, 502, "s3_unreachable", "Could not reach S3 (bucket %s): %s.", bucket, c->error);
    } else if (c->http_status == 404 || c->http_status == 403) {
        /* presigned PUTs can only create this key: 403 on a missing object
         * is what S3 says when the policy lacks ListBucket */
        fetch_fail(f, 404, "upload_not_found",
                   "Nothing was uploaded for this upload_id: PUT the file to upload_url first (it expires "
                   "with expires_at).");
    } else if (c->http_status != 200) {
        fetch_fail(f, 502, "s3_error", "S3 answered HTTP %ld for the uploaded file (bucket %s).", c->http_status,
                   bucket);
    }
    upstream_call_free(c);
    free(ctx);
    f->done(f, f->arg);
}

static int s3_fetch_incoming(struct storage *st, struct storage_fetch *f)
{
    struct s3store *s = st->priv;
    struct fetch_ctx *ctx = calloc(1, sizeof *ctx);
    struct upstream_call *c = ctx ? incoming_call(s, "GET", f->upload_id, (size_t)f->max_bytes) : NULL;

    if (!c) {
        free(ctx);
        fetch_fail(f, 500, "internal_error", "Could not prepare the S3 request.");
        return ERR_NOMEM;
    }
    c->download_fd = f->fd;
    ctx->s = s;
    ctx->f = f;
    c->done = on_fetch_done;
    c->arg = ctx;
    if (upstream_submit(s->up, c)) {
        fetch_fail(f, 503, "shutting_down", "The server is shutting down; retry.");
        upstream_call_free(c);
        free(ctx);
        return ERR_INVALID;
    }
    return STORAGE_PENDING;
}

static void on_delete_done(struct upstream_call *c, void *arg)
{
    (void)arg;
    if (c->result || (c->http_status != 204 && c->http_status != 200))
        log_warn("s3: could not delete an incoming object (HTTP %ld%s%s); the lifecycle rule will", c->http_status,
                 c->result ? ", " : "", c->result ? c->error : "");
    upstream_call_free(c);
}

static void s3_delete_incoming(struct storage *st, const char *upload_id)
{
    struct s3store *s = st->priv;
    struct upstream_call *c = incoming_call(s, "DELETE", upload_id, S3_MAX_ERROR_BODY);

    if (!c)
        return;
    c->done = on_delete_done;
    if (upstream_submit(s->up, c))
        upstream_call_free(c);
}

static const char *s3_origin(struct storage *st)
{
    return ((struct s3store *)st->priv)->origin;
}

static void s3_destroy(struct storage *st)
{
    struct s3store *s = st->priv;
    if (s) {
        s3_config_target_free(&s->ct);
        free(s->prefix);
        free(s->results_prefix);
        free(s);
    }
    free(st);
}

const struct storage_ops storage_s3_ops = {
    .name = "s3",
    .async_commit = 1,
    .keeps_spool = 0,
    .spool_dir = s3_spool_dir,
    .commit = s3_commit,
    .open_file = s3_open_file,
    .file_url = s3_file_url,
    .presign_put = s3_presign_put_json,
    .fetch_incoming = s3_fetch_incoming,
    .delete_incoming = s3_delete_incoming,
    .direct_upload_origin = s3_origin,
    .destroy = s3_destroy,
};

struct storage *storage_s3_open(const struct config *cfg, struct upstream *up, char *err, size_t cap)
{
    struct storage *st = calloc(1, sizeof *st);
    struct s3store *s = calloc(1, sizeof *s);
    const char *tmp = getenv("TMPDIR");

    if (!st || !s) {
        free(st);
        free(s);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    st->ops = &storage_s3_ops;
    st->priv = s;
    if (s3_config_target_init(&s->ct, cfg, err, cap))
        goto fail;
    s->prefix = strdup(cfg->s3_prefix ? cfg->s3_prefix : "");
    s->results_prefix = strdup(cfg->s3_results_prefix ? cfg->s3_results_prefix : "");
    if (!s->prefix || !s->results_prefix) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    s->ttl = cfg->s3_presign_ttl;
    s->public_urls = cfg->s3_public;
    s->up = up;
    snprintf(s->spool, sizeof s->spool, "%s", tmp && *tmp ? tmp : "/tmp");
    {
        /* the origin of object URLs: scheme://host[:port] up to the first '/' after it */
        char url[S3_URL_MAX];
        const char *host;
        size_t n;
        if (s3_object_url(&s->ct.t, "x", url, sizeof url) != 0) {
            snprintf(err, cap, "S3 settings are invalid (object URL)");
            goto fail;
        }
        host = strstr(url, "://");
        n = host ? (size_t)(host + 3 - url) + strcspn(host + 3, "/") : 0;
        if (n == 0 || n >= sizeof s->origin) {
            snprintf(err, cap, "S3 settings are invalid (object URL)");
            goto fail;
        }
        memcpy(s->origin, url, n);
        s->origin[n] = '\0';
    }
    return st;
fail:
    s3_destroy(st);
    return NULL;
}
