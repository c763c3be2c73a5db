/* taskcache.c - see taskcache.h. A fixed array with bounded linear probing. */
#include "taskcache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    char id[129];
    char *final_json;
    char stable[200];
    int keep;
    int copying;
    time_t created; /* by this server; 0 = unknown */
    char fp[72];    /* taskcache_changed */
    unsigned long long touched;
};

struct taskcache {
    pthread_mutex_t lock;
    struct entry *e;
    size_t cap;
    unsigned long long clock;
    size_t bytes; /* of all final_json: at most TASKCACHE_MAX_BYTES */
};

static void drop_final(struct taskcache *tc, struct entry *e)
{
    if (e->final_json) {
        tc->bytes -= strlen(e->final_json) + 1;
        free(e->final_json);
        e->final_json = NULL;
    }
}

struct taskcache *taskcache_new(size_t capacity)
{
    struct taskcache *tc = calloc(1, sizeof *tc);
    if (!tc)
        return NULL;
    tc->e = calloc(capacity, sizeof *tc->e);
    if (!tc->e) {
        free(tc);
        return NULL;
    }
    tc->cap = capacity;
    pthread_mutex_init(&tc->lock, NULL);
    return tc;
}

void taskcache_free(struct taskcache *tc)
{
    if (!tc)
        return;
    for (size_t i = 0; i < tc->cap; i++)
        drop_final(tc, &tc->e[i]);
    free(tc->e);
    pthread_mutex_destroy(&tc->lock);
    free(tc);
}

/* Find or (create) the entry; lock held. NULL only when !create and absent.
 * An id lives in one of PROBE slots after its hash, so a lookup looks at
 * PROBE entries whatever the capacity; when all are taken, the least
 * recently touched of them is forgotten. */
#define PROBE 16

static size_t hash_id(const char *s)
{
    size_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct entry *lookup(struct taskcache *tc, const char *id, int create)
{
    struct entry *oldest = NULL;
    size_t start = hash_id(id);

    for (size_t i = 0; i < PROBE && i < tc->cap; i++) {
        struct entry *e = &tc->e[(start + i) % tc->cap];
        if (e->id[0] && strcmp(e->id, id) == 0) {
            e->touched = ++tc->clock;
            return e;
        }
        if (!oldest || e->touched < oldest->touched)
            oldest = e;
    }
    if (!create || strlen(id) >= sizeof oldest->id)
        return NULL;
    drop_final(tc, oldest);
    memset(oldest, 0, sizeof *oldest);
    snprintf(oldest->id, sizeof oldest->id, "%s", id);
    oldest->touched = ++tc->clock;
    return oldest;
}

int taskcache_put_final(struct taskcache *tc, const char *task_id, const char *json_text)
{
    struct entry *e;
    size_t len = strlen(json_text) + 1;
    char *copy;
    int stored = 0;

    if (len > TASKCACHE_MAX_ENTRY_BYTES)
        return 0; /* not cached: /status asks KIE each time, as for any task not in memory */
    copy = strdup(json_text);
    if (!copy)
        return 0;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 1);
    if (e && !e->final_json) { /* the first final answer wins */
        /* within the byte budget: forget the answers touched least recently */
        while (tc->bytes + len > TASKCACHE_MAX_BYTES) {
            struct entry *old = NULL;
            for (size_t k = 0; k < tc->cap; k++)
                if (tc->e[k].final_json && &tc->e[k] != e && (!old || tc->e[k].touched < old->touched))
                    old = &tc->e[k];
            if (!old)
                break;
            drop_final(tc, old);
        }
        e->final_json = copy;
        tc->bytes += len;
        copy = NULL;
        stored = 1;
    }
    pthread_mutex_unlock(&tc->lock);
    free(copy);
    return stored;
}

char *taskcache_get_final(struct taskcache *tc, const char *task_id)
{
    struct entry *e;
    char *copy = NULL;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 0);
    if (e && e->final_json)
        copy = strdup(e->final_json);
    pthread_mutex_unlock(&tc->lock);
    return copy;
}

void taskcache_set_keep(struct taskcache *tc, const char *task_id)
{
    struct entry *e;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 1);
    if (e)
        e->keep = 1;
    pthread_mutex_unlock(&tc->lock);
}

int taskcache_has_final(struct taskcache *tc, const char *task_id)
{
    struct entry *e;
    int has;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 0);
    has = e && e->final_json;
    pthread_mutex_unlock(&tc->lock);
    return has;
}

int taskcache_claim_copy(struct taskcache *tc, const char *task_id, int force)
{
    struct entry *e;
    int go = 0;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, force);
    if (e && (e->keep || force) && !e->stable[0] && !e->copying) {
        e->copying = 1;
        go = 1;
    }
    pthread_mutex_unlock(&tc->lock);
    return go;
}

void taskcache_copy_done(struct taskcache *tc, const char *task_id, const char *stable_name)
{
    struct entry *e;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, stable_name != NULL);
    if (e) {
        e->copying = 0;
        if (stable_name)
            snprintf(e->stable, sizeof e->stable, "%s", stable_name);
    }
    pthread_mutex_unlock(&tc->lock);
}

int taskcache_get_stable(struct taskcache *tc, const char *task_id, char *out, size_t cap)
{
    struct entry *e;
    int found = 0;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 0);
    if (e && e->stable[0]) {
        snprintf(out, cap, "%s", e->stable);
        found = 1;
    }
    pthread_mutex_unlock(&tc->lock);
    return found;
}

void taskcache_note_created(struct taskcache *tc, const char *task_id, time_t now)
{
    struct entry *e;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 1);
    if (e)
        e->created = now;
    pthread_mutex_unlock(&tc->lock);
}

int taskcache_created_within(struct taskcache *tc, const char *task_id, time_t now, long seconds)
{
    struct entry *e;
    int recent = 0;
    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 0);
    if (e && e->created && now >= e->created && now - e->created < seconds)
        recent = 1;
    pthread_mutex_unlock(&tc->lock);
    return recent;
}


size_t taskcache_bytes(struct taskcache *tc)
{
    size_t n;
    pthread_mutex_lock(&tc->lock);
    n = tc->bytes;
    pthread_mutex_unlock(&tc->lock);
    return n;
}

int taskcache_changed(struct taskcache *tc, const char *task_id, const char *fp)
{
    struct entry *e;
    int changed = 1;

    pthread_mutex_lock(&tc->lock);
    e = lookup(tc, task_id, 1);
    if (e) {
        changed = strncmp(e->fp, fp, sizeof e->fp - 1) != 0;
        snprintf(e->fp, sizeof e->fp, "%s", fp);
    }
    pthread_mutex_unlock(&tc->lock);
    return changed;
}
