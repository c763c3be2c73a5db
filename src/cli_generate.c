/* cli_generate.c - `product-photo-api generate photo.jpg --prompt "..."`: see cli_generate.h.
 *
 * Four blocking steps over libcurl's easy API (cli_http.h), each its own function:
 *   upload   POST /upload (multipart field "file", streamed from disk)
 *   create   POST /generate {"input_url","prompt","aspect_ratio","resolution"}
 *            with an Idempotency-Key derived from the photo and the options
 *            (cli_key.h)
 *   poll     GET /status?task_id=... with backoff (PPA_POLL_MS, x1.5, <= 10 s)
 *   fetch    GET data.resultUrls[0] into a temp file beside -o, then rename.
 * The same command run again (after a crash, a lost connection, or just
 * again) must not pay twice: before uploading, the CLI looks for its key in
 * GET /tasks; when an earlier run's task is there, it sends that run's exact
 * body again and the server replays the first answer (Idempotent-Replayed:
 * true). A fresh upload has a new URL, so the same key with it is answered
 * 422 idempotency_key_reused: the CLI then resumes the task it finds under its
 * key. 409 request_in_progress (the first request still running) is waited
 * out with Retry-After. --new mixes a random nonce into the key. A server
 * without a task store (503 task_store_off) gets the request without the key,
 * once, and no automatic retries.
 * Each step prints its own error ("error: ...") and returns -1; the server's
 * {"error":{"message"}} (or KIE's failMsg) is what the user sees. Progress is
 * drawn on one line when stderr is a terminal and as plain lines otherwise. */
#include "cli_generate.h"
#include "cli_common.h"
#include "cli_http.h"
#include "cli_key.h"
#include "cli_tasks.h"
#include "config.h"
#include "taskstore.h"
#include "validate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#define CLI_MAX_RESULT (200L * 1024 * 1024) /* the downloaded image */
#define CLI_POLL_MAX_MS 10000L
#define CLI_POLL_RETRIES 5 /* consecutive transient /status failures tolerated */
#define CLI_PATH_MAX 1024  /* -o */
#define CLI_TASK_MAX 256
#define CLI_BUSY_MAX_S 150.0  /* 409 request_in_progress waited for (> IDEMPOTENCY_STALE_SECONDS) */
#define CLI_BUSY_WAIT_MAX_S 10L
#define CLI_CREATE_RETRIES 2  /* POST /generate again after a transport error (same key) */
#define CLI_PRIOR_PAGES 10    /* GET /tasks pages searched for an earlier run's key */
#define CLI_PRIOR_MARGIN_S 600 /* a key this close to IDEMPOTENCY_TTL_SECONDS is not counted on */
#define CLI_KIE_FAILED -2     /* cli_poll: the task itself failed */

struct cli_opts {
    struct cli_conn c;
    const char *photo;
    const char *prompt;
    const char *aspect;
    const char *resolution;
    const char *out;
    long timeout_s;
    long poll_ms;
    int fresh;                /* --new */
    char key[CLI_KEY_MAX];    /* the Idempotency-Key */
};

/* The task an earlier run of the same command created (found in GET /tasks). */
struct cli_prior {
    char id[CLI_TASK_MAX];
    char input_url[CLI_URL_MAX];
    char state[32];
};

/* A download in progress: the temp file and what has been written. */
struct cli_sink {
    FILE *f;
    long size;
    unsigned char head[12];
    size_t head_len;
    int too_large;
};

void cli_generate_usage(FILE *out)
{
    fprintf(out,
            "Usage: product-photo-api generate PHOTO --prompt TEXT [options]\n"
            "\n"
            "Upload PHOTO (JPEG, PNG, WEBP, HEIC/HEIF, AVIF or TIFF, as it comes from the phone or\n"
            "camera: the server turns it upright, strips its metadata and resizes it) to a running\n"
            "product-photo-api server, ask it for a\n"
            "studio shot, wait for KIE to finish and save the result. Progress goes to stderr; the\n"
            "path of the saved image is printed on stdout.\n"
            "\n"
            "Options:\n"
            "  -p, --prompt TEXT        what the studio shot should look like (required)\n"
            "  -a, --aspect-ratio R     1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 or auto [auto]\n"
            "  -r, --resolution R       1K or 2K [1K]\n"
            "  -o, --output FILE        where to save the result [result-<taskId>.<ext>]\n"
            "  -s, --server URL         the server [$PPA_SERVER or http://localhost:8000]\n"
            "  -t, --token TOKEN        API token sent as Authorization: Bearer [$PPA_API_TOKEN]\n"
            "      --timeout SECONDS    give up waiting for the task after this long [900]\n"
            "      --new                start another task even if this command ran before (charged again)\n"
            "  -q, --quiet              print only errors and the saved path\n"
            "  -h, --help               this text\n"
            "\n"
            "Running the same command again (same photo bytes, prompt, aspect ratio and resolution)\n"
            "within 24 h resumes the task the first run created instead of paying for a new one: the\n"
            "request carries an Idempotency-Key derived from them, and the server answers it again.\n"
            "\n"
            "Environment: PPA_SERVER, PPA_API_TOKEN, PPA_POLL_MS (first poll interval in ms, 2000;\n"
            "it grows x1.5 per poll up to 10 s).\n"
            "\n"
            "Exit status: 0 saved, 1 failed (the server's or KIE's message is printed), 2 bad usage.\n"
            "\n"
            "Example:\n"
            "  product-photo-api generate mug.jpg --prompt \"on white marble, soft light\" -o mug.png\n");
}

/* ---- arguments ---------------------------------------------------------- */

#define CLI_CMD "generate"

/* 0 ready, 1 help shown, -1 usage error printed. */
static int cli_parse(int argc, char **argv, struct cli_opts *o)
{
    const char *poll = getenv("PPA_POLL_MS");
    const char *timeout = NULL;
    struct cli_conn_args conn;

    cli_conn_begin(&conn);
    o->aspect = "auto";
    o->resolution = "1K";
    o->timeout_s = 900;
    o->poll_ms = 2000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v;
        int missing = 0;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_generate_usage(stdout);
            return 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->c.quiet = 1;
        } else if (strcmp(a, "--new") == 0) {
            o->fresh = 1;
        } else if ((v = cli_opt(argc, argv, &i, "--prompt", "-p", &missing))) {
            o->prompt = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--aspect-ratio", "-a", &missing))) {
            o->aspect = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--resolution", "-r", &missing))) {
            o->resolution = v;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--output", "-o", &missing))) {
            o->out = v;
        } else if (!missing && cli_conn_opt(argc, argv, &i, &conn, &missing)) {
            continue;
        } else if (!missing && (v = cli_opt(argc, argv, &i, "--timeout", NULL, &missing))) {
            timeout = v;
        } else if (missing) {
            cli_usage_error(CLI_CMD, "%s needs a value.", a);
            return -1;
        } else if (a[0] == '-' && a[1]) {
            cli_usage_error(CLI_CMD, "unknown option %s.", a);
            return -1;
        } else if (o->photo) {
            cli_usage_error(CLI_CMD, "only one photo, please (got a second one: %s).", a);
            return -1;
        } else {
            o->photo = a;
        }
    }
    if (!o->photo) {
        cli_usage_error(CLI_CMD, "%s", "name the photo to upload: product-photo-api generate PHOTO --prompt TEXT.");
        return -1;
    }
    if (!o->prompt || !o->prompt[0]) {
        cli_usage_error(CLI_CMD, "%s", "--prompt is required: describe the studio shot you want.");
        return -1;
    }
    if (!aspect_ratio_valid(o->aspect)) { /* KIE's values, shared with the server (validate.h) */
        cli_usage_error(CLI_CMD, "--aspect-ratio %s: use 1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3 or auto.", o->aspect);
        return -1;
    }
    if (!resolution_valid(o->resolution)) {
        cli_usage_error(CLI_CMD, "--resolution %s: use 1K or 2K.", o->resolution);
        return -1;
    }
    if (timeout && config_parse_long(timeout, 1, 7 * 24 * 3600, &o->timeout_s)) {
        cli_usage_error(CLI_CMD, "--timeout %s: give a whole number of seconds (1 or more).", timeout);
        return -1;
    }
    if (poll && *poll && config_parse_long(poll, 1, 600000, &o->poll_ms)) {
        cli_usage_error(CLI_CMD, "PPA_POLL_MS=%s: give a whole number of milliseconds (1-600000).", poll);
        return -1;
    }
    return cli_conn_finish(CLI_CMD, &conn, &o->c);
}

/* The photo must be a readable regular file; -o must land in a writable
 * directory. Checked before any traffic. 0 or -1 (message printed). */
static int cli_check_files(const struct cli_opts *o)
{
    struct stat st;
    char dir[CLI_PATH_MAX];
    const char *slash;

    if (stat(o->photo, &st) != 0 || access(o->photo, R_OK) != 0) {
        fprintf(stderr, "error: cannot read %s: %s\n", o->photo, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "error: %s is not a regular file.\n", o->photo);
        return -1;
    }
    if (!o->out)
        return 0;
    if (strlen(o->out) >= CLI_PATH_MAX) {
        fprintf(stderr, "error: -o: the path is longer than %d bytes.\n", CLI_PATH_MAX - 1);
        return -1;
    }
    if (!o->out[0] || (stat(o->out, &st) == 0 && S_ISDIR(st.st_mode))) {
        fprintf(stderr, "error: -o %s: give a file name, not a directory.\n", o->out);
        return -1;
    }
    slash = strrchr(o->out, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == o->out)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - o->out), o->out);
    if (access(dir, W_OK) != 0) {
        fprintf(stderr, "error: -o %s: cannot write to directory %s: %s\n", o->out, dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- the steps ---------------------------------------------------------- */

static const char *cli_sniff_type(const char *path)
{
    unsigned char h[IMAGE_MAGIC_LEN] = {0};
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    const char *mime;

    if (f) {
        n = fread(h, 1, sizeof h, f);
        fclose(f);
    }
    mime = image_mime(image_detect(h, n));
    return mime ? mime : "application/octet-stream"; /* the server decides (415) */
}

/* The server's upload limit from GET /config (-1 when it does not say), and
 * whether it offers direct uploads to S3 (then *direct_limit is theirs). */
static double cli_server_limit(const struct cli_opts *o, int *direct, double *direct_limit)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    double limit = -1;
    cJSON *j;
    const cJSON *m;

    *direct = 0;
    *direct_limit = -1;
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/config", o->c.server);
    cli_call(&o->c, url, NULL, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    if (r.code == CURLE_OK && r.status == 200) {
        j = cJSON_ParseWithLength(buf_str(&r.body), r.body.len);
        m = cJSON_GetObjectItemCaseSensitive(j, "max_upload_bytes");
        if (cJSON_IsNumber(m) && m->valuedouble > 0)
            limit = m->valuedouble;
        *direct = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "direct_upload"));
        m = cJSON_GetObjectItemCaseSensitive(j, "max_direct_upload_bytes");
        if (cJSON_IsNumber(m) && m->valuedouble > 0)
            *direct_limit = m->valuedouble;
        cJSON_Delete(j);
    }
    buf_free(&r.body);
    return limit;
}

/* S3 mode: POST /upload-url, PUT the photo straight to the bucket (it never
 * passes through the server, or API Gateway's 6 MB on Lambda), then POST
 * /upload-complete, whose answer is /upload's. Fills *answer (caller
 * deletes). 0, or -1 with msg set. */
static int cli_direct_upload(const struct cli_opts *o, long long size, struct cli_progress *pg, cJSON **answer,
                             char *msg, size_t cap)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    char body[256];
    char put_url[CLI_URL_MAX];
    char upload_id[64];
    const char *type = cli_sniff_type(o->photo);
    cJSON *ticket = NULL;
    int rc = -1;

    *answer = NULL;
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/upload-url", o->c.server);
    snprintf(body, sizeof body, "{\"content_type\":\"%s\",\"size\":%lld}", type, size);
    cli_call(&o->c, url, body, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    ticket = cli_json_ok(&o->c, "upload-url", &r, msg, cap);
    if (!ticket)
        goto out;
    if (cli_copy_string(cJSON_GetObjectItemCaseSensitive(ticket, "upload_url"), put_url, sizeof put_url) ||
        cli_copy_string(cJSON_GetObjectItemCaseSensitive(ticket, "upload_id"), upload_id, sizeof upload_id)) {
        snprintf(msg, cap, "upload-url: the server's answer has no upload_url or upload_id.");
        goto out;
    }
    buf_free(&r.body);
    buf_init(&r.body, CLI_MAX_REPLY);
    cli_put_file(put_url, type, o->photo, pg, &r);
    if (pg && pg->last_pct >= 0)
        fputc('\n', stderr);
    if (r.code != CURLE_OK || r.status < 200 || r.status > 299) {
        if (r.code != CURLE_OK)
            snprintf(msg, cap, "upload to the bucket failed: %s", r.err);
        else
            snprintf(msg, cap, "the bucket refused the upload (HTTP %ld): %.300s", r.status, buf_str(&r.body));
        goto out;
    }
    buf_free(&r.body);
    buf_init(&r.body, CLI_MAX_REPLY);
    snprintf(url, sizeof url, "%s/upload-complete", o->c.server);
    snprintf(body, sizeof body, "{\"upload_id\":\"%s\"}", upload_id);
    cli_call(&o->c, url, body, NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
    *answer = cli_json_ok(&o->c, "upload-complete", &r, msg, cap);
    rc = *answer ? 0 : -1;
out:
    cJSON_Delete(ticket);
    buf_free(&r.body);
    return rc;
}

/* POST /upload; the URL KIE should fetch goes to input_url. 0 or -1. */
static int cli_upload(const struct cli_opts *o, char *input_url, size_t cap)
{
    struct cli_reply r;
    struct cli_progress pg = {&o->c, NULL, -1, 0.0};
    char url[CLI_URL_MAX];
    char msg[CLI_MSG_MAX];
    cJSON *j = NULL;
    const cJSON *u;
    struct stat st;
    const char *base = strrchr(o->photo, '/');
    int rc = -1;

    int direct = 0;
    double direct_limit = -1;

    buf_init(&r.body, CLI_MAX_REPLY);
    pg.name = base ? base + 1 : o->photo;
    snprintf(url, sizeof url, "%s/upload", o->c.server);
    if (stat(o->photo, &st) == 0) {
        double limit = cli_server_limit(o, &direct, &direct_limit);
        if (direct)
            limit = direct_limit;
        if (limit > 0 && (double)st.st_size > limit) {
            char size[32], lim[32];
            cli_human((double)st.st_size, size, sizeof size);
            cli_human(limit, lim, sizeof lim);
            snprintf(msg, sizeof msg, "%s is %s; the server accepts photos up to %s (%s).", pg.name, size, lim,
                     direct ? "MAX_DIRECT_UPLOAD_BYTES" : "MAX_UPLOAD_BYTES");
            goto out;
        }
    }
    if (!o->c.quiet && !o->c.tty) {
        char size[32];
        cli_human(stat(o->photo, &st) == 0 ? (double)st.st_size : 0.0, size, sizeof size);
        fprintf(stderr, "Uploading %s (%s) to %s%s\n", pg.name, size, o->c.server,
                direct ? " (straight to its S3 bucket)" : "");
    }
    if (direct) {
        if (cli_direct_upload(o, (long long)st.st_size, !o->c.quiet && o->c.tty ? &pg : NULL, &j, msg, sizeof msg))
            goto out;
    } else {
        cli_call(&o->c, url, NULL, NULL, o->photo, cli_sniff_type(o->photo), 0, !o->c.quiet && o->c.tty ? &pg : NULL,
                 &r);
        if (!o->c.quiet && o->c.tty && pg.last_pct >= 0)
            fputc('\n', stderr);
        j = cli_json_ok(&o->c, "upload", &r, msg, sizeof msg);
        if (!j)
            goto out;
    }
    u = cJSON_GetObjectItemCaseSensitive(j, "public_url");
    if (!cJSON_IsString(u) || !u->valuestring[0])
        u = cJSON_GetObjectItemCaseSensitive(j, "url");
    if (cli_copy_string(u, input_url, cap)) {
        snprintf(msg, sizeof msg, "upload: the server's answer has no usable \"url\".");
        goto out;
    }
    if (!o->c.quiet) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "width");
        const cJSON *hh = cJSON_GetObjectItemCaseSensitive(j, "height");
        const cJSON *orig = cJSON_GetObjectItemCaseSensitive(j, "original");
        const cJSON *ow = cJSON_GetObjectItemCaseSensitive(orig, "width");
        const cJSON *oh = cJSON_GetObjectItemCaseSensitive(orig, "height");
        const cJSON *ot = cJSON_GetObjectItemCaseSensitive(orig, "content_type");
        const cJSON *st_t = cJSON_GetObjectItemCaseSensitive(j, "content_type");
        if (cJSON_IsNumber(w) && cJSON_IsNumber(hh) && cJSON_IsNumber(ow) && cJSON_IsNumber(oh) && cJSON_IsString(ot) &&
            cJSON_IsString(st_t))
            fprintf(stderr, "Uploaded: %s (%.0fx%.0f %s -> %.0fx%.0f %s)\n", input_url, ow->valuedouble,
                    oh->valuedouble, ot->valuestring, w->valuedouble, hh->valuedouble, st_t->valuestring);
        else
            fprintf(stderr, "Uploaded: %s\n", input_url);
    }
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "error: %s\n", msg);
    cJSON_Delete(j);
    buf_free(&r.body);
    return rc;
}

/* The transport errors after which POST /generate is sent again (same key). */
static int cli_transient(CURLcode code)
{
    return code == CURLE_COULDNT_CONNECT || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
           code == CURLE_GOT_NOTHING || code == CURLE_OPERATION_TIMEDOUT || code == CURLE_PARTIAL_FILE;
}

/* POST /generate with the Idempotency-Key; the task id goes to task and
 * *replayed says whether the server answered an earlier request's answer.
 * 0, 1 when the key was used with another body (422 idempotency_key_reused,
 * nothing printed), -1 (message printed). */
static int cli_create(const struct cli_opts *o, const char *input_url, char *task, size_t cap, int *replayed)
{
    struct cli_reply r;
    char url[CLI_URL_MAX];
    char msg[CLI_MSG_MAX];
    char header[CLI_KEY_MAX + 32];
    char code[64];
    cJSON *req = cJSON_CreateObject();
    cJSON *j = NULL;
    const cJSON *id;
    char *body = NULL;
    double busy_until = cli_now() + CLI_BUSY_MAX_S;
    int retries = 0;
    int waited = 0;
    int rc = -1;

    buf_init(&r.body, CLI_MAX_REPLY);
    *replayed = 0;
    snprintf(msg, sizeof msg, "generate: out of memory.");
    if (!req || !cJSON_AddStringToObject(req, "input_url", input_url) ||
        !cJSON_AddStringToObject(req, "prompt", o->prompt) ||
        !cJSON_AddStringToObject(req, "aspect_ratio", o->aspect) ||
        !cJSON_AddStringToObject(req, "resolution", o->resolution))
        goto out;
    body = cJSON_PrintUnformatted(req);
    if (!body)
        goto out;
    snprintf(url, sizeof url, "%s/generate", o->c.server);
    snprintf(header, sizeof header, "Idempotency-Key: %s", o->key);
    for (;;) {
        buf_free(&r.body);
        buf_init(&r.body, CLI_MAX_REPLY);
        cli_call(&o->c, url, body, header[0] ? header : NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, &r);
        code[0] = '\0';
        if (r.code == CURLE_OK && r.status != 200)
            cli_error_code(&r, code, sizeof code);
        if (r.code == CURLE_OK && r.status == 503 && strcmp(code, "task_store_off") == 0 && header[0]) {
            /* no task store (TASK_STORE=off): the key cannot be honoured, so the request goes without it */
            if (!o->c.quiet)
                fprintf(stderr, "warning: the server keeps no task store (TASK_STORE=off): running this command "
                                "again will start (and pay for) another task\n");
            header[0] = '\0';
            continue;
        }
        if (r.code == CURLE_OK && r.status == 409 && strcmp(code, "request_in_progress") == 0 &&
            cli_now() < busy_until) {
            long secs = r.retry_after > 0 ? r.retry_after : 1;
            if (!o->c.quiet && !waited)
                fprintf(stderr, "The server is still creating this same request (an earlier run?); waiting for "
                                "its answer...\n");
            waited = 1;
            cli_sleep_ms((secs > CLI_BUSY_WAIT_MAX_S ? CLI_BUSY_WAIT_MAX_S : secs) * 1000L);
            continue;
        }
        if (r.code != CURLE_OK && cli_transient(r.code) && retries < CLI_CREATE_RETRIES && header[0]) {
            retries++;
            if (!o->c.quiet) {
                cli_describe_failure(&o->c, "generate", &r, msg, sizeof msg);
                fprintf(stderr, "warning: %s (retrying with the same Idempotency-Key)\n", msg);
            }
            cli_sleep_ms(1000L * retries);
            continue;
        }
        break;
    }
    if (r.code == CURLE_OK && r.status == 422 && strcmp(code, "idempotency_key_reused") == 0) {
        rc = 1;
        goto out;
    }
    j = cli_json_ok(&o->c, "generate", &r, msg, sizeof msg);
    if (!j)
        goto out;
    id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "taskId");
    if (cli_copy_string(id, task, cap)) {
        snprintf(msg, sizeof msg, "generate: the server's answer has no data.taskId.");
        goto out;
    }
    *replayed = r.replayed;
    if (!o->c.quiet && r.replayed)
        fprintf(stderr,
                "Task %s resumed: the server replayed its answer to an earlier run of this command "
                "(Idempotent-Replayed: true), so it was not charged again\n",
                task);
    else if (!o->c.quiet)
        fprintf(stderr, "Task %s created\n", task);
    rc = 0;
out:
    if (rc < 0)
        fprintf(stderr, "error: %s\n", msg);
    cJSON_Delete(req);
    cJSON_Delete(j);
    free(body);
    buf_free(&r.body);
    return rc;
}

/* Look for the newest task created with o->key in the last
 * IDEMPOTENCY_TTL_SECONDS (less a margin) in GET /tasks. 1 found (into p),
 * 0 not found or not knowable (an older server without /tasks, an error:
 * the caller goes on as if there were none). */
static int cli_find_prior(const struct cli_opts *o, struct cli_prior *p)
{
    char cursor[CLI_URL_MAX] = "";
    char msg[CLI_MSG_MAX];
    time_t oldest = time(NULL) - (IDEMPOTENCY_TTL_SECONDS - CLI_PRIOR_MARGIN_S);
    int found = 0;

    for (int pages = 0; pages < CLI_PRIOR_PAGES && !found; pages++) {
        cJSON *page = NULL;
        const cJSON *rec;
        const cJSON *next;
        long status;
        int older = 0;

        if (cli_tasks_page(&o->c, TASKSTORE_LIST_MAX, cursor, &page, &status, msg, sizeof msg))
            return 0;
        cJSON_ArrayForEach(rec, cJSON_GetObjectItemCaseSensitive(page, "tasks")) {
            const cJSON *k = cJSON_GetObjectItemCaseSensitive(rec, "idempotency_key");
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, "created_at");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(rec, "state");
            time_t created;

            if (cJSON_IsString(c) && cli_parse_utc(c->valuestring, &created) == 0 && created < oldest) {
                older = 1;
                break;
            }
            if (!cJSON_IsString(k) || strcmp(k->valuestring, o->key) != 0)
                continue;
            if (cli_copy_string(cJSON_GetObjectItemCaseSensitive(rec, "id"), p->id, sizeof p->id) ||
                cli_copy_string(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "input_urls"), 0),
                                p->input_url, sizeof p->input_url))
                continue;
            snprintf(p->state, sizeof p->state, "%s", cJSON_IsString(st) ? st->valuestring : "unknown");
            found = 1;
            break;
        }
        next = cJSON_GetObjectItemCaseSensitive(page, "next");
        if (older || !cJSON_IsString(next) || !next->valuestring[0] || strlen(next->valuestring) >= sizeof cursor ||
            strcmp(next->valuestring, cursor) == 0) {
            cJSON_Delete(page);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", next->valuestring);
        cJSON_Delete(page);
    }
    return found;
}

/* o->key from the photo's SHA-256 and the options (a random nonce with --new).
 * 0 or -1 (message printed). */
static int cli_make_key(struct cli_opts *o)
{
    char sha[CLI_SHA256_HEX];
    char err[CLI_MSG_MAX];
    char nonce[40] = "";
    struct cli_key_input in;

    if (cli_file_sha256(o->photo, sha, err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        return -1;
    }
    if (o->fresh) {
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, nonce);
    }
    in.photo_sha256 = sha;
    in.prompt = o->prompt;
    in.aspect_ratio = o->aspect;
    in.resolution = o->resolution;
    in.nonce = nonce;
    if (cli_idempotency_key(&in, o->key, sizeof o->key)) {
        fprintf(stderr, "error: could not compute the Idempotency-Key.\n");
        return -1;
    }
    return 0;
}

/* The task for this command: an earlier run's (resumed, nothing uploaded) or
 * a new one (upload, then create). *resumed says which; *started is when the
 * task was asked for (after the upload). 0 or -1 (printed). */
static int cli_start(const struct cli_opts *o, char *task, size_t cap, double *started, int *resumed)
{
    struct cli_prior prior;
    char input_url[CLI_URL_MAX];
    int replayed = 0;
    int rc;

    *resumed = 0;
    memset(&prior, 0, sizeof prior);
    if (!o->fresh && cli_find_prior(o, &prior)) {
        if (!o->c.quiet)
            fprintf(stderr, "An earlier run of this command (same photo, prompt and options) created %s (%s); "
                            "not uploading again\n",
                    prior.id, prior.state);
        *started = cli_now();
        rc = cli_create(o, prior.input_url, task, cap, &replayed);
        if (rc <= 0) {
            *resumed = replayed;
            return rc;
        }
    } else {
        if (cli_upload(o, input_url, sizeof input_url))
            return -1;
        *started = cli_now();
        rc = cli_create(o, input_url, task, cap, &replayed);
        if (rc <= 0) {
            *resumed = replayed;
            return rc;
        }
    }
    /* 422 idempotency_key_reused: an earlier run made the task with another upload of this photo */
    if (!cli_find_prior(o, &prior) || strlen(prior.id) >= cap) {
        fprintf(stderr, "error: generate: the server says this command's Idempotency-Key was used for another "
                        "request, and no task with it is listed in GET /tasks. Run it again with --new to start a "
                        "new task (charged again).\n");
        return -1;
    }
    snprintf(task, cap, "%s", prior.id);
    *resumed = 1;
    if (!o->c.quiet)
        fprintf(stderr, "Task %s resumed: an earlier run of this command created it, so it was not charged again\n",
                task);
    return 0;
}

static void cli_show_state(const struct cli_opts *o, const char *state, double elapsed, int changed)
{
    if (o->c.quiet)
        return;
    if (o->c.tty) {
        fprintf(stderr, "\r\033[KTask: %-10s %4.0f s", state, elapsed);
        fflush(stderr);
    } else if (changed) {
        fprintf(stderr, "State: %s (%.1f s)\n", state, elapsed);
    }
}

/* One GET /status. Returns 0 with the parsed answer in *root (caller
 * deletes it), 1 for a transient failure worth retrying, -1 for a hard one.
 * The reason is in msg unless 0. */
static int cli_status_once(const struct cli_opts *o, const char *url, long timeout_s, cJSON **root, char *msg,
                           size_t cap)
{
    struct cli_reply r;
    int rc;

    buf_init(&r.body, CLI_MAX_REPLY);
    cli_call(&o->c, url, NULL, NULL, NULL, NULL, timeout_s, NULL, &r);
    *root = cli_json_ok(&o->c, "status", &r, msg, cap);
    if (*root)
        rc = 0;
    else if (r.code == CURLE_OPERATION_TIMEDOUT || r.code == CURLE_COULDNT_CONNECT || r.code == CURLE_RECV_ERROR ||
             r.code == CURLE_GOT_NOTHING || r.status == 429 || r.status == 502 || r.status == 503 ||
             r.status == 504)
        rc = 1;
    else
        rc = -1;
    buf_free(&r.body);
    return rc;
}

/* Poll GET /status until success (the first result URL goes to result),
 * fail, or the --timeout. 0, CLI_KIE_FAILED when the task failed, or -1
 * (message printed). */
static int cli_poll(const struct cli_opts *o, const char *task, double started, char *result, size_t cap)
{
    char url[CLI_URL_MAX];
    char msg[CLI_MSG_MAX];
    char state[32] = "";
    char *esc = curl_easy_escape(NULL, task, 0);
    long interval = o->poll_ms;
    long max_interval = o->poll_ms > CLI_POLL_MAX_MS ? o->poll_ms : CLI_POLL_MAX_MS;
    double deadline = started + (double)o->timeout_s;
    int transient = 0;
    int rc = -1;
    cJSON *root = NULL;

    if (!esc) {
        fprintf(stderr, "error: out of memory\n");
        return -1;
    }
    snprintf(url, sizeof url, "%s/status?task_id=%s", o->c.server, esc);
    curl_free(esc);
    for (;;) {
        const cJSON *data;
        const cJSON *st;
        double left = deadline - cli_now();
        long call_timeout = left > (double)CLI_API_TIMEOUT_S ? CLI_API_TIMEOUT_S : left > 0 ? (long)left + 1 : 1;
        int got;

        cJSON_Delete(root);
        root = NULL;
        got = cli_status_once(o, url, call_timeout, &root, msg, sizeof msg);
        if (got < 0 || (got > 0 && ++transient > CLI_POLL_RETRIES))
            goto out;
        if (got > 0) {
            if (!o->c.quiet) {
                if (o->c.tty)
                    fputc('\n', stderr);
                fprintf(stderr, "warning: %s (retrying)\n", msg);
            }
        } else {
            transient = 0;
            data = cJSON_GetObjectItemCaseSensitive(root, "data");
            st = cJSON_GetObjectItemCaseSensitive(data, "state");
            if (!cJSON_IsString(st)) {
                snprintf(msg, sizeof msg, "status: the server's answer has no data.state.");
                goto out;
            }
            cli_show_state(o, st->valuestring, cli_now() - started, strcmp(state, st->valuestring) != 0);
            snprintf(state, sizeof state, "%s", st->valuestring);
            if (strcmp(state, "success") == 0) {
                const cJSON *u = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(data, "resultUrls"), 0);
                if (!cJSON_IsString(u) || !u->valuestring[0]) {
                    snprintf(msg, sizeof msg, "the task succeeded but the server gave no data.resultUrls.");
                    goto out;
                }
                if (strlen(u->valuestring) + (u->valuestring[0] == '/' ? strlen(o->c.server) : 0) >= cap) {
                    snprintf(msg, sizeof msg, "the result URL is longer than %zu bytes.", cap - 1);
                    goto out;
                }
                snprintf(result, cap, "%s%s", u->valuestring[0] == '/' ? o->c.server : "", u->valuestring);
                rc = 0;
                goto out;
            }
            if (strcmp(state, "fail") == 0) {
                const cJSON *fm = cJSON_GetObjectItemCaseSensitive(data, "failMsg");
                const cJSON *fc = cJSON_GetObjectItemCaseSensitive(data, "failCode");
                int has_code = cJSON_IsString(fc) && fc->valuestring[0];
                snprintf(msg, sizeof msg, "the generation failed: %s%s%s%s",
                         cJSON_IsString(fm) && fm->valuestring[0] ? fm->valuestring : "KIE gave no reason",
                         has_code ? " (KIE failCode " : "", has_code ? fc->valuestring : "", has_code ? ")" : "");
                rc = CLI_KIE_FAILED;
                goto out;
            }
        }
        /* sleep, redrawing the elapsed time on a terminal */
        for (long slept = 0; slept < interval;) {
            long step = interval - slept < 500 ? interval - slept : 500;
            left = deadline - cli_now();
            if (left <= 0) {
                snprintf(msg, sizeof msg,
                         "gave up after %ld s (--timeout) with task %s still %s; check it later with "
                         "GET %s/status?task_id=%s",
                         o->timeout_s, task, state[0] ? state : "unknown", o->c.server, task);
                goto out;
            }
            if ((double)step > left * 1000.0)
                step = (long)(left * 1000.0) + 1;
            cli_sleep_ms(step);
            slept += step;
            if (o->c.tty && state[0])
                cli_show_state(o, state, cli_now() - started, 0);
        }
        interval = interval * 3 / 2 > max_interval ? max_interval : interval * 3 / 2;
    }
out:
    if (!o->c.quiet && o->c.tty && state[0])
        fputc('\n', stderr);
    if (rc)
        fprintf(stderr, "error: %s\n", msg);
    cJSON_Delete(root);
    return rc;
}

/* The default output name: result-<task>.<ext of the URL's path, else png>. */
static void cli_default_name(const char *task, const char *url, char *out, size_t cap)
{
    char safe[CLI_TASK_MAX];
    char ext[8] = "png";
    const char *p = strstr(url, "://");
    const char *end;
    const char *slash;
    const char *dot = NULL;
    size_t i;

    for (i = 0; task[i] && i + 1 < sizeof safe; i++) {
        char c = task[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_';
        safe[i] = ok ? c : '_';
    }
    safe[i] = '\0';
    p = p ? p + 3 : url;
    end = p + strcspn(p, "?#");
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash) {
        for (const char *q = end; q > slash; q--) {
            if (q[-1] == '/')
                break;
            if (q[-1] == '.') {
                dot = q;
                break;
            }
        }
    }
    if (dot && end - dot >= 1 && end - dot < (long)sizeof ext) {
        size_t n = (size_t)(end - dot);
        int ok = 1;
        for (i = 0; i < n; i++) {
            char c = dot[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                ok = 0;
        }
        if (ok) {
            memcpy(ext, dot, n);
            ext[n] = '\0';
        }
    }
    snprintf(out, cap, "result-%s.%s", safe, ext);
}

static size_t cli_write_file(char *data, size_t size, size_t n, void *arg)
{
    struct cli_sink *s = arg;
    size_t len = size * n;

    if ((long)len > CLI_MAX_RESULT - s->size) {
        s->too_large = 1;
        return 0;
    }
    if (s->head_len < sizeof s->head) {
        size_t take = sizeof s->head - s->head_len < len ? sizeof s->head - s->head_len : len;
        memcpy(s->head + s->head_len, data, take);
        s->head_len += take;
    }
    if (fwrite(data, 1, len, s->f) != len)
        return 0;
    s->size += (long)len;
    return len;
}

static int cli_is_image(const unsigned char *h, size_t n)
{
    return (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) ||
           (n >= 8 && memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0) ||
           (n >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0);
}

/* Download `url` to `path` via a temp file in the same directory and a
 * rename, so `path` is either the whole image or untouched. 0 or -1. */
static int cli_fetch(const struct cli_opts *o, const char *url, const char *path)
{
    CURL *h = curl_easy_init();
    struct cli_sink sink = {0};
    char tmp[CLI_PATH_MAX + 32];
    char err[CURL_ERROR_SIZE] = "";
    char msg[CLI_MSG_MAX] = "download: out of memory.";
    CURLcode code;
    long status = 0;
    int fd = -1;
    int rc = -1;
    mode_t mask;

    tmp[0] = '\0';
    if (!h)
        goto out;
    if (snprintf(tmp, sizeof tmp, "%s.part-XXXXXX", path) >= (int)sizeof tmp) {
        tmp[0] = '\0';
        snprintf(msg, sizeof msg, "the output path is too long.");
        goto out;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(msg, sizeof msg, "cannot create a temp file beside %s: %s", path, strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(sink.f = fdopen(fd, "wb"))) {
        snprintf(msg, sizeof msg, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1; /* owned by sink.f */
    if (!o->c.quiet)
        fprintf(stderr, "Downloading %s\n", url);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "product-photo-api-cli/1.0");
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CLI_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cli_write_file);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    code = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (code != CURLE_OK) {
        if (sink.too_large)
            snprintf(msg, sizeof msg, "download of %s: the result is larger than %ld bytes.", url, CLI_MAX_RESULT);
        else
            snprintf(msg, sizeof msg, "download of %s failed: %s", url, err[0] ? err : curl_easy_strerror(code));
        goto out;
    }
    if (!cli_is_image(sink.head, sink.head_len)) {
        snprintf(msg, sizeof msg, "download of %s: the answer (HTTP %ld, %ld bytes) is not an image.", url, status,
                 sink.size);
        goto out;
    }
    if (fflush(sink.f) != 0 || fsync(fileno(sink.f)) != 0) {
        snprintf(msg, sizeof msg, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(sink.f) != 0) {
        sink.f = NULL;
        snprintf(msg, sizeof msg, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    sink.f = NULL;
    if (rename(tmp, path) != 0) {
        snprintf(msg, sizeof msg, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "error: %s\n", msg);
    if (sink.f)
        fclose(sink.f);
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}

/* ---- the command -------------------------------------------------------- */

int cli_generate(int argc, char **argv)
{
    struct cli_opts o;
    char task[CLI_TASK_MAX];
    char result[CLI_URL_MAX];
    char path[CLI_PATH_MAX];
    double started;
    int resumed = 0;
    int rc;

    memset(&o, 0, sizeof o);
    rc = cli_parse(argc, argv, &o);
    if (rc > 0)
        return 0;
    if (rc < 0 || cli_check_files(&o))
        return CLI_EXIT_USAGE;
    o.c.tty = isatty(STDERR_FILENO);
    if (cli_make_key(&o))
        return CLI_EXIT_FAIL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "error: libcurl failed to start.\n");
        return CLI_EXIT_FAIL;
    }
    rc = CLI_EXIT_FAIL;
    if (cli_start(&o, task, sizeof task, &started, &resumed))
        goto out;
    rc = cli_poll(&o, task, started, result, sizeof result);
    if (rc) {
        if (rc == CLI_KIE_FAILED && resumed)
            fprintf(stderr, "note: that is the task an earlier run of this same command started; add --new to "
                            "start another one (charged again), or change the prompt or options.\n");
        rc = CLI_EXIT_FAIL;
        goto out;
    }
    rc = CLI_EXIT_FAIL;
    if (o.out)
        snprintf(path, sizeof path, "%s", o.out);
    else
        cli_default_name(task, result, path, sizeof path);
    if (cli_fetch(&o, result, path))
        goto out;
    if (!o.c.quiet)
        fprintf(stderr, "Saved %s (%.1f s)\n", path, cli_now() - started);
    printf("%s\n", path);
    fflush(stdout);
    rc = 0;
out:
    curl_global_cleanup();
    return rc;
}
