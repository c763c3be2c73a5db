/* cli_photos.c - finding the photos of a batch: see cli_photos.h. */
#include "cli_photos.h"
#include "validate.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define CLI_SCAN_DEPTH_MAX 32
#define CLI_PHOTOS_MAX 100000

static const char *const CLI_PHOTO_EXTS[] = {"jpg", "jpeg", "png", "webp", "heic", "heif", "avif", "tif", "tiff"};

int cli_photo_ext_ok(const char *name)
{
    const char *dot = strrchr(name, '.');

    if (!dot || dot == name)
        return 0;
    for (size_t i = 0; i < sizeof CLI_PHOTO_EXTS / sizeof CLI_PHOTO_EXTS[0]; i++)
        if (strcasecmp(dot + 1, CLI_PHOTO_EXTS[i]) == 0)
            return 1;
    return 0;
}

int cli_photo_sniff_ok(const char *path)
{
    unsigned char h[IMAGE_MAGIC_LEN] = {0};
    size_t n = 0;
    FILE *f = fopen(path, "rb");

    if (!f)
        return 0;
    n = fread(h, 1, sizeof h, f);
    fclose(f);
    return image_detect(h, n) != IMAGE_UNKNOWN;
}

/* The stem of path's file name, with anything but [A-Za-z0-9._-] as '_'. */
static void cli_stem(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    const char *dot;
    size_t n, i;

    base = base ? base + 1 : path;
    dot = strrchr(base, '.');
    n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n >= cap)
        n = cap - 1;
    for (i = 0; i < n; i++) {
        char c = base[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.';
        out[i] = ok ? c : '_';
    }
    out[i] = '\0';
    if (!out[0])
        snprintf(out, cap, "photo");
}

static int cli_photos_add(struct cli_photo_list *l, const char *path, const char *real, char *err, size_t cap)
{
    struct cli_photo *p;

    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].real, real) == 0)
            return 0; /* named twice, or found twice */
    if (l->n == CLI_PHOTOS_MAX) {
        snprintf(err, cap, "more than %d photos in one run.", CLI_PHOTOS_MAX);
        return -1;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        struct cli_photo *v = realloc(l->v, nc * sizeof *v);
        if (!v)
            goto oom;
        l->v = v;
        l->cap = nc;
    }
    p = &l->v[l->n];
    p->path = strdup(path);
    p->real = strdup(real);
    if (!p->path || !p->real) {
        free(p->path);
        free(p->real);
        goto oom;
    }
    cli_stem(path, p->stem, sizeof p->stem);
    l->n++;
    return 0;
oom:
    snprintf(err, cap, "out of memory.");
    return -1;
}

static int cli_by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The photos in dir (and below it, while depth allows). 0 or -1 (err). */
static int cli_scan(const char *dir, int depth, const char *skip_real, struct cli_photo_list *l, char *err,
                    size_t cap)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, cli_by_name);
    int rc = 0;

    if (n < 0) {
        snprintf(err, cap, "cannot read the directory %s: %s", dir, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        char real[PATH_MAX];
        struct stat st;
        const char *name = names[i]->d_name;

        if (rc || name[0] == '.') /* hidden, . and .. */
            continue;
        if (snprintf(path, sizeof path, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name) >=
                (int)sizeof path ||
            lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) { /* a symlinked directory is not followed (no loops) */
            if (depth > 0 && realpath(path, real) && !(skip_real && strcmp(real, skip_real) == 0))
                rc = cli_scan(path, depth - 1, skip_real, l, err, cap);
            continue;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !realpath(path, real))
            continue;
        if (cli_photo_ext_ok(name) || cli_photo_sniff_ok(path))
            rc = cli_photos_add(l, path, real, err, cap);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int cli_by_path(const void *a, const void *b)
{
    return strcmp(((const struct cli_photo *)a)->path, ((const struct cli_photo *)b)->path);
}

int cli_photos_collect(char *const *paths, int n, int recursive, const char *skip_dir, struct cli_photo_list *out,
                       char *err, size_t cap)
{
    char skip_real[PATH_MAX];
    const char *skip = skip_dir && realpath(skip_dir, skip_real) ? skip_real : NULL;

    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        char real[PATH_MAX];
        struct stat st;

        if (stat(paths[i], &st) != 0 || !realpath(paths[i], real)) {
            snprintf(err, cap, "cannot read %s: %s", paths[i], strerror(errno));
            goto fail;
        }
        if (S_ISDIR(st.st_mode) && skip && strcmp(real, skip) == 0) {
            snprintf(err, cap, "-o %s is one of the photo directories: give the results another directory.",
                     skip_dir);
            goto fail;
        }
        if (S_ISDIR(st.st_mode)) {
            if (cli_scan(paths[i], recursive ? CLI_SCAN_DEPTH_MAX : 0, skip, out, err, cap))
                goto fail;
        } else if (!S_ISREG(st.st_mode)) {
            snprintf(err, cap, "%s is not a regular file.", paths[i]);
            goto fail;
        } else if (cli_photos_add(out, paths[i], real, err, cap)) {
            goto fail;
        }
    }
    if (out->n == 0) {
        snprintf(err, cap, "no photos found (JPEG, PNG, WEBP, HEIC/HEIF, AVIF or TIFF) in %s%s.", paths[0],
                 n > 1 ? " and the other paths" : "");
        goto fail;
    }
    qsort(out->v, out->n, sizeof *out->v, cli_by_path);
    return 0;
fail:
    cli_photos_free(out);
    return -1;
}

void cli_photos_free(struct cli_photo_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].real);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}
