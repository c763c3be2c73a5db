/* handlers_upload.c - POST /upload, POST /upload-url, POST /upload-complete.
 *
 * Every path into storage ends with the image pipeline (image.h):
 *   /upload           the multipart body is spooled (upload.c), then
 *   /upload-complete  (S3 mode) the raw object the browser PUT to the
 *                     presigned URL of /upload-url is fetched into a spool file,
 * then an image worker re-encodes it into a second spool file, which storage
 * commits under its final name "<uuid>.<jpg|png>" (local: rename; S3: PUT on
 * the upstream I/O thread). The connection is suspended meanwhile, so no HTTP
 * thread ever decodes or waits. Both spool files are gone when the request
 * ends, whatever happened. */
#include "app.h"
#include "config.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "image.h"
#include "imagepool.h"
#include "log.h"
#include "metrics.h"
#include "spool.h"
#include "storage.h"
#include "upload.h"
#include "validate.h"
#include "timefmt.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

/* One spool file, removed on free unless kept. */
struct spool {
    char path[4096];
    int fd;
    int kept; /* renamed into place by storage: not ours to remove */
};

struct upload_state {
    struct req *r;
    /* input: the upload's spool (owned by r->upload) or our own (complete) */
    const char *in_path;
    enum image_type in_type;
    long long in_size;
    struct spool in;          /* /upload-complete only */
    struct storage_fetch fetch;
    /* the pipeline */
    struct imagepool_job job;
    struct image_limits lim;
    struct image_result img;
    struct spool out;         /* the re-encoded image */
    struct storage_put put;
};

static int spool_open(struct spool *sp, const char *dir)
{
    sp->fd = spool_create(dir, sp->path, sizeof sp->path);
    return sp->fd < 0 ? ERR_IO : 0;
}

static void spool_close(struct spool *sp)
{
    if (sp->fd >= 0) {
        close(sp->fd);
        sp->fd = -1;
        if (!sp->kept)
            unlink(sp->path);
    }
}

static void upload_state_free(void *p)
{
    struct upload_state *st = p;
    if (!st)
        return;
    spool_close(&st->in);
    spool_close(&st->out);
    free(st);
}

static struct upload_state *state_new(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    struct upload_state *st = calloc(1, sizeof *st);

    if (!st)
        return NULL;
    st->in.fd = -1;
    st->out.fd = -1;
    st->r = r;
    st->lim.max_side = cfg->image_max_side;
    st->lim.max_pixels = cfg->image_max_pixels;
    st->lim.max_output = IMAGE_KIE_MAX_BYTES;
    st->lim.keep_metadata = cfg->keep_metadata;
    r->state = st;
    r->state_free = upload_state_free;
    return st;
}

static void new_uuid(char out[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

/* A fresh stored name "<uuid>.<ext>" for an image of `type`. */
static void new_name(enum image_type type, char *out, size_t cap)
{
    char id[37];
    new_uuid(id);
    snprintf(out, cap, "%s.%s", id, image_ext(type));
}

static void image_meta_json(cJSON *j, const struct image_meta *m)
{
    cJSON_AddStringToObject(j, "content_type", image_mime(m->type));
    cJSON_AddNumberToObject(j, "width", (double)m->width);
    cJSON_AddNumberToObject(j, "height", (double)m->height);
    cJSON_AddNumberToObject(j, "size", (double)m->size);
}

/* The browser's original (S3 incoming/<id>) is deleted once the re-encoded
 * image is stored or refused, not while its PUT is in flight: a store that
 * prunes empty key "directories" on DELETE (s3rver does) could otherwise
 * remove the one the PUT is writing into. Idempotent. */
static void drop_incoming(struct req *r)
{
    struct upload_state *st = r->state;
    struct storage *store = r->app->store;

    if (st->fetch.upload_id[0] && store->ops->delete_incoming) {
        store->ops->delete_incoming(store, st->fetch.upload_id);
        st->fetch.upload_id[0] = '\0';
    }
}

static enum MHD_Result upload_reply(struct req *r)
{
    struct upload_state *st = r->state;
    struct storage_put *p = &st->put;
    struct storage *store = r->app->store;
    char url[2048];
    char base[512];
    time_t expires = 0;
    cJSON *j;
    cJSON *orig;

    drop_incoming(r); /* after the PUT: never alongside it (see drop_incoming) */
    if (p->http_status) {
        spool_close(&st->out);
        return http_error(r, (unsigned)p->http_status, p->error_code, "%s", p->error_msg);
    }
    if (store->ops->keeps_spool)
        st->out.kept = 1; /* renamed into place */
    else
        spool_close(&st->out); /* copied (S3): not needed any more */
    if (store->ops->file_url(store, p->name, r->app->cfg->s3_presign_ttl, url, sizeof url, &expires))
        return http_error(r, 500, "internal_error", "Could not build the file URL.");
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "url", url);
    cJSON_AddStringToObject(j, "filename", p->name);
    cJSON_AddStringToObject(j, "content_type", image_mime(p->type));
    cJSON_AddNumberToObject(j, "size", (double)p->size);
    cJSON_AddNumberToObject(j, "width", (double)st->img.stored.width);
    cJSON_AddNumberToObject(j, "height", (double)st->img.stored.height);
    orig = cJSON_AddObjectToObject(j, "original");
    if (orig)
        image_meta_json(orig, &st->img.original);
    if (strcmp(store->ops->name, "s3") == 0) {
        char key[512];
        snprintf(key, sizeof key, "%s%s", r->app->cfg->s3_prefix ? r->app->cfg->s3_prefix : "", p->name);
        cJSON_AddStringToObject(j, "key", key);
        cJSON_AddStringToObject(j, "public_url", url);
        if (expires) {
            char when[32];
            iso8601_utc(expires, when, sizeof when);
            cJSON_AddStringToObject(j, "expires_at", when);
        }
    } else {
        http_public_base(r, base, sizeof base);
        if (base[0]) {
            char pub[2600];
            snprintf(pub, sizeof pub, "%s%s", base, url);
            cJSON_AddStringToObject(j, "public_url", pub);
        }
    }
    metrics_add(r->app->metrics, M_UPLOADS, 1);
    metrics_add(r->app->metrics, M_UPLOAD_BYTES, (unsigned long long)st->img.original.size);
    log_info("request %s: stored %s (%s %ldx%ld, %lld bytes; uploaded %s %ldx%ld, %lld bytes) in %s", r->id,
             p->name, image_mime(p->type), st->img.stored.width, st->img.stored.height, (long long)p->size,
             image_mime(st->img.original.type), st->img.original.width, st->img.original.height,
             st->img.original.size, store->ops->name);
    return http_json(r, 200, j);
}

static void on_put_done(struct storage_put *p, void *arg)
{
    struct upload_state *st = arg;
    (void)p;
    http_resume(st->r);
}

/* On an MHD thread, once the image worker is done: store the re-encoded
 * image (S3: the PUT runs on the upstream I/O thread, suspended again). */
static enum MHD_Result upload_processed(struct req *r)
{
    struct upload_state *st = r->state;
    struct storage *store = r->app->store;
    int rc;

    /* the uploaded bytes are no longer needed */
    upload_free(r->upload);
    r->upload = NULL;
    spool_close(&st->in);
    if (st->img.status) {
        drop_incoming(r);
        spool_close(&st->out); /* gone before the answer leaves */
        return http_error(r, st->img.status, st->img.code, "%s", st->img.message);
    }
    new_name(st->img.stored.type, st->put.name, sizeof st->put.name);
    st->put.fd = st->out.fd;
    st->put.spool_path = st->out.path;
    st->put.type = st->img.stored.type;
    st->put.size = (off_t)st->img.stored.size;
    st->put.done = on_put_done;
    st->put.arg = st;
    if (store->ops->async_commit) {
        http_suspend(r, upload_reply);
        rc = store->ops->commit(store, &st->put);
        if (rc != STORAGE_PENDING)
            http_resume(r); /* finished (or failed) at once */
        return MHD_YES;
    }
    rc = store->ops->commit(store, &st->put);
    if (rc && !st->put.http_status) {
        st->put.http_status = 500;
        snprintf(st->put.error_code, sizeof st->put.error_code, "storage_error");
        snprintf(st->put.error_msg, sizeof st->put.error_msg, "Could not store the upload.");
    }
    return upload_reply(r);
}

/* On an image worker. */
static void upload_job(struct imagepool_job *job)
{
    struct upload_state *st = (struct upload_state *)(void *)((char *)job - offsetof(struct upload_state, job));

    (void)image_normalize(st->in_path, st->in_type, st->in_size, &st->lim, st->out.fd, &st->img);
    http_resume(st->r);
}

/* Hand the input to an image worker, or answer 503 when they are all busy. */
static enum MHD_Result process(struct req *r)
{
    struct upload_state *st = r->state;
    struct storage *store = r->app->store;
    long wait;

    if (spool_open(&st->out, store->ops->spool_dir(store))) {
        log_error("upload: cannot create a spool file: %s", strerror(errno));
        return http_error(r, errno == ENOSPC ? 507 : 500, errno == ENOSPC ? "insufficient_storage" : "storage_error",
                          "The server could not create a temporary file.");
    }
    st->job.run = upload_job;
    if (imagepool_reserve(r->app->images)) {
        wait = imagepool_retry_after(r->app->images);
        return http_error_retry(r, 503, "server_busy", wait,
                                "The server is busy processing other images; try again in %ld s.", wait);
    }
    http_suspend(r, upload_processed);
    imagepool_submit(r->app->images, &st->job);
    return MHD_YES;
}

enum MHD_Result h_upload(struct req *r)
{
    struct upload_state *st;
    unsigned status;
    const char *code;
    const char *msg;

    if (upload_finish(r->upload)) {
        upload_error(r->upload, &status, &code, &msg);
        return http_error(r, status, code, "%s", msg);
    }
    st = state_new(r);
    if (!st)
        return MHD_NO;
    st->in_path = upload_spool_path(r->upload);
    st->in_type = upload_type(r->upload);
    st->in_size = (long long)upload_size(r->upload);
    return process(r);
}

/* ---- direct uploads (S3 mode) ---------------------------------------------- */

/* The JSON body of /upload-url or /upload-complete, or NULL after answering. */
static cJSON *json_body(struct req *r, const char *example, enum MHD_Result *answer)
{
    cJSON *body = cJSON_ParseWithLength(buf_str(&r->body), r->body.len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        *answer = http_error(r, 400, "invalid_json", "The body must be a JSON object like %s.", example);
        return NULL;
    }
    return body;
}

static int direct_uploads(struct req *r, enum MHD_Result *answer)
{
    const struct storage_ops *ops = r->app->store->ops;
    if (ops->presign_put && ops->fetch_incoming && ops->delete_incoming)
        return 1;
    *answer = http_error(r, 400, "s3_required",
                         "Direct uploads need S3 mode (USE_S3=1); in local mode use POST /upload.");
    return 0;
}

enum MHD_Result h_upload_url(struct req *r)
{
    struct storage *store = r->app->store;
    enum MHD_Result answer = MHD_NO;
    cJSON *body;
    cJSON *ct;
    cJSON *size;
    cJSON *out;
    cJSON *complete;
    enum image_type type;
    long long sz = -1;
    char id[37];

    if (!direct_uploads(r, &answer))
        return answer; /* not rate limited: cheap; /upload-complete, which decodes, is */
    body = json_body(r, "{\"content_type\":\"image/heic\",\"size\":12345}", &answer);
    if (!body)
        return answer;
    ct = cJSON_GetObjectItemCaseSensitive(body, "content_type");
    size = cJSON_GetObjectItemCaseSensitive(body, "size");
    type = cJSON_IsString(ct) ? image_from_mime(ct->valuestring) : IMAGE_UNKNOWN;
    if (type == IMAGE_UNKNOWN) {
        cJSON_Delete(body);
        return http_error(r, 415, "unsupported_media_type",
                          "content_type must be image/jpeg, image/png, image/webp, image/heic, image/heif, "
                          "image/avif or image/tiff.");
    }
    if (size) {
        if (!cJSON_IsNumber(size) || size->valuedouble < 1 || size->valuedouble > 1e15 ||
            size->valuedouble != (double)(long long)size->valuedouble) {
            cJSON_Delete(body);
            return http_error(r, 400, "invalid_size", "size must be a positive whole number of bytes.");
        }
        sz = (long long)size->valuedouble;
        if (sz > r->app->cfg->max_direct_upload_bytes) {
            cJSON_Delete(body);
            return http_error(r, 413, "file_too_large", "The file is larger than the limit of %ld bytes.",
                              r->app->cfg->max_direct_upload_bytes);
        }
    }
    cJSON_Delete(body);
    new_uuid(id);
    out = cJSON_CreateObject();
    if (!out || store->ops->presign_put(store, id, image_mime(type), sz, out)) {
        cJSON_Delete(out);
        return http_error(r, 500, "internal_error", "Could not presign the upload.");
    }
    cJSON_AddStringToObject(out, "upload_id", id);
    complete = cJSON_AddObjectToObject(out, "complete");
    if (complete) {
        cJSON *cb;
        cJSON_AddStringToObject(complete, "method", "POST");
        cJSON_AddStringToObject(complete, "url", "/upload-complete");
        cb = cJSON_AddObjectToObject(complete, "body");
        if (cb)
            cJSON_AddStringToObject(cb, "upload_id", id);
    }
    return http_json(r, 200, out);
}

static int uuid_valid(const char *s)
{
    uuid_t u;
    char back[37];
    if (!s || strlen(s) != 36 || uuid_parse(s, u) != 0)
        return 0;
    uuid_unparse_lower(u, back);
    return strcmp(back, s) == 0;
}

static enum MHD_Result fetched(struct req *r)
{
    struct upload_state *st = r->state;
    unsigned char magic[IMAGE_MAGIC_LEN];
    ssize_t n;
    const char *why;

    if (st->fetch.http_status) {
        spool_close(&st->in);
        return http_error(r, (unsigned)st->fetch.http_status, st->fetch.error_code, "%s", st->fetch.error_msg);
    }
    if (st->fetch.size == 0) {
        spool_close(&st->in);
        r->app->store->ops->delete_incoming(r->app->store, st->fetch.upload_id);
        return http_error(r, 400, "empty_file", "The uploaded file is empty.");
    }
    n = pread(st->in.fd, magic, sizeof magic, 0);
    st->in_type = n > 0 ? image_detect(magic, (size_t)n) : IMAGE_UNKNOWN;
    if (st->in_type == IMAGE_UNKNOWN) {
        spool_close(&st->in);
        r->app->store->ops->delete_incoming(r->app->store, st->fetch.upload_id);
        why = n > 0 ? image_refusal(magic, (size_t)n) : NULL;
        return http_error(r, 415, "unsupported_media_type", "%s",
                          why ? why
                              : "The uploaded file is not a supported image: send a JPEG, PNG, WEBP, HEIC/HEIF, "
                                "AVIF or TIFF photo.");
    }
    st->in_path = st->in.path;
    st->in_size = st->fetch.size;
    return process(r);
}

static void on_fetched(struct storage_fetch *f, void *arg)
{
    struct upload_state *st = arg;
    (void)f;
    http_resume(st->r);
}

enum MHD_Result h_upload_complete(struct req *r)
{
    struct storage *store = r->app->store;
    enum MHD_Result answer = MHD_NO;
    struct upload_state *st;
    cJSON *body;
    cJSON *id;
    int rc;

    if (!direct_uploads(r, &answer))
        return answer;
    body = json_body(r, "{\"upload_id\":\"<the upload_id from /upload-url>\"}", &answer);
    if (!body)
        return answer;
    id = cJSON_GetObjectItemCaseSensitive(body, "upload_id");
    if (!cJSON_IsString(id) || !uuid_valid(id->valuestring)) {
        cJSON_Delete(body);
        return http_error(r, 400, "invalid_upload_id", "upload_id must be the upload_id that /upload-url answered.");
    }
    st = state_new(r);
    if (!st) {
        cJSON_Delete(body);
        return MHD_NO;
    }
    snprintf(st->fetch.upload_id, sizeof st->fetch.upload_id, "%s", id->valuestring);
    cJSON_Delete(body);
    if (spool_open(&st->in, store->ops->spool_dir(store)))
        return http_error(r, 500, "storage_error", "The server could not create a temporary file.");
    st->fetch.fd = st->in.fd;
    st->fetch.max_bytes = r->app->cfg->max_direct_upload_bytes;
    st->fetch.done = on_fetched;
    st->fetch.arg = st;
    http_suspend(r, fetched);
    rc = store->ops->fetch_incoming(store, &st->fetch);
    if (rc != STORAGE_PENDING)
        http_resume(r); /* failed at once: the error is in st->fetch */
    return MHD_YES;
}
