/*
 * sim_form.c - the multipart/form-data sink of /api/file-stream-upload (see
 * sim_form.h): MHD's PostProcessor parses the body as it arrives; the first
 * "file" part is kept up to upload_max_bytes (beyond that only the fact is
 * kept), "uploadPath" and "fileName" up to SIM_FIELD_MAX bytes each.
 */
#include "sim_form.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIM_FORM_SLACK (64u * 1024u) /* multipart overhead allowed over the file */
#define SIM_PP_BUFFER  (64u * 1024u)


static void sim_form_field(char *buf, size_t *len, bool *too_long, const char *data, size_t size)
{
    if (size >= SIM_FIELD_MAX - *len) {
        *too_long = true;
        return;
    }
    memcpy(buf + *len, data, size);
    *len += size;
    buf[*len] = '\0';
}

static void sim_form_file(struct sim_form *f, const char *data, size_t size)
{
    unsigned char *nb;

    if (f->file_too_big || size == 0)
        return;
    if (size > f->file_max - f->file_len) {
        f->file_too_big = true;
        free(f->file);
        f->file = NULL;
        f->file_len = f->file_cap = 0;
        return;
    }
    nb = sim_reserve(f->file, &f->file_cap, f->file_len + size, f->file_max);
    if (!nb) {
        fputs("kie-sim: out of memory\n", stderr); /* the policy of sim_xmalloc */
        abort();
    }
    f->file = nb;
    memcpy(f->file + f->file_len, data, size);
    f->file_len += size;
}

static enum MHD_Result sim_form_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                     const char *content_type, const char *transfer_encoding, const char *data,
                                     uint64_t off, size_t size)
{
    struct sim_form *f = cls;

    (void)kind;
    (void)transfer_encoding;
    if (!key)
        return MHD_YES;
    if (strcmp(key, "file") == 0) {
        if (off == 0) { /* a new part: only the first "file" counts */
            f->skip_part = f->has_file;
            if (!f->has_file) {
                f->has_file = true;
                sim_copy(f->part_name, sizeof f->part_name, filename ? filename : "");
                sim_copy(f->part_type, sizeof f->part_type, content_type ? content_type : "");
            }
        }
        if (!f->skip_part)
            sim_form_file(f, data, size);
    } else if (strcmp(key, "uploadPath") == 0) {
        f->has_path = true;
        sim_form_field(f->upload_path, &f->path_len, &f->field_too_long, data, size);
    } else if (strcmp(key, "fileName") == 0) {
        f->has_name = true;
        sim_form_field(f->file_name, &f->name_len, &f->field_too_long, data, size);
    }
    return MHD_YES;
}

static size_t sim_upload_max(struct sim_app *app)
{
    size_t max;

    pthread_mutex_lock(&app->lock);
    max = (size_t)app->cfg.upload_max_bytes;
    pthread_mutex_unlock(&app->lock);
    return max;
}

size_t sim_upload_stream_max_body(struct sim_app *app)
{
    return sim_upload_max(app) + SIM_FORM_SLACK;
}

static void *sim_form_open(struct sim_app *app, struct MHD_Connection *c)
{
    struct sim_form *f = sim_xmalloc(sizeof *f);

    memset(f, 0, sizeof *f);
    f->file_max = sim_upload_max(app);
    f->pp = MHD_create_post_processor(c, SIM_PP_BUFFER, sim_form_iter, f);
    f->multipart = f->pp != NULL;
    return f;
}

static void sim_form_feed(void *sink, const char *data, size_t n)
{
    struct sim_form *f = sink;

    if (f->pp && MHD_post_process(f->pp, data, n) != MHD_YES) {
        MHD_destroy_post_processor(f->pp);
        f->pp = NULL;
        f->multipart = false; /* malformed: treated like no form at all */
    }
}

/* The body is complete: flush what the PostProcessor still holds. */
static void sim_form_end(void *sink)
{
    struct sim_form *f = sink;

    if (f->pp)
        MHD_destroy_post_processor(f->pp);
    f->pp = NULL;
}

static cJSON *sim_form_summary(const void *sink)
{
    const struct sim_form *f = sink;
    cJSON *o, *file;

    if (!f || !f->multipart)
        return NULL;
    o = cJSON_CreateObject();
    if (f->has_path)
        cJSON_AddStringToObject(o, "uploadPath", f->upload_path);
    if (f->has_name)
        cJSON_AddStringToObject(o, "fileName", f->file_name);
    if (f->has_file) {
        file = cJSON_AddObjectToObject(o, "file");
        cJSON_AddStringToObject(file, "filename", f->part_name);
        cJSON_AddStringToObject(file, "content_type", f->part_type);
        cJSON_AddNumberToObject(file, "bytes", (double)f->file_len);
    } else {
        cJSON_AddNullToObject(o, "file");
    }
    return o;
}

static void sim_form_close(void *sink)
{
    struct sim_form *f = sink;

    sim_form_end(f);
    free(f->file);
    free(f);
}

const struct sim_sink_ops sim_upload_form_ops = {
    .open = sim_form_open,
    .feed = sim_form_feed,
    .end = sim_form_end,
    .summary = sim_form_summary,
    .close = sim_form_close,
};

