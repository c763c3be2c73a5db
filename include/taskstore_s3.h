/* taskstore_s3.h - private to the S3 task store (src/taskstore_s3*.c); the
 * interface is taskstore.h. The store keeps its tasks as S3 objects under
 * S3_TASKS_PREFIX (spec13.md, "S3 layout"), signed with our own SigV4 (s3.h)
 * and run on the upstream I/O thread:
 *
 *   <p>r/<id>.json                          the record, as given (application/json)
 *   <p>i/<9999999999999 - created_ms>-<id>  empty index marker: key order is newest first
 *   <p>c/<YYYYMMDD>/<id>_<credits>          empty credits marker (the UTC day the task was created)
 *   <p>k/<hex sha256 of the key>.json       an Idempotency-Key and its answer
 *
 * The modules:
 *   taskstore_s3.c          the store (open, destroy, the ops table) and the key names above
 *   taskstore_s3_job.c      jobs, signed S3 calls, reading S3's answers, the listing pager
 *   taskstore_s3_records.c  put, get, list
 *   taskstore_s3_keys.c     Idempotency-Keys: claim, finish, release
 *   taskstore_s3_count.c    count (the spending cap and /credits)
 *
 * Each operation is a job: a small state machine whose steps are S3 calls.
 * The first call is submitted from the caller's thread, and after that the
 * job is only touched from the calls' done callbacks, which also submit the
 * next calls. A call submitted from a done callback runs on the same upstream
 * I/O thread (upstream.h), so all of a job's callbacks run on the one thread
 * its first call went to, one at a time: no job needs a lock, and several
 * calls of one job may be in flight at once (the record GETs of a list, the
 * markers of a put). Never submit a job's second call from another thread.
 * The store itself is read-only after open.
 *
 * A module's job is its own struct whose first member is a struct ts3_job
 * (ts3_job_new allocates it whole); what the module's part owns, its
 * release callback frees. Listings are hostile input: the answer size is
 * capped, and every key must have the exact shape written here or it is
 * skipped. */
#ifndef PPA_TASKSTORE_S3_H
#define PPA_TASKSTORE_S3_H

#include "s3.h"
#include "s3call.h"
#include "taskstore.h"

#include <stddef.h>
#include <time.h>

struct upstream;
struct upstream_call;

#define TS3_TIMEOUT_MS 20000
#define TS3_ERROR_MAX (64 * 1024) /* the body of an answer we only check the status of */
#define TS3_PREFIX_MAX 256
#define TS3_INV_MAX 9999999999999LL /* index markers sort by this minus created_ms */
#define TS3_ID_MAX 128
#define TS3_MARKER_MAX (13 + 1 + TS3_ID_MAX + 1) /* "<13 digits>-<id>" + NUL: also the list cursor */

/* The store (taskstore.priv), read-only after taskstore_s3_open. */
struct ts3 {
    struct s3_config_target ct; /* owned */
    char *prefix;               /* S3_TASKS_PREFIX (owned): "" or e.g. "tasks/" */
    struct upstream *up;        /* the I/O threads (not owned) */
};

/* ---- key names (taskstore_s3.c) --------------------------------------------- */

/* 1 when s is a task id as KIE makes them: 1-128 of [A-Za-z0-9._-], not starting with '.'. */
int ts3_valid_id(const char *s);

/* out = the store's prefix + the formatted rest; 0, or ERR_TOO_LARGE when it
 * does not fit in cap (out is then not a key). */
int ts3_make_key(const struct ts3 *s, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What follows "<p><sub>" in key (sub is "i/", "c/"...), or NULL when key is not under it. */
const char *ts3_key_rest(const struct ts3 *s, const char *key, const char *sub);

/* An index marker's name "<13 digits>-<id>": the inverted creation time in *inv. 0 or -1. */
int ts3_parse_marker(const char *name, long long *inv);

/* Credits as a key part: a plain decimal ("5", "1.25"), never an exponent; 0,
 * or -1 when v is not in [0, 1e12) or does not fit in cap. */
int ts3_format_credits(double v, char *out, size_t cap);

/* A credits marker's "<YYYYMMDD>/<id>_<credits>" (what follows "<p>c/"): the day and credits. 0 or -1. */
int ts3_parse_credits_marker(const char *rest, char day[9], double *credits);

/* The UTC day of t as "YYYYMMDD". 0 or -1. */
int ts3_utc_day(time_t t, char day[9]);

/* ---- jobs (taskstore_s3_job.c) ----------------------------------------------- */

struct ts3_job {
    struct ts3 *s;              /* the store (not owned) */
    struct taskstore_op *op;    /* the caller's (not owned): its result and done when the job ends */
    int rc;                     /* the first error; the op's result when set */
    int result;                 /* the op's result otherwise (a TS_* for claim) */
    int inflight;               /* calls submitted, not yet done */
    char key[S3_KEY_MAX + 1];   /* the object of get/put/claim/finish/release */
    void (*release)(void *job); /* frees what the module's part of the job owns; NULL: nothing */
};

/* A zeroed job of size bytes (a module's struct that starts with a struct
 * ts3_job) for op on st, op->error cleared; NULL when out of memory. The job
 * is freed by ts3_job_done or ts3_job_abort (release runs first). */
void *ts3_job_new(struct taskstore *st, struct taskstore_op *op, size_t size, void (*release)(void *job));

/* Record the first failure of a job (later ones only log; ERR_NOT_FOUND is
 * not logged). Returns rc. */
int ts3_job_error(struct ts3_job *j, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The job is over: the op gets its result, the job is freed, then done runs (the job's I/O thread). */
void ts3_job_done(struct ts3_job *j);

/* A failure before anything was submitted (j may be NULL): the job is freed,
 * op->result and the return are j's first error, else rc with msg in
 * op->error. done is not called. */
int ts3_job_abort(struct ts3_job *j, struct taskstore_op *op, int rc, const char *msg);

/* A signed GET or DELETE of key, or a PUT of body (taken: freed here on
 * failure, else owned by the call; may be NULL when len is 0). NULL when out
 * of memory or the request cannot be signed. */
struct upstream_call *ts3_object_call(struct ts3 *s, const char *method, const char *key, char *body, size_t len,
                                      const char *content_type, size_t max_response);

/* Submit c (taken, may be NULL) for the job, fn(c, arg) to run when it is
 * done. 0, or an error recorded in the job (c is freed). Once this returned 0
 * from the caller's thread, the job may already be over: touch nothing of it
 * any more. */
int ts3_job_submit(struct ts3_job *j, struct upstream_call *c, void (*fn)(struct upstream_call *, void *), void *arg);

/* The first call of a job, from the caller's thread: TASKSTORE_PENDING, or
 * the error of ts3_job_abort. */
int ts3_job_start(struct ts3_job *j, struct upstream_call *c, void (*fn)(struct upstream_call *, void *), void *arg);

/* 0 when S3 answered c at all; otherwise the failure is recorded (and returned). */
int ts3_answered(struct ts3_job *j, const struct upstream_call *c, const char *what);

/* S3 answered with a status the step does not expect: ERR_UPSTREAM, recorded
 * with S3's <Code> and <Message>. */
int ts3_refused(struct ts3_job *j, const struct upstream_call *c, const char *what);

/* 1 when c's answer means "no such object" (404, or the 403 AccessDenied of a
 * role without s3:ListBucket on the key). */
int ts3_absent(const struct upstream_call *c);

/* ---- the listing pager (taskstore_s3_job.c) ------------------------------------ */

/* The keys under "<p><sub>" by ListObjectsV2, one page per call: each key
 * goes to on_key(key, arg) (non-zero stops the page), then
 * on_page(arg, truncated, undecodable) runs once the page was parsed or failed
 * (j->rc is then set). The pager is part of the module's job (not allocated). */
struct ts3_pager {
    struct ts3_job *j;
    char prefix[TS3_PREFIX_MAX + 8]; /* "<p><sub>" (sub is a few characters); "" when it did not fit */
    char token[S3_TOKEN_MAX + 1];    /* the next page's continuation token; "" at first */
    int (*on_key)(const char *key, void *arg);
    void (*on_page)(void *arg, int truncated, size_t undecodable);
    void *arg;
};

/* (Re)start p at the first page of "<p><sub>". 0, or ERR_TOO_LARGE when the
 * prefix does not fit (then ts3_pager_call returns NULL). */
int ts3_pager_init(struct ts3_pager *p, struct ts3_job *j, const char *sub, int (*on_key)(const char *key, void *arg),
                   void (*on_page)(void *arg, int truncated, size_t undecodable), void *arg);

/* The signed call of p's next page: at most max_keys (1..S3_LIST_MAX_KEYS)
 * keys after start_after (first page only; NULL or "") or from p->token.
 * Submit it with ts3_pager_done and p as its argument. NULL when out of memory
 * or it cannot be signed. */
struct upstream_call *ts3_pager_call(struct ts3_pager *p, const char *start_after, unsigned max_keys);

/* The done callback of a pager call (arg: the pager): checks and parses the
 * page into p->token, frees c, then runs on_page. */
void ts3_pager_done(struct upstream_call *c, void *arg);

/* ---- the operations (taskstore_s3_records.c, _keys.c, _count.c) ------------------ */

int ts3_put(struct taskstore *st, struct taskstore_op *op);
int ts3_get(struct taskstore *st, struct taskstore_op *op);
int ts3_list(struct taskstore *st, struct taskstore_op *op);
int ts3_claim(struct taskstore *st, struct taskstore_op *op);
int ts3_finish(struct taskstore *st, struct taskstore_op *op);
int ts3_release(struct taskstore *st, struct taskstore_op *op);
int ts3_count(struct taskstore *st, struct taskstore_op *op);

#endif
