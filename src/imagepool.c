/* imagepool.c - see imagepool.h. One mutex and one condition variable: the
 * queue is short and jobs are long (tens to hundreds of ms), so contention is
 * not a concern. */
#include "imagepool.h"
#include "err.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct imagepool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct imagepool_job *head, *tail;
    long queued, running;
    int queue_cap;
    int stopping;
    int nthreads;
    double mean_ms; /* moving average of job time */
    void (*thread_done)(void);
    pthread_t *threads;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *worker(void *arg)
{
    struct imagepool *p = arg;

    for (;;) {
        struct imagepool_job *job;
        double t0;

        pthread_mutex_lock(&p->lock);
        while (!p->head && !(p->stopping && p->queued == 0))
            pthread_cond_wait(&p->wake, &p->lock);
        job = p->head;
        if (!job) { /* stopping and drained */
            pthread_mutex_unlock(&p->lock);
            break;
        }
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->lock);

        t0 = now_ms();
        job->run(job); /* may free job: not touched after this */
        t0 = now_ms() - t0;

        pthread_mutex_lock(&p->lock);
        p->running--;
        p->mean_ms = p->mean_ms <= 0 ? t0 : 0.8 * p->mean_ms + 0.2 * t0;
        pthread_mutex_unlock(&p->lock);
    }
    if (p->thread_done)
        p->thread_done();
    return NULL;
}

struct imagepool *imagepool_new(int workers, int queue_cap, void (*thread_done)(void))
{
    struct imagepool *p;

    if (workers < 1 || queue_cap < 0)
        return NULL;
    p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->threads = calloc((size_t)workers, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->queue_cap = queue_cap;
    p->thread_done = thread_done;
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker, p) != 0)
            break;
        (void)pthread_setname_np(p->threads[i], "ppa-image"); /* top -H, /proc/PID/task/TID/comm, the bench */
        p->nthreads++;
    }
    if (p->nthreads != workers) {
        imagepool_free(p);
        return NULL;
    }
    return p;
}

int imagepool_reserve(struct imagepool *p)
{
    int rc = 0;

    pthread_mutex_lock(&p->lock);
    if (p->stopping)
        rc = ERR_INVALID;
    else if (p->queued >= p->queue_cap && p->running + p->queued >= p->nthreads)
        rc = ERR_TOO_LARGE; /* every worker busy and the queue full */
    else
        p->queued++; /* the place is taken now; the job follows */
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void imagepool_submit(struct imagepool *p, struct imagepool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

void imagepool_load(struct imagepool *p, long *queued, long *running)
{
    pthread_mutex_lock(&p->lock);
    *queued = p->queued;
    *running = p->running;
    pthread_mutex_unlock(&p->lock);
}

long imagepool_retry_after(struct imagepool *p)
{
    double ms;
    long secs;

    pthread_mutex_lock(&p->lock);
    ms = (double)(p->queued + p->running) * (p->mean_ms > 0 ? p->mean_ms : 500.0) / p->nthreads;
    pthread_mutex_unlock(&p->lock);
    secs = (long)(ms / 1000.0) + 1;
    return secs > 60 ? 60 : secs;
}

int imagepool_workers(const struct imagepool *p)
{
    return p->nthreads;
}

void imagepool_free(struct imagepool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}
