/* cli_batch_plan.h - the batch's state (shared by cli_batch.c, the runner,
 * and cli_batch_plan.c) and what happens before and after the run: finding
 * the photos, matching them to the manifest, naming their results, the dry
 * run, the summary and the command that resumes. */
#ifndef PPA_CLI_BATCH_PLAN_H
#define PPA_CLI_BATCH_PLAN_H

#include "cli_batch.h"
#include "cli_manifest.h"
#include "cli_pace.h"
#include "cli_photos.h"
#include "cli_progress.h"

#include <pthread.h>

struct cli_batch {
    struct cli_batch_opts *o;
    struct cli_gen g; /* o->g, quiet, with the pace */
    struct cli_pace pace;
    struct cli_photo_list photos;
    struct cli_manifest m;
    char outdir[CLI_PATH_MAX];
    size_t *entry;   /* per photo: its index in m.v */
    double *started; /* per photo: when it became active, 0 when it is not */
    size_t *queue;   /* photo indexes still to do, in order */
    size_t nq, next;
    size_t done_before, failed_before; /* finished by earlier runs (failed: without --retry-failed) */
    size_t done_run, failed_run, active;
    double credits_run;
    double t0;
    int workers_left;
    int interrupted;
    int save_failed;
    int lock_fd; /* OUTDIR/.manifest.lock, flocked; -1 */
    struct cli_view view;
    pthread_mutex_t lock; /* everything above that changes while running */
};

/* Plan the batch into b. Returns -1 when there is work to run (b is set up:
 * cli_batch_plan_free it), else the exit code (b freed): 2 bad usage, 1
 * failure, 0 nothing to do or a dry run done. */
int cli_batch_plan(struct cli_batch_opts *o, struct cli_batch *b);
void cli_batch_plan_free(struct cli_batch *b);

static inline struct cli_entry *cli_batch_entry(struct cli_batch *b, size_t pi)
{
    return &b->m.v[b->entry[pi]];
}

/* After the run: the table on stdout, the failures with their reasons and,
 * when interrupted, the command that resumes. Returns the exit code. */
int cli_batch_summary(struct cli_batch *b);
/* "To resume, run: product-photo-api generate ..." on stderr. */
void cli_batch_resume_hint(const struct cli_batch *b);

#endif
