/* cli_job.h - the steps of turning one photo into a studio shot, shared by
 * `generate PHOTO` and the batch runner (cli_batch.h):
 *   cli_job_key   the Idempotency-Key from the photo's SHA-256 and the options
 *   cli_start     an earlier run's task (GET /tasks, same key) or upload + create
 *   cli_poll      GET /status with backoff until success or fail
 *   cli_fetch     download the result beside its final name, then rename
 * A step that fails leaves the reason in j->err (nothing printed); progress
 * lines go to stderr unless g->c.quiet. With g->pace set (a batch) every
 * POST /generate takes one of the pace's tokens and every wait ends early
 * when it is stopped (CLI_STOPPED). */
#ifndef PPA_CLI_JOB_H
#define PPA_CLI_JOB_H

#include "cli_common.h"
#include "cli_key.h"

#include <stddef.h>

#define CLI_PATH_MAX 1024 /* -o, photo paths */
#define CLI_TASK_MAX 256
#define CLI_KIE_FAILED -2 /* cli_poll: the task itself failed */
#define CLI_STOPPED -3    /* the pace was stopped (Ctrl-C) */

struct cli_pace;

/* What every photo of one command shares. */
struct cli_gen {
    struct cli_conn c;
    const char *prompt;
    const char *aspect;
    const char *resolution;
    long timeout_s;
    long poll_ms;
    int fresh;             /* --new */
    struct cli_pace *pace; /* NULL: one photo, no shared pacing */
};

/* One photo's run. Zero it, set g and photo (not owned), then the steps. */
struct cli_job {
    const struct cli_gen *g;
    const char *photo;
    char sha256[CLI_SHA256_HEX];
    char key[CLI_KEY_MAX];
    char task[CLI_TASK_MAX];
    double credits; /* creditsConsumed of the finished task, -1 unknown */
    char err[CLI_MSG_MAX];
    /* called with each new state: "uploading", "submitting", KIE's waiting/queuing/generating...; may be NULL */
    void (*on_state)(struct cli_job *j, const char *state);
    void *arg; /* for on_state */
};

/* j->sha256 (unless set) and j->key, with `nonce` ("" normally; a batch's
 * "retry-N" for its Nth --retry-failed) or, with g->fresh, a random one.
 * 0 or -1. */
int cli_job_key(struct cli_job *j, const char *nonce);

/* The task for j: an earlier run's (found in GET /tasks under j->key,
 * resumed: nothing uploaded) or a new one (upload, then create). *resumed
 * says which; *started is when the task was asked for. 0, -1 or CLI_STOPPED. */
int cli_start(struct cli_job *j, double *started, int *resumed);

/* POST /upload (or the S3 direct upload); the URL KIE fetches into input_url.
 * In a batch (g->pace set) 429 (Retry-After), 502/503/504 and dropped
 * connections are retried with backoff. 0, -1 or CLI_STOPPED. */
int cli_upload(struct cli_job *j, char *input_url, size_t cap);

/* Poll j->task until success (the first result URL into result), fail or the
 * timeout. 0, CLI_KIE_FAILED, CLI_STOPPED or -1. Sets j->credits. */
int cli_poll(struct cli_job *j, double started, char *result, size_t cap);

/* Download url to path via a temp file and a rename: path is the whole image
 * or untouched. 0 or -1. */
int cli_fetch(struct cli_job *j, const char *url, const char *path);

/* The extension of the result URL's path ("png" unless it names another). */
void cli_result_ext(const char *url, char *ext, size_t cap);
/* "result-<task>.<ext>" (the single photo's default -o). */
void cli_default_name(const char *task, const char *url, char *out, size_t cap);

/* Wait ms (through the pace when there is one). 1 when stopped. */
int cli_job_sleep(const struct cli_job *j, long ms);

#endif
