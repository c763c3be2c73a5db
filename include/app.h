/* app.h - everything a request handler may reach, passed as MHD's `cls`.
 * No globals: main() builds one struct app and hands it around. */
#ifndef PPA_APP_H
#define PPA_APP_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

struct config;
struct storage;
struct upstream;
struct ratelimit;
struct taskcache;
struct imagepool;
struct kieupload;
struct taskstore;
struct credits_cache;
struct tasklog_queue;
struct metrics;
struct replay;
struct MHD_Daemon;

struct app {
    const struct config *cfg;
    struct storage *store;
    struct upstream *up;
    struct imagepool *images;      /* the image pipeline's workers */
    struct MHD_Daemon *daemon;
    struct ratelimit *rl_generate;
    struct ratelimit *rl_upload;
    struct taskcache *tasks;       /* finished tasks, kept results */
    struct kieupload *pushed;      /* our files already on KIE's file upload */
    struct taskstore *taskstore;   /* records of our tasks, idempotency keys (taskstore.h) */
    struct credits_cache *credits; /* KIE's balance, cached (tasklog.h) */
    struct tasklog_queue *updates; /* record updates, one at a time (tasklog.h) */
    struct metrics *metrics;       /* GET /metrics (metrics.h) */
    atomic_long admitting;         /* generations admitted, not yet recorded (daily cap) */
    char callback_secret[65];      /* token in KIE's callBackUrl */
    unsigned char results_key[32]; /* signs stable_url (resultsig.h) */
    struct ratelimit *rl_results;
    struct replay *callback_replays; /* signed callbacks seen lately (replay.h) */
    unsigned port;                 /* the bound port */
    time_t started;
    atomic_long active_requests;   /* between first callback and completion */
    atomic_long suspended;         /* connections waiting for upstream */
    /* The public base URL: from config, or discovered from cloudflared. */
    pthread_mutex_t public_lock;
    char public_base_url[512];     /* "" when unknown */
};

/* The point-in-time values /metrics and the EMF lines report. */
struct metrics_gauges;
void app_metrics_gauges(struct app *a, struct metrics_gauges *g);

/* Copy the current public base URL into out ("" when unknown). */
void app_public_base_url(struct app *a, char *out, size_t cap);
void app_set_public_base_url(struct app *a, const char *url);

#endif
