/* results.h - keeping KIE's result images: KIE's result URLs expire (24 h to
 * 14 days), so a finished result can be copied once into our storage as
 * "results/<task id>.<ext>" and served from there. The copy runs on the
 * upstream I/O thread and never blocks an HTTP worker. */
#ifndef PPA_RESULTS_H
#define PPA_RESULTS_H

#include <stddef.h>

struct app;
struct cJSON;

struct keep_outcome {
    int ok;
    char stable_name[200]; /* "results/<id>.png" when ok */
    unsigned status;       /* error: HTTP status to answer */
    char code[48];
    char message[800];
};

/* Fill `o` as a failure: the HTTP status, error code and message to answer. */
void keep_outcome_fail(struct keep_outcome *o, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copy `result_url` for `task_id`. `done` runs exactly once (on the I/O
 * thread, or at once on an early failure). The task cache is updated. */
void results_keep(struct app *app, const char *task_id, const char *result_url,
                  void (*done)(const struct keep_outcome *o, void *arg), void *arg);

/* The first resultUrls entry of a recordInfo/callback `data`, or NULL. */
const char *results_first_url(struct cJSON *data);

/* For a finished task seen in `answer` (a recordInfo-shaped object):
 * remember it in the task cache, start the copy when keep_result asked for
 * it, and add data.stable_url when our copy exists. Thread-safe. */
void results_note_answer(struct app *app, struct cJSON *answer);

/* Our kept copy of task_id, made before: the task cache's, or (local
 * storage) a results/<id>.<png|jpg|webp> of an earlier run, then noted in
 * the cache. 1 with its storage name in out, else 0. */
int results_find_kept(struct app *app, const char *task_id, char *out, size_t cap);

/* How long downloading a result may take: 120 s, or on Lambda
 * KIE_TIMEOUT_SECONDS (every upstream deadline stays below API Gateway's). */
struct config;
long results_timeout_ms(const struct config *cfg);

/* Our stable URL of task_id's kept result, signed (resultsig.h) for
 * RESULTS_URL_TTL_HOURS: "<public base>/results/<id>?exp=..&sig=..". */
void results_stable_url(struct app *app, const char *task_id, char *out, size_t cap);

#endif
