/* tasklog.c - see tasklog.h. */
#include "tasklog.h"
#include "app.h"
#include "err.h"
#include "generate.h"
#include "log.h"
#include "metrics.h"
#include "taskcache.h"
#include "taskstore.h"
#include "validate.h"
#include "timefmt.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

time_t tasklog_day_start(time_t now)
{
    return now - now % 86400;
}

double tasklog_list_price(const char *resolution)
{
    /* KIE's price table for flux-2 pro image-to-image (credits per image) */
    return resolution && strcmp(resolution, "2K") == 0 ? 7 : 5;
}

char *tasklog_new_record(const struct generate_request *g, const char *const *sent_urls, const char *task_id,
                         const char *idempotency_key, const char *request_hash, time_t now)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *given;
    cJSON *sent;
    char when[32];
    char *text = NULL;

    if (!j)
        goto out;
    iso8601_utc(now, when, sizeof when);
    cJSON_AddStringToObject(j, "id", task_id);
    cJSON_AddStringToObject(j, "created_at", when);
    cJSON_AddStringToObject(j, "updated_at", when);
    cJSON_AddStringToObject(j, "state", "waiting");
    cJSON_AddStringToObject(j, "prompt", g->prompt);
    cJSON_AddStringToObject(j, "aspect_ratio", g->aspect_ratio);
    cJSON_AddStringToObject(j, "resolution", g->resolution);
    given = cJSON_AddArrayToObject(j, "input_urls");
    sent = cJSON_AddArrayToObject(j, "sent_input_urls");
    if (!given || !sent)
        goto out;
    for (size_t i = 0; i < g->n_input_urls; i++) {
        cJSON_AddItemToArray(given, cJSON_CreateString(g->input_urls[i]));
        cJSON_AddItemToArray(sent, cJSON_CreateString(sent_urls[i]));
    }
    cJSON_AddArrayToObject(j, "result_urls");
    cJSON_AddNullToObject(j, "stable_url");
    if (g->n_input_urls && strncmp(g->input_urls[0], "/files/", 7) == 0)
        cJSON_AddStringToObject(j, "thumbnail_url", g->input_urls[0]);
    else
        cJSON_AddNullToObject(j, "thumbnail_url");
    cJSON_AddNullToObject(j, "credits");
    cJSON_AddNullToObject(j, "cost_time");
    cJSON_AddNullToObject(j, "fail_code");
    cJSON_AddNullToObject(j, "fail_message");
    if (idempotency_key)
        cJSON_AddStringToObject(j, "idempotency_key", idempotency_key);
    else
        cJSON_AddNullToObject(j, "idempotency_key");
    cJSON_AddStringToObject(j, "request_hash", request_hash);
    cJSON_AddBoolToObject(j, "keep_result", g->keep_result);
    if (g->photo_name)
        cJSON_AddStringToObject(j, "photo_name", g->photo_name);
    else
        cJSON_AddNullToObject(j, "photo_name");
    text = cJSON_PrintUnformatted(j);
out:
    cJSON_Delete(j);
    return text;
}

/* ---- detached store operations ------------------------------------------------ */

static void detached_done(struct taskstore_op *op, void *arg)
{
    (void)arg;
    taskstore_op_clear(op);
    free(op);
}

void tasklog_detached(struct app *app, int (*fn)(struct taskstore *, struct taskstore_op *), struct taskstore_op *op)
{
    op->done = detached_done;
    op->arg = NULL;
    if (fn(app->taskstore, op) != TASKSTORE_PENDING)
        detached_done(op, NULL);
}

/* ---- updates from KIE's answers ------------------------------------------------
 * An update reads the record, patches it and writes it back. Two at once for
 * one task could lose one (both read the old record), so they run one after
 * the other through one queue; a finished task's record never goes back to a
 * running state (a late poll answer). */

struct update {
    struct app *app;
    cJSON *patch; /* the fields to set */
    struct taskstore_op op;
    char *record; /* the put's text */
    struct update *next;
};

struct tasklog_queue {
    pthread_mutex_t lock;
    struct update *head;
    struct update *tail;
    int busy; /* an update is running */
};

struct tasklog_queue *tasklog_queue_new(void)
{
    struct tasklog_queue *q = calloc(1, sizeof *q);
    if (q)
        pthread_mutex_init(&q->lock, NULL);
    return q;
}

static void update_free(struct update *u)
{
    taskstore_op_clear(&u->op);
    cJSON_Delete(u->patch);
    free(u->record);
    free(u);
}

void tasklog_queue_free(struct tasklog_queue *q)
{
    if (!q)
        return;
    while (q->head) {
        struct update *u = q->head;
        q->head = u->next;
        update_free(u);
    }
    pthread_mutex_destroy(&q->lock);
    free(q);
}

/* The next queued update, or NULL (and the queue is idle). */
static struct update *next_or_idle(struct tasklog_queue *q)
{
    struct update *u;
    pthread_mutex_lock(&q->lock);
    u = q->head;
    if (u) {
        q->head = u->next;
        if (!q->head)
            q->tail = NULL;
    } else {
        q->busy = 0;
    }
    pthread_mutex_unlock(&q->lock);
    return u;
}

static int update_run(struct update *u);

/* Run u and what is queued after it until one has to wait (S3). */
static void pump(struct tasklog_queue *q, struct update *u)
{
    while (u) {
        if (update_run(u))
            return; /* its completion pumps on */
        u = next_or_idle(q);
    }
}

static void update_put_done(struct taskstore_op *op, void *arg)
{
    struct update *u = arg;
    struct tasklog_queue *q = u->app->updates;
    (void)op;
    update_free(u);
    pump(q, next_or_idle(q));
}

/* Set rec.name = v (taken), in place when it exists so the order stays. */
static void set_member(cJSON *rec, const char *name, cJSON *v)
{
    if (!v)
        return;
    if (cJSON_GetObjectItemCaseSensitive(rec, name))
        cJSON_ReplaceItemInObjectCaseSensitive(rec, name, v);
    else
        cJSON_AddItemToObject(rec, name, v);
}

static int is_final(const cJSON *state)
{
    return cJSON_IsString(state) && (strcmp(state->valuestring, "success") == 0 || strcmp(state->valuestring, "fail") == 0);
}

/* The record is read: patch and write it. 1 when the write is pending, 0
 * when u is finished (and freed). */
static int update_apply(struct update *u)
{
    cJSON *rec = u->op.result == 0 && u->op.text ? cJSON_Parse(u->op.text) : NULL;
    cJSON *p;
    cJSON *created;
    cJSON *credits;
    double before = -1;
    char when[32];

    if (!rec) {
        if (u->op.result && u->op.result != ERR_NOT_FOUND)
            log_warn("tasks: could not read the record of %s: %s", u->op.id, u->op.error);
        /* ours, and its record still being written (a callback can beat the
         * S3 PUT): forget what we "wrote", so the next answer tries again;
         * the creating request replays the final answer once its put is done */
        if (u->op.result == ERR_NOT_FOUND &&
            taskcache_created_within(u->app->tasks, u->op.id, u->op.now, TASK_NEW_GRACE_SECONDS))
            (void)taskcache_changed(u->app->tasks, u->op.id, "");
        update_free(u); /* not a task this server created (or the store failed): nothing to update */
        return 0;
    }
    if (is_final(cJSON_GetObjectItemCaseSensitive(rec, "state")) &&
        !is_final(cJSON_GetObjectItemCaseSensitive(u->patch, "state"))) {
        cJSON_Delete(rec); /* a late answer from before the task finished */
        update_free(u);
        return 0;
    }
    credits = cJSON_GetObjectItemCaseSensitive(rec, "credits");
    if (cJSON_IsNumber(credits))
        before = credits->valuedouble;
    {
        /* a task of ours finishing: counted once, when its record first says so */
        const cJSON *now_state = cJSON_GetObjectItemCaseSensitive(u->patch, "state");
        if (!is_final(cJSON_GetObjectItemCaseSensitive(rec, "state")) && is_final(now_state))
            metrics_add(u->app->metrics, strcmp(now_state->valuestring, "success") == 0 ? M_TASKS_SUCCEEDED
                                                                                      : M_TASKS_FAILED, 1);
    }
    cJSON_ArrayForEach(p, u->patch)
        set_member(rec, p->string, cJSON_Duplicate(p, 1));
    iso8601_utc(u->op.now, when, sizeof when);
    set_member(rec, "updated_at", cJSON_CreateString(when));
    credits = cJSON_GetObjectItemCaseSensitive(rec, "credits");
    created = cJSON_GetObjectItemCaseSensitive(rec, "created_at");
    u->record = cJSON_PrintUnformatted(rec);
    taskstore_op_clear(&u->op);
    u->op.record = u->record;
    u->op.credits = cJSON_IsNumber(credits) ? credits->valuedouble : -1;
    u->op.created = u->op.now;
    if (cJSON_IsString(created)) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        if (strptime(created->valuestring, "%Y-%m-%dT%H:%M:%SZ", &tm))
            u->op.created = timegm(&tm);
    }
    if (before < 0 && u->op.credits >= 0) {
        credits_cache_spend(u->app->credits, u->op.credits);
        metrics_add_credits(u->app->metrics, u->op.credits);
    }
    cJSON_Delete(rec);
    if (!u->record) {
        update_free(u);
        return 0;
    }
    u->op.done = update_put_done;
    u->op.arg = u;
    if (u->app->taskstore->ops->put(u->app->taskstore, &u->op) == TASKSTORE_PENDING)
        return 1;
    update_free(u);
    return 0;
}

static void update_got(struct taskstore_op *op, void *arg)
{
    struct update *u = arg;
    struct tasklog_queue *q = u->app->updates;
    (void)op;
    if (!update_apply(u))
        pump(q, next_or_idle(q));
}

/* Start u: 1 when it goes on asynchronously, 0 when finished (and freed). */
static int update_run(struct update *u)
{
    u->op.now = time(NULL);
    u->op.done = update_got;
    u->op.arg = u;
    if (u->app->taskstore->ops->get(u->app->taskstore, &u->op) == TASKSTORE_PENDING)
        return 1;
    return update_apply(u);
}

static void start_update(struct app *app, const char *task_id, cJSON *patch)
{
    struct tasklog_queue *q = app->updates;
    struct update *u = calloc(1, sizeof *u);
    int run;

    if (!u || !q) {
        cJSON_Delete(patch);
        free(u);
        return;
    }
    u->app = app;
    u->patch = patch;
    snprintf(u->op.id, sizeof u->op.id, "%s", task_id);
    pthread_mutex_lock(&q->lock);
    run = !q->busy;
    if (run) {
        q->busy = 1;
    } else {
        if (q->tail)
            q->tail->next = u;
        else
            q->head = u;
        q->tail = u;
    }
    pthread_mutex_unlock(&q->lock);
    if (run)
        pump(q, u);
}

static void copy_member(cJSON *patch, const char *to, const cJSON *from)
{
    if (!from || cJSON_IsNull(from))
        return;
    if (cJSON_IsString(from) && !from->valuestring[0])
        cJSON_AddNullToObject(patch, to);
    else
        cJSON_AddItemToObject(patch, to, cJSON_Duplicate(from, 1));
}

void tasklog_note_answer(struct app *app, const cJSON *answer)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(answer, "data");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(data, "taskId");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(data, "state");
    const cJSON *urls = cJSON_GetObjectItemCaseSensitive(data, "resultUrls");
    const cJSON *credits = cJSON_GetObjectItemCaseSensitive(data, "creditsConsumed");
    const cJSON *stable = cJSON_GetObjectItemCaseSensitive(data, "stable_url");
    cJSON *patch;
    char fp[72];

    if (!app->taskstore || !cJSON_IsString(id) || !task_id_valid(id->valuestring) || !cJSON_IsString(state))
        return;
    snprintf(fp, sizeof fp, "%.16s|%d|%.3f|%d", state->valuestring, cJSON_GetArraySize(urls),
             cJSON_IsNumber(credits) ? credits->valuedouble : -1.0, cJSON_IsString(stable));
    if (!taskcache_changed(app->tasks, id->valuestring, fp))
        return; /* nothing new since we last wrote it */
    patch = cJSON_CreateObject();
    if (!patch)
        return;
    cJSON_AddStringToObject(patch, "state", state->valuestring);
    if (cJSON_IsArray(urls))
        copy_member(patch, "result_urls", urls);
    if (cJSON_IsNumber(credits) && isfinite(credits->valuedouble) && credits->valuedouble >= 0)
        copy_member(patch, "credits", credits);
    copy_member(patch, "cost_time", cJSON_GetObjectItemCaseSensitive(data, "costTime"));
    copy_member(patch, "fail_code", cJSON_GetObjectItemCaseSensitive(data, "failCode"));
    copy_member(patch, "fail_message", cJSON_GetObjectItemCaseSensitive(data, "failMsg"));
    if (cJSON_IsString(stable)) { /* kept unsigned: signed afresh whenever answered */
        char path[200];
        snprintf(path, sizeof path, "/results/%s", id->valuestring);
        cJSON_AddStringToObject(patch, "stable_url", path);
    }
    start_update(app, id->valuestring, patch);
}

void tasklog_note_stable(struct app *app, const char *task_id, const char *stable_url)
{
    cJSON *patch;

    if (!app->taskstore)
        return;
    patch = cJSON_CreateObject();
    if (!patch)
        return;
    cJSON_AddStringToObject(patch, "stable_url", stable_url);
    start_update(app, task_id, patch);
}

/* ---- the credit balance -------------------------------------------------------- */

struct credits_cache {
    pthread_mutex_t lock;
    int known;
    double balance;
    time_t checked;
};

struct credits_cache *credits_cache_new(void)
{
    struct credits_cache *c = calloc(1, sizeof *c);
    if (c)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

void credits_cache_free(struct credits_cache *c)
{
    if (c) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

int credits_cache_get(struct credits_cache *c, time_t now, long max_age, double *balance, time_t *checked)
{
    int ok;
    if (!c)
        return 0;
    pthread_mutex_lock(&c->lock);
    ok = c->known && now - c->checked <= max_age && now >= c->checked;
    if (ok) {
        *balance = c->balance;
        if (checked)
            *checked = c->checked;
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

void credits_cache_set(struct credits_cache *c, double balance, time_t now)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->known = 1;
    c->balance = balance;
    c->checked = now;
    pthread_mutex_unlock(&c->lock);
}

void credits_cache_spend(struct credits_cache *c, double credits)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if (c->known)
        c->balance = c->balance > credits ? c->balance - credits : 0;
    pthread_mutex_unlock(&c->lock);
}
