/* taskstore_s3.c - the task store as S3 objects under S3_TASKS_PREFIX
 * (spec13.md, "S3 layout"), signed with our own SigV4 (s3.h) and run on the
 * upstream I/O thread:
 *
 *   <p>r/<id>.json                          the record, as given (application/json)
 *   <p>i/<9999999999999 - created_ms>-<id>  empty index marker: key order is newest first
 *   <p>c/<YYYYMMDD>/<id>_<credits>          empty credits marker (the UTC day the task was created)
 *   <p>k/<hex sha256 of the key>.json       an Idempotency-Key and its answer
 *
 * Each operation is a job: a small state machine whose steps are S3 calls.
 * The first call is submitted from the caller's thread, and after that the
 * job is only touched from the calls' done callbacks on the I/O thread, which
 * also submit the next calls; so no job needs a lock, and several calls of
 * one job may be in flight at once (the record GETs of a list, the markers
 * of a put). The store itself is read-only after open.
 *
 * Listings are hostile input: the answer size is capped, and every key must
 * have the exact shape written here or it is skipped. */
#include "taskstore.h"
#include "config.h"
#include "err.h"
#include "log.h"
#include "s3.h"
#include "s3call.h"
#include "sigv4.h"
#include "upstream.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TS3_TIMEOUT_MS 20000
#define TS3_RECORD_MAX (256 * 1024)         /* a record, stored or read back */
#define TS3_ANSWER_MAX (64 * 1024)          /* the answer an idempotency key replays */
#define TS3_KEYOBJ_MAX (7 * TS3_ANSWER_MAX) /* the key's object: the answer JSON-escaped (\u00XX) + the rest */
#define TS3_ERROR_MAX (64 * 1024)           /* the body of an answer we only check the status of */
#define TS3_LIST_ANSWER_MAX (4u << 20)      /* one ListObjectsV2 page of <= 1000 keys */
#define TS3_PARALLEL 8                      /* record GETs of one list in flight at once */
#define TS3_LIST_PAGES 10                   /* pages one list reads past keys it skips */
#define TS3_COUNT_PAGES 200                 /* pages (of 1000 keys) one count reads per prefix */
#define TS3_CLAIM_TRIES 3                   /* conditional PUTs one claim makes (a key released meanwhile) */
#define TS3_PREFIX_MAX 256
#define TS3_INV_MAX 9999999999999LL /* index markers sort by this minus created_ms */
#define TS3_ID_MAX 128
#define TS3_MARKER_MAX (13 + 1 + TS3_ID_MAX + 1) /* "<13 digits>-<id>" + NUL: also the list cursor */

struct ts3 {
    struct s3_config_target ct;
    char *prefix;
    struct upstream *up;
};

enum step {
    GET_RECORD,
    PUT_PEEK,    /* GET the record as it was: no record yet -> write the index marker */
    PUT_MARKERS, /* the index and credits markers, in parallel */
    PUT_RECORD,
    LIST_PAGE,
    LIST_RECORDS,
    COUNT_INDEX,
    COUNT_CREDITS,
    CLAIM_PUT, /* If-None-Match: * */
    CLAIM_GET, /* it existed: whose is it? */
    CLAIM_TAKE,
    FINISH_PUT,
    RELEASE_DELETE,
};

struct job;

/* The done argument of one record GET of a list: which slot it fills. */
struct slot {
    struct job *j;
    size_t i;
};

struct job {
    struct ts3 *s;
    struct taskstore_op *op;
    enum step step;
    int rc;                   /* the first error; the op's result when set */
    int result;               /* the op's result otherwise (a TS_* for claim) */
    int inflight;             /* calls submitted, not yet done */
    char key[S3_KEY_MAX + 1]; /* the object of get/put/claim/finish/release */
    char *body;               /* put: the record; claim: the pending claim (copied per PUT) */
    size_t body_len;
    /* put */
    int need_index, need_credits;
    /* list and count */
    char token[S3_TOKEN_MAX + 1];
    int pages;
    int stop;       /* count: the index reached markers older than since */
    int overflow;   /* list: S3 listed more keys than asked for */
    size_t skipped; /* list: keys under i/ not of our shape */
    char (*names)[TS3_MARKER_MAX];
    size_t n_names, next;
    char **texts; /* list: the record of names[i], NULL when it is gone */
    struct slot *slots;
    long long inv_since; /* count: markers <= this are of tasks created since op->since */
    char since_day[9];
    long count;
    double spent_since, spent_total;
    /* claim */
    int tries;
};

/* ---- keys ------------------------------------------------------------------ */

/* Task ids as KIE makes them: 1-128 of [A-Za-z0-9._-], not starting with '.'. */
static int valid_id_n(const char *s, size_t n)
{
    if (n == 0 || n > TS3_ID_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static int valid_id(const char *s)
{
    size_t n = strnlen(s, TS3_ID_MAX + 1);
    return valid_id_n(s, n);
}

static int valid_prefix(const char *p)
{
    size_t n = strnlen(p, TS3_PREFIX_MAX + 1);
    if (n > TS3_PREFIX_MAX || p[0] == '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-' || c == '/'))
            return 0;
    }
    return 1;
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* "<13 digits>-<id>": the inverted creation time in *inv. 0 or -1. */
static int parse_marker(const char *name, long long *inv)
{
    size_t n = strnlen(name, TS3_MARKER_MAX);
    long long v = 0;
    if (n >= TS3_MARKER_MAX || n < 15 || !is_digits(name, 13) || name[13] != '-' || !valid_id_n(name + 14, n - 14))
        return -1;
    for (int i = 0; i < 13; i++)
        v = v * 10 + (name[i] - '0');
    *inv = v;
    return 0;
}

/* Credits as a key part: a plain decimal ("5", "1.25"), never an exponent. */
static int format_credits(double v, char *out, size_t cap)
{
    int n;
    if (!(v >= 0 && v < 1e12))
        return -1;
    n = snprintf(out, cap, "%.6f", v);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
    if (n > 0 && out[n - 1] == '.')
        out[--n] = '\0';
    return 0;
}

static int parse_credits(const char *s, double *out)
{
    size_t n = strlen(s), dots = 0;
    char *end = NULL;
    if (n == 0 || n > 24 || s[0] == '.' || s[n - 1] == '.')
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.')
            dots++;
        else if (s[i] < '0' || s[i] > '9')
            return -1;
    }
    if (dots > 1)
        return -1;
    *out = strtod(s, &end);
    return end == s + n && isfinite(*out) ? 0 : -1;
}

/* "<YYYYMMDD>/<id>_<credits>" (what follows "<p>c/"): the day and credits. */
static int parse_credits_marker(const char *rest, char day[9], double *credits)
{
    const char *us;
    if (strnlen(rest, 9) < 9 || !is_digits(rest, 8) || rest[8] != '/')
        return -1;
    us = strrchr(rest + 9, '_');
    if (!us || !valid_id_n(rest + 9, (size_t)(us - (rest + 9))) || parse_credits(us + 1, credits))
        return -1;
    memcpy(day, rest, 8);
    day[8] = '\0';
    return 0;
}

static int utc_day(time_t t, char day[9])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(day, 9, "%Y%m%d", &tm) != 8)
        return -1;
    return 0;
}

/* out = prefix + the formatted rest; ERR_TOO_LARGE when it does not fit. */
static int make_key(const struct ts3 *s, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int make_key(const struct ts3 *s, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    size_t pl = strlen(s->prefix);
    int n;
    if (pl >= cap)
        return ERR_TOO_LARGE;
    memcpy(out, s->prefix, pl + 1);
    va_start(ap, fmt);
    n = vsnprintf(out + pl, cap - pl, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap - pl ? ERR_TOO_LARGE : 0;
}

/* ---- jobs ------------------------------------------------------------------ */

static int job_error(struct job *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Record the first failure of a job (later ones only log). Returns rc. */
static int job_error(struct job *j, int rc, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof j->op->error];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (j->rc == 0) {
        j->rc = rc;
        snprintf(j->op->error, sizeof j->op->error, "%s", msg);
    }
    if (rc != ERR_NOT_FOUND)
        log_warn("taskstore s3: %s", msg);
    return rc;
}

static struct job *job_new(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->s = st->priv;
    j->op = op;
    op->error[0] = '\0';
    return j;
}

static void job_free(struct job *j)
{
    if (j->texts)
        for (size_t i = 0; i < j->n_names; i++)
            free(j->texts[i]);
    free(j->texts);
    free(j->names);
    free(j->slots);
    free(j->body);
    free(j);
}

/* The job is over: the op gets its result and done runs (I/O thread). */
static void job_done(struct job *j)
{
    struct taskstore_op *op = j->op;
    op->result = j->rc ? j->rc : j->result;
    job_free(j);
    op->done(op, op->arg);
}

/* A failure before anything was submitted: returned, done is not called. */
static int job_abort(struct job *j, struct taskstore_op *op, int rc, const char *msg)
{
    if (j && j->rc)
        rc = j->rc;
    else
        snprintf(op->error, sizeof op->error, "%s", msg);
    op->result = rc;
    if (j)
        job_free(j);
    return rc;
}

/* A signed GET or DELETE of key, or a PUT of body (taken, may be NULL when
 * len is 0). NULL when out of memory or the request cannot be signed. */
static struct upstream_call *object_call(struct ts3 *s, const char *method, const char *key, char *body, size_t len,
                                         const char *content_type, size_t max_response)
{
    struct s3_request *rq = malloc(sizeof *rq);
    struct upstream_call *c = NULL;
    char hash[65];
    int rc;

    if (!rq)
        goto out;
    if (strcmp(method, "PUT") == 0) {
        sigv4_sha256_hex(body ? body : "", len, hash);
        rc = s3_sign_put(&s->ct.t, key, content_type, (unsigned long long)len, hash, time(NULL), rq);
    } else {
        rc = s3_sign_get(&s->ct.t, method, key, time(NULL), rq);
    }
    if (rc == 0)
        c = s3_call_new(rq, TS3_TIMEOUT_MS, max_response);
    if (c && body) {
        upstream_call_body(c, body, len);
        body = NULL;
    }
out:
    free(body);
    free(rq);
    return c;
}

static struct upstream_call *list_call(struct ts3 *s, const char *prefix, const char *start_after, const char *token,
                                       unsigned max_keys)
{
    struct s3_request *rq = malloc(sizeof *rq);
    struct upstream_call *c = NULL;

    if (rq && s3_sign_list(&s->ct.t, prefix, start_after, token, max_keys, time(NULL), rq) == 0)
        c = s3_call_new(rq, TS3_TIMEOUT_MS, TS3_LIST_ANSWER_MAX);
    free(rq);
    return c;
}

/* Submit c for the job. 0, or an error recorded in the job (c is freed).
 * Once this returned 0 from the caller's thread, the job may already be
 * over: touch nothing of it any more. */
static int job_submit(struct job *j, struct upstream_call *c, void (*fn)(struct upstream_call *, void *), void *arg)
{
    if (!c)
        return job_error(j, ERR_NOMEM, "out of memory or unsignable request (S3 task store)");
    c->done = fn;
    c->arg = arg;
    j->inflight++;
    if (upstream_submit(j->s->up, c)) {
        j->inflight--;
        upstream_call_free(c);
        return job_error(j, ERR_UPSTREAM, "the server is shutting down");
    }
    return 0;
}

/* The first call of a job, from the caller's thread. */
static int job_start(struct job *j, struct upstream_call *c, void (*fn)(struct upstream_call *, void *))
{
    struct taskstore_op *op = j->op;
    int rc = job_submit(j, c, fn, j);
    return rc ? job_abort(j, op, rc, "") : TASKSTORE_PENDING;
}

static const char *method_of(const struct upstream_call *c)
{
    return c->method ? c->method : "?";
}

/* 0 when S3 answered at all; otherwise the failure is recorded. */
static int answered(struct job *j, const struct upstream_call *c, const char *what)
{
    if (c->result == ERR_TIMEOUT)
        return job_error(j, ERR_TIMEOUT, "S3 did not answer %s %s within %d s", method_of(c), what,
                         TS3_TIMEOUT_MS / 1000);
    if (c->result == ERR_TOO_LARGE)
        return job_error(j, ERR_TOO_LARGE, "S3's answer to %s %s is larger than %zu bytes", method_of(c), what,
                         c->max_response);
    if (c->result || c->http_status == 0)
        return job_error(j, ERR_UPSTREAM, "could not reach S3 for %s %s: %s", method_of(c), what,
                         c->error[0] ? c->error : "no answer");
    return 0;
}

/* S3 answered with a status the step does not expect. */
static int refused(struct job *j, const struct upstream_call *c, const char *what)
{
    char code[128], msg[160];
    if (s3_parse_error(buf_str(&c->response), c->response.len, code, sizeof code, msg, sizeof msg) != 0) {
        code[0] = '\0';
        msg[0] = '\0';
    }
    return job_error(j, ERR_UPSTREAM, "S3 answered HTTP %ld to %s %s%s%s%s%s", c->http_status, method_of(c), what,
                     code[0] ? ": " : "", code, msg[0] ? " - " : "", msg);
}

/* No such object. S3 says 404 only when s3:ListBucket covers the request;
 * the templates grant ListBucket with an s3:prefix condition (listings of
 * S3_TASKS_PREFIX only), which a GET does not carry, so a missing key there is
 * 403 AccessDenied. Other 403s (a bad signature, a wrong key id) are errors. */
static int absent(const struct upstream_call *c)
{
    char code[64];
    if (c->http_status == 404)
        return 1;
    return c->http_status == 403 &&
           s3_parse_error(buf_str(&c->response), c->response.len, code, sizeof code, NULL, 0) == 0 &&
           strcmp(code, "AccessDenied") == 0;
}

/* ---- get ------------------------------------------------------------------- */

static void on_get(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    if (answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            char *text = buf_take(&c->response);
            j->op->text = text ? text : strdup("");
            if (!j->op->text)
                job_error(j, ERR_NOMEM, "out of memory");
        } else if (absent(c)) {
            job_error(j, ERR_NOT_FOUND, "no task %s", j->op->id);
        } else {
            refused(j, c, j->key);
        }
    }
    upstream_call_free(c);
    job_done(j);
}

static int ts3_get(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);
    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!valid_id(op->id))
        return job_abort(j, op, ERR_INVALID, "invalid task id");
    if (make_key(j->s, j->key, sizeof j->key, "r/%s.json", op->id))
        return job_abort(j, op, ERR_TOO_LARGE, "task key too long");
    j->step = GET_RECORD;
    return job_start(j, object_call(j->s, "GET", j->key, NULL, 0, NULL, TS3_RECORD_MAX), on_get);
}

/* ---- put ------------------------------------------------------------------- */

static void on_put_record(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    if (answered(j, c, j->key) == 0 && c->http_status != 200)
        refused(j, c, j->key);
    upstream_call_free(c);
    job_done(j);
}

static void put_record(struct job *j)
{
    char *body = j->body;
    j->body = NULL;
    j->step = PUT_RECORD;
    if (job_submit(j, object_call(j->s, "PUT", j->key, body, j->body_len, "application/json", TS3_ERROR_MAX),
                   on_put_record, j))
        job_done(j);
}

static void on_put_marker(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    char what[sizeof j->op->id + 32];
    snprintf(what, sizeof what, "a marker of task %s", j->op->id);
    if (answered(j, c, what) == 0 && c->http_status != 200)
        refused(j, c, what);
    upstream_call_free(c);
    if (--j->inflight > 0)
        return;
    if (j->rc)
        job_done(j);
    else
        put_record(j); /* the markers first: a record is never without them */
}

static int submit_marker(struct job *j, const char *key)
{
    return job_submit(j, object_call(j->s, "PUT", key, NULL, 0, "application/octet-stream", TS3_ERROR_MAX),
                      on_put_marker, j);
}

/* The index's creation time in ms. op->created has whole seconds, but the
 * first put comes as the task is created: within that second the clock's
 * milliseconds keep tasks of one second newest first. (Any ms of the second
 * keeps count's "created since" exact.) */
static long long created_ms(time_t created)
{
    struct timespec ts;
    long long ms = (long long)created * 1000;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec == created)
        ms += ts.tv_nsec / 1000000;
    return ms;
}

static void put_markers(struct job *j)
{
    struct taskstore_op *op = j->op;
    char key[S3_KEY_MAX + 1], day[9], credits[32];
    long long inv = TS3_INV_MAX - created_ms(op->created);

    j->step = PUT_MARKERS;
    /* this loop counts as a call in flight: the job ends with the last of them */
    j->inflight++;
    if (j->need_index) {
        if (make_key(j->s, key, sizeof key, "i/%013lld-%s", inv, op->id))
            job_error(j, ERR_TOO_LARGE, "index key too long");
        else
            (void)submit_marker(j, key);
    }
    if (j->need_credits && !j->rc) {
        if (utc_day(op->created, day) || format_credits(op->credits, credits, sizeof credits) ||
            make_key(j->s, key, sizeof key, "c/%s/%s_%s", day, op->id, credits))
            job_error(j, ERR_INVALID, "cannot name the credits marker of task %s", op->id);
        else
            (void)submit_marker(j, key);
    }
    if (--j->inflight > 0)
        return;
    if (j->rc)
        job_done(j);
    else
        put_record(j);
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
    struct job *j = arg;
    int known_credits = 0;

    if (answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            known_credits = record_has_credits(&c->response);
        } else if (absent(c)) {
            j->need_index = 1;
        } else {
            refused(j, c, j->key);
        }
    }
    upstream_call_free(c);
    j->inflight--;
    if (j->rc) {
        job_done(j);
        return;
    }
    j->need_credits = j->op->credits >= 0 && !known_credits;
    if (j->need_index || j->need_credits)
        put_markers(j);
    else
        put_record(j);
}

static int ts3_put(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);
    size_t len;

    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!valid_id(op->id))
        return job_abort(j, op, ERR_INVALID, "invalid task id");
    if (!op->record)
        return job_abort(j, op, ERR_INVALID, "no record");
    if (op->created < 0 || (long long)op->created > TS3_INV_MAX / 1000)
        return job_abort(j, op, ERR_INVALID, "task creation time out of range");
    if (!(op->credits < 0) && format_credits(op->credits, (char[32]){0}, 32))
        return job_abort(j, op, ERR_INVALID, "credits out of range");
    len = strnlen(op->record, TS3_RECORD_MAX + 1);
    if (len > TS3_RECORD_MAX)
        return job_abort(j, op, ERR_TOO_LARGE, "task record too large");
    j->body = malloc(len + 1);
    if (!j->body)
        return job_abort(j, op, ERR_NOMEM, "out of memory");
    memcpy(j->body, op->record, len + 1);
    j->body_len = len;
    if (make_key(j->s, j->key, sizeof j->key, "r/%s.json", op->id))
        return job_abort(j, op, ERR_TOO_LARGE, "task key too long");
    j->step = PUT_PEEK;
    return job_start(j, object_call(j->s, "GET", j->key, NULL, 0, NULL, TS3_RECORD_MAX), on_put_peek);
}

/* ---- list ------------------------------------------------------------------ */

static int collect_marker(const char *key, void *arg)
{
    struct job *j = arg;
    size_t pl = strlen(j->s->prefix) + 2;
    long long inv;

    if (j->n_names >= (size_t)j->op->limit) {
        j->overflow = 1; /* more than asked for: S3 ignored max-keys */
        return 0;
    }
    if (strncmp(key, j->s->prefix, pl - 2) != 0 || strncmp(key + pl - 2, "i/", 2) != 0 ||
        parse_marker(key + pl, &inv)) {
        j->skipped++;
        return 0;
    }
    snprintf(j->names[j->n_names++], TS3_MARKER_MAX, "%s", key + pl);
    return 0;
}

static void list_finish(struct job *j)
{
    struct taskstore_op *op = j->op;
    char **recs = NULL;
    size_t n = 0;

    if (!j->rc && j->n_names > 0 && !(recs = calloc(j->n_names, sizeof *recs)))
        job_error(j, ERR_NOMEM, "out of memory");
    for (size_t i = 0; !j->rc && i < j->n_names; i++) {
        if (j->texts[i]) {
            recs[n++] = j->texts[i];
            j->texts[i] = NULL;
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
    job_done(j);
}

static void on_list_record(struct upstream_call *c, void *arg);

/* Keep up to TS3_PARALLEL record GETs in flight; finish when all are in. */
static void list_pump(struct job *j)
{
    while (!j->rc && j->inflight < TS3_PARALLEL && j->next < j->n_names) {
        size_t i = j->next++;
        char key[S3_KEY_MAX + 1];
        if (make_key(j->s, key, sizeof key, "r/%s.json", j->names[i] + 14)) {
            job_error(j, ERR_TOO_LARGE, "task key too long");
            break;
        }
        j->slots[i] = (struct slot){j, i};
        if (job_submit(j, object_call(j->s, "GET", key, NULL, 0, NULL, TS3_RECORD_MAX), on_list_record, &j->slots[i]))
            break;
    }
    if (j->inflight == 0)
        list_finish(j);
}

static void on_list_record(struct upstream_call *c, void *arg)
{
    struct slot *sl = arg;
    struct job *j = sl->j;
    const char *id = j->names[sl->i] + 14;

    if (answered(j, c, id) == 0) {
        if (c->http_status == 200) {
            char *text = buf_take(&c->response);
            j->texts[sl->i] = text ? text : strdup("");
            if (!j->texts[sl->i])
                job_error(j, ERR_NOMEM, "out of memory");
        } else if (!absent(c)) { /* absent: a marker whose first put failed */
            refused(j, c, id);
        }
    }
    upstream_call_free(c);
    j->inflight--;
    list_pump(j);
}

static void list_next_page(struct job *j);

static void on_list_page(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    struct taskstore_op *op = j->op;
    char what[TS3_PREFIX_MAX + 16];
    int truncated = 0;
    size_t undecodable = 0;

    snprintf(what, sizeof what, "%si/ (list)", j->s->prefix);
    j->inflight--;
    if (answered(j, c, what) == 0) {
        if (c->http_status != 200)
            refused(j, c, what);
        else if (s3_parse_list(buf_str(&c->response), c->response.len, collect_marker, j, &truncated, j->token,
                               sizeof j->token, &undecodable) != 0)
            job_error(j, ERR_UPSTREAM, "S3's answer to GET %s is not a ListObjectsV2 result", what);
    }
    upstream_call_free(c);
    j->skipped += undecodable;
    if (j->rc) {
        list_finish(j);
        return;
    }
    if (truncated && j->n_names < (size_t)op->limit) {
        /* keys were skipped: read on to fill the page */
        if (++j->pages < TS3_LIST_PAGES) {
            list_next_page(j);
            return;
        }
        if (j->n_names == 0) {
            job_error(j, ERR_UPSTREAM, "no valid marker in %d pages of the task index", TS3_LIST_PAGES);
            list_finish(j);
            return;
        }
    }
    if (j->skipped)
        log_warn("taskstore s3: skipped %zu keys under %si/ that are not index markers", j->skipped, j->s->prefix);
    /* more markers after the last one taken: it is the next page's cursor */
    if (truncated || j->overflow)
        snprintf(op->cursor, sizeof op->cursor, "%s", j->names[j->n_names - 1]);
    else
        op->cursor[0] = '\0';
    j->step = LIST_RECORDS;
    j->texts = calloc(j->n_names ? j->n_names : 1, sizeof *j->texts);
    j->slots = calloc(j->n_names ? j->n_names : 1, sizeof *j->slots);
    if (!j->texts || !j->slots)
        job_error(j, ERR_NOMEM, "out of memory");
    list_pump(j);
}

/* The rest of a listing that had to skip keys, by continuation token. */
static void list_next_page(struct job *j)
{
    char prefix[S3_KEY_MAX + 1];

    if (make_key(j->s, prefix, sizeof prefix, "i/")) {
        job_error(j, ERR_TOO_LARGE, "index key too long");
        list_finish(j);
        return;
    }
    if (job_submit(j, list_call(j->s, prefix, NULL, j->token, (unsigned)((size_t)j->op->limit - j->n_names)),
                   on_list_page, j))
        list_finish(j);
}

static int ts3_list(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);
    char prefix[S3_KEY_MAX + 1], after[S3_KEY_MAX + 1];
    long long inv;

    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (op->limit < 1 || op->limit > TASKSTORE_LIST_MAX)
        return job_abort(j, op, ERR_INVALID, "limit must be 1-100");
    if (op->cursor[0] && parse_marker(op->cursor, &inv))
        return job_abort(j, op, ERR_INVALID, "invalid cursor");
    j->names = calloc((size_t)op->limit, sizeof *j->names);
    if (!j->names)
        return job_abort(j, op, ERR_NOMEM, "out of memory");
    after[0] = '\0';
    if (make_key(j->s, prefix, sizeof prefix, "i/") ||
        (op->cursor[0] && make_key(j->s, after, sizeof after, "i/%s", op->cursor)))
        return job_abort(j, op, ERR_TOO_LARGE, "index key too long");
    j->step = LIST_PAGE;
    return job_start(j, list_call(j->s, prefix, after, NULL, (unsigned)op->limit), on_list_page);
}

/* ---- count ----------------------------------------------------------------- */

static int count_marker(const char *key, void *arg)
{
    struct job *j = arg;
    size_t pl = strlen(j->s->prefix) + 2;
    long long inv;

    if (strncmp(key, j->s->prefix, pl - 2) != 0 || strncmp(key + pl - 2, "i/", 2) != 0 || parse_marker(key + pl, &inv))
        return 0;
    if (inv > j->inv_since) {
        j->stop = 1; /* older than since, and so is every key after it */
        return 1;
    }
    j->count++;
    return 0;
}

static int sum_credits(const char *key, void *arg)
{
    struct job *j = arg;
    size_t pl = strlen(j->s->prefix) + 2;
    char day[9];
    double credits;

    if (strncmp(key, j->s->prefix, pl - 2) != 0 || strncmp(key + pl - 2, "c/", 2) != 0 ||
        parse_credits_marker(key + pl, day, &credits))
        return 0;
    j->spent_total += credits;
    if (strcmp(day, j->since_day) >= 0)
        j->spent_since += credits;
    return 0;
}

static void count_page(struct job *j);

static void on_count_page(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    char what[TS3_PREFIX_MAX + 16];
    int truncated = 0, rc = 0;

    snprintf(what, sizeof what, "%s%s (list)", j->s->prefix, j->step == COUNT_INDEX ? "i/" : "c/");
    j->inflight--;
    if (answered(j, c, what) == 0) {
        if (c->http_status != 200) {
            refused(j, c, what);
        } else {
            rc = s3_parse_list(buf_str(&c->response), c->response.len,
                               j->step == COUNT_INDEX ? count_marker : sum_credits, j, &truncated, j->token,
                               sizeof j->token, NULL);
            if (rc < 0)
                job_error(j, ERR_UPSTREAM, "S3's answer to GET %s is not a ListObjectsV2 result", what);
        }
    }
    upstream_call_free(c);
    if (j->rc) {
        job_done(j);
        return;
    }
    if (truncated && !j->stop) {
        if (++j->pages >= TS3_COUNT_PAGES) {
            job_error(j, ERR_TOO_LARGE, "more than %d pages of %s", TS3_COUNT_PAGES, what);
            job_done(j);
            return;
        }
    } else if (j->step == COUNT_INDEX) {
        j->step = COUNT_CREDITS;
        j->pages = 0;
        j->stop = 0;
        j->token[0] = '\0';
    } else {
        j->op->count = j->count;
        j->op->spent_since = j->spent_since;
        j->op->spent_total = j->spent_total;
        job_done(j);
        return;
    }
    count_page(j);
}

static struct upstream_call *count_call(struct job *j)
{
    char prefix[S3_KEY_MAX + 1];
    if (make_key(j->s, prefix, sizeof prefix, j->step == COUNT_INDEX ? "i/" : "c/"))
        return NULL;
    return list_call(j->s, prefix, NULL, j->token, S3_LIST_MAX_KEYS);
}

static void count_page(struct job *j)
{
    if (job_submit(j, count_call(j), on_count_page, j))
        job_done(j);
}

static int ts3_count(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);
    time_t since;

    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    since = op->since < 0 ? 0 : op->since;
    if ((long long)since > TS3_INV_MAX / 1000)
        return job_abort(j, op, ERR_INVALID, "since out of range");
    j->inv_since = TS3_INV_MAX - (long long)since * 1000;
    if (utc_day(since, j->since_day))
        return job_abort(j, op, ERR_INVALID, "since out of range");
    j->step = COUNT_INDEX;
    return job_start(j, count_call(j), on_count_page);
}

/* ---- idempotency keys ------------------------------------------------------ */

static int valid_hash(const char *h)
{
    if (strnlen(h, 65) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return 0;
    return 1;
}

/* The object of op->key, after checking key and hash. */
static int key_object(struct job *j)
{
    char h[65];
    size_t n = strnlen(j->op->key, sizeof j->op->key);
    if (n == 0 || n >= sizeof j->op->key)
        return ERR_INVALID;
    sigv4_sha256_hex(j->op->key, n, h);
    return make_key(j->s, j->key, sizeof j->key, "k/%s.json", h);
}

/* The key's object: {"hash","state","at"[,"status","answer","task_id"]}. */
static char *key_json(const struct taskstore_op *op, const char *state, size_t *len)
{
    cJSON *o = cJSON_CreateObject();
    char *text = NULL, *out = NULL;

    if (!o || !cJSON_AddStringToObject(o, "hash", op->hash) || !cJSON_AddStringToObject(o, "state", state) ||
        !cJSON_AddNumberToObject(o, "at", (double)op->now))
        goto out;
    if (strcmp(state, "done") == 0 &&
        (!cJSON_AddNumberToObject(o, "status", op->answer_status) ||
         !cJSON_AddStringToObject(o, "answer", op->answer) || !cJSON_AddStringToObject(o, "task_id", op->task_id)))
        goto out;
    text = cJSON_PrintUnformatted(o);
    if (text) {
        *len = strlen(text);
        out = malloc(*len + 1);
        if (out)
            memcpy(out, text, *len + 1);
    }
out:
    cJSON_free(text);
    cJSON_Delete(o);
    return out;
}

static void claim_put(struct job *j, int conditional);

/* Whose is the key's object? Sets the result, or starts the take-over. */
static void claim_decide(struct job *j, const struct buf *b)
{
    struct taskstore_op *op = j->op;
    cJSON *o = cJSON_ParseWithLength(buf_str(b), b->len);
    cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "hash");
    cJSON *state = cJSON_GetObjectItemCaseSensitive(o, "state");
    cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "at");
    cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
    cJSON *answer = cJSON_GetObjectItemCaseSensitive(o, "answer");
    int done, pending;
    double age;

    if (!cJSON_IsString(hash) || !cJSON_IsString(state) || !cJSON_IsNumber(at)) {
        job_error(j, ERR_UPSTREAM, "unreadable idempotency record %s", j->key);
        goto out;
    }
    done = strcmp(state->valuestring, "done") == 0;
    pending = strcmp(state->valuestring, "pending") == 0;
    age = (double)op->now - at->valuedouble;
    if (!done && !pending) {
        job_error(j, ERR_UPSTREAM, "unreadable idempotency record %s", j->key);
    } else if ((pending && age > IDEMPOTENCY_STALE_SECONDS) || (done && age > IDEMPOTENCY_TTL_SECONDS)) {
        cJSON_Delete(o);
        claim_put(j, 0); /* a crashed request's claim, or an expired answer: ours now */
        return;
    } else if (strcmp(hash->valuestring, op->hash) != 0) {
        j->result = TS_MISMATCH;
    } else if (pending) {
        j->result = TS_BUSY;
    } else if (!cJSON_IsString(answer) || !cJSON_IsNumber(status) || status->valuedouble < 100 ||
               status->valuedouble > 599) {
        job_error(j, ERR_UPSTREAM, "unreadable idempotency record %s", j->key);
    } else if (!(op->text = strdup(answer->valuestring))) {
        job_error(j, ERR_NOMEM, "out of memory");
    } else {
        op->answer_status = (int)status->valuedouble;
        j->result = TS_REPLAY;
    }
out:
    cJSON_Delete(o);
    job_done(j);
}

static void on_claim_get(struct upstream_call *c, void *arg)
{
    struct job *j = arg;

    j->inflight--;
    if (answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            claim_decide(j, &c->response);
            upstream_call_free(c);
            return;
        }
        if (c->http_status == 404 && j->tries < TS3_CLAIM_TRIES) {
            upstream_call_free(c); /* released meanwhile: try again */
            claim_put(j, 1);
            return;
        }
        if (c->http_status == 404)
            j->result = TS_BUSY;
        else
            refused(j, c, j->key);
    }
    upstream_call_free(c);
    job_done(j);
}

static void on_claim_put(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    int conditional = j->step == CLAIM_PUT;

    j->inflight--;
    if (answered(j, c, j->key) == 0) {
        if (c->http_status == 200) {
            j->result = TS_CLAIMED;
        } else if (conditional && c->http_status == 412) {
            /* it exists: read it */
            upstream_call_free(c);
            j->step = CLAIM_GET;
            if (job_submit(j, object_call(j->s, "GET", j->key, NULL, 0, NULL, TS3_KEYOBJ_MAX), on_claim_get, j))
                job_done(j);
            return;
        } else if (conditional && c->http_status == 409) {
            /* S3: a concurrent conditional write of the same key is in progress */
            if (j->tries < TS3_CLAIM_TRIES) {
                upstream_call_free(c);
                claim_put(j, 1);
                return;
            }
            j->result = TS_BUSY;
        } else {
            refused(j, c, j->key);
        }
    }
    upstream_call_free(c);
    job_done(j);
}

/* PUT our pending claim: If-None-Match: * (claim), or over a stale one. */
static void claim_put(struct job *j, int conditional)
{
    char *body = malloc(j->body_len + 1);
    struct upstream_call *c;

    j->tries++;
    j->step = conditional ? CLAIM_PUT : CLAIM_TAKE;
    if (body)
        memcpy(body, j->body, j->body_len + 1);
    c = body ? object_call(j->s, "PUT", j->key, body, j->body_len, "application/json", TS3_ERROR_MAX) : NULL;
    if (c && conditional && upstream_call_header(c, "If-None-Match: *")) {
        upstream_call_free(c);
        c = NULL;
    }
    if (job_submit(j, c, on_claim_put, j))
        job_done(j);
}

static int ts3_claim(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);
    struct upstream_call *c;
    char *body;

    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!valid_hash(op->hash))
        return job_abort(j, op, ERR_INVALID, "invalid request hash");
    if (key_object(j))
        return job_abort(j, op, ERR_INVALID, "invalid idempotency key");
    j->body = key_json(op, "pending", &j->body_len);
    body = j->body ? strdup(j->body) : NULL;
    if (!body)
        return job_abort(j, op, ERR_NOMEM, "out of memory");
    j->tries = 1;
    j->step = CLAIM_PUT;
    c = object_call(j->s, "PUT", j->key, body, j->body_len, "application/json", TS3_ERROR_MAX);
    if (c && upstream_call_header(c, "If-None-Match: *")) {
        upstream_call_free(c);
        c = NULL;
    }
    return job_start(j, c, on_claim_put);
}

static void on_key_done(struct upstream_call *c, void *arg)
{
    struct job *j = arg;
    if (answered(j, c, j->key) == 0) {
        int ok = j->step == RELEASE_DELETE ? c->http_status == 204 || c->http_status == 200 || c->http_status == 404
                                           : c->http_status == 200;
        if (!ok)
            refused(j, c, j->key);
    }
    upstream_call_free(c);
    job_done(j);
}

static int ts3_finish(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);
    char *body;
    size_t len = 0;

    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (!valid_hash(op->hash))
        return job_abort(j, op, ERR_INVALID, "invalid request hash");
    if (key_object(j))
        return job_abort(j, op, ERR_INVALID, "invalid idempotency key");
    if (!op->answer || op->answer_status < 100 || op->answer_status > 599)
        return job_abort(j, op, ERR_INVALID, "no answer to store");
    if (strnlen(op->answer, TS3_ANSWER_MAX + 1) > TS3_ANSWER_MAX)
        return job_abort(j, op, ERR_TOO_LARGE, "answer too large to store");
    body = key_json(op, "done", &len);
    if (!body)
        return job_abort(j, op, ERR_NOMEM, "out of memory");
    j->step = FINISH_PUT;
    return job_start(j, object_call(j->s, "PUT", j->key, body, len, "application/json", TS3_ERROR_MAX), on_key_done);
}

static int ts3_release(struct taskstore *st, struct taskstore_op *op)
{
    struct job *j = job_new(st, op);

    if (!j)
        return job_abort(NULL, op, ERR_NOMEM, "out of memory");
    if (key_object(j))
        return job_abort(j, op, ERR_INVALID, "invalid idempotency key");
    j->step = RELEASE_DELETE;
    return job_start(j, object_call(j->s, "DELETE", j->key, NULL, 0, NULL, TS3_ERROR_MAX), on_key_done);
}

/* ---- open / destroy -------------------------------------------------------- */

static void ts3_destroy(struct taskstore *st)
{
    struct ts3 *s = st ? st->priv : NULL;
    if (s) {
        s3_config_target_free(&s->ct);
        free(s->prefix);
        free(s);
    }
    free(st);
}

const struct taskstore_ops taskstore_s3_ops = {
    .name = "s3",
    .async = 1,
    .put = ts3_put,
    .get = ts3_get,
    .list = ts3_list,
    .claim = ts3_claim,
    .finish = ts3_finish,
    .release = ts3_release,
    .count = ts3_count,
    .destroy = ts3_destroy,
};

struct taskstore *taskstore_s3_open(const struct config *cfg, struct upstream *up, char *err, size_t cap)
{
    struct taskstore *st = calloc(1, sizeof *st);
    struct ts3 *s = calloc(1, sizeof *s);
    const char *prefix = cfg->s3_tasks_prefix ? cfg->s3_tasks_prefix : "tasks/";

    if (!st || !s) {
        free(st);
        free(s);
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    st->ops = &taskstore_s3_ops;
    st->priv = s;
    s->up = up;
    if (s3_config_target_init(&s->ct, cfg, err, cap))
        goto fail;
    if (!valid_prefix(prefix)) {
        snprintf(err, cap, "S3_TASKS_PREFIX must be at most %d of A-Z a-z 0-9 . _ - / and not start with /",
                 TS3_PREFIX_MAX);
        goto fail;
    }
    s->prefix = strdup(prefix);
    if (!s->prefix) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    return st;
fail:
    ts3_destroy(st);
    return NULL;
}
