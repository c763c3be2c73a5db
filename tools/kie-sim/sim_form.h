/*
 * sim_form.h - the streaming multipart/form-data body of
 * /api/file-stream-upload: what it carried (struct sim_form, filled while
 * the body arrives) and the sink that fills it (route table in sim_http.c).
 */
#ifndef SIM_FORM_H
#define SIM_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "sim.h"
#include "sim_files.h"
#include "sim_http.h"

#define SIM_FIELD_MAX 1024

/* What the stream route's multipart body carried. */
struct sim_form {
    struct MHD_PostProcessor *pp; /* NULL: not multipart (or finished) */
    bool multipart;
    char upload_path[SIM_FIELD_MAX], file_name[SIM_FIELD_MAX];
    size_t path_len, name_len;
    bool has_path, has_name, field_too_long;
    bool has_file, skip_part, file_too_big;
    char part_name[SIM_FIELD_MAX], part_type[SIM_MIME_MAX];
    unsigned char *file;
    size_t file_len, file_cap, file_max;
};

/* The sink (r->sink is a struct sim_form *, never NULL once opened). */
extern const struct sim_sink_ops sim_upload_form_ops;

/* Route max_body: upload_max_bytes (knob, read when the request starts)
 * plus room for the multipart framing. */
size_t sim_upload_stream_max_body(struct sim_app *app);

#endif
