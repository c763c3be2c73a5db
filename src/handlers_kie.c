/* handlers_kie.c - POST /generate: validate, call KIE on the upstream I/O
 * thread with the connection suspended, map KIE's answer. GET /status is in
 * handlers_status.c. */
#include "app.h"
#include "config.h"
#include "err.h"
#include "generate.h"
#include "handlers.h"
#include "http.h"
#include "image.h"
#include "jsonprint.h"
#include "kie.h"
#include "kiecall.h"
#include "kieupload.h"
#include "log.h"
#include "metrics.h"
#include "sigv4.h"
#include "storage.h"
#include "taskcache.h"
#include "tasklog.h"
#include "taskstore.h"
#include "upstream.h"
#include "validate.h"
#include "timefmt.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* KIE must be able to fetch presigned inputs for a while after createTask. */
#define INPUT_URL_MIN_TTL 3600

enum MHD_Result handler_need_kie_key(struct req *r)
{
    return http_error(r, 503, "kie_not_configured",
                      "KIE_API_KEY is not set on the server: set it in the environment or .env and restart "
                      "(uploads work without it).");
}

#define NOT_PUBLIC_HELP                                                                                    \
    "KIE downloads input_url from its own servers, so it must be reachable from the internet. Three ways "  \
    "out: upload the photo to this server (POST /upload) and pass its /files/ path, which the server sends "  \
    "to KIE through KIE's file upload (KIE_UPLOAD=auto, the default); or set PUBLIC_BASE_URL to a public URL "   \
    "of this server (e.g. a tunnel: docker compose --profile tunnel up); or use S3 mode (USE_S3=1)."

/* out = a + b, or a 400 when it does not fit. */
static int copy_url(struct req *r, char *out, size_t cap, const char *a, const char *b, const char *field,
                    enum MHD_Result *answered)
{
    int n = snprintf(out, cap, "%s%s", a, b);
    if (n < 0 || (size_t)n >= cap) {
        *answered = http_error(r, 400, "invalid_input_url", "%s is too long.", field);
        return -1;
    }
    return 0;
}

/* Can KIE fetch our /files/ URLs itself? base gets the public base URL. */
static int files_public(struct req *r, char *base, size_t cap)
{
    struct url_parts u;
    http_public_base(r, base, cap);
    if (!base[0])
        return 0;
    return r->app->cfg->allow_private_input_urls || (url_parse(base, &u) == 0 && !url_host_is_private(u.host));
}

/* The stored name of one of our own files named by an absolute URL (on a
 * private host, or under our public base URL), else NULL. */
static const char *own_file(struct req *r, const char *in, const struct url_parts *u)
{
    char base[512];
    const char *p = u->path_and_query;
    size_t bl;

    if (strncmp(p, "/files/", 7) != 0 || stored_name_check(p + 7) == IMAGE_UNKNOWN)
        return NULL;
    if (url_host_is_private(u->host))
        return p + 7;
    http_public_base(r, base, sizeof base);
    bl = strlen(base);
    return bl && strncmp(in, base, bl) == 0 && in[bl] == '/' ? p + 7 : NULL;
}

/* Turn one client-given input URL into the absolute URL KIE will fetch, or,
 * for one of our own files that KIE cannot fetch from here, ask for it to be
 * pushed to KIE's file upload (*push names the file). Returns 0, or answers
 * the request with a 400 and returns -1. */
static int resolve_input(struct req *r, const char *in, const char *field, char *out, size_t cap, const char **push,
                         enum MHD_Result *answered)
{
    const struct config *cfg = r->app->cfg;
    struct storage *store = r->app->store;
    const char *name = NULL;
    struct url_parts u;
    size_t plen = cfg->s3_prefix ? strlen(cfg->s3_prefix) : 0;
    int local = strcmp(store->ops->name, "local") == 0;

    *push = NULL;
    out[0] = '\0';
    if (strncmp(in, "/files/", 7) == 0)
        name = in + 7;
    else if (cfg->use_s3 && plen && strncmp(in, cfg->s3_prefix, plen) == 0)
        name = in + plen; /* an S3 key we handed out */
    else if (local && url_parse(in, &u) == 0)
        name = own_file(r, in, &u);
    if (name) {
        char base[512];
        char rel[2048];
        struct storage_file f;
        if (stored_name_check(name) == IMAGE_UNKNOWN) {
            *answered = http_error(r, 400, "invalid_input_url", "%s names no file this server stored.", field);
            return -1;
        }
        if (local) {
            /* ours, so it must be here (KIE would get a 404 later) */
            if (store->ops->open_file(store, name, &f)) {
                *answered = http_error(r, 400, "invalid_input_url", "%s names no file this server stored "
                                       "(expired, or from another server?).", field);
                return -1;
            }
            close(f.fd);
            if (cfg->kie_upload == KIE_UPLOAD_ALWAYS ||
                (cfg->kie_upload == KIE_UPLOAD_AUTO && !files_public(r, base, sizeof base))) {
                *push = name;
                return 0;
            }
        }
        if (store->ops->file_url(store, name, INPUT_URL_MIN_TTL, rel, sizeof rel, NULL)) {
            *answered = http_error(r, 500, "internal_error", "Could not build a URL for %s.", name);
            return -1;
        }
        if (strncmp(rel, "http", 4) == 0) /* S3: presigned or public */
            return copy_url(r, out, cap, rel, "", field, answered);
        http_public_base(r, base, sizeof base);
        if (!base[0] || !files_public(r, base, sizeof base)) {
            *answered = http_error(r, 400, "input_url_not_public",
                                   "%s is a file on this server, which has no public URL and KIE_UPLOAD=never. "
                                   NOT_PUBLIC_HELP, field);
            return -1;
        }
        return copy_url(r, out, cap, base, rel, field, answered);
    }
    if (url_parse(in, &u)) {
        *answered = http_error(r, 400, "invalid_input_url",
                               "%s must be an absolute http(s) URL or a /files/<name> path from /upload.", field);
        return -1;
    }
    if (!cfg->allow_private_input_urls && url_host_is_private(u.host)) {
        *answered = http_error(r, 400, "input_url_not_public",
                               "%s points at %s, a local or private address that KIE cannot reach. " NOT_PUBLIC_HELP,
                               field, u.host);
        return -1;
    }
    return copy_url(r, out, cap, in, "", field, answered);
}

/* ---- POST /generate ------------------------------------------------------------
 * parse -> resolve every input -> [Idempotency-Key: claim it in the task
 * store; a replay or conflict is answered here] -> daily cap -> known balance
 * -> rate limit -> push our own files KIE cannot fetch to KIE's file upload,
 * one after the other (each on the I/O thread, suspended; a file pushed before
 * is reused from app->pushed) -> createTask -> record the task -> store the
 * key's answer -> answer. Store calls that may wait (S3) suspend the request;
 * the local store answers at once. */

struct gen_state {
    struct req *r;
    struct generate_request g;
    char urls[MAX_INPUT_URLS][2048];
    const char *push[MAX_INPUT_URLS]; /* stored names still to push (point into g) */
    size_t pushing;                   /* the index being pushed */
    struct upstream_call *call;
    struct taskstore_op op;           /* the store call in flight */
    char key[256];                    /* Idempotency-Key, "" when none */
    char hash[65];                    /* hex SHA-256 of the body */
    int claimed;                      /* we own the key: release it unless finished */
    int finished;
    int admitted;                     /* counted in app->admitting */
    char *answer;                     /* our answer to a created task */
    char *record;
};

/* Give the claimed key up: this request fails (or its client went away), so
 * a retry with the key may try again. Called before an error is answered, so
 * the retry never finds the key still taken. */
static void release_key(struct gen_state *st)
{
    struct app *app = st->r->app;
    struct taskstore_op *op;

    if (!st->claimed || st->finished)
        return;
    st->claimed = 0;
    op = calloc(1, sizeof *op);
    if (!op)
        return; /* it goes stale after IDEMPOTENCY_STALE_SECONDS */
    snprintf(op->key, sizeof op->key, "%s", st->key);
    op->now = time(NULL);
    tasklog_detached(app, app->taskstore->ops->release, op);
}

static void gen_state_free(void *p)
{
    struct gen_state *st = p;
    struct app *app;

    if (!st)
        return;
    app = st->r->app;
    release_key(st);
    if (st->admitted)
        atomic_fetch_sub(&app->admitting, 1);
    taskstore_op_clear(&st->op);
    generate_request_free(&st->g);
    upstream_call_free(st->call);
    free(st->answer);
    free(st->record);
    free(st);
}

/* Run store call `fn` on st->op, then `cont` (see handlers.h). */
static enum MHD_Result store_step(struct req *r, int (*fn)(struct taskstore *, struct taskstore_op *),
                                  enum MHD_Result (*cont)(struct req *r))
{
    struct gen_state *st = r->state;
    return handler_store_step(r, &st->op, fn, cont);
}

static enum MHD_Result store_unavailable(struct req *r)
{
    struct gen_state *st = r->state;
    return http_error_retry(r, 503, "task_store_unavailable", 5,
                            "The task store could not be read or written (%s); nothing was sent to KIE. "
                            "Try again in a moment.", st->op.error[0] ? st->op.error : "error");
}

static enum MHD_Result gen_finished(struct req *r)
{
    struct gen_state *st = r->state;
    char *text = st->answer;

    if (st->op.result)
        log_warn("request %s: the answer of Idempotency-Key could not be stored: %s", r->id, st->op.error);
    else
        st->finished = 1;
    st->answer = NULL;
    return http_json_text(r, 200, text, NULL, NULL);
}

static enum MHD_Result gen_recorded(struct req *r)
{
    struct gen_state *st = r->state;

    if (st->op.result) {
        log_warn("request %s: task %s was created but its record could not be stored: %s", r->id, st->op.id,
                 st->op.error);
    } else {
        /* a callback or poll that came while the record was being written
         * found nothing to update: apply the task's final answer now */
        char *final = taskcache_get_final(r->app->tasks, st->op.id);
        cJSON *answer = final ? cJSON_Parse(final) : NULL;
        free(final);
        if (answer)
            tasklog_note_answer(r->app, answer);
        cJSON_Delete(answer);
    }
    if (!st->claimed) {
        char *text = st->answer;
        st->answer = NULL;
        return http_json_text(r, 200, text, NULL, NULL);
    }
    snprintf(st->op.task_id, sizeof st->op.task_id, "%s", st->op.id);
    st->op.record = NULL;
    st->op.answer = st->answer;
    st->op.answer_status = 200;
    return store_step(r, r->app->taskstore->ops->finish, gen_finished);
}

static enum MHD_Result gen_created(struct req *r)
{
    struct gen_state *st = r->state;
    struct upstream_call *c = st->call;
    struct kie_outcome o;
    enum kie_transport t = kie_transport_of(c->result);
    enum MHD_Result ret;
    const cJSON *id;
    char task_id[129] = "";
    struct timespec clock_now;
    time_t now;

    clock_gettime(CLOCK_REALTIME, &clock_now);
    now = clock_now.tv_sec;
    kie_map(t, c->error, r->app->cfg->kie_timeout_seconds, c->http_status, c->response.data, c->response.len, 0,
            "createTask", &o);
    if (o.status != 200) {
        cJSON *extra = kie_error_extra(&o);
        if (o.status == 402)
            credits_cache_set(r->app->credits, 0, now); /* KIE says so: known too low */
        log_warn("request %s: KIE createTask failed: HTTP %ld, %s", r->id, c->http_status, c->result ? c->error : o.code);
        release_key(st);
        ret = http_error_extra(r, o.status, o.code, extra, "%s", o.message);
        kie_outcome_free(&o);
        return ret; /* the key is released by gen_state_free */
    }
    id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o.json, "data"), "taskId");
    if (cJSON_IsString(id) && task_id_valid(id->valuestring))
        snprintf(task_id, sizeof task_id, "%s", id->valuestring);
    st->answer = jsonprint_consume(o.json);
    kie_outcome_free(&o);
    if (!st->answer)
        return MHD_NO;
    if (!task_id[0]) {
        char *text = st->answer;
        st->answer = NULL;
        return http_json_text(r, 200, text, NULL, NULL); /* kie_map only passes a valid taskId; be safe */
    }
    taskcache_note_created(r->app->tasks, task_id, now);
    if (st->g.keep_result)
        taskcache_set_keep(r->app->tasks, task_id);
    {
        const char *sent[MAX_INPUT_URLS];
        for (size_t i = 0; i < st->g.n_input_urls; i++)
            sent[i] = st->urls[i];
        st->record = tasklog_new_record(&st->g, sent, task_id, st->key[0] ? st->key : NULL, st->hash, now);
    }
    if (!r->app->taskstore) { /* TASK_STORE=off */
        char *text = st->answer;
        st->answer = NULL;
        log_info("request %s: KIE task %s created", r->id, task_id);
        metrics_add(r->app->metrics, M_TASKS_CREATED, 1);
        return http_json_text(r, 200, text, NULL, NULL);
    }
    taskstore_op_clear(&st->op);
    memset(&st->op, 0, sizeof st->op);
    snprintf(st->op.id, sizeof st->op.id, "%s", task_id);
    snprintf(st->op.key, sizeof st->op.key, "%s", st->key);
    snprintf(st->op.hash, sizeof st->op.hash, "%s", st->hash);
    if (!st->record)
        return MHD_NO;
    st->op.record = st->record;
    st->op.created = now;
    st->op.created_ms = (long long)now * 1000 + clock_now.tv_nsec / 1000000;
    st->op.credits = -1;
    upstream_call_free(st->call);
    st->call = NULL;
    if (st->admitted) {
        /* from now on the store counts it */
        atomic_fetch_sub(&r->app->admitting, 1);
        st->admitted = 0;
    }
    log_info("request %s: KIE task %s created", r->id, task_id);
    metrics_add(r->app->metrics, M_TASKS_CREATED, 1);
    return store_step(r, r->app->taskstore->ops->put, gen_recorded);
}

static void on_created(struct upstream_call *c, void *arg)
{
    struct gen_state *st = arg;
    (void)c;
    http_resume(st->r);
}

static enum MHD_Result create_task(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    struct gen_state *st = r->state;
    const char *url_ptrs[MAX_INPUT_URLS];
    struct kie_input in;
    char *text;
    struct upstream_call *c;
    char base[512];
    char callback[800];

    for (size_t i = 0; i < st->g.n_input_urls; i++)
        url_ptrs[i] = st->urls[i];
    memset(&in, 0, sizeof in);
    in.model = cfg->kie_model;
    in.input_urls = url_ptrs;
    in.n_input_urls = st->g.n_input_urls;
    in.prompt = st->g.prompt;
    in.aspect_ratio = st->g.aspect_ratio;
    in.resolution = st->g.resolution;
    /* KIE calls us back when it knows where we are; polling keeps working */
    http_public_base(r, base, sizeof base);
    if (base[0]) {
        snprintf(callback, sizeof callback, "%s/kie/callback?token=%s", base, r->app->callback_secret);
        in.callback_url = callback;
    }
    text = kie_create_body(&in);
    if (!text)
        return MHD_NO;
    c = kie_call_new(cfg, "POST", "/api/v1/jobs/createTask", cfg->kie_timeout_seconds * 1000, MAX_UPSTREAM_RESPONSE);
    if (!c) {
        free(text);
        return MHD_NO;
    }
    upstream_call_body(c, text, strlen(text));
    upstream_call_free(st->call);
    st->call = c;
    if (upstream_call_header(c, "Accept: application/json") ||
        upstream_call_header(c, "Content-Type: application/json"))
        return http_error(r, 500, "internal_error", "Out of memory.");
    c->done = on_created;
    c->arg = st;
    return http_submit(r, c, gen_created);
}

static enum MHD_Result push_next(struct req *r);

static void on_push_done(struct upstream_call *c, void *arg)
{
    struct gen_state *st = arg;
    (void)c;
    http_resume(st->r);
}

static enum MHD_Result push_done(struct req *r)
{
    struct gen_state *st = r->state;
    size_t i = st->pushing;
    unsigned status;
    char code[48];
    char msg[512];

    if (kieupload_parse(st->call, r->app->cfg->kie_timeout_seconds, st->urls[i], sizeof st->urls[i], &status, code,
                        sizeof code, msg, sizeof msg)) {
        log_warn("request %s: KIE file upload of %s failed: HTTP %ld, %s", r->id, st->push[i], st->call->http_status,
                 st->call->result ? st->call->error : code);
        release_key(st);
        return http_error(r, status, code, "%s", msg);
    }
    log_info("request %s: %s pushed to KIE's file upload", r->id, st->push[i]);
    kieupload_remember(r->app->pushed, st->push[i], st->urls[i], time(NULL));
    upstream_call_free(st->call);
    st->call = NULL;
    st->push[i] = NULL;
    return push_next(r);
}

/* Read a stored image (at most KIE's limit) into memory. */
static char *read_stored(struct storage *store, const char *name, size_t *len)
{
    struct storage_file f;
    char *data = NULL;
    size_t got = 0;

    if (store->ops->open_file(store, name, &f))
        return NULL;
    if (f.fd < 0 || f.size <= 0 || f.size > IMAGE_KIE_MAX_BYTES)
        goto out;
    data = malloc((size_t)f.size);
    while (data && got < (size_t)f.size) {
        ssize_t n = read(f.fd, data + got, (size_t)f.size - got);
        if (n <= 0) {
            free(data);
            data = NULL;
            break;
        }
        got += (size_t)n;
    }
out:
    if (f.fd >= 0)
        close(f.fd);
    *len = got;
    return data;
}

static enum MHD_Result push_next(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    struct gen_state *st = r->state;
    time_t now = time(NULL);

    for (size_t i = 0; i < st->g.n_input_urls; i++) {
        char *data;
        size_t len = 0;
        if (!st->push[i])
            continue;
        if (kieupload_lookup(r->app->pushed, st->push[i], now, st->urls[i], sizeof st->urls[i])) {
            st->push[i] = NULL; /* pushed before: reuse */
            continue;
        }
        data = read_stored(r->app->store, st->push[i], &len);
        if (!data) {
            release_key(st);
            return http_error(r, 400, "invalid_input_url", "%s could not be read on this server.", st->push[i]);
        }
        upstream_call_free(st->call);
        st->call = kieupload_call(cfg->kie_upload_base_url, cfg->kie_api_key, st->push[i],
                                  image_mime(stored_name_check(st->push[i])), data, len,
                                  cfg->kie_timeout_seconds * 1000);
        free(data);
        if (!st->call)
            return MHD_NO;
        st->pushing = i;
        st->call->done = on_push_done;
        st->call->arg = st;
        return http_submit(r, st->call, push_done);
    }
    return create_task(r);
}

/* The balance is known to be too low for one image: 402 before calling KIE. */
static int too_poor(struct req *r, enum MHD_Result *answered)
{
    struct gen_state *st = r->state;
    double balance;
    double price = tasklog_list_price(st->g.resolution);

    if (!credits_cache_get(r->app->credits, time(NULL), CREDITS_CACHE_SECONDS, &balance, NULL) || balance >= price)
        return 0;
    release_key(st);
    *answered = http_error(r, 402, "insufficient_credits",
                           "Your KIE balance is %g credits; one image at %s costs about %g. Top up at "
                           "https://kie.ai/billing (nothing was sent to KIE).", balance, st->g.resolution, price);
    return 1;
}

static enum MHD_Result gen_admit_rest(struct req *r)
{
    struct gen_state *st = r->state;
    enum MHD_Result answered = MHD_NO;

    if (too_poor(r, &answered))
        return answered;
    /* valid and bound for KIE: only now does it count against the rate limit */
    if (http_rate_limit(r, r->app->rl_generate, &answered)) {
        release_key(st); /* (the 429 is queued, not sent yet) */
        return answered;
    }
    atomic_fetch_add(&r->app->admitting, 1);
    st->admitted = 1;
    return push_next(r);
}

static enum MHD_Result gen_counted(struct req *r)
{
    struct gen_state *st = r->state;
    long limit = r->app->cfg->daily_generation_limit;
    time_t now = time(NULL);
    time_t reset = tasklog_day_start(now) + 86400;

    if (st->op.result) {
        release_key(st);
        return store_unavailable(r);
    }
    if (st->op.count + atomic_load(&r->app->admitting) >= limit) {
        char when[32];
        cJSON *extra = cJSON_CreateObject();
        iso8601_utc(reset, when, sizeof when);
        if (extra)
            cJSON_AddStringToObject(extra, "resets_at", when);
        release_key(st);
        return http_error_retry_extra(r, 429, "daily_limit_reached", (long)(reset - now), extra,
                                      "This server's limit of %ld generations per day (DAILY_GENERATION_LIMIT) is "
                                      "reached; it resets at %s (midnight UTC).", limit, when);
    }
    return gen_admit_rest(r);
}

static enum MHD_Result gen_admit(struct req *r)
{
    struct gen_state *st = r->state;

    if (r->app->cfg->daily_generation_limit <= 0)
        return gen_admit_rest(r);
    taskstore_op_clear(&st->op);
    st->op.since = tasklog_day_start(time(NULL));
    st->op.count_only = 1; /* the cap needs no credit sums (on S3 they list every credits marker) */
    return store_step(r, r->app->taskstore->ops->count, gen_counted);
}

static enum MHD_Result gen_claimed(struct req *r)
{
    struct gen_state *st = r->state;
    char *text;

    switch (st->op.result) {
    case TS_CLAIMED:
        st->claimed = 1;
        return gen_admit(r);
    case TS_REPLAY:
        text = st->op.text;
        st->op.text = NULL;
        log_info("request %s: Idempotency-Key replayed (no KIE call)", r->id);
        metrics_add(r->app->metrics, M_IDEMPOTENT_REPLAYS, 1);
        return http_json_text(r, (unsigned)(st->op.answer_status ? st->op.answer_status : 200), text,
                              "Idempotent-Replayed", "true");
    case TS_MISMATCH:
        return http_error(r, 422, "idempotency_key_reused",
                          "This Idempotency-Key was used with a different request body in the last 24 hours: use "
                          "a new key for a new request.");
    case TS_BUSY:
        return http_error_retry(r, 409, "request_in_progress", 1,
                                "A request with this Idempotency-Key is still being processed: retry in a moment "
                                "to get its answer.");
    default:
        return store_unavailable(r);
    }
}

enum MHD_Result h_generate(struct req *r)
{
    const struct config *cfg = r->app->cfg;
    enum MHD_Result answered = MHD_NO;
    struct gen_state *st;
    const char *key = http_header(r, "Idempotency-Key");
    char code[48];
    char msg[512];

    if (!cfg->kie_api_key)
        return handler_need_kie_key(r);
    st = calloc(1, sizeof *st);
    if (!st)
        return MHD_NO;
    st->r = r;
    r->state = st;
    r->state_free = gen_state_free;
    if (key && !taskstore_key_valid(key))
        return http_error(r, 400, "invalid_idempotency_key",
                          "Idempotency-Key must be 1-255 printable ASCII characters (e.g. a UUID).");
    if (generate_parse(buf_str(&r->body), r->body.len, &st->g, code, sizeof code, msg, sizeof msg))
        return http_error(r, 400, code, "%s", msg);
    for (size_t i = 0; i < st->g.n_input_urls; i++)
        if (resolve_input(r, st->g.input_urls[i], st->g.n_input_urls > 1 ? "an input_urls entry" : "input_url",
                          st->urls[i], sizeof st->urls[i], &st->push[i], &answered))
            return answered;
    sigv4_sha256_hex(buf_str(&r->body), r->body.len, st->hash);
    if (!key)
        return gen_admit(r);
    if (!r->app->taskstore)
        return http_error(r, 503, "task_store_off",
                          "This server keeps no task store (TASK_STORE=off), so it cannot honour Idempotency-Key: "
                          "send the request without it, or set TASK_STORE=auto.");
    snprintf(st->key, sizeof st->key, "%s", key);
    snprintf(st->op.key, sizeof st->op.key, "%s", key);
    snprintf(st->op.hash, sizeof st->op.hash, "%s", st->hash);
    return store_step(r, r->app->taskstore->ops->claim, gen_claimed);
}
