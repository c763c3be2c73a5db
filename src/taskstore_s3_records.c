/* taskstore_s3_records.c - the S3 task store's records (see taskstore_s3.h):
 * get, put (the record and, the first time, its index and credits markers)
 * and list (a page of the index, then the records it names). */
#include "taskstore_s3.h"
#include "err.h"
#include "log.h"
#include "upstream.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TS3_RECORD_MAX (256 * 1024) /* a record, stored or read back */
#define TS3_PARALLEL 8              /* record GETs of one list in flight at once */
#define TS3_LIST_PAGES 10           /* pages one list reads past keys it skips */

/* ---- get ------------------------------------------------------------------- */

static void on_get(struct upstream_call *c, void *arg)
{
    struct ts3_job *j = arg;
    if (ts3_answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            char *text = buf_take(&c->response);
            j->op->text = text ? text : strdup("");
            if (!j->op->text)
                ts3_job_error(j, ERR_NOMEM, "out of memory");
        } else if (ts3_absent(c)) {
            ts3_job_error(j, ERR_NOT_FOUND, "no task %s", j->op->id);
        } else {
            ts3_refused(j, c, j->key);
        }
    }
    upstream_call_free(c);
    ts3_job_done(j);
}

int ts3_get(struct taskstore *st, struct taskstore_op *op)
{
    struct ts3_job *j = ts3_job_new(st, op, sizeof *j, NULL);
    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!ts3_valid_id(op->id))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid task id");
    if (ts3_make_key(j->s, j->key, sizeof j->key, "r/%s.json", op->id))
        return ts3_job_abort(j, op, ERR_TOO_LARGE, "task key too long");
    return ts3_job_start(j, ts3_object_call(j->s, "GET", j->key, NULL, 0, NULL, TS3_RECORD_MAX), on_get, j);
}

/* ---- put ------------------------------------------------------------------- */

/* Peek at the record as it was (none yet: write the index marker; no credits
 * yet: the credits marker), write the markers in parallel, then the record. */
struct put_job {
    struct ts3_job job;
    char *body; /* the record (owned until its PUT takes it) */
    size_t body_len;
    int need_index, need_credits;
};

static void put_release(void *arg)
{
    struct put_job *pj = arg;
    free(pj->body);
}

static void on_put_record(struct upstream_call *c, void *arg)
{
    struct put_job *pj = arg;
    struct ts3_job *j = &pj->job;
    if (ts3_answered(j, c, j->key) == 0 && c->http_status != 200)
        ts3_refused(j, c, j->key);
    upstream_call_free(c);
    ts3_job_done(j);
}

static void put_record(struct put_job *pj)
{
    struct ts3_job *j = &pj->job;
    char *body = pj->body;
    pj->body = NULL;
    if (ts3_job_submit(j, ts3_object_call(j->s, "PUT", j->key, body, pj->body_len, "application/json", TS3_ERROR_MAX),
                       on_put_record, pj))
        ts3_job_done(j);
}

static void on_put_marker(struct upstream_call *c, void *arg)
{
    struct put_job *pj = arg;
    struct ts3_job *j = &pj->job;
    char what[sizeof j->op->id + 32];
    snprintf(what, sizeof what, "a marker of task %s", j->op->id);
    if (ts3_answered(j, c, what) == 0 && c->http_status != 200)
        ts3_refused(j, c, what);
    upstream_call_free(c);
    if (--j->inflight > 0)
        return;
    if (j->rc)
        ts3_job_done(j);
    else
        put_record(pj); /* the markers first: a record is never without them */
}

static int submit_marker(struct put_job *pj, const char *key)
{
    struct ts3_job *j = &pj->job;
    return ts3_job_submit(j, ts3_object_call(j->s, "PUT", key, NULL, 0, "application/octet-stream", TS3_ERROR_MAX),
                          on_put_marker, pj);
}

/* The index's creation time in ms: op->created_ms when the caller knows it
 * (it must lie in op->created's second), else op->created's second plus the
 * clock's milliseconds when the put runs within that second. The ms keep
 * tasks of one second newest first; any ms of the second keeps count's
 * "created since" exact. */
static long long created_ms(const struct taskstore_op *op)
{
    struct timespec ts;
    long long ms = (long long)op->created * 1000;
    if (op->created_ms >= ms && op->created_ms < ms + 1000)
        return op->created_ms;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec == op->created)
        ms += ts.tv_nsec / 1000000;
    return ms;
}

static void put_markers(struct put_job *pj)
{
    struct ts3_job *j = &pj->job;
    struct taskstore_op *op = j->op;
    char key[S3_KEY_MAX + 1], day[9], credits[32];
    long long inv = TS3_INV_MAX - created_ms(op);

    /* this loop counts as a call in flight: the job ends with the last of them */
    j->inflight++;
    if (pj->need_index) {
        if (ts3_make_key(j->s, key, sizeof key, "i/%013lld-%s", inv, op->id))
            ts3_job_error(j, ERR_TOO_LARGE, "index key too long");
        else
            (void)submit_marker(pj, key);
    }
    if (pj->need_credits && !j->rc) {
        if (ts3_utc_day(op->created, day) || ts3_format_credits(op->credits, credits, sizeof credits) ||
            ts3_make_key(j->s, key, sizeof key, "c/%s/%s_%s", day, op->id, credits))
            ts3_job_error(j, ERR_INVALID, "cannot name the credits marker of task %s", op->id);
        else
            (void)submit_marker(pj, key);
    }
    if (--j->inflight > 0)
        return;
    if (j->rc)
        ts3_job_done(j);
    else
        put_record(pj);
}

/* 1 when the record as stored already has credits (its credits marker exists). */
static int record_has_credits(const struct buf *b)
{
    cJSON *r = cJSON_ParseWithLength(buf_str(b), b->len);
    cJSON *cr = cJSON_GetObjectItemCaseSensitive(r, "credits");
    int has = cJSON_IsNumber(cr) && cr->valuedouble >= 0;
    cJSON_Delete(r);
    return has;
}

static void on_put_peek(struct upstream_call *c, void *arg)
{
    struct put_job *pj = arg;
    struct ts3_job *j = &pj->job;
    int known_credits = 0;

    if (ts3_answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            known_credits = record_has_credits(&c->response);
        } else if (ts3_absent(c)) {
            pj->need_index = 1;
        } else {
            ts3_refused(j, c, j->key);
        }
    }
    upstream_call_free(c);
    j->inflight--;
    if (j->rc) {
        ts3_job_done(j);
        return;
    }
    pj->need_credits = j->op->credits >= 0 && !known_credits;
    if (pj->need_index || pj->need_credits)
        put_markers(pj);
    else
        put_record(pj);
}

int ts3_put(struct taskstore *st, struct taskstore_op *op)
{
    struct put_job *pj = ts3_job_new(st, op, sizeof *pj, put_release);
    struct ts3_job *j = pj ? &pj->job : NULL;
    size_t len;

    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!ts3_valid_id(op->id))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid task id");
    if (!op->record)
        return ts3_job_abort(j, op, ERR_INVALID, "no record");
    if (op->created < 0 || (long long)op->created > TS3_INV_MAX / 1000)
        return ts3_job_abort(j, op, ERR_INVALID, "task creation time out of range");
    if (!(op->credits < 0) && ts3_format_credits(op->credits, (char[32]){0}, 32))
        return ts3_job_abort(j, op, ERR_INVALID, "credits out of range");
    len = strnlen(op->record, TS3_RECORD_MAX + 1);
    if (len > TS3_RECORD_MAX)
        return ts3_job_abort(j, op, ERR_TOO_LARGE, "task record too large");
    pj->body = malloc(len + 1);
    if (!pj->body)
        return ts3_job_abort(j, op, ERR_NOMEM, "out of memory");
    memcpy(pj->body, op->record, len + 1);
    pj->body_len = len;
    if (ts3_make_key(j->s, j->key, sizeof j->key, "r/%s.json", op->id))
        return ts3_job_abort(j, op, ERR_TOO_LARGE, "task key too long");
    return ts3_job_start(j, ts3_object_call(j->s, "GET", j->key, NULL, 0, NULL, TS3_RECORD_MAX), on_put_peek, pj);
}

/* ---- list ------------------------------------------------------------------ */

struct list_job;

/* The done argument of one record GET of a list: which slot it fills. */
struct slot {
    struct list_job *lj;
    size_t i;
};

/* Page through the index (<p>i/) until op->limit markers of our shape are in,
 * then GET their records, up to TS3_PARALLEL at once. */
struct list_job {
    struct ts3_job job;
    struct ts3_pager pager;
    int pages;
    int overflow;                  /* S3 listed more keys than asked for */
    size_t skipped;                /* keys under i/ not of our shape */
    char (*names)[TS3_MARKER_MAX]; /* op->limit marker names (owned) */
    size_t n_names, next;
    char **texts;       /* the record of names[i], NULL when it is gone (owned, each too) */
    struct slot *slots; /* (owned) */
};

static void list_release(void *arg)
{
    struct list_job *lj = arg;
    if (lj->texts)
        for (size_t i = 0; i < lj->n_names; i++)
            free(lj->texts[i]);
    free(lj->texts);
    free(lj->names);
    free(lj->slots);
}

static int collect_marker(const char *key, void *arg)
{
    struct list_job *lj = arg;
    const char *name = ts3_key_rest(lj->job.s, key, "i/");
    long long inv;

    if (lj->n_names >= (size_t)lj->job.op->limit) {
        lj->overflow = 1; /* more than asked for: S3 ignored max-keys */
        return 0;
    }
    if (!name || ts3_parse_marker(name, &inv)) {
        lj->skipped++;
        return 0;
    }
    snprintf(lj->names[lj->n_names++], TS3_MARKER_MAX, "%s", name);
    return 0;
}

static void list_finish(struct list_job *lj)
{
    struct ts3_job *j = &lj->job;
    struct taskstore_op *op = j->op;
    char **recs = NULL;
    size_t n = 0;

    if (!j->rc && lj->n_names > 0 && !(recs = calloc(lj->n_names, sizeof *recs)))
        ts3_job_error(j, ERR_NOMEM, "out of memory");
    for (size_t i = 0; !j->rc && i < lj->n_names; i++) {
        if (lj->texts[i]) {
            recs[n++] = lj->texts[i];
            lj->texts[i] = NULL;
        }
    }
    if (n == 0) {
        free(recs);
        recs = NULL;
    }
    op->records = recs;
    op->n_records = n;
    if (j->rc)
        op->cursor[0] = '\0';
    ts3_job_done(j);
}

static void on_list_record(struct upstream_call *c, void *arg);

/* Keep up to TS3_PARALLEL record GETs in flight; finish when all are in. */
static void list_pump(struct list_job *lj)
{
    struct ts3_job *j = &lj->job;

    while (!j->rc && j->inflight < TS3_PARALLEL && lj->next < lj->n_names) {
        size_t i = lj->next++;
        char key[S3_KEY_MAX + 1];
        if (ts3_make_key(j->s, key, sizeof key, "r/%s.json", lj->names[i] + 14)) {
            ts3_job_error(j, ERR_TOO_LARGE, "task key too long");
            break;
        }
        lj->slots[i] = (struct slot){lj, i};
        if (ts3_job_submit(j, ts3_object_call(j->s, "GET", key, NULL, 0, NULL, TS3_RECORD_MAX), on_list_record,
                           &lj->slots[i]))
            break;
    }
    if (j->inflight == 0)
        list_finish(lj);
}

static void on_list_record(struct upstream_call *c, void *arg)
{
    struct slot *sl = arg;
    struct list_job *lj = sl->lj;
    struct ts3_job *j = &lj->job;
    const char *id = lj->names[sl->i] + 14;

    if (ts3_answered(j, c, id) == 0) {
        if (c->http_status == 200) {
            char *text = buf_take(&c->response);
            lj->texts[sl->i] = text ? text : strdup("");
            if (!lj->texts[sl->i])
                ts3_job_error(j, ERR_NOMEM, "out of memory");
        } else if (!ts3_absent(c)) { /* absent: a marker whose first put failed */
            ts3_refused(j, c, id);
        }
    }
    upstream_call_free(c);
    j->inflight--;
    list_pump(lj);
}

/* A page of the index is in (the pager's on_page). */
static void on_list_page(void *arg, int truncated, size_t undecodable)
{
    struct list_job *lj = arg;
    struct ts3_job *j = &lj->job;
    struct taskstore_op *op = j->op;

    lj->skipped += undecodable;
    if (j->rc) {
        list_finish(lj);
        return;
    }
    if (truncated && lj->n_names < (size_t)op->limit) {
        /* keys were skipped: read on to fill the page, by continuation token */
        if (++lj->pages < TS3_LIST_PAGES) {
            if (ts3_job_submit(j, ts3_pager_call(&lj->pager, NULL, (unsigned)((size_t)op->limit - lj->n_names)),
                               ts3_pager_done, &lj->pager))
                list_finish(lj);
            return;
        }
        if (lj->n_names == 0) {
            ts3_job_error(j, ERR_UPSTREAM, "no valid marker in %d pages of the task index", TS3_LIST_PAGES);
            list_finish(lj);
            return;
        }
    }
    if (lj->skipped)
        log_warn("taskstore s3: skipped %zu keys under %si/ that are not index markers", lj->skipped, j->s->prefix);
    /* more markers after the last one taken: it is the next page's cursor */
    if (truncated || lj->overflow)
        snprintf(op->cursor, sizeof op->cursor, "%s", lj->names[lj->n_names - 1]);
    else
        op->cursor[0] = '\0';
    lj->texts = calloc(lj->n_names ? lj->n_names : 1, sizeof *lj->texts);
    lj->slots = calloc(lj->n_names ? lj->n_names : 1, sizeof *lj->slots);
    if (!lj->texts || !lj->slots)
        ts3_job_error(j, ERR_NOMEM, "out of memory");
    list_pump(lj);
}

int ts3_list(struct taskstore *st, struct taskstore_op *op)
{
    struct list_job *lj = ts3_job_new(st, op, sizeof *lj, list_release);
    struct ts3_job *j = lj ? &lj->job : NULL;
    char after[S3_KEY_MAX + 1];
    long long inv;

    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (op->limit < 1 || op->limit > TASKSTORE_LIST_MAX)
        return ts3_job_abort(j, op, ERR_INVALID, "limit must be 1-100");
    if (op->cursor[0] && ts3_parse_marker(op->cursor, &inv))
        return ts3_job_abort(j, op, ERR_INVALID, "invalid cursor");
    lj->names = calloc((size_t)op->limit, sizeof *lj->names);
    if (!lj->names)
        return ts3_job_abort(j, op, ERR_NOMEM, "out of memory");
    after[0] = '\0';
    if (ts3_pager_init(&lj->pager, j, "i/", collect_marker, on_list_page, lj) ||
        (op->cursor[0] && ts3_make_key(j->s, after, sizeof after, "i/%s", op->cursor)))
        return ts3_job_abort(j, op, ERR_TOO_LARGE, "index key too long");
    return ts3_job_start(j, ts3_pager_call(&lj->pager, after, (unsigned)op->limit), ts3_pager_done, &lj->pager);
}
