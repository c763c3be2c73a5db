/* s3call.h - S3 requests run on the upstream I/O thread: the target the
 * configuration names (bucket, region, endpoint, path style, credentials),
 * and upstream calls made from signed s3_requests. Shared by storage_s3.c
 * (uploads) and taskstore_s3.c (task records). */
#ifndef PPA_S3CALL_H
#define PPA_S3CALL_H

#include "s3.h"

#include <stddef.h>

struct config;
struct upstream_call;

/* An s3_target with its own copies of the strings it points at. */
struct s3_config_target {
    struct s3_target t;
    char *bucket, *region, *endpoint, *ak, *sk, *token;
};

/* Copy S3_BUCKET, AWS_REGION, S3_ENDPOINT, S3_FORCE_PATH_STYLE and the AWS
 * credentials of cfg into ct and check them once (a request is signed).
 * 0, or ERR_NOMEM / ERR_INVALID with a message in err. Release with
 * s3_config_target_free, also after a failure. */
__attribute__((warn_unused_result)) int s3_config_target_init(struct s3_config_target *ct, const struct config *cfg,
                                                              char *err, size_t cap);
void s3_config_target_free(struct s3_config_target *ct);

/* An upstream call performing rq as signed: its method, URL and every
 * header, plus "Expect:" (no 100-continue round trip). The caller adds a body
 * (upstream_call_body or upload_fd), done and arg. NULL when out of memory or
 * the method is not GET, HEAD, PUT or DELETE. */
struct upstream_call *s3_call_new(const struct s3_request *rq, long timeout_ms, size_t max_response);

#endif
