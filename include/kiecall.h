/* kiecall.h - upstream calls to KIE's API with our key (KIE_API_KEY):
 * the URL under KIE_BASE_URL, the Authorization header and the /metrics
 * target in one place. */
#ifndef PPA_KIECALL_H
#define PPA_KIECALL_H

#include <stddef.h>

struct config;
struct upstream_call;

/* A call of `method` to KIE_BASE_URL + `path` (with its query) carrying
 * our key, timing out after timeout_ms, keeping up to max_response bytes.
 * NULL when KIE_API_KEY is not set or on out of memory. */
struct upstream_call *kie_call_new(const struct config *cfg, const char *method, const char *path, long timeout_ms,
                                   size_t max_response);
/* GET /api/v1/jobs/recordInfo?taskId=<task_id> (a task_id_valid id), within
 * KIE_TIMEOUT_SECONDS and MAX_UPSTREAM_RESPONSE. */
struct upstream_call *kie_record_call(const struct config *cfg, const char *task_id);

#endif
