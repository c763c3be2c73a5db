/* kiecall.h - upstream calls to KIE's API with our key (KIE_API_KEY):
 * the URL under KIE_BASE_URL, the Authorization header and the /metrics
 * target in one place. */
#ifndef PPA_KIECALL_H
#define PPA_KIECALL_H

struct config;
struct upstream_call;

/* A call of `method` to KIE_BASE_URL + `path` (with its query), timing out
 * after KIE_TIMEOUT_SECONDS, keeping up to MAX_UPSTREAM_RESPONSE bytes.
 * NULL when KIE_API_KEY is not set or on out of memory. */
struct upstream_call *kie_call_new(const struct config *cfg, const char *method, const char *path);
/* GET /api/v1/jobs/recordInfo?taskId=<task_id> (a task_id_valid id). */
struct upstream_call *kie_record_call(const struct config *cfg, const char *task_id);

#endif
