/*
 * sim_admin.c - knobs, the request log and the /sim/... routes for kie-sim
 * (see sim_admin.h).
 *
 *   GET/POST /sim/config     read / change knobs (JSON object, any subset;
 *                            {"reset":true} restores the start-up values)
 *   GET/DELETE /sim/requests log of API requests received (time_ms wall clock,
 *                            mono_ms the rate limit's monotonic clock, method,
 *                            path, query, auth_ok, content_type, parsed JSON
 *                            body), cap 4000
 *   GET /sim/tasks           every task with stateTimes (when each state began)
 *                            and its callback outcome
 */
#include "sim_admin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "sim_credits.h"
#include "sim_ratelimit.h"
#include "sim_results.h"
#include "sim_tasks.h"
#include "sim_upload.h"

#define SIM_MAX_REQ_LOG    4000 /* /sim/requests entries kept */
#define SIM_MAX_QUERY_ARGS 32
#define SIM_LOG_STR_MAX    256 /* trimmed log entries: longer strings are cut */
#define SIM_LOG_STR_KEEP   64

const char *const sim_mode_names[] = {
    "normal", "http500", "nonjson", "hang", "reset", "code401", "code402",
    "code422", "code429", "code455", "code500", "code501", NULL
};
static const char *const sim_outcome_names[] = {"success", "fail", NULL};

enum sim_knob_type { SIM_KNOB_LONG, SIM_KNOB_STR, SIM_KNOB_ENUM };

/* One row per runtime knob: drives CLI parsing, POST /sim/config, GET
 * /sim/config and --help alike. */
struct sim_knob {
    const char *name;
    enum sim_knob_type type;
    size_t off;
    size_t size; /* SIM_KNOB_STR: buffer size */
    long min, max; /* SIM_KNOB_LONG */
    const char *const *names; /* SIM_KNOB_ENUM */
    const char *help;
};

#define SIM_KNOB_L(f, lo, hi, h) { #f, SIM_KNOB_LONG, offsetof(struct sim_config, f), 0, lo, hi, NULL, h }
#define SIM_KNOB_S(f, h) { #f, SIM_KNOB_STR, offsetof(struct sim_config, f), \
                           sizeof(((struct sim_config *)0)->f), 0, 0, NULL, h }
#define SIM_KNOB_E(f, n, h) { #f, SIM_KNOB_ENUM, offsetof(struct sim_config, f), 0, 0, 0, n, h }

static const struct sim_knob sim_knobs[] = {
    SIM_KNOB_L(latency_ms, 0, 600000, "delay before answering createTask/recordInfo (ms)"),
    SIM_KNOB_L(step_ms, 0, 600000, "duration of each task state waiting/queuing/generating (ms)"),
    SIM_KNOB_E(outcome, sim_outcome_names, "how new tasks end: success|fail"),
    SIM_KNOB_S(fail_code, "failCode of tasks that end in fail (outcome=fail)"),
    SIM_KNOB_S(fail_msg, "failMsg of tasks that end in fail (outcome=fail)"),
    SIM_KNOB_E(create_mode, sim_mode_names, "createTask behaviour (see modes)"),
    SIM_KNOB_L(create_mode_times, 0, 1000000, "apply create_mode to the next N requests only, then normal (0 = always)"),
    SIM_KNOB_E(record_mode, sim_mode_names, "recordInfo behaviour (see modes)"),
    SIM_KNOB_L(record_mode_times, 0, 1000000, "apply record_mode to the next N requests only, then normal (0 = always)"),
    SIM_KNOB_L(hang_max_ms, 1, 3600000, "mode hang: drop the connection after this long if the client is still waiting"),
    SIM_KNOB_S(webhook_hmac_key, "if set, sign callbacks (X-Webhook-Timestamp, X-Webhook-Signature)"),
    SIM_KNOB_E(upload_mode, sim_upload_mode_names, "file-upload API behaviour (see upload modes)"),
    SIM_KNOB_L(upload_mode_times, 0, 1000000, "apply upload_mode to the next N uploads only, then normal (0 = always)"),
    SIM_KNOB_E(upload_shape, sim_upload_shape_names,
               "upload answer: openapi (fileName, filePath, downloadUrl, fileSize, mimeType, uploadedAt) or "
               "quickstart (fileId, ..., fileUrl, downloadUrl, expiresAt)"),
    SIM_KNOB_L(upload_max_bytes, 1, 1073741824, "largest file for file-stream-upload and file-url-upload (bytes)"),
    SIM_KNOB_L(upload_base64_max_bytes, 1, 1073741824, "largest decoded file for file-base64-upload (bytes)"),
    SIM_KNOB_L(upload_ttl_ms, 1, 31536000000L, "uploaded files answer 404 after this long (KIE: 3 days)"),
    SIM_KNOB_E(result_style, sim_result_style_names,
               "result of new tasks: studio (first input on a studio background, ~1 or ~4 megapixels) or "
               "gradient (a 256 or 512 px wide test pattern)"),
    SIM_KNOB_L(initial_credits, 0, 1000000000000L,
               "every API key's credit balance; setting it (flag, POST /sim/config or reset) resets the balances"),
    SIM_KNOB_L(price_1k, 0, 1000000, "credits a createTask at resolution 1K takes (3rd-party notes: 5)"),
    SIM_KNOB_L(price_2k, 0, 1000000, "credits a createTask at resolution 2K takes (3rd-party notes: 7)"),
    SIM_KNOB_L(refund_failed, 0, 1, "1: a task that fails gives its credits back (creditsConsumed 0)"),
    SIM_KNOB_E(credit_mode, sim_mode_names, "GET /api/v1/chat/credit behaviour (see modes)"),
    SIM_KNOB_L(credit_mode_times, 0, 1000000, "apply credit_mode to the next N requests only, then normal (0 = always)"),
    SIM_KNOB_L(rate_limit, 0, 1, "1: KIE's rate limit, rate_limit_max createTask per window per key, then HTTP 429"),
    SIM_KNOB_L(rate_limit_max, 1, SIM_RATE_CAP, "createTask let through per window and key (KIE: 20)"),
    SIM_KNOB_L(rate_limit_window_ms, 1, 3600000, "the rate limit's sliding window (KIE: 10 s)"),
    SIM_KNOB_S(result_url, "if set, finished tasks name this URL in resultUrls instead of their own "
                           "/results/<id>.png (tests of the server's fetch policy)"),
    SIM_KNOB_S(fail_match, "if set, a new task whose prompt or any input URL contains this text ends in fail "
                           "(fail_code, fail_msg), whatever outcome says"),
    SIM_KNOB_L(fail_width, 0, 1000000, "if not 0, a new task whose first input image is this many pixels wide "
                                       "ends in fail (fail_code, fail_msg): one photo of a batch with one prompt"),
};
#define SIM_N_KNOBS (sizeof sim_knobs / sizeof sim_knobs[0])

const struct sim_config sim_config_defaults = {
    .latency_ms = 0, .step_ms = 150, .outcome = 0,
    .fail_code = "500", .fail_msg = "Internal server error",
    .create_mode = SIM_MODE_NORMAL, .create_mode_times = 0,
    .record_mode = SIM_MODE_NORMAL, .record_mode_times = 0,
    .hang_max_ms = 300000, .webhook_hmac_key = "",
    .upload_mode = SIM_UPLOAD_NORMAL, .upload_mode_times = 0, .upload_shape = SIM_SHAPE_OPENAPI,
    .upload_max_bytes = 100L * 1024 * 1024, .upload_base64_max_bytes = 10L * 1024 * 1024,
    .upload_ttl_ms = 3L * 24 * 3600 * 1000, .result_style = SIM_STYLE_STUDIO,
    .initial_credits = 100000000L, .price_1k = 5, .price_2k = 7, .refund_failed = 1,
    .credit_mode = SIM_MODE_NORMAL, .credit_mode_times = 0,
    .rate_limit = 0, .rate_limit_max = 20, .rate_limit_window_ms = 10000,
    .fail_match = "", .fail_width = 0,
};

/* ------------------------------------------------------ config handling */

int sim_knob_set_str(struct sim_config *cfg, const struct sim_knob *k, const char *v, char *err, size_t errlen)
{
    char *field = (char *)cfg + k->off;
    long n;
    int idx;

    switch (k->type) {
    case SIM_KNOB_LONG:
        if (sim_parse_long(v, k->min, k->max, &n) != 0) {
            snprintf(err, errlen, "%s must be an integer in %ld..%ld", k->name, k->min, k->max);
            return -1;
        }
        *(long *)(void *)field = n;
        return 0;
    case SIM_KNOB_STR:
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s must be shorter than %zu bytes", k->name, k->size);
            return -1;
        }
        sim_copy(field, k->size, v);
        return 0;
    case SIM_KNOB_ENUM:
        idx = sim_enum_index(k->names, v);
        if (idx < 0) {
            snprintf(err, errlen, "%s: unknown value %.64s", k->name, v);
            return -1;
        }
        *(int *)(void *)field = idx;
        return 0;
    }
    return -1;
}

static int sim_knob_set_json(struct sim_config *cfg, const struct sim_knob *k, const cJSON *v,
                             char *err, size_t errlen)
{
    if (k->type == SIM_KNOB_LONG) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
        long n;

        if (!cJSON_IsNumber(v) || d < (double)k->min || d > (double)k->max ||
            (double)(n = (long)d) != d) {
            snprintf(err, errlen, "%s must be an integer in %ld..%ld", k->name, k->min, k->max);
            return -1;
        }
        *(long *)(void *)((char *)cfg + k->off) = n;
        return 0;
    }
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen, "%s must be a string", k->name);
        return -1;
    }
    return sim_knob_set_str(cfg, k, v->valuestring, err, errlen);
}

const struct sim_knob *sim_knob_find(const char *name)
{
    for (size_t i = 0; i < SIM_N_KNOBS; i++)
        if (strcmp(sim_knobs[i].name, name) == 0)
            return &sim_knobs[i];
    return NULL;
}

static cJSON *sim_config_json(const struct sim_config *cfg)
{
    cJSON *o = cJSON_CreateObject();

    for (size_t i = 0; i < SIM_N_KNOBS; i++) {
        const struct sim_knob *k = &sim_knobs[i];
        const char *field = (const char *)cfg + k->off;

        if (k->type == SIM_KNOB_LONG)
            cJSON_AddNumberToObject(o, k->name, (double)*(const long *)(const void *)field);
        else if (k->type == SIM_KNOB_STR)
            cJSON_AddStringToObject(o, k->name, field);
        else
            cJSON_AddStringToObject(o, k->name, k->names[*(const int *)(const void *)field]);
    }
    return o;
}

int sim_take_mode(struct sim_app *app, enum sim_endpoint ep, struct sim_config *snap)
{
    static const struct { size_t mode, times; } fields[] = {
        [SIM_EP_CREATE] = {offsetof(struct sim_config, create_mode), offsetof(struct sim_config, create_mode_times)},
        [SIM_EP_RECORD] = {offsetof(struct sim_config, record_mode), offsetof(struct sim_config, record_mode_times)},
        [SIM_EP_UPLOAD] = {offsetof(struct sim_config, upload_mode), offsetof(struct sim_config, upload_mode_times)},
        [SIM_EP_CREDIT] = {offsetof(struct sim_config, credit_mode), offsetof(struct sim_config, credit_mode_times)},
    };
    int *mode, m;
    long *times;

    pthread_mutex_lock(&app->lock);
    *snap = app->cfg;
    mode = (int *)(void *)((char *)&app->cfg + fields[ep].mode);
    times = (long *)(void *)((char *)&app->cfg + fields[ep].times);
    m = *mode;
    if (m != 0 && *times > 0 && --*times == 0) /* 0: normal, in every mode list */
        *mode = 0;
    pthread_mutex_unlock(&app->lock);
    return m;
}

/* -------------------------------------------------------- request log */

struct sim_query_ctx {
    cJSON *obj;
    int n;
};

static enum MHD_Result sim_query_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct sim_query_ctx *q = cls;

    (void)kind;
    if (q->n++ >= SIM_MAX_QUERY_ARGS)
        return MHD_NO;
    cJSON_AddStringToObject(q->obj, key, value ? value : "");
    return MHD_YES;
}

/* Replace the long strings of o's members (not deeper) with their first
 * SIM_LOG_STR_KEEP bytes and their length. */
static void sim_log_trim(cJSON *o)
{
    cJSON *item;

    cJSON_ArrayForEach(item, o) {
        size_t n, keep = SIM_LOG_STR_KEEP;
        char *s;

        if (!cJSON_IsString(item) || (n = strlen(item->valuestring)) <= SIM_LOG_STR_MAX)
            continue;
        while (keep > 0 && ((unsigned char)item->valuestring[keep] & 0xC0u) == 0x80u)
            keep--; /* do not cut a UTF-8 sequence */
        s = sim_xmalloc(keep + 48);
        snprintf(s, keep + 48, "%.*s...(%zu bytes)", (int)keep, item->valuestring, n);
        cJSON_SetValuestring(item, s);
        free(s);
    }
}

void sim_log_request(struct sim_app *app, struct MHD_Connection *c, const char *method, const char *url,
                     const struct sim_req *r, cJSON *summary, bool trim)
{
    cJSON *e = cJSON_CreateObject();
    struct sim_query_ctx q = {.obj = cJSON_CreateObject(), .n = 0};
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool present = false, ok = sim_auth_ok(app, c, &present);
    cJSON *body = summary;

    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, sim_query_iter, &q);
    cJSON_AddNumberToObject(e, "time_ms", (double)sim_wall_ms());
    cJSON_AddNumberToObject(e, "mono_ms", (double)sim_mono_ms()); /* the clock sim_rate_admit counts with */
    cJSON_AddStringToObject(e, "method", method);
    cJSON_AddStringToObject(e, "path", url);
    cJSON_AddItemToObject(e, "query", q.obj);
    cJSON_AddBoolToObject(e, "auth_present", present);
    cJSON_AddBoolToObject(e, "auth_ok", ok);
    if (ct)
        cJSON_AddStringToObject(e, "content_type", ct);
    else
        cJSON_AddNullToObject(e, "content_type");
    cJSON_AddNumberToObject(e, "body_bytes", (double)r->len);
    if (!body && r->len && r->body && !r->too_large)
        body = cJSON_ParseWithLength(r->body, r->len);
    if (body && trim)
        sim_log_trim(body);
    if (body)
        cJSON_AddItemToObject(e, "body", body);
    else
        cJSON_AddNullToObject(e, "body");

    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(e, "seq", (double)++app->req_seq);
    cJSON_AddItemToArray(app->req_log, e);
    if (++app->req_log_count > SIM_MAX_REQ_LOG) {
        cJSON_DeleteItemFromArray(app->req_log, 0);
        app->req_log_count--;
    }
    pthread_mutex_unlock(&app->lock);
}

/* ------------------------------------------------------------- routes */

void sim_h_config_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o;

    (void)c;
    (void)r;
    pthread_mutex_lock(&app->lock);
    o = sim_config_json(&app->cfg);
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

/* POST /sim/config: all-or-nothing update; answers the full new config.
 * Setting initial_credits, or reset, also resets every key's balance;
 * setting rate_limit, or reset, empties the rate-limit windows. */
void sim_h_config_set(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *body = cJSON_ParseWithLength(r->body ? r->body : "", r->len), *item, *reset, *o;
    struct sim_config next;
    char err[256] = "";

    (void)c;
    if (!cJSON_IsObject(body)) {
        sim_copy(err, sizeof err, "body must be a JSON object of knobs");
        goto bad;
    }
    pthread_mutex_lock(&app->lock);
    next = app->cfg;
    pthread_mutex_unlock(&app->lock);
    reset = cJSON_GetObjectItemCaseSensitive(body, "reset");
    if (cJSON_IsTrue(reset)) {
        pthread_mutex_lock(&app->lock);
        next = app->cfg_initial;
        pthread_mutex_unlock(&app->lock);
    } else if (reset && !cJSON_IsFalse(reset)) {
        sim_copy(err, sizeof err, "reset must be a boolean");
        goto bad;
    }
    cJSON_ArrayForEach(item, body) {
        const struct sim_knob *k;

        if (!item->string || strcmp(item->string, "reset") == 0)
            continue;
        k = sim_knob_find(item->string);
        if (!k) {
            snprintf(err, sizeof err, "unknown knob %.64s", item->string);
            goto bad;
        }
        if (sim_knob_set_json(&next, k, item, err, sizeof err) != 0)
            goto bad;
    }
    pthread_mutex_lock(&app->lock);
    app->cfg = next;
    if (cJSON_IsTrue(reset) || cJSON_GetObjectItemCaseSensitive(body, "initial_credits"))
        sim_credits_reset(app, next.initial_credits);
    if (cJSON_IsTrue(reset) || cJSON_GetObjectItemCaseSensitive(body, "rate_limit"))
        sim_rate_clear(app);
    o = sim_config_json(&app->cfg);
    pthread_mutex_unlock(&app->lock);
    cJSON_Delete(body);
    sim_resp_json(resp, 200, o);
    return;
bad:
    cJSON_Delete(body);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", err);
    sim_resp_json(resp, 400, o);
}

void sim_h_requests_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject();

    (void)c;
    (void)r;
    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(o, "count", (double)app->req_log_count);
    cJSON_AddItemToObject(o, "requests", cJSON_Duplicate(app->req_log, 1));
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

void sim_h_requests_delete(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject();

    (void)c;
    (void)r;
    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(o, "cleared", (double)app->req_log_count);
    cJSON_Delete(app->req_log);
    app->req_log = cJSON_CreateArray();
    app->req_log_count = 0;
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

void sim_h_tasks(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject(), *arr;
    size_t cap = (size_t)app->max_tasks;

    (void)c;
    (void)r;
    arr = cJSON_AddArrayToObject(o, "tasks");
    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(o, "count", (double)app->task_count);
    cJSON_AddNumberToObject(o, "max_tasks", (double)app->max_tasks);
    for (size_t i = 0; i < app->task_count; i++) {
        const struct sim_task *t = app->tasks[(app->task_head + i) % cap];
        cJSON *d = sim_task_data(app, t, false), *u = cJSON_AddArrayToObject(d, "inputUrls");
        cJSON *hist = cJSON_AddObjectToObject(d, "stateTimes");

        for (int st = SIM_ST_WAITING; st <= SIM_ST_FAIL; st++)
            if (t->entered_ms[st])
                cJSON_AddNumberToObject(hist, sim_state_names[st], (double)t->entered_ms[st]);

        for (size_t j = 0; j < t->n_urls; j++)
            cJSON_AddItemToArray(u, cJSON_CreateString(t->urls[j]));
        if (t->callback_url)
            cJSON_AddStringToObject(d, "callBackUrl", t->callback_url);
        else
            cJSON_AddNullToObject(d, "callBackUrl");
        cJSON_AddNumberToObject(d, "apiKeyIndex", (double)t->key);
        cJSON_AddNumberToObject(d, "creditsCharged", (double)t->credits);
        cJSON_AddBoolToObject(d, "creditsRefunded", t->refunded);
        cJSON_AddNumberToObject(d, "resultWidth", (double)t->result_w);
        cJSON_AddNumberToObject(d, "resultHeight", (double)t->result_h);
        cJSON_AddNumberToObject(d, "resultBytes", (double)t->result_len);
        cJSON_AddBoolToObject(d, "callbackDone", t->callback_done);
        cJSON_AddNumberToObject(d, "callbackStatus", (double)t->callback_status);
        cJSON_AddStringToObject(d, "callbackError", t->callback_error);
        cJSON_AddItemToArray(arr, d);
    }
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

/* ---------------------------------------------------------------- usage */

static void sim_print_flag(FILE *f, const char *name)
{
    fputs("  --", f);
    for (const char *p = name; *p; p++)
        fputc(*p == '_' ? '-' : *p, f);
}

void sim_knobs_usage(FILE *f)
{
    for (size_t i = 0; i < SIM_N_KNOBS; i++) {
        const struct sim_knob *k = &sim_knobs[i];
        const char *field = (const char *)&sim_config_defaults + k->off;

        sim_print_flag(f, k->name);
        fprintf(f, " %s\n        %s (default ", k->type == SIM_KNOB_LONG ? "N" : "VALUE", k->help);
        if (k->type == SIM_KNOB_LONG)
            fprintf(f, "%ld; %ld..%ld)\n", *(const long *)(const void *)field, k->min, k->max);
        else if (k->type == SIM_KNOB_STR)
            fprintf(f, "\"%s\")\n", field);
        else
            fprintf(f, "%s)\n", k->names[*(const int *)(const void *)field]);
    }
}
