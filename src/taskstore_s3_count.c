/* taskstore_s3_count.c - the S3 task store's counts (see taskstore_s3.h):
 * the index markers (<p>i/) of tasks created since op->since, listed newest
 * first until the first older one, then (unless op->count_only) every credits
 * marker (<p>c/) for the credits spent since that day and in total. */
#include "taskstore_s3.h"
#include "err.h"

#include <string.h>
#include <time.h>

#define TS3_COUNT_PAGES 200 /* pages (of 1000 keys) one count reads per prefix */

enum count_step {
    COUNT_INDEX,
    COUNT_CREDITS,
};

struct count_job {
    struct ts3_job job;
    struct ts3_pager pager;
    enum count_step step;
    int pages;
    int stop;            /* the index reached markers older than since */
    long long inv_since; /* markers <= this are of tasks created since op->since */
    char since_day[9];
    long count;
    double spent_since, spent_total;
};

static int count_marker(const char *key, void *arg)
{
    struct count_job *cj = arg;
    const char *name = ts3_key_rest(cj->job.s, key, "i/");
    long long inv;

    if (!name || ts3_parse_marker(name, &inv))
        return 0;
    if (inv > cj->inv_since) {
        cj->stop = 1; /* older than since, and so is every key after it */
        return 1;
    }
    cj->count++;
    return 0;
}

static int sum_credits(const char *key, void *arg)
{
    struct count_job *cj = arg;
    const char *rest = ts3_key_rest(cj->job.s, key, "c/");
    char day[9];
    double credits;

    if (!rest || ts3_parse_credits_marker(rest, day, &credits))
        return 0;
    cj->spent_total += credits;
    if (strcmp(day, cj->since_day) >= 0)
        cj->spent_since += credits;
    return 0;
}

/* The next page of the current listing (a listing that cannot be named or
 * signed ends the job). */
static void count_page(struct count_job *cj)
{
    if (ts3_job_submit(&cj->job, ts3_pager_call(&cj->pager, NULL, S3_LIST_MAX_KEYS), ts3_pager_done, &cj->pager))
        ts3_job_done(&cj->job);
}

/* A page of i/ or c/ is in (the pager's on_page). */
static void on_count_page(void *arg, int truncated, size_t undecodable)
{
    struct count_job *cj = arg;
    struct ts3_job *j = &cj->job;

    (void)undecodable;
    if (j->rc) {
        ts3_job_done(j);
        return;
    }
    if (truncated && !cj->stop) {
        if (++cj->pages >= TS3_COUNT_PAGES) {
            ts3_job_error(j, ERR_TOO_LARGE, "more than %d pages of %s (list)", TS3_COUNT_PAGES, cj->pager.prefix);
            ts3_job_done(j);
            return;
        }
    } else if (cj->step == COUNT_INDEX && !j->op->count_only) {
        cj->step = COUNT_CREDITS;
        cj->pages = 0;
        cj->stop = 0;
        /* a prefix that does not fit leaves the pager without a call: the job ends in count_page */
        (void)ts3_pager_init(&cj->pager, j, "c/", sum_credits, on_count_page, cj);
    } else { /* count_only: no credits marker was read, the sums are 0 */
        j->op->count = cj->count;
        j->op->spent_since = cj->spent_since;
        j->op->spent_total = cj->spent_total;
        ts3_job_done(j);
        return;
    }
    count_page(cj);
}

int ts3_count(struct taskstore *st, struct taskstore_op *op)
{
    struct count_job *cj = ts3_job_new(st, op, sizeof *cj, NULL);
    struct ts3_job *j = cj ? &cj->job : NULL;
    time_t since;

    if (!j)
        return ts3_job_abort(NULL, op, ERR_NOMEM, "out of memory");
    since = op->since < 0 ? 0 : op->since;
    if ((long long)since > TS3_INV_MAX / 1000)
        return ts3_job_abort(j, op, ERR_INVALID, "since out of range");
    cj->inv_since = TS3_INV_MAX - (long long)since * 1000;
    if (ts3_utc_day(since, cj->since_day))
        return ts3_job_abort(j, op, ERR_INVALID, "since out of range");
    cj->step = COUNT_INDEX;
    (void)ts3_pager_init(&cj->pager, j, "i/", count_marker, on_count_page, cj);
    return ts3_job_start(j, ts3_pager_call(&cj->pager, NULL, S3_LIST_MAX_KEYS), ts3_pager_done, &cj->pager);
}
