/* cli_pace.c - tokens for createTask, interruptible sleeps, backoff: see
 * cli_pace.h. One mutex and one condition variable; waits are timed on
 * CLOCK_MONOTONIC, so nothing spins. */
#include "cli_pace.h"
#include "cli_common.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

int cli_pace_init(struct cli_pace *p, int max, double window_s)
{
    pthread_condattr_t attr;

    p->stop = 0;
    p->max = max;
    p->window_s = window_s;
    p->seed = (unsigned)time(NULL) ^ (unsigned)clock();
    p->n_taken = p->head = 0;
    p->on_take = NULL;
    p->arg = NULL;
    p->free_at = calloc((size_t)max, sizeof *p->free_at);
    p->taken = calloc((size_t)max, sizeof *p->taken);
    if (!p->free_at || !p->taken) {
        free(p->free_at);
        free(p->taken);
        p->free_at = p->taken = NULL;
        return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    return 0;
}

void cli_pace_free(struct cli_pace *p)
{
    if (!p->free_at)
        return;
    free(p->free_at);
    free(p->taken);
    p->free_at = p->taken = NULL;
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

/* Caller holds the lock. Wait until `until` (monotonic s; < 0 = until
 * signalled). */
static void cli_pace_wait(struct cli_pace *p, double until)
{
    struct timespec ts;

    if (until < 0) {
        pthread_cond_wait(&p->cond, &p->lock);
        return;
    }
    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

int cli_pace_take(struct cli_pace *p)
{
    int token = -1;

    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        double now = cli_now();
        double soonest = -1;

        for (int i = 0; i < p->max; i++) {
            if (p->free_at[i] >= 0 && p->free_at[i] <= now) {
                token = i;
                break;
            }
            if (p->free_at[i] >= 0 && (soonest < 0 || p->free_at[i] < soonest))
                soonest = p->free_at[i];
        }
        if (token >= 0) {
            p->free_at[token] = -1;
            p->taken[(p->head + p->n_taken) % p->max] = cli_wall();
            if (p->n_taken < p->max)
                p->n_taken++;
            else
                p->head = (p->head + 1) % p->max;
            break;
        }
        cli_pace_wait(p, soonest); /* every token in flight: wait for a cli_pace_give */
    }
    pthread_mutex_unlock(&p->lock);
    if (token >= 0 && p->on_take)
        p->on_take(p->arg);
    return token;
}

int cli_pace_recent(struct cli_pace *p, double *out, int cap)
{
    int n = 0;

    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < p->n_taken && n < cap; i++)
        out[n++] = p->taken[(p->head + i) % p->max];
    pthread_mutex_unlock(&p->lock);
    return n;
}

void cli_pace_prime(struct cli_pace *p, const double *walls, int n, double margin_s)
{
    double now = cli_now();
    double wall = cli_wall();
    int token = 0;

    pthread_mutex_lock(&p->lock);
    for (int i = n > p->max ? n - p->max : 0; i < n && token < p->max; i++) {
        double left = walls[i] + p->window_s + margin_s - wall;
        if (left <= 0)
            continue;
        p->free_at[token++] = now + left;
        p->taken[(p->head + p->n_taken) % p->max] = walls[i];
        if (p->n_taken < p->max)
            p->n_taken++;
        else
            p->head = (p->head + 1) % p->max;
    }
    pthread_mutex_unlock(&p->lock);
}

void cli_pace_give(struct cli_pace *p, int token)
{
    if (token < 0 || token >= p->max)
        return;
    pthread_mutex_lock(&p->lock);
    p->free_at[token] = cli_now() + p->window_s;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int cli_pace_sleep(struct cli_pace *p, long ms)
{
    double until = cli_now() + (double)ms / 1000.0;
    int stopped;

    pthread_mutex_lock(&p->lock);
    while (!p->stop && cli_now() < until)
        cli_pace_wait(p, until);
    stopped = p->stop;
    pthread_mutex_unlock(&p->lock);
    return stopped;
}

void cli_pace_stop(struct cli_pace *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int cli_pace_stopped(struct cli_pace *p)
{
    int s;

    pthread_mutex_lock(&p->lock);
    s = p->stop;
    pthread_mutex_unlock(&p->lock);
    return s;
}

long cli_backoff_ms(int attempt, long base_ms, long max_ms, unsigned *seed)
{
    long d = base_ms;

    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    return d / 2 + (long)(rand_r(seed) % (unsigned)(d / 2 + 1));
}

long cli_pace_backoff(struct cli_pace *p, int attempt, long base_ms, long max_ms)
{
    unsigned seed;
    long d;

    if (!p) {
        seed = (unsigned)time(NULL) ^ (unsigned)attempt;
        return cli_backoff_ms(attempt, base_ms, max_ms, &seed);
    }
    pthread_mutex_lock(&p->lock);
    d = cli_backoff_ms(attempt, base_ms, max_ms, &p->seed);
    pthread_mutex_unlock(&p->lock);
    return d;
}
