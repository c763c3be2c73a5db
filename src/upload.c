/* upload.c - see upload.h.
 *
 * multipart/form-data arrives in chunks; MHD's PostProcessor splits it into
 * (field, filename, content-type, offset, data) pieces and calls on_part().
 * We keep the first part named "file", write it to a spool file created with
 * mkostemp, count its bytes against the limit, and decide the image type as
 * soon as IMAGE_MAGIC_LEN bytes are in (a type we do not accept is refused
 * before anything is written). Every error is sticky: the rest of
 * the body is drained and ignored, and the spool file is removed. */
#include "upload.h"
#include "err.h"
#include "log.h"
#include "spool.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POST_BUFFER 65536

struct upload {
    struct MHD_PostProcessor *pp;
    unsigned long long max;
    int fd;
    char spool_path[4096];
    int committed;
    int have_file;   /* a "file" part started */
    int file_done;   /* a later part started after "file" */
    unsigned long long size;
    unsigned char magic[IMAGE_MAGIC_LEN];
    size_t magic_len;
    enum image_type type;
    /* error */
    int err;
    unsigned status;
    const char *code;
    char msg[256];
};

static void fail(struct upload *u, int err, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(struct upload *u, int err, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (u->err)
        return;
    u->err = err;
    u->status = status;
    u->code = code;
    va_start(ap, fmt);
    vsnprintf(u->msg, sizeof u->msg, fmt, ap);
    va_end(ap);
}

/* 415, with what to do when we know the format. */
static void refuse(struct upload *u)
{
    const char *why = image_refusal(u->magic, u->magic_len);
    if (why)
        fail(u, ERR_UNSUPPORTED, 415, "unsupported_media_type", "%s", why);
    else
        fail(u, ERR_UNSUPPORTED, 415, "unsupported_media_type",
             "The file is not a supported image: send a JPEG, PNG, WEBP, HEIC/HEIF, AVIF or TIFF photo (the type "
             "is checked from the content, not the name).");
}

static void detect(struct upload *u, const char *data, size_t size)
{
    size_t take = IMAGE_MAGIC_LEN - u->magic_len;
    if (take > size)
        take = size;
    memcpy(u->magic + u->magic_len, data, take);
    u->magic_len += take;
    if (u->magic_len == IMAGE_MAGIC_LEN) {
        u->type = image_detect(u->magic, u->magic_len);
        if (u->type == IMAGE_UNKNOWN)
            refuse(u);
    }
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size)
{
    struct upload *u = cls;
    (void)kind;
    (void)filename;
    (void)content_type;
    (void)transfer_encoding;

    if (u->err)
        return MHD_NO;
    if (!key || strcmp(key, "file") != 0) {
        if (u->have_file)
            u->file_done = 1;
        return MHD_YES; /* other fields are ignored */
    }
    if (off == 0 && u->have_file && (u->file_done || u->size > 0)) {
        fail(u, ERR_INVALID, 400, "too_many_files", "Send exactly one file in the field \"file\".");
        return MHD_NO;
    }
    u->have_file = 1;
    if (size == 0)
        return MHD_YES;
    if (u->size + size > u->max) {
        fail(u, ERR_TOO_LARGE, 413, "file_too_large", "The file is larger than the limit of %llu bytes.",
             u->max);
        return MHD_NO;
    }
    if (u->magic_len < IMAGE_MAGIC_LEN) {
        detect(u, data, size);
        if (u->err)
            return MHD_NO;
    }
    if (spool_write_all(u->fd, data, size)) {
        log_error("upload: writing spool file failed: %s", strerror(errno));
        fail(u, ERR_IO, errno == ENOSPC ? 507 : 500, errno == ENOSPC ? "insufficient_storage" : "storage_error",
             "The server could not store the file (%s).", errno == ENOSPC ? "disk full" : "write error");
        return MHD_NO;
    }
    u->size += size;
    return MHD_YES;
}

struct upload *upload_new(struct MHD_Connection *c, const char *spool_dir, unsigned long long max_bytes,
                          int *oom)
{
    struct upload *u = calloc(1, sizeof *u);

    *oom = 0;
    if (!u) {
        *oom = 1;
        return NULL;
    }
    u->fd = -1;
    u->max = max_bytes;
    u->pp = MHD_create_post_processor(c, POST_BUFFER, on_part, u);
    if (!u->pp) {
        free(u);
        return NULL;
    }
    u->fd = spool_create(spool_dir, u->spool_path, sizeof u->spool_path);
    if (u->fd < 0) {
        log_error("upload: cannot create a spool file in %s: %s", spool_dir, strerror(errno));
        fail(u, ERR_IO, 500, "storage_error", "The server could not create a temporary file.");
    }
    return u;
}

void upload_feed(struct upload *u, const char *data, size_t len)
{
    if (u->err)
        return;
    if (MHD_post_process(u->pp, data, len) != MHD_YES)
        fail(u, ERR_INVALID, 400, "invalid_multipart", "The multipart/form-data body could not be parsed.");
}

/* Remove the spool file now, so it is gone before the error answer leaves. */
static void discard(struct upload *u)
{
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
        if (!u->committed)
            unlink(u->spool_path);
    }
}

int upload_finish(struct upload *u)
{
    if (u->pp) {
        enum MHD_Result complete = MHD_destroy_post_processor(u->pp);
        u->pp = NULL;
        if (complete != MHD_YES)
            fail(u, ERR_INVALID, 400, "invalid_multipart",
                 "The multipart/form-data body is incomplete (truncated upload?).");
    }
    if (u->err)
        goto out;
    if (!u->have_file) {
        fail(u, ERR_INVALID, 400, "missing_file",
             "No file received: send the image as multipart/form-data in a field named \"file\".");
    } else if (u->size == 0) {
        fail(u, ERR_INVALID, 400, "empty_file", "The file is empty.");
    } else if (u->magic_len < IMAGE_MAGIC_LEN) {
        u->type = image_detect(u->magic, u->magic_len);
        if (u->type == IMAGE_UNKNOWN)
            refuse(u);
    }
out:
    if (u->err)
        discard(u);
    return u->err;
}

void upload_error(const struct upload *u, unsigned *status, const char **code, const char **msg)
{
    *status = u->status ? u->status : 500;
    *code = u->code ? u->code : "internal_error";
    *msg = u->msg[0] ? u->msg : "The upload failed.";
}

int upload_failed(const struct upload *u) { return u->err != 0; }
int upload_fd(const struct upload *u) { return u->fd; }
const char *upload_spool_path(const struct upload *u) { return u->spool_path; }
enum image_type upload_type(const struct upload *u) { return u->type; }
off_t upload_size(const struct upload *u) { return (off_t)u->size; }
void upload_mark_committed(struct upload *u) { u->committed = 1; }

void upload_free(struct upload *u)
{
    if (!u)
        return;
    if (u->pp)
        MHD_destroy_post_processor(u->pp);
    discard(u);
    free(u);
}
