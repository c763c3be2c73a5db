/* kiecall.c - calls to KIE's API with our key (see kiecall.h). */
#include "kiecall.h"

#include "config.h"
#include "http.h"
#include "metrics.h"
#include "upstream.h"

#include <stdio.h>

struct upstream_call *kie_call_new(const struct config *cfg, const char *method, const char *path, long timeout_ms,
                                   size_t max_response)
{
    struct upstream_call *c;
    char url[1024];
    char auth[1100];
    int n;

    if (!cfg->kie_api_key)
        return NULL;
    n = snprintf(url, sizeof url, "%s%s", cfg->kie_base_url, path);
    if (n < 0 || (size_t)n >= sizeof url)
        return NULL;
    n = snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->kie_api_key);
    if (n < 0 || (size_t)n >= sizeof auth)
        return NULL;
    c = upstream_call_new(method, url, timeout_ms, max_response);
    if (!c || upstream_call_header(c, auth)) {
        upstream_call_free(c);
        return NULL;
    }
    c->target = TARGET_KIE;
    return c;
}

struct upstream_call *kie_record_call(const struct config *cfg, const char *task_id)
{
    char path[200];
    int n = snprintf(path, sizeof path, "/api/v1/jobs/recordInfo?taskId=%s", task_id);

    if (n < 0 || (size_t)n >= sizeof path)
        return NULL;
    return kie_call_new(cfg, "GET", path, cfg->kie_timeout_seconds * 1000, MAX_UPSTREAM_RESPONSE);
}
