/* taskstore.h - the tasks this server created, remembered across restarts:
 * one record per task, idempotency keys of POST /generate, and the counts
 * the spending cap needs. Two backends, chosen with the storage mode:
 *   local: SQLite, UPLOAD_DIR/tasks.db (WAL), every call finishes at once;
 *   s3:    one JSON object per task under S3_TASKS_PREFIX, calls run on the
 *          upstream I/O thread.
 *
 * Every operation is a struct taskstore_op the caller owns until it is done.
 * A call returns 0 or ERR_* when it finished at once (op->done is NOT
 * called), or TASKSTORE_PENDING, and then op->done runs exactly once, on an
 * upstream I/O thread (S3). Outputs are valid when the call returned or in done; release
 * them with taskstore_op_clear. A record is a JSON object (text); the store
 * keeps it as given and indexes id, created and credits.
 *
 * Record fields (see docs/openapi.json, TaskRecord): id, created_at,
 * updated_at, state, prompt, aspect_ratio, resolution, input_urls,
 * sent_input_urls, result_urls, stable_url, credits, cost_time, fail_code,
 * fail_message, idempotency_key, request_hash. */
#ifndef PPA_TASKSTORE_H
#define PPA_TASKSTORE_H

#include <stddef.h>
#include <time.h>

struct config;
struct upstream;
struct taskstore;

#define TASKSTORE_PENDING 1

/* Idempotency-Key outcomes of taskstore_claim (op->result). */
enum {
    TS_CLAIMED = 10, /* the caller owns the key: create the task, then finish or release */
    TS_REPLAY,       /* the key's stored answer is in op->text, its status in op->answer_status */
    TS_MISMATCH,     /* the key was used with another request body */
    TS_BUSY,         /* the same request is being created right now */
};

/* Idempotency keys are answered for this long after their first use. */
#define IDEMPOTENCY_TTL_SECONDS (24 * 3600)
/* A claim not finished within this long (a crash mid-request) may be taken over. */
#define IDEMPOTENCY_STALE_SECONDS 120

#define TASKSTORE_LIST_MAX 100

struct taskstore_op {
    /* --- in --- */
    char id[129];          /* get, put */
    const char *record;    /* put: the record's JSON text (not owned) */
    time_t created;        /* put: when the task was created (unix s) */
    long long created_ms;  /* put: the same in ms (orders tasks of one second; 0: unknown) */
    double credits;        /* put: credits the task consumed, < 0 unknown */
    int limit;             /* list: 1..TASKSTORE_LIST_MAX */
    char cursor[160];      /* list: "" = newest first page; out: the next page's cursor, "" = no more */
    char key[256];         /* claim, finish, release: the client's Idempotency-Key */
    char hash[65];         /* claim, finish: hex SHA-256 of the request body */
    int answer_status;     /* finish: HTTP status of the answer; claim/TS_REPLAY: the same */
    const char *answer;    /* finish: the answer's exact bytes (not owned) */
    char task_id[129];     /* finish: the task the answer created */
    time_t since;          /* count: start of the window (unix s) */
    int count_only;        /* count: 1 = fill only op->count, spent_since and spent_total are 0 (the S3
                              backend then does not list every credits marker; the daily cap needs no sums) */
    time_t now;            /* every op: the current time (set by the caller) */
    /* --- out --- */
    int result;            /* 0, ERR_NOT_FOUND, ERR_IO ..., or a TS_* for claim */
    char *text;            /* get: the record; claim/TS_REPLAY: the stored answer (malloc'd) */
    char **records;        /* list: n_records JSON texts, newest first (malloc'd) */
    size_t n_records;
    long count;            /* count: tasks created since `since` */
    double spent_since;    /* count: credits of those tasks */
    double spent_total;    /* count: credits of every task in the store */
    char error[256];       /* why, when result is an ERR_* */
    /* --- completion (PENDING only) --- */
    void (*done)(struct taskstore_op *op, void *arg);
    void *arg;
};

struct taskstore_ops {
    const char *name; /* "sqlite" or "s3" */
    int async;        /* calls may return TASKSTORE_PENDING (s3); 0: they always finish at once */
    /* Insert or replace the record of op->id. */
    int (*put)(struct taskstore *s, struct taskstore_op *op);
    /* op->text = the record of op->id, or ERR_NOT_FOUND. */
    int (*get)(struct taskstore *s, struct taskstore_op *op);
    /* op->records = up to op->limit records older than op->cursor. */
    int (*list)(struct taskstore *s, struct taskstore_op *op);
    /* Claim op->key for op->hash: op->result is a TS_* (or ERR_*). */
    int (*claim)(struct taskstore *s, struct taskstore_op *op);
    /* Store the answer of a claimed key (a success: replayed from now on). */
    int (*finish)(struct taskstore *s, struct taskstore_op *op);
    /* Give a claimed key up (the request failed: a retry may try again). */
    int (*release)(struct taskstore *s, struct taskstore_op *op);
    /* op->count / spent_since / spent_total (only op->count when op->count_only). */
    int (*count)(struct taskstore *s, struct taskstore_op *op);
    void (*destroy)(struct taskstore *s);
};

struct taskstore {
    const struct taskstore_ops *ops;
    void *priv;
};

extern const struct taskstore_ops taskstore_sqlite_ops;
extern const struct taskstore_ops taskstore_s3_ops;

/* The backend the configuration asks for. NULL with a message in err. */
struct taskstore *taskstore_open(const struct config *cfg, struct upstream *up, char *err, size_t cap);
void taskstore_close(struct taskstore *s);
struct taskstore *taskstore_sqlite_open(const char *path, char *err, size_t cap);
struct taskstore *taskstore_s3_open(const struct config *cfg, struct upstream *up, char *err, size_t cap);

/* Free an op's outputs (text, records) and zero them. */
void taskstore_op_clear(struct taskstore_op *op);

/* 1 when key is a valid Idempotency-Key: 1-255 printable ASCII (0x21-0x7e, and inner spaces). */
int taskstore_key_valid(const char *key);

#endif
