/* imagepool.h - a bounded pool of worker threads for CPU work (the image
 * pipeline), so decoding never runs on the HTTP threads that answer /healthz,
 * /status or /files. A fixed number of threads and a bounded queue: when the
 * queue is full, submit refuses at once and the caller answers 503 with
 * Retry-After. Jobs are intrusive (the caller owns the struct, typically in its
 * request state), so submitting allocates nothing. */
#ifndef PPA_IMAGEPOOL_H
#define PPA_IMAGEPOOL_H

struct imagepool;

struct imagepool_job {
    void (*run)(struct imagepool_job *job); /* on a worker thread; exactly once */
    struct imagepool_job *next;             /* private */
};

/* `workers` threads (>= 1), at most `queue_cap` jobs waiting (>= 0; running
 * jobs do not count). `thread_done` (may be NULL) runs on each worker before it
 * exits. NULL on failure. */
struct imagepool *imagepool_new(int workers, int queue_cap, void (*thread_done)(void));
/* Two steps, so a caller can suspend its connection between them: reserve a
 * place (0, ERR_TOO_LARGE when the queue is full, ERR_INVALID when stopping),
 * then queue the job into it (cannot fail). Thread-safe. */
__attribute__((warn_unused_result)) int imagepool_reserve(struct imagepool *p);
void imagepool_submit(struct imagepool *p, struct imagepool_job *job);
/* Jobs waiting and running now; for /healthz and Retry-After. */
void imagepool_load(struct imagepool *p, long *queued, long *running);
/* Seconds a new job would wait, from the queue and the mean job time. */
long imagepool_retry_after(struct imagepool *p);
int imagepool_workers(const struct imagepool *p);
/* Run every job already queued, then join the threads and free. */
void imagepool_free(struct imagepool *p);

#endif
