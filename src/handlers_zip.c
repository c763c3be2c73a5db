/* handlers_zip.c - GET /results.zip?tasks=<id>,<id>,...: one ZIP of our kept
 * copies of finished results, named after the original photos.
 *
 * 1. Every id is looked up in the task store (the photo's name, its state,
 *    KIE's result URL) and in our results (a copy made before).
 * 2. Results not kept yet are kept first, at most ZIP_PARALLEL at a time, on
 *    the upstream I/O thread (asking KIE's recordInfo first when the record
 *    is not final); the connection is suspended meanwhile.
 * 3. The archive (zipstream.h: stored, CRC-32 while sending, no temporary
 *    file) is streamed from the kept files with its length known up front.
 *    What has no image (failed, unknown, still running, expired at KIE) is
 *    listed in MISSING.txt inside the ZIP instead of failing the download.
 *
 * Local storage only: in S3 mode the results are S3 objects a client
 * downloads from their stable URLs (and Lambda behind API Gateway could not
 * stream a large answer anyway); the route answers 501 there. */
#include "app.h"
#include "buf.h"
#include "config.h"
#include "err.h"
#include "handlers.h"
#include "http.h"
#include "kie.h"
#include "kiecall.h"
#include "log.h"
#include "results.h"
#include "storage.h"
#include "taskcache.h"
#include "taskstore.h"
#include "upstream.h"
#include "validate.h"
#include "zipstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ZIP_MAX_TASKS 500
#define ZIP_PARALLEL 4           /* results kept at once for one archive */
#define ZIP_BLOCK (128 * 1024)   /* bytes per read of the streamed answer */
#define ZIP_NAME_STEM 120        /* bytes of the photo's name kept in an entry name */

enum need { NEED_NONE, NEED_RECORD, NEED_KEEP };

struct zip_item {
    char id[129];
    char *photo_name;   /* from the record, or NULL */
    char *url;          /* NEED_KEEP: KIE's result URL */
    enum need need;
    char stable[200];   /* "results/<id>.<ext>" when there is an image */
    char missing[320];  /* else why not */
    struct upstream_call *call;
};

struct zip_job {
    struct req *r;
    struct app *app;
    struct zip_item *items;
    size_t n;
    pthread_mutex_t lock;
    size_t next;        /* the next item to look at for work */
    size_t running;
    size_t left;        /* items with work not finished */
};

static void zip_job_free(void *p)
{
    struct zip_job *j = p;

    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++) {
        free(j->items[i].photo_name);
        free(j->items[i].url);
        upstream_call_free(j->items[i].call);
    }
    free(j->items);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Why the task has no image: `what`, then ": detail" when there is one. */
static void set_missing(struct zip_item *it, const char *what, const char *detail)
{
    snprintf(it->missing, sizeof it->missing, "%.120s%s%.190s", what, detail ? ": " : "", detail ? detail : "");
    it->stable[0] = '\0';
}

/* ---- step 1: what each id is --------------------------------------------------- */

/* The task succeeded with KIE's result at url: keep it (step 2). */
static void need_keep(struct zip_item *it, const char *url)
{
    it->url = strdup(url);
    it->need = it->url ? NEED_KEEP : NEED_NONE;
    if (!it->url)
        set_missing(it, "out of memory", NULL);
}

/* From a finished recordInfo-shaped answer: keep it, or why there is nothing. */
static void from_answer(struct zip_item *it, cJSON *answer)
{
    cJSON *data = cJSON_GetObjectItemCaseSensitive(answer, "data");
    cJSON *state = cJSON_GetObjectItemCaseSensitive(data, "state");
    const char *url = results_first_url(data);

    if (cJSON_IsString(state) && strcmp(state->valuestring, "success") == 0 && url) {
        need_keep(it, url);
    } else if (cJSON_IsString(state) && strcmp(state->valuestring, "fail") == 0) {
        cJSON *msg = cJSON_GetObjectItemCaseSensitive(data, "failMsg");
        set_missing(it, "the task failed", cJSON_IsString(msg) ? msg->valuestring : "no reason given");
    } else {
        set_missing(it, "not finished yet, download again when it is done; state",
                    cJSON_IsString(state) ? state->valuestring : "running");
    }
}

/* The task store's record of it (sync: the local SQLite store). */
static void from_record(struct app *app, struct zip_item *it)
{
    struct taskstore_op op;
    cJSON *rec = NULL;
    cJSON *v;
    cJSON *first_url;
    char *final;

    memset(&op, 0, sizeof op);
    snprintf(op.id, sizeof op.id, "%s", it->id);
    op.now = time(NULL);
    if (app->taskstore) {
        (void)app->taskstore->ops->get(app->taskstore, &op);
        if (op.result == ERR_NOT_FOUND) {
            set_missing(it, "this server created no such task", NULL);
            goto cleanup;
        }
        if (op.result) {
            set_missing(it, "the task store could not be read", op.error);
            goto cleanup;
        }
        rec = cJSON_Parse(op.text);
        v = cJSON_GetObjectItemCaseSensitive(rec, "photo_name");
        if (cJSON_IsString(v) && photo_name_valid(v->valuestring))
            it->photo_name = strdup(v->valuestring);
    }
    if (results_find_kept(app, it->id, it->stable, sizeof it->stable))
        goto cleanup;
    final = taskcache_get_final(app->tasks, it->id);
    if (final) {
        cJSON *answer = cJSON_Parse(final);
        free(final);
        if (answer) {
            from_answer(it, answer);
            cJSON_Delete(answer);
            goto cleanup;
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(rec, "state");
    first_url = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "result_urls"), 0);
    if (cJSON_IsString(v) && strcmp(v->valuestring, "fail") == 0) {
        cJSON *msg = cJSON_GetObjectItemCaseSensitive(rec, "fail_message");
        set_missing(it, "the task failed", cJSON_IsString(msg) ? msg->valuestring : "no reason given");
    } else if (cJSON_IsString(v) && strcmp(v->valuestring, "success") == 0 && cJSON_IsString(first_url)) {
        need_keep(it, first_url->valuestring);
    } else {
        it->need = NEED_RECORD; /* not final in the record (nobody polled lately): ask KIE */
    }
cleanup:
    cJSON_Delete(rec);
    taskstore_op_clear(&op);
}

/* ---- step 2: keep what is not kept yet ---------------------------------------- */

static void start_more(struct zip_job *j);

static void item_done(struct zip_job *j)
{
    int last;

    pthread_mutex_lock(&j->lock);
    j->running--;
    last = --j->left == 0;
    pthread_mutex_unlock(&j->lock);
    if (last)
        http_resume(j->r);
    else
        start_more(j);
}

struct item_ref {
    struct zip_job *job;
    struct zip_item *item;
};

static void on_kept(const struct keep_outcome *o, void *arg)
{
    struct item_ref *ref = arg;
    struct zip_item *it = ref->item;
    struct zip_job *j = ref->job;

    free(ref);
    if (o->ok)
        snprintf(it->stable, sizeof it->stable, "%s", o->stable_name);
    else
        set_missing(it, "the result could not be kept", o->message);
    item_done(j);
}

static void keep(struct zip_job *j, struct zip_item *it)
{
    struct item_ref *ref = malloc(sizeof *ref);

    if (!ref) {
        set_missing(it, "out of memory", NULL);
        item_done(j);
        return;
    }
    ref->job = j;
    ref->item = it;
    if (!taskcache_claim_copy(j->app->tasks, it->id, 1)) {
        free(ref);
        set_missing(it, "the result is being copied right now: download again in a moment", NULL);
        item_done(j);
        return;
    }
    results_keep(j->app, it->id, it->url, on_kept, ref);
}

static void on_record(struct upstream_call *c, void *arg)
{
    struct item_ref *ref = arg;
    struct zip_item *it = ref->item;
    struct zip_job *j = ref->job;
    struct kie_outcome o;
    enum kie_transport t = kie_transport_of(c->result);

    free(ref);
    kie_map(t, c->error, j->app->cfg->kie_timeout_seconds, c->http_status, c->response.data, c->response.len, 1,
            "recordInfo", &o);
    if (kie_unknown_task(&o)) {
        set_missing(it, "KIE does not know this task (unknown or expired)", NULL);
    } else if (o.status != 200) {
        set_missing(it, "KIE could not be asked about it", o.message);
    } else {
        results_note_answer(j->app, o.json);
        from_answer(it, o.json);
    }
    kie_outcome_free(&o);
    if (it->need == NEED_KEEP) {
        keep(j, it);
        return;
    }
    item_done(j);
}

static void ask_kie(struct zip_job *j, struct zip_item *it)
{
    struct item_ref *ref = malloc(sizeof *ref);

    it->need = NEED_NONE;
    it->call = ref ? kie_record_call(j->app->cfg, it->id) : NULL;
    if (!it->call) {
        free(ref);
        set_missing(it, j->app->cfg->kie_api_key ? "out of memory" : "KIE_API_KEY is not set on the server", NULL);
        item_done(j);
        return;
    }
    ref->job = j;
    ref->item = it;
    it->call->done = on_record;
    it->call->arg = ref;
    if (upstream_submit(j->app->up, it->call)) {
        free(ref);
        set_missing(it, "the server is shutting down", NULL);
        item_done(j);
    }
}

/* Start work on items while fewer than ZIP_PARALLEL run. Work may finish
 * at once (item_done calls back in here), so items are taken under the lock
 * and started outside it. */
static void start_more(struct zip_job *j)
{
    for (;;) {
        struct zip_item *it = NULL;

        pthread_mutex_lock(&j->lock);
        while (j->running < ZIP_PARALLEL && j->next < j->n && !it) {
            struct zip_item *cand = &j->items[j->next++];
            if (cand->need != NEED_NONE) {
                it = cand;
                j->running++;
            }
        }
        pthread_mutex_unlock(&j->lock);
        if (!it)
            return;
        if (it->need == NEED_RECORD)
            ask_kie(j, it);
        else
            keep(j, it);
    }
}

/* ---- step 3: the archive ----------------------------------------------------- */

/* Drop an incomplete UTF-8 sequence at the end of s (a cut name). */
static void utf8_trim_partial(char *s)
{
    size_t n = strlen(s), lead = n;
    unsigned char c;
    size_t want;

    while (lead > 0 && n - lead < 4 && ((unsigned char)s[lead - 1] & 0xc0) == 0x80)
        lead--;
    if (lead == 0)
        return;
    c = (unsigned char)s[lead - 1];
    want = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c < 0x80) {
        if (lead != n)
            s[lead] = '\0'; /* stray continuation bytes */
        return;
    }
    if (n - (lead - 1) < want)
        s[lead - 1] = '\0';
}

/* An entry name from the photo's name: its stem, without path separators,
 * control characters or characters Windows refuses; the task id when
 * nothing is left. UTF-8 is kept (valid by photo_name_valid). */
static void entry_stem(const char *photo, const char *id, char *out, size_t cap)
{
    size_t n = 0;
    char *dot;

    for (const unsigned char *p = (const unsigned char *)(photo ? photo : ""); *p && n + 1 < cap; p++) {
        unsigned char c = *p;
        if (c < 0x20 || c == 0x7f || strchr("/\\:*?\"<>|", c))
            c = '_';
        out[n++] = (char)c;
    }
    out[n] = '\0';
    utf8_trim_partial(out);
    dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = '\0';
    while (out[0] == '.' || out[0] == ' ')
        memmove(out, out + 1, strlen(out) + 1);
    n = strlen(out);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '.'))
        out[--n] = '\0';
    if (!out[0])
        snprintf(out, cap, "%.*s", (int)(cap - 1), id);
}

static int name_taken(const struct zip_item *items, char (*names)[ZIP_NAME_STEM + 64], size_t upto,
                      const char *name)
{
    if (strcasecmp(name, "MISSING.txt") == 0)
        return 1;
    for (size_t i = 0; i < upto; i++)
        if (items[i].stable[0] && strcasecmp(names[i], name) == 0)
            return 1;
    return 0;
}

static int open_kept(void *arg, const char *key)
{
    struct storage *store = arg;
    struct storage_file f;

    if (store->ops->open_file(store, key, &f))
        return -1;
    return f.fd;
}

static ssize_t zip_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct zipstream *z = cls;
    ssize_t n;

    (void)pos; /* MHD reads in order */
    n = zipstream_read(z, buf, max);
    if (n < 0) {
        log_warn("results.zip: %s; the download is cut short", zipstream_error(z));
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    return n > 0 ? n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void zip_reader_free(void *cls)
{
    zipstream_free(cls);
}

static enum MHD_Result send_zip(struct req *r)
{
    struct zip_job *j = r->state;
    struct storage *store = r->app->store;
    struct zipstream *z = zipstream_new(j->n + 1, open_kept, store);
    char (*names)[ZIP_NAME_STEM + 64] = calloc(j->n, sizeof *names);
    struct MHD_Response *resp;
    struct buf missing;
    size_t kept = 0;
    int rc = 0;
    time_t now = time(NULL);

    buf_init(&missing, 1024 * 1024);
    if (!z || !names)
        goto oom;
    for (size_t i = 0; i < j->n && !rc; i++) {
        struct zip_item *it = &j->items[i];
        struct storage_file f;
        char stem[ZIP_NAME_STEM];
        const char *ext;

        if (!it->stable[0])
            continue;
        if (store->ops->open_file(store, it->stable, &f) || f.fd < 0) {
            set_missing(it, "the kept copy is gone", NULL);
            continue;
        }
        close(f.fd);
        ext = strrchr(it->stable, '.');
        entry_stem(it->photo_name, it->id, stem, sizeof stem);
        snprintf(names[i], sizeof names[i], "%s%s", stem, ext ? ext : "");
        for (int k = 2; name_taken(j->items, names, i, names[i]); k++)
            snprintf(names[i], sizeof names[i], "%s (%d)%s", stem, k, ext ? ext : "");
        rc = zipstream_add_file(z, names[i], it->stable, (uint64_t)f.size, f.mtime);
        kept++;
    }
    if (rc == ERR_TOO_LARGE) {
        free(names);
        zipstream_free(z);
        return http_error(r, 413, "archive_too_large",
                          "These results make more than 4 GB, the most one ZIP here can hold; ask for fewer tasks.");
    }
    if (rc)
        goto oom;
    if (kept < j->n) {
        rc = buf_appendf(&missing, "%zu of the %zu tasks asked for have no image in this archive:\n\n", j->n - kept,
                        j->n);
        for (size_t i = 0; i < j->n && !rc; i++)
            if (!j->items[i].stable[0])
                rc = buf_appendf(&missing, "%s%s%s%s: %s\n", j->items[i].id, j->items[i].photo_name ? " (" : "",
                                j->items[i].photo_name ? j->items[i].photo_name : "",
                                j->items[i].photo_name ? ")" : "", j->items[i].missing);
        if (rc || zipstream_add_data(z, "MISSING.txt", buf_str(&missing), missing.len, now))
            goto oom;
    }
    free(names);
    names = NULL;
    buf_free(&missing);
    log_info("request %s: results.zip of %zu tasks: %zu images, %llu bytes", r->id, j->n, kept,
             (unsigned long long)zipstream_size(z));
    resp = MHD_create_response_from_callback(zipstream_size(z), ZIP_BLOCK, zip_reader, z, zip_reader_free);
    if (!resp) {
        zipstream_free(z);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/zip");
    MHD_add_response_header(resp, "Content-Disposition", "attachment; filename=\"studio-results.zip\"");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    return http_send(r, 200, resp, zipstream_size(z));
oom:
    free(names);
    buf_free(&missing);
    zipstream_free(z);
    return http_error(r, 500, "internal_error", "Out of memory.");
}

/* ---- the request ------------------------------------------------------------- */

#define TASKS_FAIL(...) (*answered = http_error(r, 400, "invalid_tasks", __VA_ARGS__), 1)

/* Split "a,b,c" into the job's items (duplicates dropped, order kept): 0, or
 * 1 with the 400 in *answered. */
static int parse_tasks(struct req *r, const char *list, struct zip_job *j, enum MHD_Result *answered)
{
    const char *p = list;

    if (!list || !*list)
        return TASKS_FAIL("tasks is required: task ids separated by commas (at most %d).",
                          ZIP_MAX_TASKS);
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        struct zip_item *it;
        int dup = 0;

        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        if (len == 0 || len >= sizeof it->id)
            return TASKS_FAIL("tasks must be task ids separated by commas, none empty.");
        if (j->n == ZIP_MAX_TASKS)
            return TASKS_FAIL("At most %d tasks per archive.", ZIP_MAX_TASKS);
        it = &j->items[j->n];
        memcpy(it->id, p, len);
        it->id[len] = '\0';
        if (!task_id_valid(it->id))
            return TASKS_FAIL("\"%.64s\" is not a task id.", it->id);
        for (size_t i = 0; i < j->n && !dup; i++)
            dup = strcmp(j->items[i].id, it->id) == 0;
        if (!dup)
            j->n++;
        else
            memset(it, 0, sizeof *it);
        if (!end)
            break;
        p = end + 1;
        if (!*p)
            return TASKS_FAIL("tasks must not end with a comma.");
    }
    return 0;
}

enum MHD_Result h_results_zip(struct req *r)
{
    struct app *app = r->app;
    enum MHD_Result answered = MHD_NO;
    const char *tasks = http_query(r, "tasks");
    struct zip_job *j;
    size_t work = 0;
    size_t slots = 1; /* one item per listed id (at most ZIP_MAX_TASKS: parse_tasks refuses more) */

    if (app->store->ops->async_commit || (app->taskstore && app->taskstore->ops->async))
        return http_error(r, 501, "not_available",
                          "results.zip needs local storage; with S3 storage download each task's stable_url.");
    j = calloc(1, sizeof *j);
    if (!j)
        return MHD_NO;
    for (const char *p = tasks; p && *p && slots < ZIP_MAX_TASKS; p++)
        slots += *p == ',';
    j->items = calloc(slots, sizeof *j->items);
    if (!j->items || pthread_mutex_init(&j->lock, NULL)) {
        free(j->items);
        free(j);
        return MHD_NO;
    }
    j->r = r;
    j->app = app;
    r->state = j;
    r->state_free = zip_job_free;
    if (parse_tasks(r, tasks, j, &answered))
        return answered;
    for (size_t i = 0; i < j->n; i++) {
        from_record(app, &j->items[i]);
        work += j->items[i].need != NEED_NONE;
    }
    if (!work)
        return send_zip(r);
    /* keeping costs KIE calls and downloads: one token of the /results limit per archive */
    if (http_rate_limit(r, app->rl_results, &answered))
        return answered;
    j->left = work;
    http_suspend(r, send_zip);
    start_more(j);
    return MHD_YES;
}
