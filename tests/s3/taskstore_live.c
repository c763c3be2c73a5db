/* taskstore_live.c - the S3 task store (taskstore_s3*.c) against a live,
 * SigV4-checking S3 server with conditional writes (tests/s3/run.sh starts
 * s3rver with the If-None-Match shim of s3rver-launch.js).
 *
 * Starts nothing: needs S3_ENDPOINT (loopback only), S3_BUCKET, S3_REGION,
 * S3_ACCESS_KEY, S3_SECRET_KEY as `tests/s3/s3-test-server.sh env` prints.
 * The store is opened as the server opens it: config_load (USE_S3=1 ...) and
 * an upstream I/O thread. Every run uses fresh prefixes, so it can be re-run
 * against the same server. Objects are also read with plain libcurl, to check
 * the layout of spec13.md. Prints "N passed, N failed".
 * Build: make build/taskstore_live.
 */
#include "config.h"
#include "err.h"
#include "s3.h"
#include "s3call.h"
#include "sigv4.h"
#include "taskstore.h"
#include "test.h"
#include "upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define T0 ((time_t)1795521600) /* 2026-11-24T12:00:00Z */
#define DAY 86400
#define WAIT_SECONDS 30
#define RACE_ROUNDS 12
#define MAX_OPS 512
#define BULK 1205 /* markers for a count over two pages */

/* ---- running ops --------------------------------------------------------- */

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls; /* done callbacks for this op: must end up exactly 1 */
};

static struct waiter waiters[MAX_OPS];
static size_t n_waiters;

static void on_done(struct taskstore_op *op, void *arg)
{
    struct waiter *w = arg;
    (void)op;
    pthread_mutex_lock(&w->mu);
    w->calls++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

enum kind { PUT, GET, LIST, CLAIM, FINISH, RELEASE, COUNT };

static int call(struct taskstore *s, enum kind k, struct taskstore_op *op)
{
    switch (k) {
    case PUT:
        return s->ops->put(s, op);
    case GET:
        return s->ops->get(s, op);
    case LIST:
        return s->ops->list(s, op);
    case CLAIM:
        return s->ops->claim(s, op);
    case FINISH:
        return s->ops->finish(s, op);
    case RELEASE:
        return s->ops->release(s, op);
    case COUNT:
        return s->ops->count(s, op);
    }
    return ERR_INVALID;
}

/* Start op: *pending is 1 when done will run (the op is then in flight). */
static struct waiter *start(struct taskstore *s, enum kind k, struct taskstore_op *op, int *rc)
{
    struct waiter *w;
    if (n_waiters >= MAX_OPS) {
        fprintf(stderr, "too many ops\n");
        exit(2);
    }
    w = &waiters[n_waiters++];
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    op->done = on_done;
    op->arg = w;
    *rc = call(s, k, op);
    return w;
}

/* Wait for one in-flight op; an op that never finishes ends the run. */
static void wait_for(struct waiter *w)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&w->mu);
    while (w->calls == 0)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT) {
            fprintf(stderr, "FAIL: an operation did not finish within %d s\n", WAIT_SECONDS);
            exit(1);
        }
    pthread_mutex_unlock(&w->mu);
}

/* Run op to its end: its result (the synchronous return when it had one).
 * Checks the contract: PENDING then done, or a finished return without done. */
static int run(struct taskstore *s, enum kind k, struct taskstore_op *op)
{
    int rc;
    struct waiter *w = start(s, k, op, &rc);
    if (rc == TASKSTORE_PENDING) {
        wait_for(w);
        return op->result;
    }
    TEST_ASSERT(rc <= 0, "a finished call returns 0 or ERR_* (got %d)", rc);
    TEST_ASSERT(op->result == rc, "op->result %d matches the return %d", op->result, rc);
    usleep(20000);
    TEST_ASSERT(w->calls == 0, "done is not called when the call finished at once");
    return rc;
}

static void new_op(struct taskstore_op *op, time_t now)
{
    memset(op, 0, sizeof *op);
    op->now = now;
    op->credits = -1;
}

/* ---- raw S3 access (plain libcurl, not the store) -------------------------- */

struct raw {
    long status;
    char body[65536];
    size_t len;
    char ctype[128];
};

static size_t raw_write(char *d, size_t size, size_t n, void *p)
{
    struct raw *r = p;
    size_t add = size * n;
    if (add > sizeof r->body - 1 - r->len)
        return 0;
    memcpy(r->body + r->len, d, add);
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t raw_header(char *d, size_t size, size_t n, void *p)
{
    struct raw *r = p;
    size_t len = size * n;
    if (len > 13 && strncasecmp(d, "Content-Type:", 13) == 0) {
        size_t i = 13, e = len;
        while (i < e && d[i] == ' ')
            i++;
        while (e > i && (d[e - 1] == '\r' || d[e - 1] == '\n'))
            e--;
        snprintf(r->ctype, sizeof r->ctype, "%.*s", (int)(e - i), d + i);
    }
    return len;
}

static const struct s3_target *raw_target;
static CURL *raw_handle; /* one handle: its connection is reused */

static long raw_req(const char *method, const char *key, struct raw *r)
{
    struct s3_request *rq = malloc(sizeof *rq);
    CURL *h = raw_handle ? raw_handle : (raw_handle = curl_easy_init());
    struct curl_slist *hl = NULL;

    memset(r, 0, sizeof *r);
    r->status = -1;
    if (!rq || !h)
        goto out;
    curl_easy_reset(h);
    if (strcmp(method, "PUT") == 0
            ? s3_sign_put(raw_target, key, "application/octet-stream", 0, SIGV4_EMPTY_SHA256, time(NULL), rq)
            : s3_sign_get(raw_target, method, key, time(NULL), rq))
        goto out;
    for (size_t i = 0; i < rq->nheaders; i++)
        hl = curl_slist_append(hl, rq->headers[i]);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, raw_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, raw_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
out:
    curl_slist_free_all(hl);
    free(rq);
    return r->status;
}

/* ---- set-up ---------------------------------------------------------------- */

static const char *env_names[][2] = {
    {"USE_S3", NULL},
    {"S3_BUCKET", NULL},
    {"AWS_REGION", NULL},
    {"AWS_ACCESS_KEY_ID", NULL},
    {"AWS_SECRET_ACCESS_KEY", NULL},
    {"S3_ENDPOINT", NULL},
    {"S3_FORCE_PATH_STYLE", NULL},
    {"S3_TASKS_PREFIX", NULL},
    {"UPLOAD_DIR", NULL},
};

static const char *fake_env(const char *name)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        if (strcmp(env_names[i][0], name) == 0)
            return env_names[i][1];
    return NULL;
}

static void set_env(const char *name, const char *value)
{
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        if (strcmp(env_names[i][0], name) == 0)
            env_names[i][1] = value;
}

static struct taskstore *open_store(struct config *cfg, struct upstream *up, const char *prefix)
{
    char errors[1024], err[256];
    struct taskstore *s;
    set_env("S3_TASKS_PREFIX", prefix);
    if (config_load(cfg, NULL, fake_env, errors, sizeof errors)) {
        fprintf(stderr, "config: %s\n", errors);
        exit(2);
    }
    s = taskstore_s3_open(cfg, up, err, sizeof err);
    TEST_ASSERT(s != NULL, "taskstore_s3_open (prefix %s): %s", prefix ? prefix : "(default)", s ? "" : err);
    if (!s)
        exit(1);
    return s;
}

/* ---- the record of a task --------------------------------------------------- */

static void record(char *out, size_t cap, const char *id, time_t created, double credits, const char *extra)
{
    char cr[32];
    if (credits < 0)
        snprintf(cr, sizeof cr, "null");
    else
        snprintf(cr, sizeof cr, "%g", credits);
    snprintf(out, cap,
             "{\"id\":\"%s\",\"created\":%lld,\"state\":\"success\",\"prompt\":\"caf\xc3\xa9 \\\"q\\\" \\u2615 %s\","
             "\"credits\":%s,\"result_urls\":[]}",
             id, (long long)created, extra, cr);
}

static int put_task(struct taskstore *s, const char *id, time_t created, double credits, const char *text)
{
    struct taskstore_op op;
    int rc;
    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "%s", id);
    op.record = text;
    op.created = created;
    op.credits = credits;
    rc = run(s, PUT, &op);
    TEST_ASSERT(rc == 0, "put %s: %s (%s)", id, err_str(rc), op.error);
    taskstore_op_clear(&op);
    return rc;
}

/* ---- the checks ---------------------------------------------------------------- */

static void test_put_get(struct taskstore *s, const char *prefix)
{
    struct taskstore_op op;
    struct raw r;
    char text[1024], text2[1024], key[512];
    int rc;

    record(text, sizeof text, "task_rt-1", T0, 5, "round trip");
    TEST_ASSERT(put_task(s, "task_rt-1", T0, 5, text) == 0, "first put");

    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_rt-1");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == 0, "get: %s (%s)", err_str(rc), op.error);
    TEST_STR_EQ(op.text, text, "get returns the record byte for byte");
    taskstore_op_clear(&op);
    TEST_ASSERT(op.text == NULL, "taskstore_op_clear frees the text");

    /* the layout: record, index marker, credits marker */
    snprintf(key, sizeof key, "%sr/task_rt-1.json", prefix);
    TEST_ASSERT(raw_req("GET", key, &r) == 200 && strcmp(r.body, text) == 0, "record object %s (HTTP %ld)", key,
                r.status);
    TEST_STR_EQ(r.ctype, "application/json", "record Content-Type");
    snprintf(key, sizeof key, "%si/%013lld-task_rt-1", prefix, 9999999999999LL - (long long)T0 * 1000);
    TEST_ASSERT(raw_req("GET", key, &r) == 200 && r.len == 0, "empty index marker %s (HTTP %ld)", key, r.status);
    snprintf(key, sizeof key, "%sc/20261124/task_rt-1_5", prefix);
    TEST_ASSERT(raw_req("GET", key, &r) == 200 && r.len == 0, "credits marker %s (HTTP %ld)", key, r.status);

    /* replace: the new text wins */
    record(text2, sizeof text2, "task_rt-1", T0, 5, "replaced");
    TEST_ASSERT(put_task(s, "task_rt-1", T0, 5, text2) == 0, "second put");
    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_rt-1");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == 0 && op.text && strcmp(op.text, text2) == 0, "get after replace: %s", op.text ? op.text : "-");
    taskstore_op_clear(&op);

    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_never-put");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == ERR_NOT_FOUND, "unknown id: %s", err_str(rc));
    TEST_ASSERT(op.text == NULL, "no text for an unknown id");
    taskstore_op_clear(&op);

    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "../r/x");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == ERR_INVALID && op.error[0], "id with a slash refused at once: %s", err_str(rc));

    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_big");
    {
        size_t n = 300 * 1024;
        char *big = malloc(n + 1);
        if (big) {
            memset(big, 'x', n);
            big[n] = '\0';
            op.record = big;
            op.created = T0;
            rc = run(s, PUT, &op);
            TEST_ASSERT(rc == ERR_TOO_LARGE, "a 300 KiB record is refused: %s", err_str(rc));
            free(big);
        }
    }
}

static const char *const list_ids[] = {"task_l1", "task_l2", "task_l3", "task_l4", "task_l5"};
static const time_t list_created[] = {T0 - 3 * DAY, T0 - 2 * DAY, T0 + 30, T0 + 40, T0 + 50};
static const double list_credits[] = {1, 2, 3.5, -1, 5};
static char list_text[5][1024];

/* One page: the records and the cursor. */
static int list_page(struct taskstore *s, int limit, const char *cursor, struct taskstore_op *op)
{
    new_op(op, time(NULL));
    op->limit = limit;
    snprintf(op->cursor, sizeof op->cursor, "%s", cursor);
    return run(s, LIST, op);
}

/* Page through the whole index by `limit`: every task once, newest first, each
 * record the text put. Returns the number of pages. */
static int paginate(struct taskstore *s, int limit, const char *what)
{
    static const int want[] = {4, 3, 2, 1, 0}; /* list_ids indices, newest first */
    struct taskstore_op op;
    char cursor[160];
    size_t seen = 0;
    int pages = 0, rc;

    cursor[0] = '\0';
    do {
        rc = list_page(s, limit, cursor, &op);
        TEST_ASSERT(rc == 0, "%s: page %d: %s (%s)", what, pages, err_str(rc), op.error);
        TEST_ASSERT(op.n_records <= (size_t)limit, "%s: page %d holds at most %d records (%zu)", what, pages, limit,
                    op.n_records);
        for (size_t i = 0; i < op.n_records; i++, seen++) {
            TEST_ASSERT(seen < 5, "%s: more than 5 records", what);
            if (seen < 5)
                TEST_STR_EQ(op.records[i], list_text[want[seen]], "listed newest first, the stored text");
        }
        snprintf(cursor, sizeof cursor, "%s", op.cursor);
        taskstore_op_clear(&op);
        pages++;
    } while (cursor[0] && pages < 10);
    TEST_ASSERT(seen == 5, "%s: pagination saw every task once (%zu)", what, seen);
    return pages;
}

static void test_list(struct taskstore *s, const char *prefix)
{
    struct taskstore_op op;
    struct raw r;
    char key[512];
    int rc, pages;

    for (int i = 0; i < 5; i++) {
        record(list_text[i], sizeof list_text[i], list_ids[i], list_created[i], list_credits[i], "listed");
        put_task(s, list_ids[i], list_created[i], list_credits[i], list_text[i]);
    }
    pages = paginate(s, 2, "limit 2");
    TEST_ASSERT(pages == 3, "5 tasks by 2: 3 pages (%d)", pages);
    rc = list_page(s, 2, "", &op);
    TEST_ASSERT(rc == 0 && op.n_records == 2, "first page: 2 records (%zu)", op.n_records);
    snprintf(key, sizeof key, "%013lld-task_l4", 9999999999999LL - (long long)list_created[3] * 1000);
    TEST_STR_EQ(op.cursor, key, "the cursor is the last marker listed");
    taskstore_op_clear(&op);
    rc = list_page(s, 4, "", &op);
    TEST_ASSERT(rc == 0 && op.n_records == 4 && op.cursor[0], "4 of 5: a cursor (%zu, %s)", op.n_records, op.cursor);
    taskstore_op_clear(&op);
    rc = list_page(s, 5, "", &op);
    TEST_ASSERT(rc == 0 && op.n_records == 5 && op.cursor[0] == '\0', "5 of 5: no cursor (%zu, %s)", op.n_records,
                op.cursor);
    taskstore_op_clear(&op);
    TEST_ASSERT(op.records == NULL && op.n_records == 0, "taskstore_op_clear frees the records");

    /* an update keeps one index entry, and its text */
    record(list_text[2], sizeof list_text[2], "task_l3", list_created[2], 3.5, "updated");
    put_task(s, "task_l3", list_created[2], 3.5, list_text[2]);
    rc = list_page(s, TASKSTORE_LIST_MAX, "", &op);
    TEST_ASSERT(rc == 0 && op.n_records == 5, "all tasks in one page after an update: %zu", op.n_records);
    TEST_ASSERT(op.n_records == 5 && strcmp(op.records[2], list_text[2]) == 0, "updated text listed");
    taskstore_op_clear(&op);

    /* stray keys under i/: one not of our shape, and a marker whose record is gone */
    snprintf(key, sizeof key, "%si/junk", prefix);
    TEST_ASSERT(raw_req("PUT", key, &r) == 200, "stray key put (HTTP %ld)", r.status);
    snprintf(key, sizeof key, "%si/%013lld-task_ghost", prefix, 9999999999999LL - (long long)(T0 + 45) * 1000);
    TEST_ASSERT(raw_req("PUT", key, &r) == 200, "marker without record put (HTTP %ld)", r.status);
    /* and two among the markers: a page of 2 must read on (continuation tokens) to fill itself */
    for (int i = 47; i <= 48; i++) {
        snprintf(key, sizeof key, "%si/%013lld-bad!id", prefix, 9999999999999LL - (long long)(T0 + i) * 1000);
        TEST_ASSERT(raw_req("PUT", key, &r) == 200, "stray key among markers put (HTTP %ld)", r.status);
    }
    rc = list_page(s, TASKSTORE_LIST_MAX, "", &op);
    TEST_ASSERT(rc == 0 && op.n_records == 5 && op.cursor[0] == '\0', "stray keys skipped: %zu records, cursor %s",
                op.n_records, op.cursor);
    taskstore_op_clear(&op);
    pages = paginate(s, 2, "limit 2 with stray keys");
    TEST_ASSERT(pages >= 3 && pages <= 4, "pages with stray keys: %d", pages);
    rc = list_page(s, 2, "", &op);
    snprintf(key, sizeof key, "%013lld-task_ghost", 9999999999999LL - (long long)(T0 + 45) * 1000);
    TEST_ASSERT(rc == 0 && op.n_records == 1, "first page: l5, the ghost's record is gone (%zu)", op.n_records);
    TEST_STR_EQ(op.cursor, key, "the page read past two stray keys to its second marker");
    taskstore_op_clear(&op);

    rc = list_page(s, 0, "", &op);
    TEST_ASSERT(rc == ERR_INVALID, "limit 0 refused: %s", err_str(rc));
    rc = list_page(s, TASKSTORE_LIST_MAX + 1, "", &op);
    TEST_ASSERT(rc == ERR_INVALID, "limit 101 refused: %s", err_str(rc));
    rc = list_page(s, 2, "../../x", &op);
    TEST_ASSERT(rc == ERR_INVALID, "a cursor not of our making refused: %s", err_str(rc));
}

static void count_since(struct taskstore *s, time_t since, long want, double want_since, double want_total)
{
    struct taskstore_op op;
    int rc;
    new_op(&op, time(NULL));
    op.since = since;
    op.count = -7;
    rc = run(s, COUNT, &op);
    TEST_ASSERT(rc == 0, "count since %lld: %s (%s)", (long long)since, err_str(rc), op.error);
    TEST_ASSERT(op.count == want, "count since %lld: %ld, want %ld", (long long)since, op.count, want);
    TEST_ASSERT(op.spent_since == want_since, "spent since %lld: %g, want %g", (long long)since, op.spent_since,
                want_since);
    TEST_ASSERT(op.spent_total == want_total, "spent total: %g, want %g", op.spent_total, want_total);

    /* count_only (the daily cap): the same count, and no sums */
    new_op(&op, time(NULL));
    op.since = since;
    op.count = -7;
    op.count_only = 1;
    op.spent_since = op.spent_total = -1;
    rc = run(s, COUNT, &op);
    TEST_ASSERT(rc == 0 && op.count == want, "count_only since %lld: %ld, want %ld (%s)", (long long)since, op.count,
                want, op.error);
    TEST_ASSERT(op.spent_since == 0 && op.spent_total == 0, "count_only since %lld: no sums (%g, %g)", (long long)since,
                op.spent_since, op.spent_total);
}

static void test_count(struct taskstore *s)
{
    time_t midnight = T0 - 12 * 3600;
    char text[1024];

    /* tasks: l1 -3 d (1), l2 -2 d (2), l3 +30 s (3.5), l4 +40 s (unknown), l5 +50 s (5); a ghost marker at +45 s */
    count_since(s, midnight, 4, 8.5, 11.5);
    count_since(s, T0 + 41, 2, 8.5, 11.5); /* ghost, l5: the day is the same, credits are by day */
    count_since(s, T0 - 2 * DAY, 5, 10.5, 11.5);
    count_since(s, 0, 6, 11.5, 11.5);
    count_since(s, T0 + DAY, 0, 0, 11.5);

    /* credits are written once: l4's first known credits count, l5's changed credits do not */
    record(text, sizeof text, "task_l4", list_created[3], 4, "credited");
    put_task(s, "task_l4", list_created[3], 4, text);
    record(text, sizeof text, "task_l5", list_created[4], 6, "credited again");
    put_task(s, "task_l5", list_created[4], 6, text);
    count_since(s, midnight, 4, 12.5, 15.5);
}

/* More markers than one ListObjectsV2 page holds (1000): count reads on by continuation token. */
static void test_count_pages(struct taskstore *s, const char *prefix)
{
    struct raw r;
    char key[512];
    int bad = 0;

    for (int i = 0; i < BULK; i++) {
        snprintf(key, sizeof key, "%si/%013lld-task_b%d", prefix, 9999999999999LL - (long long)(T0 + i) * 1000, i);
        bad += raw_req("PUT", key, &r) != 200;
        snprintf(key, sizeof key, "%sc/20261124/task_b%d_0.5", prefix, i);
        bad += raw_req("PUT", key, &r) != 200;
    }
    TEST_ASSERT(bad == 0, "%d of %d bulk marker PUTs failed", bad, 2 * BULK);
    count_since(s, T0, BULK, BULK * 0.5, BULK * 0.5);
    count_since(s, T0 + 10, BULK - 10, BULK * 0.5, BULK * 0.5);
}

/* A prefix whose credits markers cannot be listed (s3rver-launch.js answers a
 * ListObjectsV2 of no-credits-listing/.../c/ with 500): a count with sums
 * fails, count_only does not list c/ at all. */
static void test_count_only(struct taskstore *s, const char *prefix)
{
    struct taskstore_op op;
    char text[1024];
    int rc;

    record(text, sizeof text, "task_co-1", T0 + 5, 3, "count only");
    put_task(s, "task_co-1", T0 + 5, 3, text);
    new_op(&op, time(NULL));
    op.since = T0;
    rc = run(s, COUNT, &op);
    TEST_ASSERT(rc == ERR_UPSTREAM && strstr(op.error, "HTTP 500") && strstr(op.error, "c/ (list)"),
                "a count with sums lists %sc/, which fails here: %s (%s)", prefix, err_str(rc), op.error);
    new_op(&op, time(NULL));
    op.since = T0;
    op.count_only = 1;
    rc = run(s, COUNT, &op);
    TEST_ASSERT(rc == 0 && op.count == 1 && op.spent_since == 0 && op.spent_total == 0,
                "count_only never lists %sc/: %s, count %ld (%s)", prefix, err_str(rc), op.count, op.error);
}

static int claim(struct taskstore *s, const char *key, const char *hash, time_t now, struct taskstore_op *op)
{
    new_op(op, now);
    snprintf(op->key, sizeof op->key, "%s", key);
    snprintf(op->hash, sizeof op->hash, "%s", hash);
    return run(s, CLAIM, op);
}

static int key_op(struct taskstore *s, enum kind k, const char *key, const char *hash, const char *answer, time_t now)
{
    struct taskstore_op op;
    int rc;
    new_op(&op, now);
    snprintf(op.key, sizeof op.key, "%s", key);
    snprintf(op.hash, sizeof op.hash, "%s", hash);
    op.answer = answer;
    op.answer_status = 200;
    snprintf(op.task_id, sizeof op.task_id, "task_claimed");
    rc = run(s, k, &op);
    if (rc)
        fprintf(stderr, "  (%s)\n", op.error);
    taskstore_op_clear(&op);
    return rc;
}

static const char *rname(int r)
{
    switch (r) {
    case TS_CLAIMED:
        return "TS_CLAIMED";
    case TS_REPLAY:
        return "TS_REPLAY";
    case TS_MISMATCH:
        return "TS_MISMATCH";
    case TS_BUSY:
        return "TS_BUSY";
    default:
        return err_str(r);
    }
}

static void test_claims(struct taskstore *s, const char *prefix)
{
    struct taskstore_op op;
    char h1[65], h2[65], key[512];
    const char *answer = "{\"code\":200,\"msg\":\"success\",\"data\":{\"taskId\":\"task_claimed\"}}\n\t\"caf\xc3\xa9\"";
    time_t now = time(NULL);
    struct raw r;
    int rc;

    sigv4_sha256_hex("body one", 8, h1);
    sigv4_sha256_hex("body two", 8, h2);

    rc = claim(s, "order 42/a", h1, now, &op);
    TEST_ASSERT(rc == TS_CLAIMED, "first claim: %s (%s)", rname(rc), op.error);
    rc = claim(s, "order 42/a", h1, now, &op);
    TEST_ASSERT(rc == TS_BUSY, "second claim, same hash, while pending: %s", rname(rc));
    rc = claim(s, "order 42/a", h2, now, &op);
    TEST_ASSERT(rc == TS_MISMATCH, "claim with another hash: %s", rname(rc));
    TEST_ASSERT(op.text == NULL, "no answer with a mismatch");

    /* the key's object is named by the key's hash, never the key itself */
    {
        char kh[65];
        sigv4_sha256_hex("order 42/a", 10, kh);
        snprintf(key, sizeof key, "%sk/%s.json", prefix, kh);
        TEST_ASSERT(raw_req("GET", key, &r) == 200 && strstr(r.body, "\"state\":\"pending\"") != NULL &&
                        strstr(r.body, h1) != NULL,
                    "pending claim object %s: %s", key, r.body);
    }

    TEST_ASSERT(key_op(s, FINISH, "order 42/a", h1, answer, now) == 0, "finish");
    rc = claim(s, "order 42/a", h1, now + 5, &op);
    TEST_ASSERT(rc == TS_REPLAY, "claim after finish: %s", rname(rc));
    TEST_STR_EQ(op.text, answer, "the replayed answer is the stored one, byte for byte");
    TEST_ASSERT(op.answer_status == 200, "replayed status %d", op.answer_status);
    taskstore_op_clear(&op);
    rc = claim(s, "order 42/a", h2, now + 5, &op);
    TEST_ASSERT(rc == TS_MISMATCH, "other hash after finish: %s", rname(rc));
    rc = claim(s, "order 42/a", h2, now + IDEMPOTENCY_TTL_SECONDS + 10, &op);
    TEST_ASSERT(rc == TS_CLAIMED, "an answer older than the TTL is taken over: %s", rname(rc));
    rc = claim(s, "order 42/a", h2, now + IDEMPOTENCY_TTL_SECONDS + 11, &op);
    TEST_ASSERT(rc == TS_BUSY, "and is pending again: %s", rname(rc));

    TEST_ASSERT(key_op(s, RELEASE, "order 42/a", h1, NULL, now) == 0, "release");
    rc = claim(s, "order 42/a", h1, now, &op);
    TEST_ASSERT(rc == TS_CLAIMED, "claim after release: %s", rname(rc));
    TEST_ASSERT(key_op(s, RELEASE, "never claimed", h1, NULL, now) == 0, "release of an unknown key is fine");

    /* a claim left by a crash is taken over once stale, and only then */
    rc = claim(s, "crashed", h1, now, &op);
    TEST_ASSERT(rc == TS_CLAIMED, "claim: %s", rname(rc));
    rc = claim(s, "crashed", h1, now + IDEMPOTENCY_STALE_SECONDS - 5, &op);
    TEST_ASSERT(rc == TS_BUSY, "not stale yet: %s", rname(rc));
    rc = claim(s, "crashed", h1, now + IDEMPOTENCY_STALE_SECONDS + 5, &op);
    TEST_ASSERT(rc == TS_CLAIMED, "stale claim taken over: %s", rname(rc));

    /* two claims of one fresh key at the same moment: exactly one wins */
    for (int round = 0; round < RACE_ROUNDS; round++) {
        struct taskstore_op a, b;
        struct waiter *wa, *wb;
        int ra, rb;
        char k[64];
        snprintf(k, sizeof k, "race-%d", round);
        new_op(&a, now);
        new_op(&b, now);
        snprintf(a.key, sizeof a.key, "%s", k);
        snprintf(b.key, sizeof b.key, "%s", k);
        snprintf(a.hash, sizeof a.hash, "%s", h1);
        snprintf(b.hash, sizeof b.hash, "%s", h1);
        wa = start(s, CLAIM, &a, &ra);
        wb = start(s, CLAIM, &b, &rb);
        TEST_ASSERT(ra == TASKSTORE_PENDING && rb == TASKSTORE_PENDING, "both claims in flight");
        if (ra != TASKSTORE_PENDING || rb != TASKSTORE_PENDING)
            continue;
        wait_for(wa);
        wait_for(wb);
        TEST_ASSERT((a.result == TS_CLAIMED) + (b.result == TS_CLAIMED) == 1,
                    "round %d: exactly one of two simultaneous claims wins (%s, %s)", round, rname(a.result),
                    rname(b.result));
        TEST_ASSERT(a.result == TS_BUSY || b.result == TS_BUSY, "round %d: the other is busy (%s, %s)", round,
                    rname(a.result), rname(b.result));
    }

    rc = claim(s, "k", "not a hash", now, &op);
    TEST_ASSERT(rc == ERR_INVALID, "bad hash refused at once: %s", rname(rc));
    rc = claim(s, "", h1, now, &op);
    TEST_ASSERT(rc == ERR_INVALID, "empty key refused at once: %s", rname(rc));
}

/* A prefix our ListBucket does not cover (the templates' policy on AWS): S3 answers a
 * missing key with 403 AccessDenied, which must still read as "no such object". */
static void test_no_list_permission(struct taskstore *s, struct upstream *up, const char *prefix)
{
    struct taskstore_op op;
    struct config cfg;
    struct taskstore *bad;
    const char *good_sk = fake_env("AWS_SECRET_ACCESS_KEY");
    char text[1024];
    int rc;

    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_nl-0");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == ERR_NOT_FOUND, "403 AccessDenied on a missing record is not found: %s (%s)", err_str(rc),
                op.error);
    record(text, sizeof text, "task_nl-1", T0, 2, "no list");
    TEST_ASSERT(put_task(s, "task_nl-1", T0, 2, text) == 0, "first put when the old record reads as 403");
    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_nl-1");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == 0 && op.text && strcmp(op.text, text) == 0, "and it reads back: %s", err_str(rc));
    taskstore_op_clear(&op);
    rc = list_page(s, 10, "", &op);
    TEST_ASSERT(rc == 0 && op.n_records == 1 && strcmp(op.records[0], text) == 0, "and is listed (%zu)", op.n_records);
    taskstore_op_clear(&op);

    set_env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
    bad = open_store(&cfg, up, prefix);
    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_nl-0");
    rc = run(bad, GET, &op);
    TEST_ASSERT(rc == ERR_UPSTREAM && strstr(op.error, "SignatureDoesNotMatch") != NULL,
                "another 403 is an error, not a missing record: %s (%s)", err_str(rc), op.error);
    taskstore_close(bad);
    config_free(&cfg);
    set_env("AWS_SECRET_ACCESS_KEY", good_sk);
}

/* S3 unreachable, or refusing our signature: an error with a reason, via done. */
static void test_failures(struct taskstore *good, const char *prefix, struct upstream *up, const char *endpoint_dead)
{
    struct config cfg;
    struct taskstore *s;
    struct taskstore_op op;
    const char *good_sk = fake_env("AWS_SECRET_ACCESS_KEY");
    const char *good_ep = fake_env("S3_ENDPOINT");
    char h[65];
    int rc;

    sigv4_sha256_hex("x", 1, h);
    rc = claim(good, "taken", h, time(NULL), &op);
    TEST_ASSERT(rc == TS_CLAIMED, "claim with the right key: %s", rname(rc));
    set_env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
    s = open_store(&cfg, up, prefix);
    new_op(&op, time(NULL));
    snprintf(op.id, sizeof op.id, "task_x");
    rc = run(s, GET, &op);
    TEST_ASSERT(rc == ERR_UPSTREAM && strstr(op.error, "403") != NULL, "bad signature: %s (%s)", err_str(rc), op.error);
    /* the conditional PUT is still signature-checked first: 403, not 412 for a key that exists */
    rc = claim(s, "taken", h, time(NULL), &op);
    TEST_ASSERT(rc == ERR_UPSTREAM && strstr(op.error, "HTTP 403 to PUT") != NULL, "badly signed claim: %s (%s)",
                rname(rc), op.error);
    taskstore_close(s);
    config_free(&cfg);
    set_env("AWS_SECRET_ACCESS_KEY", good_sk);

    set_env("S3_ENDPOINT", endpoint_dead);
    s = open_store(&cfg, up, prefix);
    new_op(&op, time(NULL));
    op.limit = 5;
    rc = run(s, LIST, &op);
    TEST_ASSERT(rc == ERR_UPSTREAM && op.error[0], "S3 unreachable: %s (%s)", err_str(rc), op.error);
    taskstore_close(s);
    config_free(&cfg);
    set_env("S3_ENDPOINT", good_ep);

    {
        char err[256];
        set_env("S3_TASKS_PREFIX", "/abs");
        if (config_load(&cfg, NULL, fake_env, err, sizeof err) == 0) {
            s = taskstore_s3_open(&cfg, up, err, sizeof err);
            TEST_ASSERT(s == NULL && strstr(err, "S3_TASKS_PREFIX") != NULL, "a bad prefix is refused: %s", err);
            taskstore_close(s);
            config_free(&cfg);
        }
    }
}

int main(void)
{
    const char *ep = getenv("S3_ENDPOINT"), *bucket = getenv("S3_BUCKET"), *region = getenv("S3_REGION");
    const char *ak = getenv("S3_ACCESS_KEY"), *sk = getenv("S3_SECRET_KEY");
    /* s3rver-launch.js fakes a missing ListBucket permission, and failing credits listings, under these */
    static const char *const lead[7] = {"", "", "", "", "", "no-list-permission/", "no-credits-listing/"};
    char prefix[7][96], dead[64];
    struct config cfg[7];
    struct taskstore *s[7];
    struct upstream *up;
    struct s3_config_target raw;
    char err[256];

    if (!ep || !bucket || !ak || !sk) {
        fprintf(stderr, "run: eval \"$(tests/s3/s3-test-server.sh env)\"\n");
        return 2;
    }
    if (strncmp(ep, "http://127.0.0.1:", 17) != 0 && strncmp(ep, "http://localhost:", 17) != 0) {
        fprintf(stderr, "refusing non-loopback endpoint %s\n", ep);
        return 2;
    }
    set_env("USE_S3", "1");
    set_env("S3_BUCKET", bucket);
    set_env("AWS_REGION", region ? region : "us-east-1");
    set_env("AWS_ACCESS_KEY_ID", ak);
    set_env("AWS_SECRET_ACCESS_KEY", sk);
    set_env("S3_ENDPOINT", ep);
    set_env("S3_FORCE_PATH_STYLE", "1");
    set_env("UPLOAD_DIR", "/tmp");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    up = upstream_start(32, 0);
    if (!up)
        return 2;
    for (int i = 0; i < 7; i++)
        snprintf(prefix[i], sizeof prefix[i], "%stslive-%ld-%d/%c/", lead[i], (long)time(NULL), (int)getpid(),
                 "pglnfdo"[i]);

    /* the default prefix is tasks/ */
    {
        struct config c0;
        struct taskstore *d = open_store(&c0, up, NULL);
        TEST_STR_EQ(d->ops->name, "s3", "backend name");
        TEST_STR_EQ(c0.s3_tasks_prefix, "tasks/", "default S3_TASKS_PREFIX");
        taskstore_close(d);
        config_free(&c0);
    }
    for (int i = 0; i < 7; i++)
        s[i] = open_store(&cfg[i], up, prefix[i]);
    if (s3_config_target_init(&raw, &cfg[0], err, sizeof err)) {
        fprintf(stderr, "raw target: %s\n", err);
        return 2;
    }
    raw_target = &raw.t;

    test_put_get(s[0], prefix[0]);
    test_list(s[2], prefix[2]);
    test_count(s[2]);
    test_claims(s[1], prefix[1]);
    test_count_pages(s[3], prefix[3]);
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", 1); /* nothing listens on port 1 */
    test_failures(s[4], prefix[4], up, dead);
    test_no_list_permission(s[5], up, prefix[5]);
    test_count_only(s[6], prefix[6]);

    /* every op that went PENDING got exactly one done, even a while later */
    usleep(300000);
    {
        size_t bad = 0;
        for (size_t i = 0; i < n_waiters; i++)
            if (waiters[i].calls > 1)
                bad++;
        TEST_ASSERT(bad == 0, "%zu ops had done called more than once", bad);
    }
    upstream_stop(up);
    curl_easy_cleanup(raw_handle);
    for (int i = 0; i < 7; i++) {
        taskstore_close(s[i]);
        config_free(&cfg[i]);
    }
    s3_config_target_free(&raw);
    curl_global_cleanup();
    return test_report();
}
