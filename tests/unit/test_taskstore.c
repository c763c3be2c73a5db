/* test_taskstore.c - the local task store (SQLite): records, newest-first
 * pagination, Idempotency-Key claims (replay, mismatch, busy, stale, expired,
 * release), counts and credits, and that it all survives reopening. */
#include "err.h"
#include "taskstore.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int put(struct taskstore *ts, const char *id, time_t created, double credits, const char *rec)
{
    struct taskstore_op op;
    memset(&op, 0, sizeof op);
    snprintf(op.id, sizeof op.id, "%s", id);
    op.created = created;
    op.credits = credits;
    op.record = rec;
    return ts->ops->put(ts, &op);
}

static int claim(struct taskstore *ts, const char *key, const char *hash, time_t now, struct taskstore_op *op)
{
    memset(op, 0, sizeof *op);
    snprintf(op->key, sizeof op->key, "%s", key);
    snprintf(op->hash, sizeof op->hash, "%s", hash);
    op->now = now;
    ts->ops->claim(ts, op);
    return op->result;
}

int main(void)
{
    char dir[] = "/tmp/ppa-taskstore-XXXXXX";
    char path[256];
    char err[256] = "";
    struct taskstore *ts;
    struct taskstore_op op;
    char id[32];
    char rec[64];
    time_t t0 = 1764583200; /* 2025-12-01T10:00:00Z */
    char seen[8][32];
    int n_seen = 0;

    TEST_ASSERT(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/tasks.db", dir);
    ts = taskstore_sqlite_open(path, err, sizeof err);
    TEST_ASSERT(ts != NULL, "open: %s", err);
    if (!ts)
        return test_report();
    TEST_ASSERT(!ts->ops->async && strcmp(ts->ops->name, "sqlite") == 0, "sqlite finishes at once");

    /* records */
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof id, "task_%d", i);
        snprintf(rec, sizeof rec, "{\"id\":\"%s\",\"n\":%d}", id, i);
        TEST_ASSERT(put(ts, id, t0 + i, i == 4 ? -1 : i + 1.5, rec) == 0, "put %d", i);
    }
    memset(&op, 0, sizeof op);
    snprintf(op.id, sizeof op.id, "task_2");
    TEST_ASSERT(ts->ops->get(ts, &op) == 0 && op.text && strcmp(op.text, "{\"id\":\"task_2\",\"n\":2}") == 0,
                "get: %s", op.text ? op.text : "(null)");
    taskstore_op_clear(&op);
    TEST_ASSERT(op.text == NULL, "clear");
    /* an update keeps the task's place in the list */
    TEST_ASSERT(put(ts, "task_1", t0 + 1, 2.5, "{\"id\":\"task_1\",\"n\":\"updated\"}") == 0, "update");
    memset(&op, 0, sizeof op);
    snprintf(op.id, sizeof op.id, "task_nope");
    TEST_ASSERT(ts->ops->get(ts, &op) == ERR_NOT_FOUND, "unknown id");

    /* newest first, 2 per page */
    memset(&op, 0, sizeof op);
    for (int page = 0; page < 4; page++) {
        op.limit = 2;
        TEST_ASSERT(ts->ops->list(ts, &op) == 0, "list page %d", page);
        for (size_t i = 0; i < op.n_records && n_seen < 8; i++) {
            const char *p = strstr(op.records[i], "task_");
            snprintf(seen[n_seen++], sizeof seen[0], "%.6s", p ? p : "?");
        }
        taskstore_op_clear(&op);
        if (!op.cursor[0])
            break;
    }
    TEST_ASSERT(n_seen == 5 && strcmp(seen[0], "task_4") == 0 && strcmp(seen[1], "task_3") == 0 &&
                    strcmp(seen[3], "task_1") == 0 && strcmp(seen[4], "task_0") == 0,
                "order: %d %s %s %s", n_seen, seen[0], seen[1], n_seen > 4 ? seen[4] : "");
    memset(&op, 0, sizeof op);
    op.limit = 5;
    snprintf(op.cursor, sizeof op.cursor, "x1");
    TEST_ASSERT(ts->ops->list(ts, &op) == ERR_INVALID, "bad cursor");
    taskstore_op_clear(&op);
    memset(&op, 0, sizeof op);
    op.limit = 5;
    TEST_ASSERT(ts->ops->list(ts, &op) == 0 && op.n_records == 5 && op.cursor[0] == '\0', "exact page: no next");
    taskstore_op_clear(&op);

    /* counts: since t0+2 -> tasks 2, 3, 4; credits 3.5 + 4.5 (task 4 unknown) */
    memset(&op, 0, sizeof op);
    op.since = t0 + 2;
    TEST_ASSERT(ts->ops->count(ts, &op) == 0 && op.count == 3 && op.spent_since == 8.0 && op.spent_total == 12.0,
                "count %ld spent %g total %g", op.count, op.spent_since, op.spent_total);
    /* count_only (the daily cap): the same count, no sums (set to 0 even over stale values) */
    memset(&op, 0, sizeof op);
    op.since = t0 + 2;
    op.count_only = 1;
    op.spent_since = op.spent_total = -1;
    TEST_ASSERT(ts->ops->count(ts, &op) == 0 && op.count == 3 && op.spent_since == 0 && op.spent_total == 0,
                "count_only %ld spent %g total %g", op.count, op.spent_since, op.spent_total);
    memset(&op, 0, sizeof op);
    op.since = t0 + 5;
    op.count_only = 1;
    TEST_ASSERT(ts->ops->count(ts, &op) == 0 && op.count == 0, "count_only after the last task: %ld", op.count);

    /* idempotency keys */
    TEST_ASSERT(claim(ts, "k1", "h1", t0, &op) == TS_CLAIMED, "first claim");
    TEST_ASSERT(claim(ts, "k1", "h1", t0 + 1, &op) == TS_BUSY, "same request, still running");
    TEST_ASSERT(claim(ts, "k1", "h2", t0 + 1, &op) == TS_MISMATCH, "other body while running");
    memset(&op, 0, sizeof op);
    snprintf(op.key, sizeof op.key, "k1");
    snprintf(op.hash, sizeof op.hash, "h1");
    snprintf(op.task_id, sizeof op.task_id, "task_9");
    op.answer = "{\"code\":200,\"data\":{\"taskId\":\"task_9\"}}";
    op.answer_status = 200;
    TEST_ASSERT(ts->ops->finish(ts, &op) == 0, "finish");
    TEST_ASSERT(claim(ts, "k1", "h1", t0 + 5, &op) == TS_REPLAY && op.answer_status == 200 && op.text &&
                    strcmp(op.text, "{\"code\":200,\"data\":{\"taskId\":\"task_9\"}}") == 0,
                "replay: %d %s", op.result, op.text ? op.text : "");
    taskstore_op_clear(&op);
    TEST_ASSERT(claim(ts, "k1", "h2", t0 + 5, &op) == TS_MISMATCH, "other body after");
    TEST_ASSERT(claim(ts, "k1", "h2", t0 + IDEMPOTENCY_TTL_SECONDS, &op) == TS_CLAIMED, "expired after 24 h");
    /* release: a retry may claim again */
    TEST_ASSERT(claim(ts, "k2", "h1", t0, &op) == TS_CLAIMED, "claim k2");
    memset(&op, 0, sizeof op);
    snprintf(op.key, sizeof op.key, "k2");
    TEST_ASSERT(ts->ops->release(ts, &op) == 0, "release");
    TEST_ASSERT(claim(ts, "k2", "h1", t0 + 1, &op) == TS_CLAIMED, "claim after release");
    /* a claim whose request died is taken over once stale */
    TEST_ASSERT(claim(ts, "k2", "h1", t0 + IDEMPOTENCY_STALE_SECONDS - 1, &op) == TS_BUSY &&
                    claim(ts, "k2", "h1", t0 + 1 + IDEMPOTENCY_STALE_SECONDS, &op) == TS_CLAIMED, "stale claim taken over");
    /* finished keys are not released */
    memset(&op, 0, sizeof op);
    snprintf(op.key, sizeof op.key, "k1");
    snprintf(op.hash, sizeof op.hash, "h2");
    op.answer = "{}";
    op.answer_status = 200;
    ts->ops->finish(ts, &op);
    memset(&op, 0, sizeof op);
    snprintf(op.key, sizeof op.key, "k1");
    ts->ops->release(ts, &op);
    TEST_ASSERT(claim(ts, "k1", "h2", t0 + IDEMPOTENCY_TTL_SECONDS + 1, &op) == TS_REPLAY, "finished key kept");
    taskstore_op_clear(&op);

    /* reopen: everything is still there */
    taskstore_close(ts);
    ts = taskstore_sqlite_open(path, err, sizeof err);
    TEST_ASSERT(ts != NULL, "reopen: %s", err);
    if (ts) {
        memset(&op, 0, sizeof op);
        snprintf(op.id, sizeof op.id, "task_1");
        TEST_ASSERT(ts->ops->get(ts, &op) == 0 && strstr(op.text, "updated"), "record after reopen");
        taskstore_op_clear(&op);
        TEST_ASSERT(claim(ts, "k1", "h2", t0 + IDEMPOTENCY_TTL_SECONDS + 2, &op) == TS_REPLAY, "key after reopen");
        taskstore_op_clear(&op);
        taskstore_close(ts);
    }
    /* group commit: puts are written later in batches, yet every read sees them at once, and close writes
     * what is still waiting (more than one batch of puts, read back without waiting) */
    ts = taskstore_sqlite_open(path, err, sizeof err);
    TEST_ASSERT(ts != NULL, "reopen for group commit: %s", err);
    if (ts) {
        int bad = 0;
        for (int i = 0; i < 150; i++) {
            snprintf(id, sizeof id, "gc_%03d", i);
            snprintf(rec, sizeof rec, "{\"id\":\"gc_%03d\"}", i);
            bad += put(ts, id, t0 + 5000 + i, 1, rec) != 0;
        }
        TEST_ASSERT(bad == 0, "150 puts");
        memset(&op, 0, sizeof op);
        snprintf(op.id, sizeof op.id, "gc_149");
        TEST_ASSERT(ts->ops->get(ts, &op) == 0 && strstr(op.text, "gc_149"), "the last put is read at once");
        taskstore_op_clear(&op);
        memset(&op, 0, sizeof op);
        op.since = t0 + 5000;
        TEST_ASSERT(ts->ops->count(ts, &op) == 0 && op.count == 150 && op.spent_since == 150,
                    "count sees every put: %ld, %.0f", op.count, op.spent_since);
        for (int i = 0; i < 3; i++) {
            snprintf(id, sizeof id, "gc_late_%d", i);
            TEST_ASSERT(put(ts, id, t0 + 6000, -1, "{\"late\":true}") == 0, "late put %d", i);
        }
        taskstore_close(ts); /* at once: the flusher has not run yet */
        ts = taskstore_sqlite_open(path, err, sizeof err);
        TEST_ASSERT(ts != NULL, "reopen after close: %s", err);
        for (int i = 0; ts && i < 3; i++) {
            memset(&op, 0, sizeof op);
            snprintf(op.id, sizeof op.id, "gc_late_%d", i);
            TEST_ASSERT(ts->ops->get(ts, &op) == 0, "close wrote the waiting put %d", i);
            taskstore_op_clear(&op);
        }
        if (ts)
            taskstore_close(ts);
    }
    /* a store that cannot be opened says why */
    ts = taskstore_sqlite_open("/nonexistent-dir/tasks.db", err, sizeof err);
    TEST_ASSERT(ts == NULL && strstr(err, "/nonexistent-dir/tasks.db"), "open error: %s", err);

    TEST_ASSERT(taskstore_key_valid("a") && taskstore_key_valid("order 17/photo-3") &&
                    !taskstore_key_valid("") && !taskstore_key_valid(" a") && !taskstore_key_valid("a\tb") &&
                    !taskstore_key_valid("\xc3\xa9"),
                "key validity");
    {
        char big[300];
        memset(big, 'x', sizeof big);
        big[255] = '\0';
        TEST_ASSERT(taskstore_key_valid(big), "255 chars");
        big[255] = 'x';
        big[256] = '\0';
        TEST_ASSERT(!taskstore_key_valid(big), "256 chars");
    }
    snprintf(path, sizeof path, "%s/tasks.db", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tasks.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tasks.db-shm", dir);
    unlink(path);
    rmdir(dir);
    return test_report();
}
