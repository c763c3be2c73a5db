/* handlers_tasks.c - GET /tasks, GET /tasks/<id> (this server's task
 * records, from the task store) and GET /credits (KIE's balance, cached, and
 * what our tasks spent). */
#include "app.h"
#include "config.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "kiecall.h"
#include "log.h"
#include "metrics.h"
#include "results.h"
#include "tasklog.h"
#include "taskstore.h"
#include "upstream.h"
#include "validate.h"
#include "timefmt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TASKS_DEFAULT_LIMIT 20
#define PRICE_SAMPLE 100 /* newest tasks the per-image price is averaged over */
#define CREDIT_TIMEOUT_MS 10000

static void on_store_done(struct taskstore_op *op, void *arg)
{
    (void)op;
    http_resume(arg);
}

enum MHD_Result handler_store_step(struct req *r, struct taskstore_op *op,
                                   int (*fn)(struct taskstore *, struct taskstore_op *),
                                   enum MHD_Result (*cont)(struct req *r))
{
    struct taskstore *ts = r->app->taskstore;

    op->now = time(NULL);
    op->done = on_store_done;
    op->arg = r;
    if (!ts->ops->async) {
        (void)fn(ts, op);
        return cont(r);
    }
    http_suspend(r, cont);
    if (fn(ts, op) != TASKSTORE_PENDING)
        http_resume(r);
    return MHD_YES;
}

static enum MHD_Result store_off(struct req *r)
{
    return http_error(r, 503, "task_store_off",
                      "This server keeps no task history (TASK_STORE=off); set TASK_STORE=auto to have one.");
}

static enum MHD_Result store_error(struct req *r, const struct taskstore_op *op)
{
    return http_error_retry(r, 503, "task_store_unavailable", 5, "The task store could not be read (%s).",
                            op->error[0] ? op->error : "error");
}

/* ---- GET /tasks, GET /tasks/<id> ---------------------------------------------- */

struct tasks_state {
    struct taskstore_op op;
};

static void tasks_state_free(void *p)
{
    struct tasks_state *st = p;
    if (st) {
        taskstore_op_clear(&st->op);
        free(st);
    }
}

static struct tasks_state *tasks_state(struct req *r)
{
    struct tasks_state *st = calloc(1, sizeof *st);
    if (st) {
        r->state = st;
        r->state_free = tasks_state_free;
    }
    return st;
}

/* A record keeps "/results/<id>" as its stable_url; answered, it is our
 * signed absolute URL, valid from now (resultsig.h). */
static void sign_stable(struct req *r, cJSON *rec)
{
    cJSON *stable = cJSON_GetObjectItemCaseSensitive(rec, "stable_url");
    cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
    char url[1024];

    if (!cJSON_IsString(stable) || !cJSON_IsString(id) || !task_id_valid(id->valuestring))
        return;
    results_stable_url(r->app, id->valuestring, url, sizeof url);
    cJSON_ReplaceItemInObjectCaseSensitive(rec, "stable_url", cJSON_CreateString(url));
}

static enum MHD_Result tasks_listed(struct req *r)
{
    struct tasks_state *st = r->state;
    cJSON *j;
    cJSON *arr;

    if (st->op.result == ERR_INVALID)
        return http_error(r, 400, "invalid_cursor", "before must be the `next` value of a previous /tasks page.");
    if (st->op.result)
        return store_error(r, &st->op);
    j = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(j, "tasks");
    if (!j || !arr) {
        cJSON_Delete(j);
        return MHD_NO;
    }
    for (size_t i = 0; i < st->op.n_records; i++) {
        cJSON *rec = cJSON_Parse(st->op.records[i]);
        if (rec) {
            sign_stable(r, rec);
            cJSON_AddItemToArray(arr, rec);
        }
    }
    if (st->op.cursor[0])
        cJSON_AddStringToObject(j, "next", st->op.cursor);
    else
        cJSON_AddNullToObject(j, "next");
    return http_json(r, 200, j);
}

static int cursor_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof ((struct taskstore_op *)0)->cursor)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

enum MHD_Result h_tasks(struct req *r)
{
    const char *limit = http_query(r, "limit");
    const char *before = http_query(r, "before");
    struct tasks_state *st;
    long n = TASKS_DEFAULT_LIMIT;

    if (limit && config_parse_long(limit, 1, TASKSTORE_LIST_MAX, &n))
        return http_error(r, 400, "invalid_limit", "limit must be a whole number from 1 to %d.", TASKSTORE_LIST_MAX);
    if (before && *before && !cursor_valid(before))
        return http_error(r, 400, "invalid_cursor", "before must be the `next` value of a previous /tasks page.");
    if (!r->app->taskstore)
        return store_off(r);
    st = tasks_state(r);
    if (!st)
        return MHD_NO;
    st->op.limit = (int)n;
    if (before)
        snprintf(st->op.cursor, sizeof st->op.cursor, "%s", before);
    return handler_store_step(r, &st->op, r->app->taskstore->ops->list, tasks_listed);
}

static enum MHD_Result task_got(struct req *r)
{
    struct tasks_state *st = r->state;
    cJSON *rec;

    if (st->op.result == ERR_NOT_FOUND)
        return http_error(r, 404, "task_not_found", "This server has no record of task %s.", st->op.id);
    if (st->op.result)
        return store_error(r, &st->op);
    rec = cJSON_Parse(st->op.text);
    if (!rec)
        return store_error(r, &st->op);
    sign_stable(r, rec);
    return http_json(r, 200, rec);
}

enum MHD_Result h_task(struct req *r)
{
    struct tasks_state *st;

    if (!task_id_valid(r->param))
        return http_error(r, 400, "invalid_task_id", "A task id is 1-128 letters, digits, '_', '-' or '.'.");
    if (!r->app->taskstore)
        return store_off(r);
    st = tasks_state(r);
    if (!st)
        return MHD_NO;
    snprintf(st->op.id, sizeof st->op.id, "%.128s", r->param); /* valid ids are <= 128 */
    return handler_store_step(r, &st->op, r->app->taskstore->ops->get, task_got);
}

/* ---- GET /credits ----------------------------------------------------------------- */

struct credits_state {
    struct req *r;
    struct upstream_call *call;
    struct taskstore_op op;
    char balance_error[300];
    long count;
    double spent_today;
    double spent_total;
};

static void credits_state_free(void *p)
{
    struct credits_state *st = p;
    if (st) {
        upstream_call_free(st->call);
        taskstore_op_clear(&st->op);
        free(st);
    }
}

/* The average credits of the sampled tasks at `res`, or KIE's price. */
static double price_of(const struct taskstore_op *op, const char *res, int *from_tasks)
{
    double sum = 0;
    long n = 0;

    for (size_t i = 0; i < op->n_records; i++) {
        cJSON *rec = cJSON_Parse(op->records[i]);
        cJSON *rr = cJSON_GetObjectItemCaseSensitive(rec, "resolution");
        cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, "credits");
        if (cJSON_IsString(rr) && strcmp(rr->valuestring, res) == 0 && cJSON_IsNumber(c) && c->valuedouble > 0) {
            sum += c->valuedouble;
            n++;
        }
        cJSON_Delete(rec);
    }
    *from_tasks = n > 0;
    return n > 0 ? sum / (double)n : tasklog_list_price(res);
}

static enum MHD_Result credits_reply(struct req *r)
{
    struct credits_state *st = r->state;
    static const char *const RES[] = {"1K", "2K"};
    time_t now = time(NULL);
    time_t checked = 0;
    double balance = 0;
    int known = credits_cache_get(r->app->credits, now, CREDITS_CACHE_SECONDS, &balance, &checked);
    long limit = r->app->cfg->daily_generation_limit;
    cJSON *j = cJSON_CreateObject();
    cJSON *price = cJSON_CreateObject();
    cJSON *source = cJSON_CreateObject();
    cJSON *left = known ? cJSON_CreateObject() : cJSON_CreateNull();
    char when[32];

    if (st->op.result)
        log_warn("request %s: /credits could not sample the task store: %s", r->id, st->op.error);
    if (known)
        cJSON_AddNumberToObject(j, "balance", balance);
    else
        cJSON_AddNullToObject(j, "balance");
    if (known || !st->balance_error[0])
        cJSON_AddNullToObject(j, "balance_error");
    else
        cJSON_AddStringToObject(j, "balance_error", st->balance_error);
    if (known) {
        iso8601_utc(checked, when, sizeof when);
        cJSON_AddStringToObject(j, "checked_at", when);
    } else {
        cJSON_AddNullToObject(j, "checked_at");
    }
    for (size_t i = 0; i < sizeof RES / sizeof RES[0]; i++) {
        int from_tasks = 0;
        double p = price_of(&st->op, RES[i], &from_tasks);
        p = round(p * 100) / 100;
        cJSON_AddNumberToObject(price, RES[i], p);
        cJSON_AddStringToObject(source, RES[i], from_tasks ? "tasks" : "price_table");
        if (known && p > 0)
            cJSON_AddNumberToObject(left, RES[i], floor(balance / p));
    }
    cJSON_AddItemToObject(j, "price", price);
    cJSON_AddItemToObject(j, "price_source", source);
    cJSON_AddItemToObject(j, "images_left", left);
    if (r->app->taskstore) {
        cJSON_AddNumberToObject(j, "spent_today", st->spent_today);
        cJSON_AddNumberToObject(j, "spent_total", st->spent_total);
        cJSON_AddNumberToObject(j, "generations_today", (double)st->count);
    } else { /* TASK_STORE=off: nothing remembered */
        cJSON_AddNullToObject(j, "spent_today");
        cJSON_AddNullToObject(j, "spent_total");
        cJSON_AddNullToObject(j, "generations_today");
    }
    cJSON_AddNumberToObject(j, "daily_limit", (double)limit);
    iso8601_utc(tasklog_day_start(now) + 86400, when, sizeof when);
    cJSON_AddStringToObject(j, "daily_limit_resets_at", when);
    return http_json(r, 200, j);
}

static enum MHD_Result credits_counted(struct req *r)
{
    struct credits_state *st = r->state;

    if (st->op.result)
        return store_error(r, &st->op);
    st->count = st->op.count;
    st->spent_today = st->op.spent_since;
    st->spent_total = st->op.spent_total;
    taskstore_op_clear(&st->op);
    memset(&st->op, 0, sizeof st->op);
    st->op.limit = PRICE_SAMPLE;
    return handler_store_step(r, &st->op, r->app->taskstore->ops->list, credits_reply);
}

static enum MHD_Result credits_count(struct req *r)
{
    struct credits_state *st = r->state;
    memset(&st->op, 0, sizeof st->op);
    if (!r->app->taskstore)
        return credits_reply(r);
    st->op.since = tasklog_day_start(time(NULL));
    return handler_store_step(r, &st->op, r->app->taskstore->ops->count, credits_counted);
}

/* KIE's answer to GET /api/v1/chat/credit: {"code":200,"msg":"success","data":100}. */
static enum MHD_Result credits_fetched(struct req *r)
{
    struct credits_state *st = r->state;
    struct upstream_call *c = st->call;
    cJSON *j = NULL;
    cJSON *code;
    cJSON *data;

    if (c->result == ERR_TIMEOUT) {
        snprintf(st->balance_error, sizeof st->balance_error, "KIE's credit endpoint did not answer in time");
        goto out;
    }
    if (c->result) {
        snprintf(st->balance_error, sizeof st->balance_error, "KIE is unreachable: %s", c->error);
        goto out;
    }
    j = cJSON_ParseWithLength(c->response.data ? c->response.data : "", c->response.len);
    code = cJSON_GetObjectItemCaseSensitive(j, "code");
    data = cJSON_GetObjectItemCaseSensitive(j, "data");
    if (c->http_status == 200 && cJSON_IsNumber(code) && code->valuedouble == 200 && cJSON_IsNumber(data) &&
        isfinite(data->valuedouble) && data->valuedouble >= 0) {
        credits_cache_set(r->app->credits, data->valuedouble, time(NULL));
    } else {
        cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
        snprintf(st->balance_error, sizeof st->balance_error, "KIE's credit endpoint answered HTTP %ld%s%.200s",
                 c->http_status, cJSON_IsString(msg) ? ": " : "", cJSON_IsString(msg) ? msg->valuestring : "");
        log_warn("request %s: %s", r->id, st->balance_error);
    }
out:
    cJSON_Delete(j);
    upstream_call_free(st->call);
    st->call = NULL;
    return credits_count(r);
}

static void on_credit_done(struct upstream_call *c, void *arg)
{
    struct credits_state *st = arg;
    (void)c;
    http_resume(st->r);
}

enum MHD_Result h_credits(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    struct credits_state *st = calloc(1, sizeof *st);
    double balance;

    if (!st)
        return MHD_NO;
    st->r = r;
    r->state = st;
    r->state_free = credits_state_free;
    if (!cfg->kie_api_key) {
        snprintf(st->balance_error, sizeof st->balance_error, "KIE_API_KEY is not set on the server");
        return credits_count(r);
    }
    if (credits_cache_get(r->app->credits, time(NULL), CREDITS_CACHE_SECONDS, &balance, NULL))
        return credits_count(r);
    st->call = kie_call_new(cfg, "GET", "/api/v1/chat/credit", CREDIT_TIMEOUT_MS, 64 * 1024);
    if (!st->call || upstream_call_header(st->call, "Accept: application/json"))
        return MHD_NO;
    st->call->done = on_credit_done;
    st->call->arg = st;
    return http_submit(r, st->call, credits_fetched);
}
