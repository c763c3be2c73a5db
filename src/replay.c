/* replay.c - see replay.h. A fixed array scanned linearly: it holds only the
 * signed callbacks of the last few minutes, so a scan is cheap. */
#include "replay.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLAY_KEY_MAX 201

struct replay_entry {
    char key[REPLAY_KEY_MAX];
    time_t until; /* 0: free */
};

struct replay {
    pthread_mutex_t lock;
    struct replay_entry *e;
    size_t cap;
    long window;
};

struct replay *replay_new(size_t capacity, long window)
{
    struct replay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->e = calloc(capacity ? capacity : 1, sizeof *r->e);
    if (!r->e) {
        free(r);
        return NULL;
    }
    r->cap = capacity ? capacity : 1;
    r->window = window;
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void replay_free(struct replay *r)
{
    if (!r)
        return;
    free(r->e);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

enum replay_verdict replay_check(struct replay *r, const char *key, time_t ts, time_t now)
{
    struct replay_entry *free_slot = NULL;
    enum replay_verdict v = REPLAY_FULL;

    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->cap; i++) {
        struct replay_entry *e = &r->e[i];
        if (e->until && e->until < now)
            e->until = 0; /* expired: its timestamp is refused anyway now */
        if (!e->until) {
            if (!free_slot)
                free_slot = e;
            continue;
        }
        if (strncmp(e->key, key, sizeof e->key - 1) == 0) {
            v = REPLAY_SEEN;
            goto out;
        }
    }
    if (free_slot) {
        snprintf(free_slot->key, sizeof free_slot->key, "%s", key);
        free_slot->until = (ts > now ? ts : now) + r->window;
        v = REPLAY_FRESH;
    }
out:
    pthread_mutex_unlock(&r->lock);
    return v;
}
