/* test_cli_batch.c - the batch's building blocks without a server: the
 * createTask tokens (cli_pace.h), backoff, the manifest's round trip and
 * atomic save (cli_manifest.h), and which files a directory gives
 * (cli_photos.h). */
#include "cli_common.h"
#include "cli_manifest.h"
#include "cli_pace.h"
#include "cli_photos.h"
#include "test.h"

#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_pace_tokens(void)
{
    struct cli_pace p;
    int t[4];
    double t0;

    TEST_ASSERT(cli_pace_init(&p, 3, 0.3) == 0, "init");
    t0 = cli_now();
    for (int i = 0; i < 3; i++)
        t[i] = cli_pace_take(&p);
    TEST_ASSERT(cli_now() - t0 < 0.1, "3 tokens at once");
    TEST_ASSERT(t[0] != t[1] && t[1] != t[2] && t[0] != t[2], "distinct tokens");
    for (int i = 0; i < 3; i++)
        cli_pace_give(&p, t[i]);
    t0 = cli_now();
    t[3] = cli_pace_take(&p); /* the 4th: only window_s after the first answer */
    TEST_ASSERT(t[3] >= 0 && cli_now() - t0 >= 0.29, "4th waits the window: %.3f s", cli_now() - t0);
    cli_pace_give(&p, t[3]);
    {
        double recent[8];
        int n = cli_pace_recent(&p, recent, 8);
        TEST_ASSERT(n == 3 && recent[0] <= recent[1] && recent[1] <= recent[2], "recent: the last 3, in order (%d)",
                    n);
    }
    cli_pace_free(&p);
}

static void test_pace_prime(void)
{
    struct cli_pace p;
    double walls[2];
    double t0;

    TEST_ASSERT(cli_pace_init(&p, 2, 0.3) == 0, "init");
    walls[0] = walls[1] = cli_wall(); /* a killed run took both just now */
    cli_pace_prime(&p, walls, 2, 0.0);
    t0 = cli_now();
    cli_pace_give(&p, cli_pace_take(&p));
    TEST_ASSERT(cli_now() - t0 >= 0.25, "a primed token is busy for the window: %.3f s", cli_now() - t0);
    cli_pace_free(&p);
    TEST_ASSERT(cli_pace_init(&p, 2, 0.3) == 0, "init");
    walls[0] = walls[1] = cli_wall() - 60; /* long ago */
    cli_pace_prime(&p, walls, 2, 1.0);
    t0 = cli_now();
    cli_pace_take(&p);
    cli_pace_take(&p);
    TEST_ASSERT(cli_now() - t0 < 0.1, "old creates do not count");
    cli_pace_free(&p);
}

static void *test_stopper(void *arg)
{
    cli_sleep_ms(100);
    cli_pace_stop(arg);
    return NULL;
}

static void test_pace_stop(void)
{
    struct cli_pace p;
    pthread_t th;
    double t0;

    TEST_ASSERT(cli_pace_init(&p, 1, 60.0) == 0, "init");
    cli_pace_give(&p, cli_pace_take(&p)); /* the only token: busy for 60 s */
    pthread_create(&th, NULL, test_stopper, &p);
    t0 = cli_now();
    TEST_ASSERT(cli_pace_take(&p) == -1, "a stopped take gives no token");
    TEST_ASSERT(cli_now() - t0 < 2.0, "stop wakes the waiter");
    TEST_ASSERT(cli_pace_sleep(&p, 60000) == 1, "a sleep after stop returns at once, saying so");
    pthread_join(th, NULL);
    cli_pace_free(&p);
}

static void test_backoff(void)
{
    unsigned seed = 7;

    for (int a = 1; a <= 10; a++) {
        long want = 1000L << (a - 1 < 5 ? a - 1 : 5);
        long d = cli_backoff_ms(a, 1000, 30000, &seed);
        if (want > 30000)
            want = 30000;
        TEST_ASSERT(d >= want / 2 && d <= want, "attempt %d: %ld in [%ld, %ld]", a, d, want / 2, want);
    }
}

static void test_manifest(const char *dir)
{
    struct cli_manifest m, back;
    struct cli_entry *e;
    char err[256];
    char path[600];

    TEST_ASSERT(cli_manifest_load(dir, &m, err, sizeof err) == 0 && m.n == 0, "missing manifest: empty");
    e = cli_manifest_add(&m);
    snprintf(e->path, sizeof e->path, "/photos/a \"b\".jpg");
    snprintf(e->sha256, sizeof e->sha256, "%064d", 0);
    snprintf(e->key, sizeof e->key, "ppa-cli-1-x");
    snprintf(e->task, sizeof e->task, "task_1");
    snprintf(e->state, sizeof e->state, "failed");
    snprintf(e->error, sizeof e->error, "the generation failed: no product");
    snprintf(e->base, sizeof e->base, "a-2");
    e->attempt = 2;
    e->credits = 5;
    e = cli_manifest_add(&m);
    snprintf(e->path, sizeof e->path, "/photos/c.png");
    m.recent[0] = 1.5e9;
    m.n_recent = 1;
    TEST_ASSERT(cli_manifest_save(&m, err, sizeof err) == 0, "save: %s", err);
    TEST_ASSERT(cli_manifest_load(dir, &back, err, sizeof err) == 0 && back.n == 2, "load back");
    e = cli_manifest_find(&back, "/photos/a \"b\".jpg");
    TEST_ASSERT(e && strcmp(e->task, "task_1") == 0 && strcmp(e->state, "failed") == 0 && e->attempt == 2 &&
                    e->credits == 5 && strcmp(e->base, "a-2") == 0 && strstr(e->error, "no product"),
                "the entry's fields survive");
    e = cli_manifest_find(&back, "/photos/c.png");
    TEST_ASSERT(e && strcmp(e->state, "pending") == 0 && e->credits < 0 && !e->task[0], "defaults survive");
    TEST_ASSERT(back.n_recent == 1 && back.recent[0] == 1.5e9, "recent creates survive");
    snprintf(path, sizeof path, "%s/" CLI_MANIFEST_TMP "abcdef", dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/a.png.part-Zx81Qa", dir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/keep.part-of-it.png", dir);
    fclose(fopen(path, "w"));
    cli_manifest_sweep(dir);
    snprintf(path, sizeof path, "%s/a.png.part-Zx81Qa", dir);
    TEST_ASSERT(access(path, F_OK) != 0, "sweep: a half download goes");
    snprintf(path, sizeof path, "%s/keep.part-of-it.png", dir);
    TEST_ASSERT(access(path, F_OK) == 0, "sweep: other files stay");
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    TEST_ASSERT(access(path, F_OK) == 0, "sweep: the manifest stays");
    cli_manifest_free(&m);
    cli_manifest_free(&back);
    fclose(fopen(path, "w")); /* not JSON */
    TEST_ASSERT(cli_manifest_load(dir, &back, err, sizeof err) == -1 && strstr(err, "not a manifest"),
                "garbage is refused: %s", err);
}

static void touch(const char *dir, const char *name, const char *data)
{
    char path[600];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "wb");
    fputs(data, f);
    fclose(f);
}

static void test_photos(const char *dir)
{
    static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    struct cli_photo_list l;
    char sub[600], out[600], err[256];
    char *args[1];

    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    mkdir(sub, 0700);
    mkdir(out, 0700);
    touch(dir, "b.JPG", "x");
    touch(dir, "a b.webp", "x");
    touch(dir, ".hidden.png", "x");
    touch(dir, "notes.txt", "x");
    touch(dir, "noext", png);
    touch(sub, "deep.png", "x");
    touch(out, "result.png", "x");
    args[0] = (char *)dir;
    TEST_ASSERT(cli_photos_collect(args, 1, 0, out, &l, err, sizeof err) == 0 && l.n == 3, "one level: %zu",
                l.n);
    if (l.n == 3) {
        TEST_ASSERT(strstr(l.v[0].path, "/a b.webp") && strstr(l.v[1].path, "/b.JPG") && strstr(l.v[2].path, "/noext"),
                    "sorted by path, by extension or content");
        TEST_STR_EQ(l.v[0].stem, "a_b", "the stem made safe");
        TEST_STR_EQ(l.v[2].stem, "noext", "no extension");
    }
    cli_photos_free(&l);
    TEST_ASSERT(cli_photos_collect(args, 1, 1, out, &l, err, sizeof err) == 0 && l.n == 4,
                "recursive: sub/ but not out/ (%zu)", l.n);
    cli_photos_free(&l);
    args[0] = out;
    TEST_ASSERT(cli_photos_collect(args, 1, 0, out, &l, err, sizeof err) == -1 && strstr(err, "photo directories"),
                "the output directory itself: %s", err);
    args[0] = sub;
    TEST_ASSERT(cli_photos_collect(args, 1, 0, NULL, &l, err, sizeof err) == 0 && l.n == 1, "a directory alone");
    cli_photos_free(&l);
    TEST_ASSERT(cli_photo_ext_ok("x.HEIC") && cli_photo_ext_ok("x.tif") && !cli_photo_ext_ok("x.gif") &&
                    !cli_photo_ext_ok(".png"),
                "extensions");
}

static int test_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    char dir[] = "/tmp/ppa-test-cli-batch-XXXXXX";
    char photos[64];

    if (!mkdtemp(dir))
        return 1;
    test_pace_tokens();
    test_pace_prime();
    test_pace_stop();
    test_backoff();
    test_manifest(dir);
    snprintf(photos, sizeof photos, "%s/p", dir);
    mkdir(photos, 0700);
    test_photos(photos);
    nftw(dir, test_rm, 16, FTW_DEPTH | FTW_PHYS);
    return test_report();
}
