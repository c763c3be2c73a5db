/* metrics.h - what an operator watches: counters and latency histograms kept
 * with atomics (no lock on the request path), rendered as Prometheus text for
 * GET /metrics, and on Lambda as CloudWatch Embedded Metric Format log lines
 * (no agent needed). */
#ifndef PPA_METRICS_H
#define PPA_METRICS_H

#include <stddef.h>

struct metrics;
struct upstream_call;

/* Which upstream a call went to (upstream_call.target). */
enum metrics_target {
    TARGET_OTHER = 0,
    TARGET_KIE,        /* createTask, recordInfo, credit */
    TARGET_KIE_UPLOAD, /* KIE's file upload */
    TARGET_S3,
    TARGET_RESULT,     /* downloading KIE's result image */
    N_TARGETS
};

enum metrics_counter {
    M_TASKS_CREATED,
    M_TASKS_SUCCEEDED,
    M_TASKS_FAILED,
    M_CREDITS_SPENT,   /* in hundredths, see metrics_add_credits */
    M_UPLOADS,
    M_UPLOAD_BYTES,
    M_IDEMPOTENT_REPLAYS,
    N_COUNTERS
};

/* `n_routes` routes (their index in ROUTES); one more slot counts requests
 * that matched no route. */
struct metrics *metrics_new(size_t n_routes);
void metrics_free(struct metrics *m);

/* One finished request: route index (n_routes = none), status, duration. */
void metrics_request(struct metrics *m, size_t route, unsigned status, double ms);
/* One finished upstream call (its target and result). */
void metrics_upstream(struct metrics *m, const struct upstream_call *c);
void metrics_add(struct metrics *m, enum metrics_counter c, unsigned long long by);
void metrics_add_credits(struct metrics *m, double credits);

/* Point-in-time values the renderer adds (read by the caller). */
struct metrics_gauges {
    long active_requests;
    long waiting_on_upstream;
    long upstream_inflight;
    long image_queue;
    long image_running;
    int disk_low;
};

/* Prometheus text exposition (malloc'd). `methods`/`patterns` name the
 * routes for the labels. */
char *metrics_prometheus(struct metrics *m, const char *const *methods, const char *const *patterns,
                         const struct metrics_gauges *g);
/* One EMF JSON line (malloc'd) with what changed since the last call
 * (requests, 5xx, tasks, credits, uploads, upstream errors) and the gauges. */
char *metrics_emf(struct metrics *m, const struct metrics_gauges *g, long long now_ms);

#endif
