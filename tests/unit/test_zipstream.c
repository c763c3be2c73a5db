/* test_zipstream.c - the streamed stored ZIP: the bytes read back through
 * its central directory, CRCs against zlib, the announced size, names that
 * are refused, the size limit, and a file that changes before its turn. */
#include "err.h"
#include "test.h"
#include "zipstream.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

struct files {
    char dir[64];
    int opened;
};

static int open_key(void *arg, const char *key)
{
    struct files *f = arg;
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, key);
    f->opened++;
    return open(path, O_RDONLY);
}

static void write_file(const char *dir, const char *name, const unsigned char *data, size_t len)
{
    char path[256];
    FILE *fp;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fp = fopen(path, "wb");
    if (fp) {
        if (len)
            (void)fwrite(data, 1, len, fp);
        fclose(fp);
    }
}

static unsigned get16(const unsigned char *p) { return (unsigned)p[0] | ((unsigned)p[1] << 8); }
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Read the whole stream with reads of `step` bytes; malloc'd, length in *len; NULL on a read error. */
static unsigned char *drain(struct zipstream *z, size_t step, size_t *len)
{
    size_t cap = (size_t)zipstream_size(z) + 1, n = 0;
    unsigned char *out = malloc(cap);
    ssize_t got;

    while (out && (got = zipstream_read(z, (char *)out + n, n + step <= cap ? step : cap - n)) > 0)
        n += (size_t)got;
    if (out && got < 0) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}

struct want {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/* Walk the central directory and each local entry; check names, CRCs, sizes, data. */
static void check_archive(const unsigned char *a, size_t len, const struct want *w, size_t n, const char *what)
{
    const unsigned char *end = a + len - 22;
    size_t cd_off, pos;

    TEST_ASSERT(len >= 22 && get32(end) == 0x06054b50u, "%s: end record", what);
    if (len < 22 || get32(end) != 0x06054b50u)
        return;
    TEST_ASSERT(get16(end + 10) == n, "%s: %u entries, want %zu", what, get16(end + 10), n);
    cd_off = get32(end + 16);
    TEST_ASSERT(cd_off + get32(end + 12) + 22 == len, "%s: central directory ends at the end record", what);
    pos = cd_off;
    for (size_t i = 0; i < n && pos + 46 <= len; i++) {
        const unsigned char *c = a + pos;
        unsigned nl = get16(c + 28);
        uint32_t crc = get32(c + 16), size = get32(c + 24), off = get32(c + 42);
        uint32_t want_crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), w[i].data, (uInt)w[i].len);
        const unsigned char *l = a + off;

        TEST_ASSERT(get32(c) == 0x02014b50u, "%s: central header %zu", what, i);
        TEST_ASSERT(nl == strlen(w[i].name) && memcmp(c + 46, w[i].name, nl) == 0, "%s: name %zu", what, i);
        TEST_ASSERT(get16(c + 10) == 0, "%s: stored", what);
        TEST_ASSERT(crc == want_crc, "%s: crc %zu %08x want %08x", what, i, crc, want_crc);
        TEST_ASSERT(size == w[i].len && get32(c + 20) == w[i].len, "%s: size %zu", what, i);
        TEST_ASSERT(get32(l) == 0x04034b50u && get16(l + 26) == nl && memcmp(l + 30, w[i].name, nl) == 0,
                    "%s: local header %zu", what, i);
        TEST_ASSERT((get16(l + 6) & 8) && (get16(c + 8) & 8), "%s: bit 3 set", what);
        TEST_ASSERT(memcmp(l + 30 + nl, w[i].data, w[i].len) == 0, "%s: data %zu", what, i);
        TEST_ASSERT(get32(l + 30 + nl + w[i].len) == 0x08074b50u && get32(l + 34 + nl + w[i].len) == want_crc &&
                        get32(l + 38 + nl + w[i].len) == w[i].len,
                    "%s: descriptor %zu", what, i);
        pos += 46 + nl;
    }
    TEST_ASSERT(pos == cd_off + get32(end + 12), "%s: walked the whole directory", what);
}

int main(void)
{
    struct files f = {.dir = "/tmp/test_zipstream.XXXXXX"};
    static unsigned char big[300000];
    static const unsigned char small[] = "hello, zip";
    static const unsigned char missing[] = "task-1: failed\n";
    struct want w[4] = {
        {"mug.png", big, sizeof big},
        {"K\xc3\xbc" "che.jpg", small, sizeof small - 1},
        {"empty.jpg", (const unsigned char *)"", 0},
        {"MISSING.txt", missing, sizeof missing - 1},
    };
    struct zipstream *z;
    unsigned char *a;
    size_t len = 0;
    char buf[64];
    static const size_t steps[] = {1, 7, 4096, 1 << 20};

    if (!mkdtemp(f.dir)) {
        perror("mkdtemp");
        return 1;
    }
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)((i * 2654435761u) >> 13);
    write_file(f.dir, "a", big, sizeof big);
    write_file(f.dir, "b", small, sizeof small - 1);
    write_file(f.dir, "c", NULL, 0);

    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        z = zipstream_new(4, open_key, &f);
        TEST_ASSERT(z != NULL, "new");
        if (!z)
            break;
        TEST_ASSERT(zipstream_add_file(z, w[0].name, "a", sizeof big, 1764547200) == 0, "add a");
        TEST_ASSERT(zipstream_add_file(z, w[1].name, "b", sizeof small - 1, 0) == 0, "add b (utf-8, 1970)");
        TEST_ASSERT(zipstream_add_file(z, w[2].name, "c", 0, 1764547200) == 0, "add c (empty)");
        TEST_ASSERT(zipstream_add_data(z, w[3].name, missing, sizeof missing - 1, 1764547200) == 0, "add data");
        TEST_ASSERT(zipstream_add_data(z, "one-too-many", "x", 1, 0) == ERR_INVALID, "the 5th entry is refused");
        a = drain(z, steps[s], &len);
        TEST_ASSERT(a != NULL, "read with steps of %zu", steps[s]);
        TEST_ASSERT(len == zipstream_size(z), "announced %llu, produced %zu", (unsigned long long)zipstream_size(z),
                    len);
        TEST_ASSERT(zipstream_read(z, buf, sizeof buf) == 0, "0 at the end, again");
        TEST_ASSERT(zipstream_add_data(z, "late", "x", 1, 0) == ERR_INVALID, "no adding after reading started");
        if (a) {
            unsigned char *cd = a + get32(a + len - 22 + 16);
            check_archive(a, len, w, 4, "archive");
            TEST_ASSERT(!(get16(cd + 8) & 0x0800), "no UTF-8 flag on a plain ASCII name");
            cd += 46 + get16(cd + 28);
            TEST_ASSERT(get16(cd + 8) & 0x0800, "UTF-8 flag on the non-ASCII name");
            TEST_ASSERT(get16(cd + 14) == ((1u << 5) | 1u), "a 1970 time is written as 1980-01-01");
        }
        free(a);
        zipstream_free(z);
    }

    /* names that could escape a directory or break a reader */
    z = zipstream_new(16, open_key, &f);
    {
        static const char *const bad[] = {"", "/etc/passwd", "../x", "a/../../x", "a\\b", "dir/", "a\x01" "b", ".",
                                          "a//b"};
        for (size_t i = 0; z && i < sizeof bad / sizeof bad[0]; i++)
            TEST_ASSERT(zipstream_add_data(z, bad[i], "x", 1, 0) == ERR_INVALID, "name %zu refused", i);
        TEST_ASSERT(z && zipstream_add_data(z, "dir/ok..name.jpg", "x", 1, 0) == 0, "a name with .. inside is fine");
        TEST_ASSERT(z && zipstream_add_file(z, "huge", "a", 0xffffffffULL, 0) == ERR_TOO_LARGE, "4 GiB refused");
        TEST_ASSERT(z && zipstream_add_file(z, "big1", "a", 0x7fffff00ULL, 0) == 0, "2 GiB fits");
        TEST_ASSERT(z && zipstream_add_file(z, "big2", "a", 0x80000000ULL, 0) == ERR_TOO_LARGE,
                    "two of them pass the limit");
    }
    zipstream_free(z);

    /* a file that changed size (or vanished) before its turn: the read fails, the error names it */
    z = zipstream_new(2, open_key, &f);
    TEST_ASSERT(z && zipstream_add_file(z, "b.jpg", "b", sizeof small - 1, 0) == 0, "add b");
    TEST_ASSERT(z && zipstream_add_file(z, "a.jpg", "a", sizeof big, 0) == 0, "add a");
    write_file(f.dir, "a", small, 3);
    a = z ? drain(z, 4096, &len) : NULL;
    TEST_ASSERT(a == NULL, "a shrunk file fails the stream");
    TEST_ASSERT(z && strstr(zipstream_error(z), "a.jpg") != NULL, "error names the entry: %s",
                z ? zipstream_error(z) : "");
    TEST_ASSERT(z && zipstream_read(z, buf, sizeof buf) == -1, "and stays failed");
    free(a);
    zipstream_free(z);

    z = zipstream_new(1, open_key, &f);
    TEST_ASSERT(z && zipstream_add_file(z, "gone.jpg", "nope", 3, 0) == 0, "add a missing file");
    a = z ? drain(z, 4096, &len) : NULL;
    TEST_ASSERT(a == NULL && z && strstr(zipstream_error(z), "cannot open gone.jpg"), "a vanished file fails: %s",
                z ? zipstream_error(z) : "");
    free(a);
    zipstream_free(z);
    TEST_ASSERT(zipstream_new(0, open_key, &f) == NULL, "0 entries refused");

    {
        char path[256];
        static const char *const names[] = {"a", "b", "c"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", f.dir, names[i]);
            unlink(path);
        }
        rmdir(f.dir);
    }
    return test_report();
}
