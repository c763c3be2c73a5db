/* cli_batch.h - `generate PHOTO... | DIR...`: many photos in one command,
 * paced to KIE's limits and resumable.
 *   - at most `jobs` photos in flight (upload, task, polls, download), one
 *     worker thread each; at most `rate` POST /generate per 10 s over all of
 *     them (cli_pace.h);
 *   - OUTDIR/manifest.json (cli_manifest.h), saved after every change: a
 *     second run of the same command skips finished photos, resumes
 *     unfinished tasks with the same Idempotency-Keys (the server replays,
 *     KIE does not charge again), and retries failed ones only with
 *     retry_failed (with a new key: attempt N is part of it);
 *   - results as OUTDIR/<photo stem>.<ext>; a stem two photos share gets
 *     "-2", "-3"... in path order, kept in the manifest, so never another
 *     photo's result is overwritten and reruns name them the same;
 *   - SIGINT/SIGTERM: no new photo or create is started, waits end, the
 *     manifest is saved and the command that resumes is printed (exit 130).
 * Progress goes to stderr (cli_progress.h), the summary table to stdout. */
#ifndef PPA_CLI_BATCH_H
#define PPA_CLI_BATCH_H

#include "cli_job.h"

#define CLI_EXIT_INTERRUPTED 130
#define CLI_JOBS_DEFAULT 4
#define CLI_JOBS_MAX 64
#define CLI_RATE_DEFAULT 20   /* KIE: 20 new tasks per 10 s per account */
#define CLI_RATE_WINDOW_S 10.0
#define CLI_OUTDIR_DEFAULT "studio"

struct cli_batch_opts {
    struct cli_gen g;     /* g.pace is set by the batch */
    char *const *paths;   /* the PHOTO/DIR arguments (argv: not owned) */
    int n_paths;
    const char *outdir;   /* -o, NULL: CLI_OUTDIR_DEFAULT */
    long jobs;
    long rate;
    int recursive;
    int retry_failed;
    int dry_run;
    int argc;             /* the whole command line ("generate", ...) for the resume hint */
    char *const *argv;
};

/* Run the batch. Returns the exit code: 0 all done, 1 any failed, 2 bad
 * usage (printed), 130 interrupted. */
int cli_batch(struct cli_batch_opts *o);

#endif
