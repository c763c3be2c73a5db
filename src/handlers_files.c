/* handlers_files.c - GET /files/<name>: the stored images. */
#include "app.h"
#include "handlers.h"
#include "http.h"
#include "storage.h"
#include "validate.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
        http_add_file_headers(resp);
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
    http_add_file_headers(resp);
    if (status == 206)
        MHD_add_response_header(resp, "Content-Range", crange);
    return http_send(r, status, resp, (unsigned long long)len);
}
