/* cli_manifest.c - the batch's manifest.json: see cli_manifest.h. */
#include "cli_manifest.h"
#include "buf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#define CLI_MANIFEST_MAX (64L * 1024 * 1024)
#define CLI_MANIFEST_VERSION 1

static void cli_str_field(const cJSON *o, const char *name, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

struct cli_entry *cli_manifest_add(struct cli_manifest *m)
{
    struct cli_entry *e;

    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 32;
        struct cli_entry *v = realloc(m->v, nc * sizeof *v);
        if (!v)
            return NULL;
        m->v = v;
        m->cap = nc;
    }
    e = &m->v[m->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->state, sizeof e->state, "pending");
    e->credits = -1;
    return e;
}

struct cli_entry *cli_manifest_find(struct cli_manifest *m, const char *real)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].path, real) == 0)
            return &m->v[i];
    return NULL;
}

int cli_manifest_load(const char *dir, struct cli_manifest *m, char *err, size_t cap)
{
    const char *path;
    FILE *f;
    struct buf b;
    char chunk[65536];
    size_t n;
    cJSON *root = NULL;
    const cJSON *photos;
    const cJSON *p;
    int rc = -1;

    memset(m, 0, sizeof *m);
    if (snprintf(m->path, sizeof m->path, "%s/manifest.json", dir) >= (int)sizeof m->path) {
        snprintf(err, cap, "the output directory's path is too long.");
        return -1;
    }
    cli_copy(m->dir, sizeof m->dir, dir);
    path = m->path;
    buf_init(&b, (size_t)CLI_MANIFEST_MAX);
    f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(&b, chunk, n)) {
            snprintf(err, cap, "%s is larger than %ld bytes.", path, CLI_MANIFEST_MAX);
            goto cleanup;
        }
    }
    root = cJSON_ParseWithLength(buf_str(&b), b.len);
    photos = cJSON_GetObjectItemCaseSensitive(root, "photos");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(photos)) {
        snprintf(err, cap, "%s is not a manifest of this program (move it away to start afresh).", path);
        goto cleanup;
    }
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(root, "recent_creates")) {
        if (cJSON_IsNumber(p) && m->n_recent < CLI_RECENT_MAX)
            m->recent[m->n_recent++] = p->valuedouble;
    }
    cJSON_ArrayForEach(p, photos) {
        const cJSON *v;
        struct cli_entry *e;

        if (!cJSON_IsObject(p))
            continue;
        e = cli_manifest_add(m);
        if (!e) {
            snprintf(err, cap, "out of memory.");
            goto cleanup;
        }
        cli_str_field(p, "path", e->path, sizeof e->path);
        cli_str_field(p, "sha256", e->sha256, sizeof e->sha256);
        cli_str_field(p, "key", e->key, sizeof e->key);
        cli_str_field(p, "task_id", e->task, sizeof e->task);
        cli_str_field(p, "state", e->state, sizeof e->state);
        cli_str_field(p, "output", e->output, sizeof e->output);
        cli_str_field(p, "base", e->base, sizeof e->base);
        cli_str_field(p, "error", e->error, sizeof e->error);
        v = cJSON_GetObjectItemCaseSensitive(p, "attempt");
        e->attempt = cJSON_IsNumber(v) && v->valuedouble >= 0 ? (long)v->valuedouble : 0;
        v = cJSON_GetObjectItemCaseSensitive(p, "credits");
        e->credits = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!e->path[0])
            m->n--; /* unusable */
    }
    rc = 0;
cleanup:
    if (rc)
        cli_manifest_free(m);
    cJSON_Delete(root);
    buf_free(&b);
    fclose(f);
    return rc;
}

static cJSON *cli_entry_json(const struct cli_entry *e)
{
    cJSON *o = cJSON_CreateObject();

    if (!o || !cJSON_AddStringToObject(o, "path", e->path) || !cJSON_AddStringToObject(o, "sha256", e->sha256) ||
        !cJSON_AddStringToObject(o, "key", e->key) || !cJSON_AddNumberToObject(o, "attempt", (double)e->attempt) ||
        !(e->task[0] ? cJSON_AddStringToObject(o, "task_id", e->task) : cJSON_AddNullToObject(o, "task_id")) ||
        !cJSON_AddStringToObject(o, "state", e->state) ||
        !(e->output[0] ? cJSON_AddStringToObject(o, "output", e->output) : cJSON_AddNullToObject(o, "output")) ||
        !cJSON_AddStringToObject(o, "base", e->base) ||
        !(e->credits >= 0 ? cJSON_AddNumberToObject(o, "credits", e->credits) : cJSON_AddNullToObject(o, "credits")) ||
        !(e->error[0] ? cJSON_AddStringToObject(o, "error", e->error) : cJSON_AddNullToObject(o, "error"))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int cli_manifest_save(const struct cli_manifest *m, char *err, size_t cap)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *recent = root ? cJSON_AddArrayToObject(root, "recent_creates") : NULL;
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "photos") : NULL;
    char tmp[CLI_PATH_MAX + 16];
    char *text = NULL;
    FILE *f = NULL;
    int fd = -1;
    int rc = -1;

    tmp[0] = '\0';
    snprintf(err, cap, "manifest: out of memory.");
    if (!arr || !recent || !cJSON_AddNumberToObject(root, "version", CLI_MANIFEST_VERSION))
        goto cleanup;
    for (int i = 0; i < m->n_recent; i++) {
        cJSON *t = cJSON_CreateNumber(m->recent[i]);
        if (!t || !cJSON_AddItemToArray(recent, t)) {
            cJSON_Delete(t);
            goto cleanup;
        }
    }
    for (size_t i = 0; i < m->n; i++) {
        cJSON *e = cli_entry_json(&m->v[i]);
        if (!e || !cJSON_AddItemToArray(arr, e)) {
            cJSON_Delete(e);
            goto cleanup;
        }
    }
    text = cJSON_Print(root);
    if (!text)
        goto cleanup;
    if (snprintf(tmp, sizeof tmp, "%s/" CLI_MANIFEST_TMP "XXXXXX", m->dir) >= (int)sizeof tmp) {
        tmp[0] = '\0';
        snprintf(err, cap, "manifest: the path %s is too long.", m->path);
        goto cleanup;
    }
    fd = mkstemp(tmp);
    if (fd < 0 || !(f = fdopen(fd, "w"))) {
        snprintf(err, cap, "cannot write %s: %s", tmp, strerror(errno));
        if (fd < 0)
            tmp[0] = '\0';
        goto cleanup;
    }
    fd = -1; /* owned by f */
    if (fputs(text, f) == EOF || fputc('\n', f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        snprintf(err, cap, "cannot write %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (fclose(f) != 0) {
        f = NULL;
        snprintf(err, cap, "cannot write %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    f = NULL;
    if (rename(tmp, m->path) != 0) {
        snprintf(err, cap, "cannot rename %s to %s: %s", tmp, m->path, strerror(errno));
        goto cleanup;
    }
    tmp[0] = '\0';
    rc = 0;
cleanup:
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    if (tmp[0])
        unlink(tmp);
    free(text);
    cJSON_Delete(root);
    return rc;
}

void cli_manifest_free(struct cli_manifest *m)
{
    free(m->v);
    m->v = NULL;
    m->n = m->cap = 0;
}

void cli_manifest_sweep(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[CLI_PATH_MAX + 256];

    if (!d)
        return;
    while ((de = readdir(d))) {
        const char *part = strstr(de->d_name, ".part-");
        int ours = strncmp(de->d_name, CLI_MANIFEST_TMP, sizeof CLI_MANIFEST_TMP - 1) == 0 ||
                   (part && strlen(part) == 6 + 6 && strchr(part + 6, '.') == NULL);

        if (ours && snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path)
            unlink(path);
    }
    closedir(d);
}
