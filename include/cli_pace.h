/* cli_pace.h - pacing shared by the jobs of one batch: KIE's createTask
 * limit as a bucket of `max` tokens, each given back `window_s` after the
 * answer to the request that took it, so no `window_s` window (on the
 * server's clock too: it cannot see a request before we send it, nor after we
 * have its answer) ever holds more than `max` creates; interruptible sleeps;
 * and the stop flag Ctrl-C sets. Every function is thread-safe. */
#ifndef PPA_CLI_PACE_H
#define PPA_CLI_PACE_H

#include <pthread.h>

struct cli_pace {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a token came back, or stop */
    int stop;
    int max;
    double window_s;
    double *free_at; /* per token: monotonic time it is usable again; -1 while its request is in flight */
    double *taken;   /* ring of the wall-clock times (unix s) of the last `max` takes */
    int n_taken, head;
    unsigned seed;   /* jitter */
    void (*on_take)(void *arg); /* after each take, without the pace's lock held (the batch saves it); or NULL */
    void *arg;
};

/* 0, or -1 out of memory. */
int cli_pace_init(struct cli_pace *p, int max, double window_s);
/* Safe on a zeroed struct that was never initialised. */
void cli_pace_free(struct cli_pace *p);

/* Wait for a token. Its index, or -1 when stopped (nothing taken). */
int cli_pace_take(struct cli_pace *p);
/* The answer to the token's request came (or it failed): the token is usable
 * again window_s from now. */
void cli_pace_give(struct cli_pace *p, int token);

/* The wall-clock times of the last takes (at most max, oldest first) into
 * out[cap]; their number. */
int cli_pace_recent(struct cli_pace *p, double *out, int cap);
/* Count the takes an earlier process made at wall-clock times walls[0..n)
 * (it was killed: their answers' times are unknown, so each counts until
 * window_s + margin_s after it was taken). Call before any take. */
void cli_pace_prime(struct cli_pace *p, const double *walls, int n, double margin_s);

/* Sleep ms unless stopped first. 1 when stopped, else 0. */
int cli_pace_sleep(struct cli_pace *p, long ms);
void cli_pace_stop(struct cli_pace *p);
int cli_pace_stopped(struct cli_pace *p);

/* The wait before retry `attempt` (1, 2, ...): base_ms * 2^(attempt-1), at
 * most max_ms, with "equal jitter" (half fixed, half random) from *seed. */
long cli_backoff_ms(int attempt, long base_ms, long max_ms, unsigned *seed);
/* cli_backoff_ms with the pace's seed (under its lock); p may be NULL. */
long cli_pace_backoff(struct cli_pace *p, int attempt, long base_ms, long max_ms);

#endif
