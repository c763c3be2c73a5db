/* taskstore_sqlite.c - the local task store: one SQLite file
 * (UPLOAD_DIR/tasks.db) in WAL mode with synchronous=NORMAL, so a crash
 * (kill -9) loses at most the transaction being written and never corrupts
 * the file. One connection, opened once; every statement prepared once; a
 * mutex serialises the worker threads (each call is a few microseconds of
 * local I/O and finishes at once: nothing here waits on the network).
 *
 * Group commit: a put is copied into a pending list and written with the
 * others of the next FLUSH_MS (or at once when PENDING_MAX are waiting) in
 * one transaction, by the store's own thread. One commit per /generate cost
 * ~24 us of the request's CPU; a batch shares its page writes. Every other
 * call writes the pending puts first, so reads (get, list, count), keys
 * (claim, finish) and close always see every put made before them. What a
 * crash can lose: the records of the last FLUSH_MS (their keys' answers are
 * written at finish, after a flush, so a keyed request replays after a
 * crash as before); a failed batch is logged with its size. */
#include "err.h"
#include "log.h"
#include "taskstore.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum stmt_id {
    S_PUT,
    S_GET,
    S_LIST_FIRST,
    S_LIST_AFTER,
    S_IDEM_GET,
    S_IDEM_CLAIM,
    S_IDEM_FINISH,
    S_IDEM_RELEASE,
    S_IDEM_EXPIRE,
    S_COUNT_SINCE,
    S_COUNT_ONLY,
    S_SPENT_TOTAL,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    N_STMTS
};

static const char *const SQL[N_STMTS] = {
    [S_PUT] = "INSERT INTO tasks(id, created, credits, record) VALUES(?1, ?2, ?3, ?4) "
              "ON CONFLICT(id) DO UPDATE SET credits = excluded.credits, record = excluded.record",
    [S_GET] = "SELECT record FROM tasks WHERE id = ?1",
    [S_LIST_FIRST] = "SELECT rowid, record FROM tasks ORDER BY rowid DESC LIMIT ?1",
    [S_LIST_AFTER] = "SELECT rowid, record FROM tasks WHERE rowid < ?1 ORDER BY rowid DESC LIMIT ?2",
    [S_IDEM_GET] = "SELECT hash, state, at, status, answer FROM idem WHERE key = ?1",
    [S_IDEM_CLAIM] = "INSERT INTO idem(key, hash, state, at) VALUES(?1, ?2, 0, ?3) "
                     "ON CONFLICT(key) DO UPDATE SET hash = excluded.hash, state = 0, at = excluded.at, "
                     "status = NULL, answer = NULL, task_id = NULL",
    [S_IDEM_FINISH] = "UPDATE idem SET state = 1, status = ?3, answer = ?4, task_id = ?5 "
                      "WHERE key = ?1 AND hash = ?2 AND state = 0",
    [S_IDEM_RELEASE] = "DELETE FROM idem WHERE key = ?1 AND state = 0",
    [S_IDEM_EXPIRE] = "DELETE FROM idem WHERE at < ?1",
    [S_COUNT_SINCE] = "SELECT count(*), coalesce(sum(credits), 0) FROM tasks WHERE created >= ?1",
    [S_COUNT_ONLY] = "SELECT count(*) FROM tasks WHERE created >= ?1",
    [S_SPENT_TOTAL] = "SELECT coalesce(sum(credits), 0) FROM tasks",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS tasks("
    "  id TEXT PRIMARY KEY,"
    "  created INTEGER NOT NULL,"
    "  credits REAL,"
    "  record TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created);"
    "CREATE TABLE IF NOT EXISTS idem("
    "  key TEXT PRIMARY KEY,"
    "  hash TEXT NOT NULL,"
    "  state INTEGER NOT NULL," /* 0 pending, 1 done */
    "  at INTEGER NOT NULL,"
    "  status INTEGER,"
    "  answer TEXT,"
    "  task_id TEXT);"
    "CREATE INDEX IF NOT EXISTS idem_at ON idem(at);";

/* Checkpoints (copying the WAL back into the database, with an fsync) run
 * on a thread of their own with its own connection, once a second: done by
 * the writing connection (SQLite's autocheckpoint every 1000 pages) they
 * took ~65 us per put on average, under the lock every worker waits on. */
#define CHECKPOINT_INTERVAL_MS 1000
#define FLUSH_MS 2        /* a put waits at most this long to be written */
#define PENDING_MAX 64    /* ... or until this many wait */

struct pending_put {
    char id[129];
    time_t created;
    double credits;
    char *record;         /* owned */
};

struct sq {
    sqlite3 *db;
    sqlite3_stmt *st[N_STMTS];
    pthread_mutex_t lock;
    unsigned long claims; /* every so often, expired keys are dropped */
    sqlite3 *ckpt_db;     /* the checkpoint thread's connection */
    pthread_t ckpt_thread;
    int ckpt_running;
    pthread_mutex_t ckpt_lock;
    pthread_cond_t ckpt_wake;
    int ckpt_stop;        /* under ckpt_lock */
    int ckpt_dirty;       /* under ckpt_lock: puts are pending, flush within FLUSH_MS */
    struct pending_put pending[PENDING_MAX]; /* under lock */
    size_t n_pending;
};

static void run_reset(sqlite3_stmt *s);

/* Write the pending puts in one transaction (q->lock held). */
static void flush_locked(struct sq *q)
{
    size_t n = q->n_pending;
    int bad = 0;

    if (!n)
        return;
    if (sqlite3_step(q->st[S_BEGIN]) != SQLITE_DONE)
        bad = 1;
    run_reset(q->st[S_BEGIN]);
    for (size_t i = 0; i < n && !bad; i++) {
        struct pending_put *p = &q->pending[i];
        sqlite3_stmt *s = q->st[S_PUT];
        sqlite3_bind_text(s, 1, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)p->created);
        if (p->credits >= 0)
            sqlite3_bind_double(s, 3, p->credits);
        else
            sqlite3_bind_null(s, 3);
        sqlite3_bind_text(s, 4, p->record, -1, SQLITE_STATIC);
        bad = sqlite3_step(s) != SQLITE_DONE;
        run_reset(s);
    }
    if (!bad) {
        bad = sqlite3_step(q->st[S_COMMIT]) != SQLITE_DONE;
        run_reset(q->st[S_COMMIT]);
    }
    if (bad) {
        log_warn("task store: %zu task records could not be written: %s", n, sqlite3_errmsg(q->db));
        if (!sqlite3_get_autocommit(q->db)) {
            (void)sqlite3_step(q->st[S_ROLLBACK]);
            run_reset(q->st[S_ROLLBACK]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(q->pending[i].record);
        q->pending[i].record = NULL;
    }
    q->n_pending = 0;
}

static void flush(struct sq *q)
{
    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    pthread_mutex_unlock(&q->lock);
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The store's thread: pending puts within FLUSH_MS of the first, and a
 * checkpoint every CHECKPOINT_INTERVAL_MS. */
static void *checkpointer(void *arg)
{
    struct sq *q = arg;
    struct timespec until;
    long long next_ckpt = now_ms() + CHECKPOINT_INTERVAL_MS;

    pthread_mutex_lock(&q->ckpt_lock);
    while (!q->ckpt_stop) {
        long long now = now_ms();
        long long wait = q->ckpt_dirty ? FLUSH_MS : next_ckpt - now;
        if (wait > 0) {
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += (time_t)(wait / 1000);
            until.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            (void)pthread_cond_timedwait(&q->ckpt_wake, &q->ckpt_lock, &until);
        }
        if (q->ckpt_stop)
            break;
        if (q->ckpt_dirty) {
            q->ckpt_dirty = 0;
            pthread_mutex_unlock(&q->ckpt_lock);
            flush(q);
            pthread_mutex_lock(&q->ckpt_lock);
        }
        if (now_ms() >= next_ckpt) {
            pthread_mutex_unlock(&q->ckpt_lock);
            /* PASSIVE: copies what no reader still needs; never blocks the writer */
            (void)sqlite3_wal_checkpoint_v2(q->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            pthread_mutex_lock(&q->ckpt_lock);
            next_ckpt = now_ms() + CHECKPOINT_INTERVAL_MS;
        }
    }
    pthread_mutex_unlock(&q->ckpt_lock);
    return NULL;
}

static void fail(struct taskstore_op *op, sqlite3 *db, const char *what)
{
    op->result = ERR_IO;
    snprintf(op->error, sizeof op->error, "task store: %s: %s", what, sqlite3_errmsg(db));
    log_warn("%s", op->error);
}

/* Run a statement without rows (after binding); 0 or -1. */
static int run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void run_reset(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static void done_with(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static char *column_dup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    int n = sqlite3_column_bytes(s, col);
    char *out;

    if (!t)
        return NULL;
    out = malloc((size_t)n + 1);
    if (out) {
        memcpy(out, t, (size_t)n);
        out[n] = '\0';
    }
    return out;
}

static int sq_put(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    struct pending_put *p;
    char *copy = strdup(op->record ? op->record : "");
    int first;

    if (!copy) {
        snprintf(op->error, sizeof op->error, "task store: put: out of memory");
        return op->result = ERR_NOMEM;
    }
    pthread_mutex_lock(&q->lock);
    if (q->n_pending == PENDING_MAX)
        flush_locked(q);
    p = &q->pending[q->n_pending++];
    snprintf(p->id, sizeof p->id, "%s", op->id);
    p->created = op->created;
    p->credits = op->credits;
    p->record = copy;
    first = q->n_pending == 1;
    pthread_mutex_unlock(&q->lock);
    if (first && q->ckpt_running) {
        pthread_mutex_lock(&q->ckpt_lock);
        q->ckpt_dirty = 1;
        pthread_cond_signal(&q->ckpt_wake);
        pthread_mutex_unlock(&q->ckpt_lock);
    }
    return op->result = 0;
}

static int sq_get(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    sqlite3_stmt *s = q->st[S_GET];
    int rc;

    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    sqlite3_bind_text(s, 1, op->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        op->text = column_dup(s, 0);
        op->result = op->text ? 0 : ERR_NOMEM;
    } else if (rc == SQLITE_DONE) {
        op->result = ERR_NOT_FOUND;
    } else {
        fail(op, q->db, "get");
    }
    done_with(s);
    pthread_mutex_unlock(&q->lock);
    return op->result;
}

/* The cursor is the rowid of the last record of the previous page: records
 * are listed in the order they were first written (creation order). */
static int sq_list(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    sqlite3_stmt *s;
    int limit = op->limit < 1 ? 1 : op->limit > TASKSTORE_LIST_MAX ? TASKSTORE_LIST_MAX : op->limit;
    long long after = 0;
    long long last = 0;
    char *end = NULL;
    int rc;

    op->records = calloc((size_t)limit, sizeof *op->records);
    if (!op->records)
        return op->result = ERR_NOMEM;
    if (op->cursor[0]) {
        after = strtoll(op->cursor, &end, 10);
        if (!end || *end || after <= 0) {
            snprintf(op->error, sizeof op->error, "not a cursor from /tasks");
            return op->result = ERR_INVALID;
        }
    }
    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    s = op->cursor[0] ? q->st[S_LIST_AFTER] : q->st[S_LIST_FIRST];
    if (op->cursor[0]) {
        sqlite3_bind_int64(s, 1, after);
        sqlite3_bind_int(s, 2, limit + 1);
    } else {
        sqlite3_bind_int(s, 1, limit + 1);
    }
    op->result = 0;
    op->cursor[0] = '\0';
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (op->n_records == (size_t)limit) { /* one more exists: there is a next page */
            snprintf(op->cursor, sizeof op->cursor, "%lld", last);
            break;
        }
        last = sqlite3_column_int64(s, 0);
        op->records[op->n_records] = column_dup(s, 1);
        if (!op->records[op->n_records]) {
            op->result = ERR_NOMEM;
            break;
        }
        op->n_records++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        fail(op, q->db, "list");
    done_with(s);
    pthread_mutex_unlock(&q->lock);
    return op->result;
}

static int sq_claim(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    sqlite3_stmt *s = q->st[S_IDEM_GET];
    int take = 0;
    int rc;

    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    if (run(q->st[S_BEGIN])) {
        fail(op, q->db, "begin");
        goto unlock;
    }
    if (++q->claims % 256 == 1) {
        sqlite3_bind_int64(q->st[S_IDEM_EXPIRE], 1, (sqlite3_int64)(op->now - IDEMPOTENCY_TTL_SECONDS));
        (void)run(q->st[S_IDEM_EXPIRE]);
    }
    sqlite3_bind_text(s, 1, op->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        take = 1;
    } else if (rc == SQLITE_ROW) {
        const char *hash = (const char *)sqlite3_column_text(s, 0);
        int state = sqlite3_column_int(s, 1);
        time_t at = (time_t)sqlite3_column_int64(s, 2);
        int same = hash && strcmp(hash, op->hash) == 0;
        long age = (long)(op->now - at);

        if (state == 1 && age >= IDEMPOTENCY_TTL_SECONDS) {
            take = 1; /* expired */
        } else if (!same) {
            op->result = TS_MISMATCH;
        } else if (state == 1) {
            op->result = TS_REPLAY;
            op->answer_status = sqlite3_column_int(s, 3);
            op->text = column_dup(s, 4);
            if (!op->text)
                op->result = ERR_NOMEM;
        } else if (age >= IDEMPOTENCY_STALE_SECONDS) {
            take = 1; /* the request that claimed it never finished (crash) */
        } else {
            op->result = TS_BUSY;
        }
    } else {
        fail(op, q->db, "claim");
    }
    done_with(s);
    if (take) {
        sqlite3_stmt *c = q->st[S_IDEM_CLAIM];
        sqlite3_bind_text(c, 1, op->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(c, 2, op->hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(c, 3, (sqlite3_int64)op->now);
        if (run(c))
            fail(op, q->db, "claim");
        else
            op->result = TS_CLAIMED;
    }
    if (op->result == ERR_IO || op->result == ERR_NOMEM)
        (void)run(q->st[S_ROLLBACK]);
    else if (run(q->st[S_COMMIT]))
        fail(op, q->db, "commit");
unlock:
    pthread_mutex_unlock(&q->lock);
    return op->result;
}

static int sq_finish(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    sqlite3_stmt *s = q->st[S_IDEM_FINISH];

    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    sqlite3_bind_text(s, 1, op->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, op->hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, op->answer_status);
    sqlite3_bind_text(s, 4, op->answer ? op->answer : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, op->task_id, -1, SQLITE_STATIC);
    op->result = 0;
    if (run(s))
        fail(op, q->db, "finish");
    pthread_mutex_unlock(&q->lock);
    return op->result;
}

static int sq_release(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    sqlite3_stmt *s = q->st[S_IDEM_RELEASE];

    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    sqlite3_bind_text(s, 1, op->key, -1, SQLITE_STATIC);
    op->result = 0;
    if (run(s))
        fail(op, q->db, "release");
    pthread_mutex_unlock(&q->lock);
    return op->result;
}

/* count_only: the tasks_created index alone answers, no credits are summed. */
static int sq_count(struct taskstore *ts, struct taskstore_op *op)
{
    struct sq *q = ts->priv;
    sqlite3_stmt *s = q->st[op->count_only ? S_COUNT_ONLY : S_COUNT_SINCE];
    sqlite3_stmt *t = q->st[S_SPENT_TOTAL];

    pthread_mutex_lock(&q->lock);
    flush_locked(q);
    op->result = 0;
    if (op->count_only) {
        op->spent_since = 0;
        op->spent_total = 0;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)op->since);
    if (sqlite3_step(s) == SQLITE_ROW) {
        op->count = (long)sqlite3_column_int64(s, 0);
        if (!op->count_only)
            op->spent_since = sqlite3_column_double(s, 1);
    } else {
        fail(op, q->db, "count");
    }
    done_with(s);
    if (op->count_only)
        goto unlock;
    if (!op->result && sqlite3_step(t) == SQLITE_ROW)
        op->spent_total = sqlite3_column_double(t, 0);
    else if (!op->result)
        fail(op, q->db, "count");
    done_with(t);
unlock:
    pthread_mutex_unlock(&q->lock);
    return op->result;
}

static void sq_destroy(struct taskstore *ts)
{
    struct sq *q = ts->priv;

    if (q) {
        if (q->ckpt_running) {
            pthread_mutex_lock(&q->ckpt_lock);
            q->ckpt_stop = 1;
            pthread_cond_signal(&q->ckpt_wake);
            pthread_mutex_unlock(&q->ckpt_lock);
            pthread_join(q->ckpt_thread, NULL);
        }
        if (q->db && q->st[S_PUT])
            flush(q); /* the last puts, before the statements go */
        for (size_t i = 0; i < q->n_pending; i++)
            free(q->pending[i].record);
        for (int i = 0; i < N_STMTS; i++)
            sqlite3_finalize(q->st[i]);
        if (q->db && q->ckpt_running) /* what the last second wrote, back into the database */
            (void)sqlite3_wal_checkpoint_v2(q->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        sqlite3_close(q->db);
        sqlite3_close(q->ckpt_db);
        pthread_mutex_destroy(&q->lock);
        pthread_mutex_destroy(&q->ckpt_lock);
        pthread_cond_destroy(&q->ckpt_wake);
        free(q);
    }
    free(ts);
}

const struct taskstore_ops taskstore_sqlite_ops = {
    .name = "sqlite",
    .async = 0,
    .put = sq_put,
    .get = sq_get,
    .list = sq_list,
    .claim = sq_claim,
    .finish = sq_finish,
    .release = sq_release,
    .count = sq_count,
    .destroy = sq_destroy,
};

struct taskstore *taskstore_sqlite_open(const char *path, char *err, size_t cap)
{
    struct taskstore *ts = calloc(1, sizeof *ts);
    struct sq *q = calloc(1, sizeof *q);
    char *msg = NULL;

    if (!ts || !q) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    ts->ops = &taskstore_sqlite_ops;
    ts->priv = q;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->ckpt_lock, NULL);
    pthread_cond_init(&q->ckpt_wake, NULL);
    /* NOMUTEX: our own lock serialises the one connection */
    if (sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, cap, "cannot open the task store %s: %s", path, q->db ? sqlite3_errmsg(q->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(q->db, 2000);
    if (sqlite3_exec(q->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(q->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, cap, "cannot set up the task store %s: %s", path, msg ? msg : sqlite3_errmsg(q->db));
        sqlite3_free(msg);
        goto fail;
    }
    for (int i = 0; i < N_STMTS; i++)
        if (sqlite3_prepare_v3(q->db, SQL[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL) != SQLITE_OK) {
            snprintf(err, cap, "task store %s: %s", path, sqlite3_errmsg(q->db));
            goto fail;
        }
    if (sqlite3_open_v2(path, &q->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, cap, "cannot open the task store %s twice: %s", path,
                 q->ckpt_db ? sqlite3_errmsg(q->ckpt_db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(q->ckpt_db, 2000);
    if (pthread_create(&q->ckpt_thread, NULL, checkpointer, q) != 0) {
        snprintf(err, cap, "cannot start the task store's checkpoint thread");
        goto fail;
    }
    (void)pthread_setname_np(q->ckpt_thread, "ppa-checkpoint");
    q->ckpt_running = 1;
    return ts;
fail:
    if (ts && q)
        sq_destroy(ts);
    else {
        free(q);
        free(ts);
    }
    return NULL;
}
