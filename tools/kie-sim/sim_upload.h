/*
 * sim_upload.h - KIE's file-upload API (kieai.redpandaai.co, served here on
 * the main port; same Bearer key):
 *
 *   POST /api/file-stream-upload   multipart: file, uploadPath, fileName?
 *   POST /api/file-base64-upload   JSON: base64Data (raw or data: URL), uploadPath, fileName?
 *   POST /api/file-url-upload      JSON: fileUrl (loopback only), uploadPath, fileName?
 *
 * Answers {"success":true,"code":200,"msg":"File uploaded successfully",
 * "data":{...}} in the OpenAPI shape (fileName, filePath, downloadUrl,
 * fileSize, mimeType, uploadedAt) or, with upload_shape=quickstart, the
 * quickstart page's (fileId, fileName, originalName, fileSize, mimeType,
 * uploadPath, fileUrl, downloadUrl, uploadTime, expiresAt); errors are
 * {"success":false,"code":400|401|405|500,"msg":...} with that HTTP status.
 * Files go to the store of sim_files.h.
 */
#ifndef SIM_UPLOAD_H
#define SIM_UPLOAD_H

#include <stddef.h>

#include "sim.h"
#include "sim_http.h"

enum sim_upload_mode {
    SIM_UPLOAD_NORMAL, SIM_UPLOAD_HTTP401, SIM_UPLOAD_HTTP500, SIM_UPLOAD_HANG, SIM_UPLOAD_RESET,
    SIM_UPLOAD_NONJSON, SIM_UPLOAD_CODE400, SIM_UPLOAD_CODE500, SIM_UPLOAD_NOURL
};
enum sim_upload_shape { SIM_SHAPE_OPENAPI, SIM_SHAPE_QUICKSTART };

/* Names for the upload_mode and upload_shape knobs, NULL-terminated. */
extern const char *const sim_upload_mode_names[];
extern const char *const sim_upload_shape_names[];

/* The upload API's error envelope with HTTP status. */
void sim_upload_error(struct sim_resp *resp, unsigned status, int code, const char *msg);

/* Route max_body of the base64 route: the JSON around a file of
 * upload_base64_max_bytes (knob, read when the request starts). */
size_t sim_upload_base64_max_body(struct sim_app *app);

void sim_h_upload_stream(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_upload_base64(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);
void sim_h_upload_url(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp);

#endif
