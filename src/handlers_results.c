/* handlers_results.c - POST /kie/callback (KIE tells us a task finished) and
 * GET /results/<task id> (our stable copy of a result, made on first use). */
#include "app.h"
#include "config.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "kie.h"
#include "kiecall.h"
#include "log.h"
#include "metrics.h"
#include "replay.h"
#include "results.h"
#include "storage.h"
#include "taskcache.h"
#include "taskstore.h"
#include "upstream.h"
#include "validate.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Checked when KIE_WEBHOOK_HMAC_KEY is set (KIE's webhook verification):
 * X-Webhook-Signature = Base64(HMAC-SHA256(key, taskId + "." + timestamp)),
 * with X-Webhook-Timestamp (Unix seconds) at most WEBHOOK_MAX_SKEW away.
 * On success *ts is the timestamp. */
static int webhook_signature_ok(struct req *r, const char *task_id, long *ts_out)
{
    const char *key = r->app->cfg->kie_webhook_hmac_key;
    const char *ts = http_header(r, "X-Webhook-Timestamp");
    const char *sig = http_header(r, "X-Webhook-Signature");
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    unsigned char want[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    char msg[300];
    long t;
    int n;

    if (!key)
        return 1;
    if (!ts || !sig || config_parse_long(ts, 0, 0x7fffffffffffL, &t) || labs(t - (long)time(NULL)) > WEBHOOK_MAX_SKEW)
        return 0;
    n = snprintf(msg, sizeof msg, "%s.%s", task_id, ts);
    if (n < 0 || (size_t)n >= sizeof msg ||
        !HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, (size_t)n, mac, &mac_len))
        return 0;
    n = EVP_EncodeBlock(want, mac, (int)mac_len);
    *ts_out = t;
    return n > 0 && strlen(sig) == (size_t)n && CRYPTO_memcmp(want, sig, (size_t)n) == 0;
}

/* A verified callback is only a hint that the task may be done: its body is
 * not trusted (KIE's signature covers taskId.timestamp, not the body), so
 * the server asks recordInfo itself, with our key, and uses that answer. */
struct callback_job {
    struct app *app;
    char task_id[129];
};

static void on_callback_record(struct upstream_call *c, void *arg)
{
    struct callback_job *j = arg;
    struct kie_outcome o;
    enum kie_transport t = kie_transport_of(c->result);
    cJSON *data;
    cJSON *id;
    cJSON *state;

    kie_map(t, c->error, j->app->cfg->kie_timeout_seconds, c->http_status, c->response.data, c->response.len, 1,
            "recordInfo", &o);
    data = cJSON_GetObjectItemCaseSensitive(o.json, "data");
    id = cJSON_GetObjectItemCaseSensitive(data, "taskId");
    state = cJSON_GetObjectItemCaseSensitive(data, "state");
    if (o.status != 200) {
        log_warn("KIE callback for task %s: recordInfo failed: HTTP %ld, %s", j->task_id, c->http_status,
                 c->result ? c->error : o.code);
    } else if (!cJSON_IsString(id) || strcmp(id->valuestring, j->task_id) != 0) {
        log_warn("KIE callback for task %s: recordInfo answered for another task", j->task_id);
    } else {
        results_note_answer(j->app, o.json);
        log_info("KIE callback for task %s: recordInfo says %s", j->task_id,
                 cJSON_IsString(state) ? state->valuestring : "(no state)");
    }
    kie_outcome_free(&o);
    upstream_call_free(c);
    free(j);
}

/* Start recordInfo for task_id, detached: nobody waits for it. */
static void callback_ask_kie(struct app *app, const char *request_id, const char *task_id)
{
    const struct config *cfg = app->cfg;
    struct callback_job *j;
    struct upstream_call *c;

    if (!cfg->kie_api_key) {
        log_warn("request %s: KIE callback for %s ignored: no KIE_API_KEY to ask recordInfo", request_id, task_id);
        return;
    }
    j = calloc(1, sizeof *j);
    c = j ? kie_record_call(cfg, task_id) : NULL;
    if (!c) {
        free(j);
        log_warn("request %s: KIE callback for %s: out of memory", request_id, task_id);
        return;
    }
    j->app = app;
    snprintf(j->task_id, sizeof j->task_id, "%s", task_id);
    c->done = on_callback_record;
    c->arg = j;
    if (upstream_submit(app->up, c)) {
        upstream_call_free(c);
        free(j);
        log_warn("request %s: KIE callback for %s ignored: shutting down", request_id, task_id);
    }
}

enum MHD_Result h_callback(struct req *r)
{
    const char *token = http_query(r, "token");
    unsigned char want[SHA256_DIGEST_LENGTH];
    unsigned char got[SHA256_DIGEST_LENGTH];
    char task_id[129];
    char seen[200];
    long ts = 0;
    cJSON *body;
    cJSON *data;
    cJSON *id;
    cJSON *answer;

    SHA256((const unsigned char *)r->app->callback_secret, strlen(r->app->callback_secret), want);
    SHA256((const unsigned char *)(token ? token : ""), token ? strlen(token) : 0, got);
    if (!token || CRYPTO_memcmp(want, got, sizeof want) != 0) {
        log_warn("request %s: KIE callback with a wrong token from %s", r->id, r->client_ip);
        return http_error(r, 403, "forbidden", "Wrong or missing callback token.");
    }
    /* only data.taskId is read from the body: which task to ask KIE about */
    body = cJSON_ParseWithLength(buf_str(&r->body), r->body.len);
    data = cJSON_GetObjectItemCaseSensitive(body, "data");
    id = cJSON_GetObjectItemCaseSensitive(data, "taskId");
    if (!cJSON_IsString(id))
        id = cJSON_GetObjectItemCaseSensitive(data, "task_id"); /* KIE's CN sample uses this */
    if (!cJSON_IsObject(data) || !cJSON_IsString(id) || !task_id_valid(id->valuestring)) {
        cJSON_Delete(body);
        return http_error(r, 400, "invalid_callback", "Expected KIE's callback JSON with data.taskId.");
    }
    snprintf(task_id, sizeof task_id, "%s", id->valuestring);
    cJSON_Delete(body);
    if (!webhook_signature_ok(r, task_id, &ts)) {
        log_warn("request %s: KIE callback for %s with a bad or missing webhook signature", r->id, task_id);
        return http_error(r, 403, "bad_signature",
                          "The callback's X-Webhook-Signature does not match KIE_WEBHOOK_HMAC_KEY.");
    }
    if (r->app->cfg->kie_webhook_hmac_key) {
        /* the signature covers taskId.timestamp only: the same pair twice is a replay */
        enum replay_verdict v;
        snprintf(seen, sizeof seen, "%s.%ld", task_id, ts);
        v = replay_check(r->app->callback_replays, seen, (time_t)ts, time(NULL));
        if (v == REPLAY_SEEN) {
            log_warn("request %s: KIE callback for %s replayed (timestamp %ld seen before)", r->id, task_id, ts);
            return http_error(r, 409, "replayed_callback", "This signed callback was received before.");
        }
        if (v == REPLAY_FULL) {
            log_warn("request %s: KIE callback for %s refused: too many signed callbacks in %d s", r->id, task_id,
                     WEBHOOK_MAX_SKEW);
            return http_error_retry(r, 503, "callback_busy", 10,
                                    "Too many callbacks lately; retry in a moment.");
        }
    }
    log_info("request %s: callback hint for task %s: asking KIE's recordInfo", r->id, task_id);
    callback_ask_kie(r->app, r->id, task_id);
    answer = cJSON_CreateObject();
    cJSON_AddStringToObject(answer, "status", "received");
    return http_json(r, 200, answer);
}

/* ---- GET /results/<task id> --------------------------------------------- */

struct result_state {
    struct req *r;
    struct upstream_call *call;
    struct keep_outcome out;
    struct taskstore_op op; /* is the task ours? */
};

static void result_state_free(void *p)
{
    struct result_state *st = p;
    if (st) {
        upstream_call_free(st->call);
        taskstore_op_clear(&st->op);
        free(st);
    }
}

/* The photo's name for a download ("mug.heic" -> "mug"): letters, digits,
 * space, '.', '_' and '-' only (nothing that could break the header), the
 * extension dropped, at most cap-1 bytes; the task id when nothing is left. */
static void download_stem(const char *name, const char *task_id, char *out, size_t cap)
{
    size_t n = 0;
    char *dot;

    for (const char *p = name ? name : ""; *p && n + 1 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == '.' ||
            c == '_' || c == '-')
            out[n++] = (char)c;
    }
    out[n] = '\0';
    dot = strrchr(out, '.');
    if (dot)
        *dot = '\0';
    while (out[0] == '.' || out[0] == ' ')
        memmove(out, out + 1, strlen(out));
    if (!out[0])
        snprintf(out, cap, "%.*s", (int)(cap - 1), task_id);
}

static enum MHD_Result serve_stable(struct req *r, const char *stable)
{
    struct storage *store = r->app->store;
    struct storage_file f;
    struct MHD_Response *resp;
    const char *base = strrchr(stable, '/'); /* "results/<task id>.<ext>" */
    enum image_type type = result_name_check(base ? base + 1 : stable);

    if (store->ops->open_file(store, stable, &f))
        return http_error(r, 404, "not_found", "The kept result is gone.");
    if (f.fd < 0)
        return http_redirect(r, f.redirect);
    resp = MHD_create_response_from_fd64((uint64_t)f.size, f.fd);
    if (!resp) {
        close(f.fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", image_mime(type));
    MHD_add_response_header(resp, "Cache-Control", "public, max-age=31536000, immutable");
    http_add_file_headers(resp);
    {
        const char *dl = http_query(r, "download");
        char disp[300];
        if (dl && strcmp(dl, "1") == 0) {
            char stem[81];
            download_stem(http_query(r, "name"), r->param, stem, sizeof stem);
            snprintf(disp, sizeof disp, "attachment; filename=\"%s-studio.%s\"", stem, image_ext(type));
        } else {
            snprintf(disp, sizeof disp, "inline");
        }
        MHD_add_response_header(resp, "Content-Disposition", disp);
    }
    return http_send(r, 200, resp, (unsigned long long)f.size);
}

static enum MHD_Result result_reply(struct req *r)
{
    struct result_state *st = r->state;
    if (!st->out.ok)
        return http_error(r, st->out.status ? st->out.status : 502, st->out.code, "%s", st->out.message);
    return serve_stable(r, st->out.stable_name);
}

static void on_kept(const struct keep_outcome *o, void *arg)
{
    struct result_state *st = arg;
    st->out = *o;
    http_resume(st->r);
}

/* Start copying from the finished task's `answer`; else fill st->out. */
static void keep_from_answer(struct result_state *st, cJSON *answer)
{
    struct req *r = st->r;
    cJSON *data = cJSON_GetObjectItemCaseSensitive(answer, "data");
    cJSON *state = cJSON_GetObjectItemCaseSensitive(data, "state");
    const char *url = results_first_url(data);

    if (cJSON_IsString(state) && strcmp(state->valuestring, "success") == 0 && url) {
        if (taskcache_claim_copy(r->app->tasks, r->param, 1)) {
            results_keep(r->app, r->param, url, on_kept, st);
            return;
        }
        keep_outcome_fail(&st->out, 409, "copy_in_progress",
                          "The result is being copied right now; retry in a moment.");
    } else if (cJSON_IsString(state) && strcmp(state->valuestring, "fail") == 0) {
        cJSON *msg = cJSON_GetObjectItemCaseSensitive(data, "failMsg");
        keep_outcome_fail(&st->out, 409, "task_failed", "The task failed: %s",
                          cJSON_IsString(msg) ? msg->valuestring : "no reason given");
    } else {
        keep_outcome_fail(&st->out, 409, "task_not_finished", "The task is still %s; poll /status until it succeeds.",
                          cJSON_IsString(state) ? state->valuestring : "running");
    }
    http_resume(r);
}

static void on_record(struct upstream_call *c, void *arg)
{
    struct result_state *st = arg;
    struct kie_outcome o;
    enum kie_transport t = kie_transport_of(c->result);

    kie_map(t, c->error, st->r->app->cfg->kie_timeout_seconds, c->http_status, c->response.data, c->response.len, 1,
            "recordInfo", &o);
    if (kie_unknown_task(&o)) {
        if (taskcache_created_within(st->r->app->tasks, st->r->param, time(NULL), TASK_NEW_GRACE_SECONDS))
            keep_outcome_fail(&st->out, 409, "task_not_finished",
                              "The task is still waiting; poll /status until it succeeds.");
        else
            keep_outcome_fail(&st->out, 404, "task_not_found", "No such task: unknown or expired.");
    } else if (o.status != 200) {
        keep_outcome_fail(&st->out, o.status, o.code, "%s", o.message);
    }
    if (st->out.status) {
        kie_outcome_free(&o);
        http_resume(st->r);
        return;
    }
    results_note_answer(st->r->app, o.json);
    keep_from_answer(st, o.json);
    kie_outcome_free(&o);
}

static enum MHD_Result ask_kie(struct req *r);
static enum MHD_Result results_known(struct req *r);

enum MHD_Result h_results(struct req *r)
{
    enum MHD_Result answered = MHD_NO;
    struct result_state *st;
    char stable[300];
    char *cached;

    if (!task_id_valid(r->param))
        return http_error(r, 404, "not_found", "There is no such task.");
    if (results_find_kept(r->app, r->param, stable, sizeof stable))
        return serve_stable(r, stable);
    /* from here on it costs: a KIE call, a copy */
    if (http_rate_limit(r, r->app->rl_results, &answered))
        return answered;
    st = calloc(1, sizeof *st);
    if (!st)
        return MHD_NO;
    st->r = r;
    r->state = st;
    r->state_free = result_state_free;
    cached = taskcache_get_final(r->app->tasks, r->param);
    if (cached) {
        cJSON *j = cJSON_Parse(cached);
        free(cached);
        if (j) {
            http_suspend(r, result_reply);
            keep_from_answer(st, j);
            cJSON_Delete(j);
            return MHD_YES;
        }
    }
    if (!r->app->taskstore)
        return ask_kie(r);
    /* only tasks this server created: an unknown id costs no KIE call */
    snprintf(st->op.id, sizeof st->op.id, "%.128s", r->param);
    return handler_store_step(r, &st->op, r->app->taskstore->ops->get, results_known);
}

static enum MHD_Result results_known(struct req *r)
{
    struct result_state *st = r->state;

    if (st->op.result == ERR_NOT_FOUND)
        return http_error(r, 404, "task_not_found", "This server created no task %s.", st->op.id);
    if (st->op.result)
        return http_error_retry(r, 503, "task_store_unavailable", 5, "The task store could not be read (%s).",
                                st->op.error);
    return ask_kie(r);
}

/* recordInfo for the task, then copy its result (suspended throughout). */
static enum MHD_Result ask_kie(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    struct result_state *st = r->state;

    http_suspend(r, result_reply);
    if (!cfg->kie_api_key) {
        keep_outcome_fail(&st->out, 503, "kie_not_configured", "KIE_API_KEY is not set on the server.");
        http_resume(r);
        return MHD_YES;
    }
    st->call = kie_record_call(cfg, r->param);
    if (!st->call) {
        keep_outcome_fail(&st->out, 500, "internal_error", "Out of memory.");
        http_resume(r);
        return MHD_YES;
    }
    st->call->done = on_record;
    st->call->arg = st;
    if (upstream_submit(r->app->up, st->call)) {
        keep_outcome_fail(&st->out, 503, "shutting_down", "The server is shutting down.");
        http_resume(r);
    }
    return MHD_YES;
}
