/* main.c - start-up, the command line, signals and shutdown.
 *
 *   product-photo-api [serve]      run the HTTP server (default)
 *   product-photo-api routes       print the route table (METHOD PATH)
 *   product-photo-api healthcheck  GET /healthz on the configured port; exit 0/1
 *   product-photo-api --help | --version
 */
#include "app.h"
#include "cli.h"
#include "config.h"
#include "diskguard.h"
#include "err.h"
#include "hex.h"
#include "http.h"
#include "image.h"
#include "imagepool.h"
#include "kieupload.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "replay.h"
#include "resultsig.h"
#include "storage.h"
#include "sweeper.h"
#include "taskcache.h"
#include "tasklog.h"
#include "taskstore.h"
#include "upstream.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/rand.h>
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define VERSION "1.0.0"
#define SWEEP_INTERVAL 600
#define EMF_INTERVAL 60 /* seconds between CloudWatch EMF lines */
#define TASK_CACHE_SIZE 4096
#define PUSHED_CACHE_SIZE 1024
#define CALLBACK_REPLAY_SIZE 8192 /* signed callbacks remembered (5 minutes each) */
#define TUNNEL_RETRY_SECONDS 2

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

static void usage(FILE *out)
{
    size_t n;
    const struct config_var_info *vars = config_vars(&n);

    fprintf(out,
            "product-photo-api %s - turn a product photo into a studio shot with KIE (flux-2 image-to-image)\n\n"
            "Usage:\n"
            "  product-photo-api [serve]      run the HTTP API server (default)\n"
            "  product-photo-api generate PHOTO --prompt TEXT [-o OUT] [--server URL] ...\n"
            "                                 photo to result in one command (see below)\n"
            "  product-photo-api tasks [--limit N] [--json] [--server URL] ...\n"
            "                                 the server's recent tasks (see below)\n"
            "  product-photo-api routes       print the route table, one 'METHOD PATH' per line (HEAD for GET routes)\n"
            "  product-photo-api healthcheck  GET http://127.0.0.1:$PORT/healthz; exit 0 when healthy\n"
            "  product-photo-api --help       this text\n"
            "  product-photo-api --version\n\n"
            "Configuration comes from the environment and an optional .env file in the working\n"
            "directory (the environment wins):\n\n",
            VERSION);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-26s %s%s%s%s\n", vars[i].name, vars[i].help, vars[i].def ? " [default: " : "",
                vars[i].def ? vars[i].def : "", vars[i].def ? "]" : "");
    fprintf(out, "\n");
    cli_usage(out);
    fprintf(out, "\nRoutes:\n");
    for (const struct route *rt = ROUTES; rt->method; rt++)
        fprintf(out, "  %-5s %-18s %s\n", rt->method, rt->pattern, rt->summary);
}

static int cmd_routes(void)
{
    for (const struct route *rt = ROUTES; rt->method; rt++)
        printf("%s %s\n", rt->method, rt->pattern);
    for (const struct route *rt = ROUTES; rt->method; rt++) /* GET routes answer HEAD too */
        if (strcmp(rt->method, "GET") == 0)
            printf("HEAD %s\n", rt->pattern);
    return 0;
}

static int load_config(struct config *cfg)
{
    char errors[4096];
    int rc = config_load(cfg, ".env", env_lookup, errors, sizeof errors);

    if (rc) {
        fprintf(stderr, "product-photo-api: invalid configuration:\n%s", errors);
        return rc;
    }
    return 0;
}

static int cmd_healthcheck(void)
{
    struct config cfg;
    struct upstream_call *c;
    char url[128];
    int ok;

    if (load_config(&cfg))
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(url, sizeof url, "http://127.0.0.1:%ld/healthz", cfg.port);
    c = upstream_call_new("GET", url, 3000, 65536);
    if (!c) {
        config_free(&cfg);
        return 1;
    }
    upstream_perform_sync(c);
    ok = c->result == 0 && c->http_status == 200;
    if (!ok)
        fprintf(stderr, "healthcheck: %s -> %s (HTTP %ld)\n", url, c->result ? c->error : "bad status",
                c->http_status);
    upstream_call_free(c);
    config_free(&cfg);
    curl_global_cleanup();
    return ok ? 0 : 1;
}

/* PUBLIC_BASE_URL=auto: ask cloudflared's metrics server for the quick
 * tunnel's hostname (GET /quicktunnel -> {"hostname":"..."}; empty until the
 * tunnel is up). Runs on the main thread, which otherwise only waits for
 * signals. Returns 1 once the URL is known. */
static int discover_tunnel(struct app *app)
{
    struct upstream_call *c;
    char url[600];
    int found = 0;

    snprintf(url, sizeof url, "%s/quicktunnel", app->cfg->cloudflared_metrics_url);
    c = upstream_call_new("GET", url, 2000, 16384);
    if (!c)
        return 0;
    upstream_perform_sync(c);
    if (c->result == 0 && c->http_status == 200) {
        cJSON *j = cJSON_ParseWithLength(buf_str(&c->response), c->response.len);
        cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "hostname");
        if (cJSON_IsString(h) && h->valuestring[0] && strlen(h->valuestring) < 256 &&
            strspn(h->valuestring, "abcdefghijklmnopqrstuvwxyz0123456789-.") == strlen(h->valuestring)) {
            char base[300];
            snprintf(base, sizeof base, "https://%s", h->valuestring);
            app_set_public_base_url(app, base);
            log_info("tunnel: public base URL is %s (from cloudflared)", base);
            found = 1;
        }
        cJSON_Delete(j);
    }
    if (!found)
        log_debug("tunnel: %s has no hostname yet (%s)", url, c->result ? c->error : "empty");
    upstream_call_free(c);
    return found;
}

static void observe_upstream(const struct upstream_call *c, void *arg)
{
    metrics_upstream(arg, c);
}

/* On Lambda: the figures of the last minute as one CloudWatch Embedded Metric
 * Format line on stdout (CloudWatch Logs turns it into metrics, no agent). */
static void emit_emf(struct app *app)
{
    struct metrics_gauges g;
    struct timespec ts;
    char *line;

    if (!app->metrics)
        return;
    app_metrics_gauges(app, &g);
    clock_gettime(CLOCK_REALTIME, &ts);
    line = metrics_emf(app->metrics, &g, (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    if (line) {
        fprintf(stdout, "%s\n", line);
        fflush(stdout);
        free(line);
    }
}

static int make_callback_secret(struct app *app)
{
    unsigned char raw[24];
    if (app->cfg->callback_secret) {
        snprintf(app->callback_secret, sizeof app->callback_secret, "%s", app->cfg->callback_secret);
        return 0;
    }
    if (RAND_bytes(raw, sizeof raw) != 1)
        return ERR_IO;
    hex_lower(raw, sizeof raw, app->callback_secret);
    return 0;
}

/* The key that signs stable_url: RESULTS_URL_SECRET; else a secret made once
 * and kept in UPLOAD_DIR/.results-secret (local); else, in S3 mode, derived
 * from KIE_API_KEY (every Lambda instance agrees); else random (links die
 * with the process). */
static int make_results_key(struct app *app)
{
    const struct config *cfg = app->cfg;
    char path[4200];
    char secret[65];
    unsigned char raw[32];
    ssize_t n;
    int fd;

    if (cfg->results_url_secret) {
        resultsig_key(cfg->results_url_secret, strlen(cfg->results_url_secret), app->results_key);
        return 0;
    }
    if (cfg->use_s3 && cfg->kie_api_key) {
        char label[300];
        snprintf(label, sizeof label, "stable_url:%s", cfg->kie_api_key);
        resultsig_key(label, strlen(label), app->results_key);
        return 0;
    }
    if (!cfg->use_s3) {
        snprintf(path, sizeof path, "%s/.results-secret", cfg->upload_dir);
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            n = read(fd, secret, sizeof secret - 1);
            close(fd);
            if (n >= 32) {
                resultsig_key(secret, (size_t)n, app->results_key);
                return 0;
            }
        }
    }
    if (RAND_bytes(raw, sizeof raw) != 1)
        return ERR_IO;
    hex_lower(raw, sizeof raw, secret);
    resultsig_key(secret, 64, app->results_key);
    if (!cfg->use_s3) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, secret, 64) != 64) {
            log_warn("could not keep the results signing secret in %s: stable_url links stop working at restart",
                     path);
        }
        if (fd >= 0)
            close(fd);
    } else {
        log_warn("S3 mode without KIE_API_KEY or RESULTS_URL_SECRET: stable_url links stop working at restart");
    }
    return 0;
}

static int cmd_serve(void)
{
    struct config cfg;
    struct app app;
    sigset_t sigs;
    char err[512];
    int rc = 1;
    MHD_socket ls = MHD_INVALID_SOCKET;
    time_t last_sweep = 0;
    time_t last_emf = 0;
    time_t next_tunnel_try = 0;
    int tunnel_pending = 0;
    enum log_level lvl = LOG_INFO;
    int vips_started = 0;

    memset(&app, 0, sizeof app);
    pthread_mutex_init(&app.public_lock, NULL);
#ifdef __GLIBC__
    {
        /* glibc gives each thread that allocates its own arena (up to 8 per
         * core), and never gives a grown arena back: with the image workers
         * and libvips' threads each decoding megapixels, that was 30-60 MB of
         * peak RSS above what the decode needs (a 12 MP JPEG upload: 72-97 MB
         * with the default, 66 MB with two arenas). One arena per core. */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        mallopt(M_ARENA_MAX, (int)(cores > 2 ? cores : 2));
    }
#endif
    if (load_config(&cfg))
        return 1;
    (void)log_level_parse(cfg.log_level, &lvl);
    log_setup(lvl, strcmp(cfg.log_format, "json") == 0);
    config_log(&cfg);
    app.cfg = &cfg;
    app.started = time(NULL);

    /* signals: block in every thread, wait for them in this one */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    {
        /* every waiting client holds a socket, and so may its upstream call:
         * use the file descriptors the hard limit allows */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("curl_global_init failed");
        goto out;
    }
    app.up = upstream_start(cfg.kie_max_connections, cfg.upstream_threads);
    {
        size_t n_routes = 0;
        while (ROUTES[n_routes].method)
            n_routes++;
        app.metrics = metrics_new(n_routes);
    }
    if (app.up && app.metrics)
        upstream_set_observer(app.up, observe_upstream, app.metrics);
    if (!app.up) {
        log_error("cannot start the upstream I/O threads");
        goto out;
    }
    log_debug("upstream: %zu I/O threads sharing %ld connections", upstream_threads(app.up), cfg.kie_max_connections);
    {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int workers = (int)(cfg.image_workers > 0 ? cfg.image_workers : cores > 0 ? cores : 1);
        /* libvips' own threads per pipeline: as many as cores, as vipsthumbnail
         * does (measured: a 12 MP JPEG takes 150 ms with 2 threads, 230 with 1);
         * a burst of uploads then runs workers x cores threads, all bounded */
        int vips_threads = (int)(cores > 0 ? cores : 1);
        /* started by the first upload (see image.h for why) */
        image_lib_configure(vips_threads);
        vips_started = 1;
        app.images = imagepool_new(workers, (int)cfg.image_queue, image_lib_thread_done);
        if (!app.images) {
            log_error("cannot start the image workers");
            goto out;
        }
    }
    app.store = storage_open(&cfg, app.up, err, sizeof err);
    if (!app.store) {
        log_error("storage: %s", err);
        fprintf(stderr, "product-photo-api: %s\n", err);
        goto out;
    }
    if (cfg.use_s3 && cfg.s3_prefix && *cfg.s3_prefix && cfg.s3_results_prefix &&
        strncmp(cfg.s3_results_prefix, cfg.s3_prefix, strlen(cfg.s3_prefix)) == 0)
        log_warn("S3_RESULTS_PREFIX (%s) is inside S3_PREFIX (%s): a lifecycle rule that expires uploads will "
                 "expire kept results too", cfg.s3_results_prefix, cfg.s3_prefix);
    if (cfg.task_store)
        app.taskstore = taskstore_open(&cfg, app.up, err, sizeof err);
    if (cfg.task_store && !app.taskstore) {
        log_error("task store: %s", err);
        fprintf(stderr, "product-photo-api: %s\n", err);
        goto out;
    }
    app.tasks = taskcache_new(TASK_CACHE_SIZE);
    app.pushed = kieupload_new(PUSHED_CACHE_SIZE);
    app.credits = credits_cache_new();
    app.updates = tasklog_queue_new();
    app.callback_replays = replay_new(CALLBACK_REPLAY_SIZE, WEBHOOK_MAX_SKEW);
    if (!app.tasks || !app.pushed || !app.credits || !app.updates || !app.callback_replays ||
        make_callback_secret(&app) || make_results_key(&app)) {
        log_error("out of memory or no randomness");
        goto out;
    }
    app.rl_generate = ratelimit_new(cfg.rate_limit_generate);
    app.rl_upload = ratelimit_new(cfg.rate_limit_upload);
    app.rl_results = ratelimit_new(cfg.rate_limit_results);
    if (cfg.public_base_url && strcmp(cfg.public_base_url, "auto") != 0)
        app_set_public_base_url(&app, cfg.public_base_url);
    app.daemon = http_start(&app, err, sizeof err);
    if (!app.daemon) {
        log_error("%s", err);
        fprintf(stderr, "product-photo-api: %s\n", err);
        goto out;
    }
    printf("listening on port %u\n", app.port);
    fflush(stdout);
    log_info("product-photo-api %s ready on http://%s:%u (storage: %s, KIE: %s)", VERSION, cfg.host, app.port,
             app.store->ops->name, cfg.kie_base_url);
    if (!cfg.kie_api_key)
        log_warn("KIE_API_KEY is not set: /upload and /files work, /generate and /status answer 503");
    if (cfg.use_s3)
        log_info("KIE reaches uploads through presigned S3 URLs (bucket %s)", cfg.s3_bucket);
    else if (cfg.kie_upload == KIE_UPLOAD_ALWAYS)
        log_info("KIE reaches uploads through KIE's file upload (%s): KIE_UPLOAD=always", cfg.kie_upload_base_url);
    else if (cfg.public_base_url)
        log_info("KIE reaches uploads at PUBLIC_BASE_URL (%s)%s", cfg.public_base_url,
                 cfg.kie_upload == KIE_UPLOAD_AUTO ? "; when it is not public, through KIE's file upload" : "");
    else if (cfg.kie_upload == KIE_UPLOAD_AUTO)
        log_info("KIE reaches uploads through KIE's file upload (%s): no PUBLIC_BASE_URL, no tunnel needed",
                 cfg.kie_upload_base_url);
    else
        log_warn("KIE cannot download files from this server: PUBLIC_BASE_URL is not set and KIE_UPLOAD=never; "
                 "set KIE_UPLOAD=auto, a public PUBLIC_BASE_URL, or USE_S3=1");

    tunnel_pending = cfg.public_base_url && strcmp(cfg.public_base_url, "auto") == 0;
    if (tunnel_pending)
        log_info("PUBLIC_BASE_URL=auto: waiting for cloudflared at %s", cfg.cloudflared_metrics_url);
    for (;;) {
        struct timespec wait = {.tv_sec = tunnel_pending ? 1 : 60, .tv_nsec = 0};
        int sig;
        if (tunnel_pending && time(NULL) >= next_tunnel_try) {
            tunnel_pending = !discover_tunnel(&app);
            next_tunnel_try = time(NULL) + TUNNEL_RETRY_SECONDS;
        }
        /* retention: at start-up, then every SWEEP_INTERVAL */
        if (!cfg.use_s3 && time(NULL) - last_sweep >= SWEEP_INTERVAL) {
            last_sweep = time(NULL);
            (void)sweeper_run(cfg.upload_dir, cfg.upload_ttl_hours * 3600, last_sweep);
            if (cfg.result_ttl_hours > 0)
                (void)sweeper_run_results(cfg.upload_dir, cfg.result_ttl_hours * 3600, last_sweep);
            (void)results_trim(cfg.upload_dir, (long long)cfg.results_max_mb * 1024 * 1024);
        }
        if ((cfg.on_lambda || cfg.metrics_emf) && time(NULL) - last_emf >= EMF_INTERVAL) {
            if (last_emf)
                emit_emf(&app);
            last_emf = time(NULL);
        }
        sig = sigtimedwait(&sigs, NULL, &wait);
        if (sig == SIGINT || sig == SIGTERM) {
            log_info("signal %d: stopping (finishing in-flight requests)", sig);
            break;
        }
    }
    ls = http_quiesce(&app, cfg.shutdown_grace_seconds * 1000);
    rc = 0;
out:
    imagepool_free(app.images); /* finishes queued images; resumes their connections */
    upstream_stop(app.up); /* fails what is left; resumes their connections */
    if (app.daemon)
        MHD_stop_daemon(app.daemon);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    storage_close(app.store);
    taskstore_close(app.taskstore);
    tasklog_queue_free(app.updates);
    credits_cache_free(app.credits);
    ratelimit_free(app.rl_generate);
    ratelimit_free(app.rl_upload);
    ratelimit_free(app.rl_results);
    metrics_free(app.metrics);
    taskcache_free(app.tasks);
    replay_free(app.callback_replays);
    kieupload_free(app.pushed);
    curl_global_cleanup();
    if (vips_started)
        image_lib_shutdown();
    config_free(&cfg);
    pthread_mutex_destroy(&app.public_lock);
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "serve";

    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("product-photo-api %s\n", VERSION);
        return 0;
    }
    if (cli_is_command(cmd))
        return cli_run(argc - 1, argv + 1);
    if ((strcmp(cmd, "serve") == 0 || strcmp(cmd, "routes") == 0 || strcmp(cmd, "healthcheck") == 0) && argc > 2) {
        fprintf(stderr, "product-photo-api %s: unexpected argument '%s' (configuration comes from the environment "
                        "and .env; see --help)\n", cmd, argv[2]);
        return 2;
    }
    if (strcmp(cmd, "routes") == 0)
        return cmd_routes();
    if (strcmp(cmd, "healthcheck") == 0)
        return cmd_healthcheck();
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve();
    fprintf(stderr, "product-photo-api: unknown %s '%s'\nUsage: product-photo-api [serve | generate PHOTO --prompt TEXT | "
                    "tasks | routes | healthcheck | --help | --version] (see --help)\n", cmd[0] == '-' ? "option" : "command", cmd);
    return 2;
}
