/* cli_batch.c - the batch runner: see cli_batch.h.
 *
 * The plan (cli_batch_plan.c) matches every photo to its manifest entry and
 * queues those still to do. Then `jobs` worker threads each take the next
 * queued photo and run it through cli_job.h's blocking steps (its own curl
 * handles; the pace is the only thing they share besides this file's lock),
 * while the main thread waits for SIGINT/SIGTERM with sigtimedwait (blocked
 * in every thread, so no handler runs) and redraws the live display. Every
 * change to an entry is made under the lock, followed by a manifest save. */
#include "cli_batch.h"
#include "cli_batch_plan.h"
#include "cli_pace.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLI_REDRAW_MS 250L
#define CLI_RATE_MARGIN_S 2.0 /* a crashed run's create: its answer time unknown, counted this much longer */

/* One worker's photo, for the on_state callback. */
struct cli_slot {
    struct cli_batch *b;
    size_t pi;
};

/* Caller holds the lock. Save the manifest; the first failure is shown. */
static void cli_batch_save(struct cli_batch *b)
{
    char err[CLI_MSG_MAX];

    if (b->pace.free_at)
        b->m.n_recent = cli_pace_recent(&b->pace, b->m.recent, CLI_RECENT_MAX);
    if (cli_manifest_save(&b->m, err, sizeof err) && !b->save_failed) {
        b->save_failed = 1;
        cli_view_event(&b->view, 1, "warning: %s (a rerun may not know what this one did)", err);
    }
}

static void cli_batch_set(struct cli_batch *b, size_t pi, const char *state)
{
    struct cli_entry *e = cli_batch_entry(b, pi);

    snprintf(e->state, sizeof e->state, "%s", state);
    cli_batch_save(b);
    if (!b->view.tty)
        cli_view_event(&b->view, 0, "%s: %s", b->photos.v[pi].path, state);
}

/* A POST /generate is about to go: its time is saved first. */
static void cli_batch_on_take(void *arg)
{
    struct cli_batch *b = arg;

    pthread_mutex_lock(&b->lock);
    cli_batch_save(b);
    pthread_mutex_unlock(&b->lock);
}

static void cli_batch_on_state(struct cli_job *j, const char *state)
{
    struct cli_slot *s = j->arg;

    pthread_mutex_lock(&s->b->lock);
    cli_batch_set(s->b, s->pi, state);
    pthread_mutex_unlock(&s->b->lock);
}

/* The photo failed: j's reason into its entry. */
static void cli_batch_fail(struct cli_batch *b, size_t pi, const struct cli_job *j)
{
    struct cli_entry *e = cli_batch_entry(b, pi);

    pthread_mutex_lock(&b->lock);
    cli_copy(e->error, sizeof e->error, j->err);
    if (j->credits >= 0)
        e->credits = j->credits;
    snprintf(e->state, sizeof e->state, "failed");
    b->failed_run++;
    b->active--;
    b->started[pi] = 0;
    cli_batch_save(b);
    cli_view_event(&b->view, 1, "%s: failed: %s", b->photos.v[pi].path, e->error);
    pthread_mutex_unlock(&b->lock);
}

/* Stopped (Ctrl-C) before the photo was finished: it stays as it is in the
 * manifest (a task id, when it has one, is resumed next time). */
static void cli_batch_stopped(struct cli_batch *b, size_t pi)
{
    struct cli_entry *e = cli_batch_entry(b, pi);

    pthread_mutex_lock(&b->lock);
    if (!e->task[0])
        snprintf(e->state, sizeof e->state, "pending");
    b->active--;
    b->started[pi] = 0;
    cli_batch_save(b);
    pthread_mutex_unlock(&b->lock);
}

/* One photo, start to end. */
static void cli_batch_one(struct cli_batch *b, size_t pi)
{
    struct cli_entry *e = cli_batch_entry(b, pi);
    struct cli_slot slot = {b, pi};
    struct cli_job j;
    char url[CLI_URL_MAX];
    char out[CLI_PATH_MAX];
    char ext[8];
    double started = cli_now();
    int resumed = 0;
    int rc;

    memset(&j, 0, sizeof j);
    j.g = &b->g;
    j.photo = b->photos.v[pi].path;
    j.credits = -1;
    j.on_state = cli_batch_on_state;
    j.arg = &slot;
    pthread_mutex_lock(&b->lock);
    snprintf(j.sha256, sizeof j.sha256, "%s", e->sha256);
    snprintf(j.key, sizeof j.key, "%s", e->key);
    snprintf(j.task, sizeof j.task, "%s", e->task);
    b->started[pi] = started;
    b->active++;
    pthread_mutex_unlock(&b->lock);
    if (!j.task[0]) {
        rc = cli_start(&j, &started, &resumed);
        if (rc == CLI_STOPPED) {
            cli_batch_stopped(b, pi);
            return;
        }
        if (rc) {
            cli_batch_fail(b, pi, &j);
            return;
        }
        pthread_mutex_lock(&b->lock);
        snprintf(e->task, sizeof e->task, "%s", j.task);
        cli_batch_save(b);
        if (!b->view.tty)
            cli_view_event(&b->view, 0, "%s: task %s %s", j.photo, j.task,
                           resumed ? "resumed (not charged again)" : "created");
        pthread_mutex_unlock(&b->lock);
    }
    rc = cli_poll(&j, started, url, sizeof url);
    if (rc == CLI_STOPPED) {
        cli_batch_stopped(b, pi);
        return;
    }
    if (rc) {
        cli_batch_fail(b, pi, &j);
        return;
    }
    cli_result_ext(url, ext, sizeof ext);
    pthread_mutex_lock(&b->lock);
    rc = snprintf(out, sizeof out, "%s/%s.%s", b->outdir, e->base, ext) >= (int)sizeof out;
    cli_batch_set(b, pi, "downloading");
    pthread_mutex_unlock(&b->lock);
    if (rc) {
        snprintf(j.err, sizeof j.err, "the output path is longer than %zu bytes.", sizeof out - 1);
        cli_batch_fail(b, pi, &j);
        return;
    }
    if (cli_fetch(&j, url, out)) {
        cli_batch_fail(b, pi, &j);
        return;
    }
    pthread_mutex_lock(&b->lock);
    snprintf(e->output, sizeof e->output, "%s", out);
    e->credits = j.credits;
    e->error[0] = '\0';
    snprintf(e->state, sizeof e->state, "done");
    if (j.credits > 0)
        b->credits_run += j.credits;
    b->done_run++;
    b->active--;
    b->started[pi] = 0;
    cli_batch_save(b);
    cli_view_event(&b->view, 0, "%s: saved %s (%.1f s)", j.photo, out, cli_now() - started);
    pthread_mutex_unlock(&b->lock);
}

static void *cli_batch_worker(void *arg)
{
    struct cli_batch *b = arg;

    for (;;) {
        size_t pi;

        pthread_mutex_lock(&b->lock);
        if (b->next >= b->nq || cli_pace_stopped(&b->pace)) {
            b->workers_left--;
            pthread_mutex_unlock(&b->lock);
            return NULL;
        }
        pi = b->queue[b->next++];
        pthread_mutex_unlock(&b->lock);
        cli_batch_one(b, pi);
    }
}

/* Caller holds the lock. The live block: active photos and the totals. */
static void cli_batch_draw(struct cli_batch *b)
{
    struct cli_row rows[CLI_JOBS_MAX];
    struct cli_totals t;
    double now = cli_now();
    size_t n = 0;
    size_t finished;

    if (!b->view.tty || b->view.quiet)
        return;
    for (size_t pi = 0; pi < b->photos.n && n < CLI_JOBS_MAX; pi++) {
        if (b->started[pi] <= 0)
            continue;
        rows[n].name = b->photos.v[pi].path;
        rows[n].state = cli_batch_entry(b, pi)->state;
        rows[n].elapsed = now - b->started[pi];
        n++;
    }
    memset(&t, 0, sizeof t);
    t.total = b->photos.n;
    t.done = b->done_before + b->done_run;
    t.failed = b->failed_before + b->failed_run;
    t.active = b->active;
    t.queued = b->nq - b->next;
    t.credits = b->credits_run;
    finished = b->done_run + b->failed_run;
    t.eta_s = finished > 0 ? (now - b->t0) / (double)finished * (double)(t.queued + t.active) : -1;
    cli_view_draw(&b->view, rows, n, &t);
}

/* Wait for the workers, redrawing, until they are done; a signal stops the
 * pace (no new work), a second one saves and leaves at once. */
static void cli_batch_wait(struct cli_batch *b, const sigset_t *sigs)
{
    struct timespec tick = {0, CLI_REDRAW_MS * 1000000L};

    for (;;) {
        int sig = sigtimedwait(sigs, NULL, &tick);
        int left;

        pthread_mutex_lock(&b->lock);
        if (sig > 0 && b->interrupted) {
            cli_batch_save(b);
            cli_view_clear(&b->view);
            cli_batch_resume_hint(b);
            _exit(CLI_EXIT_INTERRUPTED); /* workers are mid-call; the manifest is saved */
        }
        if (sig > 0) {
            b->interrupted = 1;
            cli_view_event(&b->view, 1, "Interrupted: no new photos are started; waiting for the calls in flight "
                                        "(Ctrl-C again to leave at once)...");
        }
        cli_batch_draw(b);
        left = b->workers_left;
        pthread_mutex_unlock(&b->lock);
        if (sig > 0)
            cli_pace_stop(&b->pace);
        if (left == 0)
            return;
    }
}

/* Start the workers and wait for them. 0, or -1 (could not start any). */
static int cli_batch_run(struct cli_batch *b)
{
    pthread_t tids[CLI_JOBS_MAX];
    size_t n = b->nq < (size_t)b->o->jobs ? b->nq : (size_t)b->o->jobs;
    size_t started = 0;
    sigset_t sigs, old;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old); /* the workers inherit it */
    b->t0 = cli_now();
    b->workers_left = (int)n;
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&tids[i], NULL, cli_batch_worker, b) != 0) {
            pthread_mutex_lock(&b->lock);
            b->workers_left -= (int)(n - i);
            pthread_mutex_unlock(&b->lock);
            break;
        }
        started++;
    }
    if (started > 0)
        cli_batch_wait(b, &sigs);
    for (size_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started == 0 && n > 0) {
        fprintf(stderr, "error: cannot start a worker thread: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int cli_batch(struct cli_batch_opts *o)
{
    struct cli_batch b;
    int rc;

    rc = cli_batch_plan(o, &b);
    if (rc >= 0)
        return rc; /* bad usage, a dry run, or could not plan */
    rc = CLI_EXIT_FAIL;
    if (cli_pace_init(&b.pace, (int)o->rate, CLI_RATE_WINDOW_S)) {
        fprintf(stderr, "error: out of memory.\n");
        goto cleanup;
    }
    /* an earlier run's creates still count (it may have been killed a moment ago) */
    cli_pace_prime(&b.pace, b.m.recent, b.m.n_recent, CLI_RATE_MARGIN_S);
    b.pace.on_take = cli_batch_on_take;
    b.pace.arg = &b;
    b.g.pace = &b.pace;
    pthread_mutex_lock(&b.lock);
    cli_batch_save(&b);
    pthread_mutex_unlock(&b.lock);
    if (cli_batch_run(&b))
        goto cleanup;
    cli_view_clear(&b.view);
    rc = cli_batch_summary(&b);
cleanup:
    cli_pace_free(&b.pace);
    cli_batch_plan_free(&b);
    return rc;
}
