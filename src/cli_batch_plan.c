/* cli_batch_plan.c - before and after a batch run: see cli_batch_plan.h. */
#include "cli_batch_plan.h"
#include "cli_http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLI_BASE_TRIES 10000

/* mkdir -p. 0 or -1 (errno). */
static int cli_mkdirs(const char *path)
{
    char p[CLI_PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return -1;
        p[i] = i < n ? '/' : '\0';
    }
    return 0;
}

/* One run at a time per OUTDIR: an exclusive flock on OUTDIR/.manifest.lock,
 * held until the run ends. 0 or -1 (printed). */
static int cli_batch_lock(struct cli_batch *b)
{
    char path[CLI_PATH_MAX + 32];

    snprintf(path, sizeof path, "%s/.manifest.lock", b->outdir);
    b->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (b->lock_fd < 0) {
        fprintf(stderr, "error: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(b->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "error: another run of generate is using %s (it holds %s); wait for it to end.\n",
                b->outdir, path);
        return -1;
    }
    return 0;
}

/* A result named base (any extension we write) exists in outdir. */
static int cli_result_exists(const char *outdir, const char *base)
{
    static const char *const exts[] = {"png", "jpg", "jpeg", "webp"};
    char path[CLI_PATH_MAX];
    struct stat st;

    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        int n = snprintf(path, sizeof path, "%s/%s.%s", outdir, base, exts[i]);
        if (n < 0 || (size_t)n >= sizeof path)
            return 1; /* a path too long to use counts as taken */
        if (stat(path, &st) == 0)
            return 1;
    }
    return 0;
}

/* e->base: the photo's stem, or stem-2, stem-3... when another entry has it
 * or a file of that name is in the way. 0 or -1. */
static int cli_name(struct cli_batch *b, struct cli_entry *e, const char *stem)
{
    for (int k = 1; k <= CLI_BASE_TRIES; k++) {
        char cand[CLI_BASE_MAX];
        int taken = 0;

        if (k == 1)
            snprintf(cand, sizeof cand, "%s", stem);
        else
            snprintf(cand, sizeof cand, "%s-%d", stem, k);
        for (size_t i = 0; i < b->m.n && !taken; i++)
            taken = &b->m.v[i] != e && strcmp(b->m.v[i].base, cand) == 0;
        if (taken || cli_result_exists(b->outdir, cand))
            continue;
        snprintf(e->base, sizeof e->base, "%s", cand);
        return 0;
    }
    return -1;
}

static void cli_entry_reset(struct cli_entry *e)
{
    e->task[0] = e->output[0] = e->error[0] = '\0';
    e->credits = -1;
    snprintf(e->state, sizeof e->state, "pending");
}

/* The entry of photo pi, made or matched, its key, and whether it is queued.
 * 0 or -1 (message printed). */
static int cli_match(struct cli_batch *b, size_t pi)
{
    const struct cli_photo *p = &b->photos.v[pi];
    struct cli_entry *e = cli_manifest_find(&b->m, p->real);
    struct cli_job j;
    char nonce[32];
    struct stat st;

    memset(&j, 0, sizeof j);
    j.g = &b->g;
    j.photo = p->path;
    if (!e) {
        e = cli_manifest_add(&b->m);
        if (!e) {
            fprintf(stderr, "error: out of memory.\n");
            return -1;
        }
        snprintf(e->path, sizeof e->path, "%s", p->real);
    }
    b->entry[pi] = (size_t)(e - b->m.v);
    if (cli_file_sha256(p->path, j.sha256, j.err, sizeof j.err)) {
        fprintf(stderr, "error: %s\n", j.err);
        return -1;
    }
    if (strcmp(e->sha256, j.sha256) != 0) { /* a new photo, or another one under the same name */
        cli_entry_reset(e);
        e->attempt = 0;
    }
    snprintf(e->sha256, sizeof e->sha256, "%s", j.sha256);
    if (strcmp(e->state, "failed") == 0 && b->o->retry_failed) {
        e->attempt++; /* a new key: the old one would replay the failed task */
        cli_entry_reset(e);
    }
    if (e->attempt > 0)
        snprintf(nonce, sizeof nonce, "retry-%ld", e->attempt);
    else
        nonce[0] = '\0';
    if (cli_job_key(&j, nonce)) {
        fprintf(stderr, "error: %s\n", j.err);
        return -1;
    }
    if (e->key[0] && strcmp(e->key, j.key) != 0)
        cli_entry_reset(e); /* another prompt or options: another task */
    snprintf(e->key, sizeof e->key, "%s", j.key);
    if (!e->base[0] && cli_name(b, e, p->stem)) {
        fprintf(stderr, "error: no free result name for %s in %s.\n", p->path, b->outdir);
        return -1;
    }
    if (strcmp(e->state, "done") == 0 && e->output[0] && stat(e->output, &st) == 0) {
        b->done_before++;
        return 0;
    }
    if (strcmp(e->state, "done") == 0)
        snprintf(e->state, sizeof e->state, "pending"); /* the result went missing: fetch it again */
    if (strcmp(e->state, "failed") == 0) {
        b->failed_before++;
        return 0;
    }
    b->queue[b->nq++] = pi;
    return 0;
}

/* GET /credits: the price of one image at `res`, -1 unknown; *balance too. */
static double cli_price(const struct cli_conn *c, const char *res, double *balance)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    char msg[CLI_MSG_MAX];
    double price = -1;
    cJSON *j;

    *balance = -1;
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/credits", c->server);
    cli_call(c, url, NULL, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    j = cli_json_ok(c, "credits", &r, msg, sizeof msg);
    if (j) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "price"), res);
        const cJSON *bal = cJSON_GetObjectItemCaseSensitive(j, "balance");
        if (cJSON_IsNumber(p))
            price = p->valuedouble;
        if (cJSON_IsNumber(bal))
            *balance = bal->valuedouble;
    } else {
        fprintf(stderr, "warning: %s\n", msg);
    }
    cJSON_Delete(j);
    buf_free(&r.body);
    return price;
}

/* What would be sent, and what it would cost; nothing uploaded or created. */
static int cli_dry_run(struct cli_batch *b)
{
    double balance;
    double price = cli_price(&b->g.c, b->g.resolution, &balance);
    size_t news = 0;

    printf("Dry run: %zu photos, %zu to send to %s, %zu done before, %zu failed before%s\n", b->photos.n, b->nq,
           b->g.c.server, b->done_before, b->failed_before, b->failed_before ? " (--retry-failed sends them)" : "");
    for (size_t pi = 0; pi < b->photos.n; pi++) {
        const struct cli_entry *e = cli_batch_entry(b, pi);
        const char *what;
        int queued = 0;

        for (size_t k = 0; k < b->nq; k++)
            queued |= b->queue[k] == pi;
        if (!queued)
            what = strcmp(e->state, "failed") == 0 ? "skip (failed)" : "skip (done)";
        else if (e->task[0])
            what = "resume task";
        else
            what = "upload+create";
        if (queued && !e->task[0])
            news++;
        printf("  %-14s %s -> %s/%s.png%s%s\n", what, b->photos.v[pi].path, b->outdir, e->base,
               e->task[0] ? "  " : "", e->task);
    }
    if (price >= 0)
        printf("Estimated cost: %zu new tasks x %g credits (%s) = %g credits%s", news, price, b->g.resolution,
               (double)news * price, balance >= 0 ? "" : "\n");
    else
        printf("Estimated cost: %zu new tasks (the server did not say its price)\n", news);
    if (price >= 0 && balance >= 0)
        printf("; balance %g\n", balance);
    printf("Nothing was uploaded or created (--dry-run).\n");
    return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAIL;
}

int cli_batch_plan(struct cli_batch_opts *o, struct cli_batch *b)
{
    char err[CLI_MSG_MAX];
    struct stat st;
    int rc = CLI_EXIT_FAIL;

    memset(b, 0, sizeof *b);
    b->lock_fd = -1;
    pthread_mutex_init(&b->lock, NULL);
    b->o = o;
    b->g = o->g;
    b->view.out = stderr;
    b->view.tty = o->g.c.tty;
    b->view.quiet = o->g.c.quiet;
    b->g.c.quiet = 1; /* the steps' own lines: the batch shows its own */
    b->g.c.tty = 0;
    snprintf(b->outdir, sizeof b->outdir, "%s", o->outdir ? o->outdir : CLI_OUTDIR_DEFAULT);
    for (size_t n = strlen(b->outdir); n > 1 && b->outdir[n - 1] == '/'; n--)
        b->outdir[n - 1] = '\0';
    if (stat(b->outdir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        cli_usage_error("generate", "-o %s: several photos need an output directory, and this is a file.",
                        b->outdir);
        rc = CLI_EXIT_USAGE;
        goto fail;
    }
    if (cli_photos_collect(o->paths, o->n_paths, o->recursive, b->outdir, &b->photos, err, sizeof err)) {
        cli_usage_error("generate", "%s", err);
        rc = CLI_EXIT_USAGE;
        goto fail;
    }
    if (!o->dry_run && cli_mkdirs(b->outdir)) {
        fprintf(stderr, "error: cannot create the output directory %s: %s\n", b->outdir, strerror(errno));
        goto fail;
    }
    if (!o->dry_run && cli_batch_lock(b))
        goto fail;
    if (!o->dry_run)
        cli_manifest_sweep(b->outdir);
    if (cli_manifest_load(b->outdir, &b->m, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        goto fail;
    }
    b->entry = calloc(b->photos.n, sizeof *b->entry);
    b->started = calloc(b->photos.n, sizeof *b->started);
    b->queue = calloc(b->photos.n, sizeof *b->queue);
    if (!b->entry || !b->started || !b->queue) {
        fprintf(stderr, "error: out of memory.\n");
        goto fail;
    }
    for (size_t pi = 0; pi < b->photos.n; pi++)
        if (cli_match(b, pi))
            goto fail;
    if (o->dry_run) {
        rc = cli_dry_run(b);
        goto fail;
    }
    if (!b->view.quiet)
        cli_view_event(&b->view, 0, "%zu photos: %zu to do, %zu done before, %zu failed before%s; results in %s/",
                       b->photos.n, b->nq, b->done_before, b->failed_before,
                       b->failed_before ? " (--retry-failed tries them again)" : "", b->outdir);
    return -1;
fail:
    cli_batch_plan_free(b);
    return rc;
}

void cli_batch_plan_free(struct cli_batch *b)
{
    if (b->lock_fd >= 0)
        close(b->lock_fd); /* releases the flock */
    b->lock_fd = -1;
    cli_photos_free(&b->photos);
    cli_manifest_free(&b->m);
    free(b->entry);
    free(b->started);
    free(b->queue);
    b->entry = NULL;
    b->started = NULL;
    b->queue = NULL;
    pthread_mutex_destroy(&b->lock);
}

/* An argument as the shell reads it back: bare when safe, else '...'. */
static void cli_shell_word(FILE *f, const char *a)
{
    int safe = a[0] != '\0';

    for (const char *p = a; *p && safe; p++)
        safe = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-", *p) != NULL;
    if (safe) {
        fputs(a, f);
        return;
    }
    fputc('\'', f);
    for (const char *p = a; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", f);
        else
            fputc(*p, f);
    }
    fputc('\'', f);
}

void cli_batch_resume_hint(const struct cli_batch *b)
{
    fprintf(stderr, "Interrupted; the manifest %s is saved. To resume, run:\n  product-photo-api", b->m.path);
    for (int i = 0; i < b->o->argc; i++) {
        fputc(' ', stderr);
        cli_shell_word(stderr, b->o->argv[i]);
    }
    fputc('\n', stderr);
    fflush(stderr);
}

int cli_batch_summary(struct cli_batch *b)
{
    size_t done = 0, failed = 0, left = 0;
    double credits = 0;
    int w = 5;

    for (size_t pi = 0; pi < b->photos.n; pi++) {
        int n = (int)strlen(b->photos.v[pi].path);
        w = n > w ? n : w;
    }
    printf("%-*s  %-11s  %7s  %s\n", w, "PHOTO", "STATE", "CREDITS", "RESULT");
    for (size_t pi = 0; pi < b->photos.n; pi++) {
        const struct cli_entry *e = cli_batch_entry(b, pi);
        int is_done = strcmp(e->state, "done") == 0;
        int is_failed = strcmp(e->state, "failed") == 0;
        char cr[32];

        done += (size_t)is_done;
        failed += (size_t)is_failed;
        left += (size_t)(!is_done && !is_failed);
        if (e->credits >= 0) {
            snprintf(cr, sizeof cr, "%g", e->credits);
            credits += e->credits;
        } else {
            snprintf(cr, sizeof cr, "-");
        }
        printf("%-*s  %-11s  %7s  %s\n", w, b->photos.v[pi].path, e->state, cr,
               is_done ? e->output : is_failed ? e->error : e->task[0] ? e->task : "");
    }
    printf("%zu photos: %zu done, %zu failed, %zu not finished; %g credits (%g in this run)\n", b->photos.n, done,
           failed, left, credits, b->credits_run);
    fflush(stdout);
    if (failed) {
        fprintf(stderr, "error: %zu photo%s failed:\n", failed, failed == 1 ? "" : "s");
        for (size_t pi = 0; pi < b->photos.n; pi++) {
            const struct cli_entry *e = cli_batch_entry(b, pi);
            if (strcmp(e->state, "failed") == 0)
                fprintf(stderr, "  %s: %s\n", b->photos.v[pi].path, e->error);
        }
        fprintf(stderr, "Run the same command with --retry-failed to try %s again.\n",
                failed == 1 ? "it" : "them");
    }
    if (b->interrupted) {
        cli_batch_resume_hint(b);
        return CLI_EXIT_INTERRUPTED;
    }
    return failed || left ? CLI_EXIT_FAIL : 0;
}
