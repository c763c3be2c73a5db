/* cli_generate.c - `product-photo-api generate PHOTO... | DIR... --prompt
 * "..."`: see cli_generate.h. This file reads the arguments and runs one
 * photo named alone (today's one-photo command, `-o FILE`); several photos,
 * or a directory, go to the batch runner (cli_batch.h).
 *
 * One photo is four blocking steps (cli_job.h): upload (cli_upload.c), create
 * with an Idempotency-Key derived from the photo and the options (cli_key.h;
 * an earlier run's task is resumed instead, cli_task.c), poll GET /status with
 * backoff (PPA_POLL_MS, x1.5, <= 10 s), and fetch the result into a temp file
 * beside -o, then rename (cli_fetch.c). Each step leaves its error in the job
 * and this file prints it ("error: ..."): the server's {"error":{"message"}}
 * or KIE's failMsg is what the user sees. Progress is drawn on one line when
 * stderr is a terminal and as plain lines otherwise. */
#include "cli_generate.h"
#include "cli_batch.h"
#include "cli_common.h"
#include "cli_job.h"
#include "config.h"
#include "validate.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLI_CMD "generate"

void cli_generate_usage(FILE *out)
{
    fprintf(out,
            "Usage: product-photo-api generate PHOTO --prompt TEXT [options]\n"
            "       product-photo-api generate PHOTO... | DIR... --prompt TEXT [-o OUTDIR] [--jobs N] [options]\n"
            "\n"
            "Upload PHOTO (JPEG, PNG, WEBP, HEIC/HEIF, AVIF or TIFF, as it comes from the phone or\n"
            "camera: the server turns it upright, strips its metadata and resizes it) to a running\n"
            "product-photo-api server, ask it for a\n"
            "studio shot, wait for KIE to finish and save the result. Progress goes to stderr; the\n"
            "path of the saved image is printed on stdout.\n"
            "\n"
            "Several photos, or directories of them (one level; --recursive for all; hidden files\n"
            "and the output directory skipped), are a batch: every photo gets the same prompt and\n"
            "options, the results go to OUTDIR as <photo name>.<ext> (a name two photos share gets\n"
            "-2, -3...), and OUTDIR/manifest.json records each photo's task and state.\n"
            "\n"
            "Options:\n"
            "  -p, --prompt TEXT        what the studio shot should look like (required)\n"
            "  -a, --aspect-ratio R     1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 or auto [auto]\n"
            "  -r, --resolution R       1K or 2K [1K]\n"
            "  -o, --output PATH        one photo: the result file [result-<taskId>.<ext>];\n"
            "                           a batch: the output directory [./%s/]\n"
            "  -s, --server URL         the server [$PPA_SERVER or http://localhost:8000]\n"
            "  -t, --token TOKEN        API token sent as Authorization: Bearer [$PPA_API_TOKEN]\n"
            "      --timeout SECONDS    give up waiting for a task after this long [900]\n"
            "      --new                start another task even if this command ran before (charged again;\n"
            "                           one photo only)\n"
            "  -j, --jobs N             batch: photos in flight at once (upload, polls, download), 1-%d [%d]\n"
            "      --rate N             batch: at most N new tasks (POST /generate) per 10 s [%d, KIE's limit]\n"
            "      --recursive          batch: scan directories at every depth\n"
            "      --retry-failed       batch: try the photos that failed before again (new tasks)\n"
            "      --dry-run            list what would be sent and the estimated credits (GET /credits);\n"
            "                           nothing is uploaded or created\n"
            "  -q, --quiet              print only errors and the saved path (a batch: and the summary)\n"
            "  -h, --help               this text\n"
            "\n"
            "Running the same command again (same photo bytes, prompt, aspect ratio and resolution)\n"
            "within 24 h resumes the task the first run created instead of paying for a new one: the\n"
            "request carries an Idempotency-Key derived from them, and the server answers it again.\n"
            "A batch run again skips the photos it finished, resumes the unfinished ones with the\n"
            "same keys and leaves the failed ones alone unless --retry-failed. Ctrl-C stops starting\n"
            "new work, saves the manifest and prints the command that resumes (exit 130).\n"
            "Over-limit answers (429) wait for Retry-After; 502/503/504 and dropped connections are\n"
            "retried with backoff; other errors fail that photo only.\n"
            "\n"
            "Environment: PPA_SERVER, PPA_API_TOKEN, PPA_POLL_MS (first poll interval in ms, 2000;\n"
            "it grows x1.5 per poll up to 10 s).\n"
            "\n"
            "Exit status: 0 saved (every photo), 1 failed (the server's or KIE's message is printed;\n"
            "a batch lists each failed photo with its reason), 2 bad usage, 130 interrupted.\n"
            "\n"
            "Examples:\n"
            "  product-photo-api generate mug.jpg --prompt \"on white marble, soft light\" -o mug.png\n"
            "  product-photo-api generate shop/photos/ --prompt \"on white marble\" -o studio/ --jobs 8\n",
            CLI_OUTDIR_DEFAULT, CLI_JOBS_MAX, CLI_JOBS_DEFAULT, CLI_RATE_DEFAULT);
}

/* ---- arguments ---------------------------------------------------------- */

/* The paths are collected into o->paths (a copy of argv's order, owned by
 * the caller's array). 0 ready, 1 help shown, -1 usage error printed. */
static int cli_parse(int argc, char **argv, struct cli_batch_opts *o, char **paths)
{
    const char *poll = getenv("PPA_POLL_MS");
    const char *timeout = NULL;
    const char *jobs = NULL;
    const char *rate = NULL;
    struct cli_conn_args conn;
    struct cli_gen *g = &o->g;

    cli_conn_begin(&conn);
    g->aspect = "auto";
    g->resolution = "1K";
    g->timeout_s = 900;
    g->poll_ms = 2000;
    o->jobs = CLI_JOBS_DEFAULT;
    o->rate = CLI_RATE_DEFAULT;
    o->paths = paths;
    o->argc = argc;
    o->argv = argv;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        int missing = 0;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_generate_usage(stdout);
            return 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            g->c.quiet = 1;
        } else if (strcmp(a, "--new") == 0) {
            g->fresh = 1;
        } else if (strcmp(a, "--recursive") == 0) {
            o->recursive = 1;
        } else if (strcmp(a, "--retry-failed") == 0) {
            o->retry_failed = 1;
        } else if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--prompt", "-p", &missing))) {
            g->prompt = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--aspect-ratio", "-a", &missing))) {
            g->aspect = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--resolution", "-r", &missing))) {
            g->resolution = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--output", "-o", &missing))) {
            o->outdir = v;
        } else if (!missing && cli_conn_opt(argc, argv, &i, &conn, &missing)) {
            continue;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--timeout", NULL, &missing))) {
            timeout = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--jobs", "-j", &missing))) {
            jobs = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--rate", NULL, &missing))) {
            rate = v;
        } else if (missing) {
            cli_usage_error(CLI_CMD, "%s needs a value.", a);
            return -1;
        } else if (a[0] == '-' && a[1]) {
            cli_usage_error(CLI_CMD, "unknown option %s.", a);
            return -1;
        } else {
            paths[o->n_paths++] = argv[i];
        }
    }
    if (o->n_paths == 0) {
        cli_usage_error(CLI_CMD, "%s",
                        "name the photo to upload: product-photo-api generate PHOTO --prompt TEXT (or several "
                        "photos or directories).");
        return -1;
    }
    if (!g->prompt || !g->prompt[0]) {
        cli_usage_error(CLI_CMD, "%s", "--prompt is required: describe the studio shot you want.");
        return -1;
    }
    if (!aspect_ratio_valid(g->aspect)) { /* KIE's values, shared with the server (validate.h) */
        cli_usage_error(CLI_CMD, "--aspect-ratio %s: use 1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 or auto.", g->aspect);
        return -1;
    }
    if (!resolution_valid(g->resolution)) {
        cli_usage_error(CLI_CMD, "--resolution %s: use 1K or 2K.", g->resolution);
        return -1;
    }
    if (timeout && config_parse_long(timeout, 1, 7 * 24 * 3600, &g->timeout_s)) {
        cli_usage_error(CLI_CMD, "--timeout %s: give a whole number of seconds (1 or more).", timeout);
        return -1;
    }
    if (jobs && config_parse_long(jobs, 1, CLI_JOBS_MAX, &o->jobs)) {
        cli_usage_error(CLI_CMD, "--jobs %s: give a whole number from 1 to %d.", jobs, CLI_JOBS_MAX);
        return -1;
    }
    if (rate && config_parse_long(rate, 1, 1000, &o->rate)) {
        cli_usage_error(CLI_CMD, "--rate %s: give a whole number of new tasks per 10 s, 1 to 1000.", rate);
        return -1;
    }
    if (poll && *poll && config_parse_long(poll, 1, 600000, &g->poll_ms)) {
        cli_usage_error(CLI_CMD, "PPA_POLL_MS=%s: give a whole number of milliseconds (1-600000).", poll);
        return -1;
    }
    return cli_conn_finish(CLI_CMD, &conn, &g->c);
}

/* One photo named alone (not a directory) is today's command; anything else
 * is a batch. --dry-run is always the batch's listing. */
static int cli_is_single(const struct cli_batch_opts *o)
{
    struct stat st;

    if (o->n_paths != 1 || o->dry_run || o->retry_failed || o->recursive)
        return 0;
    return stat(o->paths[0], &st) != 0 || !S_ISDIR(st.st_mode);
}

/* The photo must be a readable regular file; -o must land in a writable
 * directory. Checked before any traffic. 0 or -1 (message printed). */
static int cli_check_files(const char *photo, const char *out)
{
    struct stat st;
    char dir[CLI_PATH_MAX];
    const char *slash;

    if (stat(photo, &st) != 0 || access(photo, R_OK) != 0) {
        fprintf(stderr, "error: cannot read %s: %s\n", photo, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "error: %s is not a regular file.\n", photo);
        return -1;
    }
    if (!out)
        return 0;
    if (strlen(out) >= CLI_PATH_MAX) {
        fprintf(stderr, "error: -o: the path is longer than %d bytes.\n", CLI_PATH_MAX - 1);
        return -1;
    }
    if (!out[0] || (stat(out, &st) == 0 && S_ISDIR(st.st_mode))) {
        fprintf(stderr, "error: -o %s: give a file name, not a directory.\n", out);
        return -1;
    }
    slash = strrchr(out, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == out)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - out), out);
    if (access(dir, W_OK) != 0) {
        fprintf(stderr, "error: -o %s: cannot write to directory %s: %s\n", out, dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- one photo ---------------------------------------------------------- */

static int cli_single(struct cli_batch_opts *o)
{
    struct cli_job j;
    char result[CLI_URL_MAX];
    char path[CLI_PATH_MAX];
    double started;
    int resumed = 0;
    int rc;

    memset(&j, 0, sizeof j);
    j.g = &o->g;
    j.photo = o->paths[0];
    if (cli_check_files(j.photo, o->outdir))
        return CLI_EXIT_USAGE;
    if (cli_job_key(&j, "")) {
        fprintf(stderr, "error: %s\n", j.err);
        return CLI_EXIT_FAIL;
    }
    rc = cli_start(&j, &started, &resumed);
    if (rc) {
        fprintf(stderr, "error: %s\n", j.err);
        return CLI_EXIT_FAIL;
    }
    rc = cli_poll(&j, started, result, sizeof result);
    if (rc) {
        fprintf(stderr, "error: %s\n", j.err);
        if (rc == CLI_KIE_FAILED && resumed)
            fprintf(stderr, "note: that is the task an earlier run of this same command started; add --new to "
                            "start another one (charged again), or change the prompt or options.\n");
        return CLI_EXIT_FAIL;
    }
    if (o->outdir)
        snprintf(path, sizeof path, "%s", o->outdir);
    else
        cli_default_name(j.task, result, path, sizeof path);
    if (cli_fetch(&j, result, path)) {
        fprintf(stderr, "error: %s\n", j.err);
        return CLI_EXIT_FAIL;
    }
    if (!o->g.c.quiet)
        fprintf(stderr, "Saved %s (%.1f s)\n", path, cli_now() - started);
    printf("%s\n", path);
    fflush(stdout);
    return 0;
}

/* ---- the command -------------------------------------------------------- */

int cli_generate(int argc, char **argv)
{
    struct cli_batch_opts o;
    char **paths = calloc(argc > 0 ? (size_t)argc : 1, sizeof *paths);
    int rc;

    if (!paths) {
        fprintf(stderr, "error: out of memory.\n");
        return CLI_EXIT_FAIL;
    }
    memset(&o, 0, sizeof o);
    rc = cli_parse(argc, argv, &o, paths);
    if (rc != 0) {
        free(paths);
        return rc > 0 ? 0 : CLI_EXIT_USAGE;
    }
    o.g.c.tty = isatty(STDERR_FILENO);
    if (!cli_is_single(&o) && o.g.fresh) {
        free(paths);
        cli_usage_error(CLI_CMD, "%s", "--new is for one photo; a batch retries its failed photos with "
                                       "--retry-failed (or give it another -o directory).");
        return CLI_EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(paths);
        fprintf(stderr, "error: libcurl failed to start.\n");
        return CLI_EXIT_FAIL;
    }
    rc = cli_is_single(&o) ? cli_single(&o) : cli_batch(&o);
    curl_global_cleanup();
    free(paths);
    return rc;
}
