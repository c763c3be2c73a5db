/* cli_task.c - one photo's task: its Idempotency-Key, finding an earlier
 * run's task, POST /generate, polling GET /status. See cli_job.h.
 *
 * The same command run again (after a crash, a lost connection, or just
 * again) must not pay twice: before uploading, cli_start looks for the key in
 * GET /tasks; when an earlier run's task is there, it sends that run's exact
 * body again and the server replays the first answer (Idempotent-Replayed:
 * true). A fresh upload has a new URL, so the same key with it is answered
 * 422 idempotency_key_reused: the task found under the key is resumed then.
 * 409 request_in_progress (the first request still running) is waited out
 * with Retry-After; 429 (our server's per-IP limit or KIE's, passed through)
 * waits for Retry-After; 502/503/504 and dropped connections are retried with
 * exponential backoff and jitter, a bounded number of times, always with the
 * same key (a failed request releases it on the server). --new mixes a random
 * nonce into the key. A server without a task store (503 task_store_off) gets
 * the request without the key, once, and no automatic retries. */
#include "cli_job.h"
#include "cli_http.h"
#include "cli_pace.h"
#include "cli_tasks.h"
#include "config.h"
#include "taskstore.h"
#include "validate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#define CLI_POLL_MAX_MS 10000L
#define CLI_POLL_RETRIES 5     /* consecutive transient /status failures tolerated */
#define CLI_BUSY_MAX_S 150.0   /* 409 request_in_progress waited for (> IDEMPOTENCY_STALE_SECONDS) */
#define CLI_BUSY_WAIT_MAX_S 10L
#define CLI_CREATE_RETRIES 4   /* POST /generate again after 502/503/504 or a transport error (same key) */
#define CLI_LIMITED_RETRIES 12 /* ... after 429 */
#define CLI_LIMITED_WAIT_MAX_MS 60000L
#define CLI_PRIOR_PAGES 10     /* GET /tasks pages searched for an earlier run's key */
#define CLI_PRIOR_MARGIN_S 600 /* a key this close to IDEMPOTENCY_TTL_SECONDS is not counted on */

/* The task an earlier run of the same command created (found in GET /tasks). */
struct cli_prior {
    char id[CLI_TASK_MAX];
    char input_url[CLI_URL_MAX];
    char photo_name[PHOTO_NAME_MAX + 1]; /* "" when the record has none */
    char state[32];
};

/* The photo's file name as the server's photo_name (it names the result in
 * GET /results.zip), or "" when it is not one (photo_name_valid). */
static void photo_name_of(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');

    snprintf(out, cap, "%s", base ? base + 1 : path);
    if (!photo_name_valid(out))
        out[0] = '\0';
}

int cli_job_sleep(const struct cli_job *j, long ms)
{
    if (j->g->pace)
        return cli_pace_sleep(j->g->pace, ms);
    cli_sleep_ms(ms);
    return 0;
}

static void cli_job_state(struct cli_job *j, const char *state)
{
    if (j->on_state)
        j->on_state(j, state);
}

/* The transport errors after which POST /generate is sent again (same key). */
static int cli_transient(CURLcode code)
{
    return code == CURLE_COULDNT_CONNECT || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
           code == CURLE_GOT_NOTHING || code == CURLE_OPERATION_TIMEDOUT || code == CURLE_PARTIAL_FILE;
}

/* One POST /generate, through a pace token when batching. 0, or CLI_STOPPED. */
static int cli_create_call(struct cli_job *j, const char *url, const char *body, const char *header,
                           struct cli_reply *r)
{
    int token = -1;

    if (j->g->pace && (token = cli_pace_take(j->g->pace)) < 0)
        return CLI_STOPPED;
    buf_free(&r->body);
    buf_init(&r->body, CLI_MAX_REPLY);
    cli_call(&j->g->c, url, body, header[0] ? header : NULL, NULL, NULL, CLI_API_TIMEOUT_S, NULL, r);
    if (j->g->pace)
        cli_pace_give(j->g->pace, token);
    return 0;
}

/* POST /generate with the Idempotency-Key; the task id goes to j->task and
 * *replayed says whether the server answered an earlier request's answer.
 * 0, 1 when the key was used with another body (422 idempotency_key_reused),
 * -1 (j->err) or CLI_STOPPED. */
static int cli_create(struct cli_job *j, const char *input_url, const char *photo_name, int *replayed)
{
    const struct cli_conn *c = &j->g->c;
    struct cli_reply r;
    char url[CLI_URL_MAX];
    char header[CLI_KEY_MAX + 32];
    char code[64];
    cJSON *req = cJSON_CreateObject();
    cJSON *ans = NULL;
    const cJSON *id;
    char *body = NULL;
    double busy_until = cli_now() + CLI_BUSY_MAX_S;
    int retries = 0;
    int limited = 0;
    int waited = 0;
    int rc = -1;

    buf_init(&r.body, CLI_MAX_REPLY);
    *replayed = 0;
    snprintf(j->err, sizeof j->err, "generate: out of memory.");
    if (!req || !cJSON_AddStringToObject(req, "input_url", input_url) ||
        !cJSON_AddStringToObject(req, "prompt", j->g->prompt) ||
        !cJSON_AddStringToObject(req, "aspect_ratio", j->g->aspect) ||
        !cJSON_AddStringToObject(req, "resolution", j->g->resolution) ||
        (photo_name[0] && !cJSON_AddStringToObject(req, "photo_name", photo_name)))
        goto out;
    body = cJSON_PrintUnformatted(req);
    if (!body)
        goto out;
    snprintf(url, sizeof url, "%s/generate", c->server);
    snprintf(header, sizeof header, "Idempotency-Key: %s", j->key);
    for (;;) {
        long wait_ms = -1;

        if (cli_create_call(j, url, body, header, &r)) {
            rc = CLI_STOPPED;
            goto out;
        }
        code[0] = '\0';
        if (r.code == CURLE_OK && r.status != 200)
            cli_error_code(&r, code, sizeof code);
        if (r.code == CURLE_OK && r.status == 503 && strcmp(code, "task_store_off") == 0 && header[0]) {
            /* no task store (TASK_STORE=off): the key cannot be honoured, so the request goes without it */
            if (!c->quiet)
                fprintf(stderr, "warning: the server keeps no task store (TASK_STORE=off): running this command "
                                "again will start (and pay for) another task\n");
            header[0] = '\0';
            continue;
        }
        if (r.code == CURLE_OK && r.status == 409 && strcmp(code, "request_in_progress") == 0 &&
            cli_now() < busy_until) {
            long secs = r.retry_after > 0 ? r.retry_after : 1;
            if (!c->quiet && !waited)
                fprintf(stderr, "The server is still creating this same request (an earlier run?); waiting for "
                                "its answer...\n");
            waited = 1;
            wait_ms = (secs > CLI_BUSY_WAIT_MAX_S ? CLI_BUSY_WAIT_MAX_S : secs) * 1000L;
        } else if (r.code == CURLE_OK && r.status == 429 && header[0] && ++limited <= CLI_LIMITED_RETRIES) {
            /* ours (RATE_LIMIT_GENERATE, with Retry-After) or KIE's (passed through) */
            wait_ms = r.retry_after > 0 ? r.retry_after * 1000L
                                        : cli_pace_backoff(j->g->pace, limited, 2000L, CLI_LIMITED_WAIT_MAX_MS);
            if (wait_ms > CLI_LIMITED_WAIT_MAX_MS)
                wait_ms = CLI_LIMITED_WAIT_MAX_MS;
        } else if (header[0] && retries < CLI_CREATE_RETRIES &&
                   (r.code == CURLE_OK ? r.status == 502 || r.status == 503 || r.status == 504
                                       : cli_transient(r.code))) {
            retries++;
            wait_ms = cli_pace_backoff(j->g->pace, retries, 1000L, 16000L);
        }
        if (wait_ms < 0)
            break;
        if (!c->quiet && r.status != 409) {
            char msg[CLI_MSG_MAX];
            cli_describe_failure(c, "generate", &r, msg, sizeof msg);
            fprintf(stderr, "warning: %s (retrying with the same Idempotency-Key)\n", msg);
        }
        if (cli_job_sleep(j, wait_ms)) {
            rc = CLI_STOPPED;
            goto out;
        }
    }
    if (r.code == CURLE_OK && r.status == 422 && strcmp(code, "idempotency_key_reused") == 0) {
        rc = 1;
        goto out;
    }
    ans = cli_json_ok(c, "generate", &r, j->err, sizeof j->err);
    if (!ans)
        goto out;
    id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ans, "data"), "taskId");
    if (cli_copy_string(id, j->task, sizeof j->task)) {
        snprintf(j->err, sizeof j->err, "generate: the server's answer has no data.taskId.");
        goto out;
    }
    *replayed = r.replayed;
    if (!c->quiet && r.replayed)
        fprintf(stderr,
                "Task %s resumed: the server replayed its answer to an earlier run of this command "
                "(Idempotent-Replayed: true), so it was not charged again\n",
                j->task);
    else if (!c->quiet)
        fprintf(stderr, "Task %s created\n", j->task);
    rc = 0;
out:
    cJSON_Delete(req);
    cJSON_Delete(ans);
    free(body);
    buf_free(&r.body);
    return rc;
}

/* Look for the newest task created with j->key in the last
 * IDEMPOTENCY_TTL_SECONDS (less a margin) in GET /tasks. 1 found (into p),
 * 0 not found or not knowable (an older server without /tasks, an error:
 * the caller goes on as if there were none). */
static int cli_find_prior(const struct cli_job *j, struct cli_prior *p)
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

        if (cli_tasks_page(&j->g->c, TASKSTORE_LIST_MAX, cursor, &page, &status, msg, sizeof msg))
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
            if (!cJSON_IsString(k) || strcmp(k->valuestring, j->key) != 0)
                continue;
            if (cli_copy_string(cJSON_GetObjectItemCaseSensitive(rec, "id"), p->id, sizeof p->id) ||
                cli_copy_string(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "input_urls"), 0),
                                p->input_url, sizeof p->input_url))
                continue;
            {
                /* the first request's photo_name: the same body is sent again, so the server replays it */
                const cJSON *pn = cJSON_GetObjectItemCaseSensitive(rec, "photo_name");
                if (!cJSON_IsString(pn) || cli_copy_string(pn, p->photo_name, sizeof p->photo_name))
                    p->photo_name[0] = '\0';
            }
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

int cli_job_key(struct cli_job *j, const char *nonce)
{
    char fresh[40] = "";
    struct cli_key_input in;

    if (!j->sha256[0] && cli_file_sha256(j->photo, j->sha256, j->err, sizeof j->err))
        return -1;
    if (j->g->fresh) {
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, fresh);
        nonce = fresh;
    }
    in.photo_sha256 = j->sha256;
    in.prompt = j->g->prompt;
    in.aspect_ratio = j->g->aspect;
    in.resolution = j->g->resolution;
    in.nonce = nonce;
    if (cli_idempotency_key(&in, j->key, sizeof j->key)) {
        snprintf(j->err, sizeof j->err, "could not compute the Idempotency-Key.");
        return -1;
    }
    return 0;
}

int cli_start(struct cli_job *j, double *started, int *resumed)
{
    struct cli_prior prior;
    char input_url[CLI_URL_MAX];
    int replayed = 0;
    int rc;

    *resumed = 0;
    memset(&prior, 0, sizeof prior);
    if (!j->g->fresh && cli_find_prior(j, &prior)) {
        if (!j->g->c.quiet)
            fprintf(stderr, "An earlier run of this command (same photo, prompt and options) created %s (%s); "
                            "not uploading again\n",
                    prior.id, prior.state);
        *started = cli_now();
        cli_job_state(j, "submitting");
        rc = cli_create(j, prior.input_url, prior.photo_name, &replayed);
    } else {
        cli_job_state(j, "uploading");
        rc = cli_upload(j, input_url, sizeof input_url);
        if (rc)
            return rc;
        *started = cli_now();
        cli_job_state(j, "submitting");
        photo_name_of(j->photo, prior.photo_name, sizeof prior.photo_name);
        rc = cli_create(j, input_url, prior.photo_name, &replayed);
    }
    if (rc <= 0) {
        *resumed = replayed;
        return rc;
    }
    /* 422 idempotency_key_reused: an earlier run made the task with another upload of this photo */
    if (!cli_find_prior(j, &prior) || strlen(prior.id) >= sizeof j->task) {
        snprintf(j->err, sizeof j->err,
                 "generate: the server says this command's Idempotency-Key was used for another request, and no "
                 "task with it is listed in GET /tasks. Run it again with --new to start a new task (charged "
                 "again).");
        return -1;
    }
    snprintf(j->task, sizeof j->task, "%s", prior.id);
    *resumed = 1;
    if (!j->g->c.quiet)
        fprintf(stderr, "Task %s resumed: an earlier run of this command created it, so it was not charged again\n",
                j->task);
    return 0;
}

static void cli_show_state(const struct cli_job *j, const char *state, double elapsed, int changed)
{
    if (j->g->c.quiet)
        return;
    if (j->g->c.tty) {
        fprintf(stderr, "\r\033[KTask: %-10s %4.0f s", state, elapsed);
        fflush(stderr);
    } else if (changed) {
        fprintf(stderr, "State: %s (%.1f s)\n", state, elapsed);
    }
}

/* One GET /status. Returns 0 with the parsed answer in *root (caller
 * deletes it), 1 for a transient failure worth retrying (*retry_after: its
 * Retry-After or -1), -1 for a hard one. The reason is in msg unless 0. */
static int cli_status_once(const struct cli_job *j, const char *url, long timeout_s, cJSON **root,
                           long *retry_after, char *msg, size_t cap)
{
    struct cli_reply r;
    int rc;

    buf_init(&r.body, CLI_MAX_REPLY);
    cli_call(&j->g->c, url, NULL, NULL, NULL, NULL, timeout_s, NULL, &r);
    *retry_after = r.retry_after;
    *root = cli_json_ok(&j->g->c, "status", &r, msg, cap);
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

/* A "success" answer's first result URL into result (our server's own
 * paths made absolute). 0 or -1 (msg). */
static int cli_result_url(const struct cli_job *j, const cJSON *data, char *result, size_t cap, char *msg,
                          size_t msg_cap)
{
    const cJSON *u = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(data, "resultUrls"), 0);
    const char *server = j->g->c.server;

    if (!cJSON_IsString(u) || !u->valuestring[0]) {
        snprintf(msg, msg_cap, "the task succeeded but the server gave no data.resultUrls.");
        return -1;
    }
    if (strlen(u->valuestring) + (u->valuestring[0] == '/' ? strlen(server) : 0) >= cap) {
        snprintf(msg, msg_cap, "the result URL is longer than %zu bytes.", cap - 1);
        return -1;
    }
    snprintf(result, cap, "%s%s", u->valuestring[0] == '/' ? server : "", u->valuestring);
    return 0;
}

int cli_poll(struct cli_job *j, double started, char *result, size_t cap)
{
    const struct cli_conn *c = &j->g->c;
    char url[CLI_URL_MAX];
    char *msg = j->err;
    size_t msg_cap = sizeof j->err;
    char state[32] = "";
    char *esc = curl_easy_escape(NULL, j->task, 0);
    long interval = j->g->poll_ms;
    long max_interval = j->g->poll_ms > CLI_POLL_MAX_MS ? j->g->poll_ms : CLI_POLL_MAX_MS;
    double deadline = started + (double)j->g->timeout_s;
    int transient = 0;
    int rc = -1;
    cJSON *root = NULL;

    j->credits = -1;
    if (!esc) {
        snprintf(msg, msg_cap, "out of memory");
        return -1;
    }
    snprintf(url, sizeof url, "%s/status?task_id=%s", c->server, esc);
    curl_free(esc);
    for (;;) {
        const cJSON *data;
        const cJSON *st;
        double left = deadline - cli_now();
        long call_timeout = left > (double)CLI_API_TIMEOUT_S ? CLI_API_TIMEOUT_S : left > 0 ? (long)left + 1 : 1;
        long retry_after = -1;
        long wait_ms = interval;
        int got;

        cJSON_Delete(root);
        root = NULL;
        got = cli_status_once(j, url, call_timeout, &root, &retry_after, msg, msg_cap);
        if (got < 0 || (got > 0 && ++transient > CLI_POLL_RETRIES))
            goto out;
        if (got > 0) {
            if (!c->quiet) {
                if (c->tty)
                    fputc('\n', stderr);
                fprintf(stderr, "warning: %s (retrying)\n", msg);
            }
            if (retry_after > 0)
                wait_ms = retry_after * 1000L;
        } else {
            const cJSON *cr;

            transient = 0;
            data = cJSON_GetObjectItemCaseSensitive(root, "data");
            st = cJSON_GetObjectItemCaseSensitive(data, "state");
            if (!cJSON_IsString(st)) {
                snprintf(msg, msg_cap, "status: the server's answer has no data.state.");
                goto out;
            }
            cli_show_state(j, st->valuestring, cli_now() - started, strcmp(state, st->valuestring) != 0);
            if (strcmp(state, st->valuestring) != 0)
                cli_job_state(j, st->valuestring);
            snprintf(state, sizeof state, "%s", st->valuestring);
            cr = cJSON_GetObjectItemCaseSensitive(data, "creditsConsumed");
            if (cJSON_IsNumber(cr))
                j->credits = cr->valuedouble;
            if (strcmp(state, "success") == 0) {
                rc = cli_result_url(j, data, result, cap, msg, msg_cap);
                goto out;
            }
            if (strcmp(state, "fail") == 0) {
                const cJSON *fm = cJSON_GetObjectItemCaseSensitive(data, "failMsg");
                const cJSON *fc = cJSON_GetObjectItemCaseSensitive(data, "failCode");
                int has_code = cJSON_IsString(fc) && fc->valuestring[0];
                snprintf(msg, msg_cap, "the generation failed: %s%s%s%s",
                         cJSON_IsString(fm) && fm->valuestring[0] ? fm->valuestring : "KIE gave no reason",
                         has_code ? " (KIE failCode " : "", has_code ? fc->valuestring : "", has_code ? ")" : "");
                rc = CLI_KIE_FAILED;
                goto out;
            }
        }
        /* sleep, redrawing the elapsed time on a terminal */
        for (long slept = 0; slept < wait_ms;) {
            long step = wait_ms - slept < 500 ? wait_ms - slept : 500;
            left = deadline - cli_now();
            if (left <= 0) {
                snprintf(msg, msg_cap,
                         "gave up after %ld s (--timeout) with task %s still %s; check it later with "
                         "GET %s/status?task_id=%s",
                         j->g->timeout_s, j->task, state[0] ? state : "unknown", c->server, j->task);
                goto out;
            }
            if ((double)step > left * 1000.0)
                step = (long)(left * 1000.0) + 1;
            if (cli_job_sleep(j, step)) {
                rc = CLI_STOPPED;
                goto out;
            }
            slept += step;
            if (c->tty && state[0])
                cli_show_state(j, state, cli_now() - started, 0);
        }
        interval = interval * 3 / 2 > max_interval ? max_interval : interval * 3 / 2;
    }
out:
    if (!c->quiet && c->tty && state[0])
        fputc('\n', stderr);
    cJSON_Delete(root);
    return rc;
}
