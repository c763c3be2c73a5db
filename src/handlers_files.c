/* handlers_files.c - POST /upload, GET /files/<name>, POST /upload-url. */
#include "app.h"
#include "config.h"
#include "handlers.h"
#include "http.h"
#include "log.h"
#include "storage.h"
#include "upload.h"
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

struct upload_state {
    struct req *r;
    struct storage_put put;
};

static void iso8601(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A fresh stored name "<uuid>.<ext>" for an image of `type`. */
static void new_name(enum image_type type, char *out, size_t cap)
{
    char id[37];
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, id);
    snprintf(out, cap, "%s.%s", id, image_ext(type));
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

    if (p->http_status)
        return http_error(r, (unsigned)p->http_status, p->error_code, "%s", p->error_msg);
    if (store->ops->keeps_spool)
        upload_mark_committed(r->upload); /* renamed into place: not ours to remove */
    if (store->ops->file_url(store, p->name, r->app->cfg->s3_presign_ttl, url, sizeof url, &expires))
        return http_error(r, 500, "internal_error", "Could not build the file URL.");
    j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "url", url);
    cJSON_AddStringToObject(j, "filename", p->name);
    cJSON_AddStringToObject(j, "content_type", image_mime(p->type));
    cJSON_AddNumberToObject(j, "size", (double)p->size);
    if (strcmp(store->ops->name, "s3") == 0) {
        char key[512];
        snprintf(key, sizeof key, "%s%s", r->app->cfg->s3_prefix ? r->app->cfg->s3_prefix : "", p->name);
        cJSON_AddStringToObject(j, "key", key);
        cJSON_AddStringToObject(j, "public_url", url);
        if (expires) {
            char when[32];
            iso8601(expires, when, sizeof when);
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
    log_info("request %s: stored %s (%s, %lld bytes) in %s", r->id, p->name, image_mime(p->type),
             (long long)p->size, store->ops->name);
    return http_json(r, 200, j);
}

static void on_put_done(struct storage_put *p, void *arg)
{
    struct upload_state *st = arg;
    (void)p;
    http_resume(st->r);
}

enum MHD_Result h_upload(struct req *r)
{
    struct storage *store = r->app->store;
    struct upload_state *st;
    unsigned status;
    const char *code;
    const char *msg;
    int rc;

    if (upload_finish(r->upload)) {
        upload_error(r->upload, &status, &code, &msg);
        return http_error(r, status, code, "%s", msg);
    }
    st = calloc(1, sizeof *st);
    if (!st)
        return MHD_NO;
    r->state = st;
    r->state_free = free;
    st->r = r;
    new_name(upload_type(r->upload), st->put.name, sizeof st->put.name);
    st->put.fd = upload_fd(r->upload);
    st->put.spool_path = upload_spool_path(r->upload);
    st->put.type = upload_type(r->upload);
    st->put.size = upload_size(r->upload);
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

enum MHD_Result h_files(struct req *r)
{
    struct storage *store = r->app->store;
    struct storage_file f;
    struct MHD_Response *resp;
    enum image_type type = stored_name_check(r->param);
    const char *inm;
    const char *range;
    const char *if_range;
    char etag[64];
    char disp[300];
    char crange[96];
    long long start = 0;
    long long len = 0;
    unsigned status = 200;
    int rc;

    if (type == IMAGE_UNKNOWN)
        return http_error(r, 404, "not_found", "There is no such file.");
    rc = store->ops->open_file(store, r->param, &f);
    if (rc)
        return http_error(r, 404, "not_found", "There is no such file.");
    if (f.fd < 0)
        return http_redirect(r, f.redirect);
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)f.size, (unsigned long long)f.mtime);
    inm = http_header(r, "If-None-Match");
    if (inm && (strstr(inm, etag) || strcmp(inm, "*") == 0)) {
        close(f.fd);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "ETag", etag);
        MHD_add_response_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
        return http_send(r, 304, resp, 0);
    }
    /* one byte range, unless If-Range names another version */
    range = http_header(r, "Range");
    if_range = http_header(r, "If-Range");
    if (range && (!if_range || strcmp(if_range, etag) == 0))
        rc = range_parse(range, (long long)f.size, &start, &len);
    else
        rc = -1;
    if (rc == 1) {
        close(f.fd);
        snprintf(crange, sizeof crange, "bytes */%lld", (long long)f.size);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, "Content-Range", crange);
        return http_send(r, 416, resp, 0);
    }
    if (rc == 0) {
        status = 206;
        snprintf(crange, sizeof crange, "bytes %lld-%lld/%lld", start, start + len - 1, (long long)f.size);
    } else {
        start = 0;
        len = (long long)f.size;
    }
    /* MHD closes the fd; the body goes out with sendfile */
    resp = MHD_create_response_from_fd_at_offset64((uint64_t)len, f.fd, (uint64_t)start);
    if (!resp) {
        close(f.fd);
        return MHD_NO;
    }
    snprintf(disp, sizeof disp, "inline; filename=\"%s\"", r->param);
    MHD_add_response_header(resp, "Content-Type", image_mime(type));
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
    MHD_add_response_header(resp, "Content-Disposition", disp);
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    if (status == 206)
        MHD_add_response_header(resp, "Content-Range", crange);
    return http_send(r, status, resp, (unsigned long long)len);
}

enum MHD_Result h_upload_url(struct req *r)
{
    struct storage *store = r->app->store;
    cJSON *body;
    cJSON *ct;
    cJSON *size;
    cJSON *out;
    enum image_type type;
    long long sz = -1;
    char name[64];

    if (!store->ops->presign_put)
        return http_error(r, 400, "s3_required",
                          "Direct uploads need S3 mode (USE_S3=1); in local mode use POST /upload.");
    body = cJSON_ParseWithLength(buf_str(&r->body), r->body.len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return http_error(r, 400, "invalid_json", "The body must be a JSON object like "
                                                  "{\"content_type\":\"image/png\",\"size\":12345}.");
    }
    ct = cJSON_GetObjectItemCaseSensitive(body, "content_type");
    size = cJSON_GetObjectItemCaseSensitive(body, "size");
    type = cJSON_IsString(ct) ? image_from_mime(ct->valuestring) : IMAGE_UNKNOWN;
    if (type == IMAGE_UNKNOWN) {
        cJSON_Delete(body);
        return http_error(r, 415, "unsupported_media_type",
                          "content_type must be image/jpeg, image/png or image/webp.");
    }
    if (size) {
        if (!cJSON_IsNumber(size) || size->valuedouble < 1 || size->valuedouble != (double)(long long)size->valuedouble) {
            cJSON_Delete(body);
            return http_error(r, 400, "invalid_size", "size must be a positive whole number of bytes.");
        }
        sz = (long long)size->valuedouble;
        if (sz > r->app->cfg->max_upload_bytes) {
            cJSON_Delete(body);
            return http_error(r, 413, "file_too_large", "The file is larger than the limit of %ld bytes.",
                              r->app->cfg->max_upload_bytes);
        }
    }
    cJSON_Delete(body);
    new_name(type, name, sizeof name);
    out = cJSON_CreateObject();
    if (store->ops->presign_put(store, name, image_mime(type), sz, out)) {
        cJSON_Delete(out);
        return http_error(r, 500, "internal_error", "Could not presign the upload.");
    }
    return http_json(r, 200, out);
}
