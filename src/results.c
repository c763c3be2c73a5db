/* results.c - see results.h. */
#include "results.h"
#include "app.h"
#include "buf.h"
#include "config.h"
#include "diskguard.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "resultsig.h"
#include "spool.h"
#include "storage.h"
#include "taskcache.h"
#include "tasklog.h"
#include "upstream.h"
#include "validate.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RESULT_TIMEOUT_MS 120000 /* on Lambda: KIE_TIMEOUT_SECONDS, below API Gateway's 30 s (results_timeout_ms) */

struct keep_job {
    struct app *app;
    char task_id[129];
    int fd;
    char spool[4096];
    struct storage_put put;
    struct keep_outcome out;
    void (*done)(const struct keep_outcome *o, void *arg);
    void *arg;
};

void keep_outcome_fail(struct keep_outcome *o, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    o->ok = 0;
    o->status = status;
    snprintf(o->code, sizeof o->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(o->message, sizeof o->message, fmt, ap);
    va_end(ap);
}

static void job_finish(struct keep_job *j)
{
    struct storage *store = j->app->store;

    if (j->fd >= 0)
        close(j->fd);
    if (j->spool[0] && !(j->out.ok && store->ops->keeps_spool))
        unlink(j->spool);
    taskcache_copy_done(j->app->tasks, j->task_id, j->out.ok ? j->out.stable_name : NULL);
    if (j->out.ok) {
        char path[200];
        log_info("results: kept task %s as %s", j->task_id, j->out.stable_name);
        snprintf(path, sizeof path, "/results/%s", j->task_id); /* signed when answered */
        tasklog_note_stable(j->app, j->task_id, path);
        if (store->ops->keeps_spool) /* local disk: RESULTS_MAX_MB, oldest first */
            (void)results_trim(j->app->cfg->upload_dir, (long long)j->app->cfg->results_max_mb * 1024 * 1024);
    }
    else
        log_warn("results: could not keep task %s: %s", j->task_id, j->out.message);
    if (j->done)
        j->done(&j->out, j->arg);
    free(j);
}

static void on_committed(struct storage_put *p, void *arg)
{
    struct keep_job *j = arg;
    if (p->http_status)
        keep_outcome_fail(&j->out, (unsigned)p->http_status, p->error_code, "%s", p->error_msg);
    else
        j->out.ok = 1;
    job_finish(j);
}

static void on_downloaded(struct upstream_call *c, void *arg)
{
    struct keep_job *j = arg;
    struct storage *store = j->app->store;
    unsigned char magic[IMAGE_MAGIC_LEN];
    enum image_type type;
    ssize_t n;
    int rc;

    if (c->result == ERR_TOO_LARGE) {
        keep_outcome_fail(&j->out, 502, "result_too_large", "KIE's result image is larger than %ld bytes "
                          "(MAX_RESULT_BYTES).", j->app->cfg->max_result_bytes);
    } else if (c->result == ERR_TIMEOUT) {
        keep_outcome_fail(&j->out, 504, "upstream_timeout", "Downloading KIE's result timed out.");
    } else if (c->result || c->http_status != 200) {
        /* one answer for every failure (refused by the fetch policy, closed
         * port, no such host, HTTP error): the difference would map our
         * network for whoever named the URL. The log has the reason. */
        log_warn("results: downloading task %s's result failed: %s (HTTP %ld)", j->task_id,
                 c->result ? c->error : "answer not 200", c->http_status);
        keep_outcome_fail(&j->out, 502, "result_unavailable",
                          "KIE's result could not be downloaded; it may have expired.");
    }
    upstream_call_free(c);
    if (j->out.status)
        goto finish;
    n = pread(j->fd, magic, sizeof magic, 0);
    type = n > 0 ? image_detect(magic, (size_t)n) : IMAGE_UNKNOWN;
    if (!image_is_output(type))
        type = IMAGE_UNKNOWN; /* KIE answers JPEG, PNG or WEBP; nothing else is kept */
    if (type == IMAGE_UNKNOWN) {
        keep_outcome_fail(&j->out, 502, "result_not_image", "KIE's result is not a JPEG, PNG or WEBP image.");
        goto finish;
    }
    snprintf(j->put.name, sizeof j->put.name, "results/%s.%s", j->task_id, image_ext(type));
    snprintf(j->out.stable_name, sizeof j->out.stable_name, "%s", j->put.name);
    j->put.fd = j->fd;
    j->put.spool_path = j->spool;
    j->put.type = type;
    j->put.size = lseek(j->fd, 0, SEEK_END);
    j->put.done = on_committed;
    j->put.arg = j;
    rc = store->ops->commit(store, &j->put);
    if (rc == STORAGE_PENDING)
        return; /* on_committed follows */
    if (rc) {
        keep_outcome_fail(&j->out, j->put.http_status ? (unsigned)j->put.http_status : 500,
                          j->put.error_code[0] ? j->put.error_code : "storage_error", "%s",
                          j->put.error_msg[0] ? j->put.error_msg : "Could not store the result.");
    } else {
        j->out.ok = 1;
    }
finish:
    job_finish(j);
}

void results_keep(struct app *app, const char *task_id, const char *result_url,
                  void (*done)(const struct keep_outcome *o, void *arg), void *arg)
{
    struct keep_job *j = calloc(1, sizeof *j);
    struct upstream_call *c = NULL;
    const char *dir;

    if (!j) {
        struct keep_outcome o = {.ok = 0, .status = 500};
        snprintf(o.code, sizeof o.code, "internal_error");
        snprintf(o.message, sizeof o.message, "Out of memory.");
        taskcache_copy_done(app->tasks, task_id, NULL);
        if (done)
            done(&o, arg);
        return;
    }
    j->app = app;
    j->fd = -1;
    j->done = done;
    j->arg = arg;
    snprintf(j->task_id, sizeof j->task_id, "%s", task_id);
    dir = app->store->ops->spool_dir(app->store);
    if (app->store->ops->keeps_spool && disk_low(app->cfg->upload_dir, app->cfg->min_free_disk_mb)) {
        /* the same guard as uploads: a result never fills the disk */
        keep_outcome_fail(&j->out, 507, "insufficient_storage", "The server's storage is full; try again later.");
        job_finish(j);
        return;
    }
    j->fd = spool_create(dir, j->spool, sizeof j->spool);
    if (j->fd < 0) {
        j->spool[0] = '\0';
        keep_outcome_fail(&j->out, 500, "storage_error", "Could not create a temporary file for the result.");
        job_finish(j);
        return;
    }
    c = upstream_call_new("GET", result_url, results_timeout_ms(app->cfg), (size_t)app->cfg->max_result_bytes);
    if (!c) {
        keep_outcome_fail(&j->out, 500, "internal_error", "Out of memory.");
        job_finish(j);
        return;
    }
    c->download_fd = j->fd;
    c->target = TARGET_RESULT;
    c->follow_redirects = 1;
    c->peer_url = 1; /* KIE named it: http(s), public addresses only (fetchpolicy.h) */
    c->allow_private_fetch = app->cfg->allow_private_fetch;
    c->done = on_downloaded;
    c->arg = j;
    if (upstream_submit(app->up, c)) {
        upstream_call_free(c);
        keep_outcome_fail(&j->out, 503, "shutting_down", "The server is shutting down.");
        job_finish(j);
    }
}

const char *results_first_url(cJSON *data)
{
    cJSON *urls = cJSON_GetObjectItemCaseSensitive(data, "resultUrls");
    cJSON *first = cJSON_IsArray(urls) ? cJSON_GetArrayItem(urls, 0) : NULL;
    return cJSON_IsString(first) && first->valuestring[0] ? first->valuestring : NULL;
}

/* KIE echoes the whole createTask request in data.param, callBackUrl and its
 * token included: hide the token before anything leaves or is cached. */
static void redact_callback_token(cJSON *data, const char *secret)
{
    cJSON *param = cJSON_GetObjectItemCaseSensitive(data, "param");
    size_t sl = strlen(secret);
    struct buf out;
    const char *p;
    const char *hit;

    if (!cJSON_IsString(param) || sl == 0 || !strstr(param->valuestring, secret))
        return;
    buf_init(&out, (strlen(param->valuestring) + 1) * 8); /* "REDACTED" may be longer than the secret */
    for (p = param->valuestring; (hit = strstr(p, secret)); p = hit + sl)
        if (buf_append(&out, p, (size_t)(hit - p)) || buf_appends(&out, "REDACTED"))
            break;
    if (buf_appends(&out, p) == 0)
        cJSON_SetValuestring(param, buf_str(&out));
    else
        cJSON_SetValuestring(param, "");
    buf_free(&out);
}

void results_note_answer(struct app *app, cJSON *answer)
{
    cJSON *data = cJSON_GetObjectItemCaseSensitive(answer, "data");
    cJSON *id = cJSON_GetObjectItemCaseSensitive(data, "taskId");
    cJSON *state = cJSON_GetObjectItemCaseSensitive(data, "state");
    char stable[200];

    if (cJSON_IsObject(data))
        redact_callback_token(data, app->callback_secret);
    if (!cJSON_IsString(id) || !task_id_valid(id->valuestring) || !cJSON_IsString(state))
        return;
    /* the first final answer is printed and cached once; later polls of the
     * same task (and every poll of one this server is not keeping) print and
     * parse nothing here */
    if ((strcmp(state->valuestring, "success") == 0 || strcmp(state->valuestring, "fail") == 0) &&
        !taskcache_has_final(app->tasks, id->valuestring)) {
        char *text = cJSON_PrintUnformatted(answer);
        if (text) {
            if (!taskcache_put_final(app->tasks, id->valuestring, text))
                log_debug("results: task %s: keeping the first final answer", id->valuestring);
            cJSON_free(text);
        }
    }
    if (strcmp(state->valuestring, "success") == 0 && taskcache_claim_copy(app->tasks, id->valuestring, 0)) {
        /* copy what the first final answer named (taskcache keeps it) */
        char *cached = taskcache_get_final(app->tasks, id->valuestring);
        cJSON *first = cached ? cJSON_Parse(cached) : NULL;
        const char *url = results_first_url(first ? cJSON_GetObjectItemCaseSensitive(first, "data") : data);
        if (url)
            results_keep(app, id->valuestring, url, NULL, NULL);
        else
            taskcache_copy_done(app->tasks, id->valuestring, NULL); /* nothing to copy: the claim is given back */
        cJSON_Delete(first);
        free(cached);
    }
    if (taskcache_get_stable(app->tasks, id->valuestring, stable, sizeof stable)) {
        char url[1024];
        results_stable_url(app, id->valuestring, url, sizeof url);
        cJSON_DeleteItemFromObjectCaseSensitive(data, "stable_url");
        cJSON_AddStringToObject(data, "stable_url", url);
    }
    tasklog_note_answer(app, answer);
}

void results_stable_url(struct app *app, const char *task_id, char *out, size_t cap)
{
    char base[512];
    char query[160];
    time_t exp = time(NULL) + app->cfg->results_url_ttl_hours * 3600;

    app_public_base_url(app, base, sizeof base);
    if (resultsig_query(app->results_key, task_id, exp, query, sizeof query))
        query[0] = '\0';
    snprintf(out, cap, "%s/results/%s?%s", base, task_id, query);
}

long results_timeout_ms(const struct config *cfg)
{
    return cfg->on_lambda ? cfg->kie_timeout_seconds * 1000 : RESULT_TIMEOUT_MS;
}

int results_find_kept(struct app *app, const char *task_id, char *out, size_t cap)
{
    static const char *const exts[] = {"png", "jpg", "webp"};

    if (taskcache_get_stable(app->tasks, task_id, out, cap))
        return 1;
    if (!app->store->ops->async_commit) { /* local: a copy made before a restart */
        for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
            struct storage_file f;
            snprintf(out, cap, "results/%s.%s", task_id, exts[i]);
            if (app->store->ops->open_file(app->store, out, &f) == 0) {
                close(f.fd);
                taskcache_copy_done(app->tasks, task_id, out);
                return 1;
            }
        }
    }
    if (cap)
        out[0] = '\0';
    return 0;
}
