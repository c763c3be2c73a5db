/*
 * sim_tasks.c - the KIE job API for kie-sim (see sim_tasks.h): validation of
 * createTask, the task table (a ring of max_tasks, oldest evicted), the state
 * machine, the scheduler and the job workers, and the result image route.
 *
 * Like KIE, a task first downloads every input_url (sim_fetch.c); a failed
 * download ends the task in "fail" with failCode "422" and a failMsg naming
 * the URL and the reason.
 */
#include "sim_tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_admin.h"
#include "sim_callback.h"
#include "sim_credits.h"
#include "sim_ratelimit.h"
#include "sim_fetch.h"
#include "sim_image.h"
#include "sim_results.h"

#define SIM_MIN_PROMPT      3
#define SIM_MAX_PROMPT      5000
#define SIM_TICK_MS         5

const char *const sim_state_names[] = {"waiting", "queuing", "generating", "success", "fail"};

struct sim_task *sim_task_find(struct sim_app *app, const char *id)
{
    size_t cap = (size_t)app->max_tasks;

    for (size_t i = app->task_count; i-- > 0;) {
        struct sim_task *t = app->tasks[(app->task_head + i) % cap];

        if (strcmp(t->id, id) == 0)
            return t;
    }
    return NULL;
}

void sim_task_free(struct sim_task *t)
{
    if (!t)
        return;
    free(t->param);
    free(t->callback_url);
    for (size_t i = 0; i < t->n_urls; i++)
        free(t->urls[i]);
    free(t->result);
    free(t);
}

/* Caller holds app->lock. Assigns the id, evicts the oldest task when full. */
static void sim_task_insert(struct sim_app *app, struct sim_task *t)
{
    size_t cap = (size_t)app->max_tasks;

    snprintf(t->id, sizeof t->id, "task_flux-2_%lld%04u", t->create_ms, app->task_counter % 10000u);
    app->task_counter++;
    if (app->task_count == cap) {
        sim_result_drop(app, app->tasks[app->task_head]);
        sim_task_free(app->tasks[app->task_head]);
        app->tasks[app->task_head] = t;
        app->task_head = (app->task_head + 1) % cap;
    } else {
        app->tasks[(app->task_head + app->task_count) % cap] = t;
        app->task_count++;
    }
}

/* Caller holds app->lock. Takes ownership of job->url/body even on failure. */
static int sim_job_push(struct sim_app *app, struct sim_job *job)
{
    if (app->job_count == SIM_JOB_QUEUE_CAP) {
        free(job->url);
        free(job->body);
        return -1;
    }
    app->jobs[(app->job_head + app->job_count) % SIM_JOB_QUEUE_CAP] = *job;
    app->job_count++;
    pthread_cond_signal(&app->wake);
    return 0;
}

cJSON *sim_task_data(const struct sim_app *app, const struct sim_task *t, bool for_callback)
{
    cJSON *d = cJSON_CreateObject();
    bool done = t->state == SIM_ST_SUCCESS || t->state == SIM_ST_FAIL;

    cJSON_AddStringToObject(d, "taskId", t->id);
    cJSON_AddStringToObject(d, "model", SIM_MODEL);
    cJSON_AddStringToObject(d, "state", sim_state_names[t->state]);
    cJSON_AddStringToObject(d, "param", t->param);
    if (t->state == SIM_ST_SUCCESS) {
        cJSON *rj = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(rj, "resultUrls");
        char url[600];
        char *s;

        if (app->cfg.result_url[0])
            snprintf(url, sizeof url, "%s", app->cfg.result_url);
        else
            snprintf(url, sizeof url, "http://%s:%u/results/%s.png", app->host, app->port, t->id);
        cJSON_AddItemToArray(arr, cJSON_CreateString(url));
        s = cJSON_PrintUnformatted(rj);
        cJSON_AddStringToObject(d, "resultJson", s);
        free(s);
        cJSON_Delete(rj);
    } else if (for_callback) {
        cJSON_AddNullToObject(d, "resultJson");
    } else {
        cJSON_AddStringToObject(d, "resultJson", "");
    }
    if (t->state == SIM_ST_FAIL) {
        cJSON_AddStringToObject(d, "failCode", t->fail_code);
        cJSON_AddStringToObject(d, "failMsg", t->fail_msg);
    } else if (for_callback) {
        cJSON_AddNullToObject(d, "failCode");
        cJSON_AddNullToObject(d, "failMsg");
    } else {
        cJSON_AddStringToObject(d, "failCode", "");
        cJSON_AddStringToObject(d, "failMsg", "");
    }
    if (done) {
        cJSON_AddNumberToObject(d, "costTime", (double)(t->complete_ms - t->create_ms));
        cJSON_AddNumberToObject(d, "completeTime", (double)t->complete_ms);
        cJSON_AddNumberToObject(d, "creditsConsumed", t->refunded ? 0.0 : (double)t->credits);
    } else {
        cJSON_AddNullToObject(d, "costTime");
        cJSON_AddNullToObject(d, "completeTime");
        cJSON_AddNullToObject(d, "creditsConsumed");
    }
    cJSON_AddNumberToObject(d, "createTime", (double)t->create_ms);
    cJSON_AddNumberToObject(d, "updateTime", (double)t->update_ms);
    return d;
}

/* Caller holds app->lock. */
static void sim_task_enter(struct sim_task *t, enum sim_state st, long long mono, long long wall)
{
    t->state = st;
    t->phase_mono = mono;
    t->update_ms = wall;
    t->entered_ms[st] = wall;
}

/* Caller holds app->lock. Terminal transition; queues the callback. */
static void sim_task_finish(struct sim_app *app, struct sim_task *t, long long mono, long long wall)
{
    sim_task_enter(t, t->fail ? SIM_ST_FAIL : SIM_ST_SUCCESS, mono, wall);
    t->complete_ms = wall;
    if (t->fail)
        sim_credits_refund(app, t);
    sim_log("task %s %s%s%s", t->id, sim_state_names[t->state], t->fail ? ": " : "",
            t->fail ? t->fail_msg : "");
    if (t->callback_url) {
        cJSON *cb = cJSON_CreateObject();
        struct sim_job job = {.kind = SIM_JOB_CALLBACK};

        cJSON_AddNumberToObject(cb, "code", t->fail ? 501 : 200);
        cJSON_AddStringToObject(cb, "msg", t->fail ? "Playground task failed."
                                                   : "Playground task completed successfully.");
        cJSON_AddItemToObject(cb, "data", sim_task_data(app, t, true));
        sim_copy(job.task_id, sizeof job.task_id, t->id);
        job.url = sim_xstrdup(t->callback_url);
        job.body = cJSON_PrintUnformatted(cb);
        cJSON_Delete(cb);
        if (sim_job_push(app, &job) != 0) {
            t->callback_done = true;
            sim_copy(t->callback_error, sizeof t->callback_error, "simulator job queue full");
        }
    }
}

/* Caller holds app->lock. Moves a task along its timeline if it is due. */
static void sim_task_advance(struct sim_app *app, struct sim_task *t, long long mono, long long wall)
{
    bool due = mono - t->phase_mono >= t->step_ms;

    switch (t->state) {
    case SIM_ST_WAITING:
        if (t->fetch == SIM_FETCH_FAILED) {
            sim_task_finish(app, t, mono, wall);
        } else if (t->fetch == SIM_FETCH_OK && due) {
            sim_task_enter(t, SIM_ST_QUEUING, mono, wall);
        }
        break;
    case SIM_ST_QUEUING:
        if (due)
            sim_task_enter(t, SIM_ST_GENERATING, mono, wall);
        break;
    case SIM_ST_GENERATING:
        if (due)
            sim_task_finish(app, t, mono, wall);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------- background work */

void *sim_scheduler_main(void *arg)
{
    struct sim_app *app = arg;

    pthread_mutex_lock(&app->lock);
    while (!atomic_load(&app->stopping)) {
        long long mono = sim_mono_ms(), wall = sim_wall_ms();
        size_t cap = (size_t)app->max_tasks;
        struct timespec ts;

        for (size_t i = 0; i < app->task_count; i++)
            sim_task_advance(app, app->tasks[(app->task_head + i) % cap], mono, wall);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SIM_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&app->tick, &app->lock, &ts);
    }
    pthread_mutex_unlock(&app->lock);
    return NULL;
}

/* Worker: download every input of the task (the first one whole, for the
 * result), then make the studio result unless the task is bound to fail. */
static void sim_job_fetch(struct sim_app *app, const struct sim_job *job)
{
    char *urls[SIM_MAX_URLS] = {0};
    char msg[SIM_MSG_MAX] = "", aspect[8] = "", resolution[4] = "", code[16] = "422";
    char wmsg[SIM_MSG_MAX] = "", wcode[16] = "";
    size_t n = 0, in_len = 0, png_len = 0;
    unsigned char *in = NULL, *png = NULL;
    uint32_t w0 = 0, h0 = 0, rw = 0, rh = 0;
    long fail_width = 0;
    bool failed = false, render = false;
    struct sim_task *t;

    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, job->task_id);
    if (t) {
        n = t->n_urls;
        for (size_t i = 0; i < n; i++)
            urls[i] = sim_xstrdup(t->urls[i]);
        sim_copy(aspect, sizeof aspect, t->aspect);
        sim_copy(resolution, sizeof resolution, t->resolution);
        render = t->style == SIM_STYLE_STUDIO && !t->fail;
        fail_width = t->fail_width;
        if (fail_width) {
            sim_copy(wcode, sizeof wcode, t->fail_code);
            sim_copy(wmsg, sizeof wmsg, t->fail_msg);
        }
    }
    pthread_mutex_unlock(&app->lock);

    for (size_t i = 0; i < n && !failed; i++) {
        uint32_t w, h;

        if (sim_fetch_image(app, urls[i], &w, &h, i == 0 && render ? &in : NULL, &in_len, msg, sizeof msg) != 0)
            failed = true;
        else if (i == 0) {
            w0 = w;
            h0 = h;
        }
    }
    if (!failed && fail_width && n > 0 && (long)w0 == fail_width) { /* the fail_width knob */
        sim_copy(code, sizeof code, wcode);
        sim_copy(msg, sizeof msg, wmsg);
        failed = true;
    }
    if (!failed && render && sim_result_make(urls[0], in, in_len, aspect, resolution, &png, &png_len, &rw, &rh,
                                             msg, sizeof msg) != 0)
        failed = true;

    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, job->task_id);
    if (t && t->fetch == SIM_FETCH_PENDING && !failed && png) {
        if (sim_result_keep(app, t, png, png_len, rw, rh) != 0) {
            snprintf(msg, sizeof msg, "the result (%zu bytes) is larger than --max-result-bytes", png_len);
            sim_copy(code, sizeof code, "500");
            failed = true;
        }
        png = NULL; /* taken over */
    }
    if (t && t->fetch == SIM_FETCH_PENDING) {
        if (failed) {
            t->fail = true;
            sim_copy(t->fail_code, sizeof t->fail_code, code);
            sim_copy(t->fail_msg, sizeof t->fail_msg, msg);
            t->fetch = SIM_FETCH_FAILED;
        } else {
            t->img_w = w0;
            t->img_h = h0;
            t->fetch = SIM_FETCH_OK;
        }
    }
    pthread_mutex_unlock(&app->lock);
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
    free(png);
    free(in);
}

void *sim_worker_main(void *arg)
{
    struct sim_app *app = arg;

    pthread_mutex_lock(&app->lock);
    for (;;) {
        struct sim_job job;

        while (!atomic_load(&app->stopping) && app->job_count == 0)
            pthread_cond_wait(&app->wake, &app->lock);
        if (atomic_load(&app->stopping))
            break;
        job = app->jobs[app->job_head];
        memset(&app->jobs[app->job_head], 0, sizeof job);
        app->job_head = (app->job_head + 1) % SIM_JOB_QUEUE_CAP;
        app->job_count--;
        pthread_mutex_unlock(&app->lock);
        if (job.kind == SIM_JOB_FETCH)
            sim_job_fetch(app, &job);
        else
            sim_job_callback(app, &job);
        free(job.url);
        free(job.body);
        pthread_mutex_lock(&app->lock);
    }
    pthread_mutex_unlock(&app->lock);
    sim_image_thread_done();
    return NULL;
}

/* ------------------------------------------------------------- handlers */

/* Returns 0 when the createTask body is acceptable, else -1 with a KIE-style
 * message naming the field and the reason. */
static int sim_validate_create(const cJSON *body, char *msg, size_t len)
{
    static const char *const resolutions[] = {"1K", "2K", NULL};
    const cJSON *model, *cb, *input, *urls, *prompt, *aspect, *res, *nsfw, *u;
    char host[256];
    int n, i = 0;
    size_t plen;
    uint32_t rw, rh;

    if (!cJSON_IsObject(body)) {
        snprintf(msg, len, "request body must be a JSON object");
        return -1;
    }
    model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!cJSON_IsString(model)) {
        snprintf(msg, len, "model is required");
        return -1;
    }
    if (strcmp(model->valuestring, SIM_MODEL) != 0) {
        snprintf(msg, len, "model %.64s is not supported (expected " SIM_MODEL ")", model->valuestring);
        return -1;
    }
    cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
    if (cb && !cJSON_IsNull(cb) &&
        (!cJSON_IsString(cb) || sim_url_host(cb->valuestring, host, sizeof host) != 0)) {
        snprintf(msg, len, "callBackUrl must be an http(s) URL");
        return -1;
    }
    input = cJSON_GetObjectItemCaseSensitive(body, "input");
    if (!cJSON_IsObject(input)) {
        snprintf(msg, len, "input is required and must be an object");
        return -1;
    }
    urls = cJSON_GetObjectItemCaseSensitive(input, "input_urls");
    if (!cJSON_IsArray(urls)) {
        snprintf(msg, len, "input.input_urls is required and must be an array of 1-8 image URLs");
        return -1;
    }
    n = cJSON_GetArraySize(urls);
    if (n < 1 || n > SIM_MAX_URLS) {
        snprintf(msg, len, "input.input_urls must contain 1-8 URLs, got %d", n);
        return -1;
    }
    cJSON_ArrayForEach(u, urls) {
        if (!cJSON_IsString(u) || sim_url_host(u->valuestring, host, sizeof host) != 0) {
            snprintf(msg, len, "input.input_urls[%d] is not a valid http(s) URL", i);
            return -1;
        }
        i++;
    }
    prompt = cJSON_GetObjectItemCaseSensitive(input, "prompt");
    if (!cJSON_IsString(prompt)) {
        snprintf(msg, len, "input.prompt is required and must be a string");
        return -1;
    }
    plen = sim_utf8_len(prompt->valuestring);
    if (plen < SIM_MIN_PROMPT || plen > SIM_MAX_PROMPT) {
        snprintf(msg, len, "input.prompt must be 3-5000 characters, got %zu", plen);
        return -1;
    }
    aspect = cJSON_GetObjectItemCaseSensitive(input, "aspect_ratio");
    if (!cJSON_IsString(aspect) ||
        (strcmp(aspect->valuestring, "auto") != 0 && !sim_aspect_ratio(aspect->valuestring, &rw, &rh))) {
        snprintf(msg, len, "input.aspect_ratio is required and must be one of 1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3, auto");
        return -1;
    }
    res = cJSON_GetObjectItemCaseSensitive(input, "resolution");
    if (!cJSON_IsString(res) || sim_enum_index(resolutions, res->valuestring) < 0) {
        snprintf(msg, len, "input.resolution is required and must be 1K or 2K");
        return -1;
    }
    nsfw = cJSON_GetObjectItemCaseSensitive(input, "nsfw_checker");
    if (nsfw && !cJSON_IsBool(nsfw)) {
        snprintf(msg, len, "input.nsfw_checker must be a boolean");
        return -1;
    }
    return 0;
}

/* The fail_match knob: true when `match` is set and the prompt or an input
 * URL of the task contains it. */
static bool sim_task_matches(const struct sim_task *t, const cJSON *body, const char *match)
{
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "input"), "prompt");

    if (!match[0])
        return false;
    if (cJSON_IsString(prompt) && strstr(prompt->valuestring, match))
        return true;
    for (size_t i = 0; i < t->n_urls; i++)
        if (strstr(t->urls[i], match))
            return true;
    return false;
}

/* Build a task from a validated createTask body. */
static struct sim_task *sim_task_new(const cJSON *body, const struct sim_config *cfg)
{
    struct sim_task *t = sim_xmalloc(sizeof *t);
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
    const cJSON *cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
    const cJSON *u;

    memset(t, 0, sizeof *t);
    t->param = cJSON_PrintUnformatted(body);
    if (!t->param)
        t->param = sim_xstrdup("{}");
    if (cJSON_IsString(cb))
        t->callback_url = sim_xstrdup(cb->valuestring);
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(input, "input_urls"))
        if (t->n_urls < SIM_MAX_URLS)
            t->urls[t->n_urls++] = sim_xstrdup(u->valuestring);
    sim_copy(t->aspect, sizeof t->aspect, cJSON_GetObjectItemCaseSensitive(input, "aspect_ratio")->valuestring);
    sim_copy(t->resolution, sizeof t->resolution, cJSON_GetObjectItemCaseSensitive(input, "resolution")->valuestring);
    t->fetch = SIM_FETCH_PENDING;
    sim_task_enter(t, SIM_ST_WAITING, sim_mono_ms(), sim_wall_ms());
    t->create_ms = t->update_ms;
    t->step_ms = cfg->step_ms;
    t->style = cfg->result_style;
    t->refund = cfg->refund_failed != 0;
    t->fail = cfg->outcome == 1 || sim_task_matches(t, body, cfg->fail_match);
    t->fail_width = cfg->fail_width;
    if (t->fail || t->fail_width) { /* shown only if it ends in fail */
        sim_copy(t->fail_code, sizeof t->fail_code, cfg->fail_code);
        sim_copy(t->fail_msg, sizeof t->fail_msg, cfg->fail_msg);
    }
    t->callback_status = -1;
    return t;
}

void sim_h_create(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_config cfg;
    struct sim_job job = {.kind = SIM_JOB_FETCH};
    char msg[SIM_MSG_MAX], id[SIM_ID_LEN];
    size_t n_urls;
    bool present;
    cJSON *body = NULL, *out, *data;
    struct sim_task *t;
    int key, mode = sim_take_mode(app, SIM_EP_CREATE, &cfg);

    if (cfg.latency_ms > 0 && sim_wait_client(app, c, cfg.latency_ms) != 0) {
        resp->action = SIM_DROP;
        goto out;
    }
    if (mode != SIM_MODE_NORMAL) {
        sim_resp_mode(resp, mode, false);
        goto out;
    }
    key = sim_auth_key(app, c, &present);
    if (key < 0) {
        sim_resp_kie(resp, 401, 401, sim_unauth_msg, false);
        goto out;
    }
    if (!sim_rate_admit(app, (size_t)key, &cfg)) {
        sim_resp_mode(resp, SIM_MODE_CODE429, false); /* refused, not queued */
        goto out;
    }
    body = cJSON_ParseWithLength(r->body ? r->body : "", r->len);
    if (!body) {
        sim_resp_kie(resp, 200, 422, "request body is not valid JSON", true);
        goto out;
    }
    if (sim_validate_create(body, msg, sizeof msg) != 0) {
        sim_resp_kie(resp, 200, 422, msg, true);
        goto out;
    }
    t = sim_task_new(body, &cfg);
    t->key = (size_t)key;
    t->credits = sim_credits_price(&cfg, t->resolution);
    pthread_mutex_lock(&app->lock);
    if (sim_credits_charge(app, t->key, t->credits) != 0) {
        pthread_mutex_unlock(&app->lock);
        sim_task_free(t);
        sim_resp_kie(resp, 200, 402, "Insufficient credits", false);
        goto out;
    }
    sim_task_insert(app, t);
    sim_copy(id, sizeof id, t->id);
    n_urls = t->n_urls;
    sim_copy(job.task_id, sizeof job.task_id, t->id);
    if (sim_job_push(app, &job) != 0) {
        t->fail = true;
        t->fetch = SIM_FETCH_FAILED;
        sim_copy(t->fail_code, sizeof t->fail_code, "500");
        sim_copy(t->fail_msg, sizeof t->fail_msg, "simulator download queue full");
    }
    pthread_mutex_unlock(&app->lock);
    sim_log("task %s created (%zu input urls)", id, n_urls);

    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "code", 200);
    cJSON_AddStringToObject(out, "msg", "success");
    data = cJSON_AddObjectToObject(out, "data");
    cJSON_AddStringToObject(data, "taskId", id);
    sim_resp_json(resp, 200, out);
out:
    cJSON_Delete(body);
}

void sim_h_record(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_config cfg;
    const char *id;
    struct sim_task *t;
    cJSON *out, *data = NULL;
    bool present;
    int mode = sim_take_mode(app, SIM_EP_RECORD, &cfg);

    (void)r;
    if (cfg.latency_ms > 0 && sim_wait_client(app, c, cfg.latency_ms) != 0) {
        resp->action = SIM_DROP;
        return;
    }
    if (mode != SIM_MODE_NORMAL) {
        sim_resp_mode(resp, mode, true);
        return;
    }
    if (!sim_auth_ok(app, c, &present)) {
        sim_resp_kie(resp, 401, 401, sim_unauth_msg, false);
        return;
    }
    id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "taskId");
    if (!id || !*id) {
        sim_resp_kie(resp, 200, 422, "taskId is required", true);
        return;
    }
    pthread_mutex_lock(&app->lock);
    t = strlen(id) < SIM_ID_LEN ? sim_task_find(app, id) : NULL;
    if (t)
        data = sim_task_data(app, t, false);
    pthread_mutex_unlock(&app->lock);
    if (!data) {
        sim_resp_kie(resp, 200, 422, "recordInfo is null", true);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "code", 200);
    cJSON_AddStringToObject(out, "message", "success");
    cJSON_AddItemToObject(out, "data", data);
    sim_resp_json(resp, 200, out);
}
