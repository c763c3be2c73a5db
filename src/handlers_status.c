/* handlers_status.c - GET /status: a task's state, from the finished-task cache or KIE's recordInfo. */
#include "app.h"
#include "config.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "kie.h"
#include "kiecall.h"
#include "log.h"
#include "results.h"
#include "taskcache.h"
#include "upstream.h"
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct kie_state {
    struct req *r;
    struct upstream_call *call;
    char task_id[129];
};

static void kie_state_free(void *p)
{
    struct kie_state *st = p;
    if (st) {
        upstream_call_free(st->call);
        free(st);
    }
}

static void on_kie_done(struct upstream_call *c, void *arg)
{
    struct kie_state *st = arg;
    (void)c;
    http_resume(st->r);
}

/* Answer from KIE's recordInfo answer; a task KIE does not know yet but we
 * created within TASK_NEW_GRACE_SECONDS is "waiting". */
static enum MHD_Result kie_reply(struct req *r)
{
    struct kie_state *st = r->state;
    struct upstream_call *c = st->call;
    struct kie_outcome o;
    enum kie_transport t = kie_transport_of(c->result);
    enum MHD_Result ret;

    kie_map(t, c->error, r->app->cfg->kie_timeout_seconds, c->http_status, c->response.data, c->response.len,
            1, "recordInfo", &o);
    if (kie_unknown_task(&o)) {
        kie_outcome_free(&o);
        if (taskcache_created_within(r->app->tasks, st->task_id, time(NULL), TASK_NEW_GRACE_SECONDS)) {
            cJSON *j = cJSON_CreateObject();
            cJSON *data = cJSON_AddObjectToObject(j, "data");
            cJSON_AddNumberToObject(j, "code", 200);
            cJSON_AddStringToObject(j, "message", "success");
            cJSON_AddStringToObject(data, "taskId", st->task_id);
            cJSON_AddStringToObject(data, "state", "waiting");
            cJSON_AddItemToObject(data, "resultUrls", cJSON_CreateArray());
            return http_json(r, 200, j);
        }
        return http_error(r, 404, "task_not_found", "No such task: unknown or expired (KIE keeps tasks for a limited "
                                                    "time; check the task id from /generate).");
    }
    if (o.status == 200) {
        results_note_answer(r->app, o.json);
        ret = http_json(r, 200, o.json);
        o.json = NULL;
    } else {
        cJSON *extra = kie_error_extra(&o);
        log_warn("request %s: KIE %s failed: HTTP %ld, %s", r->id, "recordInfo",
                 c->http_status, c->result ? c->error : o.code);
        ret = http_error_extra(r, o.status, o.code, extra, "%s", o.message);
    }
    kie_outcome_free(&o);
    return ret;
}

/* Start the recordInfo call described by `c` (ownership taken). */
static enum MHD_Result kie_call(struct req *r, struct upstream_call *c, const char *task_id)
{
    struct kie_state *st = calloc(1, sizeof *st);

    if (!st) {
        upstream_call_free(c);
        return MHD_NO;
    }
    st->r = r;
    st->call = c;
    if (task_id)
        snprintf(st->task_id, sizeof st->task_id, "%s", task_id);
    r->state = st;
    r->state_free = kie_state_free;
    if (upstream_call_header(c, "Accept: application/json"))
        return http_error(r, 500, "internal_error", "Out of memory.");
    c->done = on_kie_done;
    c->arg = st;
    return http_submit(r, c, kie_reply);
}

enum MHD_Result h_status(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    const char *id = http_query(r, "task_id");
    struct upstream_call *c;

    if (!id)
        id = http_query(r, "taskId");
    if (!id || !*id)
        return http_error(r, 400, "missing_task_id", "Pass the task id: /status?task_id=<taskId from /generate>.");
    if (!task_id_valid(id))
        return http_error(r, 400, "invalid_task_id", "task_id must be 1-128 letters, digits, '_', '-' or '.'.");
    {
        /* a finished task (seen by polling or by KIE's callback) is answered
         * from memory without calling KIE again */
        char *cached = taskcache_get_final(r->app->tasks, id);
        cJSON *j = cached ? cJSON_Parse(cached) : NULL;
        free(cached);
        if (j) {
            results_note_answer(r->app, j);
            return http_json(r, 200, j);
        }
    }
    if (!cfg->kie_api_key)
        return handler_need_kie_key(r);
    c = kie_record_call(cfg, id);
    if (!c)
        return MHD_NO;
    return kie_call(r, c, id);
}
