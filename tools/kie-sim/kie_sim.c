/*
 * kie_sim.c - local simulator of the KIE job API (https://api.kie.ai) for the
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
 *   GET  /results/<taskId>.png     the "generated" image: a gradient PNG, 256 px
 *        wide (512 for 2K) in the requested aspect ratio (auto = first input's).
 *   callBackUrl                    POSTed with the KIE callback JSON when a task
 *        ends (code 200 "Playground task completed successfully." / 501 failed);
 *        if webhook_hmac_key is set, signed with X-Webhook-Timestamp/-Signature.
 *
 * Task lifecycle: waiting -> queuing -> generating -> success|fail, each step
 * lasting step_ms. Like KIE, a task first downloads every input_url (10 s
 * timeout, 10 MB cap, JPEG/PNG/WEBP magic); a failed download ends the task in
 * "fail" with failCode "422" and a failMsg naming the URL and the reason.
 * SECURITY: only loopback is ever contacted. URLs (inputs, redirects, callback)
 * must name 127.x.x.x, localhost or [::1], else they count as unreachable and
 * no traffic (not even DNS) is sent; CURLOPT_OPENSOCKETFUNCTION re-checks every
 * connect, redirects are followed by hand with the same host check, proxies off.
 *
 * Test-only endpoints (no auth):
 *   GET/POST /sim/config     read / change knobs (JSON object, any subset;
 *                            {"reset":true} restores the start-up values)
 *   GET/DELETE /sim/requests log of API requests received (method, path, query,
 *                            auth_ok, content_type, parsed JSON body), cap 1000
 *   GET /sim/tasks           every task with stateTimes (when each state began)
 *                            and its callback outcome
 * Knobs (CLI --name-with-dashes VALUE, or JSON): latency_ms, step_ms, outcome,
 * fail_code, fail_msg, create_mode, create_mode_times, record_mode,
 * record_mode_times, hang_max_ms, webhook_hmac_key; see sim_knobs[] / --help.
 * Modes: normal http500 nonjson hang reset code401 code402 code422 code429
 * code455 code500 code501.
 *
 * Threads: MHD thread-per-connection (so latency/hang never block others),
 * one scheduler thread advancing task states, SIM_WORKERS workers doing the
 * blocking downloads and callback POSTs. One mutex (app->lock) guards tasks,
 * jobs, config and the request log. SIGINT/SIGTERM -> orderly exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sim_image.h"

#define SIM_MODEL              "flux-2/pro-image-to-image"
#define SIM_ID_LEN             64
#define SIM_MAX_BODY           (64u * 1024u)        /* request bodies; more -> 413 */
#define SIM_MAX_TASKS_DEFAULT  10000L               /* oldest evicted beyond this */
#define SIM_MAX_URLS           8
#define SIM_MAX_URL_LEN        2048
#define SIM_MIN_PROMPT         3
#define SIM_MAX_PROMPT         5000
#define SIM_MAX_REQ_LOG        1000                 /* /sim/requests entries kept */
#define SIM_MAX_QUERY_ARGS     32
#define SIM_JOB_QUEUE_CAP      1024
#define SIM_WORKERS            8
#define SIM_FETCH_MAX          (10u * 1024u * 1024u) /* KIE input limit: 10 MB */
#define SIM_FETCH_KEEP         (128u * 1024u)       /* prefix kept for sniffing */
#define SIM_FETCH_TIMEOUT_MS   10000L
#define SIM_CALLBACK_TIMEOUT_MS 10000L
#define SIM_MAX_REDIRECTS      5
#define SIM_TICK_MS            5
#define SIM_POLL_SLICE_MS      50
#define SIM_CONN_LIMIT         512u
#define SIM_CONN_TIMEOUT_S     120u
#define SIM_MSG_MAX            1024
#define SIM_RESULT_WIDTH_1K    256u
#define SIM_RESULT_WIDTH_2K    512u

static const char sim_unauth_msg[] = "You do not have access permissions";

/* ---------------------------------------------------------------- config */

enum sim_mode {
    SIM_MODE_NORMAL, SIM_MODE_HTTP500, SIM_MODE_NONJSON, SIM_MODE_HANG, SIM_MODE_RESET,
    SIM_MODE_CODE401, SIM_MODE_CODE402, SIM_MODE_CODE422, SIM_MODE_CODE429,
    SIM_MODE_CODE455, SIM_MODE_CODE500, SIM_MODE_CODE501
};
static const char *const sim_mode_names[] = {
    "normal", "http500", "nonjson", "hang", "reset", "code401", "code402",
    "code422", "code429", "code455", "code500", "code501", NULL
};
static const char *const sim_outcome_names[] = {"success", "fail", NULL};

struct sim_config {
    long latency_ms;
    long step_ms;
    int outcome; /* index into sim_outcome_names */
    char fail_code[16];
    char fail_msg[256];
    int create_mode; /* enum sim_mode */
    long create_mode_times;
    int record_mode;
    long record_mode_times;
    long hang_max_ms;
    char webhook_hmac_key[128];
};

enum sim_knob_type { SIM_KNOB_LONG, SIM_KNOB_STR, SIM_KNOB_ENUM };

/* One row per runtime knob: drives CLI parsing, POST /sim/config, GET
 * /sim/config and --help alike. */
struct sim_knob {
    const char *name;
    enum sim_knob_type type;
    size_t off;
    size_t size; /* SIM_KNOB_STR: buffer size */
    long min, max; /* SIM_KNOB_LONG */
    const char *const *names; /* SIM_KNOB_ENUM */
    const char *help;
};

#define SIM_KNOB_L(f, lo, hi, h) { #f, SIM_KNOB_LONG, offsetof(struct sim_config, f), 0, lo, hi, NULL, h }
#define SIM_KNOB_S(f, h) { #f, SIM_KNOB_STR, offsetof(struct sim_config, f), \
                           sizeof(((struct sim_config *)0)->f), 0, 0, NULL, h }
#define SIM_KNOB_E(f, n, h) { #f, SIM_KNOB_ENUM, offsetof(struct sim_config, f), 0, 0, 0, n, h }

static const struct sim_knob sim_knobs[] = {
    SIM_KNOB_L(latency_ms, 0, 600000, "delay before answering createTask/recordInfo (ms)"),
    SIM_KNOB_L(step_ms, 0, 600000, "duration of each task state waiting/queuing/generating (ms)"),
    SIM_KNOB_E(outcome, sim_outcome_names, "how new tasks end: success|fail"),
    SIM_KNOB_S(fail_code, "failCode of tasks that end in fail (outcome=fail)"),
    SIM_KNOB_S(fail_msg, "failMsg of tasks that end in fail (outcome=fail)"),
    SIM_KNOB_E(create_mode, sim_mode_names, "createTask behaviour (see modes)"),
    SIM_KNOB_L(create_mode_times, 0, 1000000, "apply create_mode to the next N requests only, then normal (0 = always)"),
    SIM_KNOB_E(record_mode, sim_mode_names, "recordInfo behaviour (see modes)"),
    SIM_KNOB_L(record_mode_times, 0, 1000000, "apply record_mode to the next N requests only, then normal (0 = always)"),
    SIM_KNOB_L(hang_max_ms, 1, 3600000, "mode hang: drop the connection after this long if the client is still waiting"),
    SIM_KNOB_S(webhook_hmac_key, "if set, sign callbacks (X-Webhook-Timestamp, X-Webhook-Signature)"),
};
#define SIM_N_KNOBS (sizeof sim_knobs / sizeof sim_knobs[0])

static const struct sim_config sim_config_defaults = {
    .latency_ms = 0, .step_ms = 150, .outcome = 0,
    .fail_code = "500", .fail_msg = "Internal server error",
    .create_mode = SIM_MODE_NORMAL, .create_mode_times = 0,
    .record_mode = SIM_MODE_NORMAL, .record_mode_times = 0,
    .hang_max_ms = 300000, .webhook_hmac_key = "",
};

/* ----------------------------------------------------------------- tasks */

enum sim_state { SIM_ST_WAITING, SIM_ST_QUEUING, SIM_ST_GENERATING, SIM_ST_SUCCESS, SIM_ST_FAIL };
static const char *const sim_state_names[] = {"waiting", "queuing", "generating", "success", "fail"};

enum sim_fetch { SIM_FETCH_PENDING, SIM_FETCH_OK, SIM_FETCH_FAILED };

struct sim_task {
    char id[SIM_ID_LEN];
    char *param;        /* whole createTask request as JSON text (owned) */
    char *callback_url; /* owned, NULL if none */
    char *urls[SIM_MAX_URLS]; /* owned */
    size_t n_urls;
    char aspect[8];
    char resolution[4];
    enum sim_state state;
    enum sim_fetch fetch;
    long long create_ms, update_ms, complete_ms; /* wall clock, Unix ms */
    long long entered_ms[SIM_ST_FAIL + 1]; /* when each state began, 0 = never */
    long long phase_mono; /* monotonic ms when the current state began */
    long step_ms;         /* snapshot at creation */
    bool fail;            /* ends in fail (outcome knob or failed download) */
    char fail_code[16];
    char fail_msg[SIM_MSG_MAX];
    uint32_t img_w, img_h; /* first input's size, 0 if unknown */
    bool callback_done;
    long callback_status; /* HTTP status of the callback POST, -1 if none */
    char callback_error[SIM_MSG_MAX];
};

enum sim_job_kind { SIM_JOB_FETCH, SIM_JOB_CALLBACK };

struct sim_job {
    enum sim_job_kind kind;
    char task_id[SIM_ID_LEN];
    char *url;  /* SIM_JOB_CALLBACK: owned */
    char *body; /* SIM_JOB_CALLBACK: owned */
};

struct sim_app {
    char api_key[256];
    char host[INET_ADDRSTRLEN];
    long port_arg;
    long max_tasks;
    atomic_bool stopping;

    pthread_mutex_t lock; /* guards every field below */
    pthread_cond_t wake;  /* workers: job queue not empty / stopping */
    pthread_cond_t tick;  /* scheduler: timed wait, CLOCK_MONOTONIC */
    unsigned port;        /* real bound port, set once after MHD starts */
    struct sim_config cfg, cfg_initial;
    struct sim_task **tasks; /* ring of max_tasks slots */
    size_t task_head, task_count;
    unsigned task_counter;
    struct sim_job jobs[SIM_JOB_QUEUE_CAP]; /* ring */
    size_t job_head, job_count;
    cJSON *req_log; /* array, at most SIM_MAX_REQ_LOG items */
    size_t req_log_count;
    unsigned long long req_seq;
};

/* Per-request state, allocated on MHD's first callback, freed in
 * sim_completed (also on aborted connections). */
struct sim_req {
    char *body; /* NUL-terminated, at most SIM_MAX_BODY bytes */
    size_t len, cap;
    bool too_large;
    bool responded;
};

enum sim_action { SIM_SEND, SIM_DROP, SIM_RESET, SIM_HANG };

struct sim_resp {
    unsigned status;
    char *body; /* malloc'd, handed to MHD */
    size_t len;
    const char *ctype;
    const char *allow;
    enum sim_action action;
};

/* ------------------------------------------------------------- utilities */

static void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sim_log(const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kie-sim: %s\n", line);
}

/* Out-of-memory policy: small fixed-size allocations abort (input sizes are
 * capped everywhere, so this only triggers when the machine is out of RAM). */
static void *sim_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fputs("kie-sim: out of memory\n", stderr);
        abort();
    }
    return p;
}

static char *sim_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = sim_xmalloc(n);

    memcpy(p, s, n);
    return p;
}

static long long sim_clock_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000L;
}

static long long sim_wall_ms(void) { return sim_clock_ms(CLOCK_REALTIME); }
static long long sim_mono_ms(void) { return sim_clock_ms(CLOCK_MONOTONIC); }

/* Strict decimal parse of s into [min, max]. Returns 0 or -1. */
static int sim_parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void sim_copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

static int sim_enum_index(const char *const *names, const char *s)
{
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* Number of UTF-8 code points (continuation bytes are not counted). */
static size_t sim_utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xC0u) != 0x80u)
            n++;
    return n;
}

/* ---------------------------------------------------------- URL policy */

/* Parse an absolute http(s) URL and copy its host (IPv6 keeps brackets).
 * Returns 0, or -1 if it is not a usable http(s) URL. */
static int sim_url_host(const char *url, char *host, size_t hostlen)
{
    CURLU *u = NULL;
    char *scheme = NULL, *h = NULL;
    int ret = -1;

    if (!url || strlen(url) > SIM_MAX_URL_LEN)
        goto out;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7F)
            goto out;
    u = curl_url();
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        goto out;
    if (curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || !*h || strlen(h) >= hostlen)
        goto out;
    sim_copy(host, hostlen, h);
    ret = 0;
out:
    curl_free(scheme);
    curl_free(h);
    curl_url_cleanup(u);
    return ret;
}

/* The only hosts kie-sim will contact: literal 127.x.x.x, localhost, [::1]. */
static bool sim_host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    char inner[64];
    size_t n = strlen(host);

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (n > 2 && n < sizeof inner + 2 && host[0] == '[' && host[n - 1] == ']') {
        memcpy(inner, host + 1, n - 2);
        inner[n - 2] = '\0';
        if (inet_pton(AF_INET6, inner, &a6) == 1)
            return memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    }
    return false;
}

/* Connect-time guard: refuses any socket whose peer is not loopback, so that
 * nothing (redirect, resolver answer) can make curl leave the machine. */
static curl_socket_t sim_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    bool *blocked = clientp;
    const unsigned char *raw = (const unsigned char *)&a->addr;
    bool ok = false;

    if (purpose == CURLSOCKTYPE_IPCXN && a->family == AF_INET &&
        a->addrlen >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;

        memcpy(&sin, raw, sizeof sin);
        ok = (ntohl(sin.sin_addr.s_addr) >> 24) == 127;
    } else if (purpose == CURLSOCKTYPE_IPCXN && a->family == AF_INET6 &&
               a->addrlen >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;

        memcpy(&sin6, raw, sizeof sin6);
        ok = memcmp(&sin6.sin6_addr, &in6addr_loopback, sizeof sin6.sin6_addr) == 0;
    }
    if (!ok) {
        *blocked = true;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static int sim_xferinfo(void *clientp, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct sim_app *app = clientp;

    (void)dt; (void)dn; (void)ut; (void)un;
    return atomic_load(&app->stopping) ? 1 : 0;
}

/* Options shared by every outgoing request: loopback-only, bounded, no
 * proxy, no automatic redirects, aborts when the simulator stops. */
static void sim_curl_common(CURL *h, struct sim_app *app, bool *blocked, char *errbuf, long timeout_ms)
{
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, sim_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, blocked);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, sim_xferinfo);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, app);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kie-sim/1.0");
}

/* ------------------------------------------------------------- downloads */

struct sim_fetch_buf {
    unsigned char *keep; /* first SIM_FETCH_KEEP bytes */
    size_t kept;
    size_t total;
    bool too_big;
};

static size_t sim_fetch_write(char *p, size_t size, size_t n, void *userdata)
{
    struct sim_fetch_buf *fb = userdata;
    size_t len = size * n;

    if (len > SIM_FETCH_MAX - fb->total) {
        fb->too_big = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    fb->total += len;
    if (fb->kept < SIM_FETCH_KEEP) {
        size_t take = SIM_FETCH_KEEP - fb->kept;

        if (take > len)
            take = len;
        memcpy(fb->keep + fb->kept, p, take);
        fb->kept += take;
    }
    return len;
}

/* Download one input image the way KIE would, following up to
 * SIM_MAX_REDIRECTS loopback-only redirects by hand. On success returns 0 and
 * sets the size in *w and *h (0 if unknown). On failure returns -1 with a KIE-style failMsg. */
static int sim_fetch_image(struct sim_app *app, const char *first_url, uint32_t *w, uint32_t *h,
                           char *msg, size_t msglen)
{
    struct sim_fetch_buf fb = {0};
    char errbuf[CURL_ERROR_SIZE];
    char host[256];
    char *url = sim_xstrdup(first_url);
    CURL *c = NULL;
    bool blocked = false;
    long status = 0;
    int ret = -1;

    *w = *h = 0;
    fb.keep = sim_xmalloc(SIM_FETCH_KEEP);
    c = curl_easy_init();
    if (!c) {
        snprintf(msg, msglen, "input image %.512s could not be downloaded: internal error", first_url);
        goto out;
    }
    for (int hop = 0;; hop++) {
        CURLcode rc;
        char *loc = NULL;

        if (sim_url_host(url, host, sizeof host) != 0) {
            snprintf(msg, msglen, "input image %.512s is not reachable: invalid URL %.256s", first_url, url);
            goto out;
        }
        if (!sim_host_is_loopback(host)) {
            snprintf(msg, msglen,
                     "input image %.512s is not reachable: host %.128s is not a loopback address "
                     "(kie-sim only fetches from 127.0.0.0/8, localhost and [::1])", first_url, host);
            goto out;
        }
        curl_easy_reset(c);
        errbuf[0] = '\0';
        fb.kept = fb.total = 0;
        fb.too_big = false;
        sim_curl_common(c, app, &blocked, errbuf, SIM_FETCH_TIMEOUT_MS);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sim_fetch_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &fb);
        rc = curl_easy_perform(c);
        if (blocked) {
            snprintf(msg, msglen, "input image %.512s is not reachable: connection to a non-loopback "
                     "address was refused", first_url);
            goto out;
        }
        if (fb.too_big) {
            snprintf(msg, msglen, "input image %.512s is larger than 10 MB", first_url);
            goto out;
        }
        if (rc != CURLE_OK) {
            snprintf(msg, msglen, "input image %.512s could not be downloaded: %.256s", first_url,
                     errbuf[0] ? errbuf : curl_easy_strerror(rc));
            goto out;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 300 && status < 400 &&
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
            if (hop >= SIM_MAX_REDIRECTS) {
                snprintf(msg, msglen, "input image %.512s could not be downloaded: too many redirects",
                         first_url);
                goto out;
            }
            free(url);
            url = sim_xstrdup(loc);
            continue;
        }
        break;
    }
    if (status != 200) {
        snprintf(msg, msglen, "input image %.512s could not be downloaded: HTTP %ld", first_url, status);
        goto out;
    }
    if (sim_image_sniff(fb.keep, fb.kept, w, h) == SIM_IMAGE_NONE) {
        snprintf(msg, msglen, "input image %.512s is not a JPEG, PNG or WEBP image (%zu bytes)",
                 first_url, fb.total);
        goto out;
    }
    ret = 0;
out:
    curl_easy_cleanup(c);
    free(fb.keep);
    free(url);
    return ret;
}

/* ----------------------------------------------------------- task table */

/* Caller holds app->lock. Newest first, since recent tasks are polled most. */
static struct sim_task *sim_task_find(struct sim_app *app, const char *id)
{
    size_t cap = (size_t)app->max_tasks;

    for (size_t i = app->task_count; i-- > 0;) {
        struct sim_task *t = app->tasks[(app->task_head + i) % cap];

        if (strcmp(t->id, id) == 0)
            return t;
    }
    return NULL;
}

static void sim_task_free(struct sim_task *t)
{
    if (!t)
        return;
    free(t->param);
    free(t->callback_url);
    for (size_t i = 0; i < t->n_urls; i++)
        free(t->urls[i]);
    free(t);
}

/* Caller holds app->lock. Assigns the id, evicts the oldest task when full. */
static void sim_task_insert(struct sim_app *app, struct sim_task *t)
{
    size_t cap = (size_t)app->max_tasks;

    snprintf(t->id, sizeof t->id, "task_flux-2_%lld%04u", t->create_ms, app->task_counter % 10000u);
    app->task_counter++;
    if (app->task_count == cap) {
        sim_task_free(app->tasks[app->task_head]);
        app->tasks[app->task_head] = t;
        app->task_head = (app->task_head + 1) % cap;
    } else {
        app->tasks[(app->task_head + app->task_count) % cap] = t;
        app->task_count++;
    }
}

/* Caller holds app->lock. Takes ownership of job->url/body even on failure. */
static int sim_job_push(struct sim_app *app, struct sim_job *job)
{
    if (app->job_count == SIM_JOB_QUEUE_CAP) {
        free(job->url);
        free(job->body);
        return -1;
    }
    app->jobs[(app->job_head + app->job_count) % SIM_JOB_QUEUE_CAP] = *job;
    app->job_count++;
    pthread_cond_signal(&app->wake);
    return 0;
}

static void sim_result_dims(const struct sim_task *t, uint32_t *w, uint32_t *h)
{
    static const struct { const char *name; uint32_t rw, rh; } ratios[] = {
        {"1:1", 1, 1}, {"4:3", 4, 3}, {"3:4", 3, 4}, {"16:9", 16, 9},
        {"9:16", 9, 16}, {"3:2", 3, 2}, {"2:3", 2, 3},
    };
    uint32_t width = strcmp(t->resolution, "2K") == 0 ? SIM_RESULT_WIDTH_2K : SIM_RESULT_WIDTH_1K;
    uint32_t rw = 1, rh = 1;
    uint64_t height;

    if (strcmp(t->aspect, "auto") == 0 && t->img_w && t->img_h) {
        rw = t->img_w;
        rh = t->img_h;
    }
    for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++)
        if (strcmp(t->aspect, ratios[i].name) == 0) {
            rw = ratios[i].rw;
            rh = ratios[i].rh;
        }
    height = ((uint64_t)width * rh + rw / 2) / rw;
    if (height < 16)
        height = 16;
    if (height > 2048)
        height = 2048;
    *w = width;
    *h = (uint32_t)height;
}

/* Caller holds app->lock. The KIE task record ("data" of recordInfo and of
 * the callback). Callbacks use null where recordInfo uses "". */
static cJSON *sim_task_data(const struct sim_app *app, const struct sim_task *t, bool for_callback)
{
    cJSON *d = cJSON_CreateObject();
    bool done = t->state == SIM_ST_SUCCESS || t->state == SIM_ST_FAIL;

    cJSON_AddStringToObject(d, "taskId", t->id);
    cJSON_AddStringToObject(d, "model", SIM_MODEL);
    cJSON_AddStringToObject(d, "state", sim_state_names[t->state]);
    cJSON_AddStringToObject(d, "param", t->param);
    if (t->state == SIM_ST_SUCCESS) {
        char url[256];
        cJSON *rj = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(rj, "resultUrls");
        char *s;

        snprintf(url, sizeof url, "http://%s:%u/results/%s.png", app->host, app->port, t->id);
        cJSON_AddItemToArray(arr, cJSON_CreateString(url));
        s = cJSON_PrintUnformatted(rj);
        cJSON_AddStringToObject(d, "resultJson", s);
        free(s);
        cJSON_Delete(rj);
    } else if (for_callback) {
        cJSON_AddNullToObject(d, "resultJson");
    } else {
        cJSON_AddStringToObject(d, "resultJson", "");
    }
    if (t->state == SIM_ST_FAIL) {
        cJSON_AddStringToObject(d, "failCode", t->fail_code);
        cJSON_AddStringToObject(d, "failMsg", t->fail_msg);
    } else if (for_callback) {
        cJSON_AddNullToObject(d, "failCode");
        cJSON_AddNullToObject(d, "failMsg");
    } else {
        cJSON_AddStringToObject(d, "failCode", "");
        cJSON_AddStringToObject(d, "failMsg", "");
    }
    if (done) {
        cJSON_AddNumberToObject(d, "costTime", (double)(t->complete_ms - t->create_ms));
        cJSON_AddNumberToObject(d, "completeTime", (double)t->complete_ms);
    } else {
        cJSON_AddNullToObject(d, "costTime");
        cJSON_AddNullToObject(d, "completeTime");
    }
    cJSON_AddNumberToObject(d, "createTime", (double)t->create_ms);
    cJSON_AddNumberToObject(d, "updateTime", (double)t->update_ms);
    return d;
}

/* Caller holds app->lock. */
static void sim_task_enter(struct sim_task *t, enum sim_state st, long long mono, long long wall)
{
    t->state = st;
    t->phase_mono = mono;
    t->update_ms = wall;
    t->entered_ms[st] = wall;
}

/* Caller holds app->lock. Terminal transition; queues the callback. */
static void sim_task_finish(struct sim_app *app, struct sim_task *t, long long mono, long long wall)
{
    sim_task_enter(t, t->fail ? SIM_ST_FAIL : SIM_ST_SUCCESS, mono, wall);
    t->complete_ms = wall;
    sim_log("task %s %s%s%s", t->id, sim_state_names[t->state], t->fail ? ": " : "",
            t->fail ? t->fail_msg : "");
    if (t->callback_url) {
        cJSON *cb = cJSON_CreateObject();
        struct sim_job job = {.kind = SIM_JOB_CALLBACK};

        cJSON_AddNumberToObject(cb, "code", t->fail ? 501 : 200);
        cJSON_AddStringToObject(cb, "msg", t->fail ? "Playground task failed."
                                                   : "Playground task completed successfully.");
        cJSON_AddItemToObject(cb, "data", sim_task_data(app, t, true));
        sim_copy(job.task_id, sizeof job.task_id, t->id);
        job.url = sim_xstrdup(t->callback_url);
        job.body = cJSON_PrintUnformatted(cb);
        cJSON_Delete(cb);
        if (sim_job_push(app, &job) != 0) {
            t->callback_done = true;
            sim_copy(t->callback_error, sizeof t->callback_error, "simulator job queue full");
        }
    }
}

/* Caller holds app->lock. Moves a task along its timeline if it is due. */
static void sim_task_advance(struct sim_app *app, struct sim_task *t, long long mono, long long wall)
{
    bool due = mono - t->phase_mono >= t->step_ms;

    switch (t->state) {
    case SIM_ST_WAITING:
        if (t->fetch == SIM_FETCH_FAILED) {
            sim_task_finish(app, t, mono, wall);
        } else if (t->fetch == SIM_FETCH_OK && due) {
            sim_task_enter(t, SIM_ST_QUEUING, mono, wall);
        }
        break;
    case SIM_ST_QUEUING:
        if (due)
            sim_task_enter(t, SIM_ST_GENERATING, mono, wall);
        break;
    case SIM_ST_GENERATING:
        if (due)
            sim_task_finish(app, t, mono, wall);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------- background work */

static void *sim_scheduler_main(void *arg)
{
    struct sim_app *app = arg;

    pthread_mutex_lock(&app->lock);
    while (!atomic_load(&app->stopping)) {
        long long mono = sim_mono_ms(), wall = sim_wall_ms();
        size_t cap = (size_t)app->max_tasks;
        struct timespec ts;

        for (size_t i = 0; i < app->task_count; i++)
            sim_task_advance(app, app->tasks[(app->task_head + i) % cap], mono, wall);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SIM_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&app->tick, &app->lock, &ts);
    }
    pthread_mutex_unlock(&app->lock);
    return NULL;
}

static void sim_job_fetch(struct sim_app *app, const struct sim_job *job)
{
    char *urls[SIM_MAX_URLS] = {0};
    char msg[SIM_MSG_MAX] = "";
    size_t n = 0;
    uint32_t w0 = 0, h0 = 0;
    bool failed = false;
    struct sim_task *t;

    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, job->task_id);
    if (t) {
        n = t->n_urls;
        for (size_t i = 0; i < n; i++)
            urls[i] = sim_xstrdup(t->urls[i]);
    }
    pthread_mutex_unlock(&app->lock);

    for (size_t i = 0; i < n && !failed; i++) {
        uint32_t w, h;

        if (sim_fetch_image(app, urls[i], &w, &h, msg, sizeof msg) != 0)
            failed = true;
        else if (i == 0) {
            w0 = w;
            h0 = h;
        }
    }

    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, job->task_id);
    if (t && t->fetch == SIM_FETCH_PENDING) {
        if (failed) {
            t->fail = true;
            sim_copy(t->fail_code, sizeof t->fail_code, "422");
            sim_copy(t->fail_msg, sizeof t->fail_msg, msg);
            t->fetch = SIM_FETCH_FAILED;
        } else {
            t->img_w = w0;
            t->img_h = h0;
            t->fetch = SIM_FETCH_OK;
        }
    }
    pthread_mutex_unlock(&app->lock);
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
}

static size_t sim_discard(char *p, size_t size, size_t n, void *userdata)
{
    (void)p;
    (void)userdata;
    return size * n;
}

/* X-Webhook-Signature = Base64(HMAC-SHA256(key, taskId + "." + timestamp)). */
static void sim_sign(const char *key, const char *task_id, long long ts, char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned char b64[2 * EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char msg[SIM_ID_LEN + 32];

    out[0] = '\0';
    snprintf(msg, sizeof msg, "%s.%lld", task_id, ts);
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md, &mdlen))
        return;
    EVP_EncodeBlock(b64, md, (int)mdlen);
    sim_copy(out, outlen, (const char *)b64);
}

static void sim_job_callback(struct sim_app *app, const struct sim_job *job)
{
    char host[256], errbuf[CURL_ERROR_SIZE] = "", err[SIM_MSG_MAX] = "", key[128];
    char hdr_ts[64], hdr_sig[192], sig[2 * EVP_MAX_MD_SIZE];
    struct curl_slist *hdrs = NULL, *tmp;
    struct sim_task *t;
    CURL *c = NULL;
    bool blocked = false;
    long status = -1;
    CURLcode rc;

    pthread_mutex_lock(&app->lock);
    sim_copy(key, sizeof key, app->cfg.webhook_hmac_key);
    pthread_mutex_unlock(&app->lock);

    if (sim_url_host(job->url, host, sizeof host) != 0 || !sim_host_is_loopback(host)) {
        snprintf(err, sizeof err, "callBackUrl %.512s is not reachable: not a loopback URL", job->url);
        goto out;
    }
    c = curl_easy_init();
    if (!c) {
        sim_copy(err, sizeof err, "curl_easy_init failed");
        goto out;
    }
    sim_curl_common(c, app, &blocked, errbuf, SIM_CALLBACK_TIMEOUT_MS);
    tmp = curl_slist_append(hdrs, "Content-Type: application/json");
    if (tmp)
        hdrs = tmp;
    if (key[0]) {
        long long ts = sim_wall_ms() / 1000;

        sim_sign(key, job->task_id, ts, sig, sizeof sig);
        snprintf(hdr_ts, sizeof hdr_ts, "X-Webhook-Timestamp: %lld", ts);
        snprintf(hdr_sig, sizeof hdr_sig, "X-Webhook-Signature: %s", sig);
        tmp = curl_slist_append(hdrs, hdr_ts);
        if (tmp)
            hdrs = tmp;
        tmp = curl_slist_append(hdrs, hdr_sig);
        if (tmp)
            hdrs = tmp;
    }
    curl_easy_setopt(c, CURLOPT_URL, job->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, job->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(job->body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sim_discard);
    rc = curl_easy_perform(c);
    if (blocked)
        snprintf(err, sizeof err, "callBackUrl %.512s is not reachable: non-loopback address refused", job->url);
    else if (rc != CURLE_OK)
        snprintf(err, sizeof err, "callback POST failed: %.256s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    else
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    sim_log("callback %s -> %.256s: %ld %s", job->task_id, job->url, status, err);
    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, job->task_id);
    if (t) {
        t->callback_done = true;
        t->callback_status = status;
        sim_copy(t->callback_error, sizeof t->callback_error, err);
    }
    pthread_mutex_unlock(&app->lock);
}

static void *sim_worker_main(void *arg)
{
    struct sim_app *app = arg;

    pthread_mutex_lock(&app->lock);
    for (;;) {
        struct sim_job job;

        while (!atomic_load(&app->stopping) && app->job_count == 0)
            pthread_cond_wait(&app->wake, &app->lock);
        if (atomic_load(&app->stopping))
            break;
        job = app->jobs[app->job_head];
        memset(&app->jobs[app->job_head], 0, sizeof job);
        app->job_head = (app->job_head + 1) % SIM_JOB_QUEUE_CAP;
        app->job_count--;
        pthread_mutex_unlock(&app->lock);
        if (job.kind == SIM_JOB_FETCH)
            sim_job_fetch(app, &job);
        else
            sim_job_callback(app, &job);
        free(job.url);
        free(job.body);
        pthread_mutex_lock(&app->lock);
    }
    pthread_mutex_unlock(&app->lock);
    return NULL;
}

/* ------------------------------------------------------ config handling */

static int sim_knob_set_str(struct sim_config *cfg, const struct sim_knob *k, const char *v,
                            char *err, size_t errlen)
{
    char *field = (char *)cfg + k->off;
    long n;
    int idx;

    switch (k->type) {
    case SIM_KNOB_LONG:
        if (sim_parse_long(v, k->min, k->max, &n) != 0) {
            snprintf(err, errlen, "%s must be an integer in %ld..%ld", k->name, k->min, k->max);
            return -1;
        }
        *(long *)(void *)field = n;
        return 0;
    case SIM_KNOB_STR:
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s must be shorter than %zu bytes", k->name, k->size);
            return -1;
        }
        sim_copy(field, k->size, v);
        return 0;
    case SIM_KNOB_ENUM:
        idx = sim_enum_index(k->names, v);
        if (idx < 0) {
            snprintf(err, errlen, "%s: unknown value %.64s", k->name, v);
            return -1;
        }
        *(int *)(void *)field = idx;
        return 0;
    }
    return -1;
}

static int sim_knob_set_json(struct sim_config *cfg, const struct sim_knob *k, const cJSON *v,
                             char *err, size_t errlen)
{
    if (k->type == SIM_KNOB_LONG) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
        long n;

        if (!cJSON_IsNumber(v) || d < (double)k->min || d > (double)k->max ||
            (double)(n = (long)d) != d) {
            snprintf(err, errlen, "%s must be an integer in %ld..%ld", k->name, k->min, k->max);
            return -1;
        }
        *(long *)(void *)((char *)cfg + k->off) = n;
        return 0;
    }
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen, "%s must be a string", k->name);
        return -1;
    }
    return sim_knob_set_str(cfg, k, v->valuestring, err, errlen);
}

static const struct sim_knob *sim_knob_find(const char *name)
{
    for (size_t i = 0; i < SIM_N_KNOBS; i++)
        if (strcmp(sim_knobs[i].name, name) == 0)
            return &sim_knobs[i];
    return NULL;
}

static cJSON *sim_config_json(const struct sim_config *cfg)
{
    cJSON *o = cJSON_CreateObject();

    for (size_t i = 0; i < SIM_N_KNOBS; i++) {
        const struct sim_knob *k = &sim_knobs[i];
        const char *field = (const char *)cfg + k->off;

        if (k->type == SIM_KNOB_LONG)
            cJSON_AddNumberToObject(o, k->name, (double)*(const long *)(const void *)field);
        else if (k->type == SIM_KNOB_STR)
            cJSON_AddStringToObject(o, k->name, field);
        else
            cJSON_AddStringToObject(o, k->name, k->names[*(const int *)(const void *)field]);
    }
    return o;
}

/* Snapshot the config and consume one use of the create/record mode. */
static int sim_take_mode(struct sim_app *app, bool record, struct sim_config *snap)
{
    int *mode, m;
    long *times;

    pthread_mutex_lock(&app->lock);
    *snap = app->cfg;
    mode = record ? &app->cfg.record_mode : &app->cfg.create_mode;
    times = record ? &app->cfg.record_mode_times : &app->cfg.create_mode_times;
    m = *mode;
    if (m != SIM_MODE_NORMAL && *times > 0 && --*times == 0)
        *mode = SIM_MODE_NORMAL;
    pthread_mutex_unlock(&app->lock);
    return m;
}

/* ------------------------------------------------------------ responses */

static void sim_resp_text(struct sim_resp *r, unsigned status, const char *ctype, const char *text)
{
    free(r->body);
    r->status = status;
    r->ctype = ctype;
    r->body = sim_xstrdup(text);
    r->len = strlen(text);
    r->action = SIM_SEND;
}

/* Takes ownership of obj. */
static void sim_resp_json(struct sim_resp *r, unsigned status, cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);

    cJSON_Delete(obj);
    free(r->body);
    r->status = status;
    r->ctype = "application/json";
    r->body = s;
    r->len = s ? strlen(s) : 0;
    r->action = SIM_SEND;
}

/* KIE envelope {"code":code,"msg":msg[,"data":null]} with HTTP status. */
static void sim_resp_kie(struct sim_resp *r, unsigned status, int code, const char *msg, bool null_data)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddNumberToObject(o, "code", code);
    cJSON_AddStringToObject(o, "msg", msg);
    if (null_data)
        cJSON_AddNullToObject(o, "data");
    sim_resp_json(r, status, o);
}

static void sim_resp_mode(struct sim_resp *r, int mode, bool record)
{
    switch (mode) {
    case SIM_MODE_HTTP500:
        sim_resp_text(r, 500, "text/plain", "Internal Server Error\n");
        break;
    case SIM_MODE_NONJSON:
        sim_resp_text(r, 200, "text/html",
                      "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                      "<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n");
        break;
    case SIM_MODE_HANG:
        r->action = SIM_HANG;
        break;
    case SIM_MODE_RESET:
        r->action = SIM_RESET;
        break;
    case SIM_MODE_CODE401:
        sim_resp_kie(r, 200, 401, sim_unauth_msg, false);
        break;
    case SIM_MODE_CODE402:
        sim_resp_kie(r, 200, 402, "Insufficient credits", false);
        break;
    case SIM_MODE_CODE422:
        sim_resp_kie(r, 200, 422, record ? "recordInfo is null" : "Validation error (simulated)", true);
        break;
    case SIM_MODE_CODE429:
        sim_resp_kie(r, 429, 429, "Rate limited: too many requests, please try again later", false);
        break;
    case SIM_MODE_CODE455:
        sim_resp_kie(r, 200, 455, "Service unavailable: system maintenance", false);
        break;
    case SIM_MODE_CODE500:
        sim_resp_kie(r, 200, 500, "Server error, please try again later", false);
        break;
    case SIM_MODE_CODE501:
        sim_resp_kie(r, 200, 501, "Generation failed", false);
        break;
    default:
        sim_resp_kie(r, 500, 500, "unknown simulator mode", false);
        break;
    }
}

/* --------------------------------------------------- connection helpers */

static int sim_conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

    return ci ? ci->connect_fd : -1;
}

/* Wait ms milliseconds in this connection's own thread. Returns 0 when the
 * time is up, -1 early if the client hung up or the simulator is stopping. */
static int sim_wait_client(struct sim_app *app, struct MHD_Connection *c, long ms)
{
    long long deadline = sim_mono_ms() + ms;
    int fd = sim_conn_fd(c);

    for (;;) {
        long long left = deadline - sim_mono_ms();
        struct pollfd p = {.fd = fd, .events = POLLRDHUP};

        if (atomic_load(&app->stopping))
            return -1;
        if (left <= 0)
            return 0;
        if (left > SIM_POLL_SLICE_MS)
            left = SIM_POLL_SLICE_MS;
        if (fd < 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)left * 1000000L};

            nanosleep(&ts, NULL);
        } else if (poll(&p, 1, (int)left) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))) {
            return -1;
        }
    }
}

static bool sim_auth_ok(const struct sim_app *app, struct MHD_Connection *c, bool *present)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    size_t n, klen = strlen(app->api_key);

    *present = h != NULL;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    n = strlen(h);
    while (n > 0 && h[n - 1] == ' ')
        n--;
    return n == klen && CRYPTO_memcmp(h, app->api_key, klen) == 0;
}

struct sim_query_ctx {
    cJSON *obj;
    int n;
};

static enum MHD_Result sim_query_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct sim_query_ctx *q = cls;

    (void)kind;
    if (q->n++ >= SIM_MAX_QUERY_ARGS)
        return MHD_NO;
    cJSON_AddStringToObject(q->obj, key, value ? value : "");
    return MHD_YES;
}

/* Append one entry to the /sim/requests log (oldest dropped beyond cap). */
static void sim_log_request(struct sim_app *app, struct MHD_Connection *c, const char *method,
                            const char *url, const struct sim_req *r)
{
    cJSON *e = cJSON_CreateObject();
    struct sim_query_ctx q = {.obj = cJSON_CreateObject(), .n = 0};
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool present = false, ok = sim_auth_ok(app, c, &present);
    cJSON *body = NULL;

    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, sim_query_iter, &q);
    cJSON_AddNumberToObject(e, "time_ms", (double)sim_wall_ms());
    cJSON_AddStringToObject(e, "method", method);
    cJSON_AddStringToObject(e, "path", url);
    cJSON_AddItemToObject(e, "query", q.obj);
    cJSON_AddBoolToObject(e, "auth_present", present);
    cJSON_AddBoolToObject(e, "auth_ok", ok);
    if (ct)
        cJSON_AddStringToObject(e, "content_type", ct);
    else
        cJSON_AddNullToObject(e, "content_type");
    cJSON_AddNumberToObject(e, "body_bytes", (double)r->len);
    if (r->len && !r->too_large)
        body = cJSON_ParseWithLength(r->body, r->len);
    if (body)
        cJSON_AddItemToObject(e, "body", body);
    else
        cJSON_AddNullToObject(e, "body");

    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(e, "seq", (double)++app->req_seq);
    cJSON_AddItemToArray(app->req_log, e);
    if (++app->req_log_count > SIM_MAX_REQ_LOG) {
        cJSON_DeleteItemFromArray(app->req_log, 0);
        app->req_log_count--;
    }
    pthread_mutex_unlock(&app->lock);
}

/* ------------------------------------------------------------- handlers */

/* Returns 0 when the createTask body is acceptable, else -1 with a KIE-style
 * message naming the field and the reason. */
static int sim_validate_create(const cJSON *body, char *msg, size_t len)
{
    static const char *const aspects[] = {"1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "auto", NULL};
    static const char *const resolutions[] = {"1K", "2K", NULL};
    const cJSON *model, *cb, *input, *urls, *prompt, *aspect, *res, *nsfw, *u;
    char host[256];
    int n, i = 0;
    size_t plen;

    if (!cJSON_IsObject(body)) {
        snprintf(msg, len, "request body must be a JSON object");
        return -1;
    }
    model = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!cJSON_IsString(model)) {
        snprintf(msg, len, "model is required");
        return -1;
    }
    if (strcmp(model->valuestring, SIM_MODEL) != 0) {
        snprintf(msg, len, "model %.64s is not supported (expected " SIM_MODEL ")", model->valuestring);
        return -1;
    }
    cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
    if (cb && !cJSON_IsNull(cb) &&
        (!cJSON_IsString(cb) || sim_url_host(cb->valuestring, host, sizeof host) != 0)) {
        snprintf(msg, len, "callBackUrl must be an http(s) URL");
        return -1;
    }
    input = cJSON_GetObjectItemCaseSensitive(body, "input");
    if (!cJSON_IsObject(input)) {
        snprintf(msg, len, "input is required and must be an object");
        return -1;
    }
    urls = cJSON_GetObjectItemCaseSensitive(input, "input_urls");
    if (!cJSON_IsArray(urls)) {
        snprintf(msg, len, "input.input_urls is required and must be an array of 1-8 image URLs");
        return -1;
    }
    n = cJSON_GetArraySize(urls);
    if (n < 1 || n > SIM_MAX_URLS) {
        snprintf(msg, len, "input.input_urls must contain 1-8 URLs, got %d", n);
        return -1;
    }
    cJSON_ArrayForEach(u, urls) {
        if (!cJSON_IsString(u) || sim_url_host(u->valuestring, host, sizeof host) != 0) {
            snprintf(msg, len, "input.input_urls[%d] is not a valid http(s) URL", i);
            return -1;
        }
        i++;
    }
    prompt = cJSON_GetObjectItemCaseSensitive(input, "prompt");
    if (!cJSON_IsString(prompt)) {
        snprintf(msg, len, "input.prompt is required and must be a string");
        return -1;
    }
    plen = sim_utf8_len(prompt->valuestring);
    if (plen < SIM_MIN_PROMPT || plen > SIM_MAX_PROMPT) {
        snprintf(msg, len, "input.prompt must be 3-5000 characters, got %zu", plen);
        return -1;
    }
    aspect = cJSON_GetObjectItemCaseSensitive(input, "aspect_ratio");
    if (!cJSON_IsString(aspect) || sim_enum_index(aspects, aspect->valuestring) < 0) {
        snprintf(msg, len, "input.aspect_ratio is required and must be one of 1:1, 4:3, 3:4, 16:9, 9:16, 3:2, 2:3, auto");
        return -1;
    }
    res = cJSON_GetObjectItemCaseSensitive(input, "resolution");
    if (!cJSON_IsString(res) || sim_enum_index(resolutions, res->valuestring) < 0) {
        snprintf(msg, len, "input.resolution is required and must be 1K or 2K");
        return -1;
    }
    nsfw = cJSON_GetObjectItemCaseSensitive(input, "nsfw_checker");
    if (nsfw && !cJSON_IsBool(nsfw)) {
        snprintf(msg, len, "input.nsfw_checker must be a boolean");
        return -1;
    }
    return 0;
}

/* Build a task from a validated createTask body. */
static struct sim_task *sim_task_new(const cJSON *body, const struct sim_config *cfg)
{
    struct sim_task *t = sim_xmalloc(sizeof *t);
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
    const cJSON *cb = cJSON_GetObjectItemCaseSensitive(body, "callBackUrl");
    const cJSON *u;

    memset(t, 0, sizeof *t);
    t->param = cJSON_PrintUnformatted(body);
    if (!t->param)
        t->param = sim_xstrdup("{}");
    if (cJSON_IsString(cb))
        t->callback_url = sim_xstrdup(cb->valuestring);
    cJSON_ArrayForEach(u, cJSON_GetObjectItemCaseSensitive(input, "input_urls"))
        if (t->n_urls < SIM_MAX_URLS)
            t->urls[t->n_urls++] = sim_xstrdup(u->valuestring);
    sim_copy(t->aspect, sizeof t->aspect, cJSON_GetObjectItemCaseSensitive(input, "aspect_ratio")->valuestring);
    sim_copy(t->resolution, sizeof t->resolution, cJSON_GetObjectItemCaseSensitive(input, "resolution")->valuestring);
    t->fetch = SIM_FETCH_PENDING;
    sim_task_enter(t, SIM_ST_WAITING, sim_mono_ms(), sim_wall_ms());
    t->create_ms = t->update_ms;
    t->step_ms = cfg->step_ms;
    t->fail = cfg->outcome == 1;
    if (t->fail) {
        sim_copy(t->fail_code, sizeof t->fail_code, cfg->fail_code);
        sim_copy(t->fail_msg, sizeof t->fail_msg, cfg->fail_msg);
    }
    t->callback_status = -1;
    return t;
}

static void sim_h_create(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_config cfg;
    struct sim_job job = {.kind = SIM_JOB_FETCH};
    char msg[SIM_MSG_MAX], id[SIM_ID_LEN];
    size_t n_urls;
    bool present;
    cJSON *body = NULL, *out, *data;
    struct sim_task *t;
    int mode = sim_take_mode(app, false, &cfg);

    if (cfg.latency_ms > 0 && sim_wait_client(app, c, cfg.latency_ms) != 0) {
        resp->action = SIM_DROP;
        goto out;
    }
    if (mode != SIM_MODE_NORMAL) {
        sim_resp_mode(resp, mode, false);
        goto out;
    }
    if (!sim_auth_ok(app, c, &present)) {
        sim_resp_kie(resp, 401, 401, sim_unauth_msg, false);
        goto out;
    }
    body = cJSON_ParseWithLength(r->body ? r->body : "", r->len);
    if (!body) {
        sim_resp_kie(resp, 200, 422, "request body is not valid JSON", true);
        goto out;
    }
    if (sim_validate_create(body, msg, sizeof msg) != 0) {
        sim_resp_kie(resp, 200, 422, msg, true);
        goto out;
    }
    t = sim_task_new(body, &cfg);
    pthread_mutex_lock(&app->lock);
    sim_task_insert(app, t);
    sim_copy(id, sizeof id, t->id);
    n_urls = t->n_urls;
    sim_copy(job.task_id, sizeof job.task_id, t->id);
    if (sim_job_push(app, &job) != 0) {
        t->fail = true;
        t->fetch = SIM_FETCH_FAILED;
        sim_copy(t->fail_code, sizeof t->fail_code, "500");
        sim_copy(t->fail_msg, sizeof t->fail_msg, "simulator download queue full");
    }
    pthread_mutex_unlock(&app->lock);
    sim_log("task %s created (%zu input urls)", id, n_urls);

    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "code", 200);
    cJSON_AddStringToObject(out, "msg", "success");
    data = cJSON_AddObjectToObject(out, "data");
    cJSON_AddStringToObject(data, "taskId", id);
    sim_resp_json(resp, 200, out);
out:
    cJSON_Delete(body);
}

static void sim_h_record(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    struct sim_config cfg;
    const char *id;
    struct sim_task *t;
    cJSON *out, *data = NULL;
    bool present;
    int mode = sim_take_mode(app, true, &cfg);

    (void)r;
    if (cfg.latency_ms > 0 && sim_wait_client(app, c, cfg.latency_ms) != 0) {
        resp->action = SIM_DROP;
        return;
    }
    if (mode != SIM_MODE_NORMAL) {
        sim_resp_mode(resp, mode, true);
        return;
    }
    if (!sim_auth_ok(app, c, &present)) {
        sim_resp_kie(resp, 401, 401, sim_unauth_msg, false);
        return;
    }
    id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "taskId");
    if (!id || !*id) {
        sim_resp_kie(resp, 200, 422, "taskId is required", true);
        return;
    }
    pthread_mutex_lock(&app->lock);
    t = strlen(id) < SIM_ID_LEN ? sim_task_find(app, id) : NULL;
    if (t)
        data = sim_task_data(app, t, false);
    pthread_mutex_unlock(&app->lock);
    if (!data) {
        sim_resp_kie(resp, 200, 422, "recordInfo is null", true);
        return;
    }
    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "code", 200);
    cJSON_AddStringToObject(out, "message", "success");
    cJSON_AddItemToObject(out, "data", data);
    sim_resp_json(resp, 200, out);
}

/* GET /results/<taskId>.png: rendered on demand for successful tasks. */
static void sim_h_result(struct sim_app *app, const char *url, struct sim_resp *resp)
{
    const char *name = url + strlen("/results/");
    size_t n = strlen(name);
    char id[SIM_ID_LEN];
    struct sim_task *t;
    uint32_t w = 0, h = 0, seed = 2166136261u;
    unsigned char *png = NULL;
    size_t png_len = 0;
    bool found = false;

    if (n <= 4 || n - 4 >= sizeof id || strcmp(name + n - 4, ".png") != 0) {
        sim_resp_kie(resp, 404, 404, "Not found", false);
        return;
    }
    memcpy(id, name, n - 4);
    id[n - 4] = '\0';
    pthread_mutex_lock(&app->lock);
    t = sim_task_find(app, id);
    if (t && t->state == SIM_ST_SUCCESS) {
        found = true;
        sim_result_dims(t, &w, &h);
    }
    pthread_mutex_unlock(&app->lock);
    if (!found) {
        sim_resp_kie(resp, 404, 404, "Not found", false);
        return;
    }
    for (const char *p = id; *p; p++) /* FNV-1a: a per-task tint */
        seed = (seed ^ (unsigned char)*p) * 16777619u;
    if (sim_png_render(w, h, seed, &png, &png_len) != 0) {
        sim_resp_kie(resp, 500, 500, "could not render PNG", false);
        return;
    }
    free(resp->body);
    resp->status = 200;
    resp->ctype = "image/png";
    resp->body = (char *)png;
    resp->len = png_len;
    resp->action = SIM_SEND;
}

static void sim_h_config_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o;

    (void)c;
    (void)r;
    pthread_mutex_lock(&app->lock);
    o = sim_config_json(&app->cfg);
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

/* POST /sim/config: all-or-nothing update; answers the full new config. */
static void sim_h_config_set(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *body = cJSON_ParseWithLength(r->body ? r->body : "", r->len), *item, *reset, *o;
    struct sim_config next;
    char err[256] = "";

    (void)c;
    if (!cJSON_IsObject(body)) {
        sim_copy(err, sizeof err, "body must be a JSON object of knobs");
        goto bad;
    }
    pthread_mutex_lock(&app->lock);
    next = app->cfg;
    pthread_mutex_unlock(&app->lock);
    reset = cJSON_GetObjectItemCaseSensitive(body, "reset");
    if (cJSON_IsTrue(reset)) {
        pthread_mutex_lock(&app->lock);
        next = app->cfg_initial;
        pthread_mutex_unlock(&app->lock);
    } else if (reset && !cJSON_IsFalse(reset)) {
        sim_copy(err, sizeof err, "reset must be a boolean");
        goto bad;
    }
    cJSON_ArrayForEach(item, body) {
        const struct sim_knob *k;

        if (!item->string || strcmp(item->string, "reset") == 0)
            continue;
        k = sim_knob_find(item->string);
        if (!k) {
            snprintf(err, sizeof err, "unknown knob %.64s", item->string);
            goto bad;
        }
        if (sim_knob_set_json(&next, k, item, err, sizeof err) != 0)
            goto bad;
    }
    pthread_mutex_lock(&app->lock);
    app->cfg = next;
    o = sim_config_json(&app->cfg);
    pthread_mutex_unlock(&app->lock);
    cJSON_Delete(body);
    sim_resp_json(resp, 200, o);
    return;
bad:
    cJSON_Delete(body);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", err);
    sim_resp_json(resp, 400, o);
}

static void sim_h_requests_get(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject();

    (void)c;
    (void)r;
    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(o, "count", (double)app->req_log_count);
    cJSON_AddItemToObject(o, "requests", cJSON_Duplicate(app->req_log, 1));
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

static void sim_h_requests_delete(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject();

    (void)c;
    (void)r;
    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(o, "cleared", (double)app->req_log_count);
    cJSON_Delete(app->req_log);
    app->req_log = cJSON_CreateArray();
    app->req_log_count = 0;
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

static void sim_h_tasks(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r, struct sim_resp *resp)
{
    cJSON *o = cJSON_CreateObject(), *arr;
    size_t cap = (size_t)app->max_tasks;

    (void)c;
    (void)r;
    arr = cJSON_AddArrayToObject(o, "tasks");
    pthread_mutex_lock(&app->lock);
    cJSON_AddNumberToObject(o, "count", (double)app->task_count);
    cJSON_AddNumberToObject(o, "max_tasks", (double)app->max_tasks);
    for (size_t i = 0; i < app->task_count; i++) {
        const struct sim_task *t = app->tasks[(app->task_head + i) % cap];
        cJSON *d = sim_task_data(app, t, false), *u = cJSON_AddArrayToObject(d, "inputUrls");
        cJSON *hist = cJSON_AddObjectToObject(d, "stateTimes");

        for (int st = SIM_ST_WAITING; st <= SIM_ST_FAIL; st++)
            if (t->entered_ms[st])
                cJSON_AddNumberToObject(hist, sim_state_names[st], (double)t->entered_ms[st]);

        for (size_t j = 0; j < t->n_urls; j++)
            cJSON_AddItemToArray(u, cJSON_CreateString(t->urls[j]));
        if (t->callback_url)
            cJSON_AddStringToObject(d, "callBackUrl", t->callback_url);
        else
            cJSON_AddNullToObject(d, "callBackUrl");
        cJSON_AddBoolToObject(d, "callbackDone", t->callback_done);
        cJSON_AddNumberToObject(d, "callbackStatus", (double)t->callback_status);
        cJSON_AddStringToObject(d, "callbackError", t->callback_error);
        cJSON_AddItemToArray(arr, d);
    }
    pthread_mutex_unlock(&app->lock);
    sim_resp_json(resp, 200, o);
}

/* --------------------------------------------------------------- router */

typedef void sim_handler_fn(struct sim_app *, struct MHD_Connection *, struct sim_req *, struct sim_resp *);

struct sim_route {
    const char *method;
    const char *path;
    const char *allow;
    sim_handler_fn *fn;
};

static const struct sim_route sim_routes[] = {
    {"POST", "/api/v1/jobs/createTask", "POST", sim_h_create},
    {"GET", "/api/v1/jobs/recordInfo", "GET", sim_h_record},
    {"GET", "/sim/config", "GET, POST", sim_h_config_get},
    {"POST", "/sim/config", "GET, POST", sim_h_config_set},
    {"GET", "/sim/requests", "GET, DELETE", sim_h_requests_get},
    {"DELETE", "/sim/requests", "GET, DELETE", sim_h_requests_delete},
    {"GET", "/sim/tasks", "GET", sim_h_tasks},
};

static void sim_dispatch(struct sim_app *app, struct MHD_Connection *c, const char *url, const char *method,
                         struct sim_req *r, struct sim_resp *resp)
{
    const char *allow = NULL;

    if (strncmp(url, "/sim/", 5) != 0)
        sim_log_request(app, c, method, url, r);
    if (r->too_large) {
        sim_resp_kie(resp, 413, 413, "request body too large", false);
        return;
    }
    if (strncmp(url, "/results/", 9) == 0) {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            sim_h_result(app, url, resp);
        else {
            sim_resp_kie(resp, 405, 405, "Method not allowed", false);
            resp->allow = "GET, HEAD";
        }
        return;
    }
    for (size_t i = 0; i < sizeof sim_routes / sizeof sim_routes[0]; i++) {
        if (strcmp(sim_routes[i].path, url) != 0)
            continue;
        if (strcmp(sim_routes[i].method, method) == 0) {
            sim_routes[i].fn(app, c, r, resp);
            return;
        }
        allow = sim_routes[i].allow;
    }
    if (allow) {
        sim_resp_kie(resp, 405, 405, "Method not allowed", false);
        resp->allow = allow;
    } else {
        sim_resp_kie(resp, 404, 404, "Not found", false);
    }
}

/* Carry out resp: queue it, or drop/reset/hang the connection. */
static enum MHD_Result sim_finish(struct sim_app *app, struct MHD_Connection *c, struct sim_req *r,
                                  struct sim_resp *resp)
{
    struct MHD_Response *mr;
    enum MHD_Result ret;
    int fd;

    r->responded = true;
    switch (resp->action) {
    case SIM_DROP:
        free(resp->body);
        return MHD_NO;
    case SIM_RESET:
        fd = sim_conn_fd(c);
        if (fd >= 0) { /* linger 0: close() sends RST instead of FIN */
            struct linger lg = {.l_onoff = 1, .l_linger = 0};

            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        free(resp->body);
        return MHD_NO;
    case SIM_HANG:
        free(resp->body);
        pthread_mutex_lock(&app->lock);
        {
            long max = app->cfg.hang_max_ms;

            pthread_mutex_unlock(&app->lock);
            sim_wait_client(app, c, max);
        }
        return MHD_NO;
    case SIM_SEND:
        break;
    }
    if (resp->body) {
        mr = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
        if (!mr)
            free(resp->body);
    } else {
        mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    resp->body = NULL;
    if (!mr)
        return MHD_NO;
    if (resp->ctype)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, resp->ctype);
    if (resp->allow)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, resp->allow);
    ret = MHD_queue_response(c, resp->status ? resp->status : 500, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result sim_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct sim_app *app = cls;
    struct sim_req *r = *req_cls;
    struct sim_resp resp = {.action = SIM_SEND};

    (void)version;
    if (!r) { /* first call: headers only */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        long n;

        r = sim_xmalloc(sizeof *r);
        memset(r, 0, sizeof *r);
        *req_cls = r;
        if (cl && (sim_parse_long(cl, 0, LONG_MAX, &n) != 0 || n > (long)SIM_MAX_BODY)) {
            /* answer before reading the body; MHD closes the connection */
            r->too_large = true;
            sim_dispatch(app, c, url, method, r, &resp);
            return sim_finish(app, c, r, &resp);
        }
        return MHD_YES;
    }
    if (r->responded) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;

        if (!r->too_large && n <= SIM_MAX_BODY - r->len) {
            if (r->len + n + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 1024;
                char *nb;

                while (cap < r->len + n + 1)
                    cap *= 2;
                nb = realloc(r->body, cap);
                if (!nb)
                    return MHD_NO;
                r->body = nb;
                r->cap = cap;
            }
            memcpy(r->body + r->len, upload_data, n);
            r->len += n;
            r->body[r->len] = '\0';
        } else {
            r->too_large = true; /* keep draining, answer 413 at the end */
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    sim_dispatch(app, c, url, method, r, &resp);
    return sim_finish(app, c, r, &resp);
}

static void sim_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    struct sim_req *r = *req_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (r) {
        free(r->body);
        free(r);
        *req_cls = NULL;
    }
}

/* ------------------------------------------------------------------ main */

static void sim_print_flag(FILE *f, const char *name)
{
    fputs("  --", f);
    for (const char *p = name; *p; p++)
        fputc(*p == '_' ? '-' : *p, f);
}

static void sim_usage(FILE *f)
{
    fputs("usage: kie-sim [options]\n"
          "Simulates the KIE job API (model " SIM_MODEL ") on loopback for tests.\n\n"
          "Options (also --name=value):\n"
          "  --host ADDR           IPv4 loopback address to bind (default 127.0.0.1; only 127.x.x.x allowed)\n"
          "  --port N              TCP port, 0 = ephemeral (default 0; env KIE_SIM_PORT)\n"
          "  --api-key KEY         Bearer key clients must send (default test-key; env KIE_SIM_API_KEY)\n"
          "  --max-tasks N         tasks kept in memory, oldest evicted (default 10000)\n"
          "  --help                this text\n\n"
          "Knobs (start-up flags; change at runtime with POST /sim/config {\"knob\":value,...},\n"
          "{\"reset\":true} restores the start-up values; GET /sim/config shows them):\n", f);
    for (size_t i = 0; i < SIM_N_KNOBS; i++) {
        const struct sim_knob *k = &sim_knobs[i];
        const char *field = (const char *)&sim_config_defaults + k->off;

        sim_print_flag(f, k->name);
        fprintf(f, " %s\n        %s (default ", k->type == SIM_KNOB_LONG ? "N" : "VALUE", k->help);
        if (k->type == SIM_KNOB_LONG)
            fprintf(f, "%ld; %ld..%ld)\n", *(const long *)(const void *)field, k->min, k->max);
        else if (k->type == SIM_KNOB_STR)
            fprintf(f, "\"%s\")\n", field);
        else
            fprintf(f, "%s)\n", k->names[*(const int *)(const void *)field]);
    }
    fputs("\nModes for create_mode/record_mode:\n"
          "  normal   behave like KIE\n"
          "  http500  HTTP 500 with a text body      nonjson  HTTP 200 with an HTML body\n"
          "  hang     never answer (until the client gives up, hang_max_ms or shutdown)\n"
          "  reset    close the connection without answering (TCP RST)\n"
          "  code401 code402 code422 code455 code500 code501  HTTP 200 with that KIE \"code\"\n"
          "  code429  HTTP 429 with code 429\n\n"
          "Endpoints: POST /api/v1/jobs/createTask, GET /api/v1/jobs/recordInfo?taskId=,\n"
          "  GET /results/<taskId>.png, GET|POST /sim/config, GET|DELETE /sim/requests, GET /sim/tasks.\n"
          "Input URLs and callBackUrl are only fetched from 127.0.0.0/8, localhost and [::1];\n"
          "anything else is treated as unreachable. Prints \"kie-sim listening on port N\" when ready;\n"
          "SIGINT/SIGTERM exit 0.\n", f);
}

/* Returns 0, 1 for --help, or -1 after printing an error. */
static int sim_parse_args(struct sim_app *app, int argc, char **argv)
{
    const char *env;
    char err[256];

    env = getenv("KIE_SIM_PORT");
    if (env && *env && sim_parse_long(env, 0, 65535, &app->port_arg) != 0) {
        fprintf(stderr, "kie-sim: KIE_SIM_PORT must be 0..65535\n");
        return -1;
    }
    env = getenv("KIE_SIM_API_KEY");
    if (env && *env)
        sim_copy(app->api_key, sizeof app->api_key, env);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val, *eq;
        char name[64];
        size_t n;
        const struct sim_knob *k;

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
            if (!*val || strlen(val) >= sizeof app->api_key) {
                fprintf(stderr, "kie-sim: --api-key must be 1..255 bytes\n");
                return -1;
            }
            sim_copy(app->api_key, sizeof app->api_key, val);
        } else if (strcmp(name, "max_tasks") == 0) {
            if (sim_parse_long(val, 1, 1000000, &app->max_tasks) != 0) {
                fprintf(stderr, "kie-sim: --max-tasks must be 1..1000000\n");
                return -1;
            }
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
    sim_copy(app->api_key, sizeof app->api_key, "test-key");
    sim_copy(app->host, sizeof app->host, "127.0.0.1");
    app->max_tasks = SIM_MAX_TASKS_DEFAULT;
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
    cJSON_Delete(app->req_log);
    pthread_cond_destroy(&app->tick);
    pthread_cond_destroy(&app->wake);
    pthread_mutex_destroy(&app->lock);
}

int main(int argc, char **argv)
{
    struct sim_app app; /* ~90 KiB (job ring); lives for the whole run */
    cJSON_Hooks hooks = {.malloc_fn = sim_xmalloc, .free_fn = free};
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *di;
    struct sockaddr_in sa;
    pthread_t workers[SIM_WORKERS], scheduler;
    size_t n_workers = 0;
    bool sched_started = false, curl_ready = false;
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
    app.tasks = calloc((size_t)app.max_tasks, sizeof *app.tasks);
    if (!app.tasks)
        goto out;

    /* SIGINT/SIGTERM are taken with sigwait() below; every thread inherits
     * this mask, so no handler runs asynchronously anywhere. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

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
    sim_app_free(&app);
    return ret;
}
