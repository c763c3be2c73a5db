/*
 * sim_main.c - kie-sim, a local simulator of the KIE job API (https://api.kie.ai) for the
 * model flux-2/pro-image-to-image. The product-photo-api tests run it on a free
 * loopback port and point the server's KIE_BASE_URL at it instead of the paid
 * service. Protocol as documented in the repo's KIE notes (docs/kie-api.md):
 *
 *   POST /api/v1/jobs/createTask   Bearer auth; validates model, callBackUrl,
 *        input.{input_urls 1-8 http(s), prompt 3-5000 chars, aspect_ratio,
 *        resolution, nsfw_checker?}; errors are HTTP 200 {"code":422,"msg":..}.
 *        Success: {"code":200,"msg":"success","data":{"taskId":"task_flux-2_.."}}
 *   GET  /api/v1/jobs/recordInfo?taskId=  Bearer auth; {"code":200,"message":
 *        "success","data":{taskId,model,state,param,resultJson,failCode,failMsg,
 *        costTime,completeTime,createTime,updateTime}} (times Unix ms; param and
 *        resultJson are JSON *strings*; costTime/completeTime null until done).
 *        Unknown or missing taskId: {"code":422,"msg":"recordInfo is null"...}.
 *   GET  /results/<taskId>.png     the "generated" image: the first input fitted
 *        whole on a light studio background in the requested aspect ratio (auto =
 *        the first input's) at ~1 (1K) or ~4 (2K) megapixels, marked "SIMULATED"
 *        (result_style=gradient: the older 256/512 px wide test pattern).
 *   callBackUrl                    POSTed with the KIE callback JSON when a task
 *        ends (code 200 "Playground task completed successfully." / 501 failed);
 *        if webhook_hmac_key is set, signed with X-Webhook-Timestamp/-Signature.
 *   GET  /api/v1/chat/credit       Bearer auth; {"code":200,"msg":"success","data":
 *        <balance>}: each --api-key has a balance (initial_credits), createTask
 *        takes price_1k/price_2k or answers code 402 "Insufficient credits", a
 *        failed task gives it back (refund_failed); recordInfo and callbacks
 *        carry creditsConsumed once the task is done. With rate_limit=1, more
 *        than rate_limit_max (20) createTask per rate_limit_window_ms (10 s) per
 *        key are answered HTTP 429 at once (sim_ratelimit.c).
 *   POST /api/file-stream-upload, /api/file-base64-upload, /api/file-url-upload
 *        KIE's file-upload API (its own host at KIE, the same port here; see
 *        sim_upload.h); files are served at GET /kie-files/<uploadPath>/<name>.
 *
 * Task lifecycle: waiting -> queuing -> generating -> success|fail, each step
 * lasting step_ms. Like KIE, a task first downloads every input_url (10 s
 * timeout, 10 MB cap, JPEG/PNG/WEBP magic) and decodes the first one; a failed
 * download or decode ends the task in "fail" with failCode "422" and a failMsg
 * naming the URL and the reason.
 * SECURITY: only loopback is ever contacted. URLs (inputs, redirects, callback)
 * must name 127.x.x.x, localhost or [::1], else they count as unreachable and
 * no traffic (not even DNS) is sent; CURLOPT_OPENSOCKETFUNCTION re-checks every
 * connect, redirects are followed by hand with the same host check, proxies off.
 *
 * Test-only endpoints (no auth):
 *   GET/POST /sim/config     read / change knobs (JSON object, any subset;
 *                            {"reset":true} restores the start-up values)
 *   GET/DELETE /sim/requests log of API requests received (time_ms, mono_ms,
 *                            method, path, query, auth_ok, content_type,
 *                            parsed JSON body), cap 4000
 *   GET /sim/tasks           every task with stateTimes (when each state began)
 *                            and its callback outcome
 *   GET/DELETE /sim/files    the uploaded files / drop them all
 * Knobs (CLI --name-with-dashes VALUE, or JSON): see sim_knobs[] in
 * sim_admin.c or --help. Modes: normal http500 nonjson hang reset code401
 * code402 code422 code429 code455 code500 code501; upload modes in
 * sim_upload.h.
 *
 * Source layout (one module per part of KIE's API, like the server's src/):
 *   sim.h          shared types: knobs, task, job, app; sim_util.c helpers
 *   sim_main.c     options, start-up and shutdown (this file)
 *   sim_http.c     HTTP shell: body reading, route table, responses, auth
 *   sim_tasks.c    createTask / recordInfo, the task table, state machine, threads
 *   sim_credits.c  balances per API key, prices, refunds, GET /api/v1/chat/credit
 *   sim_ratelimit.c KIE's createTask rate limit (a window per key)
 *   sim_fetch.c    loopback-only downloads (input images, fileUrl)
 *   sim_upload.c   the file-upload API: validation, base64, answers
 *   sim_form.c     the multipart body of file-stream-upload (MHD PostProcessor)
 *   sim_files.c    the uploaded-file store (memory or --files-dir) and its routes
 *   sim_callback.c callBackUrl delivery and its HMAC signature
 *   sim_admin.c    knob table, request log, /sim/... routes
 *   sim_results.c  result images: made after the downloads, kept, GET /results/
 *   sim_image.c    image sniffing, the studio result (libvips), the gradient PNG
 *
 * Threads: MHD thread-per-connection (so latency/hang never block others),
 * one scheduler thread advancing task states, SIM_WORKERS workers doing the
 * blocking downloads, result images and callback POSTs. One mutex
 * (app->lock) guards tasks, jobs, config, balances, rate windows and the
 * request log; the file store has its own. SIGINT/SIGTERM -> orderly exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>

#include "sim.h"
#include "sim_admin.h"
#include "sim_credits.h"
#include "sim_files.h"
#include "sim_http.h"
#include "sim_image.h"
#include "sim_tasks.h"

#define SIM_MAX_TASKS_DEFAULT 10000L /* oldest evicted beyond this */
#define SIM_FILES_MAX_BYTES_DEFAULT (512L * 1024 * 1024)
#define SIM_FILES_MAX_COUNT_DEFAULT 1000L
#define SIM_MAX_RESULT_BYTES_DEFAULT (512L * 1024 * 1024)
#define SIM_CONN_LIMIT        512u
#define SIM_CONN_TIMEOUT_S    120u

static void sim_usage(FILE *f)
{
    fputs("usage: kie-sim [options]\n"
          "Simulates the KIE job API (model " SIM_MODEL ") on loopback for tests.\n\n"
          "Options (also --name=value):\n"
          "  --host ADDR           IPv4 loopback address to bind (default 127.0.0.1; only 127.x.x.x allowed)\n"
          "  --port N              TCP port, 0 = ephemeral (default 0; env KIE_SIM_PORT)\n"
          "  --api-key KEY         Bearer key clients must send (default test-key; env KIE_SIM_API_KEY);\n"
          "                        give it up to 8 times for several keys, each with its own credit balance\n"
          "                        and rate-limit window\n"
          "  --max-tasks N         tasks kept in memory, oldest evicted (default 10000)\n"
          "  --files-dir DIR       keep uploaded files in DIR (an existing directory) instead of memory\n"
          "  --files-max-bytes N   uploaded files kept at most, in bytes; oldest dropped (default 536870912)\n"
          "  --files-max-count N   uploaded files kept at most; oldest dropped (default 1000)\n"
          "  --max-result-bytes N  result PNGs kept at most, in bytes; oldest dropped (default 536870912)\n"
          "  --help                this text\n\n"
          "Knobs (start-up flags; change at runtime with POST /sim/config {\"knob\":value,...},\n"
          "{\"reset\":true} restores the start-up values; GET /sim/config shows them):\n", f);
    sim_knobs_usage(f);
    fputs("\nModes for create_mode/record_mode/credit_mode:\n"
          "  normal   behave like KIE\n"
          "  http500  HTTP 500 with a text body      nonjson  HTTP 200 with an HTML body\n"
          "  hang     never answer (until the client gives up, hang_max_ms or shutdown)\n"
          "  reset    close the connection without answering (TCP RST)\n"
          "  code401 code402 code422 code455 code500 code501  HTTP 200 with that KIE \"code\"\n"
          "  code429  HTTP 429 with code 429\n\n"
          "Modes for upload_mode (the three upload routes):\n"
          "  normal   behave like KIE            nourl    success, but data has no downloadUrl\n"
          "  http401  HTTP 401 {\"success\":false,\"code\":401,...}   http500  HTTP 500, code 500\n"
          "  code400 code500  HTTP 200 with {\"success\":false} and that code\n"
          "  hang reset nonjson  as for create_mode\n\n"
          "Endpoints: POST /api/v1/jobs/createTask, GET /api/v1/jobs/recordInfo?taskId=,\n"
          "  GET /api/v1/chat/credit (the key's balance), GET /results/<taskId>.png,\n"
          "  POST /api/file-stream-upload (multipart file, uploadPath, fileName),\n"
          "  POST /api/file-base64-upload (JSON base64Data, uploadPath, fileName),\n"
          "  POST /api/file-url-upload (JSON fileUrl, uploadPath, fileName) - KIE's upload API on this port,\n"
          "  GET /kie-files/<uploadPath>/<fileName> and GET /kie-download/<fileId> (uploaded files, no key),\n"
          "  GET|POST /sim/config, GET|DELETE /sim/requests, GET /sim/tasks, GET|DELETE /sim/files.\n"
          "Uploads answer {\"success\":true,\"code\":200,\"msg\":\"File uploaded successfully\",\"data\":{...}}\n"
          "  with data.downloadUrl = http://HOST:PORT/kie-files/<uploadPath>/<fileName> (upload_shape).\n"
          "Credits: createTask takes price_1k/price_2k from the key's balance, else HTTP 200\n"
          "  {\"code\":402,\"msg\":\"Insufficient credits\"}; recordInfo and callbacks carry creditsConsumed\n"
          "  once a task is done; GET /api/v1/chat/credit -> {\"code\":200,\"msg\":\"success\",\"data\":<balance>}.\n"
          "Input URLs, fileUrl and callBackUrl are only fetched from 127.0.0.0/8, localhost and [::1];\n"
          "anything else is treated as unreachable. Prints \"kie-sim listening on port N\" when ready;\n"
          "SIGINT/SIGTERM exit 0.\n", f);
}

/* The numeric start-up options (flags only, not knobs). */
static const struct {
    const char *name;
    size_t off;
    long min, max;
} sim_num_opts[] = {
    {"max_tasks", offsetof(struct sim_app, max_tasks), 1, 1000000},
    {"files_max_bytes", offsetof(struct sim_app, files_max_bytes), 1, 1L << 40},
    {"files_max_count", offsetof(struct sim_app, files_max_count), 1, 100000},
    {"max_result_bytes", offsetof(struct sim_app, max_result_bytes), 1, 1L << 40},
};

/* Returns 0 if name is a numeric option (set from val), 1 if it is not
 * one, -1 after printing an error. */
static int sim_num_opt(struct sim_app *app, const char *name, const char *arg, const char *val)
{
    for (size_t i = 0; i < sizeof sim_num_opts / sizeof sim_num_opts[0]; i++) {
        if (strcmp(sim_num_opts[i].name, name) != 0)
            continue;
        if (sim_parse_long(val, sim_num_opts[i].min, sim_num_opts[i].max,
                           (long *)(void *)((char *)app + sim_num_opts[i].off)) != 0) {
            fprintf(stderr, "kie-sim: --%.*s must be %ld..%ld\n", (int)strcspn(arg + 2, "="), arg + 2,
                    sim_num_opts[i].min, sim_num_opts[i].max);
            return -1;
        }
        return 0;
    }
    return 1;
}

/* Returns 0, 1 for --help, or -1 after printing an error. */
static int sim_parse_args(struct sim_app *app, int argc, char **argv)
{
    const char *env;
    char err[256];
    bool keys_given = false;

    env = getenv("KIE_SIM_PORT");
    if (env && *env && sim_parse_long(env, 0, 65535, &app->port_arg) != 0) {
        fprintf(stderr, "kie-sim: KIE_SIM_PORT must be 0..65535\n");
        return -1;
    }
    env = getenv("KIE_SIM_API_KEY");
    if (env && *env)
        sim_copy(app->api_keys[0], sizeof app->api_keys[0], env);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val, *eq;
        char name[64];
        size_t n;
        const struct sim_knob *k;
        int rc;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "kie-sim: unexpected argument %s (see --help)\n", arg);
            return -1;
        }
        eq = strchr(arg, '=');
        n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (n >= sizeof name) {
            fprintf(stderr, "kie-sim: unknown option %s\n", arg);
            return -1;
        }
        for (size_t j = 0; j < n; j++)
            name[j] = arg[2 + j] == '-' ? '_' : arg[2 + j];
        name[n] = '\0';
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "kie-sim: %s needs a value\n", arg);
            return -1;
        }
        if (strcmp(name, "host") == 0) {
            struct in_addr a;

            if (inet_pton(AF_INET, val, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
                fprintf(stderr, "kie-sim: --host must be an IPv4 loopback address (127.x.x.x)\n");
                return -1;
            }
            sim_copy(app->host, sizeof app->host, val);
        } else if (strcmp(name, "port") == 0) {
            if (sim_parse_long(val, 0, 65535, &app->port_arg) != 0) {
                fprintf(stderr, "kie-sim: --port must be 0..65535\n");
                return -1;
            }
        } else if (strcmp(name, "api_key") == 0) {
            if (!*val || strlen(val) >= SIM_KEY_MAX) {
                fprintf(stderr, "kie-sim: --api-key must be 1..255 bytes\n");
                return -1;
            }
            if (!keys_given)
                app->n_keys = 0; /* the first --api-key replaces the default key */
            if (app->n_keys == SIM_MAX_KEYS) {
                fprintf(stderr, "kie-sim: at most %d --api-key\n", SIM_MAX_KEYS);
                return -1;
            }
            keys_given = true;
            sim_copy(app->api_keys[app->n_keys++], SIM_KEY_MAX, val);
        } else if (strcmp(name, "files_dir") == 0) {
            if (!*val) {
                fprintf(stderr, "kie-sim: --files-dir needs a directory\n");
                return -1;
            }
            app->files_dir = val;
        } else if ((rc = sim_num_opt(app, name, arg, val)) <= 0) {
            if (rc < 0)
                return -1;
        } else if ((k = sim_knob_find(name)) != NULL) {
            if (sim_knob_set_str(&app->cfg, k, val, err, sizeof err) != 0) {
                fprintf(stderr, "kie-sim: --%s: %s\n", arg + 2, err);
                return -1;
            }
        } else {
            fprintf(stderr, "kie-sim: unknown option %s (see --help)\n", arg);
            return -1;
        }
    }
    return 0;
}

static int sim_app_init(struct sim_app *app)
{
    pthread_condattr_t ca;

    memset(app, 0, sizeof *app);
    sim_copy(app->api_keys[0], sizeof app->api_keys[0], "test-key");
    app->n_keys = 1;
    sim_copy(app->host, sizeof app->host, "127.0.0.1");
    app->max_tasks = SIM_MAX_TASKS_DEFAULT;
    app->files_max_bytes = SIM_FILES_MAX_BYTES_DEFAULT;
    app->files_max_count = SIM_FILES_MAX_COUNT_DEFAULT;
    app->max_result_bytes = SIM_MAX_RESULT_BYTES_DEFAULT;
    app->cfg = sim_config_defaults;
    atomic_init(&app->stopping, false);
    if (pthread_mutex_init(&app->lock, NULL) != 0 || pthread_cond_init(&app->wake, NULL) != 0 ||
        pthread_condattr_init(&ca) != 0)
        return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&app->tick, &ca) != 0)
        return -1;
    pthread_condattr_destroy(&ca);
    app->req_log = cJSON_CreateArray();
    return 0;
}

static void sim_app_free(struct sim_app *app)
{
    size_t cap = (size_t)app->max_tasks;

    for (size_t i = 0; i < app->job_count; i++) {
        struct sim_job *j = &app->jobs[(app->job_head + i) % SIM_JOB_QUEUE_CAP];

        free(j->url);
        free(j->body);
    }
    if (app->tasks)
        for (size_t i = 0; i < app->task_count; i++)
            sim_task_free(app->tasks[(app->task_head + i) % cap]);
    free(app->tasks);
    sim_files_free(app->files);
    cJSON_Delete(app->req_log);
    pthread_cond_destroy(&app->tick);
    pthread_cond_destroy(&app->wake);
    pthread_mutex_destroy(&app->lock);
}

int main(int argc, char **argv)
{
    struct sim_app app; /* ~160 KiB (job ring, rate windows); lives for the whole run */
    cJSON_Hooks hooks = {.malloc_fn = sim_xmalloc, .free_fn = free};
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *di;
    struct sockaddr_in sa;
    pthread_t workers[SIM_WORKERS], scheduler;
    size_t n_workers = 0;
    bool sched_started = false, curl_ready = false, vips_ready = false;
    sigset_t sigs;
    int sig = 0, rc, ret = 1;

    cJSON_InitHooks(&hooks);
    if (sim_app_init(&app) != 0) {
        fprintf(stderr, "kie-sim: init failed\n");
        return 1;
    }
    rc = sim_parse_args(&app, argc, argv);
    if (rc != 0) {
        if (rc == 1)
            sim_usage(stdout);
        ret = rc == 1 ? 0 : 2;
        goto out;
    }
    app.cfg_initial = app.cfg;
    sim_credits_reset(&app, app.cfg.initial_credits);
    app.tasks = calloc((size_t)app.max_tasks, sizeof *app.tasks);
    if (!app.tasks)
        goto out;
    app.files = sim_files_new(app.files_dir, (size_t)app.files_max_bytes, (size_t)app.files_max_count);
    if (!app.files) {
        ret = 2;
        goto out;
    }

    /* SIGINT/SIGTERM are taken with sigwait() below; every thread inherits
     * this mask, so no handler runs asynchronously anywhere. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    /* after the mask: libvips may start threads of its own */
    if (sim_image_init(argv[0]) != 0)
        goto out;
    vips_ready = true;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto out;
    curl_ready = true;
    for (; n_workers < SIM_WORKERS; n_workers++)
        if (pthread_create(&workers[n_workers], NULL, sim_worker_main, &app) != 0)
            goto out;
    if (pthread_create(&scheduler, NULL, sim_scheduler_main, &app) != 0)
        goto out;
    sched_started = true;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)app.port_arg);
    inet_pton(AF_INET, app.host, &sa.sin_addr);
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                             MHD_USE_ERROR_LOG,
                         (uint16_t)app.port_arg, NULL, NULL, sim_access, &app,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, sim_completed, &app,
                         MHD_OPTION_CONNECTION_LIMIT, SIM_CONN_LIMIT,
                         MHD_OPTION_CONNECTION_TIMEOUT, SIM_CONN_TIMEOUT_S,
                         MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "kie-sim: cannot listen on %s:%ld: %s\n", app.host, app.port_arg, strerror(errno));
        goto out;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    pthread_mutex_lock(&app.lock);
    app.port = di ? di->port : (unsigned)app.port_arg;
    pthread_mutex_unlock(&app.lock);
    printf("kie-sim listening on port %u\n", app.port);
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0)
        ;
    sim_log("signal %d, shutting down", sig);
    ret = 0;
out:
    atomic_store(&app.stopping, true);
    pthread_mutex_lock(&app.lock);
    pthread_cond_broadcast(&app.wake);
    pthread_cond_broadcast(&app.tick);
    pthread_mutex_unlock(&app.lock);
    if (d)
        MHD_stop_daemon(d);
    for (size_t i = 0; i < n_workers; i++)
        pthread_join(workers[i], NULL);
    if (sched_started)
        pthread_join(scheduler, NULL);
    if (curl_ready)
        curl_global_cleanup();
    if (vips_ready)
        sim_image_shutdown();
    sim_app_free(&app);
    return ret;
}
