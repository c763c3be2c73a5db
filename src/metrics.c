/* metrics.c - see metrics.h. */
#include "metrics.h"
#include "buf.h"
#include "err.h"
#include "upstream.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statuses counted one by one; anything else lands in "other" by class. */
static const unsigned STATUSES[] = {200, 204, 206, 302, 304, 400, 401, 402, 403, 404, 405, 408, 409,
                                    413, 415, 416, 422, 429, 499, 500, 502, 503, 504, 507};
#define N_STATUS (sizeof STATUSES / sizeof STATUSES[0] + 1)

/* Latency buckets (seconds, Prometheus' le) */
static const double BUCKETS[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BUCKETS (sizeof BUCKETS / sizeof BUCKETS[0])

static const char *const TARGET_NAMES[N_TARGETS] = {"other", "kie", "kie_upload", "s3", "result"};
enum { OUT_OK, OUT_HTTP_ERROR, OUT_TIMEOUT, OUT_ERROR, N_OUTCOMES };
static const char *const OUTCOME_NAMES[N_OUTCOMES] = {"ok", "http_error", "timeout", "error"};

struct route_stats {
    atomic_ullong by_status[N_STATUS];
    atomic_ullong bucket[N_BUCKETS]; /* not cumulative; summed when rendered */
    atomic_ullong count;
    atomic_ullong sum_us;
};

struct metrics {
    size_t n_routes;
    struct route_stats *routes; /* n_routes + 1 */
    atomic_ullong upstream[N_TARGETS][N_OUTCOMES];
    atomic_ullong counters[N_COUNTERS];
    /* EMF: the totals at the last line */
    unsigned long long emf_last[8];
};

struct metrics *metrics_new(size_t n_routes)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->routes = calloc(n_routes + 1, sizeof *m->routes);
    if (!m->routes) {
        free(m);
        return NULL;
    }
    m->n_routes = n_routes;
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m) {
        free(m->routes);
        free(m);
    }
}

static size_t status_index(unsigned status)
{
    for (size_t i = 0; i < N_STATUS - 1; i++)
        if (STATUSES[i] == status)
            return i;
    return N_STATUS - 1;
}

void metrics_request(struct metrics *m, size_t route, unsigned status, double ms)
{
    struct route_stats *s;
    double secs = ms / 1000.0;
    size_t b = 0;

    if (!m)
        return;
    s = &m->routes[route < m->n_routes ? route : m->n_routes];
    atomic_fetch_add_explicit(&s->by_status[status_index(status)], 1, memory_order_relaxed);
    while (b < N_BUCKETS && secs > BUCKETS[b])
        b++;
    if (b < N_BUCKETS)
        atomic_fetch_add_explicit(&s->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, (unsigned long long)(ms > 0 ? ms * 1000.0 : 0), memory_order_relaxed);
}

void metrics_upstream(struct metrics *m, const struct upstream_call *c)
{
    int t = c->target >= 0 && c->target < N_TARGETS ? c->target : TARGET_OTHER;
    int o = c->result == ERR_TIMEOUT ? OUT_TIMEOUT : c->result ? OUT_ERROR
            : (c->http_status >= 200 && c->http_status < 400) ? OUT_OK : OUT_HTTP_ERROR;
    if (m)
        atomic_fetch_add_explicit(&m->upstream[t][o], 1, memory_order_relaxed);
}

void metrics_add(struct metrics *m, enum metrics_counter c, unsigned long long by)
{
    if (m && c < N_COUNTERS)
        atomic_fetch_add_explicit(&m->counters[c], by, memory_order_relaxed);
}

void metrics_add_credits(struct metrics *m, double credits)
{
    if (credits > 0)
        metrics_add(m, M_CREDITS_SPENT, (unsigned long long)(credits * 100.0 + 0.5));
}

static unsigned long long get(atomic_ullong *a)
{
    return atomic_load_explicit(a, memory_order_relaxed);
}

static void line(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0 && buf_append(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1))
        return; /* over the (generous) cap: the scrape is cut short, never wrong */
}

char *metrics_prometheus(struct metrics *m, const char *const *methods, const char *const *patterns,
                         const struct metrics_gauges *g)
{
    static const char *const COUNTER_NAMES[N_COUNTERS] = {
        "ppa_tasks_created_total", "ppa_tasks_succeeded_total", "ppa_tasks_failed_total", NULL,
        "ppa_uploads_total", "ppa_upload_bytes_total", "ppa_idempotent_replays_total"};
    static const char *const COUNTER_HELP[N_COUNTERS] = {
        "KIE tasks this server created", "tasks that ended in success", "tasks that ended in fail", NULL,
        "uploads stored", "bytes of uploads received (before re-encoding)",
        "POST /generate answered from an Idempotency-Key's stored answer"};
    struct buf b;
    char *out;

    buf_init(&b, 4 * 1024 * 1024);
    line(&b, "# HELP ppa_http_requests_total HTTP requests answered, by route and status.\n"
             "# TYPE ppa_http_requests_total counter\n");
    for (size_t r = 0; r <= m->n_routes; r++)
        for (size_t i = 0; i < N_STATUS; i++) {
            unsigned long long v = get(&m->routes[r].by_status[i]);
            if (!v)
                continue;
            if (i < N_STATUS - 1)
                line(&b, "ppa_http_requests_total{method=\"%s\",route=\"%s\",status=\"%u\"} %llu\n",
                     r < m->n_routes ? methods[r] : "", r < m->n_routes ? patterns[r] : "unmatched", STATUSES[i], v);
            else
                line(&b, "ppa_http_requests_total{method=\"%s\",route=\"%s\",status=\"other\"} %llu\n",
                     r < m->n_routes ? methods[r] : "", r < m->n_routes ? patterns[r] : "unmatched", v);
        }
    line(&b, "# HELP ppa_http_request_duration_seconds Time from the first byte of a request to its answer.\n"
             "# TYPE ppa_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= m->n_routes; r++) {
        unsigned long long cum = 0;
        unsigned long long count = get(&m->routes[r].count);
        const char *meth = r < m->n_routes ? methods[r] : "";
        const char *pat = r < m->n_routes ? patterns[r] : "unmatched";
        if (!count)
            continue;
        for (size_t i = 0; i < N_BUCKETS; i++) {
            cum += get(&m->routes[r].bucket[i]);
            line(&b, "ppa_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%g\"} %llu\n", meth,
                 pat, BUCKETS[i], cum);
        }
        line(&b, "ppa_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n", meth, pat,
             count);
        line(&b, "ppa_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.6f\n", meth, pat,
             (double)get(&m->routes[r].sum_us) / 1e6);
        line(&b, "ppa_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n", meth, pat, count);
    }
    line(&b, "# HELP ppa_upstream_calls_total Outgoing calls by target and outcome.\n"
             "# TYPE ppa_upstream_calls_total counter\n");
    for (int t = 0; t < N_TARGETS; t++)
        for (int o = 0; o < N_OUTCOMES; o++)
            line(&b, "ppa_upstream_calls_total{target=\"%s\",outcome=\"%s\"} %llu\n", TARGET_NAMES[t],
                 OUTCOME_NAMES[o], get(&m->upstream[t][o]));
    for (int c = 0; c < N_COUNTERS; c++) {
        if (!COUNTER_NAMES[c])
            continue;
        line(&b, "# HELP %s %s.\n# TYPE %s counter\n%s %llu\n", COUNTER_NAMES[c], COUNTER_HELP[c], COUNTER_NAMES[c],
             COUNTER_NAMES[c], get(&m->counters[c]));
    }
    line(&b, "# HELP ppa_credits_spent_total KIE credits this server's tasks consumed (creditsConsumed).\n"
             "# TYPE ppa_credits_spent_total counter\nppa_credits_spent_total %.2f\n",
         (double)get(&m->counters[M_CREDITS_SPENT]) / 100.0);
    line(&b, "# HELP ppa_active_requests Requests between their first byte and their answer.\n"
             "# TYPE ppa_active_requests gauge\nppa_active_requests %ld\n", g->active_requests);
    line(&b, "# HELP ppa_waiting_on_upstream Connections suspended until an upstream call answers.\n"
             "# TYPE ppa_waiting_on_upstream gauge\nppa_waiting_on_upstream %ld\n", g->waiting_on_upstream);
    line(&b, "# HELP ppa_upstream_inflight Upstream calls queued or running.\n"
             "# TYPE ppa_upstream_inflight gauge\nppa_upstream_inflight %ld\n", g->upstream_inflight);
    line(&b, "# HELP ppa_image_queue Uploads waiting for an image worker.\n"
             "# TYPE ppa_image_queue gauge\nppa_image_queue %ld\n", g->image_queue);
    line(&b, "# HELP ppa_image_running Uploads being decoded and re-encoded.\n"
             "# TYPE ppa_image_running gauge\nppa_image_running %ld\n", g->image_running);
    line(&b, "# HELP ppa_disk_guard_active 1 while free space is below MIN_FREE_DISK_MB (uploads and kept "
             "results refused).\n# TYPE ppa_disk_guard_active gauge\nppa_disk_guard_active %d\n", g->disk_low);
    out = strdup(buf_str(&b));
    buf_free(&b);
    return out;
}

char *metrics_emf(struct metrics *m, const struct metrics_gauges *g, long long now_ms)
{
    unsigned long long now[8] = {0};
    unsigned long long d[8];
    char *out;
    int n;
    size_t cap = 2048;

    for (size_t r = 0; r <= m->n_routes; r++) {
        now[0] += get(&m->routes[r].count);
        for (size_t i = 0; i < N_STATUS; i++)
            if (i < N_STATUS - 1 ? STATUSES[i] >= 500 : 0)
                now[1] += get(&m->routes[r].by_status[i]);
    }
    now[2] = get(&m->counters[M_TASKS_CREATED]);
    now[3] = get(&m->counters[M_TASKS_SUCCEEDED]);
    now[4] = get(&m->counters[M_TASKS_FAILED]);
    now[5] = get(&m->counters[M_CREDITS_SPENT]);
    now[6] = get(&m->counters[M_UPLOADS]);
    for (int t = 0; t < N_TARGETS; t++)
        now[7] += get(&m->upstream[t][OUT_TIMEOUT]) + get(&m->upstream[t][OUT_ERROR]) +
                  get(&m->upstream[t][OUT_HTTP_ERROR]);
    for (int i = 0; i < 8; i++) {
        d[i] = now[i] - m->emf_last[i];
        m->emf_last[i] = now[i];
    }
    out = malloc(cap);
    if (!out)
        return NULL;
    n = snprintf(out, cap,
                 "{\"_aws\":{\"Timestamp\":%lld,\"CloudWatchMetrics\":[{\"Namespace\":\"product-photo-api\","
                 "\"Dimensions\":[[]],\"Metrics\":[{\"Name\":\"Requests\",\"Unit\":\"Count\"},"
                 "{\"Name\":\"Errors5xx\",\"Unit\":\"Count\"},{\"Name\":\"TasksCreated\",\"Unit\":\"Count\"},"
                 "{\"Name\":\"TasksSucceeded\",\"Unit\":\"Count\"},{\"Name\":\"TasksFailed\",\"Unit\":\"Count\"},"
                 "{\"Name\":\"CreditsSpent\",\"Unit\":\"None\"},{\"Name\":\"Uploads\",\"Unit\":\"Count\"},"
                 "{\"Name\":\"UpstreamErrors\",\"Unit\":\"Count\"},{\"Name\":\"ImageQueue\",\"Unit\":\"Count\"},"
                 "{\"Name\":\"WaitingOnUpstream\",\"Unit\":\"Count\"}]}]},"
                 "\"Requests\":%llu,\"Errors5xx\":%llu,\"TasksCreated\":%llu,\"TasksSucceeded\":%llu,"
                 "\"TasksFailed\":%llu,\"CreditsSpent\":%.2f,\"Uploads\":%llu,\"UpstreamErrors\":%llu,"
                 "\"ImageQueue\":%ld,\"WaitingOnUpstream\":%ld}",
                 now_ms, d[0], d[1], d[2], d[3], d[4], (double)d[5] / 100.0, d[6], d[7], g->image_queue,
                 g->waiting_on_upstream);
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        return NULL;
    }
    return out;
}
