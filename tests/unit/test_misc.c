/* test_misc.c - buf at its cap, rate limiter buckets, retention sweeper. */
#include "buf.h"
#include "err.h"
#include "ratelimit.h"
#include "sweeper.h"
#include "taskcache.h"
#include "test.h"

#include <fcntl.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void touch(const char *dir, const char *name, time_t mtime)
{
    char path[512];
    struct timespec ts[2];
    int fd;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fd = open(path, O_CREAT | O_WRONLY, 0644);
    ts[0].tv_sec = ts[1].tv_sec = mtime;
    ts[0].tv_nsec = ts[1].tv_nsec = 0;
    futimens(fd, ts);
    close(fd);
}

static int exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(void)
{
    struct buf b;
    struct ratelimit *rl;
    char dir[] = "/tmp/ppa-sweep-XXXXXX";
    time_t now = time(NULL);
    char *taken;

    buf_init(&b, 8);
    TEST_ASSERT(buf_append(&b, "1234", 4) == 0, "append");
    TEST_ASSERT(buf_append(&b, "5678", 4) == 0, "append to cap");
    TEST_ASSERT(buf_append(&b, "9", 1) == ERR_TOO_LARGE, "past cap");
    TEST_STR_EQ(buf_str(&b), "12345678", "content unchanged after refusal");
    TEST_ASSERT(b.len == 8, "len");
    buf_reset(&b);
    TEST_ASSERT(buf_appendf(&b, "%d-%s", 42, "x") == 0, "appendf");
    TEST_STR_EQ(buf_str(&b), "42-x", "appendf text");
    TEST_ASSERT(buf_appendf(&b, "%s", "much too long for it") == ERR_TOO_LARGE, "appendf cap");
    taken = buf_take(&b);
    TEST_STR_EQ(taken, "42-x", "take");
    free(taken);
    TEST_STR_EQ(buf_str(&b), "", "empty after take");
    buf_free(&b);

    TEST_ASSERT(ratelimit_new(0) == NULL && ratelimit_take(NULL, "x", 0) == 0, "0 = no limit");
    rl = ratelimit_new(3);
    TEST_ASSERT(ratelimit_take(rl, "1.2.3.4", 100.0) == 0, "1");
    TEST_ASSERT(ratelimit_take(rl, "1.2.3.4", 100.0) == 0, "2");
    TEST_ASSERT(ratelimit_take(rl, "1.2.3.4", 100.0) == 0, "3");
    TEST_ASSERT(ratelimit_take(rl, "1.2.3.4", 100.0) == 20, "4th waits 20 s at 3/min");
    TEST_ASSERT(ratelimit_take(rl, "5.6.7.8", 100.0) == 0, "other client unaffected");
    TEST_ASSERT(ratelimit_take(rl, "1.2.3.4", 120.5) == 0, "refilled");
    for (int i = 0; i < 20000; i++) { /* many clients: bounded table, no crash */
        char ip[32];
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        (void)ratelimit_take(rl, ip, 200.0);
    }
    ratelimit_free(rl);

    {
        struct taskcache *tc = taskcache_new(64);
        char out[200];
        char *f;
        {
            /* bounded in bytes, not only in entries: 6000 answers of 60 KB (the hostile callbacks) stay within
             * TASKCACHE_MAX_BYTES, one over TASKCACHE_MAX_ENTRY_BYTES is not kept at all */
            struct taskcache *big = taskcache_new(4096);
            char *blob = malloc(60 * 1024);
            char *huge = malloc(TASKCACHE_MAX_ENTRY_BYTES + 1);
            memset(blob, 'x', 60 * 1024 - 1);
            blob[60 * 1024 - 1] = '\0';
            memset(huge, 'y', TASKCACHE_MAX_ENTRY_BYTES);
            huge[TASKCACHE_MAX_ENTRY_BYTES] = '\0';
            for (int i = 0; i < 6000; i++) {
                char id[32];
                snprintf(id, sizeof id, "task_big_%d", i);
                taskcache_put_final(big, id, blob);
                TEST_ASSERT(taskcache_bytes(big) <= TASKCACHE_MAX_BYTES, "over budget at %d: %zu", i,
                            taskcache_bytes(big));
            }
            f = taskcache_get_final(big, "task_big_5999");
            TEST_ASSERT(f != NULL && strlen(f) == 60 * 1024 - 1, "the newest is kept");
            free(f);
            TEST_ASSERT(taskcache_bytes(big) > TASKCACHE_MAX_BYTES - 2 * 60 * 1024, "the budget is used: %zu",
                        taskcache_bytes(big));
            taskcache_put_final(big, "task_huge", huge);
            TEST_ASSERT(taskcache_get_final(big, "task_huge") == NULL, "an answer over the entry cap is not cached");
            free(blob);
            free(huge);
            taskcache_free(big);
        }
        TEST_ASSERT(!taskcache_has_final(tc, "task_a"), "no final answer yet");
        taskcache_note_created(tc, "task_z", time(NULL));
        TEST_ASSERT(!taskcache_has_final(tc, "task_z"), "an entry without a final answer");
        taskcache_put_final(tc, "task_a", "{\"a\":1}");
        TEST_ASSERT(taskcache_has_final(tc, "task_a") && !taskcache_has_final(tc, "task_b"), "has_final");
        f = taskcache_get_final(tc, "task_a");
        TEST_STR_EQ(f, "{\"a\":1}", "final answer kept");
        free(f);
        TEST_ASSERT(taskcache_get_final(tc, "task_b") == NULL, "unknown task");
        TEST_ASSERT(taskcache_claim_copy(tc, "task_a", 0) == 0, "no copy without keep");
        taskcache_set_keep(tc, "task_a");
        TEST_ASSERT(taskcache_claim_copy(tc, "task_a", 0) == 1, "claim once");
        TEST_ASSERT(taskcache_claim_copy(tc, "task_a", 1) == 0, "not twice while copying");
        taskcache_copy_done(tc, "task_a", "results/task_a.png");
        TEST_ASSERT(taskcache_get_stable(tc, "task_a", out, sizeof out) && strcmp(out, "results/task_a.png") == 0,
                    "stable name");
        TEST_ASSERT(taskcache_claim_copy(tc, "task_a", 1) == 0, "no copy once kept");
        for (int i = 0; i < 5000; i++) { /* bounded: old entries are forgotten, nothing breaks */
            char id[32];
            snprintf(id, sizeof id, "task_%d", i);
            taskcache_put_final(tc, id, "{}");
        }
        f = taskcache_get_final(tc, "task_4999");
        TEST_ASSERT(f != NULL, "newest entry present");
        free(f);
        {
            int present = 0;
            for (int i = 0; i < 5000; i++) {
                char id[32];
                snprintf(id, sizeof id, "task_%d", i);
                f = taskcache_get_final(tc, id);
                present += f != NULL;
                free(f);
            }
            TEST_ASSERT(present <= 64 && present > 0, "at most capacity entries kept (%d)", present);
        }
        taskcache_free(tc);
    }

    TEST_ASSERT(mkdtemp(dir) != NULL, "tmpdir");
    touch(dir, "0f8fad5b-d9cb-469f-a165-70867728950e.png", now - 3 * 3600);
    touch(dir, "1f8fad5b-d9cb-469f-a165-70867728950e.jpg", now - 60);
    touch(dir, ".upload-abc123", now - 2 * 3600);
    touch(dir, ".upload-def456", now - 60);
    touch(dir, "keep-me.txt", now - 30 * 24 * 3600);
    TEST_ASSERT(sweeper_run(dir, 2 * 3600, now) == 2, "two removed");
    TEST_ASSERT(!exists(dir, "0f8fad5b-d9cb-469f-a165-70867728950e.png"), "old upload removed");
    TEST_ASSERT(exists(dir, "1f8fad5b-d9cb-469f-a165-70867728950e.jpg"), "young upload kept");
    TEST_ASSERT(!exists(dir, ".upload-abc123"), "stale spool removed");
    TEST_ASSERT(exists(dir, ".upload-def456"), "live spool kept");
    TEST_ASSERT(exists(dir, "keep-me.txt"), "foreign file never touched");
    TEST_ASSERT(sweeper_run("/nonexistent-dir-ppa", 1, now) < 0, "missing dir is an error");
    TEST_ASSERT(sweeper_run(dir, 0, now) == 0, "TTL 0 keeps every upload");
    TEST_ASSERT(exists(dir, "1f8fad5b-d9cb-469f-a165-70867728950e.jpg"), "kept with TTL 0");

    /* kept results: <dir>/results/<task id>.<png|jpg|webp> */
    TEST_ASSERT(sweeper_run_results(dir, 3600, now) < 0, "no results/ yet is an error");
    {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/results", dir);
        TEST_ASSERT(mkdir(sub, 0755) == 0, "mkdir results");
        touch(sub, "task_old.png", now - 50 * 3600);
        touch(sub, "task-old-2.webp", now - 50 * 3600);
        touch(sub, "task_young.jpg", now - 3600);
        touch(sub, "task_old.gif", now - 50 * 3600);
        touch(sub, "not a task.png", now - 50 * 3600);
        touch(sub, ".png", now - 50 * 3600);
        TEST_ASSERT(sweeper_run_results(dir, 48 * 3600, now) == 2, "two old results removed");
        TEST_ASSERT(!exists(sub, "task_old.png") && !exists(sub, "task-old-2.webp"), "old results removed");
        TEST_ASSERT(exists(sub, "task_young.jpg"), "young result kept");
        TEST_ASSERT(exists(sub, "task_old.gif") && exists(sub, "not a task.png") && exists(sub, ".png"),
                    "names the server does not produce are never touched");
        TEST_ASSERT(sweeper_run(dir, 1, now) >= 0 && exists(sub, "task_young.jpg"),
                    "the uploads sweep leaves results/ alone");
    }
    {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        (void)!system(cmd);
    }
    return test_report();
}
