/* ratelimit.c - see ratelimit.h. */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 64
#define PROBE 8

struct slot {
    char key[KEY_MAX];
    double tokens;
    double last;
};

struct ratelimit {
    pthread_mutex_t lock;
    double rate;  /* tokens per second */
    double burst;
    struct slot slots[RATELIMIT_SLOTS];
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

struct ratelimit *ratelimit_new(long per_minute)
{
    struct ratelimit *rl;

    if (per_minute <= 0)
        return NULL;
    rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = (double)per_minute / 60.0;
    rl->burst = (double)per_minute;
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

long ratelimit_take(struct ratelimit *rl, const char *key, double now)
{
    struct slot *s = NULL;
    struct slot *oldest = NULL;
    uint32_t h;
    long wait = 0;

    if (!rl)
        return 0;
    h = hash(key);
    pthread_mutex_lock(&rl->lock);
    for (unsigned i = 0; i < PROBE; i++) {
        struct slot *c = &rl->slots[(h + i) % RATELIMIT_SLOTS];
        if (strncmp(c->key, key, KEY_MAX - 1) == 0 && c->key[0]) {
            s = c;
            break;
        }
        if (!oldest || c->last < oldest->last)
            oldest = c;
    }
    if (!s) {
        s = oldest;
        memset(s, 0, sizeof *s);
        strncpy(s->key, key, KEY_MAX - 1);
        s->tokens = rl->burst;
        s->last = now;
    }
    s->tokens += (now - s->last) * rl->rate;
    if (s->tokens > rl->burst)
        s->tokens = rl->burst;
    s->last = now;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
    } else {
        wait = (long)ceil((1.0 - s->tokens) / rl->rate);
        if (wait < 1)
            wait = 1;
    }
    pthread_mutex_unlock(&rl->lock);
    return wait;
}
