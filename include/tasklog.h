/* tasklog.h - the records of this server's tasks, kept in the task store
 * (taskstore.h): written when createTask succeeds, updated from every
 * recordInfo answer and callback that changes a task's state, read by
 * GET /tasks. Also the KIE credit balance cache behind GET /credits and the
 * 402 check of POST /generate. Thread-safe; never blocks on the network. */
#ifndef PPA_TASKLOG_H
#define PPA_TASKLOG_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <time.h>

struct app;
struct generate_request;
struct taskstore;
struct taskstore_op;

/* The record of a task createTask just accepted: a JSON text (malloc'd). */
char *tasklog_new_record(const struct generate_request *g, const char *const *sent_urls, const char *task_id,
                         const char *idempotency_key, const char *request_hash, time_t now);

/* A recordInfo-shaped answer for one of our tasks: when its state, results or
 * credits are new, update its record (in the background). */
void tasklog_note_answer(struct app *app, const cJSON *answer);

/* The queue record updates run through, one at a time (app->updates). */
struct tasklog_queue;
struct tasklog_queue *tasklog_queue_new(void);
void tasklog_queue_free(struct tasklog_queue *q);

/* Our stable copy of the task's result exists now. */
void tasklog_note_stable(struct app *app, const char *task_id, const char *stable_url);

/* Run a store operation nobody waits for: `op` (malloc'd) is freed when done. */
void tasklog_detached(struct app *app, int (*fn)(struct taskstore *, struct taskstore_op *), struct taskstore_op *op);

/* KIE's published price of one image, in credits ("1K", "2K"). */
double tasklog_list_price(const char *resolution);

/* The credit balance cache (GET /api/v1/chat/credit). */
#define CREDITS_CACHE_SECONDS 30
struct credits_cache;
struct credits_cache *credits_cache_new(void);
void credits_cache_free(struct credits_cache *c);
/* 1 and *balance when a balance no older than max_age seconds is known. */
int credits_cache_get(struct credits_cache *c, time_t now, long max_age, double *balance, time_t *checked);
void credits_cache_set(struct credits_cache *c, double balance, time_t now);
/* Spend `credits` from a known balance (a task reported what it cost). */
void credits_cache_spend(struct credits_cache *c, double credits);

/* Midnight UTC at the start of now's day. */
time_t tasklog_day_start(time_t now);

#endif
