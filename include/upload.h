/* upload.h - streams a multipart/form-data upload (field "file") into a spool
 * file without holding it in memory, checks its size as it arrives and its
 * type from the magic bytes. Uses MHD's PostProcessor for the parsing. */
#ifndef PPA_UPLOAD_H
#define PPA_UPLOAD_H

#include "validate.h"

#include <microhttpd.h>
#include <stddef.h>
#include <sys/types.h>

struct upload;

/* NULL when the request is not multipart/form-data (or out of memory:
 * then *oom is set). */
struct upload *upload_new(struct MHD_Connection *c, const char *spool_dir, unsigned long long max_bytes,
                          int *oom);
/* Feed one chunk of the body. After the first error, data is ignored. */
void upload_feed(struct upload *u, const char *data, size_t len);
/* End of body: 0 when a valid image was received, else ERR_* with
 * upload_error() describing the answer to give. */
int upload_finish(struct upload *u);
/* The error to answer: HTTP status, code, message. */
void upload_error(const struct upload *u, unsigned *status, const char **code, const char **msg);

/* 1 once the upload has failed (the answer is known before the body ends). */
int upload_failed(const struct upload *u);
int upload_fd(const struct upload *u);
const char *upload_spool_path(const struct upload *u);
enum image_type upload_type(const struct upload *u);
off_t upload_size(const struct upload *u);

/* The spool file now lives on under another name (or was consumed): do not
 * remove it on free. */
void upload_mark_committed(struct upload *u);
/* Close and remove the spool file unless committed; free everything. */
void upload_free(struct upload *u);

#endif
